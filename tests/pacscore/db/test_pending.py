"""PendingFiles: image rows committed before the flush that makes their
files durable are marked in their own transaction, unmarked in bulk by a
later writer transaction once flushed, and checked at start-up."""

from sqlalchemy import Column, MetaData, String, Table, insert, select
from twisted.internet import defer, reactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.db.index import Index
from pacscore.db.pending import Unchecked
from pacscore.db.schema import MYSQL_TABLE
from tests.pacscore.db.test_index import makeRecord
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout
from tests.pacscore.db.test_writer import sqliteEngine


class FlushAfterCommit:
    """A durability policy that flushes after commit, recording its calls."""

    flushesAfterCommit = True

    def __init__(self):
        self.flushed = []
        self.error = None

    def flush(self, records):
        if self.error is not None:
            raise self.error
        self.flushed.append([record.objectFile for record in records])


class PendingFilesTests(unittest.TestCase):

    def makeEngine(self):
        return sqliteEngine(self)

    def setUp(self):
        self.engine = self.makeEngine()
        self.durability = FlushAfterCommit()
        self.index = Index(self.engine, conquestLayout(), TABLE_NAMES, reactor=reactor,
                           durability=self.durability)
        self.index.createTables()
        self.index.pending.dropEvery = 1

    def start(self):
        self.index.start()
        self.addCleanup(self.index.stop)

    def marked(self):
        table = self.index.pending.table
        with self.engine.connect() as connection:
            return sorted(connection.execute(select(table.c.DeviceName, table.c.ObjectFile)))

    def noEarlierCopy(self, deviceName, objectFile):
        self.fail(f"no earlier copy is to be read ({deviceName}:{objectFile})")

    def images(self):
        table = self.index.tables.image
        with self.engine.connect() as connection:
            return sorted(row.ObjectFile for row in connection.execute(select(table.c.ObjectFile)))

    @defer.inlineCallbacks
    def test_markedUntilTheNextTransactionAfterTheFlush(self):
        self.start()
        yield self.index.store(makeRecord("1.2.3.1.1", objectFile="a.dcm"))
        self.assertEqual(self.durability.flushed, [["a.dcm"]])
        self.assertEqual(self.marked(), [("MAG0", "a.dcm")], "flushed, but unmarked only by the next transaction")
        yield self.index.store(makeRecord("1.2.3.1.2", objectFile="b.dcm"))
        self.assertEqual(self.marked(), [("MAG0", "b.dcm")])
        yield self.index.runWrite(lambda connection: None)
        self.assertEqual(self.durability.flushed[-1], [], "a commit without images is flushed too")

    @defer.inlineCallbacks
    def test_flushedMarksDroppedInBulk(self):
        self.index.pending.dropEvery = 3
        self.start()
        for n in range(5):
            yield self.index.store(makeRecord(f"1.2.3.1.{n}", objectFile=f"{n}.dcm"))
        self.assertEqual(self.marked(), [("MAG0", "3.dcm"), ("MAG0", "4.dcm")],
                         "the three flushed before the fourth's transaction are dropped by it")

    @defer.inlineCallbacks
    def test_failedFlushKeepsTheMarks(self):
        self.start()
        self.durability.error = OSError(5, "write-back failed")
        yield self.assertFailure(self.index.store(makeRecord("1.2.3.1.1", objectFile="a.dcm")), OSError)
        self.durability.error = None
        yield self.index.store(makeRecord("1.2.3.1.2", objectFile="b.dcm"))
        yield self.index.store(makeRecord("1.2.3.1.3", objectFile="c.dcm"))
        self.assertEqual(self.marked(), [("MAG0", "a.dcm"), ("MAG0", "c.dcm")])

    @defer.inlineCallbacks
    def test_recoverRemovesRowsWhoseFileDidNotSurvive(self):
        self.start()
        self.durability.error = OSError(5, "power loss")
        for n, name in enumerate(["kept.dcm", "lost.dcm"]):
            yield self.assertFailure(self.index.store(makeRecord(f"1.2.3.1.{n}", objectFile=name)), OSError)
        yield self.index.stop()
        checked = []

        def fileError(deviceName, objectFile):
            checked.append((deviceName, objectFile))
            return "No such file or directory" if objectFile == "lost.dcm" else None

        self.assertEqual(self.index.recoverPending(fileError, self.noEarlierCopy), [("MAG0", "lost.dcm")])
        self.assertEqual(sorted(checked), [("MAG0", "kept.dcm"), ("MAG0", "lost.dcm")])
        self.assertEqual(self.images(), ["kept.dcm"])
        self.assertEqual(self.marked(), [])
        self.assertEqual(self.index.recoverPending(fileError, self.noEarlierCopy), [], "nothing left to check")

    @defer.inlineCallbacks
    def test_recoverIndexesAgainTheEarlierCopyALostFileReplaced(self):
        """A new copy of a SOP instance stored under another name replaces
        the row of the earlier, acknowledged copy (whose file is removed
        only after the new one's Success): when the new file is lost, the
        earlier copy is what the index names again."""
        self.start()
        earlier = makeRecord("1.2.3.1.1", objectFile="first.dcm")
        yield self.index.store(earlier)
        self.durability.error = OSError(5, "power loss")
        yield self.assertFailure(self.index.store(makeRecord("1.2.3.1.1", objectFile="second.dcm")), OSError)
        yield self.index.stop()
        self.assertEqual(self.images(), ["second.dcm"])
        read = []

        def recordOf(deviceName, objectFile):
            read.append((deviceName, objectFile))
            return earlier

        self.assertEqual(self.index.recoverPending(lambda device, name: name == "second.dcm" and "gone" or None,
                                                   recordOf), [("MAG0", "second.dcm")])
        self.assertEqual(read, [("MAG0", "first.dcm")])
        self.assertEqual(self.images(), ["first.dcm"])
        self.assertEqual(self.marked(), [])

    @defer.inlineCallbacks
    def test_recoverLeavesAnEarlierCopyThatIsGone(self):
        """The earlier copy was removed after the new one's Success: nothing
        to index again (and the new file survived anyway)."""
        self.start()
        yield self.index.store(makeRecord("1.2.3.1.1", objectFile="first.dcm"))
        self.durability.error = OSError(5, "power loss")
        yield self.assertFailure(self.index.store(makeRecord("1.2.3.1.1", objectFile="second.dcm")), OSError)
        yield self.index.stop()
        self.assertEqual(self.index.recoverPending(lambda device, name: "gone", self.noEarlierCopy),
                         [("MAG0", "second.dcm")])
        self.assertEqual(self.images(), [])

    @defer.inlineCallbacks
    def test_recoverLeavesTheRowOfALaterCopy(self):
        """Flushed marks stay until ``dropEvery`` of them are dropped, so a
        crash leaves the marks of copies a later, acknowledged copy replaced
        and whose files were then removed.  Such a mark names no image row
        any more: it is no lost file, and the earlier copy it replaced, still
        on disk only because its removal had not run yet, is not indexed
        over the later copy."""
        self.index.pending.dropEvery = 256
        self.start()
        for name in ("a.dcm", "b.dcm", "a.dcm", "c.dcm"):  # a name that comes back: %callingae
            yield self.index.store(makeRecord("1.2.3.1.1", objectFile=name))
        yield self.index.stop()  # marks only as a crash leaves them
        with self.engine.begin() as connection:
            self.index.pending._insert.execute(connection, [
                {"DeviceName": "MAG0", "ObjectFile": name, "ReplacedDevice": "MAG0" if earlier else "",
                 "ReplacedFile": earlier}
                for name, earlier in (("a.dcm", ""), ("b.dcm", "a.dcm"), ("a.dcm", "b.dcm"), ("c.dcm", "a.dcm"))])
        self.assertEqual(self.images(), ["c.dcm"])
        onDisk = {"a.dcm", "c.dcm"}  # b.dcm removed after the third's Success, a.dcm not yet after the fourth's

        read = []

        def recordOf(deviceName, objectFile):
            read.append((deviceName, objectFile))
            return makeRecord("1.2.3.1.1", objectFile=objectFile)

        lost = self.index.recoverPending(lambda device, name: None if name in onDisk else "gone", recordOf)
        self.assertEqual(self.images(), ["c.dcm"], "the acknowledged copy stays indexed")
        self.assertEqual(read, [])
        self.assertEqual(lost, [], "b.dcm was acknowledged, then replaced: not lost")
        self.assertEqual(self.marked(), [])

    @defer.inlineCallbacks
    def test_recoverIndexesAgainTheLastCopyAcknowledgedBeforeLostOnes(self):
        """Two new copies lost in one crash: the earliest copy still on
        disk is indexed again, through the mark of the lost copy in between."""
        self.start()
        earlier = makeRecord("1.2.3.1.1", objectFile="first.dcm")
        yield self.index.store(earlier)
        self.durability.error = OSError(5, "power loss")
        for name in ("second.dcm", "third.dcm"):
            yield self.assertFailure(self.index.store(makeRecord("1.2.3.1.1", objectFile=name)), OSError)
        yield self.index.stop()
        read = []

        def recordOf(deviceName, objectFile):
            read.append((deviceName, objectFile))
            return earlier

        self.assertEqual(self.index.recoverPending(lambda device, name: name != "first.dcm" and "gone" or None,
                                                   recordOf), [("MAG0", "third.dcm")])
        self.assertEqual(read, [("MAG0", "first.dcm")])
        self.assertEqual(self.images(), ["first.dcm"])

    @staticmethod
    def removing():
        """The files a ``removeReplaced`` removed (a list), and that
        function, which removes nothing and says it removed them all."""
        removed = []

        def removeReplaced(files):
            removed.extend(files)
            return len(files)
        return removed, removeReplaced

    def replacedThenCrashed(self, *names):
        """Each of ``names`` stored as a new copy of one SOP instance, the
        server then killed after the last one's commit (its mark left)."""
        yield self.index.store(makeRecord("1.2.3.1.1", objectFile=names[0]))
        self.durability.error = OSError(5, "killed")
        for name in names[1:]:
            yield self.assertFailure(self.index.store(makeRecord("1.2.3.1.1", objectFile=name)), OSError)
        yield self.index.stop()

    @defer.inlineCallbacks
    def test_recoverRemovesTheCopyAnIntactIndexedOneReplaced(self):
        """kill -9 right after a re-sent object's row committed, before the
        copy it replaced was removed: that copy stayed on disk for good,
        indexed by no row.  Its mark's own file intact and indexed, it is
        removed at start, with a log line counting it."""
        self.start()
        yield from self.replacedThenCrashed("first.dcm", "second.dcm")
        removed, removeReplaced = self.removing()
        with capturedLogs() as events:
            self.assertEqual(self.index.recoverPending(lambda device, name: None, self.noEarlierCopy,
                                                       removeReplaced), [])
        self.assertEqual(removed, [("MAG0", "first.dcm")])
        self.assertEqual(self.images(), ["second.dcm"])
        self.assertEqual(self.marked(), [])
        self.assertIn("removed 1 copies replaced just before the server stopped (the new copies of their SOP "
                      "instances, indexed, are kept)", [formatEvent(event) for event in events])

    @defer.inlineCallbacks
    def test_recoverKeepsTheRowOfAFileThatCouldNotBeCheckedHere(self):
        """A marked file that cannot be read here at start (permissions, an
        I/O error: ``Unchecked``) showed no loss in a crash: its row was
        removed as 'never acknowledged' although it had been; it is kept,
        with a warning, and the copy it replaced is not removed either."""
        self.start()
        yield from self.replacedThenCrashed("first.dcm", "second.dcm")
        removed, removeReplaced = self.removing()

        def fileError(deviceName, objectFile):
            return Unchecked("[Errno 13] Permission denied") if objectFile == "second.dcm" else None
        with capturedLogs() as events:
            self.assertEqual(self.index.recoverPending(fileError, self.noEarlierCopy, removeReplaced), [])
        self.assertEqual(self.images(), ["second.dcm"])
        self.assertEqual(removed, [])
        self.assertEqual(self.marked(), [])
        self.assertIn("MAG0:second.dcm, indexed last before the server stopped, could not be checked ([Errno 13] "
                      "Permission denied); its image row is kept: make it readable (or run dgate -r)",
                      [formatEvent(event) for event in events])

    @defer.inlineCallbacks
    def test_recoverKeepsAReplacedCopyARowNamesOrWhoseNewCopyIsNotIndexedAndIntact(self):
        """The replaced copy is not removed when an image row names its file
        (its name used again since), when the new copy is lost (the earlier
        one is indexed again instead), nor when no row names the new copy."""
        self.start()
        yield from self.replacedThenCrashed("first.dcm", "second.dcm")
        self.index.storeMany([makeRecord("1.2.3.1.2", objectFile="first.dcm")])  # the name used again
        with self.engine.begin() as connection:
            self.index.pending._insert.execute(connection, [  # no image row names third.dcm
                {"DeviceName": "MAG0", "ObjectFile": "third.dcm", "ReplacedDevice": "MAG0", "ReplacedFile": "a.dcm"},
                {"DeviceName": "MAG0", "ObjectFile": "lost.dcm", "ReplacedDevice": "MAG0", "ReplacedFile": "b.dcm"}])
        self.index.storeMany([makeRecord("1.2.3.1.3", objectFile="lost.dcm")])
        removed, removeReplaced = self.removing()
        self.index.recoverPending(lambda device, name: "gone" if name == "lost.dcm" else None,
                                  lambda device, name: makeRecord("1.2.3.1.3", objectFile=name), removeReplaced)
        self.assertEqual(removed, [])
        self.assertEqual(self.images(), ["b.dcm", "first.dcm", "second.dcm"])

    @defer.inlineCallbacks
    def test_stopDropsTheMarksOfFlushedGroups(self):
        """A clean stop leaves no mark of what was flushed: the next start
        checks nothing (and cannot take a missing file for a lost one)."""
        self.index.pending.dropEvery = 256
        self.start()
        for n in range(3):
            yield self.index.store(makeRecord(f"1.2.3.1.{n}", objectFile=f"{n}.dcm"))
        self.durability.error = OSError(5, "write-back failed")
        yield self.assertFailure(self.index.store(makeRecord("1.2.3.1.9", objectFile="9.dcm")), OSError)
        self.assertEqual(len(self.marked()), 4)
        yield self.index.stop()
        self.assertEqual(self.marked(), [("MAG0", "9.dcm")], "only the one whose flush failed")

    @defer.inlineCallbacks
    def test_recoverRemovesTheRowsLeftWithoutImages(self):
        self.start()
        yield self.index.store(makeRecord("1.2.3.1.1", objectFile="kept.dcm"))
        self.durability.error = OSError(5, "power loss")
        yield self.assertFailure(self.index.store(makeRecord("1.2.9.1.1", series="1.2.9.1", study="1.2.9",
                                                             patient="PAT9", objectFile="lost.dcm")), OSError)
        yield self.index.stop()
        self.assertEqual(self.index.recoverPending(lambda device, name: name == "lost.dcm" and "gone" or None,
                                                   self.noEarlierCopy),
                         [("MAG0", "lost.dcm")])
        self.assertEqual(self.images(), ["kept.dcm"])
        tables = self.index.tables
        with self.engine.connect() as connection:
            self.assertEqual([connection.execute(select(table).with_only_columns(table.c[key])).scalars().all()
                              for table, key in ((tables.patient, "PatientID"), (tables.study, "StudyInstanceUID"),
                                                 (tables.series, "SeriesInstanceUID"))],
                             [["PAT1"], ["1.2.3"], ["1.2.3.1"]])

    @defer.inlineCallbacks
    def test_marksOfAnEarlierVersionAreKept(self):
        """A PendingFiles table an earlier version made (no Replaced
        columns) gets them, its marks kept and checked."""
        self.start()
        yield self.index.store(makeRecord("1.2.3.1.1", objectFile="lost.dcm"))
        yield self.index.stop()
        self.index.pending.table.drop(self.engine)
        earlier = Table("PendingFiles", MetaData(), Column("DeviceName", String(32)),
                        Column("ObjectFile", String(255)), **MYSQL_TABLE)
        earlier.create(self.engine)
        with self.engine.begin() as connection:
            connection.execute(insert(earlier).values(DeviceName="MAG0", ObjectFile="lost.dcm"))
        self.index.createTables()
        self.assertEqual(self.index.recoverPending(lambda device, name: "gone", self.noEarlierCopy),
                         [("MAG0", "lost.dcm")])
        self.assertEqual(self.images(), [])

    def test_perFileSyncMarksNothing(self):
        index = Index(self.engine, conquestLayout(), TABLE_NAMES, reactor=reactor)
        index.start()
        self.addCleanup(index.stop)
        return index.store(makeRecord("1.2.3.1.1")).addCallback(lambda _: self.assertEqual(self.marked(), []))
