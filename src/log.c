/*
 * log.c - where log lines go (stderr with a time stamp, or syslog with
 * the configured facility and tag) and the cleaning that keeps every log
 * line one line: control bytes, C1 controls and bytes that are not UTF-8
 * become '?', whatever the message or the input inside it contains.
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

/* Longest message written; longer ones are cut. */
#define LOG_MAX_LINE 8192

static int use_syslog;
static char ident_buf[64];

/* This process's id for the lines' prefix, looked up once per process
 * (glibc no longer caches getpid: a system call per line otherwise);
 * a fork clears it through the handler below. */
static pid_t line_pid;

static void forget_pid(void)
{
	line_pid = 0;
}

__attribute__((constructor)) static void watch_forks(void)
{
	pthread_atfork(NULL, NULL, forget_pid);
}
static int max_level = LOG_INFO;

static const struct {
	const char *name;
	int facility;
} facilities[] = {
	{ "mail", LOG_MAIL },     { "daemon", LOG_DAEMON }, { "user", LOG_USER },
	{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
	{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

/* The facility the config names; mail when unknown (validated earlier). */
static int facility_of(const char *name)
{
	for (size_t i = 0; i < sizeof facilities / sizeof facilities[0]; i++)
		if (name && strcmp(facilities[i].name, name) == 0)
			return facilities[i].facility;
	return LOG_MAIL;
}

/* Opens logging as c says (c may be NULL: stderr).  The syslog tag is
 * the config's syslog_tag, the stderr prefix is ident; debug lines are
 * written only when RSPAMD_QUARANTINE_DEBUG is set in the environment. */
void log_open(const struct config *c, const char *ident)
{
	log_close();
	snprintf(ident_buf, sizeof ident_buf, "%s", ident ? ident : "rspamd-quarantined");
	const char *dbg = getenv("RSPAMD_QUARANTINE_DEBUG");
	max_level = (dbg && *dbg && strcmp(dbg, "0") != 0) ? LOG_DEBUG : LOG_INFO;
	if (c && c->log && strcmp(c->log, "syslog") == 0) {
		const char *tag = (c->syslog_tag && *c->syslog_tag) ? c->syslog_tag : ident_buf;
		/* openlog keeps the pointer: keep our own copy alive. */
		static char tag_buf[64];
		snprintf(tag_buf, sizeof tag_buf, "%s", tag);
		openlog(tag_buf, LOG_PID | LOG_NDELAY, facility_of(c->syslog_facility));
		setlogmask(LOG_UPTO(max_level));
		use_syslog = 1;
	}
}

void log_close(void)
{
	if (use_syslog) {
		closelog();
		use_syslog = 0;
	}
}

static const char *level_name(int level)
{
	switch (level) {
	case LOG_EMERG: return "emergency";
	case LOG_ALERT: return "alert";
	case LOG_CRIT: return "critical";
	case LOG_ERR: return "error";
	case LOG_WARNING: return "warning";
	case LOG_NOTICE: return "notice";
	case LOG_INFO: return "info";
	default: return "debug";
	}
}

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid;
 * *cp gets the code point. */
static size_t utf8_seq(const unsigned char *p, size_t n, unsigned *cp)
{
	unsigned c = p[0];
	size_t len;
	unsigned min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		len = 2, min = 0x80, c &= 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, min = 0x800, c &= 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, min = 0x10000, c &= 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* Appends s, cleaned, at most max bytes; a multi-byte character is never
 * cut in two.  NULL appends "-", the log's mark for unknown. */
void log_append_clean(struct buf *b, const char *s, size_t max)
{
	if (s == NULL)
		s = "-";
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s), used = 0;
	while (left > 0) {
		/* Printable ASCII, the usual case, is copied a run at a time. */
		size_t run = 0;
		while (run < left && p[run] >= 0x20 && p[run] < 0x7f)
			run++;
		if (run > 0) {
			if (run > max - used)
				run = max - used;
			buf_append(b, p, run);
			used += run;
			p += run;
			left -= run;
			if (used == max || left == 0)
				break;
		}
		unsigned cp;
		size_t len = utf8_seq(p, left, &cp);
		if (len == 0 || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f)) {
			if (used + 1 > max)
				break;
			buf_appendc(b, '?');
			used++;
			if (len == 0)
				len = 1;
		} else {
			if (used + len > max)
				break;
			buf_append(b, p, len);
			used += len;
		}
		p += len;
		left -= len;
	}
}

void log_msg(int level, const char *fmt, ...)
{
	if (level > max_level)
		return;
	int saved_errno = errno;
	char raw[LOG_MAX_LINE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof raw, fmt, ap);
	va_end(ap);

	struct buf b = { 0 };
	if (use_syslog) {
		log_append_clean(&b, raw, LOG_MAX_LINE);
		syslog(level, "%s: %s", level_name(level), b.data ? b.data : "");
	} else {
		char stamp[40];
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
		snprintf(stamp + n, sizeof stamp - n, ".%03ld", ts.tv_nsec / 1000000);
		buf_printf(&b, "%s %s[%ld]: %s: ", stamp,
			   ident_buf[0] ? ident_buf : "rspamd-quarantined",
			   (long)(line_pid ? line_pid : (line_pid = getpid())),
			   level_name(level));
		log_append_clean(&b, raw, LOG_MAX_LINE);
		buf_appendc(&b, '\n');
		/* One write, so lines of concurrent workers do not interleave. */
		(void)write_full(STDERR_FILENO, b.data, b.len);
	}
	buf_free(&b);
	errno = saved_errno;
}
