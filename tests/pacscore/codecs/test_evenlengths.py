"""Tests for pacscore.codecs.evenlengths: values of odd length padded as
DCMTK pads them, the sequences and items holding them made to match,
every other byte kept."""

import os
import struct
import tracemalloc
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from twisted.trial import unittest

from pacscore.codecs.evenlengths import evenFile, evenLengths
from pacscore.codecs.syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN)
from pacscore.storage.attributes import DatasetError

ODD = b"\x10\x20\x30\x40\x50"


def encoded(ds, syntax):
    out = DicomBytesIO()
    out.is_implicit_VR = syntax == IMPLICIT_VR_LITTLE_ENDIAN
    out.is_little_endian = syntax != EXPLICIT_VR_BIG_ENDIAN
    write_dataset(out, ds)
    return out.getvalue()


def decoded(data, syntax):
    return read_dataset(BytesIO(data), syntax == IMPLICIT_VR_LITTLE_ENDIAN, syntax != EXPLICIT_VR_BIG_ENDIAN)


def oddObject():
    """A data set with an odd private UN value at the top level and in an
    item of a sequence of defined length, as pydicom writes them."""
    ds = Dataset()
    ds.PatientName = "ODD^ONE"
    ds.SOPInstanceUID = "1.2.3"
    ds.add_new(0x00090010, "LO", "ACME 1.1")
    ds.add_new(0x00091002, "UN", ODD)
    item = Dataset()
    item.add_new(0x00090010, "LO", "ACME 1.1")
    item.add_new(0x00091002, "UN", ODD[:3])
    ds.ReferencedImageSequence = Sequence([item])
    ds.PixelData = b"\x01\x02\x03\x04"
    ds["PixelData"].VR = "OB"
    return ds


class EvenLengthsTests(unittest.TestCase):

    def test_oddValuesPadded(self):
        for syntax in (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN):
            data = encoded(oddObject(), syntax)
            self.assertEqual(len(data) % 2, 0)  # 5 + 3: even, but odd values
            evened, padded = evenLengths(data, syntax)
            self.assertEqual(padded, ["(0009,1002)", "(0009,1002)"])
            self.assertEqual(len(evened), len(data) + 2)
            ds = decoded(evened, syntax)
            self.assertEqual(ds[0x00091002].value, ODD + b"\x00")
            self.assertEqual(ds.ReferencedImageSequence[0][0x00091002].value, ODD[:3] + b"\x00")
            self.assertEqual((ds.PatientName, ds.PixelData), ("ODD^ONE", b"\x01\x02\x03\x04"))
            self.assertEqual(evenLengths(evened, syntax), (evened, []))

    def test_textPaddedWithASpaceUIWithANul(self):
        """A raw odd text value (written as read) gets a space, a UID a
        NUL, also in Implicit VR, where the dictionary gives the VR."""
        for syntax in (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN):
            raw = decoded(encoded(oddObject(), syntax), syntax)  # its elements raw
            data = encoded(raw, syntax)
            data = data.replace(b"ODD^ONE\x20", b"ODD^ONE").replace(b"1.2.3\x00", b"1.2.3")
            implicit = syntax == IMPLICIT_VR_LITTLE_ENDIAN
            data = data.replace(b"\x10\x00\x10\x00" + (b"\x08\x00\x00\x00" if implicit else b"PN\x08\x00"),
                                b"\x10\x00\x10\x00" + (b"\x07\x00\x00\x00" if implicit else b"PN\x07\x00"))
            data = data.replace(b"\x08\x00\x18\x00" + (b"\x06\x00\x00\x00" if implicit else b"UI\x06\x00"),
                                b"\x08\x00\x18\x00" + (b"\x05\x00\x00\x00" if implicit else b"UI\x05\x00"))
            evened, padded = evenLengths(data, syntax)
            self.assertEqual(padded, ["(0008,0018)", "(0009,1002)", "(0009,1002)", "(0010,0010)"])
            self.assertIn(b"1.2.3\x00", evened)
            self.assertIn(b"ODD^ONE ", evened)

    def test_undefinedLengthsAndFragments(self):
        """Items and sequences of undefined length keep their delimiters;
        an odd fragment of encapsulated pixel data gets a 00H."""
        ds = oddObject()
        ds.ReferencedImageSequence.is_undefined_length = True
        ds.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
        del ds.PixelData
        data = encoded(ds, EXPLICIT_VR_LITTLE_ENDIAN) + (
            b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"  # Pixel Data: a Basic Offset Table, then "abc"
            b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\x00\xe0\x03\x00\x00\x00abc\xfe\xff\xdd\xe0\x00\x00\x00\x00")
        evened, padded = evenLengths(data, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(len(evened), len(data) + 3)
        self.assertEqual(padded, ["(0009,1002)", "(0009,1002)", "(7fe0,0010)"])
        self.assertIn(b"\xfe\xff\x00\xe0\x04\x00\x00\x00abc\x00\xfe\xff\xdd\xe0", evened)
        read = decoded(evened, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(read.ReferencedImageSequence[0][0x00091002].value, ODD[:3] + b"\x00")

    def test_oddDeflatedStreamPadded(self):
        self.assertEqual(evenLengths(b"abc", DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN),
                         (b"abc\x00", ["the deflated stream"]))
        self.assertEqual(evenLengths(b"ab", DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN), (b"ab", []))

    def test_truncated(self):
        data = encoded(oddObject(), EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertRaises(DatasetError, evenLengths, data[:-3], EXPLICIT_VR_LITTLE_ENDIAN)


class EvenFileTests(unittest.TestCase):

    def test_paddedFileToFileInPieces(self):
        """A data set is padded from its file into another a piece at a
        time: 64 MB of Pixel Data after an odd private value cost a few MB
        (the whole object was held four times over, a 1-2 GB multi-frame
        taking 4-8 GB), the bytes the same as padded in memory."""
        ds = oddObject()
        del ds.ReferencedImageSequence
        ds.PixelData = bytes(range(256)) * (256 << 10)
        head = encoded(ds, EXPLICIT_VR_LITTLE_ENDIAN)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"meta" + head)
        del ds, head
        outPath = self.mktemp()
        with open(path, "rb") as source, open(outPath, "wb+") as out:
            out.write(b"meta")
            tracemalloc.start()
            self.addCleanup(tracemalloc.stop)
            padded = evenFile(source, 4, os.fstat(source.fileno()).st_size - 4, EXPLICIT_VR_LITTLE_ENDIAN, out)
            self.assertLess(tracemalloc.get_traced_memory()[1], 4 << 20)
        tracemalloc.stop()
        self.assertEqual(padded, ["(0009,1002)"])
        with open(path, "rb") as f:
            data = f.read()[4:]
        with open(outPath, "rb") as f:
            self.assertEqual(f.read(), b"meta" + evenLengths(data, EXPLICIT_VR_LITTLE_ENDIAN)[0])


class UndefinedLengthTests(unittest.TestCase):

    def test_undefinedLengthPrivateOBHoldsFragments(self):
        """An undefined-length value that is no SQ nor UN (a private OB of
        encapsulated data) holds fragments, as Pixel Data does: walked as
        items of elements, it failed ("element (6261,FE63) ... ends past
        the data set") and the object was refused."""
        data = encoded(oddObject(), EXPLICIT_VR_LITTLE_ENDIAN)[:-16] + (
            b"\x09\x00\x10\x10OB\x00\x00\xff\xff\xff\xff"
            b"\xfe\xff\x00\xe0\x03\x00\x00\x00abc\xfe\xff\xdd\xe0\x00\x00\x00\x00")
        evened, padded = evenLengths(data, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(padded, ["(0009,1002)", "(0009,1002)", "(0009,1010)"])
        self.assertIn(b"\xfe\xff\x00\xe0\x04\x00\x00\x00abc\x00\xfe\xff\xdd\xe0", evened)

    def test_anOddValueTooLongForItsVRIsWrittenAsUN(self):
        """An odd value of 65535 bytes in a VR with a 16-bit length cannot
        be padded in it (it stayed odd, silently, and no DCMTK peer could
        take the object): it is written as UN with a 32-bit length, as
        DCMTK writes a value too long for its VR, padded as its VR pads."""
        for syntax in (EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN):
            order = ">" if syntax == EXPLICIT_VR_BIG_ENDIAN else "<"
            data = struct.pack(order + "HH2sH", 0x0009, 0x0010, b"LO", 4) + b"ACME" + struct.pack(
                order + "HH2sH", 0x0009, 0x1010, b"LT", 0xFFFF) + b"y" * 0xFFFF
            evened, padded = evenLengths(data, syntax)
            self.assertEqual(padded, ["(0009,1010) (written as UN: 65536 bytes are too many for its VR LT)"])
            self.assertEqual(evened[12:24], struct.pack(order + "HH2s2xL", 0x0009, 0x1010, b"UN", 0x10000))
            self.assertEqual(evened[24:], b"y" * 0xFFFF + b" ")
            self.assertEqual(decoded(evened, syntax)[0x00091010].VR, "UN")
