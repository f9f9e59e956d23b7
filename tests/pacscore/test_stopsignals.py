"""Tests for pacscore.stopsignals: a stop signal while the server is
already stopping is one log line, not a second ``reactor.stop`` whose
ReactorNotRunning twisted logs as critical."""

import signal

from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.stopsignals import StopSignals


class SignalledReactor:
    """A reactor whose own handlers (as twistd installs them) count the
    signals they get; it runs at once and calls from threads at once."""

    def __init__(self):
        self.received = []

    def sigTerm(self, number, frame=None):
        self.received.append(number)

    def callWhenRunning(self, f, *args):
        f(*args)

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class StopSignalsTests(unittest.TestCase):

    def setUp(self):
        self.reactor = SignalledReactor()
        self.addCleanup(signal.signal, signal.SIGTERM, signal.signal(signal.SIGTERM, self.reactor.sigTerm))
        self.addCleanup(signal.signal, signal.SIGINT, signal.getsignal(signal.SIGINT))
        self.addCleanup(signal.signal, signal.SIGQUIT, signal.getsignal(signal.SIGQUIT))
        self.service = StopSignals(self.reactor)
        self.service.startService()

    def signal(self):
        """Deliver SIGTERM to its handler now; the log lines meanwhile."""
        with capturedLogs() as events:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        return [formatEvent(event) for event in events]

    def test_aSecondSignalIsLogged(self):
        """The first SIGTERM goes to the reactor's handler (it stops, and
        twistd exits with the signal); another one is a log line."""
        self.assertEqual(self.signal(), [])
        self.assertEqual(self.signal(), ["SIGTERM while stopping: already stopping"])
        self.assertEqual(self.reactor.received, [signal.SIGTERM])

    def test_aSignalAfterAStopBegunOtherwise(self):
        """A stop begun by dgate --quit: (the services stopping): a SIGTERM
        then is a log line."""
        self.service.stopService()
        self.assertEqual(self.signal(), ["SIGTERM while stopping: already stopping"])
        self.assertEqual(self.reactor.received, [])

    def test_otherHandlersLeftAlone(self):
        """A handler not the reactor's (a debugger's SIGINT) stays."""
        self.assertNotIsInstance(getattr(signal.getsignal(signal.SIGINT), "__self__", None), StopSignals)

    def test_sigquitStopsAsSigterm(self):
        """SIGQUIT (whose default ends the process with a core dump) goes
        to the reactor's SIGTERM handler as a SIGTERM, with a log line."""
        with capturedLogs() as events:
            signal.getsignal(signal.SIGQUIT)(signal.SIGQUIT, None)
        self.assertEqual([formatEvent(event) for event in events], ["SIGQUIT: stopping as at SIGTERM"])
        self.assertEqual(self.reactor.received, [signal.SIGTERM])
        self.assertEqual(self.signal(), ["SIGTERM while stopping: already stopping"])
