/*
 * ingest_msgpack.c - owns the msgpack body of Rspamd's `msgpack`
 * formatter (4.x), and the refusal of its `structured` formatter, whose
 * map carries no message.
 *
 * The body is one map.  Its keys are the JSON formatter's metadata keys
 * plus `message`: a str when the mail is valid UTF-8, a bin when it is
 * not.  Keys come in any order (`message` is often among the first).
 *
 * Memory stays flat in the message's size.  msgpack-c's unpacker can only
 * hand over an object once all of its bytes are buffered, which for the
 * map means the whole mail; so the body is framed here as it streams in,
 * token by token (a type byte and its length field, nothing is decoded):
 *
 *   - the `message` value's str/bin payload goes straight on to the
 *     callback (the store), piece by piece as it arrives, never buffered;
 *   - the value of each metadata key that meta_from_json reads is
 *     buffered (all of them together at most meta_max bytes), then decoded
 *     by msgpack-c (msgpack_unpack_next) and turned into a jansson value,
 *     so the JSON formatter's key handling in ingest_meta.c applies as is;
 *   - any other key's value is framed and skipped without being kept.
 *
 * Framing is also where hostile lengths are stopped before anything is
 * allocated: nesting deeper than MSGPACK_DEPTH_MAX, and any declared
 * length or element count larger than the bytes that can still arrive
 * (each element takes at least one byte) are refused.  msgpack-c itself
 * sizes an array's storage from its declared count, so it only ever sees
 * an object whose every byte is already in the buffer.
 */
#include "ingest_msgpack.h"

#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <string.h>

#include "charset.h"
#include "ingest_meta.h"

/* A key longer than this is none of the keys we read: its value is skipped. */
#define KEY_MAX 64

enum phase {
	PH_MAP,      /* the top map's header */
	PH_KEY,      /* a key */
	PH_VALUE,    /* a value kept for decoding or skipped */
	PH_MSG_HDR,  /* the str/bin header of `message` */
	PH_MSG_BODY, /* its payload, streamed on */
	PH_DONE,     /* the map has ended */
};

/* The framing of one object (a key or a value) as its bytes go past. */
struct frame {
	unsigned depth;                     /* containers open inside it */
	uint64_t left[MSGPACK_DEPTH_MAX];   /* objects still due in each */
	unsigned char hdr[9];               /* the token header being read */
	unsigned hlen, hneed;               /* bytes of it read, bytes it has */
	uint64_t skip;                      /* payload bytes still to pass */
};

struct msgpack_in {
	enum phase phase;
	uint64_t meta_max, body_max, message_max;
	uint64_t consumed;       /* body bytes seen */
	msgpack_message_fn fn;
	void *arg;

	unsigned char map_hdr[5];
	unsigned map_hlen, map_hneed;
	uint64_t pairs_left;

	struct frame f;
	struct buf obj;          /* bytes of the key or kept value so far */
	bool keep;               /* the current object is buffered */
	bool key_too_long;
	char key[KEY_MAX + 1];   /* the key whose value comes next */
	uint64_t kept;           /* metadata bytes buffered, all keys together */

	uint64_t msg_left;       /* message payload bytes still to come */
	bool seen_message;
	json_t *meta;            /* decoded metadata, by key */
};

bool msgpack_starts_map(unsigned char c)
{
	return (c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf;
}

/* The name of a msgpack type, from its first byte, for error messages. */
static const char *type_name(unsigned char c)
{
	if (c <= 0x7f || c >= 0xe0 || (c >= 0xcc && c <= 0xd3))
		return "an integer";
	if (c <= 0x8f || c == 0xde || c == 0xdf)
		return "a map";
	if (c <= 0x9f || c == 0xdc || c == 0xdd)
		return "an array";
	if (c <= 0xbf || (c >= 0xd9 && c <= 0xdb))
		return "a str";
	switch (c) {
	case 0xc0: return "nil";
	case 0xc2: case 0xc3: return "a boolean";
	case 0xc4: case 0xc5: case 0xc6: return "a bin";
	case 0xca: case 0xcb: return "a float";
	case 0xc1: return "the unused byte 0xc1";
	default: return "an ext";
	}
}

/* Total header bytes of the token that starts with c (type byte and
 * length or value bytes), or 0 for the byte msgpack never uses. */
static unsigned header_len(unsigned char c)
{
	if (c <= 0xbf || c >= 0xe0)
		return 1; /* fixint, fixmap, fixarray, fixstr, negative fixint */
	switch (c) {
	case 0xc0: case 0xc2: case 0xc3: return 1;
	case 0xc4: case 0xcc: case 0xd0: case 0xd9: return 2;
	case 0xc5: case 0xcd: case 0xd1: case 0xda: case 0xdc: case 0xde: return 3;
	case 0xc6: case 0xce: case 0xd2: case 0xdb: case 0xdd: case 0xdf: case 0xca: return 5;
	case 0xcb: case 0xcf: case 0xd3: return 9;
	case 0xc7: return 3; /* ext8: length, type */
	case 0xc8: return 4;
	case 0xc9: return 6;
	case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return 2; /* fixext: type */
	default: return 0; /* 0xc1 */
	}
}

/* The big-endian number of w bytes at p. */
static uint64_t be(const unsigned char *p, unsigned w)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < w; i++)
		v = v << 8 | p[i];
	return v;
}

/* For a complete token header: its payload length (str, bin, ext) and its
 * element count (array: n, map: 2n).  Scalars have neither. */
static void header_sizes(const unsigned char *h, uint64_t *payload, uint64_t *count)
{
	unsigned char c = h[0];
	*payload = 0;
	*count = 0;
	if (c >= 0x80 && c <= 0x8f)
		*count = 2u * (c & 0x0f);
	else if (c >= 0x90 && c <= 0x9f)
		*count = c & 0x0f;
	else if (c >= 0xa0 && c <= 0xbf)
		*payload = c & 0x1f;
	else if (c == 0xc4 || c == 0xd9 || c == 0xc7)
		*payload = h[1];
	else if (c == 0xc5 || c == 0xda || c == 0xc8)
		*payload = be(h + 1, 2);
	else if (c == 0xc6 || c == 0xdb || c == 0xc9)
		*payload = be(h + 1, 4);
	else if (c >= 0xd4 && c <= 0xd8)
		*payload = 1u << (c - 0xd4);
	else if (c == 0xdc)
		*count = be(h + 1, 2);
	else if (c == 0xdd)
		*count = be(h + 1, 4);
	else if (c == 0xde)
		*count = 2 * be(h + 1, 2);
	else if (c == 0xdf)
		*count = 2 * be(h + 1, 4);
}

/* One more item of the innermost open container has ended; closes the
 * containers that are complete.  True when the whole object has ended. */
static bool item_done(struct frame *f)
{
	while (f->depth > 0) {
		if (--f->left[f->depth - 1] > 0)
			return false;
		f->depth--;
	}
	return true;
}

/* How many more bytes the current object may still take: what the body
 * can still hold, and for a kept object what is left of meta_max (pending:
 * its bytes consumed but not yet buffered). */
static uint64_t room(const struct msgpack_in *mi, size_t pending)
{
	uint64_t r = mi->body_max > mi->consumed ? mi->body_max - mi->consumed : 0;
	if (mi->keep) {
		uint64_t used = mi->kept + mi->obj.len + pending;
		uint64_t k = mi->meta_max > used ? mi->meta_max - used : 0;
		if (k < r)
			r = k;
	}
	return r;
}

/* Frames the bytes of one object: consumes what belongs to it from
 * p[0..n) and sets *done when it has ended.  Returns the bytes consumed
 * or -1.  mi->consumed is advanced here. */
static ssize_t frame_scan(struct msgpack_in *mi, const unsigned char *p, size_t n, bool *done,
			  unsigned base_depth, struct qerr *e)
{
	struct frame *f = &mi->f;
	size_t i = 0;
	*done = false;
	while (i < n) {
		if (f->skip > 0) {
			size_t k = f->skip < n - i ? (size_t)f->skip : n - i;
			f->skip -= k;
			i += k;
			mi->consumed += k;
			if (f->skip == 0 && item_done(f)) {
				*done = true;
				return (ssize_t)i;
			}
			continue;
		}
		unsigned char c = p[i++];
		mi->consumed++;
		if (f->hneed == 0) {
			f->hneed = header_len(c);
			if (f->hneed == 0)
				return qerr_input(e, 400, "msgpack body holds the unused byte 0xc1 "
						  "at offset %llu", (unsigned long long)mi->consumed - 1);
			f->hlen = 0;
		}
		f->hdr[f->hlen++] = c;
		if (f->hlen < f->hneed)
			continue;
		f->hneed = 0;
		uint64_t payload, count;
		header_sizes(f->hdr, &payload, &count);
		/* The header's own bytes are counted in consumed already. */
		uint64_t want = payload > count ? payload : count;
		uint64_t body_room = mi->body_max > mi->consumed ? mi->body_max - mi->consumed : 0;
		if (want > room(mi, i)) {
			bool by_meta = want <= body_room;
			return qerr_input(e, by_meta ? 413 : 400,
					  "msgpack %s at offset %llu declares %llu %s, more than %s",
					  type_name(f->hdr[0]),
					  (unsigned long long)(mi->consumed - f->hlen),
					  (unsigned long long)want, payload ? "bytes" : "elements",
					  by_meta ? "the metadata limit allows" : "the body holds");
		}
		if (count > 0) {
			if (base_depth + f->depth + 1 >= MSGPACK_DEPTH_MAX)
				return qerr_input(e, 400, "msgpack body nests deeper than %d levels",
						  MSGPACK_DEPTH_MAX);
			f->left[f->depth++] = count;
			continue;
		}
		if (payload > 0) {
			f->skip = payload;
			continue;
		}
		if (item_done(f)) {
			*done = true;
			return (ssize_t)i;
		}
	}
	return (ssize_t)i;
}

struct msgpack_in *msgpack_in_new(uint64_t meta_max, uint64_t body_max, uint64_t message_max,
				  msgpack_message_fn fn, void *arg)
{
	struct msgpack_in *mi = xcalloc(1, sizeof *mi);
	mi->meta_max = meta_max;
	mi->body_max = body_max;
	mi->message_max = message_max;
	mi->fn = fn;
	mi->arg = arg;
	mi->meta = json_object();
	if (mi->meta == NULL)
		abort();
	return mi;
}

void msgpack_in_free(struct msgpack_in *mi)
{
	if (mi == NULL)
		return;
	buf_free(&mi->obj);
	json_decref(mi->meta);
	free(mi);
}

/* A msgpack str or bin as a JSON string: valid UTF-8 as it is, other
 * bytes read as Windows-1252, as the meta headers are. */
static json_t *json_from_bytes(const char *p, size_t n)
{
	if (n == 0)
		return json_string(""); /* msgpack-c gives no pointer for it */
	if (utf8_valid(p, n))
		return json_stringn(p, n);
	struct buf b = { 0 };
	charset_append_8bit(&b, p, n);
	json_t *j = json_stringn(b.data ? b.data : "", b.len);
	buf_free(&b);
	return j;
}

/* A decoded msgpack object as a jansson value, or NULL with *e set.  The
 * depth is bounded by the framing. */
static json_t *json_from_object(const msgpack_object *o, struct qerr *e)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_BOOLEAN:
		return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return json_real((double)o->via.u64);
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!isfinite(o->via.f64)) {
			qerr_input(e, 400, "msgpack metadata holds a number that is not finite");
			return NULL;
		}
		return json_real(o->via.f64);
	case MSGPACK_OBJECT_STR:
		return json_from_bytes(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_BIN:
		return json_from_bytes(o->via.bin.ptr, o->via.bin.size);
	case MSGPACK_OBJECT_ARRAY: {
		json_t *a = json_array();
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			json_t *el = json_from_object(&o->via.array.ptr[i], e);
			if (el == NULL || json_array_append_new(a, el) < 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	case MSGPACK_OBJECT_MAP: {
		json_t *m = json_object();
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			if (kv->key.type != MSGPACK_OBJECT_STR) {
				qerr_input(e, 400, "msgpack metadata holds a map key that is not a str");
				json_decref(m);
				return NULL;
			}
			json_t *k = json_from_bytes(kv->key.via.str.ptr, kv->key.via.str.size);
			json_t *v = k ? json_from_object(&kv->val, e) : NULL;
			if (v == NULL || json_object_setn_new(m, json_string_value(k),
							      json_string_length(k), v) < 0) {
				json_decref(k);
				json_decref(m);
				return NULL;
			}
			json_decref(k);
		}
		return m;
	}
	case MSGPACK_OBJECT_EXT:
	default:
		qerr_input(e, 400, "msgpack metadata holds an ext value");
		return NULL;
	}
}

/* Decodes the buffered object with msgpack-c.  Its framing is complete
 * and checked, so msgpack-c sees exactly one object. */
static int decode_obj(struct msgpack_in *mi, msgpack_unpacked *u, struct qerr *e)
{
	size_t off = 0;
	msgpack_unpacked_init(u);
	msgpack_unpack_return r = msgpack_unpack_next(u, mi->obj.data, mi->obj.len, &off);
	if (r != MSGPACK_UNPACK_SUCCESS || off != mi->obj.len) {
		msgpack_unpacked_destroy(u);
		return qerr_input(e, 400, "msgpack value at offset %llu does not decode (%d)",
				  (unsigned long long)(mi->consumed - mi->obj.len), (int)r);
	}
	return 0;
}

/* A key has ended: decides what its value is for. */
static int key_done(struct msgpack_in *mi, struct qerr *e)
{
	mi->key[0] = '\0';
	if (mi->key_too_long) {
		mi->phase = PH_VALUE; /* none of ours: skip the value */
		mi->keep = false;
		return 0;
	}
	msgpack_unpacked u;
	if (decode_obj(mi, &u, e) < 0)
		return -1;
	int rc = 0;
	if (u.data.type != MSGPACK_OBJECT_STR) {
		rc = qerr_input(e, 400, "msgpack map key is %s, not a str",
				type_name((unsigned char)mi->obj.data[0]));
	} else if (u.data.via.str.size > 0 && u.data.via.str.size <= KEY_MAX &&
		   memchr(u.data.via.str.ptr, '\0', u.data.via.str.size) == NULL) {
		memcpy(mi->key, u.data.via.str.ptr, u.data.via.str.size);
		mi->key[u.data.via.str.size] = '\0';
	}
	msgpack_unpacked_destroy(&u);
	if (rc < 0)
		return -1;
	if (strcmp(mi->key, "message") == 0) {
		if (mi->seen_message)
			return qerr_input(e, 400, "msgpack map has the key 'message' twice");
		mi->seen_message = true;
		mi->phase = PH_MSG_HDR;
		mi->f.hlen = mi->f.hneed = 0;
		return 0;
	}
	mi->phase = PH_VALUE;
	mi->keep = mi->key[0] != '\0' && meta_json_key_known(mi->key);
	if (mi->keep && json_object_get(mi->meta, mi->key) != NULL)
		return qerr_input(e, 400, "msgpack map has the key '%s' twice", mi->key);
	return 0;
}

/* A kept value has ended: decoded into the metadata object. */
static int value_done(struct msgpack_in *mi, struct qerr *e)
{
	if (!mi->keep)
		return 0;
	msgpack_unpacked u;
	if (decode_obj(mi, &u, e) < 0)
		return -1;
	mi->kept += mi->obj.len;
	qerr_clear(e);
	json_t *j = json_from_object(&u.data, e);
	msgpack_unpacked_destroy(&u);
	if (j == NULL) {
		if (e && e->cls == QERR_NONE)
			qerr_input(e, 400, "msgpack metadata key '%s' cannot be read", mi->key);
		return -1;
	}
	json_object_set_new(mi->meta, mi->key, j);
	return 0;
}

/* The next map entry, or the end of the map. */
static void next_pair(struct msgpack_in *mi)
{
	if (mi->pairs_left == 0) {
		mi->phase = PH_DONE;
		return;
	}
	mi->pairs_left--;
	mi->phase = PH_KEY;
	mi->keep = true;
	mi->key_too_long = false;
	buf_reset(&mi->obj);
	memset(&mi->f, 0, sizeof mi->f);
}

/* Reads the top map's header; consumes from p[0..n). */
static ssize_t map_header(struct msgpack_in *mi, const unsigned char *p, size_t n,
			  struct qerr *e)
{
	size_t i = 0;
	while (i < n && mi->phase == PH_MAP) {
		unsigned char c = p[i++];
		mi->consumed++;
		if (mi->map_hlen == 0) {
			if (!msgpack_starts_map(c))
				return qerr_input(e, 400, "msgpack body is %s, not a map", type_name(c));
			mi->map_hneed = c == 0xde ? 3 : c == 0xdf ? 5 : 1;
		}
		mi->map_hdr[mi->map_hlen++] = c;
		if (mi->map_hlen < mi->map_hneed)
			continue;
		uint64_t payload, count;
		header_sizes(mi->map_hdr, &payload, &count);
		uint64_t r = mi->body_max > mi->consumed ? mi->body_max - mi->consumed : 0;
		if (count > r)
			return qerr_input(e, 400, "msgpack map declares %llu entries, more than "
					  "the body holds", (unsigned long long)(count / 2));
		mi->pairs_left = count / 2;
		next_pair(mi);
	}
	return (ssize_t)i;
}

/* The `message` value's header; sets up the payload. */
static ssize_t message_header(struct msgpack_in *mi, const unsigned char *p, size_t n,
			      struct qerr *e)
{
	struct frame *f = &mi->f;
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i++];
		mi->consumed++;
		if (f->hneed == 0) {
			bool str = (c >= 0xa0 && c <= 0xbf) || (c >= 0xd9 && c <= 0xdb);
			bool bin = c >= 0xc4 && c <= 0xc6;
			if (!str && !bin)
				return qerr_input(e, 400, "msgpack key 'message' is %s, not a str "
						  "or bin holding the mail", type_name(c));
			f->hneed = header_len(c);
			f->hlen = 0;
		}
		f->hdr[f->hlen++] = c;
		if (f->hlen < f->hneed)
			continue;
		f->hneed = 0;
		uint64_t len, count;
		header_sizes(f->hdr, &len, &count);
		if (len == 0)
			return qerr_input(e, 400, "msgpack key 'message' is empty");
		if (len > mi->message_max)
			return qerr_input(e, 413, "msgpack message of %llu bytes exceeds "
					  "max_message_size (%llu bytes)", (unsigned long long)len,
					  (unsigned long long)mi->message_max);
		if (mi->consumed > mi->body_max || len > mi->body_max - mi->consumed)
			return qerr_input(e, 400, "msgpack message declares %llu bytes, more than "
					  "the body holds", (unsigned long long)len);
		mi->msg_left = len;
		mi->phase = PH_MSG_BODY;
		break;
	}
	return (ssize_t)i;
}

int msgpack_in_feed(struct msgpack_in *mi, const void *data, size_t n, struct qerr *e)
{
	const unsigned char *p = data;
	while (n > 0) {
		ssize_t used = 0;
		bool done = false;
		switch (mi->phase) {
		case PH_MAP:
			used = map_header(mi, p, n, e);
			break;
		case PH_KEY:
		case PH_VALUE:
			used = frame_scan(mi, p, n, &done, 1, e);
			if (used < 0)
				return -1;
			if (mi->keep) {
				if (mi->phase == PH_KEY && mi->obj.len + (size_t)used > KEY_MAX + 5) {
					mi->key_too_long = true;
					mi->keep = false;
					buf_reset(&mi->obj);
				} else {
					buf_append(&mi->obj, p, (size_t)used);
				}
				/* Scalars of many bytes each can outgrow what the
				 * element counts promised: the total is checked too. */
				if (mi->kept + mi->obj.len > mi->meta_max)
					return qerr_input(e, 413, "msgpack metadata exceeds %llu bytes",
							  (unsigned long long)mi->meta_max);
			}
			if (done) {
				enum phase was = mi->phase;
				if ((was == PH_KEY ? key_done(mi, e) : value_done(mi, e)) < 0)
					return -1;
				buf_reset(&mi->obj);
				memset(&mi->f, 0, sizeof mi->f);
				if (was == PH_VALUE)
					next_pair(mi);
			}
			break;
		case PH_MSG_HDR:
			used = message_header(mi, p, n, e);
			break;
		case PH_MSG_BODY: {
			size_t k = mi->msg_left < n ? (size_t)mi->msg_left : n;
			if (mi->fn(mi->arg, p, k, e) < 0)
				return -1;
			mi->msg_left -= k;
			mi->consumed += k;
			used = (ssize_t)k;
			if (mi->msg_left == 0)
				next_pair(mi);
			break;
		}
		case PH_DONE:
		default:
			return qerr_input(e, 400, "bytes after the end of the msgpack map at offset "
					  "%llu", (unsigned long long)mi->consumed);
		}
		if (used < 0)
			return -1;
		p += used;
		n -= (size_t)used;
	}
	return 0;
}

int msgpack_in_finish(struct msgpack_in *mi, struct qmeta *m, struct qerr *e)
{
	if (mi->phase != PH_DONE)
		return qerr_input(e, 400, "msgpack body ends inside the map (after %llu bytes): "
				  "truncated", (unsigned long long)mi->consumed);
	if (!mi->seen_message)
		return qerr_input(e, 400, "msgpack body carries no message (the structured "
				  "formatter sends none): use the multipart, msgpack, "
				  "json_with_message or default formatter");
	return meta_from_json(mi->meta, m, e);
}
