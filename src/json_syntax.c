/*
 * json_syntax.c - owns the syntax check of JSON text that is kept as text
 * (json_syntax.h).
 *
 * Why a hand-written checker when jansson is at hand: the ingest path
 * receives Rspamd's symbols as a 2 KB or larger JSON header on every
 * message and only has to make sure it is well-formed JSON before storing
 * it as it came.  Parsing it with jansson built a whole tree (a hash table
 * per object, a string per key and value) only to throw it away, and
 * serialising it again cost nearly as much: together about 75 % of the
 * instructions of a request on the null backend.  This checker walks the
 * bytes once, allocates nothing and is about ten times cheaper.  It
 * answers one question, "is this JSON?", and gives no values: jansson
 * remains the parser wherever a value is needed (recipients, JSON bodies,
 * the stored metadata).  What it accepts is kept equal to what jansson
 * accepts, checked by the differential harness tests/fuzz/fuzz_json_syntax.c.
 */
#include "json_syntax.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "charset.h"

/* The walk over one text. */
struct js {
	const unsigned char *start, *p, *end;
	char *err;
	size_t errlen;
};

/* Records why the text is refused and where; always returns -1. */
static int js_fail(struct js *s, const char *why)
{
	if (s->errlen > 0)
		snprintf(s->err, s->errlen, "%s at byte %zu", why, (size_t)(s->p - s->start));
	return -1;
}

static void skip_ws(struct js *s)
{
	while (s->p < s->end &&
	       (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool is_digit(const struct js *s)
{
	return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

/* Four hex digits after "\u"; -1 if they are not there. */
static long hex4(struct js *s)
{
	if (s->end - s->p < 4)
		return -1;
	long v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = s->p[i];
		int d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	s->p += 4;
	return v;
}

/* One "\uXXXX" escape (s->p after the 'u'), with the low half that must
 * follow a high surrogate.  A NUL character is refused, as jansson
 * refuses it without JSON_ALLOW_NUL. */
static int unicode_escape(struct js *s)
{
	long v = hex4(s);
	if (v < 0)
		return js_fail(s, "\\u not followed by four hex digits");
	if (v == 0)
		return js_fail(s, "\\u0000 in a string");
	if (v >= 0xDC00 && v <= 0xDFFF)
		return js_fail(s, "low surrogate escape without a high one");
	if (v < 0xD800 || v > 0xDBFF)
		return 0;
	if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
		return js_fail(s, "high surrogate escape without a low one");
	s->p += 2;
	v = hex4(s);
	if (v < 0)
		return js_fail(s, "\\u not followed by four hex digits");
	if (v < 0xDC00 || v > 0xDFFF)
		return js_fail(s, "high surrogate escape without a low one");
	return 0;
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* The bytes of w that end a run of plain string bytes (a quote, a
 * backslash, a control byte), as the high bit of each.  Only the lowest
 * marked byte is sure (a marked byte borrows into the ones above it);
 * it is the first such byte when w was loaded little-endian. */
static uint64_t special_bytes(uint64_t w)
{
	uint64_t q = w ^ (ONES * '"'), b = w ^ (ONES * '\\');
	uint64_t zero_q = (q - ONES) & ~q, zero_b = (b - ONES) & ~b;
	uint64_t below_space = (w - ONES * 0x20) & ~w;
	return (zero_q | zero_b | below_space) & HIGHS;
}

/* A string, s->p on its opening quote.  The bytes are UTF-8 already
 * (checked once for the whole text). */
static int scan_string(struct js *s)
{
	s->p++;
	for (;;) {
		/* Plain characters need no check beyond this one: skipped a
		 * word at a time, up to the first byte that ends the run. */
		const unsigned char *q = s->p;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		while (s->end - q >= 8) {
			uint64_t w;
			memcpy(&w, q, sizeof w);
			uint64_t m = special_bytes(w);
			if (m != 0) {
				q += (unsigned)__builtin_ctzll(m) / 8;
				break;
			}
			q += 8;
		}
#endif
		while (q < s->end && *q >= 0x20 && *q != '"' && *q != '\\')
			q++;
		s->p = q;
		if (s->p >= s->end)
			return js_fail(s, "unterminated string");
		unsigned char c = *s->p;
		if (c == '"') {
			s->p++;
			return 0;
		}
		if (c < 0x20)
			return js_fail(s, "control character in a string");
		s->p++;
		if (c != '\\')
			continue;
		if (s->p >= s->end)
			return js_fail(s, "unterminated string");
		c = *s->p++;
		switch (c) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
			break;
		case 'u':
			if (unicode_escape(s) < 0)
				return -1;
			break;
		default:
			s->p--;
			return js_fail(s, "invalid escape in a string");
		}
	}
}

/* A number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int scan_number(struct js *s)
{
	if (*s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0') {
		s->p++;
	} else if (is_digit(s)) {
		while (is_digit(s))
			s->p++;
	} else {
		return js_fail(s, "invalid number");
	}
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (!is_digit(s))
			return js_fail(s, "invalid number");
		while (is_digit(s))
			s->p++;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!is_digit(s))
			return js_fail(s, "invalid number");
		while (is_digit(s))
			s->p++;
	}
	return 0;
}

/* true, false or null. */
static int scan_literal(struct js *s)
{
	static const char *const words[] = { "true", "false", "null" };
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
		const char *w = words[i];
		size_t k = 0;
		while (w[k] && s->p + k < s->end && s->p[k] == (unsigned char)w[k])
			k++;
		if (w[k] == '\0') {
			s->p += k;
			return 0;
		}
	}
	return js_fail(s, "invalid token");
}

int json_syntax_check(const char *p, size_t n, char top, char *err, size_t errlen)
{
	struct js s = { (const unsigned char *)p, (const unsigned char *)p,
			(const unsigned char *)p + n, err, errlen };
	/* One bit per open container: set for an object, clear for an array. */
	uint8_t objbit[JSON_SYNTAX_MAX_DEPTH / 8];
	size_t depth = 0; /* open containers */

	if (errlen > 0)
		err[0] = '\0';
	if (!utf8_valid(p, n))
		return js_fail(&s, "not valid UTF-8");
	skip_ws(&s);
	if (top != 0 && (s.p >= s.end || *s.p != (unsigned char)top))
		return js_fail(&s, top == '[' ? "not a JSON array" :
				   top == '{' ? "not a JSON object" : "unexpected type");

value:
	skip_ws(&s);
	if (s.p >= s.end)
		return js_fail(&s, "value expected");
	/* This value lies one level below the containers open around it. */
	if (depth + 1 > JSON_SYNTAX_MAX_DEPTH)
		return js_fail(&s, "nested too deeply");
	switch (*s.p) {
	case '[':
	case '{': {
		bool obj = *s.p == '{';
		uint8_t bit = (uint8_t)(1u << (depth % 8));
		if (obj)
			objbit[depth / 8] |= bit;
		else
			objbit[depth / 8] &= (uint8_t)~bit;
		depth++;
		s.p++;
		skip_ws(&s);
		if (s.p < s.end && *s.p == (obj ? '}' : ']')) {
			s.p++;
			depth--;
			goto after;
		}
		if (obj)
			goto key;
		goto value;
	}
	case '"':
		if (scan_string(&s) < 0)
			return -1;
		goto after;
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		if (scan_number(&s) < 0)
			return -1;
		goto after;
	default:
		if (scan_literal(&s) < 0)
			return -1;
		goto after;
	}

key:
	skip_ws(&s);
	if (s.p >= s.end || *s.p != '"')
		return js_fail(&s, "string expected as object key");
	if (scan_string(&s) < 0)
		return -1;
	skip_ws(&s);
	if (s.p >= s.end || *s.p != ':')
		return js_fail(&s, "':' expected");
	s.p++;
	goto value;

after:
	skip_ws(&s);
	if (depth == 0) {
		if (s.p != s.end)
			return js_fail(&s, "end of text expected");
		return 0;
	}
	{
		bool obj = (objbit[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1;
		if (s.p < s.end && *s.p == ',') {
			s.p++;
			if (obj)
				goto key;
			goto value;
		}
		if (s.p < s.end && *s.p == (obj ? '}' : ']')) {
			s.p++;
			depth--;
			goto after;
		}
		return js_fail(&s, obj ? "',' or '}' expected" : "',' or ']' expected");
	}
}
