/*
 * sync_batch.c - fsyncs a batch of descriptors together (see
 * sync_batch.h): one io_uring per process, made on first use, each fsync
 * one submission; the kernel runs them side by side and the caller waits
 * for all of them.  The ring belongs to the process that made it: a
 * child after fork makes its own.  Any trouble with the ring itself
 * (setup refused, a submission error) retires it for good and the
 * process goes on with plain fsync, so durability never depends on it.
 */
#include "sync_batch.h"

#include "log.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct io_uring ring;
static enum { RING_UNTRIED, RING_READY, RING_OFF } ring_state = RING_UNTRIED;
static pid_t ring_pid;

/* Gives up the ring (or never makes one): plain fsync from now on. */
static void ring_retire(const char *why, int err)
{
	if (ring_state == RING_READY && ring_pid == getpid())
		io_uring_queue_exit(&ring);
	if (why != NULL)
		log_msg(LOG_INFO, "file store: %s (%s): syncing one file at a time", why,
			strerror(err));
	ring_state = RING_OFF;
}

/* The ring of this process, made on first use; false if there is none. */
static bool ring_get(void)
{
	if (ring_state == RING_READY && ring_pid != getpid()) {
		/* inherited over fork: the parent's, not ours to use */
		memset(&ring, 0, sizeof ring);
		ring_state = RING_UNTRIED;
	}
	if (ring_state == RING_UNTRIED) {
		int r = io_uring_queue_init(SYNC_BATCH_MAX, &ring, 0);
		if (r < 0) {
			ring_retire("io_uring unavailable", -r);
			return false;
		}
		ring_state = RING_READY;
		ring_pid = getpid();
	}
	return ring_state == RING_READY;
}

void sync_batch_serial(bool off)
{
	if (off)
		ring_retire(NULL, 0);
	else if (ring_state == RING_OFF)
		ring_state = RING_UNTRIED;
}

bool sync_batch_parallel(void)
{
	return ring_get();
}

void sync_batch_init(struct sync_batch *b)
{
	b->n = 0;
}

void sync_batch_drop(struct sync_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		close(b->fd[i]);
	b->n = 0;
}

int sync_batch_add(struct sync_batch *b, int fd, const char *what, struct qerr *e)
{
	if (b->n == SYNC_BATCH_MAX && sync_batch_flush(b, e) < 0) {
		close(fd);
		return -1;
	}
	b->fd[b->n] = fd;
	snprintf(b->what[b->n], sizeof b->what[b->n], "%s", what);
	b->n++;
	return 0;
}

/* Waits for n completions; their results (0 or -errno) go to res by the
 * index each submission carried.  false if waiting itself failed. */
static bool ring_reap(size_t n, int *res)
{
	while (n > 0) {
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&ring, &cqe);
		if (r == -EINTR)
			continue;
		if (r < 0)
			return false;
		uint64_t i = io_uring_cqe_get_data64(cqe);
		if (i < SYNC_BATCH_MAX)
			res[i] = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
		n--;
	}
	return true;
}

/* fsyncs the batch through the ring: true if every result is in res. */
static bool ring_sync(struct sync_batch *b, int *res)
{
	for (size_t i = 0; i < b->n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		if (sqe == NULL) /* cannot happen: the ring has room for a batch */
			abort();
		io_uring_prep_fsync(sqe, b->fd[i], 0);
		/* fsync always blocks: skip the attempt to run it inline */
		io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
		io_uring_sqe_set_data64(sqe, i);
	}
	size_t sent = 0;
	while (sent < b->n) {
		int r = io_uring_submit(&ring);
		if (r == -EINTR)
			continue;
		if (r <= 0) {
			/* wait for what is in flight, then give the ring up */
			bool reaped = ring_reap(sent, res);
			ring_retire("io_uring submission failed", r < 0 ? -r : EAGAIN);
			if (!reaped)
				abort(); /* descriptors in flight cannot be closed safely */
			return false;
		}
		sent += (size_t)r;
	}
	if (!ring_reap(b->n, res)) {
		log_msg(LOG_ERR, "file store: io_uring completions lost");
		abort();
	}
	return true;
}

int sync_batch_flush(struct sync_batch *b, struct qerr *e)
{
	int res[SYNC_BATCH_MAX];
	if (b->n == 0)
		return 0;
	bool done = b->n > 1 && ring_get() && ring_sync(b, res);
	if (!done)
		for (size_t i = 0; i < b->n; i++)
			res[i] = fsync(b->fd[i]) < 0 ? -errno : 0;
	int rc = 0;
	for (size_t i = 0; i < b->n; i++) {
		if (res[i] < 0 && rc == 0)
			rc = qerr_temp(e, "file store: cannot sync %s: %s", b->what[i],
				       strerror(-res[i]));
		close(b->fd[i]);
	}
	b->n = 0;
	return rc;
}
