/*
 * fuzz_msghdr.c - libFuzzer harness for the message header parser: the
 * fields it decodes for display keep record.h's promise, and the end of
 * the header it finds lies within the input.
 */
#include "fuzz_util.h"
#include "ingest_msghdr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmeta m = { .scan_time = -1 };
	msghdr_parse((const char *)data, size, &m);
	fuzz_check_qmeta(&m);
	/* A second parse replaces the fields without leaking them. */
	msghdr_parse((const char *)data, size, &m);
	fuzz_check_qmeta(&m);
	qmeta_free(&m);

	size_t end = msghdr_end((const char *)data, size);
	FUZZ_ASSERT(end <= size);
	if (end > 0)
		FUZZ_ASSERT(data[end - 1] == '\n');
	return 0;
}
