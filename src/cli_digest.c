/*
 * cli_digest.c - `digest`: tells each recipient, by mail, of the entries
 * held for them that no digest has announced yet (run by cron).
 *
 * One recipient at a time: the entries are marked announced, then the
 * digest is sent through the release transport (release_send), and if
 * the MTA does not take it the marks are cleared again.  So a digest
 * that was accepted is never sent twice, and a run that stops part-way
 * leaves the recipients it had not reached for the next run.  SIGTERM,
 * SIGINT and SIGHUP are held while a recipient is in progress: a stop
 * request ends the run between two recipients.  The one window left is a
 * crash (SIGKILL, power) between marking and the MTA's answer: those
 * entries are then not announced again, but they stay on the recipient's
 * overview, which every later digest links to.  Only one run at a time:
 * it holds an exclusive lock on the link key file.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#include "digest.h"
#include "log.h"
#include "release.h"
#include "token.h"

static const char digest_usage[] =
	"usage: " CLI_NAME " [-c FILE] digest [--dry-run] [--rcpt ADDR]\n"
	"       " CLI_NAME " digest --print-template text|html\n"
	"Mails each recipient a list of their held mail that no digest has\n"
	"announced yet, with signed links to the pages, and marks it announced.\n"
	"--dry-run prints what would be sent and changes nothing; --rcpt limits\n"
	"the run to one recipient; --print-template prints a built-in template,\n"
	"to start an own one from.\n";

/* One announced candidate: what sorting and the marks need, no more.
 * A run may have a candidate for every entry of the store, so the rows
 * a digest shows (sender, subject...) are read again for the few it
 * shows; the recipient's string is shared by its consecutive entries
 * (the stores list a recipient's entries together). */
struct cand {
	const char *rcpt;   /* owned by struct gather's rcpts */
	char id[ENTRY_ID_LEN + 1];
	int64_t received;
};

struct gather {
	const struct config *cfg;
	struct cand *v;
	size_t n, cap;
	char **rcpts;     /* each distinct run of a recipient's string, once */
	size_t nrcpts, rcap;
};

static int gather_cb(const struct qentry *q, void *arg)
{
	struct gather *g = arg;
	if (q->rcpt == NULL || !digest_announces(g->cfg, q) || digest_excluded(g->cfg, q->rcpt))
		return 0;
	if (g->n == g->cap) {
		g->cap = g->cap ? 2 * g->cap : 1024;
		g->v = xrealloc(g->v, g->cap * sizeof *g->v);
	}
	if (g->nrcpts == 0 || strcmp(g->rcpts[g->nrcpts - 1], q->rcpt) != 0) {
		if (g->nrcpts == g->rcap) {
			g->rcap = g->rcap ? 2 * g->rcap : 64;
			g->rcpts = xrealloc(g->rcpts, g->rcap * sizeof *g->rcpts);
		}
		g->rcpts[g->nrcpts++] = xstrdup(q->rcpt);
	}
	struct cand *c = &g->v[g->n++];
	c->rcpt = g->rcpts[g->nrcpts - 1];
	memcpy(c->id, q->id, sizeof c->id);
	c->received = q->meta.received_at;
	return 0;
}

/* By recipient (without regard to case), then newest first. */
static int by_rcpt_newest(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	int r = strcasecmp(x->rcpt, y->rcpt);
	if (r)
		return r;
	if (x->received != y->received)
		return x->received > y->received ? -1 : 1;
	return strcmp(x->id, y->id);
}

static volatile sig_atomic_t stop_asked;

static void on_stop(int sig)
{
	(void)sig;
	stop_asked = 1;
}

/* The MTA's sender check may need root (sendmail transport). */
static int regain_privileges(void *arg)
{
	return cli_restore_privileges(arg);
}

/* Counts of a run, for its last line. */
struct totals {
	size_t sent, failed, entries;
};

/* Marks, sends, and unmarks on failure: one recipient's digest. */
static int send_one(struct cli *c, struct store *s, const char *rcpt, char **ids, size_t n,
		    const char *msg, size_t len, struct totals *t)
{
	const struct config *cfg = &c->cfg;
	struct qerr e;
	qerr_clear(&e);
	if (store_set_announced(s, rcpt, ids, n, clock_now(), &e) < 0) {
		cli_error("digest: %s: cannot mark %zu entries announced, nothing sent: %s", rcpt, n,
			  e.msg);
		t->failed++;
		return CLI_FAIL;
	}
	struct release_req req;
	memset(&req, 0, sizeof req);
	req.by = "digest";
	req.child_setup = regain_privileges;
	req.child_arg = c;
	struct release_result res;
	memset(&res, 0, sizeof res);
	enum release_status st = release_send(cfg, cfg->digest_from, rcpt, msg, len, &req, &res);
	metrics_cli_count("digest", release_outcome(st));
	if (st == RELEASE_OK) {
		log_info("digest: rcpt: %s, entries: %zu, status: sent, reply: %s", rcpt, n,
			 res.reply);
		printf("%s: digest of %zu entries sent\n", rcpt, n);
		t->sent++;
		t->entries += n;
		return CLI_OK;
	}
	log_warn("digest: rcpt: %s, entries: %zu, status: %s, reply: %s", rcpt, n,
		 release_status_name(st), res.reply);
	cli_error("digest: %s: not sent (%s): %s", rcpt, release_status_name(st), res.reply);
	t->failed++;
	qerr_clear(&e);
	if (store_set_announced(s, rcpt, ids, n, 0, &e) < 0)
		cli_error("digest: %s: the %zu entries stay marked announced: %s", rcpt, n, e.msg);
	return CLI_FAIL;
}

/* Reads the rows a digest shows, ids[0..n) (newest first), into rows;
 * an entry gone meanwhile (deleted, expired) is left out.  Returns how
 * many rows were read, or -1 if the store failed. */
static ssize_t read_rows(struct store *s, char *const *ids, size_t n, struct digest_row *rows,
			 struct qerr *e)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		struct qentry q;
		if (store_get(s, ids[i], &q, e) < 0) {
			if (e->cls == QERR_NOTFOUND)
				continue;
			return -1;
		}
		digest_row_from_entry(&rows[k++], &q);
		qentry_free(&q);
	}
	return (ssize_t)k;
}

/* One recipient's candidates v[0..n): keeps those not announced, reads
 * the rows it shows, builds the digest, prints or sends it. */
static int one_recipient(struct cli *c, struct store *s, const struct digest_ctx *d,
			 struct cand *v, size_t n, bool dry_run, struct totals *t)
{
	const char *rcpt = v[0].rcpt;
	char **ids = xcalloc(n, sizeof *ids);
	int64_t *when = xcalloc(n, sizeof *when);
	size_t max = (size_t)c->cfg.digest_rows;
	struct digest_row *rows = xcalloc(max ? max : 1, sizeof *rows);
	ssize_t nrows = 0;
	for (size_t i = 0; i < n; i++)
		ids[i] = v[i].id;
	struct qerr e;
	qerr_clear(&e);
	int rc = CLI_OK;
	if (store_get_announced(s, rcpt, ids, n, when, &e) < 0) {
		cli_error("digest: %s: cannot read announced marks: %s", rcpt, e.msg);
		t->failed++;
		rc = CLI_FAIL;
		goto out;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (when[i] == 0)
			ids[k++] = v[i].id;
	if (k == 0)
		goto out;
	nrows = read_rows(s, ids, k < max ? k : max, rows, &e);
	if (nrows < 0) {
		cli_error("digest: %s: cannot read the entries: %s", rcpt, e.msg);
		t->failed++;
		rc = CLI_FAIL;
		goto out;
	}
	char *msg = NULL, *text = NULL;
	size_t len = 0;
	if (digest_build(d, rcpt, rows, (size_t)nrows, k, &msg, &len, dry_run ? &text : NULL,
			 &e) < 0) {
		cli_error("digest: %s: %s", rcpt, e.msg);
		t->failed++;
		rc = CLI_FAIL;
		goto out;
	}
	if (dry_run) {
		printf("To: %s (%zu new entries)\n\n%s\n", rcpt, k, text);
		t->sent++;
		t->entries += k;
	} else {
		rc = send_one(c, s, rcpt, ids, k, msg, len, t);
	}
	free(msg);
	free(text);
out:
	for (ssize_t i = 0; i < nrows; i++)
		digest_row_free(&rows[i]);
	free(rows);
	free(when);
	free(ids);
	return rc;
}

/* Holds the link key's lock for the whole run: one digest at a time. */
static int lock_run(const struct config *cfg, int *fd)
{
	*fd = open(cfg->link_key_file, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		cli_error("digest: cannot open %s: %s", cfg->link_key_file, strerror(errno));
		return CLI_FAIL;
	}
	if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
		cli_error("digest: another digest run holds %s; not starting a second",
			  cfg->link_key_file);
		close(*fd);
		*fd = -1;
		return CLI_FAIL;
	}
	return 0;
}

int cmd_digest(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "rcpt", required_argument, NULL, 'r' },
		{ "print-template", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool dry_run = false;
	const char *only = NULL;
	int ch;
	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			fputs(digest_usage, stdout);
			return CLI_OK;
		case 'n':
			dry_run = true;
			break;
		case 'r':
			if (*optarg == '\0' || strlen(optarg) > 512)
				return cli_usage_error("digest", "--rcpt needs an address");
			only = optarg;
			break;
		case 'p':
			if (strcmp(optarg, "text") && strcmp(optarg, "html"))
				return cli_usage_error("digest", "--print-template takes text or html");
			fputs(digest_builtin_template(strcmp(optarg, "html") == 0), stdout);
			return CLI_OK;
		default:
			return cli_option_error("digest", ch, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("digest", "unexpected argument '%.60s'", argv[optind]);

	struct store *s;
	int rc = cli_open_store(c, &s);
	if (rc)
		return rc;
	const struct config *cfg = &c->cfg;
	if (cfg->digest_from[0] == '\0' || cfg->pages_url[0] == '\0') {
		cli_error("digest: set digest_from and pages_url in %s first", c->config_path);
		return CLI_USAGE;
	}
	struct qerr e;
	qerr_clear(&e);
	struct token_keys keys;
	if (token_keys_load(&keys, cfg->link_key_file, cfg->link_key_file_previous, &e) < 0) {
		cli_error("digest: %s", e.msg);
		return CLI_FAIL;
	}
	struct digest_ctx d;
	if (digest_ctx_init(&d, cfg, &keys, clock_now(), &e) < 0) {
		cli_error("digest: %s", e.msg);
		return CLI_USAGE;
	}
	int lockfd = -1;
	if (!dry_run && (rc = lock_run(cfg, &lockfd)) != 0) {
		digest_ctx_free(&d);
		return rc;
	}

	struct store_filter f;
	memset(&f, 0, sizeof f);
	f.status = ENTRY_QUARANTINED;
	f.rcpt = only;
	f.any_order = true; /* sorted here: the store need not hold them all */
	struct gather g = { cfg, NULL, 0, 0, NULL, 0, 0 };
	if (store_list(s, &f, gather_cb, &g, &e) < 0) {
		cli_error("digest: cannot list the entries: %s", e.msg);
		rc = CLI_FAIL;
		goto out;
	}
	if (g.n)
		qsort(g.v, g.n, sizeof *g.v, by_rcpt_newest);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigset_t hold, old;
	sigemptyset(&hold);
	sigaddset(&hold, SIGTERM);
	sigaddset(&hold, SIGINT);
	sigaddset(&hold, SIGHUP);

	struct totals t = { 0, 0, 0 };
	for (size_t i = 0; i < g.n && !stop_asked;) {
		size_t j = i + 1;
		while (j < g.n && strcasecmp(g.v[j].rcpt, g.v[i].rcpt) == 0)
			j++;
		sigprocmask(SIG_BLOCK, &hold, &old);
		int r = one_recipient(c, s, &d, g.v + i, j - i, dry_run, &t);
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (r)
			rc = r;
		i = j;
	}
	if (stop_asked)
		cli_error("digest: stopped on a signal; the next run sends the rest");
	log_info("digest: %s: %zu digests %s (%zu entries), %zu failed", dry_run ? "dry run" : "done",
		 t.sent, dry_run ? "would be sent" : "sent", t.entries, t.failed);
	if (!dry_run)
		printf("%zu digests sent (%zu entries), %zu failed\n", t.sent, t.entries, t.failed);
	if (stop_asked && rc == 0)
		rc = CLI_FAIL;
out:
	for (size_t i = 0; i < g.nrcpts; i++)
		free(g.rcpts[i]);
	free(g.rcpts);
	free(g.v);
	digest_ctx_free(&d);
	if (lockfd >= 0)
		close(lockfd);
	return rc;
}
