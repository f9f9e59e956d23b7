"""Real database servers for the tests: PostgreSQL and MariaDB, each started
once per test process (on first use: each pytest-xdist worker has its own) and
stopped at the end of its test session (``stopAll``), or when it ends.

Debian's packages provide the programs (``make test`` installs postgresql
and mariadb-server when missing).  Each server runs from a data folder made
in a temporary folder, on a free loopback port, without flushing to disk
(the tests check pacs's side, not the disk's; commits still wait for the
server and survive a crash of it).  Each test gets a database of its own
(``createDatabase``).

PostgreSQL: initdb's cluster with trust authentication; initdb and postgres
refuse to run as root, so as root they run as the ``postgres`` user.
MariaDB: mariadb-install-db's data folder; the account ``pacs`` has a
password (``MariaDBServer.password``), so the tests also show that pacs
passes Conquest's ``Password`` on.
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
from urllib.parse import quote

from tests.interop.server import freePort

_servers = {}
_names = itertools.count(1)


class DatabaseServer:
    """One database server in a temporary folder.

    Subclasses give ``scheme`` (of the ``--db`` URL), ``prepare`` (make the
    data folder), ``command`` (run the server), ``ready`` and ``sql``.
    """

    user = "pacs"
    password = ""

    def __init__(self):
        # As root the server may run as another user, which must reach its folder: /tmp.
        self.folder = tempfile.mkdtemp(prefix=f"pacs-{self.scheme}-", dir="/tmp" if os.geteuid() == 0 else None)
        self.data = os.path.join(self.folder, "data")
        self.port = freePort()
        self.process = None

    def start(self, timeout=60):
        """Make the data folder (the first time) and start the server."""
        if not os.path.exists(self.data):
            self.prepare()
        log = open(os.path.join(self.folder, "server.log"), "ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.scheme} server exited:\n{self.log()}")
            if self.ready():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.scheme} server did not start within {timeout} s:\n{self.log()}")

    def run(self, *command):
        """Run a program of the server's; its output."""
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def crash(self):
        """SIGKILL the server, as after a crash of its machine (``start``
        runs crash recovery)."""
        self.process.kill()
        self.process.wait()

    def pause(self, testCase):
        """SIGSTOP every process of the server, as a hung server or a
        network partition leaves its clients waiting; SIGCONT after
        ``testCase`` (or when the returned function is called)."""
        processes = self.processes()
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        resumed = []

        def resume():
            if not resumed:
                resumed.append(True)
                for pid in processes:
                    os.kill(pid, signal.SIGCONT)
        testCase.addCleanup(resume)
        return resume

    def processes(self):
        """The server's process ids (its main process's, and its children's)."""
        return [self.process.pid]

    def log(self):
        with open(os.path.join(self.folder, "server.log"), errors="replace") as f:
            return f.read()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # waits for the test's connections to end
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database):
        """The ``--db`` string of ``database``."""
        credentials = self.user + (":" + quote(self.password, safe="") if self.password else "")
        return f"{self.scheme}://{credentials}@127.0.0.1:{self.port}/{database}"

    def createDatabase(self, testCase):
        """A new empty database, dropped after ``testCase``; returns its name."""
        name = f"pacs_test_{os.getpid()}_{next(_names)}"
        self.sql(f"CREATE DATABASE {name}")
        testCase.addCleanup(self.sql, self.dropStatement.format(name=name))
        return name

    def newEngine(self, driver, testCase, configuration=None):
        """``driver``'s engine on a new database, disposed of after
        ``testCase`` (before the database is dropped); ``configuration``
        as ``createEngine`` takes it."""
        engine = driver.createEngine(self.url(self.createDatabase(testCase)), configuration)
        testCase.addCleanup(engine.dispose)
        return engine


def _postgresBinaries():
    """The folder of PostgreSQL's server programs (the newest installed)."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]),
                            reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    raise RuntimeError("PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")


class PostgresServer(DatabaseServer):
    """A PostgreSQL cluster."""

    scheme = "postgresql"
    dropStatement = "DROP DATABASE IF EXISTS {name} WITH (FORCE)"

    def __init__(self):
        super().__init__()
        self.bin = _postgresBinaries()
        self._runAs = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._runAs = ["runuser", "-u", "postgres", "--"]

    def prepare(self):
        self.run(*self._runAs, os.path.join(self.bin, "initdb"), "-D", self.data, "-U", self.user, "-A", "trust",
                 "-E", "UTF8", "--no-sync")

    def command(self):
        return [*self._runAs, os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port),
                "-k", self.folder, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                "-c", "max_connections=200"]

    def ready(self):
        return subprocess.run([os.path.join(self.bin, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0

    def processes(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            pid = int(f.readline())
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        return [pid, *map(int, children)]

    def crash(self):
        """SIGKILL the postmaster and wait for its processes to end."""
        pid, *children = self.processes()
        os.kill(pid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{child}") for child in children):  # they notice and end
            if time.monotonic() > deadline:
                raise RuntimeError("postgres processes outlived their postmaster")
            time.sleep(0.1)

    def dropConnections(self, database):
        """End every session on ``database``, as an idle timeout or an
        administrator does."""
        self.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")

    def sql(self, statement, database="postgres"):
        """Run ``statement`` with psql; its output (unaligned, tuples only)."""
        return self.run(os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database, "-c", statement)


def _program(name):
    """The path of a MariaDB program (the server is in /usr/sbin), or None."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin")


class MariaDBServer(DatabaseServer):
    """A MariaDB server (the MySQL driver's tests)."""

    scheme = "mysql"
    password = "p@ss:w/rd"
    dropStatement = "DROP DATABASE IF EXISTS {name}"

    def __init__(self):
        super().__init__()
        if any(_program(name) is None for name in ("mariadbd", "mariadb-install-db", "mariadb")):
            raise RuntimeError("MariaDB is not installed (Debian: apt-get install mariadb-server)")

    def prepare(self):
        self.run("mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=root",
                 "--auth-root-authentication-method=normal", "--skip-test-db")
        with open(os.path.join(self.folder, "init.sql"), "w") as f:
            f.write(f"CREATE USER IF NOT EXISTS '{self.user}'@'%' IDENTIFIED BY '{self.password}';\n"
                    f"GRANT ALL ON *.* TO '{self.user}'@'%';\n")

    def command(self):
        return [_program("mariadbd"), "--no-defaults",
                f"--datadir={self.data}", "--user=root", f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--socket={self.folder}/mariadb.sock", f"--pid-file={self.folder}/mariadb.pid",
                f"--init-file={self.folder}/init.sql", "--skip-name-resolve", "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0", "--innodb-flush-method=nosync",
                "--innodb-buffer-pool-size=64M", "--max-connections=300"]

    def ready(self):
        return subprocess.run(self._client("mysql", "-e", "SELECT 1"), capture_output=True).returncode == 0

    def _client(self, database, *arguments):
        return ["mariadb", "--no-defaults", "--batch", "--skip-column-names", "-h", "127.0.0.1",
                "-P", str(self.port), "-u", self.user, f"-p{self.password}", "-D", database, *arguments]

    def dropConnections(self, database):
        """End every session on ``database``, as ``wait_timeout`` or an
        administrator does."""
        for session in self.sql(f"SELECT id FROM information_schema.processlist WHERE db = '{database}'").split():
            self.sql(f"KILL {session}")

    def sql(self, statement, database="mysql"):
        """Run ``statement`` with the mariadb client; its output (tab-separated, no header)."""
        return self.run(*self._client(database, "-e", statement))


def stopAll():
    """Stop the servers this process started (at the end of a test run:
    pytest-xdist's workers end without running ``atexit``)."""
    while _servers:
        _servers.popitem()[1].stop()


def started(serverClass):
    """The test run's server of ``serverClass``, started on first use."""
    if serverClass not in _servers:
        server = serverClass()
        atexit.register(server.stop)
        _servers[serverClass] = server.start()
    return _servers[serverClass]


def postgresServer():
    return started(PostgresServer)


def mariadbServer():
    return started(MariaDBServer)
