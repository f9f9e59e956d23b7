"""The Image Pixel module (PS3.3 C.7.6.3) of a stored object checked
before its frames are placed or decoded.

pacs stores objects with odd pixel attributes as Conquest does (a Rows of
two values, Columns 0, no Photometric Interpretation), so what reads their
pixels cannot take them as plain numbers: an offset divided by a frame of
0 bytes, ``int`` of two values, pydicom's decoder asked for a 1-bit palette
fail with errors that say nothing of the object.  ``checkPixelDescription``
names the attribute instead, as a TranscodeError: the object "cannot be
shown" (a 422 on the web, an ERROR line of a command), logged where it
is caught.
"""

from pydicom.datadict import dictionary_description
from pydicom.multival import MultiValue

from pacscore.codecs.transcode import TranscodeError

_SIZES = ("Rows", "Columns", "BitsAllocated")
_PALETTE = "PALETTE COLOR"
_PALETTE_DESCRIPTORS = ("RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
                        "BluePaletteColorLookupTableDescriptor")


class PixelDescriptionError(TranscodeError):
    """The Image Pixel module describes no pixels that can be read."""


def checkPixelDescription(ds, decoding=False):
    """PixelDescriptionError naming the first attribute of ``ds`` (a
    pydicom Dataset) its frames cannot be placed or decoded by: Rows,
    Columns, Bits Allocated missing or not one whole number from 1;
    Samples per Pixel not one whole number from 1, Number of Frames not
    one whole number from 0 (absent or 0: one frame, as pydicom and
    ``frameCount`` read it), Pixel Representation not one of 0 and 1;
    Photometric Interpretation of more than one value.  ``decoding`` (the
    pixels decoded, not copied as they are): Samples per Pixel,
    Photometric Interpretation and Pixel Representation present too, Bits
    Stored (frames are placed by Bits Allocated) one whole number from 1,
    and a palette colour image's three descriptors of entries of 8 or 16
    bits."""
    for name in _SIZES:
        _atLeast(ds, name, 1, required=True)
    _atLeast(ds, "SamplesPerPixel", 1, required=decoding)
    _atLeast(ds, "NumberOfFrames", 0, required=False)
    if decoding:
        _atLeast(ds, "BitsStored", 1, required=False)
    if _atLeast(ds, "PixelRepresentation", 0, required=decoding) not in (None, 0, 1):
        raise PixelDescriptionError(f"its Pixel Representation {ds.PixelRepresentation} is neither 0 nor 1")
    photometric = _single(ds, "PhotometricInterpretation", required=decoding)
    if decoding and photometric == _PALETTE:
        for name in _PALETTE_DESCRIPTORS:
            descriptor = ds.get(name)
            if not isinstance(descriptor, (list, MultiValue)) or len(descriptor) != 3 or descriptor[2] not in (8, 16):
                raise PixelDescriptionError(f"it is {_PALETTE} with a {dictionary_description(name)} of "
                                            f"{_text(descriptor)}, not three values the last 8 or 16 (bits an entry)")


def _atLeast(ds, name, least, required):
    """The whole number ``name`` of ``ds``, at least ``least``; None when
    absent or empty and not ``required``."""
    value = _single(ds, name, required)
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, float) and number != value or number < least:
        raise PixelDescriptionError(f"its {dictionary_description(name)} {_text(value)} is not a whole number "
                                    f"from {least}")
    return number


def _single(ds, name, required):
    """The one value of ``name`` of ``ds``; None when absent or empty and
    not ``required``."""
    value = ds.get(name)
    if value is None or value == "":
        if required:
            raise PixelDescriptionError(f"its pixels are described without {dictionary_description(name)}")
        return None
    if isinstance(value, (list, MultiValue)):
        raise PixelDescriptionError(f"its {dictionary_description(name)} {_text(value)} holds {len(value)} values, "
                                    "not one")
    return value


def _text(value):
    return "\\".join(str(v) for v in value) if isinstance(value, (list, MultiValue)) else str(value)
