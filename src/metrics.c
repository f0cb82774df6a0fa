/*
 * metrics.c - the counters behind /metrics (see metrics.h for the design):
 * the shared mapping the master makes before forking, the atomic updates
 * the workers make, the operator tool's counters file, and the Prometheus
 * text exposition of both.
 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* Workers tracked at once: the `workers` maximum (256) plus those of a
 * previous configuration still finishing after a reload. */
#define MAX_TRACKED 1024
/* Largest counters file read; a real one is a few hundred bytes. */
#define CLI_FILE_MAX 65536

#define PREFIX "rspamd_quarantine_"

/* The statuses the daemon answers (README); anything else is "other". */
static const int statuses[] = { 200, 400, 401, 403, 404, 405, 411, 413, 415, 500, 503 };
#define NSTATUS (sizeof statuses / sizeof statuses[0] + 1)

/* Rspamd's formatters; "none" when the request failed before one was
 * known. */
static const char *const formatters[] = { "default", "json", "json_with_message",
					  "multipart", "none" };
#define NFMT (sizeof formatters / sizeof formatters[0])

static const char *const err_classes[] = { "input", "temporary", "permanent" };
#define NERRCLS (sizeof err_classes / sizeof err_classes[0])

/* Upper bounds of the duration buckets, in microseconds: from a small
 * message on a fast disk (a few ms) to Rspamd's rule timeout and past. */
static const uint64_t bucket_us[] = { 1000, 2500, 5000, 10000, 25000, 50000, 100000,
				      250000, 500000, 1000000, 2500000, 5000000,
				      10000000, 30000000, 60000000 };
#define NBUCKET (sizeof bucket_us / sizeof bucket_us[0])

static const char *const cli_actions[] = { "release", "delete", "expire",
					   "learn_spam", "learn_ham", "digest" };
#define NACTION (sizeof cli_actions / sizeof cli_actions[0])
/* "other" stays last: an unknown outcome is counted there. */
static const char *const cli_outcomes[] = { "ok", "not_found", "refused", "rejected",
					    "tempfail", "failed", "already", "not_learned",
					    "other" };
#define NOUTCOME (sizeof cli_outcomes / sizeof cli_outcomes[0])

struct tracked {
	int32_t pid;   /* 0: free */
	int32_t busy;
};

/* Everything in the shared mapping; only ever changed atomically. */
struct shared {
	uint64_t requests[NSTATUS][NFMT];
	uint64_t errors[NERRCLS];
	uint64_t messages_stored;
	uint64_t entries_stored;
	uint64_t bytes_stored;
	uint64_t skipped;
	uint64_t duration[NBUCKET + 1]; /* per bucket, not cumulative; last: +Inf */
	uint64_t duration_sum_us;
	uint64_t restarts;
	int64_t started;                /* epoch seconds of metrics_init */
	struct tracked workers[MAX_TRACKED];
};

static struct shared *sh;
static int my_slot = -1;
static char *cli_file;
static bool cli_warned;

static void add(uint64_t *p, uint64_t n)
{
	__atomic_fetch_add(p, n, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Made once by the master: MAP_SHARED | MAP_ANONYMOUS is inherited by
 * every fork and is the same memory in all of them. */
int metrics_init(struct qerr *e)
{
	if (sh != NULL)
		return 0;
	void *p = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED)
		return qerr_perm(e, "metrics: cannot map %zu bytes of shared memory: %s",
				 sizeof *sh, strerror(errno));
	sh = p;
	sh->started = (int64_t)time(NULL);
	return 0;
}

bool metrics_enabled(void)
{
	return sh != NULL;
}

/* Claims a free slot for this worker's pid. */
void metrics_worker_start(void)
{
	if (sh == NULL)
		return;
	int32_t me = (int32_t)getpid();
	for (int i = 0; i < MAX_TRACKED; i++) {
		int32_t want = 0;
		if (__atomic_compare_exchange_n(&sh->workers[i].pid, &want, me, false,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
			__atomic_store_n(&sh->workers[i].busy, 0, __ATOMIC_RELAXED);
			my_slot = i;
			return;
		}
	}
}

void metrics_worker_busy(bool busy)
{
	if (sh == NULL || my_slot < 0)
		return;
	__atomic_store_n(&sh->workers[my_slot].busy, busy ? 1 : 0, __ATOMIC_RELAXED);
}

/* The master, after reaping pid: its slot is free again, and a worker
 * killed in the middle of a request no longer counts as busy. */
void metrics_worker_gone(pid_t pid)
{
	if (sh == NULL)
		return;
	for (int i = 0; i < MAX_TRACKED; i++) {
		if (__atomic_load_n(&sh->workers[i].pid, __ATOMIC_ACQUIRE) != (int32_t)pid)
			continue;
		__atomic_store_n(&sh->workers[i].busy, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&sh->workers[i].pid, 0, __ATOMIC_RELEASE);
	}
}

void metrics_worker_restarted(void)
{
	if (sh != NULL)
		add(&sh->restarts, 1);
}

static size_t status_index(int status)
{
	for (size_t i = 0; i < NSTATUS - 1; i++)
		if (statuses[i] == status)
			return i;
	return NSTATUS - 1;
}

static size_t formatter_index(const char *f)
{
	for (size_t i = 0; i < NFMT - 1; i++)
		if (f != NULL && strcmp(f, formatters[i]) == 0)
			return i;
	return NFMT - 1;
}

void metrics_request(int status, const char *formatter, enum qerr_class cls, int64_t usec,
		     size_t created, uint64_t size, bool skipped)
{
	if (sh == NULL)
		return;
	add(&sh->requests[status_index(status)][formatter_index(formatter)], 1);
	switch (cls) {
	case QERR_NONE: break;
	case QERR_INPUT:
	case QERR_NOTFOUND: add(&sh->errors[0], 1); break;
	case QERR_TEMP: add(&sh->errors[1], 1); break;
	case QERR_PERM: add(&sh->errors[2], 1); break;
	}
	if (skipped)
		add(&sh->skipped, 1);
	if (created > 0) {
		add(&sh->messages_stored, 1);
		add(&sh->entries_stored, created);
		add(&sh->bytes_stored, size);
	}
	uint64_t us = usec > 0 ? (uint64_t)usec : 0;
	size_t b = 0;
	while (b < NBUCKET && us > bucket_us[b])
		b++;
	add(&sh->duration[b], 1);
	add(&sh->duration_sum_us, us);
}

/* ---------------------------------------------------------------- render */

static void family(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP " PREFIX "%s %s\n# TYPE " PREFIX "%s %s\n", name, help, name,
		   type);
}

/* A bucket bound in seconds, as Prometheus writes them ("0.0025"). */
static void seconds(char *out, size_t n, uint64_t us)
{
	snprintf(out, n, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
	/* Trailing zeros (and a bare point) off: 1.000000 -> 1 */
	char *end = out + strlen(out) - 1;
	while (*end == '0')
		*end-- = '\0';
	if (*end == '.')
		*end = '\0';
}

static void render_daemon(struct buf *out, long workers_configured)
{
	family(out, "requests_total", "counter",
	       "Ingest requests answered, by HTTP status and Rspamd formatter.");
	for (size_t s = 0; s < NSTATUS; s++) {
		char st[16];
		if (s < NSTATUS - 1)
			snprintf(st, sizeof st, "%d", statuses[s]);
		else
			strcpy(st, "other");
		for (size_t f = 0; f < NFMT; f++)
			buf_printf(out, PREFIX "requests_total{status=\"%s\",formatter=\"%s\"} %" PRIu64
				   "\n", st, formatters[f], get(&sh->requests[s][f]));
	}
	family(out, "errors_total", "counter",
	       "Failed ingest requests by class: input (4xx, the request was wrong), "
	       "temporary (503, storage unavailable), permanent (a storage or configuration fault).");
	for (size_t i = 0; i < NERRCLS; i++)
		buf_printf(out, PREFIX "errors_total{class=\"%s\"} %" PRIu64 "\n", err_classes[i],
			   get(&sh->errors[i]));
	family(out, "messages_stored_total", "counter",
	       "Messages stored with at least one new entry (a retried POST adds none).");
	buf_printf(out, PREFIX "messages_stored_total %" PRIu64 "\n", get(&sh->messages_stored));
	family(out, "entries_stored_total", "counter", "Entries (one per recipient) stored.");
	buf_printf(out, PREFIX "entries_stored_total %" PRIu64 "\n", get(&sh->entries_stored));
	family(out, "stored_bytes_total", "counter",
	       "Bytes of the messages stored (each message once, as received).");
	buf_printf(out, PREFIX "stored_bytes_total %" PRIu64 "\n", get(&sh->bytes_stored));
	family(out, "messages_skipped_total", "counter",
	       "Messages answered 200 without storing them (only_symbols).");
	buf_printf(out, PREFIX "messages_skipped_total %" PRIu64 "\n", get(&sh->skipped));

	family(out, "request_duration_seconds", "histogram",
	       "Time from the start of an ingest request to its answer and log line.");
	uint64_t cum = 0;
	for (size_t b = 0; b <= NBUCKET; b++) {
		char le[32];
		cum += get(&sh->duration[b]);
		if (b < NBUCKET)
			seconds(le, sizeof le, bucket_us[b]);
		else
			strcpy(le, "+Inf");
		buf_printf(out, PREFIX "request_duration_seconds_bucket{le=\"%s\"} %" PRIu64 "\n",
			   le, cum);
	}
	char sum[48];
	uint64_t us = get(&sh->duration_sum_us);
	snprintf(sum, sizeof sum, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
	buf_printf(out, PREFIX "request_duration_seconds_sum %s\n", sum);
	buf_printf(out, PREFIX "request_duration_seconds_count %" PRIu64 "\n", cum);

	unsigned running = 0, busy = 0;
	for (int i = 0; i < MAX_TRACKED; i++) {
		if (__atomic_load_n(&sh->workers[i].pid, __ATOMIC_ACQUIRE) == 0)
			continue;
		running++;
		if (__atomic_load_n(&sh->workers[i].busy, __ATOMIC_RELAXED))
			busy++;
	}
	family(out, "workers", "gauge", "Worker processes running (during a reload: old and new).");
	buf_printf(out, PREFIX "workers %u\n", running);
	family(out, "workers_busy", "gauge",
	       "Worker processes handling a request now (this scrape's included).");
	buf_printf(out, PREFIX "workers_busy %u\n", busy);
	family(out, "workers_configured", "gauge", "The workers setting.");
	buf_printf(out, PREFIX "workers_configured %ld\n", workers_configured);
	family(out, "worker_restarts_total", "counter",
	       "Workers of the running configuration that ended and were started again.");
	buf_printf(out, PREFIX "worker_restarts_total %" PRIu64 "\n", get(&sh->restarts));
	family(out, "start_time_seconds", "gauge",
	       "When the daemon started (its counters start from zero then).");
	buf_printf(out, PREFIX "start_time_seconds %" PRId64 "\n", sh->started);
}

/* ------------------------------------------------------- counters file */

size_t metrics_cli_actions(void)
{
	return NACTION;
}

size_t metrics_cli_outcomes(void)
{
	return NOUTCOME;
}

static int find_name(const char *const *names, size_t n, const char *s, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
			return (int)i;
	return -1;
}

/* Lines "action outcome count"; '#' lines and anything unknown are
 * skipped, so a damaged or newer file never puts a strange label out. */
size_t metrics_cli_parse(const char *text, size_t len, uint64_t *counts)
{
	size_t used = 0;
	const char *p = text, *end = text + len;
	memset(counts, 0, NACTION * NOUTCOME * sizeof *counts);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		char line[128];
		size_t n = (size_t)(le - p);
		if (n > 0 && n < sizeof line && *p != '#') {
			memcpy(line, p, n);
			line[n] = '\0';
			char a[32], o[32], c[32];
			int k = -1;
			if (sscanf(line, "%31s %31s %31s %n", a, o, c, &k) == 3 && k == (int)n) {
				int ai = find_name(cli_actions, NACTION, a, strlen(a));
				int oi = find_name(cli_outcomes, NOUTCOME, o, strlen(o));
				char *ce;
				errno = 0;
				unsigned long long v = strtoull(c, &ce, 10);
				if (ai >= 0 && oi >= 0 && *ce == '\0' && errno == 0 && c[0] != '-') {
					counts[(size_t)ai * NOUTCOME + (size_t)oi] = v;
					used++;
				}
			}
		}
		p = le + (nl ? 1 : 0);
	}
	return used;
}

/* Reads the whole file (at most CLI_FILE_MAX) from fd's start. */
static int read_all(int fd, struct buf *b)
{
	char chunk[4096];
	for (;;) {
		ssize_t r = pread(fd, chunk, sizeof chunk, (off_t)b->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (b->len + (size_t)r > CLI_FILE_MAX) {
			errno = EFBIG;
			return -1;
		}
		buf_append(b, chunk, (size_t)r);
	}
}

static void render_cli(struct buf *out, const char *path)
{
	family(out, "cli_actions_total", "counter",
	       "What the operator's tool did (release, delete, expire: entries; learn_spam, "
	       "learn_ham: messages; digest: digests sent), by outcome; kept in counters_file.");
	bool ok = false;
	if (path != NULL && *path) {
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 && errno == ENOENT) {
			ok = true; /* nothing counted yet */
		} else if (fd >= 0) {
			struct buf b = { 0 };
			uint64_t counts[NACTION * NOUTCOME];
			if (flock(fd, LOCK_SH) == 0 && read_all(fd, &b) == 0) {
				ok = true;
				metrics_cli_parse(b.data ? b.data : "", b.len, counts);
				for (size_t a = 0; a < NACTION; a++)
					for (size_t o = 0; o < NOUTCOME; o++)
						if (counts[a * NOUTCOME + o])
							buf_printf(out, PREFIX "cli_actions_total{action=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
								   cli_actions[a], cli_outcomes[o],
								   counts[a * NOUTCOME + o]);
			}
			buf_free(&b);
			close(fd);
		}
	}
	family(out, "cli_counters_readable", "gauge",
	       "1 if counters_file could be read at this scrape (or does not exist yet), else 0.");
	buf_printf(out, PREFIX "cli_counters_readable %d\n", ok ? 1 : 0);
}

void metrics_render(struct buf *out, const char *counters_file, long workers_configured)
{
	if (sh != NULL)
		render_daemon(out, workers_configured);
	render_cli(out, counters_file);
}

int metrics_respond(const struct config *c, const char *method, struct buf *out)
{
	if (method == NULL || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
		buf_appends(out, "Status: 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"
			    "Content-Type: application/json\r\n\r\n"
			    "{\"error\":\"/metrics answers GET and HEAD only\"}\n");
		return 405;
	}
	buf_appends(out, "Status: 200 OK\r\n"
		    "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
		    "Cache-Control: no-store\r\n\r\n");
	char path[4096];
	metrics_render(out, metrics_counters_path(c, path, sizeof path), c->workers);
	return 200;
}

int64_t metrics_clock_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *metrics_counters_path(const struct config *c, char *buf, size_t n)
{
	int len;
	if (c->counters_file != NULL && c->counters_file[0] != '\0')
		len = snprintf(buf, n, "%s", c->counters_file);
	else if (c->backend != NULL && strcmp(c->backend, "file") == 0 && c->file_root != NULL &&
		 c->file_root[0] == '/')
		len = snprintf(buf, n, "%s/cli-counters", c->file_root);
	else
		return NULL;
	return len > 0 && (size_t)len < n ? buf : NULL;
}

/* ------------------------------------------------------ the tool's side */

void metrics_cli_setup(const char *counters_file)
{
	free(cli_file);
	cli_file = counters_file && *counters_file ? xstrdup(counters_file) : NULL;
}

/* A file made by root goes to the owner of its directory (the daemon's
 * user, who owns the store), so that the daemon can read it. */
static void give_to_dir_owner(int fd, const char *path)
{
	if (geteuid() != 0)
		return;
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	struct stat ds, fs;
	if (stat(dir, &ds) == 0 && fstat(fd, &fs) == 0 &&
	    (fs.st_uid != ds.st_uid || fs.st_gid != ds.st_gid) &&
	    fchown(fd, ds.st_uid, ds.st_gid) < 0)
		log_debug("counters file %s: chown: %s", path, strerror(errno));
	free(dir);
}

static int cli_fail(const char *what)
{
	if (!cli_warned)
		fprintf(stderr, "rspamd-quarantine: warning: action not counted: %s %s: %s\n",
			what, cli_file, strerror(errno));
	cli_warned = true;
	return -1;
}

int metrics_cli_add(const char *action, const char *outcome, uint64_t n)
{
	if (cli_file == NULL || n == 0)
		return 0;
	int ai = find_name(cli_actions, NACTION, action, strlen(action));
	int oi = find_name(cli_outcomes, NOUTCOME, outcome, strlen(outcome));
	if (ai < 0)
		return -1; /* a caller's mistake; never a new label */
	if (oi < 0)
		oi = (int)NOUTCOME - 1;
	int fd = open(cli_file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0) {
		/* No directory for it (a test or a store elsewhere): nothing to
		 * count into, and nothing worth a warning. */
		if (errno == ENOENT)
			return -1;
		return cli_fail("open");
	}
	struct buf b = { 0 };
	int rc = -1;
	if (flock(fd, LOCK_EX) < 0) {
		cli_fail("lock");
		goto out;
	}
	give_to_dir_owner(fd, cli_file);
	if (read_all(fd, &b) < 0) {
		cli_fail("read");
		goto out;
	}
	uint64_t counts[NACTION * NOUTCOME];
	metrics_cli_parse(b.data ? b.data : "", b.len, counts);
	counts[(size_t)ai * NOUTCOME + (size_t)oi] += n;
	buf_reset(&b);
	buf_appends(&b, "# rspamd-quarantine: what the operator's tool did, for the daemon's "
		    "/metrics\n# action outcome count\n");
	for (size_t a = 0; a < NACTION; a++)
		for (size_t o = 0; o < NOUTCOME; o++)
			if (counts[a * NOUTCOME + o])
				buf_printf(&b, "%s %s %" PRIu64 "\n", cli_actions[a], cli_outcomes[o],
					   counts[a * NOUTCOME + o]);
	/* Rewritten in place under the lock (readers take it too), then cut
	 * to length: the file keeps its inode, so the lock stays meaningful,
	 * which a rename over it would not. */
	if (pwrite(fd, b.data, b.len, 0) != (ssize_t)b.len || ftruncate(fd, (off_t)b.len) < 0) {
		cli_fail("write");
		goto out;
	}
	rc = 0;
out:
	buf_free(&b);
	close(fd);
	return rc;
}

int metrics_cli_count(const char *action, const char *outcome)
{
	return metrics_cli_add(action, outcome, 1);
}
