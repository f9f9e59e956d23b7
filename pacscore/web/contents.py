"""What a stored object holds that decides how the web can answer it:
whether it has pixels to show as a picture, and the type of the document
it encapsulates (``Contents``, read in the I/O pool with ``objects.onFile``)."""

from typing import NamedTuple

import pydicom

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float and Double Float Pixel Data
ENCAPSULATED_DOCUMENT = 0x00420011
MIME_TYPE = 0x00420012  # MIME Type of Encapsulated Document
HEADER_VALUES = 1024  # larger values are skipped, not read


class Contents(NamedTuple):
    pixels: bool  # it has pixel data
    document: str  # the MIME type (lower case) of its Encapsulated Document, "" without one


def contents(path):
    """The Contents of the stored file ``path`` (its large values skipped)."""
    dataset = pydicom.dcmread(path, defer_size=HEADER_VALUES, force=True,  # Conquest's .v2 have no preamble
                              specific_tags=[*PIXEL_TAGS, ENCAPSULATED_DOCUMENT, MIME_TYPE])
    document = str(dataset[MIME_TYPE].value or "").strip().lower() if MIME_TYPE in dataset else ""
    return Contents(any(tag in dataset for tag in PIXEL_TAGS),
                    document if ENCAPSULATED_DOCUMENT in dataset else "")
