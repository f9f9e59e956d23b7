"""FileSystemFlush: one syncfs per file system, errors raised, records
passed on only after their flush, objects handed over during a flush
sharing the next; the choice of policy."""

import ctypes
import errno
import os
import threading
import time

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
        flusher = FileSystemFlush(self.devices, syncfs)
        self.addCleanup(flusher.close)
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

    def test_recordsPassedOnAfterTheirFlush(self):
        flusher = self.flusher()
        passed = []
        records = [self.record(device) for device in self.devices]
        for record in records:
            flusher.whenDurable(record, lambda r: passed.append((r, len(self.calls))), self.fail)
        self.assertEqual(passed, [(records[0], 1), (records[1], 2)], "each after a flush, in order")

    def test_objectsHandedOverDuringAFlushShareTheNext(self):
        release = threading.Event()
        calls = []

        def syncfs(fd):
            calls.append(threading.current_thread().name)
            if len(calls) == 1:
                release.wait(10)
            return 0

        flusher = FileSystemFlush(self.devices, syncfs)
        self.addCleanup(flusher.close)
        passed = []
        records = [self.record(self.devices[0]) for _ in range(3)]

        def handOver(record):
            flusher.whenDurable(record, lambda r: passed.append((r, threading.current_thread().name)), self.fail)

        leader = threading.Thread(target=handOver, args=(records[0],), name="leader")
        leader.start()
        while not calls:
            time.sleep(0.001)
        handOver(records[1])
        handOver(records[2])
        self.assertEqual(passed, [], "the leader is still flushing; the others did not wait for it")
        release.set()
        leader.join(10)
        self.assertEqual(calls, ["leader", "leader"], "one more flush for both objects handed over meanwhile")
        self.assertEqual(passed, [(record, "leader") for record in records])

    def test_failedFlushFailsItsRecords(self):
        flusher = self.flusher(result=-1, error=errno.EIO)
        failures = []
        flusher.whenDurable(self.record(self.devices[0]), self.fail, failures.append)
        [failure] = failures
        self.assertEqual(failure.value.errno, errno.EIO)
        flusher.whenDurable(self.record(self.devices[0]), self.fail, failures.append)
        self.assertEqual(len(failures), 2, "the next object is flushed again")

    def test_failureToPassOnFailsOnlyThatRecord(self):
        flusher = self.flusher()
        failures, passed = [], []

        def refuse(record):
            raise ValueError("refused")

        flusher.whenDurable(self.record(self.devices[0]), refuse, failures.append)
        flusher.whenDurable(self.record(self.devices[1]), passed.append, self.fail)
        self.assertEqual(len(passed), 1, "the flusher keeps working")
        failures[0].trap(ValueError)

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
        self.addCleanup(flusher.close)
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
