"""What every configuration file reader shares: reading text that survives
a rewrite, atomic writes, line handling, and ``LineFile``, the base of the
readers that keep a file's lines so edits write it back with its comments."""

import os
import tempfile

from pacscore.config.errors import ConfigError

BYTE_ORDER_MARK = "\ufeff"


def readConfigText(path):
    """The text of a configuration file; undecodable bytes survive a rewrite,
    a UTF-8 byte order mark (Windows Notepad's) is dropped.

    Raises ConfigError (no line) if the file cannot be read.
    """
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            return f.read().removeprefix(BYTE_ORDER_MARK)
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror or e}") from e


def writeFileAtomically(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Readers never see a half-written file.  A symbolic link is followed;
    an existing file keeps its mode, a new one gets mode 0644.
    """
    path = os.path.realpath(path)
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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

    def __init__(self, path, rows, newline="\n"):
        self.path = str(path)
        self._rows = rows
        self._newline = newline

    @classmethod
    def fromFile(cls, path):
        return cls.fromString(readConfigText(path), path)

    def toString(self):
        return "".join(row.text + self._newline for row in self._rows)

    def write(self, path=None):
        """Write the file (atomically) to ``path``, by default where it was read."""
        writeFileAtomically(path or self.path, self.toString())
