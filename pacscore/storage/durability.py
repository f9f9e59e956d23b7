"""What makes a stored object and its index row survive a power loss.

Two policies with one interface.  ``ObjectStore`` calls ``fileWritten``,
``makeFolders`` and ``folderChanged`` as it writes an object (in the I/O
pool); the index writer's flusher thread calls ``flush`` with the image
records of the transactions committed since its last call, before any of
them is acknowledged:

- ``FileSystemFlush`` (Linux): objects are written and renamed into place
  without fsync, and their rows committed without a flush of their own (the
  SQLite writer runs ``synchronous=NORMAL``).  The flusher then calls
  syncfs(2) once per file system holding their files or the index
  database, which makes the files, their names, new folders and the
  committed rows durable together: one flush per group of commits, while
  the writer commits the next, instead of an fsync of every file and folder
  plus one of the database.  A power loss during that flush can keep a row
  whose file it loses; such rows are marked pending in the same transaction
  and checked at the next start-up (``Index.recoverPending``).  syncfs also
  writes back whatever else is dirty on that file system, so a MAG device
  shared with heavy unrelated writers pays for them.
- ``PerFileSync`` (where syncfs is missing, or older than Linux 5.8, whose
  syncfs does not report failed write-back): fsync each file and its folder
  as it is written; the index commits durably by itself.
"""

import ctypes
import os
import threading

from pacscore.storage.devices import fsyncDirectory, makeDirectories


class FlushError(OSError):
    """The file system reported a failed write-back: nothing of the group
    flushed is acknowledged."""


class PerFileSync:
    """fsync every file and folder as it is written."""

    flushesAfterCommit = False

    def fileWritten(self, fd):
        os.fsync(fd)

    def makeFolders(self, path):
        makeDirectories(path)

    def folderChanged(self, path):
        fsyncDirectory(path)

    def flush(self, records):
        pass

    def close(self):
        pass


class FileSystemFlush:
    """One syncfs(2) per file system per committed group.

    ``devices`` are the MAG devices records may name; ``indexFolder`` holds
    the index database when it is a local file (SQLite), else None.
    ``syncfs(fd)`` returns 0 or -1 with errno set, like the C function.
    """

    flushesAfterCommit = True

    def __init__(self, devices, syncfs, indexFolder=None):
        self._syncfs = syncfs
        self._indexFolder = indexFolder
        self._roots = {device.name: device.path for device in devices}
        self._descriptors = {}  # folder -> (st_dev, fd), opened on first use
        self._lock = threading.Lock()

    def fileWritten(self, fd):
        pass

    def makeFolders(self, path):
        os.makedirs(path, exist_ok=True)

    def folderChanged(self, path):
        pass

    def flush(self, records):
        """Make the files of ``records`` and the index's committed rows
        durable; ``FlushError`` if a file system reports a failed write-back.
        Any thread (the index writers)."""
        folders = {self._roots[record.deviceName] for record in records}
        if self._indexFolder is not None:
            folders.add(self._indexFolder)
        flushed = set()
        for folder in sorted(folders):
            fileSystem, fd = self._descriptor(folder)
            if fileSystem in flushed:
                continue
            if self._syncfs(fd) != 0:
                number = ctypes.get_errno()
                raise FlushError(number, f"syncfs of {folder}: {os.strerror(number)}")
            flushed.add(fileSystem)

    def _descriptor(self, folder):
        with self._lock:
            entry = self._descriptors.get(folder)
            if entry is None:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
                entry = self._descriptors[folder] = (os.fstat(fd).st_dev, fd)
            return entry

    def close(self):
        """Close the descriptors kept open on the folders."""
        with self._lock:
            descriptors, self._descriptors = self._descriptors, {}
        for _, fd in descriptors.values():
            os.close(fd)


def libcSyncfs():
    """The C library's syncfs (it releases the GIL while it waits), or None."""
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs


def reportsWritebackErrors(release):
    """True for Linux releases (``os.uname().release``) whose syncfs
    reports failed write-back (5.8 and later); before, it always succeeded."""
    try:
        major, minor = (int(part) for part in release.split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


def durabilityFor(devices, indexFolder=None, release=None):
    """``FileSystemFlush`` where the C library has syncfs and the kernel
    reports its errors, else ``PerFileSync``.  ``indexFolder``: see
    ``FileSystemFlush``."""
    syncfs = libcSyncfs()
    if syncfs is None or not reportsWritebackErrors(release or os.uname().release):
        return PerFileSync()
    return FileSystemFlush(devices, syncfs, indexFolder)
