"""The modality worklist on the web (Conquest's CGI modes): ``queryworklist``
lists the items by scheduled start date, time and accession number, those
Conquest's ``query`` text (``pacscore.web.querytext``, over the WorkList
columns) and its search fields select: ``patientidmatch`` and
``patientnamematch`` within the ID or name, ``startdatematch`` a date or
range as the lists' study date; the first ``max`` (``listcap``); with ``WebReadOnly = 0`` also ``editrecord`` (an item, by
``accession``, or Conquest's ``query=AccessionN = 'A1'``) and ``addrecord``
(a new one) show a form whose button POSTs ``saverecord``, and
``deleterecord`` (POST) removes an item.

Saving goes through ``WorklistItems.apply`` as HL7 orders do: a change is
an XO of the item (a changed accession number: the old item cancelled and
the new one inserted, in one transaction), a new item an NW; ``*AN`` and
``*UI`` columns (dicom.sql's HL7 sources) left empty are generated, and
keep their value when an item changes (also when its accession number
does: the new item takes them); a value typed there is stored.  Values that are no valid DICOM are
refused (400, naming the column): longer than their column, a date that
is no real YYYYMMDD or a time no real HHMMSS.FFFFFF (``isDate``,
``isTime``, as HL7 orders are checked), a Patient's Sex other than M, F
or O, a backslash (DICOM's value delimiter; not in DT_MSTR columns, which
hold several values) or a control character outside LT, ST and UT; a
value left as the item edited holds it is not checked (an item an earlier
version stored with a C1 control character is saved when that field was
not touched).
"""

import re

from sqlalchemy import select

from pacscore.db.query import QueryKey
from pacscore.db.worklistitems import OrderRefused
from pacscore.db.worklistquery import START_DATE
from pacscore.dicom.datetimes import isDate, isTime
from pacscore.hl7.mapping import PATIENT_SEX, SEXES, TEXT_VRS, OrderItem, columnVR
from pacscore.web.answers import WebError, checkPost, htmlAnswer
from pacscore.web.edits import CHANGED_BY_POST, checkWritable, writable
from pacscore.web.html import SCRIPT, Markup, join, link, table, text, url
from pacscore.web.listcap import askedRows, counted, cutNote, shownRows
from pacscore.web.querytext import ColumnNames, QueryTextError, dateMatch, parseQueryText, searchKeys

_CONQUEST_QUERY = re.compile(r"^\s*(?:\w+\.)?AccessionN\w*\s*=\s*'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
_CONTROL_OR_BACKSLASH = re.compile(r"[\\\x00-\x1f\x7f-\x9f]")
ORIGINAL = "original accession"


def _columns(archive):
    return [column for column in archive.configuration.layout.worklist if not column.isSequenceMarker]


def _accessionColumn(archive):
    name = archive.worklistItems.accessionColumn
    if name is None:
        raise WebError(501, "the WorkList table of dicom.sql has no AccessionNumber (0008,0050) column")
    return name


def _rows(connection, worklistTable, limit, accessionColumn=None, accession=None):
    query = select(worklistTable)
    if accessionColumn is not None:
        query = query.where(worklistTable.c[accessionColumn] == accession)
    return [dict(row._mapping) for row in connection.execute(query.limit(limit)).all()]


def _selection(archive, parameters):
    """The keys of the request's ``query`` text and search fields."""
    configuration = archive.configuration
    try:
        keys = parseQueryText(ColumnNames(configuration.layout, archive.index.tableNames, worklist=True),
                              parameters.get("query"))
        keys += searchKeys(parameters.get("patientidmatch"), parameters.get("patientnamematch"))
        if parameters.get("startdatematch").strip():
            keys.append(QueryKey(START_DATE, "DA", dateMatch(parameters.get("startdatematch"))))
    except QueryTextError as e:
        raise WebError(400, str(e)) from e
    return keys


def _selected(connection, worklistQuery, keys, limit):
    """The rows the ``keys`` select, by start date, time and accession number, the first ``limit``."""
    table = worklistQuery.table
    query = (select(table).where(*worklistQuery.conditions(connection, keys))
             .order_by(*worklistQuery.orderBy, *table.primary_key.columns).limit(limit))
    return [dict(row._mapping) for row in connection.execute(query).all()]


async def queryWorklist(archive, parameters):
    names = [column.name for column in _columns(archive)]
    found = await archive.index.runQuery(_selected, archive.worklistQuery, _selection(archive, parameters),
                                         askedRows(parameters))
    caption = f"{counted(found, parameters)} worklist entries{cutNote(found, parameters)}"
    found = shownRows(found, parameters)
    rows = [["" if row[name] is None else row[name] for name in names] for row in found]
    parts = []
    accession = archive.worklistItems.accessionColumn
    if writable(archive, parameters) and accession is not None:
        for row, item in zip(rows, found):
            row.insert(0, link(url("editrecord", accession=item[accession] or ""), "edit"))
        names.insert(0, "")
        parts.append(join(Markup("<p>"), link(url("addrecord"), "Add an item"), Markup("</p>")))
    return htmlAnswer("worklist", table(caption, names, rows), *parts)


def _accession(parameters):
    accession = parameters.get("accession")
    if not accession:
        match = _CONQUEST_QUERY.match(parameters.get("query"))
        if match is None:
            raise WebError(400, "which item? give accession=... (or Conquest's query=AccessionN = '...')")
        accession = match.group(1).replace("''", "'")
    return accession


def _form(archive, values, original):
    fields = "".join(
        f"<tr><th><label for=\"f{n}\">{text(column.name)}</label></th><td><input id=\"f{n}\" "
        f"name=\"{text(column.name)}\" value=\"{text(values.get(column.name) or '')}\" maxlength=\"{column.length}\" "
        f"size=\"{min(column.length, 64)}\"></td></tr>"
        for n, column in enumerate(_columns(archive)))
    return Markup(f"<form action=\"{SCRIPT}?mode=saverecord\" method=\"post\">"
                  f"<input type=\"hidden\" name=\"{ORIGINAL}\" value=\"{text(original)}\">"
                  f"<table>{fields}</table><input type=\"submit\" value=\"Save\"></form>")


async def editRecord(archive, parameters):
    checkWritable(archive, parameters)
    accession = _accession(parameters)
    column = _accessionColumn(archive)
    found = await archive.index.runQuery(_rows, archive.index.tables.worklist, 1, column, accession)
    if not found:
        raise WebError(404, f"no worklist item with accession number {accession}")
    delete = Markup(f"<form action=\"{SCRIPT}?mode=deleterecord\" method=\"post\">"
                    f"<input type=\"hidden\" name=\"accession\" value=\"{text(accession)}\">"
                    "<input type=\"submit\" value=\"Delete this item\"></form>")
    return htmlAnswer(f"worklist item {accession}", _form(archive, found[0], accession), delete)


async def addRecord(archive, parameters):
    checkWritable(archive, parameters)
    return htmlAnswer("new worklist item", _form(archive, {}, ""))


def _values(archive, parameters, stored):
    """The submitted item, checked but for the values as they are in the
    item edited (``stored``, its row; empty for a new item): one an earlier
    version stored (a C1 control character, an HL7 TS in a TM column) is
    saved as it is when its field was not changed, not refused."""
    values = {}
    for column in _columns(archive):
        value = parameters.get(column.name).strip()
        if len(value) > column.length:
            raise WebError(400, f"{column.name} holds at most {column.length} characters")
        untouched = value == str(stored.get(column.name) or "").strip()
        refusal = _refusal(column, value) if value and not untouched else None
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
    original = parameters.get(ORIGINAL).strip()
    table = archive.index.tables.worklist
    previous = await archive.index.runQuery(_rows, table, 1, accessionColumn, original) if original else [{}]
    if not previous:
        raise WebError(409, f"no worklist item with accession number {original} (deleted meanwhile?)")
    values = _values(archive, parameters, previous[0])
    _fillGenerated(archive.worklistMapping, values, accessionColumn, previous[0])
    accession = values[accessionColumn]
    if not accession:
        raise WebError(400, f"{accessionColumn} is needed")
    if accession != original and await archive.index.runQuery(_rows, table, 1, accessionColumn, accession):
        raise WebError(409, f"a worklist item with accession number {accession} exists already: "
                            f"edit that one, or give this one another accession number")
    if not original:
        orders = [OrderItem("NW", values)]
    elif original == accession:
        orders = [OrderItem("XO", values)]
    else:
        orders = [OrderItem("CA", {accessionColumn: original}), OrderItem("NW", values)]
    try:
        applied = await archive.worklistItems.apply(orders)
    except OrderRefused as e:
        raise WebError(409, str(e)) from e
    return htmlAnswer(f"worklist item {accession}",
                      Markup("<p id=\"result\">"), f"worklist item {accession} {applied[-1].action}", Markup("</p>"),
                      join(Markup("<p>"), link(url("queryworklist"), "Worklist"), Markup("</p>")))


async def deleteRecord(archive, parameters, request):
    checkWritable(archive, parameters)
    checkPost(request, CHANGED_BY_POST)
    accession = _accession(parameters)
    applied = await archive.worklistItems.apply([OrderItem("CA", {_accessionColumn(archive): accession})])
    return htmlAnswer(f"worklist item {accession}",
                      Markup("<p id=\"result\">"), f"worklist item {accession} {applied[0].action}", Markup("</p>"),
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
