"""C-FIND identifiers translated to SQL on the index tables (PS3.4 C.2.2.2).

``IndexQuery.find`` answers a C-FIND at one level (PATIENT, STUDY, SERIES,
IMAGE) with one SQL statement: the level's table, joined to the tables above
it only when a key needs one of their columns, every request value a bound
parameter.  ``IndexQuery.instances`` lists the files a C-MOVE/C-GET sends.

Keys map to columns by TAG, never by name: the level's table is searched
first, then its parents up the link chain (the last dicom.sql column of a
table links to the key, the first column, of the table above).  So PatientID
(0010,0020) is DICOMImages.ImagePat at IMAGE level, DICOMSeries.SeriesPat at
SERIES level, DICOMStudies.PatientID at STUDY level.

Matching per key, by the request's VR:

- empty or only ``*``: universal matching (no condition, value returned);
- two quotation marks (``EMPTY_VALUE``) in a key asking for Empty Value
  Matching (PS3.4 C.2.2.2.7; ``QueryKey.emptyValueMatching``, set by
  ``withEmptyValueMatching`` for a C-FIND's keys, a QIDO-RS search's with
  ``emptyvaluematching=true``, and the web's query texts ``= ''``): only an
  empty (or NULL) stored value, as SQL's ``= ''``; in any other key (a
  retrieve's unique keys, a delete's, a web reference's) they are the
  value itself, as a Patient ID may be;
- SQ: ignored (sequence matching is not supported) and not returned;
- UI: a single UID or a ``\\``-separated list (``IN``), no wildcards; any
  attribute's key with this VR (``EXACT``) matches so, e.g. a Patient ID
  holding ``*`` as itself;
- DA, TM, DT: single values and ranges ``A-B``, ``A-``, ``-B``; ``YYYY.MM.DD``
  dates and ``HH:MM:SS`` times are accepted; the upper bound of TM/DT
  compares the stored value's prefix of the bound's length, so ``-1300``
  includes 13:00:59, and the lower bound the stored value padded with
  zeros to whole seconds, so ``081500-`` includes a short-form ``0815``; empty stored values
  never match a range; a single TM value matches the same time of day, both
  padded so (``093000`` and ``0930`` match each other, not ``093015``);
  a DT's ``-`` may be its offset's (``20240102001500-0500`` is one value,
  ``rangeEnds``); in ``find``, a DT key selects in SQL the stored values of
  the 27 hours around its values only, and each row is then matched in Python
  (``dateTimeMatcher``), in UTC where either side carries an offset from
  UTC, a value without one being the server's local time (PS3.4
  C.2.2.2.5.3), the limit and offset counting the rows so matched, read
  from the cursor up to the page's last (``_matchedPage``); a DT key
  of a level below (QIDO-RS's EXISTS) compares as text;
- any other VR: ``*``/``?`` wildcards (SQL LIKE, ``%``/``_``/``\\`` escaped;
  on a database that counts bytes, SQL_ASCII, whose LIKE's ``_`` is one
  byte, a regular expression whose ``?`` is one character: ``likeRegex``)
  or equality; PN case-insensitively (``lower()`` on both sides) and
  without the trailing empty components of each component group and the
  trailing empty groups, which PS3.5 6.2 lets a name leave out (the key's
  and the stored name's: ``Doe^John`` matches ``Doe^John^^^`` and back);
  ``\\``-separated values match any of them: those without wildcards in
  one ``IN``, the others ORed as a balanced tree (SQLite refuses a chain of
  a thousand ORs);
- dicom.sql ``DT_MSTR`` columns (stored joined by ``\\``) match a value
  equal to the whole stored text or to any one of its parts;
- dicom.sql ``DT_ISTR`` columns match case-insensitively, wildcards or not,
  as Conquest's ``UPPER(column)`` does (since 2017; a key as with
  ``foldCase``, at every level, in the worklist too);
- a text value (LO, SH ...) longer than its column is cut to the column's
  width before it is compared, as a stored one was cut (``cutToColumn``),
  and so is the literal start of one with wildcards when it fills the
  column (``ABC...XYZ*``, the pattern's rest was cut off the stored
  value); a PN one, whose stored name was cut in its own spelling (``^``s
  the key may leave out), also matches a stored name that fills the
  column and reads as the key's start (``_cutNames``): a name of three
  groups, which PN allows up to 194 characters, is found by its whole
  self, in any spelling, in a 64-character PatientName column (and by
  anything that starts with the same 64), and answered as the index holds
  it, cut, as Conquest answers it.

Computed keys (when ``computedFields`` is on): the Number of Patient/Study/
Series Related Studies/Series/Instances, ModalitiesInStudy and
SOPClassesInStudy, once per patient, study or series the answers hold (not
once per answer: an image of a study of 10,000 has the study's values), by
one statement per key after the answers are read, grouped by the entity's
key among those of the answers (``_Computed``).

Two hints keep SQLite (which has no statistics) on the right indexes: a PN
value with a literal prefix also gets a range on ``lower(column)`` (the
schema's ``lower(PatientName)`` index), and when a key selects by an exact
UID, PatientID or AccessionNumber the other conditions are written on
``+column``, SQLite's way to keep a term off an index (Modality's, say).
"""

import datetime
import math
import re
from typing import NamedTuple

from pydicom.datadict import dictionary_VR
from pydicom.tag import Tag
from sqlalchemy import Boolean, LargeBinary, String, and_, case, cast, func, literal, literal_column, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op
from twisted.logger import Logger

from pacscore.db.casefold import INTO_ASCII, caseFolded
from pacscore.db.peerqueries import checkAbandoned
from pacscore.db.personnames import CUT_SLACK, personName, storedPersonName
from pacscore.db.repertoire import HeldText, countsBytes, fitted, holds
from pacscore.db.sqlfunctions import byteOrder, distinctValues, numericValue, textLength
from pacscore.dicom.datetimes import CHECKS, dateTimeMatching, normalised, period, rangeEnds, withoutZeroFraction
from pacscore.dicom.uids import isUID

__all__ = ["EMPTY_VALUE", "LEVELS", "UNSPLIT_VRS", "IndexQuery", "Instance", "QueryKey", "columnNamed",
           "hasValuesToMatch", "asksForMatch", "numberKey", "unpaddedValues", "valuesOf", "withEmptyValueMatching"]

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

PATIENT_ID = 0x00100020
EXACT = "UI"  # the VR of a key matched exactly (see the module docstring)
EMPTY_VALUE = '""'  # a key value asking for Empty Value Matching (see the module docstring)
FINAL_SIGMA, SIGMA = "\u03c2", "\u03c3"  # ς, σ: one letter to a case fold, two to lower()

STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SOP_INSTANCE_UID = 0x00080018
SOP_CLASS_UID = 0x00080016
INSTANCE_NUMBER = 0x00200013
MODALITY = 0x00080060
ACCESSION_NUMBER = 0x00080050

MODALITIES_IN_STUDY = 0x00080061
SOP_CLASSES_IN_STUDY = 0x00080062

# Computed counts: tag -> (level of the entity counted around, level counted).
_COUNTS = {
    0x00201200: (0, 1),  # NumberOfPatientRelatedStudies
    0x00201202: (0, 2),  # NumberOfPatientRelatedSeries
    0x00201204: (0, 3),  # NumberOfPatientRelatedInstances
    0x00201206: (1, 2),  # NumberOfStudyRelatedSeries
    0x00201208: (1, 3),  # NumberOfStudyRelatedInstances
    0x00201209: (2, 3),  # NumberOfSeriesRelatedInstances
}
# Computed lists: tag -> (level counted, tag of the listed column); of the study
# (at STUDY level and below: a series' or image's study).
_LISTS = {MODALITIES_IN_STUDY: (2, MODALITY), SOP_CLASSES_IN_STUDY: (3, SOP_CLASS_UID)}
COMPUTED_COUNTS, COMPUTED_LISTS = frozenset(_COUNTS), frozenset(_LISTS)

# The entity keys one statement of a computed key's values, or of
# ``instancesByUID``, asks for (SQLite takes 999 bound parameters at least).
_KEYS_PER_STATEMENT = 500

# VRs whose values may contain a backslash (no value multiplicity).
UNSPLIT_VRS = frozenset(("LT", "ST", "UT", "UR"))
_RANGE_VRS = frozenset(("DA", "TM", "DT"))
_CUT_VRS = frozenset(("PN", "LO", "SH", "UC", "LT", "ST", "UT"))  # text a key may hold more of than its column
NUMBER_VRS = frozenset(("IS", "DS", "US", "UL", "SS", "SL", "UV", "SV", "FL", "FD"))  # sorted as numbers
_ESCAPE = "\\"
_PREFIX_END = re.compile("[*?=\u03a3\u03c3\u03c2]")  # wildcards, a group's end, Σ σ ς
_WILDCARD = re.compile("[*?]")
_FOLDED_FROM = {letter: character for character, letter in INTO_ASCII.items()}  # i: İ, s: ſ, k: K
_MOST_INDEXED_STARTS = 8  # values of a DT_ISTR key given ranges on SQLite: those of more (a list of
# accession numbers) cost SQLite more to check on every row than they save
_SEPARATOR = "\\\\"  # a literal backslash in a LIKE pattern escaped by "\"
# a regular expression's one character in a SQL_ASCII database (one byte each): one of ASCII
# (no NUL), else a lead byte and the continuation bytes of UTF-8 after it, none for a byte of
# Latin-1 Conquest wrote (M\xfcller)
_ONE_CHARACTER = r"(?:[\x01-\x7f]|[\xc0-\xff][\x80-\xbf]*)"
# OR as an operator SQLAlchemy does not flatten into one chain; OR's precedence,
# so that its operands that are ORs keep their parentheses.
_OR = custom_op("OR", precedence=2, return_type=Boolean)


class QueryKey(NamedTuple):
    """One attribute of a C-FIND identifier.

    ``value`` is Unicode text (decoded from the request's character set),
    multiple values joined by ``\\``; ``""`` asks for universal matching.
    """

    tag: int     # 0xGGGGEEEE
    vr: str      # "PN", "DA", "TM", "DT", "UI", "CS", "LO", "SQ" ... as in the request
    value: str
    foldCase: bool = False  # text matched case-insensitively, as PN is (search boxes)
    itemValues: bool = False  # an SQ key whose items hold values to match (sequence matching)
    emptyValueMatching: bool = False  # matches empty values only (its value is EMPTY_VALUE): see the module docstring


def exactKey(tag, value):
    """A key matching ``value`` exactly, as SQL's ``=``: the empty values
    only when it is empty (Empty Value Matching), a ``*`` or ``?`` in it
    as itself (``EXACT``)."""
    if not value:
        return QueryKey(tag, EXACT, EMPTY_VALUE, emptyValueMatching=True)
    return QueryKey(tag, EXACT, value)


class SortBy(NamedTuple):
    """The order a C-FIND asks for (``IndexQuery.requestedSort``)."""

    tag: int          # the attribute of the column sorted by
    numeric: bool     # its values sorted as numbers
    descending: bool
    order: list       # [(table index, expression, descending)]: find's sortBy


class Instance(NamedTuple):
    """One stored object a C-MOVE/C-GET sends."""

    sopInstanceUID: str
    sopClassUID: str
    deviceName: str
    objectFile: str
    patientID: str
    studyInstanceUID: str
    seriesInstanceUID: str


def _isComputedAt(tag, level):
    """Whether the computed key ``tag`` has a value at ``level`` (an index):
    a count around an entity at or above it, a study's list at STUDY level
    and below."""
    if tag in _COUNTS:
        return level >= _COUNTS[tag][0]
    return tag in _LISTS and level >= 1


def levelIndex(level):
    """0 (PATIENT) .. 3 (IMAGE) for a Query/Retrieve level name."""
    try:
        return LEVELS.index(level.strip().upper())
    except (AttributeError, ValueError):
        raise ValueError(f"unknown query level {level!r} (expected one of "
                         f"{', '.join(LEVELS)})") from None


def escapeLike(text):
    """``text`` as a LIKE pattern matching itself (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def likePattern(value):
    """A DICOM wildcard value (``*``, ``?``) as a LIKE pattern."""
    return escapeLike(value).replace("*", "%").replace("?", "_")


def likeRegex(pattern):
    """The LIKE ``pattern`` (escape character ``\\``) as an anchored
    regular expression of PostgreSQL for a database that counts bytes
    (SQL_ASCII), whose ``_`` matches one byte: ``_`` one character, of
    UTF-8 or, alone, a byte Conquest wrote (``_ONE_CHARACTER``)."""
    parts, characters = [], iter(pattern)
    for character in characters:
        if character == _ESCAPE:
            character = next(characters, _ESCAPE)
        elif character in "%_":
            parts.append(".*" if character == "%" else _ONE_CHARACTER)
            continue
        parts.append("\\" + character if character.isascii() and not character.isalnum() else character)
    return "^" + "".join(parts) + "$"


class HeldPattern(HeldText):
    """A LIKE pattern bound as ``HeldText``, as ``likeRegex`` where the
    database counts bytes (``_Like``)."""

    cache_ok = True

    def process_bind_param(self, value, dialect):
        value = super().process_bind_param(value, dialect)
        return likeRegex(value) if value is not None and countsBytes(dialect) else value


class _Like(FunctionElement):
    """Its text LIKE its ``HeldPattern``; a regular expression match where
    the database counts bytes, whose LIKE would match a byte for a ``?``."""

    type = Boolean()
    inherit_cache = True


@compiles(_Like)
def _likeSQL(element, compiler, **kw):
    text, pattern = element.clauses
    matched = text.regexp_match(pattern) if countsBytes(compiler.dialect) else text.like(pattern, escape=_ESCAPE)
    return compiler.process(matched, **kw)


def _hasWildcards(value):
    return "*" in value or "?" in value


def _literalStart(value):
    """``value`` up to its first wildcard."""
    return _WILDCARD.split(value, maxsplit=1)[0]


def _isUniversal(value):
    return not value.strip(" \0").strip("*")


def numberKey(text):
    """Sort key: numbers numerically, before anything else as text."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number):
        return (1, 0.0, text or "")
    return (0, number, text)


class _Computed(NamedTuple):
    """A computed key: ``outer``, the column of the answers holding the key
    of the entity (patient, study, series) whose value it is; ``statement``,
    the SELECT of ``link`` (that key in the rows counted or listed) and the
    value, over those rows; ``convert``, the value's text."""

    outer: object
    statement: object
    link: object
    convert: object

    def values(self, connection, keys):
        """``{key: text}`` for the entity ``keys`` (None: no entity, the
        text of no rows), one statement per ``_KEYS_PER_STATEMENT`` keys,
        grouped by key."""
        keys = list(dict.fromkeys(keys))
        asked = [key for key in keys if key is not None]
        found = {}
        for start in range(0, len(asked), _KEYS_PER_STATEMENT):
            checkAbandoned()
            chunk = asked[start:start + _KEYS_PER_STATEMENT]
            found.update(connection.execute(self.statement.where(self.link.in_(chunk)).group_by(self.link)).all())
        return {key: self.convert(found.get(key)) for key in keys}


class _Table:
    """One of the four tables with its columns by tag."""

    def __init__(self, index, table, columns):
        columns = [c for c in columns if not c.isSequenceMarker]
        self.index = index
        self.table = table
        self.key = table.c[columns[0].name]
        self.keyTag = columns[0].tag
        self.link = table.c[columns[-1].name] if index else None
        self.byTag = {}
        for column in columns:
            self.byTag.setdefault(column.tag, (table.c[column.name], column))


class _Resolved(NamedTuple):
    index: int           # table the column belongs to
    column: object       # the SQLAlchemy column
    isMulti: bool        # dicom.sql DT_MSTR
    foldCase: bool       # dicom.sql DT_ISTR: matched case-insensitively


class _Statement:
    """Collects the tables, conditions and columns of one SELECT.

    ``bottom`` is the FROM table, ``level`` the level whose tag -> column
    mapping applies; tables from ``bottom`` up to ``level`` are always
    joined (inner), tables above only when a column of theirs is used
    (inner when a condition uses them or a table above them).
    """

    def __init__(self, query, connection, level, bottom, keys, below=False, dateTimeRows=False):
        self.query = query
        self.below = below  # match keys of the levels below (QIDO-RS) with EXISTS
        # with ``dateTimeRows``, the DT keys whose rows are matched in Python
        # (``dateTimeMatcher``) after SQL selected the candidates
        self.dateTimeKeys = [] if dateTimeRows else None
        self.tables = query.tables
        self.dialect = connection.dialect.name
        self.level = level
        self.bottom = bottom
        self.top = level
        self.innerTop = level
        self.conditions = []
        self.belowKeys = []  # (target level, key, tag): matched by addBelowMatches
        # Without statistics SQLite may pick the index of a column with few
        # distinct values (Modality) over that of a UID or patient ID: when
        # a key selects by one of those, the other conditions are kept off
        # their indexes with SQLite's unary "+" (its documented way).
        self.preferSelective = (self.dialect == "sqlite"
                                and any(self.isSelective(key) for key in keys))

    def isSelective(self, key):
        """An exact UID, PatientID or AccessionNumber on an indexed column."""
        if key.vr == "SQ" or not (key.vr == "UI" or key.tag in (PATIENT_ID, ACCESSION_NUMBER)):
            return False
        values = valuesOf(key)
        if values is None or any(_hasWildcards(value) for value in values):
            return False
        resolved = self.resolve(key.tag)
        return resolved is not None and any(
            index.expressions and index.expressions[0] is resolved.column
            for index in resolved.column.table.indexes)

    def offIndex(self, column):
        """``column`` that SQLite will not look up by index (``+column``)."""
        if self.dialect != "sqlite":
            return column
        return UnaryExpression(column, operator=custom_op("+"), type_=column.type)

    def resolve(self, tag, level=None):
        """The column of ``tag`` at ``level`` or above, or None."""
        level = self.level if level is None else level
        for index in range(level, -1, -1):
            resolved = self.columnAt(index, tag)
            if resolved is not None:
                return resolved
        return None

    def columnAt(self, index, tag):
        """The column of ``tag`` in the table of level ``index``, or None."""
        found = self.tables[index].byTag.get(tag)
        if found is None:
            return None
        return _Resolved(index, found[0], found[1].dicomType == "DT_MSTR", found[1].foldsCase)

    def use(self, index, condition=False):
        self.top = min(self.top, index)
        if condition:
            self.innerTop = min(self.innerTop, index)

    def fromClause(self):
        clause = self.tables[self.bottom].table
        for index in range(self.bottom - 1, self.top - 1, -1):
            child, parent = self.tables[index + 1], self.tables[index]
            clause = clause.join(parent.table, child.link == parent.key,
                                 isouter=index < self.innerTop)
        return clause

    # -- matching --------------------------------------------------------

    def addKey(self, key):
        """Add the condition of one key; False if the key is not usable here."""
        if key.vr == "SQ":
            return False
        if (self.query.computedFields and key.tag in _LISTS and _isComputedAt(key.tag, self.level)
                and self._addListMatch(key)):
            return True
        resolved = self.resolve(key.tag)
        if resolved is None:
            return self.below and self._addBelowMatch(key)
        column = resolved.column
        if self.preferSelective and not self.isSelective(key):
            column = self.offIndex(column)
        candidates = self.dateTimeKeys is not None and key.vr == "DT" and not key.emptyValueMatching
        condition = matchCondition(column, key, resolved.isMulti, prefixRange=self.dialect == "sqlite",
                                   dateTimeCandidates=candidates, foldCase=resolved.foldCase)
        if condition is not None:
            self.conditions.append(condition)
            self.use(resolved.index, condition=True)
            if candidates:
                self.dateTimeKeys.append(key)
        return True

    def _addListMatch(self, key):
        """ModalitiesInStudy / SOPClassesInStudy: EXISTS a matching series/image
        of the study."""
        target, tag = _LISTS[key.tag]
        return self._addExistsMatch([(target, key, tag)], ancestor=1)

    def _addBelowMatch(self, key):
        """A key of a level below this one (the Modality or SeriesInstanceUID
        of studies), kept for addBelowMatches; False when no level holds it."""
        for target in range(self.level + 1, len(self.tables)):
            if key.tag in self.tables[target].byTag:
                self.belowKeys.append((target, key, key.tag))
                return True
        return False

    def addBelowMatches(self):
        """The keys _addBelowMatch kept, all matched by the same rows: EXISTS
        one row of each level below holding them (an image of the series)."""
        keys, self.belowKeys = self.belowKeys, []
        self._addExistsMatch(keys)

    def _addExistsMatch(self, keys, ancestor=None):
        """EXISTS rows of the levels below the current one (the ``ancestor``
        level's entity of the current row, None: the row's own), linked
        together, whose columns match ``keys``, ``(target level, key, tag)``
        each; False when the layout cannot tell."""
        keys = [(target, key, tag) for target, key, tag in keys if hasValuesToMatch(key)]
        if not keys:
            return True
        targets = [target for target, _, _ in keys]
        related = self._related(self.level if ancestor is None else ancestor, max(targets), min(targets))
        if related is None:
            return False
        clause, aliases, link, outer = related
        conditions = []
        for target, key, tag in keys:
            resolved = self.columnAt(target, tag)
            if resolved is None:
                return False
            column = aliases[target].c[resolved.column.name]
            conditions.append(matchCondition(self.offIndex(column), key, resolved.isMulti,
                                             foldCase=resolved.foldCase))
        self.conditions.append(select(literal_column("1")).select_from(clause)
                               .where(link == outer, *conditions).exists())
        return True

    # -- computed fields -------------------------------------------------

    def _related(self, ancestor, target, top=None):
        """``(from clause, {level: aliased table}, link, outer)`` for the rows
        of level ``target`` below the ``ancestor`` entity of the current row,
        on aliased tables, those of the levels from ``target`` up to ``top``
        (``target`` when None) joined at least: ``link``, their column
        holding the entity's key, ``outer``, the current row's; None when
        the layout cannot tell.  Needs ``ancestor <= self.level``."""
        top = target if top is None else top
        keyTag = self.tables[ancestor].keyTag
        outer = self.resolve(keyTag)
        if outer is None:
            return None
        aliases = {target: self.tables[target].table.alias()}
        clause = aliases[target]
        index = target
        while index > top or keyTag not in self.tables[index].byTag:
            if index - 1 <= ancestor:
                return None
            child, parent = self.tables[index], self.tables[index - 1]
            aliases[index - 1] = parent.table.alias()
            clause = clause.join(aliases[index - 1], aliases[index].c[child.link.name]
                                 == aliases[index - 1].c[parent.key.name])
            index -= 1
        linkName = self.tables[index].byTag[keyTag][0].name
        self.use(outer.index)
        return clause, aliases, aliases[index].c[linkName], outer.column

    def computed(self, tag):
        """The ``_Computed`` of a computed key here, or None."""
        if not _isComputedAt(tag, self.level):
            return None
        if tag in _COUNTS:
            related = self._related(*_COUNTS[tag])
            if related is None:
                return None
            clause, _, link, outer = related
            return _Computed(outer, select(link, func.count()).select_from(clause), link, _countText)
        target, listed = _LISTS[tag]
        related = self._related(1, target)
        resolved = self.columnAt(target, listed)
        if related is None or resolved is None:
            return None
        clause, aliases, link, outer = related
        column = aliases[target].c[resolved.column.name]
        return _Computed(outer, select(link, distinctValues(column)).select_from(clause).where(column != ""),
                         link, _listText)


def _countText(value):
    return str(value or 0)


def _listText(value):
    return "\\".join(sorted({part for part in (value or "").split(",") if part}))


def cutToColumn(value, length, dialect=None):
    """``value`` cut to a column of ``length`` characters (as the database
    of ``dialect`` counts them: ``repertoire.fitted``), as the index stores
    it: a space the cut leaves at the end is no part of the value."""
    return fitted(dialect, value, length).rstrip(" ")


def cutAtNul(value):
    """``value`` up to its first NUL, where Conquest's C strings end (and
    PostgreSQL refuses text holding one)."""
    return value.partition("\0")[0]


def unpaddedValues(text, vr):
    """The values of ``text``, of ``vr``, without the spaces that pad them
    (PS3.5 6.2): each of its backslash-separated values stripped, but that
    of a text VR (``UNSPLIT_VRS``), whose leading spaces count, only at its
    end.  A stored value and a key alike (``ImageRecord``, ``valuesOf``)."""
    if vr in UNSPLIT_VRS:
        return [text.rstrip(" ")]
    return [part.strip(" ") for part in text.split("\\")]


def valuesOf(key, length=None):
    """The request values of a key (cut at a NUL, as ``cutAtNul`` cuts the
    stored ones; stripped, text ones but PN longer than ``length``, their
    column's, as ``_cutKey`` says, PN ones as ``personName``, empty ones
    dropped), or None for universal matching."""
    values = unpaddedValues(cutAtNul(key.value), key.vr)
    if length is not None and key.vr in _CUT_VRS and key.vr != "PN":
        values = [_cutKey(value, length) for value in values]
    if key.vr == "PN":
        values = list(map(personName, values))
    values = [value for value in values if value]
    if not values or any(_isUniversal(value) for value in values):
        return None
    return values


def _cutKey(value, length):
    """A text ``value`` whose literal start (all of it without wildcards)
    is longer than a column of ``length``, or fills it before a wildcard,
    as the stored values it matches were cut: that start cut to the column
    (``cutToColumn``), an exact value; any other one as it is."""
    literal = _literalStart(value)
    if len(literal) > length or len(literal) == length < len(value):
        return cutToColumn(literal, length)
    return value


def _cutNames(value, length):
    """The ``personName``s a stored name cut to a column of ``length``
    characters reads as when the whole name (in any spelling) matched the
    ``personName`` key ``value``: the key's literal start (all of it
    without wildcards) cut where the stored name, holding up to
    ``CUT_SLACK`` "^"s and "="s the key leaves out, may end; none when no
    name the key matches is cut (shorter than the column), or when the
    cut may fall in a wildcard (the literal start shorter than the column)."""
    literal = _literalStart(value)
    if len(literal) < len(value) and len(literal) < length or len(literal) + CUT_SLACK <= length:
        return []
    cut = range(max(1, length - CUT_SLACK), min(length, len(literal)) + 1)
    return list(dict.fromkeys(name for name in (personName(literal[:end]) for end in cut) if name))


def _personNameConditions(column, values, prefixRange, foldCase, length=None):
    """The condition that a single-valued PN ``column`` matches one of
    ``values`` (``personName`` ones) as a ``personName``: on
    ``storedPersonName(column)``, which no index holds, so also on the
    literal prefix each value's stored name starts with (``_namePrefix``),
    which ``lower(column)`` indexes hold: a ``LIKE`` of the prefix lower-cased
    (a non-ASCII one by the server's ``lower()``, as the whole name is); on
    SQLite (``prefixRange``) a range, for ASCII values only (its lower()
    folds no other letters).  A name that filled the column of ``length``
    (it was cut, in its spelling) also matches when it is one of the
    ``_cutNames`` of a value."""
    named = storedPersonName(column)
    condition = _anyOf(_textConditions(named, "PN", values, False, prefixRange, foldCase))
    cut = [name for value in values for name in _cutNames(value, length)] if length else []
    if cut:
        condition = or_(condition, and_(textLength(column) == length,
                                        _anyOf(_textConditions(named, "PN", cut, False, prefixRange, foldCase))))
    return _withIndexedStarts(column, condition, [_namePrefix(value) for value in values + cut],
                              all(value.isascii() for value in values + cut), prefixRange)


def _withIndexedStarts(column, condition, prefixes, ascii, prefixRange, indexed=None):
    """``condition``, whose matches on ``column`` all start with one of
    ``prefixes`` (in the case ``lower()`` gives both) or hold ``indexed``
    (when given: a condition on ``lower(column)`` its index looks up), and
    that start, which ``lower(column)`` indexes hold: a ``LIKE`` of the
    prefix lower-cased (a non-ASCII one by the server's ``lower()``); on
    SQLite (``prefixRange``) a range, for ASCII values only (``ascii``: its
    lower() folds no other letters).  ``condition`` alone when a prefix is
    empty."""
    prefixes = _widestPrefixes(prefixes)
    if not all(prefixes) or prefixRange and not ascii:
        return condition
    lowered = func.lower(column)
    if prefixRange:
        starts = [_prefixRange(lowered, spelling) for prefix in prefixes for spelling in _sqliteSpellings(prefix.lower())]
    elif ascii:
        starts = [lowered.like(escapeLike(prefix.lower()) + "%", escape=_ESCAPE) for prefix in prefixes]
    else:
        starts = [lowered.like(func.lower(_held(escapeLike(prefix) + "%")), escape=_ESCAPE) for prefix in prefixes]
    return and_(_anyOf(starts + ([indexed] if indexed is not None else [])), condition)


def _sqliteSpellings(prefix):
    """The starts, as SQLite's ``lower()`` leaves them, of the names whose
    case fold starts with the lower-case ASCII ``prefix``: where it has a
    letter that a character outside ASCII folds into (``i``: ``İ``), also
    with that character; cut before the third such letter (4 ranges at most)."""
    spellings = [""]
    for letter in prefix:
        if letter not in _FOLDED_FROM:
            spellings = [spelling + letter for spelling in spellings]
        elif len(spellings) == 4:
            break
        else:
            spellings = [spelling + choice for spelling in spellings for choice in (letter, _FOLDED_FROM[letter])]
    return spellings


def _widestPrefixes(prefixes):
    """``prefixes`` without those that start with another of them (its
    range holds theirs): the few ranges SQLite still searches an index on."""
    prefixes = sorted(set(prefixes), key=len)
    widest = []
    for prefix in prefixes:
        if not any(prefix.startswith(shorter) for shorter in widest):
            widest.append(prefix)
    return widest


def _namePrefix(value):
    """The start of a PN ``value`` every stored name it matches starts with
    (in the case ``lower()`` gives both): before its first wildcard, "=" or
    sigma (``lower()`` makes a final one ς, the match σ), without the "^"s
    there (which a stored name may lack)."""
    return _PREFIX_END.split(value, maxsplit=1)[0].rstrip("^")


def _prefixRange(target, prefix):
    """``target`` in the range of texts starting with ``prefix``; exact for
    binary (code point) order."""
    conditions = [target >= prefix]
    following = ord(prefix[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates cannot be stored
        following = 0xE000
    if following <= 0x10FFFF:
        conditions.append(target < prefix[:-1] + chr(following))
    return and_(*conditions)


def hasValuesToMatch(key):
    """Whether a key asks for more than universal matching."""
    return key.itemValues if key.vr == "SQ" else valuesOf(key) is not None


def asksForMatch(key):
    """Whether a key has values to match (``hasValuesToMatch``) and is no
    Private Creator, which names a block of private keys rather than asks
    for a match (PS3.5 7.8.1)."""
    return hasValuesToMatch(key) and not Tag(key.tag).is_private_creator


def withEmptyValueMatching(keys):
    """``keys`` of a request asking for Empty Value Matching: those of two
    quotation marks (``EMPTY_VALUE``) match the empty values only."""
    return [key._replace(emptyValueMatching=True) if cutAtNul(key.value).strip(" ") == EMPTY_VALUE else key
            for key in keys]


def matchCondition(column, key, isMulti=False, prefixRange=False, dateTimeCandidates=False, foldCase=False):
    """The SQL condition of one key on ``column``, or None (matches all).

    ``foldCase``: ``column`` is matched case-insensitively (a dicom.sql
    ``DT_ISTR`` one, ``Column.foldsCase``), as a key with ``foldCase`` is.
    ``prefixRange`` (SQLite): ASCII PN values with a literal prefix, and
    those of a single-valued ``foldCase`` column (DT_ISTR) that have
    wildcards or a letter İ, ſ or K folds into (up to
    ``_MOST_INDEXED_STARTS`` of them; the other exact ones are the
    ``lower(column) IN`` its index looks up), also get
    ``lower(column) >= prefix AND lower(column) < next(prefix)``, which
    SQLite looks up in the ``lower(PatientName)`` index (or the DT_ISTR
    column's ``lower(column)`` one, ``schema._foldedIndexes``; its LIKE
    optimization does not apply to expressions; PostgreSQL's does, with the
    text_pattern_ops index, and its ranges follow the collation).
    ``dateTimeCandidates``: a DT key's values (but wildcard ones) select
    the candidates only, the stored values of the days around them, which
    ``dateTimeMatcher`` then matches one by one in UTC.
    """
    if key.vr == "SQ":
        return None
    if key.emptyValueMatching:
        return or_(column == "", column.is_(None))
    if foldCase:
        key = key._replace(foldCase=True)
    length = None if isMulti else getattr(column.type, "length", None)
    values = valuesOf(key, length)
    if values is None:
        return None
    if key.vr == "UI":
        return _oneOf(column, values)
    if key.vr == "DT" and dateTimeCandidates:
        return _anyOf([_dateTimeCandidates(column, value) for value in values])
    if key.vr in _RANGE_VRS:
        return _anyOf(_dateTimeConditions(column, key.vr, values))
    if key.vr == "PN" and not isMulti:
        return _personNameConditions(column, values, prefixRange, key.foldCase, length)
    condition = _anyOf(_textConditions(column, key.vr, values, isMulti, prefixRange, key.foldCase))
    if not (prefixRange and key.foldCase) or isMulti:  # elsewhere lower(column) LIKE 'prefix%' is indexed
        return condition
    # an exact value without a letter İ, ſ or K folds into is in the IN on lower(column), which its index looks up
    ranged = [value for value in values if _hasWildcards(value) or _FOLDED_FROM.keys() & set(value.lower())]
    if not ranged or len(ranged) > _MOST_INDEXED_STARTS:
        return condition
    plain = [value.lower() for value in values if value not in ranged]
    return _withIndexedStarts(column, condition, [_literalStart(value) for value in ranged],
                              all(value.isascii() for value in values), prefixRange,
                              _oneOf(func.lower(column), plain) if plain else None)


def _oneOf(target, values, fold=None):
    """``target`` equal to one of ``values``, each passed through ``fold``
    (an SQL function) when given, else as the database can hold it
    (``_held``)."""
    values = [(fold or _held)(value) for value in values]
    return target == values[0] if len(values) == 1 else target.in_(values)


def _anyOf(conditions):
    """``conditions`` joined by OR as a balanced tree: SQLite refuses an
    expression deeper than 1000, which a chain of as many ORs is (and
    SQLAlchemy flattens nested ``or_``)."""
    if len(conditions) == 1:
        return conditions[0]
    middle = len(conditions) // 2
    return _OR(_anyOf(conditions[:middle]), _anyOf(conditions[middle:]))


def _dateTimeConditions(column, vr, values):
    """DA/TM/DT: one condition per range (a lone ``-``: any value), the
    single values as text."""
    values = [normalised(value, vr) for value in values]
    ranges = {value: _rangeEnds(value, vr) for value in values}
    conditions = [_rangeCondition(column, vr, *ends) for ends in ranges.values() if ends is not None]
    singles = [value for value, ends in ranges.items() if ends is None]
    if vr == "TM":
        times = [_normalTime(value) for value in singles if not _hasWildcards(value)]
        singles = [value for value in singles if _hasWildcards(value)]
        if times:  # an empty stored time is no time (padded, it would be 000000)
            conditions.append(and_(column > "", _oneOf(_wholeSeconds(column, vr), times)))
    return conditions + _textConditions(column, vr, singles, False)


_WHOLE_SECONDS = {"TM": len("HHMMSS"), "DT": len("YYYYMMDDHHMMSS")}


def _normalTime(value):
    """A single TM value as it compares with stored values padded to whole
    seconds: ``0930`` and ``093000.000`` are ``093000``."""
    return withoutZeroFraction(value).ljust(_WHOLE_SECONDS["TM"], "0")


def _wholeSeconds(column, vr):
    """The stored TM/DT padded with zeros to whole seconds (a short ``0815``
    is 08:15:00)."""
    whole = _WHOLE_SECONDS[vr]
    return case((func.length(column) < whole, func.substr(column.concat("0" * whole), 1, whole)), else_=column)


def _rangeEnds(value, vr):
    """``(low, high)`` of a range key value, None for a single one: one
    value of the VR is one (a DT's ``-`` may be its offset's), a range
    is split as ``rangeEnds`` splits it, anything else holding a ``-``
    (``-`` alone, ``00000101-``) at its first."""
    if CHECKS[vr](value):
        return None
    ends = rangeEnds(value, vr)
    if ends is None and "-" in value:
        ends = tuple(value.split("-", 1))
    return ends


def _rangeCondition(column, vr, low, high):
    """A DA/TM/DT range (``A-B``, ``A-``, ``-B``) from ``low`` to ``high``."""
    conditions = [column > ""]
    low = withoutZeroFraction(low)
    if low:
        low = _held(low)
        if vr == "DA":
            conditions = [column >= low]
        else:  # a short stored time (0815 for 08:15) counts as padded with zeros to whole seconds
            conditions.append(_wholeSeconds(column, vr) >= low)
    if high:
        if vr == "DA":
            conditions.append(column <= _held(high))
        else:
            conditions.append(func.substr(column, 1, len(high)) <= _held(high))
    return and_(*conditions)


# How far a DT's digits may be from those of a value at the same time in
# another offset from UTC (-1200 to +1400: 26 hours), with an hour to spare.
_OFFSETS_SPAN = datetime.timedelta(hours=27)


def _digits(time):
    """A naive datetime's DT digits to whole seconds, the year in four (strftime's ``%Y`` may give one)."""
    return time.isoformat(timespec="seconds").translate(_NOT_DIGITS)


_NOT_DIGITS = str.maketrans("", "", "-T:")


def _dateTimeCandidates(column, value):
    """The stored DT values ``dateTimeMatcher`` may find matching one
    value (or range) ``value`` of a DT key, whatever the offsets: those
    starting from a day and some hours before its start up to as long
    after its end (of a wildcard one, as text).  A stored value as precise
    as ``n`` digits is compared with as many of the bound's (``2024`` is
    from ``20240101000000``, never after a bound ``2024...``)."""
    value = normalised(value, "DT")
    if _hasWildcards(value):
        return _compare(column, value, False)
    ends = _rangeEnds(value, "DT") or (value, value)
    conditions = [column > ""]
    low, high = (period(end) if end else None for end in ends)
    try:
        if low is not None:
            bound = _digits(low.start.replace(tzinfo=None) - _OFFSETS_SPAN)
            conditions.append(column >= func.substr(bound, 1, func.length(column)))
    except OverflowError:  # from the calendar's first days on
        pass
    try:
        if high is not None:
            conditions.append(column <= _digits(high.end.replace(tzinfo=None) + _OFFSETS_SPAN))
    except OverflowError:  # up to the calendar's last days
        pass
    return and_(*conditions)


def dateTimeMatcher(key):
    """Whether a stored value matches the DT ``key``, a function of the
    value (for the rows of ``_dateTimeCandidates``): one of its values
    matches it (``dateTimeMatching``, the key's periods found once; a
    wildcard one as text, a lone ``-`` any value)."""
    values = [normalised(value, "DT") for value in valuesOf(key) or ()]
    patterns = [re.compile(".*".join(".".join(map(re.escape, part.split("?"))) for part in value.split("*")))
                for value in values if _hasWildcards(value)]
    matchers = [dateTimeMatching(value) if value != "-" else bool for value in values if not _hasWildcards(value)]
    return lambda stored: (any(pattern.fullmatch(stored) for pattern in patterns)
                           or any(matches(stored) for matches in matchers))


# How many candidate rows of a DT key are fetched from the database at once.
_CANDIDATES_AT_ONCE = 500


def _matchedPage(connection, query, dateTimes, limit, offset):
    """The rows of ``query`` (the candidates of DT keys) that every
    ``(matches, n)`` of ``dateTimes`` matches (``matches(row[n])``), the
    first ``offset`` skipped, ``limit`` at most: read from the cursor a
    few at a time and no further than the page's last, only the page's
    rows kept."""
    rows = []
    with connection.execute(query.execution_options(yield_per=_CANDIDATES_AT_ONCE)) as result:
        for row in result:
            if limit is not None and len(rows) == limit:
                break
            checkAbandoned()
            if not all(matches(row[n] or "") for matches, n in dateTimes):
                continue
            if offset:
                offset -= 1
            else:
                rows.append(row)
    return rows


def _textConditions(column, vr, values, isMulti, prefixRange=False, foldCase=False):
    """The conditions, one of which must hold, of text values: one per
    wildcard value and an ``IN`` for the others; PN (and with ``foldCase``
    any text) case-insensitive; DT_MSTR one per value, matching any part."""
    if vr != "PN" and not foldCase:
        return _matching(column, values, isMulti)
    if all(value.isascii() for value in values):
        values = list(dict.fromkeys(value.lower() for value in values))
        conditions = _matching(func.lower(column), values, isMulti)
        if prefixRange and any(_FOLDED_FROM.keys() & set(value) for value in values):
            # SQLite's lower() leaves İ (ſ, K) as it is, which the case fold (as the other
            # databases' lower()) makes an ASCII letter: names holding one matched on that
            holding = _anyOf([func.instr(column, letter) > 0 for letter in INTO_ASCII])
            conditions = [or_(_anyOf(conditions), and_(holding, _anyOf(_matching(_sqliteFolded(column), values,
                                                                                   isMulti))))]
        return conditions
    if prefixRange:
        return _matching(_sqliteFolded(column), [caseFolded(value) for value in values], isMulti)
    # the server's lower() on both sides: its rules are not Python's (İ, Latin Extended-B ...)
    return _matching(_serverFolded(column), values, isMulti, _serverFolded)


def _sqliteFolded(column):
    """SQLite's lower() folds ASCII letters only ("ÅSE" -> "Åse"): the SQLite
    driver's pacscore.db.casefold, on every row (no index has it), of the bytes
    (sqlite3 fails on text that is not UTF-8, which Conquest may have left)."""
    return func.pacs_casefold(cast(column, LargeBinary))


def _matching(column, values, isMulti, fold=None):
    """The conditions of ``_textConditions`` once ``column`` and ``values``
    are folded (``fold``: an SQL function the values go through, on the
    server)."""
    if isMulti:
        return [_compare(column, value, True, fold) for value in values]
    wildcards = [value for value in values if _hasWildcards(value)]
    exact = [value for value in values if not _hasWildcards(value)]
    conditions = [_compare(column, value, False, fold) for value in wildcards]
    if exact:
        conditions.append(_oneOf(column, exact, fold))
    return conditions


def _serverFolded(text):
    """``text`` (a column or a value) folded by a database server as SQLite's
    ``caseFolded`` folds it: ``lower()``, and the final sigma a sigma as a
    case fold makes it (lower() keeps ``ς``, so ``ΓΙΆΝΝΗΣ`` never met
    ``Γιάννης``).  A value the database cannot hold is sent as NULL, which
    matches nothing (``repertoire.HeldText``)."""
    return _SigmaFolded(func.lower(_held(text) if isinstance(text, str) else text))


def _held(value):
    """The text ``value`` bound as itself, or as NULL where the database
    cannot hold it: every value a key compares with goes so, which makes
    a key the database cannot hold match nothing rather than fail."""
    return literal(value, HeldText())


class _SigmaFolded(FunctionElement):
    """Its text with the final sigma a sigma, where the database can hold them."""

    type = String()
    inherit_cache = True


@compiles(_SigmaFolded)
def _sigmaFoldedSQL(element, compiler, **kw):
    (text,) = element.clauses
    if holds(compiler.dialect, FINAL_SIGMA + SIGMA):
        text = func.replace(text, FINAL_SIGMA, SIGMA)
    return compiler.process(text, **kw)


def _compare(target, value, isMulti, fold=None):
    """``target`` matching ``value`` (wildcards, or equality), with
    ``isMulti`` any of its ``\\``-separated values; ``fold``: an SQL function
    the value and patterns go through, else they go as the database can
    hold them (``_held``)."""
    def like(pattern):
        held = literal(pattern, HeldPattern())
        return _Like(target, fold(held) if fold else held)

    if _hasWildcards(value):
        pattern = likePattern(value)
        whole = like(pattern)
    else:
        pattern = escapeLike(value)
        whole = target == (fold or _held)(value)
    if not isMulti:
        return whole
    return or_(whole, like(pattern + _SEPARATOR + "%"), like("%" + _SEPARATOR + pattern),
               like("%" + _SEPARATOR + pattern + _SEPARATOR + "%"))


def columnNamed(columns, name):
    """The one of ``columns`` (anything with a ``name``) called ``name``
    (case-insensitively), else the first whose name starts with it, as
    Conquest's names cut to TruncateFieldNames characters do; None."""
    name = name.lower()
    if not name:
        return None
    for column in columns:
        if column.name.lower() == name:
            return column
    for column in columns:
        if column.name.lower().startswith(name):
            return column
    return None


class IndexQuery:
    """C-FIND and C-MOVE/C-GET queries on an ``Index``'s tables.

    ``find`` and ``instances`` take a SQLAlchemy connection first, as
    ``Index.runQuery`` calls them.  ``sortOrders`` maps a level to
    Conquest's ``PatientQuerySortOrder`` ... ``ImageQuerySortOrder``: comma
    separated ``Table.Column`` names (case-insensitive, a column name may be
    truncated, ``ASC``/``DESC`` may follow); results end sorted by the
    level's key, so the order is always deterministic; text by code point
    on every database (``byteOrder``).
    """

    log = Logger()

    def __init__(self, tables, layout, sortOrders=None, computedFields=True):
        self.tables = [_Table(index, getattr(tables, name), columns)
                       for index, (name, columns) in enumerate(layout.levels())]
        self.columnVRs = layout.indexedTags()  # {tag: VR}: how a key of unknown VR is read
        self.computedFields = computedFields
        self.sortOrders = {index: [] for index in range(len(LEVELS))}
        for level, text in (sortOrders or {}).items():
            index = levelIndex(level)
            self.sortOrders[index] = self._parseSortOrder(LEVELS[index], index, text or "")

    # -- sort orders -----------------------------------------------------

    def _parseSortOrder(self, levelName, level, text):
        """``[(table index, column, descending)]``; bad names are logged and dropped."""
        result = []
        for item in text.split(","):
            if not item.split():
                continue
            found = self._sortItem(level, item)
            if isinstance(found, str):
                self.log.warn("Ignoring {name!r} in the {queryLevel} query sort order: {reason}",
                              name=item.strip(), queryLevel=levelName, reason=found)
                continue
            result.append(found)
        return result

    def _sortItem(self, level, item):
        """``(table index, column, descending)`` of one ``[Table.]Column
        [ASC|DESC]``, or a reason why it is not usable at ``level``."""
        words = item.split()
        descending = False
        if len(words) == 2 and words[1].upper() in ("ASC", "DESC"):
            descending = words.pop().upper() == "DESC"
        found = self._sortColumn(level, words[0]) if len(words) == 1 else "expected Table.Column [ASC|DESC]"
        return found if isinstance(found, str) else (*found, descending)

    def requestedSort(self, level, text):
        """The ``SortBy`` of the order a C-FIND at ``level`` asks for by
        Conquest's (9999,0C00) element, ``text`` a ``[Table.]Column
        [ASC|DESC]`` of the level's table or one above (as a
        ``*QuerySortOrder`` item): a column of numbers (its attribute's VR
        IS, DS, US ...) by their value, as Conquest sorts its ``...Number``
        columns.  Raises ValueError naming what makes ``text`` unusable."""
        found = self._sortItem(levelIndex(level), text)
        if isinstance(found, str):
            raise ValueError(found)
        table, column, descending = found
        tag = next((tag for tag, (each, _) in self.tables[table].byTag.items() if each is column), None)
        if tag is None:
            raise ValueError("not a dicom.sql column")
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:  # a private tag: its column's
            vr = self.columnVRs[tag]
        numeric = vr in NUMBER_VRS
        text = func.coalesce(column, "")  # NULL as '', where PostgreSQL puts it last, SQLite and MySQL first
        expressions = [numericValue(column), text] if numeric else [text]
        return SortBy(tag, numeric, descending, [(table, expression, descending) for expression in expressions])

    def _sortColumn(self, level, name):
        """``(table index, column)`` or a reason why ``name`` is not usable."""
        tableName, _, columnName = name.rpartition(".")
        candidates = range(level, -1, -1)
        if tableName:
            named = [t.index for t in self.tables if t.table.name.lower() == tableName.lower()]
            if not named:
                return "no such table"
            if named[0] > level:
                return "the table is not part of this query level"
            candidates = named
        for index in candidates:
            column = columnNamed(self.tables[index].table.c, columnName)
            if column is not None:
                return index, column
        return "no such column"

    # -- queries ---------------------------------------------------------

    def find(self, connection, level, keys, limit=None, offset=0, below=False, counts=False, sortBy=None):
        """C-FIND at ``level``: one ``{tag: value}`` per matching entity (the
        first ``limit`` of them in the sort order, None: all, after the
        first ``offset``, which the database skips; ``sortBy``, an order of
        ``requestedSort``, instead of the level's ``*QuerySortOrder``); ``below``: keys of the
        levels below match too, as an entity holding a match (QIDO-RS),
        with no value answered; ``counts``: the counts are computed even
        without computed fields (QIDO-RS must answer them)."""
        level, keys = levelIndex(level), list(keys)
        statement = _Statement(self, connection, level, level, keys, below, dateTimeRows=True)
        table = self.tables[level]
        outputs = {}  # tag -> (expression, _Computed or None); the last key of a tag wins
        for key in keys:
            if self._computes(key.tag, counts):
                computed = statement.computed(key.tag)
                if computed is not None:
                    statement.addKey(key)
                    outputs[key.tag] = (computed.outer, computed)
                    continue
            if statement.addKey(key):
                resolved = statement.resolve(key.tag)
                if resolved is not None:  # None: matched below
                    statement.use(resolved.index)
                    outputs[key.tag] = (resolved.column, None)
        statement.addBelowMatches()
        outputs.setdefault(table.keyTag, (table.key, None))
        orderBy = []
        for index, column, descending in sortBy or self.sortOrders[level]:
            statement.use(index)
            column = byteOrder(column) if isinstance(column.type, String) else column
            orderBy.append(column.desc() if descending else column)
        tags = list(outputs)
        query = (select(*(outputs[tag][0].label(f"k{n}") for n, tag in enumerate(tags)))
                 .select_from(statement.fromClause())
                 .where(*statement.conditions)
                 .order_by(*orderBy, byteOrder(table.key)))
        dateTimes = [(dateTimeMatcher(key), tags.index(key.tag)) for key in statement.dateTimeKeys]
        if dateTimes:
            rows = _matchedPage(connection, query, dateTimes, limit, offset or 0)
        else:
            rows = []
            for row in connection.execute(query.limit(limit).offset(offset or None)):
                checkAbandoned()
                rows.append(row)
        computed = {n: outputs[tag][1].values(connection, (row[n] for row in rows))
                    for n, tag in enumerate(tags) if outputs[tag][1]}
        results = []
        for row in rows:
            values = ["" if value is None else value for value in row]
            for n, texts in computed.items():
                values[n] = texts[row[n]]
            results.append(dict(zip(tags, values)))
        return results

    def _computes(self, tag, counts=False):
        """Whether ``find`` computes the key ``tag``: every computed key with
        computed fields, the counts with ``counts`` too."""
        return tag in _COUNTS and (self.computedFields or counts) or tag in _LISTS and self.computedFields

    def computedAt(self, level, counts=False):
        """The computed keys (counts, lists) ``find`` answers at ``level``
        (a name), with ``counts`` as it is given; none without computed
        fields and ``counts``."""
        index = levelIndex(level)
        return {tag for tag in (*_COUNTS, *_LISTS) if self._computes(tag, counts) and _isComputedAt(tag, index)}

    def matchedComputedAt(self, level):
        """Of ``computedAt(level)``, those whose values ``find`` matches (the
        lists: a count is answered, never matched)."""
        return self.computedAt(level) & set(_LISTS)

    def unmatchedKeys(self, connection, level, keys):
        """The tags of the keys with values to match that ``find`` at
        ``level`` leaves unmatched: attributes the index keeps at no level
        up to ``level``, counts, sequences with values in their items (a
        C-FIND answers their matches 0xFF01, PS3.4 C.4.1.1.4); not Private
        Creators, which name a block rather than ask for a match."""
        level, keys = levelIndex(level), list(keys)
        statement = _Statement(self, connection, level, level, keys)
        return [key.tag for key in keys
                if asksForMatch(key) and not statement.addKey(key)]

    def instancesByUID(self, connection, uids):
        """The images whose SOP Instance UID is one of ``uids``, each
        matched literally: only UIDs are asked for (a wildcard, a list or
        another text would match others, or the whole index),
        ``_KEYS_PER_STATEMENT`` at a time; none for none."""
        uids = sorted({uid for uid in uids if isUID(uid)})
        found = []
        for start in range(0, len(uids), _KEYS_PER_STATEMENT):
            key = QueryKey(self.tables[3].keyTag, "UI", "\\".join(uids[start:start + _KEYS_PER_STATEMENT]))
            found += self.instances(connection, "IMAGE", [key])
        return found

    def instances(self, connection, level, keys):
        """C-MOVE/C-GET: the images below the entities ``keys`` select at
        ``level``, by study, series and (numerically) image number."""
        level, keys = levelIndex(level), list(keys)
        statement = _Statement(self, connection, level, 3, keys)
        for key in keys:
            statement.addKey(key)
        image = self.tables[3]
        columns = [image.key]
        for tag in (SOP_CLASS_UID, PATIENT_ID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID,
                    INSTANCE_NUMBER):
            resolved = statement.resolve(tag, 3)
            if resolved is None:
                columns.append(literal(""))
            else:
                statement.use(resolved.index)
                columns.append(resolved.column)
        columns[1:1] = [image.table.c.DeviceName, image.table.c.ObjectFile]
        query = (select(*(column.label(f"c{n}") for n, column in enumerate(columns)))
                 .select_from(statement.fromClause())
                 .where(*statement.conditions))
        rows = [["" if value is None else str(value) for value in row]
                for row in connection.execute(query)]
        rows.sort(key=lambda r: (r[5], r[6], numberKey(r[7]), r[0]))
        return [Instance(sop, sopClass, device, path, patient, study, series)
                for sop, device, path, sopClass, patient, study, series, _ in rows]
