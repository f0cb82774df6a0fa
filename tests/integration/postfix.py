"""postfix.py - a private Postfix instance for the release tests, from
Debian's `postfix` package, beside any other Postfix on the machine.
Python 3 standard library only.

Everything of the instance lives in one directory: its configuration
(`etc/`: main.cf, master.cf), queue (`spool/`), data (`data/`), its log
(`maillog`, through postlogd: `maillog_file`), and the mailboxes
(`mail/<user>/`, Maildir, delivered by the virtual(8) agent as the
unprivileged user).  It listens on loopback ports only:

    smtp_port      the public SMTP service (Debian's `smtp inet`), with
                   smtpd_milters / non_smtpd_milters as the caller sets them
    reinject_port  the re-injection listener of contrib/postfix/master.cf,
                   as shipped but for its port

Debian's master.cf is the base; every service runs without chroot (the
private queue has no copy of /etc).  Mail for anything but the virtual
domain goes to a relayhost on a closed loopback port, so it stays in the
queue: an empty queue proves that nothing (no bounce either) was sent
elsewhere.  Started with `postfix -c DIR start`, stopped with
`postfix -c DIR stop` and, should the master linger, by its pid.

    p = Postfix(tmp, domain="example.net", users=["bob", "carol"],
                milter="inet:127.0.0.1:PORT")
    with p:
        p.send(sender, [rcpt], data)      # (code, text) of the SMTP answer
        p.maildir("bob")                  # [bytes] of delivered messages
        p.queue()                         # postqueue -p output
        p.postconf("soft_bounce=yes"); p.reload()

A component that cannot start raises RuntimeError with its log.
"""

import contextlib
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import time

from harness import _read, free_port, _is_alive

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHIPPED_MASTER = os.path.join(ROOT, "contrib", "postfix", "master.cf")
SHIPPED_PORT = "127.0.0.1:10025"
DEBIAN_MASTER = "/etc/postfix/master.cf"
MAILBOX_USER = "nobody"


def shipped_listener(port):
    """The service lines of contrib/postfix/master.cf with the listener's
    address moved to port: nothing else changes."""
    with open(SHIPPED_MASTER) as f:
        text = f.read()
    if SHIPPED_PORT not in text:
        raise RuntimeError("%s no longer listens on %s" % (SHIPPED_MASTER, SHIPPED_PORT))
    lines = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
    return "\n".join(lines).replace(SHIPPED_PORT, "127.0.0.1:%d" % port) + "\n"


def _debian_master(smtp_port):
    """Debian's master.cf: the public smtp service on a loopback port, no
    chroot anywhere."""
    out = []
    with open(DEBIAN_MASTER) as f:
        for line in f:
            if line.startswith("#") or not line.strip() or line[0].isspace():
                out.append(line)
                continue
            cols = line.split()
            if len(cols) >= 8:
                if cols[0] == "smtp" and cols[1] == "inet":
                    cols[0] = "127.0.0.1:%d" % smtp_port
                cols[4] = "n"
                line = "  ".join(cols[:7]) + "  " + " ".join(cols[7:]) + "\n"
            out.append(line)
    return "".join(out)


class Postfix:
    """A private Postfix in tmp/name (see module doc)."""

    def __init__(self, tmp, domain, users, milter=None, non_smtpd_milter=True,
                 name="postfix"):
        self.dir = os.path.join(tmp, name)
        self.etc = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        self.data = os.path.join(self.dir, "data")
        self.mail = os.path.join(self.dir, "mail")
        self.maillog = os.path.join(self.dir, "maillog")
        self.domain = domain
        self.users = list(users)
        self.smtp_port = free_port()
        self.reinject_port = free_port()
        self.closed_port = free_port()  # the relayhost nobody runs
        self.milter = milter
        self.non_smtpd_milter = non_smtpd_milter
        self.master_pid = None
        self._write()

    @property
    def reinject(self):
        return "127.0.0.1:%d" % self.reinject_port

    def _write(self):
        for d in (self.etc, self.mail, self.spool, self.data):
            os.makedirs(d, exist_ok=True)
        pf = pwd.getpwnam("postfix")
        os.chown(self.data, pf.pw_uid, pf.pw_gid)
        os.chmod(self.data, 0o700)
        pw = pwd.getpwnam(MAILBOX_USER)
        os.chown(self.mail, pw.pw_uid, pw.pw_gid)
        boxes = ", ".join("%s@%s=%s/" % (u, self.domain, u) for u in self.users)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.spool,
            "data_directory": self.data,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.dir,
            "myhostname": "mx.release-test.invalid",
            "mydomain": "release-test.invalid",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            "relayhost": "[127.0.0.1]:%d" % self.closed_port,
            "smtp_connect_timeout": "2s",
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": "inline:{ %s }" % boxes,
            "virtual_uid_maps": "static:%d" % pw.pw_uid,
            "virtual_gid_maps": "static:%d" % pw.pw_gid,
            "virtual_minimum_uid": "1",
            "milter_default_action": "accept",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "delay_warning_time": "0",
        }
        if self.milter:
            # As Rspamd's integration guide wires them.
            main["smtpd_milters"] = self.milter
            main["non_smtpd_milters"] = "$smtpd_milters" if self.non_smtpd_milter else ""
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("# private instance of tests/integration/postfix.py\n")
            for k, v in main.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(_debian_master(self.smtp_port))
            f.write("\n# contrib/postfix/master.cf, on a free port\n")
            f.write(shipped_listener(self.reinject_port))

    def _postfix(self, *args, timeout=60):
        p = subprocess.run(["postfix", "-c", self.etc] + list(args), capture_output=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    def env(self):
        """The environment that makes Postfix's own commands (sendmail,
        postqueue) use this instance."""
        e = dict(os.environ)
        e["MAIL_CONFIG"] = self.etc
        return e

    def log(self):
        return "---- postfix maillog ----\n" + _read(self.maillog)

    def _pid(self):
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                return int(f.read().strip())
        return None

    def start(self, timeout=30):
        if shutil.which("postfix") is None:
            raise RuntimeError("postfix not found: install Debian's postfix package")
        rc, out = self._postfix("check")
        if rc != 0:
            raise RuntimeError("postfix check failed (%d): %s" % (rc, out))
        rc, out = self._postfix("start")
        if rc != 0:
            raise RuntimeError("postfix start failed (%d): %s\n%s" % (rc, out, self.log()))
        end = time.monotonic() + timeout
        while True:
            self.master_pid = self._pid()
            if self.master_pid and self._listening():
                return self
            if time.monotonic() > end:
                self.stop()
                raise RuntimeError("postfix not ready after %ds\n%s" % (timeout, self.log()))
            time.sleep(0.1)

    def _listening(self):
        import socket
        for port in (self.smtp_port, self.reinject_port):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
            except OSError:
                return False
        return True

    def stop(self, timeout=20):
        pid = self.master_pid or self._pid()
        if pid is None:
            return
        self._postfix("stop")
        end = time.monotonic() + timeout
        while _is_alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        if _is_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.master_pid = None

    def postconf(self, *settings):
        subprocess.run(["postconf", "-c", self.etc, "-e"] + list(settings), check=True,
                       capture_output=True)

    def reload(self):
        rc, out = self._postfix("reload")
        if rc != 0:
            raise RuntimeError("postfix reload failed: %s" % out)
        time.sleep(1.5)  # the master re-reads its files and restarts services

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        if et is not None:
            sys.stderr.write(self.log()[-20000:] + "\n")
        self.stop()
        return False

    # ------------------------------------------------------------ mail

    def send(self, sender, rcpts, data, port=None):
        """One SMTP transaction to the public port; (code, text) of the
        answer to the end of data, or of the first refusal."""
        try:
            with smtplib.SMTP("127.0.0.1", port or self.smtp_port, timeout=60) as s:
                s.ehlo("client.release-test.invalid")
                s.sendmail(sender, rcpts, data)
                return 250, "accepted"
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode("utf-8", "replace")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = list(e.recipients.values())[0]
            return code, text.decode("utf-8", "replace")
        except smtplib.SMTPSenderRefused as e:
            return e.smtp_code, e.smtp_error.decode("utf-8", "replace")

    def maildir(self, user):
        """The messages delivered to user's Maildir, oldest first."""
        new = os.path.join(self.mail, user, "new")
        if not os.path.isdir(new):
            return []
        names = sorted(os.listdir(new), key=lambda n: os.stat(os.path.join(new, n)).st_mtime)
        out = []
        for n in names:
            with open(os.path.join(new, n), "rb") as f:
                out.append(f.read())
        return out

    def wait_maildir(self, user, n, timeout=30):
        end = time.monotonic() + timeout
        while True:
            got = self.maildir(user)
            if len(got) >= n or time.monotonic() > end:
                return got
            time.sleep(0.1)

    def queue(self):
        """postqueue -p of this instance."""
        p = subprocess.run(["postqueue", "-c", self.etc, "-p"], capture_output=True,
                           timeout=30, env=self.env())
        return (p.stdout + p.stderr).decode("utf-8", "replace")

    def wait_idle(self, timeout=30):
        """Waits until the queue is empty; returns postqueue -p's text."""
        end = time.monotonic() + timeout
        while True:
            q = self.queue()
            if "Mail queue is empty" in q or time.monotonic() > end:
                return q
            time.sleep(0.2)

    def log_lines(self, pattern):
        return [l for l in _read(self.maillog).splitlines() if re.search(pattern, l)]

    def wait_log_lines(self, pattern, timeout=15):
        """log_lines once pattern has appeared: the local delivery agent logs
        "status=sent" after the maildir file exists, through postlogd."""
        end = time.monotonic() + timeout
        while True:
            got = self.log_lines(pattern)
            if got or time.monotonic() > end:
                return got
            time.sleep(0.1)
