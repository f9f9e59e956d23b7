"""Tests for pacscore.web.wado: a large object asked for anonymized is
converted file to file and streamed, as it would be made in memory."""

import os

import numpy as np
from twisted.internet import defer

from pacscore.control.data import AddImageFile
from pacscore.control.deidentification import basicProfile
from pacscore.control.pictures import dicomFile
from pacscore.dicom.storeddata import STREAMED_OBJECT
from pacscore.testing.corpus import makeDataset
from pacscore.web.objectstream import CHUNK
from tests.pacscore.web.pages import Request, WebTestCase, answered

STUDY, SERIES, SOP = "1.2.826.0.1.3680043.2.1125.8.1", "1.2.826.0.1.3680043.2.1125.8.2", "1.2.826.0.1.3680043.2.1125.8.3"


class AnonymizedTests(WebTestCase):

    @defer.inlineCallbacks
    def test_largeStreamed(self):
        """A 20 MB multi-frame object goes out 1 MB at a time, the bytes the
        whole object de-identified in memory would be."""
        ds = makeDataset("BIG", "Big^Object", STUDY, SERIES, SOP, 1, 1, rows=1024, columns=512)
        ds.NumberOfFrames = 20
        ds.PixelData = np.random.default_rng(4).integers(0, 4096, (20, 1024, 512), dtype=np.uint16).tobytes()
        source = os.path.join(self.running.workdir, "big.dcm")
        ds.save_as(source, enforce_file_format=True)
        yield self.running.run(AddImageFile(), source)
        stored, = (path for path in self.running.files() if "BIG" in path)
        request = Request([])
        request.method = b"GET"
        request.uri = request.path = b"/cgi-bin/dgate"
        request.args = {b"requestType": [b"WADO"], b"studyUID": [STUDY.encode()], b"seriesUID": [SERIES.encode()],
                        b"objectUID": [SOP.encode()], b"contentType": [b"application/dicom"],
                        b"anonymize": [b"yes"]}
        found = yield answered(self.resource, request)
        archive = self.running.archive
        expected = dicomFile(stored, 0, "un", None, archive.configuration.lossyQuality,
                             basicProfile(archive.converterServices.uidMap))
        self.assertGreater(len(expected), STREAMED_OBJECT)
        self.assertEqual((found.code, found.headers["content-type"]), (200, "application/dicom"))
        self.assertTrue(found.body == expected, "not the object anonymized in memory")
        self.assertNotIn(b"Big^Object", found.body)
        self.assertGreater(len(request.written), len(ds.PixelData) // CHUNK)
        self.assertLessEqual(max(map(len, request.written)), CHUNK)
