#!/usr/bin/env python3
"""test_bad_input.py - the bad-input matrix: every malformed, hostile or
merely odd request gets its expected status and leaves nothing stored (or,
for odd but valid input, is stored byte-exact).  After every test: the
file store wrote nothing outside file_root, left nothing half-stored, and
every line of the daemon's log is one line of its own format (no raw CR,
LF or NUL from input).  Sent through nginx where nginx would pass the
request, else straight to the socket.  File store."""

import base64
import gzip
import hashlib
import json
import os
import re
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

F01 = "01-plain.default.http"
J02 = "02-utf8-two-rcpt-user-ipv6.json.http"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} rspamd-quarantined\[\d+\]: "
                      r"(debug|info|notice|warning|error|critical|alert|emergency): \S")
REQ_LINE = re.compile(r"^qid: .*, status: \d{3}(, error: .*)?(, skipped: .*)?$")


def f01():
    return h.split_request(h.fixture_request(F01))


def message(subject=b"plain", size=None):
    """A small message; padded to exactly size bytes when asked."""
    m = (b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
         b"Subject: " + subject + b"\r\nMessage-ID: <bad-input@example.org>\r\n\r\nBody.\r\n")
    if size is not None:
        assert size >= len(m)
        m = m[:-2] + b"x" * (size - len(m)) + b"\r\n"
        assert len(m) == size
    return m


def request(body, headers=(), drop=(), qid="BADINPUT1"):
    """Fixture 01's request with another body, headers replaced or added
    (name, value) and headers dropped (names)."""
    method, path, hs, _ = f01()
    repl = {k.lower(): (k, v) for k, v in headers}
    drops = {d.lower() for d in drop}
    out = []
    for k, v in hs:
        lk = k.lower()
        if lk in drops:
            continue
        if lk == "content-length":
            v = str(len(body))
        elif lk == "x-rspamd-qid":
            v = qid
        if lk in repl:
            k, v = repl.pop(lk)
        out.append((k, v))
    out += list(repl.values())
    return h.build_request(method, path, out, body)


def snapshot(top, skip):
    """{path: (mode, size)} of everything below top but the paths in skip."""
    out = {}
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if os.path.join(d, x) not in skip]
        for f in files + dirs:
            p = os.path.join(d, f)
            if p in skip:
                continue
            try:
                st = os.lstat(p)
            except OSError:
                continue
            out[p] = (st.st_mode, 0 if os.path.isdir(p) else st.st_size)
    return out


class BadInputCase(h.ServerTestCase):
    tmp_prefix = "rq-badinput-"
    extra_conf = None

    def setUp(self):
        super().setUp()
        self.s = self.stack(backend="file", extra_conf=self.extra_conf)
        self.d = self.s.daemon
        self.skip = {self.d.file_root, self.d.logfile, self.s.nginx.dir, self.d.rundir}
        self.before = snapshot(self.tmp, self.skip)
        self.addCleanup(self.after_checks)

    def after_checks(self):
        # the store wrote nothing outside file_root
        after = snapshot(self.tmp, self.skip)
        self.assertEqual(sorted(set(after) - set(self.before)), [],
                         "files appeared outside file_root")
        # nothing half-stored
        root = self.d.file_root
        for d, _, files in os.walk(os.path.join(root, "users")):
            names = set(files)
            for f in files:
                self.assertFalse(f.startswith(".tmp."), os.path.join(d, f))
                if f.endswith(".eml"):
                    self.assertIn(f[:-4] + ".json", names, os.path.join(d, f))
        tmp = os.path.join(root, "tmp")
        self.assertTrue(h._wait_for(lambda: not os.listdir(tmp), 2), os.listdir(tmp))
        # one log line per line, none carrying raw control bytes
        with open(self.d.logfile, "rb") as f:
            raw = f.read()
        self.assertNotIn(b"\r", raw)
        self.assertNotIn(b"\0", raw)
        for ln in raw.decode("utf-8").splitlines():
            self.assertRegex(ln, LOG_LINE)
            body = LOG_LINE.sub("", ln, count=1)
            if ": qid: " in ln:
                self.assertRegex("qid: " + ln.split(": qid: ", 1)[1], REQ_LINE)
            del body
        self.assertIsNone(self.d.proc.poll(), "the daemon died")

    # -- helpers
    def via_nginx(self, raw):
        return h.http_raw(self.s.port, raw)

    def expect(self, resp, status, what=""):
        self.assertStatus(resp, status, what)
        if status != 200:
            body = json.loads(resp[2].decode())
            self.assertTrue(body.get("error"), resp[2])

    def assertNothing(self):
        self.assertEqual(self.d.entries(), [])

    def stored(self, qid=None):
        es = self.d.entries(*(("--qid", qid) if qid else ()))
        out = []
        for e in es:
            rc, full, err = self.d.cli("show", e["id"], "--json")
            self.assertEqual(rc, 0, err)
            rc, data, err = self.d.cli("cat", e["id"])
            self.assertEqual(rc, 0, err)
            full = json.loads(full.decode())
            self.assertEqual(full["sha256"], hashlib.sha256(data).hexdigest())
            out.append((full, data))
        return out

    def assertStoredExact(self, body, rcpts=("bob@example.net",), qid=None):
        got = self.stored(qid)
        self.assertEqual(sorted(f["rcpt"] for f, _ in got), sorted(rcpts))
        for f, data in got:
            self.assertEqual(data, body)
        return got

    def fcgi(self, env, body, cl=None, end=True):
        """Straight to the socket; env from a raw request's meta headers."""
        c = h.FcgiConn(self.d.socket, timeout=30)
        try:
            env = dict(env)
            env.setdefault("REMOTE_ADDR", "127.0.0.1")
            if cl is not None:
                env["CONTENT_LENGTH"] = str(cl)
            c.begin(env)
            c.stdin(body)
            if end:
                c.stdin_end()
            return c.response()
        finally:
            c.close()


# ------------------------------------------------------------------ lengths

class LengthTest(BadInputCase):
    extra_conf = {"max_message_size": "2000"}

    def test_missing_body_through_nginx(self):
        self.expect(self.via_nginx(request(b"")), 400, "empty body")
        self.assertNothing()

    def test_missing_content_length(self):
        env, _ = h.meta_env(request(message()))
        del env["CONTENT_LENGTH"]
        self.expect(self.fcgi(env, b""), 411, "no CONTENT_LENGTH")
        self.assertNothing()

    def test_content_length_too_small(self):
        body = message()
        env, _ = h.meta_env(request(body))
        self.expect(self.fcgi(env, body, cl=len(body) - 10), 400, "body longer than said")
        self.assertNothing()

    def test_content_length_too_large(self):
        body = message()
        env, _ = h.meta_env(request(body))
        self.expect(self.fcgi(env, body, cl=len(body) + 10), 400, "body shorter than said")
        self.assertNothing()

    def test_content_length_garbage(self):
        body = message()
        env, _ = h.meta_env(request(body))
        for cl in ("-1", "12abc", "1e3", "99999999999999999999999", " 5"):
            self.expect(self.fcgi(env, body, cl=cl), 400, "Content-Length %r" % cl)
        self.assertNothing()

    def test_exactly_max_message_size(self):
        body = message(size=2000)
        self.expect(self.via_nginx(request(body)), 200, "exactly max_message_size")
        self.assertStoredExact(body)

    def test_one_byte_over_max_message_size(self):
        body = message(size=2001)
        self.expect(self.via_nginx(request(body)), 413, "one byte over")
        self.assertNothing()

    def test_gzip_one_byte_over_max_message_size(self):
        body = message(size=2001)
        raw = request(gzip.compress(body), [("Content-Encoding", "gzip")])
        self.expect(self.via_nginx(raw), 413, "one byte over after inflation")
        ok = message(size=2000)
        raw = request(gzip.compress(ok), [("Content-Encoding", "gzip")], qid="BADINPUT2")
        self.expect(self.via_nginx(raw), 200, "exactly at the limit after inflation")
        self.assertStoredExact(ok)


# ------------------------------------------------------------------ gzip

def gzip_bomb(size):
    """gzip of a header line and `size` zero bytes, built in pieces: it
    starts like mail, so only the size can refuse it."""
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    zero = b"\0" * (1 << 20)
    out = [co.compress(b"Subject: bomb\r\n\r\n")]
    out += [co.compress(zero) for _ in range(size >> 20)]
    out.append(co.flush())
    return b"".join(out)


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1])
    return 0


class GzipTest(BadInputCase):
    extra_conf = {"max_message_size": "10M"}

    def test_gzip_bomb(self):
        bomb = gzip_bomb(1 << 30)
        self.assertLess(len(bomb), 1_200_000)
        raw = request(bomb, [("Content-Encoding", "gzip")])
        t0 = time.monotonic()
        resp = self.via_nginx(raw)
        took = time.monotonic() - t0
        self.expect(resp, 413, "1 MB -> 1 GB")
        self.assertLess(took, 10, "the bomb took %.1f s to refuse" % took)
        for pid in self.d.worker_pids():
            self.assertLess(vm_hwm_kb(pid), 64 * 1024, "worker %d peak memory" % pid)
        self.assertNothing()

    def test_truncated_gzip(self):
        gz = gzip.compress(message() * 50)
        self.expect(self.via_nginx(request(gz[:len(gz) // 2], [("Content-Encoding", "gzip")])),
                    400, "truncated gzip")
        self.expect(self.via_nginx(request(gz[:-4], [("Content-Encoding", "gzip")])),
                    400, "gzip without its length")
        self.assertNothing()

    def test_bad_crc(self):
        gz = bytearray(gzip.compress(message()))
        gz[-8] ^= 0xff
        self.expect(self.via_nginx(request(bytes(gz), [("Content-Encoding", "gzip")])),
                    400, "bad CRC")
        gz = bytearray(gzip.compress(message()))
        gz[-1] ^= 0x01  # ISIZE
        self.expect(self.via_nginx(request(bytes(gz), [("Content-Encoding", "gzip")])),
                    400, "bad ISIZE")
        self.expect(self.via_nginx(request(b"not gzip at all", [("Content-Encoding", "gzip")])),
                    400, "not gzip")
        self.assertNothing()


# ------------------------------------------------------------------ multipart

BOUNDARY = "8f3a0c1d2e4b5a69"


def json02_meta(**more):
    meta = json.loads(h.split_request(h.fixture_request(J02))[3])
    meta.update(more)
    return meta


def part(name, data, ctype="application/octet-stream"):
    return (b"--" + BOUNDARY.encode() + b"\r\n"
            b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n'
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + data + b"\r\n")


def multipart(parts, close=True):
    return b"".join(parts) + ((b"--" + BOUNDARY.encode() + b"--\r\n") if close else b"")


class MultipartTest(BadInputCase):
    def post_mp(self, body):
        return h.post(self.s.port, "/quarantine", body,
                      [("Content-Type", 'multipart/form-data; boundary="%s"' % BOUNDARY),
                       ("User-Agent", "rspamd-3.8.4")])

    def meta(self, qid):
        return json.dumps(json02_meta(qid=qid)).encode()

    def test_no_closing_boundary(self):
        body = multipart([part("metadata", self.meta("MP1")), part("message", message())],
                         close=False)
        self.expect(self.post_mp(body), 400, "no closing boundary")
        self.assertNothing()

    def test_boundary_inside_the_content(self):
        m = message(b"see --" + BOUNDARY.encode() + b" here") + \
            b"quoted: --" + BOUNDARY.encode() + b"--\r\n" + \
            b" --" + BOUNDARY.encode() + b"\r\n\r\n--" + BOUNDARY.encode()[:-1] + b"\r\n"
        body = multipart([part("metadata", self.meta("MP2")), part("message", m)])
        self.expect(self.post_mp(body), 200, "boundary text inside the message")
        self.assertStoredExact(m, ["bob@example.net", "carol@example.net"])

    def test_duplicate_parts(self):
        body = multipart([part("metadata", self.meta("MP3")), part("message", message()),
                          part("message", message(b"two"))])
        self.expect(self.post_mp(body), 400, "two message parts")
        body = multipart([part("metadata", self.meta("MP4")), part("metadata", self.meta("MP5")),
                          part("message", message())])
        self.expect(self.post_mp(body), 400, "two metadata parts")
        self.assertNothing()

    def test_2000_parts(self):
        """Parts other than message and metadata are ignored (a newer
        Rspamd may add some), up to the parser's limit of 64 parts; 2000
        parts are refused, naming the limit."""
        extra = [part("extra%d" % i, b"x" * 10) for i in range(2000)]
        m = message(b"many parts")
        body = multipart(extra[:1000] + [part("metadata", self.meta("MP6"))] + extra[1000:]
                         + [part("message", m)])
        resp = self.post_mp(body)
        self.expect(resp, 400, "2000 parts")
        self.assertIn(b"parts", resp[2])
        self.assertNothing()
        body = multipart(extra[:30] + [part("metadata", self.meta("MP6"))] + extra[30:60]
                         + [part("message", m)])
        self.expect(self.post_mp(body), 200, "60 extra parts")
        self.assertStoredExact(m, ["bob@example.net", "carol@example.net"])

    def test_no_message_part(self):
        body = multipart([part("metadata", self.meta("MP7"))])
        self.expect(self.post_mp(body), 400, "metadata only")
        self.assertNothing()


# ------------------------------------------------------------------ RFC 2047

HOSTILE_SUBJECTS = [
    b"=?UTF-8?B?!!!not*base64?=",
    b"=?UTF-8?B?SGVsbG8=?= =?UTF-8?B?SGV$$$?=",
    b"=?x-no-such-charset?Q?abc?=",
    b"=?UTF-8?Q?line=0D=0Abreak=00nul?=",
    b"=?UTF-8?B?" + base64.b64encode(b"cr\rlf\nnul\0end") + b"?=",
    b"=?UTF-8?Q?=FF=FE=C3?=",
    b"=?ISO-8859-1?Q?caf=E9?= raw \xff\xfe bytes",
]


def control_free(v):
    """No C0 control character nor DEL anywhere in a JSON value."""
    if isinstance(v, str):
        return not re.search(r"[\x00-\x1f\x7f]", v)
    if isinstance(v, dict):
        return all(control_free(x) for x in v.values())
    if isinstance(v, list):
        return all(control_free(x) for x in v)
    return True


class Rfc2047Test(BadInputCase):
    def test_hostile_message_subject(self):
        for i, subj in enumerate(HOSTILE_SUBJECTS):
            m = message(subj)
            qid = "SUBJ%02d" % i
            self.expect(self.via_nginx(request(m, qid=qid)), 200, repr(subj))
            (full, data), = self.stored(qid)
            self.assertEqual(data, m, "stored byte-exact")
            self.assertTrue(control_free(full), "%r -> %r" % (subj, full))
        s = [e["subject"] for e in self.d.entries("--qid", "SUBJ06")]
        self.assertIn("café", s[0])

    def test_hostile_rspamd_subject_header(self):
        for i, subj in enumerate(HOSTILE_SUBJECTS):
            if b"\0" in subj:
                continue
            qid = "RSUBJ%02d" % i
            # nginx passes header bytes as they came (latin-1 here)
            raw = request(message(), [("X-Rspamd-subject", subj.decode("latin-1"))], qid=qid)
            self.expect(self.via_nginx(raw), 200, repr(subj))
            (full, _), = self.stored(qid)
            self.assertTrue(control_free(full), "%r -> %r" % (subj, full))

    def test_raw_control_bytes_in_meta_headers_straight(self):
        """nginx refuses CR/LF in headers; FastCGI parameters can carry
        anything: a parameter with CR/LF/ESC must not reach the log raw."""
        env, body = h.meta_env(request(message()))
        env["HTTP_X_RSPAMD_SUBJECT"] = "evil\r\nqid: FAKE, status: 200\x1b[31m"
        env["HTTP_X_RSPAMD_QID"] = "Q\r\nFAKE"
        env["HTTP_X_RSPAMD_FROM"] = "a\nb@example.org"
        resp = self.fcgi(env, body)
        self.assertIn(resp[0], (200, 400), resp)
        for full, _ in self.stored():
            self.assertTrue(control_free(full), full)


# ------------------------------------------------------------------ JSON

class JsonTest(BadInputCase):
    def post_json(self, obj_bytes):
        return h.post(self.s.port, "/quarantine", obj_bytes,
                      [("Content-Type", "application/json"), ("User-Agent", "rspamd-3.8.4")])

    def jwm(self, **more):
        meta = json02_meta(**more)
        meta.setdefault("message", base64.b64encode(message()).decode())
        return meta

    def test_nested_5000_deep(self):
        deep = b'{"qid":"DEEP","message":"' + base64.b64encode(message()) + b'","x":' + \
            b"[" * 5000 + b"]" * 5000 + b"}"
        self.expect(self.post_json(deep), 400, "5000 deep")
        deep = b'{"qid":"DEEP2","message":"' + base64.b64encode(message()) + b'","x":' + \
            b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}"
        self.expect(self.post_json(deep), 400, "5000 deep objects")
        self.assertNothing()

    def test_duplicate_keys(self):
        body = json.dumps(self.jwm(qid="DUP1"))
        body = body[:-1] + ', "qid": "DUP2"}'
        self.expect(self.post_json(body.encode()), 400, "duplicate key")
        self.assertNothing()

    def test_100000_recipients(self):
        """Far more recipients than any MTA accepts for one message
        (Postfix: 1000): refused at once, 413, never a worker busy for
        minutes creating directories."""
        rcpts = ["u%06d@example.net" % i for i in range(100000)]
        body = json.dumps(self.jwm(qid="MANY", rcpt=rcpts)).encode()
        t0 = time.monotonic()
        resp = self.post_json(body)
        self.expect(resp, 413, "100 000 recipients")
        self.assertLess(time.monotonic() - t0, 10)
        self.assertNothing()

    def test_1000_recipients_accepted(self):
        rcpts = ["u%04d@example.net" % i for i in range(1000)]
        m = message(b"a thousand")
        body = json.dumps(self.jwm(qid="THOUSAND", rcpt=rcpts,
                                   message=base64.b64encode(m).decode())).encode()
        self.expect(self.post_json(body), 200, "1000 recipients")
        self.assertEqual(len(self.d.entries("--qid", "THOUSAND", "--limit", "2000")), 1000)


# ------------------------------------------------------------------ recipients

class RecipientTest(BadInputCase):
    def post_rcpt(self, rcpts, qid):
        raw = request(message(qid.encode()), [("X-Rspamd-rcpt", json.dumps(rcpts))], qid=qid)
        return self.via_nginx(raw)

    def user_dirs(self):
        users = os.path.join(self.d.file_root, "users")
        out = []
        for dom in os.listdir(users):
            for loc in os.listdir(os.path.join(users, dom)):
                out.append((dom, loc))
        return sorted(out)

    def test_path_tricks(self):
        rcpts = ["../../../escape@example.net", "a/b@example.net", "..@example.net",
                 "x@../../etc", "/abs@example.net", ".hidden@example.net",
                 '"quoted local part"@example.net', '"../q"@example.net',
                 "%2e%2e@example.net"]
        self.expect(self.post_rcpt(rcpts, "TRICKS"), 200, "path-like recipients")
        got = self.stored("TRICKS")
        self.assertEqual(sorted(f["rcpt"] for f, _ in got), sorted(rcpts))
        for dom, loc in self.user_dirs():
            for name in (dom, loc):
                self.assertNotIn("/", name)
                self.assertFalse(name.startswith("."), name)
                self.assertRegex(name, r"^[a-z0-9.+_%A-F-]+$")

    def test_nul_in_recipient(self):
        # JSON's \u0000 in the meta header, and in json_with_message
        self.expect(self.post_rcpt(["bob\u0000@example.net"], "NUL1"), 400, "NUL (header)")
        meta = json02_meta(qid="NUL2", rcpt=["bob\u0000x@example.net"],
                           message=base64.b64encode(message()).decode())
        resp = h.post(self.s.port, "/quarantine", json.dumps(meta).encode(),
                      [("Content-Type", "application/json")])
        self.expect(resp, 400, "NUL (JSON body)")
        self.assertNothing()

    def test_long_recipient(self):
        long_local = "l" * 320
        rcpt = long_local + "@example.net"
        self.expect(self.post_rcpt([rcpt], "LONG1"), 200, "320-character local part")
        (full, _), = self.stored("LONG1")
        self.assertEqual(full["rcpt"], rcpt)
        for dom, loc in self.user_dirs():
            self.assertLessEqual(len(loc.encode()), 255)
        longer = ("é" * 300) + "@" + ("d" * 300) + ".example"
        resp = self.post_rcpt([longer], "LONG2")
        self.assertIn(resp[0], (200, 400), resp)
        if resp[0] == 200:
            (full, _), = self.stored("LONG2")
            self.assertEqual(full["rcpt"], longer)
        for dom, loc in self.user_dirs():
            self.assertLessEqual(len(loc.encode()), 255)
            self.assertLessEqual(len(dom.encode()), 255)


# ------------------------------------------------------------------ access

class AccessTest(BadInputCase):
    """Malformed credentials and addresses straight to the socket (the
    plain wrong-password and allow_from cases run through nginx in
    test_ingest.py)."""
    extra_conf = {"auth_user": "rspamd", "auth_password_hash": h.hash_password("right pw"),
                  "allow_from": "127.0.0.0/8, ::1"}

    def test_malformed_credentials(self):
        env, body = h.meta_env(request(message()))
        good = "Basic " + base64.b64encode(b"rspamd:right pw").decode()
        for auth in ("Basic !!!notbase64", "Basic " + base64.b64encode(b"rspamd").decode(),
                     "Basic " + base64.b64encode(b"rspamd:right pw\0x").decode(),
                     "Basic " + base64.b64encode(b"rspamd:" + b"p" * 100000).decode(),
                     "Bearer abc", "Basic", "basic " + good[6:] + "=",
                     "Basic " + base64.b64encode(b"rspamd\r\n:right pw").decode()):
            env["HTTP_AUTHORIZATION"] = auth
            self.expect(self.fcgi(env, body), 401, auth[:40])
        self.assertNothing()
        env["HTTP_AUTHORIZATION"] = good
        self.expect(self.fcgi(env, body), 200, "right credentials")

    def test_addresses_not_allowed(self):
        env, body = h.meta_env(request(message()))
        env["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(b"rspamd:right pw").decode()
        for addr in ("192.0.2.1", "128.0.0.1", "::2", "::ffff:10.0.0.1", "", "not an address",
                     "127.0.0.1\r\nX: y", "1" * 5000):
            env["REMOTE_ADDR"] = addr
            self.expect(self.fcgi(env, body), 403, repr(addr[:40]))
        self.assertNothing()


# ------------------------------------------------------------------ msgpack

MP_FIXTURES = os.path.join(h.ROOT, "tests", "fixtures", "rspamd-4.1.5")


def mp_fixture_body(name):
    """The body of a 4.1.5 capture (msgpack, structured ...)."""
    with open(os.path.join(MP_FIXTURES, "requests", name), "rb") as f:
        return h.split_request(f.read())[3]


def mp_str(b):
    """A msgpack str of b (str8/16/32 by length)."""
    n = len(b)
    if n < 32:
        return bytes([0xa0 | n]) + b
    if n < 256:
        return b"\xd9" + bytes([n]) + b
    if n < 65536:
        return b"\xda" + n.to_bytes(2, "big") + b
    return b"\xdb" + n.to_bytes(4, "big") + b


def mp_map(pairs):
    """A msgpack map of (key bytes, encoded value bytes) pairs."""
    assert len(pairs) < 16
    return bytes([0x80 | len(pairs)]) + b"".join(mp_str(k) + v for k, v in pairs)


class MsgpackTest(BadInputCase):
    """Rspamd 4.x's msgpack formatter gone wrong: each a clear 4xx, nothing
    stored, the worker's memory untouched by declared lengths."""

    def expect_refused(self, body, status, part, what, headers=()):
        resp = self.via_nginx(request(body, list(headers)))
        self.expect(resp, status, what)
        err = json.loads(resp[2].decode())["error"]
        self.assertIn(part, err, "%s: %s" % (what, err))
        self.assertNothing()

    def test_truncated(self):
        body = mp_fixture_body("02-utf8-two-rcpt-user-ipv6.msgpack.http")
        for cut in (1, 3, 40, len(body) // 2, len(body) - 1):
            resp = self.via_nginx(request(body[:cut]))
            self.expect(resp, 400, "cut at %d of %d" % (cut, len(body)))
        self.assertNothing()

    def test_no_message(self):
        self.expect_refused(mp_map([(b"qid", mp_str(b"4NOMSG")), (b"action", mp_str(b"reject"))]),
                            400, "no message", "map without message")
        self.expect_refused(mp_fixture_body("04-big-attachment-three-rcpt.structured.http"),
                            400, "structured", "the structured formatter")

    def test_message_of_the_wrong_type(self):
        for what, v in (("integer", b"\x05"), ("array", b"\x91\xa1x"), ("map", b"\x80"),
                        ("nil", b"\xc0"), ("float", b"\xcb" + b"\0" * 8)):
            self.expect_refused(mp_map([(b"message", v)]), 400, "not a str or bin", what)

    def test_declared_lengths_beyond_the_body(self):
        """str32 / bin32 / array32 / map32 claiming gigabytes in a body of a
        few bytes: refused at the header, nothing of that size allocated."""
        huge = b"\xff\xff\xff\xf0"
        near = (8 << 20).to_bytes(4, "big")  # under max_message_size (default 50M)
        cases = [
            ("str32 message", mp_map([(b"message", b"\xdb" + near + b"Subject: x\r\n")]),
             400, "more than the body holds"),
            ("bin32 message", mp_map([(b"message", b"\xc6" + near + b"Subject: x\r\n")]),
             400, "more than the body holds"),
            ("str32 message over max_message_size",
             mp_map([(b"message", b"\xdb" + huge + b"Subject: x\r\n")]), 413, "max_message_size"),
            ("str32 subject", mp_map([(b"subject", b"\xdb" + huge + b"x"),
                                      (b"message", mp_str(b"Subject: x\r\n"))]),
             400, "more than the body holds"),
            ("array32 symbols", mp_map([(b"symbols", b"\xdd" + huge + b"\x01"),
                                        (b"message", mp_str(b"Subject: x\r\n"))]),
             400, "elements"),
            ("map32 top", b"\xdf" + huge + mp_str(b"message") + mp_str(b"Subject: x\r\n"),
             400, "entries"),
        ]
        for what, body, status, part in cases:
            self.expect_refused(body, status, part, what)
        for pid in self.d.worker_pids():
            self.assertLess(vm_hwm_kb(pid), 64 * 1024, "worker %d peak memory" % pid)

    def test_depth_bombs(self):
        for key in (b"symbols", b"unknown_key"):
            bomb = mp_map([(key, b"\x91" * 100000 + b"\x01"),
                           (b"message", mp_str(b"Subject: x\r\n"))])
            self.expect_refused(bomb, 400, "deeper", key.decode())

    def test_msgpack_inside_gzip(self):
        body = mp_fixture_body("01-plain.msgpack.http")
        with open(os.path.join(MP_FIXTURES, "messages", "plain.eml"), "rb") as f:
            want = f.read()
        enc = [("Content-Encoding", "gzip")]
        self.expect_refused(gzip.compress(body[:-10]), 400, "truncated", "gzip of cut msgpack",
                            enc)
        self.expect_refused(gzip.compress(b"\x81" + mp_str(b"message") + b"\x05"), 400,
                            "not a str or bin", "gzip of msgpack with a bad message", enc)
        gz = gzip.compress(body)
        self.expect_refused(gz[:len(gz) // 2], 400, "gzip", "cut gzip of msgpack", enc)
        resp = self.via_nginx(request(gzip.compress(body), enc))
        self.expect(resp, 200, "gzip of a good msgpack body")
        # the msgpack map's rcpt (bob) overrides the meta headers' here: same
        self.assertStoredExact(want)

    def test_big_message_memory_flat(self):
        """A 40 MB message in a msgpack body (bin32, 8-bit) is streamed to
        the store: the worker's peak memory stays far below its size."""
        msg = (b"Subject: big\r\n\r\n" + b"\xe4x" * (20 << 20))
        body = mp_map([(b"qid", mp_str(b"4BIGMP")),
                       (b"message", b"\xc6" + len(msg).to_bytes(4, "big") + msg)])
        resp = self.via_nginx(request(body))
        self.expect(resp, 200, "40 MB msgpack message")
        peak = max(vm_hwm_kb(pid) for pid in self.d.worker_pids())
        # about 6 MB here; holding the message once would be over 40 MB
        self.assertLess(peak, 32 * 1024, "worker peak %d KB for a 40 MB message" % peak)
        got = self.stored()
        self.assertEqual([len(d) for _, d in got], [len(msg)])
        self.assertEqual(got[0][1], msg)

    def test_body_that_is_not_mail(self):
        for body in (b"hello, this is no mail\r\n", b"\x93\x01\x02\x03",
                     b"\r\nSubject: after a blank line\r\n\r\nx\r\n", b"\0\0\0\0"):
            self.expect_refused(body, 400, "body is not a mail message; which formatter sent it?",
                                repr(body[:20]))
        # a short but real message still goes in
        self.expect(self.via_nginx(request(b"Subject: x\n\nshort\n")), 200, "short mail")


if __name__ == "__main__":
    h.main()
