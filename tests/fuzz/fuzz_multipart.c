/*
 * fuzz_multipart.c - libFuzzer harness for the streaming multipart
 * parser.  Input: 4 bytes giving piece sizes, a Content-Type line (LF),
 * then the body.  The body is parsed twice, whole and in pieces of the
 * sizes given (cycled); both runs must end the same way, with the same
 * error, and on success with the same parts and bytes.
 */
#include "fuzz_util.h"
#include "ingest_multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What one run saw: parts and their bytes, in one log. */
struct run {
	struct buf log;
	int depth; /* 1 inside a part */
	size_t parts;
};

static void log_str(struct buf *b, const char *s)
{
	if (s == NULL) {
		buf_appends(b, "(null)");
	} else {
		buf_printf(b, "%zu:", strlen(s));
		buf_appends(b, s);
	}
}

static int on_begin(void *arg, const char *name, const char *filename, const char *ctype,
		    struct qerr *e)
{
	(void)e;
	struct run *r = arg;
	FUZZ_ASSERT(r->depth == 0);
	r->depth = 1;
	r->parts++;
	buf_appends(&r->log, "\x01" "BEGIN ");
	log_str(&r->log, name);
	log_str(&r->log, filename);
	log_str(&r->log, ctype);
	buf_appendc(&r->log, '\x01');
	return 0;
}

static int on_data(void *arg, const void *p, size_t n, struct qerr *e)
{
	(void)e;
	struct run *r = arg;
	FUZZ_ASSERT(r->depth == 1);
	buf_append(&r->log, p, n);
	return 0;
}

static int on_end(void *arg, struct qerr *e)
{
	(void)e;
	struct run *r = arg;
	FUZZ_ASSERT(r->depth == 1);
	r->depth = 0;
	buf_appends(&r->log, "\x01" "END\x01");
	return 0;
}

static const struct multipart_cb cbs = { on_begin, on_data, on_end };

/* Parses body with the given piece sizes (NULL: whole); returns rc. */
static int parse(const char *boundary, const uint8_t *body, size_t n, const uint8_t *sizes,
		 struct run *r, struct qerr *e)
{
	struct multipart *mp = multipart_new(boundary, &cbs, r);
	int rc = 0;
	size_t i = 0, k = 0;
	while (i < n) {
		size_t piece = fuzz_piece(n - i, sizes, &k);
		rc = multipart_feed(mp, body + i, piece, e);
		if (rc < 0)
			break;
		i += piece;
	}
	if (rc == 0)
		rc = multipart_finish(mp, e);
	multipart_free(mp);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	const uint8_t *sizes = data;
	data += 4;
	size -= 4;
	const uint8_t *nl = memchr(data, '\n', size);
	if (nl == NULL)
		return 0;
	char *ctype = fuzz_cstr(data, (size_t)(nl - data));
	const uint8_t *body = nl + 1;
	size_t n = size - (size_t)(nl - data) - 1;

	char boundary[80];
	if (multipart_boundary(ctype, boundary, sizeof boundary) == 0) {
		FUZZ_ASSERT(strlen(boundary) >= 1 && strlen(boundary) <= 70);
		struct run whole = { 0 }, pieces = { 0 };
		struct qerr e1 = { 0 }, e2 = { 0 };
		int rc1 = parse(boundary, body, n, NULL, &whole, &e1);
		int rc2 = parse(boundary, body, n, sizes, &pieces, &e2);
		FUZZ_ASSERT(rc1 == rc2);
		if (rc1 < 0) {
			FUZZ_ASSERT(e1.cls == e2.cls && e1.http == e2.http);
			FUZZ_ASSERT(strcmp(e1.msg, e2.msg) == 0);
			FUZZ_ASSERT(e1.cls == QERR_INPUT);
		} else {
			FUZZ_ASSERT(whole.depth == 0 && pieces.depth == 0);
			FUZZ_ASSERT(whole.parts == pieces.parts);
			FUZZ_ASSERT(whole.log.len == pieces.log.len);
			FUZZ_ASSERT(whole.log.len == 0 ||
				    memcmp(whole.log.data, pieces.log.data, whole.log.len) == 0);
		}
		buf_free(&whole.log);
		buf_free(&pieces.log);
	}
	free(ctype);
	return 0;
}
