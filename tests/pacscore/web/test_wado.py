"""Tests for pacscore.web.wado: contentType weighed by its q values, a
large object asked for anonymized is converted file to file and
streamed, as it would be made in memory, and NKI compressed objects
shown as pictures."""

import pydicom
from twisted.internet import defer

from pacscore.codecs.syntaxes import IMPLICIT_VR_LITTLE_ENDIAN
from pacscore.control.deidentification import basicProfile
from pacscore.control.pictures import dicomFile
from pacscore.dicom.storeddata import STREAMED_OBJECT
from pacscore.web.answers import HTML
from pacscore.web.objectstream import CHUNK
from tests.pacscore.web.pages import WebTestCase, answered, get, getQuery, getRequest, nkiObject

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
        expected = dicomFile(stored, 0, "un", None, archive.lossyQuality,
                             basicProfile(archive.converterServices.uidMap))
        self.assertGreater(len(expected), STREAMED_OBJECT)
        self.assertEqual((found.code, found.headers["content-type"]), (200, "application/dicom"))
        self.assertTrue(found.body == expected, "not the object anonymized in memory")
        self.assertNotIn(b"Big^Object", found.body)
        self.assertGreater(len(request.written), len(ds.PixelData) // CHUNK)
        self.assertLessEqual(max(map(len, request.written)), CHUNK)


class ContentTypeTests(WebTestCase):

    @defer.inlineCallbacks
    def test_qValuesWeighTheTypes(self):
        """contentType's q values order its types as an Accept header's do
        (PS3.18 8.1.5: "relative degree of preference"), q=0 refusing one:
        a wildcard takes a picture type it does not refuse, and a list that
        refuses each type it names is a 406; ``image/jpg`` is ``image/jpeg``,
        refused with it; a q other than RFC 9110's (0 to 1, three decimals)
        is a 400."""
        image = self.corpus[0]
        for contentType, kind in (("image/png;q=0.1,image/jpeg", "image/jpeg"),
                                  ("image/png;q=0,image/jpeg", "image/jpeg"),
                                  ("application/dicom;q=0.2,image/jpeg;q=0.9", "image/jpeg"),
                                  ("image/gif;q=0.5, image/png", "image/png"),
                                  ("*/*,image/jpeg;q=0", "image/png"),
                                  ("image/*,image/jpeg;q=0,image/png;q=0", "image/gif"),
                                  ("*/*,image/*;q=0", "application/dicom"),
                                  ("image/jpeg;q=0", None), ("image/png;q=0,text/html;q=0", None),
                                  ("*/*;q=0", None),
                                  ("image/jpg;q=0.5,image/jpeg;q=0,image/png;q=0.4", "image/png"),
                                  ("image/jpg", "image/jpeg"), ("*/*,image/jpg;q=0", "image/png"),
                                  ("image/jpg;q=0", None)):
            answer = yield get(self.resource, requestType="WADO", studyUID=image.studyUID, seriesUID=image.seriesUID,
                               objectUID=image.sopUID, contentType=contentType)
            self.assertEqual((contentType, answer.code, answer.headers["content-type"]),
                             (contentType, 200, kind) if kind else (contentType, 406, HTML))
        answer = yield get(self.resource, requestType="WADO", studyUID=image.studyUID, seriesUID=image.seriesUID,
                           objectUID=image.sopUID, contentType="image/png;q=x")
        self.assertEqual(answer.code, 400)
        self.assertIn(b"contentType has a bad q value", answer.body)
        for contentType in ("image/png;q=nan,image/jpeg", "image/png;q=-1,image/jpeg", "image/png;q=2,image/jpeg",
                            "image/jpeg;q=0.1,image/png;q=inf", "image/gif;q=1_0,image/jpeg;q=5"):
            answer = yield get(self.resource, requestType="WADO", studyUID=image.studyUID, seriesUID=image.seriesUID,
                               objectUID=image.sopUID, contentType=contentType)
            self.assertEqual((contentType, answer.code), (contentType, 400))

    @defer.inlineCallbacks
    def test_qValuesInTheURL(self):
        """contentType's ``;q=`` counts when its ``;`` is not percent-encoded,
        as a browser or curl sends it: a query is split at ``&`` alone."""
        image = self.corpus[0]
        base = (f"requestType=WADO&studyUID={image.studyUID}&seriesUID={image.seriesUID}"
                f"&objectUID={image.sopUID}&contentType=").encode()
        jpeg = yield getQuery(self.resource, base + b"image/png;q=0,image/jpeg")
        self.assertEqual((jpeg.code, jpeg.body[:2]), (200, b"\xff\xd8"))
        weighed = yield getQuery(self.resource, base + b"application/dicom;q=0.2,image/jpeg;q=0.9")
        self.assertEqual((weighed.code, weighed.body[:2]), (200, b"\xff\xd8"))
        self.assertEqual((yield getQuery(self.resource, base + b"image/jpeg;q=0")).code, 406)
        self.assertEqual((yield getQuery(self.resource, base + b"image/png;q=abc")).code, 400)


class NKITests(WebTestCase):

    @defer.inlineCallbacks
    def test_pictureOfAnNKICompressedObject(self):
        """An object whose pixels are NKI compressed (Conquest's n1..n4 and
        pacs's own IncomingCompression n4: (7FDF,0010), no Pixel Data), in
        a Part-10 file or a bare .v2, has its picture, asked for and by
        default, not a 406 ("the object holds no pixels") nor the DICOM
        object; one whose (7FDF,0010) is no NKI stream (Elscint's) has none."""
        image = self.corpus[0]
        (stored,) = self.running.files()
        dataset = pydicom.dcmread(stored)
        wado = {"requestType": "WADO", "studyUID": image.studyUID, "seriesUID": image.seriesUID,
                "objectUID": image.sopUID}
        for bare in (False, True):
            with open(stored, "wb") as f:
                f.write(nkiObject(dataset, IMPLICIT_VR_LITTLE_ENDIAN, 2, bare))
            for asked in ({"contentType": "image/jpeg"}, {}):
                answer = yield get(self.resource, **wado, **asked)
                self.assertEqual((bare, asked, answer.code, answer.headers["content-type"], answer.body[:2]),
                                 (bare, asked, 200, "image/jpeg", b"\xff\xd8"), answer.body[:300])
        del dataset.PixelData
        dataset.add_new(0x7FDF0010, "OB", b"ELSCINT1" * 200)
        dataset.save_as(stored, enforce_file_format=True)
        answer = yield get(self.resource, **wado)
        self.assertEqual((answer.code, answer.headers["content-type"]), (200, "application/dicom"))
