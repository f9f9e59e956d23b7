"""Data sets between bytes and pydicom: a deflated one is inflated whole,
or, as a peer's small data set is, no further than its limit; a peer's
sequences nest no deeper than a stored object's."""

import struct
import zlib

from twisted.trial import unittest

from pacscore.dicom.datasets import IdentifierError, decodeDataset, decodePeerDataset, encodeDataset
from pacscore.dicom.sinks import MEMORY_LIMIT
from pacscore.storage.attributes import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN as DEFLATED
from pacscore.storage.attributes import EXPLICIT_VR_LITTLE_ENDIAN as EXPLICIT
from pacscore.storage.attributes import IMPLICIT_VR_LITTLE_ENDIAN as IMPLICIT

STUDY = b"\x08\x00\x52\x00CS\x06\x00STUDY "
PATIENT_ID = b"\x10\x00\x20\x00LO\x02\x00* "


def nestedSequences(depth, implicit=False):
    """A STUDY identifier holding ``depth`` (0040,A730) sequences nested in
    one another's items, all of defined length (as DCMTK sends them)."""
    inner = b""
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
        vr = b"" if implicit else b"SQ\0\0"
        inner = struct.pack("<HH", 0x0040, 0xA730) + vr + struct.pack("<I", len(item)) + item
    return (struct.pack("<HHI", 0x0008, 0x0052, 6) + b"STUDY " if implicit else STUDY) + inner


def deflatedWithZeros(size):
    """A raw-deflated identifier with ``size`` zero bytes in a private OB between its keys."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflater.compress(STUDY + b"\x09\x00\x01\x10OB\x00\x00" + size.to_bytes(4, "little"))]
    chunk = bytes(1 << 20)
    for start in range(0, size, len(chunk)):
        parts.append(deflater.compress(chunk[:size - start]))
    parts.append(deflater.compress(PATIENT_ID))
    parts.append(deflater.flush())
    return b"".join(parts)


class DeflatedTests(unittest.TestCase):

    def test_smallOneDecoded(self):
        dataset = decodeDataset(deflatedWithZeros(1000), DEFLATED)
        self.assertEqual((dataset.QueryRetrieveLevel, dataset.PatientID), ("STUDY", "*"))
        self.assertEqual(decodeDataset(encodeDataset(dataset, DEFLATED), DEFLATED).PatientID, "*")

    def test_bombRefusedBeforeItIsInflated(self):
        """17 MB of zeros deflated to 17 kB, a peer's identifier: refused once
        16 MB are inflated 64 kB at a time (none of it held), the rest never
        is."""
        bomb = deflatedWithZeros(MEMORY_LIMIT + (1 << 20))
        self.assertLess(len(bomb), 1 << 16)
        asked = []
        real = zlib.decompressobj

        class Inflater:
            def __init__(self, *args):
                self.inflater = real(*args)

            def decompress(self, data, maxLength=0):
                asked.append(maxLength)
                return self.inflater.decompress(data, maxLength)

            def __getattr__(self, name):
                return getattr(self.inflater, name)

        self.patch(zlib, "decompressobj", Inflater)
        with self.assertRaises(IdentifierError) as raised:
            decodePeerDataset(bomb, DEFLATED)
        self.assertIn("inflates to more than 16 MB", str(raised.exception))
        self.assertEqual(set(asked), {1 << 16})
        self.assertEqual(len(asked), MEMORY_LIMIT // (1 << 16) + 1)

    def test_storedObjectsUnbounded(self):
        """Without maxInflated (a stored object's callers, not decodePeerDataset) any size is inflated."""
        dataset = decodeDataset(deflatedWithZeros(MEMORY_LIMIT + 2), DEFLATED)
        self.assertEqual(len(dataset[0x00091001].value), MEMORY_LIMIT + 2)

    def test_truncatedRefused(self):
        with self.assertRaises(IdentifierError):
            decodeDataset(deflatedWithZeros(1000)[:-4], DEFLATED)


class NestingTests(unittest.TestCase):

    def test_nestedAsDeepAsAStoredObjectsDecoded(self):
        self.assertEqual(decodePeerDataset(nestedSequences(65), EXPLICIT).QueryRetrieveLevel, "STUDY")

    def test_deeperRefused(self):
        """One level more, or 900 (which failed with a RecursionError where
        the identifier was read), or 1000 and more (whose values' decoding
        hit the recursion limit before the nesting was checked: a 13,847
        character error of element paths), in either VR, is an
        IdentifierError naming the nesting; a stored object's callers
        (decodeDataset) are not bounded so."""
        for depth in (66, 900, 1000, 5000):
            for implicit, syntax in ((False, EXPLICIT), (True, IMPLICIT)):
                with self.assertRaises(IdentifierError) as raised:
                    decodePeerDataset(nestedSequences(depth, implicit), syntax)
                self.assertEqual(str(raised.exception), "sequences nested more than 64 deep")
        self.assertEqual(decodeDataset(nestedSequences(66), EXPLICIT).QueryRetrieveLevel, "STUDY")
