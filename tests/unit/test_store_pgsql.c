/*
 * test_store_pgsql.c - unit tests of the PostgreSQL backend's server-less
 * half (store_pgsql_sql.c): the list query and its parameters, SQLSTATE
 * classes, the inet/jsonb/day conversions and the binary COPY framing.
 * No server is needed; tests/integration/test_pgsql_backend.py covers the
 * rest against a private cluster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store_pgsql_sql.h"

/* Connection-level failures and shutdowns reconnect; retryable
 * transaction failures retry; the rest is temporary or permanent. */
static void test_classify(void **state)
{
	(void)state;
	assert_int_equal(pgsql_classify(NULL, NULL), PGSQL_ERR_RECONNECT);
	assert_int_equal(pgsql_classify("", "x"), PGSQL_ERR_RECONNECT);
	assert_int_equal(pgsql_classify("08006", NULL), PGSQL_ERR_RECONNECT);
	assert_int_equal(pgsql_classify("08001", NULL), PGSQL_ERR_RECONNECT);
	assert_int_equal(pgsql_classify("57P01", NULL), PGSQL_ERR_RECONNECT);
	assert_int_equal(pgsql_classify("57P02", NULL), PGSQL_ERR_RECONNECT);
	assert_int_equal(pgsql_classify("57P03", NULL), PGSQL_ERR_RECONNECT);
	assert_int_equal(pgsql_classify("25006", NULL), PGSQL_ERR_RECONNECT);
	assert_int_equal(pgsql_classify("40001", NULL), PGSQL_ERR_RETRY);
	assert_int_equal(pgsql_classify("40P01", NULL), PGSQL_ERR_RETRY);
	assert_int_equal(pgsql_classify("42P07", "relation \"contents_20260101\" already exists"),
			 PGSQL_ERR_RETRY);
	assert_int_equal(pgsql_classify("23514",
		"ERROR:  no partition of relation \"entries\" found for row"), PGSQL_ERR_NOPART);
	assert_int_equal(pgsql_classify("23514", "new row violates check constraint"),
			 PGSQL_ERR_PERM);
	assert_int_equal(pgsql_classify("53100", NULL), PGSQL_ERR_TEMP); /* disk full */
	assert_int_equal(pgsql_classify("53300", NULL), PGSQL_ERR_TEMP); /* too many conns */
	assert_int_equal(pgsql_classify("57014", NULL), PGSQL_ERR_TEMP); /* timeout */
	assert_int_equal(pgsql_classify("58030", NULL), PGSQL_ERR_TEMP); /* I/O error */
	assert_int_equal(pgsql_classify("42P01", NULL), PGSQL_ERR_PERM); /* no table */
	assert_int_equal(pgsql_classify("23505", NULL), PGSQL_ERR_PERM);
	assert_int_equal(pgsql_classify("22P02", NULL), PGSQL_ERR_PERM);
	assert_int_equal(pgsql_classify("42501", NULL), PGSQL_ERR_PERM); /* privilege */
}

static void test_ip_param(void **state)
{
	(void)state;
	const char *v4 = "192.0.2.17", *v6 = "2001:db8::1", *mapped = "::ffff:192.0.2.1";
	assert_ptr_equal(pgsql_ip_param(v4), v4);
	assert_ptr_equal(pgsql_ip_param(v6), v6);
	assert_ptr_equal(pgsql_ip_param(mapped), mapped);
	assert_null(pgsql_ip_param(NULL));
	assert_null(pgsql_ip_param(""));
	assert_null(pgsql_ip_param("unknown"));
	assert_null(pgsql_ip_param("1.2.3"));
	assert_null(pgsql_ip_param("256.1.1.1"));
	assert_null(pgsql_ip_param("[::1]"));
	assert_null(pgsql_ip_param("192.0.2.1/24"));
	assert_null(pgsql_ip_param("192.0.2.1'; DROP TABLE entries; --"));
	assert_null(pgsql_ip_param(" 192.0.2.1"));
}

static void test_day(void **state)
{
	char d[16];
	(void)state;
	pgsql_day(0, d);
	assert_string_equal(d, "1970-01-01");
	pgsql_day(86399, d);
	assert_string_equal(d, "1970-01-01");
	pgsql_day(86400, d);
	assert_string_equal(d, "1970-01-02");
	pgsql_day(1700000000, d); /* 2023-11-14T22:13:20Z */
	assert_string_equal(d, "2023-11-14");
	pgsql_day(1709251199, d); /* 2024-02-29T23:59:59Z: leap day */
	assert_string_equal(d, "2024-02-29");
}

static void test_lock_key(void **state)
{
	(void)state;
	assert_int_equal(pgsql_lock_key("0000000000000001ffff"), 1);
	assert_int_equal(pgsql_lock_key("00000000000000ff"), 255);
	assert_int_equal(pgsql_lock_key("ffffffffffffffff00"), -1);
	assert_true(pgsql_lock_key("8000000000000000") == INT64_MIN);
	assert_int_equal(pgsql_lock_key("0123456789abcdef0"), 0x0123456789abcdefLL);
	/* only the first 64 bits count */
	assert_int_equal(pgsql_lock_key("0123456789abcdef00"), pgsql_lock_key("0123456789abcdefff"));
}

static void test_id_array(void **state)
{
	(void)state;
	char *ok[] = { "0123456789abcdef01234567", "ffffffffffffffffffffffff" };
	char *a = pgsql_id_array(ok, 2);
	assert_string_equal(a, "{0123456789abcdef01234567,ffffffffffffffffffffffff}");
	free(a);
	a = pgsql_id_array(ok, 0);
	assert_string_equal(a, "{}");
	free(a);
	char *upper[] = { "0123456789ABCDEF01234567" };
	assert_null(pgsql_id_array(upper, 1));
	char *shortid[] = { "0123456789abcdef" };
	assert_null(pgsql_id_array(shortid, 1));
	char *longid[] = { "0123456789abcdef012345678" };
	assert_null(pgsql_id_array(longid, 1));
	char *inject[] = { "0123456789abcdef0123456,}" };
	assert_null(pgsql_id_array(inject, 1));
	char *null[] = { NULL };
	assert_null(pgsql_id_array(null, 1));
}

/* Every element quoted and escaped: what looks like array syntax or NULL
 * stays text; a missing string stays in its place, as NULL. */
static void test_text_array(void **state)
{
	(void)state;
	char *v[] = { "bob@example.net", "\"a,b\"@example.net", "x\\y{z}@example.net", "NULL",
		      NULL, "" };
	char *a = pgsql_text_array(v, 6);
	assert_string_equal(a, "{\"bob@example.net\",\"\\\"a,b\\\"@example.net\","
			       "\"x\\\\y{z}@example.net\",\"NULL\",NULL,\"\"}");
	free(a);
	a = pgsql_text_array(v, 1);
	assert_string_equal(a, "{\"bob@example.net\"}");
	free(a);
	a = pgsql_text_array(v, 0);
	assert_string_equal(a, "{}");
	free(a);
}

static void test_json_param(void **state)
{
	(void)state;
	assert_null(pgsql_json_param(NULL));
	char *j = pgsql_json_param("[{\"name\":\"BAYES_SPAM\",\"score\":5.1}]");
	assert_string_equal(j, "[{\"name\":\"BAYES_SPAM\",\"score\":5.1}]");
	free(j);
	j = pgsql_json_param("[]");
	assert_string_equal(j, "[]");
	free(j);
	/* not JSON: kept as a JSON string rather than failing the put */
	j = pgsql_json_param("[{broken");
	assert_string_equal(j, "\"[{broken\"");
	free(j);
	j = pgsql_json_param("say \"hi\"");
	assert_string_equal(j, "\"say \\\"hi\\\"\"");
	free(j);
	/* numbers beyond a double are JSON, and jsonb keeps them */
	j = pgsql_json_param("[123456789012345678901234567890, 1e400]");
	assert_string_equal(j, "[123456789012345678901234567890, 1e400]");
	free(j);
	/* a trailing comma, a NUL escape, a second value: not JSON */
	j = pgsql_json_param("[1,]");
	assert_string_equal(j, "\"[1,]\"");
	free(j);
	j = pgsql_json_param("[\"a\\u0000\"]");
	assert_string_equal(j, "\"[\\\"a\\\\u0000\\\"]\"");
	free(j);
	j = pgsql_json_param("[] []");
	assert_string_equal(j, "\"[] []\"");
	free(j);
}

static void test_rcpts(void **state)
{
	(void)state;
	char *r[] = { "bob@example.net", "\"odd \\\" local\"@example.net" };
	char *j = pgsql_rcpts_json(r, 2);
	assert_string_equal(j, "[\"bob@example.net\",\"\\\"odd \\\\\\\" local\\\"@example.net\"]");
	char **back;
	size_t n;
	assert_int_equal(pgsql_rcpts_parse(j, &back, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(back[0], r[0]);
	assert_string_equal(back[1], r[1]);
	xfree_strv(back, n);
	free(j);
	assert_int_equal(pgsql_rcpts_parse("{\"a\":1}", &back, &n), -1);
	assert_int_equal(pgsql_rcpts_parse("nonsense", &back, &n), -1);
	assert_int_equal(pgsql_rcpts_parse(NULL, &back, &n), -1);
	assert_int_equal(n, 0);
}

static void test_symbol_pattern(void **state)
{
	(void)state;
	char *p = pgsql_symbol_pattern("CLAMAV_VIRUS");
	assert_string_equal(p, "[{\"name\":\"CLAMAV_VIRUS\"}]");
	free(p);
	p = pgsql_symbol_pattern("A\"}]'; DROP");
	assert_string_equal(p, "[{\"name\":\"A\\\"}]'; DROP\"}]");
	free(p);
}

static void test_status(void **state)
{
	(void)state;
	enum entry_status s;
	for (int i = 0; i < ENTRY_STATUS_COUNT; i++) {
		const char *t = pgsql_status_text((enum entry_status)i);
		assert_non_null(t);
		assert_int_equal(pgsql_status_parse(t, &s), 0);
		assert_int_equal(s, i);
	}
	assert_string_equal(pgsql_status_text(ENTRY_RELEASED), "released");
	assert_null(pgsql_status_text(ENTRY_STATUS_COUNT));
	assert_int_equal(pgsql_status_parse("Released", &s), -1);
	assert_int_equal(pgsql_status_parse(NULL, &s), -1);
}

static void test_list_query_empty(void **state)
{
	(void)state;
	struct store_filter f = { .status = -1 };
	struct pgsql_query q;
	pgsql_list_query(&f, &q);
	assert_int_equal(q.nparams, 0);
	assert_non_null(strstr(q.sql.data, "FROM entries e JOIN messages m"));
	assert_non_null(strstr(q.sql.data, "e.status <> 'deleted'"));
	assert_non_null(strstr(q.sql.data, "ORDER BY e.received_at DESC"));
	assert_null(strstr(q.sql.data, "LIMIT"));
	assert_null(strstr(q.sql.data, "$1"));
	pgsql_query_free(&q);
}

/* Every value is a parameter; the SQL text holds none of the input. */
static void test_list_query_full(void **state)
{
	(void)state;
	const char *evil = "x'); DROP TABLE entries; --";
	struct store_filter f = {
		.rcpt = evil, .from = "alice@example.org", .qid = "4ABC",
		.symbol = "CLAMAV_VIRUS", .since = 1700000000, .until = 1700086400,
		.status = ENTRY_RELEASED, .limit = 50,
	};
	struct pgsql_query q;
	pgsql_list_query(&f, &q);
	assert_int_equal(q.nparams, 10);
	assert_null(strstr(q.sql.data, "DROP"));
	assert_null(strstr(q.sql.data, "alice"));
	assert_null(strstr(q.sql.data, "CLAMAV"));
	assert_null(strstr(q.sql.data, "1700000000"));
	assert_string_equal(q.params[0], evil);
	assert_non_null(strstr(q.sql.data, "lower(e.rcpt) = lower($1)"));
	assert_string_equal(q.params[1], "alice@example.org");
	assert_non_null(strstr(q.sql.data, "lower(m.env_from) = lower($2)"));
	assert_string_equal(q.params[2], "4ABC");
	assert_non_null(strstr(q.sql.data, "m.qid = $3"));
	assert_string_equal(q.params[3], "[{\"name\":\"CLAMAV_VIRUS\"}]");
	assert_non_null(strstr(q.sql.data, "m.symbols @> $4::jsonb"));
	assert_string_equal(q.params[4], "1700000000");
	assert_non_null(strstr(q.sql.data, "e.received_at >= to_timestamp($5::bigint)"));
	assert_string_equal(q.params[5], "2023-11-14");
	assert_non_null(strstr(q.sql.data, "e.received_day >= $6::date AND m.received_day >= $6::date"));
	assert_string_equal(q.params[6], "1700086400");
	assert_non_null(strstr(q.sql.data, "e.received_at < to_timestamp($7::bigint)"));
	assert_string_equal(q.params[7], "2023-11-15");
	assert_non_null(strstr(q.sql.data, "e.received_day <= $8::date"));
	assert_string_equal(q.params[8], "released");
	assert_non_null(strstr(q.sql.data, "e.status = $9"));
	assert_null(strstr(q.sql.data, "<> 'deleted'"));
	assert_string_equal(q.params[9], "50");
	assert_non_null(strstr(q.sql.data, "LIMIT $10::bigint"));
	pgsql_query_free(&q);

	struct store_filter g = { .status = -1, .limit = 7 };
	pgsql_list_query(&g, &q);
	assert_int_equal(q.nparams, 1);
	assert_string_equal(q.params[0], "7");
	assert_non_null(strstr(q.sql.data, "LIMIT $1::bigint"));
	pgsql_query_free(&q);
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_copy_framing(void **state)
{
	(void)state;
	struct buf b = { 0 };
	const char *sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
	pgsql_copy_content_head(&b, sha, 946684800 + 86400 + 5, 3); /* 2000-01-02 */
	const unsigned char *p = (const unsigned char *)b.data;
	assert_memory_equal(p, "PGCOPY\n\377\r\n\0", 11);
	assert_int_equal(be32(p + 11), 0);       /* flags */
	assert_int_equal(be32(p + 15), 0);       /* extension */
	assert_int_equal(p[19] << 8 | p[20], 4); /* fields */
	assert_int_equal(be32(p + 21), 64);
	assert_memory_equal(p + 25, sha, 64);
	assert_int_equal(be32(p + 89), 4);
	assert_int_equal(be32(p + 93), 1);       /* days after 2000-01-01 */
	assert_int_equal(be32(p + 97), 8);
	assert_int_equal(be32(p + 101), 0);
	assert_int_equal(be32(p + 105), 3);      /* size */
	assert_int_equal(be32(p + 109), 3);      /* content length */
	assert_int_equal(b.len, 113);
	buf_reset(&b);
	pgsql_copy_content_head(&b, sha, 0, 0); /* 1970-01-01: before the epoch */
	assert_int_equal((int32_t)be32((const unsigned char *)b.data + 93), -10957);
	buf_reset(&b);
	pgsql_copy_trailer(&b);
	assert_int_equal(b.len, 2);
	assert_memory_equal(b.data, "\377\377", 2);
	buf_free(&b);
}

static void test_oneline(void **state)
{
	(void)state;
	char out[64];
	pgsql_oneline("ERROR:  relation \"x\" does not exist\nLINE 1: ...", out, sizeof out);
	assert_string_equal(out, "relation \"x\" does not exist");
	pgsql_oneline("FATAL:  terminating connection due to administrator command\n", out,
		      sizeof out);
	assert_string_equal(out, "terminating connection due to administrator command");
	pgsql_oneline("server closed\tthe connection", out, 10);
	assert_string_equal(out, "server cl");
	pgsql_oneline("", out, sizeof out);
	assert_string_equal(out, "unknown error");
	pgsql_oneline(NULL, out, sizeof out);
	assert_string_equal(out, "unknown error");
}

/* The refusal names what to run: the schema for an empty database, the
 * upgrade files from the next version on for an older one. */
static void test_schema_advice(void **state)
{
	char out[100];
	(void)state;
	assert_int_equal(PGSQL_SCHEMA_VERSION, 4);
	pgsql_schema_advice(-1, out, sizeof out);
	assert_string_equal(out, "apply sql/schema.sql");
	pgsql_schema_advice(0, out, sizeof out);
	assert_string_equal(out, "apply sql/schema.sql");
	pgsql_schema_advice(1, out, sizeof out);
	assert_string_equal(out, "apply sql/upgrade/002-*.sql to 004-*.sql in order");
	pgsql_schema_advice(2, out, sizeof out);
	assert_string_equal(out, "apply sql/upgrade/003-*.sql to 004-*.sql in order");
	pgsql_schema_advice(3, out, sizeof out);
	assert_string_equal(out, "apply sql/upgrade/004-*.sql");
	pgsql_schema_advice(4, out, sizeof out);
	assert_string_equal(out, "the database is newer than this program");
	pgsql_schema_advice(99, out, sizeof out);
	assert_string_equal(out, "the database is newer than this program");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_ip_param),
		cmocka_unit_test(test_day),
		cmocka_unit_test(test_lock_key),
		cmocka_unit_test(test_id_array),
		cmocka_unit_test(test_text_array),
		cmocka_unit_test(test_json_param),
		cmocka_unit_test(test_rcpts),
		cmocka_unit_test(test_symbol_pattern),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_list_query_empty),
		cmocka_unit_test(test_list_query_full),
		cmocka_unit_test(test_copy_framing),
		cmocka_unit_test(test_oneline),
		cmocka_unit_test(test_schema_advice),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
