"""The control commands that change stored objects on a real Archive."""

import os

import pydicom
from sqlalchemy import select

from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.control.context import CommandError
from pacscore.control.modify import ObjectGone
from pacscore.db.query import PATIENT_ID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, QueryKey
from pacscore.testing.corpus import generateCorpus
from plugins import pacs_control_data as data
from plugins import pacs_control_modify as commands
from tests.pacscore.control.running import RunningArchive


class MergeWhileStoringTests(unittest.TestCase):
    """Objects stored again under another name (FileNameSyntax 4) or
    deleted while a merge runs."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ini={"FileNameSyntax": "4"})
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=2,
                                     seriesPerStudy=1, imagesPerSeries=3)
        yield self.running.store(self.images)

    def studyOf(self, index):
        return self.images[index].studyUID

    @defer.inlineCallbacks
    def assertMergedSkippingOne(self, moving):
        """mergestudy of the study of ``moving`` into the first one merges
        all but the one object deleted meanwhile, and says so."""
        output = yield self.running.run(commands.mergeStudy, f"{self.studyOf(0)},{moving[0].studyUID}")
        self.assertEqual(output, f"2 object(s) of 1 study(s) merged into study {self.studyOf(0)} "
                                 "(1 skipped: deleted meanwhile)")
        self.assertEqual((yield self.running.count("study")), 1)
        self.assertEqual((yield self.running.count("image")), 5)

    @defer.inlineCallbacks
    def test_mergestudyMergesTheNewCopyAndSkipsWhatWasDeleted(self):
        """One object of the study merged is stored again (another name)
        and one deleted after the merge listed them: the new copy is
        merged, the deleted one skipped, the rest merged too."""
        archive = self.running.archive
        moving = [image for image in self.images if image.studyUID != self.studyOf(0)]
        query = archive.index.runQuery

        @defer.inlineCallbacks
        def changedAfterTheListing(*args):
            listed = yield query(*args)
            archive.index.runQuery = query
            yield self.running.store(moving[:1])
            [deleted] = [i for i in listed if i.sopInstanceUID == moving[1].sopUID]
            yield self.running.run(data.deleteImageFile, archive.objectReader.magPath("MAG0", deleted.objectFile))
            return listed
        archive.index.runQuery = changedAfterTheListing
        yield self.assertMergedSkippingOne(moving)

    @defer.inlineCallbacks
    def test_mergestudySkipsAnObjectWhoseFileADeleteRemovedBeforeItsRow(self):
        """A delete removes the file of an object the merge listed and its
        row only after the merge looked for it again (it said 'cannot read
        ...: No such file or directory' and stopped half way): the merge
        waits for the row to go, skips the object and merges the rest."""
        archive = self.running.archive
        moving = [image for image in self.images if image.studyUID != self.studyOf(0)]
        query = archive.index.runQuery
        deleted = []

        @defer.inlineCallbacks
        def deletedFileFirst(function, *args):
            answer = yield query(function, *args)
            if not deleted:
                [instance] = [i for i in answer if i.sopInstanceUID == moving[1].sopUID]
                deleted.append(archive.objectReader.magPath("MAG0", instance.objectFile))
                os.remove(deleted[0])
            elif len(answer) == 1 and answer[0].sopInstanceUID == moving[1].sopUID:
                archive.index.runQuery = query
                yield self.running.run(data.deleteImageFile, deleted[0])
            return answer
        archive.index.runQuery = deletedFileFirst
        yield self.assertMergedSkippingOne(moving)


class MissingFileTests(unittest.TestCase):
    """Objects whose rows still name a file that is not there: a merge or
    a change fails and says why (they were not deleted)."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ini={"MAGDevices": "2", "MAGDevice1": "./data1/"})
        self.archive = self.running.archive
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=2,
                                     seriesPerStudy=1, imagesPerSeries=2)
        yield self.running.store(self.images)
        self.first, self.second = self.images[0].studyUID, self.images[2].studyUID

    def instances(self, studyUID):
        return self.archive.index.runQuery(self.archive.query.instances, "STUDY",
                                           [QueryKey(STUDY_INSTANCE_UID, "UI", studyUID)])

    @defer.inlineCallbacks
    def test_aMergeFromADeviceNotThereFails(self):
        """Study B moved to MAG1, whose disk is then unmounted: the merge
        fails with the device not there, B's rows stay (it said '0 object(s)
        merged (2 skipped: deleted meanwhile)')."""
        moving = yield self.instances(self.second)
        yield self.archive.deviceMover.move([(i.sopInstanceUID, "MAG0", i.objectFile) for i in moving], "MAG1")
        mag1 = self.archive.devices[1].path
        os.rename(mag1, mag1 + ".unmounted")
        failure = yield self.assertFailure(self.running.run(commands.mergeStudy, f"{self.first},{self.second}"),
                                           CommandError)
        self.assertEqual(str(failure), "MAG1 is not there (a disk not mounted?)")
        self.assertEqual(len((yield self.instances(self.second))), 2)

    @defer.inlineCallbacks
    def test_aChangeOfAFileGoneFailsWithTheReadError(self):
        """The file of a row was removed by hand: modifypatid says it cannot
        read it (it said the object is no longer stored)."""
        [instance, _] = yield self.instances(self.first)
        path = self.archive.objectReader.magPath("MAG0", instance.objectFile)
        os.remove(path)
        failure = yield self.assertFailure(
            self.running.run(commands.modifyPatID, f"PNEW,MAG0:{instance.objectFile}"), CommandError)
        self.assertEqual(str(failure), f"cannot read {path}: No such file or directory")
        self.assertEqual(len((yield self.instances(self.first))), 2)


class ConcurrentChangeTests(unittest.TestCase):
    """Two changes of one stored object at once: the second waits for the
    first and finds the object changed already; one object stays one."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=2, imagesPerSeries=2)
        yield self.running.store(self.images)
        self.instances = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE", [])

    def file(self, sopUID):
        [instance] = [i for i in self.instances if i.sopInstanceUID == sopUID]
        return f"MAG0:{instance.objectFile}"

    @defer.inlineCallbacks
    def assertOneWon(self, *runs):
        """Of ``runs``, one succeeds and the other fails with the object
        no longer stored; the archive holds as many images and files as before."""
        results = yield defer.DeferredList(list(runs), consumeErrors=True)
        failures = [result for ok, result in results if not ok]
        self.assertEqual(len(failures), 1, results)
        failures[0].trap(ObjectGone)
        self.assertIn("is no longer stored", str(failures[0].value))
        self.assertEqual((yield self.running.count("image")), len(self.images))
        self.assertEqual(len(self.running.files()), len(self.images))
        return results

    @defer.inlineCallbacks
    def test_twoModifyPatIDOfOneFile(self):
        """modifypatid of one file to PZ1 and to PZ2 at once: only one of
        them changes it (both did, the object then stored twice)."""
        file = self.file(self.images[0].sopUID)
        yield self.assertOneWon(self.running.run(commands.modifyPatID, f"PZ1,{file}"),
                                self.running.run(commands.modifyPatID, f"PZ2,{file}"))

    @defer.inlineCallbacks
    def test_modifyPatIDDuringAMerge(self):
        """modifypatid of an object of a series that mergeseries is merging:
        the object ends up either merged or under the new patient, once."""
        first, second = self.images[0].seriesUID, self.images[2].seriesUID
        file = self.file(self.images[2].sopUID)
        merge = self.running.run(commands.mergeSeries, f"{first},{second}")
        change = self.running.run(commands.modifyPatID, f"PZ1,{file}")
        results = yield defer.DeferredList([merge, change], consumeErrors=True)
        self.assertEqual((yield self.running.count("image")), len(self.images))
        self.assertEqual(len(self.running.files()), len(self.images), results)

    @defer.inlineCallbacks
    def test_deletedWhileBeingChanged(self):
        """The object is deleted while modifypatid stores its changed copy:
        the copy is removed again and the change fails (the copy stayed,
        under the new patient)."""
        from pacscore.control import modify
        file = self.file(self.images[0].sopUID)
        stored = modify.storeObject

        @defer.inlineCallbacks
        def deletedMeanwhile(*args):
            result = yield defer.ensureDeferred(stored(*args))
            yield self.running.run(data.deleteImageFile, file)
            return result
        self.patch(modify, "storeObject", deletedMeanwhile)
        failure = yield self.assertFailure(self.running.run(commands.modifyPatID, f"PZ1,{file}"), ObjectGone)
        self.assertEqual(str(failure), f"{file} was deleted or stored again while being changed: "
                                       "its changed copy is removed")
        self.assertEqual((yield self.running.count("image")), len(self.images) - 1)
        self.assertEqual(len(self.running.files()), len(self.images) - 1)


class ModifyImageQuoteTests(unittest.TestCase):
    """modifyimage with a value in single quotes, as Conquest's scripts
    write it in a batch file or a Lua string."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive
        [self.image] = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                      seriesPerStudy=1, imagesPerSeries=1)
        yield self.running.store([self.image])

    @defer.inlineCallbacks
    def modified(self, script):
        """The data set stored by ``modifyimage:FILE,script`` and the index's patient row."""
        [instance] = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE", [])
        yield self.running.run(commands.modifyImage, f"MAG0:{instance.objectFile},{script}")
        [instance] = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE", [])
        stored = pydicom.dcmread(self.archive.objectReader.magPath("MAG0", instance.objectFile))
        patient = self.archive.index.tables.patient
        [row] = yield self.archive.index.runQuery(
            lambda connection: connection.execute(select(patient.c.PatientName)).all())
        return stored, row.PatientName

    @defer.inlineCallbacks
    def test_setToASingleQuotedValue(self):
        """set 0010,0010 to 'A^B' stores A^B (it stored 'A^B', quotes and all)."""
        stored, name = yield self.modified("set 0010,0010 to 'A^B'")
        self.assertEqual(str(stored.PatientName), "A^B")
        self.assertEqual(name, "A^B")

    @defer.inlineCallbacks
    def test_setIfASingleQuotedValue(self):
        """set 0008,1030 if 'x' stores x in the present Study Description."""
        stored, _ = yield self.modified("set 0008,1030 if 'x'")
        self.assertEqual(stored.StudyDescription, "x")


class AnonymizeScriptTests(unittest.TestCase):
    """anonymize with the configuration folder's anonymize_script.cq."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=1)
        yield self.running.store(self.images)

    @defer.inlineCallbacks
    def anonymized(self, image, patientID, script):
        """The data set ``anonymize:patientID,file`` stores for ``image``
        with ``script`` (bytes) as anonymize_script.cq, and the index's
        Study Description of it."""
        with open(os.path.join(self.archive.configuration.configDir, "anonymize_script.cq"), "wb") as f:
            f.write(script)
        [instance] = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE",
                                                       [QueryKey(SOP_INSTANCE_UID, "UI", image.sopUID)])
        yield self.running.run(commands.anonymize, f"{patientID},MAG0:{instance.objectFile}")
        [instance] = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE",
                                                       [QueryKey(PATIENT_ID, "LO", patientID)])
        stored = pydicom.dcmread(self.archive.objectReader.magPath("MAG0", instance.objectFile))
        study = self.archive.index.tables.study
        [row] = yield self.archive.index.runQuery(
            lambda connection: connection.execute(select(study.c.StudyDescription)
                                                  .where(study.c.StudyInstanceUID == stored.StudyInstanceUID)).all())
        return stored, row.StudyDescription

    @defer.inlineCallbacks
    def test_scriptReadAsEveryConfigurationFile(self):
        """A UTF-8 script stores its value as written (it was read as
        Latin-1: 'å\x8c¿å\x90\x8d Ã\x96lÃ§Ã¼', C1 controls and all, in the
        object and the index); one saved as "ANSI" is read as cp1252, with
        one warning naming the file and line."""
        with capturedLogs() as events:
            stored, indexed = yield self.anonymized(self.images[0], "ANON1",
                                                    'set 0008,1030 to "\u533f\u540d \u00d6l\u00e7\u00fc"\n'.encode())
        self.assertEqual((stored.StudyDescription, indexed), ("\u533f\u540d \u00d6l\u00e7\u00fc",) * 2)
        self.assertEqual([e for e in events if e["log_level"] == LogLevel.warn], [])
        path = os.path.join(self.archive.configuration.configDir, "anonymize_script.cq")
        with capturedLogs() as events:
            stored, indexed = yield self.anonymized(self.images[1], "ANON2", b'set 0008,1030 to "H\xf4pital"\n')
        self.assertEqual((stored.StudyDescription, indexed), ("H\u00f4pital",) * 2)
        self.assertEqual([formatEvent(e) for e in events if e["log_level"] == LogLevel.warn],
                         [f'{path}:1: not UTF-8: the line is read as Windows\' cp1252 ("ANSI")'])


    @defer.inlineCallbacks
    def test_commentLinesAreSkippedAsCallSkipsThem(self):
        """Lines starting with '#' or ';' (after blanks too) and blank lines
        are Conquest's comments in a file of converter lines, which it runs
        with ``call anonymize_script.cq``: skipped, as ``call`` skips them
        (the command failed: "unknown command" for the first comment)."""
        stored, indexed = yield self.anonymized(self.images[0], "ANON1", b"# anonymize_script.cq\n\n"
                                                b"; Conquest's other comment\n  # indented\n"
                                                b'set 0008,1030 to "STUDY"\n')
        self.assertEqual((stored.StudyDescription, indexed), ("STUDY",) * 2)


class ModifyStudyAndSeriesTests(unittest.TestCase):
    """Conquest's modifystudy:patid,studyuid,script and modifyseries (they
    were 'unknown command'): modifyimage's script on each object."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=2,
                                     seriesPerStudy=2, imagesPerSeries=2)
        yield self.running.store(self.images)

    @defer.inlineCallbacks
    def descriptions(self):
        """{SOP Instance UID: Study Description} of the stored files."""
        instances = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE", [])
        return {i.sopInstanceUID: pydicom.dcmread(self.archive.objectReader.magPath("MAG0", i.objectFile))
                .StudyDescription for i in instances}

    @defer.inlineCallbacks
    def test_modifystudy(self):
        study = self.images[0].studyUID
        output = yield self.running.run(commands.modifyStudy, f"PAT0000,{study},set 0008,1030 to 'changed'")
        self.assertEqual(output, f"4 object(s) of study {study} changed, 0 unchanged")
        described = yield self.descriptions()
        self.assertEqual({described[i.sopUID] for i in self.images if i.studyUID == study}, {"changed"})
        self.assertEqual({described[i.sopUID] for i in self.images if i.studyUID != study}, {"Synthetic study"})
        self.assertEqual((yield self.running.count("image")), 8)

    @defer.inlineCallbacks
    def test_modifyseries(self):
        series = self.images[0].seriesUID
        output = yield self.running.run(commands.modifySeries, f",{series},set 0008,1030 to \"x\"")
        self.assertEqual(output, f"2 object(s) of series {series} changed, 0 unchanged")
        described = yield self.descriptions()
        self.assertEqual([described[i.sopUID] for i in self.images].count("x"), 2)

    @defer.inlineCallbacks
    def test_failingPartwaySaysWhatWasChanged(self):
        """An object of the study that cannot be read (its file moved away)
        after others were changed: the answer says how many were changed
        and which failed (it gave the read error alone, and the operator
        could not tell the study was half changed)."""
        study = self.images[0].studyUID
        instances = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE",
                                                      [QueryKey(STUDY_INSTANCE_UID, "UI", study)])
        broken = instances[2]
        path = self.archive.objectReader.magPath("MAG0", broken.objectFile)
        os.rename(path, path + ".away")
        with capturedLogs() as events:
            error = yield self.assertFailure(
                self.running.run(commands.modifyStudy, f"PAT0000,{study},set 0008,1030 to 'changed'"), CommandError)
        self.assertRegex(str(error), rf"^2 of 4 object\(s\) of study {study} changed, 0 unchanged, then object "
                                     rf"{broken.sopInstanceUID} failed: .*No such file or directory; the 1 after it "
                                     rf"not done$")
        self.assertIn(str(error), "\n".join(formatEvent(event) for event in events))
        os.rename(path + ".away", path)
        described = yield self.descriptions()
        self.assertEqual([described[i.sopInstanceUID] for i in instances],
                         ["changed", "changed", "Synthetic study", "Synthetic study"])

    @defer.inlineCallbacks
    def test_refusals(self):
        study = self.images[0].studyUID
        for arguments, message in ((f"OTHER,{study},set 0008,1030 to \"x\"", "no stored object in study"),
                                   (f"PAT0000,{study},", "modifystudy needs a script"),
                                   ("PAT0000,1.2.x,set 0008,1030 to \"x\"", "is not a UID")):
            error = yield self.assertFailure(self.running.run(commands.modifyStudy, arguments), CommandError)
            self.assertIn(message, str(error))
        # a new Patient ID for part of the patient's objects is refused, as by modifyimage
        yield self.assertFailure(self.running.run(commands.modifySeries,
                                                  f",{self.images[0].seriesUID},set 0010,0020 to \"P2\""),
                                 CommandError)
        self.assertEqual((yield self.running.count("patient")), 1)


class ModifyLuaFailureTests(unittest.TestCase):
    """modifyimage, modifyseries and modifystudy with a Lua script that
    fails while it runs: the command fails, nothing stored or removed."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=2)
        yield self.running.store(self.images)

    @defer.inlineCallbacks
    def stored(self):
        """{SOP Instance UID: (file, Patient Name in it)} of the indexed objects."""
        instances = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE", [])
        return {i.sopInstanceUID: (i.objectFile, str(pydicom.dcmread(
            self.archive.objectReader.magPath("MAG0", i.objectFile)).PatientName)) for i in instances}

    @defer.inlineCallbacks
    def test_modifyimageFailsAndStoresNothing(self):
        """A script failing at once, or after it changed the Patient Name:
        a CommandError naming the Lua error (it answered 'nothing
        changed', and 'changed' storing the half-changed object in place
        of the original), the stored files and index as they were."""
        before = yield self.stored()
        sop = self.images[0].sopUID
        for script, message in (("error('boom')", "lua:1: boom"),
                                ("Data.PatientName='X'; error('after change')", "lua:1: after change")):
            error = yield self.assertFailure(
                self.running.run(commands.modifyImage, f"MAG0:{before[sop][0]},lua:{script}"), CommandError)
            path = self.archive.objectReader.magPath("MAG0", before[sop][0])
            self.assertEqual(str(error), f"{path}: Lua script failed: {message}; nothing was changed")
            self.assertEqual((yield self.stored()), before)
        self.assertEqual(sorted(self.running.files()), sorted(
            self.archive.objectReader.magPath("MAG0", objectFile) for objectFile, _ in before.values()))

    @defer.inlineCallbacks
    def test_modifyseriesStopsAtTheFirstFailure(self):
        """modifyseries whose script fails on each object stops at the
        first, in README's form (it answered '0 object(s) ... changed, 2
        unchanged')."""
        before = yield self.stored()
        series = self.images[0].seriesUID
        instances = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE", [])
        error = yield self.assertFailure(self.running.run(commands.modifySeries, f",{series},lua:error('boom')"),
                                         CommandError)
        self.assertRegex(str(error), rf"^0 of 2 object\(s\) of series {series} changed, 0 unchanged, then object "
                                     rf"({'|'.join(i.sopInstanceUID for i in instances)}) failed: "
                                     rf".*: Lua script failed: lua:1: boom; nothing was changed; "
                                     rf"the 1 after it not done$")
        self.assertEqual((yield self.stored()), before)


class ModifyImageLinkTests(unittest.TestCase):
    """modifyimage whose change would move another series' image."""

    setUp = ModifyLuaFailureTests.setUp
    stored = ModifyLuaFailureTests.stored

    @defer.inlineCallbacks
    def test_modifyimageToTheSOPInstanceOfAStoredObjectRefused(self):
        """modifyimage giving an object the SOP Instance UID of another
        stored object, of another patient's series or of its own, is
        refused, nothing changed (it replaced that object, deleting its
        file, and answered 'changed': the two objects became one)."""
        others = generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=1)[1:]
        yield self.running.store(others)
        before = yield self.stored()
        for victim, changed in (self.images, (self.images[0], others[0])):
            error = yield self.assertFailure(self.running.run(
                commands.modifyImage, f'MAG0:{before[changed.sopUID][0]},set 0008,0018 to "{victim.sopUID}"'),
                CommandError)
            self.assertIn(f"SOP Instance UID {victim.sopUID} is that of the stored object "
                          f"MAG0:{before[victim.sopUID][0]}; nothing was changed", str(error))
            self.assertEqual((yield self.stored()), before)
        self.assertEqual(sorted(self.running.files()), sorted(
            self.archive.objectReader.magPath("MAG0", objectFile) for objectFile, _ in before.values()))

    @defer.inlineCallbacks
    def test_newuidsRunAgainReplacesItsEarlierCopies(self):
        """A modifystudy with newuids run again after the modality sent the
        originals again replaces the copies the first run made (their SOP
        Instance UIDs are the map's for those originals), as before the
        refusal of an indexed SOP Instance UID: two rows, not four."""
        study = self.images[0].studyUID
        yield self.running.run(commands.modifyStudy, f",{study},newuids")
        copies = sorted((yield self.stored()))
        yield self.running.store(self.images)
        answer = yield self.running.run(commands.modifyStudy, f",{study},newuids")
        self.assertEqual(answer, f"2 object(s) of study {study} changed, 0 unchanged")
        self.assertEqual(sorted((yield self.stored())), copies)

    @defer.inlineCallbacks
    def test_modifyseriesGivesASeriesANewUID(self):
        """modifyseries setting 0020,000e moves every image of the series
        to the new one, object by object (the first was refused, as its
        series had others: '0 of 2 object(s) ... changed'), the old series
        row gone with its last image; modifyimage splits one image off
        into a series of its own."""
        series = self.images[0].seriesUID
        answer = yield self.running.run(commands.modifySeries, f',{series},set 0020,000e to "1.2.3.78"')
        self.assertEqual(answer, f"2 object(s) of series {series} changed, 0 unchanged")
        instances = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE", [])
        self.assertEqual(sorted((i.sopInstanceUID, i.seriesInstanceUID) for i in instances),
                         sorted((image.sopUID, "1.2.3.78") for image in self.images))
        table = self.archive.index.tables.series
        rows = yield self.archive.index.runQuery(
            lambda connection: connection.execute(select(table.c.SeriesInstanceUID)).scalars().all())
        self.assertEqual(rows, ["1.2.3.78"])
        instance = next(i for i in instances if i.sopInstanceUID == self.images[1].sopUID)
        yield self.running.run(commands.modifyImage, f'MAG0:{instance.objectFile},set 0020,000e to "1.2.3.79"')
        instances = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE", [])
        self.assertEqual(sorted((i.sopInstanceUID, i.seriesInstanceUID) for i in instances),
                         sorted([(self.images[0].sopUID, "1.2.3.78"), (self.images[1].sopUID, "1.2.3.79")]))
        self.assertEqual(sorted(pydicom.dcmread(path).SeriesInstanceUID for path in self.running.files()),
                         ["1.2.3.78", "1.2.3.79"])
