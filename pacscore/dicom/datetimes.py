"""Whether a DA, TM or DT value is a real date or time (PS3.5 6.2), as HL7
orders and the web's worklist editor check them: DA is YYYYMMDD, a day
the calendar has; TM is HH, HHMM, HHMMSS or HHMMSS.F to HHMMSS.FFFFFF,
hours 00-23, minutes 00-59, seconds 00-60 (a leap second); DT is
YYYY[MM[DD[HH[MM[SS[.F{1-6}]]]]]] with an optional offset from UTC
(&ZZXX, -1200 to +1400).  ``isRangeMatch`` says whether a C-FIND (or
QIDO) value of one of them is one value or a range of them (PS3.4
C.2.2.2.5); ``isMatchValue`` whether C-FIND matches by it at all, once
``normalised`` (ACR-NEMA's ``2024.03.15`` and ``10:30``), as the index
matches and QIDO searches check them."""

import datetime
import re

_TIME = re.compile(r"([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.[0-9]{1,6})?)?)?")
_DATE_TIME = re.compile(r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})"
                        r"(?:\.[0-9]{1,6})?)?)?)?)?)?(?:([+-])([0-9]{2})([0-9]{2}))?")
_WILDCARDED = re.compile(r"[0-9.+]*[*?][0-9.+*?]*")
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


def isTime(value):
    """Whether ``value`` is a TM of a real time."""
    match = _TIME.fullmatch(value)
    return match is not None and all(
        int(part) <= limit for part, limit in zip(match.groups(), TIME_LIMITS) if part is not None)


def isDateTime(value):
    """Whether ``value`` is a DT of a real date and time."""
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        return False
    year, month, day, *times, sign, hours, minutes = match.groups()
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


def isRangeMatch(value, vr):
    """Whether ``value`` is one DA, TM or DT (``vr``) or a range ``a-b`` of
    them, either end (not both) left open; a DT's ``-`` may also be that of
    its offset from UTC."""
    isValue = CHECKS[vr]
    if isValue(value):
        return True
    for at in (position for position, character in enumerate(value) if character == "-"):
        start, end = value[:at], value[at + 1:]
        if (start or end) and (not start or isValue(start)) and (not end or isValue(end)):
            return True
    return False


def normalised(value, vr):
    """A C-FIND value of a DA (``vr``) without ACR-NEMA's dots
    (``2024.03.15``), of a TM or DT without colons (``10:30:00``)."""
    return value.replace(".", "") if vr == "DA" else value.replace(":", "")


def isMatchValue(value, vr):
    """Whether C-FIND matches DA, TM or DT (``vr``) values by ``value``:
    once ``normalised``, a range match (``isRangeMatch``) or one value of
    digits with wildcards (``2024*``, a lone ``*``: everything)."""
    value = normalised(value, vr)
    return _WILDCARDED.fullmatch(value) is not None or isRangeMatch(value, vr)
