/*
 * test_store_file.c - the file store through the store front end, in a
 * private temporary directory: one inode per message whatever the number
 * of recipients, byte-exact content, idempotent retries, listing,
 * status, removal, expiry, statistics, hostile recipients, size limits,
 * failures that must leave nothing half-stored, cleanup at open,
 * compressed content (compress = gzip), and the synchronous flushes a
 * commit costs in each file_sync mode (the binary is linked with
 * fsync, fdatasync and syncfs wrapped, to count the real calls).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "common.h"
#include "config.h"
#include "record.h"
#include "store.h"
#include "store_file_wal.h"
#include "sync_batch.h"

/* The store's real calls, counted (Makefile: -Wl,--wrap). */
/* Per thread: the log's checkpoint thread flushes too, and a test counts
 * what the committing thread waits for. */
static __thread unsigned long n_fsync, n_fdatasync, n_syncfs;
int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __real_syncfs(int fd);
int __wrap_fsync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_syncfs(int fd);

int __wrap_fsync(int fd)
{
	n_fsync++;
	return __real_fsync(fd);
}

int __wrap_fdatasync(int fd)
{
	n_fdatasync++;
	return __real_fdatasync(fd);
}

int __wrap_syncfs(int fd)
{
	n_syncfs++;
	return __real_syncfs(fd);
}

static const char MSG[] =
	"From: \"Sender\" <sender@example.com>\r\n"
	"To: a@example.org\r\n"
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
	"Message-ID: <m1@example.com>\r\n"
	"\r\n"
	"Body line 1\r\n"
	"8-bit \xe4\xf6\xfc bytes and a NUL-free tail\r\n";

static const char SYMBOLS[] =
	"[{\"name\":\"CLAMAV_VIRUS\",\"score\":10.0},{\"name\":\"POLICY_SUBMISSION\",\"score\":0.0}]";

struct fixture {
	char base[64];  /* mkdtemp directory; holds only root */
	char root[96];
	struct config c;
	struct store *s;
};

/* The file_sync of the fixtures setup makes (NULL: auto); main runs the
 * commit's tests once more with "syncfs". */
static const char *fixture_sync;

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	strcpy(f->base, "/tmp/rq-store-XXXXXX");
	if (mkdtemp(f->base) == NULL)
		return -1;
	snprintf(f->root, sizeof f->root, "%s/root", f->base);
	f->c.backend = (char *)"file";
	f->c.file_root = f->root;
	f->c.max_message_size = 1 << 20;
	f->c.max_recipients = 1000;
	f->c.policy_prefix = (char *)"POLICY_";
	f->c.default_owner = (char *)"postmaster";
	f->c.file_sync = (char *)fixture_sync;
	struct qerr e;
	if (store_open(&f->s, &f->c, &e) < 0) {
		fprintf(stderr, "store_open: %s\n", e.msg);
		return -1;
	}
	unsetenv("RSPAMD_QUARANTINE_NOW");
	*state = f;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	chmod(path, 0700);
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_close(f->s);
	nftw(f->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	unsetenv("RSPAMD_QUARANTINE_NOW");
	return 0;
}

static void set_now(int64_t t)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%lld", (long long)t);
	setenv("RSPAMD_QUARANTINE_NOW", buf, 1);
}

/* Everything one put needs to vary in these tests. */
struct put_args {
	const char *msg;
	size_t len;
	const char *const *rcpt;
	size_t nrcpt;
	const char *qid;
	const char *from;
	const char *symbols;
};

/* Streams a message in small pieces and commits it. */
static int put(struct store *s, const struct put_args *a, char ***ids, size_t *nids,
	       size_t *created, struct qerr *e)
{
	struct qmeta m;
	memset(&m, 0, sizeof m);
	m.scan_time = -1;
	qmeta_set(&m.qid, a->qid);
	qmeta_set(&m.env_from, a->from);
	qmeta_set(&m.rspamd_server, "scan1");
	qmeta_set(&m.symbols_json, a->symbols);
	m.rcpt = xcalloc(a->nrcpt ? a->nrcpt : 1, sizeof *m.rcpt);
	for (size_t i = 0; i < a->nrcpt; i++)
		m.rcpt[i] = xstrdup(a->rcpt[i]);
	m.nrcpt = a->nrcpt;
	struct store_put *p;
	if (store_put_begin(s, &p, e) < 0) {
		qmeta_free(&m);
		return -1;
	}
	for (size_t off = 0; off < a->len; off += 7) {
		size_t n = a->len - off < 7 ? a->len - off : 7;
		if (store_put_write(p, a->msg + off, n, e) < 0) {
			store_put_abort(p);
			qmeta_free(&m);
			return -1;
		}
	}
	int r = store_put_commit(p, &m, ids, nids, created, e);
	qmeta_free(&m);
	return r;
}

static void put_ok(struct store *s, const struct put_args *a, char ***ids, size_t *nids,
		   size_t *created)
{
	struct qerr e;
	qerr_clear(&e);
	int r = put(s, a, ids, nids, created, &e);
	if (r != 0)
		fail_msg("put failed: %s", e.msg);
}

/* The entry id exists and belongs to rcpt. */
static void assert_rcpt(struct store *s, const char *id, const char *rcpt)
{
	struct qentry q;
	struct qerr e;
	assert_int_equal(store_get(s, id, &q, &e), 0);
	assert_string_equal(q.rcpt, rcpt);
	qentry_free(&q);
}

static int collect_cb(const void *p, size_t n, void *arg)
{
	buf_append(arg, p, n);
	return 0;
}

/* Entry id's content reads back as MSG, byte for byte. */
static void assert_msg(struct store *s, const char *id)
{
	struct buf b = { 0 };
	struct qerr e;
	assert_int_equal(store_read_content(s, id, collect_cb, &b, &e), 0);
	assert_int_equal(b.len, sizeof MSG - 1);
	assert_memory_equal(b.data, MSG, b.len);
	buf_free(&b);
}

struct listed {
	char ids[32][ENTRY_ID_LEN + 1];
	int64_t at[32];
	size_t n;
};

static int list_cb(const struct qentry *q, void *arg)
{
	struct listed *l = arg;
	if (l->n < 32) {
		memcpy(l->ids[l->n], q->id, ENTRY_ID_LEN + 1);
		l->at[l->n] = q->meta.received_at;
	}
	l->n++;
	return 0;
}

static size_t list_n(struct store *s, const struct store_filter *f, struct listed *l)
{
	struct qerr e;
	memset(l, 0, sizeof *l);
	assert_int_equal(store_list(s, f, list_cb, l, &e), 0);
	return l->n;
}

static struct store_filter all_filter(void)
{
	struct store_filter f;
	memset(&f, 0, sizeof f);
	f.status = -1;
	return f;
}

static void user_file(struct fixture *f, const char *rel, const char *id, const char *ext,
		      char *out, size_t len)
{
	snprintf(out, len, "%s/users/%s/%s.%s", f->root, rel, id, ext);
}

static const char *const THREE[] = { "a@example.org", "B@Example.org", "c@other.net" };

static void test_put_three_one_inode(void **state)
{
	struct fixture *f = *state;
	struct put_args a = { MSG, sizeof MSG - 1, THREE, 3, "Q1", "sender@example.com", SYMBOLS };
	char **ids;
	size_t nids, created;
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_int_equal(nids, 3);
	assert_int_equal(created, 3);
	assert_string_not_equal(ids[0], ids[1]);
	assert_true(store_id_valid(ids[0]));

	char p1[512], p2[512], p3[512];
	struct stat s1, s2, s3;
	user_file(f, "example.org/a", ids[0], "eml", p1, sizeof p1);
	user_file(f, "example.org/b", ids[1], "eml", p2, sizeof p2);
	user_file(f, "other.net/c", ids[2], "eml", p3, sizeof p3);
	assert_int_equal(stat(p1, &s1), 0);
	assert_int_equal(stat(p2, &s2), 0);
	assert_int_equal(stat(p3, &s3), 0);
	assert_int_equal(s1.st_nlink, 3);
	assert_int_equal(s1.st_ino, s2.st_ino);
	assert_int_equal(s1.st_ino, s3.st_ino);
	assert_int_equal(s1.st_size, sizeof MSG - 1);
	assert_int_equal(s1.st_mode & 0777, 0600);

	struct qerr e;
	struct qentry q;
	char hex[65];
	sha256_hex(MSG, sizeof MSG - 1, hex);
	for (size_t i = 0; i < 3; i++) {
		struct buf b = { 0 };
		assert_int_equal(store_read_content(f->s, ids[i], collect_cb, &b, &e), 0);
		assert_int_equal(b.len, sizeof MSG - 1);
		assert_memory_equal(b.data, MSG, sizeof MSG - 1);
		buf_free(&b);
		assert_int_equal(store_get(f->s, ids[i], &q, &e), 0);
		assert_string_equal(q.id, ids[i]);
		assert_string_equal(q.rcpt, THREE[i]);
		assert_string_equal(q.meta.sha256, hex);
		assert_int_equal(q.meta.size, sizeof MSG - 1);
		assert_int_equal(q.status, ENTRY_QUARANTINED);
		assert_string_equal(q.meta.qid, "Q1");
		assert_string_equal(q.meta.policy, "POLICY_SUBMISSION");
		assert_non_null(q.meta.hdr_subject);
		assert_string_equal(q.meta.hdr_subject, "Grüße");
		qentry_free(&q);
	}

	/* the same POST again: nothing new */
	char **ids2;
	size_t nids2, created2;
	put_ok(f->s, &a, &ids2, &nids2, &created2);
	assert_int_equal(created2, 0);
	assert_int_equal(nids2, 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(ids[i], ids2[i]);
	struct store_filter all = all_filter();
	struct listed l;
	assert_int_equal(list_n(f->s, &all, &l), 3);
	assert_int_equal(stat(p1, &s1), 0);
	assert_int_equal(s1.st_nlink, 3);
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st, &e), 0);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.messages, 1);
	assert_int_equal(st.bytes, sizeof MSG - 1);
	assert_int_equal(st.by_status[ENTRY_QUARANTINED], 3);

	/* nothing is left in tmp/ */
	char tmpdir[256];
	snprintf(tmpdir, sizeof tmpdir, "%s/tmp", f->root);
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	assert_int_equal(n, 0);
	xfree_strv(ids, nids);
	xfree_strv(ids2, nids2);
}

static void test_dup_rcpt_and_default_owner(void **state)
{
	struct fixture *f = *state;
	const char *const dup[] = { "x@example.org", "X@EXAMPLE.ORG", "y@example.org" };
	struct put_args a = { MSG, sizeof MSG - 1, dup, 3, "Q2", NULL, NULL };
	char **ids;
	size_t nids, created;
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_int_equal(nids, 2);
	assert_int_equal(created, 2);
	struct qentry q;
	struct qerr e;
	assert_int_equal(store_get(f->s, ids[0], &q, &e), 0);
	assert_string_equal(q.rcpt, "x@example.org");
	qentry_free(&q);
	xfree_strv(ids, nids);

	struct put_args b = { MSG, sizeof MSG - 1, NULL, 0, NULL, NULL, NULL };
	put_ok(f->s, &b, &ids, &nids, &created);
	assert_int_equal(nids, 1);
	assert_int_equal(store_get(f->s, ids[0], &q, &e), 0);
	assert_string_equal(q.rcpt, "postmaster");
	assert_null(q.meta.policy);
	qentry_free(&q);
	char path[512];
	user_file(f, "_local/postmaster", ids[0], "json", path, sizeof path);
	assert_int_equal(access(path, F_OK), 0);
	xfree_strv(ids, nids);
}

static void test_list_filters(void **state)
{
	struct fixture *f = *state;
	const char *const r1[] = { "a@example.org" };
	const char *const r2[] = { "a@example.org", "b@example.org" };
	char **ids;
	size_t nids, created;
	char m2[] = "Subject: two\n\nsecond\n";
	char m3[] = "Subject: three\n\nthird message\n";
	set_now(1000);
	struct put_args a = { MSG, sizeof MSG - 1, r1, 1, "Q1", "One@Example.com", SYMBOLS };
	put_ok(f->s, &a, &ids, &nids, &created);
	char first[ENTRY_ID_LEN + 1];
	strcpy(first, ids[0]);
	xfree_strv(ids, nids);
	set_now(2000);
	struct put_args b = { m2, sizeof m2 - 1, r2, 2, "Q2", "two@example.com", NULL };
	put_ok(f->s, &b, &ids, &nids, &created);
	xfree_strv(ids, nids);
	set_now(3000);
	struct put_args c = { m3, sizeof m3 - 1, r1, 1, "Q3", "two@example.com", NULL };
	put_ok(f->s, &c, &ids, &nids, &created);
	char last[ENTRY_ID_LEN + 1];
	strcpy(last, ids[0]);
	xfree_strv(ids, nids);

	struct listed l;
	struct store_filter flt = all_filter();
	assert_int_equal(list_n(f->s, &flt, &l), 4);
	assert_int_equal(l.at[0], 3000);
	assert_int_equal(l.at[1], 2000);
	assert_int_equal(l.at[2], 2000);
	assert_int_equal(l.at[3], 1000);
	assert_string_equal(l.ids[0], last);
	assert_string_equal(l.ids[3], first);
	assert_true(strcmp(l.ids[1], l.ids[2]) < 0);

	flt.limit = 2;
	assert_int_equal(list_n(f->s, &flt, &l), 2);
	assert_string_equal(l.ids[0], last);
	/* any_order: the same entries, handed on unbuffered; limit holds */
	struct listed u;
	flt = all_filter();
	assert_int_equal(list_n(f->s, &flt, &l), 4);
	flt.any_order = true;
	assert_int_equal(list_n(f->s, &flt, &u), 4);
	for (size_t i = 0; i < 4; i++) {
		size_t k = 0;
		while (k < 4 && strcmp(u.ids[k], l.ids[i]) != 0)
			k++;
		assert_true(k < 4);
		assert_int_equal(u.at[k], l.at[i]);
	}
	flt.limit = 3;
	assert_int_equal(list_n(f->s, &flt, &u), 3);
	flt = all_filter();
	flt.rcpt = "A@example.org";
	assert_int_equal(list_n(f->s, &flt, &l), 3);
	flt.rcpt = "b@example.org";
	assert_int_equal(list_n(f->s, &flt, &l), 1);
	assert_int_equal(l.at[0], 2000);
	flt.rcpt = "nobody@example.org";
	assert_int_equal(list_n(f->s, &flt, &l), 0);
	flt = all_filter();
	flt.from = "one@example.COM";
	assert_int_equal(list_n(f->s, &flt, &l), 1);
	assert_string_equal(l.ids[0], first);
	flt = all_filter();
	flt.qid = "Q2";
	assert_int_equal(list_n(f->s, &flt, &l), 2);
	flt = all_filter();
	flt.symbol = "CLAMAV_VIRUS";
	assert_int_equal(list_n(f->s, &flt, &l), 1);
	assert_string_equal(l.ids[0], first);
	flt = all_filter();
	flt.since = 2000;
	assert_int_equal(list_n(f->s, &flt, &l), 3);
	flt.until = 3000;
	assert_int_equal(list_n(f->s, &flt, &l), 2);
	flt = all_filter();
	flt.status = ENTRY_RELEASED;
	assert_int_equal(list_n(f->s, &flt, &l), 0);

	/* status changes show in list and get */
	struct qerr e;
	set_now(5000);
	assert_int_equal(store_set_status(f->s, first, ENTRY_RELEASED, &e), 0);
	assert_int_equal(list_n(f->s, &flt, &l), 1);
	assert_string_equal(l.ids[0], first);
	struct qentry q;
	assert_int_equal(store_get(f->s, first, &q, &e), 0);
	assert_int_equal(q.status, ENTRY_RELEASED);
	assert_int_equal(q.status_changed, 5000);
	assert_int_equal(q.meta.received_at, 1000);
	assert_string_equal(q.meta.qid, "Q1");
	qentry_free(&q);
	assert_int_equal(store_set_status(f->s, last, ENTRY_DELETED, &e), 0);
	flt = all_filter();
	assert_int_equal(list_n(f->s, &flt, &l), 3); /* deleted hidden by default */
	flt.status = ENTRY_DELETED;
	assert_int_equal(list_n(f->s, &flt, &l), 1);
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st, &e), 0);
	assert_int_equal(st.entries, 4);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.bytes, (sizeof MSG - 1) + (sizeof m2 - 1) + (sizeof m3 - 1));
	assert_int_equal(st.by_status[ENTRY_QUARANTINED], 2);
	assert_int_equal(st.by_status[ENTRY_RELEASED], 1);
	assert_int_equal(st.by_status[ENTRY_DELETED], 1);

	/* bad and unknown ids */
	assert_int_equal(store_set_status(f->s, "000000000000000000000000", ENTRY_RELEASED, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	assert_int_equal(store_get(f->s, "../../etc/passwd", &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "no entry '../../etc/passwd'"));
	assert_int_equal(store_remove(f->s, "ABCDEF0123456789ABCDEF01", &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	assert_int_equal(store_read_content(f->s, "0123456789abcdef0123456", collect_cb, NULL, &e),
			 -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
}

static void test_remove_keeps_shared(void **state)
{
	struct fixture *f = *state;
	struct put_args a = { MSG, sizeof MSG - 1, THREE, 3, "Q1", "s@example.com", NULL };
	char **ids;
	size_t nids, created;
	struct qerr e;
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_int_equal(store_remove(f->s, ids[1], &e), 0);
	struct qentry q;
	assert_int_equal(store_get(f->s, ids[1], &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	assert_int_equal(store_remove(f->s, ids[1], &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	char path[512];
	snprintf(path, sizeof path, "%s/ids/%.2s/%s", f->root, ids[1], ids[1]);
	struct stat st;
	assert_int_equal(lstat(path, &st), -1);
	user_file(f, "example.org/b", ids[1], "eml", path, sizeof path);
	assert_int_equal(lstat(path, &st), -1);
	for (size_t i = 0; i < 3; i += 2)
		assert_msg(f->s, ids[i]);
	user_file(f, "example.org/a", ids[0], "eml", path, sizeof path);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_nlink, 2);
	struct store_stats ss;
	assert_int_equal(store_stats(f->s, &ss, &e), 0);
	assert_int_equal(ss.entries, 2);
	assert_int_equal(ss.messages, 1);
	assert_int_equal(store_remove(f->s, ids[0], &e), 0);
	assert_int_equal(store_remove(f->s, ids[2], &e), 0);
	assert_int_equal(store_stats(f->s, &ss, &e), 0);
	assert_int_equal(ss.entries, 0);
	assert_int_equal(ss.messages, 0);
	assert_int_equal(ss.bytes, 0);
	xfree_strv(ids, nids);
}

/* Five messages for a, at times 100..500, sizes 10..50; the first and
 * last also for b. */
static void fill_for_expire(struct fixture *f)
{
	static char bodies[5][64];
	const char *const ra[] = { "a@example.org" };
	const char *const rab[] = { "a@example.org", "b@example.org" };
	for (int i = 0; i < 5; i++) {
		size_t len = (size_t)(i + 1) * 10;
		memset(bodies[i], 'a' + i, len);
		memcpy(bodies[i], "X: y\n\n", 6);
		char **ids;
		size_t nids, created;
		set_now(100 * (i + 1));
		struct put_args a = { bodies[i], len, (i == 0 || i == 4) ? rab : ra,
				      (i == 0 || i == 4) ? 2u : 1u, "Q", NULL, NULL };
		put_ok(f->s, &a, &ids, &nids, &created);
		xfree_strv(ids, nids);
	}
	set_now(1000);
}

static void test_expire(void **state)
{
	struct fixture *f = *state;
	struct qerr e;
	struct expire_result r;
	struct store_stats st;
	struct listed l;
	struct store_filter flt = all_filter();
	fill_for_expire(f);
	assert_int_equal(list_n(f->s, &flt, &l), 7);

	/* dry run: counts, removes nothing */
	struct expire_opts o = { .cutoff = 250, .dry_run = true };
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 3);   /* a@100, b@100, a@200 */
	assert_int_equal(r.messages, 2);  /* both links of msg 1 go, and msg 2 */
	assert_int_equal(r.bytes, 10 + 20);
	assert_int_equal(list_n(f->s, &flt, &l), 7);

	o.dry_run = false;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 3);
	assert_int_equal(r.messages, 2);
	assert_int_equal(r.bytes, 30);
	assert_int_equal(list_n(f->s, &flt, &l), 4);
	for (size_t i = 0; i < l.n; i++)
		assert_true(l.at[i] >= 300);
	assert_int_equal(store_stats(f->s, &st, &e), 0);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.bytes, 30 + 40 + 50);

	/* a keeps its 2 newest (500, 400), b keeps its only one */
	struct expire_opts m = { .max_per_rcpt = 2 };
	assert_int_equal(store_expire(f->s, &m, &r, &e), 0);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.messages, 1);
	assert_int_equal(r.bytes, 30);
	flt.rcpt = "a@example.org";
	assert_int_equal(list_n(f->s, &flt, &l), 2);
	assert_int_equal(l.at[0], 500);
	assert_int_equal(l.at[1], 400);

	/* bytes: a may keep 60 -> only the 50-byte newest stays; the
	 * content stays for b, so nothing is freed but the 40-byte one */
	struct expire_opts b = { .max_bytes_per_rcpt = 60, .dry_run = true };
	assert_int_equal(store_expire(f->s, &b, &r, &e), 0);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.bytes, 40);
	assert_int_equal(list_n(f->s, &flt, &l), 2);
	b.dry_run = false;
	assert_int_equal(store_expire(f->s, &b, &r, &e), 0);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.messages, 1);
	assert_int_equal(r.bytes, 40);
	assert_int_equal(list_n(f->s, &flt, &l), 1);
	assert_int_equal(l.at[0], 500);
	b.max_bytes_per_rcpt = 49;
	assert_int_equal(store_expire(f->s, &b, &r, &e), 0);
	assert_int_equal(r.entries, 2);   /* a's and b's 50-byte entries */
	assert_int_equal(r.messages, 1);  /* one shared content */
	assert_int_equal(r.bytes, 50);
	assert_int_equal(store_stats(f->s, &st, &e), 0);
	assert_int_equal(st.entries, 0);
}

#define DAY 86400
#define T0 1700000000

/* The .json mtime of entry id for rcpt directory rel. */
static int64_t json_mtime(struct fixture *f, const char *rel, const char *id)
{
	char path[512];
	struct stat st;
	user_file(f, rel, id, "json", path, sizeof path);
	assert_int_equal(stat(path, &st), 0);
	return (int64_t)st.st_mtime;
}

/* 30 days of mail, 4 a day 6 hours apart, for three recipients in turn;
 * day d message k is received at T0 + d days + 6k hours, qid "D<d>K<k>".
 * ids[d * 4 + k] gets its entry id, rels[] its directory. */
static void fill_30_days(struct fixture *f, char ids[120][ENTRY_ID_LEN + 1],
			 const char *rels[120])
{
	static const char *const rc[] = { "a@example.org", "b@example.org", "c@example.org" };
	static const char *const rl[] = { "example.org/a", "example.org/b", "example.org/c" };
	for (int d = 0; d < 30; d++) {
		for (int k = 0; k < 4; k++) {
			int i = d * 4 + k;
			char body[64], qid[16];
			int len = snprintf(body, sizeof body, "Subject: %d\n\nbody %d\n", i, i);
			snprintf(qid, sizeof qid, "D%dK%d", d, k);
			const char *const r1[] = { rc[i % 3] };
			struct put_args a = { body, (size_t)len, r1, 1, qid, NULL, NULL };
			char **pi;
			size_t n, created;
			set_now(T0 + (int64_t)d * DAY + k * 6 * 3600);
			put_ok(f->s, &a, &pi, &n, &created);
			assert_int_equal(created, 1);
			strcpy(ids[i], pi[0]);
			rels[i] = rl[i % 3];
			xfree_strv(pi, n);
		}
	}
	set_now(T0 + 30 * DAY);
}

static void test_expire_by_mtime(void **state)
{
	struct fixture *f = *state;
	char ids[120][ENTRY_ID_LEN + 1];
	const char *rels[120];
	struct qerr e;
	struct expire_result r;
	struct listed l;
	struct store_filter flt = all_filter();
	fill_30_days(f, ids, rels);
	/* every .json carries its received time, whatever the clock */
	for (int i = 0; i < 120; i++)
		assert_int_equal(json_mtime(f, rels[i], ids[i]), T0 + (int64_t)(i / 4) * DAY +
								   (i % 4) * 6 * 3600);

	/* the oldest day goes, to the second: 4 entries */
	struct expire_opts o = { .cutoff = T0 + DAY, .dry_run = true };
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 4);
	assert_int_equal(list_n(f->s, &flt, &l), 120);
	o.dry_run = false;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 4);
	assert_int_equal(r.messages, 4);
	assert_int_equal(list_n(f->s, &flt, &l), 116);
	struct qentry q;
	for (int i = 0; i < 8; i++) {
		int got = store_get(f->s, ids[i], &q, &e);
		assert_int_equal(got, i < 4 ? -1 : 0);
		if (got == 0)
			qentry_free(&q);
	}
	/* a cutoff one second past an entry's time takes it, at it keeps it */
	o.cutoff = T0 + DAY + 6 * 3600;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 1);
	o.cutoff = T0 + DAY + 12 * 3600 + 1;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 2);
	/* half the month */
	o.cutoff = T0 + 15 * DAY;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 56 - 3);
	assert_int_equal(list_n(f->s, &flt, &l), 60);

	/* the decision is the mtime's alone: an entry dated back goes */
	char path[512];
	user_file(f, rels[100], ids[100], "json", path, sizeof path);
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { T0, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	o.cutoff = T0 + 15 * DAY;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 1);
	assert_int_equal(store_get(f->s, ids[100], &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);

	/* per-recipient limits still count and order by time */
	struct expire_opts m = { .max_per_rcpt = 5 };
	assert_int_equal(store_expire(f->s, &m, &r, &e), 0);
	assert_int_equal(r.entries, 59 - 15);
	flt.rcpt = "a@example.org";
	assert_int_equal(list_n(f->s, &flt, &l), 5);
	assert_string_equal(l.ids[0], ids[117]);
	assert_string_equal(l.ids[4], ids[105]);
}

static void test_list_limit_by_mtime(void **state)
{
	struct fixture *f = *state;
	char ids[120][ENTRY_ID_LEN + 1];
	const char *rels[120];
	struct listed l;
	struct store_filter flt = all_filter();
	fill_30_days(f, ids, rels);

	/* the newest five over every user, newest first */
	flt.limit = 5;
	assert_int_equal(list_n(f->s, &flt, &l), 5);
	for (int i = 0; i < 5; i++) {
		assert_string_equal(l.ids[i], ids[119 - i]);
		assert_int_equal(l.at[i], T0 + (int64_t)((119 - i) / 4) * DAY +
						  ((119 - i) % 4) * 6 * 3600);
	}
	/* one recipient: every third entry */
	flt.rcpt = "b@example.org";
	flt.limit = 3;
	assert_int_equal(list_n(f->s, &flt, &l), 3);
	assert_string_equal(l.ids[0], ids[118]);
	assert_string_equal(l.ids[1], ids[115]);
	assert_string_equal(l.ids[2], ids[112]);
	/* a filter on metadata reads past what it skips: the only match is old */
	flt = all_filter();
	flt.qid = "D2K1";
	flt.limit = 1;
	assert_int_equal(list_n(f->s, &flt, &l), 1);
	assert_string_equal(l.ids[0], ids[9]);
	/* time bounds with a limit */
	flt = all_filter();
	flt.since = T0 + 10 * DAY;
	flt.until = T0 + 11 * DAY;
	assert_int_equal(list_n(f->s, &flt, &l), 4);
	assert_string_equal(l.ids[0], ids[43]);
	assert_string_equal(l.ids[3], ids[40]);
	flt.limit = 2;
	assert_int_equal(list_n(f->s, &flt, &l), 2);
	assert_string_equal(l.ids[0], ids[43]);
	assert_string_equal(l.ids[1], ids[42]);
	/* deleted entries do not count towards the limit */
	struct qerr e;
	assert_int_equal(store_set_status(f->s, ids[119], ENTRY_DELETED, &e), 0);
	assert_int_equal(store_set_status(f->s, ids[118], ENTRY_DELETED, &e), 0);
	flt = all_filter();
	flt.limit = 2;
	assert_int_equal(list_n(f->s, &flt, &l), 2);
	assert_string_equal(l.ids[0], ids[117]);
	assert_string_equal(l.ids[1], ids[116]);
}

static void test_set_status_keeps_mtime(void **state)
{
	struct fixture *f = *state;
	const char *const r1[] = { "a@example.org" };
	struct put_args a = { MSG, sizeof MSG - 1, r1, 1, "Q1", NULL, NULL };
	char **ids;
	size_t nids, created;
	struct qerr e;
	set_now(T0);
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_int_equal(json_mtime(f, "example.org/a", ids[0]), T0);
	set_now(T0 + 5 * DAY);
	assert_int_equal(store_set_status(f->s, ids[0], ENTRY_RELEASED, &e), 0);
	assert_int_equal(json_mtime(f, "example.org/a", ids[0]), T0);
	struct qentry q;
	assert_int_equal(store_get(f->s, ids[0], &q, &e), 0);
	assert_int_equal(q.status_changed, T0 + 5 * DAY);
	assert_int_equal(q.meta.received_at, T0);
	qentry_free(&q);
	/* still expired by its received time, not by the status change */
	struct expire_opts o = { .cutoff = T0 + 1 };
	struct expire_result r;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 1);
	xfree_strv(ids, nids);
}

/* nftw callback state: everything found must lie below root. */
static const char *walk_root;
static int walk_count;

static int check_inside(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	(void)st;
	walk_count++;
	char real[PATH_MAX];
	assert_non_null(realpath(path, real));
	assert_memory_equal(real, walk_root, strlen(walk_root));
	if (flag == FTW_SL) {
		/* ids links resolve inside users/ */
		char users[PATH_MAX];
		snprintf(users, sizeof users, "%s/users/", walk_root);
		assert_memory_equal(real, users, strlen(users));
	}
	return 0;
}

static void test_hostile_recipients(void **state)
{
	struct fixture *f = *state;
	const char *const bad[] = { "\"../../x\"@d", "../../etc/passwd", "a/../../b@../..",
				    ".@.", "x@/etc", "%2e%2e@%2f" };
	struct put_args a = { MSG, sizeof MSG - 1, bad, 6, "QH", NULL, NULL };
	char **ids;
	size_t nids, created;
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_int_equal(created, 6);
	struct qerr e;
	for (size_t i = 0; i < nids; i++) {
		struct qentry q;
		assert_int_equal(store_get(f->s, ids[i], &q, &e), 0);
		assert_string_equal(q.rcpt, bad[i]);
		qentry_free(&q);
		struct store_filter flt = all_filter();
		flt.rcpt = bad[i];
		struct listed l;
		assert_int_equal(list_n(f->s, &flt, &l), 1);
		assert_string_equal(l.ids[0], ids[i]);
	}
	char real[PATH_MAX];
	assert_non_null(realpath(f->root, real));
	walk_root = real;
	walk_count = 0;
	assert_int_equal(nftw(f->root, check_inside, 16, FTW_PHYS), 0);
	assert_true(walk_count > 6 * 3);
	/* the parent of root holds root and nothing else */
	DIR *d = opendir(f->base);
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		assert_string_equal(de->d_name, "root");
		n++;
	}
	closedir(d);
	assert_int_equal(n, 1);
	/* users/ holds exactly two levels of directories */
	char path[512];
	snprintf(path, sizeof path, "%s/users", f->root);
	d = opendir(path);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		assert_null(strchr(de->d_name, '/'));
		assert_string_not_equal(de->d_name, "..");
	}
	closedir(d);
	xfree_strv(ids, nids);
}

/* Announced marks (the users' digest): set, read back, cleared; kept
 * apart per entry; dropped with the entry they belong to; unaffected by
 * the entry's other files. */
static void test_announced_marks(void **state)
{
	struct fixture *f = *state;
	const char *const two[] = { "a@example.org", "b@example.org" };
	struct put_args a1 = { MSG, sizeof MSG - 1, two, 2, "A1", "s@example.com", NULL };
	struct put_args a2 = { MSG, sizeof MSG - 1, two, 1, "A2", "s@example.com", NULL };
	char **i1, **i2;
	size_t n1, n2, created;
	struct qerr e;
	put_ok(f->s, &a1, &i1, &n1, &created);
	put_ok(f->s, &a2, &i2, &n2, &created);
	char *mine[2] = { i1[0], i2[0] }; /* a's two entries */
	int64_t when[2] = { -1, -1 };
	assert_int_equal(store_get_announced(f->s, "a@example.org", mine, 2, when, &e), 0);
	assert_true(when[0] == 0 && when[1] == 0);
	/* nobody without a directory has marks, and setting them fails */
	assert_int_equal(store_get_announced(f->s, "z@example.org", mine, 2, when, &e), 0);
	assert_int_equal(store_set_announced(f->s, "z@example.org", mine, 1, 5, &e), -1);

	assert_int_equal(store_set_announced(f->s, "a@example.org", mine, 1, 1000, &e), 0);
	assert_int_equal(store_get_announced(f->s, "A@Example.org", mine, 2, when, &e), 0);
	assert_int_equal(when[0], 1000);
	assert_int_equal(when[1], 0);
	/* b's entry of the same message is another entry */
	int64_t wb = -1;
	assert_int_equal(store_get_announced(f->s, "b@example.org", &i1[1], 1, &wb, &e), 0);
	assert_int_equal(wb, 0);
	/* a second mark keeps the first; clearing takes only what it names */
	assert_int_equal(store_set_announced(f->s, "a@example.org", &mine[1], 1, 2000, &e), 0);
	assert_int_equal(store_get_announced(f->s, "a@example.org", mine, 2, when, &e), 0);
	assert_true(when[0] == 1000 && when[1] == 2000);
	assert_int_equal(store_set_announced(f->s, "a@example.org", &mine[1], 1, 0, &e), 0);
	assert_int_equal(store_get_announced(f->s, "a@example.org", mine, 2, when, &e), 0);
	assert_true(when[0] == 1000 && when[1] == 0);
	/* an entry that goes takes its mark with it at the next write */
	assert_int_equal(store_remove(f->s, mine[0], &e), 0);
	assert_int_equal(store_set_announced(f->s, "a@example.org", &mine[1], 1, 3000, &e), 0);
	char path[512];
	snprintf(path, sizeof path, "%s/users/example.org/a/.announced", f->root);
	struct buf b = { 0 };
	FILE *fp = fopen(path, "r");
	assert_non_null(fp);
	char line[128];
	while (fgets(line, sizeof line, fp))
		buf_appends(&b, line);
	fclose(fp);
	char want[64];
	snprintf(want, sizeof want, "%s 3000\n", mine[1]);
	assert_string_equal(b.data, want);
	buf_free(&b);
	/* the marks file is no entry: list, stats and expire pass it by */
	struct store_stats ss;
	assert_int_equal(store_stats(f->s, &ss, &e), 0);
	assert_int_equal(ss.entries, 2);
	struct store_filter fl = all_filter();
	fl.rcpt = "a@example.org";
	struct listed l;
	assert_int_equal(list_n(f->s, &fl, &l), 1);
	/* malformed IDs never reach the backend */
	char *bad[1] = { (char *)"../../etc" };
	assert_int_equal(store_set_announced(f->s, "a@example.org", bad, 1, 5, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	xfree_strv(i1, n1);
	xfree_strv(i2, n2);
}

static void test_size_limits(void **state)
{
	struct fixture *f = *state;
	struct qerr e;
	char **ids;
	size_t nids, created;
	f->c.max_message_size = 100;
	char big[101];
	memset(big, 'x', sizeof big);
	const char *const r[] = { "a@example.org" };
	struct put_args a = { big, 101, r, 1, "Q", NULL, NULL };
	assert_int_equal(put(f->s, &a, &ids, &nids, &created, &e), -1);
	assert_int_equal(e.cls, QERR_INPUT);
	assert_int_equal(e.http, 413);
	assert_string_equal(e.msg, "message exceeds max_message_size (100 bytes)");
	a.len = 100; /* exactly the limit is fine */
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_int_equal(created, 1);
	xfree_strv(ids, nids);
	struct put_args empty = { "", 0, r, 1, "Q", NULL, NULL };
	assert_int_equal(put(f->s, &empty, &ids, &nids, &created, &e), -1);
	assert_int_equal(e.cls, QERR_INPUT);
	assert_int_equal(e.http, 400);
	assert_string_equal(e.msg, "no message in the body");
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st, &e), 0);
	assert_int_equal(st.entries, 1);
}

/* Counts what find(1) selects below dir with the given predicate. */
static int count_find(const char *dir, const char *pred)
{
	char cmd[700];
	snprintf(cmd, sizeof cmd, "find '%s' -mindepth 1 %s | wc -l", dir, pred);
	FILE *p = popen(cmd, "r");
	int n = -1;
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

static void test_failure_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	char path[512];
	/* b's directory is a regular file: the second recipient fails */
	snprintf(path, sizeof path, "%s/users/example.org", f->root);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof path, "%s/users/example.org/b", f->root);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	const char *const r[] = { "a@example.org", "b@example.org", "c@example.org" };
	struct put_args a = { MSG, sizeof MSG - 1, r, 3, "QF", NULL, NULL };
	char **ids = NULL;
	size_t nids = 9, created = 9;
	struct qerr e;
	assert_int_equal(put(f->s, &a, &ids, &nids, &created, &e), -1);
	assert_int_equal(e.cls, QERR_TEMP);
	assert_int_equal(e.http, 503);
	assert_null(ids);
	assert_int_equal(nids, 0);
	struct store_filter flt = all_filter();
	struct listed l;
	assert_int_equal(list_n(f->s, &flt, &l), 0);
	snprintf(path, sizeof path, "%s/users", f->root);
	assert_int_equal(count_find(path, "-type f"), 1); /* the obstacle only */
	snprintf(path, sizeof path, "%s/ids", f->root);
	assert_int_equal(count_find(path, "! -type d"), 0);
	snprintf(path, sizeof path, "%s/tmp", f->root);
	assert_int_equal(count_find(path, ""), 0);

	/* once the obstacle is gone, the retry stores everything */
	snprintf(path, sizeof path, "%s/users/example.org/b", f->root);
	assert_int_equal(unlink(path), 0);
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_int_equal(created, 3);
	xfree_strv(ids, nids);

	/* a root that cannot be created is a clear error */
	struct config bad = f->c;
	snprintf(path, sizeof path, "%s/users/example.org/a/x", f->root);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	snprintf(path, sizeof path, "%s/users/example.org/a/x/root", f->root);
	bad.file_root = path;
	struct store *s2;
	assert_int_equal(store_open(&s2, &bad, &e), -1);
	assert_int_equal(e.cls, QERR_PERM);
	assert_non_null(strstr(e.msg, "cannot create"));
}

static void test_open_cleans_tmp(void **state)
{
	struct fixture *f = *state;
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	assert_true(child > 0);
	waitpid(child, NULL, 0);
	char dead[512], alive[512], other[512];
	snprintf(dead, sizeof dead, "%s/tmp/%ld.1.00ff00ff00ff00ff", f->root, (long)child);
	snprintf(alive, sizeof alive, "%s/tmp/%ld.7.00ff00ff00ff00ff", f->root, (long)getpid());
	snprintf(other, sizeof other, "%s/tmp/not-ours", f->root);
	const char *files[] = { dead, alive, other };
	for (size_t i = 0; i < 3; i++) {
		int fd = open(files[i], O_CREAT | O_WRONLY, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	struct store *s2;
	struct qerr e;
	assert_int_equal(store_open(&s2, &f->c, &e), 0);
	assert_int_equal(access(dead, F_OK), -1);
	assert_int_equal(access(alive, F_OK), 0);
	assert_int_equal(access(other, F_OK), 0);
	assert_string_equal(store_backend_name(s2), "file");
	store_close(s2);
}

static void test_orphans_swept_by_expire(void **state)
{
	struct fixture *f = *state;
	char path[512];
	/* an .eml whose commit never finished, and a dead writer's temp */
	snprintf(path, sizeof path, "%s/users/example.org", f->root);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/users/example.org/a", f->root);
	mkdir(path, 0700);
	char orphan[600], tmp[600];
	snprintf(orphan, sizeof orphan, "%s/0123456789abcdef01234567.eml", path);
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	snprintf(tmp, sizeof tmp, "%s/.tmp.%ld.3", path, (long)child);
	for (int i = 0; i < 2; i++) {
		int fd = open(i ? tmp : orphan, O_CREAT | O_WRONLY, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	struct expire_opts o = { .cutoff = 1 };
	struct expire_result r;
	struct qerr e;
	/* too young: the orphan stays; the dead writer's temp goes */
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(access(orphan, F_OK), 0);
	assert_int_equal(access(tmp, F_OK), -1);
	set_now(clock_now() + 7200);
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(access(orphan, F_OK), -1);
	assert_int_equal(r.entries, 0);
}

/* After a power cut, e2fsck on ext4 without a journal can drop the
 * names of entries committed long before (a directory block that was
 * being split).  An entry left with its content and its ids/ link but no
 * .json gets it back from the record ids/ links, when it is read, listed
 * or swept by expire; never while a commit still holds the record (its
 * tmp/ name), nor into a directory the record does not name. */
static void test_lost_name_restored(void **state)
{
	struct fixture *f = *state;
	struct put_args a = { MSG, sizeof MSG - 1, THREE, 3, "QL", "s@example.com", NULL };
	char **ids;
	size_t nids, created;
	struct qerr e;
	struct qentry q;
	struct listed l;
	struct store_filter all = all_filter();
	put_ok(f->s, &a, &ids, &nids, &created);
	char json[600], rec[600], held[600], other[600], eml[600];
	snprintf(json, sizeof json, "%s/users/example.org/a/%s.json", f->root, ids[0]);
	snprintf(rec, sizeof rec, "%s/ids/%.2s/%s", f->root, ids[0], ids[0]);
	struct stat st0, st;
	assert_int_equal(stat(json, &st0), 0);

	/* read by id */
	assert_int_equal(unlink(json), 0);
	assert_int_equal(store_get(f->s, ids[0], &q, &e), 0);
	assert_string_equal(q.rcpt, "a@example.org");
	assert_int_equal(q.meta.received_at, (int64_t)st0.st_mtime);
	qentry_free(&q);
	assert_int_equal(stat(json, &st), 0);
	assert_int_equal(st.st_ino, st0.st_ino); /* the same record, linked again */

	/* listed */
	assert_int_equal(unlink(json), 0);
	assert_int_equal(list_n(f->s, &all, &l), 3);
	assert_int_equal(access(json, F_OK), 0);
	all.rcpt = "a@example.org";
	assert_int_equal(unlink(json), 0);
	assert_int_equal(list_n(f->s, &all, &l), 1);
	assert_string_equal(l.ids[0], ids[0]);
	assert_int_equal(access(json, F_OK), 0);
	all.rcpt = NULL;

	/* swept by expire: restored, not removed, however old */
	assert_int_equal(unlink(json), 0);
	set_now(clock_now() + 7200);
	struct expire_opts o = { .cutoff = 1 };
	struct expire_result r;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 0);
	assert_int_equal(access(json, F_OK), 0);

	/* a commit in progress holds the record in tmp/: left alone */
	assert_int_equal(unlink(json), 0);
	snprintf(held, sizeof held, "%s/tmp/%ld.99.json", f->root, (long)getpid());
	assert_int_equal(link(rec, held), 0);
	assert_int_equal(list_n(f->s, &all, &l), 2);
	assert_int_equal(access(json, F_OK), -1);
	assert_int_equal(unlink(held), 0);
	assert_int_equal(list_n(f->s, &all, &l), 3);
	assert_int_equal(access(json, F_OK), 0);

	/* content under a directory the record does not name: not an entry */
	snprintf(other, sizeof other, "%s/users/example.org/zz", f->root);
	assert_int_equal(mkdir(other, 0700), 0);
	snprintf(eml, sizeof eml, "%s/users/example.org/a/%s.eml", f->root, ids[0]);
	snprintf(other, sizeof other, "%s/users/example.org/zz/%s.eml", f->root, ids[0]);
	assert_int_equal(link(eml, other), 0);
	assert_int_equal(list_n(f->s, &all, &l), 3);
	snprintf(other, sizeof other, "%s/users/example.org/zz/%s.json", f->root, ids[0]);
	assert_int_equal(access(other, F_OK), -1);

	/* no content: nothing to restore (the entry is gone) */
	assert_int_equal(unlink(json), 0);
	assert_int_equal(unlink(eml), 0);
	assert_int_equal(store_get(f->s, ids[0], &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	assert_int_equal(access(json, F_OK), -1);
	xfree_strv(ids, nids);
}

/* A crash between linking the content and writing the metadata leaves
 * an .eml (and perhaps an ids link) behind; the retry replaces them. */
static void test_retry_after_crash(void **state)
{
	struct fixture *f = *state;
	const char *const r[] = { "a@example.org" };
	struct qmeta m;
	memset(&m, 0, sizeof m);
	sha256_hex(MSG, sizeof MSG - 1, m.sha256);
	m.qid = (char *)"QC";
	m.rspamd_server = (char *)"scan1";
	char id[ENTRY_ID_LEN + 1];
	store_entry_id(&m, r[0], id);
	char path[600], link[600];
	snprintf(path, sizeof path, "%s/users/example.org", f->root);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof path, "%s/users/example.org/a", f->root);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof path, "%s/users/example.org/a/%s.eml", f->root, id);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(fd, "half", 4), 4);
	close(fd);
	snprintf(link, sizeof link, "%s/ids/%.2s", f->root, id);
	assert_int_equal(mkdir(link, 0700), 0);
	snprintf(link, sizeof link, "%s/ids/%.2s/%s", f->root, id, id);
	assert_int_equal(symlink("../../users/example.org/a", link), 0);
	struct qerr e;
	struct qentry q;
	assert_int_equal(store_get(f->s, id, &q, &e), -1); /* no .json: no entry */
	assert_int_equal(e.cls, QERR_NOTFOUND);

	struct put_args a = { MSG, sizeof MSG - 1, r, 1, "QC", NULL, NULL };
	char **ids;
	size_t nids, created;
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_string_equal(ids[0], id);
	assert_int_equal(created, 1);
	assert_msg(f->s, id);
	xfree_strv(ids, nids);
}

/* A crash between the two names of phase 2 can leave an entry's .json
 * without its content: that is not an entry (get, list and stats skip
 * it), and the retry that follows makes it whole, keeping the metadata
 * already there. */
static void test_json_without_content(void **state)
{
	struct fixture *f = *state;
	const char *const r[] = { "a@example.org" };
	struct put_args a = { MSG, sizeof MSG - 1, r, 1, "QJ", NULL, NULL };
	char **ids;
	size_t nids, created;
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_int_equal(created, 1);
	char eml[600], json[600];
	user_file(f, "example.org/a", ids[0], "eml", eml, sizeof eml);
	user_file(f, "example.org/a", ids[0], "json", json, sizeof json);
	struct stat before;
	assert_int_equal(stat(json, &before), 0);
	assert_int_equal(unlink(eml), 0);

	struct qerr e;
	struct qentry q;
	assert_int_equal(store_get(f->s, ids[0], &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	struct store_filter all = all_filter();
	struct listed l;
	assert_int_equal(list_n(f->s, &all, &l), 0);
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st, &e), 0);
	assert_int_equal(st.entries, 0);

	char **ids2;
	size_t nids2, created2;
	put_ok(f->s, &a, &ids2, &nids2, &created2);
	assert_string_equal(ids2[0], ids[0]);
	assert_int_equal(created2, 1);
	struct stat after;
	assert_int_equal(stat(json, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(store_get(f->s, ids[0], &q, &e), 0);
	assert_string_equal(q.meta.qid, "QJ");
	qentry_free(&q);
	assert_msg(f->s, ids[0]);
	assert_int_equal(list_n(f->s, &all, &l), 1);
	/* nothing is left in tmp/ */
	char tmpdir[600];
	snprintf(tmpdir, sizeof tmpdir, "%s/tmp", f->root);
	DIR *d = opendir(tmpdir);
	assert_non_null(d);
	struct dirent *de;
	int files = 0;
	while ((de = readdir(d)) != NULL)
		files += de->d_name[0] != '.';
	closedir(d);
	assert_int_equal(files, 0);
	xfree_strv(ids, nids);
	xfree_strv(ids2, nids2);
}

/* The ids index is not synced with each commit: an entry whose link a
 * crash lost is still found (by a search of users/), and its link is
 * made again; an id that is nowhere is still not found. */
static void test_lost_id_link(void **state)
{
	struct fixture *f = *state;
	const char *const r[] = { "a@example.org", "b@example.org" };
	struct put_args a = { MSG, sizeof MSG - 1, r, 2, "QL", NULL, NULL };
	char **ids;
	size_t nids, created;
	put_ok(f->s, &a, &ids, &nids, &created);
	char link[600], target[600];
	snprintf(link, sizeof link, "%s/ids/%.2s/%s", f->root, ids[1], ids[1]);
	assert_int_equal(unlink(link), 0);
	/* the ids directory itself gone too */
	char xx[600];
	snprintf(xx, sizeof xx, "%s/ids/%.2s", f->root, ids[0]);
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", xx);
	assert_int_equal(system(cmd), 0);

	struct qerr e;
	struct qentry q;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_get(f->s, ids[i], &q, &e), 0);
		assert_string_equal(q.rcpt, r[i]);
		qentry_free(&q);
		snprintf(link, sizeof link, "%s/ids/%.2s/%s", f->root, ids[i], ids[i]);
		ssize_t n = readlink(link, target, sizeof target - 1);
		assert_true(n > 0);
		target[n] = '\0';
		assert_string_equal(target, i == 0 ? "../../users/example.org/a"
						   : "../../users/example.org/b");
	}
	assert_int_equal(store_get(f->s, "0123456789abcdef01234567", &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	/* removal through a re-made link works as through any other */
	assert_int_equal(store_remove(f->s, ids[1], &e), 0);
	assert_int_equal(store_get(f->s, ids[1], &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	xfree_strv(ids, nids);
}

/* Reopens the fixture's store with compress = gzip. */
static void use_gzip(struct fixture *f)
{
	struct qerr e;
	store_close(f->s);
	f->c.compress = (char *)"gzip";
	assert_int_equal(store_open(&f->s, &f->c, &e), 0);
}

/* A message of header, 8-bit text and an incompressible binary part,
 * large enough to fill the deflate buffer many times over. */
static char *mixed_message(size_t *len)
{
	size_t n = 900000, off = 0;
	char *m = xmalloc(n);
	off += (size_t)snprintf(m, n, "From: <s@example.com>\r\nSubject: big\r\n\r\n");
	while (off < n / 2) {
		static const char line[] = "Spam text \xe4\xf6\xfc with 8-bit bytes\r\n";
		size_t k = sizeof line - 1 < n / 2 - off ? sizeof line - 1 : n / 2 - off;
		memcpy(m + off, line, k);
		off += k;
	}
	uint32_t x = 2463534242u; /* xorshift: the same bytes every run */
	while (off < n) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		m[off++] = (char)(x & 0xff);
	}
	*len = n;
	return m;
}

/* The whole of a gzip file as zcat would give it; checks the magic. */
static char *gunzip_file(const char *path, size_t *len)
{
	unsigned char magic[2];
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	assert_int_equal(fread(magic, 1, 2, fp), 2);
	fclose(fp);
	assert_int_equal(magic[0], 0x1f);
	assert_int_equal(magic[1], 0x8b);
	gzFile g = gzopen(path, "rb");
	assert_non_null(g);
	struct buf b = { 0 };
	char chunk[65536];
	int n;
	while ((n = gzread(g, chunk, sizeof chunk)) > 0)
		buf_append(&b, chunk, (size_t)n);
	assert_int_equal(n, 0);
	gzclose(g);
	*len = b.len;
	return b.data;
}

static void test_gzip_round_trip_shared(void **state)
{
	struct fixture *f = *state;
	use_gzip(f);
	size_t len;
	char *msg = mixed_message(&len);
	struct put_args a = { msg, len, THREE, 3, "QZ", "s@example.com", SYMBOLS };
	char **ids;
	size_t nids, created;
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_int_equal(created, 3);

	char p[3][512], plain[512];
	struct stat st[3];
	const char *rel[] = { "example.org/a", "example.org/b", "other.net/c" };
	for (int i = 0; i < 3; i++) {
		user_file(f, rel[i], ids[i], "eml.gz", p[i], sizeof p[i]);
		assert_int_equal(stat(p[i], &st[i]), 0);
		user_file(f, rel[i], ids[i], "eml", plain, sizeof plain);
		assert_int_equal(access(plain, F_OK), -1);
	}
	/* one inode for the three recipients, smaller than the message */
	assert_int_equal(st[0].st_nlink, 3);
	assert_int_equal(st[0].st_ino, st[1].st_ino);
	assert_int_equal(st[0].st_ino, st[2].st_ino);
	assert_true((size_t)st[0].st_size < len * 3 / 4);
	assert_int_equal(st[0].st_mode & 0777, 0600);

	/* zcat of the file gives the original bytes */
	size_t zlen;
	char *z = gunzip_file(p[0], &zlen);
	assert_int_equal(zlen, len);
	assert_memory_equal(z, msg, len);
	free(z);

	/* read back byte-exact; size and SHA-256 of the original */
	char hex[65];
	sha256_hex(msg, len, hex);
	struct qerr e;
	for (int i = 0; i < 3; i++) {
		struct buf b = { 0 };
		struct qentry q;
		assert_int_equal(store_read_content(f->s, ids[i], collect_cb, &b, &e), 0);
		assert_int_equal(b.len, len);
		assert_memory_equal(b.data, msg, len);
		buf_free(&b);
		assert_int_equal(store_get(f->s, ids[i], &q, &e), 0);
		assert_string_equal(q.meta.sha256, hex);
		assert_int_equal(q.meta.size, len);
		qentry_free(&q);
	}
	struct store_stats ss;
	assert_int_equal(store_stats(f->s, &ss, &e), 0);
	assert_int_equal(ss.entries, 3);
	assert_int_equal(ss.messages, 1);
	assert_int_equal(ss.bytes, (uint64_t)st[0].st_size); /* bytes on disk */

	/* a retry adds nothing; removing one recipient keeps the others' */
	char **ids2;
	size_t nids2, created2;
	put_ok(f->s, &a, &ids2, &nids2, &created2);
	assert_int_equal(created2, 0);
	assert_int_equal(store_remove(f->s, ids[0], &e), 0);
	assert_int_equal(access(p[0], F_OK), -1);
	assert_int_equal(stat(p[1], &st[1]), 0);
	assert_int_equal(st[1].st_nlink, 2);
	struct buf b = { 0 };
	assert_int_equal(store_read_content(f->s, ids[2], collect_cb, &b, &e), 0);
	assert_int_equal(b.len, len);
	assert_memory_equal(b.data, msg, len);
	buf_free(&b);

	/* expire frees the compressed file with its last link */
	struct expire_opts o = { .cutoff = clock_now() + 10 };
	struct expire_result r;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 2);
	assert_int_equal(r.messages, 1);
	assert_int_equal(r.bytes, (uint64_t)st[0].st_size);
	assert_int_equal(access(p[2], F_OK), -1);
	xfree_strv(ids, nids);
	xfree_strv(ids2, nids2);
	free(msg);
}

/* Stops a read after the first piece. */
static int first_piece_cb(const void *p, size_t n, void *arg)
{
	buf_append(arg, p, n);
	return 1;
}

/* The id a put of msg with qid from scan1 gives rcpt. */
static void derived_id(const char *msg, size_t len, const char *qid, const char *rcpt,
		       char id[ENTRY_ID_LEN + 1])
{
	struct qmeta m;
	memset(&m, 0, sizeof m);
	sha256_hex(msg, len, m.sha256);
	m.qid = (char *)qid;
	m.rspamd_server = (char *)"scan1";
	store_entry_id(&m, rcpt, id);
}

/* Leaves what a crash could: example.org/a's content file of id with the
 * suffix, holding four bytes that are not the message. */
static void plant_leftover(struct fixture *f, const char *id, const char *suffix, char *path,
			   size_t len)
{
	user_file(f, "example.org/a", id, suffix, path, len);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "half", 4), 4);
	close(fd);
}

static void test_gzip_mixed_and_damaged(void **state)
{
	struct fixture *f = *state;
	const char *const a_only[] = { "a@example.org" };
	struct put_args plain = { MSG, sizeof MSG - 1, a_only, 1, "QP", NULL, NULL };
	char **ids, **ids2, **ids3;
	size_t nids, nids2, nids3, created;
	put_ok(f->s, &plain, &ids, &nids, &created);
	use_gzip(f);

	/* a store written uncompressed stays readable; its retry is a no-op */
	struct qerr e;
	struct buf b = { 0 };
	put_ok(f->s, &plain, &ids2, &nids2, &created);
	assert_int_equal(created, 0);
	char path[512];
	user_file(f, "example.org/a", ids[0], "eml", path, sizeof path);
	assert_int_equal(access(path, F_OK), 0);
	user_file(f, "example.org/a", ids[0], "eml.gz", path, sizeof path);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(store_read_content(f->s, ids[0], collect_cb, &b, &e), 0);
	assert_int_equal(b.len, sizeof MSG - 1);
	assert_memory_equal(b.data, MSG, b.len);
	buf_reset(&b);

	/* a crash left a plain .eml for an entry that is now stored
	 * compressed: the leftover goes, the entry has one content file */
	size_t len;
	char *msg = mixed_message(&len);
	struct put_args big = { msg, len, a_only, 1, "QG", NULL, NULL };
	char id[ENTRY_ID_LEN + 1];
	derived_id(msg, len, "QG", a_only[0], id);
	char left[512];
	plant_leftover(f, id, "eml", left, sizeof left);
	put_ok(f->s, &big, &ids3, &nids3, &created);
	assert_int_equal(created, 1);
	assert_string_equal(ids3[0], id);
	assert_int_equal(access(left, F_OK), -1);
	assert_int_equal(store_read_content(f->s, id, collect_cb, &b, &e), 0);
	assert_int_equal(b.len, len);
	assert_memory_equal(b.data, msg, len);
	buf_reset(&b);
	struct store_filter all = all_filter();
	struct listed l;
	assert_int_equal(list_n(f->s, &all, &l), 2);

	/* a reader may stop early */
	assert_int_equal(store_read_content(f->s, id, first_piece_cb, &b, &e), 0);
	assert_true(b.len > 0 && b.len < len);
	assert_memory_equal(b.data, msg, b.len);
	buf_reset(&b);

	/* damaged content is an error, never returned as the message */
	char gz[512];
	struct stat st;
	user_file(f, "example.org/a", id, "eml.gz", gz, sizeof gz);
	assert_int_equal(stat(gz, &st), 0);
	assert_int_equal(truncate(gz, st.st_size - 4), 0); /* part of the trailer */
	assert_int_equal(store_read_content(f->s, id, collect_cb, &b, &e), -1);
	assert_int_equal(e.cls, QERR_PERM);
	buf_reset(&b);
	assert_int_equal(truncate(gz, st.st_size), 0); /* a zero length field */
	assert_int_equal(store_read_content(f->s, id, collect_cb, &b, &e), -1);
	assert_int_equal(e.cls, QERR_PERM);
	buf_free(&b);

	/* an orphaned .eml.gz is swept like an orphaned .eml */
	char orphan[512];
	user_file(f, "example.org/a", "0123456789abcdef01234567", "eml.gz", orphan,
		  sizeof orphan);
	int fd = open(orphan, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	set_now(clock_now() + 7200);
	struct expire_opts o = { .cutoff = 1 };
	struct expire_result r;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(access(orphan, F_OK), -1);
	assert_int_equal(access(gz, F_OK), 0);
	xfree_strv(ids, nids);
	xfree_strv(ids2, nids2);
	xfree_strv(ids3, nids3);
	free(msg);
}

/* The other way round: a crash left an .eml.gz (here not even gzip) for
 * an entry now stored plain.  The plain content is linked beside it and
 * is what every reader gets; once the entry is removed, the leftover is
 * an orphan that expire sweeps. */
static void test_gzip_leftover_beside_plain(void **state)
{
	struct fixture *f = *state;
	const char *const a_only[] = { "a@example.org" };
	struct put_args plain = { MSG, sizeof MSG - 1, a_only, 1, "QL", NULL, NULL };
	char id[ENTRY_ID_LEN + 1];
	derived_id(MSG, sizeof MSG - 1, "QL", a_only[0], id);
	struct qerr e;
	char **ids;
	size_t nids, created;
	/* the user's directory exists before the leftover can */
	struct put_args other = { MSG, sizeof MSG - 1, a_only, 1, "QO", NULL, NULL };
	char **ids0;
	size_t nids0;
	put_ok(f->s, &other, &ids0, &nids0, &created);
	char left[512], eml[512];
	plant_leftover(f, id, "eml.gz", left, sizeof left);

	put_ok(f->s, &plain, &ids, &nids, &created);
	assert_int_equal(created, 1);
	assert_string_equal(ids[0], id);
	user_file(f, "example.org/a", id, "eml", eml, sizeof eml);
	assert_int_equal(access(eml, F_OK), 0);
	assert_int_equal(access(left, F_OK), 0); /* left beside it, never read */
	assert_msg(f->s, id);
	struct qentry q;
	assert_int_equal(store_get(f->s, id, &q, &e), 0);
	assert_int_equal(q.meta.size, sizeof MSG - 1);
	qentry_free(&q);
	struct store_filter all = all_filter();
	struct listed l;
	assert_int_equal(list_n(f->s, &all, &l), 2);

	assert_int_equal(store_remove(f->s, id, &e), 0);
	assert_int_equal(access(eml, F_OK), -1);
	set_now(clock_now() + 7200);
	struct expire_opts o = { .cutoff = 1 };
	struct expire_result r;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(access(left, F_OK), -1);
	assert_int_equal(list_n(f->s, &all, &l), 1);
	xfree_strv(ids, nids);
	xfree_strv(ids0, nids0);
}

static void test_unknown_backend(void **state)
{
	struct fixture *f = *state;
	struct config c = f->c;
	c.backend = (char *)"mysql";
	struct store *s;
	struct qerr e;
	assert_int_equal(store_open(&s, &c, &e), -1);
	assert_int_equal(e.cls, QERR_PERM);
	assert_string_equal(e.msg, "unknown backend 'mysql' (file, pgsql, null)");
	c.backend = (char *)"file";
	c.file_root = (char *)"";
	assert_int_equal(store_open(&s, &c, &e), -1);
	assert_int_equal(e.cls, QERR_PERM);
}

static void test_entry_id(void **state)
{
	(void)state;
	struct qmeta m;
	memset(&m, 0, sizeof m);
	memset(m.sha256, 'a', 64);
	m.qid = (char *)"Q";
	m.rspamd_server = (char *)"s";
	char id[ENTRY_ID_LEN + 1], id2[ENTRY_ID_LEN + 1];
	store_entry_id(&m, "r@x", id);
	/* the documented derivation */
	char in[128], hex[65];
	size_t n = 0;
	memcpy(in + n, m.sha256, 65);
	n += 65;
	memcpy(in + n, "Q", 2);
	n += 2;
	memcpy(in + n, "s", 2);
	n += 2;
	memcpy(in + n, "r@x", 3);
	n += 3;
	sha256_hex(in, n, hex);
	assert_memory_equal(id, hex, ENTRY_ID_LEN);
	assert_int_equal(strlen(id), ENTRY_ID_LEN);
	assert_true(store_id_valid(id));
	store_entry_id(&m, "r@y", id2);
	assert_string_not_equal(id, id2);
	m.qid = NULL;
	store_entry_id(&m, "r@x", id2);
	assert_string_not_equal(id, id2);
	assert_false(store_id_valid("0123456789abcdef0123456"));
	assert_false(store_id_valid("0123456789abcdef012345678"));
	assert_false(store_id_valid("0123456789ABCDEF01234567"));
	assert_false(store_id_valid("0123456789abcdef0123456g"));
	assert_false(store_id_valid(NULL));
	assert_true(store_id_valid("0123456789abcdef01234567"));
}

/* 70 recipients need more descriptors synced per phase than one sync
 * batch holds (content, metadata, user and ids directories): every entry
 * is stored and readable, with the batches run through io_uring and one
 * descriptor after another alike. */
static void many_recipients(struct fixture *f, bool serial)
{
	enum { N = 70 };
	char *rcpt[N];
	for (int i = 0; i < N; i++)
		rcpt[i] = xasprintf("user%d@d%d.example", i, i % 7);
	sync_batch_serial(serial);
	struct put_args a = { MSG, sizeof MSG - 1, (const char *const *)rcpt, N, serial ? "QS" : "QP",
			      "sender@example.com", SYMBOLS };
	char **ids;
	size_t nids, created;
	put_ok(f->s, &a, &ids, &nids, &created);
	sync_batch_serial(false);
	assert_int_equal(nids, N);
	assert_int_equal(created, N);
	struct stat st;
	char p[512], rel[64];
	for (int i = 0; i < N; i++) {
		assert_rcpt(f->s, ids[i], rcpt[i]);
		snprintf(rel, sizeof rel, "d%d.example/user%d", i % 7, i);
		user_file(f, rel, ids[i], "eml", p, sizeof p);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_nlink, N);
	}
	xfree_strv(ids, nids);
	for (int i = 0; i < N; i++)
		free(rcpt[i]);
}

/* Reopens the fixture's store with file_sync = mode. */
static void use_sync(struct fixture *f, const char *mode)
{
	struct qerr e;
	store_close(f->s);
	f->c.file_sync = (char *)mode;
	assert_int_equal(store_open(&f->s, &f->c, &e), 0);
}

/* Stores one message for n recipients (new mailboxes, named by tag) and
 * checks every entry reads back; returns how many flushes it took:
 * syncfs calls in *fs, fsync and fdatasync in *files, and what the sync
 * batches issued in *batch (io_uring's fsyncs are not seen by the
 * wrappers). */
static void flushes_of_put(struct fixture *f, const char *tag, size_t n, bool again,
			   unsigned long *fs, unsigned long *files, unsigned long *batch)
{
	char *rcpt[50];
	assert_true(n <= 50);
	for (size_t i = 0; i < n; i++)
		rcpt[i] = xasprintf("u%zu-%s@d%zu.example", i, tag, i % 3);
	struct put_args a = { MSG, sizeof MSG - 1, (const char *const *)rcpt, n, tag,
			      "sender@example.com", SYMBOLS };
	char **ids;
	size_t nids, created;
	if (again) { /* the mailboxes exist: only the commit's own flushes */
		put_ok(f->s, &a, &ids, &nids, &created);
		xfree_strv(ids, nids);
		a.qid = "again";
	}
	unsigned long s0 = n_syncfs, f0 = n_fsync + n_fdatasync, b0 = sync_batch_flushes();
	put_ok(f->s, &a, &ids, &nids, &created);
	*fs = n_syncfs - s0;
	*files = n_fsync + n_fdatasync - f0;
	*batch = sync_batch_flushes() - b0;
	assert_int_equal(created, n);
	for (size_t i = 0; i < n; i++) {
		assert_rcpt(f->s, ids[i], rcpt[i]);
		assert_msg(f->s, ids[i]);
		free(rcpt[i]);
	}
	xfree_strv(ids, nids);
}

/* file_sync = log (and auto on a journalling file system): one fdatasync of the log per message
 * whatever the number of recipients, nothing else on the committing
 * thread, and nothing at all for a retry whose entries exist; syncfs: two
 * flushes per message, new mailboxes included, and no fsync at all;
 * fsync: the content, the message record and each directory (2 + N). */
static void test_flushes_per_message(void **state)
{
	struct fixture *f = *state;
	static const size_t ns[] = { 1, 5, 50 };
	static const char *const modes[] = { "log", "auto", "syncfs", "fsync" };
	char why[128];
	int rfd = open(f->root, O_RDONLY | O_DIRECTORY);
	assert_true(rfd >= 0);
	bool sound = sync_batch_fs_kind(rfd, why, sizeof why) == SYNC_FS_SOUND;
	close(rfd);
	for (size_t m = 0; m < 4; m++) {
		/* auto: the log where the file system journals, else two
		 * phases of syncfs (store_file.c, choose_sync) */
		bool logged = m == 0 || (m == 1 && sound), syncfs = m == 2 || (m == 1 && !sound);
		use_sync(f, modes[m]);
		for (size_t i = 0; i < 3; i++) {
			char tag[16];
			unsigned long fs, files, batch;
			snprintf(tag, sizeof tag, "%c%zu", modes[m][0], ns[i]);
			/* log: the mailboxes and the log exist, as on a running
			 * worker; the first commit of a process makes its log */
			flushes_of_put(f, tag, ns[i], !syncfs, &fs, &files, &batch);
			if (logged) {
				assert_int_equal(fs, 0);
				assert_int_equal(files, 1);
				assert_int_equal(batch, 0);
				continue;
			}
			/* syncfs on ext4 without a journal: each syncfs
			 * followed by an fsync (store_file.c, choose_sync) */
			unsigned long after = syncfs && !sound ? 2 : 0;
			assert_int_equal(fs, syncfs ? 2 : 0);
			assert_int_equal(batch, syncfs ? 2 + after : 2 + ns[i]);
			if (syncfs)
				assert_int_equal(files, after);
		}
	}
	/* a retry whose entries all exist waits for nothing */
	use_sync(f, "log");
	struct put_args a = { MSG, sizeof MSG - 1, THREE, 3, "QRETRY", NULL, NULL };
	char **ids;
	size_t nids, created;
	put_ok(f->s, &a, &ids, &nids, &created);
	xfree_strv(ids, nids);
	unsigned long f0 = n_fsync + n_fdatasync + n_syncfs;
	put_ok(f->s, &a, &ids, &nids, &created);
	assert_int_equal(created, 0);
	assert_int_equal(n_fsync + n_fdatasync + n_syncfs - f0, 0);
	xfree_strv(ids, nids);
	f->c.file_sync = NULL;
}


/* A path's inode and link count (lstat: an ids entry is never followed). */
static struct stat lstat_ok(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		fail_msg("lstat %s: %s", path, strerror(errno));
	return st;
}

static void id_path(struct fixture *f, const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s/ids/%.2s/%s", f->root, id, id);
}

/* The directories of THREE's recipients, below users/. */
static const char *const THREE_DIRS[] = { "example.org/a", "example.org/b", "other.net/c" };

/* Stores MSG for THREE under qid, the commit reporting want entries
 * created; returns the entry ids. */
static char **put_three_made(struct fixture *f, const char *qid, size_t *nids, size_t want)
{
	struct put_args a = { MSG, sizeof MSG - 1, THREE, 3, qid, "sender@example.com", SYMBOLS };
	char **ids;
	size_t created;
	put_ok(f->s, &a, &ids, nids, &created);
	assert_int_equal(created, want);
	return ids;
}

/* put_three_made, three new entries. */
static char **put_three(struct fixture *f, const char *qid, size_t *nids)
{
	return put_three_made(f, qid, nids, 3);
}

/* Each of put_three's entries reads back with its own recipient. */
static void assert_three(struct fixture *f, char **ids)
{
	for (size_t i = 0; i < 3; i++)
		assert_rcpt(f->s, ids[i], THREE[i]);
}

/* A message's entries share one metadata file, its record: each
 * recipient's .json and ids entry are links of it (2N links, no inode
 * per recipient).  A status change gives that entry a .json of its own
 * and leaves the others' as they were. */
static void test_one_record_per_message(void **state)
{
	struct fixture *f = *state;
	size_t nids;
	char **ids = put_three(f, "QR", &nids);
	char p[512];
	user_file(f, THREE_DIRS[0], ids[0], "json", p, sizeof p);
	struct stat first = lstat_ok(p);
	assert_true(S_ISREG(first.st_mode));
	assert_int_equal(first.st_nlink, 6);
	assert_int_equal(first.st_mode & 0777, 0600);
	for (size_t i = 0; i < 3; i++) {
		user_file(f, THREE_DIRS[i], ids[i], "json", p, sizeof p);
		assert_int_equal(lstat_ok(p).st_ino, first.st_ino);
		id_path(f, ids[i], p, sizeof p);
		struct stat st = lstat_ok(p);
		assert_true(S_ISREG(st.st_mode));
		assert_int_equal(st.st_ino, first.st_ino);
	}
	/* its text names every entry, and what they share once */
	user_file(f, THREE_DIRS[1], ids[1], "json", p, sizeof p);
	struct buf b = { 0 };
	FILE *fp = fopen(p, "r");
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
		buf_append(&b, chunk, n);
	fclose(fp);
	buf_appendc(&b, '\0');
	for (size_t i = 0; i < 3; i++)
		assert_non_null(strstr(b.data, ids[i]));
	assert_non_null(strstr(b.data, "\"entries\""));
	assert_null(strstr(b.data, "\"rcpt\""));
	buf_free(&b);

	struct qerr e;
	struct qentry q;
	assert_int_equal(store_set_status(f->s, ids[1], ENTRY_RELEASED, &e), 0);
	user_file(f, THREE_DIRS[1], ids[1], "json", p, sizeof p);
	struct stat own = lstat_ok(p);
	assert_int_not_equal(own.st_ino, first.st_ino);
	assert_int_equal(own.st_nlink, 1);
	user_file(f, THREE_DIRS[0], ids[0], "json", p, sizeof p);
	assert_int_equal(lstat_ok(p).st_nlink, 5);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(store_get(f->s, ids[i], &q, &e), 0);
		assert_string_equal(q.rcpt, THREE[i]);
		assert_int_equal(q.status, i == 1 ? ENTRY_RELEASED : ENTRY_QUARANTINED);
		assert_string_equal(q.meta.qid, "QR");
		qentry_free(&q);
	}
	/* removing one entry leaves the record to the others */
	assert_int_equal(store_remove(f->s, ids[0], &e), 0);
	assert_int_equal(store_get(f->s, ids[0], &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	user_file(f, THREE_DIRS[2], ids[2], "json", p, sizeof p);
	assert_int_equal(lstat_ok(p).st_nlink, 3);
	assert_rcpt(f->s, ids[2], THREE[2]);
	/* an ids entry that is not a readable record of its entry (a crash's
	 * leftover) is searched past and made again */
	id_path(f, ids[2], p, sizeof p);
	assert_int_equal(unlink(p), 0);
	fp = fopen(p, "w");
	fputs("{\"entries\": {}", fp);
	fclose(fp);
	assert_rcpt(f->s, ids[2], THREE[2]);
	struct store_filter all = all_filter();
	struct listed l;
	assert_int_equal(list_n(f->s, &all, &l), 2);
	xfree_strv(ids, nids);
}

/* The ids directories a process keeps open may be removed under it (by
 * hand): its next commit there makes the directory and the link again. */
static void test_ids_dir_removed(void **state)
{
	struct fixture *f = *state;
	size_t nids;
	char **ids = put_three(f, "QD", &nids);
	char p[512], cmd[600];
	snprintf(p, sizeof p, "%s/ids/%.2s", f->root, ids[0]);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
	assert_int_equal(system(cmd), 0);
	struct qerr e;
	assert_int_equal(store_remove(f->s, ids[0], &e), 0);
	struct put_args a = { MSG, sizeof MSG - 1, THREE, 3, "QD", "sender@example.com", SYMBOLS };
	char **again;
	size_t nagain, created;
	put_ok(f->s, &a, &again, &nagain, &created);
	assert_int_equal(created, 1);
	id_path(f, ids[0], p, sizeof p);
	assert_true(S_ISREG(lstat_ok(p).st_mode));
	assert_rcpt(f->s, ids[0], THREE[0]);
	xfree_strv(ids, nids);
	xfree_strv(again, nagain);
}

/* A store as versions before message records wrote it (a .json of its
 * own per entry, ids entries symlinks to the user directory) is read as
 * it is; new messages go beside it in the new form. */
static void test_store_of_earlier_form(void **state)
{
	struct fixture *f = *state;
	size_t nids;
	char **ids = put_three(f, "QO", &nids);
	struct qerr e;
	struct qentry q;
	char p[512], tmp[600], target[128];
	for (size_t i = 0; i < 3; i++) {
		/* rewrite the entry as the earlier versions wrote it */
		assert_int_equal(store_get(f->s, ids[i], &q, &e), 0);
		char *json = qentry_to_json(&q, true);
		int64_t at = q.meta.received_at;
		qentry_free(&q);
		user_file(f, THREE_DIRS[i], ids[i], "json", p, sizeof p);
		snprintf(tmp, sizeof tmp, "%s.new", p);
		FILE *fp = fopen(tmp, "w");
		fputs(json, fp);
		fclose(fp);
		free(json);
		struct timespec ts[2] = { { .tv_sec = at }, { .tv_sec = at } };
		assert_int_equal(utimensat(AT_FDCWD, tmp, ts, 0), 0);
		assert_int_equal(rename(tmp, p), 0);
		id_path(f, ids[i], p, sizeof p);
		assert_int_equal(unlink(p), 0);
		snprintf(target, sizeof target, "../../users/%s", THREE_DIRS[i]);
		assert_int_equal(symlink(target, p), 0);
	}
	user_file(f, THREE_DIRS[0], ids[0], "json", p, sizeof p);
	assert_int_equal(lstat_ok(p).st_nlink, 1);

	/* the store opened again reads, lists, counts, changes and removes them */
	store_close(f->s);
	assert_int_equal(store_open(&f->s, &f->c, &e), 0);
	for (size_t i = 0; i < 3; i++) {
		assert_rcpt(f->s, ids[i], THREE[i]);
		struct buf b = { 0 };
		assert_int_equal(store_read_content(f->s, ids[i], collect_cb, &b, &e), 0);
		assert_int_equal(b.len, sizeof MSG - 1);
		buf_free(&b);
	}
	struct put_args a2 = { MSG, sizeof MSG - 1, THREE, 3, "QN", "sender@example.com", SYMBOLS };
	char **ids2;
	size_t nids2, created2;
	put_ok(f->s, &a2, &ids2, &nids2, &created2);
	assert_int_equal(created2, 3);
	struct store_filter all = all_filter();
	struct listed l;
	assert_int_equal(list_n(f->s, &all, &l), 6);
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st, &e), 0);
	assert_int_equal(st.entries, 6);
	assert_int_equal(st.by_status[ENTRY_QUARANTINED], 6);
	assert_int_equal(store_set_status(f->s, ids[0], ENTRY_DELETED, &e), 0);
	assert_int_equal(store_get(f->s, ids[0], &q, &e), 0);
	assert_int_equal(q.status, ENTRY_DELETED);
	qentry_free(&q);
	assert_int_equal(store_remove(f->s, ids[1], &e), 0);
	assert_int_equal(store_get(f->s, ids[1], &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	/* expire takes old and new form alike */
	struct expire_opts o = { .cutoff = 4102444800 }; /* 2100: everything */
	struct expire_result r;
	assert_int_equal(store_expire(f->s, &o, &r, &e), 0);
	assert_int_equal(r.entries, 5);
	assert_int_equal(list_n(f->s, &all, &l), 0);
	xfree_strv(ids, nids);
	xfree_strv(ids2, nids2);
}

/* A message to more recipients than one record names gets several: each
 * recipient's .json is a link of its own part's record. */
static void test_records_of_many_recipients(void **state)
{
	struct fixture *f = *state;
	enum { N = 1003 };
	char **rcpt = xcalloc(N, sizeof *rcpt);
	for (int i = 0; i < N; i++)
		rcpt[i] = xasprintf("m%d@many.example", i);
	f->c.max_recipients = N;
	struct put_args a = { MSG, sizeof MSG - 1, (const char *const *)rcpt, N, "QM",
			      "sender@example.com", SYMBOLS };
	char **ids;
	size_t nids, created;
	put_ok(f->s, &a, &ids, &nids, &created);
	f->c.max_recipients = 1000;
	assert_int_equal(created, N);
	char p[512], rel[64];
	snprintf(rel, sizeof rel, "many.example/m0");
	user_file(f, rel, ids[0], "json", p, sizeof p);
	struct stat st0 = lstat_ok(p);
	assert_int_equal(st0.st_nlink, 2000);
	snprintf(rel, sizeof rel, "many.example/m%d", N - 1);
	user_file(f, rel, ids[N - 1], "json", p, sizeof p);
	struct stat st1 = lstat_ok(p);
	assert_int_not_equal(st1.st_ino, st0.st_ino);
	assert_int_equal(st1.st_nlink, 2 * (N - 1000));
	for (int i = 0; i < N; i += 97)
		assert_rcpt(f->s, ids[i], rcpt[i]);
	assert_rcpt(f->s, ids[N - 1], rcpt[N - 1]);
	xfree_strv(ids, nids);
	for (int i = 0; i < N; i++)
		free(rcpt[i]);
	free(rcpt);
}

static void test_many_recipients(void **state)
{
	many_recipients(*state, false);
}

/* The names of the log files in wal/ (space-separated in out); their
 * number. */
static size_t wal_files(struct fixture *f, char *out, size_t len)
{
	char p[600];
	snprintf(p, sizeof p, "%s/wal", f->root);
	DIR *d = opendir(p);
	size_t n = 0;
	out[0] = '\0';
	if (d == NULL)
		return 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		n++;
		size_t l = strlen(out);
		snprintf(out + l, len - l, "%s ", de->d_name);
	}
	closedir(d);
	return n;
}

/* The body of message i of crashed_child. */
static void crash_body(int i, char *body, size_t len, char *qid, size_t qlen)
{
	snprintf(body, len, "Subject: %d\r\n\r\nbody %d\r\n", i, i);
	snprintf(qid, qlen, "QW%d", i);
}

/* With the fixture's store closed, a child process stores nmsg messages
 * to THREE (file_sync = log, no checkpoint meanwhile; with defer, its
 * commits leave their names to the next, the last's never made) and is killed
 * without closing its store, as a killed worker or a power cut leaves it:
 * its two log files stay, named in names. */
static void crashed_child(struct fixture *f, int nmsg, char *names, size_t len, bool defer)
{
	store_close(f->s);
	f->s = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *s;
		struct qerr e;
		wal_interval_ms = 600000;
		f->c.file_sync = (char *)"log";
		if (store_open(&s, &f->c, &e) < 0)
			_exit(2);
		if (defer) /* as the daemon: each put settles the one before */
			store_defer(s);
		for (int i = 0; i < nmsg; i++) {
			char qid[16], body[200];
			crash_body(i, body, sizeof body, qid, sizeof qid);
			struct put_args a = { body, strlen(body), THREE, 3, qid, NULL, NULL };
			char **ids;
			size_t nids, created;
			if (put(s, &a, &ids, &nids, &created, &e) < 0 || created != 3)
				_exit(3);
			xfree_strv(ids, nids);
		}
		/* killed, as a worker can be: no store_close, the log is not
		 * retired (and no exit handler runs, valgrind's included) */
		kill(getpid(), SIGKILL);
		_exit(4);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st))
		fail_msg("the child failed before it was killed (exit %d)", WEXITSTATUS(st));
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGKILL);
	assert_int_equal(wal_files(f, names, len), 2);
}

/* Removes every file below users/ or ids/ (what a power cut may take of
 * names that were never synced), keeping the directories. */
static int rm_user_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_F || flag == FTW_SL)
		unlink(path);
	return 0;
}

/* Entry ids of crashed_child's message i, one per THREE recipient. */
static void crash_ids(int i, char ids[3][ENTRY_ID_LEN + 1])
{
	struct qmeta m;
	char body[200], qid[16];
	memset(&m, 0, sizeof m);
	crash_body(i, body, sizeof body, qid, sizeof qid);
	sha256_hex(body, strlen(body), m.sha256);
	m.qid = qid;
	m.rspamd_server = (char *)"scan1";
	for (int r = 0; r < 3; r++)
		store_entry_id(&m, THREE[r], ids[r]);
}

/* Every entry of crashed_child's first n messages reads back whole. */
static void assert_crash_entries(struct fixture *f, int n)
{
	for (int i = 0; i < n; i++) {
		char body[200], qid[16], ids[3][ENTRY_ID_LEN + 1];
		crash_body(i, body, sizeof body, qid, sizeof qid);
		crash_ids(i, ids);
		for (int r = 0; r < 3; r++) {
			struct qerr e;
			struct buf b = { 0 };
			assert_int_equal(store_read_content(f->s, ids[r], collect_cb, &b, &e), 0);
			assert_int_equal(b.len, strlen(body));
			assert_memory_equal(b.data, body, b.len);
			buf_free(&b);
			struct qentry q;
			assert_int_equal(store_get(f->s, ids[r], &q, &e), 0);
			assert_string_equal(q.meta.qid, qid);
			assert_string_equal(q.rcpt, THREE[r]);
			qentry_free(&q);
		}
	}
}

/* A process that dies with records in its log: opening the store replays
 * them, so every entry the log holds is back, byte-exact, whether a power
 * cut took its names or left them damaged (content cut short, the shared
 * record overwritten); then the log is gone. */
static void test_replay_after_crash(void **state)
{
	struct fixture *f = *state;
	char names[400], p[600];
	crashed_child(f, 4, names, sizeof names, false);
	/* message 3: its content cut short and its record garbage */
	char ids[3][ENTRY_ID_LEN + 1];
	crash_ids(3, ids);
	user_file(f, THREE_DIRS[0], ids[0], "eml", p, sizeof p);
	assert_int_equal(truncate(p, 5), 0);
	user_file(f, THREE_DIRS[0], ids[0], "json", p, sizeof p);
	int fd = open(p, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"id\":", 6), 6);
	close(fd);
	/* messages 0 to 2: every name gone */
	for (int i = 0; i < 3; i++) {
		char mids[3][ENTRY_ID_LEN + 1];
		crash_ids(i, mids);
		for (int r = 0; r < 3; r++) {
			user_file(f, THREE_DIRS[r], mids[r], "eml", p, sizeof p);
			assert_int_equal(unlink(p), 0);
			user_file(f, THREE_DIRS[r], mids[r], "json", p, sizeof p);
			assert_int_equal(unlink(p), 0);
		}
	}
	snprintf(p, sizeof p, "%s/ids", f->root);
	nftw(p, rm_user_file, 16, FTW_PHYS);
	struct qerr e;
	assert_int_equal(store_open(&f->s, &f->c, &e), 0);
	assert_int_equal(wal_files(f, names, sizeof names), 0);
	struct store_filter all = all_filter();
	struct listed l;
	assert_int_equal(list_n(f->s, &all, &l), 12);
	assert_crash_entries(f, 4);
}

/* A record cut short (the tail a power cut tore) is not replayed; the
 * records before it are. */
static void test_torn_record_not_replayed(void **state)
{
	struct fixture *f = *state;
	char names[400], p[600];
	crashed_child(f, 2, names, sizeof names, false);
	/* damage the last byte of the last record in either file (the other
	 * holds none) */
	char *save = NULL;
	size_t damaged = 0;
	for (char *name = strtok_r(names, " ", &save); name != NULL;
	     name = strtok_r(NULL, " ", &save)) {
		snprintf(p, sizeof p, "%s/wal/%s", f->root, name);
		struct stat st;
		assert_int_equal(stat(p, &st), 0);
		int fd = open(p, O_RDWR);
		assert_true(fd >= 0);
		char *data = xmalloc((size_t)st.st_size);
		assert_int_equal(pread(fd, data, (size_t)st.st_size, 0), st.st_size);
		off_t last = st.st_size - 1;
		while (last > 4096 && data[last] == 0)
			last--;
		if (last > 4096) {
			data[last] ^= 0x55;
			assert_int_equal(pwrite(fd, &data[last], 1, last), 1);
			damaged++;
		}
		free(data);
		close(fd);
	}
	assert_int_equal(damaged, 1);
	snprintf(p, sizeof p, "%s/users", f->root);
	nftw(p, rm_user_file, 16, FTW_PHYS);
	struct qerr e;
	assert_int_equal(store_open(&f->s, &f->c, &e), 0);
	struct store_filter all = all_filter();
	struct listed l;
	assert_int_equal(list_n(f->s, &all, &l), 3); /* the first message only */
	assert_crash_entries(f, 1);
}

/* A store closed in order retires its log: nothing is left in wal/, and
 * the entries are there without a replay. */
static void test_close_retires_log(void **state)
{
	struct fixture *f = *state;
	use_sync(f, "log");
	size_t nids;
	char **ids = put_three(f, "QCLOSE", &nids);
	char names[400];
	assert_int_equal(wal_files(f, names, sizeof names), 2);
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(wal_files(f, names, sizeof names), 0);
	struct qerr e;
	assert_int_equal(store_open(&f->s, &f->c, &e), 0);
	assert_three(f, ids);
	xfree_strv(ids, nids);
	f->c.file_sync = NULL;
}

/* The checkpoint retires records while the process lives: after it, a
 * kill leaves nothing to replay, and the entries are durable names. */
static void test_checkpoint_retires(void **state)
{
	struct fixture *f = *state;
	wal_interval_ms = 50;
	use_sync(f, "log");
	size_t nids;
	char **ids = put_three(f, "QCKPT", &nids);
	char names[400], p[600];
	assert_int_equal(wal_files(f, names, sizeof names), 2);
	/* both files' headers at a later generation once retired: wait for
	 * the thread, bounded */
	bool retired = false;
	for (int tries = 0; tries < 200 && !retired; tries++) {
		usleep(20000);
		retired = true;
		char copy[400], *save = NULL;
		snprintf(copy, sizeof copy, "%s", names);
		for (char *name = strtok_r(copy, " ", &save); name != NULL;
		     name = strtok_r(NULL, " ", &save)) {
			snprintf(p, sizeof p, "%s/wal/%s", f->root, name);
			int fd = open(p, O_RDONLY);
			assert_true(fd >= 0);
			uint64_t gen = 0;
			assert_int_equal(pread(fd, &gen, 8, 8), 8);
			close(fd);
			/* the file that took the record was retired: generation 2 */
			size_t l = strlen(name);
			if (gen == 1 && l > 2 && strcmp(name + l - 2, ".0") == 0)
				retired = false;
		}
	}
	wal_interval_ms = 1000;
	assert_true(retired);
	assert_three(f, ids);
	xfree_strv(ids, nids);
	f->c.file_sync = NULL;
}

/* A record that can never be replayed (not this store's) does not hold
 * up the others: its log file is kept aside as wal/.bad.<name> by the
 * next opener (here the crashed child), never tried again, and another
 * dead process's log is replayed as usual. */
static void test_bad_record_kept_aside(void **state)
{
	struct fixture *f = *state;
	char p[600], names[400];
	snprintf(p, sizeof p, "%s/wal", f->root);
	assert_int_equal(mkdir(p, 0700) == 0 || errno == EEXIST, 1);
	int rootfd = open(f->root, O_RDONLY | O_DIRECTORY);
	int walfd = open(p, O_RDONLY | O_DIRECTORY);
	assert_true(rootfd >= 0 && walfd >= 0);
	struct wal *w;
	struct qerr e;
	assert_int_equal(wal_open(&w, rootfd, walfd, false, &e), 0);
	static const char junk[] = "not a payload of this store";
	assert_int_equal(wal_append(w, junk, sizeof junk, -1, 0, 0, &e), 0);
	wal_abandon(w);
	crashed_child(f, 2, names, sizeof names, false); /* its two log files, no other */
	snprintf(p, sizeof p, "%s/users", f->root);
	nftw(p, rm_user_file, 16, FTW_PHYS);
	assert_int_equal(store_open(&f->s, &f->c, &e), 0);
	assert_int_equal(wal_files(f, names, sizeof names), 0);
	assert_crash_entries(f, 2);
	size_t bad = 0;
	DIR *d = fdopendir(walfd);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		bad += strncmp(de->d_name, ".bad.", 5) == 0;
	closedir(d);
	assert_int_equal(bad, 1); /* the file that held it; its empty twin went */
	/* opened again: nothing more to replay, the bad log left alone */
	store_close(f->s);
	assert_int_equal(store_open(&f->s, &f->c, &e), 0);
	close(rootfd);
}

/* A log that cannot be made (here wal/ is a file) does not stop the
 * store: the message is committed without it, two-phase, and reads back;
 * the log is tried again with the next message. */
static void test_no_log_falls_back(void **state)
{
	struct fixture *f = *state;
	store_close(f->s);
	f->s = NULL;
	char p[600];
	snprintf(p, sizeof p, "%s/wal", f->root);
	assert_int_equal(rmdir(p) == 0 || errno == ENOENT, 1);
	int fd = open(p, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	f->c.file_sync = (char *)"log";
	struct qerr e;
	assert_int_equal(store_open(&f->s, &f->c, &e), 0);
	unsigned long s0 = n_syncfs, f0 = n_fsync + n_fdatasync;
	size_t nids;
	char **ids = put_three(f, "QNOLOG", &nids);
	assert_true(n_syncfs - s0 + n_fsync + n_fdatasync - f0 >= 2); /* two phases */
	assert_three(f, ids);
	xfree_strv(ids, nids);
	/* the log's place is free again: the next message uses it */
	assert_int_equal(unlink(p), 0);
	ids = put_three(f, "QLOGAGAIN", &nids);
	char names[400];
	assert_int_equal(wal_files(f, names, sizeof names), 2);
	xfree_strv(ids, nids);
	f->c.file_sync = NULL;
}

/* The names of put_three's entries are not there (a deferred commit
 * before file_settle). */
static void assert_three_unnamed(struct fixture *f, char **ids)
{
	for (size_t i = 0; i < 3; i++) {
		struct qentry q;
		struct qerr e;
		assert_int_equal(store_get(f->s, ids[i], &q, &e), -1);
		assert_int_equal(e.cls, QERR_NOTFOUND);
	}
}

/* put_three by a store with the log whose commits leave their names to
 * store_settle, as the daemon's do; none is there yet. */
static char **deferred_three(struct fixture *f, const char *qid, size_t *nids)
{
	use_sync(f, "log");
	store_defer(f->s);
	char **ids = put_three(f, qid, nids);
	assert_three_unnamed(f, ids);
	return ids;
}

/* store_settle succeeds. */
static void settle_ok(struct fixture *f)
{
	struct qerr e;
	qerr_clear(&e);
	if (store_settle(f->s, &e) != 0)
		fail_msg("settle failed: %s", e.msg);
}

/* The daemon's commit (store_defer): the entries are in the log when the
 * commit returns, and nothing of them is in users/ before the answer
 * (only a new recipient's directory, made when the commit looks, so that
 * one that cannot be made fails the put); they get their names at
 * store_settle.  Meanwhile another process that opens
 * the store waits for them: a child opens it while the names are
 * pending, and must find all three once its open returns, although the
 * parent makes them only after a pause. */
static void test_deferred_names(void **state)
{
	struct fixture *f = *state;
	size_t nids;
	char **ids = deferred_three(f, "QDEFER", &nids);
	char d[600];
	for (int r = 0; r < 3; r++) {
		snprintf(d, sizeof d, "%s/users/%s", f->root, THREE_DIRS[r]);
		DIR *dir = opendir(d);
		assert_non_null(dir);
		struct dirent *de;
		while ((de = readdir(dir)) != NULL)
			if (de->d_name[0] != '.')
				fail_msg("users/%s/%s before the answer", THREE_DIRS[r], de->d_name);
		closedir(dir);
	}
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *s;
		struct qerr e;
		if (store_open(&s, &f->c, &e) < 0)
			_exit(2);
		for (size_t i = 0; i < 3; i++) {
			struct qentry q;
			if (store_get(s, ids[i], &q, &e) < 0)
				_exit(3);
			qentry_free(&q);
		}
		_exit(0);
	}
	usleep(300000);
	settle_ok(f);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_three(f, ids);
	/* settling twice is nothing; a put settles what was left before it */
	settle_ok(f);
	char **more = put_three(f, "QDEFER2", &nids);
	assert_three_unnamed(f, more);
	char **third = put_three(f, "QDEFER3", &nids);
	assert_three(f, more);
	settle_ok(f);
	assert_three(f, third);
	xfree_strv(ids, nids);
	xfree_strv(more, nids);
	xfree_strv(third, nids);
	f->c.file_sync = NULL;
}

/* The inode numbers of an entry's content and .json. */
static void entry_inodes(struct fixture *f, int r, const char *id, ino_t *eml, ino_t *json)
{
	char p[600];
	user_file(f, THREE_DIRS[r], id, "eml", p, sizeof p);
	*eml = lstat_ok(p).st_ino;
	user_file(f, THREE_DIRS[r], id, "json", p, sizeof p);
	*json = lstat_ok(p).st_ino;
}

/* Retries under the daemon's commit: one whose entries are all stored
 * writes nothing and leaves each as it was (a status changed since stays,
 * the names keep their inodes); a crash's leftovers (content without
 * .json, .json without content) are made whole at settle; a gzip store's
 * retry of an entry stored plain keeps the plain content. */
static void test_deferred_retries(void **state)
{
	struct fixture *f = *state;
	size_t nids;
	struct qerr e;
	wal_interval_ms = 600000; /* no checkpoint's flush in the count below */
	char **ids = deferred_three(f, "QRETRY", &nids);
	settle_ok(f);
	assert_int_equal(store_set_status(f->s, ids[1], ENTRY_RELEASED, &e), 0);
	ino_t eml[3], json[3];
	for (int r = 0; r < 3; r++)
		entry_inodes(f, r, ids[r], &eml[r], &json[r]);

	unsigned long f0 = n_fsync + n_fdatasync + n_syncfs;
	char **again = put_three_made(f, "QRETRY", &nids, 0);
	assert_int_equal(n_fsync + n_fdatasync + n_syncfs - f0, 0); /* no log record */
	for (int r = 0; r < 3; r++)
		assert_string_equal(again[r], ids[r]);
	settle_ok(f);
	for (int r = 0; r < 3; r++) {
		ino_t a, b;
		entry_inodes(f, r, ids[r], &a, &b);
		assert_int_equal(a, eml[r]);
		assert_int_equal(b, json[r]);
	}
	struct qentry q;
	assert_int_equal(store_get(f->s, ids[1], &q, &e), 0);
	assert_int_equal(q.status, ENTRY_RELEASED);
	qentry_free(&q);
	struct store_filter all = all_filter();
	struct listed l;
	assert_int_equal(list_n(f->s, &all, &l), 3);

	/* leftovers: entry 0 without its .json, entry 2 without content */
	char p[600];
	user_file(f, THREE_DIRS[0], ids[0], "json", p, sizeof p);
	assert_int_equal(unlink(p), 0);
	user_file(f, THREE_DIRS[2], ids[2], "eml", p, sizeof p);
	assert_int_equal(unlink(p), 0);
	char **third = put_three_made(f, "QRETRY", &nids, 2);
	/* no content, no entry until settle (a lost .json, by contrast, a
	 * get makes again from the ids entry: test_lost_name_restored) */
	assert_int_equal(store_get(f->s, ids[2], &q, &e), -1);
	assert_int_equal(e.cls, QERR_NOTFOUND);
	settle_ok(f);
	assert_three(f, ids);
	for (int r = 0; r < 3; r += 2)
		assert_msg(f->s, ids[r]);
	assert_int_equal(store_get(f->s, ids[1], &q, &e), 0);
	assert_int_equal(q.status, ENTRY_RELEASED);
	qentry_free(&q);

	/* compress = gzip now: the plain content is not replaced */
	use_gzip(f);
	store_defer(f->s);
	char **fourth = put_three_made(f, "QRETRY", &nids, 0);
	settle_ok(f);
	for (int r = 0; r < 3; r++) {
		user_file(f, THREE_DIRS[r], ids[r], "eml", p, sizeof p);
		assert_int_equal(access(p, F_OK), 0);
		user_file(f, THREE_DIRS[r], ids[r], "eml.gz", p, sizeof p);
		assert_int_equal(access(p, F_OK), -1);
	}
	assert_int_equal(list_n(f->s, &all, &l), 3);
	xfree_strv(ids, nids);
	xfree_strv(again, nids);
	xfree_strv(third, nids);
	xfree_strv(fourth, nids);
	f->c.file_sync = NULL;
	f->c.compress = NULL;
	wal_interval_ms = 1000;
}

/* A worker killed after its answer and before the names: the next
 * opener replays the log, and every answered entry is there whole. */
static void test_deferred_crash(void **state)
{
	struct fixture *f = *state;
	char names[400], p[600];
	crashed_child(f, 2, names, sizeof names, true);
	char ids[3][ENTRY_ID_LEN + 1];
	crash_ids(1, ids);
	for (int r = 0; r < 3; r++) { /* the last message: answered, not named */
		user_file(f, THREE_DIRS[r], ids[r], "json", p, sizeof p);
		assert_int_equal(access(p, F_OK), -1);
	}
	struct qerr e;
	assert_int_equal(store_open(&f->s, &f->c, &e), 0);
	assert_int_equal(wal_files(f, names, sizeof names), 0);
	assert_crash_entries(f, 2);
}

/* Names that cannot be made after the answer (an ids directory's place
 * taken by a file): settle reports it, and the log, abandoned as a crash
 * would leave it, is replayed at once: every entry is there, the log is
 * gone, and the next message opens a new one. */
static void test_deferred_failure_replays(void **state)
{
	struct fixture *f = *state;
	size_t nids;
	char **ids = deferred_three(f, "QDFAIL", &nids);
	char x[600];
	snprintf(x, sizeof x, "%s/ids/%.2s", f->root, ids[0]);
	int fd = open(x, O_CREAT | O_EXCL | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	struct qerr e;
	assert_int_equal(store_settle(f->s, &e), -1);
	assert_int_equal(e.cls, QERR_TEMP);
	assert_non_null(strstr(e.msg, "Not a directory"));
	char names[400];
	assert_int_equal(wal_files(f, names, sizeof names), 0);
	assert_int_equal(unlink(x), 0);
	assert_three(f, ids); /* the lost ids entry found by a search */
	char **more = put_three(f, "QDFAIL2", &nids);
	assert_int_equal(wal_files(f, names, sizeof names), 2);
	settle_ok(f);
	assert_three(f, more);
	xfree_strv(ids, nids);
	xfree_strv(more, nids);
	f->c.file_sync = NULL;
}

static void test_many_recipients_serial(void **state)
{
	many_recipients(*state, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_three_one_inode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_recipients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_record_per_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_of_earlier_form, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ids_dir_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records_of_many_recipients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flushes_per_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_recipients_serial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_record_not_replayed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_retires_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint_retires, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_log_falls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deferred_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deferred_retries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deferred_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deferred_failure_replays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_record_kept_aside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dup_rcpt_and_default_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_keeps_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_by_mtime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_limit_by_mtime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_status_keeps_mtime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_recipients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_announced_marks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_cleans_tmp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_orphans_swept_by_expire, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_without_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_id_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_name_restored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gzip_round_trip_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gzip_mixed_and_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gzip_leftover_beside_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_backend, setup, teardown),
		cmocka_unit_test(test_entry_id),
	};
	/* The commit's tests again with the two-phase commit, its phases
	 * ending in one syncfs, then in an fsync of each file: what is
	 * stored, failures, retries, repairs, gzip. */
	const struct CMUnitTest two_phase_tests[] = {
		cmocka_unit_test_setup_teardown(test_put_three_one_inode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_recipients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_record_per_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records_of_many_recipients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dup_rcpt_and_default_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_recipients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_without_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_id_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_name_restored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gzip_round_trip_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gzip_mixed_and_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gzip_leftover_beside_plain, setup, teardown),
	};
	/* The whole battery with the log (auto takes it on journalling file
	 * systems only, and the temporary directory's may have none) */
	fixture_sync = "log";
	int failed = cmocka_run_group_tests_name("file_sync log", tests, NULL, NULL);
	fixture_sync = "syncfs";
	failed += cmocka_run_group_tests_name("file_sync syncfs", two_phase_tests, NULL, NULL);
	fixture_sync = "fsync";
	return failed + cmocka_run_group_tests_name("file_sync fsync", two_phase_tests, NULL, NULL);
}
