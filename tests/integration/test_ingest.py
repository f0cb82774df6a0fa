#!/usr/bin/env python3
"""test_ingest.py - ingest through the shipped nginx block and through
FastCGI directly: every captured Rspamd 3.4 request replayed byte-exact,
the stored entries checked against what was sent, and every answer status
of the ingest contract provoked.  Runs against the backend RQ_BACKEND
names (file or pgsql)."""

import base64
import gzip
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Stack, build_request, fcgi_post, fixture_message,  # noqa: E402
                     fixture_request, fixture_requests, hash_password, header,
                     http_raw, meta_env, post, split_request, with_path)

F01 = "01-plain.default.http"
F02 = "02-utf8-two-rcpt-user-ipv6.default.http"
F03 = "03-latin1-no-envelope.default.http"
F04 = "04-big-attachment-three-rcpt.default.http"
F05 = "05-lf-line-endings.default.http"
F06 = "06-basic-auth-rfc822-type.default.http"
J02 = "02-utf8-two-rcpt-user-ipv6.json.http"


def body_of(name):
    return split_request(fixture_request(name))[3]


def replace_header(raw, name, value):
    """raw with header name set to value (added when absent); the
    Content-Length follows the body."""
    method, path, headers, body = split_request(raw)
    out, done = [], False
    for k, v in headers:
        if k.lower() == name.lower():
            if value is not None and not done:
                out.append((k, value))
            done = True
        else:
            out.append((k, v))
    if not done and value is not None:
        out.append((name, value))
    return build_request(method, path, out, body)


def with_body(raw, body, extra=()):
    """raw with a new body (Content-Length updated) and extra headers."""
    method, path, headers, _ = split_request(raw)
    hs = [(k, str(len(body)) if k.lower() == "content-length" else v) for k, v in headers]
    hs += list(extra)
    return build_request(method, path, hs, body)


class IngestCase(harness.ServerTestCase):
    """Each test gets its own temp dir and a fresh stack."""

    tmp_prefix = "rq-ingest-"

    def assert200(self, resp, what=""):
        status, headers, body = resp
        self.assertEqual(status, 200, "%s: expected exactly 200, got %d: %r"
                         % (what, status, body[:500]))

    def entries(self, s, *args):
        return s.daemon.entries(*args)

    def cat(self, s, eid):
        rc, out, err = s.daemon.cli("cat", eid)
        self.assertEqual(rc, 0, "cat %s: %s" % (eid, err))
        return out

    def show(self, s, eid):
        rc, out, err = s.daemon.cli("show", eid, "--json")
        self.assertEqual(rc, 0, "show %s: %s" % (eid, err))
        return json.loads(out.decode())

    def by_content(self, s):
        """{stored bytes: [entries]} over every entry."""
        out = {}
        for e in self.entries(s):
            out.setdefault(self.cat(s, e["id"]), []).append(e)
        return out


class ReplayTest(IngestCase):
    def test_every_fixture_through_nginx(self):
        s = self.stack()
        names = fixture_requests(".default.http")
        self.assertEqual(len(names), 6)
        for n in names:
            self.assert200(http_raw(s.port, fixture_request(n)), n)

        stored = self.by_content(s)
        want_rcpt = {
            F01: ["bob@example.net"],
            F02: ["bob@example.net", "carol@example.net"],
            F03: ["postmaster"],
            F04: ["a@example.net", "b@example.net", "c@example.org"],
            F05: ["someone@example.net"],
        }
        # 01 and 06 carry the same message with different queue ids.
        self.assertEqual(body_of(F01), body_of(F06))
        for n, rcpts in want_rcpt.items():
            body = body_of(n)
            got = sorted(e["rcpt"] for e in stored.get(body, []))
            if n == F01:
                rcpts = sorted(rcpts + ["bob@example.net"])  # 01 + 06
            self.assertEqual(got, sorted(rcpts), n)
        self.assertEqual(sum(len(v) for v in stored.values()), 9)

        eml = {"plain.eml": F01, "utf8.eml": F02, "latin1.eml": F03,
               "big.eml": F04, "lf.eml": F05}
        for m, n in eml.items():
            self.assertEqual(fixture_message(m), body_of(n), "%s is the body of %s" % (m, n))

        for body, es in stored.items():
            for e in es:
                full = self.show(s, e["id"])
                self.assertEqual(full["sha256"], hashlib.sha256(body).hexdigest(), e["id"])
                self.assertEqual(int(full["size"]), len(body))
                self.assertEqual(full["status"], "quarantined")

        e02 = stored[body_of(F02)]
        for e in e02:
            self.assertEqual(e["subject"], "Grüße aus München")
            self.assertEqual(e["qid"], "4XYZ789")
            self.assertEqual(e["from"], "juergen@example.de")
        full = self.show(s, e02[0]["id"])
        self.assertEqual(full.get("ip"), "2001:db8::25")
        self.assertEqual(full.get("user"), "juergen@example.de")
        self.assertEqual(full.get("action"), "add header")
        self.assertAlmostEqual(float(full.get("score")), 7.9)
        # underscores_in_headers on: these two only arrive with it
        self.assertEqual(full.get("rspamd_server"), "vm")
        self.assertEqual(int(full.get("scan_time")), 206)
        names = [x["name"] for x in full["symbols"]]
        self.assertIn("DATE_IN_FUTURE", names)

        e03 = stored[body_of(F03)]
        self.assertEqual(e03[0]["subject"], "Win money äöü raw latin1")

        e04 = stored[body_of(F04)]
        shas = {self.show(s, e["id"])["sha256"] for e in e04}
        self.assertEqual(len(shas), 1)

        # 05: LF line ends kept as they came
        b05 = body_of(F05)
        self.assertNotIn(b"\r\n", b05)
        self.assertIn(b05, stored)

    def test_every_fixture_through_fastcgi(self):
        s = self.stack()
        for n in fixture_requests(".default.http"):
            env, body = meta_env(fixture_request(n))
            self.assert200(fcgi_post(s.daemon.socket, env, body), n)
        stored = self.by_content(s)
        self.assertEqual(sum(len(v) for v in stored.values()), 9)
        self.assertEqual(sorted(e["rcpt"] for e in stored[body_of(F04)]),
                         ["a@example.net", "b@example.net", "c@example.org"])

    def test_same_request_twice_stored_once(self):
        s = self.stack()
        raw = fixture_request(F02)
        self.assert200(http_raw(s.port, raw), "first")
        first = sorted(e["id"] for e in self.entries(s))
        self.assertEqual(len(first), 2)
        self.assert200(http_raw(s.port, raw), "retry")
        self.assertEqual(sorted(e["id"] for e in self.entries(s)), first)

    def test_json_formatter_refused(self):
        s = self.stack()
        for n in fixture_requests(".json.http"):
            status, headers, body = http_raw(s.port, fixture_request(n))
            self.assertEqual(status, 400, "%s: %r" % (n, body))
            text = body.decode("utf-8", "replace").lower()
            self.assertIn("default", text, n)
            self.assertTrue("multipart" in text or "json_with_message" in text, text)
        self.assertEqual(self.entries(s), [])

    def test_unknown_path_not_passed(self):
        s = self.stack()
        status, _, _ = http_raw(s.port, with_path(fixture_request(F01), "/elsewhere"))
        self.assertEqual(status, 404)
        self.assertEqual(self.entries(s), [])

    def test_shipped_location(self):
        s = self.stack(paths=())
        self.assert200(http_raw(s.port, with_path(fixture_request(F01), "/quarantine")))
        self.assertEqual(len(self.entries(s)), 1)


class AccessTest(IngestCase):
    def auth_conf(self, **more):
        c = {"auth_user": "rspamd", "auth_password_hash": hash_password("s3cret pass")}
        c.update(more)
        return c

    def test_basic_auth(self):
        s = self.stack(extra_conf=self.auth_conf())
        raw = fixture_request(F06)
        wrong = replace_header(raw, "Authorization",
                               "Basic " + base64.b64encode(b"rspamd:s3cret pas").decode())
        self.assertStatus(http_raw(s.port, wrong), 401, "wrong password")
        other = replace_header(raw, "Authorization",
                               "Basic " + base64.b64encode(b"admin:s3cret pass").decode())
        self.assertStatus(http_raw(s.port, other), 401, "wrong user")
        self.assertStatus(http_raw(s.port, replace_header(raw, "Authorization", None)), 401,
                          "no credentials")
        self.assertEqual(self.entries(s), [])
        self.assert200(http_raw(s.port, raw), "right credentials")
        self.assertEqual([e["rcpt"] for e in self.entries(s)], ["bob@example.net"])

    def test_allow_from(self):
        s = self.stack(extra_conf=self.auth_conf(allow_from="192.0.2.0/24, ::2"))
        self.assertStatus(http_raw(s.port, fixture_request(F06)), 403, "not allowed")
        self.assertEqual(self.entries(s), [])

    def test_allow_from_loopback(self):
        s = self.stack(extra_conf={"allow_from": "127.0.0.0/8"})
        self.assert200(http_raw(s.port, fixture_request(F01)))


class StatusTest(IngestCase):
    def test_get_405(self):
        s = self.stack()
        status, headers, body = post(s.port, "/default", b"", method="GET")
        self.assertEqual(status, 405, body)
        self.assertEqual(self.entries(s), [])

    def test_too_large_413(self):
        s = self.stack(extra_conf={"max_message_size": "1K"})
        self.assertStatus(http_raw(s.port, fixture_request(F04)), 413, "821 KB")
        self.assertEqual(self.entries(s), [])
        self.assert200(http_raw(s.port, fixture_request(F01)), "189 bytes")
        self.assertEqual(len(self.entries(s)), 1)

    def test_gzip(self):
        s = self.stack()
        raw = fixture_request(F02)
        body = body_of(F02)
        gz = with_body(raw, gzip.compress(body), [("Content-Encoding", "gzip")])
        self.assert200(http_raw(s.port, gz))
        es = self.entries(s)
        self.assertEqual(sorted(e["rcpt"] for e in es), ["bob@example.net", "carol@example.net"])
        for e in es:
            self.assertEqual(self.cat(s, e["id"]), body)
            self.assertEqual(self.show(s, e["id"])["sha256"], hashlib.sha256(body).hexdigest())

    def test_unknown_encoding_415(self):
        s = self.stack()
        raw = with_body(fixture_request(F01), body_of(F01), [("Content-Encoding", "br")])
        self.assertStatus(http_raw(s.port, raw), 415)
        self.assertEqual(self.entries(s), [])

    def multipart(self, message, metadata, message_first):
        boundary = "8f3a0c1d2e4b5a69"
        part_m = (b'Content-Disposition: form-data; name="message"; filename="message.eml"\r\n'
                  b"Content-Type: message/rfc822\r\n"
                  b"Content-Transfer-Encoding: binary\r\n\r\n" + message + b"\r\n")
        part_j = (b'Content-Disposition: form-data; name="metadata"\r\n'
                  b"Content-Type: application/json\r\n"
                  b"Content-Transfer-Encoding: binary\r\n\r\n" + metadata + b"\r\n")
        parts = [part_m, part_j] if message_first else [part_j, part_m]
        d = b"--" + boundary.encode() + b"\r\n"
        body = d + parts[0] + d + parts[1] + b"--" + boundary.encode() + b"--\r\n"
        return body, 'multipart/form-data; boundary="%s"' % boundary

    def test_multipart_both_orders(self):
        s = self.stack()
        message = body_of(F02)
        meta = json.loads(split_request(fixture_request(J02))[3])
        for order, qid in ((True, "4MPART1"), (False, "4MPART2")):
            meta["qid"] = qid
            body, ctype = self.multipart(message, json.dumps(meta, separators=(",", ":")).encode(),
                                         order)
            resp = post(s.port, "/quarantine", body,
                        [("Content-Type", ctype), ("User-Agent", "rspamd-3.8.4")])
            self.assert200(resp, "message first" if order else "metadata first")
            es = self.entries(s, "--qid", qid)
            self.assertEqual(sorted(e["rcpt"] for e in es),
                             ["bob@example.net", "carol@example.net"], qid)
            for e in es:
                self.assertEqual(self.cat(s, e["id"]), message)
                self.assertEqual(e["subject"], "Grüße aus München")
                self.assertEqual(e["from"], "juergen@example.de")

    def test_json_with_message(self):
        s = self.stack()
        message = body_of(F02)
        meta = json.loads(split_request(fixture_request(J02))[3])
        meta["message"] = base64.b64encode(message).decode()
        body = json.dumps(meta, separators=(",", ":")).encode()
        resp = post(s.port, "/quarantine", body,
                    [("Content-Type", "application/json"), ("User-Agent", "rspamd-3.8.4")])
        self.assert200(resp)
        es = self.entries(s)
        self.assertEqual(sorted(e["rcpt"] for e in es), ["bob@example.net", "carol@example.net"])
        for e in es:
            self.assertEqual(self.cat(s, e["id"]), message)
            self.assertEqual(e["qid"], meta["qid"])

    def test_content_length_lying(self):
        s = self.stack()
        env, body = meta_env(fixture_request(F01))
        env["CONTENT_LENGTH"] = str(len(body) + 100)
        status, _, answer = fcgi_post(s.daemon.socket, env, body)
        self.assertEqual(status, 400, answer)
        self.assertEqual(self.entries(s), [])
        # and the daemon still serves
        env["CONTENT_LENGTH"] = str(len(body))
        self.assert200(fcgi_post(s.daemon.socket, env, body))

    def test_store_failure_503(self):
        s = self.stack()
        raw = fixture_request(F01)
        if s.backend == "file":
            # A regular file where the recipient's domain directory goes:
            # works as root too, where permissions would not stop anyone.
            blocker = os.path.join(s.daemon.file_root, "users", "example.net")
            with open(blocker, "w") as f:
                f.write("in the way\n")

            def restore():
                os.unlink(blocker)
        else:
            s.pg.stop()

            def restore():
                s.pg.start_server()
        restored = []

        def restore_once():
            if not restored:
                restored.append(1)
                restore()
        self.addCleanup(restore_once)
        status, headers, body = http_raw(s.port, raw)
        self.assertEqual(status, 503, body)
        self.assertIn("retry-after", headers)
        self.assertGreater(int(headers["retry-after"]), 0)
        restore_once()
        self.assertEqual(self.entries(s), [])
        self.assert200(http_raw(s.port, raw), "after the store is back")
        self.assertEqual([e["rcpt"] for e in self.entries(s)], ["bob@example.net"])

    def test_large_symbols_header(self):
        s = self.stack()
        symbols = [{"name": "SYM_%04d" % i, "score": 0.1, "group": "test",
                    "groups": ["test"], "options": ["option text for symbol %d" % i]}
                   for i in range(200)]
        value = json.dumps(symbols, separators=(",", ":"))
        self.assertGreater(len(value), 20000)
        raw = replace_header(fixture_request(F01), "X-Rspamd-symbols", value)
        self.assert200(http_raw(s.port, raw))
        es = self.entries(s)
        self.assertEqual(len(es), 1)
        full = self.show(s, es[0]["id"])
        self.assertEqual([x["name"] for x in full["symbols"]], [x["name"] for x in symbols])


def setUpModule():
    # A PostgreSQL that cannot start fails here, before any test: an error,
    # never a skip.
    if harness.backend() == "pgsql":
        harness.shared_pg()


if __name__ == "__main__":
    harness.main()
