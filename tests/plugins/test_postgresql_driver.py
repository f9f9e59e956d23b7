"""Tests for the PostgreSQL driver plugin: found as a plugin, chosen by
Conquest's dicom.ini keys, and its engine on the test run's real server."""

from sqlalchemy import text
from twisted.logger import capturedLogs, formatEvent
from twisted.plugin import IPlugin, getPlugins
from twisted.trial import unittest

import plugins
from pacscore.config.errors import ConfigError
from pacscore.db.drivers import findDriver, redacted
from pacscore.interfaces import IDatabaseDriver
from plugins.pacs_postgresql import postgresqlDriver
from tests.plugins.test_sqlite_driver import FakeConfiguration
from tests.dbservers import postgresServer


class PostgreSQLDriverTests(unittest.TestCase):

    def test_found(self):
        [driver] = [d for d in getPlugins(IDatabaseDriver, plugins) if d.name == "postgresql"]
        self.assertTrue(IPlugin.providedBy(driver))
        self.assertTrue(IDatabaseDriver.providedBy(driver))
        self.assertEqual(driver.writerThreads, 1)

    def test_selectedByConquestsFlag(self):
        self.assertTrue(postgresqlDriver.selectedBy(FakeConfiguration(".", PostGres="1")))
        self.assertTrue(postgresqlDriver.selectedBy(FakeConfiguration(".", postgres=" 1 ")))
        self.assertFalse(postgresqlDriver.selectedBy(FakeConfiguration(".", PostGres="0")))
        self.assertFalse(postgresqlDriver.selectedBy(FakeConfiguration(".")))

    def test_flagReadAsConquestReadsIt(self):
        """A comment after the 1 (Conquest's atoi) leaves PostgreSQL chosen,
        with the warning any number with a comment gets; a flag that is no
        number stops the start rather than pick SQLite."""
        with capturedLogs() as events:
            self.assertTrue(postgresqlDriver.selectedBy(FakeConfiguration(".", PostGres="1 # use PostgreSQL")))
        self.assertIn("PostGres = '1 # use PostgreSQL' read as 1, as Conquest reads it",
                      [formatEvent(event) for event in events][-1])
        self.assertTrue(postgresqlDriver.selectedBy(FakeConfiguration(".", PostGres="1 ; main index")))
        self.assertFalse(postgresqlDriver.selectedBy(FakeConfiguration(".", PostGres="0 ; off")))
        self.assertRaises(ConfigError, postgresqlDriver.selectedBy, FakeConfiguration(".", PostGres="yes"))

    def test_chosenFromDicomIni(self):
        configuration = FakeConfiguration(".", PostGres="1", SQLHost="db.example:5433", SQLServer="pacsdb",
                                          Username="conquest", Password="conquest")
        driver, description = findDriver(None, configuration)
        self.assertIs(driver, postgresqlDriver)
        self.assertEqual(description, "postgresql://conquest:conquest@db.example:5433/pacsdb")
        self.assertIs(findDriver("postgresql://u@h/d", FakeConfiguration("."))[0], postgresqlDriver)

    def test_urlDefaultsAndQuoting(self):
        self.assertEqual(postgresqlDriver.urlFromConfiguration(FakeConfiguration(".", PostGres="1")),
                         "postgresql://localhost/conquest")
        self.assertEqual(postgresqlDriver.urlFromConfiguration(
            FakeConfiguration(".", SQLHost="", SQLServer="", Username="pacs", Password="p@ss:w/rd")),
            "postgresql://pacs:p%40ss%3Aw%2Frd@localhost/conquest")

    def test_redacted(self):
        self.assertEqual(redacted("postgresql://pacs:p%40ss@localhost/conquest"),
                         "postgresql://pacs:***@localhost/conquest")
        self.assertEqual(redacted("postgresql://pacs@localhost/conquest"), "postgresql://pacs@localhost/conquest")
        self.assertEqual(redacted("sqlite:./data/dbase/conquest.db3"), "sqlite:./data/dbase/conquest.db3")

    def test_notAPostgreSQLDescription(self):
        self.assertRaises(ValueError, postgresqlDriver.createEngine, "mysql://u@h/d", None)
        error = self.assertRaises(ValueError, postgresqlDriver.createEngine, "postgresql://u:secret@h:port/d", None)
        self.assertNotIn("secret", str(error))

    def test_engineOnARealServer(self):
        engine = postgresServer().newEngine(postgresqlDriver, self)
        with engine.connect() as connection:
            self.assertEqual(connection.execute(text("SHOW synchronous_commit")).scalar(), "on")
            self.assertEqual(engine.dialect.driver, "psycopg")
