"""VirtualServerFor0 against two running ``twistd -n pacs``: FRONT stands
in front of BACKEND.  DCMTK's findscu on FRONT sees both archives merged
(one match per entity), getscu and movescu on FRONT get BACKEND's objects,
which FRONT fetches (and keeps, unless CacheVirtualData = 0), over DICOM
and WADO-RS; with BACKEND
down, FRONT answers with its own, and with BACKEND hung (the association
never accepted, or a C-FIND never answered) in time, then at once; in front of an archive of Kodak Patient
IDs (,FIXKODAK) the IDs are translated both ways; in front of DCMTK's
dcmqrscp, which wants strictly hierarchical queries, FRONT still finds a
study's objects."""

import json
import os
import shutil
import socket
import tempfile
import threading
import time

import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
from twisted.trial import unittest

from pacscore.testing.corpus import generateCorpus, makeDataset
from tests.interop.index import column, rows
from tests.interop.peers import DcmqrscpServer, OrthancServer, StorescpServer
from tests.interop.server import PacsServer, dcmtk, waitFor
from tests.interop.test_find import findscu
from tests.interop.test_retrieve import getObjects, getSeries, movescu
from tests.interop.test_web import httpGet

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'

DESTINATION = "VIEWER"


class VirtualServerTests(unittest.TestCase):

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-virtual-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.backend = PacsServer(os.path.join(self.workdir, "backend"), ae="BACKEND")
        self.front = PacsServer(os.path.join(self.workdir, "front"), ae="FRONT")
        self.viewer = StorescpServer(os.path.join(self.workdir, "viewer"), aet=DESTINATION)
        self.backend.addNode("FRONT", self.front.port)
        self.front.addNode("BACKEND", self.backend.port)
        self.front.addNode(DESTINATION, self.viewer.port)
        self.backend.start()
        self.addCleanup(self.backend.stop)
        corpus = generateCorpus(os.path.join(self.workdir, "corpus"), patients=3, studiesPerPatient=1,
                                seriesPerStudy=2, imagesPerSeries=3)
        self.byPatient = {}
        for image in corpus:
            self.byPatient.setdefault(image.patientID, []).append(image)
        here, both, there = sorted(self.byPatient)
        self.assertEqual(self.backend.store(*(i.path for i in self.byPatient[both] + self.byPatient[there]))
                         .returncode, 0)
        self.here, self.both, self.there = here, both, there

    def startFront(self, **ini):
        self.front.setIni(VirtualServerFor0="BACKEND", **ini)
        self.front.start()
        self.addCleanup(self.front.stop)
        result = self.front.store(*(i.path for i in self.byPatient[self.here] + self.byPatient[self.both]))
        self.assertEqual(result.returncode, 0, result.stderr)

    def studies(self):
        matches, result = findscu(self.front, "-S", "STUDY", {"StudyInstanceUID": None, "PatientID": None,
                                                              "RetrieveAETitle": None})
        self.assertEqual(result.returncode, 0, result.stderr)
        return sorted((str(m.PatientID), str(m.RetrieveAETitle)) for m in matches)

    def test_findMergesBothArchives(self):
        self.startFront()
        self.assertEqual(self.studies(), [(self.here, "FRONT"), (self.both, "FRONT"), (self.there, "FRONT")])
        images, result = findscu(self.front, "-P", "IMAGE", {"PatientID": self.there,
                                                             "StudyInstanceUID": self.byPatient[self.there][0].studyUID,
                                                             "SeriesInstanceUID": self.byPatient[self.there][0].seriesUID,
                                                             "SOPInstanceUID": None})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(images), 3)

    def test_aStudyInBothArchivesIsDescribedWhole(self):
        """A study FRONT holds part of (two CT series) and BACKEND all of
        (and an MR series besides) is answered by FRONT, in C-FIND and
        QIDO-RS, with BACKEND's larger counts and both archives'
        ModalitiesInStudy: the study a retrieve from FRONT would send."""
        self.startFront()
        both = self.byPatient[self.both][0]
        mr = makeDataset(self.both, "Test^Patient1", both.studyUID, generate_uid(), generate_uid(), 3, 1,
                         modality="MR")
        path = os.path.join(self.workdir, "mr.dcm")
        mr.save_as(path, enforce_file_format=True)
        self.assertEqual(self.backend.store(path).returncode, 0)
        [match], result = findscu(self.front, "-S", "STUDY", {
            "StudyInstanceUID": both.studyUID, "ModalitiesInStudy": None, "NumberOfStudyRelatedSeries": None,
            "NumberOfStudyRelatedInstances": None, "RetrieveAETitle": None})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual((list(match.ModalitiesInStudy), match.NumberOfStudyRelatedSeries,
                          match.NumberOfStudyRelatedInstances, match.RetrieveAETitle), (["CT", "MR"], 3, 7, "FRONT"))
        web = f"http://127.0.0.1:{self.front.webPort}/dicom-web"
        status, _, body = httpGet(f"{web}/studies?StudyInstanceUID={both.studyUID}&includefield=ModalitiesInStudy",
                                  {"Accept": "application/dicom+json"})
        self.assertEqual(status, 200)
        [study] = json.loads(body)
        self.assertEqual((study["00080061"]["Value"], study["00201206"]["Value"], study["00201208"]["Value"]),
                         (["CT", "MR"], [3], [7]))

    def test_twoArchivesInFrontOfEachOtherAskEachOtherOnce(self):
        """BACKEND has FRONT as its virtual server too: a C-FIND and a
        C-MOVE on FRONT go to BACKEND once each, which does not send them
        back to FRONT (no associations to and fro until a limit trips)."""
        self.viewer.start()
        self.addCleanup(self.viewer.stop)
        self.backend.stop()
        self.backend.setIni(VirtualServerFor0="FRONT")
        self.backend.start()
        self.startFront()
        self.assertEqual(self.studies(), [(self.here, "FRONT"), (self.both, "FRONT"), (self.there, "FRONT")])
        there = self.byPatient[self.there]
        result = movescu(self.front, DESTINATION, "STUDY", {"StudyInstanceUID": there[0].studyUID})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual({pydicom.dcmread(path).SOPInstanceUID for path in self.viewer.files()},
                         {i.sopUID for i in there})
        self.assertEqual(self.front.log().count(": C-FIND "), 1, self.front.log())
        self.assertNotIn("virtual server FRONT", self.backend.log())

    def test_getFetchesAndKeepsTheBackendsObjects(self):
        self.startFront()
        image = self.byPatient[self.there][0]
        expected = {i.sopUID for i in self.byPatient[self.there] if i.seriesUID == image.seriesUID}
        self.assertEqual(getSeries(self.front, self.workdir, image.studyUID, image.seriesUID), expected)
        self.assertIn("virtual server BACKEND: 3 object(s) fetched", self.front.log())
        self.assertTrue(expected <= set(column(self.front.database, "DICOMImages", "SOPInstanceUID")))
        self.assertEqual(getSeries(self.front, self.workdir, image.studyUID, image.seriesUID), expected)
        self.assertEqual(self.front.log().count("object(s) fetched"), 1, "the second get found them here")

    def test_moveWholeSeriesWithoutCaching(self):
        self.viewer.start()
        self.addCleanup(self.viewer.stop)
        self.startFront(VirtualPerSeries0="1", CacheVirtualData="0")
        first = self.byPatient[self.there][0]
        result = movescu(self.front, DESTINATION, "STUDY", {"StudyInstanceUID": first.studyUID})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        received = {pydicom.dcmread(path).SOPInstanceUID for path in self.viewer.files()}
        self.assertEqual(received, {i.sopUID for i in self.byPatient[self.there]})
        self.assertIn("virtual server BACKEND: 6 object(s) fetched", self.front.log())
        self.assertIn("6 object(s) fetched from virtual servers deleted", self.front.log())
        self.assertFalse({i.sopUID for i in self.byPatient[self.there]}
                         & set(column(self.front.database, "DICOMImages", "SOPInstanceUID")))

    def test_aStopWhileARetrieveSendsDeletesWhatItFetched(self):
        """CacheVirtualData = 0, SIGTERM while a C-MOVE sends the 6 objects
        FRONT fetched to a slow destination: the stop aborts the retrieve
        and waits for its release, which deletes them (not left here with
        no line, the reactor stopped under it)."""
        viewer = StorescpServer(os.path.join(self.workdir, "slow"), aet=DESTINATION, options=("--sleep-during", "1"))
        self.front.addNode(DESTINATION, viewer.port)
        viewer.start()
        self.addCleanup(viewer.stop)
        self.startFront(CacheVirtualData="0")
        fetched = {i.sopUID for i in self.byPatient[self.there]}
        retrieve = threading.Thread(target=movescu, args=(self.front, DESTINATION, "STUDY",
                                                          {"StudyInstanceUID": self.byPatient[self.there][0].studyUID}))
        retrieve.start()
        self.addCleanup(retrieve.join)
        waitFor(lambda: "virtual server BACKEND: 6 object(s) fetched" in self.front.log(), 30, "the fetch")
        self.front.stop()
        self.assertIn("stopping: aborting", self.front.log())
        self.assertIn("6 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)", self.front.log())
        self.assertFalse(fetched & set(column(self.front.database, "DICOMImages", "SOPInstanceUID")))

    def test_anObjectAModalitySendsDuringTheHoldStays(self):
        """CacheVirtualData = 0, a modality (storescu, its own association)
        sends one of the 6 objects FRONT fetched while the C-MOVE that
        fetched them still sends them to a slow destination: its copy was
        acknowledged, so the release leaves it, stored and indexed, and
        deletes the other 5."""
        viewer = StorescpServer(os.path.join(self.workdir, "slow"), aet=DESTINATION, options=("--sleep-during", "1"))
        self.front.addNode(DESTINATION, viewer.port)
        viewer.start()
        self.addCleanup(viewer.stop)
        self.startFront(CacheVirtualData="0")
        sent, *others = self.byPatient[self.there]
        retrieve = threading.Thread(target=movescu, args=(self.front, DESTINATION, "STUDY",
                                                          {"StudyInstanceUID": sent.studyUID}))
        retrieve.start()
        self.addCleanup(retrieve.join)
        waitFor(lambda: "virtual server BACKEND: 6 object(s) fetched" in self.front.log(), 30, "the fetch")
        result = self.front.store(sent.path, calling="MODALITY")
        self.assertEqual(result.returncode, 0, result.stderr)
        retrieve.join()
        waitFor(lambda: "object(s) fetched from virtual servers deleted" in self.front.log(), 30, "the release")
        self.assertIn("5 object(s) fetched from virtual servers deleted (CacheVirtualData = 0)", self.front.log())
        images = {row["SOPInstanceUID"]: row["ObjectFile"] for row in rows(self.front.database, "DICOMImages")}
        self.assertIn(sent.sopUID, images)
        self.assertFalse({image.sopUID for image in others} & set(images))
        self.assertTrue(os.path.isfile(os.path.join(self.front.dataDir, images[sent.sopUID])))

    def test_wholeSeriesMovesLeaveWhatIsHereAsItIs(self):
        """VirtualPerSeries0 = 1, FRONT holding a locally corrected copy
        (ImageComments) of one image of a series of 3 BACKEND holds: a
        STUDY C-MOVE fetches the 2 others of that series (by UID, not the
        series, whose C-MOVE would replace the corrected copy) and the
        other series whole; FRONT's file and the copy sent keep the
        correction."""
        self.viewer.start()
        self.addCleanup(self.viewer.stop)
        self.startFront(VirtualPerSeries0="1")
        first = self.byPatient[self.there][0]
        corrected = pydicom.dcmread(first.path)
        corrected.ImageComments = "CORRECTED LOCALLY"
        path = os.path.join(self.workdir, "corrected.dcm")
        corrected.save_as(path, enforce_file_format=True)
        self.assertEqual(self.front.store(path).returncode, 0)
        result = movescu(self.front, DESTINATION, "STUDY", {"StudyInstanceUID": first.studyUID})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        received = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, self.viewer.files())}
        self.assertEqual(set(received), {i.sopUID for i in self.byPatient[self.there]})
        self.assertEqual(received[first.sopUID].get("ImageComments"), "CORRECTED LOCALLY")
        self.assertIn("virtual server BACKEND: 5 object(s) fetched", self.front.log())
        [stored] = [ds for ds in (pydicom.dcmread(os.path.join(folder, name), stop_before_pixels=True)
                                  for folder, _, names in os.walk(self.front.dataDir) for name in names
                                  if name.endswith(".dcm"))
                    if ds.SOPInstanceUID == first.sopUID]
        self.assertEqual(stored.get("ImageComments"), "CORRECTED LOCALLY")

    def test_someObjectsOfASeriesWithoutCaching(self):
        """VirtualPerSeries0 = 1, CacheVirtualData = 0: an IMAGE C-MOVE of
        2 objects of a series of 3 only BACKEND holds sends those 2 and
        leaves nothing here (a SERIES C-MOVE from BACKEND would bring the
        third, never asked for nor deleted)."""
        self.viewer.start()
        self.addCleanup(self.viewer.stop)
        self.startFront(VirtualPerSeries0="1", CacheVirtualData="0")
        first = self.byPatient[self.there][0]
        series = [i.sopUID for i in self.byPatient[self.there] if i.seriesUID == first.seriesUID]
        self.assertEqual(len(series), 3)
        result = movescu(self.front, DESTINATION, "IMAGE", {"StudyInstanceUID": first.studyUID,
                                                            "SeriesInstanceUID": first.seriesUID,
                                                            "SOPInstanceUID": "\\".join(series[:2])})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual({pydicom.dcmread(path).SOPInstanceUID for path in self.viewer.files()}, set(series[:2]))
        self.assertIn("2 object(s) fetched from virtual servers deleted", self.front.log())
        self.assertFalse(set(series) & set(column(self.front.database, "DICOMImages", "SOPInstanceUID")))

    def test_retrieveByPatientIDFetchesThatPatientOnly(self):
        """A Study Root C-MOVE at STUDY level and a C-GET at SERIES level
        named by Patient ID alone fetch that patient's objects, not every
        object BACKEND holds."""
        other = []
        for n in range(2):
            ds = makeDataset("OTHER", "Other^Patient", generate_uid(), generate_uid(), generate_uid(), 1, n + 1)
            other.append(os.path.join(self.workdir, f"other{n}.dcm"))
            ds.save_as(other[-1], enforce_file_format=True)
        self.assertEqual(self.backend.store(*other).returncode, 0)
        self.viewer.start()
        self.addCleanup(self.viewer.stop)
        self.startFront()
        result = movescu(self.front, DESTINATION, "STUDY", {"PatientID": self.there})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        received = {pydicom.dcmread(path).SOPInstanceUID for path in self.viewer.files()}
        self.assertEqual(received, {i.sopUID for i in self.byPatient[self.there]})
        self.assertIn("virtual server BACKEND: 6 object(s) fetched", self.front.log())
        received = getObjects(self.front, self.workdir, "SERIES", {"PatientID": self.both})
        self.assertEqual({ds.SOPInstanceUID for ds in received}, {i.sopUID for i in self.byPatient[self.both]})
        self.assertEqual(self.front.log().count("object(s) fetched"), 1, "the get had all it asked for here")
        self.assertNotIn("OTHER", column(self.front.database, "DICOMPatients", "PatientID"))

    def test_dicomWebSeesAndFetchesTheBackend(self):
        """QIDO-RS on FRONT lists BACKEND's studies too (one per study,
        RetrieveAETitle FRONT, a RetrieveURL of FRONT); WADO-RS of a study
        only BACKEND has fetches it, and FRONT keeps it."""
        self.startFront()
        web = f"http://127.0.0.1:{self.front.webPort}/dicom-web"
        status, _, body = httpGet(f"{web}/studies?includefield=PatientID", {"Accept": "application/dicom+json"})
        self.assertEqual(status, 200)
        studies = {s["00100020"]["Value"][0]: s for s in json.loads(body)}
        self.assertEqual(sorted(studies), [self.here, self.both, self.there])
        there = self.byPatient[self.there][0]
        self.assertEqual(studies[self.there]["00080054"]["Value"], ["FRONT"])
        self.assertEqual(studies[self.there]["00081190"]["Value"], [f"{web}/studies/{there.studyUID}"])
        status, headers, body = httpGet(f"{web}/studies/{there.studyUID}", {"Accept": AS_STORED})
        self.assertEqual(status, 200)
        self.assertEqual({i.sopUID for i in self.byPatient[self.there] if i.sopUID.encode() in body},
                         {i.sopUID for i in self.byPatient[self.there]})
        self.assertIn("virtual server BACKEND: 6 object(s) fetched", self.front.log())
        self.assertTrue({i.sopUID for i in self.byPatient[self.there]}
                        <= set(column(self.front.database, "DICOMImages", "SOPInstanceUID")))

    def test_dicomWebWithoutCaching(self):
        """With CacheVirtualData = 0 what WADO-RS fetched is deleted again
        once sent: the objects, and their metadata asked later."""
        self.startFront(CacheVirtualData="0")
        web = f"http://127.0.0.1:{self.front.webPort}/dicom-web"
        there = self.byPatient[self.there]
        status, _, body = httpGet(f"{web}/studies/{there[0].studyUID}", {"Accept": AS_STORED})
        self.assertEqual(status, 200)
        self.assertEqual({i.sopUID for i in there if i.sopUID.encode() in body}, {i.sopUID for i in there})
        self.assertIn("6 object(s) fetched from virtual servers deleted", self.front.log())
        self.assertFalse({i.sopUID for i in there} & set(column(self.front.database, "DICOMImages", "SOPInstanceUID")))
        status, _, body = httpGet(f"{web}/studies/{there[0].studyUID}/series/{there[0].seriesUID}/metadata",
                                  {"Accept": "application/dicom+json"})
        self.assertEqual(status, 200)
        self.assertEqual(len(json.loads(body)), 3)
        self.assertEqual(self.front.log().count("object(s) fetched from virtual servers deleted"), 2)
        self.assertFalse({i.sopUID for i in there} & set(column(self.front.database, "DICOMImages", "SOPInstanceUID")))

    def test_convertersChooseTheVirtualServers(self):
        """QueryConverter0 asks no archive (mask 0), RetrieveConverter0 only
        VirtualServerFor1, which is not listed: FRONT answers alone."""
        self.startFront(QueryConverter0="virtualservermask 0", RetrieveConverter0="virtualserver 1")
        self.assertEqual(self.studies(), [(self.here, "FRONT"), (self.both, "FRONT")])
        image = self.byPatient[self.there][0]
        self.assertEqual(getSeries(self.front, self.workdir, image.studyUID, image.seriesUID), set())
        self.assertNotIn("fetched", self.front.log())
        self.assertNotIn("virtual server BACKEND", self.front.log())

    def test_aBackendDownLeavesItsDataOut(self):
        self.startFront()
        self.backend.stop()
        self.assertEqual(self.studies(), [(self.here, "FRONT"), (self.both, "FRONT")])
        self.assertIn("virtual server BACKEND: C-FIND failed", self.front.log())
        image = self.byPatient[self.both][0]
        expected = {i.sopUID for i in self.byPatient[self.both] if i.seriesUID == image.seriesUID}
        self.assertEqual(getSeries(self.front, self.workdir, image.studyUID, image.seriesUID), expected)


class HungBackendTests(unittest.TestCase):
    """FRONT in front of two archives that hang: HUNG accepts the
    association but never answers the C-FIND, SILENT takes the connection
    but never answers the A-ASSOCIATE-RQ.  A client with a 20 s DIMSE
    timeout gets FRONT's matches (both asked at once, each waited for
    VirtualServerTimeout, 10 s); the next requests leave them out at once
    (held off for FailHoldOff)."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-virtual-hung-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        released = threading.Event()
        hung = AE("HUNG")
        hung.add_supported_context(StudyRootQueryRetrieveInformationModelFind)

        def neverAnswer(event):
            released.wait(120)
            yield 0, None
        server = hung.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, neverAnswer)])
        self.addCleanup(server.shutdown)
        self.addCleanup(released.set)
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        self.addCleanup(silent.close)
        self.front = PacsServer(os.path.join(self.workdir, "front"), ae="FRONT")
        self.front.addNode("HUNG", server.server_address[1])
        self.front.addNode("SILENT", silent.getsockname()[1])
        self.front.setIni(VirtualServerFor0="HUNG", VirtualServerFor1="SILENT")
        self.front.start()
        self.addCleanup(self.front.stop)
        self.images = generateCorpus(os.path.join(self.workdir, "corpus"), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=2)
        self.assertEqual(self.front.store(*(i.path for i in self.images)).returncode, 0)

    def find(self):
        started = time.monotonic()
        matches, result = findscu(self.front, "-S", "STUDY", {"PatientID": self.images[0].patientID,
                                                              "StudyInstanceUID": None}, "-td", "20")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual([str(m.StudyInstanceUID) for m in matches], [self.images[0].studyUID])
        return time.monotonic() - started

    def test_hungArchivesAreWaitedForBrieflyThenHeldOff(self):
        self.assertLess(self.find(), 15)
        log = self.front.log()
        self.assertIn("virtual server HUNG: C-FIND failed, its matches are left out: ", log)
        self.assertIn("virtual server SILENT: C-FIND failed, its matches are left out: cannot associate with SILENT",
                      log)
        self.assertIn("; holding it off for 60 s (FailHoldOff)", log)
        self.assertLess(self.find(), 5)
        self.assertIn("virtual server HUNG: left out of the C-FIND, held off for another", self.front.log())
        self.assertIn("virtual server SILENT: left out of the C-FIND, held off for another", self.front.log())
        started = time.monotonic()
        received = getObjects(self.front, self.workdir, "STUDY", {"StudyInstanceUID": self.images[0].studyUID})
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual({ds.SOPInstanceUID for ds in received}, {i.sopUID for i in self.images})
        self.assertIn("virtual server SILENT: left out of the retrieve, held off for another", self.front.log())


class RefusingBackendTests(unittest.TestCase):
    """FRONT in front of an Orthanc that does not know FRONT's AE title
    (not in its DicomModalities): it aborts FRONT's association at the
    C-FIND, and FRONT's log line says so, naming the A-ABORT, so that an
    administrator looks at Orthanc's configuration."""

    def test_theAbortIsNamed(self):
        workdir = tempfile.mkdtemp(prefix="pacs-virtual-refusing-")
        self.addCleanup(shutil.rmtree, workdir, True)
        orthanc = OrthancServer(os.path.join(workdir, "orthanc"), config={
            "DicomAlwaysAllowFind": False, "DicomAlwaysAllowGet": False, "DicomAlwaysAllowMove": False})
        front = PacsServer(os.path.join(workdir, "front"), ae="FRONT")
        front.addNode("ORTHANC", orthanc.port)
        front.setIni(VirtualServerFor0="ORTHANC")
        for server in (orthanc, front):
            server.start()
            self.addCleanup(server.stop)
        matches, result = findscu(front, "-S", "STUDY", {"PatientID": "NOBODY", "StudyInstanceUID": None})
        self.assertEqual((matches, result.returncode), ([], 0), result.stderr)
        self.assertRegex(front.log(), r"virtual server ORTHANC: C-FIND failed, its matches are left out: "
                                      r"ORTHANC@127\.0\.0\.1:\d+ aborted the association \(A-ABORT from the peer's "
                                      r"service user\); holding it off for 60 s \(FailHoldOff\)")


class KodakBackendTests(unittest.TestCase):
    """FRONT in front of an archive that keeps Kodak's 8-digit Patient IDs
    (VirtualServerFor0 = BACKEND,FIXKODAK; FixKodak = 1 stores the fetched
    objects with the 7-digit IDs FRONT's clients use)."""

    def test_patientIDsTranslatedBothWays(self):
        workdir = tempfile.mkdtemp(prefix="pacs-virtual-kodak-")
        self.addCleanup(shutil.rmtree, workdir, True)
        backend = PacsServer(os.path.join(workdir, "backend"), ae="BACKEND")
        front = PacsServer(os.path.join(workdir, "front"), ae="FRONT")
        viewer = StorescpServer(os.path.join(workdir, "viewer"), aet=DESTINATION)
        backend.addNode("FRONT", front.port)
        front.addNode("BACKEND", backend.port)
        front.addNode(DESTINATION, viewer.port)
        front.setIni(VirtualServerFor0="BACKEND,FIXKODAK", FixKodak="1")
        for server in (backend, viewer, front):
            server.start()
            self.addCleanup(server.stop)
        study, series, paths, uids = generate_uid(), generate_uid(), [], set()
        for n in range(3):
            ds = makeDataset("01234567", "Kodak^Patient", study, series, generate_uid(), 1, n + 1)
            paths.append(os.path.join(workdir, f"kodak{n}.dcm"))
            ds.save_as(paths[-1], enforce_file_format=True)
            uids.add(ds.SOPInstanceUID)
        self.assertEqual(backend.store(*paths).returncode, 0)

        matches, result = findscu(front, "-P", "STUDY", {"PatientID": "1234567", "StudyInstanceUID": None})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual([(m.PatientID, m.StudyInstanceUID) for m in matches], [("1234567", study)])
        result = movescu(front, DESTINATION, "STUDY", {"PatientID": "1234567", "StudyInstanceUID": study}, model="-P")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("virtual server BACKEND: 3 object(s) fetched", front.log())
        self.assertEqual({pydicom.dcmread(path).SOPInstanceUID for path in viewer.files()}, uids)
        self.assertEqual({pydicom.dcmread(path).PatientID for path in viewer.files()}, {"1234567"})


class HierarchicalBackendTests(unittest.TestCase):
    """FRONT in front of DCMTK's dcmqrscp, which refuses a C-FIND that skips
    a level and answers only the keys asked for."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-virtual-qr-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.front = PacsServer(os.path.join(self.workdir, "front"), ae="FRONT")
        backend = DcmqrscpServer(os.path.join(self.workdir, "dcmqrscp"), hosts={"FRONT": self.front.port})
        self.front.addNode(backend.aet, backend.port)
        self.front.setIni(VirtualServerFor0=backend.aet)
        backend.start()
        self.addCleanup(backend.stop)
        self.front.start()
        self.addCleanup(self.front.stop)
        self.backend = backend

    def store(self, **counts):
        images = generateCorpus(os.path.join(self.workdir, "corpus"), **counts)
        self.assertEqual(self.backend.store(*(image.path for image in images)).returncode, 0)
        return images

    def test_getStudyFromAStrictlyHierarchicalArchive(self):
        """The objects of a study are found series by series."""
        images = self.store(patients=1, studiesPerPatient=1, seriesPerStudy=2, imagesPerSeries=2)
        out = tempfile.mkdtemp(dir=self.workdir)
        result = dcmtk("getscu", "-S", "-aec", self.front.ae, "-od", out, "-k", "QueryRetrieveLevel=STUDY",
                       "-k", f"StudyInstanceUID={images[0].studyUID}", "127.0.0.1", self.front.port)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        received = {pydicom.dcmread(os.path.join(out, name)).SOPInstanceUID for name in os.listdir(out)}
        self.assertEqual(received, {image.sopUID for image in images})
        self.assertIn(f"virtual server {self.backend.aet}: 4 object(s) fetched", self.front.log())

    def test_getByPatientIDFromAStrictlyHierarchicalArchive(self):
        """A Study Root STUDY get named by Patient ID alone asks the
        patient's studies (the Patient ID in the STUDY query, which
        dcmqrscp takes), then their series: that patient's objects only."""
        images = self.store(patients=2, studiesPerPatient=1, seriesPerStudy=2, imagesPerSeries=1)
        patientID = images[0].patientID
        received = getObjects(self.front, self.workdir, "STUDY", {"PatientID": patientID})
        expected = {image.sopUID for image in images if image.patientID == patientID}
        self.assertEqual({ds.SOPInstanceUID for ds in received}, expected)
        self.assertIn(f"virtual server {self.backend.aet}: 2 object(s) fetched", self.front.log())

    def test_findWithoutTheUniqueKey(self):
        """A query that does not ask for the level's unique key still gets
        every study of the other archive, not the first alone."""
        images = self.store(patients=3, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=1)
        matches, result = findscu(self.front, "-S", "STUDY", {"PatientName": "*", "PatientID": None})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sorted(str(m.PatientID) for m in matches), sorted(i.patientID for i in images))
