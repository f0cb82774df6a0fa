/*
 * ingest_meta.c - owns reading Rspamd's metadata into a struct qmeta:
 * from the meta headers (FastCGI parameters HTTP_<PREFIX>_<KEY>) and from
 * the JSON object of the json_with_message and multipart formatters.
 * Every string that leaves here is valid UTF-8 without CR, LF or NUL.
 */
#include "ingest_meta.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "charset.h"
#include "ingest_rfc2047.h"
#include "json_syntax.h"

/* Most recipients one message may carry; far above any MTA's limit. */
#define META_RCPT_MAX 100000
/* Longest recipient address accepted (bytes). */
#define META_RCPT_LEN_MAX 1024
/* Longest scalar value kept (bytes of UTF-8). */
#define META_VALUE_MAX 4096
/* Longest scan time believed, in milliseconds (a day). */
#define META_SCAN_TIME_MAX 86400000L

int meta_param_name(const char *prefix, const char *key, char *out, size_t outlen)
{
	size_t n = 0;
	const char *parts[3] = { "HTTP_", prefix ? prefix : "", key ? key : "" };
	for (int p = 0; p < 3; p++) {
		for (const char *s = parts[p]; *s; s++) {
			char c = *s;
			if (c >= 'a' && c <= 'z')
				c = (char)(c - 'a' + 'A');
			else if (c == '-')
				c = '_';
			if (n + 1 >= outlen)
				return -1;
			out[n++] = c;
		}
	}
	if (outlen == 0)
		return -1;
	out[n] = '\0';
	return 0;
}

/* Names are compared without regard to case: web servers upper-case
 * them, but nothing is lost by being lenient. */
const char *meta_getenv(char *const *envp, const char *name)
{
	if (envp == NULL || name == NULL)
		return NULL;
	size_t n = strlen(name);
	for (; *envp; envp++)
		if (strncasecmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* A copy of s[0..n) as valid UTF-8 without controls, trimmed of blanks
 * and cut to META_VALUE_MAX. */
static char *clean_text(const char *s, size_t n)
{
	struct buf b = { 0 };
	charset_append_8bit(&b, s, n);
	/* NUL bytes inside would end the C string early: blank them first. */
	for (size_t i = 0; i < b.len; i++)
		if (b.data[i] == '\0')
			b.data[i] = ' ';
	char *v = buf_steal(&b);
	charset_blank_all_controls(v);
	char *t = v;
	while (*t == ' ' || *t == '\t')
		t++;
	size_t len = strlen(t);
	while (len > 0 && (t[len - 1] == ' ' || t[len - 1] == '\t'))
		len--;
	memmove(v, t, len);
	v[len] = '\0';
	utf8_cut(v, META_VALUE_MAX);
	return v;
}

/* Takes over value as the new content of *field. */
static void set_owned(char **field, char *value)
{
	free(*field);
	*field = value;
}

/* Shared by the header and JSON forms: arr is a JSON array of address
 * strings.  `what` names the source in error messages. */
static int rcpt_from_array(json_t *arr, const char *what, char ***rcpt, size_t *n,
			   struct qerr *e)
{
	size_t count = json_array_size(arr);
	if (count > META_RCPT_MAX)
		return qerr_input(e, 400, "too many recipients in %s: %zu (at most %d)", what,
				  count, META_RCPT_MAX);
	char **v = xcalloc(count ? count : 1, sizeof *v);
	size_t k = 0;
	for (size_t i = 0; i < count; i++) {
		json_t *el = json_array_get(arr, i);
		if (!json_is_string(el)) {
			xfree_strv(v, k);
			return qerr_input(e, 400, "%s: recipient %zu is not a string", what, i + 1);
		}
		const char *s = json_string_value(el);
		size_t len = json_string_length(el);
		if (len > META_RCPT_LEN_MAX) {
			xfree_strv(v, k);
			return qerr_input(e, 400, "%s: recipient %zu is longer than %d bytes", what,
					  i + 1, META_RCPT_LEN_MAX);
		}
		if (strlen(s) != len || strpbrk(s, "\r\n") != NULL) {
			xfree_strv(v, k);
			return qerr_input(e, 400, "%s: recipient %zu contains NUL, CR or LF", what,
					  i + 1);
		}
		if (len == 0)
			continue; /* an empty entry names nobody */
		v[k++] = xstrndup(s, len);
	}
	if (k == 0) {
		free(v);
		v = NULL;
	}
	*rcpt = v;
	*n = k;
	return 0;
}

static bool is_unknown(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (strncmp(s, "unknown", 7) != 0)
		return false;
	for (s += 7; *s; s++)
		if (*s != ' ' && *s != '\t')
			return false;
	return true;
}

int meta_parse_rcpt(const char *value, char ***rcpt, size_t *n, struct qerr *e)
{
	*rcpt = NULL;
	*n = 0;
	if (value == NULL || is_unknown(value))
		return 0;
	json_error_t jerr;
	json_t *arr = json_loads(value, JSON_REJECT_DUPLICATES, &jerr);
	if (arr == NULL)
		return qerr_input(e, 400, "rcpt is not a JSON array: %s", jerr.text);
	if (!json_is_array(arr)) {
		json_decref(arr);
		return qerr_input(e, 400, "rcpt is not a JSON array");
	}
	int r = rcpt_from_array(arr, "rcpt", rcpt, n, e);
	json_decref(arr);
	return r;
}

/* Checks that a header value is a JSON array and returns its text as it
 * came (Rspamd sends it compact): the values are not needed here, so it
 * is only checked, not parsed and serialised again.  Text that is not
 * UTF-8 is read as 8-bit first, so that a stray byte in a symbol option
 * does not lose the mail.  CR and LF can only be white space between
 * tokens of valid JSON: they become blanks, as record.h promises. */
static char *json_array_text(const char *value, const char *hname, struct qerr *e)
{
	size_t n = strlen(value);
	char *text;
	if (utf8_valid(value, n)) {
		text = xstrndup(value, n);
	} else {
		struct buf b = { 0 };
		charset_append_8bit(&b, value, n);
		n = b.len;
		text = buf_steal(&b);
	}
	char why[128];
	if (json_syntax_check(text, n, 0, why, sizeof why) < 0) {
		free(text);
		qerr_input(e, 400, "%s header is not valid JSON: %s", hname, why);
		return NULL;
	}
	if (text[strspn(text, " \t\r\n")] != '[') {
		free(text);
		qerr_input(e, 400, "%s header is not a JSON array", hname);
		return NULL;
	}
	for (char *c = text; (c = strpbrk(c, "\r\n")) != NULL; c++)
		*c = ' ';
	return text;
}

/* The keys of the meta headers, as Rspamd names them. */
enum meta_key {
	K_QID, K_FROM, K_RCPT, K_USER, K_IP, K_ACTION, K_SCORE, K_SYMBOLS,
	K_SUBJECT, K_SERVER, K_SCAN_TIME, K_FUZZY, K_SIZE, K_COUNT
};

static const char *const meta_keys[K_COUNT] = {
	"qid", "from", "rcpt", "user", "ip", "action", "score", "symbols",
	"subject", "rspamd_server", "scan_time", "fuzzy", "size",
};

/* Where a scalar key is kept, or NULL for the other keys. */
static char **scalar_slot(struct qmeta *m, int k)
{
	switch (k) {
	case K_QID: return &m->qid;
	case K_FROM: return &m->env_from;
	case K_USER: return &m->user;
	case K_IP: return &m->ip;
	case K_ACTION: return &m->action;
	case K_SUBJECT: return &m->rspamd_subject;
	case K_SERVER: return &m->rspamd_server;
	default: return NULL;
	}
}

/* A header value without surrounding blanks, newly allocated. */
static char *trimmed_copy(const char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	size_t n = strlen(v);
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return xstrndup(v, n);
}

/* Scan time in milliseconds; a fractional value is rounded. */
static int parse_scan_time(const char *v, long *out, struct qerr *e)
{
	if (parse_long(v, 0, META_SCAN_TIME_MAX, out, NULL) == 0)
		return 0;
	double d;
	if (parse_double(v, &d, NULL) == 0 && d >= 0 && d <= (double)META_SCAN_TIME_MAX) {
		*out = (long)(d + 0.5);
		return 0;
	}
	return qerr_input(e, 400, "bad scan_time: '%.40s'", v);
}

/* Applies one header value; the caller has ruled out "unknown". */
static int apply_param(struct qmeta *m, int k, const char *raw, const char *hname,
		       struct qerr *e)
{
	char **slot = scalar_slot(m, k);
	if (slot) {
		char *d = rfc2047_decode(raw, strlen(raw));
		char *v = clean_text(d, strlen(d));
		free(d);
		if (*v == '\0')
			free(v);
		else
			set_owned(slot, v);
		return 0;
	}
	switch (k) {
	case K_RCPT: {
		char **r;
		size_t n;
		if (meta_parse_rcpt(raw, &r, &n, e) < 0) {
			if (e) {
				char why[sizeof e->msg];
				memcpy(why, e->msg, sizeof why);
				qerr_input(e, 400, "%s header: %s", hname, why);
			}
			return -1;
		}
		xfree_strv(m->rcpt, m->nrcpt);
		m->rcpt = r;
		m->nrcpt = n;
		return 0;
	}
	case K_SCORE: {
		double d;
		if (parse_double(raw, &d, NULL) < 0)
			return qerr_input(e, 400, "%s header is not a number: '%.40s'", hname, raw);
		m->score = d;
		m->has_score = true;
		return 0;
	}
	case K_SCAN_TIME: {
		long ms;
		if (parse_scan_time(raw, &ms, NULL) < 0)
			return qerr_input(e, 400, "%s header is not a time in ms: '%.40s'", hname,
					  raw);
		m->scan_time = ms;
		return 0;
	}
	case K_SYMBOLS:
	case K_FUZZY: {
		char *t = json_array_text(raw, hname, e);
		if (t == NULL)
			return -1;
		set_owned(k == K_SYMBOLS ? &m->symbols_json : &m->fuzzy_json, t);
		return 0;
	}
	case K_SIZE: {
		/* Informational only: the front end measures the stored bytes. */
		long sz;
		if (parse_long(raw, 0, LONG_MAX, &sz, NULL) == 0)
			m->size = (uint64_t)sz;
		return 0;
	}
	default:
		return 0;
	}
}

/* The header's name for messages, prefix then key, cut to outlen - 1
 * bytes: what snprintf "%s%s" gave, at a tenth of its cost per key. */
static void header_name(char *out, size_t outlen, const char *prefix, const char *key)
{
	size_t n = 0;
	for (const char *parts[2] = { prefix, key }, **p = parts; p < parts + 2; p++)
		for (const char *c = *p; *c && n + 1 < outlen; c++)
			out[n++] = *c;
	out[n] = '\0';
}

int meta_from_params(char *const *envp, const char *prefix, struct qmeta *m,
		     struct qerr *e)
{
	int present = 0;
	if (prefix == NULL)
		prefix = "X-Rspamd-";
	/* The parameters are walked once for all keys, not once per key as
	 * meta_getenv would (a tenth of a request's instructions); as there,
	 * names compare without case and the first occurrence wins. */
	char pname[K_COUNT][256];
	size_t plen[K_COUNT];
	const char *val[K_COUNT] = { 0 };
	for (int k = 0; k < K_COUNT; k++) {
		if (meta_param_name(prefix, meta_keys[k], pname[k], sizeof pname[k]) < 0)
			return qerr_input(e, 400, "meta header prefix is too long");
		plen[k] = strlen(pname[k]);
	}
	for (char *const *ep = envp; ep && *ep; ep++) {
		const char *eq = strchr(*ep, '=');
		if (eq == NULL)
			continue;
		size_t len = (size_t)(eq - *ep);
		for (int k = 0; k < K_COUNT; k++) {
			if (val[k] == NULL && len == plen[k] &&
			    strncasecmp(*ep, pname[k], len) == 0) {
				val[k] = eq + 1;
				break;
			}
		}
	}
	for (int k = 0; k < K_COUNT; k++) {
		const char *v = val[k];
		if (v == NULL)
			continue;
		present = 1;
		if (is_unknown(v))
			continue;
		char hname[256];
		header_name(hname, sizeof hname, prefix, meta_keys[k]);
		char *t = trimmed_copy(v);
		int r = *t ? apply_param(m, k, t, hname, e) : 0;
		free(t);
		if (r < 0)
			return -1;
	}
	return present;
}

/* A JSON string value as clean UTF-8 text. */
static char *json_text(json_t *s)
{
	return clean_text(json_string_value(s), json_string_length(s));
}

/* Sets *slot from a JSON string; "unknown" and null leave it alone. */
static int json_scalar(json_t *obj, const char *key, char **slot, bool only_if_null,
		       struct qerr *e)
{
	json_t *v = json_object_get(obj, key);
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return qerr_input(e, 400, "metadata key \"%s\" is not a string", key);
	if (is_unknown(json_string_value(v)) || (only_if_null && *slot != NULL))
		return 0;
	char *t = json_text(v);
	if (*t == '\0')
		free(t);
	else
		set_owned(slot, t);
	return 0;
}

/* header_* keys: an array of decoded values (the first one is shown) or
 * "unknown".  Only fills a field the message's header has not. */
static int json_header_list(json_t *obj, const char *key, char **slot, struct qerr *e)
{
	json_t *v = json_object_get(obj, key);
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_string(v)) {
		if (is_unknown(json_string_value(v)))
			return 0;
		return qerr_input(e, 400, "metadata key \"%s\" is not an array", key);
	}
	if (!json_is_array(v))
		return qerr_input(e, 400, "metadata key \"%s\" is not an array", key);
	size_t i;
	json_t *el;
	json_array_foreach(v, i, el) {
		if (!json_is_string(el))
			return qerr_input(e, 400, "metadata key \"%s\" holds a non-string", key);
	}
	if (json_array_size(v) == 0 || *slot != NULL)
		return 0;
	char *t = json_text(json_array_get(v, 0));
	set_owned(slot, t);
	return 0;
}

/* symbols / fuzzy: arrays kept as compact JSON text. */
static int json_array_field(json_t *obj, const char *key, char **slot, struct qerr *e)
{
	json_t *v = json_object_get(obj, key);
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_string(v) && is_unknown(json_string_value(v)))
		return 0;
	if (!json_is_array(v))
		return qerr_input(e, 400, "metadata key \"%s\" is not an array", key);
	char *text = json_dumps(v, JSON_COMPACT);
	if (text == NULL)
		return qerr_input(e, 400, "metadata key \"%s\" cannot be serialised", key);
	set_owned(slot, xstrdup(text));
	free(text);
	return 0;
}

/* Every key meta_from_json below reads; keep the two in step. */
static const char *const json_keys[] = {
	"qid", "from", "user", "ip", "action", "subject", "rspamd_server", "rcpt",
	"score", "scan_time", "size", "symbols", "fuzzy", "message_id",
	"header_from", "header_to", "header_subject", "header_date",
};

bool meta_json_key_known(const char *key)
{
	for (size_t i = 0; i < sizeof json_keys / sizeof json_keys[0]; i++)
		if (strcmp(key, json_keys[i]) == 0)
			return true;
	return false;
}

int meta_from_json(json_t *obj, struct qmeta *m, struct qerr *e)
{
	if (!json_is_object(obj))
		return qerr_input(e, 400, "metadata is not a JSON object");

	static const struct {
		const char *key;
		size_t off;
	} scalars[] = {
		{ "qid", offsetof(struct qmeta, qid) },
		{ "from", offsetof(struct qmeta, env_from) },
		{ "user", offsetof(struct qmeta, user) },
		{ "ip", offsetof(struct qmeta, ip) },
		{ "action", offsetof(struct qmeta, action) },
		{ "subject", offsetof(struct qmeta, rspamd_subject) },
		{ "rspamd_server", offsetof(struct qmeta, rspamd_server) },
	};
	for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
		char **slot = (char **)(void *)((char *)m + scalars[i].off);
		if (json_scalar(obj, scalars[i].key, slot, false, e) < 0)
			return -1;
	}

	json_t *v = json_object_get(obj, "rcpt");
	if (v != NULL && !json_is_null(v)) {
		if (json_is_string(v)) {
			if (!is_unknown(json_string_value(v)))
				return qerr_input(e, 400,
						  "metadata key \"rcpt\" is neither an array nor \"unknown\"");
		} else if (json_is_array(v)) {
			char **r;
			size_t n;
			if (rcpt_from_array(v, "metadata key \"rcpt\"", &r, &n, e) < 0)
				return -1;
			xfree_strv(m->rcpt, m->nrcpt);
			m->rcpt = r;
			m->nrcpt = n;
		} else {
			return qerr_input(e, 400, "metadata key \"rcpt\" is not an array");
		}
	}

	v = json_object_get(obj, "score");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_number(v) || !isfinite(json_number_value(v)))
			return qerr_input(e, 400, "metadata key \"score\" is not a number");
		m->score = json_number_value(v);
		m->has_score = true;
	}

	v = json_object_get(obj, "scan_time");
	if (v != NULL && !json_is_null(v)) {
		double d = json_is_number(v) ? json_number_value(v) : -1;
		if (!json_is_number(v) || !(d >= 0 && d <= (double)META_SCAN_TIME_MAX))
			return qerr_input(e, 400,
					  "metadata key \"scan_time\" is not a time in ms (0..%ld)",
					  META_SCAN_TIME_MAX);
		m->scan_time = (long)(d + 0.5);
	}

	v = json_object_get(obj, "size");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return qerr_input(e, 400, "metadata key \"size\" is not a byte count");
		m->size = (uint64_t)json_integer_value(v);
	}

	if (json_array_field(obj, "symbols", &m->symbols_json, e) < 0 ||
	    json_array_field(obj, "fuzzy", &m->fuzzy_json, e) < 0)
		return -1;

	/* The message id comes without angle brackets from Rspamd; strip
	 * them anyway in case a release adds them. */
	bool had_msgid = m->hdr_msgid != NULL;
	if (json_scalar(obj, "message_id", &m->hdr_msgid, true, e) < 0)
		return -1;
	if (!had_msgid && m->hdr_msgid != NULL) {
		char *s = m->hdr_msgid;
		size_t n = strlen(s);
		if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
			memmove(s, s + 1, n - 2);
			s[n - 2] = '\0';
		}
	}

	if (json_header_list(obj, "header_from", &m->hdr_from, e) < 0 ||
	    json_header_list(obj, "header_to", &m->hdr_to, e) < 0 ||
	    json_header_list(obj, "header_subject", &m->hdr_subject, e) < 0 ||
	    json_header_list(obj, "header_date", &m->hdr_date, e) < 0)
		return -1;
	return 0;
}
