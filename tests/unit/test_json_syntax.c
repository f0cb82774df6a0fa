/*
 * test_json_syntax.c - the JSON syntax check: every construct of RFC 8259
 * accepted, each way of breaking it refused, and the limits it shares
 * with jansson (nesting depth, \u0000, surrogates, UTF-8), compared with
 * jansson where both must agree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common.h"
#include "json_syntax.h"

/* The checker's verdict on a C string, any top-level type. */
static int check(const char *s)
{
	char err[128];
	return json_syntax_check(s, strlen(s), 0, err, sizeof err);
}

/* jansson's verdict on the same text. */
static int jansson_ok(const char *s, size_t n)
{
	json_error_t jerr;
	json_t *j = json_loadb(s, n, JSON_DECODE_ANY, &jerr);
	json_decref(j);
	return j != NULL;
}

/* Asserts the checker and jansson agree on s, and that the verdict is ok. */
static void expect(const char *s, int ok)
{
	char err[128];
	int r = json_syntax_check(s, strlen(s), 0, err, sizeof err);
	if ((r == 0) != ok)
		fail_msg("'%s': expected %s, got %s (%s)", s, ok ? "valid" : "invalid",
			 r == 0 ? "valid" : "invalid", err);
	if (jansson_ok(s, strlen(s)) != ok)
		fail_msg("'%s': jansson disagrees", s);
	if (!ok) {
		assert_true(err[0] != '\0');
		assert_null(strchr(err, '\n'));
	}
}

static void test_values(void **state)
{
	(void)state;
	const char *good[] = {
		"[]", "{}", " [ ] ", "\t\r\n[1]\n", "1", "-0", "0", "0.5", "-12.25e+3",
		"1E5", "1e-5", "123456789", "true", "false", "null", "\"\"", "\"x\"",
		"[1,2,3]", "{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}",
		"{\"a\":1,\"a\":2}", "[{\"name\":\"R_SPF_ALLOW\",\"score\":-0.2,"
		"\"options\":[\"+ip4:192.0.2.0/24\"]}]", "[ \"a\" , \"b\" ]",
		"{ \"k\" : [ ] }",
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		expect(good[i], 1);
	const char *bad[] = {
		"", " ", "[", "]", "[1,]", "[,1]", "[1 2]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}",
		"{1:2}", "{a:1}", "{'a':1}", "['a']", "[1]x", "[1][2]", "tru", "truex",
		"True", "nul", "NULL", "nan", "inf", "-", "+1", "01", "-01", "1.", ".5", "1e",
		"1e+", "1.e5", "0x10", "[\"a\"", "\"abc", "[1,2", "{\"a\":1",
		"/* c */ 1", "\xef\xbb\xbf[]",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect(bad[i], 0);
}

static void test_escapes(void **state)
{
	(void)state;
	expect("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", 1);
	expect("\"\\u0041\\u00e9\\u00E9\\u20AC\\uffff\"", 1);
	expect("\"\\ud83d\\ude00\"", 1);          /* a surrogate pair */
	expect("\"\\uD83D\\uDE00\"", 1);
	expect("\"\\a\"", 0);
	expect("\"\\x41\"", 0);
	expect("\"\\'\"", 0);
	expect("\"\\\"", 0);                      /* escape of the closing quote */
	expect("\"\\u12\"", 0);
	expect("\"\\u12g4\"", 0);
	expect("\"\\u0000\"", 0);                 /* jansson refuses NUL */
	expect("{\"\\u0000\":1}", 0);
	expect("\"\\ud800\"", 0);                 /* high surrogate alone */
	expect("\"\\ud800x\"", 0);
	expect("\"\\ud800\\u0041\"", 0);          /* followed by no low one */
	expect("\"\\ud800\\ud800\"", 0);
	expect("\"\\udc00\"", 0);                 /* low surrogate alone */
	expect("\"\\udc00\\ud800\"", 0);
	expect("\"\\ud800\\", 0);
}

/* Long strings are skipped a word at a time: a quote, an escape or a
 * control byte must be found at every offset within a word, and bytes
 * of UTF-8 (0x80 and up) must not stop the run. */
static void test_long_strings(void **state)
{
	(void)state;
	char text[64];
	for (int at = 0; at < 40; at++) {
		/* ["aaaa...<special>..."] with the special byte at offset at */
		size_t n = 0;
		text[n++] = '[';
		text[n++] = '"';
		for (int i = 0; i < at; i++)
			text[n++] = (char)(i % 3 == 0 ? 'a' : i % 3 == 1 ? '\xc3' : '\xa4');
		if (at % 3 == 2) /* keep the UTF-8 pairs whole */
			text[n++] = '\xa4';
		size_t mark = n;
		const char *tail = "zzzzzzzzzzzzzzzz\"]";
		/* a control byte: refused, wherever it is */
		text[mark] = '\x1f';
		memcpy(text + mark + 1, tail, strlen(tail));
		assert_int_equal(json_syntax_check(text, mark + 1 + strlen(tail), '[', NULL, 0), -1);
		/* an escaped quote: accepted, and the string goes on */
		text[mark] = '\\';
		text[mark + 1] = '"';
		memcpy(text + mark + 2, tail, strlen(tail));
		assert_int_equal(json_syntax_check(text, mark + 2 + strlen(tail), '[', NULL, 0), 0);
		/* a quote ends the string: what follows must be JSON */
		text[mark] = '"';
		memcpy(text + mark + 1, "]", 1);
		assert_int_equal(json_syntax_check(text, mark + 2, '[', NULL, 0), 0);
		memcpy(text + mark + 1, "x]", 2);
		assert_int_equal(json_syntax_check(text, mark + 3, '[', NULL, 0), -1);
		/* no end at all */
		memset(text + mark, 'q', 12);
		assert_int_equal(json_syntax_check(text, mark + 12, '[', NULL, 0), -1);
	}
}

static void test_control_bytes(void **state)
{
	(void)state;
	char s[8];
	for (int c = 1; c < 0x20; c++) {
		snprintf(s, sizeof s, "\"a%cb\"", c);
		expect(s, 0);
	}
	expect("\"a\x7f" "b\"", 1); /* DEL is not a control character in JSON */
	/* after a long run of plain characters, and after an escape */
	expect("[\"abcdefghijklmnopqrstuvwxyz\x01\"]", 0);
	expect("[\"abcdefghijklmnopqrstuvwxyz\\n\x1f\"]", 0);
	expect("[\"abcdefghijklmnopqrstuvwxyz\\n\\\"x\"]", 1);
	expect("[\"abcdefghijklmnopqrstuvwxyz", 0);
	/* a NUL byte, inside a string and outside */
	assert_int_equal(json_syntax_check("\"a\0b\"", 5, 0, NULL, 0), -1);
	assert_int_equal(json_syntax_check("[1]\0", 4, 0, NULL, 0), -1);
	assert_false(jansson_ok("\"a\0b\"", 5));
	/* the length given is what is checked, not up to a NUL */
	assert_int_equal(json_syntax_check("[1] trailing", 3, 0, NULL, 0), 0);
}

static void test_utf8(void **state)
{
	(void)state;
	expect("\"Gr\xc3\xbc\xc3\x9f" "e \xe2\x82\xac \xf0\x9f\x98\x80\"", 1);
	expect("\"\xe4\"", 0);                    /* Latin-1 */
	expect("\"\xc0\xaf\"", 0);                /* overlong */
	expect("\"\xed\xa0\x80\"", 0);            /* encoded surrogate */
	expect("\"\xf4\x90\x80\x80\"", 0);        /* beyond U+10FFFF */
	expect("\"\xe2\x82\"", 0);                /* cut short */
	expect("[\xc3\xbc]", 0);                  /* valid UTF-8 outside a string */
	char err[128];
	assert_int_equal(json_syntax_check("[\"\xff\"]", 5, 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "UTF-8"));
}

static void test_numbers_beyond_jansson(void **state)
{
	(void)state;
	/* valid JSON that jansson cannot hold: the one divergence */
	assert_int_equal(check("99999999999999999999"), 0);
	assert_false(jansson_ok("99999999999999999999", 20));
	assert_int_equal(check("[1e400]"), 0);
	assert_false(jansson_ok("[1e400]", 7));
	/* underflow is fine for both */
	expect("1e-400", 1);
	expect("9223372036854775807", 1);
}

/* depth nested arrays around inner. */
static char *nested(int depth, const char *inner)
{
	size_t n = 2 * (size_t)depth + strlen(inner) + 1;
	char *s = xmalloc(n), *p = s;
	for (int i = 0; i < depth; i++)
		*p++ = '[';
	p += sprintf(p, "%s", inner);
	for (int i = 0; i < depth; i++)
		*p++ = ']';
	*p = '\0';
	return s;
}

static void test_depth(void **state)
{
	(void)state;
	/* jansson counts every value, scalars too, and allows 2048 levels */
	struct {
		int depth;
		const char *inner;
		int ok;
	} cases[] = {
		{ 2047, "", 1 }, { 2048, "", 1 }, { 2049, "", 0 }, { 2047, "1", 1 },
		{ 2048, "1", 0 }, { 2047, "{}", 1 }, { 2046, "{\"a\":1}", 1 },
		{ 2047, "{\"a\":1}", 0 }, { 2047, "{\"a\":[]}", 0 }, { 5000, "", 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *s = nested(cases[i].depth, cases[i].inner);
		expect(s, cases[i].ok);
		free(s);
	}
	/* depth comes back down: many deep siblings in a row are fine */
	struct buf b = { 0 };
	buf_appendc(&b, '[');
	for (int k = 0; k < 3; k++) {
		char *s = nested(2000, "");
		if (k)
			buf_appendc(&b, ',');
		buf_appends(&b, s);
		free(s);
	}
	buf_appendc(&b, ']');
	assert_int_equal(json_syntax_check(b.data, b.len, '[', NULL, 0), 0);
	buf_free(&b);
}

static void test_top(void **state)
{
	(void)state;
	char err[128];
	assert_int_equal(json_syntax_check(" [1]", 4, '[', err, sizeof err), 0);
	assert_int_equal(json_syntax_check("{}", 2, '{', err, sizeof err), 0);
	assert_int_equal(json_syntax_check("{}", 2, '[', err, sizeof err), -1);
	assert_non_null(strstr(err, "array"));
	assert_int_equal(json_syntax_check("[]", 2, '{', err, sizeof err), -1);
	assert_non_null(strstr(err, "object"));
	assert_int_equal(json_syntax_check("\"[\"", 3, '[', err, sizeof err), -1);
	assert_int_equal(json_syntax_check("1", 1, '[', err, sizeof err), -1);
	assert_int_equal(json_syntax_check("[1,]", 4, '[', err, sizeof err), -1);
	assert_int_equal(json_syntax_check("1", 1, 0, err, sizeof err), 0);
}

static void test_error_text(void **state)
{
	(void)state;
	char err[128];
	assert_int_equal(json_syntax_check("[1,,2]", 6, 0, err, sizeof err), -1);
	assert_non_null(strstr(err, "at byte 3"));
	/* a short buffer is cut, not overrun */
	char small[8];
	memset(small, 'x', sizeof small);
	assert_int_equal(json_syntax_check("[", 1, 0, small, 5), -1);
	assert_int_equal(small[4], '\0');
	assert_int_equal(small[5], 'x');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_long_strings),
		cmocka_unit_test(test_control_bytes),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_numbers_beyond_jansson),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_top),
		cmocka_unit_test(test_error_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
