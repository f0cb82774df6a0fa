#!/usr/bin/env python3
"""test_cli.py - the operator's command line rspamd-quarantine against a
store filled by the real daemon (fixtures posted through cgi-fcgi):
list and its filters, show, cat byte-exact, release's command line and
the sendmail transport's contract (arguments, standard input, exit status)
through a recording sendmail, delete, expire by age and per-recipient
limits, stats, every error path, and the contrib files that call the tool
(release-mail.sh and the cron line) run as shipped.  Release on a real
mail system (Postfix with Rspamd's milter, both transports, the envelope
sender choices, LF messages, learning) is test_release_postfix.py.

The clock is set with RSPAMD_QUARANTINE_NOW (the daemon's for when an
entry was received, the tool's for expiry); nothing sleeps.

Environment: B (build directory), RQ_BACKEND (file, the default, or pgsql).
"""

import json
import os
import re
import shlex
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# A fixed clock: 2027-01-15T08:00:00Z.
T0 = 1800000000
DAY = 86400
PREFIX = "rspamd-quarantine: "

F_PLAIN = "01-plain.default.http"         # bob@example.net, alice@example.org
F_UTF8 = "02-utf8-two-rcpt-user-ipv6.default.http"  # bob, carol; juergen@example.de
F_NOENV = "03-latin1-no-envelope.default.http"      # no envelope: postmaster
F_BIG = "04-big-attachment-three-rcpt.default.http"  # a, b, c; mallory@evil.example
F_LF = "05-lf-line-endings.default.http"  # someone@example.net, LF line ends
F_AUTH = "06-basic-auth-rfc822-type.default.http"   # bob, Basic auth

STUB_SENDMAIL = r"""#!/bin/sh
# Stand-in sendmail: records its arguments (NUL-separated, $0 first) and
# its standard input; fails when the file "fail" exists.
d=%(dir)s
i=0
while [ -e "$d/argv.$i" ]; do i=$((i + 1)); done
{ printf '%%s\0' "$0"; for a in "$@"; do printf '%%s\0' "$a"; done; } > "$d/argv.$i"
cat > "$d/stdin.$i"
if [ -e "$d/fail" ]; then
	echo "stub-sendmail: mail system down" >&2
	echo "second line of the complaint" >&2
	exit 75
fi
exit 0
"""


def body_of(name):
    return h.split_request(h.fixture_request(name))[3]


def one_line_error(test, err, *words):
    """err is exactly one line starting with the tool's prefix and
    containing every word."""
    test.assertTrue(err.startswith(PREFIX), "error without prefix: %r" % err)
    test.assertEqual(err.count("\n"), 1, "error is not one line: %r" % err)
    for w in words:
        test.assertIn(w, err)


class CliTest(unittest.TestCase):
    pg = None
    pg_tmp = None

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(h.CLI_BIN) or not os.path.exists(h.DAEMON_BIN):
            raise unittest.SkipTest("programs not built in %s" % h.BUILD)
        if h.backend() == "pgsql":
            cls._pg_dir = h.tempdir("rq-cli-pg-")
            cls.pg_tmp = cls._pg_dir.__enter__()
            cls.pg = h.pg_start(cls.pg_tmp)

    @classmethod
    def tearDownClass(cls):
        if cls.pg is not None:
            cls.pg.stop()
            cls._pg_dir.__exit__(None, None, None)

    # ------------------------------------------------------------ set-up

    def setUp(self):
        self._saved_env = {k: os.environ.get(k) for k in
                           ("RSPAMD_QUARANTINE_NOW", "SUDO_USER")}
        os.environ.pop("SUDO_USER", None)
        self._tmp_cm = h.tempdir("rq-cli-")
        self.tmp = self._tmp_cm.__enter__()
        self.maildir = os.path.join(self.tmp, "sendmail")
        os.makedirs(self.maildir)
        os.chmod(self.maildir, 0o755)
        self.sendmail = os.path.join(self.tmp, "sendmail.sh")
        with open(self.sendmail, "w") as f:
            f.write(STUB_SENDMAIL % {"dir": shlex.quote(self.maildir)})
        os.chmod(self.sendmail, 0o755)
        self.now = None
        self.daemon = None

    def tearDown(self):
        if self.daemon is not None and self.daemon.proc is not None:
            if sys.exc_info()[0] is not None:
                sys.stderr.write(self.daemon.log())
            self.daemon.stop(expect=None)
        self._tmp_cm.__exit__(None, None, None)
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def make_daemon(self, extra_conf=None):
        conf = {"sendmail": self.sendmail, "release_transport": "sendmail"}
        conf.update(extra_conf or {})
        conninfo = self.pg.conninfo() if self.pg is not None else None
        self.daemon = h.Daemon(self.tmp, h.backend(), conninfo, conf, workers=1)
        if self.pg is not None:
            self.clear_store()
        return self.daemon

    def clear_store(self):
        """The shared database starts each test empty."""
        os.environ["RSPAMD_QUARANTINE_NOW"] = str(4000000000)
        rc, _, err = self.cli("expire", "--older-than", "0")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.stats()["entries"], 0)
        os.environ.pop("RSPAMD_QUARANTINE_NOW", None)

    def at(self, now):
        """Runs the daemon (and the tool) with the clock at now."""
        if self.daemon is None:
            self.make_daemon()
        os.environ["RSPAMD_QUARANTINE_NOW"] = str(now)
        if self.daemon.proc is not None and self.now == now:
            return
        if self.daemon.proc is not None:
            self.daemon.stop()
        self.now = now
        self.daemon.start()

    def post(self, name, qid=None, rcpt=None, symbols=None, expect=200):
        """Posts a fixture (some meta headers replaced) through FastCGI;
        returns its body."""
        env, body = h.meta_env(h.fixture_request(name))
        if qid is not None:
            env["HTTP_X_RSPAMD_QID"] = qid
        if rcpt is not None:
            env["HTTP_X_RSPAMD_RCPT"] = json.dumps(rcpt)
        if symbols is not None:
            env["HTTP_X_RSPAMD_SYMBOLS"] = json.dumps(symbols)
        status, _, answer = h.fcgi_post(self.daemon.socket, env, body)
        self.assertEqual(status, expect, answer)
        return body

    def cli(self, *args, **kw):
        return h.cli(self.daemon.conf, *args, **kw)

    def ok(self, *args, **kw):
        rc, out, err = self.cli(*args, **kw)
        self.assertEqual(rc, 0, "%r failed (%d): %s" % (args, rc, err))
        return out

    def entries(self, *args):
        return json.loads(self.ok("list", "--json", *args).decode())

    def stats(self):
        return json.loads(self.ok("stats", "--json").decode())

    def entry(self, rcpt, qid=None):
        """The one entry of rcpt (of message qid)."""
        args = ["--rcpt", rcpt, "--status", "any"]
        if qid:
            args += ["--qid", qid]
        found = self.entries(*args)
        self.assertEqual(len(found), 1, found)
        return found[0]

    def calls(self):
        """What the stand-in sendmail recorded: [(argv, stdin)]."""
        out = []
        i = 0
        while os.path.exists(os.path.join(self.maildir, "argv.%d" % i)):
            with open(os.path.join(self.maildir, "argv.%d" % i), "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0")[:-1]]
            with open(os.path.join(self.maildir, "stdin.%d" % i), "rb") as f:
                out.append((argv, f.read()))
            i += 1
        return out

    def fill_three_times(self):
        """01 at T0, 02 an hour later, 04 and 05 two hours later."""
        self.at(T0)
        self.post(F_PLAIN)
        self.at(T0 + 3600)
        self.post(F_UTF8)
        self.at(T0 + 7200)
        self.post(F_BIG)
        self.post(F_LF)

    # ------------------------------------------------------------ list

    def test_list_json_and_filters(self):
        self.fill_three_times()
        all_ = self.entries()
        self.assertEqual(len(all_), 7)
        for e in all_:
            for k in ("id", "rcpt", "from", "subject", "qid", "action", "score",
                      "size", "received_at", "status"):
                self.assertIn(k, e)
            self.assertRegex(e["id"], r"^[0-9a-f]{24}$")
            self.assertRegex(e["received_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            self.assertEqual(e["status"], "quarantined")
        times = [e["received_at"] for e in all_]
        self.assertEqual(times, sorted(times, reverse=True), "not newest first")
        self.assertEqual(times[-1], "2027-01-15T08:00:00Z")
        self.assertEqual(times[0], "2027-01-15T10:00:00Z")

        plain = self.entry("bob@example.net", "4ABC123DEF")
        self.assertEqual(plain["from"], "alice@example.org")
        self.assertEqual(plain["subject"], "Hello plain")
        self.assertEqual(plain["size"], len(body_of(F_PLAIN)))
        self.assertEqual(plain["action"], "add header")
        self.assertAlmostEqual(plain["score"], 10.3)

        bob = self.entries("--rcpt", "bob@example.net")
        self.assertEqual(sorted(e["qid"] for e in bob), ["4ABC123DEF", "4XYZ789"])
        self.assertEqual({e["rcpt"] for e in self.entries("--from", "mallory@evil.example")},
                         {"a@example.net", "b@example.net", "c@example.org"})
        utf8 = self.entries("--qid", "4XYZ789")
        self.assertEqual({e["rcpt"] for e in utf8}, {"bob@example.net", "carol@example.net"})
        self.assertEqual({e["subject"] for e in utf8}, {"Grüße aus München"})
        self.assertEqual(len(self.entries("--symbol", "MIME_BAD_EXTENSION")), 3)
        self.assertEqual(len(self.entries("--symbol", "FROM_SERVICE_ACCT")), 1)

        # Nothing matches: exactly an empty JSON array.
        self.assertEqual(self.ok("list", "--json", "--symbol", "CLAMAV_VIRUS"), b"[]\n")
        self.assertEqual(self.ok("list", "--json", "--status", "released"), b"[]\n")

        since = self.entries("--since", "@%d" % (T0 + 3600))
        self.assertEqual(len(since), 6)
        until = self.entries("--until", "2027-01-15T09:00:00Z")
        self.assertEqual([e["qid"] for e in until], ["4ABC123DEF"])
        window = self.entries("--since", "2027-01-15T08:30:00+00:00",
                              "--until", "@%d" % (T0 + 7200))
        self.assertEqual({e["qid"] for e in window}, {"4XYZ789"})
        ago = self.entries("--since", "30m")  # the clock is at T0 + 2h
        self.assertEqual(len(ago), 4)

        limited = self.entries("--limit", "2")
        self.assertEqual(len(limited), 2)
        self.assertTrue(all(e["received_at"] == "2027-01-15T10:00:00Z" for e in limited))

        both = self.entries("--rcpt", "bob@example.net", "--since", "@%d" % (T0 + 1))
        self.assertEqual([e["qid"] for e in both], ["4XYZ789"])

    def test_list_text(self):
        self.fill_three_times()
        out = self.ok("list").decode()
        lines = out.splitlines()
        self.assertEqual(len(lines), 8, out)
        self.assertIn("ID", lines[0])
        self.assertIn("SUBJECT", lines[0])
        ids = [e["id"] for e in self.entries()]
        self.assertEqual([ln.split()[0] for ln in lines[1:]], ids)
        row = [ln for ln in lines if ln.startswith(self.entry("carol@example.net")["id"])][0]
        self.assertIn("2027-01-15T09:00:00Z", row)
        self.assertIn("quarantined", row)
        self.assertIn("7.90", row)
        self.assertIn("juergen@example.de", row)
        self.assertIn("Grüße aus München", row)
        # Empty listing: nothing on stdout, success.
        rc, out, err = self.cli("list", "--rcpt", "nobody@nowhere.example")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out.strip(), b"")

    def test_list_long_fields_are_cut_and_cleaned(self):
        self.at(T0)
        long_rcpt = "a-very-long-local-part-of-an-address-indeed@example.net"
        self.post(F_PLAIN, rcpt=[long_rcpt])
        out = self.ok("list").decode()
        row = out.splitlines()[1]
        self.assertNotIn(long_rcpt, row)
        self.assertIn(long_rcpt[:20], row)
        self.assertIn("...", row)
        self.assertEqual(self.entries()[0]["rcpt"], long_rcpt)

    # ------------------------------------------------------------ show, cat

    def test_show(self):
        self.at(T0)
        self.post(F_UTF8)
        e = self.entry("carol@example.net")
        out = self.ok("show", e["id"]).decode()
        fields = {}
        for ln in out.splitlines():
            m = re.match(r"^([a-z][a-z -]*):\s+(.*)$", ln)
            if m:
                fields.setdefault(m.group(1), m.group(2))
        self.assertEqual(fields["id"], e["id"])
        self.assertEqual(fields["status"], "quarantined")
        self.assertEqual(fields["recipient"], "carol@example.net")
        self.assertEqual(fields["envelope from"], "juergen@example.de")
        self.assertEqual(fields["queue id"], "4XYZ789")
        self.assertEqual(fields["subject"], "Grüße aus München")
        self.assertEqual(fields["score"], "7.90")
        self.assertEqual(fields["received"], "2027-01-15T08:00:00Z")
        self.assertEqual(fields["client ip"], "2001:db8::25")
        self.assertEqual(fields["user"], "juergen@example.de")
        self.assertEqual(fields["size"], str(len(body_of(F_UTF8))))
        # Every symbol on a line of its own with its score, options after.
        syms = json.loads(h.header(h.split_request(h.fixture_request(F_UTF8))[2],
                                   "X-Rspamd-symbols"))
        for s in syms:
            m = re.search(r"^  %s +(-?\d+\.\d\d)(.*)$" % re.escape(s["name"]), out, re.M)
            self.assertTrue(m, "symbol %s not shown:\n%s" % (s["name"], out))
            self.assertAlmostEqual(float(m.group(1)), s["score"], places=2)
            for o in s.get("options", []):
                self.assertIn(o, m.group(2))

        j = json.loads(self.ok("show", e["id"], "--json").decode())
        self.assertEqual(j["id"], e["id"])
        self.assertEqual(j["rcpt"], "carol@example.net")
        self.assertEqual(j["qid"], "4XYZ789")
        self.assertEqual(j["received_at"], "2027-01-15T08:00:00Z")
        # Options may come before the ID too.
        j2 = json.loads(self.ok("show", "--json", e["id"]).decode())
        self.assertEqual(j2["id"], e["id"])

    def test_cat_byte_exact(self):
        self.at(T0)
        for name in (F_PLAIN, F_UTF8, F_NOENV, F_BIG, F_LF):
            body = self.post(name)
            for e in self.entries("--status", "any"):
                if e["size"] == len(body):
                    out = self.ok("cat", e["id"])
                    self.assertEqual(out, body, "cat of %s differs" % name)
        # Each of the recipients of one message gets the same bytes.
        big = body_of(F_BIG)
        ids = [e["id"] for e in self.entries("--qid", "4BIG0001")]
        self.assertEqual(len(ids), 3)
        for i in ids:
            self.assertEqual(self.ok("cat", i), big)

    # ------------------------------------------------------------ release

    def test_release(self):
        self.at(T0)
        body = self.post(F_UTF8)
        bob = self.entry("bob@example.net")
        carol = self.entry("carol@example.net")
        self.at(T0 + 600)
        out = self.ok("release", bob["id"])
        self.assertIn(b"bob@example.net", out)

        calls = self.calls()
        self.assertEqual(len(calls), 1)
        argv, data = calls[0]
        self.assertEqual(argv, [self.sendmail, "-i", "-f", "juergen@example.de", "--",
                                "bob@example.net"])
        user = "root" if h.IS_ROOT else __import__("pwd").getpwuid(os.getuid()).pw_name
        header = ("X-Quarantine-Released: 2027-01-15T08:10:00Z by %s (entry %s)\r\n"
                  % (user, bob["id"])).encode()
        self.assertEqual(data, header + body)

        e = self.entry("bob@example.net")
        self.assertEqual(e["status"], "released")
        self.assertEqual(self.entry("carol@example.net")["status"], "quarantined")
        self.assertEqual(self.entries("--status", "released")[0]["id"], bob["id"])
        show = self.ok("show", bob["id"]).decode()
        self.assertRegex(show, r"status:\s+released \(2027-01-15T08:10:00Z\)")

        # A second release is refused and sends nothing.
        rc, out, err = self.cli("release", bob["id"])
        self.assertEqual(rc, 1)
        one_line_error(self, err, "already released", "--force")
        self.assertEqual(len(self.calls()), 1)

        # --force sends again, --to somewhere else; still one recipient.
        os.environ["SUDO_USER"] = "alice"
        self.ok("release", bob["id"], "--force", "--to", "-oi@example.com")
        argv, data = self.calls()[1]
        self.assertEqual(argv[1:], ["-i", "-f", "juergen@example.de", "--", "-oi@example.com"])
        if h.IS_ROOT:
            self.assertIn(b" by alice (entry ", data.split(b"\r\n", 1)[0])
        self.assertTrue(data.endswith(body))

        # The stored message is unchanged by releases.
        self.assertEqual(self.ok("cat", bob["id"]), body)
        self.assertEqual(self.ok("cat", carol["id"]), body)

    def test_release_failing_sendmail(self):
        self.at(T0)
        self.post(F_UTF8)
        carol = self.entry("carol@example.net")
        open(os.path.join(self.maildir, "fail"), "w").close()
        rc, out, err = self.cli("release", carol["id"])
        self.assertEqual(rc, 1)
        one_line_error(self, err, carol["id"], "75", "stub-sendmail: mail system down")
        self.assertEqual(self.entry("carol@example.net")["status"], "quarantined")
        self.assertEqual(len(self.calls()), 1)
        # Once sendmail works again, the release goes through.
        os.unlink(os.path.join(self.maildir, "fail"))
        self.ok("release", carol["id"])
        self.assertEqual(self.entry("carol@example.net")["status"], "released")

    def test_release_missing_sendmail(self):
        self.make_daemon({"sendmail": os.path.join(self.tmp, "no-such-sendmail")})
        self.at(T0)
        self.post(F_PLAIN)
        e = self.entry("bob@example.net")
        rc, _, err = self.cli("release", e["id"])
        self.assertEqual(rc, 2)  # a configuration error: sendmail cannot be run
        one_line_error(self, err, "no-such-sendmail")
        self.assertEqual(self.entry("bob@example.net")["status"], "quarantined")

    def test_release_refusals(self):
        self.at(T0)
        self.post(F_PLAIN)
        e = self.entry("bob@example.net")
        for args in (["--to", ""], ["--to", "two words@example.com"],
                     ["--to", "a@b.example,c@d.example"]):
            rc, _, err = self.cli("release", e["id"], *args)
            self.assertEqual(rc, 2, args)
            one_line_error(self, err, "--to")
        self.ok("delete", e["id"])
        rc, _, err = self.cli("release", e["id"])
        self.assertEqual(rc, 1)
        one_line_error(self, err, e["id"])
        self.assertEqual(self.calls(), [])

    def test_release_mail_sh(self):
        self.at(T0)
        body = self.post(F_PLAIN)
        e = self.entry("bob@example.net")
        script = os.path.join(h.ROOT, "contrib", "release-mail.sh")
        env = dict(os.environ, RSPAMD_QUARANTINE=h.CLI_BIN, RQ_CONFIG=self.daemon.conf)

        def run(*args):
            p = subprocess.run([script] + list(args), env=env, capture_output=True,
                               timeout=60)
            return p.returncode, p.stdout, p.stderr.decode()

        rc, out, err = run(e["id"])
        self.assertEqual(rc, 0, err)
        argv, data = self.calls()[0]
        self.assertEqual(argv[1:], ["-i", "-f", "alice@example.org", "--", "bob@example.net"])
        self.assertTrue(data.endswith(body))
        self.assertEqual(self.entry("bob@example.net")["status"], "released")

        # Released already: the tool's refusal and exit status come through.
        rc, _, err = run(e["id"])
        self.assertEqual(rc, 1)
        self.assertIn("already released", err)

        # Another address, even one that looks like an option.
        self.ok("release", e["id"], "--force")
        rc, _, err = run(e["id"], "-bv@example.org")
        self.assertEqual(rc, 1, err)  # released: needs --force, which the wrapper never gives
        self.assertEqual(len(self.calls()), 2)

        self.at(T0 + 1)
        self.post(F_AUTH)
        e2 = self.entry("bob@example.net", "4AUTH01")
        rc, _, err = run(e2["id"], "-bv@example.org")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.calls()[2][0][1:],
                         ["-i", "-f", "alice@example.org", "--", "-bv@example.org"])

        # Input is never evaluated: an "ID" with shell syntax is refused.
        marker = os.path.join(self.tmp, "pwned")
        for bad in ("$(touch %s)" % marker, "`touch %s`" % marker, e["id"] + ";true",
                    e["id"][:23], "A" * 24, "-h", ""):
            rc, _, err = run(bad)
            self.assertEqual(rc, 1, (bad, err))
            self.assertIn("not an entry ID", err)
        self.assertFalse(os.path.exists(marker))
        self.assertEqual(run()[0], 2)
        self.assertEqual(run(e["id"], "a@b", "c@d")[0], 2)
        self.assertEqual(len(self.calls()), 3)

    # ------------------------------------------------------------ delete

    def test_delete_one_of_three_keeps_content(self):
        self.at(T0)
        big = self.post(F_BIG)
        a, b, c = (self.entry(r)["id"] for r in ("a@example.net", "b@example.net",
                                                  "c@example.org"))
        st = self.stats()
        self.assertEqual((st["entries"], st["messages"], st["bytes"]), (3, 1, len(big)))

        out = self.ok("delete", a)
        self.assertIn(a.encode(), out)
        self.assertEqual({e["rcpt"] for e in self.entries("--qid", "4BIG0001")},
                         {"b@example.net", "c@example.org"})
        self.assertEqual(self.ok("cat", b), big)
        self.assertEqual(self.ok("cat", c), big)
        rc, _, err = self.cli("cat", a)
        self.assertEqual(rc, 1)
        one_line_error(self, err, a)
        st = self.stats()
        self.assertEqual((st["entries"], st["messages"], st["bytes"]), (2, 1, len(big)))

        self.ok("delete", b, c)
        st = self.stats()
        self.assertEqual((st["entries"], st["messages"], st["bytes"]), (0, 0, 0))
        self.assertEqual(self.entries(), [])

    def test_delete_unknown_continues(self):
        self.at(T0)
        self.post(F_UTF8)
        bob = self.entry("bob@example.net")["id"]
        carol = self.entry("carol@example.net")["id"]
        unknown = "0123456789abcdef01234567"
        rc, out, err = self.cli("delete", unknown, bob, "not-an-id", carol)
        self.assertEqual(rc, 1)
        lines = err.splitlines()
        self.assertEqual(len(lines), 2, err)
        self.assertTrue(all(ln.startswith(PREFIX) for ln in lines))
        self.assertIn(unknown, lines[0])
        self.assertIn("not-an-id", lines[1])
        self.assertEqual(self.entries("--status", "any"), [])
        self.assertEqual(self.stats()["messages"], 0)

    # ------------------------------------------------------------ expire

    def test_expire_by_age(self):
        self.at(T0)
        plain = self.post(F_PLAIN)                 # 45 days old at the end
        self.at(T0 + 35 * DAY)
        self.post(F_UTF8)                          # 10 days old
        self.at(T0 + 44 * DAY)
        self.post(F_LF)                            # 1 day old
        self.at(T0 + 45 * DAY)

        out = self.ok("expire", "--older-than", "30d", "--dry-run").decode()
        self.assertIn("would expire 1 entry, 1 message, %d bytes" % len(plain), out)
        self.assertEqual(len(self.entries()), 4)

        out = self.ok("expire", "--older-than", "30d").decode()
        self.assertIn("expired 1 entry, 1 message, %d bytes" % len(plain), out)
        self.assertEqual({e["qid"] for e in self.entries("--status", "any")},
                         {"4XYZ789", "4LF0001"})

        out = self.ok("expire", "--older-than", "1w").decode()
        self.assertIn("expired 2 entries, 1 message, %d bytes" % len(body_of(F_UTF8)), out)
        self.assertEqual([e["qid"] for e in self.entries("--status", "any")], ["4LF0001"])

        # Nothing old enough: nothing removed, quiet stays quiet.
        rc, out, err = self.cli("expire", "--older-than", "2d", "--quiet")
        self.assertEqual((rc, out, err), (0, b"", ""))
        self.assertEqual(len(self.entries()), 1)
        # Released entries expire like the others.
        lf = self.entries()[0]["id"]
        self.ok("release", lf)
        self.ok("expire", "--older-than", "12h")
        self.assertEqual(self.entries("--status", "any"), [])
        self.assertEqual(self.stats()["bytes"], 0)

    def test_expire_per_recipient(self):
        # a@example.net gets three messages of 189, 130 and 333 bytes, one
        # an hour; bob and carol get one each.
        self.at(T0)
        self.post(F_PLAIN, rcpt=["a@example.net"], qid="A1")
        self.at(T0 + 3600)
        self.post(F_LF, rcpt=["a@example.net"], qid="A2")
        self.at(T0 + 7200)
        self.post(F_UTF8, rcpt=["a@example.net", "bob@example.net", "carol@example.net"],
                  qid="A3")

        out = self.ok("expire", "--max-bytes-per-rcpt", "500", "--dry-run").decode()
        self.assertIn("would expire 1 entry, 1 message, 189 bytes", out)
        out = self.ok("expire", "--max-bytes-per-rcpt", "500").decode()
        self.assertIn("expired 1 entry, 1 message, 189 bytes", out)
        self.assertEqual([e["qid"] for e in self.entries("--rcpt", "a@example.net")],
                         ["A3", "A2"])

        out = self.ok("expire", "--max-per-rcpt", "1").decode()
        self.assertIn("expired 1 entry, 1 message, 130 bytes", out)
        self.assertEqual([e["qid"] for e in self.entries("--rcpt", "a@example.net")], ["A3"])
        self.assertEqual(len(self.entries("--rcpt", "bob@example.net")), 1)
        self.assertEqual(len(self.entries("--rcpt", "carol@example.net")), 1)
        st = self.stats()
        self.assertEqual((st["entries"], st["messages"]), (3, 1))

    # ------------------------------------------------------------ stats

    def test_stats(self):
        self.at(T0)
        sizes = [len(self.post(n)) for n in (F_PLAIN, F_UTF8, F_BIG)]
        st = self.stats()
        self.assertEqual(st["entries"], 6)
        self.assertEqual(st["messages"], 3)
        self.assertEqual(st["bytes"], sum(sizes))
        self.assertEqual(st["by_status"], {"quarantined": 6, "released": 0, "deleted": 0})
        self.assertEqual(st["backend"], h.backend())
        self.ok("release", self.entry("carol@example.net")["id"])
        st = self.stats()
        self.assertEqual(st["by_status"]["released"], 1)
        self.assertEqual(st["by_status"]["quarantined"], 5)
        text = self.ok("stats").decode()
        self.assertRegex(text, r"(?m)^entries:\s+6$")
        self.assertRegex(text, r"(?m)^messages:\s+3$")
        self.assertRegex(text, r"(?m)^bytes:\s+%d " % sum(sizes))
        self.assertRegex(text, r"(?m)^released:\s+1$")

    # ------------------------------------------------------------ cron

    def test_cron_line_as_shipped(self):
        path = os.path.join(h.ROOT, "contrib", "cron.d", "rspamd-quarantine")
        with open(path) as f:
            jobs = [ln for ln in f.read().splitlines()
                    if ln.strip() and not ln.lstrip().startswith("#") and
                    not re.match(r"^\s*[A-Z_]+=", ln)]
        self.assertEqual(len(jobs), 1, jobs)
        fields = jobs[0].split(None, 6)
        self.assertEqual(len(fields), 7)
        self.assertEqual(fields[5], "_rspamd-quarantine")
        command = fields[6]
        self.assertIn("expire --older-than 30d", command)
        for token in ("/usr/bin/rspamd-quarantine", "/etc/rspamd-quarantine/quarantine.conf"):
            self.assertIn(token, command)
        command = command.replace("/usr/bin/rspamd-quarantine", h.CLI_BIN)
        command = command.replace("/etc/rspamd-quarantine/quarantine.conf", self.daemon_conf())

        self.at(T0)
        self.post(F_PLAIN)
        self.at(T0 + 20 * DAY)
        self.post(F_LF)
        self.at(T0 + 40 * DAY)
        p = subprocess.run(["/bin/sh", "-c", command], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual((p.stdout, p.stderr), (b"", b""))
        self.assertEqual([e["qid"] for e in self.entries("--status", "any")], ["4LF0001"])

    def daemon_conf(self):
        if self.daemon is None:
            self.make_daemon()
        return self.daemon.conf

    # ------------------------------------------------------------ errors

    def test_errors_not_found(self):
        self.at(T0)
        self.post(F_PLAIN)
        unknown = "fedcba9876543210fedcba98"
        for cmd in ("show", "cat", "release", "delete"):
            rc, out, err = self.cli(cmd, unknown)
            self.assertEqual(rc, 1, cmd)
            one_line_error(self, err, unknown)
            self.assertEqual(out, b"")
            rc, out, err = self.cli(cmd, "../../etc/passwd")
            self.assertEqual(rc, 1, cmd)
            one_line_error(self, err, "not an entry ID")
        self.assertEqual(len(self.entries()), 1)

    def test_errors_usage(self):
        self.make_daemon()
        e = "0123456789abcdef01234567"
        cases = [
            (["frobnicate"], "unknown command"),
            ([], "no command"),
            (["list", "--bogus"], "--bogus"),
            (["list", "-x"], "-x"),
            (["list", "--rcpt"], "needs an argument"),
            (["list", "--limit", "0"], "--limit"),
            (["list", "--limit", "ten"], "--limit"),
            (["list", "--since", "yesterday-ish"], "--since"),
            (["list", "--status", "lost"], "lost"),
            (["list", "extra"], "extra"),
            (["show"], "missing entry ID"),
            (["show", e, e], "one entry ID"),
            (["cat", "--json", e], "--json"),
            (["release"], "missing entry ID"),
            (["release", e, "--to"], "needs an argument"),
            (["delete"], "missing entry ID"),
            (["expire"], "at least one"),
            (["expire", "--older-than", "3x"], "3x"),
            (["expire", "--older-than", "-1d"], "-1d"),
            (["expire", "--older-than", ""], "--older-than"),
            (["expire", "--max-per-rcpt", "0"], "--max-per-rcpt"),
            (["expire", "--max-bytes-per-rcpt", "12Q"], "12Q"),
            (["stats", "--verbose"], "--verbose"),
            (["hash-password", "extra"], "extra"),
        ]
        for args, word in cases:
            rc, out, err = self.cli(*args)
            self.assertEqual(rc, 2, (args, err))
            one_line_error(self, err, word)
        # Nothing was changed by any of them.
        rc, out, err = h.cli(self.daemon.conf, "list", "--json")
        self.assertEqual((rc, out), (0, b"[]\n"))

    def test_errors_config(self):
        missing = os.path.join(self.tmp, "missing.conf")
        rc, _, err = h.cli(missing, "list")
        self.assertEqual(rc, 2)
        one_line_error(self, err, "missing.conf")
        bad = os.path.join(self.tmp, "bad.conf")
        with open(bad, "w") as f:
            f.write("backend = file\nfile_root = %s\nno_such_key = 1\n" % self.tmp)
        rc, _, err = h.cli(bad, "stats")
        self.assertEqual(rc, 2)
        one_line_error(self, err, "no_such_key")
        with open(bad, "w") as f:
            f.write("backend = carrier-pigeon\n")
        rc, _, err = h.cli(bad, "stats")
        self.assertEqual(rc, 2)
        one_line_error(self, err, "carrier-pigeon")

    def test_errors_unreachable_database(self):
        conf = os.path.join(self.tmp, "pg.conf")
        with open(conf, "w") as f:
            f.write("backend = pgsql\n"
                    "pgsql_conninfo = \"host=127.0.0.1 port=%d dbname=nothing "
                    "user=nobody connect_timeout=3\"\n" % h.free_port())
            if h.IS_ROOT:
                f.write("user = nobody\n")
        for args in (["list"], ["list", "--json"], ["stats"], ["show", "0" * 24],
                     ["expire", "--older-than", "1d"], ["delete", "0" * 24]):
            rc, out, err = h.cli(conf, *args)
            self.assertEqual(rc, 1, (args, err))
            one_line_error(self, err, "connect")
            self.assertEqual(out, b"", args)

    def test_help_and_version(self):
        p = subprocess.run([h.CLI_BIN, "--help"], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        for cmd in ("list", "show", "cat", "release", "delete", "expire", "stats",
                    "hash-password"):
            self.assertIn(cmd.encode(), p.stdout)
        p = subprocess.run([h.CLI_BIN, "-V"], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout.decode(), r"^rspamd-quarantine \d+\.\d+\.\d+\n$")
        p = subprocess.run([h.CLI_BIN, "list", "--help"], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"--symbol", p.stdout)

    # ------------------------------------------------------------ hash-password

    def test_hash_password_works_for_ingest(self):
        p = subprocess.run([h.CLI_BIN, "hash-password"], input=b"s3cret pass\n",
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        hashed = p.stdout.decode()
        self.assertRegex(hashed, r"^\$[^\s]+\n$")
        p2 = subprocess.run([h.CLI_BIN, "hash-password"], input=b"s3cret pass\n",
                            capture_output=True, timeout=30)
        self.assertNotEqual(p2.stdout, p.stdout, "no salt?")
        for empty in (b"", b"\n"):
            p3 = subprocess.run([h.CLI_BIN, "hash-password"], input=empty,
                                capture_output=True, timeout=30)
            self.assertNotEqual(p3.returncode, 0)
            one_line_error(self, p3.stderr.decode(), "empty password")
        # The daemon accepts the fixture's credentials with this hash.
        self.make_daemon({"auth_user": "rspamd", "auth_password_hash": hashed.strip()})
        self.at(T0)
        self.post(F_AUTH)
        self.assertEqual(len(self.entries()), 1)
        env, body = h.meta_env(h.fixture_request(F_AUTH))
        env["HTTP_AUTHORIZATION"] = "Basic cnNwYW1kOndyb25n"  # rspamd:wrong
        status, _, _ = h.fcgi_post(self.daemon.socket, env, body)
        self.assertIn(status, (401, 403))
        self.assertEqual(len(self.entries()), 1)

    # ------------------------------------------------------------ files

    def test_store_ownership_stays_with_daemon_user(self):
        """As root, the tool works on the file store as the configured
        user: what it writes there belongs to that user."""
        if not h.IS_ROOT or h.backend() != "file":
            self.skipTest("needs root and the file store")
        self.at(T0)
        self.post(F_UTF8)
        self.ok("release", self.entry("bob@example.net")["id"])
        self.ok("delete", self.entry("carol@example.net")["id"])
        import pwd
        nobody = pwd.getpwnam(h.RUN_USER).pw_uid
        for d, dirs, files in os.walk(self.daemon.file_root):
            for n in dirs + files:
                st = os.lstat(os.path.join(d, n))
                self.assertEqual(st.st_uid, nobody, os.path.join(d, n))


if __name__ == "__main__":
    h.main()
