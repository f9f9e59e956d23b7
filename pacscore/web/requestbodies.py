"""How much of a request body the web interface takes, decided from the
request line and headers before any of the body is read (twisted.web
would otherwise spool any body, of any size, to a temporary file first):
the uploads (a POST to the CGI pages, ``/cgi-bin/dgate``, whose forms
upload files, and STOW-RS, to ``/dicom-web/studies``) up to
``WebMaxUploadMB`` megabytes, any other request up to ``SMALL_BODY``
bytes.  The channel (``pacscore.web.channel``) refuses a larger
Content-Length at once; a chunked body is counted as it comes.

Once the login is known (``admittedBody``), an upload that would be
refused anyway is refused before its body is read too: a STOW-RS with
``DICOMwebStore = 0`` or by a user not in ``WebWriters``, and a POST of
a page that changes the archive (``mode=addlocalfile``, ...) where the
pages may not (``WebReadOnly = 1``, ``WebWriters``), are a 403; any other
POST to the pages there may send a form's fields, no file
(``FORM_BODY``)."""

from urllib.parse import parse_qs, unquote_to_bytes

from twisted.web import server

from pacscore.web.answers import WebError
from pacscore.web.dicomweb.store import stowRefusal
from pacscore.web.edits import REQUEST_MODES, changeRefusal
from pacscore.web.forms import FIELD_LIMIT

SMALL_BODY = 64 * 1024  # bytes of the body of a request that takes none
DEFAULT_UPLOAD_MB = 4096  # WebMaxUploadMB
FORM_BODY = 2 * FIELD_LIMIT  # bytes of a form whose files are not taken: its fields and their framing
UPLOAD_PATHS = ((b"cgi-bin", b"dgate"), (b"cgi-bin", b"dgate.exe"), (b"dicom-web", b"studies"))


def uploadLimit(ini):
    """``WebMaxUploadMB`` of dicom.ini in bytes (0: no limit)."""
    return max(ini.getint("WebMaxUploadMB", DEFAULT_UPLOAD_MB), 0) * 1024 * 1024


def bodyLimit(method, uri, uploads):
    """The most bytes the body of a ``method`` request (bytes) for ``uri``
    (its path and query, bytes) may have: ``uploads`` (0: no limit) for a
    POST taking uploads, SMALL_BODY for the others."""
    return uploads if _uploadPath(method, uri) else SMALL_BODY


def admittedBody(method, uri, uploads, ini, user):
    """``bodyLimit`` for the WebUsers ``user`` (None: no login) by
    dicom.ini's ``ini``; a WebError 403 when the request can only be refused."""
    path = _uploadPath(method, uri)
    if path is None:
        return SMALL_BODY
    if path[0] == b"dicom-web":
        refusal = stowRefusal(ini, user)
    else:
        refusal = changeRefusal(ini, user)
        if refusal is not None and _mode(uri) not in REQUEST_MODES:
            return FORM_BODY  # a form asking for what the pages may do, or for the mode its body names
    if refusal is not None:
        raise WebError(403, refusal)
    return uploads


def _uploadPath(method, uri):
    """The UPLOAD_PATHS item of a POST taking uploads, else None."""
    segments = tuple(unquote_to_bytes(segment) for segment in uri.split(b"?", 1)[0].split(b"/")[1:3])
    return segments if method == b"POST" and segments in UPLOAD_PATHS else None


def _mode(uri):
    """The page ``uri`` asks for in its query (``mode``; "" when none)."""
    query = uri.partition(b"?")[2].decode("latin-1")
    return (parse_qs(query).get("mode") or [""])[0].strip().lower()


class CountedRequest(server.Request):
    """A request whose body, counted as it comes (a chunked one has no
    Content-Length to check first), is refused by its channel
    (``bodyTooLarge``) past ``bodyLimit`` bytes (0: no limit)."""

    bodyLimit = 0
    bodyReceived = 0

    def handleContentChunk(self, data):
        self.bodyReceived += len(data)
        if self.bodyLimit and self.bodyReceived > self.bodyLimit:
            self.channel.bodyTooLarge(self)
        else:
            super().handleContentChunk(data)
