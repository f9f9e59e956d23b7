"""Converter commands that reach outside the archive (manual 7.2):
``write "text" to file``, ``append "text" to file``, ``mkdir folder``,
``rm file`` and ``system command line``; in export converters also a
statement that names no command: a program to run (``ExternalProgram``),
unless it starts with a command of Conquest's pacs does not have
(``ConquestOnly``: warned about when parsed, not run).  Text, file names and command lines
are expanded when they run (values in file names made safe, ``filePath``;
in command lines quoted, ``shellCommand``); relative file names (and the
folder the command runs in) are the configuration's working folder.  They run in a worker thread, so they may
block.
"""

import os
import re
import subprocess
from typing import NamedTuple

from twisted.logger import Logger, LogLevel

from pacscore.converters.arguments import leadingString
from pacscore.converters.command import Command, TextCommand, filePath
from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.shellquoting import shellCommand
from pacscore.control.output import inFolders, isOneOf

_TO = re.compile(r"\s*to\s+(\S.*)", re.IGNORECASE | re.DOTALL)


class Write(Command):
    """``write "text" to file``: the file holds the text (%n for newlines).
    A file that cannot be written (its folder missing) is logged and the
    line goes on, as Conquest's "Failed to append to file": a logging line
    put first keeps none of the changes after it from being made."""

    name = "write"
    mode = "w"
    reachesOutside = True
    log = Logger()

    def parse(self, arguments, where):
        text, rest = leadingString(arguments, where)
        match = _TO.fullmatch(rest)
        if match is None:
            raise ConverterSyntaxError(f'{where}: expected \'{self.name} "text" to file\', '
                                       f'got {arguments!r}')
        name = match.group(1).strip()
        if name.startswith('"'):
            name, extra = leadingString(name, where)
            if extra.strip():
                raise ConverterSyntaxError(f"{where}: unexpected {extra.strip()!r} after the file name")
        return text, name

    def run(self, arguments, context):
        text, name = arguments
        path = filePath(context, name)
        try:
            with open(path, self.mode, encoding="utf-8", newline="") as output:
                output.write(context.expand(text))
        except OSError as e:
            self.log.error("{converter}: {name} to {path} failed: {reason}; the line goes on",
                           converter=context.converterName, name=self.name, path=path, reason=e.strerror or e)
        return Outcome.CONTINUE


class Append(Write):
    """``append "text" to file``: the text is added at the end of the file."""

    name = "append"
    mode = "a"


class FileCommand(TextCommand):
    """``mkdir folder`` / ``rm file``: Conquest's file commands, on the file
    the (expanded) name gives (``filePath``), as Conquest runs them itself,
    not as shell programs; a failure is logged in one line and the line
    goes on.  Only the plain form Conquest's own commands take, one name,
    is such a command: a statement with a shell option, several names or
    what only a shell reads (``*``, ``~``, ``$``, quotes ...), ``rm -rf
    out/%i``, ``rm -f out/*.tmp``, runs in an export converter as the
    program it is (``ExternalProgram``), as before pacs had these commands;
    in an import converter, which runs no program, it is refused when
    parsed."""

    reachesOutside = True
    log = Logger()
    SHELL_SYNTAX = re.compile(r"""^-|[\s*?\[\]~$"'`\\|&<>(){}!#]""")

    def parse(self, arguments, where):
        name = super().parse(arguments, where)
        plain = _unquoted(name.removeprefix(f"{self.option} ").strip())  # 'rm -f "%f"' is 'rm %f'
        if plain and not self.SHELL_SYNTAX.search(plain):
            return plain
        if getattr(where, "kind", None) == "export":
            return ShellLine(f"{self.name} {name}")  # no "%f" appended: 'rm -f out/*.tmp' is no 'rm ... %f'
        raise ConverterSyntaxError(f"{where}: '{self.name}' takes one file name, as Conquest's (no shell options, "
                                   f"patterns or quotes: an import converter runs no program), got {arguments!r}")

    def run(self, arguments, context):
        if isinstance(arguments, ShellLine):
            return PROGRAM.run(arguments.commandLine, context)
        path = filePath(context, arguments)
        refusal = self.refusal(path, context.services)
        if refusal is not None:
            self.log.error("{converter}: {name} {path} refused: {refusal}; the line goes on",
                           converter=context.converterName, name=self.name, path=path, refusal=refusal)
            return Outcome.CONTINUE
        try:
            self.act(path)
        except OSError as e:
            self.log.error("{converter}: {name} {path} failed: {reason}; the line goes on",
                           converter=context.converterName, name=self.name, path=path, reason=e.strerror or e)
        return Outcome.CONTINUE


    def refusal(self, path, services):
        """Why the command is not to act on ``path``, or None."""
        return None


def _unquoted(name):
    """``name`` without the double quotes around it, if it has them."""
    return name[1:-1] if len(name) > 1 and name[0] == name[-1] == '"' else name


class ShellLine(NamedTuple):
    """A ``mkdir``/``rm`` statement that is a shell program's command line."""

    commandLine: str


class MakeFolder(FileCommand):
    """``mkdir folder``: the folder and its parents, as Conquest makes them."""

    name = "mkdir"
    option = "-p"  # what the command does anyway

    def act(self, path):
        os.makedirs(path, exist_ok=True)


class RemoveFile(FileCommand):
    """``rm file``: the file is removed (Conquest's ``unlink``), unless it
    is the archive's own: a file in a MAG or mirror device (``rm %f`` after
    a failed ``copy %f to backup/`` would lose the only stored copy, the
    index still naming it) or one of the index database's."""

    name = "rm"
    option = "-f"  # what the command does anyway

    def refusal(self, path, services):
        for device, folder in [*services.magDevices, *services.mirrorDevices]:  # those in use, not the ini's
            if inFolders(path, {os.path.realpath(folder)}):
                return (f"it is in {device} ({folder}), the archive's storage: removing a stored object's "
                        f"file loses it while the index still lists it (the archive's delete commands, "
                        f"such as dgate --deleteimagefile, remove both)")
        if isOneOf(path, services.databaseFiles):
            return "it is a file of the archive's index database"
        return None

    def act(self, path):
        try:
            os.remove(path)
        except FileNotFoundError:  # as 'rm -f' and Conquest's unlink: nothing to remove is no failure
            self.log.debug("rm {path}: there is no such file", path=path)


class System(TextCommand):
    """``system command line``: run by the shell, each %-variable's value
    quoted as data (``shellCommand``); its exit status is logged."""

    name = "system"
    reachesOutside = True
    log = Logger()

    def run(self, arguments, context):
        commandLine = shellCommand(arguments, context)
        configuration = context.services.configuration
        status = subprocess.call(commandLine, shell=True,
                                 cwd=configuration.workdir if configuration is not None else None)
        self.log.emit(self.level(status), "{converter}: {name} {commandLine!r} exited with status {status}",
                      converter=context.converterName, name=self.name, commandLine=commandLine, status=status)
        return Outcome.CONTINUE

    def level(self, status):
        return LogLevel.info


class ExternalProgram(System):
    """An export converter statement naming no command (manual 7.2, export
    converter options 1 and 3): a program run by the shell, ``myconverter``
    with the object's file name as its only argument, ``dicomtobitmap %f
    out/%b.bmp`` with its %-variables expanded.  Made by the parser, not
    registered: it has no name of its own to start a statement with."""

    name = "program"
    scope = "E"

    def parse(self, arguments, where):
        text = super().parse(arguments, where)
        return text if "%" in text else f'{text} "%f"'

    def level(self, status):
        return LogLevel.info if status == 0 else LogLevel.warn


PROGRAM = ExternalProgram()  # an export statement naming no command runs it as a program


class ConquestOnly(Command):
    """An export statement that starts with a command of Conquest's
    (``save bmp|gif|jpg``, ``save frame``, ``merge study``, ``submit`` and
    ``submit2`` of a patient, study, series or image) pacs does not
    implement (any other ``submit ...`` is a program, as in Conquest): Conquest would run no program for
    it, so pacs runs none either.  Parsing it logs a warning naming it (at
    start-up, and when the line is changed); running it does nothing but
    log that it was skipped.  Made by the parser, not registered."""

    name = "conquest-only"
    scope = "E"
    log = Logger()
    NAMES = re.compile(r"\s*(save\s+(?:bmp|gif|jpg|frame)|merge\s+study|submit2?\s+(?:patient|study|series|image))"
                       r"(?![\w.\-/\\])", re.IGNORECASE)

    def parse(self, arguments, where):
        command = " ".join(self.NAMES.match(arguments).group(1).lower().split())
        self.log.warn("{where}: Conquest's {command!r} is not implemented by pacs: the statement {statement!r} "
                      "will do nothing (it is not run as a program)", where=where, command=command,
                      statement=arguments)
        return command, arguments

    def run(self, arguments, context):
        command, statement = arguments
        self.log.info("{converter}: {statement!r} skipped: Conquest's {command!r} is not implemented by pacs",
                      converter=context.converterName, statement=context.expand(statement), command=command)
        return Outcome.CONTINUE
