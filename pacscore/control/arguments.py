"""Conquest's control command arguments, and the base of the commands that
read them.

Arguments are comma separated (``get_amap:2,%s``); the last field takes
the rest of the text, commas included, so a format or a value may hold
commas (``put_param:ImportConverter0,nop a,b``).  Missing fields are empty.
The file name that ``addimagefile`` and ``loadanddeletedir`` take, followed
by a patient ID, may hold commas (``DOE,JOHN.dcm``), as Conquest's
CommaInFilenameWorkAround takes them for those two commands alone
(``fileFields``).
"""

import re

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


FILE_NAMES = re.compile(r"\.(dcm|v2|hl7|gz)", re.IGNORECASE)


def splitFile(arguments):
    """``(file, rest)``: ``arguments`` cut at the comma ending the file name
    that starts it (``rest`` None when there is none, the file stripped).
    As Conquest's CommaInFilenameWorkAround, a comma is part of the name
    while the text after it still names a file, a comma-separated piece
    holding ``.dcm``, ``.v2``, ``.hl7`` or ``.gz`` in any case.  Only for
    a file followed by no other file name: a later field naming one (an
    output file, ``x.dcm.txt``) would be swallowed by the name."""
    start = 0
    while True:
        comma = arguments.find(",", start)
        if comma < 0:
            return arguments.strip(), None
        if not any(FILE_NAMES.search(piece) for piece in arguments[comma + 1:].split(",")):
            return arguments[:comma].strip(), arguments[comma + 1:]
        start = comma + 1


def fileFields(arguments, count):
    """``fields(arguments, count)`` whose first field is a file name that
    may hold commas (see ``splitFile``): ``addimagefile`` and
    ``loadanddeletedir``'s, as in Conquest."""
    name, rest = splitFile(arguments)
    return [name] + fields("" if rest is None else rest, count - 1)


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
