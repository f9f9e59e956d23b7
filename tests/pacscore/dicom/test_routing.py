"""Tests for pacscore.dicom.routing against a listening archive: each query
and retrieve command reaches the service of its context's SOP class, and a
context of any other SOP class gets 0122 (SOP class not supported)."""

from pydicom.dataset import Dataset
from twisted.internet import defer, reactor
from twisted.trial import unittest

from pacscore.dicom import commands
from pacscore.dicom.client import associate
from pacscore.dicom.models import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE
from pacscore.dicom.routing import SOP_CLASS_NOT_SUPPORTED
from pacscore.dicom.worklist import MODALITY_WORKLIST_FIND
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.dicom.requests import CT_STORAGE, IMPLICIT, VERIFICATION


def studyIdentifier():
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
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
        response, _ = yield self.client.get(STUDY_ROOT_GET, studyIdentifier())
        self.assertEqual(response[commands.STATUS], 0)
