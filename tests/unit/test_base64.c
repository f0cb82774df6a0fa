/*
 * test_base64.c - unit tests of the base64 decoder: RFC 4648 test
 * vectors, whitespace anywhere, each kind of bad input with its message,
 * and a large random round trip against OpenSSL's encoder.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>

#include "common.h"
#include "ingest_base64.h"

struct sink {
	struct buf data;
	size_t pieces;
	size_t max_piece;
	int fail_at;   /* 1-based piece to refuse, 0 = none */
};

static int sink_out(void *arg, const void *p, size_t n, struct qerr *e)
{
	struct sink *s = arg;
	s->pieces++;
	if (s->fail_at > 0 && s->pieces == (size_t)s->fail_at)
		return qerr_input(e, 413, "test sink is full");
	if (n > s->max_piece)
		s->max_piece = n;
	buf_append(&s->data, p, n);
	return 0;
}

/* Decodes in and checks the result is want (n bytes). */
static void expect_ok(const char *in, const char *want, size_t n)
{
	struct sink s = { 0 };
	struct qerr e = { 0 };
	if (base64_decode_to(in, strlen(in), sink_out, &s, &e) != 0)
		fail_msg("decoding '%s' failed: %s", in, e.msg);
	assert_int_equal(s.data.len, n);
	if (n)
		assert_memory_equal(s.data.data, want, n);
	else
		assert_int_equal(s.pieces, 0);
	buf_free(&s.data);
}

/* Decodes in (len bytes) and checks it fails with 400 naming what. */
static void expect_bad(const char *in, size_t len, const char *what)
{
	struct sink s = { 0 };
	struct qerr e = { 0 };
	assert_int_equal(base64_decode_to(in, len, sink_out, &s, &e), -1);
	assert_int_equal(e.cls, QERR_INPUT);
	assert_int_equal(e.http, 400);
	if (strstr(e.msg, what) == NULL)
		fail_msg("error for '%s' is '%s', expected '%s'", in, e.msg, what);
	buf_free(&s.data);
}

static void test_rfc4648_vectors(void **state)
{
	(void)state;
	expect_ok("", "", 0);
	expect_ok("Zg==", "f", 1);
	expect_ok("Zm8=", "fo", 2);
	expect_ok("Zm9v", "foo", 3);
	expect_ok("Zm9vYg==", "foob", 4);
	expect_ok("Zm9vYmE=", "fooba", 5);
	expect_ok("Zm9vYmFy", "foobar", 6);
	/* All of the alphabet, including '+' and '/'. */
	expect_ok("+/+/", "\xfb\xff\xbf", 3);
	expect_ok("AAECAwQFBgc=", "\x00\x01\x02\x03\x04\x05\x06\x07", 8);
}

static void test_whitespace(void **state)
{
	(void)state;
	expect_ok("Zm9v\r\nYmFy\r\n", "foobar", 6);
	expect_ok("Zm9v\nYmFy", "foobar", 6);
	expect_ok(" Z m\t9 v\r\nY g = \r\n= \n", "foob", 4);
	expect_ok("\r\n\r\n", "", 0);
	expect_ok("\t Zm8= \t", "fo", 2);
}

static void test_bad_input(void **state)
{
	(void)state;
	expect_bad("Zm9v!mFy", 8, "invalid character 0x21 at offset 4");
	expect_bad("Zm9v-_==", 8, "invalid character 0x2d at offset 4");
	expect_bad("Zm9v\0mFy", 8, "invalid character 0x00 at offset 4");
	expect_bad("Zm9v\xc3\xa4", 6, "invalid character 0xc3");
	expect_bad("Zm9\vv", 5, "invalid character 0x0b");
	/* Length. */
	expect_bad("Zg=", 3, "length 3 is not a multiple of 4");
	expect_bad("Zm9vY", 5, "length 5 is not a multiple of 4");
	expect_bad("Zm9v\r\nYm", 8, "length 6 is not a multiple of 4");
	expect_bad("Z", 1, "length 1");
	/* Padding. */
	expect_bad("Z===", 4, "misplaced padding at offset 1");
	expect_bad("=Zg=", 4, "misplaced padding at offset 0");
	expect_bad("Zm9vYmFy====", 12, "misplaced padding at offset 8");
	expect_bad("Zg==Zg==", 8, "data after padding at offset 4");
	expect_bad("Zm8=\r\nZg", 8, "data after padding at offset 6");
	expect_bad("Zg=a", 4, "data after padding at offset 3");
	expect_bad("Zg===", 5, "data after padding at offset 4");
}

/* 200 KB of random bytes encoded by OpenSSL, with line breaks, comes
 * back byte-exact in pieces of at most 48 KB. */
static void test_random_round_trip(void **state)
{
	(void)state;
	for (size_t n = 200 * 1024; n < 200 * 1024 + 3; n++) {
		unsigned char *raw = xmalloc(n);
		unsigned seed = (unsigned)n;
		for (size_t i = 0; i < n; i++)
			raw[i] = (unsigned char)rand_r(&seed);
		size_t enc_cap = 4 * ((n + 2) / 3) + 1;
		unsigned char *enc = xmalloc(enc_cap);
		int elen = EVP_EncodeBlock(enc, raw, (int)n);
		assert_true(elen > 0);

		/* Break it into 76-character CRLF lines, as MIME does. */
		struct buf lines = { 0 };
		for (int i = 0; i < elen; i += 76) {
			buf_append(&lines, enc + i, (size_t)(elen - i < 76 ? elen - i : 76));
			buf_appends(&lines, "\r\n");
		}
		const char *inputs[2] = { (const char *)enc, lines.data };
		size_t lens[2] = { (size_t)elen, lines.len };
		for (int k = 0; k < 2; k++) {
			struct sink s = { 0 };
			struct qerr e = { 0 };
			assert_int_equal(base64_decode_to(inputs[k], lens[k], sink_out, &s, &e), 0);
			assert_int_equal(s.data.len, n);
			assert_memory_equal(s.data.data, raw, n);
			assert_true(s.max_piece <= 48 * 1024);
			assert_true(s.pieces >= 5);
			buf_free(&s.data);
		}
		buf_free(&lines);
		free(enc);
		free(raw);
	}
}

static void test_callback_error(void **state)
{
	(void)state;
	size_t n = 100 * 1024;
	unsigned char *raw = xcalloc(1, n);
	unsigned char *enc = xmalloc(4 * ((n + 2) / 3) + 1);
	int elen = EVP_EncodeBlock(enc, raw, (int)n);
	struct sink s = { .fail_at = 2 };
	struct qerr e = { 0 };
	assert_int_equal(base64_decode_to((const char *)enc, (size_t)elen, sink_out, &s, &e), -1);
	assert_int_equal(e.http, 413);
	assert_string_equal(e.msg, "test sink is full");
	assert_int_equal(s.pieces, 2);
	buf_free(&s.data);
	free(enc);
	free(raw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_whitespace),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_random_round_trip),
		cmocka_unit_test(test_callback_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
