"""Tests for the MySQL driver plugin: found as a plugin, chosen by Conquest's
dicom.ini keys, and its engine on the test run's real MariaDB server."""

import socket

from sqlalchemy import MetaData, text
from twisted.plugin import IPlugin, getPlugins
from twisted.trial import unittest

import plugins
from pacscore.db.drivers import findDriver
from pacscore.db.index import Index
from pacscore.interfaces import IDatabaseDriver
from plugins.pacs_mysql import mysqlDriver
from plugins.pacs_postgresql import postgresqlDriver
from tests.dbservers import mariadbServer
from tests.pacscore.db.test_index import TABLE_NAMES, conquestLayout
from tests.plugins.test_sqlite_driver import FakeConfiguration


class MySQLDriverTests(unittest.TestCase):

    def test_found(self):
        [driver] = [d for d in getPlugins(IDatabaseDriver, plugins) if d.name == "mysql"]
        self.assertTrue(IPlugin.providedBy(driver))
        self.assertTrue(IDatabaseDriver.providedBy(driver))
        self.assertEqual(driver.writerThreads, 1)

    def test_chosenByConquestsFlags(self):
        """MySQL = 1 wins over SQLite = 1 (Conquest's dicom.ini has it), PostGres = 1 over MySQL = 1."""
        def chosen(**ini):
            return findDriver(None, FakeConfiguration(".", **ini))[0].name
        self.assertEqual(chosen(MySQL="1"), "mysql")
        self.assertEqual(chosen(mysql=" 1 ", SQLite="1", Postgres="0"), "mysql")
        self.assertEqual(chosen(MySQL="1", PostGres="1"), "postgresql")
        self.assertEqual(chosen(MySQL="0", SQLite="1"), "sqlite")
        self.assertEqual(chosen(), "sqlite")

    def test_urlFromDicomIni(self):
        self.assertEqual(mysqlDriver.urlFromConfiguration(FakeConfiguration(".", MySQL="1")),
                         "mysql://localhost/conquest")
        self.assertEqual(mysqlDriver.urlFromConfiguration(FakeConfiguration(
            ".", SQLHost="db.example:3307", SQLServer="pacsdb", Username="conquest", Password="p@ss:w/rd")),
            "mysql://conquest:p%40ss%3Aw%2Frd@db.example:3307/pacsdb")
        self.assertIs(findDriver("mysql://u@h/d", FakeConfiguration("."))[0], mysqlDriver)

    def test_notAMySQLDescription(self):
        self.assertRaises(ValueError, mysqlDriver.createEngine, "postgresql://u@h/d", None)
        self.assertRaises(ValueError, postgresqlDriver.createEngine, "mysql://u@h/d", None)
        error = self.assertRaises(ValueError, mysqlDriver.createEngine, "mysql://u:secret@h:port/d", None)
        self.assertIn("not a MySQL database description", str(error))
        self.assertNotIn("secret", str(error))

    def test_engineFromDicomIniOnARealServer(self):
        """Conquest's keys (a password that needs quoting in a URL) reach the
        server; text is utf8mb4 compared byte for byte, transactions READ COMMITTED."""
        server = mariadbServer()
        configuration = FakeConfiguration(".", MySQL="1", SQLHost=f"127.0.0.1:{server.port}",
                                          SQLServer=server.createDatabase(self), Username=server.user,
                                          Password=server.password)
        engine = mysqlDriver.createEngine(mysqlDriver.urlFromConfiguration(configuration), configuration)
        self.addCleanup(engine.dispose)
        Index(engine, conquestLayout(), TABLE_NAMES).createTables()
        with engine.begin() as connection:
            self.assertEqual(connection.execute(text("SELECT @@tx_isolation")).scalar(), "READ-COMMITTED")
            self.assertEqual(connection.execute(text("SELECT @@character_set_client")).scalar(), "utf8mb4")
            connection.execute(text("INSERT INTO DICOMPatients (PatientID, PatientName) "
                                    "VALUES ('p1', 'Müller^Jürgen'), ('P1', 'Smith')"))
        with engine.connect() as connection:
            self.assertEqual(connection.execute(text(
                "SELECT PatientName FROM DICOMPatients WHERE PatientID = 'P1'")).all(), [("Smith",)])
            self.assertEqual(connection.execute(text(
                "SELECT PatientName FROM DICOMPatients WHERE lower(PatientName) LIKE 'müller%'")).all(),
                [("Müller^Jürgen",)])
        metadata = MetaData()
        metadata.reflect(engine)
        self.assertEqual({table.dialect_options["mysql"]["collate"] for table in metadata.tables.values()},
                         {"utf8mb4_bin"})

    def test_keepalivesNoticeAServerCutOffWithinTheTimeout(self):
        """PyMySQL leaves the system's keepalive timing (2 hours idle): a
        server whose host died after a statement was sent held the writer
        that long.  Now the probes start after a quarter of SQLTimeOut."""
        engine = mariadbServer().newEngine(mysqlDriver, self, FakeConfiguration(".", SQLTimeOut="8"))
        with engine.connect() as connection:
            sock = connection.connection.dbapi_connection._sock
            self.assertEqual([sock.getsockopt(socket.IPPROTO_TCP, option)
                              for option in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)],
                             [2, 2, 3])
