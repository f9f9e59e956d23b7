"""Tests for pacscore.codecs.imagefiles: the GIF, BMP, JPEG and PNG files
written here, read back by Pillow."""

import io

import numpy as np
from PIL import Image
from twisted.trial import unittest

from pacscore.codecs.imagefiles import bmpImage, gifImage, jpegImage, pngImage

RNG = np.random.default_rng(7)


def opened(content, mode):
    image = Image.open(io.BytesIO(content))
    image.load()
    return image.format, np.asarray(image.convert(mode))


def gradient(rows, columns):
    y, x = np.mgrid[:rows, :columns]
    return ((x * 3 + y * 2) % 256).astype(np.uint8)


class GifTests(unittest.TestCase):

    def test_greyExactly(self):
        for grey in (gradient(37, 53), np.zeros((1, 1), np.uint8), np.full((5, 300), 255, np.uint8)):
            kind, pixels = opened(gifImage(grey), "L")
            self.assertEqual(kind, "GIF")
            self.assertEqual(pixels.tolist(), grey.tolist())

    def test_codeTableFullManyTimes(self):
        """Noise fills the 4096 codes again and again: clear codes."""
        grey = RNG.integers(0, 256, (300, 310), dtype=np.uint8)
        self.assertEqual(opened(gifImage(grey), "L")[1].tolist(), grey.tolist())

    def test_colourGoesGrey(self):
        rgb = np.zeros((2, 2, 3), np.uint8)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30, 60, 90
        self.assertEqual(opened(gifImage(rgb), "L")[1].tolist(), [[60, 60], [60, 60]])

    def test_header(self):
        content = gifImage(gradient(4, 6))
        self.assertEqual(content[:6], b"GIF89a")
        self.assertEqual(content[-1:], b"\x3b")


class BmpTests(unittest.TestCase):

    def test_colourExactlyWhateverTheWidth(self):
        """Rows padded to 4 bytes: widths 1, 2, 3 and 5 need it."""
        for columns in (1, 2, 3, 4, 5, 97):
            rgb = RNG.integers(0, 256, (7, columns, 3), dtype=np.uint8)
            kind, pixels = opened(bmpImage(rgb), "RGB")
            self.assertEqual(kind, "BMP")
            self.assertEqual(pixels.tolist(), rgb.tolist(), columns)

    def test_greyAsColour(self):
        grey = gradient(9, 10)
        self.assertEqual(opened(bmpImage(grey), "L")[1].tolist(), grey.tolist())
        self.assertEqual(len(bmpImage(grey)), 54 + 9 * 32)


class JpegTests(unittest.TestCase):

    def test_greyAndColourClose(self):
        grey = gradient(64, 80)
        kind, pixels = opened(jpegImage(grey), "L")
        self.assertEqual(kind, "JPEG")
        self.assertLess(np.abs(pixels.astype(int) - grey).mean(), 3)
        smooth = np.stack([gradient(64, 80), gradient(64, 80)[::-1], np.full((64, 80), 128, np.uint8)], axis=2)
        kind, pixels = opened(jpegImage(smooth), "RGB")
        self.assertLess(np.abs(pixels.astype(int) - smooth).mean(), 4)

    def test_jfif(self):
        content = jpegImage(gradient(8, 8))
        self.assertEqual(content[:4], b"\xff\xd8\xff\xe0")
        self.assertEqual(content[6:11], b"JFIF\x00")
        self.assertEqual(Image.open(io.BytesIO(content)).info.get("jfif"), 257)


class PngTests(unittest.TestCase):

    def test_greyAndColourExactly(self):
        colour = RNG.integers(0, 256, (19, 23, 3), dtype=np.uint8)
        for pixels, mode in ((gradient(37, 53), "L"), (np.zeros((1, 1), np.uint8), "L"), (colour, "RGB")):
            image = Image.open(io.BytesIO(pngImage(pixels)))
            image.load()
            self.assertEqual((image.format, image.mode), ("PNG", mode))
            self.assertEqual(np.asarray(image).tolist(), pixels.tolist())
