/*
 * test_record.c - the entry record: status names, symbols questions
 * (has_symbol, policy) and the JSON form, which must read back exactly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "record.h"

static const char *SYMBOLS =
	"[{\"name\":\"CLAMAV_VIRUS\",\"score\":10.3,\"group\":\"av\",\"groups\":[\"av\"],"
	"\"options\":[\"Eicar-Signature\"]},"
	"{\"name\":\"POLICY_SUBMISSION\",\"score\":0.0,\"groups\":[]},"
	"{\"name\":\"POLICY_OTHER\",\"score\":-1.5}]";

/* An entry with every field set, UTF-8 included. */
static void full_entry(struct qentry *e)
{
	memset(e, 0, sizeof *e);
	memcpy(e->id, "0123456789abcdef01234567", ENTRY_ID_LEN + 1);
	e->rcpt = xstrdup("jörg@example.org");
	e->status = ENTRY_RELEASED;
	e->status_changed = 1764000000;
	struct qmeta *m = &e->meta;
	m->qid = xstrdup("4ABC123");
	m->env_from = xstrdup("sender@example.com");
	m->user = xstrdup("alice");
	m->ip = xstrdup("2001:db8::1");
	m->action = xstrdup("add header");
	m->rspamd_server = xstrdup("scan1");
	m->rspamd_subject = xstrdup("GrÃ¼Ã");
	m->score = 10.3;
	m->has_score = true;
	m->scan_time = 42;
	m->symbols_json = xstrdup(SYMBOLS);
	m->fuzzy_json = xstrdup("[\"abc\",\"def\"]");
	m->hdr_from = xstrdup("Jörg <j@example.com>");
	m->hdr_to = xstrdup("a@example.org, \"Quote\" <b@example.org>");
	m->hdr_cc = xstrdup("c@example.org");
	m->hdr_subject = xstrdup("Grüße aus München \xe2\x82\xac");
	m->hdr_date = xstrdup("Sat, 22 Nov 2025 10:00:00 +0100");
	m->hdr_msgid = xstrdup("<x@y>");
	m->size = 12345;
	memset(m->sha256, 'a', 64);
	m->sha256[64] = '\0';
	m->received_at = 1763999999;
	m->policy = xstrdup("POLICY_SUBMISSION");
	m->rcpt = xmalloc(sizeof *m->rcpt);
	m->rcpt[0] = xstrdup(e->rcpt);
	m->nrcpt = 1;
}

static void assert_str_eq_null(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

static void assert_entries_equal(const struct qentry *a, const struct qentry *b)
{
	assert_string_equal(a->id, b->id);
	assert_str_eq_null(a->rcpt, b->rcpt);
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->status_changed, b->status_changed);
	const struct qmeta *x = &a->meta, *y = &b->meta;
	assert_str_eq_null(x->qid, y->qid);
	assert_str_eq_null(x->env_from, y->env_from);
	assert_str_eq_null(x->user, y->user);
	assert_str_eq_null(x->ip, y->ip);
	assert_str_eq_null(x->action, y->action);
	assert_str_eq_null(x->rspamd_server, y->rspamd_server);
	assert_str_eq_null(x->rspamd_subject, y->rspamd_subject);
	assert_int_equal(x->has_score, y->has_score);
	if (x->has_score)
		assert_true(x->score == y->score);
	assert_int_equal(x->scan_time, y->scan_time);
	assert_str_eq_null(x->symbols_json, y->symbols_json);
	assert_str_eq_null(x->fuzzy_json, y->fuzzy_json);
	assert_str_eq_null(x->hdr_from, y->hdr_from);
	assert_str_eq_null(x->hdr_to, y->hdr_to);
	assert_str_eq_null(x->hdr_cc, y->hdr_cc);
	assert_str_eq_null(x->hdr_subject, y->hdr_subject);
	assert_str_eq_null(x->hdr_date, y->hdr_date);
	assert_str_eq_null(x->hdr_msgid, y->hdr_msgid);
	assert_int_equal(x->size, y->size);
	assert_string_equal(x->sha256, y->sha256);
	assert_int_equal(x->received_at, y->received_at);
	assert_str_eq_null(x->policy, y->policy);
}

static void test_status_names(void **state)
{
	(void)state;
	enum entry_status s;
	assert_string_equal(entry_status_name(ENTRY_QUARANTINED), "quarantined");
	assert_string_equal(entry_status_name(ENTRY_RELEASED), "released");
	assert_string_equal(entry_status_name(ENTRY_DELETED), "deleted");
	assert_int_equal(entry_status_parse("released", &s), 0);
	assert_int_equal(s, ENTRY_RELEASED);
	assert_int_equal(entry_status_parse("deleted", &s), 0);
	assert_int_equal(s, ENTRY_DELETED);
	assert_int_equal(entry_status_parse("quarantined", &s), 0);
	assert_int_equal(s, ENTRY_QUARANTINED);
	assert_int_equal(entry_status_parse("Released", &s), -1);
	assert_int_equal(entry_status_parse("", &s), -1);
	assert_int_equal(entry_status_parse(NULL, &s), -1);
}

static void test_set_and_subject(void **state)
{
	(void)state;
	struct qmeta m;
	memset(&m, 0, sizeof m);
	assert_string_equal(qmeta_display_subject(&m), "");
	qmeta_set(&m.rspamd_subject, "from rspamd");
	assert_string_equal(qmeta_display_subject(&m), "from rspamd");
	qmeta_set(&m.hdr_subject, "own");
	assert_string_equal(qmeta_display_subject(&m), "own");
	qmeta_set(&m.hdr_subject, m.hdr_subject); /* self-assignment is safe */
	assert_string_equal(m.hdr_subject, "own");
	qmeta_set(&m.hdr_subject, NULL);
	assert_null(m.hdr_subject);
	assert_string_equal(qmeta_display_subject(&m), "from rspamd");
	qmeta_free(&m);
	assert_null(m.rspamd_subject);
	assert_int_equal(m.scan_time, -1);
}

static void test_symbols(void **state)
{
	(void)state;
	struct qmeta m;
	memset(&m, 0, sizeof m);
	assert_false(qmeta_has_symbol(&m, "CLAMAV_VIRUS"));
	assert_null(qmeta_policy(&m, "POLICY_"));
	m.symbols_json = xstrdup(SYMBOLS);
	assert_true(qmeta_has_symbol(&m, "CLAMAV_VIRUS"));
	assert_true(qmeta_has_symbol(&m, "POLICY_OTHER"));
	assert_false(qmeta_has_symbol(&m, "CLAMAV"));
	assert_false(qmeta_has_symbol(&m, "clamav_virus"));
	assert_false(qmeta_has_symbol(&m, ""));
	char *p = qmeta_policy(&m, "POLICY_");
	assert_non_null(p);
	assert_string_equal(p, "POLICY_SUBMISSION");
	free(p);
	p = qmeta_policy(&m, "CLAM");
	assert_string_equal(p, "CLAMAV_VIRUS");
	free(p);
	assert_null(qmeta_policy(&m, "BANK_"));
	assert_null(qmeta_policy(&m, NULL));
	/* broken JSON is no symbols, not a crash */
	qmeta_set(&m.symbols_json, "[{\"name\":");
	assert_false(qmeta_has_symbol(&m, "CLAMAV_VIRUS"));
	assert_null(qmeta_policy(&m, "POLICY_"));
	/* an object keyed by name is understood too */
	qmeta_set(&m.symbols_json, "{\"POLICY_X\":{\"score\":1},\"Y\":{}}");
	assert_true(qmeta_has_symbol(&m, "Y"));
	p = qmeta_policy(&m, "POLICY_");
	assert_string_equal(p, "POLICY_X");
	free(p);
	/* names written with escapes are found although the text differs */
	qmeta_set(&m.symbols_json, "[{\"name\":\"\\u0050OLICY_Z\"},{\"name\":\"A\\\"B\"}]");
	p = qmeta_policy(&m, "POLICY_");
	assert_non_null(p);
	assert_string_equal(p, "POLICY_Z");
	free(p);
	assert_true(qmeta_has_symbol(&m, "POLICY_Z"));
	assert_true(qmeta_has_symbol(&m, "A\"B"));
	/* without escapes, text that is not there is no symbol */
	qmeta_set(&m.symbols_json, "[{\"name\":\"A\"}]");
	assert_false(qmeta_has_symbol(&m, "A\"B"));
	assert_null(qmeta_policy(&m, "B"));
	qmeta_free(&m);
}

static void test_json_keys(void **state)
{
	(void)state;
	struct qentry e;
	full_entry(&e);
	char *s = qentry_to_json(&e, false);
	json_t *o = json_loads(s, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "id")), e.id);
	assert_string_equal(json_string_value(json_object_get(o, "rcpt")), "jörg@example.org");
	assert_string_equal(json_string_value(json_object_get(o, "status")), "released");
	assert_string_equal(json_string_value(json_object_get(o, "status_changed")),
			    "2025-11-24T16:00:00Z");
	assert_string_equal(json_string_value(json_object_get(o, "received_at")),
			    "2025-11-24T15:59:59Z");
	assert_string_equal(json_string_value(json_object_get(o, "from")), "sender@example.com");
	assert_string_equal(json_string_value(json_object_get(o, "subject")),
			    "Grüße aus München \xe2\x82\xac");
	assert_true(json_real_value(json_object_get(o, "score")) == 10.3);
	assert_int_equal(json_integer_value(json_object_get(o, "scan_time")), 42);
	assert_int_equal(json_integer_value(json_object_get(o, "size")), 12345);
	assert_string_equal(json_string_value(json_object_get(o, "message_id")), "<x@y>");
	assert_string_equal(json_string_value(json_object_get(o, "policy")), "POLICY_SUBMISSION");
	json_t *sym = json_object_get(o, "symbols");
	assert_true(json_is_array(sym));
	assert_int_equal(json_array_size(sym), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(sym, 0), "name")),
			    "CLAMAV_VIRUS");
	assert_true(json_is_array(json_object_get(o, "fuzzy")));
	/* scores print as written, not as 10.300000000000001 */
	assert_non_null(strstr(s, "\"score\":10.3,"));
	assert_null(strstr(s, "10.30000"));
	const char *keys[] = { "id", "rcpt", "status", "status_changed", "received_at", "qid",
			       "from", "user", "ip", "action", "score", "scan_time", "symbols",
			       "fuzzy", "rspamd_server", "rspamd_subject", "subject",
			       "header_from", "header_to", "header_cc", "header_subject",
			       "header_date", "message_id", "size", "sha256", "policy" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		assert_non_null(json_object_get(o, keys[i]));
	assert_int_equal(json_object_size(o), sizeof keys / sizeof keys[0]);
	json_decref(o);
	free(s);
	qentry_free(&e);
}

static void test_json_round_trip(void **state)
{
	(void)state;
	struct qentry e, back;
	full_entry(&e);
	for (int pretty = 0; pretty <= 1; pretty++) {
		char *s = qentry_to_json(&e, pretty);
		assert_int_equal(qentry_from_json(s, strlen(s), &back), 0);
		assert_entries_equal(&e, &back);
		assert_int_equal(back.meta.nrcpt, 1);
		assert_string_equal(back.meta.rcpt[0], e.rcpt);
		char *again = qentry_to_json(&back, pretty);
		assert_string_equal(s, again);
		free(again);
		free(s);
		qentry_free(&back);
	}
	/* awkward numbers survive exactly */
	e.meta.score = 0.1 + 0.2;
	char *s = qentry_to_json(&e, false);
	assert_int_equal(qentry_from_json(s, strlen(s), &back), 0);
	assert_true(back.meta.score == 0.1 + 0.2);
	free(s);
	qentry_free(&back);
	qentry_free(&e);
}

/* An entry with an id, a time and nothing else known. */
static void empty_entry(struct qentry *e)
{
	memset(e, 0, sizeof *e);
	memcpy(e->id, "ffffffffffffffffffffffff", ENTRY_ID_LEN + 1);
	e->meta.scan_time = -1;
	e->meta.received_at = 1000;
}

/* Strings are escaped as JSON requires, a string that is not UTF-8 keeps
 * its ASCII, embedded arrays that are not well-formed become [], and a
 * whole-number score still reads back as a real; jansson reads it all. */
static void test_json_escapes(void **state)
{
	(void)state;
	struct qentry e, back;
	empty_entry(&e);
	e.rcpt = (char *)"q\"uo\\te@example.org";
	e.meta.qid = (char *)"tab\there\nnl\r\x01\x1f\b\f";
	e.meta.env_from = (char *)"bad-\xff\xfe-utf8@example.org";
	e.meta.hdr_subject = (char *)"Gr\xc3\xbc\xc3\x9f" "e \xe2\x82\xac";
	e.meta.symbols_json = (char *)"[{\"name\":\"A\",\"score\":1.5}";
	e.meta.fuzzy_json = (char *)"  [\"abc\"]\n";
	e.meta.has_score = true;
	e.meta.score = 10;
	for (int pretty = 0; pretty <= 1; pretty++) {
		char *s = qentry_to_json(&e, pretty);
		json_error_t err;
		json_t *o = json_loads(s, 0, &err);
		assert_non_null(o);
		assert_string_equal(json_string_value(json_object_get(o, "rcpt")),
				    "q\"uo\\te@example.org");
		assert_string_equal(json_string_value(json_object_get(o, "qid")),
				    "tab\there\nnl\r\x01\x1f\b\f");
		assert_non_null(strstr(s, "\\u0001\\u001f\\b\\f"));
		assert_string_equal(json_string_value(json_object_get(o, "from")),
				    "bad-?\?-utf8@example.org");
		assert_string_equal(json_string_value(json_object_get(o, "header_subject")),
				    "Grüße €");
		assert_true(json_is_array(json_object_get(o, "symbols")));
		assert_int_equal(json_array_size(json_object_get(o, "symbols")), 0);
		assert_string_equal(json_string_value(json_array_get(json_object_get(o, "fuzzy"), 0)),
				    "abc");
		assert_true(json_is_real(json_object_get(o, "score")));
		assert_true(json_real_value(json_object_get(o, "score")) == 10.0);
		assert_true(json_is_null(json_object_get(o, "scan_time")));
		json_decref(o);
		assert_int_equal(qentry_from_json(s, strlen(s), &back), 0);
		assert_string_equal(back.meta.qid, e.meta.qid);
		assert_true(back.meta.has_score && back.meta.score == 10.0);
		assert_null(back.meta.symbols_json);
		assert_string_equal(back.meta.fuzzy_json, "[\"abc\"]");
		qentry_free(&back);
		free(s);
	}
}

static void test_json_nulls(void **state)
{
	(void)state;
	struct qentry e, back;
	empty_entry(&e);
	char *s = qentry_to_json(&e, false);
	json_t *o = json_loads(s, 0, NULL);
	assert_non_null(o);
	assert_true(json_is_null(json_object_get(o, "rcpt")));
	assert_true(json_is_null(json_object_get(o, "qid")));
	assert_true(json_is_null(json_object_get(o, "score")));
	assert_true(json_is_null(json_object_get(o, "scan_time")));
	assert_true(json_is_null(json_object_get(o, "sha256")));
	assert_true(json_is_null(json_object_get(o, "policy")));
	assert_string_equal(json_string_value(json_object_get(o, "subject")), "");
	assert_string_equal(json_string_value(json_object_get(o, "status")), "quarantined");
	assert_true(json_is_array(json_object_get(o, "symbols")));
	assert_int_equal(json_array_size(json_object_get(o, "symbols")), 0);
	json_decref(o);
	assert_int_equal(qentry_from_json(s, strlen(s), &back), 0);
	assert_entries_equal(&e, &back);
	assert_false(back.meta.has_score);
	assert_int_equal(back.meta.scan_time, -1);
	assert_null(back.meta.symbols_json);
	assert_int_equal(back.meta.nrcpt, 0);
	/* an empty string stays an empty string, not null */
	e.meta.qid = xstrdup("");
	e.meta.has_score = true;
	e.meta.score = 0;
	free(s);
	qentry_free(&back);
	s = qentry_to_json(&e, false);
	assert_int_equal(qentry_from_json(s, strlen(s), &back), 0);
	assert_string_equal(back.meta.qid, "");
	assert_true(back.meta.has_score);
	assert_true(back.meta.score == 0.0);
	free(s);
	qentry_free(&back);
	qentry_free(&e);
}

static void test_json_rejects(void **state)
{
	(void)state;
	struct qentry back;
	const char *bad[] = {
		"",
		"[]",
		"{\"id\":\"short\"}",
		"{\"id\":\"0123456789abcdef01234567\",\"status\":\"gone\","
		"\"status_changed\":\"2025-01-01T00:00:00Z\",\"received_at\":\"2025-01-01T00:00:00Z\","
		"\"size\":1}",
		"{\"id\":\"0123456789abcdef01234567\",\"status\":\"released\","
		"\"status_changed\":\"yesterday-ish\",\"received_at\":\"2025-01-01T00:00:00Z\","
		"\"size\":1}",
		"{\"id\":\"0123456789abcdef01234567\",\"status\":\"released\","
		"\"status_changed\":\"2025-01-01T00:00:00Z\",\"received_at\":\"2025-01-01T00:00:00Z\","
		"\"size\":-1}",
		"{\"id\":\"0123456789abcdef01234567\",\"status\":\"released\","
		"\"status_changed\":\"2025-01-01T00:00:00Z\",\"received_at\":\"2025-01-01T00:00:00Z\","
		"\"size\":1,\"qid\":5}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(qentry_from_json(bad[i], strlen(bad[i]), &back), -1);
	const char *good = "{\"id\":\"0123456789abcdef01234567\",\"status\":\"released\","
		"\"status_changed\":\"2025-01-01T00:00:00Z\",\"received_at\":\"2025-01-01T00:00:00Z\","
		"\"size\":1,\"qid\":\"Q\"}";
	assert_int_equal(qentry_from_json(good, strlen(good), &back), 0);
	assert_string_equal(back.meta.qid, "Q");
	assert_int_equal(back.meta.received_at, 1735689600);
	qentry_free(&back);
}

/* A message's record (the file store's shared .json) gives each of its
 * entries back whole, the entry's own recipient in meta; it names no
 * other entry, and is not read without one asked for. */
static void test_message_record(void **state)
{
	(void)state;
	struct qentry e, back;
	full_entry(&e);
	char *ids[3] = { (char *)"0123456789abcdef01234567", (char *)"89abcdef0123456789abcdef",
			 (char *)"fedcba9876543210fedcba98" };
	char *rcpts[3] = { (char *)"a@example.org", (char *)"B\"q\"@Example.org",
			   (char *)"gr\xc3\xbc\xc3\x9f" "e@example.net" };
	char *s = qrecord_to_json(&e, ids, rcpts, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(qentry_from_json_for(s, strlen(s), ids[i], &back), 0);
		assert_string_equal(back.id, ids[i]);
		assert_string_equal(back.rcpt, rcpts[i]);
		assert_int_equal(back.meta.nrcpt, 1);
		assert_string_equal(back.meta.rcpt[0], rcpts[i]);
		/* everything else is the entry's as it was written */
		memcpy(e.id, ids[i], ENTRY_ID_LEN + 1);
		char *had = e.rcpt;
		e.rcpt = rcpts[i];
		char *a = qentry_to_json(&e, true), *b = qentry_to_json(&back, true);
		assert_string_equal(a, b);
		free(a);
		free(b);
		e.rcpt = had;
		qentry_free(&back);
	}
	assert_int_equal(qentry_from_json_for(s, strlen(s), "aaaaaaaaaaaaaaaaaaaaaaaa", &back), -1);
	assert_int_equal(qentry_from_json(s, strlen(s), &back), -1);
	free(s);
	/* an entry's own JSON reads as before, with or without an id asked for */
	s = qentry_to_json(&e, true);
	assert_int_equal(qentry_from_json_for(s, strlen(s), ids[2], &back), 0);
	assert_string_equal(back.id, e.id);
	qentry_free(&back);
	free(s);
	const char *bad[] = {
		"{\"entries\":[],\"status\":\"released\",\"status_changed\":\"2025-01-01T00:00:00Z\","
		"\"received_at\":\"2025-01-01T00:00:00Z\",\"size\":1}",
		"{\"entries\":{\"0123456789abcdef01234567\":5},\"status\":\"released\","
		"\"status_changed\":\"2025-01-01T00:00:00Z\",\"received_at\":\"2025-01-01T00:00:00Z\","
		"\"size\":1}",
		"{\"entries\":{\"0123456789abcdef01234567\":\"a@b\"},\"status\":\"released\","
		"\"status_changed\":\"2025-01-01T00:00:00Z\",\"size\":1}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(qentry_from_json_for(bad[i], strlen(bad[i]), ids[0], &back), -1);
	qentry_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_names),
		cmocka_unit_test(test_set_and_subject),
		cmocka_unit_test(test_symbols),
		cmocka_unit_test(test_json_keys),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_json_escapes),
		cmocka_unit_test(test_json_nulls),
		cmocka_unit_test(test_json_rejects),
		cmocka_unit_test(test_message_record),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
