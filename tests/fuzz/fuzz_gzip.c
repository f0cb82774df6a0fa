/*
 * fuzz_gzip.c - libFuzzer harness for the streaming gzip inflate: fed
 * in pieces (sizes from the first byte), it must never hand out more
 * than its cap, and must fail only with 400 (bad data) or 413 (too big).
 */
#include "fuzz_util.h"
#include "ingest_gzip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_GZIP_CAP 65536

static int on_out(void *arg, const void *p, size_t n, struct qerr *e)
{
	(void)e;
	(void)p;
	uint64_t *total = arg;
	*total += n;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t piece = (size_t)data[0] * 8 + 1;
	data++;
	size--;
	uint64_t total = 0;
	struct gunzip *g = gunzip_new(FUZZ_GZIP_CAP, on_out, &total);
	struct qerr e = { 0 };
	int rc = 0;
	for (size_t i = 0; i < size && rc == 0; i += piece) {
		size_t n = size - i < piece ? size - i : piece;
		rc = gunzip_feed(g, data + i, n, &e);
	}
	if (rc == 0)
		rc = gunzip_finish(g, &e);
	gunzip_free(g);
	FUZZ_ASSERT(total <= FUZZ_GZIP_CAP);
	if (rc < 0)
		FUZZ_ASSERT(e.cls == QERR_INPUT && (e.http == 400 || e.http == 413));
	return 0;
}
