"""Where the listing commands (``query``, ``patientfinder`` ...) put their
rows: Conquest's ``|``-separated arguments end in ``fmt`` and ``file``;
each row is formatted with ``fmt`` (else its values tab-separated) and the
rows go to ``file`` when one is named (written in the I/O pool), else to
the command's output; output that goes into a web page (a scripted page's
command line) has the values HTML-escaped, as they come from DICOM data,
while ``fmt`` is the page author's HTML.  No command writes over the archive's own files (its
configuration, its index database, anything on a MAG device).
"""

import os
from html import escape

from twisted.internet import defer

from pacscore.control.context import CommandError, formatted


def pipeFields(arguments, count):
    """The ``count`` ``|``-separated fields of ``arguments`` (the last holds
    the rest of the text); missing ones are ''. Blanks around the fields
    are stripped, except in formats, which the caller strips itself."""
    parts = arguments.split("|", count - 1)
    return parts + [""] * (count - len(parts))


def formatRow(fmt, values, html=False):
    """One output line of ``values`` (strings or numbers); with ``html``
    the strings HTML-escaped."""
    if html:
        values = [escape(value) if isinstance(value, str) else value for value in values]
    if fmt:
        return formatted(fmt, *values)
    return "\t".join("" if value is None else str(value) for value in values)


def outputPath(context, text):
    """``text`` (relative to the working folder) as the absolute path of a
    file the command of ``context`` may write; CommandError for one of the
    archive's own, for no name at all, or for any when a sandboxed Lua
    script asked for the command."""
    if not text.strip():
        raise CommandError("no output file given")
    if context.sandboxed:
        raise CommandError(f"{text.strip()}: sandboxed Lua scripts cannot have a command write a file "
                           "(LuaAllowUnsafe = 1 allows it)")
    archive = context.archive
    path = archive.configuration.resolvePath(text)
    real = os.path.realpath(path)
    onDevice = any(real.startswith(os.path.join(os.path.realpath(device.path), "")) for device in archive.devices)
    if onDevice or real in _ownFiles(archive):
        raise CommandError(f"{path} is one of the archive's own files (configuration, index or MAG device)")
    return path


def inputPath(archive, text):
    """``text`` (relative to the working folder) as the absolute path of a
    file a command may read; CommandError for the index database's files
    (opening one in the server would drop SQLite's locks on it)."""
    path = archive.configuration.resolvePath(text)
    if os.path.realpath(path) in archive.databaseFiles:
        raise CommandError(f"{path} is the archive's index database, not a file to read")
    return path


def _ownFiles(archive):
    """The real paths of the configuration files and the index database's."""
    configuration = archive.configuration
    files = [configuration.iniPath, configuration.acrNemaMap.path, configuration.sopList.path,
             configuration.layout.path]
    return {os.path.realpath(f) for f in files if f} | archive.databaseFiles


def deliverRows(context, fmt, rows, path):
    """``deliver`` of ``rows`` each made a line by ``fmt`` (in the I/O pool:
    a listing may have millions), escaped for a web page's output (not a file)."""
    html = context.html and not path.strip()
    d = context.archive.workers.deferToWorker(lambda: [formatRow(fmt, row, html) for row in rows])
    return d.addCallback(lambda lines: deliver(context, lines, path))


def deliver(context, lines, path):
    """Deferred of the command's output: the lines, or (with ``path``, relative
    to the working folder) a line saying where they were written."""
    path = path.strip()
    if not path:
        return defer.succeed("\n".join(lines))
    target = outputPath(context, path)
    d = context.archive.workers.deferToWorker(_write, target, lines)
    d.addCallback(lambda _: f"{len(lines)} line(s) written to {target}")
    return d.addErrback(_writeFailed, target)


def _writeFailed(failure, path):
    failure.trap(OSError)
    raise CommandError(f"cannot write {path}: {failure.value.strerror or failure.value}")


def _write(path, lines):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
