"""The web interface's HTTP channel: a request line longer than
twisted.web takes (``MAX_LENGTH``, 16 kB: a QIDO list of some 260 UIDs, a
long page parameter) is answered ``414 URI Too Long``, and a header line
as long ``431 Request Header Fields Too Large``, each with an error page
and a log line naming the client, where twisted.web closed the connection
without a word (RFC 9110 15.5.15; Apache answers 414 above its
``LimitRequestLine`` too)."""

from twisted.logger import Logger
from twisted.web import http

from pacscore.web.answers import WebError
from pacscore.web.answering import errorPage, reason

SHOWN = 80  # characters of a long request line in the log


class PacsChannel(http.HTTPChannel):

    log = Logger()

    def lineLengthExceeded(self, line):
        if self._receivedHeaderSize == 0:  # no line of this request yet: it is the request line
            uri = line.split(b" ", 1)[-1][:SHOWN].decode("utf-8", "replace") + "..."
            error = WebError(414, f"the request line is longer than {self.MAX_LENGTH} bytes")
        else:
            uri = self._path.decode("utf-8", "replace")
            error = WebError(431, f"a header line is longer than {self.MAX_LENGTH} bytes")
        peer = self.transport.getPeer()
        self.log.info("web: {peer} {uri}: {code} {message}", peer=getattr(peer, "host", peer), uri=uri,
                      code=error.code, message=error.message)
        answer = errorPage(error)
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                             % (error.code, reason(error.code), answer.contentType.encode(), len(answer.body))
                             + answer.body)
        self.loseConnection()
