/*
 * test_multipart.c - unit tests of the streaming multipart/form-data
 * parser and of boundary extraction: Rspamd's body in both part orders,
 * fed whole, byte by byte and in random pieces; delimiter look-alikes
 * inside content; malformed bodies; limits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common.h"
#include "ingest_multipart.h"

#define BOUNDARY "0123456789abcdef"

/* What the callbacks saw, in order. */
struct seen_part {
	char *name, *filename, *ctype;
	struct buf data;
	size_t pieces;
	bool ended;
};

struct seen {
	struct seen_part parts[80];
	size_t n;
	size_t max_piece;
	bool in_part;
	bool protocol_error; /* data/end without begin, begin inside a part */
	int fail_at_begin;   /* 1-based part number whose begin returns -1 */
};

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static int cb_begin(void *arg, const char *name, const char *filename, const char *ctype,
		    struct qerr *e)
{
	struct seen *s = arg;
	if (s->in_part || s->n >= 80)
		s->protocol_error = true;
	if (s->n >= 80)
		return -1;
	struct seen_part *p = &s->parts[s->n++];
	memset(p, 0, sizeof *p);
	p->name = dup_or_null(name);
	p->filename = dup_or_null(filename);
	p->ctype = dup_or_null(ctype);
	s->in_part = true;
	if (s->fail_at_begin == (int)s->n)
		return qerr_input(e, 422, "test callback refuses part %zu", s->n);
	return 0;
}

static int cb_data(void *arg, const void *d, size_t n, struct qerr *e)
{
	(void)e;
	struct seen *s = arg;
	if (!s->in_part || n == 0)
		s->protocol_error = true;
	if (s->n == 0)
		return 0;
	struct seen_part *p = &s->parts[s->n - 1];
	buf_append(&p->data, d, n);
	p->pieces++;
	if (n > s->max_piece)
		s->max_piece = n;
	return 0;
}

static int cb_end(void *arg, struct qerr *e)
{
	(void)e;
	struct seen *s = arg;
	if (!s->in_part)
		s->protocol_error = true;
	s->in_part = false;
	if (s->n > 0)
		s->parts[s->n - 1].ended = true;
	return 0;
}

static const struct multipart_cb CB = { cb_begin, cb_data, cb_end };

static void seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->parts[i].name);
		free(s->parts[i].filename);
		free(s->parts[i].ctype);
		buf_free(&s->parts[i].data);
	}
	memset(s, 0, sizeof *s);
}

/* Feeds body in pieces: step 0 = whole, step > 0 = that size, step < 0 =
 * random sizes 1..-step from a fixed seed.  Returns feed/finish result. */
static int run(const char *boundary, const void *body, size_t len, long step, struct seen *s,
	       struct qerr *e)
{
	struct multipart *mp = multipart_new(boundary, &CB, s);
	const char *p = body;
	size_t off = 0;
	unsigned seed = 12345;
	int rc = 0;
	while (off < len && rc == 0) {
		size_t n;
		if (step == 0)
			n = len;
		else if (step > 0)
			n = (size_t)step;
		else
			n = 1 + (size_t)(rand_r(&seed) % (unsigned)(-step));
		if (n > len - off)
			n = len - off;
		rc = multipart_feed(mp, p + off, n, e);
		off += n;
	}
	if (rc == 0)
		rc = multipart_finish(mp, e);
	multipart_free(mp);
	return rc;
}

static const char MESSAGE[] =
	"From: alice@example.org\r\n"
	"To: bob@example.net\r\n"
	"Subject: test\r\n"
	"\r\n"
	"Hello, the boundary inside a line: --" BOUNDARY " is content\r\n"
	"a line -- with dashes\r\n"
	"\r\n"
	"---" BOUNDARY " (three dashes) and -" BOUNDARY " are content\r\n"
	"--" "0123456789abcde\r\n"
	"\n--" "0123\r\r\n-\r\n--\r\n"
	"bye\r\n";
static const char JSON[] = "{\"qid\":\"4ABC123DEF\",\"rcpt\":[\"bob@example.net\"],\"score\":9}";

/* The body as Rspamd's table_to_multipart_body writes it. */
static void build_body(struct buf *b, bool message_first, const char *nl)
{
	const char *msg_part_fmt =
		"--" BOUNDARY "%s"
		"Content-Disposition: form-data; name=\"message\"; filename=\"message.eml\"%s"
		"Content-Type: message/rfc822%s"
		"Content-Transfer-Encoding: binary%s"
		"%s";
	const char *meta_part_fmt =
		"--" BOUNDARY "%s"
		"Content-Disposition: form-data; name=\"metadata\"%s"
		"Content-Type: application/json%s"
		"Content-Transfer-Encoding: binary%s"
		"%s";
	buf_reset(b);
	for (int i = 0; i < 2; i++) {
		bool msg = (i == 0) == message_first;
		buf_printf(b, msg ? msg_part_fmt : meta_part_fmt, nl, nl, nl, nl, nl);
		buf_appends(b, msg ? MESSAGE : JSON);
		buf_appends(b, nl);
	}
	buf_printf(b, "--" BOUNDARY "--%s", nl);
}

static void check_rspamd_parts(struct seen *s, bool message_first)
{
	assert_false(s->protocol_error);
	assert_int_equal(s->n, 2);
	struct seen_part *m = &s->parts[message_first ? 0 : 1];
	struct seen_part *j = &s->parts[message_first ? 1 : 0];
	assert_string_equal(m->name, "message");
	assert_string_equal(m->filename, "message.eml");
	assert_string_equal(m->ctype, "message/rfc822");
	assert_int_equal(m->data.len, strlen(MESSAGE));
	assert_memory_equal(m->data.data, MESSAGE, strlen(MESSAGE));
	assert_true(m->ended);
	assert_string_equal(j->name, "metadata");
	assert_null(j->filename);
	assert_string_equal(j->ctype, "application/json");
	assert_int_equal(j->data.len, strlen(JSON));
	assert_memory_equal(j->data.data, JSON, strlen(JSON));
	assert_true(j->ended);
}

static void test_rspamd_body(void **state)
{
	(void)state;
	struct buf b = { 0 };
	const long steps[] = { 0, 1, 2, 3, 7, 19, 64, -5, -40, -300 };
	for (int order = 0; order < 2; order++) {
		build_body(&b, order == 0, "\r\n");
		for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
			struct seen s = { 0 };
			struct qerr e = { 0 };
			assert_int_equal(run(BOUNDARY, b.data, b.len, steps[k], &s, &e), 0);
			check_rspamd_parts(&s, order == 0);
			seen_free(&s);
		}
	}
	buf_free(&b);
}

static void test_lf_only(void **state)
{
	(void)state;
	struct buf b = { 0 };
	build_body(&b, true, "\n");
	for (long step = 0; step < 4; step++) {
		struct seen s = { 0 };
		struct qerr e = { 0 };
		assert_int_equal(run(BOUNDARY, b.data, b.len, step, &s, &e), 0);
		assert_int_equal(s.n, 2);
		assert_string_equal(s.parts[0].name, "message");
		assert_string_equal(s.parts[1].name, "metadata");
		/* The message's own CRLFs are content and stay. */
		assert_int_equal(s.parts[0].data.len, strlen(MESSAGE));
		assert_memory_equal(s.parts[0].data.data, MESSAGE, strlen(MESSAGE));
		assert_string_equal(s.parts[1].data.data, JSON);
		seen_free(&s);
	}
	buf_free(&b);
}

static void test_preamble_padding_epilogue(void **state)
{
	(void)state;
	const char body[] =
		"This is a preamble\r\n--" BOUNDARY "-not yet\r\nstill preamble\r\n"
		"--" BOUNDARY " \t \r\n"
		"content-disposition:form-data;NAME=plain\r\n"
		"\r\n"
		"abc\r\n"
		"--" BOUNDARY "--  \r\nepilogue --" BOUNDARY "\r\ngarbage";
	for (long step = 0; step < 3; step++) {
		struct seen s = { 0 };
		struct qerr e = { 0 };
		int rc = run(BOUNDARY, body, sizeof body - 1, step, &s, &e);
		/* "--boundary-not yet" in the preamble is a delimiter followed by
		 * garbage: refused. */
		assert_int_equal(rc, -1);
		assert_int_equal(e.http, 400);
		seen_free(&s);
	}
	const char good[] =
		"This is a preamble\r\nwith --" BOUNDARY " inside\r\n"
		"--" BOUNDARY " \t \r\n"
		"content-disposition:form-data;NAME=plain\r\n"
		"\r\n"
		"abc\r\n"
		"--" BOUNDARY "--  \r\nepilogue\r\n--" BOUNDARY "\r\ngarbage";
	for (long step = 0; step < 3; step++) {
		struct seen s = { 0 };
		struct qerr e = { 0 };
		assert_int_equal(run(BOUNDARY, good, sizeof good - 1, step, &s, &e), 0);
		assert_int_equal(s.n, 1);
		assert_string_equal(s.parts[0].name, "plain");
		assert_null(s.parts[0].ctype);
		assert_string_equal(s.parts[0].data.data, "abc");
		seen_free(&s);
	}
}

static void expect_400(const char *body, const char *what)
{
	for (long step = 0; step < 2; step++) {
		struct seen s = { 0 };
		struct qerr e = { 0 };
		assert_int_equal(run(BOUNDARY, body, strlen(body), step, &s, &e), -1);
		assert_int_equal(e.cls, QERR_INPUT);
		assert_int_equal(e.http, 400);
		if (strstr(e.msg, what) == NULL)
			fail_msg("error '%s' does not mention '%s'", e.msg, what);
		seen_free(&s);
	}
}

static void test_errors(void **state)
{
	(void)state;
	expect_400("--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"m\"\r\n\r\n"
		   "data without end\r\n",
		   "no closing boundary");
	expect_400("--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"m\"\r\n\r\n"
		   "data\r\n--" BOUNDARY "\r\n",
		   "header");
	expect_400("no boundary at all\r\n", "no boundary");
	expect_400("", "no boundary");
	expect_400("--" BOUNDARY "\r\nContent-Disposition form-data\r\n\r\nx\r\n--" BOUNDARY "--\r\n",
		   "without colon");
	expect_400("--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"unterminated\r\n\r\n"
		   "x\r\n--" BOUNDARY "--\r\n",
		   "Content-Disposition");
	expect_400("--" BOUNDARY "\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\n"
		   "x\r\n--" BOUNDARY "--\r\n",
		   "Content-Disposition");
	expect_400("--" BOUNDARY "\r\n\r\nx\r\n--" BOUNDARY "x\r\n", "after a boundary");
	expect_400("--" BOUNDARY "\r\n\r\nx\r\n--" BOUNDARY "-x", "after a boundary");
	expect_400("--" BOUNDARY "\r\n\r\nx\r\n--" BOUNDARY "\rx", "CR without LF");

	/* Header block over 16 KB. */
	struct buf b = { 0 };
	buf_appends(&b, "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"m\"\r\nX-Long: ");
	for (int i = 0; i < 17000; i++)
		buf_appendc(&b, 'a');
	buf_appends(&b, "\r\n\r\nx\r\n--" BOUNDARY "--\r\n");
	expect_400(b.data, "16384");
	/* A block of exactly 16384 bytes (line ends included) is fine, one
	 * more is not. */
	buf_reset(&b);
	buf_appends(&b, "--" BOUNDARY "\r\nX-Long: ");
	size_t start = strlen("--" BOUNDARY "\r\n");
	while (b.len - start + 4 < 16384)
		buf_appendc(&b, 'a');
	buf_appends(&b, "\r\n\r\nx\r\n--" BOUNDARY "--\r\n");
	{
		struct buf b2 = { 0 };
		buf_append(&b2, b.data, start + 8);
		buf_appendc(&b2, 'a');
		buf_appends(&b2, b.data + start + 8);
		expect_400(b2.data, "16384");
		buf_free(&b2);
	}
	struct seen s = { 0 };
	struct qerr e = { 0 };
	assert_int_equal(run(BOUNDARY, b.data, b.len, 0, &s, &e), 0);
	assert_int_equal(s.n, 1);
	seen_free(&s);
	buf_free(&b);

	/* After a failure the parser refuses more input. */
	struct multipart *mp = multipart_new(BOUNDARY, &CB, &s);
	const char *bad = "--" BOUNDARY "x";
	assert_int_equal(multipart_feed(mp, bad, strlen(bad), &e), -1);
	assert_int_equal(multipart_feed(mp, "\r\n", 2, &e), -1);
	assert_int_equal(multipart_finish(mp, &e), -1);
	assert_int_equal(e.http, 400);
	multipart_free(mp);
	seen_free(&s);
}

static void test_duplicate_parts_reported(void **state)
{
	(void)state;
	const char body[] =
		"--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\none\r\n"
		"--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\ntwo\r\n"
		"--" BOUNDARY "--\r\n";
	struct seen s = { 0 };
	struct qerr e = { 0 };
	assert_int_equal(run(BOUNDARY, body, sizeof body - 1, 1, &s, &e), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.parts[0].name, "message");
	assert_string_equal(s.parts[1].name, "message");
	assert_string_equal(s.parts[0].data.data, "one");
	assert_string_equal(s.parts[1].data.data, "two");
	seen_free(&s);
}

static void build_many(struct buf *b, int parts)
{
	buf_reset(b);
	for (int i = 0; i < parts; i++)
		buf_printf(b, "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"p%d\"\r\n\r\n%d\r\n",
			   i, i);
	buf_appends(b, "--" BOUNDARY "--\r\n");
}

static void test_part_limit(void **state)
{
	(void)state;
	struct buf b = { 0 };
	build_many(&b, 64);
	struct seen s = { 0 };
	struct qerr e = { 0 };
	assert_int_equal(run(BOUNDARY, b.data, b.len, 0, &s, &e), 0);
	assert_int_equal(s.n, 64);
	assert_string_equal(s.parts[63].name, "p63");
	assert_string_equal(s.parts[63].data.data, "63");
	seen_free(&s);

	build_many(&b, 65);
	assert_int_equal(run(BOUNDARY, b.data, b.len, 0, &s, &e), -1);
	assert_int_equal(e.http, 400);
	assert_non_null(strstr(e.msg, "more than 64 parts"));
	seen_free(&s);

	build_many(&b, 2000);
	for (long step = 0; step < 2; step++) {
		assert_int_equal(run(BOUNDARY, b.data, b.len, step ? -1000 : 0, &s, &e), -1);
		assert_int_equal(e.http, 400);
		assert_non_null(strstr(e.msg, "more than 64 parts"));
		assert_int_equal(s.n, 64); /* stopped before the 65th began */
		seen_free(&s);
	}
	buf_free(&b);
}

/* Content full of near-delimiters: NUL, lone CR, CR LF, "--" and partial
 * boundaries, all kept byte-exact. */
static void test_binary_content(void **state)
{
	(void)state;
	struct buf content = { 0 };
	const char tricky[] = { '\0', '\r', '\r', '\n', '-', '-', '0', '1', '2', '\n', '-', '\r',
				'\n', '-', '-', '\0', '\r', '\n', '\n', '-', '-' };
	unsigned seed = 7;
	for (int i = 0; i < 3000; i++) {
		if (rand_r(&seed) % 3 == 0)
			buf_append(&content, tricky, sizeof tricky);
		else if (rand_r(&seed) % 2 == 0) {
			/* a boundary prefix that does not complete */
			buf_append(&content, "\r\n--" BOUNDARY, 4 + (size_t)(rand_r(&seed) % 16));
			buf_appendc(&content, '\0');
		}
		else
			buf_appendc(&content, (char)(rand_r(&seed) & 0xff));
	}
	/* End content with a CR so the delimiter's CR is the second one. */
	buf_appendc(&content, '\r');

	struct buf body = { 0 };
	buf_appends(&body, "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"bin\"\r\n\r\n");
	buf_append(&body, content.data, content.len);
	buf_appends(&body, "\r\n--" BOUNDARY "--\r\n");

	const long steps[] = { 0, 1, 2, 17, -3, -70, -4096 };
	for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
		struct seen s = { 0 };
		struct qerr e = { 0 };
		assert_int_equal(run(BOUNDARY, body.data, body.len, steps[k], &s, &e), 0);
		assert_false(s.protocol_error);
		assert_int_equal(s.n, 1);
		assert_int_equal(s.parts[0].data.len, content.len);
		assert_memory_equal(s.parts[0].data.data, content.data, content.len);
		seen_free(&s);
	}
	buf_free(&content);
	buf_free(&body);
}

/* A large part arrives in pieces and is reassembled exactly; the parser
 * passes runs of the input rather than copying the part. */
static void test_large_part(void **state)
{
	(void)state;
	size_t clen = 300 * 1024 + 7;
	char *content = xmalloc(clen);
	unsigned seed = 99;
	for (size_t i = 0; i < clen; i++)
		content[i] = (char)(i % 997 == 0 ? '\n' : 'A' + rand_r(&seed) % 26);
	struct buf body = { 0 };
	buf_appends(&body, "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n");
	buf_append(&body, content, clen);
	buf_appends(&body, "\r\n--" BOUNDARY "--\r\n");

	const long steps[] = { 0, 65536, -9000 };
	for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
		struct seen s = { 0 };
		struct qerr e = { 0 };
		assert_int_equal(run(BOUNDARY, body.data, body.len, steps[k], &s, &e), 0);
		assert_int_equal(s.n, 1);
		assert_int_equal(s.parts[0].data.len, clen);
		assert_memory_equal(s.parts[0].data.data, content, clen);
		/* Fed whole, the part comes through as one run of the input. */
		if (steps[k] == 0)
			assert_int_equal(s.parts[0].pieces, 1);
		seen_free(&s);
	}
	free(content);
	buf_free(&body);
}

static void test_callback_error_passes_through(void **state)
{
	(void)state;
	struct buf b = { 0 };
	build_body(&b, true, "\r\n");
	struct seen s = { 0 };
	s.fail_at_begin = 2;
	struct qerr e = { 0 };
	assert_int_equal(run(BOUNDARY, b.data, b.len, 3, &s, &e), -1);
	assert_int_equal(e.http, 422);
	assert_string_equal(e.msg, "test callback refuses part 2");
	assert_int_equal(s.n, 2);
	seen_free(&s);
	buf_free(&b);
}

static void test_boundary(void **state)
{
	(void)state;
	char out[80];
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=\"0123abcd\"", out,
					    sizeof out), 0);
	assert_string_equal(out, "0123abcd");
	assert_int_equal(multipart_boundary("Multipart/Form-Data;BOUNDARY=0123abcd", out, sizeof out),
			 0);
	assert_string_equal(out, "0123abcd");
	assert_int_equal(multipart_boundary("multipart/form-data; charset=utf-8; boundary = xyz ;"
					    " foo=\"a;b\"", out, sizeof out), 0);
	assert_string_equal(out, "xyz");
	assert_int_equal(multipart_boundary("multipart/form-data; foo=\"boundary=no\"; "
					    "boundary=\"with space'()+_,-./:=?\"", out, sizeof out), 0);
	assert_string_equal(out, "with space'()+_,-./:=?");

	char b70[71], ct[120];
	memset(b70, 'b', 70);
	b70[70] = '\0';
	snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", b70);
	assert_int_equal(multipart_boundary(ct, out, sizeof out), 0);
	assert_string_equal(out, b70);
	assert_int_equal(multipart_boundary(ct, out, 10), -1);
	snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%sb\"", b70);
	assert_int_equal(multipart_boundary(ct, out, sizeof out), -1);

	assert_int_equal(multipart_boundary("multipart/form-data", out, sizeof out), -1);
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=", out, sizeof out), -1);
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=\"\"", out, sizeof out), -1);
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=\"abc", out, sizeof out), -1);
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=a; boundary=b", out,
					    sizeof out), -1);
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=\"bad\rchar\"", out,
					    sizeof out), -1);
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=\"ends with \"", out,
					    sizeof out), -1);
	assert_int_equal(multipart_boundary("text/plain; boundary=abc", out, sizeof out), -1);
	assert_int_equal(multipart_boundary("multipart/form-data; xboundary=abc", out, sizeof out), -1);

	/* A bad boundary given to the parser fails cleanly. */
	struct seen s = { 0 };
	struct qerr e = { 0 };
	assert_int_equal(run("bad\nboundary", "--x--\r\n", 7, 0, &s, &e), -1);
	assert_int_equal(e.http, 400);
	assert_int_equal(s.n, 0);
}

static void test_empty_and_odd_parts(void **state)
{
	(void)state;
	/* An empty part, a part without headers, a folded header, a
	 * boundary with regex-like characters. */
	const char *bd = "a.b+c?(d)";
	const char body[] =
		"--a.b+c?(d)\r\nContent-Disposition: form-data;\r\n name=\"empty\"\r\n\r\n"
		"\r\n--a.b+c?(d)\r\n\r\nno headers\r\n"
		"--a.b+c?(d)\r\nContent-Type:  text/plain  \r\n"
		"Content-Disposition: attachment; filename=\"x\\\"y.txt\"\r\n\r\n\r\n\r\n"
		"--a.b+c?(d)--";
	for (long step = 0; step < 3; step++) {
		struct seen s = { 0 };
		struct qerr e = { 0 };
		assert_int_equal(run(bd, body, sizeof body - 1, step, &s, &e), 0);
		assert_false(s.protocol_error);
		assert_int_equal(s.n, 3);
		assert_string_equal(s.parts[0].name, "empty");
		assert_int_equal(s.parts[0].data.len, 0);
		assert_true(s.parts[0].ended);
		assert_null(s.parts[1].name);
		assert_string_equal(s.parts[1].data.data, "no headers");
		assert_null(s.parts[2].name);
		assert_string_equal(s.parts[2].filename, "x\"y.txt");
		assert_string_equal(s.parts[2].ctype, "text/plain");
		assert_int_equal(s.parts[2].data.len, 2);
		assert_memory_equal(s.parts[2].data.data, "\r\n", 2);
		seen_free(&s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rspamd_body),
		cmocka_unit_test(test_lf_only),
		cmocka_unit_test(test_preamble_padding_epilogue),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_duplicate_parts_reported),
		cmocka_unit_test(test_part_limit),
		cmocka_unit_test(test_binary_content),
		cmocka_unit_test(test_large_part),
		cmocka_unit_test(test_callback_error_passes_through),
		cmocka_unit_test(test_boundary),
		cmocka_unit_test(test_empty_and_odd_parts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
