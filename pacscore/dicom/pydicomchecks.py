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
    '1-3' is not a valid IS value``: ``invalidTexts``), each checked as the
    text it holds (an IS or DS pydicom has made a number, ``IS('1')``, by
    its text: the validators refuse the number's type)."""
    values = element.value if isinstance(element.value, (list, MultiValue)) else [element.value]
    return invalidTexts(int(element.tag), element.VR, ["" if value is None else
                                                       getattr(value, "original_string", None) or str(value)
                                                       for value in values])


def invalidTexts(tag, vr, texts):
    """Texts naming those of ``texts``, values of element ``tag`` of VR
    ``vr``, that pydicom's validators find no value of it; empty values and
    VRs other than text ones are none."""
    if vr not in STR_VR:
        return []
    found = []
    for text in texts:
        if not text:
            continue
        try:
            validate_value(vr, text, config.RAISE)
        except ValueError:
            shown = f"{text[:64]!r}..." if len(text) > 64 else repr(text)
            found.append(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {shown} is not a valid {vr} value")
    return found
