/*
 * json_syntax.h - checks that text is one JSON value (RFC 8259) without
 * building it: for JSON that is only kept as text, such as the symbols
 * header, whose values the ingest path never looks at.
 */
#ifndef RQ_JSON_SYNTAX_H
#define RQ_JSON_SYNTAX_H

#include <stddef.h>

/* Deepest nesting accepted, counted as jansson's decoder counts it: every
 * value (containers and scalars, not object keys) one level below the
 * one holding it, the top-level value at level 1. */
#define JSON_SYNTAX_MAX_DEPTH 2048

/*
 * Returns 0 if p[0..n) is exactly one JSON value with optional white
 * space around it, and, when top is '[' or '{', that value is an array or
 * an object respectively (top 0 accepts any value).  Otherwise returns -1
 * and writes a one-line reason with the byte offset to err (errlen bytes,
 * may be 0).  Accepts what jansson's json_loadb(p, n, JSON_DECODE_ANY)
 * accepts, except numbers jansson cannot hold (integers beyond 64 bits,
 * reals beyond a double's range), which are valid JSON and accepted here.
 * The text must be valid UTF-8; "\u0000" and unpaired surrogate escapes
 * are refused, as jansson refuses them.  Allocates nothing.
 */
int json_syntax_check(const char *p, size_t n, char top, char *err, size_t errlen);

#endif
