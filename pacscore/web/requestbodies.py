"""How much of a request body the web interface takes, decided from the
request line and headers before any of the body is read (twisted.web
would otherwise spool any body, of any size, to a temporary file first):
the uploads (a POST to the CGI pages, ``/cgi-bin/dgate``, whose forms
upload files, and STOW-RS, to ``/dicom-web/studies``) up to
``WebMaxUploadMB`` megabytes, any other request up to ``SMALL_BODY``
bytes.  The channel (``pacscore.web.channel``) refuses a larger
Content-Length at once; a chunked body is counted as it comes."""

from urllib.parse import unquote_to_bytes

from twisted.web import server

SMALL_BODY = 64 * 1024  # bytes of the body of a request that takes none
DEFAULT_UPLOAD_MB = 4096  # WebMaxUploadMB
UPLOAD_PATHS = ((b"cgi-bin", b"dgate"), (b"cgi-bin", b"dgate.exe"), (b"dicom-web", b"studies"))


def uploadLimit(ini):
    """``WebMaxUploadMB`` of dicom.ini in bytes (0: no limit)."""
    return max(ini.getint("WebMaxUploadMB", DEFAULT_UPLOAD_MB), 0) * 1024 * 1024


def bodyLimit(method, uri, uploads):
    """The most bytes the body of a ``method`` request (bytes) for ``uri``
    (its path and query, bytes) may have: ``uploads`` (0: no limit) for a
    POST taking uploads, SMALL_BODY for the others."""
    segments = [unquote_to_bytes(segment) for segment in uri.split(b"?", 1)[0].split(b"/")[1:3]]
    return uploads if method == b"POST" and tuple(segments) in UPLOAD_PATHS else SMALL_BODY


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
