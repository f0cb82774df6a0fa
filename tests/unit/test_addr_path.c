/*
 * test_addr_path.c - recipient addresses to file store directory names:
 * no input may name a path outside the store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "addr_path.h"
#include "common.h"

#define OUTMAX (2 * ADDR_PATH_COMPONENT_MAX + 2)

/* The properties every result must have, whatever the input. */
static void check_safe(const char *p)
{
	const char *slash = strchr(p, '/');
	assert_non_null(slash);
	assert_null(strchr(slash + 1, '/'));        /* exactly one '/' */
	assert_true(slash > p && slash[1] != '\0'); /* two non-empty parts */
	assert_true(p[0] != '.');                   /* no component starts with '.' */
	assert_true(slash[1] != '.');
	assert_null(strstr(p, "/.."));
	assert_true((size_t)(slash - p) <= ADDR_PATH_COMPONENT_MAX);
	assert_true(strlen(slash + 1) <= ADDR_PATH_COMPONENT_MAX);
	for (const char *c = p; *c; c++) {
		unsigned char u = (unsigned char)*c;
		assert_true((u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '.' ||
			    u == '+' || u == '_' || u == '-' || u == '%' || u == '~' ||
			    u == '/' || (u >= 'A' && u <= 'F'));
	}
}

static void expect(const char *addr, const char *want)
{
	char out[OUTMAX];
	assert_int_equal(addr_path(addr, out, sizeof out), 0);
	check_safe(out);
	assert_string_equal(out, want);
}

static void test_plain(void **state)
{
	(void)state;
	expect("bob@example.net", "example.net/bob");
	expect("Bob.Smith+tag@Example.NET", "example.net/bob.smith+tag");
	expect("first_last-x@sub.example.org", "sub.example.org/first_last-x");
}

static void test_dots_and_slashes(void **state)
{
	(void)state;
	expect("../x@d", "d/%2E.%2Fx");
	expect("..@..", "%2E./%2E.");
	expect(".@.", "%2E/%2E");
	expect("a/b@c/d", "c%2Fd/a%2Fb");
	expect("x@../../etc", "%2E.%2F..%2Fetc/x");
	expect(".hidden@example.org", "example.org/%2Ehidden");
	expect("a..b@example.org", "example.org/a..b");
	expect("\\..\\@d", "d/%5C..%5C");
}

static void test_quoted_local(void **state)
{
	(void)state;
	expect("\"../x\"@d", "d/%22..%2Fx%22");
	expect("\"a@b\"@example.org", "example.org/%22a%40b%22");
	expect("\"sp ace\"@d", "d/%22sp%20ace%22");
}

static void test_missing_parts(void **state)
{
	(void)state;
	expect("postmaster", "_local/postmaster");
	expect("", "_local/_");
	expect("@example.org", "example.org/_");
	expect("user@", "_local/user");
	expect("@", "_local/_");
	/* the last '@' splits */
	expect("a@b@c", "c/a%40b");
	expect("a@@c", "c/a%40");
}

static void test_controls_and_8bit(void **state)
{
	(void)state;
	expect("a\x01\x1f\x7f@d", "d/a%01%1F%7F");
	expect("a\r\nb@d\t", "d%09/a%0D%0Ab");
	expect("j\xc3\xbcrgen@m\xc3\xbcnchen.de", "m%C3%BCnchen.de/j%C3%BCrgen");
	expect("50%@d", "d/50%25");
	expect("~x@d", "d/%7Ex");
}

static void test_long(void **state)
{
	(void)state;
	char addr[700];
	char out[OUTMAX];
	/* 300 plain characters: cut, with the hash */
	memset(addr, 'a', 300);
	strcpy(addr + 300, "@example.org");
	assert_int_equal(addr_path(addr, out, sizeof out), 0);
	check_safe(out);
	const char *local = strchr(out, '/') + 1;
	assert_int_equal(strlen(local), ADDR_PATH_COMPONENT_MAX);
	const char *tilde = strchr(local, '~');
	assert_non_null(tilde);
	assert_int_equal(strlen(tilde + 1), 16);
	/* a different long local part with the same prefix gives another name */
	char out2[OUTMAX];
	addr[299] = 'b';
	assert_int_equal(addr_path(addr, out2, sizeof out2), 0);
	check_safe(out2);
	assert_string_not_equal(out, out2);
	assert_int_equal(strncmp(out, out2, (size_t)(tilde - out)), 0);

	/* 300 bytes that each need %XX: never cut inside a triple */
	for (size_t i = 0; i < 300; i++)
		addr[i] = "/.\x01"[i % 3];
	strcpy(addr + 300, "@");
	memset(addr + 301, '.', 350);
	addr[651] = '\0';
	assert_int_equal(addr_path(addr, out, sizeof out), 0);
	check_safe(out);
	for (const char *p = out; *p; p++)
		if (*p == '%')
			assert_true(p[1] && p[2] && p[1] != '~' && p[2] != '~');
	/* both components long */
	assert_true(strlen(out) > ADDR_PATH_COMPONENT_MAX);
}

static void test_small_buffer(void **state)
{
	(void)state;
	char out[16];
	assert_int_equal(addr_path("bob@example.net", out, 16), 0);
	assert_string_equal(out, "example.net/bob");
	assert_int_equal(addr_path("bob@example.net", out, 15), -1);
	assert_int_equal(addr_path("bob@example.net", out, 0), -1);
}

static void test_every_byte(void **state)
{
	(void)state;
	/* every single byte value in both positions stays safe */
	for (int c = 1; c < 256; c++) {
		char addr[8] = { (char)c, (char)c, '@', (char)c, (char)c, '\0' };
		char out[OUTMAX];
		assert_int_equal(addr_path(addr, out, sizeof out), 0);
		check_safe(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_dots_and_slashes),
		cmocka_unit_test(test_quoted_local),
		cmocka_unit_test(test_missing_parts),
		cmocka_unit_test(test_controls_and_8bit),
		cmocka_unit_test(test_long),
		cmocka_unit_test(test_small_buffer),
		cmocka_unit_test(test_every_byte),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
