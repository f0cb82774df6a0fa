/*
 * digest.c - the users' digest mail: what it announces, the signed links
 * it carries, its two templates and the message GMime builds from them.
 * Every value that comes from a quarantined message reaches the HTML part
 * only through the template's escaping (digest_template.c); the text part
 * is plain text, whose reader shows it as text.
 */
#include "digest.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "digest_template.h"

/* A value from a message, bounded in a digest line. */
#define FIELD_MAX 200

static const char builtin_text[] =
	"Hello,\n"
	"\n"
	"{{count}} new message(s) to {{rcpt}} were held back as probable spam.\n"
	"They are kept for you; none of them was delivered.\n"
	"\n"
	"{{#rows}}"
	"{{received}}  score {{score}}  {{action}}\n"
	"  From:    {{from}}\n"
	"  Subject: {{subject}}\n"
	"  Look at it, release or delete it: {{link}}\n"
	"\n"
	"{{/rows}}"
	"{{#more}}"
	"... and {{more}} more, not listed here.\n"
	"\n"
	"{{/more}}"
	"All your held mail: {{list_url}}\n"
	"\n"
	"The links work until {{expires}}.  Each opens a page that shows the\n"
	"message as plain text; nothing is released or deleted until you\n"
	"confirm it there.  If you expected none of these messages, there is\n"
	"nothing to do: they are removed after a while.\n";

static const char builtin_html[] =
	"<!DOCTYPE html>\n"
	"<html lang=\"en\"><head><meta charset=\"utf-8\">"
	"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	"<title>Held mail for {{rcpt}}</title></head>\n"
	"<body style=\"font-family: sans-serif; line-height: 1.4; max-width: 46em; margin: 0 auto; padding: 1em;\">\n"
	"<p>Hello,</p>\n"
	"<p>{{count}} new message(s) to <strong>{{rcpt}}</strong> were held back as probable spam. "
	"They are kept for you; none of them was delivered.</p>\n"
	"<table style=\"border-collapse: collapse; width: 100%;\">\n"
	"<thead><tr><th style=\"text-align: left; padding: .3em;\">Received</th>"
	"<th style=\"text-align: left; padding: .3em;\">From / Subject</th>"
	"<th style=\"text-align: right; padding: .3em;\">Score</th></tr></thead>\n"
	"<tbody>\n"
	"{{#rows}}"
	"<tr style=\"border-top: 1px solid #ccc;\">"
	"<td style=\"padding: .3em; vertical-align: top; white-space: nowrap;\">{{received}}</td>"
	"<td style=\"padding: .3em; vertical-align: top;\">{{from}}<br>"
	"<a href=\"{{link}}\">{{subject}}</a></td>"
	"<td style=\"padding: .3em; vertical-align: top; text-align: right;\">{{score}}<br>"
	"<small>{{action}}</small></td></tr>\n"
	"{{/rows}}"
	"</tbody></table>\n"
	"{{#more}}<p>&hellip; and {{more}} more, not listed here.</p>\n{{/more}}"
	"<p><a href=\"{{list_url}}\">All your held mail</a></p>\n"
	"<p style=\"color: #555;\"><small>The links work until {{expires}}. Each opens a page that "
	"shows the message as plain text; nothing is released or deleted until you confirm it "
	"there. If you expected none of these messages, there is nothing to do: they are removed "
	"after a while.</small></p>\n"
	"</body></html>\n";

static const char *const row_names[] = { "received", "from", "subject", "score", "action",
					  "link", "id" };
#define NROW_NAMES (sizeof row_names / sizeof row_names[0])
enum { V_RCPT, V_COUNT, V_SHOWN, V_MORE, V_LIST_URL, V_EXPIRES, NVARS };
static const char *const var_names[NVARS] = { "rcpt", "count", "shown", "more", "list_url",
					      "expires" };

const char *digest_builtin_template(bool html)
{
	return html ? builtin_html : builtin_text;
}

/* A copy of s cut to at most max bytes on a UTF-8 boundary, with "..."
 * when cut. */
static char *bounded(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n <= max)
		return xstrdup(s);
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	char *out = xmalloc(max + 4);
	memcpy(out, s, max);
	memcpy(out + max, "...", 4);
	return out;
}

void digest_row_from_entry(struct digest_row *r, const struct qentry *q)
{
	const struct qmeta *m = &q->meta;
	memcpy(r->id, q->id, sizeof r->id);
	r->received = m->received_at;
	const char *from = m->hdr_from && *m->hdr_from ? m->hdr_from
			   : m->env_from && *m->env_from ? m->env_from : "(no sender)";
	const char *subject = qmeta_display_subject(m);
	r->from = bounded(from, FIELD_MAX);
	r->subject = bounded(*subject ? subject : "(no subject)", FIELD_MAX);
	r->action = bounded(m->action ? m->action : "", 40);
	r->score = m->score;
	r->has_score = m->has_score;
}

void digest_row_free(struct digest_row *r)
{
	free(r->from);
	free(r->subject);
	free(r->action);
	r->from = r->subject = r->action = NULL;
}

/* Configured actions are written with '_' for Rspamd's spaces. */
static bool action_matches(const char *conf, const char *action)
{
	for (; *conf && *action; conf++, action++) {
		char a = *action == ' ' ? '_' : *action;
		if (a != *conf)
			return false;
	}
	return *conf == '\0' && *action == '\0';
}

bool digest_announces(const struct config *c, const struct qentry *q)
{
	const struct qmeta *m = &q->meta;
	if (c->n_digest_actions) {
		bool found = false;
		for (size_t i = 0; i < c->n_digest_actions && !found; i++)
			found = m->action && action_matches(c->digest_actions[i], m->action);
		if (!found)
			return false;
	}
	double bound;
	if (c->digest_min_score[0] && parse_double(c->digest_min_score, &bound, NULL) == 0 &&
	    (!m->has_score || m->score < bound))
		return false;
	if (c->digest_max_score[0] && parse_double(c->digest_max_score, &bound, NULL) == 0 &&
	    m->has_score && m->score > bound)
		return false;
	return true;
}

bool digest_excluded(const struct config *c, const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');
	for (size_t i = 0; i < c->n_digest_exclude; i++) {
		const char *x = c->digest_exclude[i];
		if (x[0] == '@' ? at && strcasecmp(at, x) == 0 : strcasecmp(rcpt, x) == 0)
			return true;
	}
	return false;
}

void url_encode(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
			buf_appendc(b, (char)*p);
		} else {
			buf_appendc(b, '%');
			buf_appendc(b, hex[*p >> 4]);
			buf_appendc(b, hex[*p & 15]);
		}
	}
}

/* pages_url without a trailing slash, then "/<path>?". */
static void url_start(struct buf *b, const struct config *c, const char *path)
{
	size_t n = strlen(c->pages_url);
	while (n > 0 && c->pages_url[n - 1] == '/')
		n--;
	buf_append(b, c->pages_url, n);
	buf_printf(b, "/%s?", path);
}

char *digest_list_url(const struct config *c, const struct token_keys *k, const char *rcpt,
		      int64_t expires)
{
	char t[TOKEN_MAX];
	token_make(k, TOKEN_LIST, rcpt, expires, t);
	struct buf b = { 0 };
	url_start(&b, c, "list");
	buf_appends(&b, "r=");
	url_encode(&b, rcpt);
	buf_printf(&b, "&t=%s", t);
	return buf_steal(&b);
}

char *digest_entry_url(const struct config *c, const struct token_keys *k, const char *id,
		       int64_t expires)
{
	char t[TOKEN_MAX];
	token_make(k, TOKEN_ENTRY, id, expires, t);
	struct buf b = { 0 };
	url_start(&b, c, "entry");
	buf_printf(&b, "id=%s&t=%s", id, t);
	return buf_steal(&b);
}

/* Reads a template file; 1 if it does not exist (the built-in is used). */
static int read_template(const char *path, char **out, struct qerr *e)
{
	*out = NULL;
	if (path == NULL || *path == '\0')
		return 1;
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		if (errno == ENOENT)
			return 1;
		return qerr_perm(e, "cannot open the template %s: %s", path, strerror(errno));
	}
	struct buf b = { 0 };
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		buf_append(&b, chunk, n);
		if (b.len > 256 * 1024) {
			fclose(f);
			buf_free(&b);
			return qerr_perm(e, "the template %s is larger than 256 KB", path);
		}
	}
	bool bad = ferror(f);
	fclose(f);
	if (bad || memchr(b.data ? b.data : "", '\0', b.len)) {
		buf_free(&b);
		return qerr_perm(e, "cannot read the template %s", path);
	}
	buf_appends(&b, "");
	*out = buf_steal(&b);
	return 0;
}

/* Renders a template with sample values, to find its errors early. */
static int check_template(const char *tpl, bool html, const char *what, struct qerr *e)
{
	struct tpl_var vars[NVARS];
	for (size_t i = 0; i < NVARS; i++)
		vars[i] = (struct tpl_var){ var_names[i], "1" };
	struct tpl_var row[NROW_NAMES];
	for (size_t i = 0; i < NROW_NAMES; i++)
		row[i] = (struct tpl_var){ row_names[i], "x" };
	const struct tpl_var *rows[1] = { row };
	struct tpl_data d = { vars, NVARS, rows, 1, row_names, NROW_NAMES };
	struct buf out = { 0 };
	struct qerr local;
	qerr_clear(&local);
	int r = tpl_render(tpl, &d, html, &out, &local);
	buf_free(&out);
	if (r < 0)
		return qerr_perm(e, "%s: %s", what, local.msg);
	return 0;
}

int digest_ctx_init(struct digest_ctx *d, const struct config *c,
		    const struct token_keys *k, int64_t now, struct qerr *e)
{
	memset(d, 0, sizeof *d);
	d->cfg = c;
	d->keys = k;
	d->now = now;
	int64_t life = 14 * 86400;
	(void)parse_duration(c->link_lifetime, &life, NULL);
	d->expires = now + life;
	int rt = read_template(c->digest_template_text, &d->tpl_text, e);
	if (rt < 0)
		return -1;
	if (rt == 1)
		d->tpl_text = xstrdup(builtin_text);
	int rh = read_template(c->digest_template_html, &d->tpl_html, e);
	if (rh < 0) {
		digest_ctx_free(d);
		return -1;
	}
	if (rh == 1)
		d->tpl_html = xstrdup(builtin_html);
	/* errors name the file, or say the built-in one is at fault */
	char what_text[600], what_html[600];
	snprintf(what_text, sizeof what_text, "template %s",
		 rt == 1 ? "(built-in text)" : c->digest_template_text);
	snprintf(what_html, sizeof what_html, "template %s",
		 rh == 1 ? "(built-in HTML)" : c->digest_template_html);
	if (check_template(d->tpl_html, true, what_html, e) < 0 ||
	    check_template(d->tpl_text, false, what_text, e) < 0 ||
	    check_template(c->digest_subject, false, "digest_subject", e) < 0) {
		digest_ctx_free(d);
		return -1;
	}
	return 0;
}

void digest_ctx_free(struct digest_ctx *d)
{
	free(d->tpl_text);
	free(d->tpl_html);
	d->tpl_text = d->tpl_html = NULL;
}

/* "2026-11-30 04:20 UTC" */
static void format_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%d %H:%M UTC", &tm);
}

/* One line, no control characters: for the Subject header. */
static void one_line(char *s)
{
	for (char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

/* The message GMime makes of the parts: From, To, Subject, Date, a new
 * Message-ID, Auto-Submitted (RFC 3834: no vacation replies to it), and
 * the two parts as multipart/alternative, quoted-printable. */
static char *make_message(const struct digest_ctx *d, const char *rcpt, const char *subject,
			  const char *text, const char *html, size_t *len)
{
	static bool ready;
	if (!ready) {
		g_mime_init();
		ready = true;
	}
	GMimeMessage *m = g_mime_message_new(TRUE);
	g_mime_message_add_mailbox(m, GMIME_ADDRESS_TYPE_FROM, NULL, d->cfg->digest_from);
	g_mime_message_add_mailbox(m, GMIME_ADDRESS_TYPE_TO, NULL, rcpt);
	g_mime_message_set_subject(m, subject, "utf-8");
	GDateTime *dt = g_date_time_new_from_unix_utc(d->now);
	g_mime_message_set_date(m, dt);
	g_date_time_unref(dt);
	unsigned char rnd[12];
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		memset(rnd, 0, sizeof rnd);
	struct buf mid = { 0 };
	buf_appends(&mid, "digest.");
	for (size_t i = 0; i < sizeof rnd; i++)
		buf_printf(&mid, "%02x", rnd[i]);
	const char *at = strrchr(d->cfg->digest_from, '@');
	buf_printf(&mid, "@%s", at && at[1] ? at + 1 : "localhost");
	g_mime_message_set_message_id(m, mid.data);
	buf_free(&mid);
	g_mime_object_set_header(GMIME_OBJECT(m), "Auto-Submitted", "auto-generated", NULL);
	g_mime_object_set_header(GMIME_OBJECT(m), "X-Auto-Response-Suppress", "All", NULL);

	GMimeMultipart *alt = g_mime_multipart_new_with_subtype("alternative");
	const char *subtypes[2] = { "plain", "html" };
	const char *bodies[2] = { text, html };
	for (int i = 0; i < 2; i++) {
		GMimeTextPart *p = g_mime_text_part_new_with_subtype(subtypes[i]);
		g_mime_text_part_set_text(p, bodies[i]);
		g_mime_text_part_set_charset(p, "utf-8");
		g_mime_part_set_content_encoding(GMIME_PART(p),
						 GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
		g_mime_multipart_add(alt, GMIME_OBJECT(p));
		g_object_unref(p);
	}
	g_mime_message_set_mime_part(m, GMIME_OBJECT(alt));
	g_object_unref(alt);
	char *s = g_mime_object_to_string(GMIME_OBJECT(m), NULL);
	g_object_unref(m);
	char *out = xstrdup(s);
	g_free(s);
	*len = strlen(out);
	return out;
}

int digest_build(const struct digest_ctx *d, const char *rcpt, struct digest_row *rows,
		 size_t nrows, size_t total, char **msg, size_t *len, char **text,
		 struct qerr *e)
{
	const struct config *c = d->cfg;
	size_t shown = nrows < (size_t)c->digest_rows ? nrows : (size_t)c->digest_rows;
	if (total < shown)
		total = shown;
	char count[24], nshown[24], more[24], expires[32];
	snprintf(count, sizeof count, "%zu", total);
	snprintf(nshown, sizeof nshown, "%zu", shown);
	snprintf(more, sizeof more, "%zu", total - shown);
	format_time(d->expires, expires);
	char *list_url = digest_list_url(c, d->keys, rcpt, d->expires);
	struct tpl_var vars[NVARS] = {
		{ "rcpt", rcpt }, { "count", count }, { "shown", nshown }, { "more", more },
		{ "list_url", list_url }, { "expires", expires },
	};
	struct tpl_var *cells = xcalloc(shown ? shown : 1, NROW_NAMES * sizeof *cells);
	const struct tpl_var **rowp = xcalloc(shown ? shown : 1, sizeof *rowp);
	char (*times)[32] = xcalloc(shown ? shown : 1, 32);
	char (*scores)[24] = xcalloc(shown ? shown : 1, 24);
	char **links = xcalloc(shown ? shown : 1, sizeof *links);
	for (size_t i = 0; i < shown; i++) {
		struct digest_row *r = &rows[i];
		format_time(r->received, times[i]);
		if (r->has_score)
			snprintf(scores[i], 24, "%.1f", r->score);
		else
			strcpy(scores[i], "-");
		links[i] = digest_entry_url(c, d->keys, r->id, d->expires);
		struct tpl_var *row = cells + i * NROW_NAMES;
		const char *vals[NROW_NAMES] = { times[i], r->from, r->subject, scores[i],
						 r->action, links[i], r->id };
		for (size_t j = 0; j < NROW_NAMES; j++)
			row[j] = (struct tpl_var){ row_names[j], vals[j] };
		rowp[i] = row;
	}
	struct tpl_data data = { vars, NVARS, rowp, shown, row_names, NROW_NAMES };
	struct buf tb = { 0 }, hb = { 0 }, sb = { 0 };
	int rc = 0;
	if (tpl_render(d->tpl_text, &data, false, &tb, e) < 0 ||
	    tpl_render(d->tpl_html, &data, true, &hb, e) < 0 ||
	    tpl_render(c->digest_subject, &data, false, &sb, e) < 0) {
		rc = -1;
	} else {
		buf_appends(&tb, "");
		buf_appends(&hb, "");
		buf_appends(&sb, "");
		one_line(sb.data);
		*msg = make_message(d, rcpt, sb.data, tb.data, hb.data, len);
		if (text)
			*text = xstrdup(tb.data);
	}
	buf_free(&tb);
	buf_free(&hb);
	buf_free(&sb);
	for (size_t i = 0; i < shown; i++)
		free(links[i]);
	free(links);
	free(scores);
	free(times);
	free(rowp);
	free(cells);
	free(list_url);
	return rc;
}
