"""The native frames our JPEG encoders (``jpeglossless``, ``jpeglossy``)
take from a data set, the signed values their words hold, the
encapsulated Pixel Data they put back, whether native pixel data holds
bits above its High Bit, which a lossless codec must then code too, and
decoded samples reduced to Bits Stored for display."""

import numpy as np
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.valuerep import VR

_SUBSAMPLED = ("YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420")
_CHUNK = 1 << 20  # the words usesBitsAboveHighBit looks through at once, to stop at the first piece with some


def nativeFrames(ds, codec):
    """The frames of the native Pixel Data of ``ds`` (little endian, 8 or
    16 bits allocated, 1 sample or 3 by pixel, high bit on top of the bits
    stored), as an array (frames, rows, columns, samples) of the stored
    words. ValueError, naming ``codec``, for anything else."""
    samples = ds.get("SamplesPerPixel") or 1
    bitsAllocated, bitsStored = ds.get("BitsAllocated"), ds.get("BitsStored")
    photometric = ds.get("PhotometricInterpretation") or ""
    if samples not in (1, 3):
        raise ValueError(f"{codec} is written here for 1 or 3 samples per pixel, not {samples}")
    if samples == 3 and (ds.get("PlanarConfiguration") or 0) != 0:
        raise ValueError("colour by plane (Planar Configuration 1) must be interleaved first")
    if photometric in _SUBSAMPLED:
        raise ValueError(f"{photometric} pixel data must be expanded first")
    if bitsAllocated not in (8, 16):
        raise ValueError(f"{codec} takes 8 or 16 bits allocated, not {bitsAllocated}")
    if bitsStored is None or not 2 <= bitsStored <= bitsAllocated:
        raise ValueError(f"{codec} cannot take {bitsStored} bits stored of {bitsAllocated}")
    if ds.get("HighBit", bitsStored - 1) != bitsStored - 1:
        raise ValueError(f"the high bit ({ds.HighBit}) is not the top one of {bitsStored} bits stored")
    frames = int(ds.get("NumberOfFrames") or 1)
    shape = (frames, ds.Rows, ds.Columns, samples)
    count = int(np.prod(shape))
    dtype = np.dtype("<u1" if bitsAllocated == 8 else "<u2")
    if len(ds.PixelData) < count * dtype.itemsize:
        raise ValueError(f"Pixel Data has {len(ds.PixelData)} bytes, not the "
                         f"{count * dtype.itemsize} of {frames} frame(s) of {shape[1:]}")
    return np.frombuffer(ds.PixelData, dtype, count).reshape(shape)


def signedValues(words, bitsStored):
    """Stored words as the signed ``bitsStored``-bit values they hold."""
    values = words.astype(np.int64) & ((1 << bitsStored) - 1)
    return values - ((values >> (bitsStored - 1)) << bitsStored)


def usesBitsAboveHighBit(ds):
    """Whether the native Pixel Data of ``ds`` (little endian, its High
    Bit the top one of its Bits Stored) has samples with bits set above
    High Bit other than the sign's extension: pixel-embedded overlays (the
    retired (60xx,0100) Overlay Bits Allocated 16) and the like, which a
    codec working at a precision of Bits Stored drops. A range check a
    piece at a time: no copy of the data, and done at the first piece that
    has some."""
    bitsAllocated, bitsStored = ds.get("BitsAllocated"), ds.get("BitsStored")
    if bitsAllocated not in (8, 16, 32) or not bitsStored or bitsStored >= bitsAllocated:
        return False
    size = bitsAllocated // 8
    if ds.get("PixelRepresentation") == 1:  # within range: the upper bits are the sign's extension
        words = np.frombuffer(ds.PixelData, f"<i{size}", len(ds.PixelData) // size)
        lowest, highest = -1 << (bitsStored - 1), (1 << (bitsStored - 1)) - 1
    else:
        words = np.frombuffer(ds.PixelData, f"<u{size}", len(ds.PixelData) // size)
        lowest, highest = 0, (1 << bitsStored) - 1
    for start in range(0, words.size, _CHUNK):
        chunk = words[start:start + _CHUNK]
        if chunk.min() < lowest or chunk.max() > highest:
            return True
    return False


def atBitsStored(pixels, ds):
    """Decoded samples ``pixels`` of ``ds`` as its Bits Stored show them:
    the bits above High Bit (an embedded overlay a lossless stream kept)
    masked off, signed samples sign-extended from High Bit, as pydicom
    reads native data; ``pixels`` itself when nothing is above."""
    bits, bitsStored = pixels.dtype.itemsize * 8, ds.get("BitsStored") or 0
    if pixels.dtype.kind not in "iu" or not 0 < bitsStored < bits:
        return pixels
    if ds.get("PixelRepresentation") == 1:
        shift = bits - bitsStored
        return (pixels.view(f"i{pixels.dtype.itemsize}") << shift) >> shift
    return pixels & pixels.dtype.type((1 << bitsStored) - 1)


def encapsulateFrames(ds, codestreams, transferSyntax):
    """Replace the Pixel Data of ``ds`` by ``codestreams``, one per frame,
    encapsulated with a basic offset table, and set
    ``ds.file_meta.TransferSyntaxUID``, as pydicom's ``Dataset.compress`` does."""
    ds.PixelData = encapsulate(list(codestreams))
    element = ds["PixelData"]
    element.VR = VR.OB
    element.is_undefined_length = True
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transferSyntax
