/*
 * record.c - the life of a struct qmeta / struct qentry: freeing, status
 * names, the questions asked of Rspamd's symbols (has a symbol, which
 * policy bank), and the JSON form of an entry that the file store keeps
 * beside each message and the CLI prints with --json.
 *
 * The JSON form is one object with these keys (unknown strings are null):
 *   id, rcpt, status, status_changed (RFC 3339), received_at (RFC 3339),
 *   qid, from, user, ip, action, score (number or null),
 *   scan_time (integer or null), symbols (array, embedded), fuzzy (array),
 *   rspamd_server, rspamd_subject, subject (derived, for display),
 *   header_from, header_to, header_cc, header_subject, header_date,
 *   message_id, size, sha256, policy.
 */
#include "record.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charset.h"
#include "common.h"
#include "json_syntax.h"

void qmeta_free(struct qmeta *m)
{
	if (m == NULL)
		return;
	free(m->qid);
	free(m->env_from);
	free(m->user);
	free(m->ip);
	free(m->action);
	free(m->rspamd_server);
	free(m->rspamd_subject);
	free(m->symbols_json);
	free(m->fuzzy_json);
	xfree_strv(m->rcpt, m->nrcpt);
	free(m->hdr_from);
	free(m->hdr_to);
	free(m->hdr_cc);
	free(m->hdr_subject);
	free(m->hdr_date);
	free(m->hdr_msgid);
	free(m->policy);
	memset(m, 0, sizeof *m);
	m->scan_time = -1;
}

void qentry_free(struct qentry *e)
{
	if (e == NULL)
		return;
	free(e->rcpt);
	e->rcpt = NULL;
	qmeta_free(&e->meta);
}

static const char *const status_names[ENTRY_STATUS_COUNT] = {
	[ENTRY_QUARANTINED] = "quarantined",
	[ENTRY_RELEASED] = "released",
	[ENTRY_DELETED] = "deleted",
};

const char *entry_status_name(enum entry_status s)
{
	if ((unsigned)s >= ENTRY_STATUS_COUNT)
		return "unknown";
	return status_names[s];
}

int entry_status_parse(const char *name, enum entry_status *out)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < ENTRY_STATUS_COUNT; i++) {
		if (strcmp(name, status_names[i]) == 0) {
			*out = (enum entry_status)i;
			return 0;
		}
	}
	return -1;
}

void qmeta_set(char **field, const char *value)
{
	char *copy = value ? xstrdup(value) : NULL;
	free(*field);
	*field = copy;
}

const char *qmeta_display_subject(const struct qmeta *m)
{
	if (m->hdr_subject)
		return m->hdr_subject;
	if (m->rspamd_subject)
		return m->rspamd_subject;
	return "";
}

/*
 * Calls fn for each symbol name in the symbols JSON until it returns
 * non-zero.  Rspamd sends an array of objects with "name"; an object
 * keyed by symbol name (an older form) is understood as well.
 */
/* True if no symbol name in m can contain text: without a backslash the
 * JSON holds no escapes, so every name appears in it literally.  Saves
 * parsing the symbols again on every stored message (most carry no
 * policy symbol). */
static bool symbols_lack(const struct qmeta *m, const char *text)
{
	return m->symbols_json == NULL ||
	       (strchr(m->symbols_json, '\\') == NULL && strstr(m->symbols_json, text) == NULL);
}

static int each_symbol(const struct qmeta *m, int (*fn)(const char *name, void *arg),
		       void *arg)
{
	if (m->symbols_json == NULL)
		return 0;
	json_t *root = json_loads(m->symbols_json, JSON_DECODE_ANY, NULL);
	if (root == NULL)
		return 0;
	int r = 0;
	if (json_is_array(root)) {
		size_t i;
		json_t *v;
		json_array_foreach(root, i, v) {
			const char *name = json_string_value(json_object_get(v, "name"));
			if (name && (r = fn(name, arg)) != 0)
				break;
		}
	} else if (json_is_object(root)) {
		const char *key;
		json_t *v;
		json_object_foreach(root, key, v) {
			if ((r = fn(key, arg)) != 0)
				break;
		}
	}
	json_decref(root);
	return r;
}

static int name_equals(const char *name, void *arg)
{
	return strcmp(name, (const char *)arg) == 0;
}

bool qmeta_has_symbol(const struct qmeta *m, const char *name)
{
	if (name == NULL || *name == '\0' || symbols_lack(m, name))
		return false;
	return each_symbol(m, name_equals, (void *)name) != 0;
}

struct policy_search {
	const char *prefix;
	char *found;
};

static int name_has_prefix(const char *name, void *arg)
{
	struct policy_search *ps = arg;
	if (strncmp(name, ps->prefix, strlen(ps->prefix)) != 0)
		return 0;
	ps->found = xstrdup(name);
	return 1;
}

char *qmeta_policy(const struct qmeta *m, const char *prefix)
{
	if (prefix == NULL || *prefix == '\0' || symbols_lack(m, prefix))
		return NULL;
	struct policy_search ps = { prefix, NULL };
	each_symbol(m, name_has_prefix, &ps);
	return ps.found;
}

/* The fewest significant digits that give back exactly v, so that scores
 * print as 10.3 and not 10.300000000000001, and yet read back equal. */
static int real_digits(double v)
{
	char buf[40];
	for (int p = 1; p < 17; p++) {
		snprintf(buf, sizeof buf, "%.*g", p, v);
		if (strtod(buf, NULL) == v)
			return p;
	}
	return 17;
}

/* The precision needed by the real with the most digits in j. */
static int max_real_digits(json_t *j)
{
	int best = 1, d;
	size_t i;
	const char *key;
	json_t *v;
	switch (json_typeof(j)) {
	case JSON_REAL:
		return real_digits(json_real_value(j));
	case JSON_ARRAY:
		json_array_foreach(j, i, v) {
			d = max_real_digits(v);
			if (d > best)
				best = d;
		}
		return best;
	case JSON_OBJECT:
		json_object_foreach(j, key, v) {
			d = max_real_digits(v);
			if (d > best)
				best = d;
		}
		return best;
	default:
		return best;
	}
}

/* Serialises j with just the digits its reals need. */
static char *jdump(json_t *j, size_t flags)
{
	flags |= JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(max_real_digits(j));
	char *s = json_dumps(j, flags);
	if (s == NULL)
		return NULL;
	char *r = xstrdup(s);
	free(s);
	return r;
}

/*
 * The JSON form is written here directly rather than built as a jansson
 * object and dumped: the file store writes it once per recipient of every
 * message, and building it (the symbols parsed, every score's digits
 * searched, the tree dumped) cost 77 us per entry against about 3 us
 * written directly.  jansson still reads it back (qentry_from_json).
 */

/* Output of one JSON object, member by member. */
struct jout {
	struct buf b;
	bool pretty;
	bool first;
};

static void jkey(struct jout *o, const char *key)
{
	buf_appends(&o->b, o->first ? (o->pretty ? "\n  \"" : "\"") : (o->pretty ? ",\n  \"" : ",\""));
	o->first = false;
	buf_appends(&o->b, key);
	buf_appends(&o->b, o->pretty ? "\": " : "\":");
}

/* s as a JSON string: quotes, backslashes and control bytes escaped as
 * jansson escapes them.  Record strings are valid UTF-8; should one not
 * be, its bytes from 0x80 up become '?' rather than the whole entry
 * becoming unreadable. */
static void jstr_value(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	bool valid = utf8_valid(s, strlen(s));
	buf_appendc(b, '"');
	const char *run = s;
	for (const char *p = s;; p++) {
		unsigned char c = (unsigned char)*p;
		if (c >= 0x20 && c != '"' && c != '\\' && (c < 0x80 || valid))
			continue;
		buf_append(b, run, (size_t)(p - run));
		run = p + 1;
		if (c == '\0')
			break;
		switch (c) {
		case '"': buf_appends(b, "\\\""); break;
		case '\\': buf_appends(b, "\\\\"); break;
		case '\b': buf_appends(b, "\\b"); break;
		case '\f': buf_appends(b, "\\f"); break;
		case '\n': buf_appends(b, "\\n"); break;
		case '\r': buf_appends(b, "\\r"); break;
		case '\t': buf_appends(b, "\\t"); break;
		default:
			if (c >= 0x80) {
				buf_appendc(b, '?');
			} else {
				char u[7] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], '\0' };
				buf_appends(b, u);
			}
		}
	}
	buf_appendc(b, '"');
}

/* A string member, null for an unknown value. */
static void jstr(struct jout *o, const char *key, const char *s)
{
	jkey(o, key);
	if (s == NULL)
		buf_appends(&o->b, "null");
	else
		jstr_value(&o->b, s);
}

static void jtime(struct jout *o, const char *key, int64_t t)
{
	char buf[32];
	format_rfc3339(t, buf);
	jstr(o, key, buf);
}

/* A real with the fewest digits that read back equal, always with a
 * fraction or an exponent so that it reads back as a real. */
static void jreal(struct jout *o, const char *key, double v)
{
	char buf[40];
	jkey(o, key);
	snprintf(buf, sizeof buf, "%.*g", real_digits(v), v);
	buf_appends(&o->b, buf);
	if (strpbrk(buf, ".eE") == NULL)
		buf_appends(&o->b, ".0");
}

/* An embedded array (or object) kept as text: written as it is when it is
 * one well-formed JSON array or object, else as []. */
static void jarray_text(struct jout *o, const char *key, const char *text)
{
	jkey(o, key);
	if (text != NULL) {
		size_t n = strlen(text);
		while (n > 0 && strchr(" \t\r\n", text[n - 1]))
			n--;
		while (n > 0 && strchr(" \t\r\n", *text)) {
			text++;
			n--;
		}
		if (n > 0 && (*text == '[' || *text == '{') &&
		    json_syntax_check(text, n, *text, NULL, 0) == 0) {
			buf_append(&o->b, text, n);
			return;
		}
	}
	buf_appends(&o->b, "[]");
}

static void jint(struct jout *o, const char *key, long long v)
{
	char buf[24];
	jkey(o, key);
	snprintf(buf, sizeof buf, "%lld", v);
	buf_appends(&o->b, buf);
}

/* The members every form shares: everything but whose entry it is. */
static void jbody(struct jout *o, const struct qentry *e)
{
	const struct qmeta *m = &e->meta;
	jstr(o, "status", entry_status_name(e->status));
	jtime(o, "status_changed", e->status_changed);
	jtime(o, "received_at", m->received_at);
	jstr(o, "qid", m->qid);
	jstr(o, "from", m->env_from);
	jstr(o, "user", m->user);
	jstr(o, "ip", m->ip);
	jstr(o, "action", m->action);
	if (m->has_score && isfinite(m->score))
		jreal(o, "score", m->score);
	else
		jstr(o, "score", NULL);
	if (m->scan_time >= 0)
		jint(o, "scan_time", m->scan_time);
	else
		jstr(o, "scan_time", NULL);
	jarray_text(o, "symbols", m->symbols_json);
	jarray_text(o, "fuzzy", m->fuzzy_json);
	jstr(o, "rspamd_server", m->rspamd_server);
	jstr(o, "rspamd_subject", m->rspamd_subject);
	jstr(o, "subject", qmeta_display_subject(m));
	jstr(o, "header_from", m->hdr_from);
	jstr(o, "header_to", m->hdr_to);
	jstr(o, "header_cc", m->hdr_cc);
	jstr(o, "header_subject", m->hdr_subject);
	jstr(o, "header_date", m->hdr_date);
	jstr(o, "message_id", m->hdr_msgid);
	jint(o, "size", (long long)m->size);
	jstr(o, "sha256", m->sha256[0] ? m->sha256 : NULL);
	jstr(o, "policy", m->policy);
}

char *qentry_to_json(const struct qentry *e, bool pretty)
{
	struct jout o = { .pretty = pretty, .first = true };
	buf_appendc(&o.b, '{');
	jstr(&o, "id", e->id);
	jstr(&o, "rcpt", e->rcpt);
	jbody(&o, e);
	buf_appends(&o.b, pretty ? "\n}" : "}");
	buf_appendc(&o.b, '\0');
	return o.b.data;
}

char *qrecord_to_json(const struct qentry *e, char *const *ids, char *const *rcpts, size_t n)
{
	struct jout o = { .pretty = true, .first = true };
	buf_appendc(&o.b, '{');
	jkey(&o, "entries");
	buf_appendc(&o.b, '{');
	for (size_t i = 0; i < n; i++) {
		buf_appends(&o.b, i ? ",\n    " : "\n    ");
		jstr_value(&o.b, ids[i]);
		buf_appends(&o.b, ": ");
		jstr_value(&o.b, rcpts[i]);
	}
	buf_appends(&o.b, "\n  }");
	jbody(&o, e);
	buf_appends(&o.b, "\n}");
	buf_appendc(&o.b, '\0');
	return o.b.data;
}

/* Copies an optional string member: 0 if absent, null or a string. */
static int get_str(json_t *o, const char *key, char **out)
{
	json_t *v = json_object_get(o, key);
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = xstrndup(json_string_value(v), json_string_length(v));
	return 0;
}

static int get_time(json_t *o, const char *key, int64_t *out)
{
	const char *s = json_string_value(json_object_get(o, key));
	if (s == NULL)
		return -1;
	return parse_time(s, out, NULL);
}

/* An embedded array back to its text; an empty one means none. */
static int get_array_text(json_t *o, const char *key, char **out)
{
	json_t *v = json_object_get(o, key);
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v) && !json_is_object(v))
		return -1;
	if (json_is_array(v) && json_array_size(v) == 0)
		return 0;
	*out = jdump(v, JSON_COMPACT);
	return *out ? 0 : -1;
}

int qentry_from_json(const char *text, size_t len, struct qentry *out)
{
	return qentry_from_json_for(text, len, NULL, out);
}

int qentry_from_json_for(const char *text, size_t len, const char *want, struct qentry *out)
{
	memset(out, 0, sizeof *out);
	out->meta.scan_time = -1;
	json_t *o = json_loadb(text, len, 0, NULL);
	if (o == NULL)
		return -1;
	if (!json_is_object(o))
		goto fail;
	struct qmeta *m = &out->meta;

	json_t *entries = json_object_get(o, "entries");
	const char *id;
	if (entries != NULL) {
		/* a message's record: the entry is the one asked for */
		if (want == NULL || !json_is_object(entries))
			goto fail;
		id = want;
		json_t *r = json_object_get(entries, want);
		if (r == NULL)
			goto fail;
		if (!json_is_string(r))
			goto fail;
		out->rcpt = xstrndup(json_string_value(r), json_string_length(r));
	} else {
		id = json_string_value(json_object_get(o, "id"));
		if (get_str(o, "rcpt", &out->rcpt) < 0)
			goto fail;
	}
	if (id == NULL || strlen(id) != ENTRY_ID_LEN)
		goto fail;
	memcpy(out->id, id, ENTRY_ID_LEN + 1);
	if (entry_status_parse(json_string_value(json_object_get(o, "status")),
			       &out->status) < 0)
		goto fail;
	if (get_time(o, "status_changed", &out->status_changed) < 0 ||
	    get_time(o, "received_at", &m->received_at) < 0)
		goto fail;

	if (get_str(o, "qid", &m->qid) < 0 || get_str(o, "from", &m->env_from) < 0 ||
	    get_str(o, "user", &m->user) < 0 || get_str(o, "ip", &m->ip) < 0 ||
	    get_str(o, "action", &m->action) < 0 ||
	    get_str(o, "rspamd_server", &m->rspamd_server) < 0 ||
	    get_str(o, "rspamd_subject", &m->rspamd_subject) < 0 ||
	    get_str(o, "header_from", &m->hdr_from) < 0 ||
	    get_str(o, "header_to", &m->hdr_to) < 0 ||
	    get_str(o, "header_cc", &m->hdr_cc) < 0 ||
	    get_str(o, "header_subject", &m->hdr_subject) < 0 ||
	    get_str(o, "header_date", &m->hdr_date) < 0 ||
	    get_str(o, "message_id", &m->hdr_msgid) < 0 ||
	    get_str(o, "policy", &m->policy) < 0)
		goto fail;

	json_t *v = json_object_get(o, "score");
	if (json_is_number(v)) {
		m->score = json_number_value(v);
		m->has_score = true;
	} else if (v != NULL && !json_is_null(v)) {
		goto fail;
	}
	v = json_object_get(o, "scan_time");
	if (json_is_integer(v) && json_integer_value(v) >= 0)
		m->scan_time = (long)json_integer_value(v);
	else if (v != NULL && !json_is_null(v))
		goto fail;

	if (get_array_text(o, "symbols", &m->symbols_json) < 0 ||
	    get_array_text(o, "fuzzy", &m->fuzzy_json) < 0)
		goto fail;

	v = json_object_get(o, "size");
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		goto fail;
	m->size = (uint64_t)json_integer_value(v);

	v = json_object_get(o, "sha256");
	if (json_is_string(v)) {
		if (json_string_length(v) != 64)
			goto fail;
		memcpy(m->sha256, json_string_value(v), 65);
	} else if (v != NULL && !json_is_null(v)) {
		goto fail;
	}

	/* The entry is for one recipient: its meta names that one. */
	if (out->rcpt != NULL) {
		m->rcpt = xmalloc(sizeof *m->rcpt);
		m->rcpt[0] = xstrdup(out->rcpt);
		m->nrcpt = 1;
	}
	json_decref(o);
	return 0;
fail:
	json_decref(o);
	qentry_free(out);
	return -1;
}
