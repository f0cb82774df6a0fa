/*
 * populate.c - fills a store for the growth curve through the real put
 * path (store_put_begin/write/commit of libquarantine.a), so that what
 * list and expire meet is exactly what the daemon writes.
 *
 *   populate CONF N DAYS RCPTS [PROCS]
 *
 * Stores N messages of about 1.5 KB, one recipient each, spread evenly
 * over the last DAYS days (received_at through RSPAMD_QUARANTINE_NOW),
 * recipients user0..user<RCPTS-1>@example.org in turn, with PROCS
 * processes.  For speed this program's fsync and fdatasync do nothing:
 * it only builds a store to measure reading it, and a crash while
 * populating is of no interest.  Everything else is the real code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "record.h"
#include "store.h"

/* Populating needs no durability (see above). */
int fsync(int fd)
{
	(void)fd;
	return 0;
}

int fdatasync(int fd)
{
	(void)fd;
	return 0;
}

static const char SYMS[] =
	"[{\"name\":\"BAYES_SPAM\",\"score\":5.1},{\"name\":\"R_SPF_FAIL\",\"score\":1.0}]";

static int one(struct store *s, long i, long n, long days, long rcpts, time_t base)
{
	char buf[64], qid[32], rcpt[64], body[2048];
	struct qerr e;
	int64_t t = (int64_t)base - (int64_t)((double)days * 86400.0 * (double)i / (double)n);
	snprintf(buf, sizeof buf, "%lld", (long long)t);
	setenv("RSPAMD_QUARANTINE_NOW", buf, 1);
	snprintf(qid, sizeof qid, "P%ld", i);
	snprintf(rcpt, sizeof rcpt, "user%ld@example.org", i % rcpts);
	int len = snprintf(body, sizeof body,
			   "From: \"Spammer\" <s%ld@spam.example>\r\nTo: %s\r\n"
			   "Subject: offer number %ld\r\nMessage-ID: <%ld@spam.example>\r\n\r\n",
			   i, rcpt, i, i);
	while (len < 1400)
		len += snprintf(body + len, sizeof body - (size_t)len,
				"Cheap offers for you, reply now, line %d.\r\n", len);
	struct qmeta m;
	memset(&m, 0, sizeof m);
	m.scan_time = -1;
	qmeta_set(&m.qid, qid);
	qmeta_set(&m.env_from, "s@spam.example");
	qmeta_set(&m.rspamd_server, "scan1");
	qmeta_set(&m.action, "add header");
	qmeta_set(&m.symbols_json, SYMS);
	m.rcpt = xcalloc(1, sizeof *m.rcpt);
	m.rcpt[0] = xstrdup(rcpt);
	m.nrcpt = 1;
	struct store_put *p;
	char **ids;
	size_t nids, created;
	if (store_put_begin(s, &p, &e) < 0 || store_put_write(p, body, (size_t)len, &e) < 0 ||
	    store_put_commit(p, &m, &ids, &nids, &created, &e) < 0) {
		fprintf(stderr, "populate: message %ld: %s\n", i, e.msg);
		qmeta_free(&m);
		return -1;
	}
	xfree_strv(ids, nids);
	qmeta_free(&m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: populate CONF N DAYS RCPTS [PROCS]\n");
		return 2;
	}
	long n = atol(argv[2]), days = atol(argv[3]), rcpts = atol(argv[4]);
	long procs = argc > 5 ? atol(argv[5]) : 1;
	if (n < 1 || days < 1 || rcpts < 1 || procs < 1)
		return 2;
	struct config c;
	struct qerr e;
	config_defaults(&c);
	if (config_load(&c, argv[1], &e) < 0) {
		fprintf(stderr, "populate: %s\n", e.msg);
		return 2;
	}
	time_t base = time(NULL);
	for (long k = 0; k < procs; k++) {
		if (fork() != 0)
			continue;
		struct store *s;
		if (store_open(&s, &c, &e) < 0) {
			fprintf(stderr, "populate: %s\n", e.msg);
			_exit(1);
		}
		for (long i = k; i < n; i += procs)
			if (one(s, i, n, days, rcpts, base) < 0)
				_exit(1);
		store_close(s);
		_exit(0);
	}
	int st, bad = 0;
	while (wait(&st) > 0)
		bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	config_free(&c);
	return bad;
}
