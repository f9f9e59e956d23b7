"""Tests for pacscore.web.wado: a large object asked for anonymized is
converted file to file and streamed, as it would be made in memory."""

from twisted.internet import defer

from pacscore.control.deidentification import basicProfile
from pacscore.control.pictures import dicomFile
from pacscore.dicom.storeddata import STREAMED_OBJECT
from pacscore.web.objectstream import CHUNK
from tests.pacscore.web.pages import WebTestCase, answered, getRequest

STUDY, SERIES, SOP = "1.2.826.0.1.3680043.2.1125.8.1", "1.2.826.0.1.3680043.2.1125.8.2", "1.2.826.0.1.3680043.2.1125.8.3"


class AnonymizedTests(WebTestCase):

    @defer.inlineCallbacks
    def test_largeStreamed(self):
        """A 20 MB multi-frame object goes out 1 MB at a time, the bytes the
        whole object de-identified in memory would be."""
        ds, stored = yield self.storeMultiFrame((STUDY, SERIES, SOP), 20, 4)
        request = getRequest({"requestType": "WADO", "studyUID": STUDY, "seriesUID": SERIES, "objectUID": SOP,
                              "contentType": "application/dicom", "anonymize": "yes"})
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
