/*
 * fsync_loop.c - the benchmark's floor for the file store: the least a
 * durable file write costs on this disk.  Each of CONC processes, for
 * SECONDS: writes SIZE bytes to a new file in its tmp/ (64 KB writes),
 * fsyncs it, renames it into its new/, fsyncs new/.  The file store does
 * this and more (links per recipient, metadata, id links).
 *
 *   fsync_loop DIR SIZE CONC SECONDS
 *
 * Prints one JSON line: messages, seconds, msgs_per_s, p50_ms, p99_ms.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PIECE 65536

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

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One writer: its latencies (ms) go to out, one binary double each. */
static int writer(const char *dir, int id, size_t size, double until, FILE *out)
{
	char tmp[4096], new[4096], a[4200], b[4200];
	snprintf(tmp, sizeof tmp, "%s/w%d", dir, id);
	mkdir(tmp, 0700);
	snprintf(tmp, sizeof tmp, "%s/w%d/tmp", dir, id);
	snprintf(new, sizeof new, "%s/w%d/new", dir, id);
	if ((mkdir(tmp, 0700) < 0 && errno != EEXIST) || (mkdir(new, 0700) < 0 && errno != EEXIST))
		return 1;
	int nfd = open(new, O_RDONLY | O_DIRECTORY);
	if (nfd < 0)
		return 1;
	char *piece = malloc(PIECE);
	for (size_t i = 0; i < PIECE; i++)
		piece[i] = (char)('a' + (i * 7 + (size_t)id) % 26);
	for (unsigned long k = 0;; k++) {
		double t0 = now_s();
		if (t0 >= until)
			break;
		snprintf(a, sizeof a, "%s/%lu", tmp, k);
		snprintf(b, sizeof b, "%s/%lu", new, k);
		int fd = open(a, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd < 0)
			return 1;
		for (size_t off = 0; off < size; off += PIECE)
			if (write_all(fd, piece, size - off < PIECE ? size - off : PIECE) < 0)
				return 1;
		if (fsync(fd) < 0 || close(fd) < 0 || rename(a, b) < 0 || fsync(nfd) < 0)
			return 1;
		double ms = (now_s() - t0) * 1000.0;
		fwrite(&ms, sizeof ms, 1, out);
	}
	fflush(out);
	free(piece);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: fsync_loop DIR SIZE CONC SECONDS\n");
		return 2;
	}
	size_t size = strtoul(argv[2], NULL, 10);
	int conc = atoi(argv[3]) > 0 ? atoi(argv[3]) : 1;
	double secs = strtod(argv[4], NULL);
	FILE *lat = tmpfile();
	if (lat == NULL)
		return 1;
	double t0 = now_s(), until = t0 + secs;
	for (int i = 0; i < conc; i++) {
		if (fork() == 0) {
			/* each child appends whole records; O_APPEND keeps them apart */
			int fd = dup(fileno(lat));
			fcntl(fd, F_SETFL, O_APPEND | O_WRONLY);
			FILE *out = fdopen(fd, "a");
			setvbuf(out, NULL, _IOFBF, 8192 * sizeof(double));
			_exit(writer(argv[1], i, size, until, out));
		}
	}
	int st, bad = 0;
	while (wait(&st) > 0)
		bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	double el = now_s() - t0;
	if (bad) {
		fprintf(stderr, "fsync_loop: a writer failed\n");
		return 1;
	}
	long n = ftell(lat) / (long)sizeof(double);
	double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
	rewind(lat);
	n = (long)fread(v, sizeof *v, (size_t)n, lat);
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	printf("{\"messages\": %ld, \"seconds\": %.3f, \"msgs_per_s\": %.1f, \"p50_ms\": %.2f, "
	       "\"p99_ms\": %.2f}\n",
	       n, el, n / el, n ? v[n / 2] : 0.0, n ? v[(long)(n * 0.99)] : 0.0);
	free(v);
	return 0;
}
