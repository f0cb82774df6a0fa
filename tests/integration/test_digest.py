#!/usr/bin/env python3
"""test_digest.py - `rspamd-quarantine digest` against a store filled by
the real daemon, sending through the real release transport (libcurl's
SMTP client) to an SMTP capture server: one multipart/alternative mail
per recipient with new entries, newest first, capped with a link to the
full list; signed links; hostile subjects and senders escaped in the
HTML part; nothing announced twice; a digest the MTA refuses is sent by
the next run; a run stopped part-way sends the rest next time and never
a digest twice; --dry-run, --rcpt, exclusions, action and score filters.

Environment: B (build directory), RQ_BACKEND (file, the default, or pgsql).
"""

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from smtpcapture import SmtpCapture  # noqa: E402

T0 = 1800000000  # 2027-01-15T08:00:00Z
PAGES = "https://quarantine.example.test/q"
HOSTILE_SUBJECT = '<script>alert("s")</script> & <img src=x onerror=alert(1)>'
HOSTILE_FROM = '"<b onmouseover=alert(2)>Eve</b>" <eve@evil.example>'


def message(subject, sender, qid, body="Buy now.\n"):
    return ("From: %s\nTo: someone@example.net\nSubject: %s\n"
            "Date: Fri, 15 Jan 2027 08:00:00 +0000\nMessage-ID: <%s@evil.example>\n"
            "\n%s" % (sender, subject, qid, body)).encode()


class DigestTest(unittest.TestCase):

    def setUp(self):
        self._saved_now = os.environ.get("RSPAMD_QUARANTINE_NOW")
        self._tmp_cm = h.tempdir("rq-digest-")
        self.tmp = self._tmp_cm.__enter__()
        self.cap = SmtpCapture().start()
        self.key = os.path.join(self.tmp, "link.key")
        conf = {
            "release_transport": "smtp",
            "release_smtp": "127.0.0.1:%d" % self.cap.port,
            "release_timeout": "20",
            "link_key_file": self.key,
            "pages_url": PAGES,
            "digest_from": "postmaster@example.test",
            "digest_template_text": os.path.join(self.tmp, "none.txt"),
            "digest_template_html": os.path.join(self.tmp, "none.html"),
        }
        conninfo = None
        if h.backend() == "pgsql":
            conninfo = h.pg_fresh_db(h.shared_pg())
        self.daemon = h.Daemon(self.tmp, h.backend(), conninfo, conf, workers=1)
        rc, _, err = self.daemon.cli("make-key")
        self.assertEqual(rc, 0, err)
        self.now = None

    def tearDown(self):
        if self.daemon.proc is not None:
            if sys.exc_info()[0] is not None:
                sys.stderr.write(self.daemon.log())
            self.daemon.stop(expect=None)
        self.cap.stop()
        self._tmp_cm.__exit__(None, None, None)
        if self._saved_now is None:
            os.environ.pop("RSPAMD_QUARANTINE_NOW", None)
        else:
            os.environ["RSPAMD_QUARANTINE_NOW"] = self._saved_now

    # ------------------------------------------------------------ helpers

    def at(self, now):
        """Runs the daemon (and the tool) with the clock at now."""
        os.environ["RSPAMD_QUARANTINE_NOW"] = str(now)
        if self.daemon.proc is not None and self.now == now:
            return
        if self.daemon.proc is not None:
            self.daemon.stop()
        self.now = now
        self.daemon.start()

    def post(self, rcpts, qid, subject="Hello", sender="Alice <alice@example.org>",
             action="add header", score="10.3"):
        env, _ = h.meta_env(h.fixture_request("01-plain.default.http"))
        body = message(subject, sender, qid)
        env["HTTP_X_RSPAMD_RCPT"] = json.dumps(rcpts)
        env["HTTP_X_RSPAMD_QID"] = qid
        env["HTTP_X_RSPAMD_ACTION"] = action
        env["HTTP_X_RSPAMD_SCORE"] = score
        env.pop("HTTP_X_RSPAMD_SUBJECT", None)
        env["CONTENT_LENGTH"] = str(len(body))
        status, _, answer = h.fcgi_post(self.daemon.socket, env, body)
        self.assertEqual(status, 200, answer)
        return json.loads(answer)["ids"]

    def digest(self, *args, expect=0):
        rc, out, err = self.daemon.cli("digest", *args)
        self.assertEqual(rc, expect, "digest %r: %d\n%s%s" % (args, rc, out.decode(), err))
        return out.decode(), err

    def mails(self):
        """{rcpt: [email.message.EmailMessage]} captured so far."""
        return {r: [email.message_from_bytes(m, policy=email.policy.default) for m in ms]
                for r, ms in self.cap.by_rcpt().items()}

    @staticmethod
    def parts(msg):
        """(text, html) of a digest."""
        assert msg.get_content_type() == "multipart/alternative", msg.get_content_type()
        text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
        return text, html

    # ------------------------------------------------------------ tests

    def test_one_mail_per_recipient_newest_first(self):
        self.at(T0)
        a1 = self.post(["bob@example.net", "carol@example.net"], "Q1", subject="first")[0]
        self.at(T0 + 60)
        a2 = self.post(["bob@example.net"], "Q2", subject="second")[0]
        out, _ = self.digest()
        self.assertIn("2 digests sent (3 entries), 0 failed", out)
        mails = self.mails()
        self.assertEqual(sorted(mails), ["bob@example.net", "carol@example.net"])
        self.assertEqual(len(mails["bob@example.net"]), 1)
        m = mails["bob@example.net"][0]
        self.assertEqual(m["To"], "bob@example.net")
        self.assertEqual(m["From"], "postmaster@example.test")
        self.assertEqual(m["Auto-Submitted"], "auto-generated")
        self.assertIn("2 new message(s) for bob@example.net", m["Subject"])
        # the envelope: from digest_from, to the recipient alone
        env = [(f, r) for f, r, _ in self.cap.messages if "bob@example.net" in r]
        self.assertEqual(env, [("postmaster@example.test", ["bob@example.net"])])
        text, html = self.parts(m)
        self.assertLess(text.index("second"), text.index("first"))  # newest first
        self.assertLess(html.index("second"), html.index("first"))
        # every entry's link is signed for that entry; the list link for bob
        links = re.findall(r"%s/entry\?id=([0-9a-f]{24})&t=(\d+)\.([A-Za-z0-9_-]{43})"
                           % re.escape(PAGES), text)
        self.assertEqual([l[0] for l in links], [a2, a1])
        self.assertEqual(int(links[0][1]), T0 + 60 + 14 * 86400)  # link_lifetime 14d
        lst = re.search(r"%s/list\?r=([^&\s]+)&t=\S+" % re.escape(PAGES), text)
        self.assertEqual(urllib.parse.unquote(lst.group(1)), "bob@example.net")
        self.assertIn(html.count("/entry?id="), (2,))
        self.assertIn("&amp;t=", html)  # the URL is escaped in the attribute

    def test_nothing_twice_new_ones_next(self):
        self.at(T0)
        self.post(["bob@example.net"], "Q1", subject="old one")
        self.digest()
        self.assertEqual(len(self.cap.messages), 1)
        out, _ = self.digest()
        self.assertIn("0 digests sent (0 entries)", out)
        self.assertEqual(len(self.cap.messages), 1)
        self.at(T0 + 3600)
        self.post(["bob@example.net"], "Q2", subject="new one")
        self.digest()
        self.assertEqual(len(self.cap.messages), 2)
        text, _ = self.parts(self.mails()["bob@example.net"][1])
        self.assertIn("new one", text)
        self.assertNotIn("old one", text)
        self.assertIn("1 new message(s)", text)

    def test_hostile_values_escaped(self):
        self.at(T0)
        self.post(["bob@example.net"], "QH", subject=HOSTILE_SUBJECT, sender=HOSTILE_FROM)
        self.digest()
        text, html = self.parts(self.mails()["bob@example.net"][0])
        self.assertIn(HOSTILE_SUBJECT, text)  # text is text
        self.assertNotIn("<script", html)
        self.assertNotIn("<img", html)
        self.assertNotIn("<b onmouseover", html)
        self.assertIn("&lt;script&gt;alert(&quot;s&quot;)&lt;/script&gt; &amp; "
                      "&lt;img src=x onerror=alert(1)&gt;", html)
        self.assertIn("&lt;b onmouseover=alert(2)&gt;Eve&lt;/b&gt;", html)

    def test_cap_and_full_list(self):
        self.daemon.write_conf(dict(self.daemon.extra_conf, digest_rows="2"))
        for i in range(5):
            self.at(T0 + i * 60)
            self.post(["bob@example.net"], "Q%d" % i, subject="number %d" % i)
        self.digest()
        text, html = self.parts(self.mails()["bob@example.net"][0])
        self.assertIn("number 4", text)
        self.assertIn("number 3", text)
        self.assertNotIn("number 2", text)
        self.assertIn("5 new message(s)", text)
        self.assertIn("and 3 more", text)
        self.assertIn("and 3 more", html)
        self.assertEqual(text.count("/entry?id="), 2)
        self.assertIn(PAGES + "/list?r=bob%40example.net&t=", text)
        # all five are announced: a second run sends nothing
        self.digest()
        self.assertEqual(len(self.cap.messages), 1)

    def test_refused_digest_is_sent_next_time(self):
        self.at(T0)
        self.post(["bob@example.net"], "Q1")
        self.cap.reply_rcpt = "550 5.1.1 <bob@example.net>: Recipient address rejected"
        out, err = self.digest(expect=1)
        self.assertIn("bob@example.net: not sent", err)
        self.assertIn("Recipient address rejected", err)
        self.assertIn("0 digests sent (0 entries), 1 failed", out)
        self.assertEqual(self.cap.messages, [])
        self.cap.reply_rcpt = None
        out, _ = self.digest()
        self.assertIn("1 digests sent (1 entries)", out)
        self.assertEqual(len(self.cap.messages), 1)
        # a transport that is down: same
        self.at(T0 + 60)
        self.post(["bob@example.net"], "Q2")
        self.cap.stop()
        self.digest(expect=1)
        self.cap = SmtpCapture().start()
        self.daemon.write_conf(dict(self.daemon.extra_conf,
                                    release_smtp="127.0.0.1:%d" % self.cap.port))
        self.digest()
        self.assertEqual(len(self.cap.messages), 1)

    def test_stopped_run_sends_the_rest_once(self):
        self.at(T0)
        rcpts = ["r%d@example.net" % i for i in range(4)]
        self.post(rcpts, "Q1")
        self.cap.hold = threading.Event()
        p = subprocess.Popen([h.CLI_BIN, "-c", self.daemon.conf, "digest"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # the first digest is in the MTA's hands: ask the run to stop
            self.assertTrue(h._wait_for(lambda: self.cap.in_data >= 1, 20))
            p.send_signal(signal.SIGTERM)
            self.cap.hold.set()
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn(b"stopped on a signal; the next run sends the rest", err)
        self.assertEqual(len(self.cap.messages), 1)  # finished the one it had begun
        self.cap.hold = None
        self.digest()
        got = self.cap.by_rcpt()
        self.assertEqual(sorted(got), rcpts)
        self.assertEqual([len(v) for v in got.values()], [1, 1, 1, 1])
        self.digest()
        self.assertEqual(len(self.cap.messages), 4)

    def test_one_run_at_a_time(self):
        self.at(T0)
        self.post(["bob@example.net", "carol@example.net"], "Q1")
        self.cap.hold = threading.Event()
        p = subprocess.Popen([h.CLI_BIN, "-c", self.daemon.conf, "digest"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.assertTrue(h._wait_for(lambda: self.cap.in_data >= 1, 20))
            _, err = self.digest(expect=1)
            self.assertIn("another digest run", err)
            self.cap.hold.set()
            p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 0)
        self.assertEqual(sorted(self.cap.by_rcpt()), ["bob@example.net", "carol@example.net"])

    def test_dry_run_rcpt_and_filters(self):
        conf = dict(self.daemon.extra_conf, digest_exclude="@lists.example.net, Role@example.net",
                    digest_actions="reject, add_header", digest_min_score="5",
                    digest_max_score="50")
        self.daemon.write_conf(conf)
        self.at(T0)
        self.post(["bob@example.net", "role@example.net", "x@lists.example.net",
                   "carol@example.net"], "Q1", subject="kept")
        self.post(["bob@example.net"], "Q2", subject="greylisted", action="greylist")
        self.post(["bob@example.net"], "Q3", subject="low", score="2")
        self.post(["bob@example.net"], "Q4", subject="sure spam", score="99", action="reject")
        out, _ = self.digest("--dry-run")
        self.assertIn("To: bob@example.net (1 new entries)", out)
        self.assertIn("To: carol@example.net (1 new entries)", out)
        self.assertNotIn("role@", out)
        self.assertNotIn("lists.example.net", out)
        for s in ("greylisted", "low", "sure spam"):
            self.assertNotIn(s, out)
        self.assertEqual(self.cap.messages, [])
        out, _ = self.digest("--dry-run", "--rcpt", "carol@example.net")
        self.assertNotIn("bob@", out)
        self.digest("--rcpt", "carol@example.net")
        self.assertEqual(sorted(self.cap.by_rcpt()), ["carol@example.net"])
        self.digest()
        self.assertEqual(sorted(self.cap.by_rcpt()), ["bob@example.net", "carol@example.net"])

    def test_templates_and_errors(self):
        tt = os.path.join(self.tmp, "my.txt")
        th = os.path.join(self.tmp, "my.html")
        with open(tt, "w") as f:
            f.write("Dear {{rcpt}}: {{count}}\n{{#rows}}* {{subject}} {{link}}\n{{/rows}}")
        with open(th, "w") as f:
            f.write("<p>{{#rows}}<i>{{subject}}</i>{{/rows}}</p>")
        conf = dict(self.daemon.extra_conf, digest_template_text=tt, digest_template_html=th,
                    digest_subject="Spam report {{count}}")
        self.daemon.write_conf(conf)
        self.at(T0)
        self.post(["bob@example.net"], "Q1", subject="a<b")
        self.digest()
        m = self.mails()["bob@example.net"][0]
        self.assertEqual(m["Subject"], "Spam report 1")
        text, html = self.parts(m)
        self.assertTrue(text.startswith("Dear bob@example.net: 1\n* a<b https://"), repr(text))
        self.assertEqual(html.strip(), "<p><i>a&lt;b</i></p>")
        # a wrong template stops the run before anything is sent or marked
        with open(th, "w") as f:
            f.write("<p>{{#rows}}{{subjet}}{{/rows}}</p>")
        self.at(T0 + 60)
        self.post(["bob@example.net"], "Q2")
        _, err = self.digest(expect=2)
        self.assertIn("line 1: unknown name 'subjet'", err)
        self.assertIn(th, err)
        self.assertEqual(len(self.cap.messages), 1)
        with open(th, "w") as f:
            f.write("<p>{{#rows}}{{subject}}{{/rows}}</p>")
        with open(tt, "w") as f:
            f.write("ok\n{{#rows}}{{subject}}\n")
        _, err = self.digest(expect=2)
        self.assertIn("template %s: line 2: section {{#rows}} is not closed" % tt, err)
        self.assertEqual(len(self.cap.messages), 1)
        # the built-in templates print, for an operator to start from
        rc, out, _ = self.daemon.cli("digest", "--print-template", "html")
        self.assertEqual(rc, 0)
        self.assertIn(b"{{#rows}}", out)
        # without digest_from and pages_url it refuses, naming them
        self.daemon.write_conf(dict(conf, digest_from="", pages_url=""))
        _, err = self.digest(expect=2)
        self.assertIn("digest_from and pages_url", err)


if __name__ == "__main__":
    h.main()
