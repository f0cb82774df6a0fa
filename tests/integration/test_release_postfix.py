#!/usr/bin/env python3
"""test_release_postfix.py - release on a real mail system, wired the way
Rspamd's integration guide wires it, and feedback to a real Rspamd.

The chain, started once for the file and stopped at its end (also when a
test fails), each server by the pid it was started with:

  redis-server        Rspamd's Bayes statistics (private, loopback port)
  Rspamd              tests/integration/rspamd.py: scanner, controller
                      (a password, trusted from nowhere without it),
                      proxy worker in milter mode; the shipped
                      metadata_exporter rule posting to our nginx; a test
                      symbol that rejects mail carrying X-Release-Test
  nginx + daemon      harness.py, the file store (or RQ_BACKEND's)
  Postfix "mx"        tests/integration/postfix.py: smtpd_milters and
                      non_smtpd_milters = $smtpd_milters pointing at the
                      proxy, milter_default_action = accept; the
                      re-injection listener of contrib/postfix/master.cf;
                      Maildir delivery for example.net into the temp dir;
                      everything else relayed to a closed port, so any
                      bounce would stay in the queue

Each test sends its own message over SMTP to Postfix, sees it rejected by
the milter (5.7.1), finds it quarantined, and releases it with the built
rspamd-quarantine: delivered into the Maildir with the stored bytes plus
the trace header, no second entry, nothing bounced, an empty queue; the
failures leave the entry unchanged and exit 1 with the server's text.
"""

import contextlib
import email.utils
import json
import os
import pwd
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from postfix import Postfix  # noqa: E402
from redis_server import RedisServer  # noqa: E402
from rspamd import Rspamd  # noqa: E402

DOMAIN = "example.net"
USERS = ["bob", "carol", "dave", "erin", "frank", "gina", "hugo", "jürgen", "someone",
         "pm", "ivan", "judy", "kate", "lena", "mike", "nina"]
PASSWORD = "release-test-controller"
SENDER = "alice@example.org"
RELEASE_MAIL_SH = os.path.join(h.ROOT, "contrib", "release-mail.sh")

ACTIONS_CONF = """\
# Mail carrying the test symbol is rejected at SMTP; other mail passes.
reject = 15;
add_header = 100;
rewrite_subject = null;
greylist = null;
"""

LOCAL_LUA = r"""
-- Test-only symbol of test_release_postfix.py: reject what is marked.
-- Its score lies well between reject (15) and add_header (100): Rspamd
-- takes the action of the highest threshold a score reaches, and the
-- other symbols a message collects (a date in the past is +1) must not
-- carry it to add_header.
rspamd_config:register_symbol({
  name = 'RELEASE_TEST_REJECT',
  score = 50.0,
  group = 'release-test',
  description = 'test marker: reject at SMTP',
  callback = function(task)
    if task:get_header('X-Release-Test') then
      task:insert_result('RELEASE_TEST_REJECT', 1.0, 'marker')
    end
  end,
})
"""


FUZZY_FLAG = 11


def fuzzy_files(redis, port):
    """A fuzzy storage worker (Redis backend, updates from loopback, flushed
    every second) and a writable fuzzy_check rule for it: flag 11 is
    RELEASE_FUZZY_DENIED."""
    return {
        "override.d/worker-fuzzy.inc":
            'bind_socket = "127.0.0.1:%d";\ncount = 1;\nbackend = "redis";\n'
            'servers = "%s";\nallow_update = ["127.0.0.1"];\nsync = 1s;\n'
            % (port, redis),
        "local.d/fuzzy_check.conf":
            'rule "release-test" {\n  servers = "127.0.0.1:%d";\n'
            '  symbol = "RELEASE_FUZZY_UNKNOWN";\n  mime_types = ["*/*"];\n'
            '  read_only = false;\n  skip_unknown = true;\n  min_length = 5;\n'
            '  fuzzy_map = {\n    RELEASE_FUZZY_DENIED { max_score = 1.0; flag = %d; }\n'
            '  }\n}\n' % (port, FUZZY_FLAG),
    }


def bayes_conf(redis):
    """Bayes on the private Redis.  min_learns = 1 lets Bayes classify as
    soon as one message of each class is learned, so Rspamd's own learn
    condition (it declines, 204, a message it already classifies in the
    class asked for) would make a learning test depend on what the tests
    before it learned.  What is tested here is the quarantine's side of
    the exchange; that condition is Rspamd's policy, and is set to learn
    always."""
    return ('backend = "redis";\nservers = "%s";\nautolearn = false;\n'
            'min_learns = 1;\n'
            'learn_condition = "return function(task, is_spam, is_unlearn) return true end";\n'
            % redis)


def message(tag, rcpt, body_extra=""):
    """A test message, CRLF, 8-bit UTF-8 body, enough words for Bayes,
    dated now (a fixed date ages into Rspamd's DATE_IN_PAST)."""
    words = " ".join("word%s%d" % (tag, i) for i in range(60))
    text = ("From: Alice <%s>\r\n"
            "To: <%s>\r\n"
            "Subject: release test %s\r\n"
            "Message-ID: <%s.release-test@example.org>\r\n"
            "Date: %s\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "X-Release-Test: reject\r\n"
            "\r\n"
            "Grüße aus München, %s.\r\n"
            ".a line that starts with a dot\r\n"
            "%s\r\n%s"
            % (SENDER, rcpt, tag, tag, email.utils.formatdate(usegmt=True), tag, words,
               body_extra))
    return text.encode("utf-8")


class Chain:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="rq-release-")
        os.chmod(self.tmp, 0o755)
        self.redis = self.daemon = self.nginx = self.rspamd = self.mx = None
        self.pg = None

    def start(self):
        try:
            conninfo = None
            backend = h.backend()
            if backend == "pgsql":
                self.pg = h.shared_pg()
                conninfo = h.pg_fresh_db(self.pg)
            self.redis = RedisServer(self.tmp).start()
            self.daemon = h.Daemon(self.tmp, backend, conninfo, {}).start()
            self.nginx = h.Nginx(self.tmp, self.daemon.socket).start()
            files = {
                "local.d/actions.conf": ACTIONS_CONF,
                "rspamd.local.lua": LOCAL_LUA,
                "local.d/classifier-bayes.conf": bayes_conf(self.redis.address),
            }
            files.update(fuzzy_files(self.redis.address, h.free_port()))
            self.rspamd = Rspamd(self.tmp, self.nginx.url("/quarantine"), files=files,
                                 secure_ip="192.0.2.1", password=PASSWORD).start(timeout=180)
            milter = "inet:127.0.0.1:%d" % self.rspamd.proxy_port
            self.mx = Postfix(self.tmp, DOMAIN, USERS, milter=milter, name="mx").start()
            self.password_file = self.write_private("password", PASSWORD + "\n")
            self.wrong_password_file = self.write_private("wrong-password", "not-the-password\n")
        except BaseException:
            sys.stderr.write(self.logs())
            self.stop()
            raise
        return self

    def write_private(self, name, text):
        """A file only the tool's store user can read (it reads the
        password after dropping privileges)."""
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(h.RUN_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        return path

    def conf(self, name, **over):
        """A configuration for the tool: the daemon's store, released
        through mx's re-injection listener, learning against Rspamd;
        over replaces keys (None drops one)."""
        c = {
            "release_transport": "smtp",
            "release_smtp": self.mx.reinject,
            "release_timeout": "20",
            "rspamd_controller": "http://%s" % self.rspamd.controller,
            "rspamd_password_file": self.password_file,
        }
        c.update(over)
        path = os.path.join(self.tmp, name + ".conf")
        with open(path, "w") as f:
            f.write(self.daemon.conf_text(c))
        return path

    def logs(self):
        out = []
        for name, obj in (("daemon", self.daemon), ("nginx", self.nginx)):
            if obj:
                out.append("---- %s log ----\n%s" % (name, obj.log()[-10000:]))
        for obj in (self.rspamd, self.mx, self.redis):
            if obj:
                out.append(obj.log()[-15000:])
        return "\n".join(out) + "\n"

    def stop(self):
        for fn in (lambda: self.mx and self.mx.stop(),
                   lambda: self.rspamd and self.rspamd.stop(),
                   lambda: self.nginx and self.nginx.stop(),
                   lambda: self.daemon and self.daemon.proc and self.daemon.stop(expect=None),
                   lambda: self.redis and self.redis.stop()):
            try:
                fn()
            except Exception as e:  # stop the others all the same
                sys.stderr.write("stopping: %r\n" % e)
        if os.environ.get("RQ_KEEP"):
            sys.stderr.write("kept %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


CHAIN = None


def setUpModule():
    global CHAIN
    CHAIN = Chain().start()


def tearDownModule():
    if CHAIN is not None:
        CHAIN.stop()


class ReleaseTest(unittest.TestCase):
    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result else 0
        try:
            return super().run(result)
        finally:
            if (result is not None and CHAIN is not None
                    and len(result.failures) + len(result.errors) > before):
                sys.stderr.write(CHAIN.logs())

    # ------------------------------------------------------------ helpers

    def cli(self, conf, *args, env=None):
        import subprocess
        p = subprocess.run([h.CLI_BIN, "-c", conf] + list(args), capture_output=True,
                           timeout=120, stdin=subprocess.DEVNULL, env=env)
        return p.returncode, p.stdout.decode("utf-8", "replace"), \
            p.stderr.decode("utf-8", "replace")

    def entries(self, rcpt):
        rc, out, err = self.cli(CHAIN.daemon.conf, "list", "--json", "--status", "any",
                                "--rcpt", rcpt)
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def quarantine(self, tag, user, mx=None):
        """Sends a marked message to user over SMTP: Postfix must reject
        it through Rspamd's milter, and it must arrive in the quarantine.
        Returns (entry, stored bytes)."""
        mx = mx or CHAIN.mx
        rcpt = "%s@%s" % (user, DOMAIN)
        code, text = mx.send(SENDER, [rcpt], message(tag, rcpt))
        self.assertEqual(code, 554, text)
        self.assertIn("5.7.1", text)
        end = time.monotonic() + 30
        while True:
            found = [e for e in self.entries(rcpt) if e["subject"] == "release test " + tag]
            if found or time.monotonic() > end:
                break
            time.sleep(0.2)
        self.assertEqual(len(found), 1, "not quarantined once: %r" % found)
        e = found[0]
        self.assertEqual(e["status"], "quarantined")
        return e, self.cat(e["id"])

    def cat(self, id):
        import subprocess
        p = subprocess.run([h.CLI_BIN, "-c", CHAIN.daemon.conf, "cat", id],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def status(self, rcpt, id):
        return [e for e in self.entries(rcpt) if e["id"] == id][0]["status"]

    def assert_delivered(self, mx, user, entry, stored, sender=SENDER, umlauts=True):
        """user's Maildir holds exactly one message: the MTA's own
        headers, then our one trace header, then the stored bytes (line
        ends as the delivery agent writes them)."""
        got = mx.wait_maildir(user, 1)
        self.assertEqual(len(got), 1, "delivered %d messages" % len(got))
        msg = got[0]
        stored_lf = stored.replace(b"\r\n", b"\n")
        self.assertTrue(msg.endswith(stored_lf), "the delivered message does not end "
                        "with the stored bytes:\n%r\n---\n%r" % (msg[:3000], stored_lf[:3000]))
        head = msg[:len(msg) - len(stored_lf)].decode("utf-8", "replace")
        lines = head.rstrip("\n").split("\n")
        self.assertRegex(lines[-1], r"^X-Quarantine-Released: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
                         r" by \S+ \(entry %s\)$" % entry["id"])
        self.assertEqual(head.count("X-Quarantine-Released:"), 1)
        self.assertIn("Return-Path: <%s>" % sender, head)
        self.assertIn("Delivered-To: %s@%s" % (user, DOMAIN), head)
        if umlauts:
            self.assertIn("Grüße aus München".encode(), msg)  # 8-bit body intact
        return msg

    def assert_nothing_bounced(self, mx):
        q = mx.wait_idle(30)
        self.assertIn("Mail queue is empty", q)
        self.assertEqual(mx.log_lines("sender non-delivery notification"), [])
        self.assertEqual(mx.log_lines(r"status=bounced"), [])

    def controller_post(self, path, body, password=PASSWORD):
        req = urllib.request.Request("http://%s%s" % (CHAIN.rspamd.controller, path),
                                     data=body, method="POST",
                                     headers={"Password": password})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def assert_already_learned(self, path, body):
        """Rspamd answers "already learned" to the message again.  Seen
        here on a loaded machine: Rspamd 3.4 now and then learns the repeat
        once more (200, and no learn-cache line in its log), so a few tries
        are allowed; every answer but 200 and "already learned" fails."""
        answers = []
        for _ in range(5):
            code, text = self.controller_post(path, body)
            answers.append((code, text))
            if code in (404, 208) and "already learned" in text:
                return
            self.assertEqual(code, 200, answers)
            time.sleep(0.5)
        self.fail("never 'already learned': %r" % answers)

    # ------------------------------------------------------------ the loop

    def test_full_loop_smtp_and_learn_ham(self):
        e, stored = self.quarantine("loop", "bob")
        conf = CHAIN.conf("loop")
        rc, out, err = self.cli(conf, "release", e["id"])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"%s: released to bob@example.net: 250 2\.0\.0 Ok: queued as \w+"
                         % e["id"])
        self.assertRegex(out, r"learn ham: learned \(/learnham: HTTP 200")
        self.assertEqual(err, "")
        self.assert_delivered(CHAIN.mx, "bob", e, stored)
        self.assert_nothing_bounced(CHAIN.mx)
        # It went through the re-injection listener, not the milter.
        qid = re.search(r"queued as (\w+)", out).group(1)
        self.assertTrue(CHAIN.mx.wait_log_lines(r"postfix/reinject/smtpd.*%s: client=" % qid))
        self.assertFalse(CHAIN.mx.log_lines(r"%s: milter-reject" % qid))
        # No second entry, and this one is released.
        time.sleep(1)
        entries = self.entries("bob@example.net")
        self.assertEqual([x["id"] for x in entries], [e["id"]])
        self.assertEqual(entries[0]["status"], "released")
        # Rspamd learned it: the same message again is "already learned".
        self.assert_already_learned("/learnham", stored)
        # A second release needs --force.
        rc, out, err = self.cli(conf, "release", e["id"])
        self.assertEqual(rc, 1)
        self.assertIn("already released", err)
        self.assertEqual(len(CHAIN.mx.maildir("bob")), 1)

    def test_release_mail_sh_goes_the_same_way(self):
        e, stored = self.quarantine("wrapper", "gina")
        env = dict(os.environ, RSPAMD_QUARANTINE=h.CLI_BIN,
                   RQ_CONFIG=CHAIN.conf("wrapper", rspamd_controller=""))
        import subprocess
        p = subprocess.run([RELEASE_MAIL_SH, e["id"]], capture_output=True, env=env,
                           timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"released to gina@example.net: 250 ", p.stdout)
        self.assert_delivered(CHAIN.mx, "gina", e, stored)
        self.assert_nothing_bounced(CHAIN.mx)
        self.assertEqual(self.status("gina@example.net", e["id"]), "released")

    def test_learn_spam(self):
        e, stored = self.quarantine("spam", "carol")
        conf = CHAIN.conf("spam")
        rc, out, err = self.cli(conf, "learn-spam", e["id"])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("%s: learn spam: learned (/learnspam: HTTP 200" % e["id"], out)
        self.assert_already_learned("/learnspam", stored)
        # Our own second request is a success too ("already learned", or
        # learned once more when Rspamd's cache lookup was late, see
        # assert_already_learned).
        rc, out, err = self.cli(conf, "learn-spam", e["id"])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"learn spam: (already-learned \(/learnspam: HTTP (404|208): "
                         r"<[^>]+> has been already learned as spam|learned \(/learnspam: "
                         r"HTTP 200)")
        # The entry itself is untouched and nothing was sent.
        self.assertEqual(self.status("carol@example.net", e["id"]), "quarantined")
        self.assertEqual(CHAIN.mx.maildir("carol"), [])
        # A wrong password is a failure of learn-spam: exit 1, the reason.
        rc, out, err = self.cli(CHAIN.conf("spam-badpw",
                                           rspamd_password_file=CHAIN.wrong_password_file),
                                "learn-spam", e["id"])
        self.assertEqual(rc, 1, out + err)
        self.assertIn("learn spam: auth", err)

    def post_fixture(self, name):
        """Stores a captured Rspamd request straight through FastCGI;
        returns its entry (the first recipient's) and stored bytes."""
        env, body = h.meta_env(h.fixture_request(name))
        status, _, answer = h.fcgi_post(CHAIN.daemon.socket, env, body)
        self.assertEqual(status, 200, answer)
        ids = json.loads(answer)["ids"]
        return ids[0], self.cat(ids[0])

    def test_envelope_sender_choices_and_lf_message(self):
        # LF line ends: SMTP gets CRLF, the mailbox the same text.
        id_lf, lf = self.post_fixture("05-lf-line-endings.default.http")
        self.assertNotIn(b"\r\n", lf)
        rc, out, err = self.cli(CHAIN.conf("lf", rspamd_controller=""), "release", id_lf)
        self.assertEqual(rc, 0, out + err)
        self.assert_delivered(CHAIN.mx, "someone", {"id": id_lf}, lf,
                              sender="nobody@example.com", umlauts=False)
        # No envelope (sender unknown): the null sender.
        id_ne, ne = self.post_fixture("03-latin1-no-envelope.default.http")
        rc, out, err = self.cli(CHAIN.conf("noenv", rspamd_controller=""), "release", id_ne,
                                "--to", "pm@example.net")
        self.assertEqual(rc, 0, out + err)
        self.assert_delivered(CHAIN.mx, "pm", {"id": id_ne}, ne, sender="", umlauts=False)
        # release_sender: an address of ours, or <> whatever the original.
        e, stored = self.quarantine("postmaster", "ivan")
        rc, out, err = self.cli(CHAIN.conf("sender-pm", rspamd_controller="",
                                           release_sender="postmaster@example.net"),
                                "release", e["id"])
        self.assertEqual(rc, 0, out + err)
        self.assert_delivered(CHAIN.mx, "ivan", e, stored, sender="postmaster@example.net")
        e, stored = self.quarantine("nullsender", "judy")
        rc, out, err = self.cli(CHAIN.conf("sender-null", rspamd_controller="",
                                           release_sender="<>"), "release", e["id"])
        self.assertEqual(rc, 0, out + err)
        self.assert_delivered(CHAIN.mx, "judy", e, stored, sender="")
        self.assert_nothing_bounced(CHAIN.mx)

    def test_force_and_another_recipient(self):
        e, stored = self.quarantine("force", "kate")
        conf = CHAIN.conf("force", rspamd_controller="")
        rc, out, err = self.cli(conf, "release", e["id"])
        self.assertEqual(rc, 0, out + err)
        rc, out, err = self.cli(conf, "release", e["id"], "--force", "--to", "lena@example.net")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("released to lena@example.net: 250 ", out)
        self.assert_delivered(CHAIN.mx, "lena", e, stored)
        self.assertEqual(len(CHAIN.mx.maildir("kate")), 1)
        self.assert_nothing_bounced(CHAIN.mx)

    def fuzzy_symbols(self, data):
        """The fuzzy symbols Rspamd's scanner finds for data."""
        path = os.path.join(CHAIN.tmp, "fuzzy-scan.eml")
        with open(path, "wb") as f:
            f.write(data)
        res = CHAIN.rspamd.scan_json(path)
        syms = res.get("symbols") or res.get("default", {}).get("symbols", {})
        return sorted(k for k in syms if k.startswith("RELEASE_FUZZY"))

    def wait_fuzzy(self, data, want, timeout=20):
        end = time.monotonic() + timeout
        while True:
            got = self.fuzzy_symbols(data)
            if got == want or time.monotonic() > end:
                return got
            time.sleep(1)

    def test_fuzzy_add_on_learn_spam_and_del_on_release(self):
        e, stored = self.quarantine("fuzzy", "nina")
        conf = CHAIN.conf("fuzzy", rspamd_fuzzy_flag=str(FUZZY_FLAG))
        self.assertEqual(self.fuzzy_symbols(stored), [])
        rc, out, err = self.cli(conf, "learn-spam", e["id"])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("%s: fuzzy add: learned (/fuzzyadd: HTTP 200" % e["id"], out)
        self.assertEqual(self.wait_fuzzy(stored, ["RELEASE_FUZZY_DENIED"]),
                         ["RELEASE_FUZZY_DENIED"])
        # The operator changes their mind: the release removes it again.
        rc, out, err = self.cli(conf, "release", e["id"])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("%s: fuzzy delete: learned (/fuzzydel: HTTP 200" % e["id"], out)
        self.assertEqual(self.wait_fuzzy(stored, []), [])
        self.assert_delivered(CHAIN.mx, "nina", e, stored)

    # ------------------------------------------------------------ failures

    def assert_unchanged(self, user, e):
        """The entry is as quarantined, and the only one of its message."""
        rcpt = "%s@%s" % (user, DOMAIN)
        self.assertEqual(self.status(rcpt, e["id"]), "quarantined")
        same = [x for x in self.entries(rcpt) if x["subject"] == e["subject"]]
        self.assertEqual(len(same), 1, same)

    def test_listener_down(self):
        e, _ = self.quarantine("down", "dave")
        closed = h.free_port()
        conf = CHAIN.conf("down", release_smtp="127.0.0.1:%d" % closed)
        rc, out, err = self.cli(conf, "release", e["id"])
        self.assertEqual(rc, 1, out + err)
        self.assertEqual(out, "")
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn("not released (temporary failure)", err)
        self.assertIn("127.0.0.1:%d" % closed, err)
        self.assertRegex(err, r"(?i)connect")
        self.assert_unchanged("dave", e)
        self.assertEqual(CHAIN.mx.maildir("dave"), [])

    def test_recipient_refused_5xx_and_4xx(self):
        e, _ = self.quarantine("refused", "dave")
        conf = CHAIN.conf("refused")
        rc, out, err = self.cli(conf, "release", e["id"], "--to", "nobody@example.net")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("not released (refused)", err)
        self.assertIn("550 5.1.1 <nobody@example.net>: Recipient address rejected", err)
        self.assert_unchanged("dave", e)
        # Temporarily failing: Postfix's soft_bounce turns the refusal into 450.
        CHAIN.mx.postconf("soft_bounce = yes")
        CHAIN.mx.reload()
        try:
            rc, out, err = self.cli(conf, "release", e["id"], "--to", "nobody@example.net")
        finally:
            CHAIN.mx.postconf("soft_bounce = no")
            CHAIN.mx.reload()
        self.assertEqual(rc, 1, out + err)
        self.assertIn("not released (temporary failure)", err)
        self.assertIn("450 4.1.1 <nobody@example.net>", err)
        self.assert_unchanged("dave", e)
        self.assert_nothing_bounced(CHAIN.mx)
        self.assertEqual(CHAIN.mx.maildir("dave"), [])

    def test_listener_that_never_answers_times_out(self):
        e, _ = self.quarantine("timeout", "dave")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(4)
            conf = CHAIN.conf("timeout", release_smtp="127.0.0.1:%d" % s.getsockname()[1],
                              release_timeout="2")
            t0 = time.monotonic()
            rc, out, err = self.cli(conf, "release", e["id"])
            took = time.monotonic() - t0
        self.assertEqual(rc, 1, out + err)
        self.assertIn("not released (temporary failure)", err)
        self.assertRegex(err, r"(?i)timeout|timed out")
        self.assertLess(took, 15)
        self.assert_unchanged("dave", e)

    def test_learning_failures_do_not_undo_the_release(self):
        # A wrong password: delivered and marked, exit 3, the reason shown.
        e, stored = self.quarantine("badpw", "erin")
        conf = CHAIN.conf("badpw", rspamd_password_file=CHAIN.wrong_password_file)
        rc, out, err = self.cli(conf, "release", e["id"])
        self.assertEqual(rc, 3, out + err)
        self.assertIn("released to erin@example.net: 250 ", out)
        self.assertIn("%s: learn ham: auth: /learnham: HTTP 40" % e["id"], err)
        self.assert_delivered(CHAIN.mx, "erin", e, stored)
        self.assertEqual(self.status("erin@example.net", e["id"]), "released")
        # A controller that is not running: the same, with its reason.
        e2, stored2 = self.quarantine("deadctl", "hugo")
        dead = h.free_port()
        conf = CHAIN.conf("deadctl", rspamd_controller="http://127.0.0.1:%d" % dead)
        rc, out, err = self.cli(conf, "release", e2["id"])
        self.assertEqual(rc, 3, out + err)
        self.assertIn("released to hugo@example.net: 250 ", out)
        self.assertIn("learn ham: unreachable: controller http://127.0.0.1:%d/learnham"
                      % dead, err)
        self.assert_delivered(CHAIN.mx, "hugo", e2, stored2)
        self.assertEqual(self.status("hugo@example.net", e2["id"]), "released")
        self.assert_nothing_bounced(CHAIN.mx)

    def test_smtputf8_recipient(self):
        e, stored = self.quarantine("utf8", "dave")
        rc, out, err = self.cli(CHAIN.conf("utf8", rspamd_controller=""), "release", e["id"],
                                "--to", "jürgen@example.net")
        self.assertEqual(rc, 0, out + err)
        got = CHAIN.mx.wait_maildir("jürgen", 1)
        self.assertEqual(len(got), 1)
        self.assertTrue(got[0].endswith(stored.replace(b"\r\n", b"\n")))
        self.assertTrue(CHAIN.mx.wait_log_lines(r"to=<jürgen@example.net>.*status=sent"))
        # A listener that does not offer SMTPUTF8: Postfix still takes the
        # 8-bit address (its legacy behaviour), so the release works too.
        e2, stored2 = self.quarantine("utf8-off", "dave")
        CHAIN.mx.postconf("smtputf8_enable = no")
        CHAIN.mx.reload()
        try:
            rc, out, err = self.cli(CHAIN.conf("utf8-off", rspamd_controller=""), "release",
                                    e2["id"], "--to", "jürgen@example.net")
        finally:
            CHAIN.mx.postconf("smtputf8_enable = yes")
            CHAIN.mx.reload()
        self.assertEqual(rc, 0, out + err)
        got = CHAIN.mx.wait_maildir("jürgen", 2)
        self.assertTrue(got[-1].endswith(stored2.replace(b"\r\n", b"\n")))
        self.assertEqual(len(CHAIN.mx.maildir("jürgen")), 2)
        self.assert_nothing_bounced(CHAIN.mx)

    # ------------------------------------------------------------ sendmail

    def test_sendmail_transport_without_non_smtpd_milter(self):
        milter = "inet:127.0.0.1:%d" % CHAIN.rspamd.proxy_port
        mx2 = Postfix(CHAIN.tmp, DOMAIN, USERS, milter=milter, non_smtpd_milter=False,
                      name="mx2")
        with mx2:
            e, stored = self.quarantine("sendmail", "frank", mx=mx2)
            conf = CHAIN.conf("sendmail", release_transport="sendmail",
                              sendmail="/usr/sbin/sendmail", rspamd_controller="")
            rc, out, err = self.cli(conf, "release", e["id"], env=mx2.env())
            self.assertEqual(rc, 0, out + err)
            self.assertIn("released to frank@example.net", out)
            self.assert_delivered(mx2, "frank", e, stored)
            self.assert_nothing_bounced(mx2)
            self.assertTrue(mx2.wait_log_lines(r"postfix/pickup.*uid="))
            time.sleep(1)
            self.assertEqual(len(self.entries("frank@example.net")), 1)
            self.assertEqual(self.status("frank@example.net", e["id"]), "released")

    def test_sendmail_with_non_smtpd_milters_loops(self):
        """Why smtp is the default: with non_smtpd_milters = $smtpd_milters
        (Rspamd's guide), a release through sendmail passes the milter
        again.  sendmail itself succeeds, so the entry is marked released,
        but the message is rejected in cleanup, bounced to its sender and
        quarantined a second time; the recipient gets nothing.  This test
        pins down the behaviour the README warns about."""
        milter = "inet:127.0.0.1:%d" % CHAIN.rspamd.proxy_port
        mx3 = Postfix(CHAIN.tmp, DOMAIN, USERS, milter=milter, name="mx3")
        with mx3:
            e, stored = self.quarantine("loops", "mike", mx=mx3)
            conf = CHAIN.conf("loops", release_transport="sendmail",
                              sendmail="/usr/sbin/sendmail", rspamd_controller="")
            rc, out, err = self.cli(conf, "release", e["id"], env=mx3.env())
            self.assertEqual(rc, 0, out + err)  # sendmail took it: a false success
            end = time.monotonic() + 30
            while time.monotonic() < end and not mx3.log_lines(
                    "sender non-delivery notification"):
                time.sleep(0.2)
            self.assertTrue(mx3.log_lines(r"milter-reject: END-OF-MESSAGE from local"))
            self.assertTrue(mx3.log_lines("sender non-delivery notification"))
            self.assertEqual(mx3.maildir("mike"), [])
            end = time.monotonic() + 30
            while time.monotonic() < end and len(self.entries("mike@example.net")) < 2:
                time.sleep(0.2)
            self.assertEqual(len(self.entries("mike@example.net")), 2)


if __name__ == "__main__":
    h.main()
