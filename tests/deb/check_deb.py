#!/usr/bin/env python3
"""check_deb.py - the Debian package, end to end, on this machine (root).

    python3 tests/deb/check_deb.py        (make check-deb)

1. copies the tree (tracked and untracked-but-not-ignored files) into a
   temporary directory and runs `dpkg-buildpackage -us -uc -b` there, so
   nothing lands beside the clone;
2. lintian: no error, and no warning that is not overridden with a reason;
3. `apt-get install ./rspamd-quarantine_*.deb`: the user, the store and
   the configuration with the README's owners and modes;
4. starts the daemon as its units would without systemd as PID 1: the
   socket unit's socket made as it says (owner, group, mode) and handed
   over as systemd does (LISTEN_PID/LISTEN_FDS, fd 3), ExecStartPre and
   ExecStart run as the service's User with its UMask; nginx with the
   installed server block; a message posted through nginx; /health and
   /metrics; the message listed with the installed CLI; the cron job's
   command run as its user;
5. reinstall (the upgrade path) keeps an edited configuration and the store;
6. remove keeps configuration and store; purge removes what the package
   made but leaves the quarantined mail and its owner; a purge after
   `touch /etc/rspamd-quarantine/purge-store` removes the store and the
   user too, and nothing of the package is left.

Everything it starts is stopped by pid; the package is purged again at the
end whatever happened.  It refuses to run (a failure) on a machine where
the package, its user or its directories already exist: those are not its
own to remove.  Prints one line per check and ends with
"N passed, N failed"."""

import fcntl
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
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness as h  # noqa: E402

PKG = "rspamd-quarantine"
USER = "_rspamd-quarantine"
STORE = "/var/lib/rspamd-quarantine"
ETC = "/etc/rspamd-quarantine"
CONF = ETC + "/quarantine.conf"
RUNDIR = "/run/rspamd-quarantine"
UNITDIR = "/lib/systemd/system"
POLICY = "/usr/sbin/policy-rc.d"
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "--no-install-recommends"]
# Everything the package installs or makes; none may be left at the end.
PACKAGE_PATHS = [
    "/usr/sbin/rspamd-quarantined", "/usr/bin/rspamd-quarantine",
    "/usr/share/rspamd-quarantine", "/usr/share/doc/rspamd-quarantine",
    "/usr/share/man/man8/rspamd-quarantined.8.gz",
    UNITDIR + "/rspamd-quarantined.service", UNITDIR + "/rspamd-quarantined.socket",
    "/usr/lib/tmpfiles.d/rspamd-quarantine.conf", "/etc/cron.d/rspamd-quarantine",
    "/etc/logrotate.d/rspamd-quarantine", ETC, RUNDIR, STORE,
    "/etc/systemd/system/multi-user.target.wants/rspamd-quarantined.service",
    "/etc/systemd/system/sockets.target.wants/rspamd-quarantined.socket",
]

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("deb: %s: ok" % name, flush=True)
    else:
        failed += 1
        print("deb: %s: FAILED %s" % (name, detail), flush=True)
    return ok


def run(args, **kw):
    """Runs args; (rc, stdout+stderr text)."""
    kw.setdefault("timeout", 1800)
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def known():
    """dpkg's status word for the package ('installed', 'config-files',
    'not-installed')."""
    rc, out = run(["dpkg-query", "-W", "-f=${Status}", PKG])
    return out.split()[-1] if rc == 0 and out.split() else "not-installed"


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def mode_owner(path):
    st = os.stat(path)
    return (st.st_mode & 0o7777, pwd.getpwuid(st.st_uid).pw_name,
            grp.getgrgid(st.st_gid).gr_name)


def unit(path):
    """{key: [values]} of a systemd unit file (sections merged)."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


# ------------------------------------------------------------ the stages

def build(tmp):
    """Copies the tree into tmp/src and builds; returns the .deb path."""
    src = os.path.join(tmp, "src", PKG)
    os.makedirs(src)
    rc, out = run(["git", "-C", ROOT, "ls-files", "-z", "-c", "-o", "--exclude-standard"])
    if rc != 0:
        check("copy of the tree", False, out)
        return None
    for rel in out.split("\0"):
        if not rel or not os.path.isfile(os.path.join(ROOT, rel)):
            continue
        dst = os.path.join(src, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), dst)
    rc, out = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src)
    debs = [f for f in os.listdir(os.path.dirname(src))
            if re.match(r"rspamd-quarantine_.*\.deb$", f)]
    if not check("dpkg-buildpackage -us -uc -b", rc == 0 and len(debs) == 1,
                 "(exit %d)\n%s" % (rc, out[-4000:])):
        return None
    changes = [f for f in os.listdir(os.path.dirname(src)) if f.endswith(".changes")]
    rc, out = run(["lintian", "--pedantic", "-i"] +
                  [os.path.join(os.path.dirname(src), c) for c in changes])
    bad = [ln for ln in out.splitlines() if re.match(r"^[EW]: ", ln)]
    check("lintian: no error, no warning without an override", not bad and rc == 0,
          "(exit %d)\n%s" % (rc, "\n".join(bad) or out[-3000:]))
    check("nothing written beside the tree",
          not os.path.exists(os.path.join(os.path.dirname(ROOT), debs[0])))
    return os.path.join(os.path.dirname(src), debs[0])


def apt_install(deb, reinstall=False):
    args = APT + ["install"] + (["--reinstall"] if reinstall else []) + [deb]
    return run(args, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def check_install():
    check("package installed", known() == "installed", known())
    check("system user %s" % USER, user_exists(USER) and pwd.getpwnam(USER).pw_uid < 1000
          and pwd.getpwnam(USER).pw_dir == STORE and group_exists(USER))
    if os.path.isdir(STORE):
        check("store %s 0700 %s" % (STORE, USER), mode_owner(STORE) == (0o700, USER, USER),
              mode_owner(STORE))
    else:
        check("store %s made" % STORE, False)
    check("configuration 0640 root:%s" % USER,
          os.path.exists(CONF) and mode_owner(CONF) == (0o640, "root", USER),
          mode_owner(CONF) if os.path.exists(CONF) else "missing")
    with open("/var/lib/dpkg/info/%s.conffiles" % PKG) as f:
        conffiles = f.read().split()
    check("conffiles", set(conffiles) >= {CONF, "/etc/cron.d/rspamd-quarantine",
                                          "/etc/logrotate.d/rspamd-quarantine"}, conffiles)
    for p in ("/usr/sbin/rspamd-quarantined", "/usr/bin/rspamd-quarantine",
              "/usr/share/man/man1/rspamd-quarantine.1.gz",
              "/usr/share/man/man5/rspamd-quarantine.conf.5.gz",
              "/usr/share/man/man8/rspamd-quarantined.8.gz",
              UNITDIR + "/rspamd-quarantined.service", UNITDIR + "/rspamd-quarantined.socket",
              "/usr/lib/tmpfiles.d/rspamd-quarantine.conf",
              "/usr/share/rspamd-quarantine/sql/schema.sql",
              "/usr/share/rspamd-quarantine/sql/upgrade/002-contents-lz4.sql",
              "/usr/share/rspamd-quarantine/nginx/rspamd-quarantine.conf",
              "/usr/share/rspamd-quarantine/rspamd/local.d/metadata_exporter.conf"):
        check("installed %s" % p, os.path.exists(p))


class Running:
    """The daemon as its units start it, and nginx with the installed block."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.daemon = None
        self.nginx = None
        self.sock = None
        self.port = h.free_port()
        self.log = os.path.join(tmp, "daemon.log")

    def start(self):
        svc = unit(UNITDIR + "/rspamd-quarantined.service")
        skt = unit(UNITDIR + "/rspamd-quarantined.socket")
        user, group = svc["User"][0], svc["Group"][0]
        check("unit runs as %s" % USER, user == USER and group == USER, (user, group))
        # tmpfiles.d: what systemd-tmpfiles makes at boot (postinst ran it).
        if shutil.which("systemd-tmpfiles"):
            run(["systemd-tmpfiles", "--create", "rspamd-quarantine.conf"])
        check("%s 0750 %s:www-data" % (RUNDIR, USER),
              os.path.isdir(RUNDIR) and mode_owner(RUNDIR) == (0o750, USER, "www-data"),
              mode_owner(RUNDIR) if os.path.isdir(RUNDIR) else "missing")
        os.makedirs(RUNDIR, exist_ok=True)
        # The socket unit's socket, as systemd makes it.
        path = skt["ListenStream"][0]
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path):
            os.unlink(path)
        self.sock.bind(path)
        os.chown(path, pwd.getpwnam(skt["SocketUser"][0]).pw_uid,
                 grp.getgrnam(skt["SocketGroup"][0]).gr_gid)
        os.chmod(path, int(skt["SocketMode"][0], 8))
        self.sock.listen(128)
        as_user = ["setpriv", "--reuid=" + user, "--regid=" + group, "--init-groups", "--"]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        umask = svc.get("UMask", ["0022"])[0]
        for pre in svc.get("ExecStartPre", []):
            rc, out = run(as_user + pre.split(), env=env, timeout=60)
            check("ExecStartPre %s" % pre, rc == 0 and out.strip().endswith(": ok"), out)
        # A descriptor above 3 that sh can name (one digit), moved to 3.
        fd = fcntl.fcntl(self.sock.fileno(), fcntl.F_DUPFD, 4)
        if fd > 9:
            raise RuntimeError("no free descriptor below 10 for the socket")
        script = ('umask %s; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3<&%d %d<&-'
                  % (umask, fd, fd))
        with open(self.log, "ab") as logf:
            self.daemon = subprocess.Popen(
                as_user + ["/bin/sh", "-c", script, "sh"] + svc["ExecStart"][0].split(),
                env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                pass_fds=(fd,))
        os.close(fd)
        # nginx with the installed server block, as Debian's nginx runs.
        ndir = os.path.join(self.tmp, "nginx")
        os.makedirs(ndir)
        os.chmod(ndir, 0o755)
        shutil.copy("/etc/nginx/fastcgi_params", ndir)
        with open("/usr/share/rspamd-quarantine/nginx/rspamd-quarantine.conf") as f:
            block = f.read().replace("127.0.0.1:11380", "127.0.0.1:%d" % self.port)
        with open(os.path.join(ndir, "server.conf"), "w") as f:
            f.write(block)
        with open(os.path.join(ndir, "nginx.conf"), "w") as f:
            f.write("user www-data;\ndaemon off;\nworker_processes 1;\n"
                    "pid %(d)s/nginx.pid;\nerror_log %(d)s/error.log info;\n"
                    "events { worker_connections 64; }\n"
                    "http {\n access_log %(d)s/access.log;\n"
                    " client_body_temp_path %(d)s/body;\n fastcgi_temp_path %(d)s/fastcgi;\n"
                    " proxy_temp_path %(d)s/proxy;\n uwsgi_temp_path %(d)s/uwsgi;\n"
                    " scgi_temp_path %(d)s/scgi;\n include server.conf;\n}\n" % {"d": ndir})
        self.nginx = subprocess.Popen(["nginx", "-c", os.path.join(ndir, "nginx.conf"),
                                       "-p", ndir + "/", "-e", os.path.join(ndir, "error.log")],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        status = None
        while time.monotonic() < end:
            if self.daemon.poll() is not None or self.nginx.poll() is not None:
                break
            try:
                status = h.post(self.port, "/health", b"", method="GET", timeout=5)[0]
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        return check("daemon started by the unit's ExecStart behind nginx: /health 200",
                     status == 200, "status %s, daemon %s, nginx %s\n%s\n%s" % (
                         status, self.daemon.poll(), self.nginx.poll(), h._read(self.log),
                         h._read(os.path.join(ndir, "error.log"))[-2000:]))

    def stop(self):
        if self.nginx and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(15)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        rc = None
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                rc = self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if self.sock:
            self.sock.close()
        self.nginx = self.daemon = self.sock = None
        return rc


def exercise(r):
    """A message through nginx, listed with the installed CLI."""
    raw = h.with_path(h.fixture_request("01-plain.default.http"), "/quarantine")
    st, _, body = h.http_raw(r.port, raw)
    check("POST through nginx stored: 200", st == 200, body[:300])
    rc, out = run(["rspamd-quarantine", "list", "--json"])
    try:
        entries = json.loads(out)
    except ValueError:
        entries = None
    check("installed CLI lists it", rc == 0 and entries is not None and len(entries) == 1
          and entries[0].get("rcpt") == "bob@example.net", out[-1000:])
    owners = set()
    for d, _, files in os.walk(os.path.join(STORE, "users")):
        for f in files:
            owners.add(pwd.getpwuid(os.lstat(os.path.join(d, f)).st_uid).pw_name)
    check("stored files owned by %s" % USER, owners == {USER}, owners)
    st, _, text = h.post(r.port, "/metrics", b"", method="GET")
    check("/metrics counts it", st == 200 and re.search(
        rb'^rspamd_quarantine_requests_total\{status="200",formatter="default"\} 1$',
        text, re.M) is not None, text[:500])
    # The nightly cron job's command, as its user.
    with open("/etc/cron.d/rspamd-quarantine") as f:
        line = [ln for ln in f if re.match(r"^\d", ln)][0].split(None, 6)
    cuser, cmd = line[5], line[6].split("&&", 1)[1].strip()
    rc, out = run(["setpriv", "--reuid=" + cuser, "--regid=" + cuser, "--init-groups",
                   "--", "/bin/sh", "-c", cmd])
    check("cron job runs as %s" % cuser, cuser == USER and rc == 0, out)
    return entries[0]["id"] if entries else None


def main():
    if os.geteuid() != 0:
        check("running as root (apt-get install needs it)", False)
        return
    # Not ours to remove: a machine with the package or its traces.
    traces = [p for p in (ETC, STORE, RUNDIR) if os.path.exists(p)]
    if known() != "not-installed" or user_exists(USER) or traces:
        check("machine without rspamd-quarantine installed", False,
              "(package state %s, user %s, %s): not touching it"
              % (known(), user_exists(USER), traces))
        return
    tmp = tempfile.mkdtemp(prefix="rq-deb-")
    os.chmod(tmp, 0o755)
    made_policy = False
    r = Running(tmp)
    try:
        deb = build(tmp)
        if not deb:
            return
        if not os.path.exists(POLICY):
            # Installing must not start services (mk/deps.sh does the same).
            with open(POLICY, "w") as f:
                f.write("#!/bin/sh\nexit 101\n")
            os.chmod(POLICY, 0o755)
            made_policy = True
        rc, out = apt_install(deb)
        if not check("apt-get install ./%s" % os.path.basename(deb), rc == 0, out[-3000:]):
            return
        check_install()
        eid = None
        if r.start():
            eid = exercise(r)
        rc = r.stop()
        check("daemon stops on SIGTERM with status 0", rc == 0, "%s\n%s" % (rc, h._read(r.log)))

        # Upgrade path: the same package again over an edited configuration.
        with open(CONF, "a") as f:
            f.write("# edited by the administrator\n")
        rc, out = apt_install(deb, reinstall=True)
        check("reinstall (upgrade path)", rc == 0, out[-3000:])
        with open(CONF) as f:
            check("upgrade keeps the edited configuration",
                  "# edited by the administrator" in f.read())
        check("upgrade keeps the configuration's mode", mode_owner(CONF) == (0o640, "root", USER))
        rc, out = run(["rspamd-quarantine", "show", eid or "-"])
        check("upgrade keeps the store", rc == 0, out)

        rc, out = run(APT + ["remove", PKG])
        check("apt-get remove", rc == 0 and known() == "config-files", out[-2000:])
        check("remove keeps configuration, store and user",
              os.path.exists(CONF) and os.path.isdir(os.path.join(STORE, "users"))
              and user_exists(USER) and not os.path.exists("/usr/sbin/rspamd-quarantined"))

        rc, out = run(APT + ["purge", PKG])
        check("apt-get purge", rc == 0 and known() == "not-installed", out[-2000:])
        emls = [f for d, _, fs in os.walk(STORE) for f in fs if f.endswith(".eml")]
        check("purge leaves the quarantined mail and its owner",
              len(emls) == 1 and user_exists(USER), (emls, user_exists(USER)))
        left = [p for p in PACKAGE_PATHS if p != STORE and os.path.lexists(p)]
        check("purge removes the rest", not left and not os.path.exists(STORE + "/cli-counters"),
              left)

        # Asked for: the store and the user go with the purge.
        rc, out = apt_install(deb)
        check("install over the kept store", rc == 0 and mode_owner(STORE)[1] == USER,
              out[-2000:])
        rc, out = run(["rspamd-quarantine", "show", eid or "-"])
        check("the kept mail is there again", rc == 0, out)
        open(ETC + "/purge-store", "w").close()
        rc, out = run(APT + ["purge", PKG])
        check("purge with %s/purge-store" % ETC, rc == 0 and known() == "not-installed",
              out[-2000:])
        left = [p for p in PACKAGE_PATHS if os.path.lexists(p)]
        check("nothing left: files, store, user, group",
              not left and not user_exists(USER) and not group_exists(USER),
              (left, user_exists(USER), group_exists(USER)))
    except Exception:  # noqa: BLE001 - a crash of the check is a failure
        check("the check ran to its end", False, traceback.format_exc())
    finally:
        r.stop()
        if known() != "not-installed":
            os.makedirs(ETC, exist_ok=True)
            open(ETC + "/purge-store", "w").close()
            rc, out = run(APT + ["purge", PKG])
            if rc != 0:
                run(["dpkg", "--purge", "--force-all", PKG])
            check("clean-up purge", known() == "not-installed", out[-2000:])
        if made_policy:
            os.unlink(POLICY)
        if not os.environ.get("RQ_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed or not passed else 0)
