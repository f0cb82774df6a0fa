/*
 * learn.h - feedback to Rspamd's controller over HTTP (libcurl): a
 * released message is learned as ham, a confirmed spam as spam, and the
 * fuzzy storage is told to forget or to add a message.  Each call is one
 * POST of the message and classifies the controller's answer.
 */
#ifndef RQ_LEARN_H
#define RQ_LEARN_H

#include <stddef.h>

#include "release.h"

struct config;

/* What to tell the controller. */
enum learn_kind { LEARN_HAM, LEARN_SPAM, LEARN_FUZZY_DEL, LEARN_FUZZY_ADD };

/* Posts msg to the controller's endpoint for kind (/learnham, /learnspam,
 * /fuzzydel, /fuzzyadd with the configured flag and weight), with the
 * password from rspamd_password_file; text gets the answer or why it
 * failed, one line.  LEARN_OFF when no controller is configured (or, for
 * the fuzzy kinds, no fuzzy flag). */
enum learn_status learn_post(const struct config *cfg, enum learn_kind kind, const void *msg,
			     size_t len, char *text, size_t size);

/* The status class of an answer: code is the HTTP status, body its text
 * (may be NULL).  Pure, for tests. */
enum learn_status learn_classify(long code, const char *body);

#endif
