"""The data and database control commands through the real ``dgate``
against a running ``twistd -n pacs`` holding a small corpus stored with
DCMTK's storescu: deletes checked with DCMTK's findscu and on disk, a
move to DCMTK's storescp, regen after losing the database file, query,
the finders, loadhl7, addimagefile and initializetables."""

import json
import os
import subprocess

import pydicom
from pydicom.uid import generate_uid

from pacscore.testing.corpus import makeDataset
from pacscore.testing.orders import orderMessage, writeMessages
from tests.interop.peers import StorescpServer
from tests.interop.server import BIN, dcmtk
from tests.interop.storedcorpus import StoredCorpusTestCase
from tests.interop.test_find import PATIENT_ROOT, STUDY_ROOT, findscu
from tests.interop.test_web import httpGet
from tests.interop.test_worklist import worklistFind

DESTINATION = "DATADEST"  # no wildcard entry of the default acrnema.map (V*, S*) matches it
TABLES = ("DICOMPatients", "DICOMStudies", "DICOMSeries", "DICOMImages")


class _IndexedCorpusTestCase(StoredCorpusTestCase):

    def counts(self):
        """Rows of the four image tables, in one query."""
        fields = ",".join(["count(*)"] + [f"(SELECT count(*) FROM {table})" for table in TABLES[1:]])
        return [int(value) for value in self.dgate(f"--query:{TABLES[0]}|{fields}||")[0].split("\t")]

    def storedFiles(self, patientID, seriesUID):
        """Absolute paths of a series' files, from imagelister (``%s``: as Conquest's)."""
        paths = self.dgate(f"--imagelister:|{patientID}|{seriesUID}|%s|")
        self.assertTrue(all(path.startswith(os.path.join(self.server.dataDir, "")) for path in paths), paths)
        return paths


class LuaDeleteTests(_IndexedCorpusTestCase):
    """Lua's dicomdelete (LuaAllowUnsafe = 1) through ``dgate --lua:``."""

    def prepare(self):
        self.server.setIni(LuaAllowUnsafe="1")

    def dicomdelete(self, **keys):
        query = "; ".join(f"q.{name} = '{value}'" for name, value in keys.items())
        return self.dgate(f"--lua:local q = newdicomobject(); {query}; print(select(2, dicomdelete(q)))")

    def test_dicomdeleteRemovesOnlyWhatAllItsKeysSelect(self):
        """As Conquest's RemoveFromPACS: the images every key of the query
        matches, here one image, and none of a CT patient for Modality MR."""
        image = self.images[0]
        self.assertEqual(self.dicomdelete(PatientID=image.patientID, Modality="MR"),
                         ["dicomdelete: no stored object matches the query"])
        self.assertEqual(self.dicomdelete(PatientID=image.patientID, DeviceSerialNumber="1"),
                         ["dicomdelete: the index holds no (0018,1000): the query would select more"])
        self.assertEqual(self.counts(), [2, 4, 4, 8])
        files = self.storedFiles(image.patientID, image.seriesUID)
        self.dicomdelete(PatientID=image.patientID, SOPInstanceUID=image.sopUID)
        self.assertEqual(self.counts(), [2, 4, 4, 7])
        self.assertEqual(sorted(map(os.path.exists, files)), [False, True])
        self.dicomdelete(PatientID=image.patientID, SeriesInstanceUID=image.seriesUID, Modality="CT")
        self.assertEqual(self.counts(), [2, 3, 3, 6])


class ControlDataTests(_IndexedCorpusTestCase):

    def prepare(self):
        self.storescp = StorescpServer(os.path.join(self.workdir, "storescp"), aet=DESTINATION)
        self.server.addNode(DESTINATION, self.storescp.port)

    def test_deletestudyAndDeletepatient(self):
        image = self.images[0]
        files = self.storedFiles(image.patientID, image.seriesUID)
        self.assertEqual(len(files), 2)
        self.assertTrue(all(os.path.exists(path) for path in files))
        self.assertEqual(self.dgate(f"--deletestudy:{image.patientID}:{image.studyUID}"),
                         ["2 object(s) removed from the server"])
        matches, _ = findscu(self.server, STUDY_ROOT, "STUDY", {"StudyInstanceUID": image.studyUID})
        self.assertEqual(matches, [])
        self.assertFalse(any(os.path.exists(path) for path in files))
        self.assertEqual(self.counts(), [2, 3, 3, 6])
        failed = self.server.dgate(f"--deletestudy:{image.patientID}:{image.studyUID}")
        self.assertEqual(failed.returncode, 1)
        self.assertEqual(self.dgate("--deletepatient:PAT0001"), ["4 object(s) removed from the server"])
        matches, _ = findscu(self.server, PATIENT_ROOT, "PATIENT", {"PatientID": "PAT0001"})
        self.assertEqual(matches, [])
        self.assertEqual(self.counts(), [1, 1, 1, 2])

    def test_movestudyToStorescp(self):
        self.storescp.start()
        self.addCleanup(self.storescp.stop)
        image = self.images[2]
        self.assertEqual(self.dgate(f"--movestudy:(local),{DESTINATION},{image.patientID}:{image.studyUID}"),
                         [f"2 object(s) sent to {DESTINATION}"])
        received = self.storescp.datasets()
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in received),
                         sorted(i.sopUID for i in self.images if i.studyUID == image.studyUID))
        self.assertIn("Images received=8, sent=2, forwarded=0", self.dgate("--display_status:"))
        unknown = self.server.dgate(f"--movestudy:(local),NOWHERE,{image.studyUID}")
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("NOWHERE", unknown.stdout + unknown.stderr)

    def test_regenAfterLosingTheDatabase(self):
        before = self.counts()
        self.assertEqual(before, [2, 4, 4, 8])
        self.server.stop()
        os.remove(self.server.database)
        self.server.start()
        self.assertEqual(self.counts(), [0, 0, 0, 0])
        result = self.server.dgate("--regen:")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "8 file(s) indexed, 0 failed, 0 duplicate SOP instance(s)")
        self.assertIn("Regen device MAG0", result.stderr)
        self.assertEqual(self.counts(), before)
        matches, _ = findscu(self.server, STUDY_ROOT, "STUDY", {"StudyInstanceUID": None})
        self.assertEqual(len(matches), 4)

    def test_regenOfAFileNamedInLatin1(self):
        """An old Conquest's file whose name holds a Latin-1 byte (not UTF-8)
        is indexed by regen and retrieved with C-GET."""
        folder = os.path.join(os.fsencode(self.server.dataDir), b"M\xfcller")
        os.makedirs(folder)
        ds = pydicom.dcmread(self.images[0].path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(os.fsdecode(os.path.join(folder, b"M\xfcller.dcm")))
        result = self.server.dgate("--regen:")
        self.assertEqual(result.stdout.strip(), "9 file(s) indexed, 0 failed, 0 duplicate SOP instance(s)",
                         result.stderr)
        out = os.path.join(self.workdir, "got")
        os.makedirs(out)
        got = dcmtk("getscu", "-S", "-aec", self.server.ae, "-od", out, "-k", "QueryRetrieveLevel=IMAGE",
                    "-k", f"StudyInstanceUID={ds.StudyInstanceUID}", "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}",
                    "-k", f"SOPInstanceUID={ds.SOPInstanceUID}", "127.0.0.1", self.server.port)
        self.assertEqual(got.returncode, 0, got.stdout + got.stderr)
        [name] = os.listdir(out)
        self.assertEqual(pydicom.dcmread(os.path.join(out, name)).SOPInstanceUID, ds.SOPInstanceUID)
        self.assertNotIn("Traceback", self.server.log())

    def test_commandsOnAFileNamedInLatin1(self):
        """dgate hands a file name that is not UTF-8 (a Latin-1 byte) to the
        server as it is: count_frames, dump_header and addimagefile read the
        file; a finder given such bytes fails saying so. On a Latin-1
        terminal a listing is whole, a Japanese name shown escaped."""
        ds = pydicom.dcmread(self.images[0].path)
        ds.SpecificCharacterSet, ds.PatientName = "ISO_IR 192", "\u5c71\u7530^\u592a\u90ce"
        path = os.fsdecode(os.path.join(os.fsencode(self.workdir), b"M\xfcller.dcm"))
        ds.save_as(path)
        self.assertEqual(self.dgate(f"--count_frames:{path}"), ["1"])
        self.assertIn(ds.SOPInstanceUID, "\n".join(self.dgate(f"--dump_header:{path}")))
        self.assertEqual(len(self.dgate(f"--addimagefile:{path},LATIN1")), 1)
        refused = self.server.dgate(os.fsdecode(b"--patientfinder:|M\xfcller|"))
        self.assertEqual((refused.returncode, refused.stderr),
                         (1, "dgate: an argument holds bytes that are not UTF-8 (\\udcfc): only a file name may\n"))
        listed = subprocess.run([os.path.join(BIN, "dgate"), f"-w{self.server.workdir}", "--patientfinder:|LATIN1|"],
                                capture_output=True, timeout=60, env=dict(os.environ, PYTHONIOENCODING="latin-1"))
        self.assertEqual((listed.returncode, listed.stderr), (0, b""))
        self.assertTrue(listed.stdout.startswith(b"LATIN1\t\\u5c71\\u7530^\\u592a\\u90ce\t"), listed.stdout)

    def test_queryAndFinders(self):
        self.assertEqual(self.dgate("--query:DICOMPatients|PatientID,PatientName||%s=%s"),
                         ["PAT0000=Test^Patient0", "PAT0001=Test^Patient1"])
        self.assertEqual(self.dgate("--query2:DICOMImages|ImagePat||%s|3|"), ["PAT0000"] * 3)
        image = self.images[0]
        self.assertEqual(self.dgate(f"--query:DICOMStudies|PatientID|StudyInsta = '{image.studyUID}'|%s"),
                         [image.patientID])  # Conquest's names cut to TruncateFieldNames characters
        self.assertEqual(self.dgate("--patientfinder:|patient1|%s|"), ["PAT0001"])
        image = self.images[6]
        self.assertEqual(sorted(self.dgate(f"--serieslister:|{image.patientID}|{image.studyUID}|%s|")),
                         [image.seriesUID])
        self.assertEqual(len(self.storedFiles(image.patientID, image.seriesUID)), 2)
        refused = self.server.dgate("--query:DICOMPatients|PatientID|1=1; DELETE FROM DICOMImages|")
        self.assertEqual(refused.returncode, 1)
        self.assertEqual(self.counts(), [2, 4, 4, 8])

    def test_addrecordAndDeleterecord(self):
        """A worklist entry added with addrecord is answered to findscu -W;
        deleterecord takes it away, and image rows (their files stay)."""
        self.assertEqual(self.dgate("--addrecord:DICOMWorkList|AccessionNumber,PatientID,PatientName,Modality"
                                    "|'ACC42','WLPAT','Doe^Jane','MR'"), ["1 record(s) added"])
        [match] = worklistFind(self.server, ["AccessionNumber", "PatientID"])
        self.assertEqual((match.AccessionNumber, match.PatientID), ("ACC42", "WLPAT"))
        self.assertEqual(self.dgate("--deleterecord:DICOMWorkList,AccessionNumber = 'ACC42'"),
                         ["1 record(s) deleted"])
        self.assertEqual(worklistFind(self.server, ["AccessionNumber"]), [])
        image = self.images[0]
        files = self.storedFiles(image.patientID, image.seriesUID)
        self.assertEqual(self.dgate(f"--deleterecord:dicomimages,SOPInstanceUID = '{image.sopUID}'"),
                         ["1 record(s) deleted"])
        self.assertEqual(self.counts(), [2, 4, 4, 7])
        self.assertTrue(all(os.path.exists(path) for path in files))
        for refused in ("--deleterecord:DICOMImages", "--deleterecord:DICOMImages,1=1; DROP TABLE DICOMImages",
                        "--addrecord:NoTable|a|'b'", "--addrecord:DICOMWorkList|PatientID|"):
            self.assertEqual(self.server.dgate(refused).returncode, 1, refused)
        self.assertEqual(self.counts(), [2, 4, 4, 7])

    def test_deletesFromTheDatabaseOnly(self):
        """deleteseriesfromdb, deletestudyfromdb, deletepatientfromdb (-fs, -ft,
        -fp): the rows go, with their emptied parents; the files stay."""
        files = [path for image in self.images[::2] for path in self.storedFiles(image.patientID, image.seriesUID)]
        self.assertEqual(len(files), 8)
        self.assertEqual(self.dgate(f"--deleteseriesfromdb:{self.images[0].seriesUID}"),
                         ["2 object(s) removed from the database"])
        self.assertEqual(self.counts(), [2, 3, 3, 6])
        self.assertEqual(self.dgate(f"--deletestudyfromdb:{self.images[2].studyUID}"),
                         ["2 object(s) removed from the database"])
        self.assertEqual(self.counts(), [1, 2, 2, 4])
        self.assertEqual(self.dgate("--deletepatientfromdb:PAT0001"), ["4 object(s) removed from the database"])
        self.assertEqual(self.counts(), [0, 0, 0, 0])
        self.assertTrue(all(os.path.exists(path) for path in files))
        self.assertEqual(self.server.dgate("-fpPAT0001").returncode, 1)

    def test_addimagefileWithANewPatientID(self):
        """A copy under another patient ID gets new UIDs (Conquest's
        ModifyPATIDofDDO): the original stays."""
        image = self.images[0]
        self.assertEqual(len(self.dgate(f"--addimagefile:{image.path},NEWPAT")), 1)
        matches, _ = findscu(self.server, PATIENT_ROOT, "IMAGE",
                             {"PatientID": "NEWPAT", "StudyInstanceUID": None, "SeriesInstanceUID": None,
                              "SOPInstanceUID": None})
        self.assertEqual(len(matches), 1)
        self.assertEqual(self.dgate(f"--changeuidback:{matches[0].SOPInstanceUID}"), [image.sopUID])
        self.assertEqual(self.dgate(f"--changeuidback:{matches[0].StudyInstanceUID}"), [image.studyUID])
        self.assertEqual(self.counts(), [3, 5, 5, 9])

    def test_addimagefileOfAFolderWithAFailure(self):
        """dgate --addimagefile: of a folder in which a DICOM object is
        refused (a bad SOP Instance UID): a line each on stdout, the one
        that failed too, the others stored, and only the summary on stderr,
        exit 1."""
        folder = os.path.join(self.workdir, "cd")
        os.mkdir(folder)
        good = makeDataset("CDPAT", "Cd^Patient", generate_uid(), generate_uid(), generate_uid(), 1, 1)
        good.save_as(os.path.join(folder, "good.dcm"), enforce_file_format=True)
        bad = makeDataset("CDPAT", "Cd^Patient", generate_uid(), generate_uid(), "1.2.826.0.1.3680043.8.498.12ab", 1, 1)
        bad.save_as(os.path.join(folder, "letters.dcm"), enforce_file_format=True)
        with open(os.path.join(folder, "readme.txt"), "w") as f:
            f.write("Viewer on this CD\n")
        result = self.server.dgate(f"--addimagefile:{folder}")
        self.assertEqual(result.returncode, 1)
        lines = result.stdout.splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(lines[0].startswith(f"failed {folder}/letters.dcm: "), lines)
        self.assertTrue(lines[1].startswith(f"skipped {folder}/readme.txt: "), lines)
        self.assertEqual(result.stderr.strip(), f"dgate: {folder}: 1 stored, 1 skipped, 1 failed")
        self.assertEqual(self.counts()[3], 9)

    def test_loadhl7AndInitializetables2(self):
        path = os.path.join(self.workdir, "orders.hl7")
        writeMessages(path, [orderMessage("MSG1", "ACC1", "P1", "Doe^John"),
                             orderMessage("MSG2", "ACC2", "P2", "Roe^Jane")])
        output = self.dgate(f"--loadhl7:{path}")
        self.assertEqual([line.split()[2] for line in output], ["AA", "AA"])
        self.assertEqual(sorted(self.dgate("--query:DICOMWorkList|AccessionNumber||")), ["ACC1", "ACC2"])
        self.assertEqual(self.dgate("--initializetables:2"), ["Initialized DICOMWorkList"])
        self.assertEqual(self.dgate("--query:DICOMWorkList|AccessionNumber||"), [])
        self.assertEqual(self.counts(), [2, 4, 4, 8])


class WithoutComputedFieldsTests(StoredCorpusTestCase):
    """EnableComputedFields = 0, as a Conquest dicom.ini has it."""

    corpus = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 2, "imagesPerSeries": 2}

    def prepare(self):
        self.server.setIni(EnableComputedFields="0")

    def test_deleteseriesAndTheStudysModalitiesAndCounts(self):
        """A study's MR series deleted (dgate --deleteseries) takes MR out of
        its ModalitiesInStudy, in C-FIND and QIDO-RS, and QIDO-RS answers
        the counts PS3.18 lists all the same."""
        study = self.images[0].studyUID
        mr = makeDataset("PAT0000", "Test^Patient0", study, generate_uid(), generate_uid(), 3, 1, modality="MR")
        path = os.path.join(self.workdir, "mr.dcm")
        mr.save_as(path, enforce_file_format=True)
        self.assertEqual(self.server.store(path).returncode, 0)
        query = {"StudyInstanceUID": None, "ModalitiesInStudy": "MR"}
        self.assertEqual([m.StudyInstanceUID for m in findscu(self.server, STUDY_ROOT, "STUDY", query)[0]], [study])
        self.assertEqual(self.dgate(f"--deleteseries:PAT0000:{mr.SeriesInstanceUID}"),
                         ["1 object(s) removed from the server"])
        self.assertEqual(findscu(self.server, STUDY_ROOT, "STUDY", query)[0], [])
        web = f"http://127.0.0.1:{self.server.webPort}/dicom-web"
        status, _, body = httpGet(f"{web}/studies?ModalitiesInStudy=MR", {"Accept": "application/dicom+json"})
        self.assertEqual((status, json.loads(body or b"[]")), (200, []))
        status, _, body = httpGet(f"{web}/studies", {"Accept": "application/dicom+json"})
        [answer] = json.loads(body)
        self.assertEqual((answer["00080061"]["Value"], answer["00201206"]["Value"], answer["00201208"]["Value"]),
                         (["CT"], [2], [4]))
        status, _, body = httpGet(f"{web}/studies/{study}/series", {"Accept": "application/dicom+json"})
        self.assertEqual([series["00201209"]["Value"] for series in json.loads(body)], [[2], [2]])
