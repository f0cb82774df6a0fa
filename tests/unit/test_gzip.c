/*
 * test_gzip.c - unit tests of the streaming gzip inflate: round trips in
 * odd piece sizes, truncated and corrupted streams, the output cap
 * against a gzip bomb, and refusal of anything that is not one gzip
 * member.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "common.h"
#include "ingest_gzip.h"

struct sink {
	struct buf data;
	bool keep;        /* keep the bytes (else only count them) */
	uint64_t total;
	size_t pieces;
	size_t max_piece;
	int fail_after;   /* refuse the piece after this many, if > 0 */
};

static int sink_out(void *arg, const void *p, size_t n, struct qerr *e)
{
	struct sink *s = arg;
	if (s->fail_after > 0 && s->pieces >= (size_t)s->fail_after)
		return qerr_temp(e, "test sink refuses");
	s->pieces++;
	s->total += n;
	if (n > s->max_piece)
		s->max_piece = n;
	if (s->keep)
		buf_append(&s->data, p, n);
	return 0;
}

/* Compresses data as one gzip member with zlib. */
static void gzip_data(const void *data, size_t n, struct buf *out)
{
	z_stream zs = { 0 };
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
			 Z_OK);
	buf_reset(out);
	unsigned char tmp[16384];
	zs.next_in = (Bytef *)(uintptr_t)data;
	zs.avail_in = (uInt)n;
	int rc;
	do {
		zs.next_out = tmp;
		zs.avail_out = sizeof tmp;
		rc = deflate(&zs, Z_FINISH);
		assert_true(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
		buf_append(out, tmp, sizeof tmp - zs.avail_out);
	} while (rc != Z_STREAM_END);
	deflateEnd(&zs);
}

/* Feeds in pieces (step > 0 fixed, step < 0 random up to -step, 0 whole)
 * and finishes; returns the first failure. */
static int inflate_all(const void *gz, size_t n, long step, uint64_t max_out, struct sink *s,
		       struct qerr *e, size_t *consumed)
{
	struct gunzip *g = gunzip_new(max_out, sink_out, s);
	const unsigned char *p = gz;
	size_t off = 0;
	unsigned seed = 4242;
	int rc = 0;
	while (off < n && rc == 0) {
		size_t k = step == 0 ? n : step > 0 ? (size_t)step
						   : 1 + (size_t)(rand_r(&seed) % (unsigned)(-step));
		if (k > n - off)
			k = n - off;
		rc = gunzip_feed(g, p + off, k, e);
		off += k;
	}
	if (consumed)
		*consumed = off;
	if (rc == 0)
		rc = gunzip_finish(g, e);
	gunzip_free(g);
	return rc;
}

/* 1 MB of text-like data: compressible but not trivially. */
static char *make_data(size_t n)
{
	char *d = xmalloc(n);
	unsigned seed = 1;
	static const char words[][8] = { "quar", "antine", " ", "\r\n", "spam", "ham", "Rspamd",
					 "==", "\t", "\x80\xff" };
	size_t i = 0;
	while (i < n) {
		const char *w = words[rand_r(&seed) % 10];
		for (size_t j = 0; w[j] && i < n; j++)
			d[i++] = w[j];
		if (rand_r(&seed) % 50 == 0 && i < n)
			d[i++] = (char)(rand_r(&seed) & 0xff);
	}
	return d;
}

static void test_round_trip(void **state)
{
	(void)state;
	size_t n = 1024 * 1024;
	char *data = make_data(n);
	struct buf gz = { 0 };
	gzip_data(data, n, &gz);
	assert_true(gz.len < n);
	const long steps[] = { 0, 1, 3, 7, 333, 4099, 65537, -5000 };
	for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
		struct sink s = { .keep = true };
		struct qerr e = { 0 };
		assert_int_equal(inflate_all(gz.data, gz.len, steps[k], n, &s, &e, NULL), 0);
		assert_int_equal(s.data.len, n);
		assert_memory_equal(s.data.data, data, n);
		assert_true(s.max_piece <= 64 * 1024);
		buf_free(&s.data);
	}
	/* Exactly at the cap is fine, one byte under it is not. */
	struct sink s = { .keep = false };
	struct qerr e = { 0 };
	assert_int_equal(inflate_all(gz.data, gz.len, 0, n - 1, &s, &e, NULL), -1);
	assert_int_equal(e.cls, QERR_INPUT);
	assert_int_equal(e.http, 413);
	assert_true(s.total <= n - 1);
	free(data);
	buf_free(&gz);
}

static void test_empty_body(void **state)
{
	(void)state;
	struct buf gz = { 0 };
	gzip_data("", 0, &gz);
	struct sink s = { .keep = true };
	struct qerr e = { 0 };
	assert_int_equal(inflate_all(gz.data, gz.len, 1, 0, &s, &e, NULL), 0);
	assert_int_equal(s.data.len, 0);
	/* Nothing fed at all: the stream never ended. */
	struct gunzip *g = gunzip_new(100, sink_out, &s);
	assert_int_equal(gunzip_finish(g, &e), -1);
	assert_int_equal(e.http, 400);
	assert_non_null(strstr(e.msg, "truncated"));
	gunzip_free(g);
	buf_free(&gz);
}

static void test_truncated(void **state)
{
	(void)state;
	size_t n = 200 * 1024;
	char *data = make_data(n);
	struct buf gz = { 0 };
	gzip_data(data, n, &gz);
	const size_t cut[] = { 1, 4, 8, 9, gz.len / 2, gz.len - 10 };
	for (size_t k = 0; k < sizeof cut / sizeof cut[0]; k++) {
		struct sink s = { .keep = false };
		struct qerr e = { 0 };
		assert_int_equal(inflate_all(gz.data, gz.len - cut[k], 777, n, &s, &e, NULL), -1);
		assert_int_equal(e.cls, QERR_INPUT);
		assert_int_equal(e.http, 400);
		assert_non_null(strstr(e.msg, "truncated"));
	}
	free(data);
	buf_free(&gz);
}

static void test_corrupt(void **state)
{
	(void)state;
	size_t n = 100 * 1024;
	char *data = make_data(n);
	struct buf gz = { 0 };
	gzip_data(data, n, &gz);
	/* Trailer: CRC-32 (4 bytes) then the length (4 bytes). */
	const size_t at[] = { gz.len - 8, gz.len - 5, gz.len - 4 };
	for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
		struct buf bad = { 0 };
		buf_append(&bad, gz.data, gz.len);
		bad.data[at[k]] ^= 0x01;
		for (long step = 0; step < 2; step++) {
			struct sink s = { .keep = false };
			struct qerr e = { 0 };
			assert_int_equal(inflate_all(bad.data, bad.len, step ? 1000 : 0, n, &s, &e, NULL),
					 -1);
			assert_int_equal(e.cls, QERR_INPUT);
			assert_int_equal(e.http, 400);
			assert_non_null(strstr(e.msg, "bad gzip data"));
		}
		buf_free(&bad);
	}
	/* A flipped bit in the header's magic. */
	struct buf bad = { 0 };
	buf_append(&bad, gz.data, gz.len);
	bad.data[1] ^= 0x40;
	struct sink s = { 0 };
	struct qerr e = { 0 };
	assert_int_equal(inflate_all(bad.data, bad.len, 0, n, &s, &e, NULL), -1);
	assert_int_equal(e.http, 400);
	buf_free(&bad);
	free(data);
	buf_free(&gz);
}

static void test_not_gzip(void **state)
{
	(void)state;
	struct sink s = { 0 };
	struct qerr e = { 0 };
	const char *plain = "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
	assert_int_equal(inflate_all(plain, strlen(plain), 0, 1000, &s, &e, NULL), -1);
	assert_int_equal(e.http, 400);
	assert_int_equal(s.total, 0);

	/* zlib format (what compress() writes) is not gzip either. */
	unsigned char z[256];
	uLongf zl = sizeof z;
	assert_int_equal(compress(z, &zl, (const Bytef *)plain, strlen(plain)), Z_OK);
	assert_int_equal(inflate_all(z, zl, 0, 1000, &s, &e, NULL), -1);
	assert_int_equal(e.http, 400);
	assert_int_equal(s.total, 0);
}

static void test_trailing_data(void **state)
{
	(void)state;
	struct buf gz = { 0 }, two = { 0 };
	gzip_data("hello", 5, &gz);
	/* Two members back to back: refused (see ingest_gzip.c). */
	buf_append(&two, gz.data, gz.len);
	buf_append(&two, gz.data, gz.len);
	for (long step = 0; step < 2; step++) {
		struct sink s = { .keep = true };
		struct qerr e = { 0 };
		assert_int_equal(inflate_all(two.data, two.len, step, 1000, &s, &e, NULL), -1);
		assert_int_equal(e.http, 400);
		assert_non_null(strstr(e.msg, "after the end"));
		buf_free(&s.data);
	}
	/* A single byte of garbage after the member. */
	buf_reset(&two);
	buf_append(&two, gz.data, gz.len);
	buf_appendc(&two, '\0');
	struct sink s = { 0 };
	struct qerr e = { 0 };
	assert_int_equal(inflate_all(two.data, two.len, 0, 1000, &s, &e, NULL), -1);
	assert_int_equal(e.http, 400);
	buf_free(&gz);
	buf_free(&two);
}

/* 100 MB of zeros, compressed to about 100 KB: inflating stops at the
 * 1 MB cap, early in the input, without producing more than the cap. */
static void test_bomb(void **state)
{
	(void)state;
	size_t big = 100u * 1024 * 1024;
	struct buf gz = { 0 };
	{
		z_stream zs = { 0 };
		assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9,
					      Z_DEFAULT_STRATEGY), Z_OK);
		unsigned char *zeros = xcalloc(1, 1024 * 1024);
		unsigned char tmp[65536];
		for (size_t done = 0; done < big; done += 1024 * 1024) {
			zs.next_in = zeros;
			zs.avail_in = 1024 * 1024;
			int flush = done + 1024 * 1024 >= big ? Z_FINISH : Z_NO_FLUSH;
			int rc;
			do {
				zs.next_out = tmp;
				zs.avail_out = sizeof tmp;
				rc = deflate(&zs, flush);
				buf_append(&gz, tmp, sizeof tmp - zs.avail_out);
			} while (zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
		}
		deflateEnd(&zs);
		free(zeros);
	}
	assert_true(gz.len < 200 * 1024);

	int64_t t0 = clock_ms();
	struct sink s = { .keep = false };
	struct qerr e = { 0 };
	size_t consumed = 0;
	assert_int_equal(inflate_all(gz.data, gz.len, 4096, 1024 * 1024, &s, &e, &consumed), -1);
	assert_int_equal(e.cls, QERR_INPUT);
	assert_int_equal(e.http, 413);
	assert_non_null(strstr(e.msg, "1048576"));
	assert_true(s.total <= 1024 * 1024);
	assert_true(s.max_piece <= 64 * 1024);
	/* It stopped after about 1% of the compressed input. */
	assert_true(consumed < gz.len / 10);
	assert_true(clock_ms() - t0 < 2000);

	/* Fed whole, it stops just the same. */
	struct sink s2 = { .keep = false };
	assert_int_equal(inflate_all(gz.data, gz.len, 0, 1024 * 1024, &s2, &e, NULL), -1);
	assert_int_equal(e.http, 413);
	assert_true(s2.total <= 1024 * 1024);
	buf_free(&gz);
}

static void test_callback_error(void **state)
{
	(void)state;
	size_t n = 300 * 1024;
	char *data = make_data(n);
	struct buf gz = { 0 };
	gzip_data(data, n, &gz);
	struct sink s = { .fail_after = 2 };
	struct qerr e = { 0 };
	assert_int_equal(inflate_all(gz.data, gz.len, 0, n, &s, &e, NULL), -1);
	assert_int_equal(e.cls, QERR_TEMP);
	assert_string_equal(e.msg, "test sink refuses");
	assert_int_equal(s.pieces, 2);
	free(data);
	buf_free(&gz);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_empty_body),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_not_gzip),
		cmocka_unit_test(test_trailing_data),
		cmocka_unit_test(test_bomb),
		cmocka_unit_test(test_callback_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
