"""redis_server.py - a private redis-server (Debian's package) for the
tests that need Rspamd's statistics: one loopback port, its directory in
the test's temp dir, no persistence, started in the foreground and
stopped by the pid it was started with.  Standard library only.

    with RedisServer(tmp) as r:
        r.port, r.address    # "127.0.0.1:PORT"
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time

from harness import _read, free_port

RUN_USER = "redis"


class RedisServer:
    def __init__(self, tmp, name="redis"):
        self.dir = os.path.join(tmp, name)
        self.port = free_port()
        self.logfile = os.path.join(self.dir, "redis.log")
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)
        if os.geteuid() == 0:
            with contextlib.suppress(KeyError):
                pw = pwd.getpwnam(RUN_USER)
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def log(self):
        return "---- redis log ----\n" + _read(self.logfile)

    def _ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout=20):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not found: install Debian's redis-server")
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", self.logfile]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        end = time.monotonic() + timeout
        while not self._ping():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError("redis-server did not start\n%s" % self.log())
            time.sleep(0.05)
        return self

    def stop(self, timeout=10):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        if et is not None:
            sys.stderr.write(self.log()[-5000:] + "\n")
        self.stop()
        return False
