"""OrderlyStop with a task.Clock: listeners first, then the running
associations finish or are aborted after the grace period, then the reactor stops."""

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from pacscore.control.shutdown import OrderlyStop


class StoppingClock(task.Clock):
    stopped = False

    def stop(self):
        self.stopped = True


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

    def abort(self):
        self.aborted = True


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
        self.stop = OrderlyStop(self.clock, self.listeners, self.factory, gracePeriod=10)

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
