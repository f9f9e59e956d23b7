"""Lua web pages, as Conquest (1.4.17 and later) runs them: a scripted page
section whose ``source`` is a ``.lua`` file (relative to dicom.ini) runs it
with lupa in an I/O pool thread, sandboxed unless ``LuaAllowUnsafe = 1``
and stopped after ``LuaMaxInstructions`` (as Lua converters are).

The script sees the page's variables (``pacscore.web.scripted``) as
globals (``mode``, ``query_string``, ``script_name``, ``server_name``,
``port``, ``address``, ``version``, ``webscriptaddress`` and Conquest's
misspelt ``webscriptadress`` (``WebScriptAddress``, else the script's
path), ``webcodebase``, ``extra``, ``server``, the page parameters
``query``, ``size``, ``slice``, ``series``, ``study``, ``patid``,
``seruid``, ``studyuid``, ``sopuid`` ... and the URL-ready ``series2``,
``slice2``, ``study2``, ``patid2``), ``Global`` (the keys of dicom.ini's
main section), and the functions ``CGI(name[, default])`` (a request
parameter), ``print(...)`` and ``HTML(format, ...)`` (``string.format``)
writing a line of the page, ``servercommand('command:arguments')`` (what a
control command answers; nil and the reason when it fails, is refused or
takes more than ``LuaCommandTimeout`` seconds: it waits as Lua converters'
do, see ``pacscore.converters.servercommands``),
``dbquery(table, fields[, where])`` (rows of an index table, as for Lua
converters) and ``gpps(section, key[, default])`` (a dicom.ini value).
Sandboxed, as Lua converters, a page sees no secret of dicom.ini (in
``Global`` or through ``gpps``: ``pacscore.config.secrets``) and its
``servercommand`` runs only read-only commands.

A page prints its own header lines first, as Conquest's do
(``HTML('Content-type: text/html\\n\\n')``), after the section's ``header``
when it has one; without them it is sent as HTML.  A failing script is a
500 page and a log line naming the script's error.
"""

import functools
import os
import re

import lupa.lua54 as lupa
from twisted.logger import Logger

from pacscore.converters.lua import (
    DEFAULT_MAX_INSTRUCTIONS, LuaAccessDenied, LuaApiError, LuaRuntime, LuaScriptError, describeLuaError,
    iniValue, selectRows)
from pacscore.converters.luafiles import unsafeAllowed
from pacscore.converters.servercommands import ServerCommandError
from pacscore.web.answers import HTML, Answer, WebError, utf8ContentType
from pacscore.control.inprocess import commandOutput

_HEADER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)$")
log = Logger()


class _PageApi:
    """What one run of a page may call, from its I/O pool thread."""

    def __init__(self, archive, commands, parameters, runtime, unsafe):
        self.archive = archive
        self.commands = commands
        self.parameters = parameters
        self.runtime = runtime
        self.unsafe = unsafe
        self.output = []

    def print(self, text):
        self._write(text + "\n")

    def HTML(self, fmt, *values):
        self._write(str(self.runtime.lua.globals().string.format(fmt, *values)) + "\n")

    def _write(self, text):
        """Add to the page, within the memory limit of Lua scripts."""
        self.runtime.charge(len(text))
        self.output.append(text)

    def CGI(self, name, default=""):
        value = self.parameters.given.get(str(name))
        return ("" if default is None else default) if value is None else value

    def servercommand(self, text):
        run = functools.partial(commandOutput, self.archive, self.commands)
        try:
            return self.archive.converterServices.serverCommands.fromThread(str(text), run, not self.unsafe)
        except ServerCommandError as e:
            return None, str(e)

    def dbquery(self, tableName, fields, where=None, order=None):
        return self.runtime.table(selectRows(self.archive.index, tableName, fields, where, order))

    def gpps(self, section, key, default=""):
        """A dicom.ini value (``iniValue``)."""
        return iniValue(self.archive.configuration.ini, section, key, default, self.unsafe)


def _run(archive, commands, parameters, variables, path, name):
    """In an I/O pool thread: the text the page printed."""
    if not os.path.isfile(path):
        raise WebError(404, f"the page's script {name} is missing")
    ini = archive.configuration.ini
    runtime = LuaRuntime.forThread()
    unsafe = unsafeAllowed(ini)
    api = _PageApi(archive, commands, parameters, runtime, unsafe)
    globals = {**variables, "Global": runtime.globalTable(archive.configuration, unsafe)}
    functions = {name: getattr(api, name) for name in ("HTML", "CGI", "servercommand", "dbquery", "gpps")}
    runtime.execute(runtime.compileFile(path, name), globals, functions, api.print, None, unsafe,
                    ini.getint("LuaMaxInstructions", DEFAULT_MAX_INSTRUCTIONS))
    return "".join(api.output)


def _answer(text):
    """The Answer of a page's output: its leading header lines, then the body."""
    lines = text.split("\n")
    headers, contentType = [], HTML
    count = 0
    while count < len(lines) and _HEADER.match(lines[count].rstrip("\r")):
        name, value = _HEADER.match(lines[count].rstrip("\r")).groups()
        if name.lower() == "content-type":
            contentType = utf8ContentType(value.strip())
        else:
            headers.append((name, value.strip()))
        count += 1
    if count and (count == len(lines) or lines[count].strip() == ""):
        body = "\n".join(lines[count + 1:])
    else:
        headers, contentType, body = [], HTML, text
    return Answer(body.encode("utf-8"), contentType, tuple(headers))


async def renderLua(archive, commands, parameters, variables, path, name, header=""):
    """The Answer of the Lua page ``path`` (``name`` in its messages)."""
    try:
        text = await archive.workers.deferToWorker(_run, archive, commands, parameters, variables, path, name)
    except lupa.LuaError as e:
        reason = describeLuaError(e)
    except (LuaScriptError, LuaApiError, LuaAccessDenied) as e:
        reason = str(e)
    else:
        return _answer(header + text)
    log.error("web page {name}: Lua script failed: {reason}", name=name, reason=reason)
    raise WebError(500, f"the page's script {name} failed: {reason}")
