/*
 * ingest_rfc2047.c - owns the decoding of header values that carry RFC
 * 2047 encoded words into display UTF-8.  One pass over the input: text
 * between words is read as UTF-8 or Windows-1252; the bytes of adjacent
 * encoded words in one charset are gathered and converted together.
 *
 * Rspamd writes meta headers in three ways, all handled here: raw (3.4),
 * Q words that split UTF-8 characters across words and can carry garbage
 * bytes after the last one (3.12), and whole-character Q words glued to
 * the text around them and to each other ("M=?UTF-8?Q?=C3=BCnchen?=",
 * "?==?") (4.x).  A word is recognised wherever "=?" starts one, not only
 * after white space as RFC 2047 asks, and the output is always valid
 * UTF-8 without control characters: a header value never fails a request.
 */
#include "ingest_rfc2047.h"

#include <string.h>
#include <strings.h>

#include "charset.h"
#include "ingest_base64.h"
#include "common.h"

/* Longest "charset*language" accepted inside an encoded word. */
#define WORD_CHARSET_MAX 75

/* An encoded word as found in the input. */
struct word {
	char charset[WORD_CHARSET_MAX + 1]; /* without the language part */
	char enc;                          /* 'B' or 'Q' */
	const char *text;
	size_t textlen;
	size_t end;                        /* offset just past "?=" */
};

/* The decoded bytes of a run of adjacent words in one charset. */
struct run {
	bool active;
	char charset[WORD_CHARSET_MAX + 1];
	struct buf bytes;
};

static bool is_lws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Recognises "=?charset?E?text?=" at in[pos]; never looks further than
 * the first '?' after the encoding letter, so scanning stays linear. */
static bool word_parse(const char *in, size_t len, size_t pos, struct word *w)
{
	size_t i = pos + 2;
	size_t cs = i;
	while (i < len && in[i] != '?') {
		unsigned char c = (unsigned char)in[i];
		if (c <= 0x20 || c >= 0x7f || i - cs >= WORD_CHARSET_MAX)
			return false;
		i++;
	}
	if (i >= len || i == cs)
		return false;
	size_t cslen = i - cs;
	const char *star = memchr(in + cs, '*', cslen);
	if (star)
		cslen = (size_t)(star - (in + cs));
	if (cslen == 0)
		return false;
	memcpy(w->charset, in + cs, cslen);
	w->charset[cslen] = '\0';
	i++;
	if (i + 1 >= len || in[i + 1] != '?')
		return false;
	switch (in[i]) {
	case 'B': case 'b': w->enc = 'B'; break;
	case 'Q': case 'q': w->enc = 'Q'; break;
	default: return false;
	}
	i += 2;
	size_t t = i;
	while (i < len && in[i] != '?') {
		unsigned char c = (unsigned char)in[i];
		if (c <= 0x20 || c == 0x7f)
			return false;
		i++;
	}
	if (i + 1 >= len || in[i + 1] != '=')
		return false;
	w->text = in + t;
	w->textlen = i - t;
	w->end = i + 2;
	return true;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Base64 of one word into out; -1 (out unchanged) if it is not base64.
 * Missing padding is forgiven, as most mail readers do. */
static int decode_b(const char *s, size_t n, struct buf *out)
{
	size_t data = n;
	while (data > 0 && s[data - 1] == '=')
		data--;
	if (n - data > 2 || data % 4 == 1)
		return -1;
	size_t before = out->len;
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < data; i++) {
		int v = base64_value((unsigned char)s[i]);
		if (v < 0) {
			out->len = before;
			if (out->data)
				out->data[before] = '\0';
			return -1;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_appendc(out, (char)((acc >> bits) & 0xFF));
		}
	}
	return 0;
}

/* Q encoding of one word into out: '_' is a space, "=XX" a byte; an '='
 * without two hex digits stays as it is. */
static void decode_q(const char *s, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '_') {
			buf_appendc(out, ' ');
		} else if (c == '=' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
			   hexval((unsigned char)s[i + 2]) >= 0) {
			buf_appendc(out, (char)(hexval((unsigned char)s[i + 1]) * 16 +
						hexval((unsigned char)s[i + 2])));
			i += 2;
		} else {
			buf_appendc(out, (char)c);
		}
	}
}

/* Control characters in the appended range become spaces: decoded text
 * is shown on one line and stored without CR, LF or NUL. */
static void blank_controls(struct buf *out, size_t from)
{
	for (size_t i = from; i < out->len; i++)
		if ((unsigned char)out->data[i] < 0x20)
			out->data[i] = ' ';
}

static void emit_raw(struct buf *out, const char *p, size_t n)
{
	if (n == 0)
		return;
	size_t before = out->len;
	charset_append_8bit(out, p, n);
	blank_controls(out, before);
}

/* Converts the gathered bytes of a run; an unknown charset falls back to
 * the 8-bit reading rather than losing the text. */
static void run_flush(struct buf *out, struct run *r)
{
	if (!r->active)
		return;
	size_t before = out->len;
	if (r->bytes.len > 0 &&
	    charset_append(out, r->charset, r->bytes.data, r->bytes.len) < 0)
		charset_append_8bit(out, r->bytes.data, r->bytes.len);
	blank_controls(out, before);
	r->bytes.len = 0;
	if (r->bytes.data)
		r->bytes.data[0] = '\0';
	r->active = false;
}

static bool all_lws(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_lws(p[i]))
			return false;
	return true;
}

char *rfc2047_decode(const char *in, size_t len)
{
	struct buf out = { 0 };
	struct run run = { 0 };
	struct word w;
	size_t gap = 0; /* start of raw text not yet emitted */
	size_t i = 0;

	if (in == NULL || len == 0)
		return xstrdup("");
	while (i + 1 < len) {
		const char *eq = memchr(in + i, '=', len - i - 1);
		if (eq == NULL)
			break;
		i = (size_t)(eq - in);
		if (in[i + 1] != '?' || !word_parse(in, len, i, &w)) {
			i++;
			continue;
		}
		bool joinable = run.active && all_lws(in + gap, i - gap);
		bool same = joinable && strcasecmp(run.charset, w.charset) == 0;
		size_t mark = run.bytes.len;
		bool ok;
		if (w.enc == 'B') {
			ok = decode_b(w.text, w.textlen, &run.bytes) == 0;
		} else {
			decode_q(w.text, w.textlen, &run.bytes);
			ok = true;
		}
		if (!ok) {
			/* Not really an encoded word: it stays as raw text. */
			i++;
			continue;
		}
		if (!same) {
			/* Move the new bytes aside, finish the previous run. */
			struct buf fresh = { 0 };
			if (run.bytes.len > mark)
				buf_append(&fresh, run.bytes.data + mark, run.bytes.len - mark);
			run.bytes.len = mark;
			run_flush(&out, &run);
			if (!joinable)
				emit_raw(&out, in + gap, i - gap);
			buf_free(&run.bytes);
			run.bytes = fresh;
			memcpy(run.charset, w.charset, strlen(w.charset) + 1);
			run.active = true;
		}
		i = w.end;
		gap = i;
	}
	run_flush(&out, &run);
	emit_raw(&out, in + gap, len - gap);
	buf_free(&run.bytes);
	if (out.data == NULL)
		return xstrdup("");
	/* What could not be decoded (Rspamd 3.12's half characters, bytes
	 * past the end of its buffer) is U+FFFD or Windows-1252 by now: valid
	 * UTF-8.  DEL and the C1 controls that 8-bit text can carry go too. */
	char *res = buf_steal(&out);
	charset_blank_all_controls(res);
	return res;
}
