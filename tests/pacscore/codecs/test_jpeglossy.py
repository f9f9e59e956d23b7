"""Tests for pacscore.codecs.jpeglossy: lossy JPEG (baseline, extended)
written here, read back by pydicom (pylibjpeg-libjpeg) and by DCMTK's
dcmdjpeg within the error the quality allows."""

import struct
import tracemalloc

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_rescale
from twisted.trial import unittest

from libjpeg import decode
from pacscore.codecs import jpeglossy
from pacscore.codecs.jpeglossy import _DCT, _ZIGZAG, encodeDataset, encodeFrame, quantisationTable
from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE, JPEG_EXTENDED
from pacscore.codecs.transcode import TranscodeError, transcode
from tests.interop.server import dcmtk
from tests.pacscore.codecs.test_jpeglossless import RNG, dataset, datasetBytes, noise, partTen, segments, smooth
from tests.pacscore.codecs.test_transcode import asFile, pixels, split

SOF0, SOF1, DQT, DRI = 0xFFC0, 0xFFC1, 0xFFDB, 0xFFDD
LUMINANCE_FIRST_ROW = [16, 11, 10, 16, 24, 40, 51, 61]


def acSymbols(codestream):
    """The RS symbols of the AC Huffman table (the second of the DHT)."""
    found, _ = segments(codestream)
    body = found[0xFFC4][0]
    dcCount = sum(body[1:17])
    ac = body[17 + dcCount:]
    return ac[17:17 + sum(ac[1:17])]


def brightEdges(bitsStored):
    """Pixels at and just below the top of ``bitsStored`` beside black
    ones, which lossy coding overshoots."""
    top = (1 << bitsStored) - 1
    array = np.zeros((1, 64, 64), np.int64)
    array[0, :, 29:] = top - RNG.integers(0, max(top // 8, 2), (64, 35))
    array[0, 13:47, 5:21] = top
    return array


def errors(decoded, original):
    difference = np.abs(np.asarray(decoded, np.float64) - np.asarray(original, np.float64))
    return difference.max(), difference.mean()


class TableTests(unittest.TestCase):

    def test_zigzag(self):
        """T.81 figure A.6."""
        self.assertEqual(_ZIGZAG[:16].tolist(), [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5])
        self.assertEqual(_ZIGZAG[-4:].tolist(), [47, 55, 62, 63])
        self.assertEqual(sorted(_ZIGZAG.tolist()), list(range(64)))

    def test_qualityScaling(self):
        """IJG's jpeg_set_quality: 50 is the annex K table, 100 all ones,
        lower qualities coarser, entries at most 255."""
        base = np.array(LUMINANCE_FIRST_ROW)
        self.assertEqual(quantisationTable(base, 50).tolist(), LUMINANCE_FIRST_ROW)
        self.assertEqual(quantisationTable(base, 100).tolist(), [1] * 8)
        self.assertEqual(quantisationTable(base, 95).tolist(), [2, 1, 1, 2, 2, 4, 5, 6])
        self.assertEqual(quantisationTable(base, 1).tolist(), [255] * 8)
        self.assertEqual(quantisationTable(base, 0).tolist(), quantisationTable(base, 1).tolist())

    def test_dctIsOrthonormal(self):
        self.assertTrue(np.allclose(_DCT @ _DCT.T, np.eye(8)))


class FrameTests(unittest.TestCase):

    def assertDecodesClose(self, samples, precision, quality=95, maxError=None, meanError=None):
        codestream = encodeFrame(samples, precision, quality)
        decoded = decode(codestream)
        self.assertEqual(decoded.shape, samples.shape)
        worst, mean = errors(decoded, samples)
        if maxError is not None:
            self.assertLessEqual(worst, maxError)
        if meanError is not None:
            self.assertLessEqual(mean, meanError)
        return codestream

    def test_baselineAndExtendedMarkers(self):
        found, _ = segments(encodeFrame(smooth((1, 16, 16), 8)[0], 8))
        self.assertIn(SOF0, found)
        self.assertEqual(found[SOF0][0][0], 8)
        found, _ = segments(encodeFrame(smooth((1, 16, 16), 12)[0], 12))
        self.assertIn(SOF1, found)
        self.assertEqual(found[SOF1][0][0], 12)

    def test_smoothImagesCloseAtHighQuality(self):
        self.assertDecodesClose(smooth((1, 64, 80), 8)[0], 8, 95, maxError=8, meanError=1.5)
        self.assertDecodesClose(smooth((1, 64, 80), 12)[0], 12, 95, maxError=24, meanError=4)

    def test_oddSizes(self):
        """Edges repeated to whole blocks; the decoder crops them."""
        for rows, columns in [(1, 1), (7, 9), (13, 31), (65, 3)]:
            self.assertDecodesClose(smooth((1, rows, columns), 8)[0], 8, 95, maxError=12)

    def test_constantImage(self):
        """Every block only a DC value and an end of block."""
        for precision, value in [(8, 0), (8, 255), (12, 4095), (12, 1234)]:
            samples = np.full((24, 40), value)
            self.assertDecodesClose(samples, precision, 90, maxError=1)

    def test_longZeroRuns(self):
        """A block whose only AC coefficient is the last one: three ZRL
        symbols (16 zeros each) before it, and no end of block."""
        coefficients = np.zeros(64)
        coefficients[_ZIGZAG[63]] = 40
        block = _DCT.T @ coefficients.reshape(8, 8) @ _DCT + 128
        samples = np.clip(np.rint(block), 0, 255)
        decoded = decode(encodeFrame(samples, 8, 100))
        self.assertLessEqual(errors(decoded, samples)[0], 1)

    def test_noiseAtEveryQuality(self):
        """The largest coefficients and differences each precision has."""
        for precision in (8, 12):
            samples = noise((1, 32, 32), precision)[0]
            sizes = [len(self.assertDecodesClose(samples, precision, quality)) for quality in (100, 75, 25, 1)]
            self.assertEqual(sizes, sorted(sizes, reverse=True))
        for precision in (8, 12):
            extremes = np.indices((16, 16)).sum(axis=0) % 2 * ((1 << precision) - 1)
            codestream = self.assertDecodesClose(extremes, precision, 100, maxError=1 << (precision - 6))
            self.assertLessEqual(max(size & 0x0F for size in acSymbols(codestream)), precision + 2,
                                 "T.81 F.1.2.2: AC coefficients of at most 10 / 14 bits, even for the "
                                 "largest a checkerboard gives at quality 100")

    def test_lowerQualityCoarser(self):
        samples = smooth((1, 64, 64), 12)[0]
        fine = errors(decode(encodeFrame(samples, 12, 95)), samples)[1]
        coarse = errors(decode(encodeFrame(samples, 12, 20)), samples)[1]
        self.assertLess(fine, coarse)

    def test_largerFramesCodedInRestartIntervals(self):
        """A frame of more than STRIP_MCUS MCUs is coded a strip of MCU
        rows at a time, each a restart interval: more than eight strips
        (RST0..RST7 over again), grey and colour, 8 and 12 bits, odd sizes;
        they decode to the very pixels of the frame coded in one piece."""
        for samples, precision, colour in [(smooth((1, 150, 37), 8)[0], 8, False),
                                           (smooth((1, 99, 64), 12)[0], 12, False),
                                           (smooth((1, 200, 40, 3), 8)[0], 8, True)]:
            whole = encodeFrame(samples, precision, 95, colour)
            self.patch(jpeglossy, "STRIP_MCUS", 12)
            strips = encodeFrame(samples, precision, 95, colour)
            self.patch(jpeglossy, "STRIP_MCUS", 1 << 12)
            found, _ = segments(strips)
            mcuColumns = -(-samples.shape[1] // 8)
            self.assertEqual(found[DRI], [struct.pack(">H", max(1, 12 // mcuColumns) * mcuColumns)])
            self.assertIn(b"\xff\xd7", strips)
            self.assertNotIn(DRI, segments(whole)[0])
            np.testing.assert_array_equal(decode(strips), decode(whole))

    def test_largeFramesInBoundedMemory(self):
        """A 2048x2048 12-bit frame: the coding took about 150 bytes a
        pixel at once (600 MB); a strip at a time it stays under 64 MB."""
        samples = smooth((1, 2048, 2048), 12)[0].astype(np.uint16)
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        codestream = encodeFrame(samples, 12, 95)
        self.assertLess(tracemalloc.get_traced_memory()[1], 64 << 20)
        self.assertLessEqual(errors(decode(codestream), samples)[0], 40)

    def test_refusesOtherPrecisions(self):
        self.assertRaises(ValueError, encodeFrame, np.zeros((8, 8)), 16)
        self.assertRaises(ValueError, encodeFrame, np.zeros((8, 8, 2)), 8)


class DatasetTests(unittest.TestCase):

    def encoded(self, ds, syntax, quality=95):
        encodeDataset(ds, syntax, quality)
        self.assertEqual(ds.file_meta.TransferSyntaxUID, syntax)
        self.assertTrue(ds["PixelData"].is_undefined_length)
        return ds

    def test_eightBitMonochromeBaseline(self):
        array = smooth((1, 40, 48), 8)
        ds = self.encoded(dataset(array, 8), JPEG_BASELINE)
        self.assertLessEqual(errors(pixels(ds), array[0])[0], 10)
        self.assertEqual(ds.BitsStored, 8)

    def test_twelveBitExtended(self):
        array = smooth((1, 40, 48), 12)
        ds = self.encoded(dataset(array, 12), JPEG_EXTENDED)
        self.assertLessEqual(errors(pixels(ds), array[0])[0], 30)
        self.assertEqual((ds.BitsStored, ds.PixelRepresentation), (12, 0))
        self.assertNotIn("RescaleIntercept", ds)

    def test_bitsAboveTheStoredOnesIgnored(self):
        """Old data keeps overlays in the bits above Bits Stored."""
        array = smooth((1, 16, 16), 12)
        ds = dataset(array | 0xF000, 12)
        self.encoded(ds, JPEG_EXTENDED)
        self.assertLessEqual(errors(pixels(ds), array[0])[0], 30)

    def test_bitsStoredBelowThePrecisionRaisedToIt(self):
        """A bright edge overshoots in the coding: masked to the old Bits
        Stored, white pixels would come back black."""
        for bitsAllocated, bitsStored, syntax, precision in [
                (16, 10, JPEG_EXTENDED, 12), (16, 8, JPEG_EXTENDED, 12), (8, 7, JPEG_BASELINE, 8)]:
            array, top = brightEdges(bitsStored), (1 << bitsStored) - 1
            ds = self.encoded(dataset(array, bitsStored, bitsAllocated=bitsAllocated), syntax)
            self.assertEqual((ds.BitsStored, ds.HighBit), (precision, precision - 1))
            self.assertLessEqual(errors(pixels(ds), array[0])[0], top // 4, (bitsAllocated, bitsStored))

    def test_baselineTakesEightBitsAllocatedOnly(self):
        error = self.assertRaises(ValueError, encodeDataset, dataset(smooth((1, 8, 8), 12), 12), JPEG_BASELINE)
        self.assertIn("8-bit", str(error))

    def test_signedShiftedWithTheRescaleIntercept(self):
        """Signed pixels move into 0..4095; modality values stay."""
        array = smooth((1, 40, 48), 11) - 1024
        array[0, :4, :4] = -2000  # padding
        ds = dataset(array, 16, signed=True)
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "2"
        ds.PixelPaddingValue = -2000
        self.encoded(ds, JPEG_EXTENDED)
        self.assertEqual((ds.BitsStored, ds.HighBit, ds.PixelRepresentation), (12, 11, 0))
        self.assertEqual(float(ds.RescaleIntercept), -1024 + 2 * -2000)
        self.assertEqual(ds.PixelPaddingValue, 0)
        self.assertEqual(ds["PixelPaddingValue"].VR, "US")
        modality = pixels(ds) * 2.0 + float(ds.RescaleIntercept)
        self.assertLessEqual(errors(modality, array[0] * 2.0 - 1024)[0], 60)

    def test_enhancedImageShiftedInItsFunctionalGroups(self):
        """An enhanced image (Enhanced CT, MR ...) gives its Rescale in the
        Pixel Value Transformation Sequence of its Shared or Per-Frame
        Functional Groups: the shift goes into those intercepts, and no
        Rescale is added at the top level, which readers took (DCMTK) or
        ignored (the IOD's own way) to give modality values about 1000 off."""
        array = smooth((3, 24, 32), 11) - 1000
        for where in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            ds = dataset(array, 16, signed=True)
            groups = [Dataset() for _ in range(1 if where.startswith("Shared") else 3)]
            for n, group in enumerate(groups):
                transformation = Dataset()
                transformation.RescaleIntercept, transformation.RescaleSlope = str(-1024 - n), "2"
                group.PixelValueTransformationSequence = [transformation]
            setattr(ds, where, groups)
            self.encoded(ds, JPEG_EXTENDED)
            self.assertNotIn("RescaleIntercept", ds, where)
            self.assertNotIn("RescaleSlope", ds, where)
            for n, group in enumerate(groups):
                transformation = group.PixelValueTransformationSequence[0]
                self.assertEqual(float(transformation.RescaleIntercept), -1024 - n + 2 * array.min(), where)
                self.assertEqual(transformation.RescaleSlope, "2")
            decoded = pixels(ds).reshape(array.shape)
            for frame in range(3):
                transformation = groups[frame % len(groups)].PixelValueTransformationSequence[0]
                modality = decoded[frame] * 2.0 + float(transformation.RescaleIntercept)
                self.assertLessEqual(errors(modality, array[frame] * 2.0 + float(-1024 - frame % len(groups)))[0],
                                     60, (where, frame))

    def test_enhancedImageWithATopLevelRescaleShiftedInBoth(self):
        """An enhanced image that also has a top-level Rescale (which DCMTK
        reads before the functional groups) has both intercepts shifted:
        the top-level one left as it was gave DCMTK modality values
        1000 HU off."""
        array = smooth((2, 24, 32), 11) - 1000
        ds = dataset(array, 16, signed=True)
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        transformation = Dataset()
        transformation.RescaleIntercept, transformation.RescaleSlope = "-1024", "1"
        group = Dataset()
        group.PixelValueTransformationSequence = [transformation]
        ds.SharedFunctionalGroupsSequence = [group]
        self.encoded(ds, JPEG_EXTENDED)
        decoded = pixels(ds).reshape(array.shape)
        for item in (ds, transformation):
            self.assertEqual(float(item.RescaleIntercept), -1024 + array.min())
            self.assertEqual(item.RescaleSlope, "1")
            modality = decoded + float(item.RescaleIntercept)
            self.assertLessEqual(errors(modality, array - 1024.0)[0], 30)

    def test_pixelValueRangesGoWithTheShift(self):
        """Smallest/Largest Image Pixel Value and Pixel Value in Series
        (and the retired in-Plane pair) give stored values, US or SS as
        Pixel Representation says: shifted into 0..4095 the pixels leave
        them out of range (SS -1023 of pixels 0..3070), so they go, as
        DCMTK's dcmcjpeg drops them; a 12-bit image coded as it is keeps
        them."""
        ranges = [0x00280106, 0x00280107, 0x00280108, 0x00280109, 0x00280110, 0x00280111]
        for array, signed, shifted in [(smooth((1, 32, 32), 12) - 1023, True, True),
                                       (smooth((1, 32, 32), 12) + 30000, False, True),
                                       (smooth((1, 32, 32), 12), False, False)]:
            ds = dataset(array, 16 if shifted else 12, signed=signed)
            for tag, value in zip(ranges, [array.min(), array.max()] * 3):
                ds.add_new(tag, "SS" if signed else "US", int(value))
            self.encoded(ds, JPEG_EXTENDED)
            self.assertEqual(ds.PixelRepresentation, 0)
            self.assertEqual([tag for tag in ranges if tag in ds], [] if shifted else ranges, (signed, shifted))
        self.assertEqual((ds.SmallestImagePixelValue, ds.LargestImagePixelValue), (array.min(), array.max()))

    def withModalityLut(self, array, first, entries):
        """A signed 12-bit data set of ``array`` whose modality values come
        from a Modality LUT Sequence (no Rescale) mapping from ``first``,
        ``entries`` 16-bit entries of 3 * (index) + 7; with its modality
        values (PS3.3 C.11.1: values below the first mapped map to the first
        entry, above the last to the last)."""
        ds = dataset(array, 12, signed=True)
        item = Dataset()
        item.add_new(0x00283002, "SS", [entries, first, 16])  # LUT Descriptor
        item.ModalityLUTType = "US"
        item.add_new(0x00283006, "OW", (np.arange(entries) * 3 + 7).astype("<u2").tobytes())  # LUT Data
        ds.ModalityLUTSequence = [item]
        return ds, self.modalityValues(array[0], ds)

    def modalityValues(self, stored, ds):
        item = ds.ModalityLUTSequence[0]
        entries, first, _ = item.LUTDescriptor
        table = np.frombuffer(item.LUTData, "<u2")
        return table[np.clip(np.rint(stored).astype(np.int64) - first, 0, entries - 1)]

    def test_modalityLutTakesUpTheShift(self):
        """Signed pixels moved into 0..4095 beside a Modality LUT Sequence:
        its first value mapped takes up the shift (US, as Pixel
        Representation 0 asks), and no Rescale Intercept is added, which
        PS3.3 C.11.1 allows no Modality LUT beside and which made every
        modality value the shift (1023) too high; the LUT starting above
        or below the smallest value, and the smallest value 0 (nothing to
        move up, but the LUT's negative first value, left SS beside Pixel
        Representation 0, was read by DCMTK as 64512: every pixel mapped to
        the first entry)."""
        array = smooth((1, 40, 48), 12)
        array = (array - array.min()) * 3068 // (array.max() - array.min()) - 1023  # -1023..2045
        for low, first, entries in [(-1023, -1024, 4096), (-1023, -2048, 4096), (-1023, -500, 1000),
                                    (0, -1024, 4096)]:
            values = array if low else (array - array.min()) * 2 // 3  # 0..2045 (12 bits signed)
            ds, modality = self.withModalityLut(values, first, entries)
            self.encoded(ds, JPEG_EXTENDED)
            self.assertNotIn("RescaleIntercept", ds)
            self.assertNotIn("RescaleSlope", ds)
            descriptor = ds.ModalityLUTSequence[0]["LUTDescriptor"]
            self.assertEqual(descriptor.VR, "US", (low, first))
            self.assertEqual(descriptor.value[0::2], [entries, 16])
            self.assertEqual(descriptor.value[1], max(first - low, 0), (low, first))
            worst, mean = errors(self.modalityValues(pixels(ds), ds), modality)
            self.assertLessEqual(worst, 3 * 30, (low, first))
            self.assertLessEqual(mean, 3 * 4, (low, first))

    def test_modalityLutStartingTooLowRefused(self):
        """A Modality LUT starting more than 4095 below the largest value:
        no shift into 0..4095 keeps its first value mapped from going
        negative (it would have to lose entries), so the image is not coded
        (the caller sends or stores it in another syntax, saying why)."""
        ds, _ = self.withModalityLut(smooth((1, 16, 16), 12) - 2048, -8192, 16384)
        error = self.assertRaises(ValueError, encodeDataset, ds, JPEG_EXTENDED)
        self.assertIn("Modality LUT Sequence maps values from -8192", str(error))
        ds.ModalityLUTSequence.append(ds.ModalityLUTSequence[0])
        error = self.assertRaises(ValueError, encodeDataset, ds, JPEG_EXTENDED)
        self.assertIn("not one item", str(error))

    def test_paddingValueNoPixelHasGoes(self):
        ds = dataset(smooth((1, 16, 16), 10) - 512, 16, signed=True)
        ds.PixelPaddingValue = -30000
        self.encoded(ds, JPEG_EXTENDED)
        self.assertNotIn("PixelPaddingValue", ds)

    def test_sixteenBitsStoredInTwelveWhenTheyFit(self):
        array = smooth((1, 16, 16), 12) + 30000
        ds = self.encoded(dataset(array, 16), JPEG_EXTENDED)
        self.assertEqual(float(ds.RescaleIntercept), float(array.min()))
        self.assertEqual(ds.RescaleSlope, "1")

    def test_tooWideARange(self):
        array = np.array([[[0, 5000], [10, 20]]])
        error = self.assertRaises(ValueError, encodeDataset, dataset(array, 16), JPEG_EXTENDED)
        self.assertIn("12 bits", str(error))
        self.assertRaises(ValueError, encodeDataset, dataset(array % 200, 8, signed=True), JPEG_BASELINE)

    def test_paletteRefused(self):
        ds = dataset(smooth((1, 8, 8), 8), 8)
        ds.PhotometricInterpretation = "PALETTE COLOR"
        error = self.assertRaises(ValueError, encodeDataset, ds, JPEG_BASELINE)
        self.assertIn("palette", str(error))

    def test_rgbAsYbrFull(self):
        ds = pydicom.dcmread(get_testdata_file("examples_rgb_color.dcm"))
        original = ds.pixel_array
        self.encoded(ds, JPEG_BASELINE, 90)
        self.assertEqual(ds.PhotometricInterpretation, "YBR_FULL")
        worst, mean = errors(pixels(ds), original)
        self.assertLessEqual(mean, 3)

    def test_multiFrame(self):
        array = smooth((3, 16, 24), 8)
        ds = self.encoded(dataset(array, 8), JPEG_BASELINE)
        self.assertEqual(len(list(generate_frames(ds.PixelData, number_of_frames=3))), 3)
        self.assertLessEqual(errors(pixels(ds), array)[0], 10)


class TranscodeTests(unittest.TestCase):

    def test_ctMarkedLossy(self):
        syntax, data, original = split("CT_small.dcm")
        converted = asFile(transcode(data, syntax, JPEG_EXTENDED, 90), JPEG_EXTENDED, original)
        self.assertEqual(converted.LossyImageCompression, "01")
        self.assertEqual(converted.LossyImageCompressionMethod, "ISO_10918_1")
        self.assertGreater(float(converted.LossyImageCompressionRatio), 1)
        self.assertEqual(converted.SOPInstanceUID, original.SOPInstanceUID)
        worst, _ = errors(apply_rescale(pixels(converted), converted), apply_rescale(original.pixel_array, original))
        self.assertLessEqual(worst, 40)

    def test_qualityGoesToTheTables(self):
        syntax, data, original = split("MR_small.dcm")
        for quality, first in [(95, 2), (50, 16)]:
            converted = asFile(transcode(data, syntax, JPEG_EXTENDED, quality), JPEG_EXTENDED, original)
            codestream = next(generate_frames(converted.PixelData, number_of_frames=1))
            found, _ = segments(codestream)
            self.assertEqual(found[DQT][0][1], first)

    def test_baselineRefusedForSixteenBits(self):
        syntax, data, _ = split("CT_small.dcm")
        error = self.assertRaises(TranscodeError, transcode, data, syntax, JPEG_BASELINE)
        self.assertIn("8-bit", str(error))


class DcmtkTests(unittest.TestCase):
    """DCMTK's dcmdjpeg reads what we write."""

    def assertDcmtkDecodes(self, ds, syntax, expected, maxError):
        source = partTen(datasetBytes(ds), syntax, self.mktemp() + ".dcm")
        target = self.mktemp() + ".dcm"
        dcmtk("dcmdjpeg", source, target, check=True)
        decompressed = pydicom.dcmread(target)
        self.assertEqual(decompressed.file_meta.TransferSyntaxUID, EXPLICIT_VR_LITTLE_ENDIAN)
        array = pixels(decompressed)
        self.assertEqual(array.shape, expected.shape)
        self.assertLessEqual(errors(array, expected)[0], maxError)
        return decompressed

    def test_monochrome(self):
        for bits, syntax, maxError in [(8, JPEG_BASELINE, 10), (8, JPEG_EXTENDED, 10), (12, JPEG_EXTENDED, 30)]:
            array = smooth((1, 33, 47), bits)
            ds = dataset(array, bits)
            encodeDataset(ds, syntax)
            self.assertDcmtkDecodes(ds, syntax, array[0], maxError)

    def test_bitsStoredBelowThePrecision(self):
        array = brightEdges(10)
        ds = dataset(array, 10, bitsAllocated=16)
        encodeDataset(ds, JPEG_EXTENDED)
        self.assertDcmtkDecodes(ds, JPEG_EXTENDED, array[0], 255)

    def test_restartIntervals(self):
        array = smooth((1, 150, 37), 12)
        ds = dataset(array, 12)
        self.patch(jpeglossy, "STRIP_MCUS", 6)
        encodeDataset(ds, JPEG_EXTENDED)
        self.assertDcmtkDecodes(ds, JPEG_EXTENDED, array[0], 30)

    def test_colour(self):
        ds = pydicom.dcmread(get_testdata_file("examples_rgb_color.dcm"))
        original = ds.pixel_array
        encodeDataset(ds, JPEG_BASELINE, 95)
        decompressed = self.assertDcmtkDecodes(ds, JPEG_BASELINE, original, 64)
        self.assertLessEqual(errors(pixels(decompressed), original)[1], 3)
