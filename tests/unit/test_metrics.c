/*
 * test_metrics.c - the counters behind /metrics: sums over forked
 * processes (the shared mapping), the histogram's cumulative buckets,
 * the worker gauges, the operator tool's counters file (concurrent
 * writers under flock, bounded labels, damaged lines) and the answer's
 * form.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "metrics.h"

/* The value of the sample line that starts with `series ` in text, or
 * -1 when there is none. */
static long long sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
	}
	return -1;
}

static char *render(const char *cli_file)
{
	struct buf b = { 0 };
	metrics_render(&b, cli_file, 4);
	return buf_steal(&b);
}

static int setup(void **state)
{
	(void)state;
	struct qerr e;
	qerr_clear(&e);
	assert_int_equal(metrics_init(&e), 0);
	return 0;
}

/* Counts made in forked children (workers) add up in the parent. */
static void test_sum_over_processes(void **state)
{
	(void)state;
	char *before = render(NULL);
	long long ok0 = sample(before, "rspamd_quarantine_requests_total{status=\"200\",formatter=\"default\"}");
	long long bad0 = sample(before, "rspamd_quarantine_requests_total{status=\"400\",formatter=\"none\"}");
	long long odd0 = sample(before, "rspamd_quarantine_requests_total{status=\"other\",formatter=\"none\"}");
	free(before);
	assert_true(ok0 >= 0 && bad0 >= 0 && odd0 >= 0);

	enum { KIDS = 4, EACH = 500 };
	for (int k = 0; k < KIDS; k++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			for (int i = 0; i < EACH; i++) {
				metrics_request(200, "default", QERR_NONE, 3000, 2, 100, false);
				metrics_request(400, "-", QERR_INPUT, 100, 0, 0, false);
			}
			metrics_request(299, "from-the-request", QERR_PERM, 1, 0, 0, false);
			_exit(0);
		}
	}
	for (int k = 0; k < KIDS; k++) {
		int st;
		assert_true(wait(&st) > 0);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	char *t = render(NULL);
	assert_int_equal(sample(t, "rspamd_quarantine_requests_total{status=\"200\",formatter=\"default\"}"),
			 ok0 + KIDS * EACH);
	assert_int_equal(sample(t, "rspamd_quarantine_requests_total{status=\"400\",formatter=\"none\"}"),
			 bad0 + KIDS * EACH);
	/* A status and a formatter outside the lists never become labels. */
	assert_int_equal(sample(t, "rspamd_quarantine_requests_total{status=\"other\",formatter=\"none\"}"),
			 odd0 + KIDS);
	assert_null(strstr(t, "from-the-request"));
	assert_null(strstr(t, "\"299\""));
	assert_true(sample(t, "rspamd_quarantine_entries_stored_total") >= 2 * KIDS * EACH);
	assert_true(sample(t, "rspamd_quarantine_errors_total{class=\"input\"}") >= KIDS * EACH);
	assert_true(sample(t, "rspamd_quarantine_errors_total{class=\"permanent\"}") >= KIDS);
	free(t);
}

/* Buckets are cumulative, +Inf equals the count, the sum is seconds. */
static void test_histogram(void **state)
{
	(void)state;
	char *a = render(NULL);
	long long c0 = sample(a, "rspamd_quarantine_request_duration_seconds_count");
	long long b0 = sample(a, "rspamd_quarantine_request_duration_seconds_bucket{le=\"0.01\"}");
	long long i0 = sample(a, "rspamd_quarantine_request_duration_seconds_bucket{le=\"+Inf\"}");
	free(a);
	metrics_request(200, "multipart", QERR_NONE, 10000, 1, 10, false);  /* le 0.01 */
	metrics_request(200, "multipart", QERR_NONE, 10001, 1, 10, false);  /* le 0.025 */
	metrics_request(503, "multipart", QERR_TEMP, 90000000, 0, 0, false); /* +Inf */
	char *t = render(NULL);
	assert_int_equal(sample(t, "rspamd_quarantine_request_duration_seconds_count"), c0 + 3);
	assert_int_equal(sample(t, "rspamd_quarantine_request_duration_seconds_bucket{le=\"0.01\"}"),
			 b0 + 1);
	assert_int_equal(sample(t, "rspamd_quarantine_request_duration_seconds_bucket{le=\"+Inf\"}"),
			 i0 + 3);
	assert_non_null(strstr(t, "rspamd_quarantine_request_duration_seconds_bucket{le=\"0.0025\"}"));
	assert_non_null(strstr(t, "rspamd_quarantine_request_duration_seconds_bucket{le=\"1\"}"));
	assert_non_null(strstr(t, "# TYPE rspamd_quarantine_request_duration_seconds histogram\n"));
	/* Buckets never decrease. */
	long long prev = -1;
	for (const char *p = strstr(t, "_bucket{"); p; p = strstr(p + 1, "_bucket{")) {
		long long v = strtoll(strchr(p, ' ') + 1, NULL, 10);
		assert_true(v >= prev);
		prev = v;
	}
	free(t);
}

/* A worker counts as running and busy until the master forgets it. */
static void test_worker_gauges(void **state)
{
	(void)state;
	int go[2], done[2];
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(done), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char ch;
		metrics_worker_start();
		metrics_worker_busy(true);
		if (write(done[1], "x", 1) != 1 || read(go[0], &ch, 1) < 0)
			_exit(1);
		_exit(0);
	}
	char ch;
	assert_int_equal(read(done[0], &ch, 1), 1);
	char *t = render(NULL);
	assert_int_equal(sample(t, "rspamd_quarantine_workers"), 1);
	assert_int_equal(sample(t, "rspamd_quarantine_workers_busy"), 1);
	assert_int_equal(sample(t, "rspamd_quarantine_workers_configured"), 4);
	free(t);
	/* Killed in the middle of its request: the master's reap frees it. */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	metrics_worker_gone(pid);
	metrics_worker_restarted();
	t = render(NULL);
	assert_int_equal(sample(t, "rspamd_quarantine_workers"), 0);
	assert_int_equal(sample(t, "rspamd_quarantine_workers_busy"), 0);
	assert_true(sample(t, "rspamd_quarantine_worker_restarts_total") >= 1);
	free(t);
	close(go[0]);
	close(go[1]);
	close(done[0]);
	close(done[1]);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char text[65536];
	size_t n = fread(text, 1, sizeof text - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* Concurrent tools lose no count; labels stay in their lists. */
static void test_cli_counters(void **state)
{
	(void)state;
	char dir[] = "/tmp/rq-metrics-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof path, "%s/cli-counters", dir);
	metrics_cli_setup(path);

	enum { KIDS = 4, EACH = 50 };
	for (int k = 0; k < KIDS; k++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			for (int i = 0; i < EACH; i++)
				if (metrics_cli_count("release", "ok") < 0)
					_exit(1);
			_exit(0);
		}
	}
	for (int k = 0; k < KIDS; k++) {
		int st;
		assert_true(wait(&st) > 0);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	assert_int_equal(metrics_cli_count("delete", "not_found"), 0);
	assert_int_equal(metrics_cli_count("delete", "rcpt@example.org"), 0); /* -> other */
	assert_int_equal(metrics_cli_add("expire", "ok", 17), 0);
	assert_int_equal(metrics_cli_add("expire", "ok", 0), 0);
	assert_int_equal(metrics_cli_count("rm -rf", "ok"), -1);

	const char *text = read_file(path);
	assert_non_null(strstr(text, "release ok 200\n"));
	assert_non_null(strstr(text, "expire ok 17\n"));
	assert_null(strstr(text, "rm -rf"));
	assert_null(strstr(text, "example.org"));

	char *t = render(path);
	assert_int_equal(sample(t, "rspamd_quarantine_cli_actions_total{action=\"release\",outcome=\"ok\"}"),
			 KIDS * EACH);
	assert_int_equal(sample(t, "rspamd_quarantine_cli_actions_total{action=\"delete\",outcome=\"not_found\"}"), 1);
	assert_int_equal(sample(t, "rspamd_quarantine_cli_actions_total{action=\"delete\",outcome=\"other\"}"), 1);
	assert_int_equal(sample(t, "rspamd_quarantine_cli_actions_total{action=\"expire\",outcome=\"ok\"}"), 17);
	assert_int_equal(sample(t, "rspamd_quarantine_cli_counters_readable"), 1);
	free(t);

	/* A damaged or foreign file: bad lines are skipped, never shown. */
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("# comment\nrelease ok 5\ndelete ok -3\nbogus ok 7\nrelease failed 2 extra\n"
	      "release refused 18446744073709551616\nexpire failed 4", f);
	fclose(f);
	uint64_t counts[64];
	assert_true(metrics_cli_actions() * metrics_cli_outcomes() <= 64);
	const char *d = read_file(path);
	assert_int_equal(metrics_cli_parse(d, strlen(d), counts), 2);
	t = render(path);
	assert_int_equal(sample(t, "rspamd_quarantine_cli_actions_total{action=\"release\",outcome=\"ok\"}"), 5);
	assert_int_equal(sample(t, "rspamd_quarantine_cli_actions_total{action=\"expire\",outcome=\"failed\"}"), 4);
	assert_null(strstr(t, "bogus"));
	free(t);
	/* Counting goes on from what could be read. */
	assert_int_equal(metrics_cli_count("release", "ok"), 0);
	assert_non_null(strstr(read_file(path), "release ok 6\n"));

	/* No file yet reads as nothing counted; no directory is no count. */
	unlink(path);
	t = render(path);
	assert_int_equal(sample(t, "rspamd_quarantine_cli_counters_readable"), 1);
	assert_null(strstr(t, "cli_actions_total{"));
	free(t);
	char nodir[300];
	snprintf(nodir, sizeof nodir, "%s/missing/cli-counters", dir);
	metrics_cli_setup(nodir);
	assert_int_equal(metrics_cli_count("release", "ok"), -1);
	metrics_cli_setup(NULL);
	assert_int_equal(metrics_cli_count("release", "ok"), 0);
	rmdir(dir);
}

/* Which file counts, from the configuration. */
static void test_counters_path(void **state)
{
	(void)state;
	struct config c;
	config_defaults(&c);
	char buf[256];
	assert_string_equal(metrics_counters_path(&c, buf, sizeof buf),
			    "/var/lib/rspamd-quarantine/cli-counters");
	struct qerr e;
	assert_int_equal(config_set(&c, "backend", "pgsql", &e), 0);
	assert_int_equal(config_set(&c, "pgsql_conninfo", "dbname=q", &e), 0);
	assert_null(metrics_counters_path(&c, buf, sizeof buf));
	assert_int_equal(config_set(&c, "counters_file", "/srv/q/counts", &e), 0);
	assert_string_equal(metrics_counters_path(&c, buf, sizeof buf), "/srv/q/counts");
	assert_int_equal(config_set(&c, "counters_file", "relative", &e), 0);
	assert_int_equal(config_validate(&c, &e), -1);
	assert_non_null(strstr(e.msg, "counters_file"));
	config_free(&c);
}

/* The answer: the exposition's content type; GET and HEAD only. */
static void test_respond(void **state)
{
	(void)state;
	struct config c;
	config_defaults(&c);
	struct buf b = { 0 };
	assert_int_equal(metrics_respond(&c, "GET", &b), 200);
	assert_non_null(strstr(b.data, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(b.data, "\r\n\r\n# HELP rspamd_quarantine_requests_total "));
	assert_true(b.data[b.len - 1] == '\n');
	buf_reset(&b);
	assert_int_equal(metrics_respond(&c, "POST", &b), 405);
	assert_non_null(strstr(b.data, "Allow: GET, HEAD"));
	buf_free(&b);
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sum_over_processes),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_worker_gauges),
		cmocka_unit_test(test_cli_counters),
		cmocka_unit_test(test_counters_path),
		cmocka_unit_test(test_respond),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
