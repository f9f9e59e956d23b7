"""The web interface's HTTP channel: a request line longer than
twisted.web takes (``MAX_LENGTH``, 16 kB: a QIDO list of some 260 UIDs, a
long page parameter) is answered ``414 URI Too Long``, and a header line
as long, or the request line and header lines longer than that in all
(``totalHeadersSize``: a long QIDO and a browser's cookies),
``431 Request Header Fields Too Large``, each with an error page
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
            uri = line.split(b" ", 1)[-1]
            self._refuse(uri, WebError(414, f"the request line is longer than {self.MAX_LENGTH} bytes"))
        else:
            self._refuse(self._path, WebError(431, f"a header line is longer than {self.MAX_LENGTH} bytes"))

    def lineReceived(self, line):
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:  # twisted.web's bare 400
            self._refuse(self._path, WebError(431, "the request line and header lines are longer than "
                                                   f"{self.totalHeadersSize} bytes in all"))
        else:
            super().lineReceived(line)

    def _refuse(self, uri, error):
        """Answer ``error`` (a WebError) to the request for ``uri`` (bytes),
        log it, and close the connection."""
        uri = uri.decode("utf-8", "replace")
        peer = self.transport.getPeer()
        self.log.info("web: {peer} {uri}: {code} {message}", peer=getattr(peer, "host", peer),
                      uri=uri if len(uri) <= SHOWN else uri[:SHOWN] + "...", code=error.code, message=error.message)
        answer = errorPage(error)
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                             % (error.code, reason(error.code), answer.contentType.encode(), len(answer.body))
                             + answer.body)
        self.loseConnection()
