"""The configuration and UID control commands through the real ``dgate``
against a running ``twistd -n pacs``: dicom.ini changed on disk, the
acrnema.map listed, a DCMTK storescp added with ``put_amap`` and moved to
with DCMTK's movescu without a restart, UIDs changed and changed back."""

import os
import tempfile

import pydicom
from pydicom.data import get_testdata_file
from twisted.trial import unittest

from pacscore.config.acrnema import AcrNemaMap
from pacscore.config.ini import DicomIni
from tests.interop.peers import StorescpServer
from tests.interop.server import PacsServer, dcmtk

DESTINATION = "LIVEDEST"  # no wildcard entry of the default acrnema.map (V*, S*) matches it


class ControlConfigurationTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-controlconfig-")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs")).start()
        cls.storescp = StorescpServer(os.path.join(cls.workdir, "storescp"), aet=DESTINATION)
        cls.storescp.start()
        cls.image = get_testdata_file("CT_small.dcm")
        result = cls.server.store(cls.image)
        assert result.returncode == 0, result.stderr

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.storescp.stop()

    def dgate(self, *args):
        """stdout of a dgate command that must succeed."""
        result = self.server.dgate(*args)
        self.assertEqual(result.returncode, 0, f"dgate {args}: {result.stdout}{result.stderr}")
        return result.stdout

    def test_paramRoundTrip(self):
        self.assertEqual(self.dgate("--get_param:TCPPort").strip(), str(self.server.port))
        self.dgate("--put_param:ControlTestKey,one, two")
        path = os.path.join(self.server.workdir, "dicom.ini")
        self.assertEqual(DicomIni.fromFile(path).get("ControlTestKey"), "one, two")
        self.assertEqual(self.dgate("--get_param:ControlTestKey,[%s]").strip(), "[one, two]")
        self.dgate("--delete_param:ControlTestKey")
        self.assertFalse(DicomIni.fromFile(path).has("ControlTestKey"))
        self.assertEqual(self.server.dgate("--delete_param:ControlTestKey").returncode, 1)

    def test_putParamRefusesAConverterLineThatWouldStopStartUp(self):
        """A Lua syntax error (or an unknown command) in a converter line in
        use is refused and dicom.ini kept; a good line is written."""
        path = os.path.join(self.server.workdir, "dicom.ini")
        for line in ('lua "print(1"', "nosuchcommand 1"):
            result = self.server.dgate(f"--put_param:QueryConverter0,{line}")
            self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
            self.assertIn("QueryConverter0 not changed: QueryConverter0", result.stdout + result.stderr)
            self.assertFalse(DicomIni.fromFile(path).has("QueryConverter0"))
        self.dgate('--put_param:QueryConverter0,lua "print(1)"')
        result = self.server.dgate('--put_param:QueryConverter0,lua "print("')
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertEqual(DicomIni.fromFile(path).get("QueryConverter0"), 'lua "print(1)"')
        self.dgate("--delete_param:QueryConverter0")

    def test_getAmaps(self):
        lines = self.dgate("--get_amaps:%s %s %s").splitlines()
        self.assertIn("CONQUESTSRV1 127.0.0.1 5678", lines)
        self.assertEqual(self.dgate("--get_amap:0,%s").strip(), "CONQUESTSRV1")

    def move(self):
        study = pydicom.dcmread(self.image, stop_before_pixels=True).StudyInstanceUID
        return dcmtk("movescu", "-v", "-S", "-aec", self.server.ae, "-aem", DESTINATION,
                     "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                     "127.0.0.1", self.server.port)

    def test_putAmapIsLiveForMove(self):
        refused = self.move()
        self.assertIn("MoveDestinationUnknown", refused.stdout + refused.stderr)
        count = len(AcrNemaMap.fromFile(os.path.join(self.server.workdir, "acrnema.map")).nodes)
        self.dgate(f"--put_amap:{count},{DESTINATION},127.0.0.1,{self.storescp.port},un")
        moved = self.move()
        self.assertEqual(moved.returncode, 0, moved.stderr)
        self.assertIn("Received Final Move Response (Success)", moved.stdout + moved.stderr)
        original = pydicom.dcmread(self.image)
        self.assertEqual([ds.SOPInstanceUID for ds in self.storescp.datasets()], [original.SOPInstanceUID])
        path = os.path.join(self.server.workdir, "acrnema.map")
        self.assertIsNone(AcrNemaMap.fromFile(path).lookup(DESTINATION))
        self.dgate("--write_amap:")
        self.assertEqual(AcrNemaMap.fromFile(path).lookup(DESTINATION).port, str(self.storescp.port))

    def test_uidRoundTrip(self):
        prefix = self.dgate("--get_param:UIDPrefix").strip()
        generated = self.dgate("--genuid:").strip()
        self.assertTrue(generated.startswith(prefix + "."), generated)
        original = "1.2.3.4.5.6.7"
        new = self.dgate(f"--changeuid:{original}").strip()
        self.assertTrue(new.startswith(prefix + "."), new)
        self.assertEqual(self.dgate(f"--changeuid:{original}").strip(), new)
        self.assertEqual(self.dgate(f"--changeuidback:{new}").strip(), original)
        unknown = self.server.dgate("--changeuidback:9.9.9.9")
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("9.9.9.9", unknown.stdout + unknown.stderr)
