"""DICOM JSON (PS3.18 annex F) answers: data sets as pydicom writes them,
attribute by attribute, with every stored attribute (one whose value
pydicom cannot read goes by its stored text, as numbers and person names
where it reads as such; a DS or IS value that is no number null, with a
log line), an empty value among others as null, a float
that is no number as the text "NaN", "Infinity" or "-Infinity" (strict
JSON has none), every answer readable by viewers served from elsewhere
when ``WebAllowOrigins`` lets them (``pacscore.web.sharing``).  Text
goes without the ISO 2022 escape sequences pydicom leaves in it (as the
index holds it, ``pacscore.storage.codeextensions``)."""

import base64
import json
import math
from functools import partial

from pydicom.multival import MultiValue
from twisted.logger import Logger

from pacscore.storage.codeextensions import withoutEscapes
from pacscore.web.dicomweb.rawvalues import rawValues

log = Logger()

DICOM_JSON = "application/dicom+json"
JSON_TYPES = (DICOM_JSON, "application/json")


def jsonDataset(dataset, bulkDataURI=None):
    """The DICOM JSON object of ``dataset``; binary values longer than 1 KB
    become ``bulkDataURI(element)``, or stay inline where it gives None
    (and everywhere without it)."""
    if bulkDataURI is None:
        return _jsonObject(dataset, None, 1 << 62)
    inline = {}

    def handler(element):
        uri = bulkDataURI(element)
        if uri is None:
            uri = f"\0inline {len(inline)}"
            inline[uri] = element
        return uri
    found = _jsonObject(dataset, handler, 1024)
    if inline:
        _inlined(found, inline)
    return found


def _jsonObject(dataset, handler, threshold):
    """The DICOM JSON object of ``dataset`` (and of its sequences' items),
    made attribute by attribute so that one value pydicom cannot read
    (a DS that is no number) costs only that value its conversion, never
    its neighbours or the sequence holding it.  Attributes go in tag order
    (PS3.18 F.2.2), whatever order they were added in."""
    found = {}
    for tag in sorted(dataset.keys()):
        value = _jsonAttribute(dataset, tag, handler, threshold)
        if value is not None:
            found[f"{tag:08X}"] = value
    return found


def _jsonAttribute(dataset, tag, handler, threshold):
    """The DICOM JSON of the attribute ``tag`` of ``dataset``: as pydicom
    writes it (its values read from the stored bytes where ``rawValues``
    can), else the stored text of its values; None (with a log line)
    for a sequence that cannot be read.  A sequence without items has no
    "Value" (PS3.18 F.2.5)."""
    plain = rawValues(dataset, tag)
    if plain is not None:
        vr, values = plain
        return {"vr": vr, "Value": [_jsonValue(value) for value in values]} if values else {"vr": vr}
    try:
        element = dataset[tag]
        if element.VR == "SQ":
            items = [_jsonObject(item, handler, threshold) for item in element.value]
            return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        if element.VR in _NUMBER_VRS:  # not plain (rawValues): pydicom would make 1.5 the IS 1, 1e400 the DS inf
            return _textAttribute(element)
        found = element.to_json_dict(handler, threshold)
        if "Value" in found:
            found["Value"] = [_jsonValue(value) for value in found["Value"]]
        return found
    except Exception as e:  # any of pydicom's conversions of a stored value
        stored = dataset.get_item(tag)
        if stored.VR == "SQ":
            log.warn("DICOM JSON: the sequence ({group:04X},{element:04X}) left out: {error}", group=tag >> 16,
                     element=tag & 0xFFFF, error=e)
            return None
        return _textAttribute(stored)


def _textAttribute(element):
    """The DICOM JSON of an attribute by the text of its values (as stored,
    or as far as pydicom read them): DS and IS values as numbers where they
    read as such, else null (PS3.18 F.2.3 has them JSON numbers), with a
    log line; person names by component group."""
    convert = _TEXT_VALUES.get(element.VR, str)
    texts = _storedText(element.value)
    values = [convert(text) if text else None for text in texts]
    if element.VR in _NUMBER_VRS and any(text and value is None for text, value in zip(texts, values)):
        log.info("DICOM JSON: ({group:04X},{element:04X}) {vr} {text!r} holds no number, answered empty there",
                 group=element.tag >> 16, element=element.tag & 0xFFFF, vr=element.VR, text="\\".join(texts))
    return {"vr": element.VR, "Value": values} if any(value is not None for value in values) else {"vr": element.VR}


def _jsonValue(value):
    """One value as pydicom wrote it, made strict JSON: an empty one null
    (PS3.18 F.2.5), text without escape sequences, a person name without
    its empty component groups, a float that is no number its name."""
    if value == "":
        return None
    if isinstance(value, str):
        return withoutEscapes(value)
    if isinstance(value, dict):  # a PN value's component groups
        return _personGroups(value.items())
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _storedText(value):
    """The values of an attribute as text: ``value`` as stored (bytes) or
    as far as pydicom read it."""
    if isinstance(value, bytes):
        values = value.decode("utf-8", "replace").split("\\")
    else:
        values = list(value) if isinstance(value, MultiValue) else [value]
    return [withoutEscapes(str(value)).strip(" \0") for value in values if value is not None]


def _number(text, kinds=(int, float)):
    """An IS value's text as its JSON number (a DS value's a float, as
    pydicom reads it, ``kinds``); None where it is none (a damaged value,
    or one that is no finite number)."""
    for kind in kinds:
        try:
            number = kind(text)
        except ValueError:
            continue
        return number if math.isfinite(number) else None
    return None


def _personName(text):
    """A PN value's text as its JSON object (PS3.18 F.2.2): its component
    groups by name, the empty ones left out."""
    return _personGroups(zip(("Alphabetic", "Ideographic", "Phonetic"), text.split("=")))


def _personGroups(groups):
    """A PN value's ``(name, group)`` pairs as its JSON object, the empty
    groups left out (PS3.18 F.2.2), without escape sequences; null when
    all are empty."""
    return {name: withoutEscapes(group) for name, group in groups if group} or None


_TEXT_VALUES = {"DS": partial(_number, kinds=(float,)), "IS": _number, "PN": _personName}
_NUMBER_VRS = ("DS", "IS")


def _inlined(value, inline):
    """Turn the ``BulkDataURI``s that are keys of ``inline`` back into
    ``InlineBinary`` values, anywhere in the JSON ``value``."""
    if isinstance(value, dict):
        element = inline.get(value.get("BulkDataURI"))
        if element is not None:
            del value["BulkDataURI"]
            value["InlineBinary"] = base64.b64encode(element.value).decode("ascii")
        for inner in value.values():
            _inlined(inner, inline)
    elif isinstance(value, list):
        for inner in value:
            _inlined(inner, inline)


def jsonBytes(value):
    """The JSON text of ``value`` (DICOM JSON objects), encoded; made in a
    worker thread for long answers."""
    return json.dumps(value, allow_nan=False).encode("utf-8")
