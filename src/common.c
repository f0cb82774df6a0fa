/*
 * common.c - classified errors, fatal-on-failure allocation, the byte
 * buffer, range-checked number parsing, clocks and SHA-256 (libcrypto).
 */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Records a failure; the message is cut to one line. */
int qerr_set(struct qerr *e, enum qerr_class cls, int http, const char *fmt, ...)
{
	if (e == NULL)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	for (char *p = e->msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	e->cls = cls;
	e->http = http;
	return -1;
}

void qerr_clear(struct qerr *e)
{
	if (e) {
		e->cls = QERR_NONE;
		e->http = 0;
		e->msg[0] = '\0';
	}
}

/* The one place where running out of memory is handled: by dying. */
static RQ_NORETURN void die_oom(size_t n)
{
	char msg[80];
	int len = snprintf(msg, sizeof msg, "fatal: out of memory allocating %zu bytes\n", n);
	if (len > 0)
		(void)!write(2, msg, (size_t)len);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die_oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		die_oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		die_oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		die_oom(0);
	char *p = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void xfree_strv(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Makes room for n more bytes plus the terminating NUL. */
static void buf_reserve(struct buf *b, size_t n)
{
	if (b->len + n + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + n + 1) {
		if (cap > SIZE_MAX / 2)
			die_oom(SIZE_MAX);
		cap *= 2;
	}
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void buf_appendc(struct buf *b, char c)
{
	buf_append(b, &c, 1);
}

void buf_appends(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *buf_steal(struct buf *b)
{
	char *p = b->data ? b->data : xstrdup("");
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

int parse_long(const char *s, long min, long max, long *out, struct qerr *e)
{
	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return qerr_input(e, 400, "not a number: '%.40s'", s ? s : "");
	errno = 0;
	char *end;
	long v = strtol(s, &end, 10);
	if (*end != '\0')
		return qerr_input(e, 400, "not a number: '%.40s'", s);
	if (errno == ERANGE || v < min || v > max)
		return qerr_input(e, 400, "%.40s is out of range (%ld..%ld)", s, min, max);
	*out = v;
	return 0;
}

int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out, struct qerr *e)
{
	if (s == NULL || !isdigit((unsigned char)*s))
		return qerr_input(e, 400, "not a size: '%.40s'", s ? s : "");
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned shift = 0;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return qerr_input(e, 400, "not a size: '%.40s' (use K, M or G)", s);
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end != '\0')
		return qerr_input(e, 400, "not a size: '%.40s' (use K, M or G)", s);
	if (errno == ERANGE || v > (UINT64_MAX >> shift))
		return qerr_input(e, 400, "size %.40s is too large", s);
	uint64_t r = (uint64_t)v << shift;
	if (r < min || r > max)
		return qerr_input(e, 400, "size %.40s is out of range (%llu..%llu bytes)", s,
				  (unsigned long long)min, (unsigned long long)max);
	*out = r;
	return 0;
}

int parse_duration(const char *s, int64_t *seconds, struct qerr *e)
{
	if (s == NULL || !isdigit((unsigned char)*s))
		return qerr_input(e, 400, "not a duration: '%.40s' (e.g. 90s, 15m, 12h, 30d, 2w)",
				  s ? s : "");
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	int64_t mult;
	switch (*end) {
	case '\0': case 's': mult = 1; break;
	case 'm': mult = 60; break;
	case 'h': mult = 3600; break;
	case 'd': mult = 86400; break;
	case 'w': mult = 7 * 86400; break;
	default: mult = 0; break;
	}
	if (*end != '\0')
		end++;
	if (mult == 0 || *end != '\0')
		return qerr_input(e, 400, "not a duration: '%.40s' (e.g. 90s, 15m, 12h, 30d, 2w)", s);
	if (errno == ERANGE || v > INT64_MAX / mult / 2)
		return qerr_input(e, 400, "duration %.40s is too large", s);
	*seconds = (int64_t)v * mult;
	return 0;
}

int parse_double(const char *s, double *out, struct qerr *e)
{
	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return qerr_input(e, 400, "not a number: '%.40s'", s ? s : "");
	errno = 0;
	char *end;
	double v = strtod(s, &end);
	if (*end != '\0' || errno == ERANGE || !isfinite(v))
		return qerr_input(e, 400, "not a number: '%.40s'", s);
	*out = v;
	return 0;
}

int64_t clock_now(void)
{
	const char *fake = getenv("RSPAMD_QUARANTINE_NOW");
	long v;
	if (fake && parse_long(fake, 0, LONG_MAX, &v, NULL) == 0)
		return v;
	return (int64_t)time(NULL);
}

int64_t clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void format_rfc3339(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "@%lld", (long long)t);
}

int parse_time(const char *s, int64_t *out, struct qerr *e)
{
	if (s == NULL || *s == '\0')
		return qerr_input(e, 400, "empty time");
	if (*s == '@') {
		long v;
		if (parse_long(s + 1, 0, LONG_MAX, &v, e) < 0)
			return -1;
		*out = v;
		return 0;
	}
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end == NULL) {
		memset(&tm, 0, sizeof tm);
		end = strptime(s, "%Y-%m-%d", &tm);
	}
	if (end != NULL) {
		long offset = 0;
		if (*end == 'Z' || *end == 'z') {
			end++;
		} else if ((*end == '+' || *end == '-') && isdigit((unsigned char)end[1])) {
			int hh, mm;
			if (sscanf(end + 1, "%2d:%2d", &hh, &mm) != 2)
				return qerr_input(e, 400, "bad time zone in '%.40s'", s);
			offset = (hh * 3600L + mm * 60L) * (*end == '-' ? -1 : 1);
			end += 6;
		}
		if (*end != '\0')
			return qerr_input(e, 400, "not a time: '%.40s' (RFC 3339, YYYY-MM-DD, @seconds or a duration ago)", s);
		*out = (int64_t)timegm(&tm) - offset;
		return 0;
	}
	int64_t ago;
	if (parse_duration(s, &ago, NULL) == 0) {
		*out = clock_now() - ago;
		return 0;
	}
	return qerr_input(e, 400, "not a time: '%.40s' (RFC 3339, YYYY-MM-DD, @seconds or a duration ago)", s);
}

struct sha256_ctx {
	EVP_MD_CTX *md;
};

struct sha256_ctx *sha256_new(void)
{
	/* Fetched once per process: EVP_sha256() makes every init look the
	 * implementation up again, a few thousand instructions each time. */
	static EVP_MD *md;
	if (md == NULL)
		md = EVP_MD_fetch(NULL, "SHA256", NULL);
	struct sha256_ctx *c = xmalloc(sizeof *c);
	c->md = EVP_MD_CTX_new();
	if (c->md == NULL || EVP_DigestInit_ex(c->md, md ? md : EVP_sha256(), NULL) != 1)
		die_oom(sizeof *c);
	return c;
}

void sha256_update(struct sha256_ctx *c, const void *p, size_t n)
{
	if (n)
		EVP_DigestUpdate(c->md, p, n);
}

void sha256_final_hex(struct sha256_ctx *c, char hex[65])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	EVP_DigestFinal_ex(c->md, d, &len);
	/* A table, not snprintf per byte: this runs for every content and
	 * entry id of every request. */
	static const char digits[] = "0123456789abcdef";
	for (unsigned i = 0; i < len && i < 32; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 0xf];
	}
	hex[64] = '\0';
	EVP_MD_CTX_free(c->md);
	free(c);
}

void sha256_hex(const void *p, size_t n, char hex[65])
{
	struct sha256_ctx *c = sha256_new();
	sha256_update(c, p, n);
	sha256_final_hex(c, hex);
}

int write_full(int fd, const void *p, size_t n)
{
	const char *q = p;
	while (n > 0) {
		ssize_t w = write(fd, q, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		q += w;
		n -= (size_t)w;
	}
	return 0;
}
