"""Tests for pacscore.codecs.filetranscode: a stored object converted from
its file into another, byte for byte as ``transcode`` converts it in
memory, for every file pydicom ships that it takes."""

import io
import struct
import tempfile
import tracemalloc
import zlib

from pydicom.dataset import Dataset
from twisted.trial import unittest

from pacscore.codecs import filetranscode
from pacscore.codecs.filetranscode import NotStreamed, streams, transcodeFile
from pacscore.codecs.syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN, JPEG_2000, JPEG_LS_LOSSLESS, RLE_LOSSLESS)
from pacscore.codecs.transcode import TranscodeError, transcode
from pacscore.control.deidentification import basicProfile
from pacscore.converters.uidmap import UIDMap
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.storage.attributes import DatasetError
from pacscore.storage.part10 import readFileMeta
from tests.pacscore.codecs.test_transcode import DATA, LOSSLESS_FILES, LOSSY_FILES, NATIVE_FILES, streamed

TARGETS = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
PADDING = struct.pack("<HH2sHL", 0xFFFC, 0xFFFC, b"OB", 0, 6) + b"\0" * 6  # Data Set Trailing Padding


def stored(name, extra=b""):
    """``(syntax, the Part-10 file as a file object, data set offset, its length)``."""
    with open(DATA / name, "rb") as f:
        content = f.read() + extra
    fileobj = io.BytesIO(content)
    syntax, _, offset = readFileMeta(fileobj)
    return syntax, fileobj, offset, len(content) - offset


class FileTranscodeTests(unittest.TestCase):

    def assertSameAsInMemory(self, name, extra=b""):
        syntax, fileobj, offset, length = stored(name, extra)
        for target in TARGETS:
            if not streams(syntax, target):
                continue
            fileobj.seek(offset)
            expected = transcode(fileobj.read(length), syntax, target)
            self.assertEqual(streamed(fileobj, offset, length, syntax, target), expected, (name, target))
        return syntax

    def test_compressedAsInMemory(self):
        for name in LOSSLESS_FILES + LOSSY_FILES:
            self.assertSameAsInMemory(name)

    def test_jpegLsNearLosslessMarkedLossy(self):
        syntax, fileobj, offset, length = stored("JPEGLSNearLossless_08.dcm")
        converted = decodeDataset(streamed(fileobj, offset, length, syntax, EXPLICIT_VR_LITTLE_ENDIAN),
                                  EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual((converted.LossyImageCompression, converted.LossyImageCompressionMethod),
                         ("01", "ISO_14495_1"))

    def test_nativeAsInMemory(self):
        streamedSyntaxes = {self.assertSameAsInMemory(name) for name in NATIVE_FILES}
        self.assertTrue({EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN} <= streamedSyntaxes)

    def test_elementsAfterThePixelData(self):
        for name in ("CT_small.dcm", "MR_small_implicit.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm"):
            self.assertSameAsInMemory(name, PADDING if name != "MR_small_implicit.dcm"
                                      else struct.pack("<HHL", 0xFFFC, 0xFFFC, 6) + b"\0" * 6)

    def test_changedAsInMemory(self):
        """With a change (the Basic Profile, as WADO-URI's anonymize asks),
        into either little endian syntax, the one it is in too: as the whole
        decoded, changed and converted in memory; the elements after the
        Pixel Data changed with the others (a private one goes)."""
        uidMap = UIDMap(prefix="1.2.826.0.1.3680043.2.135.1")
        for name in ("CT_small.dcm", "MR_small_implicit.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm"):
            private = (struct.pack("<HHL", 0x7FE1, 0x0010, 4) if name == "MR_small_implicit.dcm"
                       else struct.pack("<HH2sH", 0x7FE1, 0x0010, b"LO", 4)) + b"CSA "
            syntax, fileobj, offset, length = stored(name, private)
            for target in TARGETS:
                self.assertTrue(streams(syntax, target, changing=True), (name, target))
                fileobj.seek(offset)
                dataset = decodeDataset(fileobj.read(length), syntax)
                basicProfile(uidMap)(dataset)
                expected = transcode(encodeDataset(dataset, syntax), syntax, target)
                made = streamed(fileobj, offset, length, syntax, target, basicProfile(uidMap))
                self.assertEqual(made, expected, (name, target))
                self.assertNotIn(b"CSA ", made[-16:], (name, target))
        profile = basicProfile(uidMap)

        def burnedIn(ds):
            ds.BurnedInAnnotation = "YES"
            profile(ds)
        syntax, fileobj, offset, length = stored("CT_small.dcm")
        with self.assertRaises(DatasetError):  # refused, as in memory
            streamed(fileobj, offset, length, syntax, syntax, burnedIn)

    def test_onlyIntoLittleEndian(self):
        for source, target in ((EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN),
                               (EXPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN),
                               (EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN),
                               (IMPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS), (JPEG_2000, JPEG_LS_LOSSLESS),
                               (EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)):
            self.assertFalse(streams(source, target), (source, target))
            with self.assertRaises(NotStreamed):
                transcodeFile(io.BytesIO(), 0, 0, source, target, io.BytesIO())
        self.assertTrue(streams(JPEG_2000 + "\0", IMPLICIT_VR_LITTLE_ENDIAN))

    def test_deflatedInflatedAPieceAtATime(self):
        """A deflated object (256 MB of zero pixels, 250 kB stored) converts
        as in memory but with a few MB of memory: inflated a chunk at a
        time into a temporary file, its Pixel Data copied from there."""
        syntax, fileobj, offset, length = stored("image_dfl.dcm")
        self.assertEqual(syntax, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertTrue(streams(syntax, IMPLICIT_VR_LITTLE_ENDIAN))
        head = Dataset()
        head.SOPClassUID, head.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3"
        head.Rows, head.Columns, head.BitsAllocated, head.SamplesPerPixel = 16384, 16384, 8, 1
        size = 1 << 28
        deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        parts = [deflater.compress(encodeDataset(head, EXPLICIT_VR_LITTLE_ENDIAN)
                                   + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, size))]
        zeros = bytes(1 << 24)
        parts += [deflater.compress(zeros) for _ in range(size // len(zeros))] + [deflater.flush()]
        deflated = b"".join(parts)
        del zeros, parts
        tracemalloc.start()
        try:
            with tempfile.TemporaryFile() as out:
                written = transcodeFile(io.BytesIO(deflated), 0, len(deflated), syntax, IMPLICIT_VR_LITTLE_ENDIAN, out)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.assertEqual(written, len(encodeDataset(head, IMPLICIT_VR_LITTLE_ENDIAN)) + 8 + size)
        self.assertLess(peak, 8 << 20)
        with self.assertRaises(TranscodeError) as raised:
            transcodeFile(io.BytesIO(deflated[:-100]), 0, len(deflated) - 100, syntax, IMPLICIT_VR_LITTLE_ENDIAN,
                          io.BytesIO())
        self.assertIn("the deflated data set is truncated", str(raised.exception))
        with self.assertRaises(TranscodeError) as raised:
            transcodeFile(io.BytesIO(b"\xff" * 100), 0, 100, syntax, IMPLICIT_VR_LITTLE_ENDIAN, io.BytesIO())
        self.assertIn("the deflated data set is corrupt", str(raised.exception))

    def test_hugeElementsAroundThePixelData(self):
        """Elements before or after the Pixel Data (a private OB, one in a
        sequence item) of a deflated object that inflate to more than 128 MB
        are not read into memory: the object is refused (a TranscodeError).
        (Those of another object are no larger than its file, and read.)"""
        head = Dataset()
        head.SOPClassUID, head.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3"
        head.Rows, head.Columns, head.BitsAllocated, head.SamplesPerPixel = 2, 2, 8, 1
        size = (128 << 20) + 2
        pixels = struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 4) + bytes(4)
        private = struct.pack("<HH2sHL", 0x0009, 0x1001, b"OB", 0, size)
        sequence = (struct.pack("<HH2sHL", 0x0009, 0x1002, b"SQ", 0, 0xFFFFFFFF)
                    + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF))
        sequenceEnd = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
        start = encodeDataset(head, EXPLICIT_VR_LITTLE_ENDIAN)
        # The elements before the big value, and after it.
        for before, after in ((start + private, pixels), (start + sequence + private, sequenceEnd + pixels),
                              (start + pixels + struct.pack("<HH2sHL", 0x7FE1, 0x1001, b"OB", 0, size), b"")):
            deflater = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
            zeros = bytes(1 << 24)
            parts = [deflater.compress(before)]
            parts += [deflater.compress(zeros[:min(len(zeros), size - n)]) for n in range(0, size, len(zeros))]
            parts += [deflater.compress(after), deflater.flush()]
            deflated = b"".join(parts)
            del zeros, parts
            tracemalloc.start()
            try:
                with self.assertRaises(TranscodeError) as raised:
                    transcodeFile(io.BytesIO(deflated), 0, len(deflated), DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
                                  IMPLICIT_VR_LITTLE_ENDIAN, io.BytesIO())
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            self.assertLess(peak, 8 << 20)
            self.assertIn("more than 128 MB of elements around its Pixel Data", str(raised.exception))

    def test_inflatedFileBounded(self):
        """A deflated data set is inflated into its temporary file up to
        INFLATED_ON_DISK bytes, refused past that."""
        self.patch(filetranscode, "INFLATED_ON_DISK", 4 << 20)
        head = Dataset()
        head.SOPClassUID, head.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3"
        deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated = deflater.compress(encodeDataset(head, EXPLICIT_VR_LITTLE_ENDIAN)
                                     + struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 8 << 20) + bytes(8 << 20))
        deflated += deflater.flush()
        with self.assertRaises(TranscodeError) as raised:
            transcodeFile(io.BytesIO(deflated), 0, len(deflated), DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
                          IMPLICIT_VR_LITTLE_ENDIAN, io.BytesIO())
        self.assertIn("the deflated data set inflates to more than 4 MB", str(raised.exception))

    def test_noPixelDataIsNotStreamed(self):
        syntax, fileobj, offset, length = stored("rtplan.dcm")
        with self.assertRaises(NotStreamed):
            transcodeFile(fileobj, offset, length, syntax, EXPLICIT_VR_LITTLE_ENDIAN, io.BytesIO())

    def test_damage(self):
        """A file cut inside its Pixel Data, or whose fragments are
        damaged: a TranscodeError saying so."""
        for name, reason in (("CT_small.dcm", "the stored file ends inside its Pixel Data"),
                             ("SC_rgb_rle_2frame.dcm", "the encapsulated Pixel Data has a bad item")):
            syntax, fileobj, offset, length = stored(name)
            cut = io.BytesIO(fileobj.getvalue()[:-1000])
            with self.assertRaises(TranscodeError) as raised:
                transcodeFile(cut, offset, length - 1000, syntax, IMPLICIT_VR_LITTLE_ENDIAN, io.BytesIO())
            self.assertIn(reason, str(raised.exception))
        syntax, fileobj, offset, length = stored("SC_rgb_rle_2frame.dcm")
        content = bytearray(fileobj.getvalue())
        item = content.index(b"\xfe\xff\x00\xe0", offset + 100)
        content[item + 4:item + 8] = struct.pack("<L", 1 << 30)
        with self.assertRaises(TranscodeError) as raised:
            transcodeFile(io.BytesIO(bytes(content)), offset, length, syntax, EXPLICIT_VR_LITTLE_ENDIAN, io.BytesIO())
        self.assertIn("the encapsulated Pixel Data has a bad item", str(raised.exception))
