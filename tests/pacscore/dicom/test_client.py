"""The client (requestor) against our own acceptor over twisted.test.iosim,
with a task.Clock for every timer."""

from pydicom.dataset import Dataset
from twisted.internet import defer, protocol, task
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.test import iosim
from twisted.trial import unittest

from pacscore.dicom import commands, pdu
from pacscore.config.acrnema import Node
from pacscore.dicom.client import DicomClientFactory, nodeEndpoint, numberContexts
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.negotiation import AcceptorPolicy, AssociationRefused
from pacscore.dicom.protocol import AssociationLost, DicomServerFactory, DIMSETimeout, NoContext
from pacscore.dicom.verification import EchoService
from tests.pacscore.dicom.requests import CT_STORAGE, EXPLICIT, IMPLICIT, STUDY_FIND, VERIFICATION


class Recorder:
    """A C-STORE service keeping what it gets."""

    def __init__(self, status=0):
        self.received = []
        self.status = status

    def handle(self, protocol, contextId, command, dataset):
        self.received.append((command, bytes(dataset.data), protocol.association.contexts[contextId][1]))
        protocol.sendMessage(contextId, commands.response(command, commands.C_STORE_RSP, self.status))


class Finder:
    """A C-FIND service answering with ``matches`` pending responses, one
    per clock tick, stopping when cancelled."""

    def __init__(self, clock, matches, interval=1):
        self.clock = clock
        self.matches = matches
        self.interval = interval  # seconds between the matches
        self.identifiers = []

    @defer.inlineCallbacks
    def handle(self, protocol, contextId, command, dataset):
        syntax = protocol.association.contexts[contextId][1]
        self.identifiers.append(decodeDataset(dataset.data, syntax))
        for n in range(self.matches):
            if protocol.isCancelled(command):
                protocol.sendMessage(contextId, commands.response(command, commands.C_FIND_RSP, 0xFE00))
                return
            match = Dataset()
            match.PatientID = f"P{n}"
            protocol.sendMessage(contextId, commands.response(command, commands.C_FIND_RSP, 0xFF00),
                                 encodeDataset(match, syntax))
            yield task.deferLater(self.clock, self.interval, lambda: None)
        protocol.sendMessage(contextId, commands.response(command, commands.C_FIND_RSP, 0))


class Silent:
    """A service that never answers."""

    def handle(self, protocol, contextId, command, dataset):
        return defer.Deferred()


class AbortingOnce:
    """A C-STORE service that A-ABORTs the association on the first object
    it is sent (as a destination that cannot take it) and takes the others."""

    def __init__(self):
        self.aborted = False
        self.received = []

    def handle(self, protocol, contextId, command, dataset):
        if not self.aborted:
            self.aborted = True
            protocol.abort(pdu.REASON_NOT_SPECIFIED, pdu.SOURCE_SERVICE_USER)
            return
        self.received.append(command[commands.AFFECTED_SOP_INSTANCE_UID])
        protocol.sendMessage(contextId, commands.response(command, commands.C_STORE_RSP, 0))


class ClientTests(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.recorder = Recorder()
        self.finder = Finder(self.clock, 3)
        policy = AcceptorPolicy(aeTitles=["PACS"],
                                abstractSyntaxes={VERIFICATION: False, CT_STORAGE: True, STUDY_FIND: False},
                                transferSyntaxes={IMPLICIT, EXPLICIT})
        self.server = DicomServerFactory(
            policy, {commands.C_ECHO_RQ: EchoService(), commands.C_STORE_RQ: self.recorder,
                     commands.C_FIND_RQ: self.finder}, {}, self.clock)

    def connect(self, contexts, calledAE="PACS", dimseTimeout=None, services=None, roles=None, artimSetting="ARTIM"):
        result = []
        d = defer.Deferred()
        d.addBoth(result.append)
        factory = DicomClientFactory("ME", calledAE, numberContexts(contexts), roles, d, artimSetting=artimSetting,
                                     services=services or {}, sinks={}, clock=self.clock,
                                     dimseTimeout=dimseTimeout)
        self.client, self.serverProtocol, self.pump = iosim.connectedServerAndClient(
            lambda: self.server.buildProtocol(None), lambda: factory.buildProtocol(None), clock=self.clock)
        for _ in range(5):
            self.pump.flush()
        return result[0]

    def settle(self, d):
        result = []
        d.addBoth(result.append)
        for _ in range(20):
            self.pump.flush()
            self.clock.advance(1)
        self.assertTrue(result, "the Deferred never fired")
        return result[0]

    def test_echoAndRelease(self):
        association = self.connect([(VERIFICATION, [IMPLICIT])])
        self.assertIs(association, self.client)
        self.assertEqual(self.settle(association.echo()), 0)
        self.assertIsNone(self.settle(association.release()))
        self.assertEqual(self.client.state, "Sta13")

    def test_releaseNotAnsweredAborted(self):
        """A peer that does not answer our A-RELEASE-RQ within ARTIM gets an
        A-ABORT (PS3.8 AA-1), not a bare reset, and a log line says pacs
        gave the release up, naming the setting that ARTIM is; the
        connection is closed once the A-ABORT is written, not waited for
        the mute peer to close for another ARTIM."""
        association = self.connect([(VERIFICATION, [IMPLICIT])], artimSetting="the connect timeout")
        self.serverProtocol.dataReceived = lambda data: None  # mute from now on, and never closing
        with capturedLogs() as events:
            released = association.release()
            self.clock.advance(29)
            self.assertNoResult(released)
            self.clock.advance(1)
        self.assertIn("no A-RELEASE-RP within 30 s (the connect timeout), aborting",
                      [formatEvent(event).split(": ", 1)[-1] for event in events])
        written = b"".join(self.pump.clientIO.stream)
        self.assertEqual(written[-10:], pdu.encodeAbort(pdu.SOURCE_SERVICE_USER, pdu.REASON_NOT_SPECIFIED))
        self.assertEqual(written[-20:-10], pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))
        for _ in range(5):
            self.pump.flush()
        self.assertIsNone(self.successResultOf(released))

    def test_refused(self):
        failure = self.connect([(VERIFICATION, [IMPLICIT])], calledAE="OTHER")
        failure.trap(AssociationRefused)
        self.assertIn("called AE title not recognized", str(failure.value))

    def test_abortedRequestSaysWhoAborted(self):
        """A peer that aborts the association while our request waits (as
        Orthanc does with a C-FIND from an AE title it does not know): the
        request fails naming the A-ABORT, its source and, from the service
        provider, its reason, not as an association that merely ended."""
        for source, reason, expected in (
                (pdu.SOURCE_SERVICE_USER, 0, "A-ABORT from the peer's service user"),
                (pdu.SOURCE_SERVICE_PROVIDER, pdu.REASON_UNEXPECTED_PDU,
                 "A-ABORT from the peer's service provider: unexpected PDU")):
            self.server.services[commands.C_FIND_RQ] = Silent()
            association = self.connect([(STUDY_FIND, [IMPLICIT])])
            finding = association.find(STUDY_FIND, Dataset())
            self.pump.flush()
            with capturedLogs() as events:
                self.serverProtocol.transport.write(pdu.encodeAbort(source, reason))
                self.pump.flush()
            failure = self.failureResultOf(finding, AssociationLost)
            self.assertIn(f"aborted the association ({expected})", str(failure.value))
            self.assertIn(f"association aborted by peer ({expected})", [formatEvent(e).split(": ", 1)[-1]
                                                                          for e in events])

    def test_tooSmallMaximumLength(self):
        """An acceptor limiting us to PDUs that hold almost nothing: the
        association is aborted and fails, instead of a message split into
        millions of PDUs."""
        self.server.policy.maxPDULength = 128
        failure = self.connect([(VERIFICATION, [IMPLICIT])])
        failure.trap(AssociationLost)
        self.assertEqual(self.client.state, "Sta13")

    def test_pendingStatusEndsAStore(self):
        """Only C-FIND, C-GET and C-MOVE have pending responses: a C-STORE
        answered FF00 (as a broken C-GET requestor may) has ended."""
        self.recorder.status = 0xFF00
        association = self.connect([(CT_STORAGE, [EXPLICIT])])
        response = self.settle(association.store(b"\x08\x00\x18\x00UI\x02\x001\x00", CT_STORAGE, "1.2.3", EXPLICIT))
        self.assertEqual(response[commands.STATUS], 0xFF00)

    def test_storeUsesTheAcceptedSyntax(self):
        association = self.connect([(CT_STORAGE, [EXPLICIT, IMPLICIT])])
        self.assertEqual(association.acceptedSyntaxes(CT_STORAGE), {EXPLICIT: 1})
        response = self.settle(association.store(b"\x08\x00\x18\x00UI\x02\x001\x00", CT_STORAGE, "1.2.3", EXPLICIT,
                                                 moveOriginator=("MOVER", 7)))
        self.assertEqual(response[commands.STATUS], 0)
        [(command, data, syntax)] = self.recorder.received
        self.assertEqual((command[commands.MOVE_ORIGINATOR_AE], command[commands.MOVE_ORIGINATOR_MESSAGE_ID]),
                         ("MOVER", 7))
        self.assertEqual(syntax, EXPLICIT)
        failure = self.settle(association.store(b"", CT_STORAGE, "1.2.4", IMPLICIT))
        failure.trap(NoContext)

    def test_storePriority(self):
        """A C-STORE carries the Priority asked for (a C-MOVE's or C-GET's
        sub-operation, the request's), else MEDIUM."""
        association = self.connect([(CT_STORAGE, [EXPLICIT])])
        for priority in (2, None):
            self.settle(association.store(b"\x08\x00\x18\x00UI\x02\x001\x00", CT_STORAGE, "1.2.3", EXPLICIT,
                                          **({} if priority is None else {"priority": priority})))
        self.assertEqual([command[commands.PRIORITY] for command, _, _ in self.recorder.received], [2, 0])

    def test_findStreamsMatches(self):
        association = self.connect([(STUDY_FIND, [IMPLICIT])])
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "PATIENT"
        identifier.PatientID = "*"
        matches = []
        status = self.settle(association.find(STUDY_FIND, identifier,
                                              lambda data, syntax: matches.append(decodeDataset(data, syntax))))
        self.assertEqual(status, 0)
        self.assertEqual([m.PatientID for m in matches], ["P0", "P1", "P2"])
        self.assertEqual(self.finder.identifiers[0].PatientID, "*")

    def test_findMatchesDecodesInThePoolGiven(self):
        """The matches are decoded after the final response, by the runner
        given (a thread pool's), and passed through ``adjust``."""
        association = self.connect([(STUDY_FIND, [IMPLICIT])])
        ran = []

        def inThread(function, *args):
            ran.append(len(args[0]))
            return defer.maybeDeferred(function, *args)
        status, matches = self.settle(association.findMatches(STUDY_FIND, Dataset(), inThread,
                                                              lambda match: match.PatientID))
        self.assertEqual((status, matches, ran), (0, ["P0", "P1", "P2"], [3]))

    def test_cancel(self):
        self.finder.matches = 100
        association = self.connect([(STUDY_FIND, [IMPLICIT])])
        matches = []
        d = association.find(STUDY_FIND, Dataset(), lambda data, syntax: matches.append(data))
        self.pump.flush()
        association.cancelLast(STUDY_FIND)
        self.assertEqual(self.settle(d), 0xFE00)
        self.assertLess(len(matches), 5)

    def test_dimseTimeoutAborts(self):
        """The association is aborted before the request fails: whoever
        sees the failure sees an association no longer established (a
        C-MOVE then opens another for the next object, not a store on it)."""
        self.server.services[commands.C_ECHO_RQ] = Silent()
        association = self.connect([(VERIFICATION, [IMPLICIT])], dimseTimeout=5)
        states = []
        d = association.echo()
        d.addErrback(lambda failure: (states.append(association.state), failure)[1])
        failure = self.settle(d)
        failure.trap(DIMSETimeout)
        self.assertEqual(states, ["Sta13"])

    def test_aRequestsOwnTimeout(self):
        """A request given a timeout of its own (a virtual server's C-FIND,
        VirtualServerTimeout) times out by it; the others of the
        association (a virtual server's C-MOVE, whose pending responses
        come one per object sent) wait the association's DIMSE timeout
        (TCPIPTimeOut) between responses."""
        self.finder.interval = 20
        association = self.connect([(STUDY_FIND, [IMPLICIT])], dimseTimeout=300)
        matches = []
        ending = association.find(STUDY_FIND, Dataset(), lambda data, syntax: matches.append(data))
        for _ in range(10):
            self.pump.flush()
            self.clock.advance(10)
        self.assertEqual((self.successResultOf(ending), len(matches)), (0, 3))
        with capturedLogs() as events:
            ending = association.find(STUDY_FIND, Dataset(), timeout=10)
            for _ in range(3):
                self.pump.flush()
                self.clock.advance(5)
        self.failureResultOf(ending, DIMSETimeout)
        self.assertIn("within 10 s, aborting", formatEvent(events[0]))

    def test_responseOfAnotherKindIgnored(self):
        """A C-STORE answered with a C-ECHO-RSP has not been answered (a
        C-GET would count it as stored): it times out."""
        class EchoAnswer:
            def handle(self, protocol, contextId, command, dataset):
                protocol.sendMessage(contextId, commands.response(command, commands.C_ECHO_RSP, 0))
        self.server.services[commands.C_STORE_RQ] = EchoAnswer()
        association = self.connect([(CT_STORAGE, [EXPLICIT])], dimseTimeout=5)
        failure = self.settle(association.store(b"\x08\x00\x18\x00UI\x02\x001\x00", CT_STORAGE, "1.2.3", EXPLICIT))
        failure.trap(DIMSETimeout)

    def test_serverGoneFailsPendingRequests(self):
        self.server.services[commands.C_ECHO_RQ] = Silent()
        association = self.connect([(VERIFICATION, [IMPLICIT])])
        d = association.echo()
        self.pump.flush()
        self.serverProtocol.abort()
        failure = self.settle(d)
        failure.trap(AssociationLost)

    def test_peerStoresDuringGet(self):
        """The client answers C-STORE requests with the services it was given
        (C-GET sub-operations): here the server sends one itself."""
        received = Recorder()
        association = self.connect([(CT_STORAGE, [IMPLICIT])], services={commands.C_STORE_RQ: received},
                                   roles={CT_STORAGE: (False, True)})
        self.assertIn(CT_STORAGE, self.serverProtocol.association.rolesAsSCU)
        response = self.settle(self.serverProtocol.request(
            1, {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE,
                commands.AFFECTED_SOP_INSTANCE_UID: "1.2.9", commands.PRIORITY: 0}, b"\x08\x00\x18\x00"))
        self.assertEqual(response[0][commands.STATUS], 0)
        self.assertEqual(received.received[0][1], b"\x08\x00\x18\x00")
        self.assertIsNotNone(association)


class NodeEndpointTests(unittest.TestCase):
    """Where the connection to an acrnema.map node is asked for."""

    def connectedTo(self, host):
        reactor = MemoryReactorClock()  # its resolver answers 127.0.0.1 for any name
        nodeEndpoint(reactor, Node("SCP", host, "21110")).connect(protocol.Factory.forProtocol(protocol.Protocol))
        reactor.advance(0)
        return [(host, port) for host, port, *_ in reactor.tcpClients]

    def test_aLinkLocalAddressKeepsItsZone(self):
        """``fe80::1%eth0`` is connected to with its zone, which names the
        interface (a HostnameEndpoint dropped it: 'An error occurred while
        connecting: 22: Invalid argument.')."""
        self.assertEqual(self.connectedTo("fe80::fc:ff:fe00:1%eth0"), [("fe80::fc:ff:fe00:1%eth0", 21110)])
        self.assertEqual(self.connectedTo("pacs.example"), [("127.0.0.1", 21110)])
