"""POSTed forms (``application/x-www-form-urlencoded`` and
``multipart/form-data``), read in the I/O pool.  The site tells twisted.web
not to parse them itself: it would, on the reactor, for any POST to any
address (before a login is checked), with the whole body in memory.

A form's fields join the query's in ``request.args`` (a form field replaces
a query parameter of its name, as twisted.web does); uploaded files stay
in the request's body file (twisted.web keeps large bodies in a temporary
file), each an ``Upload`` in ``request.uploads``, so that an upload is
never held in memory.  A multipart form of more than ``DICOMwebMaxParts``
parts is refused whole (413), as a STOW-RS body is."""

import collections
from typing import NamedTuple

from twisted.web.http import parse_qs

from pacscore.web.answers import WebError
from pacscore.web.dicomweb.multipart import PartFile, TooManyParts, mediaType, splitParts
from pacscore.web.dicomweb.store import maxParts

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
FIELD_LIMIT = 1 << 20  # bytes of the fields that are not files


class Upload(NamedTuple):
    """An uploaded file: the name the browser gave and its content (a
    read-only file within the request body; read it in the I/O pool)."""

    filename: str
    file: PartFile

    @property
    def size(self):
        return self.file.end - self.file.start


def readForm(body, contentType, most=0):
    """In the I/O pool: ``(fields, uploads)`` (``{bytes: [bytes]}``,
    ``{bytes: [Upload]}``) of the form in the open file ``body``; ValueError
    when it is malformed or its fields are too large, TooManyParts when it
    has more than ``most`` parts (0: any number)."""
    media = mediaType(contentType)
    if media.name == URLENCODED:
        body.seek(0)
        data = body.read(FIELD_LIMIT + 1)
        if len(data) > FIELD_LIMIT:
            raise ValueError(f"the form's fields are larger than {FIELD_LIMIT >> 20} MB")
        return parse_qs(data, 1), {}
    boundary = media.get("boundary")
    if not boundary:
        raise ValueError("a multipart/form-data body without a boundary")
    fields, uploads, size = collections.defaultdict(list), collections.defaultdict(list), 0
    for part in splitParts(body, boundary, most):
        disposition = mediaType(part.headers.get("content-disposition", ""))
        name = disposition.get("name").encode("latin-1")
        if disposition.name != "form-data" or not name:
            continue
        if "filename" in disposition.parameters:
            filename = disposition.get("filename").encode("latin-1").decode("utf-8", "replace")
            uploads[name].append(Upload(filename, PartFile(body, part.start, part.end)))
            continue
        size += part.end - part.start
        if size > FIELD_LIMIT:
            raise ValueError(f"the form's fields are larger than {FIELD_LIMIT >> 20} MB")
        body.seek(part.start)
        fields[name].append(body.read(part.end - part.start))
    return dict(fields), dict(uploads)


async def readPostedForm(archive, request):
    """Add the fields of a POSTed form to ``request.args`` and set
    ``request.uploads`` (empty for anything else); a malformed form is a
    400, one of more than ``DICOMwebMaxParts`` parts a 413."""
    request.uploads = {}
    contentType = (request.getHeader(b"content-type") or b"").decode("latin-1")
    if request.method != b"POST" or request.content is None or mediaType(contentType).name not in (URLENCODED,
                                                                                                   MULTIPART):
        return
    try:
        fields, request.uploads = await archive.workers.deferToWorker(readForm, request.content, contentType,
                                                                      maxParts(archive.configuration.ini))
    except TooManyParts as e:
        raise WebError(413, f"the form cannot be read: {e} (DICOMwebMaxParts)") from e
    except ValueError as e:
        raise WebError(400, f"the form cannot be read: {e}") from e
    request.args.update(fields)
