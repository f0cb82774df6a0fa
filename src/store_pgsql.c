/*
 * store_pgsql.c - the PostgreSQL backend (backend = pgsql): the store that
 * several receivers share.  One connection per worker, opened after fork,
 * with every fixed statement prepared at connect.  A put is one
 * transaction (content, message, one entry per recipient) committed with
 * synchronous_commit on, its statements sent as libpq pipelines (one
 * round trip for a message up to 256 KB); a retry of the same POST finds
 * its entries and adds nothing.  When the server goes away the call fails
 * with QERR_TEMP (the daemon answers 503) and the next call connects
 * again: the daemon never needs a restart.  No SQL is built from input:
 * values travel as parameters, the content as a binary parameter or as
 * binary COPY data.  The schema is sql/schema.sql; sql/README.md explains
 * it.
 */
#include "store.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "store_pgsql_sql.h"

/* Content goes to the server in pieces of this size. */
#define COPY_CHUNK (256 * 1024)
/* Content up to this size goes as a parameter of the put, in the same
 * round trip as everything else: libpq holds a copy of it meanwhile, no
 * larger than the COPY's pieces make its buffer anyway. */
#define INLINE_MAX COPY_CHUNK
/* read_content hands the content to its callback in pieces of this size. */
#define READ_CHUNK (64 * 1024)

struct pg_state {
	PGconn *conn;         /* NULL until connected, and after a failure */
	char *conninfo;
	char parts_day[16];   /* partitions are known to exist for this day */
};

struct pg_put {
	struct pg_state *st;
	struct buf content;
};

/* A fixed statement, prepared at connect. */
struct pg_stmt {
	const char *name;
	const char *sql;
	int nparams;
};

#define ENTRY_FROM \
	" FROM entries e JOIN messages m" \
	" ON m.id = e.message_id AND m.received_day = e.received_day"

static const struct pg_stmt stmts[] = {
	/* prepared too, so that a put's pipeline parses nothing */
	{ "rq_begin", "BEGIN", 0 },
	{ "rq_commit", "COMMIT", 0 },
	/* The put's advisory lock, and no sequential scans for the rest of
	 * its transaction: the look-up of a POST's entries must probe the
	 * primary key, but a plan made while the day's partition was small
	 * (at its first autoanalyze) read the whole partition instead, and
	 * the prepared statement kept that plan while the partition grew. */
	{ "rq_lock", "SELECT pg_advisory_xact_lock($1::bigint),"
	  " set_config('enable_seqscan', 'off', true)", 1 },
	{ "rq_seen",
	  "SELECT id FROM entries WHERE id = ANY ($1::text[])"
	  " AND received_day BETWEEN $2::date - $3::integer AND $2::date + 1", 3 },
	{ "rq_has_content",
	  "SELECT 1 FROM contents WHERE sha256 = $1 AND received_day = $2::date", 2 },
	/* The whole put in one statement: the POST's entries not stored yet
	 * (ids $24 and recipients $25, paired, looked up in the days around
	 * $1 as rq_seen does, by id = ANY: an anti-join let the planner hash
	 * a whole partition); if there are any, the content ($27, binary;
	 * NULL when a COPY sent it) unless the day has it, the message row,
	 * and their entries with the new message's id.  A retry whose
	 * entries all exist adds nothing. */
	{ "rq_put",
	  "WITH n AS MATERIALIZED ("
	  " SELECT d.id, d.rcpt FROM unnest($24::text[], $25::text[]) AS d(id, rcpt)"
	  " WHERE d.id <> ALL (ARRAY(SELECT e.id FROM entries e"
	  " WHERE e.id = ANY ($24::text[])"
	  " AND e.received_day BETWEEN $1::date - $26::integer AND $1::date + 1))),"
	  " c AS ("
	  " INSERT INTO contents (sha256, received_day, size, content)"
	  " SELECT $3, $1::date, $4::bigint, $27::bytea"
	  " WHERE $27::bytea IS NOT NULL AND EXISTS (SELECT 1 FROM n)"
	  " ON CONFLICT DO NOTHING),"
	  " m AS ("
	  " INSERT INTO messages (received_day, received_at, sha256, size, rcpts, qid,"
	  " env_from, smtp_user, ip, action, score, scan_time, symbols, fuzzy,"
	  " rspamd_server, rspamd_subject, hdr_from, hdr_to, hdr_cc, hdr_subject,"
	  " hdr_date, message_id, policy)"
	  " SELECT $1::date, to_timestamp($2::bigint), $3, $4::bigint, $5::jsonb, $6,"
	  " $7, $8, $9::inet, $10, $11::float8, $12::integer, $13::jsonb, $14::jsonb,"
	  " $15, $16, $17, $18, $19, $20, $21, $22, $23"
	  " WHERE EXISTS (SELECT 1 FROM n)"
	  " RETURNING id, received_day, received_at)"
	  " INSERT INTO entries (id, received_day, received_at, message_id, rcpt, status,"
	  " status_changed)"
	  " SELECT n.id, m.received_day, m.received_at, m.id, n.rcpt, 'quarantined',"
	  " m.received_at"
	  " FROM m, n"
	  " ON CONFLICT DO NOTHING", 27 },
	{ "rq_ensure", "SELECT rq_ensure_partitions($1::date)", 1 },
	{ "rq_get",
	  "SELECT %COLUMNS%" ENTRY_FROM
	  " WHERE e.id = $1 ORDER BY e.received_at DESC LIMIT 1", 1 },
	{ "rq_content",
	  "SELECT c.content" ENTRY_FROM
	  " JOIN contents c ON c.sha256 = m.sha256 AND c.received_day = m.received_day"
	  " WHERE e.id = $1 ORDER BY e.received_at DESC LIMIT 1", 1 },
	{ "rq_remove", "SELECT entries FROM rq_remove($1)", 1 },
	{ "rq_set_status",
	  "UPDATE entries SET status = $2, status_changed = to_timestamp($3::bigint)"
	  " WHERE id = $1", 3 },
	{ "rq_expired_parts",
	  "SELECT parent, part, day, attached, detach_pending"
	  " FROM rq_expired_partitions($1::date)", 1 },
	{ "rq_day_counts", "SELECT entries, contents, bytes FROM rq_day_counts($1::date)", 1 },
	{ "rq_expire_rows",
	  "SELECT entries, contents, bytes FROM rq_expire_rows("
	  "to_timestamp($1::bigint), $2::bigint, $3::bigint)", 3 },
	{ "rq_stats_entries", "SELECT status, count(*) FROM entries GROUP BY status", 0 },
	{ "rq_stats_contents", "SELECT count(*), coalesce(sum(size), 0) FROM contents", 0 },
	/* the users' digest: announced marks, by the primary key */
	{ "rq_get_announced",
	  "SELECT id, extract(epoch FROM announced_at)::bigint FROM entries"
	  " WHERE id = ANY ($1::text[]) AND announced_at IS NOT NULL", 1 },
	{ "rq_set_announced",
	  "UPDATE entries SET announced_at = CASE WHEN $2::bigint = 0 THEN NULL"
	  " ELSE to_timestamp($2::bigint) END WHERE id = ANY ($1::text[])", 2 },
};

/* ---------------------------------------------------------------- errors */

/* Fills e from a failed result (r may be NULL) and decides what happens
 * to the connection: dropped when it is gone (the next call connects
 * again), rolled back when a transaction is open.  Returns the kind. */
static enum pgsql_errkind pg_fail(struct pg_state *st, PGresult *r, const char *what,
				  struct qerr *e)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r)
							 : PQerrorMessage(st->conn);
	char line[200];
	enum pgsql_errkind kind;

	pgsql_oneline(msg, line, sizeof line);
	kind = pgsql_classify(state, msg);
	if (PQstatus(st->conn) != CONNECTION_OK)
		kind = PGSQL_ERR_RECONNECT;
	if (kind == PGSQL_ERR_PERM)
		qerr_perm(e, "PostgreSQL: %s: %s%s%s", what, line, state ? " SQLSTATE " : "",
			  state ? state : "");
	else
		qerr_temp(e, "PostgreSQL: %s: %s", what, line);
	if (kind == PGSQL_ERR_RECONNECT) {
		log_warn("pgsql: connection lost (%s); reconnecting on the next request", line);
		PQfinish(st->conn);
		st->conn = NULL;
	} else if (PQtransactionStatus(st->conn) != PQTRANS_IDLE) {
		PGresult *rb = PQexec(st->conn, "ROLLBACK");
		PQclear(rb);
	}
	PQclear(r);
	return kind;
}

/* Runs a prepared statement; NULL (with *kind and e set) unless the
 * result has the wanted status. */
static PGresult *pg_run(struct pg_state *st, const char *name, int n,
			const char *const *vals, ExecStatusType want, const char *what,
			enum pgsql_errkind *kind, struct qerr *e)
{
	PGresult *r = PQexecPrepared(st->conn, name, n, vals, NULL, NULL, 0);

	if (r != NULL && PQresultStatus(r) == want)
		return r;
	*kind = pg_fail(st, r, what, e);
	return NULL;
}

/* Runs a fixed command (BEGIN, COMMIT, ...). */
static int pg_cmd(struct pg_state *st, const char *sql, const char *what,
		  enum pgsql_errkind *kind, struct qerr *e)
{
	PGresult *r = PQexec(st->conn, sql);

	if (r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK) {
		PQclear(r);
		return 0;
	}
	*kind = pg_fail(st, r, what, e);
	return -1;
}

/* One statement of a pipeline: a prepared statement, with n parameters. */
struct pg_step {
	const char *name;
	int n;
	const char *const *vals;
	const int *lens;      /* with fmts: binary parameters (NULL: all text) */
	const int *fmts;
	ExecStatusType want;
	const char *what;     /* names the step in an error message */
	bool keep;            /* hand the result to the caller in res */
	bool commit;          /* the step commits the transaction */
	PGresult *res;
};

/* Drops the connection without a server error to blame: the protocol
 * state is not one the code knows how to go on from. */
static enum pgsql_errkind pg_drop(struct pg_state *st, const char *what, struct qerr *e)
{
	log_warn("pgsql: %s: connection in an unexpected state; reconnecting on the next"
		 " request", what);
	qerr_temp(e, "PostgreSQL: %s: connection in an unexpected state", what);
	PQfinish(st->conn);
	st->conn = NULL;
	return PGSQL_ERR_RECONNECT;
}

/* Sends the steps as one pipeline ending in a sync, and reads every
 * result: one round trip for all of them.  The server runs them in order
 * and skips the rest after a failure; the failure is then classified as
 * a single statement's would be (pg_fail: the connection dropped, or the
 * transaction rolled back), once the pipeline has been read to its end.
 * *failed is the index of the failing step.  A connection lost after a
 * commit step was sent is reported as "committing", and *unknown (may be
 * NULL) set: the outcome is unknown, as for a lost reply to COMMIT; the
 * server may have ended it at an earlier step, but did not say so.  On
 * success, each kept step's result is in res for the caller to clear;
 * when the connection was lost after the COMMIT's answer, the pipeline
 * succeeded and the connection is dropped. */
static int pg_pipeline(struct pg_state *st, struct pg_step *s, int n, int *failed,
		       bool *unknown, enum pgsql_errkind *kind, struct qerr *e)
{
	PGconn *c = st->conn;
	PGresult *err = NULL, *r;
	int got = 0, i, commit = -1;
	bool synced = false, sent = true;

	*failed = 0;
	if (unknown != NULL)
		*unknown = false;
	for (i = 0; i < n; i++) {
		s[i].res = NULL;
		if (s[i].commit)
			commit = i;
	}
	if (!PQenterPipelineMode(c)) {
		*kind = pg_drop(st, s[0].what, e);
		return -1;
	}
	for (i = 0; i < n && sent; i++)
		sent = PQsendQueryPrepared(c, s[i].name, s[i].n, s[i].vals, s[i].lens, s[i].fmts,
					   0) == 1;
	sent = sent && PQpipelineSync(c) == 1;

	/* Each step's results end with a NULL; the sync ends the pipeline.
	 * A lost connection ends it early (then libpq answers NULL for ever). */
	while (sent && !synced && got <= n && PQstatus(c) == CONNECTION_OK) {
		r = PQgetResult(c);
		if (r == NULL) {
			got++;
			continue;
		}
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			synced = true;
			PQclear(r);
		} else if (err == NULL && got < n && PQresultStatus(r) == s[got].want &&
			   s[got].res == NULL) {
			if (s[got].keep)
				s[got].res = r;
			else
				PQclear(r);
		} else if (err == NULL) {
			err = r;
			*failed = got < n ? got : n - 1;
		} else {
			PQclear(r); /* steps skipped after the failure */
		}
	}
	if (err == NULL && got == n) {
		if (synced && PQexitPipelineMode(c) == 1)
			return 0;
		if (commit == n - 1) {
			/* every step answered, COMMIT included: stored,
			 * whatever became of the connection afterwards */
			log_warn("pgsql: connection lost after a commit; reconnecting on the"
				 " next request");
			PQfinish(st->conn);
			st->conn = NULL;
			return 0;
		}
	}
	if (err == NULL)
		*failed = got < n ? got : n - 1;
	if (PQstatus(c) == CONNECTION_OK && (!synced || PQexitPipelineMode(c) != 1)) {
		PQclear(err);
		*kind = pg_drop(st, s[*failed].what, e);
		goto fail;
	}
	const char *what = s[*failed].what;
	if (PQstatus(c) != CONNECTION_OK && commit >= *failed &&
	    (err == NULL || PQresultErrorField(err, PG_DIAG_SQLSTATE) == NULL)) {
		what = s[commit].what;
		if (unknown != NULL)
			*unknown = true;
	}
	*kind = pg_fail(st, err, what, e);
fail:
	for (i = 0; i < n; i++) {
		PQclear(s[i].res);
		s[i].res = NULL;
	}
	return -1;
}

/* ---------------------------------------------------------------- connection */

/* Server notices (e.g. from IF NOT EXISTS) are not worth a log line. */
static void pg_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* Checks the schema version and prepares the statements on a fresh
 * connection.  A wrong schema is QERR_PERM and names the file to apply. */
static int pg_setup(struct pg_state *st, struct qerr *e)
{
	enum pgsql_errkind kind;
	char advice[100];
	PGresult *r;

	PQsetNoticeProcessor(st->conn, pg_quiet, NULL);
	if (pg_cmd(st, "SET synchronous_commit = on; SET TIME ZONE 'UTC';"
		   " SET client_min_messages = warning", "session setup", &kind, e) < 0)
		return -1;
	r = PQexec(st->conn, "SELECT version FROM schema_version");
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
		const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
		if (state != NULL && strcmp(state, "42P01") == 0) {
			PQclear(r);
			pgsql_schema_advice(-1, advice, sizeof advice);
			return qerr_perm(e, "database schema version none, expected %d: %s",
					 PGSQL_SCHEMA_VERSION, advice);
		}
		pg_fail(st, r, "reading schema_version", e);
		return -1;
	}
	const char *v = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "none";
	long ver = -1;
	if (parse_long(v, 0, 1000000, &ver, NULL) < 0 || ver != PGSQL_SCHEMA_VERSION) {
		pgsql_schema_advice(ver, advice, sizeof advice);
		qerr_perm(e, "database schema version %.20s, expected %d: %s", v,
			  PGSQL_SCHEMA_VERSION, advice);
		PQclear(r);
		return -1;
	}
	PQclear(r);
	/* A put stuck behind a lock helps nobody (Rspamd gave up after 5 s
	 * and the MTA will retry): bound lock waits unless the operator
	 * chose a bound (PGOPTIONS, the role's or database's settings). */
	r = PQexec(st->conn, "SHOW lock_timeout");
	bool unbounded = r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK &&
			 PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "0") == 0;
	PQclear(r);
	if (unbounded && pg_cmd(st, "SET lock_timeout = '30s'", "session setup", &kind, e) < 0)
		return -1;

	for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
		struct buf sql = { 0 };
		const char *cols = strstr(stmts[i].sql, "%COLUMNS%");
		if (cols != NULL) {
			buf_append(&sql, stmts[i].sql, (size_t)(cols - stmts[i].sql));
			buf_appends(&sql, pgsql_entry_columns);
			buf_appends(&sql, cols + strlen("%COLUMNS%"));
		} else {
			buf_appends(&sql, stmts[i].sql);
		}
		r = PQprepare(st->conn, stmts[i].name, sql.data, stmts[i].nparams, NULL);
		buf_free(&sql);
		if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
			pg_fail(st, r, "preparing statements", e);
			return -1;
		}
		PQclear(r);
	}
	return 0;
}

/* Opens a connection and sets it up. */
static int pg_connect(struct pg_state *st, struct qerr *e)
{
	/* Defaults first: the operator's conninfo (expanded as dbname)
	 * overrides them. */
	const char *keys[] = { "connect_timeout", "fallback_application_name",
			       "client_encoding", "dbname", NULL };
	const char *vals[] = { "10", "rspamd-quarantine", "UTF8",
			       st->conninfo ? st->conninfo : "", NULL };
	char line[200];

	st->conn = PQconnectdbParams(keys, vals, 1);
	if (st->conn == NULL)
		return qerr_temp(e, "PostgreSQL: cannot connect: out of memory");
	if (PQstatus(st->conn) != CONNECTION_OK) {
		pgsql_oneline(PQerrorMessage(st->conn), line, sizeof line);
		PQfinish(st->conn);
		st->conn = NULL;
		return qerr_temp(e, "PostgreSQL: cannot connect: %s", line);
	}
	st->parts_day[0] = '\0';
	if (pg_setup(st, e) < 0) {
		if (st->conn != NULL)
			PQfinish(st->conn);
		st->conn = NULL;
		return -1;
	}
	return 0;
}

/* False if an idle connection is known to be dead: the server sends a
 * FATAL message and closes when it shuts down or terminates the backend,
 * which shows up as input waiting on an idle socket. */
static bool pg_alive(PGconn *c)
{
	struct pollfd pfd = { .fd = PQsocket(c), .events = POLLIN };
	PGresult *r;

	if (PQstatus(c) != CONNECTION_OK || pfd.fd < 0)
		return false;
	if (poll(&pfd, 1, 0) <= 0)
		return true; /* nothing waiting: as good as we can tell */
	if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK)
		return false;
	while (!PQisBusy(c) && (r = PQgetResult(c)) != NULL)
		PQclear(r);
	return PQstatus(c) == CONNECTION_OK;
}

/* Makes sure there is a usable connection, idle, before a call.  *fresh
 * (may be NULL) tells whether it was made just now. */
static int pg_ready_fresh(struct pg_state *st, bool *fresh, struct qerr *e)
{
	if (fresh != NULL)
		*fresh = false;
	if (st->conn != NULL && !pg_alive(st->conn)) {
		log_info("pgsql: connection closed by the server; reconnecting");
		PQfinish(st->conn);
		st->conn = NULL;
	}
	if (st->conn == NULL) {
		if (pg_connect(st, e) < 0)
			return -1;
		if (fresh != NULL)
			*fresh = true;
		log_info("pgsql: connected to %s database %s", PQhost(st->conn) ? PQhost(st->conn) : "?",
			 PQdb(st->conn) ? PQdb(st->conn) : "?");
	}
	if (PQtransactionStatus(st->conn) != PQTRANS_IDLE) {
		PGresult *r = PQexec(st->conn, "ROLLBACK");
		PQclear(r);
	}
	return 0;
}

static int pg_ready(struct pg_state *st, struct qerr *e)
{
	return pg_ready_fresh(st, NULL, e);
}

/* Connects now, so that a wrong schema stops the start; an unreachable
 * server does not: the calls answer QERR_TEMP until it is back. */
static int pg_open(void **state, const struct config *c, struct qerr *e)
{
	struct pg_state *st = xcalloc(1, sizeof *st);
	struct qerr ce = { 0 };

	st->conninfo = xstrdup(c->pgsql_conninfo ? c->pgsql_conninfo : "");
	if (pg_connect(st, &ce) < 0) {
		if (ce.cls == QERR_PERM) {
			*e = ce;
			free(st->conninfo);
			free(st);
			return -1;
		}
		log_warn("pgsql: %s (will retry on the next request)", ce.msg);
	}
	*state = st;
	return 0;
}

static void pg_close(void *state)
{
	struct pg_state *st = state;

	if (st == NULL)
		return;
	if (st->conn != NULL)
		PQfinish(st->conn);
	free(st->conninfo);
	free(st);
}

/* ---------------------------------------------------------------- put */

static int pg_put_begin(void *state, void **put, struct qerr *e)
{
	struct pg_put *p = xcalloc(1, sizeof *p);

	(void)e;
	p->st = state;
	*put = p;
	return 0;
}

/* The content is kept until commit: its SHA-256, known only at the end,
 * decides whether it has to be sent at all. */
static int pg_put_write(void *put, const void *data, size_t n, struct qerr *e)
{
	struct pg_put *p = put;

	if (n > PGSQL_MAX_CONTENT || p->content.len > PGSQL_MAX_CONTENT - n)
		return qerr_input(e, 413, "message exceeds PostgreSQL's field limit (%u bytes)",
				  PGSQL_MAX_CONTENT);
	buf_append(&p->content, data, n);
	return 0;
}

static void pg_put_free(struct pg_put *p)
{
	buf_free(&p->content);
	free(p);
}

static void pg_put_abort(void *put)
{
	if (put != NULL)
		pg_put_free(put);
}

/* Creates the day's partitions (and the next day's) outside the put's
 * transaction, once per day and connection. */
static int ensure_partitions(struct pg_state *st, const char *day, enum pgsql_errkind *kind,
			     struct qerr *e)
{
	const char *v[1] = { day };
	PGresult *r;

	if (strcmp(st->parts_day, day) == 0)
		return 0;
	r = pg_run(st, "rq_ensure", 1, v, PGRES_TUPLES_OK, "creating partitions", kind, e);
	if (r == NULL)
		return -1;
	PQclear(r);
	snprintf(st->parts_day, sizeof st->parts_day, "%s", day);
	return 0;
}

/* Sends the content as one binary COPY row, in pieces. */
static int copy_content(struct pg_state *st, const struct pg_put *p, const struct qmeta *m,
			enum pgsql_errkind *kind, struct qerr *e)
{
	PGresult *r = PQexec(st->conn, "COPY contents (sha256, received_day, size, content)"
				       " FROM STDIN (FORMAT binary)");
	struct buf head = { 0 };
	int ok;

	if (r == NULL || PQresultStatus(r) != PGRES_COPY_IN) {
		*kind = pg_fail(st, r, "storing content", e);
		return -1;
	}
	PQclear(r);
	pgsql_copy_content_head(&head, m->sha256, m->received_at, (uint32_t)p->content.len);
	ok = PQputCopyData(st->conn, head.data, (int)head.len) == 1;
	buf_free(&head);
	for (size_t off = 0; ok && off < p->content.len; off += COPY_CHUNK) {
		size_t n = p->content.len - off < COPY_CHUNK ? p->content.len - off : COPY_CHUNK;
		ok = PQputCopyData(st->conn, p->content.data + off, (int)n) == 1;
	}
	if (ok) {
		struct buf tail = { 0 };
		pgsql_copy_trailer(&tail);
		ok = PQputCopyData(st->conn, tail.data, (int)tail.len) == 1;
		buf_free(&tail);
	}
	if (PQputCopyEnd(st->conn, ok ? NULL : "content not sent") != 1)
		ok = 0;
	r = PQgetResult(st->conn);
	if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
		*kind = pg_fail(st, r, "storing content", e);
		while ((r = st->conn ? PQgetResult(st->conn) : NULL) != NULL)
			PQclear(r);
		return -1;
	}
	PQclear(r);
	while ((r = PQgetResult(st->conn)) != NULL)
		PQclear(r);
	if (!ok) {
		*kind = pg_fail(st, NULL, "storing content", e);
		return -1;
	}
	return 0;
}

/* The message row's parameters, the first 23 of rq_put. */
static void message_params(const struct qmeta *m, const char *day, const char **v, char **own)
{
	own[0] = xasprintf("%lld", (long long)m->received_at);
	own[1] = xasprintf("%llu", (unsigned long long)m->size);
	own[2] = pgsql_rcpts_json(m->rcpt, m->nrcpt);
	own[3] = m->has_score ? xasprintf("%.17g", m->score) : NULL;
	own[4] = m->scan_time >= 0 && m->scan_time <= 2147483647L
		 ? xasprintf("%ld", m->scan_time) : NULL;
	own[5] = pgsql_json_param(m->symbols_json);
	own[6] = pgsql_json_param(m->fuzzy_json);
	v[0] = day;
	v[1] = own[0];
	v[2] = m->sha256;
	v[3] = own[1];
	v[4] = own[2];
	v[5] = m->qid;
	v[6] = m->env_from;
	v[7] = m->user;
	v[8] = pgsql_ip_param(m->ip);
	v[9] = m->action;
	v[10] = own[3];
	v[11] = own[4];
	v[12] = own[5];
	v[13] = own[6];
	v[14] = m->rspamd_server;
	v[15] = m->rspamd_subject;
	v[16] = m->hdr_from;
	v[17] = m->hdr_to;
	v[18] = m->hdr_cc;
	v[19] = m->hdr_subject;
	v[20] = m->hdr_date;
	v[21] = m->hdr_msgid;
	v[22] = m->policy;
}

/* One attempt at the put's transaction.  A content up to INLINE_MAX
 * bytes travels as a parameter of rq_put, and the whole transaction is
 * one pipeline: BEGIN, an advisory lock on the content (so that two
 * receivers storing the same POST take turns; rq_put is a statement of
 * its own after it, so its snapshot sees what the lock's previous holder
 * committed), rq_put, COMMIT: one round trip.  A larger content goes by
 * COPY, which cannot be part of a pipeline, and only when it is needed:
 * BEGIN, the lock and the look-ups of the entries and of the content
 * first (one round trip), the COPY if some entry is new and the day
 * lacks the content (two), then rq_put and COMMIT (one).  *stale: the
 * server answered nothing on a connection that was not new, which may
 * have died while idle; the put may run again at once (it is idempotent).
 * *unknown: the connection was lost with the COMMIT sent. */
static int put_once(struct pg_state *st, const struct pg_put *p, const struct qmeta *m,
		    char *const *ids, size_t *created, enum pgsql_errkind *kind, bool *stale,
		    bool *unknown, struct qerr *e)
{
	bool fresh;
	char day[16], key[32], dedup[16];
	char *idarr = NULL, *rcpts = NULL, *own[7] = { NULL };
	char **newids = NULL, **newrcpts = NULL;
	size_t nnew = 0;
	const char *mv[27];
	int lens[27] = { 0 }, fmts[27] = { 0 };
	int failed, rc = -1;

	*kind = PGSQL_ERR_PERM;
	*stale = false;
	pgsql_day(m->received_at, day);
	if (pg_ready_fresh(st, &fresh, e) < 0) {
		*kind = e->cls == QERR_TEMP ? PGSQL_ERR_RECONNECT : PGSQL_ERR_PERM;
		return -1;
	}
	idarr = pgsql_id_array(ids, m->nrcpt);
	if (idarr == NULL)
		return qerr_perm(e, "PostgreSQL: malformed entry id");
	/* A connection that fails before the transaction has begun was
	 * already dead (the server restarted while it was idle): nothing
	 * of this put reached the server, and a new connection may try. */
	if (ensure_partitions(st, day, kind, e) < 0) {
		*stale = !fresh && *kind == PGSQL_ERR_RECONNECT;
		goto out;
	}

	snprintf(key, sizeof key, "%lld", (long long)pgsql_lock_key(m->sha256));
	snprintf(dedup, sizeof dedup, "%d", PGSQL_DEDUP_DAYS);
	rcpts = pgsql_text_array(m->rcpt, m->nrcpt);
	message_params(m, day, mv, own);
	mv[23] = idarr;
	mv[24] = rcpts;
	mv[25] = dedup;
	mv[26] = NULL;
	const char *lv[1] = { key };
	struct pg_step begin[] = {
		{ .name = "rq_begin", .want = PGRES_COMMAND_OK, .what = "starting a transaction" },
		{ .name = "rq_lock", .n = 1, .vals = lv, .want = PGRES_TUPLES_OK,
		  .what = "locking" },
	};
	struct pg_step put[] = {
		{ .name = "rq_put", .n = 27, .vals = mv, .lens = lens, .fmts = fmts,
		  .want = PGRES_COMMAND_OK, .what = "storing message", .keep = true },
		{ .name = "rq_commit", .want = PGRES_COMMAND_OK, .what = "committing",
		  .commit = true },
	};

	if (p->content.len <= INLINE_MAX) {
		struct pg_step all[] = { begin[0], begin[1], put[0], put[1] };
		mv[26] = p->content.data != NULL ? p->content.data : "";
		lens[26] = (int)p->content.len;
		fmts[26] = 1;
		if (pg_pipeline(st, all, 4, &failed, unknown, kind, e) < 0) {
			/* the same for a connection that did not even take the
			 * BEGIN (a retry finds whatever did commit) */
			*stale = !fresh && failed == 0 && *kind == PGSQL_ERR_RECONNECT;
			goto out;
		}
		put[0].res = all[2].res;
	} else {
		const char *sv[3] = { idarr, day, dedup };
		const char *cv[2] = { m->sha256, day };
		struct pg_step look[] = {
			begin[0], begin[1],
			{ .name = "rq_seen", .n = 3, .vals = sv, .want = PGRES_TUPLES_OK,
			  .what = "looking up entries", .keep = true },
			{ .name = "rq_has_content", .n = 2, .vals = cv, .want = PGRES_TUPLES_OK,
			  .what = "looking up content", .keep = true },
		};
		if (pg_pipeline(st, look, 4, &failed, NULL, kind, e) < 0) {
			*stale = !fresh && failed == 0 && *kind == PGSQL_ERR_RECONNECT;
			goto out;
		}
		/* rq_put gets the new entries only: what it stores is then
		 * covered by the decision about the content taken here */
		newids = xcalloc(m->nrcpt, sizeof *newids);
		newrcpts = xcalloc(m->nrcpt, sizeof *newrcpts);
		for (size_t i = 0; i < m->nrcpt; i++) {
			bool seen = false;
			for (int row = 0; row < PQntuples(look[2].res) && !seen; row++)
				seen = strcmp(PQgetvalue(look[2].res, row, 0), ids[i]) == 0;
			if (!seen) {
				newids[nnew] = ids[i];
				newrcpts[nnew++] = m->rcpt[i];
			}
		}
		bool have = PQntuples(look[3].res) > 0;
		PQclear(look[2].res);
		PQclear(look[3].res);
		if (nnew > 0 && !have && copy_content(st, p, m, kind, e) < 0)
			goto out;
		free(idarr);
		free(rcpts);
		idarr = pgsql_id_array(newids, nnew);
		rcpts = pgsql_text_array(newrcpts, nnew);
		mv[23] = idarr;
		mv[24] = rcpts;
		if (pg_pipeline(st, put, 2, &failed, unknown, kind, e) < 0)
			goto out;
	}
	*created = strtoul(PQcmdTuples(put[0].res), NULL, 10);
	PQclear(put[0].res);
	rc = 0;
out:
	for (int i = 0; i < 7; i++)
		free(own[i]);
	free(idarr);
	free(rcpts);
	free(newids);
	free(newrcpts);
	return rc;
}

/* Commits the put: one transaction, run again once after a serialization
 * failure, a deadlock, a missing partition, or on a new connection when
 * the old one turned out dead before the server answered anything.  A
 * connection lost in the middle is QERR_TEMP: the client retries, and the
 * retry finds whatever did commit. */
static int pg_put_commit(void *put, const struct qmeta *m, char *const *ids,
			 size_t *created, struct qerr *e)
{
	struct pg_put *p = put;
	struct pg_state *st = p->st;
	enum pgsql_errkind kind = PGSQL_ERR_PERM;
	int rc = -1;

	*created = 0;
	if (m->nrcpt == 0) {
		pg_put_free(p);
		return qerr_perm(e, "PostgreSQL: a message without recipients");
	}
	if (p->content.len != m->size) {
		qerr_perm(e, "PostgreSQL: %zu bytes written, metadata says %llu",
			  p->content.len, (unsigned long long)m->size);
		pg_put_free(p);
		return -1;
	}
	struct qerr first = { 0 };
	bool was_unknown = false;
	for (int attempt = 0; attempt < 3; attempt++) {
		bool stale = false, unknown = false;
		rc = put_once(st, p, m, ids, created, &kind, &stale, &unknown, e);
		if (rc == 0)
			break;
		if (unknown && !was_unknown) {
			first = *e;
			was_unknown = true;
		}
		if (kind == PGSQL_ERR_NOPART)
			st->parts_day[0] = '\0';
		else if (!stale && (kind != PGSQL_ERR_RETRY || attempt > 0))
			break;
	}
	if (rc < 0 && kind == PGSQL_ERR_NOPART)
		qerr_temp(e, "PostgreSQL: no partition for the message's day");
	/* An attempt that may have committed decides what the failure says:
	 * the POST may be stored, whatever a later attempt ran into. */
	if (rc < 0 && was_unknown)
		*e = first;
	pg_put_free(p);
	return rc;
}

/* ---------------------------------------------------------------- reading */

/* A column's text, copied, or NULL for SQL NULL. */
static char *col(PGresult *r, int row, int c)
{
	return PQgetisnull(r, row, c) ? NULL : xstrdup(PQgetvalue(r, row, c));
}

/* Turns a row of pgsql_entry_columns into an entry. */
static void row_entry(PGresult *r, int row, struct qentry *out)
{
	struct qmeta *m = &out->meta;
	long long ll;
	char *end;

	memset(out, 0, sizeof *out);
	snprintf(out->id, sizeof out->id, "%s", PQgetvalue(r, row, PGCOL_ID));
	out->rcpt = col(r, row, PGCOL_RCPT);
	if (pgsql_status_parse(PQgetvalue(r, row, PGCOL_STATUS), &out->status) < 0)
		out->status = ENTRY_QUARANTINED;
	out->status_changed = strtoll(PQgetvalue(r, row, PGCOL_STATUS_CHANGED), NULL, 10);
	m->received_at = strtoll(PQgetvalue(r, row, PGCOL_RECEIVED_AT), NULL, 10);
	m->qid = col(r, row, PGCOL_QID);
	m->env_from = col(r, row, PGCOL_ENV_FROM);
	m->user = col(r, row, PGCOL_USER);
	m->ip = col(r, row, PGCOL_IP);
	m->action = col(r, row, PGCOL_ACTION);
	if (!PQgetisnull(r, row, PGCOL_SCORE)) {
		m->score = strtod(PQgetvalue(r, row, PGCOL_SCORE), NULL);
		m->has_score = true;
	}
	m->scan_time = -1;
	if (!PQgetisnull(r, row, PGCOL_SCAN_TIME)) {
		ll = strtoll(PQgetvalue(r, row, PGCOL_SCAN_TIME), &end, 10);
		m->scan_time = (long)ll;
	}
	m->symbols_json = col(r, row, PGCOL_SYMBOLS);
	m->fuzzy_json = col(r, row, PGCOL_FUZZY);
	m->rspamd_server = col(r, row, PGCOL_SERVER);
	m->rspamd_subject = col(r, row, PGCOL_RSPAMD_SUBJECT);
	m->hdr_from = col(r, row, PGCOL_HDR_FROM);
	m->hdr_to = col(r, row, PGCOL_HDR_TO);
	m->hdr_cc = col(r, row, PGCOL_HDR_CC);
	m->hdr_subject = col(r, row, PGCOL_HDR_SUBJECT);
	m->hdr_date = col(r, row, PGCOL_HDR_DATE);
	m->hdr_msgid = col(r, row, PGCOL_MSGID);
	snprintf(m->sha256, sizeof m->sha256, "%s", PQgetvalue(r, row, PGCOL_SHA256));
	m->size = strtoull(PQgetvalue(r, row, PGCOL_SIZE), NULL, 10);
	m->policy = col(r, row, PGCOL_POLICY);
	if (PQgetisnull(r, row, PGCOL_RCPTS) ||
	    pgsql_rcpts_parse(PQgetvalue(r, row, PGCOL_RCPTS), &m->rcpt, &m->nrcpt) < 0) {
		m->rcpt = xcalloc(1, sizeof *m->rcpt);
		m->rcpt[0] = xstrdup(out->rcpt ? out->rcpt : "");
		m->nrcpt = 1;
	}
}

static int pg_get(void *state, const char *id, struct qentry *out, struct qerr *e)
{
	struct pg_state *st = state;
	enum pgsql_errkind kind;
	const char *v[1] = { id };
	PGresult *r;

	memset(out, 0, sizeof *out);
	if (pg_ready(st, e) < 0)
		return -1;
	if ((r = pg_run(st, "rq_get", 1, v, PGRES_TUPLES_OK, "reading entry", &kind, e)) == NULL)
		return -1;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return qerr_notfound(e, "no entry '%.40s'", id);
	}
	row_entry(r, 0, out);
	PQclear(r);
	return 0;
}

/* The content arrives whole, in binary (bytea as raw bytes), and goes to
 * the callback in pieces. */
static int pg_read_content(void *state, const char *id, store_data_cb cb, void *arg,
			   struct qerr *e)
{
	struct pg_state *st = state;
	const char *v[1] = { id };
	PGresult *r;

	if (pg_ready(st, e) < 0)
		return -1;
	r = PQexecPrepared(st->conn, "rq_content", 1, v, NULL, NULL, 1);
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_fail(st, r, "reading content", e);
		return -1;
	}
	if (PQntuples(r) == 0) {
		PQclear(r);
		return qerr_notfound(e, "no entry '%.40s'", id);
	}
	const char *data = PQgetvalue(r, 0, 0);
	size_t len = (size_t)PQgetlength(r, 0, 0);
	for (size_t off = 0; off < len; off += READ_CHUNK) {
		size_t n = len - off < READ_CHUNK ? len - off : READ_CHUNK;
		if (cb(data + off, n, arg) != 0)
			break;
	}
	PQclear(r);
	return 0;
}

/* Rows come one at a time (single-row mode), so a listing of millions
 * of entries does not gather in memory; a callback that stops the
 * listing cancels the rest of the query. */
static int pg_list(void *state, const struct store_filter *f, store_entry_cb cb, void *arg,
		   struct qerr *e)
{
	struct pg_state *st = state;
	struct pgsql_query q;
	PGresult *r;
	bool stop = false, failed = false;

	if (pg_ready(st, e) < 0)
		return -1;
	pgsql_list_query(f, &q);
	if (!PQsendQueryParams(st->conn, q.sql.data, q.nparams, NULL, q.params, NULL, NULL, 0)) {
		pgsql_query_free(&q);
		pg_fail(st, NULL, "listing", e);
		return -1;
	}
	pgsql_query_free(&q);
	PQsetSingleRowMode(st->conn);
	while ((r = PQgetResult(st->conn)) != NULL) {
		ExecStatusType s = PQresultStatus(r);
		if (s == PGRES_SINGLE_TUPLE && !stop && !failed) {
			struct qentry ent;
			row_entry(r, 0, &ent);
			if (cb(&ent, arg) != 0) {
				stop = true;
				PGcancel *c = PQgetCancel(st->conn);
				char errbuf[256];
				if (c != NULL) {
					PQcancel(c, errbuf, sizeof errbuf);
					PQfreeCancel(c);
				}
			}
			qentry_free(&ent);
		} else if (s != PGRES_SINGLE_TUPLE && s != PGRES_TUPLES_OK && !stop && !failed) {
			/* keep the error; drain what is left first */
			const char *state_ = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			char line[200];
			pgsql_oneline(PQresultErrorMessage(r), line, sizeof line);
			if (pgsql_classify(state_, PQresultErrorMessage(r)) == PGSQL_ERR_PERM &&
			    PQstatus(st->conn) == CONNECTION_OK)
				qerr_perm(e, "PostgreSQL: listing: %s", line);
			else
				qerr_temp(e, "PostgreSQL: listing: %s", line);
			failed = true;
		}
		PQclear(r);
		if (PQstatus(st->conn) != CONNECTION_OK)
			break;
	}
	if (PQstatus(st->conn) != CONNECTION_OK) {
		if (!failed && !stop)
			qerr_temp(e, "PostgreSQL: listing: connection lost");
		PQfinish(st->conn);
		st->conn = NULL;
		return stop && !failed ? 0 : -1;
	}
	return failed ? -1 : 0;
}

/* ---------------------------------------------------------------- changes */

static int pg_remove(void *state, const char *id, struct qerr *e)
{
	struct pg_state *st = state;
	enum pgsql_errkind kind;
	const char *v[1] = { id };
	PGresult *r;

	if (pg_ready(st, e) < 0)
		return -1;
	if ((r = pg_run(st, "rq_remove", 1, v, PGRES_TUPLES_OK, "removing entry", &kind, e)) == NULL)
		return -1;
	long long n = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	PQclear(r);
	if (n == 0)
		return qerr_notfound(e, "no entry '%.40s'", id);
	return 0;
}

static int pg_set_status(void *state, const char *id, enum entry_status s, int64_t now,
			 struct qerr *e)
{
	struct pg_state *st = state;
	enum pgsql_errkind kind;
	char when[32];
	const char *name = pgsql_status_text(s);
	PGresult *r;

	if (name == NULL)
		return qerr_input(e, 400, "unknown status %d", (int)s);
	if (pg_ready(st, e) < 0)
		return -1;
	snprintf(when, sizeof when, "%lld", (long long)now);
	const char *v[3] = { id, name, when };
	if ((r = pg_run(st, "rq_set_status", 3, v, PGRES_COMMAND_OK, "changing status", &kind,
			e)) == NULL)
		return -1;
	bool found = strcmp(PQcmdTuples(r), "0") != 0;
	PQclear(r);
	if (!found)
		return qerr_notfound(e, "no entry '%.40s'", id);
	return 0;
}

/* Detaches (without blocking readers and writers: CONCURRENTLY, or
 * FINALIZE for a detach that was interrupted) and drops one partition. */
static int drop_partition(struct pg_state *st, const char *parent, const char *part,
			  bool attached, bool pending, struct qerr *e)
{
	enum pgsql_errkind kind;
	char *qp = PQescapeIdentifier(st->conn, parent, strlen(parent));
	char *qc = PQescapeIdentifier(st->conn, part, strlen(part));
	char *sql = NULL;
	int rc = -1;

	if (qp == NULL || qc == NULL) {
		qerr_perm(e, "PostgreSQL: cannot quote partition name %.60s", part);
		goto out;
	}
	if (attached) {
		sql = xasprintf("ALTER TABLE %s DETACH PARTITION %s %s", qp, qc,
				pending ? "FINALIZE" : "CONCURRENTLY");
		if (pg_cmd(st, sql, "detaching a partition", &kind, e) < 0)
			goto out;
		free(sql);
	}
	sql = xasprintf("DROP TABLE %s", qc);
	if (pg_cmd(st, sql, "dropping a partition", &kind, e) < 0)
		goto out;
	rc = 0;
out:
	free(sql);
	PQfreemem(qp);
	PQfreemem(qc);
	return rc;
}

/* Expire in two steps.  Whole days before the cutoff: their partitions
 * are counted and dropped, a cost that depends on the days removed, not
 * on what is kept.  Then, in one transaction (rolled back for a dry
 * run), the rows of the cutoff's own day and the per-recipient limits. */
static int pg_expire(void *state, const struct expire_opts *o, struct expire_result *res,
		     struct qerr *e)
{
	struct pg_state *st = state;
	enum pgsql_errkind kind;
	PGresult *r, *parts = NULL;
	char cutoff_day[16], last_day[16] = "";
	int rc = -1;

	memset(res, 0, sizeof *res);
	if (pg_ready(st, e) < 0)
		return -1;
	if (o->cutoff != 0) {
		pgsql_day(o->cutoff, cutoff_day);
		const char *v[1] = { cutoff_day };
		parts = pg_run(st, "rq_expired_parts", 1, v, PGRES_TUPLES_OK,
			       "listing partitions", &kind, e);
		if (parts == NULL)
			return -1;
		for (int i = 0; i < PQntuples(parts); i++) {
			const char *day = PQgetvalue(parts, i, 2);
			if (strcmp(day, last_day) != 0) {
				const char *dv[1] = { day };
				r = pg_run(st, "rq_day_counts", 1, dv, PGRES_TUPLES_OK,
					   "counting a day", &kind, e);
				if (r == NULL)
					goto out;
				res->entries += strtoull(PQgetvalue(r, 0, 0), NULL, 10);
				res->messages += strtoull(PQgetvalue(r, 0, 1), NULL, 10);
				res->bytes += strtoull(PQgetvalue(r, 0, 2), NULL, 10);
				PQclear(r);
				snprintf(last_day, sizeof last_day, "%s", day);
			}
			if (o->dry_run)
				continue;
			if (drop_partition(st, PQgetvalue(parts, i, 0), PQgetvalue(parts, i, 1),
					   strcmp(PQgetvalue(parts, i, 3), "t") == 0,
					   strcmp(PQgetvalue(parts, i, 4), "t") == 0, e) < 0)
				goto out;
		}
	}

	char cut[32], maxn[32], maxb[32];
	snprintf(cut, sizeof cut, "%lld", (long long)o->cutoff);
	snprintf(maxn, sizeof maxn, "%ld", o->max_per_rcpt);
	snprintf(maxb, sizeof maxb, "%llu", (unsigned long long)o->max_bytes_per_rcpt);
	const char *xv[3] = { o->cutoff != 0 ? cut : NULL, maxn, maxb };
	if (o->cutoff == 0 && o->max_per_rcpt <= 0 && o->max_bytes_per_rcpt == 0) {
		rc = 0;
		goto out;
	}
	if (pg_cmd(st, "BEGIN", "starting a transaction", &kind, e) < 0)
		goto out;
	r = pg_run(st, "rq_expire_rows", 3, xv, PGRES_TUPLES_OK, "expiring entries", &kind, e);
	if (r == NULL)
		goto out;
	res->entries += strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	res->messages += strtoull(PQgetvalue(r, 0, 1), NULL, 10);
	res->bytes += strtoull(PQgetvalue(r, 0, 2), NULL, 10);
	PQclear(r);
	if (pg_cmd(st, o->dry_run ? "ROLLBACK" : "COMMIT", "committing", &kind, e) < 0)
		goto out;
	rc = 0;
out:
	PQclear(parts);
	return rc;
}

static int pg_stats(void *state, struct store_stats *s, struct qerr *e)
{
	struct pg_state *st = state;
	enum pgsql_errkind kind;
	PGresult *r;

	memset(s, 0, sizeof *s);
	if (pg_ready(st, e) < 0)
		return -1;
	if ((r = pg_run(st, "rq_stats_entries", 0, NULL, PGRES_TUPLES_OK, "counting entries",
			&kind, e)) == NULL)
		return -1;
	for (int i = 0; i < PQntuples(r); i++) {
		enum entry_status es;
		uint64_t n = strtoull(PQgetvalue(r, i, 1), NULL, 10);
		if (pgsql_status_parse(PQgetvalue(r, i, 0), &es) == 0)
			s->by_status[es] += n;
		s->entries += n;
	}
	PQclear(r);
	if ((r = pg_run(st, "rq_stats_contents", 0, NULL, PGRES_TUPLES_OK, "counting contents",
			&kind, e)) == NULL)
		return -1;
	s->messages = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	s->bytes = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
	PQclear(r);
	return 0;
}

/* /health: the database takes writes if the connection is (or can be
 * made) good, the schema is the version this build expects and the
 * server is not a read-only standby.  One round trip on a live
 * connection. */
static int pg_health(void *state, struct qerr *e)
{
	struct pg_state *st = state;
	PGresult *r;
	for (int attempt = 0;; attempt++) {
		bool fresh;
		if (pg_ready_fresh(st, &fresh, e) < 0)
			return -1;
		r = PQexec(st->conn, "SELECT version, pg_is_in_recovery(),"
			   " current_setting('default_transaction_read_only') FROM schema_version");
		if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK)
			break;
		/* An old connection the server dropped while it was away
		 * (its socket not yet seen closed): a new one answers for
		 * the server as it is now, as a put would find it. */
		if (!fresh && attempt == 0 && PQstatus(st->conn) == CONNECTION_BAD) {
			PQclear(r);
			PQfinish(st->conn);
			st->conn = NULL;
			continue;
		}
		pg_fail(st, r, "health check", e);
		return -1;
	}
	int rc = 0;
	long ver = -1;
	if (PQntuples(r) != 1 || parse_long(PQgetvalue(r, 0, 0), 0, 1000000, &ver, NULL) < 0 ||
	    ver != PGSQL_SCHEMA_VERSION) {
		char advice[100];
		pgsql_schema_advice(ver, advice, sizeof advice);
		rc = qerr_perm(e, "database schema version %.20s, expected %d: %s",
			       PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "none",
			       PGSQL_SCHEMA_VERSION, advice);
	} else if (strcmp(PQgetvalue(r, 0, 1), "t") == 0) {
		rc = qerr_temp(e, "PostgreSQL: the server is a standby (in recovery): read-only");
	} else if (strcmp(PQgetvalue(r, 0, 2), "on") == 0) {
		rc = qerr_temp(e, "PostgreSQL: default_transaction_read_only is on");
	}
	PQclear(r);
	return rc;
}

/* IDs as a text[] literal: they are checked hex, nothing to quote. */
static char *id_array(char *const *ids, size_t n)
{
	struct buf b = { 0 };
	buf_appendc(&b, '{');
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_appendc(&b, ',');
		buf_appends(&b, ids[i]);
	}
	buf_appendc(&b, '}');
	return buf_steal(&b);
}

static int pg_get_announced(void *state, const char *rcpt, char *const *ids, size_t n,
			    int64_t *when, struct qerr *e)
{
	struct pg_state *st = state;
	enum pgsql_errkind kind;
	(void)rcpt; /* the IDs are unique on their own */
	if (pg_ready(st, e) < 0)
		return -1;
	char *arr = id_array(ids, n);
	const char *v[1] = { arr };
	PGresult *r = pg_run(st, "rq_get_announced", 1, v, PGRES_TUPLES_OK,
			     "reading announced marks", &kind, e);
	free(arr);
	if (r == NULL)
		return -1;
	for (int row = 0; row < PQntuples(r); row++) {
		const char *id = PQgetvalue(r, row, 0);
		for (size_t i = 0; i < n; i++)
			if (strcmp(ids[i], id) == 0)
				when[i] = strtoll(PQgetvalue(r, row, 1), NULL, 10);
	}
	PQclear(r);
	return 0;
}

static int pg_set_announced(void *state, const char *rcpt, char *const *ids, size_t n,
			    int64_t when, struct qerr *e)
{
	struct pg_state *st = state;
	enum pgsql_errkind kind;
	char t[32];
	(void)rcpt;
	if (pg_ready(st, e) < 0)
		return -1;
	snprintf(t, sizeof t, "%lld", (long long)when);
	char *arr = id_array(ids, n);
	const char *v[2] = { arr, t };
	PGresult *r = pg_run(st, "rq_set_announced", 2, v, PGRES_COMMAND_OK,
			     "setting announced marks", &kind, e);
	free(arr);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

const struct store_backend store_backend_pgsql = {
	.name = "pgsql",
	.open = pg_open,
	.close = pg_close,
	.put_begin = pg_put_begin,
	.put_write = pg_put_write,
	.put_commit = pg_put_commit,
	.put_abort = pg_put_abort,
	.get = pg_get,
	.read_content = pg_read_content,
	.list = pg_list,
	.remove = pg_remove,
	.set_status = pg_set_status,
	.expire = pg_expire,
	.stats = pg_stats,
	.health = pg_health,
	.get_announced = pg_get_announced,
	.set_announced = pg_set_announced,
};
