"""Unit tests of pacscore.dicom.mpps: the data sets of N-CREATE and N-SET."""

from types import SimpleNamespace

from pydicom.dataset import Dataset
from twisted.internet import defer, reactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.dicomsql import DatabaseLayout
from pacscore.db.index import Index
from pacscore.db.worklistitems import WorklistItems
from pacscore.dicom import commands
from pacscore.dicom.commands import PROCESSING_FAILURE
from pacscore.dicom.datasets import encodeDataset
from pacscore.dicom.mpps import MppsService, StepTable
from tests.pacscore.dicom.requests import IMPLICIT, recordDecodes
from pacscore.converters.uidmap import UIDMap
from tests.pacscore.db.test_schema import TABLE_NAMES, sqliteEngine
from tests.pacscore.db.test_worklistitems import order, runNow, uncommentStepStatus
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


class WorklistMarkingTests(unittest.TestCase):
    """An MPPS marked the worklist items of its scheduled steps by their
    Accession Number alone: a step of patient PATMPPS naming accessions
    WL1 and WL2 (typed wrongly at the modality) made the items of PATW and
    PATW2 STARTED, then DISCONTINUED, hiding them from the modalities'
    worklists.  An item whose Scheduled Procedure Step ID, Study Instance
    UID, Requested Procedure ID or Patient ID differs from the step's
    (where both have one) is another's: left as it is, with a warning."""

    def setUp(self):
        engine = sqliteEngine(self)
        with open("etc/dicom.sql") as f:
            layout = DatabaseLayout.fromString(uncommentStepStatus(f.read()))
        index = Index(engine, layout, TABLE_NAMES)
        index.createTables()
        self.items = WorklistItems(index, runWrite=runNow(index))
        self.successResultOf(self.items.apply([
            order("NW", "WL1", PatientID="PATW", StudyInstanceUID="1.2.3.1", SchedPSID="SPS1", ReqProcID="RP1"),
            order("NW", "WL2", PatientID="PATW2", StudyInstanceUID="1.2.3.2", SchedPSID="SPS2"),
            order("NW", "WL3", PatientID="PATW", StudyInstanceUID="1.2.3.3", SchedPSID="SPS3"),
            order("NW", "WL4", PatientID="PATW", StudyInstanceUID="1.2.3.4", SchedPSID="SPS4"),
            order("NW", "WL5", StudyInstanceUID="1.2.3.5")]))
        steps = StepTable(SyncIndex(index), lambda: 1000.0)
        steps.createTables()
        self.service = MppsService(steps, reactor, worklist=self.items)

    def statuses(self):
        return {accession: self.items.lookup(accession)[0x00400020] for accession in ("WL1", "WL2", "WL3", "WL4",
                                                                                      "WL5")}

    @defer.inlineCallbacks
    def test_onlyTheStepsOwnItemsAreMarked(self):
        step = Dataset()
        step.PatientID = "PATW"
        step.PerformedProcedureStepStatus = "IN PROGRESS"
        step.PerformedProcedureStepID = "1"
        step.PerformedStationAETitle = "CT1"
        step.PerformedProcedureStepStartDate = "20261208"
        step.PerformedProcedureStepStartTime = "120000"
        step.Modality = "CT"
        step.ScheduledStepAttributesSequence = []
        for accession, study, sps in (("WL1", "1.2.3.1", "SPS1"), ("WL2", "1.2.3.2", "SPS2"), ("WL3", "9.9", "SPS3"),
                                      ("WL4", "1.2.3.4", "OTHER"), ("WL5", "1.2.3.5", "")):
            scheduled = Dataset()
            scheduled.AccessionNumber, scheduled.StudyInstanceUID, scheduled.ScheduledProcedureStepID = (
                accession, study, sps)
            scheduled.RequestedProcedureID = "RP1"
            step.ScheduledStepAttributesSequence.append(scheduled)
        sent = []
        protocol = SimpleNamespace(association=SimpleNamespace(contexts={1: (MPPS, IMPLICIT)}, callingAE="CT1"),
                                   peerName=lambda: "CT1@127.0.0.1",
                                   sendMessage=lambda contextId, command: sent.append(command))
        command = {commands.COMMAND_FIELD: commands.N_CREATE_RQ, commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3.9",
                   commands.MESSAGE_ID: 1}
        with capturedLogs() as events:
            yield self.service.handle(protocol, 1, command, SimpleNamespace(data=encodeDataset(step, IMPLICIT)))
        self.assertEqual([response[commands.STATUS] for response in sent], [0])
        self.assertEqual(self.statuses(), {"WL1": "STARTED", "WL2": "SCHEDULED", "WL3": "SCHEDULED",
                                           "WL4": "SCHEDULED", "WL5": "STARTED"})
        lines = [formatEvent(event) for event in events]
        self.assertIn("MPPS 1.2.3.9: worklist item(s) WL1, WL5 now STARTED", lines)
        self.assertEqual([line for line in lines if "is not the one" in line], [
            "MPPS 1.2.3.9: worklist item WL2 is not the one its scheduled step names (Patient ID PATW2, not PATW): "
            "left as it is",
            "MPPS 1.2.3.9: worklist item WL3 is not the one its scheduled step names (Study Instance UID 1.2.3.3, "
            "not 9.9): left as it is",
            "MPPS 1.2.3.9: worklist item WL4 is not the one its scheduled step names (Scheduled Procedure Step ID "
            "SPS4, not OTHER): left as it is"])


class OverlongValueTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_aValueTooLongForItsVRIsRefused(self):
        """A text over 64 KB in a VR of a 16-bit length (an ST of 70,000
        characters) was answered Success and the step kept with it as UN,
        with only pydicom's warning: an N-CREATE or N-SET with one is
        refused 0x0106 naming it, with a warning line, and not applied."""
        steps = StepTable(SyncIndex(SimpleNamespace(engine=sqliteEngine(self), tables=None, layout=None, deletes=None,
                                                    quoteNames=None)), lambda: 1000.0)
        steps.createTables()
        service = MppsService(steps, reactor)
        sent = []
        protocol = SimpleNamespace(association=SimpleNamespace(contexts={1: (MPPS, IMPLICIT)}, callingAE="CT1"),
                                   peerName=lambda: "CT1@127.0.0.1",
                                   sendMessage=lambda contextId, command: sent.append(command))
        step = Dataset()
        step.PerformedProcedureStepStatus = "IN PROGRESS"
        step.PerformedProcedureStepID = "1"
        step.PerformedStationAETitle = "CT1"
        step.PerformedProcedureStepStartDate = "20261208"
        step.PerformedProcedureStepStartTime = "120000"
        step.Modality = "CT"
        scheduled = Dataset()
        scheduled.StudyInstanceUID = "1.2.3"
        step.ScheduledStepAttributesSequence = [scheduled]
        step.PerformedProcedureStepDescription = "x" * 60000  # LO: too long, but fits a 16-bit length
        create = {commands.COMMAND_FIELD: commands.N_CREATE_RQ, commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3.4",
                  commands.MESSAGE_ID: 1}
        yield service.handle(protocol, 1, create, SimpleNamespace(data=encodeDataset(step, IMPLICIT)))
        changes = Dataset()
        changes.CommentsOnThePerformedProcedureStep = "y" * 70000  # ST
        set_ = {commands.COMMAND_FIELD: commands.N_SET_RQ, commands.REQUESTED_SOP_INSTANCE_UID: "1.2.3.4",
                commands.MESSAGE_ID: 2}
        step.CommentsOnThePerformedProcedureStep = "y" * 70000
        create[commands.AFFECTED_SOP_INSTANCE_UID] = "1.2.3.5"
        with capturedLogs() as events:
            yield service.handle(protocol, 1, set_, SimpleNamespace(data=encodeDataset(changes, IMPLICIT)))
            yield service.handle(protocol, 1, create, SimpleNamespace(data=encodeDataset(step, IMPLICIT)))
        self.assertEqual([response[commands.STATUS] for response in sent], [0, 0x0106, 0x0106])
        self.assertEqual(sent[1][commands.ERROR_COMMENT], "value too long for its VR (over 64 KB): (0040,0280)")
        self.assertEqual([formatEvent(event) for event in events], [
            f"CT1@127.0.0.1: MPPS {uid} refused (0x0106): value too long for its VR (over 64 KB): (0040,0280)"
            for uid in ("1.2.3.4", "1.2.3.5")])
        [kept] = yield steps.index.runQuery(steps.steps, 10)
        self.assertEqual(kept["SOPInstanceUID"], "1.2.3.4")
