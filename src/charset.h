/*
 * charset.h - turning bytes of some charset into UTF-8 (glibc iconv),
 * and the fallback for 8-bit bytes that are not UTF-8: Windows-1252, as
 * mail clients read unlabelled 8-bit headers.
 */
#ifndef RQ_CHARSET_H
#define RQ_CHARSET_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

/* True if p[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
bool utf8_valid(const void *p, size_t n);
/* Appends bytes as UTF-8: kept as they are if valid UTF-8, else each
 * byte read as Windows-1252. */
void charset_append_8bit(struct buf *out, const void *p, size_t n);
/* Appends bytes in the named charset as UTF-8.  Returns -1 (appending
 * nothing) if iconv does not know the charset; invalid sequences become
 * U+FFFD. */
int charset_append(struct buf *out, const char *charset, const void *p, size_t n);
/* Cuts the string s to at most max bytes without splitting a UTF-8
 * character. */
void utf8_cut(char *s, size_t max);
/* Replaces CR, LF, NUL and other C0 controls but TAB with a space, in place. */
void charset_strip_controls(char *s);
/* For text shown on one line (metadata values): what
 * charset_strip_controls blanks, and DEL and the C1 controls
 * U+0080..U+009F too, in place.  s must be valid UTF-8; it stays so. */
void charset_blank_all_controls(char *s);

#endif
