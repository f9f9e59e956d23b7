"""Tests for pacscore.dicom.routing against a listening archive: each query
and retrieve command reaches the service of its context's SOP class, and a
context of any other SOP class gets 0122 (SOP class not supported); so do a
C-ECHO off a Verification context and a C-STORE whose SOP class is not its
context's."""

from pydicom.dataset import Dataset
from sqlalchemy import func, select
from twisted.internet import defer, reactor
from twisted.trial import unittest

from pacscore.dicom import commands
from pacscore.dicom.client import associate
from pacscore.dicom.datasets import encodeDataset
from pacscore.dicom.models import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE
from pacscore.dicom.routing import SOP_CLASS_NOT_SUPPORTED
from pacscore.dicom.worklist import MODALITY_WORKLIST_FIND
from pacscore.testing.corpus import makeDataset
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.dicom.requests import CT_STORAGE, IMPLICIT, VERIFICATION


def studyIdentifier(uid=""):
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = uid
    return identifier


class RoutingTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, listen=True)
        contexts = [(sopClass, [IMPLICIT]) for sopClass in (
            VERIFICATION, CT_STORAGE, MODALITY_WORKLIST_FIND, STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET)]
        self.client = yield associate(reactor, "127.0.0.1", self.running.port, "SCU", self.running.ae, contexts)
        self.addCleanup(self.client.release)

    @defer.inlineCallbacks
    def test_otherSopClassesRefused(self):
        for sopClass in (VERIFICATION, CT_STORAGE, STUDY_ROOT_MOVE):
            self.assertEqual((yield self.client.find(sopClass, studyIdentifier())), SOP_CLASS_NOT_SUPPORTED)
        for sopClass in (VERIFICATION, MODALITY_WORKLIST_FIND, STUDY_ROOT_FIND, STUDY_ROOT_GET):
            response, _ = yield self.client.move(sopClass, studyIdentifier(), self.running.ae)
            self.assertEqual(response[commands.STATUS], SOP_CLASS_NOT_SUPPORTED)
            self.assertEqual(response[commands.ERROR_COMMENT], f"no C-MOVE-RQ for {sopClass}"[:64])
        for sopClass in (CT_STORAGE, STUDY_ROOT_MOVE):
            response, _ = yield self.client.get(sopClass, studyIdentifier())
            self.assertEqual(response[commands.STATUS], SOP_CLASS_NOT_SUPPORTED)
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_modelsServed(self):
        self.assertEqual((yield self.client.find(STUDY_ROOT_FIND, studyIdentifier())), 0)
        worklist = Dataset()
        worklist.PatientID = ""
        self.assertEqual((yield self.client.find(MODALITY_WORKLIST_FIND, worklist)), 0)
        response, _ = yield self.client.get(STUDY_ROOT_GET, studyIdentifier("1.2.3"))
        self.assertEqual(response[commands.STATUS], 0)

    @defer.inlineCallbacks
    def test_echoAndStoreOnlyOnTheirOwnContexts(self):
        """Context 1 is Verification, 3 CT Image Storage: a C-ECHO on 3, a
        CT object on 1 and an MR object on 3 are refused, nothing stored."""
        echo = {commands.COMMAND_FIELD: commands.C_ECHO_RQ, commands.AFFECTED_SOP_CLASS_UID: VERIFICATION,
                commands.COMMAND_DATASET_TYPE: commands.NO_DATASET}
        response, _ = yield self.client.request(3, echo)
        self.assertEqual(response[commands.STATUS], SOP_CLASS_NOT_SUPPORTED)
        for contextId, sopClass in ((1, CT_STORAGE), (3, "1.2.840.10008.5.1.4.1.1.4")):
            ds = makeDataset("P", "N^M", "1.2.3", "1.2.3.1", f"1.2.3.1.{contextId}", 1, 1, rows=4, columns=4)
            ds.SOPClassUID = sopClass
            store = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.AFFECTED_SOP_CLASS_UID: sopClass,
                     commands.AFFECTED_SOP_INSTANCE_UID: ds.SOPInstanceUID, commands.PRIORITY: 0,
                     commands.COMMAND_DATASET_TYPE: 0x0001}
            response, _ = yield self.client.request(contextId, store, encodeDataset(ds, IMPLICIT))
            self.assertEqual(response[commands.STATUS], SOP_CLASS_NOT_SUPPORTED)
            self.assertEqual(response[commands.ERROR_COMMENT], f"a {sopClass} object on this context"[:64])
        self.assertEqual((yield self.client.echo()), 0)
        index = self.running.archive.index
        count = yield index.runQuery(lambda c: c.execute(select(func.count()).select_from(index.tables.image)).scalar())
        self.assertEqual(count, 0)
