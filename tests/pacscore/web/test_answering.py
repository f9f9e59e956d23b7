"""AnsweringResource over HTTP, for every resource of the site: a method
none of them answers (PUT, DELETE, PATCH, TRACE, OPTIONS but on
/dicom-web and /wado) is a 405 naming the methods answered in ``Allow``, logged, and
on /dicom-web with the CORS header its answers all carry; a Folder's path
that names nothing is a logged 404; a stream stops quietly when the
client leaves, and after its first chunk for a HEAD, and a client that
takes nothing of it for the site's ``sendTimeout`` is cut off, logged; a
failure of the index database is a 503 with one log line."""

import socket

from sqlalchemy.exc import OperationalError
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web import server
from twisted.web.client import Agent
from twisted.web.test.requesthelper import DummyRequest

from pacscore.db.errors import IndexTimeout
from pacscore.web.answering import AnsweringResource
from pacscore.web.answers import StreamAnswer

from tests.pacscore.web.dicomweb.client import DicomWebTestCase

ANSWERED = "GET, HEAD, POST"


class MethodTests(DicomWebTestCase):

    ini = {"WebAllowOrigins": "*"}  # every answer, an error too, readable by pages of every origin

    @defer.inlineCallbacks
    def test_otherMethodsRefused(self):
        paths = {"/dicom-web/studies": "GET, HEAD, OPTIONS, POST", "/cgi-bin/dgate?mode=top": ANSWERED,
                 "/cgi-bin/dgate.exe": ANSWERED, "/wado?requestType=WADO": ANSWERED, "/metrics": ANSWERED,
                 "/cgi-bin": ANSWERED, "/no/such/page": ANSWERED}
        with capturedLogs() as events:
            for path, allowed in paths.items():
                for method in (b"PUT", b"DELETE", b"PATCH", b"TRACE", b"OPTIONS", b"get"):
                    if method == b"OPTIONS" and path.startswith(("/dicom-web", "/wado")):
                        continue  # a CORS preflight: answered
                    found = yield self.fetch(self.root + path, method=method, body=b"x")
                    what = (path, method)
                    self.assertEqual((what, found.code, found.header("allow")), (what, 405, allowed))
                    self.assertIn(f"{method.decode()} is not answered here: {allowed} is".encode(), found.body)
                    self.assertEqual(found.header("access-control-allow-origin"),
                                     "*" if path.startswith(("/dicom-web", "/wado")) else None, what)
        refusals = [(event["log_namespace"], event["uri"]) for event in events if event.get("code") == 405]
        self.assertEqual(len(refusals), 7 * 6 - 2)
        self.assertTrue(all(namespace.startswith("pacscore.web") for namespace, _ in refusals), refusals)

    @defer.inlineCallbacks
    def test_answeredMethods(self):
        """GET, HEAD and POST go on being answered, and OPTIONS on /dicom-web."""
        for method, code in ((b"GET", 200), (b"HEAD", 200), (b"OPTIONS", 204)):
            found = yield self.fetch("/studies", method=method)
            self.assertEqual((method, found.code), (method, code))
        found = yield self.fetch(self.root + "/metrics", method=b"HEAD")
        self.assertEqual((found.code, found.body), (200, b""))
        found = yield self.fetch(self.root + "/cgi-bin/dgate", method=b"POST", body=b"mode=top",
                                 contentType="application/x-www-form-urlencoded")
        self.assertEqual(found.code, 200)

    @defer.inlineCallbacks
    def test_folders(self):
        """/cgi-bin itself and paths naming nothing: a 404 page and a log line."""
        with capturedLogs() as events:
            for path in ("/cgi-bin", "/cgi-bin/", "/cgi-bin/other", "/no/such/page"):
                found = yield self.fetch(self.root + path)
                self.assertEqual((path, found.code), (path, 404))
                self.assertIn(f"there is nothing at {path}".encode(), found.body)
        self.assertEqual([event["uri"] for event in events if event.get("code") == 404],
                         ["/cgi-bin", "/cgi-bin/", "/cgi-bin/other", "/no/such/page"])
        top = yield self.fetch(self.root + "/")
        self.assertEqual((top.code, top.header("location")), (302, "/cgi-bin/dgate?mode=top"))


class StreamReleaseTests(unittest.TestCase):
    """A StreamAnswer's ``release`` (objects a virtual server fetched for
    it) is awaited however the answer ends, also when the client left
    before it began (an unstarted generator never runs its ``finally``)."""

    def answering(self, chunks):
        released, gate = [], defer.Deferred()

        async def release():
            released.append(True)

        class Slow(AnsweringResource):
            async def answer(self, request):
                await gate
                return StreamAnswer(chunks(), "text/plain", release=release)
        return Slow(), gate, released

    def test_clientLeftFirst(self):
        async def chunks():
            yield b"never sent"
        resource, gate, released = self.answering(chunks)
        request = DummyRequest([b""])
        resource.render(request)
        request.processingFailed(Failure(ConnectionDone()))
        gate.callback(None)
        self.assertEqual((released, request.written), ([True], []))


class _Leaving(protocol.Protocol):
    """A client that GETs / and leaves on the first bytes of the answer; ``left`` fires then."""

    def __init__(self):
        self.left = defer.Deferred()

    def connectionMade(self):
        self.transport.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")

    def dataReceived(self, data):
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.left.callback(None)


class StreamEndTests(unittest.TestCase):
    """Over HTTP: the chunks of a stream stop when the client leaves
    midway (a log line says so, as the access line of an answer sent
    would), and after the first for a HEAD; neither logs a failure."""

    def setUp(self):
        self.made, self.gate = [], None
        chunks = self.chunks

        class Streaming(AnsweringResource):
            async def answer(self, request):
                return StreamAnswer(chunks(), "text/plain")
        listening = reactor.listenTCP(0, server.Site(Streaming()), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.port = listening.getHost().port

    async def chunks(self):
        for number in range(100):
            self.made.append(number)
            if number == 1 and self.gate is not None:
                await self.gate
            yield b"chunk %d\n" % number

    @defer.inlineCallbacks
    def test_clientLeft(self):
        self.gate = defer.Deferred()
        with capturedLogs() as events:
            client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), _Leaving())
            yield client.left
            yield task.deferLater(reactor, 0.2, lambda: None)  # the server sees it gone
            self.gate.callback(None)
            yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(self.made, [0, 1])
        self.assertEqual([event for event in events if "log_failure" in event], [])
        [left] = [formatEvent(event) for event in events if "client left" in event.get("log_format", "")]
        self.assertRegex(left, r"127.0.0.1 /: the client left after \d+ bytes of the answer")

    @defer.inlineCallbacks
    def test_head(self):
        with capturedLogs() as events:
            response = yield Agent(reactor).request(b"HEAD", f"http://127.0.0.1:{self.port}/".encode())
            yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual((response.code, self.made), (200, [0]))
        self.assertEqual([event for event in events if "log_failure" in event], [])


class DatabaseFailureTests(unittest.TestCase):
    """A failure of the index database (down, or past SQLTimeOut) is a 503
    with ``Retry-After`` and one error line, not a 500 with a traceback;
    also when a stream fails before its first chunk."""

    def answered(self, error, stream=False, gathered=False):
        class Failing(AnsweringResource):
            async def answer(self, request):
                if gathered:  # as the status page gathers its parts
                    await defer.gatherResults([defer.fail(error)], consumeErrors=True)
                if not stream:
                    raise error

                async def chunks():
                    raise error
                    yield b"never"
                return StreamAnswer(chunks(), "text/plain")
        request = DummyRequest([b""])
        with capturedLogs() as events:
            Failing().render(request)
        return request, events

    def test_serverDown(self):
        down = OperationalError(None, None, Exception("connection refused"))
        for error, message in ((down, "connection refused"), (IndexTimeout(30), "SQLTimeOut")):
            for stream in (False, True):
                request, events = self.answered(error, stream)
                self.assertEqual(request.responseCode, 503)
                self.assertEqual(request.responseHeaders.getRawHeaders(b"retry-after"), [b"5"])
                self.assertIn(message.encode(), b"".join(request.written))
                self.assertEqual([event for event in events if "log_failure" in event], [])
                self.assertEqual([event["log_level"] for event in events], [LogLevel.error])
                self.assertIn(message, formatEvent(events[0]))

    def test_serverDownWhileGathering(self):
        """A failure in one part of a gatherResults (the top page's status) too."""
        request, events = self.answered(OperationalError(None, None, Exception("connection refused")), gathered=True)
        self.assertEqual(request.responseCode, 503)
        self.assertEqual([event["log_level"] for event in events], [LogLevel.error])


class StalledClientTests(unittest.TestCase):
    """A client that stops reading a stream is cut off after the site's
    ``sendTimeout`` seconds of taking nothing: its connection aborted, the
    chunks closed, a warning naming it and the URI."""

    TIMEOUT = 0.5

    def setUp(self):
        self.made, self.closed = 0, defer.Deferred()

        class Streaming(AnsweringResource):
            async def answer(resource, request):
                return StreamAnswer(self.chunks(), "application/octet-stream")
        site = server.Site(Streaming())
        site.sendTimeout = self.TIMEOUT
        listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.port = listening.getHost().port

    async def chunks(self):
        try:
            while True:
                self.made += 1
                yield b"x" * (1 << 20)
        finally:
            self.closed.callback(None)

    @defer.inlineCallbacks
    def test_cutOff(self):
        client = socket.socket()
        self.addCleanup(client.close)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", self.port))
        client.sendall(b"GET /stalled HTTP/1.1\r\nHost: localhost\r\n\r\n")  # and never read
        with capturedLogs() as events:
            yield self.closed.addTimeout(10, reactor)
            yield task.deferLater(reactor, 0.1, lambda: None)  # the abort done
        [cut] = [event for event in events if "cut off" in event["log_format"]]
        self.assertEqual((cut["peer"], cut["uri"], cut["timeout"]), ("127.0.0.1", "/stalled", self.TIMEOUT))
        self.assertLess(self.made, 100)
        client.setblocking(False)
        with self.assertRaises(ConnectionResetError):
            while client.recv(1 << 20):
                pass
