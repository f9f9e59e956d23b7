"""Read index attributes from a dataset as received, without parsing it.

A C-STORE dataset arrives as bytes in the negotiated transfer syntax. The
index and FileNameSyntax need some 40 top-level attributes; a pydicom parse
costs 0.3-0.7 ms per object, this walker about a fifth of that (some 0.4 us
per element walked, 0.5 us per value converted): it steps from element
header to element header, skips sequences of defined length (but in a
strict walk of data as received) and large values without looking inside
them, stops after the largest requested tag and never reads
(7FE0,0010) Pixel Data. A dataset spooled to disk is read through a small
window, seeking past what is not needed.

Values come back as the strings pydicom gives: ``str()`` of each value
joined with backslashes, text decoded with the (0008,0005) Specific
Character Set through pydicom's own charset functions, without the escape
sequences pydicom leaves in ISO 2022 IR 58 text (``codeextensions``); text
not valid in that character set reads as Latin-1, where pydicom puts U+FFFD
in the place of each bad byte, so that the value stays findable, and the
caller may ask which values those were, which terms of the Specific
Character Set pydicom does not know (their text read as Latin-1 too) and
which values are not ASCII in a data set without one (``TextNotes``).
pydicom stays the reference; the tests compare both on every file pydicom
ships.
"""

import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.valuerep import CUSTOMIZABLE_CHARSET_VR
from pydicom.values import convert_value
from twisted.logger import Logger

from pacscore.dicom import integerstrings
from pacscore.dicom.charsetterms import convert_encodings, unknownTerms
from pacscore.dicom.pydicomchecks import invalidTexts
from pacscore.storage.codeextensions import notPlain, textFits, textOrLatin1

integerstrings.install()  # an IS no integer holds (inf, 1e999) read as text, as abc is

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

SPECIFIC_CHARACTER_SET = 0x00080005
PIXEL_REPRESENTATION = 0x00280103
PIXEL_DATA = 0x7FE00010

ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
MAX_NESTING = 64
_CHUNK = 65536
_UNBOUNDED = 1 << 62

# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2),
# and that little endian length.
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
LONG_LENGTH = struct.Struct("<L")
_SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())
_TEXT_DELIMITERS = {0x0D, 0x0A, 0x09, 0x0C}  # pydicom's TEXT_VR_DELIMS
_BINARY_VRS = frozenset(b"US SS UL SL FL FD SV UV".split())
_CHARSET_VRS = frozenset(vr.encode() for vr in CUSTOMIZABLE_CHARSET_VR)  # text in the Specific Character Set
# the VRs of the values noted when not valid in their VR (TextNotes.invalid):
# those of a format (a number, a date, a code, a UID), not those pydicom
# checks the length of alone (LO, SH, PN ...: the index cuts an overlong
# value to its column, saying so), each check costing a stored object time
_CHECKED_VRS = frozenset(b"AE AS CS DA DS DT IS TM UI".split())
_NOT_TEXT = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")  # control bytes but TAB LF FF CR ESC

log = Logger()


class DatasetError(Exception):
    """The dataset cannot be walked: truncated, impossible lengths or structure.

    The message says what is wrong and at which byte offset of the dataset.
    """


def deflated(parts):
    """The byte strings ``parts`` deflated (PS3.5 A.5: raw deflate), padded
    with a NUL to an even length, which DCMTK's readers ask for."""
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    data = b"".join([deflater.compress(part) for part in parts] + [deflater.flush()])
    return data + b"\x00" if len(data) % 2 else data


_MOST_INFLATION = 1032  # bytes deflate makes of one at most (RFC 1951: 258 of 2 bits)


def inflated(data, limit=None):
    """The raw deflate stream ``data`` (PS3.5 A.5) inflated whole;
    DatasetError if it is corrupt, truncated, or inflates to more than
    ``limit`` bytes (None: any size), found first by inflating it through
    a small window (``InflateWindow``), holding none of it: deflate makes
    1 GB of zeros 1 MB; not looked at when ``data`` is too short to pass
    ``limit`` (deflate makes at most 1032 bytes of one)."""
    if limit is not None and len(data) * _MOST_INFLATION > limit:
        window = _window(data, True)
        size = 0
        while size <= limit and (piece := window.inflate(_CHUNK)):
            size += len(piece)
        if size > limit:
            raise DatasetError(f"the deflated data set inflates to more than {limit >> 20} MB")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(data) + inflater.flush()
    except zlib.error as e:
        raise DatasetError(f"the deflated data set is corrupt: {e}") from e
    if not inflater.eof:
        raise DatasetError("the deflated data set is truncated")
    return raw


class _Layout:
    """The struct formats of one byte order."""

    def __init__(self, order):
        self.order = order
        self.implicitHeader = struct.Struct(order + "HHL").unpack_from
        self.explicitHeader = struct.Struct(order + "HH2sH").unpack_from
        self.length = struct.Struct(order + "L").unpack_from


_LITTLE = _Layout("<")
_BIG = _Layout(">")


# -- value conversion: what str() of pydicom's value gives ------------------

def _keepBlank(value):
    # pydicom's IS()/DS() keep an all-blank value as it is, strip the others.
    stripped = value.strip()
    return stripped if stripped else value


def _ae(raw, encodings, layout):
    return "\\".join(v.strip() for v in raw.decode("latin-1").split("\\"))


def _string(raw, encodings, layout):
    return raw.decode("latin-1").rstrip(" \x00")


def _ui(raw, encodings, layout):
    # pydicom: multi_string's rstrip, then UID() str.strip()s each value (any white space)
    return "\\".join(v.strip() for v in raw.decode("latin-1").rstrip(" \x00").split("\\"))


_PLAIN_IS = re.compile(r" *[+-]?[0-9]+ *\Z")
_PLAIN_DS = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *\Z")


def _viaPydicom(vr, raw, encodings, layout):
    """The rare value that is no plain number: ask pydicom (its IS()/DS()
    rules, then its retry as SH; an IS number no integer can hold, ``inf``,
    ``1e999``, too: ``pacscore.dicom.integerstrings``), kept as text as
    ``abc`` and ``nan`` are; DatasetError where pydicom raises."""
    element = RawDataElement(BaseTag(0), vr, len(raw), raw, 0, False, layout is _LITTLE)
    try:
        value = convert_value(vr, element, encodings)
    except Exception as e:
        raise DatasetError(f"{vr} value {raw[:32]!r} cannot be read: {e}")
    if isinstance(value, bytes):
        raise DatasetError(f"{vr} value {raw[:32]!r} cannot be read")
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _plain(pattern, text):
    """Whether each value of ``text`` is blank or a plain number (``pattern``),
    which reads the same without pydicom."""
    return all(pattern.match(v) or not v.strip(" ") for v in text.split("\\"))


def _ds(raw, encodings, layout):
    text = raw.decode("latin-1").strip().rstrip(" \x00")
    if not _plain(_PLAIN_DS, text):
        return _viaPydicom("DS", raw, encodings, layout)
    return "\\".join(_keepBlank(v) for v in text.split("\\"))


def _is(raw, encodings, layout):
    text = raw.decode("latin-1").rstrip(" \x00")
    if not _plain(_PLAIN_IS, text):
        return _viaPydicom("IS", raw, encodings, layout)
    return "\\".join(_keepBlank(v) for v in text.split("\\"))


def _ur(raw, encodings, layout):
    return raw.decode("latin-1").rstrip()


def _multiText(raw, encodings, layout):
    text = textOrLatin1(raw, encodings, _TEXT_DELIMITERS)
    if "\\" not in text:
        return text.rstrip("\x00 ")
    return "\\".join(v.rstrip("\x00 ") for v in text.split("\\"))


def _singleText(raw, encodings, layout):
    return textOrLatin1(raw, encodings, _TEXT_DELIMITERS).rstrip("\x00 ")


def _personName(raw, encodings, layout):
    text = textOrLatin1(raw.rstrip(b"\x00 "), encodings, _TEXT_DELIMITERS)
    if "=" not in text:
        return text
    names = []
    for name in text.split("\\"):
        groups = name.split("=")
        while groups and not groups[-1]:  # PersonName drops trailing empty groups
            groups.pop()
        names.append("=".join(groups))
    return "\\".join(names)


def _numbers(code):
    size = struct.calcsize("<" + code)
    single = {"<": struct.Struct("<" + code).unpack, ">": struct.Struct(">" + code).unpack}

    def convert(raw, encodings, layout):
        if len(raw) % size:  # pydicom raises BytesLengthException
            raise DatasetError(f"a {code!r} value of {len(raw)} bytes")
        if len(raw) == size:
            return str(single[layout.order](raw)[0])
        values = struct.unpack_from(f"{layout.order}{len(raw) // size}{code}", raw)
        return "\\".join(map(str, values))

    return convert


_CONVERTERS = {
    b"AE": _ae,
    b"AS": _string, b"CS": _string, b"DA": _string, b"DT": _string,
    b"TM": _string, b"UI": _ui,
    b"DS": _ds, b"IS": _is, b"UR": _ur,
    b"LO": _multiText, b"SH": _multiText, b"UC": _multiText,
    b"LT": _singleText, b"ST": _singleText, b"UT": _singleText,
    b"PN": _personName,
    b"US": _numbers("H"), b"SS": _numbers("h"), b"UL": _numbers("L"),
    b"SL": _numbers("l"), b"FL": _numbers("f"), b"FD": _numbers("d"),
    b"SV": _numbers("q"), b"UV": _numbers("Q"),
}


def _columnValue(vr, raw, encodings, layout):
    """A value of unknown VR read as its dicom.sql column's ``vr``: "" where
    it is no such value (not text, or no whole number of binary numbers),
    as a private tag may hold another vendor's data (PS3.5 7.8.1), so that
    the column stays empty and the store goes on."""
    if vr not in _BINARY_VRS and _NOT_TEXT.search(raw.rstrip(b"\x00 ")):
        log.debug("A value of unknown VR read as {vr} holds control bytes: left out", vr=vr.decode())
        return ""
    try:
        return _CONVERTERS[vr](raw, encodings, layout)
    except DatasetError as e:
        log.debug("A value of unknown VR read as {vr} cannot be: {error}; left out", vr=vr.decode(), error=e)
        return ""


_knownVRs = {}
"""The VRs ``dictionaryVR`` found, by tag: only tags pydicom's dictionary
knows, so that a peer sending any number of private or unknown tags does
not grow it."""


def dictionaryVR(tag):
    """The VR pydicom's dictionary gives ``tag``, as bytes, an ambiguous one
    as it spells it (b"US or SS", see ``_resolvedVR``); UN for private and
    unknown tags."""
    vr = _knownVRs.get(tag)
    if vr is None:
        try:
            vr = dictionary_VR(tag).encode("ascii")
        except KeyError:
            return b"UN"
        _knownVRs[tag] = vr
    return vr


def _resolvedVR(vr, signed):
    """The VR of a value of the ambiguous dictionary VR ``vr`` (b"US or SS"
    ...): SS where it may be when Pixel Representation says the pixels are
    ``signed`` (PS3.5 Annex A, as pydicom's correct_ambiguous_vr), else
    the first."""
    choices = vr.split(b" or ")
    return b"SS" if signed and b"SS" in choices else choices[0]


def _isSigned(pixelRepresentation, layout):
    """Whether a found (0028,0103) Pixel Representation ``(vr, raw)`` is 1."""
    return pixelRepresentation is not None and int.from_bytes(
        pixelRepresentation[1], "little" if layout is _LITTLE else "big") == 1


@lru_cache(maxsize=256)
def _encodings(specificCharacterSet):
    """Python codecs for a (0008,0005) value, as pydicom's Dataset picks them.

    A value pydicom cannot even look up (a NUL in it) means the default
    character set, where pydicom would raise.
    """
    values = specificCharacterSet.split("\\")
    try:
        return convert_encodings(values[0] if len(values) == 1 else values)
    except ValueError as e:  # pydicom's dcmread() raises on it too
        raise DatasetError(f"(0008,0005) {specificCharacterSet!r} cannot be used: {e}")


# -- where the bytes come from ----------------------------------------------

class _BytesWindow:
    """The whole dataset in memory."""

    def __init__(self, data):
        self.buf = data if isinstance(data, bytes) else memoryview(data).cast("B")
        self.base = 0
        self.limit = self.total = len(self.buf)

    def load(self, pos, size):
        """Nothing to load: everything there is, is in ``buf``."""


class _FileWindow:
    """A dataset in a seekable binary file, read a chunk at a time."""

    def __init__(self, fileobj):
        self.file = fileobj
        self.start = fileobj.tell()
        self.total = fileobj.seek(0, 2) - self.start
        self.buf = b""
        self.base = self.limit = 0

    def load(self, pos, size):
        """Make ``buf`` start at ``pos`` and hold ``size`` bytes if the file has them."""
        self.file.seek(self.start + pos)
        self.buf = self.file.read(min(max(size, _CHUNK), max(self.total - pos, 0)))
        self.base = pos
        self.limit = pos + len(self.buf)


class InflateWindow:
    """A deflated dataset (raw deflate, PS3.5 A.5) read by
    ``readCompressed(size)``, inflated as the walk goes, or a piece at a
    time by ``inflate``.

    Only moves forward: skipped values are inflated and dropped a chunk at
    a time, so memory stays small whatever the dataset's size.
    """

    def __init__(self, readCompressed):
        self.readCompressed = readCompressed
        self.inflater = zlib.decompressobj(-15)
        self.buf = b""
        self.base = self.limit = 0
        self.total = _UNBOUNDED
        self.inflatedBytes = 0

    def inflate(self, maxLength):
        """Up to ``maxLength`` more inflated bytes; b"" at the end of the
        stream; DatasetError if it is corrupt or truncated."""
        inflater = self.inflater
        while not inflater.eof:
            data = inflater.unconsumed_tail or self.readCompressed(_CHUNK)
            try:
                if not data:
                    out = inflater.flush()
                    if not out:
                        raise DatasetError(
                            f"the deflated data set is truncated: the deflate stream does not end "
                            f"(inflated up to offset {self.inflatedBytes})")
                else:
                    out = inflater.decompress(data, maxLength)
            except zlib.error as e:
                raise DatasetError(
                    f"the deflated data set is corrupt (inflated up to offset {self.inflatedBytes}): {e}") from e
            if out:
                self.inflatedBytes += len(out)
                return out
        return b""

    def load(self, pos, size):
        """Make ``buf`` start at ``pos`` and hold ``size`` bytes if the stream has them."""
        if pos < self.base:
            raise DatasetError(f"cannot go back to offset {pos} in a deflated dataset")
        if pos < self.limit:
            data = self.buf[pos - self.base:]
        else:
            data = b""
            skip = pos - self.limit
            while skip > 0:
                out = self.inflate(min(skip, _CHUNK))
                if not out:
                    raise DatasetError(
                        f"deflated dataset ends at offset {pos - skip}, before offset {pos}")
                data = out[skip:]  # not empty only if this chunk ran past pos
                skip -= len(out)
        pieces = [data]
        have = len(data)
        while have < size:
            out = self.inflate(max(size - have, _CHUNK))
            if not out:
                break
            pieces.append(out)
            have += len(out)
        self.buf = b"".join(pieces)
        self.base = pos
        self.limit = pos + len(self.buf)


# -- the walker ---------------------------------------------------------------

class _Walker:
    """Steps through element headers of one dataset held by a window;
    ``strict`` (data as received): the items of defined-length sequences
    are walked too, as those of undefined length always are; with
    ``encapsulated`` (the data set's syntax encapsulates its pixels), a
    top-level Pixel Data of defined length is a DatasetError."""

    def __init__(self, window, layout, strict=False, encapsulated=False):
        self.window = window
        self.layout = layout
        self.total = window.total
        self.strict = strict
        self.encapsulated = encapsulated

    def need(self, pos, size):
        """Make bytes [pos, pos + size) available; DatasetError if there are none."""
        window = self.window
        if pos < window.base or pos + size > window.limit:
            window.load(pos, size)
            if pos + size > window.limit:
                raise DatasetError(
                    f"dataset truncated: {size} bytes needed at offset {pos}, "
                    f"{max(window.limit - pos, 0)} there")
        return pos - window.base

    def atEnd(self, pos):
        """True when the dataset ends exactly at ``pos``."""
        window = self.window
        if window.base <= pos < window.limit:
            return False
        window.load(pos, 1)
        return pos >= window.limit

    def read(self, pos, length):
        offset = self.need(pos, length)
        return bytes(self.window.buf[offset:offset + length])

    def looksImplicit(self, pos, assumeImplicit):
        """pydicom's test: does the first element at ``pos`` carry a VR?"""
        window = self.window
        if pos < window.base or pos + 6 > window.limit:
            window.load(pos, 6)
            if pos + 6 > window.limit:
                return assumeImplicit
        vr = window.buf[pos - window.base + 4:pos - window.base + 6]
        return not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)

    def header(self, pos, implicit):
        """(tag, vr, length, valuePos) of the element at ``pos``.

        ``vr`` is None for implicit VR. As pydicom does, an explicit VR
        element whose VR is not two letters is read as implicit VR, one of
        two letters PS3.5 does not define with a 2-byte length (DCMTK reads
        either with a 4-byte one): a DatasetError in a strict walk.
        """
        offset = self.need(pos, 8)
        buf = self.window.buf
        layout = self.layout
        if implicit:
            group, element, length = layout.implicitHeader(buf, offset)
            return group << 16 | element, None, length, pos + 8
        group, element, vr, length = layout.explicitHeader(buf, offset)
        if vr in LONG_VRS and group != 0xFFFE:
            offset = self.need(pos, 12)
            return group << 16 | element, vr, layout.length(self.window.buf, offset + 8)[0], pos + 12
        if group != 0xFFFE and vr not in _SHORT_VRS and self.strict:
            raise DatasetError(f"element ({group:04X},{element:04X}) at offset {pos} has VR "
                               f"{vr.decode('latin-1')!r}, which PS3.5 table 6.2-1 does not define")
        if group != 0xFFFE and (vr in _SHORT_VRS or b"AA" <= vr <= b"ZZ"):
            return group << 16 | element, vr, length, pos + 8
        return group << 16 | element, None, layout.length(buf, offset + 4)[0], pos + 8

    def end(self, tag, pos, length, valuePos):
        """Where the element ends; DatasetError if past the end of the dataset."""
        end = valuePos + length
        if end > self.total:
            raise DatasetError(
                f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) at offset {pos} has "
                f"length {length}, past the end of the dataset ({self.total} bytes)")
        return end

    def isSequence(self, tag, vr, valuePos):
        """Whether pydicom reads the items of the undefined-length element
        ``tag`` as data sets (a sequence; UN counts as one) rather than as
        raw fragments (encapsulated pixel data): by its VR, else by the
        dictionary, else by whether an item follows."""
        if vr is None:
            vr = dictionaryVR(tag)
            if vr == b"UN":
                group, element, _ = self.layout.implicitHeader(self.window.buf, self.need(valuePos, 8))
                return group << 16 | element == ITEM
        return vr in (b"SQ", b"UN")

    def isDefinedSequence(self, tag, vr):
        """Whether a strict walk walks the items of the defined-length
        element ``tag``: a sequence by its VR, else by the dictionary (not
        for private tags, which readers take as UN)."""
        if not self.strict:
            return False
        if vr is None:
            return not tag & 0x10000 and dictionaryVR(tag) == b"SQ"
        return vr == b"SQ"

    def skipItems(self, pos, implicit, depth, sequence, end=None):
        """Skip the items of a value starting at ``pos``: of an undefined-length
        one (a ``sequence`` or encapsulated pixel data) up to its delimiter,
        of a defined-length sequence up to ``end``, which no item may cross;
        return where it ends.  Anything but an item is a DatasetError
        (readers lose their way there).  The elements of a sequence's items
        are walked, as pydicom reads them."""
        if depth > MAX_NESTING:
            raise DatasetError(f"sequences nested more than {MAX_NESTING} deep at offset {pos}")
        itemHeader = self.layout.implicitHeader
        while pos != end:
            offset = self.need(pos, 8)
            group, element, length = itemHeader(self.window.buf, offset)
            tag = group << 16 | element
            if tag == SEQUENCE_DELIMITER and (end is None or pos + 8 == end and length == 0):
                return pos + 8  # a defined-length sequence may end in one too (DCMTK, pydicom read it)
            if tag != ITEM:
                raise DatasetError(
                    f"expected an item{' or a sequence delimiter' if end is None else ''} at offset {pos}, "
                    f"found ({group:04X},{element:04X})")
            start = pos
            if length == UNDEFINED_LENGTH:
                pos = self.skipItem(pos + 8, implicit, depth + 1)
            elif sequence:
                pos = self.skipItem(pos + 8, implicit, depth + 1, self.end(tag, pos, length, pos + 8))
            else:
                pos = self.end(tag, pos, length, pos + 8)
            if end is not None and pos > end:
                raise DatasetError(f"the item at offset {start} crosses the end of its sequence at offset {end}")
        return pos

    def skipItem(self, pos, implicit, depth, end=None):
        """Skip the elements of an item: up to its delimiter, or of a
        defined-length item up to ``end``, which no element may cross."""
        if not implicit and pos != end:  # an item may be implicit VR inside explicit VR (pydicom)
            implicit = self.looksImplicit(pos, implicit)
        while pos != end:
            start = pos
            tag, vr, length, pos = self.header(pos, implicit)
            if tag == ITEM_DELIMITER and (end is None or pos == end):
                return pos
            if length == UNDEFINED_LENGTH:
                pos = self.skipItems(pos, implicit, depth, self.isSequence(tag, vr, pos))
            elif self.isDefinedSequence(tag, vr):
                pos = self.skipItems(pos, implicit, depth, True, self.end(tag, start, length, pos))
            else:
                pos = self.end(tag, start, length, pos)
            if end is not None and (pos > end or tag >> 16 == 0xFFFE):
                raise DatasetError(
                    f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) at offset {start} does not fit "
                    f"in its item, which ends at offset {end}")
        return pos

    def collect(self, implicit, wanted, firstTag, lastTag, ascending, unknownVRs, fromColumns):
        """Walk the top level; return ({tag: (vr, raw)}, stop offset); add
        the tags whose VR ``unknownVRs`` gave to the set ``fromColumns``.

        Stops at the end of the dataset or before the first element outside
        ``firstTag``..``lastTag`` (the offset returned); ``ascending``,
        ``strict`` and ``unknownVRs``: see ``walkDataset``.  A VR may be
        an ambiguous dictionary one (b"US or SS").
        """
        found = {}
        pos = 0
        previous = -1
        if not self.atEnd(0):
            looksImplicit = self.looksImplicit(0, implicit)
            if self.strict and looksImplicit != implicit:
                raise DatasetError(f"the data set is encoded with {'implicit' if looksImplicit else 'explicit'} VRs, "
                                   f"not in its transfer syntax")
            implicit = looksImplicit
        window = self.window
        total = self.total
        implicitHeader = self.layout.implicitHeader
        explicitHeader = self.layout.explicitHeader
        longLength = self.layout.length
        shortVRs, longVRs, undefined = _SHORT_VRS, LONG_VRS, UNDEFINED_LENGTH
        buf, base, limit = window.buf, window.base, window.limit
        while True:
            # The loop runs once per top-level element: the common case (a
            # header inside the window, a known VR) is inlined for speed.
            # The walk only goes forward, so pos >= base.
            if pos + 12 > limit:
                if self.atEnd(pos):
                    break
                tag, vr, length, valuePos = self.header(pos, implicit)
                buf, base, limit = window.buf, window.base, window.limit
            elif implicit:
                group, element, length = implicitHeader(buf, pos - base)
                tag, vr, valuePos = group << 16 | element, None, pos + 8
            else:
                group, element, vr, length = explicitHeader(buf, pos - base)
                tag = group << 16 | element
                if vr in shortVRs:
                    valuePos = pos + 8
                elif vr in longVRs and group != 0xFFFE:
                    length = longLength(buf, pos - base + 8)[0]
                    valuePos = pos + 12
                else:
                    tag, vr, length, valuePos = self.header(pos, implicit)
            if not firstTag <= tag <= lastTag:
                break
            if tag >= 0xFFFE0000 or ascending and tag <= previous:
                raise DatasetError(
                    f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) at offset {pos} is "
                    + ("an item tag at the top level" if tag >= 0xFFFE0000 else "out of order"))
            previous = tag
            if length == undefined:
                if tag in wanted:
                    found[tag] = (b"SQ", b"")
                pos = self.skipItems(valuePos, implicit, 0, self.isSequence(tag, vr, valuePos))
                buf, base, limit = window.buf, window.base, window.limit
                continue
            end = valuePos + length
            if end > total:
                self.end(tag, pos, length, valuePos)
            if tag == PIXEL_DATA and self.encapsulated:
                raise DatasetError(f"(7FE0,0010) at offset {pos} has a defined length, which the encapsulated "
                                   f"transfer syntax {self.encapsulated} does not allow (PS3.5 A.4)")
            if self.isDefinedSequence(tag, vr):
                self.skipItems(valuePos, implicit, 0, True, end)
                buf, base, limit = window.buf, window.base, window.limit
            if tag in wanted:
                if vr is None or (vr == b"UN" and length < 0xFFFF):
                    vr = dictionaryVR(tag)
                    if vr == b"UN" and unknownVRs.get(tag):
                        vr = unknownVRs[tag].encode("ascii")
                        fromColumns.add(tag)
                if vr in _CONVERTERS or b" or " in vr:
                    if end <= limit:
                        found[tag] = (vr, bytes(buf[valuePos - base:end - base]))
                    else:
                        found[tag] = (vr, self.read(valuePos, length))
                        buf, base, limit = window.buf, window.base, window.limit
                else:
                    found[tag] = (vr, b"")
            pos = end
        return found, pos


# The standard's transfer syntaxes that encapsulate pixel data (PS3.5 A.4):
# 1.2.840.10008.1.2.4.x (JPEG, JPEG-LS, JPEG 2000, MPEG, HEVC, HTJ2K ...),
# RLE Lossless and Encapsulated Uncompressed Explicit VR Little Endian.
_ENCAPSULATING_ROOT = "1.2.840.10008.1.2.4."
_ENCAPSULATING = frozenset({"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.98"})


def _transferSyntax(uid):
    """(implicit, layout, deflated, encapsulated) for a transfer syntax UID;
    ``encapsulated`` is the UID itself when it is one of the standard's
    syntaxes that encapsulate their pixel data (PS3.5 A.4: JPEG ..., RLE,
    Encapsulated Uncompressed), else "" (a vendor's private syntax may hold
    native pixels, as it is accepted).

    Every other syntax (all the encapsulated ones) encodes its dataset as
    explicit VR little endian.
    """
    uid = uid.rstrip("\x00 ")
    if uid == IMPLICIT_VR_LITTLE_ENDIAN:
        return True, _LITTLE, False, ""
    if uid == EXPLICIT_VR_BIG_ENDIAN:
        return False, _BIG, False, ""
    encapsulated = uid.startswith(_ENCAPSULATING_ROOT) or uid in _ENCAPSULATING
    return False, _LITTLE, uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, uid if encapsulated else ""


def _window(source, deflated):
    if hasattr(source, "read"):
        if deflated:
            return InflateWindow(source.read)
        return _FileWindow(source)
    if deflated:
        data = memoryview(source).cast("B")
        chunks = (data[i:i + _CHUNK] for i in range(0, len(data), _CHUNK))
        return InflateWindow(lambda size: next(chunks, b""))
    return _BytesWindow(source)


@dataclass
class TextNotes:
    """What ``walkDataset`` noticed of a data set's text, all of it read as
    Latin-1: ``unfit``, the tags of values not valid in its Specific
    Character Set (beyond ASCII where that is ISO_IR 6: ``textFits``);
    ``unknownTerms``, the terms of that pydicom does not know;
    ``undeclared``, the tags of values beyond ASCII in a data set that has
    none (only ASCII may be used then: PS3.3 C.12.1.1.2); ``invalid``,
    texts naming the values walked, of a VR with a format (``_CHECKED_VRS``),
    that pydicom's validators find no value of their VR
    (``pydicomchecks.invalidTexts``), indexed as they are."""

    unfit: list = field(default_factory=list)
    unknownTerms: list = field(default_factory=list)
    undeclared: list = field(default_factory=list)
    invalid: list = field(default_factory=list)

    def clear(self):
        """Forget what was noted, for a data set read again."""
        for notes in (self.unfit, self.unknownTerms, self.undeclared, self.invalid):
            notes.clear()


def walkDataset(source, transferSyntax, tags, firstTag, lastTag, ascending=False, strict=False, notes=None):
    """The values of ``tags`` at the top level of a dataset, and where the walk stopped.

    Returns ``({tag: value}, stop)``: ``stop`` is the offset of the first
    element outside ``firstTag``..``lastTag``, or the dataset's length. The
    Part-10 reader walks group 0002 this way to find where the meta ends.
    ``ascending``: elements out of order are a DatasetError (pydicom reads
    them, but a walk that stops after the tags it wants would miss some).
    ``strict``: a data set whose first element has (explicit) or lacks
    (implicit) a VR against ``transferSyntax`` is a DatasetError, where
    otherwise it is read as it is encoded, as pydicom reads files; and a
    sequence of defined length holding anything but items is one too, as
    one of undefined length always is (DCMTK loses its way in either).
    A strict walk refuses a top-level Pixel Data of defined length in an
    encapsulated syntax too (PS3.5 A.4; DCMTK cannot read it).
    ``tags`` may map each tag to the VR (a str, e.g. a dicom.sql column's)
    its value is read as when neither the data set nor the dictionary
    gives one (a private tag in implicit VR, or explicit UN); such values
    are otherwise "", and so is one that is not of that VR (a debug line,
    never a DatasetError).  A "US or SS" value of implicit VR is SS when the
    Pixel Representation is 1.  ``notes``: a ``TextNotes`` to fill.
    """
    implicit, layout, deflated, encapsulated = _transferSyntax(transferSyntax)
    walker = _Walker(_window(source, deflated), layout, strict, strict and encapsulated)
    wanted = frozenset(tags) | {SPECIFIC_CHARACTER_SET, PIXEL_REPRESENTATION}
    fromColumns = set()
    found, stop = walker.collect(implicit, wanted, firstTag, lastTag, ascending,
                                 tags if isinstance(tags, Mapping) else {}, fromColumns)
    charset = found.get(SPECIFIC_CHARACTER_SET)
    if charset and charset[0] != b"CS":
        raise DatasetError(f"(0008,0005) has VR {charset[0]!r}, not CS")
    declared = _string(charset[1], None, layout) if charset else ""
    encodings = _encodings(declared)
    if notes is not None:
        notes.unknownTerms = unknownTerms(declared)
    signed = _isSigned(found.get(PIXEL_REPRESENTATION), layout)
    for tag in (SPECIFIC_CHARACTER_SET, PIXEL_REPRESENTATION):
        if tag not in tags:
            found.pop(tag, None)
    converters = _CONVERTERS
    values = {}
    for tag, (vr, raw) in found.items():
        if vr not in converters:
            vr = _resolvedVR(vr, signed)  # an ambiguous one: of those, only "US or SS" ... hold numbers
        if not raw:
            values[tag] = ""
        elif tag in fromColumns:
            values[tag] = _columnValue(vr, raw, encodings, layout)
        else:
            values[tag] = converters[vr](raw, encodings, layout) if vr in converters else ""
            if notes is not None and vr in _CHARSET_VRS and notPlain(raw):
                if not declared:
                    notes.undeclared.append(tag)
                elif not textFits(raw, encodings, asciiDefault=not notes.unknownTerms):  # unknown: read as ISO_IR 6
                    notes.unfit.append(tag)
            if notes is not None and vr in _CHECKED_VRS and values[tag]:
                text = values[tag]
                notes.invalid.extend(invalidTexts(tag, vr.decode("ascii"), text.split("\\")))
    return values, stop


def columnValueText(vr, raw, specificCharacterSet, transferSyntax):
    """The string ``readAttributes`` gives the value bytes ``raw`` of
    unknown VR read as its column's ``vr`` (a str, "US" ...) in a data set
    of ``specificCharacterSet`` encoded in ``transferSyntax``: "" where it
    is no such value."""
    return _columnValue(vr.encode("ascii"), raw, _encodings(specificCharacterSet),
                        _transferSyntax(transferSyntax)[1]) if raw else ""


def readAttributes(source, transferSyntax, tags, wholeDataset=False, strict=False, notes=None):
    """``{tag: str}`` for each of ``tags`` present at the top level of a dataset.

    ``source`` is the dataset (no file meta) as a bytes-like object, or a
    binary file object positioned at its first byte (then it is read in
    small chunks and large values are seeked past; the file position is
    left anywhere). ``transferSyntax`` is the UID the dataset is encoded in;
    ``tags`` a set of ``0xGGGGEEEE`` ints, or a mapping of them to the VR
    of a value of unknown VR (see ``walkDataset``). Absent tags are absent
    from the result, empty ones map to "", values of VRs that are not
    strings or numbers (OB, SQ, UN ...) to "". The walk stops at the first element past
    the largest tag and never reaches (7FE0,0010) Pixel Data; with
    ``wholeDataset`` it goes on to the dataset's end, skipping the values it
    does not want, so that damage or truncation anywhere raises DatasetError
    (what is stored must read to its end), and elements out of order too
    (regen's walk stops early).

    ``strict`` (data as received) and ``notes``: see ``walkDataset``.

    Raises DatasetError when the dataset cannot be walked.
    """
    if wholeDataset:
        return walkDataset(source, transferSyntax, tags, 0, 0xFFFFFFFF, ascending=True, strict=strict,
                           notes=notes)[0]
    if not tags:
        return {}
    return walkDataset(source, transferSyntax, tags, 0, min(max(tags), PIXEL_DATA - 1), notes=notes)[0]
