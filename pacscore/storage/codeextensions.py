"""Text decoded under ISO 2022 code extensions, without their escape sequences.

An escape sequence designates a character set; it is no character data
(PS3.5 6.1.2.5.1, Annex J).  pydicom's decoding drops it for the sets
Python's codecs strip it for (ISO 2022 IR 87, IR 159, IR 149, IR 13) but
keeps ``ESC $ ) A`` of ISO 2022 IR 58 (GB2312), and an escape it does not
know, in the text; ``decodeText`` and ``withoutEscapes`` leave them out.
``textFits`` says whether the bytes are valid in the declared character
set (ISO_IR 6 as pydicom reads it, Latin-1, or, when asked, as the ASCII
it is); ``textOrLatin1`` reads them as Latin-1 (which any bytes are) where
they are not, instead of pydicom's U+FFFD in the place of each bad byte.
"""

import re

from pydicom.charset import CODES_TO_ENCODINGS, decode_bytes, default_encoding, handled_encodings

LATIN_1 = "latin_1"
_ESCAPE = b"\x1b"
_FRAGMENTS = re.compile(b"^[^\x1b]+|\x1b[^\x1b]*")  # as pydicom's decode_bytes parts a value
_ESCAPE_SEQUENCE = re.compile("\x1b[\x20-\x2f]+[\x30-\x7e]")
_TO_G1 = (b"\x1b)", b"\x1b-", b"\x1b$)")  # escape sequences designating a set to G1 (PS3.5 6.1.2.5)


def withoutEscapes(text):
    """``text`` (decoded) without the escape sequences left in it."""
    return _ESCAPE_SEQUENCE.sub("", text) if "\x1b" in text else text


def decodeText(raw, encodings, delimiters):
    """``raw`` decoded as pydicom's ``decode_bytes`` does, without escape sequences."""
    return withoutEscapes(decode_bytes(raw, encodings, delimiters))


def textOrLatin1(raw, encodings, delimiters):
    """``raw`` decoded as ``decodeText`` does, or, where its bytes are not
    valid in ``encodings`` (``textFits``), read as Latin-1."""
    if _ESCAPE not in raw:
        try:
            return raw.decode(encodings[0])
        except UnicodeError:
            return raw.decode(LATIN_1)
        except LookupError:
            pass  # pydicom's default character set then
    elif not textFits(raw, encodings):
        return raw.decode(LATIN_1)
    return decodeText(raw, encodings, delimiters)


def notPlain(raw):
    """Whether the value bytes ``raw`` are anything but ASCII without escapes."""
    return not raw.isascii() or _ESCAPE in raw


def textFits(raw, encodings, asciiDefault=False):
    """Whether the bytes ``raw`` are valid in ``encodings`` (not so a
    Latin-1 ``ü`` in an ISO_IR 192 value).  pydicom reads the default
    repertoire (ISO_IR 6, ISO 2022 IR 6, no value 1; ``ESC ( B``) as
    Latin-1, and so does this, unless ``asciiDefault``: then, where value 1
    is the default repertoire, its text (before any escape sequence, or
    after ``ESC ( B`` while no set was designated to G1) is valid only in
    ASCII, as PS3.3 C.12.1.1.2 says."""
    asciiOnly = asciiDefault and encodings[0] == default_encoding
    for fragment in _FRAGMENTS.findall(raw):
        asciiOnly = asciiOnly and not fragment.startswith(_TO_G1)
        if not _fits(fragment, encodings[0], asciiOnly):
            return False
    return True


def _fits(fragment, first, asciiOnly):
    """Whether ``fragment`` (from an escape sequence to the next) is valid in
    the set its escape sequence designates, one before any in ``first``
    (the default repertoire only ASCII if ``asciiOnly``); an escape sequence
    pydicom does not know is left to it."""
    if fragment.startswith(_ESCAPE):
        length = 4 if fragment.startswith((b"\x1b$(", b"\x1b$)")) else 3
        encoding = CODES_TO_ENCODINGS.get(fragment[:length])
        if encoding is None:
            return True
        first, fragment = encoding, fragment if encoding in handled_encodings else fragment[length:]
    if asciiOnly and first == default_encoding:
        return fragment.isascii()
    try:
        fragment.decode(first)
    except UnicodeError:
        return False
    except LookupError:
        pass
    return True
