/*
 * digest_template.h - the templates of the digest mail (and the escaping
 * the users' pages share).
 *
 * The syntax is the smallest that a digest needs:
 *
 *   {{name}}                 a value; in an HTML template it is escaped
 *                            (& < > " ' become entities), always
 *   {{#rows}} ... {{/rows}}  repeated once per listed entry; inside, the
 *                            entry's own names (received, from, subject,
 *                            score, action, link) and the digest's
 *   {{#name}} ... {{/name}}  kept when the value is neither empty nor "0"
 *   {{^name}} ... {{/name}}  kept when it is empty or "0"
 *
 * No logic, no filters, no includes, no way to insert unescaped text into
 * HTML: a digest is a greeting, a list and a footer, and an operator who
 * rewords it cannot open a hole in it by mistake.  A name the template
 * does not know, a section left open or closed twice is an error naming
 * the line, found when the template is checked, before any mail is made.
 */
#ifndef RQ_DIGEST_TEMPLATE_H
#define RQ_DIGEST_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

/* One name and its value. */
struct tpl_var {
	const char *name;
	const char *value;
};

/* What a template is rendered with: the digest's values, and the rows,
 * each with the same nrowvars names. */
struct tpl_data {
	const struct tpl_var *vars;
	size_t nvars;
	const struct tpl_var *const *rows;
	size_t nrows;
	const char *const *rownames; /* names each row has (for checking) */
	size_t nrownames;
};

/* Renders tpl with d into out; html escapes every value.  Fails (QERR_PERM,
 * naming the line) on a syntax error or an unknown name. */
int tpl_render(const char *tpl, const struct tpl_data *d, bool html, struct buf *out,
	       struct qerr *e);

/* Appends s to b with & < > " ' as HTML entities, so that it is text in
 * an element or a quoted attribute; control characters other than tab
 * and line ends are dropped. */
void html_escape(struct buf *b, const char *s);

#endif
