"""Reading and writing data set elements the way converter scripts name them.

Tags are written ``gggg,eeee`` (hexadecimal).  A path into sequences is a
list of ``(tag, item)`` steps, the last one naming the element itself, as in
``%V\\300c,0060.0\\0008,1155`` or ``set 0040,0275.1\\0040,0007 to ..``.
Values read are text: multiple values joined with a backslash, person
names as their DICOM string, tags (AT) as ``gggg,eeee``.  Values written
are text too, converted for the element's VR (every backslash-separated
number for US, FL ..., ``gggg,eeee`` for AT); the VR is the element's own
when it has one, else pydicom's dictionary's, and LO for private and
unknown tags.  Text that is no value of the VR (``1,5`` for a DS, ``n/a``
for a US) is a ValueError, never an emptied element.
"""

import math
import re
import struct

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from twisted.logger import Logger

from pacscore.dicom.identifiers import TEXT_VRS, checkFits
from pacscore.dicom.pydicomchecks import invalidValues
from pacscore.firstwarned import FirstWarned

TAG_PATTERN = r"[0-9A-Fa-f]{4},[0-9A-Fa-f]{4}"
KEYWORD_PATTERN = r"[A-Za-z][A-Za-z0-9]*"  # a DICOM keyword, as Conquest takes dgate.dic's names for gggg,eeee
SPECIFIC_CHARACTER_SET = 0x00080005
FIRST_PIXEL_TAG = 0x7FE00008  # Float Pixel Data: attributes read "before the pixels" stop here or later
UNICODE_CHARACTER_SET = "ISO_IR 192"

_TAG = re.compile(TAG_PATTERN)
_NAME = re.compile(rf"{TAG_PATTERN}|{KEYWORD_PATTERN}")
_ITEM = re.compile(r"\.([0-9]+)")
_SEPARATORS = ("\\", "/")
INVALID_WARNING_PERIOD = 3600  # seconds: how often a converter line's invalid values of an element are warned of
_FURTHER_SET = "further ones of {where} for {element} are logged at debug level for an hour"

log = Logger()
invalidWarnings = FirstWarned(INVALID_WARNING_PERIOD)  # of values set as they are, by where and tag (assign)


def metaRefusal(tag):
    """Why a converter cannot set ``tag``: a file meta element (group
    0002) is no element of the data set; None for any other tag."""
    if tag >> 16 != 0x0002:
        return None
    return (f"({tag >> 16:04x},{tag & 0xFFFF:04x}) is a file meta element (group 0002): "
            "the data set holds none, and the file meta is written from the stored object")


def parseTag(text):
    """``0xGGGGEEEE`` for ``gggg,eeee``; ValueError otherwise."""
    if not _TAG.fullmatch(text):
        raise ValueError(f"not a tag (gggg,eeee): {text!r}")
    group, element = text.split(",")
    return (int(group, 16) << 16) | int(element, 16)


def tagOf(name):
    """The tag a path step names, ``gggg,eeee`` or a DICOM keyword (spelt
    with the standard's case), or None for an unknown keyword."""
    return parseTag(name) if _TAG.fullmatch(name) else tag_for_keyword(name)


def vrOf(tag, dataset=None):
    """The VR a new value of ``tag`` gets in ``dataset``."""
    element = dataset.get(tag) if dataset is not None else None
    if element is not None and element.VR not in ("UN", "SQ"):
        return element.VR
    if Tag(tag).is_private:
        return "LO"
    try:
        return dictionary_VR(tag).split(" ")[0]
    except KeyError:
        return "LO"


def textOf(element):
    """The value of a pydicom DataElement (or None) as converter text."""
    if element is None or element.VR == "SQ":
        return ""
    return _text(element.value, element.VR)


def _text(value, vr):
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(_text(v, vr) for v in value)
    if isinstance(value, (bytes, bytearray)):  # a bytearray: pixel data a Lua setter wrote
        return value.decode("latin-1").rstrip("\0 ")
    if vr == "AT":
        tag = Tag(value)
        return f"{tag.group:04x},{tag.element:04x}"
    return str(value)


def walkElements(dataset):
    """Every ``(dataset, element)`` depth first: an element, then the
    elements of its sequence items, then the next element.  Walking also
    decodes every value (pydicom decodes lazily)."""
    for element in dataset:
        yield dataset, element
        if element.VR == "SQ":
            for item in element.value or ():
                yield from walkElements(item)


def applyAttributes(whole, attributes):
    """Make the elements of ``whole`` before its pixel data those of
    ``attributes`` (the same object read up to its pixels, then changed):
    the elements ``attributes`` lacks are deleted, those it holds otherwise
    set; the pixel data and what follows stay."""
    for tag in [tag for tag in whole.keys() if tag < FIRST_PIXEL_TAG and tag not in attributes]:
        del whole[tag]
    for element in attributes:
        if whole.get(element.tag) != element:
            whole[element.tag] = element


def findAnywhere(dataset, tag):
    """The first element ``tag`` of ``walkElements``, or None."""
    for _, element in walkElements(dataset):
        if element.tag == tag:
            return element
    return None


def parsePath(text, position=0):
    """``(steps, end)`` of a tag or a ``\\``-path (``/`` works as ``\\``,
    ``gggg,eeee.N`` picks item N, else the first) at ``position`` of
    ``text``, or None; a DICOM keyword may stand for any ``gggg,eeee``
    (``PatientID``), as in Conquest.  As Conquest's SearchDICOMObject, a
    path ends before a step naming no tag nor known keyword, which stays
    text: ``\\0010,1002\\0010,0020\\images`` is a path of two steps; and
    before a keyword after a step that is no sequence
    (``\\0010,1002\\0010,0020\\Date``: a folder named like a keyword stays a
    folder; a ``gggg,eeee`` there is a step, whose value is empty)."""
    if not text.startswith(_SEPARATORS, position):
        tag, end = _nameAt(text, position)
        return None if tag is None else ([(tag, None)], end)
    steps, end = [], position
    while (text.startswith(_SEPARATORS, end) and (step := _nameAt(text, end + 1))[0] is not None
           and (not steps or _holdsItems(steps[-1][0]) or _TAG.match(text, end + 1))):
        tag, end = step
        item = _ITEM.match(text, end)
        if item and text.startswith(_SEPARATORS, item.end()) and _nameAt(text, item.end() + 1)[0] is not None:
            steps.append((tag, int(item.group(1))))
            end = item.end()
        else:
            steps.append((tag, 0))
    if not steps:
        return None
    steps[-1] = (steps[-1][0], None)
    return steps, end


def _holdsItems(tag):
    """Whether element ``tag`` may be a sequence: one of the dictionary's, or
    one it does not know (a private element)."""
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return True


def _nameAt(text, position):
    """``(tag, end)`` of the tag or known keyword at ``position``, else ``(None, position)``."""
    match = _NAME.match(text, position)
    tag = match and tagOf(match.group())
    return (None, position) if tag is None else (tag, match.end())


def parseReference(text, position=0):
    """``(reference, end)`` of the element reference at ``position`` (what
    follows %V): ``*gggg,eeee``, the first such element anywhere, depth
    first, or a tag or ``\\``-path (``parsePath``); None when there is none.
    ``findReference`` looks the reference up."""
    if text.startswith("*", position):
        tag, end = _nameAt(text, position + 1)
        return None if tag is None else ((True, [(tag, None)]), end)
    parsed = parsePath(text, position)
    return None if parsed is None else ((False, parsed[0]), parsed[1])


def findReference(dataset, reference):
    """The element a ``parseReference`` reference names in ``dataset``, or None."""
    anywhere, steps = reference
    return findAnywhere(dataset, steps[-1][0]) if anywhere else findPath(dataset, steps)


def findPath(dataset, steps):
    """The element at ``steps`` (``[(sequenceTag, item), ..., (tag, None)]``),
    or None when a sequence, an item or the element is missing."""
    for tag, item in steps[:-1]:
        sequence = dataset.get(tag)
        if sequence is None or sequence.VR != "SQ" or not 0 <= item < len(sequence.value):
            return None
        dataset = sequence.value[item]
    return dataset.get(steps[-1][0])


def assign(dataset, tag, text, root=None, *, where):
    """Set element ``tag`` of ``dataset`` to ``text``; ``root`` is the top
    level data set (its Specific Character Set covers ``dataset``).
    ValueError for a sequence tag.  A text pydicom's validators find no
    value of the VR (CS 'ct', AS '12 years') is set as it is, as Conquest
    does, with a line naming ``where`` (the converter and command, or
    the change: modifypatid, anonymize) and the object, a warning once an
    hour for each ``where`` and tag, else a debug line (``FirstWarned``: a
    series of 1000 objects through one line is one warning): pydicom, which
    reads without validating (``pacscore.dicom.pydicomchecks``), checks no
    value written either."""
    vr = vrOf(tag, dataset)
    if vr == "SQ":
        raise ValueError(f"({tag >> 16:04x},{tag & 0xFFFF:04x}) is a sequence: it takes no text")
    if vr in TEXT_VRS and not text.isascii():
        ensureUnicode(dataset if root is None else root)
    value = valueFor(vr, text)
    element = dataset.get(tag)
    if element is not None and element.VR == vr:
        element.value = value
    else:
        dataset.add_new(tag, vr, value)
    for problem in invalidValues(dataset[tag]):
        invalidWarnings.report(log, (where, tag), "{where}: {uid}: {problem}, set as it is", _FURTHER_SET,
                               where=where, problem=problem, element=f"({tag >> 16:04x},{tag & 0xFFFF:04x})",
                               uid=(dataset if root is None else root).get("SOPInstanceUID",
                                                                           "an object without a SOP Instance UID"))


_NUMBERS = {"US": int, "UL": int, "SS": int, "SL": int, "UV": int, "SV": int, "FL": float, "FD": float,
            "DS": float, "IS": int}
_UNWRITTEN = ("OB", "OW", "OF", "OD", "OL", "OV", "UN")  # binary: no text goes in


def valueFor(vr, text):
    """The pydicom value of an element of ``vr`` holding ``text`` (None
    when empty); ValueError when ``text`` is no value of ``vr``."""
    if not text or vr in _UNWRITTEN:
        return None
    parts = text.split("\\")
    if vr == "AT":
        values = [parseTag(part.strip().strip("()")) for part in parts]
    elif vr in _NUMBERS:
        try:
            values = [_NUMBERS[vr](part.strip()) for part in parts if part.strip() or vr not in ("DS", "IS")]
            if not all(map(math.isfinite, values)):  # float() takes nan and inf, no DICOM number
                raise ValueError
            checkFits(vr, text if vr in ("DS", "IS") else (values if len(values) > 1 else values[0]))
        except (ValueError, OverflowError, struct.error):
            raise ValueError(f"{text!r} is no {vr} value") from None
        if vr in ("DS", "IS"):
            return text  # as written: pydicom keeps its text
    else:
        return text
    return values[0] if len(values) == 1 else values


def ensureUnicode(dataset):
    """Make ``dataset`` UTF-8 (ISO_IR 192) so any text fits, decoding every
    value first with the character set it was written in."""
    current = dataset.get(SPECIFIC_CHARACTER_SET)
    if current is not None and textOf(current) == UNICODE_CHARACTER_SET:
        return
    for _ in walkElements(dataset):
        pass
    dataset.add_new(SPECIFIC_CHARACTER_SET, "CS", UNICODE_CHARACTER_SET)
