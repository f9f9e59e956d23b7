"""Tests for pacscore.web.dicomweb.resource over HTTP: each /dicom-web
resource names in ``Allow`` (405s and OPTIONS) the methods it answers,
and answers every one it names."""

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from pacscore.web.answers import WebError
from pacscore.web.dicomweb.resource import baseURL
from tests.pacscore.web.dicomweb.client import DicomWebTestCase

READ = "GET, HEAD, OPTIONS"
READ_AND_STORE = "GET, HEAD, OPTIONS, POST"


class AllowTests(DicomWebTestCase):

    ini = {"WebAllowOrigins": "*"}  # every answer, an error too, readable by pages of every origin

    def resources(self):
        """``{path: the methods it answers}`` of a study, series and instance of the corpus."""
        image = self.corpus[0]
        study = f"/studies/{image.studyUID}"
        series = f"{study}/series/{image.seriesUID}"
        instance = f"{series}/instances/{image.sopUID}"
        return {"/studies": READ_AND_STORE, "/series": READ, "/instances": READ, study: READ_AND_STORE,
                study + "/metadata": READ, study + "/thumbnail": READ, series: READ, series + "/instances": READ,
                instance: READ, instance + "/rendered": READ, instance + "/frames/1": READ,
                instance + "/frames/1/rendered": READ, instance + "/bulk/7FE00010": READ}

    @defer.inlineCallbacks
    def test_refusalsNameTheResourcesMethods(self):
        for path, methods in self.resources().items():
            for method in (b"PUT", b"DELETE", b"PATCH", b"POST"):
                if method.decode() in methods:
                    continue
                found = yield self.fetch(path, method=method, body=b"x")
                what = (path, method)
                self.assertEqual((what, found.code, found.header("allow")), (what, 405, methods))
                self.assertEqual(found.header("access-control-allow-origin"), "*")
            preflight = yield self.fetch(path, method=b"OPTIONS")
            self.assertEqual((path, preflight.code, preflight.header("allow"),
                              preflight.header("access-control-allow-methods")), (path, 204, methods, methods))

    @defer.inlineCallbacks
    def test_namedMethodsAnswered(self):
        """No method ``Allow`` names is refused (a POST without a body is a bad request, not a 405)."""
        for path, methods in self.resources().items():
            for method in methods.split(", "):
                found = yield self.fetch(path, method=method.encode())
                self.assertNotEqual(found.code, 405, (path, method))

    @defer.inlineCallbacks
    def test_preflightOfNothing(self):
        """OPTIONS of a path naming no resource answers as GET does: 404, or 400 for a bad UID."""
        for path, code in (("/patients", 404), ("/studies/not-a-uid/series", 400)):
            found = yield self.fetch(path, method=b"OPTIONS")
            self.assertEqual((path, found.code, found.header("allow")), (path, code, None))


class BaseURLTests(DicomWebTestCase):
    """RetrieveURLs name the server as the client did in ``Host``."""

    @defer.inlineCallbacks
    def retrieveURL(self, host):
        found = yield self.fetch(f"/instances?SOPInstanceUID={self.corpus[0].sopUID}", headers=[(b"host", host)])
        return found.json()[0]["00081190"]["Value"][0] if found.code == 200 else found.code

    @defer.inlineCallbacks
    def test_hostAsSent(self):
        image = self.corpus[0]
        suffix = f"/dicom-web/studies/{image.studyUID}/series/{image.seriesUID}/instances/{image.sopUID}"
        port = self.root.rsplit(":", 1)[1]
        for host, root in ((b"127.0.0.1:8443", "http://127.0.0.1:8443"), (b"[::1]:47332", "http://[::1]:47332"),
                           (b"[::1]", f"http://[::1]:{port}"), (b"127.0.0.1", f"http://127.0.0.1:{port}")):
            self.assertEqual((yield self.retrieveURL(host)), root + suffix)

    @defer.inlineCallbacks
    def test_badHost(self):
        """One the host name check lets by (its host an address), not made part of a URL."""
        self.assertEqual((yield self.retrieveURL(b"127.0.0.1/x")), 400)


class BaseURLTestsOfRequests(unittest.TestCase):
    """Without ``Host`` (HTTP/1.0), the address the request came in on; a
    ``Host`` that is no host and port (let by where logins replace the
    host name check) is a 400."""

    def request(self, address, secure=False, host=None):
        request = DummyRequest([b"studies"])
        if host is not None:
            request.requestHeaders.addRawHeader(b"host", host)
        request.prepath = [b"dicom-web"]
        request.getHost = lambda: address
        request.isSecure = lambda: secure
        return request

    def test_addressOfTheConnection(self):
        for address, secure, base in ((IPv6Address("TCP", "::1", 8080), False, "http://[::1]:8080/dicom-web"),
                                      (IPv4Address("TCP", "10.0.0.1", 443), True, "https://10.0.0.1/dicom-web"),
                                      (IPv4Address("TCP", "10.0.0.1", 443), False, "http://10.0.0.1:443/dicom-web")):
            self.assertEqual(baseURL(self.request(address, secure)), base)

    def test_emptyHostIsNoHost(self):
        """An empty Host (RFC 9110 7.2 allows it) names the connection's
        address; an IPv6 zone in it is escaped (RFC 6874)."""
        for address, base in ((IPv4Address("TCP", "10.0.0.1", 8080), "http://10.0.0.1:8080/dicom-web"),
                              (IPv6Address("TCP", "fe80::1%eth0", 8080), "http://[fe80::1%25eth0]:8080/dicom-web")):
            self.assertEqual(baseURL(self.request(address, host=b"")), base)
            self.assertEqual(baseURL(self.request(address)), base)

    def test_portOfTheConnectionWhereHostHasNone(self):
        """As dicomweb-client sends Host (no port), the scheme's default port left out."""
        for port, secure, base in ((8080, False, "http://pacs:8080/dicom-web"), (80, False, "http://pacs/dicom-web"),
                                   (443, True, "https://pacs/dicom-web")):
            for host in (b"pacs", b"pacs:"):  # a bare ':' is no port (RFC 3986 3.2.3)
                request = self.request(IPv4Address("TCP", "10.0.0.1", port), secure, host=host)
                self.assertEqual(baseURL(request), base)

    def test_badHosts(self):
        address = IPv4Address("TCP", "10.0.0.1", 80)
        for host in (b"10.0.0.1:80@evil", b"[::1", b"a b", "h\xf6st".encode("latin-1"), b"h:1/x",
                     b"h:99999", b"h:65536", b"h:0", b"[::1]:70000"):
            with self.assertRaises(WebError, msg=host) as refused:
                baseURL(self.request(address, host=host))
            self.assertEqual(refused.exception.code, 400)
