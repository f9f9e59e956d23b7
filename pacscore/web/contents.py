"""What a stored object holds that decides how the web can answer it:
whether it has pixels to show as a picture (Pixel Data, or Conquest's NKI
compressed pixel data in (7FDF,0010), which rendering expands), and the
type of the document it encapsulates (``Contents``, read in the I/O pool
with ``objects.onFile``)."""

from typing import NamedTuple

import pydicom

from pacscore.codecs.nkipixels import NKI_PIXEL_DATA, nkiStream

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float and Double Float Pixel Data
ENCAPSULATED_DOCUMENT = 0x00420011
MIME_TYPE = 0x00420012  # MIME Type of Encapsulated Document
HEADER_VALUES = 1024  # larger values are skipped, not read


class Contents(NamedTuple):
    pixels: bool  # it has pixel data, NKI compressed or not
    document: str  # the MIME type (lower case) of its Encapsulated Document, "" without one


def contents(path):
    """The Contents of the stored file ``path`` (its large values skipped
    but a (7FDF,0010) without Pixel Data: ``_holdsNKI``)."""
    dataset = pydicom.dcmread(path, defer_size=HEADER_VALUES, force=True,  # Conquest's .v2 have no preamble
                              specific_tags=[*PIXEL_TAGS, NKI_PIXEL_DATA, ENCAPSULATED_DOCUMENT, MIME_TYPE])
    document = str(dataset[MIME_TYPE].value or "").strip().lower() if MIME_TYPE in dataset else ""
    pixels = any(tag in dataset for tag in PIXEL_TAGS) or NKI_PIXEL_DATA in dataset and _holdsNKI(path)
    return Contents(pixels, document if ENCAPSULATED_DOCUMENT in dataset else "")


def _holdsNKI(path):
    """Whether the (7FDF,0010) of the stored file ``path`` is NKI compressed
    pixel data (``nkiStream``: not Acuson's or Elscint's), its value read
    whole, not deferred (pydicom would decode a deferred one as the text of
    a private creator)."""
    return nkiStream(pydicom.dcmread(path, force=True, specific_tags=[NKI_PIXEL_DATA])) is not None
