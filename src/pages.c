/*
 * pages.c - the users' pages: the request (parameters, query, form
 * body), the route, the check of the signed link, the overview, the
 * confirmation step and the two actions.  The entry page itself is in
 * pages_entry.c, the frame and the security headers in pages_html.c.
 *
 * Routes (the last segment of the path, so the pages may live under any
 * prefix of pages_url):
 *   GET  list?r=RCPT&t=TOKEN[&p=N]        the overview, newest first, paged
 *   GET  entry?id=ID&t=TOKEN[&r=..&l=..]  an entry (r, l: overview to go back to)
 *   GET  confirm?id=ID&t=TOKEN&a=release|delete
 *                                         asks; its form carries an action token
 *   POST release, delete (id, c, t)       does it, once
 * A GET never changes anything: a link scanner that fetches every URL of
 * a digest releases nothing.  The action token (purpose release or
 * delete, for that entry, valid an hour) exists only in the confirmation
 * form, so another site cannot make a user's browser post one (CSRF).
 * A tampered or foreign token is answered 403, an expired one 410 with a
 * page that says what to do.
 */
#include "pages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "digest.h"
#include "digest_template.h"
#include "log.h"
#include "metrics.h"
#include "pages_html.h"
#include "release.h"

#define MAX_PARAMS 16
#define MAX_VALUE 1024
#define MAX_FORM 4096
#define PAGE_ROWS 25
#define MAX_PAGE 4000
#define ACTION_LIFETIME 3600

struct param {
	char *name;
	char *value;
};

struct request {
	const char *method;
	char route[16];
	struct param p[MAX_PARAMS];
	size_t np;
};

static struct token_keys keys;
static bool keys_loaded;

static const char *env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);
	for (char *const *e = envp; e && *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..n) ('+' is a space); NULL if malformed, too long
 * or holding a control character. */
static char *url_decode(const char *s, size_t n)
{
	if (n > 3 * MAX_VALUE)
		return NULL;
	char *out = xmalloc(n + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0) {
				free(out);
				return NULL;
			}
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if ((unsigned char)c < 0x20 || c == 0x7f) {
			free(out);
			return NULL;
		}
		out[k++] = c;
	}
	out[k] = '\0';
	if (k > MAX_VALUE) {
		free(out);
		return NULL;
	}
	return out;
}

/* Adds the pairs of an application/x-www-form-urlencoded string. */
static int parse_pairs(struct request *rq, const char *s, size_t len)
{
	const char *end = s + len;
	while (s < end) {
		const char *amp = memchr(s, '&', (size_t)(end - s));
		const char *stop = amp ? amp : end;
		const char *eq = memchr(s, '=', (size_t)(stop - s));
		if (stop > s) {
			if (rq->np == MAX_PARAMS || eq == NULL)
				return -1;
			char *name = url_decode(s, (size_t)(eq - s));
			char *value = url_decode(eq + 1, (size_t)(stop - eq - 1));
			if (name == NULL || value == NULL) {
				free(name);
				free(value);
				return -1;
			}
			rq->p[rq->np].name = name;
			rq->p[rq->np++].value = value;
		}
		s = stop + 1;
	}
	return 0;
}

/* The value of a parameter; a name given twice counts as absent, so
 * that no two parts of the code can read different values. */
static const char *param(const struct request *rq, const char *name)
{
	const char *v = NULL;
	for (size_t i = 0; i < rq->np; i++)
		if (strcmp(rq->p[i].name, name) == 0) {
			if (v)
				return NULL;
			v = rq->p[i].value;
		}
	return v;
}

static void request_free(struct request *rq)
{
	for (size_t i = 0; i < rq->np; i++) {
		free(rq->p[i].name);
		free(rq->p[i].value);
	}
	rq->np = 0;
}

/* The route: the path's last segment, from DOCUMENT_URI (already
 * without the query) or REQUEST_URI. */
static void route_of(char *const *envp, char out[16])
{
	const char *uri = env_get(envp, "DOCUMENT_URI");
	if (uri == NULL)
		uri = env_get(envp, "REQUEST_URI");
	out[0] = '\0';
	if (uri == NULL)
		return;
	size_t n = strcspn(uri, "?");
	const char *seg = uri;
	for (size_t i = 0; i < n; i++)
		if (uri[i] == '/')
			seg = uri + i + 1;
	size_t len = (size_t)(uri + n - seg);
	if (len < 16) {
		memcpy(out, seg, len);
		out[len] = '\0';
	}
}

/* A token checked, and the page for a bad or expired one written. */
static int check_token(struct buf *out, enum token_purpose p, const char *subject,
		       const char *t, int64_t now, int64_t *expires)
{
	if (subject == NULL || t == NULL) {
		page_message(out, 400, "Incomplete link",
			     "This link lacks a part. Open it again from the mail you received, "
			     "whole: some mail programs cut long links.");
		return 400;
	}
	switch (token_check(&keys, p, subject, t, now, expires)) {
	case TOKEN_OK:
		return 0;
	case TOKEN_EXPIRED:
		page_message(out, 410, "This link has expired",
			     "For your safety the links in a digest work for a limited time. "
			     "The next digest about held mail brings fresh links; if you are "
			     "waiting for a message now, ask your mail administrator to release it.");
		return 410;
	case TOKEN_BAD:
		break;
	}
	page_message(out, 403, "This link is not valid",
		     "The link was changed or does not belong to this page. Open it again from "
		     "the mail you received.");
	return 403;
}

/* The overview: a recipient's entries, newest first, PAGE_ROWS a page. */
struct list_rows {
	struct qentry *v;
	size_t n, cap, skip, seen;
};

static int list_cb(const struct qentry *q, void *arg)
{
	struct list_rows *l = arg;
	if (l->seen++ < l->skip)
		return 0;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 32;
		l->v = xrealloc(l->v, l->cap * sizeof *l->v);
	}
	/* a deep copy through the JSON form keeps this simple and bounded */
	char *json = qentry_to_json(q, false);
	if (qentry_from_json(json, strlen(json), &l->v[l->n]) == 0)
		l->n++;
	free(json);
	return 0;
}

static void list_link(struct buf *out, const char *r, const char *t, long page)
{
	buf_appends(out, "list?r=");
	url_encode(out, r);
	buf_printf(out, "&t=%s&p=%ld", t, page);
}

static int page_list(struct buf *out, struct store *s, const struct config *c,
		     const struct request *rq, int64_t now)
{
	(void)c;
	const char *r = param(rq, "r"), *t = param(rq, "t"), *ps = param(rq, "p");
	int64_t exp;
	int st = check_token(out, TOKEN_LIST, r, t, now, &exp);
	if (st)
		return st;
	long page = 0;
	if (ps && parse_long(ps, 0, MAX_PAGE, &page, NULL) < 0) {
		page_message(out, 400, "No such page", "The page number is not valid.");
		return 400;
	}
	struct store_filter f;
	memset(&f, 0, sizeof f);
	f.rcpt = r;
	f.status = -1;
	f.limit = (size_t)(page + 1) * PAGE_ROWS + 1;
	struct list_rows l = { NULL, 0, 0, (size_t)page * PAGE_ROWS, 0 };
	struct qerr e;
	qerr_clear(&e);
	if (store_list(s, &f, list_cb, &l, &e) < 0) {
		for (size_t i = 0; i < l.n; i++)
			qentry_free(&l.v[i]);
		free(l.v);
		page_message(out, 503, "Please try again",
			     "The quarantine cannot be read right now. Try again in a few minutes.");
		return 503;
	}
	bool older = l.n > PAGE_ROWS;
	size_t shown = older ? PAGE_ROWS : l.n;
	page_begin(out, 200, "Held mail");
	buf_appends(out, "<h1>Held mail for ");
	html_escape(out, r);
	buf_appends(out, "</h1>\n");
	if (shown == 0 && page == 0)
		buf_appends(out, "<p>Nothing is held for you.</p>\n");
	else
		buf_appends(out, "<p class=\"meta\">Newest first. Open a message to read it as "
				 "plain text, release it to your inbox or delete it.</p>\n"
				 "<ol class=\"entries\">\n");
	for (size_t i = 0; i < shown; i++) {
		const struct qentry *q = &l.v[i];
		struct digest_row row;
		digest_row_from_entry(&row, q);
		char et[TOKEN_MAX];
		token_make(&keys, TOKEN_ENTRY, q->id, exp, et);
		buf_printf(out, "<li><a href=\"entry?id=%s&amp;t=%s&amp;r=", q->id, et);
		struct buf enc = { 0 };
		url_encode(&enc, r);
		html_escape(out, enc.data);
		buf_free(&enc);
		buf_printf(out, "&amp;l=%s\">", t);
		html_escape(out, row.subject);
		buf_appends(out, "</a>");
		if (q->status != ENTRY_QUARANTINED)
			buf_printf(out, " <span class=\"status\">%s</span>",
				   entry_status_name(q->status));
		buf_appends(out, "<div class=\"meta\">");
		html_escape(out, row.from);
		buf_appends(out, " &middot; ");
		page_time(out, row.received);
		if (row.has_score)
			buf_printf(out, " &middot; score %.1f", row.score);
		buf_appends(out, "</div></li>\n");
		digest_row_free(&row);
	}
	if (shown || page)
		buf_appends(out, "</ol>\n");
	if (page > 0 || older) {
		buf_appends(out, "<nav aria-label=\"Pages\">");
		if (page > 0) {
			buf_appends(out, "<a rel=\"prev\" href=\"");
			struct buf link = { 0 };
			list_link(&link, r, t, page - 1);
			html_escape(out, link.data);
			buf_free(&link);
			buf_appends(out, "\">&larr; Newer</a> ");
		}
		if (older) {
			buf_appends(out, "<a rel=\"next\" href=\"");
			struct buf link = { 0 };
			list_link(&link, r, t, page + 1);
			html_escape(out, link.data);
			buf_free(&link);
			buf_appends(out, "\">Older &rarr;</a>");
		}
		buf_appends(out, "</nav>\n");
	}
	buf_appends(out, "<p class=\"meta\">This link works until ");
	page_time(out, exp);
	buf_appends(out, ".</p>\n");
	page_end(out);
	for (size_t i = 0; i < l.n; i++)
		qentry_free(&l.v[i]);
	free(l.v);
	return 200;
}

/* The entry behind a checked token; writes the page when there is none. */
static int load_entry(struct buf *out, struct store *s, const char *id, struct qentry *q)
{
	struct qerr e;
	qerr_clear(&e);
	memset(q, 0, sizeof *q);
	if (store_get(s, id, q, &e) == 0)
		return 0;
	if (e.cls == QERR_NOTFOUND) {
		page_message(out, 404, "No longer held",
			     "This message is no longer in the quarantine: it was removed after "
			     "its time, or by your administrator.");
		return 404;
	}
	page_message(out, 503, "Please try again",
		     "The quarantine cannot be read right now. Try again in a few minutes.");
	return 503;
}

/* Says what became of an entry that is no longer quarantined. */
static int page_done_already(struct buf *out, const struct qentry *q, int status)
{
	bool released = q->status == ENTRY_RELEASED;
	page_begin(out, status, released ? "Already released" : "Deleted");
	buf_appends(out, released ? "<h1>Already released</h1>\n<p class=\"notice\">This message "
				    "was released to "
				  : "<h1>Deleted</h1>\n<p class=\"warn\">This message was deleted from "
				    "the quarantine of ");
	html_escape(out, q->rcpt);
	buf_appends(out, " on ");
	page_time(out, q->status_changed);
	buf_appends(out, released ? ". It was not sent again; look for it in your inbox.</p>\n"
				  : ". It can no longer be released.</p>\n");
	page_end(out);
	return status;
}

static bool action_of(const char *a, enum token_purpose *p)
{
	if (a && strcmp(a, "release") == 0)
		*p = TOKEN_RELEASE;
	else if (a && strcmp(a, "delete") == 0)
		*p = TOKEN_DELETE;
	else
		return false;
	return true;
}

/* GET confirm: asks, with the action token in a POST form. */
static int page_confirm(struct buf *out, struct store *s, const struct request *rq,
			int64_t now)
{
	const char *id = param(rq, "id"), *t = param(rq, "t"), *a = param(rq, "a");
	enum token_purpose purpose;
	int64_t exp;
	int st = check_token(out, TOKEN_ENTRY, id, t, now, &exp);
	if (st)
		return st;
	if (!action_of(a, &purpose)) {
		page_message(out, 400, "Unknown action", "Only release and delete can be asked for.");
		return 400;
	}
	struct qentry q;
	if ((st = load_entry(out, s, id, &q)) != 0)
		return st;
	if (q.status == ENTRY_DELETED || (purpose == TOKEN_RELEASE && q.status == ENTRY_RELEASED)) {
		st = page_done_already(out, &q, 200);
		qentry_free(&q);
		return st;
	}
	bool release = purpose == TOKEN_RELEASE;
	char ct[TOKEN_MAX];
	token_make(&keys, purpose, id, now + ACTION_LIFETIME, ct);
	struct digest_row row;
	digest_row_from_entry(&row, &q);
	page_begin(out, 200, release ? "Release this message?" : "Delete this message?");
	buf_appends(out, release ? "<h1>Release this message?</h1>\n" : "<h1>Delete this message?</h1>\n");
	buf_appends(out, "<dl><dt>From</dt><dd>");
	html_escape(out, row.from);
	buf_appends(out, "</dd><dt>Subject</dt><dd>");
	html_escape(out, row.subject);
	buf_appends(out, "</dd><dt>Received</dt><dd>");
	page_time(out, row.received);
	buf_appends(out, "</dd></dl>\n<p>");
	if (release) {
		buf_appends(out, "It will be delivered to <strong>");
		html_escape(out, q.rcpt);
		buf_appends(out, "</strong> as it was sent. Release it only if you trust the sender: "
				 "it was held because it looks like spam or carries something harmful.");
	} else {
		buf_appends(out, "It will be removed from the quarantine and can no longer be released.");
	}
	buf_printf(out, "</p>\n<form method=\"post\" action=\"%s\">"
		   "<input type=\"hidden\" name=\"id\" value=\"%s\">"
		   "<input type=\"hidden\" name=\"t\" value=\"%s\">"
		   "<input type=\"hidden\" name=\"c\" value=\"%s\">"
		   "<button type=\"submit\" class=\"%s\">%s</button></form>\n",
		   release ? "release" : "delete", id, t, ct, release ? "release" : "delete",
		   release ? "Yes, release it to my inbox" : "Yes, delete it");
	buf_printf(out, "<p><a href=\"entry?id=%s&amp;t=%s\">No, back to the message</a></p>\n", id, t);
	page_end(out);
	digest_row_free(&row);
	qentry_free(&q);
	return 200;
}

/* Reads an urlencoded form body of at most MAX_FORM bytes. */
static int read_form(struct buf *out, char *const *envp, pages_read_fn rd, void *arg,
		     struct request *rq)
{
	const char *ct = env_get(envp, "CONTENT_TYPE");
	const char *cl = env_get(envp, "CONTENT_LENGTH");
	long len;
	if (ct == NULL || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
		page_message(out, 415, "Not a form", "This page takes only its own form.");
		return 415;
	}
	if (cl == NULL || parse_long(cl, 0, MAX_FORM, &len, NULL) < 0) {
		page_message(out, 413, "Form too large", "This page takes only its own form.");
		return 413;
	}
	char body[MAX_FORM + 1];
	size_t got = 0;
	while (got < (size_t)len) {
		ssize_t n = rd(arg, body + got, (size_t)len - got);
		if (n <= 0) {
			page_message(out, 400, "Incomplete form", "The form arrived incomplete.");
			return 400;
		}
		got += (size_t)n;
	}
	if (parse_pairs(rq, body, got) < 0) {
		page_message(out, 400, "Bad form", "The form could not be read.");
		return 400;
	}
	return 0;
}

/* POST release or delete. */
static int page_action(struct buf *out, struct store *s, const struct config *c,
		       const struct request *rq, enum token_purpose purpose, int64_t now,
		       char *result, size_t rlen)
{
	const char *id = param(rq, "id"), *ct = param(rq, "c"), *t = param(rq, "t");
	snprintf(result, rlen, "-");
	if (id == NULL || ct == NULL) {
		page_message(out, 400, "Incomplete form", "The form arrived incomplete.");
		return 400;
	}
	switch (token_check(&keys, purpose, id, ct, now, NULL)) {
	case TOKEN_OK:
		break;
	case TOKEN_EXPIRED:
		page_message(out, 410, "Please confirm again",
			     "The confirmation was left open too long. Go back to the message and "
			     "confirm again.");
		return 410;
	default:
		page_message(out, 403, "Not allowed", "This form does not belong to this page.");
		return 403;
	}
	/* t, when valid, lets the result page link back to the message */
	bool back = t && token_check(&keys, TOKEN_ENTRY, id, t, now, NULL) == TOKEN_OK;
	struct qentry q;
	int st = load_entry(out, s, id, &q);
	if (st)
		return st;
	if (q.status == ENTRY_DELETED ||
	    (purpose == TOKEN_RELEASE && q.status == ENTRY_RELEASED)) {
		snprintf(result, rlen, "already %s", entry_status_name(q.status));
		st = page_done_already(out, &q, 200);
		qentry_free(&q);
		return st;
	}
	if (purpose == TOKEN_DELETE) {
		struct qerr e;
		qerr_clear(&e);
		if (store_set_status(s, id, ENTRY_DELETED, &e) < 0) {
			metrics_cli_count("delete", "failed");
			snprintf(result, rlen, "not deleted: %s", e.msg);
			page_message(out, 503, "Please try again",
				     "The message could not be deleted right now. Try again in a few "
				     "minutes.");
			qentry_free(&q);
			return 503;
		}
		metrics_cli_count("delete", "ok");
		snprintf(result, rlen, "deleted");
		page_message(out, 200, "Deleted", "The message was removed from the quarantine.");
		qentry_free(&q);
		return 200;
	}
	char by[600];
	snprintf(by, sizeof by, "web user %.500s", q.rcpt ? q.rcpt : "?");
	struct release_req req;
	memset(&req, 0, sizeof req);
	req.id = id;
	req.by = by;
	struct release_result res;
	memset(&res, 0, sizeof res);
	enum release_status rs = release_entry(s, c, &req, &res);
	snprintf(result, rlen, "release %s: %.200s", release_status_name(rs), res.reply);
	if (rs == RELEASE_OK || rs == RELEASE_NOT_MARKED) {
		page_begin(out, 200, "Released");
		buf_appends(out, "<h1>Released</h1>\n<p class=\"notice\">The message was handed to "
				 "the mail system for ");
		html_escape(out, q.rcpt);
		buf_appends(out, ". It should be in your inbox within a few minutes.</p>\n");
		if (back)
			buf_printf(out, "<p><a href=\"entry?id=%s&amp;t=%s\">Back to the message</a></p>\n",
				   id, t);
		page_end(out);
		st = 200;
	} else if (rs == RELEASE_STATE) {
		/* released meanwhile, from another window or by the operator */
		qentry_free(&q);
		if ((st = load_entry(out, s, id, &q)) != 0)
			return st;
		st = page_done_already(out, &q, 200);
	} else if (rs == RELEASE_NOT_FOUND) {
		page_message(out, 404, "No longer held",
			     "This message is no longer in the quarantine.");
		st = 404;
	} else {
		page_message(out, 503, "Not released, please try again",
			     "The mail system did not take the message just now; it is still held. "
			     "Try again in a few minutes, or ask your mail administrator.");
		st = 503;
	}
	qentry_free(&q);
	return st;
}

int pages_request(struct store *s, const struct config *c, char *const *envp,
		  pages_read_fn rd, void *rd_arg, struct buf *out)
{
	int64_t t0 = clock_ms();
	int64_t now = clock_now();
	struct request rq;
	memset(&rq, 0, sizeof rq);
	rq.method = env_get(envp, "REQUEST_METHOD");
	route_of(envp, rq.route);
	char result[300] = "-";
	int st;
	bool head = rq.method && strcmp(rq.method, "HEAD") == 0;
	bool get = head || (rq.method && strcmp(rq.method, "GET") == 0);
	bool post = rq.method && strcmp(rq.method, "POST") == 0;
	struct qerr e;
	qerr_clear(&e);
	const char *qs = env_get(envp, "QUERY_STRING");

	if (!keys_loaded) {
		if (token_keys_load(&keys, c->link_key_file, c->link_key_file_previous, &e) == 0)
			keys_loaded = true;
		else
			log_err("pages: %s", e.msg);
	}
	if (!keys_loaded) {
		page_message(out, 503, "Not available",
			     "These pages are not set up yet. Ask your mail administrator.");
		st = 503;
	} else if (qs && parse_pairs(&rq, qs, strlen(qs)) < 0) {
		page_message(out, 400, "Bad link", "This link is malformed.");
		st = 400;
	} else if (strcmp(rq.route, "list") == 0 || strcmp(rq.route, "entry") == 0 ||
		   strcmp(rq.route, "confirm") == 0) {
		if (!get) {
			page_message(out, 405, "Not allowed", "This page can only be read.");
			st = 405;
		} else if (rq.route[0] == 'l') {
			st = page_list(out, s, c, &rq, now);
		} else if (rq.route[0] == 'c') {
			st = page_confirm(out, s, &rq, now);
		} else {
			const char *id = param(&rq, "id"), *t = param(&rq, "t");
			int64_t exp;
			st = check_token(out, TOKEN_ENTRY, id, t, now, &exp);
			if (st == 0) {
				const char *br = param(&rq, "r"), *bt = param(&rq, "l");
				if (!(br && bt && token_check(&keys, TOKEN_LIST, br, bt, now, NULL) ==
							  TOKEN_OK))
					br = bt = NULL;
				struct page_entry_req er = { s, c, &keys, now, id, t, exp, br, bt };
				st = page_entry(out, &er);
			}
		}
	} else if (strcmp(rq.route, "release") == 0 || strcmp(rq.route, "delete") == 0) {
		if (!post) {
			page_message(out, 405, "Not allowed",
				     "Open the message from your digest and confirm there.");
			st = 405;
		} else if ((st = read_form(out, envp, rd, rd_arg, &rq)) == 0) {
			st = page_action(out, s, c, &rq,
					 rq.route[0] == 'r' ? TOKEN_RELEASE : TOKEN_DELETE, now,
					 result, sizeof result);
		}
	} else {
		page_message(out, 404, "Not found", "There is no such page.");
		st = 404;
	}
	if (head)
		page_strip_body(out);
	const char *id = param(&rq, "id");
	log_msg(st >= 500 ? LOG_WARNING : LOG_INFO,
		"page: %s, method: %.8s, id: %.24s, status: %d, result: %s, ms: %lld",
		rq.route[0] ? rq.route : "-", rq.method ? rq.method : "-",
		id && store_id_valid(id) ? id : "-", st, result, (long long)(clock_ms() - t0));
	request_free(&rq);
	return st;
}
