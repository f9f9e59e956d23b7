"""Whole studies and series as zip files (Conquest's ``zipstudy`` and
``zipseries`` modes: ``study`` / ``series`` = patid:uid): the stored files,
named as on the MAG device (a file whose header does not say how its data
set is encoded with one that does), zipped (deflated) in the I/O pool a piece at a
time as the client takes the zip, so that neither memory nor a temporary
file holds it whole."""

import errno
import zipfile

from twisted.logger import Logger

from pacscore.db.query import SERIES_INSTANCE_UID, STUDY_INSTANCE_UID
from pacscore.storage.attributes import DatasetError
from pacscore.storage.part10 import fileMetaOf, readFileMeta, sendsAsItIs
from pacscore.storage.regularfiles import openRegularFile
from pacscore.web.answers import StreamAnswer, WebError
from pacscore.web.objects import entityKeys

ZIP = "application/zip"
PIECE = 1 << 20
LEVEL = 1  # deflate level: fast; images gain little from more

log = Logger()


class _Collected:
    """The unseekable file a ZipStream writes to: what came since the last ``take()``."""

    def __init__(self):
        self.pieces = []

    def write(self, data):
        self.pieces.append(bytes(data))
        return len(data)

    def flush(self):
        pass

    def take(self):
        data, self.pieces = b"".join(self.pieces), []
        return data


class ZipStream:
    """The zip of the files ``paths`` (named ``names``), made as it is read:
    each ``read(size)`` (in the I/O pool, one at a time) zips about ``size``
    more bytes of the files (more, until the zip grows) and gives what that
    added; b"" only at the end.
    ``reader`` (an ObjectReader) opens each: the file an object has now
    when it was stored again since it was found."""

    def __init__(self, paths, names, reader):
        self._files = iter(zip(paths, names))
        self._reader = reader
        self._out = _Collected()
        self._zip = zipfile.ZipFile(self._out, "w", zipfile.ZIP_DEFLATED, compresslevel=LEVEL)
        self._source = self._entry = None

    def read(self, size):
        while True:
            self._zipMore(size)
            made = self._out.take()
            if made or self._zip is None:  # data that compresses well may give none yet
                return made

    def _zipMore(self, size):
        """Zip about ``size`` more bytes of the files."""
        taken = 0
        while taken < size and self._zip is not None:
            if self._source is None and not self._nextFile():
                break
            piece = self._source.read(size - taken)
            self._entry.write(piece)
            taken += len(piece)
            if not piece:
                self._endFile()

    def _nextFile(self):
        """Start the entry of the next file; False (the zip ended) after the last."""
        following = next(self._files, None)
        if following is None:
            self._zip.close()
            self._zip = None
            return False
        path, name = following
        _, (info, self._source) = self._reader.onFile(path, _zipEntry, name)
        info.compress_type = zipfile.ZIP_DEFLATED
        info._compresslevel = LEVEL  # what ZipFile.write sets (public as compress_level from 3.13)
        self._entry = self._zip.open(info, "w")  # Zip64 as file_size asks
        return True

    def _endFile(self):
        self._entry.close()
        self.close()

    def close(self):
        """Close the file being read (the zip is given up if not ended)."""
        source, self._source = self._source, None
        if source is not None:
            source.close()


def _zipEntry(path, name):
    """``(ZipInfo named name, what to read)`` of the file ``path``: the file
    as it is when it is a Part-10 file to send so (``sendsAsItIs``), else
    (a ``.v2``, a meta naming another syntax than its data set's) its data
    set after a header naming the syntax it is in, as WADO gives it."""
    info = zipfile.ZipInfo.from_file(path, name)
    f = openRegularFile(path)
    try:
        syntax, meta, offset = readFileMeta(f)
        header = None if sendsAsItIs(f, syntax, meta) else fileMetaOf(f, syntax)
    except DatasetError:  # no DICOM object to mend: as it is
        header = None
    except BaseException:
        f.close()
        raise
    if header is None:
        f.seek(0)
        return info, f
    f.seek(offset)
    info.file_size += len(header) - offset
    return info, _Headed(header, f)


class _Headed:
    """``header``, then the rest of the open file ``f``."""

    def __init__(self, header, f):
        self._header, self._file = header, f

    def read(self, size):
        if not self._header:
            return self._file.read(size)
        piece, self._header = self._header[:size], self._header[size:]
        return piece

    def close(self):
        self._file.close()


async def _zipChunks(archive, stream):
    try:
        while True:
            try:
                chunk = await archive.workers.deferToWorker(stream.read, PIECE)
            except OSError as e:
                log.warn("web: cannot zip {path}: {error}", path=e.filename, error=e.strerror or e)
                raise WebError(404 if e.errno == errno.ENOENT else 500,
                               f"a stored file cannot be read: {e.strerror or e}") from e
            if not chunk:
                return
            yield chunk
    finally:
        stream.close()


async def _zipAnswer(archive, level, tag, parameter, parameters):
    keys = entityKeys(parameters, parameter, tag)
    value = keys[0].value
    found = await archive.index.runQuery(archive.objectReader.instancePaths, archive.query, level, keys)
    if not found:
        raise WebError(404, f"no stored {parameter} {value}")
    stream = ZipStream([path for _, path in found], [instance.objectFile for instance, _ in found],
                       archive.objectReader)
    return StreamAnswer(_zipChunks(archive, stream), ZIP,
                        (("Content-Disposition", f"attachment; filename=\"{value}.zip\""),))


async def zipStudy(archive, parameters):
    return await _zipAnswer(archive, "STUDY", STUDY_INSTANCE_UID, "study", parameters)


async def zipSeries(archive, parameters):
    return await _zipAnswer(archive, "SERIES", SERIES_INSTANCE_UID, "series", parameters)


MODES = {
    "zipstudy": zipStudy,
    "zipseries": zipSeries,
}
