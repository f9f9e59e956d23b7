"""What makes a stored object survive a crash before its index row commits.

Two policies with one interface.  ``ObjectStore`` calls ``fileWritten``,
``makeFolders`` and ``folderChanged`` as it writes an object (in the I/O
pool), then hands the object's record to ``whenDurable``, which passes it
on (to the index writer) once the file is durable:

- ``FileSystemFlush`` (Linux): objects are written and renamed into place
  without fsync.  One I/O worker at a time takes every record handed over
  so far, calls syncfs(2) once per file system holding their files (which
  makes their data, their names and any new folders durable together) and
  only then passes them on.  One flush serves a whole group instead of two
  fsyncs (file, folder) per object; it overlaps with the index writer
  committing the previous group; and rows are still committed only after
  their files are durable.  syncfs also writes back whatever else is dirty
  on that file system, so a MAG device shared with heavy unrelated writers
  pays for them.
- ``PerFileSync`` (where syncfs is missing, or older than Linux 5.8, whose
  syncfs does not report failed write-back): fsync each file and its folder
  as it is written, and pass the record on at once.
"""

import ctypes
import os
import threading

from twisted.python.failure import Failure

from pacscore.storage.devices import fsyncDirectory, makeDirectories


class PerFileSync:
    """fsync every file and folder as it is written."""

    def fileWritten(self, fd):
        os.fsync(fd)

    def makeFolders(self, path):
        makeDirectories(path)

    def folderChanged(self, path):
        fsyncDirectory(path)

    def whenDurable(self, record, proceed, fail):
        proceed(record)

    def close(self):
        pass


class FileSystemFlush:
    """One syncfs(2) per file system per group of objects.

    Group commit without a thread of its own: the I/O worker that hands
    over an object while no flush runs becomes the leader and flushes
    everything handed over so far, again and again until nothing waits;
    the others just leave their objects to it.  ``devices`` are the MAG
    devices records may name; ``syncfs(fd)`` returns 0 or -1 with errno
    set, like the C function.
    """

    def __init__(self, devices, syncfs):
        self._syncfs = syncfs
        self._roots = {device.name: device.path for device in devices}
        self._descriptors = {}  # device name -> (st_dev, fd), opened on first use
        self._lock = threading.Lock()
        self._waiting = []      # (record, proceed, fail) not yet flushed
        self._leading = False   # a thread is flushing (and will look at _waiting again)

    def fileWritten(self, fd):
        pass

    def makeFolders(self, path):
        os.makedirs(path, exist_ok=True)

    def folderChanged(self, path):
        pass

    def whenDurable(self, record, proceed, fail):
        """Call ``proceed(record)`` once its file is durable, or
        ``fail(failure)``; in this thread or in the leader's.  Any thread."""
        with self._lock:
            self._waiting.append((record, proceed, fail))
            if self._leading:
                return
            self._leading = True
        while True:
            with self._lock:
                group, self._waiting = self._waiting, []
                if not group:
                    self._leading = False
                    return
            try:
                self._flushGroup(group)
            except BaseException:
                with self._lock:
                    self._leading = False  # the next object to come leads
                raise

    def _flushGroup(self, group):
        try:
            self.flush([record for record, _, _ in group])
        except Exception:
            failure = Failure()
            for _, _, fail in group:
                fail(failure)
            return
        for record, proceed, fail in group:
            try:
                proceed(record)
            except Exception:
                fail(Failure())

    def flush(self, records):
        """Make every file of ``records`` durable; ``OSError`` if the file
        system reports a failed write-back, so none of them is
        acknowledged."""
        flushed = set()
        for name in {record.deviceName for record in records}:
            fileSystem, fd = self._descriptor(name)
            if fileSystem in flushed:
                continue
            if self._syncfs(fd) != 0:
                number = ctypes.get_errno()
                raise OSError(number, f"syncfs of {self._roots[name]}: {os.strerror(number)}")
            flushed.add(fileSystem)

    def _descriptor(self, name):
        with self._lock:
            entry = self._descriptors.get(name)
            if entry is None:
                fd = os.open(self._roots[name], os.O_RDONLY | os.O_DIRECTORY)
                entry = self._descriptors[name] = (os.fstat(fd).st_dev, fd)
            return entry

    def close(self):
        """Close the descriptors kept open on the device folders."""
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


def durabilityFor(devices, release=None):
    """``FileSystemFlush`` where the C library has syncfs and the kernel
    reports its errors, else ``PerFileSync``."""
    syncfs = libcSyncfs()
    if syncfs is None or not reportsWritebackErrors(release or os.uname().release):
        return PerFileSync()
    return FileSystemFlush(devices, syncfs)
