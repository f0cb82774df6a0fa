/*
 * access.h - who may POST to the quarantine: HTTP Basic credentials
 * (the password kept as a crypt(3) hash, compared in constant time) and
 * an allow-list of client addresses and networks.
 */
#ifndef RQ_ACCESS_H
#define RQ_ACCESS_H

#include <stdbool.h>

#include "common.h"

struct config;

/* Checks REMOTE_ADDR against c->allow_from (empty list: all allowed) and
 * the Authorization header against c->auth_user/auth_password_hash.
 * Fails with QERR_INPUT 403 (address) or 401 (credentials). */
int access_check(const struct config *c, const char *remote_addr,
		 const char *authorization, struct qerr *e);
/* True if addr (textual v4 or v6) is inside net ("192.0.2.0/24",
 * "2001:db8::/32", "127.0.0.1"). Bad syntax is false. */
bool access_addr_in(const char *addr, const char *net);
/* True if net is a valid address or network (for config checks). */
bool access_net_valid(const char *net);

#endif
