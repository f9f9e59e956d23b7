"""Unit tests of pacscore.dicom.commitment: reading N-ACTION requests,
checking the objects they name and the table of requests whose report is
still owed."""

import functools
import os
import threading
import warnings
from types import SimpleNamespace

from sqlalchemy import create_engine
from twisted.internet import defer, reactor, task, threads
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN
from pacscore.dicom import client, commands, commitment, pdu
from pacscore.db.completeness import IndexCompleteness
from pacscore.db.query import IndexQuery, Instance
from pacscore.dicom.commitment import (
    CLASS_INSTANCE_CONFLICT, INVALID_ARGUMENT_VALUE, NO_SUCH_ACTION, NO_SUCH_OBJECT_INSTANCE, PROCESSING_FAILURE,
    STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE, BadCommitmentRequest, CommitmentService, PendingCommitments,
    commitmentOutcome, readCommitmentRequest, storedInstances)
from pacscore.dicom.client import NodeUnreachable
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.negotiation import AcceptorPolicy
from pacscore.dicom.protocol import AssociationLost, DicomServerFactory, DIMSETimeout, NoStatus
from pacscore.storage.devices import MagDevice
from pacscore.storage.mirror import Mirrors
from pacscore.storage.reader import ObjectReader
from tests.pacscore.dicom.requests import associateRQ, commitmentRequest, message, readMessages, readPDUs, recordDecodes
from tests.pacscore.export.fixtures import SyncIndex, smallPacketIndex
from tests.pacscore.storage.test_mirror import dicomBytes

CT = "1.2.840.10008.5.1.4.1.1.2"


def actionCommand(actionType=1):
    return {commands.REQUESTED_SOP_CLASS_UID: STORAGE_COMMITMENT,
            commands.REQUESTED_SOP_INSTANCE_UID: STORAGE_COMMITMENT_INSTANCE, commands.ACTION_TYPE_ID: actionType}


def requestData(transaction, references):
    with warnings.catch_warnings():  # pydicom warns of the values that are no UIDs
        warnings.simplefilter("ignore")
        return encodeDataset(commitmentRequest(references, transaction), EXPLICIT_VR_LITTLE_ENDIAN)


class ReadCommitmentRequestTests(unittest.TestCase):

    def test_request(self):
        data = requestData("1.2.3", [(CT, "1.2.3.4"), (CT, "1.2.3.5")])
        self.assertEqual(readCommitmentRequest(actionCommand(), data, EXPLICIT_VR_LITTLE_ENDIAN),
                         ("1.2.3", [(CT, "1.2.3.4"), (CT, "1.2.3.5")]))

    def test_refusals(self):
        for command, data, status in (
                (actionCommand(2), requestData("1.2.3", [(CT, "1.2.3.4")]), NO_SUCH_ACTION),
                (actionCommand(), requestData("", [(CT, "1.2.3.4")]), INVALID_ARGUMENT_VALUE),
                (actionCommand(), requestData("1.2.3", []), INVALID_ARGUMENT_VALUE),
                (actionCommand(), None, INVALID_ARGUMENT_VALUE)):
            with self.assertRaises(BadCommitmentRequest) as caught:
                readCommitmentRequest(command, data, EXPLICIT_VR_LITTLE_ENDIAN)
            self.assertEqual(caught.exception.status, status)

    def test_valuesThatAreNoUIDs(self):
        """A Transaction UID, Referenced SOP Class UID or Referenced SOP
        Instance UID that is not one UID (several values, a wildcard, other
        characters than digits and dots, over 64 characters) is a malformed
        request: 0x0115, the error naming the attribute and its value."""
        for transaction, (sopClass, sop), named in (
                ("1.2.3\\4.5.6", (CT, "1.2.3.4"), "Transaction UID (0008,1195) '1.2.3\\\\4.5.6'"),
                ("1" * 65, (CT, "1.2.3.4"), "Transaction UID (0008,1195) '" + "1" * 65),
                ("hello world; DROP", (CT, "1.2.3.4"), "Transaction UID (0008,1195) 'hello world; DROP'"),
                ("1.2.3", (CT, "*"), "Referenced SOP Instance UID (0008,1155) '*'"),
                ("1.2.3", (CT, "1.2.3.4\\1.2.3.5"), "Referenced SOP Instance UID (0008,1155) '1.2.3.4\\\\1.2.3.5'"),
                ("1.2.3", (CT, "1" * 65), "Referenced SOP Instance UID (0008,1155)"),
                ("1.2.3", (CT + "\\1.2", "1.2.3.4"), "Referenced SOP Class UID (0008,1150)"),
                ("1.2.3", ("CT?", "1.2.3.4"), "Referenced SOP Class UID (0008,1150) 'CT?'")):
            with self.assertRaises(BadCommitmentRequest) as caught:
                readCommitmentRequest(actionCommand(), requestData(transaction, [(CT, "1.2.3.9"), (sopClass, sop)]),
                                      EXPLICIT_VR_LITTLE_ENDIAN)
            self.assertEqual(caught.exception.status, INVALID_ARGUMENT_VALUE)
            self.assertIn(named, str(caught.exception))
            self.assertIn("is not a UID", str(caught.exception))
        self.assertEqual(readCommitmentRequest(actionCommand(), requestData("1" * 64, [(CT, "1.2")]),
                                               EXPLICIT_VR_LITTLE_ENDIAN), ("1" * 64, [(CT, "1.2")]))


class LookupTests(unittest.TestCase):

    def test_referencesMatchedExactly(self):
        """Only UIDs are looked up, each one literally: a reference that is
        none (a request recorded before they were checked) is no object,
        never a wildcard or list that would match the whole index."""
        asked = []
        held = Instance("1.2.3.4", CT, "MAG0", "P/1.dcm", "P", "1", "1.1")

        def instances(connection, level, keys):
            asked.extend((level, key.vr, key.value) for key in keys)
            return [held]
        query = SimpleNamespace(tables=[None, None, None, SimpleNamespace(keyTag=0x00080018)], instances=instances)
        query.instancesByUID = functools.partial(IndexQuery.instancesByUID, query)
        stored = storedInstances(None, query, [(CT, "1.2.3.4"), (CT, "*"), (CT, "1.2.3.4\\1.2.3.5"), (CT, "")])
        self.assertEqual(stored, {"1.2.3.4": held})
        self.assertEqual(asked, [("IMAGE", "UI", "1.2.3.4")])


class CommitmentOutcomeTests(unittest.TestCase):
    """An object is committed when the index holds it under that class and
    its file (or else its mirror copy) reads to its end; one missing, cut
    short or zeroed fails with 0x0110, the reason told."""

    def setUp(self):
        self.mag0 = MagDevice("MAG0", self.mktemp())
        self.mirror = MagDevice("MIRROR0", self.mktemp())
        self.reader = ObjectReader([self.mag0], Mirrors({"MAG0": self.mirror}))
        self.whole = dicomBytes(3)
        self.stored = {}

    def store(self, sop, content, device=None):
        objectFile = f"P/{sop}.dcm"
        path = (device or self.mag0).absolute(objectFile)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        self.stored[sop] = Instance(sop, CT, "MAG0", objectFile, "P", "1", "1.1")

    def test_outcome(self):
        self.store("1.1", self.whole)
        self.store("1.2", self.whole[:len(self.whole) // 2])
        self.store("1.3", bytes(len(self.whole)))
        self.store("1.4", b"")
        self.store("1.5", self.whole[:-40])
        self.store("1.5", self.whole, self.mirror)  # its mirror copy is whole
        self.store("1.6", self.whole)
        os.remove(self.mag0.absolute("P/1.6.dcm"))
        references = [(CT, f"1.{n}") for n in range(1, 7)] + [(CT, "1.7"), ("1.2.3", "1.1")]
        committed, failed, unreadable = commitmentOutcome(self.reader, self.stored, references)
        self.assertEqual(committed, [(CT, "1.1"), (CT, "1.5")])
        self.assertEqual(failed, [(CT, "1.2", PROCESSING_FAILURE), (CT, "1.3", PROCESSING_FAILURE),
                                  (CT, "1.4", PROCESSING_FAILURE), (CT, "1.6", PROCESSING_FAILURE),
                                  (CT, "1.7", NO_SUCH_OBJECT_INSTANCE), ("1.2.3", "1.1", CLASS_INSTANCE_CONFLICT)])
        self.assertEqual(sorted(unreadable), ["1.2", "1.3", "1.4", "1.6"])
        self.assertIn("truncated or damaged", unreadable["1.2"])
        self.assertIn("No such file", unreadable["1.6"])


class DecodeTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_decodedOffTheReactor(self):
        """A request's data set (a big one decodes for seconds) is decoded in a worker."""
        decodes = recordDecodes(self, b"9.9.424242")
        sent = []
        protocol = SimpleNamespace(association=SimpleNamespace(contexts={1: (STORAGE_COMMITMENT,
                                                                             EXPLICIT_VR_LITTLE_ENDIAN)}),
                                   peerName=lambda: "SCU", sendMessage=lambda *args: sent.append(args))
        service = CommitmentService(SimpleNamespace(index=None), None, None, None, "PACS", {}, reactor)
        dataset = SimpleNamespace(data=requestData("", [(CT, "9.9.424242")]))
        yield service.handle(protocol, 1, actionCommand(), dataset)
        self.assertEqual(decodes, [False])
        [(_, response)] = sent
        self.assertEqual(response[commands.STATUS], INVALID_ARGUMENT_VALUE)


class ReportTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_builtAndEncodedOffTheReactor(self):
        """The report (one item per reference: thousands of them build and
        encode for a good part of a second) is built and encoded in a
        worker, not in the reactor's thread."""
        inReactor = []

        def recording(f):
            def run(*args):
                if threading.current_thread() is threading.main_thread():
                    inReactor.append(f.__name__)
                return f(*args)
            self.patch(commitment, f.__name__, run)
        for f in (commitment.eventReport, commitment.encodeDataset):
            recording(f)
        index = SyncIndex(SimpleNamespace(engine=create_engine("sqlite://"), tables=None, layout=None, deletes=None,
                                          quoteNames=None))
        pending = PendingCommitments(index, lambda: 1000.0)
        pending.createTables()
        workers = SimpleNamespace(deferToWorker=threads.deferToThread)
        service = CommitmentService(pending, SimpleNamespace(instancesByUID=lambda connection, uids: []), None,
                                    workers, "PACS", {}, reactor)
        sent = []
        protocol = SimpleNamespace(request=lambda contextId, command, data, yieldsToRelease: sent.append(data) or
                                   defer.succeed(({commands.STATUS: 0}, None)), holdOpen=lambda: lambda: None)
        yield service._spawn("1.2.3", "SCU", [(CT, "1.2.3.4")], 1000.0, (protocol, 1, EXPLICIT_VR_LITTLE_ENDIAN))
        self.assertEqual((len(sent), inReactor), (1, []))


class PendingCommitmentsTests(unittest.TestCase):

    def setUp(self):
        self.now = 1000.0
        self.pending = PendingCommitments(SimpleNamespace(engine=create_engine("sqlite://")), lambda: self.now)
        self.pending.createTables()

    def write(self, fn, *args):
        with self.pending.index.engine.begin() as connection:
            return fn(connection, *args)

    def test_recordedUntilRemoved(self):
        """Requests come back oldest first with their references; recording
        one twice (the writer may re-run a batch) keeps one row; removal
        is per transaction and requestor."""
        self.write(self.pending.add, "1.2.3", "MODALITY", [(CT, "1.2.3.4"), (CT, "1.2.3.5")], 1000.0)
        self.write(self.pending.add, "1.2.9", "OTHER", [(CT, "1.2.9.1")], 1001.0)
        self.write(self.pending.add, "1.2.9", "OTHER", [(CT, "1.2.9.1")], 1001.0)
        self.assertEqual(self.write(self.pending.requests), [
            ("1.2.3", "MODALITY", [(CT, "1.2.3.4"), (CT, "1.2.3.5")], 1000.0),
            ("1.2.9", "OTHER", [(CT, "1.2.9.1")], 1001.0)])
        self.write(self.pending.remove, "1.2.3", "OTHER", 1000.0)
        self.assertEqual(len(self.write(self.pending.requests)), 2)
        self.write(self.pending.remove, "1.2.3", "MODALITY", 1000.0)
        self.assertEqual(self.write(self.pending.requests), [("1.2.9", "OTHER", [(CT, "1.2.9.1")], 1001.0)])

    def test_aNewerRequestIsNotRemovedForTheOlder(self):
        """A request with the Transaction UID of one from the same requestor
        replaces it; removing the older one (its report taken just as the
        newer came) leaves the newer one, whose report is still owed."""
        self.write(self.pending.add, "1.2.3", "MODALITY", [(CT, "1.2.3.4")], 1000.0)
        self.write(self.pending.add, "1.2.3", "MODALITY", [(CT, "1.2.3.5")], 1002.5)
        self.write(self.pending.remove, "1.2.3", "MODALITY", 1000.0)
        self.assertEqual(self.write(self.pending.requests), [("1.2.3", "MODALITY", [(CT, "1.2.3.5")], 1002.5)])


class RetryTests(unittest.TestCase):

    def test_givenUpAfterMaximumAge(self):
        """A request whose requestor cannot be reached (here: not in
        acrnema.map) is tried again every RetryDelay, one log line each,
        its objects never looked up meanwhile, until it is ``maximumAge``
        seconds old: then one error line, and it is forgotten."""
        clock = task.Clock()
        clock.advance(1000)
        index = SyncIndex(SimpleNamespace(engine=create_engine("sqlite://"), tables=None, layout=None, deletes=None,
                                          quoteNames=None))
        pending = PendingCommitments(index, clock.seconds)
        pending.createTables()
        index.runWrite(pending.add, "1.2.3", "NOTMAPPED", [(CT, "1.2.3.4")], clock.seconds())
        clock.advance(100)

        def lookedUp(*args):
            raise AssertionError("the objects were looked up")
        service = CommitmentService(pending, SimpleNamespace(instancesByUID=lookedUp), None, None, "PACS",
                                    SimpleNamespace(lookup=lambda ae: None), clock, retryDelay=100, maximumAge=1000)
        with capturedLogs() as events:
            service.resume()
            counts = [len(events)]
            for _ in range(10):
                clock.advance(100)
                counts.append(len(events))
        messages = [formatEvent(event) for event in events]
        self.assertIn("recorded but not reported before pacs stopped", messages[0])
        self.assertIn("NOTMAPPED is not in acrnema.map", messages[1])
        self.assertIn("could not be reported to NOTMAPPED; tried again every 100 s", messages[2])
        self.assertEqual([later - earlier for earlier, later in zip(counts, counts[1:])], [1] * 8 + [2, 0])
        self.assertIn("NOTMAPPED is not in acrnema.map", messages[-2])
        self.assertIn("storage commitment 1.2.3: its result could not be reported to NOTMAPPED within 1000 s "
                      "(MaximumCommitmentAge); given up", messages[-1])
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(index.runWrite(pending.requests).result, [])


class TooLargeTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_aRequestLargerThanMySQLTakesIsRefusedInOneLine(self):
        """A request whose references are more than MySQL's
        max_allowed_packet takes in one statement (15,000 on a 1 MB
        server) broke the writer's connection twice and was answered 0x0110
        with a critical traceback: it is refused before it is sent, 0x0110
        with one error line naming the limit, and nothing recorded."""
        index = smallPacketIndex(self)
        pending = PendingCommitments(index, lambda: 1000.0)
        pending.createTables()
        service = CommitmentService(pending, None, None, None, "PACS", {}, reactor)
        sent = []
        protocol = SimpleNamespace(association=SimpleNamespace(callingAE="MODALITY"),
                                   sendMessage=lambda contextId, command: sent.append(command))
        references = [(CT, f"1.2.826.0.1.3680043.2.1125.{n}.{n}.{n}.{n}") for n in range(15000)]
        with capturedLogs() as events:
            yield service._accept(protocol, 1, actionCommand(), EXPLICIT_VR_LITTLE_ENDIAN, "1.2.3", references)
        self.assertEqual([response[commands.STATUS] for response in sent], [PROCESSING_FAILURE])
        self.assertEqual(len(events), 1)
        self.assertNotIn("log_failure", events[0])
        self.assertIn("storage commitment 1.2.3 from MODALITY: the request (15000 references) could not be "
                      "recorded: ", formatEvent(events[0]))
        self.assertIn("max_allowed_packet of 1048576 bytes", formatEvent(events[0]))
        self.assertEqual((yield index.runWrite(pending.requests)), [])


class IncompleteIndexTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_checkedOnceTheIndexIsComplete(self):
        """A request owed at a start whose index is being rebuilt (a regen
        run again, a switch to a new database) was checked at once against
        it and reported "0 committed, 5 not" for objects on disk: its
        objects are looked up, and reported, once the index is complete."""
        completeness = IndexCompleteness()
        completeness.mayMiss(["MAG0"], "its regen is under way")
        index = SyncIndex(SimpleNamespace(engine=create_engine("sqlite://"), tables=None, layout=None, deletes=None,
                                          quoteNames=None))
        pending = PendingCommitments(index, lambda: 1000.0)
        pending.createTables()
        lookedUp, sent = [], []
        workers = SimpleNamespace(deferToWorker=lambda f, *args: defer.maybeDeferred(f, *args))
        service = CommitmentService(pending, SimpleNamespace(instancesByUID=lambda connection, uids: lookedUp.append(
            uids) or []), None, workers, "PACS", {}, reactor, completeness=completeness)
        protocol = SimpleNamespace(request=lambda contextId, command, data, yieldsToRelease: sent.append(data) or
                                   defer.succeed(({commands.STATUS: 0}, None)), holdOpen=lambda: lambda: None)
        with capturedLogs() as events:
            reporting = service._spawn("1.2.3", "SCU", [(CT, "1.2.3.4")], 1000.0,
                                       (protocol, 1, EXPLICIT_VR_LITTLE_ENDIAN))
            self.assertEqual((lookedUp, sent), ([], []))
            self.assertEqual([formatEvent(event) for event in events], [
                "storage commitment 1.2.3 from SCU: checked and reported once the index is rebuilt (MAG0: its regen "
                "is under way)"])
            completeness.reentered(["MAG0"])
            yield reporting
        self.assertEqual((lookedUp, len(sent)), ([["1.2.3.4"]], 1))


class Modality:
    """A requestor's own listener, as ``client.associateNode`` (patched)
    reaches it: ``state`` "down" (the connection refused), "silent" (an
    association that never opens) or "up" (one whose N-EVENT-REPORTs are
    answered ``status``, or fail with it when it is an exception);
    ``reports`` it got: ``(event type, transaction, committed, failed)``,
    ``attempts`` to associate, the ``cancelled`` ones."""

    def __init__(self, testCase, status=0x0000):
        self.state = "down"
        self.status = status
        self.reports = []
        self.attempts = self.cancelled = 0
        testCase.patch(client, "associateNode", self.associateNode)

    async def associateNode(self, reactor, node, *args, **options):
        self.attempts += 1
        if self.state == "down":
            raise NodeUnreachable(node, "Connection refused")
        if self.state == "silent":
            await defer.Deferred(lambda d: setattr(self, "cancelled", self.cancelled + 1))
        return self

    def contextFor(self, sopClass):
        return 1, EXPLICIT_VR_LITTLE_ENDIAN

    def request(self, contextId, command, data, **options):
        self.reports.append(reportOf(command, data))
        if isinstance(self.status, Exception):
            return defer.fail(self.status)
        return defer.succeed(({commands.STATUS: self.status}, None))

    def release(self):
        return defer.succeed(None)


def reportOf(command, data):
    """``(event type, transaction, committed, failed)`` of an N-EVENT-REPORT."""
    report = decodeDataset(data, EXPLICIT_VR_LITTLE_ENDIAN)
    return (command[commands.EVENT_TYPE_ID], report.TransactionUID,
            [item.ReferencedSOPInstanceUID for item in report.get("ReferencedSOPSequence", [])],
            [item.ReferencedSOPInstanceUID for item in report.get("FailedSOPSequence", [])])


class Requesting:
    """The association an N-ACTION came on: released right after its
    N-ACTION-RSP, or still ``open``, the ``reports`` it got answered
    ``status``."""

    def __init__(self, open=False, status=0x0000):
        self.association = SimpleNamespace(callingAE="CT1")
        self.open = open
        self.status = status
        self.responses, self.reports = [], []

    def sendMessage(self, contextId, command):
        self.responses.append(command[commands.STATUS])

    def holdOpen(self):
        return lambda: None

    def request(self, contextId, command, data, yieldsToRelease):
        if not self.open:
            return defer.fail(AssociationLost("CT1@127.0.0.1:36291 released the association first"))
        self.reports.append(reportOf(command, data))
        return defer.succeed(({commands.STATUS: self.status}, None))


class ReportingCase(unittest.TestCase):
    """A CommitmentService on a Clock (RetryDelay 10) whose requestor CT1
    listens as ``self.modality`` (a Modality, at first down); the index
    holds 1.1, whose file reads to its end."""

    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.index = SyncIndex(SimpleNamespace(engine=create_engine("sqlite://"), tables=None, layout=None,
                                               deletes=None, quoteNames=None))
        self.pending = PendingCommitments(self.index, self.clock.seconds)
        self.pending.createTables()
        stored = {"1.1": Instance("1.1", CT, "MAG0", "P/1.1.dcm", "P", "1", "1.1")}
        query = SimpleNamespace(instancesByUID=lambda connection, uids: [stored[u] for u in uids if u in stored])
        reader = SimpleNamespace(loading=lambda instance, sink, mode: None)  # its file reads to its end
        workers = SimpleNamespace(deferToWorker=lambda f, *args: defer.maybeDeferred(f, *args))
        nodes = SimpleNamespace(lookup=lambda ae: SimpleNamespace(ae=ae, host="127.0.0.1", port=104, tls=None))
        self.service = CommitmentService(self.pending, query, reader, workers, "PACS", nodes, self.clock,
                                         retryDelay=10)
        self.addCleanup(self.service.stop)
        self.modality = Modality(self)

    def request(self, references, requesting=None, transaction="1.2.3"):
        """An N-ACTION of CT1 with ``transaction`` for ``references``
        (instance UIDs); the association it came on."""
        requesting = requesting or Requesting()
        self.successResultOf(defer.ensureDeferred(self.service._accept(
            requesting, 1, actionCommand(), EXPLICIT_VR_LITTLE_ENDIAN, transaction,
            [(CT, sop) for sop in references])))
        self.assertEqual(requesting.responses, [0])
        return requesting

    def settle(self):
        """The modality up, a minute passes."""
        self.modality.state = "up"
        for _ in range(6):
            self.clock.advance(10)

    def owed(self):
        """The requests PacsCommitments holds."""
        return self.successResultOf(self.index.runQuery(self.pending.requests))


class ReplacedRequestTests(ReportingCase):
    """A modality sends an N-ACTION again with the Transaction UID of its
    request whose report is still owed (not delivered yet, its requestor
    away), naming other objects: the older request is replaced, neither
    checked nor reported any more, so the modality gets one report, of
    the newer request.  It got both, the stale one (all committed, of
    objects the newer request did not name) last, and the older
    request's report taken removed the newer one's row."""

    def assertDone(self, events):
        self.assertIn("storage commitment 1.2.3 from CT1: a new request replaces the one still unreported",
                      [formatEvent(event) for event in events])
        self.assertEqual((self.clock.getDelayedCalls(), self.owed()), ([], []))

    def test_replacedDuringItsFirstAttempts(self):
        """The older request between two of its first attempts; when its
        next one is due, the newer request's row stays until its own report
        is taken."""
        with capturedLogs() as events:
            self.request(["1.1"])
            self.clock.advance(1)
            self.request(["1.2", "1.3"])
            self.modality.state = "up"
            self.clock.advance(9)
            self.assertEqual(self.owed(), [("1.2.3", "CT1", [(CT, "1.2"), (CT, "1.3")], 1001.0)])
            self.settle()
        self.assertEqual(self.modality.reports, [(2, "1.2.3", [], ["1.2", "1.3"])])
        self.assertDone(events)

    def test_replacedWhileItWaitsToBeTriedAgain(self):
        """The older request's first attempts failed, it waits for its next
        one; the newer is reported on its association."""
        with capturedLogs() as events:
            self.request(["1.1"])
            self.clock.advance(10)
            self.clock.advance(10)
            self.assertEqual(self.modality.attempts, 3)
            newer = self.request(["1.2"], Requesting(open=True))
            self.settle()
        self.assertEqual((newer.reports, self.modality.reports), ([(2, "1.2.3", [], ["1.2"])], []))
        self.assertDone(events)

    def test_replacedWhileItsAssociationOpens(self):
        """The older request's association being opened: it is given up,
        not counted as a failed attempt and tried again."""
        self.modality.state = "silent"
        with capturedLogs() as events:
            self.request(["1.1"])
            newer = self.request(["1.2"], Requesting(open=True))
            self.settle()
        self.assertEqual((self.modality.attempts, self.modality.cancelled), (1, 1))
        self.assertEqual((newer.reports, self.modality.reports), ([(2, "1.2.3", [], ["1.2"])], []))
        self.assertNotIn("failed (attempt", "\n".join(formatEvent(event) for event in events))
        self.assertDone(events)


class ResumedRequestTests(ReportingCase):
    """A request owed when pacs stopped, its modality asking again (maybe
    for other objects) while resume() reads PacsCommitments at start-up:
    only the newer request is reported, once.  The row read was spawned
    next to it, so the modality got the newer request's report and the
    stale one (event 1, all committed, of objects the newer request never
    named), or the newer one twice when the read saw its row."""

    def setUp(self):
        super().setUp()
        with self.index.engine.begin() as connection:  # recorded before pacs stopped, CT1 down then
            self.pending.add(connection, "1.2.3", "CT1", [(CT, "1.1")], 900.0)

    def resumeReading(self):
        """resume() with its read under way; call what it returns with the
        rows read to end it."""
        reading = defer.Deferred()
        self.index.runQuery = lambda fn, *args: reading
        try:
            self.service.resume()
        finally:
            del self.index.runQuery
        return reading.callback

    def test_reSentWhileTheRowsAreRead(self):
        """The stale row read after the newer request came, which is not
        reported yet (CT1 down): its report only, once CT1 is up."""
        readEnds, stale = self.resumeReading(), self.owed()
        with capturedLogs() as events:
            self.request(["1.2"])
            readEnds(stale)
            self.settle()
        self.assertEqual(self.modality.reports, [(2, "1.2.3", [], ["1.2"])])
        self.assertIn("storage commitment 1.2.3 from CT1: recorded but not reported before pacs stopped; a new "
                      "request replaces it", [formatEvent(event) for event in events])
        self.assertEqual((self.clock.getDelayedCalls(), self.owed()), ([], []))

    def test_reportedBeforeTheRowsAreRead(self):
        """The newer request reported on its association, its row removed,
        before the read of the stale row ends: nothing more is reported."""
        readEnds, stale = self.resumeReading(), self.owed()
        newer = self.request(["1.2"], Requesting(open=True))
        readEnds(stale)
        self.settle()
        self.assertEqual((newer.reports, self.modality.reports), ([(2, "1.2.3", [], ["1.2"])], []))
        self.assertEqual((self.clock.getDelayedCalls(), self.owed()), ([], []))

    def test_theNewerRequestRead(self):
        """The read saw the newer request's row: it is reported once."""
        readEnds = self.resumeReading()
        with capturedLogs() as events:
            self.request(["1.2"])
            readEnds(self.owed())
            self.settle()
        self.assertEqual(self.modality.reports, [(2, "1.2.3", [], ["1.2"])])
        self.assertNotIn("before pacs stopped", "\n".join(formatEvent(event) for event in events))
        self.assertEqual((self.clock.getDelayedCalls(), self.owed()), ([], []))


class RefusedReportTests(ReportingCase):
    """A report the requestor answers with a Failure status on a new
    association (0x0112: a modality that no longer knows the transaction)
    was sent again every RetryDelay for MaximumCommitmentAge (6,000
    times a week by default), as if the modality could not be reached: a
    refusal is an answer, as for MPPS forwarding, logged and not sent
    again; only no answer (the modality down, the association lost, no
    response) is tried again."""

    def reportedOnce(self, status, transaction):
        """The modality answering ``status``, the report of a request for
        1.1 (``transaction``) came once, a minute later nothing is owed:
        the log lines of it."""
        self.modality.status = status
        with capturedLogs() as events:
            self.request(["1.1"], transaction=transaction)
            self.settle()
        self.assertEqual(self.modality.reports, [(1, transaction, ["1.1"], [])])
        self.assertEqual((self.clock.getDelayedCalls(), self.owed()), ([], []))
        del self.modality.reports[:]
        return [formatEvent(event) for event in events]

    def test_aRefusalIsNotSentAgain(self):
        """A Failure status (0x01xx, 0x02xx, 0xAxxx, 0xCxxx) or none: one
        warning line, the request forgotten."""
        for status in (0x0112, 0x0110, 0x0211, 0x0213, 0xA700, 0xC001, NoStatus("N-EVENT-REPORT-RSP without Status")):
            none = isinstance(status, NoStatus)
            transaction = f"1.2.{0 if none else status}"
            lines = self.reportedOnce(status, transaction)
            answer = "without a Status" if none else f"with status 0x{status:04X}"
            self.assertEqual([line for line in lines if "refused the report" in line], [
                f"storage commitment {transaction}: CT1 refused the report (N-EVENT-REPORT answered {answer}); not "
                f"sent again"])
            self.assertNotIn("reported to CT1", "\n".join(lines))

    def test_theErrorCommentIsTold(self):
        def refusing(contextId, command, data, **options):
            self.modality.reports.append(reportOf(command, data))
            return defer.succeed(({commands.STATUS: 0x0112, commands.ERROR_COMMENT: "unknown transaction"}, None))
        self.modality.request = refusing
        lines = self.reportedOnce(0x0112, "1.2.3")
        self.assertIn("storage commitment 1.2.3: CT1 refused the report (N-EVENT-REPORT answered with status "
                      "0x0112: unknown transaction); not sent again", lines)

    def test_aWarningIsTaken(self):
        """A Warning status (0x0001, 0xBxxx ...): the report was taken."""
        for status in (0x0001, 0x0107, 0x0116, 0xB000):
            lines = self.reportedOnce(status, f"1.2.{status}")
            self.assertIn(f"storage commitment 1.2.{status}: reported to CT1 on a new association", lines)
            self.assertNotIn("refused the report", "\n".join(lines))

    def test_noAnswerIsTriedAgain(self):
        """The association lost, or no response in time, before an answer:
        tried again RetryDelay later, until the modality takes it."""
        for n, failure in enumerate((AssociationLost("CT1 aborted the association"),
                                     DIMSETimeout("CT1 did not answer within 300 s"))):
            self.modality.state, self.modality.status = "up", failure
            transaction = f"1.2.{n}"
            self.request(["1.1"], transaction=transaction)
            self.clock.advance(10)
            self.assertEqual(len(self.modality.reports), 2)
            self.modality.status = 0x0000
            self.clock.advance(10)
            self.assertEqual(self.modality.reports, [(1, transaction, ["1.1"], [])] * 3)
            self.assertEqual((self.clock.getDelayedCalls(), self.owed()), ([], []))
            del self.modality.reports[:]

    def test_refusedOnItsAssociationThenSentOnANewOne(self):
        """Refused on the requesting association (a modality may take
        reports only on an association of its own): sent on a new one."""
        self.modality.state = "up"
        requesting = self.request(["1.1"], Requesting(open=True, status=0x0110))
        self.assertEqual((requesting.reports, self.modality.reports), ([(1, "1.2.3", ["1.1"], [])],) * 2)
        self.assertEqual(self.owed(), [])


class OwedReportTests(ReportingCase):
    """A modality waiting on its association for the report (PS3.4 J.3.3)
    sends nothing meanwhile: that association was aborted as idle after
    TCPIPTimeOut ("no data for 300 s (TCPIPTimeOut), aborting") while
    pacs still checked the objects (a regen under way, a large study
    read to its end), and the report went on a new association, or, for
    a requestor not in acrnema.map, nowhere.  A report owed on it keeps
    it open; a release the modality asks for still goes through at once."""

    def setUp(self):
        super().setUp()
        self.service.completeness = IndexCompleteness()
        self.service.completeness.mayMiss(["MAG0"], "its regen is under way")
        policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={STORAGE_COMMITMENT: True},
                                transferSyntaxes={EXPLICIT_VR_LITTLE_ENDIAN}, maxPDULength=32768)
        factory = DicomServerFactory(policy, {}, {}, self.clock, idleTimeout=300, artimTimeout=30)
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport()
        self.transport.setTcpNoDelay = lambda enabled: None
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(associateRQ([(STORAGE_COMMITMENT, [EXPLICIT_VR_LITTLE_ENDIAN])], calling="CT1"))
        self.transport.clear()

    def requested(self):
        """The N-ACTION of 1.1 on the association, answered: the PDUs written."""
        self.successResultOf(defer.ensureDeferred(self.service._accept(
            self.protocol, 1, {**actionCommand(), commands.COMMAND_FIELD: commands.N_ACTION_RQ,
                               commands.MESSAGE_ID: 1}, EXPLICIT_VR_LITTLE_ENDIAN, "1.2.3", [(CT, "1.1")])))
        [(_, response, _)] = readMessages(self.transport.value())
        self.assertEqual(response[commands.STATUS], 0)
        self.transport.clear()

    def test_notIdleWhileItsReportIsOwed(self):
        self.requested()
        self.clock.advance(900)  # three TCPIPTimeOuts checking
        self.assertEqual((self.transport.value(), self.transport.disconnecting), (b"", False))
        self.service.completeness.reentered(["MAG0"])
        [(contextId, report, data)] = readMessages(self.transport.value())
        self.assertEqual((contextId, report[commands.COMMAND_FIELD]), (1, commands.N_EVENT_REPORT_RQ))
        self.assertEqual(reportOf(report, data), (1, "1.2.3", ["1.1"], []))
        self.transport.clear()
        response = commands.response(report, commands.N_EVENT_REPORT_RSP, 0)
        self.protocol.dataReceived(message(1, response))
        self.assertEqual((self.modality.attempts, self.owed()), (0, []))
        self.clock.advance(299)  # then idle: a whole TCPIPTimeOut from the report's end
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(1)
        self.assertEqual([pduType for pduType, _ in readPDUs(self.transport.value())], [pdu.A_ABORT])

    def test_aReleaseIsNotHeldUp(self):
        self.requested()
        self.protocol.dataReceived(pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))
        self.assertEqual([pduType for pduType, _ in readPDUs(self.transport.value())], [pdu.A_RELEASE_RP])
