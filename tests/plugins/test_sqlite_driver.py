"""Tests for the built-in SQLite driver plugin and driver selection."""

import os
import shutil
import sqlite3
from contextlib import closing

from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from twisted.logger import capturedLogs, formatEvent
from twisted.plugin import IPlugin, getPlugins
from twisted.trial import unittest

import plugins
from pacscore.config.errors import ConfigError
from pacscore.config.ini import DicomIni
from pacscore.config.loader import Configuration
from pacscore.db import index as indexModule
from pacscore.db.drivers import databaseFiles, findDriver
from pacscore.db.index import Index
from pacscore.db.rawtext import decodedText
from pacscore.interfaces import IDatabaseDriver
from plugins.pacs_sqlite import SQLiteDriver, sqliteDriver
from tests.pacscore.db.test_index import LATIN1_NAME, makeConquestDatabase, makeRecord
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout


class FakeConfiguration(Configuration):
    """A Configuration of just a dicom.ini of the keys given, for ``workdir``."""

    def __init__(self, workdir, **ini):
        text = "".join(f"{key} = {value}\n" for key, value in ini.items())
        super().__init__(ini=DicomIni.fromString(text), acrNemaMap=None, sopList=None, layout=None,
                         configDir=".", workdir=os.path.abspath(workdir), iniPath="dicom.ini")


class PluginTests(unittest.TestCase):

    def test_found(self):
        drivers = list(getPlugins(IDatabaseDriver, plugins))
        self.assertIn("sqlite", [d.name for d in drivers])
        [driver] = [d for d in drivers if d.name == "sqlite"]
        self.assertTrue(IPlugin.providedBy(driver))
        self.assertTrue(IDatabaseDriver.providedBy(driver))
        self.assertEqual(driver.writerThreads, 1)

    def test_selectedBy(self):
        self.assertTrue(sqliteDriver.selectedBy(FakeConfiguration(".")))
        self.assertTrue(sqliteDriver.selectedBy(FakeConfiguration(".", SQLite="1")))
        self.assertTrue(sqliteDriver.selectedBy(FakeConfiguration(".", Postgres="0", MySQL="0")))
        self.assertFalse(sqliteDriver.selectedBy(FakeConfiguration(".", SQLite="1", MySQL="1")))
        self.assertFalse(sqliteDriver.selectedBy(FakeConfiguration(".", Postgres="1")))
        self.assertFalse(sqliteDriver.selectedBy(FakeConfiguration(".", Postgres="1", SQLite="1")))
        self.assertFalse(sqliteDriver.selectedBy(FakeConfiguration(".", mysql="1", SQLite="0")))
        self.assertFalse(sqliteDriver.selectedBy(FakeConfiguration(".", Postgres="1 # use PostgreSQL",
                                                                   SQLServer="conquest")))
        self.assertFalse(sqliteDriver.selectedBy(FakeConfiguration(".", MySQL="1 ; main index")))

    def test_urlFromConfiguration(self):
        configuration = FakeConfiguration("/srv/pacs", SQLServer="db/x.db3")
        self.assertEqual(sqliteDriver.urlFromConfiguration(configuration),
                         "sqlite:/srv/pacs/db/x.db3")
        self.assertEqual(sqliteDriver.urlFromConfiguration(FakeConfiguration("/srv/pacs")),
                         "sqlite:/srv/pacs/data/dbase/conquest.db3")
        self.assertEqual(sqliteDriver.urlFromConfiguration(
            FakeConfiguration("/srv/pacs", SQLServer="")),
            "sqlite:/srv/pacs/data/dbase/conquest.db3")

    def test_conquestDriversNotProvided(self):
        """Without SQLite = 1, SQLServer may be a folder of DBF files
        (Conquest's dbaseIII driver) or an ODBC data source name: the SQLite
        index goes in that folder, or in the default file, with a warning."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(workdir, "dbf"))
        dbaseIII = ("is a folder, where Conquest's dbaseIII driver keeps its DBF files; that driver is not "
                    "provided")
        odbc = "with no SQLite, PostGres or MySQL flag names an ODBC data source; ODBC is not provided"
        for server, expected, warning in (("./data/dbase/", "data/dbase/conquest.db3", dbaseIII),
                                          ("dbf", "dbf/conquest.db3", dbaseIII),
                                          ("sql_server_placeholder", "data/dbase/conquest.db3", odbc),
                                          ("index.db3", "index.db3", None)):
            configuration = FakeConfiguration(workdir, PostGres="0", MySQL="0", SQLite="0", SQLServer=server)
            path = os.path.join(workdir, expected)
            with capturedLogs() as events:
                self.assertEqual(findDriver(None, configuration), (sqliteDriver, "sqlite:" + path))
            self.assertEqual([formatEvent(event) for event in events],
                             [f"dicom.ini:4: SQLServer = {server} {warning}: the embedded SQLite index is used, "
                              f"in {path}"] if warning else [])
        configuration = FakeConfiguration(workdir, SQLite="1", SQLServer="conquest")
        self.assertEqual(sqliteDriver.urlFromConfiguration(configuration),
                         "sqlite:" + os.path.join(workdir, "conquest"))
        self.assertEqual(findDriver("sqlite:other.db3", FakeConfiguration(workdir, SQLServer="./data/dbase/")),
                         (sqliteDriver, "sqlite:other.db3"))

    def test_windowsPathStopsStartUp(self):
        """SQLServer = C:\\dicomserver\\... (a Conquest file copied from
        Windows) is an error naming the line, not a file named after the
        whole path in the working folder."""
        configuration = FakeConfiguration("/srv/pacs", SQLite="1",
                                          SQLServer="C:\\dicomserver\\data\\dbase\\conquest.db3")
        error = self.assertRaises(ConfigError, sqliteDriver.urlFromConfiguration, configuration)
        self.assertEqual(str(error), "dicom.ini:2: SQLServer = C:\\dicomserver\\data\\dbase\\conquest.db3 is a "
                                     "Windows path: give the folder or file on this machine")

    def test_pathOf(self):
        configuration = FakeConfiguration("/srv/pacs")
        self.assertEqual(sqliteDriver.pathOf("sqlite:a/b.db3", configuration),
                         "/srv/pacs/a/b.db3")
        self.assertEqual(sqliteDriver.pathOf("sqlite:/abs/b.db3", configuration), "/abs/b.db3")
        self.assertEqual(sqliteDriver.pathOf("sqlite:////abs/b.db3", configuration), "/abs/b.db3")
        self.assertEqual(sqliteDriver.pathOf("sqlite:///rel/b.db3", configuration),
                         "/srv/pacs/rel/b.db3")
        self.assertRaises(ValueError, sqliteDriver.pathOf, "postgresql://x/y", configuration)


class EngineTests(unittest.TestCase):

    def setUp(self):
        self.workdir = self.mktemp()
        os.makedirs(self.workdir)
        self.configuration = FakeConfiguration(self.workdir)

    def createEngine(self, description):
        engine = SQLiteDriver().createEngine(description, self.configuration)
        self.addCleanup(engine.dispose)
        return engine

    def test_createsFolderAndFile(self):
        engine = self.createEngine("sqlite:./data/dbase/conquest.db3")
        with engine.connect() as connection:
            connection.execute(text("CREATE TABLE t (x)"))
            connection.commit()
        self.assertTrue(os.path.isfile(
            os.path.join(self.workdir, "data", "dbase", "conquest.db3")))

    def test_pragmas(self):
        """Every connection: WAL, synchronous=FULL (2), busy timeout, no FKs."""
        engine = self.createEngine("sqlite:index.db3")
        for _ in range(2):
            with engine.connect() as connection:
                pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                self.assertEqual(pragma("journal_mode"), "wal")
                self.assertEqual(pragma("synchronous"), 2)
                self.assertEqual(pragma("busy_timeout"), 10000)
                self.assertEqual(pragma("foreign_keys"), 0)
            engine.dispose()

    def test_deferSyncOnlyForItsConnection(self):
        """The writer's connection commits with synchronous=NORMAL (1) and
        never goes back to the pool: the next connection is FULL again."""
        engine = self.createEngine("sqlite:index.db3")
        self.assertEqual(sqliteDriver.localFolder("sqlite:index.db3", FakeConfiguration(self.workdir)),
                         os.path.abspath(self.workdir))
        writer = engine.connect()
        sqliteDriver.deferSync(writer)
        with writer.begin():
            self.assertEqual(writer.exec_driver_sql("PRAGMA synchronous").scalar(), 1)
            writer.exec_driver_sql("CREATE TABLE t (x)")
        writer.close()
        with engine.connect() as connection:
            self.assertEqual(connection.exec_driver_sql("PRAGMA synchronous").scalar(), 2)
            self.assertEqual(connection.exec_driver_sql("SELECT count(*) FROM t").scalar(), 0)
        self.assertEqual(engine.pool.checkedin(), 1, "only the ordinary connection is pooled")
        engine.dispose()

    def test_absoluteURLForm(self):
        path = os.path.join(os.path.abspath(self.workdir), "other", "x.db3")
        engine = self.createEngine("sqlite:///" + path)
        with engine.connect() as connection:
            connection.execute(text("CREATE TABLE t (x)"))
            connection.commit()
        self.assertTrue(os.path.isfile(path))


class FindDriverTests(unittest.TestCase):

    def test_fromConfiguration(self):
        configuration = FakeConfiguration("/srv/pacs", SQLite="1", SQLServer="my.db3")
        driver, description = findDriver(None, configuration)
        self.assertEqual(driver.name, "sqlite")
        self.assertEqual(description, "sqlite:/srv/pacs/my.db3")

    def test_byScheme(self):
        driver, description = findDriver("sqlite:x.db3", FakeConfiguration("."))
        self.assertEqual((driver.name, description), ("sqlite", "sqlite:x.db3"))

    def test_databaseFiles(self):
        folder = os.path.realpath(self.mktemp())
        self.assertEqual(databaseFiles(sqliteDriver, "sqlite:" + os.path.join(folder, "x.db3"), FakeConfiguration(".")),
                         {os.path.join(folder, "x.db3" + suffix) for suffix in ("", "-wal", "-shm", "-journal")})
        self.assertEqual(databaseFiles(object(), "other:x", FakeConfiguration(".")), frozenset())

    def test_unknownScheme(self):
        error = self.assertRaises(ValueError, findDriver, "oracle://db/x", FakeConfiguration("."))
        self.assertIn("'oracle'", str(error))
        self.assertIn("sqlite", str(error))


class OrphanJournalTests(unittest.TestCase):
    """Deleting the index file to regenerate it leaves its WAL behind."""

    def test_orphanJournalRemoved(self):
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "conquest.db3")
        keep = sqlite3.connect(path)
        keep.execute("PRAGMA journal_mode=WAL")
        keep.execute("CREATE TABLE t (x)")
        keep.execute("INSERT INTO t VALUES (1)")
        keep.commit()
        for suffix in ("", "-wal", "-shm"):
            self.assertTrue(os.path.exists(path + suffix) or suffix == "", suffix)
        os.unlink(path)
        engine = sqliteDriver.createEngine("sqlite:" + path, FakeConfiguration(folder))
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE u (y)")
        keep.close()
        engine.dispose()


class DamageTests(unittest.TestCase):
    """``damage`` tells a sound database from a damaged one, ``setAside``
    moves the damaged files out of the way, keeping them."""

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.path = os.path.join(self.folder, "conquest.db3")
        self.description = "sqlite:" + self.path
        engine = self.engine()
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x)")
            connection.exec_driver_sql("INSERT INTO t SELECT randomblob(500) FROM "
                                       "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 200) "
                                       "SELECT i FROM n)")
        engine.dispose()
        with sqlite3.connect(self.path) as connection:  # everything into the file, no WAL left
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def engine(self):
        engine = sqliteDriver.createEngine(self.description, FakeConfiguration(self.folder))
        self.addCleanup(engine.dispose)
        return engine

    def overwrite(self, offset, data):
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def test_sound(self):
        self.assertIsNone(sqliteDriver.damage(self.engine()))

    def test_notADatabase(self):
        self.overwrite(0, b"this is not SQLite at all")
        self.assertEqual(sqliteDriver.damage(self.engine()), "file is not a database")

    def test_truncated(self):
        os.truncate(self.path, 1000)
        self.assertEqual(sqliteDriver.damage(self.engine()), "database disk image is malformed")

    def test_damagedPages(self):
        self.overwrite(8192, bytes(range(256)) * 16)
        problem = sqliteDriver.damage(self.engine())
        self.assertIsNotNone(problem)
        self.assertNotEqual(problem, "ok")

    def test_setAsideKeepsEveryFile(self):
        with open(self.path, "rb") as f:
            original = f.read()
        for suffix in ("-wal", "-shm"):
            with open(self.path + suffix, "wb") as f:
                f.write(suffix.encode())
        first = sqliteDriver.setAside(self.description, FakeConfiguration(self.folder))
        self.assertRegex(first, r"conquest\.db3\.damaged-\d{8}-\d{6}$")
        self.assertFalse(any(os.path.exists(self.path + suffix) for suffix in ("", "-wal", "-shm")))
        with open(first, "rb") as f:
            self.assertEqual(f.read(), original)
        with open(first + "-wal", "rb") as f:
            self.assertEqual(f.read(), b"-wal")
        with open(self.path, "wb") as f:
            f.write(b"again")
        second = sqliteDriver.setAside(self.description, FakeConfiguration(self.folder))
        self.assertNotEqual(second, first)  # a second one in the same second gets its own name
        self.assertTrue(os.path.exists(first) and os.path.exists(second))


class ConquestDatabaseTests(unittest.TestCase):
    """A database Conquest filled: its Latin-1 text is read, and it is
    copied before pacs first changes it."""

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.path = os.path.join(self.folder, "conquest.db3")
        self.engine = sqliteDriver.createEngine("sqlite:" + self.path, FakeConfiguration(self.folder))
        self.addCleanup(self.engine.dispose)

    def index(self):
        return Index(self.engine, conquestLayout(), TABLE_NAMES, schemaTransaction=sqliteDriver.schemaTransaction)

    def textFactory(self):
        with self.engine.connect() as connection:
            return connection.connection.driver_connection.text_factory

    def test_earlierTakeoverRewritten(self):
        """Latin-1 names left in a database an earlier pacs took over (not
        checked: ``user_version`` 0) are read, then rewritten at the next
        start, once: SQL finds them, their patient takes new images, and
        the text is read as SQLite hands it on."""
        index = self.index()
        index.createTables()
        self.assertIs(self.textFactory(), str)
        index.storeMany([makeRecord("1.2.3.1.1", patient="PAT2", PATIENT_NAME="MÜLLER^ANNA")])
        with self.engine.begin() as connection:
            for table in ("DICOMPatients", "DICOMStudies"):
                connection.exec_driver_sql(f"UPDATE {table} SET PatientName = CAST(? AS TEXT)", (LATIN1_NAME,))
            connection.exec_driver_sql("PRAGMA user_version = 0")
        self.engine.dispose()
        patient = index.tables.patient
        with self.engine.connect() as connection:
            self.assertEqual(connection.execute(select(patient.c.PatientID, patient.c.PatientName)).all(),
                             [("PAT2", "MÜLLER^ANNA")])
        with capturedLogs() as events:
            index.createTables()
        [line] = [formatEvent(event) for event in events if "Rewrote in UTF-8" in formatEvent(event)]
        self.assertIn("Rewrote in UTF-8 2 text cells Conquest had stored in the bytes they came in (2 read as "
                      "Latin-1; file names kept as they are on disk)", line)
        self.assertEqual(self.copies(), [])
        self.assertIs(self.textFactory(), str)
        index.storeMany([makeRecord("1.2.3.1.2", patient="PAT2", PATIENT_NAME="MÜLLER^ANNA")])
        with self.engine.connect() as connection:
            self.assertEqual(connection.execute(select(patient.c.PatientID).where(
                patient.c.PatientName == "MÜLLER^ANNA")).scalars().all(), ["PAT2"])
            self.assertEqual(connection.execute(select(index.tables.image.c.ImagePat)).scalars().all(),
                             ["PAT2", "PAT2"])
        with capturedLogs() as events:
            index.createTables()
        self.assertEqual([event for event in events if "UTF-8" in formatEvent(event)], [])

    def test_originalKept(self):
        """The first start copies Conquest's database as it was, in its
        rollback journal mode, and says how to go back."""
        makeConquestDatabase(self.path)
        with open(self.path, "rb") as f:
            original = f.read()
        with capturedLogs() as events:
            self.index().createTables()
        copy = self.path + ".before-pacs"
        with closing(sqlite3.connect(copy)) as db:
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone(), ("delete",))
            self.assertEqual([row[1] for row in db.execute("PRAGMA table_info(DICOMImages)")][:2],
                             ["SOPInstanc", "SOPClassUI"])
            self.assertEqual(db.execute("SELECT CAST(PatientNam AS BLOB) FROM DICOMPatients").fetchone(),
                             (LATIN1_NAME,))
            self.assertEqual(db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'PendingFiles'").fetchall(),
                             [])
        with open(copy, "rb") as f:
            self.assertEqual(f.read()[100:], original[100:])  # the header's change counter may differ
        self.assertTakenOver(events, copy)
        self.index().createTables()
        self.assertEqual(self.copies(), ["conquest.db3.before-pacs"])

    def test_earlierPacsUpgraded(self):
        """An index of a pacs release made before the PendingFiles table
        (2026-11-22's) is upgraded as pacs's own: no copy, no word of
        Conquest, one line saying what it is; then in WAL mode."""
        index = self.index()
        index.createTables()
        index.storeMany([makeRecord("1.2.3.1.1", patient="PAT2")])
        with self.engine.begin() as connection:
            for table in ("PendingFiles", "PacsRegen"):
                connection.exec_driver_sql(f"DROP TABLE {table}")
            connection.exec_driver_sql("PRAGMA user_version = 0")
        self.engine.dispose()
        with capturedLogs() as events:
            self.index().createTables()
        lines = [formatEvent(event) for event in events]
        self.assertEqual(self.copies(), [])
        self.assertEqual([line for line in lines if "did not make" in line or "back to Conquest" in line], [])
        self.assertIn(f"Upgrading {self.path}, the index database of an earlier pacs release", lines)
        with self.engine.connect() as connection:
            self.assertEqual(connection.exec_driver_sql("PRAGMA journal_mode").scalar(), "wal")
            self.assertEqual(connection.exec_driver_sql("SELECT SOPInstanceUID FROM DICOMImages").scalar(),
                             "1.2.3.1.1")

    def keepOriginal(self):
        with self.engine.connect() as connection:
            sqliteDriver.keepOriginal(connection)

    def copies(self):
        return sorted(name for name in os.listdir(self.folder) if ".before-pacs" in name)

    def assertTakenOver(self, events, copy):
        self.assertIn(f"Taking over {self.path}, an index database pacs did not make: its tables and columns are "
                      f"changed for pacs. The original is kept as {copy}; to go back to Conquest, stop pacs, remove "
                      f"{self.path} with its -wal and -shm files and rename {copy} to {self.path}",
                      [formatEvent(event) for event in events])

    def test_takeoverAllOrNothing(self):
        """A takeover, at start-up or by dgate -i, that fails half-way (here
        in the rewrite of Conquest's text) leaves the database as Conquest
        had it, in its rollback journal; the next start takes it over."""
        makeConquestDatabase(self.path)
        with open(self.path, "rb") as f:
            original = f.read()

        def fail(connection, tables, log, **kw):
            raise OperationalError("UPDATE", None, sqlite3.OperationalError("disk I/O error"))

        failing = self.patch(indexModule, "adoptRawText", fail)
        for build in (Index.createTables, Index.initializeTables):
            self.assertRaises(OperationalError, build, self.index())
            with open(self.path, "rb") as f:
                self.assertEqual(f.read(), original)
        failing.restore()
        with capturedLogs() as events:
            self.index().createTables()
        self.assertTakenOver(events, self.path + ".before-pacs-3")
        for copy in self.copies():
            with open(os.path.join(self.folder, copy), "rb") as f:
                self.assertEqual(f.read()[100:], original[100:])
        with self.engine.connect() as connection:
            self.assertEqual(connection.exec_driver_sql("PRAGMA journal_mode").scalar(), "wal")
            self.assertEqual(connection.exec_driver_sql("SELECT SOPInstanceUID FROM DICOMImages").scalar(),
                             "1.2.3.1.1")

    def test_keyClashLeftAsItWas(self):
        """A Patient ID Conquest holds in Latin-1 and in UTF-8 (two patients
        for it) would be one key once rewritten: the Latin-1 one stays as it
        was, in its study too, and is named; the rest is rewritten, pacs
        starts and makes one copy."""
        makeConquestDatabase(self.path)
        with closing(sqlite3.connect(self.path)) as db:
            for patient, study in (("JÖRG1".encode("latin-1"), "9.1"), ("JÖRG1".encode(), "9.2")):
                db.execute("INSERT INTO DICOMPatients (PatientID, PatientNam) VALUES (CAST(? AS TEXT), CAST(? AS TEXT))",
                           (patient, LATIN1_NAME))
                db.execute("INSERT INTO DICOMStudies (StudyInsta, PatientID) VALUES (?, CAST(? AS TEXT))",
                           (study, patient))
            db.commit()
        with capturedLogs() as events:
            self.index().createTables()
        self.index().createTables()
        self.assertEqual(self.copies(), ["conquest.db3.before-pacs"])
        self.assertIn("DICOMPatients.PatientID: 1 of its values, stored by Conquest in the bytes they came in, stay "
                      "so, there and wherever they appear: another row holds each in UTF-8, the same key once "
                      "rewritten: JÖRG1. SQL does not match them (they read as Latin-1); dgate -r indexes their "
                      "objects again, in UTF-8, under one key", [formatEvent(event) for event in events])
        with self.engine.connect() as connection:
            sql = connection.exec_driver_sql
            self.assertEqual(sql("SELECT CAST(PatientID AS BLOB), PatientName FROM DICOMPatients ORDER BY 1").all(),
                             [(b"J\xc3\x96RG1", "MÜLLER^ANNA"), (b"J\xd6RG1", "MÜLLER^ANNA"), (b"PAT2", "MÜLLER^ANNA")])
            self.assertEqual(sql("SELECT StudyInstanceUID, CAST(PatientID AS BLOB) FROM DICOMStudies WHERE "
                                 "StudyInstanceUID LIKE '9.%' ORDER BY 1").all(),
                             [("9.1", b"J\xd6RG1"), ("9.2", b"J\xc3\x96RG1")])
            self.assertEqual(sql("SELECT PatientID FROM DICOMPatients ORDER BY 1").scalars().all(),
                             ["JÖRG1", "JÖRG1", "PAT2"])

    def test_leftInLatin1UntilRegenerated(self):
        """Values left as Conquest stored them are read as Latin-1, named
        again at each start, and checked again by dgate -i: then text is read
        as SQLite hands it on."""
        makeConquestDatabase(self.path)
        with closing(sqlite3.connect(self.path)) as db:
            for patient in ("JÖRG1".encode("latin-1"), "JÖRG1".encode()):
                db.execute("INSERT INTO DICOMPatients (PatientID) VALUES (CAST(? AS TEXT))", (patient,))
            db.commit()
        self.index().createTables()
        self.assertIs(self.textFactory(), decodedText)
        with self.engine.connect() as connection:
            self.assertEqual(connection.exec_driver_sql("SELECT PatientID FROM DICOMPatients ORDER BY 1")
                             .scalars().all(), ["JÖRG1", "JÖRG1", "PAT2"])
        with capturedLogs() as events:
            self.index().createTables()
        self.assertIn("Some text in the index is still as Conquest stored it, not in UTF-8 (named when pacs took it "
                      "over); dgate -r indexes it again, in UTF-8", [formatEvent(event) for event in events])
        self.index().initializeTables()
        self.assertIs(self.textFactory(), str)

    def test_halfTakenOverByEarlierVersion(self):
        """A database an earlier pacs copied and then left half changed (its
        columns renamed, in WAL mode) is not copied again: the warning names
        the copy of Conquest's."""
        makeConquestDatabase(self.path)
        shutil.copy(self.path, self.path + ".before-pacs")
        with closing(sqlite3.connect(self.path)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("ALTER TABLE DICOMImages RENAME COLUMN SOPInstanc TO SOPInstanceUID")
        with capturedLogs() as events:
            self.index().createTables()
        self.assertEqual(self.copies(), ["conquest.db3.before-pacs"])
        self.assertTakenOver(events, self.path + ".before-pacs")

    def test_copyNeverReplaced(self):
        makeConquestDatabase(self.path)
        self.keepOriginal()
        with open(self.path + ".before-pacs", "ab") as f:
            f.write(b"earlier")
        self.keepOriginal()
        with open(self.path + ".before-pacs", "rb") as f:
            self.assertTrue(f.read().endswith(b"earlier"))
        self.assertTrue(os.path.exists(self.path + ".before-pacs-2"))

    def test_noCopyNoTakeover(self):
        """A copy that cannot be made stops the takeover: the database
        stays as it was, and no partial copy is left."""
        makeConquestDatabase(self.path)
        os.makedirs(self.path + ".before-pacs-journal")  # where SQLite would journal the copy
        error = self.assertRaises(OperationalError, self.index().createTables)
        self.assertEqual(str(error.orig), f"no copy of it could be made in {self.path}.before-pacs before taking "
                                          f"it over (unable to open database file); it is left as it was")
        self.assertFalse(os.path.exists(self.path + ".before-pacs"))
        with self.engine.connect() as connection:
            self.assertEqual(connection.exec_driver_sql("SELECT count(*) FROM DICOMImages WHERE SOPInstanc != ''")
                             .scalar(), 1)
