"""Servers the tests start on 127.0.0.1 and stop after: git over HTTPS with basic authentication (git
http-backend behind a small threaded HTTPS server), ``git daemon`` without authentication, and an sshd (in a
container of the tools image, in the host's network namespace) for git over SSH and for NAS data over rsync.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import ssl
import subprocess
import threading
import time
import uuid

from docker_helpers import free_port


def make_repository(root, name, files):
    """A bare repository ``<root>/<name>.git`` holding ``files`` in one commit; returns the commit id."""
    work = os.path.join(root, "work-" + name)
    os.makedirs(work)
    for rel, text in files.items():
        path = os.path.join(work, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "model code"]):
        subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True)
    bare = os.path.join(root, name + ".git")
    subprocess.run(["git", "clone", "-q", "--bare", work, bare], check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True,
                          text=True).stdout.strip()


def self_signed(directory):
    """(certificate, key) for 127.0.0.1, made with openssl."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


class _GitHandler(http.server.BaseHTTPRequestHandler):
    project_root = None
    credentials = None
    requests = []

    def log_message(self, *args):
        pass

    def _authorised(self):
        if not self.credentials:
            return True
        expected = "Basic " + base64.b64encode(("%s:%s" % self.credentials).encode()).decode()
        return self.headers.get("Authorization") == expected

    def _serve(self):
        self.requests.append((self.command, self.path, bool(self.headers.get("Authorization"))))
        if not self._authorised():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _sep, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if self.command == "POST" else b""
        env = dict(os.environ, GIT_PROJECT_ROOT=self.project_root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=self.command, CONTENT_TYPE=self.headers.get("Content-Type", ""),
                   CONTENT_LENGTH=str(len(body)), REMOTE_USER=(self.credentials or ("anonymous",))[0],
                   REMOTE_ADDR="127.0.0.1", GIT_PROTOCOL=self.headers.get("Git-Protocol", ""))
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
        head, _sep, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _sep, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


@contextlib.contextmanager
def https_git(project_root, cert, key, credentials=None):
    """``https://127.0.0.1:<port>`` serving the repositories under ``project_root``; yields (base url, requests)."""
    handler = type("Handler", (_GitHandler,), {"project_root": project_root, "credentials": credentials,
                                               "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "https://127.0.0.1:%d" % server.server_address[1], handler.requests
    finally:
        server.shutdown()
        server.server_close()


def _wait_port(port, proc=None, seconds=20):
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("the server exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nothing answers on 127.0.0.1:%d" % port)


@contextlib.contextmanager
def git_daemon(base_path):
    """``git://127.0.0.1:<port>`` exporting every repository under ``base_path``, without authentication."""
    port = free_port()
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--base-path=" + base_path,
                             "--listen=127.0.0.1", "--port=%d" % port, base_path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc)
        yield "git://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def sshd(image, authorized_key, nas_user, nas_password, binds):
    """An sshd on 127.0.0.1:<port> in a container of ``image`` (host network): root logs in with the key,
    ``nas_user`` with ``nas_password``; ``binds`` are ``(host path, container path)`` read-only mounts."""
    port = free_port()
    name = "madci-sshd-%s" % uuid.uuid4().hex[:8]
    setup = ("ssh-keygen -A >/dev/null && mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh && "
             "printf '%%s\\n' \"$ROOT_KEY\" > /root/.ssh/authorized_keys && useradd -m %s && "
             "printf '%%s:%%s\\n' %s \"$NAS_PASSWORD\" | chpasswd && unset NAS_PASSWORD ROOT_KEY && "
             "exec /usr/sbin/sshd -D -e -p %d -o ListenAddress=127.0.0.1 -o PasswordAuthentication=yes "
             "-o PermitRootLogin=prohibit-password -o UsePAM=no" % (nas_user, nas_user, port))
    argv = ["docker", "run", "-d", "--rm", "--name", name, "--network", "host", "-e", "ROOT_KEY=" + authorized_key,
            "-e", "NAS_PASSWORD=" + nas_password]
    for host, target in binds:
        argv += ["-v", "%s:%s:ro" % (host, target)]
    subprocess.run(argv + [image, "sh", "-c", setup], check=True, capture_output=True)
    try:
        _wait_port(port)
        yield port
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
