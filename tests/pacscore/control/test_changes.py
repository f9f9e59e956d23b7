"""Tests for pacscore.control.changes: what the commands that change stored
objects do to a data set, with an in-memory UID map."""

from pydicom.dataset import Dataset
from twisted.trial import unittest

from pacscore.control.changes import anonymized, mergedInto, newPatient
from pacscore.converters.uidmap import UIDMap
from pacscore.storage.attributes import DatasetError


def image(patientID="PAT1", study="1.2.3", series="1.2.3.1", sop="1.2.3.1.1"):
    ds = Dataset()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = patientID, "Doe^Jane", "19700101"
    ds.InstitutionName, ds.StudyDescription = "General Hospital", "Chest"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    return ds


class ChangeTests(unittest.TestCase):

    def setUp(self):
        self.uidMap = UIDMap()

    def test_newPatientRenewsTheUIDsConsistently(self):
        first, second = image(), image(sop="1.2.3.1.2")
        for ds in (first, second):
            newPatient(self.uidMap, "NEW")(ds)
        self.assertEqual((first.PatientID, first.PatientName), ("NEW", "Doe^Jane"))
        self.assertEqual(first.StudyInstanceUID, second.StudyInstanceUID)
        self.assertEqual(first.SeriesInstanceUID, second.SeriesInstanceUID)
        self.assertNotEqual(first.SOPInstanceUID, second.SOPInstanceUID)
        self.assertEqual(self.uidMap.oldFor(first.StudyInstanceUID), "1.2.3")

    def test_newPatientNeedsTheUIDs(self):
        ds = image()
        del ds.SeriesInstanceUID
        self.assertRaises(DatasetError, newPatient(self.uidMap, "NEW"), ds)

    def test_anonymizedWithoutScript(self):
        ds = image()
        anonymized(self.uidMap, "ANON")(ds)
        self.assertEqual((ds.PatientID, ds.PatientName, ds.PatientIdentityRemoved), ("ANON", "ANON", "YES"))
        for keyword in ("PatientBirthDate", "InstitutionName"):
            self.assertNotIn(keyword, ds)
        self.assertEqual(ds.StudyDescription, "Chest")
        self.assertEqual(self.uidMap.oldFor(ds.SOPInstanceUID), "1.2.3.1.1")

    def test_mergedIntoAStudyRenewsItsSeriesAndImages(self):
        ds = image(study="1.2.4", series="1.2.4.1", sop="1.2.4.1.1")
        mergedInto(self.uidMap, "StudyInstanceUID", "1.2.3")(ds)
        self.assertEqual(ds.StudyInstanceUID, "1.2.3")
        self.assertEqual(self.uidMap.oldFor(ds.SeriesInstanceUID), "1.2.4.1")
        self.assertEqual(self.uidMap.oldFor(ds.SOPInstanceUID), "1.2.4.1.1")

    def test_mergedIntoASeriesKeepsTheStudy(self):
        ds = image(series="1.2.3.2", sop="1.2.3.2.1")
        mergedInto(self.uidMap, "SeriesInstanceUID", "1.2.3.1")(ds)
        self.assertEqual((ds.StudyInstanceUID, ds.SeriesInstanceUID), ("1.2.3", "1.2.3.1"))
        self.assertEqual(self.uidMap.oldFor(ds.SOPInstanceUID), "1.2.3.2.1")
