"""Conquest's downsizing compression codes (k1 ... kc): an image wider or
higher than the code's size is subsampled by the smallest whole factor that
brings its larger side to that size or less, keeping every factor-th pixel
of every factor-th row (as Conquest's ``MaybeDownsize``); Rows, Columns,
Pixel Spacing and Imager Pixel Spacing (times the factor, also when the
size is not a whole number of factors) follow. As in Conquest only
single-frame images with a Pixel Spacing are downsized; the data set must
have native pixel data.
"""

import numpy as np

from pacscore.codecs.transcode import TranscodeError
from pacscore.dicom.datasets import IdentifierError, decodeDataset, encodeDataset

# The pixel spacings, each factor times larger once every factor-th pixel is kept.
SPACINGS = ("PixelSpacing", "ImagerPixelSpacing")

SIZES = {"k1": 1024, "k2": 512, "k4": 256, "k8": 128, "ka": 64, "kb": 32, "kc": 16}


def _decode(data, syntax, stopBeforePixels=False):
    try:
        return decodeDataset(data, syntax, stopBeforePixels)
    except IdentifierError as e:
        raise TranscodeError(f"the data set cannot be read: {e}") from e


def needsDownsizing(data, syntax, size):
    """Whether the image of ``data`` (in ``syntax``) is larger than ``size``
    and ``downsizeDataset`` can make it smaller; TranscodeError when the
    data set cannot be read."""
    return _plan(_decode(data, syntax, stopBeforePixels=True), size) is not None


def _plan(ds, size):
    """``(factor, new rows, new columns)``, or None when ``ds`` is not downsized."""
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if not rows or not columns or (rows <= size and columns <= size):
        return None
    if int(ds.get("NumberOfFrames") or 1) > 1 or "PixelSpacing" not in ds:
        return None
    if (ds.get("BitsAllocated") or 0) % 8:
        return None
    factor = -(-max(rows, columns) // size)
    return factor, max(rows // factor, 1), max(columns // factor, 1)


def downsizeDataset(data, syntax, size):
    """``data`` (native pixel data, in ``syntax``) with its image downsized
    to ``size`` pixels at most across; None when it is not downsized.
    TranscodeError when the data set cannot be read."""
    ds = _decode(data, syntax)
    plan = _plan(ds, size)
    if plan is None or "PixelData" not in ds or ds["PixelData"].is_undefined_length:
        return None
    factor, newRows, newColumns = plan
    rows, columns = ds.Rows, ds.Columns
    samples = int(ds.get("SamplesPerPixel") or 1)
    sampleBytes = ds.BitsAllocated // 8
    wanted = rows * columns * samples * sampleBytes
    pixels = np.frombuffer(ds.PixelData, dtype=np.uint8)
    if len(pixels) < wanted:
        return None
    if samples > 1 and ds.get("PlanarConfiguration") == 1:
        planes = pixels[:wanted].reshape(samples, rows, columns, sampleBytes)
        kept = planes[:, ::factor, ::factor][:, :newRows, :newColumns]
    else:
        image = pixels[:wanted].reshape(rows, columns, samples * sampleBytes)
        kept = image[::factor, ::factor][:newRows, :newColumns]
    value = kept.tobytes()
    ds.PixelData = value + b"\x00" if len(value) % 2 else value
    ds.Rows, ds.Columns = newRows, newColumns
    for keyword in SPACINGS:
        if ds.get(keyword):
            setattr(ds, keyword, [f"{float(v) * factor:g}" for v in ds[keyword].value])
    return encodeDataset(ds, syntax)
