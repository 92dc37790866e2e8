"""A small W3C WebDriver client for Debian's chromium and chromedriver (ci/setup-host.sh installs both).

Headless, sandbox-less (the tests run as root), with nothing that reaches the network, and a fresh profile that
is removed afterwards. Script errors of a page are recorded from the first line it runs: a hook is installed
through the DevTools protocol before any page loads.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")
ERROR_HOOK = ("window.__errors = [];"
              "window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });"
              "window.addEventListener('unhandledrejection',"
              " function (e) { window.__errors.push(String(e.reason)); });")


class WebDriverError(Exception):
    pass


class Browser(object):
    def __init__(self, base, session):
        self.base = base
        self.session = session

    def call(self, method, path, body=None):
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request("%s/session/%s%s" % (self.base, self.session, path), data=data,
                                         method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read().decode("utf-8"))["value"]
        except urllib.error.HTTPError as exc:
            raise WebDriverError("%s %s: %s" % (method, path, exc.read().decode("utf-8", "replace")[:2000]))

    def open(self, url):
        self.call("POST", "/url", {"url": url})

    def run(self, script, *args):
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def element(self, css):
        return self.call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        self.call("POST", "/element/%s/click" % self.element(css), {})

    def type(self, css, text):
        self.call("POST", "/element/%s/value" % self.element(css), {"text": text})

    def errors(self):
        return self.run("return window.__errors === undefined ? ['no error hook'] : window.__errors;")

    def screenshot(self, path):
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(self.call("GET", "/screenshot")))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read().decode("utf-8"))["value"]
    except urllib.error.HTTPError as exc:
        raise WebDriverError("new session: %s" % exc.read().decode("utf-8", "replace")[:2000])


@contextlib.contextmanager
def chromium(width=1400, height=1000):
    """Yield a Browser; quit it, stop chromedriver and remove the profile afterwards."""
    profile = tempfile.mkdtemp(prefix="madci-chromium-")
    port = _free_port()
    driver = subprocess.Popen([CHROMEDRIVER, "--port=%d" % port], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = "http://127.0.0.1:%d" % port
    browser = None
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/status", timeout=5) as response:
                    if json.loads(response.read().decode("utf-8"))["value"].get("ready"):
                        break
            except (OSError, ValueError):
                pass
            if time.time() > deadline or driver.poll() is not None:
                raise WebDriverError("chromedriver did not start on port %d" % port)
            time.sleep(0.2)
        args = list(FLAGS) + ["--user-data-dir=%s" % profile, "--window-size=%d,%d" % (width, height)]
        created = _post(base + "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}})
        browser = Browser(base, created["sessionId"])
        browser.call("POST", "/goog/cdp/execute", {"cmd": "Page.addScriptToEvaluateOnNewDocument",
                                                   "params": {"source": ERROR_HOOK}})
        yield browser
    finally:
        if browser is not None:
            try:
                browser.call("DELETE", "")
            except (WebDriverError, OSError):
                pass
        driver.terminate()
        try:
            driver.wait(timeout=30)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()
        shutil.rmtree(profile, ignore_errors=True)
