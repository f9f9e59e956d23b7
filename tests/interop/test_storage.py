"""C-ECHO and C-STORE against a running ``twistd -n pacs`` with DCMTK's
echoscu and storescu: every accepted transfer syntax, a multi-patient
corpus over parallel associations, regeneration of the index, a crash in
the middle of an ingest, a 300 MB object, bad input and a full disk."""

import concurrent.futures
import json
import os
import re
import shutil
import socket
import struct
import sqlite3
import subprocess
import time
import urllib.request
from contextlib import closing

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEGLSLossless, generate_uid
from twisted.trial import unittest

from pacscore.storage.part10 import readFileMeta
from pacscore.testing.corpus import generateCorpus, makeDataset
from pacscore.testing.tmpfs import mountTmpfs
from tests.interop.index import column, rows, snapshot
from tests.interop.peers import StorescpServer
from tests.interop.test_find import STUDY_ROOT, findscu
from tests.interop.server import PacsServer, acknowledged, acknowledgedBy, dcmtk, dcmtkTool, killWhenIndexed

# transfer syntax -> (pydicom test file, storescu option proposing it)
TRANSFER_SYNTAX_FILES = {
    "1.2.840.10008.1.2": ("MR_small_implicit.dcm", "-xi"),
    "1.2.840.10008.1.2.1": ("CT_small.dcm", "-xe"),
    "1.2.840.10008.1.2.2": ("MR_small_bigendian.dcm", "-xb"),
    "1.2.840.10008.1.2.1.99": ("image_dfl.dcm", "-xd"),
    "1.2.840.10008.1.2.4.50": ("SC_rgb_jpeg_dcmtk.dcm", "-xy"),
    "1.2.840.10008.1.2.4.51": ("JPEG-lossy.dcm", "-xx"),
    "1.2.840.10008.1.2.4.70": ("SC_rgb_jpeg_gdcm.dcm", "-xs"),
    "1.2.840.10008.1.2.4.80": ("MR_small_jpeg_ls_lossless.dcm", "-xt"),
    "1.2.840.10008.1.2.4.81": ("JPEGLSNearLossless_16.dcm", "-xu"),
    "1.2.840.10008.1.2.4.90": ("MR_small_jp2klossless.dcm", "-xv"),
    "1.2.840.10008.1.2.4.91": ("JPEG2000.dcm", "-xw"),
    "1.2.840.10008.1.2.5": ("MR_small_RLE.dcm", "-xr"),
}


def storedFiles(folder):
    """``{SOPInstanceUID: path}`` of every DICOM file stored under ``folder``."""
    found = {}
    for folder, subfolders, files in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "dbase"]
        for name in files:
            path = os.path.join(folder, name)
            found[pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID] = path
    return found


def elements(ds):
    """The data set's elements (not its file meta), without group lengths
    and without Data Set Trailing Padding (FFFC,FFFC), which storescu drops
    when it sends a file, as PS3.5 7.8 allows. Encapsulated pixel data is
    OB whatever the file said (storescu sends OW as OB, PS3.5 A.4)."""
    return [(e.tag, "OB" if e.tag == 0x7FE00010 and e.VR in ("OB", "OW", "OB or OW") else e.VR, e.value)
            for e in ds if e.tag.element != 0 and e.tag != 0xFFFCFFFC]


def checkTextCutAtNul(case, server):
    """An object with a NUL inside its PatientName and StudyDescription is
    stored (Success) on every database, indexed up to the NUL with a warning,
    its file keeping its bytes, and found by C-FIND by the text before the
    NUL and by QIDO-RS by the text with it (a key cut there too, not a 500
    on PostgreSQL); the same once
    ``dgate -r`` indexed it again (review dbparity, item 1)."""
    uid = generate_uid()
    ds = makeDataset("NULTEST1", "SP^X", uid, generate_uid(), generate_uid(), 1, 1)
    ds.StudyDescription = "NUL#TEXT"
    path = case.mktemp() + ".dcm"
    ds.save_as(path, enforce_file_format=True)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data.replace(b"NUL#TEXT", b"NUL\0TEXT").replace(b"SP^X", b"SP\0X"))
    result = server.store(path, extra=("-v",))
    case.assertIn("Store Response (Success)", result.stdout + result.stderr)
    case.assertIn("DICOMStudies.StudyDescription cut at a NUL: 'NUL\\x00TEXT'", server.log())
    [stored] = storedFiles(server.dataDir).values()
    with open(stored, "rb") as f:
        case.assertIn(b"NUL\0TEXT", f.read())

    def assertFound():
        for keys in ({"StudyDescription": "NUL"}, {"PatientName": "sp"}):  # a key's NUL: test_query
            matches, result = findscu(server, STUDY_ROOT, "STUDY", {**keys, "StudyInstanceUID": None, "PatientName": None,
                                                              "StudyDescription": None} | keys)
            case.assertEqual([(m.StudyInstanceUID, m.StudyDescription, str(m.PatientName)) for m in matches],
                             [(uid, "NUL", "SP")], (keys, result.stdout + result.stderr))
        for query in ("PatientName=SP%00X", "StudyDescription=NUL%00TEXT"):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.webPort}/dicom-web/studies?{query}",
                                        timeout=30) as answer:
                case.assertEqual([match["0020000D"]["Value"] for match in json.load(answer)], [[uid]], query)
    assertFound()
    server.stop()
    result = server.dgate("-r")
    case.assertEqual(result.returncode, 0, result.stdout + result.stderr)
    case.assertIn("1 files indexed", result.stdout)
    server.start()
    assertFound()


class ServerTestCase(unittest.TestCase):
    """Starts a fresh server for each test."""

    ini = None

    def setUp(self):
        self.server = PacsServer(self.mktemp(), ini=self.ini)
        self.addCleanup(self.server.stop)
        self.server.start()


class NulInTextTests(ServerTestCase):

    def test_cutAtNul(self):
        checkTextCutAtNul(self, self.server)


class EchoTests(ServerTestCase):

    def test_echoscu(self):
        result = self.server.echo()
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_anyCalledAEWithoutLocalAELines(self):
        """As Conquest (and Orthanc by default): with no LocalAE line in
        dgatesop.lst, an association is accepted whatever AE title it calls."""
        for called in ("NOTPACS", "pacs"):
            result = dcmtk("echoscu", "-aec", called, "127.0.0.1", self.server.port)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertIn(f"association ECHOSCU -> {called} accepted", self.server.log())

    def test_wrongCalledAEWithLocalAELines(self):
        self.server.stop()
        with open(os.path.join(self.server.workdir, "dgatesop.lst"), "a") as f:
            f.write("Alias    ALIAS    LocalAE\n")
        self.server.start()
        result = dcmtk("echoscu", "-aec", "NOTPACS", "127.0.0.1", self.server.port)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("Called AE Title Not Recognized", result.stdout + result.stderr)
        self.assertIn("called AE title 'NOTPACS' is not ours (PACS, ALIAS)", self.server.log())
        for called in ("PACS", "ALIAS"):
            result = dcmtk("echoscu", "-aec", called, "127.0.0.1", self.server.port)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_compressionSuffixAccepted(self):
        result = dcmtk("echoscu", "-aec", "PACS~j2", "127.0.0.1", self.server.port)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_garbageAbortedOthersServed(self):
        with socket.create_connection(("127.0.0.1", self.server.port)) as s:
            s.sendall(b"\x09\x00\x00\x00\x00\x02hi")
            reply = s.recv(100)
        self.assertEqual(reply[:1], b"\x07", "an A-ABORT answers an unknown PDU type")
        with socket.create_connection(("127.0.0.1", self.server.port)) as s:
            s.sendall(b"\x01\x00\xff\xff\xff\xf0")
            self.assertEqual(s.recv(100)[:1], b"\x07")
        self.assertEqual(self.server.echo().returncode, 0)
        self.assertIn("malformed PDU", self.server.log())


def uniqueCopy(name, folder):
    """pydicom's test file ``name`` written again in its own transfer
    syntax with a new SOP Instance UID (several test files share one), and
    study/series UIDs where the file has none."""
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if keyword not in ds:
            setattr(ds, keyword, generate_uid())
    path = os.path.join(folder, name)
    ds.save_as(path, enforce_file_format=True)
    return path


class TransferSyntaxTests(ServerTestCase):

    def test_everyTransferSyntax(self):
        """Each object is stored in the syntax it arrived in, with the same data set."""
        folder = self.mktemp()
        os.makedirs(folder)
        sent = {}
        for transferSyntax, (name, option) in TRANSFER_SYNTAX_FILES.items():
            path = uniqueCopy(name, folder)
            self.assertEqual(pydicom.dcmread(path).file_meta.TransferSyntaxUID, transferSyntax)
            result = self.server.store(path, extra=("-R", option))
            self.assertEqual(result.returncode, 0, f"{name}: {result.stdout}{result.stderr}")
            sent[transferSyntax] = pydicom.dcmread(path)
        stored = storedFiles(self.server.dataDir)
        for transferSyntax, original in sent.items():
            copy = pydicom.dcmread(stored[original.SOPInstanceUID])
            self.assertEqual(copy.file_meta.TransferSyntaxUID, transferSyntax)
            self.assertEqual(elements(copy), elements(original), transferSyntax)
        self.assertEqual(set(column(self.server.database, "DICOMImages", "SOPInstanceUID")),
                         {ds.SOPInstanceUID for ds in sent.values()})

    def test_waveformStored(self):
        """pydicom's waveform_ecg.dcm (12-lead ECG, which Conquest's
        dgatesop.lst leaves disabled) from storescu -R, proposing its class
        only, is stored with the shipped dgatesop.lst, as Orthanc stores it."""
        path = get_testdata_file("waveform_ecg.dcm")
        result = self.server.store(path, extra=("-R",))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(column(self.server.database, "DICOMImages", "SOPInstanceUID"),
                         [pydicom.dcmread(path).SOPInstanceUID])

    def test_objectWithoutStudyUIDRefused(self):
        result = self.server.store(get_testdata_file("JPEGLSNearLossless_08.dcm"), extra=("-R", "-xu", "-v"))
        self.assertIn("Error: DataSetDoesNotMatchSOPClass", result.stdout + result.stderr)
        self.assertIn("no Study Instance UID in the data set", self.server.log())
        self.assertEqual(column(self.server.database, "DICOMImages", "SOPInstanceUID"), [])


class CorpusTests(ServerTestCase):

    def sendParallel(self, images, associations=4):
        chunks = [[i.path for i in images[n::associations]] for n in range(associations)]
        with concurrent.futures.ThreadPoolExecutor(associations) as pool:
            results = list(pool.map(lambda paths: self.server.store(*paths), chunks))
        for result in results:
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_parallelCorpusIndexedExactly(self):
        images = generateCorpus(self.mktemp(), patients=3, studiesPerPatient=2, seriesPerStudy=2,
                                imagesPerSeries=5)
        self.sendParallel(images)
        database = self.server.database
        self.assertEqual(column(database, "DICOMPatients", "PatientID"),
                         sorted({i.patientID for i in images}))
        self.assertEqual(column(database, "DICOMStudies", "StudyInstanceUID"),
                         sorted({i.studyUID for i in images}))
        self.assertEqual(column(database, "DICOMSeries", "SeriesInstanceUID"),
                         sorted({i.seriesUID for i in images}))
        self.assertEqual(column(database, "DICOMImages", "SOPInstanceUID"), sorted(i.sopUID for i in images))
        studies = {r["StudyInstanceUID"]: r for r in rows(database, "DICOMStudies")}
        for image in images:
            self.assertEqual(studies[image.studyUID]["PatientID"], image.patientID)
        stored = storedFiles(self.server.dataDir)
        for image in images:
            original = pydicom.dcmread(image.path)
            self.assertEqual(elements(pydicom.dcmread(stored[image.sopUID])), elements(original))
        byFile = {r["SOPInstanceUID"]: r for r in rows(database, "DICOMImages")}
        for image in images:
            record = byFile[image.sopUID]
            self.assertEqual(record["DeviceName"], "MAG0")
            self.assertEqual(os.path.join(self.server.dataDir, record["ObjectFile"]), stored[image.sopUID])
            self.assertTrue(re.fullmatch(rf"{image.patientID}/{re.escape(image.seriesUID)}_\d{{4}}_\d{{6}}_\d+[0-9a-f]{{4}}\.dcm",
                                         record["ObjectFile"]), record["ObjectFile"])

        before = snapshot(database)
        self.server.stop()
        os.unlink(database)
        result = self.server.dgate("-r")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn(f"{len(images)} files indexed", result.stdout)
        self.assertEqual(snapshot(database), before)

    def test_sameInstanceTwiceReplaces(self):
        [image] = generateCorpus(self.mktemp(), 1, 1, 1, 1)
        self.assertEqual(self.server.store(image.path).returncode, 0)
        first = rows(self.server.database, "DICOMImages")[0]["ObjectFile"]
        self.assertEqual(self.server.store(image.path).returncode, 0)
        [record] = rows(self.server.database, "DICOMImages")
        self.assertNotEqual(record["ObjectFile"], first)
        deadline = time.monotonic() + 10  # the replaced file is removed after the answer
        while os.path.exists(os.path.join(self.server.dataDir, first)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(os.path.join(self.server.dataDir, first)))
        self.assertEqual(list(storedFiles(self.server.dataDir)), [image.sopUID])


    def test_anotherPatientsObjectWithTheSameSOPInstanceRefused(self):
        """An object of another patient, study and series with the SOP
        Instance UID of an image of a stored series that has others is
        refused as Conquest refuses it (it replaced that image, whose file
        was deleted: 'removed ...: replaced by a new copy of the same SOP
        instance'); both patients' objects stay, indexed and on disk."""
        self.assertCollisionRefused(imagesPerSeries=2)

    def test_anotherPatientsObjectWithTheSOPInstanceOfASeriesOnlyImageRefused(self):
        """Likewise where the stored image is alone in its series (a CR
        view, an SR, a PDF): the other patient's object did not move it,
        it replaced it ('... deleted: its last image moved elsewhere')."""
        self.assertCollisionRefused(imagesPerSeries=1)

    def assertCollisionRefused(self, imagesPerSeries):
        """Store two patients of one series of ``imagesPerSeries`` images
        each, then an object of another patient, study and series with the
        SOP Instance UID of the first image: refused, both patients kept."""
        images = generateCorpus(self.mktemp(), patients=2, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=imagesPerSeries)
        self.assertEqual(self.server.store(*(i.path for i in images)).returncode, 0)
        victim = images[0]
        ds = pydicom.dcmread(images[-1].path)
        ds.PatientID, ds.PatientName = "COLLIDE", "OTHER^PATIENT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = victim.sopUID
        path = self.mktemp() + ".dcm"
        ds.save_as(path)
        result = self.server.store(path, extra=("-v",))
        self.assertIn("Status: 0x110", result.stderr)  # StorageFailedErrorCode, as a study's or series' refusal
        self.assertIn("Refused to enter inconsistent link SeriesInstanceUID into DICOMImages: SOPInstanceUID = "
                      f"'{victim.sopUID}', Old = '{victim.seriesUID}', Refused = '{ds.SeriesInstanceUID}'",
                      self.server.log())
        self.assertEqual(sorted((r["SOPInstanceUID"], r["ImagePat"]) for r in rows(self.server.database, "DICOMImages")),
                         sorted((i.sopUID, i.patientID) for i in images))
        self.assertEqual(column(self.server.database, "DICOMPatients", "PatientID"), ["PAT0000", "PAT0001"])
        stored = storedFiles(self.server.dataDir)
        self.assertEqual(sorted(stored), sorted(i.sopUID for i in images))
        self.assertEqual(pydicom.dcmread(stored[victim.sopUID]).PatientID, victim.patientID)


class CleanStopTests(ServerTestCase):

    def test_theIndexFileAloneHoldsEveryRowAfterACleanStop(self):
        """A clean stop closes the index: SQLite checkpoints its write-ahead
        log into conquest.db3 and removes it, so the .db3 alone (what a
        backup of a stopped Conquest copies) holds every stored object."""
        images = generateCorpus(self.mktemp(), patients=1, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=4)
        self.assertEqual(self.server.store(*[image.path for image in images]).returncode, 0)
        self.server.stop()
        database = self.server.database
        self.assertFalse(os.path.exists(database + "-wal"))
        self.assertFalse(os.path.exists(database + "-shm"))
        copy = os.path.join(self.mktemp() + ".db3")
        shutil.copy(database, copy)
        with closing(sqlite3.connect(copy)) as connection:
            self.assertEqual(connection.execute("SELECT count(*) FROM DICOMImages").fetchone()[0], 4)

    def test_sigtermDuringParallelStoresLeavesNoOrphans(self):
        """SIGTERM while four associations store: they are aborted before
        the archive waits for the stores under way, so none begins after
        that wait, and the copy each replaced is removed: no file on disk
        without an index row; every acknowledged object is indexed (review
        d4, items 1 and 2)."""
        stored = generateCorpus(self.mktemp(), patients=1, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=100)
        self.assertEqual(self.server.store(*[image.path for image in stored]).returncode, 0)
        new = generateCorpus(self.mktemp(), patients=2, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=100)
        # two send again what is stored (each store replaces a copy), two send new objects
        chunks = [[image.path for image in stored]] * 2 + [[image.path for image in new[n::2]] for n in range(2)]
        outputs = [open(self.mktemp(), "w+") for _ in chunks]
        processes = [subprocess.Popen(
            [dcmtkTool("storescu"), "-v", "-aec", "PACS", "127.0.0.1", str(self.server.port), *paths],
            stdout=output, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, TCP_NODELAY="1"))
            for paths, output in zip(chunks, outputs)]

        def answered():
            return sum(open(output.name).read().count("Received Store Response") for output in outputs)
        deadline = time.monotonic() + 30
        while answered() < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.server.stop()
        for process in processes:
            process.wait(timeout=60)
        confirmed = set()
        for output in outputs:
            with output:
                output.seek(0)
                confirmed |= acknowledged(output.read())
        self.assertLess(len(confirmed), 300, "the SIGTERM came before the end of the stores")
        self.assertIn("stopping: aborting 4 running association(s)", self.server.log())
        database = self.server.database
        indexed = set(column(database, "DICOMImages", "ObjectFile"))
        onDisk = {os.path.relpath(os.path.join(folder, name), self.server.dataDir)
                  for folder, subfolders, files in os.walk(self.server.dataDir)
                  if not os.path.relpath(folder, self.server.dataDir).startswith((".", "dbase"))
                  for name in files if name.endswith(".dcm")}
        self.assertEqual(onDisk - indexed, set(), "no file on disk without an index row")
        self.assertLessEqual(confirmed, set(column(database, "DICOMImages", "SOPInstanceUID")),
                             "every acknowledged object is indexed")


class CompressionTests(ServerTestCase):
    """Conquest's stored compression (manual 7.7): IncomingCompression for
    C-STOREs, overridden by the ``~xx`` of the called AE title, and
    DroppedFileCompression for added files."""

    ini = {"IncomingCompression": "un", "DroppedFileCompression": "j1"}

    def copyOf(self, name):
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        return uniqueCopy(name, folder)

    def assertStoredAs(self, original, transferSyntax):
        copy = pydicom.dcmread(storedFiles(self.server.dataDir)[original.SOPInstanceUID])
        self.assertEqual(copy.file_meta.TransferSyntaxUID, transferSyntax)
        self.assertEqual(copy.PatientName, original.PatientName)
        self.assertTrue((copy.pixel_array == original.pixel_array).all())
        self.assertIn(original.SOPInstanceUID, column(self.server.database, "DICOMImages", "SOPInstanceUID"))

    def test_incomingCompressionDecompresses(self):
        path = self.copyOf("MR_small_jpeg_ls_lossless.dcm")
        result = self.server.store(path, extra=("-R", "-xt"))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertStoredAs(pydicom.dcmread(path), "1.2.840.10008.1.2.1")

    def test_uncompressedKeptAsReceived(self):
        path = self.copyOf("MR_small_implicit.dcm")
        self.assertEqual(self.server.store(path, extra=("-R", "-xi")).returncode, 0)
        original = pydicom.dcmread(path)
        copy = pydicom.dcmread(storedFiles(self.server.dataDir)[original.SOPInstanceUID])
        self.assertEqual(copy.file_meta.TransferSyntaxUID, "1.2.840.10008.1.2")
        self.assertEqual(elements(copy), elements(original))

    def test_calledTitleSuffixOverrides(self):
        path = self.copyOf("CT_small.dcm")
        result = dcmtk("storescu", "-aec", f"{self.server.ae}~jk", "127.0.0.1", self.server.port, path)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertStoredAs(pydicom.dcmread(path), "1.2.840.10008.1.2.4.90")

    def test_droppedFileCompression(self):
        path = self.copyOf("CT_small.dcm")
        result = self.server.dgate(f"--addimagefile:{path}")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertStoredAs(pydicom.dcmread(path), "1.2.840.10008.1.2.4.70")


class DamagedIndexTests(ServerTestCase):

    def test_refusedAtStartThenRebuiltByRegen(self):
        """A damaged SQLite index stops start-up with a message naming the
        remedy; ``dgate -r`` keeps the damaged file aside and rebuilds the
        same rows from the stored files."""
        images = generateCorpus(self.mktemp(), patients=2, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=3)
        self.assertEqual(self.server.store(*[i.path for i in images]).returncode, 0)
        database = self.server.database
        before = snapshot(database)
        self.server.stop()
        with open(database, "r+b") as f:
            damaged = f.read()
            f.seek(0)
            f.write(b"not SQLite at all")  # over its "SQLite format 3" header
        for suffix in ("-wal", "-shm"):
            if os.path.exists(database + suffix):
                os.unlink(database + suffix)
        refusal = str(self.assertRaises(AssertionError, self.server.start))
        self.assertIn(f"cannot start: the index database sqlite:{database} cannot be used: file is not a "
                      f"database. The file is damaged: 'dgate -r' in the working folder sets it aside", refusal)
        self.assertNotIn("Traceback", refusal)
        result = self.server.dgate("-r")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("The index database is damaged (file is not a database); it is kept as "
                      f"{database}.damaged-", result.stdout)
        self.assertIn(f"{len(images)} files indexed", result.stdout)
        [kept] = [name for name in os.listdir(os.path.dirname(database)) if ".damaged-" in name]
        with open(os.path.join(os.path.dirname(database), kept), "rb") as f:
            self.assertEqual(f.read()[17:], damaged[17:])
        self.assertEqual(snapshot(database), before)
        self.server.start()
        self.assertEqual(dcmtk("echoscu", "-aec", self.server.ae, "127.0.0.1", self.server.port).returncode, 0)


    def test_lostIndexBesideStoredFilesWarned(self):
        [image] = generateCorpus(self.mktemp(), 1, 1, 1, 1)
        self.assertEqual(self.server.store(image.path).returncode, 0)
        self.assertNotIn("the index holds no image", self.server.log())  # nothing stored at the first start
        self.server.stop()
        os.unlink(self.server.database)
        self.server.start()
        stored = storedFiles(self.server.dataDir)[image.sopUID]
        self.assertIn(f"the index holds no image, but MAG0 holds DICOM files (e.g. {stored}); "
                      f"if the index was lost or switched to a new database, run 'dgate --regen:' now",
                      self.server.log())


    def test_fifoOnTheDeviceSkipped(self):
        """A FIFO on MAG0 blocks neither the start-up check of an empty
        index nor ``dgate -r``: it is no object."""
        [image] = generateCorpus(self.mktemp(), 1, 1, 1, 1)
        self.assertEqual(self.server.store(image.path).returncode, 0)
        stored = storedFiles(self.server.dataDir)[image.sopUID]
        self.server.stop()
        os.unlink(self.server.database)
        os.makedirs(os.path.join(self.server.dataDir, "AAA"))
        os.mkfifo(os.path.join(self.server.dataDir, "AAA", "pipe.dcm"))
        self.server.start()
        self.assertIn(f"(e.g. {stored})", self.server.log())
        self.server.stop()
        result = self.server.dgate("-r")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("1 files indexed, 0 failed", result.stdout)


class CrashTests(ServerTestCase):

    def storedThenKilled(self, count):
        """Store C{count} images of one series, then SIGKILL the server."""
        images = generateCorpus(self.mktemp(), patients=1, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=count)
        self.assertEqual(self.server.store(*(i.path for i in images)).returncode, 0)
        self.server.kill()
        return images

    def test_killDuringIngestLosesNothingAcknowledged(self):
        images = generateCorpus(self.mktemp(), patients=4, studiesPerPatient=1, seriesPerStudy=2,
                                imagesPerSeries=60)
        chunks = [[i.path for i in images[n::3]] for n in range(3)]
        processes = [subprocess.Popen(
            [dcmtkTool("storescu"), "-v", "-aec", "PACS", "127.0.0.1", str(self.server.port), *paths],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, TCP_NODELAY="1"))
            for paths in chunks]
        database = self.server.database
        def indexed():
            try:
                with sqlite3.connect(database) as c:
                    return c.execute("SELECT COUNT(*) FROM DICOMImages").fetchone()[0]
            except sqlite3.OperationalError:
                return 0
        killWhenIndexed(self.server, indexed, len(images) // 4)
        acknowledged = acknowledgedBy(processes)
        self.assertGreater(len(acknowledged), 0)
        self.assertLess(len(acknowledged), len(images), "the kill came before the end of the ingest")
        self.assertLessEqual(acknowledged, set(column(database, "DICOMImages", "SOPInstanceUID")),
                             "every acknowledged object is in the index")
        self.assertLessEqual(acknowledged, set(storedFiles(self.server.dataDir)), "and on disk")
        result = self.server.dgate("-r")
        self.assertEqual(result.returncode, 0, result.stdout)
        self.assertLessEqual(acknowledged, set(column(database, "DICOMImages", "SOPInstanceUID")))
        temporary = os.path.join(self.server.dataDir, ".pacs-tmp")
        leftovers = set(os.listdir(temporary))
        self.server.start()
        self.assertFalse(leftovers & set(os.listdir(temporary)),
                         "half-received objects are cleaned at start-up")
        self.assertTrue(all(os.path.getsize(os.path.join(temporary, name)) == 0
                            for name in os.listdir(temporary)), "only empty pre-created files remain")


    def test_rowsWhoseFileWasLostRemovedAtStartup(self):
        """As after a power loss during the flush that follows a commit: rows
        marked pending whose file is gone or truncated are removed at the
        next start; intact ones stay; regen agrees."""
        images = self.storedThenKilled(3)
        database = self.server.database
        files = {r["SOPInstanceUID"]: r["ObjectFile"] for r in rows(database, "DICOMImages")}
        intact, missing, truncated = (files[i.sopUID] for i in images)
        os.unlink(os.path.join(self.server.dataDir, missing))
        with open(os.path.join(self.server.dataDir, truncated), "r+b") as f:
            f.truncate(os.path.getsize(f.name) // 2)
        with sqlite3.connect(database) as c:
            c.execute("DELETE FROM PendingFiles")
            c.executemany("INSERT INTO PendingFiles (DeviceName, ObjectFile) VALUES ('MAG0', ?)",
                          [(name,) for name in files.values()])
        self.server.start()
        self.assertEqual(column(database, "DICOMImages", "ObjectFile"), [intact])
        self.assertEqual(column(database, "PendingFiles", "ObjectFile"), [])
        log = self.server.log()
        for name in (missing, truncated):
            self.assertIn(f"MAG0:{name} was indexed but did not survive a crash", log)
        self.assertIn("Checked the 3 files indexed last before the server stopped: 2 lost", log)
        self.assertEqual(self.server.echo().returncode, 0)

    def test_earlierCopyIndexedAgainWhenItsReplacementWasLost(self):
        """As after a power loss during the flush of a new copy of a SOP
        instance stored under another name: its row pointed at the new file,
        which is gone; the earlier, acknowledged copy is indexed again."""
        [image] = self.storedThenKilled(1)
        database = self.server.database
        [earlier] = column(database, "DICOMImages", "ObjectFile")
        with sqlite3.connect(database) as c:
            c.execute("UPDATE DICOMImages SET ObjectFile = 'renamed/lost.dcm'")
            c.execute("INSERT INTO PendingFiles (DeviceName, ObjectFile, ReplacedDevice, ReplacedFile) "
                      "VALUES ('MAG0', 'renamed/lost.dcm', 'MAG0', ?)", (earlier,))
        self.server.start()
        self.assertEqual(column(database, "DICOMImages", "ObjectFile"), [earlier])
        self.assertEqual(column(database, "DICOMImages", "SOPInstanceUID"), [image.sopUID])
        self.assertIn(f"MAG0:{earlier}, the copy of the same SOP instance it replaced, is indexed again",
                      self.server.log())

    def test_laterAcknowledgedCopyStaysIndexedAfterACrash(self):
        """As after a crash with the marks of flushed groups not yet dropped:
        a copy stored as a.dcm, replaced by b.dcm, replaced by a.dcm again
        (a name made of %callingae), replaced by the acknowledged copy the
        row names, a.dcm's removal not yet run.  The mark of b.dcm (removed,
        it replaced a.dcm) is no lost file, and a.dcm is not indexed over
        the acknowledged copy."""
        [image] = self.storedThenKilled(1)
        database = self.server.database
        [acknowledged] = column(database, "DICOMImages", "ObjectFile")
        stale = os.path.join(os.path.dirname(acknowledged), "a.dcm")
        shutil.copy(os.path.join(self.server.dataDir, acknowledged), os.path.join(self.server.dataDir, stale))
        gone = os.path.join(os.path.dirname(acknowledged), "b.dcm")
        with sqlite3.connect(database) as c:
            c.execute("DELETE FROM PendingFiles")
            c.executemany("INSERT INTO PendingFiles (DeviceName, ObjectFile, ReplacedDevice, ReplacedFile) "
                          "VALUES ('MAG0', ?, ?, ?)", [(stale, "", ""), (gone, "MAG0", stale), (stale, "MAG0", gone),
                                                       (acknowledged, "MAG0", stale)])
        self.server.start()
        self.assertEqual(column(database, "DICOMImages", "ObjectFile"), [acknowledged])
        log = self.server.log()
        self.assertNotIn("did not survive a crash", log)
        self.assertNotIn("is indexed again", log)
        self.assertIn("Checked the 4 files indexed last before the server stopped: 0 lost; 1 more were gone but "
                      "named by no image row", log)

    def test_aCopyReplacedJustBeforeAKillIsRemovedAtStartup(self):
        """kill -9 right after a re-sent object's row committed, before the
        copy it replaced was removed: that copy, indexed by no row, stayed on
        disk for good (a second copy of the SOP instance for dgate -r to
        find).  The mark of the new copy, intact and indexed, names it: it is
        removed at the next start."""
        [image] = self.storedThenKilled(1)
        database = self.server.database
        [acknowledged] = column(database, "DICOMImages", "ObjectFile")
        replaced = os.path.join(os.path.dirname(acknowledged), "replaced.dcm")
        shutil.copy(os.path.join(self.server.dataDir, acknowledged), os.path.join(self.server.dataDir, replaced))
        with sqlite3.connect(database) as c:
            c.execute("DELETE FROM PendingFiles")
            c.execute("INSERT INTO PendingFiles (DeviceName, ObjectFile, ReplacedDevice, ReplacedFile) "
                      "VALUES ('MAG0', ?, 'MAG0', ?)", (acknowledged, replaced))
        self.server.start()
        self.assertFalse(os.path.exists(os.path.join(self.server.dataDir, replaced)))
        self.assertTrue(os.path.exists(os.path.join(self.server.dataDir, acknowledged)))
        self.assertEqual(column(database, "DICOMImages", "ObjectFile"), [acknowledged])
        self.assertIn("removed 1 copies replaced just before the server stopped", self.server.log())

    def test_aCleanStopLeavesNothingToCheck(self):
        """After SIGTERM no file is marked pending.  A MAG folder missing at
        the next start (a volume not mounted) while the index holds objects on
        it stops start-up: they would be checked as lost, and served so."""
        self.server.stop()
        self.server.setIni(MAGDevice0="./mag0/")  # a volume of its own; the index stays in ./data/dbase
        self.server.start()
        mag0 = os.path.join(self.server.workdir, "mag0")
        images = generateCorpus(self.mktemp(), patients=1, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=3)
        self.assertEqual(self.server.store(*(i.path for i in images[:2])).returncode, 0)
        self.server.stop()
        database = self.server.database
        self.assertEqual(column(database, "PendingFiles", "ObjectFile"), [])
        self.server.start()
        self.assertEqual(self.server.store(images[2].path).returncode, 0)
        self.server.kill()
        self.assertEqual(len(column(database, "PendingFiles", "ObjectFile")), 1, "the crash left a mark")
        os.rename(mag0, mag0 + ".unmounted")
        result = subprocess.run(self.server.command(), cwd=self.server.workdir, capture_output=True, text=True,
                                timeout=120)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"the folder of MAG0 is missing but the index holds objects on it (or a regen of it was "
                      f"interrupted) ({mag0}",
                      result.stdout + result.stderr + self.server.log())
        self.assertFalse(os.path.exists(mag0), "not made")
        os.rename(mag0 + ".unmounted", mag0)
        self.server.start()
        self.assertIn("Checked the 1 files indexed last before the server stopped: 0 lost", self.server.log())
        self.assertEqual(len(column(database, "DICOMImages", "ObjectFile")), 3)


def writeLargeMultiframe(path, sop, frames=600, rows_=512, columns=512):
    """A Part-10 file of ``frames`` 16-bit frames (600 of 512x512: over 300
    MB) written without holding them in memory; its size."""
    ds = makeDataset("BIG", "Big^Object", "1.2.3.4.5", "1.2.3.4.5.6", sop, 1, 1, rows=rows_, columns=columns)
    ds.NumberOfFrames = frames
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    frameBytes = rows_ * columns * 2
    with open(path, "ab") as f:
        f.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, frames * frameBytes))
        block = os.urandom(frameBytes)
        for _ in range(frames):
            f.write(block)
    return os.path.getsize(path)


def writeLargeCompressed(path, sop, frames=200, rows_=512, columns=512):
    """A JPEG-LS lossless Part-10 file of ``frames`` 16-bit frames (one
    encoded frame repeated: about 16 MB that decode to 100 MB); the pixel
    values of a frame."""
    ds = makeDataset("BIGJLS", "Big^Compressed", "1.2.3.4.6", "1.2.3.4.6.1", sop, 1, 1, rows=rows_, columns=columns)
    y, x = np.mgrid[0:rows_, 0:columns]
    frame = ((x * 7 + y * 3) % 3840 + np.random.default_rng(7).integers(0, 256, (rows_, columns))).astype(np.uint16)
    ds.PixelRepresentation = 0
    ds.compress(JPEGLSLossless, frame, generate_instance_uid=False)
    [encoded] = generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = encapsulate([encoded] * frames)
    ds.NumberOfFrames = frames
    ds.save_as(path, enforce_file_format=True)
    return frame


def _datasetEnd(path):
    """The data set length of a Part-10 file and its last 4 kB."""
    with open(path, "rb") as f:
        length = os.path.getsize(path) - readFileMeta(f)[2]
        f.seek(-4096, 2)
        return length, f.read()


class LargeObjectTests(ServerTestCase):

    def assertBoundedMemory(self, run):
        """``run()`` (a DCMTK tool) succeeds and grows the server's peak RSS
        by less than 64 MB."""
        before = self.server.peakRSSKilobytes()
        result = run()
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        peak = self.server.peakRSSKilobytes()
        self.assertLess(peak - before, 64 * 1024, f"peak RSS grew from {before} kB to {peak} kB")

    def test_300MBMultiframeWithBoundedMemory(self):
        """Received (spooled to disk as it arrives), then fetched by getscu
        and moved to a storescp (read from its file as the socket takes it)."""
        frames = 600
        path = os.path.join(self.mktemp() + ".dcm")
        size = writeLargeMultiframe(path, "1.2.3.4.5.6.7", frames)
        self.assertGreater(size, 300 * 10**6)
        self.assertBoundedMemory(lambda: self.server.store(path, extra=("-R", "-xe")))
        stored = storedFiles(self.server.dataDir)["1.2.3.4.5.6.7"]
        copy = pydicom.dcmread(stored, stop_before_pixels=True)
        self.assertEqual(int(copy.NumberOfFrames), frames)
        self.assertEqual(_datasetEnd(stored), _datasetEnd(path))
        self.assertEqual(column(self.server.database, "DICOMImages", "NumberOfFrames"), [str(frames)])
        study = ("-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={copy.StudyInstanceUID}",
                 "127.0.0.1", self.server.port)
        out = self.mktemp()
        os.makedirs(out)
        self.assertBoundedMemory(lambda: dcmtk("getscu", "-aec", self.server.ae, "-od", out, *study, timeout=600))
        [fetched] = [os.path.join(out, name) for name in os.listdir(out)]
        self.assertEqual(_datasetEnd(fetched), _datasetEnd(path))
        storescp = StorescpServer(self.mktemp(), aet="BIGSCP")
        self.addCleanup(storescp.stop)
        storescp.start()
        self.server.addNode(storescp.aet, storescp.port, compression="as")
        self.assertEqual(self.server.dgate("--read_amap:").returncode, 0)
        self.assertBoundedMemory(lambda: dcmtk("movescu", "-aec", self.server.ae, "-aem", storescp.aet, "-S",
                                               *study, timeout=600))
        [moved] = storescp.files()
        self.assertEqual(_datasetEnd(moved), _datasetEnd(path))


    def test_largeCompressedDecodedWithBoundedMemory(self):
        """A JPEG-LS multi-frame object of 16 MB that decodes to 100 MB,
        fetched by getscu and moved to a storescp that take it only
        uncompressed: converted from its file a frame at a time into a
        temporary file (explicit, then implicit VR), never whole in memory."""
        path = os.path.join(self.mktemp() + ".dcm")
        frame = writeLargeCompressed(path, "1.2.3.4.6.1.1")
        self.assertGreater(os.path.getsize(path), 8 << 20)  # over STREAMED_OBJECT: left in its file
        result = self.server.store(path, extra=("-R", "-xt"))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        study = ("-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3.4.6", "127.0.0.1", self.server.port)
        out = self.mktemp()
        os.makedirs(out)
        self.assertBoundedMemory(lambda: dcmtk("getscu", "-aec", self.server.ae, "-od", out, *study, timeout=600))
        storescp = StorescpServer(self.mktemp(), aet="PLAINSCP", acceptedSyntaxes="implicit")
        self.addCleanup(storescp.stop)
        storescp.start()
        self.server.addNode(storescp.aet, storescp.port)
        self.assertEqual(self.server.dgate("--read_amap:").returncode, 0)
        self.assertBoundedMemory(lambda: dcmtk("movescu", "-aec", self.server.ae, "-aem", storescp.aet, "-S",
                                               *study, timeout=600))
        [fetched] = [os.path.join(out, name) for name in os.listdir(out)]
        [moved] = storescp.files()
        for received, syntax in ((fetched, "1.2.840.10008.1.2.1"), (moved, "1.2.840.10008.1.2")):
            ds = pydicom.dcmread(received)
            self.assertEqual((ds.file_meta.TransferSyntaxUID, int(ds.NumberOfFrames)), (syntax, 200))
            pixels = ds.pixel_array
            self.assertEqual(pixels.shape, (200, 512, 512))
            np.testing.assert_array_equal(pixels[0], frame)
            np.testing.assert_array_equal(pixels[-1], frame)
            del ds, pixels


    def test_largeCompressedStoredUncompressedWithBoundedMemory(self):
        """IncomingCompression = un: the 16 MB JPEG-LS object that decodes
        to 100 MB is stored in explicit VR little endian, converted from its
        spool file a frame at a time."""
        self.server.stop()
        self.server.setIni(IncomingCompression="un")
        self.server.start()
        path = os.path.join(self.mktemp() + ".dcm")
        frame = writeLargeCompressed(path, "1.2.3.4.6.1.3")
        self.assertBoundedMemory(lambda: self.server.store(path, extra=("-R", "-xt")))
        stored = pydicom.dcmread(storedFiles(self.server.dataDir)["1.2.3.4.6.1.3"])
        self.assertEqual((stored.file_meta.TransferSyntaxUID, int(stored.NumberOfFrames)), ("1.2.840.10008.1.2.1", 200))
        pixels = stored.pixel_array
        np.testing.assert_array_equal(pixels[0], frame)
        np.testing.assert_array_equal(pixels[-1], frame)
        self.assertEqual(column(self.server.database, "DICOMImages", "NumberOfFrames"), ["200"])


class LargeImportTests(ServerTestCase):
    """A large object imported from a file, not received over the network."""

    ini = {"WebReadOnly": "0"}

    def assertStoredWithBoundedMemory(self, run, path):
        """``run()`` stores the file ``path`` byte for byte, and the server's
        peak RSS grows by less than 64 MB."""
        before = self.server.peakRSSKilobytes()
        result = run()
        peak = self.server.peakRSSKilobytes()
        self.assertIn("1.2.3.4.5.6.8 stored as", result)
        self.assertLess(peak - before, 64 * 1024, f"peak RSS grew from {before} kB to {peak} kB")
        self.assertEqual(_datasetEnd(storedFiles(self.server.dataDir)["1.2.3.4.5.6.8"]), _datasetEnd(path))

    def test_addimagefileAndUploadWithBoundedMemory(self):
        """A 150 MB multi-frame object given to dgate --addimagefile, then
        uploaded to the web page addlocalfile: copied from its file into
        the spool a chunk at a time (it was read whole)."""
        path = os.path.abspath(self.mktemp() + ".dcm")
        size = writeLargeMultiframe(path, "1.2.3.4.5.6.8", frames=300)
        self.assertGreater(size, 150 * 10**6)

        def addimagefile():
            result = self.server.dgate(f"--addimagefile:{path}")
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            return result.stdout

        def upload():
            def body():
                yield (b"--big\r\nContent-Disposition: form-data; name=\"filetoupload\"; filename=\"big.dcm\"\r\n"
                       b"Content-Type: application/octet-stream\r\n\r\n")
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        yield chunk
                yield b"\r\n--big--\r\n"
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.server.webPort}/cgi-bin/dgate?mode=addlocalfile", data=body(),
                method="POST", headers={"Content-Type": "multipart/form-data; boundary=big"})
            with urllib.request.urlopen(request, timeout=600) as response:
                return response.read().decode()

        self.assertStoredWithBoundedMemory(addimagefile, path)
        self.assertStoredWithBoundedMemory(upload, path)


class SmallDiskTestCase(unittest.TestCase):
    """A server whose MAG0 is a tmpfs of ``size`` (needs root)."""

    size = "4m"
    ini = {}

    def setUp(self):
        self.server = PacsServer(self.mktemp())
        self.mount = os.path.join(self.server.workdir, "smalldisk")
        os.makedirs(self.mount)
        mountTmpfs(self, self.mount, self.size)
        self.server.setIni(MAGDevice0=self.mount + "/", **self.ini)
        self.addCleanup(self.server.stop)
        self.server.start()


class DiskFullTests(SmallDiskTestCase):

    def test_diskFullAnswersA700(self):
        images = generateCorpus(self.mktemp(), 1, 1, 1, 40, rows=256, columns=256)
        result = self.server.store(*[i.path for i in images], extra=("-v",))
        self.assertIn("Received Store Response (Success)", result.stdout + result.stderr)
        self.assertIn("Refused: OutOfResources", result.stdout + result.stderr)
        self.assertIn("status 0xA700", self.server.log())
        self.assertEqual(self.server.echo().returncode, 0)
        indexed = set(column(self.server.database, "DICOMImages", "SOPInstanceUID"))
        self.assertEqual(indexed, set(storedFiles(self.mount)))


class UnmountedDiskTests(SmallDiskTestCase):
    """MAG0's disk unmounted while pacs runs: objects are refused, none
    written on the disk beneath; mounted again (another tmpfs: another
    device number), it takes objects at once."""

    def test_aDiskMountedAgainIsTaken(self):
        images = generateCorpus(self.mktemp(), 1, 1, 1, 3, rows=64, columns=64)
        self.assertIn("(Success)", self.server.store(images[0].path, extra=("-v",)).stderr)
        subprocess.run(["umount", "-l", self.mount], check=True)
        result = self.server.store(images[1].path, extra=("-v",))
        self.assertNotIn("(Success)", result.stdout + result.stderr)
        self.assertIn(f"MAG0 is not there (a disk not mounted?): {self.mount} is no longer a mount point",
                      self.server.log())
        self.assertEqual(storedFiles(self.mount), {})
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", self.mount], check=True)
        result = self.server.store(images[2].path, extra=("-v",))
        self.assertIn("(Success)", result.stdout + result.stderr)
        self.assertEqual(len(storedFiles(self.mount)), 1)


class MagDeviceThresholdTests(SmallDiskTestCase):
    """MAGDeviceThreshold = 2 on a 12 MB MAG device: 14 patients of 1 MB
    each all go in, the oldest being deleted to keep 2 MB free."""

    size = "12m"
    ini = {"MAGDeviceThreshold": "2"}

    def test_oldestPatientsDeletedToKeepSpace(self):
        images = generateCorpus(self.mktemp(), patients=14, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=2, rows=512, columns=512)
        patients = sorted({image.patientID for image in images})
        for patient in patients:
            result = self.server.store(*[i.path for i in images if i.patientID == patient])
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        deadline = time.monotonic() + 30
        while "MB free on MAG0 after the clean-up" not in self.server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = self.server.log()
        self.assertIn("less than 2 MB free on MAG0 (MAGDeviceThreshold)", log)
        self.assertIn(f"MAGDeviceThreshold: deleted patient {patients[0]}: 2 object(s)", log)
        kept = column(self.server.database, "DICOMPatients", "PatientID")
        self.assertIn(patients[-1], kept)
        self.assertNotIn(patients[0], kept)
        self.assertLess(len(kept), len(patients))
        self.assertEqual(set(column(self.server.database, "DICOMImages", "SOPInstanceUID")),
                         set(storedFiles(self.mount)))


class ThresholdAfterAShortCleanUpTests(SmallDiskTestCase):
    """MAGDeviceThreshold = 30 on a 40 MB MAG0: patients X (28 objects of
    0.5 MB), Y (20) and Z (60) sent one after the other.  The clean-up
    while X is written ends short (X is spared); the disk filling as Y and
    Z come runs the next at once, not a minute later: X, then Y, go, and
    every object of Z is stored."""

    size = "40m"
    ini = {"MAGDeviceThreshold": "30"}

    def test_theDiskFillingRunsTheCleanUpAgain(self):
        images = generateCorpus(self.mktemp(), patients=3, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=60, rows=512, columns=512)
        for patient, count in (("PAT0000", 28), ("PAT0001", 20), ("PAT0002", 60)):
            self.server.store(*[i.path for i in images if i.patientID == patient][:count])
        self.assertNotIn("0xA700", self.server.log())
        deadline = time.monotonic() + 30  # the rows of Y go after its files
        while set(stored := column(self.server.database, "DICOMImages", "ImagePat")) != {"PAT0002"} \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(stored, ["PAT0002"] * 60)


class ThresholdWithSpilloverTests(SmallDiskTestCase):
    """MAGDeviceThreshold = 40 above MAGDeviceFullThreshHold = 20, MAG0 a
    60 MB disk spilling over to MAG1: 80 objects of 0.5 MB take MAG0 below
    40 MB free, but MAG1 has room, so nothing is cleaned nor logged."""

    size = "60m"
    ini = {"MAGDeviceThreshold": "40", "MAGDeviceFullThreshHold": "20", "MAGDevices": "2",
           "MAGDevice1": "./data1/"}

    def test_theBandBetweenTheThresholdsLogsNothing(self):
        images = generateCorpus(self.mktemp(), patients=8, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=10, rows=512, columns=512)
        for patient in sorted({image.patientID for image in images}):
            self.server.store(*[i.path for i in images if i.patientID == patient])
        self.assertLess(shutil.disk_usage(self.mount).free, 40 * 1024 * 1024)
        self.assertEqual(len(column(self.server.database, "DICOMImages", "SOPInstanceUID")), 80)
        self.assertNotIn("MAGDeviceThreshold", self.server.log())


class PatientIDFixTests(ServerTestCase):
    """FixPhilips and FixKodak: leading zeros stripped from incoming Patient
    IDs, in the stored file, its name and the index."""

    ini = {"FixPhilips": "1", "FixKodak": "1"}

    def test_leadingZerosStripped(self):
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        fixes = {"0001234567": "1234567", "0012345678": "12345678", "07654321": "7654321",
                 "00012345": "00012345", "PAT1": "PAT1"}
        expected, paths = {}, []
        for n, patientID in enumerate(fixes):
            ds = makeDataset(patientID, f"Fix^{n}", generate_uid(), generate_uid(), generate_uid(), 1, 1)
            paths.append(os.path.join(folder, f"{n}.dcm"))
            ds.save_as(paths[-1], enforce_file_format=True)
            expected[ds.SOPInstanceUID] = fixes[patientID]
        result = self.server.store(*paths)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        stored = storedFiles(self.server.dataDir)
        self.assertEqual({uid: pydicom.dcmread(stored[uid]).PatientID for uid in expected}, expected)
        self.assertEqual({uid: os.path.relpath(stored[uid], self.server.dataDir).split(os.sep)[0]
                          for uid in expected}, expected)  # FileNameSyntax 4: <PatientID>/...
        self.assertEqual(column(self.server.database, "DICOMPatients", "PatientID"), sorted(fixes.values()))
        self.assertEqual(column(self.server.database, "DICOMImages", "ImagePat"), sorted(fixes.values()))
        self.assertIn("Patient ID 07654321 fixed to 7654321", self.server.log())


class SequenceFileNameTests(ServerTestCase):
    """A FileNameSyntax whose %V reads into sequences (manual 7.2: "for the
    syntax of the %v option (e.g., to read items in a sequence), see
    ImportConverters"), for an object held in memory and one spooled to disk."""

    ini = {"FileNameSyntax": r"%V\0008,1111\0008,1155\%V*0018,1030\%V/0008,1111.1/0008,1150[0,5]\%sopuid.dcm"}

    def test_namedFromSequenceItems(self):
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        expected, paths = {}, []
        for n, size in enumerate((64, 1600)):  # 1600x1600x16 bit: 5 MB, spooled to disk
            ds = makeDataset("SEQ", "Seq^Name", "1.2.3.7", "1.2.3.7.1", generate_uid(), 1, n + 1,
                             rows=size, columns=size)
            ds.ReferencedPerformedProcedureStepSequence = [pydicom.Dataset(), pydicom.Dataset()]
            for item, uid in zip(ds.ReferencedPerformedProcedureStepSequence, (f"1.2.{n}", "1.3.4.5.6")):
                item.ReferencedSOPInstanceUID = uid
                item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"
            ds.RequestAttributesSequence = [pydicom.Dataset()]
            ds.RequestAttributesSequence[0].ProtocolName = f"Chest {n}"
            paths.append(os.path.join(folder, f"{n}.dcm"))
            ds.save_as(paths[-1], enforce_file_format=True)
            expected[ds.SOPInstanceUID] = f"1_2_{n}/Chest_{n}/1_2_84/{ds.SOPInstanceUID}.dcm"
        result = self.server.store(*paths)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        stored = storedFiles(self.server.dataDir)
        self.assertEqual({uid: os.path.relpath(stored[uid], self.server.dataDir) for uid in expected}, expected)
        self.assertEqual(column(self.server.database, "DICOMImages", "ObjectFile"), sorted(expected.values()))


class DeletedIndexTests(ServerTestCase):
    """The SQLite index deleted under the running server (with its -wal and
    -shm): stores went on getting Success into the deleted file, nothing
    logged, and after a restart the index lacked them.  Now they fail, with
    one log line."""

    def test_storesFailOnceTheIndexFileIsDeleted(self):
        first, second, third = generateCorpus(self.mktemp(), 1, 1, 1, 3)
        self.assertEqual(self.server.store(first.path).returncode, 0)
        for suffix in ("", "-wal", "-shm"):
            os.unlink(self.server.database + suffix)
        for image in (second, third):
            result = self.server.store(image.path, extra=("-v",))
            self.assertIn("Received Store Response (Unknown Status: 0x110)", result.stdout + result.stderr)
        log = self.server.log()
        self.assertEqual(log.count("was deleted or replaced while pacs runs: stores fail until pacs is restarted"),
                         1, log)
        self.assertEqual(self.server.echo().returncode, 0)


class InterruptedDeleteTests(unittest.TestCase):
    """A server killed while a delete had removed the file of an object X
    (its PacsDeletes entry written, its row still there), after storescu
    stored, and had acknowledged, an object under the freed name: the
    restart keeps it, row and file (it removed both)."""

    def killedAfterAStoreUnderAFreedName(self, fileNameSyntax, sameObject):
        """The SOP Instance UID of the object stored under X's name, and the
        log of the restarted server, after checking the object is there."""
        server = PacsServer(self.mktemp(), ini={"FileNameSyntax": fileNameSyntax})
        self.addCleanup(server.stop)
        server.start()
        folder = self.mktemp()
        images = generateCorpus(folder, patients=1, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=2)
        self.assertEqual(server.store(*(image.path for image in images)).returncode, 0)
        x = images[0]
        with closing(sqlite3.connect(server.database)) as outside, outside:  # as LocalActions.removeInstances
            outside.execute("INSERT INTO PacsDeletes SELECT SOPInstanceUID, SOPClassUID, DeviceName, ObjectFile, "
                            "'', '', '', '' FROM DICOMImages WHERE SOPInstanceUID = ?", (x.sopUID,))
            [name] = outside.execute("SELECT ObjectFile FROM DICOMImages WHERE SOPInstanceUID = ?", (x.sopUID,))
        path = os.path.join(server.dataDir, *name[0].split("/"))
        os.unlink(path)
        stored = pydicom.dcmread(x.path)
        if not sameObject:
            stored.SOPInstanceUID = stored.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        again = os.path.join(folder, "again.dcm")
        stored.save_as(again, enforce_file_format=True)
        self.assertEqual(server.store(again).returncode, 0)
        server.kill()
        server.start()
        self.assertEqual(pydicom.dcmread(path).SOPInstanceUID, stored.SOPInstanceUID)
        self.assertIn(stored.SOPInstanceUID, column(server.database, "DICOMImages", "SOPInstanceUID"))
        self.assertNotIn("never acknowledged", server.log())
        return server

    def test_theObjectStoredAgainUnderItsName(self):
        """FileNameSyntax 8 (%id\\%studyuid\\%seriesuid\\%sopuid.dcm): X stored again."""
        server = self.killedAfterAStoreUnderAFreedName("8", sameObject=True)
        self.assertEqual(len(column(server.database, "DICOMImages", "SOPInstanceUID")), 2)

    def test_anotherObjectGivenTheFreedName(self):
        """A FileNameSyntax without %sopuid: another SOP instance; X's row goes."""
        server = self.killedAfterAStoreUnderAFreedName("%id\\%series_%imagenum.dcm", sameObject=False)
        self.assertEqual(len(column(server.database, "DICOMImages", "SOPInstanceUID")), 2)
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 1 object(s) removed",
                      server.log())


class OutsideDeleteTests(ServerTestCase):
    """Rows deleted behind the server's back (sqlite3 here; another pacs
    sharing the database file, dgate --deletepatient: on it): the next
    image of each patient the server had cached inserts its patient, study
    and series rows again; the second patient's image was indexed without
    them, so that no query found it."""

    def test_parentsOfEveryPatientInsertedAgain(self):
        images = generateCorpus(self.mktemp(), patients=2, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=2)
        first, second = images[0::2], images[1::2]
        self.assertEqual(self.server.store(*(image.path for image in first)).returncode, 0)
        with closing(sqlite3.connect(self.server.database)) as outside, outside:
            for table in ("DICOMImages", "DICOMSeries", "DICOMStudies", "DICOMPatients"):
                outside.execute(f"DELETE FROM {table}")
        for image in second:
            self.assertEqual(self.server.store(image.path).returncode, 0)
        database = self.server.database
        self.assertEqual(column(database, "DICOMPatients", "PatientID"), sorted(i.patientID for i in second))
        self.assertEqual(column(database, "DICOMStudies", "StudyInstanceUID"), sorted(i.studyUID for i in second))
        self.assertEqual(column(database, "DICOMSeries", "SeriesInstanceUID"), sorted(i.seriesUID for i in second))
        self.assertEqual(column(database, "DICOMImages", "SOPInstanceUID"), sorted(i.sopUID for i in second))
