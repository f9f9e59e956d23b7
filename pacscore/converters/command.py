"""Base classes of the built-in converter commands, and the rules for the
file names they take, ``LUA_FILE`` (a Lua file's name, ``x.lua`` or
``x.lua(text)``), ``QUOTED_LUA_FILE`` (one in double quotes after ``lua:``)
and ``luaScriptOf`` (a ``process`` line naming a Lua file).

A command is a plugin object providing ``IConverterCommand`` (see
``pacscore.interfaces``); these bases give the common defaults: both
scopes, not a condition, and argument checks for the two simplest forms.
"""

import os
import re

from twisted.plugin import IPlugin
from zope.interface import implementer

from pacscore.converters.context import ConverterSyntaxError
from pacscore.converters.variables import pieces
from pacscore.interfaces import IConverterCommand
from pacscore.storage.filenames import safeName

STORED_FILE_LETTERS = frozenset("fp")  # %f, %p: the server's own file name, whole paths
# a statement, or what follows lua:, that names a Lua file (no space, quote, '=', parenthesis or brace
# in its name: as Lua code it would be a syntax error), and the text it is given, x.lua(text)
LUA_FILE = re.compile(r'(?P<path>[^\s;{}()"=]+\.lua)(?:\((?P<text>.*)\))?', re.IGNORECASE | re.DOTALL)
# what follows lua: that names a Lua file in double quotes, "x.lua" or "x.lua"(text): any name without '"'
# (a string literal is no Lua statement, nor can it be called)
QUOTED_LUA_FILE = re.compile(r'"(?P<path>[^"]+\.lua)"(?:\((?P<text>.*)\))?', re.IGNORECASE | re.DOTALL)


@implementer(IPlugin, IConverterCommand)
class Command:
    """A command that takes no arguments (``stop``, ``destroy`` ...)."""

    name = None
    scope = "IE"
    condition = False
    reachesOutside = False

    def parse(self, arguments, where):
        if arguments:
            raise ConverterSyntaxError(f"{where}: '{self.name}' takes no arguments, got {arguments!r}")
        return None


class TextCommand(Command):
    """A command whose argument is the rest of the statement, %-variables
    expanded when it runs (``nop any text``, ``system command line``)."""

    textRequired = True

    def parse(self, arguments, where):
        if self.textRequired and not arguments:
            raise ConverterSyntaxError(f"{where}: '{self.name}' needs an argument")
        return arguments


def localPath(context, name):
    """The file ``name`` as a command uses it: relative names are relative
    to the working folder of the configuration (``dgate -w``) when there is
    one, else to the current folder."""
    configuration = context.services.configuration
    if configuration is None:
        return name
    return os.path.join(configuration.workdir, name)


def filePath(context, template):
    """The file that ``template`` (the file name of ``save to``, ``write``,
    ``copy``, ``call``) names for ``context``, as ``localPath``."""
    return localPath(context, fileName(context, template))


def fileName(context, template):
    """The file name ``template`` gives for ``context``: its %-variables
    expanded, each value but the stored file's (%f, %p) made fit for one
    file name (``safeName``: no separator, no leading "."), so that
    what came over the network cannot lead out of the folder the template
    names; a name that starts with a value stays relative."""
    parts, valueFirst = [], False
    for piece, letter in pieces(template, context):
        if letter and letter not in STORED_FILE_LETTERS:
            piece = safeName(piece)
            valueFirst = valueFirst or not any(parts)
        parts.append(piece)
    name = "".join(parts)
    return name.lstrip("/\\") if valueFirst else name


def luaScriptOf(commandLine):
    """``(script file, rest of the line)`` of a ``process`` command line
    whose first word names a Lua file (``x.lua text``), else None."""
    script, _, text = commandLine.strip().partition(" ")
    return (script, text.strip()) if script.lower().endswith(".lua") else None
