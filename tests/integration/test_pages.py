#!/usr/bin/env python3
"""test_pages.py - the users' pages end to end: the daemon behind the
shipped public server block (contrib/nginx/rspamd-quarantine-pages.conf)
over real HTTPS, a real headless Chromium driven through chromedriver,
the digest captured from the release transport (an SMTP capture server)
and its links opened: overview, entry page, release confirmed and
delivered, shown as released; a second release that sends nothing;
delete; expired, tampered, cross-recipient and wrong-purpose links; the
headers of every page; GET never changes anything; pages and ingest kept
apart; and hostile mail (script, event handlers, javascript: URLs, CSS
and remote images in subject, sender, attachment names and HTML body)
shown as text, with no script run, no DOM change and no request leaving
the page's origin.

RQ_SCREENSHOTS=DIR keeps the overview and entry screenshots in DIR.
Environment: B (build directory), RQ_BACKEND (file, the default, or pgsql).
"""

import base64
import email
import email.policy
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from browser import Browser  # noqa: E402
from smtpcapture import SmtpCapture  # noqa: E402

T0 = 1800000000  # 2027-01-15T08:00:00Z
PAGES_BLOCK = os.path.join(h.ROOT, "contrib", "nginx", "rspamd-quarantine-pages.conf")

PLAIN = (b"From: Alice Example <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
         b"Subject: Your invoice\r\nDate: Fri, 15 Jan 2027 07:59:00 +0000\r\n"
         b"Message-ID: <invoice-1@example.org>\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
         b"Dear Bob,\r\n\r\nhere is the invoice you asked for: 42 \xe2\x82\xac.\r\n")

HOSTILE = """From: "<script>alert('f')</script> Eve <img src=x onerror=alert(2)>" <eve@evil.example>
To: bob@example.net
Subject: <script>document.title='pwned'</script><b onclick=alert(3)>Win</b>
Date: Fri, 15 Jan 2027 07:58:00 +0000
Message-ID: <hostile@evil.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/html; charset=utf-8

<html><head><title>t</title><style>body{background:url(%(remote)s/css.png)}</style>
<script>document.title='pwned'</script><link rel="stylesheet" href="%(remote)s/x.css"></head>
<body onload="document.body.setAttribute('data-pwned','1')">
<p>Hello <a href="javascript:alert(4)">click here</a> <img src="%(remote)s/pixel.png" onerror="alert(5)"></p>
<iframe src="%(remote)s/frame"></iframe>
<p style="background:url(%(remote)s/style.png)">Styled text &amp; more &lt;b&gt;</p>
<svg onload="alert(8)"><image href="%(remote)s/svg.png"/></svg>
</body></html>
--b1
Content-Type: application/octet-stream; name="<script>alert(6)</script>.exe"
Content-Disposition: attachment; filename="<img src=x onerror=alert(7)>.pdf"
Content-Transfer-Encoding: base64

SGVsbG8=
--b1--
"""


def eid_of(url):
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["id"][0]


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


class _Counter(http.server.BaseHTTPRequestHandler):
    """A 'remote' server: every request the page might make lands here."""

    def do_GET(self):
        self.server.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *a):
        pass


class PagesNginx(h.Nginx):
    """A private nginx serving the shipped pages block: its listen
    addresses, certificate, log and socket replaced, nothing else."""

    def __init__(self, tmp, socket_path, cert, key):
        self.cert, self.key = cert, key
        self.http_port = h.free_port()
        super().__init__(tmp, socket_path, name="nginx-pages")

    def write_conf(self):
        super().write_conf()
        with open(PAGES_BLOCK) as f:
            text = f.read()
        subs = [("listen 80;", "listen 127.0.0.1:%d;" % self.http_port),
                ("listen [::]:80;\n", ""),
                ("listen 443 ssl http2;", "listen 127.0.0.1:%d ssl http2;" % self.port),
                ("listen [::]:443 ssl http2;\n", ""),
                ("/etc/letsencrypt/live/quarantine.example.org/fullchain.pem", self.cert),
                ("/etc/letsencrypt/live/quarantine.example.org/privkey.pem", self.key),
                ("/var/log/nginx/rspamd-quarantine-pages.log",
                 os.path.join(self.dir, "pages-access.log")),
                ("unix:/run/rspamd-quarantine/quarantined.sock", "unix:" + self.socket_path)]
        for a, b in subs:
            if a not in text:
                raise RuntimeError("%s no longer contains %r" % (PAGES_BLOCK, a))
            text = text.replace(a, b)
        with open(os.path.join(self.dir, "server.conf"), "w") as f:
            f.write(text)

    def start(self, timeout=10):
        # the base class waits for a plain connection: fine for TLS too
        return super().start(timeout)


class PagesTest(unittest.TestCase):
    browser = None

    @classmethod
    def setUpClass(cls):
        cls._bdir = h.tempdir("rq-browser-")
        cls.btmp = cls._bdir.__enter__()
        cls.browser = Browser(cls.btmp).start()

    @classmethod
    def tearDownClass(cls):
        if cls.browser:
            cls.browser.stop()
        cls._bdir.__exit__(None, None, None)

    def setUp(self):
        self._saved_now = os.environ.get("RSPAMD_QUARANTINE_NOW")
        self._tmp_cm = h.tempdir("rq-pages-")
        self.tmp = self._tmp_cm.__enter__()
        self.cap = SmtpCapture().start()
        self.remote = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
        self.remote.hits = []
        threading.Thread(target=self.remote.serve_forever, daemon=True).start()
        self.remote_url = "http://127.0.0.1:%d" % self.remote.server_address[1]
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        os.chmod(key, 0o644)
        self.keyfile = os.path.join(self.tmp, "link.key")
        conninfo = h.pg_fresh_db(h.shared_pg()) if h.backend() == "pgsql" else None
        self.daemon = h.Daemon(self.tmp, h.backend(), conninfo, {}, workers=2)
        self.nginx = PagesNginx(self.tmp, self.daemon.socket, cert, key)
        self.base = "https://127.0.0.1:%d/q" % self.nginx.port
        self.daemon.write_conf({
            "release_transport": "smtp",
            "release_smtp": "127.0.0.1:%d" % self.cap.port,
            "release_timeout": "20",
            "link_key_file": self.keyfile,
            "pages_url": self.base,
            "digest_from": "postmaster@example.test",
            "digest_template_text": os.path.join(self.tmp, "none.txt"),
            "digest_template_html": os.path.join(self.tmp, "none.html"),
        })
        rc, _, err = self.daemon.cli("make-key")
        self.assertEqual(rc, 0, err)
        with open(self.keyfile) as f:
            self.key = bytes.fromhex(f.read().strip())
        os.environ["RSPAMD_QUARANTINE_NOW"] = str(T0)
        self.daemon.start()
        self.nginx.start()
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE

    def tearDown(self):
        failed = sys.exc_info()[0] is not None
        if failed or any(e for e in self._outcome.result.errors + self._outcome.result.failures
                         if e[0] is self):
            sys.stderr.write("---- daemon log ----\n%s\n---- nginx log ----\n%s\n"
                             % (self.daemon.log(), self.nginx.log()))
        self.nginx.stop()
        self.daemon.stop(expect=None)
        self.cap.stop()
        self.remote.shutdown()
        self.remote.server_close()
        self._tmp_cm.__exit__(None, None, None)
        if self._saved_now is None:
            os.environ.pop("RSPAMD_QUARANTINE_NOW", None)
        else:
            os.environ["RSPAMD_QUARANTINE_NOW"] = self._saved_now

    # ------------------------------------------------------------ helpers

    def post(self, rcpts, qid, msg, action="reject", score="15.2"):
        env, _ = h.meta_env(h.fixture_request("01-plain.default.http"))
        env["HTTP_X_RSPAMD_RCPT"] = json.dumps(rcpts)
        env["HTTP_X_RSPAMD_QID"] = qid
        env["HTTP_X_RSPAMD_ACTION"] = action
        env["HTTP_X_RSPAMD_SCORE"] = score
        env.pop("HTTP_X_RSPAMD_SUBJECT", None)
        env["CONTENT_LENGTH"] = str(len(msg))
        status, _, answer = h.fcgi_post(self.daemon.socket, env, msg)
        self.assertEqual(status, 200, answer)
        return json.loads(answer)["ids"]

    def digest_links(self, rcpt):
        """Runs the digest; (list URL, [entry URLs]) of rcpt's mail."""
        rc, out, err = self.daemon.cli("digest")
        self.assertEqual(rc, 0, err)
        msgs = [email.message_from_bytes(m, policy=email.policy.default)
                for m in self.cap.by_rcpt()[rcpt]]
        text = msgs[-1].get_body(("plain",)).get_content()
        lst = re.search(r"(%s/list\?\S+)" % re.escape(self.base), text).group(1)
        entries = re.findall(r"(%s/entry\?\S+)" % re.escape(self.base), text)
        return lst, entries

    def token(self, purpose, subject, expires):
        if purpose == "list":
            subject = subject.lower()
        mac = hmac.new(self.key, b"rspamd-quarantine link v1\0" + purpose.encode() + b"\0"
                       + subject.encode() + b"\0" + str(expires).encode(), hashlib.sha256)
        return "%d.%s" % (expires, b64url(mac.digest()))

    def fetch(self, path_or_url, data=None, method=None, ctype=None):
        """(status, headers, body text) over HTTPS through nginx."""
        url = path_or_url if path_or_url.startswith("https:") else self.base + path_or_url
        headers = {}
        if ctype:
            headers["Content-Type"] = ctype
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    def released(self):
        """Captured messages that are not digests: the releases."""
        return [m for m in self.cap.messages if m[0] != "postmaster@example.test"]

    def entries(self, *args):
        return self.daemon.entries("--status", "any", *args)

    def shot(self, name):
        d = os.environ.get("RQ_SCREENSHOTS")
        path = os.path.join(d or self.tmp, name)
        if d:
            os.makedirs(d, exist_ok=True)
        self.browser.screenshot(path)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def assert_safe_headers(self, headers, what):
        csp = headers.get("Content-Security-Policy", "")
        for part in ("default-src 'none'", "frame-ancestors 'none'", "img-src 'none'",
                     "form-action 'self'", "base-uri 'none'"):
            self.assertIn(part, csp, what)
        self.assertNotIn("script-src", csp, what)
        self.assertNotIn("unsafe", csp, what)
        self.assertEqual(headers.get("Referrer-Policy"), "no-referrer", what)
        self.assertEqual(headers.get("Cache-Control"), "no-store", what)
        self.assertEqual(headers.get("X-Content-Type-Options"), "nosniff", what)
        self.assertTrue(headers.get("Content-Type", "").startswith("text/html"), what)

    def assert_quiet_and_local(self, statuses=()):
        """No console message, no request outside the pages' origin.  With
        statuses, the browser's own note of a page answered with one of
        them (its network log, not a script) is expected."""
        origin = "https://127.0.0.1:%d/" % self.nginx.port
        console = self.browser.console()
        noted = re.compile(r"^%s\S* - Failed to load resource: the server responded with a "
                           r"status of (\d+) \(.*\)$" % re.escape(self.base))
        for m in console:
            self.assertRegex(m, noted)
            self.assertIn(int(noted.match(m).group(1)), statuses, m)
        if not statuses:
            self.assertEqual(console, [])
        for u in self.browser.requests():
            self.assertTrue(u.startswith(origin), u)
        self.assertEqual(self.remote.hits, [])

    # ------------------------------------------------------------ tests

    def test_release_flow(self):
        b = self.browser
        others = [("Wichtige Mitteilung zu Ihrem Konto", "Bank Support <support@bank.example>",
                   "11.7"),
                  ("You have won 1,000,000 \u20ac", "Lottery <win@lottery.example>", "24.0"),
                  ("Meeting notes", "Carol <carol@example.org>", "6.1")]
        for i, (subj, sender, score) in enumerate(others):
            m = PLAIN.replace(b"Your invoice", subj.encode()).replace(
                b"Alice Example <alice@example.org>", sender.encode()).replace(
                b"invoice-1", b"other-%d" % i)
            self.post(["bob@example.net"], "QO%d" % i, m, score=score)
        self.post(["bob@example.net"], "QP", PLAIN)
        os.environ["RSPAMD_QUARANTINE_NOW"] = str(T0 + 60)
        lst, entries = self.digest_links("bob@example.net")
        self.assertEqual(len(entries), 4)
        b.console(), b.requests()  # start with empty logs
        b.open(lst)
        self.assertEqual(b.title(), "Held mail \u2014 held mail")
        self.assertIn("Held mail for bob@example.net", b.text("h1"))
        self.assertIn("Your invoice", b.text("ol.entries"))
        self.assertIn("Alice Example <alice@example.org>", b.text("ol.entries"))
        self.assertEqual(len(b.find("ol.entries li")), 4)
        self.shot("pages-overview.png")
        b.click_link("Your invoice")
        self.assertIn("/q/entry?id=", b.url())
        self.assertEqual(b.text("h1"), "Your invoice")
        self.assertIn("here is the invoice you asked for: 42 \u20ac.", b.text("pre"))
        self.assertIn("alice@example.org", b.text("dl"))
        self.shot("pages-entry.png")
        b.click("button.release")
        self.assertIn("/q/confirm?", b.url())
        self.assertIn("Release this message?", b.text("h1"))
        confirm_url = b.url()
        self.assertEqual(self.released(), [])  # only the digest so far
        b.click("button.release")
        self.assertEqual(b.text("h1"), "Released")
        delivered = self.released()
        self.assertEqual(len(delivered), 1)
        self.assertEqual(delivered[0][1], ["bob@example.net"])
        body = delivered[0][2]
        self.assertIn(b"X-Quarantine-Released:", body)
        self.assertIn(b"web user bob@example.net", body)
        self.assertTrue(body.endswith(PLAIN.split(b"\r\n\r\n", 1)[1]), body)
        self.assertEqual([e["status"] for e in self.entries()
                          if e["id"] == eid_of(confirm_url)], ["released"])
        # the entry page now says when; no buttons
        b.open([u for u in entries if eid_of(u) == eid_of(confirm_url)][0])
        self.assertIn("Released to bob@example.net on", b.text("p.notice"))
        self.assertEqual(b.find("button.release"), [])
        # a second release: the confirmation says so, a replayed POST too
        b.open(confirm_url)
        self.assertEqual(b.text("h1"), "Already released")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(confirm_url).query)
        eid, t = q["id"][0], q["t"][0]
        c = self.token("release", eid, T0 + 3000)
        st, _, page = self.fetch("/release", urllib.parse.urlencode(
            {"id": eid, "t": t, "c": c}).encode(), ctype="application/x-www-form-urlencoded")
        self.assertEqual(st, 200)
        self.assertIn("Already released", page)
        self.assertIn("It was not sent again", page)
        self.assertEqual(len(self.released()), 1)
        self.assert_quiet_and_local()

    def test_delete_flow(self):
        b = self.browser
        ids = self.post(["bob@example.net"], "QD", PLAIN)
        _, entries = self.digest_links("bob@example.net")
        b.console(), b.requests()
        b.open(entries[0])
        b.click("button.delete")
        self.assertIn("Delete this message?", b.text("h1"))
        b.click("button.delete")
        self.assertEqual(b.text("h1"), "Deleted")
        self.assertEqual([e["status"] for e in self.entries()], [])
        self.assertEqual([e["status"] for e in self.daemon.entries("--status", "deleted")],
                         ["deleted"])
        b.open(entries[0])
        self.assertIn("Deleted on", b.text("p.warn"))
        # deleted cannot be released, even with a genuine action token
        c = self.token("release", ids[0], T0 + 3000)
        st, _, page = self.fetch("/release", urllib.parse.urlencode(
            {"id": ids[0], "c": c}).encode(), ctype="application/x-www-form-urlencoded")
        self.assertEqual(st, 200)
        self.assertIn("can no longer be released", page)
        self.assertEqual(self.released(), [])
        self.assert_quiet_and_local()

    def test_links_expired_tampered_foreign(self):
        bob = self.post(["bob@example.net"], "Q1", PLAIN)[0]
        carol = self.post(["carol@example.net"], "Q2", PLAIN)[0]
        good = self.token("entry", bob, T0 + 600)
        st, hd, page = self.fetch("/entry?id=%s&t=%s" % (bob, good))
        self.assertEqual(st, 200, page)
        self.assert_safe_headers(hd, "entry")
        # expired: a page that says so and what to do
        st, hd, page = self.fetch("/entry?id=%s&t=%s" % (bob, self.token("entry", bob, T0 - 1)))
        self.assertEqual(st, 410)
        self.assertIn("This link has expired", page)
        self.assertIn("next digest", page)
        self.assert_safe_headers(hd, "expired")
        st, _, page = self.fetch("/list?r=bob%%40example.net&t=%s"
                                 % self.token("list", "bob@example.net", T0 - 1))
        self.assertEqual(st, 410)
        # tampered: every part of it.  A changed last character is never
        # the token itself: a MAC's last base64url character is one of 16,
        # so "A" alone would be the token 1 time in 16.
        bad_last = good[:-1] + ("A" if good[-1] != "A" else "E")
        for t in (bad_last,
                  str(T0 + 601) + good[good.index("."):], good + "A", "", "x.y"):
            st, hd, page = self.fetch("/entry?id=%s&t=%s" % (bob, urllib.parse.quote(t)))
            self.assertIn(st, (403, 400), t)
            self.assert_safe_headers(hd, "tampered")
        st, _, _ = self.fetch("/entry?id=%s&t=%s" % (bob, bad_last))
        self.assertEqual(st, 403)
        # another recipient's entry, another recipient's list, another purpose
        st, _, page = self.fetch("/entry?id=%s&t=%s" % (carol, good))
        self.assertEqual(st, 403)
        self.assertNotIn("invoice", page)
        lt = self.token("list", "bob@example.net", T0 + 600)
        st, _, _ = self.fetch("/list?r=bob%%40example.net&t=%s" % lt)
        self.assertEqual(st, 200)
        st, _, page = self.fetch("/list?r=carol%%40example.net&t=%s" % lt)
        self.assertEqual(st, 403)
        self.assertNotIn("carol@example.net</h1>", page)
        st, _, _ = self.fetch("/list?r=bob%%40example.net&t=%s" % good)
        self.assertEqual(st, 403)
        st, _, _ = self.fetch("/entry?id=%s&t=%s" % (bob, self.token("release", bob, T0 + 600)))
        self.assertEqual(st, 403)
        # the entry token is no action token: no release with it
        st, _, _ = self.fetch("/release", urllib.parse.urlencode(
            {"id": bob, "c": good}).encode(), ctype="application/x-www-form-urlencoded")
        self.assertEqual(st, 403)
        st, _, _ = self.fetch("/release", urllib.parse.urlencode(
            {"id": carol, "c": self.token("release", bob, T0 + 600)}).encode(),
            ctype="application/x-www-form-urlencoded")
        self.assertEqual(st, 403)
        self.assertEqual(self.cap.messages, [])
        self.assertEqual({e["status"] for e in self.entries()}, {"quarantined"})
        # the same in the browser: what a user who opens such a link sees
        b = self.browser
        b.console(), b.requests()
        b.open(self.base + "/entry?id=%s&t=%s" % (bob, self.token("entry", bob, T0 - 1)))
        self.assertEqual(b.text("h1"), "This link has expired")
        self.assertIn("next digest", b.text("p"))
        b.open(self.base + "/entry?id=%s&t=%s" % (bob, bad_last))
        self.assertEqual(b.text("h1"), "This link is not valid")
        b.open(self.base + "/entry?id=%s&t=%s" % (carol, good))
        self.assertEqual(b.text("h1"), "This link is not valid")
        b.open(self.base + "/list?r=carol%%40example.net&t=%s" % lt)
        self.assertEqual(b.text("h1"), "This link is not valid")
        self.assertNotIn("invoice", b.text("body"))
        self.assert_quiet_and_local(statuses=(403, 410))

    def test_overview_paged(self):
        for i in range(30):
            self.post(["bob@example.net"], "QL%02d" % i,
                      PLAIN.replace(b"Your invoice", b"Message %02d" % i)
                      .replace(b"invoice-1", b"paged-%d" % i))
        self.post(["carol@example.net"], "QC", PLAIN.replace(b"Your invoice", b"For Carol"))
        lt = self.token("list", "bob@example.net", T0 + 600)
        st, hd, p0 = self.fetch("/list?r=bob%%40example.net&t=%s" % lt)
        self.assertEqual(st, 200)
        self.assert_safe_headers(hd, "list")
        self.assertEqual(p0.count("<li>"), 25)
        self.assertNotIn("For Carol", p0)
        self.assertIn('rel="next"', p0)
        self.assertNotIn('rel="prev"', p0)
        nxt = re.search(r'rel="next" href="([^"]+)"', p0).group(1).replace("&amp;", "&")
        st, _, p1 = self.fetch("/" + nxt)
        self.assertEqual(st, 200)
        self.assertEqual(p1.count("<li>"), 5)
        self.assertIn('rel="prev"', p1)
        self.assertNotIn('rel="next"', p1)
        shown = set(re.findall(r"Message \d\d", p0 + p1))
        self.assertEqual(len(shown), 30)
        # each entry link on the overview is signed for its entry, and works
        link = re.search(r'href="(entry\?[^"]+)"', p0).group(1).replace("&amp;", "&")
        st, _, page = self.fetch("/" + link)
        self.assertEqual(st, 200)
        self.assertIn("All held mail", page)
        st, _, _ = self.fetch("/list?r=bob%%40example.net&t=%s&p=99999" % lt)
        self.assertEqual(st, 400)
        st, _, page = self.fetch("/list?r=dave%%40example.net&t=%s"
                                 % self.token("list", "dave@example.net", T0 + 600))
        self.assertEqual(st, 200)
        self.assertIn("Nothing is held for you", page)

    def test_get_changes_nothing_and_services_apart(self):
        bob = self.post(["bob@example.net"], "Q1", PLAIN)[0]
        t = self.token("entry", bob, T0 + 600)
        c = self.token("release", bob, T0 + 600)
        # GET (and HEAD) of the actions, with every token: 405, nothing sent
        for m in ("GET", "HEAD"):
            st, hd, _ = self.fetch("/release?id=%s&c=%s&t=%s" % (bob, c, t), method=m)
            self.assertEqual(st, 405, m)
            self.assert_safe_headers(hd, "405")
        st, _, _ = self.fetch("/confirm?id=%s&t=%s&a=release" % (bob, t))
        self.assertEqual(st, 200)
        self.assertEqual(self.cap.messages, [])
        self.assertEqual(self.entries()[0]["status"], "quarantined")
        # a page location takes no mail: a POSTed message is refused, not stored
        msg = PLAIN.replace(b"invoice-1", b"posted-to-pages")
        for path in ("/list", "/entry", "/release"):
            st, _, _ = self.fetch(path, msg, ctype="message/rfc822")
            self.assertIn(st, (405, 415), path)
        st, _, _ = self.fetch("/quarantine", msg, ctype="message/rfc822")
        self.assertEqual(st, 404)
        self.assertEqual(len(self.entries()), 1)
        # nginx passes only the five pages
        for path in ("/../quarantine", "/list/x", "/", "/q"):
            st, _, _ = self.fetch("https://127.0.0.1:%d%s" % (self.nginx.port, path)
                                  if not path.startswith("/l") else path)
            self.assertIn(st, (400, 404), path)
        # the daemon: without RQ_SERVICE=pages a request is ingest, never a page
        env = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/q/entry?id=%s&t=%s" % (bob, t),
               "DOCUMENT_URI": "/q/entry", "QUERY_STRING": "id=%s&t=%s" % (bob, t)}
        st, hd, body = h.fcgi_post(self.daemon.socket, env, b"")
        self.assertEqual(st, 405)
        self.assertNotIn(b"<html", body)
        env["RQ_SERVICE"] = "pages"
        st, hd, body = h.fcgi_post(self.daemon.socket, env, b"")
        self.assertEqual(st, 200)
        self.assertIn(b"Your invoice", body)
        # and a page request cannot post mail, however it is dressed
        env2, body2 = h.meta_env(h.fixture_request("01-plain.default.http"))
        env2.update({"RQ_SERVICE": "pages", "REQUEST_URI": "/q/release",
                     "DOCUMENT_URI": "/q/release", "HTTP_X_RSPAMD_QID": "VIAPAGES"})
        st, _, _ = h.fcgi_post(self.daemon.socket, env2, body2)
        self.assertEqual(st, 415)
        self.assertEqual(len(self.entries()), 1)

    def test_hostile_mail(self):
        b = self.browser
        msg = (HOSTILE % {"remote": self.remote_url}).replace("\n", "\r\n").encode()
        self.post(["bob@example.net"], "QH", msg)
        lst, entries = self.digest_links("bob@example.net")
        b.console(), b.requests()
        b.open(lst)
        self.assertIn("<script>document.title='pwned'</script><b onclick=alert(3)>Win</b>",
                      b.text("ol.entries"))
        b.click("ol.entries a")
        self.assertEqual(b.text("h1"),
                         "<script>document.title='pwned'</script><b onclick=alert(3)>Win</b>")
        dl = b.text("dl")
        self.assertIn("<script>alert('f')</script> Eve <img src=x onerror=alert(2)>", dl)
        pre = b.text("pre")
        self.assertIn("Hello click here", pre)
        self.assertIn("Styled text & more <b>", pre)
        self.assertNotIn("pwned", pre)        # the script's text is not text
        self.assertNotIn("background", pre)   # nor the style's
        self.assertIn("<img src=x onerror=alert(7)>.pdf", b.text("#attachments"))
        self.assertIn("5 bytes", b.text("#attachments"))
        # nothing ran, nothing changed, nothing was fetched from elsewhere
        self.assertEqual(b.title(), "Held message \u2014 held mail")
        self.assertIsNone(b.run("return document.body.getAttribute('data-pwned')"))
        self.assertEqual(b.run(
            "return document.querySelectorAll('script,img,iframe,object,embed,svg,"
            "link,a[href^=javascript],[onload],[onerror],[onclick],[style]').length"), 0)
        self.assertEqual(b.run("return document.querySelectorAll('style').length"), 1)
        self.assert_quiet_and_local()
        self.shot("pages-hostile.png")
        # on a phone's width the page reflows: nothing wider than the screen
        b.set_size(390, 844)
        try:
            b.open(b.url())
            self.assertLessEqual(b.run("return document.documentElement.scrollWidth"),
                                 b.run("return document.documentElement.clientWidth"))
            self.shot("pages-hostile-phone.png")
        finally:
            b.set_size(900, 1000)


if __name__ == "__main__":
    h.main()
