"""Where Lua converters may read and write DICOM files (``readdicom``,
``x:Read``, ``x:Write``, ``writedicom``) and text files (``x:Dump``), and
read Lua files (``dofile``).

With ``LuaAllowUnsafe = 1`` a script reaches any file, relative names in
the working folder (as ``save to``).  Sandboxed, only the files under
``LuaFileFolder`` (relative to the working folder; not set: none at all),
named relative to it: an absolute name, or one that leaves the folder
(``..``, a symbolic link pointing out of it), is refused.  Files are
written as Part-10 objects, missing folders made.

A file that is missing or holds no DICOM object is no error: the script
gets nil and the reason, as Conquest's ``readdicom`` gives nothing.
"""

import codecs
import os

from pacscore.converters.command import localPath
from pacscore.converters.saving import readObject, writePart10

FOLDER_KEY = "LuaFileFolder"
BINARY_SIGNATURE = b"\x1b"  # the first byte of a precompiled chunk (LUA_SIGNATURE)


class LuaFileRefused(ValueError):
    """A sandboxed script named a file outside ``LuaFileFolder``."""


def unsafeAllowed(ini):
    """dicom.ini's ``LuaAllowUnsafe = 1``: scripts get the whole standard
    library and every file."""
    return ini is not None and ini.getint("LuaAllowUnsafe", 0) == 1


def luaFilePath(context, name):
    """The file a script's ``name`` stands for; LuaFileRefused when the
    script may not reach it, or gave no name (nil)."""
    if name is None:
        raise LuaFileRefused("a file name is wanted, not nil")
    name = str(name)
    configuration = context.services.configuration
    ini = getattr(configuration, "ini", None)
    if unsafeAllowed(ini):
        return localPath(context, name)
    folder = ini.get(FOLDER_KEY, "").strip() if ini is not None else ""
    if not folder:
        raise LuaFileRefused(f"{name}: sandboxed Lua scripts reach no file without {FOLDER_KEY} "
                             "(or LuaAllowUnsafe = 1)")
    if not name or os.path.isabs(name):
        raise LuaFileRefused(f"{name!r}: sandboxed Lua scripts name files relative to {FOLDER_KEY}")
    root = os.path.realpath(localPath(context, folder))
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root:
        raise LuaFileRefused(f"{name}: sandboxed Lua scripts reach only the files in {FOLDER_KEY}")
    return path


def readLuaFile(context, name):
    """``(dataset, None)`` of the object in the file ``name``, or
    ``(None, reason)`` when it is missing or unreadable."""
    path = luaFilePath(context, name)
    try:
        return readObject(path), None
    except Exception as e:  # any damage in a file a script names: the script hears why, the worker lives
        return None, f"cannot read {name}: {e}"


def luaChunk(data):
    """The bytes of a Lua file as ``luaL_loadfile`` (Lua's ``dofile``)
    loads them: a UTF-8 byte order mark and a first line starting with
    ``#`` (``#!/usr/bin/lua``) left out, that line's end kept so that line
    numbers hold (not before a precompiled chunk); any other bytes as they
    are (a Latin-1 or Windows-1252 file's text too)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if data.startswith(b"#"):
        end = data.find(b"\n")
        data = b"" if end < 0 else data[end:]
        if data[1:2] == BINARY_SIGNATURE:
            data = data[1:]
    return data


def readLuaSource(context, name):
    """The bytes of the Lua file ``name`` (``dofile``), as ``luaChunk``;
    LuaFileRefused, also when it cannot be read."""
    path = luaFilePath(context, name)
    try:
        with open(path, "rb") as f:
            return luaChunk(f.read())
    except OSError as e:
        raise LuaFileRefused(f"cannot read {name}: {e.strerror or e}") from None


def writeLuaFile(context, dataset, name):
    """Write ``dataset`` as a Part-10 file ``name`` (missing folders made);
    the reason it could not, or None."""
    return _write(context, name, lambda path: writePart10(dataset, path))


def writeLuaText(context, text, name):
    """Write ``text`` to the file ``name``, as writeLuaFile writes."""
    def write(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return _write(context, name, write)


def _write(context, name, write):
    path = luaFilePath(context, name)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        write(path)
    except (OSError, ValueError) as e:
        return f"cannot write {name}: {e}"
    return None
