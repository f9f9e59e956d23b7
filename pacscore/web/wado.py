"""WADO-URI (PS3.18 section 6.2), as Conquest's dgate answers it:
``requestType=WADO&studyUID=..&seriesUID=..&objectUID=..`` with

- ``contentType``: a list in order of preference (``;q=`` weighs them as
  in an Accept header, q=0 refuses a type, ``multipart.acceptedRanges``),
  the first that fits the object answered (PS3.18 8.1.5), a 406 when none
  does: ``image/jpeg``, ``image/gif``, ``image/png``, ``image/bmp``,
  ``image/*`` and ``*/*`` (a JPEG, else the first of PNG, GIF and BMP
  that a q=0 does not refuse) for objects with pixels (``*/*`` else
  ``application/dicom``), ``application/dicom``, ``text/html`` or
  ``text/plain`` (a header dump) for any, the type of the document an
  object encapsulates (``application/pdf``, ``text/xml`` ...: the
  document itself, ``pacscore.web.documents``); without one a JPEG of an
  image, else ``application/dicom``;
- ``rows`` / ``columns``: the largest size wanted (shrunk by a whole factor,
  as Conquest does), ``region`` (x-min,y-min,x-max,y-max, fractions of the
  image, 0 to 1), ``windowCenter`` / ``windowWidth``, ``frameNumber`` (from
  1), ``imageQuality`` (1-100, of a JPEG) for pictures;
- ``transferSyntax`` for ``application/dicom`` (default Explicit VR Little
  Endian, as the standard says; any syntax a compression code writes, and
  the object's own stored syntax, RLE say, sent as stored).

Requests PS3.18 makes invalid are refused (400): ``requestType`` other
than ``WADO`` (also at ``/wado``), ``windowCenter`` without
``windowWidth`` or the other way round, a ``windowWidth`` below 1, the
picture parameters with ``application/dicom``, and ``imageQuality`` with it
unless the ``transferSyntax`` is lossy (then it is that quality).

``anonymize=yes`` (with ``application/dicom`` only, as the standard says)
answers the object de-identified by the Basic Application Level
Confidentiality Profile (``pacscore.control.deidentification``): new UIDs
and a patient pseudonym, the same for every object of a study; a large
object asked for in an uncompressed syntax is de-identified and converted
file to file (``pacscore.web.objectstream``), as a plain one.  Viewers served from elsewhere may
read the answers when ``WebAllowOrigins`` lets them (``pacscore.web.sharing``).
"""

import io

from pacscore.codecs.syntaxes import CODE_SYNTAXES, EXPLICIT_VR_LITTLE_ENDIAN, isLossy
from pacscore.control.data import headerLines
from pacscore.control.deidentification import basicProfile
from pacscore.control.pictures import dicomFile
from pacscore.storage.part10 import readFileMeta
from pacscore.web.answers import Answer, StreamAnswer, WebError, htmlAnswer
from pacscore.web.contents import contents
from pacscore.web.dicomweb.multipart import Accepted, acceptedRanges
from pacscore.web.documents import TYPES as DOCUMENTS, documentAnswer, documentOf, mediaType
from pacscore.web.html import Markup
from pacscore.web.images import picture
from pacscore.web.objects import onFile, storedPath, uid
from pacscore.web.objectstream import intactFile, objectStream

PICTURE_TYPES = {"image/jpeg": "jpg", "image/jpg": "jpg", "image/gif": "gif", "image/png": "png",
                 "image/bmp": "bmp", "image/*": "jpg"}
DICOM = "application/dicom"
OTHER_TYPES = (DICOM, "text/html", "text/plain")  # of any object
ANY = "*/*"  # a picture of an object with pixels, else DICOM
WILDCARDS = (ANY, "image/*")  # a picture: the first of PICTURE_ORDER not refused (q=0)
PICTURE_ORDER = ("image/jpeg", "image/png", "image/gif", "image/bmp")
DEFAULT = "image/jpeg, application/dicom"  # without contentType: as ANY
SYNTAX_CODES = {syntaxes[0]: code for code, syntaxes in reversed(CODE_SYNTAXES.items())}
WHOLE = 0  # size: not shrunk
PICTURE_PARAMETERS = ("rows", "columns", "region", "windowCenter", "windowWidth", "frameNumber")  # not for DICOM


def _contentTypes(text):
    """The content types of the list that pacs answers, best first (by
    ``q`` as in an Accept header, then in its order) as ``Accepted``
    media ranges, those it gives q=0 its ``refused`` (``image/jpg`` read
    as the ``image/jpeg`` it names, a type refused so not taken by another
    of its ranges); a 406 when it names none (or refuses each)."""
    accepted = acceptedRanges([text or DEFAULT], "contentType")
    refused = [_jpeg(media) for media in accepted.refused]
    known = [media for media in map(_jpeg, accepted) if media not in refused and (
             media.name in PICTURE_TYPES or media.name in OTHER_TYPES or media.name in DOCUMENTS or media.name == ANY)]
    if not known:
        raise WebError(406, f"cannot answer contentType {text!r}: pacs answers "
                            f"{', '.join(sorted({*PICTURE_TYPES, *OTHER_TYPES, *DOCUMENTS, ANY}))}"
                            f"{' (q=0 is not acceptable)' if refused else ''}")
    return Accepted(known, refused)


def _jpeg(media):
    """The media range ``media``, ``image/jpeg`` when it is the ``image/jpg`` clients write for it."""
    return media._replace(name="image/jpeg") if media.name == "image/jpg" else media


def _picture(wanted, media):
    """The picture type the range ``media`` of the ``wanted`` content
    types takes: the one it names, else (``image/*``, ``*/*``) the first
    of PICTURE_ORDER that no narrower q=0 range refuses; None when each is."""
    if media.name not in WILDCARDS:
        return media.name
    return next((kind for kind in PICTURE_ORDER if not wanted.refuses(kind, taken=media)), None)


async def _contentType(archive, path, wanted, text):
    """The first of the ``wanted`` content types (``_contentTypes``) that
    fits the stored object ``path`` (a picture only of one with pixels, a
    document type only of the document it encapsulates; what it holds read
    only when that decides it); a 406 when none does."""
    held = None
    for media in wanted:
        kind = media.name
        if kind in OTHER_TYPES:
            return kind
        if held is None:
            held = await onFile(archive, path, contents)
        if kind in DOCUMENTS:
            if mediaType(held.document)[0] == kind:
                return kind
        elif held.pixels and (shown := _picture(wanted, media)) is not None:
            return shown
        if kind == ANY and not wanted.refuses(DICOM, taken=media):
            return DICOM
    holding = ("pixels" if held.pixels else "no pixels") + (f" and a {held.document} document" if held.document else "")
    raise WebError(406, f"cannot answer contentType {text!r}: the object holds {holding}")


def _region(parameters):
    """``region`` as four fractions, None when not given."""
    text = parameters.get("region").strip()
    if not text:
        return None
    try:
        region = tuple(float(part) for part in text.split(","))
    except ValueError:
        region = ()
    if len(region) != 4 or not all(0 <= v <= 1 for v in region) or region[0] >= region[2] or region[1] >= region[3]:
        raise WebError(400, f"region must be x-min,y-min,x-max,y-max from 0 to 1, not {text!r}")
    return region


def _number(parameters, name, default):
    text = parameters.get(name).strip()
    if not text:
        return default
    try:
        return round(float(text))
    except (ValueError, OverflowError):
        raise WebError(400, f"{name} must be a number, not {text!r}") from None


def _window(parameters):
    """``(windowCenter, windowWidth)``, ``(0, 0)`` when not given (the
    object's own): PS3.18 asks for both or neither, PS3.3 C.11.2.1.2 for a
    width of at least 1."""
    center, width = _number(parameters, "windowCenter", None), _number(parameters, "windowWidth", None)
    if (center is None) != (width is None):
        raise WebError(400, "windowCenter and windowWidth go together: one without the other is no window")
    if width is None:
        return 0, 0
    if width < 1:
        raise WebError(400, f"windowWidth must be at least 1, not {parameters.get('windowWidth').strip()!r}")
    return center, width


def _dicomQuality(archive, parameters, syntax):
    """The JPEG quality of an object asked for in ``syntax``: ``imageQuality``,
    which PS3.18 allows with application/dicom only for a lossy syntax."""
    if parameters.get("imageQuality").strip() and not isLossy(syntax):
        raise WebError(400, f"imageQuality is only for pictures or a lossy transferSyntax, not {syntax}")
    return parameters.number("imageQuality", archive.lossyQuality, low=1, high=100)


async def answer(archive, parameters, request):
    """The WADO answer to ``request`` and its ``parameters`` (``answers.Parameters``)."""
    requestType = parameters.get("requestType").strip()
    if requestType != "WADO":
        raise WebError(400, f"requestType must be WADO, not {requestType!r}")
    anonymize = parameters.get("anonymize").strip().lower()
    if anonymize not in ("", "yes"):
        raise WebError(400, f"anonymize must be yes, not {anonymize!r}")
    study = uid(parameters.get("studyUID"), "studyUID")
    series = uid(parameters.get("seriesUID"), "seriesUID")
    sop = uid(parameters.get("objectUID"), "objectUID")
    wanted = _contentTypes(parameters.get("contentType"))
    path = await storedPath(archive, sop, series=series, study=study)
    kind = await _contentType(archive, path, wanted, parameters.get("contentType"))
    if anonymize and kind != "application/dicom":
        raise WebError(400, "anonymize is only for contentType application/dicom")
    if kind == "application/dicom":
        given = [name for name in PICTURE_PARAMETERS if parameters.get(name).strip()]
        if given:
            raise WebError(400, f"{', '.join(given)}: only for pictures, not for contentType application/dicom")
    if kind == "application/dicom":
        syntax = parameters.get("transferSyntax").strip() or EXPLICIT_VR_LITTLE_ENDIAN
        quality = _dicomQuality(archive, parameters, syntax)
        name = "anonymized" if anonymize else sop
        headers = (("Content-Disposition", f"attachment; filename=\"{name}.dcm\""),)
        change = basicProfile(archive.converterServices.uidMap) if anonymize else None
        path = await intactFile(archive, path)
        # streamed: as stored, converted file to file (anonymized too), or made whole; a syntax
        # no code writes only for an object stored in it
        streamed = await objectStream(archive, path, syntax, SYNTAX_CODES.get(syntax, "as"), change, quality)
        if streamed is not None:
            return StreamAnswer(streamed[1], kind, headers)
        if syntax not in SYNTAX_CODES:
            raise WebError(406, f"cannot send transferSyntax {syntax!r}: pacs writes {', '.join(sorted(SYNTAX_CODES))}"
                                " and objects in the syntax they are stored in")
        data = await onFile(archive, path, dicomFile, WHOLE, SYNTAX_CODES[syntax], None, quality, change)
        made = readFileMeta(io.BytesIO(data))[0]
        if made != syntax:  # e.g. a 12-bit image, which JPEG baseline cannot hold, made 4.51
            raise WebError(406, f"{sop} cannot be sent in transferSyntax {syntax} (it can in {made})")
        return Answer(data, kind, headers)
    if kind in DOCUMENTS:
        return documentAnswer(await onFile(archive, path, documentOf), sop)
    if kind in ("text/html", "text/plain"):
        lines = await onFile(archive, path, headerLines)
        if kind == "text/plain":
            return Answer("\n".join(lines).encode("utf-8") + b"\n", "text/plain; charset=utf-8")
        return htmlAnswer(f"header of {sop}", Markup("<pre>"), "\n".join(lines), Markup("</pre>"))
    size = max(parameters.number("rows", 0), parameters.number("columns", 0))
    frame = parameters.number("frameNumber", 1, low=1) - 1
    quality = parameters.number("imageQuality", None, low=1, high=100)
    center, width = _window(parameters)
    return await picture(archive, request, path, PICTURE_TYPES[kind], size, center, width, frame, _region(parameters),
                         quality)
