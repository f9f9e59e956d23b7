"""Tests for pacscore.control.changes: what the commands that change stored
objects do to a data set, with an in-memory UID map."""

from copy import deepcopy
from types import SimpleNamespace

from pydicom import config, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.valuerep import validate_value
from twisted.trial import unittest

from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN
from pacscore.control import changes, deidentification
from pacscore.control.changes import anonymized, attachedTo, changing, mergedInto, newPatient, referencesRenewed
from pacscore.control.deidentification import basicProfile
from pacscore.converters.context import ConverterServices
from pacscore.converters.elements import walkElements
from pacscore.converters.lua import LuaInlineCommand
from pacscore.converters.registry import CommandRegistry
from pacscore.converters.script import parseScript
from pacscore.interfaces import IConverterCommand
from plugins import pacs_commands_dataset
from pacscore.converters.uidmap import UIDMap
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.storage.attributes import DatasetError


def referencing(ds, *sops):
    """``ds`` referencing the objects ``sops`` in its Referenced Image Sequence."""
    items = []
    for sop in sops:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", sop
        items.append(item)
    ds.ReferencedImageSequence = items
    return ds


def stored(study, series, sop):
    """An indexed instance, as the query gives it."""
    return SimpleNamespace(studyInstanceUID=study, seriesInstanceUID=series, sopInstanceUID=sop)


def image(patientID="PAT1", study="1.2.3", series="1.2.3.1", sop="1.2.3.1.1"):
    ds = Dataset()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = patientID, "Doe^Jane", "19700101"
    ds.InstitutionName, ds.StudyDescription = "General Hospital", "Chest"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    return ds


def _withoutUIDs(ds):
    """The elements of ``ds`` (and of its items) as text, UIDs left out."""
    return [(parent is ds, str(element)) for parent, element in walkElements(ds) if element.VR != "UI"]


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

    def test_newPatientStoredAlreadyKeepsItsAttributes(self):
        patient = image(patientID="PATA")
        patient.PatientName, patient.PatientSex = "Right^Patient", "F"
        misfiled = image(patientID="PATB", study="1.2.4", series="1.2.4.1", sop="1.2.4.1.1")
        misfiled.PatientName, misfiled.PatientBirthDate = "Wrong^Patient", "19990101"
        newPatient(self.uidMap, "PATA", patient)(misfiled)
        self.assertEqual((misfiled.PatientID, misfiled.PatientName, misfiled.PatientSex, misfiled.PatientBirthDate),
                         ("PATA", "Right^Patient", "F", "19700101"))
        self.assertEqual((misfiled.StudyDescription, misfiled.InstitutionName), ("Chest", "General Hospital"))

    def test_newPatientRenewsReferencesWithinTheStudy(self):
        localizer = image(series="1.2.3.1", sop="1.2.3.1.1")
        axial = referencing(image(series="1.2.3.2", sop="1.2.3.2.1"), "1.2.3.1.1", "9.9.9")
        changed = changing([stored("1.2.3", "1.2.3.1", "1.2.3.1.1"), stored("1.2.3", "1.2.3.2", "1.2.3.2.1")])
        for ds in (axial, localizer):  # the referencing object first
            newPatient(self.uidMap, "NEW", None, changed)(ds)
        references = [item.ReferencedSOPInstanceUID for item in axial.ReferencedImageSequence]
        self.assertEqual(references, [localizer.SOPInstanceUID, "9.9.9"])  # an object outside stays
        self.assertNotEqual(localizer.SOPInstanceUID, "1.2.3.1.1")

    def test_referencesToObjectsChangedBeforeAreRenewed(self):
        localizer = image(sop="1.2.3.1.1")
        axial = referencing(image(series="1.2.3.2", sop="1.2.3.2.1"), "1.2.3.1.1")
        for ds in (localizer, axial):
            newPatient(self.uidMap, "NEW")(ds)
        self.assertEqual(axial.ReferencedImageSequence[0].ReferencedSOPInstanceUID, localizer.SOPInstanceUID)
        other = referencing(image(series="1.2.3.2", sop="1.2.3.2.2"), "1.2.3.1.1")
        newPatient(self.uidMap, "OTHER")(other)  # made for another patient: not that one
        self.assertEqual(other.ReferencedImageSequence[0].ReferencedSOPInstanceUID, "1.2.3.1.1")

    def test_newPatientNeedsTheUIDs(self):
        ds = image()
        del ds.SeriesInstanceUID
        self.assertRaises(DatasetError, newPatient(self.uidMap, "NEW"), ds)

    def test_theValuesWrittenFitTheirVR(self):
        """The De-identification Method and Code pacs writes fit LO and SH
        (it wrote a method of 66 characters, over LO's 64)."""
        code = deidentification.METHOD_CODE
        for vr, value in (("LO", changes.METHOD), ("LO", deidentification.METHOD), ("SH", code[0]),
                          ("SH", code[1]), ("LO", code[2])):
            validate_value(vr, value, config.RAISE)

    def test_anonymizedWithoutScript(self):
        ds = image()
        anonymized(self.uidMap, "ANON")(ds)
        self.assertEqual((ds.PatientID, ds.PatientName, ds.PatientIdentityRemoved), ("ANON", "ANON", "YES"))
        self.assertEqual((ds.PatientBirthDate, ds.InstitutionName), ("", "ANONYMIZED"))  # Z, X/Z/D
        self.assertNotIn("StudyDescription", ds)  # X
        self.assertEqual(self.uidMap.oldFor(ds.SOPInstanceUID), "1.2.3.1.1")

    def test_anonymizedLeavesNoIdentifierAndKeepsReferences(self):
        """Without a script: nested IDs, issuers, comments, private
        attributes and the Accession Number go, the method is said, and
        every instance UID is new, the same for a reference as for the
        object it names (B names A)."""
        a, b = image(sop="1.2.3.1.1"), image(sop="1.2.3.1.2")
        b.IssuerOfPatientID, b.IdentifyingComments, b.AccessionNumber = "HOSP", "Smith^John room 5", "ACC9"
        b.FrameOfReferenceUID = "1.2.3.99"
        b.add_new(0x00091001, "LO", "SMITH^JOHN")
        group, reference, request = Dataset(), Dataset(), Dataset()
        group.PatientID = "PID123"
        b.SourcePatientGroupIdentificationSequence = [group]
        reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.1.1"
        reference.PatientID = "PID123"
        b.ReferencedImageSequence = [reference]
        request.AccessionNumber = "ACC9"
        b.RequestAttributesSequence = [request]
        for ds in (a, b):
            anonymized(self.uidMap, "ANON")(ds)
        for keyword in ("IssuerOfPatientID", "IdentifyingComments", "SourcePatientGroupIdentificationSequence",
                        "RequestAttributesSequence"):
            self.assertNotIn(keyword, b)
        self.assertEqual((b.AccessionNumber, b.DeidentificationMethod[:15]), ("", "pacs anonymize:"))
        self.assertEqual(len([e for e in b if e.tag.is_private]), 0)
        [item] = b.ReferencedImageSequence
        self.assertNotIn("PatientID", item)
        self.assertEqual(item.ReferencedSOPInstanceUID, a.SOPInstanceUID)
        self.assertEqual(item.ReferencedSOPClassUID, "1.2.840.10008.5.1.4.1.1.2")
        self.assertEqual(self.uidMap.oldFor(b.FrameOfReferenceUID), "1.2.3.99")

    def script(self, text):
        """A converter script of ``text`` and the services it runs with."""
        commands = CommandRegistry([c for c in vars(pacs_commands_dataset).values() if IConverterCommand.providedBy(c)]
                                   + [LuaInlineCommand()])
        return parseScript(text, "ImportConverter0", commands, "import"), ConverterServices(uidMap=self.uidMap)

    def test_anonymizedAppliesWADOsTable(self):
        """Without a script, an SR and an RT plan come out as WADO's
        anonymize=yes gives them but for the method and the patient: no
        observer name, date, description, text value or station name is
        left (review of the de-identification fixes, item 3); a value the
        script set stays."""
        for name in ("test-SR.dcm", "rtplan.dcm"):
            original = dcmread(get_testdata_file(name))
            dgate, wado = deepcopy(original), deepcopy(original)
            anonymized(self.uidMap, "ANON")(dgate)
            basicProfile(UIDMap())(wado)
            for ds in (dgate, wado):
                for keyword in ("PatientID", "PatientName", "DeidentificationMethod",
                                "DeidentificationMethodCodeSequence", "LongitudinalTemporalInformationModified"):
                    ds.pop(keyword, None)
            self.assertEqual(_withoutUIDs(dgate), _withoutUIDs(wado), name)
            self.assertNotEqual(dgate.SOPInstanceUID, original.SOPInstanceUID)
        ds = dcmread(get_testdata_file("rtplan.dcm"))
        script, services = self.script('set 0008,1010 to "STATION9"')
        anonymized(self.uidMap, "ANON", script, services)(ds)
        self.assertEqual((ds.StationName, ds.StudyDate, ds.RTPlanDate), ("STATION9", "", "19000101"))

    def test_anonymizedApartFromWADOsPseudonymousCopies(self):
        """WADO's anonymize=yes and dgate --anonymize never give one
        original the same UIDs under two patient identities; each keeps
        its own: WADO the same for every fetch, dgate the same under
        another Patient ID, so its store is refused (review of the
        de-identification fixes, item 4)."""
        copies = [image() for _ in range(4)]
        basicProfile(self.uidMap)(copies[0])
        anonymized(self.uidMap, "ANONY")(copies[1])
        anonymized(self.uidMap, "ANONZ")(copies[2])
        basicProfile(self.uidMap)(copies[3])
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            wado, dgate, again, wadoAgain = (ds[keyword].value for ds in copies)
            self.assertNotEqual(wado, dgate, keyword)
            self.assertEqual((again, wadoAgain), (dgate, wado), keyword)
            self.assertEqual(self.uidMap.oldFor(wado), self.uidMap.oldFor(dgate))

    def test_anonymizedAfterAScriptsNewUIDsMakesNoUIDNewTwice(self):
        """The shipped anonymize script's ``newuids`` made the UIDs new:
        each stays, so B's reference is A's new UID and changeuidback finds
        the original."""
        a, b = image(sop="1.2.3.1.1"), image(sop="1.2.3.1.2")
        reference = Dataset()
        reference.ReferencedSOPInstanceUID = "1.2.3.1.1"
        b.ReferencedImageSequence = [reference]
        script, services = self.script("newuids")
        for ds in (a, b):
            anonymized(self.uidMap, "ANON", script, services)(ds)
        self.assertEqual(b.ReferencedImageSequence[0].ReferencedSOPInstanceUID, a.SOPInstanceUID)
        self.assertEqual(self.uidMap.oldFor(a.SOPInstanceUID), "1.2.3.1.1")
        self.assertEqual(self.uidMap.oldFor(a.StudyInstanceUID), "1.2.3")

    def test_anonymizedEmptiesType2AttributesAndKeepsWhatTheScriptSet(self):
        """Patient's Birth Date, Referring Physician's Name (Z in table E.1-1,
        Type 2) stay, empty; a value the script gave stays (review of pacs,
        de-identification, item 4)."""
        ds = image()
        ds.ReferringPhysicianName, ds.PatientBirthTime, ds.PerformingPhysicianName = "Who^Doctor", "1010", "Doe^J"
        anonymized(self.uidMap, "ANON")(ds)
        self.assertEqual((ds.PatientBirthDate, ds.ReferringPhysicianName), ("", ""))
        self.assertNotIn("PatientBirthTime", ds)
        self.assertNotIn("PerformingPhysicianName", ds)
        ds = image()
        ds.ReferringPhysicianName, ds.AccessionNumber = "Who^Doctor", "ACC1"
        script, services = self.script('set 0010,0030 to "19700000"; set 0008,0090 to ""; set 0008,0050 to "A1"')
        anonymized(self.uidMap, "ANON", script, services)(ds)
        self.assertEqual((ds.PatientBirthDate, ds.AccessionNumber), ("19700000", "A1"))
        self.assertIn("ReferringPhysicianName", ds)
        self.assertFalse(ds.ReferringPhysicianName)

    def test_anonymizedKeepsWhatTheScriptSetToItsOwnValue(self):
        """An attribute the script assigned stays even when it assigned the
        value it had (a .cq set, Lua's Data.X = Data.X, a birth date already
        YYYY0101); one only read goes by the profile (review of the
        de-identification fixes, item 3)."""
        ds = image()
        ds.StudyDate, ds.StationName = "20240315", "CT1"
        script, services = self.script('set 0008,1030 to "Chest"; lua "Data.StudyDate = Data.StudyDate; '
                                       "Data.PatientBirthDate = '19700101'; local x = Data.StationName\"")
        anonymized(self.uidMap, "ANON", script, services)(ds)
        self.assertEqual((ds.StudyDescription, ds.StudyDate, ds.PatientBirthDate), ("Chest", "20240315", "19700101"))
        self.assertEqual(ds.StationName, "ANONYMIZED")

    def test_anonymizedGivesUIDsOfAnEarlierChangeNewOnes(self):
        """UIDs the UID map knows from a modifypatid (or a merge, changeuid,
        an import newuids) are the identified study's: the anonymized copy
        gets new ones, with a script that made none too (review of pacs,
        de-identification, item 3)."""
        ds = image()
        newPatient(self.uidMap, "NEWPAT2")(ds)
        modified = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        script, services = self.script('set 0008,1030 to "x"')
        for change in (anonymized(self.uidMap, "ANONW"), anonymized(self.uidMap, "ANONX", script, services)):
            copy = image()
            newPatient(self.uidMap, "NEWPAT2")(copy)
            change(copy)
            for old, new in zip(modified, (copy.StudyInstanceUID, copy.SeriesInstanceUID, copy.SOPInstanceUID)):
                self.assertNotEqual(new, old)
                self.assertEqual(self.uidMap.oldFor(new), old)

    def test_mergedIntoAStudyRenewsItsSeriesAndImages(self):
        ds = image(study="1.2.4", series="1.2.4.1", sop="1.2.4.1.1")
        mergedInto(self.uidMap, "StudyInstanceUID", "1.2.3")(ds)
        self.assertEqual(ds.StudyInstanceUID, "1.2.3")
        self.assertEqual(self.uidMap.oldFor(ds.SeriesInstanceUID), "1.2.4.1")
        self.assertEqual(self.uidMap.oldFor(ds.SOPInstanceUID), "1.2.4.1.1")

    def test_mergedIntoAStudyTakesItsStudyAttributes(self):
        kept = image()
        kept.AccessionNumber, kept.StudyID = "ACC-A", "1"
        merged = image(study="1.2.4", series="1.2.4.1", sop="1.2.4.1.1")
        merged.AccessionNumber, merged.StudyID, merged.StudyDescription = "ACC-B", "2", "Head"
        merged.StudyDate = "20200101"
        mergedInto(self.uidMap, "StudyInstanceUID", "1.2.3", kept)(merged)
        self.assertEqual((merged.StudyInstanceUID, merged.AccessionNumber, merged.StudyID, merged.StudyDescription),
                         ("1.2.3", "ACC-A", "1", "Chest"))
        self.assertNotIn("StudyDate", merged)
        self.assertEqual(self.uidMap.oldFor(merged.SeriesInstanceUID), "1.2.4.1")

    def test_mergedIntoASeriesTakesItsSeriesAttributes(self):
        kept = image()
        kept.SeriesNumber, kept.SeriesDescription, kept.Modality = 2, "axial", "CT"
        merged = image(series="1.2.3.2", sop="1.2.3.2.1")
        merged.SeriesNumber, merged.SeriesDescription, merged.Modality = 1, "localizer", "CT"
        merged.AccessionNumber = "ACC-A"
        mergedInto(self.uidMap, "SeriesInstanceUID", "1.2.3.1", kept)(merged)
        self.assertEqual((merged.SeriesInstanceUID, merged.SeriesNumber, merged.SeriesDescription),
                         ("1.2.3.1", 2, "axial"))
        self.assertEqual(merged.AccessionNumber, "ACC-A")

    def test_mergedSeriesAndTheTargetsObjectsReferenceTheNewUIDs(self):
        localizer = referencing(image(series="1.2.3.2", sop="1.2.3.2.1"), "1.2.3.2.2")
        changed = changing([stored("1.2.3", "1.2.3.2", "1.2.3.2.1"), stored("1.2.3", "1.2.3.2", "1.2.3.2.2")],
                           "SOPInstanceUID")
        mergedInto(self.uidMap, "SeriesInstanceUID", "1.2.3.1", None, changed)(localizer)
        self.assertEqual(localizer.ReferencedImageSequence[0].ReferencedSOPInstanceUID,
                         self.uidMap.lookup("1.2.3.2.2"))
        axial = referencing(image(), "1.2.3.2.1", "1.2.3.1.9")
        self.assertTrue(referencesRenewed(self.uidMap, changed)(axial))
        self.assertEqual([item.ReferencedSOPInstanceUID for item in axial.ReferencedImageSequence],
                         [localizer.SOPInstanceUID, "1.2.3.1.9"])
        self.assertFalse(referencesRenewed(self.uidMap, changed)(referencing(image(), "1.2.3.1.9")))

    def test_mergedIntoASeriesKeepsTheStudy(self):
        ds = image(series="1.2.3.2", sop="1.2.3.2.1")
        mergedInto(self.uidMap, "SeriesInstanceUID", "1.2.3.1")(ds)
        self.assertEqual((ds.StudyInstanceUID, ds.SeriesInstanceUID), ("1.2.3", "1.2.3.1"))
        self.assertEqual(self.uidMap.oldFor(ds.SOPInstanceUID), "1.2.3.2.1")


def roundTrip(ds):
    """``ds`` written and read back, as a stored file's data set is."""
    return decodeDataset(encodeDataset(ds, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)


def cyrillicSample():
    sample = image("PAT2", study="1.2.4", series="1.2.4.1", sop="1.2.4.1.1")
    sample.SpecificCharacterSet = "ISO_IR 144"
    sample.PatientName, sample.StudyDescription = "Петров^Пётр", "Грудь"
    sample.OtherPatientIDs = ["Ид1", "ID2"]
    return roundTrip(sample)


class CharacterSetTests(unittest.TestCase):
    """Text the commands put into an object keeps its characters: the
    object's Specific Character Set becomes ISO_IR 192 when it cannot
    hold them (it was kept, and the text written as '?')."""

    def setUp(self):
        self.uidMap = UIDMap()
        self.target = image()
        self.target.SpecificCharacterSet = "ISO_IR 100"
        self.target.SeriesDescription = "Röntgen"
        self.target = roundTrip(self.target)

    def test_attachedToASampleInAnotherCharacterSet(self):
        attachedTo(self.uidMap, cyrillicSample(), "STUDY")(self.target)
        stored = roundTrip(self.target)
        self.assertEqual(stored.SpecificCharacterSet, "ISO_IR 192")
        self.assertEqual((str(stored.PatientName), stored.StudyDescription, stored.SeriesDescription),
                         ("Петров^Пётр", "Грудь", "Röntgen"))
        self.assertEqual(list(stored.OtherPatientIDs), ["Ид1", "ID2"])

    def test_attachedToAnASCIISampleKeepsTheCharacterSet(self):
        sample = roundTrip(image("PAT2", study="1.2.4", series="1.2.4.1", sop="1.2.4.1.1"))
        attachedTo(self.uidMap, sample, "PATIENT")(self.target)
        stored = roundTrip(self.target)
        self.assertEqual((stored.SpecificCharacterSet, stored.PatientID, stored.SeriesDescription),
                         ("ISO_IR 100", "PAT2", "Röntgen"))

    def test_newPatientAndAnonymizedWithAnIDOutsideTheCharacterSet(self):
        for change in (newPatient(self.uidMap, "Ид-7"), anonymized(self.uidMap, "Ид-7")):
            target = roundTrip(self.target)
            change(target)
            stored = roundTrip(target)
            self.assertEqual((stored.SpecificCharacterSet, stored.PatientID), ("ISO_IR 192", "Ид-7"))


class KeptBytesTests(unittest.TestCase):
    """An object whose Study Description and item's Patient Name came in
    Latin-1 though it says ISO_IR 192 keeps their bytes through a change."""

    BAD = b"Ung\xfcltig^Namen"

    def setUp(self):
        self.uidMap = UIDMap()

    def changed(self, change, ds=None):
        ds = ds or image()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.add_new(0x00081030, "LO", self.BAD)
        referencing(ds, "1.2.3.1.9")
        ds.ReferencedImageSequence[0].add_new(0x00081030, "LO", self.BAD)
        decoded = decodeDataset(encodeDataset(ds, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
        change(decoded)
        return encodeDataset(decoded, EXPLICIT_VR_LITTLE_ENDIAN)

    def test_newPatient(self):
        data = self.changed(newPatient(self.uidMap, "NEW"))
        self.assertEqual(data.count(self.BAD), 2)
        self.assertIn(b"NEW", data)

    def test_newPatientWithANonASCIIID(self):
        """A Patient ID that is not ASCII in an object that says ISO_IR 192
        already: its other text stays as it came."""
        data = self.changed(newPatient(self.uidMap, "NÜ"))
        self.assertEqual(data.count(self.BAD), 2)
        self.assertIn("NÜ".encode(), data)

    def test_anonymized(self):
        data = self.changed(anonymized(self.uidMap, "ANON"))
        self.assertEqual(data.count(self.BAD), 0)  # Study Description: X in table E.1-1, in the item too

    def test_mergedIntoAStudy(self):
        data = self.changed(mergedInto(self.uidMap, "StudyInstanceUID", "9.9", image(study="9.9")))
        self.assertEqual(data.count(self.BAD), 1)  # the top level's description is the target's
