"""Tests for pacscore.dicom.admission: the DICOM service's limits of
connections at once, in all and from one address, over real sockets."""

from twisted.internet import defer, endpoints, protocol, reactor, ssl, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.filepath import FilePath
from twisted.trial import unittest

from pacscore.closing import CLOSE_BOUND
from pacscore.config.ini import DicomIni
from pacscore.dicom import commands
from pacscore.dicom.admission import AssociationLimits
from pacscore.dicom.negotiation import AcceptorPolicy
from pacscore.dicom.protocol import DicomServerFactory
from pacscore.dicom.verification import EchoService
from pacscore.testing.certificates import Authority
from tests.pacscore.dicom.requests import IMPLICIT, VERIFICATION, associateRQ


def connectFrom(factory, host):
    """A connection of ``factory`` from ``host`` over a StringTransport:
    the protocol (a refusal's, past the limits) and its transport."""
    address = IPv4Address("TCP", host, 40000)
    connection = factory.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    connection.makeConnection(transport)
    return connection, transport


class Held(protocol.Protocol):
    """A connection that sends nothing, as a flood's do."""

    def __init__(self):
        self.lost = defer.Deferred()
        self.received = b""

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(None)


class Requestor(Held):
    """A connection that sends an A-ASSOCIATE-RQ as soon as it is made."""

    def connectionMade(self):
        self.transport.write(associateRQ([(VERIFICATION, [IMPLICIT])]))


LIMIT_REJECTION = bytes.fromhex("03 00 00000004 00 02 03 02")  # transient, provider (presentation), local limit


class LimitTests(unittest.TestCase):

    def setUp(self):
        policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={VERIFICATION: False}, transferSyntaxes={IMPLICIT})
        self.limits = AssociationLimits(total=5, perPeer=3)
        self.factory = DicomServerFactory(policy, {commands.C_ECHO_RQ: EchoService()}, {}, task.Clock(),
                                          limits=self.limits)  # a clock that never runs: no ARTIM
        self.held = []
        self.addCleanup(self.closeAll)
        return self.listen().addCallback(lambda port: setattr(self, "port", port))

    def listen(self):
        port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return defer.succeed(port.getHost().port)

    def clientEndpoint(self, source):
        return endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, bindAddress=(source, 0))

    def closeAll(self):
        for held in self.held:
            if not held.lost.called:
                held.transport.loseConnection()
        return defer.DeferredList([held.lost for held in self.held])

    @defer.inlineCallbacks
    def connect(self, source):
        """Whether a connection from ``source`` (a loopback address) is held
        (True) or closed by the server at once (False)."""
        held = yield endpoints.connectProtocol(self.clientEndpoint(source), Held())
        self.held.append(held)
        local = held.transport.getHost()
        for _ in range(500):
            if held.lost.called:
                return False
            # host and port: two loopback sources may be given the same port
            if any((p.peer.host, p.peer.port) == (local.host, local.port) for p in self.factory.active):
                return True
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.fail(f"the connection from {source} was neither held nor closed")

    @defer.inlineCallbacks
    def connectMany(self, source, count):
        held = []
        for _ in range(count):
            held.append((yield self.connect(source)))
        return held

    @defer.inlineCallbacks
    def test_perPeerAndTotal(self):
        with capturedLogs() as events:
            first = yield self.connectMany("127.0.0.1", 5)
            self.assertEqual(first, [True, True, True, False, False])
            second = yield self.connectMany("127.0.0.2", 3)
            self.assertEqual(second, [True, True, False])  # 5 in all
            self.assertEqual((self.limits.open, dict(self.limits.byPeer)), (5, {"127.0.0.1": 3, "127.0.0.2": 2}))
            self.assertFalse((yield self.connect("127.0.0.3")))
            refusals = [(event["host"], event["why"]) for event in events if "why" in event]
            self.assertEqual(refusals, [("127.0.0.1", "it has 3 connections open (MaxAssociationsPerPeer 3)"),
                                        ("127.0.0.2", "5 connections are open (MaxAssociations 5)"),
                                        ("127.0.0.3", "5 connections are open (MaxAssociations 5)")])
            self.held[0].transport.loseConnection()  # one ends: its place is free, the next refusal logged
            yield self.held[0].lost
            while self.limits.open == 5:
                yield task.deferLater(reactor, 0.01, lambda: None)
            self.assertTrue((yield self.connect("127.0.0.1")))
            self.assertFalse((yield self.connect("127.0.0.1")))
            self.assertEqual(len([event for event in events if "why" in event]), 4)

    @defer.inlineCallbacks
    def test_refusedWithATransientRejection(self):
        """A connection over a limit gets an A-ASSOCIATE-RJ (rejected
        transient, service provider presentation, local limit exceeded: PS3.8
        9.3.4, as DCMTK sends), which a requestor takes as "retry later",
        then is closed; whether it sent its A-ASSOCIATE-RQ already or not."""
        yield self.connectMany("127.0.0.1", 3)
        for refused in (Held(), Requestor()):
            yield endpoints.connectProtocol(self.clientEndpoint("127.0.0.1"), refused)
            self.held.append(refused)
            yield refused.lost
            self.assertEqual(refused.received, LIMIT_REJECTION)

    @defer.inlineCallbacks
    def test_heldConnectionAssociates(self):
        """A connection within the limits is an association as ever."""
        self.assertEqual((yield self.connectMany("127.0.0.1", 3)), [True] * 3)
        self.held[0].transport.write(associateRQ([(VERIFICATION, [IMPLICIT])]))
        while not self.held[0].received:
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(self.held[0].received[0], 0x02)  # A-ASSOCIATE-AC


class TLSLimitTests(LimitTests):
    """The same over a TLS endpoint, whose factory wraps the DICOM service's."""

    def setUp(self):
        authority = Authority(self.mktemp(), "hospital")
        server = authority.issue("pacs", server=True)
        self.clientOptions = ssl.optionsForClientTLS("localhost", ssl.Certificate.loadPEM(
            FilePath(authority.certificate).getContent()))
        self.serverEndpoint = endpoints.serverFromString(
            reactor, f"ssl:0:interface=127.0.0.1:privateKey={server.key}:certKey={server.certificate}")
        return super().setUp()

    @defer.inlineCallbacks
    def listen(self):
        port = yield self.serverEndpoint.listen(self.factory)
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def clientEndpoint(self, source):
        return endpoints.wrapClientTLS(self.clientOptions, super().clientEndpoint(source))

    @defer.inlineCallbacks
    def test_refusedWithoutHandshakeIsCut(self):
        """A connection over a limit that never starts the TLS handshake (a
        flood of plain TCP connections to the TLS port) cannot be sent the
        A-ASSOCIATE-RJ nor closed cleanly: it is cut after CLOSE_BOUND s,
        rather than held for good outside every limit."""
        yield self.connectMany("127.0.0.1", 3)
        plain = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, bindAddress=("127.0.0.1", 0))
        flood = yield defer.gatherResults([endpoints.connectProtocol(plain, Held()) for _ in range(3)])
        self.held.extend(flood)
        for _ in range(300):
            if all(held.lost.called for held in flood):
                break
            self.factory.clock.advance(CLOSE_BOUND)
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual([held.lost.called for held in flood], [True] * 3)
        self.assertEqual([held.received for held in flood], [b""] * 3)


class FromIniTests(unittest.TestCase):

    def limits(self, text, fileLimit=1 << 20):
        found = AssociationLimits.fromIni(DicomIni.fromString(f"[sscscp]\n{text}\n"), fileLimit)
        return found.total, found.perPeer

    def test_limits(self):
        self.assertEqual(self.limits(""), (1000, 64))
        self.assertEqual(self.limits("", fileLimit=1024), (512, 64))  # half the open files at most
        self.assertEqual(self.limits("MaxAssociations = 20\nMaxAssociationsPerPeer = 0"), (20, 0))
        self.assertEqual(self.limits("MaxAssociations = 0", fileLimit=4096), (2048, 64))
