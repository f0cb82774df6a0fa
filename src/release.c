/*
 * release.c - the one release path (release.h): reads an entry, checks
 * its bytes against the stored SHA-256, adds the trace header, hands it to
 * the configured transport with the configured envelope sender, marks it
 * released only once the MTA took it, logs one line saying what happened,
 * and then feeds Rspamd back.  Learning comes after the release and never
 * changes its outcome: a delivered message stays delivered.
 */
#include "release.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "learn.h"
#include "log.h"
#include "metrics.h"
#include "release_transport.h"
#include "store.h"

#define RELEASE_HEADER "X-Quarantine-Released"

void release_one_line(char *out, size_t size, const char *text, size_t n)
{
	size_t j = 0;
	bool gap = false;
	if (size == 0)
		return;
	for (size_t i = 0; i < n && text[i] && j + 1 < size; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (ch < 0x20 || ch == 0x7f) {
			gap = j > 0;
			continue;
		}
		if (gap && j + 3 < size) {
			out[j++] = ';';
			out[j++] = ' ';
		}
		gap = false;
		out[j++] = (char)ch;
	}
	out[j] = '\0';
}

/* A recipient or sender we are willing to hand on: bounded, no control
 * characters, blanks or commas (none of which a routable address has
 * outside quotes, and which sendmail would read as a second address). */
static bool addr_ok(const char *a)
{
	size_t n = strlen(a);
	if (n == 0 || n > 512)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)a[i];
		if (ch <= 0x20 || ch == 0x7f || ch == ',' || ch == '<' || ch == '>')
			return false;
	}
	return true;
}

/* Who releases, as it may appear in a header: printable ASCII, bounded. */
static void clean_by(char *out, size_t size, const char *by)
{
	size_t j = 0;
	for (const char *p = by ? by : ""; *p && j + 1 < size && j < 120; p++)
		out[j++] = ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f) ? *p : '?';
	out[j] = '\0';
	if (j == 0)
		snprintf(out, size, "unknown");
}

/* The envelope sender of a release: release_sender's choice; "" is <>. */
static const char *envelope_sender(const struct config *cfg, const struct qmeta *m)
{
	const char *conf = cfg->release_sender ? cfg->release_sender : "original";
	if (strcmp(conf, "<>") == 0)
		return "";
	if (strcmp(conf, "original") != 0)
		return conf;
	if (m->env_from == NULL || strcmp(m->env_from, "<>") == 0 ||
	    strcmp(m->env_from, "unknown") == 0 || !addr_ok(m->env_from))
		return "";
	return m->env_from;
}

/* Hands one message to the configured transport. */
static enum release_status transport(const struct config *cfg, const char *sender,
				     const char *rcpt, const char *header, const void *msg,
				     size_t len, const struct release_req *req,
				     struct release_result *r)
{
	if (cfg->release_transport && strcmp(cfg->release_transport, "sendmail") == 0)
		return transport_sendmail(cfg, sender, rcpt, header, msg, len,
					  req ? req->child_setup : NULL,
					  req ? req->child_arg : NULL, r);
	return transport_smtp(cfg, sender, rcpt, header, msg, len, r);
}

static void result_init(struct release_result *r)
{
	memset(r, 0, sizeof *r);
	r->learn = LEARN_OFF;
	r->fuzzy = LEARN_OFF;
}

/* Collects the stored bytes: a release is all or nothing, so the message
 * is read and checked before any transport sees it. */
static int collect(const void *p, size_t n, void *arg)
{
	buf_append(arg, p, n);
	return 0;
}

/* Reads entry id's message into msg and checks it against its size and
 * SHA-256; fills r on failure. */
static enum release_status read_checked(struct store *s, const struct qentry *ent,
					struct buf *msg, struct release_result *r)
{
	struct qerr e;
	qerr_clear(&e);
	if (store_read_content(s, ent->id, collect, msg, &e) < 0) {
		snprintf(r->reply, sizeof r->reply, "cannot read the message of %s: %s", ent->id,
			 e.msg);
		return r->status = e.cls == QERR_NOTFOUND ? RELEASE_NOT_FOUND : RELEASE_STORE;
	}
	char sha[65];
	sha256_hex(msg->data ? msg->data : "", msg->len, sha);
	if ((ent->meta.size && msg->len != ent->meta.size) ||
	    (ent->meta.sha256[0] && strcmp(sha, ent->meta.sha256) != 0)) {
		snprintf(r->reply, sizeof r->reply,
			 "the stored message of %s does not match its SHA-256; not sent", ent->id);
		return r->status = RELEASE_CORRUPT;
	}
	return r->status = RELEASE_OK;
}

/* Looks the entry up; fills r on failure. */
static enum release_status get_entry(struct store *s, const char *id, struct qentry *ent,
				     struct release_result *r)
{
	memset(ent, 0, sizeof *ent);
	if (id == NULL || !store_id_valid(id)) {
		snprintf(r->reply, sizeof r->reply, "'%.60s' is not an entry ID", id ? id : "");
		return r->status = RELEASE_BAD_REQUEST;
	}
	struct qerr e;
	qerr_clear(&e);
	if (store_get(s, id, ent, &e) == 0)
		return r->status = RELEASE_OK;
	if (e.cls == QERR_NOTFOUND) {
		snprintf(r->reply, sizeof r->reply, "no entry %s", id);
		return r->status = RELEASE_NOT_FOUND;
	}
	snprintf(r->reply, sizeof r->reply, "%s: %s", id, e.msg);
	return r->status = e.cls == QERR_INPUT ? RELEASE_BAD_REQUEST : RELEASE_STORE;
}

const char *release_outcome(enum release_status st)
{
	switch (st) {
	case RELEASE_OK:
	case RELEASE_NOT_MARKED:
		return "ok"; /* delivered */
	case RELEASE_NOT_FOUND:
		return "not_found";
	case RELEASE_STATE:
	case RELEASE_BAD_REQUEST:
		return "refused";
	case RELEASE_REJECTED:
		return "rejected";
	case RELEASE_TEMPFAIL:
		return "tempfail";
	default:
		return "failed";
	}
}

/* The outcome label of an answer of Rspamd's controller, for /metrics. */
static const char *learn_outcome(enum learn_status st)
{
	switch (st) {
	case LEARN_LEARNED:
		return "ok";
	case LEARN_ALREADY:
		return "already";
	case LEARN_DECLINED:
		return "not_learned";
	default:
		return "failed";
	}
}

/* Counts what a release or a learning request came to, whoever asked
 * (the operator's tool, a user's page), in the counters file /metrics
 * reads. */
static void count_outcome(const char *action, const struct release_result *r)
{
	if (strcmp(action, "learn_spam") == 0) {
		if (r->status == RELEASE_OK && r->learn != LEARN_OFF)
			metrics_cli_count(action, learn_outcome(r->learn));
		else if (r->status != RELEASE_OK)
			metrics_cli_count(action, release_outcome(r->status));
		return;
	}
	metrics_cli_count(action, release_outcome(r->status));
	if (r->learn != LEARN_OFF)
		metrics_cli_count("learn_ham", learn_outcome(r->learn));
}

static enum release_status release_one(struct store *s, const struct config *cfg,
				       const struct release_req *req, struct release_result *r);

enum release_status release_entry(struct store *s, const struct config *cfg,
				  const struct release_req *req, struct release_result *r)
{
	release_one(s, cfg, req, r);
	count_outcome("release", r);
	return r->status;
}

/* release_entry without the counting. */
static enum release_status release_one(struct store *s, const struct config *cfg,
				       const struct release_req *req, struct release_result *r)
{
	result_init(r);
	char by[128];
	clean_by(by, sizeof by, req->by);
	if (req->to && !addr_ok(req->to)) {
		snprintf(r->reply, sizeof r->reply, "'%.60s' is not an address", req->to);
		return r->status = RELEASE_BAD_REQUEST;
	}
	struct qentry ent;
	if (get_entry(s, req->id, &ent, r) != RELEASE_OK)
		return r->status;
	struct buf msg = { 0 };
	const char *rcpt = req->to ? req->to : ent.rcpt;
	snprintf(r->rcpt, sizeof r->rcpt, "%s", rcpt ? rcpt : "");
	if (ent.status == ENTRY_DELETED) {
		snprintf(r->reply, sizeof r->reply, "entry %s is deleted", ent.id);
		r->status = RELEASE_STATE;
		goto out;
	}
	if (ent.status == ENTRY_RELEASED && !req->force) {
		char t[32];
		format_rfc3339(ent.status_changed, t);
		snprintf(r->reply, sizeof r->reply, "entry %s already released (%s)", ent.id, t);
		r->status = RELEASE_STATE;
		goto out;
	}
	if (rcpt == NULL || !addr_ok(rcpt)) {
		snprintf(r->reply, sizeof r->reply, "entry %s has no usable recipient '%.60s'",
			 ent.id, rcpt ? rcpt : "");
		r->status = RELEASE_BAD_REQUEST;
		goto out;
	}
	if (read_checked(s, &ent, &msg, r) != RELEASE_OK)
		goto out;

	/* The header ends like the message's lines do (SMTP makes both CRLF). */
	const char *nl = msg.len ? memchr(msg.data, '\n', msg.len) : NULL;
	const char *eol = (nl && nl > msg.data && nl[-1] == '\r') ? "\r\n" : "\n";
	char now[32];
	format_rfc3339(clock_now(), now);
	char *header = xasprintf(RELEASE_HEADER ": %s by %s (entry %s)%s", now, by, ent.id, eol);
	const char *sender = envelope_sender(cfg, &ent.meta);
	transport(cfg, sender, rcpt, header, msg.data ? msg.data : "", msg.len, req, r);
	free(header);
	if (r->status != RELEASE_OK) {
		log_warn("release failed: %s, rcpt: %s, by: %s, transport: %s, result: %s, "
			 "reply: %s", ent.id, rcpt, by, cfg->release_transport,
			 release_status_name(r->status), r->reply);
		goto out;
	}
	struct qerr e;
	qerr_clear(&e);
	if (store_set_status(s, ent.id, ENTRY_RELEASED, &e) < 0) {
		char said[sizeof r->reply];
		snprintf(said, sizeof said, "%s", r->reply);
		snprintf(r->reply, sizeof r->reply,
			 "delivered (%.200s) but could not be marked released: %.200s", said,
			 e.msg);
		r->status = RELEASE_NOT_MARKED;
	}
	/* Feedback only after the MTA took it, and whatever it answers, the
	 * release stands. */
	if (!req->no_learn) {
		r->learn = learn_post(cfg, LEARN_HAM, msg.data ? msg.data : "", msg.len,
				      r->learn_text, sizeof r->learn_text);
		r->fuzzy = learn_post(cfg, LEARN_FUZZY_DEL, msg.data ? msg.data : "", msg.len,
				      r->fuzzy_text, sizeof r->fuzzy_text);
	}
	log_msg(r->status == RELEASE_OK ? LOG_INFO : LOG_ERR,
		"released: %s, rcpt: %s, from: %s, by: %s, transport: %s, reply: %s, "
		"learn: %s%s%s%s, fuzzy: %s%s%s%s", ent.id, rcpt, sender[0] ? sender : "<>", by,
		cfg->release_transport, r->reply, learn_status_name(r->learn),
		r->learn_text[0] ? " (" : "", r->learn_text, r->learn_text[0] ? ")" : "",
		learn_status_name(r->fuzzy), r->fuzzy_text[0] ? " (" : "", r->fuzzy_text,
		r->fuzzy_text[0] ? ")" : "");
out:
	buf_free(&msg);
	qentry_free(&ent);
	return r->status;
}

enum release_status release_send(const struct config *cfg, const char *sender,
				 const char *rcpt, const void *msg, size_t len,
				 const struct release_req *req, struct release_result *r)
{
	result_init(r);
	snprintf(r->rcpt, sizeof r->rcpt, "%s", rcpt ? rcpt : "");
	if (rcpt == NULL || !addr_ok(rcpt)) {
		snprintf(r->reply, sizeof r->reply, "'%.60s' is not an address", rcpt ? rcpt : "");
		return r->status = RELEASE_BAD_REQUEST;
	}
	if (sender == NULL || (sender[0] && !addr_ok(sender))) {
		snprintf(r->reply, sizeof r->reply, "'%.60s' is not a sender address",
			 sender ? sender : "");
		return r->status = RELEASE_BAD_REQUEST;
	}
	transport(cfg, sender, rcpt, "", msg, len, req, r);
	log_msg(r->status == RELEASE_OK ? LOG_INFO : LOG_WARNING,
		"sent: rcpt: %s, from: %s, transport: %s, result: %s, reply: %s", rcpt,
		sender[0] ? sender : "<>", cfg->release_transport, release_status_name(r->status),
		r->reply);
	return r->status;
}

static enum release_status learn_spam_one(struct store *s, const struct config *cfg,
					  const char *id, const char *by,
					  struct release_result *r);

enum release_status release_learn_spam(struct store *s, const struct config *cfg,
				       const char *id, const char *by,
				       struct release_result *r)
{
	learn_spam_one(s, cfg, id, by, r);
	count_outcome("learn_spam", r);
	return r->status;
}

/* release_learn_spam without the counting. */
static enum release_status learn_spam_one(struct store *s, const struct config *cfg,
					  const char *id, const char *by,
					  struct release_result *r)
{
	result_init(r);
	char who[128];
	clean_by(who, sizeof who, by);
	struct qentry ent;
	if (get_entry(s, id, &ent, r) != RELEASE_OK)
		return r->status;
	snprintf(r->rcpt, sizeof r->rcpt, "%s", ent.rcpt ? ent.rcpt : "");
	struct buf msg = { 0 };
	if (read_checked(s, &ent, &msg, r) == RELEASE_OK) {
		r->learn = learn_post(cfg, LEARN_SPAM, msg.data ? msg.data : "", msg.len,
				      r->learn_text, sizeof r->learn_text);
		r->fuzzy = learn_post(cfg, LEARN_FUZZY_ADD, msg.data ? msg.data : "", msg.len,
				      r->fuzzy_text, sizeof r->fuzzy_text);
		log_msg(learn_ok(r->learn) && learn_ok(r->fuzzy) ? LOG_INFO : LOG_WARNING,
			"learn-spam: %s, rcpt: %s, by: %s, learn: %s%s%s%s, fuzzy: %s%s%s%s",
			ent.id, r->rcpt, who, learn_status_name(r->learn),
			r->learn_text[0] ? " (" : "", r->learn_text, r->learn_text[0] ? ")" : "",
			learn_status_name(r->fuzzy), r->fuzzy_text[0] ? " (" : "", r->fuzzy_text,
			r->fuzzy_text[0] ? ")" : "");
	}
	buf_free(&msg);
	qentry_free(&ent);
	return r->status;
}

bool learn_ok(enum learn_status st)
{
	return st == LEARN_OFF || st == LEARN_LEARNED || st == LEARN_ALREADY;
}

const char *release_status_name(enum release_status st)
{
	switch (st) {
	case RELEASE_OK: return "ok";
	case RELEASE_NOT_FOUND: return "not-found";
	case RELEASE_BAD_REQUEST: return "bad-request";
	case RELEASE_STATE: return "state";
	case RELEASE_CORRUPT: return "corrupt";
	case RELEASE_REJECTED: return "rejected";
	case RELEASE_TEMPFAIL: return "tempfail";
	case RELEASE_STORE: return "store";
	case RELEASE_NOT_MARKED: return "not-marked";
	case RELEASE_CONFIG: return "config";
	}
	return "?";
}

const char *learn_status_name(enum learn_status st)
{
	switch (st) {
	case LEARN_OFF: return "off";
	case LEARN_LEARNED: return "learned";
	case LEARN_ALREADY: return "already-learned";
	case LEARN_DECLINED: return "declined";
	case LEARN_AUTH: return "auth";
	case LEARN_SERVER: return "server";
	case LEARN_UNREACHABLE: return "unreachable";
	}
	return "?";
}
