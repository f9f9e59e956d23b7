"""The durable export queue (pacscore.export.queue) on a real SQLite
index, with a fake clock."""

import os
from types import SimpleNamespace

from sqlalchemy import Column, Double, Float, MetaData, Table
from twisted.trial import unittest

from pacscore.db.index import Index
from pacscore.db.schema import MYSQL_TABLE
from pacscore.export.queue import FAILED, LOCAL, PENDING, ActionBuffer, ExportQueue, JobOutcome, Target, retryLimit
from pacscore.config.ini import DicomIni
from tests.pacscore.db.test_index import makeRecord
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout, sqliteEngine
from tests.pacscore.export.fixtures import SyncIndex

CT = Target("PAT1", "1.2.3", "1.2.3.1", "1.2.3.1.1")


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


class FakeRule:
    """What the queue needs of pacscore.converters.rules.Rule."""

    def __init__(self, key, modality="*", filter=""):
        self.key = key
        self.modality = modality
        self.filter = filter

    def matches(self, modality, stationName, calledAE, callingAE):
        return self.modality in ("*", modality)


class QueueTestCase(unittest.TestCase):

    def makeEngine(self):
        return sqliteEngine(self)

    def setUp(self):
        self.engine = self.makeEngine()
        self.index = Index(self.engine, conquestLayout(), TABLE_NAMES)
        self.index.createTables()
        self.clock = FakeClock()
        self.queue = ExportQueue(SyncIndex(self.index), [FakeRule("ExportConverter0", "CT"), FakeRule("ExportConverter1")],
                                 retryDelay=100, maximumRetries=2, collectDelay=600, clock=self.clock)
        self.queue.createTables()

    def store(self, *records):
        with self.engine.begin() as connection:
            for record in records:
                self.index.upsertImage(connection, record)
            return self.queue.enqueueJobs(connection, records)

    def write(self, d):
        """The result of a queue write (the index writer stand-in runs it at once)."""
        return self.successResultOf(d)


class JobTests(QueueTestCase):

    def test_oneJobPerMatchingRule(self):
        ct = makeRecord("1.2.3.1.1")
        ct.callingAE, ct.calledAE = "MODALITY", "PACS"
        mr = makeRecord("1.2.3.2.1", series="1.2.3.2", MODALITY="MR")
        self.assertEqual(self.store(ct, mr), 3)
        jobs = self.queue.dueJobs(self.clock(), 10)
        self.assertEqual([(j.converter, j.sopInstanceUID) for j in jobs],
                         [("ExportConverter0", "1.2.3.1.1"), ("ExportConverter1", "1.2.3.1.1"),
                          ("ExportConverter1", "1.2.3.2.1")])
        self.assertEqual((jobs[0].callingAE, jobs[0].calledAE, jobs[0].deviceName), ("MODALITY", "PACS", "MAG0"))
        self.assertEqual(jobs[2].callingAE, "")  # records without the AE fields still queue

    def test_objectFileNotUTF8(self):
        """A file name of Latin-1 bytes (a surrogate escape in Python, as the
        index keeps it) is queued and read back the same, for an export and
        a mirror copy."""
        latin1 = os.fsdecode(b"PAT1/M\xfcller.dcm")
        self.store(makeRecord("1.2.3.1.1", objectFile=latin1))
        self.assertEqual({job.objectFile for job in self.queue.dueJobs(self.clock(), 10)}, {latin1})
        self.write(self.queue.queueMirrorCopies([("1.2.3.1.2", "MAG0", latin1)]))
        self.assertEqual(self.queue.queuedMirrorCopies("MAG0"), {latin1})

    def test_recordsKeptFromTheConvertersQueueNone(self):
        """Objects a control command rewrote, or added with
        ImportExportDragAndDrop = 0, pass no export converter."""
        record = makeRecord("1.2.3.1.1")
        record.converters = False
        self.assertEqual(self.store(record), 0)
        self.assertEqual(self.queue.dueJobs(self.clock(), 10), [])

    def test_rolledBackTransactionQueuesNothing(self):
        with self.assertRaises(RuntimeError):
            with self.engine.begin() as connection:
                self.queue.enqueueJobs(connection, [makeRecord("1.2.3.1.1")])
                raise RuntimeError("crash before commit")
        self.assertEqual(self.queue.dueJobs(self.clock(), 10), [])

    def test_finishWritesActionsAndDeletesJobInOneTransaction(self):
        self.store(makeRecord("1.2.3.1.1", MODALITY="MR"))
        [job] = self.queue.dueJobs(self.clock(), 10)
        buffer = ActionBuffer(self.queue)
        buffer.addForward("SERVER1", "IMAGE", CT)
        buffer.addForward("VIEWER", "STUDY", CT)
        self.assertEqual(self.queue.due(self.clock(), 10), [])
        self.assertEqual(self.write(self.queue.recordJobs([JobOutcome(job.id, buffer.actions)], self.clock())),
                         [None])
        self.assertEqual(self.queue.dueJobs(self.clock(), 10), [])
        self.assertEqual([a.destination for a in self.queue.due(self.clock(), 10)], ["SERVER1"])

    def test_deferDoesNotCountAnAttempt(self):
        self.store(makeRecord("1.2.3.1.1", MODALITY="MR"))
        [job] = self.queue.dueJobs(self.clock(), 10)
        for _ in range(5):
            self.assertEqual(self.write(self.queue.recordJobs([JobOutcome(job.id, deferred=True)], self.clock())),
                             [PENDING])
            self.assertEqual(self.queue.dueJobs(self.clock.now + 99, 10), [])
            self.clock.now += 100
            [job] = self.queue.dueJobs(self.clock(), 10)
        self.assertEqual(job.attempts, 0)

    def test_failedJobsGiveUpAfterMaximumRetries(self):
        self.store(makeRecord("1.2.3.1.1", MODALITY="MR"))
        [job] = self.queue.dueJobs(self.clock(), 10)
        self.assertEqual(self.failOnce(job), PENDING)
        self.assertEqual(self.failOnce(job), PENDING)
        self.assertEqual(self.failOnce(job), FAILED)
        self.assertEqual(self.queue.dueJobs(self.clock.now + 1000, 10), [])
        self.assertEqual(self.queue.counts()["jobs"], {PENDING: 0, FAILED: 1})
        self.assertEqual(self.write(self.queue.retryFailed()), 1)
        self.assertEqual(len(self.queue.dueJobs(self.clock(), 10)), 1)

    def failOnce(self, job):
        [state] = self.write(self.queue.recordJobs([JobOutcome(job.id, error="boom")], self.clock()))
        return state

    def test_eachKindOfOutcomeIsRecorded(self):
        self.store(makeRecord("1.2.3.1.1"), makeRecord("1.2.3.1.2"))
        jobs = self.queue.dueJobs(self.clock(), 10)
        self.assertEqual(len(jobs), 4)
        buffer = ActionBuffer(self.queue)
        buffer.addForward("SERVER1", "IMAGE", CT)
        outcomes = [JobOutcome(jobs[0].id, buffer.actions), JobOutcome(jobs[1].id, deferred=True),
                    JobOutcome(jobs[2].id, error=OSError("disk on fire")), JobOutcome(jobs[3].id)]
        self.assertEqual(self.write(self.queue.recordJobs(outcomes, self.clock())),
                         [None, PENDING, PENDING, None])
        self.assertEqual(self.queue.dueJobs(self.clock.now + 99, 10), [])
        self.assertEqual([(j.id, j.attempts) for j in self.queue.dueJobs(self.clock.now + 100, 10)],
                         [(jobs[1].id, 0), (jobs[2].id, 1)])
        self.assertEqual([a.destination for a in self.queue.due(self.clock(), 10)], ["SERVER1"])


class FilterTests(QueueTestCase):

    def test_exportFilterSeesImageSeriesAndStudyColumns(self):
        self.store(makeRecord("1.2.3.1.1", ROWS="512"))
        self.assertTrue(self.queue.filterMatches("1.2.3.1.1", "Rows = 512 and Modality = 'CT'"))
        self.assertTrue(self.queue.filterMatches("1.2.3.1.1", "StudyDate LIKE '2024%'"))
        self.assertFalse(self.queue.filterMatches("1.2.3.1.1", "Rows = 256"))
        self.assertFalse(self.queue.filterMatches("9.9.9", "Rows = 512"))
        self.assertTrue(self.queue.filterMatches("1.2.3.1.1", ""))

    def test_exportFilterTakesNamesCutShort(self):
        """Conquest's column names cut to TruncateFieldNames characters."""
        self.store(makeRecord("1.2.3.1.1"))
        self.assertTrue(self.queue.filterMatches("1.2.3.1.1", "ImageNumbe = '1' AND Modality = 'CT'"))
        self.assertFalse(self.queue.filterMatches("1.2.3.1.1", "ImageNumbe = '2'"))

    def test_brokenFilterIsLoggedNonMatch(self):
        self.store(makeRecord("1.2.3.1.1"))
        self.assertFalse(self.queue.filterMatches("1.2.3.1.1", "NoSuchColumn = 1"))
        self.assertTrue(self.flushLoggedErrors() == [])


class ActionTests(QueueTestCase):

    def test_imageForwardIsDueAtOnce(self):
        self.queue.addForward("SERVER1", "IMAGE", CT, "J2")
        [action] = self.queue.due(self.clock(), 10)
        self.assertEqual((action.action, action.destination, action.level, action.target, action.compression),
                         ("forward", "SERVER1", "IMAGE", CT, "j2"))

    def test_overlongValuesCutAsTheIndexCutsThem(self):
        """A 70-character Patient ID is cut to its column, as the index cuts
        it (MariaDB's strict mode refused the row, and the store with it)."""
        target = CT._replace(patientID="P" * 70)
        self.queue.addForward("SERVER1", "PATIENT", target)
        [action] = self.queue.due(self.clock.now + 600, 10)
        self.assertEqual(action.target.patientID, "P" * 64)

    def test_objectPathOnlyWhereTheIndexKeepsNoRows(self):
        """An image action keeps its file only with ``objectPaths`` (the
        NULL driver's index cannot find it); collected ones never."""
        self.queue.addForward("A", "IMAGE", CT, objectPath="/data/PAT1/ct.dcm")
        self.queue.objectPaths = lambda device, objectFile: f"/{device}/{objectFile}"
        self.queue.addForward("B", "IMAGE", CT, objectPath="/data/PAT1/ct.dcm")
        self.queue.addForward("C", "STUDY", CT, objectPath="/data/PAT1/ct.dcm")
        due = self.queue.due(self.clock.now + 600, 10)
        self.assertEqual(sorted((a.destination, a.objectPath) for a in due),
                         [("A", ""), ("B", "/data/PAT1/ct.dcm"), ("C", "")])

    def test_objectPathNotUTF8(self):
        latin1 = os.fsdecode(b"/data/PAT1/M\xfcller.dcm")
        self.queue.objectPaths = lambda device, objectFile: objectFile
        self.queue.addForward("A", "IMAGE", CT, objectPath=latin1)
        self.assertEqual([a.objectPath for a in self.queue.due(self.clock.now + 600, 10)], [latin1])

    def test_tableOfAnOlderVersionIsUpgraded(self):
        """It gets ObjectPath, and its times (single precision FLOAT on
        MySQL, to the nearest 128 s) become DOUBLE."""
        forwards = self.queue.forwards
        older = Table(forwards.name, MetaData(), *(Column(c.name, Float, nullable=False) if isinstance(c.type, Double)
                                                   else c._copy() for c in forwards.columns if c.name != "ObjectPath"),
                      **MYSQL_TABLE)
        with self.engine.begin() as connection:
            forwards.drop(connection)
            older.create(connection)
            row = self.queue.actionRow("OLD", "IMAGE", CT)
            del row["ObjectPath"]
            connection.execute(older.insert(), row)
        self.queue.createTables()
        self.queue.createTables()
        self.queue.objectPaths = lambda device, objectFile: f"/{device}/{objectFile}"
        self.clock.now = 1_800_000_000.25
        self.queue.addForward("NEW", "IMAGE", CT, objectPath="/data/ct.dcm", notBefore=self.clock.now + 100)
        self.assertEqual([a.destination for a in self.queue.due(self.clock.now + 99.5, 10)], ["OLD"])
        self.assertEqual(sorted((a.destination, a.objectPath) for a in self.queue.due(self.clock.now + 100, 10)),
                         [("NEW", "/data/ct.dcm"), ("OLD", "")])

    def test_aDueActionCollectsNothing(self):
        """A due action may be under way, its objects already looked up:
        a request for the same study then gets a row of its own, which
        stays when the first is done."""
        self.queue.addForward("VIEWER", "STUDY", CT)
        self.clock.now += 600
        [first] = self.queue.due(self.clock(), 10)
        self.queue.addForward("VIEWER", "STUDY", CT._replace(sopInstanceUID="1.2.3.1.2"))
        self.write(self.queue.markDone([first.id]))
        self.assertEqual(self.queue.due(self.clock.now + 599, 10), [])
        [second] = self.queue.due(self.clock.now + 600, 10)
        self.assertNotEqual(second.id, first.id)

    def test_aGetUnderWayCollectsTheGetsItsObjectsAskFor(self):
        """``preretrieve``: the objects a get brings in ask for the same get
        (their import lines run too); collected into it, they do not start
        it over once it is done."""
        self.queue.addForward("SRC", "PATIENT", CT, action="get")
        self.clock.now += 600
        [running] = self.queue.due(self.clock(), 10)
        self.queue.addForward("SRC", "PATIENT", CT._replace(sopInstanceUID="1.2.3.1.2"), action="get")
        self.write(self.queue.markDone([running.id]))
        self.assertEqual(self.queue.due(self.clock.now + 10000, 10), [])

    def test_aRetriedGetCollectsTheGetsItsObjectsAskFor(self):
        """A get that failed once is under way again (or waiting for its
        retry): the gets its objects ask for are collected into it too,
        else the whole patient is retrieved a second time."""
        self.queue.addForward("SRC", "PATIENT", CT, action="get")
        self.clock.now += 600
        [first] = self.queue.due(self.clock(), 10)
        self.assertEqual(self.write(self.queue.markFailed(first.id, "refused", self.clock())), PENDING)
        self.queue.addForward("SRC", "PATIENT", CT._replace(sopInstanceUID="1.2.3.1.2"), action="get")
        self.clock.now += 600
        [running] = self.queue.due(self.clock(), 10)
        self.assertEqual((running.id, running.attempts), (first.id, 1))
        self.queue.addForward("SRC", "PATIENT", CT._replace(sopInstanceUID="1.2.3.1.3"), action="get")
        self.write(self.queue.markDone([running.id]))
        self.assertEqual(self.queue.due(self.clock.now + 10000, 10), [])

    def test_dueActionsLeaveInArrivalOrder(self):
        """The script workers each run part of a batch of jobs and stamp
        their actions with the time they run, so those times interleave;
        the actions still leave in the order of their jobs, keeping the
        objects of a study together (ForwardAssociationLevel)."""
        buffers = [ActionBuffer(self.queue) for _ in range(4)]
        for job, now in ((0, 1000.0), (2, 1000.1), (1, 1000.2), (3, 1000.3)):  # two workers, jobs 0-1 and 2-3
            self.clock.now = now
            buffers[job].addForward("A", "IMAGE", CT._replace(sopInstanceUID=f"1.2.3.1.{job}"))
        for job, buffer in enumerate(buffers):
            self.write(self.queue.recordJobs([JobOutcome(job, tuple(buffer.actions))], self.clock()))
        self.assertEqual([a.target.sopInstanceUID for a in self.queue.due(self.clock(), 10)],
                         [f"1.2.3.1.{job}" for job in range(4)])

    def test_aDeleteWaitsForEarlierForwardsOfItsPatient(self):
        """Until a forward or get queued before it for the same patient has
        left the table (delivered), even when it failed for good."""
        self.queue.addForward("X", "STUDY", CT, notBefore=self.clock())
        self.queue.addForward("", "STUDY", CT, notBefore=self.clock(), action="delete")
        self.queue.addForward("", "STUDY", Target("PAT2", "1.2.4", "1.2.4.1", "1.2.4.1.1"), notBefore=self.clock(),
                              action="delete")
        self.queue.addForward("", "STUDY", CT, notBefore=self.clock(), action="process")
        due = self.queue.due(self.clock(), 10)
        self.assertEqual([(a.action, a.target.patientID) for a in due],
                         [("forward", "PAT1"), ("delete", "PAT2"), ("process", "PAT1")])
        forward = due[0]
        for _ in range(3):
            self.write(self.queue.markFailed(forward.id, "down", self.clock()))
        self.assertEqual([a.action for a in self.queue.due(self.clock.now + 10000, 10)], ["delete", "process"])
        self.write(self.queue.markDone([forward.id]))
        self.assertEqual([a.action for a in self.queue.due(self.clock(), 10)], ["delete", "delete", "process"])

    def test_anEmptyKeyIsRefused(self):
        """A patient action of an object without Patient ID would select every object."""
        for level, target in (("PATIENT", CT._replace(patientID="")), ("STUDY", CT._replace(studyInstanceUID=" "))):
            self.assertRaises(ValueError, self.queue.addForward, "A", level, target)
        self.assertEqual(self.queue.due(self.clock.now + 600, 10), [])

    def test_studyForwardsAreCollected(self):
        """Objects of one study give one row, due ForwardCollectDelay after the last."""
        for n in range(5):
            self.queue.addForward("VIEWER", "STUDY", CT._replace(sopInstanceUID=f"1.2.3.1.{n}"))
            self.clock.now += 10
        self.queue.addForward("VIEWER", "STUDY", CT._replace(studyInstanceUID="1.2.4"))
        self.assertEqual(self.queue.due(self.clock.now + 589, 10), [])
        [action] = self.queue.due(self.clock.now + 590, 10)
        self.assertEqual(action.target.studyInstanceUID, "1.2.3")
        self.assertEqual(len(self.queue.due(self.clock.now + 600, 10)), 2)
        self.assertEqual(self.queue.counts()["destinations"], {"VIEWER": {PENDING: 2, FAILED: 0}})

    def test_differentFiltersOrDestinationsAreNotCollected(self):
        self.queue.addForward("A", "STUDY", CT, filters={"modality": "CT"})
        self.queue.addForward("A", "STUDY", CT, filters={"modality": "MR"})
        self.queue.addForward("B", "STUDY", CT, filters={"modality": "CT"})
        self.queue.addForward("A", "STUDY", CT, action="get", filters={"modality": "CT"})
        self.assertEqual(len(self.queue.due(self.clock.now + 600, 10)), 4)

    def test_explicitNotBefore(self):
        self.queue.addForward("A", "IMAGE", CT, notBefore=self.clock.now + 30)
        self.assertEqual(self.queue.due(self.clock.now + 29, 10), [])
        self.assertEqual(len(self.queue.due(self.clock.now + 30, 10)), 1)

    def test_retryTimingAndMaximumRetries(self):
        self.queue.addForward("A", "IMAGE", CT)
        [action] = self.queue.due(self.clock(), 10)
        self.assertEqual(self.write(self.queue.markFailed(action.id, ConnectionRefusedError("down"), self.clock())), PENDING)
        self.assertEqual(self.queue.due(self.clock.now + 99, 10), [])
        [again] = self.queue.due(self.clock.now + 100, 10)
        self.assertEqual(again.attempts, 1)
        self.write(self.queue.markFailed(action.id, "down", self.clock()))
        self.assertEqual(self.write(self.queue.markFailed(action.id, "still down", self.clock())), FAILED)
        self.assertEqual(self.queue.due(self.clock.now + 10000, 10), [])
        [(failed, error)] = self.queue.failedActions("A")
        self.assertEqual((failed.id, error), (action.id, "still down"))
        self.assertEqual(self.queue.counts()["actions"], {PENDING: 0, FAILED: 1})

    def test_aForwardWaitingForItsRetryCollectsLaterObjects(self):
        """Objects of a series whose forward failed once join that forward
        (due at the later of its retry and their collect delay), so the
        destination gets each object once."""
        self.queue.addForward("A", "SERIES", CT)
        self.clock.now += 600
        [action] = self.queue.due(self.clock(), 10)
        self.write(self.queue.markFailed(action.id, "down", self.clock()))
        self.clock.now += 50
        self.queue.addForward("A", "SERIES", CT._replace(sopInstanceUID="1.2.3.1.2"))
        self.assertEqual(self.queue.due(self.clock.now + 599, 10), [])
        [again] = self.queue.due(self.clock.now + 600, 10)
        self.assertEqual((again.id, again.attempts), (action.id, 1))
        self.assertEqual(self.queue.counts()["actions"], {PENDING: 1, FAILED: 0})

    def test_aCollectedImageForwardKeepsItsRetryTime(self):
        """The same image forwarded again while its forward waits for the
        retry is collected into it, still due only at the retry."""
        self.queue.addForward("A", "IMAGE", CT)
        [action] = self.queue.due(self.clock(), 10)
        self.write(self.queue.markFailed(action.id, "down", self.clock()))
        self.clock.now += 50
        self.queue.addForward("A", "IMAGE", CT)
        self.assertEqual(self.queue.due(self.clock.now + 49, 10), [])
        self.assertEqual([a.id for a in self.queue.due(self.clock.now + 50, 10)], [action.id])

    def test_retryByHand(self):
        for destination in ("A", "B"):
            self.queue.addForward(destination, "IMAGE", CT)
        for action in self.queue.due(self.clock(), 10):
            for _ in range(3):
                self.write(self.queue.markFailed(action.id, "down", self.clock()))
        self.assertEqual(self.write(self.queue.retryFailed("A")), 1)
        [action] = self.queue.due(self.clock(), 10)
        self.assertEqual((action.destination, action.attempts), ("A", 0))
        self.assertEqual(self.queue.counts()["destinations"]["B"], {PENDING: 0, FAILED: 1})

    def test_doneActionsGo(self):
        self.queue.addForward("A", "IMAGE", CT)
        [action] = self.queue.due(self.clock(), 10)
        self.write(self.queue.markDone([action.id]))
        self.assertEqual(self.queue.due(self.clock(), 10), [])
        self.assertEqual(self.queue.counts()["actions"], {PENDING: 0, FAILED: 0})

    def test_skippedLanes(self):
        """``skip`` names destinations, and ``LOCAL`` for the local actions:
        a forward to an empty destination is not one of those."""
        self.queue.addForward("A", "IMAGE", CT)
        self.queue.addForward("B", "IMAGE", CT)
        self.queue.addForward("", "IMAGE", CT)
        self.queue.addForward("", "IMAGE", CT, action="prefetch")
        self.assertEqual([(a.action, a.destination) for a in self.queue.due(self.clock(), 10, skip={"A", LOCAL})],
                         [("forward", "B"), ("forward", "")])
        self.assertEqual([(a.action, a.destination) for a in self.queue.due(self.clock(), 10, skip={"A", ""})],
                         [("forward", "B"), ("prefetch", "")])

    def test_zeroRetriesMeansForever(self):
        self.queue.maximumRetries = None
        self.queue.addForward("A", "IMAGE", CT)
        [action] = self.queue.due(self.clock(), 10)
        for _ in range(50):
            self.assertEqual(self.write(self.queue.markFailed(action.id, "down", self.clock())), PENDING)

    def test_delayedActionsUseTheirOwnLimit(self):
        self.queue.delayedRetries = 0
        self.queue.addForward("A", "PATIENT", CT)
        self.queue.addForward("A", "IMAGE", CT)
        byLevel = {action.level: action for action in self.queue.due(self.clock.now + 600, 10)}
        patient, image = byLevel["PATIENT"], byLevel["IMAGE"]
        self.assertEqual(self.write(self.queue.markFailed(patient.id, "down", self.clock())), FAILED)
        self.assertEqual(self.write(self.queue.markFailed(image.id, "down", self.clock())), PENDING)

    def test_survivesANewQueueObject(self):
        """What is queued is in the database: a restarted server finds it."""
        self.queue.addForward("A", "IMAGE", CT)
        restarted = ExportQueue(self.index, clock=self.clock)
        restarted.createTables()
        self.assertEqual([a.destination for a in restarted.due(self.clock(), 10)], ["A"])


class ConfigurationTests(unittest.TestCase):

    def ini(self, text):
        return DicomIni.fromString("[sscscp]\n" + text)

    def test_retryLimit(self):
        self.assertEqual(retryLimit(self.ini(""), "MaximumExportRetries", 5), 5)
        self.assertIsNone(retryLimit(self.ini("MaximumExportRetries = 0\n"), "MaximumExportRetries", 5))
        self.assertEqual(retryLimit(self.ini("MaximumExportRetries = 7\n"), "MaximumExportRetries", 5), 7)

    def test_fromConfiguration(self):
        ini = self.ini("RetryDelay = 30\nMaximumExportRetries = 0\nMaximumDelayedFetchForwardRetries = 2\n"
                       "ForwardCollectDelay = 20\n")
        index = SimpleNamespace(engine=None)
        queue = ExportQueue.fromConfiguration(index, SimpleNamespace(ini=ini))
        self.assertEqual((queue.retryDelay, queue.maximumRetries, queue.delayedRetries, queue.collectDelay),
                         (30, None, 2, 20))

    def test_retriesForeverByDefault(self):
        """Without MaximumExportRetries (a Conquest dicom.ini may lack it)
        failed forwards are retried forever, as Conquest's default 0 does
        ("If other than 0, exportconverters give up after this number of
        retries, default 0"), collected ones too unless
        MaximumDelayedFetchForwardRetries limits them."""
        index = SimpleNamespace(engine=None)
        for text, expected in (("", (100, None, None, 600)), ("RetryForwardFailed = 1\n", (100, None, None, 600)),
                               ("MaximumDelayedFetchForwardRetries = 3\n", (100, None, 3, 600)),
                               ("MaximumExportRetries = 2\n", (100, 2, 2, 600))):
            queue = ExportQueue.fromConfiguration(index, SimpleNamespace(ini=self.ini(text)))
            self.assertEqual((queue.retryDelay, queue.maximumRetries, queue.delayedRetries, queue.collectDelay),
                             expected, text)
