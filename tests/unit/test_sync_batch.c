/*
 * test_sync_batch.c - the sync batch, with io_uring and without: every
 * descriptor synced and closed, a failing one named in the error while
 * the others are still waited for and closed, batches larger than one
 * flush, a child after fork using a ring of its own; the whole-file-
 * system batch (one syncfs for any number of descriptors), and which
 * file systems syncfs is trusted on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "sync_batch.h"

struct fixture {
	char dir[64];
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/rq-sync-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	sync_batch_serial(false);
	return 0;
}

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

/* A new file in dir with some bytes in it, open for writing. */
static int new_file(const char *dir, int n)
{
	char path[128];
	snprintf(path, sizeof path, "%s/f%d", dir, n);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "data\n", 5), 5);
	return fd;
}

/* Files and their directory in one batch: all synced, all closed. */
static void sync_files_and_dir(struct fixture *f, bool serial)
{
	sync_batch_serial(serial);
	assert_int_equal(sync_batch_parallel(), !serial);
	struct sync_batch b;
	struct qerr e = { 0 };
	int fds[4];
	sync_batch_init(&b, false);
	for (int i = 0; i < 3; i++) {
		fds[i] = new_file(f->dir, i);
		assert_int_equal(sync_batch_add(&b, fds[i], "a file", &e), 0);
	}
	fds[3] = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fds[3] >= 0);
	assert_int_equal(sync_batch_add(&b, fds[3], "the directory", &e), 0);
	assert_int_equal(b.n, 4);
	assert_int_equal(sync_batch_flush(&b, &e), 0);
	assert_int_equal(b.n, 0);
	for (int i = 0; i < 4; i++)
		assert_false(fd_open(fds[i]));
	/* an empty batch flushes to nothing */
	assert_int_equal(sync_batch_flush(&b, &e), 0);
}

static void test_parallel(void **state)
{
	sync_files_and_dir(*state, false);
}

static void test_serial(void **state)
{
	sync_files_and_dir(*state, true);
}

/* fsync of a pipe fails (EINVAL): the error names it, and the files
 * around it are still synced and every descriptor is closed. */
static void failing_member(struct fixture *f, bool serial)
{
	sync_batch_serial(serial);
	struct sync_batch b;
	struct qerr e = { 0 };
	int p[2];
	assert_int_equal(pipe(p), 0);
	close(p[1]);
	sync_batch_init(&b, false);
	int a = new_file(f->dir, 1), c = new_file(f->dir, 2);
	assert_int_equal(sync_batch_add(&b, a, "file one", &e), 0);
	assert_int_equal(sync_batch_add(&b, p[0], "the pipe", &e), 0);
	assert_int_equal(sync_batch_add(&b, c, "file two", &e), 0);
	assert_int_equal(sync_batch_flush(&b, &e), -1);
	assert_int_equal(e.cls, QERR_TEMP);
	assert_int_equal(e.http, 503);
	assert_non_null(strstr(e.msg, "cannot sync the pipe"));
	assert_null(strstr(e.msg, "file one"));
	assert_false(fd_open(a));
	assert_false(fd_open(p[0]));
	assert_false(fd_open(c));
	assert_int_equal(b.n, 0);
}

static void test_failure_parallel(void **state)
{
	failing_member(*state, false);
}

static void test_failure_serial(void **state)
{
	failing_member(*state, true);
}

/* More descriptors than one flush takes: the batch flushes as it fills. */
static void test_overflow(void **state)
{
	struct fixture *f = *state;
	struct sync_batch b;
	struct qerr e = { 0 };
	int n = SYNC_BATCH_MAX * 2 + 5;
	int *fds = xcalloc((size_t)n, sizeof *fds);
	sync_batch_init(&b, false);
	for (int i = 0; i < n; i++) {
		fds[i] = new_file(f->dir, i);
		assert_int_equal(sync_batch_add(&b, fds[i], "a file", &e), 0);
		/* a full batch was flushed before this one went in */
		assert_int_equal(b.n, (size_t)(i % SYNC_BATCH_MAX) + 1);
	}
	assert_int_equal(b.n, 5);
	assert_true(fd_open(fds[n - 1]));
	assert_int_equal(sync_batch_flush(&b, &e), 0);
	for (int i = 0; i < n; i++)
		assert_false(fd_open(fds[i]));
	free(fds);
}

/* Drop closes without syncing. */
static void test_drop(void **state)
{
	struct fixture *f = *state;
	struct sync_batch b;
	struct qerr e = { 0 };
	sync_batch_init(&b, false);
	int a = new_file(f->dir, 1);
	assert_int_equal(sync_batch_add(&b, a, "a file", &e), 0);
	sync_batch_drop(&b);
	assert_int_equal(b.n, 0);
	assert_false(fd_open(a));
}

/* A child after fork makes its own ring and its batches work; the
 * parent's ring still works afterwards. */
static void test_fork(void **state)
{
	struct fixture *f = *state;
	struct sync_batch b;
	struct qerr e = { 0 };
	assert_true(sync_batch_parallel());
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sync_batch_init(&b, false);
		int ok = sync_batch_add(&b, new_file(f->dir, 10), "x", &e) == 0 &&
			 sync_batch_add(&b, new_file(f->dir, 11), "y", &e) == 0 &&
			 sync_batch_flush(&b, &e) == 0 && sync_batch_parallel();
		_exit(ok ? 0 : 1);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	sync_batch_init(&b, false);
	assert_int_equal(sync_batch_add(&b, new_file(f->dir, 12), "x", &e), 0);
	assert_int_equal(sync_batch_add(&b, new_file(f->dir, 13), "y", &e), 0);
	assert_int_equal(sync_batch_flush(&b, &e), 0);
}

/* A whole-file-system batch: any number of descriptors, one flush, all
 * closed (the extra ones at once); an empty batch flushes nothing. */
static void test_whole_fs(void **state)
{
	struct fixture *f = *state;
	struct qerr e = { 0 };
	struct sync_batch b;
	int fds[SYNC_BATCH_MAX + 6];
	int n = (int)(sizeof fds / sizeof fds[0]);
	sync_batch_init(&b, true);
	unsigned long before = sync_batch_flushes();
	assert_int_equal(sync_batch_flush(&b, &e), 0);
	assert_int_equal(sync_batch_flushes(), before);
	for (int i = 0; i < n; i++) {
		fds[i] = new_file(f->dir, i);
		assert_int_equal(sync_batch_add(&b, fds[i], "a file", &e), 0);
		assert_int_equal(fd_open(fds[i]), i == 0); /* a later one is closed at once */
	}
	assert_int_equal(sync_batch_flushes(), before); /* no flush on the way */
	assert_int_equal(sync_batch_flush(&b, &e), 0);
	assert_int_equal(sync_batch_flushes(), before + 1);
	assert_false(fd_open(fds[0]));
	assert_int_equal(b.n, 0);
}

/* syncfs is trusted on file systems other than ext4, and on ext4 only
 * where the kernel runs a journal for its device; the reason names what
 * was found. */
static void test_fs_kind(void **state)
{
	struct fixture *f = *state;
	char why[128];
	int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(sync_batch_fs_kind(fd, why, sizeof why), SYNC_FS_SOUND);
	assert_non_null(strstr(why, "file system type 0x9fa0")); /* procfs */
	close(fd);
	fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct statfs sf;
	assert_int_equal(fstatfs(fd, &sf), 0);
	enum sync_fs_kind kind = sync_batch_fs_kind(fd, why, sizeof why);
	if (sf.f_type == 0xEF53) {
		/* the answer must match the kernel's own list of journals */
		bool journal = strstr(why, "ext4 with a journal on ") == why;
		assert_int_equal(kind == SYNC_FS_SOUND, journal);
		if (journal) {
			char path[160];
			snprintf(path, sizeof path, "/proc/fs/jbd2/%s-8", why + 23);
			struct stat st;
			assert_int_equal(stat(path, &st), 0);
		} else if (kind == SYNC_FS_NO_JOURNAL) {
			assert_non_null(strstr(why, "without a journal"));
		} else {
			assert_int_equal(kind, SYNC_FS_UNKNOWN);
			assert_non_null(strstr(why, "not found"));
		}
	} else {
		assert_int_equal(kind, SYNC_FS_SOUND);
	}
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_parallel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_parallel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_serial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fork, setup, teardown),
		cmocka_unit_test_setup_teardown(test_whole_fs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_kind, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
