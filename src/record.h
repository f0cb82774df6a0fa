/*
 * record.h - what the quarantine knows about a message and about one
 * entry (the message as quarantined for one recipient).  Parsers fill a
 * struct qmeta; the store front end completes it; backends persist it.
 * All strings are NUL-terminated valid UTF-8 without CR, LF or NUL (the
 * parsers guarantee it), or NULL when unknown.
 */
#ifndef RQ_RECORD_H
#define RQ_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of an entry ID: lower-case hex digits. */
#define ENTRY_ID_LEN 24

struct qmeta {
	/* What Rspamd reported (meta headers or JSON metadata). */
	char *qid;           /* MTA queue id */
	char *env_from;      /* SMTP MAIL FROM */
	char *user;          /* authenticated SMTP user */
	char *ip;            /* client address, v4 or v6 */
	char *action;        /* "reject", "add header", ... */
	char *rspamd_server; /* scanning host */
	char *rspamd_subject;/* subject as Rspamd decoded it */
	double score;
	bool has_score;
	long scan_time;      /* milliseconds, -1 when unknown */
	char *symbols_json;  /* JSON array of symbol objects, as text */
	char *fuzzy_json;    /* JSON array of fuzzy hashes, as text */
	char **rcpt;         /* envelope recipients; nrcpt 0 when unknown */
	size_t nrcpt;

	/* From the message's own header, decoded to UTF-8 for display. */
	char *hdr_from;
	char *hdr_to;
	char *hdr_cc;
	char *hdr_subject;
	char *hdr_date;
	char *hdr_msgid;

	/* Computed by the store front end. */
	uint64_t size;       /* bytes of the stored message */
	char sha256[65];     /* hex SHA-256 of the stored bytes */
	int64_t received_at; /* seconds since the epoch, UTC */
	char *policy;        /* first symbol named with the policy prefix */
};

enum entry_status {
	ENTRY_QUARANTINED = 0,
	ENTRY_RELEASED,
	ENTRY_DELETED,
	ENTRY_STATUS_COUNT
};

/* One entry: a message as quarantined for one recipient. */
struct qentry {
	char id[ENTRY_ID_LEN + 1];
	char *rcpt;
	enum entry_status status;
	int64_t status_changed; /* seconds since the epoch */
	struct qmeta meta;
};

void qmeta_free(struct qmeta *m);
void qentry_free(struct qentry *e); /* frees members, not e itself */
const char *entry_status_name(enum entry_status s);
/* Returns 0 and sets *out, or -1 for an unknown name. */
int entry_status_parse(const char *name, enum entry_status *out);

/* Replaces the string *field with a copy of value (NULL allowed). */
void qmeta_set(char **field, const char *value);
/* The subject to show people: the message's own, else Rspamd's. */
const char *qmeta_display_subject(const struct qmeta *m);
/* True if the symbols JSON names a symbol called name. */
bool qmeta_has_symbol(const struct qmeta *m, const char *name);
/* The first symbol whose name starts with prefix, newly allocated, or NULL. */
char *qmeta_policy(const struct qmeta *m, const char *prefix);

/* JSON form of an entry (the file store's metadata file and the CLI's
 * --json output share it), and back.  The returned string is allocated.
 * Symbols and fuzzy hashes are embedded as arrays; reading back gives
 * their compact text, and NULL for an empty array.  The entry read back
 * has meta.rcpt = { rcpt }. */
char *qentry_to_json(const struct qentry *e, bool pretty);
int qentry_from_json(const char *text, size_t len, struct qentry *out);
/* The file store's record of a message: the members of e but its id and
 * recipient, and an "entries" object mapping each of the n ids to its
 * recipient.  One file holds what every recipient's entry shares. */
char *qrecord_to_json(const struct qentry *e, char *const *ids, char *const *rcpts, size_t n);
/* Reads either form: an entry's JSON (whose id must then be want, if
 * want is given) or a message's record, giving the entry want of it.
 * -1 if the text is neither or names no entry want. */
int qentry_from_json_for(const char *text, size_t len, const char *want, struct qentry *out);

#endif
