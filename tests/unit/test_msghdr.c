/*
 * test_msghdr.c - the message's own header: end detection, unfolding,
 * field decoding, and messages from the Rspamd 3.4 fixtures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "charset.h"
#include "ingest_msghdr.h"

#define FIXTURES "tests/fixtures/rspamd-3.4/messages/"

/* Reads a whole fixture file. */
static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	struct buf b = { 0 };
	char tmp[4096];
	size_t r;
	while ((r = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(&b, tmp, r);
	fclose(f);
	*n = b.len;
	return buf_steal(&b);
}

static void parse(const char *s, size_t n, struct qmeta *m)
{
	memset(m, 0, sizeof *m);
	msghdr_parse(s, n, m);
}

static void test_fixture_utf8(void **state)
{
	(void)state;
	size_t n;
	char *msg = slurp(FIXTURES "utf8.eml", &n);
	struct qmeta m;
	parse(msg, n, &m);
	assert_string_equal(m.hdr_subject, "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen");
	assert_string_equal(m.hdr_from, "J\xc3\xbcrgen M\xc3\xbcller <juergen@example.de>");
	assert_string_equal(m.hdr_to, "bob@example.net, carol@example.net");
	assert_string_equal(m.hdr_date, "Sun, 22 Nov 2026 10:00:00 +0100");
	assert_string_equal(m.hdr_msgid, "utf8-1@example.de");
	assert_null(m.hdr_cc);
	/* the header ends after the CRLF CRLF */
	size_t end = msghdr_end(msg, n);
	assert_true(end > 0 && end <= n);
	assert_memory_equal(msg + end - 4, "\r\n\r\n", 4);
	qmeta_free(&m);
	free(msg);
}

static void test_fixture_latin1(void **state)
{
	(void)state;
	size_t n;
	char *msg = slurp(FIXTURES "latin1.eml", &n);
	struct qmeta m;
	parse(msg, n, &m);
	assert_string_equal(m.hdr_subject, "Win money \xc3\xa4\xc3\xb6\xc3\xbc raw latin1");
	assert_string_equal(m.hdr_from, "\"Sp\xc3\xa4mmer\" <spammer@spam.example>");
	assert_string_equal(m.hdr_msgid, "latin1-1@spam.example");
	assert_null(m.hdr_date);
	/* the body's 8-bit bytes are not part of any field */
	assert_null(strstr(m.hdr_subject, "body"));
	qmeta_free(&m);
	free(msg);
}

static void test_lf_only_and_folded(void **state)
{
	(void)state;
	const char *msg = "From: a@example.org\n"
			  "Subject: =?utf-8?q?Gr=C3?=\n"
			  " =?utf-8?q?=BC=C3=9Fe?= and\n"
			  "\tmore\n"
			  "to: b@example.net\n"
			  "\n"
			  "Subject: body line, not a header\n";
	struct qmeta m;
	parse(msg, strlen(msg), &m);
	assert_string_equal(m.hdr_subject, "Gr\xc3\xbc\xc3\x9f" "e and more");
	assert_string_equal(m.hdr_from, "a@example.org");
	assert_string_equal(m.hdr_to, "b@example.net");
	assert_int_equal(msghdr_end(msg, strlen(msg)), strstr(msg, "\n\n") + 2 - msg);
	qmeta_free(&m);
}

static void test_crlf_folded(void **state)
{
	(void)state;
	const char *msg = "Subject: first\r\n  part\r\nCC:  c@example.net \r\n\r\nbody";
	struct qmeta m;
	parse(msg, strlen(msg), &m);
	assert_string_equal(m.hdr_subject, "first  part");
	assert_string_equal(m.hdr_cc, "c@example.net");
	qmeta_free(&m);
}

static void test_first_occurrence_wins(void **state)
{
	(void)state;
	const char *msg = "Subject: one\nSUBJECT: two\nmessage-id:  < id@x > \nMessage-ID: <other@x>\n\n";
	struct qmeta m;
	memset(&m, 0, sizeof m);
	m.hdr_subject = strdup("from json");
	msghdr_parse(msg, strlen(msg), &m);
	assert_string_equal(m.hdr_subject, "one");
	assert_string_equal(m.hdr_msgid, "id@x");
	qmeta_free(&m);
}

static void test_no_empty_line(void **state)
{
	(void)state;
	const char *msg = "From: x@example.org\r\nSubject: no end";
	struct qmeta m;
	parse(msg, strlen(msg), &m);
	assert_string_equal(m.hdr_subject, "no end");
	assert_string_equal(m.hdr_from, "x@example.org");
	assert_int_equal(msghdr_end(msg, strlen(msg)), 0);
	qmeta_free(&m);
	/* the length bounds parsing: a cut header gives a cut value */
	parse(msg, strlen("From: x@exa"), &m);
	assert_string_equal(m.hdr_from, "x@exa");
	assert_null(m.hdr_subject);
	qmeta_free(&m);
}

static void test_header_only(void **state)
{
	(void)state;
	const char *msg = "Subject: only a header\r\n\r\n";
	struct qmeta m;
	parse(msg, strlen(msg), &m);
	assert_string_equal(m.hdr_subject, "only a header");
	assert_int_equal(msghdr_end(msg, strlen(msg)), strlen(msg));
	qmeta_free(&m);
	/* an empty header: the message starts with the empty line */
	assert_int_equal(msghdr_end("\r\nbody", 6), 2);
	assert_int_equal(msghdr_end("\nbody", 5), 1);
	parse("\r\nSubject: x\r\n", 14, &m);
	assert_null(m.hdr_subject);
	qmeta_free(&m);
	assert_int_equal(msghdr_end("", 0), 0);
	assert_int_equal(msghdr_end("Subject: x\r\n\r", 13), 0);
}

static void test_junk(void **state)
{
	(void)state;
	static const char msg[] = "no colon on this line\r\n"
				  ": empty name\r\n"
				  "Subject\x00junk: \x01\x02\xff\xfe\r\n"
				  " continuation of junk\r\n"
				  "To: \x00\x7f\x80 t\r\n"
				  "Date:\r\n"
				  "From: ok@x\r\n";
	struct qmeta m;
	parse(msg, sizeof msg - 1, &m);
	assert_null(m.hdr_subject);
	assert_string_equal(m.hdr_from, "ok@x");
	assert_non_null(m.hdr_to);
	assert_true(utf8_valid(m.hdr_to, strlen(m.hdr_to)));
	assert_null(strpbrk(m.hdr_to, "\r\n\x01"));
	assert_string_equal(m.hdr_date, "");
	qmeta_free(&m);
	/* leading continuation lines and binary bytes everywhere */
	char bin[4096];
	for (size_t i = 0; i < sizeof bin; i++)
		bin[i] = (char)(i * 37 + 11);
	parse(bin, sizeof bin, &m);
	if (m.hdr_subject)
		assert_true(utf8_valid(m.hdr_subject, strlen(m.hdr_subject)));
	qmeta_free(&m);
	msghdr_parse(NULL, 0, &m);
}

static void test_value_cap(void **state)
{
	(void)state;
	struct buf b = { 0 };
	buf_appends(&b, "To: ");
	for (int i = 0; i < 3000; i++)
		buf_appends(&b, "\xc3\xbc"); /* 2-byte characters */
	for (int i = 0; i < 2000; i++)
		buf_appends(&b, "\r\n x");
	buf_appends(&b, "\r\n\r\n");
	struct qmeta m;
	parse(b.data, b.len, &m);
	size_t n = strlen(m.hdr_to);
	assert_true(n <= 4096 && n >= 4090);
	assert_true(utf8_valid(m.hdr_to, n)); /* not cut inside a character */
	qmeta_free(&m);
	buf_free(&b);
}

/* The start of a body taken as the raw message. */
static void test_starts_mail(void **state)
{
	(void)state;
	assert_int_equal(msghdr_starts_mail("Subject: x", 10), 1);
	assert_int_equal(msghdr_starts_mail("X-A \t: x", 8), 1);
	assert_int_equal(msghdr_starts_mail("From alice Mon", 14), 1);
	assert_int_equal(msghdr_starts_mail("From:", 5), 1);
	assert_int_equal(msghdr_starts_mail("Fro", 3), -1);
	assert_int_equal(msghdr_starts_mail("Subject", 7), -1);
	assert_int_equal(msghdr_starts_mail("", 0), -1);
	assert_int_equal(msghdr_starts_mail("Subject x:", 10), 0);
	assert_int_equal(msghdr_starts_mail("\r\nSubject:", 11), 0);
	assert_int_equal(msghdr_starts_mail(":x", 2), 0);
	assert_int_equal(msghdr_starts_mail("\xde\x00\x10", 3), 0);
	/* ("{\"qid\":1}" would pass as a field name: JSON is told apart before.) */
	assert_int_equal(msghdr_starts_mail("{ \"qid\": 1}", 11), 0);
	char longname[MSGHDR_START_MAX + 1];
	memset(longname, 'X', sizeof longname);
	assert_int_equal(msghdr_starts_mail(longname, sizeof longname), 0);
	assert_int_equal(msghdr_starts_mail(longname, MSGHDR_START_MAX - 1), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_starts_mail),
		cmocka_unit_test(test_fixture_utf8),
		cmocka_unit_test(test_fixture_latin1),
		cmocka_unit_test(test_lf_only_and_folded),
		cmocka_unit_test(test_crlf_folded),
		cmocka_unit_test(test_first_occurrence_wins),
		cmocka_unit_test(test_no_empty_line),
		cmocka_unit_test(test_header_only),
		cmocka_unit_test(test_junk),
		cmocka_unit_test(test_value_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
