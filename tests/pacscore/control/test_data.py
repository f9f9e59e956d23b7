"""The delete and communication control commands on a real Archive:
addimagefile, the deletes, loadhl7, dump_header, prefetch."""

import os
import shutil
import sqlite3
import time
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from sqlalchemy import func, select
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.hl7 import dropfolder
from pacscore.control import data
from pacscore.control.context import CommandError
from pacscore.control.folderimport import OWN_FOLDER
from pacscore.export import actions
from pacscore.storage.part10 import readFileMeta
from pacscore.testing.corpus import generateCorpus, makeDataset
from pacscore.testing.orders import orderMessage, writeMessages
from plugins import pacs_control_data as commands
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.db.test_errors import sqliteError
from tests.pacscore.dicom.test_textbytes import writeInvalidTextObject


def settled(path):
    """Date the file ``path`` a minute back, as one written a while ago
    (loadanddeletedir leaves those modified in the last seconds)."""
    then = time.time() - 60
    os.utime(path, (then, then))
    return path


class StoredCorpusTests(unittest.TestCase):
    """Two patients, two studies each, one series of two images each."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=2, seriesPerStudy=1,
                                     imagesPerSeries=2)
        yield self.running.store(self.images)

    def images(self, level, uid):
        attribute = {"patient": "patientID", "study": "studyUID", "series": "seriesUID"}[level]
        return [image for image in self.images if getattr(image, attribute) == uid]

    def imageRows(self):
        image = self.running.archive.index.tables.image
        return self.running.archive.index.runQuery(
            lambda connection: connection.execute(select(image.c.SOPInstanceUID, image.c.DeviceName,
                                                         image.c.ObjectFile)).all())

    @defer.inlineCallbacks
    def test_addimagefileStoresLikeCStore(self):
        self.assertEqual((yield self.running.count("image")), 8)
        self.assertEqual((yield self.running.count("patient")), 2)
        self.assertEqual(len(self.running.files()), 8)
        rows = yield self.imageRows()
        self.assertEqual({row.SOPInstanceUID for row in rows}, {image.sopUID for image in self.images})
        self.assertEqual({row.DeviceName for row in rows}, {"MAG0"})

    @defer.inlineCallbacks
    def test_addimagefileWithNewPatientID(self):
        first = self.images[0]
        output = yield self.running.run(commands.addImageFile, f"{first.path},NEWPAT")
        self.assertNotIn(first.sopUID, output)  # a copy with new UIDs: the original stays
        self.assertEqual((yield self.running.count("image")), 9)
        # a copy for a second patient gets UIDs of its own: the first copy stays (it used to be replaced)
        other = yield self.running.run(commands.addImageFile, f"{first.path},OTHERPAT")
        self.assertNotEqual(other.split()[0], output.split()[0])
        yield self.running.run(commands.addImageFile, f"{first.path},NEWPAT")  # the same copy again
        self.assertEqual((yield self.running.count("image")), 10)
        for patientID in ("NEWPAT", "OTHERPAT"):
            found = yield self.running.run(commands.deletePatient, patientID)
            self.assertEqual(found, "1 object(s) removed from the server")
        self.assertEqual((yield self.running.count("image")), 8)

    @defer.inlineCallbacks
    def test_addimagefileOfAnotherPatientsSOPInstanceRefused(self):
        """A file of another patient, study and series with the SOP
        Instance UID of an image of a stored series that has others is
        refused in Conquest's words (it replaced that image, deleting its
        file); the stored object and both patients' rows stay."""
        victim = self.images[0]
        ds = pydicom.dcmread(self.images[4].path)
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "COLLIDE", generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = victim.sopUID
        path = os.path.abspath(self.mktemp()) + ".dcm"
        ds.save_as(path)
        before = sorted((yield self.imageRows()))
        files = self.running.files()
        error = yield self.assertFailure(self.running.run(commands.addImageFile, path), CommandError)
        self.assertIn("Refused to enter inconsistent link SeriesInstanceUID into DICOMImages: SOPInstanceUID = "
                      f"'{victim.sopUID}', Old = '{victim.seriesUID}', Refused = '{ds.SeriesInstanceUID}'", str(error))
        self.assertEqual(sorted((yield self.imageRows())), before)
        self.assertEqual(self.running.files(), files)
        self.assertEqual((yield self.running.count("patient")), 2)

    @defer.inlineCallbacks
    def test_aCommaInTheFileName(self):
        """DIR/DOE,JOHN.dcm is one file, with or without a patient ID after
        it, to addimagefile (it said 'cannot read DIR/DOE: No such file or
        directory')."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "DOE,JOHN.dcm")
        shutil.copy(self.images[0].path, path)
        yield self.running.run(commands.deletePatient, self.images[0].patientID)
        yield self.running.run(commands.addImageFile, path)
        self.assertEqual((yield self.running.count("image")), 5)
        yield self.running.run(commands.addImageFile, f"{path},NEWPAT")
        self.assertEqual((yield self.running.run(commands.deletePatient, "NEWPAT")), "1 object(s) removed from the server")

    @defer.inlineCallbacks
    def test_anOutputNameHoldingDcm(self):
        """The comma rule of addimagefile is not the other commands': an
        output named a.dcm.txt, a.dcm.jpg or in a folder pacs.v2 is the
        output, as Conquest takes it (the whole text was taken as the file
        to read: 'cannot read a.dcm,a.dcm.txt: No such file or
        directory')."""
        folder = os.path.join(os.path.abspath(self.mktemp()), "pacs.v2")
        os.makedirs(folder)
        path = self.images[0].path
        target = os.path.join(folder, "a.dcm.txt")
        self.assertIn(target, (yield self.running.run(commands.dumpHeader, f"{path},{target}")))
        with open(target) as f:
            self.assertIn(self.images[0].sopUID, f.read())
        target = os.path.join(folder, "a.dcm.jpg")
        self.assertEqual((yield self.running.run(commands.convertToJpg, f"{path},64,{target}")), f"{target} written")
        with open(target, "rb") as f:
            self.assertEqual(f.read(2), b"\xff\xd8")
        target = os.path.join(folder, "out.dcm")
        yield self.running.run(commands.uncompress, f"{path},{target}")
        self.assertEqual(pydicom.dcmread(target).SOPInstanceUID, self.images[0].sopUID)

    @defer.inlineCallbacks
    def test_loadanddeletedir(self):
        """Conquest's loadanddeletedir:folder[,patid] (it was 'unknown
        command'): the folder's objects are stored and their files
        deleted; a file not taken in stays."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(folder, "sub"))
        yield self.running.run(commands.deletePatient, "PAT0000")
        for n, image in enumerate(self.images[:2]):
            settled(shutil.copy(image.path, os.path.join(folder, "sub" if n else "", f"{n}.dcm")))
        with open(os.path.join(folder, "notes.txt"), "w") as f:
            f.write("no DICOM object")
        output = yield self.running.run(commands.loadAndDeleteDir, folder)
        self.assertEqual(output.splitlines()[-1], f"{folder}: 2 stored, 1 skipped, 0 failed")
        self.assertEqual(sorted(os.listdir(folder)), ["notes.txt", "sub"])
        self.assertEqual(os.listdir(os.path.join(folder, "sub")), [])
        self.assertEqual((yield self.running.count("image")), 6)
        settled(shutil.copy(self.images[2].path, os.path.join(folder, "2.dcm")))
        yield self.running.run(commands.loadAndDeleteDir, f"{folder},NEWPAT")
        self.assertFalse(os.path.exists(os.path.join(folder, "2.dcm")))
        self.assertEqual((yield self.running.run(commands.deletePatient, "NEWPAT")),
                         "1 object(s) removed from the server")
        error = yield self.assertFailure(self.running.run(commands.loadAndDeleteDir, self.images[3].path),
                                         CommandError)
        self.assertEqual(str(error), f"{self.images[3].path} is not a folder")
        self.assertTrue(os.path.exists(self.images[3].path))

    @defer.inlineCallbacks
    def test_loadanddeletedirLeavesAFileBeingWritten(self):
        """A file still being written (here its header written, its pixel
        data not yet) is not deleted: it was stored without its pixel data
        and deleted, and the writer's pixel data went into a deleted file.
        One modified in the last seconds is left for the next run; one that
        changes while it is stored is kept; once whole and settled it is
        stored whole and deleted."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        image = self.images[0]
        yield self.running.run(commands.deletePatient, image.patientID)
        with open(image.path, "rb") as f:
            whole = f.read()
        cut = whole.find(b"\xe0\x7f\x10\x00")
        path = os.path.join(folder, "scan.dcm")
        with open(path, "wb") as f:
            f.write(whole[:cut])
        with capturedLogs() as events:
            output = yield self.running.run(commands.loadAndDeleteDir, folder)
        self.assertEqual(output.splitlines(), [
            f"skipped {path}: modified less than 5 s ago (still being written?): left for the next run",
            f"{folder}: 0 stored, 1 skipped, 0 failed"])
        self.assertIn(f"loadanddeletedir: {path}: modified less than 5 s ago", "\n".join(map(formatEvent, events)))
        self.assertEqual((yield self.running.count("image")), 4)
        later = os.stat(path).st_mtime + 3600
        os.utime(path, (later, later))
        output = yield self.running.run(commands.loadAndDeleteDir, folder)
        self.assertEqual(output.splitlines()[0], f"skipped {path}: modified at a time ahead of this server's clock "
                                                 f"(a share's clock?): left until that time is past")

        storeFile = data.storeFile

        async def writerGoesOn(archive, path, **settings):  # the writer writes the pixel data once it was read
            stored = await storeFile(archive, path, **settings)
            with open(path, "ab") as f:
                f.write(whole[cut:])
            return stored
        self.patch(data, "storeFile", writerGoesOn)
        settled(path)
        output = yield self.running.run(commands.loadAndDeleteDir, folder)
        self.assertEqual(output.splitlines(), [f"skipped {path}: {data.CHANGED_WHILE_TAKEN}",
                                               f"{folder}: 0 stored, 1 skipped, 0 failed"])
        with open(path, "rb") as f:
            self.assertEqual(f.read(), whole)
        self.patch(data, "storeFile", storeFile)
        settled(path)
        output = yield self.running.run(commands.loadAndDeleteDir, folder)
        self.assertEqual(output, f"{folder}: 1 stored, 0 skipped, 0 failed")
        self.assertEqual(os.listdir(folder), [])
        [(_, _, stored)] = [row for row in (yield self.imageRows()) if row.SOPInstanceUID == image.sopUID]
        self.assertEqual(pydicom.dcmread(os.path.join(self.running.archive.devices[0].path, stored)).PixelData,
                         pydicom.dcmread(image.path).PixelData)

    @defer.inlineCallbacks
    def test_addimagefileRefusesWhatIsNotDicom(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"not a DICOM file at all" * 10)
        yield self.assertFailure(self.running.run(commands.addImageFile, path), CommandError)
        yield self.assertFailure(self.running.run(commands.addImageFile, path + ".missing"), CommandError)

    @defer.inlineCallbacks
    def test_addimagefileOfAFolder(self):
        """A CD's folder: every file under it stored, DICOMDIR and what is
        no DICOM object (a zip file named as one) skipped with a line
        each, one that the store refuses failed, and a summary line; with
        a failure the command fails, naming it."""
        folder = Path(self.mktemp()).absolute()
        images = folder / "IMAGES" / "S1"
        images.mkdir(parents=True)
        for number in range(1, 4):
            ds = makeDataset("CDPAT", "Cd^Patient", "1.2.826.0.1.3680043.8.498.81", "1.2.826.0.1.3680043.8.498.81.1",
                             f"1.2.826.0.1.3680043.8.498.81.1.{number}", 1, number)
            ds.save_as(images / f"IM{number:04}", enforce_file_format=True)
        (folder / "IMAGES" / "AGAIN").write_bytes(Path(self.images[0].path).read_bytes())
        directory = Path(get_testdata_file("DICOMDIR")).read_bytes()
        (folder / "DICOMDIR").write_bytes(directory)
        (folder / "DICOMDIR;1").write_bytes(directory)  # a CD mounted with map=off: known by its meta
        (folder / "README.TXT").write_text("Viewer on this CD\n" * 20)
        with zipfile.ZipFile(folder / "more.zip", "w") as zipped:
            zipped.write(images / "IM0001", "IM0001")
        answer = yield self.running.run(commands.addImageFile, str(folder))
        lines = answer.splitlines()
        self.assertEqual(lines[-1], f"{folder}: 4 stored, 4 skipped, 0 failed")
        for name in ("DICOMDIR", "DICOMDIR;1"):
            self.assertIn(f"skipped {folder / name}: a DICOMDIR (the index of a CD), not an object", lines)
        self.assertIn(f"skipped {folder / 'more.zip'}: a zip file (unzip it and import its folder)", lines)
        [readme] = [line for line in lines if "README.TXT" in line]
        self.assertTrue(readme.startswith(f"skipped {folder / 'README.TXT'}: not a readable DICOM object"), readme)
        self.assertEqual((yield self.running.count("image")), 11)
        error = yield self.assertFailure(self.running.run(commands.addImageFile, str(folder / "more.zip")),
                                         CommandError)
        self.assertIn("is a zip file (unzip it and import its folder)", str(error))
        dataset = pydicom.dcmread(self.images[1].path)
        dataset.PatientID = "CDPAT"  # the same SOP instance for another patient: refused
        dataset.save_as(images / "OTHER")
        error = yield self.assertFailure(self.running.run(commands.addImageFile, str(folder)), CommandError)
        self.assertEqual(str(error), f"{folder}: 4 stored, 4 skipped, 1 failed")  # the line per file as output
        lines = error.output.splitlines()
        self.assertEqual(len(lines), 5)
        [failed] = [line for line in lines if line.startswith("failed ")]
        self.assertTrue(failed.startswith(f"failed {images / 'OTHER'}: "), lines)
        self.assertEqual((yield self.running.count("image")), 11)

    @defer.inlineCallbacks
    def test_addimagefileOfNoFileOrOfTheArchivesOwnFolders(self):
        """An empty file (a script's unset variable) is refused, not the
        working folder imported; the MAG devices are not imported again,
        whether named or under a folder named."""
        for arguments in ("", " ", ",DUPPAT"):
            error = yield self.assertFailure(self.running.run(commands.addImageFile, arguments), CommandError)
            self.assertEqual(str(error), "no file given")
        device = self.running.archive.devices[0].path
        for folder in (device, os.path.join(device, os.listdir(device)[0]), "data", "data/"):
            error = yield self.assertFailure(self.running.run(commands.addImageFile, f"{folder},DUPPAT"),
                                             CommandError)
            self.assertIn("is the archive's own folder", str(error))
        answer = yield self.running.run(commands.addImageFile, ".,DUPPAT")
        self.assertIn(f"skipped {device}: {OWN_FOLDER}", answer.splitlines())
        self.assertRegex(answer.splitlines()[-1], ": 0 stored, [0-9]+ skipped, 0 failed$")
        self.assertEqual((yield self.running.count("image")), 8)

    @defer.inlineCallbacks
    def test_addimagefileOfAFolderFollowsLinkedFolders(self):
        """A CD copy whose series are links to folders: their files stored
        (each folder once, a link loop ended); a folder that cannot be
        listed fails with a line."""
        series = Path(self.mktemp()).absolute()
        series.mkdir()
        for number in (1, 2):
            ds = makeDataset("LINKPAT", "Link^Patient", "1.2.826.0.1.3680043.8.498.84", "1.2.826.0.1.3680043.8.498.84.1",
                             f"1.2.826.0.1.3680043.8.498.84.1.{number}", 1, number)
            ds.save_as(series / f"IM{number}", enforce_file_format=True)
        folder = Path(self.mktemp()).absolute()
        folder.mkdir()
        (folder / "series1").symlink_to(series)
        (series / "up").symlink_to(folder)
        answer = yield self.running.run(commands.addImageFile, str(folder))
        self.assertEqual(answer, f"{folder}: 2 stored, 0 skipped, 0 failed")
        self.assertEqual((yield self.running.count("image")), 10)
        scandir = os.scandir

        def refusing(path):
            if os.fspath(path) == str(folder / "series1"):
                raise PermissionError(13, "Permission denied", path)
            return scandir(path)
        self.patch(os, "scandir", refusing)
        error = yield self.assertFailure(self.running.run(commands.addImageFile, str(folder)), CommandError)
        self.assertEqual(str(error), f"{folder}: 0 stored, 0 skipped, 1 failed")
        self.assertEqual(error.output, f"failed {folder / 'series1'}: cannot list the folder: Permission denied")

    @defer.inlineCallbacks
    def test_addimagefileOfAFolderWithAPatientIDOneAtATime(self):
        """With a new patient ID each object is read whole to be changed: a
        folder's are stored one at a time, so that no more than one is held
        in memory (without one, streamed, four at a time)."""
        folder = Path(self.mktemp()).absolute()
        folder.mkdir()
        for number in range(1, 6):
            ds = makeDataset("ONEPAT", "One^Patient", "1.2.826.0.1.3680043.8.498.82", "1.2.826.0.1.3680043.8.498.82.1",
                             f"1.2.826.0.1.3680043.8.498.82.1.{number}", 1, number)
            ds.save_as(folder / f"IM{number}", enforce_file_format=True)
        running, most = [0], [0]
        readObject = data.readObject

        async def counted(*args, **kw):
            running[0] += 1
            most[0] = max(most[0], running[0])
            try:
                return await readObject(*args, **kw)
            finally:
                running[0] -= 1
        self.patch(data, "readObject", counted)
        answer = yield self.running.run(commands.addImageFile, f"{folder},NEWPAT")
        self.assertEqual(answer, f"{folder}: 5 stored, 0 skipped, 0 failed")
        self.assertEqual(most[0], 1)
        self.assertEqual((yield self.running.count("image")), 13)

    @defer.inlineCallbacks
    def test_addimagefileOfAFolderFailsRefusedObjects(self):
        """In a folder, a DICOM object the archive refuses (a bad SOP
        Instance UID, with or without a meta; a data set damaged after its
        meta) fails, as the file alone does; only what is no DICOM object
        is skipped."""
        folder = Path(self.mktemp()).absolute()
        folder.mkdir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's, about the bad UIDs
            for name, uid, meta in (("letters.dcm", "1.2.826.0.1.3680043.8.498.12ab", True),
                                    ("long.dcm", "1.2.826.0.1.3680043.8.498." + "1" * 60, True),
                                    ("bare.dcm", "1.2.826.0.1.3680043.8.498.12ab", False)):
                ds = makeDataset("BADUID", "Bad^Uid", "1.2.826.0.1.3680043.8.498.83", "1.2.826.0.1.3680043.8.498.83.1",
                                 uid, 1, 1)
                if meta:
                    ds.save_as(folder / name, enforce_file_format=True)
                else:
                    del ds.file_meta
                    ds.save_as(folder / name, implicit_vr=True, little_endian=True)
        good = folder / "letters.dcm"
        whole = good.read_bytes()
        with open(good, "rb") as f:
            offset = readFileMeta(f)[2]
        (folder / "damaged.dcm").write_bytes(whole[:offset] + b"\x08\x00\x16\x00UI\xff\xff" + b"\0" * 40)
        (folder / "README.TXT").write_text("Viewer on this CD\n" * 20)
        error = yield self.assertFailure(self.running.run(commands.addImageFile, str(folder)), CommandError)
        self.assertEqual(str(error), f"{folder}: 0 stored, 1 skipped, 4 failed")
        lines = error.output.splitlines()
        for name in ("bare.dcm", "damaged.dcm", "letters.dcm", "long.dcm"):
            [line] = [line for line in lines if f"/{name}: " in line]
            self.assertTrue(line.startswith(f"failed {folder / name}: {folder / name} is not a valid DICOM object"),
                            line)
            self.assertIn("past the end" if name == "damaged.dcm" else "SOP Instance UID", line)
        self.assertTrue(lines[0].startswith(f"skipped {folder / 'README.TXT'}: not a readable DICOM object"), lines)
        self.assertEqual((yield self.running.count("image")), 8)

    @defer.inlineCallbacks
    def test_addimagefileRefusesAnOverlongStudyUID(self):
        """A study UID over the index's 64 characters is refused, nothing
        stored: cut, it would join the study it shares them with."""
        first = self.images[0]
        dataset = pydicom.dcmread(first.path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's, about UIDs over 64 characters
            dataset.StudyInstanceUID = (first.studyUID + "." + "9" * 64)[:65]
            dataset.SOPInstanceUID = "1.2.3.4.5.6.7.8.9"
            path = os.path.abspath(self.mktemp())
            dataset.save_as(path)
        error = yield self.assertFailure(self.running.run(commands.addImageFile, path), CommandError)
        self.assertIn("longer than its 64 characters", str(error))
        self.assertEqual((yield self.running.count("image")), 8)
        self.assertEqual(len(self.running.files()), 8)

    @defer.inlineCallbacks
    def test_deletestudyRemovesFilesAndRows(self):
        study = self.images[0].studyUID
        output = yield self.running.run(commands.deleteStudy, f"{self.images[0].patientID}:{study}")
        self.assertEqual(output, "2 object(s) removed from the server")
        self.assertEqual((yield self.running.count("study")), 3)
        self.assertEqual((yield self.running.count("image")), 6)
        self.assertEqual((yield self.running.count("patient")), 2)
        self.assertEqual(len(self.running.files()), 6)
        yield self.assertFailure(self.running.run(commands.deleteStudy, f":{study}"), CommandError)

    @defer.inlineCallbacks
    def test_deletestudyOfAnotherPatientMatchesNothing(self):
        study = self.images[0].studyUID
        yield self.assertFailure(self.running.run(commands.deleteStudy, f"PAT0001:{study}"), CommandError)
        self.assertEqual((yield self.running.count("image")), 8)

    @defer.inlineCallbacks
    def test_deletepatientAndItsMisspelling(self):
        self.assertEqual((yield self.running.run(commands.deletePatient, "PAT0000")),
                         "4 object(s) removed from the server")
        self.assertEqual((yield self.running.run(commands.deletPatient, "PAT0001")),
                         "4 object(s) removed from the server")
        for level in ("patient", "study", "series", "image"):
            self.assertEqual((yield self.running.count(level)), 0)
        self.assertEqual(self.running.files(), [])
        yield self.assertFailure(self.running.run(commands.deletePatient, "PAT0000"), CommandError)

    @defer.inlineCallbacks
    def test_wildcardsAndEmptyValuesAreRefused(self):
        for command, arguments in ((commands.deletePatient, "PAT*"), (commands.deletePatient, ""),
                                   (commands.deleteStudy, "PAT0000:"), (commands.deleteSeries, "PAT?:1.2"),
                                   (commands.deleteStudies, "2024"), (commands.deleteSopFromDB, "PAT0000,,,")):
            yield self.assertFailure(self.running.run(command, arguments), CommandError)
        self.assertEqual((yield self.running.count("image")), 8)

    @defer.inlineCallbacks
    def test_deleteseries(self):
        series = self.images[2].seriesUID
        self.assertEqual((yield self.running.run(commands.deleteSeries, f"PAT0000:{series}")),
                         "2 object(s) removed from the server")
        self.assertEqual((yield self.running.count("series")), 3)
        self.assertEqual((yield self.running.count("study")), 3)

    @defer.inlineCallbacks
    def test_deleteimage(self):
        """Conquest's deleteimage:patid:sop (it was 'unknown command'): that
        object's file and rows go, patid: optional, another patient's ID
        matching nothing."""
        first, second = self.images[0], self.images[1]
        error = yield self.assertFailure(self.running.run(commands.deleteImage, f"PAT0001:{first.sopUID}"),
                                         CommandError)
        self.assertIn("no stored object matches", str(error))
        self.assertEqual((yield self.running.run(commands.deleteImage, f"PAT0000:{first.sopUID}")),
                         "1 object(s) removed from the server")
        self.assertEqual((yield self.running.run(commands.deleteImage, second.sopUID)),
                         "1 object(s) removed from the server")
        self.assertEqual((yield self.running.count("image")), 6)
        self.assertEqual((yield self.running.count("series")), 3)
        self.assertEqual(len(self.running.files()), 6)
        yield self.assertFailure(self.running.run(commands.deleteImage, "PAT0000:1.2.*"), CommandError)

    @defer.inlineCallbacks
    def test_deleteseriesTakesItsModalityOutOfTheStudy(self):
        """The study's StudyModality (ModalitiesInStudy without computed
        fields) loses the modality of a deleted series that no other series
        of the study has."""
        first = self.images[0]
        mr = makeDataset(first.patientID, "Test^Patient0", first.studyUID, generate_uid(), generate_uid(), 2, 1,
                         modality="MR")
        path = os.path.abspath(self.mktemp())
        mr.save_as(path, enforce_file_format=True)
        yield self.running.store([SimpleNamespace(path=path)])
        self.assertEqual((yield self.studyModalities(first.studyUID)), "MR\\CT")
        yield self.running.run(commands.deleteSeries, f"{first.patientID}:{mr.SeriesInstanceUID}")
        self.assertEqual((yield self.studyModalities(first.studyUID)), "CT")

    @defer.inlineCallbacks
    def test_deleteimagefileGivesThePatientAndStudyTheValuesOfTheObjectsLeft(self):
        """The object stored last, with another Patient's Name and Birth
        Date, is deleted: the patient and study rows take those of the
        objects left again, as ``dgate -r`` makes them (they kept the
        deleted object's)."""
        first = self.images[0]
        newer = yield self.storeNewer(first.studyUID, first.seriesUID)
        self.assertEqual((yield self.demographics(first.studyUID)), [("DOE^JANE", "19710101")] * 2)
        yield self.running.run(commands.deleteImageFile, newer)
        self.assertEqual((yield self.demographics(first.studyUID)), [("Test^Patient0", "19700101")] * 2)

    @defer.inlineCallbacks
    def test_deletestudyGivesThePatientTheValuesOfTheStudiesLeft(self):
        """A newer study of the patient, with another Patient's Name, is
        deleted: the patient row takes the name of the studies left."""
        first = self.images[0]
        study = generate_uid()
        yield self.storeNewer(study, generate_uid())
        self.assertEqual((yield self.demographics(first.studyUID)), [("DOE^JANE", "19710101"),
                                                                     ("Test^Patient0", "19700101")])
        yield self.running.run(commands.deleteStudy, f"{first.patientID}:{study}")
        self.assertEqual((yield self.demographics(first.studyUID)), [("Test^Patient0", "19700101")] * 2)

    @defer.inlineCallbacks
    def test_deleteReadsTheObjectLeftOnceUpToItsPixelData(self):
        """The series, study and patient a delete leaves take the values of
        the object stored last, whose file is read once for the three of
        them and not into its Pixel Data (of a file cut short in it, as
        dgate -r would not index: the values all the same; it was read
        three times, whole, and the rows kept those of the object deleted)."""
        first = self.images[0]
        kept = yield self.storeNewer(first.studyUID, first.seriesUID)
        gone = yield self.storeNewer(first.studyUID, first.seriesUID, "DOE^JOHN", "19720202")
        image = self.running.archive.index.tables.image
        for path, later in ((kept, 1), (gone, 2)):
            objectFile = os.path.relpath(path, self.running.archive.devices[0].path)
            yield self.running.archive.index.runWrite(lambda connection, objectFile=objectFile, later=later:
                                                      connection.execute(image.update().where(
                                                          image.c.ObjectFile == objectFile).values(
                                                          qTimeStamp=select(func.max(image.c.qTimeStamp))
                                                          .scalar_subquery() + later)))
        with open(kept, "r+b") as f:
            f.truncate(os.path.getsize(kept) - 100)
        read, fileRecord = [], actions.fileRecord
        self.patch(actions, "fileRecord", lambda path, *args, **kw: read.append(path) or fileRecord(path, *args, **kw))
        yield self.running.run(commands.deleteImageFile, gone)
        self.assertEqual((yield self.demographics(first.studyUID)), [("DOE^JANE", "19710101")] * 2)
        self.assertEqual(read, [kept])

    @defer.inlineCallbacks
    def storeNewer(self, studyUID, seriesUID, patientName="DOE^JANE", birthDate="19710101"):
        """Store an object of PAT0000 (DOE^JANE, born 19710101, unless
        told) into the study and series given; the path of its stored file."""
        ds = makeDataset("PAT0000", patientName, studyUID, seriesUID, generate_uid(), 1, 9)
        ds.PatientBirthDate = birthDate
        path = os.path.abspath(self.mktemp())
        ds.save_as(path, enforce_file_format=True)
        yield self.running.store([SimpleNamespace(path=path)])
        image = self.running.archive.index.tables.image
        objectFile = yield self.running.archive.index.runQuery(lambda connection: connection.execute(
            select(image.c.ObjectFile).where(image.c.SOPInstanceUID == ds.SOPInstanceUID)).scalar())
        return self.running.archive.devices[0].absolute(objectFile)

    def demographics(self, studyUID):
        """``[(PatientName, PatientBirthDate)]`` of the patient row of
        PAT0000 and of the study row ``studyUID``."""
        tables = self.running.archive.index.tables
        patient, study = tables.patient.c, tables.study.c
        return self.running.archive.index.runQuery(lambda connection: [tuple(row) for row in (
            connection.execute(select(patient.PatientName, patient.PatientBirthDate)
                               .where(patient.PatientID == "PAT0000")).one(),
            connection.execute(select(study.PatientName, study.PatientBirthDate)
                               .where(study.StudyInstanceUID == studyUID)).one())])

    def studyModalities(self, studyUID):
        study = self.running.archive.index.tables.study
        return self.running.archive.index.runQuery(lambda connection: connection.execute(
            select(study.c.StudyModality).where(study.c.StudyInstanceUID == studyUID)).scalar())

    @defer.inlineCallbacks
    def test_deletestudiesByDateRange(self):
        yield self.assertFailure(self.running.run(commands.deleteStudies, "20230101-20231231"), CommandError)
        self.assertEqual((yield self.running.run(commands.deleteStudies, "20240102")),
                         "8 object(s) removed from the server")
        self.assertEqual((yield self.running.count("patient")), 0)

    @defer.inlineCallbacks
    def test_deletestudiesRefusesWhatIsNoDay(self):
        """A date's digits that are no day from 1900 to 2199 (Conquest's
        bounds) are refused: ``-99999999`` removed every study."""
        for text in ("-99999999", "20241399-", "20240230", "18991231-20240102"):
            error = yield self.assertFailure(self.running.run(commands.deleteStudies, text), CommandError)
            self.assertIn("is no day from 19000101 to 21991231", str(error))
        self.assertEqual((yield self.running.count("image")), 8)

    @defer.inlineCallbacks
    def test_deletestudiesByAnOpenRange(self):
        """``-YYYYMMDD`` and ``YYYYMMDD-`` (Conquest's DeleteStudies takes
        any DA match) were refused ('expected YYYYMMDD or
        YYYYMMDD-YYYYMMDD'); a bare ``-`` (every study) still is."""
        for text in ("-", "--20240102", "2024-"):
            error = yield self.assertFailure(self.running.run(commands.deleteStudies, text), CommandError)
            self.assertIn("expected YYYYMMDD", str(error))
        yield self.running.redate("PAT0000", "20240101")
        yield self.assertFailure(self.running.run(commands.deleteStudies, "-20231231"), CommandError)
        yield self.assertFailure(self.running.run(commands.deleteStudies, "20240103-"), CommandError)
        self.assertEqual((yield self.running.count("patient")), 2)
        self.assertEqual((yield self.running.run(commands.deleteStudies, "20240102-")),
                         "4 object(s) removed from the server")
        self.assertEqual((yield self.running.count("patient")), 1)
        yield self.running.redate("PAT0000", "20231231")
        self.assertEqual((yield self.running.run(commands.deleteStudies, "-20240101")),
                         "4 object(s) removed from the server")
        self.assertEqual((yield self.running.count("patient")), 0)

    @defer.inlineCallbacks
    def test_deleteimagefileByPathAndByDevice(self):
        rows = sorted((yield self.imageRows()))
        device = self.running.archive.devices[0]
        path = device.absolute(rows[0].ObjectFile)
        self.assertEqual((yield self.running.run(commands.deleteImageFile, path)),
                         "1 object(s) removed from the server")
        self.assertFalse(os.path.exists(path))
        conquestStyle = "MAG0\\" + rows[1].ObjectFile.replace("/", "\\")
        yield self.running.run(commands.deleteImageFile, conquestStyle)
        self.assertFalse(os.path.exists(device.absolute(rows[1].ObjectFile)))
        self.assertEqual((yield self.running.count("image")), 6)
        yield self.assertFailure(self.running.run(commands.deleteImageFile, path), CommandError)
        yield self.assertFailure(self.running.run(commands.deleteImageFile, "/etc/passwd"), CommandError)

    @defer.inlineCallbacks
    def test_deleteimagefromdbKeepsTheFile(self):
        rows = sorted((yield self.imageRows()))
        yield self.running.run(commands.deleteImageFromDB, f"MAG0:{rows[0].ObjectFile}")
        self.assertEqual((yield self.running.count("image")), 7)
        self.assertEqual(len(self.running.files()), 8)

    @defer.inlineCallbacks
    def test_deletesopfromdbKeepsTheFile(self):
        image = self.images[5]
        output = yield self.running.run(commands.deleteSopFromDB,
                                        f"{image.patientID},{image.studyUID},{image.seriesUID},{image.sopUID}")
        self.assertEqual(output, "1 object(s) removed from the database")
        self.assertEqual((yield self.running.count("image")), 7)
        self.assertEqual(len(self.running.files()), 8)
        yield self.assertFailure(self.running.run(commands.deleteSopFromDB, f",,,{image.sopUID}"), CommandError)

    @defer.inlineCallbacks
    def test_prefetch(self):
        self.assertEqual((yield self.running.run(commands.prefetch, "PAT0001")), "4 object(s) of patient PAT0001 read")
        yield self.assertFailure(self.running.run(commands.prefetch, "NOBODY"), CommandError)

    @defer.inlineCallbacks
    def test_dumpHeader(self):
        path = self.images[0].path
        dump = yield self.running.run(commands.dumpHeader, path)
        self.assertIn("(0010,0020) Patient ID", dump)
        self.assertIn("PAT0000", dump)
        self.assertIn("Transfer Syntax UID", dump)
        self.assertNotIn("Pixel Data", dump)
        target = os.path.abspath(self.mktemp())
        output = yield self.running.run(commands.dumpHeader, f"{path},{target}")
        self.assertIn(target, output)
        with open(target) as f:
            self.assertEqual(f.read(), dump + "\n")
        yield self.assertFailure(self.running.run(commands.dumpHeader, path + ".missing"), CommandError)

    @defer.inlineCallbacks
    def test_dumpHeaderOfAStoredObject(self):
        """A stored file named as listings print it, ``MAG0:relative``, or
        as Conquest's ``patid:sop``."""
        image = self.images[0]
        [row] = [row for row in (yield self.imageRows()) if row.SOPInstanceUID == image.sopUID]
        dump = yield self.running.run(commands.dumpHeader, self.running.archive.devices[0].absolute(row.ObjectFile))
        self.assertEqual((yield self.running.run(commands.dumpHeader, f"MAG0:{row.ObjectFile}")), dump)
        self.assertEqual((yield self.running.run(commands.dumpHeader, f"{image.patientID}:{image.sopUID}")), dump)
        error = yield self.assertFailure(self.running.run(commands.dumpHeader, "MAG0:../x.dcm"), CommandError)
        self.assertIn("is not a file inside MAG0", str(error))

    @defer.inlineCallbacks
    def test_readingCommandsRefuseWhatIsNotDicom(self):
        """A text file is no DICOM object to count frames of or dump: it
        has no file meta and no SOP Class UID (read leniently, its bytes
        would make elements); a bare data set with one is read."""
        path = os.path.abspath(self.mktemp())
        Path(path).write_bytes(b"hello world this is not dicom at all\n")
        for command, arguments in ((commands.countFrames, path), (commands.dumpHeader, path),
                                   (commands.dumpHeader, f"{path},{path}.out"),
                                   (commands.uncompress, f"{path},{path}.out")):
            error = yield self.assertFailure(self.running.run(command, arguments), CommandError)
            self.assertIn(f"{path} is not a readable DICOM object", str(error))
        self.assertFalse(os.path.exists(path + ".out"))
        bare = os.path.abspath(self.mktemp())
        dataset = pydicom.dcmread(self.images[0].path)
        del dataset.file_meta
        dataset.preamble = None
        dataset.save_as(bare, implicit_vr=True, little_endian=True)
        with open(bare, "rb") as f:
            self.assertEqual(readFileMeta(f)[2], 0)
        self.assertEqual((yield self.running.run(commands.countFrames, bare)), "1")
        self.assertIn("PAT0000", (yield self.running.run(commands.dumpHeader, bare)))

    def damagedCopy(self, old, new):
        """A copy of the first image, the last ``old`` bytes (in its data set) replaced by ``new``."""
        original = Path(self.images[0].path).read_bytes()
        at = original.rindex(old)
        path = os.path.abspath(self.mktemp())
        Path(path).write_bytes(original[:at] + new + original[at + len(old):])
        return path

    @defer.inlineCallbacks
    def test_dumpHeaderOfADamagedFile(self):
        path = self.damagedCopy(b"\x08\x00\x16\x00UI", b"\x08\x00\x16\x00Uw")  # SOP Class UID's VR
        error = yield self.assertFailure(self.running.run(commands.dumpHeader, path), CommandError)
        self.assertIn(f"cannot read {path}: ", str(error))
        self.assertIn("(0008,0016)", str(error))

    @defer.inlineCallbacks
    def test_addimagefileRefusesAnInvalidUID(self):
        uid = self.images[0].sopUID.encode()
        path = self.damagedCopy(uid, uid[:5] + b"\xc9" + uid[6:])
        error = yield self.assertFailure(self.running.run(commands.addImageFile, path), CommandError)
        self.assertIn("SOP Instance UID", str(error))
        self.assertIn("is not a UID", str(error))
        self.assertEqual((yield self.running.count("image")), 8)

    @defer.inlineCallbacks
    def test_addimagefileRefusesAnInvalidTransferSyntax(self):
        path = self.damagedCopy(b"1.2.840.10008.1.2.1\x00", b"1.2\x87840.10008.1.2.1\x00")
        error = yield self.assertFailure(self.running.run(commands.addImageFile, path), CommandError)
        self.assertIn("Transfer Syntax UID", str(error))
        self.assertEqual((yield self.running.count("image")), 8)
        self.assertEqual(self.flushLoggedErrors(), [])


class HeaderLinesTests(unittest.TestCase):

    def test_invalidTextReadsAsLatin1(self):
        """``dgate --dump_header`` and the headerdump page showed a Latin-1
        ``ü`` in an ISO_IR 192 object as U+FFFD, where the index and C-FIND
        read it as Latin-1; they now read it so too, logged."""
        path = self.mktemp()
        sop = writeInvalidTextObject(path)
        with capturedLogs() as events:
            lines = data.headerLines(path)
        self.assertIn("PN: 'Ungültig^Namen'", "\n".join(lines))
        [warning] = [formatEvent(event) for event in events]
        self.assertIn(f"SOP Instance {sop}: text not valid in its Specific Character Set, read as Latin-1", warning)


class LoadHL7Tests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)
        self.path = os.path.abspath(self.mktemp())

    @defer.inlineCallbacks
    def test_loadhl7AppliesEveryMessage(self):
        writeMessages(self.path, [orderMessage("MSG1", "ACC1", "P1", "Doe^John"),
                                  orderMessage("MSG2", "ACC2", "P2", "Roe^Jane")])
        output = yield self.running.run(commands.loadHL7, self.path)
        self.assertEqual([line.split()[:3] for line in output.split("\n")],
                         [["message", "1:", "AA"], ["message", "2:", "AA"]])
        self.assertEqual((yield self.running.count("worklist")), 2)

    @defer.inlineCallbacks
    def test_loadhl7ReportsRefusedMessages(self):
        writeMessages(self.path, [orderMessage("MSG1", "ACC1", "P1", "Doe^John"),
                                  orderMessage("MSG2", "NOSUCH", "P2", "Roe^Jane", control="XO")])
        error = yield self.assertFailure(self.running.run(commands.loadHL7, self.path), CommandError)
        self.assertIn("message 2: AE", str(error))
        self.assertEqual((yield self.running.count("worklist")), 1)

    @defer.inlineCallbacks
    def test_loadhl7StopsAtADatabaseFailure(self):
        """A message not applied for a reason that is not its own (the
        database failing) fails the command saying so, and the messages
        after it are not applied before it: the file may be loaded again."""
        writeMessages(self.path, [orderMessage("MSG1", "ACC1", "P1", "Doe^John"),
                                  orderMessage("MSG2", "ACC1", "P1", "Doe^John", control="CA")])
        items = self.running.archive.hl7Intake.items
        self.patch(items, "apply", lambda orders, forPeer: defer.fail(
            sqliteError("database is locked", sqlite3.SQLITE_BUSY)))
        error = yield self.assertFailure(self.running.run(commands.loadHL7, self.path), CommandError)
        self.assertEqual(str(error), "message 1: AR worklist update failed (OperationalError): not applied, send it "
                                     "again later; it and the 1 message(s) after it not applied: load "
                                     f"{self.path} again later")
        self.assertEqual((yield self.running.count("worklist")), 0)

    @defer.inlineCallbacks
    def test_loadhl7NamesTheMessageToLoadAgainFrom(self):
        """A file stopped at its second message (the database failing) was
        to be loaded again whole, which applied its first message again
        (a NW undoing a cancel received meanwhile): the command now says
        from which message to load it again."""
        writeMessages(self.path, [orderMessage("MSG1", "ACC1", "P1", "Doe^John"),
                                  orderMessage("MSG2", "ACC2", "P2", "Roe^Jane"),
                                  orderMessage("MSG3", "ACC3", "P3", "Poe^Jim")])
        items = self.running.archive.hl7Intake.items
        apply = items.apply
        self.patch(items, "apply", lambda orders, forPeer: apply(orders, forPeer) if orders[0].values[
            "AccessionNumber"] != "ACC2" else defer.fail(sqliteError("database is locked", sqlite3.SQLITE_BUSY)))
        error = yield self.assertFailure(self.running.run(commands.loadHL7, self.path), CommandError)
        self.assertEqual(str(error), "message 2: AR worklist update failed (OperationalError): not applied, send it "
                                     "again later; messages 2 to 3 not applied, 1 to 1 applied: load again later "
                                     f"a file of messages 2 to 3 only (loading {self.path} again applies messages "
                                     "1 to 1 again)")
        self.assertEqual((yield self.running.count("worklist")), 1)

    @defer.inlineCallbacks
    def test_addimagefileAppliesAnHL7File(self):
        """An HL7 file given to --addimagefile: was refused ('is not a
        readable DICOM object: no SOP Class UID'); it is applied as
        --loadhl7: applies it, as Conquest's addimagefile (its drag and
        drop) does, a message not accepted failing it the same way."""
        writeMessages(self.path, [orderMessage("MSG1", "ACCADD", "P1", "Doe^John")])
        output = yield self.running.run(commands.addImageFile, self.path)
        self.assertEqual(output.split()[:3], ["message", "1:", "AA"])
        self.assertEqual((yield self.running.count("worklist")), 1)
        writeMessages(self.path, [orderMessage("MSG2", "NOSUCH", "P2", "Roe^Jane", control="XO")])
        error = yield self.assertFailure(self.running.run(commands.addImageFile, self.path), CommandError)
        self.assertIn("message 1: AE", str(error))

    @defer.inlineCallbacks
    def test_aFolderImportAppliesItsHL7Files(self):
        """The HL7 files of a folder given to --addimagefile: were skipped
        ('skipped .../add1.hl7: not a readable DICOM object: no SOP Class
        UID', the command succeeding): the orders were lost.  They are now
        applied before the objects, in name order (in one folder), whatever
        their names end in, each with a line, and counted."""
        folder = Path(self.mktemp()).absolute()
        folder.mkdir()
        makeDataset("HLPAT", "Hl^Patient", "1.2.826.0.1.3680043.8.498.82", "1.2.826.0.1.3680043.8.498.82.1",
                    "1.2.826.0.1.3680043.8.498.82.1.1", 1, 1).save_as(folder / "IM1", enforce_file_format=True)
        writeMessages(folder / "a.hl7", [orderMessage("MSG1", "ACC1", "P1", "Doe^John"),
                                         orderMessage("MSG2", "ACC2", "P2", "Roe^Jane")])
        writeMessages(folder / "b.txt", [orderMessage("MSG3", "ACC1", "P1", "Doe^John", control="CA")])
        (folder / "c.txt").write_text("no HL7 here\n")
        answer = yield self.running.run(commands.addImageFile, str(folder))
        self.assertEqual(answer.splitlines(), [
            f"applied {folder / 'a.hl7'} to the worklist: 2 HL7 message(s)",
            f"applied {folder / 'b.txt'} to the worklist: 1 HL7 message(s)",
            f"skipped {folder / 'c.txt'}: not a readable DICOM object: no SOP Class UID",
            f"{folder}: 1 stored, 2 HL7 file(s) applied, 1 skipped, 0 failed"])
        self.assertEqual((yield self.running.count("image")), 1)
        self.assertEqual((yield self.running.count("worklist")), 1)

    @defer.inlineCallbacks
    def test_aFolderImportAppliesItsOrdersBeforeItsImages(self):
        """A folder of a RIS's orders and the images of those orders was
        applied images first, so with WorkListMode = 2 its images were
        refused ('... was not stored: Accession Number 'ACC002' is not in
        the worklist (WorkListMode = 2)', status 1) and the import
        succeeded only when run again.  The orders are now applied first:
        the images are stored with their worklist values."""
        running = RunningArchive(self, ini={"WorkListMode": "2"})
        folder = Path(self.mktemp()).absolute()
        folder.mkdir()
        image = makeDataset("OLDID", "Old^Name", "1.2.826.0.1.3680043.8.498.83", "1.2.826.0.1.3680043.8.498.83.1",
                            "1.2.826.0.1.3680043.8.498.83.1.1", 1, 1)
        image.AccessionNumber = "ACC002"
        image.save_as(folder / "image.dcm", enforce_file_format=True)
        writeMessages(folder / "z_orders.hl7", [orderMessage("MSG1", "ACC002", "1CT1", "Doe^John")])
        answer = yield running.run(commands.addImageFile, str(folder))
        self.assertEqual(answer.splitlines(), [
            f"applied {folder / 'z_orders.hl7'} to the worklist: 1 HL7 message(s)",
            f"{folder}: 1 stored, 1 HL7 file(s) applied, 0 skipped, 0 failed"])
        patients = running.archive.index.tables.patient
        self.assertEqual((yield running.archive.index.runQuery(
            lambda connection: connection.execute(select(patients.c.PatientID)).scalars().all())), ["1CT1"])

    @defer.inlineCallbacks
    def test_aFolderImportAppliesHL7FilesInTheOrderItWalks(self):
        """README.md said 'in name order'; the HL7 files of a folder come in
        the order it is walked, as README.md now says: its own files by name
        before those of its subfolders (a cancel in the folder runs before
        the order in a subfolder)."""
        folder = Path(self.mktemp()).absolute()
        (folder / "sub").mkdir(parents=True)
        writeMessages(folder / "sub" / "0first.hl7", [orderMessage("MSG1", "ACC1", "P1", "Doe^John")])
        writeMessages(folder / "zz.hl7", [orderMessage("MSG2", "ACC1", "P1", "Doe^John", control="CA")])
        answer = yield self.running.run(commands.addImageFile, str(folder))
        self.assertEqual(answer.splitlines()[:2], [f"applied {folder / 'zz.hl7'} to the worklist: 1 HL7 message(s)",
                                                   f"applied {folder / 'sub' / '0first.hl7'} to the worklist: 1 HL7 "
                                                   "message(s)"])
        self.assertEqual((yield self.running.count("worklist")), 1)

    @defer.inlineCallbacks
    def test_aFolderImportSkipsATextStartingWithMSH(self):
        """A text file starting with the letters MSH failed a folder import
        ('failed .../MSHELL.txt: 1 of 1 message(s) not accepted: message 1:
        AR MSH-1 b'E' is not a usable field separator', status 1) where it
        was skipped before: it is skipped again, the import succeeding."""
        folder = Path(self.mktemp()).absolute()
        folder.mkdir()
        (folder / "MSHELL.txt").write_text("MSHELL script notes\n")
        answer = yield self.running.run(commands.addImageFile, str(folder))
        self.assertEqual(answer.splitlines(), [
            f"skipped {folder / 'MSHELL.txt'}: not a readable DICOM object: no SOP Class UID",
            f"{folder}: 0 stored, 1 skipped, 0 failed"])

    @defer.inlineCallbacks
    def test_loadhl7OfNothing(self):
        with open(self.path, "w") as f:
            f.write("no HL7 here\n")
        yield self.assertFailure(self.running.run(commands.loadHL7, self.path), CommandError)
        yield self.assertFailure(self.running.run(commands.loadHL7, self.path + ".missing"), CommandError)


class SpecialFileTests(unittest.TestCase):
    """Only regular files are read: a FIFO would hold an I/O thread until
    a writer comes, a device like /dev/zero never ends."""

    def setUp(self):
        self.running = RunningArchive(self)
        self.fifo = os.path.abspath(self.mktemp())
        os.mkfifo(self.fifo)

    @defer.inlineCallbacks
    def test_notRegularFilesAreRefused(self):
        """And skipped in a folder given to addimagefile (a folder import)."""
        folder = os.path.dirname(self.fifo)
        for command in (commands.loadHL7, commands.addImageFile, commands.dumpHeader):
            for path in (self.fifo, os.devnull) + ((folder,) if command is not commands.addImageFile else ()):
                error = yield self.assertFailure(self.running.run(command, path), CommandError)
                self.assertEqual(str(error), f"cannot read {path}: not a regular file")
        answer = yield self.running.run(commands.addImageFile, folder)
        self.assertIn(f"skipped {self.fifo}: not a regular file", answer.splitlines())
        self.assertEqual(answer.splitlines()[-1], f"{folder}: 0 stored, 1 skipped, 0 failed")

    @defer.inlineCallbacks
    def test_loadhl7RefusesAFileOverTheLimit(self):
        path = os.path.abspath(self.mktemp())
        writeMessages(path, [orderMessage("MSG1", "ACC1", "P1", "Doe^John")])
        self.patch(dropfolder, "HL7_FILE_LIMIT", os.path.getsize(path) - 1)
        error = yield self.assertFailure(self.running.run(commands.loadHL7, path), CommandError)
        self.assertIn(f"cannot read {path}: larger than", str(error))
        self.assertEqual((yield self.running.count("worklist")), 0)


class StoredAgainTests(unittest.TestCase):
    """Objects stored again under another name (FileNameSyntax 4) while
    a delete runs."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ini={"FileNameSyntax": "4"})
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=4)
        yield self.running.store(self.images)

    @defer.inlineCallbacks
    def test_aDeleteKeepsWhatWasStoredAgainMeanwhile(self):
        """The copy stored after the delete listed the objects keeps its row
        and file (its old file is gone already: the row used to go too)."""
        select = commands.deletePatient.selection

        @defer.inlineCallbacks
        def storedAgainAfterTheListing(arguments, archive):
            listed = yield select(arguments, archive)
            yield self.running.store(self.images[:1])
            return listed
        self.patch(commands.deletePatient, "selection", storedAgainAfterTheListing)
        output = yield self.running.run(commands.deletePatient, "PAT0000")
        [row] = yield StoredCorpusTests.imageRows(self)
        self.assertEqual(row.SOPInstanceUID, self.images[0].sopUID)
        self.assertEqual(self.running.files(), [self.running.archive.objectReader.magPath("MAG0", row.ObjectFile)])
        for level in ("patient", "study", "series"):
            self.assertEqual((yield self.running.count(level)), 1)
        self.assertEqual(output, "3 object(s) removed from the server, 1 kept: stored again meanwhile")

    @defer.inlineCallbacks
    def test_anotherInstanceGivenTheFreedNameIsNotKept(self):
        """With names that leave the SOP instance out, another study's
        object stored while the delete runs takes a freed name: the deleted
        study's row goes all the same (it was kept and sent that object)."""
        running = RunningArchive(self, ini={"FileNameSyntax": "%id\\%series_%imagenum.dcm"})
        first, second = (generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                        seriesPerStudy=1, imagesPerSeries=2) for _ in range(2))
        yield running.store(first)
        actions, index = running.archive.localActions, running.archive.index
        runWrite = index.runWrite

        @defer.inlineCallbacks
        def storedBeforeTheRowsGo(function, *arguments):
            if function == actions._deleteRows:
                yield running.store(second)
            return (yield runWrite(function, *arguments))
        self.patch(index, "runWrite", storedBeforeTheRowsGo)
        output = yield running.run(commands.deleteStudy, f"PAT0000:{first[0].studyUID}")
        self.assertEqual(output, "2 object(s) removed from the server")
        image = index.tables.image
        rows = yield index.runQuery(
            lambda connection: connection.execute(select(image.c.SOPInstanceUID, image.c.ObjectFile)).all())
        self.assertEqual(sorted(rows), sorted((i.sopUID, f"PAT0000/0001_{n}.dcm") for n, i in enumerate(second, 1)))
