"""Tests for pacscore.web.hostnames: without WebUsers the web interface
answers only requests naming its own host names (DNS rebinding), over
real HTTP."""

import socket
from urllib.parse import urlencode

from twisted.internet import defer, threads
from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.web.forms import URLENCODED
from pacscore.web.hostnames import HostNames
from tests.pacscore.web.dicomweb.client import DicomWebTestCase
from tests.pacscore.web.test_sharing import VIEWER

FOREIGN = ("evil.example", "pacs.example.evil.example", "localhost.evil.example", "127.0.0.1.evil.example",
           "evil.example:8080", "[::1", "")


class HostTestCase(DicomWebTestCase):

    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 1}
    ini = {"WebReadOnly": "0", "WebHostNames": "pacs.hospital.example, PACS2.hospital.example."}

    def asHost(self, host, path, **more):
        """Fetched of ``path`` under the root with the Host header ``host``
        and an Origin naming it, as a rebound page's browser sends them."""
        return self.fetch(self.root + path, headers=[("host", host), ("origin", f"http://{host}")], **more)

    def deleteStudy(self, host):
        image = self.corpus[0]
        body = urlencode({"study": f"{image.patientID}:{image.studyUID}"}).encode()
        return self.asHost(host, "/cgi-bin/dgate?mode=deletestudy", method=b"POST", body=body,
                           contentType=URLENCODED)

    @defer.inlineCallbacks
    def studies(self):
        found = yield self.fetch("/studies")
        return [study["0020000D"]["Value"][0] for study in found.json()]


class WithoutLoginsTests(HostTestCase):

    @defer.inlineCallbacks
    def test_foreignHostRefused(self):
        """Reads and changes for another host name are a 421 and a log line; nothing changes."""
        port = self.root.rsplit(":", 1)[1]
        with capturedLogs() as events:
            for host in (f"evil.example:{port}", *FOREIGN):
                for path in ("/dicom-web/studies", "/cgi-bin/dgate?mode=querypatients", "/wado?requestType=WADO",
                             "/metrics", "/"):
                    found = yield self.asHost(host, path)
                    self.assertEqual((host, path, found.code), (host, path, 421))
                    self.assertIn(b"does not answer for the host name", found.body)
                refused = yield self.deleteStudy(host)
                self.assertEqual((host, refused.code), (host, 421))
        self.assertEqual((yield self.studies()), [self.corpus[0].studyUID])
        refusals = [event for event in events if event.get("code") == 421]
        self.assertEqual(len(refusals), 6 * (len(FOREIGN) + 1))
        self.assertEqual(refusals[0]["uri"], "/dicom-web/studies")

    @defer.inlineCallbacks
    def test_ownHostsAnswered(self):
        port = self.root.rsplit(":", 1)[1]
        for host in ("127.0.0.1", f"127.0.0.1:{port}", f"[::1]:{port}", "10.1.2.3", f"localhost:{port}",
                     "LocalHost.", socket.gethostname(), f"{socket.getfqdn()}:{port}", "pacs.hospital.example",
                     f"pacs2.hospital.example:{port}"):
            found = yield self.asHost(host, "/dicom-web/studies")
            self.assertEqual((host, found.code), (host, 200))
        found = yield self.asHost("pacs.hospital.example", "/cgi-bin/dgate?mode=querypatients")
        self.assertEqual(found.code, 200)
        deleted = yield self.deleteStudy(f"pacs.hospital.example:{port}")
        self.assertEqual(deleted.code, 200)
        self.assertEqual((yield self.studies()), [])

    @defer.inlineCallbacks
    def test_noHostHeader(self):
        """HTTP/1.0 without Host (no browser) is answered."""
        port = int(self.root.rsplit(":", 1)[1])

        def ask():
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"GET /dicom-web/studies HTTP/1.0\r\n\r\n")
                return s.recv(100)
        answered = yield threads.deferToThread(ask)
        self.assertTrue(answered.startswith(b"HTTP/1.0 200 OK"), answered)


class WithLoginsTests(HostTestCase):
    """With WebUsers a rebound page has no credentials: any host name may be asked for."""

    ini = {"WebUsers": "webusers", "WebAllowOrigins": VIEWER}
    webUsers = {"alice": "secret"}

    @defer.inlineCallbacks
    def test_anyHostLogsIn(self):
        found = yield self.asHost("evil.example", "/dicom-web/studies")
        self.assertEqual(found.code, 401)


class HostNamesTests(unittest.TestCase):

    def test_names(self):
        names = HostNames(["localhost", "pacs.example."])
        for host, accepted in ((b"pacs.example", True), (b"PACS.example.:80", True), (b"[fe80::1%25eth0]:80", True),
                               (b"::1", False), (b"192.168.1.1:80", True), (b"pacs.example@evil.example", False),
                               (b"evil.example#pacs.example", False), (b"[::1", False)):
            request = type("Request", (), {"getHeader": lambda self, name, host=host: host})()
            self.assertEqual((host, names.accepts(request)), (host, accepted))
