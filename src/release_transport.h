/*
 * release_transport.h - the two ways a release reaches the MTA: SMTP to
 * its re-injection listener (release_smtp.c, the default) and the sendmail
 * program (release_sendmail.c).  Each sends one message to one recipient
 * and fills r->status and r->reply with what the MTA answered; neither
 * touches the store.  release.c picks one by release_transport.
 */
#ifndef RQ_RELEASE_TRANSPORT_H
#define RQ_RELEASE_TRANSPORT_H

#include <stddef.h>

#include "release.h"

struct config;

/* Sends header (may be "") followed by msg, from sender ("" = <>) to
 * rcpt, over SMTP to cfg->release_smtp; the MTA's synchronous answer is
 * the result. */
enum release_status transport_smtp(const struct config *cfg, const char *sender,
				   const char *rcpt, const char *header, const void *msg,
				   size_t len, struct release_result *r);

/* The same through `sendmail -i -f SENDER -- RCPT` (no shell); its exit
 * status is the result.  child_setup (may be NULL) runs in the child
 * before exec. */
enum release_status transport_sendmail(const struct config *cfg, const char *sender,
				       const char *rcpt, const char *header, const void *msg,
				       size_t len, int (*child_setup)(void *arg),
				       void *child_arg, struct release_result *r);

/* Copies text into out (size bytes) as one line: control bytes dropped,
 * line breaks become "; ".  Shared by the transports and learn.c. */
void release_one_line(char *out, size_t size, const char *text, size_t n);

#endif
