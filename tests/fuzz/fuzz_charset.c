/*
 * fuzz_charset.c - libFuzzer harness for charset.c.  utf8_valid is
 * compared with a decoder written the other way round (decode a code
 * point, then check its range and shortest form); the 8-bit fallback and
 * iconv conversion must give valid UTF-8; stripping controls must leave
 * none.  Input: a charset name, LF, then the bytes to convert.
 */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reference: decodes each sequence to its scalar value and rejects
 * overlong forms, surrogates and values past U+10FFFF. */
static bool ref_utf8_valid(const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint32_t c = p[i];
		size_t len;
		uint32_t min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			len = 2, min = 0x80, c &= 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			len = 3, min = 0x800, c &= 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			len = 4, min = 0x10000, c &= 0x07;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
			c = (c << 6) | (p[i + k] & 0x3F);
		}
		if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
			return false;
		i += len;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FUZZ_ASSERT(utf8_valid(data, size) == ref_utf8_valid(data, size));

	struct buf b = { 0 };
	charset_append_8bit(&b, data, size);
	FUZZ_ASSERT(utf8_valid(b.data ? b.data : "", b.len));
	if (ref_utf8_valid(data, size))
		FUZZ_ASSERT(b.len == size && (size == 0 || memcmp(b.data, data, size) == 0));
	buf_free(&b);

	const uint8_t *nl = memchr(data, '\n', size);
	if (nl != NULL && nl - data < 64) {
		char name[64];
		size_t nlen = (size_t)(nl - data);
		memcpy(name, data, nlen);
		name[nlen] = '\0';
		const uint8_t *p = nl + 1;
		size_t n = size - nlen - 1;
		struct buf c = { 0 };
		if (charset_append(&c, name, p, n) == 0)
			FUZZ_ASSERT(utf8_valid(c.data ? c.data : "", c.len));
		else
			FUZZ_ASSERT(c.len == 0);
		buf_free(&c);
	}

	char *s = fuzz_cstr(data, size);
	size_t before = strlen(s);
	charset_strip_controls(s);
	FUZZ_ASSERT(strlen(s) == before);
	for (size_t i = 0; i < before; i++)
		FUZZ_ASSERT((unsigned char)s[i] >= 0x20 || s[i] == '\t');
	free(s);
	return 0;
}
