"""A third-party converter command: tests/plugindist (the ``stamp``
command) is built into a wheel, installed with pip into a folder on the
server's PYTHONPATH, and a running ``twistd -n pacs`` uses it from
dicom.ini, found with getPlugins like the built-in commands."""

import glob
import os
import subprocess
import sys
import tempfile

import pydicom
from pydicom.uid import generate_uid
from twisted.trial import unittest

from pacscore.testing.corpus import makeDataset
from tests.interop.server import PacsServer

DISTRIBUTION = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugindist")


def pip(*args):
    result = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


class ConverterPluginTests(unittest.TestCase):

    def test_stampFromAnInstalledWheel(self):
        workdir = tempfile.mkdtemp(prefix="pacs-plugin-")
        wheels, site = os.path.join(workdir, "wheels"), os.path.join(workdir, "site")
        pip("wheel", "--no-deps", "-w", wheels, DISTRIBUTION)
        [wheel] = glob.glob(os.path.join(wheels, "pacs_stamp-1.0-*.whl"))
        pip("install", "--no-deps", "--target", site, wheel)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")])))
        server = PacsServer(os.path.join(workdir, "pacs"), env=env,
                            ini={"ImportConverters": "1", "ImportConverter0": 'stamp "received from %u by %c"'})
        server.start()
        self.addCleanup(server.stop)
        ds = makeDataset("PAT1", "Stamp^Test", generate_uid(), generate_uid(), generate_uid(), 1, 1, rows=8,
                         columns=8)
        path = os.path.join(workdir, "image.dcm")
        ds.save_as(path, enforce_file_format=True)
        result = server.store(path, calling="MODALITY1")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [stored] = glob.glob(os.path.join(server.dataDir, "**", "*.dcm"), recursive=True)
        self.assertEqual(pydicom.dcmread(stored).ImageComments, "received from MODALITY1 by PACS")

    def test_unknownCommandStopsStartUp(self):
        server = PacsServer(self.mktemp(), ini={"ImportConverters": "1",
                                                "ImportConverter0": 'stamp "no plugin installed"'})
        with self.assertRaises(AssertionError) as raised:
            server.start()
        self.assertIn("ImportConverter0", str(raised.exception))
