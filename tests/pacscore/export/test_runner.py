"""The ExportService (pacscore.export.runner) with synchronous pools, a
task.Clock and a stand-in forwarder: export jobs, defer, retries,
FailHoldOff per destination, counters."""

import functools
import os

import pydicom
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs, formatEvent, globalLogPublisher
from twisted.trial import unittest

from pacscore.config.acrnema import AcrNemaMap
from pacscore.converters.context import ConverterServices, Outcome
from pacscore.converters.registry import CommandRegistry
from pacscore.converters.script import parseScript
from pacscore.db.index import ImageRecord
from pacscore.db.query import SOP_INSTANCE_UID, QueryKey
from pacscore.dicom.commands import AFFECTED_SOP_INSTANCE_UID
from pacscore.export.actions import LocalActions
from pacscore.dicom.datasets import decodeDataset
from pacscore.export.forwarder import Forwarder as RealForwarder, ForwardError, Interrupted, Undelivered
from pacscore.export.queue import FAILED, ExportQueue, Target
from pacscore.export.runner import ExportService
from pacscore.export.spool import SPOOL_FOLDER
from pacscore.storage.devices import MagDevice
from pacscore.storage.mirror import Mirrors
from pacscore.storage.reader import ObjectReader, currentInstance
from tests.pacscore.export.fixtures import MR_STORAGE, TAGS, Acceptor, Archive, SyncWorkers


class Reactor(task.Clock):
    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class Script:
    def __init__(self, body):
        self.body = body
        self.contexts = []

    def run(self, context):
        self.contexts.append(context)
        return self.body(context)


class Rule:
    def __init__(self, key, script, filter=""):
        self.key = key
        self.script = script
        self.filter = filter

    def matches(self, modality, stationName, calledAE, callingAE):
        return True


class Forwarder:
    """Delivers to every destination but those in ``down``; leaves the
    objects in ``refused`` out (``Undelivered``)."""

    def __init__(self):
        self.down = set()
        self.refused = set()
        self.delivered = []
        self.query = None
        self.interrupted = False

    def interrupt(self):
        self.interrupted = True

    def locate(self, actions):
        return defer.succeed([None] * len(actions))

    async def forward(self, action, found=None):
        if action.destination in self.down:
            raise ForwardError(f"{action.destination} is down")
        if action.target.sopInstanceUID in self.refused:
            raise Undelivered(action.destination, 0, [], [f"{action.target.sopInstanceUID} refused"])
        self.delivered.append((action.destination, action.target.sopInstanceUID))
        return 1

    async def get(self, action):
        return await self.forward(action)

    async def closeAll(self):
        pass


def forwardTo(destination):
    def body(context):
        context.services.exportQueue.addForward(destination, "IMAGE", Target(
            context.dataset.PatientID, context.dataset.StudyInstanceUID, context.dataset.SeriesInstanceUID,
            context.dataset.SOPInstanceUID))
        return Outcome.CONTINUE
    return body


class RunnerTests(unittest.TestCase):

    def setUp(self):
        self.reactor = Reactor()
        self.archive = Archive(self)
        self.forwarder = Forwarder()
        self.counters = {}
        self.script = Script(forwardTo("B"))
        self.rules = [Rule("ExportConverter0", self.script)]
        self.queue = ExportQueue(self.archive.syncIndex, self.rules, retryDelay=100, maximumRetries=2,
                                 clock=self.reactor.seconds)
        self.queue.createTables()
        local = LocalActions(self.archive.syncIndex, self.archive.query, self.archive.reader, SyncWorkers())
        self.service = ExportService(self.queue, self.forwarder, local, ConverterServices(counters=self.counters),
                                     self.rules, self.archive.reader, self.reactor, SyncWorkers(), SyncWorkers(),
                                     failHoldOff=60)
        self.addCleanup(self.stop)

    def stop(self):
        if self.service.running:
            return self.service.stopService()

    def receive(self, sop, callingAE="MODALITY"):
        ds = self.archive.add("PAT1", "1.2.3", "1.2.3.1", sop)
        record = ImageRecord({tag: str(ds.get(keyword, "")) for keyword, tag in TAGS.items()}, "MAG0",
                             f"PAT1/{sop}.dcm")
        record.callingAE = callingAE
        with self.archive.index.engine.begin() as connection:
            self.queue.enqueueJobs(connection, [record])

    def test_jobRunsItsLineAndItsForwardIsDelivered(self):
        self.receive("1.2.3.1.1")
        self.service.startService()
        self.assertEqual(self.forwarder.delivered, [("B", "1.2.3.1.1")])
        [context] = self.script.contexts
        self.assertEqual((context.kind, context.callingAE, context.converterName, context.storageDevice),
                         ("export", "MODALITY", "ExportConverter0", "MAG0"))
        self.assertTrue(context.filename.endswith("PAT1/1.2.3.1.1.dcm"))
        self.assertEqual(self.queue.dueJobs(1e12, 10), [])
        self.assertEqual(self.counters["forwardsSent"], 1)

    def test_databaseDownIsOneLineWithoutTraceback(self):
        """The index database refusing (its server down) is logged as one
        error line, no traceback, and polled again; work resumes after."""
        events = []
        observer = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        dueJobs = self.queue.dueJobs

        def down(*args):
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        self.queue.dueJobs = down
        self.service.startService()
        [event] = [e for e in events if "export queue poll failed" in e.get("log_format", "")]
        self.assertNotIn("log_failure", event)
        self.assertIn("connection refused", formatEvent(event))
        self.queue.dueJobs = dueJobs
        self.receive("1.2.3.1.1")
        self.service.kick()
        self.assertEqual(self.forwarder.delivered, [("B", "1.2.3.1.1")])

    def test_databaseDownBacksOffAndLogsOncePerOutage(self):
        """While the index database stays down the loop's polls back off
        (the interval doubles up to pollBackoffCeiling) and the outage is
        one error line, plus one line when the polls answer again, after
        which the loop polls at its usual pace."""
        polls = []
        dueJobs = self.queue.dueJobs

        def down(*args):
            polls.append(self.reactor.seconds())
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        self.queue.dueJobs = down
        with capturedLogs() as events:
            self.service.startService()
            for _ in range(600):  # 5 minutes
                self.reactor.advance(0.5)
            failed = [e for e in events if "export queue poll failed" in e.get("log_format", "")]
            self.assertEqual(len(failed), 1)
            self.assertLess(len(polls), 300 / self.service.pollBackoffCeiling + 10)  # not 600
            gaps = [later - earlier for earlier, later in zip(polls, polls[1:])]
            self.assertEqual(max(gaps), self.service.pollBackoffCeiling)
            self.queue.dueJobs = dueJobs
            self.receive("1.2.3.1.1")
            self.reactor.advance(self.service.pollBackoffCeiling)
            self.assertEqual(self.forwarder.delivered, [("B", "1.2.3.1.1")])
            [recovered] = [e for e in events if "export queue polls answer again" in e.get("log_format", "")]
            self.assertIn("connection refused", formatEvent(recovered))
        self.queue.dueJobs = down
        before = len(polls)
        self.reactor.advance(0.5)
        self.assertEqual(len(polls), before + 1)  # the pace is back to pollInterval

    def refuseWrites(self, name):
        """The queue's ``name`` write fails as SQLite's does on a full disk,
        until the returned function is called; the times it was tried."""
        tries, write = [], getattr(self.queue, name)

        def refused(*args):
            tries.append(self.reactor.seconds())
            return defer.fail(OperationalError("DELETE", {}, Exception("database or disk is full")))
        setattr(self.queue, name, refused)
        return tries, functools.partial(setattr, self.queue, name, write)

    def assertWritesRefusedLoggedOnce(self, events):
        """One warning without traceback when the writes begin to fail,
        one line when they are taken again."""
        [refused] = [e for e in events if "takes no export queue writes" in e.get("log_format", "")]
        self.assertNotIn("log_failure", refused)
        self.assertIn("database or disk is full", formatEvent(refused))
        [back] = [e for e in events if "takes export queue writes again" in e.get("log_format", "")]
        self.assertIn("database or disk is full", formatEvent(back))
        self.assertFalse([e for e in events if "log_failure" in e])

    def test_aJobWhoseRecordFailsIsNotRunAgain(self):
        """A job whose outcome the index database refuses to record (its
        disk full) ran again at every poll, logged with a traceback each
        time: it is now remembered as run, only its record is tried again,
        at the polls' growing intervals, and written once the database
        takes writes; the condition is logged once, and once its end."""
        tries, restore = self.refuseWrites("recordJobs")
        self.receive("1.2.3.1.1")
        with capturedLogs() as events:
            self.service.startService()
            for _ in range(120):  # a minute
                self.reactor.advance(0.5)
            self.assertEqual(len(self.script.contexts), 1)
            self.assertLess(len(tries), 60 / self.service.pollBackoffCeiling + 6)  # not 120
            self.assertEqual(len(self.queue.dueJobs(1e12, 10)), 1)
            restore()
            self.reactor.advance(self.service.pollBackoffCeiling)
            self.assertEqual(self.queue.dueJobs(1e12, 10), [])
            self.assertEqual(len(self.script.contexts), 1)
            self.assertEqual(self.forwarder.delivered, [("B", "1.2.3.1.1")])  # the action the record queued
            self.assertWritesRefusedLoggedOnce(events)

    def test_anActionWhoseRemovalFailsIsNotSentAgain(self):
        """A delivered action whose removal the index database refused was
        sent again at once, over and over: it is now remembered as
        delivered, its removal tried again at growing intervals, and
        nothing new goes out meanwhile."""
        tries, restore = self.refuseWrites("markDone")
        self.queue.addForward("B", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "b0"))
        with capturedLogs() as events:
            self.service.startService()
            self.queue.addForward("C", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "c0"))
            for _ in range(120):
                self.reactor.advance(0.5)
            self.assertEqual(self.forwarder.delivered, [("B", "b0")])
            self.assertLess(len(tries), 60 / self.service.pollBackoffCeiling + 6)
            restore()
            self.reactor.advance(self.service.pollBackoffCeiling)
            self.assertEqual(self.forwarder.delivered, [("B", "b0"), ("C", "c0")])
            self.assertEqual(self.queue.due(1e12, 10), [])
            self.assertWritesRefusedLoggedOnce(events)
        before = len(self.forwarder.delivered)
        self.queue.addForward("B", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "b1"))
        self.reactor.advance(0.5)  # the pace is back to pollInterval
        self.assertEqual(len(self.forwarder.delivered), before + 1)

    def test_aFailedForwardWhoseRecordFailsIsNotSentAgain(self):
        """A forward a destination refuses for good (given up at once) whose
        failure the index database refused to record escaped its lane: the
        lane polled again at once and sent it over and over (a study forward
        with all its objects, the delivered ones too), a traceback each time.  The failed attempt
        is now remembered, kept out of the polls, and written first once
        the database takes writes; nothing goes out meanwhile."""
        tries, restore = self.refuseWrites("markFailed")
        self.forwarder.refused.add("b1")
        for n in range(3):
            self.queue.addForward("B", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", f"b{n}"))
        with capturedLogs() as events:
            self.service.startService()
            for _ in range(40):  # 20 s
                self.reactor.advance(0.5)
            self.assertEqual(self.forwarder.delivered, [("B", "b0"), ("B", "b2")])
            self.assertLess(len(tries), 20 / self.service.pollBackoffCeiling + 6)
            self.assertEqual(self.counters["forwardsFailed"], 1)
            restore()
            self.reactor.advance(self.service.pollBackoffCeiling)
            self.assertEqual(self.forwarder.delivered, [("B", "b0"), ("B", "b2")])
            self.assertEqual(self.queue.due(1e12, 10), [])
            [(action, error)] = self.queue.failedActions()
            self.assertEqual(action.target.sopInstanceUID, "b1")
            self.assertIn("b1 refused", error)
            self.assertWritesRefusedLoggedOnce(events)

    def test_aForwardToADownDestinationWhoseFailureIsNotRecordedHoldsItsLaneOff(self):
        """A forward to a destination that is down, its failure not recorded
        (the index database refusing writes), was tried again at every poll
        with a traceback each time: its lane is now held off for
        FailHoldOff, and the failed attempt written once the database takes
        writes, the forward then tried again RetryDelay after it."""
        tries, restore = self.refuseWrites("markFailed")
        self.forwarder.down.add("A")
        self.queue.addForward("A", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "a0"))
        self.queue.addForward("A", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "a1"))
        with capturedLogs() as events:
            self.service.startService()
            for _ in range(40):  # 20 s
                self.reactor.advance(0.5)
            self.assertEqual(self.counters["forwardsFailed"], 1)
            self.assertLess(len(tries), 20 / self.service.pollBackoffCeiling + 6)
            restore()
            self.forwarder.down.clear()
            self.reactor.advance(self.service.pollBackoffCeiling)
            self.assertEqual(self.forwarder.delivered, [])  # FailHoldOff (60 s) from the failure
            self.reactor.advance(60 - 20 - self.service.pollBackoffCeiling + 0.5)
            self.assertEqual(self.forwarder.delivered, [("A", "a1")])
            self.reactor.advance(40)  # RetryDelay (100 s) after the failure
            self.assertEqual(self.forwarder.delivered, [("A", "a1"), ("A", "a0")])
            self.assertWritesRefusedLoggedOnce(events)

    def failLookUps(self, error):
        """The stand-in forwarder's look-ups (its lane's and each forward's
        own) fail with ``error`` until the returned function is called."""
        locate, forward = self.forwarder.locate, self.forwarder.forward

        async def failing(action, found=None):
            raise error
        self.forwarder.locate = lambda actions: defer.fail(error)
        self.forwarder.forward = failing

        def restore():
            self.forwarder.locate, self.forwarder.forward = locate, forward
        return restore

    def test_theIndexDatabaseDownAsALaneLooksUpIsNotTheDestinationsFailure(self):
        """PostgreSQL restarting as a lane looked its forwards up was logged
        CRITICAL with a traceback, and each forward, looking itself up,
        failed alike: B was held off for FailHoldOff and an attempt counted
        (given up with MaximumExportRetries).  Now the forwards stay queued,
        no attempt counted, B not held off, one warning line for the outage
        (and one at its end); the lanes are tried again at the polls'
        growing intervals, and the forwards go within pollBackoffCeiling of
        the database answering again."""
        restore = self.failLookUps(OperationalError(
            "SELECT", {}, Exception("terminating connection due to administrator command"),
            connection_invalidated=True))
        lookUps = []
        failingForward = self.forwarder.forward

        async def counted(action, found=None):
            lookUps.append(self.reactor.seconds())
            return await failingForward(action, found)
        self.forwarder.forward = counted
        for n in range(2):
            self.queue.addForward("B", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", f"b{n}"))
        with capturedLogs() as events:
            self.service.startService()
            self.forwarder.locate = lambda actions: defer.succeed([None] * len(actions))  # each forward's fails
            for _ in range(120):  # a minute
                self.reactor.advance(0.5)
            self.assertLess(len(lookUps), 60 / self.service.pollBackoffCeiling + 6)  # not 120
            self.assertEqual(self.service.heldOff.held(), set())
            self.assertEqual([action.attempts for action in self.queue.due(1e12, 10)], [0, 0])
            self.assertNotIn("forwardsFailed", self.counters)
            restore()
            self.reactor.advance(self.service.pollBackoffCeiling)
            self.assertEqual(self.forwarder.delivered, [("B", "b0"), ("B", "b1")])
            self.assertEqual(self.queue.due(1e12, 10), [])
        self.assertFalse([event for event in events if "log_failure" in event or event["log_level"] > LogLevel.warn])
        lines = [formatEvent(event) for event in events if event["log_level"] >= LogLevel.info]
        self.assertEqual(lines[0], "the index database failed as 2 action(s) to B were looked up or sent (terminating "
                         "connection due to administrator command): they stay queued, no attempt counted, B not held "
                         "off; the export lanes try again at growing intervals (at most 5 s) until it answers")
        self.assertEqual(len(lines), 2)
        self.assertIn("the index database answers the export lanes again, after failing for 6", lines[1])
        before = len(self.forwarder.delivered)
        self.queue.addForward("B", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "b2"))
        self.reactor.advance(0.5)  # the pace is back to pollInterval
        self.assertEqual(len(self.forwarder.delivered), before + 1)

    def test_anIndexDatabaseErrorThatWouldRecurIsAnAttemptButHoldsNothingOff(self):
        """An index database error that is no outage (here an SQL error: a
        retry at once would fail alike) counts an attempt, retried after
        RetryDelay, in a line without traceback; the lane is not held off."""
        restore = self.failLookUps(ProgrammingError("SELECT", {}, Exception('column "x" does not exist')))
        self.queue.addForward("B", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "b0"))
        with capturedLogs() as events:
            self.service.startService()
        self.assertEqual(self.counters["forwardsFailed"], 1)
        self.assertEqual(self.service.heldOff.held(), set())
        self.assertFalse([event for event in events if "log_failure" in event])
        self.assertIn("forward of image b0 to B failed: the index database: column \"x\" does not exist; will retry "
                      "(an index database error, not B's: its other actions go on)",
                      [formatEvent(event) for event in events])
        restore()
        self.reactor.advance(100)  # RetryDelay
        self.assertEqual(self.forwarder.delivered, [("B", "b0")])

    def test_anExportJobWhoseFileIsAwayWhileIndexedIsRetriedNotDropped(self):
        """The file of a job's object gone while the index still names it
        and no delete removes it (its data disk not mounted) dropped the
        job ('... is gone: export job of ... dropped'): it now fails, to be
        run after RetryDelay; one whose object was deleted is dropped."""
        self.archive.reader.current = functools.partial(currentInstance, self.archive.index, self.archive.query)
        self.receive("1.2.3.1.1")
        self.receive("1.2.3.1.2")
        path = os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm")
        os.rename(path, path + ".away")
        self.successResultOf(self.service.local.deleteMatching([QueryKey(SOP_INSTANCE_UID, "UI", "1.2.3.1.2")]))
        with capturedLogs() as events:
            self.service.startService()
        self.assertEqual(self.script.contexts, [])
        [job] = self.queue.dueJobs(1e12, 10)
        self.assertEqual((job.sopInstanceUID, job.attempts), ("1.2.3.1.1", 1))
        lines = [formatEvent(event) for event in events]
        self.assertIn("ExportConverter0: PAT1/1.2.3.1.2.dcm is gone: export job of 1.2.3.1.2 dropped", lines)
        self.assertTrue([line for line in lines if line.startswith("ExportConverter0: export of 1.2.3.1.1 failed")
                         and "; will retry" in line], lines)
        os.rename(path + ".away", path)
        self.reactor.advance(100)  # RetryDelay
        self.assertEqual(self.forwarder.delivered, [("B", "1.2.3.1.1")])
        self.assertEqual(self.queue.dueJobs(1e12, 10), [])

    def test_kickRunsNewWorkAtOnce(self):
        self.service.startService()
        self.receive("1.2.3.1.1")
        self.service.kick()
        self.assertEqual(self.forwarder.delivered, [("B", "1.2.3.1.1")])

    def test_deferRunsTheLineAgainAfterRetryDelay(self):
        outcomes = [Outcome.DEFER, Outcome.CONTINUE]
        self.script.body = lambda context: outcomes.pop(0)
        self.receive("1.2.3.1.1")
        self.service.startService()
        self.assertEqual(len(self.script.contexts), 1)
        self.reactor.advance(99.5)
        self.assertEqual(len(self.script.contexts), 1)
        self.reactor.advance(0.5)
        self.assertEqual(len(self.script.contexts), 2)
        self.assertEqual(self.queue.dueJobs(1e12, 10), [])

    def test_failingLineIsRetried(self):
        def body(context):
            raise OSError("disk on fire")
        self.script.body = body
        self.receive("1.2.3.1.1")
        self.service.startService()
        [job] = self.queue.dueJobs(1e12, 10)
        self.assertEqual(job.attempts, 1)

    def test_jobsEndingWhileOneIsRecordedAreRecordedTogether(self):
        """A lane's outcomes go to the index writer one write at a time:
        those ending while one is written go together in the next."""
        writes, held = [], defer.Deferred()
        recordJobs = self.queue.recordJobs

        def recording(outcomes, now):
            writes.append([outcome.jobId for outcome in outcomes])
            d = recordJobs(outcomes, now)
            return held.addCallback(lambda _: d) if len(writes) == 1 else d
        self.queue.recordJobs = recording
        for sop in ("1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3"):
            self.receive(sop)
        ids = [job.id for job in self.queue.dueJobs(1e12, 10)]
        self.service.startService()
        self.assertEqual(writes, [ids[:1]])
        self.assertEqual(self.service._jobLanes, {"ExportConverter0"})
        held.callback(None)
        self.assertEqual(writes, [ids[:1], ids[1:]])
        self.assertEqual(self.queue.dueJobs(1e12, 10), [])
        self.assertEqual(self.service._jobLanes, set())

    def test_exportFilterMismatchDropsTheJob(self):
        self.rules[0].filter = "Modality = 'MR'"
        self.receive("1.2.3.1.1")
        self.service.startService()
        self.assertEqual(self.script.contexts, [])
        self.assertEqual(self.queue.dueJobs(1e12, 10), [])

    def test_aDownDestinationIsHeldOffAndDoesNotDelayOthers(self):
        self.forwarder.down.add("A")
        for n in range(2):
            self.queue.addForward("A", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", f"a{n}"))
            self.queue.addForward("B", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", f"b{n}"))
        self.service.startService()
        self.assertEqual(self.forwarder.delivered, [("B", "b0"), ("B", "b1")])
        self.assertEqual(self.counters["forwardsFailed"], 1)
        self.forwarder.down.clear()
        self.reactor.advance(59.5)  # FailHoldOff: the second A action waits
        self.assertEqual(len(self.forwarder.delivered), 2)
        self.reactor.advance(1)
        self.assertEqual(self.forwarder.delivered[2:], [("A", "a1")])
        self.reactor.advance(40)  # RetryDelay after the failure: the first one again
        self.assertEqual(self.forwarder.delivered[3:], [("A", "a0")])
        self.assertEqual(self.counters["forwardsSent"], 4)

    def test_aForwardToAnEmptyDestinationHasALaneOfItsOwn(self):
        """A forward queued with an empty destination (by an earlier
        version) fails alone: it does not hold the local actions off."""
        self.forwarder.down.add("")
        self.queue.addForward("", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "1.2.3.1.1"))
        self.archive.add("PAT2", "2.2.3", "2.2.3.1", "2.2.3.1.1")
        self.queue.addForward("", "IMAGE", Target("PAT2", "2.2.3", "2.2.3.1", "2.2.3.1.1"), action="delete")
        self.service.startService()
        self.assertEqual(self.counters["forwardsFailed"], 1)
        self.assertEqual(self.counters["deleteActions"], 1)
        self.assertEqual([action.action for action in self.queue.due(1e12, 10)], ["forward"])

    def test_givenUpActionsAreCountedAndRetriedByHand(self):
        self.forwarder.down.add("A")
        self.queue.addForward("A", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "a0"))
        self.service.startService()
        for _ in range(3):
            self.reactor.advance(100)
        self.reactor.advance(5)
        self.assertEqual(self.counters["forwardsFailed"], 3)
        self.assertEqual(self.counters["forwardQueueFailed"], 1)
        self.assertEqual(self.queue.counts()["destinations"]["A"][FAILED], 1)
        self.forwarder.down.clear()
        self.assertEqual(self.successResultOf(self.service.retryFailed("A")), 1)
        self.assertEqual(self.forwarder.delivered, [("A", "a0")])

    def test_aGivenUpActionNamesTheKeyOfItsLimit(self):
        """An image forward gives up after MaximumExportRetries, a patient
        forward and a get after MaximumDelayedFetchForwardRetries: the log
        line names the one that applied."""
        self.queue.delayedRetries = 0
        self.forwarder.down.update(("A", "C", "G"))
        self.queue.addForward("A", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "a0"))
        self.queue.addForward("C", "PATIENT", Target("PAT1", "", "", ""), notBefore=0)
        self.queue.addForward("G", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "g0"), action="get")
        with capturedLogs() as events:
            self.service.startService()
            for _ in range(3):
                self.reactor.advance(100)
        givenUp = sorted(formatEvent(event) for event in events if "given up" in formatEvent(event))
        self.assertEqual(givenUp, [
            "forward of image a0 to A failed: A is down; given up (see MaximumExportRetries)",
            "forward of patient PAT1 to C failed: C is down; given up (see MaximumDelayedFetchForwardRetries)",
            "get of image g0 from G failed: G is down; given up (see MaximumDelayedFetchForwardRetries)"])

    def test_stopFinishesTheActionUnderWayAndLeavesTheRestQueued(self):
        """A stop waits for the action being sent, records it, and sends
        none of the lane's other actions: they stay queued, to go after
        a restart, once."""
        sending = defer.Deferred()
        forward = self.forwarder.forward

        async def slowFirst(action, found=None):
            if not self.forwarder.delivered:
                await sending
            return await forward(action, found)
        self.forwarder.forward = slowFirst
        for n in range(3):
            self.queue.addForward("B", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", f"b{n}"))
        self.service.startService()
        stopped = self.service.stopService()
        self.assertNoResult(stopped)
        sending.callback(None)
        self.reactor.advance(0.05)
        self.successResultOf(stopped)
        self.assertEqual(self.forwarder.delivered, [("B", "b0")])
        self.assertEqual([action.target.sopInstanceUID for action in self.queue.due(1e12, 10)], ["b1", "b2"])

    def test_aForwardStillUnderWayAfterTheGracePeriodIsInterruptedAndStaysQueued(self):
        """A study of 100 objects at 0.5 s each, QuitGracePeriod 5: the stop
        interrupts it before its next object after 5 s instead of waiting
        50 s; it stays queued, no attempt counted, no failure."""
        self.service.gracePeriod = 5
        sent = []

        async def slowStudy(action, found=None):
            for n in range(100):
                if self.forwarder.interrupted:
                    raise Interrupted("interrupted by the stop of the server")
                await task.deferLater(self.reactor, 0.5, lambda: None)
                sent.append(n)
            return len(sent)
        self.forwarder.forward = slowStudy
        self.queue.addForward("B", "STUDY", Target("PAT1", "1.2.3"), notBefore=0)
        self.service.startService()
        self.reactor.advance(1)
        stopped, began = self.service.stopService(), self.reactor.seconds()
        while not stopped.called and self.reactor.seconds() - began < 60:
            self.reactor.advance(0.05)
        self.successResultOf(stopped)
        self.assertTrue(5 <= self.reactor.seconds() - began < 6)
        self.assertLess(len(sent), 15)
        [action] = self.queue.due(1e12, 10)
        self.assertEqual((action.level, action.attempts), ("STUDY", 0))
        self.assertNotIn("forwardsFailed", self.counters)

    def test_stopLeavesAPollTheDatabaseDoesNotAnswer(self):
        """A poll waiting on a database server that hangs held the stop for
        the whole outage: now the stop waits SQLTimeOut for it at most, and
        an answer coming later starts nothing."""
        self.service.pollTimeout = 8
        answers = []
        self.service.io.deferToWorker = lambda f, *args: answers.append((f, args, defer.Deferred())) or answers[-1][2]
        self.queue.addForward("B", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "b0"))
        self.service.startService()
        self.assertEqual(len(answers), 1)  # the poll's first query, unanswered
        with capturedLogs() as events:
            stopped, began = self.service.stopService(), self.reactor.seconds()
            while not stopped.called and self.reactor.seconds() - began < 60:
                self.reactor.advance(0.05)
        self.successResultOf(stopped)
        self.assertTrue(8 <= self.reactor.seconds() - began < 9)
        self.assertIn("the export queue's poll got no answer from the index database within 8 s (SQLTimeOut)",
                      formatEvent(events[0]))
        for query, args, answer in answers:  # the server is back: the poll's queries are answered, in turn
            answer.callback(query(*args))
        self.assertEqual(len(answers), 2)
        self.assertEqual(self.forwarder.delivered, [])
        self.assertEqual(len(self.queue.due(1e12, 10)), 1)

    def test_stopWithoutStart(self):
        """A start-up that stops half way stops services it never started
        (MultiService stops every child): that stop simply ends."""
        self.successResultOf(self.service.stopService())

    def test_localDeleteRemovesFilesAndRows(self):
        self.archive.add("PAT1", "1.2.3", "1.2.3.9", "1.2.3.9.1")
        self.archive.add("PAT1", "1.2.3", "1.2.3.8", "1.2.3.8.1")
        self.queue.addForward("", "SERIES", Target("PAT1", "1.2.3", "1.2.3.9", "1.2.3.9.1"), action="delete",
                              notBefore=0)
        self.service.startService()
        self.assertEqual(self.counters["deleteActions"], 1)
        with self.archive.index.engine.connect() as connection:
            left = self.archive.query.instances(connection, "PATIENT", [])
            series = list(connection.execute(select(self.archive.index.tables.series.c.SeriesInstanceUID)).scalars())
        self.assertEqual([i.sopInstanceUID for i in left], ["1.2.3.8.1"])
        self.assertEqual(sorted(series), ["1.2.3.8"])
        self.assertFalse(os.path.exists(os.path.join(self.archive.folder, "PAT1", "1.2.3.9.1.dcm")))
        self.assertTrue(os.path.exists(os.path.join(self.archive.folder, "PAT1", "1.2.3.8.1.dcm")))


class ChangedObjectForwardTests(unittest.TestCase):
    """Export lines run with the real Forwarder, over iosim: one that
    changes Data and then forwards sends the object as the line changed it;
    a forward that left objects out holds the delete after it."""

    registry = CommandRegistry()

    def setUp(self):
        self.reactor = Reactor()
        self.archive = Archive(self)
        self.acceptor = Acceptor(self.reactor)
        self.queue = ExportQueue(self.archive.syncIndex, retryDelay=100, maximumRetries=0, clock=self.reactor.seconds)
        self.queue.createTables()
        self.spool = os.path.join(self.archive.folder, SPOOL_FOLDER)

    def parse(self, line):
        return parseScript(line, "ExportConverter0", self.registry, "export")

    def run_(self, line, *sops):
        """Run the export ``line`` (or a ``Script``) on stored objects ``sops``."""
        rule = Rule("ExportConverter0", self.parse(line) if isinstance(line, str) else line)
        self.queue.rules = [rule]
        forwarder = RealForwarder(self.reactor, AcrNemaMap.fromString("DEST 127.0.0.1 104\n"), "PACS",
                              self.archive.syncIndex, self.archive.query, self.archive.reader, SyncWorkers(),
                              endpointFor=self.acceptor.endpointFor)
        local = LocalActions(self.archive.syncIndex, self.archive.query, self.archive.reader, SyncWorkers())
        self.service = ExportService(self.queue, forwarder, local, ConverterServices(), [rule],
                                     self.archive.reader, self.reactor, SyncWorkers(), SyncWorkers())
        self.addCleanup(lambda: self.service.stopService() if self.service.running else None)
        for sop in sops:
            self.store(sop)
        self.service.startService()
        self.pump(50)

    def store(self, sop):
        """Store the object ``sop`` and queue its export line's jobs."""
        ds = self.archive.add("PAT1", "1.2.3", "1.2.3.1", sop)
        record = ImageRecord({tag: str(ds.get(keyword, "")) for keyword, tag in TAGS.items()}, "MAG0",
                             f"PAT1/{sop}.dcm")
        with self.archive.index.engine.begin() as connection:
            self.queue.enqueueJobs(connection, [record])

    def pump(self, rounds):
        """Let the association and the clock run ``rounds`` half seconds."""
        for _ in range(rounds):
            self.acceptor.flush()
            self.reactor.advance(0.5)

    def received(self):
        return [decodeDataset(data, syntax) for _, data, syntax in self.acceptor.recorder.received]

    def test_theObjectTheLineChangedIsForwarded(self):
        """Anonymised in Lua, then ``forward to``: the stored object is
        found by its stored identity and the anonymised one goes (never the
        stored one); the spool file is gone once the forward is done."""
        self.run_("lua \"Data.PatientName = 'ANON^X'; Data.PatientID = 'ANON1'\"; forward to DEST", "1.2.3.1.1")
        [sent] = self.received()
        self.assertEqual((sent.PatientID, str(sent.PatientName), sent.SOPInstanceUID), ("ANON1", "ANON^X", "1.2.3.1.1"))
        self.assertEqual(sent.PixelData, pydicom.dcmread(os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm"))
                         .PixelData)
        self.assertEqual(self.queue.due(1e12, 10), [])
        self.assertEqual(os.listdir(self.spool), [])

    def test_anObjectAScriptMadeIsForwardedAsItIs(self):
        """``x:Script('forward to DEST')`` on an object the script made
        sends x (from a spool file), not the stored object with x's UIDs
        (which would leak what x was to leave out), nor nothing."""
        self.run_("lua \"local x = newdicomobject(); "
                  "for _, k in ipairs({'SOPClassUID', 'SOPInstanceUID', 'StudyInstanceUID', 'SeriesInstanceUID', "
                  "'Modality'}) do x[k] = Data[k] end; x.PatientID = 'ANON1'; x.PatientName = 'ANON^X'; "
                  "assert(x:Script('forward to DEST') == 'continue')\"", "1.2.3.1.1")
        [sent] = self.received()
        self.assertEqual((sent.PatientID, str(sent.PatientName), sent.SOPInstanceUID), ("ANON1", "ANON^X", "1.2.3.1.1"))
        self.assertNotIn("PixelData", sent)
        self.assertEqual(self.queue.due(1e12, 10), [])
        self.assertEqual(os.listdir(self.spool), [])

    def test_aCollectedForwardFindsTheStoredStudy(self):
        """``forward study`` after the line changed the identity forwards
        the stored study (that of the stored object, as Conquest's)."""
        self.queue.collectDelay = 10
        self.run_("lua \"Data.PatientID = 'ANON1'\"; forward study to DEST", "1.2.3.1.1", "1.2.3.1.2")
        self.assertEqual(sorted((ds.PatientID, ds.SOPInstanceUID) for ds in self.received()),
                         [("PAT1", "1.2.3.1.1"), ("PAT1", "1.2.3.1.2")])
        self.assertFalse(os.path.exists(self.spool))

    def test_aChangedSOPInstanceUIDIsTheCommandsToo(self):
        """A line that gives the object a new SOP Instance UID: the C-STORE
        command's Affected SOP Instance UID is the data set's (PS3.7
        9.3.1.1), not the stored object's."""
        self.run_("lua \"Data.PatientName = 'ANON'; Data.SOPInstanceUID = '1.2.3.1.99'\"; forward to DEST", "1.2.3.1.1")
        [(command, data, syntax)] = self.acceptor.recorder.received
        self.assertEqual((command[AFFECTED_SOP_INSTANCE_UID], decodeDataset(data, syntax).SOPInstanceUID),
                         ("1.2.3.1.99", "1.2.3.1.99"))
        self.assertEqual(self.queue.due(1e12, 10), [])

    def test_aDeferredLineLeavesNoSpoolFile(self):
        """A line that forwards a changed object and then defers runs again
        later: the spool file of each run's forward, never queued, is
        deleted."""
        self.run_("lua \"Data.PatientName = 'ANON^X'\"; forward to DEST; defer", "1.2.3.1.1")
        self.reactor.advance(200)
        self.assertEqual(os.listdir(self.spool), [])
        self.assertEqual(self.received(), [])

    def test_aFailedLineLeavesNoSpoolFile(self):
        """A line that raises after its forward of a changed object (a bug
        in a command) runs again later: that run's spool file is deleted."""
        line = self.parse("lua \"Data.PatientName = 'ANON^X'\"; forward to DEST")

        def failing(context):
            line.run(context)
            raise RuntimeError("a bug in a command")
        self.run_(Script(failing), "1.2.3.1.1")
        self.assertEqual(os.listdir(self.spool), [])
        self.assertEqual(self.received(), [])

    def test_aForwardThatLeftObjectsOutIsGivenUpAndItsDeleteHeld(self):
        """``forward study to DEST; delete study`` where DEST takes no CT:
        the object is left out, so the forward is given up at once (a retry
        would leave it out again), not done, and the delete after it never
        runs: nothing is deleted that has not reached DEST."""
        self.acceptor = Acceptor(self.reactor, sopClasses=(MR_STORAGE,))
        self.queue.collectDelay = 10
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.run_("forward study to DEST; delete study", "1.2.3.1.1")
        self.reactor.advance(200)
        self.assertEqual(self.received(), [])
        self.assertTrue(os.path.exists(os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm")))
        self.assertEqual(self.queue.counts()["destinations"]["DEST"][FAILED], 1)
        self.assertEqual([action.action for action in self.queue.due(1e12, 10)], [])
        self.assertIn("forward of study 1.2.3 to DEST failed: 0 object(s) sent to DEST, 1 left out, e.g. DEST takes ",
                      "\n".join(formatEvent(event) for event in events))
        self.assertIn("; given up, not retried (a delete of the patient queued after it waits",
                      "\n".join(formatEvent(event) for event in events))

    def test_anImageTheDestinationRefusesForGoodDoesNotBlockItsLane(self):
        """With retries without limit, an image DEST answers A900 (Data Set
        does not match SOP Class) is given up at once, kept failed for
        ``--retryforwards``, and the images queued after it go."""
        self.queue.maximumRetries = None
        handle = self.acceptor.recorder.handle

        def refuseOne(protocol, contextId, command, dataset):
            self.acceptor.recorder.status = 0xA900 if command[AFFECTED_SOP_INSTANCE_UID] == "1.2.3.1.2" else 0
            handle(protocol, contextId, command, dataset)
        self.acceptor.recorder.handle = refuseOne
        self.run_("forward to DEST", "1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3")
        self.assertEqual([ds.SOPInstanceUID for ds in self.received()], ["1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3"])
        self.assertEqual(self.queue.counts()["destinations"]["DEST"], {"pending": 0, FAILED: 1})
        [(action, error)] = self.queue.failedActions()
        self.assertEqual(action.target.sopInstanceUID, "1.2.3.1.2")
        self.assertIn("with status 0xA900 (data set does not match SOP class)", error)

    def afterLocating(self, last, change):
        """``change()`` once the lane first located the object ``last`` (its
        batch's last): what happens to an object after its forward was
        looked up, before it is sent; the reader follows stored objects as
        the server's does (``currentInstance``)."""
        self.archive.reader.current = functools.partial(currentInstance, self.archive.index, self.archive.query)
        locate = self.archive.reader.locate

        def locateThen(instances, **kwargs):
            found = locate(instances, **kwargs)
            if [instance.sopInstanceUID for instance in instances] == [last]:
                self.archive.reader.locate = locate
                change()
            return found
        self.archive.reader.locate = locateThen

    def sentAtOnceAfterwards(self, sop):
        """A forward of ``sop`` to DEST queued now goes at once: DEST is not held off."""
        self.assertEqual(self.service.heldOff.held(), set())
        self.queue.addForward("DEST", "IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", sop))
        self.service.kick()
        self.pump(2)
        self.assertEqual(self.received()[-1].SOPInstanceUID, sop)

    def test_anObjectDeletedAfterItsLaneLocatedItIsSkippedAndTheLaneGoesOn(self):
        """``dgate --deletepatient:`` while the patient's forwards are being
        sent (their lane's batch located): the deleted object is skipped, as
        one deleted before; the forwards after it go at once, DEST is not
        held off (FailHoldOff), nothing is failed nor left queued."""
        removal = LocalActions(self.archive.syncIndex, self.archive.query, self.archive.reader, SyncWorkers())
        self.afterLocating("1.2.3.1.3", lambda: self.successResultOf(removal.deleteMatching(
            [QueryKey(SOP_INSTANCE_UID, "UI", "1.2.3.1.2")])))
        with capturedLogs() as events:
            self.run_("forward to DEST", "1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3")
        self.assertEqual([ds.SOPInstanceUID for ds in self.received()], ["1.2.3.1.1", "1.2.3.1.3"])
        self.assertEqual(self.queue.counts()["destinations"], {})
        self.assertIn("forward to DEST: 1.2.3.1.2 was deleted since its forward was looked up: skipped",
                      [formatEvent(event) for event in events])
        self.assertFalse(os.path.exists(os.path.join(self.archive.folder, "PAT1", "1.2.3.1.2.dcm")))
        self.sentAtOnceAfterwards("1.2.3.1.1")

    def test_anObjectThatCannotBeReadHereDoesNotHoldItsDestinationOff(self):
        """A file that cannot be read once located (here a folder: EISDIR,
        as EIO would be): its forward fails and is retried after RetryDelay,
        not dropped, but DEST is not held off, the forwards after it go."""
        self.queue.maximumRetries = None
        path = os.path.join(self.archive.folder, "PAT1", "1.2.3.1.2.dcm")
        self.afterLocating("1.2.3.1.3", lambda: (os.remove(path), os.mkdir(path)))
        with capturedLogs() as events:
            self.run_("forward to DEST", "1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3")
        self.assertEqual([ds.SOPInstanceUID for ds in self.received()], ["1.2.3.1.1", "1.2.3.1.3"])
        self.assertEqual(self.queue.counts()["destinations"]["DEST"], {"pending": 1, FAILED: 0})
        [line] = [formatEvent(event) for event in events if "failed" in formatEvent(event)]
        self.assertIn("forward of image 1.2.3.1.2 to DEST failed: 1.2.3.1.2 could not be read here: [Errno 21] Is a "
                      "directory", line)
        self.assertIn("; will retry (a read error here, not DEST's: its other actions go on)", line)
        self.sentAtOnceAfterwards("1.2.3.1.3")
        os.rmdir(path)
        self.archive.add("PAT1", "1.2.3", "1.2.3.1", "1.2.3.1.2")
        self.reactor.advance(100)  # RetryDelay
        self.pump(2)
        self.assertEqual(self.received()[-1].SOPInstanceUID, "1.2.3.1.2")
        self.assertEqual(self.queue.due(1e12, 10), [])

    def test_anUnreadableObjectUsesUpNoRetriesAndIsOneLineAnAttempt(self):
        """Read errors here (a folder that cannot be read, a share offline)
        may pass: with MaximumExportRetries = 1 a forward that fails on one
        at each attempt, RetryDelay apart, is not given up, one line an
        attempt (found unreadable as it is read, then as it is looked up:
        the first a warning, see UnreadableDeviceTests), and goes once the
        file can be read again."""
        self.queue.maximumRetries = 1
        path = os.path.join(self.archive.folder, "PAT1", "1.2.3.1.2.dcm")
        self.afterLocating("1.2.3.1.2", lambda: (os.remove(path), os.mkdir(path)))
        with capturedLogs() as events:
            self.run_("forward to DEST", "1.2.3.1.2")
            for _ in range(3):
                self.reactor.advance(100)  # RetryDelay
                self.pump(2)
        lines = [formatEvent(event) for event in events if "failed" in event.get("log_format", "")]
        self.assertEqual(len(lines), 4, lines)
        for line in lines:
            self.assertIn("forward of image 1.2.3.1.2 to DEST failed: ", line)
            self.assertIn("; will retry (a read error here, not DEST's: its other actions go on)", line)
        self.assertEqual(self.queue.counts()["destinations"]["DEST"], {"pending": 1, FAILED: 0})
        self.assertEqual(self.received(), [])
        os.rmdir(path)
        self.archive.add("PAT1", "1.2.3", "1.2.3.1", "1.2.3.1.2")
        self.reactor.advance(100)
        self.pump(2)
        self.assertEqual([ds.SOPInstanceUID for ds in self.received()], ["1.2.3.1.2"])
        self.assertEqual(self.queue.due(1e12, 10), [])

    def test_aSeriesForwardWithAnUnreadableObjectRetriesThatObjectOnly(self):
        """A series forward of 3 whose second file cannot be read: the
        other two are sent once, the action is replaced by an image forward
        of the second (not counted: MaximumExportRetries 1 does not give it
        up), retried alone every RetryDelay; once its file reads again only
        it is sent, no duplicate, nothing left queued."""
        self.queue.maximumRetries = 1
        self.queue.collectDelay = 100
        sops = ["1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3"]
        self.run_("forward series to DEST", *sops)
        path = os.path.join(self.archive.folder, "PAT1", "1.2.3.1.2.dcm")
        os.remove(path)
        os.mkdir(path)
        with capturedLogs() as events:
            for _ in range(4):
                self.reactor.advance(100)  # ForwardCollectDelay, then RetryDelay
                self.pump(2)
        self.assertEqual([ds.SOPInstanceUID for ds in self.received()], ["1.2.3.1.1", "1.2.3.1.3"])
        [action] = self.queue.due(1e12, 10)
        self.assertEqual((action.level, action.target, action.attempts),
                         ("IMAGE", Target("PAT1", "1.2.3", "1.2.3.1", "1.2.3.1.2"), 0))
        lines = [formatEvent(event) for event in events if "failed" in event.get("log_format", "")]
        self.assertIn("forward of series 1.2.3.1 to DEST failed: 1 of its objects could not be read, e.g. 1.2.3.1.2: "
                      "PAT1/1.2.3.1.2.dcm: [Errno 21] Is a directory", lines[0])
        self.assertIn("; its other objects were sent, only the 1 not read will be retried, each as an image forward "
                      "(a read error here, not DEST's)", lines[0])
        self.assertEqual(self.queue.counts()["destinations"]["DEST"], {"pending": 1, FAILED: 0})
        os.rmdir(path)
        self.archive.add("PAT1", "1.2.3", "1.2.3.1", "1.2.3.1.2")
        self.reactor.advance(100)
        self.pump(2)
        self.assertEqual([ds.SOPInstanceUID for ds in self.received()], ["1.2.3.1.1", "1.2.3.1.3", "1.2.3.1.2"])
        self.assertEqual(self.queue.due(1e12, 10), [])

    def test_theDeleteAfterANarrowedForwardWaitsForTheObjectNotRead(self):
        """``forward series to DEST; delete series`` with one file that
        cannot be read: the two others go, the delete waits for the image
        forward of the third (queued again after it), which goes once its
        file reads again; only then is the series deleted."""
        self.queue.collectDelay = 100
        self.run_("forward series to DEST; delete series", "1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3")
        path = os.path.join(self.archive.folder, "PAT1", "1.2.3.1.2.dcm")
        os.remove(path)
        os.mkdir(path)
        for _ in range(3):
            self.reactor.advance(100)
            self.pump(2)
        self.assertEqual([ds.SOPInstanceUID for ds in self.received()], ["1.2.3.1.1", "1.2.3.1.3"])
        self.assertEqual([(action.action, action.level) for action in self.queue.due(1e12, 10)], [("forward", "IMAGE")])
        self.assertTrue(os.path.exists(os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm")))
        os.rmdir(path)
        self.archive.add("PAT1", "1.2.3", "1.2.3.1", "1.2.3.1.2")
        for _ in range(2):
            self.reactor.advance(100)
            self.pump(2)
        self.assertEqual([ds.SOPInstanceUID for ds in self.received()], ["1.2.3.1.1", "1.2.3.1.3", "1.2.3.1.2"])
        self.assertEqual(self.queue.due(1e12, 10), [])
        self.assertEqual(os.listdir(os.path.join(self.archive.folder, "PAT1")), [])

    def test_aSeriesForwardOfALostFileRetriesThatObjectOnly(self):
        """The same with the file gone at look-up while the index still
        names it (a lost file, the server's reader following the index):
        the two others are sent once only."""
        self.queue.collectDelay = 100
        self.run_("forward series to DEST", "1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3")
        self.archive.reader.current = functools.partial(currentInstance, self.archive.index, self.archive.query)
        os.remove(os.path.join(self.archive.folder, "PAT1", "1.2.3.1.3.dcm"))
        for _ in range(4):
            self.reactor.advance(100)
            self.pump(2)
        self.assertEqual([ds.SOPInstanceUID for ds in self.received()], ["1.2.3.1.1", "1.2.3.1.2"])
        [action] = self.queue.due(1e12, 10)
        self.assertEqual((action.level, action.target.sopInstanceUID), ("IMAGE", "1.2.3.1.3"))

    def test_unreadableForwardsOfADeviceAreOneWarningAndTheirEndOneLine(self):
        """The objects of a MAG device that cannot be read (a disk not
        mounted): 3 forwards failing at 4 attempts are one warning naming
        MAG0, the others debug lines, not 3 warnings every RetryDelay; once
        they read again one line says so and how many waited."""
        sops = ["1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3"]
        paths = [os.path.join(self.archive.folder, "PAT1", f"{sop}.dcm") for sop in sops]
        saved = {}

        def unmount():
            for path in paths:
                with open(path, "rb") as f:
                    saved[path] = f.read()
                os.remove(path)
                os.mkdir(path)
        self.afterLocating(sops[-1], unmount)
        with capturedLogs() as events:
            self.run_("forward to DEST", *sops)
            for _ in range(3):
                self.reactor.advance(100)  # RetryDelay
                self.pump(2)
            self.assertEqual(self.received(), [])
            for path, data in saved.items():
                os.rmdir(path)
                with open(path, "wb") as f:
                    f.write(data)
            self.reactor.advance(100)
            self.pump(4)
        failed = [event for event in events if "failed" in event.get("log_format", "")]
        self.assertEqual(len(failed), 12, [formatEvent(event) for event in failed])
        warnings = [formatEvent(event) for event in events if event["log_level"] >= LogLevel.warn]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("could not be read here", warnings[0])
        self.assertTrue(warnings[0].endswith("; will retry (a read error here, not DEST's: its other actions go on); "
                                             "until a forward or job waiting on MAG0 succeeds, its forwards, "
                                             "export jobs and mirror copies failing so are debug lines (for an hour "
                                             "at most)"), warnings[0])
        infos = [formatEvent(event) for event in events if "read again" in event.get("log_format", "")]
        self.assertEqual(len(infos), 1, infos)
        self.assertRegex(infos[0], r"MAG0: its objects read again, after failing for \d+ s \(.*could not be "
                                   r"read here.*\); 3 forward\(s\) and job\(s\) waited on it")
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in self.received()), sops)

    def test_oneLostFileAmongReadableOnesIsOneWarning(self):
        """One file lost while the index names it, the other objects of its
        device forwarded meanwhile: one warning for the lost one, not a
        warning and a 'read again' line at every attempt (the others read do
        not end the device's failing: only a forward that waited on it)."""
        lost = os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm")
        self.afterLocating("1.2.3.1.1", lambda: (os.remove(lost), os.mkdir(lost)))
        with capturedLogs() as events:
            self.run_("forward to DEST", "1.2.3.1.1")
            for n in range(2, 5):
                self.store(f"1.2.3.1.{n}")
                self.reactor.advance(100)  # RetryDelay
                self.pump(4)
        warnings = [formatEvent(event) for event in events if event["log_level"] >= LogLevel.warn]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("1.2.3.1.1", warnings[0])
        self.assertEqual([event for event in events if "read again" in event.get("log_format", "")], [])
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in self.received()), ["1.2.3.1.2", "1.2.3.1.3", "1.2.3.1.4"])
        with capturedLogs() as events:
            self.reactor.advance(3600)  # an hour on: warned of again (its forward may have been replaced)
            self.pump(4)
        warnings = [formatEvent(event) for event in events if event["log_level"] >= LogLevel.warn]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("1.2.3.1.1", warnings[0])

    def test_aGivenUpForwardKeepsItsSpoolFileAndSendsItWhenRetried(self):
        """A forward of a changed object given up (MaximumExportRetries)
        keeps its spool file while its row is in the table: put back by
        ``--retryforwards`` it sends the anonymised object, never the stored
        one; the file goes once the forward is done."""
        self.queue.maximumRetries = 1
        self.acceptor.down = True
        self.run_("lua \"Data.PatientID = 'ANON1'\"; forward to DEST", "1.2.3.1.1")
        self.assertEqual(len(os.listdir(self.spool)), 1)
        self.reactor.advance(200)
        self.assertEqual(self.queue.counts()["destinations"]["DEST"][FAILED], 1)
        self.assertEqual(len(os.listdir(self.spool)), 1)
        self.assertEqual(self.received(), [])
        self.acceptor.down = False
        self.assertEqual(self.successResultOf(self.service.retryFailed()), 1)
        self.pump(20)
        self.assertEqual([ds.PatientID for ds in self.received()], ["ANON1"])
        self.assertEqual(os.listdir(self.spool), [])
        self.assertEqual(self.queue.due(1e12, 10), [])

    def test_aForwardWhoseSpoolFileIsGoneNeverSendsTheStoredObject(self):
        """The changed copy a forward was to send is gone (deleted by hand,
        by an older version when it gave up): the stored, identifiable
        object is not sent in its place; the forward is given up, saying
        why."""
        self.queue.maximumRetries = None
        self.archive.reader.current = functools.partial(currentInstance, self.archive.index, self.archive.query)
        self.acceptor.down = True
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.run_("lua \"Data.PatientID = 'ANON1'\"; forward to DEST", "1.2.3.1.1")
        for name in os.listdir(self.spool):
            os.remove(os.path.join(self.spool, name))
        self.acceptor.down = False
        self.reactor.advance(100)
        self.pump(20)
        self.assertEqual(self.received(), [])
        self.assertEqual(self.queue.counts()["destinations"]["DEST"][FAILED], 1)
        self.assertIn("the object as the export line changed it, is gone: the stored object is not sent in its place",
                      "\n".join(formatEvent(event) for event in events))

    def test_aSpoolFileGoneBeforeItIsReadIsNeverSentNorRetried(self):
        """The changed copy, with a new SOP Instance UID (as ``newuids``
        gives), is gone after the forward located it and before it is read:
        the forward is given up (``ChangedCopyGone``), not retried as a
        failed one, and the stored object is never read in its place."""
        self.queue.maximumRetries = None
        self.archive.reader.current = functools.partial(currentInstance, self.archive.index, self.archive.query)
        locate = self.archive.reader.locate

        def locateThenLose(instances, **kwargs):
            found = locate(instances, **kwargs)
            for name in os.listdir(self.spool):
                os.remove(os.path.join(self.spool, name))
            return found
        self.archive.reader.locate = locateThenLose
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.run_("lua \"Data.SOPInstanceUID = '1.2.3.1.99'\"; forward to DEST", "1.2.3.1.1")
        self.assertEqual(self.received(), [])
        self.assertEqual(self.queue.counts()["destinations"]["DEST"], {"pending": 0, FAILED: 1})
        self.assertIn("the object as the export line changed it, is gone: the stored object is not sent in its place",
                      "\n".join(formatEvent(event) for event in events))


class MirrorCopyTests(unittest.TestCase):
    """MIRRORCOPY jobs: queued with the object's row, copied by the runner,
    retried without limit; deletes remove the mirror copies."""

    def setUp(self):
        self.reactor = Reactor()
        self.archive = Archive(self)
        self.mirror = MagDevice("MIRROR0", self.mktemp())
        mirrors = Mirrors({"MAG0": self.mirror})
        mirrors.prepare()
        self.archive.reader = ObjectReader([MagDevice("MAG0", self.archive.folder)], mirrors)
        self.counters = {}
        self.queue = ExportQueue(self.archive.syncIndex, [], retryDelay=100, maximumRetries=1,
                                 mirrored={"MAG0"}, clock=self.reactor.seconds)
        self.queue.createTables()
        self.local = LocalActions(self.archive.syncIndex, self.archive.query, self.archive.reader, SyncWorkers())
        self.service = ExportService(self.queue, Forwarder(), self.local, ConverterServices(counters=self.counters),
                                     [], self.archive.reader, self.reactor, SyncWorkers(), SyncWorkers())
        self.addCleanup(lambda: self.service.running and self.service.stopService())

    def receive(self, sop, deviceName="MAG0"):
        ds = self.archive.add("PAT1", "1.2.3", "1.2.3.1", sop)
        record = ImageRecord({tag: str(ds.get(keyword, "")) for keyword, tag in TAGS.items()}, deviceName,
                             f"PAT1/{sop}.dcm")
        with self.archive.index.engine.begin() as connection:
            return self.queue.enqueueJobs(connection, [record])

    def readBoth(self, relative):
        with open(os.path.join(self.archive.folder, relative), "rb") as f, \
                open(self.mirror.absolute(relative), "rb") as g:
            return f.read(), g.read()

    def test_storedObjectsAreCopied(self):
        self.assertEqual(self.receive("1.2.3.1.1"), 1)
        self.assertEqual(self.receive("1.2.3.1.2", deviceName="MAG1"), 0)
        self.service.startService()
        original, copy = self.readBoth("PAT1/1.2.3.1.1.dcm")
        self.assertEqual(original, copy)
        self.assertEqual(self.queue.dueJobs(1e12, 10), [])
        self.assertEqual(self.counters["mirrorCopies"], 1)

    def test_aFailingCopyIsRetriedWithoutLimit(self):
        with open(os.path.join(self.mirror.path, "PAT1"), "w"):  # where the copy's folder must go
            pass
        self.receive("1.2.3.1.1")
        self.service.startService()
        for _ in range(4):
            self.reactor.advance(100)
        [job] = self.queue.dueJobs(1e12, 10)
        self.assertEqual(job.attempts, 5)
        self.assertEqual(self.queue.counts()["jobs"][FAILED], 0)
        os.unlink(os.path.join(self.mirror.path, "PAT1"))
        self.reactor.advance(100)
        self.assertEqual(self.queue.dueJobs(1e12, 10), [])
        original, copy = self.readBoth("PAT1/1.2.3.1.1.dcm")
        self.assertEqual(original, copy)

    def test_aCopyOfAGoneFileIsDropped(self):
        self.receive("1.2.3.1.1")
        os.unlink(os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm"))
        self.service.startService()
        self.assertEqual(self.queue.dueJobs(1e12, 10), [])
        self.assertFalse(os.path.exists(self.mirror.absolute("PAT1/1.2.3.1.1.dcm")))

    def test_aCopyOfAFileAwayWhileIndexedIsRetried(self):
        """A file gone while the index still names it and no delete removes
        it (its data disk not mounted) is not a deleted one: its mirror copy
        is retried until it is back; that of a deleted object is dropped."""
        self.archive.reader.current = functools.partial(currentInstance, self.archive.index, self.archive.query)
        self.receive("1.2.3.1.1")
        self.receive("1.2.3.1.2")
        path = os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm")
        os.rename(path, path + ".away")
        self.successResultOf(self.local.deleteMatching([QueryKey(SOP_INSTANCE_UID, "UI", "1.2.3.1.2")]))
        self.service.startService()
        self.reactor.advance(100)
        [job] = self.queue.dueJobs(1e12, 10)
        self.assertEqual((job.sopInstanceUID, job.attempts), ("1.2.3.1.1", 2))
        os.rename(path + ".away", path)
        self.reactor.advance(100)
        self.assertEqual(self.queue.dueJobs(1e12, 10), [])
        original, copy = self.readBoth("PAT1/1.2.3.1.1.dcm")
        self.assertEqual(original, copy)
        self.assertFalse(os.path.exists(self.mirror.absolute("PAT1/1.2.3.1.2.dcm")))

    def test_queuedCopiesAreKnownAndCanBeAddedAgain(self):
        self.receive("1.2.3.1.1")
        self.assertEqual(self.queue.queuedMirrorCopies("MAG0"), {"PAT1/1.2.3.1.1.dcm"})
        self.assertEqual(self.queue.queuedMirrorCopies("MAG1"), set())
        self.service.startService()
        self.assertEqual(self.queue.queuedMirrorCopies("MAG0"), set())
        os.unlink(self.mirror.absolute("PAT1/1.2.3.1.1.dcm"))
        self.successResultOf(self.queue.queueMirrorCopies([("1.2.3.1.1", "MAG0", "PAT1/1.2.3.1.1.dcm")]))
        self.service.kick()
        original, copy = self.readBoth("PAT1/1.2.3.1.1.dcm")
        self.assertEqual(original, copy)

    def test_deletesRemoveTheMirrorCopies(self):
        self.receive("1.2.3.1.1")
        self.service.startService()
        self.assertTrue(os.path.exists(self.mirror.absolute("PAT1/1.2.3.1.1.dcm")))
        with self.archive.index.engine.connect() as connection:
            instances = self.archive.query.instances(connection, "PATIENT", [])
        self.assertEqual(self.successResultOf(self.local.removeInstances(instances)).removed, 1)
        self.assertFalse(os.path.exists(self.mirror.absolute("PAT1/1.2.3.1.1.dcm")))
        self.assertFalse(os.path.exists(os.path.join(self.archive.folder, "PAT1", "1.2.3.1.1.dcm")))
