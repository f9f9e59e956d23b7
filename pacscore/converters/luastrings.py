"""How Lua strings cross into Python text: no string fails to.

A Data value goes to a script as its text in UTF-8, whatever the object's
Specific Character Set, so that comparisons, ``string.find``/``gsub`` and
joins with the script's own text (UTF-8, as the dicom.ini line or the .lua
file is read) work in every character set; unlike Conquest's raw bytes,
byte functions (``#``, ``string.sub``, ``string.byte``) count UTF-8 bytes:
'Öztürk' is 8 of them (the ``utf8`` library counts characters).  lupa turns
every Lua string a Python function gets (a value set, a ``print``, an
argument) into text with the ``ENCODING`` codec registered here: UTF-8 where
the bytes are that, each byte that is not as Latin-1 (half a character that
``string.sub`` cut off, ``string.char(255)``), so the script goes on where
lupa's own UTF-8 codec failed it (``'utf-8' codec can't decode byte
0xc3``).  Python text goes to Lua as UTF-8, its surrogate escapes (a file
name's bytes) as the bytes they stand for.  GetVR's byte tables are the
value's bytes in the object's character set, its text and SetVR's strings
for text VRs text as Data's values are (``lua``).
"""

import codecs

from pacscore.storage.codeextensions import LATIN_1

ENCODING = "pacs_lua_strings"  # lupa's encoding (LuaRuntime(encoding=...))


def _decode(raw, errors="strict"):
    """``raw`` as UTF-8 but for the bytes that are not, as Latin-1."""
    raw = bytes(raw)
    parts, start = [], 0
    while True:
        try:
            parts.append(raw[start:].decode("utf-8"))
            return "".join(parts), len(raw)
        except UnicodeDecodeError as e:
            parts.append(raw[start:start + e.start].decode("utf-8"))
            parts.append(raw[start + e.start:start + e.end].decode(LATIN_1))
            start += e.end


def _encode(text, errors="strict"):
    return text.encode("utf-8", "surrogateescape"), len(text)


def _search(name):
    return codecs.CodecInfo(_encode, _decode, name=ENCODING) if name == ENCODING else None


codecs.register(_search)
