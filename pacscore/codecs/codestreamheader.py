"""What a compressed frame's own header says of the image it decodes to,
read before decoding it: the decoders allocate their output by the
codestream's header, not by the object's Rows and Columns, so a frame of
a few kB may hold a 40000 x 40000 codestream (a decompression bomb).

``headerMismatch`` compares, without decoding anything, the header of a
frame with the image its object describes (pydicom's pixel options:
Rows, Columns, Samples per Pixel, Bits Allocated):

* JPEG (T.81 SOFn) and JPEG-LS (T.87 SOF55): lines, samples per line,
  components, and a sample precision no wider than Bits Allocated;
* JPEG 2000 and HTJ2K (T.800 SIZ, in a bare codestream or a JP2 file's
  contiguous codestream box): the image area, components, and the
  precision of each component (as signed or not) no wider than Bits
  Allocated;
* RLE (PS3.5 G.5): as many segments as Samples per Pixel times the bytes
  of Bits Allocated, starting at 64 and in order within the frame.

A frame whose header cannot be found or read is a mismatch too: the
decoder would refuse it or guess.
"""

import struct

from pacscore.codecs.jpegmarkers import SOF, segmentAt
from pacscore.codecs.syntaxes import JPEG_LOSSLESS_SYNTAXES, JPEG_LOSSY_SYNTAXES, JPEG_LS_LOSSLESS, \
    JPEG_LS_NEAR_LOSSLESS, RLE_LOSSLESS

_SOF55 = 0xF7  # JPEG-LS start of frame (T.87 C.2.2)
_JPEG_LS = frozenset({JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS})
_JPEG = JPEG_LOSSY_SYNTAXES | JPEG_LOSSLESS_SYNTAXES
# JPEG 2000 (4.90-4.93), HTJ2K (4.201-4.203).
_JPEG_2000 = frozenset("1.2.840.10008.1.2.4." + str(n) for n in (90, 91, 92, 93, 201, 202, 203))
_FRAME_HEADER = struct.Struct(">BHHB")  # P, Y, X, Nf after the segment length
_SIZ = struct.Struct(">HHHIIII")  # marker, Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz
_SIZ_COMPONENTS = 38  # Csiz's place from the SIZ marker
_J2K_START = b"\xff\x4f\xff\x51"  # SOC, then SIZ (T.800 A.5.1)
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_JP2_CODESTREAM = b"jp2c"
_RLE_HEADER = struct.Struct("<16L")
_DNL = b"\xff\xdc\x00\x04"  # define number of lines: its marker and length, the lines follow


def headerMismatch(syntax, frame, options):
    """What is wrong with the header of ``frame`` (bytes, one frame's
    codestream) in ``syntax`` for the image pydicom's pixel ``options``
    (``rows``, ``columns``, ``samples_per_pixel``, ``bits_allocated``)
    describe; None when it agrees, or for a syntax read no header of."""
    expected = (options["rows"], options["columns"], options.get("samples_per_pixel") or 1)
    bitsAllocated = options.get("bits_allocated") or 0
    if syntax in _JPEG or syntax in _JPEG_LS:
        found = _jpegHeader(frame, (_SOF55,) if syntax in _JPEG_LS else SOF)
    elif syntax in _JPEG_2000:
        found = _j2kHeader(frame)
    elif syntax == RLE_LOSSLESS:
        return _rleMismatch(frame, expected[2] * -(-bitsAllocated // 8))
    else:
        return None
    if found is None:
        return "its codestream has no frame header that can be read"
    *geometry, precision = found
    if tuple(geometry) != expected:
        return (f"its codestream is of {geometry[0]} x {geometry[1]} pixels of {geometry[2]} sample(s), "
                f"the object says {expected[0]} x {expected[1]} of {expected[2]}")
    if precision > max(bitsAllocated, 8):
        return f"its codestream has {precision}-bit samples, the object {bitsAllocated} bits allocated"
    return None


def _jpegHeader(codestream, markers):
    """``(rows, columns, components, precision)`` of a JPEG or JPEG-LS
    ``codestream``'s frame header; None when it has none."""
    at = segmentAt(codestream, markers) if codestream[:2] == b"\xff\xd8" else None
    if at is None or at + 4 + _FRAME_HEADER.size > len(codestream):
        return None
    precision, rows, columns, components = _FRAME_HEADER.unpack_from(codestream, at + 4)
    if rows == 0:  # the number of lines is in a DNL segment after the first scan (T.81 B.2.5)
        dnl = codestream.find(_DNL, at)
        rows = struct.unpack_from(">H", codestream, dnl + len(_DNL))[0] if 0 <= dnl <= len(codestream) - 6 else 0
    return rows, columns, components, precision


def _j2kHeader(codestream):
    """``(rows, columns, components, widest precision)`` of the SIZ of a
    JPEG 2000 codestream, bare or in a JP2 file; None when it has none."""
    at = _codestreamStart(codestream)
    if at is None or codestream[at:at + 4] != _J2K_START:
        return None
    siz = at + 2
    if siz + _SIZ_COMPONENTS + 2 > len(codestream):
        return None
    _, _, _, width, height, left, top = _SIZ.unpack_from(codestream, siz)
    components = struct.unpack_from(">H", codestream, siz + _SIZ_COMPONENTS)[0]
    depths = codestream[siz + _SIZ_COMPONENTS + 2:siz + _SIZ_COMPONENTS + 2 + 3 * components:3]
    if len(depths) < components or width <= left or height <= top:
        return None
    return height - top, width - left, components, max(((depth & 0x7F) + 1 for depth in depths), default=0)


def _codestreamStart(data):
    """Where the codestream of ``data`` starts: 0 for a bare one, the
    contents of the first contiguous codestream box of a JP2 file; None
    when there is none."""
    if bytes(data[:len(_JP2_SIGNATURE)]) != _JP2_SIGNATURE:
        return 0
    at = 0
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">L4s", data, at)
        header = 8
        if length == 1 and at + 16 <= len(data):
            length, header = struct.unpack_from(">Q", data, at + 8)[0], 16
        if kind == _JP2_CODESTREAM:
            return at + header
        if length < header:  # 0: the last box, to the end
            return None
        at += length
    return None


def _rleMismatch(frame, segments):
    """What is wrong with the RLE header of ``frame``, which should have
    ``segments`` segments; None when nothing is."""
    if len(frame) < _RLE_HEADER.size:
        return "its RLE frame is shorter than its header"
    count, *offsets = _RLE_HEADER.unpack_from(frame)
    if count != segments:
        return f"its RLE frame has {count} segment(s), the object's pixels {segments}"
    used = offsets[:count]
    if used[:1] != [_RLE_HEADER.size] or any(b <= a for a, b in zip(used, used[1:])) or used[-1] >= len(frame):
        return "its RLE frame's segment offsets are not in order within it"
    return None
