"""Closing a connection within a bound: ``closeWithin`` closes it once what
was written to it has gone out and cuts it if it is still there
``CLOSE_BOUND`` s after its peer last took any of it (or a longer bound
the caller gives).  A TLS close waits
for the peer's close_notify (or its close), and a peer that sends neither,
or reads nothing, would else keep the connection, and all the server holds
for it, for as long as it likes; a peer still taking a large answer is not
cut for being slow.  ``unsent`` tells what a peer has not taken yet."""

import fcntl
import struct
import termios

CLOSE_BOUND = 2  # seconds a closing connection's peer has to take more of it, or its close, before it is cut


def _tcpTransport(transport):
    """Twisted's TCP transport of ``transport`` (under the TLS layer if any)."""
    while not hasattr(transport, "dataBuffer") and hasattr(transport, "transport"):
        transport = transport.transport
    return transport


def _inBuffer(tcp):
    """Bytes in the write buffer of Twisted's TCP transport ``tcp``; None
    where that is not known."""
    try:
        return len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen
    except AttributeError:
        return None


def buffered(transport):
    """Bytes written to ``transport`` still in the write buffer of Twisted's
    TCP transport (not yet handed to the socket); None where that is not
    known."""
    return _inBuffer(_tcpTransport(transport))


def unsent(transport):
    """Bytes written to ``transport`` that its peer has not taken yet: in
    the write buffer of Twisted's TCP transport (under the TLS layer if
    any) and in its socket's send queue (``SIOCOUTQ``); None where that is
    not known.  Twisted resumes its producer only once the buffer is empty,
    and the socket takes more of it only once half its queue is free: this
    tells a peer reading slowly from one reading nothing."""
    tcp = _tcpTransport(transport)
    inBuffer = _inBuffer(tcp)
    try:
        queued, = struct.unpack("i", fcntl.ioctl(tcp.getHandle().fileno(), termios.TIOCOUTQ, b"\0" * 4))
    except (AttributeError, OSError):
        return None
    return None if inBuffer is None else inBuffer + queued


class _Cut:
    """The abort ``closeWithin`` arms, put off while the peer takes more of
    what was written (``active``/``cancel`` as an IDelayedCall's)."""

    def __init__(self, transport, clock, stalled, onCut):
        self.transport = transport
        self.clock = clock
        self.stalled = stalled
        self.onCut = onCut
        self.left = unsent(transport)
        self.since = clock.seconds()  # when the peer last took any of it
        self.call = clock.callLater(CLOSE_BOUND, self._due)

    def _due(self):
        left = unsent(self.transport)
        if left and self.left is not None:
            if left < self.left:
                self.left, self.since = left, self.clock.seconds()
            if self.clock.seconds() - self.since < self.stalled:
                self.call = self.clock.callLater(CLOSE_BOUND, self._due)
                return
        if left and self.onCut is not None:
            self.onCut(left, self.stalled)
        self.transport.abortConnection()

    def active(self):
        return self.call.active()

    def cancel(self):
        self.call.cancel()


def closeWithin(transport, clock, stalled=CLOSE_BOUND, onCut=None):
    """Close ``transport`` once what was written to it has gone out, or cut
    it ``CLOSE_BOUND`` s after it has, or after its peer has taken none of
    it for ``stalled`` s (a TLS peer that never completes the handshake or
    never answers close_notify, a peer that reads nothing), first calling
    ``onCut(bytes left, stalled)`` when some was left; returns the cut to
    cancel once the connection is lost.  A peer reading a large answer
    slowly takes none of it for seconds at a time (a loopback socket's
    queue moves by 64 KB), or pauses: ``stalled`` longer than
    ``CLOSE_BOUND`` spares it."""
    transport.loseConnection()
    return _Cut(transport, clock, stalled, onCut)
