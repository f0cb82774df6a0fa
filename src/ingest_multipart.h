/*
 * ingest_multipart.h - a streaming multipart/form-data parser, for the
 * body of Rspamd's multipart formatter.  Fed in pieces of any size, it
 * calls back for each part's start, data and end, so a message part is
 * never held whole in memory.
 */
#ifndef RQ_INGEST_MULTIPART_H
#define RQ_INGEST_MULTIPART_H

#include <stddef.h>

#include "common.h"

struct multipart_cb {
	/* A part starts; name/filename/ctype are from its header (NULL if
	 * absent), valid only during the call. */
	int (*part_begin)(void *arg, const char *name, const char *filename,
			  const char *ctype, struct qerr *e);
	int (*part_data)(void *arg, const void *p, size_t n, struct qerr *e);
	int (*part_end)(void *arg, struct qerr *e);
};

struct multipart;

/* Extracts the boundary parameter (quoted or not) of a multipart
 * Content-Type.  Returns -1 if there is none or it is over 70 bytes. */
int multipart_boundary(const char *content_type, char *out, size_t outlen);

struct multipart *multipart_new(const char *boundary, const struct multipart_cb *cb,
				void *arg);
/* Returns -1 on malformed input (QERR_INPUT 400) or a callback's error. */
int multipart_feed(struct multipart *mp, const void *p, size_t n, struct qerr *e);
/* The body has ended: fails unless the closing boundary was seen. */
int multipart_finish(struct multipart *mp, struct qerr *e);
void multipart_free(struct multipart *mp);

#endif
