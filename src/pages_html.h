/*
 * pages_html.h - what every page of the users' pages shares: the HTTP
 * header block with its security headers, the HTML skeleton with its one
 * stylesheet, and the small pages that only say something (errors,
 * expired links, results).
 */
#ifndef RQ_PAGES_HTML_H
#define RQ_PAGES_HTML_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

/* Starts the answer: status line, headers (Content-Security-Policy that
 * allows no script and nothing remote, frame-ancestors 'none',
 * Referrer-Policy no-referrer, Cache-Control no-store, ...), then the
 * document's head and the opening of <main>; title is plain text. */
void page_begin(struct buf *out, int status, const char *title);
/* Closes <main> and the document. */
void page_end(struct buf *out);
/* A whole page with a heading and one paragraph (plain text each). */
void page_message(struct buf *out, int status, const char *title, const char *text);
/* Appends "2027-01-15 08:00 UTC". */
void page_time(struct buf *out, int64_t t);
/* The answer to a HEAD request: headers only. */
void page_strip_body(struct buf *out);
/* The reason phrase of a status. */
const char *page_reason(int status);

#endif
