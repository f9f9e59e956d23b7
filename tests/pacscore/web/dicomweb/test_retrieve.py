"""WADO-RS over HTTP: objects in transfer syntaxes, metadata with bulk
data addresses that lead to the data, frames, rendered pictures, and
files gone or cut short left out of a study's answer."""

import base64
import copy
import gc
import io
import os
import struct
import time
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.encaps import encapsulate, generate_frames, get_frame
from pydicom.pixels import convert_color_space, pixel_array
from pydicom.tag import Tag
from pydicom.uid import RLELossless, generate_uid
from PIL import Image
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.logger import capturedLogs, formatEvent

from pacscore.codecs import encapsulatedframes, filetranscode, syntaxes
from pacscore.codecs import transcode as transcoding
from pacscore.codecs.rendering import LARGEST_FIT
from pacscore.codecs.transcode import transcode
from pacscore.control.data import AddImageFile
from pacscore.db.query import SERIES_INSTANCE_UID, SOP_INSTANCE_UID, QueryKey
from pacscore.dicom.datasets import encodeDataset
from pacscore.dicom.storeddata import STREAMED_OBJECT
from pacscore.storage.attributes import DatasetError
from pacscore.testing.corpus import makeDataset
from pacscore.web import objectstream
from pacscore.web.dicomweb import instancefiles, retrieve
from pacscore.web.dicomweb.resource import Target
from pacscore.web.dicomweb.instancefiles import instanceMetadata
from plugins.pacs_control_modify import modifyImage
from tests.pacscore.dicom.test_textbytes import BAD_NAME, withValue1JIS, writeInvalidTextObject
from tests.pacscore.codecs.test_transcode import asFile, cutShortDataset, overlaid, quietly
from tests.pacscore.web.dicomweb.client import DicomWebTestCase, asText, viewedColours
from tests.pacscore.web.pages import PDF, encapsulatedPDF, nkiObject

JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
OCTETS = 'multipart/related; type="application/octet-stream"'


def flatRle(dataset, frames, value=0x0102):
    """``dataset`` (16-bit, one sample) made ``frames`` frames of RLE
    Lossless whose every pixel is ``value``: each frame two segments of
    128-byte runs, about 1/64 of its pixels."""
    def segment(byte):
        size = dataset.Rows * dataset.Columns
        return (bytes((0x81, byte)) * (size // 128) + (bytes((257 - size % 128, byte)) if size % 128 else b""))
    high, low = segment(value >> 8), segment(value & 0xFF)
    frame = struct.pack("<16L", 2, 64, 64 + len(high), *[0] * 13) + high + low
    dataset.NumberOfFrames = frames
    dataset.PixelData = encapsulate([frame] * frames)
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = RLELossless
    return dataset


class RetrieveTests(DicomWebTestCase):

    def instancePath(self, image):
        return f"/studies/{image.studyUID}/series/{image.seriesUID}/instances/{image.sopUID}"

    @defer.inlineCallbacks
    def test_study(self):
        image = self.corpus[0]
        found = yield self.fetch(f"/studies/{image.studyUID}")
        self.assertEqual(found.code, 200)
        self.assertTrue(found.header("content-type").startswith('multipart/related; type="application/dicom"'))
        sent = {i.sopUID: pydicom.dcmread(i.path) for i in self.corpus if i.studyUID == image.studyUID}
        parts = found.parts()
        self.assertEqual(len(parts), 4)
        for kind, content in parts:
            self.assertEqual(kind, "application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
            got = pydicom.dcmread(io.BytesIO(content))
            self.assertEqual(got, sent[got.SOPInstanceUID])

    @defer.inlineCallbacks
    def test_transferSyntaxes(self):
        image = self.corpus[1]
        original = pydicom.dcmread(image.path)
        found = yield self.fetch(self.instancePath(image),
                                 accept=f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_LOSSLESS}')
        ((kind, content),) = found.parts()
        self.assertEqual(kind, f"application/dicom; transfer-syntax={JPEG_LOSSLESS}")
        got = pydicom.dcmread(io.BytesIO(content))
        self.assertEqual(got.file_meta.TransferSyntaxUID, JPEG_LOSSLESS)
        np.testing.assert_array_equal(got.pixel_array, original.pixel_array)
        stored = yield self.fetch(f"/studies/{image.studyUID}/series/{image.seriesUID}",
                                  accept='multipart/related; type="application/dicom"; transfer-syntax=*')
        self.assertEqual(len(stored.parts()), 2)
        refused = yield self.fetch(self.instancePath(image),
                                   accept='multipart/related; type="application/dicom"; transfer-syntax=1.2.3')
        self.assertEqual(refused.code, 406)

    @defer.inlineCallbacks
    def test_aHeadOrARefusedStreamClosesTheFile(self):
        """A HEAD of an instance and of a study, and an object whose stored
        syntax a q=0 range refuses (opened as stored, then sent in another),
        close the files they opened themselves: the garbage collector finds
        none open ('unclosed file' ResourceWarning)."""
        image = self.corpus[0]
        dicom = 'multipart/related; type="application/dicom"; transfer-syntax='
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for path in (self.instancePath(image), f"/studies/{image.studyUID}"):
                found = yield self.fetch(path, method=b"HEAD")
                self.assertEqual(found.code, 200)
            refused = yield self.fetch(self.instancePath(image), accept=f"{dicom}*, {dicom}{EXPLICIT};q=0")
            gc.collect()
        ((kind, _),) = refused.parts()
        self.assertEqual(kind, f"application/dicom; transfer-syntax={IMPLICIT}")
        self.assertEqual([str(w.message) for w in caught if "unclosed file" in str(w.message)], [])

    @defer.inlineCallbacks
    def test_onlyASyntaxAskedFor(self):
        """A 12-bit image asked for in JPEG baseline alone (which a codec
        would make JPEG extended): 406; with Explicit VR Little Endian as
        a second choice, it goes in that.  An object stored in RLE, which
        pacs does not write, goes when RLE is asked for."""
        image = self.corpus[1]
        dicom = 'multipart/related; type="application/dicom"; transfer-syntax='
        baseline = yield self.fetch(self.instancePath(image), accept=dicom + "1.2.840.10008.1.2.4.50")
        self.assertEqual(baseline.code, 406)
        self.assertIn(f"{image.sopUID} can be sent in none of the transfer syntaxes asked for", baseline.body.decode())
        second = yield self.fetch(self.instancePath(image),
                                  accept=f"{dicom}1.2.840.10008.1.2.4.50, {dicom}1.2.840.10008.1.2.1;q=0.5")
        ((kind, _),) = second.parts()
        self.assertEqual(kind, "application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
        rle = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
        yield self.running.run(AddImageFile(), get_testdata_file("SC_rgb_rle_2frame.dcm"))
        found = yield self.fetch(f"/studies/{rle.StudyInstanceUID}/series/{rle.SeriesInstanceUID}/instances/"
                                 f"{rle.SOPInstanceUID}", accept=dicom + "1.2.840.10008.1.2.5")
        ((kind, content),) = found.parts()
        self.assertEqual(kind, "application/dicom; transfer-syntax=1.2.840.10008.1.2.5")
        self.assertEqual(pydicom.dcmread(io.BytesIO(content)).PixelData, rle.PixelData)

    @defer.inlineCallbacks
    def test_conversionFailures(self):
        """An object the codec fails to write in a syntax asked for (a
        32-bit dose in JPEG 2000, a 3x3 RGB image) goes in the next syntax
        of the Accept header; one that goes in none is left out with a log
        line, first or later, the others sent whole: a 406 only when none
        of them goes, or the first FIRST_UNSENDABLE go in none (then
        without a line for each)."""
        dicom = 'multipart/related; type="application/dicom"; transfer-syntax='
        j2k = dicom + "1.2.840.10008.1.2.4.90"
        rtdose = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
        ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        rgb = pydicom.dcmread(get_testdata_file("SC_rgb_small_odd.dcm"))
        for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID"):
            setattr(rgb, keyword, ct[keyword].value)
        rgb.InstanceNumber = 2
        path = os.path.join(self.running.workdir, "rgb.dcm")
        rgb.save_as(path)
        firstRgb = rgb.SOPInstanceUID
        rgb.SOPInstanceUID, rgb.InstanceNumber = rgb.SOPInstanceUID + ".1", 0
        before = os.path.join(self.running.workdir, "rgbfirst.dcm")
        rgb.save_as(before)
        for added in (get_testdata_file("rtdose.dcm"), get_testdata_file("CT_small.dcm"), path, before):
            yield self.running.run(AddImageFile(), added)
        second = yield self.fetch(f"/studies/{rtdose.StudyInstanceUID}", accept=f"{j2k}, {dicom}{EXPLICIT};q=0.5")
        ((kind, content),) = second.parts()
        self.assertEqual(kind, f"application/dicom; transfer-syntax={EXPLICIT}")
        self.assertEqual(pydicom.dcmread(io.BytesIO(content)).PixelData, rtdose.PixelData)
        alone = yield self.fetch(f"/studies/{rtdose.StudyInstanceUID}", accept=j2k)
        self.assertEqual(alone.code, 406)
        with capturedLogs() as events:
            study = yield self.fetch(f"/studies/{ct.StudyInstanceUID}", accept=j2k)
        self.assertEqual(study.code, 200)
        ((kind, content),) = study.parts()
        self.assertEqual(pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID, ct.SOPInstanceUID)
        self.assertEqual({event.get("uid") for event in events} & {firstRgb, rgb.SOPInstanceUID},
                         {firstRgb, rgb.SOPInstanceUID})
        series = yield self.fetch(f"/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/instances/"
                                  f"{rgb.SOPInstanceUID}", accept=j2k)
        self.assertEqual(series.code, 406)
        with capturedLogs() as events:
            refused = yield self.fetch(f"/studies/{rgb.StudyInstanceUID}/series/{rgb.SeriesInstanceUID}/instances/"
                                       f"{firstRgb}", accept=j2k)
        self.assertEqual(refused.code, 406)
        self.assertEqual([event for event in events if event.get("uid")], [])

    @defer.inlineCallbacks
    def test_aSeriesThatGoesInNoSyntaxIsCutShort(self):
        """Once FIRST_UNSENDABLE objects of a series went in no syntax asked
        for, the rest of it is left out untried, with one line, and the
        next series is sent; a study of only such objects is a 406 with no
        line for each."""
        self.patch(retrieve, "FIRST_UNSENDABLE", 2)
        j2k = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90'
        ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        rgb = pydicom.dcmread(get_testdata_file("SC_rgb_small_odd.dcm"))
        rgb.PatientID, rgb.StudyInstanceUID, rgb.SeriesInstanceUID = ct.PatientID, ct.StudyInstanceUID, "1.2.3.0"
        rgbUIDs = [f"1.2.3.0.{number}" for number in range(1, 5)]
        for number, uid in enumerate(rgbUIDs, 1):
            rgb.SOPInstanceUID, rgb.InstanceNumber = uid, number
            path = os.path.join(self.running.workdir, f"rgb{number}.dcm")
            rgb.save_as(path)
            yield self.running.run(AddImageFile(), path)
        yield self.running.run(AddImageFile(), get_testdata_file("CT_small.dcm"))
        tried = []
        objectStream = retrieve.objectStream
        self.patch(retrieve, "objectStream", lambda archive, path, *a: tried.append(path) or objectStream(archive, path, *a))
        with capturedLogs() as events:
            study = yield self.fetch(f"/studies/{ct.StudyInstanceUID}", accept=j2k)
        self.assertEqual(study.code, 200)
        self.assertEqual([pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID for _, content in study.parts()],
                         [ct.SOPInstanceUID])
        self.assertEqual(len({str(path) for path in tried}), 3)  # two of the RGB series, the CT
        lines = [formatEvent(event) for event in events if "left out" in formatEvent(event)]
        self.assertEqual(lines, [f"WADO-RS: {uid} left out: it can be sent in none of the transfer syntaxes asked for"
                                 for uid in rgbUIDs[:2]] + [
            "WADO-RS: the other objects of series 1.2.3.0 are left out untried: its first 2 could be sent in none "
            "of the transfer syntaxes asked for"])
        with capturedLogs() as events:
            refused = yield self.fetch(f"/studies/{ct.StudyInstanceUID}/series/1.2.3.0", accept=j2k)
        self.assertEqual(refused.code, 406)
        self.assertEqual([event for event in events if "left out" in formatEvent(event)], [])

    @defer.inlineCallbacks
    def test_notFound(self):
        image = self.corpus[0]
        for path in ("/studies/1.2.3", f"/studies/{image.studyUID}/series/1.2.3",
                     f"/studies/{self.corpus[-1].studyUID}/series/{image.seriesUID}"):
            found = yield self.fetch(path)
            self.assertEqual((path, found.code), (path, 404))

    @defer.inlineCallbacks
    def test_metadataAndBulkData(self):
        image = self.corpus[2]
        (metadata,) = (yield self.fetch(self.instancePath(image) + "/metadata")).json()
        self.assertEqual(metadata["00100020"]["Value"], [image.patientID])
        self.assertEqual(metadata["00083002"]["Value"], ["1.2.840.10008.1.2.1"])
        uri = metadata["7FE00010"]["BulkDataURI"]
        ((kind, frame),) = (yield self.fetch(uri)).parts()
        self.assertEqual(kind, "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1")
        self.assertEqual(frame, pydicom.dcmread(image.path).PixelData)
        series = (yield self.fetch(f"/studies/{image.studyUID}/series/{image.seriesUID}/metadata")).json()
        self.assertEqual(len(series), 2)
        missing = yield self.fetch(self.instancePath(image) + "/bulk/00091001")
        self.assertEqual(missing.code, 404)

    @defer.inlineCallbacks
    def test_bulkDataTakesTheAcceptPixelDataTakes(self):
        """bulk/{tag} of an attribute that is not the Pixel Data (a private
        OB, a Parametric Map's Float Pixel Data) was sent as
        application/octet-stream whatever Accept asked for (image/jpeg,
        application/dicom+json, big endian): 200 where bulk/7FE00010 of the
        same object is a 406; it answers as bulk/7FE00010 does."""
        ds = makeDataset("BULKACCEPT", "Bulk^Accept", "1.2.826.0.1.3680043.8.498.11",
                         "1.2.826.0.1.3680043.8.498.11.1", "1.2.826.0.1.3680043.8.498.11.1.1", 1, 1)
        ds.add_new(0x00290010, "LO", "PACS TESTS")
        ds.add_new(0x00291010, "OB", bytes(range(256)) * 8)
        stored = os.path.join(self.running.workdir, "bulkaccept.dcm")
        ds.save_as(stored, enforce_file_format=True)
        yield self.running.run(AddImageFile(), stored)
        path = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        for accept, code in ((f'multipart/related; type="image/jpeg"; transfer-syntax={JPEG_LOSSLESS}', 406),
                             ("application/dicom+json", 406),
                             (OCTETS + f"; transfer-syntax={syntaxes.EXPLICIT_VR_BIG_ENDIAN}", 406),
                             (OCTETS, 200), (OCTETS + f"; transfer-syntax={EXPLICIT}", 200), ("*/*", 200)):
            pixels = yield self.fetch(path + "/bulk/7FE00010", accept=accept)
            private = yield self.fetch(path + "/bulk/00291010", accept=accept)
            self.assertEqual((pixels.code, private.code), (code, code), accept)
            if code == 200:
                self.assertEqual(private.parts(), [("application/octet-stream", bytes(range(256)) * 8)], accept)
            else:
                self.assertIn(b"pacs sends bulk data as application/octet-stream", private.body, accept)

    @defer.inlineCallbacks
    def test_metadataInDicomXML(self):
        """Asked for multipart/related; type="application/dicom+xml"
        (PS3.18 8.7.3), the metadata of each object is a part of DICOM XML
        (PS3.19 A.1) holding what its DICOM JSON holds, bulk data as
        BulkData uris and short binary values inline, streamed in the same
        batches, from the metadata cache too; DICOM JSON stays the default."""
        self.patch(retrieve, "METADATA_BATCH", 1)
        image = self.corpus[2]
        ds = makeDataset("INLINE1", "Inline^Value", "1.2.826.0.1.3680043.8.498.9", "1.2.826.0.1.3680043.8.498.9.1",
                         "1.2.826.0.1.3680043.8.498.9.1.1", 1, 1)
        ds.add_new(0x00290010, "LO", "PACS TESTS")
        ds.add_new(0x00291010, "OB", b"\x00\x01")
        inline = os.path.join(self.running.workdir, "inline.dcm")
        ds.save_as(inline, enforce_file_format=True)
        yield self.running.run(AddImageFile(), inline)
        inlinePath = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        xml = 'multipart/related; type="application/dicom+xml"'
        for path in (inlinePath, self.instancePath(image), f"/studies/{image.studyUID}/series/{image.seriesUID}",
                     f"/studies/{image.studyUID}"):
            metadata = (yield self.fetch(path + "/metadata", accept="application/dicom+json")).json()
            for attempt in ("read", "cached"):
                found = yield self.fetch(path + "/metadata", accept=xml)
                self.assertEqual((path, attempt, found.code), (path, attempt, 200))
                self.assertEqual(found.xmlObjects(), asText(metadata), (path, attempt))
        (first,) = (yield self.fetch(inlinePath + "/metadata", accept=xml)).xmlObjects()
        self.assertEqual(first["00291010"], {"vr": "OB", "InlineBinary": "AAE="})
        self.assertTrue(first["7FE00010"]["BulkDataURI"].endswith(f"{inlinePath}/bulk/7FE00010"))
        found = yield self.fetch(self.instancePath(image) + "/metadata")
        self.assertEqual(found.header("content-type"), "application/dicom+json")

    @defer.inlineCallbacks
    def test_metadataAskedAgain(self):
        """A series asked for again is answered without reading its files
        again, until one is changed (modifyimage), stored again or removed."""
        self.archive.metadataCache.clock = lambda: time.time_ns() + 10 ** 10  # every file written long ago
        made = []
        self.patch(retrieve, "instanceMetadata",
                   lambda path, url, onUnfit: made.append(path) or instanceMetadata(path, url, onUnfit))
        first, second = (image for image in self.corpus if image.seriesUID == self.corpus[0].seriesUID)
        series = f"/studies/{first.studyUID}/series/{first.seriesUID}/metadata"

        @defer.inlineCallbacks
        def comments():
            found = (yield self.fetch(series)).json()
            return {item["00080018"]["Value"][0]: item.get("00204000", {}).get("Value") for item in found}
        self.assertEqual((yield comments()), {first.sopUID: None, second.sopUID: None})
        self.assertEqual((yield comments()), {first.sopUID: None, second.sopUID: None})
        self.assertEqual(len(made), 2)
        [stored] = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE",
                                                     [QueryKey(SOP_INSTANCE_UID, "UI", first.sopUID)])
        yield self.running.run(modifyImage, f"{stored.deviceName}:{stored.objectFile},set 0020,4000 to \"NEW\"")
        self.assertEqual((yield comments()), {first.sopUID: ["NEW"], second.sopUID: None})
        self.assertEqual(len(made), 3)
        changed = pydicom.dcmread(second.path)
        changed.ImageComments = "AGAIN"
        changed.save_as(second.path)
        yield self.running.store([second])
        self.assertEqual((yield comments()), {first.sopUID: ["NEW"], second.sopUID: ["AGAIN"]})
        [stored] = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE",
                                                     [QueryKey(SOP_INSTANCE_UID, "UI", first.sopUID)])
        os.unlink(self.archive.objectReader.path(stored.deviceName, stored.objectFile))
        self.assertEqual((yield comments()), {second.sopUID: ["AGAIN"]})

    @defer.inlineCallbacks
    def test_metadataStreamedInBatches(self):
        """A study's metadata is made a batch of files at a time and sent as
        each batch is ready; a file gone since it was indexed is left out
        with a log line (it made the whole answer a 404)."""
        self.patch(retrieve, "METADATA_BATCH", 2)
        study = self.corpus[0].studyUID
        images = [image for image in self.corpus if image.studyUID == study]
        self.assertGreater(len(images), 2)
        whole = yield self.fetch(f"/studies/{study}/metadata")
        self.assertEqual(whole.header("content-type"), "application/dicom+json")
        self.assertEqual(sorted(item["00080018"]["Value"][0] for item in whole.json()),
                         sorted(image.sopUID for image in images))
        archive = self.running.archive
        with archive.index.engine.connect() as connection:
            [found] = archive.query.instances(connection, "IMAGE",
                                              [QueryKey(SOP_INSTANCE_UID, "UI", images[1].sopUID)])
        os.unlink(archive.objectReader.path(found.deviceName, found.objectFile))
        with capturedLogs() as events:
            left = yield self.fetch(f"/studies/{study}/metadata")
        self.assertEqual(left.code, 200)
        self.assertEqual(sorted(item["00080018"]["Value"][0] for item in left.json()),
                         sorted(image.sopUID for image in images if image is not images[1]))
        self.assertTrue(any("left out" in str(event.get("log_format", "")) for event in events))

    @defer.inlineCallbacks
    def test_bulkTagsAreEightHexDigits(self):
        """bulk/{tag} takes eight hex digits, in either case; anything else
        (too long, negative, 0x or _ that int() would take) is a 400 with a log line."""
        path = self.instancePath(self.corpus[2])
        with capturedLogs() as events:
            for tag in ("100000000", "-1", "-0000001", "0x00100010", "7FE0_0010", "0010001", "+0100010", "0010002G"):
                refused = yield self.fetch(f"{path}/bulk/{tag}")
                self.assertEqual((tag, refused.code), (tag, 400))
                self.assertIn(b"is not a tag (eight hex digits)", refused.body)
        self.assertTrue(any(event.get("code") == 400 and event.get("uri", "").endswith("/bulk/100000000")
                            for event in events))
        ((_, pixels),) = (yield self.fetch(f"{path}/bulk/7fe00010")).parts()
        self.assertEqual(pixels, pydicom.dcmread(self.corpus[2].path).PixelData)

    @defer.inlineCallbacks
    def test_binaryValuesInSequencesStayInline(self):
        """An icon's 4 KB of pixels in Icon Image Sequence: inline, not a
        BulkDataURI that would name the image's own Pixel Data."""
        ds = makeDataset("ICON1", "Icon^Test", "1.2.826.0.1.3680043.8.498.7", "1.2.826.0.1.3680043.8.498.7.1",
                         "1.2.826.0.1.3680043.8.498.7.1.1", 1, 1)
        icon = Dataset()
        icon.Rows = icon.Columns = 64
        icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.SamplesPerPixel = 8, 8, 7, 1
        icon.PhotometricInterpretation, icon.PixelRepresentation = "MONOCHROME2", 0
        icon.PixelData = bytes(range(256)) * 16
        icon["PixelData"].VR = "OB"
        ds.IconImageSequence = [icon]
        path = os.path.join(self.running.workdir, "icon.dcm")
        ds.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        (metadata,) = (yield self.fetch(f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
                                        f"{ds.SOPInstanceUID}/metadata")).json()
        [item] = metadata["00880200"]["Value"]
        self.assertEqual(base64.b64decode(item["7FE00010"]["InlineBinary"]), icon.PixelData)
        self.assertNotIn("BulkDataURI", item["7FE00010"])
        ((_, pixels),) = (yield self.fetch(metadata["7FE00010"]["BulkDataURI"])).parts()
        self.assertEqual(pixels, ds.PixelData)

    @defer.inlineCallbacks
    def test_metadataKeepsInvalidValues(self):
        """Every stored attribute is in the metadata, valid or not: UIDs
        with a zero-led component (legacy GE data), a DS longer than 16
        characters, or no number at all (empty, its other values as
        numbers, as DICOM JSON has DS values numbers), a sequence
        holding an invalid UID (rtdose.dcm)."""
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.StudyInstanceUID = "1.2.840.113619.2.55.3.0604.77"
        ds.SeriesInstanceUID = "1.2.840.113619.2.55.3.0604.77.1"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.840.113619.2.55.3.0604.77.1.01"
        ds.SliceThickness = "0.30000000000000004"
        ds[0x00181100] = RawDataElement(Tag(0x00181100), "DS", 8, b"abc\\1.5 ", 0, False, True)
        path = os.path.join(self.running.workdir, "legacy.dcm")
        ds.save_as(path)
        rtdose = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
        for added in (path, get_testdata_file("rtdose.dcm")):
            yield self.running.run(AddImageFile(), added)
        (legacy,) = (yield self.fetch(f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
                                      f"{ds.SOPInstanceUID}/metadata")).json()
        self.assertEqual([legacy[tag]["Value"] for tag in ("0020000D", "0020000E", "00080018", "00180050", "00181100")],
                         [[ds.StudyInstanceUID], [ds.SeriesInstanceUID], [ds.SOPInstanceUID], [0.30000000000000004],
                          [None, 1.5]])
        (dose,) = (yield self.fetch(f"/studies/{rtdose.StudyInstanceUID}/metadata")).json()
        [plan] = dose["300C0002"]["Value"]
        self.assertEqual(plan["00081155"]["Value"], [rtdose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID])

    @defer.inlineCallbacks
    def test_smallFileOfLargePixelsStreamed(self):
        """An object in a small file whose pixels decode to more than
        ``STREAMED_OBJECT`` (RLE of a flat image) goes in Explicit VR Little
        Endian converted file to file, never whole in memory, by WADO-RS
        and by WADO-URI: the whole object is never made."""
        study = "1.2.826.0.1.3680043.8.498.30"
        frames = STREAMED_OBJECT // (512 * 512 * 2) + 1
        dataset = flatRle(makeDataset("FLAT1", "Flat^Pixels", study, f"{study}.1", f"{study}.1.1", 1, 1,
                                      rows=512, columns=512), frames)
        path = yield self.stored(dataset, "flat.dcm")
        self.assertLess(os.path.getsize(os.path.join(self.running.workdir, "flat.dcm")), STREAMED_OBJECT // 32)

        def whole(*args):
            raise AssertionError("the whole object made in memory")
        self.patch(objectstream, "_partObject", whole)
        ((kind, content),) = (yield self.fetch(path)).parts()
        self.assertEqual(kind, f"application/dicom; transfer-syntax={EXPLICIT}")
        self.assertEqual(pydicom.dcmread(io.BytesIO(content)).PixelData, b"\x02\x01" * 512 * 512 * frames)
        uri = yield self.fetch(f"{self.root}/wado?requestType=WADO&studyUID={study}&seriesUID={study}.1"
                               f"&objectUID={study}.1.1&contentType=application/dicom&transferSyntax={EXPLICIT}")
        self.assertEqual((uri.code, uri.body), (200, content))

    @defer.inlineCallbacks
    def test_bogusFrameSizeRefusedUndecoded(self):
        """A tiny RLE object whose Rows and Columns claim 65535 x 65535
        pixels (8 GB of memory a decode) is refused before any decode, as
        its rendering is (``checkFrameSize``): its frames, Pixel Data,
        WADO-URI object in Explicit VR Little Endian and ``dicom`` page
        uncompressed are a 422, its WADO-RS
        object in that syntax a 406 (it goes in none asked for), each with
        a log line."""
        study = "1.2.826.0.1.3680043.8.498.33"
        dataset = flatRle(makeDataset("BOGUS", "Bogus^Size", study, f"{study}.1", f"{study}.1.1", 1, 1,
                                      rows=16, columns=16), 1)
        dataset.Rows = dataset.Columns = 65535
        path = yield self.stored(dataset, "bogus.dcm")
        decoded = []

        def decoder(*args, **options):
            decoded.append(args)
            raise AssertionError("decoded")
        self.patch(instancefiles, "pixel_array", decoder)
        self.patch(filetranscode, "get_decoder", decoder)
        self.patch(transcoding, "decompress", decoder)
        explicit = f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT}'
        uri = (f"{self.root}/wado?requestType=WADO&studyUID={study}&seriesUID={study}.1&objectUID={study}.1.1"
               f"&contentType=application/dicom&transferSyntax={EXPLICIT}")
        page = f"{self.root}/cgi-bin/dgate?mode=dicom&slice=BOGUS:{study}.1.1&compress=un"
        for asked, accept, code in (("/frames/1", OCTETS, 422), ("/bulk/7FE00010", OCTETS, 422), ("", explicit, 406),
                                    (uri, None, 422), (page, None, 422)):
            with capturedLogs() as events:
                found = yield self.fetch(asked if asked.startswith("http") else path + asked, accept=accept)
            self.assertEqual((asked, found.code), (asked, code), found.body)
            self.assertTrue(any("65535 x 65535" in formatEvent(event) for event in events), asked)
        self.assertEqual(decoded, [])

    @defer.inlineCallbacks
    def test_framesMadeOneAtATime(self):
        """Frames are decoded one at a time, each as the answer comes to it
        (``instanceFrames`` makes only the first), so that the frames of
        ``frames/{list}`` and of Pixel Data's ``bulk/7FE00010`` are never
        all in memory; they go in the order asked for.  A number named
        twice is a 400 (PS3.18: non-duplicate frame numbers), where 600
        times "1" made 1.2 GB of one 33 kB file."""
        study = "1.2.826.0.1.3680043.8.498.31"
        dataset = flatRle(makeDataset("FLAT2", "Flat^Frames", study, f"{study}.1", f"{study}.1.1", 1, 1,
                                      rows=16, columns=16), 4)
        path = yield self.stored(dataset, "frames.dcm")
        made = []
        nativeFrame = instancefiles._nativeFrame

        def counted(dataset, syntax, cutShort, index):
            made.append(index)
            return nativeFrame(dataset, syntax, cutShort, index)
        self.patch(instancefiles, "_nativeFrame", counted)
        frames = instancefiles.instanceFrames(os.path.join(self.running.workdir, "frames.dcm"), [3, 1, 2],
                                              lambda syntax: (False, instancefiles.OCTET_STREAM))
        self.assertEqual((made, frames.first), ([2], b"\x02\x01" * 256))
        self.assertEqual(frames.frame(0), b"\x02\x01" * 256)
        self.assertEqual(made, [2, 0])
        del made[:]
        found = yield self.fetch(path + "/frames/3,1,2", accept=OCTETS)
        self.assertEqual([frame for _, frame in found.parts()], [b"\x02\x01" * 256] * 3)
        self.assertEqual(made, [2, 0, 1])
        bulk = yield self.fetch(path + "/bulk/7FE00010", accept=OCTETS)
        self.assertEqual([frame for _, frame in bulk.parts()], [b"\x02\x01" * 256] * 4)
        for frames in ("1,1", "1,2,3,4,1", "2," * 600 + "2"):
            found = yield self.fetch(path + f"/frames/{frames}", accept=OCTETS)
            self.assertEqual((frames, found.code), (frames, 400), found.body)

    def test_framesReadWhereTheyAre(self):
        """A frame sent as stored is read at its place in the file, not
        with the whole Pixel Data (of a 3 GB object 3 GB of memory and 8 s
        a frame): of 64 native frames of 128 kB, and of 64 JPEG ones with a
        Basic Offset Table, without one and with an Extended Offset Table,
        ``instanceFrames`` (frames/{n}, bulk/7FE00010) holds little more
        than the frame asked for, and gives its bytes."""
        study = "1.2.826.0.1.3680043.8.498.34"
        native = makeDataset("BIGF", "Big^Frames", study, f"{study}.1", f"{study}.1.1", 1, 1, rows=256, columns=256)
        native.NumberOfFrames = 64
        native.PixelData = b"".join(struct.pack("<H", number) * 256 * 256 for number in range(64))
        jpeg = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
        codestream = next(generate_frames(jpeg.PixelData, number_of_frames=1))
        codestreams = [codestream + bytes(2 * 1024 * 128 - len(codestream)) + b"\xff\xd9" for _ in range(64)]
        jpeg.NumberOfFrames = 64
        cases = [("native.dcm", native, native.PixelData[40 * 131072:41 * 131072], OCTETS)]
        for name, table in (("bot.dcm", True), ("nobot.dcm", False), ("eot.dcm", None)):
            withTable = copy.deepcopy(jpeg)
            if table is None:
                withTable.PixelData, offsets, lengths = pydicom.encaps.encapsulate_extended(codestreams)
                withTable.ExtendedOffsetTable, withTable.ExtendedOffsetTableLengths = offsets, lengths
            else:
                withTable.PixelData = encapsulate(codestreams, has_bot=table)
            cases.append((name, withTable, codestreams[40], OCTETS + "; transfer-syntax=*"))
        for name, dataset, frame, accept in cases:
            path = os.path.join(self.running.workdir, name)
            dataset.save_as(path, enforce_file_format=True)
            tracemalloc.start()
            try:
                frames = instancefiles.instanceFrames(path, [41], lambda syntax: (True, instancefiles.OCTET_STREAM))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            self.assertEqual((name, frames.first), (name, frame))
            self.assertLess(peak, 4 * len(frame), name)

    def test_everyFrameReadOnce(self):
        """The frames of an answer sent as stored are found in one pass over
        the item headers of the Pixel Data (the last bytes of each fragment
        read too where frames span several fragments without an offset
        table), then each is read where it is: a 5000-frame JPEG without a
        Basic Offset Table took 43 s, read from its first item for each
        frame, with 3 fragments a frame 293 s.  Of 200 frames with one
        fragment each or three, with and without a Basic Offset Table and
        with an Extended Offset Table, every frame is read with a few reads
        a fragment and not much more than the file's bytes (and the first
        64 kB ``readFileMeta`` reads)."""
        jpeg = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
        jpeg.NumberOfFrames = 200
        codestreams = [bytes([number]) * 300 + b"\xff\xd9" for number in range(200)]
        fragmented = [[codestream[:100], codestream[100:200], codestream[200:]] for codestream in codestreams]
        cases = {"bot.dcm": encapsulate(codestreams, has_bot=True),
                 "nobot.dcm": encapsulate(codestreams, has_bot=False),
                 "frag3.dcm": b"".join([struct.pack("<HHL", 0xFFFE, 0xE000, 0)]
                                       + [struct.pack("<HHL", 0xFFFE, 0xE000, len(fragment)) + fragment
                                          for frame in fragmented for fragment in frame]
                                       + [struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)])}
        read = []

        class Counted:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exception):
                self.f.close()

            def read(self, *size):
                found = self.f.read(*size)
                read.append(len(found))
                return found

            def __getattr__(self, name):
                return getattr(self.f, name)
        openRegularFile = instancefiles.openRegularFile
        self.patch(instancefiles, "openRegularFile", lambda path: Counted(openRegularFile(path)))
        for name in ("bot.dcm", "nobot.dcm", "frag3.dcm", "eot.dcm"):
            dataset = copy.deepcopy(jpeg)
            if name == "eot.dcm":
                dataset.PixelData, offsets, lengths = pydicom.encaps.encapsulate_extended(codestreams)
                dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths = offsets, lengths
            else:
                dataset.PixelData = cases[name]
            path = os.path.join(self.running.workdir, name)
            dataset.save_as(path, enforce_file_format=True)
            del read[:]
            frames = instancefiles.instanceFrames(path, None, lambda syntax: (True, instancefiles.OCTET_STREAM))
            found = [frames.first] + [frames.frame(number - 1) for number in list(frames.numbers)[1:]]
            self.assertEqual((name, found), (name, codestreams))
            fragments = 600 if name == "frag3.dcm" else 200
            self.assertLess(len(read), 4 * fragments + 100, name)
            self.assertLess(sum(read), 2 * os.path.getsize(path) + 65536, name)

    def test_offsetTablesCheckedAgainstItems(self):
        """An offset table that disagrees with the item headers of the
        Pixel Data (a Basic Offset Table shifted, not from 0, out of order
        or all 0; an Extended Offset Table with wrong lengths, or counting
        fewer frames than Number of Frames) is left aside and the frames
        split as without one: each frame sent is its codestream, where
        frames went with the next item's tag bytes, or as a 422, a 404, or
        an answer broken off."""
        jpeg = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
        jpeg.NumberOfFrames = 4
        codestreams = [bytes([number]) * (300 + 2 * number) + b"\xff\xd9" for number in range(4)]
        withBot = encapsulate(codestreams, has_bot=True)
        offsets = struct.unpack("<4L", withBot[8:24])
        extended, eotOffsets, eotLengths = pydicom.encaps.encapsulate_extended(codestreams)
        cases = {"bot_plus8": ([offset + 8 for offset in offsets], None),
                 "bot_first_nonzero": ([offset + offsets[1] for offset in offsets], None),
                 "bot_unsorted": ([offsets[0], offsets[2], offsets[1], offsets[3]], None),
                 "bot_zeros": ([0] * 4, None),
                 "eot_badlengths": (eotOffsets, eotLengths[:8] * 4),
                 "eot_short": (eotOffsets[:16], eotLengths[:16])}
        for name, (table, lengths) in cases.items():
            dataset = copy.deepcopy(jpeg)
            if lengths is None:
                dataset.PixelData = withBot[:8] + struct.pack("<4L", *table) + withBot[24:]
            else:
                dataset.PixelData, dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths = (
                    extended, table, lengths)
            path = os.path.join(self.running.workdir, f"{name}.dcm")
            dataset.save_as(path, enforce_file_format=True)
            for numbers in (None, [4], [2, 1]):
                frames = instancefiles.instanceFrames(path, numbers, lambda syntax: (True, instancefiles.OCTET_STREAM))
                found = [frames.first] + [frames.frame(number - 1) for number in list(frames.numbers)[1:]]
                self.assertEqual((name, found), (name, [codestreams[number - 1] for number in numbers or range(1, 5)]))

    def test_truncatedNativeFramesCounted(self):
        """Native frames are counted in what the stored file holds, not in
        the length its Pixel Data declares: of pydicom's MR_truncated.dcm
        (its Pixel Data ends with the file, 8192 bytes declared) no frame is
        whole, a NoSuchFrame (404) as at fc3de2d, not a ValueError (422)
        saying the file ends within frame 1."""
        for asStored in (True, False):
            with self.assertRaisesRegex(instancefiles.NoSuchFrame, "holds 0 whole frame"):
                instancefiles.instanceFrames(get_testdata_file("MR_truncated.dcm"), [1],
                                             lambda syntax: (asStored, instancefiles.OCTET_STREAM))

    @defer.inlineCallbacks
    def test_laterFrameThatCannotBeDecoded(self):
        """A frame after the first that cannot be decoded (its RLE fragment
        damaged) breaks the answer off, in frames/{list} as in
        bulk/7FE00010, with a warning naming the object and the frame: a
        damaged stored object, not a failure of the server (no traceback)."""
        study = "1.2.826.0.1.3680043.8.498.32"
        dataset = flatRle(makeDataset("BAD2", "Bad^Frame", study, f"{study}.1", f"{study}.1.1", 1, 1,
                                      rows=16, columns=16), 3)
        good = next(generate_frames(dataset.PixelData, number_of_frames=3))
        dataset.PixelData = encapsulate([good, struct.pack("<16L", 2, 64, 9999, *[0] * 13), good])
        path = yield self.stored(dataset, "bad2.dcm")
        for asked in ("/frames/1,2,3", "/bulk/7FE00010"):
            with capturedLogs() as events:
                try:
                    yield self.fetch(path + asked, accept=OCTETS)
                except Exception:
                    pass  # the answer broken off
                else:
                    self.fail(f"{asked}: the answer was not broken off")
            self.assertEqual([event for event in events if "log_failure" in event], [], asked)
            [broken] = [formatEvent(event) for event in events if "broke off" in event.get("log_format", "")]
            self.assertIn("frame 2", broken)
            self.assertIn(f"{study}.1.1", broken)

    def test_framesWithoutOffsetTableWalkedOnce(self):
        """The frames of an answer decoded one by one are checked for a
        cut-short codestream in one walk of the fragments (without a Basic
        Offset Table one walk a frame would cost the square of their
        number), not one walk each."""
        dataset = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
        frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
        dataset.PixelData, dataset.NumberOfFrames = encapsulate([frame] * 20, has_bot=False), 20
        path = os.path.join(self.running.workdir, "twenty.dcm")
        dataset.save_as(path)
        walks = []

        def counting(walk):
            def counted(*args, **options):
                walks.append(args)
                return walk(*args, **options)
            return counted
        self.patch(encapsulatedframes, "generate_frames", counting(generate_frames))
        self.patch(encapsulatedframes, "get_frame", counting(get_frame))
        frames = instancefiles.instanceFrames(path, list(range(1, 21)), lambda syntax: (False, instancefiles.OCTET_STREAM))
        for number in range(2, 21):
            self.assertEqual(frames.frame(number - 1), frames.first)
        self.assertEqual(len(walks), 1)

    @defer.inlineCallbacks
    def test_pixelsWithoutRowsRefused(self):
        """Compressed Pixel Data without Rows (or Columns, Bits Allocated)
        cannot be cut into frames nor decoded: its frames and bulk data are
        a 422 naming what is missing, not a 500 with a traceback."""
        dataset = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
        del dataset.Rows
        path = yield self.stored(dataset, "norows.dcm")
        for asked in ("/frames/1", "/bulk/7FE00010"):
            with capturedLogs() as events:
                found = yield self.fetch(path + asked, accept=OCTETS)
            self.assertEqual((asked, found.code), (asked, 422))
            self.assertIn(b"without Rows", found.body)
            self.assertEqual([event for event in events if "log_failure" in event], [], asked)

    @defer.inlineCallbacks
    def test_cutShortFrameRefused(self):
        """A JPEG-LS frame cut before its end of image marker is a 422, in
        frames/{n} as in bulk/7FE00010, never decoded partly filled."""
        path = yield self.stored(cutShortDataset(get_testdata_file("MR_small_jpeg_ls_lossless.dcm")), "cut.dcm")
        for asked in ("/frames/1", "/bulk/7FE00010"):
            found = yield self.fetch(path + asked, accept=OCTETS)
            self.assertEqual((asked, found.code), (asked, 422))

    @defer.inlineCallbacks
    def test_frames(self):
        image = self.corpus[3]
        found = yield self.fetch(self.instancePath(image) + "/frames/1", accept=OCTETS)
        ((_, frame),) = found.parts()
        self.assertEqual(frame, pydicom.dcmread(image.path).PixelData)
        for frames, code in (("2", 404), ("0", 400), ("1,x", 400)):
            found = yield self.fetch(self.instancePath(image) + f"/frames/{frames}")
            self.assertEqual((frames, found.code), (frames, code))
        found = yield self.fetch(self.instancePath(image) + "/frames/1", accept='multipart/related; type="image/jpeg"')
        self.assertEqual(found.code, 406)

    def stored(self, dataset, name):
        """Store ``dataset`` as a Part-10 file named ``name``; its WADO-RS path."""
        path = os.path.join(self.running.workdir, name)
        dataset.save_as(path, enforce_file_format=True)
        return self.added(dataset, path)

    @defer.inlineCallbacks
    def storedNki(self, dataset, syntax, mode, name, bare=False):
        """Store ``dataset`` in ``syntax``, NKI compressed in ``mode`` (as
        Conquest's n1..n4), as a Part-10 file named ``name``; its WADO-RS
        path.  ``bare``: the stored file then made the data set alone, no
        preamble nor file meta, as Conquest writes a ``.v2``."""
        path = os.path.join(self.running.workdir, name)
        with open(path, "wb") as f:
            f.write(nkiObject(dataset, syntax, mode))
        before = set(self.running.files())
        found = yield self.added(dataset, path)
        if bare:
            (stored,) = set(self.running.files()) - before
            with open(stored, "wb") as f:
                f.write(nkiObject(dataset, syntax, mode, bare=True))
        return found

    @defer.inlineCallbacks
    def test_metadataOfTextNotValidInItsCharacterSetLoggedOnce(self):
        """The metadata of a study whose objects hold text not valid in
        their character set had a warning line for each object (200 for
        200); it has one for the request, with the count and the first."""
        study, series = generate_uid(), generate_uid()
        uids = []
        for number in range(1, 4):
            dataset = makeDataset("BAD192", "", study, series, generate_uid(), 1, number, charset="ISO_IR 192")
            dataset.add(DataElement(0x00100010, "PN", BAD_NAME))
            yield self.stored(dataset, f"bad{number}.dcm")
            uids.append(dataset.SOPInstanceUID)
        with capturedLogs() as events:
            found = yield self.fetch(f"/studies/{study}/metadata")
        self.assertEqual(len(found.json()), 3)
        lines = [formatEvent(event) for event in events if event["log_level"].name == "warn"]
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"^WADO-RS metadata: 3 objects with text not valid in their Specific Character "
                                   r"Set, read as Latin-1, the first SOP Instance [0-9.]+: \(0010,0010\)$")

    @defer.inlineCallbacks
    def added(self, dataset, path):
        """Add the file ``path`` holding ``dataset`` to the archive; its
        WADO-RS path."""
        yield self.running.run(AddImageFile(), path)
        return (f"/studies/{dataset.StudyInstanceUID}/series/{dataset.SeriesInstanceUID}/instances/"
                f"{dataset.SOPInstanceUID}")

    @defer.inlineCallbacks
    def test_framesBeyondThePixelData(self):
        """Frames an object's Pixel Data does not hold are a 404 as those of
        an object without it: all of them when it is empty (which pydicom
        reads as None); a native frame it ends in (of two, 1.5 are held), a
        compressed frame past its fragments (of two, one is held), where
        the frames it holds are sent whole."""
        study = "1.2.826.0.1.3680043.8.498.10"
        empty = makeDataset("SHORT1", "Short^Pixels", study, f"{study}.1", f"{study}.1.1", 1, 1)
        empty.PixelData = b""
        short = makeDataset("SHORT1", "Short^Pixels", study, f"{study}.1", f"{study}.1.2", 1, 2, rows=8, columns=8)
        whole = short.PixelData
        short.NumberOfFrames, short.PixelData = 2, whole + whole[:len(whole) // 2]
        fragments = get_testdata_file("SC_rgb_jpeg_gdcm.dcm", read=True)
        fragments.NumberOfFrames = 2
        emptyPath = yield self.stored(empty, "empty.dcm")
        shortPath = yield self.stored(short, "short.dcm")
        fragmentsPath = yield self.stored(fragments, "fragments.dcm")
        for path, frames, accept in ((emptyPath, "1", OCTETS), (shortPath, "2", OCTETS), (shortPath, "1,2", OCTETS),
                                     (fragmentsPath, "2", OCTETS + "; transfer-syntax=*")):
            found = yield self.fetch(f"{path}/frames/{frames}", accept=accept)
            self.assertEqual((path, frames, found.code), (path, frames, 404), found.body)
        ((_, frame),) = (yield self.fetch(shortPath + "/frames/1", accept=OCTETS)).parts()
        self.assertEqual(frame, whole)
        ((_, frame),) = (yield self.fetch(fragmentsPath + "/frames/1", accept=OCTETS + "; transfer-syntax=*")).parts()
        self.assertEqual(frame, next(generate_frames(fragments.PixelData, number_of_frames=1)))

    @defer.inlineCallbacks
    def test_framesOfSubsampledColour(self):
        """Native YBR_FULL_422 frames hold two bytes a pixel (a Y each, a Cb
        and a Cr to each two): frame 2 of two starts halfway."""
        ds = pydicom.dcmread(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
        ds.NumberOfFrames = 2
        ds.PixelData = ds.PixelData + bytes(255 - byte for byte in ds.PixelData)
        path = yield self.stored(ds, "ybr422.dcm")
        half = len(ds.PixelData) // 2
        frames = yield self.fetch(path + "/frames/1,2", accept=OCTETS)
        self.assertEqual([frame for _, frame in frames.parts()], [ds.PixelData[:half], ds.PixelData[half:]])
        bulk = yield self.fetch(path + "/bulk/7FE00010", accept=OCTETS)
        self.assertEqual(b"".join(frame for _, frame in bulk.parts()), ds.PixelData)

    @defer.inlineCallbacks
    def test_framesOfCompressedColour(self):
        """Native frames of compressed colour images hold the colour space
        and layout their metadata names, so that a viewer converting them
        as it says shows pydicom's RGB: JPEG's and RLE's YBR_FULL as YCbCr
        (by plane for Planar Configuration 1), JPEG's YBR_FULL_422 in the
        4:2:2 layout, JPEG 2000's YBR_RCT as its decoder's RGB.  A 4:2:2
        image of an odd number of columns has no such layout: a 422, and
        its frames go as stored."""
        rle = get_testdata_file("SC_rgb_rle.dcm", read=True)
        ybr = convert_color_space(rle.pixel_array, "RGB", "YBR_FULL")
        rle.PhotometricInterpretation = "YBR_FULL"
        rle.compress(RLELossless, ybr, generate_instance_uid=False)
        byPlane = copy.deepcopy(rle)
        byPlane.PlanarConfiguration = 1
        byPlane.SOPInstanceUID = generate_uid()
        for name, dataset in (("jpeg-ybr.dcm", get_testdata_file("SC_rgb_dcmtk_+eb+cy+n1.dcm", read=True)),
                              ("jpeg-ybr422.dcm", get_testdata_file("SC_rgb_dcmtk_+eb+cy+s2.dcm", read=True)),
                              ("rle-ybr.dcm", rle), ("rle-ybr-planes.dcm", byPlane),
                              ("j2k-rct.dcm", get_testdata_file("examples_jpeg2k.dcm", read=True))):
            path = yield self.stored(dataset, name)
            (metadata,) = (yield self.fetch(path + "/metadata")).json()
            self.assertEqual(metadata["00280004"]["Value"], [dataset.PhotometricInterpretation])
            ((_, frame),) = (yield self.fetch(path + "/frames/1", accept=OCTETS)).parts()
            np.testing.assert_array_equal(viewedColours(metadata, frame), pixel_array(dataset), err_msg=name)
        odd = get_testdata_file("SC_rgb_small_odd_jpeg.dcm", read=True)
        odd.PhotometricInterpretation = "YBR_FULL_422"
        path = yield self.stored(odd, "jpeg-odd.dcm")
        self.assertEqual((yield self.fetch(path + "/frames/1", accept=OCTETS)).code, 422)
        ((_, frame),) = (yield self.fetch(path + "/frames/1", accept=OCTETS + "; transfer-syntax=*")).parts()
        self.assertEqual(frame, next(generate_frames(odd.PixelData, number_of_frames=1)))

    @defer.inlineCallbacks
    def test_framesOfNKIObjects(self):
        """An object stored NKI compressed (Conquest's n1..n4: its pixels
        in (7FDF,0010)) has its pixels expanded in its frames and its
        Pixel Data's bulk data, as stored (transfer-syntax=*) too, in
        Explicit and Implicit VR, as in the whole object; its metadata
        offers the Pixel Data, not the NKI stream, which no viewer reads."""
        original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        for syntax, mode in ((EXPLICIT, 4), (IMPLICIT, 2)):
            ds = copy.deepcopy(original)
            ds.SOPInstanceUID = generate_uid()
            path = yield self.storedNki(ds, syntax, mode, f"nki{mode}.dcm")
            for accept in (OCTETS, OCTETS + "; transfer-syntax=*"):
                found = yield self.fetch(path + "/frames/1", accept=accept)
                self.assertEqual((syntax, accept, found.code), (syntax, accept, 200), found.body)
                ((kind, frame),) = found.parts()
                self.assertEqual(kind, f"application/octet-stream; transfer-syntax={EXPLICIT}")
                self.assertEqual(frame, original.PixelData, syntax)
            bulk = yield self.fetch(path + "/bulk/7FE00010", accept=OCTETS)
            self.assertEqual((bulk.code, b"".join(part for _, part in bulk.parts())), (200, original.PixelData))
            (metadata,) = (yield self.fetch(path + "/metadata")).json()
            self.assertNotIn("7FDF0010", metadata)
            self.assertEqual(metadata["7FE00010"], {"vr": "OW", "BulkDataURI": f"{self.base}{path}/bulk/7FE00010"})

    @defer.inlineCallbacks
    def test_framesOfNKIObjectsInConquestV2(self):
        """Conquest's ``.v2`` of an NKI compressed object (n1..n4 with a
        .v2 FileNameSyntax: Implicit VR Little Endian, no file meta) has
        its frames and Pixel Data's bulk data expanded as a Part-10 one
        has, native and as stored, not a 500 (AttributeError:
        'FileMetaDataset' object has no attribute 'TransferSyntaxUID');
        JPEG frames asked for are a 406, as of any object stored native."""
        original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds = copy.deepcopy(original)
        ds.SOPInstanceUID = generate_uid()
        path = yield self.storedNki(ds, IMPLICIT, 4, "nki.v2", bare=True)
        for accept in (OCTETS, OCTETS + "; transfer-syntax=*"):
            found = yield self.fetch(path + "/frames/1", accept=accept)
            self.assertEqual((accept, found.code), (accept, 200), found.body)
            ((kind, frame),) = found.parts()
            self.assertEqual((kind, frame), (f"application/octet-stream; transfer-syntax={EXPLICIT}", original.PixelData))
        bulk = yield self.fetch(path + "/bulk/7FE00010", accept=OCTETS)
        self.assertEqual((bulk.code, b"".join(part for _, part in bulk.parts())), (200, original.PixelData))
        (metadata,) = (yield self.fetch(path + "/metadata")).json()
        self.assertEqual((metadata["00083002"]["Value"], metadata["7FE00010"]["vr"]), ([IMPLICIT], "OW"))
        found = yield self.fetch(path + "/frames/1", accept=f'multipart/related; type="image/jpeg"; '
                                                            f'transfer-syntax={JPEG_LOSSLESS}')
        self.assertEqual(found.code, 406, found.body)  # as for any object stored native

    @defer.inlineCallbacks
    def test_framesOfLargeNKIObjectsAreRefused(self):
        """The NKI stream runs over all the frames of an object, so its
        frames are expanded all at once: one whose pixels expand to more
        than STREAMED_OBJECT (here 257 frames of 32 kB, 8 MB, in a file of
        about 4.6 MB) is a 422, logged, not expanded."""
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        frames = STREAMED_OBJECT // len(ds.PixelData) + 1
        ds.SOPInstanceUID, ds.NumberOfFrames, ds.PixelData = generate_uid(), frames, ds.PixelData * frames
        path = yield self.storedNki(ds, EXPLICIT, 2, "nkilarge.dcm")
        expanded = []
        self.patch(instancefiles, "decompressDecoded", expanded.append)
        with capturedLogs() as events:
            for resource in ("/frames/1", "/bulk/7FE00010"):
                found = yield self.fetch(path + resource, accept=OCTETS)
                self.assertEqual(found.code, 422, resource)
                self.assertIn(f"its NKI compressed pixels expand to {len(ds.PixelData)} bytes".encode(), found.body)
        self.assertEqual(expanded, [])
        self.assertEqual(len([event for event in events if "cannot be shown" in formatEvent(event)]), 2)

    @defer.inlineCallbacks
    def test_framesOfBigEndianObjects(self):
        """Native frames of objects stored in Explicit VR Big Endian are
        their little endian bytes as stored, as in the object retrieved in
        Explicit VR Little Endian: RGB planes kept (Planar Configuration 1),
        16-bit samples swapped."""
        for name in ("ExplVR_BigEnd.dcm", "MR_small_bigendian.dcm"):
            path = yield self.stored(pydicom.dcmread(get_testdata_file(name)), name)
            ((_, little),) = (yield self.fetch(path)).parts()
            little = pydicom.dcmread(io.BytesIO(little))
            self.assertEqual(little.file_meta.TransferSyntaxUID, EXPLICIT)
            ((_, frame),) = (yield self.fetch(path + "/frames/1", accept=OCTETS)).parts()
            self.assertEqual((name, frame), (name, little.PixelData))

    @defer.inlineCallbacks
    def test_binaryValuesOfBigEndianObjects(self):
        """OW, OL, OF, OD and OV values of an object stored in Explicit VR
        Big Endian go little endian, their words swapped, as its frames do:
        inline in the metadata (in a sequence's items too) and as bulk data
        (PS3.18 8.7.3: octet-stream is Explicit VR Little Endian), as
        Orthanc sends them; a palette stored (1, 2, 3, 258) read as (256,
        512, 768, 513) showed the wrong colours."""
        study = "1.2.826.0.1.3680043.8.498.32"
        dataset = makeDataset("BIGEND1", "Big^Endian", study, f"{study}.1", f"{study}.1.1", 1, 1, rows=2, columns=2)
        dataset.file_meta.TransferSyntaxUID = syntaxes.EXPLICIT_VR_BIG_ENDIAN
        dataset.PixelData = struct.pack(">4H", 1, 2, 3, 4)
        dataset.add_new(0x00281201, "OW", struct.pack(">4H", 1, 2, 3, 0x0102))  # Red Palette LUT Data
        dataset.add_new(0x00281202, "OW", struct.pack(">1024H", *range(1024)))  # Green: over 1 KB, bulk data
        dataset.add_new(0x00660016, "OF", struct.pack(">2f", 1.5, -2))  # Point Coordinates Data
        item = Dataset()
        item.add_new(0x00660040, "OL", struct.pack(">2L", 1, 0x01020304))  # Long Primitive Point Index List
        dataset.add_new(0x00660002, "SQ", [item])  # Surface Sequence
        path = yield self.stored(dataset, "bigendian.dcm")
        (metadata,) = (yield self.fetch(path + "/metadata")).json()

        def inline(value):
            return base64.b64decode(value["InlineBinary"])
        self.assertEqual(inline(metadata["00281201"]), struct.pack("<4H", 1, 2, 3, 0x0102))
        self.assertEqual(inline(metadata["00660016"]), struct.pack("<2f", 1.5, -2))
        self.assertEqual(inline(metadata["00660002"]["Value"][0]["00660040"]), struct.pack("<2L", 1, 0x01020304))
        for tag, expected in (("00281202", struct.pack("<1024H", *range(1024))),
                              ("00281201", struct.pack("<4H", 1, 2, 3, 0x0102))):
            ((_, value),) = (yield self.fetch(f"{path}/bulk/{tag}", accept=OCTETS)).parts()
            self.assertEqual((tag, value), (tag, expected))
        self.assertEqual(metadata["00281202"]["BulkDataURI"], f"{self.base}{path}/bulk/00281202")

    @defer.inlineCallbacks
    def test_framesWithBitsAboveHighBit(self):
        """Native frames of an image with an embedded overlay above High
        Bit, unsigned and signed, stored in every lossless code, are the
        stored words, overlay bits and all (pydicom's JPEG lossless
        decoder alone masks them off)."""
        study = "1.2.826.0.1.3680043.8.498.20"
        for n, (signed, syntax) in enumerate((signed, syntax) for signed in (False, True) for syntax in (
                syntaxes.JPEG_LOSSLESS, JPEG_LOSSLESS, syntaxes.JPEG_LS_LOSSLESS, syntaxes.JPEG_2000_LOSSLESS,
                syntaxes.RLE_LOSSLESS)):
            words = overlaid(signed)
            words.update(makeDataset("OVERLAY1", "Embedded^Overlay", study, f"{study}.1", f"{study}.1.{n}", 1, n))
            words.update(overlaid(signed))  # its pixel module again
            stored = asFile(quietly(transcode, encodeDataset(words, EXPLICIT), EXPLICIT, syntax), syntax, words)
            path = yield self.stored(stored, f"overlay{n}.dcm")
            ((_, frame),) = (yield self.fetch(path + "/frames/1", accept=OCTETS)).parts()
            self.assertEqual(frame, words.PixelData, (signed, syntax))

    @defer.inlineCallbacks
    def test_pixelsNoCodecDecodes(self):
        """Frames and pixel bulk data of an object in a syntax pydicom
        cannot decode (MPEG-4 video): 422, not a failure of the server."""
        image = self.corpus[2]
        dataset = pydicom.dcmread(image.path)
        dataset.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"
        dataset.PixelData = encapsulate([b"\x00\x00\x00\x01" * 64])
        dataset["PixelData"].VR = "OB"
        [stored] = yield self.archive.index.runQuery(self.archive.query.instances, "IMAGE",
                                                     [self.queryKey(image.sopUID, SOP_INSTANCE_UID)])
        dataset.save_as(self.archive.objectReader.path(stored.deviceName, stored.objectFile), enforce_file_format=True)
        for path in ("/frames/1", "/bulk/7FE00010"):
            found = yield self.fetch(self.instancePath(image) + path)
            self.assertEqual((path, found.code), (path, 422))

    @defer.inlineCallbacks
    def test_renderedAndThumbnail(self):
        image = self.corpus[0]
        found = yield self.fetch(self.instancePath(image) + "/rendered?window=2048,4096")
        self.assertEqual(found.header("content-type"), "image/jpeg")
        self.assertEqual(Image.open(io.BytesIO(found.body)).size, (64, 64))
        png = yield self.fetch(self.instancePath(image) + "/frames/1/rendered?viewport=32,32", accept="image/png")
        self.assertEqual(Image.open(io.BytesIO(png.body)).format, "PNG")
        self.assertEqual(Image.open(io.BytesIO(png.body)).size, (32, 32))
        wide = makeDataset("WIDE1", "Wide^Image", "1.2.826.0.1.3680043.8.498.8", "1.2.826.0.1.3680043.8.498.8.1",
                           "1.2.826.0.1.3680043.8.498.8.1.1", 1, 1, rows=48, columns=64)
        path = os.path.join(self.running.workdir, "wide.dcm")
        wide.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        widePath = f"/studies/{wide.StudyInstanceUID}/series/{wide.SeriesInstanceUID}/instances/{wide.SOPInstanceUID}"
        for viewport, size in (("50,100", (50, 38)), ("300,300", (300, 225)), ("0,24", (32, 24))):
            shown = yield self.fetch(f"{widePath}/rendered?viewport={viewport}")
            self.assertEqual(Image.open(io.BytesIO(shown.body)).size, size, f"viewport={viewport}: fits, aspect kept")
        beyond = yield self.fetch(self.instancePath(image) + "/frames/2/rendered")
        self.assertEqual((beyond.code, beyond.body.count(b"there is no frame 2")), (404, 1))
        thumbnail = yield self.fetch(f"/studies/{image.studyUID}/thumbnail")
        self.assertEqual(Image.open(io.BytesIO(thumbnail.body)).format, "JPEG")
        refused = yield self.fetch(self.instancePath(image) + "/rendered", accept="application/pdf")
        self.assertEqual(refused.code, 406)
        poor = yield self.fetch(self.instancePath(image) + "/rendered?quality=5")
        self.assertLess(len(poor.body), len((yield self.fetch(self.instancePath(image) + "/rendered")).body) / 2)
        for bad in ("0", "101", "x", "5,6", "50,x"):
            refused = yield self.fetch(self.instancePath(image) + f"/rendered?quality={bad}")
            self.assertEqual((bad, refused.code), (bad, 400))

    @defer.inlineCallbacks
    def test_renderedPDF(self):
        """The rendered form of an Encapsulated PDF is the PDF (as Orthanc
        answers it), asked for or with any type; not a picture."""
        study = "1.2.826.0.1.3680043.8.498.72"
        dataset = encapsulatedPDF("PDF2", study, f"{study}.1", f"{study}.1.1")
        yield self.stored(dataset, "report.dcm")
        rendered = f"/studies/{study}/series/{study}.1/instances/{study}.1.1/rendered"
        for accept in (None, "application/pdf", "image/jpeg;q=0.5, application/pdf", "*/*"):
            found = yield self.fetch(rendered, accept=accept)
            self.assertEqual((found.code, found.header("content-type"), found.body), (200, "application/pdf", PDF),
                             accept)
        picture = yield self.fetch(rendered, accept="image/jpeg")
        self.assertEqual(picture.code, 422)

    @defer.inlineCallbacks
    def test_renderedTextDocument(self):
        """A text/plain Encapsulated Document asked for as ``text/plain`` (a
        rendered media type of a text, PS3.18 table 8.7.4-1) is the text,
        its charset kept, sandboxed and not sniffed as the ``document`` page
        sends it; asked for as a picture, it is none (422)."""
        study = "1.2.826.0.1.3680043.8.498.73"
        dataset = encapsulatedPDF("TXT1", study, f"{study}.1", f"{study}.1.1")
        text = b"Findings: no acute abnormality.\n"
        dataset.MIMETypeOfEncapsulatedDocument = "text/plain; charset=utf-8"
        dataset.EncapsulatedDocument = text + b" " * (len(text) % 2)
        dataset.EncapsulatedDocumentLength = len(text)
        yield self.stored(dataset, "text.dcm")
        rendered = f"/studies/{study}/series/{study}.1/instances/{study}.1.1/rendered"
        for accept in ("text/plain", "text/plain, image/jpeg;q=0.5", "text/*"):
            found = yield self.fetch(rendered, accept=accept)
            self.assertEqual((found.code, found.header("content-type"), found.body),
                             (200, "text/plain; charset=utf-8", text), accept)
            self.assertEqual((found.header("x-content-type-options"), found.header("content-security-policy"),
                              found.header("content-disposition")), ("nosniff", "sandbox", None), accept)
        picture = yield self.fetch(rendered, accept="image/jpeg")
        self.assertEqual(picture.code, 422)

    @defer.inlineCallbacks
    def test_aDocumentAskedForAsAnotherTypeIsRefusedNamingItsOwn(self):
        """An Encapsulated Document asked for as a type it is not, and as
        no picture (a text/plain one as text/html, text/rtf or a PDF), is a
        406 naming its type and how to ask for it, not one about pictures."""
        study = "1.2.826.0.1.3680043.8.498.74"
        dataset = encapsulatedPDF("TXT2", study, f"{study}.1", f"{study}.1.1")
        dataset.MIMETypeOfEncapsulatedDocument = "text/plain; charset=utf-8"
        dataset.EncapsulatedDocument = b"Findings: none.\n"
        yield self.stored(dataset, "text.dcm")
        rendered = f"/studies/{study}/series/{study}.1/instances/{study}.1.1/rendered"
        for accept in ("text/html", "text/rtf", "application/pdf", "text/*;q=0, text/html", "image/png;q=0"):
            refused = yield self.fetch(rendered, accept=accept)
            self.assertEqual((refused.code, refused.body.count(b"this instance holds a document of type text/plain, "
                                                               b"not a picture: ask for it as text/plain (or */*)")),
                             (406, 1), accept)
        pdf = encapsulatedPDF("TXT2", study, f"{study}.2", f"{study}.2.1")
        yield self.stored(pdf, "report.dcm")
        refused = yield self.fetch(f"/studies/{study}/series/{study}.2/instances/{study}.2.1/rendered",
                                   accept="text/plain")
        self.assertEqual((refused.code, refused.body.count(b"holds a document of type application/pdf")), (406, 1))
        yield self.stored(makeDataset("TXT2", "Text^Two", study, f"{study}.3", f"{study}.3.1", 1, 1), "image.dcm")
        for accept in ("application/dicom", "image/png;q=0", "*/*;q=0", "text/plain"):
            refused = yield self.fetch(f"/studies/{study}/series/{study}.3/instances/{study}.3.1/rendered",
                                       accept=accept)
            self.assertEqual((refused.code, refused.body.count(b"pacs renders pictures as image/jpeg")), (406, 1),
                             accept)

    @defer.inlineCallbacks
    def test_thumbnailOfFirstObjectShown(self):
        """A study's thumbnail is its first object that can be shown: an
        object without pixels (an SR, an RT Plan) ahead of it is skipped; a
        series of such objects alone has none (422)."""
        study = "1.2.826.0.1.3680043.8.498.9"
        report, images = f"{study}.1", f"{study}.2"
        noPixels = makeDataset("THUMB1", "Thumb^Nail", study, report, f"{report}.1", 1, 1)
        del noPixels.PixelData
        yield self.stored(noPixels, "nopixels.dcm")
        yield self.stored(makeDataset("THUMB1", "Thumb^Nail", study, images, f"{images}.1", 2, 1, rows=48), "image.dcm")
        for accept, kind in ((None, "JPEG"), ("image/png", "PNG")):
            thumbnail = yield self.fetch(f"/studies/{study}/thumbnail", accept=accept)
            self.assertEqual(thumbnail.code, 200)
            self.assertEqual(Image.open(io.BytesIO(thumbnail.body)).format, kind)
        none = yield self.fetch(f"/studies/{study}/series/{report}/thumbnail")
        self.assertEqual((none.code, none.body.count(b"no Pixel Data")), (422, 1))

    @defer.inlineCallbacks
    def test_renderedStudyAndSeries(self):
        """A study's or series' ``rendered`` is its first object that can be
        shown as a picture, at its full size unless ``viewport`` asks
        another, as Orthanc answers it: an object without pixels ahead of
        it is skipped, a series of such objects alone is a 422, and one
        not stored a 404."""
        study = "1.2.826.0.1.3680043.8.498.41"
        report, images = f"{study}.1", f"{study}.2"
        noPixels = makeDataset("RENDER1", "Rendered^Study", study, report, f"{report}.1", 1, 1)
        del noPixels.PixelData
        yield self.stored(noPixels, "rendered-nopixels.dcm")
        yield self.stored(makeDataset("RENDER1", "Rendered^Study", study, images, f"{images}.1", 2, 1,
                                      rows=48, columns=200), "rendered-image.dcm")
        for path in (f"/studies/{study}/rendered", f"/studies/{study}/series/{images}/rendered"):
            shown = yield self.fetch(path)
            self.assertEqual((path, shown.code, shown.header("content-type")), (path, 200, "image/jpeg"))
            self.assertEqual(Image.open(io.BytesIO(shown.body)).size, (200, 48))
        png = yield self.fetch(f"/studies/{study}/rendered?viewport=100,100", accept="image/png")
        self.assertEqual((Image.open(io.BytesIO(png.body)).format, Image.open(io.BytesIO(png.body)).size),
                         ("PNG", (100, 24)))
        none = yield self.fetch(f"/studies/{study}/series/{report}/rendered")
        self.assertEqual((none.code, none.body.count(b"no Pixel Data")), (422, 1))
        self.assertEqual((yield self.fetch(f"/studies/{study}.9/rendered")).code, 404)

    @defer.inlineCallbacks
    def test_zeroQualityIsNotAcceptable(self):
        """An Accept whose ranges are all q=0 is a 406, not taken as ``*/*``;
        a q=0 range refuses what a wider one would otherwise take."""
        path = self.instancePath(self.corpus[0])
        dicom = 'multipart/related; type="application/dicom"'
        for resource, accept in (("", "image/png;q=0"), ("", f"{dicom}; transfer-syntax=1.2.840.10008.1.2.4.50;q=0"),
                                 ("", f"{dicom};q=0"), ("", f"*/*, {dicom}; transfer-syntax={EXPLICIT};q=0"),
                                 ("/rendered", "image/png;q=0"), ("/metadata", "application/json;q=0")):
            found = yield self.fetch(path + resource, accept=accept)
            self.assertEqual((resource, accept, found.code), (resource, accept, 406))
        picture = yield self.fetch(path + "/rendered", accept="*/*, image/jpeg;q=0")
        self.assertEqual((picture.code, picture.header("content-type")), (200, "image/png"))
        metadata = yield self.fetch(path + "/metadata", accept="*/*, application/dicom+json;q=0")
        self.assertEqual((metadata.code, metadata.header("content-type")), (200, "application/json"))

    @defer.inlineCallbacks
    def test_acceptParameterWithItsQValuesInTheURL(self):
        """The ``accept`` query parameter keeps its q values when its ``;``
        is not percent-encoded, as a browser or curl sends it (a query is
        split at ``&`` alone): the PNG it gives q=0 is refused."""
        path = self.instancePath(self.corpus[0])
        picture = yield self.fetch(path + "/rendered?accept=image/png;q=0,image/jpeg")
        self.assertEqual((picture.code, picture.header("content-type")), (200, "image/jpeg"))
        refused = yield self.fetch(path + "/rendered?accept=image/png;q=0")
        self.assertEqual(refused.code, 406)

    @defer.inlineCallbacks
    def test_zeroQualityOfFrames(self):
        """A q=0 range refuses frames and pixel bulk data that a wider range
        would take, as it does objects."""
        path = self.instancePath(self.corpus[3])
        for resource in ("/frames/1", "/bulk/7FE00010"):
            for accept in (f"*/*, {OCTETS};q=0", "*/*, multipart/related;q=0",
                           f"{OCTETS}; transfer-syntax=*, {OCTETS}; transfer-syntax={EXPLICIT};q=0"):
                found = yield self.fetch(path + resource, accept=accept)
                self.assertEqual((resource, accept, found.code), (resource, accept, 406))
            found = yield self.fetch(path + resource, accept=f"*/*, {OCTETS}; transfer-syntax=1.2.840.10008.1.2;q=0")
            self.assertEqual((resource, found.code), (resource, 200))

    @defer.inlineCallbacks
    def test_zeroQualityOfStoredSyntax(self):
        """``transfer-syntax=*`` sends an object as stored unless a q=0 range
        refuses that syntax: then in another the client takes, or a 406."""
        path = self.instancePath(self.corpus[0])
        dicom = 'multipart/related; type="application/dicom"; transfer-syntax='
        found = yield self.fetch(path, accept=f"{dicom}*")
        self.assertEqual([kind for kind, _ in found.parts()], [f"application/dicom; transfer-syntax={EXPLICIT}"])
        found = yield self.fetch(path, accept=f"{dicom}*, {dicom}{EXPLICIT};q=0")
        ((kind, content),) = found.parts()
        self.assertEqual(kind, f"application/dicom; transfer-syntax={IMPLICIT}")
        self.assertEqual(pydicom.dcmread(io.BytesIO(content)).file_meta.TransferSyntaxUID, IMPLICIT)
        found = yield self.fetch(path, accept=f"{dicom}*, {dicom}{EXPLICIT};q=0, {dicom}{IMPLICIT};q=0")
        self.assertEqual(found.code, 406)

    @defer.inlineCallbacks
    def test_renderedWindow(self):
        """window=center,width[,function] (PS3.18 8.3.5.1.3): the function
        applies; a width that is not positive (below 1 for LINEAR), an
        unknown function or no numbers are a 400."""
        path = self.instancePath(self.corpus[0]) + "/rendered?window="
        pictures = {}
        for window in ("2048,4096", "2048,4096,LINEAR", "2048,4096,sigmoid", "2048,4096,LINEAR_EXACT",
                       "0,0.5,SIGMOID"):
            found = yield self.fetch(path + window, accept="image/png")
            self.assertEqual((window, found.code), (window, 200))
            pictures[window] = np.asarray(Image.open(io.BytesIO(found.body)))
        self.assertEqual(pictures["2048,4096"].tolist(), pictures["2048,4096,LINEAR"].tolist())
        self.assertNotEqual(pictures["2048,4096"].tolist(), pictures["2048,4096,sigmoid"].tolist())
        for window in ("0,0", "0,-5", "0,100,FOO", "0,0.5", "0,0.5,LINEAR", "0,0,SIGMOID", "x,1", "1", "1,2,LINEAR,4",
                       "nan,5", "0,inf"):
            found = yield self.fetch(path + window)
            self.assertEqual((window, found.code), (window, 400))

    @defer.inlineCallbacks
    def test_viewportBounded(self):
        """A viewport wider or higher than LARGEST_FIT is a 400 with a log
        line, never a picture enlarged until the memory runs out; one of
        LARGEST_FIT is made."""
        path = self.instancePath(self.corpus[0])
        with capturedLogs() as events:
            for viewport in ("4097,10", "10,4097", "20000,20000", "10000000,10000000", "1e300,1", "-1,10"):
                refused = yield self.fetch(f"{path}/rendered?viewport={viewport}")
                self.assertEqual((viewport, refused.code), (viewport, 400))
                refused = yield self.fetch(f"{path}/thumbnail?viewport={viewport}")
                self.assertEqual((viewport, refused.code), (viewport, 400))
        self.assertTrue(any(event.get("code") == 400 and event.get("uri", "").endswith("rendered?viewport=20000,20000")
                            for event in events))
        largest = yield self.fetch(f"{path}/rendered?viewport={LARGEST_FIT},0", accept="image/png")
        self.assertEqual(Image.open(io.BytesIO(largest.body)).size, (LARGEST_FIT, LARGEST_FIT))

    @defer.inlineCallbacks
    def test_viewportSourceRegion(self):
        """viewport=vw,vh,sx,sy,sw,sh (PS3.18 8.3.5.1.3) shows the region
        sw x sh from column sx and row sy, what lies beyond the image left
        out, scaled to fit vw x vh; a viewport of another count of numbers,
        or a part that is no number, is a 400, and so is a negative sw or
        sh (a flip, which pacs does not make)."""
        image = self.corpus[0]  # 64 x 64
        path = self.instancePath(image)
        whole = yield self.fetch(f"{path}/rendered?window=2048,4096", accept="image/png")
        pixels = np.asarray(Image.open(io.BytesIO(whole.body)))
        self.assertEqual(pixels.shape, (64, 64))
        for viewport, region, scale in (("64,64,0,0,16,16", pixels[:16, :16], 4),
                                        ("32,32,60,40,16,16", pixels[40:56, 60:], 2),
                                        ("0,0,10,20,30,5", pixels[20:25, 10:40], 1)):
            for resource in ("rendered", "thumbnail"):
                shown = yield self.fetch(f"{path}/{resource}?window=2048,4096&viewport={viewport}", accept="image/png")
                self.assertEqual((viewport, resource, shown.code), (viewport, resource, 200))
                expected = region.repeat(scale, 0).repeat(scale, 1)
                self.assertEqual(np.asarray(Image.open(io.BytesIO(shown.body))).tolist(), expected.tolist(),
                                 f"{resource}?viewport={viewport}")
        for viewport in ("64,64,abc", "1,2,3", "256,256,1,2,3,4,5,6,7", "64,64,0,0,16", "64,64,0,0,-16,16",
                         "64,64,0,0,16,-16", "64,64,-1,0,16,16", "64,64,0,0,0,16", "64,64,0,0,16,nan", "64,x"):
            for resource in ("rendered", "thumbnail"):
                refused = yield self.fetch(f"{path}/{resource}?viewport={viewport}")
                self.assertEqual((viewport, resource, refused.code), (viewport, resource, 400))

    @defer.inlineCallbacks
    def test_viewportSourceDefaultsAndOutside(self):
        """A source part of the viewport left empty is its default (PS3.18
        8.3.5.1.3: sx and sy 0, sw and sh to the edge of the image); an
        empty width or height of the viewport is still a 400, and so is a
        region that starts beyond the image, which holds nothing of it (not
        its last pixel blown up)."""
        path = self.instancePath(self.corpus[0])  # 64 x 64
        whole = yield self.fetch(f"{path}/rendered?window=2048,4096", accept="image/png")
        pixels = np.asarray(Image.open(io.BytesIO(whole.body)))
        for viewport, region in (("64,64,,,,", pixels), ("0,0,60,40,,", pixels[40:, 60:]),
                                 ("0,0,,,16,16", pixels[:16, :16]), ("0,0,,8,,", pixels[8:])):
            shown = yield self.fetch(f"{path}/rendered?window=2048,4096&viewport={viewport}", accept="image/png")
            self.assertEqual((viewport, shown.code), (viewport, 200))
            self.assertEqual(np.asarray(Image.open(io.BytesIO(shown.body))).tolist(), region.tolist(), viewport)
        for viewport in ("64,,,,,", ",64,,,,", "256,256,100,100,5,5", "256,256,64,0,5,5", "256,256,0,64,,"):
            refused = yield self.fetch(f"{path}/rendered?viewport={viewport}", accept="image/png")
            self.assertEqual((viewport, refused.code), (viewport, 400))
        outside = yield self.fetch(f"{path}/rendered?viewport=256,256,100,100,5,5")
        self.assertIn(b"is not in the image", outside.body)

    @defer.inlineCallbacks
    def seriesFiles(self, image):
        """``[(SOP Instance UID, path)]`` of the files of ``image``'s series, in the order WADO-RS sends them."""
        found, _ = yield retrieve.storedInstances(self.archive, Target(image.studyUID, image.seriesUID))
        return [(instance.sopInstanceUID, str(path)) for instance, path in found]

    @defer.inlineCallbacks
    def test_vanishedFiles(self):
        """A file gone, the first or a later one: left out with a log line,
        the others sent, as C-MOVE and the metadata do (it made the whole
        answer a 404, or cut it short); a 404 when none is left."""
        image = self.corpus[0]
        files = yield self.seriesFiles(image)
        self.assertEqual(len(files), 2)
        series = f"/studies/{image.studyUID}/series/{image.seriesUID}"
        for gone, kept in (files, reversed(files)):
            os.rename(gone[1], gone[1] + ".away")
            with capturedLogs() as events:
                found = yield self.fetch(series)
            os.rename(gone[1] + ".away", gone[1])
            self.assertEqual([pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID for _, content in found.parts()],
                             [kept[0]])
            self.assertIn(f"WADO-RS: {gone[0]} left out: the stored file cannot be read: No such file or directory",
                          [formatEvent(event) for event in events])
        for _, path in files:
            os.remove(path)
        found = yield self.fetch(series)
        self.assertEqual(found.code, 404)

    @defer.inlineCallbacks
    def test_damagedFiles(self):
        """A file cut short behind pacs's back is never sent as it is: a 500
        for the instance (WADO-RS, WADO-URI and the ``dicom`` page, made
        smaller too), left out of its series, each time with a log line
        naming the file."""
        image = self.corpus[0]
        (damaged, path), (whole, _) = yield self.seriesFiles(image)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        with capturedLogs() as events:
            found = yield self.fetch(f"/studies/{image.studyUID}/series/{image.seriesUID}")
            self.assertEqual([pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID for _, content in found.parts()],
                             [whole])
            instance = yield self.fetch(f"/studies/{image.studyUID}/series/{image.seriesUID}/instances/{damaged}")
            self.assertEqual(instance.code, 500)
            uri = yield self.fetch(f"{self.root}/wado?requestType=WADO&studyUID={image.studyUID}"
                                   f"&seriesUID={image.seriesUID}&objectUID={damaged}&contentType=application/dicom")
            self.assertEqual(uri.code, 500)
            page = yield self.fetch(f"{self.root}/cgi-bin/dgate?mode=dicom&slice=:{damaged}&dsize=16")
            self.assertEqual(page.code, 500)
        lines = [formatEvent(event) for event in events]
        self.assertEqual(len([line for line in lines if line.startswith(f"web: cannot read {path}: truncated or "
                                                                        "damaged: element (7FE0,0010)")]), 4)
        self.assertTrue(any(line.startswith(f"WADO-RS: {damaged} left out") for line in lines))

    def queryKey(self, uid, tag=SERIES_INSTANCE_UID):
        return QueryKey(tag, "UI", uid)


class MetadataTextTests(unittest.TestCase):

    def test_invalidTextReadsAsLatin1(self):
        """WADO-RS metadata gave a Latin-1 ``ü`` in an ISO_IR 192 object as
        U+FFFD (the viewer showed ``M\ufffdller``), where the index and
        QIDO read it as Latin-1; it now reads it so too."""
        path = self.mktemp()
        writeInvalidTextObject(path)
        with capturedLogs():
            found = instanceMetadata(path, "http://pacs/dicom-web/studies/1/series/2/instances/3")
        self.assertEqual(found["00100010"], {"vr": "PN", "Value": [{"Alphabetic": "Ungültig^Namen"}]})

    def test_conquestV2NamesTheSyntaxItIsReadIn(self):
        """A Conquest .v2 (the data set alone, no file meta; Implicit VR
        Little Endian), NKI compressed or not, had metadata without an
        Available Transfer Syntax UID and with its 16-bit Pixel Data called
        OB, though its frames go as 16-bit words: it names the syntax it is
        read in and OW, as a Part-10 file of it does."""
        original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        for data in (encodeDataset(original, IMPLICIT), nkiObject(original, IMPLICIT, 4, bare=True)):
            path = self.mktemp()
            with open(path, "wb") as f:
                f.write(data)
            found = instanceMetadata(path, "http://pacs/dicom-web/studies/1/series/2/instances/3")
            self.assertEqual((found.get("00083002"), found["7FE00010"]["vr"]),
                             ({"vr": "UI", "Value": [IMPLICIT]}, "OW"))

    def test_multiByteSetAsValue1(self):
        """An object naming ``ISO 2022 IR 87`` alone in (0008,0005), with a
        name holding an empty component, made its study's metadata a 500
        (``IndexError: string index out of range``); its names are read as
        under ``\\ISO 2022 IR 87``, its (0008,0005) as stored."""
        path = self.mktemp()
        withValue1JIS(makeDataset("JIS1", "", "1.2", "1.2.1", "1.2.1.1", 1, 1)).save_as(path, enforce_file_format=True)
        found = instanceMetadata(path, "http://pacs/dicom-web/studies/1/series/2/instances/3")
        self.assertEqual((found["00080005"]["Value"], found["00100010"]["Value"], found["00080090"]["Value"]),
                         (["ISO 2022 IR 87"], [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}],
                          [{"Alphabetic": "^^^^"}]))

    def test_aValuePydicomCannotDecodeIsGivenAsItsBytes(self):
        """A value pydicom fails on (an FD of 4 bytes, which C-STORE takes
        as storescp does) left the whole object out of the metadata
        (``200 []``, 'left out: it cannot be read: (0018,9087) cannot be
        decoded'), and an object stored Explicit VR Big Endian failed the
        whole answer, a 500 with a critical traceback (swapBytes'
        BytesLengthException); the object is described, that value as UN
        InlineBinary of its bytes (as stored), with a log line naming it."""
        for syntax, header, value, bad in (
                (syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, b"\x18\x00\x87\x90FD\x08\x00", struct.pack("<d", 1.0),
                 b"\x18\x00\x87\x90FD\x04\x00\x01\x00\x02\x00"),
                (syntaxes.EXPLICIT_VR_BIG_ENDIAN, b"\x00\x18\x90\x87FD\x00\x08", struct.pack(">d", 1.0),
                 b"\x00\x18\x90\x87FD\x00\x04\x01\x00\x02\x00")):
            path = self.mktemp()
            dataset = makeDataset("BADFD", "", "1.2", "1.2.1", "1.2.1.1", 1, 1)
            dataset.DiffusionBValue = 1.0
            dataset.file_meta.TransferSyntaxUID = syntax
            dataset.save_as(path, enforce_file_format=True, little_endian=syntax != syntaxes.EXPLICIT_VR_BIG_ENDIAN,
                            implicit_vr=False)
            with open(path, "rb") as f:
                data = f.read()
            self.assertIn(header + value, data)
            with open(path, "wb") as f:
                f.write(data.replace(header + value, bad))
            with capturedLogs() as events:
                found = instanceMetadata(path, "http://pacs/dicom-web/studies/1/series/2/instances/3")
            self.assertEqual((found["00080018"]["Value"], found["00189087"]),
                             (["1.2.1.1"], {"vr": "UN",
                                            "InlineBinary": base64.b64encode(b"\x01\x00\x02\x00").decode()}),
                             syntax)
            self.assertIn("SOP Instance 1.2.1.1: value(s) that cannot be decoded kept as their bytes (UN): (0018,9087) "
                          "cannot be decoded", "\n".join(formatEvent(event) for event in events))


    def test_aPrivateValuePydicomCannotDecodeInImplicitVRIsGivenAsItsBytes(self):
        """In Implicit VR pydicom reads a known private element by its private
        dictionary's VR (GEMS_PARM_01 (0043,101A): SL); one of 6 bytes still
        left the whole object out of the metadata ('200 []', 'left out: it
        cannot be read: (0043,101a) cannot be decoded'), its VR not found in
        the public dictionary; it is given as UN InlineBinary of its bytes."""
        path = self.mktemp()
        dataset = makeDataset("PRIV", "", "1.2", "1.2.1", "1.2.1.1", 1, 1)
        dataset.add_new(0x00430010, "LO", "GEMS_PARM_01")
        dataset.add_new(0x0043101A, "SL", 7)
        dataset.file_meta.TransferSyntaxUID = syntaxes.IMPLICIT_VR_LITTLE_ENDIAN
        dataset.save_as(path, enforce_file_format=True, implicit_vr=True, little_endian=True)
        good = b"\x43\x00\x1a\x10\x04\x00\x00\x00" + struct.pack("<l", 7)
        with open(path, "rb") as f:
            data = f.read()
        self.assertIn(good, data)
        with open(path, "wb") as f:
            f.write(data.replace(good, b"\x43\x00\x1a\x10\x06\x00\x00\x00\x01\x00\x02\x00\x03\x00"))
        with capturedLogs() as events:
            found = instanceMetadata(path, "http://pacs/dicom-web/studies/1/series/2/instances/3")
        self.assertEqual((found["00080018"]["Value"], found["0043101A"]),
                         (["1.2.1.1"], {"vr": "UN",
                                        "InlineBinary": base64.b64encode(b"\x01\x00\x02\x00\x03\x00").decode()}))
        self.assertIn("SOP Instance 1.2.1.1: value(s) that cannot be decoded kept as their bytes (UN): (0043,101a) "
                      "cannot be decoded", "\n".join(formatEvent(event) for event in events))


    def test_anIntegerStringNoIntegerHoldsIsGivenAsAbcIs(self):
        """An InstanceNumber inf, which C-STORE stores (as abc), was given
        as UN InlineBinary ('aW5mIA=='), abc as IS: it is IS, as abc is."""
        given = {}
        for value in (b"inf ", b"abc "):
            path = self.mktemp()
            makeDataset("ISINF", "", "1.2", "1.2.1", "1.2.1.1", 1, 7).save_as(path, enforce_file_format=True)
            with open(path, "rb") as f:
                data = f.read()
            self.assertEqual(data.count(b"\x20\x00\x13\x00IS\x02\x007 "), 1)
            with open(path, "wb") as f:
                f.write(data.replace(b"\x20\x00\x13\x00IS\x02\x007 ", b"\x20\x00\x13\x00IS\x04\x00" + value))
            given[value] = instanceMetadata(path, "http://pacs/dicom-web/studies/1/series/2/instances/3")["00200013"]
        self.assertEqual(given[b"inf "], given[b"abc "])
        self.assertEqual(given[b"inf "]["vr"], "IS")

def writeDeflatedBomb(path, zeros, before):
    """A small CT image stored Deflated Explicit VR Little Endian in
    ``path``, with a private OB of ``zeros`` MB of zeros, ``before`` its
    Pixel Data ((7FD1,1010)) or after it ((7FF1,1010)); deflated a
    megabyte at a time, never held whole."""
    dataset = makeDataset("BOMB", "", "1.2", "1.2.1", "1.2.1.1", 1, 1)
    pixels = dataset.PixelData
    del dataset.PixelData
    group = 0x7FD1 if before else 0x7FF1
    bomb = (struct.pack("<HH", group, 0x0010) + b"LO\x04\x00BOMB"
            + struct.pack("<HH", group, 0x1010) + b"OB\x00\x00" + struct.pack("<L", zeros << 20))
    pixelData = struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\x00\x00" + struct.pack("<L", len(pixels)) + pixels
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    parts = [deflater.compress(encodeDataset(dataset, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN)),
             deflater.compress(bomb if before else pixelData + bomb)]
    parts.extend(deflater.compress(bytes(1 << 20)) for _ in range(zeros))
    parts.extend((deflater.compress(pixelData if before else b""), deflater.flush()))
    meta = Dataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = dataset.SOPClassUID, dataset.SOPInstanceUID
    meta.TransferSyntaxUID = syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    out = DicomBytesIO()
    out.write(bytes(128) + b"DICM")
    write_file_meta_info(out, FileMetaDataset(meta))
    data = b"".join(parts)
    with open(path, "wb") as f:
        f.write(out.getvalue() + data + (b"\x00" if len(data) % 2 else b""))


def memoryPeak(fn, *args):
    """``(what fn(*args) returned, the peak of the memory it took in MB)``."""
    gc.collect()
    tracemalloc.start()
    try:
        found = fn(*args)
        return found, tracemalloc.get_traced_memory()[1] >> 20
    finally:
        tracemalloc.stop()


class DeflatedMetadataTests(unittest.TestCase):
    """WADO-RS metadata of an object stored deflated inflated all of it,
    the bulk data after its Pixel Data too: a 0.5 MB C-STORE holding a
    512 MB private OB took the server from 1.2 to 2.2 GB for each
    request; it inflates only up to the Pixel Data, and no more than the
    128 MB a conversion in memory holds."""

    def test_bulkDataAfterThePixelDataIsNotInflated(self):
        path = self.mktemp()
        writeDeflatedBomb(path, 256, before=False)
        found, peak = memoryPeak(instanceMetadata, path, "http://pacs/dicom-web/studies/1/series/2/instances/3")
        self.assertEqual((found["00080018"]["Value"], found["7FE00010"]["vr"], found["00083002"]["Value"],
                          "7FF11010" in found),
                         (["1.2.1.1"], "OW", [syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN], False))
        self.assertLess(peak, 16)

    def test_moreThanAConversionHoldsBeforeThePixelDataIsRefused(self):
        """A DatasetError, which leaves the object out of the metadata with
        a log line, found before more than 128 MB is inflated."""
        path = self.mktemp()
        writeDeflatedBomb(path, 160, before=True)
        with self.assertRaisesRegex(DatasetError, "^the deflated data set is read past 128 MB"):
            memoryPeak(instanceMetadata, path, "http://pacs/dicom-web/studies/1/series/2/instances/3")

    def test_aSmallOneReadsAsBefore(self):
        """The metadata of a deflated object read a window at a time is the
        one pydicom gives of it inflated whole."""
        path = self.mktemp()
        writeDeflatedBomb(path, 1, before=True)
        found = instanceMetadata(path, "http://pacs/dicom-web/studies/1/series/2/instances/3")
        whole = pydicom.dcmread(path)
        self.assertEqual((found["00100020"]["Value"], found["7FD11010"]["vr"], found["00280010"]["Value"]),
                         (["BOMB"], "OB", [whole.Rows]))


class PixelElementsMetadataTests(unittest.TestCase):
    """WADO-RS metadata names the pixel element an object holds as a
    BulkDataURI that ``bulk/{tag}`` answers, and no other: a Parametric
    Map's Float Pixel Data (7FE0,0008) was left out with everything after
    it, and a made-up Pixel Data BulkDataURI (a 404) given in its place,
    as to any object with Rows and no Pixel Data."""

    URL = "http://pacs/dicom-web/studies/1/series/2/instances/3"

    def saved(self, dataset, syntax):
        dataset.file_meta.TransferSyntaxUID = syntax
        path = self.mktemp()
        dataset.save_as(path, enforce_file_format=True)
        return path

    def test_floatPixelDataIsBulkData(self):
        """Float and Double Float Pixel Data, however short, are a
        BulkDataURI whose bytes ``bulkValue`` gives, little endian, in
        each syntax; there is no Pixel Data, and the elements after them
        are left out, as those after a Pixel Data are."""
        for tag, keyword, vr, kind in ((0x7FE00008, "FloatPixelData", "OF", "f4"),
                                       (0x7FE00009, "DoubleFloatPixelData", "OD", "f8")):
            for syntax, order in ((EXPLICIT, "<"), (IMPLICIT, "<"), (syntaxes.EXPLICIT_VR_BIG_ENDIAN, ">")):
                dataset = makeDataset("PMAP", "", "1.2", "1.2.1", "1.2.1.1", 1, 1, rows=4, columns=4)
                del dataset.PixelData
                dataset.BitsAllocated = int(kind[1]) * 8
                setattr(dataset, keyword, np.arange(16, dtype=order + kind).tobytes())
                dataset.add_new(0x7FE10010, "LO", "AFTER")
                path = self.saved(dataset, syntax)
                found = instanceMetadata(path, self.URL)
                self.assertEqual((found.get(f"{tag:08X}"), "7FE00010" in found, "7FE10010" in found),
                                 ({"vr": vr, "BulkDataURI": f"{self.URL}/bulk/{tag:08X}"}, False, False),
                                 (keyword, syntax))
                self.assertEqual(instancefiles.bulkValue(path, tag), np.arange(16, dtype="<" + kind).tobytes(),
                                 (keyword, syntax))

    def test_floatPixelDataIsNotRead(self):
        """The metadata of a Parametric Map does not read its Float Pixel
        Data, which it gives as a BulkDataURI: a 100 MB one took 100 MB
        more for each request (12 MB here, in each syntax, deflated too);
        its bulk/ gives the bytes, and a Double Float Pixel Data and Pixel
        Data after it are found past it."""
        values = np.arange(3 << 20, dtype="<f4") % 251  # deflated in a moment
        for syntax in (EXPLICIT, IMPLICIT, syntaxes.EXPLICIT_VR_BIG_ENDIAN,
                       syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN):
            dataset = makeDataset("PMAP", "", "1.2", "1.2.1", "1.2.1.1", 1, 1, rows=4, columns=4)
            dataset.BitsAllocated = 32
            order = ">" if syntax == syntaxes.EXPLICIT_VR_BIG_ENDIAN else "<"
            dataset.FloatPixelData = values.astype(order + "f4").tobytes()
            dataset.DoubleFloatPixelData = np.arange(4, dtype=order + "f8").tobytes()
            path = self.saved(dataset, syntax)
            found, peak = memoryPeak(instanceMetadata, path, self.URL)
            self.assertEqual(([found.get(f"{tag:08X}", {}).get("BulkDataURI") for tag in (0x7FE00008, 0x7FE00009)],
                              found["7FE00010"]["BulkDataURI"]),
                             ([f"{self.URL}/bulk/7FE00008", f"{self.URL}/bulk/7FE00009"], f"{self.URL}/bulk/7FE00010"),
                             syntax)
            self.assertLess(peak, 4, syntax)
            self.assertEqual((instancefiles.bulkValue(path, 0x7FE00008), instancefiles.bulkValue(path, 0x7FE00009)),
                             (values.tobytes(), np.arange(4, dtype="<f8").tobytes()), syntax)

    def test_noPixelDataNoBulkDataURI(self):
        """An object with Rows and Columns and no Pixel Data has none in its
        metadata; one with an empty Pixel Data has it without a value."""
        dataset = makeDataset("NOPIX", "", "1.2", "1.2.1", "1.2.1.1", 1, 1)
        del dataset.PixelData
        found = instanceMetadata(self.saved(dataset, EXPLICIT), self.URL)
        self.assertEqual((found["00280010"]["Value"], "7FE00010" in found), ([64], False))
        dataset.PixelData = b""
        dataset["PixelData"].VR = "OW"
        found = instanceMetadata(self.saved(dataset, EXPLICIT), self.URL)
        self.assertEqual(found["7FE00010"], {"vr": "OW"})


class BigEndianFrameTests(unittest.TestCase):
    """Native frames of an 8-bit Explicit VR Big Endian image stored in OW
    (16-bit words) whose frames have an odd length, pydicom's
    SC_rgb_small_odd_big_endian.dcm (3x3 RGB, 27 bytes), were a 422
    ('buffer size must be a multiple of element size'), in frames/ and
    bulk/7FE00010; each is the bytes pydicom decodes, a second frame
    beginning within a word too."""

    def test_eightBitFramesOfAnOddLength(self):
        single = get_testdata_file("SC_rgb_small_odd_big_endian.dcm")
        double = pydicom.dcmread(single)
        first = pixel_array(double).tobytes()
        little = first + bytes(255 - byte for byte in first)
        double.NumberOfFrames, double.PixelData = 2, np.frombuffer(little, "u2").byteswap().tobytes()
        path = self.mktemp()
        double.save_as(path, enforce_file_format=True)
        for name, stored, count in ((single, pydicom.dcmread(single), 1), (path, double, 2)):
            frames = instancefiles.instanceFrames(name, None, lambda syntax: (False, instancefiles.OCTET_STREAM))
            self.assertEqual([frames.first] + [frames.frame(index) for index in range(1, count)],
                             [pixel_array(stored, index=index).tobytes() for index in range(count)], name)
        self.assertEqual(frames.frame(1), little[27:])


class StoredAgainTests(DicomWebTestCase):
    """Objects stored again (the same SOP instances, each under a new file
    name, the old file removed after the commit) after a request's index
    lookup are read from their new files: the answer is whole (WADO-RS,
    its metadata, WADO-URI, a zip download)."""

    @defer.inlineCallbacks
    def storedAgainAfterLookUp(self, path, images):
        """What ``path`` answers when ``images`` are stored again just after
        its lookup."""
        index, before = self.archive.index, self.running.files()
        runQuery = index.runQuery

        def replaced():
            return len(set(before) - set(self.running.files()))

        async def storedAgainAfter(fn, *args):
            found = await runQuery(fn, *args)
            if fn == self.archive.objectReader.instancePaths:
                index.runQuery = runQuery
                await self.running.store(images)
                for _ in range(500):  # the replaced files go in the I/O pool after the answers
                    if replaced() == len(images):
                        break
                    await task.deferLater(reactor, 0.01, lambda: None)
            return found
        index.runQuery = lambda fn, *args: defer.ensureDeferred(storedAgainAfter(fn, *args))
        found = yield self.fetch(path)
        self.assertEqual(index.runQuery, runQuery)  # looked up, then stored again
        self.assertEqual(replaced(), len(images))  # their files replaced
        return found

    @defer.inlineCallbacks
    def test_studyAndMetadata(self):
        study = [image for image in self.corpus if image.studyUID == self.corpus[0].studyUID]
        found = yield self.storedAgainAfterLookUp(f"/studies/{study[0].studyUID}", study)
        self.assertEqual(found.code, 200)
        self.assertEqual(sorted(pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID for _, content in found.parts()),
                         sorted(image.sopUID for image in study))
        metadata = yield self.storedAgainAfterLookUp(f"/studies/{study[0].studyUID}/metadata", study)
        self.assertEqual(len(metadata.json()), len(study))

    @defer.inlineCallbacks
    def test_wadoURIAndZip(self):
        image = self.corpus[0]
        found = yield self.storedAgainAfterLookUp(
            f"{self.root}/wado?requestType=WADO&studyUID={image.studyUID}&seriesUID={image.seriesUID}"
            f"&objectUID={image.sopUID}&contentType=application/dicom", [image])
        self.assertEqual((found.code, pydicom.dcmread(io.BytesIO(found.body)).SOPInstanceUID), (200, image.sopUID))
        series = [other for other in self.corpus if other.seriesUID == image.seriesUID]
        zipped = yield self.storedAgainAfterLookUp(
            f"{self.root}/cgi-bin/dgate?mode=zipseries&series={image.patientID}:{image.seriesUID}", series)
        self.assertEqual((zipped.code, len(zipfile.ZipFile(io.BytesIO(zipped.body)).namelist())), (200, len(series)))
