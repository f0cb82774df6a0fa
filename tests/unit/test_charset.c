/*
 * test_charset.c - UTF-8 validation, the Windows-1252 fallback for 8-bit
 * bytes, iconv conversions and control stripping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "charset.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static void test_utf8_valid_accepts(void **state)
{
	(void)state;
	assert_true(utf8_valid(S("")));
	assert_true(utf8_valid(S("plain ascii")));
	assert_true(utf8_valid(S("Gr\xc3\xbc\xc3\x9f" "e")));
	assert_true(utf8_valid(S("\xe2\x82\xac")));         /* U+20AC */
	assert_true(utf8_valid(S("\xf0\x9f\x98\x80")));     /* U+1F600 */
	assert_true(utf8_valid(S("\xf4\x8f\xbf\xbf")));     /* U+10FFFF */
	assert_true(utf8_valid(S("\xed\x9f\xbf")));         /* U+D7FF */
	assert_true(utf8_valid(S("\xee\x80\x80")));         /* U+E000 */
}

static void test_utf8_valid_rejects(void **state)
{
	(void)state;
	assert_false(utf8_valid(S("\xc0\xaf")));            /* overlong '/' */
	assert_false(utf8_valid(S("\xc1\xbf")));
	assert_false(utf8_valid(S("\xe0\x80\xaf")));        /* overlong 3 bytes */
	assert_false(utf8_valid(S("\xf0\x80\x80\xaf")));    /* overlong 4 bytes */
	assert_false(utf8_valid(S("\xed\xa0\x80")));        /* surrogate D800 */
	assert_false(utf8_valid(S("\xed\xbf\xbf")));        /* surrogate DFFF */
	assert_false(utf8_valid(S("\xf4\x90\x80\x80")));    /* U+110000 */
	assert_false(utf8_valid(S("\xf5\x80\x80\x80")));
	assert_false(utf8_valid(S("\xff")));
	assert_false(utf8_valid(S("\x80")));                /* lone continuation */
	assert_false(utf8_valid(S("ab\xc3")));              /* cut at the end */
	assert_false(utf8_valid(S("\xe2\x82")));
	assert_false(utf8_valid(S("\xe4\xf6\xfc")));        /* Latin-1 */
}

/* Long ASCII runs are checked a word at a time: a bad or multi-byte
 * sequence is found at every offset and alignment, and the length given
 * is what is checked. */
static void test_utf8_valid_long_runs(void **state)
{
	(void)state;
	char s[40];
	for (size_t at = 0; at < 37; at++) {
		memset(s, 'a', sizeof s);
		s[at] = (char)0xff;
		assert_false(utf8_valid(s, sizeof s));
		assert_true(utf8_valid(s, at));
		s[at] = (char)0xc3;
		s[at + 1] = (char)0xbc;
		assert_true(utf8_valid(s, sizeof s));
		assert_false(utf8_valid(s, at + 1)); /* cut inside the sequence */
		s[at + 1] = 'a';
		assert_false(utf8_valid(s, sizeof s)); /* lead byte without its tail */
	}
}

static char *conv8(const char *p, size_t n)
{
	static struct buf b;
	buf_reset(&b);
	charset_append_8bit(&b, p, n);
	return b.data ? b.data : "";
}

static void test_8bit_keeps_utf8(void **state)
{
	(void)state;
	assert_string_equal(conv8(S("M\xc3\xbcnchen")), "M\xc3\xbcnchen");
	assert_string_equal(conv8(S("ascii")), "ascii");
}

static void test_8bit_cp1252(void **state)
{
	(void)state;
	/* Latin-1 range */
	assert_string_equal(conv8(S("\xe4\xf6\xfc\xdf")), "\xc3\xa4\xc3\xb6\xc3\xbc\xc3\x9f");
	assert_string_equal(conv8(S("\xa0")), "\xc2\xa0");
	assert_string_equal(conv8(S("\xff")), "\xc3\xbf");
	/* the Windows-1252 block */
	assert_string_equal(conv8(S("\x80")), "\xe2\x82\xac");     /* euro */
	assert_string_equal(conv8(S("\x93hi\x94")), "\xe2\x80\x9chi\xe2\x80\x9d");
	assert_string_equal(conv8(S("\x8a\x9f")), "\xc5\xa0\xc5\xb8");
	assert_string_equal(conv8(S("\x99")), "\xe2\x84\xa2");     /* trade mark */
	/* undefined bytes become U+FFFD */
	static const char undef[] = { '\x81', '\x8d', '\x8f', '\x90', '\x9d' };
	for (size_t i = 0; i < sizeof undef; i++)
		assert_string_equal(conv8(&undef[i], 1), "\xef\xbf\xbd");
	/* one invalid byte makes the whole span cp1252 */
	assert_string_equal(conv8(S("\xc3\xbc\xff")), "\xc3\x83\xc2\xbc\xc3\xbf");
	char *r = conv8(S("\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f"
			  "\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f"));
	assert_true(utf8_valid(r, strlen(r)));
}

static int conv(const char *cs, const char *p, size_t n, struct buf *b)
{
	buf_reset(b);
	return charset_append(b, cs, p, n);
}

static void test_append_named(void **state)
{
	(void)state;
	struct buf b = { 0 };
	assert_int_equal(conv("utf-8", S("M\xc3\xbcnchen"), &b), 0);
	assert_string_equal(b.data, "M\xc3\xbcnchen");
	assert_int_equal(conv("UTF-8", S("a\xffz"), &b), 0);
	assert_string_equal(b.data, "a\xef\xbf\xbdz");
	assert_int_equal(conv("utf8", S("a\xed\xa0\x80z"), &b), 0);
	assert_true(utf8_valid(b.data, b.len));
	assert_non_null(strstr(b.data, "\xef\xbf\xbd"));
	assert_int_equal(conv("ISO-8859-1", S("\xe4"), &b), 0);
	assert_string_equal(b.data, "\xc3\xa4");
	assert_int_equal(conv("Latin1", S("\xfc"), &b), 0);
	assert_string_equal(b.data, "\xc3\xbc");
	assert_int_equal(conv("iso-8859-15", S("\xa4"), &b), 0);
	assert_string_equal(b.data, "\xe2\x82\xac");
	assert_int_equal(conv("KOI8-R", S("\xf0"), &b), 0);
	assert_string_equal(b.data, "\xd0\x9f");
	assert_int_equal(conv("windows-1251", S("\xcf\xf0\xe8"), &b), 0);
	assert_string_equal(b.data, "\xd0\x9f\xd1\x80\xd0\xb8");
	assert_int_equal(conv("Shift_JIS", S("\x82\xa0"), &b), 0);
	assert_string_equal(b.data, "\xe3\x81\x82");
	assert_int_equal(conv("us-ascii", S("plain"), &b), 0);
	assert_string_equal(b.data, "plain");
	/* 8-bit text labelled ASCII is read as it most likely is */
	assert_int_equal(conv("us-ascii", S("\xe4"), &b), 0);
	assert_string_equal(b.data, "\xc3\xa4");
	assert_int_equal(conv("unknown-8bit", S("\xe4"), &b), 0);
	assert_string_equal(b.data, "\xc3\xa4");
	buf_free(&b);
}

static void test_append_invalid_input(void **state)
{
	(void)state;
	struct buf b = { 0 };
	/* invalid Shift_JIS lead/trail: replaced, conversion continues */
	assert_int_equal(conv("shift_jis", S("a\x82\x20z"), &b), 0);
	assert_true(utf8_valid(b.data, b.len));
	assert_true(b.len >= 2 && b.data[0] == 'a' && b.data[b.len - 1] == 'z');
	/* truncated multi-byte at the end */
	assert_int_equal(conv("euc-jp", S("x\xa4"), &b), 0);
	assert_string_equal(b.data, "x\xef\xbf\xbd");
	/* UTF-16 with an odd byte count */
	assert_int_equal(conv("utf-16le", S("A\0B"), &b), 0);
	assert_true(utf8_valid(b.data, b.len));
	assert_int_equal(b.data[0], 'A');
	buf_free(&b);
}

static void test_append_unknown_charset(void **state)
{
	(void)state;
	struct buf b = { 0 };
	buf_appends(&b, "keep");
	assert_int_equal(charset_append(&b, "x-no-such-charset", S("abc")), -1);
	assert_string_equal(b.data, "keep"); /* nothing appended */
	assert_int_equal(charset_append(&b, "", S("abc")), -1);
	assert_int_equal(charset_append(&b, "utf-8//TRANSLIT", S("abc")), -1);
	assert_int_equal(charset_append(&b, "utf 8", S("abc")), -1);
	assert_int_equal(charset_append(&b, NULL, S("abc")), -1);
	char longname[200];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	assert_int_equal(charset_append(&b, longname, S("abc")), -1);
	assert_string_equal(b.data, "keep");
	buf_free(&b);
}

static void test_strip_controls(void **state)
{
	(void)state;
	char s[] = "a\rb\nc\td\x01" "e\x1f" "f\x7fg";
	charset_strip_controls(s);
	assert_string_equal(s, "a b c\td e f\x7fg");
	charset_strip_controls(NULL); /* harmless */
	char u[] = "\xc3\xbc\n";
	charset_strip_controls(u);
	assert_string_equal(u, "\xc3\xbc ");
}

/* Every control goes from display text, C1 included; UTF-8 stays valid. */
static void test_blank_all_controls(void **state)
{
	(void)state;
	char s[] = "a\rb\x01" "c\x7f" "d\xc2\x85" "e\xc2\x9f" "f\xc2\xa0g\xc3\xbc\th";
	charset_blank_all_controls(s);
	assert_string_equal(s, "a b c d e f\xc2\xa0g\xc3\xbc\th");
	assert_true(utf8_valid(s, strlen(s)));
	charset_blank_all_controls(NULL); /* harmless */
}

/* Cutting never leaves half a character behind. */
static void test_utf8_cut(void **state)
{
	(void)state;
	char s[] = "ab\xc3\xa4\xe2\x82\xac";
	utf8_cut(s, 100);
	assert_string_equal(s, "ab\xc3\xa4\xe2\x82\xac");
	utf8_cut(s, 6);
	assert_string_equal(s, "ab\xc3\xa4");
	utf8_cut(s, 3);
	assert_string_equal(s, "ab");
	utf8_cut(s, 0);
	assert_string_equal(s, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_cut),
		cmocka_unit_test(test_utf8_valid_accepts),
		cmocka_unit_test(test_utf8_valid_rejects),
		cmocka_unit_test(test_8bit_keeps_utf8),
		cmocka_unit_test(test_8bit_cp1252),
		cmocka_unit_test(test_append_named),
		cmocka_unit_test(test_append_invalid_input),
		cmocka_unit_test(test_append_unknown_charset),
		cmocka_unit_test(test_strip_controls),
		cmocka_unit_test(test_blank_all_controls),
		cmocka_unit_test(test_utf8_valid_long_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
