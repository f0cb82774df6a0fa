#!/usr/bin/env python3
"""test_process.py - the daemon as a process: SIGTERM in the middle of an
upload loses nothing and leaves nothing half-stored, a killed worker comes
back, SIGHUP re-reads the config (and survives a broken one), and `-t`
checks a config as `nginx -t` does.  File store."""

import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (DAEMON_BIN, Daemon, FcgiConn, Stack, build_request,  # noqa: E402
                     fixture_request, http_raw, meta_env, split_request)

F01 = "01-plain.default.http"
F02 = "02-utf8-two-rcpt-user-ipv6.default.http"


class ProcessCase(harness.ServerTestCase):
    tmp_prefix = "rq-process-"

    def stack(self, **kw):
        kw.setdefault("backend", "file")
        return super().stack(**kw)

    def daemon(self, **kw):
        kw.setdefault("backend", "file")
        return super().daemon(**kw)

    def assertGone(self, pids):
        for p in pids:
            self.assertFalse(harness._is_alive(p), "process %d still runs" % p)


class SignalTest(ProcessCase):
    def test_sigterm_during_upload_through_nginx(self):
        s = self.stack()
        method, path, headers, body = split_request(fixture_request(F01))
        big = body + b"X" * (4 << 20)
        hs = [(k, str(len(big)) if k.lower() == "content-length" else v) for k, v in headers]
        raw = build_request(method, path, hs, big)
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        self.addCleanup(c.close)
        c.sendall(raw[:len(raw) // 2])
        time.sleep(0.2)
        workers = s.daemon.worker_pids()
        self.assertEqual(s.daemon.stop(expect=0), 0)
        self.assertGone(workers)
        # nginx cannot hand the rest to anyone now
        try:
            c.sendall(raw[len(raw) // 2:])
            c.shutdown(socket.SHUT_WR)
            answer = c.recv(200)
        except OSError:
            answer = b""
        self.assertFalse(answer.startswith(b"HTTP/1.1 200"), answer)
        rc, out, err = harness.cli(s.daemon.conf, "list", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), b"[]")
        self.assertEqual(harness.store_leftovers(s.daemon.file_root), [])

    def test_sigterm_with_half_a_body_in_the_worker(self):
        d = self.daemon()
        env, body = meta_env(fixture_request(F01))
        big = body + b"X" * (2 << 20)
        env["CONTENT_LENGTH"] = str(len(big))
        c = FcgiConn(d.socket, timeout=20)
        self.addCleanup(c.close)
        c.begin(env)
        c.stdin(big[:len(big) // 2])
        time.sleep(0.2)
        workers = d.worker_pids()
        d.signal(signal.SIGTERM)
        time.sleep(0.3)
        c.close()  # the sender goes away: the upload can never complete
        try:
            d.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.fail("master did not exit after SIGTERM")
        self.assertEqual(d.stop(expect=0), 0)
        self.assertGone(workers)
        rc, out, err = d.cli("list", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), b"[]")
        self.assertEqual(harness.store_leftovers(d.file_root), [])

    def test_sigterm_lets_an_upload_in_flight_finish(self):
        d = self.daemon()
        env, body = meta_env(fixture_request(F02))
        c = FcgiConn(d.socket, timeout=20)
        self.addCleanup(c.close)
        c.begin(env)
        c.stdin(body[:100])
        time.sleep(0.2)
        workers = d.worker_pids()
        d.signal(signal.SIGTERM)
        time.sleep(0.3)
        c.stdin(body[100:])
        c.stdin_end()
        status, _, answer = c.response()
        self.assertEqual(status, 200, answer)
        self.assertEqual(d.stop(expect=0), 0)
        self.assertGone(workers)
        es = d.entries()
        self.assertEqual(sorted(e["rcpt"] for e in es), ["bob@example.net", "carol@example.net"])
        for e in es:
            rc, out, err = d.cli("cat", e["id"])
            self.assertEqual(out, body)
        self.assertEqual(harness.store_leftovers(d.file_root), [])

    def test_sigint_stops_like_sigterm(self):
        d = self.daemon()
        workers = d.wait_workers(2)
        d.signal(signal.SIGINT)
        d.proc.wait(15)
        self.assertEqual(d.proc.returncode, 0, d.log())
        self.assertGone(workers)
        d.proc = None

    def test_killed_worker_respawned(self):
        s = self.stack()
        old = s.daemon.wait_workers(2)
        os.kill(old[0], signal.SIGKILL)
        t0 = time.monotonic()
        now = s.daemon.wait_workers(2, timeout=1.0, exclude=(old[0],))
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertNotIn(old[0], now)
        self.assertIn(old[1], now)
        status, _, body = http_raw(s.port, fixture_request(F01))
        self.assertEqual(status, 200, body)
        # every worker, old or new, serves: enough requests to reach both
        for _ in range(6):
            status, _, body = http_raw(s.port, fixture_request(F02))
            self.assertEqual(status, 200, body)
        self.assertEqual(len(s.daemon.entries()), 3)


class ReloadTest(ProcessCase):
    def test_sighup_broken_config_keeps_serving(self):
        s = self.stack()
        before = s.daemon.wait_workers(2)
        with open(s.daemon.conf, "a") as f:
            f.write("no_such_key = 1\n")
        s.daemon.signal(signal.SIGHUP)
        time.sleep(1.0)
        self.assertIsNone(s.daemon.proc.poll(), "master exited on a broken config")
        self.assertIn("no_such_key", s.daemon.log())
        self.assertEqual(len(s.daemon.worker_pids()), 2)
        self.assertIn(s.daemon.proc.pid, [s.daemon.pid])
        status, _, body = http_raw(s.port, fixture_request(F01))
        self.assertEqual(status, 200, body)
        # the config fixed again for the CLI (it reads the same file)
        s.daemon.write_conf()
        self.assertEqual(len(s.daemon.entries()), 1)
        del before

    def test_sighup_new_worker_count(self):
        s = self.stack()
        old = s.daemon.wait_workers(2)
        s.daemon.workers = 3
        s.daemon.write_conf()
        s.daemon.signal(signal.SIGHUP)
        # Three of the new generation, counted apart from the old ones: while
        # the old workers are still going, the master's children can number
        # three with only one new among them.
        now = s.daemon.wait_workers(3, timeout=10, exclude=old)
        self.assertEqual(len(now), 3)
        # old workers go once they are idle
        end = time.monotonic() + 10
        while time.monotonic() < end and any(harness._is_alive(p) for p in old):
            time.sleep(0.05)
        self.assertEqual(sorted(s.daemon.worker_pids()), sorted(now))
        for _ in range(4):
            status, _, body = http_raw(s.port, fixture_request(F01))
            self.assertEqual(status, 200, body)


class ConfigCheckTest(ProcessCase):
    def check(self, path):
        p = subprocess.run([DAEMON_BIN, "-t", "-c", path], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    def test_good_config(self):
        d = Daemon(self.tmp, backend="file")
        rc, out = self.check(d.conf)
        self.assertEqual(rc, 0, out)

    def test_bad_config_names_file_and_line(self):
        d = Daemon(self.tmp, backend="file")
        lines = open(d.conf).read().splitlines()
        lines.insert(2, "workers = many")
        bad = os.path.join(self.tmp, "bad.conf")
        with open(bad, "w") as f:
            f.write("\n".join(lines) + "\n")
        rc, out = self.check(bad)
        self.assertEqual(rc, 1, out)
        self.assertIn("bad.conf", out)
        self.assertRegex(out, r"\b3\b", "line 3 named")
        self.assertIn("workers", out)

    def test_unknown_key(self):
        d = Daemon(self.tmp, backend="file")
        with open(d.conf, "a") as f:
            f.write("# comment\nbogus = 1\n")
        n = len(open(d.conf).read().splitlines())
        rc, out = self.check(d.conf)
        self.assertEqual(rc, 1, out)
        self.assertIn("bogus", out)
        self.assertRegex(out, r"\b%d\b" % n)

    def test_unknown_backend(self):
        d = Daemon(self.tmp, backend="file", extra_conf={"backend": "nosuch"})
        rc, out = self.check(d.conf)
        self.assertEqual(rc, 1, out)
        self.assertIn("nosuch", out)


if __name__ == "__main__":
    harness.main()
