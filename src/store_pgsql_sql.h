/*
 * store_pgsql_sql.h - the parts of the PostgreSQL backend that need no
 * server: building the list query from a filter (values only ever as
 * parameters), classifying SQLSTATEs, and turning metadata into
 * parameter text.  store_pgsql.c uses them; the unit tests check them.
 */
#ifndef RQ_STORE_PGSQL_SQL_H
#define RQ_STORE_PGSQL_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "record.h"
#include "store.h"

/* The schema version this code speaks (sql/schema.sql; sql/upgrade/
 * takes older databases there). */
#define PGSQL_SCHEMA_VERSION 4
#define PGSQL_SCHEMA_FILE "sql/schema.sql"
#define PGSQL_UPGRADE_DIR "sql/upgrade/"

/* What the operator has to do when the database's schema version is have
 * (-1 for none or unreadable) rather than PGSQL_SCHEMA_VERSION: create the
 * schema, apply the upgrade files, or run a newer program. */
void pgsql_schema_advice(long have, char *out, size_t outlen);

/* A retry of a POST finds its entries if it comes within this many days
 * (before or one after, for clock skew between receivers). */
#define PGSQL_DEDUP_DAYS 7

/* What a failed statement means for the caller. */
enum pgsql_errkind {
	PGSQL_ERR_PERM = 0,   /* a fault a retry will not cure (schema, data) */
	PGSQL_ERR_TEMP,       /* retry later: 503; the connection is fine */
	PGSQL_ERR_RECONNECT,  /* retry later: 503; the connection is gone */
	PGSQL_ERR_RETRY,      /* serialization failure or deadlock: run the
			       * transaction again */
	PGSQL_ERR_NOPART,     /* no partition for the row: create it, retry */
};

/* Classifies an error by its SQLSTATE (NULL when libpq reported none,
 * i.e. the connection failed). */
enum pgsql_errkind pgsql_classify(const char *sqlstate, const char *message);

/* The columns get and list read, in the order pgsql_row_entry expects. */
extern const char pgsql_entry_columns[];
enum {
	PGCOL_ID = 0, PGCOL_RCPT, PGCOL_STATUS, PGCOL_STATUS_CHANGED, PGCOL_RECEIVED_AT,
	PGCOL_QID, PGCOL_ENV_FROM, PGCOL_USER, PGCOL_IP, PGCOL_ACTION, PGCOL_SCORE,
	PGCOL_SCAN_TIME, PGCOL_SYMBOLS, PGCOL_FUZZY, PGCOL_SERVER, PGCOL_RSPAMD_SUBJECT,
	PGCOL_HDR_FROM, PGCOL_HDR_TO, PGCOL_HDR_CC, PGCOL_HDR_SUBJECT, PGCOL_HDR_DATE,
	PGCOL_MSGID, PGCOL_SHA256, PGCOL_SIZE, PGCOL_POLICY, PGCOL_RCPTS,
	PGCOL_COUNT
};

/* A query with its parameters (text format). */
#define PGSQL_MAX_PARAMS 16
struct pgsql_query {
	struct buf sql;
	int nparams;
	const char *params[PGSQL_MAX_PARAMS];
	char *owned[PGSQL_MAX_PARAMS]; /* freed with the query */
};
void pgsql_query_free(struct pgsql_query *q);

/* The list query for f: entries newest first, values as $n parameters. */
void pgsql_list_query(const struct store_filter *f, struct pgsql_query *q);

/* The database's name for a status, or NULL if out of range. */
const char *pgsql_status_text(enum entry_status s);
/* ... and back; -1 for an unknown name. */
int pgsql_status_parse(const char *text, enum entry_status *out);

/* ip as the value of an inet parameter: ip itself if it is an IPv4 or
 * IPv6 address, else NULL (unknown, "unknown", garbage). */
const char *pgsql_ip_param(const char *ip);

/* The UTC day of t as "YYYY-MM-DD" (the partition key). */
void pgsql_day(int64_t t, char out[16]);

/* The advisory lock key for a content: its first 64 bits. */
int64_t pgsql_lock_key(const char *sha256hex);

/* A text[] literal of entry ids ("{a,b}"); NULL if an id is not lower-case
 * hex of ENTRY_ID_LEN digits (then it cannot be written as is). */
char *pgsql_id_array(char *const *ids, size_t n);

/* A text[] literal of the n strings v, every element quoted, so that any
 * text (commas, braces, quotes, backslashes, the word NULL) stays itself;
 * a NULL string is a NULL element. */
char *pgsql_text_array(char *const *v, size_t n);

/* JSON text for a jsonb parameter: json itself if it parses as JSON, else
 * the text as a JSON string (kept, not lost); NULL stays NULL. */
char *pgsql_json_param(const char *json);

/* The JSON array of the recipients. */
char *pgsql_rcpts_json(char *const *rcpt, size_t n);
/* Parses such an array into *rcpt / *n (allocated); -1 if it is not one. */
int pgsql_rcpts_parse(const char *json, char ***rcpt, size_t *n);

/* The containment pattern selecting messages that carry symbol name. */
char *pgsql_symbol_pattern(const char *name);

/* Largest content a bytea field takes (PostgreSQL's 1 GB field limit,
 * less room for the row). */
#define PGSQL_MAX_CONTENT (1000u * 1024 * 1024)

/* The start of a binary COPY of one contents row (sha256, received_day,
 * size, content): the file header, the tuple header, three fields and the
 * length word of the content, whose size bytes follow.  Then
 * pgsql_copy_trailer ends the data. */
void pgsql_copy_content_head(struct buf *b, const char *sha256, int64_t received_at,
			     uint32_t size);
void pgsql_copy_trailer(struct buf *b);

/* The first line of a libpq error message, for a one-line qerr. */
void pgsql_oneline(const char *msg, char *out, size_t outlen);

#endif
