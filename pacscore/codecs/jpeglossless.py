"""Lossless JPEG encoder (ITU T.81 process 14: Huffman coding, predictor 1)
in numpy, for the JPEG Lossless syntaxes (1.2.840.10008.1.2.4.70 and
.57), which pydicom and its plugins can decode but not encode.

``encodeFrame`` writes one frame as one codestream (SOI, SOF3, DHT, SOS,
EOI): one component in a non-interleaved scan, three (colour by pixel) in
one interleaved scan with H = V = 1. The prediction is selection value 1
(T.81 H.1.2.1: the left neighbour; the sample above at the start of each
line but the first; 2^(P-1) for the very first sample), no point
transform, no restart interval. The Huffman table is the optimal one for
the frame's difference categories, code lengths limited to 16 bits (T.81
K.2, K.3), shared by the components.

Samples are P = Bits Stored bits; signed ones are coded as their P-bit
two's complement: the decoder gives those bits back and the Pixel
Representation says how to read them. Up to 8 bits stored in 16 allocated
are coded with P = 12 (as dcm4che does): a decoder gives 8-bit samples for
P <= 8, which pydicom cannot place in 16-bit pixels. Pixel data with bits
set above High Bit (embedded overlays) is coded with P = Bits Allocated,
as DCMTK's true lossless mode does, so those bits come back too.

``encodeDataset`` encodes every frame of a native data set and replaces its
Pixel Data by the encapsulated codestreams (with a basic offset table).
"""

import struct

import numpy as np

from pacscore.codecs.huffman import CATEGORY, SEGMENT, dhtSegment, extraBits, optimalTable, packPart
from pacscore.codecs.pixelframes import encapsulateFrames, nativeFrames, usesBitsAboveHighBit
from pacscore.codecs.syntaxes import JPEG_LOSSLESS_SYNTAXES

PREDICTOR = 1  # T.81 table H.1: Px = Ra

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
_SOF3, _SOS = 0xFFC3, 0xFFDA
_CATEGORIES = 17  # SSSS 0..16 (T.81 table H.2)
# Additional bits after the code of each SSSS; none for 16 (difference 32768).
_EXTRA_BITS = np.array(list(range(16)) + [0], np.uint64)
# The precision of up to 8 bits stored in 16 allocated.
_WIDE_PRECISION = 12
# About how many samples a strip of a frame coded at once holds: its
# working arrays take some 100 bytes a sample (a few MB; a whole
# 4000 x 4000 RGB frame at once took 4.5 GB), and strips that fit the
# caches code faster than a whole frame.
STRIP_SAMPLES = 1 << 15


def _differences(samples, top, bottom, precision):
    """The prediction differences of the rows ``top`` to ``bottom`` of
    ``samples`` (rows, columns, components) in coding order, modulo 2^16 in
    -32767..32768."""
    mask = (1 << precision) - 1
    x = samples[top:bottom].astype(np.int32) & mask
    prediction = np.empty_like(x)
    prediction[:, 1:] = x[:, :-1]
    prediction[1:, 0] = x[:-1, 0]
    prediction[0, 0] = samples[top - 1, 0].astype(np.int32) & mask if top else 1 << (precision - 1)
    difference = x - prediction
    return (((difference + 32767) & 0xFFFF) - 32767).ravel()


def _strips(samples, precision):
    """``(differences, last)``: the prediction differences of ``samples`` a
    strip of rows at a time (about ``STRIP_SAMPLES`` samples), so that
    coding a large frame holds a strip's working arrays, not the frame's;
    ``last`` for the last strip."""
    rows, columns, components = samples.shape
    height = max(1, STRIP_SAMPLES // (columns * components))
    for top in range(0, rows, height):
        yield _differences(samples, top, top + height, precision), top + height >= rows


def encodeFrame(pixels, bitsStored):
    """One frame, ``pixels`` (rows, columns) or (rows, columns, 3) integers,
    as a lossless JPEG codestream of precision P = ``bitsStored`` (2..16).

    Samples are taken modulo 2^bitsStored: signed ones as their
    two's complement bits.  The frame is coded a strip of rows at a time,
    twice: once to count the difference categories for the Huffman table,
    once to write them."""
    samples = np.asarray(pixels)
    if samples.ndim == 2:
        samples = samples[:, :, np.newaxis]
    if samples.ndim != 3 or samples.shape[2] not in (1, 3) or not np.issubdtype(samples.dtype, np.integer):
        raise ValueError(f"cannot encode an array of {samples.dtype} {samples.shape}: "
                         f"(rows, columns) or (rows, columns, 3) integers expected")
    rows, columns, components = samples.shape
    if not (0 < rows < 65536 and 0 < columns < 65536):
        raise ValueError(f"a lossless JPEG frame cannot be {rows} x {columns}")
    if not 2 <= bitsStored <= 16:
        raise ValueError(f"lossless JPEG takes 2 to 16 bits per sample, not {bitsStored}")

    counts = sum(np.bincount(CATEGORY[np.abs(difference)], minlength=_CATEGORIES)
                 for difference, _ in _strips(samples, bitsStored))
    table, codes, codeLengths = optimalTable(counts, 0, 0)
    scan, pending = [], (0, 0)
    for difference, last in _strips(samples, bitsStored):
        ssss = CATEGORY[np.abs(difference)]
        extraLengths = _EXTRA_BITS[ssss]
        extra = extraBits(difference, extraLengths)
        data, pending = packPart((codes[ssss] << extraLengths) | extra, codeLengths[ssss] + extraLengths,
                                 pending, final=last)
        scan.append(data)

    ids = range(1, components + 1)
    frame = struct.pack(">BHHB", bitsStored, rows, columns, components) + b"".join(
        bytes([i, 0x11, 0]) for i in ids)  # H = V = 1, no quantisation table
    scanHeader = bytes([components]) + b"".join(bytes([i, 0x00]) for i in ids) + bytes(
        [PREDICTOR, 0, 0])  # Ss = predictor, Se = 0, Ah = Al = 0
    return b"".join([
        _SOI,
        SEGMENT.pack(_SOF3, 2 + len(frame)), frame,
        dhtSegment(table),
        SEGMENT.pack(_SOS, 2 + len(scanHeader)), scanHeader,
        *scan,
        _EOI,
    ])


def encodeDataset(ds, transferSyntax):
    """Replace the native Pixel Data of ``ds`` (colour by pixel, little
    endian) by its frames in lossless JPEG, encapsulated with a basic offset
    table, and set ``ds.file_meta.TransferSyntaxUID`` (``transferSyntax``,
    one of ``JPEG_LOSSLESS_SYNTAXES``), as pydicom's ``Dataset.compress`` does.

    Raises ValueError for an image this encoder cannot take."""
    if transferSyntax not in JPEG_LOSSLESS_SYNTAXES:
        raise ValueError(f"{transferSyntax} is not a lossless JPEG syntax")
    frames = nativeFrames(ds, "lossless JPEG")
    if usesBitsAboveHighBit(ds):
        precision = ds.BitsAllocated
    elif ds.BitsStored > 8 or ds.BitsAllocated == 8:
        precision = ds.BitsStored
    else:
        precision = _WIDE_PRECISION
    encapsulateFrames(ds, (encodeFrame(frame, precision) for frame in frames), transferSyntax)
