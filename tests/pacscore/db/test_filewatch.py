"""Tests for pacscore.db.filewatch: the index's SQLite file deleted while
pacs runs took every later store (Success) into the deleted file, with
nothing logged; a restart lost them from the index."""

import os

from twisted.internet import defer, reactor
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.db.filewatch import DatabaseFileLost
from pacscore.db.index import Index
from plugins.pacs_sqlite import sqliteDriver
from tests.pacscore.db.test_index import makeRecord
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout
from tests.plugins.test_sqlite_driver import FakeConfiguration


class DeletedDatabaseTests(unittest.TestCase):

    def setUp(self):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        configuration = FakeConfiguration(workdir)
        self.path = os.path.join(workdir, "index.db3")
        engine = sqliteDriver.createEngine("sqlite:index.db3", configuration)
        self.addCleanup(engine.dispose)
        self.index = Index(engine, conquestLayout(), TABLE_NAMES, reactor=reactor,
                           fileWatch=sqliteDriver.fileWatch("sqlite:index.db3", configuration))
        self.index.createTables()
        self.index.start()
        self.addCleanup(self.index.stop)

    @defer.inlineCallbacks
    def check(self, change):
        yield self.index.store(makeRecord("1.2.3.1.1"))
        change()
        with capturedLogs() as events:
            for n in (2, 3):
                yield self.assertFailure(self.index.store(makeRecord(f"1.2.3.1.{n}")), DatabaseFileLost)
        errors = [formatEvent(e) for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1, "said once")
        self.assertIn(f"the index database {self.path} was deleted or replaced while pacs runs: stores fail until "
                      f"pacs is restarted", errors[0])

    def test_deleted(self):
        def delete():
            for suffix in ("", "-wal", "-shm"):
                os.unlink(self.path + suffix)
        return self.check(delete)

    def test_replaced(self):
        def replace():
            with open(self.path + ".new", "wb"):
                pass
            os.replace(self.path + ".new", self.path)
        return self.check(replace)
