"""Conquest's downsizing codes: every factor-th pixel of every factor-th
row, Rows, Columns and the pixel spacings following."""

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from twisted.trial import unittest

from pacscore.codecs.compression import forPeer, mayChange, recode
from pacscore.codecs.downsize import downsizeDataset, needsDownsizing
from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, JPEG_LOSSLESS_SV1
from pacscore.codecs.transcode import transcode
from pacscore.dicom.datasets import decodeDataset, encodeDataset

EXPLICIT = EXPLICIT_VR_LITTLE_ENDIAN


def sampleData(name, **changes):
    """A pydicom test file (changed) and its data set bytes in explicit VR little endian."""
    ds = pydicom.dcmread(get_testdata_file(name))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds, encodeDataset(ds, EXPLICIT)


def rgb(pixels, planar, PixelSpacing=("0.5", "0.25")):
    """A 100 x 100 RGB secondary capture's data set bytes."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4"
    ds.Rows = ds.Columns = 100
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", planar
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if PixelSpacing:
        ds.PixelSpacing = list(PixelSpacing)
    ds.PixelData = pixels
    return encodeDataset(ds, EXPLICIT)


def decoded(data):
    """The data set of ``data`` (explicit VR little endian), its pixels readable."""
    ds = decodeDataset(data, EXPLICIT)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = EXPLICIT
    return ds


class DownsizeTests(unittest.TestCase):

    def test_ct(self):
        """128 x 128 CT: ka (64) halves it, kb (32) quarters it; k4 (256) leaves it."""
        ds, data = sampleData("CT_small.dcm")
        for size, factor in ((64, 2), (32, 4)):
            self.assertTrue(needsDownsizing(data, EXPLICIT, size))
            small = decoded(downsizeDataset(data, EXPLICIT, size))
            self.assertEqual((small.Rows, small.Columns), (128 // factor, 128 // factor))
            self.assertEqual(small.pixel_array.tolist(), ds.pixel_array[::factor, ::factor].tolist())
            self.assertEqual([float(v) for v in small.PixelSpacing],
                             [written(float(v) * factor) for v in ds.PixelSpacing])
            self.assertEqual(small.PatientName, ds.PatientName)
        self.assertFalse(needsDownsizing(data, EXPLICIT, 256))
        self.assertIsNone(downsizeDataset(data, EXPLICIT, 256))

    def test_colourUnevenFactor(self):
        """100 x 100 RGB to 16: factor 7, 14 x 14, interleaved or by plane."""
        image = np.random.default_rng(3).integers(0, 255, (100, 100, 3), dtype=np.uint8)
        expected = image[::7, ::7][:14, :14]
        for planar, pixels in ((0, image.tobytes()), (1, np.moveaxis(image, -1, 0).tobytes())):
            small = decoded(downsizeDataset(rgb(pixels, planar), EXPLICIT, 16))
            spacing = [float(v) for v in small.PixelSpacing]  # every 7th pixel: 7 times the spacing
            self.assertEqual((small.Rows, small.Columns, spacing), (14, 14, [3.5, 1.75]))
            self.assertEqual(small.PlanarConfiguration, planar)
            self.assertEqual(small.pixel_array.tolist(), expected.tolist())

    def test_imagerPixelSpacingFollows(self):
        ds, data = sampleData("CT_small.dcm", ImagerPixelSpacing=["0.3", "0.35"])
        small = decoded(downsizeDataset(data, EXPLICIT, 32))
        self.assertEqual([float(v) for v in small.ImagerPixelSpacing], [1.2, 1.4])

    def test_notDownsized(self):
        """As in Conquest: not without Pixel Spacing, not multi-frame."""
        data = rgb(bytes(30000), 0, PixelSpacing=None)
        self.assertFalse(needsDownsizing(data, EXPLICIT, 16))
        _, data = sampleData("CT_small.dcm", NumberOfFrames="2")
        self.assertIsNone(downsizeDataset(data, EXPLICIT, 16))

    def test_codes(self):
        ds, data = sampleData("CT_small.dcm")
        jpeg = transcode(data, EXPLICIT, JPEG_LOSSLESS_SV1)
        small, syntax = recode(jpeg, JPEG_LOSSLESS_SV1, "ka")
        self.assertEqual(syntax, EXPLICIT, "decompressed to be downsized")
        self.assertEqual(decoded(small).pixel_array.tolist(), ds.pixel_array[::2, ::2].tolist())
        self.assertEqual(recode(jpeg, JPEG_LOSSLESS_SV1, "k4"), (jpeg, JPEG_LOSSLESS_SV1), "small enough")
        self.assertEqual(forPeer(data, EXPLICIT, "KA"), (downsizeDataset(data, EXPLICIT, 64), EXPLICIT))
        self.assertEqual(forPeer(jpeg, JPEG_LOSSLESS_SV1, "ka"), (small, EXPLICIT), "decompressed to be downsized")
        self.assertEqual(forPeer(jpeg, JPEG_LOSSLESS_SV1, "k4"), (jpeg, JPEG_LOSSLESS_SV1), "small enough")
        self.assertTrue(mayChange(None, EXPLICIT, "k1"), "not at hand: read to be checked")
        self.assertTrue(mayChange(data, EXPLICIT, "ka"))
        self.assertFalse(mayChange(data, EXPLICIT, "k4"))


def written(value):
    """A Pixel Spacing as written: ``%g``."""
    return float(f"{value:g}")
