/*
 * fuzz_util.h - what the libFuzzer harnesses share: the checks of the
 * invariants record.h promises for every parsed string (valid UTF-8, no
 * CR, LF or NUL), and turning fuzz input into a FastCGI environment.
 */
#ifndef RQ_FUZZ_UTIL_H
#define RQ_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charset.h"
#include "common.h"
#include "record.h"

/* Stops the run so libFuzzer records the input; the message says which
 * invariant broke. */
#define FUZZ_ASSERT(cond)                                                        \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, \
				__LINE__, #cond);                                \
			abort();                                                 \
		}                                                                \
	} while (0)

/* A parsed string must be safe to log and to show: UTF-8, one line. */
static inline void fuzz_check_str(const char *s)
{
	if (s == NULL)
		return;
	size_t n = strlen(s);
	FUZZ_ASSERT(utf8_valid(s, n));
	FUZZ_ASSERT(strchr(s, '\r') == NULL);
	FUZZ_ASSERT(strchr(s, '\n') == NULL);
}

/* Every string field of a qmeta filled by a parser. */
static inline void fuzz_check_qmeta(const struct qmeta *m)
{
	fuzz_check_str(m->qid);
	fuzz_check_str(m->env_from);
	fuzz_check_str(m->user);
	fuzz_check_str(m->ip);
	fuzz_check_str(m->action);
	fuzz_check_str(m->rspamd_server);
	fuzz_check_str(m->rspamd_subject);
	fuzz_check_str(m->symbols_json);
	fuzz_check_str(m->fuzzy_json);
	fuzz_check_str(m->hdr_from);
	fuzz_check_str(m->hdr_to);
	fuzz_check_str(m->hdr_cc);
	fuzz_check_str(m->hdr_subject);
	fuzz_check_str(m->hdr_date);
	fuzz_check_str(m->hdr_msgid);
	fuzz_check_str(m->policy);
	FUZZ_ASSERT(m->nrcpt == 0 || m->rcpt != NULL);
	for (size_t i = 0; i < m->nrcpt; i++) {
		FUZZ_ASSERT(m->rcpt[i] != NULL);
		fuzz_check_str(m->rcpt[i]);
	}
}

/* An environment from "NAME=VALUE" lines ending in LF, up to *used bytes
 * (an empty line ends it early; *used then points past it).  Lines
 * without '=' are skipped, as libfcgi never passes them.  The array is
 * NULL-terminated and every string allocated. */
static inline char **fuzz_envp(const uint8_t *data, size_t size, size_t *used,
			       size_t *n_out)
{
	size_t cap = 8, n = 0, i = 0;
	char **env = xcalloc(cap, sizeof *env);
	while (i < size) {
		const uint8_t *nl = memchr(data + i, '\n', size - i);
		size_t len = nl ? (size_t)(nl - (data + i)) : size - i;
		size_t next = i + len + (nl ? 1 : 0);
		if (len == 0) {
			i = next;
			break;
		}
		if (memchr(data + i, '=', len) && !memchr(data + i, '\0', len)) {
			if (n + 2 > cap) {
				cap *= 2;
				env = xrealloc(env, cap * sizeof *env);
			}
			env[n++] = xstrndup((const char *)data + i, len);
		}
		i = next;
	}
	env[n] = NULL;
	*used = i;
	*n_out = n;
	return env;
}

/* Frees what fuzz_envp returned. */
static inline void fuzz_envp_free(char **env, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(env[i]);
	free(env);
}

/* A NUL-terminated copy of the input. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* The size of the next piece of a body fed in pieces: all that is left
 * when sizes is NULL, else the next of the four sizes (1..256) the
 * input chose, cycling; *k counts the pieces. */
static inline size_t fuzz_piece(size_t left, const uint8_t *sizes, size_t *k)
{
	if (sizes == NULL)
		return left;
	size_t want = (size_t)sizes[(*k)++ % 4] + 1;
	return want < left ? want : left;
}

#endif
