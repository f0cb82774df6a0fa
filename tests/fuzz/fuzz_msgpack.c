/*
 * fuzz_msgpack.c - libFuzzer harness for the msgpack formatter's parser
 * (ingest_msgpack.c).  Input: 4 bytes giving piece sizes, then the body.
 * The body is parsed twice, whole and in pieces of the sizes given
 * (cycled); both runs must end the same way with the same error, and on
 * success with the same message bytes and metadata.  The message handed
 * on is never larger than the body or max_message_size; the metadata
 * keeps record.h's promise; errors are 400 or 413, one line.
 */
#include "fuzz_util.h"
#include "ingest_msgpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small limits, so that fuzzing reaches them. */
#define FUZZ_META_MAX 65536
#define FUZZ_MESSAGE_MAX 262144

/* Collects the message bytes the parser hands on. */
static int on_message(void *arg, const void *p, size_t n, struct qerr *e)
{
	(void)e;
	struct buf *b = arg;
	buf_append(b, p, n);
	FUZZ_ASSERT(b->len <= FUZZ_MESSAGE_MAX);
	return 0;
}

/* One run; sizes NULL feeds the body whole. */
static int parse(const uint8_t *body, size_t n, const uint8_t *sizes, struct buf *msg,
		 struct qmeta *m, struct qerr *e)
{
	struct msgpack_in *mi = msgpack_in_new(FUZZ_META_MAX, n, FUZZ_MESSAGE_MAX, on_message,
					       msg);
	int rc = 0;
	size_t i = 0, k = 0;
	while (i < n) {
		size_t piece = fuzz_piece(n - i, sizes, &k);
		rc = msgpack_in_feed(mi, body + i, piece, e);
		if (rc < 0)
			break;
		i += piece;
	}
	if (rc == 0)
		rc = msgpack_in_finish(mi, m, e);
	msgpack_in_free(mi);
	return rc;
}

/* Two strings, either NULL, are the same. */
static bool same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	const uint8_t *sizes = data;
	const uint8_t *body = data + 4;
	size_t n = size - 4;

	struct buf msg1 = { 0 }, msg2 = { 0 };
	struct qmeta m1 = { .scan_time = -1 }, m2 = { .scan_time = -1 };
	struct qerr e1 = { 0 }, e2 = { 0 };
	int rc1 = parse(body, n, NULL, &msg1, &m1, &e1);
	int rc2 = parse(body, n, sizes, &msg2, &m2, &e2);
	FUZZ_ASSERT(rc1 == rc2);
	FUZZ_ASSERT(msg1.len <= n);
	if (rc1 < 0) {
		FUZZ_ASSERT(e1.cls == QERR_INPUT && e2.cls == QERR_INPUT);
		FUZZ_ASSERT(e1.http == e2.http);
		FUZZ_ASSERT(e1.http == 400 || e1.http == 413);
		FUZZ_ASSERT(strcmp(e1.msg, e2.msg) == 0);
		FUZZ_ASSERT(strchr(e1.msg, '\n') == NULL);
	} else {
		FUZZ_ASSERT(msg1.len > 0);
		FUZZ_ASSERT(msg1.len == msg2.len && memcmp(msg1.data, msg2.data, msg1.len) == 0);
		fuzz_check_qmeta(&m1);
		FUZZ_ASSERT(same(m1.qid, m2.qid) && same(m1.env_from, m2.env_from));
		FUZZ_ASSERT(same(m1.symbols_json, m2.symbols_json));
		FUZZ_ASSERT(m1.nrcpt == m2.nrcpt);
	}
	buf_free(&msg1);
	buf_free(&msg2);
	qmeta_free(&m1);
	qmeta_free(&m2);
	return 0;
}
