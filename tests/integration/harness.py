"""harness.py - what the integration tests stand on: private servers on
loopback, raw HTTP and FastCGI clients, the command line, the fixtures.
Python 3 standard library only.

Environment
    B           build directory holding the programs (default: build)
    RQ_BACKEND  file (default) or pgsql: the store every Stack/Daemon uses
                unless a test names one
    RQ_KEEP     set to keep temp directories after a run (for debugging)

API (kept stable: other test files build on it)
    ROOT, BUILD, FIXTURES, DAEMON_BIN, CLI_BIN     paths
    IS_ROOT                                         running as uid 0
    free_port() -> int                              a free loopback TCP port
    tempdir(prefix) -> context manager giving a path, removed afterwards
                                                    (traversable by the
                                                    unprivileged server user)
    backend() -> "file" | "pgsql"                   from RQ_BACKEND

    Daemon(tmp, backend=None, conninfo=None, extra_conf=None, workers=2,
           binary=None)
        writes tmp/daemon/quarantine.conf (listen unix:tmp/daemon/run/
        quarantined.sock, file_root tmp/daemon/store, log to stderr which
        goes to tmp/daemon/daemon.log) and starts $B/rspamd-quarantined
        (or binary).
        As root the config says `user = nobody` and the store and socket
        directories belong to nobody.  A context manager; start() raises
        RuntimeError showing the log if it does not come up.
        .conf, .socket, .file_root, .pid, .proc
        .start(), .stop(expect=0, timeout=15) -> exit status (asserts it
        when expect is not None), .signal(sig), .worker_pids() -> sorted
        list, .wait_workers(n, timeout), .log() -> str,
        .write_conf(extra_conf) (rewrite the file, e.g. before SIGHUP),
        .conf_text(extra_conf) -> str
        .cli(*args) == cli(self.conf, *args)
        .entries(*args) -> list of dicts from `list --json`

    Nginx(tmp, socket_path, paths=())
        a private nginx running contrib/nginx/rspamd-quarantine.conf as
        shipped; only its listen address (127.0.0.1:11380) and its socket
        path are substituted.  `paths` adds copies of the shipped
        /quarantine location for other URL paths (the captured fixtures
        post to /default, /json and /auth), each a verbatim copy of the
        shipped block but for its path.  .port, .pid, .start(), .stop(),
        .log(), .url(path)

    Stack(tmp, backend=None, extra_conf=None, workers=2, paths=FIXTURE_PATHS,
          pg=None)
        PostgreSQL (when pgsql) + Daemon + Nginx, started in that order,
        stopped in reverse.  For pgsql each Stack gets a fresh database
        (schema applied) in pg, by default the process's shared cluster.
        .daemon, .nginx, .port, .pg (or None), .backend
    shared_pg() -> the process's PgCluster (started on first use, stopped
        at exit); pg_fresh_db(pg) -> conninfo of a new database in it

    http_raw(port, data, timeout=30) -> (status, headers, body)
        sends data exactly as given, reads the answer until the server
        closes.  headers: dict of lower-case name -> value.
    post(port, path, body, headers=None, method="POST") -> same triple
        a synthetic HTTP/1.1 request with Content-Length (unless headers
        give one) and Connection: close.
    fcgi_post(socket, env, body, content_length=None) -> (status, headers, body)
        through `cgi-fcgi -bind -connect` (Debian libfcgi-bin): env are
        the FastCGI parameters (nothing else is passed), body the stdin.
    FcgiConn(socket)                    a FastCGI client record by record
        (.begin(params), .stdin(data), .stdin_end(), .response(), .close())
        for partial bodies and crafted records
    meta_env(raw) -> (params, body)     FastCGI parameters as nginx would
        make them from a raw HTTP request
    cli(conf, *args, input=None) -> (rc, stdout bytes, stderr str)
    hash_password(pw) -> a crypt(3) hash usable as auth_password_hash

    fixture_request(name) -> raw request bytes (name without directory,
        e.g. "02-utf8-two-rcpt-user-ipv6.default.http")
    fixture_requests(suffix) -> sorted list of names ending in suffix
    fixture_message(name) -> bytes of messages/<name>
    split_request(raw) -> (method, path, [(name, value)], body)
    build_request(method, path, headers, body) -> bytes
    with_path(raw, path) -> raw with the request line's path replaced

    ServerTestCase                      unittest.TestCase with self.tmp,
        self.stack(**Stack kw), self.daemon(**Daemon kw), server logs
        printed when the test fails, assertStatus(resp, code)

    main() -> runs the calling module's unittest tests and prints
        "integration <file>[ (<backend>)]: N passed, N failed, N skipped"
        as its last line; exits 1 if any failed or none ran.
"""

import atexit
import contextlib
import grp
import io
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
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("B", "build")))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "rspamd-3.4")
DAEMON_BIN = os.path.join(BUILD, "rspamd-quarantined")
CLI_BIN = os.path.join(BUILD, "rspamd-quarantine")
NGINX_BLOCK = os.path.join(ROOT, "contrib", "nginx", "rspamd-quarantine.conf")
IS_ROOT = os.geteuid() == 0

# The tokens of the shipped server block that a test substitutes.
NGINX_LISTEN_TOKEN = "127.0.0.1:11380"
NGINX_SOCKET_TOKEN = "unix:/run/rspamd-quarantine/quarantined.sock"
NGINX_LOCATION = "/quarantine"
# URL paths the captured requests post to.
FIXTURE_PATHS = ("/default", "/json", "/auth")

# The unprivileged user servers run as when the tests run as root.
RUN_USER = "nobody"


def _run_ids():
    pw = pwd.getpwnam(RUN_USER)
    return pw.pw_uid, pw.pw_gid, grp.getgrgid(pw.pw_gid).gr_name


def backend():
    """The store backend the tests run against (env RQ_BACKEND)."""
    b = os.environ.get("RQ_BACKEND", "file") or "file"
    if b not in ("file", "pgsql"):
        raise RuntimeError("RQ_BACKEND must be file or pgsql, not %r" % b)
    return b


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tempdir(prefix="rq-test-"):
    """A temp directory the unprivileged server user can traverse."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        if not os.environ.get("RQ_KEEP"):
            shutil.rmtree(d, ignore_errors=True)
        else:
            sys.stderr.write("kept %s\n" % d)


def _chown_run_user(path):
    if IS_ROOT:
        uid, gid, _ = _run_ids()
        os.chown(path, uid, gid)


def _wait_for(pred, timeout, step=0.02):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            return v
        time.sleep(step)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)


def store_leftovers(root):
    """Half-stored things in a file store: an .eml without its .json,
    temporary files in user directories, uploads in tmp/."""
    bad = []
    for d, _, files in os.walk(os.path.join(root, "users")):
        names = set(files)
        for f in files:
            if f.endswith(".eml") and f[:-4] + ".json" not in names:
                bad.append(os.path.join(d, f))
            if f.startswith(".tmp."):
                bad.append(os.path.join(d, f))
    tmp = os.path.join(root, "tmp")
    if os.path.isdir(tmp):
        bad += [os.path.join(tmp, f) for f in os.listdir(tmp)]
    return bad


def _children(pid):
    """PIDs whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                st = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: split after the last ')'
        rest = st[st.rindex(b")") + 2:].split()
        if rest[0] == b"Z":
            continue
        if int(rest[1]) == pid:
            out.append(int(d))
    return sorted(out)


def _is_alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(b")") + 2:].split()[0] != b"Z"


# ---------------------------------------------------------------- fixtures

def fixture_request(name):
    with open(os.path.join(FIXTURES, "requests", name), "rb") as f:
        return f.read()


def fixture_requests(suffix=".default.http"):
    return sorted(n for n in os.listdir(os.path.join(FIXTURES, "requests"))
                  if n.endswith(suffix))


def fixture_message(name):
    with open(os.path.join(FIXTURES, "messages", name), "rb") as f:
        return f.read()


def split_request(raw):
    """(method, path, [(name, value)], body) of a raw HTTP request."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no end of header in request")
    lines = head.split(b"\r\n")
    method, path, _ = lines[0].decode("latin-1").split(" ", 2)
    headers = []
    for ln in lines[1:]:
        k, _, v = ln.decode("latin-1").partition(":")
        headers.append((k, v.strip()))
    return method, path, headers, body


def build_request(method, path, headers, body):
    """Bytes of an HTTP/1.1 request; headers as given, in order."""
    out = ["%s %s HTTP/1.1" % (method, path)]
    for k, v in headers:
        out.append("%s: %s" % (k, v))
    data = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")
    if isinstance(body, str):
        body = body.encode()
    return data + (body or b"")


def with_path(raw, path):
    """raw with its request line's URL path replaced by path."""
    line, sep, rest = raw.partition(b"\r\n")
    parts = line.split(b" ")
    parts[1] = path.encode()
    return b" ".join(parts) + sep + rest


def header(headers, name):
    """First value of a header in a [(name, value)] list, or None."""
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


# ---------------------------------------------------------------- clients

def _parse_response(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("incomplete HTTP response: %r" % data[:300])
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/\d\.\d (\d{3})", lines[0])
    if not m:
        raise ValueError("bad status line: %r" % lines[0])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return int(m.group(1)), headers, body


def _dechunk(data):
    out = b""
    while data:
        line, _, data = data.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            break
        out += data[:n]
        data = data[n + 2:]
    return out


def http_raw(port, data, timeout=30, host="127.0.0.1"):
    """Sends data byte-exact; returns (status, headers, body)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    return _parse_response(b"".join(chunks))


def post(port, path, body, headers=None, method="POST", timeout=30):
    """A synthetic request; Host, Content-Length and Connection added
    unless headers name them."""
    if isinstance(body, str):
        body = body.encode()
    body = body or b""
    hs = list(headers.items() if isinstance(headers, dict) else (headers or []))
    names = {k.lower() for k, _ in hs}
    if "host" not in names:
        hs.insert(0, ("Host", "127.0.0.1"))
    if "content-length" not in names and (body or method == "POST"):
        hs.append(("Content-Length", str(len(body))))
    if "connection" not in names:
        hs.append(("Connection", "close"))
    return http_raw(port, build_request(method, path, hs, body), timeout)


def _parse_cgi(out):
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = out.partition(b"\n\n")
    if not sep:
        raise ValueError("no CGI header in FastCGI answer: %r" % out[:300])
    headers = {}
    for ln in re.split(rb"\r?\n", head):
        k, _, v = ln.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    status = 200
    if "status" in headers:
        status = int(headers["status"].split()[0])
    return status, headers, body


def fcgi_post(sock, env, body, timeout=30):
    """One FastCGI request through cgi-fcgi.  env: the parameters (all of
    them: nothing else is passed); CONTENT_LENGTH defaults to len(body)
    when absent.  Returns (status, headers, body) from the CGI answer."""
    if isinstance(body, str):
        body = body.encode()
    e = {"REQUEST_METHOD": "POST", "REMOTE_ADDR": "127.0.0.1",
         "REQUEST_URI": "/quarantine", "SCRIPT_NAME": "/quarantine",
         "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1"}
    e.update({k: str(v) for k, v in env.items()})
    e.setdefault("CONTENT_LENGTH", str(len(body)))
    p = subprocess.run(["cgi-fcgi", "-bind", "-connect", sock], env=e,
                       input=body, capture_output=True, timeout=timeout)
    if not p.stdout:
        raise RuntimeError("cgi-fcgi answered nothing (rc %d): %s"
                           % (p.returncode, p.stderr.decode("utf-8", "replace")))
    return _parse_cgi(p.stdout)


class FcgiConn:
    """A FastCGI client on a Unix socket, record by record, for what
    cgi-fcgi cannot do: stop in the middle of a body, lie about lengths,
    send crafted records.

        c = FcgiConn(sock)
        c.begin(params)          # BEGIN_REQUEST + PARAMS (+ empty PARAMS)
        c.stdin(data)            # STDIN records (any size)
        c.stdin_end()            # the empty STDIN record
        status, headers, body = c.response()
        c.close()
    """

    def __init__(self, sock, timeout=30):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(sock)

    def record(self, rtype, content, rid=1):
        import struct
        for i in range(0, max(len(content), 1), 65535):
            chunk = content[i:i + 65535]
            pad = (8 - len(chunk) % 8) % 8
            self.s.sendall(struct.pack(">BBHHBB", 1, rtype, rid, len(chunk), pad, 0)
                           + chunk + b"\0" * pad)
            if not content:
                break

    @staticmethod
    def _nv(k, v):
        import struct
        out = b""
        for x in (k, v):
            out += bytes([len(x)]) if len(x) < 128 else struct.pack(">I", len(x) | 0x80000000)
        return out + k + v

    def begin(self, params):
        import struct
        self.record(1, struct.pack(">HB5x", 1, 0))
        data = b"".join(self._nv(k.encode(), str(v).encode()) for k, v in params.items())
        if data:
            self.record(4, data)
        self.record(4, b"")

    def stdin(self, data):
        if data:
            self.record(5, data)

    def stdin_end(self):
        self.record(5, b"")

    def response(self):
        """(status, headers, body) from STDOUT up to END_REQUEST."""
        import struct
        buf, out = b"", b""
        while True:
            c = self.s.recv(65536)
            if not c:
                break
            buf += c
            while len(buf) >= 8:
                _, rtype, _, clen, pad, _ = struct.unpack(">BBHHBB", buf[:8])
                if len(buf) < 8 + clen + pad:
                    break
                content = buf[8:8 + clen]
                buf = buf[8 + clen + pad:]
                if rtype == 6:
                    out += content
                elif rtype == 3:
                    return _parse_cgi(out)
        if not out:
            raise ConnectionError("FastCGI connection closed without an answer")
        return _parse_cgi(out)

    def close(self):
        self.s.close()


def meta_env(raw):
    """FastCGI parameters as nginx makes them from a raw HTTP request
    (headers -> HTTP_*, Content-Type/-Length), plus its body."""
    method, path, headers, body = split_request(raw)
    env = {"REQUEST_METHOD": method, "REQUEST_URI": path}
    for k, v in headers:
        lk = k.lower()
        if lk == "content-length":
            env["CONTENT_LENGTH"] = v
        elif lk == "content-type":
            env["CONTENT_TYPE"] = v
        else:
            env["HTTP_" + k.upper().replace("-", "_")] = v
    return env, body


def cli(conf, *args, input=None, timeout=60):
    """Runs $B/rspamd-quarantine -c conf ARGS; (rc, stdout bytes, stderr)."""
    p = subprocess.run([CLI_BIN, "-c", conf] + [str(a) for a in args],
                       input=input, capture_output=True, timeout=timeout,
                       stdin=None if input is not None else subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def hash_password(pw):
    """A crypt(3) hash of pw: the CLI's hash-password when it has one,
    else openssl passwd -6 (SHA-512 crypt, which libcrypt verifies)."""
    if os.path.exists(CLI_BIN):
        try:
            p = subprocess.run([CLI_BIN, "hash-password"], input=(pw + "\n").encode(),
                               capture_output=True, timeout=30)
            h = p.stdout.decode().strip()
            if p.returncode == 0 and h.startswith("$"):
                return h.splitlines()[-1].strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    p = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw.encode(),
                       capture_output=True, check=True)
    return p.stdout.decode().strip()


# ---------------------------------------------------------------- daemon

class Daemon:
    """rspamd-quarantined on a Unix socket in a temp dir (see module doc)."""

    def __init__(self, tmp, backend=None, conninfo=None, extra_conf=None,
                 workers=2, name="daemon", binary=None):
        self.backend = backend or globals()["backend"]()
        # another build's daemon (bench.py's BENCH_AB), else this tree's
        self.binary = binary or DAEMON_BIN
        self.conninfo = conninfo
        self.extra_conf = dict(extra_conf or {})
        self.workers = workers
        self.dir = os.path.join(tmp, name)
        self.rundir = os.path.join(self.dir, "run")
        self.socket = os.path.join(self.rundir, "quarantined.sock")
        self.file_root = os.path.join(self.dir, "store")
        self.conf = os.path.join(self.dir, "quarantine.conf")
        self.logfile = os.path.join(self.dir, "daemon.log")
        self.proc = None
        self.pid = None
        # Set by a test that makes libfcgi abort a worker on purpose.
        self.libfcgi_aborts_expected = False
        os.makedirs(self.rundir, exist_ok=True)
        os.makedirs(self.file_root, exist_ok=True)
        os.chmod(self.dir, 0o755)
        for d in (self.rundir, self.file_root):
            os.chmod(d, 0o750 if IS_ROOT else 0o755)
            _chown_run_user(d)
        if self.backend == "pgsql" and not conninfo:
            raise RuntimeError("Daemon: backend pgsql needs a conninfo")
        self.write_conf()

    def conf_text(self, extra_conf=None):
        c = {
            "listen": "unix:" + self.socket,
            "workers": str(self.workers),
            "backend": self.backend,
            "file_root": self.file_root,
            "log": "stderr",
        }
        if self.backend == "pgsql":
            c["pgsql_conninfo"] = self.conninfo
        elif os.environ.get("RQ_FILE_SYNC"):
            # how the file store commits (tests/run.sh runs some suites
            # once more with the write-ahead log, which auto does not take
            # on a file system without a journal)
            c["file_sync"] = os.environ["RQ_FILE_SYNC"]
        if IS_ROOT:
            uid, gid, gname = _run_ids()
            c["user"] = RUN_USER
            c["socket_group"] = gname
        c.update(self.extra_conf if extra_conf is None else extra_conf)
        lines = ["# written by tests/integration/harness.py"]
        for k, v in c.items():
            if v is None:
                continue
            if isinstance(v, (list, tuple)):
                v = ", ".join(v)
            lines.append("%s = %s" % (k, v))
        return "\n".join(lines) + "\n"

    def write_conf(self, extra_conf=None):
        """Rewrites the config file (extra_conf replaces the one given at
        construction when not None)."""
        if extra_conf is not None:
            self.extra_conf = dict(extra_conf)
        with open(self.conf, "w") as f:
            f.write(self.conf_text())

    def start(self, timeout=15):
        if not os.path.exists(self.binary):
            raise RuntimeError("%s is not built" % self.binary)
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", self.conf],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

        def ready():
            if self.proc.poll() is not None:
                return True
            if not os.path.exists(self.socket):
                return False
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.socket)
                return len(_children(self.pid)) >= 1
            except OSError:
                return False
        _wait_for(ready, timeout)
        if self.proc.poll() is not None or not ready():
            rc = self.proc.poll()
            self._kill()
            raise RuntimeError("rspamd-quarantined did not start (exit %s); "
                               "config:\n%s\nlog:\n%s"
                               % (rc, _read(self.conf), self.log()))
        return self

    def signal(self, sig):
        os.kill(self.pid, sig)

    def worker_pids(self):
        return _children(self.pid) if self.pid else []

    def wait_workers(self, n, timeout=5, exclude=()):
        """Waits until n workers not in exclude run; returns their pids."""
        def ok():
            w = [p for p in self.worker_pids() if p not in exclude]
            return w if len(w) == n else None
        w = _wait_for(ok, timeout)
        if not w:
            raise AssertionError("expected %d workers, have %r; log:\n%s"
                                 % (n, self.worker_pids(), self.log()))
        return w

    def log(self):
        return _read(self.logfile)

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            kids = _children(self.pid)
            self.proc.kill()
            self.proc.wait()
            for k in kids:
                with contextlib.suppress(OSError):
                    os.kill(k, signal.SIGKILL)

    def stop(self, expect=0, timeout=15):
        """SIGTERM, wait; asserts the exit status (unless expect is None)
        and that no worker is left.  Returns the exit status."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            kids = _children(self.pid)
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                raise AssertionError("rspamd-quarantined did not exit within %ss "
                                     "of SIGTERM; log:\n%s" % (timeout, self.log()))
            left = [k for k in kids if _wait_for(lambda: not _is_alive(k), 2) is False]
            for k in left:
                with contextlib.suppress(OSError):
                    os.kill(k, signal.SIGKILL)
            if left:
                raise AssertionError("workers %r left after the master exited; log:\n%s"
                                     % (left, self.log()))
        rc = self.proc.returncode
        self.proc = None
        if expect is not None and rc != expect:
            raise AssertionError("rspamd-quarantined exited %s, expected %s; log:\n%s"
                                 % (rc, expect, self.log()))
        log = _drop_libfcgi_aborts(self.log()) if self.libfcgi_aborts_expected else self.log()
        if "Sanitizer" in log or "runtime error:" in log:
            raise AssertionError("sanitizer report in the daemon log:\n" + log)
        return rc

    def cli(self, *args, **kw):
        return cli(self.conf, *args, **kw)

    def entries(self, *args):
        """`list --json` (plus args) as a list of dicts; fails loudly."""
        rc, out, err = self.cli("list", "--json", *args)
        if rc != 0:
            raise AssertionError("list --json failed (%d): %s" % (rc, err))
        return json.loads(out.decode())

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        if et is not None:
            sys.stderr.write("---- daemon log (%s) ----\n%s\n" % (self.dir, self.log()))
            self._kill()
            self.proc = None
            return False
        self.stop()
        return False


# ---------------------------------------------------------------- nginx

def nginx_server_block(port, socket_path, paths=()):
    """The shipped server block with its listen address and socket
    substituted, and the /quarantine location copied for each of paths."""
    with open(NGINX_BLOCK) as f:
        text = f.read()
    for tok in (NGINX_LISTEN_TOKEN, NGINX_SOCKET_TOKEN):
        if tok not in text:
            raise RuntimeError("%s no longer contains %s" % (NGINX_BLOCK, tok))
    text = text.replace(NGINX_LISTEN_TOKEN, "127.0.0.1:%d" % port)
    text = text.replace(NGINX_SOCKET_TOKEN, "unix:" + socket_path)
    if paths:
        m = re.search(r"^([ \t]*)location (= )?%s \{.*?^\1\}[ \t]*\n"
                      % re.escape(NGINX_LOCATION), text, re.M | re.S)
        if not m:
            raise RuntimeError("no location %s block in %s" % (NGINX_LOCATION, NGINX_BLOCK))
        block = m.group(0)
        copies = "".join(block.replace("location %s%s {" % (m.group(2) or "", NGINX_LOCATION),
                                       "location %s%s {" % (m.group(2) or "", p), 1)
                         for p in paths)
        text = text[:m.end()] + copies + text[m.end():]
    return text


class Nginx:
    """A private nginx serving the shipped block (see module doc)."""

    def __init__(self, tmp, socket_path, paths=(), port=None, name="nginx"):
        self.dir = os.path.join(tmp, name)
        self.socket_path = socket_path
        self.paths = tuple(paths)
        self.port = port or free_port()
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.errlog = os.path.join(self.dir, "error.log")
        self.proc = None
        self.pid = None
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        shutil.copy("/etc/nginx/fastcgi_params", os.path.join(self.dir, "fastcgi_params"))
        self.write_conf()

    def write_conf(self):
        d = self.dir
        user = ""
        if IS_ROOT:
            _, _, gname = _run_ids()
            user = "user %s %s;\n" % (RUN_USER, gname)
        conf = (
            "# written by tests/integration/harness.py\n"
            + user +
            "daemon off;\n"
            "master_process on;\n"
            "worker_processes 2;\n"
            "pid %(d)s/nginx.pid;\n"
            "error_log %(d)s/error.log info;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "    access_log %(d)s/access.log;\n"
            "    client_body_temp_path %(d)s/client_body;\n"
            "    fastcgi_temp_path %(d)s/fastcgi;\n"
            "    proxy_temp_path %(d)s/proxy;\n"
            "    uwsgi_temp_path %(d)s/uwsgi;\n"
            "    scgi_temp_path %(d)s/scgi;\n"
            "    include server.conf;\n"
            "}\n") % {"d": d}
        with open(self.conf, "w") as f:
            f.write(conf)
        with open(os.path.join(d, "server.conf"), "w") as f:
            f.write(nginx_server_block(self.port, self.socket_path, self.paths))

    def start(self, timeout=10):
        with open(os.path.join(self.dir, "stderr.log"), "ab") as log:
            self.proc = subprocess.Popen(["nginx", "-c", self.conf, "-p", self.dir + "/",
                                          "-e", self.errlog],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

        def ready():
            if self.proc.poll() is not None:
                return True
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False
        _wait_for(ready, timeout)
        if self.proc.poll() is not None or not ready():
            rc = self.proc.poll()
            if rc is None:
                self.proc.kill()
                self.proc.wait()
            raise RuntimeError("nginx did not start (exit %s); log:\n%s" % (rc, self.log()))
        return self

    def url(self, path="/quarantine"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def log(self):
        return (_read(os.path.join(self.dir, "stderr.log")) + _read(self.errlog))

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGQUIT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        if et is not None:
            sys.stderr.write("---- nginx log (%s) ----\n%s\n" % (self.dir, self.log()))
        self.stop()
        return False


# ---------------------------------------------------------------- PostgreSQL

def _pgcluster_class():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        from pgcluster import PgCluster
    except ImportError as e:
        raise RuntimeError("backend pgsql needs tests/integration/pgcluster.py: %s" % e)
    return PgCluster


def pg_start(tmp):
    """A started private PostgreSQL (pgcluster.PgCluster) for tmp."""
    pg = _pgcluster_class()(os.path.join(tmp, "pg"))
    pg.start()
    return pg


_shared_pg = None
_db_counter = 0


def shared_pg():
    """One private PostgreSQL for the whole test process, started on first
    use and stopped at exit (a cluster per test would cost seconds each)."""
    global _shared_pg
    if _shared_pg is None:
        d = tempfile.mkdtemp(prefix="rq-pg-")
        os.chmod(d, 0o755)
        pg = _pgcluster_class()(os.path.join(d, "pg"))
        try:
            pg.start()
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        _shared_pg = (pg, d)

        def stop():
            pg.stop()
            if not os.environ.get("RQ_KEEP"):
                shutil.rmtree(d, ignore_errors=True)
        atexit.register(stop)
    return _shared_pg[0]


def pg_fresh_db(pg):
    """A new database with the schema applied in cluster pg; its conninfo."""
    global _db_counter
    _db_counter += 1
    name = "rq_%d_%d" % (os.getpid(), _db_counter)
    pg.psql("CREATE DATABASE %s;" % name, dbname="postgres")
    pg.apply_file(os.path.join(ROOT, "sql", "schema.sql"), dbname=name)
    return pg.conninfo(dbname=name)


# ---------------------------------------------------------------- stack

class Stack:
    """PostgreSQL (for pgsql) + Daemon + Nginx as one context manager."""

    def __init__(self, tmp, backend=None, extra_conf=None, workers=2,
                 paths=FIXTURE_PATHS, pg=None):
        self.tmp = tmp
        self.backend = backend or globals()["backend"]()
        self.extra_conf = extra_conf
        self.workers = workers
        self.paths = paths
        self.pg = pg
        self._own_pg = False
        self.daemon = None
        self.nginx = None

    def start(self):
        try:
            conninfo = None
            if self.backend == "pgsql":
                if self.pg is None:
                    self.pg = shared_pg()
                conninfo = pg_fresh_db(self.pg)
            self.daemon = Daemon(self.tmp, self.backend, conninfo, self.extra_conf,
                                 self.workers).start()
            self.nginx = Nginx(self.tmp, self.daemon.socket, self.paths).start()
        except BaseException:
            self._stop_all(failed=True)
            raise
        return self

    @property
    def port(self):
        return self.nginx.port

    def _stop_all(self, failed):
        errs = []
        if self.nginx:
            if failed:
                sys.stderr.write("---- nginx log ----\n%s\n" % self.nginx.log())
            self.nginx.stop()
        if self.daemon:
            if failed:
                sys.stderr.write("---- daemon log ----\n%s\n" % self.daemon.log())
                self.daemon._kill()
            elif self.daemon.proc:
                try:
                    self.daemon.stop()
                except AssertionError as e:
                    errs.append(e)
        if self.pg is not None and self._own_pg:
            self.pg.stop()
        if errs:
            raise errs[0]

    def stop(self):
        self._stop_all(failed=False)

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        self._stop_all(failed=et is not None)
        return False


# ---------------------------------------------------------------- test case

class ServerTestCase(unittest.TestCase):
    """A TestCase with a temp dir per test (self.tmp) and servers that are
    stopped after the test whatever happens; when the test fails, the logs
    of every server it started are printed with the report, and only then
    is the temp dir removed.

        s = self.stack(extra_conf={...})   # Stack, started
        d = self.daemon(workers=3)         # Daemon alone, started
        self.add_log("name", callable)     # more logs to show on failure
    """

    tmp_prefix = "rq-test-"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix=self.tmp_prefix)
        os.chmod(self.tmp, 0o755)
        self._logs = []

    def add_log(self, name, fn):
        self._logs.append((name, fn))

    def stack(self, **kw):
        s = Stack(self.tmp, **kw)
        try:
            s.start()
        finally:
            if s.daemon:
                self.add_log("daemon log", s.daemon.log)
            if s.nginx:
                self.add_log("nginx log", s.nginx.log)
        self.addCleanup(s.stop)
        return s

    def daemon(self, **kw):
        d = Daemon(self.tmp, **kw)
        self.add_log("daemon log", d.log)
        d.start()

        def cleanup():
            if d.proc:
                d.stop()
        self.addCleanup(cleanup)
        return d

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result else 0
        self.tmp = None
        try:
            return super().run(result)
        finally:
            if result is not None and len(result.failures) + len(result.errors) > before:
                for name, fn in getattr(self, "_logs", []):
                    sys.stderr.write("---- %s (%s) ----\n%s\n" % (name, self.id(), fn()))
            if self.tmp and not os.environ.get("RQ_KEEP"):
                shutil.rmtree(self.tmp, ignore_errors=True)

    def assertStatus(self, resp, want, what=""):
        """resp is (status, headers, body): status exactly want."""
        status, _, body = resp
        self.assertEqual(status, want, "%s: expected exactly %d, got %d: %r"
                         % (what, want, status, body[:500]))


# ---------------------------------------------------------------- main

def _drop_libfcgi_aborts(log):
    """The log without AddressSanitizer's reports of the huge allocation
    that makes libfcgi abort on a crafted PARAMS record (PROTOCOL.md §6):
    a test that provokes it on purpose expects exactly those, and only
    those whose stack is inside libfcgi."""
    out, block = [], None
    for line in log.splitlines(keepends=True):
        if block is None and "ERROR: AddressSanitizer: requested allocation size" in line:
            block = [line]
        elif block is not None:
            block.append(line)
            if line.rstrip().endswith("==ABORTING"):
                text = "".join(block)
                if "libfcgi.so" not in text:
                    out.append(text)
                block = None
        else:
            out.append(line)
    if block is not None:
        out.append("".join(block))
    return "".join(out)


def main():
    """Runs the calling module's tests; prints the parseable count line."""
    mod = sys.modules["__main__"]
    name = os.path.basename(getattr(mod, "__file__", "?"))
    suite = unittest.defaultTestLoader.loadTestsFromModule(mod)
    argv = [a for a in sys.argv[1:] if not a.startswith("-")]
    if argv:
        suite = unittest.defaultTestLoader.loadTestsFromNames(argv, mod)
    res = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
    skipped = len(res.skipped)
    # A failing setUpClass/setUpModule is an error without a test run:
    # count it as a failure, never as a negative number of passes.
    passed = max(res.testsRun - failed - skipped, 0)
    tag = ""
    if os.environ.get("RQ_BACKEND"):
        tag = " (%s)" % backend()
    sys.stderr.flush()
    print("integration %s%s: %d passed, %d failed, %d skipped"
          % (name, tag, passed, failed, skipped), flush=True)
    sys.exit(1 if failed or res.testsRun == 0 else 0)
