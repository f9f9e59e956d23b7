"""WADO-RS (PS3.18 section 10.4): a study, series or instance as
``multipart/related; type="application/dicom"`` (Part-10 objects made one
by one as the client takes them), its ``metadata`` (DICOM JSON, or DICOM
XML as ``metadataform`` says), an instance's ``frames/{list}`` and
``bulk/{tag}`` data, and ``rendered`` and ``thumbnail`` pictures (an
instance's ``rendered`` the document it encapsulates, a PDF say, when the
Accept header takes its type).

The Accept header chooses the transfer syntax: ``transfer-syntax=*`` sends
objects and frames as stored (NKI-compressed pixels expanded; an object
whose stored syntax a q=0 range refuses in an uncompressed one it does
not), none Explicit VR Little Endian as the standard says, any other one that pacs
writes is made with its codecs, and one it does not write (RLE ...) goes
for objects stored in it.  Each object goes in the first of the Accept
header's syntaxes (in its order of preference) it can go in: an object
that a codec would make in another syntax (a 16-bit image asked for in
JPEG baseline comes out as JPEG extended) goes in the next one.  When none
of the objects can go in any, the answer is a 406; one that cannot is left
out of the answer, with a log line (the rest of its series untried once
``FIRST_UNSENDABLE`` of it went in none), and so is one whose file is gone
or cannot be read (cut short, damaged): a 404 only when none can be read.
"""

import math
from collections import Counter
from functools import partial

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from twisted.logger import Logger

from pacscore.codecs.compression import AS_STORED_CODE
from pacscore.codecs.rendering import LARGEST_FIT, LINEAR, WINDOW_FUNCTIONS, SourceRegion
from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, UNCOMPRESSED
from pacscore.db.query import SERIES_INSTANCE_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, QueryKey
from pacscore.dicom.models import STUDY_ROOT_MOVE
from pacscore.dicom.uids import isUID
from pacscore.web.answers import StreamAnswer, WebError
from pacscore.web.dicomweb import multipart
from pacscore.storage.attributes import DatasetError
from pacscore.web.dicomweb.dicomjson import jsonBytes
from pacscore.web.dicomweb.instancefiles import (
    FRAME_TYPES, OCTET_STREAM, PIXEL_DATA, NoSuchAttribute, NoSuchFrame, bulkValue, frameSyntax,
    instanceFrames, instanceMetadata)
from pacscore.web.dicomweb.metadataform import metadataForm
from pacscore.web.dicomweb.search import hexTag
from pacscore.web.contents import contents
from pacscore.web.documents import TYPES as DOCUMENTS, documentAnswer, documentOf, mediaType
from pacscore.web.images import picture
from pacscore.web.objects import CannotShow, MissingFrame, Unreadable, onFile, shownFrom
from pacscore.web.objectstream import AS_STORED, intactFile, objectStream
from pacscore.web.wado import SYNTAX_CODES

log = Logger()

DICOM = "application/dicom"
PICTURES = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}
TEXTS = ("text/plain", "text/html", "text/rtf")  # PS3.18 table 8.7.4-1's Text rendered media types not of DOCUMENTS
THUMBNAIL_SIZE = 128
MOST_FRAMES = 100000
METADATA_BATCH = 100  # objects whose metadata is made at a time
FIRST_UNSENDABLE = 2  # objects of a series in no syntax asked for after which the rest is not tried


def _anything(media):
    return media.name in ("*/*", "multipart/*", "multipart/related")


async def storedInstances(archive, target):
    """``([(Instance, path)], fetched)``: the objects ``target`` names, in
    study, series and instance number order, and the SOP Instance UIDs of
    those fetched for it; WebError 404 when there are none.  With virtual
    servers, an entity none of whose objects is here is first fetched from
    them (C-MOVE here, as a C-MOVE to us would); ``released`` deletes them
    again when done, unless CacheVirtualData keeps them."""
    keys, level, identifier = [], "STUDY", Dataset()
    for tag, uid, name in ((STUDY_INSTANCE_UID, target.study, "STUDY"), (SERIES_INSTANCE_UID, target.series, "SERIES"),
                           (SOP_INSTANCE_UID, target.instance, "IMAGE")):
        if uid:
            keys.append(QueryKey(tag, "UI", uid))
            identifier.add_new(tag, "UI", uid)
            level = name
    found = await archive.index.runQuery(archive.objectReader.instancePaths, archive.query, level, keys)
    fetched = []
    if not found and archive.virtualServers is not None:
        identifier.QueryRetrieveLevel = level
        fetch = await archive.virtualServers.fetch(STUDY_ROOT_MOVE, identifier)
        fetched = list(fetch.held)
        if fetch.arrived:
            found = await archive.index.runQuery(archive.objectReader.instancePaths, archive.query, level, keys)
    if not found:
        await released(archive, fetched)
        raise WebError(404, f"no stored objects at {target.describe()}")
    return found, fetched


async def released(archive, fetched):
    """The objects ``fetched`` from the virtual servers were sent: deleted
    unless CacheVirtualData keeps them."""
    if fetched:
        await archive.virtualServers.release(fetched)


async def withInstances(archive, target, use):
    """``await use(found)`` with the ``storedInstances`` of ``target``,
    which must have read what it needs of them: then they are ``released``."""
    found, fetched = await storedInstances(archive, target)
    try:
        return await use(found)
    finally:
        await released(archive, fetched)


def instanceURL(base, instance):
    return (f"{base}/studies/{instance.studyInstanceUID}/series/{instance.seriesInstanceUID}"
            f"/instances/{instance.sopInstanceUID}")


def _refuses(accepted, kind, syntax, media):
    """Whether a q=0 range of ``accepted`` narrower than ``media``, the
    range taken, refuses parts of type ``kind`` in transfer ``syntax``
    (``transfer-syntax=*`` leaves the syntax to the server: a q=0 range
    naming the syntax is narrower)."""
    if media.get("transfer-syntax") == AS_STORED:
        media = multipart.MediaType(media.name, {key: value for key, value in media.parameters.items()
                                                 if key != "transfer-syntax"})
    return (accepted.refuses("multipart/related", {"type": kind, "transfer-syntax": syntax}, media)
            or accepted.refuses(kind, {"transfer-syntax": syntax}, media))


def _objectChoices(accepted):
    """``[(transfer syntax or *, compression code, media range)]`` that
    send objects as the Accept header asks, in its order; the code is None
    for a syntax pacs does not write (objects stored in it go as they
    are).  ``*`` is followed by the uncompressed syntaxes, for objects
    whose stored syntax a q=0 range refuses (``_objectChunks``)."""
    choices = []
    for media in accepted:
        if not (_anything(media) or media.name == DICOM):
            continue
        if media.name == "multipart/related" and media.get("type", DICOM).lower() != DICOM:
            continue
        syntax = media.get("transfer-syntax", EXPLICIT_VR_LITTLE_ENDIAN)
        if syntax == AS_STORED:
            choices.append((syntax, AS_STORED_CODE, media))
        for syntax in UNCOMPRESSED if syntax == AS_STORED else (syntax,):
            if _refuses(accepted, DICOM, syntax, media) or any(syntax == chosen for chosen, _, _ in choices):
                continue
            if syntax in SYNTAX_CODES:
                choices.append((syntax, SYNTAX_CODES[syntax], media))
            elif isUID(syntax):
                choices.append((syntax, None, media))
    if not choices:
        raise WebError(406, "pacs sends objects as multipart/related; type=\"application/dicom\" in the transfer "
                            f"syntaxes {', '.join(sorted(SYNTAX_CODES))}, in the one they are stored in, or * "
                            "(as stored)")
    return choices


async def _objectChunks(archive, path, accepted, choices):
    """``(transfer syntax, chunks)`` of a stored object sent in the first
    of ``choices`` (``_objectChoices`` of ``accepted``) it can go in, or
    None: one whose codec fails (a 32-bit image in JPEG 2000) is logged and
    the next tried, and so is ``*`` when ``accepted`` refuses the syntax
    the object is stored in.  Its file checked first (``intactFile``)."""
    path = await intactFile(archive, path)
    for wanted, code, media in choices:
        try:
            made = await objectStream(archive, path, wanted, code)
        except CannotShow as e:
            log.warn("WADO-RS: {path} cannot be sent in {syntax}: {error}", path=path, syntax=wanted, error=e)
            continue
        if made is not None and wanted == AS_STORED and _refuses(accepted, DICOM, made[0], media):
            await made[1].aclose()
            continue
        if made is not None:
            return made
    return None


async def retrieveInstances(archive, request, target, base):
    """The objects ``target`` names, each a part made as the client takes
    the last; one whose file cannot be read (gone, cut short, damaged) is
    left out, logged (``_firstPart``)."""
    accepted = multipart.accepted(request)
    choices = _objectChoices(accepted)
    found, fetched = await storedInstances(archive, target)
    unsendable = Unsendable()
    try:
        start, first = await _firstPart(archive, found, accepted, choices, unsendable)
    except BaseException:
        await released(archive, fetched)
        raise
    boundary = multipart.newBoundary()

    async def parts():
        chunks = first[1]  # closed however the answer ends: its file (or the first's, not started) with it
        try:
            for number in range(start, len(found)):
                instance, path = found[number]
                if number != start and unsendable.skips(instance):
                    continue
                try:
                    made = first if number == start else await _objectChunks(archive, path, accepted, choices)
                except Unreadable as e:
                    _leftOut(instance, e)
                    continue
                if made is None:
                    unsendable.add(instance)
                    continue
                syntax, chunks = made
                yield multipart.partHeader(boundary, f"{DICOM}; transfer-syntax={syntax}",
                                           instanceURL(base, instance))
                async for chunk in chunks:
                    yield chunk
                yield multipart.CRLF
            yield multipart.closing(boundary)
        finally:
            await chunks.aclose()
    return StreamAnswer(parts(), multipart.multipartType(boundary, DICOM),
                        release=lambda: released(archive, fetched))


async def _firstPart(archive, found, accepted, choices, unsendable):
    """``(position, made)``: the first of the ``found`` objects whose file
    can be read and that can go in one of ``choices``, and its
    ``_objectChunks``; those before it left out, logged, as C-MOVE and the
    metadata leave them out (``unsendable``, an ``Unsendable``, counting
    and logging those that go in none).  When none can go: the Unreadable
    of the only one (a 404 for a file gone, a 500 for one damaged), a 406
    when one could be read but goes in none of the syntaxes asked for
    (without a log line for each), else a 404."""
    refused = None
    for position, (instance, path) in enumerate(found):
        if unsendable.skips(instance):
            continue
        try:
            made = await _objectChunks(archive, path, accepted, choices)
        except Unreadable as e:
            if len(found) == 1:
                raise
            _leftOut(instance, e)
            continue
        if made is not None:
            unsendable.sending()
            return position, made
        unsendable.add(instance)
        refused = refused or instance
    if refused is not None:
        raise WebError(406, f"{refused.sopInstanceUID}{' (and the other objects tried)' if len(found) > 1 else ''} "
                            f"can be sent in none of the transfer syntaxes asked for "
                            f"({', '.join(syntax for syntax, _, _ in choices)})")
    raise WebError(404, f"none of the {len(found)} stored objects can be read")


def _leftOut(instance, error):
    log.warn("WADO-RS: {uid} left out: {error}", uid=instance.sopInstanceUID, error=error.message)


class Unsendable:
    """The objects of a WADO-RS answer that go in none of the transfer
    syntaxes asked for, counted by series: each is left out with a log
    line, and once ``FIRST_UNSENDABLE`` of a series went in none the rest
    of that series is left out untried, with one line (the objects of a
    series are alike: converting each of a 150-image CT series to JPEG
    baseline only to refuse it took seconds).  The lines wait until an
    object of the answer goes (``sending``): a 406 has none."""

    def __init__(self):
        self.counts = Counter()
        self.cut = set()
        self.held = []

    def skips(self, instance):
        """Whether ``instance`` is left out untried."""
        series = instance.seriesInstanceUID
        if self.counts[series] < FIRST_UNSENDABLE:
            return False
        if series not in self.cut:
            self.cut.add(series)
            self._log("WADO-RS: the other objects of series {series} are left out untried: its first {count} "
                      "could be sent in none of the transfer syntaxes asked for", series=series,
                      count=FIRST_UNSENDABLE)
        return True

    def add(self, instance):
        """``instance`` goes in none of the syntaxes: left out."""
        self.counts[instance.seriesInstanceUID] += 1
        self._log("WADO-RS: {uid} left out: it can be sent in none of the transfer syntaxes asked for",
                  uid=instance.sopInstanceUID)

    def sending(self):
        """An object of the answer goes: the lines held are logged, the later ones at once."""
        held, self.held = self.held, None
        for format, fields in held:
            log.warn(format, **fields)

    def _log(self, format, **fields):
        if self.held is None:
            log.warn(format, **fields)
        else:
            self.held.append((format, fields))


async def retrieveMetadata(archive, request, target, base):
    """The DICOM JSON (or DICOM XML, as the Accept header asks:
    ``metadataForm``) of every object ``target`` names, streamed: its files
    read and converted ``METADATA_BATCH`` at a time in the I/O pool, so
    that the answer starts after the first batch and memory holds one
    batch, whatever the size of the study (files whose metadata
    ``archive.metadataCache`` holds are not read again; that cache holds up
    to 64 MB besides); one that cannot be read is left out, with a log
    line."""
    form = metadataForm(request)
    found, fetched = await storedInstances(archive, target)
    return StreamAnswer(_metadataChunks(archive, found, base, form), form.contentType,
                        release=lambda: released(archive, fetched))


async def _metadataChunks(archive, found, base, form):
    """The ``found`` objects' metadata in the MetadataForm ``form``, a
    batch a chunk; one log line for the objects whose text is not valid in
    its character set (``decodeValues``)."""
    sent = False
    unfit = []  # (object, elements) of each
    for start in range(0, len(found), METADATA_BATCH):
        batch = [(path, instanceURL(base, instance)) for instance, path in found[start:start + METADATA_BATCH]]
        texts = await archive.workers.deferToWorker(_metadataTexts, archive.objectReader, archive.metadataCache,
                                                    batch, lambda *described: unfit.append(described), form)
        if texts:
            yield (form.separator if sent else form.opening) + form.separator.join(texts)
            sent = True
    if unfit:
        log.warn("WADO-RS metadata: {count} objects with text not valid in their Specific Character Set, read as "
                 "Latin-1, the first {object}: {elements}", count=len(unfit), object=unfit[0][0],
                 elements=unfit[0][1])
    yield (b"" if sent else form.opening) + form.closing


def _metadataTexts(reader, cache, batch, onUnfit, form):
    """In the I/O pool: the metadata, in the MetadataForm ``form``, of each
    ``(path, url)`` of ``batch`` whose file can be read (by ``reader``'s
    ``onFile``), its encoded DICOM JSON from ``cache`` when it holds that of
    the same file; ``onUnfit`` as ``instanceMetadata``'s."""
    make = partial(_metadataText, onUnfit=onUnfit)
    texts = []
    for path, url in batch:
        try:
            texts.append(form.fromJSON(reader.onFile(path, cache.metadata, url, make)[1]))
        except (OSError, DatasetError, InvalidDicomError, ValueError) as e:
            log.warn("WADO-RS metadata: {path} left out: it cannot be read: {error}", path=path, error=e)
    return texts


def _metadataText(path, url, onUnfit):
    return jsonBytes(instanceMetadata(path, url, onUnfit))


def frameNumbers(text):
    """The frame numbers of a ``frames/1,3,5`` path; a number repeated is
    a 400 (PS3.18 8.3.3.1: a list of non-duplicate frame numbers)."""
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if not numbers or not all(1 <= number <= MOST_FRAMES for number in numbers):
        raise WebError(400, f"frames must be numbers from 1 separated by commas, not {text!r}")
    if len(set(numbers)) < len(numbers):
        raise WebError(400, f"frames must not name a frame twice, as {text!r} does")
    return numbers


def _frameChoice(accepted, syntax, what="these frames"):
    """``(as stored, media type)`` of frames stored in ``syntax`` as the
    Accept header asks, what a q=0 range refuses left out; WebError 406
    when pacs cannot send what it asks, naming ``what`` it would send."""
    stored = FRAME_TYPES.get(syntax)
    for media in accepted:
        for asStored, kind in _frameOffers(media, stored, syntax):
            if not _refuses(accepted, kind, frameSyntax(asStored, syntax), media):
                return asStored, kind
    raise WebError(406, f"pacs sends {what} as application/octet-stream (native, or transfer-syntax=* as "
                        f"stored){f' or {stored}' if stored else ''}")


def _frameOffers(media, stored, syntax):
    """The ``(as stored, media type)`` the Accept range ``media`` takes for
    frames stored in ``syntax`` (as ``stored``, a media type or None), the
    server's choice first."""
    kind = media.get("type", OCTET_STREAM).lower() if _anything(media) else media.name
    wanted = media.get("transfer-syntax", "")
    if kind == "*/*" and wanted in ("", AS_STORED):  # the server's choice: as stored, else native
        return ([(True, stored)] if stored is not None else []) + [(False, OCTET_STREAM)]
    if kind == OCTET_STREAM:
        if wanted == AS_STORED:
            return [(True, OCTET_STREAM)]
        if wanted in ("", EXPLICIT_VR_LITTLE_ENDIAN):
            return [(False, OCTET_STREAM)]
    elif stored is not None and kind in (stored, "image/*") and wanted in ("", AS_STORED, syntax):
        return [(True, stored)]
    return []


async def _frameParts(archive, request, path, numbers):
    """The StreamAnswer of frames ``numbers`` (None: all) of the object at
    ``path``, each made in the I/O pool once the client took the last."""
    choose = partial(_frameChoice, multipart.accepted(request))
    try:
        frames = await onFile(archive, path, instanceFrames, numbers, choose)
    except NoSuchFrame as e:
        raise WebError(404, str(e)) from e
    boundary = multipart.newBoundary()

    async def parts():
        for position, number in enumerate(frames.numbers):
            frame = frames.first if position == 0 else await _laterFrame(archive, path, frames, number)
            yield multipart.partHeader(boundary, f"{frames.kind}; transfer-syntax={frames.syntax}")
            yield frame + multipart.CRLF
        yield multipart.closing(boundary)
    return StreamAnswer(parts(), multipart.multipartType(boundary, frames.kind))


async def _laterFrame(archive, path, frames, number):
    """Frame ``number`` of the ``frames`` of the object at ``path``, not
    the first, made in the I/O pool; one that cannot be (a damaged
    fragment) a WebError naming it (``shownFrom``), which breaks the answer
    off with a warning."""
    try:
        return await shownFrom(path, archive.workers.deferToWorker(frames.frame, number - 1))
    except WebError as e:
        raise WebError(e.code, f"frame {number}: {e.message}") from e


async def retrieveFrames(archive, request, target, base):
    numbers = frameNumbers(target.frames)
    return await withInstances(archive, target,
                               lambda found: _frameParts(archive, request, _onlyPath(found), numbers))


def _onlyPath(found):
    (_, path), = found
    return path


async def retrieveBulk(archive, request, target, base):
    """A bulk data attribute of an instance; Pixel Data as its frames."""
    tag = hexTag(target.tag)
    if tag is None:
        raise WebError(400, f"{target.tag!r} is not a tag (eight hex digits)")
    return await withInstances(archive, target, lambda found: _bulk(archive, request, _onlyPath(found), tag))


async def _bulk(archive, request, path, tag):
    if tag == PIXEL_DATA:
        return await _frameParts(archive, request, path, None)
    # the Accept frames stored native take: a 406 where bulk/7FE00010 of such an object is one
    _frameChoice(multipart.accepted(request), EXPLICIT_VR_LITTLE_ENDIAN, "bulk data")
    try:
        value = await onFile(archive, path, bulkValue, tag)
    except NoSuchAttribute as e:
        raise WebError(404, str(e)) from e
    boundary = multipart.newBoundary()
    body = multipart.partHeader(boundary, OCTET_STREAM) + value + multipart.CRLF + multipart.closing(boundary)

    async def parts():
        yield body
    return StreamAnswer(parts(), multipart.multipartType(boundary, OCTET_STREAM))


def _argument(request, name):
    values = request.args.get(name.encode("ascii"), [])
    return values[-1].decode("utf-8", "replace").strip() if values else ""


def _numbers(request, name, *counts, optional=()):
    """The numbers of the comma-separated parameter ``name``, as many as
    one of ``counts`` says (``counts[0]`` zeros when not given), None for
    an empty part at a position in ``optional``; a 400 for any other count
    or a part that is no number, never a part ignored."""
    text = _argument(request, name)
    if not text:
        return [0] * counts[0]
    try:
        numbers = [None if position in optional and not part.strip() else round(float(part))
                   for position, part in enumerate(text.split(","))]
    except (ValueError, OverflowError):
        numbers = []
    if len(numbers) not in counts:
        raise WebError(400, f"{name} must be {' or '.join(map(str, counts))} numbers separated by commas, "
                            f"not {text!r}")
    return numbers


def _window(request):
    """``(center, width, function)`` of the ``window`` parameter (PS3.18
    8.3.5.1.3: the function LINEAR when not named); ``(0, 0, None)``, the
    object's own window, without one.  WebError 400 for a width that is
    not positive (at least 1 for LINEAR) or an unknown function."""
    text = _argument(request, "window")
    if not text:
        return 0, 0, None
    parts = [part.strip() for part in text.split(",")]
    function = parts[2].upper() if len(parts) == 3 else LINEAR
    try:
        center, width = (float(part) for part in parts[:2]) if len(parts) in (2, 3) else ()
    except ValueError:
        center = width = math.nan
    if not (math.isfinite(center) and math.isfinite(width)) or function not in WINDOW_FUNCTIONS:
        raise WebError(400, f"window must be center,width[,function] (the function one of "
                            f"{', '.join(WINDOW_FUNCTIONS)}), not {text!r}")
    if not (width >= 1 if function == LINEAR else width > 0):
        raise WebError(400, f"the window width must be {'at least 1' if function == LINEAR else 'above 0'} "
                            f"for {function}, not {parts[1]}")
    return center, width, function


def _pictureKind(accepted):
    """The kind of picture the Accept header ``accepted`` takes first; None when it takes none."""
    for media in accepted:
        if media.name in PICTURES:
            return PICTURES[media.name]
        if media.name in ("*/*", "image/*"):
            kind = next((name for name in PICTURES if not accepted.refuses(name, taken=media)), None)
            if kind is not None:
                return PICTURES[kind]
    return None


def _viewport(request):
    """``(width, height, source)`` of the ``viewport`` parameter (PS3.18
    8.3.5.1.3: vw,vh[,sx,sy,sw,sh]): the largest size of the picture (0:
    not bounding) and the SourceRegion of the frame shown (None: all); a
    source part left empty is its default: sx and sy 0, sw and sh to the
    edge of the frame."""
    numbers = _numbers(request, "viewport", 2, 6, optional=range(2, 6))
    width, height = numbers[:2]
    if not (0 <= width <= LARGEST_FIT and 0 <= height <= LARGEST_FIT):
        raise WebError(400, f"viewport must be a width and height from 0 to {LARGEST_FIT}, not "
                            f"{_argument(request, 'viewport')!r}")
    if len(numbers) == 2:
        return width, height, None
    x, y, sw, sh = numbers[2:]
    source = SourceRegion(x or 0, y or 0, sw, sh)
    if source.x < 0 or source.y < 0 or source.width == 0 or source.height == 0:
        raise WebError(400, f"the viewport's source region must start at 0 or beyond and be at least a pixel wide "
                            f"and high, not {_argument(request, 'viewport')!r}")
    if (source.width or 0) < 0 or (source.height or 0) < 0:
        raise WebError(400, f"pacs does not flip pictures (a negative source width or height): "
                            f"viewport={_argument(request, 'viewport')}")
    return width, height, source


async def _rendered(archive, request, path, frame, size):
    kind = _pictureKind(multipart.accepted(request))
    if kind is None:
        raise WebError(406, f"pacs renders pictures as {', '.join(PICTURES)}")
    width, height, source = _viewport(request)
    center, window, function = _window(request)
    quality = _numbers(request, "quality", 1)[0] if _argument(request, "quality") else None
    if quality is not None and not 1 <= quality <= 100:
        raise WebError(400, f"quality must be from 1 to 100, not {quality}")
    viewport = (width, height) if width or height else None
    try:
        return await picture(archive, request, path, kind, 0 if viewport else size, center, window, frame,
                             source, quality, viewport, function=function)
    except MissingFrame as e:  # frames/{n} is a resource of the path, as for the frames themselves
        raise WebError(404, e.message) from e


async def retrieveRendered(archive, request, target, base):
    """An instance (or one of its frames) as a picture: ``viewport`` =
    width,height[,sx,sy,sw,sh] (the largest size, and the region of the
    frame shown, in pixels, scaled to fit it), ``window`` = center,width[,function],
    ``quality`` (1-100, of a JPEG).  A study or series as the picture of
    its first instance that can be shown, as Orthanc answers them (PS3.18
    10.4.1 has them a multipart of every instance's)."""
    if not target.instance:
        return await withInstances(archive, target, lambda found: _firstShown(archive, request, found, 0))
    if target.frames:
        frame = frameNumbers(target.frames)[0] - 1
        return await withInstances(archive, target,
                                   lambda found: _rendered(archive, request, _onlyPath(found), frame, 0))
    return await withInstances(archive, target, lambda found: _renderedInstance(archive, request, _onlyPath(found),
                                                                                 target.instance))


async def _renderedInstance(archive, request, path, sop):
    """The rendered form of the instance ``sop``: the document it encapsulates
    when the Accept header takes its type (a PDF, as Orthanc answers it;
    PS3.18 8.7.4 gives such objects the text types and application/pdf:
    a text/plain document asked for as text/plain too), else its picture;
    a document asked for as neither is a 406 naming its type."""
    picture = _pictureKind(multipart.accepted(request))
    if picture is None or multipart.preferredType(request, DOCUMENTS + TEXTS) is not None:
        held = await onFile(archive, path, contents)
        if held.document:
            kind = mediaType(held.document)[0]
            if multipart.preferredType(request, [kind]) is not None:
                return documentAnswer(await onFile(archive, path, documentOf), sop)
            if picture is None:
                raise WebError(406, f"this instance holds a document of type {kind}, not a picture: "
                                    f"ask for it as {kind} (or */*)")
    return await _rendered(archive, request, path, 0, 0)


async def retrieveThumbnail(archive, request, target, base):
    """The first instance of a study, series or an instance that can be
    shown (one with pixels pacs can render) as a small picture."""
    return await withInstances(archive, target, lambda found: _firstShown(archive, request, found, THUMBNAIL_SIZE))


async def _firstShown(archive, request, found, size):
    """The picture (``size`` its largest side, 0 its own size) of the first
    of ``found`` that can be shown, skipping those that cannot (no Pixel
    Data, pixels no codec reads, a file gone); the first one's error when
    none can."""
    refusal = None
    for _, path in found:
        try:
            return await _rendered(archive, request, path, 0, size)
        except WebError as e:
            if e.code not in (404, 422):  # a file gone, an object that cannot be shown (CannotShow)
                raise
            refusal = refusal or e
    raise refusal
