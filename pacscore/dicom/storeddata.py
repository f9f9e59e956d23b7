"""The data set of a large stored object left in its file until it is
sent.

A retrieve hands a ``StoredData`` to ``DicomProtocol.sendMessage`` in place
of the bytes; the protocol reads it a piece at a time in the I/O pool as
the connection takes it, so an object of any size costs a few hundred kB
of memory while it goes.  The file is opened when the object is read ahead
(a file replaced or deleted meanwhile still sends what was located) and
closed once it is sent or given up.  One that must go in another syntax
is converted into an unnamed temporary file beside it where that can be
done a piece at a time (``pacscore.codecs.filetranscode``), and goes from
there the same way.
"""

import os
import tempfile

from pacscore.codecs.compression import forPeer, forPeerChanges
from pacscore.codecs.evenlengths import evenFile, evenLengths
from pacscore.codecs.filetranscode import transcodeFile
from pacscore.codecs.syntaxes import isCompressed
from pacscore.codecs.nkipixels import NKI_PIXEL_DATA
from pacscore.codecs.transcode import TranscodeError
from pacscore.db.query import SOP_CLASS_UID, SOP_INSTANCE_UID
from pacscore.storage.attributes import PIXEL_DATA, DatasetError, readAttributes, walkDataset
from pacscore.storage.reader import readAt

STREAMED_OBJECT = 8 << 20  # data sets larger than this (or decoding to more) stay in their file
ROWS, COLUMNS, SAMPLES_PER_PIXEL, BITS_ALLOCATED, NUMBER_OF_FRAMES = (
    0x00280010, 0x00280011, 0x00280002, 0x00280100, 0x00280008)


class StoredData:
    """``length`` bytes of data set at ``offset`` of the open ``file``;
    ``deferToWorker`` runs its reads in the I/O pool."""

    def __init__(self, file, offset, length, deferToWorker):
        self.file = file
        self.offset = offset
        self.length = length
        self.deferToWorker = deferToWorker

    def __len__(self):
        return self.length

    def read(self, position, size):
        """A Deferred firing with ``size`` bytes from ``position``."""
        return self.deferToWorker(self._readAt, position, size)

    def readAll(self):
        """In the I/O pool: the whole data set as bytes (the file stays open)."""
        return self._readAt(0, self.length)

    def close(self):
        self.file.close()

    def transcoded(self, fromSyntax, toSyntax, folder, change=None):
        """In the I/O pool: a ``StoredData`` of this data set (in
        ``fromSyntax``) converted to ``toSyntax`` (and changed by
        ``change(dataset)`` when given), in an unnamed temporary
        file in ``folder`` (else the system's temporary folder) that goes
        when it is closed; this one stays open.  Raises what
        ``transcodeFile`` raises."""
        out = _temporaryFile(folder)
        try:
            length = transcodeFile(self.file, self.offset, self.length, fromSyntax, toSyntax, out, change)
            out.flush()  # read back with pread
        except BaseException:
            out.close()
            raise
        return StoredData(out, 0, length, self.deferToWorker)

    def evened(self, syntax, folder):
        """In the I/O pool: ``(data, padded)``: a ``StoredData`` of this
        data set (in ``syntax``) with its odd values padded (``evenFile``,
        a piece at a time) in an unnamed temporary file in ``folder`` (else
        the system's temporary folder, also when it cannot be written in
        ``folder``: a full device), and what was padded; this one and []
        when nothing was.  This one stays open.  DatasetError when it
        cannot be walked, OSError when the file cannot be written in the
        system's temporary folder either."""
        try:
            return self._evenedInto(tempfile.TemporaryFile(dir=folder), syntax)
        except OSError:
            if folder is None:
                raise
        return self._evenedInto(tempfile.TemporaryFile(), syntax)

    def _evenedInto(self, out, syntax):
        """``evened`` into the temporary file ``out``, closed unless it holds
        the padded data set."""
        try:
            padded = evenFile(self.file, self.offset, self.length, syntax, out)
            out.flush()  # read back with pread
        except BaseException:
            out.close()
            raise
        if not padded:
            out.close()
            return self, []
        return StoredData(out, 0, out.tell(), self.deferToWorker), padded

    def _readAt(self, position, size):
        data = readAt(self.file.fileno(), self.offset + position, size)
        if len(data) != size:
            raise OSError(f"{self.file.name} ends before its data set does")
        return data


def _temporaryFile(folder):
    """An unnamed temporary file in ``folder``, else (a read-only device)
    in the system's temporary folder."""
    try:
        return tempfile.TemporaryFile(dir=folder)
    except OSError:
        return tempfile.TemporaryFile()


def goesAsStored(compressionScripts, compression):
    """Whether an object without NKI pixel data goes to a peer of code
    ``compression`` as it is stored: no s0..s9 line (``compressionScripts``,
    or None) runs on it and ``forPeer`` changes nothing (so a large one may
    be left in its file)."""
    return not (compressionScripts is not None and compressionScripts.runs(compression)) and (
        not forPeerChanges(compression))


def readForPeer(reader, stored, compression, deferToWorker, compressionScripts=None, callingAE="", calledAE="",
                follow=True):
    """In the I/O pool: ``(stored, data set)`` of the ``StoredObject`` as it
    goes to a peer whose compression code is ``compression``, before it is
    converted to a syntax the peer takes: a large one that goes as stored
    (``goesAsStored``) left in its file (a ``StoredData``); else read (by
    ``reader``, an ObjectReader), the line of an s0..s9 code run on it
    (``compressionScripts``, between ``callingAE`` and ``calledAE``; data
    None when it left the object out), and changed by ``forPeer``
    (``stored`` then with the syntax it gave).  TranscodeError or
    IdentifierError when it cannot be.  One stored again since it was
    located is read from its new file (``ObjectReader.reading``) unless not
    ``follow``."""
    return reader.reading(stored, lambda current: _readForPeer(reader, current, compression, deferToWorker,
                                                               compressionScripts, callingAE, calledAE), follow)


def _readForPeer(reader, stored, compression, deferToWorker, compressionScripts, callingAE, calledAE):
    read = data = reader.read(stored) if stored.size <= STREAMED_OBJECT else None
    if goesAsStored(compressionScripts, compression):
        opened = openStored(stored, deferToWorker, read)
        if opened is not None:
            return stored, opened
    if read is None:
        read = data = reader.read(stored)
    if compressionScripts is not None:
        kept, data = compressionScripts.apply(data, stored.transferSyntax, compression, callingAE, calledAE)
        if not kept:
            return stored, None
        stored = renamed(stored, read, data)
    data, syntax = forPeer(data, stored.transferSyntax, compression)
    return stored._replace(transferSyntax=syntax), data


def renamed(stored, read, data):
    """``stored`` ``named`` after ``data``, what converter lines made of the
    data set ``read``; as it is when they changed nothing (``data`` is then
    ``read`` itself), without parsing it again."""
    return stored if data is read else named(stored, data)


def named(stored, data):
    """``stored`` under the SOP Instance and Class UIDs its data set
    ``data`` (bytes in its syntax) holds after a line ran on it (``newuids``,
    ``changeuid``): the C-STORE command that carries it must name them
    (PS3.7 9.3.1.1; DCMTK and dcm4che refuse a mismatch with A900), as a
    spooled forward's does (``ObjectReader.instancesAt``)."""
    held = readAttributes(data, stored.transferSyntax, {SOP_CLASS_UID, SOP_INSTANCE_UID})
    return stored._replace(sopInstanceUID=held.get(SOP_INSTANCE_UID) or stored.sopInstanceUID,
                           sopClassUID=held.get(SOP_CLASS_UID) or stored.sopClassUID)


def evenedForPeer(data, syntax, folder):
    """In the I/O pool: ``(data, padded)``: the data set ``data`` (bytes
    or a ``StoredData``, of odd length: stored before pacs padded odd
    values, or by another archive) in ``syntax`` with its odd values padded
    (``evenLengths``: DCMTK refuses an odd PDV), and what was padded; a
    ``StoredData`` padded into a temporary file in ``folder``
    (``StoredData.evened``: never read whole) and then closed; as it is,
    with [], when nothing is padded.  TranscodeError (a ``StoredData``
    closed) when it cannot be walked: sent odd, its last PDV would make a
    DCMTK peer abort the association, and the objects after it with it;
    also when the temporary file cannot be written in ``folder`` nor in the
    system's temporary folder (a full device: that object alone is not
    sent)."""
    try:
        evened, padded = data.evened(syntax, folder) if isinstance(data, StoredData) else evenLengths(data, syntax)
    except (DatasetError, OSError) as e:
        closeIfStored(data)
        raise TranscodeError(f"its data set is of odd length, and its odd values cannot be padded: {e}") from e
    if padded:
        closeIfStored(data)
    return evened, padded


def closeIfStored(data):
    """Close the file of ``data`` when it is a ``StoredData`` (whoever gives
    one up: it is not sent, or no longer can be)."""
    if isinstance(data, StoredData):
        data.close()


def openStored(stored, deferToWorker, data=None):
    """In the I/O pool: a ``StoredData`` of the ``StoredObject`` when it,
    or the native pixels it decodes to, is larger than ``STREAMED_OBJECT``
    and it holds no NKI compressed pixel data (which goes out
    decompressed), else None.  ``data``: its data set bytes when they are
    read already (it is no larger than ``STREAMED_OBJECT``), checked in
    memory (``staysInFile``): its file is opened again only when it stays
    there."""
    if data is not None and not staysInFile(data, len(data), stored.transferSyntax):
        return None
    return openDataset(stored.path, stored.datasetOffset, stored.transferSyntax, deferToWorker, data is not None)


def openDataset(path, offset, transferSyntax, deferToWorker, stays=False):
    """In the I/O pool: a ``StoredData`` of the data set at ``offset`` of
    the file ``path`` when it ``staysInFile`` (not walked again when
    ``stays`` says it does), else None."""
    f = open(path, "rb")
    try:
        length = os.fstat(f.fileno()).st_size - offset
        f.seek(offset)
        if not (stays or staysInFile(f, length, transferSyntax)):
            f.close()
            return None
        return StoredData(f, offset, length, deferToWorker)
    except BaseException:
        f.close()
        raise


def staysInFile(source, length, transferSyntax):
    """Whether a data set of ``length`` bytes in ``transferSyntax`` (its
    bytes, or a file at its start: ``source``) is left in its file: it, or
    the native pixels it decodes to (``decodedSize``: a small file of
    compressed pixels may decode to gigabytes; a small deflated one
    may inflate to as much, where the walk past its Pixel Data stops), is
    larger than ``STREAMED_OBJECT`` and it holds no NKI compressed pixel
    data.  Rows and Columns alone count for nothing: an object without
    Pixel Data, or with native pixels, is no larger than its file, and a
    deflated one than it inflates to."""
    size, held = decodedExtent(source, length, transferSyntax)
    return size > STREAMED_OBJECT and NKI_PIXEL_DATA not in held


def decodedExtent(source, length, transferSyntax):
    """``(size, held)`` of a data set of ``length`` bytes in
    ``transferSyntax`` (its bytes, or a file at its start: ``source``):
    the larger of ``length`` and what it decodes to (``staysInFile``),
    and the attributes walked for it (NKI pixel data, the image's size)."""
    tags = {NKI_PIXEL_DATA, ROWS, COLUMNS, SAMPLES_PER_PIXEL, BITS_ALLOCATED, NUMBER_OF_FRAMES}
    if isCompressed(transferSyntax):
        tags.add(PIXEL_DATA)  # encapsulated, of undefined length: found, never read
    held, walked = walkDataset(source, transferSyntax, tags, 0, PIXEL_DATA)  # inflated bytes, when deflated
    decoded = decodedSize(held) if PIXEL_DATA in held else walked
    return max(length, decoded), held


def decodedSize(held):
    """The bytes of the native pixels that the attributes ``held`` (of
    ``readAttributes``) describe: Rows x Columns x Samples per Pixel x Bits
    Allocated / 8 x Number of Frames; 0 when Rows, Columns or Bits
    Allocated is missing or one is not a number."""
    try:
        rows, columns, bits = (int(held[tag]) for tag in (ROWS, COLUMNS, BITS_ALLOCATED))
        samples, frames = (int(held.get(tag) or 1) for tag in (SAMPLES_PER_PIXEL, NUMBER_OF_FRAMES))
    except (KeyError, ValueError):
        return 0
    return rows * columns * samples * bits * frames // 8
