"""QIDO-RS (PS3.18 section 10.6): searches for studies, series and
instances in the index, answered in DICOM JSON (``application/dicom+json``)
or, when the Accept header asks for it, DICOM XML (``metadataform``).

A search is a C-FIND on the index (``IndexQuery.find``, in a reader
thread) with C-FIND's matching: ``{attribute}={value}`` (a keyword or
eight hex digits) matches as the same key would in a C-FIND, wildcards,
date ranges and UID lists (separated by ``,`` or ``\\``) included; a
repeated ``{attribute}`` matches any of its values (as ``\\`` does).
Each match carries the attributes the standard lists for its level (those
of the levels above too when the path does not name them; the counts
computed even without ``EnableComputedFields``, a C-FIND switch), those named by
``includefield`` (``all``: every attribute the index keeps), the
Retrieve AE Title and a RetrieveURL of the entity.  ``limit`` and
``offset`` (each at most 2**31 - 1) page the matches (a Warning header says when more are left);
dicom.ini's ``QIDOMaxResults`` (default 1000, 0: none) caps ``limit`` and
stands for a missing one, with the standard's Warning when it cut the
answer, so that a search for everything cannot make the server gather a
whole large archive into one answer; where no QueryResultConverter0 or
virtual server takes part the index itself is asked for just the page;
``emptyvaluematching=true`` makes a filter of two quotation marks
(``PatientID=""``) match the empty values only (Empty Value Matching,
PS3.4 C.2.2.2.7; without it ``""`` is matched as written);
``fuzzymatching=true`` is answered with a Warning that matching was
literal, ``multiplevaluematching=true`` with the standard's Warning that
pacs does not do it; any other query
parameter that names no attribute (a cache-buster ``_=123``) is ignored
with a Warning, and so is a filter of an attribute the index keeps at no
level.  A filter of a level below the one searched matches the entities
holding a match there (``/studies?Modality=CT``: the studies with a CT
series; ``/studies?SeriesInstanceUID=...``: the study of that series).
Attributes inside sequences (``a.b``) are refused (400).

As a C-FIND, a search goes through ``QueryConverter0`` and each match
through ``QueryResultConverter0`` (pacscore.web.converting).
"""

import re

from pydicom.datadict import dictionary_VR, tag_for_keyword

from pacscore.db.query import (
    SERIES_INSTANCE_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, UNSPLIT_VRS, QueryKey, levelIndex,
    withEmptyValueMatching)
from pacscore.dicom.identifiers import (
    INSTANCE_AVAILABILITY, QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET, BadIdentifier, MatchEncoder, Request, checkKeys,
    findIdentifier, tagName)
from pacscore.dicom.models import STUDY_ROOT_FIND
from pacscore.dicom.virtual import addComputed
from pacscore.web.answers import WebError, notText
from pacscore.web.dicomweb.dicomjson import jsonDataset
from pacscore.web.dicomweb.metadataform import metadataForm
from pacscore.web.converting import convertedKeys, resultFilter
from pacscore.web.logins import callingAE

RETRIEVE_URL = 0x00081190
UNIQUE_KEYWORDS = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
STUDY_FIELDS = ("StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
                "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries",
                "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber", "SeriesDate",
                 "SeriesTime", "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate",
                 "PerformedProcedureStepStartTime", "StudyInstanceUID")
INSTANCE_FIELDS = ("SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "InstanceNumber", "Rows",
                   "Columns", "BitsAllocated", "NumberOfFrames", "SeriesInstanceUID", "StudyInstanceUID")
LEVEL_FIELDS = {"STUDY": STUDY_FIELDS, "SERIES": SERIES_FIELDS, "IMAGE": INSTANCE_FIELDS}
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_DIGITS = re.compile(r"[0-9]{1,10}")  # int() of thousands of digits would fail
LARGEST_NUMBER = 2**31 - 1  # of limit and offset: their sum is a LIMIT every database takes
MORE = '299 pacs "There are additional results that can be requested"'
CAPPED = '299 pacs "The number of results exceeded the maximum supported by the server. Additional results can be requested."'
DEFAULT_MAX_RESULTS = 1000
LITERAL = '299 pacs "The fuzzymatching parameter is not supported. Only literal matching has been performed."'
NO_MULTIPLE_VALUE_MATCHING = ('299 pacs "The multiplevaluematching parameter is not supported. Multiple Value Matching '
                              'has not been performed."')
# The matching a search asks for with {parameter}=true that pacs does not do, and the Warning that says so.
_UNSUPPORTED_MATCHING = {"fuzzymatching": LITERAL, "multiplevaluematching": NO_MULTIPLE_VALUE_MATCHING}
EMPTY_VALUE_MATCHING = "emptyvaluematching"
_CONTROL = frozenset(("includefield", "limit", "offset", "accept", "charset", EMPTY_VALUE_MATCHING,
                      *_UNSUPPORTED_MATCHING))
_UNQUOTABLE = re.compile(r'[^ !#-\[\]-~]')  # what a Warning's quoted text cannot hold as it is


def hexTag(text):
    """The tag ``text`` names in eight hex digits (``00100010``), None when it is not that."""
    return int(text, 16) if _HEX_TAG.fullmatch(text) else None


def attributeTag(name):
    """``(tag, vr)`` of a QIDO attribute ID: a keyword or eight hex digits."""
    if "." in name:
        raise WebError(400, f"{name}: attributes inside sequences cannot be searched for here")
    tag = hexTag(name)
    if tag is None:
        tag = tag_for_keyword(name)
    if tag is None:
        raise WebError(400, f"{name!r} is neither a DICOM keyword nor a tag")
    try:
        return tag, dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        raise WebError(400, f"{name}: the data dictionary does not know this tag") from None


def _isFilterName(name):
    """Whether the query parameter ``name`` names an attribute to match
    (a keyword, eight hex digits, or a sequence path that ``attributeTag``
    refuses) rather than nothing pacs knows, which is ignored."""
    return "." in name or hexTag(name) is not None or tag_for_keyword(name) is not None


def _ignoredWarning(name):
    return f'299 pacs "The {_UNQUOTABLE.sub("?", name)} query parameter is not supported and has been ignored."'


def _filters(request):
    """``{name: values}`` of the query parameters of a request that name an attribute to match."""
    named = {name: _text(request, name.encode()) for name in _names(request)}
    return {name: values for name, values in named.items() if name.lower() not in _CONTROL and _isFilterName(name)}


def _parameterWarnings(query, level, request):
    """The Warnings of the matching a request asks for that pacs does not
    do, and of the query parameters it ignores (PS3.18 8.3.4): names of no
    attribute, and filters of attributes the index keeps at no level and
    does not match as computed at ``level`` (a count, or SOPClassesInStudy
    without computed fields)."""
    warnings = []
    for name, warning in _UNSUPPORTED_MATCHING.items():
        if _asks(request, name):
            warnings.append(warning)
    for name in _names(request):
        if name.lower() not in _CONTROL and not _isFilterName(name):
            warnings.append(_ignoredWarning(name))
    held = {tag for table in query.tables for tag in table.byTag} | query.matchedComputedAt(level)
    for name, values in _filters(request).items():
        if any(value.strip() for value in values) and attributeTag(name)[0] not in held:
            warnings.append(_ignoredWarning(name))
    return warnings


def _asks(request, matching):
    """Whether ``request`` asks for the ``matching`` (``{matching}=true``, the last one given)."""
    return (_text(request, matching.encode()) or ["false"])[-1].strip().lower() == "true"


def _names(request):
    """The names of the query parameters of a request (those that are not
    UTF-8 name no attribute: ignored, with a Warning)."""
    return [name.decode("utf-8", "replace") for name in request.args]


def _text(request, name):
    """The values of the query parameter ``name`` (bytes) of a request: a
    400 when one is not UTF-8 (PS3.18 8.3.4.1), as the web pages answer."""
    try:
        return [value.decode("utf-8") for value in request.args.get(name, [])]
    except UnicodeDecodeError:
        raise notText(name.decode("utf-8", "replace")) from None


def _number(request, name, default):
    """The ``limit`` or ``offset`` of a request: digits, at most LARGEST_NUMBER."""
    values = _text(request, name.encode())
    if not values or not values[0].strip():
        return default
    text = values[0].strip()
    if not _DIGITS.fullmatch(text) or int(text) > LARGEST_NUMBER:
        raise WebError(400, f"{name} must be a whole number from 0 to {LARGEST_NUMBER}, not {values[0]!r}")
    return int(text)


def _levelTags(level, target):
    """The tags answered at ``level`` by default: its own fields and those of
    the levels above that the path does not name."""
    names = list(LEVEL_FIELDS[level])
    if level == "IMAGE" and not target.series:
        names += SERIES_FIELDS
    if level != "STUDY" and not target.study:
        names += STUDY_FIELDS
    return [tag_for_keyword(name) for name in names]


def _allTags(archive, level):
    """Every attribute the index keeps at ``level`` and above, and those computed there."""
    tags = [tag for table in archive.query.tables[:levelIndex(level) + 1] for tag in table.byTag]
    return tags + sorted(archive.query.computedAt(level, counts=True))


def searchKeys(archive, request, level, target):
    """The C-FIND keys of a QIDO request: one per answered attribute, with
    the value it must match (``""``: any)."""
    keys = {}
    for tag in _levelTags(level, target):
        keys.setdefault(tag, "")
    for field in _text(request, b"includefield"):
        for name in filter(None, (part.strip() for part in field.split(","))):
            for tag in (_allTags(archive, level) if name == "all" else [attributeTag(name)[0]]):
                keys.setdefault(tag, "")
    names = {}  # the filters' tags: the names they were given
    for name, values in _filters(request).items():
        tag, vr = attributeTag(name)
        keys[tag], names[tag] = _filterValue(name, vr, values), name
    for tag, uid in ((STUDY_INSTANCE_UID, target.study), (SERIES_INSTANCE_UID, target.series)):
        if uid:
            keys[tag] = uid
    found = []
    for tag, value in keys.items():
        if tag in (SPECIFIC_CHARACTER_SET, QUERY_RETRIEVE_LEVEL):
            continue
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            vr = "UN"
        found.append(QueryKey(tag, vr, value))
    if _asks(request, EMPTY_VALUE_MATCHING):
        found = withEmptyValueMatching(found)
    try:
        checkKeys(found, nameOf=lambda tag: names.get(tag) or tagName(tag))
    except BadIdentifier as e:
        raise WebError(400, str(e)) from e
    return found


def _filterValue(name, vr, values):
    """The C-FIND value of the ``values`` of the filter ``name``: those of
    a repeated parameter (as dicomweb-client sends a list) joined with
    ``\\`` to match any of them, as the ``,`` of a UID list is; WebError
    400 for a repeated text (LT, ST, UT, UR), whose one value may hold a
    ``\\`` (a date or time C-FIND would not match by is refused with the
    other keys: ``checkKeys``)."""
    values = [value.strip() for value in values]
    if vr in UNSPLIT_VRS:
        if len(values) > 1:
            raise WebError(400, f"{name} matches one text: it cannot be repeated")
        return values[0]
    return "\\".join(value.replace(",", "\\") if vr == "UI" else value for value in values)


def retrieveURL(base, values, level):
    """The WADO-RS address of a matched entity."""
    url = f"{base}/studies/{values.get(STUDY_INSTANCE_UID, '')}"
    if level in ("SERIES", "IMAGE"):
        url += f"/series/{values.get(SERIES_INSTANCE_UID, '')}"
    if level == "IMAGE":
        url += f"/instances/{values.get(SOP_INSTANCE_UID, '')}"
    return url


def _unheld(query, level, keys):
    """The tags of ``keys`` the index keeps no value of (no dicom.sql column
    at ``level`` or above, nothing computed there): an answer leaves them out
    rather than saying the object has them empty."""
    held = {tag for table in query.tables[:levelIndex(level) + 1] for tag in table.byTag}
    return {key.tag for key in keys} - held - query.computedAt(level, counts=True) - {INSTANCE_AVAILABILITY}


def _localMatches(connection, query, level, keys, encoder, base, offset=0, limit=None):
    """In a reader thread: the count of all matches and the answers
    (Datasets) of those from ``offset`` (at most ``limit``, None: all)."""
    filtered = encoder.keep is not None
    unheld = _unheld(query, level, keys)
    if filtered or limit is None:
        rows, skipped = query.find(connection, level, keys, below=True, counts=True), 0
    else:  # every row is answered: the index skips to the page and gives it and one more (are more left?)
        rows, skipped = query.find(connection, level, keys, limit + 1, offset, below=True, counts=True), offset
    if not filtered:
        total, rows = skipped + len(rows), _page(rows, offset - skipped, limit)
    answers = []
    for values in rows:
        dataset = encoder.dataset(values)
        if dataset is None:  # left out by QueryResultConverter0
            continue
        del dataset[QUERY_RETRIEVE_LEVEL]
        del dataset[SPECIFIC_CHARACTER_SET]
        for tag in unheld:
            if tag in dataset and dataset[tag].is_empty:
                del dataset[tag]
        dataset.add_new(RETRIEVE_URL, "UR", retrieveURL(base, values, level))
        answers.append(dataset)
    if filtered:
        total, answers = len(answers), _page(answers, offset, limit)
    return total, answers


def _page(items, offset, limit):
    """The items from ``offset``, at most ``limit`` (None: all)."""
    return items[offset:] if limit is None else items[offset:offset + limit]


def _matches(connection, query, level, keys, encoder, base, offset, limit, form):
    """In a reader thread: the count of all matches and the answer (in the
    MetadataForm ``form``) of those from ``offset`` (at most ``limit``,
    None: all)."""
    total, answers = _localMatches(connection, query, level, keys, encoder, base, offset, limit)
    return total, form.whole(jsonDataset(dataset) for dataset in answers)


def _withRemote(local, remote, level, base, aeTitle, offset, limit, form, keep=None):
    """In a worker: the count and answer (in the MetadataForm ``form``) of our answers (with the
    computed keys of the virtual servers' answers of the same entity:
    ``addComputed``) then those of the virtual servers (Datasets) whose
    entity is new and that ``keep`` (QueryResultConverter0, as for ours)
    keeps, paged."""
    keyword = UNIQUE_KEYWORDS[level]
    ours = {}
    for answer in local:
        ours.setdefault(str(answer.get(keyword, "")), answer)
    seen = set(ours)
    merged = list(local)
    for dataset in remote:
        uid = str(dataset.get(keyword, "") or "")
        if uid in ours:
            addComputed(ours[uid], dataset)
        if not uid or uid in seen:
            continue
        seen.add(uid)
        for tag in (QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET):
            if tag in dataset:
                del dataset[tag]
        dataset.RetrieveAETitle = aeTitle
        if keep is not None and not keep(dataset):
            continue
        values = {tag: str(dataset.get(tag).value if tag in dataset else "")
                  for tag in (STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID)}
        dataset.add_new(RETRIEVE_URL, "UR", retrieveURL(base, values, level))
        merged.append(dataset)
    return len(merged), form.whole(jsonDataset(dataset) for dataset in _page(merged, offset, limit))


async def search(archive, request, target, base, level):
    """The QIDO-RS answer at ``level`` (STUDY, SERIES, IMAGE) within
    ``target``, in the media type the Accept header takes (``metadataForm``)."""
    form = metadataForm(request)
    converted = await convertedKeys(archive, callingAE(request), level, searchKeys(archive, request, level, target))
    if converted is None:
        return form.answer(form.whole([]))
    keys, mask = converted
    offset = _number(request, "offset", 0)
    limit = _number(request, "limit", None)
    maximum = archive.configuration.ini.getint("QIDOMaxResults", DEFAULT_MAX_RESULTS)
    capped = maximum > 0 and (limit is None or limit > maximum)
    if capped:
        limit = maximum
    keep = resultFilter(archive, callingAE(request))
    encoder = MatchEncoder(Request(level, keys, "ISO_IR 192"), archive.aeTitle, None, keep, numbersAsText=True)
    virtual = archive.virtualServers
    if virtual is None:
        total, answers = await archive.index.runQuery(_matches, archive.query, level, keys, encoder, base,
                                                      offset, limit, form)
    else:
        _, local = await archive.index.runQuery(_localMatches, archive.query, level, keys, encoder, base)
        remote = await virtual.find(STUDY_ROOT_FIND, findIdentifier(level, keys), mask)
        total, answers = await archive.workers.deferToWorker(_withRemote, local, remote, level, base,
                                                             archive.aeTitle, offset, limit, form, keep)
    warnings = []
    if limit is not None and offset + limit < total:
        warnings.append(CAPPED if capped else MORE)
    warnings += _parameterWarnings(archive.query, level, request)
    return form.answer(answers, (("Warning", ", ".join(warnings)),) if warnings else ())
