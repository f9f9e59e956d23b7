"""Log lines of a condition that recurs: the first of each kind a warning,
the next ones debug lines.

A column of a table cut to its length again and again, a modality that
sends every object with text beyond ASCII and no Specific Character Set:
one warning says so, the details of the others are at debug level.  With
a ``period`` a kind is warned of again that many seconds after its last
warning, with the count of the debug lines between.
"""

import threading
import time


class FirstWarned:
    """The kinds of condition warned of (``report``); thread-safe."""

    def __init__(self, period=None, clock=time.monotonic):
        self.period = period  # seconds after which a kind is warned of again; None: never
        self.clock = clock
        self._warned = {}  # kind: [the time of its last warning, debug lines since]
        self._lock = threading.Lock()

    def report(self, log, kind, text, further, **fields):
        """Log ``text`` (a format of ``fields``) with ``log``: a warning
        followed by ``further`` (a format saying the next ones are debug
        lines) when ``kind`` is new or was warned of ``period`` seconds ago
        or more (with the count of its debug lines since), else a debug line."""
        now = self.clock()
        with self._lock:
            warned = self._warned.get(kind)
            if warned is not None and (self.period is None or now - warned[0] < self.period):
                warned[1] += 1
                since = None
            else:
                since = warned[1] if warned is not None else 0
                self._warned[kind] = [now, 0]
        if since is None:
            log.debug(text, **fields)
        elif since:
            log.warn(text + " (" + further + "; {since} since the last warning)", since=since, **fields)
        else:
            log.warn(text + " (" + further + ")", **fields)
