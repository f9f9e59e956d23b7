"""OrderlyStop with a task.Clock: listeners first, then the running
associations finish or are aborted after the grace period, then the reactor
stops; AbortAssociations aborts those still running when it stops, one
owing a storage commitment report once it is sent or after the grace period
(real associations over twisted.test.iosim)."""

from twisted.internet import defer, task
from twisted.internet.error import ReactorNotRunning
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.test import iosim
from twisted.trial import unittest

from pacscore.control.shutdown import AbortAssociations, OrderlyStop
from pacscore.dicom import commands
from pacscore.dicom.client import DicomClientFactory, numberContexts
from pacscore.dicom.commitment import STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE, reportCommand
from pacscore.dicom.negotiation import AcceptorPolicy
from pacscore.dicom.protocol import AWAITING_CLOSE, ESTABLISHED, AssociationLost, DicomServerFactory
from pacscore.dicom.verification import EchoService
from pacscore.stopsignals import StopSignals
from tests.pacscore.dicom.requests import EXPLICIT, VERIFICATION


class StoppingClock(task.Clock):
    """A clock that stops as a reactor does: once (``ReactorNotRunning``
    after), running its 'before shutdown' triggers."""

    stopped = False

    def __init__(self):
        super().__init__()
        self.beforeShutdown = []

    def addSystemEventTrigger(self, phase, event, f, *args, **kwargs):
        if (phase, event) == ("before", "shutdown"):
            self.beforeShutdown.append((f, args, kwargs))

    def stop(self):
        if self.stopped:
            raise ReactorNotRunning("Can't stop reactor that isn't running.")
        self.stopped = True
        for f, args, kwargs in self.beforeShutdown:
            f(*args, **kwargs)


class Listener:
    def __init__(self):
        self.stopping = defer.Deferred()

    def stopService(self):
        return self.stopping


class Association:
    def __init__(self, factory):
        self.factory = factory
        self.transport = StringTransport()
        self.aborted = False
        self.state = ESTABLISHED
        self.owed = set()

    def abort(self):
        self.aborted = True
        self.state = AWAITING_CLOSE


class Factory:
    def __init__(self, count):
        self.active = set()
        for _ in range(count):
            self.active.add(Association(self))


class OrderlyStopTests(unittest.TestCase):

    def setUp(self):
        self.clock = StoppingClock()
        self.listeners = [Listener(), Listener()]
        self.factory = Factory(2)
        self.signals = StopSignals(self.clock)
        self.stop = OrderlyStop(self.clock, self.listeners, self.factory, gracePeriod=10, signals=self.signals)

    def test_waitsForTheListenersThenTheAssociations(self):
        running = list(self.factory.active)
        d = self.stop()
        for listener in self.listeners:
            listener.stopping.callback(None)
        self.clock.advance(5)
        self.assertFalse(self.clock.stopped)
        self.factory.active.clear()
        self.clock.advance(self.stop.pollInterval)
        self.assertTrue(self.clock.stopped)
        self.successResultOf(d)
        self.assertFalse(any(a.aborted for a in running))

    def test_abortsWhatRunsAfterTheGracePeriod(self):
        running = list(self.factory.active)
        self.stop()
        for listener in self.listeners:
            listener.stopping.callback(None)
        self.clock.pump([self.stop.pollInterval] * 99)
        self.assertFalse(self.clock.stopped)
        self.assertFalse(any(a.aborted for a in running))
        self.clock.pump([self.stop.pollInterval] * 2)
        self.assertTrue(self.clock.stopped)
        self.assertTrue(all(a.aborted and a.transport.disconnecting for a in running))

    def test_notBeforeTheListenersStopped(self):
        self.factory.active.clear()
        self.stop()
        self.clock.advance(60)
        self.assertFalse(self.clock.stopped)
        for listener in self.listeners:
            listener.stopping.callback(None)
        self.assertTrue(self.clock.stopped)

    def test_calledTwice(self):
        self.assertIs(self.stop(), self.stop())

    def test_stopSignalsSeeTheQuit(self):
        """A stop signal during the grace period is one while stopping
        (StopSignals logs it as such), not a second stop."""
        self.assertFalse(self.signals.stopping)
        self.stop()
        self.assertTrue(self.signals.stopping)

    def test_reactorStoppedDuringTheGracePeriod(self):
        """The reactor stopping otherwise meanwhile (a SIGTERM delivered
        before StopSignals sees the quit): the stop waits no more and does
        not stop the reactor again, whose ReactorNotRunning was a critical
        line in the TroubleLog and the error mail."""
        running = list(self.factory.active)
        with capturedLogs() as events:
            d = self.stop()
            for listener in self.listeners:
                listener.stopping.callback(None)
            self.clock.advance(1)
            self.clock.stop()
            self.clock.pump([self.stop.pollInterval] * 200)
        self.successResultOf(d)
        self.assertEqual([e["log_format"] for e in events if e["log_level"].name == "critical"], [])
        self.assertFalse(any(a.aborted for a in running))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class AbortAssociationsTests(unittest.TestCase):

    def test_abortsTheRunningAssociationsWhenItStops(self):
        """At a stop signal (the services stopping), the associations still
        running are aborted and their connections closed, in one line."""
        factory = Factory(2)
        running = list(factory.active)
        aborting = AbortAssociations(factory, task.Clock())
        aborting.startService()
        self.assertFalse(any(a.aborted for a in running))
        with capturedLogs() as events:
            aborting.stopService()
        self.assertTrue(all(a.aborted and a.transport.disconnecting for a in running))
        self.assertEqual([e["log_format"].format(**e) for e in events],
                         ["stopping: aborting 2 running association(s); their senders send again what was not "
                          "acknowledged"])

    def test_whatTheQuitAbortedIsNotAbortedAgain(self):
        """After dgate --quit:'s grace period, the associations OrderlyStop
        aborted stay in the factory until their connections close, which
        the stop signal's AbortAssociations then found again: 'aborting 1
        running association(s)' twice for one.  Only the others (one here,
        whose A-ABORT was not sent yet) are aborted and counted."""
        factory = Factory(3)
        ending, released, running = sorted(factory.active, key=id)
        ending.abort()
        ending.transport.loseConnection()
        released.state = AWAITING_CLOSE  # A-RELEASE-RP sent, its peer closing
        ending.aborted = released.aborted = False
        aborting = AbortAssociations(factory, task.Clock())
        aborting.startService()
        with capturedLogs() as events:
            aborting.stopService()
        self.assertEqual([a.aborted for a in (ending, released, running)], [False, False, True])
        self.assertEqual([e["log_format"].format(**e) for e in events],
                         ["stopping: aborting 1 running association(s); their senders send again what was not "
                          "acknowledged"])

    def test_quitAbortsAndCountsOnlyTheRunning(self):
        """OrderlyStop's abort after the grace period leaves out and does
        not count an association already ending."""
        clock = StoppingClock()
        factory = Factory(2)
        ending, running = sorted(factory.active, key=id)
        ending.state = AWAITING_CLOSE
        stop = OrderlyStop(clock, [], factory, gracePeriod=1)
        with capturedLogs() as events:
            stop()
            clock.pump([stop.pollInterval] * 20)
        self.assertTrue(clock.stopped)
        self.assertEqual([ending.aborted, running.aborted], [False, True])
        self.assertIn("quit: aborting 1 association(s) still running after 1 s",
                      [e["log_format"].format(**e) for e in events])

    def test_nothingToAbort(self):
        aborting = AbortAssociations(Factory(0), task.Clock())
        aborting.startService()
        with capturedLogs() as events:
            aborting.stopService()
        self.assertEqual(events, [])


def stopLines(events):
    """The log lines of ``events`` AbortAssociations wrote."""
    return [formatEvent(event) for event in events if event["log_namespace"].startswith("pacscore.control.shutdown")]


class PromisingReports:
    """An N-ACTION service as CommitmentService is: answers Success at once,
    then owes the report (``DicomServerProtocol.owe``), sent ``delay``
    seconds later (the objects checked) on the association."""

    def __init__(self, clock, delay):
        self.clock = clock
        self.delay = delay
        self.taken = []  # the statuses the requestor answered the reports with
        self.lost = []  # the reports whose association ended first

    def handle(self, protocol, contextId, command, dataset):
        protocol.sendMessage(contextId, commands.response(command, commands.N_ACTION_RSP, 0, {
            commands.AFFECTED_SOP_INSTANCE_UID: STORAGE_COMMITMENT_INSTANCE}))
        owed = defer.ensureDeferred(self._report(protocol, contextId))
        protocol.owe(owed)
        owed.addErrback(lambda failure: self.lost.append(failure.trap(AssociationLost)))

    async def _report(self, protocol, contextId):
        await task.deferLater(self.clock, self.delay, lambda: None)
        response, _ = await protocol.request(contextId, reportCommand(1), b"", yieldsToRelease=True)
        self.taken.append(response[commands.STATUS])


class TakingReports:
    """The requestor's N-EVENT-REPORT service: takes every report."""

    def __init__(self):
        self.taken = 0

    def handle(self, protocol, contextId, command, dataset):
        self.taken += 1
        protocol.sendMessage(contextId, commands.response(command, commands.N_EVENT_REPORT_RSP, 0, {
            commands.AFFECTED_SOP_INSTANCE_UID: STORAGE_COMMITMENT_INSTANCE}))


class OwedReportTests(unittest.TestCase):
    """At a stop signal an association whose N-ACTION was answered Success
    was aborted before its N-EVENT-REPORT was sent on it, so the report
    came at the next start on a new association.  It is now kept until the
    report is sent, serving nothing else, for up to the grace period, and
    aborted once it is (its requestor's release not waited for); the
    others are aborted at once, and with no report owed nothing waits."""

    grace = 10

    def setUp(self):
        self.clock = task.Clock()
        self.reports = PromisingReports(self.clock, 3)
        policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={VERIFICATION: False, STORAGE_COMMITMENT: False},
                                transferSyntaxes={EXPLICIT})
        self.server = DicomServerFactory(policy, {commands.N_ACTION_RQ: self.reports,
                                                  commands.C_ECHO_RQ: EchoService()}, {}, self.clock)
        self.requestor = TakingReports()
        self.pumps = []
        self.aborting = AbortAssociations(self.server, self.clock, gracePeriod=self.grace)
        self.aborting.startService()

    def connect(self):
        """A new association from MODALITY, which takes the reports sent on it."""
        result = []
        d = defer.Deferred()
        d.addBoth(result.append)
        factory = DicomClientFactory("MODALITY", "PACS", numberContexts([(STORAGE_COMMITMENT, [EXPLICIT]),
                                                                          (VERIFICATION, [EXPLICIT])]),
                                     None, d, services={commands.N_EVENT_REPORT_RQ: self.requestor}, sinks={},
                                     clock=self.clock)
        _, _, pump = iosim.connectedServerAndClient(
            lambda: self.server.buildProtocol(None), lambda: factory.buildProtocol(None), clock=self.clock)
        self.pumps.append(pump)
        self.flush()
        return result[0]

    def flush(self):
        for _ in range(5):
            for pump in self.pumps:
                pump.flush()

    def elapse(self, seconds):
        for _ in range(round(seconds * 10)):
            self.clock.advance(0.1)
            self.flush()

    def commit(self, association):
        """An N-ACTION on ``association``, answered Success."""
        contextId, _ = association.contextFor(STORAGE_COMMITMENT)
        answered = association.request(contextId, {
            commands.COMMAND_FIELD: commands.N_ACTION_RQ, commands.REQUESTED_SOP_CLASS_UID: STORAGE_COMMITMENT,
            commands.REQUESTED_SOP_INSTANCE_UID: STORAGE_COMMITMENT_INSTANCE, commands.ACTION_TYPE_ID: 1,
            commands.COMMAND_DATASET_TYPE: commands.NO_DATASET})
        self.flush()
        self.assertEqual(self.successResultOf(answered)[0][commands.STATUS], 0)

    def stop(self):
        """AbortAssociations' stop, its log lines."""
        with capturedLogs() as events:
            stopped = self.aborting.stopService()
            self.flush()
        return stopped, stopLines(events)

    def test_theReportIsSentThenTheAssociationIsAborted(self):
        """The report sent 3 s into the stop is taken on the association,
        which is aborted at once then, though its requestor never releases;
        the idle association is aborted at once."""
        committing, idle = self.connect(), self.connect()
        self.commit(committing)
        stopped, messages = self.stop()
        self.assertEqual((idle.state, committing.state), (AWAITING_CLOSE, ESTABLISHED))
        self.assertEqual(messages, [
            "stopping: aborting 1 running association(s); their senders send again what was not acknowledged",
            "stopping: waiting up to 10 s (QuitGracePeriod) for 1 association(s) to send the storage commitment "
            "report(s) they owe, serving nothing else"])
        self.elapse(2.9)
        self.assertNoResult(stopped)
        self.assertEqual(committing.state, ESTABLISHED)
        self.elapse(0.2)
        self.assertEqual((self.requestor.taken, self.reports.taken), (1, [0]))
        self.successResultOf(stopped)
        self.assertEqual(committing.state, AWAITING_CLOSE)
        self.assertEqual(self.server.active, set())

    def test_nothingElseIsServedMeanwhile(self):
        """A request on the association kept for its report (here a
        C-ECHO) aborts it, logged; the report is lost (sent at the next
        start) and the stop waits no more."""
        committing = self.connect()
        self.commit(committing)
        stopped, _ = self.stop()
        with capturedLogs() as events:
            echoed = committing.echo()
            self.flush()
        self.failureResultOf(echoed)
        self.assertEqual(self.server.active, set())
        self.assertIn("C-ECHO-RQ while pacs stops, which keeps this association only to send the storage commitment "
                      "report it owes; aborting", "\n".join(formatEvent(event) for event in events))
        self.elapse(0.1)
        self.successResultOf(stopped)
        self.elapse(3)
        self.assertEqual((self.requestor.taken, len(self.reports.lost)), (0, 1))

    def test_aReportNotSentWithinTheGracePeriod(self):
        """The stop is held no longer than the grace period: then the
        association is aborted, logged, its report left for the next start."""
        self.reports.delay = 60
        committing = self.connect()
        self.commit(committing)
        stopped, _ = self.stop()
        with capturedLogs() as events:
            self.elapse(self.grace - 0.2)
            self.assertNoResult(stopped)
            self.assertEqual(committing.state, ESTABLISHED)
            self.elapse(0.3)
        self.successResultOf(stopped)
        self.assertEqual(self.server.active, set())
        self.assertEqual(stopLines(events),
                         ["stopping: aborting 1 association(s) whose storage commitment report was not sent within "
                          "10 s (QuitGracePeriod); it is sent at the next start"])
        self.elapse(60)
        self.assertEqual((self.requestor.taken, len(self.reports.lost)), (0, 1))

    def test_noReportOwedNothingWaits(self):
        """An association whose report was taken already (its requestor
        never releasing) owes nothing: the stop aborts it at once, and
        does not wait."""
        committed = self.connect()
        self.commit(committed)
        self.elapse(3.1)
        self.assertEqual(self.requestor.taken, 1)
        stopped, messages = self.stop()
        self.assertIsNone(stopped)
        self.assertEqual(committed.state, AWAITING_CLOSE)
        self.assertEqual(messages, ["stopping: aborting 1 running association(s); their senders send again what "
                                    "was not acknowledged"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
