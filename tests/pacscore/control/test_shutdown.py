"""OrderlyStop with a task.Clock: listeners first, then the running
associations finish or are aborted after the grace period, then the reactor
stops; AbortAssociations aborts those still running when it stops."""

from twisted.internet import defer, task
from twisted.internet.error import ReactorNotRunning
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.control.shutdown import AbortAssociations, OrderlyStop
from pacscore.dicom.protocol import AWAITING_CLOSE, ESTABLISHED
from pacscore.stopsignals import StopSignals


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
        aborting = AbortAssociations(factory)
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
        aborting = AbortAssociations(factory)
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
        aborting = AbortAssociations(Factory(0))
        aborting.startService()
        with capturedLogs() as events:
            aborting.stopService()
        self.assertEqual(events, [])
