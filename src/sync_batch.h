/*
 * sync_batch.h - makes a set of files and directories durable at once.
 *
 * The file store's commit needs several fsyncs per message (the content,
 * each metadata file, each directory that got a name).  None of them
 * depends on another, so a batch makes them durable together, in one of
 * two ways:
 *
 *  - per file: the fsyncs are handed to the kernel together (io_uring)
 *    and the caller waits once.  Where io_uring is not available (an old
 *    kernel, a seccomp filter, kernel.io_uring_disabled) the batch falls
 *    back to fsync, one after another, with the same result.
 *  - whole file system: one syncfs(2) covers every descriptor of the
 *    batch, however many: one journal commit (or log force) and one
 *    cache flush, shared with whatever else committed meanwhile, which
 *    makes it a group commit across the workers.  It also writes what
 *    other programs left dirty on that file system, which is why the
 *    store lets an operator choose (file_sync).  Concurrent syncfs of
 *    the workers join the same journal commit in the kernel; making
 *    them wait for one another in user space was measured slower.
 */
#ifndef RQ_SYNC_BATCH_H
#define RQ_SYNC_BATCH_H

#include "common.h"

#include <stdbool.h>

/* Descriptors one flush makes durable; adding more flushes first. */
#define SYNC_BATCH_MAX 64

struct sync_batch {
	size_t n;
	bool whole_fs;       /* flushed with one syncfs of fd[0] */
	bool flush_after;    /* whole_fs: then an fsync of fd[0], for the disk's
			      * cache (ext4 without a journal, see store_file.c) */
	int fd[SYNC_BATCH_MAX];
	char what[SYNC_BATCH_MAX][96]; /* named in an error message */
};

/* Empties a batch; whole_fs chooses one syncfs per flush over an fsync
 * of each descriptor.  Every descriptor of a whole_fs batch must be on
 * the same file system. */
void sync_batch_init(struct sync_batch *b, bool whole_fs);

/* Adds fd, which the batch now owns (the flush closes it), described by
 * what ("directory users/example.org/bob").  A full batch is flushed
 * first; -1 with e set if that flush failed (fd is closed then too).  A
 * whole_fs batch keeps its first descriptor only: the syncfs covers the
 * rest, which are closed at once. */
int sync_batch_add(struct sync_batch *b, int fd, const char *what, struct qerr *e);

/* fsyncs every descriptor of the batch (or syncfs once, whole_fs) and
 * closes them; the batch is empty afterwards.
 * -1 with e set (QERR_TEMP) if any fsync failed: all of them have been
 * waited for even then. */
int sync_batch_flush(struct sync_batch *b, struct qerr *e);

/* Closes the batch's descriptors without syncing (after a failure). */
void sync_batch_drop(struct sync_batch *b);

/* What a syncfs of fd's file system can be trusted with. */
enum sync_fs_kind {
	SYNC_FS_SOUND,       /* it makes everything written before it durable */
	SYNC_FS_NO_JOURNAL,  /* ext4 without a journal: its syncfs issues the disk's
			      * cache flush before its last metadata writes
			      * (Linux fs/sync.c) */
	SYNC_FS_UNKNOWN,     /* ext4 whose journal could not be looked up */
};

/* Which kind fd's file system is; why gets a few words for the log
 * ("ext4 without a journal on vda"). */
enum sync_fs_kind sync_batch_fs_kind(int fd, char *why, size_t len);

/* Synchronous flushes this process has issued through batches: one per
 * syncfs, one per fsync.  Tests count a commit's with it. */
unsigned long sync_batch_flushes(void);

/* False if io_uring could not be set up in this process and batches are
 * synced one descriptor after another (tests ask which path runs). */
bool sync_batch_parallel(void);

/* With off true this process syncs one descriptor after another from
 * now on, as if io_uring were missing (tests use it for that path). */
void sync_batch_serial(bool off);

#endif
