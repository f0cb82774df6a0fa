"""pgcluster.py - a private PostgreSQL cluster for the tests, from Debian's
`postgresql` package: initdb in a directory of our own, a free loopback
port and a private Unix socket directory, fsync on, the quarantine schema
applied.  Python 3 standard library only.

initdb refuses to run as root, and the tests run as root in CI: then the
cluster belongs to the `postgres` system user that the package creates, and
every server program runs as that user.  The server is always stopped by
the process id this module started (it is the postmaster, whose pid is also
in postmaster.pid), never by name.

    with PgCluster(path) as pg:          # start() ... stop(), even on error
        pg.conninfo()                    # libpq connection string
        pg.psql("SELECT 1")              # -> output text (unaligned, tuples only)
        pg.terminate_backends()          # pg_terminate_backend of all clients
        pg.restart()
"""

import glob
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCHEMA = os.path.join(ROOT, "sql", "schema.sql")
SERVER_USER = "postgres"
SUPERUSER = "postgres"


def pg_bindir():
    """The newest /usr/lib/postgresql/<version>/bin that has initdb."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        ver = os.path.basename(os.path.dirname(d))
        if os.path.exists(os.path.join(d, "initdb")) and re.match(r"^\d+(\.\d+)?$", ver):
            found.append((float(ver), d))
    if not found:
        raise RuntimeError("no PostgreSQL server found under /usr/lib/postgresql "
                           "(install Debian's postgresql package)")
    return max(found)[1]


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env():
    """The environment without PG* variables, so that nothing of the
    caller's (PGSERVICE, PGHOST, ...) leaks into the private cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"
    env["TZ"] = "UTC"
    return env


class PgCluster:
    """A private cluster in path (created if needed; removed by nobody but
    the caller).  dbname is created and, with schema (default
    sql/schema.sql; None for none), initialised."""

    def __init__(self, path, dbname="quarantine", schema=SCHEMA):
        self.path = os.path.abspath(path)
        self.dbname = dbname
        self.schema = schema
        self.bindir = pg_bindir()
        self.datadir = os.path.join(self.path, "data")
        self.sockdir = os.path.join(self.path, "sock")
        self.logfile = os.path.join(self.path, "server.log")
        self.port = None
        self.proc = None
        self.pid = None
        self._as_user = os.geteuid() == 0
        if self._as_user:
            pw = pwd.getpwnam(SERVER_USER)
            self._uid, self._gid = pw.pw_uid, pw.pw_gid

    # ------------------------------------------------------------ helpers

    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def _demote(self):
        """preexec_fn: become the server user (only when we are root)."""
        if self._as_user:
            os.setgroups([])
            os.setgid(self._gid)
            os.setuid(self._uid)

    def _run(self, args, check=True, input=None, timeout=120):
        p = subprocess.run(args, input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=_clean_env(),
                           preexec_fn=self._demote, cwd="/", timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (
                os.path.basename(args[0]), p.returncode,
                p.stderr.decode("utf-8", "replace").strip()))
        return p

    def _prepare_dirs(self):
        os.makedirs(self.path, exist_ok=True)
        # The server user must be able to reach its directory: make every
        # parent traversable (mkdtemp makes them 0700).
        d = self.path
        while d not in ("/", ""):
            st = os.stat(d)
            if self._as_user and not st.st_mode & 0o001:
                os.chmod(d, st.st_mode | 0o001)
            d = os.path.dirname(d)
        for sub in (self.sockdir,):
            os.makedirs(sub, exist_ok=True)
        if self._as_user:
            for p in (self.path, self.sockdir):
                os.chown(p, self._uid, self._gid)
            if os.path.exists(self.logfile):
                os.chown(self.logfile, self._uid, self._gid)

    def log(self):
        """The server's log so far (for failure messages)."""
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ------------------------------------------------------------ lifecycle

    def initdb(self):
        """Creates the cluster (once)."""
        self._prepare_dirs()
        if os.path.exists(os.path.join(self.datadir, "PG_VERSION")):
            return
        self._run([self._bin("initdb"), "-D", self.datadir, "-U", SUPERUSER,
                   "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"])

    def _server_running(self):
        return self.proc is not None and self.proc.poll() is None

    def _ready(self):
        p = subprocess.run([self._bin("pg_isready"), "-q", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres"],
                           env=_clean_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        return p.returncode == 0

    def start_server(self, timeout=60):
        """Starts the postmaster (the cluster must exist) and waits until it
        accepts connections."""
        if self._server_running():
            return
        if self.port is None:
            self.port = _free_port()
        self._prepare_dirs()
        logf = open(self.logfile, "ab")
        if self._as_user:
            os.chown(self.logfile, self._uid, self._gid)
        args = [self._bin("postgres"), "-D", self.datadir,
                "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "unix_socket_directories=" + self.sockdir,
                "-c", "unix_socket_permissions=0777",
                "-c", "fsync=on",
                "-c", "synchronous_commit=on",
                "-c", "full_page_writes=on",
                "-c", "max_connections=60",
                "-c", "shared_buffers=32MB",
                "-c", "logging_collector=off",
                "-c", "log_min_messages=warning",
                "-c", "TimeZone=UTC"]
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=logf, env=_clean_env(),
                                         preexec_fn=self._demote, cwd="/",
                                         start_new_session=True)
        finally:
            logf.close()
        self.pid = self.proc.pid
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError("PostgreSQL did not start:\n" + self.log()[-3000:])
            if self._ready():
                break
            if time.monotonic() > end:
                self.stop()
                raise RuntimeError("PostgreSQL not ready after %ds:\n%s"
                                   % (timeout, self.log()[-3000:]))
            time.sleep(0.1)
        pidfile = os.path.join(self.datadir, "postmaster.pid")
        with open(pidfile) as f:
            filepid = int(f.readline().strip())
        if filepid != self.pid:
            raise RuntimeError("postmaster.pid says %d, started %d" % (filepid, self.pid))

    def create_db(self):
        """Creates the database and applies the schema."""
        self._run([self._bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", SUPERUSER, self.dbname])
        if self.schema:
            self.apply_file(self.schema)

    def apply_file(self, path, dbname=None):
        """Runs an SQL file with psql, stopping at the first error."""
        with open(path, "rb") as f:
            sql = f.read()
        return self._psql_run(["-f", "-"], sql, dbname)

    def start(self):
        """initdb (first time), start the server, create and set up the
        database (first time)."""
        fresh = not os.path.exists(os.path.join(self.datadir, "PG_VERSION"))
        self.initdb()
        try:
            self.start_server()
            if fresh:
                self.create_db()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, mode="fast", timeout=60):
        """Stops the server we started: SIGINT (fast) or SIGQUIT (immediate,
        a crash as far as the data is concerned), sent to its pid."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            sig = signal.SIGQUIT if mode == "immediate" else signal.SIGINT
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def restart(self, mode="fast"):
        """Stops and starts the server on the same port."""
        self.stop(mode)
        self.start_server()

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        if et is not None:
            sys.stderr.write("---- PostgreSQL log ----\n%s\n" % self.log()[-4000:])
        self.stop()
        return False

    # ------------------------------------------------------------ clients

    def conninfo(self, dbname=None):
        """A libpq connection string for the test database (TCP loopback,
        trust authentication)."""
        return "host=127.0.0.1 port=%d dbname=%s user=%s" % (
            self.port, dbname or self.dbname, SUPERUSER)

    def _psql_run(self, extra, input_bytes, dbname=None):
        args = [self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
                "-d", dbname or self.dbname] + extra
        p = subprocess.run(args, input=input_bytes, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=_clean_env(), timeout=300)
        if p.returncode != 0:
            raise RuntimeError("psql failed (%d): %s" % (
                p.returncode, p.stderr.decode("utf-8", "replace").strip()))
        return p.stdout.decode("utf-8", "replace")

    def psql(self, sql, dbname=None):
        """Runs sql (one or more statements); returns psql's output:
        unaligned, tuples only, fields separated by '|'."""
        return self._psql_run(["-f", "-"], sql.encode("utf-8"), dbname)

    def query(self, sql, dbname=None):
        """Rows of a query as lists of strings."""
        out = self.psql(sql, dbname)
        return [line.split("|") for line in out.splitlines() if line != ""]

    def terminate_backends(self):
        """Ends every client connection but the one asking; returns how many."""
        out = self.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE backend_type = 'client backend' "
                        "AND pid <> pg_backend_pid();", dbname="postgres")
        return int(out.strip() or 0)


if __name__ == "__main__":
    # Manual use: python3 pgcluster.py DIR  -> starts, prints conninfo,
    # waits for Enter, stops.
    d = sys.argv[1] if len(sys.argv) > 1 else "/tmp/rq-pg"
    with PgCluster(d) as pg:
        print(pg.conninfo(), flush=True)
        try:
            input()
        except EOFError:
            pass
