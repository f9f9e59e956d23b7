"""The values of a stored attribute that pydicom has not converted yet,
read straight from its bytes where pydicom's conversion of them is plain:
text of the VRs whose values are only split and stripped, in bytes that
read alike in every character set (ASCII without escape sequences), and
the numbers of US, UL, SL, FL, FD and of IS and DS values written as
plain numbers.  They are what pydicom's ``to_json_dict`` puts in "Value",
at a fraction of the cost (WADO-RS metadata converts every attribute of
every file); anything else is left to pydicom."""

import math
import re
import struct

from pydicom import config
from pydicom.dataelem import RawDataElement
from pydicom.hooks import hooks

_PLAIN = re.compile(rb"[\x00\t\n\f\r\x20-\x7e]*")
_INTEGER = re.compile(r"[+-]?[0-9]{1,15}")  # longer ones pydicom rounds through float
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")
_DATES = ("DA", "DT", "TM")


def _split(text):
    """AE-less string VRs (convert_string, convert_UI): trailing padding off the whole value."""
    return text.rstrip(" \0").split("\\")


def _uids(text):
    """UI (convert_UI): as ``_split``, then each value stripped as pydicom's UID does."""
    return [value.strip() for value in _split(text)]


def _splitText(text):
    """SH, LO, UC (convert_text): trailing padding off each value."""
    return [value.rstrip("\0 ") for value in text.split("\\")]


def _single(text):
    """ST, LT, UT (convert_single_string): one value, backslashes kept."""
    return [text.rstrip("\0 ")]


def _integers(text):
    values = _split(text)
    return [int(value) for value in values] if all(_INTEGER.fullmatch(value) for value in values) else None


def _decimals(text):
    values = _split(text.strip())
    if not all(_DECIMAL.fullmatch(value) for value in values):
        return None
    numbers = [float(value) for value in values]
    return numbers if all(math.isfinite(number) for number in numbers) else None


_TEXT = {"AS": _split, "CS": _split, "DA": _split, "DT": _split, "TM": _split, "UI": _uids,
         "SH": _splitText, "LO": _splitText, "UC": _splitText, "ST": _single, "LT": _single, "UT": _single,
         "IS": _integers, "DS": _decimals}
_NUMBERS = {"US": ("H", int), "UL": ("L", int), "SL": ("l", int), "FL": ("f", float), "FD": ("d", float)}


def rawValues(dataset, tag):
    """``(VR, values)`` of the attribute ``tag`` of ``dataset`` as pydicom
    would give them to DICOM JSON (``[]``: none), when it is still stored
    bytes and plain to read; None when not."""
    raw = dataset.get_item(tag)
    if not isinstance(raw, RawDataElement) or raw.value is None or raw.VR == "UN":
        return None
    vr = raw.VR
    if vr is None:  # implicit VR: looked up as pydicom does (an explicit one it keeps)
        found = {}
        hooks.raw_element_vr(raw, found, encoding=None, ds=dataset)
        vr = found["VR"]
    value = raw.value
    if vr in _NUMBERS:
        form, kind = _NUMBERS[vr]
        size = struct.calcsize(f"<{form}")
        if len(value) % size:
            return None
        return vr, [kind(number) for number in
                    struct.unpack(f"{'<' if raw.is_little_endian else '>'}{len(value) // size}{form}", value)]
    read = _TEXT.get(vr)
    if read is None or (vr in _DATES and config.datetime_conversion) or not _PLAIN.fullmatch(value):
        return None
    if not value:
        return vr, []
    values = read(value.decode("ascii"))
    if values is None:
        return None
    return vr, [] if values == [""] else values
