"""The converter commands that queue work for later (manual 7.2, the
command table): ``forward``, ``get``, ``delete``, ``process``,
``prefetch``, ``preretrieve`` and ``copy``.

Full syntax (values may be double-quoted; %-variables are expanded when
the command runs, but for the % of an IPv6 address's zone in a ``to`` or
``from`` destination, ``[fe80::1%br0]:104``, which is kept)::

    forward [patient|study|series|image] [compressed as xx] [date yyyymmdd-yyyymmdd]
            [now -ddd+ddd] [age -ddd+ddd] [modality mm] [sop xxxx] [imagetype xxxx]
            [seriesdesc xxxx] [series xxx] [study xxx] [after NN] to AE
    get    [patient|study|series|image] [the same filters] [after NN] from AE
    delete patient|study|series|image [the same filters] [after NN]
    process [patient|study|series|image] [after NN] by command line

``forward to AE`` and ``forward compressed as XX to AE`` (export
converters) forward the object itself.  The level defaults to image; an
image goes at once (or ``after NN`` seconds), a patient, study or series
``ForwardCollectDelay`` seconds (default 600) after the last of its
objects arrived.  ``prefetch`` reads the patient's files once,
``preretrieve AE`` (also spelled ``preretrive``, as in the manual) is
``get patient from AE``, ``copy file to file`` copies the stored file
(to a folder: under its own name).  Everything but ``copy`` goes to the
export queue (``context.services.exportQueue``) and happens later, retried
on failure.

``delete`` with a level is this command; ``delete gggg,eeee`` (import
converters) removes an element, so the level cannot be left out here.
``process`` needs its ``by`` part.
"""

import datetime
import os
import re
import shutil
from typing import NamedTuple

import pydicom
from twisted.logger import Logger

from pacscore.converters.command import Command, filePath, luaScriptOf
from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.saving import wholeObject
from pacscore.converters.shellquoting import shellCommand
from pacscore.export.queue import LEVELS, REMOTE_ACTIONS, Target
from pacscore.export.selection import FILTERS, resolveFilters
from pacscore.export.spool import discard
from pacscore.hostport import ZONE, bareIPv6Problem

_TOKEN = re.compile(r'"[^"]*"|\S+')
# the % between an IPv6 address and its zone in brackets, [fe80::1%br0]: no %-variable (%b)
_ZONE_PERCENT = re.compile(rf"(\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)%(?={ZONE}\])")
_NUMBER = re.compile(r"^\d+$")


class Request(NamedTuple):
    """A parsed statement; texts still to be %-expanded."""

    level: str
    compression: str
    filters: dict
    after: str
    destination: str   # the AE after 'to'/'from', or the command line after 'by'


def _unquote(text):
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def parseRequest(text, where, name, options, ending, level=None):
    """Parse ``[level] [options] [ending VALUE]``.  ``options`` are the
    words allowed (filters, ``compressed``, ``after``); ``ending`` is
    ``"to"``/``"from"`` (an AE follows, required), ``"by"`` (the rest of
    the text, required) or None.  ``level`` fixes the level."""
    tokens = list(_TOKEN.finditer(text))
    position = 0

    def value(word):
        nonlocal position
        if position >= len(tokens):
            raise ConverterSyntaxError(f"{where}: '{name}': '{word}' needs a value")
        position += 1
        return _unquote(tokens[position - 1].group())

    if level is None:
        level = "IMAGE"
        if tokens and tokens[0].group().upper() in LEVELS:
            level = tokens[0].group().upper()
            position = 1
    compression, filters, after, destination = "", {}, "", ""
    while position < len(tokens):
        word = tokens[position].group().lower()
        position += 1
        if word == "compressed" and "compressed" in options:
            if position >= len(tokens) or tokens[position].group().lower() != "as":
                raise ConverterSyntaxError(f"{where}: '{name}': expected 'compressed as XX'")
            position += 1
            compression = value("compressed as")
        elif word == "after" and "after" in options:
            after = value(word)
            if "%" not in after and not _NUMBER.match(after):
                raise ConverterSyntaxError(f"{where}: '{name}': 'after' needs seconds, got {after!r}")
        elif word in FILTERS and word in options:
            filters[word] = value(word)
        elif word == ending == "by":
            destination = text[tokens[position - 1].end():].strip()
            position = len(tokens)
        elif word == ending:
            destination = value(word)
            if position < len(tokens):
                raise ConverterSyntaxError(f"{where}: '{name}': nothing may follow '{ending} {destination}'")
        else:
            raise ConverterSyntaxError(f"{where}: '{name}': unexpected {tokens[position - 1].group()!r}")
    if ending is not None and not destination:
        raise ConverterSyntaxError(f"{where}: '{name}': '{ending} ...' is missing")
    return Request(level, compression, filters, after, destination)


_IDENTITY = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def targetOf(dataset):
    """The ``Target`` of the object a converter runs on."""
    return Target(*(str(dataset.get(keyword, "") or "").strip() for keyword in _IDENTITY))


def _storedTarget(context):
    """The ``Target`` and object path an action of an export line queues:
    those of the stored object, whose identity stays what is stored when
    the line changed ``Data`` (an anonymising line's action must still
    find it), and an image forward then sends the changed object from a
    spool file (``pacscore.export.spool``), never the unchanged one.  An
    object a Lua script made or read (``x:Script``) is found by its own
    UIDs."""
    if context.isImport or not context.changed or not context.stored:
        return targetOf(context.dataset), context.filename or ""
    return targetOf(pydicom.dcmread(context.filename, stop_before_pixels=True, force=True,
                                    specific_tags=list(_IDENTITY))), context.filename


def _sendsItsCopy(context):
    """Whether an image forward sends the object from a spool file: one an
    export line changed, or one a Lua script made or read (``x:Script``:
    the stored object with its UIDs is not it, or there is none)."""
    return not context.stored or (context.changed and not context.isImport)


def _keptZones(destination):
    """``destination`` with the % of each IPv6 address's zone in brackets
    doubled, so that expanding it keeps the zone as written
    (``[fe80::1%br0]:104``, not %b, the stored file's name, before ``r0``):
    Conquest, which has no IPv6, has no variable there."""
    return _ZONE_PERCENT.sub(r"\1%%", destination)


def queueOf(context):
    queue = context.services.exportQueue
    if queue is None:
        raise RuntimeError("no export queue: delayed actions are not available here")
    return queue


def _destination(context, action, request):
    """The AE (or host:port) a forward or get ``request`` names, expanded
    now; ValueError when it expands to nothing."""
    destination = context.expand(_keptZones(request.destination)).strip()
    if not destination:
        raise ValueError(f"{action} {'from' if action == 'get' else 'to'} {request.destination!r}: "
                         f"the AE is empty, nothing queued")
    return destination


def enqueue(context, action, request, filters=None):
    """Queue ``action`` for ``request`` with its values expanded now.  A
    forward or get whose AE expands to nothing (``to %V0008,0080`` of an
    object without it) raises: the line's error, logged, for that object."""
    queue = queueOf(context)
    dataset = context.dataset
    if filters is None:
        filters = resolveFilters({word: context.expand(text) for word, text in request.filters.items()},
                                 datetime.date.today(),
                                 str(dataset.get("SeriesDate", "") or dataset.get("StudyDate", "") or ""))
    notBefore = None
    if request.after:
        after = context.expand(request.after).strip()
        if not _NUMBER.match(after):
            raise ValueError(f"'after' needs seconds, got {after!r}")
        notBefore = queue.clock() + int(after)
    destination = _destination(context, action, request) if action in REMOTE_ACTIONS else ""
    target, objectPath = _storedTarget(context)
    if action == "forward" and request.level == "IMAGE" and _sendsItsCopy(context):
        objectPath = queue.spool(wholeObject(context))
    try:
        queue.addForward(destination, request.level, target, context.expand(request.compression),
                         notBefore, action, filters, objectPath)
    except Exception:
        discard([objectPath])  # a spool file just written, which no action names
        raise
    return Outcome.CONTINUE


class ForwardCommand(Command):
    """``forward ... to AE``; ``prefix`` makes ``forward to`` and
    ``forward compressed as`` the same statement with their first words.
    An object a virtual server fetched is not forwarded to the archive it
    came from (``context.fetchedFrom``), named by its AE title or by its
    address (``_isSource``): it holds it, and a cache in front of it
    (``forward to`` it as a backup) would send each one back."""

    log = Logger()
    options = ("compressed", "after", *FILTERS)

    def __init__(self, name="forward", scope="IE", prefix=""):
        self.name = name
        self.scope = scope
        self.prefix = prefix

    def parse(self, arguments, where):
        request = parseRequest(self.prefix + arguments, where, self.name, self.options, "to",
                               level="IMAGE" if self.prefix else None)
        problem = bareIPv6Problem(request.destination)  # would be retried for ever
        if problem is not None:
            raise ConverterSyntaxError(f"{where}: '{self.name}': {problem}")
        return request

    def run(self, arguments, context):
        source = context.fetchedFrom
        if (source and _isSource(context, destination := _destination(context, "forward", arguments), source)
                and _holdsFetched(context, arguments.level)):
            self.log.info("{converter}: {entity} forward of {uid} to {destination} not queued: a virtual server "
                          "fetched it from there{aka}", converter=context.converterName,
                          entity=arguments.level.lower(), uid=targetOf(context.dataset).sopInstanceUID,
                          destination=destination,
                          aka="" if destination.upper() == source.upper() else f" ({source}, the same host and port)")
            return Outcome.CONTINUE
        return enqueue(context, "forward", arguments)


def _isSource(context, destination, source):
    """Whether a forward to ``destination`` goes to ``source``, the archive
    a virtual server fetched the object from: its AE title, or the host
    and port acrnema.map gives it (``AcrNemaMap.address``), written
    ``host:port`` or as another entry's AE title."""
    if destination.upper() == source.upper():
        return True
    acrNemaMap = context.services.configuration.acrNemaMap
    address = acrNemaMap.address(source)
    return address is not None and acrNemaMap.address(destination) == address


def _holdsFetched(context, level):
    """Whether the entity at ``level`` of the object a converter runs on
    holds the object a virtual server fetched: always for that object; for
    one a Lua script made from it (``x:Script``), when they share their
    UID at that level (an image forward of a new report goes, a study
    forward of its study would send the fetched objects back)."""
    if context.fetchedObject is None:
        return True
    return targetOf(context.dataset).uid(level) == targetOf(context.fetchedObject).uid(level)


class GetCommand(Command):
    """``get [level] [filters] [after NN] from AE``: a C-MOVE from AE to us."""

    name = "get"
    options = ("after", *FILTERS)

    def parse(self, arguments, where):
        return parseRequest(arguments, where, self.name, self.options, "from")

    def run(self, arguments, context):
        return enqueue(context, "get", arguments)


class DeleteCommand(Command):
    """``delete LEVEL [filters] [after NN]``, one instance per level."""

    options = ("after", *FILTERS)

    def __init__(self, level):
        self.level = level.upper()
        self.name = f"delete {level.lower()}"

    def parse(self, arguments, where):
        return parseRequest(arguments, where, self.name, self.options, None, level=self.level)

    def run(self, arguments, context):
        return enqueue(context, "delete", arguments)


class ProcessCommand(Command):
    """``process [level] [after NN] by command``: the command line runs
    once the patient/study/series is complete (the collect delay)."""

    name = "process"
    reachesOutside = True

    def parse(self, arguments, where):
        return parseRequest(arguments, where, self.name, ("after",), "by")

    def run(self, arguments, context):
        line = arguments.destination
        # a Lua script's text is its command_line as it is; a shell command's values are quoted as data
        by = context.expand(line) if luaScriptOf(line) is not None else shellCommand(line, context)
        return enqueue(context, "process", arguments, filters={"by": by})


class PrefetchCommand(Command):
    """``prefetch``: read the patient's files once, after the collect delay."""

    name = "prefetch"

    def parse(self, arguments, where):
        super().parse(arguments, where)
        return Request("PATIENT", "", {}, "", "")

    def run(self, arguments, context):
        return enqueue(context, "prefetch", arguments)


class PreretrieveCommand(Command):
    """``preretrieve AE``: ``get patient from AE``."""

    def __init__(self, name):
        self.name = name

    def parse(self, arguments, where):
        return parseRequest(f"patient from {arguments}", where, self.name, (), "from")

    def run(self, arguments, context):
        return enqueue(context, "get", arguments)


class CopyCommand(Command):
    """``copy file to file`` (export converters): copy, at once; a
    destination that is a folder (or ends with a separator) gets the
    file under its own name.  A copy that fails is logged and the line
    goes on, as ``write`` (Conquest's converters go on after a failed
    file operation)."""

    name = "copy"
    scope = "E"
    reachesOutside = True
    log = Logger()
    _form = re.compile(r"^(?P<source>.+?)\s+to\s+(?P<target>.+)$", re.IGNORECASE | re.DOTALL)

    def parse(self, arguments, where):
        match = self._form.match(arguments)
        if not match:
            raise ConverterSyntaxError(f"{where}: expected 'copy FILE to FILE', got {arguments!r}")
        return _unquote(match.group("source").strip()), _unquote(match.group("target").strip())

    def run(self, arguments, context):
        source, target = (filePath(context, text) for text in arguments)
        if target.endswith(("/", "\\")) or os.path.isdir(target):
            target = os.path.join(target, os.path.basename(source))
        try:
            shutil.copyfile(source, target)
        except OSError as e:
            self.log.error("{converter}: copy {source} to {target} failed: {reason}; the line goes on",
                           converter=context.converterName, source=source, target=target,
                           reason=e.strerror or e)
        return Outcome.CONTINUE
