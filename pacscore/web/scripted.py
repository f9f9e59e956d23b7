"""Scripted pages (Conquest's web "script engine", manual appendix 5): a
dicom.ini section named like the mode, e.g. ``[sample]``, makes the page
``dgate?mode=sample``; ``[AnyPage]`` (with ``exceptions = a,b``) serves
every mode and ``[DefaultPage]`` every mode nothing else serves.

The section gives ``source`` (a ``.cq`` file, relative to dicom.ini's
folder, ``*`` standing for the mode, each line in UTF-8 or else cp1252:
``readTextLines``) or ``line0``, ``line1``, ... (read
until the first missing one, also when the source cannot be read), an
optional ``header`` (header lines separated by ``\\``; default
``Content-type: text/html``) and defaults for the page's variables.  Each
line, in order:

- the request's variables are put in: ``%mode%``, ``%query_string%``,
  ``%script_name%``, ``%server_name%``, ``%port%``, ``%address%``,
  ``%version%``, ``%patid%``, ``%studyuid%``, ``%seruid%``, ``%sopuid%``
  (from ``study``/``series``/``slice`` = patid:uid; ``%patid%`` else from a
  ``patid`` parameter), their URL-ready (percent-encoded) ``%series2%``,
  ``%slice2%``, ``%study2%``, ``%patid2%``, Conquest's ``%webscriptadress%``
  (dicom.ini's ``WebScriptAddress``, else the script's path, without the
  path after it: Conquest's SCRIPT_NAME),
  ``%webcodebase%`` (``WebCodeBase``, else the folder above the script's),
  ``%extra%`` (``port=<TCPPort>&address=127.0.0.1``), ``%server%``
  (``<webscriptadress>?<extra>``), an empty ``%uploadedfile%`` and
  ``%path_translated%``, and every Conquest page
  parameter (``%query%``, ``%size%``, ``%slice%`` ...); then the first other
  ``%name%`` that the request has a parameter ``name`` for, or the section a
  key ``name``, becomes its value (others stay, as ``%s%s`` in a format);
- a line starting with ``#`` is a comment; one starting with ``--`` is a
  control command (``--display_status:``, ``--query2:...``, see the
  control port), whose output takes its place (its format argument
  writes HTML, and the values of the rows it lists are made inert in it
  as the request's are, as they come from DICOM data; as on ``showconfig``, dicom.ini's
  secrets are left out: ``--get_ini:`` lists no ``ControlSecret`` or
  ``Password``, and ``--get_param:`` of one shows its refusal; a command
  that fails writes why, and logs it); any other line is written out.

Unlike Conquest, values from the request (not those pacs makes from
dicom.ini, nor the URL-ready ones, written as they are) are made inert in the lines
written out (``pacscore.web.html.inertValue``: in a link's query string
percent-encoded, elsewhere HTML-escaped, spaces, ``=`` and backticks too,
so that a value cannot end an unquoted attribute, as Conquest's pages
write them, and add one), and a command line refuses values holding ``|``, ``'``,
``;``, ``,`` or a line break, so that a request cannot add fields to the
command; in the command's ``fmt`` (the field so named in its usage: the
page's HTML, a printf-style format) they are made inert too, their ``%``
doubled, as the ``%`` of URL-ready ones.  A ``.lua`` source runs as ``pacscore.web.luapages`` says;
``<%= %>`` and ``<?lua ?>`` in other pages are not run.
"""

import os
import re
from html import escape

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.config.errors import ConfigError
from pacscore.config.textfile import readTextLines
from pacscore.control.context import CommandError
from pacscore.control.protocol import BadRequest, parseCommand
from pacscore.web.answers import HTML, Answer, WebError, utf8ContentType
from pacscore.web.html import inertValue, queryValue
from pacscore.control.inprocess import commandOutput
from pacscore.web.luapages import renderLua

MAX_LINES = 10000
_VARIABLE = re.compile(r"%([A-Za-z0-9_]+)%")
_UNSAFE_IN_COMMANDS = re.compile(r"[|';,\r\n]")
_USAGE = re.compile(r"--[^:\s]*:(\S*)")  # a command's usage: its fields
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
PAGE_PARAMETERS = ("query", "size", "dsize", "compress", "iconsize", "graphic", "viewer", "lw", "db", "source",
                   "dest", "series", "slice", "study", "key", "patientidmatch", "patientnamematch",
                   "studydatematch", "startdatematch")
VERSION = "pacs"
# Variables written as they are: made by pacs from dicom.ini, or URL-ready
# (percent-encoded: inert anywhere, a <script>'s strings too).
AS_THEY_ARE = frozenset({"webscriptadress", "webscriptaddress", "webcodebase", "extra", "server", "port", "address",
                         "version", "uploadedfile", "path_translated", "series2", "slice2", "study2", "patid2"})


class ScriptedPages:
    """The scripted pages of ``configuration``'s dicom.ini; ``commands`` is
    the control port's ``CommandRegistry``; ``luaSlots`` Lua pages run at once."""

    log = Logger()

    def __init__(self, configuration, commands, luaSlots=2):
        self.ini = configuration.ini
        self.folder = os.path.dirname(configuration.iniPath)
        self.commands = commands
        # A Lua page holds an I/O pool thread while it waits for its
        # servercommand()s, which may need that pool too: ``luaSlots`` (less
        # than the pool's threads) Lua pages run at once, the others wait.
        self.luaRuns = defer.DeferredSemaphore(luaSlots)

    def _page(self, name):
        section = {known.lower(): known for known in self.ini.sectionNames()}.get(name.lower())
        if section is None:
            return None
        if self.ini.get("source", "", section) or self.ini.get("line0", "", section):
            return section
        return None

    def sectionFor(self, mode, builtIn):
        """The section serving ``mode``, or None (``builtIn``: pacs has a page for it)."""
        anyPage = self._page("AnyPage")
        if anyPage is not None:
            exceptions = {part.strip().lower() for part in self.ini.get("exceptions", "", anyPage).split(",")}
            if mode.lower() not in exceptions:
                return anyPage
        own = self._page(mode) if mode else None
        if own is not None or builtIn:
            return own
        return self._page("DefaultPage")

    def _source(self, section, mode):
        """The section's source file, ``*`` standing for the mode: then only a
        plain name (a request must not lead the server to another folder)."""
        source = self.ini.get("source", "", section)
        if "*" in source and not _PLAIN_NAME.fullmatch(mode):
            raise WebError(400, f"{mode!r} is not a page name")
        return source.replace("*", mode)

    def _lines(self, section, mode):
        source = self._source(section, mode)
        if source:
            path = os.path.join(self.folder, source)
            try:
                return readTextLines(path, MAX_LINES)
            except ConfigError as e:
                self.log.warn("web page [{section}]: {error}; using its lineN keys", section=section, error=str(e))
        lines = []
        while self.ini.has(f"line{len(lines)}", section):
            lines.append(self.ini.get(f"line{len(lines)}", "", section))
        return lines

    @staticmethod
    def _headers(section, ini):
        headers, contentType = [], HTML
        for line in ini.get("header", "Content-type: text/html", section).split("\\"):
            name, colon, value = line.partition(":")
            if not colon:
                continue
            if name.strip().lower() == "content-type":
                contentType = utf8ContentType(value.strip())
            else:
                headers.append((name.strip(), value.strip()))
        return contentType, tuple(headers)

    async def render(self, archive, parameters, request, section, mode):
        """The Answer of the page of ``section`` for ``mode``."""
        variables = _variables(archive, parameters, request, mode, self.ini)
        source = self._source(section, mode)
        if source.lower().endswith(".lua"):
            header = self.ini.get("header", "", section).replace("\\", "\n")
            return await self.luaRuns.run(
                renderLua, archive, self.commands, parameters, variables, os.path.join(self.folder, source), source,
                header + "\n" if header else "")
        contentType, headers = self._headers(section, self.ini)
        output = []
        for line in await archive.workers.deferToWorker(self._lines, section, mode):
            if line.startswith("#"):
                continue
            isCommand = line.startswith("--")
            command = _CommandLine(line, self.commands) if isCommand else None
            line = _substituted(line, variables, parameters, self.ini, section, command)
            output.append(await self._run(archive, line, section) if isCommand else line)
        return Answer(("\n".join(output) + "\n").encode("utf-8"), contentType, headers)

    async def _run(self, archive, line, section):
        """The output of the command ``line`` of ``section``'s page; when it
        fails, a paragraph saying why, and a log line."""
        try:
            return await commandOutput(archive, self.commands, line, html=True, secretsHiddenFrom="web pages")
        except (BadRequest, CommandError) as e:
            self.log.warn("web page [{section}]: {error}", section=section, error=str(e))
            return f"<p>{escape(str(e))}</p>"


def _uidParts(text):
    patientID, _, uid = text.rpartition(":")
    return patientID, uid


def _variables(archive, parameters, request, mode, ini):
    """The request's fixed variables (see the module docstring), unescaped
    but for those of ``AS_THEY_ARE``."""
    found = {name: parameters.get(name) for name in PAGE_PARAMETERS}
    patientIDs = [parameters.get("patid")]
    for name, parameter in (("studyuid", "study"), ("seruid", "series"), ("sopuid", "slice")):
        patientID, found[name] = _uidParts(parameters.get(parameter))
        patientIDs.insert(0, patientID)
    found["patid"] = next((patientID for patientID in patientIDs if patientID), "")
    found.update({f"{name}2": queryValue(found[name]) for name in ("series", "slice", "study", "patid")})
    host = request.getRequestHostname().decode("utf-8", "replace")
    scriptName = _scriptName(request)
    address, extra = scriptAddress(ini, request), extraParameters(archive)
    found.update(mode=mode, query_string=request.uri.decode("utf-8", "replace").partition("?")[2],
                 script_name=scriptName, server_name=host, port=str(archive.tcpPort), address="127.0.0.1",
                 version=VERSION, webscriptadress=address, webscriptaddress=address,
                 webcodebase=ini.get("WebCodeBase", "").strip() or _codeBase(address),
                 extra=extra, server=f"{address}?{extra}", uploadedfile="", path_translated="")
    return found


def _scriptName(request):
    return "/" + "/".join(segment.decode("utf-8", "replace") for segment in request.prepath)


def scriptAddress(ini, request):
    """Conquest's WebScriptAddress: dicom.ini's, else the path of the
    script ``request`` asked for (Conquest's SCRIPT_NAME), percent-encoded."""
    return ini.get("WebScriptAddress", "").strip() or queryValue(_scriptName(request), "/")


def extraParameters(archive):
    """Conquest's ``extra``: the parameters its pages' URLs carry (the
    server's port and address)."""
    return f"port={archive.tcpPort}&address=127.0.0.1"


def _codeBase(address):
    """Conquest's WebCodeBase for the script ``address``: the folder above
    the script's, with its slash (``http://host/cgi-bin/dgate``: ``http://host/``)."""
    folder = address.rpartition("/")[0]
    return folder[:folder.rfind("/") + 1]


class _CommandLine:
    """A page's command line, as far as its variables go: where its
    command (of ``commands``) takes its ``fmt`` (the field so named in its
    usage), whose text is the page's HTML and a printf-style format."""

    def __init__(self, line, commands):
        self.field = None  # the index of the fmt field, when the command has one
        try:
            name = parseCommand(line)[0]
        except BadRequest:
            return
        usage = _USAGE.match(getattr(commands.lookup(name), "usage", ""))
        names = usage.group(1) if usage else ""
        self.separator = "|" if "|" in names else ","
        fields = names.split(self.separator)
        if "fmt" in fields:
            self.field, self.last = fields.index("fmt"), len(fields) - 1
            self.start = line.find(":") + 1 or len(line)

    def formatBefore(self, before):
        """The text of the ``fmt`` field in ``before`` (the line up to a
        variable) when the variable lands in that field, else None."""
        if self.field is None or len(before) < self.start:
            return None
        given = before[self.start:].split(self.separator)
        if min(len(given) - 1, self.last) != self.field:
            return None
        return self.separator.join(given[self.field:])


def _safe(name, value, before, command):
    """``value`` of the variable ``name`` put into a line after its text
    ``before``: made inert in HTML (``inertValue``), one of ``AS_THEY_ARE``
    as it is; in a command line (``command``, a ``_CommandLine``), checked,
    and in its format also made inert, its ``%`` (one of ``AS_THEY_ARE``'s
    too) doubled (no conversion)."""
    if command is None:
        return value if name in AS_THEY_ARE else inertValue(value, before)
    if name not in AS_THEY_ARE and _UNSAFE_IN_COMMANDS.search(value):
        raise WebError(400, f"{value!r} cannot go into a command of this page")
    html = command.formatBefore(before)
    if html is None:
        return value
    return (value if name in AS_THEY_ARE else inertValue(value, html)).replace("%", "%%")


def _substituted(line, variables, parameters, ini, section, command):
    """``line`` with the fixed variables, then the first other known %name%, put in."""
    def fixed(match):
        name = match.group(1).lower()
        if name in variables:
            return _safe(name, variables[name], line[:match.start()], command)
        return match.group(0)

    line = _VARIABLE.sub(fixed, line)
    for match in _VARIABLE.finditer(line):
        name = match.group(1)
        value = parameters.given.get(name, ini.get(name, None, section))
        if value is not None:
            return line[:match.start()] + _safe(None, value, line[:match.start()], command) + line[match.end():]
    return line
