"""Conquest's %-variables (manual 7.2, ImportConverters): ``expand(text, context)``.

=====================  =====================================================
``%m %s %o %i``        Modality, Station Name, SOP Instance UID, Patient ID
``%f %b %p``           the stored file (export converters): its path, its
                       name without folder and extension, its folder
``%u %c``              calling and called AE title
``%d``                 the local date and time, ``YYYYMMDD HH:MM:SS``
``%g``                 a new UID (under UIDPrefix), another each time
``%n %t``              newline, tab
``%% %^ %~ %[``        the character itself
``%x %y %z``           the general purpose variables
``%Vgggg,eeee``        an element of the object (top level)
``%V*gggg,eeee``       the first such element anywhere, depth first
``%V\\gggg,eeee\\...``   a path into sequences, first item of each;
                       ``gggg,eeee.N`` picks item N; ``/`` works as ``\\``
``%V(path)path``       an element of another stored object: the first path
                       gives its SOP Instance UID, looked up in the index
``%E...``              as %V, each value replaced by its anonymized UID
``%R...``              as %V, each anonymized UID replaced by its original
                       (a value that replaced nothing stays as it is)
``%A...``              as %V, the CRC32 of the value, unsigned decimal
``%QPgggg,eeee``       the column of that tag in the patient row (by the
``%QS.. %QE..``        object's Patient ID), study row (Study Instance UID),
                       series row (Series Instance UID) of the index
``%QWgggg,eeee``       from the worklist item with the object's Accession
                       Number
``%QXgggg,eeee``       the element's value mapped through the ``old<TAB>new``
                       lines of aliasfileQX.txt in the configuration folder
                       (unchanged when not listed, or when the file is
                       missing or cannot be read: a warning an hour for
                       the latter; each line of the file in UTF-8 or else
                       cp1252: ``readTextLines``)
=====================  =====================================================

The letter is read regardless of case, as Conquest reads it (``%v0010,0020``,
``%I``, and the level letter after %Q: ``%qp0010,0010``); a DICOM keyword
may stand for any ``gggg,eeee`` (``%VPatientID``,
``%V/ReferencedStudySequence/ReferencedSOPInstanceUID``), as Conquest takes
dgate.dic's names.

Each variable may be followed by ``[first,last]`` (0-based, inclusive:
``%i[0,1]`` is the first two characters of the Patient ID; as in Conquest a
``last`` before ``first`` leaves the value whole) or ``[,N]`` (the last N
characters), then by ``^``
(upper case) or ``~`` (lower case).  A % before any other character
(``%H``, ``%3``, ``% ``), or before a reference letter that no reference
follows (``%V``, ``%Q``), stays as written; every letter above is read in
either case, so text for a program writes ``%%`` for each ``%`` it keeps
(``date +%%H%%M%%S``: ``%M`` is the Modality).
Whatever is missing (element, row, file, service) gives "".  A sequence
element reads ``(sequence)`` and a binary value over 255 bytes (pixel data)
``(too long)``, as in Conquest; longer text is read whole (Conquest's
``(too long)`` for any value over 255 bytes is the size of its buffer).
"""

import os
import re
import time
import zlib

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from sqlalchemy import select
from twisted.logger import Logger

from pacscore.config.errors import ConfigError
from pacscore.config.textfile import readTextLines
from pacscore.converters.elements import (TAG_PATTERN, findPath, findReference, parsePath, parseReference, parseTag,
                                           textOf)
from pacscore.converters.uidmap import uidMapOf
from pacscore.db.worklistitems import WorklistItems
from pacscore.firstwarned import FirstWarned

MODALITY, STATION_NAME, SOP_INSTANCE_UID, PATIENT_ID = 0x00080060, 0x00081010, 0x00080018, 0x00100020
ACCESSION_NUMBER = 0x00080050
DATE_FORMAT = "%Y%m%d %H:%M:%S"
ALIAS_FILES = ("aliasfileQX.txt", "aliasfileqX.txt")
ALIAS_WARNING_PERIOD = 3600  # seconds: how often an alias file that cannot be read is warned of
SEQUENCE, TOO_LONG, MAX_BINARY = "(sequence)", "(too long)", 255  # as Conquest's SearchDICOMObject reads them
QUERY_LEVELS = {"P": "patient", "S": "study", "E": "series"}
LITERALS = {"n": "\n", "t": "\t", "%": "%", "^": "^", "~": "~", "[": "["}
REFERENCE_LETTERS = ("V", "E", "R", "A", "Q")  # written upper case; the others lower case
DATASET_LETTERS = {"m": MODALITY, "s": STATION_NAME, "o": SOP_INSTANCE_UID, "i": PATIENT_ID}

_TAG = re.compile(TAG_PATTERN)
_SUBSTRING = re.compile(r"\[([0-9]*),([0-9]+)\]")

log = Logger()
aliasWarnings = FirstWarned(ALIAS_WARNING_PERIOD)  # of alias files that cannot be read, by path (_alias)


def expand(text, context):
    """``text`` with every %-variable replaced by its value for ``context``."""
    return "".join(piece for piece, _ in pieces(text, context))


def pieces(text, context):
    """``text`` expanded for ``context``, as ``(piece, letter)`` pairs in
    order: the template's own text (``%n``, ``%%`` ... included) with
    letter None, each variable's value with its letter (``"f"`` for %f,
    ``"V"`` for %V...), so that a caller can quote the values."""
    position = 0
    while (start := text.find("%", position)) >= 0:
        yield text[position:start], None
        letter = letterAt(text, start + 1)
        if letter in LITERALS:
            yield LITERALS[letter], None
            position = start + 2
            continue
        parsed = _variable(text, start + 1, context)
        if parsed is None:
            yield "%", None
            position = start + 1
            continue
        value, position = parsed
        value, position = _modifiers(text, position, value)
        yield value, letter
    yield text[position:], None


def _modifiers(text, position, value):
    """Apply ``[first,last]`` and ``^``/``~`` following a variable."""
    if match := _SUBSTRING.match(text, position):
        last = min(int(match.group(2)), len(value))
        if not match.group(1):  # [,N]: the last N characters
            value = value[len(value) - last:]
        elif (first := min(int(match.group(1)), len(value))) <= last:  # as Conquest: else left whole
            value = value[first:last + 1]
        position = match.end()
    suffix = text[position:position + 1]
    if suffix == "^":
        return value.upper(), position + 1
    if suffix == "~":
        return value.lower(), position + 1
    return value, position


def letterAt(text, position):
    """The variable letter at ``position`` of ``text``, read regardless of
    case as Conquest's ``tolower`` does: ``%I`` is ``%i``, ``%v`` is ``%V``."""
    letter = text[position:position + 1]
    return letter.upper() if letter.upper() in REFERENCE_LETTERS else letter.lower()


def _variable(text, position, context):
    """``(value, end)`` of the variable whose letter is at ``position``, or
    None when it is not one."""
    letter = letterAt(text, position)
    position += 1
    dataset = context.dataset
    if letter == "s" and context.moveDestination is not None:
        return context.moveDestination, position
    if letter in DATASET_LETTERS:
        return _element(dataset, DATASET_LETTERS[letter]), position
    if letter in ("x", "y", "z"):
        return context.variables.get(letter, ""), position
    if letter == "f":
        return context.filename or "", position
    if letter == "b":
        return os.path.splitext(os.path.basename(context.filename or ""))[0], position
    if letter == "p":
        return os.path.dirname(context.filename or ""), position
    if letter == "u":
        return context.callingAE, position
    if letter == "c":
        return context.calledAE, position
    if letter == "d":
        return time.strftime(DATE_FORMAT), position
    if letter == "g":
        return uidMapOf(context.services).newUID(), position
    if letter in ("V", "E", "R", "A"):
        parsed = _reference(text, position, context)
        return None if parsed is None else (_transform(letter, parsed[0], context), parsed[1])
    if letter == "Q":
        return _query(text, position, context)
    return None


def _element(dataset, tag):
    return "" if dataset is None else valueText(dataset.get(tag))


def valueText(element):
    """What a %-variable reads of ``element`` (or None: ""): its text, as
    Conquest's SearchDICOMObject ``(sequence)`` for a sequence, so that
    ``ifnotempty "%V0010,1002"`` holds when the sequence is there, and
    ``(too long)`` for a binary value over 255 bytes (pixel data ...)."""
    if element is not None and element.VR == "SQ":
        return SEQUENCE
    if element is not None and isinstance(element.value, (bytes, bytearray)) and len(element.value) > MAX_BINARY:
        return TOO_LONG
    return textOf(element)


def checksum(text):
    """Conquest's checksum of a string (%A, ``dgate --checksum``): its
    CRC32, unsigned decimal."""
    return str(zlib.crc32(text.encode("utf-8")))


def _transform(letter, value, context):
    if letter == "A":
        return checksum(value)
    if letter == "V" or not value:
        return value
    uidMap = uidMapOf(context.services)
    if letter == "E":
        return "\\".join(uidMap.uidFor(v) for v in value.split("\\"))
    return "\\".join(uidMap.oldFor(v) or v for v in value.split("\\"))


def _reference(text, position, context):
    """``(value, end)`` of the element reference after %V/%E/%R/%A."""
    dataset = context.dataset
    if text.startswith("(", position):
        inner = parsePath(text, position + 1)
        if inner is None or not text.startswith(")", inner[1]):
            return None
        outer = parsePath(text, inner[1] + 1)
        if outer is None:
            return None
        sopInstanceUID = "" if dataset is None else valueText(findPath(dataset, inner[0]))
        other = _storedObject(sopInstanceUID, context)
        return ("" if other is None else valueText(findPath(other, outer[0]))), outer[1]
    parsed = parseReference(text, position)
    if parsed is None:
        return None
    reference, end = parsed
    return ("" if dataset is None else valueText(findReference(dataset, reference))), end


def _storedObject(sopInstanceUID, context):
    """The stored object with this SOP Instance UID (a pydicom Dataset
    without pixel data), or None."""
    index = context.services.index
    if not sopInstanceUID or index is None:
        return None
    image = index.tables.image
    key = image.c[index.layout.image[0].name]
    with index.engine.connect() as connection:
        row = connection.execute(select(image.c.DeviceName, image.c.ObjectFile)
                                 .where(key == sopInstanceUID).limit(1)).first()
    root = row and dict(context.services.magDevices).get(row.DeviceName)  # those in use, not the ini's
    if not root:
        return None
    path = os.path.join(root, *row.ObjectFile.split("/"))
    try:
        return dcmread(path, stop_before_pixels=True, force=True)
    except (OSError, InvalidDicomError) as e:
        log.warn("%V(...): cannot read {path}: {error}", path=path, error=e)
        return None


def _query(text, position, context):
    """``(value, end)`` of %QP, %QS, %QE, %QW or %QX."""
    kind = text[position:position + 1].upper()  # either case, as Conquest reads it
    match = _TAG.match(text, position + 1)
    if kind not in ("P", "S", "E", "W", "X") or match is None:
        return None
    tag = parseTag(match.group())
    if kind == "W":
        value = _worklistValue(tag, context)
    elif kind == "X":
        value = _alias(_element(context.dataset, tag), context)
    else:
        value = _indexValue(QUERY_LEVELS[kind], tag, context)
    return value, match.end()


def _indexValue(level, tag, context):
    """The column of ``tag`` in the index row of ``level`` the object belongs to."""
    index = context.services.index
    if index is None or context.dataset is None:
        return ""
    columns = [c for c in getattr(index.layout, level) if not c.isSequenceMarker]
    names = [c.name for c in columns if c.tag == tag]
    key = _element(context.dataset, columns[0].tag)
    if not names or not key:
        return ""
    table = getattr(index.tables, level)
    with index.engine.connect() as connection:
        value = connection.execute(select(table.c[names[0]])
                                   .where(table.c[columns[0].name] == key).limit(1)).scalar()
    return value or ""


def _worklistValue(tag, context):
    services = context.services
    lookup = services.worklistLookup
    if lookup is None and services.index is not None:
        lookup = WorklistItems(services.index).lookup
    accession = _element(context.dataset, ACCESSION_NUMBER)
    item = lookup(accession) if lookup is not None and accession else None
    return (item or {}).get(tag, "")


def _alias(value, context):
    configuration = context.services.configuration
    if configuration is None:
        return value
    for name in ALIAS_FILES:
        path = os.path.join(configuration.configDir, name)
        try:
            lines = readTextLines(path)
        except ConfigError as e:
            if not isinstance(e.__cause__, FileNotFoundError):
                aliasWarnings.report(log, path, "%QX: {error}; the value is left unchanged",
                                     "further ones of this file are logged at debug level for an hour", error=str(e))
            continue
        for line in lines:
            old, tab, new = line.partition("\t")
            if tab and old == value:
                return new
        return value
    return value
