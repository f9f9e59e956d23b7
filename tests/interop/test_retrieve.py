"""C-MOVE and C-GET against a running ``twistd -n pacs``: DCMTK movescu to
a DCMTK storescp, to Orthanc, to a destination that takes only Implicit VR
Little Endian while the objects are stored JPEG Lossless and JPEG 2000, to
a second pacs; getscu; unknown destinations."""

import io
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from types import SimpleNamespace

import numpy
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt, fsm
from pynetdicom.pdu import A_ABORT_RQ
from twisted.trial import unittest

from pacscore.storage.part10 import TRANSFER_SYNTAX_UID, encodeFileMeta, readFileMeta
from pacscore.testing.corpus import generateCorpus, makeDataset
from tests.interop.index import rows
from tests.interop.peers import OrthancServer, StorescpServer
from tests.interop.qrcorpus import CORPUS, storeCorpus
from tests.interop.relay import QuietingRelay
from tests.interop.server import PacsServer, dcmtk, dcmtkEnvironment, dcmtkTool, freePort, waitFor
from tests.interop.test_find import findscu
from tests.interop.test_forwarding import queued
from tests.interop.test_storage import writeLargeMultiframe
from tests.pacscore.web.dicomweb.test_retrieve import flatRle

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
# Compressed objects stored as received: (pydicom test file, storescu option)
COMPRESSED = {"1.2.840.10008.1.2.4.70": ("SC_rgb_jpeg_gdcm.dcm", "-xs"),
              "1.2.840.10008.1.2.4.90": ("MR_small_jp2klossless.dcm", "-xv"),
              "1.2.840.10008.1.2.4.91": ("JPEG2000.dcm", "-xw")}


def movescu(server, destination, level, keys, model="-S"):
    args = [model, "-aec", server.ae, "-aem", destination, "-k", f"QueryRetrieveLevel={level}"]
    for keyword, value in keys.items():
        args += ["-k", f"{keyword}={value}"]
    return dcmtk("movescu", "-v", *args, "127.0.0.1", server.port)


STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
RETIRED_US = "1.2.840.10008.5.1.4.1.1.6"
MPEG4_HP41 = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264 High Profile / Level 4.1: no codec in pacs


def moveAssociation(server, syntax=IMPLICIT):
    """pynetdicom as a C-MOVE SCU on ``server`` (Study Root, ``syntax``)."""
    ae = AE(ae_title="MOVER")
    ae.add_requested_context(STUDY_ROOT_MOVE, [syntax])
    association = ae.associate("127.0.0.1", server.port, ae_title=server.ae)
    if not association.is_established:
        raise AssertionError("pacs refused the association")
    return association


def getWithoutRoles(server, storageClass, keys):
    """pynetdicom as a C-GET SCU proposing ``storageClass`` without an
    SCP/SCU Role Selection item: the final response and how many C-STOREs
    came."""
    ae = AE(ae_title="GETTER")
    ae.add_requested_context(STUDY_ROOT_GET)
    ae.add_requested_context(storageClass)
    stores = []

    def store(event):
        stores.append(event.request.AffectedSOPInstanceUID)
        return 0x0000
    association = ae.associate("127.0.0.1", server.port, ae_title=server.ae, evt_handlers=[(evt.EVT_C_STORE, store)])
    if not association.is_established:
        raise AssertionError("pacs refused the association")
    try:
        *_, (final, _) = association.send_c_get(keys, STUDY_ROOT_GET)
    finally:
        association.release()
    return final, len(stores)


def getInContexts(server, keys, storageClass, syntaxes, level="IMAGE", code=""):
    """pynetdicom as a C-GET SCU taking the SCP role for ``storageClass``,
    proposed in a context of its own for each of ``syntaxes``, calling
    ``server``'s AE title with the compression ``code`` (``~j1``): ``(transfer
    syntax, data set with its file meta)`` of each object received at
    ``level`` for ``keys``; the C-GET must succeed."""
    ae = AE(ae_title="GETTER")
    ae.add_requested_context(STUDY_ROOT_GET)
    for syntax in syntaxes:
        ae.add_requested_context(storageClass, [syntax])
    received = []

    def store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append((event.context.transfer_syntax, ds))
        return 0x0000
    association = ae.associate("127.0.0.1", server.port, ae_title=server.ae + code,
                               ext_neg=[build_role(storageClass, scp_role=True)],
                               evt_handlers=[(evt.EVT_C_STORE, store)])
    if not association.is_established:
        raise AssertionError("pacs refused the association")
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    try:
        *_, (final, _) = association.send_c_get(identifier, STUDY_ROOT_GET)
    finally:
        association.release()
    if final.Status != 0x0000:
        raise AssertionError(f"C-GET answered 0x{final.Status:04X}")
    return received


def studyKeys(studyUID):
    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = studyUID
    return keys


def getSeries(server, workdir, studyUID, seriesUID):
    """The SOP Instance UIDs getscu received of a series (in a new folder of
    ``workdir``); it must succeed."""
    return set(getSeriesSyntaxes(server, workdir, studyUID, seriesUID))


def getObjects(server, workdir, level, keys, options=()):
    """The objects getscu (Study Root, with ``options``) received at
    ``level`` for ``keys`` (in a new folder of ``workdir``); it must succeed."""
    out = tempfile.mkdtemp(dir=workdir)
    matching = [arg for keyword, value in keys.items() for arg in ("-k", f"{keyword}={value}")]
    result = dcmtk("getscu", "-S", *options, "-aec", server.ae, "-od", out, "-k", f"QueryRetrieveLevel={level}",
                   *matching, "127.0.0.1", server.port)
    if result.returncode != 0:
        raise AssertionError(f"getscu failed: {result.stdout}{result.stderr}")
    return [pydicom.dcmread(os.path.join(out, name)) for name in os.listdir(out)]


def getSeriesSyntaxes(server, workdir, studyUID, seriesUID, options=()):
    """``{SOP Instance UID: transfer syntax}`` of what getscu (with
    ``options``) received of a series, as ``getSeries``."""
    received = getObjects(server, workdir, "SERIES", {"StudyInstanceUID": studyUID, "SeriesInstanceUID": seriesUID},
                          options)
    return {ds.SOPInstanceUID: ds.file_meta.TransferSyntaxUID for ds in received}


def imageKeys(ds):
    """The unique keys of ``ds`` at IMAGE level (Study Root)."""
    return {"StudyInstanceUID": ds.StudyInstanceUID, "SeriesInstanceUID": ds.SeriesInstanceUID,
            "SOPInstanceUID": ds.SOPInstanceUID}


def pixels(ds):
    return numpy.asarray(ds.pixel_array)


class RetrieveTests(unittest.TestCase):
    """One pacs with the Q/R corpus and a few compressed objects, and
    destinations registered in its acrnema.map."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-retrieve-")
        cls.storescp = StorescpServer(os.path.join(cls.workdir, "storescp"), aet="STORESCP")
        cls.implicitOnly = StorescpServer(os.path.join(cls.workdir, "implicit"), aet="IMPLICITSCP",
                                          acceptedSyntaxes="implicit")
        cls.orthanc = OrthancServer(os.path.join(cls.workdir, "orthanc"), aet="ORTHANC")
        cls.peers = [cls.storescp, cls.implicitOnly, cls.orthanc]
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        for peer in cls.peers:  # Orthanc gets objects as stored, the others uncompressed
            cls.server.addNode(peer.aet, peer.port, compression="as" if peer is cls.orthanc else "un")
        for code in ("ub", "ui"):  # the storescp (accepting every syntax) under codes naming one syntax
            cls.server.addNode(f"STORE{code.upper()}", cls.storescp.port, compression=code)
        for peer in cls.peers:
            peer.start()
        cls.server.start()
        cls.paths = storeCorpus(cls.server, os.path.join(cls.workdir, "corpus"))
        cls.compressed = {}
        for syntax, (name, option) in COMPRESSED.items():
            path = get_testdata_file(name)
            result = cls.server.store(path, extra=(option,))
            assert result.returncode == 0, result.stderr
            cls.compressed[syntax] = pydicom.dcmread(path)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        for peer in cls.peers:
            peer.stop()

    def assertMoved(self, result):
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        self.assertIn("Received Final Move Response (Success)", output)

    def receivedBy(self, peer):
        return {ds.SOPInstanceUID for ds in peer.datasets()}

    def test_moveStudyToStorescp(self):
        study = CORPUS.study("ACC0001")
        uids = [u for s in study.series for u in s.sopUIDs]
        self.storescp.reset()
        result = movescu(self.server, "STORESCP", "STUDY", {"StudyInstanceUID": study.uid})
        self.assertMoved(result)
        received = {ds.SOPInstanceUID: ds for ds in self.storescp.datasets()}
        self.assertEqual(set(received), set(uids))
        for uid in uids:
            original = pydicom.dcmread(self.paths[uid])
            self.assertEqual(received[uid].PatientName, original.PatientName)
            self.assertEqual(received[uid].PixelData, original.PixelData)

    def test_moveSeriesAtEveryModel(self):
        series = CORPUS.series[2]
        for model, extra in (("-P", {"PatientID": "PAT0001", "StudyInstanceUID": series.studyUID}),
                             ("-S", {"StudyInstanceUID": series.studyUID})):
            self.storescp.reset()
            result = movescu(self.server, "STORESCP", "SERIES", {**extra, "SeriesInstanceUID": series.uid},
                             model=model)
            self.assertMoved(result)
            self.assertEqual(self.receivedBy(self.storescp), set(series.sopUIDs))
        self.storescp.reset()
        result = movescu(self.server, "STORESCP", "PATIENT", {"PatientID": "PAT0004"}, model="-O")
        self.assertMoved(result)
        self.assertEqual(self.receivedBy(self.storescp), set(CORPUS.sopUIDs(patientID="PAT0004")))

    def test_aRetrieveWithoutAUniqueKeyMovesNothing(self):
        """An empty or missing Study Instance UID (or a wildcard) would
        select the whole archive: A900. Relationally, by Patient ID at
        STUDY level, all of the patient's studies move (as Conquest does)."""
        self.storescp.reset()
        for keys in ({"StudyInstanceUID": ""}, {"PatientName": "*"}, {"StudyInstanceUID": "1.2.*"}):
            result = movescu(self.server, "STORESCP", "STUDY", keys)
            self.assertIn("Received Final Move Response (Error: DataSetDoesNotMatchSOPClass)", result.stderr,
                          keys)
        self.assertEqual(self.receivedBy(self.storescp), set())
        self.assertIn("C-MOVE refused: STUDY retrieve needs StudyInstanceUID\n", self.server.log())
        result = movescu(self.server, "STORESCP", "STUDY", {"PatientID": "PAT0004"})
        self.assertMoved(result)
        self.assertEqual(self.receivedBy(self.storescp), set(CORPUS.sopUIDs(patientID="PAT0004")))

    def test_patientLevelInStudyRootByPatientID(self):
        """Orthanc retrieves a patient with a Study Root C-MOVE at PATIENT
        level: with a Patient ID it is taken as the STUDY-level retrieve by
        Patient ID (C-MOVE and C-GET alike), with a log line; without one it
        is still refused."""
        self.storescp.reset()
        result = movescu(self.server, "STORESCP", "PATIENT", {"PatientID": "PAT0004"})
        self.assertMoved(result)
        self.assertEqual(self.receivedBy(self.storescp), set(CORPUS.sopUIDs(patientID="PAT0004")))
        self.assertIn("C-MOVE at PATIENT level in Study Root taken as a STUDY retrieve by Patient ID",
                      self.server.log())
        received = getObjects(self.server, self.workdir, "PATIENT", {"PatientID": "PAT0004"})
        self.assertEqual({ds.SOPInstanceUID for ds in received}, set(CORPUS.sopUIDs(patientID="PAT0004")))
        self.storescp.reset()
        for keys in ({"PatientID": ""}, {"PatientID": "*"}, {"PatientName": "PAT0004"}):
            result = movescu(self.server, "STORESCP", "PATIENT", keys)
            self.assertIn("Received Final Move Response (Error: DataSetDoesNotMatchSOPClass)", result.stderr, keys)
        self.assertEqual(self.receivedBy(self.storescp), set())
        self.assertIn("C-MOVE refused: PATIENT retrieve in Study Root needs PatientID", self.server.log())

    def test_patientLevelInStudyRootNamingAStudyMovesThePatient(self):
        """A Study Root PATIENT retrieve that names one of the patient's
        studies too moves the whole patient, as the same keys in Patient
        Root do (C-MOVE and C-GET alike): the Study Instance UID is
        ignored, and the log line says so."""
        keys = {"PatientID": "PAT0001", "StudyInstanceUID": CORPUS.study("ACC0002").uid}
        for model in ("-S", "-P"):
            self.storescp.reset()
            result = movescu(self.server, "STORESCP", "PATIENT", keys, model=model)
            self.assertMoved(result)
            self.assertEqual(self.receivedBy(self.storescp), set(CORPUS.sopUIDs(patientID="PAT0001")), model)
        self.assertIn("C-MOVE at PATIENT level in Study Root taken as a STUDY retrieve by Patient ID, ignoring "
                      "StudyInstanceUID as Patient Root does", self.server.log())
        received = getObjects(self.server, self.workdir, "PATIENT", keys)
        self.assertEqual({ds.SOPInstanceUID for ds in received}, set(CORPUS.sopUIDs(patientID="PAT0001")))

    def test_wildcardsAboveTheUIDsDoNotRefuse(self):
        """A retrieve naming its study or series by UID, with the Patient ID
        (or a Study Instance UID above a Series Instance UID) of the
        client's C-FIND, universal or a wildcard, moves what the UIDs
        name: the other keys are ignored (as dcmqrscp and Orthanc move it),
        in Study Root and Patient Root, C-MOVE and C-GET alike."""
        study = CORPUS.study("ACC0002")
        [series] = study.series
        for model, patientID in (("-S", "*"), ("-S", "PAT*"), ("-P", "*"), ("-P", "PAT*")):
            self.storescp.reset()
            result = movescu(self.server, "STORESCP", "STUDY", {"PatientID": patientID, "StudyInstanceUID": study.uid},
                             model=model)
            self.assertMoved(result)
            self.assertEqual(self.receivedBy(self.storescp), set(series.sopUIDs), (model, patientID))
        self.storescp.reset()
        result = movescu(self.server, "STORESCP", "SERIES", {"StudyInstanceUID": "*", "SeriesInstanceUID": series.uid})
        self.assertMoved(result)
        self.assertEqual(self.receivedBy(self.storescp), set(series.sopUIDs))
        received = getObjects(self.server, self.workdir, "SERIES", {
            "PatientID": "PAT000?", "StudyInstanceUID": study.uid, "SeriesInstanceUID": series.uid})
        self.assertEqual({ds.SOPInstanceUID for ds in received}, set(series.sopUIDs))
        self.assertIn("C-GET selects by its unique keys only, ignoring PatientID", self.server.log())

    def test_errorCommentWithoutAUniqueKey(self):
        """The Error Comment of a retrieve without a unique key fits its 64
        characters, whole words; the log line names the model's unique keys
        (Study Root: no Patient ID)."""
        result = dcmtk("movescu", "-d", "-S", "-aec", self.server.ae, "-aem", "STORESCP", "-k",
                       "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID=", "127.0.0.1", self.server.port)
        self.assertIn("(0000,0902) LO [SERIES retrieve needs SeriesInstanceUID or a unique key above]",
                      result.stdout + result.stderr)
        self.assertIn("C-MOVE refused: SERIES retrieve needs SeriesInstanceUID or a unique key above "
                      "(StudyInstanceUID, SeriesInstanceUID)\n", self.server.log())

    def test_unknownDestination(self):
        result = movescu(self.server, "NOWHERE", "STUDY", {"StudyInstanceUID": CORPUS.studyUIDs()[0]})
        self.assertIn("Received Final Move Response (Refused: MoveDestinationUnknown)", result.stderr)
        self.assertIn("'NOWHERE' is not in acrnema.map", self.server.log())

    def test_compressedToImplicitOnlyDestination(self):
        for syntax, original in self.compressed.items():
            result = movescu(self.server, "IMPLICITSCP", "IMAGE", imageKeys(original))
            self.assertMoved(result)
            [received] = [ds for ds in self.implicitOnly.datasets()
                          if ds.SOPInstanceUID == original.SOPInstanceUID]
            self.assertEqual(received.file_meta.TransferSyntaxUID, IMPLICIT)
            if syntax == "1.2.840.10008.1.2.4.91":  # lossy: the same decoder's result
                numpy.testing.assert_array_equal(pixels(received), pixels(original))
            else:
                numpy.testing.assert_array_equal(pixels(received), pixels(original))

    def test_moveToOrthanc(self):
        uids = CORPUS.sopUIDs(patientID="PAT0002")
        result = movescu(self.server, "ORTHANC", "PATIENT", {"PatientID": "PAT0002"}, model="-P")
        self.assertMoved(result)
        self.assertTrue(set(uids) <= set(self.orthanc.instances()))
        uid = uids[0]
        stored = self.orthanc.dataset(uid)
        original = pydicom.dcmread(self.paths[uid])
        self.assertEqual(stored.PixelData, original.PixelData)

    def test_theUncompressedSyntaxACodeNamesIsUsed(self):
        """storescp accepting every syntax (+xa) gets an object moved to the
        AE titles of ``ub`` and ``ui`` in big endian and implicit VR, not in
        the explicit VR little endian it prefers of a shared context."""
        uid = CORPUS.sopUIDs(patientID="PAT0003")[0]
        original = pydicom.dcmread(self.paths[uid])
        for destination, syntax in (("STOREUB", "1.2.840.10008.1.2.2"), ("STOREUI", IMPLICIT)):
            self.storescp.reset()
            self.assertMoved(movescu(self.server, destination, "IMAGE", imageKeys(original)))
            [received] = self.storescp.datasets()
            self.assertEqual(received.file_meta.TransferSyntaxUID, syntax, destination)
            numpy.testing.assert_array_equal(pixels(received), pixels(original))

    def test_compressedToOrthanc(self):
        original = self.compressed["1.2.840.10008.1.2.4.90"]
        result = movescu(self.server, "ORTHANC", "IMAGE", imageKeys(original))
        self.assertMoved(result)
        self.assertEqual(self.orthanc.transferSyntaxOf(original.SOPInstanceUID), "1.2.840.10008.1.2.4.90")

    def test_getSeries(self):
        series = CORPUS.series[0]
        self.assertEqual(getSeries(self.server, self.workdir, series.studyUID, series.uid), set(series.sopUIDs))

    def test_getscuPreferringACompressedSyntaxGetsEveryObject(self):
        """getscu +xy (+xs) proposes JPEG Baseline (JPEG Lossless SV1),
        then Explicit and Implicit VR Little Endian, in one context a
        storage class: accepted in Explicit VR Little Endian, as Orthanc
        does, so that the 16-bit images JPEG Baseline cannot take come
        too (each was a failed sub-operation)."""
        series = CORPUS.series[0]
        for option in ("+xy", "+xs"):
            received = getSeriesSyntaxes(self.server, self.workdir, series.studyUID, series.uid, (option,))
            self.assertEqual(received, dict.fromkeys(series.sopUIDs, EXPLICIT), option)

    def test_getInACompressedSyntaxProposedInAContextOfItsOwn(self):
        """A retriever calling AE~j1 and proposing JPEG Lossless SV1 in a
        context of its own and Explicit VR Little Endian in another, as
        pacs proposes for a C-MOVE: uncompressed objects come in JPEG
        Lossless (an image it cannot take would come uncompressed), pixels
        as stored."""
        series = CORPUS.series[0]
        received = getInContexts(self.server, {"StudyInstanceUID": series.studyUID,
                                               "SeriesInstanceUID": series.uid},
                                 CT_STORAGE, ["1.2.840.10008.1.2.4.70", EXPLICIT], "SERIES", "~j1")
        self.assertEqual({ds.SOPInstanceUID: syntax for syntax, ds in received},
                         dict.fromkeys(series.sopUIDs, "1.2.840.10008.1.2.4.70"))
        for _, ds in received:
            numpy.testing.assert_array_equal(pixels(ds), pixels(pydicom.dcmread(self.paths[ds.SOPInstanceUID])))

    def test_getCompressedAsUncompressed(self):
        """getscu proposes uncompressed syntaxes only: a JPEG 2000 object arrives decompressed."""
        original = self.compressed["1.2.840.10008.1.2.4.90"]
        [received] = getObjects(self.server, self.workdir, "IMAGE", imageKeys(original))
        self.assertNotEqual(received.file_meta.TransferSyntaxUID, "1.2.840.10008.1.2.4.90")
        numpy.testing.assert_array_equal(pixels(received), pixels(original))

    def test_getWide32BitRgbInRle(self):
        """Native 32-bit RGB (pydicom's SC_rgb_rle_32bit.dcm decoded by
        dcmdrle: 12 segments, which RLE allows) to a retriever proposing
        only RLE Lossless: sent in it, pixels as stored, as dcmdrle decodes
        them."""
        native = os.path.join(self.workdir, "rgb32.dcm")
        result = dcmtk("dcmdrle", get_testdata_file("SC_rgb_rle_32bit.dcm"), native)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.server.store(native).returncode, 0)
        original = pydicom.dcmread(native)
        [(syntax, received)] = getInContexts(self.server, imageKeys(original), original.SOPClassUID,
                                             ["1.2.840.10008.1.2.5"])
        self.assertEqual(syntax, "1.2.840.10008.1.2.5")
        sent, decoded = (os.path.join(self.workdir, name) for name in ("rgb32-sent.dcm", "rgb32-decoded.dcm"))
        received.save_as(sent, enforce_file_format=True)
        result = dcmtk("dcmdrle", sent, decoded)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(pydicom.dcmread(decoded).PixelData, original.PixelData)

    def test_getWithoutTheSCPRoleLogsThatOncePerClass(self):
        """A C-GET whose requestor proposed CT Image Storage without taking
        the SCP role (no role selection), or did not propose it, gets A702
        with every object failed and none sent; the log says why, in one
        line for the class with the count, not a syntax line per object."""
        study = CORPUS.study("ACC0001")
        count = sum(len(series.sopUIDs) for series in study.series)
        for storageClass, reason in ((CT_STORAGE, f"did not take the SCP role for {CT_STORAGE}"),
                                     (MR_STORAGE, f"has no presentation context for {CT_STORAGE}")):
            logStart = len(self.server.log())
            final, stored = getWithoutRoles(self.server, storageClass, studyKeys(study.uid))
            self.assertEqual((final.Status, final.NumberOfCompletedSuboperations,
                              final.NumberOfFailedSuboperations, stored), (0xA702, 0, count, 0))
            log = self.server.log()[logStart:]
            self.assertEqual(log.count(reason), 1, log)
            self.assertIn(f"{reason} (", log)
            self.assertIn(f"): {count} objects of it not sent", log)
            self.assertNotIn("none of the syntaxes", log)

    def test_retiredStorageClassStoredAndRetrieved(self):
        """Retired Ultrasound Image Storage (1.2.840.10008.5.1.4.1.1.6), which
        the shipped dgatesop.lst enables and old ultrasound units still send:
        storescu -R (proposing that class only) stores it, getscu gets it and
        movescu moves it to storescp."""
        original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        original.SOPClassUID = original.file_meta.MediaStorageSOPClassUID = RETIRED_US
        original.SOPInstanceUID = original.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = os.path.join(self.workdir, "retired-us.dcm")
        original.save_as(path)
        result = self.server.store(path, extra=("-R",))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [got] = getObjects(self.server, self.workdir, "IMAGE", imageKeys(original))
        self.assertEqual((got.SOPInstanceUID, got.SOPClassUID), (original.SOPInstanceUID, RETIRED_US))
        self.storescp.reset()
        self.assertMoved(movescu(self.server, "STORESCP", "IMAGE", imageKeys(original)))
        [received] = self.storescp.datasets()
        self.assertEqual((received.SOPInstanceUID, received.SOPClassUID), (original.SOPInstanceUID, RETIRED_US))


class PacsToPacsTests(unittest.TestCase):
    """A C-MOVE from one pacs to another."""

    def test_moveBetweenTwoPacs(self):
        workdir = self.mktemp()
        target = PacsServer(os.path.join(workdir, "b"), ae="PACSB")
        source = PacsServer(os.path.join(workdir, "a"), ae="PACSA")
        source.addNode("PACSB", target.port)
        for server in (target, source):
            self.addCleanup(server.stop)
            server.start()
        storeCorpus(source, os.path.join(workdir, "corpus"))
        study = CORPUS.study("ACC0003")
        result = movescu(source, "PACSB", "STUDY", {"StudyInstanceUID": study.uid})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("Received Final Move Response (Success)", result.stdout + result.stderr)
        out = tempfile.mkdtemp(dir=workdir)
        found = dcmtk("findscu", "-S", "-X", "-od", out, "-aec", "PACSB", "-k", "QueryRetrieveLevel=IMAGE",
                      "-k", f"StudyInstanceUID={study.uid}", "-k", "SOPInstanceUID", "127.0.0.1", target.port)
        self.assertEqual(found.returncode, 0, found.stderr)
        uids = {pydicom.dcmread(os.path.join(out, name)).SOPInstanceUID for name in os.listdir(out)}
        self.assertEqual(uids, {u for s in study.series for u in s.sopUIDs})


class UndecodableSyntaxTests(unittest.TestCase):
    """An object stored in a syntax pacs has no codec for (MPEG-4 video,
    enabled in dgatesop.lst, stored as received) and retrieved by getscu
    +xn, which proposes that syntax first, then the uncompressed ones, for
    every storage class; and a study of a CT image and a PDF retrieved so."""

    def test_getscuGetsItInItsOwnSyntax(self):
        workdir = self.mktemp()
        server = PacsServer(os.path.join(workdir, "pacs"))
        with open(os.path.join(server.workdir, "dgatesop.lst"), "a") as f:
            f.write(f"MPEG4HighProfileLevel41 {MPEG4_HP41} transfer LittleEndianExplicit\n")
        self.addCleanup(server.stop)
        server.start()
        video = Dataset()
        video.SOPClassUID, video.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.77.1.4.1", generate_uid()
        video.StudyInstanceUID, video.SeriesInstanceUID = generate_uid(), generate_uid()
        video.PatientID, video.PatientName, video.Modality = "VID1", "Vid^Eo", "XC"
        video.Rows, video.Columns, video.SamplesPerPixel, video.NumberOfFrames = 480, 640, 3, 10
        video.BitsAllocated, video.BitsStored, video.HighBit, video.PixelRepresentation = 8, 8, 7, 0
        video.PhotometricInterpretation, video.PlanarConfiguration = "YBR_PARTIAL_420", 0
        video.PixelData = encapsulate([b"\x00\x00\x00\x01\x67" + bytes(range(256)) * 20])
        video["PixelData"].VR, video["PixelData"].is_undefined_length = "OB", True
        video.file_meta = FileMetaDataset()
        video.file_meta.TransferSyntaxUID = MPEG4_HP41
        studyUID = generate_uid()
        image = makeDataset(patientID="TC1", patientName="Ct^Pdf", studyUID=studyUID, seriesUID=generate_uid(),
                            sopUID=generate_uid(), seriesNumber=1, instanceNumber=1)
        pdf = Dataset()
        pdf.SOPClassUID, pdf.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.104.1", generate_uid()
        pdf.StudyInstanceUID, pdf.SeriesInstanceUID = studyUID, generate_uid()
        pdf.PatientID, pdf.PatientName, pdf.Modality = "TC1", "Ct^Pdf", "DOC"
        pdf.MIMETypeOfEncapsulatedDocument, pdf.EncapsulatedDocument = "application/pdf", b"%PDF-1.4\n%%EOF\n"
        pdf.file_meta = FileMetaDataset()
        pdf.file_meta.TransferSyntaxUID = EXPLICIT
        ae = AE(ae_title="STORER")
        ae.add_requested_context(video.SOPClassUID, [MPEG4_HP41])
        for ds in (image, pdf):
            ae.add_requested_context(ds.SOPClassUID, [EXPLICIT])
        association = ae.associate("127.0.0.1", server.port, ae_title=server.ae)
        self.assertTrue(association.is_established)
        statuses = [association.send_c_store(ds).Status for ds in (video, image, pdf)]
        association.release()
        self.assertEqual(statuses, [0, 0, 0])
        [got] = getObjects(server, workdir, "IMAGE", imageKeys(video), ("+xn",))
        self.assertEqual((got.SOPInstanceUID, got.file_meta.TransferSyntaxUID), (video.SOPInstanceUID, MPEG4_HP41))
        self.assertEqual(got.PixelData, video.PixelData)
        got = getObjects(server, workdir, "STUDY", {"StudyInstanceUID": studyUID}, ("+xn",))
        self.assertEqual({ds.SOPInstanceUID: ds.file_meta.TransferSyntaxUID for ds in got},
                         {image.SOPInstanceUID: EXPLICIT, pdf.SOPInstanceUID: EXPLICIT})


class QuotesPatientIDTests(unittest.TestCase):
    """A patient whose ID is two quotation marks next to one with an empty
    ID: C-FIND's Empty Value Matching finds the empty one, a retrieve or a
    delete by that ID the patient ``""``."""

    def setUp(self):
        workdir = self.mktemp()
        self.server = PacsServer(os.path.join(workdir, "pacs"))
        self.addCleanup(self.server.stop)
        self.server.start()
        self.out = os.path.abspath(workdir)
        for patientID, name in (("", "N^empty"), ('""', "N^quotes")):
            ds = makeDataset(patientID=patientID, patientName=name, studyUID=generate_uid(),
                             seriesUID=generate_uid(), sopUID=generate_uid(), seriesNumber=1, instanceNumber=1)
            path = os.path.join(self.out, f"{name[2:]}.dcm")
            ds.save_as(path, enforce_file_format=True)
            result = self.server.store(path)
            self.assertEqual(result.returncode, 0, result.stderr)

    def getPatient(self, patientID):
        out = tempfile.mkdtemp(dir=self.out)
        result = dcmtk("getscu", "-P", "-aec", self.server.ae, "-od", out, "-k", "QueryRetrieveLevel=PATIENT",
                       "-k", f"PatientID={patientID}", "127.0.0.1", self.server.port)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return [str(pydicom.dcmread(os.path.join(out, name)).PatientName) for name in os.listdir(out)]

    def test_retrieveAndDeleteTakeTheIDAsItIs(self):
        self.assertEqual(self.getPatient('""'), ["N^quotes"])
        result = self.server.dgate('--deletepatient:""')
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(self.getPatient('""'), [])
        found, _ = findscu(self.server, "-P", "PATIENT", {"PatientID": "", "PatientName": None})
        self.assertEqual([str(match.PatientName) for match in found], ["N^empty"])

    def test_findDoesEmptyValueMatching(self):
        found, _ = findscu(self.server, "-P", "PATIENT", {"PatientID": '""', "PatientName": None})
        self.assertEqual([str(match.PatientName) for match in found], ["N^empty"])


class SlowLink:
    """A TCP relay on a free port to ``port`` that reads at most ``rate``
    bytes a second in each direction (a WAN or VPN link), with a 64 kB
    receive buffer; in threads, until ``stop``."""

    def __init__(self, port, rate):
        self.port, self.rate = port, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sockets = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            near.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            far = socket.create_connection(("127.0.0.1", self.port))
            far.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            self.sockets += [near, far]
            for source, target in ((near, far), (far, near)):
                threading.Thread(target=self._relay, args=(source, target), daemon=True).start()

    def _relay(self, source, target):
        try:
            while data := source.recv(32768):
                time.sleep(len(data) / self.rate)
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    @property
    def listeningPort(self):
        return self.listener.getsockname()[1]

    def stop(self):
        for s in self.sockets:
            s.close()


class SlowLinkTests(unittest.TestCase):
    """A 24 MB object over a link that takes 6 s to carry it, with a DIMSE
    timeout (TCPIPTimeOut) of 3 s: the timeout counts the destination's
    silence once the object is sent, so it arrives by C-MOVE and C-GET."""

    RATE = 4 << 20

    def setUp(self):
        self.workdir = self.mktemp()
        self.storescp = StorescpServer(os.path.join(self.workdir, "storescp"), aet="STORESCP")
        self.storescp.start()
        self.addCleanup(self.storescp.stop)
        link = SlowLink(self.storescp.port, self.RATE)
        self.addCleanup(link.stop)
        self.server = PacsServer(os.path.join(self.workdir, "pacs"), ini={"TCPIPTimeOut": "3"})
        self.server.addNode("SLOWDEST", link.listeningPort)
        self.server.start()
        self.addCleanup(self.server.stop)
        path = os.path.join(self.workdir, "big.dcm")
        writeLargeMultiframe(path, "1.2.3.4.5.6.7", frames=48)
        self.assertEqual(self.server.store(path).returncode, 0)
        self.keys = {"StudyInstanceUID": "1.2.3.4.5", "SeriesInstanceUID": "1.2.3.4.5.6",
                     "SOPInstanceUID": "1.2.3.4.5.6.7"}

    def test_move(self):
        started = time.monotonic()
        result = movescu(self.server, "SLOWDEST", "IMAGE", self.keys)
        self.assertIn("Received Final Move Response (Success)", result.stdout + result.stderr, self.server.log())
        self.assertGreater(time.monotonic() - started, 4)
        self.assertEqual(len(self.storescp.files()), 1)

    def test_get(self):
        link = SlowLink(self.server.port, self.RATE)
        self.addCleanup(link.stop)
        started = time.monotonic()
        [received] = getObjects(SimpleNamespace(ae=self.server.ae, port=link.listeningPort), self.workdir, "IMAGE",
                                self.keys)
        self.assertGreater(time.monotonic() - started, 4)
        self.assertEqual(received.SOPInstanceUID, "1.2.3.4.5.6.7")
        self.assertNotIn("no response to message", self.server.log())


class UnreleasedDestinationTests(unittest.TestCase):
    """A C-MOVE destination that never answers the A-RELEASE-RQ (pynetdicom
    with its release action made a no-op): the final C-MOVE response is not
    held for the release, which pacs gives up after ARTIMTimeOut with an
    A-ABORT (PS3.8 AA-1) and a log line saying so."""

    def setUp(self):
        self.aborted = threading.Event()
        self.patch(fsm, "ACTIONS", {**fsm.ACTIONS, "AR-2": ("Ignore the A-RELEASE-RQ", lambda dul: "Sta6", "Sta6")})
        destination = AE(ae_title="MUTESCP")
        destination.add_supported_context(CT_STORAGE)
        port = freePort()
        self.addCleanup(destination.start_server(("127.0.0.1", port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, lambda event: 0x0000), (evt.EVT_PDU_RECV, self.received)]).shutdown)
        self.server = PacsServer(self.mktemp(), ini={"ARTIMTimeOut": "4"})
        self.server.addNode("MUTESCP", port)
        self.server.start()
        self.addCleanup(self.server.stop)
        path = get_testdata_file("CT_small.dcm")
        self.assertEqual(self.server.store(path).returncode, 0)
        self.keys = studyKeys(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)

    def received(self, event):
        if isinstance(event.pdu, A_ABORT_RQ):
            self.aborted.set()

    def test_move(self):
        association = moveAssociation(self.server)
        self.addCleanup(association.release)
        started = time.monotonic()
        [(final, _)] = list(association.send_c_move(self.keys, "MUTESCP", STUDY_ROOT_MOVE))
        self.assertEqual((final.Status, final.NumberOfCompletedSuboperations), (0, 1))
        self.assertLess(time.monotonic() - started, 3, "the final response waited for the release")
        self.assertTrue(self.aborted.wait(10), "no A-ABORT came")
        self.assertRegex(self.server.log(), r"MUTESCP@127\.0\.0\.1:\d+: no A-RELEASE-RP within 4 s \(ARTIMTimeOut\), "
                                            r"aborting")
        self.assertNotIn("connection lost without A-RELEASE or A-ABORT", self.server.log())

    def test_stopDuringRelease(self):
        """A stop (SIGTERM) while the release goes on in the background gives
        it up with an A-ABORT and a log line saying so, at once, rather than
        dropping the destination as if it had vanished."""
        association = moveAssociation(self.server)
        [(final, _)] = list(association.send_c_move(self.keys, "MUTESCP", STUDY_ROOT_MOVE))
        self.assertEqual(final.Status, 0)
        association.release()
        started = time.monotonic()
        self.server.stop()
        self.assertLess(time.monotonic() - started, 4, "the stop waited for ARTIM")
        self.assertTrue(self.aborted.wait(1), "no A-ABORT came")
        self.assertRegex(self.server.log(), r"MUTESCP@127\.0\.0\.1:\d+: pacs stopping before the A-RELEASE-RP came, "
                                            r"aborting")
        self.assertNotIn("connection lost without A-RELEASE or A-ABORT", self.server.log())


class SubOperationPriorityTests(unittest.TestCase):
    """pynetdicom's C-GET and C-MOVE with Priority HIGH or LOW: each C-STORE
    sub-operation carries it (PS3.4 C.4.2.1.2, C.4.3.1.2), as dcmqrscp's do."""

    def setUp(self):
        self.priorities = []
        destination = AE(ae_title="PRIOSCP")
        destination.add_supported_context(CT_STORAGE)
        port = freePort()
        self.addCleanup(destination.start_server(("127.0.0.1", port), block=False,
                                                 evt_handlers=[(evt.EVT_C_STORE, self.stored)]).shutdown)
        self.server = PacsServer(self.mktemp())
        self.server.addNode("PRIOSCP", port)
        self.server.start()
        self.addCleanup(self.server.stop)
        path = get_testdata_file("CT_small.dcm")
        self.assertEqual(self.server.store(path).returncode, 0)
        self.keys = studyKeys(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)

    def stored(self, event):
        self.priorities.append(event.request.Priority)
        return 0x0000

    def test_move(self):
        association = moveAssociation(self.server)
        self.addCleanup(association.release)
        [(final, _)] = list(association.send_c_move(self.keys, "PRIOSCP", STUDY_ROOT_MOVE, priority=2))
        self.assertEqual((final.Status, self.priorities), (0, [2]))

    def test_get(self):
        ae = AE(ae_title="GETTER")
        ae.add_requested_context(STUDY_ROOT_GET)
        ae.add_requested_context(CT_STORAGE)
        association = ae.associate("127.0.0.1", self.server.port, ae_title=self.server.ae,
                                   ext_neg=[build_role(CT_STORAGE, scp_role=True)],
                                   evt_handlers=[(evt.EVT_C_STORE, self.stored)])
        self.addCleanup(association.release)
        *_, (final, _) = association.send_c_get(self.keys, STUDY_ROOT_GET, priority=1)
        self.assertEqual((final.Status, self.priorities), (0, [1]))


class AbortingDestinationTests(unittest.TestCase):
    """A C-MOVE destination (pynetdicom) that A-ABORTs the association on
    the first C-STORE it is sent and takes every object after: that object
    alone fails; the next goes on a new association with the others."""

    def setUp(self):
        self.stored = []
        self.abortedOn = []
        destination = AE(ae_title="ABORTSCP")
        destination.add_supported_context(CT_STORAGE)
        port = freePort()
        self.addCleanup(destination.start_server(("127.0.0.1", port), block=False,
                                                 evt_handlers=[(evt.EVT_C_STORE, self.received)]).shutdown)
        self.server = PacsServer(self.mktemp())
        self.server.addNode("ABORTSCP", port)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.images = generateCorpus(os.path.join(self.server.workdir, "corpus"), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=4, rows=16, columns=16)
        self.assertEqual(self.server.store(*[image.path for image in self.images]).returncode, 0)

    def received(self, event):
        uid = event.request.AffectedSOPInstanceUID
        if not self.abortedOn:
            self.abortedOn.append(uid)
            event.assoc.abort()
            return 0xC000
        self.stored.append(uid)
        return 0x0000

    def test_move(self):
        association = moveAssociation(self.server)
        self.addCleanup(association.release)
        *_, (final, identifier) = association.send_c_move(studyKeys(self.images[0].studyUID), "ABORTSCP",
                                                          STUDY_ROOT_MOVE)
        self.assertEqual((final.Status, final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations),
                         (0xB000, 3, 1))
        self.assertEqual(identifier.FailedSOPInstanceUIDList, self.abortedOn[0])
        self.assertEqual(sorted(self.stored + self.abortedOn), sorted(image.sopUID for image in self.images))
        self.assertNotIn("no association with", self.server.log())


class CancelAndLoadTests(unittest.TestCase):
    """C-CANCEL of a C-MOVE, parallel retrieves, bounded memory."""

    def setUp(self):
        workdir = self.mktemp()
        self.storescp = StorescpServer(os.path.join(workdir, "storescp"), aet="STORESCP")
        self.server = PacsServer(os.path.join(workdir, "pacs"))
        self.server.addNode(self.storescp.aet, self.storescp.port)
        for peer in (self.storescp, self.server):
            self.addCleanup(peer.stop)
            peer.start()
        self.workdir = workdir

    def storeCorpus(self, **shape):
        images = generateCorpus(os.path.join(self.workdir, "corpus"), **shape)
        result = self.server.store(*[i.path for i in images])
        self.assertEqual(result.returncode, 0, result.stderr)
        return images

    def test_cancelMove(self):
        images = self.storeCorpus(patients=1, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=1000,
                                  rows=8, columns=8)
        result = dcmtk("movescu", "-v", "-S", "-aec", self.server.ae, "-aem", self.storescp.aet, "--cancel", "1",
                       "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={images[0].studyUID}",
                       "127.0.0.1", self.server.port)
        self.assertIn("Received Final Move Response (Cancel", result.stderr)
        self.assertLess(len(self.storescp.files()), len(images))
        self.assertIn("C-MOVE cancelled with", self.server.log())

    def test_cancelWhileReachingTheDestination(self):
        """A destination that takes the connection and never answers: a
        C-CANCEL is answered with Cancel at once, not after the 30 s the
        association request may take, every object counted as remaining."""
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        self.addCleanup(silent.close)
        server = PacsServer(os.path.join(self.workdir, "pacs2"))
        server.addNode("SILENT", silent.getsockname()[1])
        self.addCleanup(server.stop)
        server.start()
        images = generateCorpus(os.path.join(self.workdir, "corpus"), patients=1, studiesPerPatient=1,
                                seriesPerStudy=1, imagesPerSeries=3)
        self.assertEqual(server.store(*[i.path for i in images]).returncode, 0)
        association = moveAssociation(server)
        self.addCleanup(association.release)
        responses = association.send_c_move(studyKeys(images[0].studyUID), "SILENT", STUDY_ROOT_MOVE, msg_id=7)
        context = association.accepted_contexts[0].context_id
        threading.Timer(1, association.send_c_cancel, (7, context)).start()
        started = time.monotonic()
        [(status, _)] = list(responses)
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(status.Status, 0xFE00)
        self.assertEqual(status.NumberOfRemainingSuboperations, 3)
        self.assertIn("C-MOVE cancelled while the destination was being reached, 3 objects left", server.log())

    def test_failedListFitsInAUIValue(self):
        """1400 objects to a destination nobody listens on: their UIDs take
        more than the 64 KB a UI value holds in an explicit VR syntax; the
        list is cut there (it was sent as UN, which no client reads)."""
        nowhere = socket.socket()
        nowhere.bind(("127.0.0.1", 0))
        server = PacsServer(os.path.join(self.workdir, "pacs2"))
        server.addNode("NOWHERE", nowhere.getsockname()[1])
        nowhere.close()
        self.addCleanup(server.stop)
        server.start()
        images = generateCorpus(os.path.join(self.workdir, "corpus"), patients=1, studiesPerPatient=1,
                                seriesPerStudy=1, imagesPerSeries=1400, rows=8, columns=8)
        self.assertEqual(server.store(*[i.path for i in images]).returncode, 0)
        association = moveAssociation(server, EXPLICIT)
        self.addCleanup(association.release)
        [(status, identifier)] = list(association.send_c_move(studyKeys(images[0].studyUID), "NOWHERE",
                                                              STUDY_ROOT_MOVE))
        self.assertEqual(status.Status, 0xA702)
        self.assertEqual(status.NumberOfFailedSuboperations, 1400)
        self.assertEqual(identifier["FailedSOPInstanceUIDList"].VR, "UI")
        listed = identifier.FailedSOPInstanceUIDList
        self.assertGreater(len(listed), 1000)
        self.assertLess(len(listed), 1400)
        self.assertLessEqual(set(listed), {i.sopUID for i in images})
        self.assertIn(f"the Failed SOP Instance UID List names {len(listed)} of the 1400 failed objects",
                      server.log())

    def test_damagedFileIsNeverSent(self):
        """A damaged file (its data set cut short) is never sent: it made
        storescp abort the association (the others then arrived on a new
        one, as ``ReassociationTests`` has them); that object fails, logged,
        and the others arrive on the same association."""
        images = self.storeCorpus(patients=1, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=6)
        files = {row["SOPInstanceUID"]: row["ObjectFile"] for row in rows(self.server.database, "DICOMImages")}
        damaged = os.path.join(self.server.dataDir, files[images[2].sopUID])
        with open(damaged, "r+b") as f:
            f.truncate(os.path.getsize(damaged) - 50)
        before = len(self.server.log())
        result = movescu(self.server, self.storescp.aet, "STUDY", {"StudyInstanceUID": images[0].studyUID})
        self.assertIn("Received Final Move Response (Warning", result.stdout + result.stderr)
        self.assertEqual(len(self.storescp.files()), 5)
        log = self.server.log()[before:]
        self.assertIn(f"C-MOVE: {images[2].sopUID} cannot be read: {damaged}: truncated or damaged: element", log)
        self.assertNotIn("was lost", log)
        self.assertIn("C-MOVE: 6 sub-operations: 5 completed, 1 failed, 0 with a warning, 0 not sent", log)

    def test_getCutShortCountsWhatWasNotSent(self):
        """A getscu killed once it has answered its first object, through a
        link that went quiet after 3 MB (of 40): the log counts the objects
        never sent apart from those that failed."""
        images = self.storeCorpus(patients=1, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=20,
                                  rows=1024, columns=1024)
        relay = QuietingRelay(self.server.port, mark=1 << 20, limit=3 << 20)
        self.addCleanup(relay.close)
        out = tempfile.mkdtemp(dir=self.workdir)
        getscu = subprocess.Popen([dcmtkTool("getscu"), "-S", "-aec", self.server.ae, "-od", out,
                                   "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={images[0].studyUID}",
                                   "127.0.0.1", str(relay.port)],
                                  env=dcmtkEnvironment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.assertTrue(relay.quiet.wait(60), "3 MB through the relay")
        waitFor(lambda: relay.fromClient > relay.clientBytesAtMark, timeout=60,
                message="getscu's answer to the first object")  # all it sends after the first 1 MB
        getscu.kill()
        getscu.wait()
        line = re.compile(r"C-GET: 20 sub-operations: (\d+) completed, (\d+) failed, 0 with a warning, (\d+) not sent")
        waitFor(lambda: line.search(self.server.log()), timeout=60, message="the C-GET's counts logged")
        completed, failed, remaining = map(int, line.search(self.server.log()).groups())
        self.assertEqual(completed + failed + remaining, 20)
        self.assertGreaterEqual(completed, 1)
        self.assertGreaterEqual(remaining, 1)
        self.assertNotIn("sub-operations failed", self.server.log())

    def test_parallelRetrievesWithBoundedMemory(self):
        """Three studies of 24 objects of 2 MB each pulled at once by getscu
        and movescu: all arrive, and the server grows by far less than the
        144 MB it sends."""
        images = self.storeCorpus(patients=3, studiesPerPatient=1, seriesPerStudy=2, imagesPerSeries=12,
                                  rows=1024, columns=1024)
        studies = sorted({i.studyUID for i in images})
        before = self.server.peakRSSKilobytes()
        outs = [tempfile.mkdtemp(dir=self.workdir) for _ in studies[:2]]
        processes = [subprocess.Popen([dcmtkTool("getscu"), "-S", "-aec", self.server.ae, "-od", out,
                                       "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                                       "127.0.0.1", str(self.server.port)],
                                      env=dcmtkEnvironment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                     for out, study in zip(outs, studies)]
        processes.append(subprocess.Popen(
            [dcmtkTool("movescu"), "-S", "-aec", self.server.ae, "-aem", self.storescp.aet,
             "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={studies[2]}",
             "127.0.0.1", str(self.server.port)],
            env=dcmtkEnvironment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        for process in processes:
            output, _ = process.communicate(timeout=300)
            self.assertEqual(process.returncode, 0, output)
        for out in outs:
            self.assertEqual(len(os.listdir(out)), 24)
        self.assertEqual(len(self.storescp.files()), 24)
        grown = self.server.peakRSSKilobytes() - before
        self.assertLess(grown, 60 * 1024, f"the server grew by {grown} kB")



class SmallFileOfLargePixelsTests(unittest.TestCase):
    """A 2 MB file of RLE whose pixels decode to 150 MB, moved, fetched
    and forwarded to receivers that take only uncompressed syntaxes: each
    gets it whole, converted file to file a frame at a time, never whole
    in the server's memory (which it was as its file is under 8 MB)."""

    frames = 300  # of 512 x 512 16-bit pixels: 150 MB

    def test_convertedFileToFile(self):
        workdir = self.mktemp()
        receiver = StorescpServer(os.path.join(workdir, "implicit"), aet="IMPLICITSCP", acceptedSyntaxes="implicit")
        server = PacsServer(os.path.join(workdir, "pacs"),
                            ini={"ExportConverters": "1", "ExportConverter0": "forward to IMPLICITSCP"})
        server.addNode(receiver.aet, receiver.port)
        for peer in (receiver, server):
            self.addCleanup(peer.stop)
            peer.start()
        study = "1.2.826.0.1.3680043.8.498.41"
        original = flatRle(makeDataset("FLAT2", "Flat^Pixels", study, f"{study}.1", f"{study}.1.1", 1, 1,
                                       rows=512, columns=512), self.frames)
        before = self.storeSmall(server, original, workdir, "-xr")
        waitFor(lambda: receiver.files() and not queued(server), timeout=120, message="the forwarded object")
        self.assertReceived(original, server, before, "forward", [pydicom.dcmread(receiver.files()[0])])
        receiver.reset()
        moved = movescu(server, receiver.aet, "IMAGE", imageKeys(original))
        self.assertIn("Received Final Move Response (Success)", moved.stdout + moved.stderr)
        self.assertReceived(original, server, before, "C-MOVE", receiver.datasets())
        self.assertReceived(original, server, before, "C-GET", getObjects(server, workdir, "IMAGE",
                                                                          imageKeys(original)))

    def storeSmall(self, server, original, workdir, proposal):
        """Store ``original`` (a file under 4 MB) with storescu proposing
        ``proposal``; the server's peak memory before."""
        path = os.path.join(workdir, "flat.dcm")
        original.save_as(path, enforce_file_format=True)
        self.assertLess(os.path.getsize(path), 4 << 20)
        before = server.peakRSSKilobytes()
        result = server.store(path, extra=(proposal,))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return before

    def test_deflatedConvertedFileToFile(self):
        """A deflated file whose data set inflates to 150 MB (past the 128 MB
        a deflated object may inflate to in memory), fetched by a getscu
        that takes only uncompressed syntaxes, is inflated file to file and
        arrives whole: it was refused (A702) after costing some 200 MB of
        memory on each retrieve."""
        workdir = self.mktemp()
        server = PacsServer(os.path.join(workdir, "pacs"))
        self.addCleanup(server.stop)
        server.start()
        study = "1.2.826.0.1.3680043.8.498.42"
        original = makeDataset("FLAT3", "Flat^Deflated", study, f"{study}.1", f"{study}.1.1", 1, 1,
                               rows=512, columns=512)
        original.NumberOfFrames = self.frames
        original.PixelData = b"\x02\x01" * 512 * 512 * self.frames
        original.file_meta.TransferSyntaxUID = DEFLATED
        before = self.storeSmall(server, original, workdir, "-xd")
        self.assertReceived(original, server, before, "C-GET", getObjects(server, workdir, "IMAGE",
                                                                          imageKeys(original)))

    def assertReceived(self, original, server, before, how, received):
        """``received`` is ``original`` alone, uncompressed, and ``server``
        has grown by far less than its pixels since its peak was ``before``."""
        [ds] = received
        self.assertIn(ds.file_meta.TransferSyntaxUID, (IMPLICIT, EXPLICIT), how)
        self.assertEqual((ds.SOPInstanceUID, ds.NumberOfFrames), (original.SOPInstanceUID, self.frames), how)
        self.assertTrue(ds.PixelData == b"\x02\x01" * 512 * 512 * self.frames, f"the pixels of the {how}")
        grown = server.peakRSSKilobytes() - before
        self.assertLess(grown, 60 * 1024, f"the server grew by {grown} kB by the {how}")

class EchoLatency:
    """pynetdicom C-ECHOs (an association each, as a monitor makes them)
    every 50 ms in a thread until ``stop()``, which returns the slowest
    round trip in seconds; ``failure`` is what ended the thread early (a
    refused association, a failed C-ECHO), None if nothing did."""

    def __init__(self, server):
        self.server = server
        self.slowest = 0.0
        self.echoes = 0
        self.failure = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            self._echo()
        except BaseException as e:
            self.failure = e

    def _echo(self):
        ae = AE(ae_title="LATENCY")
        ae.add_requested_context("1.2.840.10008.1.1")
        while not self._stopped.wait(0.05):
            start = time.monotonic()
            association = ae.associate("127.0.0.1", self.server.port, ae_title=self.server.ae)
            assert association.is_established, "pacs refused the C-ECHO association"
            status = association.send_c_echo()
            association.release()
            assert status and status.Status == 0, f"C-ECHO answered {status}"
            self.slowest = max(self.slowest, time.monotonic() - start)
            self.echoes += 1

    def stop(self):
        self._stopped.set()
        self._thread.join(30)
        return self.slowest


class LargeFrameTests(unittest.TestCase):
    """A 3072 x 2048 image stored in JPEG 2000 (``~jk``), then moved to a
    receiver taking uncompressed syntaxes only: the codecs keep the GIL
    for the whole frame, and answered C-ECHOs meanwhile took 1.5-2 s (3.5-5.6 s
    with a 4096 x 4096 mammogram); coded in another process, each
    is answered within a second."""

    def test_echoesAreAnsweredWhileALargeFrameIsConverted(self):
        workdir = self.mktemp()
        receiver = StorescpServer(os.path.join(workdir, "unc"), aet="UNC", acceptedSyntaxes="uncompressed")
        server = PacsServer(os.path.join(workdir, "pacs"))
        server.addNode(receiver.aet, receiver.port)
        for peer in (receiver, server):
            self.addCleanup(peer.stop)
            peer.start()
        study = "1.2.826.0.1.3680043.8.498.43"
        original = makeDataset("LARGE", "Large^Frame", study, f"{study}.1", f"{study}.1.1", 1, 1,
                               rows=3072, columns=2048)
        path = os.path.join(workdir, "large.dcm")
        original.save_as(path, enforce_file_format=True)
        server.echo()  # the server's first association is behind it
        echoes = EchoLatency(server)
        try:
            stored = dcmtk("storescu", "-aec", f"{server.ae}~jk", "127.0.0.1", server.port, path)
            moved = movescu(server, receiver.aet, "IMAGE", imageKeys(original))
        finally:
            slowest = echoes.stop()
        self.assertEqual(stored.returncode, 0, stored.stdout + stored.stderr)
        self.assertIn("Received Final Move Response (Success)", moved.stdout + moved.stderr)
        [storedFile] = [os.path.join(folder, name) for folder, _, names in os.walk(server.dataDir)
                        for name in names if name.endswith(".dcm")]
        self.assertEqual(pydicom.dcmread(storedFile).file_meta.TransferSyntaxUID, "1.2.840.10008.1.2.4.90")
        [received] = receiver.datasets()
        self.assertTrue(received.PixelData == original.PixelData, "the pixels moved")
        self.assertIsNone(echoes.failure)
        self.assertLess(slowest, 1.0, f"the slowest of {echoes.echoes} C-ECHOs took {slowest:.2f} s")
        self.assertGreater(echoes.echoes, 5)

    def test_aStopBySignalLeavesNoTemporaryFolderOfTheProcesses(self):
        """The codec processes' forkserver has its socket in a folder
        multiprocessing makes (``$TMPDIR/pymp-...``) and removes at a normal
        exit only: a server stopped by SIGTERM (twistd ends by that signal
        again) left one at each stop.  The stop removes it."""
        tmp = tempfile.mkdtemp(prefix="pacs-tmpdir-")  # short: the socket's path is at most 107 bytes
        self.addCleanup(shutil.rmtree, tmp, True)
        server = PacsServer(os.path.join(self.mktemp(), "pacs"), env=dict(os.environ, TMPDIR=tmp))
        self.addCleanup(server.stop)
        server.start()
        study = "1.2.826.0.1.3680043.8.498.44"
        path = os.path.join(tmp, "large.dcm")
        makeDataset("LARGE", "Large^Frame", study, f"{study}.1", f"{study}.1.1", 1, 1, rows=1024,
                    columns=1024).save_as(path, enforce_file_format=True)
        stored = dcmtk("storescu", "-aec", f"{server.ae}~jk", "127.0.0.1", server.port, path)
        self.assertEqual(stored.returncode, 0, stored.stdout + stored.stderr)
        os.remove(path)
        [folder] = os.listdir(tmp)
        self.assertTrue(folder.startswith("pymp-"), folder)  # the frame was coded in the processes
        server.stop()
        self.assertEqual(server.process.returncode, -signal.SIGTERM)
        self.assertEqual(os.listdir(tmp), [])


def rawDataset(ds):
    """The data set ``ds`` in Implicit VR Little Endian, without preamble or
    file meta: the bytes of a Conquest ``.v2`` file."""
    out = io.BytesIO()
    dcmwrite(out, ds, implicit_vr=True, little_endian=True)
    return out.getvalue()


class MisdeclaredFileTests(unittest.TestCase):
    """Files a Conquest MAG device may hold whose header does not say how
    their data set is encoded, indexed by dgate -r: a Part-10 file whose
    meta says Explicit VR Little Endian over an implicit data set, and a
    ``.v2`` beginning with implicit group 0002 elements.  Each is retrieved
    and served in the syntax its data set is in, as a whole Part-10 file."""

    STUDY, SERIES = "1.2.826.0.1.3680043.99.1.3", "1.2.826.0.1.3680043.99.1.2"
    MISMATCH, GROUP2 = "1.2.826.0.1.3680043.99.6.2", "1.2.826.0.1.3680043.99.8.1"

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-misdeclared-")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds = cls.original.copy()
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "PAT 1&x", cls.STUDY, cls.SERIES
        del ds.file_meta
        ds.preamble = None
        folder = os.path.join(cls.server.dataDir, "PAT 1&x")
        os.makedirs(folder)
        ds.SOPInstanceUID = cls.MISMATCH
        with open(os.path.join(folder, "mismatch_62.dcm"), "wb") as f:
            f.write(encodeFileMeta(ds.SOPClassUID, cls.MISMATCH, EXPLICIT, "1.2.3", "X") + rawDataset(ds))
        ds.SOPInstanceUID = cls.GROUP2
        syntax = IMPLICIT.encode() + b"\0"
        element = struct.pack("<HHL", 2, 0x10, len(syntax)) + syntax
        with open(os.path.join(folder, "grp2_8.v2"), "wb") as f:
            f.write(struct.pack("<HHLL", 2, 0, 4, len(element)) + element + rawDataset(ds))
        cls.regen = cls.server.dgate("-r").stdout
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def assertWholePart10(self, data, sop):
        self.assertEqual(data[128:132], b"DICM")
        syntax, meta, _ = readFileMeta(io.BytesIO(data))
        self.assertEqual(meta[TRANSFER_SYNTAX_UID], syntax)
        ds = pydicom.dcmread(io.BytesIO(data))
        self.assertEqual(ds.SOPInstanceUID, sop)
        self.assertTrue((pixels(ds) == pixels(self.original)).all())

    def test_regenNamesIt(self):
        self.assertIn("2 files indexed, 0 failed", self.regen)
        self.assertIn("mismatch_62.dcm: its file meta says transfer syntax 1.2.840.10008.1.2.1, but its data set is "
                      "in 1.2.840.10008.1.2: it is sent in 1.2.840.10008.1.2", self.regen)

    def test_get(self):
        received = getObjects(self.server, self.workdir, "SERIES",
                              {"StudyInstanceUID": self.STUDY, "SeriesInstanceUID": self.SERIES})
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in received), [self.MISMATCH, self.GROUP2])
        for ds in received:
            self.assertTrue((pixels(ds) == pixels(self.original)).all())

    def wado(self, sop, **parameters):
        query = urllib.parse.urlencode({"requestType": "WADO", "studyUID": self.STUDY, "seriesUID": self.SERIES,
                                        "objectUID": sop, **parameters})
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.webPort}/wado?{query}", timeout=60) as answer:
            return answer.headers.get_content_type(), answer.read()

    def test_wadoURI(self):
        for sop in (self.MISMATCH, self.GROUP2):
            for syntax in (EXPLICIT, IMPLICIT):
                kind, data = self.wado(sop, contentType="application/dicom", transferSyntax=syntax)
                self.assertWholePart10(data, sop)
                self.assertEqual(readFileMeta(io.BytesIO(data))[0], syntax)
            self.assertEqual(self.wado(sop)[0], "image/jpeg")

    def test_zip(self):
        """zipstudy and zipseries give each as a whole Part-10 file in the
        syntax its data set is in, under its name on the MAG device
        (review of the Windows path and syntax fixes, item 5)."""
        for mode, parameter in (("zipstudy", f"study=PAT+1%26x:{self.STUDY}"),
                                ("zipseries", f"series={self.SERIES}")):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.server.webPort}/cgi-bin/dgate?mode={mode}&"
                                        f"{parameter}", timeout=60) as answer:
                body = answer.read()
            with zipfile.ZipFile(io.BytesIO(body)) as zipped:
                entries = {info.filename.rsplit("/", 1)[-1]: zipped.read(info) for info in zipped.infolist()}
            self.assertEqual(sorted(entries), ["grp2_8.v2", "mismatch_62.dcm"])
            for name, sop in (("mismatch_62.dcm", self.MISMATCH), ("grp2_8.v2", self.GROUP2)):
                self.assertWholePart10(entries[name], sop)
                self.assertEqual(readFileMeta(io.BytesIO(entries[name]))[0], IMPLICIT)

    def test_wadoRS(self):
        for sop in (self.MISMATCH, self.GROUP2):
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.server.webPort}/dicom-web/studies/{self.STUDY}/series/{self.SERIES}"
                f"/instances/{sop}", headers={"Accept": 'multipart/related; type="application/dicom"; '
                                                        "transfer-syntax=*"})
            with urllib.request.urlopen(request, timeout=60) as answer:
                body = answer.read()
            part = body[body.index(b"\r\n\r\n") + 4:body.rindex(b"\r\n--")]
            self.assertWholePart10(part, sop)


def oddDataset(sopUID, patientID="ODD1"):
    """CT_small as ``sopUID`` of ``patientID`` (a study of its own) with a
    private UN value of 5 bytes: in Implicit VR Little Endian (``rawDataset``)
    a data set of odd length, as pydicom writes it."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.file_meta
    ds.preamble = None
    ds.PatientID, ds.SOPInstanceUID = patientID, sopUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.add_new(0x00090010, "LO", "ACME 1.1")
    ds.add_new(0x00091002, "UN", b"\x10\x20\x30\x40\x50")
    return ds


def stowPart10(server, data):
    """STOW-RS of the Part-10 file ``data``: the answer's status."""
    body = b"--B\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--B--\r\n"
    request = urllib.request.Request(f"http://127.0.0.1:{server.webPort}/dicom-web/studies", data=body, headers={
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=B'})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.status


class OddLengthTests(unittest.TestCase):
    """Data sets of odd length (an odd-length private UN value written by
    pydicom, an odd deflated stream), which DCMTK refuses as an odd PDV
    ("Odd Fragment Length"): padded to even values when they are stored
    (C-STORE, STOW-RS), and one stored so before (by Conquest, or pacs
    before it padded them: dgate -r) padded when it is sent (C-GET,
    C-MOVE), its file left as it is."""

    PLACED, SENT = "1.2.826.0.1.3680043.99.9.1", "1.2.826.0.1.3680043.99.9.2"

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-oddlength-")
        cls.storescp = StorescpServer(os.path.join(cls.workdir, "storescp"), aet="STORESCP")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.server.addNode("STORESCP", cls.storescp.port, compression="as")
        cls.placed = oddDataset(cls.PLACED)
        data = rawDataset(cls.placed)
        assert len(data) % 2
        folder = os.path.join(cls.server.dataDir, "ODD1")
        os.makedirs(folder)
        cls.placedPath = os.path.join(folder, "odd.dcm")
        with open(cls.placedPath, "wb") as f:
            f.write(encodeFileMeta(cls.placed.SOPClassUID, cls.PLACED, IMPLICIT, "1.2.3", "X") + data)
        cls.server.dgate("-r")
        cls.storescp.start()
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.storescp.stop()

    def assertPadded(self, received):
        self.assertEqual(received[0x00091002].value, b"\x10\x20\x30\x40\x50\x00")

    def test_storedOddObjectGetAndMove(self):
        with open(self.placedPath, "rb") as f:
            before = f.read()
        original = pixels(pydicom.dcmread(get_testdata_file("CT_small.dcm")))
        for options in ((), ("+xs",)):
            [received] = getObjects(self.server, self.workdir, "IMAGE", imageKeys(self.placed), options)
            self.assertPadded(received)
            numpy.testing.assert_array_equal(pixels(received), original)
        self.storescp.reset()
        result = movescu(self.server, "STORESCP", "IMAGE", imageKeys(self.placed))
        self.assertIn("Received Final Move Response (Success)", result.stdout + result.stderr)
        [received] = self.storescp.datasets()
        self.assertPadded(received)
        with open(self.placedPath, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertIn(f"{self.PLACED}: values of odd length padded to an even length to send it (PS3.5 7.1.1): "
                      "(0009,1002)", self.server.log())

    def test_cStoreStoresEvenValues(self):
        ds = oddDataset(self.SENT, "ODD2")
        path = os.path.join(self.workdir, "sent.dcm")
        with open(path, "wb") as f:
            f.write(encodeFileMeta(ds.SOPClassUID, self.SENT, IMPLICIT, "1.2.3", "X") + rawDataset(ds))
        ae = AE(ae_title="PYNETDICOM")
        ae.add_requested_context(ds.SOPClassUID, [IMPLICIT])
        association = ae.associate("127.0.0.1", self.server.port, ae_title=self.server.ae)
        try:
            self.assertEqual(association.send_c_store(path).Status, 0)
        finally:
            association.release()
        [received] = getObjects(self.server, self.workdir, "IMAGE", imageKeys(ds))
        self.assertPadded(received)
        self.assertIn(f"{self.SENT} from PYNETDICOM: values of odd length padded to an even length (PS3.5 "
                      "7.1.1): (0009,1002)", self.server.log())

    def test_anOddValueOf65535BytesGoesAsUN(self):
        """An odd LT of 65535 bytes (explicit VR, from pynetdicom) cannot be
        padded in its 16-bit length: stored odd, silently, it made getscu
        fail ("Odd Fragment Length") and abort the C-GET of its study,
        losing the objects after it.  It is stored as UN with a 32-bit
        length, padded, logged, and the whole study goes."""
        study, series = generate_uid(), generate_uid()
        ae = AE(ae_title="PYNETDICOM")
        ae.add_requested_context(CT_STORAGE, [EXPLICIT])
        association = ae.associate("127.0.0.1", self.server.port, ae_title=self.server.ae)
        uids = [f"1.2.826.0.1.3680043.99.9.3{number}" for number in range(3)]
        try:
            for number, uid in enumerate(uids):
                ds = oddDataset(uid, "ODD3")
                del ds[0x00091002]
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, number + 1
                out = io.BytesIO()
                dcmwrite(out, ds, implicit_vr=False, little_endian=True)
                data = out.getvalue()
                if number == 1:
                    at = data.index(b"\x10\x00\x10\x00PN")
                    data = (data[:at] + b"\x0b\x00\x10\x00LO\x04\x00ACME\x0b\x00\x10\x10LT\xff\xff" + b"y" * 0xFFFF
                            + data[at:])
                path = os.path.join(self.workdir, f"long{number}.dcm")
                with open(path, "wb") as f:
                    f.write(encodeFileMeta(CT_STORAGE, uid, EXPLICIT, "1.2.3", "X") + data)
                self.assertEqual(association.send_c_store(path).Status, 0)
        finally:
            association.release()
        received = getObjects(self.server, self.workdir, "STUDY", {"StudyInstanceUID": study})
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in received), uids)
        [long] = [ds for ds in received if 0x000B1010 in ds]
        self.assertEqual((long[0x000B1010].VR, long[0x000B1010].value), ("UN", b"y" * 0xFFFF + b" "))
        self.assertIn(f"{uids[1]} from PYNETDICOM: values of odd length padded to an even length (PS3.5 7.1.1): "
                      "(000b,1010) (written as UN: 65536 bytes are too many for its VR LT)", self.server.log())

    def test_oddDeflatedStreamStowed(self):
        """pydicom's image_dfl.dcm, a deflated stream of 4303 bytes, stored
        over STOW-RS, then fetched deflated by getscu."""
        with open(get_testdata_file("image_dfl.dcm"), "rb") as f:
            data = f.read()
        self.assertEqual(stowPart10(self.server, data), 200)
        original = pydicom.dcmread(io.BytesIO(data))
        [received] = getObjects(self.server, self.workdir, "IMAGE", imageKeys(original), ("+xd",))
        self.assertEqual(received.file_meta.TransferSyntaxUID, DEFLATED)
        self.assertEqual(received.PixelData, original.PixelData)
