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
#include <unistd.h>

#include "writers.h"

struct args {
	const char *dir;
	size_t size;
};

/* A writer's directories and buffer. */
struct writer {
	const struct args *a;
	char tmp[4096], new[4096];
	int nfd;
	char *piece;
};

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

/* setup_fn: the writer's own tmp/ and new/ below the directory. */
static void *setup(int id, void *arg)
{
	struct writer *w = calloc(1, sizeof *w);
	w->a = arg;
	snprintf(w->tmp, sizeof w->tmp, "%s/w%d", w->a->dir, id);
	mkdir(w->tmp, 0700);
	snprintf(w->tmp, sizeof w->tmp, "%s/w%d/tmp", w->a->dir, id);
	snprintf(w->new, sizeof w->new, "%s/w%d/new", w->a->dir, id);
	if ((mkdir(w->tmp, 0700) < 0 && errno != EEXIST) ||
	    (mkdir(w->new, 0700) < 0 && errno != EEXIST))
		return NULL;
	w->nfd = open(w->new, O_RDONLY | O_DIRECTORY);
	w->piece = make_piece(id);
	return w->nfd < 0 || w->piece == NULL ? NULL : w;
}

/* message_fn: write, fsync, rename, fsync the directory. */
static int message(void *state, unsigned long k)
{
	struct writer *w = state;
	char a[4200], b[4200];
	snprintf(a, sizeof a, "%s/%lu", w->tmp, k);
	snprintf(b, sizeof b, "%s/%lu", w->new, k);
	int fd = open(a, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return 1;
	size_t size = w->a->size;
	for (size_t off = 0; off < size; off += PIECE_LEN)
		if (write_all(fd, w->piece, size - off < PIECE_LEN ? size - off : PIECE_LEN) < 0)
			return 1;
	if (fsync(fd) < 0 || close(fd) < 0 || rename(a, b) < 0 || fsync(w->nfd) < 0)
		return 1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: fsync_loop DIR SIZE CONC SECONDS\n");
		return 2;
	}
	struct args a = { argv[1], strtoul(argv[2], NULL, 10) };
	int conc = atoi(argv[3]) > 0 ? atoi(argv[3]) : 1;
	return run_writers("fsync_loop", conc, strtod(argv[4], NULL), setup, message, &a);
}
