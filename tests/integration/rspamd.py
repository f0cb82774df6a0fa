"""rspamd.py - a private Rspamd for the end-to-end tests, from Debian's
`rspamd` package, beside any other Rspamd on the machine: the host's
(Debian 12: 3.4) or, with `chroot=`, a newer one (4.x) from the Debian sid
chroot that rspamd_chroot.sh builds once per machine.  Python 3 standard
library only.

The packaged configuration (/etc/rspamd/rspamd.conf) is used as it is;
everything that belongs to one instance is moved into a directory of our
own with `--var`: the local overlay (LOCAL_CONFDIR), the databases
(DBDIR), the pid file (RUNDIR) and the log (LOGDIR).  The overlay holds:

    local.d/metadata_exporter.conf   contrib/rspamd/local.d/metadata_exporter
                                     .conf as shipped; only its url (the
                                     address the rule posts to) is replaced,
                                     and for Rspamd 4.x (generation="4") its
                                     4.x rule is the active one
    local.d/options.inc              DNS pointed at a closed loopback port
                                     with a 50 ms timeout and no retries:
                                     every query fails at once and a scan
                                     takes ~0.2 s instead of waiting on a
                                     resolver
    override.d/worker-normal.inc     the scanner, on a free loopback port
    override.d/worker-controller.inc the controller (rspamc stat), likewise
    override.d/worker-proxy.inc      the milter proxy, likewise
    ...                              whatever the test adds (`files`)

Rspamd refuses to run as root: it is started as root with `-u _rspamd -g
_rspamd` (the package's user), and the instance directory belongs to that
user.  It runs in the foreground (`-f`), so the process started here is the
main process; it is stopped by that pid (and its workers, found through
/proc, if it does not take them along), never by name.

    r = Rspamd(tmp, url="http://127.0.0.1:PORT/quarantine",
               files={"local.d/actions.conf": "..."})
    with r:                            # start() ... stop(), log on failure
        r.scan(path, "--from", ...)    # rspamc against this instance
        r.scan_json(path, ...)         # rspamc -j, parsed
        r.log()                        # the instance's log so far

In a chroot, Rspamd runs in a mount namespace of its own (`unshare -m`):
/proc, /sys and /dev are bind-mounted into the chroot and the instance
directory onto /rq-instance there, inside that namespace only, so the
mounts vanish with the process whatever happens to it, and two instances
never see each other's.  rspamc is the chroot's too, run the same way.

    r = Rspamd(tmp, url, chroot=chroot_dir(), generation="4")

A component that cannot start raises RuntimeError with its log: the test
fails, it is never skipped.  So does a chroot that cannot be built
(ensure_chroot() raises with the build's log).
"""

import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

from harness import _children, _read, free_port as _free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXPORTER_CONF = os.path.join(ROOT, "contrib", "rspamd", "local.d",
                             "metadata_exporter.conf")
PACKAGED_CONF = "/etc/rspamd/rspamd.conf"
RSPAMD_USER = "_rspamd"
# The address the shipped rules post to; the only thing the tests change.
EXPORTER_URL_TOKEN = "http://127.0.0.1:11380/quarantine"
# The shipped file's 4.x rule, commented out between these lines.
RULE4_BEGIN = "  # BEGIN rule for Rspamd 4.x\n"
RULE4_END = "  # END rule for Rspamd 4.x\n"
CHROOT_SCRIPT = os.path.join(HERE, "rspamd_chroot.sh")
# Where rspamd_chroot.sh builds the chroot (RQ_RSPAMD_CHROOT overrides).
CHROOT_DEFAULT = "/var/cache/rspamd-quarantine-tests/rspamd-sid"
# The instance directory as Rspamd in the chroot sees it.
CHROOT_INSTANCE = "/rq-instance"




def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(b")") + 2:].split()[0] != b"Z"


def exporter_conf(url, generation="3"):
    """The shipped metadata_exporter.conf with every occurrence of its
    example url replaced by url.  For generation "4" the rule for Rspamd
    3.4 to 3.12 is taken out and the 4.x rule uncommented, as the file
    tells an administrator to do; nothing else changes."""
    with open(EXPORTER_CONF) as f:
        text = f.read()
    if EXPORTER_URL_TOKEN not in text:
        raise RuntimeError("%s no longer contains %s" % (EXPORTER_CONF, EXPORTER_URL_TOKEN))
    if generation == "4":
        m = re.search(r"^  QUARANTINE \{\n.*?^  \}\n", text, re.M | re.S)
        b, e = text.find(RULE4_BEGIN), text.find(RULE4_END)
        if m is None or b < 0 or e < b:
            raise RuntimeError("%s: no active QUARANTINE rule or no 4.x rule between %r and %r"
                               % (EXPORTER_CONF, RULE4_BEGIN, RULE4_END))
        rule = "".join(re.sub(r"^(\s*)#", r"\1", ln, count=1) for ln in
                       text[b + len(RULE4_BEGIN):e].splitlines(True))
        text = text[:b] + rule + text[e + len(RULE4_END):]
        text = text[:m.start()] + text[m.end():]
    return text.replace(EXPORTER_URL_TOKEN, url)


def chroot_dir():
    return os.environ.get("RQ_RSPAMD_CHROOT", CHROOT_DEFAULT)


def ensure_chroot(path=None, timeout=1800):
    """The sid chroot with Rspamd 4.x, built by rspamd_chroot.sh if it is
    not there yet (minutes, once per machine); RuntimeError with the
    build's log if it cannot be built."""
    path = path or chroot_dir()
    if os.path.exists(path + ".stamp") and os.access(os.path.join(path, "usr/bin/rspamd"),
                                                     os.X_OK):
        return path
    p = subprocess.run(["sh", CHROOT_SCRIPT, path], capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError("the Rspamd 4.x chroot could not be built (%s, exit %d):\n%s\n%s"
                           % (CHROOT_SCRIPT, p.returncode,
                              p.stdout.decode("utf-8", "replace")[-20000:],
                              p.stderr.decode("utf-8", "replace")[-20000:]))
    return path


def _chroot_ids(root):
    """uid and gid of the Rspamd user inside the chroot."""
    with open(os.path.join(root, "etc", "passwd")) as f:
        for ln in f:
            p = ln.split(":")
            if p[0] == RSPAMD_USER:
                return int(p[2]), int(p[3])
    raise RuntimeError("no user %s in %s/etc/passwd" % (RSPAMD_USER, root))


class Rspamd:
    """A private Rspamd instance in tmp/name (see module doc).

    url        where the shipped metadata_exporter rules post to
    files      {path relative to the overlay: text} added to the overlay
               (e.g. "local.d/actions.conf", "rspamd.local.lua")
    secure_ip  the controller's secure_ip (trusted without its password);
               the default trusts loopback
    password   the controller's password; Rspamd refuses its default "q1"
               from addresses outside secure_ip
    chroot     run the Rspamd of this chroot (see ensure_chroot) instead
               of the host's
    generation "3" or "4": which of the shipped rules is active
    """

    def __init__(self, tmp, url, files=None, name="rspamd", secure_ip="127.0.0.1",
                 password="q1", chroot=None, generation="3"):
        self.chroot = chroot
        self.generation = generation
        self.dir = os.path.join(tmp, name)
        self.local = os.path.join(self.dir, "local")
        self.dbdir = os.path.join(self.dir, "db")
        self.rundir = os.path.join(self.dir, "run")
        self.logdir = os.path.join(self.dir, "log")
        self.logfile = os.path.join(self.logdir, "rspamd.log")
        self.stderr_log = os.path.join(self.dir, "stderr.log")
        self.pidfile = os.path.join(self.rundir, "rspamd.pid")
        self.url = url
        self.normal_port = _free_port()
        self.controller_port = _free_port()
        self.proxy_port = _free_port()
        # Nothing listens here: queries fail at once instead of timing out.
        self.dns_port = _free_port()
        self.proc = None
        self.pid = None
        self.files = dict(files or {})
        # Clients the controller trusts without a password: a test of the
        # password names an address that is not ours (TEST-NET-1).
        self.secure_ip = secure_ip
        self.password = password
        self._write()

    @property
    def normal(self):
        return "127.0.0.1:%d" % self.normal_port

    @property
    def controller(self):
        return "127.0.0.1:%d" % self.controller_port

    def _write(self):
        for d in (self.dir, self.local, os.path.join(self.local, "local.d"),
                  os.path.join(self.local, "override.d"), self.dbdir, self.rundir,
                  self.logdir):
            os.makedirs(d, exist_ok=True)
        base = {
            "local.d/metadata_exporter.conf": exporter_conf(self.url, self.generation),
            "local.d/options.inc":
                "# private instance: no resolver, so no scan waits on DNS\n"
                "dns {\n  nameserver = [\"127.0.0.1:%d\"];\n  timeout = 0.05s;\n"
                "  retransmits = 0;\n}\n" % self.dns_port,
            "override.d/worker-normal.inc":
                "bind_socket = \"%s\";\ncount = 1;\nmime = true;\n" % self.normal,
            "override.d/worker-controller.inc":
                "bind_socket = \"%s\";\ncount = 1;\npassword = \"%s\";\n"
                "secure_ip = \"%s\";\n" % (self.controller, self.password, self.secure_ip),
            "override.d/worker-proxy.inc":
                "bind_socket = \"127.0.0.1:%d\";\ncount = 1;\nmilter = yes;\n"
                "upstream \"local\" {\n  default = yes;\n  self_scan = yes;\n}\n"
                % self.proxy_port,
        }
        base.update(self.files)
        for rel, text in base.items():
            p = os.path.join(self.local, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
        self._own()

    def _own(self):
        """The instance directory belongs to the user Rspamd runs as; its
        parents must be traversable by it."""
        if os.geteuid() != 0:
            return
        if self.chroot:
            uid, gid = _chroot_ids(self.chroot)
        else:
            pw = pwd.getpwnam(RSPAMD_USER)
            uid, gid = pw.pw_uid, pw.pw_gid
        d = os.path.dirname(self.dir)
        while d not in ("/", ""):
            st = os.stat(d)
            if not st.st_mode & 0o001:
                os.chmod(d, st.st_mode | 0o001)
            d = os.path.dirname(d)
        for top, dirs, files in os.walk(self.dir):
            os.chown(top, uid, gid)
            for n in files:
                os.chown(os.path.join(top, n), uid, gid)

    def _inner(self, path):
        """A path of the instance directory as Rspamd sees it."""
        if not self.chroot:
            return path
        return CHROOT_INSTANCE + path[len(self.dir):]

    def in_chroot(self, argv):
        """argv run inside the chroot, in a mount namespace of its own
        with /proc, /sys, /dev and the instance directory bound in."""
        if not self.chroot:
            return argv
        script = ('set -e; r="$1"; d="$2"; shift 2; '
                  'for m in proc sys dev; do mount --bind "/$m" "$r/$m"; done; '
                  'mkdir -p "$r%s"; mount --bind "$d" "$r%s"; '
                  'exec chroot "$r" "$@"' % (CHROOT_INSTANCE, CHROOT_INSTANCE))
        return (["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                 "sh", self.chroot, self.dir] + argv)

    def args(self):
        a = ["rspamd", "-f", "-c", PACKAGED_CONF,
             "--var", "LOCAL_CONFDIR=" + self._inner(self.local),
             "--var", "DBDIR=" + self._inner(self.dbdir),
             "--var", "RUNDIR=" + self._inner(self.rundir),
             "--var", "LOGDIR=" + self._inner(self.logdir)]
        if os.geteuid() == 0:
            if not self.chroot:
                grp.getgrnam(RSPAMD_USER)
            a[1:1] = ["-u", RSPAMD_USER, "-g", RSPAMD_USER]
        elif self.chroot:
            raise RuntimeError("Rspamd in a chroot needs root")
        return self.in_chroot(a)

    def log(self):
        return ("---- rspamd stderr ----\n" + _read(self.stderr_log)
                + "\n---- rspamd log ----\n" + _read(self.logfile))

    def rspamc(self, *args, host=None, timeout=60, input=None):
        """Runs rspamc against this instance; (rc, stdout bytes, stderr)."""
        argv = ["rspamc", "-h", host or self.normal, "-t", "30"]
        argv += [self._inner(a) if isinstance(a, str) and a.startswith(self.dir + "/")
                 else str(a) for a in args]
        p = subprocess.run(self.in_chroot(argv),
                           input=input, capture_output=True, timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")

    def _ready(self):
        if self.proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.normal_port), timeout=1):
                pass
        except OSError:
            return False
        rc, out, _ = self.rspamc("-P", self.password, "stat", host=self.controller, timeout=10)
        return rc == 0 and b"Messages scanned" in out

    def start(self, timeout=60):
        """Starts the instance; returns when both the controller answers
        `rspamc stat` and the scanner accepts connections."""
        if self.chroot:
            if not os.access(os.path.join(self.chroot, "usr/bin/rspamd"), os.X_OK):
                raise RuntimeError("no rspamd in the chroot %s" % self.chroot)
        elif shutil.which("rspamd") is None or shutil.which("rspamc") is None:
            raise RuntimeError("rspamd/rspamc not found: install Debian's rspamd package")
        with open(self.stderr_log, "ab") as log:
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.dir, start_new_session=True)
        self.pid = self.proc.pid
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise RuntimeError("rspamd exited with %s at start-up; args %r\n%s"
                                   % (rc, self.args(), self.log()))
            if self._ready():
                break
            if time.monotonic() > end:
                self.stop()
                raise RuntimeError("rspamd not ready after %ds\n%s" % (timeout, self.log()))
            time.sleep(0.2)
        with contextlib.suppress(OSError, ValueError):
            with open(self.pidfile) as f:
                filepid = int(f.read().strip())
            if filepid != self.pid:
                self.stop()
                raise RuntimeError("rspamd.pid says %d, started %d" % (filepid, self.pid))
        return self

    def stop(self, timeout=20):
        """SIGTERM to the main process we started, then its workers and
        SIGKILL if they linger."""
        if self.proc is None:
            return
        kids = _children(self.pid)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        end = time.monotonic() + 5
        for k in kids:
            while _alive(k) and time.monotonic() < end:
                time.sleep(0.05)
            if _alive(k):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(k, signal.SIGKILL)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        if et is not None:
            sys.stderr.write("%s\n" % self.log()[-20000:])
        self.stop()
        return False

    # ------------------------------------------------------------ scanning

    def _scan(self, path, args):
        """rspamc args path; in a chroot, where the file is not to be seen,
        the message goes on rspamc's standard input instead."""
        if not self.chroot:
            return self.rspamc(*(list(args) + [path]))
        with open(path, "rb") as f:
            data = f.read()
        return self.rspamc(*args, input=data)

    def scan(self, path, *args):
        """rspamc [args] path: (rc, stdout text, stderr)."""
        rc, out, err = self._scan(path, args)
        return rc, out.decode("utf-8", "replace"), err

    def scan_json(self, path, *args):
        """rspamc -j [args] path, parsed: Rspamd's own result (the
        metric's action, score and symbols)."""
        rc, out, err = self._scan(path, ["-j"] + list(args))
        if rc != 0:
            raise AssertionError("rspamc -j %s failed (%d): %s %s"
                                 % (path, rc, out[:2000], err))
        text = out.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            # Some releases print a line before the JSON object.
            m = re.search(r"\{.*\}\s*$", text, re.S)
            if not m:
                raise AssertionError("rspamc -j printed no JSON: %r" % text[:2000])
            return json.loads(m.group(0))


if __name__ == "__main__":
    # Manual use: python3 rspamd.py URL  -> starts, prints addresses,
    # waits for Enter, stops.
    import tempfile
    d = tempfile.mkdtemp(prefix="rq-rspamd-")
    os.chmod(d, 0o755)
    try:
        with Rspamd(d, sys.argv[1] if len(sys.argv) > 1 else EXPORTER_URL_TOKEN) as r:
            print("normal %s controller %s dir %s" % (r.normal, r.controller, r.dir),
                  flush=True)
            try:
                input()
            except EOFError:
                pass
    finally:
        shutil.rmtree(d, ignore_errors=True)
