"""Tests for pacscore.codecs.jpegmarkers: marker segments of JPEG and
JPEG-LS codestreams, and the spectral selection of sequential scans
mended."""

import numpy as np
from pydicom.encaps import generate_frames
from twisted.trial import unittest

from pacscore.codecs.jpeglossless import encodeFrame
from pacscore.codecs.jpegmarkers import endsWithEOI, hasScansToMend, near, samplePrecision, sequentialScansMended
from tests.pacscore.codecs.test_transcode import split

SOS = b"\xff\xda"


def firstFrame(name):
    _, _, ds = split(name)
    return next(generate_frames(ds.PixelData, number_of_frames=1))


class MarkerTests(unittest.TestCase):

    def test_samplePrecision(self):
        self.assertEqual(samplePrecision(firstFrame("JPGExtended.dcm")), 12)
        self.assertEqual(samplePrecision(encodeFrame(np.zeros((4, 4), np.uint16), 16)), 16)
        self.assertEqual(samplePrecision(b"\xff\xd8\xff\xd9"), 0)

    def test_near(self):
        self.assertEqual(near(firstFrame("JPEGLSNearLossless_08.dcm")), 2)
        self.assertEqual(near(firstFrame("MR_small_jpeg_ls_lossless.dcm")), 0)


class SequentialScansTests(unittest.TestCase):

    def test_spectralSelectionMended(self):
        """pydicom's JPEG-lossy.dcm: Se = 0 in its only scan header, made
        63; nothing else changes."""
        frame = firstFrame("JPEG-lossy.dcm")
        mended = sequentialScansMended(frame)
        at = frame.index(SOS) + 5 + 2 * frame[frame.index(SOS) + 4]
        self.assertEqual(frame[at:at + 2], b"\x00\x00")
        self.assertEqual(mended[at:at + 2], b"\x00\x3f")
        self.assertEqual(mended[:at] + mended[at + 2:], frame[:at] + frame[at + 2:])

    def test_everyScan(self):
        """Every scan of a stream with several (one per component) is mended."""
        frame = firstFrame("JPEG-lossy.dcm")
        start = frame.index(SOS)
        scan = frame[start:-2]  # the scan header and its entropy-coded data
        twoScans = frame[:-2] + scan + frame[-2:]
        mended = sequentialScansMended(twoScans)
        self.assertEqual(mended.count(b"\x00\x3f\x00", start), 2)
        self.assertIsNone(sequentialScansMended(mended))

    def test_nothingToMend(self):
        self.assertIsNone(sequentialScansMended(firstFrame("JPGExtended.dcm")))
        self.assertIsNone(sequentialScansMended(firstFrame("SC_rgb_jpeg_dcmtk.dcm")))
        # lossless: Ss is the predictor
        self.assertIsNone(sequentialScansMended(encodeFrame(np.zeros((4, 4), np.uint16), 12)))
        self.assertIsNone(sequentialScansMended(b""))

    def test_hasScansToMend(self):
        """Whether sequentialScansMended mends a stream, as it says; of two
        scans, the second alone saying other than 0..63 is enough."""
        frame = firstFrame("JPEG-lossy.dcm")
        sound = sequentialScansMended(frame)
        secondBad = sound[:-2] + frame[frame.index(SOS):-2] + frame[-2:]
        for stream in (frame, sound, secondBad, firstFrame("JPGExtended.dcm"), b""):
            self.assertEqual(hasScansToMend(stream), sequentialScansMended(stream) is not None)
        self.assertTrue(hasScansToMend(secondBad))


class EndOfImageTests(unittest.TestCase):

    def test_endsWithEOI(self):
        """After any 0x00 or 0xFF padding: GDCM pads its frames with 0x00,
        pydicom's JPEG-lossy.dcm with 0xFF; and after a few bytes of
        anything: DCMTK's dcmcjpls +en pads an odd-length frame with an
        uninitialised byte, some encoders add a line feed."""
        frame = firstFrame("MR_small_jpeg_ls_lossless.dcm")
        for whole in (frame, frame + b"\0\0\0", firstFrame("SC_rgb_jpeg_gdcm.dcm"), firstFrame("JPEG-lossy.dcm"),
                      b"\xff\xd9", frame + b"\x63", frame + b"\xd9", frame + b"\n\0", frame + bytes(range(1, 9))):
            self.assertTrue(endsWithEOI(whole), whole[-4:])
        for cut in (frame[:-2], frame[:len(frame) // 3], frame[:-1] + b"\0", b"\xd9", b"", frame + bytes(range(1, 10))):
            self.assertFalse(endsWithEOI(cut), cut[-4:])
