"""MAGDeviceThreshold: a write below the threshold starts a background
clean-up that deletes the least recently accessed patients until 5 MB more
than the threshold is free, one clean-up at a time.  Free space is counted as one MB per stored file, out of 12."""

import os

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.storage.space import MEGABYTE
from tests.pacscore.control.running import RunningArchive


class ThresholdTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        yield self.running.storeAgedPatients(os.path.abspath(self.mktemp()))
        self.keeper = self.running.archive.spaceKeeper
        self.reads = 0

        def freeSpace(path):
            self.reads += 1
            return (12 - len(self.running.files())) * MEGABYTE
        self.keeper.freeSpace = freeSpace

    def checkBeforeAWrite(self):
        """What an I/O thread does before it writes; fires once a clean-up
        it started (if any) has begun."""
        return self.running.archive.workers.deferToWorker(self.keeper.checkFromThread)

    @defer.inlineCallbacks
    def test_belowTheThresholdDeletesTheOldestPatients(self):
        self.keeper.threshold = 2 * MEGABYTE  # 0 MB free: 7 MB wanted
        yield self.checkBeforeAWrite()
        cleaning = self.keeper.cleaning
        self.assertIsNotNone(cleaning)
        yield self.checkBeforeAWrite()  # still below, but one clean-up at a time
        self.assertIs(self.keeper.cleaning, cleaning)
        yield cleaning
        self.assertIsNone(self.keeper.cleaning)
        self.assertEqual((yield self.running.count("patient")), 1)
        self.assertEqual(len(self.running.files()), 4)
        yield self.checkBeforeAWrite()  # 8 MB free now
        self.assertIsNone(self.keeper.cleaning)

    @defer.inlineCallbacks
    def test_offByDefault(self):
        self.assertEqual(self.keeper.threshold, 0)
        yield self.checkBeforeAWrite()
        self.assertEqual(self.reads, 0)
        self.assertIsNone(self.keeper.cleaning)
        self.assertEqual(len(self.running.files()), 12)

    def test_fromDicomIni(self):
        self.assertEqual(RunningArchive(self, ini={"MAGDeviceThreshold": "300"}).archive.spaceKeeper.threshold,
                         300 * MEGABYTE)
        ignored = RunningArchive(self, ini={"MAGDeviceThreshold": "300", "IgnoreMAGDeviceThreshHold": "1"})
        self.assertEqual(ignored.archive.spaceKeeper.threshold, 0)
