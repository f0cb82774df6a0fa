/*
 * test_token.c - unit tests of the signed links: a token is accepted for
 * exactly the purpose, subject and time it was made for, with the current
 * or the previous key, and refused when expired (recognised as genuine),
 * tampered with in any character, or presented for another purpose or
 * another subject; key files are made mode 0640, never over an old one,
 * and malformed ones are refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "token.h"

#define ID_A "0123456789abcdef01234567"
#define ID_B "0123456789abcdef01234568"
#define NOW 1800000000

static char dir[64];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/test_token.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A fresh key file in the test directory, loaded. */
static void new_keys(const char *name, const char *prev, struct token_keys *k)
{
	char path[128], ppath[128] = "";
	struct qerr e;
	qerr_clear(&e);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	unlink(path);
	assert_int_equal(token_key_create(path, &e), 0);
	if (prev)
		snprintf(ppath, sizeof ppath, "%s/%s", dir, prev);
	assert_int_equal(token_keys_load(k, path, ppath, &e), 0);
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct token_keys k;
	new_keys("k1", NULL, &k);
	char t[TOKEN_MAX];
	token_make(&k, TOKEN_ENTRY, ID_A, NOW + 60, t);
	int64_t exp = 0;
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, t, NOW, &exp), TOKEN_OK);
	assert_int_equal(exp, NOW + 60);
	/* expired: genuine, so it can say so; one second is enough */
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, t, NOW + 60, NULL), TOKEN_EXPIRED);
	/* another purpose, another entry */
	assert_int_equal(token_check(&k, TOKEN_RELEASE, ID_A, t, NOW, NULL), TOKEN_BAD);
	assert_int_equal(token_check(&k, TOKEN_DELETE, ID_A, t, NOW, NULL), TOKEN_BAD);
	assert_int_equal(token_check(&k, TOKEN_LIST, ID_A, t, NOW, NULL), TOKEN_BAD);
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_B, t, NOW, NULL), TOKEN_BAD);
	/* another key */
	struct token_keys other;
	new_keys("k2", NULL, &other);
	assert_int_equal(token_check(&other, TOKEN_ENTRY, ID_A, t, NOW, NULL), TOKEN_BAD);
}

static void test_recipient(void **state)
{
	(void)state;
	struct token_keys k;
	new_keys("k1", NULL, &k);
	char t[TOKEN_MAX];
	token_make(&k, TOKEN_LIST, "Bob@Example.NET", NOW + 60, t);
	/* recipients compare without regard to case, as the stores do */
	assert_int_equal(token_check(&k, TOKEN_LIST, "bob@example.net", t, NOW, NULL), TOKEN_OK);
	assert_int_equal(token_check(&k, TOKEN_LIST, "alice@example.net", t, NOW, NULL), TOKEN_BAD);
	assert_int_equal(token_check(&k, TOKEN_LIST, "bob@example.net.evil", t, NOW, NULL),
			 TOKEN_BAD);
	assert_int_equal(token_check(&k, TOKEN_LIST, "", t, NOW, NULL), TOKEN_BAD);
}

/* Every single-character change of a token is refused, and so are
 * changed expiry spellings that mean the same time. */
static void test_tamper(void **state)
{
	(void)state;
	struct token_keys k;
	new_keys("k1", NULL, &k);
	char t[TOKEN_MAX], bad[TOKEN_MAX + 8];
	token_make(&k, TOKEN_ENTRY, ID_A, NOW + 600, t);
	size_t n = strlen(t);
	for (size_t i = 0; i < n; i++) {
		strcpy(bad, t);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, bad, NOW, NULL), TOKEN_BAD);
	}
	/* a later expiry with the old MAC */
	snprintf(bad, sizeof bad, "%d%s", NOW + 700, strchr(t, '.'));
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, bad, NOW, NULL), TOKEN_BAD);
	/* leading zero or sign: another spelling of the signed time */
	snprintf(bad, sizeof bad, "0%s", t);
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, bad, NOW, NULL), TOKEN_BAD);
	snprintf(bad, sizeof bad, "+%s", t);
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, bad, NOW, NULL), TOKEN_BAD);
	/* truncated, extended, empty, without a dot, absurd expiry */
	strcpy(bad, t);
	bad[n - 1] = '\0';
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, bad, NOW, NULL), TOKEN_BAD);
	snprintf(bad, sizeof bad, "%sA", t);
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, bad, NOW, NULL), TOKEN_BAD);
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, "", NOW, NULL), TOKEN_BAD);
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, NULL, NOW, NULL), TOKEN_BAD);
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A, strchr(t, '.') + 1, NOW, NULL),
			 TOKEN_BAD);
	assert_int_equal(token_check(&k, TOKEN_ENTRY, ID_A,
				     "99999999999999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
				     NOW, NULL), TOKEN_BAD);
}

/* During a rotation links made with the previous key stay good; after
 * it (no previous key configured) they are refused. */
static void test_rotation(void **state)
{
	(void)state;
	struct token_keys old, rotated, after;
	new_keys("old", NULL, &old);
	char t[TOKEN_MAX];
	token_make(&old, TOKEN_ENTRY, ID_A, NOW + 60, t);
	new_keys("new", "old", &rotated);
	assert_true(rotated.has_prev);
	assert_int_equal(token_check(&rotated, TOKEN_ENTRY, ID_A, t, NOW, NULL), TOKEN_OK);
	assert_int_equal(token_check(&rotated, TOKEN_ENTRY, ID_A, t, NOW + 61, NULL),
			 TOKEN_EXPIRED);
	char path[128];
	struct qerr e;
	snprintf(path, sizeof path, "%s/new", dir);
	assert_int_equal(token_keys_load(&after, path, "", &e), 0);
	assert_int_equal(token_check(&after, TOKEN_ENTRY, ID_A, t, NOW, NULL), TOKEN_BAD);
	/* new links are signed with the new key */
	token_make(&rotated, TOKEN_ENTRY, ID_A, NOW + 60, t);
	assert_int_equal(token_check(&after, TOKEN_ENTRY, ID_A, t, NOW, NULL), TOKEN_OK);
}

static void test_key_files(void **state)
{
	(void)state;
	char path[128];
	struct qerr e;
	struct token_keys k;
	snprintf(path, sizeof path, "%s/made", dir);
	mode_t old = umask(077);
	qerr_clear(&e);
	assert_int_equal(token_key_create(path, &e), 0);
	umask(old);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_size, 65);
	/* never over an existing key */
	assert_int_equal(token_key_create(path, &e), -1);
	assert_int_equal(e.cls, QERR_PERM);
	assert_non_null(strstr(e.msg, path));
	/* missing and malformed files name themselves */
	snprintf(path, sizeof path, "%s/none", dir);
	assert_int_equal(token_keys_load(&k, path, "", &e), -1);
	assert_non_null(strstr(e.msg, "make-key"));
	snprintf(path, sizeof path, "%s/short", dir);
	FILE *f = fopen(path, "w");
	fputs("abcdef\n", f);
	fclose(f);
	assert_int_equal(token_keys_load(&k, path, "", &e), -1);
	assert_non_null(strstr(e.msg, "hex"));
	snprintf(path, sizeof path, "%s/nothex", dir);
	f = fopen(path, "w");
	for (int i = 0; i < 64; i++)
		fputc('g', f);
	fclose(f);
	assert_int_equal(token_keys_load(&k, path, "", &e), -1);
	assert_int_equal(token_keys_load(&k, "", "", &e), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_recipient),
		cmocka_unit_test(test_tamper),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_key_files),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
