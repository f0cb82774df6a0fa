#!/usr/bin/env python3
"""test_health.py - /health through the shipped nginx block, on both
stores whatever RQ_BACKEND says: 200 while the store takes writes; 503
with the reason (and Retry-After) when the file store's directories are
made unwritable or PostgreSQL is stopped or carries the wrong schema, and
200 again once that is undone; cheap enough to poll many times a second
without filling the log; GET and HEAD only."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def health(port):
    """(status, headers, parsed JSON body) of GET /health."""
    status, headers, body = h.post(port, "/health", b"", method="GET")
    try:
        doc = json.loads(body.decode())
    except ValueError:
        raise AssertionError("/health body is not JSON: %r" % body[:300])
    return status, headers, doc


def message_post(port, qid):
    method, _, headers, body = h.split_request(h.fixture_request("01-plain.default.http"))
    body = body.replace(b"Subject:", b"Subject: %s" % qid.encode(), 1)
    hs = [(k, str(len(body)) if k.lower() == "content-length" else
           (qid if k.lower() == "x-rspamd-qid" else v)) for k, v in headers]
    return h.http_raw(port, h.build_request(method, "/quarantine", hs, body))


class HealthCase(h.ServerTestCase):
    tmp_prefix = "rq-health-"

    def wait_health(self, port, want, timeout=15):
        """Polls until /health answers want; returns the last answer."""
        end = time.monotonic() + timeout
        while True:
            ans = health(port)
            if ans[0] == want or time.monotonic() > end:
                return ans
            time.sleep(0.1)

    def assertHealthy(self, port, backend, what):
        st, _, doc = self.wait_health(port, 200)
        self.assertEqual(st, 200, "%s: %r" % (what, doc))
        self.assertEqual(doc, {"status": "ok", "backend": backend}, what)

    def assertSick(self, port, words, what):
        st, hdrs, doc = self.wait_health(port, 503)
        self.assertEqual(st, 503, "%s: %r" % (what, doc))
        self.assertEqual(doc["status"], "unavailable", what)
        for w in words:
            self.assertIn(w, doc["error"], what)
        self.assertTrue(hdrs.get("retry-after", "").isdigit(), hdrs)
        return doc["error"]

    def test_file_store_unwritable_and_back(self):
        s = self.stack(backend="file")
        self.assertHealthy(s.port, "file", "fresh store")
        root = s.daemon.file_root
        for sub in ("tmp", "users", "ids"):
            d = os.path.join(root, sub)
            mode = os.stat(d).st_mode & 0o7777
            os.chmod(d, 0o500)
            try:
                why = self.assertSick(s.port, ["file store", sub], "%s read-only" % sub)
                self.assertIn(root, why)
                if sub == "tmp":
                    # What /health says is what a POST finds.
                    st = message_post(s.port, "HLTH1")[0]
                    self.assertEqual(st, 503)
            finally:
                os.chmod(d, mode)
            self.assertHealthy(s.port, "file", "%s writable again" % sub)
        self.assertEqual(message_post(s.port, "HLTH2")[0], 200)
        # A change is logged once per worker, not once per poll.
        for _ in range(20):
            health(s.port)
        log = s.daemon.log()
        self.assertLessEqual(log.count("does not take writes"), 3 * 2, log[-2000:])
        self.assertGreaterEqual(log.count("does not take writes"), 1)

    def test_pgsql_stopped_and_back(self):
        pg = h.pg_start(self.tmp)
        self.addCleanup(pg.stop)
        self.add_log("PostgreSQL log", pg.log)
        s = self.stack(backend="pgsql", pg=pg)
        self.assertHealthy(s.port, "pgsql", "running database")
        pg.stop()
        self.assertSick(s.port, ["PostgreSQL"], "stopped database")
        # Every worker sees it, not only the one that was asked first.
        for _ in range(6):
            self.assertEqual(health(s.port)[0], 503)
        pg.start_server()
        self.assertHealthy(s.port, "pgsql", "database back")
        for _ in range(6):
            ans = health(s.port)
            self.assertEqual(ans[0], 200, ans[2])
        self.assertEqual(message_post(s.port, "HLTHPG")[0], 200)

    def test_pgsql_wrong_schema_and_back(self):
        pg = h.shared_pg()
        s = self.stack(backend="pgsql", pg=pg)
        self.assertHealthy(s.port, "pgsql", "right schema")
        conninfo = s.daemon.conninfo
        dbname = [p.split("=", 1)[1] for p in conninfo.split() if p.startswith("dbname=")][0]
        old = pg.query("SELECT version FROM schema_version", dbname=dbname)[0][0]
        pg.psql("UPDATE schema_version SET version = 9999", dbname=dbname)
        try:
            self.assertSick(s.port, ["9999", "expected %s" % old], "wrong schema")
        finally:
            pg.psql("UPDATE schema_version SET version = %s" % old, dbname=dbname)
        self.assertHealthy(s.port, "pgsql", "schema put back")

    def test_cheap_methods_and_quiet(self):
        s = self.stack()
        t0 = time.monotonic()
        for _ in range(200):
            self.assertEqual(health(s.port)[0], 200)
        took = time.monotonic() - t0
        # Far below a second each, even on a busy shared machine.
        self.assertLess(took, 20, "200 polls took %.1f s" % took)
        self.assertNotIn("health:", s.daemon.log())
        st, hdrs, _ = h.post(s.port, "/health", b"x")
        self.assertEqual(st, 405)
        self.assertIn("HEAD", hdrs.get("allow", ""))
        self.assertEqual(h.post(s.port, "/health", b"", method="HEAD")[0], 200)
        self.assertEqual(s.daemon.entries(), [])


if __name__ == "__main__":
    h.main()
