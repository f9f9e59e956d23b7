"""Writing an object's file front to back, its bulk past the page cache.

Every object is flushed to the disk before it is acknowledged, so keeping
its bytes in the page cache on the way gains nothing when it is stored: it
costs a copy into newly allocated cache pages, then their write-back during
the flush.  Files of at least ``DirectWriteSize`` bytes (dicom.ini) are
therefore written with O_DIRECT, from a page-aligned buffer in whole blocks;
only the last partial block goes through the page cache.  On the 2-core VM
of the benchmarks (ext4 on virtio) writing a file and flushing it with
syncfs took 0.85 ms instead of 3.4 ms for 512 KB, and 3.5 ms instead of
21 ms for 4 MB: a guest's fresh cache pages cost the host a page fault
each.  Below about 128 KB both ways cost the same.

A file system that refuses O_DIRECT (EINVAL: tmpfs before Linux 6.6, some
FUSE and network file systems) gets the rest of its files through the page
cache, with one log line.
"""

import errno
import fcntl
import mmap
import os
import threading

from twisted.logger import Logger

ALIGNMENT = 4096        # direct writes start and end on multiples of this (the largest logical block size)
BUFFER_SIZE = 1 << 20   # bytes gathered before a direct write
DEFAULT_DIRECT_SIZE = 128 << 10  # DirectWriteSize
O_DIRECT = getattr(os, "O_DIRECT", 0)  # 0 where the system has none (macOS): never direct


class FileWrites:
    """How object files are written: ``open`` one, ``write``, ``finish``, ``close``.

    ``directSize``: files of at least this many bytes are written with
    O_DIRECT; 0 writes every file through the page cache.
    """

    log = Logger()
    freeBuffers = 8  # kept for reuse after a burst of large objects; more are unmapped

    def __init__(self, directSize=0):
        self.directSize = directSize
        self._buffers = []      # page-aligned buffers free for reuse (their pages stay mapped)
        self._lock = threading.Lock()
        self._refused = set()   # st_dev of file systems that refused O_DIRECT

    def open(self, path, size=None, create=False):
        """An ``ObjectFile`` writing ``path`` (an existing empty file, or a
        new one if ``create``) for ``size`` bytes (None: more than any
        threshold, as for a spooled data set)."""
        flags = os.O_WRONLY | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o644)
        direct = bool(O_DIRECT) and 0 < self.directSize <= (size if size is not None else self.directSize)
        if direct:
            try:
                direct = self._startDirect(fd, path)
            except BaseException:
                os.close(fd)
                raise
        return ObjectFile(fd, path, self, self._takeBuffer() if direct else None)

    def _startDirect(self, fd, path):
        if os.fstat(fd).st_dev in self._refused:
            return False
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | O_DIRECT)
        except OSError as e:
            self.failed(fd, path, e)
            return False
        return True

    def failed(self, fd, path, error):
        """Setting O_DIRECT on ``fd`` (open on ``path``), or a direct write,
        raised ``error``: EINVAL means its file system refuses O_DIRECT,
        and gets the page cache from now on; anything else is raised."""
        if error.errno != errno.EINVAL:
            raise error
        device = os.fstat(fd).st_dev
        if device not in self._refused:
            self._refused.add(device)
            self.log.info("the file system of {path} refuses O_DIRECT ({error}); its objects are "
                          "written through the page cache", path=path, error=error)

    def _takeBuffer(self):
        with self._lock:
            if self._buffers:
                return self._buffers.pop()
        return mmap.mmap(-1, BUFFER_SIZE)

    def giveBack(self, buffer):
        with self._lock:
            if len(self._buffers) < self.freeBuffers:
                self._buffers.append(buffer)
                return
        buffer.close()


class ObjectFile:
    """One file being written front to back: ``write``, then ``finish``;
    ``fd`` stays open until ``close``."""

    def __init__(self, fd, path, writes, buffer=None):
        self.fd = fd
        self.path = path
        self._writes = writes
        self._buffer = buffer   # page-aligned, while writing directly
        self._filled = 0

    @property
    def direct(self):
        """Whether the file is (still) written with O_DIRECT."""
        return self._buffer is not None

    def write(self, buffers):
        """Append ``buffers`` (bytes-like)."""
        if self._buffer is None:
            writeAll(self.fd, buffers)
            return
        for data in buffers:
            with memoryview(data) as whole, whole.cast("B") as view:
                self._gather(view)

    def _gather(self, view):
        offset = 0
        while offset < len(view):
            if self._buffer is None:  # no longer direct
                writeAll(self.fd, [view[offset:]])
                return
            n = min(len(view) - offset, BUFFER_SIZE - self._filled)
            self._buffer[self._filled:self._filled + n] = view[offset:offset + n]
            self._filled += n
            offset += n
            if self._filled == BUFFER_SIZE:
                self._writeGathered(BUFFER_SIZE)

    def writeBlocks(self):
        """Write the whole blocks gathered so far (directly), keeping the
        rest for later writes: a file written while its bytes arrive."""
        if self._buffer is None:
            return
        whole = self._filled - self._filled % ALIGNMENT
        if whole:
            self._writeGathered(whole)

    def finish(self):
        """Write what is still gathered: its whole blocks directly, the last
        partial block through the page cache."""
        if self._buffer is None:
            return
        whole = self._filled - self._filled % ALIGNMENT
        if whole:
            self._writeGathered(whole)
        if self._buffer is not None:
            self._writeBuffered(0)

    def close(self):
        os.close(self.fd)
        self._releaseBuffer()

    def _writeGathered(self, length):
        """Write the first ``length`` gathered bytes (whole blocks) directly
        and keep the rest; if the file system refuses, or writes less, the
        page cache takes everything gathered."""
        with memoryview(self._buffer) as view:
            try:
                written = os.write(self.fd, view[:length])
            except OSError as e:
                self._writes.failed(self.fd, self.path, e)
                written = 0
        if written == length:
            self._filled -= length
            self._buffer.move(0, length, self._filled)
        else:
            self._writeBuffered(written)

    def _writeBuffered(self, start):
        """Leave O_DIRECT and write the gathered bytes from ``start`` through the page cache."""
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~O_DIRECT)
        with memoryview(self._buffer) as view:
            writeAll(self.fd, [view[start:self._filled]])
        self._filled = 0
        self._releaseBuffer()

    def _releaseBuffer(self):
        if self._buffer is not None:
            self._writes.giveBack(self._buffer)
            self._buffer = None


def writeAll(fd, buffers):
    """Write ``buffers`` (bytes-like) to ``fd`` with as few system calls as
    the kernel allows (each one also hands the GIL over and back)."""
    views = [view for view in (memoryview(buffer).cast("B") for buffer in buffers) if len(view)]
    while views:
        written = os.writev(fd, views)
        if written == 0:
            raise OSError(errno.EIO, "the file system accepted no byte")
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if views:
            views[0] = views[0][written:]
