/*
 * sync_batch.c - fsyncs a batch of descriptors together (see
 * sync_batch.h), or syncs their file system once.  Per file: one
 * io_uring per process, made on first use, each fsync one submission; the kernel runs them side by side and the caller waits
 * for all of them.  The ring belongs to the process that made it: a
 * child after fork makes its own.  Any trouble with the ring itself
 * (setup refused, a submission error) retires it for good and the
 * process goes on with plain fsync, so durability never depends on it.
 */
#include "sync_batch.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define EXT_SUPER_MAGIC 0xEF53 /* ext2, ext3 and ext4 alike */

static struct io_uring ring;
static enum { RING_UNTRIED, RING_READY, RING_OFF } ring_state = RING_UNTRIED;
static pid_t ring_pid;
static unsigned long flushes; /* see sync_batch_flushes */

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

void sync_batch_init(struct sync_batch *b, bool whole_fs)
{
	b->n = 0;
	b->whole_fs = whole_fs;
	b->flush_after = false;
}

unsigned long sync_batch_flushes(void)
{
	return flushes;
}

void sync_batch_drop(struct sync_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		close(b->fd[i]);
	b->n = 0;
}

int sync_batch_add(struct sync_batch *b, int fd, const char *what, struct qerr *e)
{
	if (b->whole_fs && b->n > 0) {
		close(fd); /* the syncfs of fd[0] covers it */
		return 0;
	}
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

/* One syncfs of fd's file system. */
static int whole_fs_sync(int fd)
{
	flushes++;
	return syncfs(fd);
}

int sync_batch_flush(struct sync_batch *b, struct qerr *e)
{
	int res[SYNC_BATCH_MAX];
	if (b->n == 0)
		return 0;
	if (b->whole_fs) {
		int rc = 0;
		/* since Linux 5.8 syncfs reports write-back errors of the
		 * file system that happened after fd[0] was opened */
		if (whole_fs_sync(b->fd[0]) < 0)
			rc = qerr_temp(e, "file store: cannot sync the file system of %s: %s",
				       b->what[0], strerror(errno));
		if (rc == 0 && b->flush_after) {
			flushes++;
			if (fsync(b->fd[0]) < 0)
				rc = qerr_temp(e, "file store: cannot sync %s: %s", b->what[0],
					       strerror(errno));
		}
		close(b->fd[0]);
		b->n = 0;
		return rc;
	}
	flushes += b->n;
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

/* The kernel's name of the block device dev ("vda1", "dm-0", "loop3"),
 * from sysfs; false if there is none to be found. */
static bool block_dev_name(dev_t dev, char *out, size_t len)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/sys/dev/block/%u:%u/uevent", major(dev), minor(dev));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	char *save = NULL;
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (strncmp(l, "DEVNAME=", 8) == 0 && l[8] != '\0' && strlen(l + 8) < len) {
			snprintf(out, len, "%s", l + 8);
			return true;
		}
	return false;
}

/* True if the block device named dev has a jbd2 journal running: the
 * kernel lists one as /proc/fs/jbd2/<dev>-<journal inode>. */
static bool has_jbd2_journal(const char *dev)
{
	DIR *d = opendir("/proc/fs/jbd2");
	if (d == NULL)
		return false;
	size_t dl = strlen(dev);
	bool found = false;
	struct dirent *de;
	while (!found && (de = readdir(d)) != NULL)
		found = strncmp(de->d_name, dev, dl) == 0 && de->d_name[dl] == '-' &&
			de->d_name[dl + 1] >= '0' && de->d_name[dl + 1] <= '9';
	closedir(d);
	return found;
}

enum sync_fs_kind sync_batch_fs_kind(int fd, char *why, size_t len)
{
	struct statfs sf;
	struct stat st;
	char dev[64];
	if (fstatfs(fd, &sf) < 0 || fstat(fd, &st) < 0) {
		snprintf(why, len, "file system unknown (%s)", strerror(errno));
		return SYNC_FS_UNKNOWN;
	}
	if (sf.f_type != EXT_SUPER_MAGIC) {
		snprintf(why, len, "file system type 0x%lx", (unsigned long)sf.f_type);
		return SYNC_FS_SOUND;
	}
	if (!block_dev_name(st.st_dev, dev, sizeof dev)) {
		snprintf(why, len, "ext4 on device %u:%u, its journal not found",
			 major(st.st_dev), minor(st.st_dev));
		return SYNC_FS_UNKNOWN;
	}
	if (!has_jbd2_journal(dev)) {
		snprintf(why, len, "ext4 without a journal on %s", dev);
		return SYNC_FS_NO_JOURNAL;
	}
	snprintf(why, len, "ext4 with a journal on %s", dev);
	return SYNC_FS_SOUND;
}
