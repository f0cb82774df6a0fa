/*
 * test_ingest.c - the ingest pipeline driven directly, as the worker
 * drives it, with the real file store in a temporary directory: every
 * formatter Rspamd can send, gzip, the captured Rspamd 3.4 and 4.1.5
 * requests (msgpack, structured), bodies that are not mail, and
 * the statuses bad requests must get, with nothing stored for them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "config.h"
#include "ingest.h"
#include "ingest_meta.h"
#include "ingest_msgpack.h"
#include "record.h"
#include "store.h"

#define REQUESTS "tests/fixtures/rspamd-3.4/requests/"

/* A request as the worker sees it: FastCGI parameters and a body. */
struct req {
	char *env[160];
	size_t n;
	char *body;
	size_t body_len;
	size_t pos;
	size_t fail_at; /* the read fails once this many bytes were read; 0 = never */
	size_t piece;   /* at most this many bytes a read; 0 = as asked */
};

struct fixture {
	char root[64];
	struct config c;
	struct store *s;
};

static void req_set(struct req *r, const char *name, const char *value)
{
	size_t nlen = strlen(name);
	for (size_t i = 0; i < r->n; i++)
		if (strncmp(r->env[i], name, nlen) == 0 && r->env[i][nlen] == '=') {
			free(r->env[i]);
			r->env[i] = xasprintf("%s=%s", name, value);
			return;
		}
	assert_true(r->n + 1 < sizeof r->env / sizeof r->env[0]);
	r->env[r->n++] = xasprintf("%s=%s", name, value);
	r->env[r->n] = NULL;
}

static void req_del(struct req *r, const char *name)
{
	size_t nlen = strlen(name);
	for (size_t i = 0; i < r->n; i++)
		if (strncmp(r->env[i], name, nlen) == 0 && r->env[i][nlen] == '=') {
			free(r->env[i]);
			r->env[i] = r->env[--r->n];
			r->env[r->n] = NULL;
			return;
		}
}

static void req_body(struct req *r, const void *p, size_t n)
{
	free(r->body);
	r->body = xmalloc(n + 1);
	memcpy(r->body, p, n);
	r->body_len = n;
	char len[32];
	snprintf(len, sizeof len, "%zu", n);
	req_set(r, "CONTENT_LENGTH", len);
}

static void req_free(struct req *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->env[i]);
	free(r->body);
	memset(r, 0, sizeof *r);
}

/* Loads a captured HTTP request: headers become parameters as nginx's
 * fastcgi_params would pass them. */
static void req_load(struct req *r, const char *file)
{
	memset(r, 0, sizeof *r);
	FILE *f = fopen(file, "rb");
	assert_non_null(f);
	struct buf raw = {0};
	char tmp[65536];
	size_t got;
	while ((got = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(&raw, tmp, got);
	fclose(f);
	char *end = strstr(raw.data, "\r\n\r\n");
	assert_non_null(end);
	*end = '\0';
	char *body = end + 4;
	req_set(r, "REQUEST_METHOD", "POST");
	req_set(r, "REMOTE_ADDR", "127.0.0.1");
	char *save = NULL;
	bool first = true;
	for (char *line = strtok_r(raw.data, "\r\n", &save); line;
	     line = strtok_r(NULL, "\r\n", &save)) {
		if (first) {
			first = false;
			continue;
		}
		char *colon = strchr(line, ':');
		assert_non_null(colon);
		*colon = '\0';
		const char *value = colon + 1;
		while (*value == ' ')
			value++;
		if (strcasecmp(line, "Content-Length") == 0)
			continue;
		char pname[256];
		if (strcasecmp(line, "Content-Type") == 0)
			strcpy(pname, "CONTENT_TYPE");
		else
			assert_int_equal(meta_param_name("", line, pname, sizeof pname), 0);
		req_set(r, pname, value);
	}
	req_body(r, body, raw.len - (size_t)(body - raw.data));
	buf_free(&raw);
}

static ssize_t req_read(void *arg, void *p, size_t n)
{
	struct req *r = arg;
	if (r->fail_at && r->pos >= r->fail_at)
		return -1;
	size_t left = r->body_len - r->pos;
	if (n > left)
		n = left;
	if (r->piece && n > r->piece)
		n = r->piece;
	memcpy(p, r->body + r->pos, n);
	r->pos += n;
	return (ssize_t)n;
}

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof *fx);
	strcpy(fx->root, "/tmp/rq-ingest-XXXXXX");
	assert_non_null(mkdtemp(fx->root));
	config_defaults(&fx->c);
	struct qerr e;
	assert_int_equal(config_set(&fx->c, "file_root", fx->root, &e), 0);
	assert_int_equal(store_open(&fx->s, &fx->c, &e), 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	store_close(fx->s);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->root);
	assert_int_equal(system(cmd), 0);
	config_free(&fx->c);
	free(fx);
	return 0;
}

/* Runs one request; returns the HTTP status and keeps the result. */
static int run(struct fixture *fx, struct req *rq, struct ingest_result *res, struct qerr *e)
{
	rq->pos = 0;
	ingest_request(fx->s, &fx->c, rq->env, req_read, rq, res, e);
	return res->http;
}

static int count_cb(const struct qentry *en, void *arg)
{
	(void)en;
	(*(size_t *)arg)++;
	return 0;
}

static size_t entries(struct fixture *fx)
{
	struct store_filter f = {.status = -1};
	size_t n = 0;
	struct qerr e;
	assert_int_equal(store_list(fx->s, &f, count_cb, &n, &e), 0);
	return n;
}

static int content_cb(const void *p, size_t n, void *arg)
{
	buf_append(arg, p, n);
	return 0;
}

/* The stored bytes of an entry equal want. */
static void assert_content(struct fixture *fx, const char *id, const void *want, size_t n)
{
	struct buf got = {0};
	struct qerr e;
	assert_int_equal(store_read_content(fx->s, id, content_cb, &got, &e), 0);
	assert_int_equal(got.len, n);
	assert_memory_equal(got.data, want, n);
	buf_free(&got);
}

/* Expects status http for the request and no entry stored. */
static void expect_refused(struct fixture *fx, struct req *rq, int http, const char *msg_part)
{
	struct ingest_result res;
	struct qerr e;
	size_t before = entries(fx);
	assert_int_equal(run(fx, rq, &res, &e), http);
	if (msg_part && strstr(e.msg, msg_part) == NULL)
		fail_msg("error '%s' does not mention '%s'", e.msg, msg_part);
	assert_int_equal(entries(fx), before);
	ingest_result_free(&res);
}

static void test_fixtures_default_formatter(void **state)
{
	struct fixture *fx = *state;
	static const struct {
		const char *file;
		size_t nrcpt;
		const char *subject;
	} cases[] = {
		{"01-plain.default.http", 1, NULL},
		{"02-utf8-two-rcpt-user-ipv6.default.http", 2, "Grüße aus München"},
		{"03-latin1-no-envelope.default.http", 1, "Win money äöü raw latin1"},
		{"04-big-attachment-three-rcpt.default.http", 3, NULL},
		{"05-lf-line-endings.default.http", 1, NULL},
		{"06-basic-auth-rfc822-type.default.http", 1, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct req rq;
		char path[256];
		snprintf(path, sizeof path, REQUESTS "%s", cases[i].file);
		req_load(&rq, path);
		rq.piece = 1000; /* short reads, as a socket gives them */
		struct ingest_result res;
		struct qerr e;
		assert_int_equal(run(fx, &rq, &res, &e), 200);
		assert_string_equal(res.formatter, "default");
		assert_int_equal(res.nids, cases[i].nrcpt);
		assert_int_equal(res.created, cases[i].nrcpt);
		for (size_t k = 0; k < res.nids; k++)
			assert_content(fx, res.ids[k], rq.body, rq.body_len);
		struct qentry en;
		assert_int_equal(store_get(fx->s, res.ids[0], &en, &e), 0);
		char sha[65];
		sha256_hex(rq.body, rq.body_len, sha);
		assert_string_equal(en.meta.sha256, sha);
		assert_int_equal(en.meta.size, rq.body_len);
		if (cases[i].subject)
			assert_string_equal(qmeta_display_subject(&en.meta), cases[i].subject);
		qentry_free(&en);
		ingest_result_free(&res);
		req_free(&rq);
	}
}

static void test_no_envelope_goes_to_default_owner(void **state)
{
	struct fixture *fx = *state;
	struct req rq;
	req_load(&rq, REQUESTS "03-latin1-no-envelope.default.http");
	struct ingest_result res;
	struct qerr e;
	assert_int_equal(run(fx, &rq, &res, &e), 200);
	assert_int_equal(res.nids, 1);
	struct qentry en;
	assert_int_equal(store_get(fx->s, res.ids[0], &en, &e), 0);
	assert_string_equal(en.rcpt, "postmaster");
	qentry_free(&en);
	ingest_result_free(&res);
	req_free(&rq);
}

static void test_retry_is_idempotent(void **state)
{
	struct fixture *fx = *state;
	struct req rq;
	req_load(&rq, REQUESTS "02-utf8-two-rcpt-user-ipv6.default.http");
	struct ingest_result a, b;
	struct qerr e;
	assert_int_equal(run(fx, &rq, &a, &e), 200);
	assert_int_equal(run(fx, &rq, &b, &e), 200);
	assert_int_equal(a.created, 2);
	assert_int_equal(b.created, 0);
	assert_string_equal(a.ids[0], b.ids[0]);
	assert_int_equal(entries(fx), 2);
	ingest_result_free(&a);
	ingest_result_free(&b);
	req_free(&rq);
}

static void test_json_formatter_refused(void **state)
{
	struct fixture *fx = *state;
	struct req rq;
	req_load(&rq, REQUESTS "01-plain.json.http");
	expect_refused(fx, &rq, 400, "multipart");
	req_free(&rq);
}

/* Builds a json_with_message body from the json fixture plus the message. */
static void test_json_with_message(void **state)
{
	struct fixture *fx = *state;
	struct req meta, raw;
	req_load(&meta, REQUESTS "02-utf8-two-rcpt-user-ipv6.json.http");
	req_load(&raw, REQUESTS "02-utf8-two-rcpt-user-ipv6.default.http");
	json_t *obj = json_loadb(meta.body, meta.body_len, 0, NULL);
	assert_non_null(obj);
	size_t b64len = 4 * ((raw.body_len + 2) / 3) + 1;
	char *b64 = xmalloc(b64len);
	EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)raw.body, (int)raw.body_len);
	json_object_set_new(obj, "message", json_string(b64));
	char *text = json_dumps(obj, JSON_COMPACT);
	req_body(&meta, text, strlen(text));
	/* Meta headers off: everything must come from the JSON. */
	for (size_t i = 0; i < meta.n;) {
		if (strncmp(meta.env[i], "HTTP_X_RSPAMD_", 14) == 0) {
			char *name = xstrndup(meta.env[i], strcspn(meta.env[i], "="));
			req_del(&meta, name);
			free(name);
		} else {
			i++;
		}
	}
	struct ingest_result res;
	struct qerr e;
	assert_int_equal(run(fx, &meta, &res, &e), 200);
	assert_string_equal(res.formatter, "json_with_message");
	assert_int_equal(res.nids, 2);
	assert_content(fx, res.ids[1], raw.body, raw.body_len);
	struct qentry en;
	assert_int_equal(store_get(fx->s, res.ids[1], &en, &e), 0);
	assert_string_equal(en.rcpt, "carol@example.net");
	assert_string_equal(en.meta.qid, "4XYZ789");
	assert_string_equal(en.meta.ip, "2001:db8::25");
	qentry_free(&en);
	ingest_result_free(&res);
	free(text);
	free(b64);
	json_decref(obj);
	req_free(&meta);
	req_free(&raw);
}

/* A multipart body as Rspamd writes it, both part orders. */
static void test_multipart_both_orders(void **state)
{
	struct fixture *fx = *state;
	struct req meta, raw;
	req_load(&meta, REQUESTS "01-plain.json.http");
	req_load(&raw, REQUESTS "01-plain.default.http");
	for (int order = 0; order < 2; order++) {
		struct buf b = {0};
		const char *bd = "0123456789abcdef";
		for (int k = 0; k < 2; k++) {
			bool msg = (k == 0) == (order == 0);
			if (msg) {
				buf_printf(&b, "--%s\r\nContent-Disposition: form-data; name=\"message\"; "
					   "filename=\"message.eml\"\r\nContent-Type: message/rfc822\r\n"
					   "Content-Transfer-Encoding: binary\r\n\r\n", bd);
				buf_append(&b, raw.body, raw.body_len);
			} else {
				buf_printf(&b, "--%s\r\nContent-Disposition: form-data; name=\"metadata\"\r\n"
					   "Content-Type: application/json\r\n"
					   "Content-Transfer-Encoding: binary\r\n\r\n", bd);
				buf_append(&b, meta.body, meta.body_len);
			}
			buf_appends(&b, "\r\n");
		}
		buf_printf(&b, "--%s--\r\n", bd);
		struct req rq = {0};
		req_set(&rq, "REQUEST_METHOD", "POST");
		req_set(&rq, "CONTENT_TYPE", "multipart/form-data; boundary=\"0123456789abcdef\"");
		req_body(&rq, b.data, b.len);
		rq.piece = 7;
		struct ingest_result res;
		struct qerr e;
		assert_int_equal(run(fx, &rq, &res, &e), 200);
		assert_string_equal(res.formatter, "multipart");
		assert_int_equal(res.nids, 1);
		assert_content(fx, res.ids[0], raw.body, raw.body_len);
		struct qentry en;
		assert_int_equal(store_get(fx->s, res.ids[0], &en, &e), 0);
		assert_string_equal(en.rcpt, "bob@example.net");
		assert_string_equal(en.meta.action, "add header");
		qentry_free(&en);
		ingest_result_free(&res);
		req_free(&rq);
		buf_free(&b);
	}
	req_free(&meta);
	req_free(&raw);
}

static void test_multipart_bad(void **state)
{
	struct fixture *fx = *state;
	struct req rq = {0};
	req_set(&rq, "REQUEST_METHOD", "POST");
	req_set(&rq, "CONTENT_TYPE", "multipart/form-data; boundary=abc");
	const char *unclosed = "--abc\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n"
			       "Subject: x\r\n\r\nbody\r\n";
	req_body(&rq, unclosed, strlen(unclosed));
	expect_refused(fx, &rq, 400, "closing");
	const char *nomsg = "--abc\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n"
			    "{}\r\n--abc--\r\n";
	req_body(&rq, nomsg, strlen(nomsg));
	expect_refused(fx, &rq, 400, "message");
	const char *twice = "--abc\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n"
			    "Subject: a\r\n\r\na\r\n--abc\r\nContent-Disposition: form-data; "
			    "name=\"message\"\r\n\r\nSubject: b\r\n\r\nb\r\n--abc--\r\n";
	req_body(&rq, twice, strlen(twice));
	expect_refused(fx, &rq, 400, "two");
	req_free(&rq);
}

static void test_gzip_body(void **state)
{
	struct fixture *fx = *state;
	struct req rq;
	req_load(&rq, REQUESTS "04-big-attachment-three-rcpt.default.http");
	char *plain = rq.body;
	size_t plain_len = rq.body_len;
	/* gzip it with zlib's deflate in gzip mode */
	z_stream z = {0};
	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
	size_t cap = deflateBound(&z, plain_len) + 64;
	unsigned char *gz = xmalloc(cap);
	z.next_in = (unsigned char *)plain;
	z.avail_in = (uInt)plain_len;
	z.next_out = gz;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	size_t gz_len = z.total_out;
	deflateEnd(&z);
	rq.body = NULL;
	req_body(&rq, gz, gz_len);
	req_set(&rq, "HTTP_CONTENT_ENCODING", "gzip");
	struct ingest_result res;
	struct qerr e;
	assert_int_equal(run(fx, &rq, &res, &e), 200);
	assert_int_equal(res.nids, 3);
	assert_content(fx, res.ids[2], plain, plain_len);
	ingest_result_free(&res);

	/* truncated: nothing stored */
	req_body(&rq, gz, gz_len / 2);
	size_t before = entries(fx);
	assert_int_equal(run(fx, &rq, &res, &e), 400);
	assert_int_equal(entries(fx), before);
	ingest_result_free(&res);

	req_set(&rq, "HTTP_CONTENT_ENCODING", "br");
	expect_refused(fx, &rq, 415, "br");
	free(gz);
	free(plain);
	req_free(&rq);
}

static void test_bad_requests(void **state)
{
	struct fixture *fx = *state;
	struct req rq;
	req_load(&rq, REQUESTS "01-plain.default.http");

	req_set(&rq, "REQUEST_METHOD", "GET");
	expect_refused(fx, &rq, 405, "GET");
	req_set(&rq, "REQUEST_METHOD", "POST");

	/* Content-Length lying in both directions */
	char len[32];
	snprintf(len, sizeof len, "%zu", rq.body_len + 10);
	req_set(&rq, "CONTENT_LENGTH", len);
	expect_refused(fx, &rq, 400, "shorter");
	snprintf(len, sizeof len, "%zu", rq.body_len - 10);
	req_set(&rq, "CONTENT_LENGTH", len);
	expect_refused(fx, &rq, 400, "longer");
	req_set(&rq, "CONTENT_LENGTH", "12abc");
	expect_refused(fx, &rq, 400, "Content-Length");
	req_del(&rq, "CONTENT_LENGTH");
	expect_refused(fx, &rq, 411, "Content-Length");
	req_set(&rq, "CONTENT_LENGTH", "0");
	expect_refused(fx, &rq, 400, "empty");
	snprintf(len, sizeof len, "%zu", rq.body_len);
	req_set(&rq, "CONTENT_LENGTH", len);

	/* the connection breaks half way */
	rq.fail_at = rq.body_len / 2;
	expect_refused(fx, &rq, 400, "read");
	rq.fail_at = 0;

	/* a body that starts like JSON but is not */
	req_body(&rq, "{not json", 9);
	expect_refused(fx, &rq, 400, "JSON");
	req_body(&rq, "  \r\n ", 5);
	expect_refused(fx, &rq, 400, "no message");
	req_free(&rq);
}

static void test_bad_meta_header(void **state)
{
	struct fixture *fx = *state;
	struct req rq;
	req_load(&rq, REQUESTS "01-plain.default.http");
	req_set(&rq, "HTTP_X_RSPAMD_RCPT", "[\"bob@example.net\"");
	expect_refused(fx, &rq, 400, "rcpt");
	req_free(&rq);
}

static void test_max_message_size(void **state)
{
	struct fixture *fx = *state;
	struct qerr e;
	struct req rq;
	req_load(&rq, REQUESTS "01-plain.default.http");
	/* the store reads the limit from the config it was opened with */
	fx->c.max_message_size = rq.body_len - 1;
	expect_refused(fx, &rq, 413, "max_message_size");
	fx->c.max_message_size = rq.body_len;
	struct ingest_result res;
	assert_int_equal(run(fx, &rq, &res, &e), 200);
	ingest_result_free(&res);
	req_free(&rq);
}

static void test_max_recipients(void **state)
{
	struct fixture *fx = *state;
	struct qerr e;
	struct req rq;
	req_load(&rq, REQUESTS "02-utf8-two-rcpt-user-ipv6.default.http");
	assert_int_equal(config_set(&fx->c, "max_recipients", "1", &e), 0);
	expect_refused(fx, &rq, 413, "max_recipients");
	assert_int_equal(config_set(&fx->c, "max_recipients", "2", &e), 0);
	struct ingest_result res;
	assert_int_equal(run(fx, &rq, &res, &e), 200);
	assert_int_equal(res.nids, 2);
	ingest_result_free(&res);
	req_free(&rq);
}

static void test_only_symbols(void **state)
{
	struct fixture *fx = *state;
	struct qerr e;
	struct req rq;
	req_load(&rq, REQUESTS "01-plain.default.http");
	assert_int_equal(config_set(&fx->c, "only_symbols", "CLAMAV_VIRUS, AVIRA_VIRUS", &e), 0);
	struct ingest_result res;
	assert_int_equal(run(fx, &rq, &res, &e), 200);
	assert_true(res.skipped);
	assert_int_equal(res.nids, 0);
	assert_int_equal(entries(fx), 0);
	ingest_result_free(&res);
	/* a message carrying one of them is stored */
	assert_int_equal(config_set(&fx->c, "only_symbols", "CLAMAV_VIRUS, ONCE_RECEIVED", &e), 0);
	assert_int_equal(run(fx, &rq, &res, &e), 200);
	assert_false(res.skipped);
	assert_int_equal(entries(fx), 1);
	ingest_result_free(&res);
	req_free(&rq);
}

static void test_storage_failure_is_503(void **state)
{
	struct fixture *fx = *state;
	struct req rq;
	req_load(&rq, REQUESTS "01-plain.default.http");
	/* a file where the recipient's domain directory must go */
	char path[128];
	snprintf(path, sizeof path, "%s/users/example.net", fx->root);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	struct ingest_result res;
	struct qerr e;
	assert_int_equal(run(fx, &rq, &res, &e), 503);
	assert_int_equal(e.cls, QERR_TEMP);
	assert_int_equal(entries(fx), 0);
	ingest_result_free(&res);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(run(fx, &rq, &res, &e), 200);
	ingest_result_free(&res);
	req_free(&rq);
}

#define REQUESTS_4 "tests/fixtures/rspamd-4.1.5/requests/"
#define MESSAGES_4 "tests/fixtures/rspamd-4.1.5/messages/"

/* The whole of a file. */
static void file_load(struct buf *b, const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char tmp[65536];
	size_t got;
	while ((got = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(b, tmp, got);
	fclose(f);
}

/* Drops the meta headers, so that only the body can tell the metadata. */
static void req_drop_meta_headers(struct req *rq)
{
	for (size_t i = 0; i < rq->n;) {
		if (strncmp(rq->env[i], "HTTP_X_RSPAMD_", 14) == 0) {
			char *name = xstrndup(rq->env[i], strcspn(rq->env[i], "="));
			req_del(rq, name);
			free(name);
		} else {
			i++;
		}
	}
}

/* Every msgpack request Rspamd 4.1.5 sent: stored once per recipient,
 * byte-exact (a str for UTF-8 mail, a bin for 8-bit), in pieces of one
 * byte (every framing state split) and of 1000, with and without the meta
 * headers beside the map. */
static void test_msgpack_fixtures(void **state)
{
	struct fixture *fx = *state;
	static const struct {
		const char *file, *eml, *from;
		size_t nrcpt;
	} cases[] = {
		{"01-plain", "plain.eml", "alice@example.org", 1},
		{"02-utf8-two-rcpt-user-ipv6", "utf8.eml", "juergen@example.de", 2},
		{"03-latin1-no-envelope", "latin1.eml", NULL, 1},
		{"04-big-attachment-three-rcpt", "big.eml", "mallory@evil.example", 3},
		{"05-lf-line-endings", "lf.eml", "nobody@example.com", 1},
		{"06-authenticated-user", "plain.eml", "alice@example.org", 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (int variant = 0; variant < 3; variant++) {
			struct req rq;
			char path[256];
			snprintf(path, sizeof path, REQUESTS_4 "%s.msgpack.http", cases[i].file);
			req_load(&rq, path);
			rq.piece = variant == 0 ? 1 : 1000;
			if (variant == 2)
				req_drop_meta_headers(&rq);
			struct buf want = {0};
			snprintf(path, sizeof path, MESSAGES_4 "%s", cases[i].eml);
			file_load(&want, path);
			struct ingest_result res;
			struct qerr e;
			if (run(fx, &rq, &res, &e) != 200)
				fail_msg("%s variant %d: %d %s", cases[i].file, variant, res.http, e.msg);
			assert_string_equal(res.formatter, "msgpack");
			assert_int_equal(res.nids, cases[i].nrcpt);
			for (size_t k = 0; k < res.nids; k++)
				assert_content(fx, res.ids[k], want.data, want.len);
			struct qentry en;
			assert_int_equal(store_get(fx->s, res.ids[0], &en, &e), 0);
			if (cases[i].from)
				assert_string_equal(en.meta.env_from, cases[i].from);
			else
				assert_null(en.meta.env_from);
			assert_non_null(en.meta.symbols_json);
			assert_true(en.meta.has_score);
			qentry_free(&en);
			ingest_result_free(&res);
			buf_free(&want);
			req_free(&rq);
		}
	}
}

/* structured and json carry no message: 400 naming the formatters to use. */
static void test_structured_and_json_refused(void **state)
{
	struct fixture *fx = *state;
	static const char *const files[] = {
		"01-plain.structured.http", "02-utf8-two-rcpt-user-ipv6.structured.http",
		"04-big-attachment-three-rcpt.structured.http", "01-plain.json.http",
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		struct req rq;
		char path[256];
		snprintf(path, sizeof path, REQUESTS_4 "%s", files[i]);
		req_load(&rq, path);
		rq.piece = 333;
		expect_refused(fx, &rq, 400, "multipart");
		req_free(&rq);
	}
}

/* A msgpack body built from bytes: a map of n entries, then the rest. */
static void mp_req(struct req *rq, const void *p, size_t n)
{
	memset(rq, 0, sizeof *rq);
	req_set(rq, "REQUEST_METHOD", "POST");
	req_set(rq, "CONTENT_TYPE", "text/plain");
	req_set(rq, "HTTP_X_RSPAMD_RCPT", "[\"bob@example.net\"]");
	req_body(rq, p, n);
}

#define MP(s) (s), sizeof(s) - 1

/* Bad msgpack: each a clear 4xx naming the fault, nothing stored. */
static void test_msgpack_bad(void **state)
{
	struct fixture *fx = *state;
	static const struct {
		const char *what;
		const char *body;
		size_t len;
		int http;
		const char *msg;
	} cases[] = {
		{"no message", MP("\x81\xa3qid\xa1x"), 400, "no message"},
		{"empty map", MP("\x80"), 400, "no message"},
		{"message an integer", MP("\x81\xa7message\x05"), 400, "not a str or bin"},
		{"message an array", MP("\x81\xa7message\x91\xa1x"), 400, "an array"},
		{"message nil", MP("\x81\xa7message\xc0"), 400, "nil"},
		{"message empty", MP("\x81\xa7message\xa0"), 400, "empty"},
		{"message twice", MP("\x82\xa7message\xa3S:x\xa7message\xa3S:y"), 400, "twice"},
		{"key twice", MP("\x83\xa3qid\xa1x\xa3qid\xa1y\xa7message\xa3S:x"), 400, "twice"},
		{"str32 beyond the body", MP("\x81\xa7message\xdb\x7f\xff\xff\xffSubject: x\r\n"),
		 413, "max_message_size"},
		{"str32 short of max but beyond the body",
		 MP("\x81\xa7message\xdb\x00\x10\x00\x00Subject: x\r\n"), 400, "more than the body"},
		{"bin32 beyond the body", MP("\x81\xa7message\xc6\x00\x10\x00\x00Subject: x\r\n"),
		 400, "more than the body"},
		{"metadata str32 beyond the body",
		 MP("\x82\xa7subject\xdb\xff\xff\xff\xf0xx\xa7message\xa3S:x"), 400, "more than the body"},
		{"array32 count beyond the body",
		 MP("\x82\xa7symbols\xdd\xff\xff\xff\xff\x01\xa7message\xa3S:x"), 400, "elements"},
		{"map32 count beyond the body", MP("\xdf\xff\xff\xff\xff\xa7message\xa3S:x"), 400,
		 "entries"},
		{"unknown key skipped, its str32 still bounded",
		 MP("\x82\xa4junk\xdb\xff\xff\xff\xf0xx\xa7message\xa3S:x"), 400, "more than the body"},
		{"cut in the message", MP("\x81\xa7message\xa9Subject:"), 400, "more than the body"},
		{"truncated before a value", MP("\x82\xa7message\xa3S:x\xa1q"), 400, "truncated"},
		{"truncated inside an array", MP("\x82\xa7message\xa3S:x\xa7symbols\x92\xa1x"), 400,
		 "truncated"},
		{"truncated in the map header", MP("\xde\x00"), 400, "truncated"},
		{"bytes after the map", MP("\x81\xa7message\xa3S:x\x00"), 400, "after the end"},
		{"unused byte", MP("\x82\xa3qid\xc1\xa7message\xa3S:x"), 400, "0xc1"},
		{"key not a str", MP("\x82\x01\xa1x\xa7message\xa3S:x"), 400, "not a str"},
		{"ext metadata", MP("\x82\xa3qid\xd4\x01\x02\xa7message\xa3S:x"), 400, "ext"},
		{"score not a number", MP("\x82\xa5score\xa2hi\xa7message\xa3S:x"), 400, "score"},
		{"rcpt not an array", MP("\x82\xa4rcpt\x05\xa7message\xa3S:x"), 400, "rcpt"},
		{"not a map but an array", MP("\x91\xa7message"), 400, "not a mail message"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (size_t piece = 1; piece <= 1000; piece += 999) {
			struct req rq;
			mp_req(&rq, cases[i].body, cases[i].len);
			rq.piece = piece;
			struct ingest_result res;
			struct qerr e;
			size_t before = entries(fx);
			int got = run(fx, &rq, &res, &e);
			if (got != cases[i].http || strstr(e.msg, cases[i].msg) == NULL)
				fail_msg("%s: got %d '%s', want %d '%s'", cases[i].what, got, e.msg,
					 cases[i].http, cases[i].msg);
			assert_int_equal(entries(fx), before);
			ingest_result_free(&res);
			req_free(&rq);
		}
	}

	/* Nesting: depth bombs in a kept and in a skipped value. */
	for (int kept = 0; kept < 2; kept++) {
		struct buf b = {0};
		buf_appends(&b, "\x82");
		buf_appends(&b, kept ? "\xa7symbols" : "\xa4junk");
		for (int d = 0; d < 5000; d++)
			buf_appends(&b, "\x91");
		buf_appends(&b, "\x01\xa7message\xa3S:x");
		struct req rq;
		mp_req(&rq, b.data, b.len);
		expect_refused(fx, &rq, 400, "deeper");
		req_free(&rq);
		buf_free(&b);
	}
	/* Element counts within bounds, but each a 9-byte float: the kept
	 * metadata is still cut at 8 MB. */
	{
		struct buf fl = {0};
		static const char head[] = "\x82\xa7message\xa3S:x\xa7symbols\xdd\x00\x10\x00\x00";
		buf_append(&fl, head, sizeof head - 1);
		for (int k = 0; k < 0x100000; k++)
			buf_append(&fl, "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9);
		struct req fr;
		mp_req(&fr, fl.data, fl.len);
		expect_refused(fx, &fr, 413, "metadata exceeds");
		req_free(&fr);
		buf_free(&fl);
	}
	/* Keys of 64 to 70 bytes are none of ours: skipped, not copied. */
	for (int klen = 64; klen <= 70; klen++) {
		struct buf kb = {0};
		buf_appends(&kb, "\x82\xd9");
		buf_appendc(&kb, (char)klen);
		for (int k = 0; k < klen; k++)
			buf_appendc(&kb, 'k');
		buf_appends(&kb, "\xa1q\xa7message\xa3S:x");
		struct req kr;
		mp_req(&kr, kb.data, kb.len);
		struct ingest_result kres;
		struct qerr ke;
		if (run(fx, &kr, &kres, &ke) != 200)
			fail_msg("key of %d bytes: %d %s", klen, kres.http, ke.msg);
		ingest_result_free(&kres);
		req_free(&kr);
		buf_free(&kb);
	}
	/* One level less than the bound is fine in a skipped value. */
	struct buf b = {0};
	buf_appends(&b, "\x82\xa4junk");
	for (int d = 0; d < MSGPACK_DEPTH_MAX - 2; d++)
		buf_appends(&b, "\x91");
	buf_appends(&b, "\x01\xa7message\xa3S:x");
	struct req rq;
	mp_req(&rq, b.data, b.len);
	struct ingest_result res;
	struct qerr e;
	if (run(fx, &rq, &res, &e) != 200)
		fail_msg("depth %d: %d %s", MSGPACK_DEPTH_MAX - 1, res.http, e.msg);
	assert_content(fx, res.ids[0], "S:x", 3);
	ingest_result_free(&res);
	req_free(&rq);
	buf_free(&b);
}

/* gzip of a msgpack body: the good one stored, a bad one refused. */
static void test_msgpack_gzip(void **state)
{
	struct fixture *fx = *state;
	struct req rq;
	req_load(&rq, REQUESTS_4 "02-utf8-two-rcpt-user-ipv6.msgpack.http");
	struct buf want = {0};
	file_load(&want, MESSAGES_4 "utf8.eml");
	for (int bad = 0; bad < 2; bad++) {
		size_t plain_len = bad ? rq.body_len - 40 : rq.body_len; /* cut inside the map */
		z_stream z = {0};
		assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8,
					      Z_DEFAULT_STRATEGY), Z_OK);
		size_t cap = deflateBound(&z, plain_len) + 64;
		unsigned char *gz = xmalloc(cap);
		z.next_in = (unsigned char *)rq.body;
		z.avail_in = (uInt)plain_len;
		z.next_out = gz;
		z.avail_out = (uInt)cap;
		assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
		struct req g = {0};
		for (size_t i = 0; i < rq.n; i++) {
			char *eq = strchr(rq.env[i], '=');
			char *name = xstrndup(rq.env[i], (size_t)(eq - rq.env[i]));
			req_set(&g, name, eq + 1);
			free(name);
		}
		req_body(&g, gz, z.total_out);
		deflateEnd(&z);
		req_set(&g, "HTTP_CONTENT_ENCODING", "gzip");
		g.piece = 100;
		if (bad) {
			expect_refused(fx, &g, 400, "truncated");
		} else {
			struct ingest_result res;
			struct qerr e;
			assert_int_equal(run(fx, &g, &res, &e), 200);
			assert_string_equal(res.formatter, "msgpack");
			assert_int_equal(res.nids, 2);
			assert_content(fx, res.ids[1], want.data, want.len);
			ingest_result_free(&res);
		}
		free(gz);
		req_free(&g);
	}
	buf_free(&want);
	req_free(&rq);
}

/* A body taken as the raw message must start like one. */
static void test_raw_must_look_like_mail(void **state)
{
	struct fixture *fx = *state;
	static const struct {
		const char *body;
		size_t len;
		int http;
	} cases[] = {
		{MP("hello world\r\n"), 400},
		{MP("\r\nSubject: leading blank line\r\n\r\nx\r\n"), 400},
		{MP("\x93\x01\x02\x03"), 400},
		{MP("Subject"), 400},
		{MP(": no name\r\n"), 400},
		{MP("Subj\xc3\xa9t: 8-bit name\r\n"), 400},
		{MP("Subject: x\r\n\r\nbody\r\n"), 200},
		{MP("X-Obsolete  : blanks before the colon\n\nbody\n"), 200},
		{MP("From alice@example.org Mon Nov 23 10:00:00 2026\nSubject: mbox\n\nb\n"), 200},
		{MP("Received: from x\r\n\tby y;\r\nSubject: \xe4\r\n\r\n\xff\xfe\r\n"), 200},
		{MP("S:"), 200},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (size_t piece = 1; piece <= 1000; piece += 999) {
			struct req rq;
			mp_req(&rq, cases[i].body, cases[i].len);
			rq.piece = piece;
			struct ingest_result res;
			struct qerr e;
			size_t before = entries(fx);
			int got = run(fx, &rq, &res, &e);
			if (got != cases[i].http)
				fail_msg("case %zu: got %d '%s'", i, got, e.msg);
			if (got == 200) {
				assert_content(fx, res.ids[0], cases[i].body, cases[i].len);
			} else {
				assert_string_equal(e.msg, "body is not a mail message; which "
							   "formatter sent it?");
				assert_int_equal(entries(fx), before);
			}
			ingest_result_free(&res);
			req_free(&rq);
		}
	}
	/* A first line longer than a header line may be decides "no" without
	 * the rest of the body. */
	struct buf b = {0};
	for (int k = 0; k < 3000; k++)
		buf_appends(&b, "X");
	buf_appends(&b, ": too long a name\r\n");
	struct req rq;
	mp_req(&rq, b.data, b.len);
	expect_refused(fx, &rq, 400, "not a mail message");
	req_free(&rq);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fixtures_default_formatter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_envelope_goes_to_default_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_is_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_formatter_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_with_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multipart_both_orders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multipart_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gzip_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_meta_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_message_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_recipients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_only_symbols, setup, teardown),
		cmocka_unit_test_setup_teardown(test_storage_failure_is_503, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msgpack_fixtures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_structured_and_json_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msgpack_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msgpack_gzip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_must_look_like_mail, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
