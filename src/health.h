/*
 * health.h - the answer to /health: whether this receiver's store takes
 * writes now, for a load balancer or a monitor that polls every second.
 */
#ifndef RQ_HEALTH_H
#define RQ_HEALTH_H

#include "common.h"

struct config;
struct store;

/* Builds the whole FastCGI answer (CGI header and JSON body) for a
 * request with this method into out, and returns its status: 200 while
 * the store takes writes, 503 with the reason and Retry-After otherwise,
 * 405 for a method other than GET or HEAD. */
int health_respond(struct store *s, const struct config *c, const char *method,
		   struct buf *out);

#endif
