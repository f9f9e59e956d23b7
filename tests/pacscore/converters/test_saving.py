"""``save to``: the current data set of an import converter; in an export
converter the whole stored object, NKI compressed pixel data decompressed."""

import os
from types import SimpleNamespace

import pydicom
from pydicom.data import get_testdata_file
from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.codecs.nkipixels import compressDataset
from pacscore.codecs.syntaxes import IMPLICIT_VR_LITTLE_ENDIAN
from pacscore.converters.context import ConverterContext, ConverterServices, Outcome
from pacscore.converters.script import parseScript
from pacscore.dicom.datasets import encodeDataset
from plugins.pacs_commands_dataset import saveToCommand
from tests.pacscore.converters.lines import KEYS, registry, run


class SaveToTests(unittest.TestCase):

    def setUp(self):
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    def runExport(self, line, filename, header):
        context = ConverterContext("export", header, filename=filename, converterName=KEYS["export"],
                                   services=ConverterServices(configuration=SimpleNamespace(workdir=self.workdir)))
        return parseScript(line, KEYS["export"], registry(saveToCommand), "export").run(context)

    def test_import(self):
        outcome, _, _ = run("save to out/%i.dcm", commands=registry(saveToCommand), workdir=self.workdir)
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertEqual(pydicom.dcmread(os.path.join(self.workdir, "out", "123.dcm")).PatientID, "123")

    def test_valuesInTheFileNameStayInItsFolder(self):
        """``save to export/%i.dcm`` with a Patient ID that climbs out saves
        into export/ all the same; the template's own absolute path holds."""
        folder = os.path.join(self.workdir, "absolute")
        header = pydicom.Dataset()
        header.PatientID = "../../../../tmp/x"
        stored = os.path.join(self.workdir, "stored.dcm")
        pydicom.dcmread(get_testdata_file("CT_small.dcm")).save_as(stored)
        self.runExport(f"save to export/%i.dcm; save to {folder}/%i.dcm", stored, header)
        self.assertEqual(sorted(os.listdir(self.workdir)), ["absolute", "export", "stored.dcm"])
        self.assertEqual(os.listdir(os.path.join(self.workdir, "export")), ["_._.._.._.._tmp_x.dcm"])
        self.assertEqual(os.listdir(folder), ["_._.._.._.._tmp_x.dcm"])

    def test_exportSavesTheWholeObjectDecompressed(self):
        """A Conquest .v2 file (implicit VR, no meta) with n4 pixel data,
        the export converter's data set stopping before the pixels."""
        original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        stored = os.path.join(self.workdir, "stored.v2")
        with open(stored, "wb") as f:
            f.write(compressDataset(encodeDataset(original, IMPLICIT_VR_LITTLE_ENDIAN), IMPLICIT_VR_LITTLE_ENDIAN, 4))
        header = pydicom.dcmread(stored, force=True, stop_before_pixels=True)
        self.assertEqual(self.runExport("save to copy.dcm", stored, header), Outcome.CONTINUE)
        saved = pydicom.dcmread(os.path.join(self.workdir, "copy.dcm"))
        self.assertEqual(saved.PixelData, original.PixelData)
        self.assertNotIn(0x7FDF0010, saved)
        self.assertEqual(saved.pixel_array.tolist(), original.pixel_array.tolist())

    def test_exportOfAFileGone(self):
        with capturedLogs() as events:
            outcome = self.runExport("save to copy.dcm", os.path.join(self.workdir, "gone.dcm"), pydicom.Dataset())
        self.assertEqual(outcome, Outcome.CONTINUE)
        self.assertFalse(os.path.exists(os.path.join(self.workdir, "copy.dcm")))
        self.assertTrue(any("save to" in str(e.get("log_format", "")) for e in events))
