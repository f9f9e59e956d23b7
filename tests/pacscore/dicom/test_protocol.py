"""The upper-layer state machine, negotiation and the acceptor's hooks of
association events, driven through a StringTransport with a task.Clock (no
reactor, no sockets)."""

import random
import warnings

from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ
from pynetdicom.pdu_primitives import (
    AsynchronousOperationsWindowNegotiation, MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation)
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest

from pacscore.dicom import commands, pdu
from pacscore.dicom.negotiation import AcceptorPolicy
from pacscore.dicom.protocol import (
    ESTABLISHED, STREAMED_DATASET, WRITE_BATCH, DicomServerFactory, DIMSETimeout, NoStatus)
from pacscore.dicom.routing import SopClassRouter
from pacscore.dicom.sinks import MemorySink
from pacscore.dicom.storeddata import StoredData
from pacscore.dicom.verification import EchoService
from pacscore.testing.mutations import mutated
from tests.pacscore.test_closing import BufferedTransport
from tests.pacscore.dicom.requests import (
    CT_STORAGE, EXPLICIT, IMPLICIT, JPEG_LOSSLESS, STUDY_FIND, VERIFICATION, associateRQ, echoRQ,
    message, readMessages, readPDUs)

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
QUEUED = 200  # requests a peer sends at once, far beyond any asynchronous operations window


def storeMessage(messageId):
    """A C-STORE-RQ on presentation context 3 (CT), with a small data set."""
    store = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.MESSAGE_ID: messageId, commands.PRIORITY: 0,
             commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE, commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3"}
    return message(3, store, b"\x08\x00\x18\x00\x06\x00\x00\x001.2.3\x00")


class SlowService:
    """A service whose operations finish when the test says so."""

    def __init__(self):
        self.pending = []

    def handle(self, protocol, contextId, command, dataset):
        d = defer.Deferred()
        d.addCallback(lambda _: protocol.sendMessage(
            contextId, commands.response(command, command[commands.COMMAND_FIELD] | 0x8000, 0)))
        self.pending.append(d)
        return d


class ServerTestCase(unittest.TestCase):
    """A DicomServerFactory's protocol on a StringTransport."""

    def setUp(self):
        self.clock = task.Clock()
        self.policy = AcceptorPolicy(
            aeTitles=["PACS"], abstractSyntaxes={VERIFICATION: False, CT_STORAGE: True},
            transferSyntaxes={IMPLICIT, EXPLICIT, JPEG_LOSSLESS}, maxPDULength=32768)
        self.services = {commands.C_ECHO_RQ: EchoService()}
        self.factory = DicomServerFactory(self.policy, self.services, {}, self.clock,
                                          idleTimeout=300, artimTimeout=30)
        self.protocol, self.transport = self.connect()

    def connect(self, peer=IPv4Address("TCP", "127.0.0.1", 40000), transport=None):
        """A protocol connected from ``peer`` over ``transport`` (None: a StringTransport)."""
        protocol = self.factory.buildProtocol(peer)
        transport = StringTransport() if transport is None else transport
        transport.peerAddr = peer
        transport.setTcpNoDelay = lambda enabled: setattr(transport, "noDelay", enabled)
        protocol.makeConnection(transport)
        return protocol, transport

    def written(self):
        data = self.transport.value()
        self.transport.clear()
        return data

    def associate(self, contexts=((VERIFICATION, [IMPLICIT]),), **kw):
        self.protocol.dataReceived(associateRQ(list(contexts), **kw))
        [(pduType, body)] = readPDUs(self.written())
        return pduType, body

    def decodeAC(self, body):
        ac = A_ASSOCIATE_AC()
        ac.decode(b"\x02\x00" + len(body).to_bytes(4, "big") + body)
        return ac

    def assertAborted(self, reason):
        pdus = readPDUs(self.written())
        self.assertEqual(pdus[-1][0], pdu.A_ABORT)
        self.assertEqual(pdus[-1][1][2:], bytes((pdu.SOURCE_SERVICE_PROVIDER, reason)))


class ProtocolTests(ServerTestCase):

    def test_tcpNoDelay(self):
        self.assertTrue(self.transport.noDelay)

    def test_echo(self):
        pduType, body = self.associate()
        self.assertEqual(pduType, pdu.A_ASSOCIATE_AC)
        self.assertEqual(self.protocol.state, ESTABLISHED)
        self.protocol.dataReceived(message(1, echoRQ(messageId=9)))
        [(contextId, rsp, dataset)] = readMessages(self.written())
        self.assertEqual((contextId, dataset), (1, None))
        self.assertEqual(rsp[commands.COMMAND_FIELD], commands.C_ECHO_RSP)
        self.assertEqual(rsp[commands.MESSAGE_ID_RESPONDED_TO], 9)
        self.assertEqual(rsp[commands.STATUS], 0)

    def test_echoFedByteByByte(self):
        data = associateRQ([(VERIFICATION, [IMPLICIT])]) + message(1, echoRQ())
        for i in range(len(data)):
            self.protocol.dataReceived(data[i:i + 1])
        pdus = readPDUs(self.written())
        self.assertEqual([t for t, _ in pdus], [pdu.A_ASSOCIATE_AC, pdu.P_DATA_TF])

    def test_acceptNegotiation(self):
        pduType, body = self.associate(
            [(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [JPEG_LOSSLESS, EXPLICIT, IMPLICIT]),
             (CT_STORAGE, ["1.2.840.10008.1.2.4.50"]), (STUDY_FIND, [IMPLICIT])],
            roles=[(CT_STORAGE, False, True)], asyncWindow=(4, 4))
        ac = self.decodeAC(body)
        results = {c.context_id: (c.result, c.transfer_syntax) for c in ac.presentation_context}
        self.assertEqual(results[1], (0, IMPLICIT))
        self.assertEqual(results[3], (0, EXPLICIT), "a context only we send on: its first uncompressed syntax")
        self.assertEqual(results[5][0], 4, "unsupported transfer syntax")
        self.assertEqual(results[7][0], 3, "unsupported abstract syntax")
        user = ac.user_information.to_primitive()
        mx = [i for i in user if isinstance(i, MaximumLengthNotification)][0]
        self.assertEqual(mx.maximum_length_received, 32768)
        [role] = [i for i in user if isinstance(i, SCP_SCU_RoleSelectionNegotiation)]
        self.assertEqual((role.sop_class_uid, role.scu_role, role.scp_role), (CT_STORAGE, False, True))
        [window] = [i for i in user if isinstance(i, AsynchronousOperationsWindowNegotiation)]
        self.assertEqual(window.maximum_number_operations_invoked, 4)
        self.assertEqual(self.protocol.association.rolesAsSCU, {CT_STORAGE})

    def test_requestsRefusedWhereTheRequestorGaveUpTheSCURole(self):
        """A requestor that proposed SCU role 0 for a SOP class (PS3.7
        D.3.3.4) may send no requests on its contexts: 0122, logged."""
        self.associate([(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [IMPLICIT])], roles=[(CT_STORAGE, False, True)])
        self.assertEqual(self.protocol.association.peerNotSCU, {CT_STORAGE})
        store = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.MESSAGE_ID: 4, commands.PRIORITY: 0,
                 commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE, commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3"}
        self.protocol.dataReceived(message(3, store, b"\x08\x00\x18\x00\x06\x00\x00\x001.2.3\x00"))
        self.protocol.dataReceived(message(1, echoRQ(messageId=5)))
        responses = [(contextId, rsp[commands.MESSAGE_ID_RESPONDED_TO], rsp[commands.STATUS])
                     for contextId, rsp, _ in readMessages(self.written())]
        self.assertEqual(responses, [(3, 4, 0x0122), (1, 5, 0)])
        self.assertEqual(self.protocol.state, ESTABLISHED)

    def withContextIds(self, contexts, ids):
        """An A-ASSOCIATE-RQ proposing ``contexts`` with the presentation
        context IDs ``ids``, whatever PS3.8 9.3.2.2 asks (odd, each once)."""
        rq = bytearray(associateRQ(contexts))
        position = rq.index(b"\x20\x00", 74)  # the first context item, after the application context
        for contextId in ids:
            self.assertEqual(rq[position], 0x20)
            rq[position + 4] = contextId
            position += 4 + int.from_bytes(rq[position + 2:position + 4], "big")
        return bytes(rq)

    def answeredContexts(self, contexts, ids):
        """The A-ASSOCIATE-AC's {context ID: (result, transfer syntax)} for
        ``contexts`` proposed under ``ids``, and the lines logged meanwhile."""
        with capturedLogs() as events:
            self.protocol.dataReceived(self.withContextIds(contexts, ids))
        [(pduType, body)] = readPDUs(self.written())
        self.assertEqual(pduType, pdu.A_ASSOCIATE_AC)
        return ({c.context_id: (c.result, c.transfer_syntax) for c in self.decodeAC(body).presentation_context},
                [formatEvent(event) for event in events])

    def test_evenContextIdsAnsweredAsProposed(self):
        """Even IDs, which storescp and Orthanc accept: answered and used as proposed."""
        results, lines = self.answeredContexts([(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [EXPLICIT]),
                                                (STUDY_FIND, [IMPLICIT])], [2, 4, 7])
        self.assertEqual(results, {2: (0, IMPLICIT), 4: (0, EXPLICIT), 7: (3, IMPLICIT)})
        self.assertEqual(self.protocol.association.contexts, {2: (VERIFICATION, IMPLICIT), 4: (CT_STORAGE, EXPLICIT)})
        self.assertIn("SCU@127.0.0.1:40000: presentation context ID 2, 4 even (PS3.8 9.3.2.2 asks odd ones): answered "
                      "as proposed", lines)
        self.protocol.dataReceived(message(2, echoRQ(messageId=5)))
        [(contextId, rsp, _)] = readMessages(self.written())
        self.assertEqual((contextId, rsp[commands.STATUS]), (2, 0))

    def test_duplicateContextIdAnsweredOnce(self):
        """A presentation context ID proposed again: the later contexts of
        that ID are ignored (as storescp and Orthanc keep the first), with
        a warning."""
        results, lines = self.answeredContexts([(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [IMPLICIT]),
                                                (CT_STORAGE, [EXPLICIT])], [1, 1, 3])
        self.assertEqual(results, {1: (0, IMPLICIT), 3: (0, EXPLICIT)})
        self.assertIn("SCU@127.0.0.1:40000: presentation context ID 1 proposed more than once: only its first context "
                      "answered", lines)

    def test_tooManyTransferSyntaxesRejected(self):
        """PS3.8 sets no limit, DCMTK takes 50 transfer syntaxes a context:
        more than 64 get an A-ASSOCIATE-RJ and a log line, undecoded."""
        with capturedLogs() as events:
            pduType, body = self.associate([(VERIFICATION, [f"1.2.3.{n}" for n in range(65)])])
        self.assertEqual((pduType, body[1:]), (pdu.A_ASSOCIATE_RJ, b"\x01\x01\x01"))
        [logged] = [formatEvent(e) for e in events]
        self.assertIn("association rejected: presentation context 1 proposes 65 transfer syntaxes", logged)

    def test_noContextRejected(self):
        pduType, body = self.associate([])
        self.assertEqual(pduType, pdu.A_ASSOCIATE_RJ)

    def test_rejectContextWithoutUsableRole(self):
        """A context whose proposed roles leave neither side able to use it
        (no SCU role for the requestor, and an SCP role we do not take, or
        none) is rejected by the user (PS3.7 D.3.3.4); the rest is accepted."""
        self.policy.abstractSyntaxes[MR_STORAGE] = True
        rq = associateRQ([(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [IMPLICIT]), (MR_STORAGE, [IMPLICIT])],
                         roles=[(VERIFICATION, False, True), (CT_STORAGE, True, False), (MR_STORAGE, True, True)])
        noRoles = CT_STORAGE.encode() + b"\x00\x00"  # pynetdicom will not encode this proposal itself
        self.protocol.dataReceived(rq.replace(CT_STORAGE.encode() + b"\x01\x00", noRoles))
        [(pduType, body)] = readPDUs(self.written())
        self.assertEqual(pduType, pdu.A_ASSOCIATE_AC)
        ac = self.decodeAC(body)
        self.assertEqual({c.context_id: c.result for c in ac.presentation_context}, {1: 1, 3: 1, 5: 0})
        roles = [i for i in ac.user_information.to_primitive() if isinstance(i, SCP_SCU_RoleSelectionNegotiation)]
        self.assertEqual([(r.sop_class_uid, r.scu_role, r.scp_role) for r in roles], [(MR_STORAGE, True, True)])
        self.assertEqual(self.protocol.association.contexts, {5: (MR_STORAGE, IMPLICIT)})
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_rejectTinyMaximumLength(self):
        """A requestor whose PDUs could carry (almost) no data is rejected
        (permanent, service user, no reason given); 0 means no limit."""
        for maxLength, expected in ((6, pdu.A_ASSOCIATE_RJ), (255, pdu.A_ASSOCIATE_RJ),
                                    (256, pdu.A_ASSOCIATE_AC), (512, pdu.A_ASSOCIATE_AC), (0, pdu.A_ASSOCIATE_AC)):
            self.protocol, self.transport = self.connect()
            pduType, body = self.associate(maxLength=maxLength)
            self.assertEqual(pduType, expected, maxLength)
            if expected == pdu.A_ASSOCIATE_RJ:
                self.assertRejected(body, 1, 1, 1)

    def associateWithUserItems(self, extra):
        """Associate with the sub-items ``extra`` put first in the User
        Information item, then echo: the association was accepted and works."""
        rq = bytearray(associateRQ([(VERIFICATION, [IMPLICIT])]))
        user = rq.index(b"\x50\x00", 74)
        rq[user + 2:user + 4] = (int.from_bytes(rq[user + 2:user + 4], "big") + len(extra)).to_bytes(2, "big")
        rq[user + 4:user + 4] = extra
        rq[2:6] = (len(rq) - 6).to_bytes(4, "big")
        self.protocol.dataReceived(bytes(rq))
        [(pduType, body)] = readPDUs(self.written())
        self.assertEqual(pduType, pdu.A_ASSOCIATE_AC)
        self.protocol.dataReceived(message(1, echoRQ()))
        [(_, rsp, _)] = readMessages(self.written())
        self.assertEqual(rsp[commands.STATUS], 0)

    def test_unknownUserInformationItemsIgnored(self):
        """PS3.8 D.2: sub-items of the User Information item of types it
        does not define are ignored, not a reason to abort."""
        self.associateWithUserItems(b"\x60\x00\x00\x02ab\xff\x00\x00\x00")

    def test_implementationVersionNameThatIsNoSH(self):
        """An Implementation Version Name over 16 characters, or with a
        backslash or a byte that is no printable ASCII (DCMTK's storescp
        takes any), is taken cut to 16, such bytes made "?", with a
        warning naming the peer and the name; pynetdicom refused it."""
        for name, taken in ((b"V" * 20, "V" * 16), (b"MODALITY\\2.0\xe9", "MODALITY?2.0?")):
            self.protocol, self.transport = self.connect()
            with capturedLogs() as events:
                self.associateWithUserItems(b"\x55\x00" + len(name).to_bytes(2, "big") + name)
            self.assertEqual(self.protocol.association.peerImplementationVersion, taken)
            [line] = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
            self.assertIn(self.protocol.peerName(), line)
            self.assertIn(f"Implementation Version Name {name.decode('latin-1')!r}", line)

    def test_peerNameWritesAnIPv6AddressInBrackets(self):
        """An IPv6 peer is written ``[::1]:40113``, so that its port does not
        read as a group of the address (``fd00::2:104``)."""
        self.protocol, self.transport = self.connect(IPv6Address("TCP", "fd00::2", 40113))
        self.assertEqual(self.protocol.peerName(), "[fd00::2]:40113")
        self.associate(calling="CLI6")
        self.assertEqual(self.protocol.peerName(), "CLI6@[fd00::2]:40113")

    def test_compressionSuffix(self):
        pduType, _ = self.associate(called="PACS~j2")
        self.assertEqual(pduType, pdu.A_ASSOCIATE_AC)
        self.assertEqual(self.protocol.association.compression, "j2")

    def assertRejected(self, body, result, source, reason):
        rj = A_ASSOCIATE_RJ()
        rj.decode(b"\x03\x00" + len(body).to_bytes(4, "big") + body)
        self.assertEqual((rj.result, rj.source, rj.reason_diagnostic), (result, source, reason))

    def test_rejectCalledAE(self):
        pduType, body = self.associate(called="SOMEONE")
        self.assertEqual(pduType, pdu.A_ASSOCIATE_RJ)
        self.assertRejected(body, 1, 1, 7)
        self.clock.advance(30)
        self.assertTrue(self.transport.disconnecting, "ARTIM closes after a reject")

    def test_rejectCallingAE(self):
        self.policy.callingAETitles = {"FRIEND"}
        pduType, body = self.associate(calling="STRANGER")
        self.assertRejected(body, 1, 1, 3)
        self.transport.clear()
        self.protocol, self.transport = self.connect()
        pduType, _ = self.associate(calling="FRIEND")
        self.assertEqual(pduType, pdu.A_ASSOCIATE_AC)

    def test_rejectApplicationContext(self):
        pduType, body = self.associate(applicationContext="1.2.3")
        self.assertRejected(body, 1, 1, 2)

    def test_largePDUReadAtOnce(self):
        """Over TCP (not TLS), the rest of a large PDU begun is read in one
        receive where the socket has it, the next PDU's start with it;
        64 KB at a time (Twisted's) once no PDU is begun."""
        self.protocol._sizedReads = True
        self.transport.bufferSize = 1 << 16
        self.protocol.dataReceived(associateRQ([(VERIFICATION, [IMPLICIT])]))
        self.assertEqual(self.transport.bufferSize, 1 << 16)
        echo = message(1, echoRQ())
        self.protocol.dataReceived(echo[:20])
        self.assertEqual(self.transport.bufferSize, (1 << 16) + len(echo) - 20)
        self.protocol.dataReceived(echo[20:])
        self.assertEqual(self.transport.bufferSize, 1 << 16)
        self.assertEqual(len(readPDUs(self.written())), 2)  # the A-ASSOCIATE-AC and the C-ECHO-RSP

    def test_fragmentsToPeerMaximum(self):
        self.associate(maxLength=1024)
        self.written()
        dataset = bytes(range(256)) * 12
        self.protocol.sendMessage(1, commands.response(echoRQ(), commands.C_ECHO_RSP, 0), dataset)
        data = self.written()
        pdus = readPDUs(data)
        self.assertGreater(len(pdus), 3)
        self.assertTrue(all(len(body) <= 1024 for _, body in pdus))
        [(contextId, command, received)] = readMessages(data)
        self.assertEqual((contextId, command[commands.STATUS], received), (1, 0, dataset))

    def test_largeDatasetWrittenAsTheTransportDrains(self):
        """A data set over STREAMED_DATASET is written a batch each time the
        transport wants more; a message sent meanwhile and a release wait
        for it, and nothing is interleaved."""
        slow = SlowService()
        self.services[commands.C_ECHO_RQ] = slow
        self.associate(maxLength=16384)
        writeSequence = self.transport.writeSequence

        def fills(pieces):  # as a real transport whose buffer is then full
            writeSequence(pieces)
            self.protocol.pauseProducing()
        self.transport.writeSequence = fills
        dataset = random.Random(7).randbytes(STREAMED_DATASET * 2 + 12345)
        self.protocol.sendMessage(1, commands.response(echoRQ(), commands.C_ECHO_RSP, 0), dataset)
        batches = [self.written()]
        self.assertLess(len(batches[0]), WRITE_BATCH + 16384 + 256)
        self.protocol.dataReceived(message(1, echoRQ(messageId=2)) + pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))
        slow.pending[0].callback(None)  # its response waits behind the data set
        self.assertEqual(self.written(), b"")
        while True:
            self.protocol.resumeProducing()
            batch = self.written()
            if not batch:
                break
            batches.append(batch)
        self.assertGreater(len(batches), (STREAMED_DATASET * 2) // WRITE_BATCH)
        data = b"".join(batches)
        [(_, first, received), (_, second, nothing)] = readMessages(data)
        self.assertEqual((received, nothing), (dataset, None))
        self.assertEqual(second[commands.MESSAGE_ID_RESPONDED_TO], 2)
        self.assertEqual(readPDUs(data)[-1][0], pdu.A_RELEASE_RP)

    def test_dimseTimeoutCountsTheSilenceOnceTheRequestIsSent(self):
        """The DIMSE timeout of a request (a C-GET's or C-MOVE's C-STORE, a
        forward) bounds how long the peer stays silent once it was sent: a
        large data set that the peer takes slowly, for far longer than the
        timeout, is not cut short; the silence after it is."""
        self.factory.dimseTimeout = 5
        self.associate([(CT_STORAGE, [EXPLICIT])], maxLength=16384)
        self.transport.writeSequence = lambda pieces, write=self.transport.writeSequence: (
            write(pieces), self.protocol.pauseProducing())
        dataset = random.Random(9).randbytes(STREAMED_DATASET * 2)
        outcome = []
        self.protocol.store(dataset, CT_STORAGE, "1.2.3", EXPLICIT).addBoth(outcome.append)
        data = self.written()
        while batch := (self.clock.advance(4), self.protocol.resumeProducing(), self.written())[-1]:
            data += batch
        self.assertGreater(self.clock.seconds(), 20)
        [(_, _, received)] = readMessages(data)
        self.assertEqual((received, outcome), (dataset, []))
        self.clock.advance(4.9)
        self.assertEqual((self.written(), outcome), (b"", []))
        self.clock.advance(0.1)
        self.assertAborted(pdu.REASON_NOT_SPECIFIED)
        outcome[0].trap(DIMSETimeout)

    def test_aResponseWithoutStatusIsRefused(self):
        """A C-STORE-RSP without the Status PS3.7 makes mandatory (a C-GET's
        sub-operation, a forward) says neither success nor failure: the
        request fails with NoStatus, with a log line, and the association
        is aborted, so that no caller ever formats a status of None."""
        self.associate([(CT_STORAGE, [EXPLICIT])])
        outcome = []
        self.protocol.store(b"", CT_STORAGE, "1.2.3", EXPLICIT).addBoth(outcome.append)
        [(contextId, request, _)] = readMessages(self.written())
        response = commands.response(request, commands.C_STORE_RSP, 0)
        del response[commands.STATUS]
        with capturedLogs() as events:
            self.protocol.dataReceived(message(contextId, response))
        self.assertAborted(pdu.REASON_NOT_SPECIFIED)
        outcome[0].trap(NoStatus)
        self.assertEqual(str(outcome[0].value), "SCU@127.0.0.1:40000 answered message 1 with a C-STORE-RSP without a "
                                                "Status")
        self.assertIn("SCU@127.0.0.1:40000: C-STORE-RSP answers message 1 without a Status; refused, aborting",
                      [formatEvent(e) for e in events])

    def test_pdusOfAtMostABatch(self):
        """A peer announcing the largest PDU length (or none) gets PDUs of
        at most WRITE_BATCH, so that an 18 MB data set is not written (nor,
        from its file, read) in one piece, which a slow link takes longer
        to carry than the DIMSE timeout."""
        for maxLength in (0x7FFFFFFF, 0):
            self.protocol, self.transport = self.connect()
            self.associate([(CT_STORAGE, [EXPLICIT])], maxLength=maxLength)
            self.written()
            dataset = random.Random(3).randbytes(STREAMED_DATASET * 3)
            self.protocol.store(dataset, CT_STORAGE, "1.2.3", EXPLICIT)
            self.protocol.store(self.storedData(dataset), CT_STORAGE, "1.2.4", EXPLICIT)
            data = self.written()
            self.assertTrue(all(len(body) <= WRITE_BATCH for _, body in readPDUs(data)), maxLength)
            self.assertEqual([received for _, _, received in readMessages(data)], [dataset, dataset])

    def test_dimseTimeoutOfAPeerThatStopsTakingTheRequest(self):
        """A peer that takes nothing more of a request's data set for the
        DIMSE timeout has not answered in time either."""
        self.factory.dimseTimeout = 5
        self.associate([(CT_STORAGE, [EXPLICIT])], maxLength=16384)
        self.transport.writeSequence = lambda pieces, write=self.transport.writeSequence: (
            write(pieces), self.protocol.pauseProducing())
        outcome = []
        self.protocol.store(bytes(STREAMED_DATASET * 2), CT_STORAGE, "1.2.3", EXPLICIT).addBoth(outcome.append)
        self.clock.advance(4)
        self.protocol.resumeProducing()
        self.clock.advance(4.9)
        self.assertEqual(outcome, [])
        self.written()
        self.clock.advance(0.1)
        self.assertAborted(pdu.REASON_NOT_SPECIFIED)
        outcome[0].trap(DIMSETimeout)

    def storedData(self, dataset):
        """A StoredData of ``dataset`` behind 100 bytes of file, read at once."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(bytes(100) + dataset)
        return StoredData(open(path, "rb"), 100, len(dataset), lambda f, *a: defer.maybeDeferred(f, *a))

    def test_storedDataReadAPieceAtATime(self):
        self.associate(maxLength=16384)
        writeSequence = self.transport.writeSequence

        def fills(pieces):
            writeSequence(pieces)
            self.protocol.pauseProducing()
        self.transport.writeSequence = fills
        dataset = random.Random(8).randbytes(WRITE_BATCH * 3 + 777)
        stored = self.storedData(dataset)
        self.protocol.sendMessage(1, commands.response(echoRQ(), commands.C_ECHO_RSP, 0), stored)
        data = self.written()
        for _ in range(20):
            self.protocol.resumeProducing()
            data += self.written()
        self.assertTrue(stored.file.closed)
        [(_, _, received)] = readMessages(data)
        self.assertEqual(received, dataset)
        self.assertTrue(all(len(body) <= 16384 for _, body in readPDUs(data)))

    def test_storedDataClosedWhenTheAssociationEnds(self):
        self.associate()
        self.transport.writeSequence = lambda pieces, write=self.transport.writeSequence: (
            write(pieces), self.protocol.pauseProducing())
        stored, waiting = self.storedData(bytes(WRITE_BATCH * 2)), self.storedData(bytes(10))
        self.protocol.sendMessage(1, commands.response(echoRQ(), commands.C_ECHO_RSP, 0), stored)
        self.protocol.sendMessage(1, commands.response(echoRQ(), commands.C_ECHO_RSP, 0), waiting)
        self.assertFalse(stored.file.closed)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(stored.file.closed and waiting.file.closed)
        late = self.storedData(bytes(10))
        self.protocol.sendMessage(1, commands.response(echoRQ(), commands.C_ECHO_RSP, 0), late)
        self.assertTrue(late.file.closed)

    def test_unknownPDUType(self):
        self.associate()
        self.protocol.dataReceived(b"\x09\x00\x00\x00\x00\x04abcd")
        self.assertAborted(pdu.REASON_UNRECOGNIZED_PDU)

    def test_hugeLength(self):
        self.associate()
        self.protocol.dataReceived(b"\x04\x00\xff\xff\xff\xff")
        self.assertAborted(pdu.REASON_INVALID_PARAMETER)
        self.assertLess(self.protocol._framer.pendingBytes, 16)

    def test_oversizedCommandOrIdentifier(self):
        """A command set over 64 KB, or a data set over 16 MB that would be
        kept in memory (a C-FIND identifier): A-ABORT, little kept."""
        self.associate()
        for _ in range(5):  # command fragments that never end
            self.protocol.dataReceived(pdu.encodePData(1, 0x01, b"\x00" * 16000))
        self.assertEqual(readPDUs(self.written())[-1][0], pdu.A_ABORT)
        self.protocol, self.transport = self.connect()
        self.associate()
        find = {commands.COMMAND_FIELD: commands.C_FIND_RQ, commands.MESSAGE_ID: 3,
                commands.AFFECTED_SOP_CLASS_UID: VERIFICATION, commands.PRIORITY: 0,
                commands.COMMAND_DATASET_TYPE: commands.DATASET_PRESENT}
        self.protocol.dataReceived(pdu.encodePData(1, 0x03, commands.encodeCommand(find)))
        sent = 0
        while not self.transport.value() and sent < 32 << 20:  # an identifier that never ends
            self.protocol.dataReceived(pdu.encodePData(1, 0x00, b"\x00" * 65536))
            sent += 65536
        self.assertEqual(readPDUs(self.written())[-1][0], pdu.A_ABORT)
        self.assertLessEqual(sent, (16 << 20) + 65536)

    def test_hugeAssociateRequest(self):
        self.protocol.dataReceived(b"\x01\x00\x7f\xff\xff\xff")
        self.assertAborted(pdu.REASON_INVALID_PARAMETER)

    def test_garbageAssociateRequest(self):
        self.protocol.dataReceived(b"\x01\x00\x00\x00\x00\x05hello")
        self.assertAborted(pdu.REASON_INVALID_PARAMETER)

    def test_pdataBeforeAssociate(self):
        self.protocol.dataReceived(message(1, echoRQ()))
        self.assertAborted(pdu.REASON_UNEXPECTED_PDU)

    def test_secondAssociateRequest(self):
        self.associate()
        self.protocol.dataReceived(associateRQ([(VERIFICATION, [IMPLICIT])]))
        self.assertAborted(pdu.REASON_UNEXPECTED_PDU)

    def test_truncatedCommand(self):
        self.associate()
        self.protocol.dataReceived(pdu.encodePData(1, 3, b"\x00\x00\x00\x01\x04\x00"))
        self.assertAborted(pdu.REASON_INVALID_PARAMETER)

    def test_unacceptedContext(self):
        self.associate()
        self.protocol.dataReceived(message(3, echoRQ()))
        self.assertAborted(pdu.REASON_INVALID_PARAMETER)

    def test_abortThenPeerCloses(self):
        self.associate()
        self.protocol.dataReceived(message(3, echoRQ()))
        self.assertAborted(pdu.REASON_INVALID_PARAMETER)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(30)
        self.assertTrue(self.transport.disconnecting)

    def test_unframableStreamDiscardedAndClosed(self):
        """After a PDU header that breaks the framing (here a P-DATA-TF
        announcing 2 GB) the A-ABORT goes and the connection is closed (as
        DCMTK does); what the peer still sends is discarded unread (PS3.8
        Sta13): nothing buffered, no more log lines."""
        self.associate()
        with capturedLogs() as events:
            self.protocol.dataReceived(b"\x04\x00\x7f\xff\xff\xf0" + bytes(60000))
            for _ in range(100):
                self.protocol.dataReceived(bytes(60000))
        self.assertAborted(pdu.REASON_INVALID_PARAMETER)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.protocol._framer.pendingBytes, 0)
        [logged] = [formatEvent(e) for e in events if "malformed PDU" in formatEvent(e)]
        self.assertIn("P-DATA-TF announces 2147483632 bytes, more than the 32774 allowed", logged)

    def test_otherProtocolClosedAtOnce(self):
        """Bytes that are no A-ASSOCIATE-RQ (Conquest's dgate sending a
        command to the DICOM port) get an A-ABORT and the connection is
        closed with it: the peer is not left waiting for ARTIM."""
        self.protocol.dataReceived(b"COMMAND --display_status:\r\n")
        self.assertAborted(pdu.REASON_UNRECOGNIZED_PDU)
        self.assertTrue(self.transport.disconnecting)

    def test_artimBeforeAssociate(self):
        self.clock.advance(29)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnecting)

    def test_noTimersWithoutLimits(self):
        """TCPIPTimeOut and ARTIMTimeOut of 0 (None here): no limit, not
        an association aborted as soon as it is accepted."""
        self.factory.idleTimeout = self.factory.artimTimeout = None
        self.protocol, self.transport = self.connect()
        self.clock.advance(3600)
        self.assertFalse(self.transport.disconnecting)
        pduType, _ = self.associate()
        self.assertEqual(pduType, pdu.A_ASSOCIATE_AC)
        self.clock.advance(3600)
        self.assertEqual(self.written(), b"")
        self.protocol.dataReceived(pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))
        self.assertEqual([t for t, _ in readPDUs(self.written())], [pdu.A_RELEASE_RP])
        self.clock.advance(3600)
        self.assertFalse(self.transport.disconnecting)

    def test_idleTimeout(self):
        self.associate()
        self.clock.advance(299)
        self.protocol.dataReceived(message(1, echoRQ()))
        self.written()
        self.clock.advance(299)
        self.assertEqual(self.written(), b"")
        self.clock.advance(1)
        self.assertAborted(pdu.REASON_NOT_SPECIFIED)

    def test_noIdleTimeoutWhileServing(self):
        """TCPIPTimeOut counts from the end of the last operation: a C-MOVE
        or C-FIND that takes longer is not cut off."""
        slow = SlowService()
        self.services[commands.C_ECHO_RQ] = slow
        self.associate()
        self.protocol.dataReceived(message(1, echoRQ()))
        self.clock.advance(900)
        self.assertEqual(self.written(), b"")
        slow.pending[0].callback(None)
        self.assertEqual([t for t, _ in readPDUs(self.written())], [pdu.P_DATA_TF])
        self.clock.advance(300)
        self.assertAborted(pdu.REASON_NOT_SPECIFIED)

    def test_idleTimeoutCountsFromTheEndOfTheLastOperation(self):
        """An operation that ends between one and two TCPIPTimeOut periods
        leaves the requestor the whole period after its response, not what
        was left of a timer re-armed while it ran."""
        slow = SlowService()
        self.services[commands.C_ECHO_RQ] = slow
        self.associate()
        self.protocol.dataReceived(message(1, echoRQ()))
        self.clock.pump([300, 150])
        slow.pending[0].callback(None)
        self.assertEqual([t for t, _ in readPDUs(self.written())], [pdu.P_DATA_TF])
        self.clock.advance(299)
        self.assertEqual(self.written(), b"")
        self.clock.advance(1)
        self.assertAborted(pdu.REASON_NOT_SPECIFIED)

    def test_noIdleTimeoutWhileThePeerTakesWhatWasSent(self):
        """An association whose peer is still taking what was sent to it
        (a C-FIND's answer of megabytes over a slow link, in Twisted's
        write buffer and the socket's send queue) is not idle: it was
        aborted TCPIPTimeOut after the last response was written, the tail
        of the answer lost.  Once the peer takes nothing for a whole
        TCPIPTimeOut, it is aborted, with a line saying so."""
        self.protocol, self.transport = self.connect(transport=BufferedTransport(self))
        self.associate()
        self.transport._tempDataLen = 1000000  # the answers before this one, not taken yet
        self.protocol.dataReceived(message(1, echoRQ()))
        self.written()
        for left in (600000, 20000):
            self.clock.advance(299)
            self.transport._tempDataLen = left
            self.clock.advance(1)
            self.assertEqual(self.written(), b"")
        with capturedLogs() as events:
            self.clock.advance(300)
        self.assertAborted(pdu.REASON_NOT_SPECIFIED)
        self.assertIn("SCU@127.0.0.1:40000: no data for 300 s (TCPIPTimeOut), and it took none of the 20000 bytes sent to "
                      "it, aborting", [formatEvent(event) for event in events])

    def test_noIdleTimeoutWhileTheWriteBufferDrains(self):
        """The transport resuming its producer (all it was given is sent)
        shows the peer taking what was written: the idle timeout counts
        from then."""
        self.associate()
        self.protocol.dataReceived(message(1, echoRQ()))
        self.written()
        self.protocol.pauseProducing()
        self.clock.advance(250)
        self.protocol.resumeProducing()
        self.clock.advance(299)
        self.assertEqual(self.written(), b"")
        self.clock.advance(1)
        self.assertAborted(pdu.REASON_NOT_SPECIFIED)

    def test_release(self):
        self.associate()
        self.protocol.dataReceived(pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))
        self.assertEqual(readPDUs(self.written()), [(pdu.A_RELEASE_RP, b"\x00\x00\x00\x00")])
        self.clock.advance(30)
        self.assertTrue(self.transport.disconnecting)

    def test_releaseWaitsForOperations(self):
        slow = SlowService()
        self.services[commands.C_ECHO_RQ] = slow
        self.associate()
        self.protocol.dataReceived(message(1, echoRQ()) + pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))
        self.assertEqual(self.written(), b"")
        slow.pending[0].callback(None)
        self.assertEqual([t for t, _ in readPDUs(self.written())], [pdu.P_DATA_TF, pdu.A_RELEASE_RP])

    def test_pdataAfterReleaseRequestAborted(self):
        """PS3.8 Sta8 + Evt10 (AA-8): a request sent after the A-RELEASE-RQ
        is not served; the A-ABORT also ends what was under way."""
        slow = SlowService()
        self.services[commands.C_ECHO_RQ] = slow
        self.associate()
        self.protocol.dataReceived(message(1, echoRQ()) + pdu.encodeSimplePDU(pdu.A_RELEASE_RQ)
                                   + message(1, echoRQ(2)))
        self.assertAborted(pdu.REASON_UNEXPECTED_PDU)
        self.assertEqual(len(slow.pending), 1, "the request after the release was not served")

    def test_dataSetAfterReleaseRequestDiscarded(self):
        """A C-STORE after the A-RELEASE-RQ: its data set (a spool file) is discarded with the abort."""
        sinks = []

        class RecordingSink(MemorySink):
            discarded = False

            def discard(self):
                self.discarded = True
                super().discard()

        class Provider:
            def datasetSink(self, protocol, contextId, command):
                sinks.append(RecordingSink())
                return sinks[-1]

        self.factory.sinks[commands.C_STORE_RQ] = Provider()
        self.services[commands.C_ECHO_RQ] = SlowService()  # under way: the release waits for it
        self.associate([(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [IMPLICIT])])
        store = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.MESSAGE_ID: 4, commands.PRIORITY: 0,
                 commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE, commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3"}
        self.protocol.dataReceived(message(1, echoRQ()) + pdu.encodeSimplePDU(pdu.A_RELEASE_RQ)
                                   + message(3, store, b"\x08\x00\x18\x00\x06\x00\x00\x001.2.3\x00"))
        self.assertAborted(pdu.REASON_UNEXPECTED_PDU)
        self.assertEqual([sink.discarded for sink in sinks], [True])

    def test_releaseInTheMiddleOfAMessageAborted(self):
        """A requestor that releases before the last fragment of a data set
        is told with an A-ABORT that the object was not taken."""
        self.associate([(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [IMPLICIT])])
        store = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.MESSAGE_ID: 4, commands.PRIORITY: 0,
                 commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE, commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3"}
        store[commands.COMMAND_DATASET_TYPE] = commands.DATASET_PRESENT
        self.protocol.dataReceived(pdu.encodePData(3, 3, commands.encodeCommand(store)))  # no data set follows
        self.protocol.dataReceived(pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))
        self.assertAborted(pdu.REASON_UNEXPECTED_PDU)

    def test_releaseWaitsForOurRequestsUnlessTheyYield(self):
        """A release waits for the response to a request we sent (a C-GET's
        C-STORE), but fails one sent with yieldsToRelease (a storage
        commitment report) and releases at once."""
        self.associate()
        report = {commands.COMMAND_FIELD: commands.N_EVENT_REPORT_RQ, commands.AFFECTED_SOP_CLASS_UID: VERIFICATION,
                  commands.COMMAND_DATASET_TYPE: commands.NO_DATASET}
        waiting = self.protocol.request(1, report)
        yielding = self.protocol.request(1, report, yieldsToRelease=True)
        self.written()
        self.protocol.dataReceived(pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))
        self.assertEqual(self.written(), b"")
        answer = commands.response(report, commands.N_EVENT_REPORT_RSP, 0)
        answer[commands.MESSAGE_ID_RESPONDED_TO] = 1
        self.protocol.dataReceived(message(1, answer))
        self.assertEqual(self.successResultOf(waiting)[0][commands.STATUS], 0)
        self.assertEqual([t for t, _ in readPDUs(self.written())], [pdu.A_RELEASE_RP])
        self.assertIn("released the association first", str(self.failureResultOf(yielding).value))

    def test_peerAbort(self):
        self.associate()
        self.protocol.dataReceived(pdu.encodeAbort(pdu.SOURCE_SERVICE_USER, 0))
        self.assertTrue(self.transport.disconnecting)

    def test_aRequestFailedByTheEndSeesTheAssociationGone(self):
        """A request of ours (a C-GET's C-STORE) failed by the peer's
        A-ABORT, by ours, or (one that yields to a release, a storage
        commitment report) by the peer's release finds the association no
        longer established when its failure is handled: what it does next
        (a retrieve's next object, a release, another request) does not
        take the association for still up."""
        store = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE,
                 commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3", commands.PRIORITY: 0}
        for end in (lambda: self.protocol.dataReceived(pdu.encodeAbort(pdu.SOURCE_SERVICE_USER, 0)),
                    lambda: self.protocol.abort(),
                    lambda: self.protocol.dataReceived(pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))):
            self.protocol, self.transport = self.connect()
            self.associate([(CT_STORAGE, [IMPLICIT])])
            seen = []
            self.protocol.request(1, store, b"\x08\x00\x18\x00\x06\x00\x00\x001.2.3\x00",
                                  yieldsToRelease=True).addErrback(lambda failure: seen.append(self.protocol.state))
            end()
            self.assertEqual(seen, ["Sta13"])

    def test_connectionLostWithoutReleaseOrAbortLogged(self):
        """A connection that ends with the association established, neither
        released nor aborted (an A-P-ABORT, PS3.8 7.4), is a warning naming
        the C-STORE whose data set it cut short; after an A-ABORT, none."""
        self.associate([(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [IMPLICIT])])
        store = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.MESSAGE_ID: 4, commands.PRIORITY: 0,
                 commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE, commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3",
                 commands.COMMAND_DATASET_TYPE: commands.DATASET_PRESENT}
        self.protocol.dataReceived(pdu.encodePData(3, 3, commands.encodeCommand(store))
                                   + pdu.encodePData(3, 0, b"\x08\x00\x18\x00\x06\x00"))  # the data set cut short
        with capturedLogs() as events:
            self.protocol.connectionLost(Failure(ConnectionDone()))
        [warning] = [formatEvent(event) for event in events if event["log_level"].name == "warn"]
        self.assertEqual(warning, "SCU@127.0.0.1:40000: connection lost without A-RELEASE or A-ABORT: Connection was "
                                  "closed cleanly; cut short and discarded: C-STORE-RQ of 1.2.3")
        self.protocol, self.transport = self.connect()
        self.associate()
        with capturedLogs() as events:
            self.protocol.dataReceived(pdu.encodeAbort(pdu.SOURCE_SERVICE_USER, 0))
            self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([formatEvent(event) for event in events], ["SCU@127.0.0.1:40000: association aborted by peer "
                                                                  "(A-ABORT from the peer's service user)"])

    def test_connectionLostInTheMiddleOfTheAssociateRequestLogged(self):
        """A connection that ends before a whole A-ASSOCIATE-RQ arrived (a
        request cut short, a scanner of the port) is an info line saying how
        many bytes came; one that sent nothing (a port check) is none."""
        request = associateRQ([(VERIFICATION, [IMPLICIT])])
        for sent, line in ((request[:40], f"40 of its {len(request)} bytes came"), (request[:3], "3 bytes came")):
            self.protocol, self.transport = self.connect()
            self.protocol.dataReceived(sent)
            with capturedLogs() as events:
                self.protocol.connectionLost(Failure(ConnectionDone()))
            self.assertEqual([(event["log_level"].name, formatEvent(event)) for event in events], [
                ("info", "127.0.0.1:40000: connection lost before a whole A-ASSOCIATE-RQ arrived: Connection was "
                         f"closed cleanly; {line}")])
        self.protocol, self.transport = self.connect()
        with capturedLogs() as events:
            self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(events, [])

    def test_aCutFirstPDUOfAnotherTypeOrOneARTIMClosedIsNoCutAssociateRequest(self):
        """A first PDU of another type cut short is named by its type, not
        called an A-ASSOCIATE-RQ; a connection ARTIM closed is its warning
        alone: pacs closed it, the peer lost nothing."""
        self.protocol.dataReceived(pdu.encodeAbort(0, 0)[:8])
        with capturedLogs() as events:
            self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([formatEvent(event) for event in events], [
            "127.0.0.1:40000: connection lost before a whole first PDU (type 0x07) arrived: Connection was closed "
            "cleanly; 8 of its 10 bytes came"])
        self.protocol, self.transport = self.connect()
        self.protocol.dataReceived(associateRQ([(VERIFICATION, [IMPLICIT])])[:38])
        with capturedLogs() as events:
            self.clock.advance(30)
            self.assertTrue(self.transport.disconnecting)
            self.protocol.connectionLost(Failure(ConnectionAborted()))
        self.assertEqual([formatEvent(event) for event in events], [
            "127.0.0.1:40000: no A-ASSOCIATE-RQ within 30 s (ARTIM), closing"])

    def test_unsupportedOperation(self):
        self.associate()
        find = {commands.COMMAND_FIELD: commands.C_FIND_RQ, commands.MESSAGE_ID: 3,
                commands.AFFECTED_SOP_CLASS_UID: VERIFICATION, commands.PRIORITY: 0}
        self.protocol.dataReceived(message(1, find, b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "))
        [(_, rsp, _)] = readMessages(self.written())
        self.assertEqual((rsp[commands.COMMAND_FIELD], rsp[commands.STATUS]), (commands.C_FIND_RSP, 0x0211))

    def test_unsupportedNormalizedOperationsNamed(self):
        """An N-GET or N-DELETE (no service of pacs takes them) is answered
        0x0211 with a warning naming it: the line read '0x110 is not
        supported here'."""
        self.associate()
        for messageId, (field, name) in enumerate(((0x0110, "N-GET-RQ"), (0x0150, "N-DELETE-RQ")), 3):
            request = {commands.COMMAND_FIELD: field, commands.MESSAGE_ID: messageId,
                       commands.REQUESTED_SOP_CLASS_UID: VERIFICATION, commands.REQUESTED_SOP_INSTANCE_UID: "1.2.3"}
            with capturedLogs() as events:
                self.protocol.dataReceived(message(1, request))
            [(_, rsp, _)] = readMessages(self.written())
            self.assertEqual((rsp[commands.COMMAND_FIELD], rsp[commands.STATUS]), (field | 0x8000, 0x0211))
            self.assertEqual([formatEvent(event) for event in events],
                             [f"SCU@127.0.0.1:40000: {name} is not supported here"])

    def test_serviceErrorAnswersFailure(self):
        class Broken:
            def handle(self, protocol, contextId, command, dataset):
                raise RuntimeError("boom")
        self.services[commands.C_ECHO_RQ] = Broken()
        self.associate()
        self.protocol.dataReceived(message(1, echoRQ()))
        [(_, rsp, _)] = readMessages(self.written())
        self.assertEqual(rsp[commands.STATUS], 0x0110)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_otherAssociationsUnaffected(self):
        self.associate()
        self.protocol.dataReceived(b"\x09garbage")
        first = self.transport
        self.protocol, self.transport = self.connect()
        self.associate()
        self.protocol.dataReceived(message(1, echoRQ()))
        self.assertEqual(readMessages(self.written())[0][1][commands.STATUS], 0)
        self.assertEqual(self.factory.counters["associationsTotal"], 2)
        self.assertTrue(first.value())

    def test_mutatedStreams(self):
        """Seeded random damage anywhere in an association's bytes (delivered
        in random pieces) ends in an A-ABORT, a rejection or answers, and
        never in an internal error."""
        rng = random.Random(20261202)
        store = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.MESSAGE_ID: 2, commands.PRIORITY: 0,
                 commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE, commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3"}
        session = [associateRQ([(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [EXPLICIT, IMPLICIT])],
                               roles=[(CT_STORAGE, False, True)], asyncWindow=(2, 2)),
                   message(1, echoRQ()), message(3, store, b"\x08\x00\x18\x00\x06\x00\x00\x001.2.3\x00"),
                   message(1, echoRQ(3)), pdu.encodeSimplePDU(pdu.A_RELEASE_RQ)]
        outcomes = {}
        for _ in range(2000):
            damaged = list(session)
            which = rng.randrange(len(damaged))
            damaged[which] = mutated(rng, damaged[which])
            data = b"".join(damaged)
            protocol, transport = self.connect()
            position = 0
            while position < len(data) and not transport.disconnecting:
                step = rng.randint(1, 4000)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # pydicom's about damaged UIDs
                    protocol.dataReceived(data[position:position + step])
                position += step
            replies = [pduType for pduType, _ in readPDUs(transport.value())]
            outcome = replies[-1] if replies else None
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertGreater(outcomes.get(pdu.A_ABORT, 0), 500, outcomes)
        self.assertGreater(outcomes.get(pdu.A_RELEASE_RP, 0), 100, outcomes)


class AssociationHooksTests(ServerTestCase):
    """The factory's hooks of an association's events (the [lua]
    association scripts): onCommand checks each request before it is
    served, in order, and may change or refuse it; onClientError hears of
    a request not served, onEnded of the end."""

    def setUp(self):
        super().setUp()
        self.checks, self.events, self.sessions = [], [], []
        self.factory.onCommand = self.onCommand
        self.factory.onClientError = lambda *event, session: self.record("clienterror", event, session)
        self.factory.onEnded = lambda *event, session, refused=False: self.record(
            "refused" if refused else "ended", event, session)

    def record(self, name, event, session):
        self.events.append((name, *event))
        self.sessions.append(session)

    def onCommand(self, callingAE, calledAE, command, session):
        self.sessions.append(session)
        self.checks.append(((callingAE, calledAE, command), defer.Deferred()))
        return self.checks[-1][1]

    def recordDiscarded(self):
        """The Message IDs of the C-STOREs whose data sets are discarded, as they are."""
        discarded = []

        class Provider:
            def datasetSink(self, protocol, contextId, command):
                sink = MemorySink()
                sink.discard = lambda: discarded.append(command[commands.MESSAGE_ID])
                return sink

        self.factory.sinks[commands.C_STORE_RQ] = Provider()
        return discarded

    def queueStores(self, then=b""):
        """``QUEUED`` C-STOREs received at once (the first one being
        checked), then ``then``; as ``recordDiscarded``."""
        discarded = self.recordDiscarded()
        self.associate([(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [IMPLICIT])])
        self.protocol.dataReceived(b"".join(storeMessage(i) for i in range(1, QUEUED + 1)) + then)
        return discarded

    def answered(self):
        return [(rsp[commands.COMMAND_FIELD], rsp[commands.MESSAGE_ID_RESPONDED_TO], rsp[commands.STATUS])
                for _, rsp, _ in readMessages(self.written())]

    def test_requestsServedAsCheckedInOrder(self):
        """Each request waits for its check and for those of the requests
        before it; what the check gives is served (here: another Message ID)."""
        self.associate()
        self.protocol.dataReceived(message(1, echoRQ(messageId=1)) + message(1, echoRQ(messageId=2)))
        self.assertEqual(len(self.checks), 1, "the second request waits for the first one's turn")
        (callingAE, calledAE, command), first = self.checks[0]
        self.assertEqual((callingAE, calledAE, command[commands.MESSAGE_ID]), ("SCU", "PACS", 1))
        self.clock.advance(600)  # a request being checked is no idle association
        self.assertEqual(self.written(), b"")
        first.callback({**echoRQ(messageId=1), commands.MESSAGE_ID: 11})
        self.assertEqual(self.answered(), [(commands.C_ECHO_RSP, 11, 0)])
        self.checks[1][1].callback(self.checks[1][0][2])
        self.assertEqual(self.answered(), [(commands.C_ECHO_RSP, 2, 0)])

    def test_releaseWaitsForTheCheck(self):
        self.associate()
        self.protocol.dataReceived(message(1, echoRQ()) + pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))
        self.assertEqual(self.written(), b"")
        self.checks[0][1].callback(echoRQ())
        self.assertEqual([t for t, _ in readPDUs(self.written())], [pdu.P_DATA_TF, pdu.A_RELEASE_RP])
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.events, [("ended", "SCU", "PACS")])
        # the association's session (its Lua state), the same for each of its events
        self.assertEqual([session is self.protocol.session for session in self.sessions], [True, True])

    def test_refusedRequestAbortsWithoutEnd(self):
        """A refused request gets no answer, its data set goes, the
        association is aborted, and onEnded hears of it as refused (as
        Conquest runs no endassociation script then, but its state is
        freed); the requests after it are not served."""
        discarded = self.recordDiscarded()
        self.associate([(VERIFICATION, [IMPLICIT]), (CT_STORAGE, [IMPLICIT])])
        self.protocol.dataReceived(storeMessage(4) + message(1, echoRQ(messageId=5)))
        self.checks[0][1].callback(None)
        pdus = readPDUs(self.written())
        self.assertEqual(pdus, [(pdu.A_ABORT, bytes((0, 0, pdu.SOURCE_SERVICE_USER, 0)))])
        self.assertEqual(len(self.checks), 1, "the echo after it is not checked: the association ended")
        self.assertEqual(discarded, [4])
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.events, [("refused", "SCU", "PACS")])

    def test_checkEndingAfterTheAbortServesNothing(self):
        self.associate()
        self.protocol.dataReceived(message(1, echoRQ()))
        self.protocol.dataReceived(pdu.encodeAbort(pdu.SOURCE_SERVICE_USER, 0))
        self.checks[0][1].callback(echoRQ())
        self.assertEqual(self.written(), b"")
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.events, [("ended", "SCU", "PACS")])

    def test_longQueueServedInOrder(self):
        """Requests a peer sent while one was checked, whose checks then
        end at once, are served one after the other (not each inside the
        last one's, which would exceed Python's recursion limit)."""
        self.associate()
        self.protocol.dataReceived(b"".join(message(1, echoRQ(messageId=i)) for i in range(1, QUEUED + 1)))
        self.factory.onCommand = lambda callingAE, calledAE, command, session: defer.succeed(command)
        self.checks[0][1].callback(self.checks[0][0][2])
        self.assertEqual(self.answered(), [(commands.C_ECHO_RSP, i, 0) for i in range(1, QUEUED + 1)])
        self.assertFalse(self.protocol.busy)

    def test_queueDroppedWhenThePeerAborts(self):
        """The requests waiting for a check when the peer aborts are not
        checked: their data sets (spool files) are discarded, their
        operations end."""
        discarded = self.queueStores(then=pdu.encodeAbort(pdu.SOURCE_SERVICE_USER, 0))
        self.checks[0][1].callback(self.checks[0][0][2])
        self.assertEqual(len(self.checks), 1)
        self.assertEqual(sorted(discarded), list(range(1, QUEUED + 1)))
        self.assertFalse(self.protocol.busy)

    def test_queueDroppedWhenTheConnectionIsLost(self):
        """The connection lost, the requests waiting for a check are dropped
        at once; the one being checked when its check ends."""
        discarded = self.queueStores()
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(sorted(discarded), list(range(2, QUEUED + 1)))
        self.assertEqual(self.events, [("ended", "SCU", "PACS")])
        self.checks[0][1].callback(self.checks[0][0][2])
        self.assertEqual(sorted(discarded), list(range(1, QUEUED + 1)))
        self.assertFalse(self.protocol.busy)

    def test_queueDroppedWhenWeAbort(self):
        """Aborting (here: the peer sent a PDU of no known type), the
        requests waiting for a check are dropped at once."""
        discarded = self.queueStores(then=b"\x09\x00\x00\x00\x00\x04abcd")
        self.assertAborted(pdu.REASON_UNRECOGNIZED_PDU)
        self.assertEqual(sorted(discarded), list(range(2, QUEUED + 1)))
        self.checks[0][1].callback(self.checks[0][0][2])
        self.assertEqual(len(self.checks), 1)
        self.assertFalse(self.protocol.busy)

    def test_requestsNotServed(self):
        """An unknown operation (0211), a SOP class not served on its
        context (0122) and a failed operation (0110) are client errors."""
        class Broken:
            def handle(self, protocol, contextId, command, dataset):
                raise RuntimeError("boom")

        self.factory.onCommand = None
        self.services[commands.C_ECHO_RQ] = Broken()
        self.services[commands.C_FIND_RQ] = SopClassRouter({})
        self.associate()
        find = {commands.COMMAND_FIELD: commands.C_FIND_RQ, commands.MESSAGE_ID: 3,
                commands.AFFECTED_SOP_CLASS_UID: VERIFICATION, commands.PRIORITY: 0}
        get = {**find, commands.COMMAND_FIELD: commands.C_GET_RQ, commands.MESSAGE_ID: 4}
        identifier = b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "
        self.protocol.dataReceived(message(1, find, identifier) + message(1, get, identifier) + message(1, echoRQ()))
        self.assertEqual(self.answered(), [(commands.C_FIND_RSP, 3, 0x0122), (commands.C_GET_RSP, 4, 0x0211),
                                           (commands.C_ECHO_RSP, 1, 0x0110)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual([(event, calling, command[commands.MESSAGE_ID]) for event, calling, _, command in self.events],
                         [("clienterror", "SCU", 3), ("clienterror", "SCU", 4), ("clienterror", "SCU", 1)])

    def test_noEndWithoutAssociation(self):
        self.protocol.dataReceived(associateRQ([(VERIFICATION, [IMPLICIT])], called="OTHER"))
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.events, [])
