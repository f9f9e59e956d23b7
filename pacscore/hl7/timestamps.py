"""HL7 v2 timestamps (TS, DTM) as the DICOM date and time (DA, TM) of a
worklist row: ``YYYYMMDD[HH[MM[SS[.S...]]]][+/-ZZZZ]``, read as a whole or
not at all.  A moment with an offset from UTC (``+0000``) is converted
to the server's local time, whose date may differ (DICOM dates and times
without a Timezone Offset From UTC are local time, PS3.3 C.12.1.1.8); one
without an offset is the sender's local time, taken as it is, as is a
calendar date (a birth date) whatever its offset."""

import re

from pacscore.dicom.datetimes import isDateTime, period

_TIMESTAMP = re.compile(r"([0-9]{8})((?:[0-9]{2}){0,3})(\.[0-9]+)?(?:([+-])([0-9]{2})([0-9]{2}))?")
_FRACTION = len(".FFFFFF")  # a TM's fraction holds up to 6 digits: HL7's longer ones are cut
_REDUCED = re.compile(r"[0-9]{4}(?:0[1-9]|1[0-2])?(?:[+-][0-9]{4})?")  # YYYY[MM][+/-ZZZZ]


def localDateAndTime(timestamp, convert=True):
    """``(date, time)`` of an HL7 timestamp: YYYYMMDD and HH, HHMM, HHMMSS
    or HHMMSS.ffffff as precise as it is (a time converted from an offset
    of half hours to HHMM at least; not converted without ``convert``:
    the date and time as written); ``("", "")`` for an empty one, ``(date,
    "")`` for one without a time; None for one that is no whole timestamp
    of a real date and time (``2024030110300``, ``20240301T1030``,
    ``20230229100000``, ``20240301250000``), or whose conversion leaves
    the calendar (``99991231230000-0500``)."""
    timestamp = timestamp.strip()
    if not timestamp:
        return "", ""
    match = _TIMESTAMP.fullmatch(timestamp)
    if match is None:
        return None
    date, time, fraction, sign, hours, minutes = match.groups()
    fraction = (fraction or "")[:_FRACTION]
    offset = (sign or "") + (hours or "") + (minutes or "")
    if not isDateTime(date + time + fraction + offset):
        return None
    if sign is None or not time or not convert:
        return date, time + fraction
    sent = period(date + time[:4] + offset).start  # to the minute: the seconds are kept as sent
    try:
        local = sent.astimezone()
    except OverflowError:  # beyond the year 9999 (or before the year 1) in local time
        return None
    precision = max(len(time), len("HHMM") if local.minute != sent.minute else 0)
    # offsets are whole minutes: the seconds (a leap second's 60 too) are the sent ones
    # the year in four digits: strftime's %Y gives 500, not 0500
    return f"{local.year:04d}{local:%m%d}", (local.strftime("%H%M") + time[4:])[:precision] + fraction


def isReducedPrecision(timestamp):
    """Whether an HL7 timestamp is a valid one of reduced precision without
    a day (``YYYY`` or ``YYYYMM``, e.g. a birth date whose day is unknown),
    which ``localDateAndTime`` does not take, as no DICOM date holds it."""
    return _REDUCED.fullmatch(timestamp.strip()) is not None
