"""Tests for pacscore.codecs.pixelframes: bits above High Bit found in
native pixel data, and decoded samples reduced to Bits Stored."""

import tracemalloc

import numpy as np
from pydicom.dataset import Dataset
from twisted.trial import unittest

from pacscore.codecs.pixelframes import atBitsStored, usesBitsAboveHighBit


def native(words, bitsStored, signed=False, bitsAllocated=16):
    """A data set of the native ``words`` (frames, rows, columns)."""
    ds = Dataset()
    ds.NumberOfFrames, ds.Rows, ds.Columns = words.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bitsAllocated, bitsStored, bitsStored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = words.astype(f"<u{bitsAllocated // 8}").tobytes()
    return ds


class BitsAboveHighBitTests(unittest.TestCase):

    def test_unsigned(self):
        words = np.arange(3 * 64 * 64).reshape(3, 64, 64) % 4096
        self.assertFalse(usesBitsAboveHighBit(native(words, 12)))
        words[2, 63, 63] |= 1 << 15  # the last word of the last frame
        self.assertTrue(usesBitsAboveHighBit(native(words, 12)))
        self.assertFalse(usesBitsAboveHighBit(native(words, 16)))

    def test_signExtensionIsNotAbove(self):
        for bitsStored, low, high in ((12, -2048, 2047), (8, -128, 127), (15, -16384, 16383)):
            words = np.linspace(low, high, 3 * 32 * 32).round().astype(np.int16).reshape(3, 32, 32)
            self.assertFalse(usesBitsAboveHighBit(native(words.view(np.uint16), bitsStored, True)), bitsStored)
            words[2, 31, 31] = high + 1  # bit 11 clear above it: not the sign's extension
            self.assertTrue(usesBitsAboveHighBit(native(words.view(np.uint16), bitsStored, True)), bitsStored)
            words.view(np.uint16)[2, 31, 31] = (low & 0xFFFF) ^ (1 << bitsStored)  # the sign, one above clear
            self.assertTrue(usesBitsAboveHighBit(native(words.view(np.uint16), bitsStored, True)), bitsStored)

    def test_eightBitsAllocated(self):
        words = np.arange(2 * 16 * 16).reshape(2, 16, 16) % 128
        self.assertFalse(usesBitsAboveHighBit(native(words, 7, bitsAllocated=8)))
        words[1, 15, 15] = 128
        self.assertTrue(usesBitsAboveHighBit(native(words, 7, bitsAllocated=8)))

    def test_memory(self):
        """100 frames of 256 x 256 signed 12-bit words (12.5 MB) are looked
        through a piece at a time: a small fraction of the data besides it
        (a pass over it all took three times its size)."""
        words = np.random.default_rng(3).integers(-2048, 2048, (100, 256, 256)).astype(np.int16)
        for signed in (False, True):
            ds = native((words & 0xFFF if not signed else words).view(np.uint16), 12, signed)
            tracemalloc.start()
            self.addCleanup(tracemalloc.stop)
            self.assertFalse(usesBitsAboveHighBit(ds))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            self.assertLessEqual(peak, len(ds.PixelData) // 4, signed)


class AtBitsStoredTests(unittest.TestCase):

    def test_maskedAndSignExtended(self):
        ds = native(np.zeros((1, 1, 1)), 12)
        words = np.array([0x1FFF, 0x0123, 0xF800], np.uint16)
        self.assertEqual(atBitsStored(words, ds).tolist(), [0xFFF, 0x123, 0x800])
        ds.PixelRepresentation = 1
        self.assertEqual(atBitsStored(words, ds).tolist(), [-1, 0x123, -2048])
        self.assertEqual(atBitsStored(words.view(np.int16), ds).tolist(), [-1, 0x123, -2048])

    def test_asItIs(self):
        ds = native(np.zeros((1, 1, 1)), 8, bitsAllocated=8)
        words = np.array([255, 1], np.uint8)
        self.assertIs(atBitsStored(words, ds), words)
        floats = words.astype(np.float32)
        self.assertIs(atBitsStored(floats, native(np.zeros((1, 1, 1)), 12)), floats)
