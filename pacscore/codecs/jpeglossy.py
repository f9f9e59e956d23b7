"""Lossy JPEG encoder (ITU T.81 sequential DCT, Huffman coding) in numpy,
for JPEG Baseline (1.2.840.10008.1.2.4.50, 8-bit samples, SOF0) and JPEG
Extended (.51, 8 or 12-bit samples, SOF1), the syntaxes of Conquest's
lossy codes j3..j6, which pydicom and its plugins decode but cannot write.

``encodeFrame`` writes one frame as one codestream (SOI, DQT, SOF, DHT,
[DRI,] SOS, EOI): one component, or three (YCbCr, none subsampled) in one
interleaved scan; a large frame a strip of MCU rows at a time, each strip a
restart interval, in bounded memory (a 4096x3328 mammogram: 39 MB and
1.7 s, where coding it at once took 1.5 GB and 5.5 s). The quantisation tables are those of T.81 annex K scaled
by a quality 1..100 as the IJG library scales them (LossyQuality; 8-bit
entries, at most 255, as baseline requires); the Huffman tables (one DC,
one AC, shared by the components) are the optimal ones for the frame.

``encodeDataset`` encodes every frame of a native data set. Colour images
are converted RGB -> YCbCr (Photometric Interpretation YBR_FULL, PS3.5
8.2.1 with no subsampling); monochrome ones are coded in 8 bits when 8 are
allocated, else in 12. Data a 12-bit unsigned sample cannot hold - signed
pixels, or more than 12 bits stored - is moved into 0..4095 by subtracting
its smallest value, as DCMTK does for lossy JPEG: Pixel Representation
becomes 0, Bits Stored 12, and the Rescale Intercept (and any Pixel
Padding Value) take up the shift, so modality values stay the same (an
enhanced image's Rescale Intercepts, those of the Pixel Value
Transformation Sequences of its Shared and Per-Frame Functional Groups,
with no Rescale added at the top level, which its IOD has none of, but
one found there shifted too, as DCMTK reads it first; a
padding value outside the pixels' range goes: no pixel is padding), and
the Smallest/Largest Image Pixel Value and Pixel Value in Series go, as
DCMTK's dcmcjpeg drops them. An image whose modality values come from a
Modality LUT Sequence, which PS3.3 C.11.1 allows no Rescale beside, has
the LUT Descriptor's first value mapped take up the shift instead, the
shift chosen to keep that value from going negative (ValueError when
none can: the LUT starts more than 4095 below the largest value). When
the values span more than 4096, the image cannot go in lossy JPEG
(ValueError). Bits Stored below the precision coded becomes that precision
(High Bit one less), as DCMTK's dcmcjpeg does: the values keep their
meaning, and a decoded sample the coding pushed above the old Bits Stored
range stays bright where a reader masking to the old Bits Stored would
turn it black.
"""

import struct

import numpy as np

from pacscore.codecs.huffman import CATEGORY, SEGMENT, dhtSegment, extraBits, optimalTable, pack
from pacscore.codecs.pixelframes import encapsulateFrames, nativeFrames, signedValues
from pacscore.codecs.syntaxes import JPEG_BASELINE, JPEG_EXTENDED

DEFAULT_QUALITY = 95  # Conquest's LossyQuality default

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
_SOF0, _SOF1, _DQT, _SOS, _DRI = 0xFFC0, 0xFFC1, 0xFFDB, 0xFFDA, 0xFFDD
STRIP_MCUS = 1 << 12  # MCUs coded at a time in a larger frame (a restart interval each)
_WIDE = 12  # the precision of data over 8 bits
_EOB, _ZRL = 0x00, 0xF0
# Stored pixel values of the image or its series (PS3.3 C.7.6.3, C.7.3.1;
# the in-Plane ones retired), in the VR of Pixel Representation: a shift
# into 0..4095 leaves them out of the new range and of the wrong VR, and
# the coding's error the extremes they name; they go, as DCMTK's dcmcjpeg
# drops them.
LUT_DESCRIPTOR = 0x00283002
_VALUE_RANGES = ("SmallestImagePixelValue", "LargestImagePixelValue", "SmallestPixelValueInSeries",
                 "LargestPixelValueInSeries", "SmallestImagePixelValueInPlane", "LargestImagePixelValueInPlane")

# T.81 tables K.1 and K.2, in natural (row by row) order.
_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.int64).reshape(8, 8)
_CHROMINANCE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99]
    + [99] * 32, np.int64).reshape(8, 8)

# The zig-zag order: _ZIGZAG[k] is the natural index of the k-th coefficient.
_ZIGZAG = np.array(sorted(range(64), key=lambda i: (
    i // 8 + i % 8, (i // 8) if (i // 8 + i % 8) % 2 else (i % 8))), np.int64)

# The orthonormal 8-point DCT-II: T.81 A.3.3's FDCT is _DCT @ block @ _DCT.T.
_DCT = np.array([[np.sqrt((1 if k else 0.5) / 4) * np.cos((2 * n + 1) * k * np.pi / 16)
                  for n in range(8)] for k in range(8)])


def quantisationTable(base, quality):
    """``base`` scaled for ``quality`` (1..100) as IJG's jpeg_set_quality
    does, entries 1..255."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def _blocks(plane):
    """The 8x8 blocks of ``plane`` (rows, columns), edges repeated to whole
    blocks, in raster order: (block rows * block columns, 8, 8)."""
    rows, columns = plane.shape
    padded = np.pad(plane, ((0, -rows % 8), (0, -columns % 8)), mode="edge")
    blockRows, blockColumns = padded.shape[0] // 8, padded.shape[1] // 8
    return padded.reshape(blockRows, 8, blockColumns, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)


def _coefficients(plane, table, precision):
    """The quantised DCT coefficients of the level-shifted ``plane``, one
    row of 64 (zig-zag order) per block."""
    blocks = _blocks(plane.astype(np.float64) - (1 << (precision - 1)))
    transformed = _DCT @ blocks @ _DCT.T
    quantised = np.rint(transformed / table).astype(np.int64)
    return quantised.reshape(-1, 64)[:, _ZIGZAG]


def _symbols(coefficients, components):
    """The entropy-coding events of the interleaved scan of
    ``coefficients`` (blocks in coding order, ``components`` blocks per
    MCU): ``(isAC, symbol, value, category)`` arrays in coding order; DC
    events have symbol = category and value = the DC difference, AC ones
    RS = run << 4 | size (ZRL, EOB with no value)."""
    blocks = len(coefficients)
    dc = coefficients[:, 0].reshape(-1, components)
    differences = np.diff(dc, axis=0, prepend=0).ravel()
    dcCategory = CATEGORY[np.abs(differences)].astype(np.int64)

    ac = coefficients[:, 1:]
    block, position = np.nonzero(ac)
    position += 1
    values = ac[block, position - 1]
    # The zeros before each non-zero one in its block.
    first = np.ones(len(block), bool)
    first[1:] = block[1:] != block[:-1]
    previous = np.where(first, 0, np.roll(position, 1))
    run = position - previous - 1
    zrl = run >> 4
    category = CATEGORY[np.abs(values)].astype(np.int64)

    lastPosition = np.zeros(blocks, np.int64)
    np.maximum.at(lastPosition, block, position)
    eob = np.flatnonzero(lastPosition < 63)

    zrlBlock = np.repeat(block, zrl)
    zrlPosition = np.repeat(position, zrl)
    # Keys: block, position, then the ZRLs before the coefficient's own symbol.
    zrlOrder = np.arange(len(zrlBlock)) - np.repeat(np.cumsum(zrl) - zrl, zrl)
    keys = np.concatenate([
        np.arange(blocks) * 4096,
        block * 4096 + position * 8 + 4,
        zrlBlock * 4096 + zrlPosition * 8 + zrlOrder,
        eob * 4096 + 64 * 8,
    ])
    isAC = np.concatenate([np.zeros(blocks, bool), np.ones(len(block) + len(zrlBlock) + len(eob), bool)])
    symbol = np.concatenate([dcCategory, ((run & 15) << 4) | category,
                             np.full(len(zrlBlock), _ZRL), np.full(len(eob), _EOB)])
    value = np.concatenate([differences, values, np.zeros(len(zrlBlock) + len(eob), np.int64)])
    size = np.concatenate([dcCategory, category, np.zeros(len(zrlBlock) + len(eob), np.int64)])
    order = np.argsort(keys, kind="stable")
    return isAC[order], symbol[order], value[order], size[order]


def _ycbcr(rgb):
    """JFIF's RGB -> YCbCr (Cb and Cr centred on 0)."""
    rgb = rgb.astype(np.float64)
    return np.stack([
        0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2],
        -0.168736 * rgb[..., 0] - 0.331264 * rgb[..., 1] + 0.5 * rgb[..., 2],
        0.5 * rgb[..., 0] - 0.418688 * rgb[..., 1] - 0.081312 * rgb[..., 2],
    ], axis=-1)


def encodeFrame(samples, precision, quality=DEFAULT_QUALITY, colour=False):
    """One frame, ``samples`` (rows, columns) or (rows, columns, 3) of
    unsigned ``precision``-bit values (8 or 12), as a sequential DCT
    codestream: SOF0 (baseline) for 8 bits, SOF1 (extended) for 12.
    ``colour``: the three samples are RGB, coded as YCbCr.

    A frame of more than ``STRIP_MCUS`` MCUs is coded a strip of MCU rows
    at a time, each strip a restart interval (DRI, RSTn), so that memory
    stays bounded (the coding takes about 150 bytes a pixel while it
    runs): a first pass counts the symbols for the Huffman tables, a
    second codes them."""
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples[:, :, np.newaxis]
    rows, columns, components = samples.shape
    if components not in (1, 3) or not (0 < rows < 65536 and 0 < columns < 65536):
        raise ValueError(f"a lossy JPEG frame cannot be {samples.shape}")
    if precision not in (8, _WIDE):
        raise ValueError(f"lossy JPEG takes 8 or 12-bit samples, not {precision}")
    tables = [quantisationTable(_LUMINANCE, quality), quantisationTable(_CHROMINANCE, quality)]
    tableOf = [0, 1, 1] if components == 3 else [0]
    mcuColumns = -(-columns // 8)
    stripRows = 8 * max(1, STRIP_MCUS // mcuColumns)

    def stripSymbols(top):
        """The entropy-coding events of the strip of sample rows from ``top``."""
        planes = samples[top:top + stripRows].astype(np.float64)
        if colour and components == 3:
            planes = _ycbcr(planes)
            planes[..., 1:] += 1 << (precision - 1)
        perComponent = [_coefficients(planes[..., c], tables[tableOf[c]], precision) for c in range(components)]
        return _symbols(np.stack(perComponent, axis=1).reshape(-1, 64), components)  # MCU by MCU

    tops = range(0, rows, stripRows)
    kept = [stripSymbols(0)] if len(tops) == 1 else None  # one strip: coded once
    dcCounts, acCounts = np.zeros(16, np.int64), np.zeros(256, np.int64)
    for isAC, symbol, _, _ in kept or map(stripSymbols, tops):
        dcCounts += np.bincount(symbol[~isAC], minlength=16)
        acCounts += np.bincount(symbol[isAC], minlength=256)
    dcBody, dcCodes, dcLengths = optimalTable(dcCounts, 0, 0)
    acBody, acCodes, acLengths = optimalTable(acCounts, 1, 0)

    def scan(isAC, symbol, value, size):
        codes = np.where(isAC, acCodes[symbol], dcCodes[np.where(isAC, 0, symbol)])
        lengths = np.where(isAC, acLengths[symbol], dcLengths[np.where(isAC, 0, symbol)])
        sizes = size.astype(np.uint64)
        return pack((codes << sizes) | extraBits(value, sizes), lengths + sizes)

    if kept:
        scans, restart = [scan(*kept[0])], b""
    else:
        scans = [scan(*stripSymbols(top)) + (bytes([0xFF, 0xD0 + n % 8]) if top + stripRows < rows else b"")
                 for n, top in enumerate(tops)]
        restart = SEGMENT.pack(_DRI, 4) + struct.pack(">H", stripRows // 8 * mcuColumns)

    used = sorted(set(tableOf))
    dqt = b"".join(bytes([t]) + tables[t].ravel()[_ZIGZAG].astype(np.uint8).tobytes() for t in used)
    ids = range(1, components + 1)
    frame = struct.pack(">BHHB", precision, rows, columns, components) + b"".join(
        bytes([i, 0x11, tableOf[i - 1]]) for i in ids)
    scanHeader = bytes([components]) + b"".join(bytes([i, 0x00]) for i in ids) + bytes([0, 63, 0])
    return b"".join([
        _SOI,
        SEGMENT.pack(_DQT, 2 + len(dqt)), dqt,
        SEGMENT.pack(_SOF0 if precision == 8 else _SOF1, 2 + len(frame)), frame,
        dhtSegment(dcBody, acBody),
        restart,
        SEGMENT.pack(_SOS, 2 + len(scanHeader)), scanHeader,
        *scans,
        _EOI,
    ])


def _shiftIntoRange(ds, frames):
    """``frames`` as unsigned 12-bit values, ``ds`` amended for the shift
    (see the module docstring); ValueError when they do not fit."""
    if (ds.get("SamplesPerPixel") or 1) != 1:
        raise ValueError("signed colour samples, or over 12 bits, cannot go in lossy JPEG")
    bitsStored = ds.BitsStored
    signed = ds.get("PixelRepresentation") == 1
    values = signedValues(frames, bitsStored) if signed else frames.astype(np.int64) & ((1 << bitsStored) - 1)
    low, high = int(values.min()), int(values.max())
    if high - low >= 1 << _WIDE:
        raise ValueError(f"its pixel values span {low}..{high}, more than 12 bits can hold")
    offset = low if signed or high >= 1 << _WIDE else 0
    lut = _modalityLut(ds, signed) if offset or signed else None  # signed: its first value mapped becomes US
    if lut is not None:
        offset = _lutShift(lut, low, high)
    if offset:
        transformations = _pixelValueTransformations(ds)
        for item in transformations:  # an enhanced image: its functional groups hold the Rescale
            _addToIntercept(item, offset)
        # every Rescale that applies is shifted (DCMTK reads a top-level one
        # beside the functional groups); one is added only where none is
        # (PS3.3 C.11.1: none beside the LUT, nor beside the groups)
        if "RescaleIntercept" in ds or (lut is None and not transformations):
            _addToIntercept(ds, offset)
        for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
            padding = ds.get(keyword)
            if not isinstance(padding, int):
                continue
            if 0 <= padding - offset < 1 << _WIDE:
                ds[keyword].VR = "US"
                ds[keyword].value = padding - offset
            else:  # no pixel has it: nothing is padding
                delattr(ds, keyword)
    if offset or signed:
        for keyword in _VALUE_RANGES:
            if keyword in ds:
                delattr(ds, keyword)
    ds.PixelRepresentation = 0
    ds.BitsStored = _WIDE
    ds.HighBit = _WIDE - 1
    return values - offset


def _addToIntercept(item, offset):
    """Have the Rescale of ``item`` (a data set or a Pixel Value
    Transformation item; 0 and 1 when it has none) map pixel values
    ``offset`` lower to the same modality values."""
    slope = float(item.get("RescaleSlope") or 1)
    intercept = float(item.get("RescaleIntercept") or 0) + offset * slope
    item.RescaleIntercept = f"{intercept:.6g}"
    if "RescaleSlope" not in item:
        item.RescaleSlope = "1"


def _pixelValueTransformations(ds):
    """The Pixel Value Transformation items of the Shared and Per-Frame
    Functional Groups of ``ds`` (PS3.3 C.7.6.16.2.9), which give an
    enhanced image's Rescale, where none is written at the top level."""
    items = []
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in ds.get(keyword) or []:
            items.extend(group.get("PixelValueTransformationSequence") or [])
    return items


def _modalityLut(ds, signed):
    """The LUT Descriptor element of the Modality LUT Sequence of ``ds``,
    its first value mapped read as ``signed`` (PS3.3 C.11.1.1.1: US or SS
    as Pixel Representation says); None when it has none. ValueError when
    it is not one item with a descriptor of three values."""
    sequence = ds.get("ModalityLUTSequence")
    if sequence is None:
        return None
    descriptor = sequence[0].get(LUT_DESCRIPTOR) if len(sequence) == 1 else None
    if descriptor is None or descriptor.VM != 3:
        raise ValueError("its Modality LUT Sequence is not one item with a LUT Descriptor of three values")
    first = descriptor.value[1]
    if signed and first >= 1 << 15:  # written as US
        first -= 1 << 16
    return descriptor, first


def _lutShift(lut, low, high):
    """The offset moving pixel values ``low..high`` into 0..4095 whose
    Modality LUT ``(descriptor, first value mapped)`` stays right: its
    first value mapped less the offset, not negative (US), where values
    below it map as before (to the first entry); the descriptor amended.
    ValueError when no offset can (the LUT starts more than 4095 below the
    largest value)."""
    descriptor, first = lut
    offset = min(low, first)
    if offset < high - ((1 << _WIDE) - 1):
        raise ValueError(f"its Modality LUT Sequence maps values from {first}, and its pixel values reach "
                         f"{high}: moved into 0..4095 they would start below the LUT's first value mapped")
    entries, _, bits = descriptor.value
    descriptor.VR = "US"
    descriptor.value = [entries & 0xFFFF, first - offset, bits & 0xFFFF]
    return offset


def encodeDataset(ds, transferSyntax, quality=DEFAULT_QUALITY):
    """Replace the native Pixel Data of ``ds`` (colour by pixel, little
    endian) by its frames in lossy JPEG, encapsulated with a basic offset
    table, and set ``ds.file_meta.TransferSyntaxUID`` (``transferSyntax``:
    JPEG Baseline for 8 bits allocated, JPEG Extended for 8 or 16).

    Raises ValueError for an image this encoder cannot take."""
    if transferSyntax not in (JPEG_BASELINE, JPEG_EXTENDED):
        raise ValueError(f"{transferSyntax} is not a lossy JPEG syntax written here")
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        raise ValueError("palette indices cannot go in lossy JPEG")
    frames = nativeFrames(ds, "lossy JPEG")
    colour = frames.shape[3] == 3
    if ds.BitsAllocated == 8:
        if ds.get("PixelRepresentation") == 1:
            raise ValueError("signed 8-bit pixels cannot go in lossy JPEG")
        precision, values = 8, frames & ((1 << ds.BitsStored) - 1)  # bits above them may hold overlays
    elif transferSyntax == JPEG_BASELINE:
        raise ValueError("JPEG Baseline takes 8-bit samples, and this image has 16 bits allocated")
    else:
        precision = _WIDE
        values = (_shiftIntoRange(ds, frames) if ds.get("PixelRepresentation") == 1 or ds.BitsStored > _WIDE
                  else frames & ((1 << ds.BitsStored) - 1))
    if ds.BitsStored < precision:  # the coding overshoots: masked to Bits Stored, white would wrap to black
        ds.BitsStored, ds.HighBit = precision, precision - 1
    if colour:
        photometric = ds.get("PhotometricInterpretation")
        if photometric not in ("RGB", "YBR_FULL"):
            raise ValueError(f"{photometric} colour pixel data cannot go in lossy JPEG here")
        colour = photometric == "RGB"
        ds.PhotometricInterpretation = "YBR_FULL"
    encapsulateFrames(ds, (encodeFrame(frame, precision, quality, colour) for frame in values), transferSyntax)
