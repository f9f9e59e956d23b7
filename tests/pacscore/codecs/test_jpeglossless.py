"""Tests for pacscore.codecs.jpeglossless: lossless JPEG written here,
read back exactly by pydicom (pylibjpeg-libjpeg) and by DCMTK's dcmdjpeg."""

import os
import struct
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames, parse_basic_offsets
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from twisted.trial import unittest

from pacscore.codecs import jpeglossless
from pacscore.codecs.jpeglossless import encodeDataset, encodeFrame
from pacscore.codecs.syntaxes import (
    EXPLICIT_VR_LITTLE_ENDIAN, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, NATIVE, RLE_LOSSLESS, canEncode)
from pacscore.codecs.transcode import TranscodeError, transcode
from pacscore.storage.part10 import encodeFileMeta, readFileMeta
from tests.interop.server import dcmtk
from tests.pacscore.codecs.test_transcode import (
    IMPLEMENTATION, PIXEL_DATA, Checks, asFile, convert, pixels)

SYNTAXES = [JPEG_LOSSLESS_SV1, JPEG_LOSSLESS]
RNG = np.random.default_rng(20240607)
PLANAR_CONFIGURATION = 0x00280006


def dataset(array, bitsStored, signed=False, bitsAllocated=None):
    """A native data set holding ``array`` (frames, rows, columns[, 3])."""
    frames, rows, columns = array.shape[:3]
    samples = array.shape[3] if array.ndim == 4 else 1
    bitsAllocated = bitsAllocated or (8 if bitsStored <= 8 else 16)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bitsAllocated, bitsStored, bitsStored - 1
    ds.PixelRepresentation = int(signed)
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    data = array.astype(f"<{'i' if signed else 'u'}{bitsAllocated // 8}").tobytes()
    ds.PixelData = data + b"\x00" if len(data) % 2 else data
    ds["PixelData"].VR = "OB" if bitsAllocated == 8 else "OW"
    return ds


def noise(shape, bitsStored, signed=False):
    low, high = (-(1 << bitsStored - 1), 1 << bitsStored - 1) if signed else (0, 1 << bitsStored)
    return RNG.integers(low, high, shape)


def smooth(shape, bitsStored):
    """A slowly varying image, with a little noise, over the whole range."""
    rows, columns = shape[1:3]
    y, x = np.mgrid[:rows, :columns]
    wave = (np.sin(x / 40.0) * np.cos(y / 55.0) + 1) / 2 * ((1 << bitsStored) - 1)
    values = np.broadcast_to(wave[..., np.newaxis], (rows, columns, shape[3])) if len(shape) == 4 else wave
    jitter = RNG.integers(-2, 3, shape)
    return np.clip(np.rint(values) + jitter, 0, (1 << bitsStored) - 1).astype(np.int64)


def encoded(ds, syntax=JPEG_LOSSLESS_SV1):
    encodeDataset(ds, syntax)
    return ds


def segments(codestream):
    """``{marker: [segment body ...]}`` of the marker segments before the
    scan data, and the entropy-coded data."""
    found, pos = {}, 2
    while True:
        marker, length = struct.unpack_from(">HH", codestream, pos)
        body = codestream[pos + 4:pos + 2 + length]
        found.setdefault(marker, []).append(body)
        pos += 2 + length
        if marker == 0xFFDA:
            return found, codestream[pos:-2]


def partTen(data, syntax, path):
    """``data`` (a data set in ``syntax``) written as a Part-10 file."""
    header = encodeFileMeta("1.2.840.10008.5.1.4.1.1.7", "1.2.826.0.1.3680043.8.498.3", syntax,
                            IMPLEMENTATION, "TEST")
    with open(path, "wb") as fileobj:
        fileobj.write(header + data)
    return path


def datasetBytes(ds):
    fileobj = DicomBytesIO()
    fileobj.is_implicit_VR, fileobj.is_little_endian = False, True
    write_dataset(fileobj, ds)
    return fileobj.getvalue()


class RoundTrip:
    """Encode, let pydicom decode, compare."""

    def assertRoundTrip(self, array, bitsStored, signed=False, bitsAllocated=None, syntaxes=SYNTAXES):
        for syntax in syntaxes:
            ds = encoded(dataset(array, bitsStored, signed, bitsAllocated), syntax)
            self.assertEqual(ds.file_meta.TransferSyntaxUID, syntax)
            self.assertTrue(ds["PixelData"].is_undefined_length)
            self.assertEqual(ds["PixelData"].VR, "OB")
            expected = array[0] if array.shape[0] == 1 else array
            decoded = pixels(ds)
            self.assertEqual(decoded.shape, expected.shape, (bitsStored, syntax))
            self.assertTrue(np.array_equal(decoded, expected), (bitsStored, signed, syntax))
        return ds


class PrecisionTests(RoundTrip, unittest.TestCase):

    def test_noise(self):
        for bits in [2, 6, 8, 10, 12, 15, 16]:
            self.assertRoundTrip(noise((1, 33, 47), bits), bits)

    def test_smooth(self):
        for bits in [8, 12, 16]:
            self.assertRoundTrip(smooth((1, 64, 80), bits), bits)

    def test_signed(self):
        """Signed samples go as their two's complement bits."""
        for bits in [8, 12, 16]:
            self.assertRoundTrip(noise((1, 30, 20), bits, signed=True), bits, signed=True)
            self.assertRoundTrip(smooth((1, 30, 20), bits) - (1 << bits - 1), bits, signed=True)

    def test_eightBitsStoredInSixteen(self):
        """Coded at precision 12, so that decoders give 16-bit samples."""
        for signed in [False, True]:
            ds = self.assertRoundTrip(noise((1, 9, 11), 8, signed), 8, signed, bitsAllocated=16)
            codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
            self.assertEqual(segments(codestream)[0][0xFFC3][0][0], 12)

    def test_edgeValues(self):
        """0 and the maximum side by side: the largest differences, and
        for 16 bits the difference 32768 (category 16, no extra bits)."""
        for bits in [8, 12, 16]:
            top = (1 << bits) - 1
            array = np.zeros((1, 6, 8), np.int64)
            array[0, ::2, ::2] = top
            array[0, 1::2, 1::2] = top
            array[0, 0, -1] = top
            array[0, -1, 0] = 1 << bits - 1
            array[0, 3, 3:6] = [0, 1 << bits - 1, top]
            self.assertRoundTrip(array, bits)
            self.assertRoundTrip(np.full((1, 4, 5), top), bits)
            self.assertRoundTrip(np.zeros((1, 4, 5), np.int64), bits)
        low, high = -(1 << 15), (1 << 15) - 1
        self.assertRoundTrip(np.array([[[low, high, low, 0, -1, high]]]), 16, signed=True)

    def test_everyCategory(self):
        """Differences of every category 0..16, with frequencies that would
        give a plain Huffman code lengths over 16 bits: the table is
        limited to 16 bits, keeps no all-ones code, and decodes."""
        fibonacci = [1, 1]
        while len(fibonacci) < 17:
            fibonacci.append(fibonacci[-1] + fibonacci[-2])
        steps = np.concatenate([np.full(count, 0 if k == 0 else 1 << k - 1)
                                for k, count in enumerate(reversed(fibonacci))])
        array = ((1 << 15) + np.cumsum(RNG.permutation(steps))) % (1 << 16)
        ds = self.assertRoundTrip(array.reshape(1, 1, -1), 16)
        codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
        table = segments(codestream)[0][0xFFC4][0]
        self.assertEqual(table[0], 0x00)  # DC table 0
        bits = list(table[1:17])
        self.assertGreater(bits[15], 0)
        self.assertEqual(sum(bits), 17)
        self.assertEqual(sorted(table[17:]), list(range(17)))
        self.assertLess(sum(count / 2 ** length for length, count in enumerate(bits, 1)), 1)


class ShapeTests(RoundTrip, unittest.TestCase):

    def test_tiny(self):
        for shape in [(1, 1, 1), (1, 7, 5), (1, 5, 7), (1, 1, 9), (1, 9, 1)]:
            self.assertRoundTrip(noise(shape, 12), 12)
            self.assertRoundTrip(noise(shape, 8), 8)

    def test_rgb(self):
        self.assertRoundTrip(noise((1, 17, 23, 3), 8), 8)
        self.assertRoundTrip(smooth((1, 40, 30, 3), 8), 8)
        self.assertRoundTrip(noise((1, 7, 5, 3), 16), 16)
        self.assertRoundTrip(noise((1, 1, 1, 3), 8), 8)

    def test_rgbInterleavedScan(self):
        """Three components, H = V = 1, one scan with all three."""
        codestream = encodeFrame(noise((4, 6, 3), 8), 8)
        found, _ = segments(codestream)
        self.assertEqual(found[0xFFC3], [struct.pack(">BHHB", 8, 4, 6, 3) + bytes([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0])])
        self.assertEqual(found[0xFFDA], [bytes([3, 1, 0, 2, 0, 3, 0, 1, 0, 0])])

    def test_multiframe(self):
        """One codestream per frame, with a basic offset table."""
        array = np.stack([smooth((1, 20, 30), 12)[0], noise((20, 30), 12), np.zeros((20, 30), np.int64)])
        ds = self.assertRoundTrip(array, 12)
        offsets = parse_basic_offsets(ds.PixelData)
        self.assertEqual(len(offsets), 3)
        self.assertEqual(offsets[0], 0)
        codestreams = list(generate_frames(ds.PixelData, number_of_frames=3))
        self.assertEqual(len(codestreams), 3)
        for codestream in codestreams:
            self.assertEqual(codestream[:2], b"\xff\xd8")
            self.assertTrue(codestream.rstrip(b"\x00").endswith(b"\xff\xd9"))  # padded to even
        self.assertRoundTrip(noise((4, 5, 6, 3), 8), 8)


class CodestreamTests(unittest.TestCase):

    def test_markers(self):
        codestream = encodeFrame(noise((7, 5), 12), 12)
        self.assertEqual(codestream[:2], b"\xff\xd8")
        self.assertEqual(codestream[-2:], b"\xff\xd9")
        found, scan = segments(codestream)
        self.assertEqual(sorted(found), [0xFFC3, 0xFFC4, 0xFFDA])
        self.assertEqual(found[0xFFC3], [struct.pack(">BHHB", 12, 7, 5, 1) + bytes([1, 0x11, 0])])
        # one component, table 0, Ss = 1 (predictor), Se = 0, Ah = Al = 0
        self.assertEqual(found[0xFFDA], [bytes([1, 1, 0x00, 1, 0, 0])])
        self.assertTrue(scan)

    def test_byteStuffing(self):
        """Every 0xFF in the entropy-coded data is followed by 0x00."""
        stuffed = 0
        for _ in range(5):
            _, scan = segments(encodeFrame(noise((40, 40), 16), 16))
            data = np.frombuffer(scan, np.uint8)
            marks = np.flatnonzero(data[:-1] == 0xFF)
            self.assertTrue(np.all(data[marks + 1] == 0))
            self.assertNotEqual(data[-1], 0xFF)
            stuffed += marks.size
        self.assertGreater(stuffed, 0)

    def test_strips(self):
        """A frame coded a strip of rows at a time (here a row or a few)
        gives the codestream coded at once: the bits of a strip go on where
        those of the one before ended, the first sample of a strip is
        predicted from the row above."""
        for array, bits in ((noise((37, 29), 16), 16), (noise((23, 31, 3), 8), 8), (smooth((1, 40, 33), 12)[0], 12)):
            whole = encodeFrame(array, bits)
            self.assertEqual(pixels(encoded(dataset(array[np.newaxis], bits))).tolist(), array.tolist())
            for samples in (1, 40, 100, 1000):
                self.patch(jpeglossless, "STRIP_SAMPLES", samples)
                self.assertEqual(encodeFrame(array, bits), whole, (array.shape, samples))

    def test_memory(self):
        """Coding a large frame holds a strip's working arrays, not the
        frame's: a 2048 x 1024 RGB frame of noise (6 MB, coded to about as
        much) takes less than 4 times its size besides (all at once it
        took some 100 bytes a sample)."""
        array = noise((1024, 2048, 3), 8).astype(np.uint8)
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        codestream = encodeFrame(array, 8)
        self.assertLess(tracemalloc.get_traced_memory()[1], 4 * array.size)
        self.assertGreater(len(codestream), array.size * 0.9)

    def test_signedArrays(self):
        """An array of signed values codes as its two's complement bits."""
        values = noise((9, 8), 16, signed=True)
        self.assertEqual(encodeFrame(values.astype(np.int16), 16),
                         encodeFrame(values.astype(np.int16).view(np.uint16), 16))

    def test_compresses(self):
        """A smooth 12-bit image takes less than half its 16-bit size."""
        array = smooth((1, 128, 128), 12)[0]
        self.assertLess(len(encodeFrame(array, 12)), array.size)

    def test_refused(self):
        for array, bits in [(np.zeros((4, 4)), 8), (np.zeros((4, 4, 2), np.uint8), 8),
                            (np.zeros(16, np.uint8), 8), (np.zeros((0, 4), np.uint8), 8),
                            (np.zeros((4, 4), np.uint16), 17), (np.zeros((4, 4), np.uint8), 1)]:
            self.assertRaises(ValueError, encodeFrame, array, bits)


class DatasetTests(unittest.TestCase):

    def assertRefused(self, ds, *words, syntax=JPEG_LOSSLESS_SV1):
        error = self.assertRaises(ValueError, encodeDataset, ds, syntax)
        for word in words:
            self.assertIn(word, str(error))

    def test_refused(self):
        image = noise((1, 4, 4), 8)
        self.assertRefused(dataset(image, 8), "lossless JPEG syntax", syntax=RLE_LOSSLESS)
        self.assertRefused(dataset(noise((1, 4, 4), 16), 16, bitsAllocated=32), "32")
        ds = dataset(image, 8)
        ds.BitsStored = 1
        self.assertRefused(ds, "1 bits stored")
        ds = dataset(image, 8)
        ds.HighBit = 11
        self.assertRefused(ds, "high bit")
        ds = dataset(image, 8)
        ds.SamplesPerPixel = 4
        self.assertRefused(ds, "samples per pixel, not 4")
        ds = dataset(noise((1, 4, 4, 3), 8), 8)
        ds.PlanarConfiguration = 1
        self.assertRefused(ds, "Planar Configuration 1")
        ds.PlanarConfiguration, ds.PhotometricInterpretation = 0, "YBR_FULL_422"
        self.assertRefused(ds, "YBR_FULL_422")
        ds = dataset(image, 8)
        ds.PixelData = ds.PixelData[:10]
        self.assertRefused(ds, "10 bytes")

    def test_otherElementsKept(self):
        ds = dataset(noise((1, 6, 6), 12), 12)
        ds.PatientName = "Kept^Too"
        ds.WindowCenter = 2048
        encodeDataset(ds, JPEG_LOSSLESS)
        self.assertEqual((ds.PatientName, ds.WindowCenter, ds.BitsStored, ds.BitsAllocated),
                         ("Kept^Too", 2048, 12, 16))


def pydicomFiles():
    """The uncompressed monochrome and RGB images pydicom ships, 8 or 16
    bits allocated: ``(name, syntax, data set bytes, pydicom's reading)``."""
    folder = Path(get_testdata_file("CT_small.dcm")).parent
    found = []
    for name in sorted(os.listdir(folder)):
        path = get_testdata_file(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                original = pydicom.dcmread(path)
            except Exception:  # not a DICOM file: readme, JSON ...
                continue
        syntax = original.file_meta.get("TransferSyntaxUID")
        if (syntax not in NATIVE or "PixelData" not in original
                or name == "MR_truncated.dcm"  # its Pixel Data is cut short
                or original.get("PhotometricInterpretation") not in ("MONOCHROME1", "MONOCHROME2", "RGB")
                or original.get("BitsAllocated") not in (8, 16)):
            continue
        with open(path, "rb") as fileobj:
            readFileMeta(fileobj)
            found.append((name, syntax, fileobj.read(), original))
    return found


class TranscodeTests(Checks, unittest.TestCase):

    def test_canEncode(self):
        for syntax in SYNTAXES:
            self.assertTrue(canEncode(syntax), syntax)

    def test_pydicomFiles(self):
        """Every uncompressed monochrome or RGB file pydicom ships, to both
        syntaxes: the same pixels and elements; back to explicit VR little
        endian, the same pixel values again."""
        files = pydicomFiles()
        self.assertGreaterEqual(len(files), 10)
        for name, syntax, data, original in files:
            reference = pixels(original)
            for target in SYNTAXES:
                there = convert(data, syntax, target)
                converted = asFile(there, target, original)
                self.assertEqual(converted.file_meta.TransferSyntaxUID, target)
                self.assertSamePixels(converted, reference, (name, target))
                ignore = {PIXEL_DATA, PLANAR_CONFIGURATION}  # colour by plane is interleaved
                self.assertElementsKept(original, converted, ignore)
                back = asFile(convert(there, target, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN,
                              original)
                self.assertSamePixels(back, reference, (name, target, "back"))

    def test_fromCompressed(self):
        """RLE -> JPEG lossless: decoded, then encoded."""
        path = get_testdata_file("MR_small_RLE.dcm")
        with open(path, "rb") as fileobj:
            syntax = readFileMeta(fileobj)[0]
            data = fileobj.read()
        original = pydicom.dcmread(path)
        converted = asFile(convert(data, syntax, JPEG_LOSSLESS_SV1), JPEG_LOSSLESS_SV1, original)
        self.assertSamePixels(converted, pixels(original), "MR_small_RLE.dcm")

    def test_refusedImages(self):
        """32 and 1 bits allocated: a TranscodeError saying why."""
        for name in ["rtdose_1frame.dcm", "liver_1frame.dcm"]:
            with open(get_testdata_file(name), "rb") as fileobj:
                syntax = readFileMeta(fileobj)[0]
                data = fileobj.read()
            error = self.assertRaises(TranscodeError, transcode, data, syntax, JPEG_LOSSLESS_SV1)
            self.assertIn("bits allocated", str(error))


class DcmtkTests(unittest.TestCase):
    """DCMTK's dcmdjpeg reads what we write."""

    def assertDcmtkDecodes(self, data, syntax, expected, label):
        source = partTen(data, syntax, self.mktemp() + ".dcm")
        target = self.mktemp() + ".dcm"
        dcmtk("dcmdjpeg", source, target, check=True)
        decompressed = pydicom.dcmread(target)
        self.assertEqual(decompressed.file_meta.TransferSyntaxUID, EXPLICIT_VR_LITTLE_ENDIAN)
        array = pixels(decompressed)
        self.assertEqual(array.shape, expected.shape, label)
        self.assertTrue(np.array_equal(array, expected), label)

    def test_synthetic(self):
        cases = [
            (noise((1, 20, 30), 8), 8, False, None),
            (smooth((1, 20, 30), 12), 12, False, None),
            (noise((1, 20, 30), 16), 16, False, None),
            (noise((1, 20, 30), 16, signed=True), 16, True, None),
            (noise((1, 20, 30), 10, signed=True), 10, True, None),
            (noise((1, 20, 30), 8, signed=True), 8, True, 16),
            (noise((1, 7, 5, 3), 8), 8, False, None),
            (noise((3, 6, 9), 12), 12, False, None),
            (np.array([[[0, 65535, 32768, 0, 1, 65535]]]), 16, False, None),
        ]
        for array, bits, signed, allocated in cases:
            for syntax in SYNTAXES:
                ds = encoded(dataset(array, bits, signed, allocated), syntax)
                expected = array[0] if array.shape[0] == 1 else array
                self.assertDcmtkDecodes(datasetBytes(ds), syntax, expected, (array.shape, bits, signed, syntax))

    def test_pydicomFiles(self):
        for name, syntax, data, original in pydicomFiles():
            self.assertDcmtkDecodes(convert(data, syntax, JPEG_LOSSLESS_SV1), JPEG_LOSSLESS_SV1,
                                    pixels(original), name)


class SpeedTests(unittest.TestCase):

    def test_ct512(self):
        """A 512 x 512 16-bit CT-like slice (CT_small, 128 x 128, tiled and
        smoothly scaled up, with noise): the time to encode it and the
        compression ratio, printed; the result decodes exactly."""
        small = pixels(pydicom.dcmread(get_testdata_file("CT_small.dcm"))).astype(np.int64)
        large = np.kron(small, np.ones((4, 4), np.int64)) + RNG.integers(-8, 9, (512, 512))
        large = large.astype(np.int16)
        encodeFrame(large, 16)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            codestream = encodeFrame(large, 16)
            times.append(time.perf_counter() - start)
        print(f"\nlossless JPEG, 512 x 512 x 16 bits: {min(times) * 1000:.1f} ms "
              f"(best of 5), ratio {large.nbytes / len(codestream):.2f}")
        ds = encoded(dataset(large[np.newaxis], 16, signed=True))
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        self.assertEqual(frame, codestream + b"\x00" * (len(codestream) % 2))  # padded to even
        self.assertTrue(np.array_equal(pixels(ds), large))
