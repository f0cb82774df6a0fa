/*
 * digest_template.c - renders the digest's templates (syntax in
 * digest_template.h) and escapes text for HTML.  A template is rendered
 * by one recursive walk: a section's body is rendered once per row, or
 * once or not at all for a condition; sections nest.
 */
#include "digest_template.h"

#include <string.h>

#define TPL_NAME_MAX 64
#define TPL_DEPTH_MAX 8

void html_escape(struct buf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		switch (*p) {
		case '&': buf_appends(b, "&amp;"); break;
		case '<': buf_appends(b, "&lt;"); break;
		case '>': buf_appends(b, "&gt;"); break;
		case '"': buf_appends(b, "&quot;"); break;
		case '\'': buf_appends(b, "&#39;"); break;
		default:
			if ((*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r') || *p == 0x7f)
				break;
			buf_appendc(b, (char)*p);
		}
	}
}

/* Where the walk is: the data, the row it is in (or NULL), the output. */
struct walk {
	const struct tpl_data *d;
	const struct tpl_var *row;
	bool in_rows; /* inside {{#rows}}, even when checking without a row */
	bool html;
	struct buf *out;
	const char *start; /* the template, to count lines for errors */
};

static int line_of(const struct walk *w, const char *p)
{
	int line = 1;
	for (const char *q = w->start; q < p; q++)
		line += *q == '\n';
	return line;
}

/* The value of name where the walk is, or NULL if it has none. */
static const char *lookup(const struct walk *w, const char *name, bool *known)
{
	*known = true;
	if (w->in_rows)
		for (size_t i = 0; i < w->d->nrownames; i++)
			if (strcmp(w->d->rownames[i], name) == 0) {
				if (w->row == NULL)
					return "";
				return w->row[i].value ? w->row[i].value : "";
			}
	for (size_t i = 0; i < w->d->nvars; i++)
		if (strcmp(w->d->vars[i].name, name) == 0)
			return w->d->vars[i].value ? w->d->vars[i].value : "";
	*known = false;
	return NULL;
}

/* Reads the tag at p ("{{" already seen): its kind ('#', '^', '/' or 0)
 * and name; returns the text after "}}", or NULL if malformed. */
static const char *read_tag(const char *p, char *kind, char name[TPL_NAME_MAX])
{
	p += 2;
	*kind = 0;
	if (*p == '#' || *p == '^' || *p == '/')
		*kind = *p++;
	while (*p == ' ')
		p++;
	size_t n = 0;
	while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_') {
		if (n + 1 >= TPL_NAME_MAX)
			return NULL;
		name[n++] = *p++;
	}
	name[n] = '\0';
	while (*p == ' ')
		p++;
	if (n == 0 || p[0] != '}' || p[1] != '}')
		return NULL;
	return p + 2;
}

/* Finds the end of the section opened for name, whose body starts at p:
 * sets *body_end at its "{{/name}}" and returns the text after it. */
static const char *section_end(const struct walk *w, const char *p, const char *name,
			       const char **body_end, struct qerr *e)
{
	int depth = 0;
	for (const char *q = strstr(p, "{{"); q; q = strstr(q, "{{")) {
		char kind, n[TPL_NAME_MAX];
		const char *after = read_tag(q, &kind, n);
		if (after == NULL) {
			q += 2;
			continue; /* reported when the walk reaches it */
		}
		if ((kind == '#' || kind == '^') && strcmp(n, name) == 0)
			depth++;
		else if (kind == '/' && strcmp(n, name) == 0) {
			if (depth == 0) {
				*body_end = q;
				return after;
			}
			depth--;
		}
		q = after;
	}
	qerr_perm(e, "line %d: section {{#%s}} is not closed", line_of(w, p), name);
	return NULL;
}

static int walk(struct walk *w, const char *p, const char *end, int depth, struct qerr *e)
{
	if (depth > TPL_DEPTH_MAX)
		return qerr_perm(e, "line %d: sections nested too deep", line_of(w, p));
	while (p < end) {
		const char *q = strstr(p, "{{");
		if (q == NULL || q >= end) {
			buf_append(w->out, p, (size_t)(end - p));
			break;
		}
		buf_append(w->out, p, (size_t)(q - p));
		char kind, name[TPL_NAME_MAX];
		const char *after = read_tag(q, &kind, name);
		if (after == NULL || after > end)
			return qerr_perm(e, "line %d: malformed tag (expected {{name}}, {{#name}}, {{^name}} or {{/name}})",
					 line_of(w, q));
		if (kind == '/')
			return qerr_perm(e, "line %d: {{/%s}} closes no section", line_of(w, q), name);
		bool rows = strcmp(name, "rows") == 0;
		bool known;
		const char *v = rows ? "" : lookup(w, name, &known);
		if (!rows && !known)
			return qerr_perm(e, "line %d: unknown name '%s'", line_of(w, q), name);
		if (kind == 0) {
			if (rows)
				return qerr_perm(e, "line %d: rows is a section: {{#rows}}...{{/rows}}",
						 line_of(w, q));
			if (w->html)
				html_escape(w->out, v);
			else
				buf_appends(w->out, v);
			p = after;
			continue;
		}
		const char *body_end;
		const char *next = section_end(w, after, name, &body_end, e);
		if (next == NULL || next > end)
			return next == NULL ? -1 : qerr_perm(e, "line %d: sections overlap", line_of(w, q));
		if (rows) {
			if (w->in_rows)
				return qerr_perm(e, "line %d: {{#rows}} inside {{#rows}}", line_of(w, q));
			/* {{^rows}}: once when there are none; its body is no row */
			size_t n = kind == '#' ? w->d->nrows : (w->d->nrows == 0 ? 1 : 0);
			/* With nothing to render the body is still walked, into
			 * a scratch buffer: a template is checked whatever the data. */
			for (size_t i = 0; i < (n ? n : 1); i++) {
				struct buf *saved = w->out;
				struct buf scratch = { 0 };
				if (n == 0)
					w->out = &scratch;
				w->in_rows = kind == '#';
				w->row = kind == '#' && n ? w->d->rows[i] : NULL;
				int r = walk(w, after, body_end, depth + 1, e);
				w->row = NULL;
				w->in_rows = false;
				w->out = saved;
				buf_free(&scratch);
				if (r < 0)
					return -1;
			}
		} else {
			bool truthy = v[0] != '\0' && strcmp(v, "0") != 0;
			bool keep = kind == '#' ? truthy : !truthy;
			struct buf *saved = w->out;
			struct buf scratch = { 0 };
			if (!keep)
				w->out = &scratch;
			int r = walk(w, after, body_end, depth + 1, e);
			w->out = saved;
			buf_free(&scratch);
			if (r < 0)
				return -1;
		}
		p = next;
	}
	return 0;
}

int tpl_render(const char *tpl, const struct tpl_data *d, bool html, struct buf *out,
	       struct qerr *e)
{
	struct walk w = { d, NULL, false, html, out, tpl };
	return walk(&w, tpl, tpl + strlen(tpl), 0, e);
}
