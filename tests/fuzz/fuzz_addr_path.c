/*
 * fuzz_addr_path.c - libFuzzer harness for recipient directory names:
 * whatever the address, the name is "domain/local" with exactly one '/',
 * no component ".", ".." or starting with '.', only the bytes the
 * mapping may write, and each component within its limit.
 */
#include "addr_path.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* [a-z0-9.+_-] kept, %XX with upper-case hex, '~' before a hash. */
static bool allowed(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') ||
	       c == '.' || c == '+' || c == '_' || c == '-' || c == '%' || c == '~' || c == '/';
}

static bool hexdig(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* One component: within its limit, no dot name, every %XX complete. */
static void check_component(const char *s, size_t n)
{
	FUZZ_ASSERT(n >= 1 && n <= ADDR_PATH_COMPONENT_MAX);
	FUZZ_ASSERT(s[0] != '.');
	FUZZ_ASSERT(!(n == 1 && s[0] == '.'));
	FUZZ_ASSERT(!(n == 2 && s[0] == '.' && s[1] == '.'));
	for (size_t i = 0; i < n; i++)
		if (s[i] == '%')
			FUZZ_ASSERT(i + 2 < n && hexdig(s[i + 1]) && hexdig(s[i + 2]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *addr = fuzz_cstr(data, size);
	char out[2 * ADDR_PATH_COMPONENT_MAX + 2];
	FUZZ_ASSERT(addr_path(addr, out, sizeof out) == 0);
	size_t n = strlen(out);
	size_t slashes = 0;
	const char *slash = NULL;
	for (size_t i = 0; i < n; i++) {
		FUZZ_ASSERT(allowed((unsigned char)out[i]));
		if (out[i] == '/') {
			slashes++;
			slash = out + i;
		}
	}
	FUZZ_ASSERT(slashes == 1);
	check_component(out, (size_t)(slash - out));
	check_component(slash + 1, strlen(slash + 1));

	/* The same address gives the same name, and a tight buffer is refused. */
	char again[2 * ADDR_PATH_COMPONENT_MAX + 2];
	FUZZ_ASSERT(addr_path(addr, again, sizeof again) == 0 && strcmp(out, again) == 0);
	FUZZ_ASSERT(addr_path(addr, again, n) == -1);
	free(addr);
	return 0;
}
