"""Tests for pacscore.web.channel: a request line or header line longer
than twisted.web takes gets a 414 or 431 and a log line naming the client,
not a connection closed without a word."""

import html
import re
import time

from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import connectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest
from zope.interface import directlyProvides

from pacscore.web import site
from pacscore.web.channel import ORIGIN_SCAN_BYTES
from pacscore.web.logins import guarded
from pacscore.web.requestbodies import FORM_BODY, CountedRequest
from pacscore.web.site import webSite
from tests.pacscore.dicom.test_admission import connectFrom
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.web.test_logins import basic

CLIENT = IPv4Address("TCP", "192.0.2.7", 51234)


def errorText(answer):
    """The message of the error page ``answer`` (the bytes sent)."""
    return html.unescape(re.search(rb'<p id="error">(.*?)</p>', answer).group(1).decode())


class LongLineTests(unittest.TestCase):

    def setUp(self):
        self.site = webSite(RunningArchive(self).archive)

    def send(self, data):
        """What the site answers to ``data`` on a new connection, whether
        it closes it, and the log events meanwhile."""
        channel = self.site.buildProtocol(CLIENT)
        transport = StringTransport(peerAddress=CLIENT)
        with capturedLogs() as events:
            channel.makeConnection(transport)
            channel.dataReceived(data)
        channel.connectionLost(connectionDone)
        return transport.value(), transport.disconnecting, events

    def test_longRequestLine(self):
        """A QIDO of some 260 UIDs, a page parameter of 17000 characters:
        414 with a page saying why, the connection closed, a log line."""
        for data in (b"GET /cgi-bin/dgate?mode=top&x=" + b"A" * 17000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                     b"GET /dicom-web/studies?PatientID=" + b"A" * 20000):  # the line not even ended
            answer, closed, events = self.send(data)
            self.assertTrue(answer.startswith(b"HTTP/1.1 414 "), answer[:100])
            self.assertIn(b"Connection: close\r\n", answer)
            self.assertIn(b"the request line is longer than 16384 bytes", answer)
            self.assertTrue(closed)
            [event] = [event for event in events if event.get("code") == 414]
            self.assertEqual(event["peer"], "192.0.2.7")
            self.assertEqual(event["uri"], data[4:84].decode() + "...")

    def test_longHeaderLine(self):
        answer, closed, events = self.send(b"GET /cgi-bin/dgate?mode=top HTTP/1.1\r\nCookie: " + b"c" * 17000
                                           + b"\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:100])
        self.assertTrue(closed)
        [event] = [event for event in events if event.get("code") == 431]
        self.assertEqual((event["peer"], event["uri"]), ("192.0.2.7", "/cgi-bin/dgate?mode=top"))

    def test_longHeaders(self):
        """A request line and headers over 16 kB in all, each line shorter (a
        QIDO of some 250 UIDs from a browser with cookies): 431 with a page
        saying why, the connection closed, a log line."""
        path = b"/dicom-web/studies?StudyInstanceUID=" + b"1.2.3," * 2650
        answer, closed, events = self.send(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: s=" + b"x" * 600
                                           + b"\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:100])
        self.assertIn(b"Connection: close\r\n", answer)
        self.assertIn(b"the request line and header lines are longer than 16384 bytes in all", answer)
        self.assertTrue(closed)
        [event] = [event for event in events if event.get("code") == 431]
        self.assertEqual((event["peer"], event["uri"]), ("192.0.2.7", path[:80].decode() + "..."))

    def test_rawUTF8InTheRequestLine(self):
        """A name searched for unescaped (curl, wget --no-iri): a 400 saying
        what to do, the connection closed, a log line (twisted.web's bare
        400 said nothing and logged nothing)."""
        answer, closed, events = self.send("GET /cgi-bin/dgate?mode=querypatients&patientnamematch=müller HTTP/1.1\r\n"
                                           "Host: 127.0.0.1\r\n\r\n".encode())
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:100])
        self.assertIn(b"percent-encode them (UTF-8)", answer)
        self.assertTrue(closed)
        [event] = [event for event in events if event.get("code") == 400]
        self.assertEqual((event["peer"], event["uri"]),
                         ("192.0.2.7", "/cgi-bin/dgate?mode=querypatients&patientnamematch=müller"))

    def test_rawSpaceAndUTF8InTheRequestLine(self):
        """A name with a raw space as well (a script writing its request
        line), a byte above 0x7E that is not UTF-8, a line without an HTTP
        version (HTTP/0.9's form): a 400 page and log line saying which is
        held, the target all between the method and the version (or after
        the method); a space, printable ASCII, is no 'character that is not
        printable ASCII' and its hint is %20."""
        both = ("a raw space and characters that are not printable ASCII: percent-encode them (UTF-8), "
                "a space as %20, 'ü' as %C3%BC")
        other = "characters that are not printable ASCII: percent-encode them (UTF-8), 'ü' as %C3%BC"
        space = "a raw space: percent-encode it, as %20"
        for line, target, held in (
                ("GET /cgi-bin/dgate?mode=querypatients&patientnamematch=müller hans HTTP/1.1",
                 "/cgi-bin/dgate?mode=querypatients&patientnamematch=müller hans", both),
                (b"GET /cgi-bin/dgate?mode=top&x=\xa0 HTTP/1.1", "/cgi-bin/dgate?mode=top&x=\ufffd", other),
                ("GET /cgi-bin/dgate?mode=querypatients&patientnamematch=a b HTTP/1.1",
                 "/cgi-bin/dgate?mode=querypatients&patientnamematch=a b", space),
                ("GET /cgi-bin/dgate?mode=querypatients&patientnamematch=müller",
                 "/cgi-bin/dgate?mode=querypatients&patientnamematch=müller", other),
                ("GET /cgi-bin/dgate?mode=top x", "/cgi-bin/dgate?mode=top x", space)):
            line = line if isinstance(line, bytes) else line.encode()
            answer, closed, events = self.send(line + b"\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:100])
            self.assertEqual(errorText(answer), f"the request's URL holds {held}")
            [event] = [event for event in events if event.get("code") == 400]
            self.assertEqual((event["peer"], event["uri"]), ("192.0.2.7", target))
            self.assertTrue(closed)

    def test_extraSpacesInTheRequestLine(self):
        """A space doubled, leading or trailing around a URL that is fine:
        a 400 saying the request line is malformed, not that the URL is to
        be percent-encoded."""
        for line in (b"GET  /cgi-bin/dgate?mode=top HTTP/1.1", b"GET /cgi-bin/dgate?mode=top HTTP/1.1 ",
                     b"GET /cgi-bin/dgate?mode=top  HTTP/1.1", b" GET /cgi-bin/dgate?mode=top HTTP/1.1"):
            answer, closed, events = self.send(line + b"\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:100])
            self.assertEqual(errorText(answer),
                             "malformed request line (method, URL and HTTP version separated by single spaces)")
            [event] = [event for event in events if event.get("code") == 400]
            self.assertEqual((event["peer"], event["uri"]), ("192.0.2.7", line.decode()))
            self.assertTrue(closed)

    def test_shortLinesAnswered(self):
        answer, closed, _ = self.send(b"GET /cgi-bin/dgate?mode=nothing&x=" + b"A" * 16000
                                      + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 "), answer[:100])



@defer.inlineCallbacks
def until(condition, seconds=30):
    """Wait (the reactor running) until ``condition()`` is true, ``seconds`` at most."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        yield task.deferLater(reactor, 0.02, lambda: None)


class SiteConnections(unittest.TestCase):
    """Connections to the site of a RunningArchive whose dicom.ini has ``ini``."""

    ini = {}
    clock = None  # a task.Clock for the channels' timers (None: the reactor)

    def setUp(self):
        self.running = RunningArchive(self, ini=self.ini)
        self.site = webSite(self.running.archive)

    def connect(self, tls=False):
        """A connection (over TLS, ``tls``): the channel and its transport."""
        channel = self.site.buildProtocol(CLIENT)
        if self.clock is not None:
            channel.callLater = self.clock.callLater
        transport = StringTransport(peerAddress=CLIENT)
        if tls:
            directlyProvides(transport, ISSLTransport)
            transport.setTcpNoDelay = lambda enabled: None
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, connectionDone)
        return channel, transport

    def open(self, host):
        """A connection from ``host``: the protocol and its transport."""
        return connectFrom(self.site, host)

    def send(self, *chunks):
        """What the site answers to ``chunks``, whether it closed the connection,
        the request's spooled body (None: none) and the log events."""
        channel, transport = self.connect()
        with capturedLogs() as events:
            for chunk in chunks:
                channel.dataReceived(chunk)
        content = channel.requests[0].content if channel.requests else None
        return transport.value(), transport.disconnecting, content, events

    def assertRefused(self, code, answer, closed, content, events, message):
        self.assertTrue(answer.startswith(b"HTTP/1.1 %d " % code), answer[:100])
        self.assertIn(message.encode(), answer)
        self.assertTrue(closed)
        self.assertIsNone(content, "nothing spooled")
        [event] = [event for event in events if event.get("code") == code]
        self.assertEqual(event["peer"], "192.0.2.7")


class BodyTests(SiteConnections):
    """A body is refused from the headers, before any of it is spooled,
    when it is larger than the request may send: 413."""

    ini = {"WebMaxUploadMB": "1", "WebReadOnly": "0"}

    def test_contentLengthOverTheUploadLimit(self):
        """STOW-RS and the upload form take WebMaxUploadMB: over it a 413 at once."""
        for path in (b"/dicom-web/studies", b"/dicom-web/studies/1.2.3", b"/cgi-bin/dgate?mode=addlocalfile",
                     b"/cgi-bin/dgate.exe"):
            answer, closed, content, events = self.send(
                b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1048577\r\n\r\n" + b"x" * 1000)
            self.assertRefused(413, answer, closed, content, events,
                               "the request body of 1048577 bytes is larger than the 1048576 this request may send")

    def test_bodyWhereNoneBelongs(self):
        """A GET page, QIDO, WADO, a POST elsewhere: 64 kB at most."""
        for request in (b"GET /dicom-web/studies", b"GET /cgi-bin/dgate?mode=top", b"GET /wado",
                        b"POST /wado", b"POST /metrics", b"PUT /dicom-web/studies"):
            answer, closed, content, events = self.send(
                request + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 65537\r\n\r\n")
            self.assertRefused(413, answer, closed, content, events,
                               "the request body of 65537 bytes is larger than the 65536 this request may send")

    def test_chunkedCounted(self):
        """A chunked body is refused once past the limit; no more of it is spooled."""
        chunk = b"%x\r\n%s\r\n" % (100000, b"y" * 100000)
        answer, closed, content, events = self.send(
            b"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            *[chunk] * 12)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:100])
        self.assertIn(b"the request body is larger than the 1048576 bytes this request may send", answer)
        self.assertTrue(closed)
        content.seek(0, 2)
        self.assertLessEqual(content.tell(), 1048576)
        self.assertEqual(len([event for event in events if event.get("code") == 413]), 1)

    def test_chunkedEndingWithTheOverflow(self):
        """A chunked body refused by the chunk its end comes with is not
        dispatched (a deletestudy ran on its truncated body)."""
        dispatched = []
        self.patch(CountedRequest, "process", lambda request: dispatched.append(request))
        answer, closed, content, events = self.send(
            b"POST /cgi-bin/dgate?mode=deletestudy HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"%x\r\n%s\r\n" % (1048577, b"y" * 1048577) + b"0\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:100])
        self.assertTrue(closed)
        self.assertEqual(dispatched, [])

    @defer.inlineCallbacks
    def test_bodiesWithinTheLimit(self):
        """A posted form is read and answered as before."""
        channel, transport = self.connect()
        channel.dataReceived(b"POST /cgi-bin/dgate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                             b"application/x-www-form-urlencoded\r\nContent-Length: 12\r\n\r\nmode=nothing")
        yield until(transport.value)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404 "), transport.value()[:100])  # as the form said



class LoginSite(SiteConnections):
    """Connections to a site whose WebUsers has alice (password secret)."""

    ini = {"WebUsers": "webusers"}
    POST = b"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"

    def setUp(self):
        self.running = RunningArchive(self, ini=self.ini, webUsers={"alice": "secret"})
        self.site = webSite(self.running.archive)


class LoginBodyTests(LoginSite):
    """With WebUsers, a body is read only once its headers logged a user in:
    a 401 at once without credentials, after the check with wrong ones.
    Each password check (the channel's before the body is read, the
    guard's before the request is answered) waits in ``checks`` until the
    test runs it (``checked``), as a thread of the reactor's pool does
    when it will."""

    def setUp(self):
        self.checks = []
        self.patch(site, "guarded", lambda root, passwords, inThread, realmName:
                   guarded(root, passwords, self.checkLater, realmName))
        super().setUp()

    def checkLater(self, check, *args):
        d = defer.Deferred()
        self.checks.append((d, check, args))
        return d

    def checked(self):
        """Run the first password check waiting, firing its Deferred."""
        d, check, args = self.checks.pop(0)
        defer.maybeDeferred(check, *args).chainDeferred(d)

    def test_noLogin(self):
        for headers in (b"", b"Authorization: Basic !!\r\n", b"Authorization: Digest x\r\n"):
            answer, closed, content, events = self.send(self.POST + headers + b"\r\n" + b"z" * 1000)
            self.assertRefused(401, answer, closed, content, events, "a login is needed")
            self.assertIn(b'\r\nWWW-Authenticate: basic realm="pacs PACS", charset="UTF-8"\r\n', answer)

    def loggingIn(self, password):
        """The channel and transport of a POST as alice with ``password``,
        its login checked, none of its body spooled before."""
        channel, transport = self.connect()
        channel.dataReceived(self.POST + b"Authorization: " + basic("alice", password).encode() + b"\r\n\r\n"
                             + b"z" * 500)
        channel.dataReceived(b"z" * 500)
        self.assertIsNone(channel.requests[0].content)
        self.checked()
        return channel, transport

    def test_wrongPassword(self):
        with capturedLogs() as events:
            channel, transport = self.loggingIn("wrong")
        self.assertIsNone(channel.requests[0].content)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 401 "), transport.value()[:100])
        self.assertTrue(transport.disconnecting)
        self.assertTrue(any("wrong password" in formatEvent(event) for event in events))

    @defer.inlineCallbacks
    def test_rightPassword(self):
        """The body is read once the login is known, then answered as
        before (STOW-RS refuses a body that is no multipart/related)."""
        channel, transport = self.loggingIn("secret")
        self.assertEqual(channel.requests[0].content.getvalue(), b"z" * 1000)
        self.checked()  # the guard's, before the request is answered
        yield until(transport.value)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 415 "), transport.value()[:100])

    def test_clientLeftWhileItsLoginWasChecked(self):
        """A client that left while the login of its request was checked
        (the guard's, once the body was read, or that of a request without
        a body) is not answered, and its request not processed: an info
        line says so, where the answer to the gone connection was a
        critical 'web: answering /dicom-web/studies failed' (RuntimeError:
        Request.finish called on a request after its connection was lost)."""
        channel, transport = self.loggingIn("secret")
        channel.connectionLost(connectionDone)
        with capturedLogs() as events:
            self.checked()
        self.assertEqual([(event["log_level"], formatEvent(event)) for event in events],
                         [(LogLevel.info, "web: 192.0.2.7 /dicom-web/studies: the client left before it was "
                                          "answered")])
        for path, password, refusal in (("/", "secret", []), ("/dicom-web/studies", "wrong", [
                "web: 192.0.2.7: login of 'alice' refused: wrong password"])):
            channel, transport = self.connect()
            channel.dataReceived(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
                                 + basic("alice", password).encode() + b"\r\n\r\n")
            channel.connectionLost(connectionDone)
            with capturedLogs() as events:
                self.checked()
            self.assertEqual([formatEvent(event) for event in events],
                             [*refusal, f"web: 192.0.2.7 {path}: the client left before it was answered"])
            self.assertEqual(transport.value(), b"")


class LingeringCloseTests(LoginSite):
    """After an answer from the headers (here a wrong login's 401, the body
    paused while it was checked), what the client still sends is read and
    dropped, so that a client sending the whole body before it reads sees
    the answer; lingerSeconds or lingerBytes at most, then an abort."""

    def setUp(self):
        super().setUp()
        self.clock = task.Clock()

    @defer.inlineCallbacks
    def refused(self):
        channel, transport = self.connect()
        channel.lingerBytes = 10000
        channel.dataReceived(self.POST.replace(b"1000", b"200000000") + b"Authorization: "
                             + basic("alice", "wrong").encode() + b"\r\n\r\n" + b"z" * 500)
        self.assertEqual(transport.producerState, "paused")
        yield until(transport.value)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 401 "), transport.value()[:100])
        self.assertEqual((transport.producerState, transport.disconnecting), ("producing", True))
        return channel, transport

    @defer.inlineCallbacks
    def test_abortedAfterLingerSeconds(self):
        channel, transport = yield self.refused()
        answer = transport.value()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + b"z" * 5000)
        self.clock.advance(channel.lingerSeconds - 0.1)
        self.assertEqual((transport.value(), transport.disconnected), (answer, False))
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnected)

    @defer.inlineCallbacks
    def test_abortedAfterLingerBytes(self):
        channel, transport = yield self.refused()
        channel.dataReceived(b"z" * 10000)
        self.assertFalse(transport.disconnected)
        channel.dataReceived(b"z")
        self.assertTrue(transport.disconnected)

    @defer.inlineCallbacks
    def test_closedByTheClient(self):
        """The client closing first ends the lingering: no abort left to come."""
        channel, transport = yield self.refused()
        channel.connectionLost(connectionDone)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RefusedBodyTests(SiteConnections):
    """An upload the headers show will be refused (WebReadOnly = 1,
    DICOMwebStore = 0) is answered 403 at once, none of its body spooled."""

    ini = {"DICOMwebStore": "0"}  # and WebReadOnly = 1, the default
    HEAD = b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200000000\r\n\r\n"

    def test_refusedAtOnce(self):
        for path, message in ((b"/dicom-web/studies", "storing over DICOMweb is off (DICOMwebStore = 0)"),
                              (b"/cgi-bin/dgate?mode=addlocalfile", "the web interface is read-only (WebReadOnly = 1)"),
                              (b"/cgi-bin/dgate?mode=deletestudy", "the web interface is read-only (WebReadOnly = 1)")):
            answer, closed, content, events = self.send(b"POST " + path + self.HEAD + b"x" * 100000)
            self.assertRefused(403, answer, closed, content, events, message)

    def test_formWithoutUploads(self):
        """A read-only site's pages take a form's fields, no file: a 413 at once
        past them, whatever mode the body names."""
        answer, closed, content, events = self.send(b"POST /cgi-bin/dgate" + self.HEAD)
        self.assertRefused(413, answer, closed, content, events,
                           f"the request body of 200000000 bytes is larger than the {FORM_BODY} this request may send")


class WriterBodyTests(LoginSite):
    """With WebWriters, a user not among them is refused a STOW or an
    upload at once: 403, none of its body spooled."""

    ini = {"WebUsers": "webusers", "WebWriters": "carol", "WebReadOnly": "0"}

    @defer.inlineCallbacks
    def test_notAWriter(self):
        for path, message in ((b"/dicom-web/studies", "user alice may not store over DICOMweb (WebWriters)"),
                              (b"/cgi-bin/dgate?mode=addlocalfile", "user alice may not change the archive (WebWriters)")):
            channel, transport = self.connect()
            with capturedLogs() as events:
                channel.dataReceived(b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200000000\r\n"
                                     + b"Authorization: " + basic("alice", "secret").encode() + b"\r\n\r\n" + b"z" * 500)
                yield until(transport.value)
            self.assertRefused(403, transport.value(), transport.disconnecting, channel.requests[0].content, events,
                               message)


class SharedRefusalTests(LoginSite):
    """The channel's own answers to a request for what may be shared
    (DICOMweb, WADO) carry the CORS headers its other answers do, so that
    a viewer of another site sees the 401, 413 or 408."""

    ini = {"WebUsers": "webusers", "WebAllowOrigins": "*", "WebMaxUploadMB": "1"}
    ORIGIN = b"Origin: http://viewer.example\r\n"
    SHARED = b"\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: Warning\r\n"

    def test_loginAndBodyRefused(self):
        for request, code in ((self.POST + self.ORIGIN, 401),
                              (self.POST.replace(b"1000", b"1048577") + self.ORIGIN, 413),
                              (b"POST /cgi-bin/dgate?requestType=WADO HTTP/1.1\r\nContent-Length: 1048577\r\n"
                               + self.ORIGIN, 413)):
            answer, closed, content, events = self.send(request + b"\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 %d " % code), answer[:100])
            self.assertIn(self.SHARED, answer)

    def test_longRequestRefusedShared(self):
        """A DICOMweb request line or header line too long (414, 431) is
        answered with the CORS headers of ``*``, which need no Origin (the
        414's request line is refused before any header is read)."""
        for request, code in ((b"GET /dicom-web/studies?PatientID=" + b"a" * 20000 + b" HTTP/1.1\r\n" + self.ORIGIN, 414),
                              (b"GET /dicom-web/studies HTTP/1.1\r\n" + self.ORIGIN + b"X-Long: " + b"a" * 20000
                               + b"\r\n", 431)):
            answer, closed, content, events = self.send(request + b"\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 %d " % code), answer[:100])
            self.assertIn(self.SHARED, answer)

    def test_pagesNotShared(self):
        answer, _, _, _ = self.send(b"POST /cgi-bin/dgate?mode=addlocalfile HTTP/1.1\r\nContent-Length: 1000\r\n"
                                    + self.ORIGIN + b"\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer[:100])
        self.assertNotIn(b"Access-Control-Allow-Origin", answer)

    def test_pagesFramedByThisServerAlone(self):
        """The channel's own answers for a page (a POST's 401, a 413, a
        request line too long) say that only this server may frame them,
        as the site's answers for pages do; DICOMweb's are framed anywhere."""
        framing = b"".join(b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in site.FRAMED_HERE)
        for request, code in ((b"POST /cgi-bin/dgate?mode=deletestudy HTTP/1.1\r\nContent-Length: 10\r\n", 401),
                              (b"POST /cgi-bin/dgate HTTP/1.1\r\nContent-Length: 1048577\r\n", 413),
                              (b"GET /cgi-bin/dgate?mode=studydeleter&x=" + b"a" * 20000 + b" HTTP/1.1\r\n", 414),
                              (b"GET /dicom-web/studies?PatientID=" + b"a" * 20000 + b" HTTP/1.1\r\n", 414)):
            answer, closed, content, events = self.send(request + self.ORIGIN + b"\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 %d " % code), answer[:100])
            head = answer.partition(b"\r\n\r\n")[0] + b"\r\n"
            if request.startswith(b"GET /dicom-web"):
                self.assertNotIn(b"X-Frame-Options", head)
            else:
                self.assertIn(framing, head, request[:40])
                self.assertNotIn(b"Access-Control-Allow-Origin", head)

    def test_headTooSlow(self):
        clock = task.Clock()
        channel, transport = self.connect()
        channel.callLater = clock.callLater
        channel._awaitHead()
        channel.dataReceived(b"GET /dicom-web/studies HTTP/1.1\r\n" + self.ORIGIN)
        clock.advance(30)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "), transport.value()[:100])
        self.assertIn(self.SHARED, transport.value())


class ListedOriginRefusalTests(SiteConnections):
    """With WebAllowOrigins listing origins, a DICOMweb request line or
    header lines too long (414, 431) are answered once the head has come,
    naming the Origin it gave, as every other answer does; the rest of a
    line too long is read and dropped, not kept."""

    ini = {"WebAllowOrigins": "http://viewer.example"}
    ORIGIN = b"Origin: http://viewer.example\r\n"
    SHARED = b"\r\nVary: Origin\r\nAccess-Control-Allow-Origin: http://viewer.example\r\n" \
             b"Access-Control-Expose-Headers: Warning\r\n"

    def test_longRequestAnsweredToTheListedOrigin(self):
        """The Origin after a request line too long (sent whole, or in
        pieces), after or before a header line too long, after the 16 kB of
        the request line and header lines: named in the refusal."""
        long = b"GET /dicom-web/studies?PatientID=" + b"a" * 20000 + b" HTTP/1.1\r\n"
        for chunks, code in (([long + b"Host: h\r\n" + self.ORIGIN + b"\r\n"], 414),
                             ([long[:17000], long[17000:] + b"Host: h\r\n", self.ORIGIN, b"\r\n"], 414),
                             ([b"GET /dicom-web/studies HTTP/1.1\r\n" + self.ORIGIN + b"X-Long: " + b"a" * 20000
                               + b"\r\n\r\n"], 431),
                             ([b"GET /dicom-web/studies HTTP/1.1\r\nX-Long: " + b"a" * 20000 + b"\r\n" + self.ORIGIN
                               + b"\r\n"], 431),
                             ([b"GET /dicom-web/studies HTTP/1.1\r\n" + b"X-Many: " + b"a" * 8000 + b"\r\n"
                               + b"X-More: " + b"a" * 9000 + b"\r\n" + self.ORIGIN + b"\r\n"], 431)):
            answer, closed, content, events = self.send(*chunks)
            self.assertTrue(answer.startswith(b"HTTP/1.1 %d " % code), (code, answer[:100]))
            self.assertIn(self.SHARED, answer)
            self.assertTrue(closed)
            self.assertEqual(len([event for event in events if event.get("code") == code]), 1)

    def test_anOtherOriginIsNotNamed(self):
        answer, _, _, _ = self.send(b"GET /dicom-web/studies?PatientID=" + b"a" * 20000 + b" HTTP/1.1\r\n"
                                    b"Origin: http://evil.example\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 414 "), answer[:100])
        self.assertIn(b"\r\nVary: Origin\r\n", answer)
        self.assertNotIn(b"Access-Control-Allow-Origin", answer)

    def test_theHeadNotEndedIsAnsweredAtItsTimeout(self):
        """A client that never ends its head still gets its 414 (naming no
        origin) at the head's timeout, not a 408."""
        clock = task.Clock()
        channel, transport = self.connect()
        channel.callLater = clock.callLater
        channel._awaitHead()
        channel.dataReceived(b"GET /dicom-web/studies?PatientID=" + b"a" * 20000)
        self.assertEqual(transport.value(), b"")
        clock.advance(30)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 414 "), transport.value()[:100])
        self.assertNotIn(b"Access-Control-Allow-Origin", transport.value())

    def test_pagesAreAnsweredAtOnce(self):
        """A page's request line too long needs no Origin: answered at once."""
        answer, _, _, _ = self.send(b"GET /cgi-bin/dgate?mode=top&x=" + b"a" * 20000)
        self.assertTrue(answer.startswith(b"HTTP/1.1 414 "), answer[:100])

    def test_manyShortLinesReadInLinearTime(self):
        """A megabyte of 3-byte header lines after a request line too long,
        read 64 kB at a time as from the network, costs the reactor a few
        milliseconds, as many long lines do: read a line at a time, each
        line copied what was left of the read again (0.4 s of CPU, any
        client holding the server that long on each connection)."""
        lines = b"a\r\n" * ((ORIGIN_SCAN_BYTES - 30000) // 3)
        head = b"GET /dicom-web/studies?PatientID=" + b"a" * 20000 + b" HTTP/1.1\r\n" + lines + self.ORIGIN + b"\r\n"
        spent = []
        for _ in range(3):  # the best of three: the time is the CPU's, but another process may slow it
            channel, transport = self.connect()
            started = time.process_time()
            for offset in range(0, len(head), 65536):
                channel.dataReceived(head[offset:offset + 65536])
            spent.append(time.process_time() - started)
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 414 "), transport.value()[:100])
            self.assertIn(self.SHARED, transport.value())
        self.assertLess(min(spent), 0.1, spent)

    def test_aHeadNeverEndingIsAnsweredAfterOriginScanBytes(self):
        """The rest of a head too long is read for its Origin up to
        ORIGIN_SCAN_BYTES (from the head's start), not until the head's
        timeout: then the refusal names the Origin read so far, and the
        connection closes."""
        channel, transport = self.connect()
        start = b"GET /dicom-web/studies?PatientID=" + b"a" * 20000 + b" HTTP/1.1\r\n" + self.ORIGIN
        filler = b"X-a: b\r\n" * (ORIGIN_SCAN_BYTES // 8)
        head = start + filler[:ORIGIN_SCAN_BYTES - len(start)]
        with capturedLogs() as events:
            for offset in range(0, len(head), 65536):
                channel.dataReceived(head[offset:offset + 65536])
            self.assertEqual(transport.value(), b"")
            self.assertFalse(transport.disconnecting)
            channel.dataReceived(b"X")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 414 "), transport.value()[:100])
        self.assertIn(self.SHARED, transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len([event for event in events if event.get("code") == 414]), 1)


class HeadDeadlineTests(SiteConnections):
    """The request line and headers must have come within headTimeout (30 s)
    of the connection or the last answer (slowloris: a header line every
    10 s kept a connection for hours)."""

    def setUp(self):
        super().setUp()
        self.clock = task.Clock()

    def test_slowHeaders(self):
        channel, transport = self.connect()
        with capturedLogs() as events:
            channel.dataReceived(b"GET /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for _ in range(2):
                self.clock.advance(10)
                channel.dataReceived(b"X-a: b\r\n")
            self.clock.advance(9.9)
            self.assertFalse(transport.disconnecting)
            self.clock.advance(0.1)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "), transport.value()[:100])
        self.assertIn(b"the request line and headers did not come within 30 s", transport.value())
        self.assertTrue(transport.disconnecting)
        [event] = [event for event in events if event.get("code") == 408]
        self.assertEqual((event["peer"], event["uri"]), ("192.0.2.7", "/dicom-web/studies"))

    def test_silentConnection(self):
        """A connection that sends nothing is closed without an answer or a log line."""
        channel, transport = self.connect()
        with capturedLogs() as events:
            self.clock.advance(30)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)
        self.assertEqual([event for event in events if "code" in event], [])

    def test_anUnfinishedTLSHandshake(self):
        """A TLS connection whose handshake did not complete (slowloris
        on the HTTPS port) is closed with a line saying so; a silent one
        whose handshake completed without one, as over plain TCP."""
        channel, transport = self.connect(tls=True)
        with capturedLogs() as events:
            self.clock.advance(30)
        self.assertTrue(transport.disconnecting)
        self.assertEqual([formatEvent(event) for event in events],
                         ["web: 192.0.2.7 no completed TLS handshake within 30 s, closing"])
        channel, transport = self.connect(tls=True)
        channel.handshakeCompleted()
        with capturedLogs() as events:
            self.clock.advance(30)
        self.assertTrue(transport.disconnecting)
        self.assertEqual([formatEvent(event) for event in events], [])

    def test_aLoneFirstByteThatMayStartAHandshake(self):
        """A first byte 0x16 alone, held until the next tells whether a TLS
        handshake begins, is a request begun: silence after it is answered
        408 at the deadline with its line, as any head begun."""
        channel, transport = self.connect()
        with capturedLogs() as events:
            channel.dataReceived(b"\x16")
            self.clock.advance(30)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "), transport.value()[:100])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len([event for event in events if event.get("code") == 408]), 1)

    def test_aTLSClientOnThePlainPort(self):
        """https:// for the plain port: closed at once with a line saying
        the peer uses TLS (it waited headTimeout, then was answered a 408
        it could not read), whole and in pieces (its first byte alone, 0x16,
        left the rest unchecked); the same bytes over TLS are no handshake."""
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40))
        for chunks in ([hello], [hello[:1], hello[1:]], [hello[:1], b"", hello[1:]]):
            channel, transport = self.connect()
            with capturedLogs() as events:
                for chunk in chunks:
                    channel.dataReceived(chunk)
            self.assertEqual(transport.value(), b"")
            self.assertTrue(transport.disconnecting)
            self.assertEqual([formatEvent(event) for event in events],
                             ["web: 192.0.2.7 a TLS handshake on the plain HTTP port: the peer uses TLS (an https:// "
                              "address for this http:// port?), closing"])
        channel, transport = self.connect(tls=True)
        channel.handshakeCompleted()
        with capturedLogs() as events:
            channel.dataReceived(hello + b"\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "), transport.value()[:100])
        self.assertNotIn("TLS", " ".join(formatEvent(event) for event in events))

    def test_deadlineOfEachRequest(self):
        """The deadline stops with the headers and starts again after the answer (keep-alive)."""
        channel, transport = self.connect()
        for _ in range(2):
            self.clock.advance(29)
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # answered at once: a redirect
            self.assertIn(b"HTTP/1.1 302 ", transport.value())
            transport.clear()
        self.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)


class BodyDeadlineTests(SiteConnections):
    """A body must come at bodyMinRate (500) bytes a second, checked every
    bodyWindow (20) seconds, or its request gets a 408 (a body sent a byte
    at a time held a connection for ever: a thousand took all of
    WebMaxConnections)."""

    ini = {"WebMaxUploadMB": "10", "WebReadOnly": "0"}
    HEAD = b"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"

    def setUp(self):
        super().setUp()
        self.clock = task.Clock()

    def test_aTricklingBody(self):
        channel, transport = self.connect()
        with capturedLogs() as events:
            channel.dataReceived(self.HEAD % 100000 + b"x")
            for _ in range(19):
                self.clock.advance(1)
                channel.dataReceived(b"x")
            self.assertFalse(transport.disconnecting)
            self.clock.advance(1)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "), transport.value()[:100])
        self.assertIn(b"the request body did not come at 500 bytes/s (20 bytes in the last 20 s)", transport.value())
        self.assertTrue(transport.disconnecting)
        [event] = [event for event in events if event.get("code") == 408]
        self.assertEqual((event["peer"], event["uri"]), ("192.0.2.7", "/dicom-web/studies"))

    def test_aFastStartGivesNoTimeToTrickle(self):
        """A window that brought 10 kB does not make up for the next's trickle."""
        channel, transport = self.connect()
        channel.dataReceived(self.HEAD % 2000000 + b"x" * 1000000)
        self.clock.advance(20)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"x" * 9999)
        self.clock.advance(20)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "), transport.value()[:100])

    def test_anUploadAtTheRateIsRead(self):
        """An upload at 600 bytes a second, and one at 100 kB/s, are read
        whole and answered (STOW-RS refuses a body that is no
        multipart/related), whatever their length."""
        for size, piece in ((30000, 600), (6000000, 100000)):
            channel, transport = self.connect()
            channel.dataReceived(self.HEAD % size)
            for _ in range(size // piece):
                self.clock.advance(1)
                channel.dataReceived(b"x" * piece)
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 415 "), transport.value()[:100])
            self.assertNotIn(channel._bodyTooSlow, [call.func for call in self.clock.getDelayedCalls()])
            channel.connectionLost(connectionDone)


class ShortIdleTimeoutTests(SiteConnections):
    """TCPIPTimeOut under headTimeout: the site's idle timeout cuts a
    connection first."""

    ini = {"TCPIPTimeOut": "20"}

    def setUp(self):
        super().setUp()
        self.clock = task.Clock()

    def test_anUnfinishedTLSHandshake(self):
        """Its cut of a TLS connection whose handshake did not complete is
        said as headTimeout's is, with the timeout that fired."""
        channel, transport = self.connect(tls=True)
        with capturedLogs() as events:
            self.clock.advance(20)
        self.assertTrue(transport.disconnecting)
        self.assertEqual([formatEvent(event) for event in events if event.get("log_level") == LogLevel.warn],
                         ["web: 192.0.2.7 no completed TLS handshake within 20 s, closing"])


class ConnectionLimitTests(SiteConnections):
    """WebMaxConnections in all and WebMaxConnectionsPerPeer from one address."""

    ini = {"WebMaxConnections": "3", "WebMaxConnectionsPerPeer": "2"}

    def assertUnavailable(self, connection):
        protocol, transport = connection
        self.assertEqual(transport.value(), b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n"
                                            b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(connectionDone)  # the close done: its bound is cancelled

    def test_limits(self):
        with capturedLogs() as events:
            first = [self.open("192.0.2.7") for _ in range(2)]
            self.assertUnavailable(self.open("192.0.2.7"))
            self.assertUnavailable(self.open("192.0.2.7"))  # logged once
            other, _ = self.open("192.0.2.8")
            self.assertUnavailable(self.open("192.0.2.9"))
        lines = [formatEvent(event) for event in events]
        self.assertEqual([line for line in lines if "closed at once" in line], [
            "192.0.2.7: connection closed at once: it has 2 connections open (WebMaxConnectionsPerPeer 2); "
            "more are closed unlogged until one ends",
            "192.0.2.9: connection closed at once: 3 connections are open (WebMaxConnections 3); "
            "more are closed unlogged until one ends"])
        first[0][0].connectionLost(connectionDone)
        protocol, transport = self.open("192.0.2.7")
        self.assertEqual(transport.value(), b"")
        for channel in (first[1][0], other, protocol):
            channel.connectionLost(connectionDone)
        self.assertEqual(self.site.limits.open, 0)


class DefaultConnectionLimitTests(SiteConnections):
    """By default no limit per address (behind a reverse proxy or NAT every
    browser comes from one), as Apache: only WebMaxConnections."""

    def test_manyFromOneAddress(self):
        opened = [self.open("192.0.2.7") for _ in range(200)]
        for protocol, _ in opened:
            self.addCleanup(protocol.connectionLost, connectionDone)
        self.assertEqual([transport.value() for _, transport in opened if transport.value()], [])
