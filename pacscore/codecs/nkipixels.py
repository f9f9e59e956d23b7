"""NKI compressed pixel data inside a data set: (7FE0,0010) replaced by
(7FDF,0010) and back, on the bytes of an implicit or explicit VR little
endian data set (the only syntaxes Conquest writes it in), with
``pacscore.codecs.nki``.

As in Conquest, a (7FDF,0010) is taken for NKI pixel data only when there
is no (7FE0,0010) beside it and its value has an NKI header (Acuson and
Elscint use the tag for their own data). Whatever decodes a data set with
pydicom must see it decompressed (``withPlainPixels``): pydicom takes
(7FDF,0010) for a private creator, text, and would damage it; such an
object, once changed, is stored decompressed unless its compression code
asks for NKI.
"""

import struct

from pacscore.codecs import nki
from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from pacscore.codecs.transcode import elementHeader
from pacscore.storage.attributes import LONG_LENGTH, DatasetError, walkDataset

NKI_PIXEL_DATA = 0x7FDF0010
PIXEL_DATA = 0x7FE00010
SYNTAXES = frozenset({IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN})
_TAG_BYTES = struct.pack("<HH", 0x7FDF, 0x0010)
_IMPLICIT = struct.Struct("<HHL")
_EXPLICIT = struct.Struct("<HH2sH")
_UNDEFINED = 0xFFFFFFFF


class _Element:
    """A top-level element found in the data set bytes."""

    def __init__(self, tag, vr, start, valueStart, end):
        self.tag, self.vr, self.start, self.valueStart, self.end = tag, vr, start, valueStart, end


def _elementAt(data, syntax, tag):
    """The first top-level element at or past ``tag`` (None at the end)."""
    _, pos = walkDataset(data, syntax, (), 0, tag - 1)
    if pos + 8 > len(data):
        return None
    tag, vr, length, valueStart = elementHeader(data, pos, syntax == IMPLICIT_VR_LITTLE_ENDIAN)
    return _Element(tag, vr, pos, valueStart, None if length == _UNDEFINED else valueStart + length)


def _encodeElement(tag, vr, value, syntax):
    if syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return _IMPLICIT.pack(tag >> 16, tag & 0xFFFF, len(value)) + value
    return _EXPLICIT.pack(tag >> 16, tag & 0xFFFF, vr, 0) + LONG_LENGTH.pack(len(value)) + value


def _wordVR(element):
    return element.vr if element.vr in (b"OB", b"OW") else b"OW"


def holdsNKI(data, syntax):
    """Whether the data set ``data`` (bytes) in ``syntax`` holds NKI
    compressed pixel data."""
    return _nkiElement(data, syntax) is not None


def nkiValue(data, syntax):
    """The value of the NKI compressed pixel data of ``data`` (bytes) in
    ``syntax``, or None when it holds none."""
    element = _nkiElement(data, syntax)
    return None if element is None else data[element.valueStart:element.end]


def _nkiElement(data, syntax):
    if syntax not in SYNTAXES or _TAG_BYTES not in data:
        return None
    try:
        element = _elementAt(data, syntax, NKI_PIXEL_DATA)
        if element is None or element.tag != NKI_PIXEL_DATA or element.end is None:
            return None
        after = _elementAt(data, syntax, PIXEL_DATA)
    except DatasetError:
        return None
    if after is not None and after.tag == PIXEL_DATA:
        return None
    return element if nki.mode(memoryview(data)[element.valueStart:element.end]) else None


def decompressDataset(data, syntax):
    """``data`` with its NKI compressed pixel data as (7FE0,0010) OW (or
    OB, as it was); None when it holds none.  NKIError when it is damaged."""
    element = _nkiElement(data, syntax)
    if element is None:
        return None
    pixels = nki.decompress(memoryview(data)[element.valueStart:element.end])
    following = _elementAt(data, syntax, PIXEL_DATA)  # elements between the two tags stay before it
    insertAt = len(data) if following is None else following.start
    return b"".join((data[:element.start], data[element.end:insertAt],
                     _encodeElement(PIXEL_DATA, _wordVR(element), pixels, syntax), data[insertAt:]))


def withPlainPixels(data, syntax):
    """``data`` with any NKI compressed pixel data decompressed: what a
    step that decodes the data set with pydicom must see (pydicom takes
    (7FDF,0010) for a private creator, text). NKIError when it is damaged."""
    plain = decompressDataset(data, syntax)
    return data if plain is None else plain


def decompressDecoded(dataset, value=None):
    """The same for a data set pydicom has just read (its (7FDF,0010) not
    yet converted): NKI compressed pixel data (``value``, its ``nkiStream``
    when already found) replaced by (7FE0,0010) OW.  NKIError when it is
    damaged."""
    value = nkiStream(dataset) if value is None else value
    if value is not None:
        dataset.add_new(PIXEL_DATA, "OW", nki.decompress(value))
        del dataset[NKI_PIXEL_DATA]


def nkiStream(dataset):
    """The value of the NKI compressed pixel data of a data set pydicom has
    just read (its (7FDF,0010) not yet converted), or None when it holds
    none: a (7FE0,0010) beside it (of a data set read with its pixels), or
    a value without an NKI header."""
    if PIXEL_DATA in dataset or NKI_PIXEL_DATA not in dataset:
        return None
    value = dataset.get_item(NKI_PIXEL_DATA).value
    return value if isinstance(value, bytes) and nki.mode(value) else None


def compressDataset(data, syntax, mode):
    """``data`` with its (7FE0,0010) NKI compressed in ``mode`` (1..4) into
    (7FDF,0010); None when there is nothing to compress (no native Pixel
    Data of 16-bit words, or a (7FDF,0010) already there)."""
    if syntax not in SYNTAXES:
        return None
    try:
        occupied = _elementAt(data, syntax, NKI_PIXEL_DATA)
        pixels = _elementAt(data, syntax, PIXEL_DATA)
    except DatasetError as e:
        raise nki.NKIError(f"the data set cannot be read: {e}") from e
    if occupied is not None and occupied.tag == NKI_PIXEL_DATA:
        return None
    if (pixels is None or pixels.tag != PIXEL_DATA or pixels.end is None
            or pixels.end == pixels.valueStart or (pixels.end - pixels.valueStart) % 2):
        return None
    value = nki.compress(memoryview(data)[pixels.valueStart:pixels.end], mode)
    insertAt = occupied.start if occupied is not None else pixels.start
    return b"".join((data[:insertAt], _encodeElement(NKI_PIXEL_DATA, _wordVR(pixels), value, syntax),
                     data[insertAt:pixels.start], data[pixels.end:]))
