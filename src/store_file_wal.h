/*
 * store_file_wal.h - the file store's write-ahead log: one durable write
 * per message, whatever the number of recipients.
 *
 * Each process that stores messages owns a pair of log files in
 * <root>/wal/, locked (flock) for as long as it lives.  A commit appends
 * one record (the entries' metadata and the content) to the active file
 * and makes it durable with one fdatasync; the entries' names are then
 * made without syncs of their own.  A thread of the process checkpoints
 * off the request path: it switches the commits to the other file, makes
 * the whole file system durable (syncfs) and only then retires the
 * records of the first.  A log whose lock can be taken belongs to a
 * process that is gone (killed, or a power cut): opening the store
 * replays it and removes it.  See store_file_wal.c for the format.
 */
#ifndef RQ_STORE_FILE_WAL_H
#define RQ_STORE_FILE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct wal;

/* Milliseconds between checkpoints (1000).  Tests that need records left
 * in a log lengthen it before the store is opened. */
extern unsigned wal_interval_ms;

/* Opens the log of this process in the directory walfd (the store's
 * root is rootfd, for the checkpoint's syncfs): two files, preallocated,
 * made durable with their names.  no_journal: the store is on ext4
 * without a journal, where a new or grown file needs a syncfs to survive
 * a power cut (store_file_wal.c).  The checkpoint thread starts here. */
int wal_open(struct wal **w, int rootfd, int walfd, bool no_journal, struct qerr *e);

/* Stops the checkpoint thread, makes everything durable and removes the
 * log files.  A NULL w is nothing. */
void wal_close(struct wal *w);

/* Leaves the log as a crash would: the checkpoint thread stopped, the
 * files closed (their locks go with them) but neither synced nor
 * retired nor removed, for the next opener to replay.  For tests and the
 * fuzz harness of the replay. */
void wal_abandon(struct wal *w);

/* Holds the log for one commit: the checkpoint does not switch files
 * between a record's append and the end of its entries' publication. */
void wal_lock(struct wal *w);
void wal_unlock(struct wal *w);

/* Appends a record made of the payload and content_len bytes of the file
 * content_fd from offset 0 (content_crc: their crc32), and makes it
 * durable.  0, or -1 with e set (QERR_TEMP). */
int wal_append(struct wal *w, const void *payload, size_t len, int content_fd,
	       uint64_t content_len, uint32_t content_crc, struct qerr *e);

/* With the log held (wal_lock): the checkpoint thread retires nothing
 * from now on, and ends at its next look.  For a log whose last record's
 * names could not all be made after its answer, about to be abandoned
 * (wal_abandon) for a replay: a checkpoint between wal_unlock and the
 * thread's end would otherwise retire that record. */
void wal_retire_no_more(struct wal *w);

/* Brackets the making of names that follows an answer (the daemon's
 * deferred commit): from before the answer until the names exist, an
 * opener of the store (wal_recover) waits, so that an operator's command
 * run after a 200 sees what was answered.  A lock on byte 0 of the log's
 * first file, not the mutex: the waiter is another process. */
void wal_names_pending(struct wal *w);
void wal_names_done(struct wal *w);

/* Voids the record just appended (its publication failed and was undone),
 * so that recovery does not replay it.  Best effort. */
void wal_void_last(struct wal *w);

/* One record of an abandoned log, for replay: its payload, and where its
 * content lies in fd. */
struct wal_record {
	const unsigned char *payload;
	size_t len;
	int fd;
	uint64_t content_off, content_len;
	uint32_t content_crc;
};

/* Replays one record: 0; -1 for a failure that may pass (an I/O error),
 * which stops the replay of that log and keeps it for the next opener;
 * 1 for a record that can never be replayed (malformed), which is
 * skipped, its log kept aside as wal/.bad.<name> once the others are
 * replayed. */
typedef int (*wal_replay_fn)(const struct wal_record *r, void *arg);

/* Replays every log in walfd whose owner is gone, in the order of its
 * records, then makes the result durable (syncfs of rootfd) and removes
 * the log.  *replayed counts the records.  Logs that cannot be replayed
 * are kept (and logged).  A log whose process lives is not replayed, but
 * waited for while it makes names it has answered for (wal_names_pending). */
int wal_recover(int rootfd, int walfd, wal_replay_fn fn, void *arg, size_t *replayed,
		struct qerr *e);

#endif
