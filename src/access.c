/*
 * access.c - owns the decision whether a request may POST to the
 * quarantine: the client address against the allow-list (addresses and
 * CIDR networks, IPv4 and IPv6, with IPv4-mapped IPv6 addresses matching
 * IPv4 networks), then HTTP Basic credentials against the configured
 * user and crypt(3) password hash (libcrypt's crypt_r; the results are
 * compared in constant time with CRYPTO_memcmp).
 */
#include "access.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "ingest_base64.h"

#define NET_MAX 64          /* longest address/prefix text we look at */
#define USER_MAX 256        /* fixed width for comparing user names */
#define AUTH_MAX 1024       /* longest Authorization value considered */

/* An address or network, always as IPv6: IPv4 is kept as an
 * IPv4-mapped address (::ffff:a.b.c.d) with the prefix moved by 96, so
 * that mapped client addresses fall inside IPv4 networks. */
struct net6 {
	unsigned char a[16];
	int prefix;
};

/* Parses a textual address (no prefix) into the common form. */
static bool parse_addr(const char *s, struct net6 *out)
{
	struct in_addr v4;
	if (inet_pton(AF_INET, s, &v4) == 1) {
		memset(out->a, 0, 10);
		out->a[10] = 0xff;
		out->a[11] = 0xff;
		memcpy(out->a + 12, &v4, 4);
		out->prefix = 128;
		return true;
	}
	if (inet_pton(AF_INET6, s, out->a) == 1) {
		out->prefix = 128;
		return true;
	}
	return false;
}

/* Parses "address" or "address/prefix" with the prefix in range for the
 * address family. */
static bool parse_net(const char *net, struct net6 *out)
{
	char buf[NET_MAX];
	if (net == NULL)
		return false;
	size_t len = strlen(net);
	if (len == 0 || len >= sizeof buf)
		return false;
	memcpy(buf, net, len + 1);
	char *slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	if (!parse_addr(buf, out))
		return false;
	bool v4 = strchr(buf, ':') == NULL;
	if (slash != NULL) {
		const char *p = slash + 1;
		/* Digits only: parse_long would take a sign. */
		if (*p == '\0' || strspn(p, "0123456789") != strlen(p))
			return false;
		long bits;
		if (parse_long(p, 0, v4 ? 32 : 128, &bits, NULL) < 0)
			return false;
		out->prefix = (int)bits + (v4 ? 96 : 0);
	}
	return true;
}

/* Whether the first prefix bits of two addresses agree. */
static bool prefix_match(const unsigned char *a, const unsigned char *b, int prefix)
{
	int full = prefix / 8, rest = prefix % 8;
	if (memcmp(a, b, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

bool access_addr_in(const char *addr, const char *net)
{
	struct net6 a, n;
	if (addr == NULL || strlen(addr) >= NET_MAX || !parse_addr(addr, &a))
		return false;
	if (!parse_net(net, &n))
		return false;
	return prefix_match(a.a, n.a, n.prefix);
}

bool access_net_valid(const char *net)
{
	struct net6 n;
	return parse_net(net, &n);
}

/* Collects decoded credentials, refusing more than fit. */
struct cred_buf {
	char data[AUTH_MAX];
	size_t len;
};

static int cred_append(void *arg, const void *p, size_t n, struct qerr *e)
{
	struct cred_buf *cb = arg;
	if (n >= sizeof cb->data - cb->len)
		return qerr_input(e, 401, "credentials too long");
	memcpy(cb->data + cb->len, p, n);
	cb->len += n;
	return 0;
}

/* Compares two strings in time that depends only on the fixed width,
 * not on where they differ. */
static bool user_equal(const char *given, size_t glen, const char *want)
{
	unsigned char x[USER_MAX] = { 0 }, y[USER_MAX] = { 0 };
	size_t wlen = strlen(want);
	bool fits = glen < USER_MAX && wlen < USER_MAX;
	memcpy(x, given, fits ? glen : 0);
	memcpy(y, want, fits ? wlen : 0);
	int diff = CRYPTO_memcmp(x, y, sizeof x);
	return fits && glen == wlen && diff == 0;
}

/*
 * Checks "Basic <base64 user:password>" against the configured user and
 * password hash.  The password is always hashed, whether or not the user
 * matched, so the answer's timing tells nothing about the user name.
 */
static bool credentials_ok(const struct config *c, const char *authorization)
{
	const char *hash = c->auth_password_hash;
	if (authorization == NULL || hash == NULL || hash[0] == '\0')
		return false;
	size_t alen = strlen(authorization);
	if (alen >= AUTH_MAX || strncasecmp(authorization, "Basic", 5) != 0)
		return false;
	const char *p = authorization + 5;
	if (*p != ' ' && *p != '\t')
		return false;
	while (*p == ' ' || *p == '\t')
		p++;
	size_t plen = strlen(p);
	while (plen > 0 && (p[plen - 1] == ' ' || p[plen - 1] == '\t'))
		plen--;
	if (plen == 0)
		return false;

	struct cred_buf cb = { .len = 0 };
	if (base64_decode_to(p, plen, cred_append, &cb, NULL) < 0)
		return false;
	cb.data[cb.len] = '\0';
	if (memchr(cb.data, '\0', cb.len) != NULL)
		return false; /* a NUL would cut the password short */
	char *colon = memchr(cb.data, ':', cb.len);
	if (colon == NULL)
		return false;
	*colon = '\0';
	const char *password = colon + 1;
	bool user_ok = user_equal(cb.data, (size_t)(colon - cb.data), c->auth_user);

	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	const char *h = crypt_r(password, hash, cd);
	bool pass_ok = false;
	if (h != NULL && h[0] != '*') {
		size_t hl = strlen(h);
		pass_ok = hl == strlen(hash) && CRYPTO_memcmp(h, hash, hl) == 0;
	}
	OPENSSL_cleanse(cd, sizeof *cd);
	free(cd);
	OPENSSL_cleanse(&cb, sizeof cb);
	return user_ok && pass_ok;
}

int access_check(const struct config *c, const char *remote_addr, const char *authorization,
		 struct qerr *e)
{
	if (c->n_allow_from > 0) {
		bool ok = false;
		for (size_t i = 0; i < c->n_allow_from && !ok; i++)
			ok = access_addr_in(remote_addr, c->allow_from[i]);
		if (!ok)
			return qerr_input(e, 403, "client address %.64s is not allowed",
					  remote_addr && *remote_addr ? remote_addr : "(none)");
	}
	if (c->auth_user != NULL && c->auth_user[0] != '\0') {
		if (!credentials_ok(c, authorization))
			return qerr_input(e, 401, "missing or wrong credentials");
	}
	return 0;
}
