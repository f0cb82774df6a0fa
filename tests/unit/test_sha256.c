/*
 * test_sha256.c - the SHA-256 helpers of common.c give the standard
 * digests as lower-case hex, whether the input comes in one piece or in
 * several updates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

/* FIPS 180-2 test vectors. */
static void test_known_digests(void **state)
{
	(void)state;
	char hex[65];
	sha256_hex("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha256_hex(two, strlen(two), hex);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

/* Updates in pieces give the digest of the whole. */
static void test_pieces(void **state)
{
	(void)state;
	static char million[1000000];
	memset(million, 'a', sizeof million);
	struct sha256_ctx *c = sha256_new();
	for (size_t off = 0; off < sizeof million; off += 4096) {
		size_t n = sizeof million - off < 4096 ? sizeof million - off : 4096;
		sha256_update(c, million + off, n);
	}
	char hex[65];
	sha256_final_hex(c, hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	assert_int_equal(strlen(hex), 64);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_digests),
		cmocka_unit_test(test_pieces),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
