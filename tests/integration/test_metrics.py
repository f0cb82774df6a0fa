#!/usr/bin/env python3
"""test_metrics.py - /metrics through the shipped nginx block: under
concurrent load the counts per status equal what was sent; a worker killed
in the middle of a run leaves every counter monotonic; the text parses with
python3-prometheus-client's parser and carries no recipient; what the
operator's tool does is counted; the counters survive a reload and start
from zero at a restart; the RQ_SERVICE routing keeps each service to its
location."""

import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    # Debian's python3-prometheus-client, for a python3 that is not
    # Debian's own (a virtualenv, pyenv): it is required, not optional.
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

F01 = "01-plain.default.http"
J01 = "01-plain.json.http"
P = "rspamd_quarantine_"
# Every label value the daemon may put out: the lists in src/metrics.c.
ALLOWED_LABELS = {
    "status": {"200", "400", "401", "403", "404", "405", "411", "413", "415", "500",
               "503", "other"},
    "formatter": {"default", "json", "json_with_message", "multipart", "none"},
    "class": {"input", "temporary", "permanent"},
    "action": {"release", "delete", "expire", "learn_spam", "learn_ham", "digest"},
    "outcome": {"ok", "not_found", "refused", "rejected", "tempfail", "failed",
                "already", "not_learned", "other"},
}


def unique_request(tag, i, rcpt=None, pad=0):
    """Fixture 01 made unique by its queue id (a new entry each time),
    optionally for another recipient and padded; a raw POST to /quarantine."""
    method, _, headers, body = h.split_request(h.fixture_request(F01))
    qid = "%s%06d" % (tag, i)
    body = body.replace(b"Subject:", b"Subject: %s" % qid.encode(), 1)
    if pad:
        body += b"x" * pad + b"\r\n"
    hs = []
    for k, v in headers:
        if k.lower() == "content-length":
            v = str(len(body))
        elif k.lower() == "x-rspamd-qid":
            v = qid
        elif k.lower() == "x-rspamd-rcpt" and rcpt:
            v = '["%s"]' % rcpt
        hs.append((k, v))
    return h.build_request(method, "/quarantine", hs, body)


def scrape(port):
    """(text, {(name, frozenset(labels.items())): value}) of /metrics,
    parsed by prometheus_client."""
    status, headers, body = h.post(port, "/metrics", b"", method="GET")
    if status != 200:
        raise AssertionError("/metrics answered %d: %r" % (status, body[:300]))
    ctype = headers.get("content-type", "")
    if not ctype.startswith("text/plain; version=0.0.4"):
        raise AssertionError("/metrics Content-Type %r" % ctype)
    text = body.decode("utf-8")
    values = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            values[(s.name, frozenset(s.labels.items()))] = s.value
    return text, values


def val(values, name, **labels):
    return values.get((P + name, frozenset(labels.items())), 0.0)


def by_status(values):
    out = {}
    for (name, labels), v in values.items():
        if name == P + "requests_total":
            st = dict(labels)["status"]
            out[st] = out.get(st, 0) + v
    return out


def counters(values):
    """Every counter and histogram sample (all must only grow)."""
    return {k: v for k, v in values.items()
            if k[0].endswith("_total") or "_duration_seconds_" in k[0]}


class MetricsCase(h.ServerTestCase):
    tmp_prefix = "rq-metrics-"

    def assertMonotonic(self, before, after, what):
        for k, v in before.items():
            self.assertGreaterEqual(after.get(k, 0.0), v,
                                    "%s: %s%s went down from %s to %s"
                                    % (what, k[0], dict(k[1]), v, after.get(k)))

    def test_counts_under_concurrent_load(self):
        """Eight clients send 200s, 400s (the json formatter), 405s and
        413s at once while a ninth scrapes: the final counts per status and
        formatter equal what was sent, and no scrape saw a counter fall."""
        s = self.stack(workers=3, extra_conf={"max_message_size": "2K"})
        _, base = scrape(s.port)
        json_body = h.split_request(h.fixture_request(J01))[3]
        json_headers = [(k, v) for k, v in h.split_request(h.fixture_request(J01))[2]
                        if k.lower() not in ("host", "content-length", "connection")]
        plan = (["ok"] * 40 + ["json"] * 12 + ["get"] * 10 + ["big"] * 10)
        random.Random(15).shuffle(plan)
        sent = {"200": 0, "400": 0, "405": 0, "413": 0}
        lock = threading.Lock()
        errors = []
        done = threading.Event()
        scrapes = []

        first_scrape = threading.Event()

        def client(n):
            first_scrape.wait(30)  # the load starts under a running scraper
            for i, kind in enumerate(plan[n::8]):
                try:
                    if kind == "ok":
                        st = h.http_raw(s.port, unique_request("Q%d" % n, i))[0]
                    elif kind == "json":
                        st = h.post(s.port, "/quarantine", json_body, json_headers)[0]
                    elif kind == "get":
                        st = h.post(s.port, "/quarantine", b"", method="GET")[0]
                    else:
                        st = h.http_raw(s.port, unique_request("B%d" % n, i, pad=4096))[0]
                    with lock:
                        sent[str(st)] = sent.get(str(st), 0) + 1
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))

        def scraper():
            # As often as it can: on an idle machine the whole load takes
            # a fraction of a second.
            while not done.is_set():
                try:
                    scrapes.append(counters(scrape(s.port)[1]))
                except Exception as e:  # noqa: BLE001
                    errors.append("scrape: %r" % e)
                first_scrape.set()

        ts = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        sc = threading.Thread(target=scraper)
        sc.start()
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        done.set()
        sc.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(sent, {"200": 40, "400": 12, "405": 10, "413": 10})
        self.assertGreater(len(scrapes), 2, "the scraper ran alongside the load")
        for a, b in zip(scrapes, scrapes[1:]):
            self.assertMonotonic(a, b, "between two scrapes under load")

        _, end = scrape(s.port)
        got = by_status(end)
        for st, n in sent.items():
            self.assertEqual(got.get(st, 0) - by_status(base).get(st, 0), n,
                             "requests_total for status %s" % st)
        self.assertEqual(sum(got.values()), sum(sent.values()))
        self.assertEqual(val(end, "requests_total", status="200", formatter="default"), 40)
        self.assertEqual(val(end, "requests_total", status="400", formatter="json"), 12)
        self.assertEqual(val(end, "requests_total", status="405", formatter="none"), 10)
        self.assertEqual(val(end, "requests_total", status="413", formatter="default"), 10)
        self.assertEqual(val(end, "errors_total", **{"class": "input"}), 32)
        self.assertEqual(val(end, "messages_stored_total"), 40)
        self.assertEqual(val(end, "entries_stored_total"), 40)
        self.assertEqual(len(s.daemon.entries()), 40)
        size = len(h.split_request(unique_request("Q0", 0))[3])
        self.assertEqual(val(end, "stored_bytes_total"), 40 * size)
        self.assertEqual(val(end, "request_duration_seconds_count"), 72)
        self.assertEqual(val(end, "request_duration_seconds_bucket", le="+Inf"), 72)
        self.assertGreater(val(end, "request_duration_seconds_sum"), 0)
        self.assertEqual(val(end, "workers"), 3)
        self.assertEqual(val(end, "workers_configured"), 3)
        # This scrape's own worker is the only busy one now.
        self.assertEqual(val(end, "workers_busy"), 1)

    def test_killed_worker_keeps_counters_monotonic(self):
        """A worker SIGKILLed in the middle of a run: its counts stay, the
        counters never fall, the restart is counted, and the total equals
        the answers the daemon gave (nginx's own 502 for the cut request
        aside)."""
        s = self.stack(workers=2)
        answered = {}
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        def client(n):
            i = 0
            while not stop.is_set() and i < 400:
                try:
                    st = h.http_raw(s.port, unique_request("K%d" % n, i, pad=20000))[0]
                    with lock:
                        answered[st] = answered.get(st, 0) + 1
                except Exception as e:  # noqa: BLE001
                    errors.append(repr(e))
                i += 1

        ts = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for t in ts:
            t.start()
        snaps = []
        try:
            for round_ in range(3):
                time.sleep(0.4)
                snaps.append(counters(scrape(s.port)[1]))
                workers = s.daemon.worker_pids()
                os.kill(workers[round_ % len(workers)], signal.SIGKILL)
                s.daemon.wait_workers(2, timeout=10, exclude=(workers[round_ % len(workers)],))
                snaps.append(counters(scrape(s.port)[1]))
            time.sleep(0.3)
        finally:
            stop.set()
            for t in ts:
                t.join(120)
        self.assertEqual(errors, [])
        _, end = scrape(s.port)
        snaps.append(counters(end))
        for a, b in zip(snaps, snaps[1:]):
            self.assertMonotonic(a, b, "across a killed worker")
        self.assertGreaterEqual(val(end, "worker_restarts_total"), 3)
        self.assertEqual(val(end, "workers"), 2)
        counted = sum(by_status(end).values())
        by_daemon = sum(n for st, n in answered.items() if st != 502)
        cut = answered.get(502, 0)
        self.assertGreater(by_daemon, 0)
        # A request cut by the kill after its count but before nginx had
        # the answer is counted and seen as 502: at most one per kill.
        self.assertGreaterEqual(counted, by_daemon, answered)
        self.assertLessEqual(counted, by_daemon + min(cut, 3), answered)
        self.assertEqual(val(end, "requests_total", status="200", formatter="default"),
                         counted - sum(v for st, v in by_status(end).items() if st != "200"))

    def test_parses_bounded_labels_no_recipient(self):
        """prometheus_client's parser reads every family with its type;
        no label value is outside the fixed lists and no recipient, sender
        or queue id appears anywhere."""
        s = self.stack()
        rcpts = ["victim%d@secret-domain.example" % i for i in range(5)]
        for i, r in enumerate(rcpts):
            self.assertStatus(h.http_raw(s.port, unique_request("LBL", i, rcpt=r)), 200)
        text, values = scrape(s.port)
        for r in rcpts + ["secret-domain", "LBL0", "example.org", "example.net"]:
            self.assertNotIn(r, text)
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        want = {"requests": "counter", "errors": "counter", "messages_stored": "counter",
                "entries_stored": "counter", "stored_bytes": "counter",
                "request_duration_seconds": "histogram", "workers": "gauge",
                "workers_busy": "gauge", "worker_restarts": "counter",
                "cli_actions": "counter", "start_time_seconds": "gauge"}
        for name, typ in want.items():
            self.assertIn(P + name, fams, "family %s missing" % name)
            self.assertEqual(fams[P + name].type, typ, name)
        for (name, labels) in values:
            for k, v in labels:
                if k == "le":
                    float(v)
                    continue
                self.assertIn(k, ALLOWED_LABELS, "label %s on %s" % (k, name))
                self.assertIn(v, ALLOWED_LABELS[k], "%s=%r on %s" % (k, v, name))
        self.assertEqual(val(values, "requests_total", status="200", formatter="default"), 5)
        self.assertAlmostEqual(val(values, "start_time_seconds"), time.time(), delta=300)

    def test_cli_actions_counted(self):
        """release, delete (found or not) and expire by the installed-style
        CLI show up at the next scrape, from the counters file."""
        sink = os.path.join(self.tmp, "sent.eml")
        sendmail = os.path.join(self.tmp, "sendmail")
        with open(sendmail, "w") as f:
            f.write("#!/bin/sh\ncat >> %s\n" % sink)
        os.chmod(sendmail, 0o755)
        os.chmod(self.tmp, 0o777)
        conf = {"release_transport": "sendmail", "sendmail": sendmail}
        if h.backend() != "file":
            # Only the file store has a default place for the counters.
            cdir = os.path.join(self.tmp, "counters")
            os.mkdir(cdir)
            os.chmod(cdir, 0o777)
            conf["counters_file"] = os.path.join(cdir, "cli-counters")
        s = self.stack(extra_conf=conf)
        for i in range(4):
            self.assertStatus(h.http_raw(s.port, unique_request("CLI", i)), 200)
        ids = [e["id"] for e in s.daemon.entries()]
        self.assertEqual(len(ids), 4)
        rc, out, err = s.daemon.cli("release", ids[0])
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        rc, _, err = s.daemon.cli("release", ids[0])  # already released: refused
        self.assertEqual(rc, 1)
        rc, _, err = s.daemon.cli("delete", ids[1], "0" * len(ids[1]))
        self.assertEqual(rc, 1)
        rc, _, err = s.daemon.cli("expire", "--older-than", "0", "--quiet")
        self.assertEqual(rc, 0, err)
        _, v = scrape(s.port)
        self.assertEqual(val(v, "cli_actions_total", action="release", outcome="ok"), 1)
        self.assertEqual(val(v, "cli_actions_total", action="release", outcome="refused"), 1)
        self.assertEqual(val(v, "cli_actions_total", action="delete", outcome="ok"), 1)
        self.assertEqual(val(v, "cli_actions_total", action="delete", outcome="not_found"), 1)
        self.assertEqual(val(v, "cli_actions_total", action="expire", outcome="ok"), 3)
        self.assertEqual(val(v, "cli_counters_readable"), 1)
        # The file the tool keeps is the store's: readable by the daemon.
        path = os.path.join(s.daemon.file_root, "cli-counters")
        if h.backend() == "file":
            self.assertTrue(os.path.exists(path))

    def test_reload_keeps_restart_resets(self):
        """SIGHUP replaces the workers and keeps the counts; a restart of
        the daemon starts them from zero."""
        s = self.stack()
        for i in range(3):
            self.assertStatus(h.http_raw(s.port, unique_request("RL", i)), 200)
        old = s.daemon.worker_pids()
        s.daemon.signal(signal.SIGHUP)
        s.daemon.wait_workers(2, timeout=10, exclude=old)
        _, v = scrape(s.port)
        self.assertEqual(val(v, "requests_total", status="200", formatter="default"), 3)
        s.daemon.stop()
        s.daemon.start()
        _, v = scrape(s.port)
        self.assertEqual(val(v, "requests_total", status="200", formatter="default"), 0)
        self.assertEqual(val(v, "messages_stored_total"), 0)

    def test_routing(self):
        """Each location reaches its own service only: a POST to /metrics
        stores nothing (405), RQ_SERVICE=pages or an unknown value (404)
        never reaches ingest, and no RQ_SERVICE at all is ingest, as for
        server blocks written before there was a choice."""
        s = self.stack()
        raw = unique_request("RT", 1)
        body = h.split_request(raw)[3]
        st, hdrs, b = h.post(s.port, "/metrics", body)
        self.assertEqual(st, 405, b)
        self.assertIn("GET", hdrs.get("allow", ""))
        self.assertEqual(h.post(s.port, "/metrics", b"", method="HEAD")[0], 200)
        env, b2 = h.meta_env(raw)
        for svc in ("Ingest", "metricsx"):
            e = dict(env, RQ_SERVICE=svc)
            status = h.fcgi_post(s.daemon.socket, e, b2)[0]
            self.assertEqual(status, 404, svc)
        # The pages take no mail: whatever they answer (here 503, no link
        # key is configured), it is not ingest's 200 and nothing is stored.
        status = h.fcgi_post(s.daemon.socket, dict(env, RQ_SERVICE="pages"), b2)[0]
        self.assertNotEqual(status, 200)
        self.assertEqual(s.daemon.entries(), [])
        e = {k: v for k, v in env.items() if k != "RQ_SERVICE"}
        self.assertEqual(h.fcgi_post(s.daemon.socket, e, b2)[0], 200)
        self.assertEqual(len(s.daemon.entries()), 1)
        e = dict(env, RQ_SERVICE="metrics", REQUEST_METHOD="GET")
        status, _, text = h.fcgi_post(s.daemon.socket, e, b"")
        self.assertEqual(status, 200)
        self.assertIn(b"rspamd_quarantine_requests_total", text)


if __name__ == "__main__":
    h.main()
