/*
 * common.h - what every part of rspamd-quarantine shares: classified
 * errors, the one place where allocation failure ends the process, a
 * growable byte buffer, and range-checked number parsing.
 *
 * Errors are values.  A function that can fail returns 0 on success and
 * -1 on failure, and fills a struct qerr saying which class of failure it
 * was; the caller maps the class to an HTTP status or an exit code.
 */
#ifndef RQ_COMMON_H
#define RQ_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RQ_VERSION "0.1.0"

#define RQ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define RQ_NORETURN __attribute__((noreturn))

/* Every failure is one of these. */
enum qerr_class {
	QERR_NONE = 0,
	QERR_INPUT,    /* the request or argument is wrong: 4xx, never retried */
	QERR_NOTFOUND, /* no such entry: CLI exit 1, HTTP 404 */
	QERR_TEMP,     /* storage or a resource is unavailable now: 503 */
	QERR_PERM,     /* configuration or a permanent storage fault */
};

struct qerr {
	enum qerr_class cls;
	int http;      /* HTTP status to answer (400..415 for QERR_INPUT) */
	char msg[256]; /* one line, no CR/LF, names what was wrong */
};

/* Records a failure in e (which may be NULL); always returns -1. */
int qerr_set(struct qerr *e, enum qerr_class cls, int http, const char *fmt, ...)
	RQ_PRINTF(4, 5);
/* Shorthands for the common classes. */
#define qerr_input(e, http, ...) qerr_set((e), QERR_INPUT, (http), __VA_ARGS__)
#define qerr_temp(e, ...) qerr_set((e), QERR_TEMP, 503, __VA_ARGS__)
#define qerr_perm(e, ...) qerr_set((e), QERR_PERM, 500, __VA_ARGS__)
#define qerr_notfound(e, ...) qerr_set((e), QERR_NOTFOUND, 404, __VA_ARGS__)
void qerr_clear(struct qerr *e);

/* Allocation: these never return NULL; failure is fatal here, once. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) RQ_PRINTF(1, 2);
void xfree_strv(char **v, size_t n);

/* A growable byte buffer, always NUL-terminated after len. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};
void buf_append(struct buf *b, const void *p, size_t n);
void buf_appendc(struct buf *b, char c);
void buf_appends(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) RQ_PRINTF(2, 3);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Takes ownership of the data (never NULL); the buffer is left empty. */
char *buf_steal(struct buf *b);

/* Range-checked parsing; each returns 0 or -1 (and sets *e, may be NULL). */
int parse_long(const char *s, long min, long max, long *out, struct qerr *e);
/* Sizes: "1048576", "512K", "40M", "2G" (powers of 1024). */
int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out, struct qerr *e);
/* Durations: "90s", "15m", "12h", "30d", "2w", or bare seconds. */
int parse_duration(const char *s, int64_t *seconds, struct qerr *e);
/* A decimal number such as a score: "10.3", "-1.5", "9". */
int parse_double(const char *s, double *out, struct qerr *e);

/* Current time in seconds since the epoch.  The environment variable
 * RSPAMD_QUARANTINE_NOW (seconds) overrides it, so tests can set the
 * clock of entries without sleeping. */
int64_t clock_now(void);
/* Milliseconds from a monotonic clock, for timing. */
int64_t clock_ms(void);
/* Formats t (UTC) as RFC 3339 "2026-11-22T10:00:00Z" into out[32]. */
void format_rfc3339(int64_t t, char out[32]);
/* Parses RFC 3339 or "YYYY-MM-DD" or "@seconds" or a duration ago
 * ("2d" = two days before now). */
int parse_time(const char *s, int64_t *out, struct qerr *e);

/* SHA-256 (libcrypto), streaming and one-shot, hex output. */
struct sha256_ctx;
struct sha256_ctx *sha256_new(void);
void sha256_update(struct sha256_ctx *c, const void *p, size_t n);
void sha256_final_hex(struct sha256_ctx *c, char hex[65]); /* frees c */
void sha256_hex(const void *p, size_t n, char hex[65]);

/* write(2) all of it, retrying on EINTR and short writes. */
int write_full(int fd, const void *p, size_t n);

#endif
