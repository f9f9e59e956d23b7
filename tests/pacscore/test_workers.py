"""Tests for pacscore.workers: the worker pool and its stop."""

import threading
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.workers import WorkerPool


class _ClockReactor(Clock):
    """A Clock with the real reactor's callFromThread."""

    def callFromThread(self, f, *args, **kwargs):
        reactor.callFromThread(f, *args, **kwargs)


class StopTests(unittest.TestCase):

    @inlineCallbacks
    def test_stopWaitsForCallsUnderWay(self):
        pool = WorkerPool(reactor, 2, "test-pool")
        pool.start()
        results = yield pool.deferToWorker(lambda: [time.sleep(0.05), "done"][1])
        self.assertEqual(results, "done")
        yield pool.stop()
        self.assertEqual([t for t in threading.enumerate() if t.name.startswith("test-pool")], [])

    def test_stuckCallDoesNotHoldTheStop(self):
        """A call that never returns (a run-away Lua pattern match) is left
        behind after the grace period, with a warning naming its thread."""
        clock = _ClockReactor()
        pool = WorkerPool(clock, 1, "stuck-pool")
        pool.start()
        release = threading.Event()
        self.addCleanup(release.set)
        pool.callInThread(release.wait)
        with capturedLogs() as events:
            stopped = pool.stop(grace=30)
            clock.advance(29)
            self.assertNoResult(stopped)
            clock.advance(1)
        self.successResultOf(stopped)
        [message] = [e["log_format"].format(**e) for e in events]
        self.assertEqual(message, "stuck-pool: stopping after 30 s without stuck-pool-0, still busy")
