/*
 * store.c - the storage front end.  Everything that is the same for every
 * backend happens here: choosing the backend, the size cap, the SHA-256
 * and size of the bytes as they stream past, keeping the message header
 * for msghdr_parse, completing the metadata, deriving entry IDs,
 * collapsing duplicate recipients, checking IDs before any backend sees
 * them, timing and logging failures.  Backends only persist.
 */
#include "store.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "ingest_msghdr.h"
#include "log.h"

struct store {
	const struct store_backend *be;
	void *state;
	const struct config *c; /* outlives the store */
};

struct store_put {
	struct store *s;
	void *bput;              /* the backend's put */
	struct sha256_ctx *sha;
	uint64_t size;
	struct buf head;         /* the message's first bytes, for its header */
	bool head_done;          /* the header has ended within head */
	int64_t t0;
};

static const struct store_backend *find_backend(const char *name)
{
	if (name == NULL || strcmp(name, "file") == 0)
		return &store_backend_file;
	if (strcmp(name, "pgsql") == 0)
		return &store_backend_pgsql;
	if (strcmp(name, "null") == 0)
		return &store_backend_null;
	return NULL;
}

int store_open(struct store **s, const struct config *c, struct qerr *e)
{
	*s = NULL;
	const struct store_backend *be = find_backend(c->backend);
	if (be == NULL)
		return qerr_perm(e, "unknown backend '%.40s' (file, pgsql, null)", c->backend);
	struct store *st = xcalloc(1, sizeof *st);
	st->be = be;
	st->c = c;
	if (be->open(&st->state, c, e) < 0) {
		free(st);
		return -1;
	}
	*s = st;
	return 0;
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	s->be->close(s->state);
	free(s);
}

void store_defer(struct store *s)
{
	if (s->be->defer != NULL)
		s->be->defer(s->state);
}

int store_settle(struct store *s, struct qerr *e)
{
	return s->be->settle != NULL ? s->be->settle(s->state, e) : 0;
}

const char *store_backend_name(const struct store *s)
{
	return s->be->name;
}

int store_put_begin(struct store *s, struct store_put **p, struct qerr *e)
{
	*p = NULL;
	struct store_put *put = xcalloc(1, sizeof *put);
	put->s = s;
	put->t0 = clock_ms();
	if (s->be->put_begin(s->state, &put->bput, e) < 0) {
		log_msg(LOG_ERR, "store: %s: cannot start a message: %s", s->be->name, e->msg);
		free(put);
		return -1;
	}
	put->sha = sha256_new();
	*p = put;
	return 0;
}

/* Keeps the first bytes until the header has ended (or MSGHDR_MAX). */
static void keep_head(struct store_put *p, const void *data, size_t n)
{
	if (p->head_done)
		return;
	size_t room = MSGHDR_MAX - p->head.len;
	if (n > room)
		n = room;
	buf_append(&p->head, data, n);
	if (p->head.len >= MSGHDR_MAX || msghdr_end(p->head.data, p->head.len) != 0)
		p->head_done = true;
}

int store_put_write(struct store_put *p, const void *data, size_t n, struct qerr *e)
{
	uint64_t max = p->s->c->max_message_size;
	if (max != 0 && (n > max || p->size > max - n))
		return qerr_input(e, 413, "message exceeds max_message_size (%llu bytes)",
				  (unsigned long long)max);
	if (n == 0)
		return 0;
	if (p->s->be->put_write(p->bput, data, n, e) < 0) {
		log_msg(LOG_ERR, "store: %s: write failed: %s", p->s->be->name, e->msg);
		return -1;
	}
	sha256_update(p->sha, data, n);
	p->size += n;
	keep_head(p, data, n);
	return 0;
}

static void put_free(struct store_put *p)
{
	if (p->sha) {
		char discard[65];
		sha256_final_hex(p->sha, discard);
	}
	buf_free(&p->head);
	free(p);
}

void store_put_abort(struct store_put *p)
{
	if (p == NULL)
		return;
	p->s->be->put_abort(p->bput);
	put_free(p);
}

/* Drops recipients that repeat an earlier one (ignoring case). */
static void dedup_rcpt(struct qmeta *m)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nrcpt; i++) {
		bool dup = false;
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcasecmp(m->rcpt[i], m->rcpt[j]) == 0;
		if (dup)
			free(m->rcpt[i]);
		else
			m->rcpt[n++] = m->rcpt[i];
	}
	m->nrcpt = n;
}

int store_put_commit(struct store_put *p, struct qmeta *m, char ***ids, size_t *nids,
		     size_t *created, struct qerr *e)
{
	*ids = NULL;
	*nids = 0;
	*created = 0;
	if (p == NULL) /* no put was begun: not a single byte arrived */
		return qerr_input(e, 400, "no message in the body");
	struct store *s = p->s;
	const struct config *c = s->c;
	if (p->size == 0) {
		store_put_abort(p);
		return qerr_input(e, 400, "no message in the body");
	}

	msghdr_parse(p->head.data, p->head.len, m);
	sha256_final_hex(p->sha, m->sha256);
	p->sha = NULL;
	m->size = p->size;
	m->received_at = clock_now();
	free(m->policy);
	m->policy = qmeta_policy(m, c->policy_prefix);
	if (m->nrcpt == 0) {
		const char *owner = c->default_owner && *c->default_owner ? c->default_owner
									   : "postmaster";
		m->rcpt = xrealloc(m->rcpt, sizeof *m->rcpt);
		m->rcpt[0] = xstrdup(owner);
		m->nrcpt = 1;
	}
	/* Each recipient costs the backend files or rows: the bound keeps one
	 * request from holding a worker for minutes, deaf to SIGTERM. */
	if (m->nrcpt > (size_t)c->max_recipients) {
		store_put_abort(p);
		return qerr_input(e, 413, "too many recipients: %zu (max_recipients is %ld)",
				  m->nrcpt, c->max_recipients);
	}
	dedup_rcpt(m);

	char **v = xcalloc(m->nrcpt, sizeof *v);
	for (size_t i = 0; i < m->nrcpt; i++) {
		v[i] = xmalloc(ENTRY_ID_LEN + 1);
		store_entry_id(m, m->rcpt[i], v[i]);
	}

	void *bput = p->bput;
	int64_t t0 = p->t0;
	put_free(p);
	size_t made = 0;
	if (s->be->put_commit(bput, m, v, &made, e) < 0) {
		log_msg(LOG_ERR, "store: %s: commit failed after %lld ms (qid %s, %zu recipients): %s",
			s->be->name, (long long)(clock_ms() - t0), m->qid ? m->qid : "unknown",
			m->nrcpt, e->msg);
		xfree_strv(v, m->nrcpt);
		return -1;
	}
	*ids = v;
	*nids = m->nrcpt;
	*created = made;
	return 0;
}

/* Feeds s and its terminating NUL ("" for NULL) to the digest. */
static void hash_field(struct sha256_ctx *h, const char *s, bool nul)
{
	if (s == NULL)
		s = "";
	sha256_update(h, s, strlen(s) + (nul ? 1 : 0));
}

void store_entry_id(const struct qmeta *m, const char *rcpt, char *out)
{
	struct sha256_ctx *h = sha256_new();
	char hex[65];
	hash_field(h, m->sha256, true);
	hash_field(h, m->qid, true);
	hash_field(h, m->rspamd_server, true);
	hash_field(h, rcpt, false);
	sha256_final_hex(h, hex);
	memcpy(out, hex, ENTRY_ID_LEN);
	out[ENTRY_ID_LEN] = '\0';
}

bool store_id_valid(const char *id)
{
	if (id == NULL)
		return false;
	size_t i;
	for (i = 0; id[i] != '\0'; i++) {
		if (i >= ENTRY_ID_LEN)
			return false;
		if (!isdigit((unsigned char)id[i]) && !(id[i] >= 'a' && id[i] <= 'f'))
			return false;
	}
	return i == ENTRY_ID_LEN;
}

/* The common refusal of a malformed ID: it names no entry. */
static int bad_id(const char *id, struct qerr *e)
{
	return qerr_notfound(e, "no entry '%.40s'", id ? id : "");
}

int store_get(struct store *s, const char *id, struct qentry *out, struct qerr *e)
{
	if (!store_id_valid(id))
		return bad_id(id, e);
	return s->be->get(s->state, id, out, e);
}

int store_read_content(struct store *s, const char *id, store_data_cb cb, void *arg,
		       struct qerr *e)
{
	if (!store_id_valid(id))
		return bad_id(id, e);
	return s->be->read_content(s->state, id, cb, arg, e);
}

int store_list(struct store *s, const struct store_filter *f, store_entry_cb cb, void *arg,
	       struct qerr *e)
{
	int64_t t0 = clock_ms();
	int r = s->be->list(s->state, f, cb, arg, e);
	if (r < 0)
		log_msg(LOG_ERR, "store: %s: list failed after %lld ms: %s", s->be->name,
			(long long)(clock_ms() - t0), e->msg);
	return r;
}

int store_remove(struct store *s, const char *id, struct qerr *e)
{
	if (!store_id_valid(id))
		return bad_id(id, e);
	int r = s->be->remove(s->state, id, e);
	if (r < 0 && e->cls != QERR_NOTFOUND)
		log_msg(LOG_ERR, "store: %s: remove %s failed: %s", s->be->name, id, e->msg);
	return r;
}

int store_set_status(struct store *s, const char *id, enum entry_status st, struct qerr *e)
{
	if (!store_id_valid(id))
		return bad_id(id, e);
	if ((unsigned)st >= ENTRY_STATUS_COUNT)
		return qerr_input(e, 400, "unknown status %d", (int)st);
	int r = s->be->set_status(s->state, id, st, clock_now(), e);
	if (r < 0 && e->cls != QERR_NOTFOUND)
		log_msg(LOG_ERR, "store: %s: status of %s not changed: %s", s->be->name, id,
			e->msg);
	return r;
}

int store_expire(struct store *s, const struct expire_opts *o, struct expire_result *r,
		 struct qerr *e)
{
	memset(r, 0, sizeof *r);
	if (o->max_per_rcpt < 0)
		return qerr_input(e, 400, "max_per_rcpt must not be negative");
	int64_t t0 = clock_ms();
	int rc = s->be->expire(s->state, o, r, e);
	if (rc < 0)
		log_msg(LOG_ERR, "store: %s: expire failed after %lld ms: %s", s->be->name,
			(long long)(clock_ms() - t0), e->msg);
	return rc;
}

int store_stats(struct store *s, struct store_stats *st, struct qerr *e)
{
	memset(st, 0, sizeof *st);
	return s->be->stats(s->state, st, e);
}

int store_health(struct store *s, struct qerr *e)
{
	if (s->be->health == NULL)
		return 0; /* a backend that cannot fail to take writes */
	return s->be->health(s->state, e);
}

/* Checks what every announced-mark call needs before a backend sees it. */
static int announce_args(struct store *s, const char *rcpt, char *const *ids, size_t n,
			 struct qerr *e)
{
	if (s->be->get_announced == NULL || s->be->set_announced == NULL)
		return qerr_perm(e, "the %s backend keeps no announced marks", s->be->name);
	if (rcpt == NULL || *rcpt == '\0')
		return qerr_input(e, 400, "no recipient");
	for (size_t i = 0; i < n; i++)
		if (!store_id_valid(ids[i]))
			return bad_id(ids[i], e);
	return 0;
}

int store_get_announced(struct store *s, const char *rcpt, char *const *ids, size_t n,
			int64_t *when, struct qerr *e)
{
	for (size_t i = 0; i < n; i++)
		when[i] = 0;
	if (announce_args(s, rcpt, ids, n, e) < 0)
		return -1;
	if (n == 0)
		return 0;
	return s->be->get_announced(s->state, rcpt, ids, n, when, e);
}

int store_set_announced(struct store *s, const char *rcpt, char *const *ids, size_t n,
			int64_t when, struct qerr *e)
{
	if (announce_args(s, rcpt, ids, n, e) < 0)
		return -1;
	if (n == 0)
		return 0;
	int r = s->be->set_announced(s->state, rcpt, ids, n, when, e);
	if (r < 0)
		log_msg(LOG_ERR, "store: %s: announced marks of %zu entries of %s not %s: %s",
			s->be->name, n, rcpt, when ? "set" : "cleared", e->msg);
	return r;
}
