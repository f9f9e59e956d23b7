"""Whether the index names every object stored on the MAG devices:
``IndexCompleteness``.

It may miss some while a regen of their device is pending or under way
(one a stop cut short, run again at the next start by ``InterruptedRegen``;
``regen`` and ``regendev``, whose tables are cleared first), which the
device's ``PacsRegen`` mark tells a later start too; a regen that failed
keeps its mark, and so the devices, until it is run again, and
``initializetables``, clearing the marks, releases those no regen is
re-entering (``marksCleared``).  An index holding no image beside devices
holding DICOM files is only warned of at start-up: no mark would tell the
next start, and new objects would wait for nothing.  Meanwhile the
work that would take an object the index does not name for one that is
gone waits (``whenComplete``): the export queue (a forward finding
nothing would be done and deleted, an export filter matching nothing
would drop its job) and the storage commitment checks (an object not found
is reported as not committed).  On the reactor thread.
"""

import contextlib
from collections import Counter

from twisted.internet import defer


class IndexCompleteness:
    """The devices whose objects the index may miss, and why."""

    def __init__(self):
        self._missing = {}  # device name: why the index may miss its objects
        self._waiting = []  # the Deferreds of whenComplete
        self._running = Counter()  # device name: the regens re-entering it now (``regenerating``)

    @property
    def complete(self):
        """Whether the index names every stored object, as far as is known."""
        return not self._missing

    def why(self):
        """Why the index may miss objects, for a log line ("" when complete)."""
        return "; ".join(f"{name}: {why}" for name, why in sorted(self._missing.items()))

    def mayMiss(self, deviceNames, why):
        """The index may miss objects of ``deviceNames`` (names), for the
        reason ``why``, until ``reentered``."""
        for name in deviceNames:
            self._missing[name] = why

    @contextlib.contextmanager
    def regenerating(self, deviceNames):
        """While in it, a regen re-enters ``deviceNames``: the index may
        miss their objects, from its start until ``reentered`` (after a
        failure, until a regen of them is run again)."""
        self.mayMiss(deviceNames, "its regen is under way")
        self._running.update(deviceNames)
        try:
            yield
        finally:
            self._running.subtract(deviceNames)
            for name in deviceNames:
                if name in self._missing:  # not reentered: the regen failed
                    self._missing[name] = "its regen failed: run it again"

    def marksCleared(self):
        """The ``PacsRegen`` marks were cleared (``initializetables``: an
        empty index asked for): the devices no regen re-enters now are no
        longer waited for."""
        self.reentered([name for name in self._missing if self._running[name] <= 0])

    def reentered(self, deviceNames):
        """A regen of ``deviceNames`` is complete: the work waiting goes on
        once no device is left missing."""
        for name in deviceNames:
            self._missing.pop(name, None)
        if self.complete:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def whenComplete(self):
        """A Deferred firing once the index is complete (at once if it is)."""
        if self.complete:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting.append(d)
        return d
