/*
 * fuzz_base64.c - libFuzzer harness for the base64 decoder.  Decoded
 * output comes in pieces of at most 48 KB and is never longer than 3/4 of
 * the input; what decodes must decode to the same bytes again after
 * re-encoding (OpenSSL's encoder), and errors are 400.
 */
#include <openssl/evp.h>

#include "fuzz_util.h"
#include "ingest_base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_out(void *arg, const void *p, size_t n, struct qerr *e)
{
	(void)e;
	FUZZ_ASSERT(n <= 48 * 1024);
	buf_append(arg, p, n);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf out = { 0 };
	struct qerr e = { 0 };
	if (base64_decode_to((const char *)data, size, on_out, &out, &e) < 0) {
		FUZZ_ASSERT(e.cls == QERR_INPUT && e.http == 400);
		buf_free(&out);
		return 0;
	}
	FUZZ_ASSERT(out.len <= size / 4 * 3 + 3);

	/* Round trip through a canonical encoding. */
	size_t elen = 4 * ((out.len + 2) / 3);
	unsigned char *enc = xmalloc(elen + 1);
	int w = EVP_EncodeBlock(enc, (const unsigned char *)(out.data ? out.data : ""),
				(int)out.len);
	FUZZ_ASSERT(w >= 0 && (size_t)w == elen);
	struct buf again = { 0 };
	FUZZ_ASSERT(base64_decode_to((const char *)enc, elen, on_out, &again, &e) == 0);
	FUZZ_ASSERT(again.len == out.len);
	FUZZ_ASSERT(out.len == 0 || memcmp(again.data, out.data, out.len) == 0);
	free(enc);
	buf_free(&again);
	buf_free(&out);
	return 0;
}
