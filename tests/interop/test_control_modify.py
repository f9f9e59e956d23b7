"""The commands that change stored objects through the real ``dgate``
against a running ``twistd -n pacs`` holding a corpus stored with DCMTK's
storescu: modifypatid (-fc), copypatid (-fk), anonymize (with a Lua and a
converter-language script), modifyimage, mergestudy/mergestudyfile and
mergeseries/mergeseriesfile, the attach commands; checked with DCMTK's
findscu, on disk and with changeuidback."""

import io
import os
import shutil
from types import SimpleNamespace

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pacscore.config.loader import defaultConfigDir
from pacscore.control.changes import RT_PLAN, RT_STRUCTURE_SET
from pacscore.testing.corpus import makeDataset
from tests.interop.storedcorpus import StoredCorpusTestCase
from tests.interop.test_find import PATIENT_ROOT, STUDY_ROOT, findscu
from tests.interop.test_web import httpGet


class ControlModifyTests(StoredCorpusTestCase):

    # PAT0000: studies of images 0, 1 and 2, 3; PAT0001: 4, 5 and 6, 7; each image a series of its own
    corpus = {"patients": 2, "studiesPerPatient": 2, "seriesPerStudy": 2, "imagesPerSeries": 1}

    def prepare(self):
        self.server.setIni(FixKodak="1")  # amends incoming objects, never what a command rewrote

    def refused(self, *args):
        """The message of a dgate command that must fail."""
        result = self.server.dgate(*args)
        self.assertEqual(result.returncode, 1, f"dgate {args}: {result.stdout}{result.stderr}")
        return result.stderr

    def storedFile(self, image):
        """The absolute path of a corpus image's stored file."""
        names = self.dgate(f"--query:DICOMImages|ObjectFile|SOPInstanceUID = '{image.sopUID}'|%s")
        self.assertEqual(len(names), 1, names)
        return os.path.join(self.server.dataDir, names[0])

    def changedFile(self, line):
        """The file a ``... changed: MAG0:path`` answer names, read."""
        stored = line.rpartition(": ")[2]
        self.assertTrue(stored.startswith("MAG0:"), line)
        return pydicom.dcmread(os.path.join(self.server.dataDir, stored[len("MAG0:"):]))

    def imagesOf(self, **keys):
        matches, _ = findscu(self.server, PATIENT_ROOT, "IMAGE",
                             {"PatientID": None, "StudyInstanceUID": None, "SeriesInstanceUID": None,
                              "SOPInstanceUID": None, **keys})
        return matches

    def test_modifypatidGivesNewUIDs(self):
        image = self.images[0]
        path = self.storedFile(image)
        [line] = self.dgate(f"-fcNEWPAT,{path}")
        changed = self.changedFile(line)
        self.assertEqual(changed.PatientID, "NEWPAT")
        self.assertNotEqual(changed.SOPInstanceUID, image.sopUID)
        self.assertNotEqual(changed.StudyInstanceUID, image.studyUID)
        self.assertEqual(changed.file_meta.MediaStorageSOPInstanceUID, changed.SOPInstanceUID)
        self.assertFalse(os.path.exists(path))
        self.assertEqual([m.SOPInstanceUID for m in self.imagesOf(PatientID="NEWPAT")], [changed.SOPInstanceUID])
        self.assertEqual(self.imagesOf(SOPInstanceUID=image.sopUID), [])
        self.assertEqual(self.dgate(f"--changeuidback:{changed.StudyInstanceUID}"), [image.studyUID])
        # the other image of the study joins the same new study
        second = self.changedFile(self.dgate(f"--modifypatid:NEWPAT,{self.storedFile(self.images[1])}")[0])
        self.assertEqual(second.StudyInstanceUID, changed.StudyInstanceUID)
        self.assertIn("not in the index", self.refused(f"--modifypatid:X,{path}"))
        self.assertIn("no patient ID", self.refused(f"--modifypatid:,{self.storedFile(self.images[2])}"))

    def test_rewritesAreNotAmendedAgain(self):
        """FixKodak changes an incoming Kodak Patient ID, added files' too,
        but not the one modifypatid was told to set."""
        changed = self.changedFile(self.dgate(f"--modifypatid:01234567,{self.storedFile(self.images[0])}")[0])
        self.assertEqual(changed.PatientID, "01234567")
        added = self.dgate(f"--addimagefile:{self.images[1].path},07654321")[0]
        self.assertIn(" stored as 7654321/", added)

    def test_copypatidKeepsTheOriginal(self):
        image = self.images[2]
        path = self.storedFile(image)
        [line] = self.dgate(f"--copypatid:COPY,{path}")
        self.assertIn("copied", line)
        copy = self.changedFile(line)
        self.assertEqual(copy.PatientID, "COPY")
        self.assertTrue(os.path.exists(path))
        self.assertEqual(len(self.imagesOf(SOPInstanceUID=image.sopUID)), 1)
        self.assertEqual(len(self.imagesOf(PatientID="COPY")), 1)
        # a copy for another patient gets UIDs of its own (the same ones replaced the first copy)
        second = self.changedFile(self.dgate(f"-fkCOPY2,{path}")[0])
        self.assertNotIn(second.StudyInstanceUID, (copy.StudyInstanceUID, image.studyUID))
        self.assertEqual([m.SOPInstanceUID for m in self.imagesOf(PatientID="COPY")], [copy.SOPInstanceUID])
        self.assertEqual([m.SOPInstanceUID for m in self.imagesOf(PatientID="COPY2")], [second.SOPInstanceUID])
        self.assertEqual(self.dgate(f"--changeuidback:{second.SOPInstanceUID}"), [image.sopUID])

    def test_anonymizeWithTheLuaScript(self):
        shutil.copy(os.path.join(defaultConfigDir(), "anonymize_script.lua"), self.server.workdir)
        image = self.images[0]
        path = self.storedFile(image)
        anonymous = self.changedFile(self.dgate(f"--anonymize:ANON1,{path}")[0])
        self.assertEqual((anonymous.PatientID, str(anonymous.PatientName)), ("ANON1", "ANON1"))
        # the script's year (19700101) is the date itself, kept all the same: the script set it
        self.assertEqual(anonymous.PatientBirthDate, "19700101")
        self.assertEqual(anonymous.PatientIdentityRemoved, "YES")
        self.assertEqual(anonymous.AccessionNumber, "")  # the Lua script blanks it
        self.assertNotIn(image.studyUID, (anonymous.StudyInstanceUID, anonymous.SeriesInstanceUID,
                                          anonymous.SOPInstanceUID))
        self.assertFalse(os.path.exists(path))
        self.assertEqual(self.imagesOf(PatientID=image.patientID, StudyInstanceUID=image.studyUID)[0].SOPInstanceUID,
                         self.images[1].sopUID)
        # the original sent again and anonymized for another patient would get the same new UIDs: refused,
        # the first anonymized copy stays
        self.assertEqual(self.server.store(image.path).returncode, 0)
        message = self.refused(f"--anonymize:ANON3,{self.storedFile(image)}")
        self.assertIn(f"Refused to enter inconsistent link PatientID into DICOMStudies: StudyInstanceUID = "
                      f"'{anonymous.StudyInstanceUID}', Old = 'ANON1', Refused = 'ANON3' (the UID map gave it", message)
        self.assertEqual([m.SOPInstanceUID for m in self.imagesOf(PatientID="ANON1")], [anonymous.SOPInstanceUID])

    def test_anonymizeAppliesWADOsTableApartFromWADOsUIDs(self):
        """An SR through the shipped Lua script: its observer names,
        dates, descriptions and Text Values go as WADO's anonymize=yes
        makes them go, and the WADO copy fetched before has other UIDs
        (review of the de-identification fixes, items 3 and 4)."""
        shutil.copy(os.path.join(defaultConfigDir(), "anonymize_script.lua"), self.server.workdir)
        sr = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
        self.assertEqual(self.server.store(get_testdata_file("test-SR.dcm")).returncode, 0)
        status, _, body = httpGet(f"http://127.0.0.1:{self.server.webPort}/wado?requestType=WADO"
                                  f"&studyUID={sr.StudyInstanceUID}&seriesUID={sr.SeriesInstanceUID}"
                                  f"&objectUID={sr.SOPInstanceUID}&contentType=application/dicom&anonymize=yes")
        self.assertEqual(status, 200)
        wado = pydicom.dcmread(io.BytesIO(body))
        path = os.path.join(self.server.dataDir, self.dgate(
            f"--query:DICOMImages|ObjectFile|SOPInstanceUID = '{sr.SOPInstanceUID}'|%s")[0])
        anonymous = self.changedFile(self.dgate(f"--anonymize:ANONX,{path}")[0])
        self.assertEqual((anonymous.PatientID, anonymous.PatientIdentityRemoved), ("ANONX", "YES"))
        for ds in (anonymous, wado):
            text = str(ds)
            for phi in ("Observer^Verifying", "20010213", "A mass of", "was detected", sr.StudyDescription,
                        sr.SeriesDescription):
                self.assertNotIn(phi, text, phi)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            self.assertNotIn(anonymous[keyword].value, (wado[keyword].value, sr[keyword].value), keyword)

    def test_anonymizeAfterModifypatidGivesNewUIDs(self):
        """Without an anonymize script: the UIDs modifypatid gave are the
        identified study's, the anonymized copy gets new ones (review of
        pacs, de-identification, item 3)."""
        modified = self.changedFile(self.dgate(f"--modifypatid:NEWPAT2,{self.storedFile(self.images[0])}")[0])
        path = os.path.join(self.server.dataDir, self.dgate(
            f"--query:DICOMImages|ObjectFile|SOPInstanceUID = '{modified.SOPInstanceUID}'|%s")[0])
        anonymous = self.changedFile(self.dgate(f"--anonymize:ANONW,{path}")[0])
        self.assertEqual(anonymous.PatientID, "ANONW")
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            self.assertNotEqual(anonymous[keyword].value, modified[keyword].value, keyword)
            self.assertEqual(self.dgate(f"--changeuidback:{anonymous[keyword].value}"), [modified[keyword].value])

    def test_anonymizeWithAConverterScript(self):
        with open(os.path.join(self.server.workdir, "anonymize_script.cq"), "w") as f:
            f.write('set 0008,1030 to "anonymous"\nset 0008,0050 to "X"\n')
        anonymous = self.changedFile(self.dgate(f"--anonymize:ANON2,{self.storedFile(self.images[3])}")[0])
        self.assertEqual((anonymous.StudyDescription, anonymous.AccessionNumber), ("anonymous", "X"))
        self.assertEqual(anonymous.PatientID, "ANON2")
        with open(os.path.join(self.server.workdir, "anonymize_script.cq"), "w") as f:
            f.write("destroy\n")
        path = self.storedFile(self.images[2])
        self.assertIn("nothing was changed", self.refused(f"--anonymize:ANON2,{path}"))
        self.assertTrue(os.path.exists(path))

    def test_modifyimage(self):
        image = self.images[4]
        path = self.storedFile(image)
        changed = self.changedFile(self.dgate(f'--modifyimage:{path},set 0008,1030 to "Changed, again"')[0])
        self.assertEqual((changed.SOPInstanceUID, changed.StudyDescription), (image.sopUID, "Changed, again"))
        matches, _ = findscu(self.server, STUDY_ROOT, "STUDY",
                             {"StudyInstanceUID": image.studyUID, "StudyDescription": None})
        self.assertEqual([m.StudyDescription for m in matches], ["Changed, again"])
        self.assertEqual(self.dgate(f"--modifyimage:{self.storedFile(image)},nop"),
                         [f"MAG0:{os.path.relpath(self.storedFile(image), self.server.dataDir)}: nothing changed"])
        self.assertIn("unknown command", self.refused(f"--modifyimage:{self.storedFile(image)},frobnicate"))

    def test_aChangeKeepsTheBytesOfTextItDoesNotTouch(self):
        """An object that says ISO_IR 192 with a Latin-1 name, stored as it
        came: --modifyimage of another attribute, then --modifypatid, leave
        the name's bytes as they were, not U+FFFD, and the index finds it by
        its Latin-1 reading."""
        ds = makeDataset("BAD3", "X", "1.2.826.0.1.99.3", "1.2.826.0.1.99.3.1", "1.2.826.0.1.99.3.1.1", 1, 1,
                         rows=8, columns=8)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds["PatientName"].value = b"Ung\xfcltig^Namen"
        path = os.path.join(self.mktemp() + ".dcm")
        ds.save_as(path, enforce_file_format=True)
        self.assertEqual(self.server.store(path).returncode, 0)
        stored = SimpleNamespace(sopUID=ds.SOPInstanceUID)
        changed = self.changedFile(self.dgate(f'--modifyimage:{self.storedFile(stored)},set 0008,0080 to "Plain"')[0])
        self.assertEqual((changed.get_item(0x00100010).value, changed.InstitutionName),
                         (b"Ung\xfcltig^Namen", "Plain"))
        changed = self.changedFile(self.dgate(f"--modifypatid:BAD3X,{self.storedFile(stored)}")[0])
        self.assertEqual((changed.get_item(0x00100010).value, changed.PatientID), (b"Ung\xfcltig^Namen", "BAD3X"))
        matches, _ = findscu(self.server, PATIENT_ROOT, "PATIENT", {"PatientName": "Ungültig*", "PatientID": None},
                             "-k", "SpecificCharacterSet=ISO_IR 192")
        self.assertEqual([m.PatientID for m in matches], ["BAD3X"])
        self.assertIn("text not valid in its Specific Character Set", self.server.log())

    def test_modifyimageOfAPatientsLastImage(self):
        """A patient's only image given another Patient ID: the old patient
        is gone from the finders and from C-FIND."""
        ds = makeDataset("LONELY", "Lonely^One", "1.2.826.0.1.99.1", "1.2.826.0.1.99.1.1", "1.2.826.0.1.99.1.1.1",
                         1, 1, rows=8, columns=8)
        path = os.path.join(self.mktemp() + ".dcm")
        ds.save_as(path, enforce_file_format=True)
        self.assertEqual(self.server.store(path).returncode, 0)
        [line] = self.dgate(f'--modifyimage:{self.storedFile(SimpleNamespace(sopUID=ds.SOPInstanceUID))},set 0010,0020 to "FOUND"')
        self.assertEqual(self.changedFile(line).PatientID, "FOUND")
        self.assertEqual(self.dgate("--patientfinder:|LONELY"), ["FOUND\tLonely^One\t19700101\tO"])
        matches, _ = findscu(self.server, PATIENT_ROOT, "PATIENT", {"PatientID": "LONELY"})
        self.assertEqual(matches, [])
        self.assertIn("DICOMPatients row LONELY deleted: its last image moved elsewhere", self.server.log())
        # one image of a study of two: refused, as Conquest refuses it; the study stays its patient's
        image = self.images[7]
        path = self.storedFile(image)
        message = self.refused(f'--modifyimage:{path},set 0010,0020 to "PATB"')
        self.assertIn(f"Refused to enter inconsistent link PatientID into DICOMStudies: StudyInstanceUID = "
                      f"'{image.studyUID}', Old = '{image.patientID}', Refused = 'PATB'", message)
        self.assertEqual(self.storedFile(image), path)
        self.assertEqual(len(self.imagesOf(PatientID=image.patientID, StudyInstanceUID=image.studyUID)), 2)
        self.assertEqual(self.dgate("--query:DICOMImages|count(*)||%s"), [str(len(self.images) + 1)])
        self.assertEqual(len([name for _, _, names in os.walk(self.server.dataDir) for name in names
                              if name.endswith(".dcm")]), len(self.images) + 1)

    def test_mergestudyThenMergeseries(self):
        first, second = self.images[0], self.images[2]
        self.assertEqual(self.dgate(f"--mergestudy:{first.studyUID},{second.studyUID}"),
                         [f"2 object(s) of 1 study(s) merged into study {first.studyUID}"])
        merged = self.imagesOf(StudyInstanceUID=first.studyUID)
        self.assertEqual(len(merged), 4)
        self.assertEqual(len({m.SeriesInstanceUID for m in merged}), 4)
        self.assertEqual(self.imagesOf(StudyInstanceUID=second.studyUID), [])
        # an object of the merged study that arrives later is brought in with mergestudyfile
        self.assertEqual(self.server.store(second.path).returncode, 0)
        [line] = self.dgate(f"--mergestudyfile:{self.storedFile(second)}")
        self.assertEqual(self.changedFile(line).StudyInstanceUID, first.studyUID)
        self.assertEqual(len(self.imagesOf(StudyInstanceUID=first.studyUID)), 4)  # the same new UIDs again
        other = self.images[1]
        self.assertEqual(self.dgate(f"--mergeseries:{first.seriesUID},{other.seriesUID}"),
                         [f"1 object(s) of 1 series(s) merged into series {first.seriesUID}"])
        self.assertEqual(len(self.imagesOf(SeriesInstanceUID=first.seriesUID)), 2)
        self.assertEqual(self.server.store(other.path).returncode, 0)
        [line] = self.dgate(f"--mergeseriesfile:{self.storedFile(other)}")
        self.assertEqual(self.changedFile(line).SeriesInstanceUID, first.seriesUID)
        self.assertEqual(len(self.imagesOf(SeriesInstanceUID=first.seriesUID)), 2)
        self.assertIn("not of one patient",
                      self.refused(f"--mergestudy:{first.studyUID},{self.images[4].studyUID}"))
        self.assertIn("not of one study",
                      self.refused(f"--mergeseries:{first.seriesUID},{self.images[4].seriesUID}"))
        self.assertIn("mergestudy needs two or more different studies", self.refused(f"--mergestudy:{first.studyUID}"))
        self.assertIn("the series are not of one study",
                      self.refused(f"--mergeseries:{first.seriesUID},{self.images[4].seriesUID}"))
        self.assertIn("was not merged", self.refused(f"--mergestudyfile:{self.storedFile(self.images[6])}"))
        # a late object of the merged study given to a new patient gets a new study, not the real
        # UID of the study its study was merged into (which would move that study to the new patient)
        self.assertEqual(self.server.store(second.path).returncode, 0)
        [line] = self.dgate(f"-fcMERGEDLATE,{self.storedFile(second)}")
        self.assertNotIn(self.changedFile(line).StudyInstanceUID, (first.studyUID, second.studyUID))
        self.assertEqual({m.PatientID for m in self.imagesOf(StudyInstanceUID=first.studyUID)}, {first.patientID})

    def test_attachAnyToPatientStudySeries(self):
        sample = self.images[0]
        toPatient = self.changedFile(self.dgate(f"--attachanytopatient:{self.images[4].path},{sample.path}")[0])
        self.assertEqual((toPatient.PatientID, str(toPatient.PatientName)), (sample.patientID, "Test^Patient0"))
        self.assertNotIn(toPatient.StudyInstanceUID, (sample.studyUID, self.images[4].studyUID))
        toStudy = self.changedFile(self.dgate(f"--attachanytostudy:{self.images[5].path},{sample.path}")[0])
        self.assertEqual((toStudy.PatientID, toStudy.StudyInstanceUID), (sample.patientID, sample.studyUID))
        self.assertNotIn(toStudy.SeriesInstanceUID, (sample.seriesUID, self.images[5].seriesUID))
        toSeries = self.changedFile(self.dgate(f"--attachanytoseries:{self.images[6].path},{sample.path}")[0])
        self.assertEqual((toSeries.StudyInstanceUID, toSeries.SeriesInstanceUID), (sample.studyUID, sample.seriesUID))
        self.assertNotEqual(toSeries.SOPInstanceUID, self.images[6].sopUID)
        self.assertEqual(len(self.imagesOf(SeriesInstanceUID=sample.seriesUID)), 2)
        self.assertEqual(len(self.imagesOf(StudyInstanceUID=sample.studyUID)), 4)
        self.assertEqual(len(self.imagesOf(SOPInstanceUID=self.images[6].sopUID)), 1)  # the original stays
        # attached to another study too, it is another object there; the first copy stays
        again = self.changedFile(self.dgate(f"--attachanytostudy:{self.images[5].path},{self.images[2].path}")[0])
        self.assertNotEqual(again.SOPInstanceUID, toStudy.SOPInstanceUID)
        self.assertEqual(len(self.imagesOf(SOPInstanceUID=toStudy.SOPInstanceUID, StudyInstanceUID=sample.studyUID)),
                         1)

    def test_attachRTPlanToRTStruct(self):
        frame = generate_uid()
        structures = self.rtObject("structures.dcm", RT_STRUCTURE_SET, "RTSTRUCT", "STRUCT1")
        reference = Dataset()
        reference.FrameOfReferenceUID = frame
        structures.ReferencedFrameOfReferenceSequence = [reference]
        structures.save_as(structures.path, enforce_file_format=True)
        plan = self.rtObject("plan.dcm", RT_PLAN, "RTPLAN", "OTHER")
        plan.save_as(plan.path, enforce_file_format=True)
        attached = self.changedFile(self.dgate(f"--attachrtplantortstruct:{plan.path},{structures.path}")[0])
        self.assertEqual((attached.PatientID, attached.StudyInstanceUID, attached.FrameOfReferenceUID),
                         ("STRUCT1", structures.StudyInstanceUID, frame))
        self.assertEqual(attached.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID,
                         structures.SOPInstanceUID)
        self.assertIn("not an RT Structure Set",
                      self.refused(f"--attachrtplantortstruct:{plan.path},{self.images[0].path}"))
        self.assertIn("not an RT Plan",
                      self.refused(f"--attachrtplantortstruct:{self.images[0].path},{structures.path}"))

    def rtObject(self, name, sopClass, modality, patientID):
        ds = makeDataset(patientID, f"RT^{patientID}", generate_uid(), generate_uid(), generate_uid(), 1, 1)
        for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                        "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation", "ImageType",
                        "SliceLocation"):
            delattr(ds, keyword)
        ds.SOPClassUID, ds.file_meta.MediaStorageSOPClassUID, ds.Modality = sopClass, sopClass, modality
        ds.path = os.path.join(self.workdir, name)
        return ds
