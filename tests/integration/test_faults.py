#!/usr/bin/env python3
"""test_faults.py - the daemon under faults: a worker killed in the middle
of an upload, SIGTERM to the master under load, a full and a read-only
file system under the file store, PostgreSQL going away under load, and a
crafted FastCGI PARAMS record that makes libfcgi abort a worker.

The oracle throughout: every POST answered 200 has its entries, byte-exact
and with the right SHA-256; no entry exists without a 200; nothing is left
half-stored."""

import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

F01 = "01-plain.default.http"
F04 = "04-big-attachment-three-rcpt.default.http"


def request_for(tag, i, path="/default", pad=0):
    """A fixture 01 request made unique by its queue id and Subject (and
    optionally padded): (raw HTTP request, FastCGI params, body)."""
    method, _, headers, body = h.split_request(h.fixture_request(F01))
    qid = "%s%05d" % (tag, i)
    body = body.replace(b"Subject:", b"Subject: %s" % qid.encode(), 1)
    if pad:
        body += (b"padding line to make the body larger\r\n" * (pad // 38 + 1))[:pad]
    hs = []
    for k, v in headers:
        if k.lower() == "content-length":
            v = str(len(body))
        elif k.lower() == "x-rspamd-qid":
            v = qid
        hs.append((k, v))
    raw = h.build_request(method, path, hs, body)
    env, b = h.meta_env(raw)
    return qid, raw, env, b


class FaultCase(h.ServerTestCase):
    tmp_prefix = "rq-faults-"

    def check_oracle(self, daemon, ok, rcpt="bob@example.net", unknown=None):
        """ok: {qid: body} of the POSTs answered 200.  Every one is stored
        for rcpt byte-exact with the right SHA-256; nothing else is, but
        for the POSTs in unknown ({qid: body}): those whose COMMIT reached
        the database while the connection broke before its answer did,
        so that the daemon could not know (503: the retry finds them)."""
        es = daemon.entries()
        got = {}
        unknown = unknown or {}
        for e in es:
            self.assertTrue(e["qid"] in ok or e["qid"] in unknown,
                            "entry %s (qid %s) exists without a 200" % (e["id"], e["qid"]))
            self.assertNotIn(e["qid"], got, "qid %s stored twice" % e["qid"])
            got[e["qid"]] = e
        missing = sorted(set(ok) - set(got))
        self.assertEqual(missing, [], "POSTs answered 200 but not stored")
        ok = dict(ok)
        ok.update({q: unknown[q] for q in got if q in unknown})
        for qid, e in got.items():
            self.assertEqual(e["rcpt"], rcpt)
            rc, out, err = daemon.cli("show", e["id"], "--json")
            self.assertEqual(rc, 0, err)
            full = json.loads(out.decode())
            self.assertEqual(full["sha256"], hashlib.sha256(ok[qid]).hexdigest(), qid)
            self.assertEqual(int(full["size"]), len(ok[qid]), qid)
            rc, out, err = daemon.cli("cat", e["id"])
            self.assertEqual(rc, 0, err)
            self.assertEqual(out, ok[qid], "%s: stored bytes differ" % qid)


# ------------------------------------------------------------------ workers

class WorkerKillTest(FaultCase):
    def test_sigkill_in_the_middle_of_an_upload(self):
        d = self.daemon(backend="file", workers=2)
        workers = d.wait_workers(2)
        qid, _, env, body = request_for("KILL", 1, pad=2 << 20)
        c = h.FcgiConn(d.socket, timeout=10)
        self.addCleanup(c.close)
        c.begin(env)
        c.stdin(body[:len(body) // 2])
        tmpdir = os.path.join(d.file_root, "tmp")
        # The upload streams into tmp/<pid>.<n>.<hex>: its name says who holds it.
        names = h._wait_for(lambda: os.listdir(tmpdir), 5)
        self.assertEqual(len(names), 1, "no upload in tmp/: %r" % names)
        holder = int(names[0].split(".")[0])
        self.assertIn(holder, workers)
        os.kill(holder, signal.SIGKILL)
        t0 = time.monotonic()
        now = d.wait_workers(2, timeout=1.0, exclude=(holder,))
        self.assertLess(time.monotonic() - t0, 1.0, "worker not back within a second")
        self.assertNotIn(holder, now)
        # The sender learns that its request died: no answer, no 200.
        try:
            c.stdin(body[len(body) // 2:])
            c.stdin_end()
            answer = c.response()
        except (OSError, ConnectionError):
            answer = None
        self.assertIsNone(answer, "the killed worker's request was answered")
        # The respawned worker removed the dead one's upload.
        left = h._wait_for(lambda: not os.listdir(tmpdir), 1.0)
        self.assertTrue(left, "tmp/ still holds %r" % os.listdir(tmpdir))
        self.assertEqual(d.entries(), [])
        # The next request succeeds, stored whole.
        qid2, _, env2, body2 = request_for("KILL", 2)
        self.assertStatus(h.fcgi_post(d.socket, env2, body2), 200, "after the kill")
        self.check_oracle(d, {qid2: body2})
        self.assertEqual(h.store_leftovers(d.file_root), [])
        self.assertIn("killed by signal 9", d.log())

    def test_crafted_params_record(self):
        """PROTOCOL.md section 6: name and value lengths of 0x40000000 make
        Debian's libfcgi abort the worker that reads them.  The master
        respawns it and the daemon keeps serving, also when it happens
        again and again."""
        d = self.daemon(backend="file", workers=2)
        # Under AddressSanitizer libfcgi's huge malloc is reported before
        # the abort; that report is the expected death, nothing else is.
        d.libfcgi_aborts_expected = True
        ok = {}
        died = 0
        for round_ in range(3):
            before = d.wait_workers(2, timeout=5)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(d.socket)
            try:
                begin = struct.pack(">BBHHBB", 1, 1, 1, 8, 0, 0) + struct.pack(">HB5x", 1, 0)
                nv = struct.pack(">II", 0x40000000 | 0x80000000, 0x40000000 | 0x80000000)
                content = nv + b"A" * 64
                params = struct.pack(">BBHHBB", 1, 4, 1, len(content), 0, 0) + content
                s.sendall(begin + params)
                try:
                    answer = s.recv(4096)
                except OSError:
                    answer = b""
            finally:
                s.close()
            self.assertFalse(b"Status: 200" in answer, answer)
            after = h._wait_for(lambda: [p for p in before if not h._is_alive(p)], 2)
            if after:
                died += 1
                # respawned (with back-off after quick deaths: bounded)
                d.wait_workers(2, timeout=3, exclude=tuple(after))
            qid, _, env, body = request_for("PARAMS", round_)
            self.assertStatus(h.fcgi_post(d.socket, env, body), 200, "round %d" % round_)
            ok[qid] = body
        self.assertIsNone(d.proc.poll(), "the master died")
        self.assertEqual(died, 3, "expected libfcgi to abort the worker each time "
                         "(if the library is fixed, this test should say so)")
        self.check_oracle(d, ok)


# ------------------------------------------------------------------ master

class Load:
    """Threads POSTing unique messages through nginx, each stopping after
    n requests or when told; every result kept as (qid, body, status, t)."""

    def __init__(self, port, tag, threads=4, n=150, pad=0, timeout=30, pause=0.0):
        self.port = port
        self.tag = tag
        self.results = []
        self.raw = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.n = n
        self.pad = pad
        self.timeout = timeout
        self.pause = pause
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]

    def run(self, k):
        for i in range(self.n):
            if self.stop.is_set():
                return
            qid, raw, _, body = request_for("%s%d" % (self.tag, k), i, pad=self.pad)
            t = time.monotonic()
            try:
                status = h.http_raw(self.port, raw, timeout=self.timeout)[0]
            except (OSError, ValueError):
                status = -1
            with self.lock:
                self.raw[qid] = raw
                self.results.append((qid, body, status, t, time.monotonic()))
            if self.pause:
                time.sleep(self.pause)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout=60):
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def ok(self):
        return {q: b for q, b, s, _, _ in self.results if s == 200}

    def count(self):
        with self.lock:
            return len(self.results)


class MasterTermTest(FaultCase):
    def test_sigterm_under_load(self):
        s = self.stack(backend="file", workers=3)
        d = s.daemon
        workers = d.wait_workers(3)
        # 64 KB bodies, so that workers are caught inside requests
        load = Load(s.port, "TERM", threads=4, n=200, pad=64 << 10).start()
        self.assertTrue(h._wait_for(lambda: load.count() >= 20, 20), "load did not start")
        d.signal(signal.SIGTERM)
        try:
            d.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.fail("master did not exit within 20 s of SIGTERM")
        rc = d.proc.returncode
        d.proc = None
        load.stop.set()
        self.assertTrue(load.join(60), "load threads hang")
        self.assertEqual(rc, 0, d.log())
        for p in workers:
            self.assertTrue(h._wait_for(lambda: not h._is_alive(p), 2), "worker %d left" % p)
        self.assertEqual(h._children(d.pid), [])
        statuses = {}
        for _, _, st, _, _ in load.results:
            statuses[st] = statuses.get(st, 0) + 1
        self.assertGreater(statuses.get(200, 0), 10, statuses)
        # after the stop nginx finds nobody: 502, never anything else
        self.assertTrue(set(statuses) <= {200, 502}, statuses)
        self.check_oracle(d, load.ok())
        self.assertEqual(h.store_leftovers(d.file_root), [])
        self.assertNotIn(" status: 5", d.log(), "a request failed inside the daemon")


# ------------------------------------------------------------------ file system

def _mount(args):
    p = subprocess.run(["mount"] + args, capture_output=True, timeout=30)
    return p.returncode, p.stderr.decode("utf-8", "replace")


class FileSystemTest(FaultCase):
    """The store on its own small tmpfs (the tests run as root in CI)."""

    def setUp(self):
        super().setUp()
        if not h.IS_ROOT:
            self.skipTest("mounting a tmpfs needs root")

    def tmpfs_stack(self, size="2m"):
        d = h.Daemon(self.tmp, backend="file", workers=2)
        uid, gid, _ = h._run_ids()
        rc, err = _mount(["-t", "tmpfs", "-o", "size=%s,mode=0750,uid=%d,gid=%d"
                          % (size, uid, gid), "tmpfs", d.file_root])
        self.assertEqual(rc, 0, "mount tmpfs: " + err)
        self.addCleanup(lambda: subprocess.run(["umount", "-l", d.file_root],
                                               capture_output=True))
        self.add_log("daemon log", d.log)
        d.start()
        self.addCleanup(lambda: d.proc and d.stop())
        n = h.Nginx(self.tmp, d.socket, h.FIXTURE_PATHS).start()
        self.add_log("nginx log", n.log)
        self.addCleanup(n.stop)
        return d, n

    def fill(self, path, leave):
        """Writes a file until the file system has about `leave` bytes left."""
        st = os.statvfs(os.path.dirname(path))
        free = st.f_bavail * st.f_frsize
        with open(path, "wb") as f:
            try:
                f.write(b"\0" * max(0, free - leave))
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                pass

    def assert_503(self, resp, what):
        status, headers, body = resp
        self.assertEqual(status, 503, "%s: %r" % (what, body[:300]))
        self.assertGreater(int(headers.get("retry-after", "0")), 0, what)

    def test_full_file_system(self):
        d, n = self.tmpfs_stack("2m")
        ok = {}
        qid, raw, _, body = request_for("FULL", 0)
        self.assertStatus(h.http_raw(n.port, raw), 200, "before filling")
        ok[qid] = body
        filler = os.path.join(d.file_root, "filler")
        # Room for the small message but not for a 200 KB one
        self.fill(filler, 64 << 10)
        qid, raw, _, body = request_for("FULL", 1, pad=200 << 10)
        self.assert_503(h.http_raw(n.port, raw), "store full, 200 KB message")
        self.assertEqual(h.store_leftovers(d.file_root), [])
        # completely full: even the metadata has no room
        self.fill(filler + "2", 0)
        qid, raw, _, body = request_for("FULL", 2)
        self.assert_503(h.http_raw(n.port, raw), "store completely full")
        self.assertEqual(h.store_leftovers(d.file_root), [])
        self.check_oracle(d, ok)
        # room again: normal service, no restart
        pids = d.worker_pids()
        os.unlink(filler)
        os.unlink(filler + "2")
        for i in range(3, 6):
            qid, raw, _, body = request_for("FULL", i, pad=200 << 10)
            self.assertStatus(h.http_raw(n.port, raw), 200, "after making room")
            ok[qid] = body
        self.assertEqual(d.worker_pids(), pids)
        self.check_oracle(d, ok)
        self.assertEqual(h.store_leftovers(d.file_root), [])

    def test_read_only_store(self):
        d, n = self.tmpfs_stack("4m")
        ok = {}
        qid, raw, _, body = request_for("RO", 0)
        self.assertStatus(h.http_raw(n.port, raw), 200, "before")
        ok[qid] = body
        # An idle daemon holds nothing open for writing, so the store can be
        # remounted: the log's writer is closed by the checkpoint that finds
        # no new record, about a second after the last commit.
        deadline = time.monotonic() + 5
        while True:
            rc, err = _mount(["-o", "remount,ro", d.file_root])
            if rc == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(rc, 0, "remount ro of an idle store: " + err)
        try:
            for i in range(1, 3):
                qid, raw, _, body = request_for("RO", i)
                self.assert_503(h.http_raw(n.port, raw), "read-only store")
        finally:
            rc, err = _mount(["-o", "remount,rw", d.file_root])
        self.assertEqual(rc, 0, "remount rw: " + err)
        for i in range(3, 5):
            qid, raw, _, body = request_for("RO", i)
            self.assertStatus(h.http_raw(n.port, raw), 200, "writable again")
            ok[qid] = body
        self.check_oracle(d, ok)
        self.assertEqual(h.store_leftovers(d.file_root), [])


# ------------------------------------------------------------------ PostgreSQL

class PgsqlLoadTest(FaultCase):
    def test_terminate_and_restart_under_load(self):
        s = self.stack(backend="pgsql", workers=3)
        pg = s.pg
        pids = s.daemon.wait_workers(3)
        load = Load(s.port, "PG", threads=4, n=5000, pause=0.02).start()
        self.addCleanup(load.stop.set)
        self.assertTrue(h._wait_for(lambda: load.count() >= 20, 20), "load did not start")
        gaps = []
        for _ in range(2):
            time.sleep(0.3)
            t = time.monotonic()
            pg.terminate_backends()
            gaps.append((t, time.monotonic()))
        time.sleep(0.3)
        t = time.monotonic()
        pg.restart()
        gaps.append((t, time.monotonic()))
        time.sleep(0.3)
        t = time.monotonic()
        pg.restart(mode="immediate")
        gaps.append((t, time.monotonic()))
        time.sleep(1.0)
        load.stop.set()
        self.assertTrue(load.join(60), "load threads hang")
        # the load ran through every gap
        self.assertTrue(all(any(t0 > g1 for _, _, _, t0, _ in load.results) for _, g1 in gaps),
                        "the load ended before the last fault")
        in_gap = [st for _, _, st, t0, t1 in load.results
                  if any(t0 <= g1 and t1 >= g0 for g0, g1 in gaps)]
        sys.stderr.write("pgsql under load: %d requests, %d during the faults, statuses %r\n"
                         % (len(load.results), len(in_gap),
                            {x: [r[2] for r in load.results].count(x) for x in (200, 503)}))
        # a request counts as in a gap when it overlapped one (plus a
        # second for the workers to notice)
        grace = 1.0
        outside = [(q, st) for q, _, st, t0, t1 in load.results if st != 200 and not any(
            t0 <= g1 + grace and t1 >= g0 for g0, g1 in gaps)]
        self.assertEqual(outside, [], "failures outside the gaps")
        bad = [(q, st) for q, _, st, _, _ in load.results if st not in (200, 503)]
        self.assertEqual(bad, [], "only 200 or 503 while PostgreSQL goes away")
        # recovery without a daemon restart
        self.assertEqual(s.daemon.worker_pids(), pids, "workers were restarted")
        after = Load(s.port, "PGAFTER", threads=2, n=5).start()
        self.assertTrue(after.join(60))
        self.assertEqual(sorted(st for _, _, st, _, _ in after.results), [200] * 10)
        ok = load.ok()
        ok.update(after.ok())
        self.assertGreater(len(ok), 30)
        # 503s whose COMMIT was sent when the connection broke: stored or
        # not, the daemon cannot tell; the MTA's retry settles it.
        log = s.daemon.log()
        unknown = {q: b for q, b, st, _, _ in load.results
                   if st == 503 and re.search(r"qid %s, .*committing:" % q, log)}
        self.check_oracle(s.daemon, ok, unknown=unknown)
        # the retries: 200, and no entry twice
        for q in unknown:
            self.assertStatus(h.http_raw(s.port, load.raw[q]), 200, "retry of %s" % q)
        ok.update(unknown)
        self.check_oracle(s.daemon, ok)


if __name__ == "__main__":
    h.main()
