"""C-FIND against a running ``twistd -n pacs`` with DCMTK's findscu: the
three models at every level, every matching type, Latin-1 and UTF-8 names,
C-CANCEL; answers compared with ground truth computed from the corpus."""

import io
import json
import os
import socket
import tempfile
import urllib.parse
import urllib.request

import pydicom
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE
from twisted.trial import unittest

from pacscore.dicom import commands, pdu
from pacscore.dicom.models import STUDY_ROOT_FIND
from pacscore.storage.attributes import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN as DEFLATED
from pacscore.testing.corpus import generateCorpus, makeDataset
from tests.interop.qrcorpus import CORPUS, storeCorpus
from tests.interop.server import PacsServer, dcmtk
from tests.interop.test_forwarding import waitFor
from tests.pacscore.dicom.requests import STUDY_FIND, associateRQ, message, readMessages, readPDUs
from tests.pacscore.dicom.test_datasets import deflatedWithZeros
from tests.pacscore.db.test_index import LATIN1_FILE, makeConquestDatabase

PATIENT_ROOT, STUDY_ROOT, PATIENT_STUDY_ONLY = "-P", "-S", "-O"
ALWAYS = {"QueryRetrieveLevel", "RetrieveAETitle"}  # and a Specific Character Set when not ASCII


def findscu(server, model, level, keys, *options, encoding="utf-8", read=pydicom.dcmread):
    """findscu's matches, each file read by ``read`` (as a pydicom dataset
    by default), and its CompletedProcess.

    ``keys`` maps a keyword to a value or None (return only)."""
    with tempfile.TemporaryDirectory() as out:
        args = [model, "-X", "-od", out, "-aec", server.ae, *options, "-k", f"QueryRetrieveLevel={level}"]
        for keyword, value in keys.items():
            args += ["-k", keyword if value is None else f"{keyword}={value}".encode(encoding)]
        result = dcmtk("findscu", *args, "127.0.0.1", server.port)
        matches = [read(os.path.join(out, name))
                   for name in sorted(os.listdir(out)) if name.startswith("rsp")]
    return matches, result


def asBytes(text):
    """A ``-k`` value of ``text`` for an element findscu's dictionary lacks
    (Conquest's 9999 group), which it sends as UN bytes written in hex."""
    return "\\".join(f"{byte:02x}" for byte in text.encode("ascii"))


class FindTests(unittest.TestCase):
    """One server with the Q/R corpus for all the tests of the class."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-find-")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.server.start()
        storeCorpus(cls.server, os.path.join(cls.workdir, "corpus"))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def find(self, model, level, keys, *options, **kw):
        matches, result = findscu(self.server, model, level, keys, *options, **kw)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return matches

    def values(self, matches, keyword):
        return sorted(str(m.get(keyword, "")) for m in matches)

    # -- every model at every level ------------------------------------------

    def test_everyLevelOfEveryModel(self):
        expected = {"PATIENT": ("PatientID", CORPUS.patientIDs()),
                    "STUDY": ("StudyInstanceUID", CORPUS.studyUIDs()),
                    "SERIES": ("SeriesInstanceUID", CORPUS.seriesUIDs()),
                    "IMAGE": ("SOPInstanceUID", CORPUS.sopUIDs())}
        for model, levels in ((PATIENT_ROOT, ("PATIENT", "STUDY", "SERIES", "IMAGE")),
                              (STUDY_ROOT, ("STUDY", "SERIES", "IMAGE")),
                              (PATIENT_STUDY_ONLY, ("PATIENT", "STUDY"))):
            for level in levels:
                keyword, truth = expected[level]
                matches = self.find(model, level, {keyword: None})
                self.assertEqual(self.values(matches, keyword), sorted(truth), (model, level))
                for match in matches:
                    self.assertEqual(match.QueryRetrieveLevel, level)
                    self.assertEqual(match.RetrieveAETitle, self.server.ae)

    def test_deflatedAnswers(self):
        """Answers in Deflated Explicit VR Little Endian (findscu -xd) are
        padded to an even length, as DCMTK asks (PS3.5 A.5): every match
        comes, whatever its deflated length."""
        for level, keyword, truth in (("STUDY", "StudyInstanceUID", CORPUS.studyUIDs()),
                                      ("IMAGE", "SOPInstanceUID", CORPUS.sopUIDs())):
            matches = self.find(PATIENT_ROOT, level, {keyword: None, "PatientName": None, "PatientID": None}, "-xd")
            self.assertEqual(self.values(matches, keyword), sorted(truth), level)

    def test_levelOutsideTheModel(self):
        for model, level, keyword in ((PATIENT_STUDY_ONLY, "SERIES", "SeriesInstanceUID"),
                                      (STUDY_ROOT, "PATIENT", "PatientID")):
            matches, result = findscu(self.server, model, level, {keyword: None}, "-v")
            self.assertEqual(matches, [])
            self.assertIn("Received Final Find Response (Error: DataSetDoesNotMatchSOPClass)", result.stderr)
        self.assertIn("C-FIND refused: Query/Retrieve Level 'PATIENT' is not one of STUDY, SERIES, IMAGE",
                      self.server.log())

    def test_exactlyTheRequestedKeys(self):
        [match] = self.find(PATIENT_ROOT, "STUDY", {"AccessionNumber": "ACC0002", "StudyDate": None,
                                                    "PatientName": None, "ReferencedStudySequence": None})
        self.assertEqual({e.keyword for e in match},
                         ALWAYS | {"AccessionNumber", "StudyDate", "PatientName", "ReferencedStudySequence",
                                   "StudyInstanceUID"})
        study = CORPUS.study("ACC0002")
        self.assertEqual((match.StudyDate, str(match.PatientName), match.StudyInstanceUID),
                         (study.date, "Doe^John", study.uid))

    # -- matching --------------------------------------------------------------

    def test_singleValue(self):
        matches = self.find(PATIENT_ROOT, "PATIENT", {"PatientID": "PAT0001", "PatientName": None,
                                                      "PatientBirthDate": None, "PatientSex": None})
        self.assertEqual([(m.PatientID, str(m.PatientName), m.PatientBirthDate, m.PatientSex) for m in matches],
                         [("PAT0001", "Doe^John", "19600101", "M")])

    def test_wildcards(self):
        for pattern, truth in (("Doe*", ["PAT0001", "PAT0002"]), ("doe^j*", ["PAT0001", "PAT0002"]),
                               ("?oe^Jane", ["PAT0002"]), ("*^J*", ["PAT0001", "PAT0002", "PAT0003"]),
                               ("*", CORPUS.patientIDs()), ("Nobody*", [])):
            matches = self.find(PATIENT_ROOT, "PATIENT", {"PatientName": pattern, "PatientID": None})
            self.assertEqual(self.values(matches, "PatientID"), sorted(truth), pattern)

    def test_dateRanges(self):
        for dates, truth in (("20240101-20241231", ["ACC0002", "ACC0003", "ACC'0006"]),
                             ("20240211-", ["ACC0003", "ACC0005", "ACC'0006"]),
                             ("-20221231", ["ACC0004"]),
                             ("20240210", ["ACC0002"]),
                             ("20220601\\20250101", ["ACC0004", "ACC0005"])):
            matches = self.find(STUDY_ROOT, "STUDY", {"StudyDate": dates, "AccessionNumber": None})
            self.assertEqual(self.values(matches, "AccessionNumber"), sorted(truth), dates)

    def test_timeRanges(self):
        for times, truth in (("120000-", ["ACC0002", "ACC0003", "ACC0005"]),
                             ("-0930", ["ACC0001", "ACC0004", "ACC'0006"]),
                             ("0800-1215", ["ACC0001", "ACC0002", "ACC0004"])):
            matches = self.find(STUDY_ROOT, "STUDY", {"StudyTime": times, "AccessionNumber": None})
            self.assertEqual(self.values(matches, "AccessionNumber"), sorted(truth), times)

    def test_malformedDatesAndTimesRefused(self):
        """A date or time that is no value nor range of them is refused
        with A900 and a log line, as wlmscpfs does, not answered Success
        with matches of a range the request did not ask for."""
        for keyword, value in (("StudyDate", "20040101-20040119-20991231"), ("StudyDate", "2024-02-10"),
                               ("StudyTime", "2500")):
            matches, result = findscu(self.server, STUDY_ROOT, "STUDY", {keyword: value, "AccessionNumber": None},
                                      "-v")
            self.assertEqual(matches, [], value)
            self.assertIn("Received Final Find Response (Error: DataSetDoesNotMatchSOPClass)", result.stderr)
        self.assertIn("C-FIND refused: (0008,0020) must be a date (DA, YYYYMMDD) or a range of them, "
                      "not '2024-02-10'", self.server.log())

    def test_uidList(self):
        series = CORPUS.seriesUIDs()[:3]
        matches = self.find(STUDY_ROOT, "SERIES", {"SeriesInstanceUID": "\\".join(series), "Modality": None})
        self.assertEqual(self.values(matches, "SeriesInstanceUID"), sorted(series))

    def test_imagesOfOneSeries(self):
        series = CORPUS.series[0]
        matches = self.find(STUDY_ROOT, "IMAGE", {"StudyInstanceUID": series.studyUID,
                                                  "SeriesInstanceUID": series.uid, "SOPInstanceUID": None,
                                                  "InstanceNumber": None, "SOPClassUID": None})
        self.assertEqual(self.values(matches, "SOPInstanceUID"), sorted(series.sopUIDs))
        self.assertEqual(self.values(matches, "InstanceNumber"),
                         sorted(str(n) for n in range(1, len(series.sopUIDs) + 1)))

    def test_upperLevelKeysAtImageLevel(self):
        matches = self.find(PATIENT_ROOT, "IMAGE", {"PatientID": "PAT0002", "StudyDate": "20240211",
                                                    "Modality": "MR", "SOPInstanceUID": None})
        self.assertEqual(self.values(matches, "SOPInstanceUID"),
                         sorted(CORPUS.sopUIDs(patientID="PAT0002", modality="MR")))

    def test_quotesAndLiteralWildcardCharacters(self):
        for keys, truth in (({"PatientName": "O'Brien*"}, ["PAT0005"]),
                            ({"PatientName": "*%_"}, ["PAT0005"]),
                            ({"PatientName": "%"}, []),
                            ({"PatientName": "x' OR '1'='1"}, []),
                            ({"PatientID": "PAT000_"}, []),
                            ({"PatientID": "PAT%"}, [])):
            matches = self.find(PATIENT_ROOT, "PATIENT", {**keys, "PatientID": keys.get("PatientID")})
            self.assertEqual(self.values(matches, "PatientID"), truth, keys)
        [match] = self.find(STUDY_ROOT, "STUDY", {"AccessionNumber": "ACC'0006"})
        self.assertEqual(match.AccessionNumber, "ACC'0006")

    # -- character sets ----------------------------------------------------------

    def test_latin1Name(self):
        for options, encoding in ((("-k", "SpecificCharacterSet=ISO_IR 100"), "latin-1"),
                                  (("-k", "SpecificCharacterSet=ISO_IR 192"), "utf-8")):
            [match] = self.find(PATIENT_ROOT, "PATIENT", {"PatientName": "Mü*", "PatientID": None}, *options,
                                encoding=encoding)
            self.assertEqual((match.PatientID, str(match.PatientName)), ("PAT0003", "Müller^Jürgen"))

    def test_utf8Name(self):
        [match] = self.find(PATIENT_ROOT, "PATIENT", {"PatientName": "山田*", "PatientID": None},
                            "-k", "SpecificCharacterSet=ISO_IR 192")
        self.assertEqual((match.PatientID, str(match.PatientName)), ("PAT0004", "山田^太郎"))
        self.assertEqual(match.SpecificCharacterSet, "ISO_IR 192")
        [match] = self.find(STUDY_ROOT, "STUDY", {"AccessionNumber": "ACC0005", "PatientName": None})
        self.assertEqual((str(match.PatientName), match.SpecificCharacterSet), ("山田^太郎", "ISO_IR 192"))

    def test_codeExtensionsOfTheRequest(self):
        """A Japanese request's ISO 2022 code extensions are answered with,
        and so is ISO 2022 IR 87 named alone (given the empty value 1 code
        extensions need): the name as strict ISO 2022 JP, the default
        repertoire back before each delimiter."""
        def readRaw(path):
            match = pydicom.dcmread(path)
            return match, match.get_item("PatientName").value
        for requested in ("\\ISO 2022 IR 87", "ISO 2022 IR 87"):
            [(match, name)] = self.find(PATIENT_ROOT, "PATIENT", {"PatientID": "PAT0004", "PatientName": None},
                                        "-k", f"SpecificCharacterSet={requested}", read=readRaw)
            self.assertEqual(match.SpecificCharacterSet, ["", "ISO 2022 IR 87"], requested)
            self.assertEqual(name.decode("iso2022_jp").rstrip(" "), "山田^太郎", requested)

    def test_nonAsciiAnswersToAnAsciiQuery(self):
        matches = self.find(PATIENT_ROOT, "PATIENT", {"PatientName": None, "PatientID": None})
        names = {m.PatientID: str(m.PatientName) for m in matches}
        self.assertEqual(names, {p.id: p.name for p in CORPUS.patients})

    # -- computed keys -------------------------------------------------------------

    def test_computedKeys(self):
        matches = self.find(PATIENT_ROOT, "PATIENT", {
            "PatientID": "PAT0001", "NumberOfPatientRelatedStudies": None,
            "NumberOfPatientRelatedSeries": None, "NumberOfPatientRelatedInstances": None})
        [match] = matches
        patient = CORPUS.patient("PAT0001")
        self.assertEqual((match.NumberOfPatientRelatedStudies, match.NumberOfPatientRelatedSeries,
                          match.NumberOfPatientRelatedInstances),
                         (len(patient.studies), sum(len(s.series) for s in patient.studies),
                          len(CORPUS.sopUIDs(patientID="PAT0001"))))
        [match] = self.find(STUDY_ROOT, "STUDY", {
            "AccessionNumber": "ACC0003", "ModalitiesInStudy": None, "SOPClassesInStudy": None,
            "NumberOfStudyRelatedSeries": None, "NumberOfStudyRelatedInstances": None})
        study = CORPUS.study("ACC0003")
        self.assertEqual(list(match.ModalitiesInStudy), ["CT", "MR"])
        self.assertEqual(match.SOPClassesInStudy, "1.2.840.10008.5.1.4.1.1.2")
        self.assertEqual((match.NumberOfStudyRelatedSeries, match.NumberOfStudyRelatedInstances),
                         (len(study.series), sum(len(s.sopUIDs) for s in study.series)))
        [match] = self.find(STUDY_ROOT, "SERIES", {"SeriesInstanceUID": CORPUS.series[0].uid,
                                                   "NumberOfSeriesRelatedInstances": None})
        self.assertEqual(match.NumberOfSeriesRelatedInstances, len(CORPUS.series[0].sopUIDs))

    def test_unmatchedKeysAnsweredFF01(self):
        """A key pacs cannot match (no column for it) leaves the matches
        unfiltered and says so: 0xFF01, not 0xFF00 (PS3.4 C.4.1.1.4).
        Timezone Offset From UTC is no such key: it is not matched (PS3.4
        C.2.2.2) and not answered (empty, as the index keeps none)."""
        keys = {"AccessionNumber": "ACC0002", "0032,4000": "no such comment"}  # Study Comments
        matches, result = findscu(self.server, STUDY_ROOT, "STUDY", keys, "-v")
        self.assertEqual([m.AccessionNumber for m in matches], ["ACC0002"])
        self.assertIn("Received Find Response 1 (Pending: WarningUnsupportedOptionalKeys)",
                      result.stdout + result.stderr)
        matches, result = findscu(self.server, STUDY_ROOT, "STUDY", {"AccessionNumber": "ACC0002",
                                                                      "0008,0201": "+0100"}, "-v")
        self.assertNotIn("Warning", result.stdout + result.stderr)
        self.assertEqual([(m.AccessionNumber, "TimezoneOffsetFromUTC" in m) for m in matches], [("ACC0002", False)])
        self.assertIn("keys not matched, answered 0xFF01: (0032,4000)", self.server.log())

    def test_conquestSortLimitAndOffset(self):
        """Conquest's (9999,0C00) sort column, (9999,0C01) limit and (9999,0C02)
        offset: a page of the studies in date order, the attribute sorted by
        answered; the elements are no keys (0xFF00, not 0xFF01 as before) and
        none is answered; a column the level lacks, or a limit that is no
        number, is refused (A900)."""
        dates = sorted(study.date for patient in CORPUS.patients for study in patient.studies)
        page = {"StudyInstanceUID": None, "(9999,0c00)": asBytes("StudyDate"), "(9999,0c01)": asBytes("3"),
                "(9999,0c02)": asBytes("2")}
        matches, result = findscu(self.server, STUDY_ROOT, "STUDY", page, "-v")
        self.assertEqual([m.StudyDate for m in matches], dates[2:5])
        self.assertNotIn("Warning", result.stdout + result.stderr)
        self.assertEqual([tag for m in matches for tag in m.keys() if tag.group == 0x9999], [])
        matches = self.find(STUDY_ROOT, "STUDY", {"StudyDate": None, "(9999,0c00)": asBytes("StudyDate DESC"),
                                                  "(9999,0c01)": asBytes("2")}, "-xi")
        self.assertEqual([m.StudyDate for m in matches], dates[::-1][:2])
        images = self.find(STUDY_ROOT, "IMAGE", {"SeriesInstanceUID": CORPUS.series[0].uid, "InstanceNumber": None,
                                                 "(9999,0c00)": asBytes("ImageNumber DESC")})
        self.assertEqual([str(m.InstanceNumber) for m in images], ["3", "2", "1"])
        self.assertEqual(len(self.find(PATIENT_ROOT, "PATIENT", {"(9999,0c01)": asBytes("2")})), 2)
        for element, value, refusal in (("(9999,0c00)", "Modality", "(9999,0C00) 'Modality': no such column"),
                                        ("(9999,0c01)", "three", "(9999,0C01) 'three' is no number")):
            matches, result = findscu(self.server, STUDY_ROOT, "STUDY", {element: asBytes(value)}, "-v")
            self.assertEqual(matches, [])
            self.assertIn("(Error: DataSetDoesNotMatchSOPClass)", result.stdout + result.stderr)
            self.assertIn(f"C-FIND refused: {refusal}", self.server.log())

    def test_unmatchedPrivateKeyInImplicitVR(self):
        """A private key of no dicom.sql column, with a value (with its
        Private Creator or without), is answered FF01 in Implicit VR, where
        it has no VR, as in Explicit VR."""
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            ae = AE(ae_title="FINDER")
            ae.add_requested_context(STUDY_ROOT_FIND, [syntax])
            association = ae.associate("127.0.0.1", self.server.port, ae_title=self.server.ae)
            self.assertTrue(association.is_established)
            try:
                for tag, creator in ((0x00291010, "ACME"), (0x00091001, None)):
                    identifier = Dataset()
                    identifier.QueryRetrieveLevel = "STUDY"
                    identifier.AccessionNumber = "ACC0002"
                    if creator:
                        identifier.add_new(tag & 0xFFFF0000 | 0x0010, "LO", creator)
                    identifier.add_new(tag, "LO", "nomatch")
                    statuses = [status.Status for status, _ in association.send_c_find(identifier, STUDY_ROOT_FIND)]
                    self.assertEqual(statuses, [0xFF01, 0x0000], (syntax.name, hex(tag)))
            finally:
                association.release()
        self.assertIn("keys not matched, answered 0xFF01: (0009,1001)", self.server.log())

    def test_privateCreatorEchoed(self):
        """A Private Creator in the request comes back with its value, so
        that the private elements of its block have their creator, and is
        no key left unmatched: 0xFF00."""
        for syntax in ("-xe", "-xi"):
            matches, result = findscu(self.server, STUDY_ROOT, "STUDY", {
                "AccessionNumber": "ACC0002", "0009,0010": "GEMS_IDEN_01", "0009,1001": None}, "-v", syntax)
            self.assertIn("Received Find Response 1 (Pending)", result.stdout + result.stderr)
            [match] = matches
            self.assertEqual((match[0x00090010].VR, match[0x00090010].value), ("LO", "GEMS_IDEN_01"))
            self.assertEqual(match[0x00091001].value, "")

    def test_modalitiesInStudyMatching(self):
        matches = self.find(STUDY_ROOT, "STUDY", {"ModalitiesInStudy": "MR", "AccessionNumber": None})
        self.assertEqual(self.values(matches, "AccessionNumber"), ["ACC0002", "ACC0003"])
        matches = self.find(STUDY_ROOT, "STUDY", {"ModalitiesInStudy": "US\\MR", "AccessionNumber": None})
        self.assertEqual(self.values(matches, "AccessionNumber"), ["ACC0002", "ACC0003", "ACC0005"])



class ModalityInASeriesTests(unittest.TestCase):
    """An OT screen capture sent into a CT series (EnableComputedFields = 0,
    the study's modalities as stored): the study is still found by
    ModalitiesInStudy=CT, as in Conquest; it was found only by OT."""

    def test_screenCaptureIntoACTSeries(self):
        server = PacsServer(self.mktemp(), ini={"EnableComputedFields": "0"})
        self.addCleanup(server.stop)
        server.start()
        images = generateCorpus(os.path.join(server.workdir, "corpus"), patients=1, studiesPerPatient=1,
                                seriesPerStudy=1, imagesPerSeries=2, rows=4, columns=4)
        capture = makeDataset(images[0].patientID, "Test^Patient0", images[0].studyUID, images[0].seriesUID,
                              generate_uid(), 1, 3, rows=4, columns=4, modality="OT")
        capture.SOPClassUID = capture.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        capturePath = os.path.join(server.workdir, "capture.dcm")
        capture.save_as(capturePath, enforce_file_format=True)
        self.assertEqual(server.store(*[i.path for i in images]).returncode, 0)
        self.assertEqual(server.store(capturePath).returncode, 0)
        for modality in ("CT", "OT"):
            matches, result = findscu(server, STUDY_ROOT, "STUDY", {"ModalitiesInStudy": modality,
                                                                   "StudyInstanceUID": None})
            self.assertEqual([match.StudyInstanceUID for match in matches], [images[0].studyUID],
                             result.stdout + result.stderr)


class PaddedPatientIDTests(unittest.TestCase):
    """A Patient ID sent with a leading space (LO: padding, PS3.5 6.2) is
    found, and retrieved, by the ID, and answered without the space; it
    was found only by a wildcard."""

    def test_leadingSpace(self):
        server = PacsServer(self.mktemp())
        self.addCleanup(server.stop)
        server.start()
        dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        dataset.PatientID = " LEAD"
        path = os.path.join(server.workdir, "lead.dcm")
        dataset.save_as(path)
        self.assertEqual(server.store(path).returncode, 0)
        for key in ("LEAD", " LEAD"):
            matches, result = findscu(server, STUDY_ROOT, "STUDY", {"PatientID": key, "StudyInstanceUID": None})
            self.assertEqual([(match.PatientID, match.StudyInstanceUID) for match in matches],
                             [("LEAD", dataset.StudyInstanceUID)], result.stdout + result.stderr)
        out = self.mktemp()
        os.makedirs(out)
        result = dcmtk("getscu", "-P", "-aec", server.ae, "-od", out, "-k", "QueryRetrieveLevel=PATIENT",
                       "-k", "PatientID=LEAD", "127.0.0.1", server.port)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual([pydicom.dcmread(os.path.join(out, name)).SOPInstanceUID for name in os.listdir(out)],
                         [dataset.SOPInstanceUID])


class CancelTests(unittest.TestCase):

    def test_cancel(self):
        """findscu --cancel 2: the C-CANCEL after the second match stops the
        other matches of 2000 (enough that they cannot all be on their way
        before the C-CANCEL arrives)."""
        server = PacsServer(self.mktemp())
        self.addCleanup(server.stop)
        server.start()
        images = generateCorpus(os.path.join(server.workdir, "corpus"), patients=1, studiesPerPatient=1,
                                seriesPerStudy=1, imagesPerSeries=2000, rows=4, columns=4)
        self.assertEqual(server.store(*[i.path for i in images]).returncode, 0)
        matches, result = findscu(server, STUDY_ROOT, "IMAGE", {"SOPInstanceUID": None}, "-v",
                                  "--cancel", "2")
        self.assertIn("Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)",
                      result.stderr[-300:])
        self.assertGreaterEqual(len(matches), 2)
        self.assertLess(len(matches), 2000)
        self.assertIn("C-FIND cancelled after", server.log())


class PrefetcherTests(unittest.TestCase):
    """``Prefetcher = 1``: a C-FIND about one patient reads that patient's
    files in the background, logged with how many."""

    def test_aQueryPrefetchesItsPatient(self):
        workdir = tempfile.mkdtemp(prefix="pacs-prefetch-")
        server = PacsServer(os.path.join(workdir, "pacs"), ini={"Prefetcher": "1"})
        server.start()
        self.addCleanup(server.stop)
        storeCorpus(server, os.path.join(workdir, "corpus"))
        patient = CORPUS.patientIDs()[0]
        images = sum(1 for _, ds in CORPUS.datasets() if ds.PatientID == patient)
        matches, result = findscu(server, STUDY_ROOT, "STUDY", {"PatientID": patient, "StudyInstanceUID": None})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(matches)
        waitFor(lambda: f"prefetcher: {images} object(s) of patient {patient} read" in server.log(),
                message="the prefetch")
        findscu(server, STUDY_ROOT, "STUDY", {"PatientID": "*", "StudyInstanceUID": None})
        self.assertEqual(server.log().count("object(s) of patient"), 1)  # no single patient: no prefetch


class ConquestTakeoverTests(unittest.TestCase):
    """A Conquest database of a Russian site, its names in the ISO_IR 144
    bytes they came in: after the takeover they are found, and answered,
    as the files say."""

    def test_namesReadInTheCharacterSetOfTheirFiles(self):
        russian = pydicom.dcmread([f for f in get_charset_files() if f.endswith("chrRuss.dcm")][0])
        server = PacsServer(self.mktemp())
        self.addCleanup(server.stop)
        os.makedirs(os.path.dirname(server.database))
        makeConquestDatabase(server.database, russian.get_item(0x00100010).value.rstrip(b" "))
        path = os.path.join(server.dataDir, os.fsdecode(LATIN1_FILE))
        os.makedirs(os.path.dirname(path))
        russian.save_as(path)
        server.start()
        self.assertIn("(2 read in ISO_IR 144; file names kept as they are on disk)", server.log())
        for charset, encoding in (("ISO_IR 144", "iso8859_5"), ("ISO_IR 192", "utf-8")):
            matches, result = findscu(server, STUDY_ROOT, "STUDY",
                                      {"SpecificCharacterSet": charset, "PatientName": "Люк*", "PatientID": None},
                                      encoding=encoding)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertEqual([(m.PatientID, str(m.PatientName)) for m in matches], [("PAT2", "Люкceмбypг")], charset)


    def test_windowsFileNamesRead(self):
        """A database of Conquest on Windows, its file names written with
        \\: after the takeover its object is served by WADO."""
        server = PacsServer(self.mktemp())
        self.addCleanup(server.stop)
        os.makedirs(os.path.dirname(server.database))
        makeConquestDatabase(server.database, objectFile=b"PAT2\\1.2.3.1.1.v2")
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "PAT2", "1.2.3", "1.2.3.1", "1.2.3.1.1"
        os.makedirs(os.path.join(server.dataDir, "PAT2"))
        ds.save_as(os.path.join(server.dataDir, "PAT2", "1.2.3.1.1.v2"))
        server.start()
        self.assertIn("rewritten with /", server.log())
        url = (f"http://127.0.0.1:{server.webPort}/wado?requestType=WADO&studyUID=1.2.3&seriesUID=1.2.3.1"
               "&objectUID=1.2.3.1.1&contentType=application/dicom")
        with urllib.request.urlopen(url, timeout=30) as answer:
            served = pydicom.dcmread(io.BytesIO(answer.read()))
        self.assertEqual(served.SOPInstanceUID, "1.2.3.1.1")


class NameTestCase(unittest.TestCase):
    """A server of its own for each test, objects stored by patient name,
    found by C-FIND and QIDO-RS."""

    def setUp(self):
        self.server = PacsServer(self.mktemp())
        self.addCleanup(self.server.stop)
        self.server.start()

    def store(self, patientID, name):
        ds = pydicom.dcmread([f for f in get_charset_files() if f.endswith("chrH31.dcm")][0])
        ds.SpecificCharacterSet, ds.PatientID, ds.PatientName = "ISO_IR 192", patientID, name
        ds.StudyInstanceUID = ds.SeriesInstanceUID = ds.SOPInstanceUID = generate_uid()
        path = os.path.join(self.mktemp() + ".dcm")
        ds.save_as(path)
        self.assertEqual(self.server.store(path).returncode, 0)

    def assertFound(self, name, patientID, answered):
        """C-FIND and QIDO-RS by ``name`` find ``patientID`` alone, C-FIND
        answering the name ``answered``."""
        matches, result = findscu(self.server, STUDY_ROOT, "STUDY", {"SpecificCharacterSet": "ISO_IR 192",
                                                                     "PatientName": name, "PatientID": None})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual([(m.PatientID, str(m.PatientName)) for m in matches], [(patientID, answered)], name)
        url = (f"http://127.0.0.1:{self.server.webPort}/dicom-web/studies?"
               + urllib.parse.urlencode({"PatientName": name}))
        with urllib.request.urlopen(url, timeout=30) as answer:
            found = json.load(answer)
        self.assertEqual([match["00100020"]["Value"] for match in found], [[patientID]], name)


class LongNameTests(NameTestCase):
    """A person name of three groups, 70 characters (PN allows 64 a
    group), in the 64-character PatientName column: found by its whole
    self by C-FIND and QIDO-RS, answered as the index holds it, cut."""

    NAME = "Kobayashi-Takahashi^Hanako Michiko Yoshi=小林高橋^花子美智子良=こばやしたかはし^はなこみちこよし"

    def test_foundByItsWholeName(self):
        self.store("LONGJP", self.NAME)
        self.assertIn("DICOMPatients.PatientName truncated to 64 characters", self.server.log())
        self.assertFound(self.NAME, "LONGJP", self.NAME[:64])

    def test_foundInAnotherSpellingOrWithAWildcard(self):
        """Stored with empty components, found by the name without them;
        the whole name and a ``*`` after it find the cut name (review of
        the character set fixes, items 1 and 2)."""
        spelled = "A" * 30 + "^^^^=" + "B" * 40
        self.store("CARETS", spelled)
        self.store("CCC", "C" * 70)
        self.assertFound("A" * 30 + "=" + "B" * 40, "CARETS", spelled[:64])
        self.assertFound("C" * 70 + "*", "CCC", "C" * 64)


class DottedCapitalITests(NameTestCase):
    """İ's lower case is i on SQLite as on PostgreSQL and MariaDB: İLHAN^AYŞE
    found by ilhan^ayşe, Ilhan^Ayşe and an ASCII ilhan* (review dbparity, item 2)."""

    def test_foundInLowerCase(self):
        self.store("P015", "İLHAN^AYŞE")
        for name in ("ilhan^ayşe", "Ilhan^Ayşe", "ilhan*", "ILHAN*", "İlhan*"):
            self.assertFound(name, "P015", "İLHAN^AYŞE")


class DeflateBombTests(unittest.TestCase):
    """A C-FIND identifier in Deflated Explicit VR Little Endian that
    inflates to 400 MB (0.4 MB sent, no known AE needed) is refused with
    C000 and a log line once 16 MB are inflated: the server's memory does
    not grow by the rest."""

    def setUp(self):
        self.server = PacsServer(self.mktemp())
        self.server.start()
        self.addCleanup(self.server.stop)

    def test_refusedWithinTheLimit(self):
        identifier = deflatedWithZeros(400 << 20)
        before = self.server.peakRSSKilobytes()
        find = {commands.COMMAND_FIELD: commands.C_FIND_RQ, commands.MESSAGE_ID: 1, commands.PRIORITY: 0,
                commands.AFFECTED_SOP_CLASS_UID: STUDY_FIND}
        response = sendOneMessage(self.server, STUDY_FIND, DEFLATED, find, identifier, timeout=30)
        self.assertEqual(response[commands.STATUS], 0xC000)
        self.assertLess(self.server.peakRSSKilobytes() - before, 100 << 10)
        refused = "C-FIND refused: undecodable data set: the deflated data set inflates to more than 16 MB"
        waitFor(lambda: refused in self.server.log())


def sendOneMessage(server, sopClass, syntax, command, dataset, timeout):
    """The response command to ``command`` with ``dataset`` (bytes in
    ``syntax``), sent by hand on an association with the PacsServer
    ``server`` (as BOMB) proposing only ``sopClass`` in ``syntax``."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(associateRQ([(sopClass, [syntax])], called=server.ae, calling="BOMB"))
        [(pduType, _)] = readPDUs(receivePDUs(s, 1))
        if pduType != pdu.A_ASSOCIATE_AC:
            raise AssertionError(f"association answered with PDU type {pduType}")
        s.sendall(message(1, command, dataset))
        [(_, response, _)] = readMessages(receivePDUs(s, 1))
    return response


def receivePDUs(s, count):
    """The bytes of the next ``count`` PDUs from the socket ``s``."""
    data = b""
    for _ in range(count):
        header = _receive(s, 6)
        data += header + _receive(s, int.from_bytes(header[2:], "big"))
    return data


def _receive(s, size):
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            raise AssertionError("connection closed")
        data += chunk
    return data
