"""Which control command a request names.

The commands are ``IControlCommand`` plugins, built-in and installed ones
alike, found by ``pacscore.pluginset`` and chosen by their name (the word after
``--``, case-insensitively).
"""

from pacscore.interfaces import IControlCommand
from pacscore.pluginset import installed


class CommandRegistry:
    """The control commands by name; ``commands`` (default: every installed
    usable ``IControlCommand`` plugin) is any iterable of them."""

    def __init__(self, commands=None):
        if commands is None:
            commands = installed.providing(IControlCommand)
        self.commands = {}
        for command in commands:
            name = command.name.lower()
            if name in self.commands:
                raise ValueError(f"two control commands are named {name!r}: "
                                 f"{self.commands[name]!r} and {command!r}")
            self.commands[name] = command

    def lookup(self, name):
        """The command called ``name``, or None."""
        return self.commands.get(name.lower())

    def usage(self):
        """The commands' usage lines, by name (for ``dgate -?``)."""
        return [self.commands[name].usage for name in sorted(self.commands)]
