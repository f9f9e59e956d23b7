"""Tests for pacscore.codecs.pixeldescription: the Image Pixel attributes
of a stored object checked before its frames are placed or decoded."""

from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
import pydicom
from twisted.trial import unittest

from pacscore.codecs.pixeldescription import PixelDescriptionError, checkPixelDescription
from pacscore.codecs.transcode import TranscodeError


class CheckPixelDescriptionTests(unittest.TestCase):

    def ct(self, **changes):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
        for name, value in changes.items():
            if value is None:
                delattr(ds, name)
            else:
                setattr(ds, name, value)
        return ds

    def test_aValidImagePasses(self):
        checkPixelDescription(self.ct(), decoding=True)
        checkPixelDescription(self.ct(NumberOfFrames="3", BitsStored=None))

    def test_aNumberOfFramesOf0IsOneFrame(self):
        """pydicom and frameCount read Number of Frames 0 as one frame, and
        such images were shown before the check: they still are.  Bits
        Stored 0 matters only to decoded pixels (frames are placed by Bits
        Allocated)."""
        checkPixelDescription(self.ct(NumberOfFrames="0"), decoding=True)
        checkPixelDescription(self.ct(BitsStored=0))
        with self.assertRaisesRegex(PixelDescriptionError, "^its Bits Stored 0 is not a whole number from 1$"):
            checkPixelDescription(self.ct(BitsStored=0), decoding=True)

    def test_eachMalformedAttributeIsNamed(self):
        ds = self.ct()
        ds[0x00280010] = DataElement(0x00280010, "US", [128, 128])
        cases = [(ds, False, "its Rows 128\\128 holds 2 values, not one"),
                 (self.ct(Columns=0), False, "its Columns 0 is not a whole number from 1"),
                 (self.ct(BitsAllocated=None), False, "its pixels are described without Bits Allocated"),
                 (self.ct(SamplesPerPixel=0), False, "its Samples per Pixel 0 is not a whole number from 1"),
                 (self.ct(NumberOfFrames="-1"), False, "its Number of Frames -1 is not a whole number from 0"),
                 (self.ct(PixelRepresentation=2), False, "its Pixel Representation 2 is neither 0 nor 1"),
                 (self.ct(PhotometricInterpretation=["MONOCHROME2", "RGB"]), False,
                  "its Photometric Interpretation MONOCHROME2\\RGB holds 2 values, not one"),
                 (self.ct(PhotometricInterpretation=None), True,
                  "its pixels are described without Photometric Interpretation"),
                 (self.ct(PixelRepresentation=None), True, "its pixels are described without Pixel Representation")]
        for ds, decoding, message in cases:
            with self.assertRaises(PixelDescriptionError) as caught:
                checkPixelDescription(ds, decoding)
            self.assertEqual(str(caught.exception), message)
            self.assertIsInstance(caught.exception, TranscodeError)
        checkPixelDescription(self.ct(PhotometricInterpretation=None, PixelRepresentation=None))  # copied as stored

    def test_aPaletteOfOtherThan8Or16BitEntries(self):
        ds = self.ct(PhotometricInterpretation="PALETTE COLOR")
        for tag in (0x00281101, 0x00281102, 0x00281103):
            ds[tag] = DataElement(tag, "US", [256, 0, 16])
        checkPixelDescription(ds, decoding=True)
        ds[0x00281101] = DataElement(0x00281101, "US", [1, 1, 1])
        with self.assertRaisesRegex(PixelDescriptionError, r"^it is PALETTE COLOR with a Red Palette Color Lookup "
                                    r"Table Descriptor of 1\\1\\1, not three values the last 8 or 16"):
            checkPixelDescription(ds, decoding=True)
