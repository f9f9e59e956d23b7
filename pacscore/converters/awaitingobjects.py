"""The worker threads whose converter waits for a request that may bring
objects into this server (``dicommove``, a control command through an
unsandboxed ``servercommand``).  A copy of the object such a converter
imports that arrives meanwhile may be the request's own, which cannot
wait for that import to end (``ObjectStore.store``)."""

import threading
from contextlib import contextmanager

_waiting = set()  # idents of the threads in awaitingObjects()


@contextmanager
def awaitingObjects():
    """Around the calling thread's wait for such a request."""
    ident = threading.get_ident()
    _waiting.add(ident)
    try:
        yield
    finally:
        _waiting.discard(ident)


def isAwaitingObjects(ident):
    """Whether the thread ``ident`` (None: no thread) waits for such a request."""
    return ident in _waiting
