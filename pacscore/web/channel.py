"""The web interface's HTTP channel: a request line longer than
twisted.web takes (``MAX_LENGTH``, 16 kB: a QIDO list of some 260 UIDs, a
long page parameter) is answered ``414 URI Too Long``, and a header line
as long, or the request line and header lines longer than that in all
(``totalHeadersSize``: a long QIDO and a browser's cookies),
``431 Request Header Fields Too Large``, each with an error page
and a log line naming the client, where twisted.web closed the connection
without a word (RFC 9110 15.5.15; Apache answers 414 above its
``LimitRequestLine`` too).  Such a refusal of a request for what is
shared with the origins ``WebAllowOrigins`` lists (DICOMweb, WADO) names
the request's Origin as the site's answers do: it is sent once the rest of
the head has been read (each read searched once, whatever the length of
its lines, the rest of a line too long dropped, ``ORIGIN_SCAN_BYTES`` at
most, within the head's timeout) for the Origin; any other is sent at once.  A request line whose target holds a byte
that is not printable ASCII (a raw UTF-8 ``müller`` of a script or a
hand-typed ``curl``, which browsers percent-encode, any other byte above
0x7E, a control character) or a raw space, or whose method, target and
version are not separated by single spaces (a space doubled, leading or
trailing), gets a 400 page saying which and a log line, where twisted.web
answered a bare 400 and logged nothing; so does a line without an HTTP
version (HTTP/0.9's form) whose target holds such a byte.  Any other line
without a version still gets twisted.web's bare 400 (HTTP/0.9 is served
by no one here).

A request body is refused from the request's headers, before any of it is
read (twisted.web spools any body to a temporary file first): ``413
Content Too Large`` for a Content-Length over what the request may send
(``pacscore.web.requestbodies``), or as soon as a chunked body goes past
it, and, with ``WebUsers``, ``401`` when the headers log nobody in (the
body waits, unread, while the password is checked); then ``403`` when
the request can only be refused (``requestbodies.admittedBody``).

The request line and headers must all have come within ``headTimeout``
seconds of the connection, or of the answer to the request before: a
client sending a header line every few seconds (slowloris) is answered
``408 Request Timeout`` with a log line and cut off, as Apache's
``mod_reqtimeout`` does; an idle connection that began no request is
closed without a word, but for one whose TLS handshake did not complete
(logged, as DICOM's ARTIM logs it, also when the site's idle timeout,
TCPIPTimeOut, is the shorter and cuts it first).  The body read after
them must then come at ``bodyMinRate`` bytes a second: ``bodyWindow``
seconds without that much of it (``bodyMinRate`` times ``bodyWindow``) or
its end is a ``408`` with a log line too (a body sent a byte at a time,
slowloris moved from the head to the body, "R-U-D-Y"); mod_reqtimeout's
default, ``body=20,MinRate=500``, checked a window at a time, so that
an upload fast at first is not given hours to trickle its rest.

After such an answer the connection closes the way Apache's lingering
close does: the answer is followed by the end of what the server sends
(a FIN, over TLS a close_notify) while the rest of the request is read
and dropped until the client closes too, ``lingerSeconds`` or
``lingerBytes`` at most, then the connection is aborted.  A client that
sends the whole body before it reads (python-requests) thus sees the
answer, and a connection is not left half-closed, holding its slot.

A connection whose first bytes start a TLS handshake (``https://`` for the
plain port) is closed at once with a log line saying the peer uses TLS,
where it waited for the head's timeout and was answered a 408 it could not
read.

The site counts the connections (``connectionMade``,
``connectionLost``) against its limits.  Over TLS, a
failed handshake is logged with its cause (``pacscore.tls.tlsFailure``)."""

import re

from twisted.internet.interfaces import ISSLTransport, ITCPTransport
from twisted.logger import Logger
from twisted.web import http

from pacscore.closing import buffered
from pacscore.web.answers import WebError
from pacscore.tls import HandshakeListener, isTLSHandshake, warnOfTLSFailure
from pacscore.web.answering import errorPage, reason

SHOWN = 80  # characters of a long request line in the log
HEAD_TIMEOUT = 30  # seconds for a request line and headers, as Apache's mod_reqtimeout allows at most
BODY_WINDOW = 20  # seconds in which a body must bring BODY_MIN_RATE bytes a second, or end (mod_reqtimeout's body=20)
BODY_MIN_RATE = 500  # bytes a second (mod_reqtimeout's MinRate=500)
LINGER_SECONDS = 10  # a refused request's rest is read and dropped this long at most
LINGER_BYTES = 512 << 20  # and this much at most
ANSWER_WAIT = 0.01  # seconds between looks whether a refusal's answer has left the write buffer
ORIGIN_SCAN_BYTES = 1 << 20  # read at most this much of a head too long for its Origin (_scanForOrigin)
_ORIGIN = re.compile(rb"^[ \t\r\v\f]*origin[ \t\r\v\f]*:(.*)$", re.IGNORECASE | re.MULTILINE)  # a line, its value
_HEAD_END = re.compile(rb"^\r*$", re.MULTILINE)  # the blank line that ends a head


def _requestLineFault(line):
    """What is wrong with request line ``line`` that twisted.web refuses
    with a bare 400, as the part of it to log and a message; None when
    nothing is, or nothing of what is said here.  The target is all between
    the method and the version, or all after the method when the last
    word is no ``HTTP/`` version (HTTP/0.9's form)."""
    rest = line.partition(b" ")[2]
    target, _, version = rest.rpartition(b" ")
    if not version.startswith(b"HTTP/"):
        target = rest
    if line.startswith(b" ") or line.endswith(b" ") or target.startswith(b" ") or target.endswith(b" "):
        return line, "malformed request line (method, URL and HTTP version separated by single spaces)"
    space, other = b" " in target, any(byte < 0x20 or byte > 0x7E for byte in target)
    if not (space or other):
        return None
    if not other:
        return target, "the request's URL holds a raw space: percent-encode it, as %20"
    held, how = ("a raw space and ", "a space as %20, ") if space else ("", "")
    return target, (f"the request's URL holds {held}characters that are not printable ASCII: "
                    f"percent-encode them (UTF-8), {how}'ü' as %C3%BC")


class _Head:
    """What the CORS headers of a refusal read of a request whose head was
    too long for twisted.web to parse (``AllowedOrigins.headers``): its
    Origin header, as ``PacsChannel`` read it (None: none came)."""

    method = None

    def __init__(self, origin):
        self.origin = origin

    def getHeader(self, name):
        return self.origin if name.lower() == b"origin" else None


def _originOf(line):
    """The value of header line ``line`` when it is an Origin, else None."""
    found = _ORIGIN.fullmatch(line)
    return found.group(1).strip() if found else None


def _cancel(call):
    """Cancel ``call`` (an IDelayedCall, or None) if it is still due."""
    if call is not None and call.active():
        call.cancel()


class PacsChannel(HandshakeListener, http.HTTPChannel):

    log = Logger()
    headTimeout = HEAD_TIMEOUT
    bodyWindow = BODY_WINDOW
    bodyMinRate = BODY_MIN_RATE
    lingerSeconds = LINGER_SECONDS
    lingerBytes = LINGER_BYTES
    _refused = False  # answered and closing: what the client still sends is dropped
    _ended = False
    _headCall = None  # the head's deadline, while one is awaited
    _headBegun = False
    _spoke = False  # the client's first bytes on the plain port were read: they start no TLS handshake
    _held = b""  # its first byte, 0x16, unread until the next tells whether a TLS handshake starts
    _bodyCall = None  # the end of the body's current window, while its body is read
    _bodyBytes = 0  # bytes of the body read in that window
    _lingerCall = None  # the abort of a refused connection the client has not closed yet
    _answerCall = None  # the next look whether its answer has left the write buffer (_readAfterAnswer)
    _dropped = 0  # bytes read and dropped after a refusal
    _origin = None  # the value of the Origin header of the request's head read so far
    _tooLong = None  # (uri, WebError) of a head too long, answered once its Origin is read (_scanForOrigin)
    _scanned = None  # the pieces of a header line read so far after a head too long (a list)
    _scannedLength = 0  # their length
    _skipping = False  # within a line too long, dropped to its end
    _scannedBytes = 0

    def connectionMade(self):
        super().connectionMade()
        self.site.connectionOpened(self)
        self._awaitHead()

    def dataReceived(self, data):
        if self._refused:
            self._dropped += len(data)
            if self._dropped > self.lingerBytes:
                self.transport.abortConnection()
        elif self._tooLong is not None:
            self.resetTimeout()
            self._scan(data)
        elif not self._spoke and not ISSLTransport.providedBy(self.transport):
            self._firstBytes(data)
        else:
            self._headBegun = self._headBegun or (self._headCall is not None and bool(data))
            super().dataReceived(data)

    def _firstBytes(self, data):
        """The first bytes on the plain port, after the byte held from
        before them: read, unless they start a TLS handshake (closed) or are
        one byte, 0x16 (held: the next tells)."""
        data, self._held = self._held + data, b""
        tls = isTLSHandshake(data)
        if tls is None:
            self._held = data
            self._headBegun = self._headCall is not None  # a byte came: its head's deadline answers 408
        elif tls:
            self._refused = True
            self.log.warn("web: {peer} a TLS handshake on the plain HTTP port: the peer uses TLS (an https:// "
                          "address for this http:// port?), closing", peer=self._peerHost())
            self.loseConnection()
        else:
            self._spoke = True
            self.dataReceived(data)

    def connectionLost(self, reason):
        self._ended = True
        self._stopHeadCall()
        self._stopBodyCall()
        for call in (self._lingerCall, self._answerCall):
            _cancel(call)
        warnOfTLSFailure(self.log, f"web: {self._peerHost()} ", reason, self.transport)
        self.site.connectionClosed(self)
        super().connectionLost(reason)

    def _awaitHead(self):
        self._stopHeadCall()
        self._headBegun = False
        self._headCall = self.callLater(self.headTimeout, self._headTooSlow)

    def _stopHeadCall(self):
        _cancel(self._headCall)
        self._headCall = None

    def _headTooSlow(self):
        self._headCall = None
        if self._tooLong is not None:
            return self._answerTooLong()
        if self._headBegun:
            self._refuse(getattr(self, "_path", b""), WebError(
                408, f"the request line and headers did not come within {self.headTimeout} s"))
            return
        self._warnOfHandshake(self.headTimeout)
        self.loseConnection()

    def _awaitBody(self):
        """Start the body's next window."""
        self._bodyBytes = 0
        self._bodyCall = self.callLater(self.bodyWindow, self._bodyTooSlow)

    def _stopBodyCall(self):
        _cancel(self._bodyCall)
        self._bodyCall = None

    def _bodyTooSlow(self):
        """The end of a window of the body: on with the next when it
        brought ``bodyMinRate`` bytes a second, else a 408."""
        self._bodyCall = None
        if self._bodyBytes >= self.bodyMinRate * self.bodyWindow:
            return self._awaitBody()
        self._refuse(self._path, WebError(
            408, f"the request body did not come at {self.bodyMinRate} bytes/s "
                 f"({self._bodyBytes} bytes in the last {self.bodyWindow} s)"))

    def rawDataReceived(self, data):
        if self._bodyCall is not None:
            self._bodyBytes += len(data)
        super().rawDataReceived(data)

    def timeoutConnection(self):
        """The site's idle timeout (TCPIPTimeOut), which cuts a connection
        before ``headTimeout`` when shorter."""
        self._warnOfHandshake(self.timeOut)
        super().timeoutConnection()

    def _warnOfHandshake(self, timeout):
        """The line of a connection cut after ``timeout`` seconds whose TLS
        handshake did not complete."""
        if self.handshaking:
            self.log.warn("web: {peer} no completed TLS handshake within {timeout} s, closing", peer=self._peerHost(),
                          timeout=timeout)

    def _peerHost(self):
        return getattr(self.transport.getPeer(), "host", "?")

    def requestDone(self, request):
        if self.persistent and not self._ended:
            self._awaitHead()  # before the pipelined requests the super call reads
        super().requestDone(request)

    def allHeadersReceived(self):
        self._stopHeadCall()
        if self.length == 0:  # no body
            return super().allHeadersReceived()
        request = self.requests[-1]
        if not self._withinLimit(request, self._path, self.site.bodyLimit(self._command, self._path)):
            return
        login = self.site.checkLogin(self._command, request)
        if login is None:
            return self._admit(request, self._path)
        self.paused = True  # the LineReceiver's: the body stays unread (and unspooled) until the login is known
        self._networkProducer.pauseProducing()
        login.addCallback(self._loginChecked, request, self._path)

    def _loginChecked(self, loggedIn, request, uri):
        if self._ended:
            return
        if not loggedIn:
            return self._refuse(uri, WebError(401, "a login is needed", self.site.guard.challenges(request)))
        if self._admit(request, uri):
            self.paused = False
            self._networkProducer.resumeProducing()
            self.dataReceived(b"")  # what came with the headers

    def _admit(self, request, uri):
        """Whether the body of ``request`` (for ``uri``), its login known, is
        read: not when it can only be refused (a 403) or is too large for
        what its user may send (a 413)."""
        try:
            limit = self.site.admittedBody(self._command, uri, request)
        except WebError as e:
            self._refuse(uri, e)
            return False
        if not self._withinLimit(request, uri, limit):
            return False
        self._awaitBody()
        super().allHeadersReceived()
        return True

    def _withinLimit(self, request, uri, limit):
        """Whether a Content-Length allows ``request`` (for ``uri``) to be
        read with a ``limit`` (0: none), which its body is then counted
        against; else a 413."""
        request.bodyLimit = limit
        if self.length is not None and limit and self.length > limit:
            self._refuse(uri, WebError(413, f"the request body of {self.length} bytes is larger than "
                                            f"the {limit} this request may send"))
            return False
        return True

    def allContentReceived(self):
        self._stopBodyCall()
        if not self._refused:  # a body refused in the read its end came with is not dispatched
            super().allContentReceived()

    def bodyTooLarge(self, request):
        """The chunked body of ``request`` went past its ``bodyLimit``."""
        self._refuse(self._path, WebError(413, f"the request body is larger than the {request.bodyLimit} bytes "
                                               "this request may send"))

    def lineLengthExceeded(self, line):
        if self._receivedHeaderSize == 0:  # no line of this request yet: it is the request line
            self._origin = None
            uri = line.split(b" ", 1)[-1]
            error = WebError(414, f"the request line is longer than {self.MAX_LENGTH} bytes")
        else:
            uri, error = self._path, WebError(431, f"a header line is longer than {self.MAX_LENGTH} bytes")
        self._scanForOrigin(uri, error, line, skipping=True)

    def lineReceived(self, line):
        fault = _requestLineFault(line) if self._receivedHeaderSize == 0 else None  # of the request line
        if self._receivedHeaderSize == 0:
            self._origin = None
        else:
            self._origin = _originOf(line) or self._origin
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:  # twisted.web's bare 400
            self._scanForOrigin(self._path, WebError(431, "the request line and header lines are longer than "
                                                          f"{self.totalHeadersSize} bytes in all"), b"")
        elif fault:  # twisted.web's bare 400
            self._refuse(fault[0], WebError(400, fault[1]))
        else:
            super().lineReceived(line)

    def _scanForOrigin(self, uri, error, data, skipping=False):
        """Refuse the request for ``uri`` whose head is too long with
        ``error`` (a 414 or 431); ``data``: what came after its last line
        read (``skipping``: the rest of a line too long first).  When the
        answer is to name the request's Origin (``PacsSite.namesOrigin``),
        the rest of the head is read first (``_scan``: a line too long
        dropped to its end, ``ORIGIN_SCAN_BYTES`` at most, until the
        head's timeout), for its Origin; then answered."""
        if not self.site.namesOrigin(uri):
            return self._refuse(uri, error)
        self._tooLong = (uri, error)
        self._scanned, self._scannedLength, self._skipping = [], 0, skipping
        self._scan(data + self.clearLineBuffer())

    def _scan(self, data):
        """Read ``data`` of a head too long for its Origin; answer at the
        head's end, or once ``ORIGIN_SCAN_BYTES`` were read.  The lines
        ``data`` ends are searched together, in time proportional to their
        bytes however short they are (taken one at a time, a megabyte of
        3-byte lines held the reactor for 0.4 s); of the line it begins,
        its pieces are kept, ``MAX_LENGTH`` at most."""
        self._scannedBytes += len(data)
        last = data.rfind(b"\n")
        if last < 0:
            self._hold(data)
        else:
            text = b"".join([*self._scanned, data])
            end = len(text) - len(data) + last  # the last line's end
            start = text.find(b"\n") + 1 if self._skipping else 0  # the rest of a line too long dropped
            self._scanned, self._scannedLength, self._skipping = [], 0, False
            if start <= end:
                headEnd = _HEAD_END.search(text, start, end)
                origins = [value for value in map(bytes.strip, _ORIGIN.findall(
                    text, start, end if headEnd is None else headEnd.start())) if value]
                self._origin = origins[-1] if origins else self._origin
                if headEnd is not None:
                    return self._answerTooLong()
            self._hold(data[last + 1:])
        if self._scannedBytes > ORIGIN_SCAN_BYTES:
            self._answerTooLong()

    def _hold(self, piece):
        """Keep ``piece`` of the header line being read after a head too
        long, unless that line is (now) longer than ``MAX_LENGTH``: then
        it is dropped to its end."""
        if self._skipping or not piece:
            return
        self._scanned.append(piece)
        self._scannedLength += len(piece)
        if self._scannedLength > self.MAX_LENGTH:
            self._scanned, self._scannedLength, self._skipping = [], 0, True

    def _answerTooLong(self):
        """Answer the request whose head was too long with its Origin as read."""
        uri, error = self._tooLong
        self._tooLong, self._scanned = None, None
        self._refuse(uri, error, _Head(self._origin))

    def _refuse(self, uri, error, head=None):
        """Answer ``error`` (a WebError) to the request for ``uri`` (bytes),
        with the headers the site gives its answers (``PacsSite.answerHeaders``:
        CORS, framing) for the request or, of a head too long, ``head``,
        log it, and close the connection."""
        self._stopBodyCall()
        if self._refused:
            return
        self._refused = True
        given = self.site.answerHeaders(head or (self.requests[-1] if self.requests else None), uri)
        uri = uri.decode("utf-8", "replace")
        peer = self.transport.getPeer()
        self.log.info("web: {peer} {uri}: {code} {message}", peer=getattr(peer, "host", peer),
                      uri=uri if len(uri) <= SHOWN else uri[:SHOWN] + "...", code=error.code, message=error.message)
        answer = errorPage(error)
        headers = b"".join(b"%s: %s\r\n" % (name.encode(), value.encode())
                           for name, value in [*answer.headers, *given])
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n"
                             % (error.code, reason(error.code), answer.contentType.encode(), len(answer.body), headers)
                             + answer.body)
        self._closeLingering()

    def _closeLingering(self):
        """Close the connection after the answer, reading (and dropping)
        what the client still sends until it closes too, ``lingerSeconds``
        at most: a client blocked sending a body nobody reads never sees
        the answer, and over TLS the close waits for the client's
        close_notify, which nobody would read."""
        self._lingerCall = self.callLater(self.lingerSeconds, self.transport.abortConnection)
        self.paused = True  # the LineReceiver's: no more of what came with the refused part is parsed
        self._readAfterAnswer()
        if ITCPTransport.providedBy(self.transport) and not ISSLTransport.providedBy(self.transport):
            self._networkProducer.unregisterProducer()
            self.transport.loseWriteConnection()  # a FIN after the answer; the client's closes the connection
        else:
            self.loseConnection()

    def _readAfterAnswer(self):
        """Read (and drop) what the client sends once the answer has left
        Twisted's write buffer: the end of a client that half-closed after
        its request, read before, would lose the answer."""
        if buffered(self.transport):
            self._answerCall = self.callLater(ANSWER_WAIT, self._readAfterAnswer)
        else:
            self._networkProducer.resumeProducing()
