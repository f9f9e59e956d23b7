"""HL7 v2 timestamps (TS, DTM) as the DICOM date and time (DA, TM) of a
worklist row: ``YYYYMMDD[HH[MM[SS[.S...]]]][+/-ZZZZ]``, read as a whole or
not at all; the offset from UTC is dropped."""

import re

from pacscore.dicom.datetimes import isDateTime

_TIMESTAMP = re.compile(r"([0-9]{8})((?:[0-9]{2}){0,3})(\.[0-9]+)?(?:([+-])([0-9]{2})([0-9]{2}))?")
_FRACTION = len(".FFFFFF")  # a TM's fraction holds up to 6 digits: HL7's longer ones are cut


def localDateAndTime(timestamp):
    """``(date, time)`` of an HL7 timestamp: YYYYMMDD and HH, HHMM, HHMMSS
    or HHMMSS.ffffff as precise as it is; ``("", "")`` for an empty one, ``(date,
    "")`` for one without a time; None for one that is no whole timestamp
    of a real date and time (``2024030110300``, ``20240301T1030``,
    ``20230229100000``, ``20240301250000``)."""
    timestamp = timestamp.strip()
    if not timestamp:
        return "", ""
    match = _TIMESTAMP.fullmatch(timestamp)
    if match is None:
        return None
    date, time, fraction, sign, hours, minutes = match.groups()
    fraction = (fraction or "")[:_FRACTION]
    if not isDateTime(date + time + fraction + (sign or "") + (hours or "") + (minutes or "")):
        return None
    return date, time + fraction
