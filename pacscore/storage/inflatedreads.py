"""A deflated data set (PS3.5 A.5) read by pydicom as a file that inflates
only as far as it is read: a window at a time (``InflateWindow``), a few
kilobytes kept behind the position for pydicom's steps back (an element's
header read again).  A read stopping before the Pixel Data inflates
nothing after it, however much follows (deflate makes a gigabyte of
zeros a megabyte), and one that would go past ``limit`` bytes is a
DatasetError before anything more is inflated, so that a small deflated
file cannot make a reader hold gigabytes."""

from pacscore.storage.attributes import DatasetError, InflateWindow

_BACKLOG = 1 << 16  # inflated bytes kept behind the position
_PIECE = 1 << 16  # the fewest inflated at a time


class InflatedReads:
    """The raw deflate stream ``readCompressed(size)`` gives, read
    inflated (``read``, ``tell``, forward ``seek`` and back up to
    ``_BACKLOG`` bytes), ``limit`` bytes of it at most."""

    def __init__(self, readCompressed, limit):
        self._window = InflateWindow(readCompressed)
        self._kept = bytearray()  # inflated bytes from offset _base
        self._base = self._pos = 0
        self._limit = limit

    def tell(self):
        return self._pos

    def seek(self, offset, whence=0):
        if whence not in (0, 1):
            raise DatasetError("a deflated data set is read from its start, not its end")
        pos = offset + (self._pos if whence == 1 else 0)
        if pos < self._base:
            raise DatasetError(f"cannot go back to offset {pos} in a deflated data set")
        self._pos = pos
        return pos

    def read(self, size=-1):
        end = self._limit if size is None or size < 0 else self._pos + size
        if end > self._limit:
            raise DatasetError(f"the deflated data set is read past {self._limit >> 20} MB, all that is "
                               f"inflated into memory for it")
        self._fill(end)
        data = bytes(self._kept[self._pos - self._base:end - self._base])
        self._pos += len(data)
        return data

    def _fill(self, end):
        """Inflate up to offset ``end`` (or the end of the stream), dropping
        what lies more than ``_BACKLOG`` before the position."""
        while True:
            drop = min(self._pos - _BACKLOG - self._base, len(self._kept))
            if drop > 0:
                del self._kept[:drop]
                self._base += drop
            if self._base + len(self._kept) >= end:
                return
            piece = self._window.inflate(max(min(end - self._base - len(self._kept), 1 << 24), _PIECE))
            if not piece:
                return
            self._kept += piece
