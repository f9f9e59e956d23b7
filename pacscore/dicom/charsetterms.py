"""The Defined Terms of Specific Character Set (0008,0005), pydicom's with
ISO_IR 203 and ISO 2022 IR 203 (Latin-9, ISO 8859-15: PS3.3 C.12.1.1.2),
which its tables lack, added; the terms no table holds; and the empty
value 1 a multi-byte set named as value 1 needs (``codeExtensionTerms``).

pydicom reads the text of a term it does not know as Latin-1, with a Python
warning printed once per process; ``unknownTerms`` lets the store name them
for each object (pacscore.storage.store).  Import ``convert_encodings``
from here: its tables then hold Latin-9.
"""

import codecs

from pydicom.charset import CODES_TO_ENCODINGS, ENCODINGS_TO_CODES, convert_encodings, python_encoding

__all__ = ["LATIN_9", "codeExtensionTerms", "convert_encodings", "unknownTerms"]

LATIN_9 = "iso8859_15"
_LATIN_9_ESCAPE = b"\x1b-b"  # G1 designation of ISO-IR 203, as DCMTK writes it
# Multi-byte ISO 2022 sets, which code extensions invoke after value 1 (the
# default repertoire when empty) and never name as value 1 (PS3.3 C.12.1.1.2).
_MULTI_BYTE_SETS = frozenset(("ISO 2022 IR 87", "ISO 2022 IR 159", "ISO 2022 IR 149", "ISO 2022 IR 58"))

python_encoding.setdefault("ISO_IR 203", LATIN_9)
python_encoding.setdefault("ISO 2022 IR 203", LATIN_9)
ENCODINGS_TO_CODES.setdefault(LATIN_9, _LATIN_9_ESCAPE)
CODES_TO_ENCODINGS.setdefault(_LATIN_9_ESCAPE, LATIN_9)


def codeExtensionTerms(terms):
    """The list of (0008,0005) ``terms`` (stripped), with the empty value 1
    a multi-byte set named as value 1 (``ISO 2022 IR 87`` alone, as devices
    send it) needs: the code extension it is.  pydicom takes the set itself
    for value 1 and fails on such text (an empty person name component)."""
    return ["", *terms] if terms and terms[0] in _MULTI_BYTE_SETS else list(terms)


def _corrected(term):
    """The Defined Term pydicom takes a misspelt ``term`` for (``ISO-IR 100``), else None."""
    if term.startswith("ISO") and term[3:4] != "_" and term[4:6] == "IR":
        return "ISO_IR" + term[6:]
    if term.startswith("ISO") and term[4:8] == "2022" and term[9:11] == "IR" and not term.startswith("ISO 2022 IR "):
        return "ISO 2022 IR " + term[12:]
    return None


def _known(term):
    if term in python_encoding or python_encoding.get(_corrected(term)):
        return True
    try:
        codecs.lookup(term)  # pydicom takes a Python codec's name as itself
    except LookupError:
        return False
    return True


def unknownTerms(value):
    """The terms of the (0008,0005) ``value`` (a str, ``\\``-separated)
    whose text pydicom reads as Latin-1 because it knows none of them."""
    return [term for term in (part.strip() for part in value.split("\\")) if term and not _known(term)]
