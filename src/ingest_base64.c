/*
 * ingest_base64.c - owns the decoding of standard base64 (RFC 4648, '='
 * padding) as found in the "message" of json_with_message, and in HTTP
 * Basic credentials.
 *
 * A small table decoder rather than OpenSSL's EVP_DecodeUpdate: the
 * input is already in memory, whitespace (CR, LF, space, tab) must be
 * ignored anywhere, and each kind of bad input (a bad character, data
 * after the padding, a misplaced '=', a length that is not a multiple of
 * 4) must be refused with a message naming it and its offset.
 * EVP_DecodeUpdate treats '=' and whitespace by its own PEM-oriented
 * rules and reports every failure alike.  Decoding is not cryptography.
 *
 * Bits left over in the last group when padding is present are ignored
 * (RFC 4648 section 3.5 leaves this to the decoder).
 */
#include "ingest_base64.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define B64_PIECE (48 * 1024) /* a multiple of 3 */

int base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Hands the decoded bytes collected so far to the caller. */
static int flush(unsigned char *buf, size_t *len, base64_out_fn out, void *arg, struct qerr *e)
{
	if (*len == 0)
		return 0;
	int rc = out(arg, buf, *len, e);
	*len = 0;
	return rc < 0 ? -1 : 0;
}

int base64_decode_to(const char *in, size_t n, base64_out_fn out, void *arg, struct qerr *e)
{
	unsigned char *buf = xmalloc(B64_PIECE);
	size_t blen = 0;
	uint32_t acc = 0;   /* bits of the current group */
	int qn = 0;         /* characters of the current group, '=' included */
	int pads = 0;       /* '=' in the current group */
	bool done = false;  /* a padded group ended the data */
	size_t sig = 0;     /* characters other than whitespace */
	int rc = -1;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		sig++;
		if (done) {
			qerr_input(e, 400, "base64: data after padding at offset %zu", i);
			goto out;
		}
		if (c == '=') {
			if (qn < 2) {
				qerr_input(e, 400, "base64: misplaced padding at offset %zu", i);
				goto out;
			}
			pads++;
			acc <<= 6;
		} else {
			int v = base64_value(c);
			if (v < 0) {
				qerr_input(e, 400, "base64: invalid character 0x%02x at offset %zu", c, i);
				goto out;
			}
			if (pads > 0) {
				qerr_input(e, 400, "base64: data after padding at offset %zu", i);
				goto out;
			}
			acc = (acc << 6) | (uint32_t)v;
		}
		if (++qn < 4)
			continue;
		/* A complete group: 3 bytes, fewer when padded. */
		buf[blen++] = (unsigned char)(acc >> 16);
		if (pads < 2)
			buf[blen++] = (unsigned char)(acc >> 8);
		if (pads < 1)
			buf[blen++] = (unsigned char)acc;
		if (pads > 0)
			done = true;
		acc = 0;
		qn = 0;
		pads = 0;
		if (blen + 3 > B64_PIECE && flush(buf, &blen, out, arg, e) < 0)
			goto out;
	}
	if (qn != 0) {
		qerr_input(e, 400, "base64: length %zu is not a multiple of 4", sig);
		goto out;
	}
	if (flush(buf, &blen, out, arg, e) < 0)
		goto out;
	rc = 0;
out:
	free(buf);
	return rc;
}
