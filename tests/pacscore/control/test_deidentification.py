"""Tests for pacscore.control.deidentification: the Basic Application Level
Confidentiality Profile on pydicom's CT_small.dcm and on made-up data sets,
with an in-memory UID map."""

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from twisted.trial import unittest

from pacscore.control.deidentification import basicProfile
from pacscore.converters.uidmap import UIDMap
from pacscore.storage.attributes import DatasetError

CT = get_testdata_file("CT_small.dcm")


class BasicProfileTests(unittest.TestCase):

    def setUp(self):
        self.uidMap = UIDMap(prefix="1.2.826.0.1.3680043.2.135.1")
        self.original = pydicom.dcmread(CT)
        self.ds = pydicom.dcmread(CT)
        basicProfile(self.uidMap)(self.ds)

    def test_identifyingAttributesGo(self):
        for keyword in ("StudyDescription", "SeriesDescription", "PatientAge", "PatientWeight"):
            if keyword in self.original:
                self.assertNotIn(keyword, self.ds, keyword)
        self.assertIn("StudyDescription", self.original)
        self.assertFalse([e for e in self.ds if e.tag.is_private])

    def test_attributesOfAChoiceGetADummy(self):
        """X/Z/D, X/D and Z/D (a Type 1 attribute in some IOD): a dummy value."""
        for keyword in ("InstitutionName", "StationName", "DeviceSerialNumber", "ProtocolName"):
            if keyword in self.original:
                self.assertEqual(self.ds[keyword].value, "ANONYMIZED", keyword)
        self.assertIn("InstitutionName", self.original)
        self.assertEqual(self.ds.ContentDate, "19000101")

    def test_namesDatesAndType2AttributesAreEmpty(self):
        for keyword in ("StudyDate", "StudyTime", "PatientBirthDate", "ReferringPhysicianName",
                        "AccessionNumber", "StudyID", "PatientSex"):
            if keyword in self.original:
                self.assertEqual(self.ds[keyword].value, "", keyword)
        self.assertIn("StudyDate", self.original)
        self.assertNotIn("AcquisitionDate", [e.keyword for e in self.ds if e.value])

    def test_patientPseudonym(self):
        self.assertEqual(self.ds.PatientID, self.ds.PatientName)
        self.assertTrue(self.ds.PatientID.startswith("1.2.826.0.1.3680043.2.135.1."))
        self.assertEqual(self.uidMap.oldFor(self.ds.PatientID), "1CT1")
        self.assertEqual(self.ds.PatientIdentityRemoved, "YES")
        code = self.ds.DeidentificationMethodCodeSequence[0]
        self.assertEqual((code.CodeValue, code.CodingSchemeDesignator), ("113100", "DCM"))
        self.assertEqual(self.ds.LongitudinalTemporalInformationModified, "REMOVED")

    def test_instanceUIDsAreReplacedConsistently(self):
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            self.assertNotEqual(self.ds[keyword].value, self.original[keyword].value, keyword)
            self.assertEqual(self.uidMap.oldFor(self.ds[keyword].value), self.original[keyword].value)
        self.assertEqual(self.ds.SOPClassUID, self.original.SOPClassUID)
        again = pydicom.dcmread(CT)
        again.SOPInstanceUID = "1.2.3.4.5"
        basicProfile(self.uidMap)(again)
        self.assertEqual((again.StudyInstanceUID, again.PatientID), (self.ds.StudyInstanceUID, self.ds.PatientID))
        self.assertNotEqual(again.SOPInstanceUID, self.ds.SOPInstanceUID)

    def test_pixelsKept(self):
        self.assertEqual(self.ds.PixelData, self.original.PixelData)


class MadeUpDatasetTests(unittest.TestCase):

    def setUp(self):
        self.uidMap = UIDMap()

    def test_sequencesCurvesOverlaysAndClassUIDs(self):
        ds = Dataset()
        ds.PatientID = "P1"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.9"
        item.OperatorsName = "Smith^John"
        item.add_new(0x00091010, "LO", "private in an item")
        ds.SourceImageSequence = [item]
        code = Dataset()
        code.CodingSchemeUID = "2.16.840.1.113883.6.96"
        ds.AnatomicRegionSequence = [code]
        ds.RequestAttributesSequence = [Dataset()]
        ds.add_new(0x50000010, "US", 1)
        ds.add_new(0x60003000, "OW", b"\0\0")
        ds.add_new(0x60000010, "US", 8)
        ds.add_new(0x60004000, "LT", "overlay comment")
        ds.ReferencedFrameOfReferenceUID = "1.2.840.10008.1.4"  # a registered UID stays
        basicProfile(self.uidMap)(ds)
        [item] = ds.SourceImageSequence
        self.assertEqual(item.ReferencedSOPClassUID, "1.2.840.10008.5.1.4.1.1.2")
        self.assertEqual(self.uidMap.oldFor(item.ReferencedSOPInstanceUID), "1.2.3.9")
        self.assertEqual(item.OperatorsName, "ANONYMIZED")
        self.assertNotIn(Tag(0x00091010), item)
        self.assertEqual(ds.AnatomicRegionSequence[0].CodingSchemeUID, "2.16.840.1.113883.6.96")
        self.assertNotIn("RequestAttributesSequence", ds)
        for tag in (0x50000010, 0x60003000, 0x60004000):
            self.assertNotIn(Tag(tag), ds)
        self.assertEqual(ds[0x60000010].value, 8)
        self.assertEqual(ds.ReferencedFrameOfReferenceUID, "1.2.840.10008.1.4")

    def test_patientGroupsCommentsAndNestedIDsGo(self):
        """Table E.1-1's X attributes a patient's ID or name hides in."""
        ds = Dataset()
        ds.PatientID = "PID123"
        group = Dataset()
        group.PatientID = "PID123"
        ds.SourcePatientGroupIdentificationSequence = [group]
        ds.IdentifyingComments = "patient Smith^John room 5"
        ds.PatientBirthDateInAlternativeCalendar = "57300101"
        referenced = Dataset()
        referenced.PatientID = "PID123"
        ds.ReferencedImageSequence = [referenced]
        basicProfile(self.uidMap)(ds)
        for keyword in ("SourcePatientGroupIdentificationSequence", "IdentifyingComments",
                        "PatientBirthDateInAlternativeCalendar"):
            self.assertNotIn(keyword, ds)
        self.assertNotIn("PatientID", ds.ReferencedImageSequence[0])
        self.assertNotEqual(ds.PatientID, "PID123")

    def test_burnedInAnnotationIsRefused(self):
        ds = Dataset()
        ds.PatientID, ds.BurnedInAnnotation = "P1", "YES"
        self.assertRaises(DatasetError, basicProfile(self.uidMap), ds)
        self.assertEqual(ds.PatientID, "P1")

    def test_noPatientIDStaysEmpty(self):
        ds = Dataset()
        ds.PatientName = "Doe^Jane"
        basicProfile(self.uidMap)(ds)
        self.assertEqual((ds.PatientID, ds.PatientName), ("", ""))

    def test_everyAttributeOfTheTable(self):
        """What table E.1-1 lists, whatever pacs knew of before (review of
        pacs, de-identification, item 2)."""
        ds = Dataset()
        ds.PatientID = "P1"
        ds.StudyComments = "patient of Dr Who"
        ds.PerformedStationAETitle = ds.ScheduledStationAETitle = "CT_ROOM_5"
        ds.ReasonForVisit = "fell off a ladder"
        ds.PregnancyStatus = 4
        ds.DischargeDiagnosisDescription = "fracture"
        ds.AcquisitionDeviceProcessingDescription = "ward 5"
        ds.CameraOwnerName = "Smith^John"
        ds.add_new(0x22000005, "LT", "BARCODE123")
        ds.add_new(0x40000010, "LT", "arbitrary text")
        ds.ClinicalTrialProtocolEthicsCommitteeApprovalNumber = "ETHICS42"
        issuer = Dataset()
        issuer.LocalNamespaceEntityID = "ISSUERSECRET"
        ds.IssuerOfAccessionNumberSequence = [issuer]
        ds.ProcedureCodeSequence = [Dataset()]
        purpose = Dataset()
        purpose.TextValue = "SECRET TEXT"
        purpose.InstitutionName = "General Hospital"
        source = Dataset()
        source.ReferencedSOPInstanceUID = "1.2.3.9"
        source.PurposeOfReferenceCodeSequence = [purpose]
        ds.SourceImageSequence = [source]
        basicProfile(self.uidMap)(ds)
        for keyword in ("StudyComments", "PerformedStationAETitle", "ScheduledStationAETitle", "ReasonForVisit",
                        "PregnancyStatus", "DischargeDiagnosisDescription", "CameraOwnerName",
                        "ClinicalTrialProtocolEthicsCommitteeApprovalNumber", "IssuerOfAccessionNumberSequence",
                        "ProcedureCodeSequence"):
            self.assertNotIn(keyword, ds)
        self.assertNotIn(Tag(0x40000010), ds)
        self.assertEqual(ds[0x22000005].value, "")  # X/Z
        self.assertEqual(ds.AcquisitionDeviceProcessingDescription, "ANONYMIZED")  # X/D
        [purpose] = ds.SourceImageSequence[0].PurposeOfReferenceCodeSequence
        self.assertEqual((purpose.TextValue, purpose.InstitutionName), ("ANONYMIZED", "ANONYMIZED"))
        self.assertNotIn("SECRET", str(ds))

    def test_type1AttributesKeepADummyAndType2SequencesStay(self):
        """An SR stays valid (review of pacs, de-identification, item 5):
        D and Z/D attributes get a dummy value, X/Z/D sequences their
        items with new UIDs."""
        ds = Dataset()
        ds.PatientID = "P1"
        ds.ContentDate, ds.ContentTime = "20240101", "101010"
        observer = Dataset()
        observer.VerifyingObserverName = "Smith^John"
        observer.VerificationDateTime = "20240101101010"
        ds.VerifyingObserverSequence = [observer]
        step = Dataset()
        step.ReferencedSOPClassUID, step.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.3", "1.2.3.10"
        ds.ReferencedPerformedProcedureStepSequence = [step]
        item = Dataset()
        item.ObservationDateTime = "20240101101010"
        item.ValueType = "TEXT"
        item.TextValue = "Smith said so"
        ds.ContentSequence = [item]
        basicProfile(self.uidMap)(ds)
        self.assertEqual((ds.ContentDate, ds.ContentTime), ("19000101", "000000"))
        [observer] = ds.VerifyingObserverSequence
        self.assertEqual((observer.VerifyingObserverName, observer.VerificationDateTime),
                         ("ANONYMIZED", "19000101000000"))
        [step] = ds.ReferencedPerformedProcedureStepSequence
        self.assertEqual(self.uidMap.oldFor(step.ReferencedSOPInstanceUID), "1.2.3.10")
        [item] = ds.ContentSequence
        self.assertEqual((item.ObservationDateTime, item.TextValue), ("19000101000000", "ANONYMIZED"))
