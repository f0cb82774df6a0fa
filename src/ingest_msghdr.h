/*
 * ingest_msghdr.h - the message's own header: unfolding, and the fields
 * shown to people (From, To, Cc, Subject, Date, Message-ID), decoded.
 */
#ifndef RQ_INGEST_MSGHDR_H
#define RQ_INGEST_MSGHDR_H

#include <stddef.h>

#include "record.h"

/* Size of the message prefix the front end keeps for msghdr_parse. */
#define MSGHDR_MAX 262144

/* Parses the header at the start of msg (up to the first empty line or
 * len) and sets m->hdr_* (replacing earlier values).  Never fails: a
 * field that is absent stays NULL.  LF and CRLF line ends both work. */
void msghdr_parse(const char *msg, size_t len, struct qmeta *m);
/* Returns the offset just past the header's terminating empty line in
 * p[0..n), or 0 if the header has not ended within n bytes. */
size_t msghdr_end(const char *p, size_t n);

/* Most bytes msghdr_starts_mail needs to decide: a field name fits in
 * one line of RFC 5322's 998 characters. */
#define MSGHDR_START_MAX 1000

/* Whether p[0..n), the start of a body taken as the raw message, looks
 * like a mail message: it begins with a header field (an RFC 5322 field
 * name, optional blanks, a colon) or an mbox "From " line.  1 yes, 0 no,
 * -1 not decided yet (more bytes needed; with MSGHDR_START_MAX bytes or
 * at the end of the body, undecided means no). */
int msghdr_starts_mail(const void *p, size_t n);

#endif
