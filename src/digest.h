/*
 * digest.h - the users' digest: which entries are announced, the links
 * into the pages, and the mail itself (text and HTML, built with GMime).
 * The command that finds the recipients, marks and sends is in
 * cli_digest.c; the pages (pages/) share the links.
 */
#ifndef RQ_DIGEST_H
#define RQ_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "config.h"
#include "record.h"
#include "token.h"

/* What a digest shows of one entry. */
struct digest_row {
	char id[ENTRY_ID_LEN + 1];
	int64_t received;
	char *from;     /* the header's From as decoded, else the envelope sender */
	char *subject;
	char *action;
	double score;
	bool has_score;
};

/* Fills r from an entry (strings copied); digest_row_free frees them. */
void digest_row_from_entry(struct digest_row *r, const struct qentry *q);
void digest_row_free(struct digest_row *r);

/* True if the configuration announces this entry (action, score). */
bool digest_announces(const struct config *c, const struct qentry *q);
/* True if rcpt gets no digest (digest_exclude). */
bool digest_excluded(const struct config *c, const char *rcpt);

/* Everything one run needs: the configuration, keys, the templates
 * (checked when loaded), the time of the run. */
struct digest_ctx {
	const struct config *cfg;
	const struct token_keys *keys;
	char *tpl_text;
	char *tpl_html;
	int64_t now;
	int64_t expires;   /* of the links made in this run */
};

/* Loads the operator's templates or the built-in ones and checks them
 * and the subject; a bad one is QERR_PERM naming file and line. */
int digest_ctx_init(struct digest_ctx *d, const struct config *c,
		    const struct token_keys *k, int64_t now, struct qerr *e);
void digest_ctx_free(struct digest_ctx *d);

/* The built-in templates, for `digest --print-template`. */
const char *digest_builtin_template(bool html);

/* Links into the pages: the overview of rcpt and an entry's page,
 * signed until expires (allocated). */
char *digest_list_url(const struct config *c, const struct token_keys *k, const char *rcpt,
		      int64_t expires);
char *digest_entry_url(const struct config *c, const struct token_keys *k, const char *id,
		       int64_t expires);
/* Appends s percent-encoded for a URL's query (all but unreserved). */
void url_encode(struct buf *b, const char *s);

/* The digest mail for rcpt announcing total entries: rows holds the
 * newest of them, newest first, nrows <= total (the first digest_rows
 * are shown, the rest counted): a complete RFC 5322 message,
 * multipart/alternative, in *msg (allocated, *len bytes); its text part
 * also in *text when text is not NULL (for --dry-run). */
int digest_build(const struct digest_ctx *d, const char *rcpt, struct digest_row *rows,
		 size_t nrows, size_t total, char **msg, size_t *len, char **text,
		 struct qerr *e);

#endif
