"""C-FIND/C-MOVE/C-GET identifiers: what a request asks, and the matches we
answer with.

A request's identifier becomes its Query/Retrieve Level, the keys to match
(as Unicode text: decoded with the request's Specific Character Set) and
the list of attributes to return; a key with more values, or a longer
value, than SQL should be given refuses the request, and so does a C-FIND
date or time key that is no such value nor a range of them.  A match carries
exactly the requested attributes, in the data dictionary's VR (SS for a
negative value of a "US or SS" one; the request's only for tags the
dictionary does not know, a private key of implicit VR in the VR of its
dicom.sql column; a Private Creator in LO with the request's value,
as it names its block rather than asks for a match), plus the level's
unique key, the Query/Retrieve Level, the Retrieve AE Title and the
Specific Character Set its text is encoded in: the request's (code
extensions too) when that can hold every value, else ISO_IR 100 (Latin-1)
or, when even that cannot, ISO_IR 192 (UTF-8); none when the request has
none and the text is ASCII.  A stored value its VR cannot encode (a
SeriesNumber "abc") is answered empty, but in QIDO-RS a DS or IS value
as its text, which its DICOM JSON answers as the number it reads as (an
IS 1.5 as 1.5), else empty.
"""

import re
import struct
import warnings
from io import BytesIO
from typing import NamedTuple

from pydicom.charset import decode_bytes, default_encoding, encode_string, python_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_sequence
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.valuerep import PersonName
from twisted.logger import Logger

from pacscore.db.query import UNSPLIT_VRS, QueryKey, valuesOf, withEmptyValueMatching
from pacscore.dicom.datasets import decodePeerDataset, encodeDataset
from pacscore.dicom.charsetterms import codeExtensionTerms, convert_encodings, unknownTerms
from pacscore.dicom.datetimes import FORMATS, isMatchValue
from pacscore.dicom.pydicomchecks import invalidValues
from pacscore.storage.attributes import DatasetError, columnValueText
from pacscore.storage.codeextensions import withoutEscapes

log = Logger()

SPECIFIC_CHARACTER_SET = 0x00080005
QUERY_RETRIEVE_LEVEL = 0x00080052
RETRIEVE_AE_TITLE = 0x00080054
INSTANCE_AVAILABILITY = 0x00080056
TIMEZONE_OFFSET_FROM_UTC = 0x00080201

UNIQUE_KEYS = {"PATIENT": (0x00100020, "LO"), "STUDY": (0x0020000D, "UI"),
               "SERIES": (0x0020000E, "UI"), "IMAGE": (0x00080018, "UI")}

# Timezone Offset From UTC "may be present in the Identifier but is not
# matched" (PS3.4 C.2.2.2), and the index keeps none to return: no key.
_NOT_KEYS = (SPECIFIC_CHARACTER_SET, QUERY_RETRIEVE_LEVEL, RETRIEVE_AE_TITLE, TIMEZONE_OFFSET_FROM_UTC)
_INTEGER_VRS = ("US", "UL", "SS", "SL", "UV", "SV")
_FLOAT_VRS = ("FL", "FD")
_ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000) in little endian: a sequence's item begins
TEXT_VRS = ("PN", "LO", "SH", "LT", "ST", "UT", "UC")
_BINARY_VRS = ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "AT")
_NUMBER_STRING_VRS = ("IS", "DS")
_PACKED_VRS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}

# The most values a key may have (a UID list, any other key) and the
# longest value: beyond them SQL statements get too large to run.
MAX_UIDS = 10000
MAX_VALUES = 500
MAX_VALUE_LENGTH = 1024
MAX_TOTAL_VALUES = 20000
_PN_DELIMITERS = {0x5C, 0x3D, 0x5E}  # "\\", "=", "^": each component decoded on its own
_ESCAPE = re.compile(rb"\x1b([\x20-\x2f]+)[\x30-\x7e]")
_MULTI_BYTE_G0 = (b"$", b"$(")  # the intermediate bytes designating a multi-byte set to G0


class Request(NamedTuple):
    """What an identifier asks."""

    level: str
    keys: list            # QueryKey for every attribute (matching or universal)
    characterSet: str     # the request's (0008,0005), "" when absent
    page: object = None   # pacscore.dicom.paging.Page: Conquest's sort, limit and offset, None without


class BadIdentifier(ValueError):
    """The identifier cannot be used; ``status`` is the DIMSE status to
    answer, the message its Error Comment; ``detail`` for the log only."""

    def __init__(self, message, status, detail=""):
        super().__init__(message)
        self.status = status
        self.detail = detail


IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
MALFORMED_NAMED = 10  # malformed values an identifier's log line names (a list of thousands: the first)


def _text(value):
    if value is None:
        return ""
    if isinstance(value, (list, MultiValue)):
        return "\\".join(_text(v) for v in value)
    if isinstance(value, bytes):
        return ""
    return str(value)


def decodeIdentifier(data, transferSyntax):
    """The pydicom Dataset of an identifier's bytes (None: absent).

    Raises ``BadIdentifier``."""
    if data is None:
        raise BadIdentifier("the request has no identifier", UNABLE_TO_PROCESS)
    try:
        return decodePeerDataset(data, transferSyntax)
    except ValueError as e:
        raise BadIdentifier(str(e), UNABLE_TO_PROCESS) from e


def logMalformed(malformed, peer):
    """Log in one line naming ``peer`` (the peer's name) ``malformed``, the
    texts naming an identifier's values not valid in their VR and the terms
    of its Specific Character Set pydicom does not know
    (``malformedValues``), which are taken as they are; called once the
    request is accepted (a refusal names its own reason)."""
    if malformed:
        more = len(malformed) - MALFORMED_NAMED
        log.info("{peer}: identifier values taken as they are: {malformed}{more}", peer=peer,
                 malformed="; ".join(malformed[:MALFORMED_NAMED]), more=f" and {more} more" if more > 0 else "")


def malformedValues(dataset):
    """Texts naming the top-level text values of ``dataset`` that pydicom's
    validators find no value of their VR (``(0020,0013) '1-3' is not a valid
    IS value``: ``pydicomchecks.invalidValues``) and the terms of its
    Specific Character Set pydicom does not know, whose text it reads as
    Latin-1; not those pacs checks itself (DA, DT and TM keys:
    ``checkMatchValues``) nor those with a wildcard, which match as one."""
    found = [f"{tagName(SPECIFIC_CHARACTER_SET)} {term[:64]!r} is not a character set known here, its text read "
             "as Latin-1" for term in unknownTerms(characterSetOf(dataset))]
    for element in dataset:
        if element.VR in FORMATS or element.tag in (SPECIFIC_CHARACTER_SET, QUERY_RETRIEVE_LEVEL):
            continue
        found.extend(text for text in invalidValues(element) if "*" not in text and "?" not in text)
    return found


def characterSetOf(dataset):
    """The Specific Character Set (0008,0005) of a data set, "" when absent."""
    return _text(dataset.get("SpecificCharacterSet", ""))


def datasetKeys(dataset, columnVRs=None, transferSyntax=None):
    """A ``QueryKey`` for each attribute of one data set (not those of its
    sequence items: an SQ key has the value ``""`` and says whether its
    items hold values), without group lengths, the Specific Character Set,
    Query/Retrieve Level, Retrieve AE Title and Timezone Offset From UTC; text without the escape
    sequences pydicom leaves in it (``codeextensions``).  A value of
    unknown VR (UN: a private tag in implicit VR) of a tag ``columnVRs``
    maps to a VR (its dicom.sql column's) is read as that VR, as stored
    objects are, in the data set encoded in ``transferSyntax`` (empty where
    it is no such value); of another tag, as its bytes (Latin-1, a
    character each; no more than ``checkKeys`` allows, as it is never
    matched, only said not to be), so that one with a value has one, which
    the index cannot match (``FF01``), as in explicit VR; but one holding
    items (a private SQ of defined length) is an SQ key, as in explicit VR
    (``_isSequence``)."""
    keys = []
    for element in dataset:
        tag = int(element.tag)
        if tag in _NOT_KEYS or element.tag.group in (0x0000, 0x0002) or element.tag.element == 0:
            continue
        if element.VR == "UN" and columnVRs and tag in columnVRs:
            vr = columnVRs[tag]
            keys.append(QueryKey(tag, vr, columnValueText(vr, element.value or b"", characterSetOf(dataset),
                                                          transferSyntax).strip()))
        elif _isSequence(element):
            keys.append(QueryKey(tag, "SQ", "", itemValues=_itemsHoldValues(element)))
        elif element.VR == "UN":
            keys.append(QueryKey(tag, "UN", (element.value or b"")[:MAX_VALUE_LENGTH].decode("latin-1").strip()))
        else:
            keys.append(QueryKey(tag, element.VR, withoutEscapes(_text(element.value)).strip()))
    return keys


def _itemsHoldValues(sequence):
    """Whether any element of the items of a ``sequence`` element
    (``_isSequence``), at any depth, has a value; those of a UN are read as
    implicit VR little endian, as PS3.5 6.2.2 encodes a sequence of unknown
    VR, and hold one where they do not read."""
    try:
        items = sequence.value if sequence.VR == "SQ" else read_sequence(
            BytesIO(sequence.value), True, True, len(sequence.value), default_encoding)
    except OSError:
        return True
    return any(_itemsHoldValues(element) if _isSequence(element) else element.value not in (None, "", b"")
               for item in items or () for element in item)


def _isSequence(element):
    """Whether ``element`` is an SQ, or a UN holding items (its value
    starts with an item tag): a private SQ of defined length in implicit
    VR, which pydicom cannot tell from other bytes."""
    return element.VR == "SQ" or (element.VR == "UN" and (element.value or b"").startswith(_ITEM_TAG))


def tagName(tag):
    """``(gggg,eeee)``."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def checkKeys(keys, matching=True, nameOf=tagName):
    """Raise ``BadIdentifier`` for a key with more than ``MAX_UIDS`` (UI) or
    ``MAX_VALUES`` values, a value longer than ``MAX_VALUE_LENGTH``, or
    more than ``MAX_TOTAL_VALUES`` in all; for keys ``matching`` (a
    C-FIND's, not a retrieve's, whose other keys select nothing), a DA,
    TM or DT value C-FIND does not match by (``checkMatchValues``).  The
    message names a key ``nameOf(tag)``."""
    total = 0
    for key in keys:
        values = [key.value] if key.vr in UNSPLIT_VRS else key.value.split("\\")
        total += len(values)
        limit = MAX_UIDS if key.vr == "UI" else MAX_VALUES
        name = nameOf(key.tag)
        if len(values) > limit:
            raise BadIdentifier(f"{name} has {len(values)} values, at most {limit}", UNABLE_TO_PROCESS)
        longest = max(map(len, values))
        if longest > MAX_VALUE_LENGTH:
            raise BadIdentifier(f"{name} has a value of {longest} characters, at most {MAX_VALUE_LENGTH}",
                                UNABLE_TO_PROCESS)
    if total > MAX_TOTAL_VALUES:
        raise BadIdentifier(f"{total} values in all keys, at most {MAX_TOTAL_VALUES}", UNABLE_TO_PROCESS)
    if matching:
        checkMatchValues(keys, nameOf)


def checkMatchValues(keys, nameOf):
    """Raise ``BadIdentifier`` (A900, as wlmscpfs answers), naming the key
    ``nameOf(tag)``, for a DA, TM or DT key value that is neither one
    value nor a range of them (``isMatchValue``; PS3.4 C.2.2.2.5): a
    three-part range, ``2026-12-02``, a month 13, a time 2500.  An empty value, or a lone ``-`` (matched as
    any value, as dcmqrscp does), is not refused, nor a key asking for Empty Value Matching."""
    for key in keys:
        if key.vr not in FORMATS or key.emptyValueMatching:
            continue
        for value in key.value.split("\\"):
            value = value.strip()
            if value not in ("", "-") and not isMatchValue(value, key.vr):
                raise BadIdentifier(f"{nameOf(key.tag)} must be a {FORMATS[key.vr]} or a range of them, "
                                    f"not {value[:64]!r}", IDENTIFIER_DOES_NOT_MATCH)


def readRequest(dataset, transferSyntax, levels, columnVRs=None, matching=True):
    """The ``Request`` of an identifier (a Dataset, ``decodeIdentifier``
    of its bytes in ``transferSyntax``); ``levels`` are those its model
    allows; ``columnVRs``: see ``datasetKeys``; ``matching``: see
    ``checkKeys`` (a C-FIND's keys also ask for Empty Value Matching: a
    retrieve's ``""`` is the value itself).

    Raises ``BadIdentifier``."""
    level = str(dataset.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in levels:
        raise BadIdentifier(f"Query/Retrieve Level {level!r} is not one of {', '.join(levels)}",
                            IDENTIFIER_DOES_NOT_MATCH)
    try:
        keys = datasetKeys(dataset, columnVRs, transferSyntax)
    except DatasetError as e:
        raise BadIdentifier(str(e), UNABLE_TO_PROCESS) from e
    keys = withEmptyValueMatching(keys) if matching else keys
    checkKeys(keys, matching)
    return Request(level, keys, characterSetOf(dataset))


def _namedBy(request, levels):
    """``[(level, key)]``, top down: the unique keys of ``levels`` that
    ``request`` holds values of, universal ones (``*``) left out."""
    return [(level, key) for level in levels for key in request.keys
            if key.tag == UNIQUE_KEYS[level][0] and valuesOf(key)]


def _hasWildcard(key):
    return "*" in key.value or "?" in key.value


def patientAsStudy(identifier, request):
    """A Study Root retrieve at PATIENT level (``identifier``, a Dataset,
    and its ``request``), as Orthanc retrieves a patient, as the STUDY
    retrieve by Patient ID alone that selects the same objects
    (``retrieveKeys``), the whole patient as in Patient Root:
    ``identifier`` is set to STUDY level without the unique keys below
    PATIENT level (a Study Instance UID selects nothing at PATIENT level),
    and ``(request, ignored)`` returned, its ``request`` without them and
    the keywords of those that held values.  Raises BadIdentifier (A900)
    without a Patient ID to select by."""
    if not _namedBy(request, ("PATIENT",)):
        raise BadIdentifier("PATIENT retrieve in Study Root needs PatientID", IDENTIFIER_DOES_NOT_MATCH)
    below = {UNIQUE_KEYS[level][0] for level in ("STUDY", "SERIES", "IMAGE")}
    ignored = [keyword_for_tag(key.tag) for key in request.keys if key.tag in below and valuesOf(key)]
    for tag in below & set(identifier.keys()):
        del identifier[tag]
    identifier.QueryRetrieveLevel = "STUDY"
    return request._replace(level="STUDY", keys=[key for key in request.keys if key.tag not in below]), ignored


def retrieveKeys(request, modelLevels):
    """``(selecting, ignored)``: the keys of a retrieve ``request`` in a
    model of ``modelLevels`` that select what it moves, and the others,
    which select nothing (as Orthanc ignores them): a Patient's Name or
    Study Date along with a Study Instance UID does not narrow the study's
    objects.  The unique keys of its level and of those above it select
    (PS3.4 C.4.2.2.1), single values or UID lists; when none holds a value
    in a model without a PATIENT level, Patient ID does (as Conquest's
    clients move all of a patient's studies by Patient ID alone).  Above
    the lowest of them, a universal value (``*``) or a wildcard (the
    ``PAT*`` of the client's C-FIND) selects nothing.

    Raises BadIdentifier (A900) for a retrieve without such a key (absent,
    empty, universal, or a list of empty values such as a lone "\\",
    which the index query would match universally), which would send the
    whole archive, and for a wildcard in its lowest one, which would
    select by it; its message, the Error Comment, fits the 64 characters
    of LO (the model's unique keys, or the wildcard, in its detail)."""
    levels = modelLevels[:modelLevels.index(request.level) + 1]  # Study Root has none for PATIENT (C.6.2.1)
    named = _namedBy(request, levels)
    if not named and "PATIENT" not in levels:
        named = _namedBy(request, ("PATIENT",))
    if not named:
        keywords = [keyword_for_tag(UNIQUE_KEYS[level][0]) for level in levels]
        if len(keywords) == 1:
            raise BadIdentifier(f"{request.level} retrieve needs {keywords[0]}", IDENTIFIER_DOES_NOT_MATCH)
        raise BadIdentifier(f"{request.level} retrieve needs {keywords[-1]} or a unique key above",
                            IDENTIFIER_DOES_NOT_MATCH, ", ".join(keywords))
    _, lowest = named[-1]
    if _hasWildcard(lowest):
        raise BadIdentifier(f"a wildcard in {keyword_for_tag(lowest.tag)} of a retrieve", IDENTIFIER_DOES_NOT_MATCH,
                            lowest.value[:64])
    selecting = [key for _, key in named if not _hasWildcard(key)]
    return selecting, [key for key in request.keys if key not in selecting]


def _requestedTerms(requested):
    """The defined terms of a request's Specific Character Set we may answer
    with (a multi-byte set named alone gets the empty value 1 it needs), or
    None: an unknown term, or a term not of ISO 2022 among several."""
    terms = [term.strip() for term in requested.split("\\")]
    terms = codeExtensionTerms(terms[:1] + [term for term in terms[1:] if term])
    if not any(terms) or not all(term in python_encoding for term in terms if term):
        return None
    if len(terms) > 1 and not all(term.startswith("ISO 2022 ") for term in terms if term):
        return None
    return terms


def _readsStrictly(encoded, value1, delimiters):
    """Whether ISO 2022 text ``encoded`` reads as whole characters of
    invoked sets, with G0 back in the set of ``value1`` (its designating
    intermediate and final bytes, and whether it designates G1) at its end
    and before each control character or one of ``delimiters``, where G1
    returns to value 1's (PS3.5 6.1.2.5.3)."""
    (g0, g1), position = value1, 0
    while position < len(encoded):
        escape = _ESCAPE.match(encoded, position)
        byte = encoded[position]
        if escape is not None:
            if escape[1] in _MULTI_BYTE_G0 or escape[1] == b"(":
                g0 = escape[0][1:]
            else:
                g1 = True
            position = escape.end()
        elif g0[:-1] in _MULTI_BYTE_G0:
            character = encoded[position:position + 2]
            if len(character) < 2 or not all(0x21 <= half <= 0x7E for half in character):
                return False
            position += 2
        elif byte in delimiters or byte < 0x20:
            if g0 != value1[0]:
                return False
            g1 = value1[1]
            position += 1
        elif byte >= 0x80 and not g1:
            return False
        else:
            position += 1
    return g0 == value1[0]


def _fits(values, terms):
    """Whether pydicom writes ``values`` (none of them ASCII) in the
    character set of defined ``terms``, as a text value and as a person's
    name, and reads them back unchanged, as a strict reader would: Python's
    codec for a character set may hold more than pydicom's encoding of it
    (ISO_IR 13, ISO 2022 ones without the default repertoire), and pydicom
    writes Latin-1 for an empty value 1 and may leave a multi-byte set
    invoked at a delimiter (ISO 2022 IR 100 with ISO 2022 IR 87)."""
    if terms in ([""], ["ISO_IR 6"], ["ISO 2022 IR 6"]):
        return not values
    value1 = (b"(J" if terms[0] == "ISO 2022 IR 13" else b"(B", terms[0] not in ("", "ISO 2022 IR 6"))
    try:
        encodings = convert_encodings(terms)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's, about characters it replaced
            return all(decode_bytes(encoded, encodings, delimiters) == part and
                       _readsStrictly(encoded, value1, delimiters)
                       for value in values for part in value.split("\\")
                       for encoded, delimiters in ((encode_string(part, encodings), set()),
                                                   (PersonName(part).encode(encodings), _PN_DELIMITERS)))
    except (LookupError, UnicodeError, ValueError):
        return False


def responseCharacterSet(requested, values):
    """The Specific Character Set to answer with, for these text values, in
    its DICOM form (values joined by "\\"): the request's when its defined
    terms hold them (an unknown one, which pydicom would read as Latin-1, is
    not repeated); None, to leave it out, when the request has none and the
    values are ASCII (PS3.4 C.4.1.1.3.2)."""
    texts = [v for v in values if v and not v.isascii()]
    terms = _requestedTerms(requested) if requested else None
    if terms is not None and _fits(texts, terms):
        return "\\".join(terms)
    if not requested and not texts:
        return None
    return "ISO_IR 100" if _fits(texts, ["ISO_IR 100"]) else "ISO_IR 192"


def addCharacterSet(dataset, requested, values):
    """Give the answer ``dataset`` holding text ``values`` its
    ``responseCharacterSet`` to a request in ``requested``, if any."""
    characterSet = responseCharacterSet(requested, values)
    if characterSet is not None:
        dataset.add_new(SPECIFIC_CHARACTER_SET, "CS", characterSet)


def findIdentifier(level, keys):
    """The C-FIND identifier we send for a search at ``level`` with ``keys``
    (QueryKeys, Unicode text), with a Specific Character Set holding its
    values when any is not ASCII (PS3.4 C.4.1.1.3.1)."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for key in keys:
        identifier.add_new(key.tag, key.vr, key.value)
    return declaringCharacterSet(identifier)


def declaringCharacterSet(identifier):
    """``identifier`` (made of Unicode text, no sequences) with ISO_IR 100 or
    ISO_IR 192 as its Specific Character Set when a value is not ASCII."""
    texts = [_text(element.value) for element in identifier if element.VR not in _BINARY_VRS]
    if not all(text.isascii() for text in texts):
        identifier.SpecificCharacterSet = responseCharacterSet("", texts)
    return identifier


def elementValue(vr, text):
    """A pydicom value for ``text`` as stored in the index."""
    if not text or vr in _BINARY_VRS:
        return None
    if vr in _INTEGER_VRS:
        try:
            return [int(v) for v in text.split("\\")] if "\\" in text else int(text)
        except ValueError:
            return None
    if vr in _FLOAT_VRS:
        try:
            return float(text.split("\\")[0])
        except ValueError:
            return None
    return text


def answerVR(tag, requestVR):
    """The VR answering attribute ``tag``: the data dictionary's (the first
    of "US or SS"), ``requestVR`` for a tag it does not know."""
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return requestVR


def checkFits(vr, value):
    """Raise ValueError, OverflowError or struct.error when ``vr`` cannot
    encode ``value`` (an ``elementValue``)."""
    if value is None or vr in TEXT_VRS:
        return
    if vr in _PACKED_VRS:
        numbers = value if isinstance(value, list) else [value]
        struct.pack(f"<{len(numbers)}{_PACKED_VRS[vr]}", *numbers)
    elif not value.isascii():
        raise ValueError(f"{vr} holds ASCII text only")
    elif vr in _NUMBER_STRING_VRS:
        for part in value.split("\\"):
            if part.strip():
                float(part)


def _signedWhenNegative(tag, vr, text):
    """``vr``, or SS for a negative value of a "US or SS" attribute (signed
    pixels, PS3.5 Annex A)."""
    if vr != "US" or "-" not in text:
        return vr
    try:
        return "SS" if "SS" in dictionary_VR(tag).split(" or ") else vr
    except KeyError:
        return vr


def answerElement(tag, vr, text, numbersAsText=False):
    """The element answering with ``text`` (as stored in the index) in
    ``vr`` (SS for a negative value of a "US or SS" attribute); empty when
    ``vr`` cannot hold it, but a DS or IS value as its text when
    ``numbersAsText`` (DICOM JSON answers it as the number it reads as, as
    the metadata does: ``dicomjson._textAttribute``)."""
    vr = _signedWhenNegative(tag, vr, text)
    try:
        value = elementValue(vr, text)
        checkFits(vr, value)
        return DataElement(tag, vr, value)
    except (ValueError, TypeError, OverflowError, struct.error) as e:
        if numbersAsText and vr in _NUMBER_STRING_VRS:
            stored = text.encode("utf-8")
            return RawDataElement(Tag(tag), vr, len(stored), stored, 0, False, True)
        log.debug("Answering {tag} empty: {vr} cannot hold {text!r} ({error})",
                  tag=tagName(tag), text=text, vr=vr, error=e)
        return DataElement(tag, vr, None)


class MatchEncoder:
    """Builds the encoded response identifiers of one request."""

    def __init__(self, request, retrieveAE, transferSyntax, keep=None, numbersAsText=False):
        self.request = request
        self.retrieveAE = retrieveAE
        self.transferSyntax = transferSyntax
        self.keep = keep  # keep(dataset) -> bool: a result converter line (see pacscore.dicom.find)
        self.numbersAsText = numbersAsText  # see answerElement
        uniqueTag, uniqueVR = UNIQUE_KEYS[request.level]
        # A Private Creator names its block in the answers as in the request (PS3.5 7.8.1).
        self._creators = {key.tag: key.value for key in request.keys if Tag(key.tag).is_private_creator}
        self._returned = [(key.tag, "LO" if key.tag in self._creators else answerVR(key.tag, key.vr))
                          for key in request.keys]
        if uniqueTag not in {tag for tag, _ in self._returned}:
            self._returned.append((uniqueTag, uniqueVR))

    def encode(self, values):
        """The response identifier bytes for one match (``{tag: text}``), or
        None when ``keep`` leaves it out."""
        dataset = self.dataset(values)
        return None if dataset is None else encodeDataset(dataset, self.transferSyntax)

    def dataset(self, values):
        """The response identifier of one match as a Dataset, or None when
        ``keep`` leaves it out."""
        dataset = Dataset()
        texts = []
        for tag, vr in self._returned:
            if vr == "SQ":
                dataset.add_new(tag, vr, [])
                continue
            text = "ONLINE" if tag == INSTANCE_AVAILABILITY else self._creators.get(tag, values.get(tag, ""))
            if vr in TEXT_VRS:
                texts.append(text)
            dataset[tag] = answerElement(tag, vr, text, self.numbersAsText)
        addCharacterSet(dataset, self.request.characterSet, texts)
        dataset.add_new(QUERY_RETRIEVE_LEVEL, "CS", self.request.level)
        dataset.add_new(RETRIEVE_AE_TITLE, "AE", self.retrieveAE)
        if self.keep is not None and not self.keep(dataset):
            return None
        return dataset
