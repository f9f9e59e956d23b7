"""Tests for pacscore.web.sharing: which pages of other sites may read
DICOMweb and WADO answers (CORS), over real HTTP."""

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.config.errors import ConfigError
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.web.dicomweb.client import DicomWebTestCase

VIEWER = "https://viewer.example.org"
EVIL = "http://evil.example"
PREFLIGHT = (("access-control-request-method", "GET"), ("access-control-request-headers", "authorization"))


class SharingTestCase(DicomWebTestCase):

    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 1}

    def paths(self):
        """The shared paths: DICOMweb, /wado and dgate's WADO."""
        image = self.corpus[0]
        wado = f"requestType=WADO&studyUID={image.studyUID}&seriesUID={image.seriesUID}&objectUID={image.sopUID}"
        return ("/dicom-web/studies", f"/dicom-web/studies/{image.studyUID}/metadata", "/dicom-web/studies/1.2.3",
                "/wado?" + wado, "/cgi-bin/dgate?" + wado)

    @defer.inlineCallbacks
    def cors(self, path, origin, method=b"GET", headers=()):
        """The code and CORS headers of the answer to ``path`` asked from a page of ``origin``."""
        found = yield self.fetch(self.root + path, method=method, headers=(("origin", origin), *headers))
        return (found.code, found.header("access-control-allow-origin"), found.header("vary"),
                found.header("access-control-allow-headers"))


class NoOriginsTests(SharingTestCase):
    """Without WebAllowOrigins no other site's page may read anything."""

    @defer.inlineCallbacks
    def test_notShared(self):
        for path in self.paths():
            code, allowed, vary, _ = yield self.cors(path, EVIL)
            self.assertIn(code, (200, 404), path)
            self.assertEqual((path, allowed, vary), (path, None, None))
        code, allowed, _, headers = yield self.cors("/dicom-web/studies", EVIL, b"OPTIONS", PREFLIGHT)
        self.assertEqual((code, allowed, headers), (204, None, None))

    @defer.inlineCallbacks
    def test_sameOriginReads(self):
        """The server's own pages (and clients that are no browser) read as ever."""
        found = yield self.fetch("/studies", headers=[("origin", self.root)])
        self.assertEqual((found.code, found.json()[0]["0020000D"]["Value"]), (200, [self.corpus[0].studyUID]))


class ListedOriginsTests(SharingTestCase):
    """WebAllowOrigins lists origins: theirs are named, others are not."""

    ini = {"WebAllowOrigins": f"{VIEWER}/, http://localhost:3000"}

    @defer.inlineCallbacks
    def test_listedOrigin(self):
        for path in self.paths():
            answer = yield self.cors(path, VIEWER)
            self.assertEqual((path, answer[1:3]), (path, (VIEWER, "Origin")))
        answer = yield self.cors("/dicom-web/studies", "HTTP://LOCALHOST:3000", b"OPTIONS", PREFLIGHT)
        self.assertEqual(answer[:2], (204, "HTTP://LOCALHOST:3000"))
        self.assertIn("Authorization", answer[3])

    @defer.inlineCallbacks
    def test_requestedHeaders(self):
        """A listed origin's preflight may ask for other headers than
        Accept, Content-Type and Authorization (a viewer's Cache-Control):
        they are allowed too; its answers let it read the Warning (QIDO's
        "additional results", an ignored parameter)."""
        asked = (("access-control-request-method", "GET"),
                 ("access-control-request-headers", "authorization,accept,cache-control, x-requested-with"))
        for path in ("/dicom-web/studies", "/wado?requestType=WADO"):
            answer = yield self.cors(path, VIEWER, b"OPTIONS", asked)
            self.assertEqual((path, answer[:2]), (path, (204, VIEWER)))
            self.assertEqual({name.strip().lower() for name in answer[3].split(",")},
                             {"accept", "content-type", "authorization", "cache-control", "x-requested-with"})
        answer = yield self.cors("/dicom-web/studies", VIEWER, b"OPTIONS", (
            ("access-control-request-method", "GET"), ("access-control-request-headers", "a b, c\x7f")))
        self.assertEqual(answer[3], "Accept, Content-Type, Authorization")
        found = yield self.fetch("/studies?_=123", headers=[("origin", VIEWER)])
        self.assertEqual(found.header("access-control-expose-headers"), "Warning")
        self.assertIsNotNone(found.header("warning"))
        answer = yield self.cors("/dicom-web/studies", EVIL, b"OPTIONS", asked)
        self.assertEqual(answer[3], None)

    @defer.inlineCallbacks
    def test_otherOrigins(self):
        for origin in (EVIL, "null", VIEWER + ".evil.example", "http://viewer.example.org", "https://viewer.example.org:8443"):
            for path in self.paths():
                answer = yield self.cors(path, origin)
                self.assertEqual((origin, path, answer[1:]), (origin, path, (None, "Origin", None)))
            answer = yield self.cors("/dicom-web/studies", origin, b"OPTIONS", PREFLIGHT)
            self.assertEqual(answer, (204, None, "Origin", None))

    @defer.inlineCallbacks
    def test_preflightReadsTheQueryAsItsRequest(self):
        """dgate's query is split at ``&`` alone for the CORS preflight too:
        ``requestType=WADO;x=1`` asks for no WADO (its requestType is
        ``WADO;x=1``), so neither its preflight nor its request is shared,
        and the preflight is refused as a page's OPTIONS is; with ``&``
        both are WADO's."""
        path = "/cgi-bin/dgate?requestType=WADO;x=1"
        self.assertEqual((yield self.cors(path, VIEWER, b"OPTIONS", PREFLIGHT))[:2], (405, None))
        found = yield self.fetch(self.root + path, headers=[("origin", VIEWER)])
        self.assertEqual((found.code, found.header("content-type"), found.header("access-control-allow-origin")),
                         (200, "text/html; charset=utf-8", None))
        path = "/cgi-bin/dgate?x=1;y=2&requestType=WADO"
        self.assertEqual((yield self.cors(path, VIEWER, b"OPTIONS", PREFLIGHT))[:2], (204, VIEWER))
        self.assertEqual((yield self.cors(path, VIEWER))[:2], (400, VIEWER))

    @defer.inlineCallbacks
    def test_pagesNotShared(self):
        """The web interface's own pages are not DICOMweb or WADO: never shared."""
        for path in ("/cgi-bin/dgate?mode=querypatients", "/metrics"):
            answer = yield self.cors(path, VIEWER)
            self.assertEqual((path, answer), (path, (200, None, None, None)))


class DefaultPortTests(SharingTestCase):
    """An origin listed with its scheme's default port, in any case, is the
    one browsers send without it."""

    ini = {"WebAllowOrigins": "HTTPS://Viewer.Example.org:443 http://localhost:80"}

    @defer.inlineCallbacks
    def test_defaultPortsLeftOut(self):
        for origin, allowed in ((VIEWER, VIEWER), ("http://localhost", "http://localhost"),
                                ("https://viewer.example.org:8443", None), ("https://localhost", None)):
            answer = yield self.cors("/dicom-web/studies", origin)
            self.assertEqual((origin, answer[1]), (origin, allowed))


class EveryOriginTests(SharingTestCase):

    ini = {"WebAllowOrigins": "*"}

    @defer.inlineCallbacks
    def test_everyOrigin(self):
        for path in self.paths():
            answer = yield self.cors(path, EVIL)
            self.assertEqual((path, answer[1:3]), (path, ("*", None)))
        answer = yield self.cors("/dicom-web/studies", EVIL, b"OPTIONS", PREFLIGHT)
        self.assertEqual(answer[:2], (204, "*"))
        self.assertIn("Authorization", answer[3])

    @defer.inlineCallbacks
    def test_queryOutsideAscii(self):
        """A dgate query holding letters outside ASCII (a search for Müller,
        encoded as a browser does, or in Latin-1) is answered, not a 500."""
        for query in ("mode=querypatients&patientnamematch=M%C3%BCller", "mode=querypatients&patientnamematch=M%FCller",
                      "requestType=WADO&studyUID=1.2&seriesUID=1.2&objectUID=1.2&x=%C3%BC"):
            code, allowed, _, _ = yield self.cors("/cgi-bin/dgate?" + query, EVIL)
            self.assertNotEqual(code, 500, query)
            self.assertEqual(allowed, "*" if query.startswith("requestType") else None, query)


class BadOriginsTests(unittest.TestCase):

    def test_notAnOrigin(self):
        """An entry that is no origin stops the start naming dicom.ini's line."""
        for entry in ("viewer.example.org", "https://viewer.example.org/ohif", "ftp://x", "https://x:port"):
            self.assertRaisesRegex(ConfigError, rf"dicom\.ini:\d+: WebAllowOrigins: '{entry}' is not an origin",
                                   RunningArchive, self, ini={"WebAllowOrigins": f"http://localhost {entry}"})
