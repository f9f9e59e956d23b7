"""Tests for pacscore.db.peerqueries through ``Index.queryForPeer`` on a
real SQLite index: a long query is not failed by SQLTimeOut, an abandoned
one stops and frees its reader thread."""

import threading
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from pacscore.db.index import Index
from pacscore.db.peerqueries import checkAbandoned
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout, sqliteEngine


def counting(rows):
    """A query of SQLite counting to ``rows`` (some 0.2 s a million)."""
    def query(connection):
        return connection.exec_driver_sql(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) FROM c",
            (rows,)).scalar()
    return query


def selectOne(connection):
    return connection.exec_driver_sql("SELECT 1").scalar()


class PeerQueryTests(unittest.TestCase):

    def makeIndex(self, timeout, readerThreads=1):
        index = Index(sqliteEngine(self), conquestLayout(), TABLE_NAMES, readerThreads=readerThreads,
                      timeout=timeout)
        index.createTables()
        index.start()
        self.addCleanup(index.stop)
        return index

    @defer.inlineCallbacks
    def test_longSQLiteQueryIsNotCutShort(self):
        """SQLite (no server to hang) reads wait for no SQLTimeOut."""
        index = self.makeIndex(timeout=0.1)
        self.assertEqual((yield index.queryForPeer(counting(3000000))), 3000000)

    @defer.inlineCallbacks
    def test_deadlineStartsInTheReaderAndProgressKeepsItAlive(self):
        """On a database server: the wait for a reader thread does not
        count, and a query whose rows keep coming is not failed."""
        index = self.makeIndex(timeout=0.3)
        index.readTimeout = 0.3  # as on PostgreSQL or MySQL

        def rowsArriving(connection):
            for _ in range(30):  # 0.6 s, a row every 0.02 s
                checkAbandoned()
                time.sleep(0.02)
            return "all rows"
        first, second = index.queryForPeer(rowsArriving), index.queryForPeer(selectOne)
        self.assertEqual((yield first), "all rows")
        self.assertEqual((yield second), 1)

    @defer.inlineCallbacks
    def test_cancelStopsTheStatementAndFreesTheThread(self):
        """A cancelled SQLite statement is interrupted: the one reader
        thread answers the next query at once, not after the first's 6 s."""
        index = self.makeIndex(timeout=None)
        long = index.queryForPeer(counting(30000000))
        yield task.deferLater(reactor, 0.3, lambda: None)
        long.cancel()
        started = time.monotonic()
        yield self.assertFailure(long, defer.CancelledError)
        self.assertEqual((yield index.queryForPeer(selectOne)), 1)
        self.assertLess(time.monotonic() - started, 1)

    @defer.inlineCallbacks
    def test_cancelledBeforeStartingNeverRuns(self):
        index = self.makeIndex(timeout=None)
        release, ran = threading.Event(), []
        self.addCleanup(release.set)
        first = index.queryForPeer(lambda connection: release.wait(5))
        waiting = index.queryForPeer(ran.append)
        waiting.cancel()
        yield self.assertFailure(waiting, defer.CancelledError)
        release.set()
        yield first
        yield index.queryForPeer(selectOne)
        self.assertEqual(ran, [])
