"""The worker threads whose converter waits for a ``dicommove``, which may
bring objects into this server, and what the move asks for
(``MoveScope``).  A copy of the object such a converter imports that
arrives meanwhile and falls within the move may be the move's own, which
cannot wait for that import to end (``ObjectStore.store``); any other
copy waits as usual.  An unsandboxed ``servercommand`` may bring objects
too, but what it brings is not known: it is not marked, so a copy waits
(a deadlock then ends after ``LuaCommandTimeout``)."""

import threading
from contextlib import contextmanager
from fnmatch import fnmatchcase

from pydicom.multival import MultiValue

# (level, keyword, tag) from the top: a move at a level names its keys and those above it
_KEYS = (("PATIENT", "PatientID", 0x00100020), ("STUDY", "StudyInstanceUID", 0x0020000D),
         ("SERIES", "SeriesInstanceUID", 0x0020000E), ("IMAGE", "SOPInstanceUID", 0x00080018))

_waiting = {}  # ident of a thread in awaitingObjects(): the MoveScope it waits for


class MoveScope:
    """What a move's ``identifier`` (a pydicom Dataset with its
    QueryRetrieveLevel) asks for: the values of its keys at its level and
    above, a key left empty matching anything."""

    def __init__(self, identifier):
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        levels = [name for name, _, _ in _KEYS]
        depth = levels.index(level) + 1 if level in levels else len(levels)
        self.keys = {tag: _values(identifier.get(keyword)) for _, keyword, tag in _KEYS[:depth]}

    def covers(self, attrs):
        """Whether an object with the index attributes ``attrs`` ({tag: value})
        falls within the move: each key it gives matches (a value of its
        list, ``*`` and ``?`` as wildcards)."""
        return all(any(fnmatchcase(str(attrs.get(tag) or "").strip(), value.strip()) for value in values)
                   for tag, values in self.keys.items() if any(value.strip() for value in values))


def _values(value):
    """The values of a key (a list of UIDs comes as a MultiValue)."""
    if isinstance(value, (list, MultiValue)):
        return [str(item) for item in value]
    return str(value or "").split("\\")


@contextmanager
def awaitingObjects(scope):
    """Around the calling thread's wait for a move that asks for ``scope``."""
    ident = threading.get_ident()
    _waiting[ident] = scope
    try:
        yield
    finally:
        del _waiting[ident]


def awaitedMove(ident):
    """The MoveScope the thread ``ident`` (None: no thread) waits for, or None."""
    return _waiting.get(ident)
