#!/usr/bin/env python3
"""test_install_security.py - what the install promises about privileges:
the socket mode 0660 for the configured group, the store 0700/0600 owned
by the configured user, no start as root without `user`, master and
workers running as that user after start, and a warning when the file
holding the password hash can be read by everyone.  Most of it needs root
(as in CI); those tests are skipped otherwise."""

import grp
import os
import pwd
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

F01 = "01-plain.default.http"
F02 = "02-utf8-two-rcpt-user-ipv6.default.http"


def proc_ids(pid):
    """(uids, gids, groups) of a process from /proc/<pid>/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            out[k] = v.split()
    return ([int(x) for x in out["Uid"]], [int(x) for x in out["Gid"]],
            [int(x) for x in out.get("Groups", [])])


class SecurityCase(h.ServerTestCase):
    tmp_prefix = "rq-security-"

    def setUp(self):
        super().setUp()
        if not h.IS_ROOT:
            self.skipTest("privilege tests need root")
        self.uid, self.gid, self.gname = h._run_ids()

    def daemon(self, **kw):
        kw.setdefault("backend", "file")
        return super().daemon(**kw)

    def run_daemon(self, conf, timeout=10):
        """Runs the daemon on conf expecting it to refuse: (rc, output)."""
        p = subprocess.run([h.DAEMON_BIN, "-c", conf], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


class SocketTest(SecurityCase):
    def test_socket_mode_and_group(self):
        d = self.daemon()
        st = os.stat(d.socket)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual(st.st_uid, self.uid)
        self.assertEqual(st.st_gid, grp.getgrnam(self.gname).gr_gid)

    def test_socket_group_other_than_the_users(self):
        try:
            www = grp.getgrnam("www-data")
        except KeyError:
            self.skipTest("no group www-data")
        d = self.daemon(extra_conf={"socket_group": "www-data"})
        st = os.stat(d.socket)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual(st.st_gid, www.gr_gid)
        self.assertNotEqual(st.st_gid, self.gid)
        # the group the web server runs in may connect; nobody else may
        env, body = h.meta_env(h.fixture_request(F01))
        self.assertStatus(h.fcgi_post(d.socket, env, body), 200, "as root")


class StoreTest(SecurityCase):
    def check_tree(self, root):
        """Every directory below root 0700, every file 0600, all the
        configured user's (symlinks aside)."""
        seen = 0
        for dpath, dirs, files in os.walk(root):
            for name in dirs:
                p = os.path.join(dpath, name)
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    continue  # ids/xx/<id> links to a user directory
                seen += 1
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o700, p)
                self.assertEqual((st.st_uid, st.st_gid), (self.uid, self.gid), p)
            for name in files:
                p = os.path.join(dpath, name)
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    continue
                seen += 1
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, p)
                self.assertEqual((st.st_uid, st.st_gid), (self.uid, self.gid), p)
        return seen

    def test_store_modes_and_owner(self):
        d = self.daemon()
        env, body = h.meta_env(h.fixture_request(F02))
        self.assertStatus(h.fcgi_post(d.socket, env, body), 200)
        self.assertEqual(len(d.entries()), 2)
        self.assertGreater(self.check_tree(d.file_root), 8)

    def test_store_created_by_the_daemon(self):
        # file_root does not exist yet: the worker, as the user, creates it
        parent = os.path.join(self.tmp, "var")
        os.mkdir(parent, 0o755)
        os.chown(parent, self.uid, self.gid)
        root = os.path.join(parent, "store")
        d = self.daemon(extra_conf={"file_root": root})
        env, body = h.meta_env(h.fixture_request(F01))
        self.assertStatus(h.fcgi_post(d.socket, env, body), 200)
        st = os.stat(root)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)
        self.assertEqual(st.st_uid, self.uid)
        self.check_tree(root)


class PrivilegeTest(SecurityCase):
    def test_refuses_root_without_user(self):
        d = h.Daemon(self.tmp, backend="file", extra_conf={"user": None})
        self.assertNotIn("user =", open(d.conf).read())
        rc, out = self.run_daemon(d.conf)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("refusing to run as root", out)
        self.assertFalse(os.path.exists(d.socket), "socket created before refusing")
        self.assertEqual(os.listdir(d.file_root), [])

    def test_refuses_user_root(self):
        d = h.Daemon(self.tmp, backend="file", extra_conf={"user": "root"})
        rc, out = self.run_daemon(d.conf)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("refusing to run as root", out)

    def test_processes_run_as_the_user(self):
        d = self.daemon(workers=2)
        workers = d.wait_workers(2)
        # a worker that served a request, and a respawned one, too
        env, body = h.meta_env(h.fixture_request(F01))
        self.assertStatus(h.fcgi_post(d.socket, env, body), 200)
        os.kill(workers[0], 9)
        workers = d.wait_workers(2, exclude=(workers[0],))
        for pid in [d.pid] + workers:
            uids, gids, groups = proc_ids(pid)
            self.assertEqual(uids, [self.uid] * 4, "pid %d uids" % pid)
            self.assertEqual(gids, [self.gid] * 4, "pid %d gids" % pid)
            self.assertNotIn(0, groups, "pid %d keeps group root" % pid)
        self.assertIn("uid %d" % self.uid, d.log())


class ConfigSecretTest(SecurityCase):
    def conf_with_hash(self, mode):
        d = h.Daemon(self.tmp, backend="file",
                     extra_conf={"auth_user": "rspamd",
                                 "auth_password_hash": h.hash_password("pw pw pw")})
        os.chmod(d.conf, mode)
        return d

    def check(self, conf):
        p = subprocess.run([h.DAEMON_BIN, "-t", "-c", conf], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    def test_world_readable_hash_warned(self):
        d = self.conf_with_hash(0o644)
        rc, out = self.check(d.conf)
        self.assertEqual(rc, 0, out)
        self.assertIn("warning", out)
        self.assertIn("readable by others", out)
        self.assertIn(d.conf, out)
        # and when the daemon starts on it
        self.add_log("daemon log", d.log)
        d.start()
        self.addCleanup(lambda: d.proc and d.stop())
        self.assertTrue(h._wait_for(lambda: "readable by others" in d.log(), 5), d.log())

    def test_private_hash_not_warned(self):
        d = self.conf_with_hash(0o640)
        rc, out = self.check(d.conf)
        self.assertEqual(rc, 0, out)
        self.assertNotIn("warning", out)

    def test_readable_without_hash_not_warned(self):
        d = h.Daemon(self.tmp, backend="file")
        os.chmod(d.conf, 0o644)
        rc, out = self.check(d.conf)
        self.assertEqual(rc, 0, out)
        self.assertNotIn("warning", out)


if __name__ == "__main__":
    h.main()
