#!/usr/bin/env python3
"""test_pgsql_backend.py - what is particular to the PostgreSQL store,
against a private cluster (pgcluster.PgCluster) and the real daemon: the
schema version check and the upgrades from version 1, contents compressed
with lz4 in every partition, one transaction per POST (nothing half-stored
when it fails), recovery without a daemon restart after pg_terminate_backend,
after a server restart and after a connection lost in the middle of a
transaction, every 200 in the database with the right SHA-256, and
expire dropping whole day partitions.  The shared ingest and CLI suites
run against this backend too (RQ_BACKEND=pgsql)."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from pgcluster import PgCluster, SCHEMA  # noqa: E402

F01 = "01-plain.default.http"
F02 = "02-utf8-two-rcpt-user-ipv6.default.http"
F04 = "04-big-attachment-three-rcpt.default.http"
DAY = 86400
T0 = 1767225600  # 2026-01-01T00:00:00Z
# The last commit whose sql/schema.sql made schema version 1: the upgrade
# test rebuilds a version-1 database from it.
SCHEMA_V1_COMMIT = "535b931c90d492d5d42dc371853f7814957372a6"
UPGRADE_002 = os.path.join(h.ROOT, "sql", "upgrade", "002-contents-lz4.sql")
UPGRADE_003 = os.path.join(h.ROOT, "sql", "upgrade", "003-entries-message-index.sql")
UPGRADE_004 = os.path.join(h.ROOT, "sql", "upgrade", "004-entries-announced.sql")


def spam_body(n, tag=b""):
    """A text message of about n bytes that compresses well, as spam does."""
    head = (b"From: Spam <spam@example.com>\r\nTo: bob@example.net\r\n"
            b"Subject: offer " + tag + b"\r\nMessage-ID: <" + tag + b"@example.com>\r\n\r\n")
    line = b"Cheap watches and better offers for you, only today, click here now!\r\n"
    return head + line * (n // len(line) + 1)


class Db:
    """One database of the shared cluster, as Stack and Daemon want it."""

    def __init__(self, pg, name):
        self.pg = pg
        self.name = name

    def conninfo(self):
        return self.pg.conninfo(self.name)

    def query(self, sql):
        return self.pg.query(sql, self.name)

    def scalar(self, sql):
        rows = self.query(sql)
        return rows[0][0] if rows else None

    def stop(self):
        pass  # the cluster belongs to the test class


def body_of(name):
    return h.split_request(h.fixture_request(name))[3]


def with_meta(name, body=None, qid=None):
    """FastCGI parameters and body of a fixture, optionally with another
    body (a different message) or queue id."""
    env, b = h.meta_env(h.fixture_request(name))
    if body is not None:
        b = body
        env["CONTENT_LENGTH"] = str(len(b))
    if qid is not None:
        env["HTTP_X_RSPAMD_QID"] = qid
    return env, b


def lock_key(sha):
    """The advisory lock key the backend takes for a content."""
    v = int(sha[:16], 16)
    return v - (1 << 64) if v >= 1 << 63 else v


class PgsqlCase(h.ServerTestCase):
    tmp_prefix = "rq-pgsql-"
    _n = 0

    @classmethod
    def setUpClass(cls):
        cls._dir_cm = h.tempdir("rq-pgsql-cluster-")
        d = cls._dir_cm.__enter__()
        cls.pg = PgCluster(os.path.join(d, "pg"), dbname="postgres", schema=None)
        try:
            cls.pg.initdb()
            cls.pg.start_server()
        except BaseException:
            cls.pg.stop()
            cls._dir_cm.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()
        cls._dir_cm.__exit__(None, None, None)

    def setUp(self):
        super().setUp()
        self._env = os.environ.get("RSPAMD_QUARANTINE_NOW")
        if not self.pg._server_running():
            self.pg.start_server()
        self.add_log("PostgreSQL log", lambda: self.pg.log()[-4000:])

    def tearDown(self):
        if self._env is None:
            os.environ.pop("RSPAMD_QUARANTINE_NOW", None)
        else:
            os.environ["RSPAMD_QUARANTINE_NOW"] = self._env
        super().tearDown()

    def new_db(self, schema=True):
        PgsqlCase._n += 1
        name = "q%d_%d" % (os.getpid(), PgsqlCase._n)
        self.pg.psql("CREATE DATABASE %s;" % name, dbname="postgres")
        if schema:
            self.pg.apply_file(SCHEMA, dbname=name)
        return Db(self.pg, name)

    def hold_advisory_lock(self, db, key):
        """Holds advisory lock key from another session (a psql that
        sleeps), so that a put needing it waits; released at cleanup."""
        holder = subprocess.Popen(
            [self.pg._bin("psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(self.pg.port),
             "-U", "postgres", "-d", db.name, "-c",
             "SELECT pg_advisory_lock(%d); SELECT pg_sleep(60);" % key],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: holder.poll() is None and holder.kill())
        self.assertTrue(h._wait_for(lambda: db.scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == "1", 10))
        return holder

    def stack(self, **kw):
        """A Stack on a fresh database of the cluster, and that database."""
        s = super().stack(backend="pgsql", pg=self.pg, **kw)
        info = dict(kv.split("=", 1) for kv in s.daemon.conninfo.split())
        return s, Db(self.pg, info["dbname"])

    def pg_daemon(self, db, workers=1, **kw):
        return self.daemon(backend="pgsql", conninfo=db.conninfo(), workers=workers, **kw)

    def assert_stored(self, db, body, rcpts):
        """body is stored once (byte-exact, right SHA-256) and has exactly
        one entry per recipient in rcpts."""
        sha = hashlib.sha256(body).hexdigest()
        rows = db.query("SELECT c.sha256, encode(sha256(c.content), 'hex'), c.size,"
                        " encode(c.content, 'hex') FROM contents c WHERE c.sha256 = '%s'" % sha)
        self.assertEqual(len(rows), 1, "content %s stored %d times" % (sha, len(rows)))
        self.assertEqual(rows[0][1], sha, "stored bytes have another SHA-256")
        self.assertEqual(int(rows[0][2]), len(body))
        self.assertEqual(bytes.fromhex(rows[0][3]), body)
        got = db.query("SELECT e.rcpt FROM entries e JOIN messages m ON m.id = e.message_id"
                       " AND m.received_day = e.received_day WHERE m.sha256 = '%s'"
                       " ORDER BY 1" % sha)
        self.assertEqual([r[0] for r in got], sorted(rcpts))

    def counts(self, db):
        return tuple(int(db.scalar("SELECT count(*) FROM %s" % t))
                     for t in ("contents", "messages", "entries"))

    # ------------------------------------------------------------ schema

    def test_schema_version_refused(self):
        db = self.new_db(schema=False)
        d = h.Daemon(self.tmp, "pgsql", db.conninfo(), workers=1)
        rc, _, err = d.cli("list")
        self.assertNotEqual(rc, 0)
        self.assertIn("database schema version none, expected 4: apply sql/schema.sql", err)

        db2 = self.new_db()
        db2.query("UPDATE schema_version SET version = 99")
        d2 = h.Daemon(self.tmp, "pgsql", db2.conninfo(), workers=1, name="daemon2")
        rc, _, err = d2.cli("list")
        self.assertNotEqual(rc, 0)
        self.assertIn("database schema version 99, expected 4: the database is newer than"
                      " this program", err)
        # The daemon's workers refuse to serve and say why.
        self.add_log("daemon2 log", d2.log)
        self.addCleanup(d2._kill)
        try:
            d2.start(timeout=3)
        except RuntimeError:
            pass  # no worker stays up: as intended
        self.assertTrue(h._wait_for(
            lambda: "expected 4: the database is newer" in d2.log(), 10), d2.log())
        d2._kill()

    def test_partitions_have_indexes(self):
        db = self.new_db()
        db.query("SELECT rq_ensure_partitions('2026-03-01')")
        names = {r[0] for r in db.query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'entries_20260301'")}
        self.assertEqual(len(names), 4, names)  # primary key, rcpt, received, message
        self.assertEqual(db.scalar("SELECT rq_ensure_partitions('2026-03-01')"), "0")
        self.assertEqual(db.scalar("SELECT count(*) FROM pg_inherits WHERE inhparent ="
                                   " 'messages'::regclass"), "2")  # the day and the next

    def compression(self, db):
        """{table: attcompression of contents.content} for contents and
        every table made from it."""
        return dict(db.query(
            "SELECT c.relname, a.attcompression FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE a.attname = 'content' AND c.relname ~ '^contents(_[0-9]{8})?$'"))

    def test_contents_lz4(self):
        s, db = self.stack()
        db.query("SELECT rq_ensure_partitions('2026-03-01')")
        comp = self.compression(db)
        self.assertIn("contents_20260301", comp)
        self.assertIn("contents_20260302", comp)
        self.assertEqual(set(comp.values()), {"l"}, comp)
        # a stored message is compressed with lz4, and reads back whole
        body = spam_body(64 * 1024, b"lz4")
        env, b = with_meta(F01, body=body, qid="LZ4")
        self.assertStatus(h.fcgi_post(s.daemon.socket, env, b), 200)
        self.assert_stored(db, body, ["bob@example.net"])
        sha = hashlib.sha256(body).hexdigest()
        self.assertEqual(db.scalar("SELECT pg_column_compression(content) FROM contents"
                                   " WHERE sha256 = '%s'" % sha), "lz4")
        self.assertEqual(set(self.compression(db).values()), {"l"})

    def schema_v1(self):
        """sql/schema.sql as version 1 shipped it, in a file."""
        p = subprocess.run(["git", "-C", h.ROOT, "show", SCHEMA_V1_COMMIT + ":sql/schema.sql"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            self.skipTest("no git history to rebuild schema version 1 from: %s"
                          % p.stderr.decode(errors="replace").strip())
        self.assertIn(b"VALUES (1);", p.stdout)
        path = os.path.join(self.tmp, "schema-v1.sql")
        with open(path, "wb") as f:
            f.write(p.stdout)
        return path

    def message_index(self, db):
        """{table: definition of its index by message} for entries and its
        partitions."""
        return dict((r[0], r[1].split(" USING ")[1]) for r in db.query(
            "SELECT tablename, indexdef FROM pg_indexes WHERE tablename ~ '^entries'"
            " AND indexdef ~ 'message_id'"))

    def test_upgrade(self):
        db = self.new_db(schema=False)
        self.pg.apply_file(self.schema_v1(), dbname=db.name)
        # a version-1 store with a day's partitions and a stored content
        db.query("SELECT rq_ensure_partitions('2026-01-01')")
        old = spam_body(20000, b"old")
        db.query("INSERT INTO contents VALUES ('%s', '2026-01-01', %d, '\\x%s')"
                 % (hashlib.sha256(old).hexdigest(), len(old), old.hex()))
        self.assertEqual(set(self.compression(db).values()), {""})
        d = h.Daemon(self.tmp, "pgsql", db.conninfo(), workers=1)
        self.add_log("daemon log", d.log)
        self.addCleanup(lambda: d.proc and d.stop(expect=None))
        rc, _, err = d.cli("list")
        self.assertNotEqual(rc, 0)
        self.assertIn("database schema version 1, expected 4: apply"
                      " sql/upgrade/002-*.sql to 004-*.sql in order", err)
        self.assertEqual(set(self.message_index(db).values()),
                         {"btree (message_id, received_day)"})
        with self.assertRaises(RuntimeError) as cm:
            self.pg.apply_file(UPGRADE_003, dbname=db.name)
        self.assertIn("takes schema version 2 to 3; the database has 1", str(cm.exception))

        self.pg.apply_file(UPGRADE_002, dbname=db.name)
        self.assertEqual(db.scalar("SELECT version FROM schema_version"), "2")
        comp = self.compression(db)
        self.assertEqual(sorted(comp), ["contents", "contents_20260101", "contents_20260102"])
        self.assertEqual(set(comp.values()), {"l"}, comp)
        # the old row keeps its compression and its bytes
        self.assertEqual(db.query("SELECT pg_column_compression(content),"
                                  " encode(sha256(content), 'hex') FROM contents"),
                         [["pglz", hashlib.sha256(old).hexdigest()]])
        # a second run refuses: it only takes version 1
        with self.assertRaises(RuntimeError) as cm:
            self.pg.apply_file(UPGRADE_002, dbname=db.name)
        self.assertIn("takes schema version 1 to 2; the database has 2", str(cm.exception))
        rc, _, err = d.cli("list")
        self.assertNotEqual(rc, 0)
        self.assertIn("database schema version 2, expected 4: apply"
                      " sql/upgrade/003-*.sql to 004-*.sql in order", err)

        self.pg.apply_file(UPGRADE_003, dbname=db.name)
        self.assertEqual(db.scalar("SELECT version FROM schema_version"), "3")
        rc, _, err = d.cli("list")
        self.assertIn("database schema version 3, expected 4: apply"
                      " sql/upgrade/004-*.sql", err)
        self.pg.apply_file(UPGRADE_004, dbname=db.name)
        self.assertEqual(db.scalar("SELECT version FROM schema_version"), "4")
        self.assertEqual(db.scalar("SELECT count(*) FROM entries WHERE announced_at IS NULL"),
                         "0")
        with self.assertRaises(RuntimeError) as cm:
            self.pg.apply_file(UPGRADE_004, dbname=db.name)
        self.assertIn("takes schema version 3 to 4; the database has 4", str(cm.exception))
        idx = self.message_index(db)
        self.assertEqual(sorted(idx), ["entries", "entries_20260101", "entries_20260102"])
        self.assertEqual(set(idx.values()), {"btree (message_id)"}, idx)

        # the daemon runs on it: into the upgraded partition, and into the
        # partitions of a later day that the new function creates
        for t, tag in ((T0 + 3600, b"day1"), (T0 + 5 * DAY + 3600, b"day6")):
            os.environ["RSPAMD_QUARANTINE_NOW"] = str(t)
            if d.proc is not None:
                d.stop()
            d.start()
            body = spam_body(64 * 1024, tag)
            env, b = with_meta(F01, body=body, qid="UP" + tag.decode())
            self.assertStatus(h.fcgi_post(d.socket, env, b), 200)
            self.assert_stored(db, body, ["bob@example.net"])
            self.assertEqual(db.scalar(
                "SELECT pg_column_compression(content) FROM contents WHERE sha256 = '%s'"
                % hashlib.sha256(body).hexdigest()), "lz4")
        d.stop()
        comp = self.compression(db)
        self.assertIn("contents_20260106", comp)
        self.assertEqual(set(comp.values()), {"l"}, comp)
        self.assertEqual(set(self.message_index(db).values()), {"btree (message_id)"})
        rc, out, err = d.cli("list", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(json.loads(out.decode())), 2)

    # ------------------------------------------------------------ ingest

    def test_every_200_stored_once_with_sha256(self):
        s, db = self.stack()
        for name in h.fixture_requests(".default.http"):
            self.assertStatus(h.http_raw(s.port, h.fixture_request(name)), 200, name)
        for name in h.fixture_requests(".json.http"):
            h.http_raw(s.port, h.fixture_request(name))  # 200 or 400 (no message)
        self.assertEqual(int(db.scalar("SELECT count(*) FROM contents")),
                         len(h.fixture_requests(".default.http")) - 1)  # 06 repeats 01
        # every stored content hashes to its name; nothing is stored twice
        bad = db.query("SELECT sha256 FROM contents WHERE encode(sha256(content), 'hex')"
                       " <> sha256")
        self.assertEqual(bad, [])
        # 06 carries 01's message under another queue id: one content,
        # two messages, an entry each
        self.assert_stored(db, body_of(F01), ["bob@example.net"] * 2)
        self.assertEqual(db.scalar("SELECT count(DISTINCT qid) FROM messages WHERE sha256 = '%s'"
                                   % hashlib.sha256(body_of(F01)).hexdigest()), "2")
        self.assert_stored(db, body_of(F04), ["a@example.net", "b@example.net",
                                              "c@example.org"])
        # metadata columns as an operator queries them
        row = db.query("SELECT host(ip), smtp_user, jsonb_typeof(symbols), jsonb_array_length(rcpts)"
                       " FROM messages WHERE hdr_subject = 'Grüße aus München'")
        self.assertTrue(row, "fixture 02's decoded subject not found")
        self.assertEqual(row[0][0], "2001:db8::25")  # inet
        self.assertEqual(row[0][2], "array")
        self.assertEqual(row[0][3], "2")
        # fixture 03 has no envelope: its address is unknown, NULL
        row = db.query("SELECT ip IS NULL FROM messages"
                       " WHERE hdr_subject = 'Win money äöü raw latin1'")
        self.assertTrue(row, "fixture 03's decoded subject not found")
        self.assertTrue(all(r[0] == "t" for r in row))

    def test_retry_adds_nothing(self):
        # F02 is small enough to go with the rest of the put in one
        # round trip; F04 (800 KB) goes by COPY, only when needed
        for name, n in ((F02, 2), (F04, 3)):
            s, db = self.stack()
            raw = h.fixture_request(name)
            self.assertStatus(h.http_raw(s.port, raw), 200)
            first = self.counts(db)
            self.assertEqual(first, (1, 1, n))
            for _ in range(3):
                self.assertStatus(h.http_raw(s.port, raw), 200, "retry")
            self.assertEqual(self.counts(db), first)
            # Same bytes, another queue id: new entries, the content once.
            env, body = with_meta(name, qid="OTHERQID1")
            self.assertStatus(h.fcgi_post(s.daemon.socket, env, body), 200)
            self.assertEqual(self.counts(db), (1, 2, 2 * n))
            self.assertEqual(db.scalar("SELECT count(DISTINCT qid) FROM messages"), "2")
            self.assert_stored(db, body, [e["rcpt"] for e in s.daemon.entries()])
            s.daemon.stop()

    def test_failed_transaction_leaves_nothing(self):
        s, db = self.stack()
        # The third recipient's row fails after content, message and two
        # entries went in: the whole POST must vanish.
        db.query("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
                 " BEGIN IF NEW.rcpt = 'c@example.org' THEN"
                 " RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$;"
                 " CREATE TRIGGER refuse BEFORE INSERT ON entries FOR EACH ROW"
                 " EXECUTE FUNCTION refuse();")
        raw = h.fixture_request(F04)
        status, _, answer = h.http_raw(s.port, raw)
        self.assertNotEqual(status, 200, answer)
        self.assertGreaterEqual(status, 500, answer)
        self.assertEqual(self.counts(db), (0, 0, 0))
        db.query("DROP TRIGGER refuse ON entries")
        self.assertStatus(h.http_raw(s.port, raw), 200, "after the fault is gone")
        rcpts = [e["rcpt"] for e in s.daemon.entries()]
        self.assertEqual(len(rcpts), 3)
        self.assert_stored(db, body_of(F04), rcpts)

    def test_recipients_stored_as_sent(self):
        # the entries of a POST travel as one array: recipients that look
        # like array syntax, quotes, backslashes or NULL stay themselves
        s, db = self.stack()
        rcpts = ['"a,b\\"c{d}"@example.net', "NULL@example.net", "NULL",
                 "x\\y@example.net", "plain@example.net"]
        env, body = with_meta(F01, qid="ARRAY1")
        env["HTTP_X_RSPAMD_RCPT"] = json.dumps(rcpts)
        self.assertStatus(h.fcgi_post(s.daemon.socket, env, body), 200)
        got = sorted(r[0] for r in db.query("SELECT rcpt FROM entries"))
        self.assertEqual(got, sorted(rcpts))
        self.assertEqual(self.counts(db), (1, 1, 5))
        # the retry finds every one of them
        self.assertStatus(h.fcgi_post(s.daemon.socket, env, body), 200)
        self.assertEqual(self.counts(db), (1, 1, 5))

    def test_failures_keep_the_connection(self):
        # A statement failing inside the put's first round trip (the lock,
        # past lock_timeout) or its last (a trigger refusing an entry)
        # rolls back and answers 503, and the worker goes on over the
        # same connection.
        s, db = self.stack(workers=1)
        db.query("ALTER DATABASE %s SET lock_timeout = '300ms'" % db.name)
        s.daemon.stop()
        s.daemon.start()
        self.assertStatus(h.http_raw(s.port, h.fixture_request(F02)), 200)
        backend_sql = ("SELECT pid FROM pg_stat_activity"
                       " WHERE application_name = 'rspamd-quarantine'")
        backend = db.query(backend_sql)
        self.assertEqual(len(backend), 1, backend)
        body = body_of(F01)
        key = lock_key(hashlib.sha256(body).hexdigest())
        holder = self.hold_advisory_lock(db, key)
        status, headers, answer = h.http_raw(s.port, h.fixture_request(F01))
        self.assertEqual(status, 503, answer)
        self.assertIn("retry-after", headers)
        self.assertIn("locking", s.daemon.log())
        db.query("SELECT pg_terminate_backend(pid) FROM pg_locks"
                 " WHERE locktype = 'advisory' AND granted")
        holder.wait(10)
        self.assertStatus(h.http_raw(s.port, h.fixture_request(F01)), 200, "lock released")

        db.query("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
                 " BEGIN RAISE EXCEPTION 'refused for the test'; END $$;"
                 " CREATE TRIGGER refuse BEFORE INSERT ON entries FOR EACH ROW"
                 " EXECUTE FUNCTION refuse();")
        # F04 goes by COPY, F02 (under another queue id) in one round trip
        env, body = with_meta(F02, qid="OTHERQID2")
        posts = [lambda: h.http_raw(s.port, h.fixture_request(F04)),
                 lambda: h.fcgi_post(s.daemon.socket, env, body)]
        for post in posts:
            status, _, answer = post()
            self.assertGreaterEqual(status, 500, answer)
            self.assertIn(b"refused for the test", answer)
        self.assertEqual(self.counts(db), (2, 2, 3))
        db.query("DROP TRIGGER refuse ON entries")
        for post in posts:
            self.assertStatus(post(), 200, "trigger gone")
        self.assertEqual(self.counts(db), (3, 4, 8))
        # one connection all along, left idle (not in a transaction)
        self.assertEqual(db.query(backend_sql), backend)
        self.assertNotIn("reconnecting", s.daemon.log())
        self.assertEqual(db.scalar("SELECT state FROM pg_stat_activity"
                                   " WHERE application_name = 'rspamd-quarantine'"), "idle")

    def test_lookup_probes_the_primary_key(self):
        # The put's plan is made once per connection and kept until the
        # next analyze: made on a small, just analyzed day partition, it
        # must still probe the entries' primary key rather than read the
        # partition (a seq scan, or a scan of another index by day).
        s, db = self.stack(workers=1)
        db.query("ALTER DATABASE %s SET session_preload_libraries = 'auto_explain';"
                 " ALTER DATABASE %s SET auto_explain.log_min_duration = 0"
                 % (db.name, db.name))
        s.daemon.stop()
        s.daemon.start()
        rcpts = ["r%d@example.net" % i for i in range(5)]

        def post(tag):
            body = body_of(F01).replace(b"Subject:", b"Subject: " + tag, 1)
            env, b = with_meta(F01, body=body, qid="PLAN" + tag.decode())
            env["HTTP_X_RSPAMD_RCPT"] = json.dumps(rcpts)
            self.assertStatus(h.fcgi_post(s.daemon.socket, env, b), 200)

        for i in range(8):
            post(b"a%d" % i)
        db.query("ANALYZE entries")
        mark = len(self.pg.log())
        for i in range(8):
            post(b"b%d" % i)
        plans = [p for p in self.pg.log()[mark:].split("LOG:  duration:")
                 if "WITH n AS MATERIALIZED" in p]
        self.assertEqual(len(plans), 8, self.pg.log()[mark:][-3000:])
        for plan in plans:
            scans = [line.strip() for line in plan.splitlines() if "Scan" in line
                     and "entries_" in line]
            self.assertTrue(scans, plan)
            for line in scans:
                self.assertIn("_pkey", line, plan)
        self.assertEqual(self.counts(db), (16, 16, 80))

    # ------------------------------------------------------------ recovery

    def test_terminate_backends(self):
        s, db = self.stack(workers=2)
        pids = s.daemon.worker_pids()
        bodies = []
        for i in range(12):
            if i == 4 or i == 8:
                self.pg.terminate_backends()
            body = body_of(F01).replace(b"Subject:", b"Subject: %d" % i, 1)
            env, b = with_meta(F01, body=body, qid="TERM%d" % i)
            self.assertStatus(h.fcgi_post(s.daemon.socket, env, b), 200, "post %d" % i)
            bodies.append(body)
        self.assertEqual(s.daemon.worker_pids(), pids, "workers were restarted")
        for b in bodies:
            self.assert_stored(db, b, ["bob@example.net"])

    def test_server_restart(self):
        s, db = self.stack(workers=2)
        pids = s.daemon.worker_pids()
        ok = []

        def send(i):
            body = body_of(F01).replace(b"Subject:", b"Subject: r%d" % i, 1)
            env, b = with_meta(F01, body=body, qid="RESTART%d" % i)
            status, headers, answer = h.fcgi_post(s.daemon.socket, env, b)
            if status == 200:
                ok.append(body)
            return status, headers, answer

        for i in range(3):
            self.assertStatus(send(i), 200)
        self.pg.stop()
        for i in range(3, 7):
            status, headers, answer = send(i)
            self.assertEqual(status, 503, answer)
            self.assertGreater(int(headers.get("retry-after", 0)), 0)
        self.pg.start_server()
        for i in range(7, 13):
            self.assertStatus(send(i), 200, "after the restart")
        # an immediate shutdown (a crash, as far as the data is concerned)
        self.pg.restart(mode="immediate")
        for i in range(13, 17):
            self.assertStatus(send(i), 200, "after the crash restart")
        self.assertEqual(s.daemon.worker_pids(), pids, "workers were restarted")
        self.assertEqual(len(ok), 13)
        for b in ok:
            self.assert_stored(db, b, ["bob@example.net"])
        self.assertEqual(int(db.scalar("SELECT count(*) FROM entries")), 13)

    def test_connection_lost_mid_transaction(self):
        s, db = self.stack(workers=1)
        # warm up: the worker's connection exists and is idle
        self.assertStatus(h.http_raw(s.port, h.fixture_request(F02)), 200)
        body = body_of(F01)
        key = lock_key(hashlib.sha256(body).hexdigest())
        # Hold the content's advisory lock so that the POST stops inside
        # its transaction; then cut its connection.
        holder = self.hold_advisory_lock(db, key)
        res = {}
        t = threading.Thread(target=lambda: res.setdefault(
            "r", h.http_raw(s.port, h.fixture_request(F01))))
        t.start()
        waiting = h._wait_for(lambda: db.scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            == "1", 10)
        self.assertTrue(waiting, "the POST never waited for the lock")
        db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                 " WHERE application_name = 'rspamd-quarantine'")
        t.join(30)
        # the holder's backend sleeps on: end it, and its lock with it
        db.query("SELECT pg_terminate_backend(pid) FROM pg_locks"
                 " WHERE locktype = 'advisory' AND granted")
        holder.wait(10)
        status, headers, answer = res["r"]
        self.assertEqual(status, 503, answer)
        self.assertIn("retry-after", headers)
        self.assertEqual(db.scalar("SELECT count(*) FROM messages WHERE sha256 = '%s'"
                                   % hashlib.sha256(body).hexdigest()), "0")
        self.assertStatus(h.http_raw(s.port, h.fixture_request(F01)), 200, "the retry")
        self.assert_stored(db, body, ["bob@example.net"])

    def test_commit_outcome_unknown(self):
        # The server dies while the put's pipeline, COMMIT included, is
        # under way and before it answered anything: the daemon cannot
        # know whether the POST is stored.  The 503 must say "committing"
        # (the fault tests' oracle allows such a POST to be stored), even
        # when the attempt made at once on a new connection fails too.
        s, db = self.stack(workers=1)
        self.assertStatus(h.http_raw(s.port, h.fixture_request(F02)), 200)  # warm
        db.query("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$"
                 " BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$;"
                 " CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON entries"
                 " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow();")
        res = {}
        t = threading.Thread(target=lambda: res.setdefault(
            "r", h.http_raw(s.port, h.fixture_request(F01))))
        t.start()
        sleeping = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'" \
                   " AND application_name = 'rspamd-quarantine'"
        self.assertTrue(h._wait_for(lambda: db.query(sleeping), 10), "COMMIT never ran")
        pid = int(db.query(sleeping)[0][0])
        os.kill(pid, 9)  # a crash: the server restarts, dropping every connection
        t.join(30)
        status, headers, answer = res["r"]
        self.assertEqual(status, 503, answer)
        self.assertIn(b"committing", answer)
        self.assertRegex(s.daemon.log(), r"qid 4ABC123DEF, .*committing:")

        def up():
            try:
                return db.scalar("SELECT 1") == "1"
            except RuntimeError:
                return False
        self.assertTrue(h._wait_for(up, 30), "the server did not come back")
        self.assertEqual(self.counts(db), (1, 1, 2))  # the crash came before the commit
        db.query("DROP TRIGGER slow ON entries")
        self.assertStatus(h.http_raw(s.port, h.fixture_request(F01)), 200, "the retry")
        self.assert_stored(db, body_of(F01), ["bob@example.net"])

    # ------------------------------------------------------------ expire

    def post_at(self, d, db, t, n):
        """n distinct messages received at t, through a daemon whose clock
        says t."""
        os.environ["RSPAMD_QUARANTINE_NOW"] = str(t)
        if d.proc is not None:
            d.stop()
        d.start()
        for i in range(n):
            body = body_of(F01).replace(b"Subject:", b"Subject: %d-%d" % (t, i), 1)
            env, b = with_meta(F01, body=body, qid="Q%d%d" % (t, i))
            self.assertStatus(h.fcgi_post(d.socket, env, b), 200)

    def test_expire_drops_partitions(self):
        db = self.new_db()
        d = h.Daemon(self.tmp, "pgsql", db.conninfo(), workers=1)
        self.add_log("daemon log", d.log)
        self.addCleanup(lambda: d.proc and d.stop(expect=None))
        self.post_at(d, db, T0 + 3600, 3)             # day 1
        self.post_at(d, db, T0 + DAY + 3600, 2)       # day 2, early
        self.post_at(d, db, T0 + DAY + 20 * 3600, 1)  # day 2, late
        self.post_at(d, db, T0 + 2 * DAY + 3600, 2)   # day 3
        d.stop()
        self.assertEqual(self.counts(db), (8, 8, 8))
        size = len(body_of(F01)) + len(b" %d-%d" % (T0, 0))
        # cutoff: day 2 at 12:00 -> day 1 goes whole, day 2's early two rows
        os.environ["RSPAMD_QUARANTINE_NOW"] = str(T0 + 2 * DAY + 12 * 3600)
        rc, out, err = d.cli("expire", "--older-than", "1d", "--dry-run")
        self.assertEqual(rc, 0, err)
        self.assertIn("would expire 5 entries, 5 messages, %d bytes" % (5 * size), out.decode())
        self.assertEqual(self.counts(db), (8, 8, 8))
        rc, out, err = d.cli("expire", "--older-than", "1d")
        self.assertEqual(rc, 0, err)
        self.assertIn("expired 5 entries, 5 messages, %d bytes" % (5 * size), out.decode())
        self.assertEqual(self.counts(db), (3, 3, 3))
        tables = {r[0] for r in db.query("SELECT relname FROM pg_class WHERE relname"
                                         " ~ '^(entries|messages|contents)_2026'")}
        self.assertFalse(any(t.endswith("20260101") for t in tables), tables)
        self.assertIn("entries_20260102", tables)
        # nothing left over: expiring again finds nothing
        rc, out, err = d.cli("expire", "--older-than", "1d")
        self.assertEqual(rc, 0, err)
        self.assertIn("expired 0 entries", out.decode())
        # the remaining entries are the newest three
        left = sorted(int(x[0]) for x in db.query(
            "SELECT extract(epoch FROM received_at)::bigint FROM entries"))
        self.assertEqual(left, [T0 + DAY + 20 * 3600] + [T0 + 2 * DAY + 3600] * 2)

    def test_expire_finishes_interrupted_detach(self):
        db = self.new_db()
        db.query("SELECT rq_ensure_partitions('2026-01-01')")
        # as if an expire died between its detach and its drop
        db.query("ALTER TABLE entries DETACH PARTITION entries_20260101")
        d = h.Daemon(self.tmp, "pgsql", db.conninfo(), workers=1)
        os.environ["RSPAMD_QUARANTINE_NOW"] = str(T0 + 10 * DAY)
        rc, out, err = d.cli("expire", "--older-than", "1d")
        self.assertEqual(rc, 0, err)
        self.assertEqual(db.query("SELECT relname FROM pg_class WHERE relname ~ '_2026010[12]$'"
                                  " AND relkind = 'r'"), [])


if __name__ == "__main__":
    h.main()
