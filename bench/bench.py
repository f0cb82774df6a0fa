"""bench.py - the benchmark driver `make bench` runs (through run.sh).

Starts every server with tests/integration/harness.py (private nginx with
the shipped server block, the daemon, a private PostgreSQL from
pgcluster.py), loads them from a second process with wrk (post.lua), and
measures each figure next to its limit in the same run:

  fcgi_min   bench/fcgi_min behind the same nginx      limit of `null`
  null       backend = null                             vs fcgi_min
  file       file store (and compress = gzip)           vs fsync_loop, and
                                                        vs layout_floor (its
                                                        layout and commit
                                                        without the daemon);
                                                        log_floor: the same
                                                        behind a log, the
                                                        bound of its
                                                        write-ahead-log commit
                                                        (log_floor_ids1: with
                                                        one ids/ link per
                                                        message); with
                                                        fcgi_min, the CPU
                                                        bound of any daemon
                                                        on each log floor
  pgsql      PostgreSQL store                           vs pgbench

Then storage cost per message, the growth curve in message size (4 KB to
40 MB, worker memory) and in store size (10^3 .. 10^5 entries, 10^6 with
FULL=1: list --rcpt and expire).  Prints a table and writes every figure
as JSON to $OUT (default bench/results.json).

Environment: B (build dir), BENCH_BIN (helpers built by run.sh),
DUR (seconds per load run; default 5, QUICK=1: 2), FULL=1, QUICK=1,
BENCH_SIZES, BENCH_CONCS, BENCH_RCPTS (comma-separated, to run part of
the matrix), BENCH_SERVERS (comma-separated subset of fcgi_min, null,
file, file_gzip, file_fsync, pgsql, fsync_loop, layout_floor, log_floor, log_floor_ids1, pgbench;
file_fsync, the file store with file_sync = fsync, and log_floor_ids1, the
log floor with one ids/ link per message, run only when named), BENCH_SPREAD (recipient
pool of the spread cells, default 1000; 0: none), BENCH_FS
(comma-separated: root, ext4, xfs; the load matrix runs once on each:
root is the temp directory's file system, ext4 and xfs are file systems
the benchmark makes on a loop device, with the PostgreSQL cluster and
the fsync loop on them too).
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402

QUICK = os.environ.get("QUICK") == "1"
FULL = os.environ.get("FULL") == "1"
DUR = float(os.environ.get("DUR") or (2 if QUICK else 5))
BIN = os.environ.get("BENCH_BIN") or os.path.join(harness.BUILD, "bench")
OUT = os.environ.get("OUT") or os.path.join(HERE, "results.json")
TICK = os.sysconf("SC_CLK_TCK")

SIZES = [4096, 65536, 1 << 20]
CONCS = [1, 8, 32]
RCPTS = [1, 5, 50]
if QUICK:
    CONCS = [1, 8]


def _env_list(name, default):
    v = os.environ.get(name)
    return [int(x) for x in v.split(",")] if v else default


SIZES = _env_list("BENCH_SIZES", SIZES)
CONCS = _env_list("BENCH_CONCS", CONCS)
RCPTS = _env_list("BENCH_RCPTS", RCPTS)
SERVERS = (os.environ.get("BENCH_SERVERS") or
           "fcgi_min,null,file,file_gzip,pgsql,fsync_loop,layout_floor,log_floor,"
           "pgbench").split(",")
SPREAD = int(os.environ.get("BENCH_SPREAD") or 1000)
FSES = (os.environ.get("BENCH_FS") or "root").split(",")
# Each load cell's runs, interleaved (every server once, in an order that
# turns by one each round), the median kept: this machine's throughput
# drifts by tens of percent between runs minutes apart.
REPEAT = max(1, int(os.environ.get("BENCH_REPEAT") or 1))
# Another build directory whose daemon runs, as `file_ab`, beside `file`
# in every cell: an A/B of two builds under the same conditions.
AB = os.environ.get("BENCH_AB")
if AB and "file_ab" not in SERVERS:
    SERVERS.append("file_ab")
if "file_ab" in SERVERS and not (AB and os.path.isfile(os.path.join(AB, "rspamd-quarantined"))):
    sys.exit("bench: file_ab needs BENCH_AB=<a build directory holding rspamd-quarantined>")

results = {"machine": {}, "load": [], "storage": [], "size_curve": [], "store_curve": []}


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------ messages

def text_message(size, seed=1):
    """Text spam: a header and lines of varied words, size bytes."""
    rnd = random.Random(seed)
    words = ("cheap offer viagra winner lottery claim prize now free money urgent "
             "account verify bank transfer click here unsubscribe discount").split()
    head = (b"From: \"Prize Office\" <winner@spam.example>\r\nTo: <bob@example.net>\r\n"
            b"Subject: You have won\r\nDate: Mon, 2 Jan 2023 10:00:00 +0000\r\n"
            b"Message-ID: <bench@spam.example>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n")
    lines = []
    n = len(head) + 2
    while n < size:
        ln = (" ".join(rnd.choice(words) for _ in range(10)) + "\r\n").encode()
        lines.append(ln)
        n += len(ln)
    body = b"".join(lines)
    return head, b"\r\n" + body[:max(0, size - len(head) - 2)]


def attachment_message(size, seed=2):
    """Mail with a binary attachment (random bytes, base64), size bytes."""
    rnd = random.Random(seed)
    head = (b"From: <invoice@spam.example>\r\nTo: <bob@example.net>\r\n"
            b"Subject: Invoice\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n")
    pre = (b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b1\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           b"Content-Disposition: attachment; filename=\"invoice.zip\"\r\n\r\n")
    import base64
    need = size - len(head) - len(pre) - 10
    raw = bytes(rnd.getrandbits(8) for _ in range(need * 3 // 4 + 100))
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")[:need]
    return head, pre + b64 + b"\r\n--b1--\r\n"


def message(size, kind):
    """(head, rest) of a message of about size bytes: text below 1 MB, a
    binary attachment from 1 MB up (what big quarantined mail is)."""
    if kind == "auto":
        kind = "text" if size < (1 << 20) else "attach"
    return text_message(size) if kind == "text" else attachment_message(size)


def meta_headers(nrcpt):
    """The meta headers of the captured 01-plain request, nrcpt recipients."""
    raw = harness.fixture_request("01-plain.default.http")
    _, _, headers, _ = harness.split_request(raw)
    out = []
    for k, v in headers:
        if k.lower() in ("content-length", "connection", "host"):
            continue
        if k.lower() == "x-rspamd-rcpt":
            v = json.dumps(["user%d@example.net" % i for i in range(nrcpt)])
        out.append((k, v))
    return out


def write_request_files(d, size, nrcpt, kind="auto"):
    hf, bh, br = (os.path.join(d, n) for n in ("headers", "head", "rest"))
    with open(hf, "w") as f:
        for k, v in meta_headers(nrcpt):
            f.write("%s: %s\n" % (k, v))
    head, rest = message(size, kind)
    with open(bh, "wb") as f:
        f.write(head)
    with open(br, "wb") as f:
        f.write(rest)
    return hf, bh, br


# ------------------------------------------------------------ /proc

def proc_tree(pid):
    return [pid] + harness._children(pid)


def cpu_ticks(pids):
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p, "rb") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rindex(b")") + 2:].split()
        t += int(rest[11]) + int(rest[12])
    return t


def machine_busy_s():
    """The machine's busy CPU seconds so far (every process and the
    kernel's threads: /proc/stat's first line without idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICK


def hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


# ------------------------------------------------------------ load

_tag = [0]


def run_wrk(port, files, conc, dur=None, spread=None):
    _tag[0] += 1
    hf, bh, br = files[:3]
    threads = max(1, min(conc, 2))
    args = ["wrk", "-t", str(threads), "-c", str(conc), "-d", "%ds" % max(1, int(dur or DUR)),
            "--timeout", "120s", "-s", os.path.join(HERE, "post.lua"),
            "http://127.0.0.1:%d/quarantine" % port, "--", hf, bh, br,
            "r%d%d" % (os.getpid(), _tag[0])]
    if spread:
        args += [str(spread[0]), str(spread[1])]
    p = subprocess.run(args, capture_output=True, text=True, timeout=600)
    m = re.search(r"^RESULT (\{.*\})$", p.stdout, re.M)
    if not m:
        raise RuntimeError("wrk failed: %s %s" % (p.stdout, p.stderr))
    return json.loads(m.group(1))


def measure(port, server_pids_fn, nginx_pid, files, conc, dur=None, spread=None):
    """One wrk run; messages/s, latency, CPU s per 1000 messages (server
    and nginx), the machine's busy CPU ms per message (wrk included),
    peak RSS per worker."""
    spids = server_pids_fn()
    npids = proc_tree(nginx_pid)
    c0s, c0n, m0 = cpu_ticks(spids), cpu_ticks(npids), machine_busy_s()
    w = run_wrk(port, files, conc, dur, spread)
    c1s, c1n, m1 = cpu_ticks(spids), cpu_ticks(npids), machine_busy_s()
    ok = max(1, w["requests"] - w["non2xx"])
    workers = spids[1:] or spids
    return {
        "msgs_per_s": (w["requests"] - w["non2xx"]) / w["seconds"],
        "p50_ms": w["p50_us"] / 1000.0, "p99_ms": w["p99_us"] / 1000.0,
        "cpu_s_per_1000": (c1s - c0s) / TICK / ok * 1000,
        "nginx_cpu_s_per_1000": (c1n - c0n) / TICK / ok * 1000,
        "machine_cpu_ms": (m1 - m0) / ok * 1000,
        "peak_rss_kb": max(hwm_kb(p) for p in workers),
        "requests": w["requests"], "non2xx": w["non2xx"], "errors": w["errors"],
    }


class FcgiMin:
    def __init__(self, tmp, nproc):
        self.sock = os.path.join(tmp, "fcgi_min.sock")
        self.proc = subprocess.Popen([os.path.join(BIN, "fcgi_min"), self.sock, str(nproc)])
        harness._wait_for(lambda: os.path.exists(self.sock) and
                          len(harness._children(self.proc.pid)) >= nproc, 10)

    def pids(self):
        return proc_tree(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


_pg = [None]


def pg_cluster(tmp):
    if _pg[0] is None:
        _pg[0] = harness.pg_start(tmp)
    return _pg[0]


def daemon_cell(tmp, backend, conc, files, extra=None, pg=None, spread=None, binary=None):
    d = os.path.join(tmp, "cell%d" % random.getrandbits(32))
    os.makedirs(d)
    os.chmod(d, 0o755)
    conninfo = harness.pg_fresh_db(pg) if backend == "pgsql" else None
    daemon = harness.Daemon(d, backend, conninfo, extra, workers=conc, binary=binary).start()
    try:
        daemon.wait_workers(conc, timeout=20)
        ng = harness.Nginx(d, daemon.socket).start()
        try:
            r = measure(ng.port, lambda: proc_tree(daemon.pid), ng.pid, files, conc,
                        spread=spread)
        finally:
            ng.stop()
    finally:
        daemon.stop(expect=None)
    r["store_dir"] = daemon.file_root
    return r, d


def fcgi_cell(tmp, conc, files):
    d = os.path.join(tmp, "fcgi%d" % random.getrandbits(32))
    os.makedirs(d)
    os.chmod(d, 0o755)
    fm = FcgiMin(d, conc)
    try:
        ng = harness.Nginx(d, fm.sock).start()
        try:
            return measure(ng.port, fm.pids, ng.pid, files, conc)
        finally:
            ng.stop()
    finally:
        fm.stop()
        shutil.rmtree(d, ignore_errors=True)


def fsync_cell(tmp, size, conc):
    d = os.path.join(tmp, "fsync%d" % random.getrandbits(32))
    os.makedirs(d)
    p = subprocess.run([os.path.join(BIN, "fsync_loop"), d, str(size), str(conc), str(DUR)],
                       capture_output=True, text=True, check=True)
    shutil.rmtree(d, ignore_errors=True)
    return json.loads(p.stdout)


def floor_cell(tmp, size, nrcpt, conc, log=False, ids1=False):
    """layout_floor: the file store's layout and two-phase commit without
    the daemon (bench/layout_floor.c); with log, the same files and names
    behind one fdatasync of a preallocated log (log_floor); with ids1 as
    well, one ids/ link per message (log_floor_ids1)."""
    d = os.path.join(tmp, "floor%d" % random.getrandbits(32))
    os.makedirs(d)
    p = subprocess.run([os.path.join(BIN, "layout_floor"), d, str(size), str(nrcpt), str(conc),
                        str(DUR)] + (["log"] if log else []) + (["ids1"] if ids1 else []),
                       capture_output=True, text=True, check=True)
    shutil.rmtree(d, ignore_errors=True)
    return json.loads(p.stdout)


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def pgbench_cell(tmp, pg, size, conc, nrcpt, msg):
    """pgbench inserting what one POST inserts (content of this size, the
    message row with the fixture's symbols, nrcpt entries), conc clients."""
    conninfo = harness.pg_fresh_db(pg)
    db = re.search(r"dbname=(\S+)", conninfo).group(1)
    # The payload is kept uncompressed, and each transaction inserts it
    # with its first four bytes replaced by the transaction's number: a
    # new value, which the server compresses on insert as it does every
    # message the daemon stores (an unchanged copy of a stored value would
    # keep its compressed form and skip that work).
    pg.psql("CREATE TABLE bench_payload (size int, data bytea);"
            "ALTER TABLE bench_payload ALTER COLUMN data SET STORAGE EXTERNAL;"
            "SELECT rq_ensure_partitions(current_date);", dbname=db)
    with open(os.path.join(tmp, "payload.sql"), "wb") as f:
        f.write(b"INSERT INTO bench_payload VALUES (%d, '\\x%s'::bytea);\n"
                % (size, msg.hex().encode()))
    pg.apply_file(os.path.join(tmp, "payload.sql"), dbname=db)
    syms = dict(meta_headers(1))["X-Rspamd-symbols"]
    script = os.path.join(tmp, "pgbench.sql")
    with open(script, "w") as f:
        f.write("\\set n random(1, 2000000000)\n"
                "BEGIN;\n"
                "INSERT INTO contents (sha256, received_day, size, content) SELECT "
                "encode(sha256(convert_to(:client_id || '-' || :n || '-' || random(), 'UTF8')), 'hex'), "
                "current_date, size, overlay(data placing int4send(:n) from 1) FROM bench_payload;\n"
                "WITH m AS (INSERT INTO messages (received_day, received_at, sha256, size, rcpts, qid, "
                "env_from, ip, action, score, scan_time, symbols, fuzzy, rspamd_server, hdr_from, "
                "hdr_subject) VALUES (current_date, now(), repeat('a', 64), %d, '[]', 'Q' || :n, "
                "'s@spam.example', '192.0.2.10', 'add header', 10.3, 714, %s, '[]', 'scan1', "
                "'winner@spam.example', 'You have won') RETURNING id) "
                "INSERT INTO entries (id, received_day, received_at, message_id, rcpt, status_changed) "
                "SELECT substr(md5(random()::text), 1, 24), current_date, now(), m.id, "
                "'user' || g || '@example.net', now() FROM m, generate_series(1, %d) g;\n"
                "COMMIT;\n" % (size, sql_str(syms), nrcpt))
    args = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
            "-c", str(conc), "-j", str(min(conc, 2)), "-T", str(int(DUR)), "-f", script, db]
    p = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, PGOPTIONS=""))
    m = re.search(r"tps = ([\d.]+) \(without", p.stdout)
    lat = re.search(r"latency average = ([\d.]+) ms", p.stdout)
    if not m:
        raise RuntimeError("pgbench failed: %s %s" % (p.stdout, p.stderr))
    pg.psql("DROP DATABASE %s;" % db, dbname="postgres")
    return {"msgs_per_s": float(m.group(1)), "avg_ms": float(lat.group(1)) if lat else None}


def cell_runs(tmp, pg, size, nrcpt, conc, files, msg, spread):
    """The runs of one load cell, as (name, function) in the order of
    SERVERS' columns; a function returns the run's figures, or None when
    the server does not run in this cell."""
    runs = []
    if "fcgi_min" in SERVERS:
        runs.append(("fcgi_min", lambda: fcgi_cell(tmp, conc, files)))
    for name, backend, extra in (("null", "null", None), ("file", "file", None),
                                 ("file_ab", "file", None),
                                 ("file_gzip", "file", {"compress": "gzip"}),
                                 ("file_fsync", "file", {"file_sync": "fsync"}),
                                 ("pgsql", "pgsql", None)):
        if name not in SERVERS:
            continue
        binary = os.path.join(AB, "rspamd-quarantined") if name == "file_ab" else None

        def run(backend=backend, extra=extra, binary=binary):
            r, d = daemon_cell(tmp, backend, conc, files, extra,
                               pg if backend == "pgsql" else None, spread, binary)
            shutil.rmtree(d, ignore_errors=True)
            return r
        runs.append((name, run))
    if "fsync_loop" in SERVERS:
        runs.append(("fsync_loop", lambda: fsync_cell(tmp, size, conc)))
    if "layout_floor" in SERVERS:
        runs.append(("layout_floor",
                     lambda: None if spread else floor_cell(tmp, size, nrcpt, conc)))
    if "log_floor" in SERVERS:
        runs.append(("log_floor",
                     lambda: None if spread else floor_cell(tmp, size, nrcpt, conc, log=True)))
    if "log_floor_ids1" in SERVERS:
        runs.append(("log_floor_ids1",
                     lambda: None if spread else floor_cell(tmp, size, nrcpt, conc, log=True,
                                                            ids1=True)))
    if "pgbench" in SERVERS:
        def bench():
            try:
                return pgbench_cell(tmp, pg, size, conc, nrcpt, msg)
            except RuntimeError as e:
                # on a starved machine pgbench may finish no transaction
                # in a short run: keep the cell
                log("pgbench: %s" % str(e)[:300])
                return {"msgs_per_s": 0.0, "error": str(e)[:300]}
        runs.append(("pgbench", bench))
    return runs


def median_run(rs):
    """Of one server's runs in a cell, the one of median messages/s (the
    lower of the middle two), with every run's messages/s in "runs"."""
    m = sorted(rs, key=lambda r: r["msgs_per_s"])[(len(rs) - 1) // 2]
    return dict(m, runs=[r["msgs_per_s"] for r in rs])


def load_matrix(tmp, fs="root"):
    """Every cell of the matrix with file_root, the fsync loop and the
    PostgreSQL cluster on the file system of tmp.  At concurrency 32 the
    cells with several recipients run twice: every message to the same
    recipients, and (spread) each to recipients drawn from SPREAD."""
    pg = pg_cluster(tmp) if "pgsql" in SERVERS or "pgbench" in SERVERS else None
    for size in SIZES:
        for nrcpt in RCPTS:
            files = write_request_files(tmp, size, nrcpt)
            with open(files[1], "rb") as f:
                msg = f.read()
            with open(files[2], "rb") as f:
                msg += b"X-Bench-Seq: x\r\n" + f.read()
            for conc in CONCS:
                spreads = [None]
                if conc >= 32 and SPREAD and nrcpt > 1:
                    spreads.append((nrcpt, SPREAD))
                for spread in spreads:
                    cell = {"fs": fs, "size": size, "rcpt": nrcpt, "conc": conc,
                            "spread": spread[1] if spread else 0}
                    runs = cell_runs(tmp, pg, size, nrcpt, conc, files, msg, spread)
                    for rnd in range(REPEAT):
                        k = rnd % len(runs)
                        for name, run in runs[k:] + runs[:k]:
                            r = run()
                            if r is not None:
                                cell.setdefault(name, []).append(r)
                    for name in list(cell):
                        if isinstance(cell[name], list):
                            cell[name] = median_run(cell[name])
                    results["load"].append(cell)
                    print_cell(cell)
                    save()
    if pg is not None:
        pg.stop()
        _pg[0] = None


class LoopFs:
    """A file system made for the benchmark on a loop device: an image
    file in the temp directory, attached with losetup -f (and detached
    again: only the device attached here), made and mounted."""

    def __init__(self, tmp, kind, size=6 << 30):
        self.kind = kind
        self.img = os.path.join(tmp, "fs-%s.img" % kind)
        self.mnt = os.path.join(tmp, "fs-%s" % kind)
        self.dev = None
        self.mounted = False
        with open(self.img, "wb") as f:
            f.truncate(size)

    def __enter__(self):
        try:
            self.dev = subprocess.run(["losetup", "-f", "--show", self.img], capture_output=True,
                                      text=True, check=True).stdout.strip()
            mk = {"ext4": ["mkfs.ext4", "-q", "-F"], "xfs": ["mkfs.xfs", "-q", "-f"]}[self.kind]
            subprocess.run(mk + [self.dev], check=True, capture_output=True)
            os.makedirs(self.mnt)
            subprocess.run(["mount", self.dev, self.mnt], check=True, capture_output=True)
            self.mounted = True
            os.chmod(self.mnt, 0o755)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.mnt

    def __exit__(self, *a):
        if self.mounted:
            subprocess.run(["umount", self.mnt], capture_output=True)
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], capture_output=True)
        if os.path.exists(self.img):
            os.unlink(self.img)
        return False


def load_all(tmp):
    for fs in FSES:
        if fs == "root":
            load_matrix(tmp, fs)
            continue
        with LoopFs(tmp, fs) as mnt:
            load_matrix(mnt, fs)


def ratio(a, b):
    return a / b if b else 0.0


def _rate(c, k):
    return c[k]["msgs_per_s"] if k in c else 0.0


def cpu_bound(c, floor):
    """The most messages/s any daemon could store with the floor's layout
    behind this HTTP path on this machine: all its CPUs divided by the
    machine's CPU per message of fcgi_min (nginx, FastCGI, wrk: the
    least a POST costs) plus that of the floor (the least the files and
    names cost).  A daemon does both, so it cannot pass this; at low
    concurrency, where the machine idles, it is a loose bound.  0 when
    either run is missing."""
    a = c.get("fcgi_min", {}).get("machine_cpu_ms", 0.0)
    b = c.get(floor, {}).get("machine_cpu_ms", 0.0)
    return 1000.0 * os.cpu_count() / (a + b) if a > 0 and b > 0 else 0.0


def print_cell(c):
    f = _rate(c, "fcgi_min")
    log("%s size %7d rcpt %2d conc %2d%s | fcgi_min %7.0f/s | null %7.0f/s %.2f | file %6.0f/s "
        "fsync_loop %6.0f/s %.2f | gzip %6.0f/s %.2f of file | pgsql %6.0f/s pgbench %6.0f/s %.2f"
        " | file/pgsql %.2f | file_sync=fsync %6.0f/s %.2f of file"
        % (c.get("fs", "root"), c["size"], c["rcpt"], c["conc"],
           " spread" if c.get("spread") else "", f, _rate(c, "null"),
           ratio(_rate(c, "null"), f), _rate(c, "file"), _rate(c, "fsync_loop"),
           ratio(_rate(c, "file"), _rate(c, "fsync_loop")), _rate(c, "file_gzip"),
           ratio(_rate(c, "file_gzip"), _rate(c, "file")), _rate(c, "pgsql"),
           _rate(c, "pgbench"), ratio(_rate(c, "pgsql"), _rate(c, "pgbench")),
           ratio(_rate(c, "file"), _rate(c, "pgsql")), _rate(c, "file_fsync"),
           ratio(_rate(c, "file_fsync"), _rate(c, "file"))))
    if "layout_floor" in c:
        log("    layout_floor %6.0f/s: floor / fsync_loop %.2f, file / floor %.2f"
            % (_rate(c, "layout_floor"), ratio(_rate(c, "layout_floor"), _rate(c, "fsync_loop")),
               ratio(_rate(c, "file"), _rate(c, "layout_floor"))))
    for k in ("log_floor", "log_floor_ids1"):
        if k not in c:
            continue
        log("    %-14s %6.0f/s: / fsync_loop %.2f, machine CPU %.3f ms per message"
            % (k, _rate(c, k), ratio(_rate(c, k), _rate(c, "fsync_loop")),
               c[k].get("machine_cpu_ms", 0.0)))
        b = cpu_bound(c, k)
        if b:
            log("    %-14s %6.0f/s: the CPU bound with fcgi_min's HTTP path: / fsync_loop %.2f,"
                " / pgsql %.2f" % ("  bound", b, ratio(b, _rate(c, "fsync_loop")),
                                   ratio(b, _rate(c, "pgsql"))))
    if "file_ab" in c:
        log("    file_ab      %6.0f/s: file / file_ab %.2f (file_ab: %s)"
            % (_rate(c, "file_ab"), ratio(_rate(c, "file"), _rate(c, "file_ab")), AB))
    for k in ("fcgi_min", "null", "file", "file_ab", "file_gzip", "file_fsync", "pgsql"):
        if k not in c:
            continue
        r = c[k]
        log("    %-9s p50 %7.2f ms p99 %7.2f ms  cpu %.3f s/1000 (nginx %.3f, machine %.3f)"
            "  rss %d KB%s"
            % (k, r["p50_ms"], r["p99_ms"], r["cpu_s_per_1000"], r["nginx_cpu_s_per_1000"],
               r.get("machine_cpu_ms", 0.0), r["peak_rss_kb"],
               "  NON-200: %d" % r["non2xx"] if r["non2xx"] else ""))
    if REPEAT > 1:
        log("    runs (msgs/s, the median kept): " + "; ".join(
            "%s %s" % (k, " ".join("%.0f" % x for x in v["runs"]))
            for k, v in c.items() if isinstance(v, dict) and "runs" in v))


# ------------------------------------------------------------ storage cost

def du_bytes(path):
    p = subprocess.run(["du", "-s", "--block-size=1", path], capture_output=True, text=True)
    return int(p.stdout.split()[0])


def storage_cost(tmp):
    pg = pg_cluster(tmp)
    count = 40
    for kind, size in (("text", 16384), ("attach", 262144)):
        files = write_request_files(tmp, size, 1, kind)
        for name, backend, extra in (("file", "file", None),
                                     ("file_gzip", "file", {"compress": "gzip"}),
                                     ("pgsql", "pgsql", None)):
            d = os.path.join(tmp, "cost%d" % random.getrandbits(32))
            os.makedirs(d)
            os.chmod(d, 0o755)
            conninfo = harness.pg_fresh_db(pg) if backend == "pgsql" else None
            with harness.Daemon(d, backend, conninfo, extra, workers=2) as dm:
                empty = du_bytes(dm.file_root) if backend == "file" else 0
                hs = dict(meta_headers(1))
                head = open(files[1], "rb").read()
                rest = open(files[2], "rb").read()
                ok = 0
                ng = harness.Nginx(d, dm.socket).start()
                try:
                    for i in range(count):
                        hs["X-Rspamd-qid"] = "C%d" % i
                        st, _, _ = harness.post(ng.port, "/quarantine",
                                                head + b"X-Bench-Seq: %d\r\n" % i + rest, hs)
                        ok += st == 200
                finally:
                    ng.stop()
                if backend == "file":
                    used = du_bytes(dm.file_root) - empty
                else:
                    db = re.search(r"dbname=(\S+)", conninfo).group(1)
                    used = int(pg.psql(
                        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                        "JOIN pg_inherits i ON i.inhrelid = c.oid JOIN pg_class p ON p.oid = "
                        "i.inhparent WHERE p.relname IN ('contents', 'messages', 'entries');",
                        dbname=db).strip() or 0)
            msg_len = len(head) + len(rest) + len(b"X-Bench-Seq: 0\r\n")
            r = {"kind": kind, "msg_bytes": msg_len, "store": name, "stored": ok,
                 "bytes_per_msg": used / max(ok, 1)}
            results["storage"].append(r)
            log("storage %-6s %7d B message: %-9s %9.0f bytes per message (%.2f of its size)"
                % (kind, msg_len, name, r["bytes_per_msg"], r["bytes_per_msg"] / msg_len))
            shutil.rmtree(d, ignore_errors=True)
    save()


# ------------------------------------------------------------ growth

def size_curve(tmp):
    sizes = [4096, 262144, 4 << 20, 40 << 20]
    base = None
    for size in sizes:
        files = write_request_files(tmp, size, 1)
        r, d = daemon_cell(tmp, "file", 1, files)
        shutil.rmtree(d, ignore_errors=True)
        if base is None:
            base = r["peak_rss_kb"]
        row = {"size": size, "msgs_per_s": r["msgs_per_s"], "mb_per_s": r["msgs_per_s"] * size / 1e6,
               "peak_rss_kb": r["peak_rss_kb"], "rss_added_kb": r["peak_rss_kb"] - base,
               "p50_ms": r["p50_ms"], "non2xx": r["non2xx"]}
        results["size_curve"].append(row)
        log("size curve (file, conc 1) %9d B: %7.1f msgs/s %7.1f MB/s  worker peak RSS %6d KB "
            "(+%d KB over 4 KB)" % (size, row["msgs_per_s"], row["mb_per_s"], row["peak_rss_kb"],
                                    row["rss_added_kb"]))
    save()


def timed(args, runs=5):
    best = []
    for _ in range(runs):
        t0 = time.monotonic()
        p = subprocess.run(args, capture_output=True, text=True)
        best.append(time.monotonic() - t0)
        if p.returncode != 0:
            raise RuntimeError("%s: %s" % (args, p.stderr))
    best.sort()
    return best[len(best) // 2], p.stdout


def list_and_expire(results, store, conf, n, nrcpt, fill):
    """Times `list --rcpt` (median of runs) and one `expire` of the oldest
    of 30 days on a populated store, and records the row."""
    lt, out = timed([harness.CLI_BIN, "-c", conf, "list", "--rcpt", "user7@example.org",
                     "--limit", "50"])
    t0 = time.monotonic()
    p = subprocess.run([harness.CLI_BIN, "-c", conf, "expire", "--older-than", "29d"],
                       capture_output=True, text=True, check=True)
    et = time.monotonic() - t0
    row = {"store": store, "entries": n, "per_rcpt": n // nrcpt, "populate_s": fill,
           "list_rcpt_s": lt, "listed": len(out.splitlines()), "expire_s": et,
           "expire_out": p.stdout.strip()}
    results["store_curve"].append(row)
    log("store curve %-5s %8d entries (%d per rcpt): list --rcpt %.3f s, expire 1 of 30 days "
        "%.2f s (%s)" % (store, n, n // nrcpt, lt, et, row["expire_out"]))


def store_curve(tmp):
    counts = [1000, 10000, 100000] + ([1000000] if FULL else [])
    nrcpt = 1000
    pg = pg_cluster(tmp)
    for n in counts:
        d = os.path.join(tmp, "grow%d" % n)
        os.makedirs(d)
        conf = os.path.join(d, "q.conf")
        with open(conf, "w") as f:
            f.write("backend = file\nfile_root = %s/store\n" % d)
        t0 = time.monotonic()
        subprocess.run([os.path.join(BIN, "populate"), conf, str(n), "30", str(nrcpt), "2"],
                       check=True)
        fill = time.monotonic() - t0
        subprocess.run(["sync"])
        list_and_expire(results, "file", conf, n, nrcpt, fill)
        shutil.rmtree(d, ignore_errors=True)
        # PostgreSQL: rows generated with SQL in the schema's shape
        conninfo = harness.pg_fresh_db(pg)
        db = re.search(r"dbname=(\S+)", conninfo).group(1)
        t0 = time.monotonic()
        pg.psql("""
SELECT rq_ensure_partitions(current_date - d) FROM generate_series(0, 31) d;
CREATE TEMP TABLE g AS SELECT i, now() - (30 * 86400.0 * i / %(n)d) * interval '1 second' AS ts
  FROM generate_series(0, %(n)d - 1) i;
INSERT INTO contents SELECT encode(sha256(convert_to('c' || i, 'UTF8')), 'hex'),
  (ts AT TIME ZONE 'UTC')::date, 1400, convert_to(repeat('Cheap offers ', 108), 'UTF8') FROM g;
INSERT INTO messages (id, received_day, received_at, sha256, size, rcpts, qid, env_from, action,
  score, symbols, rspamd_server, hdr_from, hdr_subject)
  SELECT i + 1, (ts AT TIME ZONE 'UTC')::date, ts, encode(sha256(convert_to('c' || i, 'UTF8')), 'hex'),
  1400, jsonb_build_array('user' || (i %% %(r)d) || '@example.org'), 'P' || i, 's@spam.example',
  'add header', 10.3, '[{"name": "BAYES_SPAM", "score": 5.1}]', 'scan1', 's@spam.example',
  'offer number ' || i FROM g;
SELECT setval('messages_id_seq', %(n)d + 1);
INSERT INTO entries (id, received_day, received_at, message_id, rcpt, status_changed)
  SELECT substr(md5('e' || i), 1, 24), (ts AT TIME ZONE 'UTC')::date, ts, i + 1,
  'user' || (i %% %(r)d) || '@example.org', ts FROM g;
ANALYZE;
""" % {"n": n, "r": nrcpt}, dbname=db)
        fill = time.monotonic() - t0
        conf = os.path.join(tmp, "pg.conf")
        with open(conf, "w") as f:
            f.write("backend = pgsql\npgsql_conninfo = %s\n" % conninfo)
        list_and_expire(results, "pgsql", conf, n, nrcpt, fill)
        pg.psql("DROP DATABASE %s;" % db, dbname="postgres")
        save()


# ------------------------------------------------------------ main

def machine():
    m = {"nproc": os.cpu_count()}
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                m["cpu"] = ln.split(":", 1)[1].strip()
                break
    m["kernel"] = os.uname().release
    p = subprocess.run(["df", "-T", harness.tempfile.gettempdir()], capture_output=True, text=True)
    m["store_fs"] = p.stdout.splitlines()[-1].split()[:2]
    with open("/proc/loadavg") as f:
        m["loadavg_start"] = f.read().split()[:3]
    return m


def save():
    with open(OUT, "w") as f:
        json.dump(results, f, indent=1)


def main():
    parts = sys.argv[1:] or ["load", "storage", "size", "store", "users"]
    results["machine"] = machine()
    results["settings"] = {"dur": DUR, "quick": QUICK, "full": FULL, "servers": SERVERS,
                           "spread": SPREAD, "fs": FSES}
    log("machine: %s" % json.dumps(results["machine"]))
    t0 = time.monotonic()
    with harness.tempdir("rq-bench-") as tmp:
        try:
            if "load" in parts:
                load_all(tmp)
            if "storage" in parts:
                storage_cost(tmp)
            if "size" in parts:
                size_curve(tmp)
            if "store" in parts:
                store_curve(tmp)
            if "users" in parts:
                import users  # the users' digest and pages (bench/users.py)
                users.run(tmp, results, pg_cluster(tmp), BIN, max(2, int(DUR)), log)
        finally:
            if _pg[0] is not None:
                _pg[0].stop()
    with open("/proc/loadavg") as f:
        results["machine"]["loadavg_end"] = f.read().split()[:3]
    results["total_s"] = time.monotonic() - t0
    save()
    log("total %.0f s; figures in %s" % (results["total_s"], OUT))


if __name__ == "__main__":
    main()
