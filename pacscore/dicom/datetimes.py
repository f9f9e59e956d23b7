"""Whether a DA or TM value is a real date or time (PS3.5 6.2), as HL7
orders and the web's worklist editor check them: DA is YYYYMMDD, a day
the calendar has; TM is HH, HHMM, HHMMSS or HHMMSS.F to HHMMSS.FFFFFF,
hours 00-23, minutes 00-59, seconds 00-60 (a leap second)."""

import datetime
import re

_TIME = re.compile(r"([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.[0-9]{1,6})?)?)?")
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
