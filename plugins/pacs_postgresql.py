"""The PostgreSQL driver: the index in a PostgreSQL database, through psycopg 3.

Selected by ``--db postgresql://USER:PASSWORD@HOST:PORT/DATABASE`` or, from
dicom.ini, by ``PostGres = 1`` (Conquest's flag) with Conquest's keys
``SQLHost``, ``SQLServer``, ``Username`` and ``Password`` (see
pacscore.db.servers).  The database must exist, as with Conquest
(``createdb conquest``).

Within ``SQLTimeOut`` seconds a server cut off by the network is noticed
(TCP keepalives, and ``tcp_user_timeout`` for what it does not acknowledge);
a statement that merely runs long (a conversion of a large table at
start-up, a big ``dgate -r``) is not cut short: the index's own time limit
answers the C-STORE or C-FIND that waits on it.

pacs talks UTF-8 to the server (``client_encoding``), whatever the
database's encoding: a Conquest site's SQL_ASCII database passes its bytes
through, and is read as it is, the Latin-1 bytes Conquest wrote too (see
pacscore.db.sqlascii); one in LATIN1 (WIN1252 ...) holds the characters of its
encoding only, which start-up warns of (see pacscore.db.repertoire); one
in an encoding Python has no codec for (EUC_TW) is taken to
hold ASCII only.

Sorted answers come in code point order, as on SQLite and MariaDB: on a
database whose collation sorts otherwise (``en_US.UTF-8``, an ICU one),
through ``COLLATE "C"`` (see pacscore.db.sqlfunctions), at the cost of a
sort of all the rows of a page over a whole table, which start-up warns of.
"""

from sqlalchemy import event
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from pacscore.db.repertoire import setCountsBytes, setEncoding
from pacscore.db.sqlfunctions import setSortsByCodePoint
from pacscore.db.servers import KEEPALIVE_PROBES, DatabaseServerDriver, keepaliveInterval
from pacscore.interfaces import IDatabaseDriver


@implementer(IPlugin, IDatabaseDriver)
class PostgreSQLDriver(DatabaseServerDriver):
    """PostgreSQL through psycopg 3 (``pip install 'pacs[postgresql]'``)."""

    name = "postgresql"
    label = "PostgreSQL"
    description = "PostgreSQL server: postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    flag = "PostGres"
    dbapi = "psycopg"
    extra = "postgresql"
    createCommand = "createdb {database}"
    log = Logger()

    def engineOptions(self, url, timeout):
        connectArgs = {"connect_timeout": self.connectTimeout, "client_encoding": "UTF8"}
        if timeout is not None:
            probe = keepaliveInterval(timeout)
            connectArgs.update(keepalives=1, keepalives_idle=probe, keepalives_interval=probe,
                               keepalives_count=KEEPALIVE_PROBES,
                               tcp_user_timeout=timeout * 1000)
        return url, {"connect_args": connectArgs}

    def createEngine(self, description, configuration):
        engine = super().createEngine(description, configuration)
        event.listen(engine, "first_connect",
                     lambda dbapiConnection, record: self.firstConnected(engine, dbapiConnection))
        event.listen(engine, "connect", lambda dbapiConnection, record: self.readsAsItIs(dbapiConnection))
        return engine

    def readsAsItIs(self, dbapiConnection):
        """Have a new connection to a SQL_ASCII database read its text as
        it is (``readConquestBytes``)."""
        if dbapiConnection.info.parameter_status("server_encoding") == "SQL_ASCII":
            from pacscore.db.sqlascii import readConquestBytes  # psycopg, an extra: imported here
            readConquestBytes(dbapiConnection)

    def firstConnected(self, engine, dbapiConnection):
        """Record the encoding of the database, and warn when it cannot hold
        every character (SQL_ASCII: that it counts bytes, and keeps
        Conquest's); record whether it sorts text by code point, and
        warn when not."""
        self.checkCollation(engine, dbapiConnection)
        encoding = dbapiConnection.info.parameter_status("server_encoding")
        if encoding == "SQL_ASCII":
            setCountsBytes(engine.dialect)  # its VARCHAR(n) holds n bytes
            self.log.warn("The index database {database} is in the SQL_ASCII encoding, which keeps the bytes it "
                          "is sent: text Conquest wrote in an object's own bytes (UTF8ToDB = 0) rather than UTF-8 "
                          "is read as Latin-1, and keys with letters beyond ASCII do not find it (dgate -r "
                          "rewrites it in UTF-8; a database made with ENCODING 'UTF8' is spared that)",
                          database=engine.url.database)
            return
        if encoding == "UTF8":
            return
        from psycopg import NotSupportedError  # an extra: imported here
        from psycopg._encodings import pg2pyenc  # psycopg's own table of PostgreSQL's names
        try:
            codec, holding = pg2pyenc(encoding.encode()), "which cannot hold every character"
        except NotSupportedError:  # EUC_TW: the server converts it, Python could not check what it holds
            codec, holding = "ascii", "which Python has no codec for: it is taken to hold ASCII only"
        setEncoding(engine.dialect, codec)
        self.log.warn("The index database {database} is in the {encoding} encoding, {holding} (Greek, Cyrillic, "
                      "Asian names ...): text values it cannot hold are indexed with ? in the place of each such "
                      "character, objects whose UIDs or Patient ID hold one are refused (a database made with "
                      "ENCODING 'UTF8' holds them all)",
                      database=engine.url.database, encoding=encoding, holding=holding)

    def checkCollation(self, engine, dbapiConnection):
        """``setSortsByCodePoint`` when the database's collation sorts by
        code point: libc's C, POSIX and C.UTF-8, PostgreSQL 17's builtin
        provider (not an ICU one: its datcollate is not what sorts).  A
        collation that cannot be read (a cluster that revokes SELECT on
        pg_database from PUBLIC) is taken to sort otherwise, with a warning:
        COLLATE "C" gives code point order whatever it is."""
        from psycopg import Error  # an extra: imported here
        try:
            with dbapiConnection.cursor() as cursor:
                cursor.execute("SELECT datcollate, to_jsonb(d) ->> 'datlocprovider' FROM pg_database d "
                               "WHERE datname = current_database()")
                collation, provider = cursor.fetchone()
        except Error as e:
            dbapiConnection.rollback()
            self.log.warn("The collation of the index database {database} cannot be read ({error}): sorted "
                          "C-FIND, QIDO-RS and web answers are put in code point order with COLLATE \"C\", which "
                          "its indexes may not give: a page of a query over a whole table then sorts all its rows",
                          database=engine.url.database, error=str(e).strip())
            return
        dbapiConnection.rollback()  # after SQLAlchemy's own: no transaction left open
        if provider == "b" or provider in (None, "c") and collation.lower().replace("-", "") in _CODE_POINT_COLLATIONS:
            setSortsByCodePoint(engine.dialect)
            return
        self.log.warn("The index database {database} sorts text in the {collation} collation: sorted C-FIND, "
                      "QIDO-RS and web answers are put in code point order (as on SQLite and MySQL) with "
                      "COLLATE \"C\", which its indexes cannot give: a page of a query over a whole table sorts all "
                      "its rows (a database made with LC_COLLATE 'C.UTF-8' or 'C' is spared that)",
                      database=engine.url.database, collation=collation if provider != "i" else "ICU")


_CODE_POINT_COLLATIONS = frozenset({"c", "posix", "c.utf8"})
postgresqlDriver = PostgreSQLDriver()
