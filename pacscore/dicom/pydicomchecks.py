"""pydicom's checks of the values it reads and is given, left to pacs.

pydicom validates every value it reads or is given (``Invalid value for VR
IS: '1-3'``) and every Specific Character Set term (``Unknown encoding
'ISO_IR 999' - using default encoding instead``) and, in its default mode,
reports what it finds as a Python warning, which Twisted's log writes as an
anonymous ``twisted.logger._global`` line naming a file of pydicom's: not
the peer, the association or the object, and once per distinct value.
pacs checks what it uses itself, where it can name them, with
``invalidValues`` (pydicom's validators, on the text of each value): a
peer's identifier keys (``pacscore.dicom.identifiers``: refused with a
line naming the peer, or named in one line per request answered when
taken as they are), the values a stored object is indexed by and the
terms of its character set (the store names them for each object,
``pacscore.storage.store``), and the text pacs itself writes into a data
set from converters, Lua, modifypatid and anonymize
(``pacscore.converters.elements.assign``, naming the converter and the
object).  ``install`` (which the general decoder,
``pacscore.dicom.textbytes``, calls when imported) turns pydicom's reports
of these off: reading validation IGNORE, which pydicom 3.0 also applies to
every value assigned without a validation mode of its own (``ds.X = v``),
so writes are unchecked by pydicom too, and its unknown term warning
filtered; its other warnings stay.  One process-wide setting, made once at
import, no per-call switching (which no thread could do safely).
"""

import functools
import warnings

from pydicom import config
from pydicom.multival import MultiValue
from pydicom.valuerep import MAX_VALUE_LEN, STR_VR, STR_VR_REGEXES, validate_value

REMEMBERED_TEXTS = 4096  # values whose validity is remembered (invalidTexts)
REMEMBERED_LENGTH = 64  # the longest one: a UID, a code; not a long text

# pydicom's warning for a term it reads as Latin-1 (pydicom.charset).
_UNKNOWN_TERM = r"Unknown encoding '"


def install():
    """Have pydicom read values without validating them, and say nothing of
    character set terms it does not know (once)."""
    config.settings.reading_validation_mode = config.IGNORE
    warnings.filterwarnings("ignore", _UNKNOWN_TERM, UserWarning, r"pydicom\.")


def invalidValues(element):
    """Texts naming the values of text ``element`` (a pydicom DataElement)
    that pydicom's validators find no value of its VR (``(0020,0013)
    '1-3' is not a valid IS value``: ``invalidTexts``), each checked as the
    text it holds (an IS or DS pydicom has made a number, ``IS('1')``, by
    its text: the validators refuse the number's type)."""
    values = element.value if isinstance(element.value, (list, MultiValue)) else [element.value]
    return invalidTexts(int(element.tag), element.VR, ["" if value is None else
                                                       getattr(value, "original_string", None) or str(value)
                                                       for value in values])


def _pnValid(vr, text):
    """Whether pydicom's validator finds ``text`` a value of ``vr``."""
    try:
        validate_value(vr, text, config.RAISE)
    except ValueError:
        return False
    return True


# What pydicom's validators check of a string, made once, by VR: its
# maximum length (``MAX_VALUE_LEN``; None: any) and its pattern
# (``STR_VR_REGEXES``; None: any), or for PN its validator, which checks
# each component.  A stored object's ~40 values are each checked
# (pacscore.storage.attributes): so at a fraction of validate_value's cost
# (its dispatch, message and exception for each value).  UC and UT, which
# pydicom does not check, have none.
_CHECKS = {str(vr.value): (None, None, _pnValid) if vr == "PN" else
           (MAX_VALUE_LEN.get(vr), STR_VR_REGEXES.get(vr), None)
           for vr in STR_VR if vr == "PN" or vr in MAX_VALUE_LEN or vr in STR_VR_REGEXES}


def _valid(vr, text):
    """Whether pydicom's validators find ``text`` a value of ``vr`` (in ``_CHECKS``)."""
    longest, pattern, validator = _CHECKS[vr]
    if validator is not None:
        return validator(vr, text)
    return ((longest is None or len(text) <= longest)  # $ matches before a last newline: pydicom refuses one
            and (pattern is None or pattern.match(text) is not None and text[-1] != "\n"))


# ``_valid`` of the short texts met lately: the objects of a series repeat
# most of their values (study and series UIDs, dates, codes), each check
# of a pattern costing a stored object ~0.5 µs
_validRemembered = functools.lru_cache(maxsize=REMEMBERED_TEXTS)(_valid)


def invalidTexts(tag, vr, texts):
    """Texts naming those of ``texts``, values of element ``tag`` of VR
    ``vr``, that pydicom's validators find no value of it; empty values and
    VRs other than text ones are none."""
    if vr not in _CHECKS:
        return []
    found = []
    for text in texts:
        if not text or (_validRemembered if len(text) <= REMEMBERED_LENGTH else _valid)(vr, text):
            continue
        shown = f"{text[:64]!r}..." if len(text) > 64 else repr(text)
        found.append(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {shown} is not a valid {vr} value")
    return found
