"""What the list pages select, from Conquest's request parameters.

Conquest's pages pass a ``query`` parameter that is the WHERE clause of
their SQL (``DICOMStudies.patientid = 'P1' and DICOMSeries.studyinsta =
'1.2.3'``) and ANDs the search fields to it (``patientidmatch``,
``patientnamematch``, ``studydatematch``).  Here that text is never SQL:
``queryKeys`` reads it as terms ``[table.]column = 'value'`` or ``column
like 'pattern'`` joined by ``and`` (column names as in dicom.sql, any case,
maybe cut to TruncateFieldNames characters) and turns them into C-FIND keys
that ``IndexQuery`` matches with bound parameters (``= ''`` an empty value
only, as in SQL: Empty Value Matching; ``= '""'`` two quotation marks);
anything else is a
``QueryTextError``.  The search fields match within the ID or name, in
any case, their ``%`` and ``_`` read as ``*`` and ``?``; a study date is ``yyyy``, ``yyyymm``, ``yyyymmdd`` or a range ``a-b`` of them.
"""

import re

from pydicom.datadict import dictionary_VR

from pacscore.db.query import QueryKey, columnNamed, exactKey

PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
STUDY_DATE = 0x00080020

_TERM = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)\s*(=|like)\s*'((?:[^']|'')*)'\s*",
                   re.IGNORECASE)
_AND = re.compile(r"and\b", re.IGNORECASE)
_VR_OF_TYPE = {"DT_DATE": "DA", "DT_TIME": "TM", "DT_UI": "UI"}
_DATE = re.compile(r"^[0-9]{4}(?:[0-9]{2}(?:[0-9]{2})?)?$")
_RANGE = re.compile(r"^[0-9.]*-[0-9.]*$")


class QueryTextError(ValueError):
    """A query text or search field that cannot be read; says why."""


def _vr(column):
    if column.dicomType in _VR_OF_TYPE:
        return _VR_OF_TYPE[column.dicomType]
    try:
        return dictionary_VR(column.tag)
    except KeyError:
        return "LO"


class ColumnNames:
    """The columns of the four image-level tables (``worklist``: of the
    WorkList table instead) by (table, column) name; ``tableNames`` maps a
    level to its table (``Configuration.tableNames``)."""

    def __init__(self, layout, tableNames, worklist=False):
        levels = [("worklist", layout.worklist)] if worklist else layout.levels()
        self.tables = {tableNames[level].lower(): [column for column in columns if not column.isSequenceMarker]
                       for level, columns in levels}

    def lookup(self, table, name):
        """The dicom.sql column ``name`` (maybe truncated: ``columnNamed``)
        of ``table`` (None: the first table, patient first, that has one);
        QueryTextError when there is none."""
        if table is not None and table.lower() not in self.tables:
            raise QueryTextError(f"{table} is not a table of the index ({', '.join(self.tables)})")
        tables = [self.tables[table.lower()]] if table is not None else self.tables.values()
        for columns in tables:
            column = columnNamed(columns, name)
            if column is not None:
                return column
        raise QueryTextError(f"{table + '.' if table else ''}{name} is not a column of the index")


def _likeToWildcards(pattern):
    return pattern.replace("%", "*").replace("_", "?")


def _termKey(columns, table, name, operator, value):
    column = columns.lookup(table, name)
    value = value.replace("''", "'")
    if not value:  # = '' or like '': as in SQL, the empty values only, not every one
        return exactKey(column.tag, value)
    vr = _vr(column)
    if operator.lower() == "like":
        value = _likeToWildcards(value)
        if vr == "DA":
            prefix = value.rstrip("*")
            if prefix.isdigit() and len(prefix) not in (4, 6, 8) and len(prefix) < 8 and value != prefix:
                # like '2004011%', as SQL matches it: 20040110 to 20040119
                return QueryKey(column.tag, vr, f"{prefix.ljust(8, '0')}-{prefix.ljust(8, '9')}")
            return QueryKey(column.tag, vr, dateMatch(value.strip("*")))
        return QueryKey(column.tag, vr, value)
    return exactKey(column.tag, value)  # SQL's =: a "*" in a Patient ID is no wildcard


def parseQueryText(columns, text):
    """The QueryKeys of a Conquest ``query`` text (see the module docstring)."""
    keys, position, text = [], 0, text.strip()
    while position < len(text):
        if keys:
            match = _AND.match(text, position)
            if match is None:
                raise QueryTextError(f"expected 'and' at {text[position:position + 20]!r}")
            position = match.end()
        match = _TERM.match(text, position)
        if match is None:
            raise QueryTextError(f"expected column = 'value' or column like 'pattern' at "
                                 f"{text[position:position + 20]!r}")
        keys.append(_termKey(columns, *match.groups()))
        position = match.end()
    return keys


def _rangeEnd(date, last):
    """One end of a date range as a day: the first (or, ``last``, the
    final) day of a ``yyyy`` or ``yyyymm``; an open end stays empty."""
    if date and not _DATE.match(date):
        raise QueryTextError(f"a date is yyyy, yyyymm or yyyymmdd, not {date!r}")
    if len(date) == 4:
        return date + ("1231" if last else "0101")
    if len(date) == 6:
        return date + ("31" if last else "01")  # a string comparison: no month has more
    return date


def dateMatch(text):
    """A study date search field as a DICOM date match: ``yyyy``,
    ``yyyymm``, ``yyyymmdd`` or a range ``a-b`` of them (either end may be
    left open), each ``yyyy`` or ``yyyymm`` standing for all its days."""
    text = text.strip()
    if not text:
        return text
    if _RANGE.match(text):
        start, end = text.replace(".", "").split("-")
        return f"{_rangeEnd(start, False)}-{_rangeEnd(end, True)}"
    if not _DATE.match(text):
        raise QueryTextError(f"a date is yyyy, yyyymm, yyyymmdd or a range yyyymmdd-yyyymmdd, not {text!r}")
    if len(text) == 8:
        return text
    return f"{_rangeEnd(text, False)}-{_rangeEnd(text, True)}"


def searchKeys(patientID="", patientName="", studyDate=""):
    """The keys of the search fields (empty ones select everything); in the
    ID and name, Conquest's SQL wildcards ``%`` and ``_`` as well as ``*``
    and ``?`` (Conquest matches ``like '%<field>%'``)."""
    keys = []
    if patientID.strip():
        keys.append(QueryKey(PATIENT_ID, "LO", f"*{_likeToWildcards(patientID.strip())}*", foldCase=True))
    if patientName.strip():
        keys.append(QueryKey(PATIENT_NAME, "PN", f"*{_likeToWildcards(patientName.strip())}*"))
    if studyDate.strip():
        keys.append(QueryKey(STUDY_DATE, "DA", dateMatch(studyDate)))
    return keys


def quoted(value):
    """``value`` as a query text literal."""
    return "'" + value.replace("'", "''") + "'"
