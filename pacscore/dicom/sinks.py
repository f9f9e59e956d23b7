"""Where the fragments of a received data set go.

Every sink has ``write(data)``, ``close() -> Deferred`` (all data is where it
belongs) and ``discard()``. Small data sets (C-FIND identifiers, commands
we refuse) stay in memory; C-STORE uses ``pacscore.storage.spool.Spool``,
and ``DiscardingSink`` for an object refused for its command's UIDs.
"""

from twisted.internet import defer

from pacscore.dicom.pdu import PDUError

MEMORY_LIMIT = 16 << 20  # bytes of a data set kept in memory (identifiers, N-ACTION/N-CREATE data sets ...)


class DiscardingSink:
    """Drops a data set as it arrives (one whose request is refused
    whatever it holds)."""

    def write(self, data):
        pass

    def close(self):
        return defer.succeed(self)

    def discard(self):
        pass


class MemorySink:
    """Collects a data set in memory; one larger than ``MEMORY_LIMIT`` is
    a PDUError (the association is aborted: a peer cannot fill our memory)."""

    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        if len(self.data) + len(data) > MEMORY_LIMIT:
            raise PDUError(f"a data set larger than {MEMORY_LIMIT >> 20} MB where only a small one belongs")
        self.data += data

    def close(self):
        return defer.succeed(self)

    def discard(self):
        self.data = bytearray()
