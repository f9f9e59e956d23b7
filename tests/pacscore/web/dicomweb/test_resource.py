"""Tests for pacscore.web.dicomweb.resource over HTTP: each /dicom-web
resource names in ``Allow`` (405s and OPTIONS) the methods it answers,
and answers every one it names."""

from twisted.internet import defer

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
