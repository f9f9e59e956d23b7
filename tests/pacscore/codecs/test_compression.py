"""Compression codes applied to data sets: the NKI codes beside the
transfer syntax ones."""

import numpy as np
from twisted.trial import unittest

from pacscore.codecs import nkipixels
from pacscore.codecs.compression import forPeer, keepsNKI, mayChange, nkiMode, recode, recodedSyntaxes
from pacscore.codecs.syntaxes import (
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, JPEG_2000, JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS)
from pacscore.codecs.transcode import TranscodeError, transcode
from tests.pacscore.codecs.test_nkipixels import encode, sample
from tests.pacscore.codecs.test_transcode import eightBitsInSixteen, image, signedTwelveBits

EXPLICIT = EXPLICIT_VR_LITTLE_ENDIAN


class RecodeTests(unittest.TestCase):

    def setUp(self):
        self.plain = encode(sample(), EXPLICIT)
        self.nki = nkipixels.compressDataset(self.plain, EXPLICIT, 3)
        self.jpeg = transcode(self.plain, EXPLICIT, JPEG_LOSSLESS_SV1)

    def test_lossyJpegTakesTheSecondSyntaxWhenTheFirstCannot(self):
        """j3 asks for JPEG Baseline, which takes 8-bit images only: a
        16-bit one goes in JPEG Extended."""
        self.assertEqual(recodedSyntaxes(EXPLICIT, "j3"), [JPEG_BASELINE, JPEG_EXTENDED])
        data, syntax = recode(self.plain, EXPLICIT, "j3")
        self.assertEqual(syntax, JPEG_EXTENDED)
        self.assertEqual(data, transcode(self.plain, EXPLICIT, JPEG_EXTENDED))
        self.assertNotEqual(recode(self.plain, EXPLICIT, "j4", quality=20)[0], data)
        self.assertEqual(recode(self.plain, EXPLICIT, "j420")[0], recode(self.plain, EXPLICIT, "j4", quality=20)[0],
                         "the code's own quality")

    def test_lossyJpegRefusedInBothSyntaxesSaysWhyForEach(self):
        """Signed 16-bit pixels spanning -32768..32767 go in neither JPEG
        Baseline (8-bit samples) nor JPEG Extended (12 bits): j3 and j4
        both say why for each, where only the last syntax tried was said
        (j4 only 'JPEG Baseline takes 8-bit samples', which is not why)."""
        ds = image()
        ds.PixelRepresentation = 1
        ds.PixelData = np.linspace(-32768, 32767, 64 * 64).astype("<i2").tobytes()
        plain = encode(ds, EXPLICIT)
        for code in ("j3", "j4"):
            error = self.assertRaises(TranscodeError, recode, plain, EXPLICIT, code)
            self.assertIn("JPEG Baseline takes 8-bit samples", str(error), code)
            self.assertIn("span -32768..32767, more than 12 bits can hold", str(error), code)
            self.assertIn("JPEG Baseline (Process 1)", str(error), code)
            self.assertIn("JPEG Extended (Process 2 and 4)", str(error), code)

    def test_nearLosslessOfSignedValuesAtTheirEndsIsLossless(self):
        """j770 (JPEG-LS with NEAR 3) of signed 12-bit pixels holding
        2047, which it would wrap to -2048: j7's JPEG-LS lossless instead,
        bit for bit."""
        plain = encode(signedTwelveBits(), EXPLICIT)
        self.assertEqual(recodedSyntaxes(EXPLICIT, "j7"), [JPEG_LS_NEAR_LOSSLESS, JPEG_LS_LOSSLESS])
        data, syntax = recode(plain, EXPLICIT, "j770")
        self.assertEqual(syntax, JPEG_LS_LOSSLESS)
        self.assertEqual(transcode(data, syntax, EXPLICIT), plain)

    def test_eightBitsInSixteenAreCodedLossless(self):
        """j770, j795, jl70 and jl95 of 8 bits stored in 16, which could
        be coded lossy only at 16 bits: coded lossless in the code's own
        syntax (JPEG-LS 4.81 with NEAR 0, JPEG 2000 4.91 reversible), word
        for word (an overlay bit, Bits Stored 8, no window added)."""
        for signed in (False, True):
            ds = eightBitsInSixteen(signed)
            del ds.RescaleSlope  # its malformed value made lossy coding fail anyway
            plain = encode(ds, EXPLICIT)
            for code, wanted in (("j770", JPEG_LS_NEAR_LOSSLESS), ("j795", JPEG_LS_NEAR_LOSSLESS),
                                 ("jl70", JPEG_2000), ("jl95", JPEG_2000)):
                data, syntax = recode(plain, EXPLICIT, code)
                self.assertEqual(syntax, wanted, (signed, code))
                self.assertEqual(transcode(data, syntax, EXPLICIT), plain, (signed, code))

    def test_nkiCodes(self):
        for code, mode in (("n1", 1), ("N2", 2), ("n3", 3), ("n4", 4), ("nj", 4)):
            self.assertEqual(nkiMode(code), mode)
            data, syntax = recode(self.plain, EXPLICIT, code)
            self.assertEqual(syntax, EXPLICIT)
            self.assertEqual(data, nkipixels.compressDataset(self.plain, EXPLICIT, mode))
            self.assertTrue(mayChange(None, EXPLICIT, code))
        self.assertIs(recode(self.nki, EXPLICIT, "n4")[0], self.nki, "already NKI: left as it is")

    def test_nkiOfCompressedData(self):
        """n4 decompresses JPEG first (explicit VR little endian); nj leaves it."""
        data, syntax = recode(self.jpeg, JPEG_LOSSLESS_SV1, "n4")
        self.assertEqual(syntax, EXPLICIT)
        self.assertEqual(recodedSyntaxes(JPEG_LOSSLESS_SV1, "n4"), [EXPLICIT])
        self.assertEqual(recodedSyntaxes(JPEG_LOSSLESS_SV1, "nj"), [JPEG_LOSSLESS_SV1])
        self.assertEqual(recodedSyntaxes(IMPLICIT_VR_LITTLE_ENDIAN, "n1"), [IMPLICIT_VR_LITTLE_ENDIAN])
        self.assertEqual(recodedSyntaxes(EXPLICIT, "j1"), [JPEG_LOSSLESS_SV1])
        self.assertEqual(nkipixels.decompressDataset(data, syntax), self.plain)
        self.assertEqual(recode(self.jpeg, JPEG_LOSSLESS_SV1, "nj"), (self.jpeg, JPEG_LOSSLESS_SV1))
        self.assertFalse(mayChange(self.jpeg, JPEG_LOSSLESS_SV1, "nj"))

    def test_otherCodesDecompressNKI(self):
        self.assertEqual(recode(self.nki, EXPLICIT, "un"), (self.plain, EXPLICIT))
        self.assertEqual(recode(self.nki, EXPLICIT, "uj"), (self.plain, EXPLICIT))
        data, syntax = recode(self.nki, EXPLICIT, "j1")
        self.assertEqual((data, syntax), (self.jpeg, JPEG_LOSSLESS_SV1))
        for code in ("un", "uj", "j1"):
            self.assertTrue(mayChange(self.nki, EXPLICIT, code), code)
            self.assertFalse(keepsNKI(code))
        self.assertFalse(mayChange(self.plain, EXPLICIT, "un"))
        self.assertFalse(mayChange(None, EXPLICIT, "un"), "not at hand: only the syntax counts")
        self.assertEqual(recode(self.jpeg, JPEG_LOSSLESS_SV1, "uj"), (self.jpeg, JPEG_LOSSLESS_SV1))

    def test_asAndUnknownCodesKeepNKI(self):
        for code in ("as", "", None, "v2", "zz"):
            self.assertTrue(keepsNKI(code))
            self.assertEqual(recode(self.nki, EXPLICIT, code), (self.nki, EXPLICIT))
            self.assertFalse(mayChange(self.nki, EXPLICIT, code))

    def test_forPeer(self):
        """A peer gets NKI pixel data when its code is an NKI one (JPEG
        decompressed first, but not for nj), plain pixel data otherwise in
        the syntax as stored."""
        self.assertEqual(forPeer(self.nki, EXPLICIT, "un"), (self.plain, EXPLICIT))
        self.assertEqual(forPeer(self.nki, EXPLICIT, "as"), (self.plain, EXPLICIT))
        self.assertEqual(forPeer(self.jpeg, JPEG_LOSSLESS_SV1, "un"), (self.jpeg, JPEG_LOSSLESS_SV1))
        self.assertIs(forPeer(self.plain, EXPLICIT, "j2")[0], self.plain)
        self.assertEqual(forPeer(self.plain, EXPLICIT, "n2"),
                         (nkipixels.compressDataset(self.plain, EXPLICIT, 2), EXPLICIT))
        self.assertEqual(forPeer(self.jpeg, JPEG_LOSSLESS_SV1, "n4"),
                         (nkipixels.compressDataset(self.plain, EXPLICIT, 4), EXPLICIT))
        self.assertEqual(forPeer(self.jpeg, JPEG_LOSSLESS_SV1, "nj"), (self.jpeg, JPEG_LOSSLESS_SV1))
        implicit = encode(sample(), IMPLICIT_VR_LITTLE_ENDIAN)
        compressed, syntax = forPeer(implicit, IMPLICIT_VR_LITTLE_ENDIAN, "n1")
        self.assertEqual(forPeer(compressed, syntax, "un"), (implicit, IMPLICIT_VR_LITTLE_ENDIAN))
