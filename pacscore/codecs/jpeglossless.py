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
P <= 8, which pydicom cannot place in 16-bit pixels.

``encodeDataset`` encodes every frame of a native data set and replaces its
Pixel Data by the encapsulated codestreams (with a basic offset table).
"""

import struct

import numpy as np
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.valuerep import VR

from pacscore.codecs.syntaxes import JPEG_LOSSLESS_SYNTAXES

PREDICTOR = 1  # T.81 table H.1: Px = Ra

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
_SOF3, _DHT, _SOS = 0xFFC3, 0xFFC4, 0xFFDA
_SEGMENT = struct.Struct(">HH")
_CATEGORIES = 17  # SSSS 0..16 (T.81 table H.2)
_MAX_CODE_LENGTH = 16
# SSSS of a difference magnitude 0..32768: its bit length.
_SSSS = np.concatenate([np.zeros(1, np.uint8)] + [np.full(1 << k, k + 1, np.uint8) for k in range(16)])
# Additional bits after the code of each SSSS; none for 16 (difference 32768).
_EXTRA_BITS = np.array(list(range(16)) + [0], np.uint64)
_SUBSAMPLED = ("YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420")
# The precision of up to 8 bits stored in 16 allocated.
_WIDE_PRECISION = 12


def _codeLengths(counts):
    """``(bits, values)``, the Huffman table for the SSSS frequencies
    ``counts`` as DHT gives it: the number of codes of each length 1..16,
    and the SSSS values used, in code order. T.81 K.2 (Huffman codes, with
    a reserved symbol of frequency 1 so that no code is all ones) and K.3
    (lengths over 16 bits folded back)."""
    freq = [int(c) for c in counts] + [1]  # the reserved symbol last
    size = [0] * len(freq)
    others = [-1] * len(freq)
    while True:
        # The two least frequent, the higher symbol first on ties (libjpeg).
        live = sorted((f, -v) for v, f in enumerate(freq) if f)
        if len(live) < 2:
            break
        v1, v2 = -live[0][1], -live[1][1]
        freq[v1] += freq[v2]
        freq[v2] = 0
        for v in (v1, v2):
            size[v] += 1
            while others[v] >= 0:
                v = others[v]
                size[v] += 1
        tail = v1
        while others[tail] >= 0:
            tail = others[tail]
        others[tail] = v2
    bits = [0] * (2 * _MAX_CODE_LENGTH + 1)
    for s in size:
        if s:
            bits[s] += 1
    for i in range(len(bits) - 1, _MAX_CODE_LENGTH, -1):
        while bits[i]:
            j = i - 2
            while not bits[j]:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    longest = max(i for i, b in enumerate(bits) if b)
    bits[longest] -= 1  # the reserved symbol's code
    values = sorted((v for v in range(_CATEGORIES) if size[v]), key=lambda v: (size[v], v))
    return bits[1:_MAX_CODE_LENGTH + 1], values


def _huffmanTable(counts):
    """``(segment, codes, lengths)``: the DHT marker segment for the SSSS
    frequencies ``counts``, and each SSSS's code and code length."""
    bits, values = _codeLengths(counts)
    codes = np.zeros(_CATEGORIES, np.uint64)
    lengths = np.zeros(_CATEGORIES, np.uint64)
    code, k = 0, 0
    for length, count in enumerate(bits, 1):
        for value in values[k:k + count]:
            codes[value], lengths[value] = code, length
            code += 1
        k += count
        code <<= 1
    body = bytes([0x00]) + bytes(bits) + bytes(values)  # Tc = 0, Th = 0
    return _SEGMENT.pack(_DHT, 2 + len(body)) + body, codes, lengths


def _differences(samples, precision):
    """The prediction differences of ``samples`` (rows, columns,
    components) in coding order, modulo 2^16 in -32767..32768."""
    x = samples.astype(np.int32) & ((1 << precision) - 1)
    prediction = np.empty_like(x)
    prediction[:, 1:] = x[:, :-1]
    prediction[1:, 0] = x[:-1, 0]
    prediction[0, 0] = 1 << (precision - 1)
    difference = x - prediction
    return (((difference + 32767) & 0xFFFF) - 32767).ravel()


def _pack(values, lengths):
    """The bit fields ``values`` (``lengths`` bits each, at most 32) one
    after the other, most significant bit first, the last byte padded with
    1 bits, then 0xFF bytes stuffed with 0x00 (T.81 F.1.2.3, B.1.1.5)."""
    lengths = lengths.astype(np.int64)
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    starts = ends - lengths
    words = starts >> 5
    # Each field in a 64-bit window starting at its 32-bit word.
    window = values << (64 - (starts & 31) - lengths).astype(np.uint64)
    count = total // 32 + 2
    packed = (np.bincount(words, weights=window >> np.uint64(32), minlength=count)
              + np.bincount(words + 1, weights=window & np.uint64(0xFFFFFFFF), minlength=count))
    data = packed.astype(">u4").view(np.uint8)[:(total + 7) // 8].copy()
    if total % 8:
        data[-1] |= (1 << (8 - total % 8)) - 1
    stuffed = np.flatnonzero(data == 0xFF)
    return np.insert(data, stuffed + 1, 0).tobytes() if stuffed.size else data.tobytes()


def encodeFrame(pixels, bitsStored):
    """One frame, ``pixels`` (rows, columns) or (rows, columns, 3) integers,
    as a lossless JPEG codestream of precision P = ``bitsStored`` (2..16).

    Samples are taken modulo 2^bitsStored: signed ones as their
    two's complement bits."""
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

    difference = _differences(samples, bitsStored)
    ssss = _SSSS[np.abs(difference)]
    table, codes, codeLengths = _huffmanTable(np.bincount(ssss, minlength=_CATEGORIES))
    extraBits = _EXTRA_BITS[ssss]
    # Negative differences: the low bits of difference - 1 (T.81 F.1.2.1.1).
    extra = (difference - (difference < 0)).astype(np.uint64) & ((np.uint64(1) << extraBits) - np.uint64(1))
    scan = _pack((codes[ssss] << extraBits) | extra, codeLengths[ssss] + extraBits)

    ids = range(1, components + 1)
    frame = struct.pack(">BHHB", bitsStored, rows, columns, components) + b"".join(
        bytes([i, 0x11, 0]) for i in ids)  # H = V = 1, no quantisation table
    scanHeader = bytes([components]) + b"".join(bytes([i, 0x00]) for i in ids) + bytes(
        [PREDICTOR, 0, 0])  # Ss = predictor, Se = 0, Ah = Al = 0
    return b"".join([
        _SOI,
        _SEGMENT.pack(_SOF3, 2 + len(frame)), frame,
        table,
        _SEGMENT.pack(_SOS, 2 + len(scanHeader)), scanHeader,
        scan,
        _EOI,
    ])


def _frames(ds):
    """The frames of the native Pixel Data of ``ds``, as arrays."""
    samples = ds.get("SamplesPerPixel") or 1
    bitsAllocated, bitsStored = ds.get("BitsAllocated"), ds.get("BitsStored")
    photometric = ds.get("PhotometricInterpretation") or ""
    if samples not in (1, 3):
        raise ValueError(f"lossless JPEG is written here for 1 or 3 samples per pixel, not {samples}")
    if samples == 3 and (ds.get("PlanarConfiguration") or 0) != 0:
        raise ValueError("colour by plane (Planar Configuration 1) must be interleaved first")
    if photometric in _SUBSAMPLED:
        raise ValueError(f"{photometric} pixel data must be expanded first")
    if bitsAllocated not in (8, 16):
        raise ValueError(f"lossless JPEG takes 8 or 16 bits allocated, not {bitsAllocated}")
    if bitsStored is None or not 2 <= bitsStored <= bitsAllocated:
        raise ValueError(f"lossless JPEG cannot take {bitsStored} bits stored of {bitsAllocated}")
    if ds.get("HighBit", bitsStored - 1) != bitsStored - 1:
        raise ValueError(f"the high bit ({ds.HighBit}) is not the top one of {bitsStored} bits stored")
    frames = int(ds.get("NumberOfFrames") or 1)
    shape = (frames, ds.Rows, ds.Columns, samples)
    count = int(np.prod(shape))
    dtype = np.dtype("<u1" if bitsAllocated == 8 else "<u2")
    if len(ds.PixelData) < count * dtype.itemsize:
        raise ValueError(f"Pixel Data has {len(ds.PixelData)} bytes, not the "
                         f"{count * dtype.itemsize} of {frames} frame(s) of {shape[1:]}")
    return np.frombuffer(ds.PixelData, dtype, count).reshape(shape)


def encodeDataset(ds, transferSyntax):
    """Replace the native Pixel Data of ``ds`` (colour by pixel, little
    endian) by its frames in lossless JPEG, encapsulated with a basic offset
    table, and set ``ds.file_meta.TransferSyntaxUID`` (``transferSyntax``,
    one of ``JPEG_LOSSLESS_SYNTAXES``), as pydicom's ``Dataset.compress`` does.

    Raises ValueError for an image this encoder cannot take."""
    if transferSyntax not in JPEG_LOSSLESS_SYNTAXES:
        raise ValueError(f"{transferSyntax} is not a lossless JPEG syntax")
    frames = _frames(ds)
    precision = ds.BitsStored if ds.BitsStored > 8 or ds.BitsAllocated == 8 else _WIDE_PRECISION
    ds.PixelData = encapsulate([encodeFrame(frame, precision) for frame in frames])
    element = ds["PixelData"]
    element.VR = VR.OB
    element.is_undefined_length = True
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transferSyntax
