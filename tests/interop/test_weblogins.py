"""Interop tests of WebUsers: `twistd -n pacs` whose web interface needs the
login of a user of an htpasswd file made by Apache's htpasswd, used by
dicomweb-client, headless Chromium (a page, and a viewer from another
origin) and dgate as a CGI script; start-up refusing an unusable file."""

import base64
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
from twisted.trial import unittest

from pacscore.testing.certificates import Authority
from tests.interop.browser import renderedDOM
from tests.interop.server import BIN, PacsServer, waitFor
from tests.interop.test_dicomweb import viewerFromElsewhere
from tests.interop.test_web import CT, httpGet, startWithSamples
from tests.pacscore.web.test_logins import htpasswd

# /proc/net/tcp's states of sockets that are no connection held (as ss leaves them out):
# SYN_RECV, TIME_WAIT, CLOSE, LISTEN
NOT_HELD = {"03", "06", "07", "0A"}

USER, PASSWORD = "alice", "s\u00e9cret wonder"
READER, READER_PASSWORD = "bob", "builder"


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class WebLoginTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.mkdtemp(prefix="pacs-logins-")
        cls.server = PacsServer(os.path.join(cls.folder, "pacs"), ae="WEBPACS", ini={
            "WebUsers": "webusers", "WebReadOnly": "0", "WebWriters": USER, "WebAllowOrigins": "*"})
        htpasswd(os.path.join(cls.server.workdir, "webusers"), USER, PASSWORD, create=True)
        htpasswd(os.path.join(cls.server.workdir, "webusers"), READER, READER_PASSWORD)
        startWithSamples(cls)
        cls.root = f"http://127.0.0.1:{cls.server.webPort}"

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.folder, ignore_errors=True)

    def fetch(self, path, authorization=None):
        return httpGet(self.root + path, {"Authorization": authorization} if authorization else {})

    def test_pagesNeedTheLogin(self):
        for path in ("/cgi-bin/dgate?mode=querypatients", "/dicom-web/studies", "/wado?requestType=WADO"):
            status, headers, _ = self.fetch(path)
            self.assertEqual((status, headers["WWW-Authenticate"]), (401, 'basic realm="pacs WEBPACS", charset="UTF-8"'), path)
        status, _, body = self.fetch("/cgi-bin/dgate?mode=querypatients", basic(USER, PASSWORD))
        self.assertEqual(status, 200)
        self.assertIn(b"<caption>3 patients</caption>", body)
        status, _, _ = self.fetch("/cgi-bin/dgate?mode=querypatients", basic(USER, "wrong"))
        self.assertEqual(status, 401)
        self.assertIn("127.0.0.1: login of 'alice' refused: wrong password", self.server.log())
        self.assertNotIn("has no login", self.server.log())
        self.assertIn('"127.0.0.1" - alice [', self.server.log())  # the access log names the user
        self.assertIn('"127.0.0.1" - - [', self.server.log())

    def test_dicomwebClient(self):
        """dicomweb-client with the user's HTTP Basic session searches and retrieves; without it, 401."""
        url = f"{self.root}/dicom-web"
        client = DICOMwebClient(url=url, session=create_session_from_user_pass(USER, PASSWORD))
        ct = pydicom.dcmread(CT)
        [study] = client.search_for_studies(search_filters={"PatientID": ct.PatientID})
        self.assertEqual(pydicom.Dataset.from_json(study).StudyInstanceUID, ct.StudyInstanceUID)
        instance = client.retrieve_instance(ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)
        self.assertEqual(instance.pixel_array.tolist(), ct.pixel_array.tolist())
        with self.assertRaises(requests.HTTPError) as raised:
            DICOMwebClient(url=url).search_for_studies()
        self.assertEqual(raised.exception.response.status_code, 401)

    def test_browser(self):
        """Chromium with the login in the address sees the page; without it
        nothing (headless, it cannot show the login prompt)."""
        page = "127.0.0.1:{}/cgi-bin/dgate?mode=querypatients".format(self.server.webPort)
        user = urllib.request.quote(USER) + ":" + urllib.request.quote(PASSWORD)
        self.assertIn("<caption>3 patients</caption>", renderedDOM(f"http://{user}@{page}"))
        self.assertNotIn("patients</caption>", renderedDOM(f"http://{page}"))

    def test_viewerFromElsewhere(self):
        """A viewer page of another origin with the user's Authorization
        header: the preflights pass without it, the requests with it."""
        ct = pydicom.dcmread(CT, stop_before_pixels=True)
        folder = tempfile.mkdtemp(dir=self.folder)
        dom = viewerFromElsewhere(folder, f"{self.root}/dicom-web", basic(USER, PASSWORD))
        self.assertIn(f'<p id="out">rows {ct.Rows}</p>', dom)
        dom = viewerFromElsewhere(folder, f"{self.root}/dicom-web", basic(USER, "wrong"))
        self.assertIn('<p id="out">failed SyntaxError', dom)  # the 401 page read, as no JSON

    def test_onlyWebWritersChange(self):
        """WebWriters = alice: bob sees no delete links, his delete and his
        STOW-RS are 403s; alice gets the links and stores."""
        status, _, body = self.fetch("/cgi-bin/dgate?mode=querystudies", basic(READER, READER_PASSWORD))
        self.assertEqual(status, 200)
        self.assertIn(b"<caption>", body)
        self.assertNotIn(b"studydeleter", body)
        response = requests.post(f"{self.root}/cgi-bin/dgate?mode=deletestudy", data={"study": ":1.2.3"},
                                 auth=(READER, READER_PASSWORD), timeout=30)
        self.assertEqual(response.status_code, 403)
        self.assertIn("user bob may not change the archive (WebWriters)", response.text)
        status, _, body = self.fetch("/cgi-bin/dgate?mode=querystudies", basic(USER, PASSWORD))
        self.assertEqual(status, 200)
        self.assertIn(b"studydeleter", body)
        ct = pydicom.dcmread(CT)
        url = f"{self.root}/dicom-web"
        with self.assertRaises(requests.HTTPError) as raised:
            DICOMwebClient(url=url, session=create_session_from_user_pass(READER, READER_PASSWORD)).store_instances([ct])
        self.assertEqual(raised.exception.response.status_code, 403)
        self.assertIn("user bob may not store over DICOMweb (WebWriters)", raised.exception.response.text)
        stored = DICOMwebClient(url=url, session=create_session_from_user_pass(USER, PASSWORD)).store_instances([ct])
        self.assertEqual([item.ReferencedSOPInstanceUID for item in stored.ReferencedSOPSequence], [ct.SOPInstanceUID])

    def test_refusedUploadAnsweredBeforeItIsSent(self):
        """bob's 200 MB STOW-RS or upload is answered 403 (413 for a form
        that names its mode in its body: no file is taken from him) after
        its first 64 kB, and no temporary file spools it (each was spooled
        whole first)."""
        for path, answer in (("/dicom-web/studies", b"user bob may not store over DICOMweb (WebWriters)"),
                             ("/cgi-bin/dgate?mode=addlocalfile", b"user bob may not change the archive (WebWriters)"),
                             ("/cgi-bin/dgate", b"larger than the 2097152 this request may send")):
            with socket.create_connection(("127.0.0.1", self.server.webPort), timeout=30) as connection:
                connection.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200000000\r\n"
                                   "Content-Type: multipart/related; boundary=XX\r\n"
                                   f"Authorization: {basic(READER, READER_PASSWORD)}\r\n\r\n".encode()
                                   + bytes(1 << 16))
                received = b""
                while chunk := connection.recv(65536):
                    received += chunk
                spools = [os.readlink(f"/proc/{self.server.process.pid}/fd/{fd}")
                          for fd in os.listdir(f"/proc/{self.server.process.pid}/fd")]
            self.assertIn(answer, received, path)
            self.assertEqual([name for name in spools if name.startswith("/tmp/#")], [], path)

    def test_cgiGateway(self):
        """dgate as a CGI script passes the browser's login on (Apache's
        CGIPassAuth On) and the server's challenge back."""
        def cgi(**more):
            environment = dict(os.environ, GATEWAY_INTERFACE="CGI/1.1", QUERY_STRING="mode=querypatients",
                               REQUEST_METHOD="GET", **more)
            result = subprocess.run([os.path.join(BIN, "dgate")], capture_output=True, cwd=self.server.workdir,
                                    env=environment, timeout=120)
            head, _, content = result.stdout.partition(b"\r\n\r\n")
            return head.decode("latin-1").split("\r\n"), content
        head, content = cgi(HTTP_AUTHORIZATION=basic(USER, PASSWORD))
        self.assertIn("Content-Type: text/html; charset=utf-8", head)
        self.assertIn(b"<caption>3 patients</caption>", content)
        head, _ = cgi()
        self.assertEqual(head[0], "Status: 401 Unauthorized")
        self.assertIn('WWW-Authenticate: basic realm="pacs WEBPACS", charset="UTF-8"', head)

    def test_cgiGatewayUploadRefused(self):
        """An upload larger than the sockets hold with a wrong login: the
        server answers 401 before it reads the body and closes the
        connection; the gateway, whose sending of the body then breaks
        off, still relays the 401 (the browser's login prompt)."""
        size = 20 << 20
        environment = dict(os.environ, GATEWAY_INTERFACE="CGI/1.1", QUERY_STRING="mode=addlocalfile",
                           REQUEST_METHOD="POST", CONTENT_TYPE="multipart/form-data; boundary=zzz",
                           CONTENT_LENGTH=str(size), HTTP_AUTHORIZATION=basic(USER, "wrong"))
        result = subprocess.run([os.path.join(BIN, "dgate")], input=b"z" * size, capture_output=True,
                                cwd=self.server.workdir, env=environment, timeout=120)
        head = result.stdout.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        self.assertEqual((result.returncode, head[0]), (0, "Status: 401 Unauthorized"), result.stderr)
        self.assertIn('WWW-Authenticate: basic realm="pacs WEBPACS", charset="UTF-8"', head)


class EarlyRefusalTests(unittest.TestCase):
    """A 401 or 403 from the headers reaches a client that sends the whole
    body before it reads (python-requests), over HTTPS as over HTTP, and
    the server's end of the connection closes when the client's does."""

    BODY = bytes(20 << 20)

    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.mkdtemp(prefix="pacs-refusals-")
        authority = Authority(os.path.join(cls.folder, "ca"), "hospital")
        cls.authority = authority.certificate
        identity = authority.issue("pacs", server=True)
        cls.servers = {}
        for scheme in ("https", "http"):
            server = PacsServer(os.path.join(cls.folder, scheme), ini={
                "WebUsers": "webusers", "WebWriters": USER, "DICOMwebStore": "1"})
            if scheme == "https":
                server.setIni(WebEndpoint=f"ssl:{server.webPort}:interface=127.0.0.1:privateKey={identity.key}:"
                                          f"certKey={identity.certificate}")
            htpasswd(os.path.join(server.workdir, "webusers"), USER, PASSWORD, create=True)
            htpasswd(os.path.join(server.workdir, "webusers"), READER, READER_PASSWORD)
            cls.servers[scheme] = server.start()

    @classmethod
    def tearDownClass(cls):
        for server in cls.servers.values():
            server.stop()
        shutil.rmtree(cls.folder, ignore_errors=True)

    def stow(self, scheme, user, password):
        """The answer to a 20 MB STOW as ``user``, and how long it took."""
        started = time.monotonic()
        answer = requests.post(f"{scheme}://127.0.0.1:{self.servers[scheme].webPort}/dicom-web/studies",
                               data=self.BODY, auth=(user, password), verify=self.authority, timeout=30, headers={
                                   "Content-Type": 'multipart/related; type="application/dicom"; boundary=XX'})
        return answer, time.monotonic() - started

    def serverConnections(self, scheme):
        """The connections the server holds on its web port, from
        /proc/net/tcp (as ``ss -tn``): their local address and state."""
        port = f"{self.servers[scheme].webPort:04X}"
        with open("/proc/net/tcp") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        return [(row[1], row[3]) for row in rows if row[1].endswith(":" + port) and row[3] not in NOT_HELD]

    def assertAnsweredAndClosed(self, scheme, user, password, code, message):
        answer, seconds = self.stow(scheme, user, password)
        self.assertEqual(answer.status_code, code, answer.text)
        self.assertIn(message, answer.text)
        self.assertLess(seconds, 5)
        waitFor(lambda: not self.serverConnections(scheme), timeout=5,
                message=f"the {scheme} connection closed on the server (not left in CLOSE-WAIT)")

    def test_notAWriter(self):
        for scheme in self.servers:
            self.assertAnsweredAndClosed(scheme, READER, READER_PASSWORD, 403,
                                         f"user {READER} may not store over DICOMweb (WebWriters)")

    def test_wrongPassword(self):
        for scheme in self.servers:
            self.assertAnsweredAndClosed(scheme, USER, "wrong", 401, "a login is needed")

    def test_requestsInTheRefusedBodyNotAnswered(self):
        """The requests a body refused at once (a 413 from the headers)
        carries in the packet of its headers are dropped with it."""
        login = b"Authorization: " + basic(READER, READER_PASSWORD).encode() + b"\r\n"
        inner = b"GET /cgi-bin/dgate?mode=top HTTP/1.1\r\nHost: 127.0.0.1\r\n" + login + b"\r\n"
        request = (b"GET /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n" + login
                   + b"Content-Length: 65537\r\n\r\n" + 3 * inner)
        for scheme in self.servers:
            answer = self.exchange(scheme, request)
            self.assertEqual(answer.count(b"HTTP/1.1 "), 1, answer)
            self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:100])

    def exchange(self, scheme, request, halfClose=False):
        """All the server answers ``request`` (bytes) on a connection of its
        own, the client's sending side shut after it when ``halfClose``."""
        with socket.create_connection(("127.0.0.1", self.servers[scheme].webPort), timeout=10) as connection:
            if scheme == "https":
                connection = ssl.create_default_context(cafile=self.authority).wrap_socket(
                    connection, server_hostname="127.0.0.1")
            connection.sendall(request)
            if halfClose:
                connection.shutdown(socket.SHUT_WR)
            answer = b""
            while data := connection.recv(65536):
                answer += data
        return answer

    def test_aClientThatHalfClosesGetsTheAnswer(self):
        """A client that shuts its sending side after a small request
        (socat, nc -N) gets the refusal, not an empty reply."""
        for user, password, code in ((READER, READER_PASSWORD, b"403"), (USER, "wrong", b"401")):
            request = (b"POST /dicom-web/studies HTTP/1.0\r\nAuthorization: " + basic(user, password).encode()
                       + b'\r\nContent-Type: multipart/related; type="application/dicom"; boundary=XX\r\n'
                       + b"Content-Length: 5\r\n\r\nhello")
            for _ in range(5):
                answer = self.exchange("http", request, halfClose=True)
                self.assertTrue(answer.startswith(b"HTTP/1.1 " + code), answer[:100])


class WebUsersStartUpTests(unittest.TestCase):

    def test_unusableFileStopsStartUp(self):
        """A WebUsers line htpasswd made without -B (MD5): start-up stops naming the file and line."""
        server = PacsServer(self.mktemp(), ini={"WebUsers": "webusers"})
        path = os.path.join(server.workdir, "webusers")
        htpasswd(path, "bob", "builder", create=True)
        subprocess.run(["htpasswd", "-bm", path, "carol", "md5"], check=True, capture_output=True)
        result = subprocess.run(server.command(), cwd=server.workdir, capture_output=True, text=True, timeout=120)
        self.assertNotEqual(result.returncode, 0)
        output = result.stdout + result.stderr
        self.assertIn(f"configuration error: {path}:2: the password of carol is not a bcrypt hash; make it with "
                      "htpasswd -B", output)
        self.assertNotIn("Traceback", output)

    def test_writersWithoutLoginsWarn(self):
        server = PacsServer(self.mktemp(), ini={"WebReadOnly": "0", "WebWriters": "alice"})
        server.start()
        self.addCleanup(server.stop)
        self.assertIn("WebWriters lists users but WebUsers is not set: nobody logs in, so the web pages change "
                      "nothing", server.log())

    def test_passwordsInClearWarn(self):
        """WebUsers on a plain-HTTP endpoint others can reach: a warning to use ssl:."""
        server = PacsServer(self.mktemp(), ini={"WebUsers": "webusers"})
        htpasswd(os.path.join(server.workdir, "webusers"), "bob", "builder", create=True)
        server.setIni(WebEndpoint=f"tcp:{server.webPort}")
        server.start()
        self.addCleanup(server.stop)
        self.assertIn(f"web interface on tcp:{server.webPort}: the web interface asks for WebUsers passwords over "
                      "plain HTTP", server.log())
        self.assertNotIn("has no login", server.log())
