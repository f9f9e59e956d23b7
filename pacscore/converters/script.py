"""Conquest's converter language (manual 7.2): parsing a line once, running it per object.

A line is statements separated by ';' (outside double quotes; empty
statements are ignored), each a command name and its arguments.
``{ stmt; stmt; }`` groups statements into a block; blocks nest.  As in
Conquest a '{' opens a block only at the start of a statement (or after a
condition); inside another statement braces are its text (``system echo
${HOME}``), a '}' that closes none of them closing the block around it.  A
condition (``ifequal``, ``between`` ...) guards the statement or block
after it, and conditions chain: ``ifequal "a", "a"; ifnotempty "%i"; nop``
runs ``nop`` only when both hold.  A command whose registered name ends
with ':' (``lua:``) takes the rest of the line as its argument; a
statement that is a Lua file's name, ``x.lua`` or ``x.lua(text)``, is
run by ``lua:`` (as Conquest runs one).  In an
export converter a statement that starts with no command's name is a
program to run (``external.ExternalProgram``, as Conquest runs
``myconverter.exe`` or ``dicomtobitmap %f ...``), unless it starts with
one of Conquest's own commands pacs lacks (``save bmp`` ...:
``external.ConquestOnly``, a warning, never a program); elsewhere it is an
error.

``parseScript`` builds the tree of (command, parsed arguments, column)
and raises ``ConverterSyntaxError("<key>, column N: ...")`` for what it
cannot take; ``Script.run`` executes the tree in a worker thread.  On a
``sandboxed`` context (a sandboxed Lua script's ``script()``) a command
that ``reachesOutside`` (runs a program, writes a file it is told to) is
refused: logged, and the line ends with STOP.
"""

import re
import reprlib
import string
from dataclasses import dataclass

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from pacscore.converters.command import LUA_FILE
from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.external import PROGRAM, ConquestOnly
from pacscore.pluginset import named

SCOPES = {"import": "I", "export": "E"}
CONQUEST_ONLY = ConquestOnly()  # ... unless it names a command of Conquest's pacs lacks


class Location(str):
    """Where a statement is, for messages: ``"<key>, column N"``.  Passed to
    ``IConverterCommand.parse`` as ``where``; commands that parse converter
    lines of their own (``call``) also find the ``registry`` and ``kind``
    of this line on it, and a command whose failure ends the line, whether
    anything follows it there (``followed``: not only blanks, ';' and '}')."""

    def __new__(cls, key, column, registry, kind, followed=False):
        location = super().__new__(cls, f"{key}, column {column}")
        location.key = key
        location.column = column
        location.registry = registry
        location.kind = kind
        location.followed = followed
        return location


class _CommandFailed(Exception):
    """A command raised; it was logged, and the line ends with STOP."""

    def __init__(self, command):
        super().__init__(command.name)
        self.command = command


@dataclass(frozen=True)
class Statement:
    """One command with its parsed arguments; ``column`` counts from 1."""

    command: object
    arguments: object
    column: int

    log = Logger()

    def evaluate(self, key, context):
        """What the command's ``run`` gives (an Outcome, a bool for
        conditions). Raises _CommandFailed after logging its exception, or
        that it replaced ``context.dataset`` (put back: the data set is
        changed in place)."""
        if context.sandboxed and getattr(self.command, "reachesOutside", False):
            self.log.error("{key}, column {column}: converter command {command!r} refused: sandboxed Lua "
                           "scripts cannot run programs or write files through script() (LuaAllowUnsafe = 1 "
                           "allows it)", key=key, column=self.column, command=self.command.name)
            raise _CommandFailed(self.command)
        dataset, results = context.dataset, []
        maybeDeferred(self.command.run, self.arguments, context).addBoth(results.append)
        if not results:
            raise RuntimeError(f"{key}, column {self.column}: converter command {self.command.name!r} "
                               f"returned a Deferred that has not fired")
        result = results[0]
        replacement, context.dataset = context.dataset, dataset
        if isinstance(result, Failure):
            self.log.failure("{key}, column {column}: converter command {command!r} failed", result,
                             LogLevel.error, key=key, column=self.column, command=self.command.name)
            raise _CommandFailed(self.command)
        if replacement is not dataset:
            self.log.error("{key}, column {column}: converter command {command!r} failed: it replaced "
                           "context.dataset with {replacement} instead of changing the data set in place",
                           key=key, column=self.column, command=self.command.name,
                           replacement=type(replacement).__name__ + " " + reprlib.repr(replacement))
            raise _CommandFailed(self.command)
        return result

    def run(self, key, context):
        """None to go on, else ``(outcome, command)`` ending the line."""
        outcome = self.evaluate(key, context)
        if outcome is None or outcome is Outcome.CONTINUE:
            return None
        if not isinstance(outcome, Outcome):
            raise TypeError(f"{key}, column {self.column}: converter command {self.command.name!r} "
                            f"returned {outcome!r}, not an Outcome")
        return outcome, self.command


@dataclass(frozen=True)
class Block:
    """``{ ... }``: statements run as one."""

    nodes: tuple
    column: int

    def run(self, key, context):
        return _runAll(self.nodes, key, context)


@dataclass(frozen=True)
class Conditional:
    """A condition and the statement, block or further condition it guards."""

    test: Statement
    then: object

    def run(self, key, context):
        if self.test.evaluate(key, context):
            return self.then.run(key, context)
        return None


def _runAll(nodes, key, context):
    for node in nodes:
        end = node.run(key, context)
        if end is not None:
            return end
    return None


class Script:
    """A parsed converter line (see the module docstring)."""

    def __init__(self, key, kind, text, nodes):
        self.key = key
        self.kind = kind
        self.text = text
        self.nodes = nodes

    def __repr__(self):
        return f"<Script {self.key}: {self.text!r}>"

    def execute(self, context):
        """``(outcome, command)``: how the line ended and the command that
        ended it (None when it ran to the end).  A command that raises is
        logged and ends the line with ``Outcome.STOP``."""
        try:
            end = _runAll(self.nodes, self.key, context)
        except _CommandFailed as failed:
            return Outcome.STOP, failed.command
        return end or (Outcome.CONTINUE, None)

    def run(self, context):
        """Run the line on ``context`` (in a worker thread): the first
        outcome other than CONTINUE, or CONTINUE when it ran to the end."""
        return self.execute(context)[0]


class _Parser:
    """Recursive descent over one line; ``pos`` is the next character."""

    def __init__(self, text, key, registry, kind):
        self.text = text
        self.key = key
        self.registry = registry
        self.kind = kind
        self.pos = 0

    def error(self, position, message):
        raise ConverterSyntaxError(f"{self.key}, column {position + 1}: {message}")

    def sequence(self, opening):
        """The nodes up to the end of the line (``opening`` None) or to the
        '}' closing the block opened at ``opening``."""
        nodes = []
        while (node := self.node(opening)) is not None:
            nodes.append(node)
        return tuple(nodes)

    def node(self, opening):
        """The next statement, block or condition, or None at the end of
        the sequence (the '}' is consumed)."""
        text = self.text
        while self.pos < len(text) and (text[self.pos].isspace() or text[self.pos] == ";"):
            self.pos += 1
        if self.pos == len(text):
            if opening is not None:
                self.error(opening, "'{' has no matching '}'")
            return None
        start = self.pos
        if text[start] == "}":
            if opening is None:
                self.error(start, "'}' has no matching '{'")
            self.pos += 1
            return None
        if text[start] == "{":
            self.pos += 1
            return Block(self.sequence(start), start + 1)
        statement = self.statement()
        if not statement.command.condition:
            return statement
        then = self.node(opening)
        if then is None:
            self.error(start, f"'{statement.command.name}' is not followed by a statement")
        return Conditional(statement, then)

    def statement(self):
        start = self.pos
        found = self.registry.lookup(self.text[start:])
        if found is not None and found[0].name.endswith(":"):
            self.pos = len(self.text)
        else:
            self.pos = self.statementEnd(start, found is not None and found[0].condition)
            text = self.text[start:self.pos].strip()
            found = self.registry.lookup(text) or self.luaFile(text)
        if found is None and self.kind == "export":
            text = self.text[start:self.pos].strip()
            return self.parsed(CONQUEST_ONLY if CONQUEST_ONLY.NAMES.match(text) else PROGRAM, text, start)
        if found is None:
            word = re.match(r"[^\s;{}]+", self.text[start:]).group()
            self.error(start, f"unknown command {word!r}")
        command, arguments = found
        if SCOPES[self.kind] not in command.scope:
            self.error(start, f"'{command.name}' is not allowed in {self.kind} converters")
        return self.parsed(command, arguments, start)

    def parsed(self, command, arguments, start):
        """The Statement of ``command`` at ``start`` with its ``parse`` of
        ``arguments``; any exception but ConverterSyntaxError (a plugin's
        bug) is reported as a syntax error naming the command's plugin."""
        where = Location(self.key, start + 1, self.registry, self.kind,
                         bool(self.text[self.pos:].strip(string.whitespace + ";}")))
        try:
            return Statement(command, command.parse(arguments, where), start + 1)
        except ConverterSyntaxError:
            raise
        except Exception as e:
            self.error(start, f"converter command {command.name!r} ({named(command)}) failed to parse: "
                              f"{type(e).__name__}: {e}")

    def luaFile(self, text):
        """``(lua: command, text)`` for a statement that names a Lua file,
        ``x.lua`` or ``x.lua(text)``, which Conquest runs as ``lua:`` runs
        it; None for another statement (or without a ``lua:`` command)."""
        command = self.registry.commands.get("lua:")
        if command is None or not LUA_FILE.fullmatch(text):
            return None
        return command, text

    def statementEnd(self, start, condition):
        """Where the statement at ``start`` ends: the first ';' outside
        double quotes, a '}' closing the block around it, or the end of the
        line.  A '{' ends a ``condition`` (``ifnotempty "x" {...}`` guards
        the block); in another statement braces are its own text, as
        Conquest reads braces as blocks only at the start of a statement
        (``system echo ${HOME}``, ``nop a {b}``): a '{' there opens a pair
        that its '}' closes."""
        quote, depth = None, 0
        for position in range(start, len(self.text)):
            character = self.text[position]
            if character == '"':
                quote = position if quote is None else None
            elif quote is not None:
                continue
            elif character == ";" or (character == "{" and condition) or (character == "}" and not depth):
                return position
            elif character == "{":
                depth += 1
            elif character == "}":
                depth -= 1
        if quote is not None:
            self.error(quote, "unterminated string (missing '\"')")
        return len(self.text)


def parseScript(text, key, registry, kind):
    """The ``Script`` of converter line ``text`` of dicom.ini key ``key``,
    with the commands of ``registry``; ``kind`` "import" or "export"
    decides which commands are allowed.  Raises ConverterSyntaxError."""
    if kind not in SCOPES:
        raise ValueError(f"converter lines are 'import' or 'export', not {kind!r}")
    return Script(key, kind, text, _Parser(text, key, registry, kind).sequence(None))
