"""Which objects a delayed action covers: the filters of the full syntax
(manual 7.2: ``forward``/``get``/``delete`` ``[date yyyymmdd-yyyymmdd]
[now -ddd+ddd] [age -ddd+ddd] [modality mm] [sop xxxx] [imagetype xxxx]
[seriesdesc xxxx] [series xxx] [study xxx]``) as index query keys, or as
the identifier of a C-FIND/C-MOVE on a remote AE.

``now`` and ``age`` are turned into a date range when the command runs:
``now -7+0`` is the last seven days up to today, ``age -365+0`` the year
up to the date of the series that triggered the command.  Every date
filter matches the Study Date.
"""

import datetime
import re

from pydicom.dataset import Dataset

from pacscore.db.query import EXACT, QueryKey
from pacscore.dicom.identifiers import declaringCharacterSet
from pacscore.export.queue import LEVELS

FILTERS = {  # word -> (tag, VR, query level it belongs to)
    "date": (0x00080020, "DA", "STUDY"),
    "now": (0x00080020, "DA", "STUDY"),
    "age": (0x00080020, "DA", "STUDY"),
    "modality": (0x00080060, "CS", "SERIES"),
    "seriesdesc": (0x0008103E, "LO", "SERIES"),
    "series": (0x0020000E, "UI", "SERIES"),
    "study": (0x0020000D, "UI", "STUDY"),
    "sop": (0x00080018, "UI", "IMAGE"),
    "imagetype": (0x00080008, "CS", "IMAGE"),
}
SELECTIONS = {**FILTERS,  # what a selection may also match: the filters and, for dgate's moveaccession,
              "accession": (0x00080050, "SH", "STUDY")}
LEVEL_KEYS = {  # level -> (tag, VR, keyword) of its unique key
    "PATIENT": (0x00100020, "LO", "PatientID"),
    "STUDY": (0x0020000D, "UI", "StudyInstanceUID"),
    "SERIES": (0x0020000E, "UI", "SeriesInstanceUID"),
    "IMAGE": (0x00080018, "UI", "SOPInstanceUID"),
}
_OFFSETS = re.compile(r"^([+-]?\d+)?([+-]\d+)?$")
_DATE = "%Y%m%d"


def dateRange(offsets, base):
    """``-ddd+ddd`` days around ``base`` (a date) as ``YYYYMMDD-YYYYMMDD``;
    a single offset spans from ``base`` to it. ValueError if unreadable."""
    match = _OFFSETS.match(offsets.replace(" ", ""))
    if not match or not any(match.groups()):
        raise ValueError(f"expected -ddd+ddd, got {offsets!r}")
    first, second = (int(g) for g in (match.group(1) or "0", match.group(2) or "0"))
    low, high = sorted((first, second))
    return (f"{(base + datetime.timedelta(days=low)).strftime(_DATE)}-"
            f"{(base + datetime.timedelta(days=high)).strftime(_DATE)}")


def resolveFilters(values, today, seriesDate=""):
    """``{word: expanded text}`` with ``now``/``age`` made date ranges
    (``age`` around ``seriesDate`` YYYYMMDD, else ``today``)."""
    resolved = {}
    for word, value in values.items():
        if word == "now":
            value = dateRange(value, today)
        elif word == "age":
            try:
                base = datetime.datetime.strptime(seriesDate.replace(".", "")[:8], _DATE).date()
            except ValueError:
                base = today
            value = dateRange(value, base)
        resolved[word] = value
    return resolved


def indexKeys(level, target, filters):
    """``QueryKey``s for ``IndexQuery.instances(connection, "IMAGE", keys)``:
    the ``level`` entity of ``target`` (a ``queue.Target``), within the
    patient, study (and series) the target names above it, and the filters."""
    # Keys match exactly (unique key matching): a Patient ID holding "*" or
    # "?" must not select others; a study asked for with another patient's
    # ID selects nothing.
    keys = [QueryKey(LEVEL_KEYS[at][0], EXACT, target.uid(at)) for at in LEVELS[:LEVELS.index(level) + 1]
            if target.uid(at) or at == level]
    for word, value in sorted(filters.items()):
        tag, vr, _ = SELECTIONS[word]
        keys.append(QueryKey(tag, vr, value))
    return keys


def remoteRequest(level, target, filters):
    """``(query level, identifier Dataset)`` selecting the ``level``
    entity of ``target`` narrowed by ``filters`` on a remote archive
    (Patient Root keys): the level is the lowest a filter needs, the
    identifier holds the unique keys down to it, empty where the remote
    fills them in."""
    queryLevel = max([level] + [SELECTIONS[word][2] for word in filters], key=LEVELS.index)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = queryLevel
    for at in LEVELS[:LEVELS.index(queryLevel) + 1]:
        keyword = LEVEL_KEYS[at][2]
        known = LEVELS.index(at) <= LEVELS.index(level)
        setattr(identifier, keyword, target.uid(at) if known else "")
    for word, value in sorted(filters.items()):
        tag, vr, _ = SELECTIONS[word]
        identifier.add_new(tag, vr, value)
    return queryLevel, declaringCharacterSet(identifier)

