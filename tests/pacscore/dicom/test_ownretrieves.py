"""Our own retrieves (pacscore.dicom.ownretrieves): the Message IDs of the
export queue's and the virtual servers' C-MOVEs, and, end to end between two archives, that what
such a get brings in skips the import and export converters while a
user's move into the archive does not."""

import os

import pydicom
from twisted.internet import defer, reactor
from twisted.trial import unittest

from pacscore.dicom import commands
from pacscore.dicom.ownretrieves import FIRST_ID, OwnRetrieves
from pacscore.export.forwarder import Forwarder
from pacscore.export.queue import Action, Target
from pacscore.testing.corpus import generateCorpus
from tests.pacscore.control.running import RunningArchive

CONVERTERS = {"ImportConverters": "1", "ImportModality0": "*", "ImportConverter0": 'set 0008,1030 to "CONVERTED"',
              "ExportConverters": "1", "ExportModality0": "*", "ExportConverter0": "forward to ELSEWHERE"}


def subOperation(ae, messageID):
    return {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.MOVE_ORIGINATOR_AE: ae,
            commands.MOVE_ORIGINATOR_MESSAGE_ID: messageID}


class MessageIDTests(unittest.TestCase):

    def test_subOperationsOfTheMovesUnderWay(self):
        retrieves = OwnRetrieves("PACS")
        first, second = retrieves.begin(), retrieves.begin()
        self.assertEqual((first, second), (FIRST_ID, FIRST_ID + 1))
        self.assertTrue(retrieves.brings(subOperation("PACS  ", first)))
        self.assertTrue(retrieves.brings(subOperation("pacs", second)))
        self.assertFalse(retrieves.brings(subOperation("OTHER", first)))
        self.assertFalse(retrieves.brings(subOperation("PACS", 1)))  # a user's C-MOVE on its own association
        self.assertFalse(retrieves.brings({commands.COMMAND_FIELD: commands.C_STORE_RQ}))
        retrieves.end(first)
        self.assertFalse(retrieves.brings(subOperation("PACS", first)))

    def test_aVirtualServersMoveNamesItsSourceAndKeepsTheConverters(self):
        """A virtual server's C-MOVE registers the archive it fetches from:
        its objects are not a get's (the converters see them), and are
        known as fetched from there until it ends."""
        retrieves = OwnRetrieves("PACS")
        get, fetch = retrieves.begin(), retrieves.begin("ORTHANC")
        self.assertEqual([retrieves.brings(subOperation("PACS", n)) for n in (get, fetch)], [True, False])
        self.assertEqual([retrieves.fetchedFrom(subOperation("PACS", n)) for n in (get, fetch)], [None, "ORTHANC"])
        self.assertIsNone(retrieves.fetchedFrom(subOperation("OTHER", fetch)))
        self.assertIsNone(retrieves.fetchedFrom({commands.COMMAND_FIELD: commands.C_STORE_RQ}))
        retrieves.end(fetch)
        self.assertIsNone(retrieves.fetchedFrom(subOperation("PACS", fetch)))

    def test_idsUnderWayAreNotGivenAgain(self):
        retrieves = OwnRetrieves("PACS")
        retrieves._last = 0xFFFE
        self.assertEqual([retrieves.begin() for _ in range(3)], [0xFFFF, FIRST_ID, FIRST_ID + 1])
        retrieves.end(FIRST_ID)
        retrieves._last = 0xFFFE
        self.assertEqual([retrieves.begin(), retrieves.begin()], [FIRST_ID, FIRST_ID + 2])


class GetTests(unittest.TestCase):
    """LOCAL (import and export converters for every object) gets a patient
    from ORIGIN with a C-MOVE to itself."""

    @defer.inlineCallbacks
    def setUp(self):
        self.source = RunningArchive(self, ae="ORIGIN", listen=True)
        self.corpus = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=3)
        yield self.source.store(self.corpus)
        self.local = RunningArchive(self, ae="LOCAL", listen=True, ini=CONVERTERS)
        self.local.know(self.source)
        self.source.know(self.local)

    @defer.inlineCallbacks
    def get(self, ownRetrieves):
        """Get the patient as the export queue's Forwarder does (with the
        archive's ``ownRetrieves``) or a control command's (None); the
        Study Descriptions stored and the export jobs queued."""
        archive = self.local.archive
        forwarder = Forwarder.fromConfiguration(archive.configuration, reactor, archive.aeTitle, archive.index,
                                                archive.query, archive.objectReader, archive.workers,
                                                ownRetrieves=ownRetrieves)
        action = Action(1, "get", "ORIGIN", "PATIENT", Target(self.corpus[0].patientID), "", {}, 0)
        try:
            yield defer.ensureDeferred(forwarder.get(action))
        finally:
            yield defer.ensureDeferred(forwarder.closeAll())
        descriptions = {pydicom.dcmread(path).get("StudyDescription") for path in self.local.files()}
        jobs = yield archive.index.runQuery(lambda connection: archive.exportQueue.dueJobs(1e12, 100))
        return len(self.local.files()), descriptions, len(jobs)

    @defer.inlineCallbacks
    def test_theExportQueuesGetSkipsTheConverters(self):
        """``preretrieve``: "not processed by import- or export-converters"."""
        retrieves = self.local.archive.ownRetrieves
        stored, descriptions, jobs = yield self.get(retrieves)
        self.assertEqual(stored, 3)
        self.assertNotIn("CONVERTED", descriptions)
        self.assertEqual(jobs, 0)
        self.assertFalse(retrieves.brings(subOperation("LOCAL", FIRST_ID)))  # ended

    @defer.inlineCallbacks
    def test_aUsersMoveIntoTheArchiveIsProcessed(self):
        stored, descriptions, jobs = yield self.get(None)
        self.assertEqual((stored, descriptions, jobs), (3, {"CONVERTED"}, 3))
