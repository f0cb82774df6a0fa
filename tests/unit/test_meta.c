/*
 * test_meta.c - Rspamd metadata from the meta headers (as FastCGI
 * parameters, built from the captured Rspamd 3.4 requests) and from the
 * JSON metadata object.
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
#include "ingest_meta.h"

#define REQUESTS "tests/fixtures/rspamd-3.4/requests/"

/* A FastCGI environment as nginx would build it from an HTTP request. */
struct env {
	char *v[128];
	size_t n;
};

static void env_add(struct env *env, const char *name, const char *value)
{
	assert_true(env->n + 1 < sizeof env->v / sizeof env->v[0]);
	char pname[256];
	assert_int_equal(meta_param_name("", name, pname, sizeof pname), 0);
	env->v[env->n++] = xasprintf("%s=%s", pname, value);
	env->v[env->n] = NULL;
}

static void env_free(struct env *env)
{
	for (size_t i = 0; i < env->n; i++)
		free(env->v[i]);
	env->n = 0;
	env->v[0] = NULL;
}

/* Reads the header block of a captured request into HTTP_* parameters. */
static void env_from_request(struct env *env, const char *file)
{
	FILE *f = fopen(file, "rb");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	bool first = true;
	env->n = 0;
	env->v[0] = NULL;
	while ((len = getline(&line, &cap, f)) > 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (first) { /* the request line */
			first = false;
			continue;
		}
		if (len == 0)
			break;
		char *colon = strchr(line, ':');
		assert_non_null(colon);
		*colon = '\0';
		const char *value = colon + 1;
		while (*value == ' ')
			value++;
		env_add(env, line, value);
	}
	free(line);
	fclose(f);
}

static void meta_init(struct qmeta *m)
{
	memset(m, 0, sizeof *m);
	m->scan_time = -1;
}

static void test_param_name(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(meta_param_name("X-Rspamd-", "rspamd_server", out, sizeof out), 0);
	assert_string_equal(out, "HTTP_X_RSPAMD_RSPAMD_SERVER");
	assert_int_equal(meta_param_name("x-rspamd-", "qid", out, sizeof out), 0);
	assert_string_equal(out, "HTTP_X_RSPAMD_QID");
	assert_int_equal(meta_param_name("X-Spam-Meta-", "scan_time", out, sizeof out), 0);
	assert_string_equal(out, "HTTP_X_SPAM_META_SCAN_TIME");
	assert_int_equal(meta_param_name("X-Rspamd-", "rspamd_server", out, 27), -1);
	assert_int_equal(meta_param_name("X-Rspamd-", "rspamd_server", out, 28), 0);
	assert_int_equal(meta_param_name("X", "y", out, 0), -1);
}

static void test_getenv(void **state)
{
	(void)state;
	char *envp[] = { "HTTP_X_RSPAMD_QIDX=no", "HTTP_X_RSPAMD_QID=4ABC", "EMPTY=", NULL };
	assert_string_equal(meta_getenv(envp, "HTTP_X_RSPAMD_QID"), "4ABC");
	assert_string_equal(meta_getenv(envp, "EMPTY"), "");
	assert_null(meta_getenv(envp, "HTTP_X_RSPAMD"));
	assert_null(meta_getenv(envp, "NOPE"));
	assert_null(meta_getenv(NULL, "NOPE"));
}

static void test_fixture_02(void **state)
{
	(void)state;
	struct env env;
	env_from_request(&env, REQUESTS "02-utf8-two-rcpt-user-ipv6.default.http");
	struct qmeta m;
	meta_init(&m);
	struct qerr e = { 0 };
	assert_int_equal(meta_from_params(env.v, "X-Rspamd-", &m, &e), 1);
	assert_int_equal(m.nrcpt, 2);
	assert_string_equal(m.rcpt[0], "bob@example.net");
	assert_string_equal(m.rcpt[1], "carol@example.net");
	assert_string_equal(m.ip, "2001:db8::25");
	assert_string_equal(m.user, "juergen@example.de");
	assert_string_equal(m.env_from, "juergen@example.de");
	assert_string_equal(m.qid, "4XYZ789");
	assert_string_equal(m.action, "add header");
	assert_string_equal(m.rspamd_server, "vm");
	assert_true(m.has_score);
	assert_true(m.score > 7.89 && m.score < 7.91);
	assert_int_equal(m.scan_time, 206);
	assert_true(utf8_valid(m.rspamd_subject, strlen(m.rspamd_subject)));
	assert_string_equal(m.rspamd_subject, "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen");
	assert_string_equal(m.fuzzy_json, "[]");
	json_error_t jerr;
	json_t *sym = json_loads(m.symbols_json, 0, &jerr);
	assert_non_null(sym);
	assert_true(json_is_array(sym));
	assert_true(json_array_size(sym) > 5);
	assert_string_equal(json_string_value(json_object_get(json_array_get(sym, 0), "name")),
			    "ARC_NA");
	json_decref(sym);
	assert_null(strpbrk(m.symbols_json, "\r\n"));
	qmeta_free(&m);
	env_free(&env);
}

static void test_fixture_03_unknown(void **state)
{
	(void)state;
	struct env env;
	env_from_request(&env, REQUESTS "03-latin1-no-envelope.default.http");
	struct qmeta m;
	meta_init(&m);
	struct qerr e = { 0 };
	assert_int_equal(meta_from_params(env.v, "X-Rspamd-", &m, &e), 1);
	assert_int_equal(m.nrcpt, 0);
	assert_null(m.rcpt);
	assert_null(m.qid);
	assert_null(m.env_from);
	assert_null(m.user);
	assert_null(m.ip);
	assert_true(m.has_score);
	assert_true(m.score > 10.39 && m.score < 10.41);
	assert_string_equal(m.rspamd_subject, "Win money \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd raw latin1");
	qmeta_free(&m);
	env_free(&env);
}

static void test_all_fixtures_parse(void **state)
{
	(void)state;
	static const char *const files[] = {
		"01-plain.default.http", "04-big-attachment-three-rcpt.default.http",
		"05-lf-line-endings.default.http", "06-basic-auth-rfc822-type.default.http",
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char path[256];
		snprintf(path, sizeof path, REQUESTS "%s", files[i]);
		struct env env;
		env_from_request(&env, path);
		struct qmeta m;
		meta_init(&m);
		struct qerr e = { 0 };
		assert_int_equal(meta_from_params(env.v, "X-Rspamd-", &m, &e), 1);
		assert_true(m.nrcpt >= 1);
		assert_non_null(m.symbols_json);
		assert_true(m.has_score);
		qmeta_free(&m);
		env_free(&env);
	}
}

static void test_custom_prefix_and_no_headers(void **state)
{
	(void)state;
	struct env env = { .n = 0 };
	env_add(&env, "X-Spam-Meta-qid", "Q1");
	env_add(&env, "X-Spam-Meta-rcpt", "[\"a@x\"]");
	env_add(&env, "X-Spam-Meta-score", "-1.5");
	env_add(&env, "X-Rspamd-qid", "wrong");
	struct qmeta m;
	meta_init(&m);
	struct qerr e = { 0 };
	assert_int_equal(meta_from_params(env.v, "x-spam-meta-", &m, &e), 1);
	assert_string_equal(m.qid, "Q1");
	assert_int_equal(m.nrcpt, 1);
	assert_true(m.score < -1.49 && m.score > -1.51);
	qmeta_free(&m);
	/* with the default prefix only the qid is present */
	meta_init(&m);
	assert_int_equal(meta_from_params(env.v, "X-Rspamd-", &m, &e), 1);
	assert_string_equal(m.qid, "wrong");
	assert_int_equal(m.nrcpt, 0);
	assert_false(m.has_score);
	qmeta_free(&m);
	env_free(&env);
	/* no meta header at all */
	char *none[] = { "CONTENT_LENGTH=10", "REQUEST_METHOD=POST", NULL };
	meta_init(&m);
	assert_int_equal(meta_from_params(none, "X-Rspamd-", &m, &e), 0);
	assert_null(m.qid);
	assert_int_equal(m.scan_time, -1);
}

static void test_encoded_values(void **state)
{
	(void)state;
	struct env env = { .n = 0 };
	env_add(&env, "X-Rspamd-subject", "=?UTF-8?Q?Gr=C3?= =?UTF-8?Q?=BC=C3=9Fe?=");
	env_add(&env, "X-Rspamd-from", "=?utf-8?b?asO8QHguZGU=?=");
	env_add(&env, "X-Rspamd-user", "\xe4user");
	env_add(&env, "X-Rspamd-action", "=?utf-8?q?no_action=0D=0A?=");
	/* Rspamd 3.4 style double encoding still yields valid UTF-8 */
	env_add(&env, "X-Rspamd-rspamd_server", "=?utf-8?b?R3LDg8K8w4M=?=");
	struct qmeta m;
	meta_init(&m);
	struct qerr e = { 0 };
	assert_int_equal(meta_from_params(env.v, "X-Rspamd-", &m, &e), 1);
	assert_string_equal(m.rspamd_subject, "Gr\xc3\xbc\xc3\x9f" "e");
	assert_string_equal(m.env_from, "j\xc3\xbc@x.de");
	assert_string_equal(m.user, "\xc3\xa4user");
	assert_string_equal(m.action, "no action");
	assert_true(utf8_valid(m.rspamd_server, strlen(m.rspamd_server)));
	qmeta_free(&m);
	env_free(&env);
}

/* Runs meta_from_params with one header and expects a 400 naming it. */
static void expect_bad(const char *key, const char *value, const char *needle)
{
	struct env env = { .n = 0 };
	char name[64];
	snprintf(name, sizeof name, "X-Rspamd-%s", key);
	env_add(&env, name, value);
	struct qmeta m;
	meta_init(&m);
	struct qerr e = { 0 };
	assert_int_equal(meta_from_params(env.v, "X-Rspamd-", &m, &e), -1);
	assert_int_equal(e.cls, QERR_INPUT);
	assert_int_equal(e.http, 400);
	assert_non_null(strstr(e.msg, needle));
	qmeta_free(&m);
	env_free(&env);
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_bad("score", "ten", "X-Rspamd-score");
	expect_bad("score", "1e999", "X-Rspamd-score");
	expect_bad("score", "7.9x", "X-Rspamd-score");
	expect_bad("symbols", "[{\"name\":", "X-Rspamd-symbols");
	expect_bad("symbols", "{\"name\":\"X\"}", "X-Rspamd-symbols");
	expect_bad("fuzzy", "nope", "X-Rspamd-fuzzy");
	expect_bad("scan_time", "-5", "X-Rspamd-scan_time");
	expect_bad("scan_time", "soon", "X-Rspamd-scan_time");
	expect_bad("rcpt", "[\"a@x\",", "X-Rspamd-rcpt");
	expect_bad("rcpt", "[1]", "X-Rspamd-rcpt");
	expect_bad("rcpt", "\"a@x\"", "X-Rspamd-rcpt");
}

static void test_symbols_8bit(void **state)
{
	(void)state;
	/* a stray Latin-1 byte in an option does not lose the mail */
	struct env env = { .n = 0 };
	env_add(&env, "X-Rspamd-symbols", "[{\"name\":\"S\",\"options\":[\"\xe4\"]}]");
	env_add(&env, "X-Rspamd-scan_time", "206.4");
	struct qmeta m;
	meta_init(&m);
	struct qerr e = { 0 };
	assert_int_equal(meta_from_params(env.v, "X-Rspamd-", &m, &e), 1);
	assert_string_equal(m.symbols_json, "[{\"name\":\"S\",\"options\":[\"\xc3\xa4\"]}]");
	assert_int_equal(m.scan_time, 206);
	qmeta_free(&m);
	env_free(&env);
}

static void test_parse_rcpt(void **state)
{
	(void)state;
	char **r = (char **)1;
	size_t n = 99;
	struct qerr e = { 0 };
	assert_int_equal(meta_parse_rcpt("unknown", &r, &n, &e), 0);
	assert_int_equal(n, 0);
	assert_null(r);
	assert_int_equal(meta_parse_rcpt("[]", &r, &n, &e), 0);
	assert_int_equal(n, 0);
	assert_int_equal(meta_parse_rcpt("[\"a@x\", \"\\\"../b\\\"@y\"]", &r, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(r[1], "\"../b\"@y");
	xfree_strv(r, n);
	assert_int_equal(meta_parse_rcpt("[\"a\\r\\n@x\"]", &r, &n, &e), -1);
	assert_int_equal(e.http, 400);
	assert_int_equal(meta_parse_rcpt("[\"a\\u0000@x\"]", &r, &n, &e), -1);
	assert_int_equal(e.http, 400);
	assert_int_equal(meta_parse_rcpt("{\"a\":1}", &r, &n, &e), -1);
	assert_int_equal(meta_parse_rcpt("", &r, &n, &e), -1);
	assert_int_equal(meta_parse_rcpt("unknownx", &r, &n, &e), -1);
	/* 1024 bytes is fine, 1025 is not */
	struct buf b = { 0 };
	buf_appends(&b, "[\"");
	for (int i = 0; i < 1022; i++)
		buf_appendc(&b, 'a');
	buf_appends(&b, "@x\"]");
	assert_int_equal(meta_parse_rcpt(b.data, &r, &n, &e), 0);
	assert_int_equal(strlen(r[0]), 1024);
	xfree_strv(r, n);
	buf_reset(&b);
	buf_appends(&b, "[\"");
	for (int i = 0; i < 1023; i++)
		buf_appendc(&b, 'a');
	buf_appends(&b, "@x\"]");
	assert_int_equal(meta_parse_rcpt(b.data, &r, &n, &e), -1);
	assert_int_equal(e.http, 400);
	buf_free(&b);
}

/* A JSON array of count addresses. */
static char *many_rcpt(size_t count)
{
	struct buf b = { 0 };
	buf_appendc(&b, '[');
	for (size_t i = 0; i < count; i++)
		buf_printf(&b, "%s\"user%zu@example.net\"", i ? "," : "", i);
	buf_appendc(&b, ']');
	return buf_steal(&b);
}

static void test_many_rcpt(void **state)
{
	(void)state;
	char **r;
	size_t n;
	struct qerr e = { 0 };
	char *v = many_rcpt(100000);
	assert_int_equal(meta_parse_rcpt(v, &r, &n, &e), 0);
	assert_int_equal(n, 100000);
	assert_string_equal(r[99999], "user99999@example.net");
	xfree_strv(r, n);
	free(v);
	v = many_rcpt(100001);
	assert_int_equal(meta_parse_rcpt(v, &r, &n, &e), -1);
	assert_int_equal(e.http, 400);
	assert_non_null(strstr(e.msg, "too many recipients"));
	free(v);
}

static void test_from_json(void **state)
{
	(void)state;
	/* the body of the captured json request */
	FILE *f = fopen(REQUESTS "02-utf8-two-rcpt-user-ipv6.json.http", "rb");
	assert_non_null(f);
	struct buf b = { 0 };
	char tmp[4096];
	size_t r;
	while ((r = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(&b, tmp, r);
	fclose(f);
	const char *body = strstr(b.data, "\r\n\r\n");
	assert_non_null(body);
	json_error_t jerr;
	json_t *obj = json_loads(body + 4, 0, &jerr);
	assert_non_null(obj);
	struct qmeta m;
	meta_init(&m);
	m.hdr_subject = xstrdup("own subject");
	m.qid = xstrdup("old");
	struct qerr e = { 0 };
	assert_int_equal(meta_from_json(obj, &m, &e), 0);
	assert_string_equal(m.qid, "4XYZ789"); /* overwritten */
	assert_int_equal(m.nrcpt, 2);
	assert_string_equal(m.rcpt[1], "carol@example.net");
	assert_string_equal(m.ip, "2001:db8::25");
	assert_true(m.has_score && m.score > 7.89 && m.score < 7.91);
	assert_int_equal(m.scan_time, 206);
	assert_string_equal(m.hdr_subject, "own subject"); /* kept */
	assert_string_equal(m.hdr_from, "J\xc3\xbcrgen M\xc3\xbcller <juergen@example.de>");
	assert_string_equal(m.hdr_date, "Sun, 22 Nov 2026 10:00:00 +0100");
	assert_string_equal(m.hdr_msgid, "utf8-1@example.de");
	assert_string_equal(m.rspamd_subject, "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen");
	assert_string_equal(m.fuzzy_json, "[]");
	assert_int_equal(m.symbols_json[0], '[');
	json_decref(obj);
	qmeta_free(&m);
	buf_free(&b);
}

static void test_from_json_unknown_and_clean(void **state)
{
	(void)state;
	json_error_t jerr;
	json_t *obj = json_loads("{\"rcpt\":\"unknown\",\"qid\":\"unknown\",\"subject\":\"a\\r\\nb\\tc\","
				 "\"header_subject\":\"unknown\",\"header_to\":[],"
				 "\"message_id\":\"<m@x>\",\"size\":42,\"message\":\"ignored\"}",
				 0, &jerr);
	assert_non_null(obj);
	struct qmeta m;
	meta_init(&m);
	struct qerr e = { 0 };
	assert_int_equal(meta_from_json(obj, &m, &e), 0);
	assert_int_equal(m.nrcpt, 0);
	assert_null(m.qid);
	assert_string_equal(m.rspamd_subject, "a  b\tc");
	assert_null(m.hdr_subject);
	assert_null(m.hdr_to);
	assert_string_equal(m.hdr_msgid, "m@x");
	assert_int_equal(m.size, 42);
	json_decref(obj);
	qmeta_free(&m);
}

/* meta_from_json on a literal object must fail with 400 naming key. */
static void expect_json_bad(const char *text, const char *key)
{
	json_error_t jerr;
	json_t *obj = json_loads(text, 0, &jerr);
	assert_non_null(obj);
	struct qmeta m;
	meta_init(&m);
	struct qerr e = { 0 };
	assert_int_equal(meta_from_json(obj, &m, &e), -1);
	assert_int_equal(e.cls, QERR_INPUT);
	assert_int_equal(e.http, 400);
	assert_non_null(strstr(e.msg, key));
	json_decref(obj);
	qmeta_free(&m);
}

static void test_from_json_bad(void **state)
{
	(void)state;
	expect_json_bad("{\"score\":\"high\"}", "score");
	expect_json_bad("{\"rcpt\":[1,2]}", "rcpt");
	expect_json_bad("{\"rcpt\":\"a@x\"}", "rcpt");
	expect_json_bad("{\"rcpt\":{}}", "rcpt");
	expect_json_bad("{\"qid\":5}", "qid");
	expect_json_bad("{\"symbols\":\"x\"}", "symbols");
	expect_json_bad("{\"fuzzy\":{}}", "fuzzy");
	expect_json_bad("{\"scan_time\":\"5\"}", "scan_time");
	expect_json_bad("{\"scan_time\":-1}", "scan_time");
	expect_json_bad("{\"header_from\":[1]}", "header_from");
	expect_json_bad("{\"header_date\":{}}", "header_date");
	expect_json_bad("{\"size\":-3}", "size");
	expect_json_bad("[1]", "object");
	struct qerr e = { 0 };
	struct qmeta m;
	meta_init(&m);
	assert_int_equal(meta_from_json(NULL, &m, &e), -1);
}

/* Parameter names match without regard to case and only as a whole
 * name, the first occurrence wins, and entries without '=' are ignored. */
/* Meta headers as Rspamd 3.12 and 4.x write them: MIME-encoded scalars,
 * an envelope From with '@' as =40; never a failed request. */
static void test_from_params_rspamd_4(void **state)
{
	(void)state;
	char *env[] = {
		"HTTP_X_RSPAMD_FROM==?UTF-8?Q?j=C3=BCrgen=40m=C3=BCnchen.example?=",
		"HTTP_X_RSPAMD_SUBJECT=Gr=?UTF-8?Q?=C3=BC=C3=9Fe?= aus M=?UTF-8?Q?=C3=BCnchen?=",
		"HTTP_X_RSPAMD_USER==?UTF-8?Q?j=C3=BCrgen?=",
		"HTTP_X_RSPAMD_RSPAMD_SERVER=scan=?UTF-8?Q?=C3?=\x01\xff",
		NULL,
	};
	struct qmeta m;
	meta_init(&m);
	struct qerr e = { 0 };
	assert_int_equal(meta_from_params(env, "X-Rspamd-", &m, &e), 1);
	assert_string_equal(m.env_from, "j\xc3\xbcrgen@m\xc3\xbcnchen.example");
	assert_string_equal(m.rspamd_subject, "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen");
	assert_string_equal(m.user, "j\xc3\xbcrgen");
	assert_true(utf8_valid(m.rspamd_server, strlen(m.rspamd_server)));
	for (const char *p = m.rspamd_server; *p; p++)
		assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
	qmeta_free(&m);
}

static void test_from_params_lookup(void **state)
{
	(void)state;
	char *env[] = {
		"HTTP_X_RSPAMD_QIDX=wrong",      /* longer name: not qid */
		"HTTP_X_RSPAMD_QI=wrong",        /* shorter name: not qid */
		"NOEQUALSIGN",
		"http_x_rspamd_qid=4FIRST",
		"HTTP_X_RSPAMD_QID=4SECOND",
		"HTTP_X_RSPAMD_ACTION=reject",
		NULL,
	};
	struct qmeta m;
	meta_init(&m);
	struct qerr e = { 0 };
	assert_int_equal(meta_from_params(env, "X-Rspamd-", &m, &e), 1);
	assert_string_equal(m.qid, "4FIRST");
	assert_string_equal(m.action, "reject");
	assert_null(m.env_from);
	qmeta_free(&m);

	/* an error names the header as the prefix and key make it */
	char *bad[] = { "HTTP_X_SPAM_META_SCORE=lots", NULL };
	meta_init(&m);
	assert_int_equal(meta_from_params(bad, "X-Spam-Meta-", &m, &e), -1);
	assert_int_equal(e.http, 400);
	assert_non_null(strstr(e.msg, "X-Spam-Meta-score header"));
	qmeta_free(&m);

	char *none[] = { "HTTP_X_OTHER_QID=4ABC", "REQUEST_METHOD=POST", NULL };
	meta_init(&m);
	assert_int_equal(meta_from_params(none, "X-Rspamd-", &m, &e), 0);
	assert_null(m.qid);
	qmeta_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_param_name),
		cmocka_unit_test(test_getenv),
		cmocka_unit_test(test_fixture_02),
		cmocka_unit_test(test_fixture_03_unknown),
		cmocka_unit_test(test_all_fixtures_parse),
		cmocka_unit_test(test_custom_prefix_and_no_headers),
		cmocka_unit_test(test_encoded_values),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_symbols_8bit),
		cmocka_unit_test(test_parse_rcpt),
		cmocka_unit_test(test_many_rcpt),
		cmocka_unit_test(test_from_json),
		cmocka_unit_test(test_from_json_unknown_and_clean),
		cmocka_unit_test(test_from_json_bad),
		cmocka_unit_test(test_from_params_lookup),
		cmocka_unit_test(test_from_params_rspamd_4),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
