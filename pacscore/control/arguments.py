"""Conquest's control command arguments, and the base of the commands that
read them.

Arguments are comma separated (``get_amap:2,%s``); the last field takes
the rest of the text, commas included, so a format or a value may hold
commas (``put_param:ImportConverter0,nop a,b``).  Missing fields are empty.
"""

from twisted.internet import defer
from twisted.plugin import IPlugin
from zope.interface import implementer

from pacscore.control.context import CommandError
from pacscore.interfaces import IControlCommand


def fields(arguments, count):
    """The ``count`` comma-separated fields of ``arguments``, blanks around
    them stripped, except in the last, which holds the rest of the text
    as written (a format may have blanks); missing ones are ''."""
    raw = arguments.split(",", count - 1)
    parts = [part.strip() for part in raw]
    if len(raw) == count:
        parts[-1] = raw[-1]
    return parts + [""] * (count - len(parts))


def number(text, what):
    """``text`` (ASCII digits) as a non-negative int, or CommandError naming ``what``."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise CommandError(f"{what} must be a number, not {text!r}")
    return int(text)


@implementer(IPlugin, IControlCommand)
class ControlCommand:
    """A control command plugin: subclasses set ``name`` and ``usage``
    (or pass them), ``readOnly`` when they change nothing, and define ``run``."""

    name = ""
    usage = ""
    readOnly = False

    def __init__(self, name=None, usage=None):
        if name is not None:
            self.name = name
        if usage is not None:
            self.usage = usage

    def run(self, arguments, context):
        raise NotImplementedError


class AsyncControlCommand(ControlCommand):
    """A control command whose work is a coroutine, ``execute``."""

    def run(self, arguments, context):
        return defer.ensureDeferred(self.execute(arguments, context))

    async def execute(self, arguments, context):
        raise NotImplementedError
