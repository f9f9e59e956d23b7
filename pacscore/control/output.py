"""Where the listing commands (``query``, ``patientfinder`` ...) put their
rows: Conquest's ``|``-separated arguments end in ``fmt`` and ``file``;
each row is formatted with ``fmt`` (else its values tab-separated; a
``fmt`` with more conversions than the row has values takes them again, as
Conquest's do) and the
rows, ``MAX_ANSWER`` bytes at most (``AnswerLines``), go to ``file`` when one is named
(written in the I/O pool), else to the command's output; output that goes
into a web page (a scripted page's
command line) has the values made inert in it (``formatRow``), as they come from DICOM data,
while ``fmt`` is the page author's HTML (a ``UrlReady`` value, which the command writes for a URL,
is percent-encoded once from its raw value wherever it lands, in a link or in Conquest's
applet ``<param value=`` lines alike).  No command writes over the
archive's own files (its
configuration and scripts, its index database, its log and password files, the key files of
its endpoints and TLS nodes, anything on a MAG or mirror device or in the HL7 drop folder).
"""

import os

from twisted.internet import defer

from pacscore.control.context import CommandError, Format
from pacscore.control.endpoint import fields
from pacscore.regularfiles import openRegularFile
from pacscore.web.html import inertValue, queryValue

MAX_ANSWER = 64 * 1024 * 1024  # bytes (UTF-8) of a command's text output (a listing's, a Lua chunk's print)

# The dicom.ini keys of endpoints and their fields that name a key or certificate file.
_ENDPOINT_KEYS = ("DICOMTLSEndpoint", "WebEndpoint", "HL7Endpoint", "ControlEndpoint")
_KEY_FILE_FIELDS = ("privatekey", "certkey", "cacerts", "extracertchain", "dhparameters")


def pipeFields(arguments, count):
    """The ``count`` ``|``-separated fields of ``arguments`` (the last holds
    the rest of the text); missing ones are ''. Blanks around the fields
    are stripped, except in formats, which the caller strips itself."""
    parts = arguments.split("|", count - 1)
    return parts + [""] * (count - len(parts))


def formatRow(form, values, html=False):
    """One output line of ``values`` (strings or numbers), the ``Format``
    ``form`` taking them as often as it asks (``formatted``'s ``repeat``),
    else tab-separated; with ``html`` the strings, formatted (their width
    and precision applied to the value itself), made inert in the HTML of
    ``form`` (``pacscore.web.html.inertValue``: percent-encoded in a
    link's query string, else HTML-escaped for any attribute); a
    ``UrlReady`` value, meant for a URL wherever it lands, its ``raw`` one
    percent-encoded once (``queryValue``, inert too)."""
    if form:
        return form.apply(values, repeat=True, made=_inertIn(form) if html else None)
    if html:
        values = [_madeInert(value, "%s", "") if isinstance(value, str) else value for value in values]
    return "\t".join("" if value is None else str(value) for value in values)


class UrlReady(str):
    """A listed value as Conquest's lister writes it, made ready for a URL
    by the command (a patient ID, its spaces ``%20``); ``raw``: the value
    itself, which a web page makes inert where it lands (``formatRow``)."""

    def __new__(cls, text, raw):
        value = super().__new__(cls, text)
        value.raw = raw
        return value


def _inertIn(form):
    """``Format.apply``'s ``made`` for a web page: ``_madeInert`` where the conversion goes in ``form``."""
    return lambda conversion, value, start: _madeInert(value, conversion, form.template[:start])


def _madeInert(value, conversion, before):
    """``conversion`` applied to ``value`` and made inert after the HTML
    ``before``: a string by ``inertValue``, a ``UrlReady`` value's ``raw``
    one by ``queryValue`` wherever it lands (it is meant for a URL, as
    the command writes it, in a link or not); a number as it is."""
    if isinstance(value, UrlReady):
        return queryValue(conversion % (value.raw,))
    return inertValue(conversion % (value,), before) if isinstance(value, str) else conversion % (value,)


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
    if inFolders(path, ownFolders(archive)) or isOneOf(path, _ownFiles(archive)):
        raise CommandError(f"{path} is one of the archive's own files (configuration, index, logs, "
                           "WebUsers, MAG or mirror device, HL7 drop folder)")
    return path


def inputPath(archive, text):
    """``text`` (relative to the working folder) as the absolute path of a
    file a command may read; CommandError for the index database's files
    (opening one in the server would drop SQLite's locks on it)."""
    path = archive.configuration.resolvePath(text)
    if isOneOf(path, archive.databaseFiles):
        raise CommandError(f"{path} is the archive's index database, not a file to read")
    return path


def isOneOf(path, files):
    """Whether ``path`` is one of ``files`` (real paths): by its real path,
    or, when it exists, as the same file (device and inode: a hard link)."""
    real = os.path.realpath(path)
    if real in files:
        return True
    try:
        status = os.stat(real)
    except OSError:
        return False
    for file in files:
        try:
            if os.path.samestat(status, os.stat(file)):
                return True
        except OSError:
            continue
    return False


def inFolders(path, folders):
    """Whether the real path of ``path`` is one of ``folders`` (real paths) or under one."""
    real = os.path.realpath(path)
    return any(real == folder or real.startswith(os.path.join(folder, "")) for folder in folders)


def ownFolders(archive):
    """The real paths of the folders whose files are all the archive's: its
    MAG and mirror devices, the HL7 drop folder and the configuration folder
    (its scripts), unless that is the working folder, where listings go."""
    configuration = archive.configuration
    folders = [device.path for device in archive.devices] + \
        [device.path for device in archive.mirrors.devices.values()] + [archive.hl7DropFolder.path]
    if os.path.realpath(configuration.configDir) != os.path.realpath(configuration.workdir):
        folders.append(configuration.configDir)
    return {os.path.realpath(folder) for folder in folders}


def settingFiles(configuration):
    """The log files (TroubleLog, UserLog) and the WebUsers file (when set)
    ``configuration``'s dicom.ini names."""
    files = [configuration.pathSetting("TroubleLog", "PacsTrouble.log"),
             configuration.pathSetting("UserLog", "PacsUser.log")]
    if configuration.ini.get("WebUsers", "").strip():
        files.append(configuration.pathSetting("WebUsers"))
    return files


def _ownFiles(archive):
    """The real paths of the configuration files and scripts, the index
    database's, the log files and the WebUsers file (those in use, which
    the archive started with, and those dicom.ini now names), the key
    files of the endpoints (dicom.ini's and those serving) and of
    [DICOMTLSNodes]."""
    configuration = archive.configuration
    ini = configuration.ini
    files = [configuration.iniPath, configuration.acrNemaMap.path, configuration.sopList.path,
             configuration.layout.path, *archive.settingFiles, *settingFiles(configuration)]
    for description in [ini.get(key, "") for key in _ENDPOINT_KEYS] + archive.endpoints:
        files += _keyFiles(configuration, description)
    for node in configuration.acrNemaMap.tlsNodes.values():
        files += node.files
    scripts = [os.path.join(configuration.configDir, name) for name in os.listdir(configuration.configDir)
               if name.endswith((".lua", ".cq"))]
    return {os.path.realpath(f) for f in files + scripts if f} | archive.databaseFiles


def _keyFiles(configuration, description):
    """The key and certificate files an endpoint ``description`` names, a
    relative name both from the working folder (as output files are named)
    and from the server's current folder (where the endpoint opened it)."""
    keywords = fields(description or "tcp")[2]
    names = [keywords[name] for name in _KEY_FILE_FIELDS if keywords.get(name)]
    return [configuration.resolvePath(name) for name in names] + [os.path.abspath(name) for name in names]


def deliverRows(context, fmt, rows, path, together=False, lastFmt=None):
    """``deliver`` of ``rows`` each made a line by ``fmt``, escaped for a web
    page's output (not a file); the lines made, and joined for the output,
    in the I/O pool (a listing may have millions); CommandError past
    ``MAX_ANSWER`` bytes.  With ``together`` the rows make one line (as
    Conquest's listers print a format ending in ``*``, or starting with
    ``$``, with no newline), the last row formatted by ``lastFmt`` when one
    is given.  ``fmt`` and ``lastFmt`` are text or a ``Format`` (which may
    be empty: an empty line per row); an empty text is no format, the
    values then tab-separated."""
    if path.strip():
        return _toFile(context, path, lambda: _formatRows(fmt, rows, False, together, lastFmt))
    return context.archive.workers.deferToWorker(lambda: Lines(_formatRows(fmt, rows, context.html, together, lastFmt)))


class Lines(str):
    """A listing's ``lines`` as its text output (joined by newlines), which
    the control port sends a line each, an empty one too: the text of two
    empty lines, ``"\n"``, reads as one line, and of one, ``""``, as none."""

    def __new__(cls, lines):
        text = super().__new__(cls, "\n".join(lines))
        text.lines = lines
        return text


def _formatRows(fmt, rows, html, together=False, lastFmt=None):
    """In a worker: the lines of ``rows`` (see ``deliverRows``)."""
    form = _form(fmt)
    lines = AnswerLines("the listing makes", ": select fewer rows or a shorter format")
    if not together:
        for row in rows:
            lines.append(formatRow(form, row, html))
        return lines.lines
    last = _form(lastFmt) if lastFmt is not None else form
    pieces = AnswerLines("the listing makes", ": select fewer rows or a shorter format")
    for n, row in enumerate(rows):
        pieces.append(formatRow(last if n == len(rows) - 1 else form, row, html))
    if "".join(pieces.lines):  # no line at all when the rows print nothing, as Conquest's
        lines.append("".join(pieces.lines))
    return lines.lines


def _form(fmt):
    """The ``Format`` of ``fmt`` (see ``deliverRows``), None for no format."""
    if isinstance(fmt, Format):
        return fmt
    return Format(fmt) if fmt else None


class AnswerLines:
    """The lines of a command's text output, ``MAX_ANSWER`` bytes at most
    as they go to the client (UTF-8, a newline between two lines): an
    ``append`` past them fails, and so does any after it (``tooMuch`` says
    why), keeping nothing; ``what`` (``"the listing makes"``) and
    ``advice`` make that message."""

    def __init__(self, what, advice=""):
        self.lines = []
        self.tooMuch = None
        self._what, self._advice = what, advice
        self._size = -1  # no newline before the first line

    def append(self, text):
        size = self._size + 1 + len(text.encode("utf-8", "backslashreplace"))
        if self.tooMuch is None and size > MAX_ANSWER:
            self.tooMuch = f"{self._what} more than {MAX_ANSWER} bytes, the most a command answers"
        if self.tooMuch is not None:
            raise CommandError(self.tooMuch + self._advice)
        self._size = size
        self.lines.append(text)

    def text(self):
        return "\n".join(self.lines)


def deliver(context, lines, path):
    """Deferred of the command's output: the lines, or (with ``path``, relative
    to the working folder) a line saying where they were written."""
    if not path.strip():
        return defer.succeed("\n".join(lines))
    return _toFile(context, path, lambda: lines)


def _toFile(context, path, makeLines):
    """Deferred of the line saying where the lines ``makeLines()`` gives were
    written: in the I/O pool, ``path`` checked (``outputPath``: its
    ``realpath`` calls may wait on a device's disk) before they are made."""
    def toFile():
        target = outputPath(context, path.strip())
        lines = makeLines()
        try:
            _write(target, lines)
        except OSError as e:
            raise CommandError(f"cannot write {target}: {e.strerror or e}") from e
        return f"{len(lines)} line(s) written to {target}"
    return context.archive.workers.deferToWorker(toFile)


def _write(path, lines):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with openRegularFile(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
