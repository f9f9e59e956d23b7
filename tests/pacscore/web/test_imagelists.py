"""Tests for pacscore.web.imagelists: Conquest's ``imagelisturls`` and
``imagelisthttp`` modes, the image lists of a series its viewer pages load."""

import os
from urllib.parse import parse_qs, urlsplit

from twisted.internet import defer

from pacscore.control.data import AddImageFile
from pacscore.testing.corpus import makeDataset
from tests.pacscore.web.pages import WebTestCase, get


class ImageListTests(WebTestCase):

    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 3}

    @defer.inlineCallbacks
    def test_imageListUrls(self):
        """'there is no page 'imagelisturls'' (404): the list of the
        series' DICOM URLs, one a line in image number order, each the
        dicom mode of one image, which answers it."""
        image = self.corpus[0]
        answer = yield get(self.resource, mode="imagelisturls", series=f"{image.patientID}:{image.seriesUID}",
                           dsize="256", compress="j2")
        self.assertEqual((answer.code, answer.headers.get("content-type")), (200, "text/plain; charset=utf-8"))
        port = self.running.archive.tcpPort
        self.assertEqual(answer.text.splitlines(), [
            f"/cgi-bin/dgate?port={port}&address=127.0.0.1&mode=dicom&slice={i.patientID}:{i.sopUID}"
            f"&dsize=256&compress=j2&dum=.dcm" for i in self.corpus])
        self.assertTrue(answer.text.endswith(".dcm\n"))
        first = yield get(self.resource, answer.text.splitlines()[0])
        self.assertEqual((first.code, first.body[128:132]), (200, b"DICM"))
        refused = yield get(self.resource, mode="imagelisturls", series=f"{image.patientID}:{image.seriesUID}",
                            compress="zz")
        self.assertEqual(refused.code, 400)

    @defer.inlineCallbacks
    def test_patientIDPercentEncodedOnce(self):
        """The patient ID of a slice URL is percent-encoded once, as in the
        imagelister's ':' rows: 'A B&C' reaches the dicom mode whole; the
        URLs start with WebScriptAddress when dicom.ini has it."""
        self.running.archive.configuration.ini.set("WebScriptAddress", "http://pacs.example/cgi-bin/dgate")
        uids = ["1.2.826.0.1.3680043.8.498.77", "1.2.826.0.1.3680043.8.498.78", "1.2.826.0.1.3680043.8.498.79"]
        source = os.path.join(self.running.workdir, "abc.dcm")
        makeDataset("A B&C", "Spaced^Patient", *uids, 1, 1).save_as(source, enforce_file_format=True)
        yield self.running.run(AddImageFile(), source)
        answer = yield get(self.resource, mode="imagelisturls", series=f"A B&C:{uids[1]}")
        [line] = answer.text.splitlines()
        self.assertTrue(line.startswith("http://pacs.example/cgi-bin/dgate?port="), line)
        self.assertIn("&slice=A%20B%26C:1.2.826.0.1.3680043.8.498.79&", line)
        self.assertEqual(parse_qs(urlsplit(line).query)["slice"], [f"A B&C:{uids[2]}"])
        dicom = yield get(self.resource, line)
        self.assertEqual((dicom.code, dicom.body[128:132]), (200, b"DICM"))

    @defer.inlineCallbacks
    def test_imageListHttp(self):
        """The URLs of the files under WebMAG0Address (by default
        http://<host>/mag0, the host the request named), joined by '*' in
        one line."""
        image = self.corpus[0]
        root = self.running.archive.devices[0].path
        names = [os.path.relpath(path, root).replace(os.sep, "/") for path in self.running.files()]
        for address in ("", "http://files.example/pacs/mag0"):
            self.running.archive.configuration.ini.set("WebMAG0Address", address)
            answer = yield get(self.resource, mode="imagelisthttp", series=f"{image.patientID}:{image.seriesUID}")
            self.assertEqual((answer.code, answer.headers.get("content-type")), (200, "text/plain; charset=utf-8"))
            [line] = answer.text.splitlines()
            self.assertEqual(sorted(line.split("*")),
                             sorted(f"{address or 'http://dummy/mag0'}/{name}" for name in names))
        none = yield get(self.resource, mode="imagelisthttp", series="X:1.2.3")
        self.assertEqual((none.code, none.body), (200, b""))
