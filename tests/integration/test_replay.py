#!/usr/bin/env python3
"""test_replay.py - every request that a real Rspamd of each generation
sent (tests/fixtures/rspamd-3.4, rspamd-3.12.1, rspamd-4.1.5: every
formatter and rule option) replayed byte-exact through the shipped nginx
block, only the request line's path rewritten to ours.

Formatters that carry the message (default, multipart in both part orders
with and without meta headers, json_with_message, msgpack, gzip of them,
Basic auth, keepalive) must be stored once per SMTP recipient, byte-exact
against messages/*.eml, with the decoded envelope sender and the subject
of the message itself.  json and structured carry no message: 400 naming
the formatters to use, nothing stored.  keepalive requests are answered
on a connection that nginx keeps open for the next request.  Runs against
the backend RQ_BACKEND names (file or pgsql)."""

import base64
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (hash_password, http_raw, split_request,  # noqa: E402
                     with_path, _parse_response)

FIXTURE_ROOT = os.path.join(harness.ROOT, "tests", "fixtures")
GENERATIONS = ("rspamd-3.4", "rspamd-3.12.1", "rspamd-4.1.5")
AUTH_USER, AUTH_PASSWORD = "rspamd", "s3cret pass"

# What each captured case is: the message scanned, the SMTP recipients
# (none: the default owner), the envelope sender as it must come out
# (None: unknown), and the subject the message itself carries.
CASES = {
    "01": ("plain.eml", ["bob@example.net"], "alice@example.org", "Hello plain"),
    "02": ("utf8.eml", ["bob@example.net", "carol@example.net"], "juergen@example.de",
           "Grüße aus München"),
    "03": ("latin1.eml", ["postmaster"], None, "Win money äöü raw latin1"),
    "04": ("big.eml", ["a@example.net", "b@example.net", "c@example.org"],
           "mallory@evil.example", "Invoice attached"),
    "05": ("lf.eml", ["someone@example.net"], "nobody@example.com", "LF only line endings"),
    "06": ("plain.eml", ["bob@example.net"], "alice@example.org", "Hello plain"),
}
# Rule names (the second part of a fixture's name) whose body carries no
# message.
NO_MESSAGE = {"json", "structured"}


def fixtures():
    """[(generation, file name, case, rule)] of every captured request."""
    out = []
    for g in GENERATIONS:
        d = os.path.join(FIXTURE_ROOT, g, "requests")
        for n in sorted(os.listdir(d)):
            if n.endswith(".http"):
                parts = n[:-len(".http")].split(".")
                out.append((g, n, parts[0][:2], parts[1]))
    return out


def load(gen, name):
    with open(os.path.join(FIXTURE_ROOT, gen, "requests", name), "rb") as f:
        return f.read()


def message(gen, eml):
    with open(os.path.join(FIXTURE_ROOT, gen, "messages", eml), "rb") as f:
        return f.read()


def has_auth(raw):
    return any(k.lower() == "authorization" for k, _ in split_request(raw)[2])


def read_response(sock):
    """One HTTP response, read by its Content-Length or its chunks, the
    connection left open: (status, headers, body)."""
    data = b""

    def more():
        c = sock.recv(65536)
        if not c:
            raise AssertionError("connection closed inside a response: %r" % data[:300])
        return c
    while b"\r\n\r\n" not in data:
        data += more()
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers, _ = _parse_response(head + b"\r\n\r\n")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while not (body.endswith(b"\r\n0\r\n\r\n") or body == b"0\r\n\r\n"):
            body += more()
        return status, headers, harness._dechunk(body)
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        body += more()
    return status, headers, body[:n]


class ReplayCase(harness.ServerTestCase):
    tmp_prefix = "rq-replay-"

    def check_stored(self, s, gen, name, case, resp):
        """The answer's entries: one per recipient, byte-exact, with the
        decoded sender and the message's own subject."""
        eml, rcpts, env_from, subject = CASES[case]
        self.assertStatus(resp, 200, "%s/%s" % (gen, name))
        ids = json.loads(resp[2].decode())["ids"]
        self.assertEqual(len(ids), len(set(ids)), name)
        want = message(gen, eml)
        entries = {e["id"]: e for e in s.daemon.entries()}
        got_rcpts = []
        for i in ids:
            self.assertIn(i, entries, "%s/%s: entry %s not listed" % (gen, name, i))
            e = entries[i]
            got_rcpts.append(e["rcpt"])
            self.assertEqual(e.get("from") or None, env_from, "%s/%s from" % (gen, name))
            self.assertEqual(e.get("subject"), subject, "%s/%s subject" % (gen, name))
            rc, out, err = s.daemon.cli("cat", i)
            self.assertEqual(rc, 0, err)
            self.assertEqual(out, want, "%s/%s: %s is not %s byte for byte"
                             % (gen, name, i, eml))
        self.assertEqual(sorted(got_rcpts), sorted(rcpts), "%s/%s recipients" % (gen, name))


class ReplayTest(ReplayCase):
    def test_every_request_of_every_generation(self):
        """Without credentials configured: every request but keepalive
        ones, each on its own connection as Rspamd sends it."""
        s = self.stack()
        seen_rules = set()
        n = 0
        for gen, name, case, rule in fixtures():
            raw = load(gen, name)
            if rule == "keepalive":
                continue
            resp = http_raw(s.port, with_path(raw, "/quarantine"))
            n += 1
            seen_rules.add(rule)
            if rule in NO_MESSAGE:
                self.assertStatus(resp, 400, "%s/%s" % (gen, name))
                err = json.loads(resp[2].decode())["error"]
                for f in ("multipart", "json_with_message", "default"):
                    self.assertIn(f, err, "%s/%s: %s" % (gen, name, err))
                continue
            self.check_stored(s, gen, name, case, resp)
        self.assertEqual(n, 11 + 25 + 60)  # 3.4, 3.12.1, 4.1.5 without keepalive
        self.assertTrue({"default", "json", "json_with_message", "multipart",
                         "multipart_nometa", "gzip", "gzip_multipart", "msgpack",
                         "structured", "auth"} <= seen_rules, seen_rules)
        # the refused ones left nothing: every entry is one of a message
        # that was to be stored
        wanted = {message(g, CASES[c][0]) for g, _, c, _ in fixtures()}
        for e in s.daemon.entries():
            rc, out, _ = s.daemon.cli("cat", e["id"])
            self.assertIn(out, wanted, e["id"])

    def test_basic_auth_requests(self):
        """With the credentials the auth rule sends configured: every auth
        request (and 3.4's) is stored; the same body without them is 401."""
        s = self.stack(extra_conf={"auth_user": AUTH_USER,
                                   "auth_password_hash": hash_password(AUTH_PASSWORD)})
        n = 0
        for gen, name, case, rule in fixtures():
            raw = load(gen, name)
            if not has_auth(raw):
                continue
            n += 1
            self.check_stored(s, gen, name, case, http_raw(s.port, with_path(raw, "/quarantine")))
            method, _, hs, body = split_request(raw)
            hs = [(k, v) for k, v in hs if k.lower() != "authorization"]
            noauth = harness.build_request(method, "/quarantine", hs, body)
            self.assertStatus(http_raw(s.port, noauth), 401, "%s/%s without credentials"
                              % (gen, name))
            wrong = [(k, v) for k, v in hs] + [
                ("Authorization", "Basic " + base64.b64encode(b"rspamd:wrong").decode())]
            self.assertStatus(http_raw(s.port, harness.build_request(method, "/quarantine",
                                                                     wrong, body)),
                              401, "%s/%s wrong password" % (gen, name))
        self.assertEqual(n, 1 + 6 + 6)

    def test_keepalive_requests_on_one_connection(self):
        """Rspamd's keepalive rule: every request of a generation on one
        connection, each answered, the connection kept by nginx."""
        s = self.stack()
        for gen in GENERATIONS:
            reqs = [(name, case) for g, name, case, rule in fixtures()
                    if g == gen and rule == "keepalive"]
            if gen == "rspamd-3.4":
                self.assertEqual(reqs, [])  # 3.4 has no keepalive option
                continue
            self.assertEqual(len(reqs), 6, gen)
            with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
                for name, case in reqs:
                    raw = load(gen, name)
                    hs = split_request(raw)[2]
                    self.assertEqual(harness.header(hs, "Connection"), "keep-alive", name)
                    sock.sendall(with_path(raw, "/quarantine"))
                    resp = read_response(sock)
                    self.assertEqual(resp[1].get("connection", "").lower(), "keep-alive",
                                     "%s/%s: nginx did not keep the connection: %r"
                                     % (gen, name, resp[1]))
                    self.check_stored(s, gen, name, case, resp)


if __name__ == "__main__":
    harness.main()
