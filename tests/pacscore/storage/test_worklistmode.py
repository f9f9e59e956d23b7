"""Tests for pacscore.storage.worklistmode: which attributes the worklist
fills in, the character set of the result, and mode 2's refusal."""

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from twisted.trial import unittest

from pacscore.config.dicomsql import DatabaseLayout
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.storage.worklistmode import WorklistAmender, WorklistRefusal, topLevelTags
from pacscore.testing.corpus import makeDataset

ACCESSION, PATIENT_NAME, PATIENT_ID, BIRTH_DATE = 0x00080050, 0x00100010, 0x00100020, 0x00100030
STUDY_UID, MODALITY, MEDICAL_ALERTS, START_DATE = 0x0020000D, 0x00080060, 0x00102000, 0x00400002

ITEM = {ACCESSION: "ACC1", PATIENT_NAME: "Wörklist^Name", PATIENT_ID: "WL1", BIRTH_DATE: "19800101",
        STUDY_UID: "1.2.826.0.1.99", MODALITY: "CT", MEDICAL_ALERTS: "Latex", START_DATE: "20261202"}


class WorklistAmenderTests(unittest.TestCase):

    def setUp(self):
        self.columns = DatabaseLayout.fromFile("etc/dicom.sql").worklist
        self.items = {"ACC1": dict(ITEM)}

    def amender(self, mode):
        return WorklistAmender(mode, self.items.get, self.columns)

    def data(self, syntax=ExplicitVRLittleEndian, accession="ACC1", charset=None, name="Typed^Name"):
        ds = makeDataset("PAT9", name, "1.2.3", "1.2.3.4", "1.2.3.4.5", 1, 1, rows=8, columns=8,
                         charset=charset)
        ds.AccessionNumber = accession
        del ds.file_meta
        return ds, encodeDataset(ds, syntax)

    def test_topLevelTagsExcludeTheSequenceBlock(self):
        tags = topLevelTags(self.columns)
        self.assertIn(PATIENT_NAME, tags)
        self.assertIn(MEDICAL_ALERTS, tags)
        self.assertNotIn(MODALITY, tags)
        self.assertNotIn(START_DATE, tags)

    def test_replacesPresentAndAddsPatientStudyAttributes(self):
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            original, data = self.data(syntax)
            amended = decodeDataset(self.amender(1).amend({ACCESSION: "ACC1"}, data, syntax), syntax)
            self.assertEqual(str(amended.PatientName), "Wörklist^Name")
            self.assertEqual(amended.PatientID, "WL1")
            self.assertEqual(amended.StudyInstanceUID, "1.2.826.0.1.99")
            self.assertEqual(amended.MedicalAlerts, "Latex")
            self.assertEqual(amended.SpecificCharacterSet, "ISO_IR 100")
            self.assertNotIn("ScheduledProcedureStepStartDate", amended)
            self.assertEqual(amended.PixelData, original.PixelData)
            self.assertEqual(amended.SeriesInstanceUID, original.SeriesInstanceUID)

    def test_existingCharacterSetWidenedWhenNeeded(self):
        self.items["ACC1"][PATIENT_NAME] = "山田^太郎"
        _, data = self.data(charset="ISO_IR 100", name="Ödön^Typed")
        amended = decodeDataset(self.amender(1).amend({ACCESSION: "ACC1"}, data, ExplicitVRLittleEndian),
                                ExplicitVRLittleEndian)
        self.assertEqual(amended.SpecificCharacterSet, "ISO_IR 192")
        self.assertEqual(str(amended.PatientName), "山田^太郎")

    def test_characterSetHoldsSequenceAndMultiValuedTexts(self):
        """A Cyrillic image given a Latin-1 name: ISO_IR 100 cannot hold
        its code meanings and other names (they were written as '?')."""
        ds, _ = self.data(charset="ISO_IR 144")
        ds.OtherPatientNames = ["Иванов^Иван", "Петров^Пётр"]
        code = Dataset()
        code.CodeMeaning = "Грудь"
        ds.ProcedureCodeSequence = [code]
        data = encodeDataset(ds, ExplicitVRLittleEndian)
        amended = decodeDataset(self.amender(1).amend({ACCESSION: "ACC1"}, data, ExplicitVRLittleEndian),
                                ExplicitVRLittleEndian)
        self.assertEqual(amended.SpecificCharacterSet, "ISO_IR 192")
        self.assertEqual(str(amended.PatientName), "Wörklist^Name")
        self.assertEqual([str(name) for name in amended.OtherPatientNames], ["Иванов^Иван", "Петров^Пётр"])
        self.assertEqual(amended.ProcedureCodeSequence[0].CodeMeaning, "Грудь")

    def test_nothingToChange(self):
        self.items["ACC1"] = {ACCESSION: "ACC1", MODALITY: "CT"}
        _, data = self.data()
        self.assertIsNone(self.amender(1).amend({ACCESSION: "ACC1"}, data, ExplicitVRLittleEndian))

    def test_unknownAccessionNumber(self):
        _, data = self.data(accession="NOPE")
        self.assertIsNone(self.amender(1).amend({ACCESSION: "NOPE"}, data, ExplicitVRLittleEndian))
        self.assertIsNone(self.amender(1).amend({}, data, ExplicitVRLittleEndian))
        error = self.assertRaises(WorklistRefusal, self.amender(2).amend, {ACCESSION: "NOPE"}, data, ExplicitVRLittleEndian)
        self.assertIn("'NOPE' is not in the worklist", str(error))
