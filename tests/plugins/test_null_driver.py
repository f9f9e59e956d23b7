"""Tests for the NULL driver (plugins.pacs_null): chosen by an empty
SQLServer over every flag, and its index tables accept every write and
never keep a row, through start-up, ``dgate -i`` and a reopened file,
while the other tables of its file (the export queue's) keep theirs."""

import os

from sqlalchemy import func, select
from twisted.plugin import IPlugin, getPlugins
from twisted.trial import unittest

import plugins
from pacscore.db.drivers import findDriver
from pacscore.db.index import Index
from pacscore.export.queue import ExportQueue
from pacscore.interfaces import IDatabaseDriver
from plugins.pacs_mysql import mysqlDriver
from plugins.pacs_null import nullDriver
from plugins.pacs_postgresql import postgresqlDriver
from plugins.pacs_sqlite import sqliteDriver
from tests.pacscore.db.test_index import makeRecord
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout
from tests.plugins.test_sqlite_driver import FakeConfiguration


class SelectionTests(unittest.TestCase):

    def test_found(self):
        [driver] = [d for d in getPlugins(IDatabaseDriver, plugins) if d.name == "null"]
        self.assertTrue(IPlugin.providedBy(driver))
        self.assertTrue(IDatabaseDriver.providedBy(driver))
        self.assertFalse(driver.keepsIndex)

    def test_emptySQLServerWinsOverEveryFlag(self):
        for flags in ({}, {"SQLite": "1"}, {"MySQL": "1"}, {"PostGres": "1"}):
            configuration = FakeConfiguration("/srv/pacs", SQLServer=" ", **flags)
            driver, description = findDriver(None, configuration)
            self.assertEqual((driver.name, description), ("null", "null:/srv/pacs/data/dbase/null.db3"), flags)
            for other in (sqliteDriver, mysqlDriver, postgresqlDriver):
                self.assertFalse(other.selectedBy(configuration), (other.name, flags))

    def test_absentOrNamedSQLServerIsNotNull(self):
        self.assertFalse(nullDriver.selectedBy(FakeConfiguration("/srv/pacs")))
        self.assertFalse(nullDriver.selectedBy(FakeConfiguration("/srv/pacs", SQLServer="x.db3")))
        self.assertEqual(findDriver(None, FakeConfiguration("/srv/pacs"))[0].name, "sqlite")

    def test_pathOf(self):
        configuration = FakeConfiguration("/srv/pacs")
        self.assertEqual(nullDriver.pathOf("null:", configuration), "/srv/pacs/data/dbase/null.db3")
        self.assertEqual(nullDriver.pathOf("null:q/router.db3", configuration), "/srv/pacs/q/router.db3")
        self.assertEqual(findDriver("null:", configuration), (nullDriver, "null:"))


class IndexTests(unittest.TestCase):

    def setUp(self):
        self.configuration = FakeConfiguration(self.mktemp())
        self.index = self.openIndex()

    def openIndex(self):
        engine = nullDriver.createEngine("null:", self.configuration)
        self.addCleanup(engine.dispose)
        index = Index(engine, conquestLayout(), TABLE_NAMES, onTablesBuilt=nullDriver.indexTablesBuilt)
        index.createTables()
        return index

    def counts(self, index):
        with index.engine.connect() as connection:
            return [connection.execute(select(func.count()).select_from(table)).scalar() for table in index.tables]

    def test_writesAcceptedNothingKept(self):
        self.assertTrue(os.path.isfile(os.path.join(self.configuration.workdir, "data", "dbase", "null.db3")))
        self.index.storeMany([makeRecord("1.2.3.1.1"), makeRecord("1.2.3.1.2", patient="PAT2")])
        with self.index.engine.begin() as connection:
            self.assertIsNone(self.index.upsertImage(connection, makeRecord("1.2.3.1.1")))
            connection.execute(self.index.tables.worklist.insert().values(AccessionNumber="A1", PatientID="PAT1"))
        self.assertEqual(self.counts(self.index), [0] * 5)
        self.assertFalse(self.index.hasImages())

    def test_afterInitializeAndReopen(self):
        self.index.initializeTables()
        self.index.initializeTables(worklist=True)
        self.index.storeMany([makeRecord("1.2.3.1.1")])
        self.assertEqual(self.counts(self.index), [0] * 5)
        self.index.engine.dispose()
        reopened = self.openIndex()
        reopened.storeMany([makeRecord("1.2.3.1.3")])
        self.assertEqual(self.counts(reopened), [0] * 5)

    def test_exportQueueKeepsItsRows(self):
        queue = ExportQueue(self.index, objectPaths=lambda device, objectFile: f"/{device}/{objectFile}")
        queue.createTables()
        queue.addForward("NEXT", "IMAGE", ("PAT1", "1.2", "1.2.3", "1.2.3.4"), objectPath="/data/PAT1/x.dcm")
        queue.addForward("NEXT", "SERIES", ("PAT1", "1.2", "1.2.3", "1.2.3.4"), objectPath="/data/PAT1/x.dcm")
        actions = sorted(queue.due(queue.clock() + 3600, 10), key=lambda a: a.level)
        self.assertEqual([(a.level, a.objectPath) for a in actions],
                         [("IMAGE", "/data/PAT1/x.dcm"), ("SERIES", "")])
