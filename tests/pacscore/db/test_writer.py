"""Tests for the group-commit writer thread behind Index.store.

A real writer thread is involved, so these tests run on trial's global
reactor: the Deferreds they return fire from ``reactor.callFromThread``.
"""

import os
import threading
import time

from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from twisted.internet import defer, reactor, task, threads
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.dicomsql import DatabaseLayout
from pacscore.db.index import Index, Replaced
from pacscore.db.peerqueries import Abandoned
from pacscore.db.worklistitems import WorklistItems
from pacscore.db.writer import BatchRunner, GroupCommitWriter, IndexTimeout, callEach
from pacscore.hl7.mapping import OrderItem
from plugins.pacs_sqlite import sqliteDriver
from tests.pacscore.db.test_index import makeRecord
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout
from tests.plugins.test_sqlite_driver import FakeConfiguration


def sqliteEngine(testCase):
    """The SQLite driver's engine on a new file in a folder of ``testCase``'s,
    disposed of after the test."""
    workdir = testCase.mktemp()
    os.makedirs(workdir)
    engine = sqliteDriver.createEngine("sqlite:index.db3", FakeConfiguration(workdir))
    testCase.addCleanup(engine.dispose)
    return engine


class WriterTests(unittest.TestCase):
    """Index.store / runWrite / runQuery with the SQLite driver's engine."""

    def setUp(self):
        self.engine = sqliteEngine(self)
        self.index = Index(self.engine, conquestLayout(), TABLE_NAMES, reactor=reactor)
        self.index.createTables()
        self.commits = []
        event.listen(self.engine, "commit", lambda connection: self.commits.append(1))
        self.index.start()
        self.addCleanup(self.index.stop)
        # Another connection pool on the same file, as a query would see it.
        self.observer = create_engine("sqlite:///" + self.engine.url.database)
        self.addCleanup(self.observer.dispose)

    def count(self, level, **where):
        table = getattr(self.index.tables, level)
        query = select(func.count()).select_from(table).where(
            *(table.c[k] == v for k, v in where.items()))
        with self.observer.connect() as connection:
            return connection.execute(query).scalar()

    def storeAll(self, records):
        """Store concurrently; a DeferredList-style list of (ok, value)."""
        return defer.DeferredList([self.index.store(r) for r in records], consumeErrors=True)

    def test_groupCommitVisibleWhenFired(self):
        """300 concurrent stores: a few transactions, and each Deferred fires
        only when its row is committed (visible to another connection)."""
        visible = []

        def fired(result, sop):
            visible.append(self.count("image", SOPInstanceUID=sop))
            return result

        sops = [f"1.2.3.1.{n}" for n in range(300)]
        ds = [self.index.store(makeRecord(sop)).addCallback(fired, sop) for sop in sops]

        def check(results):
            self.assertEqual(results, [None] * 300)
            self.assertEqual(visible, [1] * 300)
            self.assertLessEqual(len(self.commits), 10)
            self.assertEqual(self.count("patient"), 1)
        return defer.gatherResults(ds).addCallback(check)

    def test_failingRecordErrbacksAlone(self):
        """The database refuses one record of a batch: only its Deferred
        fails; the batch is retried one by one."""
        with self.engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON DICOMImages "
                "WHEN NEW.ImageNumber = '13' BEGIN SELECT RAISE(ABORT, 'refused'); END")

        def check(results):
            failed = [n for n, (ok, _) in enumerate(results) if not ok]
            self.assertEqual(failed, [13])
            self.assertIn("refused", str(results[13][1].value))
            self.assertEqual(self.count("image"), 49)
        return self.storeAll(makeRecord(f"1.2.3.1.{n}") for n in range(50)).addCallback(check)

    def test_invalidRecord(self):
        d = self.index.store(makeRecord("1.2.3.1.1", SOP_UID=""))
        return self.assertFailure(d, ValueError)

    def test_replaced(self):
        d = self.index.store(makeRecord("1.2.3.1.1", objectFile="a.dcm"))
        d.addCallback(lambda _: self.index.store(makeRecord("1.2.3.1.1", objectFile="b.dcm")))
        d.addCallback(self.assertEqual, Replaced("MAG0", "a.dcm"))
        return d

    def test_stopDrains(self):
        """Everything stored before stop() is committed and answered before
        stop's Deferred fires; later stores fail."""
        fired = []
        for n in range(200):
            self.index.store(makeRecord(f"1.2.3.1.{n}")).addCallback(fired.append)
        d = self.index.stop()

        def stopped(_):
            self.assertEqual(len(fired), 200)
            self.assertEqual(self.count("image"), 200)
            return self.assertFailure(self.index.store(makeRecord("1.2.3.1.999")), RuntimeError)
        return d.addCallback(stopped)

    def test_runQuery(self):
        """Queries run in a reader thread, with their own connection."""
        d = self.storeAll([makeRecord("1.2.3.1.1"), makeRecord("1.2.3.1.2")])
        image = self.index.tables.image

        def query(connection, series):
            rows = connection.execute(select(image.c.SOPInstanceUID).where(
                image.c.SeriesInstanceUID == series).order_by(image.c.SOPInstanceUID))
            return threading.current_thread().name, rows.scalars().all()

        d.addCallback(lambda _: self.index.runQuery(query, "1.2.3.1"))
        d.addCallback(lambda result: self.assertEqual(
            ("pacs-db-reader" in result[0], result[1]),
            (True, ["1.2.3.1.1", "1.2.3.1.2"])))
        return d

    def test_runWriteAndForgetCache(self):
        """The writer caches parent rows' values; a change through runWrite
        that calls forgetCache() makes the next store read them again (a
        deleted row is inserted again either way: see test_index)."""
        patients = self.index.tables.patient

        def renamePatients(connection, forget):
            connection.execute(update(patients).values(PatientName="CHANGED"))
            if forget:
                self.index.forgetCache()
            return "renamed"

        def name(_):
            with self.observer.connect() as connection:
                return connection.execute(select(patients.c.PatientName)).scalar()

        d = self.index.store(makeRecord("1.2.3.1.1"))
        d.addCallback(lambda _: self.index.runWrite(renamePatients, forget=False))
        d.addCallback(self.assertEqual, "renamed")
        d.addCallback(lambda _: self.index.store(makeRecord("1.2.3.1.2")))
        d.addCallback(name)
        d.addCallback(self.assertEqual, "CHANGED")  # cached: the record's name is the one last seen
        d.addCallback(lambda _: self.index.runWrite(renamePatients, forget=True))
        d.addCallback(lambda _: self.index.store(makeRecord("1.2.3.1.3")))
        d.addCallback(name)
        d.addCallback(self.assertEqual, "DOE^JOHN")
        return d


class AfterCommitTests(unittest.TestCase):
    """GroupCommitWriter's ``afterCommit`` (the durability flush) and
    ``onConnect`` (the writer connection's set-up)."""

    def setUp(self):
        self.engine = sqliteEngine(self)
        self.seen = []
        self.connections = []
        self.failWith = None

    def writer(self):
        writer = GroupCommitWriter(self.engine, reactor, afterCommit=lambda requests: self.afterCommit(requests),
                                   onConnect=self.connections.append)
        writer.start()
        self.addCleanup(writer.stop)
        return writer

    def afterCommit(self, requests):
        self.seen.append(([item for _, item in requests], self.tables()))  # what another connection sees
        if self.failWith is not None:
            raise self.failWith

    @staticmethod
    def create(connection, names):
        for name in names:
            connection.exec_driver_sql(f"CREATE TABLE {name} (x)")
        return names

    @defer.inlineCallbacks
    def test_calledAfterTheCommitBeforeTheResults(self):
        writer = self.writer()
        result = yield writer.submit(self.create, "a")
        self.assertEqual(result, "a")
        self.assertEqual(self.seen, [(["a"], 1)], "committed (visible elsewhere) when it runs")
        yield writer.submit(self.create, "b")
        self.assertEqual(len(self.connections), 1, "onConnect once per writer connection")

    @defer.inlineCallbacks
    def test_commitsDuringAFlushShareTheNext(self):
        """The writer goes on committing while a flush runs; what it
        committed meanwhile is flushed together, by one call."""
        release = threading.Event()
        afterCommit = self.afterCommit

        def slowFirstFlush(requests):
            afterCommit(requests)
            if len(self.seen) == 1:
                release.wait(10)

        self.afterCommit = slowFirstFlush
        writer = self.writer()
        first = writer.submit(self.create, "a")
        while not self.seen:
            time.sleep(0.001)
        later = [writer.submit(self.create, name) for name in ("b", "c")]
        deadline = time.monotonic() + 10
        while self.tables() < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        self.assertEqual(self.tables(), 3, "committed while the first flush still runs")
        self.assertFalse(first.called, "nothing is answered before its flush")
        release.set()
        results = yield defer.gatherResults([first] + later)
        self.assertEqual(results, ["a", "b", "c"])
        self.assertEqual([items for items, _ in self.seen], [["a"], ["b", "c"]])

    def tables(self):
        with self.engine.connect() as connection:
            return connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()

    @defer.inlineCallbacks
    def test_itsFailureFailsTheGroup(self):
        writer = self.writer()
        self.failWith = OSError(5, "write-back failed")
        yield self.assertFailure(writer.submit(self.create, "a"), OSError)
        self.failWith = None
        yield self.assertFailure(writer.submit(self.create, "a"), Exception)  # committed: exists
        self.assertEqual([items for items, _ in self.seen], [["a"]],
                         "a rolled-back request is not flushed")


class UnreachableDatabaseTests(unittest.TestCase):
    """A database that cannot be connected to (its server down; here a
    SQLite file in a folder not there yet) fails the writes of the moment,
    and the writer thread serves the next ones once it is back."""

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        self.engine = create_engine("sqlite:///" + os.path.join(self.folder, "index.db3"))
        self.addCleanup(self.engine.dispose)
        self.connects = []
        event.listen(self.engine, "do_connect", lambda *args: self.connects.append(1))

    @defer.inlineCallbacks
    def test_writerOutlivesAFailedConnect(self):
        writer = GroupCommitWriter(self.engine, reactor)
        writer.runner.holdOff = 0.1
        writer.start()
        self.addCleanup(writer.stop)
        create = AfterCommitTests.create
        yield self.assertFailure(writer.submit(create, ["a"]), OperationalError)
        os.makedirs(self.folder)
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual((yield writer.submit(create, ["b"])), ["b"])

    def test_aBatchFailsAtOnce(self):
        """A connect that fails is not tried again for each write of the
        batch (8 stores waited 9 connect timeouts, 90 s), nor for the writes
        of the next seconds: they fail at once with its error, logged once."""
        runner = BatchRunner(self.engine, lambda: None)
        with capturedLogs() as events:
            results = runner.run([(AfterCommitTests.create, [name]) for name in "abcdefgh"])
            later = runner.run([(AfterCommitTests.create, ["i"])])
        self.assertEqual(len(self.connects), 1)
        self.assertEqual([ok for ok, _ in results + later], [False] * 9)
        for _, failure in results + later:
            failure.trap(OperationalError)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.error])
        self.assertIn("cannot connect to the index database", formatEvent(events[0]))


class DroppedConnectionTests(unittest.TestCase):
    """A connection the database server dropped while the writer kept it
    (MariaDB's wait_timeout, a restart) is replaced and the write done on
    the new one: the first store after a quiet night was refused."""

    def bareEngine(self, table=False):
        """A plain SQLAlchemy engine on a new SQLite file, holding table
        t (x) if asked."""
        engine = create_engine("sqlite:///" + os.path.abspath(self.mktemp()))
        self.addCleanup(engine.dispose)
        if table:
            with engine.begin() as connection:
                connection.exec_driver_sql("CREATE TABLE t (x)")
        return engine

    def batchRunner(self, engine):
        runner = BatchRunner(engine, lambda: None)
        self.addCleanup(runner.closeConnection)
        return runner

    @staticmethod
    def dropConnection(connection):
        """What a server dropping the connection mid-write does."""
        connection.invalidate()
        raise OperationalError("INSERT", {}, Exception("server has gone away"), connection_invalidated=True)

    @staticmethod
    def insert(connection, items):
        connection.exec_driver_sql("INSERT INTO t VALUES (?)", [(item,) for item in items])
        return items

    @defer.inlineCallbacks
    def test_writesGoAgainOnANewConnection(self):
        engine = self.bareEngine()
        writer = GroupCommitWriter(engine, reactor)
        writer.start()
        self.addCleanup(writer.stop)
        create = AfterCommitTests.create
        self.assertEqual((yield writer.submit(create, ["a"])), ["a"])
        connections = []

        def droppedOnce(connection, items):
            connections.append(connection)
            if len(connections) == 1:
                self.dropConnection(connection)
            return create(connection, items)

        self.assertEqual((yield writer.submit(droppedOnce, ["b"])), ["b"])
        self.assertEqual(len(connections), 2)
        self.assertIsNot(connections[0], connections[1])
        failing = [0]

        def alwaysDropped(connection, items):
            failing[0] += 1
            self.dropConnection(connection)

        yield self.assertFailure(writer.submit(alwaysDropped, ["c"]), OperationalError)
        self.assertEqual(failing[0], 2, "tried once more, not for ever")

    def test_aWriteThatAlwaysDropsTheConnectionFailsAlone(self):
        """MySQL drops the connection on a statement larger than its
        max_allowed_packet (a storage commitment request of 50,000
        references), on the new connection too: that write fails alone, the
        others of its batch (other associations' C-STOREs, refused 0x0110)
        are committed with their half of it, on a new connection, with one
        warning."""
        engine = self.bareEngine(table=True)
        runner = self.batchRunner(engine)
        failing = [0]

        def tooLarge(connection, items):
            failing[0] += 1
            self.dropConnection(connection)

        with capturedLogs() as events:
            results = runner.run([(self.insert, "d"), (tooLarge, "e"), (self.insert, "f"), (self.insert, "g")])
        self.assertEqual([ok for ok, _ in results], [True, False, True, True])
        results[1][1].trap(OperationalError)
        self.assertEqual(failing[0], 4, "the batch, once more, in its half, then alone once")
        with engine.connect() as connection:
            self.assertEqual(sorted(connection.exec_driver_sql("SELECT x FROM t").scalars()), ["d", "f", "g"])
        self.assertEqual([e["log_level"] for e in events], [LogLevel.info, LogLevel.warn])
        self.assertIn("max_allowed_packet", formatEvent(events[1]))


    def test_aServerDroppingEveryConnectionFailsTheBatchSoon(self):
        """A server that accepts connections but drops them (a crash loop, a
        proxy before a dead backend) does not have each write of a batch
        run alone on a new connection (200 writes: 202 connects, each
        waiting on the server): the batch goes in halves and, after
        maxLostAlone writes lost alone, the rest fails at once."""
        engine = self.bareEngine()
        connects = []
        event.listen(engine, "do_connect", lambda *args: connects.append(1))
        runner = self.batchRunner(engine)

        def dropped(connection, items):
            self.dropConnection(connection)

        with capturedLogs() as events:
            results = runner.run([(dropped, index) for index in range(200)])
        self.assertEqual([ok for ok, _ in results], [False] * 200)
        for _, failure in results:
            failure.trap(OperationalError)
        self.assertLessEqual(len(connects), 16,
                             "the batch, once more, its halves down to maxLostAlone writes alone")
        self.assertEqual([e["log_level"] for e in events], [LogLevel.info, LogLevel.warn, LogLevel.error])
        self.assertIn("the other writes of their batch fail at once", formatEvent(events[2]))

    def test_oversizedWritesSpreadThroughABatchFailAlone(self):
        """Three oversized writes (3, 5 and 7) in a batch of 40 of one
        function each lose the connection alone, but the parts between them
        commit: those losses are not a server dropping every connection, so
        the 37 writes that fit are committed (not 5, the rest failing at
        once after the third oversized one)."""
        engine = self.bareEngine(table=True)
        runner = self.batchRunner(engine)

        def insert(connection, items):
            if {3, 5, 7} & set(items):
                self.dropConnection(connection)
            return self.insert(connection, items)

        with capturedLogs() as events:
            results = runner.run([(insert, index) for index in range(40)])
        self.assertEqual([index for index, (ok, _) in enumerate(results) if not ok], [3, 5, 7])
        with engine.connect() as connection:
            self.assertEqual(sorted(connection.exec_driver_sql("SELECT x FROM t").scalars()),
                             [index for index in range(40) if index not in (3, 5, 7)])
        self.assertEqual([e["log_level"] for e in events], [LogLevel.info, LogLevel.warn])


class AbandonedWriteTests(unittest.TestCase):
    """An HL7 order answered AR at SQLTimeOut while its write waited (the
    tables locked) raises ``Abandoned`` once it ran, so as not to be
    committed: the soak's 'Batch of 11 writes failed (); retrying each
    alone' rolled back the C-STOREs sharing its batch, ran each of them
    alone and gave no reason."""

    def test_anAbandonedOrderIsDroppedAloneWithItsReason(self):
        engine = sqliteEngine(self)
        index = Index(engine, DatabaseLayout.fromFile("etc/dicom.sql"), TABLE_NAMES)
        index.createTables()
        items = WorklistItems(index, runWrite=None)
        begins = []
        event.listen(engine, "begin", lambda connection: begins.append(1))
        runner = BatchRunner(engine, lambda: None)
        self.addCleanup(runner.closeConnection)
        answered, waiting = threading.Event(), threading.Event()
        answered.set()  # its sender was answered AR: SQLTimeOut passed while it waited
        orders = {accession: [OrderItem("NW", {"AccessionNumber": accession})] for accession in ("A1", "A2", "A3")}
        requests = [(callEach, (items._apply, (orders["A1"], waiting), {})),
                    (callEach, (items._apply, (orders["A2"], answered), {})),
                    (callEach, (items._apply, (orders["A3"], None), {}))]
        with capturedLogs() as events:
            results = runner.run(requests)
        self.assertEqual([ok for ok, _ in results], [True, False, True])
        results[1][1].trap(Abandoned)
        self.assertEqual(len(begins), 2, "the batch, then the two others together (not each alone)")
        with engine.connect() as connection:
            table = index.tables.worklist
            self.assertEqual(sorted(connection.execute(select(table.c.AccessionNumber)).scalars()), ["A1", "A3"])
        self.assertEqual([e["log_level"] for e in events], [LogLevel.info])
        self.assertEqual(formatEvent(events[0]),
                         "a write was abandoned (HL7 order(s) A2 answered as failed (SQLTimeOut) before the "
                         "database applied them): rolled back, not applied; the other 2 writes of its batch go "
                         "again without it")


class DeadlineTests(unittest.TestCase):
    """With a ``timeout`` (SQLTimeOut), a timed write (a C-STORE's) the
    database does not answer in time (a server that hangs: the writer thread
    waits on it) fails with a log line instead of holding its C-STORE for as
    long as the outage; ``stop`` gives up after it.  Here the database
    "hangs" in a write that waits for an event."""

    def setUp(self):
        self.engine = sqliteEngine(self)
        self.release = threading.Event()
        self.writer = GroupCommitWriter(self.engine, reactor, timeout=0.5)
        self.writer.start()
        self.addCleanup(self.writer.stop)
        self.addCleanup(self.release.set)  # first

    def hang(self, connection, items):
        self.release.wait(10)
        return items

    @defer.inlineCallbacks
    def test_aHungWriteFailsInTime(self):
        started = time.monotonic()
        with capturedLogs() as events:
            results = yield defer.DeferredList([self.writer.submit(self.hang, "a", timed=True),
                                                self.writer.submit(AfterCommitTests.create, "b", timed=True)],
                                               consumeErrors=True)
        self.assertLess(time.monotonic() - started, 2.5)
        self.assertEqual([ok for ok, _ in results], [False, False], "the one hung and the one behind it")
        for _, failure in results:
            failure.trap(IndexTimeout)
        self.assertEqual(["the index database did not answer within 0.5 s (SQLTimeOut): 2 writes failed"],
                         [formatEvent(e) for e in events if e["log_level"] == LogLevel.error])
        self.release.set()  # the database is back: the next write is answered
        self.assertEqual((yield self.writer.submit(AfterCommitTests.create, "c")), "c")

    @defer.inlineCallbacks
    def test_aWriteQueuedBehindALongOneOfOursIsNotBlamedOnTheDatabase(self):
        """A timed write that waited its SQLTimeOut behind a long write of
        this server (a delete, maintenance: no peer waits on it), never
        taken up, fails saying so, naming the database as well: the long
        write may be waiting on it (as this one, hanging, does)."""
        started = threading.Event()

        def long(connection, items):
            started.set()
            return self.hang(connection, items)
        delete = self.writer.submit(long, "a")
        yield threads.deferToThread(started.wait, 5)
        with capturedLogs() as events:
            failure = yield self.assertFailure(self.writer.submit(AfterCommitTests.create, "b", timed=True),
                                               IndexTimeout)
        self.assertEqual(str(failure), "the index writer did not get to it within 0.5 s (SQLTimeOut): it was busy "
                                       "with a longer write of this server (a delete, maintenance) or waiting on "
                                       "the database")
        self.assertEqual(["1 writes failed: the index writer did not get to them within 0.5 s (SQLTimeOut), busy "
                          "with a longer write of this server (a delete, maintenance) or waiting on the database"],
                         [formatEvent(e) for e in events if e["log_level"] == LogLevel.error])
        self.release.set()
        self.assertEqual((yield delete), "a")

    @defer.inlineCallbacks
    def test_otherWritesRunAsLongAsTheyNeed(self):
        """A long delete or move (no peer waits on it) is not cut short."""
        reactor.callLater(1, self.release.set)
        with capturedLogs() as events:
            self.assertEqual((yield self.writer.submit(self.hang, "a")), "a")
        self.assertEqual([e for e in events if e["log_level"] == LogLevel.error], [])

    @defer.inlineCallbacks
    def test_stopGivesUp(self):
        """Then the writes still waiting fail, timed or not."""
        writes = [self.writer.submit(self.hang, "a", timed=True), self.writer.submit(AfterCommitTests.create, "b")]
        started = time.monotonic()
        with capturedLogs() as events:
            finished = yield self.writer.stop()
        self.assertFalse(finished)
        self.assertLess(time.monotonic() - started, 2.5)
        self.assertIn("the index writer did not finish within 0.5 s (SQLTimeOut): the database does not answer; "
                      "stopping without it", [formatEvent(e) for e in events])
        for write in writes:
            yield self.assertFailure(write, IndexTimeout)


class QueryTimeoutTests(unittest.TestCase):
    """SQLTimeOut limits the queries a DICOM peer waits on
    (``queryForPeer``) on a database server, not maintenance scans or
    makespace (``runQuery``)."""

    def setUp(self):
        self.index = Index(sqliteEngine(self), conquestLayout(), TABLE_NAMES, reactor=reactor, timeout=0.3)
        self.index.readTimeout = 0.3  # as on PostgreSQL or MySQL (SQLite reads wait for no deadline)
        self.index.createTables()
        self.index.start()
        self.addCleanup(self.index.stop)

    @staticmethod
    def slow(connection):
        time.sleep(0.6)  # a statement that merely runs long
        return "done"

    @defer.inlineCallbacks
    def test_longQueryIsNotCutShort(self):
        self.assertEqual((yield self.index.runQuery(self.slow)), "done")

    @defer.inlineCallbacks
    def test_peerQueryFailsInTime(self):
        error = yield self.assertFailure(self.index.queryForPeer(self.slow), IndexTimeout)
        self.assertEqual(str(error), "the index database did not answer within 0.3 s (SQLTimeOut)")


class DirectStoreTests(unittest.TestCase):
    """The statements of a store's transaction (``Index._upsertInWriter``)
    run on the DBAPI cursor (``pacscore.db.direct``): SQLAlchemy's execute
    path costs the writer, where an ingest waits, more than the SQL."""

    def setUp(self):
        self.index = Index(sqliteEngine(self), conquestLayout(), TABLE_NAMES, reactor=reactor)
        self.index.createTables()
        self.index.start()
        self.addCleanup(self.index.stop)

    @defer.inlineCallbacks
    def test_aStoreOfAKnownSeriesRunsDirectly(self):
        yield self.index.store(makeRecord("1.2.3.1.1"))  # the first makes the patient, study and series rows
        executed = []
        self.patch(Connection, "execute", lambda connection, statement, *rest: executed.append(str(statement)))
        yield defer.gatherResults([self.index.store(makeRecord("1.2.3.1.2")), self.index.store(makeRecord("1.2.3.1.3"))])
        self.assertEqual(executed, [])
