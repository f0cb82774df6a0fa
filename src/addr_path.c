/*
 * addr_path.c - owns the mapping from a recipient address to the
 * "domain/local" directory name of the file store.  The mapping keeps
 * [a-z0-9.+_-], writes every other byte as %XX, never lets a component
 * start with '.', and cuts long components, adding a hash of the whole.
 */
#include "addr_path.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

/* Hex digits of the hash that ends a cut component. */
#define ADDR_PATH_HASH_HEX 16

static bool keep_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '+' ||
	       c == '_' || c == '-';
}

/* Encodes s[0..n) (lower-cased) into out, which has room for 3 * n + 1
 * bytes; empty input gives `empty`.  Returns the length written. */
static size_t encode(const char *s, size_t n, const char *empty, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t k = 0;
	if (n == 0) {
		strcpy(out, empty);
		return strlen(empty);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (keep_byte(c) && !(i == 0 && c == '.')) {
			out[k++] = (char)c;
		} else {
			out[k++] = '%';
			out[k++] = hex[c >> 4];
			out[k++] = hex[c & 0x0F];
		}
	}
	out[k] = '\0';
	return k;
}

/* Shortens an encoded component longer than ADDR_PATH_COMPONENT_MAX to a
 * prefix plus "~" and a hash of the full component, so that two long
 * names that share a prefix still differ.  '~' is never produced by
 * encode(), so a cut name cannot equal an uncut one. */
static size_t shorten(char *comp, size_t len)
{
	if (len <= ADDR_PATH_COMPONENT_MAX)
		return len;
	char hash[65];
	sha256_hex(comp, len, hash);
	size_t keep = ADDR_PATH_COMPONENT_MAX - 1 - ADDR_PATH_HASH_HEX;
	/* Do not cut inside a %XX triple. */
	if (keep >= 1 && comp[keep - 1] == '%')
		keep -= 1;
	else if (keep >= 2 && comp[keep - 2] == '%')
		keep -= 2;
	comp[keep] = '~';
	memcpy(comp + keep + 1, hash, ADDR_PATH_HASH_HEX);
	comp[keep + 1 + ADDR_PATH_HASH_HEX] = '\0';
	return keep + 1 + ADDR_PATH_HASH_HEX;
}

int addr_path(const char *addr, char *out, size_t outlen)
{
	if (addr == NULL)
		addr = "";
	size_t n = strlen(addr);
	const char *at = strrchr(addr, '@');
	const char *local = addr;
	size_t local_len = at ? (size_t)(at - addr) : n;
	const char *domain = at ? at + 1 : "";
	size_t domain_len = at ? n - local_len - 1 : 0;

	char *d = xmalloc(3 * domain_len + 8);
	char *l = xmalloc(3 * local_len + 8);
	size_t dl = shorten(d, encode(domain, domain_len, "_local", d));
	size_t ll = shorten(l, encode(local, local_len, "_", l));

	int r = -1;
	if (dl + 1 + ll + 1 <= outlen) {
		memcpy(out, d, dl);
		out[dl] = '/';
		memcpy(out + dl + 1, l, ll);
		out[dl + 1 + ll] = '\0';
		r = 0;
	}
	free(d);
	free(l);
	return r;
}
