"""8-bit pixels (``rendering.renderFrame``) as the picture files of
Conquest's ``convert_to_gif`` (grey GIF), ``convert_to_bmp`` (24-bit
colour BMP) and ``convert_to_jpg`` (JPEG, quality 95, JFIF), and PNG
(grey or RGB, for WADO).
"""

import struct
import zlib

import numpy as np

from pacscore.codecs.jpeglossy import encodeFrame

JPEG_QUALITY = 95  # Conquest's, whatever LossyQuality says
_JFIF = b"\xff\xe0" + struct.pack(">H5sBBBHHBB", 16, b"JFIF\x00", 1, 1, 0, 1, 1, 0, 0)
_PIXELS_PER_METRE = 3790  # 96 dpi, as Conquest writes
_GIF_MAX_CODES = 4096


def _grey(pixels):
    pixels = np.asarray(pixels, np.uint8)
    if pixels.ndim == 3:
        return np.rint(pixels.mean(axis=2)).astype(np.uint8)
    return pixels


def _rgb(pixels):
    pixels = np.asarray(pixels, np.uint8)
    return pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, np.newaxis], 3, axis=2)


def bmpImage(pixels):
    """A 24-bit uncompressed Windows bitmap: BGR, rows bottom-up, each
    padded to a multiple of 4 bytes."""
    rgb = _rgb(pixels)
    rows, columns = rgb.shape[:2]
    stride = (columns * 3 + 3) & ~3
    body = np.zeros((rows, stride), np.uint8)
    body[:, :columns * 3] = rgb[::-1, :, ::-1].reshape(rows, columns * 3)
    header = struct.pack("<2sIHHIIiiHHIIiiII", b"BM", 54 + body.size, 0, 0, 54, 40, columns, rows, 1, 24, 0,
                         body.size, _PIXELS_PER_METRE, _PIXELS_PER_METRE, 0, 0)
    return header + body.tobytes()


def _lzw(indices):
    """GIF's LZW of 8-bit ``indices``: the variable-width codes (minimum
    code size 8, at most 12 bits, a clear code whenever the table is full),
    packed least significant bit first."""
    clear, end = 256, 257
    table = {bytes([i]): i for i in range(256)}
    width, following = 9, 258
    out, accumulator, bits = bytearray(), 0, 0

    def emit(code):
        nonlocal accumulator, bits
        accumulator |= code << bits
        bits += width
        while bits >= 8:
            out.append(accumulator & 0xFF)
            accumulator >>= 8
            bits -= 8

    emit(clear)
    data = indices.tobytes()
    current = data[:1]
    for i in range(1, len(data)):
        extended = current + data[i:i + 1]
        if extended in table:
            current = extended
            continue
        emit(table[current])
        if following < _GIF_MAX_CODES:
            table[extended] = following
            following += 1
            if following > 1 << width and width < 12:
                width += 1
        else:
            emit(clear)
            table = {bytes([i]): i for i in range(256)}
            width, following = 9, 258
        current = data[i:i + 1]
    if current:
        emit(table[current])
    emit(end)
    if bits:
        out.append(accumulator & 0xFF)
    return bytes(out)


def gifImage(pixels):
    """A GIF89a of one grey image: a local table of 256 greys, not
    interlaced, LZW coded."""
    grey = _grey(pixels)
    rows, columns = grey.shape
    greys = np.repeat(np.arange(256, dtype=np.uint8), 3).tobytes()
    coded = _lzw(grey)
    blocks = b"".join(bytes([len(coded[i:i + 255])]) + coded[i:i + 255] for i in range(0, len(coded), 255))
    return b"".join([
        b"GIF89a", struct.pack("<HHBBB", columns, rows, 0, 0, 0),
        b"\x2c", struct.pack("<HHHHB", 0, 0, columns, rows, 0x87), greys,
        b"\x08", blocks, b"\x00",
        b"\x3b",
    ])


def jpegImage(pixels, quality=JPEG_QUALITY):
    """A baseline JPEG (JFIF) of grey or RGB pixels, at Conquest's quality 95 unless told."""
    pixels = np.asarray(pixels, np.uint8)
    codestream = encodeFrame(pixels, 8, quality, colour=pixels.ndim == 3)
    return codestream[:2] + _JFIF + codestream[2:]


def _pngChunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pngImage(pixels):
    """A PNG of grey or RGB 8-bit pixels (no filtering, zlib level 6)."""
    pixels = np.asarray(pixels, np.uint8)
    rows, columns = pixels.shape[:2]
    lines = pixels.reshape(rows, -1)
    raw = np.concatenate([np.zeros((rows, 1), np.uint8), lines], axis=1)  # filter type 0 before each row
    header = struct.pack(">IIBBBBB", columns, rows, 8, 2 if pixels.ndim == 3 else 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _pngChunk(b"IHDR", header) + _pngChunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + _pngChunk(b"IEND", b""))
