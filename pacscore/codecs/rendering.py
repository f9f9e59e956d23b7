"""One frame of a DICOM image as 8-bit grey or RGB pixels for display, as
Conquest's ``To8bitMonochromeOrRGB`` makes them for ``convert_to_gif``,
``convert_to_bmp`` and ``convert_to_jpg``:

- the frame (numbered from 0) of the pixel data, decoded (JPEG, JPEG 2000,
  RLE, NKI ...) and its samples reduced to Bits Stored (bits above High
  Bit, which lossless streams keep, masked off; signed ones sign-extended);
  colour made RGB, palette colour looked up;
- cut to a ``region`` (WADO-URI's fractions of the frame, or DICOMweb's
  SourceRegion in pixels), clamped to the frame;
- shrunk to ``size`` pixels at most across by keeping every f-th pixel of
  every f-th row, f the smallest whole factor that does it (never enlarged);
- grey values windowed: ``level``/``window`` in modality units (the
  Modality LUT or the Rescale Slope and Intercept applied), by ``function``
  (PS3.3 C.11.2.1.2: LINEAR, SIGMOID, or LINEAR_EXACT, Conquest's, when not
  named); when ``window`` is 0 the object's own VOI transform: the first
  VOI LUT of its VOI LUT Sequence (a first value mapped written as US read
  as signed when the values looked up can be negative), else its first
  Window Center and Width;
  with none, 8-bit data as it is, fewer bits (1-bit masks) scaled up to
  0..255 and wider data stretched from its smallest to its largest value
  in the whole frame (a region or a smaller picture of it too, so they
  keep its brightness; Conquest uses fixed ranges there); MONOCHROME1 inverted. Colour is not
  windowed.

A frame of more than ``transcode.LARGEST_FRAME`` samples (Rows x Columns x
Samples per Pixel) is refused before it is decoded (``checkFrameSize``, which
every other decode does with a larger bound): a 1 kB JPEG may declare
30000 x 30000 pixels, which decoding and windowing would take gigabytes for.
A JPEG or JPEG-LS frame cut before its end of image marker is refused
too (``encapsulatedframes``), not shown partly filled, and so is a frame
whose codestream header describes another image than the object does
(``codestreamheader``), which the decoder would allocate.
"""

from typing import NamedTuple

import numpy as np
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.pixels import apply_color_lut, get_decoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import UID

from pacscore.codecs import nkipixels
from pacscore.codecs.encapsulatedframes import frameDamage
from pacscore.codecs.pixeldescription import checkPixelDescription
from pacscore.codecs.pixelframes import atBitsStored
from pacscore.codecs.syntaxes import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
    UNCOMPRESSED, isCompressed)
from pacscore.codecs.transcode import (
    LARGEST_FRAME, TranscodeError, _atPixelData, checkFrameSize, codecLock, pixelDataHeader)
from pacscore.dicom.datasets import decodeDataset
from pacscore.storage.part10 import readFileMeta
from pacscore.storage.regularfiles import openRegularFile

LARGEST_FIT = 4096  # the widest and highest ``fitted`` is asked to make a picture: 48 MB of RGB
LINEAR, LINEAR_EXACT, SIGMOID = "LINEAR", "LINEAR_EXACT", "SIGMOID"  # the VOI LUT functions (PS3.3 C.11.2.1.3)
WINDOW_FUNCTIONS = (LINEAR, LINEAR_EXACT, SIGMOID)


def _first(value):
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    return None if value is None else float(value)


class FrameOutOfRange(TranscodeError):
    """The object has ``frames`` frames, none numbered ``frame`` (from 0)."""

    def __init__(self, frames, frame):
        super().__init__(f"it has {frames} frame(s), numbered from 0, not frame {frame}")
        self.frames = frames
        self.frame = frame


def _frame(ds, syntax, frame, source, **options):
    """The pixels of ``frame`` of ``ds``: (rows, columns) or (rows, columns,
    3). ``source`` holds its Pixel Data: ``ds`` itself, or a file at the
    element's value, which ``options`` describe.  A TranscodeError when
    they describe no pixels that can be decoded (``checkPixelDescription``)."""
    checkPixelDescription(ds, decoding=True)
    frames = int(ds.get("NumberOfFrames") or 1)
    if not 0 <= frame < frames:
        raise FrameOutOfRange(frames, frame)
    checkFrameSize(*(ds.get(name) for name in ("Rows", "Columns", "SamplesPerPixel")), largest=LARGEST_FRAME)
    try:
        damage = frameDamage(syntax, ds.PixelData if source is ds else source, frame,
                             as_pixel_options(ds) if source is ds else options)
        if damage:
            raise ValueError(damage)
        with codecLock(syntax):
            pixels, _ = get_decoder(syntax).as_array(source, index=frame, **options)
    except Exception as e:  # no decoder, damaged data: pydicom raises anything
        raise TranscodeError(f"its pixel data cannot be decoded: {e}") from e
    pixels = atBitsStored(pixels, ds)
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        if pixels.dtype != np.uint8:  # 16-bit palette entries
            pixels = (pixels >> 8).astype(np.uint8)
    return pixels


def fitted(pixels, width, height):
    """``pixels`` scaled (nearest neighbour, up or down) to fit ``width`` x
    ``height`` keeping their aspect ratio, as DICOMweb's ``viewport`` asks
    (either may be 0: not bounding; callers keep them within LARGEST_FIT,
    as a picture enlarged without bound would fill the memory)."""
    rows, columns = pixels.shape[:2]
    scales = [bound / extent for bound, extent in ((width, columns), (height, rows)) if bound > 0]
    if not scales:
        return pixels
    scale = min(scales)
    newRows, newColumns = max(round(rows * scale), 1), max(round(columns * scale), 1)
    return pixels[(np.arange(newRows) * rows // newRows)][:, (np.arange(newColumns) * columns // newColumns)]


def _shrunk(pixels, size):
    rows, columns = pixels.shape[:2]
    factor = max(-(-max(rows, columns) // size), 1) if size > 0 else 1
    return pixels[::factor, ::factor][:max(rows // factor, 1), :max(columns // factor, 1)]


def _lut(ds, sequence, signed):
    """The first LUT of the ``sequence`` (ModalityLUTSequence or
    VOILUTSequence) of ``ds`` as (entries as float32, first value mapped,
    bits per entry), by its LUT Descriptor (PS3.3 C.11.1.1.1, C.11.2.1.1):
    as many entries as its first value says (0: 65536); its second value
    read as signed when ``signed`` (the values looked up can be negative),
    as files often write -1024 as US 64512 (DCMTK and cornerstone read it
    so too). None when it has none or a damaged one (then it is as if it
    had none)."""
    luts = ds.get(sequence)
    if not luts:
        return None
    try:
        entries, first, bits = (int(value) for value in luts[0].LUTDescriptor)
        data = luts[0].LUTData
        if isinstance(data, bytes):  # OW
            bigEndian = getattr(ds, "file_meta", {}).get("TransferSyntaxUID") == EXPLICIT_VR_BIG_ENDIAN
            data = np.frombuffer(data, ">u2" if bigEndian else "<u2")
        table = np.asarray(data, np.float32).reshape(-1)[:entries % 65536 or 65536]  # an SS descriptor: 40000 reads -25536
    except Exception:  # no descriptor or data, or values that are not numbers
        return None
    bits %= 65536
    if not table.size or not 1 <= bits <= 16:
        return None
    if signed and first >= 32768:
        first -= 65536
    return table, first, bits


def _lookedUp(table, first, values):
    """The entries of ``table`` at ``values`` as a new float32 array: at
    ``first`` the first entry, below it the first too, above the last the
    last (PS3.3 C.11.1.1.1, C.11.2.1.1). ``values`` (signed integers, or
    floats, then rounded) are changed."""
    values -= first
    if values.dtype.kind == "f":
        np.rint(values, out=values)
    np.clip(values, 0, table.size - 1, out=values)
    return table[values.astype(np.int32, copy=False)]


def _modalityValues(ds, pixels):
    """``pixels`` in modality units (the Modality LUT looked up, or the
    Rescale Slope and Intercept applied) as a new float32 array, which the
    windowing then works on in place (a 16-bit frame is held twice, not
    eight times as float64 copies would), and whether values in those
    units can be negative, by the range of the stored values (Bits Stored
    and Pixel Representation), as DCMTK decides it."""
    signed = ds.get("PixelRepresentation") == 1
    lut = _lut(ds, "ModalityLUTSequence", signed)
    if lut is not None:  # its entries are unsigned
        return _lookedUp(lut[0], lut[1], pixels.astype(np.int32)), False
    values = pixels.astype(np.float32)
    slope, intercept = _first(ds.get("RescaleSlope")), _first(ds.get("RescaleIntercept"))
    if slope is None or intercept is None:
        return values, signed
    values *= slope
    values += intercept
    bits = int(ds.get("BitsStored") or 16)
    lowest = -2 ** (bits - 1) if signed else 0
    highest = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    return values, min(lowest * slope, highest * slope) + intercept < 0


def _windowed(values, center, width, function):
    """``values`` (in place) windowed into 0..255 (before clipping) by the
    VOI LUT ``function`` (PS3.3 C.11.2.1.2.1 and C.11.2.1.3); None: LINEAR_EXACT."""
    if function == SIGMOID:
        values -= center
        values *= -4 / width
        with np.errstate(over="ignore"):  # far below the center: exp() is inf, the value 0
            np.exp(values, out=values)
        values += 1
        np.divide(255, values, out=values)
    elif function == LINEAR:  # ((x - (c - 0.5)) / (w - 1) + 0.5): w = 1 is a threshold at c - 0.5
        values -= center - 0.5
        values *= 255 / max(width - 1, 1e-6)
        values += 127.5
    else:  # LINEAR_EXACT: (x - c) / w + 0.5
        values -= center - width / 2
        values *= 255 / width


def _voiLookedUp(ds, values, signed):
    """``values`` (modality units, in place; ``signed`` when they can be
    negative) looked up in the first VOI LUT of the object's VOI LUT
    Sequence and scaled from its entries' bits to 0..255, as a new array;
    None when it has none or a damaged one. Not pydicom's apply_voi: it
    indexes an 8-bit LUT with 8-bit numbers, wrapping after 256 entries."""
    lut = _lut(ds, "VOILUTSequence", signed)
    if lut is None:
        return None
    table, first, bits = lut
    table *= 255 / (2 ** bits - 1)
    return _lookedUp(table, first, values)


def _grey(ds, pixels, level, window, function=None, frame=None):
    """Grey ``pixels`` through the Modality LUT and a VOI transform into
    0..255: the window asked for, else the object's VOI LUT (preferred, as
    pydicom's ``apply_voi_lut`` does), else its window, else the range of
    the whole ``frame`` they were cut from (``pixels`` when None), so that
    a region or a smaller picture of it keeps its brightness."""
    values, signed = _modalityValues(ds, pixels)
    lookedUp = None if window else _voiLookedUp(ds, values, signed)
    if lookedUp is not None:
        values = lookedUp
    else:
        if not window:
            level, window = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        bits = int(ds.get("BitsStored") or 8)
        windowing = window and level is not None
        whole = values if windowing or frame is None else _modalityValues(ds, frame)[0]
        if windowing:
            _windowed(values, level, window, function)
        elif bits <= 8 and whole.min() >= 0:  # 8 bits as they are, fewer (1-bit masks) scaled up
            values *= 255 / (2 ** bits - 1)
        else:
            low, high = whole.min(), whole.max()
            values -= low
            values *= 255 / max(high - low, 1)
    np.rint(values, out=values)
    grey = np.clip(values, 0, 255, out=values).astype(np.uint8)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        np.subtract(255, grey, out=grey)
    return grey


class SourceRegion(NamedTuple):
    """A region of a frame in pixels, as DICOMweb's ``viewport`` names it
    (PS3.18 8.3.5.1.3: sx, sy, sw, sh): its left column and top row (from
    0), its width and height (at least 1; None: to the frame's edge); what
    lies beyond the frame is left out, a region that starts beyond it is
    RegionOutsideFrame."""

    x: int
    y: int
    width: int = None
    height: int = None


class RegionOutsideFrame(TranscodeError):
    """A SourceRegion that starts beyond the frame (``columns`` x ``rows``): nothing of it is there to show."""

    def __init__(self, region, columns, rows):
        super().__init__(f"the region from column {region.x}, row {region.y} lies outside the frame of "
                         f"{columns} x {rows} pixels")


def _cropped(pixels, region):
    """The part of ``pixels`` that ``region`` covers (at least one pixel):
    a SourceRegion, or (x-min, y-min, x-max, y-max) fractions of the width
    and height, as WADO-URI names it."""
    rows, columns = pixels.shape[:2]
    if isinstance(region, SourceRegion):
        if region.x >= columns or region.y >= rows:
            raise RegionOutsideFrame(region, columns, rows)
        right = columns if region.width is None else min(region.x + region.width, columns)
        bottom = rows if region.height is None else min(region.y + region.height, rows)
        return pixels[region.y:bottom, region.x:right]
    xmin, ymin, xmax, ymax = region
    left, top = min(int(xmin * columns), columns - 1), min(int(ymin * rows), rows - 1)
    right, bottom = max(round(xmax * columns), left + 1), max(round(ymax * rows), top + 1)
    return pixels[top:bottom, left:right]


def renderFrame(data, syntax, size=0, level=0, window=0, frame=0, region=None, function=None):
    """The 8-bit pixels of ``frame`` of the data set ``data`` (bytes in
    ``syntax``) for display: (rows, columns) grey or (rows, columns, 3)
    RGB uint8, only the ``region`` (x-min, y-min, x-max, y-max fractions,
    as WADO-URI asks, or a SourceRegion in pixels; None: all), at most ``size`` across (0: as large as it
    is). See the module docstring. TranscodeError when it has no image to
    show."""
    data = nkipixels.withPlainPixels(data, syntax)
    try:
        ds = decodeDataset(data, syntax)
    except Exception as e:  # IdentifierError, or anything pydicom raises on damage
        raise TranscodeError(f"the data set cannot be read: {e}") from e
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:  # decodeDataset inflated it
        syntax = EXPLICIT_VR_LITTLE_ENDIAN
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    if "PixelData" not in ds:
        raise TranscodeError("it has no Pixel Data")
    return _shown(ds, _frame(ds, syntax, frame, ds), size, level, window, region, function)


def renderFile(path, size=0, level=0, window=0, frame=0, region=None, function=None):
    """``renderFrame`` of the DICOM file ``path`` (Part-10 or a bare data
    set). In a little endian syntax, not deflated and without NKI pixel
    data, only the elements before the Pixel Data and the frame's own
    pixels are read (of a 100-frame object, one frame's, not all of them
    twice over); else the whole data set, as renderFrame reads it."""
    with openRegularFile(path) as f:
        syntax = readFileMeta(f)[0]
        start = f.tell()
        if syntax in UNCOMPRESSED or isCompressed(syntax):  # little endian, not deflated
            try:
                ds = read_dataset(f, syntax == IMPLICIT_VR_LITTLE_ENDIAN, True, stop_when=_atPixelData)
            except Exception as e:  # anything pydicom raises on damage
                raise TranscodeError(f"the data set cannot be read: {e}") from e
            if nkipixels.NKI_PIXEL_DATA not in ds:
                pixels = _frame(ds, syntax, frame, f, **_pixelOptions(f, ds, syntax))
                return _shown(ds, pixels, size, level, window, region, function)
            f.seek(start)
        return renderFrame(f.read(), syntax, size, level, window, frame, region, function)


def _pixelOptions(f, ds, syntax):
    """The decoding options of the Pixel Data element at the position of
    ``f`` (in the little endian ``syntax``, the elements before it ``ds``),
    ``f`` left at its value. TranscodeError when there is none."""
    found = pixelDataHeader(f, syntax == IMPLICIT_VR_LITTLE_ENDIAN)
    if found is None:
        raise TranscodeError("it has no Pixel Data")
    vr = found[0]
    options = as_pixel_options(ds, transfer_syntax_uid=UID(syntax), pixel_keyword="PixelData")
    if vr is not None:
        options["pixel_vr"] = vr.decode("ascii")
    return options


def _shown(ds, frame, size, level, window, region, function=None):
    """The ``frame`` (its pixels) of ``ds`` as renderFrame gives it."""
    pixels = _shrunk(frame if region is None else _cropped(frame, region), size)
    if pixels.ndim == 3:
        if pixels.dtype != np.uint8:
            pixels = (pixels >> (int(ds.get("BitsStored") or 16) - 8)).astype(np.uint8)
        return np.ascontiguousarray(pixels)
    return _grey(ds, pixels, level, window, function, None if pixels.shape == frame.shape else frame)
