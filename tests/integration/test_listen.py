"""Every form of the `listen` setting, each serving a real FastCGI request:
TCP on IPv4 and IPv6 loopback, a listening socket inherited on fd 0 as
spawn-fcgi leaves it, and one passed by the systemd socket protocol
(LISTEN_FDS, LISTEN_PID, fd 3).  Each daemon is stopped with SIGTERM and
must exit 0 with no worker left.

Environment: B (build directory).
"""
import os
import shutil
import socket
import subprocess

import harness as h

FIXTURE = "01-plain.default.http"


class ListenTest(h.ServerTestCase):
    tmp_prefix = "rq-listen-"

    def make(self, listen):
        """A daemon whose config listens on listen, not yet started."""
        d = h.Daemon(self.tmp, backend="file", extra_conf={"listen": listen}, workers=2)
        self.add_log("daemon log", d.log)
        self.addCleanup(lambda: d.proc and d._kill())
        return d

    def launch(self, d, argv, **kw):
        """Starts argv (which runs the daemon) as d's process."""
        log = open(d.logfile, "ab")
        self.addCleanup(log.close)
        d.proc = subprocess.Popen(argv, stdin=kw.pop("stdin", subprocess.DEVNULL),
                                  stdout=log, stderr=subprocess.STDOUT, **kw)
        d.pid = d.proc.pid
        d.wait_workers(2, timeout=10)

    def check_stored(self, d, status):
        self.assertEqual(status, 200, d.log())
        entries = d.entries()
        self.assertEqual([e["rcpt"] for e in entries], ["bob@example.net"])
        d.stop(expect=0)

    def request(self, family, addr):
        """The fixture as one FastCGI request over an inet socket."""
        env, body = h.meta_env(h.fixture_request(FIXTURE))
        params = {"REQUEST_METHOD": "POST", "REMOTE_ADDR": "127.0.0.1",
                  "CONTENT_LENGTH": str(len(body))}
        params.update(env)
        c = h.FcgiConn.__new__(h.FcgiConn)
        c.s = socket.socket(family, socket.SOCK_STREAM)
        c.s.settimeout(30)
        c.s.connect(addr)
        try:
            c.begin(params)
            c.stdin(body)
            c.stdin_end()
            return c.response()[0]
        finally:
            c.close()

    def test_tcp_ipv4(self):
        port = h.free_port()
        d = self.make("127.0.0.1:%d" % port)
        self.launch(d, [h.DAEMON_BIN, "-c", d.conf])
        # cgi-fcgi speaks TCP too: the client the issue names
        env, body = h.meta_env(h.fixture_request(FIXTURE))
        status, _, _ = h.fcgi_post("127.0.0.1:%d" % port, env, body)
        self.check_stored(d, status)

    def test_tcp_ipv6(self):
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
        d = self.make("[::1]:%d" % port)
        self.launch(d, [h.DAEMON_BIN, "-c", d.conf])
        self.check_stored(d, self.request(socket.AF_INET6, ("::1", port)))

    def test_fd0_from_spawn_fcgi(self):
        spawn = shutil.which("spawn-fcgi")
        self.assertIsNotNone(spawn, "spawn-fcgi (Debian package spawn-fcgi) is missing")
        port = h.free_port()
        d = self.make("fd:0")
        # -n: spawn-fcgi execs the daemon itself, the socket on fd 0
        self.launch(d, [spawn, "-n", "-a", "127.0.0.1", "-p", str(port), "--",
                        h.DAEMON_BIN, "-c", d.conf])
        self.check_stored(d, self.request(socket.AF_INET, ("127.0.0.1", port)))

    def test_systemd_socket(self):
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(lsock.close)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        port = lsock.getsockname()[1]
        d = self.make("systemd")

        def as_fd3():
            os.dup2(lsock.fileno(), 3)
            os.set_inheritable(3, True)
        # LISTEN_PID must name the daemon: the shell's pid, kept by exec
        script = 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -c "$1"'
        self.launch(d, ["sh", "-c", script, h.DAEMON_BIN, d.conf],
                    preexec_fn=as_fd3, pass_fds=(lsock.fileno(),))
        lsock.close()  # the daemon has its own copy
        self.check_stored(d, self.request(socket.AF_INET, ("127.0.0.1", port)))

    def test_systemd_without_sockets_refused(self):
        d = self.make("systemd")
        p = subprocess.run([h.DAEMON_BIN, "-c", d.conf], capture_output=True, timeout=20,
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith("LISTEN_")})
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"LISTEN_FDS", p.stdout + p.stderr + h._read(d.logfile).encode())


if __name__ == "__main__":
    h.main()
