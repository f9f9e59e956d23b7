"""Tests for pacscore.closing: a closing connection is cut CLOSE_BOUND s
after its peer last took any of what was written to it."""

import socket

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from pacscore.closing import CLOSE_BOUND, closeWithin, unsent


class BufferedTransport(StringTransport):
    """A transport whose unsent bytes a test sets (``_tempDataLen``), as
    Twisted's TCP transport holds them, over a real socket."""

    def __init__(self, test):
        super().__init__()
        self.dataBuffer, self.offset, self._tempDataLen = b"", 0, 0
        self.socket, peer = socket.socketpair()
        for s in (self.socket, peer):
            test.addCleanup(s.close)
        self.aborted = False

    def getHandle(self):
        return self.socket

    def abortConnection(self):
        self.aborted = True


class CloseWithinTests(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.transport = BufferedTransport(self)

    def test_cutWhenThePeerTakesNothing(self):
        self.transport._tempDataLen = 1000
        closeWithin(self.transport, self.clock)
        self.assertTrue(self.transport.disconnecting)
        self.clock.advance(CLOSE_BOUND)
        self.assertTrue(self.transport.aborted)

    def test_notCutWhileThePeerTakesMore(self):
        """A large answer taken slowly is not cut; once the peer stops
        taking it, it is, CLOSE_BOUND s later."""
        self.transport._tempDataLen = 1000
        cut = closeWithin(self.transport, self.clock)
        for left in (800, 300, 100):
            self.transport._tempDataLen = left
            self.clock.advance(CLOSE_BOUND)
            self.assertFalse(self.transport.aborted)
            self.assertTrue(cut.active())
        self.clock.advance(CLOSE_BOUND)
        self.assertTrue(self.transport.aborted)

    def test_cancelled(self):
        self.transport._tempDataLen = 10
        cut = closeWithin(self.transport, self.clock)
        self.clock.advance(CLOSE_BOUND / 2)
        cut.cancel()
        self.assertFalse(cut.active())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unsentUnknownWithoutTwistedsBuffer(self):
        """A transport unlike Twisted's TCP one: unknown, and the cut is
        not put off."""
        transport = StringTransport()
        transport.abortConnection = lambda: setattr(transport, "aborted", True)
        self.assertIsNone(unsent(transport))
        closeWithin(transport, self.clock)
        self.clock.advance(CLOSE_BOUND)
        self.assertTrue(transport.aborted)

    def test_aLongerStalledBound(self):
        """With a ``stalled`` bound, a peer that takes none of what is left
        is cut only that many seconds after it last took some, with
        ``onCut`` told first; one that took it all (over TLS, never
        answering close_notify) still CLOSE_BOUND s after."""
        cuts = []
        self.transport._tempDataLen = 1000
        closeWithin(self.transport, self.clock, 60, lambda *cut: cuts.append(cut))
        self.clock.pump([CLOSE_BOUND] * 29)
        self.assertFalse(self.transport.aborted)
        self.clock.pump([CLOSE_BOUND])
        self.assertTrue(self.transport.aborted)
        self.assertEqual(cuts, [(1000, 60)])
        transport = BufferedTransport(self)
        closeWithin(transport, self.clock, 60, cuts.append)
        self.clock.advance(CLOSE_BOUND)
        self.assertTrue(transport.aborted)
        self.assertEqual(len(cuts), 1)
