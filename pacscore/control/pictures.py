"""Conquest's picture conversions (manual appendix 6, "Conversion
options"): ``convert_to_gif:file,size,out,l/w/f`` (grey GIF),
``convert_to_bmp`` (colour BMP), ``convert_to_jpg`` (JPEG) and
``convert_to_dicom:file,size,comp,f``.

``size`` is the largest width or height wanted, the image shrunk by a whole
factor (256 when the field is missing; empty or 0: as large as it is);
``l/w/f`` the window level and width (0: the object's own, see
``pacscore.codecs.rendering``) and the frame, from 0. ``out`` is a file the
server writes; missing, empty or ``binary``: the picture goes to dgate's
standard output; ``cgi``: the same behind a ``Content-type`` header, as a
CGI script answers. They take their turn with the web's pictures
(``archive.webRenders``, WebMaxRenders at once).

``convert_to_dicom`` writes a Part-10 file to dgate's standard output: the
frame ``f`` alone when given, the image downsized to ``size`` (0 or
missing: not; single-frame images with a Pixel Spacing, as Conquest's
MaybeDownsize), in the compression code ``comp`` (default ``un``); an image that cannot
take it (a 32-bit or 1-bit image, palette indices for lossy JPEG) is
written in its own syntax instead, with a log line, as a forward sends it.
"""

import math

from pydicom.uid import ExplicitVRLittleEndian
from twisted.logger import Logger

from pacscore.codecs.compression import AS_STORED_CODE, recode
from pacscore.codecs.downsize import downsizeDataset
from pacscore.codecs.imagefiles import bmpImage, gifImage, jpegImage
from pacscore.codecs.rendering import fitted, renderFile
from pacscore.codecs.syntaxes import isCompressed, proposals
from pacscore.codecs.transcode import TranscodeError, transcode
from pacscore.control.arguments import fields, number
from pacscore.control.context import CommandError
from pacscore.control.conversion import FileConversion, keepFrames
from pacscore.control.data import readFile
from pacscore.control.output import outputPath
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from pacscore.regularfiles import openRegularFile
from pacscore.storage.part10 import encodeFileMeta

DEFAULT_SIZE = 256
TO_STANDARD_OUTPUT = ("", "binary")
CGI = "cgi"


def _integer(text, what):
    """A level or width as Conquest reads it: a number rounded, 0 when empty."""
    text = text.strip()
    if not text:
        return 0
    try:
        return math.floor(float(text) + 0.5)
    except (ValueError, OverflowError):  # not a number, or infinite
        raise CommandError(f"{what} must be a number, not {text!r}") from None


def _size(text, given):
    if not given:
        return DEFAULT_SIZE
    return number(text, "size") if text.strip() else 0


def renderPicture(path, write, size, level, window, frame, region=None, viewport=None, function=None):
    """In the I/O pool: frame ``frame`` of the file ``path`` (its ``region``,
    windowed by ``function``, see ``renderFile``) as the picture ``write``
    makes of its 8-bit pixels (see the module docstring); scaled to fit
    ``viewport`` (width, height) when given."""
    pixels = renderFile(path, size, level, window, frame, region, function)
    return write(fitted(pixels, *viewport) if viewport else pixels)


class PictureConversion(FileConversion):
    """``convert_to_XXX:file,size,out,l/w/f``; ``write`` makes the file."""

    contentType = ""
    write = None

    def turns(self, archive):
        """The web's picture turns: WebMaxRenders pictures at once, whoever asks."""
        return archive.webRenders

    def run(self, arguments, context):
        given = arguments.count(",") >= 1
        source, size, out, rest = fields(arguments, 4)
        level, window, frame = (rest.split("/") + ["", "", ""])[:3]
        work = (renderPicture, self.write, _size(size, given), _integer(level, "level"), _integer(window, "window"),
                number(frame, "frame") if frame.strip() else 0)
        d = self.convert(context.archive, source, *work)
        out = out.strip()
        if out.lower() in TO_STANDARD_OUTPUT:
            return d
        if out.lower() == CGI:
            return d.addCallback(lambda picture: f"Content-type: {self.contentType}\n\n".encode() + picture)
        target = outputPath(context, out)
        d.addCallback(lambda picture: context.archive.workers.deferToWorker(_writeFile, target, picture))
        return d.addCallback(lambda _: f"{target} written")


def _writeFile(path, content):
    with openRegularFile(path, "wb") as f:
        f.write(content)


def _prepared(path, size, frame, change):
    """``(data set, syntax)`` of the file ``path``, frame ``frame`` alone
    (None: all), changed by ``change(dataset)`` when given, downsized to
    ``size`` (0: not)."""
    syntax, data = readFile(path)
    if frame is not None or change is not None:
        dataset = decodeDataset(data, syntax)
        if frame is not None:
            keepFrames(dataset, frame, frame)
        if change is not None:
            change(dataset)
        data = encodeDataset(dataset, syntax)
    if size:
        if isCompressed(syntax):
            data, syntax = transcode(data, syntax, ExplicitVRLittleEndian), ExplicitVRLittleEndian
        data = downsizeDataset(data, syntax, size) or data
    return data, syntax


def _part10(data, syntax):
    dataset = decodeDataset(data, syntax, stopBeforePixels=True)
    header = encodeFileMeta(dataset.get("SOPClassUID", ""), dataset.get("SOPInstanceUID", ""), syntax,
                            IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION)
    return header + data


def dicomFile(path, size, code, frame, quality, change=None):
    """In the I/O pool: the file ``path`` as Part-10 bytes, frame ``frame``
    alone (None: all), downsized to ``size`` (0: not), in compression ``code``,
    changed first by ``change(dataset)`` when given."""
    return _part10(*recode(*_prepared(path, size, frame, change), code, quality))


def sentFile(path, size, code, frame, quality):
    """In the I/O pool: ``(Part-10 bytes, refusal)``: ``dicomFile`` of the
    file ``path``, refusal None; or, when its object cannot go in a syntax of
    the compression ``code`` (the TranscodeError ``refusal``: a 32-bit or
    1-bit image, palette indices for lossy JPEG), in its own syntax, as a
    forward sends an image the encoder cannot take (the next of
    ``proposals``; NKI pixel data decompressed, as ``uj`` does).  Not for
    pixel data no codec decodes asked for uncompressed, which goes in no
    syntax then."""
    data, syntax = _prepared(path, size, frame, None)
    try:
        return _part10(*recode(data, syntax, code, quality)), None
    except TranscodeError as e:
        if syntax not in proposals(syntax, code):
            raise
        return _part10(*recode(data, syntax, AS_STORED_CODE)), e


class ConvertToDicom(FileConversion):
    name = "convert_to_dicom"
    usage = "--convert_to_dicom:file,size,comp,f  Downsize/compress/frame DICOM to standard output"

    log = Logger()

    def run(self, arguments, context):
        source, size, code, frame = fields(arguments, 4)
        archive, code = context.archive, code.strip() or "un"
        d = self.convert(archive, source, sentFile, number(size, "size") if size.strip() else 0, code,
                         number(frame, "frame") if frame.strip() else None, archive.lossyQuality)
        return d.addCallback(self._made, source, code)

    def _made(self, made, source, code):
        data, refusal = made
        if refusal is not None:
            self.log.info("convert_to_dicom: {source} cannot be compressed as {code} ({error}); written as stored",
                          source=source, code=code, error=refusal)
        return data


class ConvertToGif(PictureConversion):
    name = "convert_to_gif"
    usage = "--convert_to_gif:file,size,out,l/w/f  Downsize and convert to mono GIF"
    contentType = "image/gif"
    write = staticmethod(gifImage)


class ConvertToBmp(PictureConversion):
    name = "convert_to_bmp"
    usage = "--convert_to_bmp:file,size,out,l/w/f  Downsize and convert to color BMP"
    contentType = "image/bmp"
    write = staticmethod(bmpImage)


class ConvertToJpg(PictureConversion):
    name = "convert_to_jpg"
    usage = "--convert_to_jpg:file,size,out,l/w/f  Downsize and convert to color JPG"
    contentType = "image/jpeg"
    write = staticmethod(jpegImage)
