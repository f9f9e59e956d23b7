"""The control commands that change stored objects on a real Archive."""

import os

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.control.context import CommandError
from pacscore.db.query import STUDY_INSTANCE_UID, QueryKey
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
