"""HL7 orders -> worklist rows, as the WorkList table of dicom.sql says (manual 7.8).

Each WorkList column's seventh field names where its value comes from:
``---`` nowhere, ``*AN`` a new accession number, ``*UI`` a new UID,
``SEQ.N`` field N of segment SEQ, ``SEQ.N.M`` its component M (zero-based),
``SEQ.N.DATE`` / ``SEQ.N.TIME`` the date or time part of a timestamp,
several of them joined by ``|`` the first one the message sends
(``OBR.7.DATE|TQ1.7.DATE``: OBR-7 of an ORM, TQ1-7 of an OMI that leaves
OBR-7 empty; ``IPC.3.0|*UI``: the RIS's Study Instance UID, the first
component of IPC-3's EI, a new one when it sends none; a generated value
only last; a source that names a component is sent when that component
is, not any other of its field);
a ``DT_DATE`` or ``DT_TIME`` column whose source is a field or a component
(``ORC.7.3``, the start of a v2.3 TQ) the date or time part of the
timestamp it holds, as ``.DATE`` and ``.TIME`` would (a ``DT_TIME``
column's HL7 TM as sent);
a moment, whose timestamp gives both a date and a time column (OBR-7),
in the server's local time when it carries an offset from UTC, any other
date (PID-7's birth date) the calendar date as written.
``WorklistMapping.items`` turns a message into one ``OrderItem`` per
ordered procedure (OBR), with the ORC control code that says what to do.
Each item reads the segments of its own order group (its ORC, the
segments after it up to the first OBR, its OBR and the segments after that
up to the next ORC or OBR: TQ1, ZDS, IPC ...); the segments before the
first order (PID, PV1 ...) are read at their first occurrence.

A field's first repetition is read, every one of them for a ``DT_MSTR``
column, whose values are joined by ``\\`` (OBR-18 ``AE_X~AE_Y`` gives the
Scheduled Station AE Titles ``AE_X\\AE_Y``, which a query for either
matches); those that do not fit the column whole are dropped, logged,
never cut into a value of their own.

Values are made fit for their DICOM VR: outside LT, ST and UT a backslash
(the value delimiter) becomes ``/``, control characters (an escaped line
break; a run of them, ``\\.sp 3\\``, is one) a space and leading spaces
go, trailing spaces go everywhere (PS3.5 6.2: they are not part of the
value, so ``SPC1 `` is accession number ``SPC1``); Patient's Sex keeps M,
F and O (HL7's A and N are O, U and anything else empty); a timestamp that
is no whole one of a real date and time (``00000000``, ``202403011099``,
``20240301T1030``: ``timestamps.localDateAndTime``) leaves its date and
its time empty, with one log line; so does a valid one without a day
(``1980``, ``198001``: HL7's reduced precision, which no DICOM date
holds), its log line saying so.

HL7's null values: a field the message leaves empty (or a segment it
lacks) changes nothing, so a change order (XO) keeps what the column holds;
``""`` clears it.  The placer and filler order numbers (field 2 and 3) are
the same in ORC and OBR, and may be sent in either: an order (a cancel
above all) with only an ORC finds its accession number in ORC-3.
"""

import re
from typing import NamedTuple

from pydicom.uid import generate_uid
from twisted.logger import Logger

from pacscore.db.records import Truncations, dictionaryVR
from pacscore.db.repertoire import fitted, storedLength
from pacscore.dicom.datetimes import isTime
from pacscore.db.worklistitems import STATUS_CONTROL, OrderRefused
from pacscore.hl7.message import uniqueNumber
from pacscore.hl7.timestamps import isReducedPrecision, localDateAndTime
from pacscore.logvalues import shown

ACCESSION_NUMBER = 0x00080050
PATIENT_SEX = 0x00100040
PN_GROUP_LENGTH = 64
REDUCED_PRECISION = "has no day (an HL7 date of reduced precision, which a DICOM date cannot hold)"

_SOURCE = re.compile(r"([A-Z][A-Z0-9]{2})\.([1-9][0-9]*)(?:\.([0-9]+|DATE|TIME))?")
_NOTHING = ("", "---")
_GENERATED = ("*AN", "*UI")
ALTERNATIVES = "|"  # between the sources of a column, the first sent one giving its value
_CONTROL = re.compile(r"(?:\r\n)+|[\x00-\x1f\x7f-\x9f]")  # line breaks (a run of them: \.sp 3\), C0, DEL and C1
_PN_DELIMITERS = re.compile(r"[\^=]")
TEXT_VRS = frozenset({"LT", "ST", "UT"})   # the VRs that may hold a backslash and line breaks
# HL7 table 0001 (administrative sex) -> DICOM Patient's Sex (M, F, O); anything else is empty.
SEXES = {"M": "M", "F": "F", "O": "O", "A": "O", "N": "O"}

# The placer (2) and filler (3) order numbers: each in ORC or OBR, the same in both.
ORDER_NUMBERS = {("ORC", 2): "OBR", ("ORC", 3): "OBR", ("OBR", 2): "ORC", ("OBR", 3): "ORC"}

# Fields of type XCN (ID number^family^given^...): a person name after the ID.
XCN_FIELDS = frozenset({
    ("OBR", 10), ("OBR", 16), ("OBR", 28), ("ORC", 10), ("ORC", 11), ("ORC", 12),
    ("PV1", 7), ("PV1", 8), ("PV1", 9), ("PV1", 17), ("PV1", 52),
})


class OrderItem(NamedTuple):
    """One worklist entry to create, change or remove."""

    control: str    # ORC-1 of the item's order ("NW", "XO", "CA", ...) in upper case; "NW" without an ORC
    values: dict    # column name -> str for every column with a source
    absent: frozenset = frozenset()  # columns the message sends no value for: a change keeps them
    orderStatus: str = ""  # of an SC: ORC-5 ("IP", "CM", "CA", ...) in upper case
    generated: frozenset = frozenset()  # columns whose value was generated (*AN, *UI): a change keeps them


class _Field(NamedTuple):
    """A parsed ``SEQ.N[.M|.DATE|.TIME]`` source."""

    segment: str
    field: int
    part: int | str | None   # component index, "DATE", "TIME" or None for the whole field


def parseSource(text):
    """``None`` (no source), ``"*AN"``, ``"*UI"`` or a ``_Field``; ValueError if malformed."""
    source = (text or "").strip().upper()
    if source in _NOTHING:
        return None
    if source in _GENERATED:
        return source
    match = _SOURCE.fullmatch(source)
    if match is None:
        raise ValueError(f"bad HL7 source {text!r} (expected ---, *AN, *UI, SEQ.N, SEQ.N.M, "
                         "SEQ.N.DATE or SEQ.N.TIME)")
    segment, field, part = match.groups()
    if part is not None and part.isdigit():
        part = int(part)
    return _Field(segment, int(field), part)


def parseSources(text):
    """The sources of a column, ``SOURCE[|SOURCE...]`` (``parseSource``)
    in the order they are tried: ``()`` for none; ValueError if one is
    malformed or none (``---``), or a generated one is not the last (those
    after it would never be read)."""
    alternatives = (text or "").split(ALTERNATIVES)
    if len(alternatives) == 1:
        source = parseSource(text)
        return () if source is None else (source,)
    try:
        sources = tuple(parseSource(alternative) for alternative in alternatives)
    except ValueError as e:
        raise ValueError(f"bad HL7 sources {text!r}: {e}") from None
    if None in sources:
        raise ValueError(f"bad HL7 sources {text!r}: each of those joined by {ALTERNATIVES} must be one")
    if any(source in _GENERATED for source in sources[:-1]):
        raise ValueError(f"bad HL7 sources {text!r}: a generated value (*AN, *UI) can only be the last")
    return sources


def columnVR(column):
    """The VR of the column's tag, "" when the dictionary does not know it."""
    return dictionaryVR(column.tag)


def personName(components):
    """HL7 XPN components (family^given^middle^suffix^prefix^degree) as a
    DICOM PN; a ^ or = a component holds (HL7's escaped \\S\\) becomes a
    space, as they delimit PN components and groups (PS3.5 6.2)."""
    family, given, middle, suffix, prefix = ([_PN_DELIMITERS.sub(" ", part) for part in components] + [""] * 5)[:5]
    return "^".join((family, given, middle, prefix, suffix)).rstrip("^")


def _timestampPart(timestamp, isTime, convert, parsed):
    """The local date (the time when ``isTime``) of an HL7 timestamp, None
    when it is none (``localDateAndTime``, ``convert``: a moment); each
    timestamp parsed once in ``parsed``, ``{(timestamp, convert): parts}``
    (a moment's date and time from one parse)."""
    key = (timestamp, convert)
    if key not in parsed:
        parsed[key] = localDateAndTime(timestamp, convert)
    parts = parsed[key]
    return None if parts is None else parts[isTime]


class _Column:
    """A WorkList column with its parsed sources."""

    __slots__ = ("name", "length", "sources", "isDate", "isTime", "isPersonName", "isText", "isSex", "isMulti",
                 "moments")

    def __init__(self, column, sources):
        vr = columnVR(column)
        self.name = column.name
        self.length = column.length
        self.sources = sources
        self.isDate = column.dicomType == "DT_DATE"
        self.isTime = column.dicomType == "DT_TIME"
        self.isPersonName = vr == "PN"
        self.isText = vr in TEXT_VRS
        self.isSex = column.tag == PATIENT_SEX
        self.isMulti = column.dicomType == "DT_MSTR"  # each repetition of its field a value
        self.moments = frozenset()  # its sources part of a moment (the timestamp's date and time both mapped): local time

    def timestampPart(self, source):
        """``"DATE"`` or ``"TIME"``: the part of a timestamp ``source`` (a
        ``_Field``) gives the column (``.DATE``, ``.TIME``, else a DT_DATE
        or DT_TIME column's), None when it gives none."""
        if source.part in ("DATE", "TIME"):
            return source.part
        return "DATE" if self.isDate else "TIME" if self.isTime else None

    def valid(self, value):
        """``value`` made a valid value of the column's VR (not cut yet)."""
        if self.isSex:
            return SEXES.get(value.split("^", 1)[0].strip().upper(), "")
        if self.isText:
            return value.rstrip(" ")
        value = _CONTROL.sub(" ", value.replace("\\", "/")).strip(" ")
        if self.isPersonName:
            value = "=".join(group.rstrip("^") for group in value.split("="))
        return value

    def fitting(self, values, dialect=None):
        """The first of the valid ``values`` (a DT_MSTR column's, one a
        repetition) that fit the column whole (its length as the database
        of ``dialect`` counts it) when joined by ``\\``, never part of one;
        at least the first, which ``cut`` cuts when it does not fit alone."""
        kept, length = values[:1], storedLength(dialect, values[0]) if values else 0
        for value in values[1:]:
            length += 1 + storedLength(dialect, value)
            if self.length and length > self.length:
                break
            kept.append(value)
        return kept

    def cut(self, value, dialect=None):
        """``(value, length)``: a valid ``value`` cut to fit - a PN's groups
        to 64 characters each (PS3.5 6.2), then to the column's length (as
        the database of ``dialect`` counts it) - and the length it was cut
        to (None: it fits)."""
        length = None
        if self.isPersonName and any(len(group) > PN_GROUP_LENGTH for group in value.split("=")):
            value = "=".join(group[:PN_GROUP_LENGTH].rstrip("^") for group in value.split("="))
            length = PN_GROUP_LENGTH
        if self.length and storedLength(dialect, value) > self.length:  # a space the cut leaves is no part of it
            value = fitted(dialect, value, self.length).rstrip("^= " if self.isPersonName else " ")
            length = self.length
        return value, length


def _timestampOf(source):
    """The source (a ``_Field``) of the timestamp ``source`` gives a part
    of: its component, else the field's first (``OBR.7``, ``OBR.7.DATE``
    and ``OBR.7.0`` read one timestamp)."""
    return source if isinstance(source.part, int) else source._replace(part=0)


def _sending(source, group, outside):
    """The segment that sends the field of ``source`` (a ``_Field``) for an
    order ``group``: its own or one before the orders (PID, PV1), the other
    one of ORC and OBR for an order number; None when none sends it."""
    segment = group.get(source.segment) or outside.get(source.segment)
    if segment is None or not segment.field(source.field):
        segment = group.get(ORDER_NUMBERS.get((source.segment, source.field)))
        if segment is None or not segment.field(source.field):
            return None
    return segment


def _sendsComponent(segment, source, everyRepetition):
    """Whether the field of ``source`` that ``segment`` sends holds the
    component ``source`` names, when it names one (an IPC-3 of ``^RIS``
    holds no ``IPC.3.0``): not empty in a repetition that is read (the
    first, or any with ``everyRepetition``: a multi-valued column), HL7's
    null ``""`` held (it clears)."""
    if not isinstance(source.part, int):
        return True
    d = segment.delimiters
    repetitions = segment.field(source.field).split(d.repetition)
    return any(len(parts := repetition.split(d.component)) > source.part
               and parts[source.part].split(d.subcomponent, 1)[0]
               for repetition in (repetitions if everyRepetition else repetitions[:1]))


def _identifier(group, field):
    """ORC-``field`` of an order ``group``, an ID: without the trailing
    blanks HL7 makes optional, in upper case; empty without an ORC."""
    return group["ORC"].value(field).rstrip(" ").upper() if "ORC" in group else ""


def orderGroups(segments):
    """``(outside, groups)``: the segments before the first ORC or OBR, and
    one group per OBR (or ORC without OBR), each a dict segment id -> its
    first segment in the group.  An OBR's group holds its ORC and the
    segments between them (shared by every OBR of that ORC), the OBR and
    the segments after it up to the next ORC or OBR."""
    outside, groups = {}, []
    order, orderUsed = None, True   # the current ORC's segments up to its first OBR
    current = outside
    for segment in segments:
        if segment.id == "ORC":
            if not orderUsed:
                groups.append(order)
            order = current = {"ORC": segment}
            orderUsed = False
        elif segment.id == "OBR":
            current = {**(order or {}), "OBR": segment}
            groups.append(current)
            orderUsed = True
        else:
            current.setdefault(segment.id, segment)
    if not orderUsed:
        groups.append(order)
    return outside, groups


class WorklistMapping:
    """The WorkList columns of dicom.sql and how to fill them from HL7.

    ``newAccessionNumber`` and ``newUID`` make the values of ``*AN`` and
    ``*UI`` columns (by default 16 unique digits and ``generate_uid()``).
    A value cut to its column is logged as the index logs its cuts
    (``table``: the WorkList table's name; ``allowTruncate``: AllowTruncate),
    its length as the database of ``dialect`` counts it (pacscore.db.repertoire).
    """

    log = Logger()

    def __init__(self, columns, newAccessionNumber=None, newUID=None, table="DICOMWorkList",
                 allowTruncate=frozenset(), dialect=None):
        self.dialect = dialect
        self.newAccessionNumber = newAccessionNumber or uniqueNumber
        self.newUID = newUID or generate_uid
        self.truncations = Truncations(table, allowTruncate)  # values cut to fit: logged as the index's
        self._columns = []
        self.accessionColumn = None
        for column in columns:
            if column.isSequenceMarker:
                continue
            try:
                sources = parseSources(column.hl7)
            except ValueError as e:
                raise ValueError(f"WorkList column {column.name!r}: {e}") from None
            if self.accessionColumn is None and column.tag == ACCESSION_NUMBER:
                self.accessionColumn = column.name
            if sources:
                self._columns.append(_Column(column, sources))
        parts = {}  # the timestamp (_timestampOf) -> the parts of it mapped
        for column in self._columns:
            for source in column.sources:
                if isinstance(source, _Field) and column.timestampPart(source):
                    parts.setdefault(_timestampOf(source), set()).add(column.timestampPart(source))
        for column in self._columns:
            column.moments = frozenset(
                source for source in column.sources if isinstance(source, _Field) and column.timestampPart(source)
                and parts[_timestampOf(source)] == {"DATE", "TIME"})
        self.generatedColumns = frozenset(c.name for c in self._columns if c.sources[-1] in _GENERATED)

    def generated(self, name):
        """A new value for the ``*AN`` or ``*UI`` column ``name``; None for another column."""
        for column in self._columns:
            if column.name == name and column.sources[-1] in _GENERATED:
                return self._generate(column.sources[-1])
        return None

    def _generate(self, source):
        return self.newAccessionNumber() if source == "*AN" else self.newUID()

    def items(self, message):
        """One ``OrderItem`` per OBR (with the ORC before it), or per ORC
        without OBR; ``OrderRefused`` for an accession number longer than its
        column (every other value is cut to fit, as Conquest does)."""
        outside, groups = orderGroups(message.segments)
        items = []
        parsed = {}  # (timestamp, convert) -> its parts (_timestampPart)
        for group in groups:
            control = _identifier(group, 1) or "NW"
            invalid = {}  # (segment, field, timestamp) -> the columns it leaves empty
            generated = set()  # the columns whose value is generated
            values = {c.name: self._value(c, group, outside, message, invalid, parsed, generated)
                      for c in self._columns}
            for (segment, field, sent), names in invalid.items():
                reason = (REDUCED_PRECISION if isReducedPrecision(sent) else "is no valid date or time")
                self.log.warn("HL7 {id}: {columns} left empty: {segment}.{field} {sent} {reason}",
                              id=message.controlId, columns=", ".join(names), segment=segment, field=field,
                              sent=shown(sent), reason=reason)
            absent = frozenset(name for name, value in values.items() if value is None)
            values = {name: "" if value is None else value for name, value in values.items()}
            self.log.debug("HL7 {control} {id}: worklist values {values}",
                           control=control, id=message.controlId, values=values)
            orderStatus = _identifier(group, 5) if control == STATUS_CONTROL else ""
            items.append(OrderItem(control, values, absent, orderStatus, frozenset(generated)))
        return items

    def _value(self, column, group, outside, message, invalid, parsed, generated):
        """The value of ``column`` from the first of its sources the message
        sends (the component a source names: ``IPC.3.0|*UI`` of an IPC-3
        ``^RIS`` generates), else the empty one of the first whose field it
        sends without that component (the field sent, it clears the column,
        as a source alone does); None when it sends none (HL7 says to leave
        it as it is); the column's name is added to ``generated`` when its
        value is generated (``*AN``, ``*UI``).  A column generated last is
        never cleared: an empty value (HL7's null ``""``) is as none sent,
        so a new item gets a generated one and an existing item keeps its
        own (the Study Instance UID a modality may have been given, a Type 1
        key of a worklist answer)."""
        withoutComponent = None
        for source in column.sources:
            if source in _GENERATED:
                generated.add(column.name)
                return self._generate(source)
            segment = _sending(source, group, outside)
            if segment is None:
                continue
            if _sendsComponent(segment, source, column.isMulti):
                value = self._fieldValue(column, source, segment, message, invalid, parsed)
                if value or column.sources[-1] not in _GENERATED:
                    return value
                continue  # HL7's null never clears a *AN or *UI column (a Type 1 key): the next source
            if withoutComponent is None:
                withoutComponent = (source, segment)
        return None if withoutComponent is None else self._fieldValue(column, *withoutComponent, message, invalid,
                                                                      parsed)

    def _fieldValue(self, column, source, segment, message, invalid, parsed):
        repetitions = segment.repetitions(source.field) if column.isMulti else 1
        values = [value for repetition in range(repetitions)
                  if (value := self._repetitionValue(column, source, segment, repetition, invalid, parsed))]
        kept = column.fitting(values, self.dialect)
        if len(kept) < len(values):
            self.log.warn("HL7 {id}: {table}.{column} holds {length} characters: the values {dropped} of "
                          "{segment}.{field} dropped, {kept} kept", id=message.controlId,
                          table=self.truncations.table, column=column.name, length=column.length,
                          dropped=", ".join(map(shown, values[len(kept):])), segment=source.segment,
                          field=source.field, kept=", ".join(map(shown, kept)))
        value = "\\".join(kept)
        if (column.name == self.accessionColumn and column.length
                and storedLength(self.dialect, value) > column.length):
            raise OrderRefused(f"accession number {shown(value)} is longer than the {column.length} characters of "
                               f"{column.name} in dicom.sql: cut, it could name another order")
        cut, length = column.cut(value, self.dialect)
        if length is not None:
            self.truncations.report(self.log, column.name, length, value)
        return cut

    def _repetitionValue(self, column, source, segment, repetition, invalid, parsed):
        """The valid value of ``column`` from one repetition of the field of
        its ``source`` in ``segment``; a date or time of a timestamp that is
        none (``localDateAndTime``) is empty, its column added to ``invalid``
        (see ``items``)."""
        part = column.timestampPart(source)
        if part is not None:
            # a component, else the first: v2.3's TS has its degree of precision after it
            sent = segment.value(source.field, _timestampOf(source).part, repetition)
            if part == "TIME" and source.part != "TIME" and source not in column.moments and isTime(sent):
                value = sent  # a TM (HL7's) in a DT_TIME column, as sent; in a moment a TS ('202403': no day)
            else:
                value = _timestampPart(sent, part == "TIME", source in column.moments, parsed)
        elif source.part is None:
            sent = value = self._wholeField(source, column, segment, repetition)
        else:
            sent = value = segment.value(source.field, source.part, repetition)
            if column.isPersonName:
                value = personName([value])
        if value is None:
            invalid.setdefault((segment.id, source.field, sent), []).append(column.name)
            value = ""
        return column.valid(value)

    @staticmethod
    def _wholeField(source, column, segment, repetition):
        """The components of one repetition of the field of ``source``
        joined by ^, or as a DICOM PN for PN columns."""
        components = segment.components(source.field, repetition)
        if column.isPersonName:
            if (source.segment, source.field) in XCN_FIELDS:
                components = components[1:]
            return personName(components)
        while components and not components[-1]:
            components.pop()
        return "^".join(components)
