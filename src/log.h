/*
 * log.h - the daemon's and the CLI's logging: to stderr or syslog, one
 * line per event.  Every string that came from input is cleaned of
 * control characters before it is written, so a log line is one line.
 */
#ifndef RQ_LOG_H
#define RQ_LOG_H

#include <syslog.h>

#include "common.h"

struct config;

/* Opens logging as the config says; ident names the program. */
void log_open(const struct config *c, const char *ident);
void log_close(void);
/* level is a syslog level (LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG). */
void log_msg(int level, const char *fmt, ...) RQ_PRINTF(2, 3);
/* Appends s to b with CR, LF and other control bytes replaced by '?'
 * and at most max bytes, so input cannot forge log lines. */
void log_append_clean(struct buf *b, const char *s, size_t max);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
