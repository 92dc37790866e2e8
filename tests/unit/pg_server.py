"""A private PostgreSQL server for the tests: Debian's server binaries (ci/setup-host.sh installs them), a fresh
data directory and a free loopback port, run as a non-root user (initdb refuses root), removed afterwards.

The superuser logs in over TCP with a password (SCRAM), so the tests see real authentication and real URLs with
a password in them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

SUPERUSER = "madci"


def server_bindir():
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql: run ci/setup-host.sh")
    return os.path.dirname(found[-1])


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server(object):
    def __init__(self, port, password):
        self.port = port
        self.password = password

    def url(self, database="postgres", user=SUPERUSER, password=None):
        secret = self.password if password is None else password
        return "postgresql://%s:%s@127.0.0.1:%d/%s" % (user, secret, self.port, database)

    def create_database(self, prefix="madci"):
        """A new, empty database; its name."""
        import psycopg

        name = "%s_%s" % (prefix, uuid.uuid4().hex[:10])
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE %s" % name)
        return name

    def execute(self, database, statement, params=()):
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else None


@contextlib.contextmanager
def postgres_server():
    """Start a server; yield a Server; stop it and remove its files."""
    bindir = server_bindir()
    run_as = {}
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")  # made by Debian's postgresql-common
        run_as = dict(user=account.pw_uid, group=account.pw_gid)
    top = tempfile.mkdtemp(prefix="madci-pg-")
    data, sockets = os.path.join(top, "data"), os.path.join(top, "run")
    os.mkdir(sockets)
    password = uuid.uuid4().hex
    pwfile = os.path.join(top, "pw")
    with open(pwfile, "w") as handle:
        handle.write(password + "\n")
    if run_as:
        for path in (top, sockets, pwfile):
            os.chown(path, run_as["user"], run_as["group"])
    port = free_port()
    log = os.path.join(top, "server.log")
    started = False
    try:
        subprocess.run([os.path.join(bindir, "initdb"), "-D", data, "-U", SUPERUSER, "--pwfile", pwfile,
                        "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-instructions"],
                       check=True, capture_output=True, timeout=300, **run_as)
        subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "120", "-o",
                        "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off" % (port, sockets), "start"],
                       check=True, capture_output=True, timeout=180, **run_as)
        started = True
        yield Server(port, password)
    except subprocess.CalledProcessError as exc:
        text = ""
        if os.path.exists(log):
            with open(log) as handle:
                text = handle.read()
        raise RuntimeError("the test PostgreSQL server did not start: %s\n%s%s" % (
            exc, exc.stderr.decode("utf-8", "replace") if exc.stderr else "", text))
    finally:
        if started:
            subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
                           check=False, capture_output=True, timeout=120, **run_as)
        shutil.rmtree(top, ignore_errors=True)
