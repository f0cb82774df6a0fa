/*
 * test_log.c - log lines stay one line: log_append_clean replaces
 * control bytes, C1 controls and invalid UTF-8 and bounds the length
 * without cutting a character; log_msg writes one cleaned line to stderr
 * with time, program, pid and level.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"

/* Cleans s with bound max into a fresh string. */
static char *clean(const char *s, size_t max)
{
	struct buf b = { 0 };
	log_append_clean(&b, s, max);
	return buf_steal(&b);
}

static void expect_clean(const char *in, size_t max, const char *want)
{
	char *got = clean(in, max);
	assert_string_equal(got, want);
	free(got);
}

static void test_plain(void **state)
{
	(void)state;
	expect_clean("4ABC123DEF", 100, "4ABC123DEF");
	expect_clean("bob@example.net", 100, "bob@example.net");
	expect_clean("", 100, "");
	expect_clean(NULL, 100, "-");
}

static void test_controls(void **state)
{
	(void)state;
	expect_clean("a\r\nqid: forged", 100, "a??qid: forged");
	expect_clean("x\ny", 100, "x?y");
	expect_clean("tab\there", 100, "tab?here");
	expect_clean("esc\x1b[31mred", 100, "esc?[31mred");
	expect_clean("del\x7f", 100, "del?");
	expect_clean("\x01\x02\x1f", 100, "???");
	/* C1 controls (U+0085 NEL, U+009B CSI) are controls too. */
	expect_clean("nel\xc2\x85x", 100, "nel?x");
	expect_clean("csi\xc2\x9bx", 100, "csi?x");
}

static void test_utf8(void **state)
{
	(void)state;
	expect_clean("Gr\xc3\xbc\xc3\x9f" "e", 100, "Gr\xc3\xbc\xc3\x9f" "e");
	expect_clean("\xe2\x82\xac 5", 100, "\xe2\x82\xac 5");
	expect_clean("\xf0\x9f\x98\x80", 100, "\xf0\x9f\x98\x80");
	/* Invalid: a lone Latin-1 byte, a cut sequence, an overlong form,
	 * a surrogate, past U+10FFFF. */
	expect_clean("M\xfcnchen", 100, "M?nchen");
	expect_clean("cut\xe2\x82", 100, "cut??");
	expect_clean("over\xc0\xaf", 100, "over??");
	expect_clean("sur\xed\xa0\x80", 100, "sur???");
	expect_clean("big\xf4\x90\x80\x80", 100, "big????");
}

static void test_bound(void **state)
{
	(void)state;
	expect_clean("abcdef", 3, "abc");
	expect_clean("abcdef", 6, "abcdef");
	expect_clean("abcdef", 0, "");
	/* A character that does not fit whole is left out. */
	expect_clean("ab\xc3\xbc", 3, "ab");
	expect_clean("ab\xc3\xbc", 4, "ab\xc3\xbc");
	expect_clean("a\xe2\x82\xac", 3, "a");
	expect_clean("a\r\n", 2, "a?");

	char big[10000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	char *got = clean(big, 256);
	assert_int_equal(strlen(got), 256);
	free(got);
}

static void test_appends(void **state)
{
	(void)state;
	struct buf b = { 0 };
	buf_appends(&b, "qid: ");
	log_append_clean(&b, "A\nB", 10);
	buf_appends(&b, ", rcpt: ");
	log_append_clean(&b, NULL, 10);
	assert_string_equal(b.data, "qid: A?B, rcpt: -");
	assert_int_equal(b.len, strlen(b.data));
	buf_free(&b);
}

/* Runs log_msg with stderr captured; returns what it wrote. */
static char *capture(int level, const char *fmt, const char *arg)
{
	char path[] = "/tmp/test_log_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	log_msg(level, fmt, arg);
	dup2(saved, 2);
	close(saved);
	char *out = malloc(65536);
	ssize_t n = pread(fd, out, 65535, 0);
	close(fd);
	unlink(path);
	assert_true(n >= 0);
	out[n] = '\0';
	return out;
}

static void test_log_msg_stderr(void **state)
{
	(void)state;
	unsetenv("RSPAMD_QUARANTINE_DEBUG");
	log_open(NULL, "test-prog");
	char *out = capture(LOG_WARNING, "qid: %s, status: 200", "X\r\nqid: forged");
	char want[128];
	snprintf(want, sizeof want, " test-prog[%ld]: warning: qid: X??qid: forged, status: 200\n",
		 (long)getpid());
	assert_non_null(strstr(out, want));
	/* One line, starting with the date. */
	assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
	assert_true(out[0] >= '1' && out[0] <= '9' && out[4] == '-');
	free(out);

	out = capture(LOG_ERR, "%s", "x");
	assert_non_null(strstr(out, ": error: x\n"));
	free(out);
	out = capture(LOG_INFO, "%s", "y");
	assert_non_null(strstr(out, ": info: y\n"));
	free(out);

	/* Debug lines only when asked for. */
	out = capture(LOG_DEBUG, "%s", "hidden");
	assert_string_equal(out, "");
	free(out);
	setenv("RSPAMD_QUARANTINE_DEBUG", "1", 1);
	log_open(NULL, "test-prog");
	out = capture(LOG_DEBUG, "%s", "shown");
	assert_non_null(strstr(out, ": debug: shown\n"));
	free(out);
	unsetenv("RSPAMD_QUARANTINE_DEBUG");
	log_close();
}

/* A forked child's lines carry the child's id, though the parent logged
 * (and so looked its own up) before the fork. */
static void test_pid_after_fork(void **state)
{
	(void)state;
	log_open(NULL, "t");
	free(capture(LOG_INFO, "%s", "parent"));
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(pfd[0]);
		char *out = capture(LOG_INFO, "%s", "child");
		ssize_t w = write(pfd[1], out, strlen(out));
		_exit(w == (ssize_t)strlen(out) ? 0 : 1);
	}
	close(pfd[1]);
	char got[512];
	ssize_t n = read(pfd[0], got, sizeof got - 1);
	close(pfd[0]);
	int st;
	waitpid(child, &st, 0);
	assert_true(n > 0);
	got[n] = '\0';
	char want[64];
	snprintf(want, sizeof want, " t[%ld]: info: child\n", (long)child);
	assert_non_null(strstr(got, want));
	char *out = capture(LOG_INFO, "%s", "parent again");
	snprintf(want, sizeof want, " t[%ld]: info: parent again\n", (long)getpid());
	assert_non_null(strstr(out, want));
	free(out);
	log_close();
}

static void test_log_msg_long(void **state)
{
	(void)state;
	log_open(NULL, "t");
	char *big = malloc(20000);
	memset(big, 'z', 19999);
	big[19999] = '\0';
	char *out = capture(LOG_INFO, "%s", big);
	/* Cut, but still one line. */
	assert_true(strlen(out) < 8300);
	assert_true(strlen(out) > 8000);
	assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
	free(out);
	free(big);
	log_close();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_controls),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_appends),
		cmocka_unit_test(test_log_msg_stderr),
		cmocka_unit_test(test_log_msg_long),
		cmocka_unit_test(test_pid_after_fork),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
