"""MAGDeviceFullThreshHold against a running ``twistd -n pacs`` with two MAG
devices on two real file systems (/dev/shm and the test folder's disk):
with the threshold between their free spaces, MAG0 (the one with less room)
counts as full, so what storescu sends is stored on MAG1, indexed there and
retrieved from there by getscu."""

import os
import shutil
import tempfile

import pydicom
from pydicom.data import get_testdata_file
from twisted.trial import unittest

from pacscore.storage.space import MEGABYTE
from pacscore.testing.tmpfs import mountTmpfs
from tests.interop.index import column
from tests.interop.server import PacsServer
from tests.interop.test_retrieve import getSeries
from tests.interop.test_storage import writeLargeMultiframe


class FullDeviceTests(unittest.TestCase):

    def test_aFullMAG0SpillsOverToMAG1(self):
        disk = os.path.abspath(self.mktemp())
        os.makedirs(disk)
        memory = tempfile.mkdtemp(prefix="pacs-mag-", dir="/dev/shm")
        self.addCleanup(shutil.rmtree, memory, True)
        (mag0, low), (mag1, high) = sorted(((folder, shutil.disk_usage(folder).free) for folder in (disk, memory)),
                                           key=lambda pair: pair[1])
        self.assertGreater(high - low, 2000 * MEGABYTE, "the two file systems need different free space")
        server = PacsServer(self.mktemp(), ini={"MAGDevices": "2", "MAGDevice0": mag0 + os.sep,
                                               "MAGDevice1": mag1 + os.sep,
                                               "MAGDeviceFullThreshHold": str((low + high) // 2 // MEGABYTE)})
        server.start()
        self.addCleanup(server.stop)
        paths = [get_testdata_file(name) for name in ("CT_small.dcm", "MR_small.dcm")]
        result = server.store(*paths)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(column(server.database, "DICOMImages", "DeviceName"), ["MAG1", "MAG1"])
        for name in column(server.database, "DICOMImages", "ObjectFile"):
            self.assertTrue(os.path.exists(os.path.join(mag1, name)), name)
        self.assertIn("MAG0 has", server.log())
        self.assertIn("new objects go to MAG1", server.log())
        ct = pydicom.dcmread(paths[0])
        self.assertEqual(getSeries(server, server.workdir,
                                   ct.StudyInstanceUID, ct.SeriesInstanceUID), {ct.SOPInstanceUID})

    def test_largeObjectsDoNotGoBackToAFullMAG0(self):
        """8 MB objects, a threshold of 5 MB and a MAG0 of 14 MB: the one
        whose spool does not fit MAG0 is refused (A700), and MAG0 is left
        for MAG1 until it has room for such an object, so the others go in
        (every other one was refused, MAG0 taken back as soon as the failed
        spool was removed)."""
        mag0 = os.path.abspath(self.mktemp())
        os.makedirs(mag0)
        mountTmpfs(self, mag0, "14m")
        mag1 = os.path.abspath(self.mktemp())
        server = PacsServer(self.mktemp(), ini={"MAGDevices": "2", "MAGDevice0": mag0 + os.sep,
                                               "MAGDevice1": mag1 + os.sep, "MAGDeviceFullThreshHold": "5"})
        server.start()
        self.addCleanup(server.stop)
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        paths = [os.path.join(folder, f"big{n}.dcm") for n in range(6)]
        for n, path in enumerate(paths):
            writeLargeMultiframe(path, f"1.2.3.4.5.6.9.{n}", frames=16)
        result = server.store(*paths, extra=("-v", "--no-halt"))
        output = result.stdout + result.stderr
        self.assertEqual((output.count("(Success)"), output.count("(Refused: OutOfResources)")), (5, 1), output)
        self.assertEqual(sorted(column(server.database, "DICOMImages", "DeviceName")), ["MAG0"] + ["MAG1"] * 4)
