"""Converter lines changed in a running ``twistd -n pacs`` through the real
``dgate`` (``--put_param``, ``--delete_param``, a hand edit then
``--read_ini``), seen on the objects DCMTK's storescu stores afterwards:
the import lines, and the export lines while their numbers stay, apply at
once, as in Conquest; a line that does not parse is refused, changing
nothing."""

import glob
import os
import tempfile

import pydicom
from pydicom.uid import generate_uid
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.testing.corpus import makeDataset
from tests.interop.server import PacsServer, waitFor

FIRST = 'set 0008,0080 to "FIRST"'


class ConverterLinesTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-converterlines-")
        cls.exports = os.path.join(cls.workdir, "exports.txt")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"), ini={
            "ImportConverters": "1", "ImportModality0": "CT", "ImportConverter0": FIRST,
            "ExportConverters": "1", "ExportConverter0": cls.exportLine("A")}).start()
        cls.iniPath = os.path.join(cls.server.workdir, "dicom.ini")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    @classmethod
    def exportLine(cls, mark):
        """A line that appends ``mark`` and the stored object's SOP Instance UID to exports.txt."""
        return f'append "{mark} %o%n" to {cls.exports}'

    def setUp(self):
        with open(self.iniPath, "rb") as f:
            original = f.read()
        self.addCleanup(self.restoreIni, original)

    def restoreIni(self, original):
        """dicom.ini as the server started with it, in the file and in the server."""
        with open(self.iniPath, "wb") as f:
            f.write(original)
        self.dgate("--read_ini:")

    def dgate(self, *args):
        """stdout of a dgate command that must succeed."""
        result = self.server.dgate(*args)
        self.assertEqual(result.returncode, 0, f"dgate {args}: {result.stdout}{result.stderr}")
        return result.stdout

    def refused(self, *args):
        """What a dgate command that must fail printed."""
        result = self.server.dgate(*args)
        self.assertEqual(result.returncode, 1, f"dgate {args}: {result.stdout}{result.stderr}")
        return result.stdout + result.stderr

    def editByHand(self, **keys):
        ini = DicomIni.fromFile(self.iniPath)
        for key, value in keys.items():
            ini.set(key, value)
        ini.write(self.iniPath)

    def store(self):
        """Store a new CT image; the file the server stored."""
        ds = makeDataset("LIVE1", "Live^Lines", generate_uid(), generate_uid(), generate_uid(), 1, 1,
                         rows=8, columns=8)
        ds.InstitutionName = "SENT"
        path = os.path.join(self.workdir, f"{ds.SOPInstanceUID}.dcm")
        ds.save_as(path, enforce_file_format=True)
        result = self.server.store(path)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        stored = [pydicom.dcmread(name) for name in glob.glob(os.path.join(self.server.dataDir, "**", "*.dcm"),
                                                               recursive=True)]
        [found] = [each for each in stored if each.SOPInstanceUID == ds.SOPInstanceUID]
        return found

    def exported(self, sop):
        """The marks the export lines appended for ``sop``, once one did."""
        def marks():
            try:
                with open(self.exports) as f:
                    return [line.split()[0] for line in f if line.split()[1:] == [sop]]
            except FileNotFoundError:
                return []
        waitFor(marks, timeout=30, message=f"an export of {sop}")
        return marks()

    def test_importLineByPutParam(self):
        self.assertEqual(self.store().InstitutionName, "FIRST")
        answer = self.dgate('--put_param:ImportConverter0,set 0008,0080 to "SECOND"')
        self.assertNotIn("restart", answer)
        self.assertEqual(self.store().InstitutionName, "SECOND")
        self.dgate("--put_param:ImportModality0,MR")
        self.assertEqual(self.store().InstitutionName, "SENT")
        self.dgate("--delete_param:ImportModality0")
        self.assertEqual(self.store().InstitutionName, "SECOND")

    def test_importLineByReadIni(self):
        self.editByHand(ImportConverter0='set 0008,0080 to "BYHAND"')
        answer = self.dgate("--read_ini:")
        self.assertNotIn("restart", answer)
        self.assertEqual(self.store().InstitutionName, "BYHAND")

    def test_readIniRefusesALineThatDoesNotParse(self):
        """A bad line refuses the whole file, naming file, line and key:
        the lines and the other values in use stay."""
        self.editByHand(ImportConverter0="frobnicate 0008,0080", RetryDelay="55")
        line = DicomIni.fromFile(self.iniPath).lineOf("ImportConverter0")
        message = self.refused("--read_ini:")
        self.assertIn(f"{self.iniPath}:{line}: ImportConverter0", message)
        self.assertIn("frobnicate", message)
        self.assertEqual(self.dgate("--get_param:ImportConverter0").strip(), FIRST)
        self.assertNotEqual(self.dgate("--get_param:RetryDelay").strip(), "55")
        self.assertEqual(self.store().InstitutionName, "FIRST")

    def test_putParamRefusesALineThatDoesNotParse(self):
        message = self.refused("--put_param:ImportConverter0,frobnicate 0008,0080")
        self.assertIn("ImportConverter0 not changed", message)
        self.assertEqual(DicomIni.fromFile(self.iniPath).get("ImportConverter0"), FIRST)
        self.assertEqual(self.store().InstitutionName, "FIRST")

    def test_exportLineByPutParam(self):
        self.assertEqual(self.exported(self.store().SOPInstanceUID), ["A"])
        answer = self.dgate(f"--put_param:ExportConverter0,{self.exportLine('B')}")
        self.assertNotIn("restart", answer)
        self.assertEqual(self.exported(self.store().SOPInstanceUID), ["B"])

    def test_exportLineAddedAtTheNextStart(self):
        """A line added (or emptied, or ExportConverters changed so) would
        change the export lanes: the lines in use stay until a restart, and
        the answer says so."""
        self.dgate("--put_param:ExportConverters,2")
        answer = self.dgate(f"--put_param:ExportConverter1,{self.exportLine('C')}")
        self.assertIn("takes effect when the server restarts: ExportConverter1", answer)
        answer = self.dgate(f"--put_param:ExportConverter0,{self.exportLine('B')}")
        self.assertIn("takes effect when the server restarts: ExportConverter0", answer)
        self.assertEqual(self.exported(self.store().SOPInstanceUID), ["A"])
