/*
 * ingest_rfc2047.h - decoding header values with RFC 2047 encoded words
 * (=?charset?B|Q?...?=) to UTF-8.  Adjacent encoded words in the same
 * charset are joined as bytes before conversion (Rspamd splits UTF-8
 * characters across words), whitespace between encoded words is dropped,
 * raw 8-bit text is read as UTF-8 or else Windows-1252, and control
 * characters that decoding produces (CR, LF, NUL) become spaces.
 */
#ifndef RQ_INGEST_RFC2047_H
#define RQ_INGEST_RFC2047_H

#include <stddef.h>

/* Returns a newly allocated UTF-8 string; never NULL.  Malformed encoded
 * words are kept as the literal text. */
char *rfc2047_decode(const char *in, size_t len);

#endif
