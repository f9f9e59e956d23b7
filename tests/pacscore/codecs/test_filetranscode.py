"""Tests for pacscore.codecs.filetranscode: a stored object converted from
its file into another, byte for byte as ``transcode`` converts it in
memory, for every file pydicom ships that it takes."""

import io
import struct
import tempfile

from twisted.trial import unittest

from pacscore.codecs.filetranscode import NotStreamed, streams, transcodeFile
from pacscore.codecs.syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN, JPEG_2000, JPEG_LS_LOSSLESS, RLE_LOSSLESS)
from pacscore.codecs.transcode import TranscodeError, transcode
from pacscore.storage.part10 import readFileMeta
from tests.pacscore.codecs.test_transcode import DATA, LOSSLESS_FILES, LOSSY_FILES, NATIVE_FILES

TARGETS = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
PADDING = struct.pack("<HH2sHL", 0xFFFC, 0xFFFC, b"OB", 0, 6) + b"\0" * 6  # Data Set Trailing Padding


def stored(name, extra=b""):
    """``(syntax, the Part-10 file as a file object, data set offset, its length)``."""
    with open(DATA / name, "rb") as f:
        content = f.read() + extra
    fileobj = io.BytesIO(content)
    syntax, _, offset = readFileMeta(fileobj)
    return syntax, fileobj, offset, len(content) - offset


def streamed(fileobj, offset, length, syntax, target):
    with tempfile.TemporaryFile() as out:
        written = transcodeFile(fileobj, offset, length, syntax, target, out)
        out.seek(0)
        data = out.read()
    assert written == len(data)
    return data


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

    def test_nativeAsInMemory(self):
        streamedSyntaxes = {self.assertSameAsInMemory(name) for name in NATIVE_FILES}
        self.assertTrue({EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN} <= streamedSyntaxes)

    def test_elementsAfterThePixelData(self):
        for name in ("CT_small.dcm", "MR_small_implicit.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm"):
            self.assertSameAsInMemory(name, PADDING if name != "MR_small_implicit.dcm"
                                      else struct.pack("<HHL", 0xFFFC, 0xFFFC, 6) + b"\0" * 6)

    def test_onlyIntoLittleEndian(self):
        for source, target in ((EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN),
                               (EXPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN),
                               (EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN),
                               (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN),
                               (IMPLICIT_VR_LITTLE_ENDIAN, RLE_LOSSLESS), (JPEG_2000, JPEG_LS_LOSSLESS),
                               (EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)):
            self.assertFalse(streams(source, target), (source, target))
            with self.assertRaises(NotStreamed):
                transcodeFile(io.BytesIO(), 0, 0, source, target, io.BytesIO())
        self.assertTrue(streams(JPEG_2000 + "\0", IMPLICIT_VR_LITTLE_ENDIAN))

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
