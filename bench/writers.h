/*
 * writers.h - what the benchmark's C floors (fsync_loop.c,
 * layout_floor.c) share: CONC processes each running a writer until a
 * deadline, every message's latency collected, one JSON line printed.
 * Header-only: each floor is one compiler call in run.sh.
 */
#ifndef RQ_BENCH_WRITERS_H
#define RQ_BENCH_WRITERS_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A floor's writer process: setup makes its files' directories (id
 * tells the processes apart) and returns its state, or NULL; message
 * stores message number k, 0 on success. */
typedef void *(*setup_fn)(int id, void *arg);
typedef int (*message_fn)(void *state, unsigned long k);

/* The bytes every message is made of: PIECE_LEN of letters, varying by id. */
#define PIECE_LEN 65536

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static char *make_piece(int id)
{
	char *piece = malloc(PIECE_LEN);
	for (size_t i = 0; piece != NULL && i < PIECE_LEN; i++)
		piece[i] = (char)('a' + (i * 7 + (size_t)id) % 26);
	return piece;
}

/* The machine's busy CPU time so far in seconds, all processes and the
 * kernel's own threads (the loop device, the journal, writeback): what
 * a floor costs the machine, which its processes' own times leave out. */
static double machine_busy_s(void)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			   &v[3], &v[4], &v[5], &v[6], &v[7])
		  : 0;
	if (f)
		fclose(f);
	if (n != 8)
		return 0.0;
	/* user nice system [idle iowait] irq softirq steal */
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* One writer process: its setup, then (once the parent has seen every
 * writer ready and sent the deadline on go) messages until the deadline,
 * each one's latency in ms to out as one binary double. */
static int writer_loop(int id, int ready, int go, FILE *out, setup_fn setup, message_fn message,
		       void *arg)
{
	void *state = setup(id, arg);
	char ok = state != NULL;
	double until;
	if (write(ready, &ok, 1) != 1 || !ok || read(go, &until, sizeof until) != sizeof until)
		return 1;
	for (unsigned long k = 0;; k++) {
		double t0 = now_s();
		if (t0 >= until)
			return 0;
		if (message(state, k) != 0)
			return 1;
		double ms = (now_s() - t0) * 1000.0;
		fwrite(&ms, sizeof ms, 1, out);
	}
}

/* Runs conc writers for secs seconds, counted from when all are set up,
 * and prints messages, seconds, msgs_per_s, p50_ms, p99_ms and
 * machine_cpu_ms (the machine's busy CPU per message over those seconds)
 * as one JSON line.  The exit status. */
static int run_writers(const char *prog, int conc, double secs, setup_fn setup,
		       message_fn message, void *arg)
{
	FILE *lat = tmpfile();
	int ready[2], go[2];
	if (lat == NULL || pipe(ready) < 0 || pipe(go) < 0)
		return 1;
	for (int i = 0; i < conc; i++) {
		if (fork() == 0) {
			/* each child appends whole records; O_APPEND keeps them apart */
			int fd = dup(fileno(lat));
			fcntl(fd, F_SETFL, O_APPEND | O_WRONLY);
			FILE *out = fdopen(fd, "a");
			setvbuf(out, NULL, _IOFBF, 8192 * sizeof(double));
			int r = writer_loop(i, ready[1], go[0], out, setup, message, arg);
			fflush(out);
			_exit(r);
		}
	}
	close(ready[1]);
	int bad = 0;
	for (int i = 0; i < conc; i++) {
		char ok = 0;
		bad |= read(ready[0], &ok, 1) != 1 || !ok;
	}
	double t0 = now_s(), until = t0 + secs, busy0 = machine_busy_s();
	for (int i = 0; i < conc; i++)
		bad |= write(go[1], &until, sizeof until) != sizeof until;
	close(go[1]);
	int st;
	while (wait(&st) > 0)
		bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	double el = now_s() - t0, busy = machine_busy_s() - busy0;
	if (bad) {
		fprintf(stderr, "%s: a writer failed\n", prog);
		return 1;
	}
	long n = ftell(lat) / (long)sizeof(double);
	double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
	rewind(lat);
	n = (long)fread(v, sizeof *v, (size_t)n, lat);
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	printf("{\"messages\": %ld, \"seconds\": %.3f, \"msgs_per_s\": %.1f, \"p50_ms\": %.2f, "
	       "\"p99_ms\": %.2f, \"machine_cpu_ms\": %.3f}\n",
	       n, el, n / el, n ? v[n / 2] : 0.0, n ? v[(long)(n * 0.99)] : 0.0,
	       n ? busy * 1000.0 / (double)n : 0.0);
	free(v);
	return 0;
}

#endif
