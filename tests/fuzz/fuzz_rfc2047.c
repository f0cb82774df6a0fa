/*
 * fuzz_rfc2047.c - libFuzzer harness for RFC 2047 decoding: whatever the
 * header value, the result is valid UTF-8 with no CR, LF or NUL inside
 * (it goes into logs and one-line listings).
 */
#include "fuzz_util.h"
#include "ingest_rfc2047.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *out = rfc2047_decode((const char *)data, size);
	FUZZ_ASSERT(out != NULL);
	size_t n = strlen(out);
	FUZZ_ASSERT(utf8_valid(out, n));
	FUZZ_ASSERT(strchr(out, '\r') == NULL && strchr(out, '\n') == NULL);
	free(out);
	return 0;
}
