/*
 * layout_floor.c - the least the file store's on-disk layout and its
 * two-phase commit (file_sync = syncfs or fsync, and auto on ext4
 * without a journal) cost on this disk, without the daemon: no HTTP, no
 * FastCGI, no parsing, no hashing, no JSON.  Each of CONC processes, for
 * SECONDS, stores messages of SIZE bytes for the same NRCPT recipients
 * (directories u0..u<NRCPT-1>, shared by the processes as the daemon's
 * workers share a recipient's directory; tmp/ and ids/<xx>/ shared too)
 * as src/store_file.c does:
 *
 *   phase 1: the content and a record of 1 KB + 64 bytes per recipient
 *            written to new files in tmp/, then made durable: both
 *            fsynced together through io_uring for one recipient, one
 *            syncfs for several (file_sync = auto on a journalled file
 *            system);
 *   phase 2: per recipient the content linked as <name>.eml, the record
 *            as <name>.json, the record into ids/<xx>/ (not synced);
 *            then the user directory fsynced (one recipient) or one
 *            syncfs (several); the two names in tmp/ unlinked.
 *
 * Its rate over the fsync loop's (fsync_loop.c: one file, two fsyncs) is
 * the bound the layout puts on the file store's ratio to that loop; the
 * file store's rate over its own is what the daemon costs above it.
 *
 * With "log" it measures instead the floor of the write-ahead-log commit
 * (file_sync = log, and auto on a journalling file system): the same
 * files and names, none of them synced on the message's path; the record
 * and the content appended to a log of the process (LOG_SIZE, written
 * with zeros and synced before the clock starts, so that an fdatasync
 * writes data only) and made durable with one fdatasync; a syncfs once a
 * second or when the log is full, after which it starts again at its
 * beginning.  The bound the disk puts on the log's commit, without its
 * checksums, its replay's needs and the daemon.
 *
 * With "ids1" (after "log") a message makes one ids/ link, not one per
 * recipient: the floor of a layout whose entry ids lead to their message,
 * two names per recipient (the least with an .eml and a .json in every
 * recipient's directory).  The store does not have that layout; this
 * measures what it could reach.
 *
 *   layout_floor DIR SIZE NRCPT CONC SECONDS [log [ids1]]
 *
 * Prints one JSON line: messages, seconds, msgs_per_s, p50_ms, p99_ms,
 * machine_cpu_ms (see writers.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "writers.h"

#define LOG_SIZE (8u << 20)

struct args {
	const char *dir;
	size_t size;
	int nrcpt;
	bool log;
	bool ids1; /* one ids/ link per message */
};

/* A writer's directories, ring, buffer and (log mode) log. */
struct writer {
	const struct args *a;
	int id;
	int tfd, ifd[256], *ufd;
	struct io_uring ring;
	char *piece;
	int logfd;
	size_t logoff;
	double synced; /* when the last syncfs began (log mode) */
};

/* Writes n bytes of piece (repeated) to the new file dirfd/name; its fd. */
static int write_new(int dirfd, const char *name, const char *piece, size_t n)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	for (size_t off = 0; off < n;) {
		size_t k = n - off < PIECE_LEN ? n - off : PIECE_LEN;
		ssize_t w = write(fd, piece, k);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)w;
	}
	return fd;
}

/* fsyncs a and b together through io_uring, as the store's sync batch. */
static int fsync_two(struct io_uring *ring, int a, int b)
{
	int fds[2] = { a, b };
	for (int i = 0; i < 2; i++)
		io_uring_prep_fsync(io_uring_get_sqe(ring), fds[i], 0);
	if (io_uring_submit_and_wait(ring, 2) < 2)
		return -1;
	int bad = 0;
	for (int i = 0; i < 2; i++) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(ring, &cqe) < 0)
			return -1;
		bad |= cqe->res < 0;
		io_uring_cqe_seen(ring, cqe);
	}
	return bad ? -1 : 0;
}

/* Opens dir/name as a directory, made by whichever writer comes first. */
static int open_dir(int dir, const char *name)
{
	if (mkdirat(dir, name, 0700) < 0 && errno != EEXIST)
		return -1;
	return openat(dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* setup_fn: the shared tmp/, ids/<xx>/ and user directories u<i>, and
 * (log mode) the writer's own log. */
static void *setup(int id, void *arg)
{
	struct writer *w = calloc(1, sizeof *w);
	w->a = arg;
	w->id = id;
	int root = open(w->a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ids = root < 0 ? -1 : open_dir(root, "ids");
	w->tfd = root < 0 ? -1 : open_dir(root, "tmp");
	if (ids < 0 || w->tfd < 0)
		return NULL;
	for (int i = 0; i < 256; i++) {
		char xx[3];
		snprintf(xx, sizeof xx, "%02x", i);
		if ((w->ifd[i] = open_dir(ids, xx)) < 0)
			return NULL;
	}
	w->ufd = calloc((size_t)w->a->nrcpt, sizeof *w->ufd);
	for (int i = 0; i < w->a->nrcpt; i++) {
		char u[32];
		snprintf(u, sizeof u, "u%d", i);
		if ((w->ufd[i] = open_dir(root, u)) < 0)
			return NULL;
	}
	w->piece = make_piece(id);
	if (w->piece == NULL || io_uring_queue_init(4, &w->ring, 0) < 0)
		return NULL;
	w->logfd = -1;
	if (w->a->log) {
		char name[32];
		snprintf(name, sizeof name, "log%d", id);
		w->logfd = openat(root, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		char *zero = calloc(1, PIECE_LEN);
		for (size_t off = 0; w->logfd >= 0 && zero && off < LOG_SIZE; off += PIECE_LEN)
			if (pwrite(w->logfd, zero, PIECE_LEN, (off_t)off) != PIECE_LEN)
				return NULL;
		free(zero);
		if (w->logfd < 0 || fsync(w->logfd) < 0 || fsync(root) < 0)
			return NULL;
		w->synced = now_s();
	}
	return w;
}

/* Log mode's durable write: record and content appended, one fdatasync;
 * a syncfs (the checkpoint) once a second or when the log is full. */
static int log_append(struct writer *w, int cfd, size_t reclen)
{
	size_t len = reclen + w->a->size;
	if (w->logoff + len > LOG_SIZE || now_s() - w->synced >= 1.0) {
		w->synced = now_s();
		if (syncfs(cfd) < 0)
			return -1;
		w->logoff = 0;
	}
	for (size_t off = 0; off < len;) {
		size_t k = len - off < PIECE_LEN ? len - off : PIECE_LEN;
		if (pwrite(w->logfd, w->piece, k, (off_t)(w->logoff + off)) != (ssize_t)k)
			return -1;
		off += k;
	}
	w->logoff += len;
	return fdatasync(w->logfd);
}

/* message_fn: the two phases of the top.  Names carry the writer's
 * number, as the store's carry a hash: unique across the writers. */
static int message(void *state, unsigned long k)
{
	struct writer *w = state;
	int nrcpt = w->a->nrcpt;
	char c[48], r[48], name[64];
	snprintf(c, sizeof c, "%d.%lu.c", w->id, k);
	snprintf(r, sizeof r, "%d.%lu.json", w->id, k);
	size_t reclen = 1024 + 64 * (size_t)nrcpt;
	int cfd = write_new(w->tfd, c, w->piece, w->a->size);
	int rfd = cfd < 0 ? -1 : write_new(w->tfd, r, w->piece, reclen);
	if (rfd < 0)
		return 1;
	if (w->a->log ? log_append(w, cfd, reclen) < 0
		      : nrcpt == 1 ? fsync_two(&w->ring, cfd, rfd) < 0 : syncfs(cfd) < 0)
		return 1;
	for (int i = 0; i < nrcpt; i++) {
		snprintf(name, sizeof name, "%d.%lu.eml", w->id, k);
		if (linkat(w->tfd, c, w->ufd[i], name, 0) < 0)
			return 1;
		snprintf(name, sizeof name, "%d.%lu.json", w->id, k);
		if (linkat(w->tfd, r, w->ufd[i], name, 0) < 0)
			return 1;
		if (w->a->ids1 && i > 0)
			continue;
		/* spread over ids/<xx> as the store's ids are by their hash */
		unsigned h = ((unsigned)k * 64u + (unsigned)i) * 2654435761u ^ (unsigned)w->id * 40503u;
		snprintf(name, sizeof name, "%d.%lu.%d", w->id, k, i);
		if (linkat(w->tfd, r, w->ifd[h >> 24], name, 0) < 0)
			return 1;
	}
	if (!w->a->log && (nrcpt == 1 ? fsync(w->ufd[0]) < 0 : syncfs(cfd) < 0))
		return 1;
	if (unlinkat(w->tfd, c, 0) < 0 || unlinkat(w->tfd, r, 0) < 0 || close(cfd) < 0 ||
	    close(rfd) < 0)
		return 1;
	return 0;
}

int main(int argc, char **argv)
{
	bool log = argc >= 7 && strcmp(argv[6], "log") == 0;
	bool ids1 = log && argc == 8 && strcmp(argv[7], "ids1") == 0;
	if (argc != 6 + log + ids1) {
		fprintf(stderr, "usage: layout_floor DIR SIZE NRCPT CONC SECONDS [log [ids1]]\n");
		return 2;
	}
	struct args a = { argv[1], strtoul(argv[2], NULL, 10), atoi(argv[3]), log, ids1 };
	if (a.nrcpt < 1)
		a.nrcpt = 1;
	int conc = atoi(argv[4]) > 0 ? atoi(argv[4]) : 1;
	return run_writers("layout_floor", conc, strtod(argv[5], NULL), setup, message, &a);
}
