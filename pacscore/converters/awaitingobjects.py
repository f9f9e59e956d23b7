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

from pacscore.export.queue import LEVELS
from pacscore.export.selection import LEVEL_KEYS

_waiting = {}  # ident of a thread in awaitingObjects(): the MoveScope it waits for


class MoveScope:
    """What a move's ``identifier`` (a pydicom Dataset with its
    QueryRetrieveLevel) asks for: the values of its keys at its level and
    above, a key left empty matching anything."""

    def __init__(self, identifier):
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        depth = LEVELS.index(level) + 1 if level in LEVELS else len(LEVELS)  # its keys and those above it
        self.keys = {LEVEL_KEYS[at][0]: _values(identifier.get(LEVEL_KEYS[at][2])) for at in LEVELS[:depth]}

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
