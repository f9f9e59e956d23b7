"""Text decoded under ISO 2022 code extensions, without their escape sequences.

An escape sequence designates a character set; it is no character data
(PS3.5 6.1.2.5.1, Annex J).  pydicom's decoding drops it for the sets
Python's codecs strip it for (ISO 2022 IR 87, IR 159, IR 149, IR 13) but
keeps ``ESC $ ) A`` of ISO 2022 IR 58 (GB2312), and an escape it does not
know, in the text; ``decodeText`` and ``withoutEscapes`` leave them out.
"""

import re

from pydicom.charset import decode_bytes

_ESCAPE_SEQUENCE = re.compile("\x1b[\x20-\x2f]+[\x30-\x7e]")


def withoutEscapes(text):
    """``text`` (decoded) without the escape sequences left in it."""
    return _ESCAPE_SEQUENCE.sub("", text) if "\x1b" in text else text


def decodeText(raw, encodings, delimiters):
    """``raw`` decoded as pydicom's ``decode_bytes`` does, without escape sequences."""
    return withoutEscapes(decode_bytes(raw, encodings, delimiters))
