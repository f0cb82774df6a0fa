/*
 * store_null.c - the "null" backend: accepts every message and keeps
 * nothing.  It measures the daemon without the cost of storage
 * (benchmarks), so every put succeeds and every lookup finds nothing.
 */
#include "store.h"

#include <stdlib.h>
#include <string.h>

/* A put needs no state; this marks that one is open. */
static char null_put;

static int null_open(void **state, const struct config *c, struct qerr *e)
{
	(void)c;
	(void)e;
	*state = NULL;
	return 0;
}

static void null_close(void *state)
{
	(void)state;
}

static int null_put_begin(void *state, void **put, struct qerr *e)
{
	(void)state;
	(void)e;
	*put = &null_put;
	return 0;
}

static int null_put_write(void *put, const void *p, size_t n, struct qerr *e)
{
	(void)put;
	(void)p;
	(void)n;
	(void)e;
	return 0;
}

/* Pretends to store every entry, so the daemon answers as it would. */
static int null_put_commit(void *put, const struct qmeta *m, char *const *ids,
			   size_t *created, struct qerr *e)
{
	(void)put;
	(void)ids;
	(void)e;
	*created = m->nrcpt;
	return 0;
}

static void null_put_abort(void *put)
{
	(void)put;
}

static int null_get(void *state, const char *id, struct qentry *out, struct qerr *e)
{
	(void)state;
	memset(out, 0, sizeof *out);
	return qerr_notfound(e, "no entry '%.40s'", id);
}

static int null_read_content(void *state, const char *id, store_data_cb cb, void *arg,
			     struct qerr *e)
{
	(void)state;
	(void)cb;
	(void)arg;
	return qerr_notfound(e, "no entry '%.40s'", id);
}

static int null_list(void *state, const struct store_filter *f, store_entry_cb cb,
		     void *arg, struct qerr *e)
{
	(void)state;
	(void)f;
	(void)cb;
	(void)arg;
	(void)e;
	return 0;
}

static int null_remove(void *state, const char *id, struct qerr *e)
{
	(void)state;
	return qerr_notfound(e, "no entry '%.40s'", id);
}

static int null_set_status(void *state, const char *id, enum entry_status s, int64_t now,
			   struct qerr *e)
{
	(void)state;
	(void)s;
	(void)now;
	return qerr_notfound(e, "no entry '%.40s'", id);
}

static int null_expire(void *state, const struct expire_opts *o, struct expire_result *r,
		       struct qerr *e)
{
	(void)state;
	(void)o;
	(void)e;
	memset(r, 0, sizeof *r);
	return 0;
}

static int null_stats(void *state, struct store_stats *s, struct qerr *e)
{
	(void)state;
	(void)e;
	memset(s, 0, sizeof *s);
	return 0;
}

const struct store_backend store_backend_null = {
	.name = "null",
	.open = null_open,
	.close = null_close,
	.put_begin = null_put_begin,
	.put_write = null_put_write,
	.put_commit = null_put_commit,
	.put_abort = null_put_abort,
	.get = null_get,
	.read_content = null_read_content,
	.list = null_list,
	.remove = null_remove,
	.set_status = null_set_status,
	.expire = null_expire,
	.stats = null_stats,
	.health = NULL, /* always takes writes */
};
