"""NKI private compression: every form of the stream read by hand, and
what the encoder writes read back unchanged."""

import struct

import numpy as np
from twisted.trial import unittest

from pacscore.codecs import nki

# 1000, +5, -5, +300 (two bytes), -300 (two bytes), 0x8000 (absolute), three
# repeats (run), a 4-bit run of +1 -1 +7 +2, +63 (one byte)
STREAM = bytes.fromhex("e803 05 fb 412c bed4 7f8000 8003 c004 1f72 3f")
PIXELS = [1000, 1005, 1000, 1300, 1000, 0x8000, 0x8000, 0x8000, 0x8000, 0x8001, 0x8000, 0x8007, 0x8009,
          0x8048]


def words(values):
    return np.array(values, dtype=np.uint16).astype("<u2").tobytes()


class DecompressTests(unittest.TestCase):

    def test_everyFormMode3(self):
        value = struct.pack("<II", len(PIXELS), 3) + STREAM
        self.assertEqual(nki.mode(value), 3)
        self.assertEqual(nki.decompress(value), words(PIXELS))

    def test_everyFormMode4WithItsCRC(self):
        header = struct.pack("<IIIII", len(PIXELS), 4, len(STREAM), nki.crc(words(PIXELS)), 0)
        self.assertEqual(nki.decompress(header + STREAM), words(PIXELS))
        damaged = struct.pack("<IIIII", len(PIXELS), 4, len(STREAM), nki.crc(words(PIXELS)) ^ 1, 0)
        self.assertRaises(nki.NKIError, nki.decompress, damaged + STREAM)

    def test_c0IsMinus64InModes1And2(self):
        self.assertEqual(nki.decompress(struct.pack("<II", 2, 1) + bytes.fromhex("e803c0")), words([1000, 936]))

    def test_crc(self):
        """Zero start, no final inversion: the table's second entry for one byte 1."""
        self.assertEqual(nki.crc(b"\x01"), 0x77073096)
        self.assertEqual(nki.crc(b""), 0)

    def test_notNKI(self):
        for value in (b"", b"\x01\x00\x00\x00\x01\x00\x00\x00", b"ACUSON" + bytes(20), b"ELSCINT" + bytes(20),
                      struct.pack("<II", 4, 5) + bytes(8), struct.pack("<II", 0, 1) + bytes(8)):
            self.assertIsNone(nki.mode(value), value)
            self.assertRaises(nki.NKIError, nki.decompress, value)

    def test_damagedStreams(self):
        for count, stream in ((5, "e80305"),          # ends early
                              (3, "e8037f80"),        # absolute value cut
                              (3, "e8038005"),        # run past the pixel count
                              (9, "e803c0031f"),      # odd 4-bit run
                              (9, "e803c0081f")):     # 4-bit run past the stream
            value = struct.pack("<II", count, 3) + bytes.fromhex(stream)
            self.assertRaises(nki.NKIError, nki.decompress, value)


class CompressTests(unittest.TestCase):

    def roundTrip(self, pixels):
        data = np.asarray(pixels, dtype=np.int16).astype("<i2").tobytes()
        for mode in nki.MODES:
            value = nki.compress(data, mode)
            self.assertEqual(len(value) % 2, 0)
            self.assertEqual(nki.mode(value), mode)
            self.assertEqual(nki.decompress(value), data, (mode, pixels[:20]))

    def test_roundTrips(self):
        rng = np.random.default_rng(7)
        cases = [[5], [5, 5], [-32768, 32767, -32768, 0], list(range(-70, 70)),
                 [0] * 1000 + [1] * 3 + [0] * 256 + [2],            # runs over 255 are split
                 rng.integers(-32768, 32767, 2000), rng.integers(-9, 9, 2000).cumsum(),
                 np.repeat(rng.integers(-100, 100, 300), rng.integers(1, 9, 300))]
        for pixels in cases:
            self.roundTrip(list(pixels))

    def test_forms(self):
        """One byte for -64..63 (modes 3 and 4: -63..63), two for larger
        differences, three beyond, and runs of equal pixels (modes 3 and 4:
        of five or more); modes 1 and 3 pad the whole value to an even length."""
        data = words([1000, 1063, 999, 1300, 33000, 33000, 33000])
        self.assertEqual(nki.compress(data, 1)[8:], bytes.fromhex("e803 3f c0 412d 7f80e8 8002 00"))
        self.assertEqual(nki.compress(data, 3)[8:], bytes.fromhex("e803 3f bfc0 412d 7f80e8 00 00"))

    def test_fourBitRuns(self):
        """Modes 3 and 4: six or more differences in -8..7 in a row go by
        pairs in one byte each (an odd run's first one stays a byte)."""
        data = words([1000, 1001, 1000, 1007, 999, 999, 1001, 1004])
        self.assertEqual(nki.compress(data, 3)[8:], bytes.fromhex("e803 01 c006 f7 80 23"))
        self.assertEqual(nki.compress(data, 1)[8:], bytes.fromhex("e803 01 ff 07 f8 00 02 03 00"))
        long = words(np.arange(1000) % 2 + 100)  # 999 differences of +-1: 254-pixel runs, then the rest
        self.assertEqual(nki.decompress(nki.compress(long, 4)), long)
        self.assertLess(len(nki.compress(long, 4)), 540)

    def test_headers(self):
        data = words(PIXELS)
        mode2 = nki.compress(data, 2)
        count, mode, size, pixelCRC, streamCRC = struct.unpack_from("<IIIII", mode2)
        self.assertEqual((count, mode, size, pixelCRC), (len(PIXELS), 2, len(mode2) - 20, nki.crc(data)))
        self.assertEqual(streamCRC, nki.crc(mode2[20:]))
        self.assertEqual(struct.unpack_from("<IIIII", nki.compress(data, 4))[4], 0)

    def test_refused(self):
        self.assertRaises(nki.NKIError, nki.compress, b"\x00\x01\x02", 1)
        self.assertRaises(nki.NKIError, nki.compress, b"", 1)
        self.assertRaises(nki.NKIError, nki.compress, b"\x00\x01", 5)
