"""browser.py - a real headless Chromium (Debian's chromium) driven
through Debian's chromedriver over the WebDriver HTTP protocol, with the
standard library only.  chromedriver is started on a free loopback port
and stopped by its pid; Chromium gets a fresh profile directory and the
flags that keep it from talking to anyone but the page.

    b = Browser(tmp).start()
    b.open(url); b.title(); b.text(css); b.click(css); b.run(js)
    b.screenshot(path); b.console(); b.requests()
    b.stop()

console() is what the page logged (the browser log), requests() every
URL the browser asked for (the DevTools Network events of the
performance log).
"""

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import harness as h

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--ignore-certificate-errors",
         "--window-size=900,1000", "--hide-scrollbars", "--lang=en-US"]


class Browser:
    def __init__(self, tmp, width=900, height=1000):
        self.dir = os.path.join(tmp, "browser")
        os.makedirs(self.dir, exist_ok=True)
        self.port = h.free_port()
        self.proc = None
        self.session = None
        self.size = (width, height)

    def _call(self, method, path, body=None, timeout=60):
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read().decode())["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError("webdriver %s %s: %s" % (method, path, e.read().decode()))

    def start(self):
        for p in (CHROMIUM, CHROMEDRIVER):
            if not os.path.exists(p):
                raise RuntimeError("%s is missing (Debian packages chromium, chromium-driver)" % p)
        log = open(os.path.join(self.dir, "chromedriver.log"), "ab")
        self.proc = subprocess.Popen([CHROMEDRIVER, "--port=%d" % self.port],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

        def up():
            try:
                self._call("GET", "/status", timeout=2)
                return True
            except (OSError, RuntimeError):
                return False
        if not h._wait_for(up, 20):
            self.stop()
            raise RuntimeError("chromedriver did not start")
        profile = os.path.join(self.dir, "profile")
        os.makedirs(profile, exist_ok=True)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": FLAGS + ["--user-data-dir=" + profile,
                                 "--window-size=%d,%d" % self.size],
            },
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        }}}
        self.session = self._call("POST", "/session", caps, timeout=90)["sessionId"]
        return self

    def stop(self):
        if self.session:
            try:
                self._call("DELETE", "/session/%s" % self.session, timeout=20)
            except (OSError, RuntimeError):
                pass
            self.session = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def s(self, path, body=None, method=None):
        return self._call(method or ("POST" if body is not None else "GET"),
                          "/session/%s%s" % (self.session, path), body)

    def open(self, url):
        self.s("/url", {"url": url})

    def url(self):
        return self.s("/url")

    def set_size(self, width, height):
        self.s("/window/rect", {"width": width, "height": height})

    def title(self):
        return self.s("/title")

    def run(self, script, *args):
        """Runs script in the page through the driver (not as page script)."""
        return self.s("/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        found = self.s("/elements", {"using": "css selector", "value": css})
        return [list(e.values())[0] for e in found]

    def text(self, css="body"):
        els = self.find(css)
        if not els:
            raise AssertionError("no element %s on %s" % (css, self.url()))
        return self.s("/element/%s/text" % els[0])

    def click(self, css):
        els = self.find(css)
        if not els:
            raise AssertionError("no element %s on %s" % (css, self.url()))
        self.s("/element/%s/click" % els[0], {})
        time.sleep(0.2)

    def click_link(self, text):
        found = self.s("/elements", {"using": "link text", "value": text})
        if not found:
            raise AssertionError("no link %r on %s" % (text, self.url()))
        self.s("/element/%s/click" % list(found[0].values())[0], {})
        time.sleep(0.2)

    def screenshot(self, path):
        png = base64.b64decode(self.s("/screenshot"))
        with open(path, "wb") as f:
            f.write(png)

    def _log(self, kind):
        return self.s("/se/log", {"type": kind})

    def console(self):
        return [e["message"] for e in self._log("browser")]

    # Chromium loads its own pages' resources (chrome://resources/...,
    # for an internal page it shows now and then) through the same log;
    # they never leave the browser and are not the pages' requests.
    INTERNAL = ("chrome://", "chrome-untrusted://", "devtools://", "about:")

    def requests(self):
        """Every URL the pages asked for since the last call, the
        browser's own internal resources left out."""
        urls = []
        for e in self._log("performance"):
            m = json.loads(e["message"])["message"]
            if m.get("method") == "Network.requestWillBeSent":
                url = m["params"]["request"]["url"]
                if not url.startswith(self.INTERNAL):
                    urls.append(url)
        return urls
