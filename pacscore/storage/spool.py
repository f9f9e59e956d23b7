"""A C-STORE data set arriving in fragments, kept with bounded memory.

Up to ``threshold`` bytes stay in memory, as the fragments were received
(views of bytes that never change are kept, not copied, until the whole is
wanted: growing one buffer cost a 512 KB object more time than framing
it). Past that the spool becomes a temporary file on the MAG device that
starts with the Part-10 header, so the finished object is renamed into
place without another copy. File writes go to an I/O thread in order
(through ``pacscore.storage.objectfiles``); while more than ``maxBacklog``
bytes wait, the peer's transport is paused.  An in-memory data set the
store will write as received may also be written as it arrives
(``EarlyWrite``): past ``EARLY_WRITE`` bytes an I/O worker starts writing it
into a temporary file, so that once its last fragment came only the tail
is left to write (a 512 KB image's direct write, about 0.7 ms on the
benchmarks' VM, overlaps its receipt). ``copyInto`` fills a spool
from a file (an import, an uploaded part) the same way; ``spooledFrom``
makes such a spool.
"""

import itertools
import os
import threading

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.storage.devices import removeFile
from pacscore.storage.objectfiles import FileWrites
from pacscore.pacing import Pacer

_names = itertools.count()
COPY_CHUNK = 1 << 20
EARLY_WRITE = 256 << 10  # bytes of an in-memory data set from which it is written as it arrives, at a time


def _readAt(source, start, length):
    source.seek(start)
    return source.read(length)


async def copyInto(spool, pacer, source, start, end, runInThread):
    """Copy bytes ``start`` to ``end`` of the open file ``source`` into
    ``spool``, read a chunk at a time with ``runInThread`` (the I/O pool),
    waiting while ``pacer``, the spool's transport, is paused."""
    position = start
    while position < end:
        chunk = await runInThread(_readAt, source, position, min(COPY_CHUNK, end - position))
        if not chunk:
            raise OSError(f"the file ended at byte {position} of {end}")
        spool.write(chunk)
        position += len(chunk)
        await pacer.resumed()  # while the spool's writes to disk fall behind


async def spooledFrom(objectStore, incoming, source, start, end, runInThread):
    """The spool of ``objectStore`` for ``incoming`` filled with bytes
    ``start`` to ``end`` of the open file ``source`` (``copyInto``);
    discarded when reading fails."""
    pacer = Pacer()
    spool = objectStore.spool(incoming, pacer)
    try:
        await copyInto(spool, pacer, source, start, end, runInThread)
    except BaseException:
        spool.discard()
        raise
    return spool


class EarlyWrite:
    """The bytes of an in-memory data set written into a temporary file
    while it arrives.  ``add`` (the reactor thread) gathers them; each
    ``EARLY_WRITE`` bytes are written by ``callInThread`` (an I/O worker; no
    answer comes back to the reactor), their whole blocks directly.
    ``openTemporary()`` gives ``(path, ObjectFile)`` of a temporary file.
    ``finish`` or ``drop`` ends it."""

    log = Logger()

    def __init__(self, fragments, openTemporary, callInThread):
        self._openTemporary = openTemporary
        self._callInThread = callInThread
        self._lock = threading.Lock()     # guards _pending (the reactor adds, workers take)
        self._writing = threading.Lock()  # one write at a time, in order; guards what follows
        self._pending = list(fragments)
        self._pendingBytes = 0
        self._path = None
        self._file = None
        self._failed = False
        self._ended = False  # finished or dropped: nothing more is written
        self._callInThread(self._write)

    def add(self, data):
        with self._lock:
            self._pending.append(data)
        self._pendingBytes += len(data)
        if self._pendingBytes >= EARLY_WRITE:
            self._pendingBytes = 0
            self._callInThread(self._write)

    def _write(self, last=False):
        with self._writing:
            with self._lock:
                fragments, self._pending = self._pending, []
            if self._ended or self._failed or not fragments:
                return
            try:
                if self._file is None:
                    self._path, self._file = self._openTemporary()
                self._file.write(fragments)
                if not last:
                    self._file.writeBlocks()
            except Exception as e:  # a full disk, a missing device ...: the store writes it as before, and says why
                self._fail(e)

    def _fail(self, error):
        self._failed = True
        self.log.warn("could not write {path} as its data set arrived ({error}); it is written again once whole",
                      path=self._path or "a temporary file", error=error)

    def finish(self, complete):
        """In the I/O pool, after the last fragment: write the rest, call
        ``complete(file)`` (the store's ``_complete``: the ``ObjectFile``
        finished and made durable) and give the file's path, now the
        caller's; None when a write failed (logged; then the file is
        removed, and the caller writes the object itself)."""
        self._write(last=True)
        with self._writing:
            self._ended = True
            if self._file is not None and not self._failed:
                try:
                    complete(self._file)
                except Exception as e:
                    self._fail(e)
            if self._failed or self._file is None:
                self._remove()
                return None
            self._file.close()
            return self._path

    def drop(self):
        """The file is not wanted (the data set went to a spool file, was
        discarded, or is stored changed): removed in an I/O worker."""
        self._callInThread(self.abandon)

    def abandon(self):
        """In the I/O pool: ``drop`` done at once, by the caller's worker."""
        with self._writing:
            if not self._ended:
                self._ended = True
                self._remove()

    def _remove(self):
        """Close and remove the file, if any (under ``_writing``)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            path, self._path = self._path, None
            try:
                removeFile(path)
            except OSError as e:
                self.log.warn("could not remove the temporary file {path}: {error}", path=path, error=e)


class Spool:
    """Collects one data set; see the module docstring.  ``earlyWrite``:
    None, or ``earlyWrite(fragments)``, the ``EarlyWrite`` that starts with
    ``fragments`` (the header and the first ``EARLY_WRITE`` bytes) when an
    in-memory data set reaches that many bytes; ``takeEarlyWrite`` gives it
    to the store once the data set is whole."""

    log = Logger()

    def __init__(self, directory, header, threshold, runInThread, transport=None,
                 chunkSize=1 << 20, maxBacklog=8 << 20, openFile=None, earlyWrite=None):
        self.directory = directory
        self.header = header
        self.threshold = threshold
        self.path = None
        self.size = 0
        self._memory = []  # the fragments while in memory, else None
        self._runInThread = runInThread
        self._openFile = openFile or FileWrites().open
        self._transport = transport
        self._chunkSize = chunkSize
        self._maxBacklog = maxBacklog
        self._pending = []
        self._pendingBytes = 0
        self._backlog = 0
        self._paused = False
        self._file = None
        self._failure = None
        self._tail = defer.succeed(None)
        self._earlyWrite = earlyWrite
        self._early = None  # the EarlyWrite under way

    @property
    def inMemory(self):
        """The data set bytes while it is held in memory, else None."""
        if self._memory is None:
            return None
        if len(self._memory) != 1 or not isinstance(self._memory[0], bytes):
            self._memory = [b"".join(self._memory)]
        return self._memory[0]

    def write(self, data):
        """Add a fragment: bytes, or a view of bytes (kept as it is), or
        any other bytes-like object (copied)."""
        if not (isinstance(data, bytes) or (isinstance(data, memoryview) and isinstance(data.obj, bytes))):
            data = bytes(data)
        self.size += len(data)
        if self._failure is not None:
            return
        if self._memory is not None:
            self._memory.append(data)
            if self._early is not None:
                self._early.add(data)
            elif self._earlyWrite is not None and EARLY_WRITE <= self.size <= self.threshold:
                self._early = self._earlyWrite([self.header, *self._memory])
            if self.size > self.threshold:
                self._dropEarly()
                self.path = os.path.join(self.directory, f"spool-{os.getpid()}-{next(_names)}.part")
                fragments, self._memory = self._memory, None
                self._queue([self.header, *fragments])
            return
        self._pending.append(data)
        self._pendingBytes += len(data)
        if self._pendingBytes >= self._chunkSize:
            self._queue(self._pending)

    def _queue(self, fragments):
        length = sum(len(fragment) for fragment in fragments)
        self._pending, self._pendingBytes = [], 0
        self._backlog += length
        if self._backlog > self._maxBacklog and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pauseProducing()
        self._tail.addCallback(lambda _: self._runInThread(self._writeChunk, fragments))
        self._tail.addCallbacks(self._written, self._writeFailed,
                                callbackArgs=(length,), errbackArgs=(length,))

    def _writeChunk(self, fragments):
        """In the I/O thread; the first chunk creates the file (creating a
        file can wait for the file system's journal: never on the reactor)."""
        if self._file is None:
            self._file = self._openFile(self.path, create=True)
        self._file.write(fragments)

    def _written(self, _, length):
        self._backlog -= length
        if self._paused and self._backlog <= self._maxBacklog // 2:
            self._paused = False
            if self._transport is not None and self._transport.connected:
                self._transport.resumeProducing()

    def _writeFailed(self, failure, length):
        self._failure = failure
        self._written(None, length)

    def close(self):
        """Fires with this spool once every byte is in memory or in the file
        (flushed to the OS, not yet fsynced); fails if a write failed."""
        if self.path is None:
            return defer.succeed(self)
        if self._pending:
            self._queue(self._pending)
        self._tail.addCallback(lambda _: self._runInThread(self._closeFile) if self._file else None)
        done = defer.Deferred()

        def report(_):
            if self._failure is not None:
                done.errback(self._failure)
            else:
                done.callback(self)

        self._tail.addBoth(report)
        return done

    def _closeFile(self):
        try:
            self._file.finish()
        finally:
            self._dropFile()

    def _dropFile(self):
        self._file.close()
        self._file = None

    def takeEarlyWrite(self):
        """The ``EarlyWrite`` of the whole in-memory data set, if one was
        started, now the caller's to finish or drop; else None."""
        early, self._early = self._early, None
        return early

    def _dropEarly(self):
        if self._early is not None:
            self._early.drop()
            self._early = None

    def discard(self):
        """Drop the data; the temporary file (if any) is removed."""
        self._dropEarly()
        self._memory = None
        path, self.path = self.path, None
        if path is None:
            return

        def remove():
            if self._file is not None:
                self._dropFile()
            if os.path.exists(path):
                os.unlink(path)

        self._tail.addBoth(lambda _: self._runInThread(remove))
        self._tail.addErrback(lambda f: self.log.failure("could not remove spool {path}", f, path=path))
