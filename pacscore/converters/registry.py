"""Which converter command a statement starts with.

The commands are ``IConverterCommand`` plugins (built-in and installed
ones alike); a statement's command is found by its first words, the way
an authentication plugin is picked by name: the longest registered name
that starts the statement wins, so ``forward compressed as`` beats
``forward``.  Names match case-insensitively, with any whitespace between
their words, and must end where the word does unless they end with ':'
(``lua:`` is followed directly by code): a name followed by a letter,
digit, ``_``, ``.``, ``-`` or a slash is part of a program's name
(``nop.exe``, ``process.sh %f``, ``copy-files``), which export converters
run as a program.
"""

import re

from pacscore.interfaces import IConverterCommand
from pacscore.pluginset import installed, named, pluginKey


def _pattern(name):
    words = r"\s+".join(re.escape(word) for word in name.split())
    boundary = r"(?![\w.\-/\\])" if re.match(r"\w", name[-1]) else ""
    return re.compile(r"\s*" + words + boundary, re.IGNORECASE)


class CommandRegistry:
    """The converter commands by name; ``commands`` (default: every
    usable installed ``IConverterCommand`` plugin) is any iterable of them.
    Two of the same name raise ValueError, which only a ``commands`` given
    can do: the installed plugins are already one a name (``PluginSet``
    logs and leaves out the later ones)."""

    def __init__(self, commands=None):
        if commands is None:
            commands = installed.providing(IConverterCommand)
        self.commands = {}
        for command in commands:
            name = pluginKey(command)
            if name in self.commands:
                raise ValueError(f"two converter commands are named {name!r}: "
                                 f"{named(self.commands[name])} and {named(command)}")
            self.commands[name] = command
        self._patterns = [(_pattern(name), command)
                          for name, command in sorted(self.commands.items(), key=lambda item: -len(item[0]))]

    def lookup(self, statement):
        """``(command, argumentsText)`` for the command ``statement`` starts
        with (the arguments stripped), or None when no name matches."""
        for pattern, command in self._patterns:
            match = pattern.match(statement)
            if match:
                return command, statement[match.end():].strip()
        return None
