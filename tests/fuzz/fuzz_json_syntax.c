/*
 * fuzz_json_syntax.c - differential libFuzzer harness for the JSON syntax
 * check: on any input it must accept exactly what jansson's
 * json_loadb(JSON_DECODE_ANY) accepts.  The one allowed difference is a
 * number jansson cannot hold (an integer beyond 64 bits, a real beyond a
 * double's range): valid JSON that jansson refuses by its error text.
 * And input holding a NUL byte, which JSON never contains and the checker
 * always refuses, is not compared: jansson's json_loadb drops a NUL that
 * directly follows a number or a literal ("[1\0]" loads), a quirk of its
 * lexer that C strings (all the checker is given in the daemon) never
 * reach.
 * The check of the top-level type must agree with the value's first byte.
 */
#include <jansson.h>

#include "fuzz_util.h"
#include "json_syntax.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* jansson's refusals of valid JSON numbers it cannot represent. */
static bool number_overflow(const char *text)
{
	return strstr(text, "too big integer") != NULL ||
	       strstr(text, "too big negative integer") != NULL ||
	       strstr(text, "real number overflow") != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	char err[128];
	memset(err, 'x', sizeof err);
	int ours = json_syntax_check(p, size, 0, err, sizeof err) == 0;
	if (!ours) {
		/* a one-line reason, within the buffer */
		FUZZ_ASSERT(memchr(err, '\0', sizeof err) != NULL);
		FUZZ_ASSERT(err[0] != '\0');
		FUZZ_ASSERT(strchr(err, '\n') == NULL);
	}

	if (memchr(p, '\0', size) != NULL) {
		FUZZ_ASSERT(!ours);
		return 0;
	}

	json_error_t jerr;
	json_t *j = json_loadb(p, size, JSON_DECODE_ANY, &jerr);
	int theirs = j != NULL;
	if (ours != theirs) {
		if (!(ours && !theirs && number_overflow(jerr.text)))
			fprintf(stderr, "json_syntax_check %s (%s), jansson %s (%s)\n",
				ours ? "accepts" : "refuses", ours ? "" : err,
				theirs ? "accepts" : "refuses", theirs ? "" : jerr.text);
		FUZZ_ASSERT(ours && !theirs && number_overflow(jerr.text));
	}

	/* The top-level type: '[' and '{' accept what starts with them. */
	size_t k = 0;
	while (k < size && (p[k] == ' ' || p[k] == '\t' || p[k] == '\n' || p[k] == '\r'))
		k++;
	char first = k < size ? p[k] : 0;
	int arr = json_syntax_check(p, size, '[', NULL, 0) == 0;
	int obj = json_syntax_check(p, size, '{', err, sizeof err) == 0;
	FUZZ_ASSERT(arr == (ours && first == '['));
	FUZZ_ASSERT(obj == (ours && first == '{'));
	if (j != NULL) {
		FUZZ_ASSERT(arr == json_is_array(j));
		FUZZ_ASSERT(obj == json_is_object(j));
	}
	json_decref(j);
	return 0;
}
