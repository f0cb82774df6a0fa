/*
 * metrics.h - the daemon's counters for /metrics and the operator tool's
 * counters of its actions.
 *
 * The daemon's counters live in one shared anonymous mapping that the
 * master makes before it forks the first worker: every worker adds to the
 * same numbers with atomic operations, so a scrape that any worker serves
 * sees the sum, a replaced worker's counts stay, and only a restart of the
 * daemon (a new mapping) starts them from zero.
 *
 * The operator's tool (rspamd-quarantine) is a separate short-lived
 * process: it counts what it did (release, delete, expire, learning,
 * digests) in a small text file, `counters_file`, rewritten in place under
 * flock(2); the daemon reads that file at scrape time.  Those counters
 * therefore survive daemon restarts and only start again when the file is
 * removed.
 *
 * Every label value comes from a fixed list here (status, formatter,
 * error class, action, outcome): nothing from a request reaches a label.
 */
#ifndef RQ_METRICS_H
#define RQ_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common.h"

struct config;

/* Makes the shared counters; the master calls it once before forking.
 * Returns -1 with *e set when the mapping cannot be made. */
int metrics_init(struct qerr *e);
/* True once metrics_init succeeded in this process or its parent. */
bool metrics_enabled(void);

/* A worker announces itself when it starts serving, and marks itself
 * busy around each request; the master forgets a worker that ended
 * (busy or not), so the gauges stay right when a worker is killed. */
void metrics_worker_start(void);
void metrics_worker_busy(bool busy);
void metrics_worker_gone(pid_t pid);
/* The master counts each worker it has to start again after it ended. */
void metrics_worker_restarted(void);

/* One ingest request: its HTTP status, formatter name ("default",
 * "json", "json_with_message", "multipart", or "-"), the class of its
 * failure (QERR_NONE on success), how long it took, and what it stored
 * (entries newly created and the message's size; 0 for none). */
void metrics_request(int status, const char *formatter, enum qerr_class cls,
		     int64_t usec, size_t created, uint64_t size, bool skipped);

/* The whole Prometheus text exposition (format 0.0.4) into out:
 * the daemon's counters, then those counters_file holds (NULL or "":
 * none).  workers_configured is the `workers` setting. */
void metrics_render(struct buf *out, const char *counters_file, long workers_configured);

/* Builds the whole FastCGI answer of /metrics for a request with this
 * method into out; returns its status (200, or 405 for a method other
 * than GET or HEAD). */
int metrics_respond(const struct config *c, const char *method, struct buf *out);

/* A monotonic clock in microseconds, for the duration histogram. */
int64_t metrics_clock_us(void);

/* The counters file c names: counters_file, or <file_root>/cli-counters
 * for the file backend when that is empty; NULL when nothing is counted.
 * The result is in buf (n bytes) or NULL. */
const char *metrics_counters_path(const struct config *c, char *buf, size_t n);

/* ---- the operator's tool */

/* Where metrics_cli_count keeps its counts (the `counters_file` key);
 * NULL or "" turns counting off.  The CLI sets it once after reading its
 * configuration. */
void metrics_cli_setup(const char *counters_file);
/* Counts one action of the tool: action is release, delete, expire,
 * learn_spam, learn_ham or digest; outcome is ok, not_found, refused or
 * failed (learning also: already).  Anything else is counted as "other".
 * Never fails the caller: a file that cannot be written is reported once
 * on stderr and the action goes uncounted.  Returns 0 or -1. */
int metrics_cli_count(const char *action, const char *outcome);
/* The same, adding n at once (expire counts the entries it removed). */
int metrics_cli_add(const char *action, const char *outcome, uint64_t n);

/* For tests: parses a counters file's text into counts[action][outcome]
 * (dimensions metrics_cli_actions() x metrics_cli_outcomes()); unknown
 * or malformed lines are skipped.  Returns the number of lines used. */
size_t metrics_cli_parse(const char *text, size_t len, uint64_t *counts);
size_t metrics_cli_actions(void);
size_t metrics_cli_outcomes(void);

#endif
