"""The modality worklist on the web (Conquest's CGI modes): ``queryworklist``
lists the items; with ``WebReadOnly = 0`` also ``editrecord`` (an item, by
``accession`` and its step IDs, the Requested Procedure ID and Scheduled
Procedure Step ID columns, which tell the steps of an order apart; or
Conquest's ``query=AccessionN = 'A1'``, the first item of A1) and
``addrecord`` (a new one) show a form whose button POSTs ``saverecord``,
and ``deleterecord`` (POST) removes an item (by Conquest's query, every
item of the accession number).

Saving changes that one item in place (``WorklistItems.save``: also its
accession number or step IDs, never another item), or inserts a new one;
``*AN`` and ``*UI`` columns (dicom.sql's HL7 sources) left empty are
generated, and keep their value when an item changes.  An item may not
take the accession number and step IDs of another (409).  Values that
are no valid DICOM are refused (400, naming the column): longer than
their column, a date that is no real YYYYMMDD or a time no real
HHMMSS.FFFFFF (``isDate``, ``isTime``, as HL7 orders are checked), a
Patient's Sex other than M, F or O, a backslash (DICOM's value
delimiter; not in DT_MSTR columns, which hold several values) or a
control character outside LT, ST and UT.
"""

import re

from sqlalchemy import select

from pacscore.db.worklistitems import OrderRefused
from pacscore.dicom.datetimes import isDate, isTime
from pacscore.hl7.mapping import PATIENT_SEX, SEXES, TEXT_VRS, columnVR
from pacscore.web.answers import WebError, checkPost, htmlAnswer
from pacscore.web.edits import CHANGED_BY_POST, checkWritable, writable
from pacscore.web.html import SCRIPT, Markup, join, link, table, text, url

_CONQUEST_QUERY = re.compile(r"^\s*(?:\w+\.)?AccessionN\w*\s*=\s*'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_BACKSLASH = re.compile(r"[\\\x00-\x1f\x7f]")
ORIGINAL = "original accession"


def _columns(archive):
    return [column for column in archive.configuration.layout.worklist if not column.isSequenceMarker]


def _accessionColumn(archive):
    name = archive.worklistItems.accessionColumn
    if name is None:
        raise WebError(501, "the WorkList table of dicom.sql has no AccessionNumber (0008,0050) column")
    return name


def _rows(connection, worklistTable, limit, condition=None):
    query = select(worklistTable)
    if condition is not None:
        query = query.where(condition)
    return [dict(row._mapping) for row in connection.execute(query.limit(limit)).all()]


def _stepNames(archive):
    """The columns of the step IDs that, with the accession number, tell an item from the others."""
    return list(archive.worklistItems.stepColumns.values())


async def queryWorklist(archive, parameters):
    names = [column.name for column in _columns(archive)]
    limit = parameters.number("max", 1000, low=1, high=100000)
    found = await archive.index.runQuery(_rows, archive.index.tables.worklist, limit)
    rows = [["" if row[name] is None else row[name] for name in names] for row in found]
    parts = []
    accession = archive.worklistItems.accessionColumn
    if writable(archive, parameters) and accession is not None:
        for row, item in zip(rows, found):
            steps = {name: item[name] for name in _stepNames(archive)}
            row.insert(0, link(url("editrecord", accession=item[accession] or "", **steps), "edit"))
        names.insert(0, "")
        parts.append(join(Markup("<p>"), link(url("addrecord"), "Add an item"), Markup("</p>")))
    return htmlAnswer("worklist", table(f"{len(rows)} worklist entries", names, rows), *parts)


def _item(archive, parameters):
    """The ``WorklistItems.itemOf`` a request names: ``accession`` and the
    step ID columns (empty when not given), or Conquest's
    ``query=AccessionN = '...'``, every item of that accession number."""
    accession = parameters.get("accession")
    if accession:
        return (accession, *(parameters.get(name) for name in _stepNames(archive)))
    match = _CONQUEST_QUERY.match(parameters.get("query"))
    if match is None:
        raise WebError(400, "which item? give accession=... (or Conquest's query=AccessionN = '...')")
    return (match.group(1).replace("''", "'"),)


def _hidden(fields):
    return "".join(f"<input type=\"hidden\" name=\"{text(name)}\" value=\"{text(value or '')}\">"
                   for name, value in fields.items())


def _form(archive, values, original):
    """The form of an item's ``values``, saved in place of the item ``original`` (an ``itemOf``; None: a new one)."""
    originals = dict(zip((ORIGINAL, *(f"original {name}" for name in _stepNames(archive))), original or ("",)))
    fields = "".join(
        f"<tr><th><label for=\"f{n}\">{text(column.name)}</label></th><td><input id=\"f{n}\" "
        f"name=\"{text(column.name)}\" value=\"{text(values.get(column.name) or '')}\" maxlength=\"{column.length}\" "
        f"size=\"{min(column.length, 64)}\"></td></tr>"
        for n, column in enumerate(_columns(archive)))
    return Markup(f"<form action=\"{SCRIPT}?mode=saverecord\" method=\"post\">{_hidden(originals)}"
                  f"<table>{fields}</table><input type=\"submit\" value=\"Save\"></form>")


async def editRecord(archive, parameters):
    checkWritable(archive, parameters)
    _accessionColumn(archive)
    items = archive.worklistItems
    item = _item(archive, parameters)
    found = await archive.index.runQuery(_rows, archive.index.tables.worklist, 1, items.itemCondition(item))
    if not found:
        raise WebError(404, f"no worklist item with accession number {item[0]}")
    item = items.itemOf(found[0])
    delete = Markup(f"<form action=\"{SCRIPT}?mode=deleterecord\" method=\"post\">"
                    + _hidden(dict(zip(("accession", *_stepNames(archive)), item)))
                    + "<input type=\"submit\" value=\"Delete this item\"></form>")
    return htmlAnswer(f"worklist item {item[0]}", _form(archive, found[0], item), delete)


async def addRecord(archive, parameters):
    checkWritable(archive, parameters)
    return htmlAnswer("new worklist item", _form(archive, {}, None))


def _values(archive, parameters):
    """The submitted item, checked; generated columns filled when empty."""
    values = {}
    for column in _columns(archive):
        value = parameters.get(column.name).strip()
        if len(value) > column.length:
            raise WebError(400, f"{column.name} holds at most {column.length} characters")
        refusal = _refusal(column, value) if value else None
        if refusal is not None:
            raise WebError(400, f"{column.name} {refusal}, not {value!r}")
        values[column.name] = value
    return values


def _refusal(column, value):
    """Why the non-empty ``value`` is no valid value of the column (PS3.5 6.2), or None."""
    if column.dicomType == "DT_DATE" and not isDate(value):
        return "is a date: YYYYMMDD, a real one"
    if column.dicomType == "DT_TIME" and not isTime(value):
        return "is a time: HHMMSS (or HH, HHMM, HHMMSS.FFFFFF), hours to 23, minutes to 59, seconds to 60"
    if column.tag == PATIENT_SEX and value not in SEXES.values():
        return "is M, F, O or empty"
    if columnVR(column) in TEXT_VRS:
        return None
    found = (_CONTROL if column.dicomType == "DT_MSTR" else _CONTROL_OR_BACKSLASH).search(value)
    return None if found is None else f"may not hold {found.group()!r}"


def _fillGenerated(mapping, values, accessionColumn, previous):
    """Fill the empty generated columns of ``values``: a new item's, and
    an empty accession number, with generated values; a changed item's
    others with those of the item ``previous`` (generated when it had
    none), which an item given a new accession number is stored anew with."""
    for name, value in values.items():
        if not value and (not previous or name == accessionColumn):
            values[name] = mapping.generated(name) or ""
        elif not value and name in mapping.generatedColumns:
            values[name] = previous.get(name) or mapping.generated(name)


async def saveRecord(archive, parameters, request):
    checkWritable(archive, parameters)
    checkPost(request, CHANGED_BY_POST)
    accessionColumn = _accessionColumn(archive)
    items = archive.worklistItems
    original = parameters.get(ORIGINAL).strip()
    if original:
        original = (original, *(parameters.get(f"original {name}").strip() for name in _stepNames(archive)))
    values = _values(archive, parameters)
    table = archive.index.tables.worklist
    previous = await archive.index.runQuery(_rows, table, 1, items.itemCondition(original)) if original else []
    _fillGenerated(archive.worklistMapping, values, accessionColumn, previous[0] if previous else {})
    accession = values[accessionColumn]
    if not accession:
        raise WebError(400, f"{accessionColumn} is needed")
    try:
        applied = await items.save(original or None, values)
    except OrderRefused as e:
        raise WebError(409, str(e)) from e
    return htmlAnswer(f"worklist item {accession}",
                      Markup("<p id=\"result\">"), f"worklist item {accession} {applied.action}", Markup("</p>"),
                      join(Markup("<p>"), link(url("queryworklist"), "Worklist"), Markup("</p>")))


async def deleteRecord(archive, parameters, request):
    checkWritable(archive, parameters)
    checkPost(request, CHANGED_BY_POST)
    _accessionColumn(archive)
    item = _item(archive, parameters)
    applied = await archive.worklistItems.remove(item)
    return htmlAnswer(f"worklist item {item[0]}",
                      Markup("<p id=\"result\">"), f"worklist item {item[0]} {applied.action}", Markup("</p>"),
                      join(Markup("<p>"), link(url("queryworklist"), "Worklist"), Markup("</p>")))


MODES = {
    "queryworklist": queryWorklist,
    "editrecord": editRecord,
    "addrecord": addRecord,
}
REQUEST_MODES = {
    "saverecord": saveRecord,
    "deleterecord": deleteRecord,
}
