/*
 * ingest.h - one POST from Rspamd, from FastCGI parameters and body bytes
 * to stored entries.  It picks the formatter (raw message, multipart,
 * json_with_message, msgpack), undoes Content-Encoding, gathers the metadata and
 * streams the message into the store.  It knows nothing of FastCGI: the
 * worker hands it the parameters and a function that reads the body, so
 * tests and fuzzers can drive it directly.
 */
#ifndef RQ_INGEST_H
#define RQ_INGEST_H

#include <stddef.h>
#include <sys/types.h>

#include "common.h"
#include "record.h"

struct config;
struct store;

/* Reads up to n body bytes; returns the count, 0 at the end, -1 on a
 * read error (the client went away, or the read was cut short). */
typedef ssize_t (*ingest_read_fn)(void *arg, void *p, size_t n);

struct ingest_result {
	int http;            /* the status to answer */
	char **ids;          /* entries stored (or already there) */
	size_t nids;
	size_t created;      /* how many of them are new */
	int skipped;         /* 1 if only_symbols excluded the message */
	struct qmeta meta;   /* what was learned, for the log line */
	char formatter[24];  /* "default", "multipart", "json_with_message", "msgpack" */
};

/* Handles one request.  envp holds the FastCGI parameters.  Returns 0
 * when the message is stored (or skipped), else -1 with *e classified
 * and r->http set to the status to answer. */
int ingest_request(struct store *s, const struct config *c, char *const *envp,
		   ingest_read_fn rd, void *rd_arg, struct ingest_result *r,
		   struct qerr *e);
void ingest_result_free(struct ingest_result *r);

#endif
