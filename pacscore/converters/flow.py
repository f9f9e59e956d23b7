"""Converter commands that steer the line (manual 7.2): ``nop``, ``stop``,
``silentstop``, ``return``, ``destroy``, ``reject``, ``defer``, ``call``.

``stop`` and ``return`` end the line with a log message, ``silentstop``
without one.  ``call file`` runs the converter lines of a file (read each
time, so it can be edited while the server runs, each line in UTF-8 or
else, with a warning, cp1252: ``readTextLines``), each
as a line of its own, as Conquest's CallImportConverterN does: ``stop`` or ``silentstop``
ends that line of the file and the next one runs; ``return``, ``destroy``
and ``reject`` end the file, and ``return`` the calling line too (and
those calling it, up to the converter line); when the last line of the
file that ran ended with ``stop``, the calling line ends too (Conquest
hands the calling line the result of the file's last line).  A file that
cannot be read or holds a line that does not parse is logged (one line
naming the file, and the line and column) and ends the calling line.
"""

from twisted.logger import Logger

from pacscore.config.errors import ConfigError
from pacscore.config.textfile import readTextLines
from pacscore.converters.command import Command, TextCommand, fileName, localPath
from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.luafiles import LuaFileRefused, luaFilePath
from pacscore.converters.script import parseScript


class Nop(TextCommand):
    """``nop [text]``: nothing, but the text (expanded) is logged."""

    name = "nop"
    textRequired = False
    log = Logger()

    def run(self, arguments, context):
        if arguments:
            self.log.info("{converter}: {text}", converter=context.converterName,
                          text=context.expand(arguments))
        return Outcome.CONTINUE


class Stop(Command):
    """``stop``: end this converter line."""

    name = "stop"
    log = Logger()

    def run(self, arguments, context):
        self.log.info("{converter}: {command}", converter=context.converterName, command=self.name)
        return Outcome.STOP


class Return(Stop):
    """``return``: end the called file, or as ``stop`` outside one."""

    name = "return"


class SilentStop(Command):
    """``silentstop``: end this converter line without a message."""

    name = "silentstop"

    def run(self, arguments, context):
        return Outcome.SILENT_STOP


class Destroy(Command):
    """``destroy``: the object is not stored (the sender gets Success)."""

    name = "destroy"
    scope = "I"

    def run(self, arguments, context):
        return Outcome.DESTROY


class Reject(Command):
    """``reject``: as destroy, but the sender gets a failure status."""

    name = "reject"
    scope = "I"

    def run(self, arguments, context):
        context.rejectReason = f"rejected by {context.converterName}"
        return Outcome.REJECT


class Defer(Command):
    """``defer``: export this object later (the retry mechanism); a debug
    line says so, as Conquest's "Exportconverter0.1: defer"."""

    name = "defer"
    scope = "E"
    log = Logger()

    def run(self, arguments, context):
        self.log.debug("{converter}: defer (the line runs again later)", converter=context.converterName)
        return Outcome.DEFER


def isComment(line):
    """Whether ``line`` of a file of converter lines (``call``'s,
    anonymize_script.cq) runs nothing: blank, or starting with '#' or ';'
    (Conquest's comments, which it skips in a ``call`` file; here after
    blanks too)."""
    return not line.strip() or line.lstrip().startswith(("#", ";"))


class Call(TextCommand):
    """``call file``: run each line of ``file`` (blank lines and lines
    starting with '#' or ';', Conquest's comments, skipped) as a converter line of the same kind, with
    the same commands, on the same object.  Run by a sandboxed Lua
    script's ``script()``, only a file it may read (``luaFilePath``)."""

    name = "call"
    scope = "I"
    log = Logger()

    def parse(self, arguments, where):
        return super().parse(arguments, where), where.registry, where.kind

    def run(self, arguments, context):
        template, registry, kind = arguments
        context.callReturned = False  # set only by a 'return' ending this file, whatever ran before
        name = fileName(context, template)
        try:
            path = luaFilePath(context, name) if context.sandboxed else localPath(context, name)
        except LuaFileRefused as e:
            self.log.error("{converter}: call refused: {reason}", converter=context.converterName, reason=str(e))
            return Outcome.STOP
        try:
            scripts = [parseScript(line, f"{path}, line {number}", registry, kind)
                       for number, line in enumerate(readTextLines(path), start=1) if not isComment(line)]
        except ConfigError as e:
            self.log.error("{converter}: call {path}: {reason}", converter=context.converterName, path=path,
                           reason=e.message)
            return Outcome.STOP
        except ConverterSyntaxError as e:
            self.log.error("{converter}: call {path}: {reason}", converter=context.converterName, path=path,
                           reason=str(e))
            return Outcome.STOP
        outcome = Outcome.CONTINUE
        for script in scripts:
            outcome, command = script.execute(context)
            if isinstance(command, Return) or (isinstance(command, Call) and context.callReturned):
                context.callReturned = True
                return Outcome.SILENT_STOP
            context.callReturned = False  # a Lua script()'s call of this line is not this file's return
            if outcome not in (Outcome.CONTINUE, Outcome.STOP, Outcome.SILENT_STOP):
                return outcome
        return Outcome.CONTINUE if outcome is Outcome.CONTINUE else Outcome.SILENT_STOP
