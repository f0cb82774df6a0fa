/*
 * charset.c - owns the conversion of header bytes to UTF-8: strict UTF-8
 * validation, the Windows-1252 reading of unlabelled 8-bit bytes, and
 * labelled charsets through glibc iconv.
 */
#include "charset.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Longest charset name handed to iconv; real names are far shorter. */
#define CHARSET_NAME_MAX 64

/* Windows-1252 for 0x80..0x9F; 0 marks the five undefined bytes. */
static const unsigned short cp1252_high[32] = {
	0x20AC, 0x0000, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x0000, 0x017D, 0x0000,
	0x0000, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x0000, 0x017E, 0x0178,
};

/* Length of the well-formed UTF-8 sequence at p[0..n), or 0 if the bytes
 * there do not start one (overlong, surrogate, beyond U+10FFFF, cut). */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0;
	if (c < 0xE0) {
		if (n < 2 || (p[1] & 0xC0) != 0x80)
			return 0;
		return 2;
	}
	if (c < 0xF0) {
		if (n < 2)
			return 0;
		unsigned char lo = 0x80, hi = 0xBF;
		if (c == 0xE0)
			lo = 0xA0; /* overlong below U+0800 */
		else if (c == 0xED)
			hi = 0x9F; /* surrogates U+D800..U+DFFF */
		if (p[1] < lo || p[1] > hi)
			return 0;
		if (n < 3 || (p[2] & 0xC0) != 0x80)
			return 0;
		return 3;
	}
	if (c < 0xF5) {
		if (n < 2)
			return 0;
		unsigned char lo = 0x80, hi = 0xBF;
		if (c == 0xF0)
			lo = 0x90; /* overlong below U+10000 */
		else if (c == 0xF4)
			hi = 0x8F; /* beyond U+10FFFF */
		if (p[1] < lo || p[1] > hi)
			return 0;
		if (n < 3 || (p[2] & 0xC0) != 0x80)
			return 0;
		if (n < 4 || (p[3] & 0xC0) != 0x80)
			return 0;
		return 4;
	}
	return 0;
}

/* How many bytes of an invalid sequence at p[0..n) one U+FFFD stands
 * for: the longest prefix that could still have become valid, at least
 * one byte (the "maximal subpart" rule of Unicode). */
static size_t utf8_bad_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c < 0xE0)
		need = 2;
	else if (c >= 0xE0 && c < 0xF0) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c < 0xF5) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else
		return 1;
	size_t i = 1;
	if (i < n && p[i] >= lo && p[i] <= hi) {
		i++;
		while (i < need && i < n && (p[i] & 0xC0) == 0x80)
			i++;
	}
	return i;
}

bool utf8_valid(const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i = 0;
	while (i < n) {
		/* ASCII eight bytes at a time: JSON headers are mostly ASCII. */
		while (n - i >= 8) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if (w & UINT64_C(0x8080808080808080))
				break;
			i += 8;
		}
		if (i >= n)
			break;
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = utf8_seq_len(s + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

/* Appends the code point cp (< 0x10000 is all this file needs) as UTF-8. */
static void append_cp(struct buf *out, unsigned cp)
{
	char u[3];
	if (cp < 0x80) {
		buf_appendc(out, (char)cp);
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		buf_append(out, u, 2);
	} else {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		buf_append(out, u, 3);
	}
}

#define REPLACEMENT 0xFFFD

/* Reads every byte as Windows-1252, whatever it looks like. */
static void append_cp1252(struct buf *out, const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		/* Copy ASCII runs in one go: most header text is ASCII. */
		size_t j = i;
		while (j < n && s[j] < 0x80)
			j++;
		if (j > i)
			buf_append(out, s + i, j - i);
		if (j >= n)
			break;
		unsigned c = s[j];
		if (c < 0xA0) {
			unsigned cp = cp1252_high[c - 0x80];
			append_cp(out, cp ? cp : REPLACEMENT);
		} else {
			append_cp(out, c);
		}
		i = j + 1;
	}
}

/* Keeps valid UTF-8 and puts one U+FFFD for each invalid sequence. */
static void append_utf8_repaired(struct buf *out, const unsigned char *s, size_t n)
{
	size_t i = 0, start = 0;
	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = utf8_seq_len(s + i, n - i);
		if (k) {
			i += k;
			continue;
		}
		buf_append(out, s + start, i - start);
		append_cp(out, REPLACEMENT);
		i += utf8_bad_len(s + i, n - i);
		start = i;
	}
	buf_append(out, s + start, n - start);
}

void charset_append_8bit(struct buf *out, const void *p, size_t n)
{
	if (utf8_valid(p, n))
		buf_append(out, p, n);
	else
		append_cp1252(out, p, n);
}

/* Puts the charset name into a canonical form for comparison: lower
 * case, without surrounding blanks or quotes.  Returns -1 for names that
 * are empty, too long, or carry characters iconv would read as options
 * (such as "//TRANSLIT"). */
static int normalize_name(const char *charset, char name[CHARSET_NAME_MAX + 1])
{
	while (*charset == ' ' || *charset == '\t' || *charset == '"')
		charset++;
	size_t n = strlen(charset);
	while (n && (charset[n - 1] == ' ' || charset[n - 1] == '\t' || charset[n - 1] == '"'))
		n--;
	if (n == 0 || n > CHARSET_NAME_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)charset[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			   c == '_' || c == '.' || c == ':' || c == '+' || c == '(' || c == ')'))
			return -1;
		name[i] = (char)c;
	}
	name[n] = '\0';
	return 0;
}

static bool name_in(const char *name, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(name, *list) == 0)
			return true;
	return false;
}

static const char *const names_utf8[] = { "utf-8", "utf8", NULL };
static const char *const names_ascii[] = {
	"us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us", NULL
};
static const char *const names_cp1252[] = {
	"iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "l1", "iso-ir-100",
	"windows-1252", "cp1252", "x-cp1252", "cp819", "ibm819", NULL
};
static const char *const names_unknown[] = {
	"unknown-8bit", "x-unknown", "unknown", "8bit", "x-user-defined", NULL
};

/* Converts with iconv; invalid input becomes U+FFFD and conversion goes
 * on with the next byte. */
static int append_iconv(struct buf *out, const char *name, const unsigned char *s, size_t n)
{
	iconv_t cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1)
		return -1;
	char tmp[4096];
	char *in = (char *)(uintptr_t)s;
	size_t inleft = n;
	bool flushing = false;
	for (;;) {
		char *o = tmp;
		size_t oleft = sizeof tmp;
		size_t r = flushing ? iconv(cd, NULL, NULL, &o, &oleft)
				    : iconv(cd, &in, &inleft, &o, &oleft);
		int err = errno;
		buf_append(out, tmp, sizeof tmp - oleft);
		if (r != (size_t)-1) {
			if (flushing)
				break;
			flushing = true; /* emit any shift sequence still pending */
			continue;
		}
		if (err == E2BIG)
			continue;
		if (err == EILSEQ && !flushing) {
			append_cp(out, REPLACEMENT);
			in++;
			inleft--;
			continue;
		}
		if (err == EINVAL && !flushing) {
			/* the input ends inside a sequence */
			append_cp(out, REPLACEMENT);
			inleft = 0;
			flushing = true;
			continue;
		}
		break;
	}
	iconv_close(cd);
	return 0;
}

int charset_append(struct buf *out, const char *charset, const void *p, size_t n)
{
	char name[CHARSET_NAME_MAX + 1];
	if (charset == NULL || normalize_name(charset, name) < 0)
		return -1;
	const unsigned char *s = p;
	if (name_in(name, names_utf8)) {
		append_utf8_repaired(out, s, n);
		return 0;
	}
	if (name_in(name, names_ascii) || name_in(name, names_unknown)) {
		/* Mislabelled 8-bit text is common: read it as mail clients do. */
		charset_append_8bit(out, s, n);
		return 0;
	}
	if (name_in(name, names_cp1252)) {
		append_cp1252(out, s, n);
		return 0;
	}
	size_t before = out->len;
	if (append_iconv(out, name, s, n) < 0)
		return -1;
	/* iconv writes valid UTF-8; make sure of it all the same. */
	if (out->len > before && !utf8_valid(out->data + before, out->len - before)) {
		struct buf fix = { 0 };
		append_utf8_repaired(&fix, (const unsigned char *)out->data + before,
				     out->len - before);
		out->len = before;
		buf_append(out, fix.data, fix.len);
		buf_free(&fix);
	}
	return 0;
}

void charset_strip_controls(char *s)
{
	if (s == NULL)
		return;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 && *s != '\t')
			*s = ' ';
}

void charset_blank_all_controls(char *s)
{
	if (s == NULL)
		return;
	char *w = s;
	for (const char *r = s; *r; r++) {
		unsigned char c = (unsigned char)*r;
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			*w++ = ' ';
		} else if (c == 0xc2 && (unsigned char)r[1] >= 0x80 && (unsigned char)r[1] <= 0x9f) {
			*w++ = ' '; /* a C1 control: two bytes become one blank */
			r++;
		} else {
			*w++ = (char)c;
		}
	}
	*w = '\0';
}

void utf8_cut(char *s, size_t max)
{
	if (strlen(s) <= max)
		return;
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	s[max] = '\0';
}
