"""Unit tests of pacscore.dicom.commitment: reading N-ACTION requests and
the table of requests whose report is still owed."""

from types import SimpleNamespace

from sqlalchemy import create_engine
from twisted.internet import defer, reactor
from twisted.trial import unittest

from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN
from pacscore.dicom import commands
from pacscore.dicom.commitment import (
    INVALID_ARGUMENT_VALUE, NO_SUCH_ACTION, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE, BadCommitmentRequest,
    CommitmentService, PendingCommitments, readCommitmentRequest)
from pacscore.dicom.datasets import encodeDataset
from tests.pacscore.dicom.requests import commitmentRequest, recordDecodes

CT = "1.2.840.10008.5.1.4.1.1.2"


def actionCommand(actionType=1):
    return {commands.REQUESTED_SOP_CLASS_UID: STORAGE_COMMITMENT,
            commands.REQUESTED_SOP_INSTANCE_UID: STORAGE_COMMITMENT_INSTANCE, commands.ACTION_TYPE_ID: actionType}


def requestData(transaction, references):
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


class DecodeTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_decodedOffTheReactor(self):
        """A request's data set (a big one decodes for seconds) is decoded in a worker."""
        decodes = recordDecodes(self, b"9.9.424242")
        sent = []
        protocol = SimpleNamespace(association=SimpleNamespace(contexts={1: (STORAGE_COMMITMENT,
                                                                             EXPLICIT_VR_LITTLE_ENDIAN)}),
                                   peerName=lambda: "SCU", sendMessage=lambda *args: sent.append(args))
        service = CommitmentService(SimpleNamespace(index=None), None, None, "PACS", {}, reactor)
        dataset = SimpleNamespace(data=requestData("", [(CT, "9.9.424242")]))
        yield service.handle(protocol, 1, actionCommand(), dataset)
        self.assertEqual(decodes, [False])
        [(_, response)] = sent
        self.assertEqual(response[commands.STATUS], INVALID_ARGUMENT_VALUE)


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
        self.write(self.pending.add, "1.2.3", "MODALITY", [(CT, "1.2.3.4"), (CT, "1.2.3.5")])
        self.now += 1
        self.write(self.pending.add, "1.2.9", "OTHER", [(CT, "1.2.9.1")])
        self.write(self.pending.add, "1.2.9", "OTHER", [(CT, "1.2.9.1")])
        self.assertEqual(self.write(self.pending.requests), [
            ("1.2.3", "MODALITY", [(CT, "1.2.3.4"), (CT, "1.2.3.5")]), ("1.2.9", "OTHER", [(CT, "1.2.9.1")])])
        self.write(self.pending.remove, "1.2.3", "OTHER")
        self.assertEqual(len(self.write(self.pending.requests)), 2)
        self.write(self.pending.remove, "1.2.3", "MODALITY")
        self.assertEqual(self.write(self.pending.requests), [("1.2.9", "OTHER", [(CT, "1.2.9.1")])])
