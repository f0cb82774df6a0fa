/*
 * ingest_gzip.h - streaming gzip inflate (zlib) for bodies sent with
 * Content-Encoding: gzip, with a cap on the inflated size so a small
 * body cannot expand without bound.
 */
#ifndef RQ_INGEST_GZIP_H
#define RQ_INGEST_GZIP_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef int (*gunzip_out_fn)(void *arg, const void *p, size_t n, struct qerr *e);

struct gunzip;

/* max_out: inflated bytes allowed; past it, QERR_INPUT 413. */
struct gunzip *gunzip_new(uint64_t max_out, gunzip_out_fn out, void *arg);
/* Bad data or CRC: QERR_INPUT 400. */
int gunzip_feed(struct gunzip *g, const void *p, size_t n, struct qerr *e);
/* Fails (400) if the stream is truncated. */
int gunzip_finish(struct gunzip *g, struct qerr *e);
void gunzip_free(struct gunzip *g);

#endif
