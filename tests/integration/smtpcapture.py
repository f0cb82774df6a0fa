"""smtpcapture.py - an SMTP server for the tests of the digest and the
pages: it takes what the release transport (libcurl's SMTP client) sends
on a loopback port and keeps each message with its envelope, as an MTA's
re-injection listener would accept it.  It can answer a recipient with a
chosen reply (a 550, a 451) and hold a message's final answer until told,
so that a test can stop the sender while a message is in flight.

    cap = SmtpCapture().start()       # cap.port
    cap.messages                      # [(mail_from, [rcpt], bytes)]
    cap.reply_rcpt = "550 5.1.1 no such user"   # for every RCPT, or None
    cap.hold = threading.Event()      # set: DATA answers only once it is set
    cap.keep = False                  # count messages (cap.count) without keeping them
    cap.stop()
"""

import socket
import socketserver
import threading


class _Handler(socketserver.StreamRequestHandler):
    timeout = 60

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        cap = self.server.cap
        self.reply("220 capture.test ESMTP")
        mail_from, rcpts = None, []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250-capture.test\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n")
                self.wfile.flush()
            elif verb == "MAIL":
                mail_from = cmd[cmd.index(":") + 1:].split(" ")[0].strip("<>")
                rcpts = []
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                if cap.reply_rcpt:
                    self.reply(cap.reply_rcpt)
                    continue
                rcpts.append(cmd[cmd.index(":") + 1:].split(" ")[0].strip("<>"))
                self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if not rcpts:
                    self.reply("554 5.5.1 no valid recipients")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = []
                while True:
                    l = self.rfile.readline(1 << 20)
                    if not l or l in (b".\r\n", b".\n"):
                        break
                    if l.startswith(b".."):
                        l = l[1:]
                    data.append(l)
                with cap.lock:
                    cap.in_data += 1
                if cap.hold is not None:
                    cap.hold.wait(60)
                with cap.lock:
                    cap.count += 1
                    if cap.keep:
                        cap.messages.append((mail_from, list(rcpts), b"".join(data)))
                self.reply("250 2.0.0 Ok: queued as CAP%d" % cap.count)
            elif verb == "RSET":
                mail_from, rcpts = None, []
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Error: command not recognized")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpCapture:
    def __init__(self):
        self.messages = []
        self.reply_rcpt = None
        self.hold = None
        self.in_data = 0
        self.count = 0
        self.keep = True
        self.lock = threading.Lock()
        self.server = None
        self.port = None

    def start(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.cap = self
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server is not None:
            if self.hold is not None:
                self.hold.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def by_rcpt(self):
        """{rcpt: [message bytes]} of everything captured."""
        out = {}
        with self.lock:
            for _, rcpts, data in self.messages:
                for r in rcpts:
                    out.setdefault(r, []).append(data)
        return out
