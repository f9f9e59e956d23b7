"""Where the fragments of a received data set go.

Every sink has ``write(data)``, ``close() -> Deferred`` (all data is where it
belongs) and ``discard()``. Small data sets (C-FIND identifiers, commands
we refuse) stay in memory; C-STORE uses ``pacscore.storage.spool.Spool``.
"""

from twisted.internet import defer


class MemorySink:
    """Collects a data set in memory."""

    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += data

    def close(self):
        return defer.succeed(self)

    def discard(self):
        self.data = bytearray()
