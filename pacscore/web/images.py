"""One stored image on the web (Conquest's CGI modes): ``slice`` (the image
as a picture: ``graphic`` gif, bmp, jpg or png, ``size``, ``lw`` =
level/window[/frame]; ``size`` is pixels, or, as Conquest's "size of viewer
in pixels or %", ``N%``: the picture at its own size, which the slice
viewer shows N% high, as Conquest's does), ``dicom`` (the Part-10 file, downsized to ``dsize``
and in compression ``compress``, in its own syntax when the image cannot
take that one, as a forward sends it; the stored file streamed when neither
changes it), ``sliceviewer`` (a page showing the
slice, with a form for level, window and frame; its parts, ``sliceParts``,
show the images of the series viewers too) and ``headerdump``."""

from functools import partial

from twisted.logger import Logger

from pacscore.codecs.imagefiles import bmpImage, gifImage, jpegImage, pngImage
from pacscore.codecs.syntaxes import isSupportedCode
from pacscore.control.data import headerLines
from pacscore.control.pictures import renderPicture, sentFile
from pacscore.web.answering import clientLeft
from pacscore.web.answers import Answer, StreamAnswer, WebError, htmlAnswer
from pacscore.web.html import SCRIPT, Markup, image, join, link, text, url
from pacscore.web.objects import onFile, sliceReference, storedPath
from pacscore.web.objectstream import intactFile, unchangedStream

PICTURES = {"gif": (gifImage, "image/gif"), "bmp": (bmpImage, "image/bmp"), "jpg": (jpegImage, "image/jpeg"),
            "jpeg": (jpegImage, "image/jpeg"), "png": (pngImage, "image/png")}
DEFAULT_GRAPHIC = "jpg"
DEFAULT_SIZE = 512
MOST_PERCENT = 1000  # of a size=N%
MOST_FRAMES = 100000
DICOM = "application/dicom"
ROWS = (0x00280010, "US")  # kept by the index for objects with pixel data only
CLIENT_LEFT = 499  # nginx's "client closed request": never sent, nobody is there
log = Logger()


def sliceSize(parameters):
    """``(pixels, percent)`` of the request's ``size``: the most pixels a
    picture is shrunk to (0: its own size), and None, or for ``N%`` 0 and
    N, the percentage of the window's height a viewer page shows it at."""
    text = parameters.get("size").strip()
    if text.endswith("%"):
        percent = text[:-1].strip()
        if not (percent.isdigit() and 1 <= int(percent) <= MOST_PERCENT):
            raise WebError(400, f"size must be pixels or a percentage from 1% to {MOST_PERCENT}%, not {text!r}")
        return 0, int(percent)
    return parameters.number("size", DEFAULT_SIZE), None


def levelWindowFrame(text):
    """``(level, window, frame)`` of Conquest's ``lw`` = level/window[/frame]."""
    parts = (text.split("/") + ["", "", ""])[:3]
    try:
        level, window = (round(float(part)) if part.strip() else 0 for part in parts[:2])
        frame = int(parts[2]) if parts[2].strip() else 0
    except (ValueError, OverflowError):
        raise WebError(400, f"lw must be level/window[/frame] numbers, not {text!r}") from None
    if not 0 <= frame < MOST_FRAMES:
        raise WebError(400, f"the frame must be from 0, not {frame}")
    return level, window, frame


def hasPixels(match):
    """Whether the object of an index row (``{tag: value}`` with ROWS asked
    for) has pixel data to show: the index keeps Rows (the Image Pixel
    module's) for those only, not for RT plans, structure sets or reports.
    With a dicom.sql that keeps no Rows, every object is taken for one."""
    return str(match.get(ROWS[0], "?")).strip() != ""


def viewerURL(reference, match, **parameters):
    """Where an image list's row for ``slice=reference`` leads: the slice
    viewer (``parameters``: its size, graphic), or the header dump of an
    object without pixel data, which it could not show."""
    if hasPixels(match):
        return url("sliceviewer", slice=reference, **parameters)
    return url("headerdump", slice=reference)


def pictureKind(graphic):
    """``(write, content type)`` of a ``graphic`` name."""
    kind = PICTURES.get((graphic or DEFAULT_GRAPHIC).strip().lower())
    if kind is None:
        raise WebError(400, f"graphic must be one of {', '.join(PICTURES)}, not {graphic!r}")
    return kind


async def picture(archive, request, path, graphic, size, level, window, frame, region=None, quality=None,
                  viewport=None, firstFrame=1, function=None):
    """An Answer to ``request`` with the picture of a stored file; ``frame``
    from 0, named in a MissingFrame (422) as the request counts frames, from
    ``firstFrame``; ``quality`` (1-100) that of a JPEG, Conquest's 95 when
    None; ``region`` the part of the frame shown (``renderFile``);
    ``viewport`` (width, height) it is scaled to fit; ``function``
    the VOI LUT function of ``level``/``window`` (``renderFile``). Pictures of
    every page (slices, WADO-URI, WADO-RS rendered and thumbnails) take
    their turn in ``archive.webRenders``; one whose client left while it
    waited is not made (a WebError CLIENT_LEFT, for the log alone)."""
    write, contentType = pictureKind(graphic)
    if quality is not None and write is jpegImage:
        write = partial(jpegImage, quality=quality)
    async with archive.webRenders:  # WebMaxRenders at once, whichever page asks
        if clientLeft(request):
            raise WebError(CLIENT_LEFT, "the client left while its picture waited for its turn")
        made = await onFile(archive, path, renderPicture, write, size, level, window, frame, region, viewport,
                            function, firstFrame=firstFrame)
    return Answer(made, contentType)


async def _slicePath(archive, parameters):
    patientID, sop = sliceReference(parameters.get("slice"))
    return await storedPath(archive, sop, patientID)


async def slice_(archive, parameters, request):
    path = await _slicePath(archive, parameters)
    return await picture(archive, request, path, parameters.get("graphic"), sliceSize(parameters)[0],
                         *levelWindowFrame(parameters.get("lw")), firstFrame=0)


def compressionCode(code):
    """A compression code a user asked for (``un`` when none)."""
    code = (code or "un").strip().lower()
    if not isSupportedCode(code):
        raise WebError(400, f"{code!r} is not a compression code")
    return code


async def dicom(archive, parameters):
    path = await intactFile(archive, await _slicePath(archive, parameters))
    code, size = compressionCode(parameters.get("compress")), parameters.number("dsize", 0)
    headers = (("Content-Disposition", "attachment; filename=\"file.dcm\""),)
    streamed = None if size else await unchangedStream(archive, path, code)
    if streamed is not None:
        return StreamAnswer(streamed[1], DICOM, headers)
    # downsized or recompressed: made whole in memory
    data, refusal = await onFile(archive, path, sentFile, size, code, None, archive.lossyQuality)
    if refusal is not None:
        log.info("web: {slice} cannot be compressed as {code} ({error}); sent as stored",
                 slice=parameters.get("slice"), code=code, error=refusal)
    return Answer(data, DICOM, headers)


async def sliceViewer(archive, parameters):
    reference = parameters.get("slice")
    await _slicePath(archive, parameters)
    return htmlAnswer(f"slice {reference}", *sliceParts(reference, parameters, "sliceviewer", slice=reference))


def sliceParts(reference, parameters, mode, **hidden):
    """The parts of a slice viewer page of the image ``reference``
    (patid:sop): its picture at the request's size, graphic and lw, a
    form changing lw that asks for ``mode`` with ``hidden`` (name: value)
    again, links to its header and file."""
    level, window, frame = levelWindowFrame(parameters.get("lw"))
    pixels, percent = sliceSize(parameters)
    size, graphic = f"{percent}%" if percent else pixels, parameters.get("graphic")
    lw = f"{level}/{window}/{frame}"
    source = url("slice", slice=reference, size=size, graphic=graphic, lw=lw)
    # N% of the window's height: Conquest's HEIGHT=N% does so only in its pages' quirks mode, ours have a doctype
    shown = image(source, f"slice {reference}", id="slice", **({"style": f"height: {percent}vh"} if percent else {}),
                  onload="document.getElementById('shape').textContent = this.naturalWidth + ' x ' + "
                         "this.naturalHeight + ' pixels'",
                  onerror="document.getElementById('shape').textContent = 'the image cannot be shown'")
    fields = {"mode": mode, **hidden, "size": size, "graphic": graphic}
    form = Markup(
        f"<form action=\"{SCRIPT}\" method=\"get\">"
        + "".join(f"<input type=\"hidden\" name=\"{name}\" value=\"{text(value)}\">" for name, value in fields.items())
        + f"<label>Level/window/frame <input name=\"lw\" value=\"{lw}\" size=16></label> "
        "<input type=\"submit\" value=\"Show\"></form>")
    return (shown, Markup("<p id=\"shape\"></p>"), form,
            join(Markup("<p>"), link(url("headerdump", slice=reference), "header"), " | ",
                 link(url("dicom", slice=reference), "DICOM file"), Markup("</p>")))


async def headerDump(archive, parameters):
    path = await _slicePath(archive, parameters)
    lines = await onFile(archive, path, headerLines)
    return htmlAnswer(f"header of {parameters.get('slice')}", Markup("<pre id=\"header\">"), "\n".join(lines),
                      Markup("</pre>"))


MODES = {
    "dicom": dicom,
    "sliceviewer": sliceViewer,
    "headerdump": headerDump,
}
REQUEST_MODES = {"slice": slice_}
