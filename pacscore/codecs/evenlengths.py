"""Values of odd length made even (PS3.5 7.1.1), as DCMTK makes them when
it writes a data set.

pydicom writes an odd-length private OB or UN value (and any value it
left undecoded) as it is, and a data set so written has an odd length;
sent as it is, its last PDV has an odd length, which DCMTK refuses
("Odd Fragment Length"), so that no DCMTK-based peer could take it.
``evenFile`` copies a data set from one file into another with each
such value padded with a trailing 00H (a space for text VRs, a NUL for
UI, as DCMTK pads), the lengths of the sequences and items holding it
made to match, and a deflated stream of odd length with one 00H (PS3.5
A.5); every other byte stays as it is.  It reads element headers and
copies values a piece at a time, so that an object of any size costs
little memory.  Undefined-length values other than SQ, UN (which DCMTK
reads as a sequence in implicit VR) and implicit VR ones (which hold items
of data sets), and Pixel Data, hold fragments.  An odd value of 65535
bytes in a VR with a 16-bit length is written as UN with a 32-bit length,
as DCMTK writes a value too long for its VR.  Callers look for the cheap
sign first, an odd data set length (``isOdd``).
"""

import struct
from io import BytesIO

from pacscore.storage.attributes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, ITEM, ITEM_DELIMITER,
    LONG_VRS, MAX_NESTING, PIXEL_DATA, SEQUENCE_DELIMITER, UNDEFINED_LENGTH, DatasetError, dictionaryVR)

_LONGEST_SHORT_VALUE = 0xFFFE  # the longest even value a 16-bit length holds
_CHUNK = 1 << 20  # bytes of a value copied at a time
_ITEM_TAG = struct.pack("<HH", 0xFFFE, 0xE000)  # how a sequence in a UN value begins (implicit VR LE)
_TEXT_VRS = frozenset(b"AE AS CS DA DS DT IS LO LT PN SH ST TM UC UR UT".split())


def isOdd(length):
    """Whether a data set of ``length`` bytes must be made even."""
    return length % 2 == 1


def evenLengths(data, syntax):
    """``(data, padded)``: ``evenFile`` of the data set ``data`` (bytes), as
    bytes; ``data`` itself and [] when nothing is odd."""
    out = BytesIO()
    padded = evenFile(BytesIO(data), 0, len(data), syntax, out)
    return (out.getvalue(), padded) if padded else (data, [])


def evenFile(source, start, length, syntax, out):
    """Write the data set of ``length`` bytes at ``start`` of the file
    ``source`` (no file meta) in ``syntax`` into ``out`` (a seekable file,
    from where it stands) with its values (and encapsulated fragments) of
    odd length padded to an even length; what was padded (element tags as
    "(gggg,eeee)", or "the deflated stream").  DatasetError when it cannot
    be walked."""
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        evener = _Evener(source, start, length, out, "<")
        evener.copy(0, length)
        if not isOdd(length):
            return []
        out.write(b"\x00")
        return ["the deflated stream"]
    evener = _Evener(source, start, length, out, ">" if syntax == EXPLICIT_VR_BIG_ENDIAN else "<")
    evener.elements(0, length, syntax == IMPLICIT_VR_LITTLE_ENDIAN, 0)
    return evener.padded


def _padding(tag, vr):
    """The byte an odd value of ``tag`` (of VR ``vr``; None: implicit) is padded with."""
    if vr is None:
        vr = b"LO" if tag >> 16 & 1 and 0x10 <= tag & 0xFFFF <= 0xFF else dictionaryVR(tag)  # a private creator
    return b" " if vr in _TEXT_VRS else b"\x00"


def _name(tag):
    return f"({tag >> 16:04x},{tag & 0xFFFF:04x})"


class _Evener:
    """Copies the data set of ``length`` bytes at ``start`` of ``source``
    (in byte order ``order``) into ``out``, odd values padded; positions
    are offsets in the data set."""

    def __init__(self, source, start, length, out, order):
        self.source = source
        self.start = start
        self.length = length
        self.out = out
        self.implicitHeader = struct.Struct(order + "HHL")
        self.explicitHeader = struct.Struct(order + "HH2sH")
        self.long = struct.Struct(order + "L")
        self.padded = []

    def _read(self, pos, size):
        if pos + size > self.length:
            raise DatasetError(f"the data set is truncated at offset {pos}")
        self.source.seek(self.start + pos)
        data = self.source.read(size)
        if len(data) != size:
            raise DatasetError(f"the data set is truncated at offset {pos}")
        return data

    def copy(self, pos, end):
        """Copy the bytes from ``pos`` to ``end`` as they are, a piece at a time."""
        while pos < end:
            size = min(_CHUNK, end - pos)
            self.out.write(self._read(pos, size))
            pos += size

    def _header(self, tag, vr, length, implicit):
        if implicit or vr is None:
            return self.implicitHeader.pack(tag >> 16, tag & 0xFFFF, length)
        if vr in LONG_VRS:
            return self.explicitHeader.pack(tag >> 16, tag & 0xFFFF, vr, 0) + self.long.pack(length)
        return self.explicitHeader.pack(tag >> 16, tag & 0xFFFF, vr, length)

    def _rewritten(self, pos, valuePos, length, write, *args):
        """Copy the header from ``pos`` to ``valuePos`` (ending in a 32-bit
        length, ``length``), then ``write(*args)`` its value; the length
        made that of what was written."""
        self.copy(pos, valuePos)
        mark = self.out.tell()
        write(*args)
        written = self.out.tell() - mark
        if written != length:
            end = self.out.tell()
            self.out.seek(mark - self.long.size)
            self.out.write(self.long.pack(written))
            self.out.seek(end)

    def elements(self, pos, end, implicit, depth):
        """Write the elements from ``pos`` to ``end`` (None: to an item
        delimiter, which is copied too) evened; where they end."""
        while end is None or pos < end:
            head = self._read(pos, 8)
            group, element, length = self.implicitHeader.unpack(head)
            tag, vr = group << 16 | element, None
            valuePos = pos + 8
            if tag == ITEM_DELIMITER:
                self.out.write(head)
                return valuePos
            if not implicit and group != 0xFFFE:
                vr = head[4:6]
                if vr in LONG_VRS:
                    length = self.long.unpack(self._read(valuePos, 4))[0]
                    valuePos = pos + 12
                else:
                    length = self.explicitHeader.unpack(head)[3]
            if length == UNDEFINED_LENGTH:
                self.copy(pos, valuePos)
                datasets = tag != PIXEL_DATA and vr in (None, b"SQ", b"UN")  # else fragments (encapsulated)
                pos = self.items(valuePos, None, implicit or vr == b"UN", depth, tag, datasets)
                continue
            valueEnd = valuePos + length
            if valueEnd > self.length:
                raise DatasetError(f"element ({group:04X},{element:04X}) at offset {pos} ends past the data set")
            if self._sequence(tag, vr, pos, valuePos, valueEnd, implicit, depth):
                pass
            elif length % 2:
                written = vr if implicit or vr in LONG_VRS or length < _LONGEST_SHORT_VALUE else b"UN"
                self.out.write(self._header(tag, written, length + 1, implicit))
                self.copy(valuePos, valueEnd)
                self.out.write(_padding(tag, vr))
                self.padded.append(_name(tag) if written == vr else f"{_name(tag)} (written as UN: {length + 1} "
                                   f"bytes are too many for its VR {vr.decode('ascii', 'replace')})")
            else:
                self.copy(pos, valueEnd)
            pos = valueEnd
        return pos

    def _sequence(self, tag, vr, pos, valuePos, valueEnd, implicit, depth):
        """Whether the defined-length value of ``tag`` (from ``valuePos`` to
        ``valueEnd``, its header at ``pos``) is a sequence (SQ, or a UN or
        private value of implicit VR whose bytes are items), then written
        evened."""
        length = valueEnd - valuePos
        if vr == b"SQ" or (vr is None and not tag >> 16 & 1 and dictionaryVR(tag) == b"SQ"):
            self._rewritten(pos, valuePos, length, self.items, valuePos, valueEnd, implicit, depth, tag, True)
            return True
        if (vr == b"UN" or vr is None and tag >> 16 & 1) and length >= 4 and self._read(valuePos, 4) == _ITEM_TAG:
            inner = _Evener(self.source, self.start, self.length, self.out, "<")  # PS3.5 6.2.2: implicit VR LE
            mark = self.out.tell()
            try:
                self._rewritten(pos, valuePos, length, inner.items, valuePos, valueEnd, True, depth, tag, True)
            except DatasetError:
                self.out.seek(mark)  # bytes of another kind: a value like any other
                self.out.truncate()
                return False
            self.padded += inner.padded
            return True
        return False

    def items(self, pos, end, implicit, depth, tag, datasets):
        """Write the items of ``tag`` from ``pos`` to ``end`` (None: to a
        sequence delimiter, which is copied too) evened, data sets when
        ``datasets``, else fragments; where they end."""
        if depth >= MAX_NESTING:
            raise DatasetError(f"sequences nested more than {MAX_NESTING} deep at offset {pos}")
        while end is None or pos < end:
            group, element, length = self.implicitHeader.unpack(self._read(pos, 8))
            itemTag = group << 16 | element
            if itemTag == SEQUENCE_DELIMITER:
                self.copy(pos, pos + 8)
                return pos + 8
            if itemTag != ITEM:
                raise DatasetError(f"expected an item at offset {pos}, found ({group:04X},{element:04X})")
            if length == UNDEFINED_LENGTH:
                self.copy(pos, pos + 8)
                pos = self.elements(pos + 8, None, implicit, depth + 1)
                continue
            itemEnd = pos + 8 + length
            if itemEnd > self.length or end is not None and itemEnd > end:
                raise DatasetError(f"the item at offset {pos} ends past its sequence")
            if datasets:
                self._rewritten(pos, pos + 8, length, self.elements, pos + 8, itemEnd, implicit, depth + 1)
            elif length % 2:
                self.out.write(self.implicitHeader.pack(0xFFFE, 0xE000, length + 1))
                self.copy(pos + 8, itemEnd)
                self.out.write(b"\x00")
                self.padded.append(_name(tag))
            else:
                self.copy(pos, itemEnd)
            pos = itemEnd
        return pos
