/*
 * ingest_multipart.c - owns the streaming multipart/form-data parser
 * (RFC 7578 on top of RFC 2046) used for the body of Rspamd's multipart
 * formatter, and the extraction of the boundary from Content-Type.
 *
 * The parser is a byte-at-a-time state machine, so the body may arrive
 * in pieces of any size.  Part content is handed to the caller as runs
 * of the input it was fed; the only bytes kept between two feeds are
 * those that may still turn out to be the start of a delimiter (at most
 * CR + LF + "--" + the boundary), and the header block of the part being
 * read (capped at 16 KB).  A whole part is never buffered.
 *
 * Delimiters are CRLF "--" boundary, and LF "--" boundary is accepted
 * too.  The body may begin with "--" boundary directly or after a
 * preamble, which is skipped.  After a delimiter only transport padding
 * (spaces, tabs) and a line end, or "--" (the close delimiter) may
 * follow; anything else is an error rather than content, since RFC 2046
 * forbids the delimiter inside a part.  The epilogue after the close
 * delimiter is ignored.
 */
#include "ingest_multipart.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MP_MAX_BOUNDARY 70
#define MP_MAX_HEADER 16384
#define MP_MAX_PARTS 64

enum mp_state {
	MP_DATA,        /* preamble (no part yet) or a part's content */
	MP_AFTER_DELIM, /* right after "--boundary" */
	MP_AFTER_DASH,  /* "--boundary-": one more '-' closes the body */
	MP_PADDING,     /* transport padding after a delimiter */
	MP_AFTER_CR,    /* CR after a delimiter, LF must follow */
	MP_HEADERS,     /* a part's header block */
	MP_EPILOGUE,    /* after the close delimiter: ignored */
	MP_FAILED,
};

struct multipart {
	struct multipart_cb cb;
	void *arg;
	enum mp_state state;
	bool bad_boundary;

	/* The delimiter pattern: "\n--" boundary.  A CR just before it is
	 * part of the delimiter too. */
	char pat[3 + MP_MAX_BOUNDARY + 1];
	size_t patlen;

	/* Delimiter matching inside MP_DATA: while holding, the held bytes
	 * are an optional CR followed by the first matched bytes of pat
	 * (holding with matched == 0 means a lone CR).  They are data after
	 * all if the match fails. */
	size_t matched;
	bool holding;
	/* Held bytes that came from earlier feeds (the rest of the held
	 * bytes are still in the current input). */
	char carry[1 + 3 + MP_MAX_BOUNDARY + 1];
	size_t carry_len;

	bool in_part;   /* MP_DATA is a part's content, not the preamble */
	int nparts;

	/* The current part's header block, lines joined by '\n'. */
	char *hdr;
	size_t hdr_len;
	size_t line_start; /* where the current line begins in hdr */
	size_t hdr_raw;    /* bytes of the block as received, line ends included */
};

/* Characters RFC 2046 allows in a boundary (bchars). */
static bool is_bchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && strchr("'()+_,-./:=? ", c) != NULL;
}

static bool valid_boundary(const char *b, size_t n)
{
	if (n == 0 || n > MP_MAX_BOUNDARY || b[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_bchar((unsigned char)b[i]))
			return false;
	return true;
}

/* Skips spaces and tabs, as allowed around parameters. */
static const char *skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/*
 * Reads one parameter value at *sp (a quoted string with backslash
 * escapes, or a token up to ';' or white space) into out.  Returns its
 * length, or -1 if it is unterminated or does not fit.  *sp is left
 * after the value.
 */
static long read_param_value(const char **sp, char *out, size_t outlen)
{
	const char *s = *sp;
	size_t n = 0;
	if (*s == '"') {
		s++;
		for (;;) {
			if (*s == '\0')
				return -1;
			if (*s == '"') {
				s++;
				break;
			}
			if (*s == '\\' && s[1] != '\0')
				s++;
			if (n + 1 >= outlen)
				return -1;
			out[n++] = *s++;
		}
	} else {
		while (*s != '\0' && *s != ';' && *s != ' ' && *s != '\t') {
			if (n + 1 >= outlen)
				return -1;
			out[n++] = *s++;
		}
	}
	out[n] = '\0';
	*sp = s;
	return (long)n;
}

/*
 * Walks the "; name=value" parameters that follow a header's first
 * value and copies the one called want (case-insensitive) into out.
 * Returns its length, PARAM_ABSENT (out is then ""), or PARAM_BAD if
 * the list is malformed, the value does not fit or the parameter is
 * given twice (an ambiguity best refused).
 */
#define PARAM_ABSENT (-1)
#define PARAM_BAD (-2)
static long find_param(const char *s, const char *want, char *out, size_t outlen)
{
	bool found = false;
	long len = 0;
	char scratch[1024];
	out[0] = '\0';
	/* Skip the value before the first ';' (quotes respected). */
	bool q = false;
	while (*s != '\0' && (q || *s != ';')) {
		if (*s == '"')
			q = !q;
		else if (q && *s == '\\' && s[1] != '\0')
			s++;
		s++;
	}
	while (*s == ';') {
		s = skip_ws(s + 1);
		if (*s == '\0' || *s == ';')
			continue; /* empty parameter, as in "a;;b" or a trailing ';' */
		const char *name = s;
		while (*s != '\0' && *s != '=' && *s != ';' && *s != ' ' && *s != '\t')
			s++;
		size_t namelen = (size_t)(s - name);
		s = skip_ws(s);
		if (*s != '=')
			return PARAM_BAD;
		s = skip_ws(s + 1);
		bool is_want = namelen == strlen(want) && strncasecmp(name, want, namelen) == 0;
		if (is_want && found)
			return PARAM_BAD;
		long v = is_want ? read_param_value(&s, out, outlen)
				 : read_param_value(&s, scratch, sizeof scratch);
		if (v < 0) {
			out[0] = '\0';
			return PARAM_BAD;
		}
		if (is_want) {
			found = true;
			len = v;
		}
		s = skip_ws(s);
		if (*s != '\0' && *s != ';')
			return PARAM_BAD;
	}
	return found ? len : PARAM_ABSENT;
}

/* For the caller that routes on Content-Type: the boundary, validated
 * against RFC 2046, so the parser never sees a pattern it cannot match. */
int multipart_boundary(const char *content_type, char *out, size_t outlen)
{
	char b[MP_MAX_BOUNDARY + 2];
	if (content_type == NULL || out == NULL || outlen == 0)
		return -1;
	out[0] = '\0';
	const char *s = skip_ws(content_type);
	if (strncasecmp(s, "multipart/", 10) != 0)
		return -1;
	long n = find_param(s, "boundary", b, sizeof b);
	if (n <= 0 || !valid_boundary(b, (size_t)n) || (size_t)n + 1 > outlen)
		return -1;
	memcpy(out, b, (size_t)n + 1);
	return 0;
}

struct multipart *multipart_new(const char *boundary, const struct multipart_cb *cb, void *arg)
{
	struct multipart *mp = xcalloc(1, sizeof *mp);
	mp->cb = *cb;
	mp->arg = arg;
	size_t blen = boundary ? strlen(boundary) : 0;
	if (!valid_boundary(boundary ? boundary : "", blen)) {
		/* Reported by the first feed: this function has no error. */
		mp->bad_boundary = true;
		blen = 0;
	}
	memcpy(mp->pat, "\n--", 3);
	if (blen)
		memcpy(mp->pat + 3, boundary, blen);
	mp->patlen = 3 + blen;
	mp->hdr = xmalloc(MP_MAX_HEADER + 1);
	/* The body may start with "--boundary": act as if a line end came
	 * before it.  That virtual LF is preamble, so it is never data. */
	mp->state = MP_DATA;
	mp->matched = 1;
	mp->holding = true;
	mp->carry[0] = '\n';
	mp->carry_len = 1;
	return mp;
}

void multipart_free(struct multipart *mp)
{
	if (mp == NULL)
		return;
	free(mp->hdr);
	free(mp);
}

/* Records a malformed body; the parser refuses further input. */
static int mp_fail(struct multipart *mp, struct qerr *e, const char *what)
{
	mp->state = MP_FAILED;
	return qerr_input(e, 400, "bad multipart body: %s", what);
}

/* Part content goes to the caller; preamble bytes go nowhere. */
static int emit(struct multipart *mp, const void *p, size_t n, struct qerr *e)
{
	if (n == 0 || !mp->in_part || mp->cb.part_data == NULL)
		return 0;
	if (mp->cb.part_data(mp->arg, p, n, e) < 0) {
		mp->state = MP_FAILED;
		return -1;
	}
	return 0;
}

/* Held bytes from earlier feeds turned out to be data. */
static int release_carry(struct multipart *mp, struct qerr *e)
{
	size_t n = mp->carry_len;
	mp->carry_len = 0;
	return emit(mp, mp->carry, n, e);
}

/* Copies the value of a header line "Name: value" if its name is want. */
static const char *header_value(const char *line, const char *want)
{
	size_t wl = strlen(want);
	if (strncasecmp(line, want, wl) != 0)
		return NULL;
	const char *s = skip_ws(line + wl);
	if (*s != ':')
		return NULL;
	return skip_ws(s + 1);
}

/* Trims trailing white space in place. */
static void rtrim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
}

/*
 * The header block is complete: pick out the disposition parameters and
 * the content type, and tell the caller a part begins.
 */
static int parse_part_headers(struct multipart *mp, struct qerr *e)
{
	char name[1024], filename[1024];
	const char *disp = NULL, *ctype = NULL;
	bool have_name = false, have_filename = false;

	mp->hdr[mp->hdr_len] = '\0';
	/* Lines are separated by '\n' and already checked for a colon. */
	for (char *line = mp->hdr; line != NULL && *line != '\0';) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		const char *v;
		if (disp == NULL && (v = header_value(line, "Content-Disposition")) != NULL)
			disp = v;
		else if (ctype == NULL && (v = header_value(line, "Content-Type")) != NULL)
			ctype = v;
		line = nl ? nl + 1 : NULL;
	}
	if (disp != NULL) {
		long n = find_param(disp, "name", name, sizeof name);
		if (n == PARAM_BAD)
			return mp_fail(mp, e, "malformed Content-Disposition parameters");
		have_name = n >= 0;
		n = find_param(disp, "filename", filename, sizeof filename);
		if (n == PARAM_BAD)
			return mp_fail(mp, e, "malformed Content-Disposition parameters");
		have_filename = n >= 0;
	}
	char ct[1024];
	if (ctype != NULL) {
		size_t l = strlen(ctype);
		if (l >= sizeof ct)
			return mp_fail(mp, e, "part Content-Type too long");
		memcpy(ct, ctype, l + 1);
		rtrim(ct);
	}
	mp->in_part = true;
	mp->matched = 0;
	mp->holding = false;
	mp->carry_len = 0;
	mp->state = MP_DATA;
	if (mp->cb.part_begin != NULL &&
	    mp->cb.part_begin(mp->arg, have_name ? name : NULL, have_filename ? filename : NULL,
			      ctype ? ct : NULL, e) < 0) {
		mp->state = MP_FAILED;
		return -1;
	}
	return 0;
}

/*
 * One byte of the part header block.  Lines are kept, joined by '\n'
 * (folded lines joined by a space), so the block can be parsed when the
 * empty line arrives.
 */
static int header_byte(struct multipart *mp, unsigned char c, struct qerr *e)
{
	if (++mp->hdr_raw > MP_MAX_HEADER)
		return mp_fail(mp, e, "part header block exceeds 16384 bytes");
	if (c != '\n') {
		if (c == '\0')
			return mp_fail(mp, e, "NUL byte in part header");
		mp->hdr[mp->hdr_len++] = (char)c;
		return 0;
	}
	/* End of a line: drop its CR. */
	size_t end = mp->hdr_len;
	if (end > mp->line_start && mp->hdr[end - 1] == '\r')
		end--;
	mp->hdr_len = end;
	char *line = mp->hdr + mp->line_start;
	size_t len = end - mp->line_start;
	if (len == 0) {
		/* The empty line: the header block is complete. */
		if (mp->line_start > 0)
			mp->hdr_len = mp->line_start - 1; /* drop the last '\n' */
		return parse_part_headers(mp, e);
	}
	if (memchr(line, '\r', len) != NULL)
		return mp_fail(mp, e, "bare CR in part header");
	if ((line[0] == ' ' || line[0] == '\t') && mp->line_start > 0) {
		/* A folded line continues the previous one. */
		mp->hdr[mp->line_start - 1] = ' ';
	} else if (memchr(line, ':', len) == NULL) {
		return mp_fail(mp, e, "part header line without colon");
	}
	mp->hdr[mp->hdr_len++] = '\n';
	mp->line_start = mp->hdr_len;
	return 0;
}

/* A delimiter line has ended: the next part's headers follow. */
static int start_headers(struct multipart *mp, struct qerr *e)
{
	if (mp->nparts >= MP_MAX_PARTS)
		return mp_fail(mp, e, "more than 64 parts");
	mp->nparts++;
	mp->hdr_len = 0;
	mp->line_start = 0;
	mp->hdr_raw = 0;
	mp->state = MP_HEADERS;
	return 0;
}

/* A complete delimiter was matched in MP_DATA: the part (if any) ends. */
static int delimiter_found(struct multipart *mp, struct qerr *e)
{
	mp->carry_len = 0;
	mp->holding = false;
	mp->matched = 0;
	if (mp->in_part) {
		mp->in_part = false;
		if (mp->cb.part_end != NULL && mp->cb.part_end(mp->arg, e) < 0) {
			mp->state = MP_FAILED;
			return -1;
		}
	}
	mp->state = MP_AFTER_DELIM;
	return 0;
}

/*
 * Scans content for the delimiter from input[*ip].  Returns when the
 * input is used up (content flushed, possible delimiter start held) or
 * a delimiter was found (*ip just after it).  Content is emitted as one
 * run of the input per call; held bytes are either still in the input
 * (from hs on) or, when they came from an earlier feed, in carry.  Carry
 * is only non-empty while nothing of this input is pending, so emitting
 * it first keeps the order.
 */
static int scan_data(struct multipart *mp, const unsigned char *in, size_t n, size_t *ip,
		     struct qerr *e)
{
	size_t i = *ip;
	size_t run = i; /* content from here not yet emitted */
	size_t hs = i;  /* where the held bytes of this input begin */

	for (; i < n; i++) {
		unsigned char c = in[i];
		if (mp->holding && mp->matched < mp->patlen && c == (unsigned char)mp->pat[mp->matched]) {
			if (++mp->matched == mp->patlen) {
				/* Content ends where the held bytes began. */
				if (mp->carry_len == 0 && emit(mp, in + run, hs - run, e) < 0)
					return -1;
				*ip = i + 1;
				return delimiter_found(mp, e);
			}
			continue;
		}
		/* No delimiter here: what was held is content after all. */
		if (mp->holding) {
			if (mp->carry_len > 0 && release_carry(mp, e) < 0)
				return -1;
			mp->holding = false;
		}
		if (c == '\r' || c == '\n') {
			/* Possibly the start of the next delimiter.  The content
			 * before it stays pending in [run, hs). */
			hs = i;
			mp->holding = true;
			mp->matched = c == '\n';
		}
	}
	/* End of this input: flush content, keep the held bytes. */
	if (mp->holding) {
		if (emit(mp, in + run, hs - run, e) < 0)
			return -1;
		size_t h = n - hs;
		memcpy(mp->carry + mp->carry_len, in + hs, h);
		mp->carry_len += h;
	} else if (emit(mp, in + run, n - run, e) < 0) {
		return -1;
	}
	*ip = n;
	return 0;
}

/* Feeds the next piece of the body, of any size. */
int multipart_feed(struct multipart *mp, const void *p, size_t n, struct qerr *e)
{
	const unsigned char *in = p;
	size_t i = 0;

	if (mp->bad_boundary)
		return mp_fail(mp, e, "invalid boundary");
	if (mp->state == MP_FAILED)
		return qerr_input(e, 400, "bad multipart body: parse already failed");
	while (i < n) {
		unsigned char c;
		switch (mp->state) {
		case MP_DATA:
			if (scan_data(mp, in, n, &i, e) < 0)
				return -1;
			break;
		case MP_AFTER_DELIM:
			c = in[i++];
			if (c == '-')
				mp->state = MP_AFTER_DASH;
			else if (c == ' ' || c == '\t')
				mp->state = MP_PADDING;
			else if (c == '\r')
				mp->state = MP_AFTER_CR;
			else if (c == '\n') {
				if (start_headers(mp, e) < 0)
					return -1;
			} else
				return mp_fail(mp, e, "unexpected bytes after a boundary");
			break;
		case MP_AFTER_DASH:
			c = in[i++];
			if (c != '-')
				return mp_fail(mp, e, "unexpected bytes after a boundary");
			mp->state = MP_EPILOGUE;
			break;
		case MP_PADDING:
			c = in[i++];
			if (c == '\r')
				mp->state = MP_AFTER_CR;
			else if (c == '\n') {
				if (start_headers(mp, e) < 0)
					return -1;
			} else if (c != ' ' && c != '\t')
				return mp_fail(mp, e, "unexpected bytes after a boundary");
			break;
		case MP_AFTER_CR:
			c = in[i++];
			if (c != '\n')
				return mp_fail(mp, e, "CR without LF after a boundary");
			if (start_headers(mp, e) < 0)
				return -1;
			break;
		case MP_HEADERS:
			if (header_byte(mp, in[i++], e) < 0)
				return -1;
			break;
		case MP_EPILOGUE:
			return 0;
		case MP_FAILED:
			return qerr_input(e, 400, "bad multipart body: parse already failed");
		}
	}
	return 0;
}

/* The body is complete only once the close delimiter was read. */
int multipart_finish(struct multipart *mp, struct qerr *e)
{
	if (mp->bad_boundary)
		return mp_fail(mp, e, "invalid boundary");
	switch (mp->state) {
	case MP_EPILOGUE:
		return 0;
	case MP_FAILED:
		return qerr_input(e, 400, "bad multipart body: parse already failed");
	case MP_DATA:
		if (mp->nparts == 0)
			return mp_fail(mp, e, "no boundary found");
		return mp_fail(mp, e, "no closing boundary");
	case MP_HEADERS:
		return mp_fail(mp, e, "body ends inside a part header");
	default:
		return mp_fail(mp, e, "no closing boundary");
	}
}
