/*
 * ingest.c - one POST from Rspamd, from FastCGI parameters and body bytes
 * to stored entries.
 *
 * The body flows through a short pipeline, one 64 KB piece at a time:
 *
 *   read -> [gzip inflate] -> formatter -> store_put_write
 *
 * The formatter is chosen from Content-Type and, when that says nothing
 * (Rspamd sends its rule's mime_type, text/plain by default, for every
 * formatter but multipart), from the first byte: a body that starts with
 * '{' is JSON metadata (json or json_with_message), one that starts with
 * a msgpack map byte is the msgpack (or structured) formatter's map, and
 * anything else is taken for the raw message of the default formatter,
 * provided it starts the way a mail message does (a header field or an
 * mbox "From " line): a body of some other formatter is refused rather
 * than stored as mail.  Raw, multipart and msgpack bodies stream
 * straight into the store, so a worker's memory does not grow with the
 * message; a JSON body is held whole, since the message is inside it.
 *
 * Nothing is stored unless the whole body arrived as declared and parsed:
 * every failure aborts the put, and the store only makes entries visible
 * at commit.
 */
#include "ingest.h"

#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "access.h"
#include "config.h"
#include "ingest_base64.h"
#include "ingest_gzip.h"
#include "ingest_meta.h"
#include "ingest_msghdr.h"
#include "ingest_msgpack.h"
#include "ingest_multipart.h"
#include "store.h"

#define READ_CHUNK 65536
/* Metadata part of a multipart body: symbols can be large, not this large. */
#define METADATA_MAX (8u << 20)

enum formatter {
	FMT_UNDECIDED,
	FMT_RAW,       /* default: the body is the message */
	FMT_MULTIPART, /* metadata and message parts */
	FMT_JSON,      /* json or json_with_message: held whole */
	FMT_MSGPACK,   /* msgpack (or structured, refused): framed as it streams */
};

enum part_kind { PART_NONE, PART_MESSAGE, PART_METADATA, PART_OTHER };

struct ingest {
	struct store *store;
	const struct config *c;
	struct ingest_result *r;
	enum formatter fmt;
	bool fmt_from_type;      /* Content-Type named the formatter */
	struct store_put *put;   /* begun at the first message byte */
	struct buf json;         /* JSON body, or the multipart metadata part */
	uint64_t json_max;
	struct multipart *mp;
	enum part_kind part;
	bool seen_message, seen_metadata;
	struct gunzip *gz;
	struct msgpack_in *mp_in;
	uint64_t body_bound;     /* decoded body bytes that can arrive at most */
	bool raw_checked;        /* the raw body's start looked like mail */
	struct buf raw_head;     /* its first bytes until then */
};

/* The HTTP status that answers a classified failure. */
static int http_status_of(const struct qerr *e)
{
	switch (e->cls) {
	case QERR_INPUT:
		return e->http >= 400 && e->http < 500 ? e->http : 400;
	case QERR_NOTFOUND:
		return 404;
	case QERR_TEMP:
	case QERR_PERM:
	case QERR_NONE:
	default:
		return 503;
	}
}

/* Hands message bytes to the store, starting the put at the first byte. */
static int message_write(struct ingest *in, const void *p, size_t n, struct qerr *e)
{
	if (in->put == NULL && store_put_begin(in->store, &in->put, e) < 0)
		return -1;
	return store_put_write(in->put, p, n, e);
}

/* message_write with the callback signature base64 and gzip expect. */
static int message_write_cb(void *arg, const void *p, size_t n, struct qerr *e)
{
	return message_write(arg, p, n, e);
}

/* Bytes for the JSON buffer, bounded so a body cannot grow it without end. */
static int json_append(struct ingest *in, const void *p, size_t n, struct qerr *e)
{
	if (in->json.len + n > in->json_max)
		return qerr_input(e, 413, "JSON metadata exceeds %llu bytes",
				  (unsigned long long)in->json_max);
	buf_append(&in->json, p, n);
	return 0;
}

static int mp_part_begin(void *arg, const char *name, const char *filename,
			 const char *ctype, struct qerr *e)
{
	struct ingest *in = arg;
	(void)filename;
	(void)ctype;
	if (name && strcmp(name, "message") == 0) {
		if (in->seen_message)
			return qerr_input(e, 400, "multipart body has two 'message' parts");
		in->seen_message = true;
		in->part = PART_MESSAGE;
	} else if (name && strcmp(name, "metadata") == 0) {
		if (in->seen_metadata)
			return qerr_input(e, 400, "multipart body has two 'metadata' parts");
		in->seen_metadata = true;
		in->part = PART_METADATA;
		in->json_max = METADATA_MAX;
	} else {
		in->part = PART_OTHER; /* parts a newer Rspamd may add are ignored */
	}
	return 0;
}

static int mp_part_data(void *arg, const void *p, size_t n, struct qerr *e)
{
	struct ingest *in = arg;
	switch (in->part) {
	case PART_MESSAGE:
		return message_write(in, p, n, e);
	case PART_METADATA:
		return json_append(in, p, n, e);
	default:
		return 0;
	}
}

static int mp_part_end(void *arg, struct qerr *e)
{
	struct ingest *in = arg;
	(void)e;
	in->part = PART_NONE;
	return 0;
}

static const struct multipart_cb mp_callbacks = {
	.part_begin = mp_part_begin,
	.part_data = mp_part_data,
	.part_end = mp_part_end,
};

/* Starts the msgpack parser; the message goes on to the store. */
static void msgpack_start(struct ingest *in)
{
	in->fmt = FMT_MSGPACK;
	strcpy(in->r->formatter, "msgpack");
	in->mp_in = msgpack_in_new(METADATA_MAX, in->body_bound, in->c->max_message_size,
				   message_write_cb, in);
}

/* Decides the formatter at the first body byte when Content-Type did not. */
static void sniff_formatter(struct ingest *in, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')
			continue;
		if (msgpack_starts_map(p[i]) && in->json.len == 0) {
			msgpack_start(in);
			return;
		}
		in->fmt = p[i] == '{' ? FMT_JSON : FMT_RAW;
		strcpy(in->r->formatter, in->fmt == FMT_JSON ? "json" : "default");
		return;
	}
}

static const char not_mail[] = "body is not a mail message; which formatter sent it?";

/* A raw body, until its start has shown it to be a mail message: held
 * (at most MSGHDR_START_MAX bytes), then let through whole. */
static int raw_write(struct ingest *in, const void *data, size_t n, struct qerr *e)
{
	if (in->raw_checked)
		return message_write(in, data, n, e);
	const char *p = data;
	size_t take = MSGHDR_START_MAX - in->raw_head.len;
	if (take > n)
		take = n;
	buf_append(&in->raw_head, p, take);
	int v = msghdr_starts_mail(in->raw_head.data, in->raw_head.len);
	if (v == 0)
		return qerr_input(e, 400, "%s", not_mail);
	if (v < 0)
		return 0; /* MSGHDR_START_MAX bytes always decide */
	in->raw_checked = true;
	if (message_write(in, in->raw_head.data, in->raw_head.len, e) < 0)
		return -1;
	buf_free(&in->raw_head);
	return message_write(in, p + take, n - take, e);
}

/* The decoded body, piece by piece, into the chosen formatter. */
static int body_write(void *arg, const void *p, size_t n, struct qerr *e)
{
	struct ingest *in = arg;
	if (n == 0)
		return 0;
	if (in->fmt == FMT_UNDECIDED) {
		/* Leading white space cannot decide; keep it for the raw case. */
		sniff_formatter(in, p, n);
		if (in->fmt == FMT_UNDECIDED)
			return json_append(in, p, n, e);
		if (in->fmt == FMT_RAW && in->json.len > 0) {
			/* Leading blank lines: the start check refuses them. */
			if (raw_write(in, in->json.data, in->json.len, e) < 0)
				return -1;
			buf_reset(&in->json);
		}
	}
	switch (in->fmt) {
	case FMT_RAW:
		return raw_write(in, p, n, e);
	case FMT_MSGPACK:
		return msgpack_in_feed(in->mp_in, p, n, e);
	case FMT_MULTIPART:
		return multipart_feed(in->mp, p, n, e);
	case FMT_JSON:
		return json_append(in, p, n, e);
	case FMT_UNDECIDED:
	default:
		return qerr_perm(e, "formatter undecided");
	}
}

/* The whole JSON body: metadata, and the message if it carries one. */
static int json_finish(struct ingest *in, struct qerr *e)
{
	json_error_t jerr;
	json_t *root = json_loadb(in->json.data ? in->json.data : "", in->json.len,
				  JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return qerr_input(e, 400, "body is not valid JSON (line %d: %s)", jerr.line,
				  jerr.text);
	int rc = -1;
	if (!json_is_object(root)) {
		qerr_input(e, 400, "JSON body is not an object");
		goto out;
	}
	if (meta_from_json(root, &in->r->meta, e) < 0)
		goto out;
	json_t *msg = json_object_get(root, "message");
	if (msg == NULL) {
		qerr_input(e, 400, "JSON body carries no message (the json formatter sends "
			   "none): use the multipart, msgpack, json_with_message or default "
			   "formatter");
		goto out;
	}
	if (!json_is_string(msg)) {
		qerr_input(e, 400, "JSON key 'message' is not a base64 string");
		goto out;
	}
	strcpy(in->r->formatter, "json_with_message");
	rc = base64_decode_to(json_string_value(msg), json_string_length(msg),
			      message_write_cb, in, e);
out:
	json_decref(root);
	return rc;
}

/* The multipart metadata part, once the body has ended. */
static int multipart_metadata_finish(struct ingest *in, struct qerr *e)
{
	if (!in->seen_metadata)
		return 0; /* meta headers may have said it all */
	json_error_t jerr;
	json_t *root = json_loadb(in->json.data ? in->json.data : "", in->json.len,
				  JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return qerr_input(e, 400, "multipart 'metadata' is not valid JSON (line %d: %s)",
				  jerr.line, jerr.text);
	int rc = json_is_object(root) ? meta_from_json(root, &in->r->meta, e)
				      : qerr_input(e, 400, "multipart 'metadata' is not an object");
	json_decref(root);
	return rc;
}

/* The request's metadata selects none of only_symbols. */
static bool excluded_by_symbols(const struct config *c, const struct qmeta *m)
{
	if (c->n_only_symbols == 0)
		return false;
	for (size_t i = 0; i < c->n_only_symbols; i++)
		if (qmeta_has_symbol(m, c->only_symbols[i]))
			return false;
	return true;
}

/* Checks method, access, length and encoding, and picks the formatter from
 * Content-Type; everything that needs no body byte. */
static int request_prologue(struct ingest *in, char *const *envp, uint64_t *length,
			    bool *gzip, struct qerr *e)
{
	const struct config *c = in->c;
	const char *method = meta_getenv(envp, "REQUEST_METHOD");
	if (method == NULL || strcmp(method, "POST") != 0)
		return qerr_input(e, 405, "method %s not allowed: Rspamd POSTs messages",
				  method ? method : "(none)");
	if (access_check(c, meta_getenv(envp, "REMOTE_ADDR"),
			 meta_getenv(envp, "HTTP_AUTHORIZATION"), e) < 0)
		return -1;

	/* The body may be larger than the message: base64 and JSON around it. */
	uint64_t body_max = c->max_message_size + c->max_message_size / 3 + METADATA_MAX;
	const char *cl = meta_getenv(envp, "CONTENT_LENGTH");
	if (cl == NULL || *cl == '\0')
		return qerr_input(e, 411, "Content-Length is required");
	if (parse_size(cl, 0, UINT64_MAX >> 30, length, NULL) < 0 || strpbrk(cl, "kKmMgGbB"))
		return qerr_input(e, 400, "bad Content-Length '%.40s'", cl);
	if (*length == 0)
		return qerr_input(e, 400, "empty body: no message");
	if (*length > body_max)
		return qerr_input(e, 413, "body of %llu bytes exceeds the limit of %llu bytes",
				  (unsigned long long)*length, (unsigned long long)body_max);

	const char *enc = meta_getenv(envp, "HTTP_CONTENT_ENCODING");
	*gzip = false;
	if (enc && *enc && strcasecmp(enc, "identity") != 0) {
		if (strcasecmp(enc, "gzip") != 0 && strcasecmp(enc, "x-gzip") != 0)
			return qerr_input(e, 415, "unsupported Content-Encoding '%.40s' (gzip or none)",
					  enc);
		*gzip = true;
	}

	const char *ctype = meta_getenv(envp, "CONTENT_TYPE");
	if (ctype && strncasecmp(ctype, "multipart/", 10) == 0) {
		char boundary[80];
		if (multipart_boundary(ctype, boundary, sizeof boundary) < 0)
			return qerr_input(e, 400, "multipart Content-Type without a usable boundary");
		in->fmt = FMT_MULTIPART;
		in->mp = multipart_new(boundary, &mp_callbacks, in);
		strcpy(in->r->formatter, "multipart");
	} else if (ctype && strncasecmp(ctype, "application/json", 16) == 0) {
		in->fmt = FMT_JSON;
		strcpy(in->r->formatter, "json");
	} else if (ctype && (strncasecmp(ctype, "application/msgpack", 19) == 0 ||
			     strncasecmp(ctype, "application/x-msgpack", 21) == 0 ||
			     strncasecmp(ctype, "application/vnd.msgpack", 23) == 0)) {
		in->fmt = FMT_MSGPACK; /* its parser starts once the length is known */
	}
	in->fmt_from_type = in->fmt != FMT_UNDECIDED;
	return 0;
}

/* Reads exactly the declared body through the pipeline. */
static int read_body(struct ingest *in, ingest_read_fn rd, void *rd_arg, uint64_t length,
		     struct qerr *e)
{
	char *chunk = xmalloc(READ_CHUNK);
	uint64_t total = 0;
	int rc = -1;
	for (;;) {
		/* Ask for one byte past the declared length to catch a longer body. */
		size_t want = READ_CHUNK;
		if (length + 1 - total < want)
			want = (size_t)(length + 1 - total);
		ssize_t got = rd(rd_arg, chunk, want);
		if (got < 0) {
			qerr_input(e, 400, "body read failed after %llu of %llu bytes",
				   (unsigned long long)total, (unsigned long long)length);
			goto out;
		}
		if (got == 0)
			break;
		total += (uint64_t)got;
		if (total > length) {
			qerr_input(e, 400, "body longer than Content-Length %llu",
				   (unsigned long long)length);
			goto out;
		}
		int w = in->gz ? gunzip_feed(in->gz, chunk, (size_t)got, e)
			       : body_write(in, chunk, (size_t)got, e);
		if (w < 0)
			goto out;
	}
	if (total < length) {
		qerr_input(e, 400, "body shorter than Content-Length (%llu of %llu bytes)",
			   (unsigned long long)total, (unsigned long long)length);
		goto out;
	}
	if (in->gz && gunzip_finish(in->gz, e) < 0)
		goto out;
	rc = 0;
out:
	free(chunk);
	return rc;
}

/* After the body: parse what was held, and check a message arrived. */
static int body_finish(struct ingest *in, struct qerr *e)
{
	switch (in->fmt) {
	case FMT_UNDECIDED:
		return qerr_input(e, 400, "body holds only white space: no message");
	case FMT_RAW:
		if (!in->raw_checked &&
		    msghdr_starts_mail(in->raw_head.data, in->raw_head.len) <= 0)
			return qerr_input(e, 400, "%s", not_mail);
		if (!in->raw_checked && message_write(in, in->raw_head.data, in->raw_head.len,
						      e) < 0)
			return -1;
		in->raw_checked = true;
		break;
	case FMT_MSGPACK:
		if (msgpack_in_finish(in->mp_in, &in->r->meta, e) < 0)
			return -1;
		break;
	case FMT_MULTIPART:
		if (multipart_finish(in->mp, e) < 0 || multipart_metadata_finish(in, e) < 0)
			return -1;
		if (!in->seen_message)
			return qerr_input(e, 400, "multipart body has no 'message' part");
		break;
	case FMT_JSON:
		if (json_finish(in, e) < 0)
			return -1;
		break;
	}
	if (in->put == NULL)
		return qerr_input(e, 400, "no message in the body");
	return 0;
}

int ingest_request(struct store *s, const struct config *c, char *const *envp,
		   ingest_read_fn rd, void *rd_arg, struct ingest_result *r, struct qerr *e)
{
	memset(r, 0, sizeof *r);
	r->meta.scan_time = -1;
	strcpy(r->formatter, "-");
	qerr_clear(e);

	struct ingest in = {.store = s, .c = c, .r = r};
	in.json_max = c->max_message_size + c->max_message_size / 3 + METADATA_MAX;
	uint64_t length = 0;
	bool gzip = false;
	int rc = -1;

	/* A gzip body inflates to at most json_max bytes. */
	in.body_bound = in.json_max;
	if (request_prologue(&in, envp, &length, &gzip, e) < 0)
		goto out;
	if (!gzip && length < in.body_bound)
		in.body_bound = length;
	if (in.fmt == FMT_MSGPACK)
		msgpack_start(&in);
	if (meta_from_params(envp, c->header_prefix, &r->meta, e) < 0)
		goto out;
	if (gzip)
		in.gz = gunzip_new(in.json_max, body_write, &in);
	if (read_body(&in, rd, rd_arg, length, e) < 0 || body_finish(&in, e) < 0)
		goto out;

	if (excluded_by_symbols(c, &r->meta)) {
		r->skipped = 1;
		r->http = 200;
		rc = 0;
		goto out;
	}
	struct store_put *put = in.put;
	in.put = NULL; /* commit frees it, whatever happens */
	if (store_put_commit(put, &r->meta, &r->ids, &r->nids, &r->created, e) < 0)
		goto out;
	r->http = 200;
	rc = 0;
out:
	if (rc < 0)
		r->http = http_status_of(e);
	if (in.put)
		store_put_abort(in.put);
	if (in.mp)
		multipart_free(in.mp);
	if (in.gz)
		gunzip_free(in.gz);
	msgpack_in_free(in.mp_in);
	buf_free(&in.json);
	buf_free(&in.raw_head);
	return rc;
}

void ingest_result_free(struct ingest_result *r)
{
	xfree_strv(r->ids, r->nids);
	r->ids = NULL;
	r->nids = 0;
	qmeta_free(&r->meta);
}
