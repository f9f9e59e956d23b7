"""Whether a DA, TM or DT value is a real date or time (PS3.5 6.2), as HL7
orders and the web's worklist editor check them: DA is YYYYMMDD, a day
the calendar has; TM is HH, HHMM, HHMMSS or HHMMSS.F to HHMMSS.FFFFFF,
hours 00-23, minutes 00-59, seconds 00-60 (a leap second); DT is
YYYY[MM[DD[HH[MM[SS[.F{1-6}]]]]]] with an optional offset from UTC
(&ZZXX, -1200 to +1400).  ``isRangeMatch`` says whether a C-FIND (or
QIDO) value of one of them is one value or a range of them (PS3.4
C.2.2.2.5; ``rangeEnds`` splits a range, a DT's offset ``-0500`` no
separator); ``isMatchValue`` whether C-FIND matches by it at all, once
``normalised`` (ACR-NEMA's ``2024.03.15`` and ``10:30``), as the index
matches and QIDO searches check them.  ``dateTimeMatching`` matches a
stored DT by a DT key in UTC where either carries an offset (PS3.4
C.2.2.2.5.3), one without being the server's local time, and a stored
value that is no DT as text, as the index compares it."""

import datetime
import re
from typing import NamedTuple

_TIME = re.compile(r"([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.[0-9]{1,6})?)?)?")
_DATE_TIME = re.compile(r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})"
                        r"(?:\.([0-9]{1,6}))?)?)?)?)?)?(?:([+-])([0-9]{2})([0-9]{2}))?")
_WILDCARDED = re.compile(r"[0-9.+]*[*?][0-9.+*?]*")
# A time's fraction ends in zeros (before a DT's UTC offset), or is no more than its dot.
_ZERO_FRACTION_DIGITS = re.compile(r"(?<=\.)(\d*?)0+(?=$|[+-])")
_ZERO_FRACTION_END = re.compile(r"\.(?=$|[+-])")
_WHOLE_SECONDS = len("YYYYMMDDHHMMSS")  # a DT's digits to whole seconds
TIME_LIMITS = (23, 59, 60)  # hours, minutes, seconds


def isDate(value):
    """Whether ``value`` is a DA of a real date."""
    if len(value) != 8 or not value.isascii() or not value.isdigit():
        return False
    try:
        datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:  # month 13, 31 November, year 0 ...
        return False
    return True


def isSearchDate(value):
    """Whether ``value`` is a DA of a real date from 1900 to 2199, as
    Conquest's dgate takes a date in a search text or a command's date
    (``atoi`` between 19000000 and 22000000): other digits, as a patient
    ID's ``-12345678``, are no date."""
    return isDate(value) and "1900" <= value[:4] < "2200"


def isTime(value):
    """Whether ``value`` is a TM of a real time."""
    match = _TIME.fullmatch(value)
    return match is not None and all(
        int(part) <= limit for part, limit in zip(match.groups(), TIME_LIMITS) if part is not None)


def isDateTime(value):
    """Whether ``value`` is a DT of a real date and time."""
    return _isRealDateTime(_DATE_TIME.fullmatch(value))


def _isRealDateTime(match):
    """Whether ``match`` (of ``_DATE_TIME``, or None) is of a real date
    and time."""
    if match is None:
        return False
    year, month, day, *times, _, sign, hours, minutes = match.groups()
    try:
        datetime.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return False
    if any(int(part) > limit for part, limit in zip(times, TIME_LIMITS) if part is not None):
        return False
    return sign is None or (int(minutes) < 60 and -1200 <= int(sign + hours + minutes) <= 1400)


CHECKS = {"DA": isDate, "TM": isTime, "DT": isDateTime}
FORMATS = {"DA": "date (DA, YYYYMMDD)", "TM": "time (TM, HHMMSS.FFFFFF)",
           "DT": "date and time (DT, YYYYMMDDHHMMSS.FFFFFF&ZZXX)"}


def rangeEnds(value, vr):
    """``(start, end)`` of a range ``start-end`` of DA, TM or DT (``vr``)
    values, either end (not both) empty: open; None for one value or
    anything else.  A DT's ``-`` may be that of its offset from UTC: a
    value that is one DT (``20240102001500-0500``, not the range up to the
    year 0500) is one, and a range is split at the ``-`` that leaves a DT
    (or nothing) on either side (``20240102-0500-20240103``)."""
    isValue = CHECKS[vr]
    if isValue(value):
        return None
    for at in (position for position, character in enumerate(value) if character == "-"):
        start, end = value[:at], value[at + 1:]
        if (start or end) and (not start or isValue(start)) and (not end or isValue(end)):
            return start, end
    return None


def isRangeMatch(value, vr):
    """Whether ``value`` is one DA, TM or DT (``vr``) or a range ``a-b`` of
    them (``rangeEnds``)."""
    return CHECKS[vr](value) or rangeEnds(value, vr) is not None


def normalised(value, vr):
    """A C-FIND value of a DA (``vr``) without ACR-NEMA's dots
    (``2024.03.15``), of a TM or DT without colons (``10:30:00``)."""
    return value.replace(".", "") if vr == "DA" else value.replace(":", "")


def withoutZeroFraction(value):
    """``093000.000`` is ``093000``, as stored so."""
    return _ZERO_FRACTION_END.sub("", _ZERO_FRACTION_DIGITS.sub(r"\1", value))


def isMatchValue(value, vr):
    """Whether C-FIND matches DA, TM or DT (``vr``) values by ``value``:
    once ``normalised``, a range match (``isRangeMatch``) or one value of
    digits with wildcards (``2024*``, a lone ``*``: everything)."""
    value = normalised(value, vr)
    return _WILDCARDED.fullmatch(value) is not None or isRangeMatch(value, vr)


class Period(NamedTuple):
    """The time a DT value covers, from ``start`` up to (not including)
    ``end``: aware datetimes when it has an offset from UTC, else naive
    ones (local time)."""

    start: datetime.datetime
    end: datetime.datetime


def period(value):
    """The ``Period`` of a DT ``value`` (``2024`` is the whole year,
    ``20240102101500.25`` a hundredth of a second), None when it is none."""
    match = _DATE_TIME.fullmatch(value)
    if not _isRealDateTime(match):
        return None
    year, month, day, hour, minute, second, fraction, sign, hours, minutes = match.groups()
    zone = None if sign is None else datetime.timezone(
        int(sign + "1") * datetime.timedelta(hours=int(hours), minutes=int(minutes)))
    start = datetime.datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                              tzinfo=zone)
    start += datetime.timedelta(seconds=int(second or 0), microseconds=int((fraction or "0").ljust(6, "0")))
    try:
        if fraction is not None:
            return Period(start, start + datetime.timedelta(microseconds=10 ** (6 - len(fraction))))
        for part, unit in ((second, "seconds"), (minute, "minutes"), (hour, "hours"), (day, "days")):
            if part is not None:
                return Period(start, start + datetime.timedelta(**{unit: 1}))
        if month is not None:
            return Period(start, start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1))
        return Period(start, start.replace(year=start.year + 1))
    except (OverflowError, ValueError):  # the year 9999 ends with the calendar
        return Period(start, datetime.datetime.max.replace(tzinfo=zone))


def _comparable(*times):
    """``times`` made comparable: naive ones (local time) made aware when
    one of them is aware."""
    if len({time.tzinfo is None for time in times}) == 1:
        return times
    return tuple(time if time.tzinfo is not None else time.astimezone() for time in times)


def dateTimeMatching(value):
    """Whether a stored DT matches the DT ``value`` of a C-FIND key (one
    value, or a range of them: ``rangeEnds``; no wildcards), a function of
    the stored value, the key's periods found once: one value covering the
    same time, a range holding the stored value's start (a range's end, as
    precise as it is, included: ``-2024010212`` up to 12:59:59.999999),
    compared in UTC where an offset from UTC is given (PS3.4 C.2.2.2.5.3:
    ``20240102001500-0500`` matches ``20240102051500+0000``), a value
    without one the server's local time; a stored value that is no DT
    (``period``: a 7-digit fraction, ``Z``, a short offset ``+01``)
    compared as text (``_matchesAsText``)."""
    ends = rangeEnds(value, "DT")
    parts = (value,) if ends is None else ends
    try:
        asked = [period(part) if part else None for part in parts]
    except (OverflowError, ValueError):  # a time beyond the calendar
        asked = None
    if asked is not None and any(part and end is None for part, end in zip(parts, asked)):
        asked = None  # an end that is no DT: no DT matches
    return lambda stored: _matchesPeriods(stored, value, ends, asked)


def _matchesPeriods(stored, value, ends, asked):
    """Whether the stored DT ``stored`` matches the key ``value`` of the
    range ``ends`` (or None) whose periods are ``asked`` (None: no DT
    matches it), as ``dateTimeMatching`` says."""
    try:
        found = period(stored)
        if found is None:
            return _matchesAsText(stored, value, ends)
        if asked is None:
            return False
        if ends is None:
            start, end, askedStart, askedEnd = _comparable(*found, *asked[0])
            return start == askedStart and end == askedEnd
        low, high = asked
        return ((low is None or _ordered(low.start, found.start, orEqual=True))
                and (high is None or _ordered(found.start, high.end)))
    except (OverflowError, ValueError):  # a time beyond the calendar (9999-12-31 23:59:60, in local time)
        return False


def _ordered(first, second, orEqual=False):
    """Whether ``first`` is before ``second`` (or at it, ``orEqual``)."""
    first, second = _comparable(first, second)
    return first <= second if orEqual else first < second


def _matchesAsText(stored, value, ends):
    """Whether the text ``stored`` matches the DT ``value`` (a range
    ``ends``, or None) as the index compares text: one value equal to it;
    a range's start (without a zero fraction) at most the stored value
    padded with zeros to whole seconds, its end at least as many of the
    stored value's first characters; nothing empty."""
    if ends is None:
        return stored == value
    low, high = withoutZeroFraction(ends[0]), ends[1]
    return (stored != "" and (not low or stored.ljust(_WHOLE_SECONDS, "0") >= low)
            and (not high or stored[:len(high)] <= high))
