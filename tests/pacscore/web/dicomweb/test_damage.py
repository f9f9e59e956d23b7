"""Seeded random damage to valid DICOMweb requests (their paths and query
strings, and STOW-RS bodies): every answer is a 2xx or a 4xx, never a 500,
and nothing damaged is stored; and stored objects whose Image Pixel
attributes are malformed, shown as a 422."""

import collections
import io
import random
from urllib.parse import quote

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs, formatEvent

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


def _damaged(name, tag, change):
    """The pydicom test file ``name`` as a study of its own (``tag``), Part-10
    bytes, its Image Pixel attributes changed by ``change(dataset)``."""
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.PatientID, ds.PatientName = "PIXELS", "Damaged^Pixels"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.500.{tag}"
    ds.SeriesInstanceUID = ds.StudyInstanceUID + ".1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.StudyInstanceUID + ".1.1"
    change(ds)
    out = io.BytesIO()
    ds.save_as(out)
    return ds, out.getvalue()


def _palette(ds):
    ds.PhotometricInterpretation = "PALETTE COLOR"
    for tag, colour in ((0x00281101, "Red"), (0x00281102, "Green"), (0x00281103, "Blue")):
        ds[tag] = DataElement(tag, "US", [1, 1, 1])
        setattr(ds, f"{colour}PaletteColorLookupTableData", bytes(2))


# Each crash site the fuzzing found: (test file, its change, the web requests that gave a 500 for it).
DAMAGED_PIXELS = [
    ("CT_small.dcm", lambda ds: setattr(ds, "Columns", 0), ("frames/1",)),
    ("CT_small.dcm", lambda ds: setattr(ds, "BitsAllocated", 0), ("frames/1",)),
    ("image_dfl.dcm", lambda ds: setattr(ds, "BitsAllocated", 0), ("frames/1",)),
    ("CT_small.dcm", lambda ds: ds.__setitem__(0x00280010, DataElement(0x00280010, "US", [128, 128])),
     ("frames/1", "rendered")),
    ("CT_small.dcm", lambda ds: ds.__setitem__(0x00280008, DataElement(0x00280008, "IS", ["1", "2"])),
     ("frames/1", "rendered")),
    ("SC_rgb_jpeg_dcmtk.dcm", lambda ds: delattr(ds, "PhotometricInterpretation"), ("frames/1",)),
    ("MR_small_RLE.dcm", lambda ds: delattr(ds, "SamplesPerPixel"), ("frames/1",)),
    ("MR_small_RLE.dcm", lambda ds: delattr(ds, "PixelRepresentation"), ("frames/1",)),
    ("MR_small_RLE.dcm", lambda ds: setattr(ds, "PhotometricInterpretation", ["MONOCHROME2", "RGB"]), ("frames/1",)),
    ("MR_small_RLE.dcm", lambda ds: setattr(ds, "NumberOfFrames", "-1"), ("bulk/7FE00010",)),
    ("CT_small.dcm", _palette, ("rendered",)),
]


class DamagedStoredObjectTests(DicomWebTestCase):
    """Objects stored with malformed Image Pixel attributes (as C-STORE and
    STOW-RS take them, as Conquest does) made WADO-RS frames, bulk data and
    rendered answer a 500 with a critical traceback (a ZeroDivisionError,
    ``int()`` of a list, pydicom's AttributeError or 'data type uint1 not
    understood'); each is a 422 'cannot be shown' naming the attribute,
    logged at info, and the object's metadata is still answered."""

    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 1}

    @defer.inlineCallbacks
    def test_eachCrashSiteIsA422(self):
        wrong = []  # (number, path, code, error lines) of each answer not as it should be
        for number, (name, change, paths) in enumerate(DAMAGED_PIXELS):
            ds, data = _damaged(name, number + 1, change)
            stored = yield self.fetch("/studies", method=b"POST", body=stowBody(data), contentType=STOW_TYPE)
            self.assertEqual(stored.code, 200, (name, number, stored.body[:300]))
            instance = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
            for path in paths:
                with capturedLogs() as events:
                    found = yield self.fetch(f"{instance}/{path}")
                errors = [formatEvent(event)[:200] for event in events if event["log_level"] >= LogLevel.error]
                shown = [formatEvent(event) for event in events if "cannot be shown" in formatEvent(event)]
                if found.code != 422 or errors or not shown or b"the stored object cannot be shown: " not in found.body:
                    wrong.append((number, path, found.code, errors))
            found = yield self.fetch(f"{instance}/metadata")
            self.assertEqual((found.code, found.json()[0]["00080018"]["Value"]), (200, [ds.SOPInstanceUID]))
        self.assertEqual(wrong, [])
