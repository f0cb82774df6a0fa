/*
 * store_file.c - the file store, the default backend: one directory per
 * recipient under file_root, needing no server.
 *
 * Layout:
 *
 *   <root>/tmp/                      uploads in progress:
 *                                    "<pid>.<counter>.<random hex>", and
 *                                    their metadata: "<pid>.<counter>.json"
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
 *       <id>.json                    the entry's metadata (the JSON form of
 *                                    record.h); written last, it is the
 *                                    commit marker
 *   <root>/wal/                      the write-ahead log: two files per
 *                                    process that stores (store_file_wal.c)
 *   <root>/ids/<id[0..1]>/<id>       symlink to "../../users/<domain>/<local>",
 *                                    to find an entry by its id: an index
 *                                    of users/, not synced with each
 *                                    commit; a lookup that finds no link
 *                                    (after a crash) searches users/ and
 *                                    makes the link again
 *
 * An entry exists if and only if its .json and its content exist.  The .json file's
 * modification time is the entry's received_at (set with futimens when it
 * is written, and again whenever a status change
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
 * Writing goes through a write-ahead log (store_file_wal.c), so that a
 * message costs one synchronous flush whatever its number of recipients.
 * The message streams into a file in tmp/.  Commit then:
 *
 *  1. looks at each recipient's directory (made if missing, not synced):
 *     an entry that exists already is left out, since an entry that can
 *     be seen is durable in this store (below);
 *  2. appends one record to this process's log: every new entry's
 *     directory, id and metadata, and the content, copied in by the
 *     kernel; one fdatasync makes it durable.  A put whose entries all
 *     exist (a retry) writes nothing;
 *  3. names each entry without syncing anything: the content linked in
 *     as <id>.eml, the metadata written to an unnamed file in the user
 *     directory (O_TMPFILE; where that is missing, to tmp/) and linked
 *     in as <id>.json (link, not rename: an entry committed meanwhile by
 *     another worker is never overwritten), the ids link.
 *
 * The answer follows step 3.  Until a checkpoint the record stands for
 * the names: the log's thread makes the whole file system durable
 * (syncfs) off the request path, about once a second, and only then
 * retires the records.  After a crash or a power cut, opening the store
 * (the daemon's workers, every CLI command) replays the logs of
 * processes that are gone: each entry of each whole record whose
 * metadata does not read back, or whose content is missing or differs
 * from the record's (size and crc32), is made anew from the record; then
 * everything is synced and the log removed.  Names are therefore only
 * ever seen once their record is durable, and a replayed entry is synced
 * before its record goes: what can be seen is durable.  A torn record at
 * a log's end was never answered 200, and is not replayed.  One thing a
 * replay cannot know: an entry deleted within the second or so between
 * its arrival and the checkpoint comes back if the daemon's worker dies
 * (or the power fails) before that checkpoint.  Nothing is lost that way;
 * a deleted entry may return.
 *
 * If a step fails before the record is durable nothing is left; if naming
 * fails after it, the names made are removed and the record voided, and
 * the put fails as a whole.  Directories the commit creates (a new
 * recipient, an ids bucket) are not synced either: the record names
 * them, and a replay creates them again.
 *
 * Leftovers of a crash the log does not cover (a store written by an
 * older version, or a failed put) are harmless: an .eml without .json is
 * not an entry, nor a .json without content (expire removes it when its
 * day comes), and a dangling ids symlink finds no .json.  Opening the store removes
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
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "addr_path.h"
#include "config.h"
#include "log.h"
#include "store_file_digest.h"
#include "store_file_wal.h"

#define READ_CHUNK 65536
#define JSON_MAX (64u << 20)     /* a metadata file larger than this is corrupt */
#define ORPHAN_AGE 3600          /* seconds before an .eml without .json is swept */
#define TMP_PREFIX ".tmp."
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define REL_MAX (2 * ADDR_PATH_COMPONENT_MAX + 2)
#define GZ_LEVEL 1               /* most of the saving on mail, at the least CPU */
#define GZ_OUT 65536             /* deflate output collected before a write */
#define PAYLOAD_MAGIC 0x31455152u /* "RQE1": a log record of this store */
#define KEEP_DIRS 128            /* user directories a commit keeps open */

struct fstore {
	char *root;
	int rootfd, tmpfd, usersfd, idsfd;
	int walfd;          /* wal/, once there is one */
	int xfd[256];       /* ids/<xx>/ kept open by commits, -1 until used */
	struct wal *wal;    /* this process's log, from its first commit */
	unsigned long counter;
	bool gzip;  /* compress = gzip: new content is stored deflated */
};

struct fput {
	struct fstore *fs;
	int fd;
	char name[80];
	uint64_t len;         /* bytes written to fd */
	uint32_t crc;         /* their crc32, for the log record */
	z_stream *z;          /* deflating into fd, or NULL */
	unsigned char *zout;  /* GZ_OUT bytes of deflate output */
};

/* An I/O failure: temporary, since a retry may find space or a disk. */
static int io_err(struct qerr *e, const char *what, const char *name)
{
	return qerr_temp(e, "file store: %s %.200s: %s", what, name, strerror(errno));
}

/* A fresh name for a temporary file in users/ or ids/. */
static void tmp_name(struct fstore *fs, char *out, size_t len)
{
	snprintf(out, len, TMP_PREFIX "%ld.%lu", (long)getpid(), ++fs->counter);
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

/* How open_subdir and open_rel treat a directory that does not exist:
 * fail softly (1), create it and sync its parent, or create it and leave
 * its durability to the write-ahead log's checkpoint (a commit: the
 * record names the directory, and replay makes it again). */
enum mkdir_mode { OPEN_ONLY, CREATE_SYNC, CREATE_LATER };

/*
 * Opens (creating if asked) the subdirectory name of dirfd, never through
 * a symlink.  Returns 0, 1 if it does not exist (and create is
 * OPEN_ONLY), or -1.
 */
static int open_subdir(int dirfd, const char *name, enum mkdir_mode create, int *out,
		       struct qerr *e)
{
	*out = -1;
	int fd = openat(dirfd, name, DIR_FLAGS);
	if (fd < 0 && errno == ENOENT && create != OPEN_ONLY) {
		if (mkdirat(dirfd, name, 0700) == 0) {
			if (create == CREATE_SYNC && fsync(dirfd) < 0)
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

/* Opens users/<rel>; rel is "domain/local".  Returns 0, 1 (absent), -1. */
static int open_rel(struct fstore *fs, const char *relpath, enum mkdir_mode create, int *out,
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
	int dfd, r = open_subdir(fs->usersfd, domain, create, &dfd, e);
	if (r == 0) {
		r = open_subdir(dfd, local, create, out, e);
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
static void recover(struct fstore *fs);

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
	r = open_rel(fs, rel, OPEN_ONLY, ufd, e);
	return r == 0 ? 0 : r < 0 ? -1 : qerr_notfound(e, "no entry '%s'", id);
}

/* Finds the directory of entry id through its ids symlink, or by
 * searching users/ when the link is missing.  Returns 0, or -1
 * (QERR_NOTFOUND if there is no such entry). */
static int entry_dir(struct fstore *fs, const char *id, int *ufd, struct qerr *e)
{
	char xx[3] = { id[0], id[1], '\0' };
	char target[64 + REL_MAX];
	*ufd = -1;
	int dfd, r = open_subdir(fs->idsfd, xx, OPEN_ONLY, &dfd, e);
	if (r < 0)
		return -1;
	if (r == 1)
		return entry_dir_by_scan(fs, id, ufd, e);
	ssize_t n = readlinkat(dfd, id, target, sizeof target - 1);
	int err = errno;
	close(dfd);
	if (n < 0) {
		errno = err;
		if (err == ENOENT)
			return entry_dir_by_scan(fs, id, ufd, e);
		if (err == EINVAL)
			return qerr_notfound(e, "no entry '%s'", id);
		return io_err(e, "cannot read link of", id);
	}
	target[n] = '\0';
	static const char prefix[] = "../../users/";
	if (strncmp(target, prefix, sizeof prefix - 1) != 0)
		return qerr_perm(e, "file store: ids/%s/%s points outside users/", xx, id);
	r = open_rel(fs, target + sizeof prefix - 1, OPEN_ONLY, ufd, e);
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
	r = qentry_from_json(b.data ? b.data : "", b.len, out);
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

/* Gives a metadata file the entry's received time as its modification
 * time: list and expire read the time from there (see the top). */
static int set_mtime(int fd, int64_t t)
{
	struct timespec ts[2] = { { .tv_sec = 0, .tv_nsec = UTIME_OMIT },
				  { .tv_sec = (time_t)t, .tv_nsec = 0 } };
	return futimens(fd, ts);
}

/* Writes metadata text to the new file dirfd/name, dated mtime, and
 * fsyncs it.  On failure the file is removed again. */
static int write_tmp_named(int dirfd, const char *name, const char *text, int64_t mtime,
			   struct qerr *e)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return io_err(e, "cannot create", name);
	bool bad = write_full(fd, text, strlen(text)) < 0 || set_mtime(fd, mtime) < 0 ||
		   fsync(fd) < 0;
	if (close(fd) < 0)
		bad = true;
	if (bad) {
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
	if (write_tmp_named(dirfd, tmp, text, mtime, e) < 0)
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

static void file_close(void *state)
{
	struct fstore *fs = state;
	if (fs == NULL)
		return;
	wal_close(fs->wal);
	for (size_t i = 0; i < 256; i++)
		if (fs->xfd[i] >= 0)
			close(fs->xfd[i]);
	int fds[] = { fs->rootfd, fs->tmpfd, fs->usersfd, fs->idsfd, fs->walfd };
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fs->root);
	free(fs);
}

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
		fs->xfd[i] = -1;
	fs->rootfd = open(c->file_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->rootfd < 0) {
		qerr_perm(e, "file store: cannot open %.200s: %s", c->file_root, strerror(errno));
		file_close(fs);
		return -1;
	}
	if (open_subdir(fs->rootfd, "tmp", CREATE_SYNC, &fs->tmpfd, e) != 0 ||
	    open_subdir(fs->rootfd, "users", CREATE_SYNC, &fs->usersfd, e) != 0 ||
	    open_subdir(fs->rootfd, "ids", CREATE_SYNC, &fs->idsfd, e) != 0) {
		file_close(fs);
		return -1;
	}
	clean_tmp(fs);
	recover(fs);
	*state = fs;
	return 0;
}

static int file_put_begin(void *state, void **put, struct qerr *e)
{
	struct fstore *fs = state;
	struct fput *p = xcalloc(1, sizeof *p);
	unsigned char rnd[8];
	*put = NULL;
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		memset(rnd, 0, sizeof rnd); /* pid and counter keep the name unique */
	int len = snprintf(p->name, sizeof p->name, "%ld.%lu.", (long)getpid(), ++fs->counter);
	for (size_t i = 0; i < sizeof rnd; i++)
		len += snprintf(p->name + len, sizeof p->name - (size_t)len, "%02x", rnd[i]);
	p->fs = fs;
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
	if (write_full(p->fd, data, n) < 0)
		return io_err(e, "cannot write tmp/", p->name);
	for (size_t off = 0; off < n;) { /* crc32 takes 32-bit lengths */
		size_t k = n - off > (1u << 30) ? (1u << 30) : n - off;
		p->crc = (uint32_t)crc32(p->crc, (const unsigned char *)data + off, (uInt)k);
		off += k;
	}
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

/* What commit does for one recipient, so that it can be undone. */
struct made {
	char rel[REL_MAX];
	const char *id;
	char *json;     /* the entry's metadata */
	int ufd;        /* its directory, kept open from look_one to publish_one */
	bool skip;      /* the entry existed before: stored and durable */
	bool repair;    /* its .json existed without content: a crash's leftover */
	bool eml, json_made, link;
};

/* Removes what a failed publication created, newest first; best effort.
 * Nothing is synced: the record that described it is voided. */
static void rollback(struct fstore *fs, struct made *mk, size_t n, bool gz)
{
	while (n-- > 0) {
		struct made *w = &mk[n];
		char name[ENTRY_ID_LEN + 8];
		int ufd;
		if ((w->json_made || w->eml) && open_rel(fs, w->rel, OPEN_ONLY, &ufd, NULL) == 0) {
			if (w->json_made) {
				snprintf(name, sizeof name, "%s.json", w->id);
				unlinkat(ufd, name, 0);
			}
			if (w->eml) {
				content_name(name, sizeof name, w->id, gz);
				unlinkat(ufd, name, 0);
			}
			close(ufd);
		}
		char xx[3] = { w->id[0], w->id[1], '\0' };
		int xfd;
		if (w->link && open_subdir(fs->idsfd, xx, OPEN_ONLY, &xfd, NULL) == 0) {
			unlinkat(xfd, w->id, 0);
			close(xfd);
		}
	}
}

/* Links the file srcdir/src in as the content of entry id (<id>.eml, or
 * <id>.eml.gz with gz).  Only called while the entry is not complete (or
 * its content is found wrong by a replay), so a content file of its id
 * in either form is a leftover and is replaced: never trusted to hold
 * the bytes. */
static int link_content_from(int srcdir, const char *src, bool gz, int ufd, const char *id,
			     struct qerr *e)
{
	char name[ENTRY_ID_LEN + 8];
	content_name(name, sizeof name, id, !gz);
	if (unlinkat(ufd, name, 0) < 0 && errno != ENOENT)
		return io_err(e, "cannot replace", name);
	content_name(name, sizeof name, id, gz);
	if (linkat(srcdir, src, ufd, name, 0) == 0)
		return 0;
	if (errno != EEXIST)
		return io_err(e, "cannot link", name);
	if (unlinkat(ufd, name, 0) < 0 && errno != ENOENT)
		return io_err(e, "cannot replace", name);
	if (linkat(srcdir, src, ufd, name, 0) < 0)
		return io_err(e, "cannot link", name);
	return 0;
}

/* Points ids/<xx>/<id> at the user directory.  The index is not synced
 * (see the top). */
static int make_id_link(struct fstore *fs, const char *id, const char *rel, struct qerr *e)
{
	char xx[3] = { id[0], id[1], '\0' };
	char tmp[64];
	unsigned b = (unsigned)strtoul(xx, NULL, 16) & 255;
	if (fs->xfd[b] < 0 && open_subdir(fs->idsfd, xx, CREATE_LATER, &fs->xfd[b], e) != 0)
		return -1;
	char target[32 + REL_MAX];
	snprintf(target, sizeof target, "../../users/%s", rel);
	int sr = symlinkat(target, fs->xfd[b], id);
	if (sr < 0 && errno == ENOENT) {
		/* the directory kept open was removed (by hand): open it anew */
		close(fs->xfd[b]);
		fs->xfd[b] = -1;
		if (open_subdir(fs->idsfd, xx, CREATE_LATER, &fs->xfd[b], e) != 0)
			return -1;
		sr = symlinkat(target, fs->xfd[b], id);
	}
	if (sr == 0)
		return 0; /* the usual case: no link of that id yet */
	if (errno != EEXIST)
		return io_err(e, "cannot create link for", id);
	/* a leftover: replaced in one step */
	tmp_name(fs, tmp, sizeof tmp);
	if (symlinkat(target, fs->xfd[b], tmp) < 0)
		return io_err(e, "cannot create link for", id);
	if (renameat(fs->xfd[b], tmp, fs->xfd[b], id) < 0) {
		io_err(e, "cannot create link for", id);
		unlinkat(fs->xfd[b], tmp, 0);
		return -1;
	}
	return 0;
}

/* Links new metadata in as ufd/name with no temporary name at all: an
 * unnamed file in the directory itself (O_TMPFILE), linked through
 * /proc/self/fd.  Saves the commits of all workers from creating and
 * removing names in the one tmp/ directory they share.  0, 1 if name
 * exists already, -1 on failure, 2 if this way is not available here
 * (no O_TMPFILE on this file system, or no /proc): the caller goes
 * through tmp/. */
static int put_json_unnamed(int ufd, const char *name, const char *json, int64_t mtime,
			    struct qerr *e)
{
	static bool unavailable;
	if (unavailable)
		return 2;
	int fd = openat(ufd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
			unavailable = true;
			return 2;
		}
		return io_err(e, "cannot create", name);
	}
	if (write_full(fd, json, strlen(json)) < 0 || set_mtime(fd, mtime) < 0) {
		io_err(e, "cannot write", name);
		close(fd);
		return -1;
	}
	char path[40];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int r = 0;
	if (linkat(AT_FDCWD, path, ufd, name, AT_SYMLINK_FOLLOW) == 0)
		r = 0;
	else if (errno == EEXIST)
		r = 1;
	else if (errno == ENOENT && access("/proc/self/fd", F_OK) < 0)
		r = 2, unavailable = true;
	else
		r = io_err(e, "cannot link", name);
	if (close(fd) < 0 && r == 0) {
		/* the bytes may not be there: do not keep the name */
		r = io_err(e, "cannot write", name);
		unlinkat(ufd, name, 0);
	}
	return r;
}

/* Gives entry id in ufd its metadata: written to a new file in tmp/
 * (dated mtime, not synced), then linked in as <id>.json.  With replace
 * an existing .json (damaged, or a crash's leftover) is overwritten;
 * else one that exists is another commit's and is left alone: 1. */
static int put_json(struct fstore *fs, int ufd, const char *id, const char *json,
		    int64_t mtime, bool replace, struct qerr *e)
{
	char tmp[64], name[ENTRY_ID_LEN + 8];
	snprintf(name, sizeof name, "%s.json", id);
	if (!replace) {
		int r = put_json_unnamed(ufd, name, json, mtime, e);
		if (r != 2)
			return r;
	}
	snprintf(tmp, sizeof tmp, "%ld.%lu.json", (long)getpid(), ++fs->counter);
	int fd = openat(fs->tmpfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return io_err(e, "cannot create tmp/", tmp);
	bool bad = write_full(fd, json, strlen(json)) < 0 || set_mtime(fd, mtime) < 0;
	if (close(fd) < 0)
		bad = true;
	int r = 0;
	if (bad)
		r = io_err(e, "cannot write tmp/", tmp);
	else if (replace && renameat(fs->tmpfd, tmp, ufd, name) == 0)
		return 0;
	else if (replace)
		r = io_err(e, "cannot rename to", name);
	else if (linkat(fs->tmpfd, tmp, ufd, name, 0) == 0)
		r = 0;
	else if (errno == EEXIST)
		r = 1;
	else
		r = io_err(e, "cannot link", name);
	unlinkat(fs->tmpfd, tmp, 0);
	return r;
}

/* Looks at what a recipient's directory already holds for id: the
 * entry whole (skip), or a .json whose content a crash took (repair). */
static int look_one(struct fstore *fs, struct made *w, bool keep, struct qerr *e)
{
	char name[ENTRY_ID_LEN + 8];
	struct stat st;
	int ufd;
	int r = open_rel(fs, w->rel, CREATE_LATER, &ufd, e);
	if (r != 0)
		return -1;
	snprintf(name, sizeof name, "%s.json", w->id);
	if (fstatat(ufd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (has_content(ufd, w->id))
			w->skip = true;
		else
			w->repair = true;
	} else if (errno != ENOENT) {
		r = io_err(e, "cannot look at", name);
	}
	if (keep && r == 0 && !w->skip)
		w->ufd = ufd;
	else
		close(ufd);
	return r;
}

/* Names one entry once its record is durable: the content, the metadata
 * (linked, never overwriting an entry another commit made meanwhile),
 * the ids link.  Nothing is synced: the record stands for all of it
 * until a checkpoint. */
static int publish_one(struct fstore *fs, struct fput *p, const struct qmeta *m, struct made *w,
		       size_t *created, struct qerr *e)
{
	int ufd = w->ufd;
	w->ufd = -1;
	if (ufd < 0 && open_rel(fs, w->rel, CREATE_LATER, &ufd, e) != 0)
		return -1;
	/* An entry another commit made meanwhile gets our content linked
	 * over its own (the same bytes, durable in our record) and keeps
	 * its metadata: put_json finds it. */
	int r = link_content_from(fs->tmpfd, p->name, p->z != NULL, ufd, w->id, e);
	w->eml = r == 0;
	if (r == 0 && w->repair) {
		(*created)++; /* the .json there is this entry's, as before */
	} else if (r == 0) {
		r = put_json(fs, ufd, w->id, w->json, m->received_at, false, e);
		if (r == 1) { /* theirs, as above: their content is as good */
			w->eml = false;
			r = 0;
		} else if (r == 0) {
			w->json_made = true;
			(*created)++;
		}
	}
	close(ufd);
	if (r == 0 && (w->json_made || w->repair)) {
		if (make_id_link(fs, w->id, w->rel, e) < 0)
			return -1;
		w->link = true;
	}
	return r;
}

/* Appends one entry to a record's payload (see encode_record). */
static void payload_entry(struct buf *b, const char *rel, const char *id, const char *json)
{
	uint16_t rl = (uint16_t)strlen(rel);
	uint32_t jl = (uint32_t)strlen(json);
	buf_append(b, &rl, sizeof rl);
	buf_append(b, rel, rl);
	buf_append(b, id, ENTRY_ID_LEN);
	buf_append(b, &jl, sizeof jl);
	buf_append(b, json, jl);
}

/* A record's payload: "RQE1", flags (1: gzip content), the number of
 * entries, then per entry its directory, id and metadata. */
static void encode_record(struct buf *b, bool gz, struct made *mk, size_t n)
{
	uint32_t head[3] = { PAYLOAD_MAGIC, gz ? 1u : 0u, 0 };
	for (size_t i = 0; i < n; i++)
		head[2] += mk[i].skip ? 0 : 1;
	buf_append(b, head, sizeof head);
	for (size_t i = 0; i < n; i++)
		if (!mk[i].skip)
			payload_entry(b, mk[i].rel, mk[i].id, mk[i].json);
}

/* Opens the write-ahead log of this process on its first commit. */
static int wal_ready(struct fstore *fs, struct qerr *e)
{
	if (fs->wal != NULL)
		return 0;
	if (fs->walfd < 0 && open_subdir(fs->rootfd, "wal", CREATE_SYNC, &fs->walfd, e) != 0)
		return -1;
	return wal_open(&fs->wal, fs->rootfd, fs->walfd, e);
}

/*
 * Commits as described at the top: one record carrying every new entry
 * and the content, made durable by one fdatasync, then the names without
 * syncs.  Entries that exist already are left out (visible means durable
 * in this store); a put whose entries all exist writes nothing.  The log
 * is held from the append to the end of the publication, so that a
 * checkpoint never retires a record whose names are not all made.
 */
static int file_put_commit(void *put, const struct qmeta *m, char *const *ids,
			   size_t *created, struct qerr *e)
{
	struct fput *p = put;
	struct fstore *fs = p->fs;
	*created = 0;
	if (p->z) {
		p->z->next_in = NULL;
		p->z->avail_in = 0;
		if (gz_pump(p, Z_FINISH, e) < 0) {
			put_free(p);
			return -1;
		}
	}
	size_t n = m->nrcpt;
	struct made *mk = xcalloc(n ? n : 1, sizeof *mk);
	int r = 0;
	size_t todo = 0;
	for (size_t i = 0; i < n; i++)
		mk[i].ufd = -1;
	for (size_t i = 0; r == 0 && i < n; i++) {
		mk[i].id = ids[i];
		r = rcpt_rel(m->rcpt[i], mk[i].rel, sizeof mk[i].rel, e);
		if (r == 0)
			r = look_one(fs, &mk[i], i < KEEP_DIRS, e);
		if (r == 0 && !mk[i].skip) {
			struct qentry qe;
			memset(&qe, 0, sizeof qe);
			memcpy(qe.id, ids[i], ENTRY_ID_LEN + 1);
			qe.rcpt = (char *)m->rcpt[i];
			qe.status = ENTRY_QUARANTINED;
			qe.status_changed = m->received_at;
			qe.meta = *m;
			mk[i].json = qentry_to_json(&qe, true);
			todo++;
		}
	}
	if (r == 0 && todo > 0)
		r = wal_ready(fs, e);
	size_t i = 0;
	if (r == 0 && todo > 0) {
		struct buf rec = { 0 };
		encode_record(&rec, p->z != NULL, mk, n);
		wal_lock(fs->wal);
		r = wal_append(fs->wal, rec.data, rec.len, p->fd, p->len, p->crc, e);
		buf_free(&rec);
		for (; r == 0 && i < n; i++)
			if (!mk[i].skip)
				r = publish_one(fs, p, m, &mk[i], created, e);
		if (r < 0 && i > 0) {
			rollback(fs, mk, i, p->z != NULL);
			wal_void_last(fs->wal);
		}
		wal_unlock(fs->wal);
	}
	if (r < 0)
		*created = 0;
	for (size_t j = 0; j < n; j++) {
		free(mk[j].json);
		if (mk[j].ufd >= 0)
			close(mk[j].ufd);
	}
	free(mk);
	put_free(p);
	return r;
}

/* What replay_record needs of the store and its record. */
struct replay {
	struct fstore *fs;
	const struct wal_record *r;
	bool gz;
	char content[64];  /* the content copied out of the log into tmp/, once */
	size_t entries;
};

/* Copies a record's content out of the log into a new file in tmp/. */
static int replay_content(struct replay *x, struct qerr *e)
{
	if (x->content[0] != '\0')
		return 0;
	snprintf(x->content, sizeof x->content, "%ld.%lu.replay", (long)getpid(),
		 ++x->fs->counter);
	int fd = openat(x->fs->tmpfd, x->content,
			O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		x->content[0] = '\0';
		return io_err(e, "cannot create tmp/", "replay file");
	}
	loff_t in = (loff_t)x->r->content_off;
	uint64_t n = x->r->content_len;
	char *buf = NULL;
	while (n > 0) {
		ssize_t c = copy_file_range(x->r->fd, &in, fd, NULL, n, 0);
		if (c < 0 && errno == EINTR)
			continue;
		if (c <= 0) {
			/* through a buffer */
			buf = buf ? buf : xmalloc(READ_CHUNK);
			size_t k = n > READ_CHUNK ? READ_CHUNK : (size_t)n;
			ssize_t got = pread(x->r->fd, buf, k, in);
			if (got <= 0 || write_full(fd, buf, (size_t)got) < 0)
				break;
			c = got;
			in += got;
		}
		n -= (uint64_t)c;
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

/* True if entry id's content in ufd is the record's, in its form. */
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

/* True if entry id's metadata in ufd reads back as an entry of that id. */
static bool json_good(int ufd, const char *id)
{
	char name[ENTRY_ID_LEN + 8];
	struct buf b = { 0 };
	snprintf(name, sizeof name, "%s.json", id);
	bool ok = read_small(ufd, name, &b, NULL) == 0;
	struct qentry q;
	if (ok && qentry_from_json(b.data ? b.data : "", b.len, &q) == 0) {
		ok = strcmp(q.id, id) == 0;
		qentry_free(&q);
	} else {
		ok = false;
	}
	buf_free(&b);
	return ok;
}

/* Makes one entry of a replayed record whole again: whatever of its
 * names a crash lost or left damaged is made anew from the record. */
static int replay_entry(struct replay *x, const char *rel, const char *id, const char *json,
			size_t jlen, struct qerr *e)
{
	struct fstore *fs = x->fs;
	int ufd;
	if (open_rel(fs, rel, CREATE_LATER, &ufd, e) != 0)
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
		char *text = xmalloc(jlen + 1);
		memcpy(text, json, jlen);
		text[jlen] = '\0';
		struct qentry q;
		int64_t mtime = 0;
		if (qentry_from_json(text, jlen, &q) == 0) {
			mtime = q.meta.received_at;
			qentry_free(&q);
			r = put_json(fs, ufd, id, text, mtime, true, e);
		} else {
			r = qerr_perm(e, "file store: a log record's metadata of %s is damaged", id);
		}
		free(text);
		fixed = true;
	}
	close(ufd);
	if (r == 0 && fixed) {
		(void)make_id_link(fs, id, rel, NULL);
		x->entries++;
	}
	return r;
}

/* wal_replay_fn: every entry of one record. */
static int replay_record(const struct wal_record *r, void *arg)
{
	struct replay *x = arg;
	const unsigned char *p = r->payload, *end = p + r->len;
	uint32_t head[3];
	struct qerr e;
	qerr_clear(&e);
	x->r = r;
	x->content[0] = '\0';
	if (r->len < sizeof head)
		return -1;
	memcpy(head, p, sizeof head);
	p += sizeof head;
	if (head[0] != PAYLOAD_MAGIC)
		return -1;
	x->gz = head[1] & 1;
	int rc = 0;
	for (uint32_t i = 0; rc == 0 && i < head[2]; i++) {
		uint16_t rl;
		uint32_t jl;
		char rel[REL_MAX], id[ENTRY_ID_LEN + 1];
		if ((size_t)(end - p) < sizeof rl)
			return -1;
		memcpy(&rl, p, sizeof rl);
		p += sizeof rl;
		if (rl >= sizeof rel || (size_t)(end - p) < (size_t)rl + ENTRY_ID_LEN + sizeof jl)
			return -1;
		memcpy(rel, p, rl);
		rel[rl] = '\0';
		p += rl;
		memcpy(id, p, ENTRY_ID_LEN);
		id[ENTRY_ID_LEN] = '\0';
		p += ENTRY_ID_LEN;
		memcpy(&jl, p, sizeof jl);
		p += sizeof jl;
		if ((size_t)(end - p) < jl || !is_hex_id(id, ENTRY_ID_LEN))
			return -1;
		rc = replay_entry(x, rel, id, (const char *)p, jl, &e);
		p += jl;
	}
	if (x->content[0] != '\0')
		unlinkat(x->fs->tmpfd, x->content, 0);
	if (rc != 0)
		log_msg(LOG_ERR, "%s", e.msg);
	return rc;
}

/* Replays the logs of processes that are gone (killed, or cut off by a
 * power failure): what they answered 200 for is made whole and durable
 * before anything else looks at the store.  Failure is logged, not
 * fatal: the logs stay for the next opener. */
static void recover(struct fstore *fs)
{
	if (fs->walfd < 0 && open_subdir(fs->rootfd, "wal", OPEN_ONLY, &fs->walfd, NULL) != 0)
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

static int file_get(void *state, const char *id, struct qentry *out, struct qerr *e)
{
	struct fstore *fs = state;
	int ufd;
	memset(out, 0, sizeof *out);
	if (entry_dir(fs, id, &ufd, e) < 0)
		return -1;
	int r = load_entry(ufd, id, out, e);
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
		if (cv->n == cv->cap) {
			cv->cap = cv->cap ? cv->cap * 2 : 64;
			cv->v = xrealloc(cv->v, cv->cap * sizeof *cv->v);
		}
		struct cand *c = &cv->v[cv->n++];
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
};

static int gather_dir(int ufd, const char *rel, void *arg, struct qerr *e)
{
	struct list_gather *g = arg;
	if (g->ndirs == g->capdirs) {
		g->capdirs = g->capdirs ? g->capdirs * 2 : 64;
		g->dirs = xrealloc(g->dirs, g->capdirs * sizeof *g->dirs);
	}
	g->dirs[g->ndirs] = xstrdup(rel);
	return gather_cands(ufd, rel, g->ndirs++, &g->cv, NULL, e);
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
	struct list_gather g = { { NULL, 0, 0 }, NULL, 0, 0 };
	int r, ufd = -1;
	size_t open_dir = 0;
	if (f && f->rcpt) {
		char rel[REL_MAX];
		if (rcpt_rel(f->rcpt, rel, sizeof rel, e) < 0)
			return -1;
		r = open_rel(fs, rel, OPEN_ONLY, &ufd, e);
		if (r == 1)
			return 0;
		if (r < 0)
			return -1;
		r = gather_cands(ufd, rel, 0, &g.cv, NULL, e);
		g.dirs = xmalloc(sizeof *g.dirs);
		g.dirs[g.ndirs++] = xstrdup(rel);
	} else {
		r = walk_users(fs, gather_dir, &g, e);
	}
	if (r == 0 && g.cv.n > 1)
		qsort(g.cv.v, g.cv.n, sizeof *g.cv.v, cand_newest_first);
	size_t limit = f && f->limit ? f->limit : SIZE_MAX;
	for (size_t i = 0; r == 0 && i < g.cv.n && ev.n < limit; i++) {
		const struct cand *c = &g.cv.v[i];
		if (f && f->until && c->at >= f->until)
			continue;
		if (f && f->since && c->at < f->since)
			break; /* the rest is older still */
		if (ufd < 0 || c->dir != open_dir) {
			if (ufd >= 0)
				close(ufd);
			ufd = -1;
			int o = open_rel(fs, g.dirs[c->dir], OPEN_ONLY, &ufd, e);
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
		if (matches(f, &q))
			vec_push(&ev, &q);
		qentry_free(&q);
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
	if (open_subdir(fs->idsfd, xx, OPEN_ONLY, &xfd, NULL) == 0) {
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
 * got their metadata (a crash mid-commit), once they are old enough.
 * names and cv (sorted by id) are what gather_cands saw in the directory:
 * only content without a .json there is looked at again. */
static void sweep_dir(int ufd, const char *rel, int64_t now, const struct name_vec *names,
		      const struct cand_vec *cv)
{
	for (size_t i = 0; i < names->n; i++) {
		const char *name = names->v[i];
		struct stat st;
		if (owner_dead(name, TMP_PREFIX)) {
			unlinkat(ufd, name, 0);
			continue;
		}
		if (!is_entry_file(name, ".eml") && !is_entry_file(name, ".eml.gz"))
			continue;
		struct cand key;
		memcpy(key.id, name, ENTRY_ID_LEN);
		key.id[ENTRY_ID_LEN] = '\0';
		if (cv->n > 0 && bsearch(&key, cv->v, cv->n, sizeof *cv->v, cand_by_id) != NULL)
			continue; /* it has (or had, until expired now) its metadata */
		char json[ENTRY_ID_LEN + 8];
		snprintf(json, sizeof json, "%.*s.json", ENTRY_ID_LEN, name);
		if (fstatat(ufd, json, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
			continue;
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
		sweep_dir(ufd, rel, x->now, &x->names, &x->cv);
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
		if (open_subdir(fs->idsfd, xx, OPEN_ONLY, &xfd, NULL) != 0)
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
		snprintf(name, sizeof name, ".health.%ld", (long)getpid());
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
