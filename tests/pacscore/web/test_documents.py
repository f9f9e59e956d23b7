"""Tests for pacscore.web.documents: an Encapsulated Document is sent so
that what its sender wrote cannot run in the archive's origin, by the
``document`` mode, WADO-URI and WADO-RS ``rendered`` alike."""

import os

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.control.data import AddImageFile
from pacscore.web.documents import documentAnswer
from tests.pacscore.web.dicomweb.client import DicomWebTestCase
from tests.pacscore.web.pages import PDF, encapsulatedPDF

SCRIPTED = {"text/html": b"<html><body><script>document.title='XSS'</script></body></html>",
            "image/svg+xml": b'<svg xmlns="http://www.w3.org/2000/svg"><script>document.title="XSS"</script></svg>',
            "text/xml": b'<html xmlns="http://www.w3.org/1999/xhtml"><script>document.title="XSS"</script></html>'}
SANDBOXED = {"content-security-policy": "sandbox", "x-content-type-options": "nosniff"}
SOP = "1.2.826.0.1.3680043.8.498.7"


def headers(answer):
    return {name.lower(): value for name, value in answer.headers}


def attachment(extension):
    """The headers of a document sent to download as ``<SOP><extension>``."""
    return {**SANDBOXED, "content-disposition": f'attachment; filename="{SOP}{extension}"'}


class DocumentAnswerTests(unittest.TestCase):

    def test_scriptableTypesAreAttachments(self):
        """A page, an SVG picture or XML (XHTML) is a download, sandboxed,
        never shown in the archive's origin."""
        for (kind, data), extension in zip(SCRIPTED.items(), (".html", ".svg", ".xml")):
            answer = documentAnswer((kind, data), SOP)
            self.assertEqual((answer.contentType, answer.body), (kind, data))
            self.assertEqual(headers(answer), attachment(extension), kind)

    def test_attachmentNamedAfterItsObject(self):
        """A download is named after its object's SOP Instance UID, with
        the extension of its type (``.bin`` for a type of none)."""
        for kind, extension in (("model/stl", ".stl"), ("model/obj", ".obj"), ("model/mtl", ".mtl"),
                                ("application/xml", ".xml"), ("text/xml; charset=utf-8", ".xml"),
                                ("application/x-nosuch", ".bin"), ("text/html\r\nX-Evil: 1", ".bin")):
            self.assertEqual(headers(documentAnswer((kind, b"x"), SOP)), attachment(extension), kind)

    def test_pdfShownSandboxed(self):
        """A PDF (what the image lists' "pdf" link promises) is shown, sandboxed."""
        answer = documentAnswer(("application/pdf", PDF), SOP)
        self.assertEqual((answer.contentType, answer.body, headers(answer)), ("application/pdf", PDF, SANDBOXED))
        for kind in ("text/plain", "image/png", "image/jpeg"):
            self.assertEqual(headers(documentAnswer((kind, b"x"), SOP)), SANDBOXED, kind)

    def test_parametersAreNotWhatDecides(self):
        """Only the ``type/subtype`` decides whether a document is shown;
        a text keeps its charset, other parameters are dropped."""
        for kind, sent, shown in (("text/plain; charset=utf-8", "text/plain; charset=utf-8", True),
                                  ('text/plain;charset="iso-8859-1"', "text/plain; charset=iso-8859-1", True),
                                  ("application/pdf; version=1.7", "application/pdf", True),
                                  ("text/html; charset=utf-8", "text/html; charset=utf-8", False),
                                  ("text/xml; charset=utf-8; x=y", "text/xml; charset=utf-8", False),
                                  ("text/plain; charset=utf-8;", "text/plain; charset=utf-8", True),
                                  ("application/pdf;", "application/pdf", True),
                                  ("text/plain;; charset=utf-8 ; ", "text/plain; charset=utf-8", True)):
            answer = documentAnswer((kind, b"x"), SOP)
            self.assertEqual(answer.contentType, sent, kind)
            self.assertEqual(headers(answer), SANDBOXED if shown else attachment(".html" if "html" in kind else ".xml"),
                             kind)

    def test_typeThatIsNoneIsBytes(self):
        """A (0042,0012) that is no plain ``type/subtype`` with well-formed
        parameters (a header of its own, nothing) is sent as bytes to download."""
        for kind in ("text/html\r\nX-Evil: 1", "text/plain; charset=utf-8\r\nX-Evil: 1", "text/plain; charset",
                     "text/plain; charset=a b", "text/plain; charset=utf-8;\r\nX-Evil: 1", "text/plain;\r\n",
                     "application/pdf extra", "pdf", ""):
            answer = documentAnswer((kind, b"<script>"), SOP)
            self.assertEqual(answer.contentType, "application/octet-stream", repr(kind))
            self.assertEqual(headers(answer), attachment(".bin"), repr(kind))


class ServedDocumentTests(DicomWebTestCase):
    """Documents a sender stored, had through the site as a browser has them."""

    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 1}

    @defer.inlineCallbacks
    def store(self, number, kind, data):
        """Store patient DOC's Encapsulated PDF object holding ``data`` as a
        ``kind`` document; ``(study, series, sop)``."""
        study = f"1.2.826.0.1.3680043.8.498.80.{number}"
        uids = (study, f"{study}.1", f"{study}.1.1")
        dataset = encapsulatedPDF("DOC", *uids)
        dataset.MIMETypeOfEncapsulatedDocument = kind
        dataset.EncapsulatedDocument = data + b"\0" * (len(data) % 2)
        dataset.EncapsulatedDocumentLength = len(data)
        path = os.path.join(self.running.workdir, f"doc{number}.dcm")
        dataset.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        return uids

    def addresses(self, study, series, sop):
        """The ``document`` mode, WADO-URI and WADO-RS ``rendered`` of an object."""
        return (f"{self.root}/cgi-bin/dgate?mode=document&slice=DOC:{sop}",
                f"{self.root}/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}"
                f"&contentType={{}}",
                f"{self.base}/studies/{study}/series/{series}/instances/{sop}/rendered")

    def assertSent(self, fetched, kind, data, disposition):
        self.assertEqual((fetched.code, fetched.header("content-type"), fetched.body), (200, kind, data))
        self.assertEqual((fetched.header("content-security-policy"), fetched.header("x-content-type-options"),
                          fetched.header("content-disposition")), ("sandbox", "nosniff", disposition))

    @defer.inlineCallbacks
    def test_everyAddressSendsAScriptAsAnAttachment(self):
        """An HTML page, SVG or XHTML a sender stored as a document is a
        sandboxed download at each address a browser may open it (its own
        Accept header enough for ``rendered``)."""
        browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
        for (number, (kind, data)), extension in zip(enumerate(SCRIPTED.items()), (".html", ".svg", ".xml")):
            uids = yield self.store(number, kind, data)
            document, wado, rendered = self.addresses(*uids)
            named = f'attachment; filename="{uids[2]}{extension}"'
            self.assertSent((yield self.fetch(document, accept=browser)), kind, data, named)
            self.assertSent((yield self.fetch(rendered, accept=browser)), kind, data, named)
            if kind == "text/xml":  # the only one of these WADO-URI answers (PS3.3 C.24.2's types)
                self.assertSent((yield self.fetch(wado.format(kind))), kind, data, named)

    @defer.inlineCallbacks
    def test_pdfShownAtEveryAddress(self):
        document, wado, rendered = self.addresses(*(yield self.store(9, "application/pdf", PDF)))
        for address in (document, wado.format("application/pdf"), rendered):
            self.assertSent((yield self.fetch(address, accept="application/pdf")), "application/pdf", PDF, None)

    @defer.inlineCallbacks
    def test_documentWithParametersAskedForByItsType(self):
        """A document whose (0042,0012) has parameters is had by asking for
        its ``type/subtype`` at WADO-URI and WADO-RS ``rendered``, as shown."""
        for number, (kind, asked, sent, disposition) in enumerate((
                ("application/pdf; version=1.7", "application/pdf", "application/pdf", None),
                ("text/xml; charset=utf-8", "text/xml", "text/xml; charset=utf-8", "xml"))):
            uids = yield self.store(20 + number, kind, PDF)
            _, wado, rendered = self.addresses(*uids)
            named = disposition and f'attachment; filename="{uids[2]}.{disposition}"'
            self.assertSent((yield self.fetch(wado.format(asked))), sent, PDF, named)
            self.assertSent((yield self.fetch(rendered, accept=asked)), sent, PDF, named)
