"""Unit tests of pacscore.dicom.mpps: the data sets of N-CREATE and N-SET."""

from types import SimpleNamespace

from pydicom.dataset import Dataset
from twisted.internet import defer, reactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.dicom import commands
from pacscore.dicom.commands import PROCESSING_FAILURE
from pacscore.dicom.datasets import encodeDataset
from pacscore.dicom.mpps import MppsService, StepTable
from tests.pacscore.dicom.requests import IMPLICIT, recordDecodes
from pacscore.converters.uidmap import UIDMap
from tests.pacscore.db.test_schema import sqliteEngine
from tests.pacscore.export.fixtures import SyncIndex, smallPacketIndex

MPPS = "1.2.840.10008.3.1.2.3.3"


class DecodeTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_decodedOffTheReactor(self):
        """An N-CREATE's or N-SET's data set (a big one decodes for seconds) is decoded in a worker."""
        decodes = recordDecodes(self, b"9.9.424242")
        step = Dataset()
        step.PatientID = "9.9.424242"
        protocol = SimpleNamespace(association=SimpleNamespace(contexts={1: (MPPS, IMPLICIT)}))
        service = MppsService(None, reactor)
        decoded = yield defer.ensureDeferred(service._decode(protocol, 1,
                                                             SimpleNamespace(data=encodeDataset(step, IMPLICIT))))
        self.assertEqual((decoded.PatientID, decodes), ("9.9.424242", [False]))


class CreateTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_aStepWithoutUIDGetsOneUnderUIDPrefixAsItIsNow(self):
        """put_param:UIDPrefix is live, but the service kept the prefix it
        started with for the steps whose N-CREATE gives no UID."""
        steps = StepTable(SyncIndex(SimpleNamespace(engine=sqliteEngine(self), tables=None, layout=None,
                                                    deletes=None, quoteNames=None)), lambda: 1000.0)
        steps.createTables()
        uidMap = UIDMap(prefix="1.2.3")
        service = MppsService(steps, reactor, uidMap.newUID)
        uidMap.prefix = "1.2.826.0.1.3680043.2.135.99"  # what put_param:UIDPrefix does
        step = Dataset()
        step.PerformedProcedureStepStatus = "IN PROGRESS"
        step.PerformedProcedureStepID = "1"
        step.PerformedStationAETitle = "MODALITY"
        step.PerformedProcedureStepStartDate = "20260101"
        step.PerformedProcedureStepStartTime = "120000"
        step.Modality = "CT"
        scheduled = Dataset()
        scheduled.StudyInstanceUID = "1.2.3"
        step.ScheduledStepAttributesSequence = [scheduled]
        sent = []
        protocol = SimpleNamespace(association=SimpleNamespace(contexts={1: (MPPS, IMPLICIT)}, callingAE="MODALITY"),
                                   peerName=lambda: "MODALITY@127.0.0.1",
                                   sendMessage=lambda contextId, command: sent.append(command))
        command = {commands.COMMAND_FIELD: commands.N_CREATE_RQ, commands.MESSAGE_ID: 1}
        yield service.handle(protocol, 1, command, SimpleNamespace(data=encodeDataset(step, IMPLICIT)))
        [response] = sent
        self.assertEqual(response[commands.STATUS], 0)
        self.assertTrue(response[commands.AFFECTED_SOP_INSTANCE_UID].startswith("1.2.826.0.1.3680043.2.135.99."))


class TooLargeTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_aStepLargerThanMySQLTakesIsRefusedInOneLine(self):
        """An N-CREATE whose data set is more than MySQL's
        max_allowed_packet takes in one statement (1 MB here) had the
        server drop the writer's connection twice and failed with a
        traceback: it is refused before it is sent, 0x0110 with one
        warning naming the limit, and nothing recorded."""
        index = smallPacketIndex(self)
        steps = StepTable(index, lambda: 1000.0)
        steps.createTables()
        step = Dataset()
        step.PerformedProcedureStepStatus = "IN PROGRESS"
        step.PerformedProcedureStepID = "1"
        step.PerformedStationAETitle = "MODALITY"
        step.PerformedProcedureStepStartDate = "20260101"
        step.PerformedProcedureStepStartTime = "120000"
        step.Modality = "CT"
        scheduled = Dataset()
        scheduled.StudyInstanceUID = "1.2.3"
        step.ScheduledStepAttributesSequence = [scheduled]
        step.TextValue = "x" * 1_200_000  # UT: no length limit
        sent = []
        protocol = SimpleNamespace(association=SimpleNamespace(contexts={1: (MPPS, IMPLICIT)}, callingAE="MODALITY"),
                                   peerName=lambda: "MODALITY@127.0.0.1",
                                   sendMessage=lambda contextId, command: sent.append(command))
        command = {commands.COMMAND_FIELD: commands.N_CREATE_RQ, commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3.4",
                   commands.MESSAGE_ID: 1}
        with capturedLogs() as events:
            yield MppsService(steps, reactor).handle(protocol, 1, command,
                                                     SimpleNamespace(data=encodeDataset(step, IMPLICIT)))
        self.assertEqual([response[commands.STATUS] for response in sent], [PROCESSING_FAILURE])
        self.assertEqual(len(events), 1)
        self.assertIn("MODALITY@127.0.0.1: MPPS 1.2.3.4 refused (0x0110): the data set is too large for the index "
                      "database (", formatEvent(events[0]))
        self.assertIn("max_allowed_packet of 1048576 bytes", formatEvent(events[0]))
        self.assertEqual((yield index.runWrite(steps.steps, 10)), [])
