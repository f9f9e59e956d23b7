"""Conquest's C-FIND control elements for the order and a page of the
answers (``vrtosql.cpp``, 2022): (9999,0C00) names the column to sort by,
(9999,0C01) the most answers to give (SQL ``LIMIT``), (9999,0C02) how many
to skip before them (``OFFSET``), at PATIENT, STUDY, SERIES and IMAGE level.

``takePage`` takes them out of an identifier before its keys are read, as
Conquest takes them out of the query: they are no keys, never answered nor
said unsupported (0xFF01).  The sort column is a ``[Table.]Column
[ASC|DESC]`` of the level's table or one above, as in ``*QuerySortOrder``
(``IndexQuery.requestedSort``, which Conquest's 10-character names, cut as
its ``TruncateFieldNames`` cuts them, also find); its attribute is answered
(``withSortKey``).  The index database sorts and cuts the page; with
virtual servers, whose answers join ours after the query, ``pageOf`` sorts
the merged answers by that attribute and cuts the page of them.
"""

from typing import NamedTuple

from pydicom.multival import MultiValue

from pacscore.db.query import QueryKey
from pacscore.db.sqlfunctions import numberIn
from pacscore.dicom.datasets import decodeDataset
from pacscore.dicom.identifiers import IDENTIFIER_DOES_NOT_MATCH, BadIdentifier, answerVR, tagName

SORT, LIMIT, OFFSET = 0x99990C00, 0x99990C01, 0x99990C02
MOST = 2**63 - 1  # the largest count every database takes for LIMIT and OFFSET (a signed 64-bit integer)


class Page(NamedTuple):
    """What the control elements of a C-FIND ask for."""

    sort: str = ""            # (9999,0C00): "[Table.]Column [ASC|DESC]", "" for the level's order
    limit: int | None = None  # (9999,0C01): the most answers, None for all
    offset: int = 0           # (9999,0C02): the answers skipped before them


def controlText(element):
    """The text of a control element (of any VR, UN bytes too), without padding."""
    value = element.value.decode("ascii", "replace") if isinstance(element.value, bytes) else str(element.value)
    return value.strip(" \x00")


def takePage(identifier, read=True):
    """The ``Page`` the control elements of ``identifier`` (a Dataset) ask
    for, the elements removed from it; None without any (an empty one asks
    for nothing), or when not ``read`` (a retrieve's, which ignores them,
    as Conquest does, their values unread).  Raises ``BadIdentifier`` (A900) for a limit or offset
    that is no whole number; one above ``MOST`` is ``MOST`` (all answers,
    or none left after the offset)."""
    texts = {}
    for tag in (SORT, LIMIT, OFFSET):
        element = identifier.get(tag)
        if element is not None:
            del identifier[tag]
            texts[tag] = "" if element.value is None else controlText(element)
    if not texts or not read:
        return None
    return Page(texts.get(SORT, ""), _count(texts, LIMIT), _count(texts, OFFSET) or 0)


def _count(texts, tag):
    text = texts.get(tag, "")
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise BadIdentifier(f"{tagName(tag)} {text[:64]!r} is no number of answers", IDENTIFIER_DOES_NOT_MATCH)
    digits = text.lstrip("0")
    return MOST if len(digits) > len(str(MOST)) else min(int(digits or "0"), MOST)


def withSortKey(identifier, request, tag, columnVR):
    """``request`` with a universal key of the attribute ``tag`` sorted by,
    added (to ``identifier`` too, which the virtual servers get) when it
    has none, so that every answer holds the value its place is by;
    ``columnVR``: its dicom.sql column's, for a tag the dictionary does
    not know."""
    if any(key.tag == tag for key in request.keys):
        return request
    vr = answerVR(tag, columnVR)
    identifier.add_new(tag, vr, None)
    return request._replace(keys=[*request.keys, QueryKey(tag, vr, "")])


def pageOf(matches, page, sortBy, transferSyntax):
    """In a worker: of the encoded answers ``matches`` (ours, then those
    only virtual servers gave), those of ``page``: sorted by ``sortBy``
    (``IndexQuery.requestedSort``; None: left in their order), in the
    index's order (numbers by ``numberIn``, as ``numericValue`` in SQL, then
    by their text), stably (ours first among equal values, as the index
    sorted them), then cut."""
    matches = list(matches)
    if sortBy is not None:
        values = {id(match): _sortValue(decodeDataset(match, transferSyntax).get(sortBy.tag), sortBy.numeric)
                  for match in matches}
        matches.sort(key=lambda match: values[id(match)], reverse=sortBy.descending)
    end = None if page.limit is None else page.offset + page.limit
    return matches[page.offset:end]


def _sortValue(element, numeric):
    value = "" if element is None or element.value is None else element.value
    text = "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value)
    return (numberIn(text), text) if numeric else text
