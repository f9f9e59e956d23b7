"""NKI private compression (Conquest's codes n1..n4): lossless compression
of 16-bit pixel data, stored in (7FDF,0010) in place of (7FE0,0010).

Conquest archives written with IncomingCompression or DroppedFileCompression
n1..n4 hold such objects; Conquest decompresses them whenever it sends them
("compression is transparent for DICOM connections"), and so does pacs.

The value of (7FDF,0010): a little endian header of 32-bit words - the
number of 16-bit pixels, the mode (1..4), and for modes 2 and 4 the size of
the compressed stream in bytes, the CRC of the pixels and (mode 2) the CRC
of the stream (mode 4: 0). The CRCs are CRC-32 with a zero start and no
final inversion. Then the stream: the first pixel (16 bits little endian),
then for every further pixel, by its difference d from the one before:

- one byte: d itself, for -64..63 (modes 3 and 4: -63..63);
- two bytes ``(d >> 8) ^ 0x40, d & 0xFF`` for -0x3F00..0x3EFF;
- three bytes 0x7F and the pixel itself, big endian;
- two bytes 0x80 NN: NN (1..255) pixels equal to the one before;
- modes 3 and 4 only: 0xC0 NN and NN/2 bytes of two 4-bit differences
  each (high nibble first), for NN pixels.

Modes 2 and 4 pad the stream to an even length, modes 1 and 3 the whole
value. The encoder makes Conquest's choices: runs of equal pixels from 2
(modes 1 and 2) or 5 (modes 3 and 4) long, 4-bit runs from 6 long.
"""

import array
import struct
import sys
import zlib

import numpy as np

from pacscore.codecs.transcode import TranscodeError

MODES = (1, 2, 3, 4)
_SHORT_HEADER = struct.Struct("<II")           # pixels, mode (modes 1 and 3)
_LONG_HEADER = struct.Struct("<IIIII")         # + stream size, pixel CRC, stream CRC (modes 2 and 4)
_RUN_LIMIT = 255


class NKIError(TranscodeError):
    """The data is not NKI compressed pixel data, or is damaged (a
    conversion that cannot be done, like any other TranscodeError)."""


def crc(data):
    """CRC-32 as NKI computes it: zero start, no final inversion."""
    return zlib.crc32(data, 0xFFFFFFFF) ^ 0xFFFFFFFF


def mode(value):
    """The NKI mode of a (7FDF,0010) value, or None when it is not NKI
    compressed pixel data (Acuson and Elscint use the same tag)."""
    if len(value) <= 8 or bytes(value[:6]) in (b"ACUSON", b"ELSCIN"):
        return None
    pixels, found = _SHORT_HEADER.unpack_from(value)
    return found if found in MODES and pixels > 0 else None


def expandedSize(value):
    """The bytes of the pixel data a (7FDF,0010) value (``mode`` not None)
    expands to: its header's number of 16-bit pixels, over all frames (the
    stream is one run of differences from its first pixel)."""
    return _SHORT_HEADER.unpack_from(value)[0] * 2


def compress(pixelData, compressionMode):
    """The (7FDF,0010) value for ``pixelData`` (bytes of 16-bit little
    endian words) in NKI mode ``compressionMode``; even length."""
    if compressionMode not in MODES:
        raise NKIError(f"NKI compression mode {compressionMode!r} does not exist (1..4)")
    if len(pixelData) < 2 or len(pixelData) % 2:
        raise NKIError(f"{len(pixelData)} bytes of pixel data are no 16-bit words")
    pixels = np.frombuffer(pixelData, dtype="<i2")
    stream = pixels[:1].tobytes() + _encode(pixels, compressionMode)
    if compressionMode in (1, 3):
        value = _SHORT_HEADER.pack(len(pixels), compressionMode) + stream
        return value + b"\x00" if len(value) % 2 else value
    if len(stream) % 2:
        stream += b"\x00"
    streamCRC = crc(stream) if compressionMode == 2 else 0
    return _LONG_HEADER.pack(len(pixels), compressionMode, len(stream), crc(pixelData), streamCRC) + stream


def _chunks(starts, sizes, limit, shortest):
    """Runs (``starts``, ``sizes``) cut into chunks of ``limit``, the last
    one kept only when at least ``shortest`` long: ``(chunk starts, chunk
    sizes, how much of each run the chunks cover)``."""
    whole, rest = sizes // limit, sizes % limit
    last = rest >= shortest
    counts = whole + last
    within = _within(counts)
    chunkStarts = np.repeat(starts, counts) + within * limit
    chunkSizes = np.where(within < np.repeat(whole, counts), limit, np.repeat(rest, counts))
    return chunkStarts, chunkSizes, whole * limit + np.where(last, rest, 0)


def _within(counts):
    """0, 1 ... counts[0]-1, 0, 1 ... counts[1]-1, ...: each item's place in its group."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


def _runs(flags):
    """``(starts, sizes)`` of the runs of True in the boolean array ``flags``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.view(np.int8), [0]))))
    return edges[0::2], edges[1::2] - edges[0::2]


def _encode(pixels, compressionMode):
    """The stream after the first pixel."""
    values = pixels.astype(np.int32)
    diffs = values[1:] - values[:-1]
    if not len(diffs):
        return b""
    fourBit = compressionMode in (3, 4)
    smallest = -63 if fourBit else -64
    lengths = np.where((diffs >= smallest) & (diffs <= 63), 1,
                       np.where((diffs >= -0x3F00) & (diffs <= 0x3EFF), 2, 3)).astype(np.int64)
    # Zero differences: runs of two or more (modes 3 and 4, as Conquest: five or
    # more, shorter ones are cheaper as single bytes) become 0x80 NN, NN <= 255.
    starts, sizes = _runs(diffs == 0)
    keep = sizes >= (5 if fourBit else 2)
    runAt, runCount, covered = _chunks(starts[keep], sizes[keep], _RUN_LIMIT, 5 if fourBit else 2)
    cover = np.zeros(len(diffs) + 1, dtype=np.int64)
    np.add.at(cover, starts[keep], 1)
    np.add.at(cover, starts[keep] + covered, -1)
    single = np.flatnonzero(np.cumsum(cover[:-1]) == 0)  # positions written one by one
    singleDiffs, singleLengths = diffs[single], lengths[single].copy()

    # Modes 3 and 4: runs of 6 or more consecutive differences in -8..7 become
    # 0xC0 NN and NN/2 bytes (NN even, <= 254; an odd run's first one stays a byte).
    packedAt = packedSize = np.zeros(0, dtype=np.int64)
    if fourBit:
        small = (singleDiffs >= -8) & (singleDiffs <= 7)
        # a run goes on while the next one is small too and the very next pixel (no 0x80 run between)
        linked = small & np.concatenate(([False], small[:-1] & (np.diff(single) == 1)))
        first = small & ~linked
        starts = np.flatnonzero(first)
        sizes = np.bincount(np.cumsum(first)[small] - 1, minlength=len(starts))
        keep = sizes >= 6
        odd = sizes[keep] % 2
        packedAt, packedSize, _ = _chunks(starts[keep] + odd, sizes[keep] - odd, 254, 6)
        singleLengths[np.repeat(packedAt, packedSize) + _within(packedSize)] = 0
        singleLengths[packedAt] = 2 + packedSize // 2

    positions = np.concatenate((single, runAt))
    unitLengths = np.concatenate((singleLengths, np.full(len(runAt), 2, dtype=np.int64)))
    order = np.argsort(positions, kind="stable")
    offsets = np.empty(len(order), dtype=np.int64)
    offsets[order] = np.cumsum(unitLengths[order]) - unitLengths[order]
    out = np.zeros(int(unitLengths.sum()), dtype=np.uint8)

    singleOffsets = offsets[:len(single)]
    plain = lengths[single]
    plain[singleLengths != plain] = 0  # packed in 4-bit runs
    for length in (1, 2, 3):
        chosen = plain == length
        at, d = singleOffsets[chosen], singleDiffs[chosen]
        if length == 1:
            out[at] = d & 0xFF
        elif length == 2:
            out[at] = ((d >> 8) ^ 0x40) & 0xFF
            out[at + 1] = d & 0xFF
        else:
            value = values[1:][single[chosen]] & 0xFFFF
            out[at] = 0x7F
            out[at + 1] = value >> 8
            out[at + 2] = value & 0xFF
    runOffsets = offsets[len(single):]
    out[runOffsets] = 0x80
    out[runOffsets + 1] = runCount
    if len(packedAt):
        heads = singleOffsets[packedAt]
        out[heads] = 0xC0
        out[heads + 1] = packedSize
        pairs = packedSize // 2
        pairIndex = _within(pairs)
        firstOfPair = np.repeat(packedAt, pairs) + 2 * pairIndex
        out[np.repeat(heads, pairs) + 2 + pairIndex] = (
            ((singleDiffs[firstOfPair] & 15) << 4) | (singleDiffs[firstOfPair + 1] & 15))
    return out.tobytes()


def decompress(value):
    """The pixel data (16-bit little endian words) of a (7FDF,0010) value;
    NKIError when it is not one, or is damaged (modes 2 and 4 check the
    pixels' CRC)."""
    value = bytes(value)
    found = mode(value)
    if found is None:
        raise NKIError("not NKI compressed pixel data")
    if found in (1, 3):
        count = _SHORT_HEADER.unpack_from(value)[0]
        stream = memoryview(value)[_SHORT_HEADER.size:]
        expectedCRC = None
    else:
        if len(value) < _LONG_HEADER.size + 2:
            raise NKIError("the NKI header is truncated")
        count, _, size, expectedCRC, _ = _LONG_HEADER.unpack_from(value)
        stream = memoryview(value)[_LONG_HEADER.size:_LONG_HEADER.size + size]
    pixels = _decode(bytes(stream), count, fourBit=found in (3, 4))
    data = pixels.tobytes()
    if expectedCRC is not None and crc(data) != expectedCRC:
        raise NKIError("the NKI compressed pixel data is damaged (CRC mismatch)")
    return data


def _decode(stream, count, fourBit):
    """``count`` pixels (uint16 array) from ``stream``."""
    if len(stream) < 2:
        raise NKIError("the NKI stream is truncated")
    current = stream[0] | stream[1] << 8
    out = array.array("H", (current,))
    append = out.append
    pos = 2
    negative = 0xC1 if fourBit else 0xC0  # the first byte of a negative one-byte difference
    try:
        while len(out) < count:
            byte = stream[pos]
            if byte < 0x40:
                current = (current + byte) & 0xFFFF
                pos += 1
            elif byte >= negative:
                current = (current + byte - 256) & 0xFFFF
                pos += 1
            elif byte == 0x7F:
                current = stream[pos + 1] << 8 | stream[pos + 2]
                pos += 3
            elif byte == 0x80:
                run = stream[pos + 1]
                if not run or len(out) + run > count:
                    raise NKIError(f"a run of {run} pixels at byte {pos} does not fit")
                out.extend((current,) * run)
                pos += 2
                continue
            elif byte == 0xC0:  # only with fourBit: 0xC0 is -64 otherwise
                run = stream[pos + 1]
                if not run or run % 2 or len(out) + run > count or pos + 2 + run // 2 > len(stream):
                    raise NKIError(f"a 4-bit run of {run} pixels at byte {pos} does not fit")
                for packed in stream[pos + 2:pos + 2 + run // 2]:
                    high, low = packed >> 4, packed & 15
                    current = (current + (high - 16 if high & 8 else high)) & 0xFFFF
                    append(current)
                    current = (current + (low - 16 if low & 8 else low)) & 0xFFFF
                    append(current)
                pos += 2 + run // 2
                continue
            else:  # two bytes: 0x40..0x7E, 0x81..0xBF
                high = (byte ^ 0x40) - (256 if byte >= 0x80 else 0)
                current = (current + (high << 8) + stream[pos + 1]) & 0xFFFF
                pos += 2
            append(current)
    except IndexError:
        raise NKIError(f"the NKI stream ends after {len(out)} of {count} pixels") from None
    return np.frombuffer(out, dtype=np.uint16) if sys.byteorder == "little" else \
        np.frombuffer(out, dtype=np.uint16).byteswap()
