"""FileSystemFlush: one syncfs per file system of a commit group's files
and of the index database, errors raised, no sync while writing; the
choice of policy."""

import ctypes
import errno
import os

from twisted.trial import unittest

from pacscore.db.records import ImageRecord
from pacscore.storage.devices import MagDevice
from pacscore.storage.durability import (FileSystemFlush, FlushError, PerFileSync, durabilityFor,
                                         libcSyncfs, reportsWritebackErrors)


class FileSystemFlushTests(unittest.TestCase):

    def setUp(self):
        root = os.path.abspath(self.mktemp())
        self.devices = [MagDevice(f"MAG{n}", os.path.join(root, f"mag{n}")) for n in range(2)]
        for device in self.devices:
            os.makedirs(device.path)
        self.calls = []

    def record(self, device):
        return ImageRecord({}, device.name, "a/b.dcm")

    def syncfs(self, fd, result=0, error=0):
        self.calls.append(os.fstat(fd).st_dev)
        ctypes.set_errno(error)
        return result

    def flusher(self, result=0, error=0):
        flusher = FileSystemFlush(self.devices, lambda fd: self.syncfs(fd, result, error))
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
        error = self.assertRaises(FlushError, flusher.flush, [self.record(self.devices[0])])
        self.assertEqual(error.errno, errno.EIO)
        self.assertIn(self.devices[0].path, str(error))

    def test_indexFolderFlushedWithEveryCommit(self):
        root = os.path.dirname(self.devices[0].path)
        flusher = FileSystemFlush(self.devices, self.syncfs, indexFolder=root)
        self.addCleanup(flusher.close)
        flusher.flush([])
        self.assertEqual(self.calls, [os.stat(root).st_dev], "a commit without images is flushed too")
        flusher.flush([self.record(self.devices[0]), self.record(self.devices[1])])
        self.assertEqual(len(self.calls), 2, "one file system: one syncfs for the files and the rows")

    def test_withoutIndexFolderNothingToFlushWithoutImages(self):
        flusher = self.flusher()
        flusher.flush([])
        self.assertEqual(self.calls, [])

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
