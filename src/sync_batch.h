/*
 * sync_batch.h - makes a set of files and directories durable at once.
 *
 * The file store's commit needs several fsyncs per message (the content,
 * each metadata file, each directory that got a name).  Issued one after
 * another, each waits for the disk in turn; none of them depends on
 * another, so a batch hands them to the kernel together (io_uring) and
 * waits once.  Where io_uring is not available (an old kernel, a seccomp
 * filter, kernel.io_uring_disabled) the batch falls back to fsync, one
 * after another, with the same result.
 */
#ifndef RQ_SYNC_BATCH_H
#define RQ_SYNC_BATCH_H

#include "common.h"

#include <stdbool.h>

/* Descriptors one flush makes durable; adding more flushes first. */
#define SYNC_BATCH_MAX 64

struct sync_batch {
	size_t n;
	int fd[SYNC_BATCH_MAX];
	char what[SYNC_BATCH_MAX][96]; /* named in an error message */
};

/* Empties a batch. */
void sync_batch_init(struct sync_batch *b);

/* Adds fd, which the batch now owns (the flush closes it), described by
 * what ("directory users/example.org/bob").  A full batch is flushed
 * first; -1 with e set if that flush failed (fd is closed then too). */
int sync_batch_add(struct sync_batch *b, int fd, const char *what, struct qerr *e);

/* fsyncs every descriptor of the batch and closes them; the batch is
 * empty afterwards.  -1 with e set (QERR_TEMP) if any fsync failed:
 * all of them have been waited for even then. */
int sync_batch_flush(struct sync_batch *b, struct qerr *e);

/* Closes the batch's descriptors without syncing (after a failure). */
void sync_batch_drop(struct sync_batch *b);

/* False if io_uring could not be set up in this process and batches are
 * synced one descriptor after another (tests ask which path runs). */
bool sync_batch_parallel(void);

/* With off true this process syncs one descriptor after another from
 * now on, as if io_uring were missing (tests use it for that path). */
void sync_batch_serial(bool off);

#endif
