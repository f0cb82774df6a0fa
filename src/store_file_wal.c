/*
 * store_file_wal.c - the file store's write-ahead log (see
 * store_file_wal.h for what it is for).
 *
 * Files: <root>/wal/<pid>.<random hex>.<0|1>, made as ".new.<...>" and
 * renamed once they are ready, so that a recovering process never takes
 * a half-made file for an abandoned log.  A file is never shrunk: once
 * it has grown to the size a checkpoint interval needs, a record is
 * written over blocks that already exist, which needs no change of the
 * file's size or extents, so its fdatasync is a data write and one
 * flush, with no journal commit.  WAL_PREALLOC bytes of zeros are written
 * when a file is made, enough for a second of small messages (less on a
 * small file system: a sixteenth of its free space at most); a record
 * that goes beyond what the file has (a big message, a burst) grows it,
 * and that one append is made durable as a change of the file's size
 * and blocks: fsync, and on ext4 without a journal a syncfs first (see
 * below).
 *
 * ext4 without a journal: its fsync writes a file's inode and blocks but
 * not the block group's descriptor and bitmaps, so after a power cut
 * e2fsck may take a new file's inode for one in the group's unused area
 * and drop the file, or find a grown file's new blocks free; and its
 * syncfs flushes the disk's cache before its last writes.  So a new log
 * file and every growth are made durable with a syncfs followed by an
 * fsync there, and every checkpoint (on every file system) follows its
 * syncfs with an fsync of wal/, whose flush comes after: only then is a
 * record retired.
 *
 * Layout of a file (integers little-endian, as the machine writes them):
 *
 *   0       header: "RQWAL001", generation (u64), crc32 of those 16
 *           bytes (u32); the rest of the first 4096 bytes is zero
 *   4096    records, each at an offset that is a multiple of 8:
 *             head (struct rec_head): magic, crc32 of the head (crc
 *             field zero) and of the payload, generation, payload and
 *             content lengths, crc32 of the content
 *             payload (the store's: entries and their metadata)
 *             content (the message as stored, plain or gzip)
 *
 * A record counts only if its magic, generation and both checksums are
 * right; replay stops at the first that is not: the tail a power cut
 * tore, or an older generation's record under the current end.  Retiring
 * a file's records is writing a new generation into its header (after a
 * syncfs made everything they describe durable): the old records become
 * invisible without being erased, and the file is overwritten from the
 * start.
 *
 * The checkpoint thread blocks every signal (the worker waits for its
 * own with epoll_pwait) and never logs from the request's point of view:
 * it switches files under the mutex, and syncs and retires outside it,
 * so a commit never waits for a syncfs.  A file whose retirement failed
 * (an I/O error) is kept dirty and not written to again; the next round
 * tries again.
 */
#include "store_file_wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "log.h"

#define WAL_HDR 4096
#define WAL_PREALLOC (1u << 20)   /* zeros written at creation, per file */
#define WAL_INTERVAL_MS 1000      /* else records are retired within about this */

unsigned wal_interval_ms = WAL_INTERVAL_MS;
#define WAL_PAYLOAD_MAX (64u << 20)
#define REC_MAGIC 0x524a5152u     /* "RQJR" */
#define VOID_MAGIC 0u
#define COPY_CHUNK 65536

static const char hdr_magic[8] = { 'R', 'Q', 'W', 'A', 'L', '0', '0', '1' };

struct rec_head {
	uint32_t magic;
	uint32_t crc;
	uint64_t gen;
	uint64_t payload_len;
	uint64_t content_len;
	uint32_t content_crc;
	uint32_t zero;
};

struct wal_file {
	int fd;         /* read-only: holds the lock */
	int wfd;        /* for writing while records come, else -1 (open_writer) */
	char name[64];
	uint64_t gen;
	uint64_t end;   /* where the next record goes */
	uint64_t size;  /* bytes the file durably has (blocks and size) */
	bool dirty;     /* holds records a failed checkpoint could not retire */
};

struct wal {
	int rootfd, walfd;
	bool no_journal; /* ext4 without a journal: see the top */
	uint64_t prealloc;  /* zeros each file starts with */
	struct wal_file f[2];
	int active;
	uint64_t last_off;  /* the record wal_append wrote last */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	bool thread, stop, kick;
};

static uint64_t align8(uint64_t v)
{
	return (v + 7) & ~(uint64_t)7;
}

/* pwrite of all n bytes. */
static int pwrite_full(int fd, const void *p, size_t n, uint64_t off)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = pwrite(fd, c, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* pread of all n bytes; -1 also at an early end of file. */
static int pread_full(int fd, void *p, size_t n, uint64_t off)
{
	char *c = p;
	while (n > 0) {
		ssize_t r = pread(fd, c, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		c += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* Writes a file's header for generation gen (not synced). */
static int write_header(int fd, uint64_t gen)
{
	unsigned char h[WAL_HDR];
	memset(h, 0, sizeof h);
	memcpy(h, hdr_magic, 8);
	memcpy(h + 8, &gen, 8);
	uint32_t crc = (uint32_t)crc32(0, h, 16);
	memcpy(h + 16, &crc, 4);
	return pwrite_full(fd, h, sizeof h, 0);
}

/* Reads a file's header: 0 with its generation, -1 if it is not one. */
static int read_header(int fd, uint64_t *gen)
{
	unsigned char h[20];
	if (pread_full(fd, h, sizeof h, 0) < 0 || memcmp(h, hdr_magic, 8) != 0)
		return -1;
	uint32_t crc;
	memcpy(&crc, h + 16, 4);
	if (crc != (uint32_t)crc32(0, h, 16))
		return -1;
	memcpy(gen, h + 8, 8);
	return 0;
}

/* Makes one log file under a temporary name, ready and durable but for
 * its name; the caller renames it and syncs the directory. */
static int make_file(struct wal *w, struct wal_file *f, const char *base, int k,
		     struct qerr *e)
{
	char tmp[80];
	snprintf(f->name, sizeof f->name, "%s.%d", base, k);
	snprintf(tmp, sizeof tmp, ".new.%s", f->name);
	int wfd = openat(w->walfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (wfd < 0)
		return qerr_temp(e, "file store: cannot create wal/%s: %s", tmp, strerror(errno));
	f->fd = openat(w->walfd, tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (f->fd < 0 || flock(f->fd, LOCK_EX | LOCK_NB) < 0)
		goto fail;
	char *zero = xcalloc(1, COPY_CHUNK);
	int r = 0;
	for (uint64_t off = 0; r == 0 && off < w->prealloc; off += COPY_CHUNK) {
		uint64_t len = w->prealloc - off < COPY_CHUNK ? w->prealloc - off : COPY_CHUNK;
		r = pwrite_full(wfd, zero, (size_t)len, off);
	}
	free(zero);
	f->gen = 1;
	f->end = WAL_HDR;
	f->size = w->prealloc;
	if (r < 0 || write_header(wfd, f->gen) < 0 || fdatasync(wfd) < 0)
		goto fail;
	if (close(wfd) < 0) {
		wfd = -1;
		goto fail;
	}
	wfd = -1;
	if (renameat(w->walfd, tmp, w->walfd, f->name) < 0)
		goto fail;
	return 0;
fail:
	qerr_temp(e, "file store: cannot prepare wal/%s: %s", f->name, strerror(errno));
	if (wfd >= 0)
		close(wfd);
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	unlinkat(w->walfd, tmp, 0);
	return -1;
}

/* Log file f open for writing.  It stays open while commits come (an
 * open and a close per message cost two system calls in a commit of
 * about thirty), and the checkpoint thread closes it once the file is
 * retired or idle: a store whose daemon is idle holds no file open for
 * writing, so that its file system can be remounted read-only. */
static int open_writer(const struct wal *w, struct wal_file *f)
{
	if (f->wfd < 0)
		f->wfd = openat(w->walfd, f->name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	return f->wfd;
}

/* Closes f's writer, if open (after a failed write too: the next one
 * starts from a fresh descriptor). */
static void drop_writer(struct wal_file *f)
{
	if (f->wfd >= 0)
		close(f->wfd);
	f->wfd = -1;
}

/* Retires every record of f: their effects were made durable by the
 * caller's syncfs.  A new generation in the header hides them. */
static int retire(const struct wal *w, struct wal_file *f)
{
	int wfd = open_writer(w, f);
	if (wfd < 0)
		return -1;
	int r = write_header(wfd, f->gen + 1) < 0 || fdatasync(wfd) < 0 ? -1 : 0;
	int err = errno;
	drop_writer(f); /* no commit writes here until the file is active again */
	errno = err;
	if (r < 0)
		return -1;
	f->gen++;
	f->end = WAL_HDR;
	f->dirty = false;
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* This boot's identity (36 characters), so that a time of the monotonic
 * clock written by an earlier boot is never taken for one of this boot. */
static void boot_id(char out[36])
{
	memset(out, 0, 36);
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, out, 36) != 36)
			memset(out, 0, 36);
		close(fd);
	}
}

/* syncfs of the store's file system, then an fsync of wal/ (walfd),
 * whose cache flush comes after every write of the syncfs (see the top). */
static int sync_all(int rootfd, int walfd)
{
	if (syncfs(rootfd) < 0)
		return -1;
	return fsync(walfd);
}

/*
 * Makes the file system durable for a checkpoint whose file switched at
 * `since` (CLOCK_MONOTONIC, ns).  Every process of the store checkpoints
 * about once a second, and one syncfs covers all of their names: so they
 * share the work through wal/.synced, which holds the boot's id and the
 * time at which the last completed syncfs began.  A syncfs that began
 * after the switch has made everything this file's records describe
 * durable, and is not repeated; the file's lock makes the others wait
 * for one in progress rather than start their own.  Without the file
 * (a read-only store, say) each process syncs for itself.
 */
static int shared_syncfs(struct wal *w, int64_t since)
{
	char id[36];
	unsigned char rec[44];
	boot_id(id);
	int fd = openat(w->walfd, ".synced", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		if (fd >= 0)
			close(fd);
		return sync_all(w->rootfd, w->walfd);
	}
	int64_t last;
	if (pread(fd, rec, sizeof rec, 0) == (ssize_t)sizeof rec && id[0] != '\0' &&
	    memcmp(rec, id, 36) == 0) {
		memcpy(&last, rec + 36, 8);
		if (last >= since && last <= now_ns()) {
			close(fd); /* covered by another's syncfs; closing unlocks */
			return 0;
		}
	}
	int64_t start = now_ns();
	int r = sync_all(w->rootfd, w->walfd);
	int err = errno;
	if (r == 0 && id[0] != '\0') {
		memcpy(rec, id, 36);
		memcpy(rec + 36, &start, 8);
		(void)pwrite_full(fd, rec, sizeof rec, 0);
	}
	close(fd);
	errno = err;
	return r;
}

/* The checkpoint thread: switches the commits to the other file, makes
 * the file system durable, retires the records of the first. */
static void *checkpointer(void *arg)
{
	struct wal *w = arg;
	pthread_mutex_lock(&w->mu);
	while (!w->stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += (long)(wal_interval_ms % 1000) * 1000000;
		until.tv_sec += (time_t)(wal_interval_ms / 1000) + until.tv_nsec / 1000000000;
		until.tv_nsec %= 1000000000;
		while (!w->stop && !w->kick)
			if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
				break;
		w->kick = false;
		if (w->stop)
			break;
		int a = w->active, o = 1 - a;
		struct wal_file *f;
		if (w->f[o].dirty) {
			f = &w->f[o];       /* a failed round's file first */
		} else if (w->f[a].end > WAL_HDR) {
			w->active = o;      /* commits go on in the other file */
			f = &w->f[a];
			f->dirty = true;
		} else {
			drop_writer(&w->f[a]); /* idle: nothing to retire */
			continue;
		}
		int64_t since = now_ns();
		pthread_mutex_unlock(&w->mu);
		int64_t t0 = now_ms();
		int r = shared_syncfs(w, since) < 0 ? -1 : retire(w, f);
		int err = errno;
		pthread_mutex_lock(&w->mu);
		if (r < 0)
			log_msg(LOG_ERR, "file store: checkpoint of wal/%s failed (%s); kept",
				f->name, strerror(err));
		else if (now_ms() - t0 > 5000)
			log_msg(LOG_WARNING, "file store: a checkpoint took %lld ms",
				(long long)(now_ms() - t0));
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int wal_open(struct wal **out, int rootfd, int walfd, bool no_journal, struct qerr *e)
{
	struct wal *w = xcalloc(1, sizeof *w);
	*out = NULL;
	w->rootfd = rootfd;
	w->walfd = walfd;
	w->no_journal = no_journal;
	w->prealloc = WAL_PREALLOC;
	struct statvfs sv;
	if (fstatvfs(walfd, &sv) == 0) {
		uint64_t room = (uint64_t)sv.f_bavail * sv.f_frsize / 16;
		if (room < w->prealloc)
			w->prealloc = room < 2 * WAL_HDR ? 2 * WAL_HDR : room & ~(uint64_t)4095;
	}
	w->f[0].fd = w->f[1].fd = w->f[0].wfd = w->f[1].wfd = -1;
	unsigned char rnd[6];
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		memset(rnd, 0, sizeof rnd);
	char base[48];
	int n = snprintf(base, sizeof base, "%ld.", (long)getpid());
	for (size_t i = 0; i < sizeof rnd; i++)
		n += snprintf(base + n, sizeof base - (size_t)n, "%02x", rnd[i]);
	if (make_file(w, &w->f[0], base, 0, e) < 0)
		goto fail;
	if (make_file(w, &w->f[1], base, 1, e) < 0) {
		unlinkat(walfd, w->f[0].name, 0);
		goto fail;
	}
	if ((no_journal ? sync_all(rootfd, walfd) : fsync(walfd)) < 0) {
		qerr_temp(e, "file store: cannot sync wal/: %s", strerror(errno));
		unlinkat(walfd, w->f[0].name, 0);
		unlinkat(walfd, w->f[1].name, 0);
		goto fail;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	w->thread = pthread_create(&w->th, NULL, checkpointer, w) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!w->thread)
		log_msg(LOG_WARNING, "file store: no checkpoint thread: records are retired "
				     "when the store is closed");
	*out = w;
	return 0;
fail:
	for (int k = 0; k < 2; k++)
		if (w->f[k].fd >= 0)
			close(w->f[k].fd);
	free(w);
	return -1;
}

/* Stops the checkpoint thread (records stay as they are). */
static void stop_thread(struct wal *w)
{
	if (!w->thread)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->th, NULL);
	w->thread = false;
}

void wal_abandon(struct wal *w)
{
	if (w == NULL)
		return;
	stop_thread(w);
	for (int k = 0; k < 2; k++) {
		close(w->f[k].fd);
		drop_writer(&w->f[k]);
	}
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}

void wal_close(struct wal *w)
{
	if (w == NULL)
		return;
	stop_thread(w);
	/* Everything the records describe made durable, then the log goes;
	 * if the sync fails the log stays for the next opener to replay. */
	if (sync_all(w->rootfd, w->walfd) == 0) {
		for (int k = 0; k < 2; k++)
			unlinkat(w->walfd, w->f[k].name, 0);
		(void)fsync(w->walfd);
	} else {
		log_msg(LOG_ERR, "file store: final sync failed (%s): wal/ kept for replay",
			strerror(errno));
	}
	wal_abandon(w); /* what is left: the descriptors and the memory */
}

void wal_lock(struct wal *w)
{
	pthread_mutex_lock(&w->mu);
}

void wal_unlock(struct wal *w)
{
	pthread_mutex_unlock(&w->mu);
}

void wal_retire_no_more(struct wal *w)
{
	w->stop = true;
	pthread_cond_signal(&w->cv);
}

/* Takes (F_RDLCK, F_WRLCK) or releases (F_UNLCK) byte 0 of fd, an open
 * file description's lock (F_OFD_SETLKW): independent of the flock that
 * says the log's process lives, and of every other descriptor. */
static int pending_lock(int fd, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	int r;
	do
		r = fcntl(fd, F_OFD_SETLKW, &fl);
	while (r < 0 && errno == EINTR);
	return r;
}

/* A shared lock, on the descriptor that holds the flock: the files stay
 * open for writing only while records come (open_writer), and an idle
 * store's file system can be remounted read-only. */
void wal_names_pending(struct wal *w)
{
	if (pending_lock(w->f[0].fd, F_RDLCK) < 0)
		log_msg(LOG_WARNING, "file store: cannot lock wal/%s: %s (a reader may not "
				     "wait for names being made)", w->f[0].name, strerror(errno));
}

void wal_names_done(struct wal *w)
{
	(void)pending_lock(w->f[0].fd, F_UNLCK);
}

/* Copies n bytes of src from offset 0 to dst at off: in the kernel where
 * it can, else through a buffer. */
static int copy_content(int src, int dst, uint64_t off, uint64_t n)
{
	loff_t in = 0, out = (loff_t)off;
	while (n > 0) {
		ssize_t c = copy_file_range(src, &in, dst, &out, n, 0);
		if (c < 0 && errno == EINTR)
			continue;
		if (c <= 0)
			break;
		n -= (uint64_t)c;
	}
	if (n == 0)
		return 0;
	char *buf = xmalloc(COPY_CHUNK);
	int r = 0;
	while (r == 0 && n > 0) {
		size_t k = n > COPY_CHUNK ? COPY_CHUNK : (size_t)n;
		r = pread_full(src, buf, k, (uint64_t)in);
		if (r == 0)
			r = pwrite_full(dst, buf, k, (uint64_t)out);
		in += (loff_t)k;
		out += (loff_t)k;
		n -= k;
	}
	free(buf);
	return r;
}

int wal_append(struct wal *w, const void *payload, size_t len, int content_fd,
	       uint64_t content_len, uint32_t content_crc, struct qerr *e)
{
	struct wal_file *f = &w->f[w->active];
	struct rec_head h = { REC_MAGIC, 0, f->gen, len, content_len, content_crc, 0 };
	uint32_t crc = (uint32_t)crc32(0, (const unsigned char *)&h, sizeof h);
	h.crc = (uint32_t)crc32(crc, payload, (uInt)len);
	uint64_t off = f->end;
	int wfd = open_writer(w, f);
	if (wfd < 0)
		return qerr_temp(e, "file store: cannot open wal/%s: %s", f->name, strerror(errno));
	struct iovec iov[2] = { { &h, sizeof h }, { (void *)payload, len } };
	ssize_t want = (ssize_t)(sizeof h + len), got;
	do
		got = pwritev(wfd, iov, 2, (off_t)off);
	while (got < 0 && errno == EINTR);
	int r = 0;
	if (got != want) /* a short vector write: once more, plainly */
		r = pwrite_full(wfd, &h, sizeof h, off) < 0 ||
		    pwrite_full(wfd, payload, len, off + sizeof h) < 0 ? -1 : 0;
	if (r == 0 && content_len > 0)
		r = copy_content(content_fd, wfd, off + sizeof h + len, content_len);
	if (r < 0) {
		qerr_temp(e, "file store: cannot write wal/%s: %s", f->name, strerror(errno));
		drop_writer(f);
		return -1;
	}
	uint64_t end = off + sizeof h + len + content_len;
	if (end <= f->size)
		r = fdatasync(wfd);
	else if (w->no_journal)
		r = syncfs(w->rootfd) < 0 ? -1 : fsync(wfd);
	else
		r = fsync(wfd);
	if (r < 0) {
		qerr_temp(e, "file store: cannot sync wal/%s: %s", f->name, strerror(errno));
		drop_writer(f);
		return -1;
	}
	if (end > f->size)
		f->size = end;
	w->last_off = off;
	f->end = align8(off + sizeof h + len + content_len);
	if (f->end > w->prealloc / 2 && !w->kick) {
		w->kick = true;
		pthread_cond_signal(&w->cv);
	}
	return 0;
}

void wal_void_last(struct wal *w)
{
	struct wal_file *f = &w->f[w->active];
	uint32_t m = VOID_MAGIC;
	int wfd = open_writer(w, f);
	if (wfd < 0 || pwrite_full(wfd, &m, sizeof m, w->last_off) < 0 || fdatasync(wfd) < 0) {
		log_msg(LOG_WARNING, "file store: cannot void a record of wal/%s: %s", f->name,
			strerror(errno));
		drop_writer(f);
	}
}

/* crc32 of n bytes of fd at off. */
static int crc_range(int fd, uint64_t off, uint64_t n, uint32_t *out)
{
	unsigned char *buf = xmalloc(COPY_CHUNK);
	uLong crc = crc32(0, NULL, 0);
	int r = 0;
	while (r == 0 && n > 0) {
		size_t k = n > COPY_CHUNK ? COPY_CHUNK : (size_t)n;
		r = pread_full(fd, buf, k, off);
		crc = crc32(crc, buf, (uInt)k);
		off += k;
		n -= k;
	}
	free(buf);
	*out = (uint32_t)crc;
	return r;
}

/* Replays the records of one abandoned file: 0 when the file may go (all
 * its valid records replayed), 1 when it is to be kept aside (a record
 * that can never be replayed, the others replayed), -1 to keep it for
 * another attempt (a replay failed for a reason that may pass). */
static int replay_file(int fd, const char *name, wal_replay_fn fn, void *arg, size_t *count)
{
	struct stat st;
	uint64_t gen;
	if (fstat(fd, &st) < 0)
		return -1;
	if (read_header(fd, &gen) < 0)
		return 0; /* never got its header: it never held a record */
	uint64_t off = WAL_HDR, size = (uint64_t)st.st_size;
	unsigned char *payload = NULL;
	int r = 0;
	while (off + sizeof(struct rec_head) <= size) {
		struct rec_head h;
		if (pread_full(fd, &h, sizeof h, off) < 0) {
			r = -1;
			break;
		}
		if (h.magic != REC_MAGIC || h.gen != gen || h.payload_len > WAL_PAYLOAD_MAX ||
		    h.content_len > size || off + sizeof h + h.payload_len + h.content_len > size) {
			if (h.magic == VOID_MAGIC && h.gen == gen && h.crc != 0 &&
			    h.payload_len <= WAL_PAYLOAD_MAX &&
			    off + sizeof h + h.payload_len + h.content_len <= size) {
				/* a record voided after a failed publication: skip it */
				off = align8(off + sizeof h + h.payload_len + h.content_len);
				continue;
			}
			break;
		}
		payload = xrealloc(payload, h.payload_len ? h.payload_len : 1);
		if (pread_full(fd, payload, h.payload_len, off + sizeof h) < 0) {
			r = -1;
			break;
		}
		struct rec_head z = h;
		z.crc = 0;
		uint32_t crc = (uint32_t)crc32(0, (const unsigned char *)&z, sizeof z);
		crc = (uint32_t)crc32(crc, payload, (uInt)h.payload_len);
		uint32_t ccrc;
		if (crc != h.crc)
			break; /* torn */
		if (crc_range(fd, off + sizeof h + h.payload_len, h.content_len, &ccrc) < 0) {
			r = -1;
			break;
		}
		if (ccrc != h.content_crc)
			break; /* torn */
		struct wal_record rec = { payload, h.payload_len, fd, off + sizeof h + h.payload_len,
					  h.content_len, h.content_crc };
		int fr = fn(&rec, arg);
		if (fr < 0) {
			r = -1;
			break;
		}
		if (fr > 0) {
			/* it can never be replayed: the others still are */
			log_msg(LOG_ERR, "file store: wal/%s: the record at %llu cannot be "
					 "replayed; the file is kept as wal/.bad.%s", name,
				(unsigned long long)off, name);
			r = 1;
		} else {
			(*count)++;
		}
		off = align8(off + sizeof h + h.payload_len + h.content_len);
	}
	free(payload);
	if (r < 0)
		log_msg(LOG_ERR, "file store: cannot replay wal/%s: kept for the next attempt", name);
	return r;
}

/* True if name is the first file of a living process's pair, the one
 * whose byte 0 it locks while names are pending. */
static bool pending_side(const char *name)
{
	size_t n = strlen(name);
	return name[0] != '.' && n > 2 && strcmp(name + n - 2, ".0") == 0;
}

/* Waits until the log's process has made the names of the commits it
 * answered (wal_names_pending holds a shared lock on byte 0 meanwhile):
 * an exclusive lock, taken and given back at once, through a descriptor
 * for writing, as such a lock needs. */
static void wait_pending(int walfd, const char *name)
{
	int fd = openat(walfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	if (pending_lock(fd, F_WRLCK) == 0)
		(void)pending_lock(fd, F_UNLCK);
	close(fd);
}

/* True if a ".new.<pid>...." file's process no longer runs. */
static bool maker_gone(const char *name)
{
	long pid = strncmp(name, ".new.", 5) == 0 ? strtol(name + 5, NULL, 10) : 0;
	return pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

int wal_recover(int rootfd, int walfd, wal_replay_fn fn, void *arg, size_t *replayed,
		struct qerr *e)
{
	*replayed = 0;
	int dfd = openat(walfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (d == NULL) {
		if (dfd >= 0)
			close(dfd);
		return qerr_temp(e, "file store: cannot list wal/: %s", strerror(errno));
	}
	/* the files done with, held locked until they are removed */
	int *done = NULL;
	char (*names)[NAME_MAX + 1] = NULL;
	size_t ndone = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		/* a file being made is its maker's until that process is gone */
		if (de->d_name[0] == '.' && !maker_gone(de->d_name))
			continue;
		int fd = openat(walfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		struct stat st;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			/* its process lives: what it answered before this
			 * opener came is waited for */
			if (errno == EWOULDBLOCK && pending_side(de->d_name))
				wait_pending(walfd, de->d_name);
			close(fd);
			continue;
		}
		if (fstat(fd, &st) < 0 || st.st_nlink == 0 || !S_ISREG(st.st_mode)) {
			close(fd); /* gone already */
			continue;
		}
		int rr = de->d_name[0] != '.' ? replay_file(fd, de->d_name, fn, arg, replayed) : 0;
		if (rr < 0) {
			close(fd);
			continue;
		}
		if (rr > 0) {
			/* out of the way of every later recovery, for an operator */
			char bad[NAME_MAX + 8];
			snprintf(bad, sizeof bad, ".bad.%s", de->d_name);
			if (renameat(walfd, de->d_name, walfd, bad) < 0) {
				close(fd);
				continue;
			}
			close(fd);
			continue;
		}
		if (ndone == cap) {
			cap = cap ? cap * 2 : 8;
			done = xrealloc(done, cap * sizeof *done);
			names = xrealloc(names, cap * sizeof *names);
		}
		done[ndone] = fd;
		snprintf(names[ndone], sizeof names[ndone], "%s", de->d_name);
		ndone++;
	}
	closedir(d);
	int r = 0;
	if (ndone > 0) {
		if (sync_all(rootfd, walfd) < 0) {
			r = qerr_temp(e, "file store: cannot sync the replayed entries: %s",
				      strerror(errno));
		} else {
			for (size_t i = 0; i < ndone; i++)
				unlinkat(walfd, names[i], 0);
			(void)fsync(walfd);
		}
		for (size_t i = 0; i < ndone; i++)
			close(done[i]);
	}
	free(done);
	free(names);
	return r;
}
