/*
 * ingest_meta.h - Rspamd's metadata, from the meta headers (FastCGI
 * parameters HTTP_X_RSPAMD_*) or from the JSON metadata of the
 * json_with_message and multipart formatters.
 */
#ifndef RQ_INGEST_META_H
#define RQ_INGEST_META_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "record.h"

/* The FastCGI parameter name for a meta key: prefix "X-Rspamd-" and key
 * "rspamd_server" give "HTTP_X_RSPAMD_RSPAMD_SERVER".  Returns -1 if out
 * is too small. */
int meta_param_name(const char *prefix, const char *key, char *out, size_t outlen);

/* Looks name up in a FastCGI environment (NULL-terminated "K=V"). */
const char *meta_getenv(char *const *envp, const char *name);

/* Parses the rcpt value: a JSON array of strings, or the bare word
 * "unknown" (no recipients).  Bad JSON or a non-string element is
 * QERR_INPUT 400. */
int meta_parse_rcpt(const char *value, char ***rcpt, size_t *n, struct qerr *e);

/* Fills m from the meta headers found in envp (fields not sent are left
 * as they are; the value "unknown" is taken as not sent).  Scalar values
 * are RFC 2047 decoded; symbols and fuzzy must be JSON arrays.  Returns 1
 * if any meta header was present, 0 if none, -1 on bad input. */
int meta_from_params(char *const *envp, const char *prefix, struct qmeta *m,
		     struct qerr *e);

/* Fills m from a JSON metadata object (keys of PROTOCOL.md §3).  Fields
 * already set in m are overwritten by the JSON's. */
int meta_from_json(json_t *obj, struct qmeta *m, struct qerr *e);

/* True if meta_from_json reads the key: the msgpack formatter's parser
 * keeps only these keys' values. */
bool meta_json_key_known(const char *key);

#endif
