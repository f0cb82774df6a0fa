/*
 * fuzz_json_meta.c - libFuzzer harness for the JSON metadata of the
 * json_with_message and multipart formatters: json_loadb as ingest calls
 * it, then meta_from_json; what comes out must keep record.h's promise.
 */
#include <jansson.h>

#include "fuzz_util.h"
#include "ingest_meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return 0;
	if (json_is_object(root)) {
		struct qmeta m = { .scan_time = -1 };
		struct qerr e = { 0 };
		if (meta_from_json(root, &m, &e) < 0) {
			FUZZ_ASSERT(e.cls == QERR_INPUT && e.http == 400);
			FUZZ_ASSERT(strchr(e.msg, '\n') == NULL && strchr(e.msg, '\r') == NULL);
		}
		fuzz_check_qmeta(&m);
		qmeta_free(&m);
	}
	json_decref(root);
	return 0;
}
