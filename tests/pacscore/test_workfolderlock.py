"""One pacs at a time in a working folder (``pacscore.workfolderlock``)."""

import errno
import os
from types import SimpleNamespace

from twisted.trial import unittest

from pacscore import workfolderlock
from pacscore.workfolderlock import LOCK_NAME, LockError, WorkFolderLock


class WorkFolderLockTests(unittest.TestCase):

    def setUp(self):
        self.folder = self.mktemp()
        os.makedirs(self.folder)

    def held(self):
        lock = WorkFolderLock(self.folder)
        lock.acquire()
        self.addCleanup(lock.release)
        return lock

    def test_aSecondHolderIsRefusedWithTheFolderAndPid(self):
        self.held()
        error = self.assertRaises(LockError, WorkFolderLock(self.folder).acquire)
        self.assertEqual(str(error), f"the working folder {self.folder} is in use by pacs pid {os.getpid()} "
                                     f"(which holds {LOCK_NAME} there): stop it first")

    def test_releasedItCanBeTakenAgain(self):
        first = WorkFolderLock(self.folder)
        first.acquire()
        first.release()
        self.held()

    def test_theServingProcessWritesItsPid(self):
        lock = self.held()
        with open(lock.path, "w") as f:
            f.write("1\n")  # the launcher's, before twistd forked its daemon
        lock.startService()
        with open(lock.path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")

    def test_aFolderNotWritable(self):
        error = self.assertRaises(LockError, WorkFolderLock(os.path.join(self.folder, "gone")).acquire)
        self.assertIn("No such file or directory", str(error))


class UnwritableFolderTests(unittest.TestCase):
    """A working folder pacs may not write (read-only, its data, index and
    logs elsewhere) has the lock in the folder of MAG0."""

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        self.mag0 = os.path.join(self.folder + "-rw", "data")
        os.makedirs(self.folder)
        os.makedirs(self.mag0)
        openLockFile = workfolderlock.openLockFile

        def refused(path):
            if os.path.dirname(path) == self.folder:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
            return openLockFile(path)

        self.patch(workfolderlock, "openLockFile", refused)

    def test_theLockGoesInMag0AndIsFoundThereAgain(self):
        """Server and dgate -i/-r build it alike, from the configuration."""
        configuration = SimpleNamespace(workdir=self.folder, magDevices=[("MAG0", self.mag0)])
        lock = WorkFolderLock.of(configuration)
        lock.acquire()
        self.addCleanup(lock.release)
        self.assertEqual(lock.path, os.path.join(self.mag0, LOCK_NAME))
        error = self.assertRaises(LockError, WorkFolderLock.of(configuration).acquire)
        self.assertEqual(str(error), f"the working folder {self.folder} is in use by pacs pid {os.getpid()} "
                                     f"(which holds {self.mag0}/{LOCK_NAME}): stop it first")

    def test_neitherFolderWritable(self):
        gone = os.path.join(self.mag0, "gone")
        error = self.assertRaises(LockError, WorkFolderLock(self.folder, gone).acquire)
        self.assertEqual(str(error), f"{self.folder}/{LOCK_NAME}: Read-only file system, nor {gone}/{LOCK_NAME}: "
                                     "No such file or directory (the lock goes in the folder of MAG0 when pacs "
                                     "may not write the working folder)")

    def test_otherFailuresAreNotPassedOver(self):
        missing = os.path.join(self.folder, "gone")
        error = self.assertRaises(LockError, WorkFolderLock(missing, self.mag0).acquire)
        self.assertEqual(str(error), f"{missing}/{LOCK_NAME}: No such file or directory")
