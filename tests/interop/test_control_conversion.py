"""The conversion commands through the real ``dgate`` against a running
``twistd -n pacs``: count_frames, extract_frames (native and
encapsulated Pixel Data), uncompress (JPEG lossless back to explicit
little endian, the pixels compared with numpy), testcompress (one
stored series per compression code, checked with findscu) and the
picture conversions (convert_to_gif/bmp/jpg read back with Pillow,
convert_to_dicom with pydicom), to files and to dgate's standard output."""

import io
import os
import shutil
import tempfile

import numpy
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGExtended12Bit, JPEGLosslessSV1, generate_uid
from twisted.trial import unittest

from pacscore.codecs import nki
from pacscore.codecs.transcode import transcode
from pacscore.control.conversion import TEST_CODES
from pacscore.dicom.datasets import encodeDataset
from pacscore.storage.part10 import encodeFileMeta
from pacscore.testing.corpus import makeDataset
from tests.interop.server import PacsServer
from tests.interop.test_find import STUDY_ROOT, findscu
from tests.interop.test_pixelcodes import firstQuantisationEntry

FRAMES = 4


def multiFrame(path, syntax=ExplicitVRLittleEndian, encapsulated=False, size=16):
    """A ``FRAMES``-frame ``size``x``size`` image whose frame N holds the value N (or,
    ``encapsulated``, fragments b"frame N"), written as Part-10."""
    ds = makeDataset("FRAMES", "Multi^Frame", generate_uid(), generate_uid(), generate_uid(), 1, 1,
                     rows=size, columns=size)
    ds.NumberOfFrames = FRAMES
    if encapsulated:
        ds.PixelData = encapsulate([f"frame {n}".encode() + b" " * (n % 2) for n in range(FRAMES)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        data = encodeDataset(ds, syntax)
    else:
        ds.PixelData = numpy.repeat(numpy.arange(FRAMES, dtype=numpy.uint16), size * size).tobytes()
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
        self.assertIn("no output file given", self.dgate(f"--uncompress:{path}", status=1))
        self.assertIn("no output file given", self.dgate(f"--extract_frames:{path},,0", status=1))

    def test_testcompress(self):
        path = multiFrame(os.path.join(self.workdir, "test.dcm"), size=64)  # openjpeg wants 64x64 or more
        lines = self.dgate(f"--testcompress:{path}").splitlines()
        self.assertEqual([line.split(":")[0] for line in lines], list(TEST_CODES))
        byCode = dict(line.split(": ", 1) for line in lines)
        self.assertTrue(byCode["j1"].endswith(f" {JPEGLosslessSV1}"), byCode["j1"])
        self.assertTrue(byCode["jk"].endswith(f" {JPEG2000Lossless}"), byCode["jk"])
        self.assertTrue(byCode["un"].endswith(f" {ExplicitVRLittleEndian}"), byCode["un"])
        for code in ("j3", "j4", "j5", "j6"):  # 16 bits allocated: JPEG Extended, not Baseline
            self.assertTrue(byCode[code].endswith(f" {JPEGExtended12Bit}"), byCode[code])
        self.assertNotIn("not converted", "\n".join(lines))
        for mode in (1, 2, 3, 4):
            self.assertTrue(byCode[f"n{mode}"].endswith(f" {ExplicitVRLittleEndian} NKI mode {mode}"),
                            byCode[f"n{mode}"])
        study = pydicom.dcmread(path).StudyInstanceUID
        matches, _ = findscu(self.server, STUDY_ROOT, "SERIES",
                             {"StudyInstanceUID": study, "SeriesInstanceUID": None, "SeriesDescription": None})
        self.assertEqual(sorted(m.SeriesDescription for m in matches), sorted(f"testcompress {c}" for c in TEST_CODES))
        for code in ("j1", "jk"):
            stored = pydicom.dcmread(os.path.join(self.server.dataDir, byCode[code].split()[0][len("MAG0:"):]))
            self.assertEqual(stored.pixel_array[:, 0, 0].tolist(), list(range(FRAMES)))
        original = pydicom.dcmread(path).PixelData
        for code in ("n1", "n4"):
            stored = pydicom.dcmread(os.path.join(self.server.dataDir, byCode[code].split()[0][len("MAG0:"):]))
            self.assertNotIn("PixelData", stored)
            self.assertEqual(nki.decompress(stored[0x7FDF0010].value), original)


class PictureCommandTests(unittest.TestCase):
    """convert_to_gif/bmp/jpg/dicom through dgate and the control port."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-pictures-")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.server.start()
        cls.ct = get_testdata_file("CT_small.dcm")
        cls.frames = multiFrame(os.path.join(cls.workdir, "frames.dcm"), size=64)
        result = cls.server.store(cls.ct)
        assert result.returncode == 0, result.stderr

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.workdir, True)

    def dgateBytes(self, command):
        result = self.server.dgate(command, text=False)
        self.assertEqual(result.returncode, 0, result.stderr.decode(errors="replace"))
        return result.stdout

    def test_toStandardOutput(self):
        """No output file (or ``binary``): the picture on standard output."""
        for command, kind, size in (("convert_to_gif", "GIF", 64), ("convert_to_bmp", "BMP", 32),
                                    ("convert_to_jpg", "JPEG", 0)):
            for out in ("", "binary"):
                image = Image.open(io.BytesIO(self.dgateBytes(f"--{command}:{self.ct},{size},{out}")))
                self.assertEqual(image.format, kind)
                self.assertEqual(image.size, (size or 128, size or 128))
        image = Image.open(io.BytesIO(self.dgateBytes(f"--convert_to_gif:{self.ct}")))
        self.assertEqual(image.size, (128, 128), "size 256 by default: not enlarged")

    def test_cgi(self):
        content = self.dgateBytes(f"--convert_to_jpg:{self.ct},64,cgi")
        header, _, picture = content.partition(b"\n\n")
        self.assertEqual(header, b"Content-type: image/jpeg")
        self.assertEqual(Image.open(io.BytesIO(picture)).size, (64, 64))

    def test_toAFileWithWindowAndFrame(self):
        out = os.path.join(self.workdir, "frame.bmp")
        self.assertEqual(self.dgate(f"--convert_to_bmp:{self.frames},0,{out},2/2/2"), f"{out} written")
        # frame 2 holds 2 everywhere: level 2, width 2 puts it in the middle of the grey scale
        pixels = numpy.asarray(Image.open(out).convert("L"))
        self.assertEqual(pixels.shape, (64, 64))
        self.assertEqual(set(pixels.ravel().tolist()), {128})
        self.assertIn("numbered from 0", self.dgate(f"--convert_to_bmp:{self.frames},0,{out},0/0/9", status=1))
        self.assertIn("archive's own files",
                      self.dgate(f"--convert_to_gif:{self.ct},0,{self.server.dataDir}/x.gif", status=1))

    def dgate(self, command, status=0):
        result = self.server.dgate(command)
        self.assertEqual(result.returncode, status, result.stdout + result.stderr)
        return (result.stdout if status == 0 else result.stderr).strip()

    def test_storedObjectsByPatientAndSOP(self):
        """Conquest's ``patid:sop`` (or ``|``, the patient ID may be empty)
        names a stored object."""
        ct = pydicom.dcmread(self.ct)
        byPath = self.dgateBytes(f"--convert_to_jpg:{self.ct},64")
        self.assertEqual(self.dgateBytes(f"--convert_to_jpg:{ct.PatientID}:{ct.SOPInstanceUID},64"), byPath)
        self.assertEqual(self.dgateBytes(f"--convert_to_jpg:|{ct.SOPInstanceUID},64"), byPath)
        self.assertEqual(self.dgate(f"--count_frames:{ct.PatientID}:{ct.SOPInstanceUID}"), "1")
        self.assertIn("no stored object 1.2.3.4 of patient nobody",
                      self.dgate("--count_frames:nobody:1.2.3.4", status=1))
        self.assertIn(f"no stored object {ct.SOPInstanceUID} of patient other",
                      self.dgate(f"--convert_to_gif:other:{ct.SOPInstanceUID}", status=1))

    def test_storedFilesAsListed(self):
        """A file name as imagelister prints it with ``#%s:%s`` (``MAG0:relative``) names
        the stored file for the reading commands; it never leads out of
        its device."""
        ct = pydicom.dcmread(self.ct)
        [name] = self.dgate(f"--imagelister:(local)|{ct.PatientID}|{ct.SeriesInstanceUID}|#%s:%s").splitlines()
        self.assertTrue(name.startswith("MAG0:"), name)
        self.assertEqual(self.dgate(f"--count_frames:{name}"), "1")
        self.assertEqual(self.dgateBytes(f"--convert_to_jpg:{name},64"), self.dgateBytes(f"--convert_to_jpg:{self.ct},64"))
        self.assertIn(f"(0008,0018) SOP Instance UID                    UI: {ct.SOPInstanceUID}",
                      self.dgate(f"--dump_header:{name}"))
        self.assertEqual(self.dgate(f"--dump_header:{ct.PatientID}:{ct.SOPInstanceUID}"),
                         self.dgate(f"--dump_header:{name}"))
        self.assertIn("is not a file inside MAG0", self.dgate("--dump_header:MAG0:../dicom.ini", status=1))
        self.assertIn("is the archive's index database",
                      self.dgate("--count_frames:MAG0:dbase/conquest.db3", status=1))

    def test_toDicom(self):
        """Frame 3 alone, in JPEG Extended at quality 20 (j420); CT_small downsized to 32."""
        content = self.dgateBytes(f"--convert_to_dicom:{self.frames},0,j420,3")
        frame = pydicom.dcmread(io.BytesIO(content))
        self.assertEqual(frame.file_meta.TransferSyntaxUID, JPEGExtended12Bit)
        self.assertEqual(int(frame.NumberOfFrames), 1)
        self.assertEqual(int(frame.pixel_array.mean().round()), 3)
        self.assertEqual(firstQuantisationEntry(frame), 40, "the code's own quality, 20")
        small = pydicom.dcmread(io.BytesIO(self.dgateBytes(f"--convert_to_dicom:{self.ct},32")))
        self.assertEqual((small.Rows, small.Columns), (32, 32))
        self.assertEqual(small.file_meta.TransferSyntaxUID, ExplicitVRLittleEndian)
        self.assertEqual(small.SOPInstanceUID, pydicom.dcmread(self.ct).SOPInstanceUID)
