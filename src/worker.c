/*
 * worker.c - the life of one preforked worker: its signal set-up (done
 * before libfcgi can install its own), its own store connection, the
 * accept loop on the shared non-blocking listening socket, and for each
 * request: the service nginx names (dispatch), and for ingest the HTTP
 * answer and one key: value log line.
 *
 * Signals: SIGTERM, SIGINT and SIGUSR1 ask the worker to stop after the
 * current request.  They stay blocked except while the worker waits for a
 * connection (epoll_pwait, or ppoll on a kept-alive connection), so a stop
 * request is seen at once when idle and never cuts a libfcgi read short
 * while a request is being handled.
 *
 * Each worker waits on the listening socket through its own epoll set with
 * EPOLLEXCLUSIVE: a new connection wakes one idle worker, not all of them
 * (with plain poll every worker woke, and all but one found nothing to
 * accept).
 */
#include "worker.h"

#include <errno.h>
#include <fcgiapp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "health.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "pages.h"
#include "store.h"

/* Longest a single read or write on a connection may wait. */
#define IO_TIMEOUT_SECONDS 120
/* Longest input-derived value in a log line. */
#define LOG_VALUE_MAX 256

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Signal dispositions of a worker.  Installed before FCGX_Init, which
 * only installs its own handlers where the disposition is the default. */
static void worker_signals(sigset_t *blocked, sigset_t *waiting)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* The master re-reads the configuration and replaces the workers. */
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);

	sigemptyset(blocked);
	sigaddset(blocked, SIGTERM);
	sigaddset(blocked, SIGINT);
	sigaddset(blocked, SIGUSR1);
	sigprocmask(SIG_SETMASK, blocked, NULL);
	sigemptyset(waiting);
}

/* The body reader ingest calls: a cut-short or failed read is -1, never
 * a silent end of the body. */
static ssize_t fcgi_read(void *arg, void *p, size_t n)
{
	FCGX_Request *req = arg;
	if (n > INT_MAX)
		n = INT_MAX;
	int got = FCGX_GetStr(p, (int)n, req->in);
	if (FCGX_GetError(req->in) != 0 || got < 0)
		return -1;
	return got;
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

/* A JSON string body: escapes quotes, backslashes and control bytes, and
 * keeps to ASCII so the answer is valid JSON whatever the message holds. */
static void json_string(struct buf *b, const char *s)
{
	buf_appendc(b, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			buf_appendc(b, '\\');
			buf_appendc(b, (char)*p);
		} else if (*p < 0x20 || *p == 0x7f) {
			buf_printf(b, "\\u%04x", *p);
		} else if (*p >= 0x80) {
			buf_appendc(b, '?');
		} else {
			buf_appendc(b, (char)*p);
		}
	}
	buf_appendc(b, '"');
}

/* Builds the whole FastCGI answer: CGI status line, headers, JSON body. */
static void build_response(struct buf *out, const struct config *c, int status,
			   const struct ingest_result *r, const struct qerr *e)
{
	buf_printf(out, "Status: %d %s\r\nContent-Type: application/json\r\n", status,
		   reason_phrase(status));
	if (status == 503)
		buf_printf(out, "Retry-After: %ld\r\n", c->retry_after);
	if (status == 401)
		buf_appends(out, "WWW-Authenticate: Basic realm=\"rspamd-quarantine\"\r\n");
	if (status == 405)
		buf_appends(out, "Allow: POST\r\n");
	buf_appends(out, "\r\n");
	if (status == 200) {
		buf_printf(out, "{\"status\":\"%s\",\"ids\":[", r->skipped ? "skipped" : "stored");
		for (size_t i = 0; i < r->nids; i++) {
			if (i)
				buf_appendc(out, ',');
			json_string(out, r->ids[i]);
		}
		buf_appends(out, "]}\n");
	} else {
		buf_appends(out, "{\"error\":");
		json_string(out, e->msg[0] ? e->msg : reason_phrase(status));
		buf_appends(out, "}\n");
	}
}

/* Appends ", key: " (no comma first); plain appends, as a printf per key
 * was a tenth of a null-backend request's instructions. */
static void log_key(struct buf *b, const char *key)
{
	if (b->len)
		buf_append(b, ", ", 2);
	buf_appends(b, key);
	buf_append(b, ": ", 2);
}

/* Appends "key: value" to a log line, the value cleaned of input tricks. */
static void log_kv(struct buf *b, const char *key, const char *value)
{
	log_key(b, key);
	log_append_clean(b, value && *value ? value : "-", LOG_VALUE_MAX);
}

/* Appends "key: a,b,c" for a list of values. */
static void log_kv_list(struct buf *b, const char *key, char *const *v, size_t n)
{
	log_key(b, key);
	if (n == 0)
		buf_appendc(b, '-');
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_appendc(b, ',');
		if (i == 16) {
			buf_printf(b, "... (%zu)", n);
			break;
		}
		log_append_clean(b, v[i], LOG_VALUE_MAX);
	}
}

/* The one log line of a request, in Rspamd's key: value style. */
static void log_request(const struct ingest_result *r, int status, int64_t ms,
			const struct qerr *e)
{
	const struct qmeta *m = &r->meta;
	struct buf b = { 0 };
	char num[64];
	log_kv(&b, "qid", m->qid);
	log_kv_list(&b, "ids", r->ids, r->nids);
	log_kv_list(&b, "rcpt", m->rcpt, m->nrcpt);
	log_kv(&b, "from", m->env_from);
	snprintf(num, sizeof num, "%llu", (unsigned long long)m->size);
	log_kv(&b, "size", num);
	log_kv(&b, "action", m->action);
	if (m->has_score)
		snprintf(num, sizeof num, "%.2f", m->score);
	else
		strcpy(num, "-");
	log_kv(&b, "score", num);
	log_kv(&b, "policy", m->policy);
	log_kv(&b, "formatter", r->formatter);
	snprintf(num, sizeof num, "%lld", (long long)ms);
	log_kv(&b, "ms", num);
	snprintf(num, sizeof num, "%d", status);
	log_kv(&b, "status", num);
	if (status != 200)
		log_kv(&b, "error", e->msg);
	if (r->skipped)
		log_kv(&b, "skipped", "only_symbols");

	int level = LOG_INFO;
	if (status == 503)
		level = e->cls == QERR_TEMP ? LOG_WARNING : LOG_ERR;
	log_msg(level, "%s", b.data);
	buf_free(&b);
}

/* One request of the users' pages; they answer and log for themselves. */
static void handle_page(struct store *s, const struct config *c, FCGX_Request *req)
{
	struct buf out = { 0 };
	pages_request(s, c, req->envp, fcgi_read, req, &out);
	if (out.len > INT_MAX || FCGX_PutStr(out.data, (int)out.len, req->out) != (int)out.len)
		log_warn("could not send a page: the web server went away");
	buf_free(&out);
}

/* Handles one accepted request, from parameters to answer. */
static void handle_request(struct store *s, const struct config *c, FCGX_Request *req)
{
	int64_t t0 = clock_ms(), us0 = metrics_clock_us();
	struct ingest_result r;
	struct qerr e;
	qerr_clear(&e);
	int rc = ingest_request(s, c, req->envp, fcgi_read, req, &r, &e);
	/* ingest_request maps every failure class to its status. */
	int status = r.http;
	if (rc < 0) {
		if (e.cls == QERR_NONE)
			qerr_set(&e, QERR_PERM, 503, "internal error: request failed without a reason");
	}
	struct buf out = { 0 };
	build_response(&out, c, status, &r, &e);
	if (out.len > INT_MAX || FCGX_PutStr(out.data, (int)out.len, req->out) != (int)out.len)
		log_warn("could not send the answer (status %d): the web server went away", status);
	buf_free(&out);
	log_request(&r, status, clock_ms() - t0, &e);
	metrics_request(status, r.formatter, rc < 0 ? e.cls : QERR_NONE,
			metrics_clock_us() - us0, r.created, r.meta.size, r.skipped);
	ingest_result_free(&r);
}

/* Sends an answer built whole by metrics or health. */
static void send_answer(FCGX_Request *req, const struct buf *out, const char *what)
{
	if (out->len > INT_MAX || FCGX_PutStr(out->data, (int)out->len, req->out) != (int)out->len)
		log_warn("could not send the %s answer: the web server went away", what);
}

/*
 * Which service a request is for.  nginx says so per location with the
 * FastCGI parameter RQ_SERVICE: ingest (also when it is absent or empty,
 * so server blocks written before there was a choice keep working),
 * metrics, health, pages.  Each location sets its own value, so a request
 * for one service can never reach another: an unknown value gets 404.
 */
static void dispatch(struct store *s, const struct config *c, FCGX_Request *req)
{
	const char *svc = FCGX_GetParam("RQ_SERVICE", req->envp);
	const char *method = FCGX_GetParam("REQUEST_METHOD", req->envp);
	struct buf out = { 0 };
	metrics_worker_busy(true);
	if (svc == NULL || svc[0] == '\0' || strcmp(svc, "ingest") == 0) {
		handle_request(s, c, req);
	} else if (strcmp(svc, "metrics") == 0) {
		metrics_respond(c, method, &out);
		send_answer(req, &out, "metrics");
	} else if (strcmp(svc, "health") == 0) {
		health_respond(s, c, method, &out);
		send_answer(req, &out, "health");
	} else if (strcmp(svc, "pages") == 0) {
		handle_page(s, c, req);
	} else {
		buf_appends(&out, "Status: 404 Not Found\r\nContent-Type: application/json\r\n\r\n"
			    "{\"error\":\"no such service here (RQ_SERVICE)\"}\n");
		send_answer(req, &out, "not-found");
	}
	metrics_worker_busy(false);
	buf_free(&out);
}

/* The worker's wait for work: the kept-alive connection if there is one,
 * else a connection on the listening socket.  Stop signals are let in for
 * the wait only.  Returns what ppoll/epoll_pwait return. */
static int wait_for_work(int epfd, int conn_fd, const sigset_t *waiting)
{
	if (conn_fd >= 0) {
		struct pollfd pfd = { .fd = conn_fd, .events = POLLIN };
		return ppoll(&pfd, 1, NULL, waiting);
	}
	struct epoll_event ev;
	return epoll_pwait(epfd, &ev, 1, -1, waiting);
}

/*
 * Ends a request.  libfcgi closes a connection gracefully: it shuts its
 * side down, then reads until nginx has closed (up to two seconds), so
 * that unread input never makes the kernel reset a reply nginx has not
 * read yet.  A request read to its end has no input left and nginx sends
 * nothing more on a connection it does not keep, so there the worker
 * just closes (FCGX_Detach: close without the wait) and takes the next
 * request three system calls and nginx's close sooner.  Anything else,
 * an answer given before the body was read, keeps the graceful close.
 */
static void finish_request(FCGX_Request *req)
{
	if (!req->keepConnection && req->in != NULL && FCGX_HasSeenEOF(req->in) == EOF)
		FCGX_Detach(req);
	FCGX_Finish_r(req);
}

/* Bounds how long a stalled peer can hold this worker in a read or write. */
static void set_io_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_SECONDS, .tv_usec = 0 };
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

int worker_main(const struct config *c, int listen_fd)
{
	sigset_t blocked, waiting;
	worker_signals(&blocked, &waiting);

	struct store *s = NULL;
	struct qerr e;
	qerr_clear(&e);
	if (store_open(&s, c, &e) < 0) {
		log_err("worker: cannot open the %s store: %s", c->backend, e.msg);
		return 75; /* EX_TEMPFAIL: the master retries with back-off */
	}
	/* Rspamd waits for the answer, not for what follows a durable commit. */
	store_defer(s);
	/* Releases and deletes from the users' pages are counted where the
	 * operator's tool counts its own, for /metrics. */
	char counters[4096];
	metrics_cli_setup(metrics_counters_path(c, counters, sizeof counters));
	if (FCGX_Init() != 0) {
		log_err("worker: FCGX_Init failed");
		store_close(s);
		return 70;
	}
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = { .events = EPOLLIN | EPOLLEXCLUSIVE };
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &lev) < 0) {
		log_err("worker: epoll on the listening socket: %s", strerror(errno));
		if (epfd >= 0)
			close(epfd);
		store_close(s);
		return 70;
	}
	FCGX_Request req;
	if (FCGX_InitRequest(&req, listen_fd, 0) != 0) {
		log_err("worker: FCGX_InitRequest failed");
		close(epfd);
		store_close(s);
		return 70;
	}

	metrics_worker_start();
	int status = 0;
	while (!stop_requested) {
		/* A kept-alive connection brings the next request itself. */
		int n = wait_for_work(epfd, req.ipcFd, &waiting);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("worker: waiting for a connection: %s", strerror(errno));
			status = 1;
			break;
		}
		if (stop_requested)
			break;
		int rc = FCGX_Accept_r(&req);
		if (rc < 0) {
			/* Another worker took the connection (EAGAIN), or the peer
			 * left before its request was read: wait again. */
			if (rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -EINTR ||
			    rc == -ECONNABORTED || rc == -EPROTO)
				continue;
			log_err("worker: FCGX_Accept_r failed: %s",
				rc > -4096 ? strerror(-rc) : "libfcgi error");
			status = 1;
			break;
		}
		set_io_timeouts(req.ipcFd);
		dispatch(s, c, &req);
		finish_request(&req);
		/* After the answer: what the commit left (the file store's
		 * names), durable already; the store logs its own failures. */
		qerr_clear(&e);
		(void)store_settle(s, &e);
	}
	FCGX_Free(&req, 1);
	close(epfd);
	store_close(s);
	return status;
}
