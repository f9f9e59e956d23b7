"""Tests for pacscore.web.logins: WebUsers files made by Apache's
htpasswd, and a site guarded by them, over real HTTP."""

import base64
import os
import threading
import time

import bcrypt
import pydicom
from pydicom.data import get_testdata_file
from twisted.cred import error
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest
from twisted.web import http
from twisted.web.test.requesthelper import DummyRequest

from pacscore.config.errors import ConfigError
from pacscore.web import logins
from pacscore.web.logins import readPasswordFile
from tests.interop.server import PacsServer
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.web.dicomweb.client import STOW_TYPE, DicomWebTestCase, stowBody
from tests.pacscore.web.htpasswd import htpasswd


CT = get_testdata_file("CT_small.dcm")


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class AccessLogTests(unittest.TestCase):

    def test_theDateIsTheTimeOfDay(self):
        """Not Twisted's timestamp, taken from the reactor's clock, which
        is monotonic (pacscore.reactorclock)."""
        request = DummyRequest([b"x"])
        request.uri, request.clientproto, request.sentLength, request.code = b"/x", b"HTTP/1.1", 0, 200
        before = http.datetimeToLogString()
        line = logins.accessLogLine("[01/Jan/1970:00:00:03 +0000]", request)
        self.assertIn(line.split(" - - ")[1].split(' "GET')[0], (before, http.datetimeToLogString()))


class PasswordFileTests(unittest.TestCase):

    def setUp(self):
        self.path = self.mktemp()

    def test_htpasswd(self):
        htpasswd(self.path, "alice", "wonder land", create=True)
        htpasswd(self.path, "bob", "b\u00f6b")
        with open(self.path, "a") as f:
            f.write("\n# a comment\n\n")
        users = readPasswordFile(self.path)
        self.assertEqual(sorted(users), ["alice", "bob"])
        self.assertTrue(bcrypt.checkpw("b\u00f6b".encode(), users["bob"]))

    def test_refusedLines(self):
        """Anything but user:bcrypt lines is a ConfigError naming the line."""
        good = bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode()
        for lines, number, message in (
                ([f"alice:{good}", "bob"], 2, "expected user:hash"),
                ([f":{good}"], 1, "expected user:hash"),
                (["carol:$apr1$abcdefgh$0123456789abcdefghijkl"], 1, "not a bcrypt hash; make it with htpasswd -B"),
                (["dave:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="], 1, "not a bcrypt hash"),
                ([f"erin:{good}", "", f"erin:{good}"], 3, "erin is given twice")):
            with open(self.path, "w") as f:
                f.write("\n".join(lines) + "\n")
            with self.assertRaises(ConfigError) as raised:
                readPasswordFile(self.path)
            self.assertEqual(raised.exception.line, number, lines)
            self.assertIn(message, str(raised.exception))
        with open(self.path, "wb") as f:
            f.write(b"fr\xe9d:" + good.encode() + b"\n")
        self.assertRaisesRegex(ConfigError, ":1: not UTF-8", readPasswordFile, self.path)

    def test_unusableFileStopsStartUp(self):
        """A missing or wrong WebUsers file is a ConfigError naming dicom.ini's line or the file's."""
        workdir = PacsServer(self.mktemp(), ini={"WebUsers": "missing-users"}).workdir
        self.assertRaisesRegex(ConfigError, r"dicom\.ini:\d+: WebUsers missing-users: No such file",
                               RunningArchive, self, workdir=workdir)
        with open(os.path.join(workdir, "missing-users"), "w") as f:
            f.write("alice:plain\n")
        self.assertRaisesRegex(ConfigError, "missing-users:1: the password of alice is not a bcrypt hash",
                               RunningArchive, self, workdir=workdir)


class UnknownUserTimeTests(unittest.TestCase):
    """An unknown user's login takes as long as a wrong password of a
    user of the file, whatever bcrypt cost htpasswd gave it (``-C``)."""

    def setUp(self):
        self.path = self.mktemp()
        with open(self.path, "wb") as f:
            f.write(b"alice:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(5)) + b"\n")
        self.checker = logins.PasswordFileChecker(logins.PasswordFile(self.path), None)

    def cpuTime(self, user):
        """The CPU seconds of refusing ``user``'s wrong password (the
        thread's own, however busy the machine)."""
        started = time.thread_time()
        self.assertRaises(error.UnauthorizedLogin, self.checker._check, user.encode(), b"wrong")
        return time.thread_time() - started

    def test_asLongAsTheCostliestHash(self):
        """Also once a user of cost 12 is added to the file (read again)."""
        with open(self.path, "ab") as f:
            f.write(b"carol:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(12)) + b"\n")
        known, unknown = self.cpuTime("carol"), self.cpuTime("nosuchuser")
        self.assertGreater(unknown, known / 2)

    def test_aCheaperUsersWrongPasswordAsLongAsAnUnknownUser(self):
        """In a file of mixed costs, a wrong password of a user at
        htpasswd's cost 5 takes as long as an unknown user (the costliest
        hash), so neither tells which users exist."""
        with open(self.path, "ab") as f:
            f.write(b"carol:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(12)) + b"\n")
        cheap, unknown = self.cpuTime("alice"), self.cpuTime("nosuchuser")
        self.assertGreater(cheap, unknown / 2)
        self.assertLess(cheap, unknown * 2)
        self.assertEqual(self.checker._check(b"alice", b"secret"), "alice")


class BrokenFileTests(unittest.TestCase):
    """A WebUsers file made unusable is logged once per change, not at every login."""

    def setUp(self):
        self.path = self.mktemp()
        htpasswd(self.path, "alice", "secret", create=True)
        self.passwords = logins.PasswordFile(self.path)

    def refusals(self, times):
        with capturedLogs() as events:
            for _ in range(times):
                self.assertEqual(self.passwords.users(), {})
        return sum("cannot be used, so nobody can log in" in formatEvent(e) for e in events)

    def test_loggedOncePerChange(self):
        with open(self.path, "a") as f:
            f.write("erin:$apr1$abc$defghijklmnopqrstuvwx\n")
        self.assertEqual(self.refusals(5), 1)
        with open(self.path, "a") as f:
            f.write("# still broken\n")
        self.assertEqual(self.refusals(3), 1)
        os.remove(self.path)
        self.assertEqual(self.refusals(3), 1)
        htpasswd(self.path, "alice", "secret", create=True)
        self.assertEqual(sorted(self.passwords.users()), ["alice"])


class GuardedSiteTests(DicomWebTestCase):
    """A site whose dicom.ini names a WebUsers file, made by htpasswd."""

    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 2}
    ini = {"WebUsers": "webusers", "WebAllowOrigins": "*", "ImportConverters": "1", "ImportConverter0": 'set 0008,1010 to "%u"'}
    webUsers = {"alice": "secret"}
    PAGES = ("/cgi-bin/dgate?mode=top", "/dicom-web/studies", "/wado?requestType=WADO")

    def site(self):
        self.users = os.path.join(self.running.workdir, "webusers")
        return super().site()

    def get(self, path, user=None, password=None, headers=(), **more):
        """Fetched of ``path`` under the site's root, as ``user`` when given."""
        headers = [*headers, *([] if user is None else [("authorization", basic(user, password))])]
        return self.fetch(self.root + path, headers=headers, **more)

    @defer.inlineCallbacks
    def test_loginNeeded(self):
        """Without credentials every page is a 401 asking for Basic ones; with them it is there."""
        for path in self.PAGES:
            refused = yield self.get(path)
            self.assertEqual(refused.code, 401, path)
            self.assertEqual(refused.header("www-authenticate"), 'basic realm="pacs PACS", charset="UTF-8"')
            self.assertEqual(refused.header("access-control-allow-origin"),  # a viewer elsewhere may see the 401
                             "*" if path.startswith(("/dicom-web", "/wado")) else None)
        top = yield self.get(self.PAGES[0], "alice", "secret")
        self.assertEqual(top.code, 200)
        self.assertIn(b"Local patients", top.body)
        studies = yield self.get(self.PAGES[1], "alice", "secret")
        self.assertEqual(studies.code, 200)
        self.assertEqual(studies.json()[0]["0020000D"]["Value"], [self.corpus[0].studyUID])

    @defer.inlineCallbacks
    def test_nonAsciiCredentials(self):
        """Credentials in UTF-8 (browsers) and in Latin-1 (requests, older clients) both match htpasswd's."""
        htpasswd(self.users, "z\u00f6e", "\u00e9t\u00e9")
        for encoding in ("utf-8", "latin-1"):
            credentials = base64.b64encode("z\u00f6e:\u00e9t\u00e9".encode(encoding)).decode()
            answer = yield self.fetch("/studies", headers=[("authorization", "Basic " + credentials)])
            self.assertEqual(answer.code, 200, encoding)

    @defer.inlineCallbacks
    def test_refusedLogins(self):
        """Wrong passwords, unknown users and garbage headers: 401 and a log line each."""
        with capturedLogs() as events:
            for user, password in (("alice", "Secret"), ("alice", ""), ("mallory", "secret")):
                answer = yield self.get("/dicom-web/studies", user, password)
                self.assertEqual(answer.code, 401)
            garbage = yield self.fetch("/studies", headers=[("authorization", "Basic !!not base64")])
            self.assertEqual(garbage.code, 401)
        lines = [formatEvent(event) for event in events]
        self.assertEqual(len([line for line in lines if "login of 'alice' refused: wrong password" in line]), 2)
        self.assertTrue(any("login of 'mallory' refused: no such user" in line for line in lines), lines)
        self.assertTrue(any("127.0.0.1: a malformed Basic Authorization header refused" in line for line in lines))

    @defer.inlineCallbacks
    def test_storeAsTheUser(self):
        """STOW-RS as alice: converters see her as the calling AE (%u)."""
        with open(CT, "rb") as f:
            body = stowBody(f.read())
        stored = yield self.get("/dicom-web/studies", "alice", "secret", method=b"POST", body=body,
                                contentType=STOW_TYPE)
        self.assertEqual(stored.code, 200, stored.body)
        uid = pydicom.dcmread(CT).SOPInstanceUID
        [path] = [p for p in self.running.files() if pydicom.dcmread(p).SOPInstanceUID == uid]
        self.assertEqual(pydicom.dcmread(path).StationName, "alice")

    @defer.inlineCallbacks
    def test_storeFromAViewerServedElsewhere(self):
        """With logins a viewer of another origin stores as its user."""
        with open(CT, "rb") as f:
            body = stowBody(f.read())
        stored = yield self.get("/dicom-web/studies", "alice", "secret", method=b"POST", body=body,
                                contentType=STOW_TYPE, headers=[("origin", "http://viewer.example"),
                                                                ("sec-fetch-site", "cross-site")])
        self.assertEqual(stored.code, 200, stored.body)

    @defer.inlineCallbacks
    def test_formsReadAfterTheLogin(self):
        """A POSTed form is read only for a user that logged in: without a
        login even a malformed one is a 401, with one a 400."""
        form = {"method": b"POST", "body": b"junk", "contentType": "multipart/form-data"}
        refused = yield self.get("/cgi-bin/dgate?mode=top", **form)
        malformed = yield self.get("/cgi-bin/dgate?mode=top", "alice", "secret", **form)
        self.assertEqual((refused.code, malformed.code), (401, 400))

    @defer.inlineCallbacks
    def test_corsPreflight(self):
        """OPTIONS (a browser's preflight, never with credentials) passes; the request after it needs them."""
        origin = [("origin", "http://viewer.example")]
        preflight = yield self.get("/dicom-web/studies", method=b"OPTIONS", headers=[
            *origin, ("access-control-request-method", "GET"), ("access-control-request-headers", "authorization")])
        self.assertEqual(preflight.code, 204)
        self.assertIn("authorization", preflight.header("access-control-allow-headers").lower())
        refused = yield self.get("/dicom-web/studies", headers=origin)
        allowed = yield self.get("/dicom-web/studies", "alice", "secret", headers=origin)
        self.assertEqual((refused.code, allowed.code), (401, 200))
        self.assertEqual(allowed.header("access-control-allow-origin"), "*")

    @defer.inlineCallbacks
    def test_wadoPreflight(self):
        """WADO-URI (/wado, dgate's requestType=WADO) answers the preflight
        of a viewer that logs in as DICOMweb does: without it the browser
        never sends the request for the image."""
        for path in ("/wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3",
                     "/cgi-bin/dgate?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3",
                     "/cgi-bin/dgate.exe?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3"):
            preflight = yield self.get(path, method=b"OPTIONS", headers=[
                ("origin", "http://viewer.example"), ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization")])
            self.assertEqual((path, preflight.code), (path, 204))
            self.assertEqual(preflight.header("access-control-allow-methods"), "GET, HEAD, OPTIONS")
            self.assertEqual(preflight.header("access-control-allow-origin"), "*")
            self.assertIn("authorization", preflight.header("access-control-allow-headers").lower())
        pages = yield self.get("/cgi-bin/dgate?mode=top", method=b"OPTIONS")
        self.assertEqual(pages.code, 405)

    @defer.inlineCallbacks
    def test_passwordCheckedOnceOffTheReactor(self):
        """bcrypt runs in the reactor's thread pool (not the I/O pool), and
        once per password: the next requests with it are let in from a
        keyed digest."""
        threads = []
        checkpw = bcrypt.checkpw

        def counted(password, hashed):
            threads.append(threading.current_thread())
            return checkpw(password, hashed)
        self.patch(logins.bcrypt, "checkpw", counted)
        for _ in range(5):
            answer = yield self.get("/dicom-web/studies", "alice", "secret")
            self.assertEqual(answer.code, 200)
        self.assertEqual(len(threads), 1)
        self.assertIsNot(threads[0], threading.main_thread())
        self.assertFalse(threads[0].name.startswith(self.archive.workers.name), threads[0].name)
        wrong = yield self.get("/dicom-web/studies", "alice", "secreT")
        self.assertEqual((wrong.code, len(threads)), (401, 2))

    @defer.inlineCallbacks
    def test_fileChanges(self):
        """Users added or removed take effect at once; a file made
        unusable lets nobody in (with a log line) until it is mended."""
        first = yield self.get("/dicom-web/studies", "alice", "secret")
        self.assertEqual(first.code, 200)
        replacement = self.users + ".new"
        htpasswd(replacement, "bob", "builder", create=True)
        os.replace(replacement, self.users)
        bob = yield self.get("/dicom-web/studies", "bob", "builder")
        alice = yield self.get("/dicom-web/studies", "alice", "secret")
        self.assertEqual((bob.code, alice.code), (200, 401))
        with open(replacement, "w") as f:
            f.write("bob:builder\n")
        os.replace(replacement, self.users)
        with capturedLogs() as events:
            broken = yield self.get("/dicom-web/studies", "bob", "builder")
        self.assertEqual(broken.code, 401)
        self.assertTrue(any("cannot be used, so nobody can log in" in formatEvent(e) and ":1: the password of bob"
                            in formatEvent(e) for e in events))
        htpasswd(replacement, "bob", "builder", create=True)
        os.replace(replacement, self.users)
        mended = yield self.get("/dicom-web/studies", "bob", "builder")
        self.assertEqual(mended.code, 200)
