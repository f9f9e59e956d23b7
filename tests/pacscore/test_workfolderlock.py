"""One pacs at a time in a working folder (``pacscore.workfolderlock``)."""

import os

from twisted.trial import unittest

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
