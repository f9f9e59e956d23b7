"""The conversion commands through the real ``dgate`` against a running
``twistd -n pacs``: count_frames, extract_frames (native and
encapsulated Pixel Data) and uncompress (JPEG lossless back to explicit
little endian, the pixels compared with numpy)."""

import os
import shutil
import tempfile

import numpy
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGLosslessSV1, generate_uid
from twisted.trial import unittest

from pacscore.codecs.transcode import transcode
from pacscore.dicom.datasets import encodeDataset
from pacscore.storage.part10 import encodeFileMeta
from pacscore.testing.corpus import makeDataset
from tests.interop.server import PacsServer

FRAMES = 4


def multiFrame(path, syntax=ExplicitVRLittleEndian, encapsulated=False):
    """A ``FRAMES``-frame 16x16 image whose frame N holds the value N (or,
    ``encapsulated``, fragments b"frame N"), written as Part-10."""
    ds = makeDataset("FRAMES", "Multi^Frame", generate_uid(), generate_uid(), generate_uid(), 1, 1,
                     rows=16, columns=16)
    ds.NumberOfFrames = FRAMES
    if encapsulated:
        ds.PixelData = encapsulate([f"frame {n}".encode() + b" " * (n % 2) for n in range(FRAMES)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        data = encodeDataset(ds, syntax)
    else:
        ds.PixelData = numpy.repeat(numpy.arange(FRAMES, dtype=numpy.uint16), 16 * 16).tobytes()
        data = transcode(encodeDataset(ds, ExplicitVRLittleEndian), ExplicitVRLittleEndian, syntax)
    with open(path, "wb") as f:
        f.write(encodeFileMeta(ds.SOPClassUID, ds.SOPInstanceUID, syntax, "1.2.3", "TEST"))
        f.write(data)
    return path


class ConversionCommandTests(unittest.TestCase):

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-conversion-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.server = PacsServer(os.path.join(self.workdir, "pacs"))
        self.server.start()
        self.addCleanup(self.server.stop)

    def dgate(self, *args, status=0):
        result = self.server.dgate(*args)
        self.assertEqual(result.returncode, status, f"dgate {args}: {result.stdout}{result.stderr}")
        return (result.stdout if status == 0 else result.stderr).strip()

    def test_countAndExtractNativeFrames(self):
        path = multiFrame(os.path.join(self.workdir, "native.dcm"))
        self.assertEqual(self.dgate(f"--count_frames:{path}"), str(FRAMES))
        out = os.path.join(self.workdir, "out", "frames.dcm")
        self.assertEqual(self.dgate(f"--extract_frames:{path},{out},1,2"), f"2 frame(s) written to {out}")
        extracted = pydicom.dcmread(out)
        self.assertEqual(int(extracted.NumberOfFrames), 2)
        self.assertEqual(extracted.pixel_array[:, 0, 0].tolist(), [1, 2])
        self.assertEqual(self.dgate(f"--count_frames:{out}"), "2")
        self.assertIn("numbered from 0", self.dgate(f"--extract_frames:{path},{out},4,5", status=1))
        self.assertIn("archive's own files",
                      self.dgate(f"--extract_frames:{path},{self.server.dataDir}/x.dcm,0,0", status=1))

    def test_extractEncapsulatedFrames(self):
        path = multiFrame(os.path.join(self.workdir, "encapsulated.dcm"), JPEGLosslessSV1, encapsulated=True)
        out = os.path.join(self.workdir, "one.dcm")
        self.assertEqual(self.dgate(f"--extract_frames:{path},{out},3"), f"1 frame(s) written to {out}")
        extracted = pydicom.dcmread(out)
        self.assertEqual(extracted.file_meta.TransferSyntaxUID, JPEGLosslessSV1)
        self.assertEqual(int(extracted.NumberOfFrames), 1)
        self.assertEqual(extracted.PixelData, encapsulate([b"frame 3 "]))

    def test_uncompress(self):
        path = multiFrame(os.path.join(self.workdir, "jpeg.dcm"), JPEGLosslessSV1)
        out = os.path.join(self.workdir, "plain.dcm")
        self.assertIn("explicit VR little endian", self.dgate(f"--uncompress:{path},{out}"))
        plain = pydicom.dcmread(out)
        self.assertEqual(plain.file_meta.TransferSyntaxUID, ExplicitVRLittleEndian)
        self.assertEqual(plain.pixel_array[:, 0, 0].tolist(), list(range(FRAMES)))
        self.assertIn("No such file", self.dgate(f"--uncompress:{self.workdir}/missing.dcm,{out}", status=1))
