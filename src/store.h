/*
 * store.h - the storage interface.  The front end (store.c) is what the
 * daemon and the CLI call: it validates, hashes, parses the message header
 * while the bytes stream past, derives entry IDs, times and logs.  Behind
 * it, a backend is a thin table of functions (store_file.c,
 * store_pgsql.c, store_null.c) that only persists and retrieves.
 *
 * Entry IDs are derived, not random: ENTRY_ID_LEN hex digits of
 * SHA-256(content sha256 NUL qid NUL rspamd_server NUL rcpt).  A retry of
 * the same POST therefore names the same entries, and a backend makes
 * storing them again a no-op: that is what makes ingest idempotent.
 */
#ifndef RQ_STORE_H
#define RQ_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "record.h"

struct config;

/* What the operator's list selects; NULL/0/-1 fields select everything. */
struct store_filter {
	const char *rcpt;
	const char *from;
	const char *qid;
	const char *symbol;
	int64_t since;   /* received_at >= since, 0 = no bound */
	int64_t until;   /* received_at < until, 0 = no bound */
	int status;      /* enum entry_status, or -1 for any but deleted */
	size_t limit;    /* 0 = no limit */
	bool any_order;  /* the caller sorts: entries may come in any order, and
			  * a store that would buffer them to sort need not */
};

struct store_stats {
	uint64_t entries;
	uint64_t messages;  /* distinct stored contents */
	uint64_t bytes;     /* bytes of content stored (each content once) */
	uint64_t by_status[ENTRY_STATUS_COUNT];
};

struct expire_opts {
	int64_t cutoff;              /* remove entries received before this; 0 = none */
	long max_per_rcpt;           /* keep at most N newest per recipient; 0 = none */
	uint64_t max_bytes_per_rcpt; /* keep the newest up to this size; 0 = none */
	bool dry_run;
};

struct expire_result {
	uint64_t entries;  /* entries removed (or that would be) */
	uint64_t messages; /* contents freed */
	uint64_t bytes;    /* bytes freed */
};

/* Called once per entry by list; returning non-zero stops the listing. */
typedef int (*store_entry_cb)(const struct qentry *e, void *arg);
/* Receives content bytes; returning non-zero stops the read. */
typedef int (*store_data_cb)(const void *p, size_t n, void *arg);

/*
 * A backend.  `state` is the backend's own, made by open.  Every function
 * returns 0 or -1 with *e classified (QERR_TEMP for anything a retry may
 * cure: the daemon answers 503 to it).
 */
struct store_backend {
	const char *name;
	int (*open)(void **state, const struct config *c, struct qerr *e);
	void (*close)(void *state);

	/* Streaming put: begin, write the content in pieces, then commit
	 * with the complete metadata, or abort.  Commit stores one entry per
	 * recipient (m->rcpt[i] gets ids[i]) atomically and durably: when it
	 * returns 0 the entries survive a crash; when it fails nothing of
	 * this put is visible.  Entries that already exist are left as they
	 * are; *created counts the new ones.  Commit and abort free put. */
	int (*put_begin)(void *state, void **put, struct qerr *e);
	int (*put_write)(void *put, const void *p, size_t n, struct qerr *e);
	int (*put_commit)(void *put, const struct qmeta *m, char *const *ids,
			  size_t *created, struct qerr *e);
	void (*put_abort)(void *put);
	/* The daemon's worker answers before a commit's last, undurable
	 * part is done where the backend can promise the entries without it
	 * (the file store's log: the names are made after the answer, and a
	 * crash meanwhile is replayed from the log).  defer turns this on for
	 * the state; settle, called after the answer, finishes what the last
	 * commit left, and always before the next put.  Both NULL in a backend
	 * whose commits are whole when they return. */
	void (*defer)(void *state);
	int (*settle)(void *state, struct qerr *e);

	/* One entry's metadata; QERR_NOTFOUND if there is none. */
	int (*get)(void *state, const char *id, struct qentry *out, struct qerr *e);
	/* One entry's content, byte-exact as it was received. */
	int (*read_content)(void *state, const char *id, store_data_cb cb, void *arg,
			    struct qerr *e);
	/* Matching entries, newest first, at most f->limit. */
	int (*list)(void *state, const struct store_filter *f, store_entry_cb cb,
		    void *arg, struct qerr *e);
	/* Removes an entry; its content goes with its last entry. */
	int (*remove)(void *state, const char *id, struct qerr *e);
	/* Sets the status (and status_changed = now) of an entry. */
	int (*set_status)(void *state, const char *id, enum entry_status s,
			  int64_t now, struct qerr *e);
	int (*expire)(void *state, const struct expire_opts *o,
		      struct expire_result *r, struct qerr *e);
	int (*stats)(void *state, struct store_stats *s, struct qerr *e);
	/* Whether the store takes writes now, cheaply enough to be asked
	 * every second: 0, or -1 with *e naming why not (for /health). */
	int (*health)(void *state, struct qerr *e);

	/* Announced marks, for the users' digest (digest.c); ids[0..n) are
	 * entries of the one recipient rcpt.  get: when[i] gets the time
	 * ids[i] was announced, 0 if never (or if there is no such entry).
	 * set: marks them announced at `when`, or clears their marks when
	 * it is 0; the marks are durable when it returns.  NULL in a backend
	 * that keeps no entries. */
	int (*get_announced)(void *state, const char *rcpt, char *const *ids, size_t n,
			     int64_t *when, struct qerr *e);
	int (*set_announced)(void *state, const char *rcpt, char *const *ids, size_t n,
			     int64_t when, struct qerr *e);
};

extern const struct store_backend store_backend_file;
extern const struct store_backend store_backend_pgsql;
extern const struct store_backend store_backend_null;

/* The front end. */
struct store;
struct store_put;

/* Opens the backend the config names; unknown names are QERR_PERM. */
int store_open(struct store **s, const struct config *c, struct qerr *e);
void store_close(struct store *s);
const char *store_backend_name(const struct store *s);

/* Starts a message.  Writes are capped at the config's max_message_size
 * (QERR_INPUT 413 past it). */
int store_put_begin(struct store *s, struct store_put **p, struct qerr *e);
int store_put_write(struct store_put *p, const void *data, size_t n, struct qerr *e);
/* Completes m (message header fields, size, sha256, received_at, policy,
 * the default owner when no recipient is known), derives the entry IDs
 * and commits.  *ids (allocated, *nids of them) name the entries, in the
 * order of m->rcpt.  p is freed whatever happens; a NULL p (nothing was
 * written) fails like an empty message, with QERR_INPUT 400. */
int store_put_commit(struct store_put *p, struct qmeta *m, char ***ids,
		     size_t *nids, size_t *created, struct qerr *e);
void store_put_abort(struct store_put *p);
/* For the daemon, which answers between the two: lets commits leave the
 * rest of their work (see the backend's defer) to store_settle, called
 * once the answer is out.  Entries are durable when the commit returns;
 * an opener of the store waits for them to be visible. */
void store_defer(struct store *s);
int store_settle(struct store *s, struct qerr *e);

/* Derives the ID of the entry for rcpt (out gets ENTRY_ID_LEN + 1 bytes). */
void store_entry_id(const struct qmeta *m, const char *rcpt, char *out);

int store_get(struct store *s, const char *id, struct qentry *out, struct qerr *e);
int store_read_content(struct store *s, const char *id, store_data_cb cb, void *arg,
		       struct qerr *e);
int store_list(struct store *s, const struct store_filter *f, store_entry_cb cb,
	       void *arg, struct qerr *e);
int store_remove(struct store *s, const char *id, struct qerr *e);
int store_set_status(struct store *s, const char *id, enum entry_status st,
		     struct qerr *e);
int store_expire(struct store *s, const struct expire_opts *o, struct expire_result *r,
		 struct qerr *e);
int store_stats(struct store *s, struct store_stats *st, struct qerr *e);
/* 0 while the store takes writes, else -1 with the reason (src/health.c
 * serves it as /health). */
int store_health(struct store *s, struct qerr *e);
/* Announced marks of some of rcpt's entries (see the backend's). */
int store_get_announced(struct store *s, const char *rcpt, char *const *ids, size_t n,
			int64_t *when, struct qerr *e);
int store_set_announced(struct store *s, const char *rcpt, char *const *ids, size_t n,
			int64_t when, struct qerr *e);

/* True if id has the form of an entry ID (checked before any backend). */
bool store_id_valid(const char *id);

#endif
