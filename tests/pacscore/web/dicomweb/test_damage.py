"""Seeded random damage to valid DICOMweb requests (their paths and query
strings, and STOW-RS bodies): every answer is a 2xx or a 4xx, never a 500,
and nothing damaged is stored."""

import collections
import random
from urllib.parse import quote

from twisted.internet import defer

from pacscore.testing.mutations import mutated
from tests.pacscore.web.dicomweb.client import STOW_TYPE, DicomWebTestCase, stowBody

COUNT = 300


class DamagedRequestTests(DicomWebTestCase):

    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 2}

    @defer.inlineCallbacks
    def test_damagedPaths(self):
        image = self.corpus[0]
        instance = f"/studies/{image.studyUID}/series/{image.seriesUID}/instances/{image.sopUID}"
        valid = ["/studies?PatientID=PAT*&StudyDate=20000101-20301231&limit=5&offset=0&includefield=all",
                 f"/studies/{image.studyUID}/series?Modality=CT&includefield=00080021,SeriesTime",
                 f"/instances?SOPInstanceUID={image.sopUID}&fuzzymatching=true",
                 instance, instance + "/metadata", instance + "/frames/1", instance + "/bulk/7FE00010",
                 instance + "/rendered?viewport=16,16&window=40,400,LINEAR", f"/studies/{image.studyUID}/thumbnail"]
        rng = random.Random(20261203)
        codes = collections.Counter()
        for n in range(COUNT):
            path = mutated(rng, valid[n % len(valid)].encode())
            found = yield self.fetch(quote(path, safe=b"/?&=,*%"))
            self.assertLess(found.code, 500, (path, found.body[:300]))
            codes[found.code // 100] += 1
        self.assertGreater(codes[2], COUNT // 20)
        self.assertGreater(codes[4], COUNT // 10)

    @defer.inlineCallbacks
    def test_damagedBodies(self):
        with open(self.corpus[1].path, "rb") as f:
            valid = stowBody(f.read())
        rng = random.Random(20261204)
        codes = collections.Counter()
        for _ in range(COUNT // 3):
            found = yield self.fetch("/studies", method=b"POST", body=mutated(rng, valid), contentType=STOW_TYPE)
            self.assertIn(found.code, (200, 202, 400, 409), found.body[:300])
            codes[found.code] += 1
        self.assertGreater(codes[409] + codes[400], 0)
