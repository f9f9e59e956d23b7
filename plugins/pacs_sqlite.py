"""The built-in SQLite driver: the embedded default index database.

Selected by ``--db sqlite:PATH`` or, from dicom.ini, unless ``Postgres = 1``,
by ``SQLite = 1`` or by ``MySQL`` not being 1 either (an empty ``SQLServer``
selects the NULL driver).  The file is ``SQLServer`` (default
``./data/dbase/conquest.db3`` when the key is absent), relative to the
working folder.  Without ``SQLite = 1``, a Conquest ``SQLServer`` meant
for a driver not provided here is taken over with a warning: a folder
(Conquest's dbaseIII driver's DBF files) gets ``conquest.db3`` inside it,
an ODBC data source name (no folder, no file extension) the default file.
Every connection runs in WAL mode with ``synchronous=FULL`` (a database
Conquest made stays in its rollback journal until taken over): an object
acknowledged to a sender survives a power loss.  The index writer's own
connection may run ``synchronous=NORMAL`` instead (``deferSync``) when the
archive flushes the database's file system after each of its commits.
Text that is not UTF-8 (Conquest's, see ``pacscore.db.rawtext``) is read as
Latin-1 where the database may hold some.  ``schemaTransaction`` makes the
index tables in one transaction, in which a database pacs did not make
(Conquest's) is first copied to ``NAME.before-pacs`` (``keepOriginal``).
"""

import glob
import os
import re
import sqlite3
import time
from contextlib import closing, contextmanager

from sqlalchemy import URL, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from pacscore.db.casefold import caseFolded
from pacscore.db.drivers import namesNoDatabase
from pacscore.db.errors import isDamaged
from pacscore.db.filewatch import DatabaseFileWatch
from pacscore.db.pending import TABLE_NAME as PENDING_FILES
from pacscore.db.rawtext import ALL_UTF8, decodedText
from pacscore.interfaces import IDatabaseDriver


def _casefold(raw):
    """SQL ``pacs_casefold(CAST(text AS BLOB))``: the ``caseFolded`` of
    ``decodedText`` (sqlite3 would fail the whole query on text that is
    not UTF-8 given as it is)."""
    return None if raw is None else caseFolded(decodedText(raw))


def _copies(base):
    """The files named ``base``, ``base-2``, ``base-3`` ..., in that order."""
    names = [name for name in glob.glob(glob.escape(base) + "*")
             if re.fullmatch(r"(-[0-9]+)?", name[len(base):])]
    return sorted(names, key=lambda name: int(name[len(base) + 1:] or 1))


def _columns(db):
    """The column names of each table of the sqlite3 connection ``db``'s
    database, by lower-case table name."""
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {table.lower(): [row[0] for row in db.execute("SELECT name FROM pragma_table_info(?)", (table,))]
            for table in tables}


def _renamedSince(db, copy):
    """Whether a table of the sqlite3 connection ``db``'s database has
    columns renamed since the file ``copy`` was made, each to a name it
    begins: what the takeover of an earlier pacs that stopped half-way
    left."""
    try:
        with closing(sqlite3.connect(copy)) as original:
            before = _columns(original)
    except sqlite3.Error:
        return False
    now = _columns(db)
    return any(len(names) == len(now.get(table, ())) and names != now[table]
               and all(new.lower().startswith(old.lower()) for old, new in zip(names, now[table]))
               for table, names in before.items())


def _unusedName(base):
    """``base``, or ``base-2``, ``base-3`` ..., the first no file has."""
    name, number = base, 1
    while os.path.exists(name):
        number += 1
        name = f"{base}-{number}"
    return name


@implementer(IPlugin, IDatabaseDriver)
class SQLiteDriver:
    """SQLite through the standard library's sqlite3 module."""

    log = Logger()
    name = "sqlite"
    description = "SQLite file (embedded default): sqlite:PATH or sqlite:////abs/path"
    writerThreads = 1
    defaultPath = "./data/dbase/conquest.db3"
    pragmas = ("PRAGMA synchronous=FULL",
               "PRAGMA busy_timeout=10000", "PRAGMA foreign_keys=OFF",
               "PRAGMA case_sensitive_like=ON")  # C-FIND's wildcards match as on other databases

    def selectedBy(self, configuration):
        # The default: PostGres = 1 or MySQL = 1 wins over SQLite = 1, which
        # Conquest's dicom.ini (and the one in etc/) has; an empty SQLServer
        # selects the NULL driver.
        return not namesNoDatabase(configuration) and not any(
            configuration.ini.getint(key, 0) == 1 for key in ("PostGres", "MySQL"))

    def urlFromConfiguration(self, configuration):
        path = configuration.pathSetting("SQLServer", self.defaultPath)
        ini = configuration.ini
        value = ini.get("SQLServer", "").strip()
        if not value or ini.getint("SQLite", 0) == 1:
            return "sqlite:" + path
        where = f"{configuration.iniPath}:{ini.lineOf('SQLServer')}"
        if value.endswith(("/", "\\")) or os.path.isdir(path):
            path = os.path.join(path, os.path.basename(self.defaultPath))
            self.log.warn("{where}: SQLServer = {value} is a folder, where Conquest's dbaseIII driver keeps its "
                          "DBF files; that driver is not provided: the embedded SQLite index is used, in {path}",
                          where=where, value=value, path=path)
        elif not any(c in value for c in "/\\."):
            path = configuration.resolvePath(self.defaultPath)
            self.log.warn("{where}: SQLServer = {value} with no SQLite, PostGres or MySQL flag names an ODBC data "
                          "source; ODBC is not provided: the embedded SQLite index is used, in {path}",
                          where=where, value=value, path=path)
        return "sqlite:" + path

    def createEngine(self, description, configuration):
        path = self.pathOf(description, configuration)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._removeOrphanJournal(path)
        engine = create_engine(URL.create("sqlite", database=path),
                               connect_args={"check_same_thread": False})
        event.listen(engine, "connect", self._setPragmas)
        return engine

    def localFolder(self, description, configuration):
        """The folder of the database file."""
        return os.path.dirname(self.pathOf(description, configuration))

    def fileWatch(self, description, configuration):
        """The ``DatabaseFileWatch`` of the database file: SQLite goes on
        writing into a file deleted under it."""
        return DatabaseFileWatch(self.pathOf(description, configuration))

    def deferSync(self, connection):
        """Let the writer's ``connection`` commit without a flush of its own:
        the archive flushes ``localFolder``'s file system after each commit.
        (WAL checkpoints still sync, so the database stays consistent.)  The
        connection leaves the pool, so no other user inherits the setting."""
        connection.detach()
        connection.exec_driver_sql("PRAGMA synchronous=NORMAL")
        connection.commit()

    def damage(self, engine):
        """Why the database file of ``engine`` is damaged (what SQLite's
        ``quick_check``, or opening the file, reported), or None when it is
        sound.  Reads the whole file: for offline tools, not for start-up."""
        try:
            with engine.connect() as connection:
                problems = [row[0] for row in connection.exec_driver_sql("PRAGMA quick_check(5)")]
        except DBAPIError as e:
            if isDamaged(e):
                return str(e.orig)
            raise
        return None if problems == ["ok"] else "; ".join(problems)

    @contextmanager
    def schemaTransaction(self, engine, takeover):
        """The connection in which ``Index`` makes the index tables, in one
        transaction that holds the DDL too (Python's sqlite3 begins one only
        before DML): a takeover is done in full or not at all.  With
        ``takeover`` (a database pacs did not make: Conquest's) it is first
        copied (``keepOriginal``).  Then the engine's connections are made
        anew, set up for the database as it is now (``_setPragmas``)."""
        with engine.connect() as connection:
            connection.exec_driver_sql("BEGIN")
            if takeover:
                self.keepOriginal(connection)
            yield connection
            connection.commit()
        engine.dispose()

    def keepOriginal(self, connection):
        """Copy the database of ``connection``, which pacs did not make
        (Conquest's), to ``NAME.before-pacs`` (``-2``, ``-3`` ... if taken)
        with SQLite's backup API, in the rollback journal mode Conquest
        uses, before pacs first changes it; logs where it is and how to go
        back.  No copy is made of a database an earlier pacs began to take
        over (``_renamedSince`` the first copy): that copy is named.  A copy
        that cannot be made fails as a database error (a partial one is
        removed): the database is left as it was."""
        path = connection.engine.url.database
        sqlite = connection.connection.driver_connection
        copies = _copies(f"{path}.before-pacs")
        if copies and _renamedSince(sqlite, copies[0]):
            target = copies[0]
        else:
            target = _unusedName(f"{path}.before-pacs")
            self.log.info("Copying {path} ({size:.1f} MB), which pacs did not make, to {target} before taking it "
                          "over", path=path, size=os.path.getsize(path) / 1e6, target=target)
            try:
                with closing(sqlite3.connect(target)) as copy:
                    sqlite.backup(copy)
                    copy.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error as e:
                if os.path.exists(target):
                    os.unlink(target)
                raise OperationalError(f"backup to {target}", None, sqlite3.OperationalError(
                    f"no copy of it could be made in {target} before taking it over ({e}); it is left as it "
                    f"was")) from e
        self.log.warn("Taking over {path}, an index database pacs did not make: its tables and columns are changed "
                      "for pacs. The original is kept as {target}; to go back to Conquest, stop pacs, remove {path} "
                      "with its -wal and -shm files and rename {target} to {path}", path=path, target=target)

    def setAside(self, description, configuration):
        """Rename the database file, with its ``-wal`` and ``-shm``, to
        ``NAME.damaged-YYYYMMDD-HHMMSS`` (kept for whoever wants to recover
        from it); returns the new name of the file."""
        path = self.pathOf(description, configuration)
        target = _unusedName(f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, target + suffix)
        return target

    def pathOf(self, description, configuration):
        """The absolute database file of ``sqlite:PATH``, ``sqlite:///rel``
        or ``sqlite:////abs`` (SQLAlchemy's URL forms)."""
        scheme, _, path = description.partition(":")
        if scheme != self.name or not path:
            raise ValueError(f"not an SQLite database description: {description!r}")
        if path.startswith("///"):
            path = path[3:]
        return os.path.abspath(configuration.resolvePath(path))

    @staticmethod
    def _removeOrphanJournal(path):
        """A ``-wal``/``-shm`` pair left beside a deleted database (the
        operator removed the index to regenerate it) would make SQLite fail
        with "disk I/O error"; without its database it holds nothing."""
        if not os.path.exists(path):
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.unlink(path + suffix)

    def _setPragmas(self, dbapiConnection, connectionRecord):
        # C-FIND's case-insensitive matching of non-ASCII names (pacscore.db.query)
        dbapiConnection.create_function("pacs_casefold", 1, _casefold, deterministic=True)
        cursor = dbapiConnection.cursor()
        for pragma in self.pragmas:
            cursor.execute(pragma)
        if cursor.execute("PRAGMA user_version").fetchone()[0] != ALL_UTF8:
            dbapiConnection.text_factory = decodedText  # Conquest's text that is not UTF-8 reads as Latin-1
        tables = {name.lower() for name, in cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables or PENDING_FILES.lower() in tables:  # Conquest's stays as it is until taken over
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


sqliteDriver = SQLiteDriver()
