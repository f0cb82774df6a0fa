/*
 * ingest_msghdr.c - owns reading the message's own header for display:
 * finding where the header ends, unfolding, and decoding From, To, Cc,
 * Subject, Date and Message-ID to UTF-8.
 */
#include "ingest_msghdr.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "charset.h"
#include "common.h"
#include "ingest_rfc2047.h"

/* Longest decoded value kept for one field (bytes of UTF-8). */
#define MSGHDR_VALUE_MAX 4096
/* Longest raw (unfolded) value looked at; more cannot fit the above. */
#define MSGHDR_RAW_MAX 65536

enum field { F_FROM, F_TO, F_CC, F_SUBJECT, F_DATE, F_MSGID, F_COUNT };

static const char *const field_names[F_COUNT] = {
	"From", "To", "Cc", "Subject", "Date", "Message-ID",
};

size_t msghdr_end(const char *p, size_t n)
{
	/* A message that starts with an empty line has an empty header. */
	if (n >= 1 && p[0] == '\n')
		return 1;
	if (n >= 2 && p[0] == '\r' && p[1] == '\n')
		return 2;
	const char *s = p;
	size_t left = n;
	while (left > 0) {
		const char *nl = memchr(s, '\n', left);
		if (nl == NULL)
			return 0;
		size_t off = (size_t)(nl - p) + 1;
		if (off < n && p[off] == '\n')
			return off + 1;
		if (off + 1 < n && p[off] == '\r' && p[off + 1] == '\n')
			return off + 2;
		s = nl + 1;
		left = n - off;
	}
	return 0;
}

/* Which of the wanted fields a header name is, or -1. */
static int field_lookup(const char *name, size_t n)
{
	for (int f = 0; f < F_COUNT; f++)
		if (strlen(field_names[f]) == n && strncasecmp(field_names[f], name, n) == 0)
			return f;
	return -1;
}

static char **field_slot(struct qmeta *m, int f)
{
	switch (f) {
	case F_FROM: return &m->hdr_from;
	case F_TO: return &m->hdr_to;
	case F_CC: return &m->hdr_cc;
	case F_SUBJECT: return &m->hdr_subject;
	case F_DATE: return &m->hdr_date;
	default: return &m->hdr_msgid;
	}
}

/* Trims blanks (spaces, tabs) at both ends, in place. */
static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* Message-ID is an identifier: shown without the angle brackets, never
 * decoded as encoded words, but still made valid UTF-8. */
static char *decode_msgid(const char *raw, size_t n)
{
	struct buf b = { 0 };
	charset_append_8bit(&b, raw, n);
	char *s = buf_steal(&b);
	charset_strip_controls(s);
	char *t = trim(s);
	size_t len = strlen(t);
	if (len >= 2 && t[0] == '<' && t[len - 1] == '>') {
		t[len - 1] = '\0';
		t = trim(t + 1);
	}
	char *r = xstrdup(t);
	free(s);
	return r;
}

/* Decodes one unfolded raw value and stores it into its field. */
static void store_field(struct qmeta *m, int f, const char *raw, size_t n)
{
	char *v;
	if (f == F_MSGID) {
		v = decode_msgid(raw, n);
	} else {
		char *d = rfc2047_decode(raw, n);
		charset_strip_controls(d);
		v = xstrdup(trim(d));
		free(d);
	}
	utf8_cut(v, MSGHDR_VALUE_MAX);
	char **slot = field_slot(m, f);
	free(*slot);
	*slot = v;
}

int msghdr_starts_mail(const void *data, size_t n)
{
	const unsigned char *p = data;
	static const char mbox[] = "From ";
	if (memcmp(p, mbox, n < 5 ? n : 5) == 0)
		return n >= 5 ? 1 : -1;
	/* field-name = 1*ftext, printable US-ASCII but the colon */
	size_t i = 0;
	while (i < n && p[i] >= 33 && p[i] <= 126 && p[i] != ':')
		i++;
	if (i == 0 && n > 0)
		return 0;
	/* RFC 5322's obsolete syntax allows blanks before the colon. */
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i == n)
		return n >= MSGHDR_START_MAX ? 0 : -1;
	return p[i] == ':';
}

void msghdr_parse(const char *msg, size_t len, struct qmeta *m)
{
	bool seen[F_COUNT] = { false };
	struct buf val = { 0 };
	int cur = -1; /* field whose value is being collected */
	size_t pos = 0;

	if (msg == NULL)
		return;
	while (pos < len) {
		const char *line = msg + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t linelen = nl ? (size_t)(nl - line) : len - pos;
		size_t next = pos + linelen + (nl ? 1 : 0);
		size_t body = linelen;
		if (body > 0 && line[body - 1] == '\r')
			body--;
		if (body == 0)
			break; /* the empty line that ends the header */
		if (line[0] == ' ' || line[0] == '\t') {
			/* Continuation: unfolding drops only the line break. */
			if (cur >= 0 && val.len < MSGHDR_RAW_MAX) {
				size_t take = body;
				if (take > MSGHDR_RAW_MAX - val.len)
					take = MSGHDR_RAW_MAX - val.len;
				buf_append(&val, line, take);
			}
			pos = next;
			continue;
		}
		if (cur >= 0) {
			store_field(m, cur, val.data ? val.data : "", val.len);
			seen[cur] = true;
			cur = -1;
		}
		const char *colon = memchr(line, ':', body);
		if (colon != NULL) {
			size_t namelen = (size_t)(colon - line);
			/* "Subject :" is obsolete syntax but still seen. */
			while (namelen > 0 && (line[namelen - 1] == ' ' || line[namelen - 1] == '\t'))
				namelen--;
			int f = field_lookup(line, namelen);
			if (f >= 0 && !seen[f]) {
				cur = f;
				val.len = 0;
				size_t take = body - (size_t)(colon - line) - 1;
				if (take > MSGHDR_RAW_MAX)
					take = MSGHDR_RAW_MAX;
				buf_append(&val, colon + 1, take);
			}
		}
		pos = next;
	}
	if (cur >= 0)
		store_field(m, cur, val.data ? val.data : "", val.len);
	buf_free(&val);
}
