#!/usr/bin/env python3
"""test_powercut.py - what a power cut under load leaves behind, for the
file store on ext4, ext4 without a journal and XFS, and for PostgreSQL.

A process kill (test_faults.py) does not show what a power cut leaves: the
page cache survives a kill.  Here the file system under test lives on a
loop device whose image is a file on an XFS file system made with
reflink=1 (itself an image on a second loop device).  While the daemon
takes concurrent POSTs through nginx, `cp --reflink=always` of the inner
image at random instants gives the disk exactly as a power cut at that
instant would leave it: FICLONE first writes back what the inner file
system has handed to its block device, and nothing that is still only in
its page cache.  Each copy is then recovered as after a reboot (journal
replay on mount; `e2fsck -y` without a journal), mounted, and checked:

- every message answered 200 before the copy began is there for each of
  its recipients, byte-exact;
- every entry `list` shows reads back whole and matches its SHA-256;
- the daemon starts on the recovered store and takes new mail; `expire`
  and `stats` work.

The same for PostgreSQL with its data directory on the loop file system
and a server started on each copy.

That the oracle can fail is shown by the same run with fsync made a no-op
(an LD_PRELOAD shim built here: fsync, fdatasync, syncfs, sync,
sync_file_range and msync return at once, and io_uring cannot be set up,
so that no flush can go around the shim): those copies
must show messages answered 200 and lost.

Needs root and loop devices; a machine without them fails this suite with
a message saying so (it is never skipped).  Only loop devices this file
attached (`losetup -f --show`) are detached, also on failure."""

import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

F01 = "01-plain.default.http"
LOAD_SECONDS = float(os.environ.get("RQ_POWERCUT_SECONDS", "4"))
COPIES = int(os.environ.get("RQ_POWERCUT_COPIES", "3"))
THREADS = 8
USERS = ["u%d@d%d.example" % (i, i % 3) for i in range(24)]

SHIM_C = r"""
/* No-op durability for the power-cut suite's negative run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
struct io_uring;
struct io_uring_params;
int fsync(int fd) { (void)fd; return 0; }
int fdatasync(int fd) { (void)fd; return 0; }
int syncfs(int fd) { (void)fd; return 0; }
void sync(void) { }
int sync_file_range(int fd, off_t o, off_t n, unsigned int f)
{ (void)fd; (void)o; (void)n; (void)f; return 0; }
int msync(void *a, size_t n, int f) { (void)a; (void)n; (void)f; return 0; }
int io_uring_queue_init(unsigned e, struct io_uring *r, unsigned f)
{ (void)e; (void)r; (void)f; return -ENOSYS; }
int io_uring_queue_init_params(unsigned e, struct io_uring *r, struct io_uring_params *p)
{ (void)e; (void)r; (void)p; return -ENOSYS; }
"""


def run(args, check=True, **kw):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), p.returncode,
                                                   p.stderr.decode(errors="replace").strip()))
    return p


def loop_precondition():
    """None if this machine can run the suite, else why not."""
    if not h.IS_ROOT:
        return "needs root (loop devices, mounts)"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices on this machine (/dev/loop-control is missing)"
    for tool in ("losetup", "mkfs.xfs", "mkfs.ext4", "e2fsck", "mount", "umount"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    return None


class Disks:
    """Loop devices and mounts made by this suite, undone in reverse
    order however the test ends: only what was attached here is
    detached."""

    def __init__(self):
        self.loops = []
        self.mounts = []

    def attach(self, image):
        p = run(["losetup", "-f", "--show", image], check=False)
        if p.returncode != 0:
            raise RuntimeError("cannot attach %s to a loop device (losetup -f --show): %s"
                               % (image, p.stderr.decode(errors="replace").strip()))
        dev = p.stdout.decode().strip()
        self.loops.append(dev)
        return dev

    def detach(self, dev):
        for _ in range(50):
            if run(["losetup", "-d", dev], check=False).returncode == 0:
                break
            time.sleep(0.1)
        if dev in self.loops:
            self.loops.remove(dev)

    def mount(self, dev, path, opts=None):
        os.makedirs(path, exist_ok=True)
        args = ["mount"] + (["-o", opts] if opts else []) + [dev, path]
        run(args)
        self.mounts.append(path)

    def umount(self, path):
        for _ in range(50):
            if run(["umount", path], check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            run(["umount", "-l", path], check=False)
        if path in self.mounts:
            self.mounts.remove(path)

    def cleanup(self):
        for m in reversed(list(self.mounts)):
            self.umount(m)
        for d in reversed(list(self.loops)):
            self.detach(d)


def mkfs(kind, dev):
    if kind == "ext4":
        run(["mkfs.ext4", "-q", "-F", dev])
    elif kind == "ext4-nojournal":
        run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", dev])
    elif kind == "xfs":
        run(["mkfs.xfs", "-q", "-f", dev])
    else:
        raise ValueError(kind)


def recover_and_mount(disks, kind, dev, path):
    """What a reboot does: e2fsck -y without a journal, journal replay by
    the mount otherwise.  XFS copies are mounted with nouuid: the original
    is still mounted with the same UUID.  Returns what e2fsck repaired (a
    list of its lines)."""
    fixed = []
    if kind == "ext4-nojournal":
        p = run(["e2fsck", "-f", "-y", dev], check=False)
        if p.returncode >= 4:
            raise AssertionError("e2fsck could not repair the copy (%d): %s"
                                 % (p.returncode, p.stdout.decode(errors="replace")[-2000:]))
        if p.returncode & 1:
            # what it repaired, for whoever reads a failure of this copy
            fixed = [ln for ln in p.stdout.decode(errors="replace").splitlines()
                     if ln and not ln.startswith(("Pass ", "e2fsck ", "/dev/"))]
            sys.stderr.write("  e2fsck repaired: %s\n" % " | ".join(fixed[:12]))
    disks.mount(dev, path, "nouuid" if kind == "xfs" else None)
    return fixed


def build_shim(tmp):
    src = os.path.join(tmp, "nofsync.c")
    so = os.path.join(tmp, "nofsync.so")
    with open(src, "w") as f:
        f.write(SHIM_C)
    run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-O2", "-o", so, src])
    os.chmod(tmp, 0o755)
    os.chmod(so, 0o755)
    return so


def preload(shim):
    """Puts the shim in LD_PRELOAD for the servers started next; returns
    what to restore.  A daemon built with AddressSanitizer (SAN=1) wants
    its runtime first among the preloaded libraries: told not to check."""
    old = (os.environ.get("LD_PRELOAD"), os.environ.get("ASAN_OPTIONS"))
    if shim:
        os.environ["LD_PRELOAD"] = shim
        os.environ["ASAN_OPTIONS"] = ":".join(
            x for x in (old[1], "verify_asan_link_order=0") if x)
    return old


def unpreload(shim, old):
    if not shim:
        return
    for k, v in zip(("LD_PRELOAD", "ASAN_OPTIONS"), old):
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def message(tag, i, rcpts, pad=0):
    """A unique request (fixture 01 with its own queue id, Subject and
    recipients): (qid, raw request, body)."""
    method, _, headers, body = h.split_request(h.fixture_request(F01))
    qid = "%s%06d" % (tag, i)
    body = body.replace(b"Subject:", b"Subject: %s" % qid.encode(), 1)
    if pad:
        body += (b"padding so that the message spans blocks\r\n" * (pad // 43 + 1))[:pad]
    hs = []
    for k, v in headers:
        lk = k.lower()
        if lk == "content-length":
            v = str(len(body))
        elif lk == "x-rspamd-qid":
            v = qid
        elif lk == "x-rspamd-rcpt":
            v = json.dumps(rcpts)
        hs.append((k, v))
    return qid, h.build_request(method, "/quarantine", hs, body), body


class Load:
    """Threads POSTing unique messages to 1-5 recipients until stopped;
    each 200 is kept with the instant its answer arrived."""

    def __init__(self, port, tag):
        self.port = port
        self.tag = tag
        self.ok = []       # (t_answered, qid, body, [(rcpt, id)])
        self.other = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True)
                        for k in range(THREADS)]

    def run(self, k):
        rnd = random.Random(k * 7919 + hash(self.tag) % 1000)
        i = 0
        while not self.stop.is_set():
            i += 1
            rcpts = rnd.sample(USERS, rnd.choice((1, 1, 2, 5)))
            pad = rnd.choice((0, 0, 0, 9000, 70000))
            qid, raw, body = message("%s%d" % (self.tag, k), i, rcpts, pad)
            try:
                status, _, rbody = h.http_raw(self.port, raw, timeout=60)
            except (OSError, ValueError):
                status, rbody = -1, b""
            t = time.monotonic()
            with self.lock:
                if status == 200:
                    ids = json.loads(rbody.decode())["ids"]
                    self.ok.append((t, qid, body, list(zip(rcpts, ids))))
                else:
                    self.other += 1

    def answered_before(self, t):
        with self.lock:
            return [m for m in self.ok if m[0] < t]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(90)


def take_copies(load, image, outdir, n, seconds):
    """Runs for about `seconds`, copying image n times at random instants;
    returns [(copy path, messages answered 200 before the copy began)].
    The clock starts with the first answers, so that no copy comes
    before there is anything to check (a loaded machine may take seconds
    to answer the first POST)."""
    deadline = time.monotonic() + 60
    while len(load.answered_before(time.monotonic())) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    start = time.monotonic()
    instants = sorted(random.uniform(0.4, seconds) for _ in range(n))
    copies = []
    for k, at in enumerate(instants):
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        dst = os.path.join(outdir, "copy%d.img" % k)
        t0 = time.monotonic()
        run(["cp", "--reflink=always", image, dst])
        copies.append((dst, load.answered_before(t0)))
    rest = start + seconds - time.monotonic()
    if rest > 0:
        time.sleep(rest)
    return copies


def user_dir(root, rcpt):
    local, dom = rcpt.lower().rsplit("@", 1)
    return os.path.join(root, "users", dom, local)


def what_is_left(root, ud, eid):
    """For a lost entry: which of its other names survived, to tell a
    commit that never happened from names the file system's repair lost."""
    left = []
    for name in (eid + ".eml", eid + ".eml.gz"):
        p = os.path.join(ud, name)
        if os.path.exists(p):
            left.append("%s (%d links)" % (name, os.stat(p).st_nlink))
    x = os.path.join(root, "ids", eid[:2], eid)
    if os.path.lexists(x):
        left.append("ids/%s/%s (%d links)" % (eid[:2], eid, os.lstat(x).st_nlink))
    try:
        n = len(os.listdir(ud))
    except OSError as e:
        n = "unreadable: %s" % e
    return "left: %s; %s names in its directory" % (", ".join(left) or "nothing", n)


def file_content(d, eid):
    for name, gz in ((eid + ".eml", False), (eid + ".eml.gz", True)):
        p = os.path.join(d, name)
        if os.path.exists(p):
            with open(p, "rb") as f:
                data = f.read()
            return gzip.decompress(data) if gz else data
    return None


class PowerCutCase(h.ServerTestCase):
    tmp_prefix = "rq-powercut-"
    maxDiff = None  # a failure shows every problem of its copy
    repaired = []   # what e2fsck repaired on the copy being checked

    def setUp(self):
        super().setUp()
        why = loop_precondition()
        if why:
            self.fail("power-cut suite cannot run: " + why)
        self.disks = Disks()
        self.addCleanup(self.disks.cleanup)
        # The outer file system: XFS with reflink, on an image in tmp.
        outer_img = os.path.join(self.tmp, "outer.img")
        with open(outer_img, "wb") as f:
            f.truncate(4 << 30)
        dev = self.disks.attach(outer_img)
        run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", dev])
        self.outer = os.path.join(self.tmp, "outer")
        self.disks.mount(dev, self.outer)

    def inner(self, kind):
        """The file system under test on its own loop device: (image,
        mount point)."""
        img = os.path.join(self.outer, "inner-%s.img" % kind)
        with open(img, "wb") as f:
            f.truncate(600 << 20)
        dev = self.disks.attach(img)
        mkfs(kind, dev)
        mnt = os.path.join(self.tmp, "mnt-" + kind)
        self.disks.mount(dev, mnt)
        os.chmod(mnt, 0o755)
        self.inner_dev = dev
        return img, mnt

    def close_inner(self, mnt):
        self.disks.umount(mnt)
        self.disks.detach(self.inner_dev)

    def open_copy(self, kind, img, k):
        dev = self.disks.attach(img)
        mnt = os.path.join(self.tmp, "copy-%s-%d" % (kind, k))
        self.repaired = recover_and_mount(self.disks, kind, dev, mnt)
        return dev, mnt

    def close_copy(self, dev, mnt, img):
        self.disks.umount(mnt)
        self.disks.detach(dev)
        os.unlink(img)

    def assert_shimmed(self, pids, shim):
        """The no-fsync shim is loaded in every one of pids."""
        self.assertTrue(pids, "no server processes to look at")
        for pid in pids:
            with open("/proc/%d/maps" % pid) as f:
                self.assertIn(shim, f.read(), "pid %d runs without the no-fsync shim" % pid)

    def under_load(self, port, image, tag):
        load = Load(port, tag)
        load.start()
        try:
            copies = take_copies(load, image, self.outer, COPIES, LOAD_SECONDS)
        finally:
            load.finish()
        self.assertGreater(len(load.ok), 20, "too few messages stored under load "
                           "(%d 200s, %d other answers)" % (len(load.ok), load.other))
        return load, copies

    def new_mail_works(self, daemon_kw, tag):
        """The daemon starts on the recovered store and takes new mail;
        expire and stats work."""
        d = h.Daemon(self.tmp, name="after-" + tag, workers=2, **daemon_kw)
        self.add_log("daemon after " + tag, d.log)
        with d:
            ng = h.Nginx(self.tmp, d.socket, name="nginx-after-" + tag).start()
            try:
                qid, raw, body = message("NEW" + tag[:6], 1, ["late@d9.example"])
                status, _, rb = h.http_raw(ng.port, raw)
                self.assertEqual(status, 200, rb)
                eid = json.loads(rb.decode())["ids"][0]
                rc, out, err = d.cli("cat", eid)
                self.assertEqual((rc, out), (0, body), err)
            finally:
                ng.stop()
            rc, out, err = d.cli("expire", "--older-than", "30d")
            self.assertEqual(rc, 0, "expire on the recovered store: " + err)
            rc, out, err = d.cli("stats", "--json")
            self.assertEqual(rc, 0, "stats on the recovered store: " + err)
            st = json.loads(out.decode())
            self.assertGreaterEqual(int(st["entries"]), 1, st)
            return d


class FileStorePowerCut(PowerCutCase):
    """The file store on each file system; with fsync a no-op on one."""

    def check_file_copy(self, mnt, answered, tag):
        """Problems found in a recovered copy (a list of strings)."""
        root = os.path.join(mnt, "store")
        conf = os.path.join(self.tmp, "check-%s.conf" % tag)
        d = h.Daemon(self.tmp, name="check-" + tag, extra_conf={"file_root": root})
        conf = d.conf
        problems = []
        waldir = os.path.join(root, "wal")
        logs = [n for n in os.listdir(waldir) if not n.startswith(".")] \
            if os.path.isdir(waldir) else []
        sys.stderr.write("  %s: %d write-ahead log files to replay\n" % (tag, len(logs)))
        # The operator's tool first: whatever recovery the store does on
        # opening happens here, as it would after a reboot.
        rc, out, err = h.cli(conf, "list", "--json")
        if rc != 0:
            problems.append("list failed on the recovered store (%d): %s" % (rc, err))
            listed = []
        else:
            listed = json.loads(out.decode())
        for _, qid, body, pairs in answered:
            for rcpt, eid in pairs:
                ud = user_dir(root, rcpt)
                if not os.path.exists(os.path.join(ud, eid + ".json")):
                    problems.append("lost: %s for %s (entry %s has no .json; %s)"
                                    % (qid, rcpt, eid, what_is_left(root, ud, eid)))
                    continue
                got = file_content(ud, eid)
                if got is None:
                    problems.append("lost: %s for %s (entry %s has no content)" % (qid, rcpt, eid))
                elif got != body:
                    problems.append("mangled: %s for %s (%d bytes, expected %d)"
                                    % (qid, rcpt, len(got), len(body)))
        ids = {e["id"] for e in listed}
        for _, qid, _, pairs in answered:
            for rcpt, eid in pairs:
                if eid not in ids and not any(p.startswith("lost: %s for %s " % (qid, rcpt))
                                              for p in problems):
                    problems.append("not listed: %s for %s (%s)" % (qid, rcpt, eid))
        sample = random.sample(listed, min(25, len(listed)))
        for e in listed:
            got = file_content(user_dir(root, e["rcpt"]), e["id"])
            if got is None:
                problems.append("half entry listed: %s has no content" % e["id"])
            elif hashlib.sha256(got).hexdigest() != e["sha256"] or len(got) != int(e["size"]):
                problems.append("listed entry %s does not match its SHA-256" % e["id"])
        for e in sample:
            rc, out, err = h.cli(conf, "cat", e["id"])
            if rc != 0 or hashlib.sha256(out).hexdigest() != e["sha256"]:
                problems.append("cat %s: rc %d, %s" % (e["id"], rc, err.strip()))
        if problems and self.repaired:
            # what the file system's repair did is most of the story
            problems.append("e2fsck repaired: " + " | ".join(self.repaired))
        return problems

    def file_run(self, kind, expect_sync, shim=None, compress=None):
        """The load, the copies and their checks for the file store on a
        file system of this kind; expect_sync is what file_sync = auto
        must choose there (the daemon's debug line says)."""
        img, mnt = self.inner(kind)
        root = os.path.join(mnt, "store")
        os.makedirs(root)
        h._chown_run_user(root)
        os.chmod(root, 0o700)
        os.sync()  # the empty store exists before the load, shim or not
        conf = {"file_root": root}
        if compress:
            conf["compress"] = compress
        old = preload(shim)
        os.environ["RSPAMD_QUARANTINE_DEBUG"] = "1"
        try:
            s = self.stack(backend="file", extra_conf=conf, workers=4, paths=())
        finally:
            del os.environ["RSPAMD_QUARANTINE_DEBUG"]
            unpreload(shim, old)
        self.assertTrue(h._wait_for(lambda: "file_sync auto:" in s.daemon.log(), 10),
                        "no worker said what file_sync auto chose")
        chose = [ln for ln in s.daemon.log().splitlines() if "file_sync auto:" in ln]
        self.assertTrue(all(ln.endswith(", " + expect_sync) for ln in chose),
                        "%s: file_sync auto should choose %r: %r" % (kind, expect_sync, chose))
        if shim:
            self.assert_shimmed(s.daemon.worker_pids(), shim)
        load, copies = self.under_load(s.port, img, kind[:4].upper())
        s.stop()
        self.close_inner(mnt)
        results = []
        for k, (cimg, answered) in enumerate(copies):
            dev, cmnt = self.open_copy(kind, cimg, k)
            try:
                probs = self.check_file_copy(cmnt, answered, "%s-%d" % (kind, k))
                if not shim and not probs:
                    self.new_mail_works({"backend": "file",
                                         "extra_conf": dict(conf, file_root=os.path.join(
                                             cmnt, "store"))}, "%s-%d" % (kind, k))
            finally:
                self.close_copy(dev, cmnt, cimg)
            results.append((len(answered), probs))
            sys.stderr.write("  %s%s copy %d: %d messages answered before it, %d problems\n"
                             % (kind, " (no fsync)" if shim else "", k, len(answered),
                                len(probs)))
        return load, results

    def assert_clean(self, kind, results):
        bad = ["copy %d: %s" % (k, "; ".join(p[:8] + p[-1:] if len(p) > 8 else p))
               for k, (_, p) in enumerate(results) if p]
        self.assertEqual(bad, [], "%s: a power cut lost or mangled mail" % kind)

    def test_ext4(self):
        self.assert_clean("ext4", self.file_run("ext4", "write-ahead log")[1])

    def test_ext4_without_journal(self):
        self.assert_clean("ext4-nojournal",
                          self.file_run("ext4-nojournal", "two phases, each a syncfs and a flush",
                                        compress="gzip")[1])

    def test_xfs(self):
        self.assert_clean("xfs", self.file_run("xfs", "write-ahead log")[1])

    def test_oracle_fails_without_fsync(self):
        shim = build_shim(tempfile.mkdtemp(prefix="rq-shim-", dir=self.tmp))
        _, results = self.file_run("xfs", "write-ahead log", shim=shim)
        lost = sum(1 for _, p in results for x in p if x.startswith("lost"))
        self.assertGreater(lost, 0, "with fsync a no-op the copies lost nothing: "
                           "the suite cannot tell a durable store from one that is not "
                           "(%r)" % [(n, p[:3]) for n, p in results])


class PgsqlPowerCut(PowerCutCase):
    """PostgreSQL with its data directory on the loop file system."""

    def check_pg_copy(self, mnt, answered, tag):
        pgmod = h._pgcluster_class()
        pg = pgmod(os.path.join(mnt, "pg"))
        # after a real power cut no process holds that pid any more
        try:
            os.unlink(os.path.join(pg.datadir, "postmaster.pid"))
        except FileNotFoundError:
            pass
        try:
            pg.start_server()
        except RuntimeError as e:
            return pg, None, ["lost: every message: PostgreSQL does not start on the "
                              "copy: %s" % str(e)[-300:]]
        self.addCleanup(pg.stop)
        dbs = pg.query("SELECT datname FROM pg_database WHERE datname LIKE 'rq\\_%'",
                       dbname="postgres")
        if len(dbs) != 1:
            return pg, None, ["the copy has %d quarantine databases, not 1" % len(dbs)]
        db = dbs[0][0]
        rows = pg.query(
            "SELECT e.id, e.rcpt, encode(sha256(c.content), 'hex'), c.size "
            "FROM entries e JOIN messages m ON m.id = e.message_id "
            "AND m.received_day = e.received_day "
            "JOIN contents c ON c.sha256 = m.sha256 AND c.received_day = m.received_day",
            dbname=db)
        have = {r[0]: r for r in rows}
        problems = []
        for _, qid, body, pairs in answered:
            want = hashlib.sha256(body).hexdigest()
            for rcpt, eid in pairs:
                r = have.get(eid)
                if r is None:
                    problems.append("lost: %s for %s (entry %s)" % (qid, rcpt, eid))
                elif r[1].lower() != rcpt.lower() or r[2] != want or int(r[3]) != len(body):
                    problems.append("mangled: %s for %s: %r" % (qid, rcpt, r))
        return pg, db, problems

    def pg_run(self, kind, shim=None):
        img, mnt = self.inner(kind)
        pgmod = h._pgcluster_class()
        pg = pgmod(os.path.join(mnt, "pg"))
        old = preload(shim)
        try:
            pg.start()
            self.addCleanup(pg.stop)
            s = self.stack(backend="pgsql", pg=pg, workers=4, paths=())
            # the cluster and its database exist before the load, whatever
            # the shim does to the server's own syncs
            os.sync()
        finally:
            unpreload(shim, old)
        if shim:
            self.assert_shimmed([pg.pid], shim)
        load, copies = self.under_load(s.port, img, "PG" + kind[:2].upper())
        s.stop()
        pg.stop()
        self.close_inner(mnt)
        results = []
        for k, (cimg, answered) in enumerate(copies):
            dev, cmnt = self.open_copy(kind, cimg, k)
            cpg = None
            try:
                cpg, db, probs = self.check_pg_copy(cmnt, answered, "%s-%d" % (kind, k))
                if not shim and not probs:
                    self.new_mail_works({"backend": "pgsql",
                                         "conninfo": cpg.conninfo(dbname=db)},
                                        "pg-%s-%d" % (kind, k))
            finally:
                if cpg is not None:
                    cpg.stop()
                self.close_copy(dev, cmnt, cimg)
            results.append((len(answered), probs))
            sys.stderr.write("  pgsql on %s%s copy %d: %d messages answered before it, "
                             "%d problems\n" % (kind, " (no fsync)" if shim else "", k,
                                                len(answered), len(probs)))
        return results

    def test_pgsql_ext4(self):
        results = self.pg_run("ext4")
        bad = ["copy %d: %s" % (k, "; ".join(p[:8])) for k, (_, p) in enumerate(results) if p]
        self.assertEqual(bad, [], "PostgreSQL: a power cut lost or mangled mail")

    def test_pgsql_oracle_fails_without_fsync(self):
        shim = build_shim(tempfile.mkdtemp(prefix="rq-shim-", dir=self.tmp))
        results = self.pg_run("ext4", shim=shim)
        lost = sum(1 for _, p in results for x in p if x.startswith("lost"))
        self.assertGreater(lost, 0, "PostgreSQL with fsync a no-op lost nothing: "
                           "the oracle cannot fail (%r)" % [(n, p[:3]) for n, p in results])


if __name__ == "__main__":
    h.main()
