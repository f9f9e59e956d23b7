"""Converting a large stored object for a peer without holding it in
memory: from its file into a temporary file, the Pixel Data a piece (a
frame, for compressed data) at a time.

``transcodeFile(source, offset, length, fromSyntax, toSyntax, out)``
writes into ``out`` what ``transcode.transcode`` would return for the data
set at ``offset`` of the open file ``source``, for the conversions large
objects need: into implicit or explicit VR little endian (what every peer
takes), from either of those, from deflated (inflated a chunk at a time
into a temporary file first) or from a compressed syntax a decoder here
reads.  Byte for byte the same output (the tests compare them); it raises
``NotStreamed`` for anything else (another target, Pixel Data not where
the syntax wants it, no Pixel Data at all, a sequential JPEG stream whose
scan headers must be mended), which the caller then converts
in memory, and ``TranscodeError`` as ``transcode`` does.

The elements around the Pixel Data of a deflated object are read into
memory up to ``INFLATED_IN_MEMORY`` bytes in all, refused past that (a
TranscodeError, as its conversion in memory would be): deflate makes a
gigabyte of them a megabyte sent; and it is inflated into its temporary
file up to ``INFLATED_ON_DISK`` bytes, refused past that.  Those of any
other object are read as they are: no larger than its file.

A compressed object is decoded a frame at a time by pydicom's decoder
reading the fragments from the file (``iter_array`` on a file-like),
after ``transcode.checkFrameSize`` has found its frames not too large to
decode and ``encapsulatedframes.framesFound`` has found them whole; the
elements around the Pixel Data (bounded, see above) go through pydicom as
``transcode`` does; a ``change`` (WADO-URI's anonymize) is made to them
alone, the Pixel Data copied or decoded as without it.
"""

import os
import tempfile

from pydicom.filereader import read_dataset
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import UID

from pacscore.codecs.encapsulatedframes import framesFound
from pacscore.codecs.syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, canDecode, isCompressed)
from pacscore.codecs.transcode import (
    _EXPLICIT_HEADER, _EXTENDED_OFFSET_TABLE, _IMPLICIT_HEADER, INFLATED_IN_MEMORY, PIXEL_DATA,
    TranscodeError, _atPixelData, _clean, _decompressAll, _Problem, _write, changedAround, checkFrameSize,
    codecLock, codedLossy, codedPrecision, conversionError, convertsToRGB, elementHeader, littleEndianLayout,
    markDecodedLossy)
from pacscore.storage.attributes import LONG_LENGTH, DatasetError, InflateWindow

COPY_CHUNK = 1 << 20
# The largest Pixel Data value and the elements around it.
INFLATED_ON_DISK = 0xFFFFFFFE + INFLATED_IN_MEMORY
TARGETS = {IMPLICIT_VR_LITTLE_ENDIAN: True, EXPLICIT_VR_LITTLE_ENDIAN: False}  # syntax -> implicit VR
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD


class NotStreamed(Exception):
    """This conversion is not done file to file; convert in memory."""


class _TooLarge(Exception):
    """More of the elements around the Pixel Data than may be read into memory."""


class _BoundedReads:
    """The file ``file`` read by pydicom through this, ``INFLATED_IN_MEMORY``
    bytes in all at most (seeks are free): ``_TooLarge`` before reading past
    that."""

    def __init__(self, file):
        self.file, self.left = file, INFLATED_IN_MEMORY
        self.seek, self.tell = file.seek, file.tell

    def read(self, size):
        if size > self.left:
            raise _TooLarge(f"more than {INFLATED_IN_MEMORY >> 20} MB of elements around its Pixel Data")
        self.left -= size
        return self.file.read(size)


def streams(fromSyntax, toSyntax, changing=False):
    """Whether ``transcodeFile`` takes this conversion (it may still raise
    ``NotStreamed`` for a particular object); ``changing``: with a
    ``change``, which it takes in the same syntax too."""
    source, target = _clean(fromSyntax), _clean(toSyntax)
    return (source != target or changing) and target in TARGETS and (
        source in TARGETS or source == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
        or isCompressed(source) and canDecode(source))


def transcodeFile(source, offset, length, fromSyntax, toSyntax, out, change=None):
    """Write the data set at ``offset`` of the file ``source`` (``length``
    bytes, in ``fromSyntax``) into the file ``out`` in ``toSyntax``, changed
    first by ``change(dataset)`` when given (which sees the elements around
    the Pixel Data, ``transcode.changedAround``); the bytes written."""
    fromSyntax, toSyntax = _clean(fromSyntax), _clean(toSyntax)
    if not streams(fromSyntax, toSyntax, change is not None):
        raise NotStreamed(f"{fromSyntax} -> {toSyntax}")
    start = out.tell()
    try:
        source.seek(offset)
        if fromSyntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            with _inflated(source, offset + length) as inflated:
                _copyNative(inflated, os.fstat(inflated.fileno()).st_size, False, TARGETS[toSyntax], out, change,
                            bounded=True)
        elif fromSyntax in TARGETS:
            _copyNative(source, offset + length, TARGETS[fromSyntax], TARGETS[toSyntax], out, change)
        else:
            _decodeFrames(source, offset + length, fromSyntax, TARGETS[toSyntax], out, change)
    except (NotStreamed, TranscodeError, DatasetError):  # the last: a change refusing the object
        raise
    except _TooLarge as e:
        raise TranscodeError(f"the deflated data set has {e}") from e
    except Exception as e:
        raise conversionError(fromSyntax, toSyntax, e) from e
    return out.tell() - start


def _copyNative(source, end, sourceImplicit, targetImplicit, out, change, bounded=False):
    """The Pixel Data copied from ``source`` after the elements around it,
    read through ``_BoundedReads`` when ``bounded`` (an inflated one's)."""
    layout = littleEndianLayout(_BoundedReads(source) if bounded else source, end, sourceImplicit, targetImplicit,
                                change)
    if layout is None or layout.valueLength is None:
        raise NotStreamed("no plain Pixel Data")
    out.write(layout.head)
    out.write(layout.pixelHeader)
    source.seek(layout.valueStart)
    _copy(source, out, layout.valueLength)
    for piece in (*layout.padding, *layout.tail):
        out.write(piece)


def _inflated(source, end):
    """An unnamed temporary file holding the deflated data set from the
    position of ``source`` to ``end`` inflated (PS3.5 A.5), ``COPY_CHUNK``
    bytes at a time, up to ``INFLATED_ON_DISK`` bytes."""
    stream = InflateWindow(lambda size: source.read(max(min(size, end - source.tell()), 0)))
    inflated = tempfile.TemporaryFile()
    try:
        for piece in iter(lambda: stream.inflate(COPY_CHUNK), b""):
            inflated.write(piece)
            if inflated.tell() > INFLATED_ON_DISK:
                raise TranscodeError(f"the deflated data set inflates to more than {INFLATED_ON_DISK >> 20} MB")
    except DatasetError as e:
        inflated.close()
        raise TranscodeError(str(e)) from e
    except BaseException:
        inflated.close()
        raise
    inflated.seek(0)
    return inflated


def _copy(source, out, size):
    while size:
        chunk = source.read(min(COPY_CHUNK, size))
        if not chunk:
            raise TranscodeError("the stored file ends inside its Pixel Data")
        out.write(chunk)
        size -= len(chunk)


def _fragmentsEnd(source, end):
    """Past the sequence delimiter of the encapsulated Pixel Data whose
    value starts at the position of ``source``; where it is left."""
    while True:
        header = source.read(8)
        if len(header) < 8:
            raise TranscodeError("the stored file ends inside its encapsulated Pixel Data")
        tag, _, itemLength, _ = elementHeader(header, 0, True)
        if tag == _SEQUENCE_END:
            return source.tell()
        if tag != _ITEM or source.tell() + itemLength > end:
            raise TranscodeError(f"the encapsulated Pixel Data has a bad item at {source.tell() - 8}")
        source.seek(itemLength, 1)


def _decodeFrames(source, end, syntax, targetImplicit, out, change):
    """Encapsulated Pixel Data decoded frame by frame, as
    ``transcode._decompress`` decodes it whole."""
    head = read_dataset(source, False, True, stop_when=_atPixelData)
    position = source.tell()
    if position >= end:
        raise NotStreamed("no Pixel Data")
    tag, vr, length, valueOffset = elementHeader(source.read(12), 0, False)
    if tag != PIXEL_DATA or length != 0xFFFFFFFF:
        raise NotStreamed("Pixel Data not encapsulated")
    checkFrameSize(head.get("Rows"), head.get("Columns"), head.get("SamplesPerPixel"))
    valueStart = position + valueOffset
    tailStart = _fragmentsEnd(source, end)
    encoding = head.original_character_set
    tail = None
    if tailStart < end:
        source.seek(tailStart)
        tail = read_dataset(source, False, True, parent_encoding=encoding)
    tail = changedAround(head, tail, change)
    _decompressAll(head, syntax)  # icons in sequences
    options = as_pixel_options(head, transfer_syntax_uid=UID(syntax), pixel_keyword="PixelData",
                               pixel_vr=vr.decode("ascii"))
    source.seek(valueStart)
    damage, toMend = framesFound(syntax, source, options)
    if damage:
        raise _Problem(damage)
    if toMend:
        raise NotStreamed("its JPEG scan headers are mended in memory")
    source.seek(valueStart)
    lossy = codedLossy(syntax, source)
    source.seek(valueStart)
    options.update(codedPrecision(syntax, source, head))
    source.seek(valueStart)
    with codecLock(syntax):
        frames = get_decoder(syntax).iter_array(source, validate=True, as_rgb=convertsToRGB(head), **options)
        first, pixels = next(frames)
        _decodedHead(head, syntax, pixels, options, lossy)
        out.write(_write(head, targetImplicit, True))
        headerAt = out.tell()
        out.write(b"\0" * (8 if targetImplicit else 12))
        written = _writeArray(out, first)
        for array, _ in frames:
            written += _writeArray(out, array)
    if written >= 0xFFFFFFFE:
        raise TranscodeError("its uncompressed Pixel Data would be longer than a DICOM element can be")
    if written % 2:
        out.write(b"\0")
    after = out.tell()
    out.seek(headerAt)
    pixelVR = b"OB" if head.BitsAllocated <= 8 else b"OW"
    out.write(_IMPLICIT_HEADER.pack(0x7FE0, 0x0010, written + written % 2) if targetImplicit else
              _EXPLICIT_HEADER.pack(0x7FE0, 0x0010, pixelVR, 0) + LONG_LENGTH.pack(written + written % 2))
    out.seek(after)
    if tail is not None:
        out.write(_write(tail, targetImplicit, True, encoding))


def _writeArray(out, array):
    data = array.tobytes()
    out.write(data)
    return len(data)


def _decodedHead(head, syntax, pixels, options, lossy):
    """The elements before the Pixel Data changed as pydicom's
    ``decompress`` (then ``transcode._decompress``) changes them; ``lossy``:
    the pixel data was coded lossily."""
    head.PhotometricInterpretation = pixels["photometric_interpretation"]
    if pixels["samples_per_pixel"] > 1:
        head.PlanarConfiguration = pixels["planar_configuration"]
    if "NumberOfFrames" in head or options["number_of_frames"] > 1:
        head.NumberOfFrames = options["number_of_frames"]
    for keyword in _EXTENDED_OFFSET_TABLE:
        if keyword in head:
            delattr(head, keyword)
    markDecodedLossy(head, syntax, lossy)

