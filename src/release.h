/*
 * release.h - the one path by which a quarantined message leaves the
 * quarantine.  Everything that releases (the operator's `release`, the
 * release-mail.sh wrapper, the users' own release from a web page) calls
 * release_entry(); mail the program builds itself (a digest) goes out
 * through release_send(), over the same configured transport.
 *
 * The transport is the MTA's re-injection listener over SMTP (default) or
 * sendmail (release_transport).  The result is what the MTA answered
 * synchronously: nothing here ever makes a bounce, and an entry changes
 * only after the MTA accepted the message.  After a delivered release the
 * message is fed back to Rspamd's controller as ham when that is
 * configured; a learning failure is reported in the result and never
 * undoes the release.
 */
#ifndef RQ_RELEASE_H
#define RQ_RELEASE_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct store;

/* What became of a release or a send.  Only RELEASE_OK means the MTA took
 * the message; every other class leaves the entry as it was, except
 * RELEASE_NOT_MARKED (delivered, but the store could not record it). */
enum release_status {
	RELEASE_OK = 0,       /* accepted by the MTA (and, for an entry, marked released) */
	RELEASE_NOT_FOUND,    /* no entry with that ID */
	RELEASE_BAD_REQUEST,  /* malformed ID, recipient or sender; nothing sent */
	RELEASE_STATE,        /* entry deleted, or already released and not forced */
	RELEASE_CORRUPT,      /* stored bytes do not match their size/SHA-256; not sent */
	RELEASE_REJECTED,     /* the MTA refused permanently (5xx) */
	RELEASE_TEMPFAIL,     /* 4xx, connection refused, timeout, sendmail failed */
	RELEASE_STORE,        /* the store could not be read */
	RELEASE_NOT_MARKED,   /* delivered, but could not be marked released */
	RELEASE_CONFIG,       /* the transport is misconfigured (bad host:port, no sendmail) */
};

/* What Rspamd's controller made of a learning request. */
enum learn_status {
	LEARN_OFF = 0,        /* not configured (no rspamd_controller), nothing asked */
	LEARN_LEARNED,        /* 200: learned */
	LEARN_ALREADY,        /* "already learned" (404 or 208 with that text): success */
	LEARN_DECLINED,       /* 204: Rspamd would not learn it, NOT learned */
	LEARN_AUTH,           /* 401/403: wrong or missing password */
	LEARN_SERVER,         /* another status (5xx ...): the controller's text says why */
	LEARN_UNREACHABLE,    /* no connection, timeout, or the password file unreadable */
};

/* Who asks for a release, and of what. */
struct release_req {
	const char *id;       /* entry ID */
	const char *to;       /* recipient override (--to), NULL: the entry's recipient */
	const char *by;       /* who releases, for the trace header and the log line:
			       * "alice", "web user bob@example.net"; plain text, bounded */
	bool force;           /* release an entry that is already released */
	bool no_learn;        /* do not feed the message to Rspamd even if configured */
	/* Called in the sendmail child before exec (NULL: nothing), e.g. to
	 * regain the privileges the caller dropped; non-zero aborts the child. */
	int (*child_setup)(void *arg);
	void *child_arg;
};

/* The outcome, with the texts to show and log. */
struct release_result {
	enum release_status status;
	char rcpt[520];          /* the recipient it went (or would go) to */
	char reply[600];         /* the MTA's reply (last line, e.g. "250 2.0.0 Ok: queued
				  * as 4AB...") or why it failed, one line */
	enum learn_status learn; /* /learnham after a delivered release */
	char learn_text[300];    /* the controller's answer or why it failed, one line */
	enum learn_status fuzzy; /* /fuzzydel after a delivered release (LEARN_OFF when
				  * no fuzzy flags are configured) */
	char fuzzy_text[300];
};

/* Releases entry req->id of store s: reads it, checks its size and
 * SHA-256, adds the X-Quarantine-Released trace header, hands it to the
 * configured transport with the configured envelope sender, marks it
 * released once the MTA accepted it, logs one line, and then (when
 * configured) teaches Rspamd it was ham.  Returns r->status. */
enum release_status release_entry(struct store *s, const struct config *cfg,
				  const struct release_req *req, struct release_result *r);

/* Sends a message the program built (headers and body, LF or CRLF line
 * ends) from envelope sender `sender` ("" for the null sender <>) to one
 * recipient through the configured release transport.  req may be NULL;
 * only its child_setup is used.  Returns r->status (learn fields stay
 * LEARN_OFF). */
enum release_status release_send(const struct config *cfg, const char *sender,
				 const char *rcpt, const void *msg, size_t len,
				 const struct release_req *req, struct release_result *r);

/* Teaches Rspamd that entry id is spam (/learnspam, and /fuzzyadd with
 * the configured flag when set); the entry itself is not changed.
 * r->status says whether the entry could be read (RELEASE_OK,
 * RELEASE_NOT_FOUND, RELEASE_CORRUPT, RELEASE_STORE), r->learn and
 * r->fuzzy what Rspamd answered (LEARN_OFF in r->learn: no controller
 * configured). */
enum release_status release_learn_spam(struct store *s, const struct config *cfg,
				       const char *id, const char *by,
				       struct release_result *r);

/* True when a learning outcome counts as success (learned, already
 * learned, or not asked). */
bool learn_ok(enum learn_status st);

/* Short fixed names for logs and JSON: "ok", "rejected", "tempfail" ...;
 * "learned", "already-learned", "declined", "auth", ... */
const char *release_status_name(enum release_status st);

/* The outcome label of a release or a send for /metrics' counters (a
 * fixed set, metrics.c): ok, not_found, refused, rejected, tempfail,
 * failed. */
const char *release_outcome(enum release_status st);
const char *learn_status_name(enum learn_status st);

#endif
