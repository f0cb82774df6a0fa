/*
 * store_file_digest.c - the file store's announced marks: which of a
 * recipient's entries a digest has told them of, and when.
 *
 * They live in one file per recipient, users/<domain>/<local>/.announced
 * (no entry file can start with a dot), a line "<id> <seconds>" per
 * mark.  It is replaced as a whole (temporary ".tmp.<pid>." file in the
 * same directory, fsync, rename, fsync of the directory), so a reader
 * sees the old marks or the new ones, and the marks are durable when
 * set_announced returns.  Each replacement drops the marks of entries
 * that are gone (expired, deleted), so the file never holds more lines
 * than the directory has entries plus one digest's worth.  Only the
 * digest writes it, one run at a time (it holds a lock).
 */
#include "store_file_digest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

#define MARKS_NAME ".announced"
#define MARKS_MAX (64u << 20) /* a marks file larger than this is damaged */

struct mark {
	char id[ENTRY_ID_LEN + 1];
	int64_t when;
};

struct marks {
	struct mark *v;
	size_t n, cap;
};

static int by_id(const void *a, const void *b)
{
	return strcmp(((const struct mark *)a)->id, ((const struct mark *)b)->id);
}

static void marks_add(struct marks *m, const char *id, int64_t when)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->v = xrealloc(m->v, m->cap * sizeof *m->v);
	}
	memcpy(m->v[m->n].id, id, ENTRY_ID_LEN);
	m->v[m->n].id[ENTRY_ID_LEN] = '\0';
	m->v[m->n++].when = when;
}

/* Reads the marks file of the directory ufd (absent: no marks), sorted
 * by id.  Lines that are not a mark are skipped: a damaged line costs at
 * most one entry announced again. */
static int read_marks(int ufd, struct marks *m, struct qerr *e)
{
	memset(m, 0, sizeof *m);
	int fd = openat(ufd, MARKS_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : qerr_temp(e, "file store: cannot open %s: %s",
						    MARKS_NAME, strerror(errno));
	struct buf b = { 0 };
	char chunk[16384];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || b.len + (size_t)r > MARKS_MAX) {
			int err = errno;
			close(fd);
			buf_free(&b);
			return r < 0 ? qerr_temp(e, "file store: cannot read %s: %s", MARKS_NAME,
						 strerror(err))
				     : qerr_perm(e, "file store: %s is too large", MARKS_NAME);
		}
		if (r == 0)
			break;
		buf_append(&b, chunk, (size_t)r);
	}
	close(fd);
	for (char *line = b.data; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char *sp = strchr(line, ' ');
		if (sp && sp - line == ENTRY_ID_LEN) {
			*sp = '\0';
			long long t = strtoll(sp + 1, NULL, 10);
			if (store_id_valid(line) && t > 0)
				marks_add(m, line, t);
		}
		line = nl ? nl + 1 : NULL;
	}
	buf_free(&b);
	if (m->n)
		qsort(m->v, m->n, sizeof *m->v, by_id);
	return 0;
}

static struct mark *find_mark(const struct marks *m, const char *id)
{
	struct mark key;
	snprintf(key.id, sizeof key.id, "%s", id);
	return m->n ? bsearch(&key, m->v, m->n, sizeof *m->v, by_id) : NULL;
}

int file_get_announced(void *state, const char *rcpt, char *const *ids, size_t n,
		       int64_t *when, struct qerr *e)
{
	int ufd;
	int r = store_file_user_dir(state, rcpt, &ufd, e);
	if (r != 0)
		return r < 0 ? -1 : 0; /* no directory: nothing announced */
	struct marks m;
	r = read_marks(ufd, &m, e);
	close(ufd);
	if (r < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct mark *k = find_mark(&m, ids[i]);
		when[i] = k ? k->when : 0;
	}
	free(m.v);
	return 0;
}

/* True if the directory still holds the entry's metadata. */
static bool entry_exists(int ufd, const char *id)
{
	char name[ENTRY_ID_LEN + 8];
	struct stat st;
	snprintf(name, sizeof name, "%s.json", id);
	return fstatat(ufd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Writes the marks to a temporary file and renames it over the old. */
static int write_marks(int ufd, const struct marks *m, struct qerr *e)
{
	char tmp[64];
	static unsigned long counter;
	snprintf(tmp, sizeof tmp, ".tmp.%ld.%lu.announced", (long)getpid(), ++counter);
	struct buf b = { 0 };
	for (size_t i = 0; i < m->n; i++)
		buf_printf(&b, "%s %lld\n", m->v[i].id, (long long)m->v[i].when);
	int fd = openat(ufd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		buf_free(&b);
		return qerr_temp(e, "file store: cannot create %s: %s", tmp, strerror(errno));
	}
	bool bad = write_full(fd, b.data ? b.data : "", b.len) < 0 || fsync(fd) < 0;
	int err = errno;
	buf_free(&b);
	if (close(fd) < 0 && !bad) {
		bad = true;
		err = errno;
	}
	if (!bad && renameat(ufd, tmp, ufd, MARKS_NAME) < 0) {
		bad = true;
		err = errno;
	}
	if (bad) {
		unlinkat(ufd, tmp, 0);
		return qerr_temp(e, "file store: cannot write %s: %s", MARKS_NAME, strerror(err));
	}
	if (fsync(ufd) < 0)
		return qerr_temp(e, "file store: cannot sync the directory of %s: %s", MARKS_NAME,
				 strerror(errno));
	return 0;
}

int file_set_announced(void *state, const char *rcpt, char *const *ids, size_t n,
		       int64_t when, struct qerr *e)
{
	int ufd;
	int r = store_file_user_dir(state, rcpt, &ufd, e);
	if (r != 0)
		return r < 0 ? -1 : qerr_notfound(e, "no entries for this recipient");
	struct marks old, keep = { 0 };
	if (read_marks(ufd, &old, e) < 0) {
		close(ufd);
		return -1;
	}
	/* the old marks, less those of entries gone and those now cleared */
	for (size_t i = 0; i < old.n; i++) {
		bool named = false;
		for (size_t j = 0; j < n && !named; j++)
			named = strcmp(ids[j], old.v[i].id) == 0;
		if (named && when == 0)
			continue;
		if (!named && !entry_exists(ufd, old.v[i].id))
			continue;
		if (!named)
			marks_add(&keep, old.v[i].id, old.v[i].when);
	}
	if (when > 0)
		for (size_t j = 0; j < n; j++)
			marks_add(&keep, ids[j], when);
	free(old.v);
	r = write_marks(ufd, &keep, e);
	free(keep.v);
	close(ufd);
	return r;
}
