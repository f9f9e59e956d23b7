"""Tests for pacscore.web.channel: a request line or header line longer
than twisted.web takes gets a 414 or 431 and a log line naming the client,
not a connection closed without a word."""

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.web.site import webSite
from tests.pacscore.control.running import RunningArchive

CLIENT = IPv4Address("TCP", "192.0.2.7", 51234)


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
        channel.connectionLost(None)
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

    def test_shortLinesAnswered(self):
        answer, closed, _ = self.send(b"GET /cgi-bin/dgate?mode=nothing&x=" + b"A" * 16000
                                      + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 "), answer[:100])
