"""FileSystemFlush: one syncfs per file system, errors raised, records
passed on only after their flush; the choice of policy."""

import ctypes
import errno
import os

from twisted.internet import defer, reactor
from twisted.trial import unittest

from pacscore.db.records import ImageRecord
from pacscore.storage.devices import MagDevice
from pacscore.storage.durability import (FileSystemFlush, PerFileSync, durabilityFor, libcSyncfs,
                                         reportsWritebackErrors)


class FileSystemFlushTests(unittest.TestCase):

    def setUp(self):
        root = os.path.abspath(self.mktemp())
        self.devices = [MagDevice(f"MAG{n}", os.path.join(root, f"mag{n}")) for n in range(2)]
        for device in self.devices:
            os.makedirs(device.path)
        self.calls = []

    def record(self, device):
        return ImageRecord({}, device.name, "a/b.dcm")

    def flusher(self, result=0, error=0):
        def syncfs(fd):
            self.calls.append(os.fstat(fd).st_dev)
            ctypes.set_errno(error)
            return result
        flusher = FileSystemFlush(self.devices, syncfs, reactor)
        self.addCleanup(flusher.stop)
        return flusher

    def test_oneFlushPerFileSystem(self):
        flusher = self.flusher()
        flusher.flush([self.record(self.devices[0]), self.record(self.devices[1]), self.record(self.devices[0])])
        self.assertEqual(self.calls, [os.stat(self.devices[0].path).st_dev],
                         "two devices on one file system: one syncfs")
        flusher.flush([self.record(self.devices[1])])
        self.assertEqual(len(self.calls), 2, "every commit group is flushed")

    def test_failureRaises(self):
        flusher = self.flusher(result=-1, error=errno.EIO)
        error = self.assertRaises(OSError, flusher.flush, [self.record(self.devices[0])])
        self.assertEqual(error.errno, errno.EIO)
        self.assertIn(self.devices[0].path, str(error))

    @defer.inlineCallbacks
    def test_recordsPassedOnAfterTheirFlush(self):
        flusher = self.flusher()
        flusher.start()
        passed = []
        records = [self.record(device) for device in self.devices * 3]
        for record in records:
            flusher.whenDurable(record, lambda r: passed.append((r, len(self.calls))), self.fail)
        yield flusher.stop()
        self.assertEqual([r for r, _ in passed], records, "every record is passed on, in order")
        self.assertTrue(all(flushes >= 1 for _, flushes in passed), "only after a flush")
        self.assertLessEqual(len(self.calls), len(records), "records queued together share a flush")

    @defer.inlineCallbacks
    def test_failedFlushFailsItsRecords(self):
        flusher = self.flusher(result=-1, error=errno.EIO)
        flusher.start()
        failures = []
        flusher.whenDurable(self.record(self.devices[0]), self.fail, failures.append)
        yield flusher.stop()
        [failure] = failures
        self.assertEqual(failure.value.errno, errno.EIO)

    @defer.inlineCallbacks
    def test_failureToPassOnFailsOnlyThatRecord(self):
        flusher = self.flusher()
        flusher.start()
        failures, passed = [], []

        def refuse(record):
            raise ValueError("refused")

        flusher.whenDurable(self.record(self.devices[0]), refuse, failures.append)
        flusher.whenDurable(self.record(self.devices[1]), passed.append, self.fail)
        yield flusher.stop()
        self.assertEqual(len(passed), 1, "the flusher keeps working")
        failures[0].trap(ValueError)

    def test_notRunning(self):
        failures = []
        self.flusher().whenDurable(self.record(self.devices[0]), self.fail, failures.append)
        self.assertIn("not running", str(failures[0].value))

    def test_writingDoesNotSync(self):
        flusher = self.flusher()
        folder = os.path.join(self.devices[0].path, "new", "folder")
        flusher.makeFolders(folder)
        flusher.fileWritten(-1)
        flusher.folderChanged(folder)
        self.assertTrue(os.path.isdir(folder))
        self.assertEqual(self.calls, [])

    def test_realSyncfs(self):
        syncfs = libcSyncfs()
        self.assertIsNotNone(syncfs, "Linux's C library has syncfs")
        flusher = FileSystemFlush(self.devices, syncfs)
        self.addCleanup(flusher.stop)
        flusher.flush([self.record(self.devices[0])])
        self.assertIsInstance(durabilityFor(self.devices), FileSystemFlush)

    def test_perFileSyncOnKernelsWhoseSyncfsHidesErrors(self):
        self.assertIsInstance(durabilityFor(self.devices, release="5.4.0-150-generic"), PerFileSync)
        self.assertIsInstance(durabilityFor(self.devices, release="6.1.0-13-amd64"), FileSystemFlush)
        self.assertEqual([reportsWritebackErrors(r) for r in ("5.7.19", "5.8.0", "5.10.0-28-amd64", "4.19", "x")],
                         [False, True, True, False, False])

    def test_perFileSyncWithoutSyncfs(self):
        self.patch(ctypes, "CDLL", lambda *a, **kw: object())
        self.assertIsNone(libcSyncfs())
        self.assertIsInstance(durabilityFor(self.devices), PerFileSync)
