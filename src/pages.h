/*
 * pages.h - the users' pages, served by the daemon's workers for requests
 * that nginx marks with the FastCGI parameter RQ_SERVICE=pages: a
 * recipient's overview, an entry's page, and release and delete behind a
 * confirmation.  Every page needs a signed link (token.h); a GET never
 * changes anything; release goes through the one release path
 * (release.h).
 */
#ifndef RQ_PAGES_H
#define RQ_PAGES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common.h"
#include "config.h"
#include "store.h"
#include "token.h"

/* Reads request body bytes; -1 on a failed or cut-short read. */
typedef ssize_t (*pages_read_fn)(void *arg, void *p, size_t n);

/* Answers one page request (FastCGI parameters envp, body through rd)
 * with a complete CGI answer in out, logs it, and returns its status. */
int pages_request(struct store *s, const struct config *c, char *const *envp,
		  pages_read_fn rd, void *rd_arg, struct buf *out);

/* What the entry page needs (pages_entry.c). */
struct page_entry_req {
	struct store *s;
	const struct config *c;
	const struct token_keys *k;
	int64_t now;
	const char *id;
	const char *t;        /* the entry token, valid */
	int64_t expires;      /* its expiry */
	const char *back_r;   /* overview to link back to, if its token is valid */
	const char *back_t;
};
/* Writes the entry page; returns its status. */
int page_entry(struct buf *out, const struct page_entry_req *r);

#endif
