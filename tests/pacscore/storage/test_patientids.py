"""Tests for pacscore.storage.patientids: Conquest's FixPhilips and FixKodak rules
and the data sets they amend."""

from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.storage.patientids import PatientIDFixer, kodakFixed, philipsFixed
from pacscore.testing.corpus import makeDataset


class RuleTests(unittest.TestCase):

    def test_philips(self):
        self.assertEqual(philipsFixed("0001234567"), "1234567")
        self.assertEqual(philipsFixed("0012345678"), "12345678")
        for kept in ("0000123456", "1234567890", "001234567", "00123456A7", "", "PAT1"):
            self.assertEqual(philipsFixed(kept), kept)

    def test_kodak(self):
        self.assertEqual(kodakFixed("01234567"), "1234567")
        for kept in ("00123456", "12345678", "0123456", "0123456A", "", "PAT1"):
            self.assertEqual(kodakFixed(kept), kept)


class PatientIDFixerTests(unittest.TestCase):

    def data(self, patientID, syntax):
        ds = makeDataset(patientID, "Fix^Me", "1.2.3", "1.2.3.4", "1.2.3.4.5", 1, 1, rows=8, columns=8)
        del ds.file_meta
        return ds, encodeDataset(ds, syntax)

    def test_fromIni(self):
        def fixer(text):
            return PatientIDFixer.fromIni(DicomIni.fromString("[sscscp]\n" + text))
        self.assertIsNone(fixer(""))
        self.assertIsNone(fixer("FixPhilips = 0\nFixKodak = 0\n"))
        self.assertEqual(fixer("FixKodak = 1\n").fixed("01234567"), "1234567")
        self.assertEqual(fixer("FixKodak = 1\n").fixed("0001234567"), "0001234567")
        self.assertEqual(fixer("fixphilips = 1\n").fixed("0001234567"), "1234567")
        self.assertEqual(fixer("fixphilips = 1\n").fixed("01234567"), "01234567")

    def test_amendsOnlyThePatientID(self):
        fixer = PatientIDFixer(philips=True, kodak=True)
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian):
            original, data = self.data("0012345678", syntax)
            amended = decodeDataset(fixer.amend({}, data, syntax), syntax)
            self.assertEqual(amended.PatientID, "12345678")
            original.PatientID = "12345678"
            self.assertEqual(amended, original)

    def test_nothingToFix(self):
        fixer = PatientIDFixer(philips=True, kodak=True)
        for patientID in ("PAT1", "00012345", "1234567"):
            self.assertIsNone(fixer.amend({}, self.data(patientID, ExplicitVRLittleEndian)[1], ExplicitVRLittleEndian))
