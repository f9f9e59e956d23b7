"""Tests for pacscore.codecs.transcode: a stored data set re-encoded in
another transfer syntax, checked against pydicom's own reading of the
files it ships."""

import io
import struct
import tempfile
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import UID
from pydicom.pixels.utils import compress
from twisted.trial import unittest

from pacscore.codecs import encapsulatedframes, filetranscode
from pacscore.codecs import transcode as transcodeModule
from pacscore.codecs.filetranscode import NotStreamed, transcodeFile
from pacscore.codecs.jpeglossless import encodeFrame
from pacscore.codecs.jpegmarkers import sequentialScansMended
from pacscore.codecs.pixelframes import atBitsStored
from pacscore.codecs.syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN, JPEG_2000, JPEG_2000_LOSSLESS, JPEG_BASELINE, JPEG_EXTENDED,
    JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS, RLE_LOSSLESS, canEncode)
from pacscore.codecs.transcode import (
    LARGEST_FRAME, FrameTooLarge, TranscodeError, checkFrameSize, codedLossy, transcode)
from pacscore.storage.part10 import encodeFileMeta, readFileMeta
from tests.pacscore.codecs.test_codestreamheader import BOMB_CODESTREAMS, bombDataset

DATA = Path(pydicom.data.__file__).parent / "test_files"
IMPLEMENTATION = "1.2.826.0.1.3680043.9.7433.1.1"
LITTLE_ENDIAN = [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN]
UNCOMPRESSED = LITTLE_ENDIAN + [EXPLICIT_VR_BIG_ENDIAN]
PIXEL_DATA = 0x7FE00010

# Compressed files pydicom ships (all local, no download), by syntax.
LOSSLESS_FILES = [
    "MR_small_RLE.dcm",               # RLE, 16 bits signed
    "SC_rgb_rle.dcm",                 # RLE, RGB
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_rle_2frame.dcm",          # 2 frames
    "SC_rgb_rle_32bit.dcm",
    "rtdose_rle.dcm",                 # 15 frames, 32 bits
    "MR_small_jp2klossless.dcm",      # JPEG 2000 lossless
    "GDCMJ2K_TextGBR.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "SC_rgb_jpeg_gdcm.dcm",           # JPEG lossless SV1 (4.70)
]
LOSSY_FILES = [
    "JPEG2000.dcm",                   # JPEG 2000
    "SC_rgb_gdcm_KY.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",          # JPEG baseline, YBR_FULL_422
    "SC_rgb_jpeg_lossy_gdcm.dcm",
    "examples_ybr_color.dcm",
    "JPGExtended.dcm",                # JPEG extended, 12 bits
    "JPEGLSNearLossless_08.dcm",      # JPEG-LS near-lossless
    "SC_rgb_jls_lossy_line.dcm",
]
NATIVE_FILES = [
    "CT_small.dcm",                   # explicit, 16 bits signed
    "MR_small_implicit.dcm",          # implicit, SS values of VR 'US or SS'
    "MR_small_bigendian.dcm",         # big endian, 16 bits
    "ExplVR_BigEnd.dcm",              # big endian, RGB by plane
    "rtdose_expb.dcm",                # big endian, 32 bits, 15 frames
    "SC_rgb_small_odd_big_endian.dcm",  # big endian, 8 bits, odd length
    "image_dfl.dcm",                  # deflated
    "examples_palette.dcm",           # palette LUTs (OW)
    "SC_ybr_full_422_uncompressed.dcm",
]
# What decompression may change in the Image Pixel module.
PIXEL_MODULE = {0x00280004, 0x00280006, 0x00280008, 0x00282110, PIXEL_DATA, 0x7FE00001, 0x7FE00002}


def split(name):
    """``(syntax, dataset bytes, pydicom's reading of the whole file)``."""
    path = DATA / name
    with open(path, "rb") as fileobj:
        syntax = readFileMeta(fileobj)[0]
        data = fileobj.read()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return syntax, data, pydicom.dcmread(path, force=True)


def asFile(data, syntax, original=None):
    """pydicom's reading of ``data`` behind a Part-10 header saying ``syntax``."""
    sopClass = (original.get("SOPClassUID") if original is not None else None) or "1.2.3"
    sopInstance = (original.get("SOPInstanceUID") if original is not None else None) or "1.2.3.4"
    header = encodeFileMeta(sopClass, sopInstance, syntax, IMPLEMENTATION, "TEST")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(header + bytes(data)))


def pixels(ds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ds.pixel_array


def encode(ds, syntax):
    """``ds`` as pydicom writes it in an uncompressed ``syntax``."""
    fileobj = DicomBytesIO()
    fileobj.is_implicit_VR = syntax == IMPLICIT_VR_LITTLE_ENDIAN
    fileobj.is_little_endian = syntax != EXPLICIT_VR_BIG_ENDIAN
    write_dataset(fileobj, ds)
    data = fileobj.getvalue()
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = deflater.compress(data) + deflater.flush()
    return data


def lossyHistory(ds):
    """The Lossy Image Compression Ratio and Method values of ``ds``, as lists of strings."""
    return [[str(v) for v in ([] if value is None else value if isinstance(value, MultiValue) else [value])]
            for value in (ds.get("LossyImageCompressionRatio"), ds.get("LossyImageCompressionMethod"))]


def quietly(function, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args)


def convert(data, source, target):
    """``transcode``, without pydicom's warnings about odd values."""
    return quietly(transcode, data, source, target)


def image(rows=64, columns=64, frames=1, samples=1, bits=16):
    """A small synthetic image, explicit VR little endian."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.PatientName = "Test^Image"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    values = np.arange(frames * rows * columns * samples) % (1 << min(bits, 12))
    ds.PixelData = values.astype(f"u{bits // 8}").tobytes()
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    return ds


def signedTwelveBits(low=-2048, high=2047):
    """A signed 12-bit image from ``low`` to ``high``, bright and dark
    regions at these ends."""
    ds = image()
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 1
    column = np.arange(64 * 64) % 64
    values = np.where(column < 16, high, np.where(column < 32, low, np.arange(64 * 64) % 4096 - 2048))
    ds.PixelData = np.clip(values, low, high).astype("<i2").tobytes()
    return ds


def eightBitsInSixteen(signed):
    """8 bits stored in 16, white and grey columns: unsigned with an
    overlay bit (12) in its first rows, signed with words that are not
    sign-extended (-1 as 0x00FF, which PS3.5 allows); a Rescale Slope
    with a decimal comma."""
    ds = image()
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 7, int(signed)
    ds[0x00281053] = RawDataElement(Tag(0x00281053), "DS", 4, b"1,5 ", 0, False, True)  # Rescale Slope
    values = np.where(np.arange(64 * 64) % 64 < 32, 255, np.arange(64 * 64) % 256) - (128 if signed else 0)
    words = values.astype("<i2").view("<u2")
    if signed:
        words = words & 0xFF
    else:
        words = words | np.where(np.arange(64 * 64) // 64 < 20, 1 << 12, 0).astype("<u2")
    ds.PixelData = words.tobytes()
    return ds


class Checks:
    """Assertions the test cases share."""

    def assertElementsKept(self, original, converted, ignore=()):
        """Every top-level element of ``original`` is in ``converted`` with
        the same value, but those of ``ignore``."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._assertElementsKept(original, converted, ignore)

    def _assertElementsKept(self, original, converted, ignore):
        implicit = converted.file_meta.TransferSyntaxUID == IMPLICIT_VR_LITTLE_ENDIAN
        for element in original:
            if element.tag in ignore or element.tag.group == 0x0002 or element.tag.element == 0:
                continue  # group lengths: retired, pydicom drops them
            if implicit and element.tag.is_private:
                continue  # their VR is not known without explicit VR
            self.assertIn(element.tag, converted)
            self.assertEqual(converted[element.tag].value, element.value, element.tag)

    def assertSamePixels(self, converted, reference, name):
        array = pixels(converted)
        self.assertEqual(array.shape, reference.shape, name)
        self.assertTrue(np.array_equal(array, reference), name)

    def assertEncapsulated(self, ds):
        self.assertTrue(ds["PixelData"].is_undefined_length)
        self.assertEqual(ds["PixelData"].VR, "OB")


class SameSyntaxTests(unittest.TestCase):

    def test_sameObject(self):
        syntax, data, _ = split("CT_small.dcm")
        self.assertIs(convert(data, syntax, syntax), data)
        _, jpeg, _ = split("SC_rgb_jpeg_dcmtk.dcm")
        self.assertIs(convert(jpeg, JPEG_BASELINE, JPEG_BASELINE), jpeg)

    def test_paddedSyntax(self):
        """A NUL-padded UID (as in a file's meta) is the same syntax."""
        syntax, data, _ = split("CT_small.dcm")
        self.assertIs(convert(data, syntax + "\x00", syntax), data)

    def test_sameObjectEvenIfMalformed(self):
        """Nothing is looked at when nothing is to be done."""
        self.assertIs(convert(b"junk", RLE_LOSSLESS, RLE_LOSSLESS), b"junk")


class UncompressedTests(Checks, unittest.TestCase):
    """Between the native syntaxes: elements re-encoded, pixels untouched."""

    def test_nativeFiles(self):
        """Every native file to every native syntax: pydicom reads the same
        elements and the same pixels."""
        for name in NATIVE_FILES:
            syntax, data, original = split(name)
            reference = pixels(original)
            for target in UNCOMPRESSED:
                converted = asFile(convert(data, syntax, target), target, original)
                self.assertSamePixels(converted, reference, (name, target))
                ignore = {PIXEL_DATA, 0x00281201, 0x00281202, 0x00281203}
                self.assertElementsKept(original, converted, ignore)

    def test_littleEndianRoundTrip(self):
        """Little endian -> little endian -> back: the same data set, Pixel
        Data bytes included."""
        for name in ["CT_small.dcm", "MR_small_implicit.dcm", "image_dfl.dcm", "SC_rgb_small_odd.dcm"]:
            syntax, data, original = split(name)
            for target in LITTLE_ENDIAN:
                if target == syntax:
                    continue
                there = convert(data, syntax, target)
                back = convert(there, target, syntax)
                converted = asFile(back, syntax, original)
                self.assertElementsKept(original, converted)
                self.assertEqual(converted.PixelData, original.PixelData, (name, target))

    def test_explicitImplicitBytes(self):
        """Explicit -> implicit gives what pydicom writes, and back."""
        syntax, data, original = split("CT_small.dcm")
        implicit = convert(data, syntax, IMPLICIT_VR_LITTLE_ENDIAN)
        expected = asFile(encode(original, IMPLICIT_VR_LITTLE_ENDIAN), IMPLICIT_VR_LITTLE_ENDIAN, original)
        self.assertEqual(asFile(implicit, IMPLICIT_VR_LITTLE_ENDIAN, original), expected)
        self.assertEqual(convert(implicit, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN), data)

    def test_pixelDataVR(self):
        """Implicit -> explicit: Pixel Data OW (PS3.5 A.1), as pydicom does;
        an explicit source's VR is kept."""
        ds = image(bits=8)
        implicit = encode(ds, IMPLICIT_VR_LITTLE_ENDIAN)
        explicit = convert(implicit, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(asFile(explicit, EXPLICIT_VR_LITTLE_ENDIAN)["PixelData"].VR, "OW")
        deflated = convert(encode(ds, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN,
                             DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(asFile(deflated, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)["PixelData"].VR, "OB")

    def test_elementsAfterPixelData(self):
        """Elements after Pixel Data (trailing padding ...) survive."""
        ds = image()
        ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 6)
        ds.add_new(0x7FE10010, "LO", "TRAILER")
        ds.add_new(0x7FE10001, "LO", "PRIVATE CREATOR")
        for source in LITTLE_ENDIAN:
            for target in UNCOMPRESSED:
                if target == source:
                    continue
                converted = asFile(convert(encode(ds, source), source, target), target)
                self.assertEqual(converted[0xFFFCFFFC].value, b"\x00" * 6, (source, target))
                self.assertEqual(converted[0x7FE10010].value, "TRAILER", (source, target))
                self.assertEqual(pixels(converted).astype("<u2").tobytes(), ds.PixelData, (source, target))

    def test_oddPixelData(self):
        """An odd-length Pixel Data value (invalid, but seen) is padded."""
        ds = image(rows=3, columns=3, bits=8)
        data = bytearray(encode(ds, EXPLICIT_VR_LITTLE_ENDIAN))
        # pydicom pads when writing: state the odd length and drop the pad.
        position = data.rindex(b"\xe0\x7f\x10\x00")
        struct.pack_into("<L", data, position + 8, 9)
        del data[-1]
        implicit = convert(bytes(data), EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(len(implicit) % 2, 0)
        self.assertEqual(asFile(implicit, IMPLICIT_VR_LITTLE_ENDIAN).PixelData[:9], ds.PixelData)

    def test_deflatedIsRawDeflate(self):
        """PS3.5 A.5: raw deflate of the explicit VR little endian data set."""
        syntax, data, _ = split("CT_small.dcm")
        deflated = convert(data, syntax, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(len(deflated) % 2, 0)
        self.assertLess(len(deflated), len(data))
        self.assertEqual(zlib.decompressobj(-zlib.MAX_WBITS).decompress(deflated), data)

    def test_fromDeflated(self):
        syntax, data, original = split("image_dfl.dcm")
        self.assertEqual(syntax, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
        explicit = convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(explicit, zlib.decompressobj(-zlib.MAX_WBITS).decompress(data))

    def test_deflateBombRefused(self):
        """A deflated data set that inflates to more than INFLATED_IN_MEMORY
        is refused once that much is inflated, not inflated whole."""
        syntax, data, _ = split("image_dfl.dcm")
        inflated = len(zlib.decompressobj(-zlib.MAX_WBITS).decompress(data))
        self.patch(transcodeModule, "INFLATED_IN_MEMORY", inflated - 1)
        with self.assertRaises(TranscodeError) as raised:
            transcode(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertIn("inflates to more than", str(raised.exception))
        self.patch(transcodeModule, "INFLATED_IN_MEMORY", inflated)
        self.assertEqual(len(transcode(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN)), inflated)

    def test_bigEndianRoundTrip(self):
        """Little -> big -> little endian gives the original values back;
        the big endian copy reads (pydicom) as the same image."""
        for name in ["CT_small.dcm", "MR_small_implicit.dcm", "examples_palette.dcm", "SC_rgb_small_odd.dcm"]:
            syntax, data, original = split(name)
            big = convert(data, syntax, EXPLICIT_VR_BIG_ENDIAN)
            bigDataset = asFile(big, EXPLICIT_VR_BIG_ENDIAN, original)
            self.assertSamePixels(bigDataset, pixels(original), name)
            back = asFile(convert(big, EXPLICIT_VR_BIG_ENDIAN, syntax), syntax, original)
            self.assertElementsKept(original, back)
            self.assertEqual(back.PixelData, original.PixelData, name)

    def test_bigEndianValues(self):
        """'US or SS' values of an implicit source, and OW values, come out
        right in big endian."""
        syntax, data, original = split("MR_small_implicit.dcm")
        big = asFile(convert(data, syntax, EXPLICIT_VR_BIG_ENDIAN), EXPLICIT_VR_BIG_ENDIAN, original)
        self.assertEqual(big.SmallestImagePixelValue, original.SmallestImagePixelValue)
        self.assertEqual(big.LargestImagePixelValue, original.LargestImagePixelValue)
        self.assertEqual(big["LargestImagePixelValue"].VR, "SS")
        syntax, data, original = split("examples_palette.dcm")
        big = asFile(convert(data, syntax, EXPLICIT_VR_BIG_ENDIAN), EXPLICIT_VR_BIG_ENDIAN, original)
        lut = np.frombuffer(original.RedPaletteColorLookupTableData, "<u2")
        self.assertTrue(np.array_equal(np.frombuffer(big.RedPaletteColorLookupTableData, ">u2"), lut))

    def test_bigEndian32Bits(self):
        """32-bit big endian samples swap as 4 bytes (rtdose_expb)."""
        syntax, data, original = split("rtdose_expb.dcm")
        little = asFile(convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN, original)
        _, _, reference = split("rtdose.dcm")
        self.assertEqual(little.PixelData, reference.PixelData)

    def test_bigPixelDataNotParsed(self):
        """Little endian conversions copy Pixel Data straight across (a
        view of the input until the output is joined)."""
        ds = image(rows=512, columns=512, frames=8)
        data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
        parts = transcodeModule._littleEndianParts(data, False, True)
        view = [part for part in parts if isinstance(part, memoryview)]
        self.assertEqual(len(view), 1)
        self.assertEqual(view[0].obj, data)
        self.assertEqual(len(view[0]), len(ds.PixelData))


class DecompressTests(Checks, unittest.TestCase):
    """Compressed -> uncompressed: pixels as pydicom decodes the original."""

    def assertDecompressed(self, names, lossless):
        for name in names:
            syntax, data, original = split(name)
            reference = pixels(original)
            for target in [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]:
                converted = asFile(convert(data, syntax, target), target, original)
                self.assertSamePixels(converted, reference, (name, target))
                self.assertElementsKept(original, converted, PIXEL_MODULE)
                if lossless:
                    self.assertFalse(converted["PixelData"].is_undefined_length)
                    self.assertNotIn("LossyImageCompression", set(converted.dir()) - set(original.dir()))

    def test_losslessFiles(self):
        self.assertDecompressed(LOSSLESS_FILES, lossless=True)

    def test_lossyFiles(self):
        """Lossy sources: exactly pydicom's decoding of the same file."""
        self.assertDecompressed(LOSSY_FILES, lossless=False)

    def test_otherNativeTargets(self):
        for name in ["MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm"]:
            syntax, data, original = split(name)
            for target in [EXPLICIT_VR_BIG_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN]:
                converted = asFile(convert(data, syntax, target), target, original)
                self.assertSamePixels(converted, pixels(original), (name, target))

    def test_jpegBaselineBecomesRGB(self):
        """A YBR_FULL_422 JPEG comes out RGB, by pixel, marked lossy."""
        syntax, data, original = split("examples_ybr_color.dcm")
        self.assertEqual(syntax, JPEG_BASELINE)
        self.assertEqual(original.PhotometricInterpretation, "YBR_FULL_422")
        converted = asFile(convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(converted.PhotometricInterpretation, "RGB")
        self.assertEqual(converted.PlanarConfiguration, 0)
        self.assertEqual(converted.LossyImageCompression, "01")
        self.assertEqual(converted.SOPInstanceUID, original.SOPInstanceUID)
        frames = original.get("NumberOfFrames") or 1
        self.assertEqual(len(converted.PixelData), original.Rows * original.Columns * 3 * frames)

    def test_lossyMarked(self):
        """A JPEG lossy source that did not say so gets Lossy Image
        Compression 01; a JPEG 2000 one (maybe reversible) does not."""
        syntax, data, original = split("JPGExtended.dcm")
        ds = asFile(data, syntax, original)
        if "LossyImageCompression" in ds:
            del ds.LossyImageCompression
        unmarked = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
        converted = asFile(convert(unmarked, JPEG_EXTENDED, IMPLICIT_VR_LITTLE_ENDIAN),
                           IMPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(converted.LossyImageCompression, "01")
        syntax, data, original = split("MR_small_jp2klossless.dcm")
        converted = asFile(convert(data, JPEG_2000, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(converted.get("LossyImageCompression"), original.get("LossyImageCompression"))

    def test_jpegLsNearLosslessMarkedWhenNearIsAboveZero(self):
        """NEAR 2 in the scan header: lossy, PS3.3 C.7.6.1.1.5 wants 01."""
        syntax, data, original = split("JPEGLSNearLossless_08.dcm")
        self.assertEqual((syntax, original.get("LossyImageCompression")), (JPEG_LS_NEAR_LOSSLESS, None))
        for target in [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]:
            converted = asFile(convert(data, syntax, target), target)
            self.assertEqual(converted.LossyImageCompression, "01")
            self.assertEqual(converted.LossyImageCompressionMethod, "ISO_14495_1")

    def test_jpegLsNearZeroIsLossless(self):
        original = pydicom.dcmread(DATA / "JPEGLSNearLossless_08.dcm")
        pixelData = bytearray(original.PixelData)
        sos = pixelData.index(b"\xff\xda")
        self.assertTrue(codedLossy(JPEG_LS_NEAR_LOSSLESS, bytes(pixelData)))
        pixelData[sos + 5 + 2 * pixelData[sos + 4]] = 0
        self.assertFalse(codedLossy(JPEG_LS_NEAR_LOSSLESS, bytes(pixelData)))
        self.assertFalse(codedLossy(JPEG_LS_NEAR_LOSSLESS, io.BytesIO(pixelData)))
        self.assertFalse(codedLossy(JPEG_LS_NEAR_LOSSLESS, b"not encapsulated"))
        self.assertTrue(codedLossy(JPEG_BASELINE, b""))

    def test_multiFrame(self):
        syntax, data, original = split("rtdose_rle.dcm")
        converted = asFile(convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(converted.NumberOfFrames, 15)
        self.assertSamePixels(converted, pixels(original), "rtdose_rle.dcm")

    def test_extendedOffsetTableDropped(self):
        ds = image(frames=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compress(ds, RLE_LOSSLESS, encapsulate_ext=True, generate_instance_uid=False)
        self.assertIn("ExtendedOffsetTable", ds)
        data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
        converted = asFile(convert(data, RLE_LOSSLESS, IMPLICIT_VR_LITTLE_ENDIAN), IMPLICIT_VR_LITTLE_ENDIAN)
        self.assertNotIn("ExtendedOffsetTable", converted)
        self.assertNotIn("ExtendedOffsetTableLengths", converted)
        self.assertEqual(converted.PixelData, image(frames=2).PixelData)

    def test_encapsulatedIcon(self):
        """An encapsulated icon (Icon Image Sequence) is decoded too."""
        icon = image(rows=16, columns=16, bits=8)
        del icon.SOPClassUID, icon.SOPInstanceUID, icon.PatientName
        iconPixels = icon.PixelData
        quietly(lambda: compress(icon, RLE_LOSSLESS, generate_instance_uid=False))
        del icon.file_meta
        ds = image()
        quietly(lambda: compress(ds, RLE_LOSSLESS, generate_instance_uid=False))
        del ds.file_meta
        ds.IconImageSequence = [icon]
        data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
        for target in [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN]:
            converted = asFile(convert(data, RLE_LOSSLESS, target), target)
            item = converted.IconImageSequence[0]
            self.assertFalse(item["PixelData"].is_undefined_length)
            self.assertEqual(item.PixelData, iconPixels)
            self.assertEqual(pixels(converted).astype("<u2").tobytes(), image().PixelData)


class CompressTests(Checks, unittest.TestCase):
    """Uncompressed -> compressed, and compressed -> compressed."""

    def roundTrip(self, name, via):
        syntax, data, original = split(name)
        compressed = convert(data, syntax, via)
        ds = asFile(compressed, via, original)
        self.assertEncapsulated(ds)
        self.assertEqual(ds.SOPInstanceUID, original.SOPInstanceUID)
        back = convert(compressed, via, EXPLICIT_VR_LITTLE_ENDIAN)
        return original, ds, asFile(back, EXPLICIT_VR_LITTLE_ENDIAN, original)

    def test_losslessRoundTrips(self):
        """uncompressed -> RLE / JPEG 2000 lossless -> uncompressed: the
        same pixels."""
        for name in ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                     "ExplVR_BigEnd.dcm", "image_dfl.dcm", "examples_rgb_color.dcm"]:
            for via in [RLE_LOSSLESS, JPEG_2000_LOSSLESS]:
                original, compressed, back = self.roundTrip(name, via)
                reference = pixels(original)
                self.assertSamePixels(compressed, reference, (name, via))
                self.assertSamePixels(back, reference, (name, via))
                self.assertElementsKept(original, back, PIXEL_MODULE)
                self.assertNotIn("LossyImageCompressionMethod", compressed)

    def test_multiFrame(self):
        ds = image(frames=3, samples=3, bits=8)
        data = encode(ds, IMPLICIT_VR_LITTLE_ENDIAN)
        for via in [RLE_LOSSLESS, JPEG_2000_LOSSLESS]:
            compressed = convert(data, IMPLICIT_VR_LITTLE_ENDIAN, via)
            back = convert(compressed, via, IMPLICIT_VR_LITTLE_ENDIAN)
            self.assertEqual(asFile(back, IMPLICIT_VR_LITTLE_ENDIAN).PixelData, ds.PixelData, via)

    def test_ybr422(self):
        """Native YBR_FULL_422 is expanded to YBR_FULL for the encoder."""
        syntax, data, original = split("SC_ybr_full_422_uncompressed.dcm")
        for via in [RLE_LOSSLESS, JPEG_2000_LOSSLESS]:
            compressed = asFile(convert(data, syntax, via), via, original)
            self.assertEqual(compressed.PhotometricInterpretation, "YBR_FULL")
            self.assertSamePixels(compressed, pixels(original), via)

    def test_compressedToCompressed(self):
        for name, via in [("SC_rgb_rle_2frame.dcm", JPEG_2000_LOSSLESS),
                          ("MR_small_jp2klossless.dcm", RLE_LOSSLESS),
                          ("MR_small_jpeg_ls_lossless.dcm", RLE_LOSSLESS),
                          ("SC_rgb_jpeg_gdcm.dcm", RLE_LOSSLESS),
                          ("SC_rgb_jpeg_dcmtk.dcm", JPEG_2000_LOSSLESS)]:
            syntax, data, original = split(name)
            converted = asFile(convert(data, syntax, via), via, original)
            self.assertEncapsulated(converted)
            self.assertSamePixels(converted, pixels(original), name)
            self.assertElementsKept(original, converted, PIXEL_MODULE | {0x00282112, 0x00282114})

    def test_jpeg2000Lossy(self):
        """Compression ratio 100 / quality, as Conquest asks of OpenJPEG:
        quality 10 about 10:1; 95 (the default) nearly lossless."""
        syntax, data, original = split("CT_small.dcm")
        ds = asFile(quietly(transcode, data, syntax, JPEG_2000, 10), JPEG_2000, original)
        self.assertEncapsulated(ds)
        self.assertEqual(ds.LossyImageCompression, "01")
        self.assertEqual(ds.LossyImageCompressionMethod, "ISO_15444_1")
        self.assertGreater(float(ds.LossyImageCompressionRatio), 5)
        self.assertEqual(ds.SOPInstanceUID, original.SOPInstanceUID)
        reference = pixels(original).astype(float)
        error = pixels(ds) - reference
        psnr = 20 * np.log10((reference.max() - reference.min()) / np.sqrt(np.mean(error ** 2)))
        self.assertGreater(psnr, 35)
        fine = asFile(convert(data, syntax, JPEG_2000), JPEG_2000, original)
        self.assertLessEqual(np.abs(pixels(fine) - reference).max(), 2)

    def test_lossyHistoryAppended(self):
        """A second lossy compression adds its ratio and method."""
        syntax, data, original = split("SC_rgb_jpeg_dcmtk.dcm")
        ds = asFile(convert(data, syntax, JPEG_2000), JPEG_2000, original)
        self.assertEqual(list(ds.LossyImageCompressionMethod), ["ISO_10918_1", "ISO_15444_1"])
        self.assertEqual(len(ds.LossyImageCompressionRatio), 2)
        self.assertEqual(ds.LossyImageCompressionRatio[0], original.LossyImageCompressionRatio)

    def test_rleOfMoreThan16Bits(self):
        """32-bit RGB (12 segments) and 32-bit grayscale RT Dose go in RLE
        Lossless, which pydicom's encoder refuses, and back bit for bit;
        more than 15 segments (64-bit RGB) is still refused."""
        for name in ("SC_rgb_rle_32bit.dcm", "rtdose.dcm"):
            syntax, data, _ = split(name)
            native = convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN)
            rle = convert(native, EXPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS)
            self.assertEqual(convert(rle, RLE_LOSSLESS, EXPLICIT_VR_LITTLE_ENDIAN), native, name)
        ds = image(rows=4, columns=4, samples=3, bits=16)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelData = 64, 64, 63, bytes(4 * 4 * 3 * 8)
        with self.assertRaises(TranscodeError) as caught:
            transcode(encode(ds, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS)
        self.assertIn("at most 15 segments", str(caught.exception))

    def test_lossyHistoryKeptWhenItsCountsDiffer(self):
        """An earlier ratio without its method (pydicom's JPEG-lossy.dcm
        and JPEG2000.dcm say 76 and 2097, and no method) is kept, and so
        is a method without its ratio: the new ones are appended."""
        for name, ratio in (("JPEG-lossy.dcm", "76"), ("JPEG2000.dcm", "2097"),
                            ("SC_jpeg_no_color_transform.dcm", None)):
            syntax, data, original = split(name)
            decoded = asFile(convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN, original)
            ratios, methods = lossyHistory(decoded)
            self.assertEqual(ratios[:1], [ratio] if ratio else [], name)
            self.assertNotEqual(len(ratios), len(methods), name)
            ds = asFile(convert(encode(decoded, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000),
                        JPEG_2000, original)
            newRatios, newMethods = lossyHistory(ds)
            self.assertEqual((newRatios[:-1], newMethods), (ratios, methods + ["ISO_15444_1"]), name)

    def test_jpegLsNearLosslessOfSignedValuesAtTheirEnds(self):
        """JPEG-LS codes signed words as unsigned samples: with NEAR 3
        (quality 70) a 12-bit 2047 would come back -2048. Values within
        NEAR of either end are refused, with a log line; an image short of
        them is coded, every pixel within NEAR. ``recode`` then takes j7's
        lossless syntax (tests/pacscore/codecs/test_compression.py)."""
        events = []
        observer = transcodeModule.log.observer
        transcodeModule.log.observer = events.append
        self.addCleanup(setattr, transcodeModule.log, "observer", observer)

        def nearLossless(ds):
            return quietly(transcode, encode(ds, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN,
                           JPEG_LS_NEAR_LOSSLESS, 70)

        for low, high in ((-2048, 2047), (-2048, 2044), (-2045, 2047)):
            with self.assertRaises(TranscodeError) as caught:
                nearLossless(signedTwelveBits(low, high))
            self.assertIn(f"span {low}..{high}, and JPEG-LS near-lossless (NEAR 3) of 12 bits stored keeps only "
                          "-2045..2044", str(caught.exception))
        self.assertEqual([event["uid"] for event in events], [image().SOPInstanceUID] * 3)
        within = signedTwelveBits(-2045, 2044)
        back = asFile(convert(nearLossless(within), JPEG_LS_NEAR_LOSSLESS, EXPLICIT_VR_LITTLE_ENDIAN),
                      EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(back.LossyImageCompression, "01")
        decoded = atBitsStored(pixels(back), back).astype(np.int64)
        self.assertLessEqual(np.abs(decoded - pixels(within)).max(), 3)

    def test_jpegLsNearZeroNotMarkedLossy(self):
        """JPEG-LS near-lossless at a quality from 91 up codes NEAR 0, a
        bit-exact stream (codedLossy says so): no Lossy Image Compression
        01, which could never be taken back; below 91 it is marked."""
        syntax, data, original = split("CT_small.dcm")
        ds = asFile(quietly(transcode, data, syntax, JPEG_LS_NEAR_LOSSLESS, 95), JPEG_LS_NEAR_LOSSLESS, original)
        self.assertFalse(codedLossy(JPEG_LS_NEAR_LOSSLESS, ds.PixelData))
        self.assertEqual(ds.get("LossyImageCompression"), original.get("LossyImageCompression"))
        self.assertEqual(lossyHistory(ds), lossyHistory(original))
        self.assertSamePixels(ds, pixels(original), "CT_small.dcm")
        lossy = asFile(quietly(transcode, data, syntax, JPEG_LS_NEAR_LOSSLESS, 70), JPEG_LS_NEAR_LOSSLESS, original)
        self.assertEqual((lossy.LossyImageCompression, lossy.LossyImageCompressionMethod), ("01", "ISO_14495_1"))

    def test_jpegLS(self):
        """Round trip where an encoder (pyjpegls) is installed; a clear
        TranscodeError where none is (as here by default)."""
        if canEncode(JPEG_LS_LOSSLESS):
            original, _, back = self.roundTrip("CT_small.dcm", JPEG_LS_LOSSLESS)
            self.assertSamePixels(back, pixels(original), "CT_small.dcm")
        else:
            syntax, data, _ = split("CT_small.dcm")
            self.assertRaises(TranscodeError, transcode, data, syntax, JPEG_LS_LOSSLESS)


class NoPixelDataTests(Checks, unittest.TestCase):
    """SR, RT plan ...: the elements re-encoded, whatever the syntaxes."""

    def test_uncompressed(self):
        for name in ["test-SR.dcm", "rtplan.dcm", "rtstruct.dcm", "reportsi.dcm"]:
            syntax, data, original = split(name)
            for target in UNCOMPRESSED:
                converted = asFile(convert(data, syntax, target), target, original)
                self.assertElementsKept(original, converted)
                self.assertEqual(len(converted), len(original))

    def test_toCompressedSyntax(self):
        """In an encapsulated syntax a data set without pixels is explicit
        VR little endian (PS3.5 A.4)."""
        syntax, data, original = split("rtplan.dcm")
        explicit = convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN)
        for target in [JPEG_2000_LOSSLESS, RLE_LOSSLESS, JPEG_BASELINE, JPEG_LOSSLESS_SV1]:
            self.assertEqual(convert(data, syntax, target), explicit, target)

    def test_fromCompressedSyntax(self):
        syntax, data, original = split("test-SR.dcm")
        for source in [JPEG_BASELINE, JPEG_2000, RLE_LOSSLESS]:
            for target in UNCOMPRESSED + [JPEG_2000_LOSSLESS]:
                converted = asFile(convert(data, source, target), target, original)
                self.assertElementsKept(original, converted)


class FloatPixelDataTests(unittest.TestCase):
    """Float and Double Float Pixel Data are native only (PS3.5 8: only
    Pixel Data is encapsulated; dcmcjpeg refuses them): no compressed
    syntax, where a data set without pixels would simply be relabelled."""

    def test_noCompressedSyntax(self):
        for keyword, bits, value in (("FloatPixelData", 32, np.arange(80, dtype="<f4")),
                                     ("DoubleFloatPixelData", 64, np.arange(80, dtype="<f8"))):
            ds = Dataset()
            ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.30", "1.2.826.0.1.3680043.8.498.2"
            ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = 8, 10, 1, bits
            ds.PhotometricInterpretation = "MONOCHROME2"
            setattr(ds, keyword, value.tobytes())
            data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
            for target in (JPEG_2000_LOSSLESS, RLE_LOSSLESS, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS):
                with self.assertRaises(TranscodeError) as caught:
                    transcode(data, EXPLICIT_VR_LITTLE_ENDIAN, target)
                self.assertIn(f"{keyword} can only be native", str(caught.exception))
            back = asFile(convert(data, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN), EXPLICIT_VR_BIG_ENDIAN)
            self.assertEqual(getattr(back, keyword), value.byteswap().tobytes())  # as read: big endian


class ErrorTests(unittest.TestCase):
    """Every failure is a TranscodeError saying what went wrong."""

    def assertFails(self, data, source, target, *words):
        with self.assertRaises(TranscodeError) as caught:
            quietly(transcode, data, source, target)
        message = str(caught.exception)
        for word in words:
            self.assertIn(word, message)
        return message

    def test_unknownSyntax(self):
        syntax, data, _ = split("CT_small.dcm")
        self.assertFails(data, syntax, "1.2.3.4", "1.2.3.4", "not a transfer syntax")
        self.assertFails(data, "1.2.3.4", syntax, "1.2.3.4", "not a transfer syntax")
        self.assertFails(data, syntax, "", "not a transfer syntax")
        self.assertFails(data, None, syntax)
        self.assertFails(data, syntax, "junk")

    def test_truncated(self):
        syntax, data, _ = split("CT_small.dcm")
        for cut in [1, 2, 100, len(data) - 1000]:
            self.assertFails(data[:-cut], syntax, IMPLICIT_VR_LITTLE_ENDIAN, "malformed")
        syntax, data, _ = split("MR_truncated.dcm")
        self.assertFails(data, syntax, IMPLICIT_VR_LITTLE_ENDIAN, "malformed")
        syntax, data, _ = split("JPEG2000.dcm")
        self.assertFails(data[:-20], syntax, EXPLICIT_VR_LITTLE_ENDIAN, "malformed")

    def test_garbage(self):
        for source in [EXPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE, EXPLICIT_VR_BIG_ENDIAN]:
            self.assertFails(b"not a DICOM data set at all", source, IMPLICIT_VR_LITTLE_ENDIAN)
        self.assertFails(None, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)

    def test_corruptDeflate(self):
        syntax, data, _ = split("image_dfl.dcm")
        self.assertFails(data[:len(data) // 2], syntax, EXPLICIT_VR_LITTLE_ENDIAN, "deflated", "truncated")
        self.assertFails(b"\xff" * 100, syntax, EXPLICIT_VR_LITTLE_ENDIAN, "deflated", "corrupt")

    def test_noEncoder(self):
        syntax, data, _ = split("CT_small.dcm")
        self.assertFails(data, syntax, "1.2.840.10008.1.2.4.100", "no encoder")  # MPEG2
        if not canEncode(JPEG_LS_LOSSLESS):
            self.assertFails(data, syntax, JPEG_LS_LOSSLESS, "no encoder")

    def test_encoderRefuses(self):
        """openjpeg takes no image under 32 pixels (RLE more than 15
        segments: ``CompressTests.test_rleOfMoreThan16Bits``)."""
        syntax, data, _ = split("SC_rgb_small_odd.dcm")
        self.assertFails(data, syntax, JPEG_2000_LOSSLESS, "JPEG 2000")

    def test_corruptCompressedPixels(self):
        ds = image()
        ds.PixelData = encapsulate([b"\x00" * 64])
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
        data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertFails(data, JPEG_2000_LOSSLESS, EXPLICIT_VR_LITTLE_ENDIAN, "JPEG 2000")
        self.assertFails(data, JPEG_BASELINE, RLE_LOSSLESS)

    def test_mislabelled(self):
        """Encapsulated Pixel Data said to be uncompressed."""
        syntax, data, _ = split("MR_small_RLE.dcm")
        for source in [EXPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN]:
            if source == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
                data = deflater.compress(data) + deflater.flush()
            self.assertFails(data, source, IMPLICIT_VR_LITTLE_ENDIAN, "encapsulated")

    def test_incompleteImage(self):
        ds = image()
        del ds.BitsAllocated
        data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertFails(data, EXPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS, "Bits Allocated")

    def test_messageNamesBoth(self):
        syntax, data, _ = split("CT_small.dcm")
        message = self.assertFails(data, syntax, JPEG_BASELINE)
        self.assertIn("Explicit VR Little Endian (1.2.840.10008.1.2.1)", message)
        self.assertIn("JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)", message)


def reframed(name, change, number=None, fragments=1):
    """``(syntax, data set bytes)`` of pydicom's file ``name`` whose frames
    are ``change(frames)``, each in ``fragments`` fragments, with a Basic
    Offset Table, and Number of Frames ``number`` when given."""
    syntax, _, ds = split(name)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1)))
    ds.PixelData = encapsulate(change(frames), fragments_per_frame=fragments)
    ds["PixelData"].is_undefined_length = True
    if number is not None:
        ds.NumberOfFrames = number
    return syntax, encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)


def cutShortDataset(source):
    """pydicom's reading of the Part-10 file ``source`` (one encapsulated
    frame) with its codestream cut to its first third (no end of image
    marker)."""
    ds = pydicom.dcmread(source)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[:len(frame) // 3]])
    return ds


def streamed(fileobj, offset, length, syntax, target, change=None):
    """What ``transcodeFile`` writes, checked against the count it returns."""
    with tempfile.TemporaryFile() as out:
        written = transcodeFile(fileobj, offset, length, syntax, target, out, change)
        out.seek(0)
        data = out.read()
    assert written == len(data)
    return data


def both(data, syntax, target):
    """``data`` converted in memory and file to file (when it is): the
    outcome (a TranscodeError or the bytes), checked to be the same both
    ways."""
    outcomes = []
    for convert in (lambda: quietly(transcode, data, syntax, target),
                    lambda: quietly(streamed, io.BytesIO(data), 0, len(data), syntax, target)):
        try:
            outcomes.append(convert())
        except TranscodeError as e:
            outcomes.append(e)
        except NotStreamed:
            outcomes.append(outcomes[0])
    if isinstance(outcomes[0], TranscodeError):
        assert str(outcomes[1]) == str(outcomes[0]), "refused in memory, not so file to file"
        return outcomes[0]
    assert outcomes[0] == outcomes[1], "in memory and file to file differ"
    return outcomes[0]


def assertRefusedBoth(test, data, syntax, message):
    """``test`` fails unless ``data`` is refused with ``message``, in memory
    and file to file, into Explicit and Implicit VR Little Endian."""
    for target in (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN):
        outcome = both(data, syntax, target)
        test.assertIsInstance(outcome, TranscodeError, f"{syntax} decoded")
        test.assertIn(message, str(outcome))


class CutStreamTests(unittest.TestCase):
    """A JPEG or JPEG-LS frame cut before its end of image marker, which
    the decoders here would decode into a partly filled image, is refused
    in memory and file to file, as DCMTK refuses it; whole ones, padded or
    in several fragments, are decoded."""

    JPEG_FILES = ["SC_rgb_jpeg_gdcm.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPGExtended.dcm", "JPEG-lossy.dcm",
                  "MR_small_jpeg_ls_lossless.dcm", "JPEGLSNearLossless_08.dcm", "SC_rgb_jls_lossy_line.dcm"]

    def assertRefused(self, data, syntax):
        assertRefusedBoth(self, data, syntax, "frame 1 of its Pixel Data is cut short (no end of image marker)")

    def test_cutToAThirdRefused(self):
        for name in self.JPEG_FILES:
            syntax, data = reframed(name, lambda frames: [frames[0][:len(frames[0]) // 3]])
            self.assertRefused(data, syntax)

    def test_cutInSeveralFragmentsRefused(self):
        syntax, data = reframed("SC_rgb_jpeg_gdcm.dcm", lambda frames: [frames[0][:-2]], fragments=3)
        self.assertRefused(data, syntax)

    def test_wholeStreamsDecoded(self):
        """Padded with 0x00 or 0xFF bytes after their end of image marker,
        or in several fragments: decoded as the original is."""
        for name in self.JPEG_FILES:
            syntax, data, _ = split(name)
            reference = pixels(asFile(convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN))
            for change, fragments in ((lambda frames: [frame + b"\0\0" for frame in frames], 1),
                                      (lambda frames: [frame + b"\xff\xff" for frame in frames], 1),
                                      (lambda frames: frames, 3)):
                syntax, data = reframed(name, change, fragments=fragments)
                converted = asFile(both(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
                self.assertTrue(np.array_equal(pixels(converted), reference), name)


class FrameCountTests(unittest.TestCase):
    """Pixel Data holding more or fewer frames than Number of Frames says
    is refused in memory and file to file, as DCMTK refuses it: pydicom
    decoded the frames it found, in memory writing their count as Number
    of Frames, file to file keeping the header's (41 with the pixels of
    40, an object no reader takes)."""

    def assertRefused(self, data, syntax, found, said):
        assertRefusedBoth(self, data, syntax,
                          f"its Pixel Data holds {found} frame(s), its Number of Frames says {said}")

    def test_fewerFrames(self):
        syntax, data = reframed("SC_rgb_rle_2frame.dcm", lambda frames: frames, number=3)
        self.assertRefused(data, syntax, 2, 3)
        syntax, data = reframed("MR_small_jpeg_ls_lossless.dcm", lambda frames: frames, number=2)
        self.assertRefused(data, syntax, 1, 2)

    def test_moreFrames(self):
        syntax, data = reframed("SC_rgb_rle_2frame.dcm", lambda frames: frames, number=1)
        self.assertRefused(data, syntax, 2, 1)

    def test_asManyFramesDecoded(self):
        syntax, data, original = split("SC_rgb_rle_2frame.dcm")
        converted = asFile(both(data, syntax, IMPLICIT_VR_LITTLE_ENDIAN), IMPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(converted.NumberOfFrames, 2)
        self.assertTrue(np.array_equal(pixels(converted), pixels(original)))

    def test_framesWalkedOnce(self):
        """Damage and JPEG scans to mend are found in one walk of the frames."""
        walks = []

        def counted(*args, **options):
            walks.append(args)
            return generate_frames(*args, **options)
        self.patch(encapsulatedframes, "generate_frames", counted)
        self.patch(transcodeModule, "generate_frames", counted)
        syntax, data, _ = split("SC_rgb_jpeg_dcmtk.dcm")
        convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN)
        streamed(io.BytesIO(data), 0, len(data), syntax, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(len(walks), 2)


class FrameSizeTests(unittest.TestCase):

    def test_bogusFrameSizeRefusedUndecoded(self):
        """A tiny RLE object whose Rows and Columns claim 65535 x 65535
        pixels (8 GB decoded) is refused before anything is decoded, in
        memory and file to file (``transcode.checkFrameSize``)."""
        syntax, _, ds = split("MR_small_RLE.dcm")
        ds.Rows = ds.Columns = 65535
        data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)

        def decoder(*args, **options):
            raise AssertionError("decoded")
        self.patch(transcodeModule, "decompress", decoder)
        self.patch(filetranscode, "get_decoder", decoder)
        outcome = both(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertTrue(isinstance(outcome, TranscodeError))
        self.assertIn("its frames of 65535 x 65535 pixels", str(outcome))


    def test_codestreamLargerThanObjectRefusedUndecoded(self):
        """A 64 x 64 object whose frame is a 2000 x 2000 codestream (the
        decoders allocate what the codestream says: a decompression bomb),
        in JPEG-LS, JPEG 2000 and baseline JPEG, is refused before
        anything is decoded, in memory and file to file
        (``codestreamheader``)."""
        def decoder(*args, **options):
            raise AssertionError("decoded")
        self.patch(transcodeModule, "decompress", decoder)
        self.patch(filetranscode, "get_decoder", decoder)
        for syntax in BOMB_CODESTREAMS:
            ds = bombDataset(syntax, 2000)
            outcome = both(encode(ds, EXPLICIT_VR_LITTLE_ENDIAN), syntax, EXPLICIT_VR_LITTLE_ENDIAN)
            self.assertTrue(isinstance(outcome, TranscodeError), syntax)
            self.assertIn("frame 1 of its Pixel Data does not hold the image the object describes: its codestream "
                          "is of 2000 x 2000 pixels of 1 sample(s), the object says 64 x 64 of 1", str(outcome))

    def test_largeRealFramesDecoded(self):
        """The bound of a decode (``LARGEST_DECODED_FRAME``) is over that of
        a rendered picture (``LARGEST_FRAME``): an 8000 x 8000 colour frame
        (a photograph's JPEG of some MB) is decoded, not refused; a picture
        of it is not made."""
        checkFrameSize(8000, 8000, 3)
        self.assertRaises(FrameTooLarge, checkFrameSize, 8000, 8000, 3, largest=LARGEST_FRAME)
        self.assertRaises(FrameTooLarge, checkFrameSize, 16384, 16385, 1)


class ThreadTests(unittest.TestCase):

    def test_concurrent(self):
        """Conversions in worker threads give what they give alone, JPEG
        2000 encoding and decoding side by side included (pylibjpeg-openjpeg
        crashes the process there without the lock)."""
        jobs = []
        for name in ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                     "MR_small_bigendian.dcm", "image_dfl.dcm", "MR_small_jp2klossless.dcm"]:
            syntax, data, _ = split(name)
            for target in [IMPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS, JPEG_2000_LOSSLESS, JPEG_2000]:
                jobs.append((data, syntax, target))
        with warnings.catch_warnings():  # once, here: the filters are process-wide
            warnings.simplefilter("ignore")
            expected = [transcode(*job) for job in jobs]
            with ThreadPoolExecutor(max_workers=4) as pool:
                results = list(pool.map(lambda job: transcode(*job), jobs * 4))
        self.assertEqual(results, expected * 4)


def overlaid(signed=False):
    """A 12-bit image in 16 bits with a pixel-embedded overlay in bit 12
    (the retired (60xx,0100) Overlay Bits Allocated 16, (60xx,0102) Overlay
    Bit Position 12), explicit VR little endian; signed, sign-extended."""
    ds = image()
    ds.BitsStored, ds.HighBit = 12, 11
    words = (np.arange(64 * 64) % 4096).astype(np.uint16).reshape(64, 64)
    if signed:
        ds.PixelRepresentation = 1
        words = ((words.astype(np.int16) - 2048) & 0xFFF).astype(np.uint16)
        words |= np.where(words & 0x800, 0xF000, 0).astype(np.uint16)
        words[20:40, 10:50] ^= 1 << 12
    else:
        words[20:40, 10:50] |= 1 << 12
    ds.PixelData = words.tobytes()
    ds.add_new(0x60000100, "US", 16)
    ds.add_new(0x60000102, "US", 12)
    return ds


LOSSLESS_TARGETS = [JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, JPEG_2000_LOSSLESS, RLE_LOSSLESS]


class BitsAboveHighBitTests(unittest.TestCase):
    """A lossless syntax gives back the stored words bit for bit, the bits
    above High Bit (embedded overlays) too, as DCMTK's true lossless mode."""

    def test_losslessRoundTrips(self):
        for signed in (False, True):
            ds = overlaid(signed)
            data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
            for via in LOSSLESS_TARGETS + [JPEG_LS_NEAR_LOSSLESS]:
                compressed = quietly(transcode, data, EXPLICIT_VR_LITTLE_ENDIAN, via, 95)
                back = asFile(convert(compressed, via, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
                self.assertEqual(back.PixelData, ds.PixelData, (signed, via))
                self.assertEqual((back.BitsStored, back.HighBit), (12, 11))

    def test_noOverlayCodedAtBitsStored(self):
        """Without bits above High Bit the precision stays Bits Stored."""
        ds = image()
        ds.BitsStored, ds.HighBit = 12, 11
        compressed = convert(encode(ds, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN, JPEG_LOSSLESS_SV1)
        frame = next(generate_frames(asFile(compressed, JPEG_LOSSLESS_SV1).PixelData, number_of_frames=1))
        self.assertEqual(frame[frame.index(b"\xff\xc3") + 4], 12)

    def test_wideStreamDecodedWhole(self):
        """A stream coded at 16 bits for 12 stored (dcmcjpeg +tl) decodes
        with its overlay bits, in memory and file to file."""
        ds = overlaid()
        frame = encodeFrame(np.frombuffer(ds.PixelData, "<u2").reshape(64, 64), 16)
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
        words = overlaid().PixelData
        back = asFile(convert(data, JPEG_LOSSLESS_SV1, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(back.PixelData, words)
        with tempfile.TemporaryFile() as out:
            transcodeFile(io.BytesIO(data), 0, len(data), JPEG_LOSSLESS_SV1, EXPLICIT_VR_LITTLE_ENDIAN, out)
            out.seek(0)
            self.assertEqual(asFile(out.read(), EXPLICIT_VR_LITTLE_ENDIAN).PixelData, words)

    def test_narrowSignedStreamSignExtended(self):
        """8 signed bits stored in 16, coded at 12 bits: decoded
        sign-extended, as stored."""
        ds = image()
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 7, 1
        ds.PixelData = (np.arange(64 * 64) % 256 - 128).astype("<i2").tobytes()
        data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
        compressed = convert(data, EXPLICIT_VR_LITTLE_ENDIAN, JPEG_LOSSLESS_SV1)
        back = asFile(convert(compressed, JPEG_LOSSLESS_SV1, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(back.PixelData, ds.PixelData)


    def test_eightBitsInSixteenKeepTheirWords(self):
        """8 bits stored in 16 allocated, unsigned and signed, come back as
        16-bit words from every code pydicom writes, in memory and file to
        file (an 8-bit stream decoded to half the Pixel Data before)."""
        for signed in (False, True):
            ds = image()
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 7, int(signed)
            ds.PixelData = (np.arange(64 * 64) % 256 - (128 if signed else 0)).astype("<i2").tobytes()
            data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
            for via in (JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS, JPEG_2000_LOSSLESS):
                compressed = quietly(transcode, data, EXPLICIT_VR_LITTLE_ENDIAN, via, 95)
                back = asFile(convert(compressed, via, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
                self.assertEqual((back.BitsAllocated, back.BitsStored), (16, 8))
                self.assertEqual(back.PixelData, ds.PixelData, (signed, via))
                with tempfile.TemporaryFile() as out:
                    transcodeFile(io.BytesIO(compressed), 0, len(compressed), via, EXPLICIT_VR_LITTLE_ENDIAN, out)
                    out.seek(0)
                    self.assertEqual(asFile(out.read(), EXPLICIT_VR_LITTLE_ENDIAN).PixelData, ds.PixelData)


    def test_eightBitsInSixteenColourComesBackUncompressed(self):
        """YBR_FULL with 8 bits stored in 16, coded in JPEG 2000 (as
        IncomingCompression jl stores it, or jk), decodes again, in
        memory and file to file, as YBR_FULL words: the decoders asked
        pydicom for RGB, which it converts from 8-bit samples only (WADO
        422, getscu refused)."""
        ds = image()
        ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PhotometricInterpretation = 3, 0, "YBR_FULL"
        ds.BitsStored, ds.HighBit = 8, 7
        ds.PixelData = (np.arange(64 * 64 * 3) % 256).astype("<u2").tobytes()
        data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
        for via in (JPEG_2000, JPEG_2000_LOSSLESS):
            compressed = quietly(transcode, data, EXPLICIT_VR_LITTLE_ENDIAN, via, 70)
            back = asFile(convert(compressed, via, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
            self.assertEqual((back.PhotometricInterpretation, back.BitsStored), ("YBR_FULL", 8), via)
            self.assertEqual(back.PixelData, ds.PixelData, via)
            with tempfile.TemporaryFile() as out:
                transcodeFile(io.BytesIO(compressed), 0, len(compressed), via, EXPLICIT_VR_LITTLE_ENDIAN, out)
                out.seek(0)
                self.assertEqual(asFile(out.read(), EXPLICIT_VR_LITTLE_ENDIAN).PixelData, ds.PixelData, via)

    def test_eightBitsInSixteenAreCodedLosslessInTheLossySyntax(self):
        """8 bits stored in 16 can only be coded at 16 bits, where a lossy
        coding's error would take 255 to 256 (black at 8 bits): JPEG 2000
        lossy (at 70 and 95) and JPEG-LS with NEAR 3 (70) code them
        losslessly in that same syntax instead (JPEG 2000 reversible,
        JPEG-LS with NEAR 0), with a log line: every word back, an overlay
        bit too, Bits Stored 8, no window added, not marked lossy. A
        malformed Rescale Slope plays no part."""
        events = []
        observer = transcodeModule.log.observer
        transcodeModule.log.observer = events.append
        self.addCleanup(setattr, transcodeModule.log, "observer", observer)
        for signed in (False, True):
            ds = eightBitsInSixteen(signed)
            data = encode(ds, EXPLICIT_VR_LITTLE_ENDIAN)
            for via, quality in ((JPEG_2000, 70), (JPEG_2000, 95), (JPEG_LS_NEAR_LOSSLESS, 70)):
                case = (signed, via, quality)
                del events[:]
                compressed = quietly(transcode, data, EXPLICIT_VR_LITTLE_ENDIAN, via, quality)
                self.assertEqual([(event["uid"], event["syntax"]) for event in events],
                                 [(ds.SOPInstanceUID, f"{UID(via).name} ({via})")], case)
                self.assertIn("lossy coding not applied: its 8 bits stored in 16 can only be coded at 16 bits",
                              events[0]["log_format"].format(**events[0]), case)
                coded = asFile(compressed, via)
                self.assertNotIn("LossyImageCompression", coded, case)
                back = asFile(convert(compressed, via, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN)
                self.assertEqual((back.BitsAllocated, back.BitsStored, back.HighBit), (16, 8, 7), case)
                self.assertEqual(back.PixelData, ds.PixelData, case)
                self.assertNotIn("WindowCenter", back, case)


class SequentialScansTests(Checks, unittest.TestCase):
    """A sequential JPEG whose scan header says Ss/Se other than 0/63
    (pydicom's JPEG-lossy.dcm, which libjpeg refuses) is decoded as
    dcmdjpeg decodes it."""

    def test_decodedWithALogLine(self):
        syntax, data, original = split("JPEG-lossy.dcm")
        events = []
        observer = transcodeModule.log.observer
        transcodeModule.log.observer = events.append
        self.addCleanup(setattr, transcodeModule.log, "observer", observer)
        back = asFile(convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN, original)
        self.assertEqual(pixels(back).shape, (original.Rows, original.Columns))
        self.assertEqual(back.LossyImageCompression, "01")
        self.assertElementsKept(original, back, PIXEL_MODULE | {0x00282110, 0x00282114})
        [event] = events
        self.assertEqual(event["uid"], original.SOPInstanceUID)
        self.assertIn("0/63", event["log_format"])

    def test_notStreamedFileToFile(self):
        syntax, data, _ = split("JPEG-lossy.dcm")
        with tempfile.TemporaryFile() as out:
            self.assertRaises(NotStreamed, transcodeFile, io.BytesIO(data), 0, len(data), syntax,
                              EXPLICIT_VR_LITTLE_ENDIAN, out)

    def test_laterFrameNotStreamedFileToFile(self):
        """A multi-frame object whose first frame is sound and a later one
        must be mended is converted in memory too, which mends it."""
        syntax, _, original = split("JPEG-lossy.dcm")
        [bad] = generate_frames(original.PixelData, number_of_frames=1)
        original.NumberOfFrames = 3
        original.PixelData = encapsulate([sequentialScansMended(bad), bad, bad])
        data = encode(original, EXPLICIT_VR_LITTLE_ENDIAN)
        with tempfile.TemporaryFile() as out:
            self.assertRaises(NotStreamed, transcodeFile, io.BytesIO(data), 0, len(data), syntax,
                              EXPLICIT_VR_LITTLE_ENDIAN, out)
        back = asFile(convert(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN, original)
        self.assertEqual(pixels(back).shape, (3, original.Rows, original.Columns))


class UndecodableValueTests(unittest.TestCase):
    """A binary value pydicom cannot decode (Diffusion b-value FD of 4
    bytes, stored as storescp stores it) made every conversion to another
    encoding fail ('cannot convert from Explicit VR Little Endian ... to
    Implicit VR Little Endian ...: BytesLengthException: With tag
    (0018,9087)'), in memory and streamed, a 406 to WADO-RS and a failed
    C-MOVE sub-operation; it is written as its bytes, in a sequence item
    too: as it was in Implicit VR, as UN in Big Endian."""

    def damaged(self):
        ds = pydicom.dcmread(DATA / "CT_small.dcm")
        item = Dataset()
        item.add_new(0x00189087, "FD", 0.0)
        ds.ReferencedSeriesSequence = [item]
        ds["ReferencedSeriesSequence"].is_undefined_length = True  # its lengths stay right as the value shrinks
        item.is_undefined_length_sequence_item = True
        ds.add_new(0x00189087, "FD", 0.0)
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = False, True
        write_dataset(fp, ds)
        good = b"\x18\x00\x87\x90FD\x08\x00" + bytes(8)
        self.assertEqual(fp.getvalue().count(good), 2)
        return fp.getvalue().replace(good, b"\x18\x00\x87\x90FD\x04\x00\x01\x00\x02\x00")

    def kept(self, data, implicit, little):
        ds = pydicom.filereader.read_dataset(io.BytesIO(data), implicit, little)
        return [(element.VR, element.value) for element in (ds.get_item(0x00189087),
                                                             ds.ReferencedSeriesSequence[0].get_item(0x00189087))]

    def test_convertedToImplicitAndBigEndian(self):
        data = self.damaged()
        implicit = transcode(data, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(self.kept(implicit, True, True), [(None, b"\x01\x00\x02\x00")] * 2)
        big = transcode(data, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN)
        self.assertEqual(self.kept(big, False, False), [("UN", b"\x01\x00\x02\x00")] * 2)
        for target in (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN):
            self.assertEqual(transcode(transcode(data, EXPLICIT_VR_LITTLE_ENDIAN, target), target,
                                       EXPLICIT_VR_LITTLE_ENDIAN)[-200:], data[-200:])

    def test_streamedToImplicit(self):
        data = self.damaged()
        with tempfile.TemporaryFile() as source, tempfile.TemporaryFile() as out:
            source.write(data)
            transcodeFile(source, 0, len(data), EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, out)
            out.seek(0)
            streamed = out.read()
        self.assertEqual(streamed, transcode(data, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN))
        self.assertEqual(self.kept(streamed, True, True), [(None, b"\x01\x00\x02\x00")] * 2)
