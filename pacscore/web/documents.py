"""Encapsulated documents (PS3.3 C.24.2: PDF, CDA, STL ...) on the web:
the document a stored object holds, as its own bytes and type, for
WADO-URI (``contentType`` its type), WADO-RS ``rendered`` and the
``document`` mode (``slice=patid:sop``) the image lists' "pdf" links
lead to, as Orthanc serves an instance's PDF.

The type is the sender's (0042,0012), so a document must not decide what
runs in the archive's origin (an HTML page or SVG with a script would act
with the rights of whoever opens it): only types no browser runs script
from are shown (``INLINE``), any other is a download named after its
object (``<SOP Instance UID>.xml``, ``.stl``, ``.bin`` ...); every document is
sandboxed (``Content-Security-Policy: sandbox``: no script, an origin of
its own) and taken for the type it is sent as (``nosniff``).  Only its
``type/subtype`` decides; of its parameters a text's ``charset`` is kept
and the others dropped (empty ones skipped), and a type that is not a plain ``type/subtype``
with well-formed parameters (a line break, a header of its own) is sent
as bytes."""

import mimetypes
import re

import pydicom

from pacscore.control.finders import SOP_CLASS
from pacscore.storage.attributes import DatasetError
from pacscore.web.answers import Answer
from pacscore.web.contents import ENCAPSULATED_DOCUMENT, MIME_TYPE
from pacscore.web.html import link, url
from pacscore.web.objects import onFile, sliceReference, storedPath

PDF = "application/pdf"
PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
TYPES = (PDF, "text/xml", "model/stl", "model/obj", "model/mtl")  # PS3.3 C.24.2's documents
DOCUMENT_LENGTH = 0x00420015  # Encapsulated Document Length: without the padding
PDF_END = b"%%EOF"
BYTES = "application/octet-stream"
INLINE = (PDF, "text/plain", "image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp")  # run no script
SANDBOXED = (("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", "sandbox"))
EXTENSIONS = {"model/stl": ".stl", "model/obj": ".obj", "model/mtl": ".mtl",  # mimetypes knows none
              "application/xml": ".xml"}  # mimetypes' first is .xsl
_KNOWN_TYPES = mimetypes.MimeTypes()  # Python's own table alone, not the host's mime.types
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")  # RFC 6838 4.2
_TOKEN = r"[a-z0-9!#$%&'*+.^_`|~-]+"  # RFC 9110 5.6.2
_PARAMETER = re.compile(rf"[ \t]*({_TOKEN})=({_TOKEN}|\"{_TOKEN}\")[ \t]*")  # RFC 9110 5.6.6, quoted plainly


def documentOf(path):
    """``(MIME type, bytes)`` of the document the stored file ``path``
    encapsulates, without the padding the value got (DatasetError when it
    holds none)."""
    dataset = pydicom.dcmread(path, specific_tags=[ENCAPSULATED_DOCUMENT, MIME_TYPE, DOCUMENT_LENGTH],
                              force=True)  # Conquest's .v2 have no preamble
    if ENCAPSULATED_DOCUMENT not in dataset:
        raise DatasetError("it holds no Encapsulated Document")
    kind = str(dataset[MIME_TYPE].value or "").strip().lower() if MIME_TYPE in dataset else ""
    data = bytes(dataset[ENCAPSULATED_DOCUMENT].value or b"")
    length = dataset[DOCUMENT_LENGTH].value if DOCUMENT_LENGTH in dataset else None
    if length:
        return kind, data[:length]
    if kind == PDF and PDF_END in data:
        end = data.rindex(PDF_END) + len(PDF_END)
        rest = data[end:]
        return kind, data[:end] + rest[:len(rest) - len(rest.lstrip(b"\r\n"))]  # its end of line kept
    if kind.startswith("text/"):
        return kind, data.rstrip(b"\0 ")
    return kind, data


def documentAnswer(document, sop):
    """The Answer of a ``documentOf`` of the object ``sop`` (a UID):
    sandboxed, shown only when its type is one of ``INLINE``, else an
    attachment named ``<sop><extension of its type>``."""
    kind, data = document
    kind, parameters = mediaType(kind)
    extension = EXTENSIONS.get(kind) or _KNOWN_TYPES.guess_extension(kind) or ".bin"
    shown = () if kind in INLINE else (("Content-Disposition", f'attachment; filename="{sop}{extension}"'),)
    return Answer(data, kind + parameters, SANDBOXED + shown)


def mediaType(kind):
    """``(type/subtype, parameters kept)`` of a (0042,0012) ``kind``:
    ``"; charset=..."`` for a text with one, else ``""``; BYTES for a
    ``kind`` that is no media type with well-formed (or empty) parameters.  Only the
    ``type/subtype`` decides what a document is asked for by (WADO-URI's
    ``contentType``, WADO-RS ``rendered``'s Accept) and shown as."""
    base, _, rest = kind.partition(";")
    parameters = [_PARAMETER.fullmatch(parameter) for parameter in rest.split(";")
                  if parameter.strip(" \t")]  # RFC 9110 5.6.6 allows empty ones (a trailing ";")
    base = base.strip(" \t")
    if not _MEDIA_TYPE.fullmatch(base) or not all(parameters):
        return BYTES, ""
    charsets = [found[2].strip('"') for found in parameters if found[1] == "charset"]
    return base, (f"; charset={charsets[0]}" if charsets and base.startswith("text/") else "")


def documentLink(reference, match):
    """The "pdf" link of an image list's row (``{tag: value}`` with the
    SOP Class UID) for ``slice=reference``, None for an object that is no PDF."""
    if match[SOP_CLASS[0]].strip() != PDF_STORAGE:
        return None
    return link(url("document", slice=reference), "pdf")


async def document(archive, parameters):
    """The document an object (``slice=patid:sop``) encapsulates; 422 when it holds none."""
    patientID, sop = sliceReference(parameters.get("slice"))
    path = await storedPath(archive, sop, patientID)
    return documentAnswer(await onFile(archive, path, documentOf), sop)


MODES = {"document": document}
