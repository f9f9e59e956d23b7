"""Base classes of the built-in converter commands, and the rule for the
file names they take.

A command is a plugin object providing ``IConverterCommand`` (see
``pacscore.interfaces``); these bases give the common defaults: both
scopes, not a condition, and argument checks for the two simplest forms.
"""

import os

from twisted.plugin import IPlugin
from zope.interface import implementer

from pacscore.converters.context import ConverterSyntaxError
from pacscore.interfaces import IConverterCommand


@implementer(IPlugin, IConverterCommand)
class Command:
    """A command that takes no arguments (``stop``, ``destroy`` ...)."""

    name = None
    scope = "IE"
    condition = False

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
