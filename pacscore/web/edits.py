"""The web pages that change the archive, only where dicom.ini says
``WebReadOnly = 0`` (Conquest's default, 1, leaves them out: their pages
answer 403 and the lists show no links to them):

- ``studydeleter`` / ``seriesdeleter`` (``study`` / ``series`` = patid:uid)
  ask to confirm; their button POSTs ``deletestudy`` / ``deleteseries``,
  which remove the files and index rows as ``dgate --deletestudy:`` does;
- ``addlocalfile``: each of a POSTed form's ``filetoupload`` files
  (multipart; copied from the request body to a temporary file, never
  whole in memory) is stored as ``dgate --addimagefile:`` stores a file
  (HL7 messages, a file ``--loadhl7:`` takes, are applied to the worklist
  as it applies them), in turn; the page names each file and what became
  of it, and a refusal names the uploaded file (its temporary copy in the
  log only).

Changes are only made for a POST: a link or a page prefetch cannot make them.
"""

import os
import shutil
import tempfile

from twisted.logger import Logger

from pacscore.control.context import CommandError
from pacscore.control.data import AddImageFile, LoadHL7
from pacscore.control.deletes import DeleteSeries, DeleteStudy
from pacscore.hl7.message import HL7_HEAD, isHL7
from pacscore.web.answers import WebError, checkPost, htmlAnswer
from pacscore.control.inprocess import runCommand
from pacscore.web.html import SCRIPT, Markup, join, text
from pacscore.web.logins import writerRefusal
from pacscore.web.objects import entityReference

COPY_CHUNK = 1 << 20
UNNAMED_UPLOAD = "the uploaded file"
log = Logger()
CHANGED_BY_POST = "changes are made with the page's button (POST)"


def changeRefusal(ini, user):
    """Why the pages may not change the archive for the WebUsers ``user``
    (None: no login) by dicom.ini's ``ini``, or None when they may."""
    if ini.getint("WebReadOnly", 1) != 0:
        return "the web interface is read-only (WebReadOnly = 1)"
    return writerRefusal(ini, user, "change the archive")


def writable(archive, parameters):
    """Whether the web pages may change the archive for the user of
    ``parameters``: WebReadOnly = 0 and, when WebWriters lists users, one of them."""
    return changeRefusal(archive.configuration.ini, parameters.user) is None


def checkWritable(archive, parameters):
    refusal = changeRefusal(archive.configuration.ini, parameters.user)
    if refusal is not None:
        raise WebError(403, refusal)


def _reference(parameters, name):
    return "%s:%s" % entityReference(parameters, name)


async def commandAnswer(archive, command, arguments, title, failure=422):
    """A page with what the control ``command`` answered to ``arguments``;
    its refusal is a WebError ``failure``."""
    try:
        result = await runCommand(archive, command, arguments)
    except CommandError as e:
        raise WebError(failure, str(e)) from e
    return _resultPage(title, result)


def _resultPage(title, result):
    """The page of an edit's ``result`` (what its command answered)."""
    return htmlAnswer(title, Markup("<p id=\"result\">"), result, Markup("</p>"))


def _confirmPage(archive, parameters, name, mode):
    checkWritable(archive, parameters)
    reference = _reference(parameters, name)
    form = Markup(f"<form action=\"{SCRIPT}?mode={mode}\" method=\"post\">"
                  f"<input type=\"hidden\" name=\"{name}\" value=\"{text(reference)}\">"
                  f"<input type=\"submit\" value=\"Delete {name} {text(reference)}\"></form>")
    return htmlAnswer(f"delete {name} {reference}?",
                      Markup("<p>Its files and index rows will be removed from this archive.</p>"), form)


async def studyDeleter(archive, parameters):
    return _confirmPage(archive, parameters, "study", "deletestudy")


async def seriesDeleter(archive, parameters):
    return _confirmPage(archive, parameters, "series", "deleteseries")


async def deleteStudy(archive, parameters, request):
    checkWritable(archive, parameters)
    checkPost(request, CHANGED_BY_POST)
    reference = _reference(parameters, "study")
    return await commandAnswer(archive, DeleteStudy(), reference, f"study {reference} deleted")


async def deleteSeries(archive, parameters, request):
    checkWritable(archive, parameters)
    checkPost(request, CHANGED_BY_POST)
    reference = _reference(parameters, "series")
    return await commandAnswer(archive, DeleteSeries(), reference, f"series {reference} deleted")


def _spooled(upload):
    """In the I/O pool: the uploaded file copied into a new temporary file;
    ``(path, whether it is an HL7 message)``."""
    descriptor, path = tempfile.mkstemp(prefix="pacs-upload-")
    with os.fdopen(descriptor, "wb") as f:
        upload.file.seek(0)
        shutil.copyfileobj(upload.file, f, COPY_CHUNK)
    upload.file.seek(0)
    return path, isHL7(upload.file.read(HL7_HEAD))


async def _uploaded(archive, upload):
    """Store or apply one uploaded file: ``(name, what the command
    answered or why it was refused, whether it was refused)``; the user's
    file is named by its name on the user's computer, not by the server's
    temporary copy (which the log line names too)."""
    name = upload.filename.strip() or UNNAMED_UPLOAD
    if not upload.size:
        return name, "an empty file, not stored", True
    path, hl7 = await archive.workers.deferToWorker(_spooled, upload)
    try:
        return name, await runCommand(archive, LoadHL7() if hl7 else AddImageFile(), path), False
    except CommandError as e:
        log.info("web: upload {name} (copied to {path}) refused: {message}", name=name, path=path, message=e)
        return name, str(e).replace(path, name), True
    finally:
        await archive.workers.deferToWorker(os.remove, path)


async def addLocalFile(archive, parameters, request):
    """Each ``filetoupload`` part stored or applied in turn; a page naming
    each, or, when one is refused, an error page naming each and why; one
    file answered as the other edits are (what its command answered)."""
    checkWritable(archive, parameters)
    checkPost(request, CHANGED_BY_POST)
    uploads = request.uploads.get(b"filetoupload", [])
    if not any(upload.size for upload in uploads):
        raise WebError(400, "no file was uploaded (a multipart form field filetoupload)")
    outcomes = [await _uploaded(archive, upload) for upload in uploads]
    refused = sum(wasRefused for _, _, wasRefused in outcomes)
    if len(outcomes) == 1:
        [(_, said, _)] = outcomes
        if refused:
            raise WebError(422, said)
        return _resultPage("uploaded file", said)
    # a refusal of the command names the file already (for the temporary copy)
    lines = [said if said.startswith(name) else f"{name}: {said}" for name, said, _ in outcomes]
    if refused:
        raise WebError(422, f"{refused} of {len(outcomes)} uploaded files not stored: " + "; ".join(lines))
    items = [join(Markup("<li>"), line, Markup("</li>")) for line in lines]
    return htmlAnswer("uploaded files", Markup("<ul id=\"result\">"), *items, Markup("</ul>"))


def uploadForm(archive, parameters):
    """The top page's upload form, when the pages may change the archive."""
    if not writable(archive, parameters):
        return ""
    return Markup(f"<form action=\"{SCRIPT}?mode=addlocalfile\" method=\"post\" enctype=\"multipart/form-data\">"
                  "<fieldset><legend>Upload a DICOM file or HL7 message</legend>"
                  "<input type=\"file\" name=\"filetoupload\"> <input type=\"submit\" value=\"Upload\">"
                  "</fieldset></form>")


MODES = {
    "studydeleter": studyDeleter,
    "seriesdeleter": seriesDeleter,
}
REQUEST_MODES = {
    "deletestudy": deleteStudy,
    "deleteseries": deleteSeries,
    "addlocalfile": addLocalFile,
}
