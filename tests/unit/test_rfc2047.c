/*
 * test_rfc2047.c - decoding of header values with encoded words: B and Q,
 * joined adjacent words, malformed words, charsets, controls, and large
 * inputs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "charset.h"
#include "ingest_rfc2047.h"

/* Decodes a literal and checks the result. */
static void expect(const char *in, const char *want)
{
	char *got = rfc2047_decode(in, strlen(in));
	assert_non_null(got);
	assert_true(utf8_valid(got, strlen(got)));
	assert_string_equal(got, want);
	free(got);
}

static void expect_n(const char *in, size_t n, const char *want)
{
	char *got = rfc2047_decode(in, n);
	assert_true(utf8_valid(got, strlen(got)));
	assert_string_equal(got, want);
	free(got);
}

static void test_plain(void **state)
{
	(void)state;
	expect("", "");
	expect("Hello world", "Hello world");
	expect("a = b ? c", "a = b ? c");
	expect_n(NULL, 0, "");
}

static void test_q(void **state)
{
	(void)state;
	expect("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=", "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen");
	expect("=?utf-8?q?a=3Db?=", "a=b");
	expect("=?utf-8?q?lower=c3=bc?=", "lower\xc3\xbc");
	/* '=' without two hex digits stays */
	expect("=?utf-8?q?50=_off=Z?=", "50= off=Z");
	expect("=?utf-8?q?\?=", ""); /* "?" escaped: no trigraph */
}

static void test_b(void **state)
{
	(void)state;
	expect("=?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.de>",
	       "J\xc3\xbcrgen M\xc3\xbcller <juergen@example.de>");
	expect("=?utf-8?b?R3LDvMOf?=", "Gr\xc3\xbc\xc3\x9f");
	/* missing padding is forgiven */
	expect("=?utf-8?b?YWI?=", "ab");
	expect("=?utf-8?b?YWI=?=", "ab");
}

static void test_case_and_language(void **state)
{
	(void)state;
	expect("=?uTf-8?b?w7w=?=", "\xc3\xbc");
	expect("=?utf-8*de?Q?M=C3=BCnchen?=", "M\xc3\xbcnchen");
	expect("=?ISO-8859-1*en-US?q?caf=E9?=", "caf\xc3\xa9");
}

static void test_split_utf8_q(void **state)
{
	(void)state;
	/* U+00FC split over two adjacent words, as Rspamd issue #5786 */
	expect("=?UTF-8?Q?Gr=C3?= =?UTF-8?Q?=BC=C3=9Fe?=", "Gr\xc3\xbc\xc3\x9f" "e");
	/* a 4-byte character split three ways, folded whitespace between */
	expect("=?utf-8?q?=F0=9F?=\r\n =?UTF-8?q?=98?=\t=?utf-8?Q?=80!?=", "\xf0\x9f\x98\x80!");
}

static void test_split_utf8_b(void **state)
{
	(void)state;
	/* "\xc3" and "\xbc" in separate base64 words */
	expect("=?utf-8?b?ww==?= =?utf-8?b?vA==?=", "\xc3\xbc");
}

static void test_mixed(void **state)
{
	(void)state;
	/* B and Q words of one charset are joined too */
	expect("=?utf-8?b?R3LD?= =?utf-8?q?=BCn?=", "Gr\xc3\xbcn");
	/* whitespace between words of different charsets is dropped as well */
	expect("=?iso-8859-1?q?=E4?= =?koi8-r?q?=F0?=", "\xc3\xa4\xd0\x9f");
	/* text around words keeps its spaces */
	expect("Re: =?utf-8?q?M=C3=BCnchen?= und mehr", "Re: M\xc3\xbcnchen und mehr");
	expect("x=?utf-8?q?y?=z", "xyz");
	/* non-blank text between words keeps the words apart */
	expect("=?utf-8?q?=C3?= - =?utf-8?q?=BC?=", "\xef\xbf\xbd - \xef\xbf\xbd");
}

static void test_latin1_word(void **state)
{
	(void)state;
	expect("=?iso-8859-1?q?Win_money_=E4=F6=FC?=", "Win money \xc3\xa4\xc3\xb6\xc3\xbc");
	expect("=?windows-1252?q?=80_5?=", "\xe2\x82\xac 5");
}

static void test_unknown_charset(void **state)
{
	(void)state;
	/* unknown charset: bytes read as UTF-8, else Windows-1252 */
	expect("=?x-no-such?q?=E4t?=", "\xc3\xa4t");
	expect("=?x-no-such?q?=C3=BC?=", "\xc3\xbc");
	expect("=?utf-8//translit?q?ok?=", "ok");
}

static void test_malformed(void **state)
{
	(void)state;
	expect("=?utf-8?x?abc?=", "=?utf-8?x?abc?=");
	expect("=?utf-8?q?abc", "=?utf-8?q?abc");
	expect("=??q?abc?=", "=??q?abc?=");
	expect("=?utf-8?q?a b?=", "=?utf-8?q?a b?=");
	expect("=?utf-8?", "=?utf-8?");
	expect("=?", "=?");
	expect("=", "=");
	/* a broken word next to a good one */
	expect("=?utf-8?q?a=?utf-8?q?b?=", "=?utf-8?q?ab");
}

static void test_bad_base64(void **state)
{
	(void)state;
	expect("=?utf-8?b?!!!!?= x", "=?utf-8?b?!!!!?= x");
	expect("=?utf-8?b?Y?=", "=?utf-8?b?Y?=");           /* one char: impossible length */
	expect("=?utf-8?b?YW=I?=", "=?utf-8?b?YW=I?=");     /* padding inside */
	/* a bad word breaks a run: the good words around it are decoded */
	expect("=?utf-8?b?YQ==?= =?utf-8?b?*?= =?utf-8?b?Yg==?=", "a =?utf-8?b?*?= b");
}

static void test_controls(void **state)
{
	(void)state;
	expect("=?utf-8?q?a=0D=0Ab?=", "a  b");
	expect("=?utf-8?q?a=00b=01c=1Fd=09e?=", "a b c d e");
	expect("=?utf-8?b?YQ1iCmMAZA==?=", "a b c d");
	/* raw controls and line breaks outside words too */
	expect_n("a\r\n b\0c", 7, "a   b c");
	char *got = rfc2047_decode("=?utf-16le?b?QQAAAEIA?=", 23);
	assert_string_equal(got, "A B");
	free(got);
}

static void test_raw_8bit(void **state)
{
	(void)state;
	expect("Win money \xe4\xf6\xfc raw latin1", "Win money \xc3\xa4\xc3\xb6\xc3\xbc raw latin1");
	expect("Gr\xc3\xbc\xc3\x9f" "e", "Gr\xc3\xbc\xc3\x9f" "e");
	expect("\x93quoted\x94", "\xe2\x80\x9cquoted\xe2\x80\x9d");
	expect("bad \xed\xa0\x80 surrogate", "bad \xc3\xad\xc2\xa0\xe2\x82\xac surrogate");
	expect("\xff =?utf-8?q?=C3=BC?=", "\xc3\xbf \xc3\xbc");
	/* invalid UTF-8 inside a UTF-8 word becomes U+FFFD */
	expect("=?utf-8?q?a=FFb?=", "a\xef\xbf\xbd" "b");
}

/* Encoded words that decode to no byte (a fuzzing finding: the first of
 * a run once appended from a NULL buffer).  "?\?=" avoids a trigraph. */
static void test_empty_words(void **state)
{
	(void)state;
	expect("=?U?Q?\?=", "");
	expect("=?utf-8?B?\?= x", " x");
	expect("a =?utf-8?Q?\?= =?utf-8?Q?b?=", "a b");
	expect("=?utf-8?Q?\?==?utf-8?Q?=C3=A4?=", "\xc3\xa4");
}

static void test_large_input(void **state)
{
	(void)state;
	/* 20000 characters: many small words, all of one run */
	size_t words = 20000 / 17 + 1;
	struct buf in = { 0 };
	for (size_t i = 0; i < words; i++)
		buf_appends(&in, "=?utf-8?q?=C3?= ");
	buf_appends(&in, "=?utf-8?q?=BC?=");
	clock_t t0 = clock();
	char *got = rfc2047_decode(in.data, in.len);
	assert_true(utf8_valid(got, strlen(got)));
	/* the last 0xC3 and 0xBC form one character, the rest are invalid */
	size_t n = strlen(got);
	assert_true(n >= 2);
	assert_string_equal(got + n - 2, "\xc3\xbc");
	free(got);
	buf_free(&in);

	/* 20000 characters of nearly-words that never finish */
	for (size_t i = 0; i < 20000 / 8; i++)
		buf_appends(&in, "=?a?q?b=");
	got = rfc2047_decode(in.data, in.len);
	assert_int_equal(strlen(got), in.len);
	free(got);
	buf_free(&in);

	/* one huge word */
	buf_appends(&in, "=?utf-8?q?");
	for (size_t i = 0; i < 20000; i++)
		buf_appends(&in, "=41");
	buf_appends(&in, "?=");
	got = rfc2047_decode(in.data, in.len);
	assert_int_equal(strlen(got), 20000);
	assert_int_equal(got[19999], 'A');
	free(got);
	buf_free(&in);

	/* 20000 bytes of 8-bit text */
	char raw[20000];
	memset(raw, '\xe4', sizeof raw);
	got = rfc2047_decode(raw, sizeof raw);
	assert_int_equal(strlen(got), 2 * sizeof raw);
	free(got);
	/* all of it well under a second: nothing quadratic */
	assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 1.0);
}

/* The forms Rspamd 3.12 and 4.x write, as captured (tests/fixtures). */
static void test_rspamd_generations(void **state)
{
	(void)state;
	/* 4.1.5: whole characters, words glued to the text around them */
	expect("Gr=?UTF-8?Q?=C3=BC=C3=9Fe?= aus M=?UTF-8?Q?=C3=BCnchen?=",
	       "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen");
	/* and to each other, no blank between */
	expect("=?UTF-8?Q?Gr=C3=BC=C3=9Fe?==?UTF-8?Q?_aus_M=C3=BCnchen?=",
	       "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen");
	expect("a=?UTF-8?Q?b?==?UTF-8?Q?c?=d", "abcd");
	/* 3.12.1: one word, text glued after it */
	expect("Gr=?UTF-8?Q?=C3=BC=C3=9Fe_aus_M=C3=BC?=nchen",
	       "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen");
	/* 3.12.1 and 4.x: the replacement characters of a Latin-1 subject */
	expect("Win money =?UTF-8?Q?=EF=BF=BD=EF=BF=BD=EF=BF=BD?= raw latin1",
	       "Win money \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd raw latin1");
	/* an envelope From with '@' as =40 comes out as the address */
	expect("=?UTF-8?Q?j=C3=BCrgen=40m=C3=BCnchen.example?=",
	       "j\xc3\xbcrgen@m\xc3\xbcnchen.example");
	expect("j=?UTF-8?Q?=C3=BC?=rgen=?UTF-8?Q?=40?=m=?UTF-8?Q?=C3=BC?=nchen.example",
	       "j\xc3\xbcrgen@m\xc3\xbcnchen.example");
}

/* 3.12.1's broken words: characters split across words (joined again
 * when the words touch), halves that stay alone, garbage bytes after the
 * last word.  Always valid UTF-8 without control characters. */
static void test_rspamd_312_broken_words(void **state)
{
	(void)state;
	expect("=?UTF-8?Q?M=C3?==?UTF-8?Q?=BCnchen?=", "M\xc3\xbcnchen");
	expect("=?UTF-8?Q?M=C3?= =?UTF-8?Q?=BCnchen?=", "M\xc3\xbcnchen");
	expect("=?UTF-8?Q?M=E2=82?==?UTF-8?Q?=AC?=", "M\xe2\x82\xac");
	/* a half character with text between: replacement characters */
	expect("=?UTF-8?Q?a=C3?=x=?UTF-8?Q?=BCb?=", "a\xef\xbf\xbdx\xef\xbf\xbd" "b");
	/* a half character at the very end */
	expect("=?UTF-8?Q?Preis:_5=E2=82?=", "Preis: 5\xef\xbf\xbd");
	/* garbage after the last word: 8-bit bytes, controls, DEL, C1 */
	expect("=?UTF-8?Q?Hello,_world!?=\x01\xff\x7f",
	       "Hello, world! \xc3\xbf ");
	expect("=?UTF-8?Q?x?=\xc2\x85\xc2\x9fy", "x  y");
	/* controls encoded inside a word */
	expect("=?UTF-8?Q?a=00b=1Bc=7Fd=C2=85e?=", "a b c d e");
	/* 8-bit bytes inside a word */
	expect("=?UTF-8?Q?a\xff" "b?=", "a\xef\xbf\xbd" "b");
	/* cut off in the middle of a word: kept as text */
	expect("=?UTF-8?Q?Gr=C3=BC=C3", "=?UTF-8?Q?Gr=C3=BC=C3");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rspamd_generations),
		cmocka_unit_test(test_rspamd_312_broken_words),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_q),
		cmocka_unit_test(test_b),
		cmocka_unit_test(test_case_and_language),
		cmocka_unit_test(test_split_utf8_q),
		cmocka_unit_test(test_split_utf8_b),
		cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_latin1_word),
		cmocka_unit_test(test_unknown_charset),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_bad_base64),
		cmocka_unit_test(test_controls),
		cmocka_unit_test(test_raw_8bit),
		cmocka_unit_test(test_empty_words),
		cmocka_unit_test(test_large_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
