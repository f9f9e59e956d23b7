"""Deferred locks by key, made when first asked for and dropped once no
one holds or waits for them: one at a time per key (a SOP instance being
changed) among any number of keys."""

from twisted.internet import defer


class KeyedLocks:
    """``run(key, f, *args)``: ``f`` once the runs of ``key`` asked for
    before are done."""

    def __init__(self):
        self._locks = {}

    def run(self, key, f, *args, **kwargs):
        """A Deferred of what ``f(*args, **kwargs)`` (a coroutine function
        or one returning a Deferred or a value) gives."""
        lock = self._locks.setdefault(key, defer.DeferredLock())

        def dropIdle(result):
            if not lock.locked and not lock.waiting and self._locks.get(key) is lock:
                del self._locks[key]
            return result

        return lock.run(f, *args, **kwargs).addBoth(dropIdle)

    def __len__(self):
        return len(self._locks)
