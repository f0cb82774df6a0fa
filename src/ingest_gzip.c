/*
 * ingest_gzip.c - owns the streaming inflate of bodies sent with
 * Content-Encoding: gzip (zlib), with a cap on the inflated size.
 *
 * Output goes to the caller in pieces of at most 64 KB, so memory stays
 * bounded (that buffer plus zlib's 32 KB window) however far the data
 * would expand; a body that inflates past max_out is stopped at the
 * first piece that would cross the cap.
 *
 * Only a single gzip member is accepted: anything after the end of the
 * first member (a second member, padding, garbage) is refused with 400.
 * Rspamd compresses each body as one member, and a body of several
 * members is more likely a smuggling attempt than a message.
 */
#include "ingest_gzip.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <zlib.h>

#define GZ_CHUNK (64 * 1024)

struct gunzip {
	z_stream zs;
	bool zs_ready;
	bool ended;   /* the member's trailer was read and checked */
	bool failed;
	uint64_t max_out;
	uint64_t total_out;
	gunzip_out_fn out;
	void *arg;
	unsigned char buf[GZ_CHUNK];
};

/* zlib's allocations go through the project's allocator, so running
 * out of memory is handled in the one usual place. */
static voidpf gz_alloc(voidpf opaque, uInt items, uInt size)
{
	(void)opaque;
	return xcalloc(items, size);
}

static void gz_free(voidpf opaque, voidpf p)
{
	(void)opaque;
	free(p);
}

struct gunzip *gunzip_new(uint64_t max_out, gunzip_out_fn out, void *arg)
{
	struct gunzip *g = xmalloc(sizeof *g);
	g->zs = (z_stream){ .zalloc = gz_alloc, .zfree = gz_free, .opaque = Z_NULL };
	g->ended = false;
	g->failed = false;
	g->max_out = max_out;
	g->total_out = 0;
	g->out = out;
	g->arg = arg;
	/* 16 + MAX_WBITS: a gzip wrapper only, not zlib or raw deflate. */
	g->zs_ready = inflateInit2(&g->zs, 16 + MAX_WBITS) == Z_OK;
	return g;
}

void gunzip_free(struct gunzip *g)
{
	if (g == NULL)
		return;
	if (g->zs_ready)
		inflateEnd(&g->zs);
	free(g);
}

/* Marks the stream as failed; later calls fail too. */
static int gz_fail(struct gunzip *g, struct qerr *e, int http, const char *what, const char *detail)
{
	g->failed = true;
	if (detail != NULL)
		return qerr_input(e, http, "%s: %s", what, detail);
	return qerr_input(e, http, "%s", what);
}

/* Hands inflated bytes on, unless they would cross the cap. */
static int gz_emit(struct gunzip *g, size_t have, struct qerr *e)
{
	if (have == 0)
		return 0;
	if (have > g->max_out - g->total_out) {
		g->failed = true;
		return qerr_input(e, 413, "inflated body exceeds %llu bytes",
				  (unsigned long long)g->max_out);
	}
	g->total_out += have;
	if (g->out != NULL && g->out(g->arg, g->buf, have, e) < 0) {
		g->failed = true;
		return -1;
	}
	return 0;
}

/* Inflates the next piece of the compressed body. */
int gunzip_feed(struct gunzip *g, const void *p, size_t n, struct qerr *e)
{
	const unsigned char *in = p;

	if (g->failed)
		return qerr_input(e, 400, "gzip body: inflate already failed");
	if (!g->zs_ready)
		return gz_fail(g, e, 400, "gzip body: inflate could not start", NULL);
	while (n > 0) {
		if (g->ended)
			return gz_fail(g, e, 400, "gzip body: data after the end of the stream", NULL);
		/* avail_in is 32 bits: large inputs go in slices. */
		uInt slice = n > UINT_MAX ? UINT_MAX : (uInt)n;
		g->zs.next_in = (Bytef *)(uintptr_t)in;
		g->zs.avail_in = slice;
		do {
			g->zs.next_out = g->buf;
			g->zs.avail_out = GZ_CHUNK;
			int rc = inflate(&g->zs, Z_NO_FLUSH);
			size_t have = GZ_CHUNK - g->zs.avail_out;
			switch (rc) {
			case Z_OK:
			case Z_BUF_ERROR: /* no progress possible: needs more input */
				break;
			case Z_STREAM_END:
				g->ended = true;
				break;
			case Z_NEED_DICT:
				return gz_fail(g, e, 400, "bad gzip data", "preset dictionary required");
			case Z_DATA_ERROR:
				return gz_fail(g, e, 400, "bad gzip data",
					       g->zs.msg ? g->zs.msg : "corrupt stream");
			case Z_MEM_ERROR:
				return gz_fail(g, e, 400, "gzip body: out of memory", NULL);
			default:
				return gz_fail(g, e, 400, "gzip body: inflate error",
					       g->zs.msg ? g->zs.msg : NULL);
			}
			if (gz_emit(g, have, e) < 0)
				return -1;
			if (rc == Z_BUF_ERROR && have == 0)
				break;
		} while (!g->ended && (g->zs.avail_in > 0 || g->zs.avail_out == 0));
		/* Input left after the end is refused at the top of the loop. */
		size_t used = slice - g->zs.avail_in;
		if (used == 0 && !g->ended)
			return gz_fail(g, e, 400, "bad gzip data", "inflate made no progress");
		in += used;
		n -= used;
	}
	return 0;
}

/* The body has ended: the gzip trailer must have been read. */
int gunzip_finish(struct gunzip *g, struct qerr *e)
{
	if (g->failed)
		return qerr_input(e, 400, "gzip body: inflate already failed");
	if (!g->ended)
		return gz_fail(g, e, 400, "gzip body is truncated", NULL);
	return 0;
}
