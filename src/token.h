/*
 * token.h - signed links for the users' pages and the digest.
 *
 * A token says "whoever holds this may do PURPOSE on SUBJECT until
 * EXPIRES": an HMAC-SHA-256 (libcrypto) over the three, keyed with a
 * secret that only the daemon and the digest command read.  The subject
 * is an entry ID or a recipient address and travels beside the token (in
 * the URL); the token itself is "<expires>.<mac>", the expiry in decimal
 * seconds and the MAC in unpadded base64url.  Checking needs no stored
 * state: the MAC is computed again and compared in constant time, with
 * the current key and, during a rotation, the previous one.
 */
#ifndef RQ_TOKEN_H
#define RQ_TOKEN_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

/* Bytes of a key; its file holds them as hex. */
#define TOKEN_KEY_LEN 32
/* Longest token: 20 digits, a dot, 43 base64url characters, NUL. */
#define TOKEN_MAX 72

/* What a link may be used for; a token made for one is refused for any
 * other. */
enum token_purpose {
	TOKEN_LIST,    /* a recipient's overview; subject: the recipient */
	TOKEN_ENTRY,   /* an entry's page; subject: the entry ID */
	TOKEN_RELEASE, /* the release form of an entry; subject: the entry ID */
	TOKEN_DELETE,  /* the delete form of an entry; subject: the entry ID */
};

struct token_keys {
	unsigned char cur[TOKEN_KEY_LEN];
	unsigned char prev[TOKEN_KEY_LEN];
	bool has_prev;
};

enum token_verdict {
	TOKEN_OK = 0,
	TOKEN_EXPIRED, /* genuine, but its time is over */
	TOKEN_BAD,     /* malformed, tampered, another purpose or subject */
};

/* Reads the key file path (64 hex digits, optional line end) and, when
 * prev_path is non-empty, the previous key.  A missing or malformed file
 * is QERR_PERM naming it. */
int token_keys_load(struct token_keys *k, const char *path, const char *prev_path,
		    struct qerr *e);
/* Writes a new random key to path, mode 0640, refusing to replace an
 * existing file. */
int token_key_create(const char *path, struct qerr *e);

/* Makes the token for purpose on subject, valid until expires. */
void token_make(const struct token_keys *k, enum token_purpose p, const char *subject,
		int64_t expires, char out[TOKEN_MAX]);
/* Checks a token against what it is presented for, at time now.  Only a
 * token with a genuine MAC can be TOKEN_EXPIRED; *expires (may be NULL)
 * then gets its time. */
enum token_verdict token_check(const struct token_keys *k, enum token_purpose p,
			       const char *subject, const char *token, int64_t now,
			       int64_t *expires);

#endif
