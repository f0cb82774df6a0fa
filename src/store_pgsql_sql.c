/*
 * store_pgsql_sql.c - the server-less half of the PostgreSQL backend: the
 * list query built from a filter (SQL text from constants only, every
 * value a $n parameter), SQLSTATE classes, and the conversions of
 * metadata to parameter text (inet, jsonb, the partition day).
 */
#include "store_pgsql_sql.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_syntax.h"

/* The connection-level and shutdown states are what a reconnect cures;
 * resource shortages and timeouts cure themselves; the rest (schema,
 * data, permissions) needs an operator. */
enum pgsql_errkind pgsql_classify(const char *sqlstate, const char *message)
{
	if (sqlstate == NULL || strlen(sqlstate) != 5)
		return PGSQL_ERR_RECONNECT;
	if (strncmp(sqlstate, "08", 2) == 0)           /* connection exception */
		return PGSQL_ERR_RECONNECT;
	if (strcmp(sqlstate, "57P01") == 0 ||          /* admin_shutdown */
	    strcmp(sqlstate, "57P02") == 0 ||          /* crash_shutdown */
	    strcmp(sqlstate, "57P03") == 0 ||          /* cannot_connect_now */
	    strcmp(sqlstate, "25006") == 0)            /* read-only: a standby */
		return PGSQL_ERR_RECONNECT;
	/* duplicate_table: a concurrent first POST of the day created the
	 * partition while this one waited for the creator's lock, and this
	 * statement's catalog lookups predate it; a new transaction sees it. */
	if (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0 ||
	    strcmp(sqlstate, "42P07") == 0)
		return PGSQL_ERR_RETRY;
	if (strcmp(sqlstate, "23514") == 0 && message != NULL &&
	    strstr(message, "no partition") != NULL)
		return PGSQL_ERR_NOPART;
	if (strncmp(sqlstate, "53", 2) == 0 ||         /* insufficient resources */
	    strncmp(sqlstate, "58", 2) == 0 ||         /* system error (I/O) */
	    strcmp(sqlstate, "57014") == 0 ||          /* query_canceled: timeout */
	    strcmp(sqlstate, "55P03") == 0 ||          /* lock_not_available */
	    strcmp(sqlstate, "55006") == 0)            /* object_in_use */
		return PGSQL_ERR_TEMP;
	return PGSQL_ERR_PERM;
}

void pgsql_schema_advice(long have, char *out, size_t outlen)
{
	if (have < 1)
		snprintf(out, outlen, "apply %s", PGSQL_SCHEMA_FILE);
	else if (have + 1 == PGSQL_SCHEMA_VERSION)
		snprintf(out, outlen, "apply %s%03ld-*.sql", PGSQL_UPGRADE_DIR, have + 1);
	else if (have < PGSQL_SCHEMA_VERSION)
		snprintf(out, outlen, "apply %s%03ld-*.sql to %03d-*.sql in order",
			 PGSQL_UPGRADE_DIR, have + 1, PGSQL_SCHEMA_VERSION);
	else
		snprintf(out, outlen, "the database is newer than this program");
}

const char pgsql_entry_columns[] =
	"e.id, e.rcpt, e.status,"
	" extract(epoch FROM e.status_changed)::bigint,"
	" extract(epoch FROM e.received_at)::bigint,"
	" m.qid, m.env_from, m.smtp_user, host(m.ip), m.action, m.score, m.scan_time,"
	" m.symbols::text, m.fuzzy::text, m.rspamd_server, m.rspamd_subject,"
	" m.hdr_from, m.hdr_to, m.hdr_cc, m.hdr_subject, m.hdr_date, m.message_id,"
	" m.sha256, m.size, m.policy, m.rcpts::text";

void pgsql_query_free(struct pgsql_query *q)
{
	buf_free(&q->sql);
	for (int i = 0; i < q->nparams; i++)
		free(q->owned[i]);
	memset(q, 0, sizeof *q);
}

/* Adds a parameter (taking ownership of v) and returns its number. */
static int add_param(struct pgsql_query *q, char *v)
{
	if (q->nparams >= PGSQL_MAX_PARAMS)
		abort(); /* a programming error: the filter has fewer fields */
	q->owned[q->nparams] = v;
	q->params[q->nparams] = v;
	return ++q->nparams;
}

/* Appends " AND " + a condition whose $%d is the new parameter v. */
static void add_cond(struct pgsql_query *q, const char *fmt, char *v)
{
	int n = add_param(q, v);
	buf_appends(&q->sql, " AND ");
	buf_printf(&q->sql, fmt, n, n);
}

/* The bounds on the day as well as on the time let the planner skip
 * partitions outside [since, until). */
void pgsql_list_query(const struct store_filter *f, struct pgsql_query *q)
{
	char day[16];

	memset(q, 0, sizeof *q);
	buf_appends(&q->sql, "SELECT ");
	buf_appends(&q->sql, pgsql_entry_columns);
	buf_appends(&q->sql, " FROM entries e JOIN messages m"
		    " ON m.id = e.message_id AND m.received_day = e.received_day"
		    " WHERE true");
	if (f->rcpt != NULL)
		add_cond(q, "lower(e.rcpt) = lower($%d)", xstrdup(f->rcpt));
	if (f->from != NULL)
		add_cond(q, "lower(m.env_from) = lower($%d)", xstrdup(f->from));
	if (f->qid != NULL)
		add_cond(q, "m.qid = $%d", xstrdup(f->qid));
	if (f->symbol != NULL)
		add_cond(q, "m.symbols @> $%d::jsonb", pgsql_symbol_pattern(f->symbol));
	if (f->since != 0) {
		add_cond(q, "e.received_at >= to_timestamp($%d::bigint)",
			 xasprintf("%lld", (long long)f->since));
		pgsql_day(f->since, day);
		add_cond(q, "e.received_day >= $%d::date AND m.received_day >= $%d::date",
			 xstrdup(day));
	}
	if (f->until != 0) {
		add_cond(q, "e.received_at < to_timestamp($%d::bigint)",
			 xasprintf("%lld", (long long)f->until));
		pgsql_day(f->until, day);
		add_cond(q, "e.received_day <= $%d::date AND m.received_day <= $%d::date",
			 xstrdup(day));
	}
	if (f->status >= 0 && pgsql_status_text((enum entry_status)f->status) != NULL)
		add_cond(q, "e.status = $%d", xstrdup(pgsql_status_text((enum entry_status)f->status)));
	else
		buf_appends(&q->sql, " AND e.status <> 'deleted'");
	buf_appends(&q->sql, " ORDER BY e.received_at DESC, e.id DESC");
	if (f->limit > 0) {
		int n = add_param(q, xasprintf("%zu", f->limit));
		buf_printf(&q->sql, " LIMIT $%d::bigint", n);
	}
}

static const char *const status_texts[ENTRY_STATUS_COUNT] = {
	[ENTRY_QUARANTINED] = "quarantined",
	[ENTRY_RELEASED] = "released",
	[ENTRY_DELETED] = "deleted",
};

const char *pgsql_status_text(enum entry_status s)
{
	if ((unsigned)s >= ENTRY_STATUS_COUNT)
		return NULL;
	return status_texts[s];
}

int pgsql_status_parse(const char *text, enum entry_status *out)
{
	for (int i = 0; text != NULL && i < ENTRY_STATUS_COUNT; i++) {
		if (strcmp(text, status_texts[i]) == 0) {
			*out = (enum entry_status)i;
			return 0;
		}
	}
	return -1;
}

/* inet would reject anything else and fail the whole put; an address we
 * cannot read is better stored as unknown than refused. */
const char *pgsql_ip_param(const char *ip)
{
	unsigned char addr[sizeof(struct in6_addr)];

	if (ip == NULL || *ip == '\0' || strlen(ip) > 64)
		return NULL;
	if (inet_pton(AF_INET, ip, addr) == 1 || inet_pton(AF_INET6, ip, addr) == 1)
		return ip;
	return NULL;
}

void pgsql_day(int64_t t, char out[16])
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (gmtime_r(&tt, &tm) == NULL || strftime(out, 16, "%Y-%m-%d", &tm) == 0)
		snprintf(out, 16, "1970-01-01");
}

int64_t pgsql_lock_key(const char *sha256hex)
{
	uint64_t v = 0;

	for (int i = 0; i < 16 && sha256hex[i] != '\0'; i++) {
		char c = sha256hex[i];
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
			   : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
			   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 0;
		v = v << 4 | d;
	}
	return (int64_t)v;
}

/* True if s is ENTRY_ID_LEN lower-case hex digits. */
static bool is_entry_id(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= ENTRY_ID_LEN || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == ENTRY_ID_LEN;
}

char *pgsql_id_array(char *const *ids, size_t n)
{
	struct buf b = { 0 };

	buf_appendc(&b, '{');
	for (size_t i = 0; i < n; i++) {
		if (ids[i] == NULL || !is_entry_id(ids[i])) {
			buf_free(&b);
			return NULL;
		}
		if (i > 0)
			buf_appendc(&b, ',');
		buf_appends(&b, ids[i]);
	}
	buf_appendc(&b, '}');
	return buf_steal(&b);
}

char *pgsql_text_array(char *const *v, size_t n)
{
	struct buf b = { 0 };

	buf_appendc(&b, '{');
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_appendc(&b, ',');
		if (v[i] == NULL) {
			buf_appends(&b, "NULL");
			continue;
		}
		buf_appendc(&b, '"');
		for (const char *c = v[i]; *c != '\0'; c++) {
			if (*c == '"' || *c == '\\')
				buf_appendc(&b, '\\');
			buf_appendc(&b, *c);
		}
		buf_appendc(&b, '"');
	}
	buf_appendc(&b, '}');
	return buf_steal(&b);
}

/* jsonb refuses what is not JSON and would fail the put; the parsers
 * hand over JSON, but a quarantine must not lose mail over metadata.
 * The check builds nothing (a jansson parse of the symbols was a visible
 * part of the worker's time per message); like jsonb, it takes numbers
 * of any size. */
char *pgsql_json_param(const char *json)
{
	json_t *v;
	char *out, *ret;

	if (json == NULL)
		return NULL;
	if (json_syntax_check(json, strlen(json), 0, NULL, 0) == 0)
		return xstrdup(json);
	v = json_string(json);
	if (v == NULL)
		return xstrdup("null");
	out = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(v);
	ret = xstrdup(out ? out : "null");
	free(out);
	return ret;
}

char *pgsql_rcpts_json(char *const *rcpt, size_t n)
{
	json_t *a = json_array();
	char *out, *ret;

	for (size_t i = 0; i < n; i++) {
		json_t *s = rcpt[i] ? json_string(rcpt[i]) : NULL;
		json_array_append_new(a, s ? s : json_null());
	}
	out = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	ret = xstrdup(out ? out : "[]");
	free(out);
	return ret;
}

int pgsql_rcpts_parse(const char *json, char ***rcpt, size_t *n)
{
	json_error_t err;
	json_t *a = json ? json_loads(json, 0, &err) : NULL;
	size_t i, k = 0;
	json_t *v;

	*rcpt = NULL;
	*n = 0;
	if (a == NULL || !json_is_array(a)) {
		json_decref(a);
		return -1;
	}
	*rcpt = xcalloc(json_array_size(a) + 1, sizeof **rcpt);
	json_array_foreach(a, i, v) {
		if (json_is_string(v))
			(*rcpt)[k++] = xstrdup(json_string_value(v));
	}
	*n = k;
	json_decref(a);
	return 0;
}

char *pgsql_symbol_pattern(const char *name)
{
	json_t *v = json_pack("[{s:s}]", "name", name);
	char *out, *ret;

	if (v == NULL) /* name not UTF-8: matches nothing */
		return xstrdup("[{\"name\": null}]");
	out = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	ret = xstrdup(out);
	free(out);
	return ret;
}

/* Network byte order, as the binary COPY format wants every word. */
static void put_be(struct buf *b, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		buf_appendc(b, (char)(unsigned char)(v >> (8 * i)));
}

/* Binary COPY lets the content travel in pieces, without libpq holding
 * a second copy of it as it would for a query parameter. */
void pgsql_copy_content_head(struct buf *b, const char *sha256, int64_t received_at,
			     uint32_t size)
{
	static const char sig[11] = { 'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0' };
	/* days since 2000-01-01, PostgreSQL's date epoch (floor division) */
	int64_t day = received_at >= 0 ? received_at / 86400 : -((-received_at + 86399) / 86400);
	int32_t pgday = (int32_t)(day - 10957);
	size_t len = strlen(sha256);

	buf_append(b, sig, sizeof sig);
	put_be(b, 0, 4);                 /* flags */
	put_be(b, 0, 4);                 /* header extension length */
	put_be(b, 4, 2);                 /* fields in the tuple */
	put_be(b, len, 4);               /* sha256 (text: its bytes) */
	buf_append(b, sha256, len);
	put_be(b, 4, 4);                 /* received_day (date: int32) */
	put_be(b, (uint32_t)pgday, 4);
	put_be(b, 8, 4);                 /* size (int8) */
	put_be(b, size, 8);
	put_be(b, size, 4);              /* content (bytea: its bytes) */
}

void pgsql_copy_trailer(struct buf *b)
{
	put_be(b, 0xffff, 2);
}

void pgsql_oneline(const char *msg, char *out, size_t outlen)
{
	size_t i = 0;

	if (outlen == 0)
		return;
	if (msg == NULL)
		msg = "";
	/* libpq's messages start with a severity we do not need */
	if (strncmp(msg, "ERROR:  ", 8) == 0)
		msg += 8;
	else if (strncmp(msg, "FATAL:  ", 8) == 0)
		msg += 8;
	for (; msg[i] != '\0' && msg[i] != '\n' && msg[i] != '\r' && i + 1 < outlen; i++)
		out[i] = (msg[i] == '\t') ? ' ' : msg[i];
	out[i] = '\0';
	if (i == 0)
		snprintf(out, outlen, "unknown error");
}
