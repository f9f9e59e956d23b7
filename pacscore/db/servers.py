"""What the drivers of database servers (PostgreSQL, MySQL) share.

Conquest's dicom.ini names the server with ``SQLHost`` (``host`` or
``host:port``; default localhost), the database with ``SQLServer``
(default conquest) and the account with ``Username`` and ``Password``;
a flag (``PostGres = 1``, ``MySQL = 1``) picks the server's kind.  The
database must exist, as with Conquest; ``dgate -i`` or the first start
creates the tables in it (a start on one that does not exist is refused
with the command that creates it: ``missingDatabase``).

One writer thread, as for SQLite: group commit keeps it far from busy, and
with a second one two images of a new series arriving together would both
insert its row (the unique key refuses the second, and its whole batch is
retried row by row); readers get connections of their own from the pool.
Such a server makes each commit durable by itself (the drivers have no
``localFolder``), so after an index commit the archive flushes only the
MAG devices.

``SQLTimeOut`` (seconds) bounds how long the server may keep pacs waiting:
the drivers pass it on as TCP keepalive timing and socket write timeouts
(a server cut off by the network), and the index fails the C-STORE writes
and the C-FIND/C-MOVE/C-GET queries it does not answer in time (see
pacscore.db.index); a statement that merely runs long is not cut short.
"""

import re
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from pacscore.db.drivers import namesNoDatabase, redacted
from pacscore.db.errors import NO_DATABASE, hasCode
from pacscore.db.writer import DEFAULT_TIMEOUT

KEEPALIVE_PROBES = 3
# libpq's message of a database that does not exist: psycopg has no SQLSTATE for an error while connecting
NO_DATABASE_MESSAGE = re.compile(r'database ".*" does not exist')


def keepaliveInterval(timeout):
    """Seconds a connection idles before its first TCP keepalive probe, and
    between probes: after ``KEEPALIVE_PROBES`` unanswered ones, a server
    cut off by the network is noticed within ``timeout`` (SQLTimeOut)."""
    return max(1, timeout // 4)


class DatabaseServerDriver:
    """A driver for a database server reached with a SQLAlchemy URL
    ``<name>://USER:PASSWORD@HOST:PORT/DATABASE``.

    Subclasses set ``name``, ``label`` (the name in messages),
    ``description``, ``flag`` (the dicom.ini key), ``dbapi`` (SQLAlchemy's
    name of the Python driver), ``extra`` (the pip extra that installs it)
    ``createCommand`` (the command that creates a database, ``{database}``
    its name) and may add ``engineOptions`` and ``connected``.  ``createEngine``
    takes the loaded configuration, or None (the defaults).
    """

    writerThreads = 1
    defaultDatabase = "conquest"
    poolSize = 8
    connectTimeout = 10  # seconds: a server that does not answer fails the store instead of stalling it

    def selectedBy(self, configuration):
        return configuration.ini.getint(self.flag, 0) == 1 and not namesNoDatabase(configuration)

    def urlFromConfiguration(self, configuration):
        ini = configuration.ini
        host = ini.get("SQLHost", "").strip() or "localhost"
        database = ini.get("SQLServer", "").strip() or self.defaultDatabase
        user = ini.get("Username", "").strip()
        password = ini.get("Password", "")
        credentials = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        return f"{self.name}://{credentials + '@' if credentials else ''}{host}/{quote(database, safe='')}"

    def engineOptions(self, url, timeout):
        """``(url, keyword arguments)`` for ``create_engine`` beyond the pool's;
        ``timeout``: SQLTimeOut, seconds the server may take to answer (None:
        no limit)."""
        return url, {}

    def connected(self, dbapiConnection, timeout):
        """Prepare each new connection of the Python driver (``timeout``:
        SQLTimeOut, not None)."""

    def missingDatabase(self, error, url):
        """The advice for a SQLAlchemy ``error`` (from connecting to ``url``)
        that says its database does not exist (``NO_DATABASE``, or libpq's
        message), else None."""
        if not (hasCode(error, NO_DATABASE) or NO_DATABASE_MESSAGE.search(str(getattr(error, "orig", None)))):
            return None
        return (f"the database {url.database} does not exist on the {self.label} server: create it "
                f"({self.createCommand.format(database=url.database)}), or correct SQLServer in dicom.ini (or --db)")

    def createEngine(self, description, configuration):
        what = f"not a {self.label} database description: {redacted(description)!r}"
        try:
            url = make_url(description)
            url.port  # a port that is no number raises only here
        except (ArgumentError, ValueError) as e:
            raise ValueError(f"{what} ({e})") from None
        if url.get_backend_name() != self.name:
            raise ValueError(what)
        timeout = DEFAULT_TIMEOUT if configuration is None else configuration.sqlTimeout
        url, options = self.engineOptions(url.set(drivername=f"{self.name}+{self.dbapi}"), timeout)
        try:
            engine = create_engine(url, pool_size=self.poolSize, max_overflow=2 * self.poolSize,
                                   pool_pre_ping=True, **options)
        except ImportError as e:
            raise ValueError(f"the {self.label} driver needs {self.dbapi} ({e}): "
                             f"pip install 'pacs[{self.extra}]'") from None
        if timeout is not None:
            event.listen(engine, "connect",
                         lambda dbapiConnection, record: self.connected(dbapiConnection, timeout))
        return engine
