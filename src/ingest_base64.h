/*
 * ingest_base64.h - decoding standard base64 (the message in
 * json_with_message) in pieces, with whitespace allowed between groups.
 */
#ifndef RQ_INGEST_BASE64_H
#define RQ_INGEST_BASE64_H

#include <stddef.h>

#include "common.h"

typedef int (*base64_out_fn)(void *arg, const void *p, size_t n, struct qerr *e);

/* The value of a base64 alphabet character, or -1 for any other byte
 * (shared with RFC 2047's lenient B decoding). */
int base64_value(unsigned char c);

/* Decodes in[0..n) and hands the bytes to out in pieces of at most 48 KB.
 * Invalid characters or a bad length: QERR_INPUT 400. */
int base64_decode_to(const char *in, size_t n, base64_out_fn out, void *arg,
		     struct qerr *e);

#endif
