"""Tests for pacscore.db.peerqueries through ``Index.queryForPeer`` on a
real SQLite index: a long query is not failed by SQLTimeOut, an abandoned
one stops and frees its reader thread, one waiting for a reader thread
fails at its deadline, and other queries leave peers a thread."""

import threading
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from pacscore.db.errors import IndexTimeout
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

    def serverIndex(self, timeout, readerThreads=1):
        """An index whose peer queries have a deadline, as on PostgreSQL or
        MySQL."""
        index = self.makeIndex(timeout, readerThreads)
        index.readTimeout = timeout
        return index

    def heldQueries(self, index, count):
        """``count`` queries (``runQuery``, the web's) holding reader
        threads, as on a database server that hangs, until the cleanup."""
        release = threading.Event()
        self.addCleanup(release.set)
        for _ in range(count):
            index.runQuery(lambda connection: release.wait(5))

    @defer.inlineCallbacks
    def test_progressKeepsAQueryAlive(self):
        """On a database server a query whose rows keep coming is not
        failed."""
        index = self.serverIndex(timeout=0.3)

        def rowsArriving(connection):
            for _ in range(30):  # 0.6 s, a row every 0.02 s
                checkAbandoned()
                time.sleep(0.02)
            return "all rows"
        self.assertEqual((yield index.queryForPeer(rowsArriving)), "all rows")

    @defer.inlineCallbacks
    def test_aQueryWaitingForAReaderFailsAtItsDeadlineAndNeverRuns(self):
        """The deadline started only when a reader thread took the query
        up: behind web requests holding the threads on a server that hangs,
        a C-FIND waited without limit.  It now counts from the submission,
        and the query given up is not run afterwards."""
        index = self.serverIndex(timeout=0.3)
        self.heldQueries(index, 1)
        ran, started = [], time.monotonic()
        error = yield self.assertFailure(index.queryForPeer(ran.append), IndexTimeout)
        self.assertLess(time.monotonic() - started, 1.5)
        self.assertEqual(str(error), "the index database did not answer within 0.3 s (SQLTimeOut)")
        yield task.deferLater(reactor, 0, lambda: None)
        self.assertEqual(ran, [])

    @defer.inlineCallbacks
    def test_otherQueriesLeaveAReaderThreadToPeers(self):
        """Web requests and other ``runQuery`` callers take all the reader
        threads but one: a peer's query runs while they hold theirs."""
        index = self.serverIndex(timeout=3, readerThreads=4)
        self.heldQueries(index, 4)
        started = time.monotonic()
        self.assertEqual((yield index.queryForPeer(selectOne)), 1)
        self.assertLess(time.monotonic() - started, 1)

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
