"""A real PostgreSQL server for the tests, started once per test run.

Debian's postgresql package provides the programs (``make test`` installs
it when missing); the server runs from a cluster made with initdb in a
temporary folder, on a free loopback port, with trust authentication, and
stops when the test process ends.  initdb and postgres refuse to run as
root: as root they run as the ``postgres`` user.  Each test gets a database
of its own (``createDatabase``); the server runs with ``fsync=off``, which
makes creating one fast (commits still wait for the server: the tests
check pacs's side, not the disk's).
"""

import atexit
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from tests.interop.server import freePort

_server = None
_names = itertools.count(1)


def _binaries():
    """The folder of PostgreSQL's server programs (the newest installed)."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]),
                            reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    raise RuntimeError("PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder."""

    user = "pacs"

    def __init__(self):
        self.bin = _binaries()
        # As root the server runs as postgres, which must reach its folder: /tmp.
        self.folder = tempfile.mkdtemp(prefix="pacs-pg-", dir="/tmp" if os.geteuid() == 0 else None)
        self.data = os.path.join(self.folder, "data")
        self.port = freePort()
        self.process = None
        self._runAs = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._runAs = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command):
        result = subprocess.run([*self._runAs, *command], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self, timeout=60):
        """Make the cluster (the first time) and start the server."""
        if not os.path.exists(self.data):
            self._run(os.path.join(self.bin, "initdb"), "-D", self.data, "-U", self.user, "-A", "trust",
                      "-E", "UTF8", "--no-sync")
        log = open(os.path.join(self.folder, "postgres.log"), "ab")
        self.process = subprocess.Popen(
            [*self._runAs, os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port),
             "-k", self.folder, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log()}")
            if subprocess.run([os.path.join(self.bin, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not start within {timeout} s:\n{self.log()}")

    def crash(self):
        """SIGKILL the server and wait for its processes to end, as after
        a crash of its machine (``start`` runs crash recovery)."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            pid = int(f.readline())
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        os.kill(pid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{child}") for child in children):  # they notice and end
            if time.monotonic() > deadline:
                raise RuntimeError("postgres processes outlived their postmaster")
            time.sleep(0.1)

    def log(self):
        with open(os.path.join(self.folder, "postgres.log"), errors="replace") as f:
            return f.read()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # smart shutdown: waits for the test's connections
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def sql(self, statement, database="postgres"):
        """Run ``statement`` with psql; its output (unaligned, tuples only)."""
        return subprocess.run(
            [os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database, "-c", statement],
            capture_output=True, text=True, check=True).stdout

    def url(self, database):
        """The ``--db`` string of ``database``."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"


def postgresServer():
    """The test run's PostgreSQL server, started on first use."""
    global _server
    if _server is None:
        server = PostgresServer()
        atexit.register(server.stop)
        _server = server.start()
    return _server


def createDatabase(testCase):
    """A new empty database, dropped after ``testCase``; returns its name."""
    server = postgresServer()
    name = f"pacs_test_{os.getpid()}_{next(_names)}"
    server.sql(f"CREATE DATABASE {name}")
    testCase.addCleanup(server.sql, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return name
