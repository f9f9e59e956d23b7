"""What every configuration file reader shares: reading text in the
encoding it was saved in, atomic writes in that encoding, line handling, and
``LineFile``, the base of the readers that keep a file's lines so edits
write it back with its comments.

A file pacs writes back (dicom.ini, acrnema.map, ...) is decoded whole in
one encoding (``readConfigText``), so that it is written back byte for
byte; so is dicom.sql, which it never writes.  A file pacs only reads (a converter ``call`` file,
anonymize_script.cq, aliasfileQX.txt, a scripted page's source) is decoded
line by line (``readTextLines``): one ANSI line, even a comment, does not
turn the UTF-8 letters of the others into mojibake."""

import codecs
import itertools
import os
import tempfile

from twisted.logger import Logger

from pacscore.config.errors import ConfigError

UTF8 = "utf-8"
UTF8_WITH_BOM = "utf-8-sig"  # Windows Notepad's UTF-8: the byte order mark is dropped, and written back
ANSI = "cp1252"  # Windows Notepad's "ANSI": a file that is not UTF-8
LATIN1_FALLBACK = "pacs-latin1-fallback"  # the five bytes cp1252 leaves undefined, as Latin-1

log = Logger()
_warned = set()  # (path, line) of the files read as cp1252: warned of once


def _latin1Fallback(error):
    """Codec error handler: a byte cp1252 leaves undefined (0x81, 0x8D,
    0x8F, 0x90, 0x9D) read as the Latin-1 character of that number, and
    written back as the same byte."""
    if isinstance(error, UnicodeDecodeError):
        return "".join(chr(b) for b in error.object[error.start:error.end]), error.end
    if isinstance(error, UnicodeEncodeError) and all(ord(c) < 0x100 for c in error.object[error.start:error.end]):
        return bytes(ord(c) for c in error.object[error.start:error.end]), error.end
    raise error


codecs.register_error(LATIN1_FALLBACK, _latin1Fallback)


def readConfigText(path, writtenBack=True):
    """``(text, encoding)`` of a configuration file: UTF-8 (a byte order
    mark, Windows Notepad's, dropped), or, for a file that is not valid
    UTF-8 (saved as "ANSI" on Windows), cp1252, with a warning naming the
    file and its first line that is not UTF-8, and saying that it is
    written back in cp1252 when ``writtenBack`` (pacs edits it: a
    ``LineFile``), not for one pacs only reads whole (dicom.sql).

    Raises ConfigError (no line) if the file cannot be read.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror or e}") from e
    encoding = UTF8_WITH_BOM if data.startswith(codecs.BOM_UTF8) else UTF8
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as e:
        _warnOfAnsi(path, data.count(b"\n", 0, e.start) + 1,
                    "the file is read as Windows' cp1252 (\"ANSI\")" + (", and written back so" if writtenBack else ""))
        return data.decode(ANSI, LATIN1_FALLBACK), ANSI


def readTextLines(path, limit=None):
    """The lines (the first ``limit`` ones: the rest of the file is not
    read) of a text file pacs only reads, without their ending (CR,
    LF or CRLF: Python's universal newlines), each decoded on its own:
    UTF-8 (a byte order mark, Windows Notepad's, dropped), or, for a line
    that is not valid UTF-8 (saved as "ANSI" on Windows), cp1252, with a
    warning naming the file and its first such line.

    Raises ConfigError (no line) if the file cannot be read.
    """
    try:
        # Latin-1 gives each byte back as one character, so each line's bytes are found again below.
        with open(path, encoding="latin-1", newline=None) as f:
            raw = [line.rstrip("\n").encode("latin-1") for line in itertools.islice(f, limit)]
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror or e}") from e
    if raw and raw[0].startswith(codecs.BOM_UTF8):
        raw[0] = raw[0][len(codecs.BOM_UTF8):]
    lines, ansi = [], []
    for number, data in enumerate(raw, start=1):
        try:
            lines.append(data.decode(UTF8))
        except UnicodeDecodeError:
            lines.append(data.decode(ANSI, LATIN1_FALLBACK))
            ansi.append(number)
    if ansi:
        others = {1: "", 2: ", as is its other line that is not UTF-8"}.get(
            len(ansi), f", as are its {len(ansi) - 1} other lines that are not UTF-8")
        _warnOfAnsi(path, ansi[0], f"the line is read as Windows' cp1252 (\"ANSI\"){others}")
    return lines


def _warnOfAnsi(path, line, what):
    """Warn, once for each file and line, that ``line`` of ``path`` is not UTF-8."""
    if (str(path), line) not in _warned:
        _warned.add((str(path), line))
        log.warn("{path}:{line}: not UTF-8: {what}", path=str(path), line=line, what=what)


def writeFileAtomically(path, text, encoding=UTF8):
    """Write ``text`` to ``path`` in ``encoding`` through a temporary file
    and a rename; ConfigError (no line) for text ``encoding`` cannot hold.

    Readers never see a half-written file.  A symbolic link is followed;
    an existing file keeps its mode, and its owner and group as far as the
    process may give them (``_keepOwner``: dicom.ini readable by a group
    of operators stays so); a new one gets mode 0644.
    """
    try:
        data = text.encode(encoding, LATIN1_FALLBACK)
    except UnicodeEncodeError as e:
        raise ConfigError(path, None, f"{e.object[e.start:e.end]!r} cannot be written in the file's "
                                      f"encoding, {encoding}") from e
    path = os.path.realpath(path)
    status = os.stat(path) if os.path.exists(path) else None
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if status is not None:
            _keepOwner(path, tmp, status)
        os.chmod(tmp, status.st_mode & 0o7777 if status is not None else 0o644)  # after chown, which clears set-id bits
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _keepOwner(path, tmp, status):
    """Give ``tmp``, about to replace ``path``, the owner and group of
    ``status`` (``path``'s): both when the process may (root), else the
    group when it is one of the process's; a warning when it gets another
    owner or group all the same (who may read the file changes)."""
    made = os.stat(tmp)
    wanted = (status.st_uid, status.st_gid)
    if (made.st_uid, made.st_gid) == wanted:
        return
    for uid in (status.st_uid, -1):
        try:
            os.chown(tmp, uid, status.st_gid)
            break
        except PermissionError:
            continue
    made = os.stat(tmp)
    if (made.st_uid, made.st_gid) != wanted:
        log.warn("{path}: written with owner {uid} and group {gid}, not its owner {oldUid} and group {oldGid}: "
                 "the server may not give them", path=path, uid=made.st_uid, gid=made.st_gid,
                 oldUid=status.st_uid, oldGid=status.st_gid)


def lineEnding(text):
    """``"\\r\\n"`` for a file written on Windows, else ``"\\n"``."""
    return "\r\n" if "\r\n" in text else "\n"


def splitLines(text):
    """The lines of ``text`` without their LF or CRLF ending (numbered as editors do)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


class LineFile:
    """A configuration file kept as rows (one per line, each with ``.text``),
    written back with its comments and line endings. Subclasses provide
    ``fromString(text, path)``."""

    encoding = UTF8  # what ``write`` writes in: that of the file read

    def __init__(self, path, rows, newline="\n"):
        self.path = str(path)
        self._rows = rows
        self._newline = newline

    @classmethod
    def fromFile(cls, path):
        text, encoding = readConfigText(path)
        lineFile = cls.fromString(text, path)
        lineFile.encoding = encoding
        return lineFile

    def toString(self):
        return "".join(row.text + self._newline for row in self._rows)

    def write(self, path=None):
        """Write the file (atomically) to ``path``, by default where it was read."""
        writeFileAtomically(path or self.path, self.toString(), self.encoding)
