/*
 * store_file_digest.h - the file store's announced marks (the users'
 * digest), kept apart from its commit path in store_file_digest.c.
 */
#ifndef RQ_STORE_FILE_DIGEST_H
#define RQ_STORE_FILE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* In store_file.c: opens users/<rcpt's directory>.  Returns 0 with *ufd,
 * 1 if the recipient has no directory, -1. */
int store_file_user_dir(void *state, const char *rcpt, int *ufd, struct qerr *e);

/* The backend's get_announced and set_announced (see store.h). */
int file_get_announced(void *state, const char *rcpt, char *const *ids, size_t n,
		       int64_t *when, struct qerr *e);
int file_set_announced(void *state, const char *rcpt, char *const *ids, size_t n,
		       int64_t when, struct qerr *e);

#endif
