"""The type of the index's ``ObjectFile`` columns: a file's path relative to
its MAG device, as Python names it.

On Linux a file name is bytes; one that is not valid UTF-8 (an old Conquest's
Latin-1 patient name in ``FileNameSyntax``) reads as a ``str`` with lone
surrogates (``surrogateescape``), which no database driver stores.  Such a
path is stored as ``U+FFFF`` (a noncharacter no file name holds) followed by
the path with each of those bytes written ``%XX`` and ``%`` written ``%25``;
reading it back gives the same ``str``, which opens the same file.  Every
other path is stored as it is, so existing databases and SQL filters see
what they always saw.
"""

import os
import re
from urllib.parse import unquote_to_bytes

from sqlalchemy import String, TypeDecorator

OBJECT_FILE_LENGTH = 255  # characters of the index's ObjectFile column: the longest path a stored object gets
MARK = "\uffff"
_ESCAPED = re.compile("[%\udc80-\udcff]")
_TO_ESCAPE = re.compile("^\uffff|[\udc80-\udcff]")  # what makes a path stored escaped


def storedPath(path):
    """What the database holds for ``path``."""
    if path is None or not _TO_ESCAPE.search(path):
        return path
    return MARK + _ESCAPED.sub(lambda m: f"%{os.fsencode(m.group())[0]:02X}", path)


def pathOf(stored):
    """The path the database value ``stored`` stands for."""
    if stored is None or not stored.startswith(MARK):
        return stored
    return os.fsdecode(unquote_to_bytes(stored[len(MARK):]))


class ObjectPath(TypeDecorator):
    """A ``String`` column of paths that may not be UTF-8 (``storedPath``)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return storedPath(value)

    def process_result_value(self, value, dialect):
        return pathOf(value)
