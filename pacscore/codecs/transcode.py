"""Re-encode a stored data set in another transfer syntax, for a peer that
does not take the one it is stored in.

``transcode(dataset, fromSyntax, toSyntax)`` takes and gives the data set
alone (no Part-10 header), as it is stored after the file meta and as it
goes in P-DATA:

* uncompressed <-> uncompressed (implicit/explicit VR little endian,
  explicit VR big endian, deflated): the elements are re-encoded, pixel
  values untouched. Between the little endian ones the Pixel Data value is
  copied straight from the input, never parsed; big endian swaps the bytes
  of the OW/OF/OL/OD/OV values (Pixel Data by its Bits Allocated, as
  pydicom reads it).
* compressed -> uncompressed: pydicom decodes the pixel data with the
  installed plugins (pylibjpeg ...), colour data comes out as RGB (a JPEG
  YBR_FULL_422 image becomes RGB, planar configuration 0, as pydicom's
  ``Dataset.decompress``), the encapsulation and any extended offset table
  go; every other element stays. A lossy source (JPEG processes 1-13 and
  the like, JPEG-LS near-lossless with a NEAR above 0) gets Lossy Image
  Compression "01", and its method if known, if it did not say so. A
  sequential JPEG stream whose scans say a spectral selection other than
  0..63 (old encoders), which libjpeg refuses, is decoded from a copy
  saying 0..63, as dcmdjpeg decodes it, with a log line. A JPEG or
  JPEG-LS frame cut before its end of image marker, which the decoders
  here would fill in part, is refused (``encapsulatedframes``), as
  DCMTK refuses it; so are frames of more than ``LARGEST_DECODED_FRAME`` samples
  (``checkFrameSize``), before anything is decoded: a tiny RLE file may
  claim 65535 x 65535 pixels, 8 GB decoded; and frames whose codestream
  header describes another image than the object does
  (``codestreamheader``): a tiny JPEG-LS frame of a 64 x 64 object may
  hold a 12000 x 12000 codestream, which the decoder would allocate.
* uncompressed -> compressed: ``Dataset.compress`` with the encoders
  available here (``syntaxes.canEncode``): RLE, JPEG 2000 lossless and
  lossy (compression ratio 100 / ``quality`` at most, as Conquest asks of
  OpenJPEG: 95 is nearly lossless, 10 about 10:1), JPEG-LS (pyjpegls;
  near-lossless with the NEAR ``nearError(quality)``, refused with a log
  line for signed values within NEAR of either end of their range, which
  its error would wrap to the other end); the JPEG lossless syntaxes (4.57, 4.70) with our own encoder,
  ``jpeglossless.encodeDataset`` (8 or 16 bits allocated, 1 or 3 samples),
  the lossy ones (4.50, 4.51) with ``jpeglossy.encodeDataset`` at the
  ``quality`` given (LossyQuality). Lossy results get Lossy Image
  Compression "01" and their ratio and method appended (not JPEG-LS
  near-lossless at NEAR 0, quality 91 and up: bit-exact, as
  ``codedLossy`` reads it). Colour data by plane (Planar Configuration 1) is
  interleaved and YBR_FULL_422 expanded to YBR_FULL first, as the encoders
  want; RLE of more than 16 bits allocated (pydicom's encoder stops
  there) with ``widerle``. openjpeg (6 resolution levels) refuses images
  under 32 pixels across and more than 24 bits stored: such images raise
  TranscodeError and go in another syntax.
* lossless means the stored words bit for bit: pixel data with bits set
  above High Bit (embedded overlays) is coded at Bits Allocated precision
  in a lossless syntax, as DCMTK's true lossless mode does (and up to 8
  bits stored in 16 in JPEG-LS and JPEG 2000 always; their lossy modes,
  whose error at 16 bits would leave the 8-bit range, code such an image
  losslessly in the same syntax instead, JPEG 2000 reversible and JPEG-LS
  with NEAR 0, with a log line, not marked lossy), and a stream coded at
  a precision above Bits Stored (or in RLE, which codes whole words) is
  decoded at that precision, not masked to Bits Stored.
* compressed -> another compressed: both of the above.
* no Pixel Data (SR, presentation states, key objects ...): re-encoded as
  the target's encoding; in a compressed target syntax the data set is
  simply explicit VR little endian, as PS3.5 A.4 defines for everything
  but the pixel data (dcmtk does the same).  Float and Double Float Pixel
  Data (7FE0,0008/0009) have no encapsulated form (PS3.5 8; dcmcjpeg
  refuses them): such an object raises TranscodeError for a compressed
  target, and goes in another syntax.

The SOP Instance UID never changes. Every failure, whatever its cause
(malformed input, no codec, a codec refusing the image), is raised as
``TranscodeError`` with a message saying what went wrong.

Pure functions of their arguments: safe to run in worker threads; nothing
global is changed (pydicom's configuration is only read; its codec plugins
are wrapped once, at this module's import, by ``codecprocesses``: frames of
``codecprocesses.LARGE_FRAME`` samples or more are decoded and encoded in
other processes, so that codecs keeping the GIL do not stop the reactor
meanwhile). JPEG 2000 work is serialised by ``OPENJPEG_LOCK``:
pylibjpeg-openjpeg crashes when two threads use it at once.
"""

import contextlib
import struct
from dataclasses import dataclass
import threading
from io import BytesIO

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_fragments, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import correct_ambiguous_vr, write_dataset
from pydicom.pixels.utils import as_pixel_options, compress, decompress, expand_ybr422
from pydicom.uid import UID
from twisted.logger import Logger

from pacscore.codecs import codecprocesses
from pacscore.codecs.encapsulatedframes import framesFound
from pacscore.codecs.jpeglossless import encodeDataset as encodeJpegLossless
from pacscore.codecs.jpeglossy import DEFAULT_QUALITY
from pacscore.codecs.jpeglossy import encodeDataset as encodeJpegLossy
from pacscore.codecs.jpegmarkers import near, samplePrecision, sequentialScansMended
from pacscore.codecs.pixelframes import nativeFrames, signedValues, usesBitsAboveHighBit
from pacscore.codecs.widerle import encodeDataset as encodeWideRle
from pacscore.codecs.widerle import isWide
from pacscore.codecs.syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN, JPEG_2000, JPEG_2000_LOSSLESS, JPEG_BASELINE, JPEG_EXTENDED,
    JPEG_LOSSLESS_SYNTAXES, JPEG_LOSSY_SYNTAXES, JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS, NATIVE,
    RLE_LOSSLESS, canDecode, canEncode, isCompressed)
from pacscore.dicom.textbytes import keepUndecodable
from pacscore.dicom.uids import isUID
from pacscore.storage.attributes import LONG_LENGTH, LONG_VRS, DatasetError, deflated, inflated, walkDataset


log = Logger()
codecprocesses.install()

# pylibjpeg-openjpeg (2.6) is not thread-safe: its C side logs through
# Python with static variables, and concurrent encoding and decoding in two
# threads crash the process (SIGSEGV). Every JPEG 2000 encode or decode
# here holds this lock; other code running openjpeg in threads should too.
OPENJPEG_LOCK = threading.Lock()
_OPENJPEG_SYNTAXES = frozenset(
    "1.2.840.10008.1.2.4." + str(n) for n in (90, 91, 92, 93, 201, 202, 203))

PIXEL_DATA = 0x7FE00010
_EXTENDED_OFFSET_TABLE = ("ExtendedOffsetTable", "ExtendedOffsetTableLengths")
_NATIVE_ONLY = ("FloatPixelData", "DoubleFloatPixelData")  # (7FE0,0008), (7FE0,0009): no encapsulated form
_ALL_TAGS = 0xFFFFFFFF
INFLATED_IN_MEMORY = 128 << 20  # bytes a deflated data set converted in memory may inflate to
LARGEST_FRAME = 2 * (1024 ** 3 // 4 // 3)  # samples of a rendered picture: Pillow's DecompressionBombError bound
LARGEST_DECODED_FRAME = 1 << 28  # samples of a frame decoded (16384 x 16384; 8000 x 8000 colour fits)
_UNDEFINED_LENGTH = 0xFFFFFFFF
_IMPLICIT_HEADER = struct.Struct("<HHL")
_EXPLICIT_HEADER = struct.Struct("<HH2sH")
# Decoded by pydicom masked to Bits Stored, unless told another precision.
_JPEG_PROCESSES = JPEG_LOSSY_SYNTAXES | JPEG_LOSSLESS_SYNTAXES
# Bytes per word of the binary VRs a change of byte order must swap.
WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
# Always lossy: the DCT-based JPEG processes, MPEG-2/4, HEVC.
_ALWAYS_LOSSY = frozenset(
    ["1.2.840.10008.1.2.4." + str(n) for n in (50, 51, 52, 53, 54, 55, 56, 59, 60, 61, 62, 63, 64)]
    + ["1.2.840.10008.1.2.4." + str(n) for n in range(100, 109)])
_LOSSY_METHODS = {JPEG_2000: "ISO_15444_1", JPEG_LS_NEAR_LOSSLESS: "ISO_14495_1",
                  JPEG_BASELINE: "ISO_10918_1", JPEG_EXTENDED: "ISO_10918_1"}


class TranscodeError(Exception):
    """The data set cannot be converted; the message says why."""


class _Problem(Exception):
    """A reason for a TranscodeError, completed by ``transcode``."""


class FrameTooLarge(TranscodeError):
    """The frame has more samples than checkFrameSize allows."""


def checkFrameSize(rows, columns, samples, largest=LARGEST_DECODED_FRAME):
    """FrameTooLarge when frames of ``rows`` x ``columns`` pixels of
    ``samples`` samples (numbers or their text; 1 when missing) have more
    than ``largest`` samples (``LARGEST_DECODED_FRAME`` to decode one,
    ``LARGEST_FRAME`` to make a picture of it): what a decoder would
    allocate for one that a tiny compressed file claims, before decoding
    it."""
    rows, columns, samples = (int(value or 1) for value in (rows, columns, samples))
    if rows * columns * samples > largest:
        made = "decodes a frame" if largest == LARGEST_DECODED_FRAME else "makes a picture"
        raise FrameTooLarge(f"its frames of {rows} x {columns} pixels of {samples} sample(s) are larger than the "
                            f"{largest} samples pacs {made} of")


def _clean(syntax):
    return syntax.rstrip("\x00 ") if syntax else ""


def _describe(syntax):
    name = UID(syntax).name if isUID(syntax) else ""
    return f"{name} ({syntax})" if name and name != syntax else repr(syntax)


def transcode(dataset, fromSyntax, toSyntax, quality=DEFAULT_QUALITY):
    """``dataset`` (bytes, no file meta), encoded in ``fromSyntax``,
    re-encoded in ``toSyntax``; the same object when both are the same.
    ``quality`` (1..100, Conquest's LossyQuality) is the lossy JPEG one.

    Raises TranscodeError, and only that, when it cannot be done.
    """
    source, target = _clean(fromSyntax), _clean(toSyntax)
    if source == target:
        return dataset
    try:
        return _transcode(dataset, source, target, quality)
    except TranscodeError:  # FrameTooLarge: complete
        raise
    except Exception as e:
        raise conversionError(source, target, e) from e


def conversionError(source, target, error):
    """The TranscodeError of a conversion from ``source`` to ``target``
    that failed with ``error``: its message, with its type when it is not
    one of ours."""
    reason = str(error) if isinstance(error, (_Problem, DatasetError)) else f"{type(error).__name__}: {error}"
    return TranscodeError(f"cannot convert from {_describe(source)} to {_describe(target)}: {reason}")


# -- encodings ------------------------------------------------------------------

def _encoding(syntax):
    """``(implicit, littleEndian)`` of the data set in ``syntax``."""
    if syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return True, True
    if syntax == EXPLICIT_VR_BIG_ENDIAN:
        return False, False
    if syntax in NATIVE:
        return False, True
    try:
        known = isUID(syntax) and UID(syntax).is_transfer_syntax
    except ValueError:  # a private UID pydicom knows nothing about
        known = False
    if not known:
        raise _Problem(f"{syntax!r} is not a transfer syntax known here")
    return False, True  # every encapsulated syntax: explicit VR little endian


def _write(ds, implicit, little, parentEncoding=None):
    fileobj = DicomBytesIO()
    fileobj.is_implicit_VR = implicit
    fileobj.is_little_endian = little
    if tuple(ds.original_encoding) != (implicit, little):
        keepUndecodable(ds)  # the writer decodes every value to re-encode it
    if parentEncoding is None:
        write_dataset(fileobj, ds)
    else:
        write_dataset(fileobj, ds, parentEncoding)
    return fileobj.getvalue()


def _finish(parts, target):
    """The output bytes from its pieces, deflated when ``target`` says so."""
    if target == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return deflated(parts)
    return parts[0] if len(parts) == 1 else b"".join(parts)


# -- the conversion -------------------------------------------------------------

def _transcode(data, source, target, quality):
    sourceImplicit, sourceLittle = _encoding(source)
    targetImplicit, targetLittle = _encoding(target)
    raw = inflated(data, INFLATED_IN_MEMORY) if source == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN else data
    # pydicom stops quietly at a truncated element; the walker does not.
    try:
        walkDataset(raw, EXPLICIT_VR_LITTLE_ENDIAN if source == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
                    else source, (), 0, _ALL_TAGS)
    except DatasetError as e:
        raise _Problem(f"the data set is malformed: {e}") from e

    if source in NATIVE and target in NATIVE and sourceLittle and targetLittle:
        parts = _littleEndianParts(raw, sourceImplicit, targetImplicit)
        if parts is not None:
            return _finish(parts, target)

    fileobj = BytesIO(raw)
    ds = read_dataset(fileobj, sourceImplicit, sourceLittle)
    if fileobj.tell() < len(raw):
        raise _Problem(f"the data set cannot be read past offset {fileobj.tell()}")
    if (sourceImplicit, sourceLittle) != (targetImplicit, targetLittle):
        keepUndecodable(ds)  # before swapBytes and the writer decode its values
    if ds.original_encoding[0]:
        # Settle 'US or SS', 'OB or OW' ... while the values are known to be
        # little endian: the writer would otherwise read them in the output's
        # byte order.
        correct_ambiguous_vr(ds, True)
    if not sourceLittle:
        swapBytes(ds)  # now little endian throughout
    if isCompressed(source):
        _decompressAll(ds, source)
    elif PIXEL_DATA in ds and ds[PIXEL_DATA].is_undefined_length:
        raise _Problem("its Pixel Data is encapsulated, which the syntax it is said to be in "
                       "does not allow")
    if isCompressed(target):
        for keyword in _NATIVE_ONLY:
            if keyword in ds:
                raise _Problem(f"its {keyword} can only be native (PS3.5 8: only Pixel Data is encapsulated)")
        if PIXEL_DATA in ds:
            _compress(ds, target, quality)
    elif not targetLittle:
        swapBytes(ds)
    return _finish([_write(ds, targetImplicit, targetLittle)], target)


def _atPixelData(tag, vr, length):
    return tag == PIXEL_DATA


def _littleEndianParts(raw, sourceImplicit, targetImplicit):
    """The output of a little endian -> little endian conversion as pieces,
    the Pixel Data value a view of ``raw``; None when the Pixel Data is not
    a plain value (then the general path handles it)."""
    layout = littleEndianLayout(BytesIO(raw), len(raw), sourceImplicit, targetImplicit)
    if layout is None:
        return None
    if layout.valueLength is None:
        return [layout.head]
    value = memoryview(raw)[layout.valueStart:layout.valueStart + layout.valueLength]
    return [layout.head, layout.pixelHeader, value, *layout.padding, *layout.tail]


@dataclass
class LittleEndianLayout:
    """A little endian data set re-encoded in another little endian one,
    but for its Pixel Data value: the elements before it (``head``, in the
    target encoding), the target's Pixel Data element header, where the
    value lies in the source (``valueStart``, ``valueLength``; None when
    there is no Pixel Data), the padding to an even length and the
    elements after it (``tail``, a list of 0 or 1 bytes)."""

    head: bytes
    pixelHeader: bytes = b""
    valueStart: int = 0
    valueLength: int = None
    padding: tuple = ()
    tail: list = ()


def littleEndianLayout(fileobj, end, sourceImplicit, targetImplicit, change=None):
    """The ``LittleEndianLayout`` of the data set from the position of
    ``fileobj`` (bytes or a file) to ``end`` there, with ``change(dataset)``
    (when given) applied to the elements around its Pixel Data
    (``changedAround``); None when its Pixel Data is not a plain value."""
    head = read_dataset(fileobj, sourceImplicit, True, stop_when=_atPixelData)
    implicit = head.original_encoding[0]  # pydicom may have found the other VR encoding
    encoding = head.original_character_set
    pos = fileobj.tell()
    if pos >= end:
        changedAround(head, None, change)
        return LittleEndianLayout(_write(head, targetImplicit, True))
    tag, vr, length, valueOffset = elementHeader(fileobj.read(12), 0, implicit)
    if tag != PIXEL_DATA or length == _UNDEFINED_LENGTH:
        return None
    if targetImplicit:
        header = _IMPLICIT_HEADER.pack(0x7FE0, 0x0010, length + length % 2)
    else:
        if vr not in (b"OB", b"OW"):
            # Implicit VR pixel data is OW (PS3.5 A.1), as pydicom makes it.
            bitsAllocated = head.get("BitsAllocated")
            vr = b"OB" if not implicit and bitsAllocated is not None and bitsAllocated <= 8 else b"OW"
        header = _EXPLICIT_HEADER.pack(0x7FE0, 0x0010, vr, 0) + LONG_LENGTH.pack(length + length % 2)
    tail = None
    if pos + valueOffset + length < end:
        fileobj.seek(pos + valueOffset + length)
        tail = read_dataset(fileobj, implicit, True, parent_encoding=encoding)
    tail = changedAround(head, tail, change)
    return LittleEndianLayout(_write(head, targetImplicit, True), header, pos + valueOffset, length,
                              (b"\x00",) if length % 2 else (),
                              [] if tail is None else [_write(tail, targetImplicit, True, encoding)])


def changedAround(head, tail, change):
    """Apply ``change(dataset)`` (None: no change) to a data set read
    without its Pixel Data value: ``head``, the elements before it, is
    changed in place; the elements after it, ``tail`` (a Dataset or None),
    are returned as the change leaves them (None when there are none)."""
    if change is None:
        return tail
    if tail is not None:
        head.update(tail)
    change(head)
    after = Dataset()
    for tag in [tag for tag in head.keys() if tag > PIXEL_DATA]:
        after[tag] = head[tag]
        del head[tag]
    return after if len(after) else None


def elementHeader(raw, pos, implicit):
    """``(tag, VR or None, length, value offset)`` of the little endian
    element header at ``pos`` of ``raw``."""
    if implicit:
        group, element, length = _IMPLICIT_HEADER.unpack_from(raw, pos)
        return group << 16 | element, None, length, pos + 8
    group, element, vr, length = _EXPLICIT_HEADER.unpack_from(raw, pos)
    if vr in LONG_VRS:
        return group << 16 | element, vr, LONG_LENGTH.unpack_from(raw, pos + 8)[0], pos + 12
    return group << 16 | element, vr, length, pos + 8


def pixelDataHeader(f, implicit):
    """``(VR or None, length)`` of the little endian Pixel Data element
    header at the position of ``f`` (in the implicit or explicit VR
    encoding ``implicit`` says), ``f`` left at its value; None, ``f``
    anywhere, when the element there is no Pixel Data."""
    header = f.read(12)
    if len(header) < 12:
        return None
    tag, vr, length, valueOffset = elementHeader(header, 0, implicit)
    if tag != PIXEL_DATA:
        return None
    f.seek(valueOffset - len(header), 1)
    return vr, length


def swapBytes(ds, strict=True):
    """Swap the byte order of the binary values of ``ds`` and its items,
    little <-> big endian. Pixel Data goes by sample, as pydicom reads big
    endian: Bits Allocated / 8 bytes, 8-bit OW data by 16-bit words.  A
    value that is no whole number of words is an error when ``strict``,
    else left as it is."""
    for element in ds:
        if element.VR == "SQ":
            for item in element.value or ():
                swapBytes(item, strict)
            continue
        size = WORD_SIZES.get(element.VR)
        value = element.value
        if element.tag == PIXEL_DATA:
            bitsAllocated = ds.get("BitsAllocated") or 0
            if element.is_undefined_length:
                continue  # encapsulated: a byte stream
            if bitsAllocated > 8:
                size = bitsAllocated // 8
            elif element.VR != "OW":
                size = None
        if not size or not value or size == 1:
            continue
        if len(value) % size:
            if not strict:
                continue
            raise _Problem(f"{element.tag} has {len(value)} bytes, not a whole number of "
                           f"{size}-byte words")
        element.value = np.frombuffer(value, dtype=f"u{size}").byteswap().tobytes()


def codecLock(syntax):
    return OPENJPEG_LOCK if syntax in _OPENJPEG_SYNTAXES else contextlib.nullcontext()


def _decompressAll(ds, source):
    """Decode the encapsulated Pixel Data of ``ds`` and of its items (icons)."""
    if PIXEL_DATA in ds and ds[PIXEL_DATA].is_undefined_length:
        _decompress(ds, source)
    for element in ds:
        if element.VR == "SQ":
            for item in element.value or ():
                _decompressAll(item, source)


def _decompress(ds, source):
    if not canDecode(source):
        raise _Problem("no decoder for its pixel data is installed")
    checkFrameSize(ds.get("Rows"), ds.get("Columns"), ds.get("SamplesPerPixel"))
    damage, toMend = framesFound(source, ds.PixelData, as_pixel_options(ds))
    if damage:
        raise _Problem(damage)
    lossy = codedLossy(source, ds.PixelData)
    if toMend:
        _mendScans(ds, int(ds.get("NumberOfFrames") or 1))
    options = codedPrecision(source, ds.PixelData, ds)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = source
    try:
        with codecLock(source):
            decompress(ds, as_rgb=convertsToRGB(ds), generate_instance_uid=False, **options)
    finally:
        del ds.file_meta
    for keyword in _EXTENDED_OFFSET_TABLE:
        if keyword in ds:
            delattr(ds, keyword)
    markDecodedLossy(ds, source, lossy)


def convertsToRGB(ds):
    """Whether decoding ``ds`` converts YBR colour to RGB, as pacs does
    (pydicom's conversion takes 8-bit samples only: colour in wider words,
    such as 8 bits stored in 16, stays in its colour space)."""
    return int(ds.get("BitsAllocated") or 8) <= 8


def codedLossy(syntax, encapsulated):
    """Whether pixel data in ``syntax``, ``encapsulated`` (bytes or a file,
    from its Basic Offset Table item), was coded lossily: always in the
    lossy syntaxes, in JPEG-LS near-lossless when the first scan's NEAR is
    above 0 (with 0 it is lossless)."""
    if syntax in _ALWAYS_LOSSY:
        return True
    if syntax != JPEG_LS_NEAR_LOSSLESS:
        return False
    return near(_firstFragment(encapsulated)) > 0


def codedPrecision(syntax, encapsulated, ds):
    """pydicom's decoding options for pixel data in ``syntax``,
    ``encapsulated`` (bytes or a file, from its Basic Offset Table item),
    of the image ``ds`` describes, that give back the bits above Bits
    Stored the stream holds, which pydicom would mask off: RLE codes whole
    words; a JPEG stream whose first frame has a precision above Bits
    Stored (DCMTK's true lossless mode, ours for embedded overlays) is
    decoded at that precision. {} when there is nothing more to keep."""
    bitsAllocated, bitsStored = ds.get("BitsAllocated") or 0, ds.get("BitsStored") or 0
    if syntax == RLE_LOSSLESS:
        precision = bitsAllocated
    elif syntax in _JPEG_PROCESSES:
        precision = samplePrecision(_firstFragment(encapsulated))
    else:
        return {}
    return {"bits_stored": precision} if bitsStored < precision <= bitsAllocated else {}


def _firstFragment(encapsulated):
    """The first fragment after the Basic Offset Table; b"" when the pixel
    data is not encapsulated as it should be (the decoder says so)."""
    try:
        fragments = generate_fragments(encapsulated)
        next(fragments, None)  # the Basic Offset Table
        return next(fragments, b"")
    except ValueError:
        return b""


def _mendScans(ds, count):
    """The ``count`` frames of ``ds`` (in a JPEG DCT syntax, with a frame
    ``framesFound`` finds to mend) whose scans have a spectral selection other than
    0..63 (``jpegmarkers.sequentialScansMended``) mended, as dcmdjpeg reads
    them, with a log line."""
    log.info("{uid}: JPEG scan start/stop not 0/63 in a sequential stream, decoded as 0/63",
             uid=ds.get("SOPInstanceUID"))
    frames = generate_frames(ds.PixelData, number_of_frames=count)
    ds.PixelData = encapsulate([sequentialScansMended(frame) or frame for frame in frames])


def markDecodedLossy(ds, source, lossy):
    """Lossy Image Compression "01" (and the method, when known) on ``ds``
    decoded from ``source`` if it was ``lossy`` and did not say so."""
    if lossy and ds.get("LossyImageCompression") != "01":
        ds.LossyImageCompression = "01"
        method = _LOSSY_METHODS.get(source)
        if method:
            ds.LossyImageCompressionMethod = [str(m) for m in _asList(ds.get("LossyImageCompressionMethod"))] + [
                method]


def _interleave(ds):
    """Planar configuration 1 (colour by plane) native data made colour by
    pixel, the only order pydicom's encoders take."""
    frames = int(ds.get("NumberOfFrames") or 1)
    samples, rows, columns = ds.SamplesPerPixel, ds.Rows, ds.Columns
    size = ds.BitsAllocated // 8
    planes = np.frombuffer(ds.PixelData, dtype=f"u{size}", count=frames * samples * rows * columns)
    data = planes.reshape(frames, samples, rows, columns).transpose(0, 2, 3, 1).tobytes()
    ds.PixelData = data + b"\x00" if len(data) % 2 else data
    ds.PlanarConfiguration = 0


def _compress(ds, target, quality):
    if not canEncode(target):
        raise _Problem("no encoder for it is installed")
    if (ds.get("SamplesPerPixel") or 1) > 1 and ds.get("PlanarConfiguration") == 1:
        _interleave(ds)
    if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
        ds.PixelData = expand_ybr422(ds.PixelData, ds.BitsAllocated)
        ds.PhotometricInterpretation = "YBR_FULL"
    for keyword in _EXTENDED_OFFSET_TABLE:
        if keyword in ds:
            delattr(ds, keyword)
    options = {}
    if target == JPEG_2000:
        options["j2k_cr"] = [100 / quality]
    elif target == JPEG_LS_NEAR_LOSSLESS:
        options["jls_error"] = nearError(quality)
    lossless = _lossless(target, options)
    if target in (JPEG_2000, JPEG_LS_NEAR_LOSSLESS) and not lossless and _narrowInWide(ds):
        options, lossless = _narrowLosslessOptions(ds, target), True
    before = len(ds.PixelData)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    try:
        if target in JPEG_LOSSLESS_SYNTAXES:
            encodeJpegLossless(ds, target)
        elif target in JPEG_LOSSY_SYNTAXES:
            encodeJpegLossy(ds, target, quality)
        elif target == RLE_LOSSLESS and isWide(ds):
            encodeWideRle(ds)
        else:
            wide = target != RLE_LOSSLESS and (_narrowInWide(ds) or lossless and usesBitsAboveHighBit(ds))
            with codecLock(target), _allBitsStored(ds) if wide else contextlib.nullcontext():
                if target == JPEG_LS_NEAR_LOSSLESS and not lossless and ds.get("PixelRepresentation") == 1:
                    _checkSignedNear(ds, options["jls_error"])
                compress(ds, target, generate_instance_uid=False, **options)
    finally:
        del ds.file_meta
    method = _LOSSY_METHODS.get(target)
    if method and not lossless:  # JPEG-LS with NEAR 0, reversible JPEG 2000 are bit-exact: never marked
        _markLossy(ds, before / max(len(ds.PixelData), 1), method)


def _lossless(target, options):
    """Whether pydicom's encoder writes ``target`` with ``options``
    losslessly at a precision of Bits Stored (RLE codes whole words)."""
    return target in (JPEG_LS_LOSSLESS, JPEG_2000_LOSSLESS) or (
        target == JPEG_LS_NEAR_LOSSLESS and options["jls_error"] == 0)


def _narrowLosslessOptions(ds, target):
    """The encoder options coding ``ds``, storing up to 8 bits in wider
    words, losslessly in the lossy ``target`` (JPEG 2000 reversible, at
    ratio 1; JPEG-LS with NEAR 0), with a log line: pydicom's encoders
    code such words at Bits Allocated precision only (``_narrowInWide``),
    where a lossy coding's error may take a value out of its Bits Stored
    range (255 to 256, masked to 8 bits black)."""
    log.info("{uid}: coded lossless in {syntax}, lossy coding not applied: its {stored} bits stored in "
             "{allocated} can only be coded at {allocated} bits, where a lossy coding's error would take "
             "values out of their {stored}-bit range", uid=ds.get("SOPInstanceUID"), syntax=_describe(target),
             stored=ds.BitsStored, allocated=ds.BitsAllocated)
    return {"j2k_cr": [1]} if target == JPEG_2000 else {"jls_error": 0}


def _checkSignedNear(ds, near):
    """_Problem, with a log line, when signed pixel values of ``ds`` lie
    within ``near`` of the ends of their Bits Stored range: JPEG-LS codes
    the words as unsigned samples, so its error would wrap the brightest
    to the darkest (12 bits: 2047 -> -2048). pydicom's encoder checks this
    for arrays only, not for the Pixel Data it is given here."""
    precision = ds.BitsStored
    values = signedValues(nativeFrames(ds, "JPEG-LS"), precision)
    low, high = int(values.min()), int(values.max())
    lowest, highest = near - (1 << (precision - 1)), (1 << (precision - 1)) - 1 - near
    if low < lowest or high > highest:
        reason = (f"its signed values span {low}..{high}, and JPEG-LS near-lossless (NEAR {near}) of "
                  f"{precision} bits stored keeps only {lowest}..{highest} from wrapping to the other end")
        log.info("{uid}: not coded in JPEG-LS near-lossless: {reason}", uid=ds.get("SOPInstanceUID"), reason=reason)
        raise _Problem(reason)


def _narrowInWide(ds):
    """Whether ``ds`` stores up to 8 bits in wider words, which pydicom's
    JPEG-LS and JPEG 2000 encoders would code as an 8-bit stream, decoded
    to 8-bit samples: half the Pixel Data of its Bits Allocated (and a
    stream dcmdjpls refuses)."""
    return (ds.get("BitsStored") or 0) <= 8 < (ds.get("BitsAllocated") or 0)


@contextlib.contextmanager
def _allBitsStored(ds):
    """``ds`` said to store all its Bits Allocated, for an encoder to code
    every bit (DCMTK's true lossless mode); its Bits Stored and High Bit
    back afterwards."""
    bitsStored, highBit = ds.BitsStored, ds.HighBit
    ds.BitsStored, ds.HighBit = ds.BitsAllocated, ds.BitsAllocated - 1
    try:
        yield
    finally:
        ds.BitsStored, ds.HighBit = bitsStored, highBit


def nearError(quality):
    """The JPEG-LS NEAR parameter for a LossyQuality, as Conquest computes
    it: 0 (lossless) from 91 up, 1 for 81..90 ... 9 below 2."""
    return 10 - (quality + 9) // 10


def _asList(value):
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _markLossy(ds, ratio, method):
    """Record one more lossy compression (PS3.3 C.7.6.1.1.2): its ratio and
    method appended to the earlier ones, kept as they are also when there
    are more of one than of the other (a ratio without its method, as many
    writers leave it), as DCMTK appends."""
    ratios = [str(r) for r in _asList(ds.get("LossyImageCompressionRatio"))]
    methods = [str(m) for m in _asList(ds.get("LossyImageCompressionMethod"))]
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = ratios + [f"{ratio:.2f}"]
    ds.LossyImageCompressionMethod = methods + [method]
