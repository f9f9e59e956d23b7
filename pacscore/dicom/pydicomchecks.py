"""pydicom's checks of the values it reads, left to pacs.

pydicom validates every value it reads or is given (``Invalid value for VR
IS: '1-3'``) and every Specific Character Set term (``Unknown encoding
'ISO_IR 999' - using default encoding instead``) and, in its default mode,
reports what it finds as a Python warning, which Twisted's log writes as an
anonymous ``twisted.logger._global`` line naming a file of pydicom's: not
the peer, the association or the object, and once per distinct value.
pacs checks what it uses itself, where it can name them: a peer's
identifier keys (``pacscore.dicom.identifiers``: refused with a line
naming the peer, or named in one line per request when taken as they
are), stored values (``pacscore.storage.attributes``) and the terms
of a stored object's character set (the store names them for each object).
``install`` (which the general decoder, ``pacscore.dicom.textbytes``,
calls when imported) turns pydicom's reports of these off; its other
warnings stay.
"""

import warnings

from pydicom import config
from pydicom.multival import MultiValue
from pydicom.valuerep import STR_VR, validate_value

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
    '1-3' is not a valid IS value``), each checked as the text it holds
    (an IS or DS pydicom has made a number, ``IS('1')``, by its text: the
    validators refuse the number's type); empty values and other VRs are
    none."""
    vr = element.VR
    if vr not in STR_VR:
        return []
    found = []
    for value in element.value if isinstance(element.value, (list, MultiValue)) else [element.value]:
        text = "" if value is None else getattr(value, "original_string", None) or str(value)
        if not text:
            continue
        try:
            validate_value(vr, text, config.RAISE)
        except ValueError:
            tag = int(element.tag)
            found.append(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {text[:64]!r} is not a valid {vr} value")
    return found
