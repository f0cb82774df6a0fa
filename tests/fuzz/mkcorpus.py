#!/usr/bin/env python3
# tests/fuzz/mkcorpus.py - writes the seed corpora of the fuzz harnesses
# (corpus/<name>/) from the captured Rspamd requests and messages in
# tests/fixtures/rspamd-3.4 (the msgpack seeds and the newer meta headers
# from rspamd-3.12.1 and rspamd-4.1.5), the sample configuration and the string
# literals of the unit tests.  Rerun after changing the fixtures; inputs
# found by fuzzing (crash-*) are kept.
import base64
import gzip
import hashlib
import json
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(TOP, "tests", "fixtures", "rspamd-3.4")
FIX_NEWER = [os.path.join(TOP, "tests", "fixtures", g) for g in ("rspamd-3.12.1", "rspamd-4.1.5")]
BOUNDARY = "5f3c1a9e0b7d2c44"
MAX_SEED = 16384  # bytes; larger inputs slow every fuzzing run


def seed(name, label, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    fn = "seed-" + re.sub(r"[^a-z0-9.-]+", "-", label.lower())[:60]
    with open(os.path.join(d, fn), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def requests(fix=FIX):
    """(label, [(header, value)], body) of each captured request."""
    d = os.path.join(fix, "requests")
    out = []
    for fn in sorted(os.listdir(d)):
        raw = read(os.path.join(d, fn))
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")[1:]
        hdrs = []
        for line in lines:
            k, _, v = line.partition(b":")
            hdrs.append((k.decode(), v.lstrip(b" ")))
        out.append((fn.rsplit(".", 1)[0], hdrs, body))
    return out


def messages():
    d = os.path.join(FIX, "messages")
    out = []
    for fn in sorted(os.listdir(d)):
        m = read(os.path.join(d, fn))
        if len(m) > MAX_SEED:  # keep its header and the start of the body
            m = m[:MAX_SEED]
        out.append((fn.rsplit(".", 1)[0], m))
    return out


def param(k):
    return "HTTP_" + k.upper().replace("-", "_")


def env_lines(hdrs, extra=()):
    lines = [b"REQUEST_METHOD=POST", b"REMOTE_ADDR=127.0.0.1"]
    for k, v in hdrs:
        if k.lower() == "content-length":
            continue
        if k.lower() == "content-type":
            lines.append(b"CONTENT_TYPE=" + v)
        else:
            lines.append(param(k).encode() + b"=" + v)
    lines += list(extra)
    return b"\n".join(lines) + b"\n\n"


def multipart_body(msg, meta, swap=False):
    b = BOUNDARY.encode()
    p1 = (b"--" + b + b"\r\nContent-Disposition: form-data; name=\"message\"; "
          b"filename=\"message.eml\"\r\nContent-Type: message/rfc822\r\n"
          b"Content-Transfer-Encoding: binary\r\n\r\n" + msg + b"\r\n")
    p2 = (b"--" + b + b"\r\nContent-Disposition: form-data; name=\"metadata\"\r\n"
          b"Content-Type: application/json\r\nContent-Transfer-Encoding: binary\r\n\r\n"
          + meta + b"\r\n")
    parts = [p2, p1] if swap else [p1, p2]
    return b"".join(parts) + b"--" + b + b"--\r\n"


def unit_literals(unit, must):
    """C string literals of a unit test that contain `must`."""
    path = os.path.join(TOP, "tests", "unit", "test_%s.c" % unit)
    if not os.path.exists(path):
        return []
    text = read(path).decode("utf-8", "replace")
    out = []
    for lit in re.findall(r'"((?:[^"\\\n]|\\.)*)"', text):
        if must in lit:
            try:
                lit = lit.replace("\\?", "?")
                out.append(lit.encode("latin-1", "backslashreplace").decode(
                    "unicode_escape").encode("latin-1"))
            except (UnicodeDecodeError, UnicodeEncodeError):
                out.append(lit.encode())
    return out


def wal_payload(records, entries, gz=False):
    """A log record's payload as the file store's commit writes it:
    "RQE2", flags, the message records, then the entries (directory, id,
    index of the record)."""
    out = struct.pack("<III", 0x32455152, 1 if gz else 0, len(records))
    for r in records:
        out += struct.pack("<I", len(r)) + r
    out += struct.pack("<I", len(entries))
    for rel, eid, k in entries:
        out += struct.pack("<H", len(rel)) + rel + eid + struct.pack("<I", k)
    return out


def wal_seeds():
    """fuzz_wal: a payload's 16-bit length, the payload, the content."""
    rec = read(os.path.join(HERE, "corpus", "record", "seed-record"))[24:]
    a, b = b"0123456789abcdef01234567", b"89abcdef0123456789abcdef"
    mail = b"From: s@example.com\r\nSubject: Hi\r\n\r\nbody\r\n"
    two = [(b"example.org/a", a, 0), (b"example.org/b", b, 0)]

    def wal(label, payload, content):
        seed("wal", label, struct.pack("<H", len(payload)) + payload + content)
    wal("two-entries", wal_payload([rec], two), mail)
    wal("gzip", wal_payload([rec], two, gz=True), gzip.compress(mail, mtime=0))
    wal("record-index-beyond", wal_payload([rec], [(b"example.org/a", a, 1)]), mail)
    wal("id-not-in-record", wal_payload([rec], [(b"example.org/c", b"f" * 24, 0)]), mail)
    wal("hostile-directory", wal_payload([rec], [(b"../../etc", a, 0), (b"x/..", b, 0)]), mail)
    wal("not-hex-id", wal_payload([rec], [(b"example.org/a", b"../../../../etc/passwd..", 0)]),
        mail)
    wal("record-not-json", wal_payload([b"{\"entries\":"], two), mail)


def main():
    reqs = requests()
    msgs = messages()
    meta_json = {}
    for label, hdrs, body in reqs:
        if label.endswith(".json"):
            meta_json[label[:-5]] = body

    # meta: the meta headers as parameters
    for label, hdrs, body in reqs:
        if label.endswith(".default"):
            lines = [param(k).encode() + b"=" + v for k, v in hdrs
                     if k.lower().startswith("x-rspamd-")]
            seed("meta", label, b"\n".join(lines) + b"\n")
    seed("meta", "rcpt-unknown", "HTTP_X_RSPAMD_RCPT=unknown\nHTTP_X_RSPAMD_QID=unknown\n")
    seed("meta", "rcpt-bare-array", '["a@example.org","../b@x","\\u0000@y"]')
    seed("meta", "score-bad", "HTTP_X_RSPAMD_SCORE=1e999\nHTTP_X_RSPAMD_SCAN_TIME=-5\n")
    seed("meta", "subject-encoded",
         "HTTP_X_RSPAMD_SUBJECT==?utf-8?b?R3LDvMOfZQ0KYmNjOiB4?=\n"
         "HTTP_X_RSPAMD_FROM==?utf-8?q?a=0Ab?=@x\n")

    # msgpack: 4 piece sizes, then a body of the msgpack or structured
    # formatter (4.1.5), and hostile ones
    newer = [(os.path.basename(f), requests(f)) for f in FIX_NEWER]
    for gen, rs in newer:
        for label, hdrs, body in rs:
            rule = label.split(".")[1]
            if rule in ("msgpack", "structured") and len(body) <= MAX_SEED:
                seed("msgpack", gen + "-" + label, b"\x01\x07\x40\xff" + body)
            if rule in ("msgpack", "structured") and len(body) <= MAX_SEED:
                seed("ingest", gen + "-" + label, env_lines(hdrs) + body)
            if rule == "default":
                lines = [param(k).encode() + b"=" + v for k, v in hdrs
                         if k.lower().startswith("x-rspamd-")]
                seed("meta", gen + "-" + label, b"\n".join(lines) + b"\n")
                for k, v in hdrs:
                    if k.lower() in ("x-rspamd-subject", "x-rspamd-from", "x-rspamd-user"):
                        seed("rfc2047", gen + "-" + label + "-" + k, v)
    seed("msgpack", "str32-beyond", b"\x00\x00\x00\x00\x81\xa7message\xdb\xff\xff\xff\xf0S:x")
    seed("msgpack", "array32-beyond",
         b"\x02\x02\x02\x02\x82\xa7symbols\xdd\xff\xff\xff\xff\x01\xa7message\xa3S:x")
    seed("msgpack", "deep", b"\x00\x01\x02\x03\x82\xa4junk" + b"\x91" * 40 + b"\x01\xa7message\xa3S:x")
    seed("msgpack", "no-message", b"\x00\x00\x00\x00\x81\xa3qid\xa1x")
    seed("msgpack", "bin-message-ext-meta",
         b"\x03\x03\x03\x03\x83\xa7message\xc4\x03S:\xff\xa3qid\xd4\x01\x02\xa5score\xcb"
         + struct.pack(">d", 1.5))
    seed("rfc2047", "rspamd-4-glued", "Gr=?UTF-8?Q?=C3=BC=C3=9Fe?= aus M=?UTF-8?Q?=C3=BCnchen?=")
    seed("rfc2047", "rspamd-4-from", "=?UTF-8?Q?j=C3=BCrgen=40m=C3=BCnchen.example?=")
    seed("rfc2047", "rspamd-312-garbage", b"=?UTF-8?Q?M=C3?==?UTF-8?Q?=BCnchen!?=\x01\xff\x7f\xc2\x85")

    # rfc2047: header values from requests, messages and the unit tests
    for label, hdrs, body in reqs:
        for k, v in hdrs:
            if k.lower() in ("x-rspamd-subject", "x-rspamd-from", "x-rspamd-user"):
                seed("rfc2047", label + "-" + k, v)
    for label, m in msgs:
        head = m.split(b"\r\n\r\n")[0].split(b"\n\n")[0]
        for line in head.splitlines():
            k, _, v = line.partition(b":")
            if k.lower() in (b"subject", b"from", b"to"):
                seed("rfc2047", label + "-" + k.decode(), v.strip())
    for i, lit in enumerate(unit_literals("rfc2047", "=?")):
        seed("rfc2047", "unit-%d" % i, lit)
    seed("rfc2047", "mixed", "=?iso-8859-1?q?M=FCnchen?= =?koi8-r?b?8NLJ18XU?= \xff raw")

    # charset: name LF bytes
    for label, m in msgs:
        seed("charset", "utf-8-" + label, b"utf-8\n" + m[:2048])
    seed("charset", "latin1", b"iso-8859-1\nGr\xfc\xdfe aus M\xfcnchen")
    seed("charset", "cp1252", b"windows-1252\n\x80\x81\x93quoted\x94\x9f")
    seed("charset", "koi8", b"koi8-r\n\xf0\xd2\xc9\xd7\xc5\xd4")
    seed("charset", "sjis", b"shift_jis\n\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd")
    seed("charset", "utf16", b"utf-16\n\xff\xfeh\x00i\x00\x00\xd8")
    seed("charset", "bad-utf8", b"utf-8\n\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82")
    seed("charset", "unknown", b"x-no-such-charset\nabc")

    # multipart: 4 piece sizes, Content-Type line, body
    ctype = ('multipart/form-data; boundary="%s"\n' % BOUNDARY).encode()
    for label, m in msgs:
        meta = meta_json.get("01-plain", b"{}")
        seed("multipart", label, b"\x00\x07\x30\xff" + ctype + multipart_body(m, meta))
        seed("multipart", label + "-swapped",
             b"\x03\x01\x10\x40" + ctype + multipart_body(m, meta, swap=True))
    body = multipart_body(msgs[0][1], b"{}")
    seed("multipart", "no-closing", b"\x05\x05\x05\x05" + ctype + body[:-len(BOUNDARY) - 6])
    seed("multipart", "unquoted", b"\x01\x02\x03\x04multipart/form-data; boundary=abc\n"
         b"--abc\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nx\r\n--abc--\r\n")

    # json_meta: the JSON bodies
    for label, body in sorted(meta_json.items()):
        seed("json_meta", label, body)
    seed("json_meta", "rcpt-unknown", '{"rcpt":"unknown","score":1.5,"header_subject":["a"]}')
    seed("json_meta", "odd-types",
         '{"rcpt":[1,null],"score":"x","symbols":{},"subject":"a\\r\\nb\\u0000c"}')

    # gzip: piece size byte, gzip stream
    for label, m in msgs:
        z = gzip.compress(m, mtime=0)
        seed("gzip", label, b"\x10" + z)
    z = gzip.compress(msgs[0][1], mtime=0)
    seed("gzip", "truncated", b"\x00" + z[:-6])
    bad = bytearray(z)
    bad[-8] ^= 0xFF
    seed("gzip", "bad-crc", b"\x02" + bytes(bad))
    seed("gzip", "bomb", b"\x40" + gzip.compress(b"\0" * 200000, mtime=0))
    seed("gzip", "two-members", b"\x01" + z + z)

    # base64
    for label, m in msgs:
        seed("base64", label + "-lines", base64.encodebytes(m[:4096]))
        seed("base64", label + "-flat", base64.b64encode(m[:4096]))
    for i, lit in enumerate(unit_literals("base64", "=")):
        seed("base64", "unit-%d" % i, lit)
    seed("base64", "bad", "QUJD\r\nR*==")

    # msghdr: messages
    for label, m in msgs:
        seed("msghdr", label, m[:8192])
    seed("msghdr", "folded", "Subject: =?utf-8?q?a?=\r\n =?utf-8?q?b?=\r\nFrom: x\r\n\tfolded\r\n\r\nbody")

    # addr_path: recipient addresses and hostile ones
    addrs = set()
    for label, hdrs, body in reqs:
        for k, v in hdrs:
            if k.lower() == "x-rspamd-rcpt" and v.startswith(b"["):
                for a in json.loads(v):
                    addrs.add(a)
    addrs |= {"../../etc/passwd@x", "a/b@c/d", ".hidden@.example", "..@..",
              '"quoted local"@example.org', "UPPER@Example.ORG", "noat", "@", "",
              "x" * 300 + "@" + "y" * 300, "%2e%2e@x", "a@b@c"}
    for a in sorted(addrs):
        seed("addr_path", hashlib.sha1(a.encode()).hexdigest()[:8], a)
    for i, lit in enumerate(unit_literals("addr_path", "@")):
        seed("addr_path", "unit-%d" % i, lit)

    # config: the sample file, pieces of it, listen values
    conf = read(os.path.join(TOP, "conf", "quarantine.conf"))
    seed("config", "sample", conf)
    seed("config", "keys", b"\n".join(l.lstrip(b"# ") for l in conf.splitlines()
                                      if b"=" in l) + b"\n")
    for v in ("unix:/run/rspamd-quarantine/sock", "127.0.0.1:9000", "[::1]:9000", "fd:0",
              "systemd"):
        seed("config", "listen-" + v, v)
    seed("config", "bad", "workers = 99999999999999999999\nmax_message_size = 1Q\n")

    # json_syntax: the symbols and fuzzy headers, the JSON bodies, edge cases
    for label, hdrs, body in reqs:
        for k, v in hdrs:
            if k.lower() in ("x-rspamd-symbols", "x-rspamd-fuzzy"):
                seed("json_syntax", label + "-" + k, v[:MAX_SEED])
    for label, body in sorted(meta_json.items()):
        seed("json_syntax", "body-" + label, body[:MAX_SEED])
    seed("json_syntax", "escapes", '["\\"\\\\\\/\\b\\f\\n\\r\\t","\\u00e9\\ud83d\\ude00"]')
    seed("json_syntax", "lone-surrogate", '["\\ud800","\\udc00"]')
    seed("json_syntax", "numbers", '[0,-0,1.5e-3,-12E+2,99999999999999999999,1e400]')
    seed("json_syntax", "literals", '{"a":true,"b":false,"c":null,"a":[{}]}')
    seed("json_syntax", "deep", "[" * 2048 + "]" * 2048)
    seed("json_syntax", "too-deep", "[" * 2048 + "1" + "]" * 2048)
    seed("json_syntax", "latin1", b'[{"name":"S","options":["\xe4"]}]')

    # ingest: parameters, empty line, body
    for label, hdrs, body in reqs:
        if len(body) > MAX_SEED:
            continue
        seed("ingest", label, env_lines(hdrs) + body)
    small = [(l, h, b) for l, h, b in reqs if l.startswith("01-plain.default")][0]
    seed("ingest", "gzip", env_lines(small[1], [b"HTTP_CONTENT_ENCODING=gzip"])
         + gzip.compress(small[2], mtime=0))
    j = json.loads(meta_json["02-utf8-two-rcpt-user-ipv6"])
    j["message"] = base64.b64encode(msgs[-1][1]).decode()
    seed("ingest", "json-with-message",
         b"REQUEST_METHOD=POST\nREMOTE_ADDR=::1\nCONTENT_TYPE=application/json\n\n"
         + json.dumps(j).encode())
    seed("ingest", "multipart",
         b"REQUEST_METHOD=POST\nREMOTE_ADDR=127.0.0.1\nCONTENT_TYPE=multipart/form-data; "
         b"boundary=\"" + BOUNDARY.encode() + b"\"\n\n"
         + multipart_body(msgs[0][1], meta_json["02-utf8-two-rcpt-user-ipv6"]))
    seed("ingest", "wrong-method", "REQUEST_METHOD=GET\nREMOTE_ADDR=127.0.0.1\n\nx")
    seed("ingest", "not-allowed", "REQUEST_METHOD=POST\nREMOTE_ADDR=192.0.2.1\n\nx")
    seed("ingest", "bad-auth", "REQUEST_METHOD=POST\nREMOTE_ADDR=127.0.0.1\n"
         "HTTP_AUTHORIZATION=Basic cnNwYW1kOndyb25n\n\nSubject: x\r\n\r\nbody")
    seed("ingest", "length-lies", "REQUEST_METHOD=POST\nREMOTE_ADDR=127.0.0.1\n"
         "CONTENT_LENGTH=100\n\nSubject: x\r\n\r\nbody")
    wal_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
