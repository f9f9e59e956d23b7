"""The converter commands that change the data set or the variables
(manual 7.2): ``set``, ``setifempty``, ``delete``, ``fixkodak`` and
``unfixkodak``.

``set`` and ``setifempty`` take ``TARGET to "value"`` or ``TARGET if
"value"`` (``if``: only when the expanded value is not empty); ``set
gggg,eeee to nil`` deletes the element, as in Conquest.  TARGET is
a variable ``x``, ``y`` or ``z``, a tag ``gggg,eeee`` or DICOM keyword
(``set PatientName to "A^B"``, as Conquest's Lua runs ``Data.X = v``), or (``set`` only) an
element in a sequence item: ``gggg,eeee.N\\gggg,eeee`` (item N, created
when missing) or ``gggg,eeee.*\\gggg,eeee`` (a new item appended); a file
meta element (group 0002) is refused when the line is parsed.

``fixkodak`` turns Kodak's 8-digit Patient IDs with a leading zero into
NKI's 7 digits (``01234567`` -> ``1234567``); ``unfixkodak`` does the
reverse for a Patient ID of exactly 7 digits.  Other Patient IDs are left
alone.
"""

import re
from typing import NamedTuple

from pydicom.datadict import repeater_has_keyword, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from twisted.logger import Logger

from pacscore.converters.arguments import leadingString
from pacscore.converters.command import Command
from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.elements import TAG_PATTERN, assign, metaRefusal, parseTag, textOf, vrOf
from pacscore.dicom.virtual import SERVER_MASK

PATIENT_ID = 0x00100020
VARIABLES = ("x", "y", "z")
NIL = "nil"  # 'set gggg,eeee to nil' deletes the element
APPEND = "*"

_ASSIGNMENT = re.compile(r"(?P<target>\S+)\s+(?P<mode>to|if)(?:\s+(?P<value>.*))?$",
                         re.IGNORECASE | re.DOTALL)
_ITEM_TARGET = re.compile(rf"({TAG_PATTERN})\.([0-9]+|\*)[\\/]({TAG_PATTERN})")


class Target(NamedTuple):
    """Where a value goes: ``variable``, or element ``tag`` (inside
    ``item`` (an index or APPEND) of sequence ``sequence`` when that is set)."""

    variable: str | None = None
    tag: int | None = None
    sequence: int | None = None
    item: int | str | None = None


class Assignment(NamedTuple):
    """The parsed arguments of ``set`` and ``setifempty``."""

    target: Target
    onlyIfValue: bool  # the 'if' form
    value: str         # unexpanded
    deletes: bool = False  # 'set gggg,eeee to nil': the element is deleted


def unquote(text, where):
    """The double-quoted string ``text``, or ``text`` itself when unquoted."""
    if not text.startswith('"'):
        return text
    string, rest = leadingString(text, where)
    if rest.strip():
        raise ConverterSyntaxError(f"{where}: unexpected {rest.strip()!r} after the string")
    return string


def parseTagArgument(text, where):
    """``0xGGGGEEEE`` of a ``gggg,eeee`` argument; ConverterSyntaxError otherwise."""
    try:
        return parseTag(text.strip())
    except ValueError as e:
        raise ConverterSyntaxError(f"{where}: {e}") from e


def parseTarget(text, where, inSequences):
    if text.lower() in VARIABLES:
        return Target(variable=text.lower())
    if inSequences and (match := _ITEM_TARGET.fullmatch(text)):
        item = match.group(2)
        target = Target(tag=parseTag(match.group(3)), sequence=parseTag(match.group(1)),
                        item=item if item == APPEND else int(item))
    elif text.isidentifier():  # a DICOM keyword, as Conquest's Lua sets Data.X: 'set X to "v"'
        tag = tag_for_keyword(text)  # spelt as the standard does: Conquest's dictionary lookup is strcmp
        if tag is None and repeater_has_keyword(text):  # which overlay or curve group it is the name cannot say
            raise ConverterSyntaxError(f"{where}: {text} is an element of repeating groups (60xx or 50xx): "
                                       "name it by its tag, such as 6000,3000")
        if tag is None:
            raise ConverterSyntaxError(f"{where}: not a tag (gggg,eeee) nor a DICOM keyword (spelt with "
                                       f"its case): {text!r}")
        target = Target(tag=tag)
    else:
        target = Target(tag=parseTagArgument(text, where))
    refusal = metaRefusal(target.tag)
    if refusal:
        raise ConverterSyntaxError(f"{where}: {refusal}")
    return target


def parseAssignment(arguments, where, inSequences):
    match = _ASSIGNMENT.match(arguments)
    if match is None:
        raise ConverterSyntaxError(f"{where}: expected 'gggg,eeee to \"value\"' or "
                                   f"'gggg,eeee if \"value\"', got {arguments!r}")
    target = parseTarget(match.group("target"), where, inSequences)
    text = (match.group("value") or "").strip()
    onlyIfValue = match.group("mode").lower() == "if"
    return Assignment(target, onlyIfValue, unquote(text, where), not onlyIfValue and text.lower() == NIL)


def deleteElement(context, tag):
    """Remove top-level element ``tag`` of the context's data set, if there."""
    if tag in context.dataset:
        del context.dataset[tag]
        context.changed = True
        context.assigned.discard(tag)


def _itemFor(dataset, target):
    """The sequence item ``target`` names, created when missing."""
    sequence = dataset.get(target.sequence)
    if sequence is None or sequence.VR != "SQ":
        dataset.add_new(target.sequence, "SQ", Sequence())
        sequence = dataset[target.sequence]
    items = sequence.value
    if target.item == APPEND:
        items.append(Dataset())
        return items[-1]
    while len(items) <= target.item:
        items.append(Dataset())
    return items[target.item]


def currentValue(context, target):
    if target.variable is not None:
        return context.variables.get(target.variable, "")
    return textOf(context.dataset.get(target.tag))


class AssignmentCommand(Command):
    """What ``set`` and ``setifempty`` share: parsing and assigning."""

    log = Logger()
    scope = "I"
    inSequences = True

    def parse(self, arguments, where):
        return parseAssignment(arguments, where, self.inSequences)

    def assign(self, arguments, context):
        """Expand the value and put it where the target says (the 'if'
        form: only a value that is not empty).  A sequence (the manual's
        own ``set 0010,1002 to ..``) cannot hold text, nor a number element
        what is no number: a warning, and the data set stays as it is."""
        value = context.expand(arguments.value)
        if arguments.onlyIfValue and not value:
            return
        target = arguments.target
        if target.variable is not None:
            context.variables[target.variable] = value
            return
        if vrOf(target.tag) == "SQ":
            self.log.warn("{converter}: {command}: ({tag}) is a sequence, it takes no text",
                          converter=context.converterName, command=self.name,
                          tag=f"{target.tag >> 16:04x},{target.tag & 0xFFFF:04x}")
            return
        dataset = context.dataset
        holder = dataset if target.sequence is None else _itemFor(dataset, target)
        try:
            assign(holder, target.tag, value, root=dataset, where=f"{context.converterName}: {self.name}")
        except ValueError as e:  # the rest of the line still runs (an anonymising newuids ...)
            self.log.warn("{converter}: {command}: ({tag}) left as it was: {error}",
                          converter=context.converterName, command=self.name,
                          tag=f"{target.tag >> 16:04x},{target.tag & 0xFFFF:04x}", error=e)
            return
        context.changed = True
        if target.sequence is None:
            context.assigned.add(target.tag)


class SetCommand(AssignmentCommand):
    """``set TARGET to "value"`` / ``set TARGET if "value"``; ``set
    gggg,eeee to nil`` (unquoted, any case) deletes the top-level element,
    as in Conquest, whose nil does nothing to a variable or a sequence
    item: such a statement is parsed with a warning and does nothing."""

    name = "set"

    def parse(self, arguments, where):
        assignment = super().parse(arguments, where)
        target = assignment.target
        if assignment.deletes and (target.variable is not None or target.sequence is not None):
            self.log.warn("{where}: 'set {arguments}' does nothing, as in Conquest: 'to nil' deletes only a "
                          "top-level element (set it to \"\" to empty it)", where=where, arguments=arguments)
            return None
        return assignment

    def run(self, arguments, context):
        if arguments is None:  # 'set x to nil': nothing, as in Conquest
            return Outcome.CONTINUE
        if arguments.deletes:
            deleteElement(context, arguments.target.tag)
        else:
            self.assign(arguments, context)
        return Outcome.CONTINUE


class SetIfEmptyCommand(AssignmentCommand):
    """``setifempty TARGET to "value"`` / ``setifempty TARGET if "value"``:
    only when the variable or top-level element is missing or empty."""

    name = "setifempty"
    inSequences = False

    def run(self, arguments, context):
        if not currentValue(context, arguments.target):
            self.assign(arguments, context)
        return Outcome.CONTINUE


class DeleteElementCommand(Command):
    """``delete gggg,eeee``: remove a top-level element."""

    name = "delete"
    scope = "I"

    def parse(self, arguments, where):
        return parseTagArgument(arguments, where)

    def run(self, arguments, context):
        deleteElement(context, arguments)
        return Outcome.CONTINUE


class VirtualServersCommand(Command):
    """``virtualserver N`` / ``virtualservermask N`` (QueryConverter0,
    RetrieveConverter0): the request goes to VirtualServerForN only, or to
    those of the bit mask N, by Conquest's (9999,0802) control element."""

    scope = "I"

    def __init__(self, name, mask):
        self.name = name
        self.mask = mask  # N -> the bit mask

    def parse(self, arguments, where):
        if not arguments.strip().isdigit():
            raise ConverterSyntaxError(f"{where}: '{self.name}' needs a number, got {arguments!r}")
        return self.mask(int(arguments))

    def run(self, arguments, context):
        context.dataset.add_new(SERVER_MASK, "IS", str(arguments))
        context.changed = True
        return Outcome.CONTINUE


class PatientIDCommand(Command):
    """``fixkodak`` / ``unfixkodak``: rewrite the Patient ID by ``rule``."""

    scope = "I"

    def __init__(self, name, rule):
        self.name = name
        self.rule = rule

    def run(self, arguments, context):
        current = textOf(context.dataset.get(PATIENT_ID))
        new = self.rule(current)
        if new != current:
            assign(context.dataset, PATIENT_ID, new, where=f"{context.converterName}: {self.name}")
            context.changed = True
        return Outcome.CONTINUE
