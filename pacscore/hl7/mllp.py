"""The HL7 listener: the Minimal Lower Layer Protocol (MLLP) over TCP.

A message travels as ``0x0B <message> 0x1C 0x0D``.  ``MLLPProtocol`` cuts
the byte stream into messages, hands them one at a time, in order, to the
factory's handler and writes each ACK (framed) before the next message is
handed on.  Bytes outside a frame are discarded, blanks (the line feed
Windows senders put after ``0x1C 0x0D``) silently, others with a warning
counted in ``hl7Errors``; a connection that starts as an HTTP request
(``POST / HTTP/1.1``: a browser's page posting an MLLP frame as its body, a
cross-protocol request) is closed as soon as its method, a space and the
first byte of its target are in, however long its request line, nothing after it applied, and so is one
that starts a TLS handshake (a sender set up for TLS: its ClientHello, a 0x0B in it, held the
connection as an unfinished frame); a start byte inside a
frame starts a new one, the unfinished one discarded unanswered (a sender
that gave up on a message and sent the next must not have the two run
together: the second would take the first one's patient); an oversized
frame gets an AR and the connection is closed, and so does a frame that
would take the bytes of all connections' unfinished frames past the factory's
``maxBuffered`` (a frame holding an HL7 batch gets an acknowledgment batch,
each message whose MSH is in the frame's first ``SALVAGE_BYTES`` AR, as
for a handler failure every message of it); nothing a peer sends raises out of
``dataReceived``.  A peer that half-closes after sending (``nc -N``, a
``shutdown(SHUT_WR)``) still gets the ACKs of its messages; the connection
closes once they are written.  The protocol is its transport's streaming
producer: while the transport's write buffer is full (the peer does not
read its ACKs) no message is handled, so the queue fills and reading
pauses; a peer that takes nothing for the idle timeout is cut off (one
whose ACKs leave the write buffer, however slowly, is not: ``unsent``).  A
connection the listener closes (idle, refused, garbage) is cut if it is
still there ``CLOSE_BOUND`` s later (``pacscore.closing``: a TLS peer that
never answers close_notify would else keep its connection slot and its
unfinished frame).  Over TLS, a failed handshake is logged with its cause
(``pacscore.tls.warnOfTLSFailure``), and one the idle timeout cuts before
it completed as such.
"""

import math
import re
from collections import deque

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.logger import Logger
from twisted.protocols import policies
from zope.interface import implementer

from pacscore.closing import closeWithin, unsent
from pacscore.dicom.admission import LimitedFactory
from pacscore.hl7 import message
from pacscore.hostport import hostPort
from pacscore.tls import HandshakeListener, isTLSHandshake, warnOfTLSFailure

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = 0x0D
BLANKS = b" \t\r\n"  # skipped silently between frames
HTTP_METHOD = re.compile(rb"[A-Z][A-Z_-]{0,19}")  # POST, GET, OPTIONS, PROPFIND, VERSION-CONTROL
HEAD_BYTES = 80  # of a connection's first bytes, what is logged of an HTTP request

OUTSIDE, INSIDE, AFTER_END = "outside", "inside", "after end"

PAUSE_QUEUE_LENGTH = 16   # messages waiting for the handler before we stop reading
SALVAGE_BYTES = 65536     # what a refused frame keeps to answer it (its MSH; a batch's MSHs)
DEFAULT_BUFFERED_MB = 64  # HL7MaxBufferedMB


def frame(data):
    """``data`` in an MLLP block."""
    return START_BLOCK + data + END_BLOCK + b"\r"


def _frameStart(buffer, chunk):
    """What a refused frame keeps to answer it: its first ``SALVAGE_BYTES``
    (``buffer``, the bytes held, then ``chunk``), cut after their last
    segment end when the frame is longer, so that no message is answered
    with a control ID cut short."""
    start = bytes(buffer[:SALVAGE_BYTES]) + chunk[:max(0, SALVAGE_BYTES - len(buffer))]
    if len(buffer) + len(chunk) > len(start):
        end = max(start.rfind(b"\r"), start.rfind(b"\n"))
        start = start[:end] if end > 0 else start
    return start


def httpRequestStarts(head):
    """Whether ``head``, the first bytes of a connection (leading blanks
    taken off), start an HTTP request: a method, a space and the first byte
    of a request target, any of its forms (``POST /``, ``GET http://``,
    ``OPTIONS *``, ``CONNECT pacs:2575``), as no MLLP sender starts; None
    while too few bytes are in to tell."""
    method, space, target = head.partition(b" ")
    if not space:
        return None if not method or HTTP_METHOD.fullmatch(method) else False
    if not HTTP_METHOD.fullmatch(method):
        return False
    return 0x21 <= target[0] <= 0x7E if target else None


@implementer(IHalfCloseableProtocol, IPushProducer)
class MLLPProtocol(HandshakeListener, protocol.Protocol, policies.TimeoutMixin):
    """One MLLP connection; the factory gives ``handler``, ``maxMessageSize``,
    ``idleTimeout``, ``clock`` and ``counters``."""

    log = Logger()

    def __init__(self):
        self._state = OUTSIDE
        self._buffer = bytearray()
        self._garbage = 0          # bytes of the current run outside a frame
        self._garbageLogged = False  # the current run had bytes other than blanks, logged
        self._head = b""           # the bytes before the first frame while whether they start an HTTP request is unknown; then None
        self._held = b""           # a first byte 0x16, unread until the next tells whether a TLS handshake starts
        self._queue = deque()      # complete messages waiting for the handler
        self._busy = False         # the handler is working on a message, or a refused frame's answer is made
        self._draining = False     # _processQueue is on the stack
        self._readPaused = False
        self._writePaused = False  # the transport's write buffer is full
        self._unsent = None        # unsent(transport) when last seen paused
        self._producing = False    # registered as the transport's producer
        self._refused = None       # (start, why) of a refused frame, answered AR once the queue is done
        self._received = 0
        self._readClosed = False   # the peer half-closed: close once every ACK is written
        self._closing = None       # the cut of a connection closing (closeWithin)

    # -- connection --------------------------------------------------------

    def connectionMade(self):
        self.peer = self.transport.getPeer()
        setTcpNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setTcpNoDelay is not None:
            setTcpNoDelay(True)
        self.factory.count("hl7Connections")
        self.factory.opened(self.transport)
        self.setTimeout(self.factory.idleTimeout)
        self.transport.registerProducer(self, True)
        self._producing = True
        self.log.info("{peer}: HL7 connection opened", peer=self.peerName())

    def connectionLost(self, reason):
        self.connected = False
        self.setTimeout(None)
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        warnOfTLSFailure(self.log, f"{self.peerName()}: HL7 ", reason, self.transport)
        dropped = len(self._queue) + self._busy
        self._queue.clear()
        self._takeBuffer()
        self.factory.closed(self.transport)
        self.log.info("{peer}: HL7 connection closed after {received} messages{unanswered}",
                      peer=self.peerName(), received=self._received,
                      unanswered=f", {dropped} left unanswered" if dropped else "")

    def readConnectionLost(self):
        if self._state != OUTSIDE and self._buffer:
            self.log.warn("{peer}: the peer stopped sending in the middle of an MLLP frame; its "
                          "{size} bytes are dropped", peer=self.peerName(), size=len(self._buffer))
        self._readClosed = True
        self._processQueue()

    def writeConnectionLost(self):
        self._close()

    def _close(self, abort=False):
        """Close once the ACKs written are sent, cut after ``CLOSE_BOUND`` s
        (or at once, ``abort``), the producer unregistered first: a
        transport that paused it would else wait for it."""
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()
        if abort:
            self.transport.abortConnection()
        elif self._closing is None:
            self._closing = closeWithin(self.transport, self.factory.clock)

    # -- as the transport's producer ---------------------------------------

    def pauseProducing(self):
        """The write buffer is full: handle nothing until it drains."""
        self._writePaused = True
        self._unsent = unsent(self.transport)

    def resumeProducing(self):
        self._writePaused = False
        self._processQueue()

    def stopProducing(self):
        """The connection is lost; ``connectionLost`` clears up."""

    def peerName(self):
        peer = getattr(self, "peer", None)
        return hostPort(getattr(peer, 'host', '?'), getattr(peer, 'port', ''))

    def callLater(self, delay, f, *args, **kw):
        """The TimeoutMixin timer, on the factory's clock."""
        return self.factory.clock.callLater(delay, f, *args, **kw)

    def timeoutConnection(self):
        if self._busy:       # we are the slow side, not the peer
            self.setTimeout(self.timeOut)
            return
        if self._writePaused:
            left, self._unsent = self._unsent, unsent(self.transport)
            if self._unsent is not None and left is not None and self._unsent < left:
                self.setTimeout(self.timeOut)  # it reads its ACKs, slowly
                return
            self.log.info("{peer}: the peer took nothing of its HL7 ACKs for {timeout} s{waiting}, cutting the "
                          "connection", peer=self.peerName(), timeout=self.timeOut,
                          waiting="" if self._unsent is None else f" ({self._unsent} bytes of them waiting)")
            self._close(abort=True)
            return
        if self.handshaking:
            self.log.warn("{peer}: no completed TLS handshake within {timeout} s, closing the HL7 connection",
                          peer=self.peerName(), timeout=self.timeOut)
        elif self._state != OUTSIDE and self._buffer:
            self.log.warn("{peer}: no data for {timeout} s in the middle of an MLLP frame, closing the HL7 "
                          "connection; its {size} bytes are dropped", peer=self.peerName(), timeout=self.timeOut,
                          size=len(self._buffer))
        else:
            self.log.info("{peer}: no data for {timeout} s, closing the HL7 connection",
                          peer=self.peerName(), timeout=self.timeOut)
        self._close()

    # -- framing -----------------------------------------------------------

    def dataReceived(self, data):
        self.resetTimeout()
        try:
            self._feed(data)
        except Exception:
            self.log.failure("{peer}: internal error while reading HL7 data, closing", peer=self.peerName())
            self.factory.count("hl7Errors")
            self._close()

    def _feed(self, data):
        if self._head is not None:
            data = self._tlsStart(data)
        position = 0
        while position < len(data):
            if self._refused is not None or self.transport.disconnecting:
                return
            if self._state == OUTSIDE:
                start = data.find(START_BLOCK, position)
                end = len(data) if start < 0 else start
                if end > position:
                    self._discard(data[position:end])
                if start < 0:
                    return
                self._garbage = 0
                self._garbageLogged = False
                self._head = None
                self._state = INSIDE
                position = start + 1
            elif self._state == INSIDE:
                end = data.find(END_BLOCK, position)
                restart = data.find(START_BLOCK, position, len(data) if end < 0 else end)
                if restart >= 0:
                    self._frameAbandoned(len(self._buffer) + restart - position)
                    position = restart + 1
                    continue
                chunk = data[position:len(data) if end < 0 else end]
                if not self._keep(chunk):
                    return
                if end < 0:
                    return
                self._frameComplete()
                self._state = AFTER_END
                position = end + 1
            else:
                if data[position] == CARRIAGE_RETURN:
                    position += 1
                else:
                    self.log.warn("{peer}: MLLP end byte 0x1C followed by {byte:#04x} instead of 0x0D",
                                  peer=self.peerName(), byte=data[position])
                self._state = OUTSIDE

    def _tlsStart(self, data):
        """``data``, received before the first frame, after the byte held
        from before it; none when the connection starts a TLS handshake
        (closing it) or they are one byte, 0x16 (held: the next tells)."""
        data, self._held = self._held + data, b""
        tls = isTLSHandshake(self._head + data[:2])
        if tls is None:
            self._held = data
            return b""
        if tls:
            self._head = None
            self.factory.count("hl7Errors")
            self.log.warn("{peer}: a TLS handshake on the plain HL7 port: the peer uses TLS, closing",
                          peer=self.peerName())
            self._close()
            return b""
        return data

    def _discard(self, garbage):
        line = self._httpRequestLine(garbage)
        if line is not None:
            self.factory.count("hl7Errors")
            self.log.warn("{peer}: an HTTP request on the HL7 port (a browser?), closing: {line!r}",
                          peer=self.peerName(), line=line[:80])
            self._close()
            return
        if not self._garbageLogged and garbage.strip(BLANKS):
            self._garbageLogged = True
            self.factory.count("hl7Errors")
            self.log.warn("{peer}: discarding bytes outside an MLLP frame: {sample!r}",
                          peer=self.peerName(), sample=bytes(garbage[:32]))
        self._garbage += len(garbage)
        limit = min(self.factory.maxMessageSize, self.factory.maxBuffered)
        if self._garbage > limit:
            self.log.warn("{peer}: more than {limit} bytes without an MLLP start byte, closing",
                          peer=self.peerName(), limit=limit)
            self._close()

    def _httpRequestLine(self, garbage):
        """The first line, as far as it is in, of an HTTP request the
        connection starts with (``garbage`` the next bytes before its first
        frame), told by its start (``httpRequestStarts``): a request line of
        any length is closed; None while its start is not in, or if it is
        no HTTP request."""
        if self._head is None:
            return None
        head = (self._head + garbage).lstrip(BLANKS)[:HEAD_BYTES]
        starts = httpRequestStarts(head)
        self._head = head if starts is None else None
        return re.split(rb"[\r\n]", head, maxsplit=1)[0] if starts else None

    def _keep(self, chunk):
        """Add ``chunk`` to the frame, or refuse the frame: whether it was added."""
        limit, held = self.factory.maxMessageSize, self.factory.maxBuffered
        if len(self._buffer) + len(chunk) > limit:
            self.log.warn("{peer}: HL7 message larger than {limit} bytes, rejecting it and closing",
                          peer=self.peerName(), limit=limit)
            why = f"message larger than {limit} bytes"
        elif self.factory.buffered + len(chunk) > held:
            self.factory.warnBufferFull(self.log, self.peerName())
            why = "the server holds too many unfinished HL7 messages (HL7MaxBufferedMB): send it again later"
        else:
            self._buffer += chunk
            self.factory.buffered += len(chunk)
            return True
        self.factory.count("hl7Errors")
        self._refused = (_frameStart(self._buffer, chunk), why)
        self._takeBuffer()
        self._processQueue()
        return False

    def _takeBuffer(self):
        """The frame's bytes so far, no longer held."""
        raw, self._buffer = bytes(self._buffer), bytearray()
        self.factory.buffered -= len(raw)
        return raw

    def _frameAbandoned(self, size):
        self._takeBuffer()
        self.factory.count("hl7Errors")
        self.log.warn("{peer}: MLLP start byte 0x0B inside a frame: the unfinished frame ({size} bytes) is "
                      "discarded unanswered, a new one starts", peer=self.peerName(), size=size)

    def _frameComplete(self):
        raw = self._takeBuffer()
        self.factory.frameComplete()
        self._received += 1
        self.factory.count("hl7Messages")
        self._queue.append(raw)
        if len(self._queue) >= PAUSE_QUEUE_LENGTH and not self._readPaused:
            self._readPaused = True
            self.transport.pauseProducing()
        self._processQueue()

    # -- handling, one message at a time -----------------------------------

    def _processQueue(self):
        if self._draining:
            return
        self._draining = True
        try:
            while not (self._busy or self._writePaused) and self.connected and not self.transport.disconnecting:
                if self._queue:
                    self._handle(self._queue.popleft())
                elif self._refused is not None:
                    self._rejectRefused()
                    return
                else:
                    if self._readClosed:
                        self._close()
                    elif self._readPaused:
                        self._readPaused = False
                        self.transport.resumeProducing()
                    return
        finally:
            self._draining = False

    def _handle(self, raw):
        self._busy = True
        d = defer.maybeDeferred(self.factory.handler, raw)
        d.addErrback(self._handlerFailed, raw)
        d.addCallback(self._answer)
        d.addErrback(self._answerFailed)
        d.addBoth(self._handled)

    def _handlerFailed(self, failure, raw):
        self.factory.count("hl7Errors")
        self.log.failure("{peer}: the HL7 handler failed, answering AR", failure, peer=self.peerName())
        return self._refusal(raw, "internal error while handling the message")

    def _refusal(self, raw, why):
        """Deferred firing with the answer to a frame refused whole
        (``message.refusal``: for a batch, every message AR), made in
        the factory's ``inThread``."""
        return self.factory.inThread(message.refusal, raw, why, 207, self.factory.application)

    def _answer(self, ackBytes):
        if self.connected:
            self.transport.write(frame(ackBytes))
            self.resetTimeout()

    def _answerFailed(self, failure):
        self.log.failure("{peer}: could not send the HL7 ACK", failure, peer=self.peerName())

    def _handled(self, _):
        self._busy = False
        self._processQueue()

    def _rejectRefused(self):
        """Answer the refused frame (``_refused``, kept so that nothing
        more is read) and close."""
        self._busy = True
        d = self._refusal(*self._refused)
        d.addCallback(self._answer)
        d.addErrback(self._answerFailed)
        d.addBoth(self._refusalAnswered)

    def _refusalAnswered(self, _):
        """Close, unless the connection was lost while the answer was made
        (``connectionLost`` has cleared up: closing again would arm a cut
        nobody cancels)."""
        self._busy = False
        if self.connected:
            self._close()


class MLLPFactory(LimitedFactory, protocol.Factory):
    """Serves MLLP connections for ``handler(raw) -> Deferred`` firing with
    the ACK (bytes, unframed) for the message ``raw``; at most ``limits``
    (an AssociationLimits; None: any number) connections at once, their
    unfinished frames holding at most ``maxBuffered`` bytes in all (never
    less than ``maxMessageSize``; 0: any number), each at most
    ``maxMessageSize`` bytes (0 or less: any number, within ``maxBuffered``).

    ``counters`` counts ``hl7Messages`` (frames received), ``hl7Errors``
    (handler failures, oversized frames, runs of bytes outside frames) and
    ``hl7Connections``; pass the archive's counters to share them.
    ``application`` (the AE title) is MSH-3 of the ACKs the listener
    makes itself (an oversized message, a handler failure: for a frame
    holding an HL7 batch, an acknowledgment batch, every message AR), in
    ``inThread`` (a thread pool's Deferred-returning call; None: at once).
    """

    protocol = MLLPProtocol
    noisy = False
    limitKeys = ("HL7MaxConnections", "HL7MaxConnectionsPerPeer")
    fileShare = 16      # HL7MaxConnections is at most the open-file limit / fileShare
    defaultTotal = 200  # HL7MaxConnections
    perPeer = 32        # HL7MaxConnectionsPerPeer
    log = Logger()

    def __init__(self, handler, maxMessageSize=1 << 20, idleTimeout=300, clock=None, counters=None,
                 application="PACS", limits=None, maxBuffered=DEFAULT_BUFFERED_MB << 20, inThread=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.handler = handler
        # inThread(f, *args) -> Deferred: where the answer to a refused frame is made (a thread pool; None: at once)
        self.inThread = inThread or defer.maybeDeferred
        self.application = application
        self.maxMessageSize = maxMessageSize if maxMessageSize > 0 else math.inf
        self.maxBuffered = max(maxBuffered, maxMessageSize) if maxBuffered > 0 else math.inf
        self.buffered = 0            # bytes of all connections' unfinished frames
        self._bufferFullLogged = False
        self.limits = self.limitsOrNone(limits)
        self.idleTimeout = idleTimeout
        self.clock = clock
        self.counters = counters if counters is not None else {}

    def count(self, name):
        self.counters[name] = self.counters.get(name, 0) + 1

    def limitsText(self):
        """The connection limits, ``maxBuffered`` and ``maxMessageSize``, as start-up logs them."""
        held = "any size" if self.maxBuffered == math.inf else f"at most {self.maxBuffered / (1 << 20):g} MB"
        each = "of any size within that" if self.maxMessageSize == math.inf else f"at most {self.maxMessageSize} bytes"
        return f"{super().limitsText()}; unfinished messages of {held} in all, each {each}"

    def warnBufferFull(self, log, peer):
        """Log a frame refused for ``maxBuffered``: the first since a frame was complete."""
        if not self._bufferFullLogged:
            self._bufferFullLogged = True
            log.warn("{peer}: unfinished HL7 messages of all connections would hold more than {limit} bytes "
                     "(HL7MaxBufferedMB), rejecting this one and closing; more are refused unlogged until a "
                     "message is complete", peer=peer, limit=self.maxBuffered)

    def frameComplete(self):
        self._bufferFullLogged = False
