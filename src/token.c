/*
 * token.c - signed links: key files, making and checking tokens (see
 * token.h for the form).  The MAC covers a fixed label, the purpose, the
 * subject and the expiry, each separated by a NUL that none of them can
 * hold, so no two different (purpose, subject, expiry) give the same
 * input.  Recipients are compared without regard to ASCII case, as the
 * stores do.
 */
#include "token.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN_LABEL "rspamd-quarantine link v1"
/* Bytes of a subject that a token can cover: longer ones are refused. */
#define SUBJECT_MAX 1024
/* Base64url of 32 bytes, without padding. */
#define MAC_B64_LEN 43

static const char *purpose_name(enum token_purpose p)
{
	switch (p) {
	case TOKEN_LIST: return "list";
	case TOKEN_ENTRY: return "entry";
	case TOKEN_RELEASE: return "release";
	case TOKEN_DELETE: return "delete";
	}
	return "?";
}

/* Decodes one key file into out. */
static int load_key(const char *path, unsigned char out[TOKEN_KEY_LEN], struct qerr *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qerr_perm(e, "cannot open the link key %s: %s (make it with: rspamd-quarantine make-key)",
				 path, strerror(errno));
	char text[2 * TOKEN_KEY_LEN + 4];
	ssize_t n = read(fd, text, sizeof text);
	int err = errno;
	close(fd);
	if (n < 0)
		return qerr_perm(e, "cannot read the link key %s: %s", path, strerror(err));
	size_t len = (size_t)n;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	if (len != 2 * TOKEN_KEY_LEN)
		return qerr_perm(e, "the link key %s is not %d hex digits", path, 2 * TOKEN_KEY_LEN);
	for (size_t i = 0; i < TOKEN_KEY_LEN; i++) {
		char byte[3] = { text[2 * i], text[2 * i + 1], '\0' };
		if (!isxdigit((unsigned char)byte[0]) || !isxdigit((unsigned char)byte[1]))
			return qerr_perm(e, "the link key %s is not %d hex digits", path,
					 2 * TOKEN_KEY_LEN);
		out[i] = (unsigned char)strtoul(byte, NULL, 16);
	}
	return 0;
}

/* The daemon and the digest read the keys once, at start. */
int token_keys_load(struct token_keys *k, const char *path, const char *prev_path,
		    struct qerr *e)
{
	memset(k, 0, sizeof *k);
	if (path == NULL || *path == '\0')
		return qerr_perm(e, "no link key configured (key link_key_file)");
	if (load_key(path, k->cur, e) < 0)
		return -1;
	if (prev_path && *prev_path) {
		if (load_key(prev_path, k->prev, e) < 0)
			return -1;
		k->has_prev = true;
	}
	return 0;
}

/* A new key from the system's random source, never over an old one: a
 * replaced key silently invalidates every link already mailed. */
int token_key_create(const char *path, struct qerr *e)
{
	unsigned char key[TOKEN_KEY_LEN];
	if (RAND_bytes(key, sizeof key) != 1)
		return qerr_perm(e, "no random bytes for a new key");
	char text[2 * TOKEN_KEY_LEN + 2];
	for (size_t i = 0; i < TOKEN_KEY_LEN; i++)
		snprintf(text + 2 * i, 3, "%02x", key[i]);
	text[2 * TOKEN_KEY_LEN] = '\n';
	OPENSSL_cleanse(key, sizeof key);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd < 0) {
		int err = errno;
		OPENSSL_cleanse(text, sizeof text);
		return qerr_perm(e, "cannot create %s: %s", path, strerror(err));
	}
	int rc = 0;
	/* The umask may have taken the group's read bit: set it exactly. */
	if (fchmod(fd, 0640) < 0 || write_full(fd, text, 2 * TOKEN_KEY_LEN + 1) < 0 ||
	    fsync(fd) < 0) {
		rc = qerr_perm(e, "cannot write %s: %s", path, strerror(errno));
		unlink(path);
	}
	close(fd);
	OPENSSL_cleanse(text, sizeof text);
	return rc;
}

/* The MAC of (purpose, subject, expires) under key, as base64url. */
static void mac_b64(const unsigned char *key, enum token_purpose p, const char *subject,
		    int64_t expires, char out[MAC_B64_LEN + 1])
{
	struct buf in = { 0 };
	buf_appends(&in, TOKEN_LABEL);
	buf_appendc(&in, '\0');
	buf_appends(&in, purpose_name(p));
	buf_appendc(&in, '\0');
	size_t start = in.len;
	buf_appends(&in, subject);
	if (p == TOKEN_LIST)
		for (size_t i = start; i < in.len; i++)
			in.data[i] = (char)tolower((unsigned char)in.data[i]);
	buf_appendc(&in, '\0');
	buf_printf(&in, "%" PRId64, expires);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	HMAC(EVP_sha256(), key, TOKEN_KEY_LEN, (const unsigned char *)in.data, in.len, mac,
	     &maclen);
	buf_free(&in);
	unsigned char b64[64];
	EVP_EncodeBlock(b64, mac, (int)maclen);
	for (int i = 0; i < MAC_B64_LEN; i++)
		out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
	out[MAC_B64_LEN] = '\0';
	OPENSSL_cleanse(mac, sizeof mac);
}

void token_make(const struct token_keys *k, enum token_purpose p, const char *subject,
		int64_t expires, char out[TOKEN_MAX])
{
	char mac[MAC_B64_LEN + 1];
	mac_b64(k->cur, p, subject, expires, mac);
	snprintf(out, TOKEN_MAX, "%" PRId64 ".%s", expires, mac);
}

enum token_verdict token_check(const struct token_keys *k, enum token_purpose p,
			       const char *subject, const char *token, int64_t now,
			       int64_t *expires)
{
	if (token == NULL || subject == NULL || strlen(subject) > SUBJECT_MAX)
		return TOKEN_BAD;
	const char *dot = strchr(token, '.');
	if (dot == NULL || dot == token || dot - token > 18 || strlen(dot + 1) != MAC_B64_LEN)
		return TOKEN_BAD;
	/* Decimal digits only, no sign, no leading zero: one spelling per
	 * time, so the text signed is the text presented. */
	char num[20];
	memcpy(num, token, (size_t)(dot - token));
	num[dot - token] = '\0';
	if (num[0] == '0')
		return TOKEN_BAD;
	for (const char *q = num; *q; q++)
		if (*q < '0' || *q > '9')
			return TOKEN_BAD;
	long long t = strtoll(num, NULL, 10);
	char want[MAC_B64_LEN + 1];
	mac_b64(k->cur, p, subject, t, want);
	bool good = CRYPTO_memcmp(want, dot + 1, MAC_B64_LEN) == 0;
	if (!good && k->has_prev) {
		mac_b64(k->prev, p, subject, t, want);
		good = CRYPTO_memcmp(want, dot + 1, MAC_B64_LEN) == 0;
	}
	if (!good)
		return TOKEN_BAD;
	if (expires)
		*expires = t;
	return t <= now ? TOKEN_EXPIRED : TOKEN_OK;
}
