"""Values of odd length made even (PS3.5 7.1.1), as DCMTK makes them when
it writes a data set.

pydicom writes an odd-length private OB or UN value (and any value it
left undecoded) as it is, and a data set so written has an odd length;
sent as it is, its last PDV has an odd length, which DCMTK refuses
("Odd Fragment Length"), so that no DCMTK-based peer could take it.
``evenLengths`` pads each such value with a trailing 00H (a space for
text VRs, a NUL for UI, as DCMTK pads), the lengths of the sequences and
items holding it made to match, and a deflated stream of odd length
with one 00H (PS3.5 A.5); every other byte stays as it is.  Callers
look for the cheap sign first, an odd data set length (``isOdd``).
"""

import struct

from pydicom.datadict import dictionary_VR

from pacscore.storage.attributes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, LONG_VRS, PIXEL_DATA,
    DatasetError)

_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF
_MAX_NESTING = 64
_ITEM_TAG = struct.pack("<HH", 0xFFFE, 0xE000)  # how a sequence in a UN value begins (implicit VR LE)
_TEXT_VRS = frozenset(b"AE AS CS DA DS DT IS LO LT PN SH ST TM UC UR UT".split())


def isOdd(length):
    """Whether a data set of ``length`` bytes must be made even."""
    return length % 2 == 1


def evenLengths(data, syntax):
    """``(data, padded)``: the data set ``data`` (bytes, no file meta) in
    ``syntax`` with its values (and encapsulated fragments) of odd length
    padded to an even length, and what was padded (element tags as
    "(gggg,eeee)", or "the deflated stream"); ``data`` itself and [] when
    nothing is odd.  DatasetError when it cannot be walked."""
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return (data + b"\x00", ["the deflated stream"]) if isOdd(len(data)) else (data, [])
    evener = _Evener(memoryview(data), ">" if syntax == EXPLICIT_VR_BIG_ENDIAN else "<")
    out, _ = evener.elements(0, len(data), syntax == IMPLICIT_VR_LITTLE_ENDIAN, 0)
    if not evener.padded:
        return data, []
    return bytes(out), [f"({tag >> 16:04x},{tag & 0xFFFF:04x})" for tag in evener.padded]


def _padding(tag, vr):
    """The byte an odd value of ``tag`` (of VR ``vr``; None: implicit) is padded with."""
    if vr is None:
        if tag >> 16 & 1:
            vr = b"LO" if 0x10 <= tag & 0xFFFF <= 0xFF else b"UN"  # a private creator, else unknown
        else:
            try:
                vr = dictionary_VR(tag).encode("ascii")
            except KeyError:
                vr = b"UN"
    if vr == b"UI":
        return b"\x00"
    return b" " if vr in _TEXT_VRS else b"\x00"


class _Evener:
    """Copies a data set held in ``raw`` (in byte order ``order``), odd values padded."""

    def __init__(self, raw, order):
        self.raw = raw
        self.implicitHeader = struct.Struct(order + "HHL")
        self.explicitHeader = struct.Struct(order + "HH2sH")
        self.long = struct.Struct(order + "L")
        self.padded = []

    def _unpack(self, header, pos):
        if pos + header.size > len(self.raw):
            raise DatasetError(f"the data set is truncated at offset {pos}")
        return header.unpack_from(self.raw, pos)

    def _header(self, tag, vr, length, implicit):
        if implicit or vr is None:
            return self.implicitHeader.pack(tag >> 16, tag & 0xFFFF, length)
        if vr in LONG_VRS:
            return self.explicitHeader.pack(tag >> 16, tag & 0xFFFF, vr, 0) + self.long.pack(length)
        return self.explicitHeader.pack(tag >> 16, tag & 0xFFFF, vr, length)

    def elements(self, pos, end, implicit, depth):
        """The elements from ``pos`` to ``end`` (None: to an item
        delimiter, which is copied too) evened, and where they end."""
        raw, out = self.raw, bytearray()
        while end is None or pos < end:
            group, element, length = self._unpack(self.implicitHeader, pos)
            tag, vr = group << 16 | element, None
            valuePos = pos + 8
            if tag == _ITEM_DELIMITER:
                out += raw[pos:valuePos]
                return out, valuePos
            if not implicit and group != 0xFFFE:
                vr = raw[pos + 4:pos + 6].tobytes()
                if vr in LONG_VRS:
                    length = self._unpack(self.long, pos + 8)[0]
                    valuePos = pos + 12
                else:
                    length = self._unpack(self.explicitHeader, pos)[3]
            if length == _UNDEFINED_LENGTH:
                out += raw[pos:valuePos]
                body, pos = self.items(valuePos, None, implicit or vr == b"UN", depth, tag != PIXEL_DATA)
                out += body
                continue
            valueEnd = valuePos + length
            if valueEnd > len(raw):
                raise DatasetError(f"element ({group:04X},{element:04X}) at offset {pos} ends past the data set")
            body = self._sequence(tag, vr, valuePos, valueEnd, implicit, depth)
            if body is not None:
                out += raw[pos:valuePos] if len(body) == length else self._header(tag, vr, len(body), implicit)
                out += body
            elif length % 2 and (implicit or vr in LONG_VRS or length < 0xFFFF):
                out += self._header(tag, vr, length + 1, implicit) + raw[valuePos:valueEnd] + _padding(tag, vr)
                self.padded.append(tag)
            else:
                out += raw[pos:valueEnd]
            pos = valueEnd
        return out, pos

    def _sequence(self, tag, vr, start, end, implicit, depth):
        """The items of the defined-length value of ``tag`` evened when it
        is a sequence (SQ, or a UN or private value of implicit VR whose
        bytes are items), else None."""
        if vr == b"SQ" or (vr is None and not tag >> 16 & 1 and _isSQ(tag)):
            return self.items(start, end, implicit, depth, True)[0]
        if (vr == b"UN" or vr is None and tag >> 16 & 1) and self.raw[start:start + 4] == _ITEM_TAG:
            inner = _Evener(self.raw, "<")  # PS3.5 6.2.2: implicit VR little endian
            try:
                body = inner.items(start, end, True, depth, True)[0]
            except DatasetError:
                return None  # bytes of another kind: a value like any other
            self.padded += inner.padded
            return body
        return None

    def items(self, pos, end, implicit, depth, sequence):
        """The items from ``pos`` to ``end`` (None: to a sequence
        delimiter, which is copied too) evened, data sets when a
        ``sequence``, else fragments; and where they end."""
        if depth >= _MAX_NESTING:
            raise DatasetError(f"sequences nested more than {_MAX_NESTING} deep at offset {pos}")
        raw, out = self.raw, bytearray()
        while end is None or pos < end:
            group, element, length = self._unpack(self.implicitHeader, pos)
            tag = group << 16 | element
            if tag == _SEQUENCE_DELIMITER:
                out += raw[pos:pos + 8]
                return out, pos + 8
            if tag != _ITEM:
                raise DatasetError(f"expected an item at offset {pos}, found ({group:04X},{element:04X})")
            if length == _UNDEFINED_LENGTH:
                out += raw[pos:pos + 8]
                body, pos = self.elements(pos + 8, None, implicit, depth + 1)
                out += body
                continue
            itemEnd = pos + 8 + length
            if itemEnd > len(raw) or end is not None and itemEnd > end:
                raise DatasetError(f"the item at offset {pos} ends past its sequence")
            if sequence:
                body = self.elements(pos + 8, itemEnd, implicit, depth + 1)[0]
            else:
                body = raw[pos + 8:itemEnd].tobytes() + (b"\x00" if length % 2 else b"")
                if length % 2:
                    self.padded.append(PIXEL_DATA)
            out += raw[pos:pos + 8] if len(body) == length else self.implicitHeader.pack(0xFFFE, 0xE000, len(body))
            out += body
            pos = itemEnd
        return out, pos


def _isSQ(tag):
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False
