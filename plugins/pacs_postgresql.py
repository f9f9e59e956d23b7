"""The PostgreSQL driver: the index in a PostgreSQL database, through psycopg 3.

Selected by ``--db postgresql://USER:PASSWORD@HOST:PORT/DATABASE`` or, from
dicom.ini, by ``PostGres = 1`` (Conquest's flag) with Conquest's keys:
``SQLHost`` (``host`` or ``host:port``; default localhost), ``SQLServer``
(the database name; default conquest), ``Username`` and ``Password``.  The
database must exist, as with Conquest (``createdb conquest``); ``dgate -i``
or the first start creates the tables in it.

PostgreSQL makes each commit durable by itself, so after an index commit the
archive flushes only the MAG devices.  One writer thread, as for SQLite:
group commit keeps it far from busy, and with a second one two images of a
new series arriving together would both insert its row (the unique key
refuses the second, and its whole batch is retried row by row); readers
get connections of their own from the pool.
"""

from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from twisted.plugin import IPlugin
from zope.interface import implementer

from pacscore.db.drivers import redacted
from pacscore.interfaces import IDatabaseDriver


@implementer(IPlugin, IDatabaseDriver)
class PostgreSQLDriver:
    """PostgreSQL through psycopg 3 (``pip install 'pacs[postgresql]'``)."""

    name = "postgresql"
    description = "PostgreSQL server: postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    writerThreads = 1
    defaultDatabase = "conquest"
    poolSize = 8
    connectTimeout = 10  # seconds: a server that does not answer fails the store instead of stalling it

    def selectedBy(self, configuration):
        return configuration.ini.get("PostGres", "0").strip() == "1"

    def urlFromConfiguration(self, configuration):
        ini = configuration.ini
        host = ini.get("SQLHost", "").strip() or "localhost"
        database = ini.get("SQLServer", "").strip() or self.defaultDatabase
        user = ini.get("Username", "").strip()
        password = ini.get("Password", "")
        credentials = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        return f"postgresql://{credentials + '@' if credentials else ''}{host}/{quote(database, safe='')}"

    def createEngine(self, description, configuration):
        try:
            url = make_url(description)
        except ArgumentError as e:
            raise ValueError(f"not a PostgreSQL database description: {redacted(description)!r} ({e})") from None
        if url.get_backend_name() != "postgresql":
            raise ValueError(f"not a PostgreSQL database description: {redacted(description)!r}")
        try:
            return create_engine(url.set(drivername="postgresql+psycopg"), pool_size=self.poolSize,
                                 max_overflow=2 * self.poolSize, pool_pre_ping=True,
                                 connect_args={"connect_timeout": self.connectTimeout})
        except ImportError as e:
            raise ValueError(f"the PostgreSQL driver needs psycopg ({e}): pip install 'pacs[postgresql]'") from None


postgresqlDriver = PostgreSQLDriver()
