"""Tests for pacscore.codecs.codestreamheader: a compressed frame's own
header checked against the image its object describes, on the codestreams
of pydicom's test files and on decompression bombs made with the encoders
installed here."""

import io
import struct
from pathlib import Path

import jpeg_ls
import numpy as np
import openjpeg
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import generate_uid
from twisted.trial import unittest

from pacscore.codecs.codestreamheader import headerMismatch
from pacscore.codecs.syntaxes import (
    JPEG_2000, JPEG_2000_LOSSLESS, JPEG_BASELINE, JPEG_LS_LOSSLESS, NATIVE, RLE_LOSSLESS, isCompressed)

DATA = Path(get_testdata_file("CT_small.dcm")).parent  # pydicom's test files
# pydicom's test file whose codestream is damaged on purpose (no decoder reads it).
_UNDECODABLE = {"JPEG2000-embedded-sequence-delimiter.dcm"}
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"


def image(rows, columns, samples=1, bitsAllocated=8):
    """pydicom's pixel options of such an image."""
    return {"rows": rows, "columns": columns, "samples_per_pixel": samples, "bits_allocated": bitsAllocated,
            "number_of_frames": 1}


def jpegLS(rows, columns):
    return jpeg_ls.encode(np.zeros((rows, columns), np.uint8)).tobytes()


def j2k(rows, columns, **options):
    return openjpeg.encode(np.zeros((rows, columns), np.uint8), **options)


def baselineJpeg(rows, columns, **options):
    out = io.BytesIO()
    Image.new("L", (columns, rows)).save(out, "JPEG", **options)
    return out.getvalue()


BOMB_CODESTREAMS = {JPEG_LS_LOSSLESS: jpegLS, JPEG_2000_LOSSLESS: j2k, JPEG_BASELINE: baselineJpeg}


def bombDataset(syntax, side):
    """The reviewer's decompression bomb: CT_small made a 64 x 64 8-bit
    image whose one frame is a ``side`` x ``side`` codestream of zeros in
    ``syntax`` (one of ``BOMB_CODESTREAMS``), a few kB; new UIDs."""
    ds = pydicom.dcmread(DATA / "CT_small.dcm")
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    for keyword in ("WindowCenter", "WindowWidth", "RescaleIntercept", "RescaleSlope"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = encapsulate([BOMB_CODESTREAMS[syntax](side, side)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


class TestFilesTests(unittest.TestCase):

    def test_everyFrameOfTheTestFilesAgrees(self):
        """Every frame of every compressed file pydicom ships (JPEG
        baseline and extended 12-bit, YBR and RGB, lossless; JPEG-LS; JPEG
        2000; RLE of 8 to 32 bits, multi-frame) has a header describing its
        object's image: nothing valid is refused."""
        checked = 0
        for path in sorted(DATA.glob("*.dcm")):
            if path.name in _UNDECODABLE:
                continue
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:  # no Part-10 file
                continue
            syntax = ds.file_meta.get("TransferSyntaxUID")
            if syntax is None or not isCompressed(syntax) or "PixelData" not in ds:
                continue
            options = as_pixel_options(ds)
            for frame in generate_frames(ds.PixelData, number_of_frames=options["number_of_frames"]):
                self.assertIsNone(headerMismatch(syntax, frame, options), path.name)
                checked += 1
        self.assertGreater(checked, 80)

    def test_damagedTestFileRefused(self):
        """pydicom's J2K file with a damaged SIZ (a width of 3.7 billion
        pixels, which Pillow calls a decompression bomb) is refused."""
        ds = pydicom.dcmread(DATA / "JPEG2000-embedded-sequence-delimiter.dcm")
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        self.assertIn("3722445056", headerMismatch(JPEG_2000, frame, as_pixel_options(ds)))


class BombTests(unittest.TestCase):
    """A codestream larger than its object says is refused, for each codec."""

    def assertRefused(self, syntax, frame, options, said="200 x 100 pixels of 1 sample(s)"):
        mismatch = headerMismatch(syntax, frame, options)
        self.assertIsNotNone(mismatch)
        self.assertIn(said, mismatch)

    def test_jpegLS(self):
        self.assertIsNone(headerMismatch(JPEG_LS_LOSSLESS, jpegLS(200, 100), image(200, 100)))
        self.assertRefused(JPEG_LS_LOSSLESS, jpegLS(200, 100), image(64, 64))

    def test_jpeg2000(self):
        """A bare codestream, a JP2 file, an HTJ2K syntax: their SIZ."""
        for frame in (j2k(200, 100), j2k(200, 100, codec_format=1)):
            self.assertIsNone(headerMismatch(JPEG_2000_LOSSLESS, frame, image(200, 100)))
            self.assertRefused(JPEG_2000_LOSSLESS, frame, image(64, 64))
            self.assertRefused(HTJ2K_LOSSLESS, frame, image(64, 64))

    def test_jpeg2000ImageOffset(self):
        """The image area is the reference grid less its offset (T.800
        B.2): a SIZ of 210 x 110 from 10, 10 is a 200 x 100 image."""
        frame = bytearray(j2k(200, 100))
        struct.pack_into(">IIII", frame, 8, 110, 210, 10, 10)
        self.assertIsNone(headerMismatch(JPEG_2000, bytes(frame), image(200, 100)))

    def test_baselineJpeg(self):
        """With restart markers too."""
        for options in ({}, {"restart_marker_blocks": 4}):
            frame = baselineJpeg(200, 100, **options)
            self.assertIsNone(headerMismatch(JPEG_BASELINE, frame, image(200, 100)))
            self.assertRefused(JPEG_BASELINE, frame, image(64, 64))

    def test_fillBytesBeforeTheFrameHeader(self):
        """0xFF fill bytes may come before any marker (T.81 B.1.1.2): the
        frame header after them is read."""
        for syntax, frame, sof in ((JPEG_BASELINE, baselineJpeg(200, 100), b"\xff\xc0"),
                                   (JPEG_LS_LOSSLESS, jpegLS(200, 100), b"\xff\xf7")):
            at = frame.index(sof)
            filled = frame[:at] + b"\xff\xff" + frame[at:]
            self.assertIsNone(headerMismatch(syntax, filled, image(200, 100)))
            self.assertRefused(syntax, filled, image(64, 64))

    def test_numberOfLinesInADNLSegment(self):
        """A frame header of 0 lines takes the number from the DNL segment
        after the first scan (T.81 B.2.5)."""
        frame = bytearray(baselineJpeg(200, 100))
        struct.pack_into(">H", frame, frame.index(b"\xff\xc0") + 5, 0)
        dnl = bytes(frame[:-2]) + b"\xff\xdc\x00\x04" + struct.pack(">H", 200) + b"\xff\xd9"
        self.assertIsNone(headerMismatch(JPEG_BASELINE, dnl, image(200, 100)))
        self.assertRefused(JPEG_BASELINE, dnl, image(64, 64))
        self.assertRefused(JPEG_BASELINE, bytes(frame), image(200, 100), "0 x 100 pixels")

    def test_samplesAndPrecision(self):
        """Other components than Samples per Pixel, samples wider than Bits
        Allocated, are refused."""
        self.assertRefused(JPEG_LS_LOSSLESS, jpegLS(200, 100), image(200, 100, 3), "the object says 200 x 100 of 3")
        wide = jpeg_ls.encode(np.zeros((200, 100), np.uint16) + 4095).tobytes()
        self.assertIsNone(headerMismatch(JPEG_LS_LOSSLESS, wide, image(200, 100, 1, 16)))
        self.assertRefused(JPEG_LS_LOSSLESS, wide, image(200, 100, 1, 8), "12-bit samples")

    def test_rle(self):
        """RLE has no dimensions: its segments must be those of Samples per
        Pixel and Bits Allocated, in order within the frame."""
        ds = pydicom.dcmread(DATA / "MR_small_RLE.dcm")
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        self.assertIsNone(headerMismatch(RLE_LOSSLESS, frame, image(64, 64, 1, 16)))
        self.assertIn("2 segment(s), the object's pixels 6",
                      headerMismatch(RLE_LOSSLESS, frame, image(64, 64, 3, 16)))
        disordered = bytearray(frame)
        struct.pack_into("<L", disordered, 8, len(frame) + 1000)
        self.assertIn("not in order", headerMismatch(RLE_LOSSLESS, bytes(disordered), image(64, 64, 1, 16)))
        self.assertIn("shorter than its header", headerMismatch(RLE_LOSSLESS, frame[:20], image(64, 64, 1, 16)))

    def test_noHeader(self):
        """A frame without a header found is refused; native syntaxes have none to read."""
        self.assertIn("no frame header", headerMismatch(JPEG_LS_LOSSLESS, b"\x00" * 100, image(64, 64)))
        self.assertIn("no frame header", headerMismatch(JPEG_2000, b"\xff\xd8\xff\xd9", image(64, 64)))
        for syntax in NATIVE:
            self.assertIsNone(headerMismatch(syntax, b"\x00" * 100, image(64, 64)))
