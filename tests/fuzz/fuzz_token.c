/*
 * fuzz_token.c - libFuzzer harness for the signed links' check: whatever
 * a URL carries as subject and token, token_check never accepts a token
 * it did not make (the input cannot know the key), never reads out of
 * bounds, and a token it made for the input's subject is accepted for
 * that subject and purpose only.
 *
 * Input: a purpose byte, then subject NUL token.
 */
#include "fuzz_util.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct token_keys k;
	static bool init;
	if (!init) {
		for (size_t i = 0; i < TOKEN_KEY_LEN; i++) {
			k.cur[i] = (unsigned char)(i * 7 + 1);
			k.prev[i] = (unsigned char)(i * 11 + 3);
		}
		k.has_prev = true;
		init = true;
	}
	if (size < 1)
		return 0;
	enum token_purpose p = (enum token_purpose)(data[0] % 4);
	size_t n = size - 1;
	char *s = fuzz_cstr(data + 1, n);
	size_t sl = strlen(s);
	const char *subject = s;
	/* fuzz_cstr keeps the bytes after a NUL: the token follows it */
	const char *token = sl < n ? s + sl + 1 : "";
	int64_t now = 1800000000;
	enum token_verdict v = token_check(&k, p, subject, token, now, NULL);
	FUZZ_ASSERT(v == TOKEN_BAD); /* 2^-256 to guess a MAC */
	char t[TOKEN_MAX];
	token_make(&k, p, subject, now + 60, t);
	if (strlen(subject) <= 1024) {
		FUZZ_ASSERT(token_check(&k, p, subject, t, now, NULL) == TOKEN_OK);
		FUZZ_ASSERT(token_check(&k, p, subject, t, now + 60, NULL) == TOKEN_EXPIRED);
		FUZZ_ASSERT(token_check(&k, (enum token_purpose)((p + 1) % 4), subject, t, now,
					NULL) == TOKEN_BAD);
	}
	free(s);
	return 0;
}
