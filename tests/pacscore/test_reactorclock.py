"""The reactor of ``twistd pacs`` measures time with time.monotonic, so a
step of the wall clock moves none of its timers."""

import time
from types import SimpleNamespace

from twisted.internet import task
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.reactorclock import useMonotonicClock
from tap.pacs import makeService


class MonotonicClockTests(unittest.TestCase):

    def test_makeServiceRunsTheReactorOnAMonotonicClock(self):
        reactor = task.Clock()
        services = object()
        self.assertIs(makeService(SimpleNamespace(archive=SimpleNamespace(reactor=reactor), services=services)),
                      services)
        self.assertIs(reactor.seconds, time.monotonic)
        call = reactor.callLater(30, lambda: None)
        self.assertLess(abs(call.getTime() - time.monotonic() - 30), 1)

    def test_aReactorWithTimedCallsKeepsItsClock(self):
        reactor = task.Clock()
        reactor.callLater(30, lambda: None)
        with capturedLogs() as events:
            useMonotonicClock(reactor)
        self.assertNotEqual(reactor.seconds, time.monotonic)
        self.assertEqual([formatEvent(e) for e in events],
                         ["the reactor has timed calls already: it keeps the wall clock, and a clock step moves "
                          "its timers"])
