"""Tests for pacscore.control.cgigateway: where dgate as a CGI script sends
the request (the interop tests drive it against a running server)."""

import http.client
import io

from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.control import cgigateway
from pacscore.control.cgigateway import runCGI
from pacscore.web.documents import documentAnswer
from pacscore.web.site import FRAMED_HERE

ENVIRONMENT = {"GATEWAY_INTERFACE": "CGI/1.1", "QUERY_STRING": "mode=top", "REQUEST_METHOD": "GET"}


class WebInterfaceTests(unittest.TestCase):

    def answered(self, status, headers, body):
        """The CGI answer of dgate when the server answers ``status``,
        ``headers`` (``(name, value)`` pairs) and ``body``."""
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        sent = f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        response = http.client.HTTPResponse(type("Socket", (), {"makefile": lambda self, mode: io.BytesIO(sent)})())
        response.begin()
        connection = type("Answering", (), {"request": staticmethod(lambda method, path, body, headers: None),
                                            "getresponse": staticmethod(lambda: response),
                                            "close": staticmethod(lambda: None)})
        self.patch(cgigateway, "_connection", lambda secure, host, port: connection)
        output = io.BytesIO()
        self.assertEqual(runCGI(DicomIni.fromString("[sscscp]\n", "/cgi-bin/dicom.ini"), ENVIRONMENT, io.BytesIO(),
                                output.write), 0)
        return output.getvalue()

    def relay(self, iniText, **environment):
        """``(exit status, URL asked, CGI answer)`` of dgate under
        ``iniText`` for a request of ``ENVIRONMENT`` changed by
        ``environment``, no server answering."""
        asked = []

        def connection(secure, host, port):
            def request(method, path, body, headers):
                asked.append(f"{'https' if secure else 'http'}://{host}:{port}{path}")
                raise ConnectionRefusedError("connection refused")
            return type("Refused", (), {"request": staticmethod(request), "close": staticmethod(lambda: None)})

        self.patch(cgigateway, "_connection", connection)
        output = io.BytesIO()
        status = runCGI(DicomIni.fromString(iniText, "/cgi-bin/dicom.ini"), dict(ENVIRONMENT, **environment),
                        io.BytesIO(), output.write)
        return status, asked, output.getvalue().decode()

    def test_webServerFor(self):
        """Conquest's cgi-bin dicom.ini names the server in WebServerFor
        (its manual: "IP address and port of DICOM server (may be
        non-local...)", the port TCPPort, the DICOM port): without a
        WebEndpoint, its host on the default web port, named in the 502."""
        status, asked, answer = self.relay("[sscscp]\nWebServerFor = 192.0.2.10\nTCPPort = 5678\n")
        self.assertEqual((status, asked), (1, ["http://192.0.2.10:8080/cgi-bin/dgate?mode=top"]))
        self.assertIn("dgate: no pacs web interface at 192.0.2.10:8080, WebServerFor of /cgi-bin/dicom.ini on the "
                      "default web port (WebEndpoint sets another) (connection refused)", answer)

    def test_webEndpointFirst(self):
        status, asked, answer = self.relay("[sscscp]\nWebServerFor = 192.0.2.10\n"
                                           "WebEndpoint = tcp:8081:interface=192.0.2.11\n")
        self.assertEqual(asked, ["http://192.0.2.11:8081/cgi-bin/dgate?mode=top"])
        self.assertIn("at 192.0.2.11:8081, WebEndpoint of /cgi-bin/dicom.ini (", answer)
        status, asked, answer = self.relay("[sscscp]\n")
        self.assertEqual(asked, ["http://127.0.0.1:8080/cgi-bin/dgate?mode=top"])
        self.assertIn("at 127.0.0.1:8080, the default WebEndpoint (/cgi-bin/dicom.ini sets none) (", answer)

    def test_queryEscaped(self):
        """A web server passes on the query string as the browser sent it:
        spaces and raw bytes (``M\xfcller`` in Latin-1, which Python's
        environment holds as a surrogate) are escaped for the request to
        the server, escapes already there kept."""
        status, asked, answer = self.relay("[sscscp]\n", QUERY_STRING="mode=x&name=M\udcfcller b%20c&uid=1.2*")
        self.assertEqual(asked, ["http://127.0.0.1:8080/cgi-bin/dgate?mode=x&name=M%FCller%20b%20c&uid=1.2*"])
        self.assertIn("(connection refused)", answer)

    def test_badContentLength(self):
        """A POST whose CONTENT_LENGTH is not a length is a 400 that says so,
        not a traceback."""
        for length in ("12abc", "-5", "\u00b2"):
            status, asked, answer = self.relay("[sscscp]\n", REQUEST_METHOD="POST", CONTENT_LENGTH=length)
            self.assertEqual((status, asked), (1, []))
            self.assertIn("Status: 400 Bad Request", answer)
            self.assertIn(f"dgate: CONTENT_LENGTH '{length}' is not the length of a POST body", answer)

    def test_documentSandboxPassed(self):
        """A document's answer reaches the browser through the gateway with
        what keeps it from running script in the archive's origin."""
        answer = documentAnswer(("text/html", b"<script>alert(1)</script>"), "1.2.3")
        cgi = self.answered("200 OK", [("Content-Type", answer.contentType), *answer.headers], answer.body)
        head = cgi.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        for line in ("Content-Type: text/html", 'Content-Disposition: attachment; filename="1.2.3.html"',
                     "Content-Security-Policy: sandbox", "X-Content-Type-Options: nosniff"):
            self.assertIn(line, head)

    def test_framingPassed(self):
        """A page reaches the browser through the gateway with what keeps
        pages of other sites from framing it."""
        cgi = self.answered("200 OK", [("Content-Type", "text/html; charset=utf-8"), *FRAMED_HERE], b"<p>page</p>")
        head = cgi.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        for line in ("X-Frame-Options: SAMEORIGIN", "Content-Security-Policy: frame-ancestors 'self'"):
            self.assertIn(line, head)
