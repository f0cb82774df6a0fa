/*
 * store_file.c - the file store, the default backend: one directory per
 * recipient under file_root, needing no server.
 *
 * Layout:
 *
 *   <root>/tmp/                      uploads in progress:
 *                                    "<pid>.<counter>.<random hex>", and
 *                                    their message records:
 *                                    "<pid>.<counter>.json"
 *   <root>/users/<domain>/<local>/   one directory per recipient, named
 *                                    by addr_path() (lower case, every
 *                                    byte outside [a-z0-9.+_-] %XX-encoded)
 *       <id>.eml                     the message bytes, hard-linked: a
 *                                    POST to N recipients stores one inode
 *       <id>.eml.gz                  instead of <id>.eml with compress = gzip:
 *                                    the bytes as one gzip member (zcat
 *                                    gives them back); the name alone says
 *                                    which form an entry has, so a store
 *                                    may hold both
 *       <id>.json                    the entry's metadata; named last, it is
 *                                    the commit marker.  A new entry's is a
 *                                    hard link of its message's record
 *                                    (record.h, qrecord_to_json): the
 *                                    metadata the recipients share, once,
 *                                    and an "entries" object naming each
 *                                    entry's recipient; a status change
 *                                    replaces it with the entry's own JSON
 *                                    (qentry_to_json), as every .json was
 *                                    before records existed
 *   <root>/ids/<id[0..1]>/<id>       to find an entry by its id: a hard link
 *                                    of the message record (which names the
 *                                    entry's recipient, hence its directory),
 *                                    or a symlink to "../../users/<domain>/
 *                                    <local>" (stores written before
 *                                    records, and links a search made
 *                                    again).  An index of users/, not synced
 *                                    with each commit; a lookup that finds
 *                                    no usable entry (after a crash)
 *                                    searches users/ and makes it again.
 *                                    Also the record's second home: a
 *                                    .json name that e2fsck dropped is
 *                                    made again from it (restore_json)
 *   <root>/wal/                      the write-ahead log: two files per
 *                                    process that stores
 *                                    (store_file_wal.c)
 *
 * An entry exists if and only if its .json and its content exist.  The .json file's
 * modification time is the entry's received_at (set with futimens when it
 * is written, before its fsync, and again whenever a status change
 * rewrites it), and the store relies on it: expire decides by the mtime
 * alone, and list orders the entries by it to read only as many .json
 * files as it needs.  A backup that is restored must therefore keep
 * modification times (tar and rsync -a do).  Entries written before the
 * store kept this rule have the time of their commit, within a fraction
 * of a second of their received_at.  Expire fsyncs each user directory
 * once after its removals and each ids directory once at the end, rather
 * than both after every entry.  Temporary names inside
 * users/ and ids/ start with ".tmp.<pid>.", which no address or ID can
 * produce.  Directories are created mode 0700, files 0600.
 *
 * The message streams into a file in tmp/.  Commit then goes through a
 * write-ahead log (file_sync = log, and auto where the file system
 * journals its metadata: see choose_sync), so that a message costs one
 * synchronous flush whatever its number of recipients:
 *
 *  1. look at each recipient's directory (made if missing, not synced):
 *     an entry that exists already is left out, since an entry that can
 *     be seen is durable in this store (below);
 *  2. write the message record to tmp/ (not synced), and append one
 *     record to this process's log: the records' text, every new entry's
 *     directory and id, and the content, copied in by the kernel; one
 *     fdatasync makes it durable.  A put whose entries all exist writes
 *     nothing;
 *  3. make the names without syncing anything: the ids entry, the
 *     content linked in as <id>.eml, the record as <id>.json (link, not
 *     rename: an entry committed meanwhile by another worker is never
 *     overwritten).
 *
 * The daemon's workers answer between steps 2 and 3 (file_defer): the
 * record is durable, and the names follow the answer (file_settle),
 * before the worker takes its next request.  Meanwhile the log's first
 * file is locked (wal_names_pending), and any process that opens the
 * store waits for the names (wal_recover): a command run after a 200
 * sees its entries.  Other callers (the CLI, tests) answer to no one and
 * get their names before the commit returns.  Until a checkpoint the log
 * record stands for the names: the log's thread makes the whole file system durable
 * (syncfs, then a flush) off the request path, about once a second, and
 * only then retires the records.  After a crash or a power cut, opening
 * the store (the daemon's workers, every CLI command) replays the logs of
 * processes that are gone: each entry of each whole record whose
 * metadata does not read back, or whose content is missing or differs
 * from the record's (size and crc32), is made anew from the record; then
 * everything is synced and the log removed.  Names are therefore only
 * ever seen once their record is durable, and a replayed entry is synced
 * before its record goes: what can be seen is durable.  A torn record at
 * a log's end was never answered 200, and is not replayed.  One thing a
 * replay cannot know: an entry deleted within the second or so between
 * its arrival and the checkpoint comes back if the worker dies (or the
 * power fails) before that checkpoint.  Nothing is lost that way; a
 * deleted entry may return.  If naming fails after the record is
 * durable and before an answer, the names made are removed and the
 * record voided, and the put fails as a whole; after an answer the log
 * is abandoned as a crash would leave it and replayed at once
 * (publish_logged).
 *
 * Without the log (file_sync = fsync or syncfs, and auto on ext4 without
 * a journal) commit follows the maildir discipline, in two phases, each a batch of operations followed
 * by the fsyncs that make them durable:
 *
 *  1. write the message record to a new file in tmp/ (one per
 *     RECORD_RCPTS recipients), and for each recipient make its directory
 *     and its ids entry; then fsync the content and the record;
 *  2. for each recipient: link the content in as <id>.eml, then the
 *     record as <id>.json (link, not rename: an entry committed
 *     meanwhile by another worker is never overwritten); then fsync
 *     every user directory.
 *
 * A recipient thus costs three names (two in its directory, one in ids/)
 * and no inode of its own: the inodes a message makes are its content and
 * its record, whatever the number of recipients.  Making an inode is the
 * dearest of the file system's namespace operations; one metadata file
 * and one symlink per recipient made a commit's cost grow with them.
 *
 * A phase's syncs are one sync batch (sync_batch.c), flushed once its
 * operations are done, in one of two ways (file_sync, see choose_sync):
 * every file and directory fsynced, as POSIX asks, the fsyncs issued
 * together through io_uring with each file's writeback started as soon
 * as it is written, so that the phase waits for the disk about once; or
 * one syncfs of the store's file system, whose cost does not grow with
 * the recipients and which makes every name and byte made before it
 * durable (directories created for new recipients included: they are
 * then not fsynced on their own).  Each
 * user directory is synced once per message: both of an entry's names
 * are made in phase 2, after everything they point at is durable.  A
 * crash during phase 2 (before the answer, so the POST is retried) may
 * leave either name without the other: an .eml alone is an orphan, a
 * .json alone is not an entry, and the retry completes it.
 * If any step fails, everything this commit created is removed again and
 * the put fails as a whole; an entry that already existed (a retried
 * POST) is left untouched, its directory synced again in case the first
 * attempt is still committing.
 *
 * Leftovers of a crash are harmless: an .eml without .json is not an
 * entry, nor a .json without content (expire removes it when its day
 * comes), and a dangling ids symlink finds no .json.  Opening the store removes
 * uploads in tmp/ whose process is gone; expire also removes stale
 * temporary files and orphaned .eml files (older than an hour) in the
 * user directories.
 *
 * With compress = gzip the upload is deflated as it streams in (gzip
 * format, fixed memory whatever the message size) and read_content
 * inflates it, so readers get the original bytes; the metadata's size and
 * SHA-256 are those of the original bytes.  Statistics and expire count
 * the bytes on disk.
 *
 * No name from input is used as a path: recipients go through
 * addr_path(), IDs are checked hex, and every file or directory is opened
 * relative to a directory descriptor with O_NOFOLLOW.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "addr_path.h"
#include "config.h"
#include "log.h"
#include "store_file_digest.h"
#include "store_file_wal.h"
#include "sync_batch.h"

#define READ_CHUNK 65536
#define JSON_MAX (64u << 20)     /* a metadata file larger than this is corrupt */
#define ORPHAN_AGE 3600          /* seconds before an .eml without .json is swept */
#define TMP_PREFIX ".tmp."
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define REL_MAX (2 * ADDR_PATH_COMPONENT_MAX + 2)
#define GZ_LEVEL 1               /* most of the saving on mail, at the least CPU */
#define GZ_OUT 65536             /* deflate output collected before a write */

struct fstore {
	char *root;
	int rootfd, tmpfd, usersfd, idsfd;
	int idsdir[256];    /* ids/<xx>, opened by the first commit that links there */
	long pid;           /* this process's, for temporary names */
	bool no_openat2;    /* the kernel (or a seccomp filter) refused openat2 */
	unsigned long counter;
	char salt[17];      /* random hex drawn at open, in upload names */
	bool gzip;  /* compress = gzip: new content is stored deflated */
	enum { SYNC_FSYNC, SYNC_SYNCFS, SYNC_SYNCFS_FLUSH, SYNC_LOG } sync; /* file_sync */
	bool syncfs; /* the commit under way syncs no directory it makes (a
		      * syncfs, or the log's checkpoint, covers them) */
	bool no_journal;    /* the log's file system needs syncfs for new blocks */
	int walfd;          /* wal/, once opened */
	struct wal *wal;    /* this process's log, from its first commit */
	bool defer;         /* a logged commit's names wait for file_settle */
	struct pending *pending; /* what the last logged commit left to make */
};

/* Bytes an upload gathers before writing: FastCGI hands the body over
 * in pieces of a few KB, and a typical message then goes to its file in
 * one write instead of several. */
#define PUT_HOLD 16384

struct fput {
	struct fstore *fs;
	int fd;
	char name[80];
	z_stream *z;          /* deflating into fd, or NULL */
	unsigned char *zout;  /* GZ_OUT bytes of deflate output */
	uint64_t len;         /* bytes written to fd, as stored */
	uint32_t crc;         /* their crc32, for the log record */
	size_t held;          /* bytes in hold, not yet written to fd */
	unsigned char hold[PUT_HOLD];
};

/* An I/O failure: temporary, since a retry may find space or a disk. */
static int io_err(struct qerr *e, const char *what, const char *name)
{
	return qerr_temp(e, "file store: %s %.200s: %s", what, name, strerror(errno));
}

/* A fresh name for a temporary file in users/ or ids/. */
static void tmp_name(struct fstore *fs, char *out, size_t len)
{
	snprintf(out, len, TMP_PREFIX "%ld.%lu", fs->pid, ++fs->counter);
}

/* True if name begins with prefix and a process id that no longer runs. */
static bool owner_dead(const char *name, const char *prefix)
{
	size_t pl = strlen(prefix);
	if (strncmp(name, prefix, pl) != 0)
		return false;
	char *end;
	errno = 0;
	long pid = strtol(name + pl, &end, 10);
	if (errno != 0 || end == name + pl || *end != '.' || pid <= 0 || pid > INT_MAX)
		return false;
	return kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

static bool is_hex_id(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* Names "<id><suffix>" with a well-formed id. */
static bool is_entry_file(const char *name, const char *suffix)
{
	size_t n = strlen(name);
	return n == ENTRY_ID_LEN + strlen(suffix) && strcmp(name + ENTRY_ID_LEN, suffix) == 0 &&
	       is_hex_id(name, ENTRY_ID_LEN);
}

/* The content file of entry id, plain or compressed (out: ENTRY_ID_LEN + 8). */
static void content_name(char *out, size_t len, const char *id, bool gz)
{
	snprintf(out, len, "%s%s", id, gz ? ".eml.gz" : ".eml");
}

/* Finds entry id's content in either form: 0 with its name and stat, or
 * -1 with errno (ENOENT if there is none). */
static int find_content(int ufd, const char *id, char *name, size_t len, struct stat *st)
{
	for (int gz = 0; gz <= 1; gz++) {
		content_name(name, len, id, gz);
		if (fstatat(ufd, name, st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (S_ISREG(st->st_mode))
				return 0;
			errno = EINVAL;
			return -1;
		}
		if (errno != ENOENT)
			return -1;
	}
	return -1;
}

/* True if entry id in ufd has its content, in either form. */
static bool has_content(int ufd, const char *id)
{
	char name[ENTRY_ID_LEN + 8];
	struct stat st;
	return find_content(ufd, id, name, sizeof name, &st) == 0;
}

/* A path component we generated: not empty, not a dot name, no slash. */
static bool good_component(const char *s)
{
	return *s != '\0' && *s != '.' && strchr(s, '/') == NULL &&
	       strlen(s) <= ADDR_PATH_COMPONENT_MAX;
}

/*
 * Opens (creating if asked) the subdirectory name of dirfd, never through
 * a symlink.  A directory created here is made durable by fsyncing its
 * parent, unless sync_new is false: then the caller's syncfs will.
 * Returns 0, 1 if it does not exist (and create is false), or -1.
 */
static int open_subdir(int dirfd, const char *name, bool create, bool sync_new, int *out,
		       struct qerr *e)
{
	*out = -1;
	int fd = openat(dirfd, name, DIR_FLAGS);
	if (fd < 0 && errno == ENOENT && create) {
		if (mkdirat(dirfd, name, 0700) == 0) {
			if (sync_new && fsync(dirfd) < 0)
				return io_err(e, "cannot sync directory above", name);
		} else if (errno != EEXIST) {
			return io_err(e, "cannot create directory", name);
		}
		fd = openat(dirfd, name, DIR_FLAGS);
	}
	if (fd < 0) {
		if (errno == ENOENT && !create)
			return 1;
		return io_err(e, "cannot open directory", name);
	}
	*out = fd;
	return 0;
}

/* Splits "domain/local" as addr_path writes it; checks both halves. */
static int split_rel(char *rel, char **domain, char **local)
{
	char *slash = strchr(rel, '/');
	if (slash == NULL)
		return -1;
	*slash = '\0';
	*domain = rel;
	*local = slash + 1;
	if (!good_component(*domain) || !good_component(*local)) {
		*slash = '/';
		return -1;
	}
	return 0;
}

/* Opens users/<rel> in one system call when it exists: openat2 refusing
 * any symlink on the way, as the two O_NOFOLLOW opens of open_rel do.
 * -1 when it could not (absent, or openat2 refused: then never again). */
static int open_rel_at_once(struct fstore *fs, const char *rel)
{
	if (fs->no_openat2)
		return -1;
	struct open_how how = { .flags = DIR_FLAGS & ~O_NOFOLLOW,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
					   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV };
	long fd = syscall(SYS_openat2, fs->usersfd, rel, &how, sizeof how);
	if (fd < 0 && (errno == ENOSYS || errno == EPERM || errno == E2BIG))
		fs->no_openat2 = true;
	return fd < 0 ? -1 : (int)fd;
}

/* Opens users/<rel>; rel is "domain/local".  Returns 0, 1 (absent), -1. */
static int open_rel(struct fstore *fs, const char *relpath, bool create, int *out,
		    struct qerr *e)
{
	char rel[REL_MAX];
	char *domain, *local;
	*out = -1;
	if (strlen(relpath) >= sizeof rel)
		return qerr_perm(e, "file store: directory name too long");
	strcpy(rel, relpath);
	if (split_rel(rel, &domain, &local) < 0)
		return qerr_perm(e, "file store: bad directory name '%.80s'", relpath);
	*out = open_rel_at_once(fs, relpath);
	if (*out >= 0)
		return 0;
	int dfd, r = open_subdir(fs->usersfd, domain, create, !fs->syncfs, &dfd, e);
	if (r == 0) {
		r = open_subdir(dfd, local, create, !fs->syncfs, out, e);
		close(dfd);
	}
	if (r < 0 && e)
		snprintf(e->msg, sizeof e->msg, "file store: cannot %s users/%.200s: %s",
			 create ? "create or open" : "open", relpath, strerror(errno));
	return r;
}

/* The user directory's relative name for a recipient. */
static int rcpt_rel(const char *rcpt, char *rel, size_t len, struct qerr *e)
{
	if (addr_path(rcpt ? rcpt : "", rel, len) < 0)
		return qerr_perm(e, "file store: no directory name for recipient");
	return 0;
}

/* For the announced marks (store_file_digest.c): rcpt's directory. */
int store_file_user_dir(void *state, const char *rcpt, int *ufd, struct qerr *e)
{
	char rel[REL_MAX];
	if (rcpt_rel(rcpt, rel, sizeof rel, e) < 0)
		return -1;
	return open_rel(state, rel, false, ufd, e);
}

static int scan_for_entry(struct fstore *fs, const char *id, char *rel, size_t len,
			  struct qerr *e);
static int make_id_link(struct fstore *fs, const char *id, const char *rel, struct qerr *e);
static int read_small(int dirfd, const char *name, struct buf *b, struct qerr *e);

/* The ids link of an entry may be missing after a crash (it is not synced
 * with each commit, see the top): then the entry is searched for in
 * users/ and, if found, its link is made again.  Returns 0 with *ufd,
 * or -1 (QERR_NOTFOUND if there is no such entry). */
static int entry_dir_by_scan(struct fstore *fs, const char *id, int *ufd, struct qerr *e)
{
	char rel[REL_MAX];
	int r = scan_for_entry(fs, id, rel, sizeof rel, e);
	if (r < 0)
		return -1;
	if (r == 0)
		return qerr_notfound(e, "no entry '%s'", id);
	if (make_id_link(fs, id, rel, NULL) == 0)
		log_msg(LOG_INFO, "file store: made the missing link ids/%.2s/%s again", id, id);
	r = open_rel(fs, rel, false, ufd, e);
	return r == 0 ? 0 : r < 0 ? -1 : qerr_notfound(e, "no entry '%s'", id);
}

/* The directory an ids entry that is a message record (a link of it, see
 * the top) names for entry id: 0 with *ufd, 1 if the record is unreadable
 * or names no such entry (a leftover of a crash), -1 on error. */
static int entry_dir_by_record(struct fstore *fs, int dfd, const char *id, int *ufd,
			       struct qerr *e)
{
	struct buf b = { 0 };
	struct qentry q;
	char rel[REL_MAX];
	int r = read_small(dfd, id, &b, e);
	if (r != 0) {
		buf_free(&b);
		return r;
	}
	r = qentry_from_json_for(b.data ? b.data : "", b.len, id, &q);
	buf_free(&b);
	if (r < 0 || strcmp(q.id, id) != 0 || q.rcpt == NULL) {
		if (r == 0)
			qentry_free(&q);
		return 1;
	}
	r = rcpt_rel(q.rcpt, rel, sizeof rel, NULL);
	qentry_free(&q);
	if (r < 0)
		return 1;
	r = open_rel(fs, rel, false, ufd, e);
	return r == 0 ? 0 : r < 0 ? -1 : qerr_notfound(e, "no entry '%s'", id);
}

/* Finds the directory of entry id through its ids entry (a link of its
 * message record, or a symlink to the directory as stores before records
 * made them and as a search makes them again), or by searching users/
 * when it is missing.  Returns 0, or -1 (QERR_NOTFOUND if there is no
 * such entry). */
static int entry_dir(struct fstore *fs, const char *id, int *ufd, struct qerr *e)
{
	char xx[3] = { id[0], id[1], '\0' };
	char target[64 + REL_MAX];
	*ufd = -1;
	int dfd, r = open_subdir(fs->idsfd, xx, false, false, &dfd, e);
	if (r < 0)
		return -1;
	if (r == 1)
		return entry_dir_by_scan(fs, id, ufd, e);
	ssize_t n = readlinkat(dfd, id, target, sizeof target - 1);
	int err = errno;
	if (n < 0 && err == EINVAL) {
		r = entry_dir_by_record(fs, dfd, id, ufd, e);
		close(dfd);
		return r == 1 ? entry_dir_by_scan(fs, id, ufd, e) : r;
	}
	close(dfd);
	if (n < 0) {
		errno = err;
		if (err == ENOENT)
			return entry_dir_by_scan(fs, id, ufd, e);
		return io_err(e, "cannot read link of", id);
	}
	target[n] = '\0';
	static const char prefix[] = "../../users/";
	if (strncmp(target, prefix, sizeof prefix - 1) != 0)
		return qerr_perm(e, "file store: ids/%s/%s points outside users/", xx, id);
	r = open_rel(fs, target + sizeof prefix - 1, false, ufd, e);
	return r == 0 ? 0 : r < 0 ? -1 : qerr_notfound(e, "no entry '%s'", id);
}

/* Reads a whole (small) file below dirfd.  Returns 0, 1 if absent, -1. */
static int read_small(int dirfd, const char *name, struct buf *b, struct qerr *e)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 1 : io_err(e, "cannot open", name);
	char chunk[8192];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			io_err(e, "cannot read", name);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		if (b->len + (size_t)n > JSON_MAX) {
			close(fd);
			return qerr_perm(e, "file store: %s is too large", name);
		}
		buf_append(b, chunk, (size_t)n);
	}
	close(fd);
	return 0;
}

/* Reads and parses <id>.json in dirfd.  Returns 0, 1 if absent (or
 * without content), -1. */
static int load_entry(int dirfd, const char *id, struct qentry *out, struct qerr *e)
{
	char name[ENTRY_ID_LEN + 8];
	struct buf b = { 0 };
	snprintf(name, sizeof name, "%s.json", id);
	memset(out, 0, sizeof *out);
	int r = read_small(dirfd, name, &b, e);
	if (r != 0) {
		buf_free(&b);
		return r;
	}
	r = qentry_from_json_for(b.data ? b.data : "", b.len, id, out);
	buf_free(&b);
	if (r < 0 || strcmp(out->id, id) != 0) {
		if (r == 0)
			qentry_free(out);
		return qerr_perm(e, "file store: metadata of entry %s is damaged", id);
	}
	if (!has_content(dirfd, id)) {
		/* a commit cut short by a crash: not an entry (see the top) */
		qentry_free(out);
		return 1;
	}
	return 0;
}

/* Starts writing a file's dirty pages back without waiting, so that a
 * later fsync of any file finds them on their way (a hint: errors show up
 * at that fsync). */
static void start_writeback(int fd)
{
	(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

/* Gives a metadata file the entry's received time as its modification
 * time: list and expire read the time from there (see the top). */
static int set_mtime(int fd, int64_t t)
{
	struct timespec ts[2] = { { .tv_sec = 0, .tv_nsec = UTIME_OMIT },
				  { .tv_sec = (time_t)t, .tv_nsec = 0 } };
	return futimens(fd, ts);
}

/* Writes metadata text to the new file dirfd/name, dated mtime.  With
 * keep NULL the file is fsynced and closed; else its descriptor goes to
 * *keep, for the caller to fsync with others, its writeback started
 * first if writeback is true (a syncfs writes every file in one pass, and
 * starting each on its own only costs CPU).  On failure the file is
 * removed again. */
static int write_tmp_named(int dirfd, const char *name, const char *text, int64_t mtime,
			   int *keep, bool writeback, struct qerr *e)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return io_err(e, "cannot create", name);
	bool bad = write_full(fd, text, strlen(text)) < 0 || set_mtime(fd, mtime) < 0;
	if (!bad && keep == NULL)
		bad = fsync(fd) < 0;
	else if (!bad && writeback)
		start_writeback(fd);
	if (bad) {
		io_err(e, "cannot write", name);
		close(fd);
		unlinkat(dirfd, name, 0);
		return -1;
	}
	if (keep != NULL) {
		*keep = fd;
		return 0;
	}
	if (close(fd) < 0) {
		io_err(e, "cannot write", name);
		unlinkat(dirfd, name, 0);
		return -1;
	}
	return 0;
}

/* Replaces the metadata file dirfd/name with text dated mtime, durably:
 * temporary file, fsync, rename.  The caller fsyncs dirfd. */
static int replace_file(struct fstore *fs, int dirfd, const char *name, const char *text,
			int64_t mtime, struct qerr *e)
{
	char tmp[64];
	tmp_name(fs, tmp, sizeof tmp);
	if (write_tmp_named(dirfd, tmp, text, mtime, NULL, false, e) < 0)
		return -1;
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		io_err(e, "cannot rename to", name);
		unlinkat(dirfd, tmp, 0);
		return -1;
	}
	return 0;
}

/* Removes uploads left in tmp/ by processes that are gone. */
static void clean_tmp(struct fstore *fs)
{
	int fd = openat(fs->tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (owner_dead(de->d_name, "") && unlinkat(fs->tmpfd, de->d_name, 0) == 0)
			log_msg(LOG_INFO, "file store: removed abandoned upload tmp/%s",
				de->d_name);
	}
	closedir(d);
}

/* mkdir -p for the configured root (trusted: it comes from the config). */
static int mkdir_root(const char *root, struct qerr *e)
{
	char *p = xstrdup(root);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			int err = errno;
			free(p);
			return qerr_perm(e, "file store: cannot create %.200s: %s", root,
					 strerror(err));
		}
		*s = '/';
	}
	int r = 0;
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		r = qerr_perm(e, "file store: cannot create %.200s: %s", root, strerror(errno));
	free(p);
	return r;
}

/*
 * How commits make a message durable (file_sync).  log: one record in
 * this process's write-ahead log, one fdatasync, whatever the number of
 * recipients (see the top).  fsync and syncfs: the two-phase commit
 * without a log, its phases made durable by an fsync of each file and
 * directory, or by one syncfs of the store's file system.  auto: the log
 * where the file system journals its metadata, else the two-phase commit
 * with syncfs (below).
 *
 * ext4 without a journal can be trusted with neither fsync nor syncfs
 * alone.  Its fsync writes a file's inode and blocks but not the block
 * group's descriptor and bitmaps, so after a power cut e2fsck takes a new
 * inode for one in the group's unused area and drops it, and the names
 * pointing at it (seen in the power-cut suite); its syncfs writes all of
 * those but flushes the disk's cache before its last writes.  So there
 * the two-phase commit ends each phase with a syncfs followed by an
 * fsync, whose flush comes after, and the log makes its new files and
 * its growth durable the same way (store_file_wal.c).  An ext4 whose
 * journal cannot be found is treated the same.
 *
 * And there auto does not take the log.  Without a journal a directory
 * whose extent tree grows is written in several blocks, in no order; a
 * power cut in between leaves e2fsck a directory it clears, with every
 * entry in it, stored long before or not.  No commit can prevent that,
 * but the log leaves user directories dirty for up to a second and has
 * them written together at its checkpoint, which widens the window: the
 * power-cut suite lost a whole directory that way with the log, and
 * never with the two-phase commit, whose directories are written as
 * each message is committed.
 */
static int choose_sync(struct fstore *fs, const char *mode)
{
	char why[128];
	enum sync_fs_kind kind = sync_batch_fs_kind(fs->rootfd, why, sizeof why);
	bool sound = kind == SYNC_FS_SOUND;
	fs->no_journal = !sound;
	if (mode != NULL && strcmp(mode, "fsync") == 0)
		return SYNC_FSYNC;
	if (mode != NULL && strcmp(mode, "syncfs") == 0)
		return sound ? SYNC_SYNCFS : SYNC_SYNCFS_FLUSH;
	bool asked = mode != NULL && strcmp(mode, "log") == 0;
	if (!sound && !asked) {
		log_msg(LOG_DEBUG, "file store: file_sync auto: %s, two phases, each a syncfs "
				   "and a flush", why);
		return SYNC_SYNCFS_FLUSH;
	}
	log_msg(LOG_DEBUG, "file store: file_sync %s: %s, write-ahead log%s", asked ? "log" : "auto",
		why, sound ? "" : " with syncfs for new blocks");
	return SYNC_LOG;
}

static int file_settle(void *state, struct qerr *e);

static void file_close(void *state)
{
	struct fstore *fs = state;
	if (fs == NULL)
		return;
	if (fs->pid == (long)getpid()) { /* a forked child's copy is its parent's */
		struct qerr e;
		qerr_clear(&e);
		(void)file_settle(fs, &e); /* logged where it fails */
		wal_close(fs->wal);
	}
	int fds[] = { fs->rootfd, fs->tmpfd, fs->usersfd, fs->idsfd, fs->walfd };
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (size_t i = 0; i < 256; i++)
		if (fs->idsdir[i] >= 0)
			close(fs->idsdir[i]);
	free(fs->root);
	free(fs);
}

static void recover(struct fstore *fs);

static int file_open(void **state, const struct config *c, struct qerr *e)
{
	*state = NULL;
	if (c->file_root == NULL || *c->file_root == '\0')
		return qerr_perm(e, "file store: file_root is not set");
	if (mkdir_root(c->file_root, e) < 0)
		return -1;
	struct fstore *fs = xcalloc(1, sizeof *fs);
	fs->root = xstrdup(c->file_root);
	fs->gzip = c->compress != NULL && strcmp(c->compress, "gzip") == 0;
	fs->tmpfd = fs->usersfd = fs->idsfd = fs->walfd = -1;
	for (size_t i = 0; i < 256; i++)
		fs->idsdir[i] = -1;
	fs->pid = (long)getpid();
	/* Upload names: pid and counter are unique among the living; the salt
	 * keeps a new process clear of a dead one's leftovers with its pid.
	 * Drawn once: a getrandom per message is a system call for nothing. */
	unsigned char rnd[8];
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		memset(rnd, 0, sizeof rnd);
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(fs->salt + 2 * i, sizeof fs->salt - 2 * i, "%02x", rnd[i]);
	fs->rootfd = open(c->file_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->rootfd < 0) {
		qerr_perm(e, "file store: cannot open %.200s: %s", c->file_root, strerror(errno));
		file_close(fs);
		return -1;
	}
	if (open_subdir(fs->rootfd, "tmp", true, true, &fs->tmpfd, e) != 0 ||
	    open_subdir(fs->rootfd, "users", true, true, &fs->usersfd, e) != 0 ||
	    open_subdir(fs->rootfd, "ids", true, true, &fs->idsfd, e) != 0) {
		file_close(fs);
		return -1;
	}
	clean_tmp(fs);
	fs->sync = choose_sync(fs, c->file_sync);
	recover(fs);
	*state = fs;
	return 0;
}

static int file_put_begin(void *state, void **put, struct qerr *e)
{
	struct fstore *fs = state;
	struct qerr se;
	qerr_clear(&se);
	(void)file_settle(fs, &se); /* a caller that did not: logged where it fails */
	struct fput *p = xcalloc(1, sizeof *p);
	*put = NULL;
	snprintf(p->name, sizeof p->name, "%ld.%lu.%s", fs->pid, ++fs->counter, fs->salt);
	p->fs = fs;
	/* read too: the log's record copies the content from it */
	p->fd = openat(fs->tmpfd, p->name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       0600);
	if (p->fd < 0) {
		io_err(e, "cannot create tmp/", p->name);
		free(p);
		return -1;
	}
	if (fs->gzip) {
		p->z = xcalloc(1, sizeof *p->z);
		/* windowBits 15 + 16: a gzip header and trailer, so zcat reads it */
		if (deflateInit2(p->z, GZ_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
		    Z_OK) {
			free(p->z);
			p->z = NULL;
			close(p->fd);
			unlinkat(fs->tmpfd, p->name, 0);
			free(p);
			return qerr_temp(e, "file store: cannot start compression");
		}
		p->zout = xmalloc(GZ_OUT);
	}
	*put = p;
	return 0;
}

/* Runs deflate over the input set in p->z (flush: Z_NO_FLUSH or
 * Z_FINISH), writing its output whenever the buffer fills. */
static int gz_pump(struct fput *p, int flush, struct qerr *e)
{
	z_stream *z = p->z;
	for (;;) {
		z->next_out = p->zout;
		z->avail_out = GZ_OUT;
		int zr = deflate(z, flush);
		if (zr == Z_STREAM_ERROR)
			return qerr_temp(e, "file store: compression failed");
		size_t have = GZ_OUT - z->avail_out;
		if (have > 0 && write_full(p->fd, p->zout, have) < 0)
			return io_err(e, "cannot write tmp/", p->name);
		p->crc = (uint32_t)crc32(p->crc, p->zout, (uInt)have);
		p->len += have;
		if (flush == Z_FINISH ? zr == Z_STREAM_END : z->avail_out != 0)
			return 0;
	}
}

/* Writes what the upload holds. */
static int put_flush(struct fput *p, struct qerr *e)
{
	if (p->held > 0 && write_full(p->fd, p->hold, p->held) < 0)
		return io_err(e, "cannot write tmp/", p->name);
	p->held = 0;
	return 0;
}

static int file_put_write(void *put, const void *data, size_t n, struct qerr *e)
{
	struct fput *p = put;
	if (p->z) {
		/* avail_in is 32 bits: feed large pieces in slices */
		const unsigned char *d = data;
		while (n > 0) {
			size_t k = n > (1u << 30) ? (1u << 30) : n;
			p->z->next_in = (unsigned char *)d;
			p->z->avail_in = (uInt)k;
			if (gz_pump(p, Z_NO_FLUSH, e) < 0)
				return -1;
			d += k;
			n -= k;
		}
		return 0;
	}
	if (p->held + n <= PUT_HOLD) {
		memcpy(p->hold + p->held, data, n);
		p->held += n;
	} else if (put_flush(p, e) < 0) {
		return -1;
	} else if (n < PUT_HOLD) {
		memcpy(p->hold, data, n);
		p->held = n;
	} else if (write_full(p->fd, data, n) < 0) {
		return io_err(e, "cannot write tmp/", p->name);
	}
	for (size_t off = 0; off < n; off += 1u << 30) /* crc32's length is 32 bits */
		p->crc = (uint32_t)crc32(p->crc, (const unsigned char *)data + off,
					 (uInt)(n - off < (1u << 30) ? n - off : (1u << 30)));
	p->len += n;
	return 0;
}

static void put_free(struct fput *p)
{
	if (p->fd >= 0)
		close(p->fd);
	unlinkat(p->fs->tmpfd, p->name, 0);
	if (p->z) {
		deflateEnd(p->z);
		free(p->z);
	}
	free(p->zout);
	free(p);
}

static void file_put_abort(void *put)
{
	if (put)
		put_free(put);
}

/* What commit made for one recipient, so that it can be undone. */
struct made {
	char rel[REL_MAX];
	const char *id;
	const char *rec; /* its message record in tmp/ (see struct records) */
	bool gz;        /* the content is <id>.eml.gz */
	bool skip;      /* the entry existed before */
	bool repair;    /* its .json existed without content: a crash's leftover */
	bool eml, link, json;
	int ufd;        /* users/<rel>, kept open from phase 1 to 2, or -1 */
};

/* Recipients one message record names at most: each costs the record two
 * links (its .json and its ids entry), and ext4 allows an inode 65,000;
 * a message with more recipients gets one record per this many. */
#define RECORD_RCPTS 1000

/* The message records a commit writes in tmp/, one per RECORD_RCPTS
 * recipients; unlinked from tmp/ once the entries have their names. */
struct records {
	size_t n, made;
	char (*name)[64];
};

/* Recipients whose directory stays open between the two phases; beyond
 * these it is opened again (a message may have max_recipients). */
#define KEEP_DIRS 128

/* Removes what a failed commit created, newest first; best effort. */
static void rollback(struct fstore *fs, struct made *mk, size_t n)
{
	while (n-- > 0) {
		struct made *w = &mk[n];
		char name[ENTRY_ID_LEN + 8];
		int ufd;
		if ((w->json || w->eml) && open_rel(fs, w->rel, false, &ufd, NULL) == 0) {
			if (w->json) {
				snprintf(name, sizeof name, "%s.json", w->id);
				unlinkat(ufd, name, 0);
			}
			if (w->eml) {
				content_name(name, sizeof name, w->id, w->gz);
				unlinkat(ufd, name, 0);
			}
			if (fsync(ufd) < 0)
				log_msg(LOG_WARNING, "file store: rollback: sync of users/%s: %s",
					w->rel, strerror(errno));
			close(ufd);
		}
		char xx[3] = { w->id[0], w->id[1], '\0' };
		int xfd;
		if (w->link && open_subdir(fs->idsfd, xx, false, false, &xfd, NULL) == 0) {
			unlinkat(xfd, w->id, 0);
			(void)fsync(xfd);
			close(xfd);
		}
	}
}

/* Links the content in as <id>.eml (or .eml.gz).  Only called while the
 * entry is not complete, so a content file of its id is a leftover (of a
 * crash, or of an older version that named the content before it was
 * durable) and never trusted to hold the bytes: one of the same name is
 * replaced, and a plain one is removed before a gzip one is linked.  A
 * leftover .eml.gz beside a new plain .eml is left: readers take the
 * plain form first (find_content), and expire removes it once the entry
 * is gone.  Looking for it would cost every recipient a lookup in what
 * may be a large directory, for a leftover that needs a crash and a
 * change of compress to exist. */
static int link_content_from(int tmpfd, const char *src, bool gz, int ufd, const char *id,
			     struct qerr *e)
{
	char name[ENTRY_ID_LEN + 8];
	if (gz) {
		content_name(name, sizeof name, id, false);
		if (unlinkat(ufd, name, 0) < 0 && errno != ENOENT)
			return io_err(e, "cannot replace", name);
	}
	content_name(name, sizeof name, id, gz);
	if (linkat(tmpfd, src, ufd, name, 0) == 0)
		return 0;
	if (errno != EEXIST)
		return io_err(e, "cannot link", name);
	if (unlinkat(ufd, name, 0) < 0 && errno != ENOENT)
		return io_err(e, "cannot replace", name);
	if (linkat(tmpfd, src, ufd, name, 0) < 0)
		return io_err(e, "cannot link", name);
	return 0;
}

/* link_content_from for the upload of p. */
static int link_content(struct fput *p, int ufd, const char *id, struct qerr *e)
{
	return link_content_from(p->fs->tmpfd, p->name, p->z != NULL, ufd, id, e);
}

/* Makes the name name in dirfd for an ids entry (link_id, make_id_link);
 * 0, or -1 with errno. */
typedef int (*ids_maker)(struct fstore *fs, const char *arg, int dirfd, const char *name);

static int make_symlink(struct fstore *fs, const char *target, int dirfd, const char *name)
{
	(void)fs;
	return symlinkat(target, dirfd, name);
}

static int make_hardlink(struct fstore *fs, const char *rec, int dirfd, const char *name)
{
	return linkat(fs->tmpfd, rec, dirfd, name, 0);
}

/* Makes ids/<xx>/<id> with make, a leftover of that name replaced in one
 * step (made under a temporary name, renamed over it).  The ids/<xx>
 * directories stay open in fs->idsdir; one removed under the process (by
 * hand) is made again.  Not synced here (see the top). */
static int make_ids_entry(struct fstore *fs, const char *id, ids_maker make, const char *arg,
			  struct qerr *e)
{
	char xx[3] = { id[0], id[1], '\0' };
	char tmp[64];
	int *xfd = &fs->idsdir[strtoul(xx, NULL, 16) & 255];
	if (*xfd < 0 && open_subdir(fs->idsfd, xx, true, !fs->syncfs, xfd, e) != 0)
		return -1;
	int r = make(fs, arg, *xfd, id);
	if (r < 0 && errno == ENOENT) {
		close(*xfd);
		*xfd = -1;
		if (open_subdir(fs->idsfd, xx, true, !fs->syncfs, xfd, e) != 0)
			return -1;
		r = make(fs, arg, *xfd, id);
	}
	if (r == 0)
		return 0; /* the usual case: no entry of that id yet */
	if (errno != EEXIST)
		return io_err(e, "cannot create link for", id);
	tmp_name(fs, tmp, sizeof tmp);
	if (make(fs, arg, *xfd, tmp) < 0)
		return io_err(e, "cannot create link for", id);
	if (renameat(*xfd, tmp, *xfd, id) < 0) {
		io_err(e, "cannot create link for", id);
		unlinkat(*xfd, tmp, 0);
		return -1;
	}
	return 0;
}

/* Points ids/<xx>/<id> at the user directory rel with a symlink, as a
 * search that found an entry without its ids entry makes it again. */
static int make_id_link(struct fstore *fs, const char *id, const char *rel, struct qerr *e)
{
	char *target = xasprintf("../../users/%s", rel);
	int r = make_ids_entry(fs, id, make_symlink, target, e);
	free(target);
	return r;
}

/* Makes ids/<xx>/<id> a link of the message record rec in tmp/ (no new
 * inode: the record names the entry's recipient, hence its directory). */
static int link_id(struct fstore *fs, const char *id, const char *rec, struct qerr *e)
{
	return make_ids_entry(fs, id, make_hardlink, rec, e);
}

/* Writes the message records of a commit to tmp/ (one per RECORD_RCPTS
 * recipients) and hands them to sb, or closes them (sb NULL: the log
 * holds them); rc->made counts those written, for the caller to unlink.
 * With payload, each record's text is also appended to it (u32 length,
 * text) for the log. */
static int write_records(struct fput *p, const struct qmeta *m, char *const *ids,
			 struct records *rc, struct sync_batch *sb, struct buf *payload,
			 struct qerr *e)
{
	struct fstore *fs = p->fs;
	struct qentry qe;
	memset(&qe, 0, sizeof qe);
	qe.status = ENTRY_QUARANTINED;
	qe.status_changed = m->received_at;
	qe.meta = *m;
	rc->n = (m->nrcpt + RECORD_RCPTS - 1) / RECORD_RCPTS;
	rc->name = xcalloc(rc->n ? rc->n : 1, sizeof *rc->name);
	for (size_t k = 0; k < rc->n; k++) {
		size_t from = k * RECORD_RCPTS;
		size_t n = m->nrcpt - from < RECORD_RCPTS ? m->nrcpt - from : RECORD_RCPTS;
		char *json = qrecord_to_json(&qe, ids + from, m->rcpt + from, n);
		snprintf(rc->name[k], sizeof rc->name[k], "%ld.%lu.json", fs->pid, ++fs->counter);
		int jfd;
		int r = write_tmp_named(fs->tmpfd, rc->name[k], json, m->received_at, &jfd,
					!fs->syncfs, e);
		if (r == 0 && payload != NULL) {
			uint32_t len = (uint32_t)strlen(json);
			buf_append(payload, &len, sizeof len);
			buf_append(payload, json, len);
		}
		free(json);
		if (r < 0)
			return -1;
		rc->made++;
		if (sb == NULL) {
			close(jfd);
			continue;
		}
		char what[96];
		snprintf(what, sizeof what, "tmp/%s", rc->name[k]);
		if (sync_batch_add(sb, jfd, what, e) < 0)
			return -1;
	}
	return 0;
}

/* Hands a user directory's descriptor to sb (a copy: the caller keeps
 * its own); nothing to hand to a whole-file-system batch that has one,
 * nor without a batch (the log's commit). */
static int batch_user_dir(struct sync_batch *sb, int ufd, const char *rel, struct qerr *e)
{
	if (sb == NULL || (sb->whole_fs && sb->n > 0))
		return 0;
	int fd = fcntl(ufd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return io_err(e, "cannot sync directory users/", rel);
	char what[96];
	snprintf(what, sizeof what, "directory users/%.70s", rel);
	return sync_batch_add(sb, fd, what, e);
}

/* Looks at one recipient's directory (made if new): an entry stored
 * before (a retry) is marked skip, its directory handed to sb (the first
 * attempt may not have finished syncing it yet), and a .json without
 * content marked repair.  With keep, the user directory stays open in
 * w->ufd for the publication. */
static int look_one(struct fput *p, const char *rcpt, const char *id, const char *rec,
		    struct made *w, bool keep, struct sync_batch *sb, struct qerr *e)
{
	struct fstore *fs = p->fs;
	char name[ENTRY_ID_LEN + 8];
	int ufd;
	w->id = id;
	w->rec = rec;
	w->gz = p->z != NULL;
	if (rcpt_rel(rcpt, w->rel, sizeof w->rel, e) < 0)
		return -1;
	if (open_rel(fs, w->rel, true, &ufd, e) != 0)
		return -1;
	struct stat st;
	snprintf(name, sizeof name, "%s.json", id);
	if (fstatat(ufd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (has_content(ufd, id)) {
			w->skip = true;
			int r = batch_user_dir(sb, ufd, w->rel, e);
			close(ufd);
			return r;
		}
		/* metadata without content: a commit cut short by a crash */
		w->repair = true;
	} else if (errno != ENOENT) {
		io_err(e, "cannot look at", name);
		close(ufd);
		return -1;
	}
	if (keep)
		w->ufd = ufd;
	else
		close(ufd);
	return 0;
}

/* First phase for one recipient: look_one, then its ids link to the
 * message record, which leads nowhere until the .json exists. */
static int prepare_one(struct fput *p, const char *rcpt, const char *id, const char *rec,
		       struct made *w, bool keep, struct sync_batch *sb, struct qerr *e)
{
	if (look_one(p, rcpt, id, rec, w, keep, sb, e) < 0)
		return -1;
	if (w->skip)
		return 0;
	if (link_id(p->fs, id, rec, e) < 0)
		return -1;
	w->link = true;
	return 0;
}

/* Second phase for one recipient: the content takes its name, then the
 * metadata (link, never overwriting: an entry committed meanwhile by a
 * concurrent retry is theirs), and the user directory goes into sb; the
 * entry exists once sb is flushed. */
static int publish_one(struct fstore *fs, struct fput *p, struct made *w, struct sync_batch *sb,
		       size_t *created, struct qerr *e)
{
	char name[ENTRY_ID_LEN + 8];
	int ufd = w->ufd;
	if (ufd < 0 && open_rel(fs, w->rel, false, &ufd, e) != 0)
		return qerr_temp(e, "file store: users/%.200s vanished during commit", w->rel);
	snprintf(name, sizeof name, "%s.json", w->id);
	struct stat st;
	int r = 0;
	if (!w->repair && fstatat(ufd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		w->link = false; /* committed meanwhile: theirs */
	} else {
		r = link_content(p, ufd, w->id, e);
		w->eml = r == 0;
		if (r == 0 && w->repair) {
			(*created)++;
		} else if (r == 0 && linkat(fs->tmpfd, w->rec, ufd, name, 0) == 0) {
			w->json = true;
			(*created)++;
		} else if (r == 0 && errno == EEXIST) {
			w->eml = w->link = false; /* theirs, as above */
		} else if (r == 0) {
			r = io_err(e, "cannot link", name);
		}
	}
	if (r == 0)
		r = batch_user_dir(sb, ufd, w->rel, e);
	if (ufd != w->ufd)
		close(ufd);
	return r;
}

/* What every commit does last, whatever its outcome: the message records
 * leave tmp/ (their links stay), directories kept open are closed, and
 * the upload goes. */
static void commit_done(struct fput *p, struct made *mk, size_t n, struct records *rc)
{
	for (size_t k = 0; k < rc->made; k++)
		unlinkat(p->fs->tmpfd, rc->name[k], 0);
	free(rc->name);
	for (size_t j = 0; j < n; j++)
		if (mk[j].ufd >= 0)
			close(mk[j].ufd);
	free(mk);
	put_free(p);
}

/*
 * Commits in the two phases described at the top (file_sync = fsync or
 * syncfs).  Each phase first does its namespace operations for every
 * recipient, collecting what they touched in a sync batch, then fsyncs
 * the batch at once: the disk sees the phase's writes together, and the
 * wait is for the slowest of them rather than for their sum.  Nothing of
 * phase 2 starts before phase 1's flush has returned.
 */
static int commit_two_phase(struct fput *p, const struct qmeta *m, char *const *ids,
			    size_t *created, struct qerr *e)
{
	start_writeback(p->fd);
	struct made *mk = xcalloc(m->nrcpt ? m->nrcpt : 1, sizeof *mk);
	for (size_t j = 0; j < m->nrcpt; j++)
		mk[j].ufd = -1;
	struct fstore *fs = p->fs;
	/* file_sync = log without its log: one syncfs per phase */
	fs->syncfs = fs->sync != SYNC_FSYNC;
	struct sync_batch sb;
	sync_batch_init(&sb, fs->syncfs);
	sb.flush_after = fs->sync == SYNC_SYNCFS_FLUSH || (fs->sync == SYNC_LOG && fs->no_journal);
	char what[96];
	snprintf(what, sizeof what, "tmp/%s", p->name);
	int cfd = fcntl(p->fd, F_DUPFD_CLOEXEC, 0);
	int r = cfd < 0 ? io_err(e, "cannot sync tmp/", p->name) : sync_batch_add(&sb, cfd, what, e);
	struct records rc = { 0 };
	if (r == 0)
		r = write_records(p, m, ids, &rc, &sb, NULL, e);
	size_t i;
	for (i = 0; r == 0 && i < m->nrcpt; i++)
		r = prepare_one(p, m->rcpt[i], ids[i], rc.name[i / RECORD_RCPTS], &mk[i],
				i < KEEP_DIRS, &sb, e);
	if (r == 0)
		r = sync_batch_flush(&sb, e);
	for (size_t j = 0; r == 0 && j < m->nrcpt; j++)
		if (!mk[j].skip)
			r = publish_one(p->fs, p, &mk[j], &sb, created, e);
	if (r == 0)
		r = sync_batch_flush(&sb, e);
	if (r < 0) {
		sync_batch_drop(&sb);
		rollback(p->fs, mk, i);
		*created = 0;
	}
	commit_done(p, mk, m->nrcpt, &rc);
	return r;
}

/* A log record's payload (see the top): "RQE2", flags (1: gzip content),
 * the message records (count, then each as u32 length and text), then
 * the new entries (count, then each as u16 length and its directory,
 * its id, u32 index of its record). */
#define PAYLOAD_MAGIC 0x32455152u /* "RQE2" */

/* Opens the write-ahead log of this process on its first commit. */
static int wal_ready(struct fstore *fs, struct qerr *e)
{
	if (fs->wal != NULL)
		return 0;
	if (fs->walfd < 0 && open_subdir(fs->rootfd, "wal", true, true, &fs->walfd, e) != 0)
		return -1;
	return wal_open(&fs->wal, fs->rootfd, fs->walfd, fs->no_journal, e);
}

/* Appends the new entries of mk to a payload whose records are in it. */
static void payload_entries(struct buf *b, const struct made *mk, size_t n, uint32_t todo)
{
	buf_append(b, &todo, sizeof todo);
	for (size_t i = 0; i < n; i++) {
		if (mk[i].skip)
			continue;
		uint16_t rl = (uint16_t)strlen(mk[i].rel);
		uint32_t k = (uint32_t)(i / RECORD_RCPTS);
		buf_append(b, &rl, sizeof rl);
		buf_append(b, mk[i].rel, rl);
		buf_append(b, mk[i].id, ENTRY_ID_LEN);
		buf_append(b, &k, sizeof k);
	}
}

/* A logged commit whose record is durable and whose names are still to
 * be made: by commit_logged itself, or after the answer (file_settle).
 * The log stays held (wal_lock) until they are. */
struct pending {
	struct fput *p;
	struct made *mk;
	size_t n;
	struct records rc;
	char (*ids)[ENTRY_ID_LEN + 1]; /* mk[i].id: the caller's go with its answer */
};

/* What every logged commit does last (commit_done), and the pending
 * commit's own memory. */
static void pending_end(struct pending *q)
{
	commit_done(q->p, q->mk, q->n, &q->rc);
	free(q->ids);
	free(q);
}

/*
 * Makes the names of a logged commit (step 3 at the top) and lets the log
 * go.  Before the answer a failure undoes them and voids the record: the
 * put fails as a whole.  After the answer (answered) the record is the
 * promise: no checkpoint may retire it, the log is abandoned as a crash
 * would leave it and replayed at once (recover), and if that fails too it
 * stays for the next opener.  (A reader that opens the store between the
 * abandon and the replay does not wait for it: a failing disk's case.)
 */
static int publish_logged(struct fstore *fs, struct pending *q, bool answered, size_t *created,
			  struct qerr *e)
{
	size_t i = 0;
	int r = 0;
	for (; r == 0 && i < q->n; i++) {
		struct made *w = &q->mk[i];
		if (w->skip)
			continue;
		w->rec = q->rc.name[i / RECORD_RCPTS];
		r = link_id(fs, w->id, w->rec, e);
		w->link = r == 0;
		if (r == 0)
			r = publish_one(fs, q->p, w, NULL, created, e);
	}
	if (r < 0 && !answered && i > 0) {
		rollback(fs, q->mk, i);
		wal_void_last(fs->wal);
	}
	if (r < 0 && answered)
		wal_retire_no_more(fs->wal);
	if (answered)
		wal_names_done(fs->wal);
	wal_unlock(fs->wal);
	pending_end(q);
	if (r < 0 && answered) {
		log_msg(LOG_ERR, "%s; the entries answered for are made again from the log", e->msg);
		wal_abandon(fs->wal);
		fs->wal = NULL;
		recover(fs);
	}
	return r;
}

/*
 * Commits through the write-ahead log (file_sync = log or auto), as the
 * top describes: look at each recipient, write the records to tmp/,
 * append one log record (entries, records, content) made durable by one
 * fdatasync, then make the names without syncs, here or, for the daemon
 * (fs->defer), after its answer (file_settle).  Entries that exist
 * already are left out (visible means durable in this store); a put
 * whose entries all exist writes nothing.  The log is held from the
 * append to the end of the names, so that a checkpoint never retires a
 * record whose names are not all made.  A deferred commit counts in
 * *created the entries that did not exist when it looked.
 */
static int commit_logged(struct fput *p, const struct qmeta *m, char *const *ids,
			 size_t *created, struct qerr *e)
{
	struct fstore *fs = p->fs;
	size_t n = m->nrcpt;
	struct pending *q = xcalloc(1, sizeof *q);
	q->p = p;
	q->n = n;
	q->mk = xcalloc(n ? n : 1, sizeof *q->mk);
	q->ids = xcalloc(n ? n : 1, sizeof *q->ids);
	for (size_t j = 0; j < n; j++) {
		q->mk[j].ufd = -1;
		memcpy(q->ids[j], ids[j], ENTRY_ID_LEN + 1);
	}
	fs->syncfs = true; /* new directories: the checkpoint's syncfs, or a replay */
	uint32_t todo = 0;
	int r = 0;
	for (size_t j = 0; r == 0 && j < n; j++) {
		r = look_one(p, m->rcpt[j], q->ids[j], NULL, &q->mk[j], j < KEEP_DIRS, NULL, e);
		todo += r == 0 && !q->mk[j].skip;
	}
	struct buf pl = { 0 };
	uint32_t head[3] = { PAYLOAD_MAGIC, p->z != NULL ? 1u : 0u, 0 };
	buf_append(&pl, head, sizeof head);
	if (r == 0 && todo > 0)
		r = write_records(p, m, ids, &q->rc, NULL, &pl, e);
	if (r == 0 && todo > 0) {
		head[2] = (uint32_t)q->rc.n;
		memcpy(pl.data, head, sizeof head);
		payload_entries(&pl, q->mk, n, todo);
	}
	if (r < 0 || todo == 0) {
		buf_free(&pl);
		pending_end(q);
		return r;
	}
	wal_lock(fs->wal);
	r = wal_append(fs->wal, pl.data, pl.len, p->fd, p->len, p->crc, e);
	buf_free(&pl);
	if (r < 0) {
		wal_unlock(fs->wal);
		pending_end(q);
		return -1;
	}
	if (fs->defer) {
		wal_names_pending(fs->wal);
		fs->pending = q;
		*created = todo;
		return 0;
	}
	r = publish_logged(fs, q, false, created, e);
	if (r < 0)
		*created = 0;
	return r;
}

/* The names a deferred commit left (see commit_logged), made once the
 * answer is out.  A failure is logged and the log replayed: the entries
 * were answered for. */
static int file_settle(void *state, struct qerr *e)
{
	struct fstore *fs = state;
	struct pending *q = fs->pending;
	if (q == NULL)
		return 0;
	fs->pending = NULL;
	size_t created = 0;
	return publish_logged(fs, q, true, &created, e);
}

/* Lets commits leave their names to file_settle (the daemon's workers). */
static void file_defer(void *state)
{
	((struct fstore *)state)->defer = true;
}

/* Ends the upload (the gzip trailer) and commits it through the log, or
 * in two phases when file_sync says so or the log cannot be had. */
static int file_put_commit(void *put, const struct qmeta *m, char *const *ids,
			   size_t *created, struct qerr *e)
{
	struct fput *p = put;
	*created = 0;
	if (put_flush(p, e) < 0) {
		put_free(p);
		return -1;
	}
	if (p->z) {
		p->z->next_in = NULL;
		p->z->avail_in = 0;
		if (gz_pump(p, Z_FINISH, e) < 0) {
			put_free(p);
			return -1;
		}
	}
	if (p->fs->sync == SYNC_LOG) {
		struct qerr le;
		qerr_clear(&le);
		if (wal_ready(p->fs, &le) == 0)
			return commit_logged(p, m, ids, created, e);
		/* no log (a full or read-only wal/): the commit without one is
		 * as safe, only slower; tried again with the next message */
		log_msg(LOG_WARNING, "%s; this message is committed without the log", le.msg);
	}
	return commit_two_phase(p, m, ids, created, e);
}

/* What replay_record needs of the store and the record it replays. */
struct replay {
	struct fstore *fs;
	const struct wal_record *r;
	bool gz;
	char content[64];     /* the content copied out of the log into tmp/, once */
	char (*recname)[64];  /* each message record written to tmp/, once */
	const char **rectext; /* and its text in the payload */
	uint32_t *reclen;
	size_t nrec;
	size_t entries;
};

/* Copies the record's content out of the log into a new file in tmp/. */
static int replay_content(struct replay *x, struct qerr *e)
{
	if (x->content[0] != '\0')
		return 0;
	snprintf(x->content, sizeof x->content, "%ld.%lu.replay", x->fs->pid, ++x->fs->counter);
	int fd = openat(x->fs->tmpfd, x->content,
			O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		x->content[0] = '\0';
		return io_err(e, "cannot create tmp/", "replay file");
	}
	char *buf = xmalloc(READ_CHUNK);
	uint64_t off = x->r->content_off, n = x->r->content_len;
	while (n > 0) {
		size_t k = n > READ_CHUNK ? READ_CHUNK : (size_t)n;
		ssize_t got = pread(x->r->fd, buf, k, (off_t)off);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0 || write_full(fd, buf, (size_t)got) < 0)
			break;
		off += (uint64_t)got;
		n -= (uint64_t)got;
	}
	free(buf);
	if (n != 0 || close(fd) < 0) {
		if (n != 0)
			close(fd);
		unlinkat(x->fs->tmpfd, x->content, 0);
		x->content[0] = '\0';
		return io_err(e, "cannot write tmp/", "replay file");
	}
	return 0;
}

/* True if entry id's content in ufd is the record's: form, size, crc32. */
static bool content_matches(int ufd, const char *id, const struct replay *x)
{
	char name[ENTRY_ID_LEN + 8];
	content_name(name, sizeof name, id, x->gz);
	int fd = openat(ufd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct stat st;
	bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		  (uint64_t)st.st_size == x->r->content_len;
	if (ok) {
		unsigned char *buf = xmalloc(READ_CHUNK);
		uLong crc = crc32(0, NULL, 0);
		ssize_t k;
		while ((k = read(fd, buf, READ_CHUNK)) > 0)
			crc = crc32(crc, buf, (uInt)k);
		ok = k == 0 && (uint32_t)crc == x->r->content_crc;
		free(buf);
	}
	close(fd);
	return ok;
}

/* True if entry id's metadata in ufd reads back as that entry. */
static bool json_good(int ufd, const char *id)
{
	char name[ENTRY_ID_LEN + 8];
	struct buf b = { 0 };
	struct qentry q;
	snprintf(name, sizeof name, "%s.json", id);
	bool ok = read_small(ufd, name, &b, NULL) == 0 &&
		  qentry_from_json_for(b.data ? b.data : "", b.len, id, &q) == 0;
	if (ok)
		qentry_free(&q);
	buf_free(&b);
	return ok;
}

/* Writes message record k of the replayed log record to tmp/, once. */
static int replay_rec_file(struct replay *x, uint32_t k, const char *id, struct qerr *e)
{
	if (x->recname[k][0] != '\0')
		return 0;
	char *text = xmalloc((size_t)x->reclen[k] + 1);
	memcpy(text, x->rectext[k], x->reclen[k]);
	text[x->reclen[k]] = '\0';
	struct qentry q;
	int r = qentry_from_json_for(text, x->reclen[k], id, &q);
	if (r < 0) {
		free(text);
		return qerr_perm(e, "file store: a log record's metadata of %s is damaged", id);
	}
	int64_t mtime = q.meta.received_at;
	qentry_free(&q);
	snprintf(x->recname[k], sizeof x->recname[k], "%ld.%lu.json", x->fs->pid,
		 ++x->fs->counter);
	r = write_tmp_named(x->fs->tmpfd, x->recname[k], text, mtime, NULL, false, e);
	free(text);
	if (r < 0)
		x->recname[k][0] = '\0';
	return r;
}

/* Makes id's .json in ufd a link of the record file rec (in tmp/),
 * replacing whatever damaged file had the name. */
static int replace_json(struct fstore *fs, int ufd, const char *id, const char *rec,
			struct qerr *e)
{
	char name[ENTRY_ID_LEN + 8], tmp[64];
	snprintf(name, sizeof name, "%s.json", id);
	tmp_name(fs, tmp, sizeof tmp);
	if (linkat(fs->tmpfd, rec, ufd, tmp, 0) < 0)
		return io_err(e, "cannot link", name);
	if (renameat(ufd, tmp, ufd, name) < 0) {
		io_err(e, "cannot rename to", name);
		unlinkat(ufd, tmp, 0);
		return -1;
	}
	return 0;
}

/* Makes one entry of a replayed record whole again: whatever of its
 * names a crash lost or left damaged is made anew from the record. */
static int replay_entry(struct replay *x, const char *rel, const char *id, uint32_t k,
			struct qerr *e)
{
	struct fstore *fs = x->fs;
	int ufd;
	if (open_rel(fs, rel, true, &ufd, e) != 0)
		return -1;
	int r = 0;
	bool fixed = false;
	if (!content_matches(ufd, id, x)) {
		r = replay_content(x, e);
		if (r == 0)
			r = link_content_from(fs->tmpfd, x->content, x->gz, ufd, id, e);
		fixed = true;
	}
	if (r == 0 && !json_good(ufd, id)) {
		r = replay_rec_file(x, k, id, e);
		if (r == 0)
			r = replace_json(fs, ufd, id, x->recname[k], e);
		fixed = true;
	}
	close(ufd);
	if (r == 0 && fixed) {
		(void)make_id_link(fs, id, rel, NULL);
		x->entries++;
	}
	return r;
}

/* Takes n bytes off the front of a payload; false if it is shorter. */
static bool take(const unsigned char **p, const unsigned char *end, void *out, size_t n)
{
	if ((size_t)(end - *p) < n)
		return false;
	if (out != NULL)
		memcpy(out, *p, n);
	*p += n;
	return true;
}

/* wal_replay_fn: every entry of one log record; 1 if the record is
 * malformed or names what cannot be (see wal_replay_fn). */
static int replay_record(const struct wal_record *r, void *arg)
{
	struct replay *x = arg;
	const unsigned char *p = r->payload, *end = p + r->len;
	uint32_t head[3], nent;
	int bad = 0;
	struct qerr e;
	qerr_clear(&e);
	x->r = r;
	x->content[0] = '\0';
	if (!take(&p, end, head, sizeof head) || head[0] != PAYLOAD_MAGIC ||
	    head[2] > r->len / sizeof(uint32_t)) {
		log_msg(LOG_ERR, "file store: a log record is not one of this store's");
		return 1;
	}
	x->gz = head[1] & 1;
	x->nrec = head[2];
	x->recname = xcalloc(x->nrec ? x->nrec : 1, sizeof *x->recname);
	x->rectext = xcalloc(x->nrec ? x->nrec : 1, sizeof *x->rectext);
	x->reclen = xcalloc(x->nrec ? x->nrec : 1, sizeof *x->reclen);
	int rc = 0;
	for (size_t k = 0; rc == 0 && k < x->nrec; k++) {
		if (!take(&p, end, &x->reclen[k], sizeof x->reclen[k]))
			rc = 1;
		x->rectext[k] = (const char *)p;
		if (rc == 0 && !take(&p, end, NULL, x->reclen[k]))
			rc = 1;
	}
	if (rc == 0 && !take(&p, end, &nent, sizeof nent))
		rc = 1;
	for (uint32_t i = 0; rc == 0 && i < nent; i++) {
		uint16_t rl;
		uint32_t k;
		char rel[REL_MAX], id[ENTRY_ID_LEN + 1];
		if (!take(&p, end, &rl, sizeof rl) || rl >= sizeof rel ||
		    !take(&p, end, rel, rl) || !take(&p, end, id, ENTRY_ID_LEN) ||
		    !take(&p, end, &k, sizeof k) || k >= x->nrec) {
			rc = 1;
			break;
		}
		rel[rl] = '\0';
		id[ENTRY_ID_LEN] = '\0';
		if (!is_hex_id(id, ENTRY_ID_LEN)) {
			rc = 1;
			break;
		}
		/* an I/O failure may pass (kept for the next opener); a
		 * record that names a bad directory or entry never will */
		if (replay_entry(x, rel, id, k, &e) == 0)
			continue;
		if (e.cls == QERR_TEMP)
			rc = -1;
		else
			bad = 1; /* the record's other entries are still replayed */
		log_msg(LOG_ERR, "%s", e.msg);
	}
	if (rc == 0)
		rc = bad;
	if (x->content[0] != '\0')
		unlinkat(x->fs->tmpfd, x->content, 0);
	for (size_t k = 0; k < x->nrec; k++)
		if (x->recname[k][0] != '\0')
			unlinkat(x->fs->tmpfd, x->recname[k], 0);
	free(x->recname);
	free(x->rectext);
	free(x->reclen);
	if (rc > 0 && !bad)
		log_msg(LOG_ERR, "file store: a log record is malformed");
	return rc;
}

/* Replays the logs of processes that are gone (killed, or cut off by a
 * power failure): what they answered 200 for is made whole and durable
 * before anything else looks at the store.  Failure is logged, not
 * fatal: the logs stay for the next opener. */
static void recover(struct fstore *fs)
{
	if (fs->walfd < 0 && open_subdir(fs->rootfd, "wal", false, false, &fs->walfd, NULL) != 0)
		return; /* no log was ever written here */
	struct replay x = { .fs = fs };
	size_t n;
	struct qerr e;
	qerr_clear(&e);
	if (wal_recover(fs->rootfd, fs->walfd, replay_record, &x, &n, &e) < 0)
		log_msg(LOG_ERR, "%s", e.msg);
	else if (x.entries > 0)
		log_msg(LOG_INFO, "file store: replayed %zu log records, %zu entries made whole",
			n, x.entries);
}

static bool restore_json(struct fstore *fs, int ufd, const char *rel, const char *id, int64_t *at);

static int file_get(void *state, const char *id, struct qentry *out, struct qerr *e)
{
	struct fstore *fs = state;
	int ufd;
	memset(out, 0, sizeof *out);
	if (entry_dir(fs, id, &ufd, e) < 0)
		return -1;
	int r = load_entry(ufd, id, out, e);
	if (r == 1 && restore_json(fs, ufd, NULL, id, NULL))
		r = load_entry(ufd, id, out, e);
	close(ufd);
	if (r == 1)
		return qerr_notfound(e, "no entry '%s'", id);
	return r;
}

/* Passes a plain content file to cb in READ_CHUNK pieces (chunk). */
static int plain_read(int fd, const char *name, store_data_cb cb, void *arg, char *chunk,
		      struct qerr *e)
{
	for (;;) {
		ssize_t n = read(fd, chunk, READ_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return io_err(e, "cannot read", name);
		if (n == 0 || cb(chunk, (size_t)n, arg) != 0)
			return 0;
	}
}

/* Inflates a compressed content file to cb in READ_CHUNK pieces (chunk).
 * A file that is cut short, fails its CRC or has bytes after the gzip
 * member is damaged: never returned as if it were the message. */
static int gz_read(int fd, const char *name, store_data_cb cb, void *arg, char *chunk,
		   struct qerr *e)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return qerr_temp(e, "file store: cannot start decompression");
	unsigned char *in = xmalloc(READ_CHUNK);
	int r = 0;
	bool end = false, stop = false;
	while (r == 0 && !stop) {
		ssize_t n = read(fd, in, READ_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = io_err(e, "cannot read", name);
			break;
		}
		if (n == 0) {
			if (!end)
				r = qerr_perm(e, "file store: %s is cut short", name);
			break;
		}
		if (end) {
			r = qerr_perm(e, "file store: %s has data after its end", name);
			break;
		}
		z.next_in = in;
		z.avail_in = (uInt)n;
		while (r == 0 && !stop && (z.avail_in > 0 || z.avail_out == 0)) {
			z.next_out = (unsigned char *)chunk;
			z.avail_out = READ_CHUNK;
			int zr = inflate(&z, Z_NO_FLUSH);
			if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
				r = qerr_perm(e, "file store: %s is damaged (%s)", name,
					      z.msg ? z.msg : "inflate failed");
				break;
			}
			size_t have = READ_CHUNK - z.avail_out;
			if (have > 0 && cb(chunk, have, arg) != 0)
				stop = true;
			if (zr == Z_STREAM_END) {
				end = true;
				if (z.avail_in > 0)
					r = qerr_perm(e, "file store: %s has data after its end",
						      name);
				break;
			}
			if (zr == Z_BUF_ERROR && have == 0)
				break; /* needs more input */
		}
	}
	inflateEnd(&z);
	free(in);
	return r;
}

static int file_read_content(void *state, const char *id, store_data_cb cb, void *arg,
			     struct qerr *e)
{
	struct fstore *fs = state;
	char name[ENTRY_ID_LEN + 8];
	struct stat st;
	int ufd;
	if (entry_dir(fs, id, &ufd, e) < 0)
		return -1;
	snprintf(name, sizeof name, "%s.json", id);
	if (fstatat(ufd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		close(ufd);
		return qerr_notfound(e, "no entry '%s'", id);
	}
	bool gz = false;
	content_name(name, sizeof name, id, false);
	int fd = openat(ufd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		gz = true;
		content_name(name, sizeof name, id, true);
		fd = openat(ufd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	}
	close(ufd);
	if (fd < 0)
		return errno == ENOENT ? qerr_perm(e, "file store: content of entry %s is missing", id)
				       : io_err(e, "cannot open", name);
	char *chunk = xmalloc(READ_CHUNK);
	int r = gz ? gz_read(fd, name, cb, arg, chunk, e) : plain_read(fd, name, cb, arg, chunk, e);
	free(chunk);
	close(fd);
	return r;
}

/* Calls fn for every user directory (an open descriptor and its name). */
typedef int (*user_dir_fn)(int ufd, const char *rel, void *arg, struct qerr *e);

/* Opens dirfd again for reading its entries (a fresh file offset). */
static DIR *open_listing(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	DIR *d = fdopendir(fd);
	if (d == NULL)
		close(fd);
	return d;
}

static int walk_users(struct fstore *fs, user_dir_fn fn, void *arg, struct qerr *e)
{
	DIR *dd = open_listing(fs->usersfd);
	if (dd == NULL)
		return io_err(e, "cannot list", "users/");
	struct dirent *de;
	int r = 0;
	while (r == 0 && (de = readdir(dd)) != NULL) {
		if (!good_component(de->d_name))
			continue;
		int dfd = openat(fs->usersfd, de->d_name, DIR_FLAGS);
		if (dfd < 0)
			continue; /* not a directory of ours */
		DIR *ld = open_listing(dfd);
		if (ld == NULL) {
			r = io_err(e, "cannot list users/", de->d_name);
			close(dfd);
			break;
		}
		struct dirent *le;
		while (r == 0 && (le = readdir(ld)) != NULL) {
			if (!good_component(le->d_name))
				continue;
			int ufd = openat(dfd, le->d_name, DIR_FLAGS);
			if (ufd < 0)
				continue;
			char rel[2 * NAME_MAX + 4];
			snprintf(rel, sizeof rel, "%s/%s", de->d_name, le->d_name);
			r = fn(ufd, rel, arg, e);
			close(ufd);
		}
		closedir(ld);
		close(dfd);
	}
	closedir(dd);
	return r;
}

/* What scan_for_entry looks for, and where it found it. */
struct entry_search {
	const char *id;
	char *rel;
	size_t len;
};

static int has_entry_file(int ufd, const char *rel, void *arg, struct qerr *e)
{
	(void)e;
	struct entry_search *es = arg;
	char name[ENTRY_ID_LEN + 8];
	struct stat st;
	snprintf(name, sizeof name, "%s.json", es->id);
	if (fstatat(ufd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || strlen(rel) >= es->len)
		return 0;
	strcpy(es->rel, rel);
	return 1;
}

/* Looks through every user directory for entry id's metadata: 1 with its
 * directory in rel, 0 if there is none, -1.  One stat per user directory:
 * only a lookup whose ids link is missing pays it. */
static int scan_for_entry(struct fstore *fs, const char *id, char *rel, size_t len,
			  struct qerr *e)
{
	struct entry_search es = { id, rel, len };
	return walk_users(fs, has_entry_file, &es, e);
}

/* Calls fn with every entry in one user directory; damaged metadata is
 * logged and skipped, so one bad file does not hide the rest. */
static int each_entry(int ufd, const char *rel, int (*fn)(struct qentry *q, int ufd, void *arg),
		      void *arg, struct qerr *e)
{
	DIR *d = open_listing(ufd);
	if (d == NULL)
		return io_err(e, "cannot list users/", rel);
	struct dirent *de;
	int r = 0;
	while (r == 0 && (de = readdir(d)) != NULL) {
		if (!is_entry_file(de->d_name, ".json"))
			continue;
		char id[ENTRY_ID_LEN + 1];
		memcpy(id, de->d_name, ENTRY_ID_LEN);
		id[ENTRY_ID_LEN] = '\0';
		struct qentry q;
		struct qerr le;
		qerr_clear(&le);
		int lr = load_entry(ufd, id, &q, &le);
		if (lr == 1)
			continue; /* removed meanwhile */
		if (lr < 0) {
			if (le.cls == QERR_TEMP) {
				*e = le;
				r = -1;
				break;
			}
			log_msg(LOG_WARNING, "%s (users/%s)", le.msg, rel);
			continue;
		}
		r = fn(&q, ufd, arg);
		qentry_free(&q);
	}
	closedir(d);
	return r;
}

/* An entry as its directory shows it, before its metadata is read: the
 * .json file's mtime is its received_at (see the top of the file). */
struct cand {
	char id[ENTRY_ID_LEN + 1];
	int64_t at;
	size_t dir; /* which directory, for a list over every user */
};

struct cand_vec {
	struct cand *v;
	size_t n, cap;
};

/* Names expire's sweep looks at (content and temporary files), noted in
 * the same pass over the directory as the entries. */
struct name_vec {
	char (*v)[64];
	size_t n, cap;
};

/* Adds every entry of one user directory with its time, by a stat of its
 * .json alone; with names, also notes the other files sweep_dir needs. */
/* A new candidate at the end of cv. */
static struct cand *cand_new(struct cand_vec *cv)
{
	if (cv->n == cv->cap) {
		cv->cap = cv->cap ? cv->cap * 2 : 64;
		cv->v = xrealloc(cv->v, cv->cap * sizeof *cv->v);
	}
	return &cv->v[cv->n++];
}

static int gather_cands(int ufd, const char *rel, size_t dir, struct cand_vec *cv,
			struct name_vec *names, struct qerr *e)
{
	DIR *d = open_listing(ufd);
	if (d == NULL)
		return io_err(e, "cannot list users/", rel);
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)) != NULL) {
		if (!is_entry_file(de->d_name, ".json")) {
			size_t len = strlen(de->d_name);
			if (names == NULL || len >= sizeof names->v[0] ||
			    (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0 &&
			     !is_entry_file(de->d_name, ".eml") &&
			     !is_entry_file(de->d_name, ".eml.gz")))
				continue;
			if (names->n == names->cap) {
				names->cap = names->cap ? names->cap * 2 : 64;
				names->v = xrealloc(names->v, names->cap * sizeof names->v[0]);
			}
			memcpy(names->v[names->n++], de->d_name, len + 1);
			continue;
		}
		struct stat st;
		if (fstatat(ufd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue; /* removed meanwhile */
			r = io_err(e, "cannot look at", de->d_name);
			break;
		}
		struct cand *c = cand_new(cv);
		memcpy(c->id, de->d_name, ENTRY_ID_LEN);
		c->id[ENTRY_ID_LEN] = '\0';
		c->at = (int64_t)st.st_mtime;
		c->dir = dir;
	}
	closedir(d);
	return r;
}

/* By id, to look entries up. */
static int cand_by_id(const void *a, const void *b)
{
	return strcmp(((const struct cand *)a)->id, ((const struct cand *)b)->id);
}

/* Whether name is content whose id has no candidate among v[0..n)
 * (sorted by id); its id in key. */
static bool lone_content(const char *name, const struct cand *v, size_t n, struct cand *key)
{
	if (!is_entry_file(name, ".eml") && !is_entry_file(name, ".eml.gz"))
		return false;
	memcpy(key->id, name, ENTRY_ID_LEN);
	key->id[ENTRY_ID_LEN] = '\0';
	return n == 0 || bsearch(key, v, n, sizeof *v, cand_by_id) == NULL;
}

/*
 * Names a file system lost.  On ext4 without a journal a power cut in the
 * middle of a directory's reorganisation (a block of names split in two,
 * written one half at a time) can leave names of entries committed long
 * before in neither block, and e2fsck then drops them: an entry that was
 * durable loses its .json.  Its message record is still linked from
 * ids/, so the name can be made again.  Only for content that has no
 * .json, whose ids entry is a record naming this directory, and which no
 * commit is still working on (a commit keeps its record's tmp/ name until
 * every name is made).
 */

/* Whether a name in tmp/ links the inode of st: a commit in progress. */
static bool held_in_tmp(struct fstore *fs, const struct stat *st)
{
	DIR *d = open_listing(fs->tmpfd);
	if (d == NULL)
		return true; /* cannot tell: leave it */
	bool held = false;
	struct dirent *de;
	while (!held && (de = readdir(d)) != NULL) {
		struct stat ts;
		if (de->d_name[0] != '.' &&
		    fstatat(fs->tmpfd, de->d_name, &ts, AT_SYMLINK_NOFOLLOW) == 0)
			held = ts.st_ino == st->st_ino && ts.st_dev == st->st_dev;
	}
	closedir(d);
	return held;
}

/* Whether ufd is users/<rel>. */
static bool same_dir(struct fstore *fs, int ufd, const char *rel)
{
	struct stat a, b;
	return fstat(ufd, &a) == 0 && fstatat(fs->usersfd, rel, &b, 0) == 0 &&
	       a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

/* Makes users/<rel>/<id>.json again from the record ids/ links, if that
 * record names this directory for id and the content is here (rel NULL:
 * whichever directory ufd is).  Returns true, with the entry's time in
 * *at if at is not NULL, if it did. */
static bool restore_json(struct fstore *fs, int ufd, const char *rel, const char *id, int64_t *at)
{
	char xx[3] = { id[0], id[1], '\0' };
	char want[REL_MAX], name[ENTRY_ID_LEN + 8];
	struct stat st;
	int dfd;
	if (!has_content(ufd, id) || open_subdir(fs->idsfd, xx, false, false, &dfd, NULL) != 0)
		return false;
	bool ok = false;
	struct buf b = { 0 };
	struct qentry q;
	if (fstatat(dfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	    read_small(dfd, id, &b, NULL) == 0 &&
	    qentry_from_json_for(b.data ? b.data : "", b.len, id, &q) == 0) {
		ok = strcmp(q.id, id) == 0 && q.rcpt != NULL &&
		     rcpt_rel(q.rcpt, want, sizeof want, NULL) == 0 &&
		     (rel != NULL ? strcmp(want, rel) == 0 : same_dir(fs, ufd, want));
		qentry_free(&q);
	}
	buf_free(&b);
	snprintf(name, sizeof name, "%s.json", id);
	if (ok && !held_in_tmp(fs, &st) && linkat(dfd, id, ufd, name, 0) == 0) {
		if (fsync(ufd) < 0)
			log_msg(LOG_ERR, "file store: cannot sync users/%s: %s", want, strerror(errno));
		log_msg(LOG_WARNING, "file store: users/%s/%s had lost its name (a file system "
				     "repair after a crash?); made again from ids/%s/%s",
			want, name, xx, id);
		if (at != NULL)
			*at = (int64_t)st.st_mtime;
	} else {
		ok = false;
	}
	close(dfd);
	return ok;
}

/* For a list: the entries of one directory are cv->v[from..] and its
 * content names are in names; content without an entry is restored
 * where restore_json can, and joins cv.  A directory with as many
 * entries as content names is not searched: list is the users' pages'
 * path, and expire's sweep looks at every name anyway. */
static void restore_dir(struct fstore *fs, int ufd, const char *rel, size_t dir,
			struct cand_vec *cv, size_t from, const struct name_vec *names)
{
	size_t n = cv->n - from, contents = 0;
	for (size_t i = 0; i < names->n; i++)
		contents += is_entry_file(names->v[i], ".eml") ||
			    is_entry_file(names->v[i], ".eml.gz");
	if (contents <= n)
		return;
	if (n > 1)
		qsort(cv->v + from, n, sizeof *cv->v, cand_by_id);
	for (size_t i = 0; i < names->n; i++) {
		struct cand key;
		int64_t at;
		/* no entries: cv->v may be NULL, and NULL + 0 is undefined */
		if (lone_content(names->v[i], n > 0 ? cv->v + from : NULL, n, &key) &&
		    restore_json(fs, ufd, rel, key.id, &at)) {
			key.at = at;
			key.dir = dir;
			*cand_new(cv) = key;
		}
	}
}

/* Newest first; equal times by id, as list orders entries. */
static int cand_newest_first(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->at != y->at)
		return x->at > y->at ? -1 : 1;
	return strcmp(x->id, y->id);
}

/* Entries gathered for sorting. */
struct entry_vec {
	struct qentry *v;
	size_t n, cap;
	const struct store_filter *f;
};

static void vec_push(struct entry_vec *ev, struct qentry *q)
{
	if (ev->n == ev->cap) {
		ev->cap = ev->cap ? ev->cap * 2 : 64;
		ev->v = xrealloc(ev->v, ev->cap * sizeof *ev->v);
	}
	ev->v[ev->n++] = *q;
	memset(q, 0, sizeof *q); /* ownership moved */
}

static void vec_free(struct entry_vec *ev)
{
	for (size_t i = 0; i < ev->n; i++)
		qentry_free(&ev->v[i]);
	free(ev->v);
	ev->v = NULL;
	ev->n = ev->cap = 0;
}

/* Newest first; equal times by id, so the order is stable. */
static int newest_first(const void *a, const void *b)
{
	const struct qentry *x = a, *y = b;
	if (x->meta.received_at != y->meta.received_at)
		return x->meta.received_at > y->meta.received_at ? -1 : 1;
	return strcmp(x->id, y->id);
}

static bool matches(const struct store_filter *f, const struct qentry *q)
{
	if (f == NULL)
		return q->status != ENTRY_DELETED;
	if (f->status < 0 ? q->status == ENTRY_DELETED : (int)q->status != f->status)
		return false;
	if (f->rcpt && (q->rcpt == NULL || strcasecmp(q->rcpt, f->rcpt) != 0))
		return false;
	if (f->from && (q->meta.env_from == NULL || strcasecmp(q->meta.env_from, f->from) != 0))
		return false;
	if (f->qid && (q->meta.qid == NULL || strcmp(q->meta.qid, f->qid) != 0))
		return false;
	if (f->symbol && !qmeta_has_symbol(&q->meta, f->symbol))
		return false;
	if (f->since && q->meta.received_at < f->since)
		return false;
	if (f->until && q->meta.received_at >= f->until)
		return false;
	return true;
}

/* What list gathers over every user directory: the entries and the
 * directories' names, to open them again for the entries it reads. */
struct list_gather {
	struct cand_vec cv;
	char **dirs;
	size_t ndirs, capdirs;
	struct fstore *fs;
	struct name_vec names; /* the directory being gathered's other names */
};

static int gather_dir(int ufd, const char *rel, void *arg, struct qerr *e)
{
	struct list_gather *g = arg;
	if (g->ndirs == g->capdirs) {
		g->capdirs = g->capdirs ? g->capdirs * 2 : 64;
		g->dirs = xrealloc(g->dirs, g->capdirs * sizeof *g->dirs);
	}
	g->dirs[g->ndirs] = xstrdup(rel);
	size_t from = g->cv.n;
	g->names.n = 0;
	if (gather_cands(ufd, rel, g->ndirs, &g->cv, &g->names, e) < 0)
		return -1;
	restore_dir(g->fs, ufd, rel, g->ndirs++, &g->cv, from, &g->names);
	return 0;
}

/*
 * Lists by the .json mtimes: every entry's time comes from a stat, the
 * candidates are sorted newest first, and metadata is read in that order
 * only until limit entries match (the other filters need it).  The time
 * bounds are applied to the mtime before reading, and again to the
 * metadata's received_at.
 */
static int file_list(void *state, const struct store_filter *f, store_entry_cb cb, void *arg,
		     struct qerr *e)
{
	struct fstore *fs = state;
	struct entry_vec ev = { .f = f };
	struct list_gather g = { .fs = fs };
	int r, ufd = -1;
	size_t open_dir = 0;
	if (f && f->rcpt) {
		char rel[REL_MAX];
		if (rcpt_rel(f->rcpt, rel, sizeof rel, e) < 0)
			return -1;
		r = open_rel(fs, rel, false, &ufd, e);
		if (r == 1)
			return 0;
		if (r < 0)
			return -1;
		r = gather_cands(ufd, rel, 0, &g.cv, &g.names, e);
		if (r == 0)
			restore_dir(fs, ufd, rel, 0, &g.cv, 0, &g.names);
		g.dirs = xmalloc(sizeof *g.dirs);
		g.dirs[g.ndirs++] = xstrdup(rel);
	} else {
		r = walk_users(fs, gather_dir, &g, e);
	}
	if (r == 0 && g.cv.n > 1)
		qsort(g.cv.v, g.cv.n, sizeof *g.cv.v, cand_newest_first);
	size_t limit = f && f->limit ? f->limit : SIZE_MAX;
	size_t passed = 0; /* entries handed on unbuffered (any_order) */
	for (size_t i = 0; r == 0 && i < g.cv.n && ev.n + passed < limit; i++) {
		const struct cand *c = &g.cv.v[i];
		if (f && f->until && c->at >= f->until)
			continue;
		if (f && f->since && c->at < f->since)
			break; /* the rest is older still */
		if (ufd < 0 || c->dir != open_dir) {
			if (ufd >= 0)
				close(ufd);
			ufd = -1;
			int o = open_rel(fs, g.dirs[c->dir], false, &ufd, e);
			if (o == 1)
				continue; /* gone meanwhile */
			if (o < 0) {
				r = -1;
				break;
			}
			open_dir = c->dir;
		}
		struct qentry q;
		struct qerr le;
		qerr_clear(&le);
		int lr = load_entry(ufd, c->id, &q, &le);
		if (lr == 1)
			continue; /* removed meanwhile */
		if (lr < 0) {
			if (le.cls == QERR_TEMP) {
				*e = le;
				r = -1;
				break;
			}
			log_msg(LOG_WARNING, "%s (users/%s)", le.msg, g.dirs[c->dir]);
			continue;
		}
		if (!matches(f, &q)) {
			qentry_free(&q);
		} else if (f && f->any_order) {
			/* in mtime order, unbuffered: the caller sorts */
			int stop = cb(&q, arg);
			qentry_free(&q);
			passed++;
			if (stop != 0)
				break;
		} else {
			vec_push(&ev, &q);
			qentry_free(&q);
		}
	}
	if (ufd >= 0)
		close(ufd);
	if (r == 0) {
		if (ev.n > 1)
			qsort(ev.v, ev.n, sizeof *ev.v, newest_first);
		for (size_t i = 0; i < ev.n && i < limit; i++)
			if (cb(&ev.v[i], arg) != 0)
				break;
	}
	vec_free(&ev);
	for (size_t i = 0; i < g.ndirs; i++)
		free(g.dirs[i]);
	free(g.dirs);
	free(g.cv.v);
	free(g.names.v);
	return r;
}

/* Unlinks an entry's files: metadata first (then the entry is gone),
 * content, and the id link.  freed and bytes count content whose last
 * link this was.  With ids_dirty NULL both directories are fsynced here;
 * else the caller fsyncs ufd, and the ids directory is marked in
 * ids_dirty (one bit per first byte of an id) for it to fsync once. */
static int remove_files(struct fstore *fs, int ufd, const char *id, bool *freed,
			uint64_t *bytes, uint8_t *ids_dirty, struct qerr *e)
{
	char name[ENTRY_ID_LEN + 8];
	struct stat st;
	*freed = false;
	*bytes = 0;
	snprintf(name, sizeof name, "%s.json", id);
	if (unlinkat(ufd, name, 0) < 0) {
		if (errno == ENOENT)
			return qerr_notfound(e, "no entry '%s'", id);
		return io_err(e, "cannot remove", name);
	}
	if (find_content(ufd, id, name, sizeof name, &st) == 0) {
		if (unlinkat(ufd, name, 0) == 0 && st.st_nlink == 1) {
			*freed = true;
			*bytes = (uint64_t)st.st_size;
		}
	}
	if (ids_dirty == NULL && fsync(ufd) < 0)
		return io_err(e, "cannot sync directory of", id);
	char xx[3] = { id[0], id[1], '\0' };
	int xfd;
	if (open_subdir(fs->idsfd, xx, false, false, &xfd, NULL) == 0) {
		unlinkat(xfd, id, 0);
		if (ids_dirty == NULL) {
			(void)fsync(xfd);
		} else {
			unsigned b = (unsigned)strtoul(xx, NULL, 16);
			ids_dirty[b / 8] |= (uint8_t)(1u << (b % 8));
		}
		close(xfd);
	}
	return 0;
}

static int file_remove(void *state, const char *id, struct qerr *e)
{
	struct fstore *fs = state;
	int ufd;
	bool freed;
	uint64_t bytes;
	if (entry_dir(fs, id, &ufd, e) < 0)
		return -1;
	int r = remove_files(fs, ufd, id, &freed, &bytes, NULL, e);
	close(ufd);
	return r;
}

static int file_set_status(void *state, const char *id, enum entry_status s, int64_t now,
			   struct qerr *e)
{
	struct fstore *fs = state;
	struct qentry q;
	char name[ENTRY_ID_LEN + 8];
	int ufd;
	if (entry_dir(fs, id, &ufd, e) < 0)
		return -1;
	int r = load_entry(ufd, id, &q, e);
	if (r == 1) {
		close(ufd);
		return qerr_notfound(e, "no entry '%s'", id);
	}
	if (r < 0) {
		close(ufd);
		return -1;
	}
	q.status = s;
	q.status_changed = now;
	char *json = qentry_to_json(&q, true);
	int64_t received = q.meta.received_at;
	qentry_free(&q);
	snprintf(name, sizeof name, "%s.json", id);
	r = replace_file(fs, ufd, name, json, received, e);
	free(json);
	if (r == 0 && fsync(ufd) < 0)
		r = io_err(e, "cannot sync directory of", id);
	close(ufd);
	return r;
}

/* Content that dry-run expire would unlink, to count what would be freed. */
struct exp_content {
	dev_t dev;
	ino_t ino;
	nlink_t nlink;
	uint64_t size;
};

struct exp_ctx {
	struct fstore *fs;
	const struct expire_opts *o;
	struct expire_result *r;
	struct cand_vec cv;
	struct name_vec names;
	struct exp_content *dry;
	size_t ndry, capdry;
	int64_t now;
	uint8_t ids_dirty[32]; /* ids/<xx> directories to fsync at the end */
};

/* The size of an entry's message as the byte limit counts it, the
 * original bytes: the content file's size when it is stored plain, else
 * what the metadata records. */
static uint64_t entry_size(int ufd, const char *id)
{
	char name[ENTRY_ID_LEN + 8];
	struct stat st;
	if (find_content(ufd, id, name, sizeof name, &st) == 0 && is_entry_file(name, ".eml"))
		return (uint64_t)st.st_size;
	struct qentry q;
	if (load_entry(ufd, id, &q, NULL) != 0)
		return 0;
	uint64_t n = q.meta.size;
	qentry_free(&q);
	return n;
}

/* Removes temporary files of dead processes and .eml files that never
 * got their metadata (a crash mid-commit), once they are old enough;
 * content whose .json the file system lost gets it back instead.
 * names and cv (sorted by id) are what gather_cands saw in the directory:
 * only content without a .json there is looked at again. */
static void sweep_dir(struct fstore *fs, int ufd, const char *rel, int64_t now,
		      const struct name_vec *names, const struct cand_vec *cv)
{
	for (size_t i = 0; i < names->n; i++) {
		const char *name = names->v[i];
		struct stat st;
		if (owner_dead(name, TMP_PREFIX)) {
			unlinkat(ufd, name, 0);
			continue;
		}
		struct cand key;
		if (!lone_content(name, cv->v, cv->n, &key))
			continue; /* not content, or it has (or had, until expired now) its metadata */
		char json[ENTRY_ID_LEN + 8];
		snprintf(json, sizeof json, "%.*s.json", ENTRY_ID_LEN, name);
		if (fstatat(ufd, json, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
			continue;
		if (restore_json(fs, ufd, rel, key.id, NULL))
			continue; /* a committed entry whose name was lost */
		if (fstatat(ufd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    now - (int64_t)st.st_ctime > ORPHAN_AGE) {
			unlinkat(ufd, name, 0);
			log_msg(LOG_INFO, "file store: removed orphaned users/%s/%s", rel, name);
		}
	}
}

/* Expires within one user directory. */
static int expire_dir(int ufd, const char *rel, void *arg, struct qerr *e)
{
	struct exp_ctx *x = arg;
	const struct expire_opts *o = x->o;
	x->cv.n = 0;
	x->names.n = 0;
	if (gather_cands(ufd, rel, 0, &x->cv, &x->names, e) < 0)
		return -1;
	if (x->cv.n > 1)
		qsort(x->cv.v, x->cv.n, sizeof *x->cv.v, cand_newest_first);
	uint64_t kept_bytes = 0;
	long kept = 0;
	bool full = false; /* once a limit is reached, everything older goes */
	bool removed = false;
	for (size_t i = 0; i < x->cv.n; i++) {
		struct cand *it = &x->cv.v[i];
		bool drop = o->cutoff && it->at < o->cutoff;
		uint64_t size = 0;
		if (!drop && !full && o->max_bytes_per_rcpt)
			size = entry_size(ufd, it->id);
		if (!drop) {
			if (full || (o->max_per_rcpt && kept >= o->max_per_rcpt) ||
			    (o->max_bytes_per_rcpt && kept_bytes + size > o->max_bytes_per_rcpt))
				full = drop = true;
		}
		if (!drop) {
			kept++;
			kept_bytes += size;
			continue;
		}
		x->r->entries++;
		if (o->dry_run) {
			char name[ENTRY_ID_LEN + 8];
			struct stat st;
			if (find_content(ufd, it->id, name, sizeof name, &st) == 0) {
				if (x->ndry == x->capdry) {
					x->capdry = x->capdry ? x->capdry * 2 : 64;
					x->dry = xrealloc(x->dry, x->capdry * sizeof *x->dry);
				}
				x->dry[x->ndry++] = (struct exp_content){
					st.st_dev, st.st_ino, st.st_nlink, (uint64_t)st.st_size };
			}
			continue;
		}
		bool freed;
		uint64_t bytes;
		struct qerr re;
		qerr_clear(&re);
		if (remove_files(x->fs, ufd, it->id, &freed, &bytes, x->ids_dirty, &re) < 0) {
			if (re.cls == QERR_NOTFOUND) {
				x->r->entries--; /* removed meanwhile */
				continue;
			}
			*e = re;
			return -1;
		}
		removed = true;
		if (freed) {
			x->r->messages++;
			x->r->bytes += bytes;
		}
	}
	/* One fsync for all of this directory's removals. */
	if (removed && fsync(ufd) < 0)
		return io_err(e, "cannot sync directory users/", rel);
	if (!o->dry_run) {
		if (x->cv.n > 1)
			qsort(x->cv.v, x->cv.n, sizeof *x->cv.v, cand_by_id);
		sweep_dir(x->fs, ufd, rel, x->now, &x->names, &x->cv);
	}
	return 0;
}

/* fsyncs the ids directories expire removed links from, once each. */
static int sync_ids_dirs(struct fstore *fs, const uint8_t *dirty, struct qerr *e)
{
	for (unsigned b = 0; b < 256; b++) {
		if (!(dirty[b / 8] & (1u << (b % 8))))
			continue;
		char xx[3];
		snprintf(xx, sizeof xx, "%02x", b);
		int xfd;
		if (open_subdir(fs->idsfd, xx, false, false, &xfd, NULL) != 0)
			continue;
		int r = fsync(xfd) < 0 ? io_err(e, "cannot sync ids directory", xx) : 0;
		close(xfd);
		if (r < 0)
			return -1;
	}
	return 0;
}

static int by_inode(const void *a, const void *b)
{
	const struct exp_content *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return 0;
}

/* Contents whose every link would go: what a dry run would free. */
static void count_dry(struct exp_ctx *x)
{
	if (x->ndry > 1)
		qsort(x->dry, x->ndry, sizeof *x->dry, by_inode);
	for (size_t i = 0; i < x->ndry;) {
		size_t j = i;
		while (j < x->ndry && by_inode(&x->dry[i], &x->dry[j]) == 0)
			j++;
		if ((nlink_t)(j - i) >= x->dry[i].nlink) {
			x->r->messages++;
			x->r->bytes += x->dry[i].size;
		}
		i = j;
	}
}

static int file_expire(void *state, const struct expire_opts *o, struct expire_result *r,
		       struct qerr *e)
{
	struct exp_ctx x = { .fs = state, .o = o, .r = r, .now = clock_now() };
	memset(r, 0, sizeof *r);
	int rc = walk_users(x.fs, expire_dir, &x, e);
	if (rc == 0 && o->dry_run)
		count_dry(&x);
	if (rc == 0)
		rc = sync_ids_dirs(x.fs, x.ids_dirty, e);
	free(x.cv.v);
	free(x.names.v);
	free(x.dry);
	return rc;
}

struct stats_ctx {
	struct store_stats *s;
	struct exp_content *c;
	size_t n, cap;
};

static int stats_entry(struct qentry *q, int ufd, void *arg)
{
	struct stats_ctx *x = arg;
	char name[ENTRY_ID_LEN + 8];
	struct stat st;
	x->s->entries++;
	if ((unsigned)q->status < ENTRY_STATUS_COUNT)
		x->s->by_status[q->status]++;
	if (find_content(ufd, q->id, name, sizeof name, &st) == 0) {
		if (x->n == x->cap) {
			x->cap = x->cap ? x->cap * 2 : 64;
			x->c = xrealloc(x->c, x->cap * sizeof *x->c);
		}
		x->c[x->n++] = (struct exp_content){ st.st_dev, st.st_ino, st.st_nlink,
						     (uint64_t)st.st_size };
	}
	return 0;
}

static int stats_dir(int ufd, const char *rel, void *arg, struct qerr *e)
{
	return each_entry(ufd, rel, stats_entry, arg, e);
}

static int file_stats(void *state, struct store_stats *s, struct qerr *e)
{
	struct stats_ctx x = { .s = s };
	memset(s, 0, sizeof *s);
	int r = walk_users(state, stats_dir, &x, e);
	if (r == 0) {
		if (x.n > 1)
			qsort(x.c, x.n, sizeof *x.c, by_inode);
		for (size_t i = 0; i < x.n; i++) {
			if (i > 0 && by_inode(&x.c[i - 1], &x.c[i]) == 0)
				continue;
			s->messages++;
			s->bytes += x.c[i].size;
		}
	}
	free(x.c);
	return r;
}

/* /health: the store takes writes if a file can be made in tmp/ (an
 * unnamed O_TMPFILE, gone at close: no name, no fsync, no litter), the
 * directories the commit links into are writable, and the file system
 * has blocks and inodes left.  A few system calls, no directory walk. */
static int file_health(void *state, struct qerr *e)
{
	struct fstore *fs = state;
	int fd = openat(fs->tmpfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* A file system without O_TMPFILE: a named file, removed at once
		 * (a leading dot: clean_tmp leaves it to us). */
		char name[40];
		snprintf(name, sizeof name, ".health.%ld", fs->pid);
		fd = openat(fs->tmpfd, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0)
			(void)unlinkat(fs->tmpfd, name, 0);
	}
	if (fd < 0)
		return qerr_temp(e, "file store: cannot create a file in %.200s/tmp: %s", fs->root,
				 strerror(errno));
	struct statvfs vfs;
	int r = fstatvfs(fd, &vfs);
	int err = errno;
	close(fd);
	if (r < 0)
		return qerr_temp(e, "file store: statvfs %.200s: %s", fs->root, strerror(err));
	if (vfs.f_flag & ST_RDONLY)
		return qerr_temp(e, "file store: %.200s is on a read-only file system", fs->root);
	if (vfs.f_bavail == 0)
		return qerr_temp(e, "file store: no space left on the file system of %.200s",
				 fs->root);
	if (vfs.f_files != 0 && vfs.f_favail == 0)
		return qerr_temp(e, "file store: no inodes left on the file system of %.200s",
				 fs->root);
	static const char *const dirs[] = { "users", "ids" };
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
		if (faccessat(fs->rootfd, dirs[i], W_OK | X_OK, AT_EACCESS) < 0)
			return qerr_temp(e, "file store: %.200s/%s is not writable: %s", fs->root,
					 dirs[i], strerror(errno));
	return 0;
}

const struct store_backend store_backend_file = {
	.name = "file",
	.open = file_open,
	.close = file_close,
	.put_begin = file_put_begin,
	.put_write = file_put_write,
	.put_commit = file_put_commit,
	.put_abort = file_put_abort,
	.defer = file_defer,
	.settle = file_settle,
	.get = file_get,
	.read_content = file_read_content,
	.list = file_list,
	.remove = file_remove,
	.set_status = file_set_status,
	.expire = file_expire,
	.stats = file_stats,
	.health = file_health,
	.get_announced = file_get_announced,
	.set_announced = file_set_announced,
};
