"""MAGDeviceFullThreshHold: new objects go to the first MAG device with more
than the threshold free, looked at again at most once a second; MAG0 when
none has room; one device, or a threshold of 0, looks at nothing."""

import errno
import os
import shutil
import threading

from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.storage.devicechoice import DEFAULT_FULL_THRESHOLD, DeviceChoice
from pacscore.storage.devices import MagDevice, checkWritable
from pacscore.storage.space import MEGABYTE

FULL = OSError(errno.ENOSPC, "No space left on device")


class DeviceChoiceTests(unittest.TestCase):

    def setUp(self):
        self.devices = [MagDevice(f"MAG{n}", f"/archive/mag{n}") for n in range(3)]
        self.free = {device.path: 100 * MEGABYTE for device in self.devices}
        self.looks = []
        self.now = 0.0

        def freeSpace(path):
            self.looks.append(path)
            return self.free[path]
        self.unwritable = {}
        self.choice = DeviceChoice(self.devices, 30 * MEGABYTE, freeSpace, lambda: self.now, self.checkDevice)

    def checkDevice(self, device):
        if device.path in self.unwritable:
            raise self.unwritable[device.path]

    def test_aLookUnderWayHoldsNoOtherStore(self):
        """While one thread looks at the devices' free space (a statvfs a
        hung NFS mount may hold), the others go on with the current device
        instead of queueing behind it."""
        looking, release = threading.Event(), threading.Event()

        def slowFreeSpace(path):
            looking.set()
            release.wait(10)
            return 100 * MEGABYTE
        choice = DeviceChoice(self.devices, 30 * MEGABYTE, slowFreeSpace, lambda: self.now, self.checkDevice)
        looker = threading.Thread(target=choice.check)
        looker.start()
        self.addCleanup(looker.join)
        self.addCleanup(release.set)
        self.assertTrue(looking.wait(10))
        self.assertIs(choice.check(), self.devices[0])
        self.assertTrue(looker.is_alive())

    def test_aFullDeviceSpillsOverToTheNext(self):
        self.assertIs(self.choice.check(), self.devices[0])
        self.free["/archive/mag0"] = 30 * MEGABYTE
        self.now += 1
        self.assertIs(self.choice.check(), self.devices[1])
        self.assertIs(self.choice.current, self.devices[1])
        self.free["/archive/mag1"] = MEGABYTE
        self.now += 1
        self.assertIs(self.choice.check(), self.devices[2])
        self.free["/archive/mag0"] = 31 * MEGABYTE  # a clean-up freed MAG0
        self.now += 1
        self.assertIs(self.choice.check(), self.devices[0])

    def test_noneWithRoomMeansMAG0(self):
        self.free = dict.fromkeys(self.free, MEGABYTE)
        self.assertIs(self.choice.check(), self.devices[0])

    def test_looksOnceASecond(self):
        self.choice.check()
        self.free["/archive/mag0"] = 0
        self.now += 0.5
        self.assertIs(self.choice.check(), self.devices[0])
        self.assertEqual(self.looks, ["/archive/mag0"])
        self.now += 0.5
        self.assertIs(self.choice.check(), self.devices[1])

    def test_looksAgainOnceAQuarterOfTheThresholdIsWritten(self):
        """A fast ingest does not run through the threshold's margin within
        the second between two looks."""
        self.choice.check(10 * MEGABYTE)
        self.free["/archive/mag0"] = 0
        self.assertIs(self.choice.check(7 * MEGABYTE), self.devices[0])
        self.assertIs(self.choice.check(MEGABYTE), self.devices[1])
        self.assertEqual(self.looks, ["/archive/mag0", "/archive/mag0", "/archive/mag1"])

    def test_aDeviceFoundFullIsLeftAtOnce(self):
        """A write that found MAG0 full (its free space still above the
        threshold: reserved blocks, no inode left): the next device with
        room, chosen at once; None when no other has room."""
        self.choice.check()
        self.assertIs(self.choice.spillFrom(self.devices[0], 0, FULL), self.devices[1])
        self.assertIs(self.choice.current, self.devices[1])
        self.free["/archive/mag0"] = self.free["/archive/mag2"] = 0
        self.assertIsNone(self.choice.spillFrom(self.devices[1], 0, FULL))
        self.assertIs(self.choice.current, self.devices[0])
        self.assertIsNone(DeviceChoice(self.devices[:1], 30 * MEGABYTE).spillFrom(self.devices[0], 0, FULL))

    def test_aDeviceFoundFullStaysLeftUntilTheObjectFits(self):
        """A write of 40 MB found MAG0 full, with 32 MB free once its file is
        removed: MAG0 takes nothing until it has more than the threshold and
        those 40 MB free, so large objects do not go back to fail again."""
        self.choice.check()
        self.free["/archive/mag0"] = 32 * MEGABYTE
        self.assertIs(self.choice.spillFrom(self.devices[0], 40 * MEGABYTE, FULL), self.devices[1])
        for free in (32, 70, 71):
            self.free["/archive/mag0"] = free * MEGABYTE
            self.now += 1
            self.assertIs(self.choice.check(), self.devices[1 if free < 71 else 0])
        self.free["/archive/mag0"] = 32 * MEGABYTE  # taken again: the usual threshold
        self.now += 1
        self.assertIs(self.choice.check(), self.devices[0])

    def test_aWriteFindingADeviceReadOnlySaysSo(self):
        """Not "has 30 MB free or less"."""
        self.choice.check()
        error = OSError(errno.EROFS, "Read-only file system", "/archive/mag0/.pacs-tmp/x")
        with capturedLogs() as events:
            self.assertIs(self.choice.spillFrom(self.devices[0], MEGABYTE, error), self.devices[1])
            self.unwritable["/archive/mag0"] = OSError(errno.EROFS, "MAG0 is read-only", "/archive/mag0")
            self.now += 1
            self.assertIs(self.choice.check(), self.devices[1])
        self.assertEqual([formatEvent(event) for event in events], [
            "MAG0 takes no new objects: [Errno 30] Read-only file system: '/archive/mag0/.pacs-tmp/x'",
            "new objects go to MAG1"])

    def test_anUnreadableDeviceTakesNothing(self):
        def freeSpace(path):
            if path == "/archive/mag0":
                raise FileNotFoundError(2, "No such file or directory")
            return 100 * MEGABYTE
        choice = DeviceChoice(self.devices, 30 * MEGABYTE, freeSpace, lambda: 0, self.checkDevice)
        self.assertIs(choice.check(), self.devices[1])

    def test_aDeviceThatCannotBeWrittenTakesNothing(self):
        """Read-only, or not mounted (``checkWritable``): left, in one log
        line until it can be written again."""
        self.unwritable["/archive/mag0"] = OSError(errno.EROFS, "MAG0 is read-only", "/archive/mag0")
        with capturedLogs() as events:
            for _ in range(3):
                self.assertIs(self.choice.check(), self.devices[1])
                self.now += 1
            del self.unwritable["/archive/mag0"]
            self.assertIs(self.choice.check(), self.devices[0])
        self.assertEqual([formatEvent(event) for event in events], [
            "MAG0 takes no new objects: [Errno 30] MAG0 is read-only: '/archive/mag0'",
            "new objects go to MAG1",
            "MAG0 has room again: new objects go to MAG0"])

    def test_checkWritable(self):
        device = MagDevice("MAG0", self.mktemp())
        device.prepare()
        checkWritable(device)
        self.patch(os, "statvfs", lambda path: os.statvfs_result((0,) * 8 + (os.ST_RDONLY, 255)))
        error = self.assertRaises(OSError, checkWritable, device)
        self.assertEqual((error.errno, error.strerror), (errno.EROFS, "MAG0 is read-only"))
        shutil.rmtree(device.path)
        self.assertRaises(FileNotFoundError, checkWritable, device)

    def test_oneDeviceOrNoThresholdLooksAtNothing(self):
        for devices, threshold in ((self.devices[:1], 30 * MEGABYTE), (self.devices, 0)):
            choice = DeviceChoice(devices, threshold, lambda path: self.fail("looked"), lambda: 0,
                                  lambda device: self.fail("checked"))
            self.assertIs(choice.check(), self.devices[0])

    def ini(self, text):
        return DicomIni.fromString("[sscscp]\n" + text, "dicom.ini")

    def test_fromIni(self):
        self.assertEqual(DeviceChoice.fromIni(self.devices, self.ini("")).threshold, DEFAULT_FULL_THRESHOLD)
        self.assertEqual(DEFAULT_FULL_THRESHOLD, 30 * MEGABYTE)
        self.assertEqual(DeviceChoice.fromIni(self.devices, self.ini("MAGDeviceFullThreshHold = 500")).threshold,
                         500 * MEGABYTE)
        self.assertEqual(DeviceChoice.fromIni(self.devices, self.ini("MAGDeviceFullThreshHold = 0")).threshold, 0)
