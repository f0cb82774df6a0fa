/*
 * ingest_msgpack.h - the body of Rspamd's msgpack formatter: one msgpack
 * map holding the JSON formatter's metadata keys and `message`, the raw
 * mail as a msgpack str or bin.  The body is framed as it streams in; the
 * message bytes go straight on to a callback (the store), everything else
 * that is metadata is decoded by msgpack-c and handed to meta_from_json.
 */
#ifndef RQ_INGEST_MSGPACK_H
#define RQ_INGEST_MSGPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "record.h"

/* Deepest nesting accepted, the top map counted (Rspamd's symbols reach 4). */
#define MSGPACK_DEPTH_MAX 24

/* Receives message bytes in order, as they arrive. */
typedef int (*msgpack_message_fn)(void *arg, const void *p, size_t n, struct qerr *e);

struct msgpack_in;

/* A parser for one body.  meta_max bounds the metadata bytes kept for
 * decoding, body_max the body bytes that can still arrive (declared
 * lengths beyond it are refused before anything is allocated), message_max
 * the message's size (max_message_size). */
struct msgpack_in *msgpack_in_new(uint64_t meta_max, uint64_t body_max, uint64_t message_max,
				  msgpack_message_fn fn, void *arg);
/* Feeds the next n body bytes.  -1 with *e (QERR_INPUT 400 or 413, or
 * whatever the callback set) on failure. */
int msgpack_in_feed(struct msgpack_in *mi, const void *p, size_t n, struct qerr *e);
/* At the end of the body: the map must be complete and hold a message;
 * its metadata is applied to m. */
int msgpack_in_finish(struct msgpack_in *mi, struct qmeta *m, struct qerr *e);
void msgpack_in_free(struct msgpack_in *mi);

/* True if byte c starts a msgpack map (fixmap, map16, map32): how a
 * msgpack body is told from a mail message, which starts with ASCII. */
bool msgpack_starts_map(unsigned char c);

#endif
