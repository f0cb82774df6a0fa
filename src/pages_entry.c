/*
 * pages_entry.c - one entry's page: the decoded header fields, the
 * symbols Rspamd found, a text preview, the attachments, and the release
 * and delete buttons (which only lead to the confirmation, pages.c).
 *
 * The preview is made with GMime: the message is parsed, the first
 * text/plain part is taken as text (converted to UTF-8), else the first
 * text/html part is turned into text here (tags dropped, with scripts,
 * styles and the head; block elements become line breaks; entities
 * decoded), and the first PREVIEW_MAX bytes are shown, escaped, in a
 * <pre>.  The message's own HTML never reaches the page, nor any URL of
 * it as a link or a resource.  Attachments are listed by name, type and
 * decoded size only.
 */
#include "pages.h"

#include <gmime/gmime.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "digest.h"
#include "digest_template.h"
#include "pages_html.h"

/* Text shown of a message. */
#define PREVIEW_MAX (64 * 1024)
/* Bytes of a message read for the preview; the rest is not looked at. */
#define READ_MAX (16u << 20)
/* Attachments and symbols listed at most. */
#define LIST_MAX 200

struct attachment {
	char *name;
	char *type;
	size_t size;
};

struct preview {
	char *plain;
	char *html;
	struct attachment a[LIST_MAX];
	size_t na;
	size_t more_attachments;
};

static int collect(const void *p, size_t n, void *arg)
{
	struct buf *b = arg;
	if (b->len + n > READ_MAX) {
		buf_append(b, p, READ_MAX - b->len);
		return 1; /* enough */
	}
	buf_append(b, p, n);
	return 0;
}

/* Decoded size of a leaf part's content. */
static size_t part_size(GMimePart *part)
{
	GMimeDataWrapper *w = g_mime_part_get_content(part);
	if (w == NULL)
		return 0;
	GMimeStream *null = g_mime_stream_null_new();
	g_mime_data_wrapper_write_to_stream(w, null);
	size_t n = (size_t)GMIME_STREAM_NULL(null)->written;
	g_object_unref(null);
	return n;
}

static void add_attachment(struct preview *pv, GMimeObject *obj, const char *name)
{
	if (pv->na == LIST_MAX) {
		pv->more_attachments++;
		return;
	}
	struct attachment *a = &pv->a[pv->na++];
	a->name = xstrdup(name && *name ? name : "(no name)");
	char *type = g_mime_content_type_get_mime_type(g_mime_object_get_content_type(obj));
	a->type = xstrdup(type ? type : "application/octet-stream");
	g_free(type);
	a->size = GMIME_IS_PART(obj) ? part_size(GMIME_PART(obj)) : 0;
}

/* Called for every part of the message, depth first. */
static void visit(GMimeObject *parent, GMimeObject *obj, gpointer data)
{
	(void)parent;
	struct preview *pv = data;
	if (GMIME_IS_MESSAGE_PART(obj)) {
		add_attachment(pv, obj, "(attached message)");
		return;
	}
	if (!GMIME_IS_PART(obj))
		return;
	GMimePart *part = GMIME_PART(obj);
	const char *fname = g_mime_part_get_filename(part);
	bool attachment = g_mime_part_is_attachment(part) || (fname && *fname);
	if (!attachment && GMIME_IS_TEXT_PART(obj)) {
		GMimeContentType *ct = g_mime_object_get_content_type(obj);
		char **slot = NULL;
		if (g_mime_content_type_is_type(ct, "text", "plain"))
			slot = &pv->plain;
		else if (g_mime_content_type_is_type(ct, "text", "html"))
			slot = &pv->html;
		if (slot && *slot == NULL) {
			char *text = g_mime_text_part_get_text(GMIME_TEXT_PART(obj));
			if (text) {
				char *valid = g_utf8_make_valid(text, -1);
				*slot = xstrdup(valid);
				g_free(valid);
				g_free(text);
			}
			return;
		}
		if (slot)
			return; /* a second text part of the same kind: alternative */
	}
	add_attachment(pv, obj, fname);
}

/* The message's text parts and attachments. */
static void make_preview(const char *msg, size_t len, struct preview *pv)
{
	static bool ready;
	if (!ready) {
		g_mime_init();
		ready = true;
	}
	GMimeStream *st = g_mime_stream_mem_new_with_buffer(msg, len);
	GMimeParser *p = g_mime_parser_new_with_stream(st);
	GMimeMessage *m = g_mime_parser_construct_message(p, NULL);
	if (m) {
		g_mime_message_foreach(m, visit, pv); /* the top part, then its children */
		g_object_unref(m);
	}
	g_object_unref(p);
	g_object_unref(st);
}

/* Appends the UTF-8 form of code point cp. */
static void append_codepoint(struct buf *b, unsigned long cp)
{
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	char u[8];
	int n = g_unichar_to_utf8((gunichar)cp, u);
	buf_append(b, u, (size_t)n);
}

/* Decodes the entity at p ('&' seen); returns its length, 0 if none. */
static size_t entity(const char *p, struct buf *b)
{
	static const struct { const char *name; const char *text; } names[] = {
		{ "amp;", "&" }, { "lt;", "<" }, { "gt;", ">" }, { "quot;", "\"" },
		{ "apos;", "'" }, { "nbsp;", " " }, { "#39;", "'" },
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		size_t n = strlen(names[i].name);
		if (strncasecmp(p + 1, names[i].name, n) == 0) {
			buf_appends(b, names[i].text);
			return n + 1;
		}
	}
	if (p[1] == '#') {
		bool hex = p[2] == 'x' || p[2] == 'X';
		const char *q = p + (hex ? 3 : 2);
		char *end;
		unsigned long cp = strtoul(q, &end, hex ? 16 : 10);
		if (end > q && *end == ';' && end - q <= 8) {
			append_codepoint(b, cp);
			return (size_t)(end - p) + 1;
		}
	}
	return 0;
}

/* True if the tag at p ("<" seen) is named name (case-insensitive). */
static bool tag_is(const char *p, const char *name)
{
	size_t n = strlen(name);
	return strncasecmp(p, name, n) == 0 &&
	       (p[n] == '>' || p[n] == ' ' || p[n] == '/' || p[n] == '\t' || p[n] == '\n' ||
		p[n] == '\r' || p[n] == '\0');
}

/* Text of an HTML part: what a reader would see, roughly, as text. */
static char *html_to_text(const char *h)
{
	static const char *const skip[] = { "script", "style", "head", "title", "noscript",
					    "template", "svg", "object" };
	static const char *const block[] = { "br", "p", "/p", "div", "/div", "li", "tr", "/tr",
					     "h1", "h2", "h3", "h4", "h5", "h6", "/h1", "/h2",
					     "/h3", "/h4", "/h5", "/h6", "table", "/table",
					     "blockquote", "/blockquote", "hr", "ul", "/ul", "ol",
					     "/ol" };
	struct buf b = { 0 };
	int newlines = 2;
	bool space = false;
	for (const char *p = h; *p && b.len < PREVIEW_MAX + 16;) {
		if (*p == '<') {
			if (strncmp(p, "<!--", 4) == 0) {
				const char *end = strstr(p + 4, "-->");
				p = end ? end + 3 : p + strlen(p);
				continue;
			}
			const char *close = strchr(p, '>');
			if (close == NULL)
				break;
			bool skipped = false;
			for (size_t i = 0; i < sizeof skip / sizeof skip[0] && !skipped; i++) {
				if (tag_is(p + 1, skip[i])) {
					/* to the matching end tag, or the end */
					char endtag[16];
					snprintf(endtag, sizeof endtag, "</%s", skip[i]);
					const char *q = close;
					while ((q = strchr(q, '<')) && strncasecmp(q, endtag, strlen(endtag)))
						q++;
					const char *qe = q ? strchr(q, '>') : NULL;
					p = qe ? qe + 1 : p + strlen(p);
					skipped = true;
				}
			}
			if (skipped)
				continue;
			for (size_t i = 0; i < sizeof block / sizeof block[0]; i++)
				if (tag_is(p + 1, block[i])) {
					if (newlines < 2) {
						buf_appendc(&b, '\n');
						newlines++;
					}
					space = false;
					break;
				}
			p = close + 1;
			continue;
		}
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
			space = true;
			p++;
			continue;
		}
		if (space && newlines == 0)
			buf_appendc(&b, ' ');
		space = false;
		newlines = 0;
		if (*p == '&') {
			size_t n = entity(p, &b);
			if (n) {
				p += n;
				continue;
			}
		}
		buf_appendc(&b, *p++);
	}
	buf_appends(&b, "");
	return buf_steal(&b);
}

/* Cuts s to at most max bytes on a character boundary; true if cut. */
static bool cut_utf8(char *s, size_t max)
{
	size_t n = strlen(s);
	if (n <= max)
		return false;
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	s[max] = '\0';
	return true;
}

static void dl_row(struct buf *out, const char *name, const char *value)
{
	if (value == NULL || *value == '\0')
		return;
	buf_printf(out, "<dt>%s</dt><dd>", name);
	html_escape(out, value);
	buf_appends(out, "</dd>");
}

/* Symbols, highest score first. */
static int by_score(const void *a, const void *b)
{
	double x = json_number_value(json_object_get(*(json_t *const *)a, "score"));
	double y = json_number_value(json_object_get(*(json_t *const *)b, "score"));
	return x < y ? 1 : x > y ? -1 : 0;
}

static void symbols_table(struct buf *out, const char *symbols_json)
{
	json_t *arr = symbols_json ? json_loads(symbols_json, 0, NULL) : NULL;
	if (!json_is_array(arr) || json_array_size(arr) == 0) {
		json_decref(arr);
		return;
	}
	size_t n = json_array_size(arr);
	if (n > LIST_MAX)
		n = LIST_MAX;
	json_t **v = xcalloc(n, sizeof *v);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (json_is_object(json_array_get(arr, i)))
			v[k++] = json_array_get(arr, i);
	qsort(v, k, sizeof *v, by_score);
	buf_appends(out, "<details><summary>Why it was held: the rules that matched</summary>"
			 "<table><thead><tr><th scope=\"col\">Rule</th><th scope=\"col\">Score</th>"
			 "<th scope=\"col\">Details</th></tr></thead><tbody>\n");
	for (size_t i = 0; i < k; i++) {
		const char *name = json_string_value(json_object_get(v[i], "name"));
		buf_appends(out, "<tr><td>");
		html_escape(out, name ? name : "?");
		buf_printf(out, "</td><td>%.2f</td><td>",
			   json_number_value(json_object_get(v[i], "score")));
		json_t *opts = json_object_get(v[i], "options");
		struct buf o = { 0 };
		for (size_t j = 0; json_is_array(opts) && j < json_array_size(opts) && j < 20; j++) {
			const char *s = json_string_value(json_array_get(opts, j));
			if (s) {
				if (o.len)
					buf_appends(&o, ", ");
				buf_appends(&o, s);
			}
		}
		if (o.len) {
			cut_utf8(o.data, 300);
			html_escape(out, o.data);
		}
		buf_free(&o);
		buf_appends(out, "</td></tr>\n");
	}
	buf_appends(out, "</tbody></table></details>\n");
	free(v);
	json_decref(arr);
}

/* The release and delete buttons: GET forms to the confirmation. */
static void action_form(struct buf *out, const char *id, const char *t, const char *a,
			const char *label)
{
	buf_printf(out, "<form method=\"get\" action=\"confirm\">"
		   "<input type=\"hidden\" name=\"id\" value=\"%s\">"
		   "<input type=\"hidden\" name=\"t\" value=\"%s\">"
		   "<input type=\"hidden\" name=\"a\" value=\"%s\">"
		   "<button type=\"submit\" class=\"%s\">%s</button></form>\n",
		   id, t, a, a, label);
}

int page_entry(struct buf *out, const struct page_entry_req *r)
{
	struct qentry q;
	struct qerr e;
	qerr_clear(&e);
	memset(&q, 0, sizeof q);
	if (store_get(r->s, r->id, &q, &e) < 0) {
		if (e.cls == QERR_NOTFOUND) {
			page_message(out, 404, "No longer held",
				     "This message is no longer in the quarantine: it was removed "
				     "after its time, or by your administrator.");
			return 404;
		}
		page_message(out, 503, "Please try again",
			     "The quarantine cannot be read right now. Try again in a few minutes.");
		return 503;
	}
	const struct qmeta *m = &q.meta;
	struct digest_row row;
	digest_row_from_entry(&row, &q);
	page_begin(out, 200, "Held message");
	if (r->back_r) {
		buf_appends(out, "<nav><a href=\"list?r=");
		struct buf enc = { 0 };
		url_encode(&enc, r->back_r);
		html_escape(out, enc.data);
		buf_free(&enc);
		buf_printf(out, "&amp;t=%s\">&larr; All held mail</a></nav>\n", r->back_t);
	}
	buf_appends(out, "<h1>");
	html_escape(out, row.subject);
	buf_appends(out, "</h1>\n");
	if (q.status == ENTRY_RELEASED) {
		buf_appends(out, "<p class=\"notice\">Released to ");
		html_escape(out, q.rcpt);
		buf_appends(out, " on ");
		page_time(out, q.status_changed);
		buf_appends(out, ".</p>\n");
	} else if (q.status == ENTRY_DELETED) {
		buf_appends(out, "<p class=\"warn\">Deleted on ");
		page_time(out, q.status_changed);
		buf_appends(out, ".</p>\n");
	} else {
		buf_appends(out, "<p>This message was held back because it looks like spam or "
				 "carries something harmful. Read it below before you release it.</p>\n");
		action_form(out, r->id, r->t, "release", "Release to my inbox\xe2\x80\xa6");
		action_form(out, r->id, r->t, "delete", "Delete\xe2\x80\xa6");
	}

	buf_appends(out, "<h2>Header</h2>\n<dl>");
	dl_row(out, "From", m->hdr_from);
	dl_row(out, "To", m->hdr_to);
	dl_row(out, "Cc", m->hdr_cc);
	dl_row(out, "Subject", qmeta_display_subject(m));
	dl_row(out, "Date", m->hdr_date);
	dl_row(out, "Message-ID", m->hdr_msgid);
	dl_row(out, "Envelope sender", m->env_from && *m->env_from ? m->env_from : "<>");
	dl_row(out, "Held for", q.rcpt);
	buf_appends(out, "<dt>Held since</dt><dd>");
	page_time(out, m->received_at);
	buf_appends(out, "</dd>");
	if (m->has_score) {
		char sc[64];
		snprintf(sc, sizeof sc, "%.2f", m->score);
		dl_row(out, "Spam score", sc);
	}
	dl_row(out, "Action", m->action);
	buf_appends(out, "</dl>\n");
	symbols_table(out, m->symbols_json);

	struct buf raw = { 0 };
	qerr_clear(&e);
	int rc = store_read_content(r->s, r->id, collect, &raw, &e);
	buf_appends(out, "<h2>Text</h2>\n");
	if (rc < 0 && raw.len == 0) {
		buf_appends(out, "<p class=\"warn\">The message cannot be read right now.</p>\n");
	} else {
		struct preview pv;
		memset(&pv, 0, sizeof pv);
		make_preview(raw.data ? raw.data : "", raw.len, &pv);
		char *text = pv.plain;
		bool from_html = false;
		if (text == NULL && pv.html) {
			text = html_to_text(pv.html);
			from_html = true;
		}
		if (text == NULL || *text == '\0') {
			buf_appends(out, "<p>The message has no text to show.</p>\n");
		} else {
			bool cut = cut_utf8(text, PREVIEW_MAX);
			if (from_html)
				buf_appends(out, "<p class=\"meta\">The message is HTML; this is its "
						 "text, without images, links or formatting.</p>\n");
			buf_appends(out, "<pre>");
			html_escape(out, text);
			buf_appends(out, "</pre>\n");
			if (cut || raw.len >= READ_MAX)
				buf_appends(out, "<p class=\"meta\">Only the beginning is shown.</p>\n");
		}
		if (from_html)
			free(text);
		if (pv.na) {
			buf_appends(out, "<h2>Attachments</h2>\n<table id=\"attachments\"><thead><tr>"
					 "<th scope=\"col\">Name</th><th scope=\"col\">Type</th>"
					 "<th scope=\"col\">Size</th></tr></thead><tbody>\n");
			for (size_t i = 0; i < pv.na; i++) {
				buf_appends(out, "<tr><td>");
				html_escape(out, pv.a[i].name);
				buf_appends(out, "</td><td>");
				html_escape(out, pv.a[i].type);
				buf_printf(out, "</td><td>%zu bytes</td></tr>\n", pv.a[i].size);
				free(pv.a[i].name);
				free(pv.a[i].type);
			}
			buf_appends(out, "</tbody></table>\n");
			if (pv.more_attachments)
				buf_printf(out, "<p class=\"meta\">and %zu more.</p>\n", pv.more_attachments);
			buf_appends(out, "<p class=\"meta\">Attachments cannot be opened here: release "
					 "the message if you trust it.</p>\n");
		}
		free(pv.plain);
		free(pv.html);
	}
	buf_free(&raw);
	buf_appends(out, "<p class=\"meta\">This link works until ");
	page_time(out, r->expires);
	buf_appends(out, ".</p>\n");
	page_end(out);
	digest_row_free(&row);
	qentry_free(&q);
	return 200;
}
