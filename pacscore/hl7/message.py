"""HL7 v2 messages: parsing what senders deliver and building the ACKs we return.

``parseMessage`` turns the bytes of one message (no MLLP framing) into a
``Message`` whose fields are read with Conquest's numbering (manual 7.8:
``PID.5``, ``OBR.4.1``), decoding them in the character set MSH-18 names.
``splitMessages`` cuts a file holding several messages into single ones
(``readBatch``: by the batches of an HL7 batch file, ``isBatch`` telling one),
``isHL7`` tells such a file from another by its first bytes.
``ack`` builds an original-mode ACK, also for bytes that could not be parsed
(what ``salvage`` reads of them), ``batchAck`` the acknowledgment batch of a
batch, ``refusal`` the answer to a frame refused whole.
``isVersion2`` tells the MSH-12 versions we read (2.1 to 2.9, with any
release: 2.3.1, 2.5.1); the others are answered in ours, 2.5.
"""

import codecs
import re
import threading
import time
from datetime import datetime
from typing import NamedTuple

from pacscore.hl7.segmentids import isSegmentId

ERROR_TEXTS = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}

# MSH-18 (HL7 table 0211) -> Python codec, for the character sets whose
# delimiters and segment terminator are single ASCII bytes.  The Japanese
# ones (a repetition after the first, "~ISO IR87") switch in and out of
# ASCII with ISO 2022 escapes.
ISO2022 = {"ISO IR87": "iso2022_jp", "ISO IR159": "iso2022_jp_2"}
CHARSETS = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
    **ISO2022,
}
# JIS X 0201 (ISO IR13, ISO IR14): ASCII but for 0x5C and 0x7E (HL7's
# escape and repetition, read as ASCII), and half-width katakana 0xA1-0xDF;
# shift_jis's single bytes, its others (_NOT_JISX0201) refused.
JISX0201 = "shift_jis"
_NOT_JISX0201 = re.compile(rb"[\x80-\xa0\xe0-\xff]")
# ISO-IR registration numbers (as in "ISO IR6", "ISO IR87", and DICOM's
# "ISO_IR 100", "ISO 2022 IR 87") -> codec: the ISO 8859 parts, ASCII,
# JIS X 0201, JIS X 0208/0212, GB 2312, KS X 1001 (as table 0211's
# "KS X 1001"), Thai (TIS 620), UTF-8.  Another number is a name pacs does
# not know.
_ISO_IR = {6: "ascii", 13: JISX0201, 14: JISX0201, 58: "gb2312", 87: ISO2022["ISO IR87"],
           149: CHARSETS["KS X 1001"], 159: ISO2022["ISO IR159"], 166: "tis-620", 192: "utf-8",
           **{number: f"iso8859-{part}" for number, part in ((100, 1), (101, 2), (109, 3), (110, 4), (144, 5),
                                                              (127, 6), (126, 7), (138, 8), (148, 9), (157, 10),
                                                              (179, 13), (199, 14), (203, 15), (226, 16))}}
# Other usual spellings of the character sets of table 0211 (IANA names,
# DICOM's, other separators or none; the name in upper case, its blanks
# collapsed) -> the codec of the groups of their match.
_SPELLINGS = (
    (re.compile(r"(?:ISO[ _-]?)?8859[/ _-]?(\d{1,2})"), lambda part: f"iso8859-{int(part)}"),
    (re.compile(r"ISO[ _-]?(?:2022[ _-]?)?IR[ _-]?(\d{1,3})"), lambda number: _ISO_IR.get(int(number))),
    (re.compile(r"(?:UNICODE[ _-]?)?UTF[ _-]?8"), lambda: "utf-8"),
    (re.compile(r"(?:US[ _-]?)?ASCII"), lambda: "ascii"),
    (re.compile(r"(?:WINDOWS|CP)[ _-]?(125[0-8])"), lambda page: f"cp{page}"),
    (re.compile(r"GB[ _-]?18030(?:[ _-]?\d{4})?"), lambda: "gb18030"),
    (re.compile(r"KS[ _-]?X[ _-]?1001(?:[ _:-]?\d{4})?|EUC[ _-]?KR"), lambda: "euc_kr"),
    (re.compile(r"BIG[ _-]?5"), lambda: "big5"),
)
ESC = b"\x1b"  # starts an ISO 2022 escape sequence: read only in ISO2022's codecs
# Text in no declared character set that is neither ASCII nor UTF-8 is read
# as Windows-1252, what 8-bit text from a Windows RIS is (WHATWG decodes
# "iso-8859-1" so too), not as Latin-1, whose 0x80-0x9F are C1 controls:
# ``O\x92Brien`` is O’Brien.  Latin-1 declared (8859/1) is read as
# Latin-1, but for those bytes, which no Latin-1 text holds (the usual
# Windows RIS declaring 8859/1): read as Windows-1252 too, with a warning
# (``Message.windows1252``).  The five bytes Windows-1252 leaves undefined
# (0x81, 0x8D, 0x8F, 0x90, 0x9D) stay C1 controls, which values do not keep.
LATIN_1 = "iso8859-1"
UNDECLARED = "cp1252"
_WINDOWS_1252 = {byte: character for byte in range(0x80, 0xA0)
                 if (character := bytes([byte]).decode(UNDECLARED, errors="replace")) != "\ufffd"}
_FROM_WINDOWS_1252 = {ord(character): byte for byte, character in _WINDOWS_1252.items()}
_C1 = re.compile("[\x80-\x9f]")
_SEGMENT_END = re.compile(rb"\r\n|\r|\n")
_LINE_ENDS = re.compile(rb"(\r\n|\r|\n)")
_BATCH_SEGMENTS = (b"FHS", b"BHS", b"BTS", b"FTS")
_HEADERS = (b"MSH",) + _BATCH_SEGMENTS  # start a message, a batch or a file, or end one
_SEGMENT_ID = re.compile(rb"[A-Z][A-Z0-9]{2}")  # any three capitals: a segment ID where segments end in LF
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_DEFAULT_ENCODING_CHARACTERS = "^~\\&"
_FORMATTING = re.compile(r"H|N|\.(in|ti|sk|fi|nf).*|[CMZ].*")
_LINE_SKIPS = re.compile(r"\.sp *0*(\d{0,4}).*")  # \.sp <number>\: end the line, skip <number> (1 when absent)
_MAX_LINE_SKIPS = 10  # the line breaks one \.sp <number>\ gives at most
MLLP_BYTES = b"\x0b\x1c"
_VERSION_2 = re.compile(r"2\.[1-9](\.[0-9]+)*")
OUR_VERSION = "2.5"
BOM = b"\xef\xbb\xbf"


class HL7Error(ValueError):
    """A message we cannot use.

    ``code`` is an HL7 table 0357 error code (100 segment sequence error,
    101 required field missing, 102 data type error, 200 unsupported
    message type, 201 unsupported event code, 202 unsupported processing
    id, 203 unsupported version id,
    204 unknown key identifier, 206 application record locked, 207
    application internal error).
    """

    def __init__(self, text, code=207):
        super().__init__(text)
        self.text = text
        self.code = code


def charsetCodec(charset):
    """The Python codec for an MSH-18 value (its repetitions joined by
    ``~``: an empty first one is ASCII); None when it names a character set
    pacs does not know (its text is then read as without MSH-18, if ASCII or
    UTF-8); HL7Error (207) for character sets pacs cannot read together.
    Alternate character sets are only known as ISO 2022 extensions of ASCII."""
    names = [" ".join(name.upper().split()) for name in charset.split("~")]
    codecs_ = {_charsetCodec(name) if name else "ascii" for name in names}
    if None in codecs_:
        return None
    if len(codecs_) == 1:
        return codecs_.pop()
    if codecs_ - {"ascii"} <= set(ISO2022.values()):
        return ISO2022["ISO IR159"] if ISO2022["ISO IR159"] in codecs_ else ISO2022["ISO IR87"]
    raise HL7Error(f"unsupported combination of character sets {charset!r} in MSH-18", 207)


def _charsetCodec(name):
    """The codec of one MSH-18 name (upper case, blanks collapsed): table
    0211's, or a usual other spelling of one (``_SPELLINGS``); None when
    pacs knows none."""
    codec = CHARSETS.get(name)
    for pattern, codecOf in _SPELLINGS if codec is None else ():
        match = pattern.fullmatch(name)
        if match:
            codec = codecOf(*match.groups())
            break
    if not codec:
        return codec
    try:
        codecs.lookup(codec)
    except LookupError:  # 8859/12: no such part
        return None
    return codec


class Delimiters(NamedTuple):
    """MSH-1 and MSH-2 of a message, and the codec its text is in (for
    ``\\X..\\``; None when MSH-18 names none, or one pacs does not know:
    ASCII, else UTF-8, else Windows-1252)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    codec: str | None = "ascii"

    def unescape(self, text):
        """``text`` with the escape sequences of HL7 v2 section 2.7 decoded.

        ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` give the delimiters, ``\\Xhh..\\`` the
        bytes ``hh..`` in the message's character set (the bytes of
        adjacent ones decoded together: one character may need several), ``\\.br\\`` a line
        break (CR LF, as DICOM text wants), and so do ``\\.ce\\`` (end the
        line, center the next) and ``\\.sp <number>\\`` (end the line, skip
        <number> lines: that many line breaks, one when absent, at most
        ``_MAX_LINE_SKIPS``); other highlighting, formatting and
        character set switches are dropped.  Anything else, like a lone
        backslash, is kept as it is.
        """
        escape = self.escape
        if escape not in text:
            return text
        pieces = text.split(escape)
        result = [pieces[0]]
        hexBytes = bytearray()              # of adjacent \\X..\\ sequences, decoded together

        def flush():
            if hexBytes:
                result.append(self._decodeBytes(bytes(hexBytes)))
                hexBytes.clear()

        i = 1
        while i < len(pieces):
            if i + 1 >= len(pieces):        # an escape character never closed
                flush()
                result.append(escape + pieces[i])
                break
            sequenceBytes = _hexBytes(pieces[i])
            if sequenceBytes is not None:
                hexBytes += sequenceBytes
                if pieces[i + 1]:
                    flush()
                    result.append(pieces[i + 1])
                i += 2
                continue
            flush()
            decoded = self._escapeSequence(pieces[i])
            if decoded is None:             # not an escape sequence: keep it, retry from its end
                result.append(escape + pieces[i])
                i += 1
                continue
            result.append(decoded)
            result.append(pieces[i + 1])
            i += 2
        flush()
        return "".join(result)

    def _decodeBytes(self, data):
        if self.codec is None:
            return decodeUndeclared(data)[0]
        if self.codec in (LATIN_1, UNDECLARED):
            return _windows1252(data)
        return data.decode(self.codec, errors="replace")

    def _escapeSequence(self, body):
        simple = {"F": self.field, "S": self.component, "T": self.subcomponent,
                  "R": self.repetition, "E": self.escape}
        if body in simple:
            return simple[body]
        if body == ".br" or body.startswith(".ce"):
            return "\r\n"
        skips = _LINE_SKIPS.fullmatch(body)
        if skips:
            return "\r\n" * min(int(skips[1] or 1), _MAX_LINE_SKIPS)
        if _FORMATTING.fullmatch(body):
            return ""
        return None

    def escapeText(self, text):
        """``text`` with the delimiters and line breaks escaped, for a field of ours."""
        e = self.escape
        table = {ord(e): f"{e}E{e}", ord(self.field): f"{e}F{e}", ord(self.component): f"{e}S{e}",
                 ord(self.subcomponent): f"{e}T{e}", ord(self.repetition): f"{e}R{e}"}
        return f"{e}.br{e}".join(line.translate(table) for line in _LINE_BREAK.split(text))


def _hexBytes(body):
    """The bytes of a ``\\Xhh..\\`` sequence's ``body``, None for another."""
    if body[:1] != "X" or len(body) < 2:
        return None
    try:
        return bytes.fromhex(body[1:])
    except ValueError:
        return None


class Segment:
    """One segment: ``id`` ("PID") and ``fields``, the raw (still escaped)
    field texts numbered as in HL7, ``fields[N]`` being SEG-N (``fields[0]``
    is the id; for MSH ``fields[1]`` is the field separator)."""

    __slots__ = ("id", "fields", "delimiters")

    def __init__(self, fields, delimiters):
        self.id = fields[0]
        self.fields = fields
        self.delimiters = delimiters

    def __repr__(self):
        return f"<Segment {self.delimiters.field.join(self.fields)!r}>"

    def field(self, number):
        """The raw text of field ``number``, "" when absent."""
        return self.fields[number] if 0 <= number < len(self.fields) else ""

    def repetitions(self, number):
        """How many repetitions field ``number`` holds (``AE_X~AE_Y``: 2; 1 when absent)."""
        return self.field(number).count(self.delimiters.repetition) + 1

    def _repetition(self, number, repetition):
        parts = self.field(number).split(self.delimiters.repetition)
        return parts[repetition] if repetition < len(parts) else ""

    def components(self, number, repetition=0):
        """The components of a repetition (the first by default) of field
        ``number``, each its first subcomponent, unescaped; HL7's null
        ``""`` reads as ""."""
        d = self.delimiters
        return [_text(d, part.split(d.subcomponent, 1)[0])
                for part in self._repetition(number, repetition).split(d.component)]

    def value(self, number, component=None, repetition=0):
        """Field ``number`` (a repetition, the first by default, unescaped),
        or its zero-based ``component`` (first subcomponent); "" when absent."""
        if self.id == "MSH" and number in (1, 2):
            return self.field(number)
        if component is None:
            return _text(self.delimiters, self._repetition(number, repetition))
        parts = self.components(number, repetition)
        return parts[component] if 0 <= component < len(parts) else ""


def _text(delimiters, raw):
    return "" if raw == '""' else delimiters.unescape(raw)


class Message:
    """A parsed HL7 v2 message (see ``parseMessage``)."""

    def __init__(self, raw, charset, encoding, segments, charsetKnown=True, windows1252=False):
        self.raw = raw
        self.charset = charset
        self.encoding = encoding
        self.charsetKnown = charsetKnown  # False: MSH-18 names one pacs does not know, its text guessed
        self.windows1252 = windows1252  # True: Latin-1 declared, bytes 0x80-0x9F read as Windows-1252
        self.segments = segments
        msh = segments[0]
        self.controlId = msh.value(10, 0)
        # trailing blanks are optional in the ST they are (v2.5 2.A): "2.3.1 " is 2.3.1
        self.messageType = msh.value(9, 0).rstrip(" ")
        self.triggerEvent = msh.value(9, 1).rstrip(" ")
        self.processingId = msh.value(11, 0).rstrip(" ")
        self.version = msh.value(12, 0).rstrip(" ")

    def __repr__(self):
        return f"<Message {self.messageType}^{self.triggerEvent} {self.controlId!r}>"

    def segment(self, segmentId, occurrence=0):
        """The ``occurrence``-th (zero-based) segment ``segmentId``, or None."""
        found = [s for s in self.segments if s.id == segmentId]
        return found[occurrence] if occurrence < len(found) else None

    def value(self, segment, field, component=None):
        """Field ``field`` (HL7's SEG-N) of ``segment`` (a Segment, or a
        segment id for its first occurrence), or its zero-based
        ``component``, unescaped; "" when absent."""
        if isinstance(segment, str):
            segment = self.segment(segment)
        return "" if segment is None else segment.value(field, component)


def isVersion2(version):
    """Whether ``version`` (MSH-12) is one of HL7 v2 (2.1 ... 2.5.1 ...)."""
    return _VERSION_2.fullmatch(version) is not None


def _segmentLines(raw):
    """The non-blank segments of ``raw``.

    The line end after a message's header (MSH, or a batch's FHS, BHS)
    tells how its segments end.  A CR (or CR LF), as HL7 has it: CR ends
    them, and a lone LF only where what follows it starts a segment (a
    header or trailer: MSH, FHS, BHS, BTS, FTS, as in a file of messages
    one a line; or a segment ID, then the header's field separator:
    ``PID|``, or alone on its line, a segment with no fields: ``NTE``,
    where the line after it starts a segment too or the message ends
    there, ``_segmentStarts``); elsewhere it is data (a line break a RIS
    user typed into a free-text field, OBR-13, NTE-3, a line ``CVA`` of it
    too).  A segment ID is one of the order messages pacs reads or a
    Z-segment's (``isSegmentId``: ``NKA|none``, ``LOC|`` stay text) where
    a CR ends a segment after the header, and any three capitals or
    digits where none does (its MSH in CR, its other segments in LF).
    A lone LF (files written on Unix): any line end does.
    """
    pieces = _LINE_ENDS.split(raw)  # text, its line end, text, ... text
    starts = _segmentStarts(pieces)
    segments, parts, crOnly = [], [], False
    for index in range(0, len(pieces), 2):
        text = pieces[index]
        end = pieces[index + 1] if index + 1 < len(pieces) else b""
        if not parts:
            if not text.strip():  # a blank line
                continue
            if _startsHeader(text):
                crOnly = end[:1] == b"\r"
        parts.append(text)
        if end == b"\n" and crOnly and not starts[index // 2 + 1]:
            parts.append(end)
            continue
        segments.append(b"".join(parts).rstrip(b"\n"))
        parts = []
    return segments


def _startsHeader(text):
    """Whether ``text`` starts with a header or trailer segment of ``_HEADERS``."""
    return text[:3] in _HEADERS and not text[3:4].isalnum()


def _segmentStarts(pieces):
    """Whether each line of ``pieces`` (text, its line end, text, ...
    text) would start a segment after a lone LF: a header or trailer
    (``_startsHeader``), a segment ID (in a message with a CR after its
    header ``isSegmentId``: not ``NKA|``, ``LOC|``, ``CVA``, even last in
    the message; in one whose segments after the header all end in LF,
    any three capitals or digits, ``_SEGMENT_ID``) followed by the field
    separator of the header before it (``PID|``), or a segment ID alone on its line
    (``NTE``, spaces after it ignored) where, past blank lines, a lone LF
    leads to a line that starts a segment or the message ends; one before
    a CR, or before free text, is text (``History:`` LF ``CVA`` LF
    ``R/O bleed``).  Read from the last line back, in one pass."""
    lines = pieces[::2]
    separators, headers, separator, header = [], [], b"|", None
    for line, text in enumerate(lines):
        if _startsHeader(text):
            separator, header = text[3:4], line
        separators.append(separator)
        headers.append(header)
    crEnded = {headers[line] for line, end in enumerate(pieces[1::2]) if headers[line] != line and b"\r" in end}
    starts, follows = [False] * len(lines), [True] * len(lines)  # after the last line the message ends
    for line in reversed(range(len(lines))):
        text, after = lines[line], line + 1
        if after < len(lines):
            follows[line] = pieces[2 * line + 1] == b"\n" and (
                starts[after] if lines[after].strip() else follows[after])
        segmentId = isSegmentId(text[:3]) if headers[line] in crEnded else _SEGMENT_ID.fullmatch(text[:3])
        starts[line] = _startsHeader(text) or (bool(segmentId) and (
            text[3:4] == separators[line] or (not text[3:].strip() and follows[line])))
    return starts


def _mshCharset(msh, fieldSeparator, repetition):
    """MSH-18 read from the raw MSH bytes, its repetitions joined by ``~``
    (an empty first one kept: "~ISO IR87"), "" when absent."""
    fields = msh.split(fieldSeparator)
    if len(fields) <= 17:
        return ""
    names = [name.decode("ascii", errors="replace").strip() for name in fields[17].split(repetition)]
    while names and not names[-1]:
        names.pop()
    return "~".join(names)


def decodeUndeclared(raw):
    """``(text, codec)`` of bytes in no declared character set: ASCII, else
    UTF-8, else Windows-1252 (``UNDECLARED``; its undefined bytes as in
    Latin-1)."""
    for codec in ("ascii", "utf-8"):
        try:
            return raw.decode(codec), codec
        except UnicodeDecodeError:
            pass
    return _windows1252(raw), UNDECLARED


def _windows1252(raw):
    """``raw`` read as Windows-1252, its undefined bytes as in Latin-1 (C1
    controls): every byte read, ``_encodeText`` giving it back."""
    return raw.decode(LATIN_1).translate(_WINDOWS_1252)


def _encodeText(text, codec):
    """``text`` in ``codec``, a character it has not as ``?``; text read
    as Windows-1252 (``UNDECLARED``, and declared Latin-1's 0x80-0x9F) is
    given back the bytes it was read from, the undefined ones too, so
    that what an ACK echoes (MSH-3, MSH-10) is what was sent."""
    if codec in (LATIN_1, UNDECLARED):
        return text.translate(_FROM_WINDOWS_1252).encode(LATIN_1, errors="replace")
    return text.encode(codec, errors="replace")


def _decode(raw, charset, codec):
    """``(text, codec)`` of the message in ``codec``, that of the character
    set MSH-18 names (guessed by ``decodeUndeclared`` when it names none,
    or one pacs does not know: None).  Text in a character set pacs does
    not know is read only where that cannot be wrong, as ASCII or UTF-8
    without ISO 2022 escapes; an ISO 2022 escape in another codec than
    ISO2022's is no text either (JIS read as ASCII would keep its escapes)."""
    if codec is None:
        text, guess = decodeUndeclared(raw)
        if charset and (guess == UNDECLARED or ESC in raw):
            raise HL7Error(f"unsupported character set {charset!r} in MSH-18 (its text is not ASCII or UTF-8 "
                           f"without ISO 2022 escapes)", 207)
        return text, guess
    if codec not in ISO2022.values() and ESC in raw:
        raise _invalidByte(raw, raw.index(ESC), charset)
    other = _NOT_JISX0201.search(raw) if codec == JISX0201 else None
    if other:  # a byte of a two-byte Shift JIS character: no JIS X 0201
        raise _invalidByte(raw, other.start(), charset)
    try:
        return raw.decode(codec), codec
    except UnicodeDecodeError as e:
        raise _invalidByte(raw, e.start, charset) from None


def _invalidByte(raw, offset, charset):
    """The HL7Error (102) of the byte at ``offset`` of ``raw``, not valid in
    the character set MSH-18 names."""
    why = " (an ISO 2022 escape)" if raw[offset:offset + 1] == ESC else ""
    return HL7Error(f"byte {raw[offset]:#04x}{why} at offset {offset} is not valid in "
                    f"character set {charset!r} (MSH-18)", 102)


def _headerDelimiters(header):
    """``(field separator, component, repetition, escape, subcomponent)``
    that a header segment (MSH, or a batch's FHS, BHS) gives in its -1 and
    -2; HL7Error when they are not usable."""
    fieldSeparator = header[3:4]
    if not fieldSeparator.isascii() or fieldSeparator.isalnum() or fieldSeparator in (b" ", b"\t"):
        raise HL7Error(f"MSH-1 {fieldSeparator!r} is not a usable field separator", 102)
    encodingBytes = header[4:].split(fieldSeparator, 1)[0]
    if not encodingBytes.isascii():
        raise HL7Error(f"MSH-2 {encodingBytes!r} is not ASCII", 102)
    encodingCharacters = encodingBytes.decode("ascii")
    encodingCharacters += _DEFAULT_ENCODING_CHARACTERS[len(encodingCharacters):]
    component, repetition, escape, subcomponent = encodingCharacters[:4]
    separator = fieldSeparator.decode("ascii")
    if len({separator, component, repetition, escape, subcomponent}) < 5:
        raise HL7Error(f"MSH-2 {encodingCharacters!r} does not give four distinct delimiters", 102)
    return separator, component, repetition, escape, subcomponent


def parseMessage(raw):
    """Parse one message (bytes, no MLLP framing); HL7Error when unusable.

    Segments may end in CR, LF or CR LF (a lone LF in a message whose MSH
    ends in CR is data unless a segment starts after it: ``_segmentLines``);
    a UTF-8 byte order mark before MSH is dropped.  MSH-1 and MSH-2 give
    the delimiters, MSH-18 the character set.  MSH-9 and MSH-10 are required.  A second MSH is an
    error: two messages run together would mix their orders and patients.
    """
    lines = _segmentLines(raw.removeprefix(BOM))
    if not lines or not lines[0].startswith(b"MSH") or len(lines[0]) < 5:
        raise HL7Error("the message does not start with an MSH segment", 100)
    if any(line.startswith(b"MSH") for line in lines[1:]):
        raise HL7Error("a second MSH segment: one message at a time (several messages ran together)", 100)
    msh = lines[0]
    separator, component, repetition, escape, subcomponent = _headerDelimiters(msh)
    fieldSeparator = separator.encode("ascii")
    charset = _mshCharset(msh, fieldSeparator, repetition.encode("ascii"))
    declared = charsetCodec(charset) if charset else None
    text, codec = _decode(b"\r".join(lines), charset, declared)
    windows1252 = codec == LATIN_1 and _C1.search(text) is not None
    if windows1252:
        text = text.translate(_WINDOWS_1252)
    delimiters = Delimiters(separator, component, repetition, escape, subcomponent, declared)
    segments = []
    for line in text.split("\r"):
        fields = line.split(separator)
        if not segments:
            fields = ["MSH", separator] + fields[1:]
        segments.append(Segment(fields, delimiters))
    message = Message(raw, charset, codec, segments, charsetKnown=declared is not None or not charset,
                      windows1252=windows1252)
    if not message.messageType:
        raise HL7Error("MSH-9 (message type) is missing", 101)
    if not message.controlId:
        raise HL7Error("MSH-10 (message control id) is missing", 101)
    return message


_BATCH_HEADERS = (b"FHS", b"BHS")
_FIRST_SEGMENTS = (b"MSH",) + _BATCH_HEADERS


def _unframed(data):
    """``data`` without MLLP start and end bytes and a UTF-8 byte order mark."""
    return data.translate(None, MLLP_BYTES).removeprefix(BOM)


HL7_HEAD = 4096  # the first bytes of a file that ``isHL7`` reads


def isHL7(head):
    """Whether ``head``, the first bytes of a file, starts HL7 messages as
    ``splitMessages`` reads them: an MSH or a batch header (FHS, BHS) after
    MLLP bytes, a UTF-8 byte order mark and blank lines, with the usable
    delimiters ``parseMessage`` reads (``_headerDelimiters``), an MSH with
    fields up to its message type and control ID (MSH-9, MSH-10; empty
    ones are refused by ``parseMessage``, with an AR, as any other
    message's): not a text that starts with the letters MSH (``MSHELL
    script notes``, ``MSH: notes``)."""
    lines = _segmentLines(_unframed(head).lstrip())
    header = lines[0] if lines else b""
    if header[:3] not in _FIRST_SEGMENTS or len(header) < 5:
        return False
    try:
        separator = _headerDelimiters(header)[0]
    except HL7Error:
        return False
    fields = header.split(separator.encode("ascii"))
    return header[:3] != b"MSH" or len(fields) > 9


def splitMessages(data):
    """The messages of a file or buffer, as raw bytes with segments joined by CR.

    MLLP start and end bytes, a UTF-8 byte order mark, blank lines and the
    header and trailer segments of HL7 batch files (FHS, BHS, BTS, FTS) are
    removed; a new message starts at every segment beginning with MSH.
    Anything before the first MSH (of a batch) is returned as a piece of
    its own (which ``parseMessage`` then rejects), so nothing is silently
    lost.
    """
    return [message for _, messages in readBatch(data).batches for message in messages]


def isBatch(data):
    """Whether ``data``, one MLLP frame's bytes, starts an HL7 batch (v2.5
    2.10.3): its first segment is a file or batch header (FHS, BHS)."""
    return data.removeprefix(BOM).lstrip()[:3] in _BATCH_HEADERS


class Batch(NamedTuple):
    """An HL7 batch file (v2.5 2.10.3) as ``readBatch`` reads it."""

    fileHeader: bytes  # the FHS segment, b"" when there is none
    batches: list      # (its BHS segment, b"" when there is none; its raw messages), in order

    def messages(self):
        """Its messages in order, without the segments before a batch's
        first MSH (``strays``)."""
        return [piece for _, pieces in self.batches for piece in pieces if isMessage(piece)]

    def strays(self):
        """The segments before a batch's first MSH, which are in no message:
        ``(its batch's BHS, b"" when there is none; the segments joined by
        CR)``, one a batch."""
        return [(header, piece) for header, pieces in self.batches for piece in pieces if not isMessage(piece)]

    def controlId(self, header):
        """The batch control ID of a batch whose BHS is ``header`` (b"" for
        none): its BHS-11, else the file's FHS-11, "?" when neither has
        one."""
        return batchHeader(header or self.fileHeader).value(11) or "?"


def isMessage(piece):
    """Whether ``piece``, one of ``readBatch``'s, is a message, not the
    segments before a batch's first MSH."""
    return piece[:3] == b"MSH"


def _strayComment(pieces):
    """BTS-2 (batch comment) of a batch whose ``pieces`` hold segments
    before its first MSH: how many, refused; "" when they hold none."""
    segments = sum(piece.count(b"\r") + 1 for piece in pieces if not isMessage(piece))
    return f"{segments} segment(s) before the first MSH refused: in no message" if segments else ""


def readBatch(data):
    """The ``Batch`` of a file or buffer (see ``splitMessages``): a batch
    starts at each BHS, its trailer (BTS) and the file's (FTS) dropped."""
    fileHeader, batches = b"", [(b"", [])]
    for line in _segmentLines(_unframed(data)):
        kind = line[:3]
        if kind == b"FHS":
            fileHeader = fileHeader or line
        elif kind == b"BHS":
            if batches[-1] == (b"", []):
                batches[-1] = (line, [])
            else:
                batches.append((line, []))
        elif kind not in _BATCH_SEGMENTS:
            messages = batches[-1][1]
            if kind == b"MSH" or not messages:
                messages.append([line])
            else:
                messages[-1].append(line)
    return Batch(fileHeader, [(header, [b"\r".join(lines) for lines in messages]) for header, messages in batches])


class UniqueNumbers:
    """16-digit numbers, never repeating in a process: the microseconds since
    1970 (16 digits until 2286), or one more than the last number given
    when the clock has not moved on.  Restarts continue from the clock, so
    repeats across processes are very unlikely."""

    def __init__(self, now=time.time):
        self._now = now
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self._last = max(self._last + 1, int(self._now() * 1_000_000))
            return f"{self._last % 10 ** 16:016d}"


uniqueNumber = UniqueNumbers()


class Salvaged(NamedTuple):
    """What ``ack`` needs from the message it answers (``salvage``: of one
    that could not be parsed)."""

    delimiters: Delimiters
    sender: list            # MSH-3 components
    senderFacility: list    # MSH-4 components
    triggerEvent: str
    controlId: str
    processingId: str
    version: str
    charset: str


def _fromMessage(message):
    msh = message.segments[0]
    return Salvaged(msh.delimiters._replace(codec=message.encoding), msh.components(3), msh.components(4), message.triggerEvent,
                    message.controlId, message.processingId, message.version, message.charset)


def salvage(raw):
    """A ``Salvaged``: a lenient byte-level reading of the first MSH in
    ``raw``, bytes that did not parse, its fields unescaped with its
    delimiters (MSH-1, MSH-2) as ``parseMessage`` reads them (``ack``
    escapes them again); never raises."""
    raw = raw or b""
    start = raw.find(b"MSH")
    msh = _SEGMENT_END.split(raw[start:], 1)[0] if start >= 0 else b""
    fieldSeparator = msh[3:4] if len(msh) > 3 and not msh[3:4].isalnum() else b"|"
    fields = msh.split(fieldSeparator)
    encodingCharacters = fields[1] if len(fields) > 1 else b""
    component = encodingCharacters[0:1] or b"^"
    repetition = encodingCharacters[1:2] or b"~"
    charset = _mshCharset(msh, fieldSeparator, repetition)
    try:
        codec = charsetCodec(charset) if charset else None
    except HL7Error:  # not repeated in the ACK: the sender could not read it either
        codec, charset = None, ""
    if codec is None and charset:  # a name pacs does not know: repeated where parseMessage reads its text
        guess = decodeUndeclared(raw)[1]
        charset = "" if guess == UNDECLARED or ESC in raw else charset
        codec = "utf-8" if charset else None
    codec = codec or UNDECLARED
    escape, subcomponent = encodingCharacters[2:3] or b"\\", encodingCharacters[3:4] or b"&"
    reading = Delimiters(*(character.decode(LATIN_1) for character in (
        fieldSeparator, component, repetition, escape, subcomponent)), codec)

    def components(number):
        index = number - 1
        if index >= len(fields):
            return []
        first = fields[index].split(repetition, 1)[0]
        return [reading.unescape(_windows1252(part) if codec == UNDECLARED else part.decode(codec, errors="replace"))
                for part in first.split(component)]

    def value(number, part=0):
        parts = components(number)
        return parts[part] if part < len(parts) else ""

    return Salvaged(reading, components(3), components(4), value(9, 1).rstrip(" "),
                    value(10), value(11).rstrip(" "), value(12).rstrip(" "), charset)  # blanks: as Message


def ack(message, code, text="", errorCode=None, application="PACS", facility=""):
    """An original-mode ACK (bytes, no MLLP framing) answering ``message``,
    a ``Message``, or the ``Salvaged`` of one that could not be parsed.

    ``code`` is AA, AE or AR; for AE and AR, ``text`` goes to MSA-3 and an
    ERR segment carries ``errorCode`` (table 0357, default 207), both in
    ERR-1 as v2.3 and v2.4 want it (``^^^code&text&HL70357``) and in the
    ERR-3 of v2.5 (which keeps ERR-1 for backward compatibility).  The ACK is
    encoded in the message's character set, whose MSH-18 it repeats, and in
    its version (MSH-12) when that is one of v2, else in ours.
    """
    source = message if isinstance(message, Salvaged) else _fromMessage(message)
    ours = Delimiters(codec=source.delimiters.codec)
    escaped = ours.escapeText
    trigger = source.triggerEvent
    version = source.version if isVersion2(source.version) else OUR_VERSION
    msh = _answerHeader(ours, "MSH", application, facility, source.sender, source.senderFacility) + [
        f"ACK^{escaped(trigger)}^ACK" if trigger else "ACK", uniqueNumber(),
        escaped(source.processingId or "P"), escaped(version),
        "", "", "", "", "", ours.repetition.join(map(escaped, source.charset.split("~")))]
    segments = [msh, ["MSA", code, escaped(source.controlId), escaped(text)]]
    if code in ("AE", "AR"):
        errorCode = 207 if errorCode is None else errorCode
        errorText = escaped(ERROR_TEXTS.get(errorCode, ""))
        segments.append(["ERR", f"^^^{errorCode}&{errorText}&HL70357", "",
                         f"{errorCode}^{errorText}^HL70357", "E", "", "", "", escaped(text)])
    return _encodeText(_segmentsText(ours, segments), ours.codec)


def _answerHeader(ours, segmentId, application, facility, sender, senderFacility):
    """The fields up to -8 of a header segment of ours (MSH, FHS, BHS)
    answering one whose -3 and -4 are ``sender`` and ``senderFacility``
    (components), in our delimiters ``ours``."""
    escaped = ours.escapeText
    return [segmentId, _DEFAULT_ENCODING_CHARACTERS, escaped(application), escaped(facility),
            ours.component.join(map(escaped, sender)), ours.component.join(map(escaped, senderFacility)),
            datetime.now().strftime("%Y%m%d%H%M%S"), ""]


def _segmentsText(ours, segments):
    """The text of ``segments`` (lists of fields, their trailing empty ones
    dropped) in our delimiters ``ours``, each ended by CR."""
    lines = []
    for fields in segments:
        while fields[-1] == "":
            fields.pop()
        lines.append(ours.field.join(fields))
    return "\r".join(lines) + "\r"


def batchHeader(line):
    """The ``Segment`` of a batch or file header (BHS, FHS: ``line``, its
    raw bytes, b"" for none), its text read as without MSH-18 and its
    delimiters its own (ours when they are not usable), the codec read in
    its ``delimiters``; never raises."""
    text, codec = decodeUndeclared(line)
    delimiters = Delimiters(codec=codec)
    if len(line) > 3:
        try:
            delimiters = Delimiters(*_headerDelimiters(line), codec=codec)
        except HL7Error:
            pass
    return Segment([text[:3], delimiters.field] + text.split(delimiters.field)[1:], delimiters)


def batchAck(batch, acks, application="PACS", facility=""):
    """The acknowledgment batch (bytes) answering ``batch``, a ``Batch``:
    ``acks``, the ACKs (``ack``) of its messages in order
    (``Batch.messages``), each batch's in a batch of ours (HL7 v2.5
    2.10.3.4, every message acknowledged): BHS, its BHS-12 the BHS-11
    (batch control ID) it answers, the ACKs, and BTS, its BTS-1 their count
    (segments before the batch's first MSH, no message, are neither
    acknowledged nor counted: BTS-2, the batch comment, says they are
    refused); in a file (FHS, its FHS-12 the FHS-11 it
    answers, and FTS, its FTS-1 the count of batches) when ``batch`` is
    one.  Each header is in the character set the sender's was read in
    (``batchHeader``), so that what it echoes is the bytes sent."""
    acks = iter(acks)

    def header(line, segmentId):
        theirs = batchHeader(line)
        ours = Delimiters(codec=theirs.delimiters.codec)
        fields = _answerHeader(ours, segmentId, application, facility, theirs.components(3),
                               theirs.components(4)) + ["", "", uniqueNumber(), ours.escapeText(theirs.value(11))]
        return _encodeText(_segmentsText(ours, [fields]), ours.codec)

    parts = [header(batch.fileHeader, "FHS")] if batch.fileHeader else []
    for line, pieces in batch.batches:
        messages = sum(map(isMessage, pieces))
        parts.append(header(line, "BHS"))
        parts.extend(next(acks) for _ in range(messages))
        parts.append(_segmentsText(Delimiters(), [["BTS", str(messages), _strayComment(pieces)]]).encode("ascii"))
    if batch.fileHeader:
        parts.append(f"FTS|{len(batch.batches)}\r".encode("ascii"))
    return b"".join(parts)


def refusal(raw, text, errorCode=207, application="PACS"):
    """The answer (bytes) to ``raw``, an MLLP frame's bytes (or its first
    ones) refused whole for ``text``: the AR of its first MSH
    (``salvage``), or, when it holds an HL7 batch (``isBatch``), an
    acknowledgment batch (``batchAck``) answering each message
    ``readBatch`` finds in it AR."""
    def rejected(piece):
        return ack(salvage(piece), "AR", text, errorCode, application=application)

    if not isBatch(raw):
        return rejected(raw)
    batch = readBatch(raw)
    return batchAck(batch, [rejected(piece) for piece in batch.messages()], application=application)
