"""MAG devices: where a stored file's relative name points; what is a
full disk."""

import errno
import os
import subprocess

import psycopg.errors
import pymysql.err
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from twisted.trial import unittest

from pacscore.storage.devices import MagDevice, checkPresent, isDiskFull, mountPointOf
from pacscore.testing.tmpfs import mountTmpfs


def fullSQLiteError(testCase):
    """The error SQLAlchemy raises for SQLite's own SQLITE_FULL: a file
    limited by ``PRAGMA max_page_count`` getting a 100 KB row."""
    engine = create_engine("sqlite:///" + os.path.abspath(testCase.mktemp()))
    testCase.addCleanup(engine.dispose)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE filler (b BLOB)")
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
        connection.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
        return testCase.assertRaises(OperationalError, connection.exec_driver_sql,
                                     "INSERT INTO filler VALUES (zeroblob(100000))")


class AbsoluteTests(unittest.TestCase):

    def setUp(self):
        self.device = MagDevice("MAG0", "/srv/pacs/data")

    def test_insideTheDevice(self):
        self.assertEqual(self.device.absolute("PAT1/1.2.3.dcm"), os.path.join(self.device.path, "PAT1", "1.2.3.dcm"))
        self.assertEqual(self.device.absolute("PAT1/../PAT2/x.dcm"), os.path.join(self.device.path, "PAT2", "x.dcm"))

    def test_refusesWhatLeavesTheDevice(self):
        for relative in ("../x.dcm", "PAT1/../../x.dcm", "../data2/x.dcm", "..", "", "."):
            error = self.assertRaises(ValueError, self.device.absolute, relative)
            self.assertIn("MAG0", str(error))


class DiskFullTests(unittest.TestCase):
    """isDiskFull: the errors that answer A700 (out of resources)."""

    def test_fileSystem(self):
        self.assertTrue(isDiskFull(OSError(errno.ENOSPC, "No space left on device")))
        self.assertTrue(isDiskFull(OSError(errno.EDQUOT, "Disk quota exceeded")))
        self.assertFalse(isDiskFull(OSError(errno.EACCES, "Permission denied")))
        self.assertFalse(isDiskFull(ValueError("full")))

    def test_sqlite(self):
        """SQLite's "database or disk is full" (a full disk or max_page_count)."""
        error = fullSQLiteError(self)
        self.assertIn("database or disk is full", str(error))
        self.assertTrue(isDiskFull(error))
        self.assertFalse(isDiskFull(OperationalError("SELECT", {}, OSError("no such table: x"))))

    def test_databaseServers(self):
        """PostgreSQL's disk_full (SQLSTATE 53100); MySQL's 1021 (disk full)
        and 1114 (the table is full); not their other errors."""
        def dbError(original):
            return OperationalError("INSERT", {}, original)
        self.assertTrue(isDiskFull(dbError(psycopg.errors.DiskFull("could not extend file"))))
        self.assertFalse(isDiskFull(dbError(psycopg.errors.QueryCanceled("canceling statement"))))
        self.assertTrue(isDiskFull(dbError(pymysql.err.OperationalError(1114, "The table 'x' is full"))))
        self.assertTrue(isDiskFull(dbError(pymysql.err.OperationalError(1021, "Disk full (/var/lib/mysql)"))))
        self.assertFalse(isDiskFull(dbError(pymysql.err.OperationalError(2003, "Can't connect"))))


class PresentTests(unittest.TestCase):
    """checkPresent: a device whose disk is unmounted takes nothing; one
    mounted again is taken at once, whatever its device number."""

    def mount(self, folder):
        mountTmpfs(self, folder, "1m")

    def test_aDiskMountedAgainIsTaken(self):
        mountPoint = os.path.abspath(self.mktemp())
        os.mkdir(mountPoint)
        self.mount(mountPoint)
        device = MagDevice("MAG0", os.path.join(mountPoint, "data"))
        device.prepare()
        self.assertEqual(device.mountPoint, mountPoint)
        checkPresent(device)
        subprocess.run(["umount", "-l", mountPoint], check=True)
        os.makedirs(device.tempDir)  # the folder as it was, on the disk beneath
        error = self.assertRaises(FileNotFoundError, checkPresent, device)
        self.assertIn(f"MAG0 is not there (a disk not mounted?): {mountPoint} is no longer a mount point",
                      str(error))
        self.mount(mountPoint)  # another tmpfs: another st_dev
        os.makedirs(device.tempDir)
        checkPresent(device)

    def test_aDeviceHeldBackIsTakenOnceItsFolderHoldsFiles(self):
        """A device held back at start-up (absent, move marks waiting for
        it) is not there while its folder is empty, and nothing is written
        in it; once its disk is mounted there again it is prepared."""
        mountPoint = os.path.abspath(self.mktemp())
        os.mkdir(mountPoint)
        device = MagDevice("MAG1", mountPoint)
        device.holdBack()
        error = self.assertRaises(FileNotFoundError, checkPresent, device)
        self.assertIn("MAG1 is not there (a disk not mounted?): its folder is empty", str(error))
        self.assertEqual(os.listdir(mountPoint), [])
        self.mount(mountPoint)
        os.makedirs(device.tempDir)  # what pacs left on the disk
        open(os.path.join(device.tempDir, "store-1-1.part"), "w").close()
        checkPresent(device)
        self.assertEqual(device.mountPoint, mountPoint)
        self.assertEqual(len(os.listdir(device.tempDir)), device.reservoirSize)

    def test_mountPointOf(self):
        """The nearest mount point at or above, None for ``/``."""
        self.assertEqual(mountPointOf("/proc/self"), "/proc")
        self.assertIsNone(mountPointOf("/"))
