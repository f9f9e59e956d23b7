"""Lua strings are bytes, as in Conquest: how they cross into Python text and back.

A Data value goes to a script as its bytes in the object's Specific
Character Set (``valueBytes``: 'Öztürk' of an ISO_IR 100 object is 6 bytes,
``string.sub(name, 1, 1)`` the one of 'Ö'), as Conquest hands it.  lupa
turns every Lua string a Python function gets (a value set, a ``print``, an
argument) into text with the ``ENCODING`` codec registered here: UTF-8 (the
script's own text) where the bytes are that and hold no ISO 2022 escape,
else read in the character set of the object the script running in the
thread has as Data (``dataCharset``), as stored text is (``textOrLatin1``,
Latin-1 where they are not valid in it); in a character set of single bytes,
only the bytes that are not UTF-8 (a value joined with the script's text).
No string fails to cross: lupa's own UTF-8 codec failed a script on any
other byte (``'utf-8' codec can't decode byte 0xd6``).  Python text goes to
Lua as UTF-8, its surrogate escapes (a file name's bytes) as the bytes they
stand for.
"""

import codecs
import contextlib
import threading

from pydicom.charset import encode_string

from pacscore.dicom.charsetterms import convert_encodings
from pacscore.storage.codeextensions import textOrLatin1

ENCODING = "pacs_lua_strings"  # lupa's encoding (LuaRuntime(encoding=...))

# Python's names of the character sets of characters of more than a byte
_MULTIBYTE = frozenset({"utf-8", "gb18030", "gbk", "euc_kr", "gb2312", "iso2022_jp", "iso2022_jp_2"})
_running = threading.local()  # .dataset: the running script's Data


@contextlib.contextmanager
def dataCharset(dataset):
    """Lua strings read in this thread in the Specific Character Set
    ``dataset`` has as they are read, while the block runs a script with
    ``dataset`` as Data."""
    outer, _running.dataset = getattr(_running, "dataset", None), dataset
    try:
        yield
    finally:
        _running.dataset = outer


def encodingsOf(root):
    """Python's encodings of the Specific Character Set of the data set ``root`` (None: the default)."""
    return convert_encodings(None if root is None else root.get("SpecificCharacterSet"))


def valueBytes(text, root):
    """A value's ``text`` for Lua: its bytes in the character set of ``root``,
    the top level data set (ASCII text as it is)."""
    if text.isascii() and "\x1b" not in text:
        return text
    return encode_string(text, encodingsOf(root))


def _decode(raw, errors="strict"):
    raw = bytes(raw)
    if raw.isascii() and b"\x1b" not in raw:
        return raw.decode("ascii"), len(raw)
    encodings = encodingsOf(getattr(_running, "dataset", None))
    if b"\x1b" in raw:
        return textOrLatin1(raw, encodings, set()), len(raw)
    if codecs.lookup(encodings[0]).name not in _MULTIBYTE:
        return _mixed(raw, encodings[0]), len(raw)
    try:
        return raw.decode("utf-8"), len(raw)
    except UnicodeDecodeError:
        return textOrLatin1(raw, encodings, set()), len(raw)


def _mixed(raw, encoding):
    """``raw`` as UTF-8 but for the bytes that are not, in the single byte
    ``encoding`` (a value of a Latin-1 object joined with the script's text)."""
    parts, start = [], 0
    while True:
        try:
            parts.append(raw[start:].decode("utf-8"))
            return "".join(parts)
        except UnicodeDecodeError as e:
            parts.append(raw[start:start + e.start].decode("utf-8"))
            parts.append(textOrLatin1(raw[start + e.start:start + e.end], [encoding], set()))
            start += e.end


def _encode(text, errors="strict"):
    return text.encode("utf-8", "surrogateescape"), len(text)


def _search(name):
    return codecs.CodecInfo(_encode, _decode, name=ENCODING) if name == ENCODING else None


codecs.register(_search)
