/*
 * addr_path.h - turning a recipient address into the name of its
 * directory in the file store.  No address can name a path outside the
 * store: every byte outside [a-z0-9.+_-] is %XX-encoded, a leading dot
 * too, and overlong names are cut and suffixed with a hash.
 */
#ifndef RQ_ADDR_PATH_H
#define RQ_ADDR_PATH_H

#include <stddef.h>

/* Longest component addr_path produces (well under NAME_MAX). */
#define ADDR_PATH_COMPONENT_MAX 200

/* Writes "domain/local" (both lower-cased, sanitized) for addr into out.
 * An address without '@' gets the domain "_local"; an empty local part
 * "_".  Returns 0, or -1 if outlen is too small (it never is with
 * 2 * ADDR_PATH_COMPONENT_MAX + 2). */
int addr_path(const char *addr, char *out, size_t outlen);

#endif
