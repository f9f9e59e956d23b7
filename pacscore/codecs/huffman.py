"""Huffman coding as the JPEG encoders here (``jpeglossless``,
``jpeglossy``) write it (ITU T.81 annexes C, F.1.2, K.2, K.3): the optimal
table for a set of symbol frequencies, its DHT marker segment, and the
entropy-coded bit stream with its 0xFF bytes stuffed.
"""

import struct

import numpy as np

DHT = 0xFFC4
SEGMENT = struct.Struct(">HH")
MAX_CODE_LENGTH = 16
# The magnitude category (SSSS) of a value of magnitude 0..32768: its bit length.
CATEGORY = np.concatenate([np.zeros(1, np.uint8)] + [np.full(1 << k, k + 1, np.uint8) for k in range(16)])


def _codeLengths(counts):
    """``(bits, values)``: the Huffman table for the symbol frequencies
    ``counts`` (symbol -> count) as DHT gives it, the number of codes of
    each length 1..16 and the symbols used, in code order. T.81 K.2 (with
    a reserved symbol of frequency 1 so that no code is all ones) and K.3
    (lengths over 16 bits folded back)."""
    symbols = len(counts)
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
    bits = [0] * (max(size) + 2 * MAX_CODE_LENGTH + 1)
    for s in size:
        if s:
            bits[s] += 1
    for i in range(len(bits) - 1, MAX_CODE_LENGTH, -1):
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
    values = sorted((v for v in range(symbols) if size[v]), key=lambda v: (size[v], v))
    return bits[1:MAX_CODE_LENGTH + 1], values


def optimalTable(counts, tableClass, identifier):
    """``(body, codes, lengths)`` for the symbol frequencies ``counts``:
    the table's part of a DHT segment (class 0 DC / lossless, 1 AC; its
    identifier 0..3), and each symbol's code and code length (numpy
    uint64 arrays, 0 for unused symbols)."""
    bits, values = _codeLengths(counts)
    codes = np.zeros(len(counts), np.uint64)
    lengths = np.zeros(len(counts), np.uint64)
    code, k = 0, 0
    for length, count in enumerate(bits, 1):
        for value in values[k:k + count]:
            codes[value], lengths[value] = code, length
            code += 1
        k += count
        code <<= 1
    return bytes([tableClass << 4 | identifier]) + bytes(bits) + bytes(values), codes, lengths


def dhtSegment(*bodies):
    """The DHT marker segment holding the tables ``bodies``."""
    body = b"".join(bodies)
    return SEGMENT.pack(DHT, 2 + len(body)) + body


def extraBits(values, categories):
    """The additional bits of each of ``values`` after the code of its
    category (T.81 F.1.2.1.1: the low bits of value - 1 for negative ones)."""
    values = np.asarray(values, np.int64)
    mask = (np.uint64(1) << categories.astype(np.uint64)) - np.uint64(1)
    return (values - (values < 0)).astype(np.uint64) & mask


def pack(values, lengths):
    """The bit fields ``values`` (``lengths`` bits each, at most 32) one
    after the other, most significant bit first, the last byte padded with
    1 bits, then 0xFF bytes stuffed with 0x00 (T.81 F.1.2.3, B.1.1.5)."""
    return packPart(values, lengths)[0]


def packPart(values, lengths, pending=(0, 0), final=True):
    """``(data, pending)``: ``pack`` of the fields ``values`` written after
    the ``pending`` bits ``(value, length)`` (fewer than 8) that the fields
    before them left; when not ``final`` the bits of the last byte begun are
    not padded but given back as the new ``pending``, so that a long bit
    stream can be packed a part at a time."""
    value, length = pending
    if length:
        values = np.concatenate([np.array([value], np.uint64), values])
        lengths = np.concatenate([np.array([length], np.int64), lengths.astype(np.int64)])
    lengths = lengths.astype(np.int64)
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if ends.size else 0
    if not total:
        return b"", (0, 0)
    starts = ends - lengths
    words = starts >> 5
    # Each field in a 64-bit window starting at its 32-bit word.
    window = values << (64 - (starts & 31) - lengths).astype(np.uint64)
    count = total // 32 + 2
    packed = (np.bincount(words, weights=window >> np.uint64(32), minlength=count)
              + np.bincount(words + 1, weights=window & np.uint64(0xFFFFFFFF), minlength=count))
    data = packed.astype(">u4").view(np.uint8)[:(total + 7) // 8].copy()
    pending = (0, 0)
    if total % 8 and final:
        data[-1] |= (1 << (8 - total % 8)) - 1
    elif total % 8:
        pending = (int(data[-1]) >> (8 - total % 8), total % 8)
        data = data[:-1]
    stuffed = np.flatnonzero(data == 0xFF)
    return (np.insert(data, stuffed + 1, 0).tobytes() if stuffed.size else data.tobytes()), pending
