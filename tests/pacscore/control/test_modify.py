"""The control commands that change stored objects on a real Archive."""

import os

from twisted.internet import defer
from twisted.trial import unittest

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
        output = yield self.running.run(commands.mergeStudy, f"{self.studyOf(0)},{moving[0].studyUID}")
        self.assertEqual(output, f"2 object(s) of 1 study(s) merged into study {self.studyOf(0)} "
                                 "(1 skipped: deleted meanwhile)")
        self.assertEqual((yield self.running.count("study")), 1)
        self.assertEqual((yield self.running.count("image")), 5)
