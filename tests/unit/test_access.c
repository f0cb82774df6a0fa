/*
 * test_access.c - unit tests of ingest access control: HTTP Basic
 * credentials against a crypt(3) hash (including the Authorization
 * header a real Rspamd 3.4 sent), and the client address allow-list with
 * IPv4, IPv6, CIDR and IPv4-mapped addresses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <crypt.h>

#include "access.h"
#include "common.h"
#include "config.h"

#define FIXTURE "tests/fixtures/rspamd-3.4/requests/06-basic-auth-rfc822-type.default.http"

/* The crypt(3) hash of password with a fresh salt of the given method. */
static char *make_hash(const char *prefix, const char *password)
{
	char *salt = crypt_gensalt_ra(prefix, 0, NULL, 0);
	assert_non_null(salt);
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	const char *h = crypt_r(password, salt, cd);
	assert_non_null(h);
	assert_true(h[0] == '$');
	char *copy = xstrdup(h);
	free(cd);
	free(salt);
	return copy;
}

/* The Authorization header of the captured request, as sent. */
static char *fixture_authorization(void)
{
	FILE *f = fopen(FIXTURE, "rb");
	assert_non_null(f);
	char line[4096];
	char *found = NULL;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strcmp(line, "\r\n") == 0)
			break; /* end of the request header */
		if (strncmp(line, "Authorization: ", 15) == 0) {
			line[strcspn(line, "\r\n")] = '\0';
			found = xstrdup(line + 15);
		}
	}
	fclose(f);
	assert_non_null(found);
	return found;
}

/* "Basic " + base64 of raw (which may hold a NUL). */
static char *basic(const char *raw, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	struct buf b = { 0 };
	buf_appends(&b, "Basic ");
	const unsigned char *p = (const unsigned char *)raw;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		buf_appendc(&b, tab[(v >> 18) & 63]);
		buf_appendc(&b, tab[(v >> 12) & 63]);
		buf_appendc(&b, i + 1 < n ? tab[(v >> 6) & 63] : '=');
		buf_appendc(&b, i + 2 < n ? tab[v & 63] : '=');
	}
	return buf_steal(&b);
}

static void expect_401(const struct config *c, const char *auth)
{
	struct qerr e = { 0 };
	if (access_check(c, "192.0.2.10", auth, &e) != -1)
		fail_msg("credentials '%s' were accepted", auth ? auth : "(none)");
	assert_int_equal(e.cls, QERR_INPUT);
	assert_int_equal(e.http, 401);
	assert_string_equal(e.msg, "missing or wrong credentials");
}

static void expect_ok(const struct config *c, const char *addr, const char *auth)
{
	struct qerr e = { 0 };
	if (access_check(c, addr, auth, &e) != 0)
		fail_msg("refused %s: %s", addr ? addr : "(null)", e.msg);
}

static void check_credentials(const char *method)
{
	struct config c;
	memset(&c, 0, sizeof c);
	c.auth_user = "rspamd";
	char *hash = make_hash(method, "s3cret pass");
	c.auth_password_hash = hash;

	/* What Rspamd 3.4 sent for user rspamd, password "s3cret pass". */
	char *fx = fixture_authorization();
	assert_string_equal(fx, "Basic cnNwYW1kOnMzY3JldCBwYXNz");
	expect_ok(&c, "192.0.2.10", fx);
	free(fx);

	char *a;
	/* The scheme is case-insensitive; spaces around the token are fine. */
	expect_ok(&c, "192.0.2.10", "basic cnNwYW1kOnMzY3JldCBwYXNz");
	expect_ok(&c, "192.0.2.10", "BASIC   cnNwYW1kOnMzY3JldCBwYXNz ");

	a = basic("rspamd:s3cret pasS", 18);
	expect_401(&c, a);
	free(a);
	a = basic("rspamd:s3cret pass ", 19);
	expect_401(&c, a);
	free(a);
	a = basic("rspamd:s3cret pas", 17);
	expect_401(&c, a);
	free(a);
	a = basic("rspamd:", 7);
	expect_401(&c, a);
	free(a);
	a = basic("Rspamd:s3cret pass", 18);
	expect_401(&c, a);
	free(a);
	a = basic("rspam:s3cret pass", 17);
	expect_401(&c, a);
	free(a);
	a = basic("rspamdd:s3cret pass", 19);
	expect_401(&c, a);
	free(a);
	a = basic("rspamd s3cret pass", 18); /* no colon */
	expect_401(&c, a);
	free(a);
	a = basic("rspamd:s3cret pass\0tail", 23); /* NUL would cut the password */
	expect_401(&c, a);
	free(a);
	/* A password with a colon: only the first colon splits. */
	a = basic("rspamd:s3cret:pass", 18);
	expect_401(&c, a);
	free(a);

	expect_401(&c, NULL);
	expect_401(&c, "");
	expect_401(&c, "Bearer x");
	expect_401(&c, "Bearer cnNwYW1kOnMzY3JldCBwYXNz");
	expect_401(&c, "Basic");
	expect_401(&c, "Basic ");
	expect_401(&c, "BasiccnNwYW1kOnMzY3JldCBwYXNz");
	expect_401(&c, "Basic !!!!");
	expect_401(&c, "Basic cnNwYW1kOnMzY3JldCBwYXNz=");
	expect_401(&c, "Basic cnNwYW1kOnMzY3JldCBwYX");
	expect_401(&c, "Digest username=\"rspamd\"");

	/* Very long credentials are refused, not overflowed. */
	struct buf big = { 0 };
	buf_appends(&big, "Basic ");
	for (int i = 0; i < 5000; i++)
		buf_appends(&big, "QUFB");
	expect_401(&c, big.data);
	buf_free(&big);

	free(hash);
}

static void test_credentials_sha512(void **state)
{
	(void)state;
	check_credentials("$6$");
}

static void test_credentials_yescrypt(void **state)
{
	(void)state;
	check_credentials("$y$");
}

static void test_credentials_misconfigured(void **state)
{
	(void)state;
	struct config c;
	memset(&c, 0, sizeof c);
	/* No user configured: no credentials needed. */
	expect_ok(&c, "192.0.2.10", NULL);
	c.auth_user = "";
	expect_ok(&c, "192.0.2.10", "Bearer whatever");
	/* A user without a usable hash lets no one in. */
	c.auth_user = "rspamd";
	c.auth_password_hash = "";
	expect_401(&c, "Basic cnNwYW1kOnMzY3JldCBwYXNz");
	c.auth_password_hash = NULL;
	expect_401(&c, "Basic cnNwYW1kOnMzY3JldCBwYXNz");
	c.auth_password_hash = "*";
	expect_401(&c, "Basic cnNwYW1kOnMzY3JldCBwYXNz");
	c.auth_password_hash = "not a hash";
	expect_401(&c, "Basic cnNwYW1kOnMzY3JldCBwYXNz");
}

static void test_allow_list(void **state)
{
	(void)state;
	char *nets[] = { "192.0.2.0/24", "2001:db8::/32", "127.0.0.1", "10.0.0.0/8" };
	struct config c;
	memset(&c, 0, sizeof c);
	c.allow_from = nets;
	c.n_allow_from = 4;

	expect_ok(&c, "192.0.2.10", NULL);
	expect_ok(&c, "192.0.2.255", NULL);
	expect_ok(&c, "::ffff:192.0.2.1", NULL);
	expect_ok(&c, "2001:db8:1::5", NULL);
	expect_ok(&c, "2001:0DB8:ffff:ffff::1", NULL);
	expect_ok(&c, "127.0.0.1", NULL);
	expect_ok(&c, "10.200.3.4", NULL);

	const char *refused[] = { "192.0.3.1", "2001:db9::1", "127.0.0.2", "::1", "::ffff:192.0.3.1",
				  "11.0.0.1", "", "unix:", "example.org", "192.0.2.10 ",
				  "192.0.2.10/32" };
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		struct qerr e = { 0 };
		assert_int_equal(access_check(&c, refused[i], NULL, &e), -1);
		assert_int_equal(e.cls, QERR_INPUT);
		assert_int_equal(e.http, 403);
		assert_non_null(strstr(e.msg, "is not allowed"));
	}
	struct qerr e = { 0 };
	assert_int_equal(access_check(&c, "192.0.3.1", NULL, &e), -1);
	assert_string_equal(e.msg, "client address 192.0.3.1 is not allowed");
	assert_int_equal(access_check(&c, NULL, NULL, &e), -1);
	assert_int_equal(e.http, 403);

	/* Both checks: the address first, then the credentials. */
	c.auth_user = "rspamd";
	char *hash = make_hash("$6$", "s3cret pass");
	c.auth_password_hash = hash;
	expect_ok(&c, "192.0.2.10", "Basic cnNwYW1kOnMzY3JldCBwYXNz");
	assert_int_equal(access_check(&c, "192.0.2.10", "Basic eDp5", &e), -1);
	assert_int_equal(e.http, 401);
	assert_int_equal(access_check(&c, "198.51.100.1", "Basic cnNwYW1kOnMzY3JldCBwYXNz", &e), -1);
	assert_int_equal(e.http, 403);
	free(hash);
}

static void test_addr_in(void **state)
{
	(void)state;
	assert_true(access_addr_in("192.0.2.127", "192.0.2.0/25"));
	assert_false(access_addr_in("192.0.2.128", "192.0.2.0/25"));
	assert_true(access_addr_in("192.0.2.1", "192.0.2.77/24")); /* host bits ignored */
	assert_true(access_addr_in("203.0.113.9", "0.0.0.0/0"));
	assert_true(access_addr_in("203.0.113.9", "203.0.113.9"));
	assert_true(access_addr_in("203.0.113.9", "203.0.113.9/32"));
	assert_false(access_addr_in("203.0.113.8", "203.0.113.9/32"));
	assert_true(access_addr_in("203.0.113.8", "203.0.113.9/31"));
	assert_false(access_addr_in("203.0.113.10", "203.0.113.9/31"));

	assert_true(access_addr_in("2001:db8:7fff::1", "2001:db8::/33"));
	assert_false(access_addr_in("2001:db8:8000::1", "2001:db8::/33"));
	assert_true(access_addr_in("::1", "::1"));
	assert_true(access_addr_in("::1", "::1/128"));
	assert_false(access_addr_in("::2", "::1/128"));
	assert_true(access_addr_in("fe80::1234", "fe80::/10"));
	assert_false(access_addr_in("fec0::1", "fe80::/10"));

	/* IPv4-mapped IPv6 addresses fall in IPv4 networks, and the reverse. */
	assert_true(access_addr_in("::ffff:192.0.2.1", "192.0.2.0/24"));
	assert_true(access_addr_in("::FFFF:c000:0201", "192.0.2.1"));
	assert_false(access_addr_in("::ffff:192.0.3.1", "192.0.2.0/24"));
	assert_true(access_addr_in("192.0.2.1", "::ffff:192.0.2.0/120"));
	/* Other IPv6 addresses are not in IPv4 networks. */
	assert_false(access_addr_in("2001:db8::1", "0.0.0.0/0"));
	assert_false(access_addr_in("::192.0.2.1", "192.0.2.0/24"));
	assert_false(access_addr_in("::", "0.0.0.0/0"));

	/* Bad syntax is false. */
	assert_false(access_addr_in("192.0.2.1", "192.0.2.0/33"));
	assert_false(access_addr_in("192.0.2.1", "nonsense"));
	assert_false(access_addr_in("192.0.2", "192.0.2.0/24"));
	assert_false(access_addr_in(NULL, "192.0.2.0/24"));
	assert_false(access_addr_in("192.0.2.1", NULL));
}

static void test_net_valid(void **state)
{
	(void)state;
	const char *good[] = { "192.0.2.0/24", "2001:db8::/32", "127.0.0.1", "::1", "::",
			       "::ffff:192.0.2.1", "0.0.0.0/0", "::/0", "::/128", "10.0.0.0/8",
			       "192.0.2.1/32", "2001:DB8::1/64" };
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		if (!access_net_valid(good[i]))
			fail_msg("'%s' should be valid", good[i]);
	const char *bad[] = { "", "192.0.2.0/33", "2001:db8::/129", "192.0.2.0/", "192.0.2.0/-1",
			      "192.0.2.0/+8", "192.0.2.0/ 8", "192.0.2.0/8x", "192.0.2.0/08x",
			      "192.0.2", "256.0.0.1", "example.org", "192.0.2.0/24/8",
			      "fe80::1%eth0", "1.2.3.4 ", " 1.2.3.4", "/24",
			      "192.0.2.0/99999999999999999999", "2001:db8:::1",
			      "1111:2222:3333:4444:5555:6666:7777:8888:9999/64" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (access_net_valid(bad[i]))
			fail_msg("'%s' should be invalid", bad[i]);
	assert_false(access_net_valid(NULL));
	char longnet[300];
	memset(longnet, '1', sizeof longnet - 1);
	longnet[sizeof longnet - 1] = '\0';
	assert_false(access_net_valid(longnet));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_credentials_sha512),
		cmocka_unit_test(test_credentials_yescrypt),
		cmocka_unit_test(test_credentials_misconfigured),
		cmocka_unit_test(test_allow_list),
		cmocka_unit_test(test_addr_in),
		cmocka_unit_test(test_net_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
