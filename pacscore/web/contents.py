"""What a stored object holds that decides how the web can answer it:
whether it has pixels to show as a picture (``Contents``, read in the I/O
pool with ``objects.onFile``)."""

from typing import NamedTuple

import pydicom

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float and Double Float Pixel Data
HEADER_VALUES = 1024  # larger values are skipped, not read


class Contents(NamedTuple):
    pixels: bool  # it has pixel data


def contents(path):
    """The Contents of the stored file ``path`` (its large values skipped)."""
    dataset = pydicom.dcmread(path, defer_size=HEADER_VALUES, specific_tags=list(PIXEL_TAGS))
    return Contents(any(tag in dataset for tag in PIXEL_TAGS))
