"""The pages that show the archive (Conquest's CGI modes): ``top`` (status
and search forms), ``querypatients``, ``querystudies``, ``queryseries``,
``queryallimages`` and ``queryimages`` (the local index, each row linking to
the level below; a series also to the viewer mode ``[webdefaults] viewer``
names), ``showconfig``, ``showsops`` (dgatesop.lst) and ``showdb``
(dicom.sql), and Conquest's viewer modes (``VIEWERS``: ``seriesviewer``,
``serversideviewer`` ...), which all show ``series=patid:uid`` with the
slice viewer an image at a time.  They only read
(the pages that change the archive are ``pacscore.web.edits``).

A list selects with Conquest's ``query`` text and search fields
(``pacscore.web.querytext``); its links carry ``query`` texts as Conquest's
do, so bookmarks of Conquest's pages keep working.  As Conquest's pages,
which query the server over DICOM, a list goes through ``QueryConverter0``
and its rows through ``QueryResultConverter0`` (pacscore.web.converting;
``%u`` is the WebUsers login); it shows this archive's index only, not
the virtual servers.  The index is read in a reader thread; the matches
are sorted and the page made in the I/O pool (``max=`` may ask for
millions of rows).
"""

from pydicom.uid import UID
from sqlalchemy import func

from pacscore.config.secrets import isSecret
from pacscore.control import status
from pacscore.db.drivers import redacted
from pacscore.db.query import (
    PATIENT_ID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, QueryKey, numberKey)
from pacscore.web.answers import WebError, htmlAnswer
from pacscore.web.converting import convertedKeys, keptRows, resultFilter
from pacscore.web.listcap import askedRows, counted, cutNote, shownRows
from pacscore.web.logins import loginAE
from pacscore.web.documents import documentLink
from pacscore.web.edits import uploadForm, writable
from pacscore.control.finders import (
    BIRTH_DATE, INSTANCE_NUMBER, MODALITIES, MODALITY, PATIENT, PATIENT_NAME, SERIES, SERIES_DATE,
    SERIES_DESCRIPTION, SERIES_NUMBER, SEX, SOP, SOP_CLASS, STUDY, STUDY_DATE, STUDY_DESCRIPTION)
from pacscore.control.stored import LOCAL
from pacscore.web.html import SCRIPT, Markup, image, join, link, table, text, url
from pacscore.web.images import ROWS, hasPixels, sliceParts, viewerURL
from pacscore.web.objects import entityKeys
from pacscore.web.querytext import ColumnNames, QueryTextError, parseQueryText, quoted, searchKeys
from pacscore.web.remote import destinations, patientLabel, pushAllowed

SERIES_TIME = (0x00080031, "TM")
MOST_THUMBNAILS = 50  # as Conquest's queryimages
# Conquest's viewer modes ([webdefaults] viewer names one): here all pacs's slice viewer of a series
VIEWERS = ("seriesviewer", "seriesviewer2", "serversideviewer", "noviewer", "aiviewer")
DEFAULT_VIEWER = "serversideviewer"  # as the manual's dicom.ini


def _selection(archive, parameters):
    """The keys of the request's ``query`` text and search fields."""
    columns = ColumnNames(archive.configuration.layout, archive.index.tableNames)
    try:
        return parseQueryText(columns, parameters.get("query")) + searchKeys(
            parameters.get("patientidmatch"), parameters.get("patientnamematch"), parameters.get("studydatematch"))
    except QueryTextError as e:
        raise WebError(400, str(e)) from e


async def _find(archive, parameters, level, shown, fixed=(), limit=None, sortBy=None):
    """``[{tag: value}]`` of the entities at ``level`` the request (and
    the keys ``fixed``) selects, with the ``shown`` ((tag, vr), ...)
    values, after the query converters; the first ``limit`` (None: all)
    in the order ``sortBy`` (``IndexQuery.find``'s; None: the index's)."""
    keys = {tag: QueryKey(tag, vr, "") for tag, vr in shown}
    for key in (*_selection(archive, parameters), *fixed):
        keys[key.tag] = key
    caller = loginAE(parameters.user)
    converted = await convertedKeys(archive, caller, level, list(keys.values()))
    if converted is None:
        return []
    keys, _ = converted
    return await archive.index.runQuery(_kept, archive.query, level, keys, resultFilter(archive, caller), limit,
                                        sortBy)


def _kept(connection, query, level, keys, keep, limit, sortBy):
    return keptRows(query.find(connection, level, keys, limit, sortBy=sortBy), keys, keep)


def _caption(what, found, parameters):
    selection = parameters.get("query")
    where = f" where {selection}" if selection else ""
    return f"{counted(found, parameters)} {what}{where}{cutNote(found, parameters)}"


async def _page(archive, parameters, level, shown, make, fixed=(), limit=None, sortBy=None):
    """The page ``make(archive, parameters, found)`` makes (in the I/O pool)
    of the (first ``limit``, in the order ``sortBy``) matches at ``level``
    (of the keys ``fixed`` too) with the ``shown`` values."""
    found = await _find(archive, parameters, level, shown, fixed, limit, sortBy)
    return await archive.workers.deferToWorker(make, archive, parameters, found)


async def _listPage(archive, parameters, level, shown, make, sortBy=None):
    """A list page: ``_page`` of the first ``max`` rows (in the order
    ``sortBy``), and one more to tell that it was cut."""
    return await _page(archive, parameters, level, shown, make, limit=askedRows(parameters), sortBy=sortBy)


async def queryPatients(archive, parameters):
    return await _listPage(archive, parameters, "PATIENT", (PATIENT, PATIENT_NAME, SEX, BIRTH_DATE), _patientsPage)


def _patientsPage(archive, parameters, found):
    rows = [[link(url("querystudies", query=f"DICOMStudies.PatientID = {quoted(match[PATIENT_ID])}"),
                  patientLabel(match[PATIENT_ID])), match[PATIENT_NAME[0]], match[SEX[0]], match[BIRTH_DATE[0]]]
            for match in shownRows(found, parameters)]
    return htmlAnswer("patients", table(_caption("patients", found, parameters),
                                        ("Patient ID", "Name", "Sex", "Birth date"), rows))


async def queryStudies(archive, parameters):
    return await _listPage(archive, parameters, "STUDY", (PATIENT, PATIENT_NAME, STUDY_DATE, STUDY_DESCRIPTION,
                                                          MODALITIES, STUDY), _studiesPage)


def _studiesPage(archive, parameters, found):
    rows = []
    for match in shownRows(found, parameters):
        series = url("queryseries", query=f"DICOMStudies.PatientID = {quoted(match[PATIENT_ID])} and "
                                          f"DICOMSeries.StudyInstanceUID = {quoted(match[STUDY_INSTANCE_UID])}")
        study = f"{match[PATIENT_ID]}:{match[STUDY_INSTANCE_UID]}"
        rows.append([match[PATIENT_ID], match[PATIENT_NAME[0]], link(series, match[STUDY_DATE[0]] or "(no date)"),
                     match[STUDY_DESCRIPTION[0]], match[MODALITIES[0]],
                     _actions(archive, parameters, url("zipstudy", study=study), url("studymover", study=study),
                              url("studydeleter", study=study))])
    return htmlAnswer("studies", table(_caption("studies", found, parameters),
                                       ("Patient ID", "Name", "Study date", "Description", "Modalities", ""), rows))


def _actions(archive, parameters, zipURL, pushURL, deleteURL):
    """The zip download link, the push link unless WEBPush = 0 and the
    delete link when the user may change the archive (edits.writable)."""
    links = [link(zipURL, "zip")]
    if pushAllowed(archive):
        links.append(link(pushURL, "push"))
    if writable(archive, parameters):
        links.append(link(deleteURL, "delete"))
    return join(*(part for item in links for part in (" ", item)))


def _seriesQuery(match):
    return (f"DICOMStudies.PatientID = {quoted(match[PATIENT_ID])} and "
            f"DICOMSeries.SeriesInstanceUID = {quoted(match[SERIES_INSTANCE_UID])}")


async def querySeries(archive, parameters):
    return await _listPage(archive, parameters, "SERIES", (PATIENT, PATIENT_NAME, SERIES_NUMBER, SERIES_DATE,
                                                           SERIES_TIME, SERIES_DESCRIPTION, MODALITY, SERIES, STUDY),
                           _seriesPage)


def _seriesPage(archive, parameters, found):
    viewer = parameters.get("viewer").strip() or DEFAULT_VIEWER
    rows = []
    for match in shownRows(found, parameters):
        query = _seriesQuery(match)
        series = f"{match[PATIENT_ID]}:{match[SERIES_INSTANCE_UID]}"
        rows.append([match[PATIENT_ID], match[PATIENT_NAME[0]], match[SERIES_NUMBER[0]], match[SERIES_DATE[0]],
                     match[SERIES_TIME[0]], link(url("queryallimages", query=query),
                                                 match[SERIES_DESCRIPTION[0]] or "(no description)"),
                     match[MODALITY[0]], join(link(url("queryimages", query=query), "thumbs"), " ",
                                              link(url(viewer, series=series), "view")),
                     _actions(archive, parameters, url("zipseries", series=series),
                              url("seriesmover", series=series, studyuid=match[STUDY_INSTANCE_UID]),
                              url("seriesdeleter", series=series))])
    return htmlAnswer("series", table(_caption("series", found, parameters),
                                      ("Patient ID", "Name", "Number", "Date", "Time", "Description", "Modality",
                                       "Icons", ""), rows))


def _byInstanceNumber(match):
    """Sort key of an image by its number, read as the index and ``dgate
    --imagelister:`` read it (``+3`` a number, no number last)."""
    return numberKey(match[INSTANCE_NUMBER[0]])


IMAGE_VALUES = (PATIENT, INSTANCE_NUMBER, SOP, SOP_CLASS, SERIES, ROWS)


def _slice(match):
    return f"{match[PATIENT_ID]}:{match[SOP_INSTANCE_UID]}"


async def queryAllImages(archive, parameters):
    """The images by number, sorted so in the index before the list is cut
    (the first ``max`` by number, not any ``max`` of them)."""
    return await _listPage(archive, parameters, "IMAGE", IMAGE_VALUES, _imagesPage, _byNumberInIndex(archive.query))


def _byNumberInIndex(query):
    """``find``'s order of images by their number (as numbers, then as
    text), an image without one last as in the other pages (``_byInstanceNumber``)
    and ``dgate --imagelister:``, or None when dicom.sql has no column for it."""
    held = query.tables[3].byTag.get(INSTANCE_NUMBER[0])
    if held is None:
        return None
    order = query.requestedSort("IMAGE", held[0].name).order
    return [(order[0][0], func.coalesce(held[0], "") == "", False), *order]


def _imagesPage(archive, parameters, found):
    size, graphic = parameters.get("size"), parameters.get("graphic")
    rows = [[link(viewerURL(_slice(match), match, size=size, graphic=graphic),
                  match[INSTANCE_NUMBER[0]] or "(no number)"),
             match[SOP_INSTANCE_UID], match[SOP_CLASS[0]],
             _shows(match)] for match in shownRows(found, parameters)]
    return htmlAnswer("images", table(_caption("images", found, parameters),
                                      ("Image", "SOP Instance UID", "SOP Class UID", "Show"), rows))


def _shows(match):
    """The links of an image list's row to its header dump, its DICOM file and, for a PDF, the document."""
    links = [link(url("headerdump", slice=_slice(match)), "header"), link(url("dicom", slice=_slice(match)), "DICOM"),
             documentLink(_slice(match), match)]
    return join(*[part for item in links if item is not None for part in (" ", item)][1:])


def _evenly(items, most):
    """At most ``most`` of ``items``, spread evenly, first and last kept."""
    if len(items) <= most:
        return items
    return [items[round(n * (len(items) - 1) / (most - 1))] for n in range(most)]


async def queryImages(archive, parameters):
    return await _page(archive, parameters, "IMAGE", IMAGE_VALUES, _iconsPage)


def _iconsPage(archive, parameters, found):
    found = _evenly(sorted(found, key=_byInstanceNumber), MOST_THUMBNAILS)
    iconSize, graphic = parameters.get("iconsize", "48"), parameters.get("graphic")
    icons = [link(viewerURL(_slice(match), match, size=parameters.get("size"), graphic=graphic),
                  _icon(match, iconSize, graphic)) for match in found]
    return htmlAnswer("image icons", Markup(f"<p>{len(icons)} images</p>"), Markup("\n".join(icons)))


def _icon(match, size, graphic):
    """The icon of an image, or the name of the SOP class of an object without pixel data."""
    title = f"image {match[INSTANCE_NUMBER[0]]}"
    if hasPixels(match):
        return image(url("slice", slice=_slice(match), size=size, graphic=graphic), title, title=title)
    name = UID(match[SOP_CLASS[0]]).name or "no pixel data"
    return Markup(f"<span class=\"nopixels\" title=\"{text(title)}\">[{text(name)}]</span>")


async def seriesViewer(archive, parameters):
    """A viewer mode of Conquest (VIEWERS) for ``series=patid:uid``: the
    slice viewer of its image ``n`` (from 1, by image number; the first
    when not given), with links to the first, previous, next and last; of
    a series none of whose objects has pixels, the list of its objects."""
    keys = entityKeys(parameters, "series", SERIES_INSTANCE_UID)
    return await _page(archive, parameters, "IMAGE", IMAGE_VALUES, _viewerPage, keys)


def _viewerPage(archive, parameters, found):
    found = sorted(found, key=_byInstanceNumber)
    images = [match for match in found if hasPixels(match)]
    if found and not images:  # reports, documents ...: their list, leading to their header dumps and documents
        return _imagesPage(archive, parameters, found)
    series = parameters.get("series").strip()
    if not images:
        raise WebError(404, f"no stored images of series {series}")
    n = parameters.number("n", 1, low=1, high=len(images))
    mode = parameters.get("mode").strip().lower()
    same = {"series": series, "size": parameters.get("size"), "graphic": parameters.get("graphic"),
            "lw": parameters.get("lw")}
    steps = [link(url(mode, **same, n=step), label) for step, label in ((1, "first"), (n - 1, "previous"),
                                                                        (n + 1, "next"), (len(images), "last"))
             if 1 <= step <= len(images) and step != n]
    return htmlAnswer(f"series {series}", join(Markup("<p id=\"position\">"), f"image {n} of {len(images)}",
                                               *(part for step in steps for part in (" ", step)), Markup("</p>")),
                      *sliceParts(_slice(images[n - 1]), parameters, mode, series=series, n=n))


def _shownValue(key, value):
    if isSecret(key):
        return "********" if value else ""
    return redacted(value)


async def showConfig(archive, parameters):
    ini = archive.configuration.ini
    parts = [table(f"[{section}] of {archive.configuration.iniPath}", ("Key", "Value"),
                   [[key, _shownValue(key, value)] for key, value in ini.items(section)])
             for section in ini.sectionNames()]
    return htmlAnswer("configuration", *parts)


async def showSops(archive, parameters):
    sopList = archive.configuration.sopList
    rows = [[entry.name, entry.uid, entry.kind, entry.extra or "", "yes" if entry.enabled else "no"]
            for entry in sopList.entries]
    return htmlAnswer("SOP classes and transfer syntaxes",
                      table(f"{len(rows)} entries of {sopList.path}", ("Name", "UID", "Kind", "Extra", "Enabled"), rows))


async def showDb(archive, parameters):
    configuration = archive.configuration
    parts = [table(f"{archive.index.tableNames[level]} ({level})", ("Group", "Element", "Column", "Length", "SQL type",
                                                                   "DICOM type", "HL7"),
                   [[f"0x{c.group:04x}", f"0x{c.element:04x}", c.name, c.length, c.sqlType, c.dicomType, c.hl7 or ""]
                    for c in columns])
             for level, columns in configuration.layout.levels() + [("worklist", configuration.layout.worklist)]]
    return htmlAnswer(f"database layout of {configuration.layout.path}", *parts)


def _form(mode, legend, *fields):
    inputs = "".join(f"<label>{label} <input name=\"{name}\" size=16></label> " for name, label in fields)
    return Markup(f"<form action=\"{SCRIPT}\" method=\"get\"><fieldset><legend>{legend}</legend>"
                  f"<input type=\"hidden\" name=\"mode\" value=\"{mode}\">{inputs}"
                  f"<input type=\"submit\" value=\"Find\"></fieldset></form>")


def _finderForm(archive):
    """Find patients, studies or series on a server of acrnema.map (or here)."""
    options = "".join(f"<option>{text(server)}</option>" for server in [LOCAL] + destinations(archive))
    return Markup(f"<form action=\"{SCRIPT}\" method=\"get\"><fieldset><legend>Find on a server</legend>"
                  "<select name=\"mode\"><option value=\"patientfinder\">patients</option>"
                  "<option value=\"studyfinder\">studies</option>"
                  "<option value=\"seriesfinder\">series</option></select> "
                  f"<label>on <select name=\"dest\">{options}</select></label> "
                  "<label>whose ID, name or description holds <input name=\"query\" size=16></label> "
                  "<input type=\"submit\" value=\"Find\"></fieldset></form>")


async def top(archive, parameters):
    report = status.asText(await status.gather(archive, archive.reactor))
    who = (("patientidmatch", "Patient ID"), ("patientnamematch", "Name"))
    return htmlAnswer(
        archive.aeTitle,
        Markup("<pre id=\"status\">"), report, Markup("</pre>"),
        _form("querypatients", "Local patients", *who),
        _form("querystudies", "Local studies", *who, ("studydatematch", "Study date")),
        _form("queryseries", "Local series", *who, ("studydatematch", "Study date")),
        _finderForm(archive),
        _form("queryworklist", "Local worklist", *who, ("startdatematch", "Date")),
        uploadForm(archive, parameters),
        join(Markup("<p>"), link(url("queryworklist"), "Worklist"), " | ",
             link(url("querympps"), "Performed procedure steps"), " | ", link(url("showconfig"), "Configuration"),
             " | ", link(url("showsops"), "SOP classes"), " | ", link(url("showdb"), "Database layout"),
             Markup("</p>")))


MODES = {
    "top": top,
    "querypatients": queryPatients,
    "querystudies": queryStudies,
    "queryseries": querySeries,
    "queryallimages": queryAllImages,
    "queryimages": queryImages,
    "showconfig": showConfig,
    "showsops": showSops,
    "showdb": showDb,
    **{mode: seriesViewer for mode in VIEWERS},
}
