/*
 * fuzz_record.c - libFuzzer harness for what the file store reads back
 * from disk: qentry_from_json_for over a metadata file, an entry's own
 * JSON or a message's record (src/record.c).  A file damaged by a disk or
 * a cut may hold anything; reading it must fail cleanly or give an entry
 * that writes back as it read.
 *
 * Input: 24 bytes of the entry id asked for, then the file's bytes.  On
 * success: the entry is the one asked for when it came from a record;
 * its meta names its one recipient; and written again (qentry_to_json)
 * and read again, it writes the same text: what the store rewrites on a
 * status change keeps what it read.
 */
#include <jansson.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < ENTRY_ID_LEN)
		return 0;
	char want[ENTRY_ID_LEN + 1];
	memcpy(want, data, ENTRY_ID_LEN);
	want[ENTRY_ID_LEN] = '\0';
	if (strlen(want) != ENTRY_ID_LEN)
		return 0; /* an id never holds a NUL */
	const char *text = (const char *)data + ENTRY_ID_LEN;
	size_t len = size - ENTRY_ID_LEN;
	json_t *o = json_loadb(text, len, 0, NULL);
	bool record = o != NULL && json_is_object(o) && json_object_get(o, "entries") != NULL;
	json_decref(o);

	struct qentry q;
	if (qentry_from_json_for(text, len, want, &q) != 0)
		return 0;
	FUZZ_ASSERT(strlen(q.id) == ENTRY_ID_LEN);
	if (record) /* a record is read for the entry asked for, or not at all */
		FUZZ_ASSERT(strcmp(q.id, want) == 0);
	FUZZ_ASSERT(q.meta.nrcpt == (q.rcpt != NULL ? 1u : 0u));
	if (q.rcpt != NULL)
		FUZZ_ASSERT(strcmp(q.meta.rcpt[0], q.rcpt) == 0);

	char *once = qentry_to_json(&q, true);
	struct qentry again;
	FUZZ_ASSERT(qentry_from_json_for(once, strlen(once), q.id, &again) == 0);
	char *twice = qentry_to_json(&again, true);
	FUZZ_ASSERT(strcmp(once, twice) == 0);
	free(once);
	free(twice);
	qentry_free(&again);
	qentry_free(&q);
	return 0;
}
