"""The MLLP listener, driven through a StringTransport with a task.Clock."""

from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import connectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, Logger, capturedLogs, formatEvent
from twisted.trial import unittest
from zope.interface import directlyProvides

from pacscore.closing import CLOSE_BOUND
from pacscore.dicom.admission import AssociationLimits
from pacscore.hl7.message import ack, parseMessage, splitMessages
from pacscore.hl7.mllp import SALVAGE_BYTES, MLLPFactory, frame
from tests.pacscore.dicom.test_admission import Held, connectFrom


def hl7(controlId):
    return f"MSH|^~\\&|RIS|H|PACS|R|20261201||ORM^O01|{controlId}|P|2.5\rPID|1||4711".encode("ascii")


def browserPost(message, path=b"/"):
    """What a browser sends for a page's fetch() POSTing ``message`` in an MLLP frame to ``path`` on the HL7 port."""
    body = frame(message)
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:2575\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n" % (path, len(body))) + body


class RecordingHandler:
    """Answers AA at once, or, when ``deferred``, when the test fires it."""

    def __init__(self, deferred=False):
        self.deferred = deferred
        self.received = []
        self.pending = []

    def __call__(self, raw):
        self.received.append(raw)
        answer = ack(parseMessage(raw), "AA")
        if not self.deferred:
            return defer.succeed(answer)
        d = defer.Deferred()
        self.pending.append((d, answer))
        return d


class MLLPTests(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.handler = RecordingHandler()
        self.connect()

    def connect(self, handler=None, tls=False, **options):
        self.factory = MLLPFactory(handler or self.handler, clock=self.clock, **options)
        self.events = []
        self.protocol = self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.7", 40000))
        self.protocol.log = Logger(observer=self.events.append)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", 40000))
        if tls:
            directlyProvides(self.transport, ISSLTransport)
        self.transport.setTcpNoDelay = lambda enabled: setattr(self.transport, "noDelay", enabled)
        self.protocol.makeConnection(self.transport)

    def acks(self):
        """The control ids the written ACKs answer, checking their framing."""
        data = self.transport.value()
        blocks = data.split(b"\x1c\r")
        self.assertEqual(blocks[-1], b"", data)
        controlIds = []
        for block in blocks[:-1]:
            self.assertTrue(block.startswith(b"\x0b"), block)
            reply = parseMessage(block[1:])
            controlIds.append((reply.value("MSA", 1), reply.value("MSA", 2)))
        return controlIds

    def failures(self, errorType):
        return [e for e in self.events if "log_failure" in e and e["log_failure"].check(errorType)]

    def logged(self, text):
        return [formatEvent(e) for e in self.events if text in formatEvent(e)]

    def test_connection(self):
        self.assertTrue(self.transport.noDelay)
        self.assertEqual(self.factory.counters["hl7Connections"], 1)
        self.assertEqual(self.logged("opened"), ["10.0.0.7:40000: HL7 connection opened"])
        self.protocol.dataReceived(frame(hl7("M1")))
        self.protocol.connectionLost(connectionDone)
        self.assertEqual(self.logged("closed"), ["10.0.0.7:40000: HL7 connection closed after 1 messages"])

    def test_anIPv6PeerIsWrittenInBrackets(self):
        self.events = []
        self.protocol = self.factory.buildProtocol(IPv6Address("TCP", "fd00::2", 40113))
        self.protocol.log = Logger(observer=self.events.append)
        self.protocol.makeConnection(StringTransport(peerAddress=IPv6Address("TCP", "fd00::2", 40113)))
        self.assertEqual(self.logged("opened"), ["[fd00::2]:40113: HL7 connection opened"])

    def test_oneMessage(self):
        self.protocol.dataReceived(frame(hl7("M1")))
        self.assertEqual(self.handler.received, [hl7("M1")])
        self.assertEqual(self.acks(), [("AA", "M1")])
        self.assertEqual(self.factory.counters, {"hl7Messages": 1, "hl7Connections": 1})
        self.assertFalse(self.transport.disconnecting)

    def test_pipelined(self):
        self.protocol.dataReceived(b"".join(frame(hl7(f"M{i}")) for i in range(3)))
        self.assertEqual(self.handler.received, [hl7(f"M{i}") for i in range(3)])
        self.assertEqual(self.acks(), [("AA", f"M{i}") for i in range(3)])
        self.assertEqual(self.factory.counters["hl7Messages"], 3)

    def test_byteByByte(self):
        data = frame(hl7("M1")) + frame(hl7("M2"))
        for i in range(len(data)):
            self.protocol.dataReceived(data[i:i + 1])
        self.assertEqual(self.handler.received, [hl7("M1"), hl7("M2")])
        self.assertEqual(self.acks(), [("AA", "M1"), ("AA", "M2")])
        self.assertEqual(self.logged("discarding"), [])

    def test_sequentialInOrder(self):
        """Message 2 reaches the handler only once ACK 1 is written, however
        the handler's Deferreds would fire."""
        handler = RecordingHandler(deferred=True)
        self.connect(handler)
        self.protocol.dataReceived(frame(hl7("M1")) + frame(hl7("M2")))
        self.assertEqual(handler.received, [hl7("M1")])
        self.assertEqual(self.transport.value(), b"")
        first, firstAck = handler.pending[0]
        first.callback(firstAck)
        self.assertEqual(self.acks(), [("AA", "M1")])
        self.assertEqual(handler.received, [hl7("M1"), hl7("M2")])
        second, secondAck = handler.pending[1]
        second.callback(secondAck)
        self.assertEqual(self.acks(), [("AA", "M1"), ("AA", "M2")])

    def test_outOfOrderAnswersStillGoInOrder(self):
        """A handler whose answers are ready out of order: ACK 1 still goes first."""
        ready = {}
        waiting = {}

        def handler(raw):
            controlId = parseMessage(raw).controlId
            if controlId in ready:
                return defer.succeed(ready[controlId])
            waiting[controlId] = defer.Deferred()
            return waiting[controlId]

        ready["M2"] = ack(parseMessage(hl7("M2")), "AA")
        self.connect(handler)
        self.protocol.dataReceived(frame(hl7("M1")) + frame(hl7("M2")))
        self.assertEqual(self.transport.value(), b"")
        waiting["M1"].callback(ack(parseMessage(hl7("M1")), "AE", "late"))
        self.assertEqual(self.acks(), [("AE", "M1"), ("AA", "M2")])

    def test_halfCloseStillGetsEveryAck(self):
        """A peer that shuts its sending side after its messages gets their
        ACKs, then the connection closes; a frame cut short is dropped."""
        handler = RecordingHandler(deferred=True)
        self.connect(handler)
        self.protocol.dataReceived(frame(hl7("M1")) + frame(hl7("M2")) + b"\x0bMSH|cut")
        self.protocol.readConnectionLost()
        self.assertEqual(self.logged("middle of an MLLP frame"),
                         ["10.0.0.7:40000: the peer stopped sending in the middle of an MLLP frame; "
                          "its 7 bytes are dropped"])
        for number in range(2):
            self.assertFalse(self.transport.disconnecting)
            d, answer = handler.pending[number]
            d.callback(answer)
        self.assertEqual(self.acks(), [("AA", "M1"), ("AA", "M2")])
        self.assertTrue(self.transport.disconnecting)

    def test_garbageBeforeAFrame(self):
        self.protocol.dataReceived(b"hello\r\n")
        self.protocol.dataReceived(b"more noise")
        self.protocol.dataReceived(b"\x0b" + hl7("M1") + b"\x1c\r")
        self.protocol.dataReceived(b"noise again" + frame(hl7("M2")))
        self.assertEqual(self.acks(), [("AA", "M1"), ("AA", "M2")])
        self.assertEqual(len(self.logged("discarding bytes outside an MLLP frame")), 2)
        self.assertFalse(self.transport.disconnecting)

    def test_anHTTPRequestIsClosedAtItsFirstLine(self):
        """A browser's page posting an MLLP frame as its body (fetch with
        mode no-cors, a cross-protocol request): the connection is closed at
        the request line, the frame never handled, in one piece or byte by
        byte."""
        data = browserPost(hl7("M1"))
        for chunks in ([data], [data[i:i + 1] for i in range(len(data))]):
            self.connect()
            for chunk in chunks:
                self.protocol.dataReceived(chunk)
            self.assertEqual(self.handler.received, [])
            self.assertEqual(self.transport.value(), b"")
            self.assertTrue(self.transport.disconnecting)
            line = "POST / HTTP/1.1" if len(chunks) == 1 else "POST /"  # as far as it is in
            self.assertEqual(self.logged("HTTP"), ["10.0.0.7:40000: an HTTP request on the HL7 port (a browser?), "
                                                   f"closing: b'{line}'"])
            self.assertEqual(self.factory.counters["hl7Errors"], 1 + (len(chunks) > 1))

    def test_aTLSClientIsClosedAtOnce(self):
        """A sender set up for TLS on the plain port: its ClientHello (a
        0x0B in it began a frame, which held the connection until the
        sender gave up, or TCPIPTimeOut) closes the connection at once with
        a line saying the peer uses TLS, whole and in pieces (its first byte
        alone, 0x16, was discarded and the rest, unchecked, held as a frame);
        a 0x16 that starts no handshake is discarded as any other byte."""
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\x20" + b"\x0b" * 32
        for chunks in ([hello], [hello[:2], hello[2:]], [hello[:1], hello[1:]], [hello[:1], b"", hello[1:]]):
            self.connect()
            for chunk in chunks:
                self.protocol.dataReceived(chunk)
            self.assertEqual(self.transport.value(), b"")
            self.assertTrue(self.transport.disconnecting)
            self.assertEqual(self.logged("TLS"), ["10.0.0.7:40000: a TLS handshake on the plain HL7 port: the peer "
                                                  "uses TLS, closing"])
            self.assertEqual(self.logged("MLLP"), [])
            self.assertEqual(self.factory.counters["hl7Errors"], 1)
        self.connect()
        for chunk in (b"\x16", b"\x17" + frame(hl7("M1"))):
            self.protocol.dataReceived(chunk)
        self.assertEqual(self.acks(), [("AA", "M1")])
        self.assertEqual(self.logged("MLLP"), ["10.0.0.7:40000: discarding bytes outside an MLLP frame: b'\\x16\\x17'"])

    def test_anHTTPRequestWithALongURLIsClosedAtItsStart(self):
        """A request line longer than any head looked at (a 9000-byte path,
        as fetch() sends it; or an absolute URL) is told by its method and
        target's start: closed, its frame never handled, in one piece, in
        pieces of 1000 bytes and byte by byte."""
        for path in (b"/" + b"a" * 9000, b"http://pacs:2575/" + b"a" * 9000):
            data = browserPost(hl7("M1"), path)
            for size in (len(data), 1000, 1):
                self.connect()
                for start in range(0, len(data), size):
                    self.protocol.dataReceived(data[start:start + size])
                self.assertEqual(self.handler.received, [])
                self.assertEqual(self.transport.value(), b"")
                self.assertTrue(self.transport.disconnecting)
                self.assertEqual(len(self.logged("an HTTP request on the HL7 port")), 1)

    def test_everyFormOfRequestTargetIsClosedAtItsStart(self):
        """The asterisk form (OPTIONS *), the authority form (CONNECT
        host:port) and a bare target (GET x) are closed, their frame never
        handled, as soon as the target's first byte is in: whole, and byte
        by byte without their line end."""
        for line in (b"OPTIONS * HTTP/1.1", b"CONNECT pacs:2575 HTTP/1.1", b"GET x HTTP/1.1"):
            data = line + b"\r\nHost: x\r\n\r\n" + frame(hl7("M1"))
            for chunks in ([data], [data[i:i + 1] for i in range(line.index(b" ") + 2)]):
                self.connect()
                for chunk in chunks:
                    self.protocol.dataReceived(chunk)
                self.assertEqual(self.handler.received, [])
                self.assertEqual(self.transport.value(), b"")
                self.assertTrue(self.transport.disconnecting, line)
                self.assertEqual(len(self.logged("an HTTP request on the HL7 port")), 1)

    def test_onlyTheFirstLineIsTakenForAnHTTPRequest(self):
        """A line of other bytes before the first frame (an HTTP-like line
        after it), blanks, a method alone or with a blank after its space,
        or an HTTP-like line after a frame, are noise as before."""
        for noise in (b"hello\r\nPOST / HTTP/1.1\r\n", b"\r\n\n \x00", b"POST\r\n", b"POST \r\n",
                      b"ok done", b"Get x"):
            self.connect()
            self.protocol.dataReceived(noise + frame(hl7("M1")) + b"GET / HTTP/1.1\r\n" + frame(hl7("M2")))
            self.assertEqual(self.acks(), [("AA", "M1"), ("AA", "M2")])
            self.assertFalse(self.transport.disconnecting)
            self.assertEqual(self.logged("HTTP request"), [])

    def test_blanksBetweenFramesAreSkippedSilently(self):
        """A line feed after 0x1C 0x0D (Windows senders), and blanks, are no
        garbage: not logged, not counted; garbage after them still is."""
        self.protocol.dataReceived(b"\r\n" + frame(hl7("M1")) + b"\n" + frame(hl7("M2")) + b"\r\n \t")
        self.protocol.dataReceived(b"\n")
        self.assertEqual(self.acks(), [("AA", "M1"), ("AA", "M2")])
        self.assertEqual(self.logged("outside an MLLP frame"), [])
        self.assertNotIn("hl7Errors", self.factory.counters)
        self.protocol.dataReceived(b"\r\nnoise" + frame(hl7("M3")))
        self.assertEqual(self.logged("outside an MLLP frame"),
                         ["10.0.0.7:40000: discarding bytes outside an MLLP frame: b'\\r\\nnoise'"])
        self.assertEqual(self.factory.counters["hl7Errors"], 1)

    def test_aStartByteInsideAFrameStartsANewOne(self):
        """A sender that gave up on M1 halfway and sent M2: M1 is dropped
        unanswered, never run together with M2 (byte by byte too)."""
        data = b"\x0b" + hl7("M1")[:40] + frame(hl7("M2"))
        for chunks in ([data], [data[i:i + 1] for i in range(len(data))]):
            self.handler.received.clear()
            self.connect()
            for chunk in chunks:
                self.protocol.dataReceived(chunk)
            self.assertEqual(self.handler.received, [hl7("M2")])
            self.assertEqual(self.acks(), [("AA", "M2")])
            self.assertEqual(self.logged("inside a frame"),
                             ["10.0.0.7:40000: MLLP start byte 0x0B inside a frame: the unfinished frame (40 bytes) "
                              "is discarded unanswered, a new one starts"])
            self.assertEqual(self.factory.counters["hl7Errors"], 1)

    def test_endByteWithoutCarriageReturn(self):
        """A frame ending in 0x1C alone is answered at once; what follows is logged."""
        self.protocol.dataReceived(b"\x0b" + hl7("M1") + b"\x1c")
        self.assertEqual(self.acks(), [("AA", "M1")])
        self.protocol.dataReceived(frame(hl7("M2")))
        self.assertEqual(self.acks(), [("AA", "M1"), ("AA", "M2")])
        self.assertEqual(self.logged("0x1C followed by"),
                         ["10.0.0.7:40000: MLLP end byte 0x1C followed by 0x0b instead of 0x0D"])

    def test_tooMuchGarbage(self):
        self.connect(maxMessageSize=100)
        self.protocol.dataReceived(b"x" * 60)
        self.assertFalse(self.transport.disconnecting)
        self.protocol.dataReceived(b"x" * 60)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.logged("without an MLLP start byte")), 1)
        self.protocol.dataReceived(frame(hl7("M1")))
        self.assertEqual(self.handler.received, [])

    def test_noMessageSizeLimit(self):
        """HL7MaxMessageSize 0 (or less) is no limit, as the other limit
        keys' 0 is (it refused every message): a message is then bounded by
        HL7MaxBufferedMB alone, and so is a run of bytes outside frames."""
        for maxMessageSize in (0, -1):
            self.connect(maxMessageSize=maxMessageSize, maxBuffered=300)
            self.protocol.dataReceived(frame(hl7("M1") + b"\rNTE|1||" + b"x" * 200))
            self.assertEqual(self.acks(), [("AA", "M1")])
            self.protocol.dataReceived(frame(hl7("BIG") + b"\rNTE|1||" + b"x" * 300))
            self.assertEqual(self.acks(), [("AA", "M1"), ("AR", "BIG")])
            self.assertTrue(self.transport.disconnecting)
            self.connect(maxMessageSize=maxMessageSize, maxBuffered=300)
            self.protocol.dataReceived(b"x" * 301)
            self.assertTrue(self.transport.disconnecting)

    def test_oversizeFrame(self):
        """An oversized message gets an AR naming our AE title and the connection closes."""
        self.connect(maxMessageSize=200, application="PACSAE")
        self.protocol.dataReceived(frame(hl7("M1")))
        self.protocol.dataReceived(b"\x0b" + hl7("BIG") + b"\rNTE|1||" + b"x" * 100)
        self.assertFalse(self.transport.disconnecting)
        self.protocol.dataReceived(b"x" * 100)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.acks(), [("AA", "M1"), ("AR", "BIG")])
        reject = parseMessage(self.transport.value().split(b"\x1c\r")[1][1:])
        self.assertEqual(reject.value("MSH", 3), "PACSAE")
        self.assertEqual(reject.value("MSA", 3), "message larger than 200 bytes")
        self.assertEqual(reject.value("ERR", 3, 0), "207")
        self.protocol.dataReceived(b"x\x1c\r" + frame(hl7("M3")))
        self.assertEqual(self.handler.received, [hl7("M1")])
        self.assertEqual(self.factory.counters["hl7Errors"], 1)

    def test_oversizeWaitsForEarlierAnswers(self):
        handler = RecordingHandler(deferred=True)
        self.connect(handler, maxMessageSize=200)
        self.protocol.dataReceived(frame(hl7("M1")) + b"\x0b" + hl7("BIG") + b"y" * 300)
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)
        d, answer = handler.pending[0]
        d.callback(answer)
        self.assertEqual(self.acks(), [("AA", "M1"), ("AR", "BIG")])
        self.assertTrue(self.transport.disconnecting)

    def test_idleTimeout(self):
        self.connect(idleTimeout=30)
        self.clock.advance(20)
        self.protocol.dataReceived(frame(hl7("M1")))
        self.clock.advance(20)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(11)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.logged("no data"),
                         ["10.0.0.7:40000: no data for 30 s, closing the HL7 connection"])

    def test_anUnfinishedFrameCutByTheIdleTimeoutIsSaidSo(self):
        """A peer that sent half an order and went silent was cut with only
        'no data for 30 s' (info), its order dropped without the warning a
        peer that closes so gets."""
        self.connect(idleTimeout=30)
        self.protocol.dataReceived(b"\x0b" + hl7("M1")[:40])
        self.clock.advance(31)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.logged("no data"),
                         ["10.0.0.7:40000: no data for 30 s in the middle of an MLLP frame, closing the HL7 "
                          "connection; its 40 bytes are dropped"])
        [event] = [e for e in self.events if "no data" in formatEvent(e)]
        self.assertEqual(event["log_level"], LogLevel.warn)

    def test_anUnfinishedTLSHandshakeIsSaidSo(self):
        """Over TLS, the idle timeout cutting a peer whose handshake did
        not complete (it sent no ClientHello, or half of one) says so."""
        self.connect(idleTimeout=30, tls=True)
        self.clock.advance(30)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.logged("closing the HL7 connection"),
                         ["10.0.0.7:40000: no completed TLS handshake within 30 s, closing the HL7 connection"])

    def test_aCloseNeverCompletedIsCutWithinABound(self):
        """A connection the listener closes whose close never completes
        (over TLS, a peer that never answers close_notify) is cut
        CLOSE_BOUND s later, so its slot and its unfinished frame go."""
        self.connect(idleTimeout=30)
        aborted = []
        self.transport.abortConnection = lambda: aborted.append(True)
        self.protocol.dataReceived(b"\x0b" + hl7("M1"))
        self.clock.advance(30)
        self.assertTrue(self.transport.disconnecting)
        self.clock.advance(CLOSE_BOUND)
        self.assertEqual(aborted, [True])
        self.protocol.connectionLost(connectionDone)
        self.assertEqual((self.factory.buffered, self.factory.limits.open), (0, 0))

    def test_noTimeoutWhileTheHandlerWorks(self):
        handler = RecordingHandler(deferred=True)
        self.connect(handler, idleTimeout=30)
        self.protocol.dataReceived(frame(hl7("M1")))
        self.clock.advance(100)
        self.assertFalse(self.transport.disconnecting)
        d, answer = handler.pending[0]
        d.callback(answer)
        self.assertEqual(self.acks(), [("AA", "M1")])
        self.clock.advance(31)
        self.assertTrue(self.transport.disconnecting)

    def test_handlerFailure(self):
        def handler(raw):
            if b"|BAD|" in raw:
                raise RuntimeError("database is gone")
            return self.handler(raw)

        self.connect(handler, application="PACSAE")
        self.protocol.dataReceived(frame(hl7("BAD")) + frame(hl7("M2")))
        self.assertEqual(self.acks(), [("AR", "BAD"), ("AA", "M2")])
        reject = parseMessage(self.transport.value().split(b"\x1c\r")[0][1:])
        self.assertEqual(reject.value("MSH", 3), "PACSAE")
        self.assertEqual(reject.value("ERR", 3, 0), "207")
        self.assertEqual(len(self.failures(RuntimeError)), 1)
        self.assertEqual(self.factory.counters["hl7Errors"], 1)
        self.assertFalse(self.transport.disconnecting)

    def test_aBatchRefusedByTheListenerIsAnsweredByAnAcknowledgmentBatch(self):
        """A frame holding an HL7 batch that the listener refuses itself (too
        large, the handler failing) was answered by one ACK naming its first
        message ('MSA|AR|G1|message larger than ...', no BHS, nothing for G2),
        so a sender matching ACKs by control ID waited for G2 for ever: it
        gets an acknowledgment batch, every message AR, as an applied batch's."""
        batch = b"BHS|^~\\&|RIS|H|||||||BIG1\r" + hl7("G1") + b"\r" + hl7("G2") + b"\rNTE|1||"

        def answered():
            answer = self.transport.value()
            self.assertTrue(answer.startswith(b"\x0b") and answer.endswith(b"\x1c\r"), answer)
            segments = answer[1:-2].split(b"\r")
            self.assertEqual(segments[-1], b"")
            self.assertEqual((segments[0][:4], segments[0].split(b"|")[-1], segments[-2]), (b"BHS|", b"BIG1", b"BTS|2"))
            acks = [parseMessage(raw).segment("MSA") for raw in splitMessages(answer)]
            return [(msa.value(1), msa.value(2), msa.value(3)) for msa in acks]

        made = []  # the answer is made in the factory's inThread (a thread pool), nothing more read meanwhile

        def later(f, *args):
            made.append(defer.Deferred().addCallback(lambda _: f(*args)))
            return made[-1]

        self.connect(maxMessageSize=SALVAGE_BYTES + 100, application="PACSAE", inThread=later)
        cut = b"x" * (SALVAGE_BYTES - len(batch) - 20) + b"\r" + hl7("G3")  # G3's MSH not whole in what is kept
        self.protocol.dataReceived(b"\x0b" + batch + cut + b"\rNTE|1||" + b"x" * 200)
        self.protocol.dataReceived(b"\x1c\r" + frame(hl7("M3")))
        self.assertEqual((self.transport.value(), self.transport.disconnecting, self.handler.received, len(made)),
                         (b"", False, [], 1))
        made[0].callback(None)
        tooLarge = f"message larger than {SALVAGE_BYTES + 100} bytes"
        self.assertEqual(answered(), [("AR", "G1", tooLarge), ("AR", "G2", tooLarge)])
        self.assertTrue(self.transport.disconnecting)

        def failing(raw):
            raise RuntimeError("a bug")

        self.connect(failing)
        self.protocol.dataReceived(frame(batch + b"note\rBTS|2"))
        self.assertEqual(answered(), [("AR", "G1", "internal error while handling the message"),
                                      ("AR", "G2", "internal error while handling the message")])
        self.assertFalse(self.transport.disconnecting)

    def test_aRefusalAnsweredAfterTheConnectionIsLostClosesNothing(self):
        """The peer gone while the refusal of its too large frame was made
        in the thread pool, the answer closed the lost transport again and
        armed a cut nobody cancelled (a DelayedCall holding the protocol
        CLOSE_BOUND s, then aborting a closed transport): nothing is written
        nor closed, and no call is left."""
        made = []

        def later(f, *args):
            made.append(defer.Deferred().addCallback(lambda _: f(*args)))
            return made[-1]

        self.connect(maxMessageSize=1000, inThread=later)
        self.protocol.dataReceived(b"\x0b" + hl7("BIG1") + b"\rNTE|1||" + b"x" * 2000)
        self.assertEqual(len(made), 1)
        self.protocol.connectionLost(connectionDone)
        calls = self.clock.getDelayedCalls()  # setUp's connection's idle timer
        made[0].callback(None)
        self.assertEqual((self.transport.value(), self.transport.disconnecting, self.clock.getDelayedCalls()),
                         (b"", False, calls))

    def test_handlerErrbackOnUnparsableBytes(self):
        self.connect(lambda raw: defer.fail(ValueError("nope")))
        self.protocol.dataReceived(frame(b"\xff\xfegarbage"))
        self.assertEqual(self.acks(), [("AR", "")])
        self.assertEqual(len(self.failures(ValueError)), 1)

    def test_unsendableAnswerIsLogged(self):
        self.connect(lambda raw: defer.succeed("not bytes"))
        self.protocol.dataReceived(frame(hl7("M1")) + frame(hl7("M2")))
        self.assertEqual(len(self.failures(TypeError)), 2)
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.factory.counters["hl7Messages"], 2)

    def test_internalErrorClosesWithoutRaising(self):
        def broken():
            raise KeyError("bug")

        self.protocol._frameComplete = broken
        self.protocol.dataReceived(frame(hl7("M1")))
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.failures(KeyError)), 1)
        self.assertEqual(self.factory.counters["hl7Errors"], 1)

    def test_answerAfterDisconnectIsDropped(self):
        handler = RecordingHandler(deferred=True)
        self.connect(handler)
        self.protocol.dataReceived(frame(hl7("M1")) + frame(hl7("M2")))
        self.protocol.connectionLost(connectionDone)
        self.assertEqual(self.logged("closed"),
                         ["10.0.0.7:40000: HL7 connection closed after 2 messages, 2 left unanswered"])
        d, answer = handler.pending[0]
        d.callback(answer)
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(handler.received, [hl7("M1")])

    def test_backPressure(self):
        handler = RecordingHandler(deferred=True)
        self.connect(handler)
        self.protocol.dataReceived(b"".join(frame(hl7(f"M{i}")) for i in range(20)))
        self.assertEqual(self.transport.producerState, "paused")
        while handler.pending:
            d, answer = handler.pending.pop(0)
            d.callback(answer)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.acks(), [("AA", f"M{i}") for i in range(20)])

    def test_aPeerNotReadingItsAcksIsNotAnsweredFurther(self):
        """While the transport's write buffer is full (it pauses its
        producer, the protocol) no message is handled, so the queue fills
        and reading pauses: a peer that never reads cannot make us buffer
        ACKs without end.  Once it takes them, the rest is answered."""
        self.assertIs(self.transport.producer, self.protocol)
        self.assertTrue(self.transport.streaming)
        self.protocol.dataReceived(frame(hl7("M0")))
        self.protocol.pauseProducing()
        self.protocol.dataReceived(b"".join(frame(hl7(f"M{i}")) for i in range(1, 21)))
        self.assertEqual(self.handler.received, [hl7("M0")])
        self.assertEqual(self.transport.producerState, "paused")
        self.protocol.resumeProducing()
        self.assertEqual(self.acks(), [("AA", f"M{i}") for i in range(21)])
        self.assertEqual(self.transport.producerState, "producing")

    def test_aPeerTakingNoAckForTheIdleTimeoutIsCutOff(self):
        self.connect(idleTimeout=30)
        self.protocol.pauseProducing()
        self.protocol.dataReceived(b"".join(frame(hl7(f"M{i}")) for i in range(20)))
        self.clock.advance(31)
        self.assertTrue(self.transport.disconnected)  # aborted: its unread ACKs are never written
        self.assertIsNone(self.transport.producer)
        self.assertEqual(self.logged("took"),
                         ["10.0.0.7:40000: the peer took nothing of its HL7 ACKs for 30 s, cutting the connection"])

    def test_closingUnregistersTheProducer(self):
        """A transport closes only once its producer is unregistered (when
        that is paused, its write buffer drained)."""
        self.protocol.dataReceived(frame(hl7("M1")))
        self.protocol.readConnectionLost()
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
        self.protocol.connectionLost(connectionDone)

    def test_manyPipelinedMessagesDoNotRecurse(self):
        self.protocol.dataReceived(b"".join(frame(hl7(f"M{i}")) for i in range(3000)))
        self.assertEqual(len(self.acks()), 3000)


class MLLPLimitTests(unittest.TestCase):
    """HL7MaxConnections, HL7MaxConnectionsPerPeer and HL7MaxBufferedMB:
    what all connections hold at once."""

    def setUp(self):
        self.clock = task.Clock()
        self.handler = RecordingHandler()
        self.factory = MLLPFactory(self.handler, clock=self.clock, maxMessageSize=200, maxBuffered=300,
                                   limits=AssociationLimits(3, 2, ("HL7MaxConnections", "HL7MaxConnectionsPerPeer")))

    def open(self, host):
        """A connection from ``host``: the protocol and its transport."""
        return connectFrom(self.factory, host)

    def test_connectionLimits(self):
        with capturedLogs() as events:
            first = [self.open("192.0.2.7") for _ in range(2)]
            for _ in range(2):  # logged once
                _, refused = self.open("192.0.2.7")
                self.assertTrue(refused.disconnecting)
                self.assertEqual(refused.value(), b"")
            other = self.open("192.0.2.8")
            self.assertTrue(self.open("192.0.2.9")[1].disconnecting)
        self.assertEqual([formatEvent(e) for e in events if "closed at once" in formatEvent(e)], [
            "192.0.2.7: connection closed at once: it has 2 connections open (HL7MaxConnectionsPerPeer 2); "
            "more are closed unlogged until one ends",
            "192.0.2.9: connection closed at once: 3 connections are open (HL7MaxConnections 3); "
            "more are closed unlogged until one ends"])
        first[0][0].connectionLost(connectionDone)
        protocol, transport = self.open("192.0.2.7")
        protocol.dataReceived(frame(hl7("M1")))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.handler.received, [hl7("M1")])
        for connection, _ in (first[1], other, (protocol, transport)):
            connection.connectionLost(connectionDone)
        self.assertEqual(self.factory.limits.open, 0)

    def test_limitsText(self):
        """What start-up logs of the limits: HL7MaxBufferedMB (never less
        than a message; 0: any size) and HL7MaxMessageSize (0: any size) too."""
        for maxMessageSize, maxBuffered, perPeer, text in (
                (200, 64 << 20, 2, "2 from one address; unfinished messages of at most 64 MB in all, each at most "
                                   "200 bytes"),
                (3 << 19, 1 << 20, 0, "any number from one address; unfinished messages of at most 1.5 MB in all, "
                                      "each at most 1572864 bytes"),
                (200, 0, 2, "2 from one address; unfinished messages of any size in all, each at most 200 bytes"),
                (0, 64 << 20, 2, "2 from one address; unfinished messages of at most 64 MB in all, each of any size "
                                 "within that"),
                (-1, 0, 2, "2 from one address; unfinished messages of any size in all, each of any size within "
                           "that")):
            factory = MLLPFactory(self.handler, clock=self.clock, maxMessageSize=maxMessageSize,
                                  maxBuffered=maxBuffered, limits=AssociationLimits(3, perPeer))
            self.assertEqual(factory.limitsText(), f"at most 3 connections at once, {text}")

    def test_aRefusedConnectionIsCutWithinABound(self):
        """A connection over the limits whose close never completes (over
        TLS, a peer that never answers close_notify) is cut CLOSE_BOUND s
        later, and one that closes in time is left alone."""
        self.factory.limits = AssociationLimits(1, 0, self.factory.limitKeys)
        self.open("192.0.2.7")
        refused, transport = self.open("192.0.2.8")
        aborted = []
        transport.abortConnection = lambda: aborted.append(True)
        self.assertTrue(transport.disconnecting)
        self.clock.advance(CLOSE_BOUND)
        self.assertEqual(aborted, [True])
        held = self.clock.getDelayedCalls()
        refused, transport = self.open("192.0.2.9")
        refused.connectionLost(connectionDone)
        self.assertEqual(self.clock.getDelayedCalls(), held)

    def test_bytesBufferedAcrossConnections(self):
        """A frame that would take the unfinished frames of all connections
        past the limit gets an AR (send it again later) and its connection
        is closed; the others go on, and what they held is freed."""
        (one, oneTransport), (two, twoTransport) = self.open("192.0.2.7"), self.open("192.0.2.8")
        with capturedLogs() as events:
            one.dataReceived(b"\x0b" + hl7("ONE") + b"\rNTE|" + b"x" * 100)
            two.dataReceived(b"\x0b" + hl7("TWO") + b"\rNTE|" + b"y" * 100)
            three, threeTransport = self.open("192.0.2.9")
            three.dataReceived(b"\x0b" + b"w" * 150)  # refused unlogged
        self.assertTrue(threeTransport.disconnecting)
        self.assertFalse(oneTransport.disconnecting)
        self.assertTrue(twoTransport.disconnecting)
        reply = parseMessage(twoTransport.value()[1:-2])
        self.assertEqual((reply.value("MSA", 1), reply.value("MSA", 2)), ("AR", "TWO"))
        self.assertEqual(reply.value("MSA", 3), "the server holds too many unfinished HL7 messages "
                                                "(HL7MaxBufferedMB): send it again later")
        self.assertEqual([formatEvent(e) for e in events if "unfinished" in formatEvent(e)],
                         ["192.0.2.8:40000: unfinished HL7 messages of all connections would hold more than "
                          "300 bytes (HL7MaxBufferedMB), rejecting this one and closing; more are refused unlogged until a "
                          "message is complete"])
        one.dataReceived(b"\x1c\r")
        self.assertEqual(len(self.handler.received), 1)
        self.assertEqual(self.factory.buffered, 0)
        two.connectionLost(connectionDone)
        one.dataReceived(b"\x0b" + b"z" * 150)
        one.connectionLost(connectionDone)
        self.assertEqual(self.factory.buffered, 0)

class BrowserOverTCPTests(unittest.TestCase):
    """The HL7 port on a socket, as a browser's page reaches it."""

    @defer.inlineCallbacks
    def test_aBrowsersPostIsClosedUnapplied(self):
        """The request and its MLLP body in one write: the server closes the
        connection, answering nothing, the message never handled."""
        handler = RecordingHandler()
        port = reactor.listenTCP(0, MLLPFactory(handler), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        browser = yield endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Held())
        browser.transport.write(browserPost(hl7("M1")))
        yield browser.lost.addTimeout(10, reactor)
        self.assertEqual((handler.received, browser.received), ([], b""))
