"""The image lists of a series that Conquest's viewer pages (its ImageJ
viewer) load, as text (``series=patid:uid``), the images in the
imagelister's order (``dgate --imagelister:``, by InstanceNumber):

- ``imagelisturls``: one URL a line, each image's ``dicom`` mode
  (``<WebScriptAddress>?<extra>&mode=dicom&slice=patid:sop&dsize=..&compress=..&dum=.dcm``,
  as the imagelister's ``:`` rows make them: the patient ID
  percent-encoded once), ``dsize`` and ``compress`` the request's (or
  ``[webdefaults]``'s) as the ``dicom`` mode reads them;
- ``imagelisthttp``: one line, the URLs of the files where a web server
  serves the MAG0 folder (dicom.ini's ``WebMAG0Address``, Conquest's
  default ``http://<host>/mag0``), ``/`` and each file's name on MAG0
  (percent-encoded), joined by ``*`` as the imagelister's ``@...*``
  rows; an image on another device, which that address does not serve,
  is left out with a log line.
"""

from urllib.parse import quote

from twisted.logger import Logger

from pacscore.control.context import CommandError
from pacscore.control.finders import ImageLister, LocalIndex
from pacscore.web.answers import Answer, WebError
from pacscore.web.html import queryValue
from pacscore.web.images import compressionCode
from pacscore.web.objects import entityReference
from pacscore.web.scripted import extraParameters, scriptAddress

TEXT = "text/plain; charset=utf-8"
MAG0 = "MAG0"

log = Logger()


async def _rows(archive, parameters, prefix):
    """The imagelister's rows of the ``series`` (``prefix``: ``:`` or ``@``); a 400 for a patient ID it refuses."""
    patientID, series = entityReference(parameters, "series")
    try:
        return await ImageLister().conquestRows(LocalIndex(archive), [patientID, series], prefix)
    except CommandError as e:
        raise WebError(400, str(e)) from e


def _text(lines):
    return Answer("".join(f"{line}\n" for line in lines).encode("utf-8"), TEXT)


async def imageListUrls(archive, parameters, request):
    code, size = compressionCode(parameters.get("compress")), parameters.number("dsize", 0)
    server = f"{scriptAddress(archive.configuration.ini, request)}?{extraParameters(archive)}"
    rows = await _rows(archive, parameters, ":")
    return _text(f"{server}&mode=dicom&slice={queryValue(patientID.raw)}:{sop}&dsize={size}&compress={code}&dum=.dcm"
                 for patientID, sop, *_ in rows)


async def imageListHttp(archive, parameters, request):
    host = request.getRequestHostname().decode("utf-8", "replace")
    address = archive.configuration.ini.get("WebMAG0Address", "").strip() or f"http://{host}/mag0"
    rows = await _rows(archive, parameters, "@")
    for device, name, *_ in rows:
        if device != MAG0:
            log.warn("web: imagelisthttp of {series}: {name} left out: it is on {device}, not on MAG0, which "
                     "WebMAG0Address serves", series=parameters.get("series"), name=name, device=device)
    joined = "*".join(f"{address}/{quote(name)}" for device, name, *_ in rows if device == MAG0)
    return _text([joined] if joined else [])  # no line for no image, as Conquest's


REQUEST_MODES = {
    "imagelisturls": imageListUrls,
    "imagelisthttp": imageListHttp,
}
