"""The media types of DICOMweb (PS3.18 section 8.7): a request's Accept
header read as the list of types it allows, and ``multipart/related``
bodies written (parts as they are made) and read (a STOW-RS request body,
split into parts without reading it all into memory)."""

import re
import uuid
from typing import NamedTuple

from pacscore.web.answers import WebError

CRLF = b"\r\n"
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")  # RFC 9110 12.4.2
_PARAMETER = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
SCAN_CHUNK = 1 << 20


class MediaType(NamedTuple):
    """A media range of an Accept header, or a Content-Type: ``name``
    (lower case) and its parameters (names lower case, values unquoted)."""

    name: str
    parameters: dict

    def get(self, name, default=""):
        return self.parameters.get(name, default)


def mediaType(text):
    """The MediaType of one Content-Type (or media range) text."""
    name = text.split(";", 1)[0].strip().lower()
    parameters = {}
    for key, value in _PARAMETER.findall(text[len(text.split(";", 1)[0]):]):
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        parameters[key.lower()] = value
    return MediaType(name, parameters)


def _splitAccept(text):
    """The media ranges of an Accept header (commas inside quotes kept)."""
    ranges, current, quoted = [], [], False
    for character in text:
        if character == '"':
            quoted = not quoted
        if character == "," and not quoted:
            ranges.append("".join(current))
            current = []
        else:
            current.append(character)
    ranges.append("".join(current))
    return [part.strip() for part in ranges if part.strip()]


def _specificity(media):
    """How narrowly a media range names types: ``*/*``, ``type/*``, a type, with parameters."""
    if media.name == "*/*":
        return 0
    return 1 if media.name.endswith("/*") else 2 + len(media.parameters)


def _covers(media, name, parameters):
    """Whether the media range ``media`` covers the type ``name`` with ``parameters``."""
    if media.name not in ("*/*", name) and not (media.name.endswith("/*") and name.startswith(media.name[:-1])):
        return False
    return all(parameters.get(key, "").lower() == value.lower() for key, value in media.parameters.items())


class Accepted(list):
    """The media ranges a request's Accept takes (q > 0), best first, and
    ``refused``: those it gives q=0 ("not acceptable", RFC 9110 12.4.2)."""

    def __init__(self, ranges, refused=()):
        super().__init__(ranges)
        self.refused = list(refused)

    def refuses(self, name, parameters=None, taken=None):
        """Whether the type ``name`` (with ``parameters``), a server's choice
        for the range ``taken``, falls under a q=0 range narrower than it
        (``*/*, image/png;q=0``: not PNG)."""
        narrowest = _specificity(taken) if taken is not None else -1
        return any(_covers(media, name, parameters or {}) and _specificity(media) > narrowest
                   for media in self.refused)


def accepted(request):
    """The Accepted media ranges of the request's Accept headers
    (``acceptedRanges``).  The ``accept`` query parameter (PS3.18 8.3.3.1)
    comes before the headers."""
    texts = [value.decode("latin-1") for value in request.args.get(b"accept", [])]
    texts += [value.decode("latin-1") for value in request.requestHeaders.getRawHeaders(b"accept", [])]
    return acceptedRanges(texts)


def acceptedRanges(texts, name="the Accept header"):
    """The Accepted media ranges of the Accept ``texts`` (lists of media
    ranges, as WADO-URI's ``contentType`` is too), best first (by ``q``,
    then in the order given); ``*/*`` when they have none, nothing when
    all they name are q=0.  A q that is not RFC 9110's qvalue (0 to 1, at
    most three decimals: no ``nan``, ``-1``, ``2`` or ``1_0``) is a 400 naming ``name``."""
    ranges, refused = [], []
    for position, part in enumerate(part for text in texts for part in _splitAccept(text)):
        media = mediaType(part)
        text = media.parameters.pop("q", "1")
        if not _QVALUE.fullmatch(text):
            raise WebError(400, f"{name} has a bad q value in {part!r}: a q is from 0 to 1, "
                                "with at most three decimals")
        quality = float(text)
        if quality > 0:
            ranges.append((-quality, position, media))
        else:
            refused.append(media)
    ranges.sort(key=lambda item: item[:2])
    if not ranges and not refused:
        return Accepted([MediaType("*/*", {})])
    return Accepted([media for _, _, media in ranges], refused)


def preferredType(request, types):
    """The first of ``types`` the request's Accept takes, ranges best
    first (a wildcard range takes the first of ``types`` it covers and no
    narrower q=0 range refuses; ``multipart/related; type="T"`` is T);
    None when it takes none."""
    ranges = accepted(request)
    for media in ranges:
        name = media.get("type").lower() if media.name == "multipart/related" else media.name
        if name in types:
            return name
        if media.name.endswith("*"):
            kind = next((kind for kind in types
                         if _covers(media, kind, {}) and not ranges.refuses(kind, taken=media)), None)
            if kind is not None:
                return kind
    return None


def newBoundary():
    return uuid.uuid4().hex


def multipartType(boundary, partType):
    """The Content-Type of a multipart/related answer whose parts are ``partType``."""
    return f'multipart/related; type="{partType}"; boundary={boundary}'


def partHeader(boundary, contentType, location=None):
    """The delimiter and headers opening one part."""
    lines = [b"--" + boundary.encode("ascii"), b"Content-Type: " + contentType.encode("ascii")]
    if location:
        lines.append(b"Content-Location: " + location.encode("utf-8"))
    return CRLF.join(lines) + CRLF + CRLF


def closing(boundary):
    """The delimiter closing a multipart body."""
    return b"--" + boundary.encode("ascii") + b"--" + CRLF


class Part(NamedTuple):
    """One part of a body read by ``splitParts``: its headers (names lower
    case) and where its content lies in the body file."""

    headers: dict
    start: int
    end: int


def _find(body, needle, start):
    """The offset of ``needle`` in the file ``body`` from ``start``, or -1;
    read in chunks, never whole."""
    overlap = len(needle) - 1
    position = start
    while True:
        body.seek(position)
        chunk = body.read(SCAN_CHUNK + overlap)
        found = chunk.find(needle)
        if found >= 0:
            return position + found
        if len(chunk) <= overlap:
            return -1
        position += len(chunk) - overlap


def _headers(block):
    headers = {}
    for line in block.split(CRLF):
        name, colon, value = line.partition(b":")
        if colon:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return headers


class TooManyParts(Exception):
    """A multipart body of more parts than ``splitParts`` was to take."""


def splitParts(body, boundary, most=0):
    """In the I/O pool: the Parts of the multipart body in the open file
    ``body``. ValueError when it is not one; TooManyParts (the body read no
    further) when it has more than ``most`` (0: any number)."""
    delimiter = b"--" + boundary.encode("latin-1")
    start = _find(body, delimiter, 0)
    if start < 0:
        raise ValueError(f"the body has no boundary {boundary!r}")
    parts = []
    while True:
        body.seek(start + len(delimiter))
        after = body.read(2)
        if after == b"--":
            return parts
        if most and len(parts) == most:
            raise TooManyParts(f"the body has more than {most} parts")
        headerStart = start + len(delimiter)
        headerEnd = _find(body, CRLF + CRLF, headerStart)
        if headerEnd < 0 or headerEnd - headerStart > 65536:
            raise ValueError(f"part {len(parts) + 1} has no end of its headers")
        body.seek(headerStart)
        headers = _headers(body.read(headerEnd - headerStart))
        contentStart = headerEnd + 4
        end = _find(body, CRLF + delimiter, contentStart)
        if end < 0:
            raise ValueError(f"part {len(parts) + 1} has no closing boundary")
        parts.append(Part(headers, contentStart, end))
        start = end + 2


class PartFile:
    """A read-only file of one part's content in the body file: ``read``,
    ``seek`` and ``tell`` within it."""

    def __init__(self, body, start, end):
        self.body = body
        self.start = start
        self.end = end
        self.position = 0

    def seek(self, offset, whence=0):
        base = {0: 0, 1: self.position, 2: self.end - self.start}[whence]
        self.position = max(base + offset, 0)
        return self.position

    def tell(self):
        return self.position

    def read(self, size=-1):
        left = max(self.end - self.start - self.position, 0)
        size = left if size is None or size < 0 else min(size, left)
        self.body.seek(self.start + self.position)
        data = self.body.read(size)
        self.position += len(data)
        return data
