"""Other archives on the web (Conquest's CGI modes): the finders and the
push pages.

``patientfinder``, ``studyfinder``, ``seriesfinder`` and ``imagefinder``
list what a server holds: ``dest`` is an AE of acrnema.map (asked with
C-FINDs, as ``dgate --patientfinder:`` does) or ``(local)``; ``query`` a
text found within patient IDs, names (and study or series descriptions),
or a study or series date, as the control port's finders take it;
``patientid`` a patient (``emptyid=1`` the patient of the empty ID).  The seriesfinder lists the series of ``study``
(patid:uid) when it is given, else those its ``query`` finds; the
imagefinder (as ``dgate --imagelister:``; Conquest has no image finder)
only lists the images of ``series`` (patid:uid), or of Conquest's
``query==uid``.  Each row leads to the
level below, and studies and series to their push page.

``studymover`` / ``seriesmover`` (``study`` / ``series`` = patid:uid,
``source``) list the AEs of acrnema.map to send to; ``movestudy`` /
``moveseries`` (POST only, from those pages' buttons) send it with the
control port's ``movestudy`` / ``moveseries``: from this archive as
C-STOREs, from another one by asking it for a C-MOVE.  ``WEBPush = 0``
turns the push pages off (403) and their links with them.
"""

from pacscore.control import moves
from pacscore.control.context import CommandError
from pacscore.control.finders import (
    BIRTH_DATE, INSTANCE_NUMBER, MODALITIES, MODALITY, PATIENT, PATIENT_NAME, PATIENT_SEARCHED, SERIES, SERIES_DATE,
    SERIES_DESCRIPTION, SERIES_NUMBER, SERIES_SEARCHED, SEX, SOP, SOP_CLASS, STUDY, STUDY_DATE, STUDY_DESCRIPTION,
    STUDY_SEARCHED, BadSearch, findContaining, imageOrder, openSource)
from pacscore.control.stored import LOCAL, isLocal
from pacscore.db.query import (
    EMPTY_VALUE, PATIENT_ID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, QueryKey)
from pacscore.web.answers import WebError, checkPost, htmlAnswer
from pacscore.web.html import SCRIPT, Markup, link, table, text, url
from pacscore.web.edits import commandAnswer
from pacscore.web.images import ROWS, viewerURL
from pacscore.web.listcap import askedRows, counted, cutNote, shownRows
from pacscore.web.objects import entityReference, uid

PATIENT_COLUMNS = (PATIENT, PATIENT_NAME, BIRTH_DATE, SEX)
STUDY_COLUMNS = (PATIENT, PATIENT_NAME, STUDY_DATE, MODALITIES, STUDY_DESCRIPTION, STUDY)
SERIES_COLUMNS = (PATIENT, PATIENT_NAME, SERIES_NUMBER, MODALITY, SERIES_DESCRIPTION, SERIES_DATE, STUDY, SERIES)
IMAGE_COLUMNS = (PATIENT, INSTANCE_NUMBER, SOP, SOP_CLASS, SERIES, ROWS)


def _server(archive, parameters):
    """The server a page asks: ``(local)`` or an AE of acrnema.map."""
    dest = parameters.get("dest").strip() or LOCAL
    if isLocal(archive, dest):
        return LOCAL
    if archive.configuration.acrNemaMap.lookup(dest) is None:
        raise WebError(400, f"{dest!r} is not in acrnema.map")
    return dest


async def _found(archive, server, level, columns, searched=(), text="", fixed=(), most=None, exact=None):
    """The matches of ``findContaining`` on ``server``: a 400 for a text
    that cannot be searched, a 502 when the server cannot be asked."""
    try:
        source = await openSource(archive, server)
    except CommandError as e:
        raise WebError(502, str(e)) from e
    try:
        return await findContaining(source, level, columns, searched, text, fixed, most, exact)
    except BadSearch as e:
        raise WebError(400, str(e)) from e
    except CommandError as e:
        raise WebError(502, str(e)) from e
    finally:
        await source.close()


def patientLabel(patientID):
    """A patient ID as a link shows it: one that is empty as ``(no ID)``."""
    return patientID or "(no ID)"


def pushAllowed(archive):
    return archive.configuration.ini.getint("WEBPush", 1) != 0


def _caption(what, count, server):
    return f"{count} {what} on {server}"


def _cutCaption(what, found, parameters, server):
    """The caption of a finder's list, cut to its first ``max`` rows (``listcap``)."""
    return _caption(what, counted(found, parameters), server) + cutNote(found, parameters)


async def patientFinder(archive, parameters):
    server = _server(archive, parameters)
    found = await _found(archive, server, "PATIENT", PATIENT_COLUMNS, PATIENT_SEARCHED,
                         parameters.get("query").strip(), most=askedRows(parameters))
    return await archive.workers.deferToWorker(_patientsPage, server, parameters, found)


def _patientsPage(server, parameters, found):
    rows = [[link(_studiesOf(server, match[PATIENT_ID]), patientLabel(match[PATIENT_ID])),
             match[PATIENT_NAME[0]], match[BIRTH_DATE[0]], match[SEX[0]]] for match in shownRows(found, parameters)]
    return htmlAnswer(f"patients on {server}", table(_cutCaption("patients", found, parameters, server),
                                                     ("Patient ID", "Name", "Birth date", "Sex"), rows))


def _studiesOf(server, patientID):
    """The studyfinder of a patient on ``server``; of the empty ID,
    ``emptyid=1`` (an ID of two quotation marks is ``patientid=""``)."""
    if not patientID:
        return url("studyfinder", dest=server, emptyid=1)
    return url("studyfinder", dest=server, patientid=patientID)


async def studyFinder(archive, parameters):
    server = _server(archive, parameters)
    patientID = parameters.get("patientid", None)  # given empty, or emptyid=1: the empty ID
    fixed, exact = [], {}
    if (patientID is not None and not patientID.strip()) or parameters.get("emptyid").strip() == "1":
        fixed = [QueryKey(PATIENT_ID, "LO", EMPTY_VALUE, emptyValueMatching=True)]  # Empty Value Matching
    elif patientID is not None:
        exact = {PATIENT_ID: patientID}  # as written: "WILD*1" is a Patient ID, not WILD1's
    found = await _found(archive, server, "STUDY", STUDY_COLUMNS, STUDY_SEARCHED, parameters.get("query").strip(),
                         fixed, askedRows(parameters), exact)
    return await archive.workers.deferToWorker(_studiesPage, server, parameters, found, pushAllowed(archive))


def _studiesPage(server, parameters, found, push):
    rows = []
    for match in shownRows(found, parameters):
        study = f"{match[PATIENT_ID]}:{match[STUDY_INSTANCE_UID]}"
        row = [match[PATIENT_ID], match[PATIENT_NAME[0]],
               link(url("seriesfinder", dest=server, study=study), match[STUDY_DATE[0]] or "(no date)"),
               match[MODALITIES[0]], match[STUDY_DESCRIPTION[0]]]
        rows.append(row + ([link(url("studymover", source=server, study=study), "push")] if push else []))
    headers = ("Patient ID", "Name", "Study date", "Modalities", "Description") + (("Push",) if push else ())
    return htmlAnswer(f"studies on {server}", table(_cutCaption("studies", found, parameters, server), headers, rows))


async def seriesFinder(archive, parameters):
    server = _server(archive, parameters)
    searching = not parameters.get("study").strip()
    if searching:
        patientID, study = "", ""
        found = await _found(archive, server, "SERIES", SERIES_COLUMNS, SERIES_SEARCHED,
                             parameters.get("query").strip(), most=askedRows(parameters))
    else:
        patientID, study = entityReference(parameters, "study")
        found = await _found(archive, server, "SERIES", SERIES_COLUMNS,
                             fixed=[QueryKey(STUDY_INSTANCE_UID, "UI", study)], most=askedRows(parameters))
    return await archive.workers.deferToWorker(_seriesPage, server, parameters, found, pushAllowed(archive),
                                               patientID, study)


def _seriesPage(server, parameters, found, push, patientID, study):
    """The series found (of ``study`` of ``patientID``, when given)."""
    searching = not study
    rows = []
    for match in shownRows(found, parameters):
        series = f"{match[PATIENT_ID] or patientID}:{match[SERIES_INSTANCE_UID]}"
        row = ([match[PATIENT_ID], match[PATIENT_NAME[0]]] if searching else []) + [
            match[SERIES_NUMBER[0]], match[MODALITY[0]],
            link(url("imagefinder", dest=server, series=series), match[SERIES_DESCRIPTION[0]] or "(no description)"),
            match[SERIES_DATE[0]]]
        mover = url("seriesmover", source=server, series=series, studyuid=match[STUDY_INSTANCE_UID] or study)
        rows.append(row + ([link(mover, "push")] if push else []))
    headers = ((("Patient ID", "Name") if searching else ()) + ("Number", "Modality", "Description", "Date")
               + (("Push",) if push else ()))
    title = f"series on {server}" if searching else f"series of study {study} on {server}"
    return htmlAnswer(title, table(_cutCaption("series", found, parameters, server), headers, rows))


async def imageFinder(archive, parameters):
    server = _server(archive, parameters)
    query = parameters.get("query").strip()
    if parameters.get("series").strip():
        patientID, series = entityReference(parameters, "series")
    elif query.startswith("="):  # Conquest's seriesfinder links query==SeriesInstanceUID
        patientID, series = "", uid(query[1:], "the series UID")
    else:
        raise WebError(400, "imagefinder lists the images of a series: give series=patid:uid (or query==uid)")
    found = await _found(archive, server, "IMAGE", IMAGE_COLUMNS, fixed=[QueryKey(SERIES_INSTANCE_UID, "UI", series)])
    rows = []
    for match in sorted(found, key=imageOrder):  # as dgate --imagelister: lists them
        number = match[INSTANCE_NUMBER[0]] or "(no number)"
        shown = (link(viewerURL(f"{match[PATIENT_ID] or patientID}:{match[SOP_INSTANCE_UID]}", match), number)
                 if server == LOCAL else number)
        rows.append([shown, match[SOP_INSTANCE_UID], match[SOP_CLASS[0]]])
    return htmlAnswer(f"images of series {series} on {server}",
                      table(_caption("images", len(rows), server), ("Image", "SOP Instance UID", "SOP Class UID"), rows))


def destinations(archive):
    """The AEs of acrnema.map one can send to (no wildcard entries)."""
    return [node.ae for node in archive.configuration.acrNemaMap.nodes
            if not any(c in node.ae for c in "*?") and node.ae != archive.aeTitle]


def pushTargets(archive, source):
    """The AEs the push page of an object on ``source`` offers, as
    Conquest's: every one it knows but the source, this archive first (a
    move from another archive into it), then ``destinations`` (a local
    source: this archive is the source); AEs compared case-insensitively,
    as acrnema.map looks them up and ``isLocal`` and the move take them
    (``source`` as the finder's link carries it)."""
    node = archive.configuration.acrNemaMap.lookup(source)
    named = (node.ae if node is not None else source).strip().lower()
    own = [] if isLocal(archive, source) else [archive.aeTitle]
    return own + [ae for ae in destinations(archive) if ae.lower() != named]


def _checkPush(archive):
    if not pushAllowed(archive):
        raise WebError(403, "pushing is turned off (WEBPush = 0)")


def _moverPage(archive, parameters, what, mode, hidden):
    _checkPush(archive)
    source = parameters.get("source").strip() or LOCAL
    fields = "".join(f"<input type=\"hidden\" name=\"{name}\" value=\"{text(value)}\">"
                     for name, value in (*hidden, ("source", source)))
    buttons = [Markup(f"<form action=\"{SCRIPT}?mode={mode}\" method=\"post\">{fields}"
                      f"<input type=\"hidden\" name=\"dest\" value=\"{text(ae)}\">"
                      f"<input type=\"submit\" value=\"Send to {text(ae)}\"></form>")
               for ae in pushTargets(archive, source)]
    return htmlAnswer(f"push {what} from {source}", Markup("\n".join(buttons)) if buttons else "acrnema.map lists no AE")


async def studyMover(archive, parameters):
    patientID, study = entityReference(parameters, "study")
    return _moverPage(archive, parameters, f"study {study}", "movestudy", (("study", f"{patientID}:{study}"),))


async def seriesMover(archive, parameters):
    patientID, series = entityReference(parameters, "series")
    study = parameters.get("studyuid").strip()
    hidden = (("series", f"{patientID}:{series}"),) + ((("studyuid", uid(study, "the study UID")),) if study else ())
    return _moverPage(archive, parameters, f"series {series}", "moveseries", hidden)


def _endpoints(archive, parameters, request):
    """``(source, destination)`` of a move request, checked."""
    _checkPush(archive)
    checkPost(request, "a move is asked with the push page's button (POST)")
    source = parameters.get("source").strip() or LOCAL
    destination = parameters.get("dest").strip()
    for ae in (source, destination):
        if "," in ae:
            raise WebError(400, f"{ae!r} is not an AE title")
    if not destination:
        raise WebError(400, "no destination (dest) given")
    return source, destination


async def moveStudy(archive, parameters, request):
    source, destination = _endpoints(archive, parameters, request)
    _, study = entityReference(parameters, "study")
    return await commandAnswer(archive, moves.MoveStudy(), f"{source},{destination},:{study}",
                               f"study {study} from {source} to {destination}", failure=502)


async def moveSeries(archive, parameters, request):
    source, destination = _endpoints(archive, parameters, request)
    _, series = entityReference(parameters, "series")
    study = parameters.get("studyuid").strip()
    study = uid(study, "the study UID") if study else ""
    return await commandAnswer(archive, moves.MoveSeries(), f"{source},{destination},:{series},{study}",
                               f"series {series} from {source} to {destination}", failure=502)


MODES = {
    "patientfinder": patientFinder,
    "studyfinder": studyFinder,
    "seriesfinder": seriesFinder,
    "imagefinder": imageFinder,
    "studymover": studyMover,
    "seriesmover": seriesMover,
}
REQUEST_MODES = {
    "movestudy": moveStudy,
    "moveseries": moveSeries,
}
