"""A stored object as the Part-10 bytes of a web answer, a chunk at a time
(WADO-RS parts, WADO-URI ``application/dicom``, the ``dicom`` page): the
file as it is when it is in the syntax asked for (or when the compression
code asked for leaves it so), a large one converted file to file into a
little endian syntax, else made whole with the syntax's compression
code (which refuses compressed pixels whose frames are too large to
decode before decoding them: ``transcode.checkFrameSize``).  A file sent
as it is stays open (in a ``StoredData``) until it is sent or the client
goes, as a retrieve's large objects do: the object goes whole as it was
when it started even when it is stored again meanwhile.  Its chunks
(``FileChunks``) close it when they are closed, started or not (a HEAD,
a stream refused before it starts).  Never a
file cut short or damaged:
each caller checks the file once (``intactFile``) and passes on the one
it returns."""

import io

from pacscore.codecs.compression import mayChange
from pacscore.control.pictures import dicomFile
from pacscore.dicom.storeddata import closeIfStored
from pacscore.storage.part10 import readFileMeta
from pacscore.web.dicomweb.instancefiles import startAsStored, startConverted
from pacscore.web.objects import onCurrentFile, onFile, shownFrom

AS_STORED = "*"  # the transfer syntax that means: as stored
CHUNK = 1 << 20


def _partObject(path, code, quality, change):
    """In the I/O pool: ``(transfer syntax, Part-10 bytes)`` of a stored object in ``code``."""
    data = dicomFile(path, 0, code, None, quality, change)
    return readFileMeta(io.BytesIO(data))[0], data


async def objectStream(archive, path, wanted, code, change=None, quality=None):
    """``(transfer syntax, chunks)`` of a stored object in ``wanted`` (a
    syntax or *) with compression ``code``, or None when it does not go in
    it: the file read 1 MB at a time when it is in that syntax already, a
    large one converted file to file into a little endian syntax and read
    from there, else made whole with the syntax's code (a lossy one of
    ``quality``, None: LossyQuality). ``change(dataset)``, when given,
    changes it first (never sent as stored then)."""
    if not change:
        read, started = await onCurrentFile(archive, path, startAsStored, wanted, CHUNK, archive.workers.deferToWorker)
        if started is not None:
            return _asStored(read, started)
    if code is None:
        return None
    if wanted != AS_STORED:
        converted = await onFile(archive, path, startConverted, wanted, archive.workers.deferToWorker, change)
        if converted is not None:
            return wanted, FileChunks(_convertedChunks(*converted), converted[1])
    syntax, data = await onFile(archive, path, _partObject, code, quality or archive.lossyQuality,
                                change)
    if wanted in (AS_STORED, syntax):
        return syntax, _fileChunks(path, data)
    return None


async def unchangedStream(archive, path, code):
    """``(transfer syntax, chunks)`` of a stored object read 1 MB at a time
    when the compression ``code`` leaves it as it is, else None."""
    read, started = await onCurrentFile(archive, path, _startUnchanged, code, archive.workers.deferToWorker)
    return None if started is None else _asStored(read, started)


async def intactFile(archive, path):
    """The file of the stored object at ``path`` to send: ``path`` when it
    reads to its end, else its mirror copy when that one does
    (``ObjectReader.intact``); Unreadable (a 500, logged) when neither
    does: a file cut short or damaged is never sent as it is."""
    return await onFile(archive, path, archive.objectReader.intact)


def _startUnchanged(path, code, deferToWorker):
    """In the I/O pool: ``startAsStored`` of a file that ``code`` leaves as
    it is, else None (the file closed)."""
    started = startAsStored(path, AS_STORED, CHUNK, deferToWorker)
    if started is not None and mayChange(None, started[0], code):
        started[2].close()
        return None
    return started


def _asStored(path, started):
    """``(transfer syntax, chunks)`` of what ``startAsStored`` started on
    the file ``path``: the rest read from the file it opened, never from
    another one the object is stored in later."""
    syntax, first, stored = started
    return syntax, FileChunks(_fileChunks(path, first, stored), stored)


class FileChunks:
    """The ``chunks`` (an async generator) read from the open StoredData
    ``stored``: its file is closed when they are closed (``aclose``),
    whether or not they were started, where a generator closed before its
    first chunk runs no ``finally`` and would leave it to the garbage
    collector."""

    def __init__(self, chunks, stored):
        self.chunks = chunks
        self.stored = stored

    def __aiter__(self):
        return self

    def __anext__(self):
        return self.chunks.__anext__()

    async def aclose(self):
        try:
            await self.chunks.aclose()
        finally:
            closeIfStored(self.stored)


async def _fileChunks(path, first, stored=None):
    """``first``, then the rest of the open file of the StoredData
    ``stored`` (the stored file ``path``), if any, read in the I/O pool a
    chunk at a time; it is closed at the end or when the client goes. A
    read that fails (the file cut short) is Unreadable (logged)."""
    try:
        yield first
        offset = len(first)
        while stored is not None and offset < len(stored):
            chunk = await shownFrom(path, stored.read(offset, min(CHUNK, len(stored) - offset)))
            yield chunk
            offset += len(chunk)
    finally:
        closeIfStored(stored)


async def _convertedChunks(header, converted):
    """``header``, then the data set of the StoredData ``converted`` a
    chunk at a time; its temporary file closed at the end."""
    try:
        yield header
        for position in range(0, len(converted), CHUNK):
            yield await converted.read(position, min(CHUNK, len(converted) - position))
    finally:
        converted.close()
