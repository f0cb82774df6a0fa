"""users.py - the `users` part of `make bench`: the users' digest and
pages at scale.

  digest   10^4 recipients with 10 new entries each (10^5 entries), on the
           file store and on PostgreSQL: the wall time and the peak RSS
           (VmHWM, from wait4) of one `digest` run that sends 10^4 mails
           through the release transport to an SMTP server that counts
           them, then of a second run that finds nothing new
  pages    an entry page and an overview page through nginx with the
           shipped pages server block (HTTPS), wrk at concurrency 8:
           requests/s, p50 and p99

The file store is filled by bench/populate (the real put path), the
database with SQL in the schema's shape, both within one day.
"""

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from smtpcapture import SmtpCapture  # noqa: E402

RCPTS = int(os.environ.get("BENCH_DIGEST_RCPTS") or 10000)
PER_RCPT = 10
T0 = 1800000000


def _timed_run(args, env=None):
    """Runs args under GNU time (whose own child starts small: the RSS of
    a child forked from Python would count Python's); (seconds, peak RSS
    in KB, exit status, stderr)."""
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "RQ_MAXRSS_KB %M"] + args,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    secs = time.monotonic() - t0
    err = p.stderr.decode(errors="replace")
    m = re.search(r"^RQ_MAXRSS_KB (\d+)$", err, re.M)
    return secs, int(m.group(1)) if m else -1, p.returncode, err


def _conf(path, backend, store, cap, key, pages_url):
    lines = {
        "backend": backend,
        "release_transport": "smtp",
        "release_smtp": "127.0.0.1:%d" % cap.port,
        "link_key_file": key,
        "pages_url": pages_url,
        "digest_from": "postmaster@example.test",
        "digest_template_text": path + ".none",
        "digest_template_html": path + ".none",
        "log": "stderr",
    }
    lines["file_root" if backend == "file" else "pgsql_conninfo"] = store
    with open(path, "w") as f:
        f.write("".join("%s = %s\n" % kv for kv in lines.items()))


def _fill_pg(pg, conninfo):
    db = re.search(r"dbname=(\S+)", conninfo).group(1)
    n = RCPTS * PER_RCPT
    pg.psql("""
SELECT rq_ensure_partitions(to_timestamp(%(t)d)::date);
CREATE TEMP TABLE g AS SELECT i, to_timestamp(%(t)d - i %% 3600) AS ts FROM generate_series(0, %(n)d - 1) i;
INSERT INTO contents SELECT encode(sha256(convert_to('c' || i, 'UTF8')), 'hex'),
  (ts AT TIME ZONE 'UTC')::date, 1400, convert_to(repeat('Cheap offers ', 108), 'UTF8') FROM g;
INSERT INTO messages (id, received_day, received_at, sha256, size, rcpts, qid, env_from, action,
  score, symbols, rspamd_server, hdr_from, hdr_subject)
  SELECT i + 1, (ts AT TIME ZONE 'UTC')::date, ts, encode(sha256(convert_to('c' || i, 'UTF8')), 'hex'),
  1400, jsonb_build_array('user' || (i %% %(r)d) || '@example.org'), 'P' || i, 's@spam.example',
  'add header', 10.3, '[{"name": "BAYES_SPAM", "score": 5.1}]', 'scan1', '"Spammer" <s@spam.example>',
  'offer number ' || i FROM g;
SELECT setval('messages_id_seq', %(n)d + 1);
INSERT INTO entries (id, received_day, received_at, message_id, rcpt, status_changed)
  SELECT substr(md5('e' || i), 1, 24), (ts AT TIME ZONE 'UTC')::date, ts, i + 1,
  'user' || (i %% %(r)d) || '@example.org', ts FROM g;
ANALYZE;
""" % {"n": n, "r": RCPTS, "t": T0}, dbname=db)


def digest_runs(tmp, results, backend, pg, bin_dir, log):
    d = os.path.join(tmp, "digest-" + backend)
    os.makedirs(d)
    cap = SmtpCapture().start()
    cap.keep = False
    try:
        key = os.path.join(d, "link.key")
        conf = os.path.join(d, "q.conf")
        store = os.path.join(d, "store")
        if backend == "pgsql":
            store = harness.pg_fresh_db(pg)
        _conf(conf, backend, store, cap, key, "https://quarantine.example.test/q")
        subprocess.run([harness.CLI_BIN, "-c", conf, "make-key"], check=True,
                       stdout=subprocess.DEVNULL)
        env = dict(os.environ, RSPAMD_QUARANTINE_NOW=str(T0))
        t0 = time.monotonic()
        if backend == "file":
            subprocess.run([os.path.join(bin_dir, "populate"), conf, str(RCPTS * PER_RCPT),
                            "1", str(RCPTS), "2"], check=True, env=env)
        else:
            _fill_pg(pg, store)
        fill = time.monotonic() - t0
        secs, rss, rc, err = _timed_run([harness.CLI_BIN, "-c", conf, "digest"], env)
        if rc != 0 or cap.count != RCPTS:
            raise RuntimeError("digest (%s): exit %d, %d mails: %s" % (backend, rc, cap.count,
                                                                      err[-2000:]))
        again, rss2, rc2, err2 = _timed_run([harness.CLI_BIN, "-c", conf, "digest"], env)
        if rc2 != 0 or cap.count != RCPTS:
            raise RuntimeError("second digest (%s): exit %d, %d mails: %s"
                               % (backend, rc2, cap.count, err2[-2000:]))
        row = {"backend": backend, "recipients": RCPTS, "entries": RCPTS * PER_RCPT,
               "fill_s": round(fill, 1), "digest_s": round(secs, 2),
               "ms_per_digest": round(1000 * secs / RCPTS, 3), "peak_rss_kb": rss,
               "again_s": round(again, 2), "again_rss_kb": rss2}
        results.setdefault("digest", []).append(row)
        log("digest %-6s %d rcpts x %d: %.1f s (%.2f ms/mail), peak RSS %d KB; "
            "second run %.1f s, %d KB" % (backend, RCPTS, PER_RCPT, secs, row["ms_per_digest"],
                                         rss, again, rss2))
        return conf, store
    finally:
        cap.stop()


def _wrk(url, conc, dur):
    p = subprocess.run(["wrk", "-t", "2", "-c", str(conc), "-d", "%ds" % dur, "--latency",
                        "--timeout", "30s", url], capture_output=True, text=True, timeout=600)
    out = p.stdout

    def ms(label):
        m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, out, re.M)
        if not m:
            raise RuntimeError("wrk: no %s%% line: %s %s" % (label, out, p.stderr))
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": round(rps, 1), "p50_ms": round(ms("50"), 2), "p99_ms": round(ms("99"), 2),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def pages_latency(tmp, results, conf_file, dur, log):
    """The file store filled by digest_runs, served through nginx."""
    import hashlib
    import hmac
    import base64
    from test_pages import PagesNginx
    d = os.path.join(tmp, "pages")
    os.makedirs(d)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    with open(conf_file) as f:
        conf = dict(ln.strip().split(" = ", 1) for ln in f if " = " in ln)
    daemon = harness.Daemon(d, "file", None, {}, workers=8)
    nginx = PagesNginx(d, daemon.socket, cert, key)
    base = "https://127.0.0.1:%d/q" % nginx.port
    daemon.file_root = conf["file_root"]
    daemon.write_conf({"file_root": conf["file_root"], "link_key_file": conf["link_key_file"],
                       "pages_url": base})
    harness._chown_run_user(conf["file_root"])
    if harness.IS_ROOT:
        subprocess.run(["chown", "-R", "%s" % harness.RUN_USER, conf["file_root"]], check=True)
    os.chmod(conf["link_key_file"], 0o644)  # the daemon's user reads it here
    with open(conf["link_key_file"]) as f:
        k = bytes.fromhex(f.read().strip())

    def token(purpose, subject, exp):
        mac = hmac.new(k, b"rspamd-quarantine link v1\0" + purpose.encode() + b"\0" +
                       subject.encode() + b"\0" + str(exp).encode(), hashlib.sha256).digest()
        return "%d.%s" % (exp, base64.urlsafe_b64encode(mac).decode().rstrip("="))
    out = subprocess.run([harness.CLI_BIN, "-c", conf_file, "list", "--rcpt",
                          "user7@example.org", "--json"], capture_output=True, text=True,
                         check=True).stdout
    import json
    eid = json.loads(out)[0]["id"]
    exp = T0 + 10 ** 7
    os.environ["RSPAMD_QUARANTINE_NOW"] = str(T0)
    daemon.start()
    nginx.start()
    try:
        for name, url in (("entry", "%s/entry?id=%s&t=%s" % (base, eid, token("entry", eid, exp))),
                          ("list", "%s/list?r=user7%%40example.org&t=%s"
                           % (base, token("list", "user7@example.org", exp)))):
            r = _wrk(url, 8, dur)
            if r["non_2xx"]:
                raise RuntimeError("page %s: %d answers were not 200" % (name, r["non_2xx"]))
            r.update({"page": name, "concurrency": 8, "workers": 8})
            results.setdefault("pages", []).append(r)
            log("page %-5s c=8: %.0f req/s, p50 %.2f ms, p99 %.2f ms"
                % (name, r["rps"], r["p50_ms"], r["p99_ms"]))
    finally:
        nginx.stop()
        daemon.stop(expect=None)


def run(tmp, results, pg, bin_dir, dur, log):
    conf_file, _ = digest_runs(tmp, results, "file", pg, bin_dir, log)
    pages_latency(tmp, results, conf_file, dur, log)
    digest_runs(tmp, results, "pgsql", pg, bin_dir, log)
