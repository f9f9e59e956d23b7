"""Tests for pacscore.web.site, browse, images and wado: the pages of a
real archive (its index and files), answered through the resource."""

import collections
import io
import os
import random
import re
import zipfile
from html import unescape
from urllib.parse import parse_qsl

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from twisted.internet import defer
from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.control.data import AddImageFile
from pacscore.control.deletes import DeletePatient
from pacscore.web.answers import HTML
from pacscore.web.site import webSite
from plugins.pacs_control_database import imageLister
from tests.pacscore.control.running import RunningArchive
from pacscore.testing.corpus import makeDataset
from pacscore.testing.mutations import mutated
from pydicom.uid import generate_uid
from tests.pacscore.web.dicomweb.client import DicomWebTestCase
from tests.pacscore.web.pages import PDF, WebTestCase, dgate, encapsulatedPDF, get, getQuery

CT = get_testdata_file("CT_small.dcm")
RLE = get_testdata_file("MR_small_RLE.dcm")
RLE_LOSSLESS = "1.2.840.10008.1.2.5"


class BrowseTests(WebTestCase):

    ae = "WEBPACS"
    corpusShape = {"patients": 2, "studiesPerPatient": 1, "seriesPerStudy": 2, "imagesPerSeries": 3,
                   "namePrefix": "Web"}

    @defer.inlineCallbacks
    def test_top(self):
        page = yield get(self.resource)
        self.assertEqual(page.code, 200)
        self.assertEqual(page.headers["content-type"], "text/html; charset=utf-8")
        self.assertIn("DICOM server &#x27;WEBPACS&#x27;", page.text)
        self.assertIn("Images received=0", page.text)  # stored with addimagefile, not over DICOM
        for mode in ("querypatients", "querystudies", "queryseries", "patientfinder", "studyfinder",
                     "seriesfinder"):
            self.assertIn(f'value="{mode}"', page.text)
        self.assertIn("<option>(local)</option><option>CONQUESTSRV1</option></select>", page.text)

    @defer.inlineCallbacks
    def test_tableNamesAreThoseOfTheIndexUntilARestart(self):
        """After put_param:StudyTableName,MyStudies (answered 'takes effect
        when the server restarts'), a query text naming DICOMStudies, the
        table the index still has, was refused: 'DICOMStudies is not a table
        of the index (dicompatients, mystudies, ...)'."""
        self.running.archive.configuration.ini.set("StudyTableName", "MyStudies")  # what put_param does in memory
        studies = yield get(self.resource, mode="querystudies", query="DICOMStudies.PatientID = 'PAT0000'")
        self.assertEqual(studies.code, 200)
        self.assertIn("<caption>1 studies where DICOMStudies.PatientID", studies.text)

    @defer.inlineCallbacks
    def test_downTheLinks(self):
        """Patients -> studies -> series -> images -> one slice, by the pages' own links."""
        patients = yield get(self.resource, mode="querypatients")
        self.assertIn("<caption>2 patients</caption>", patients.text)
        studies = yield get(self.resource, patients.links()[0])
        self.assertIn("<caption>1 studies where DICOMStudies.PatientID = &#x27;PAT0000&#x27;</caption>",
                      studies.text)
        series = yield get(self.resource, studies.links()[0])
        self.assertIn("<caption>2 series where", series.text)
        images = yield get(self.resource, series.links()[0])
        self.assertIn("<caption>3 images where", images.text)
        shown = set(re.findall(r"<td>([0-9.]+)</td>", images.text))
        self.assertEqual(len([image for image in self.corpus if image.sopUID in shown]), 3)
        self.assertEqual({image.patientID for image in self.corpus if image.sopUID in shown}, {"PAT0000"})
        viewer = yield get(self.resource, images.links()[0])
        self.assertIn('id="slice"', viewer.text)
        picture = yield get(self.resource, viewer.images()[0])
        self.assertEqual(picture.headers["content-type"], "image/jpeg")
        self.assertEqual(Image.open(io.BytesIO(picture.body)).size, (64, 64))
        png = yield get(self.resource, images.links()[0] + "&graphic=png")
        self.assertIn('<input type="hidden" name="graphic" value="png">', png.text,
                      "the Level/window form keeps the picture format")

    @defer.inlineCallbacks
    def test_seriesViewers(self):
        """Conquest's viewer modes show a series (series=patid:uid) with the
        slice viewer, an image at a time by image number, with links to the
        others that keep the level/window; the series list's "view" links go
        to the mode [webdefaults] viewer names (serversideviewer, as the
        manual's dicom.ini, without one)."""
        image = self.corpus[0]
        series = f"{image.patientID}:{image.seriesUID}"
        inSeries = [each.sopUID for each in self.corpus if each.seriesUID == image.seriesUID]  # by image number
        for mode in ("seriesviewer", "seriesviewer2", "serversideviewer", "noviewer", "aiviewer"):
            page = yield get(self.resource, mode=mode, series=series)
            self.assertEqual((mode, page.code), (mode, 200))
            self.assertIn('id="slice"', page.text)
            self.assertIn("image 1 of 3", page.text)
            self.assertIn(f'<input type="hidden" name="mode" value="{mode}">', page.text)
        last = yield get(self.resource, mode="serversideviewer", series=series, n="3", lw="40/400/0")
        picture = dict(parse_qsl(last.images()[0].split("?", 1)[1]))
        self.assertEqual((picture["mode"], picture["lw"]), ("slice", "40/400/0"))
        self.assertEqual(picture["slice"], f"{image.patientID}:{inSeries[2]}")
        steps = [dict(parse_qsl(target.split("?", 1)[1])) for target in last.links() if "mode=serversideviewer" in target]
        self.assertEqual([(step["n"], step["lw"]) for step in steps], [("1", "40/400/0"), ("2", "40/400/0")])
        for wrong, code in (({"series": series, "n": "4"}, 400), ({"series": f"{image.patientID}:1.2.3"}, 404),
                            ({"series": "PAT0000:not a uid"}, 400), ({}, 400)):
            page = yield get(self.resource, mode="seriesviewer", **wrong)
            self.assertEqual((wrong, page.code), (wrong, code))
        listed = yield get(self.resource, mode="queryseries")
        views = [target for target in listed.links() if "mode=serversideviewer" in target]
        self.assertEqual(len(views), 4)
        view = yield get(self.resource, views[0])
        self.assertIn("image 1 of 3", view.text)
        self.running.configuration.ini.set("viewer", "seriesviewer2", "webdefaults")
        listed = yield get(self.resource, mode="queryseries")
        self.assertEqual(len([target for target in listed.links() if "mode=seriesviewer2&" in target]), 4)

    @defer.inlineCallbacks
    def test_viewOfSeriesWithoutImages(self):
        """The "view" link of a series none of whose objects has pixels (a
        report, a PDF) lists its objects, leading to their header dump and
        document as the image lists do, rather than to a 404."""
        report = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
        yield self.running.run(AddImageFile(), get_testdata_file("test-SR.dcm"))
        study = "1.2.826.0.1.3680043.8.498.73"
        path = os.path.join(self.running.workdir, "report.dcm")
        encapsulatedPDF("PDF3", study, f"{study}.1", f"{study}.1.1").save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        listed = yield get(self.resource, mode="queryseries")
        views = {target.rsplit("%3A", 1)[1]: target for target in listed.links() if "mode=serversideviewer" in target}
        shown = yield get(self.resource, views[report.SeriesInstanceUID])
        self.assertEqual(shown.code, 200)
        self.assertIn(f"/cgi-bin/dgate?mode=headerdump&slice=%3A{report.SOPInstanceUID}", shown.links())
        shown = yield get(self.resource, views[f"{study}.1"])
        [document] = [target for target in shown.links() if "mode=document" in target]
        self.assertEqual(document, f"/cgi-bin/dgate?mode=document&slice=PDF3%3A{study}.1.1")
        document = yield get(self.resource, document)
        self.assertEqual((document.code, document.body), (200, PDF))

    @defer.inlineCallbacks
    def test_zipAndPushLinks(self):
        studies = yield get(self.resource, mode="querystudies")
        series = yield get(self.resource, mode="queryseries")
        for page, modes in ((studies, ("zipstudy", "studymover")), (series, ("zipseries", "seriesmover"))):
            for mode in modes:
                self.assertEqual(len([target for target in page.links() if f"mode={mode}&" in target]),
                                 2 if page is studies else 4)
        self.running.configuration.ini.set("WEBPush", "0")
        studies = yield get(self.resource, mode="querystudies")
        self.assertNotIn("studymover", studies.text)
        self.assertIn("zipstudy", studies.text)

    @defer.inlineCallbacks
    def test_emptyPatientID(self):
        """A patient without an ID has a link to click ("(no ID)"), to its
        own studies only, as SQL's ``PatientID = ''`` selects them; so does
        the finders' (an explicit empty ``patientid`` too)."""
        yield self.running.run(AddImageFile(), get_testdata_file("test-SR.dcm"))
        only = "1.2.276.0.7230010.3.1.4.2139363186.7819.982086466.2"
        patients = yield get(self.resource, mode="querypatients")
        self.assertIn(">(no ID)</a></td><td>Test^S R</td>", patients.text)
        [empty] = [link for link in patients.links() if link.endswith("%27%27")]
        studies = yield get(self.resource, empty)
        self.assertIn("<caption>1 studies where DICOMStudies.PatientID = &#x27;&#x27;</caption>", studies.text)
        self.assertIn(f"study=%3A{only}", studies.text)
        found = yield get(self.resource, mode="patientfinder", dest="(local)", query="Test")
        self.assertIn(">(no ID)</a></td><td>Test^S R</td>", found.text)
        [studyFinder] = [link for link in found.links() if "mode=studyfinder" in link]
        for target in (studyFinder, "/cgi-bin/dgate?mode=studyfinder&dest=(local)&patientid="):
            studies = yield get(self.resource, target)
            self.assertIn("<caption>1 studies on (local)</caption>", studies.text)
            self.assertIn(f"study=%3A{only}", studies.text)
        every = yield get(self.resource, mode="studyfinder", dest="(local)")
        self.assertIn("<caption>3 studies on (local)</caption>", every.text)

    @defer.inlineCallbacks
    def storeEmptyAndQuotesIDs(self):
        """Store a CT of an empty Patient ID (N^empty, study 1.2.3.0) and one
        whose ID is two quotation marks (N^quotes, study 1.2.3.1)."""
        for number, (patientID, name) in enumerate((("", "N^empty"), ('""', "N^quotes"))):
            ds = pydicom.dcmread(CT)
            ds.PatientID, ds.PatientName = patientID, name
            ds.StudyInstanceUID = f"1.2.3.{number}"
            ds.SeriesInstanceUID, ds.SOPInstanceUID = f"1.2.3.{number}.1", f"1.2.3.{number}.1.1"
            path = os.path.abspath(self.mktemp())
            ds.save_as(path)
            yield self.running.run(AddImageFile(), path)

    @defer.inlineCallbacks
    def test_literalQuotesPatientID(self):
        """A Patient ID of two quotation marks is that ID wherever a page or
        command names a patient (its link, references, zips,
        deletepatient), never the empty ID of the patient stored next to it."""
        yield self.storeEmptyAndQuotesIDs()
        patients = yield get(self.resource, mode="querypatients")
        [quotes] = [link for link in patients.links() if link.endswith("%27%22%22%27")]
        listed = yield get(self.resource, quotes)
        self.assertIn("N^quotes", listed.text)
        self.assertNotIn("N^empty", listed.text)
        for mode, parameter, value in (("seriesviewer", "series", '"":1.2.3.1.1'),
                                       ("noviewer", "series", '"":1.2.3.1.1'),
                                       ("headerdump", "slice", '"":1.2.3.1.1.1'),
                                       ("dicom", "slice", '"":1.2.3.1.1.1'),
                                       ("zipstudy", "study", '"":1.2.3.1'),
                                       ("zipseries", "series", '"":1.2.3.1.1')):
            page = yield get(self.resource, mode=mode, **{parameter: value})
            self.assertEqual(page.code, 200, mode)
        self.assertEqual((yield self.running.run(DeletePatient(), '""')), "1 object(s) removed from the server")
        patients = yield get(self.resource, mode="querypatients")
        self.assertIn("N^empty", patients.text)
        self.assertNotIn("N^quotes", patients.text)

    @defer.inlineCallbacks
    def test_finderLinksOfEmptyAndQuotesIDs(self):
        """The finders' "(no ID)" link (``emptyid=1``) and the link of the
        Patient ID ``""`` differ, and each leads to its own patient."""
        yield self.storeEmptyAndQuotesIDs()
        found = yield get(self.resource, mode="patientfinder", dest="(local)", query="N^")
        finders = {name: unescape(link) for link, name
                   in re.findall(r'<a href="([^"]*mode=studyfinder[^"]*)">[^<]*</a></td><td>([^<]*)</td>', found.text)}
        self.assertEqual(finders, {"N^empty": "/cgi-bin/dgate?mode=studyfinder&dest=%28local%29&emptyid=1",
                                   "N^quotes": "/cgi-bin/dgate?mode=studyfinder&dest=%28local%29&patientid=%22%22"})
        for name, study in (("N^empty", "1.2.3.0"), ("N^quotes", "1.2.3.1")):
            page = yield get(self.resource, finders[name])
            self.assertIn("<caption>1 studies on (local)</caption>", page.text)
            self.assertIn(name, page.text)
            self.assertIn(f"%3A{study}", page.text)

    @defer.inlineCallbacks
    def test_longListsCut(self):
        """A list page reads no more than its ``max`` rows and one more (to
        say it was cut) from the index, and makes the page in the I/O pool."""
        query, workers = self.running.archive.query, self.running.archive.workers
        read, made = [], []
        find = query.find
        self.patch(query, "find", lambda *args, **kw: read.append(len(find(*args, **kw))) or find(*args, **kw))
        toWorker = workers.deferToWorker
        self.patch(workers, "deferToWorker", lambda f, *args: made.append(f.__name__) or toWorker(f, *args))
        page = yield get(self.resource, mode="queryallimages", max="5")
        self.assertIn("<caption>more than 5 images (the first 5 shown; max=N shows more)</caption>", page.text)
        self.assertEqual(page.text.count("mode=sliceviewer"), 5)
        self.assertEqual(read, [6])
        self.assertEqual(made, ["_imagesPage"])
        page = yield get(self.resource, mode="queryseries", max="4")
        self.assertIn("<caption>4 series</caption>", page.text)

    @defer.inlineCallbacks
    def test_cutImageListKeepsTheLowestNumbers(self):
        """A cut image list holds the first ``max`` images by number (sorted
        so before the cut), whatever order they were stored in."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        study, series = generate_uid(), generate_uid()
        for number in (9, 10, 11, 1, 2, 3):
            path = os.path.join(folder, f"{number}.dcm")
            makeDataset("ORDER", "Order^Patient", study, series, generate_uid(), 1, number).save_as(
                path, enforce_file_format=True)
            yield self.running.run(AddImageFile(), path)
        for most, numbers in (("3", ["1", "2", "3"]), ("5", ["1", "2", "3", "9", "10"])):
            page = yield get(self.resource, mode="queryallimages", patientidmatch="ORDER", max=most)
            self.assertIn(f"<caption>more than {most} images", page.text)
            self.assertEqual(re.findall(r'mode=sliceviewer[^"]*">([^<]*)</a>', page.text), numbers)

    @defer.inlineCallbacks
    def _storeSeries(self, patient, numbers, documents=False):
        """A series of ``patient`` holding one image (or encapsulated PDF) per
        number of ``numbers`` (None: without one), stored in that order; its
        UID and ``{sop: shown number}``."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        study, series, shown = generate_uid(), generate_uid(), {}
        for number in numbers:
            sop = generate_uid()
            dataset = (encapsulatedPDF(patient, study, series, sop) if documents
                       else makeDataset(patient, "Order^Patient", study, series, sop, 1, 1))
            if number is None:
                del dataset.InstanceNumber
            else:
                dataset.InstanceNumber = number
            shown[sop] = "(no number)" if number is None else str(number)
            path = os.path.join(folder, f"{sop}.dcm")
            dataset.save_as(path, enforce_file_format=True)
            yield self.running.run(AddImageFile(), path)
        return series, shown

    @defer.inlineCallbacks
    def test_documentsInTheSeriesViewerByNumber(self):
        """The series viewer of a series without pixel data lists its
        objects by number, as queryallimages does, not in the index's order."""
        series, _ = yield self._storeSeries("DOCS", [5, 3, 9, 1, 7, 2, 8, 4, 6], documents=True)
        viewer = yield get(self.resource, mode="seriesviewer", series=f"DOCS:{series}")
        listed = yield get(self.resource, mode="queryallimages", patientidmatch="DOCS")
        for page in (viewer, listed):
            self.assertEqual(re.findall(r'mode=headerdump[^"]*">(\d+)</a>', page.text), [str(n) for n in range(1, 10)])

    @defer.inlineCallbacks
    def test_anImageWithoutANumberLastOnEveryPage(self):
        """An image without a number comes after those with one in
        queryallimages (cut or not), queryimages, the series viewer and
        ``dgate --imagelister:``, so row n of the list is the viewer's image n;
        a number with a leading ``+`` (valid IS) is a number on each of them."""
        series, shown = yield self._storeSeries("NONUMBER", [2, None, "+3", 10, 1])
        numbers = ["1", "2", "+3", "10", "(no number)"]
        listed = yield get(self.resource, mode="queryallimages", patientidmatch="NONUMBER")
        self.assertEqual(re.findall(r'mode=sliceviewer[^"]*">([^<]*)</a>', listed.text), numbers)
        cut = yield get(self.resource, mode="queryallimages", patientidmatch="NONUMBER", max="2")
        self.assertEqual(re.findall(r'mode=sliceviewer[^"]*">([^<]*)</a>', cut.text), numbers[:2])
        icons = yield get(self.resource, mode="queryimages", patientidmatch="NONUMBER")
        self.assertEqual([shown[sop] for sop in dict.fromkeys(re.findall(r'slice=NONUMBER%3A([0-9.]+)', icons.text))],
                         numbers)
        viewed = []
        for n in range(1, len(numbers) + 1):
            page = yield get(self.resource, mode="seriesviewer", series=f"NONUMBER:{series}", n=str(n))
            viewed.append(shown[re.findall(r'slice=NONUMBER%3A([0-9.]+)', page.text)[0]])
        self.assertEqual(viewed, numbers)
        lister = yield self.running.run(imageLister, f"local|NONUMBER|{series}|:%s %s|")
        self.assertEqual([shown[line.split()[1]] for line in lister.splitlines()], numbers)

    @defer.inlineCallbacks
    def test_thumbnails(self):
        page = yield get(self.resource, mode="queryimages", iconsize="16", graphic="gif")
        self.assertEqual(len(page.images()), 12)
        icon = yield get(self.resource, page.images()[0])
        self.assertEqual((icon.headers["content-type"], Image.open(io.BytesIO(icon.body)).size), ("image/gif", (16, 16)))

    @defer.inlineCallbacks
    def test_objectsWithoutPixels(self):
        """An RT plan or structure set in the image lists is its SOP class's
        name leading to its header, not an icon or a slice viewer that cannot
        show it (a broken image); the images keep theirs."""
        for name in ("rtplan.dcm", "rtstruct.dcm"):
            yield self.running.run(AddImageFile(), get_testdata_file(name))
        for patient, kind in (("id00001", "RT Plan Storage"), ("tPhantom30sep", "RT Structure Set Storage")):
            icons = yield get(self.resource, mode="queryimages", patientidmatch=patient)
            self.assertEqual(icons.images(), [])
            self.assertIn(f"[{kind}]</span></a>", icons.text)
            listed = yield get(self.resource, mode="queryallimages", patientidmatch=patient)
            for page in (icons, listed):
                self.assertNotIn("sliceviewer", page.text)
                header = yield get(self.resource, page.links()[0])
                self.assertEqual((header.code, 'id="header"' in header.text), (200, True))
        images = yield get(self.resource, mode="queryimages", patientidmatch="PAT0000")
        self.assertEqual(len(images.images()), 6)
        self.assertEqual(images.text.count("mode=sliceviewer"), 6)

    @defer.inlineCallbacks
    def test_searchFields(self):
        page = yield get(self.resource, mode="querystudies", patientidmatch="0001")
        self.assertIn("<caption>1 studies</caption>", page.text)
        self.assertIn("PAT0001", page.text)
        page = yield get(self.resource, mode="querystudies", studydatematch="2023")
        self.assertIn("<caption>0 studies</caption>", page.text)
        page = yield get(self.resource, mode="queryseries", patientnamematch="web", studydatematch="202401")
        self.assertIn("<caption>4 series</caption>", page.text)
        for pattern, count in (("2024010%", 4), ("2%", 4), ("2023%", 0), ("20240103%", 0)):
            page = yield get(self.resource, mode="queryseries", query=f"StudyDate like '{pattern}'")
            self.assertIn(f"<caption>{count} series where", page.text, pattern)

    @defer.inlineCallbacks
    def test_headerAndDicom(self):
        image = self.corpus[0]
        slice_ = f"{image.patientID}:{image.sopUID}"
        header = yield get(self.resource, mode="headerdump", slice=slice_)
        self.assertIn(image.sopUID, header.text)
        download = yield get(self.resource, mode="dicom", slice=slice_, compress="j2")
        self.assertEqual(download.headers["content-type"], "application/dicom")
        received = pydicom.dcmread(io.BytesIO(download.body))
        self.assertEqual(received.file_meta.TransferSyntaxUID, "1.2.840.10008.1.2.4.57")
        self.assertEqual(received.pixel_array.tolist(), pydicom.dcmread(image.path).pixel_array.tolist())

    @defer.inlineCallbacks
    def test_worklistAndConfiguration(self):
        worklist = yield get(self.resource, mode="queryworklist")
        self.assertIn("<caption>0 worklist entries</caption>", worklist.text)
        self.assertIn("<th>AccessionNumber</th>", worklist.text)
        self.running.configuration.ini.set("ControlSecret", "hush")
        self.running.configuration.ini.set("PostGres", "postgresql://pacs:topsecret@db/pacs")
        self.running.configuration.ini.set("ORTHANCWEB", "http://router:S3cret@Tail@orthanc.example:8042/dicom-web",
                                           "DICOMwebServers")
        config = yield get(self.resource, mode="showconfig")
        self.assertIn("<td>MyACRNema</td><td>WEBPACS</td>", config.text)
        self.assertIn("[webdefaults]", config.text)
        self.assertNotIn("hush", config.text)
        self.assertNotIn("topsecret", config.text)
        self.assertIn("<td>http://router:***@orthanc.example:8042/dicom-web</td>", config.text)
        sops = yield get(self.resource, mode="showsops")
        self.assertIn("<td>CTStorage</td><td>1.2.840.10008.5.1.4.1.1.2</td><td>sop</td>", sops.text)
        layout = yield get(self.resource, mode="showdb")
        self.assertIn("<caption>DICOMWorkList (worklist)</caption>", layout.text)
        self.assertIn("<td>0x0010</td><td>0x0020</td><td>PatientID</td><td>64</td>", layout.text)

    @defer.inlineCallbacks
    def test_badRequests(self):
        """Each gets its 4xx page saying why; nothing is read for them."""
        image = self.corpus[0]
        for parameters, code, why in [
                ({"mode": "nothing"}, 404, "there is no page"),
                ({"mode": "querypatients", "query": "1=1 or PatientID = 'x'"}, 400, "expected column"),
                ({"mode": "querystudies", "studydatematch": "last week"}, 400, "a date is yyyy"),
                ({"mode": "slice", "slice": "x:../../dicom.ini"}, 400, "must be a UID"),
                ({"mode": "slice", "slice": f"{image.patientID}:1.2.3.4"}, 404, "no stored object 1.2.3.4"),
                ({"mode": "slice", "slice": f":{image.sopUID}", "lw": "high"}, 400, "lw must be"),
                ({"mode": "slice", "slice": f":{image.sopUID}", "lw": "0/0/7"}, 422,
                 "the object has 1 frame(s), numbered from 0: there is no frame 7"),
                ({"mode": "slice", "slice": f":{image.sopUID}", "graphic": "tiff"}, 400, "graphic must be"),
                ({"mode": "slice", "slice": f":{image.sopUID}", "size": "-3"}, 400, "size must be"),
                ({"mode": "dicom", "slice": f":{image.sopUID}", "compress": "zz"}, 400, "not a compression code"),
                ({"mode": "queryworklist", "max": "many"}, 400, "max must be")]:
            page = yield get(self.resource, **parameters)
            self.assertEqual(page.code, code, (parameters, page.text))
            self.assertIn(why, page.text)
        self.assertNotIn(self.running.workdir, page.text)

    @defer.inlineCallbacks
    def test_webDefaults(self):
        self.running.configuration.ini.set("graphic", "png", section="webdefaults")
        self.running.configuration.ini.set("size", "32", section="webdefaults")
        resource = dgate(self.running)
        picture = yield get(resource, mode="slice", slice=f":{self.corpus[0].sopUID}")
        self.assertEqual(picture.headers["content-type"], "image/png")
        self.assertEqual(Image.open(io.BytesIO(picture.body)).size, (32, 32))
        picture = yield get(resource, mode="slice", slice=f":{self.corpus[0].sopUID}", graphic="bmp")
        self.assertEqual(picture.headers["content-type"], "image/bmp")

    @defer.inlineCallbacks
    def test_sizeInPercent(self):
        """Conquest's "size of viewer in pixels or %": ``size=N%`` (asked,
        or [webdefaults]') is the picture at its own size, which the slice
        viewer shows N% of the window high (as rendered:
        tests/interop/test_web.py); a percentage that is none is a 400."""
        sop = self.corpus[0].sopUID
        picture = yield get(self.resource, mode="slice", slice=f":{sop}", size="100%")
        self.assertEqual((picture.code, Image.open(io.BytesIO(picture.body)).size), (200, (64, 64)))
        self.running.configuration.ini.set("size", "50%", section="webdefaults")
        resource = dgate(self.running)
        viewer = yield get(resource, mode="sliceviewer", slice=f":{sop}")
        self.assertEqual(viewer.code, 200, viewer.text)
        [source] = viewer.images()
        self.assertIn("size=50%25", source)
        self.assertIn('style="height: 50vh"', viewer.text)
        shown = yield get(resource, source)
        self.assertEqual(Image.open(io.BytesIO(shown.body)).size, (64, 64))
        for size in ("0%", "many%", "2000%"):
            refused = yield get(self.resource, mode="slice", slice=f":{sop}", size=size)
            self.assertEqual(refused.code, 400, size)
            self.assertIn("size must be pixels or a percentage", refused.text)

    def test_siteRoutes(self):
        site = webSite(self.running.archive)
        root = site.resource
        self.assertIs(root.children[b"cgi-bin"].children[b"dgate"], root.children[b"cgi-bin"].children[b"dgate.exe"])
        self.assertTrue(root.children[b"wado"].wadoOnly)
        self.assertFalse(site.displayTracebacks)


class ConvertedBrowseTests(WebTestCase):
    """The lists go through QueryConverter0 and QueryResultConverter0, as
    Conquest's pages (which query the server over DICOM) do."""

    corpusShape = {"patients": 3, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 1}
    ini = {"QueryConverter0": 'ifequal "%V0010,0020", "NOBODY"; reject; ifequal "%V0010,0020", "GONE"; destroy; '
                              'ifequal "%V0010,0020", "FIRST"; set 0010,0020 to "PAT0000"',
           "QueryResultConverter0": 'ifequal "%V0010,0020", "PAT0001"; destroy; '
                                    'ifequal "%V0010,0020", "PAT0002"; set 0010,0010 to "Hidden^Name"'}

    @defer.inlineCallbacks
    def test_linesApply(self):
        patients = yield get(self.resource, mode="querypatients")
        self.assertIn("<caption>2 patients</caption>", patients.text)
        self.assertNotIn("PAT0001", patients.text)
        self.assertIn("<td>Hidden^Name</td>", patients.text)
        series = yield get(self.resource, mode="queryseries")
        self.assertIn("<caption>2 series</caption>", series.text)
        changed = yield get(self.resource, mode="querystudies", query="DICOMStudies.PatientID = 'FIRST'")
        self.assertIn("<caption>1 studies where", changed.text)
        self.assertIn("<td>PAT0000</td>", changed.text)
        destroyed = yield get(self.resource, mode="queryallimages", query="DICOMStudies.PatientID = 'GONE'")
        self.assertIn("<caption>0 images where", destroyed.text)
        rejected = yield get(self.resource, mode="querypatients", query="DICOMPatients.PatientID = 'NOBODY'")
        self.assertEqual(rejected.code, 403)
        self.assertIn("rejected by QueryConverter0", rejected.text)


class WadoTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        yield self.running.run(AddImageFile(), CT)
        self.ct = pydicom.dcmread(CT)
        self.resource = dgate(self.running)

    def wado(self, **parameters):
        return get(self.resource, requestType="WADO", studyUID=self.ct.StudyInstanceUID,
                   seriesUID=self.ct.SeriesInstanceUID, objectUID=self.ct.SOPInstanceUID, **parameters)

    @defer.inlineCallbacks
    def test_pictures(self):
        answer = yield self.wado()
        self.assertEqual((answer.code, answer.headers["content-type"]), (200, "image/jpeg"))
        for kind, format_ in (("image/png", "PNG"), ("image/gif", "GIF"), ("image/bmp", "BMP"),
                              ("video/mpeg, image/png;q=0.5", "PNG")):
            answer = yield self.wado(contentType=kind, rows="64")
            image = Image.open(io.BytesIO(answer.body))
            self.assertEqual((image.format, image.size), (format_, (64, 64)))
        for rows, columns in (("65536", ""), ("", "65536")):  # shrunk to fit, never enlarged: as large as it is
            answer = yield self.wado(contentType="image/png", rows=rows, columns=columns)
            self.assertEqual(Image.open(io.BytesIO(answer.body)).size, (128, 128))
        answer = yield get(self.resource, mode="slice", slice=f":{self.ct.SOPInstanceUID}", size="65536")
        self.assertEqual(Image.open(io.BytesIO(answer.body)).size, (128, 128))
        for parameter in ("rows", "columns"):
            answer = yield self.wado(**{parameter: "10000000"})
            self.assertEqual(answer.code, 400, parameter)
        wide = yield self.wado(contentType="image/png", windowCenter="0", windowWidth="100000")
        narrow = yield self.wado(contentType="image/png", windowCenter="40", windowWidth="40")
        spread = [np.asarray(Image.open(io.BytesIO(a.body))).std() for a in (wide, narrow)]
        self.assertLess(spread[0], spread[1])

    @defer.inlineCallbacks
    def test_lossyQualityIsTheOneInUseUntilARestart(self):
        """After put_param:LossyQuality,5 (answered 'takes effect when the
        server restarts') WADO-URI objects asked for in a JPEG syntax were coded at quality 5 while
        C-MOVE's and the forwards' JPEGs kept the quality the server started with."""
        lossy = {"contentType": "application/dicom", "transferSyntax": "1.2.840.10008.1.2.4.51"}
        before = yield self.wado(**lossy)
        self.running.archive.configuration.ini.set("LossyQuality", "5")  # what put_param does in memory
        after = yield self.wado(**lossy)
        self.assertEqual((after.code, len(after.body)), (200, len(before.body)))
        self.assertEqual(after.body, before.body)

    @defer.inlineCallbacks
    def test_typeChosenForTheObject(self):
        """contentType is a list: the first type that fits the object is
        answered (no picture of an object without pixels, which gets
        application/dicom by default), a 406 when none fits."""
        report = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
        yield self.running.run(AddImageFile(), get_testdata_file("test-SR.dcm"))
        uids = {"studyUID": report.StudyInstanceUID, "seriesUID": report.SeriesInstanceUID,
                "objectUID": report.SOPInstanceUID}
        for contentType, answered in ((None, "application/dicom"), ("image/jpeg,text/html", HTML),
                                      ("*/*", "application/dicom"), ("image/*, text/plain", "text/plain; charset=utf-8"),
                                      ("image/png", None), ("video/mpeg", None)):
            given = {} if contentType is None else {"contentType": contentType}
            answer = yield get(self.resource, requestType="WADO", **uids, **given)
            self.assertEqual((answer.code, answer.headers["content-type"]),
                             (200, answered) if answered else (406, HTML), contentType)
        for contentType, answered in (("*/*", "image/jpeg"), ("text/html,image/jpeg", HTML)):
            answer = yield self.wado(contentType=contentType)
            self.assertEqual((answer.code, answer.headers["content-type"]), (200, answered), contentType)

    @defer.inlineCallbacks
    def test_encapsulatedPDF(self):
        """An Encapsulated PDF is had as the PDF itself (its padding after
        %%EOF left out) by WADO-URI's contentType=application/pdf and the
        ``document`` mode the image list's "pdf" link leads to."""
        study = "1.2.826.0.1.3680043.8.498.71"
        series, sop = f"{study}.1", f"{study}.1.1"
        path = os.path.join(self.running.workdir, "report.dcm")
        encapsulatedPDF("PDF1", study, series, sop).save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        for contentType in ("application/pdf", "image/jpeg, application/pdf"):
            answer = yield get(self.resource, requestType="WADO", studyUID=study, seriesUID=series, objectUID=sop,
                               contentType=contentType)
            self.assertEqual((answer.code, answer.headers["content-type"], answer.body), (200, "application/pdf", PDF))
        answer = yield self.wado(contentType="application/pdf")
        self.assertEqual(answer.code, 406)
        images = yield get(self.resource, mode="queryallimages", query=f"DICOMImages.SOPInstanc = '{sop}'")
        [document] = [link for link in images.links() if "mode=document" in link]
        self.assertIn(">pdf</a>", images.text)
        answer = yield get(self.resource, document)
        self.assertEqual((answer.code, answer.headers["content-type"], answer.body), (200, "application/pdf", PDF))
        answer = yield get(self.resource, mode="document", slice=f":{self.ct.SOPInstanceUID}")
        self.assertEqual(answer.code, 422)

    @defer.inlineCallbacks
    def test_imageQuality(self):
        best = yield self.wado()
        worst = yield self.wado(imageQuality="5")
        self.assertLess(len(worst.body), len(best.body) / 2)
        self.assertEqual(Image.open(io.BytesIO(worst.body)).size, (128, 128))
        for bad in ("0", "101", "x"):
            answer = yield self.wado(imageQuality=bad)
            self.assertEqual(answer.code, 400, bad)

    @defer.inlineCallbacks
    def test_region(self):
        window = {"windowCenter": "100", "windowWidth": "1000"}  # the same grey mapping for every part
        whole = yield self.wado(contentType="image/png", **window)
        quarter = yield self.wado(contentType="image/png", region="0.5,0,1,0.5", **window)
        small = yield self.wado(contentType="image/png", region="0.5,0,1,0.5", rows="32", **window)
        pixels = [np.asarray(Image.open(io.BytesIO(answer.body))) for answer in (whole, quarter, small)]
        self.assertEqual([p.shape for p in pixels], [(128, 128), (64, 64), (32, 32)])
        self.assertEqual(pixels[1].tolist(), pixels[0][:64, 64:].tolist())
        for bad in ("0,0,1", "0.5,0,0.4,1", "0,0,1,2", "a,b,c,d", "nan,0,1,1"):
            answer = yield self.wado(region=bad)
            self.assertEqual(answer.code, 400, bad)
            self.assertIn("region must be", answer.text)

    @defer.inlineCallbacks
    def test_dicom(self):
        answer = yield self.wado(contentType="application/dicom")
        self.assertEqual(answer.headers["content-type"], "application/dicom")
        received = pydicom.dcmread(io.BytesIO(answer.body))
        self.assertEqual(received.file_meta.TransferSyntaxUID, "1.2.840.10008.1.2.1")
        self.assertEqual(received.pixel_array.tolist(), self.ct.pixel_array.tolist())
        self.assertEqual(received.PatientName, self.ct.PatientName)
        for syntax in ("1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"):
            answer = yield self.wado(contentType="application/dicom", transferSyntax=syntax)
            received = pydicom.dcmread(io.BytesIO(answer.body))
            self.assertEqual(received.file_meta.TransferSyntaxUID, syntax)
            self.assertEqual(received.pixel_array.tolist(), self.ct.pixel_array.tolist())
        baseline = yield self.wado(contentType="application/dicom", transferSyntax="1.2.840.10008.1.2.4.50")
        self.assertEqual(baseline.code, 406, "CT_small is 16-bit: JPEG baseline cannot hold it")
        self.assertIn("cannot be sent in transferSyntax 1.2.840.10008.1.2.4.50 (it can in 1.2.840.10008.1.2.4.51)",
                      baseline.text)
        text = yield self.wado(contentType="text/plain")
        self.assertIn(self.ct.SOPInstanceUID, text.text)

    @defer.inlineCallbacks
    def test_eightBitsInSixteenInALossySyntaxOnly(self):
        """8 bits stored in 16 (an overlay bit 12 in the first rows) asked
        for in JPEG 2000 4.91 or JPEG-LS 4.81 (at imageQuality 70) only:
        coded lossless in that syntax, every word back, Bits Stored 8, not
        marked lossy (a lossy coding at 16 bits would take 255 out of the
        8 bits)."""
        ds = makeDataset("NARROW", "Narrow^Bits", generate_uid(), generate_uid(), generate_uid(), 1, 1)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 8, 7, 0
        words = np.where(np.arange(64 * 64) % 64 < 32, 255, np.arange(64 * 64) % 256)
        words = words | np.where(np.arange(64 * 64) // 64 < 20, 1 << 12, 0)
        ds.PixelData = words.astype("<u2").tobytes()
        path = os.path.abspath(self.mktemp()) + ".dcm"
        ds.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        for syntax, quality in (("1.2.840.10008.1.2.4.91", ""), ("1.2.840.10008.1.2.4.81", "70")):
            answer = yield get(self.resource, requestType="WADO", studyUID=ds.StudyInstanceUID,
                               seriesUID=ds.SeriesInstanceUID, objectUID=ds.SOPInstanceUID,
                               contentType="application/dicom", transferSyntax=syntax, imageQuality=quality)
            self.assertEqual(answer.code, 200, (syntax, answer.body[:300]))
            received = pydicom.dcmread(io.BytesIO(answer.body))
            self.assertEqual(received.file_meta.TransferSyntaxUID, syntax)
            self.assertNotIn("LossyImageCompression", received, syntax)
            received.decompress()
            self.assertEqual((received.BitsStored, received.HighBit), (8, 7), syntax)
            self.assertEqual(received.PixelData, ds.PixelData, syntax)

    @defer.inlineCallbacks
    def test_dicomInItsOwnStoredSyntax(self):
        """RLE, which no compression code writes: sent as stored when
        stored in it (anonymized too), else 406."""
        yield self.running.run(AddImageFile(), RLE)
        rle = pydicom.dcmread(RLE)
        for anonymize in ("", "yes"):
            answer = yield get(self.resource, requestType="WADO", studyUID=rle.StudyInstanceUID,
                               seriesUID=rle.SeriesInstanceUID, objectUID=rle.SOPInstanceUID,
                               contentType="application/dicom", transferSyntax=RLE_LOSSLESS, anonymize=anonymize)
            self.assertEqual(answer.code, 200, answer.body[:300])
            received = pydicom.dcmread(io.BytesIO(answer.body))
            self.assertEqual(received.file_meta.TransferSyntaxUID, RLE_LOSSLESS)
            self.assertEqual(received.pixel_array.tolist(), rle.pixel_array.tolist())
        refused = yield self.wado(contentType="application/dicom", transferSyntax=RLE_LOSSLESS)
        self.assertEqual(refused.code, 406)
        self.assertIn("objects in the syntax they are stored in", refused.text)

    @defer.inlineCallbacks
    def test_anonymized(self):
        """The object de-identified with new UIDs and a pseudonym, the same
        ones each time; the pixels and the original file unchanged."""
        first = yield self.wado(contentType="application/dicom", anonymize="yes")
        second = yield self.wado(contentType="application/dicom", anonymize="yes")
        self.assertEqual(first.body, second.body)
        self.assertEqual(first.headers["content-disposition"], 'attachment; filename="anonymized.dcm"')
        received = pydicom.dcmread(io.BytesIO(first.body))
        uidMap = self.running.archive.converterServices.uidMap
        self.assertEqual(uidMap.oldFor(received.SOPInstanceUID), self.ct.SOPInstanceUID)
        self.assertEqual(received.file_meta.MediaStorageSOPInstanceUID, received.SOPInstanceUID)
        self.assertEqual(uidMap.oldFor(received.StudyInstanceUID), self.ct.StudyInstanceUID)
        self.assertEqual(uidMap.oldFor(received.PatientID), self.ct.PatientID)
        self.assertEqual((received.PatientName, received.PatientIdentityRemoved), (received.PatientID, "YES"))
        self.assertEqual((received.PatientBirthDate, received.StudyDate), ("", ""))
        self.assertEqual(received.InstitutionName, "ANONYMIZED")  # X/Z/D: a dummy
        self.assertEqual(received.pixel_array.tolist(), self.ct.pixel_array.tolist())
        original = yield self.wado(contentType="application/dicom")
        self.assertEqual(pydicom.dcmread(io.BytesIO(original.body)).PatientName, self.ct.PatientName)

    @defer.inlineCallbacks
    def test_invalidRequests(self):
        """Requests PS3.18 makes invalid are a 400 saying why, logged, not a
        picture or object with a parameter ignored; imageQuality with a lossy
        transferSyntax is that quality."""
        uids = {"studyUID": self.ct.StudyInstanceUID, "seriesUID": self.ct.SeriesInstanceUID,
                "objectUID": self.ct.SOPInstanceUID}
        dicom = {"requestType": "WADO", "contentType": "application/dicom"}
        wadoOnly = dgate(self.running, wadoOnly=True)
        with capturedLogs() as events:
            for parameters, why in [
                    ({"requestType": "WADO", "windowCenter": "100"}, "windowCenter and windowWidth go together"),
                    ({"requestType": "WADO", "windowWidth": "400"}, "windowCenter and windowWidth go together"),
                    ({"requestType": "WADO", "windowCenter": "40", "windowWidth": "-5"},
                     "windowWidth must be at least 1, not '-5'"),
                    ({"requestType": "WADO", "windowCenter": "40", "windowWidth": "0.4"},
                     "windowWidth must be at least 1, not '0.4'"),
                    ({**dicom, "rows": "32", "region": "0,0,0.5,0.5", "windowCenter": "1", "windowWidth": "2"},
                     "rows, region, windowCenter, windowWidth: only for pictures, not for contentType application/dicom"),
                    ({**dicom, "columns": "32", "frameNumber": "1"}, "columns, frameNumber: only for pictures"),
                    ({**dicom, "imageQuality": "50"},
                     "imageQuality is only for pictures or a lossy transferSyntax, not 1.2.840.10008.1.2.1"),
                    ({"requestType": "RS"}, "requestType must be WADO, not 'RS'"),
                    ({}, "requestType must be WADO, not ''")]:
                answer = yield get(wadoOnly, **uids, **parameters)
                self.assertEqual(answer.code, 400, (parameters, answer.text))
                self.assertIn(why, unescape(answer.text))
        self.assertEqual([event["code"] for event in events if event.get("uri", "").endswith("requestType=RS")], [400])
        lossy = {"contentType": "application/dicom", "transferSyntax": "1.2.840.10008.1.2.4.51"}
        best = yield self.wado(**lossy)
        worst = yield self.wado(**lossy, imageQuality="5")
        self.assertEqual((best.code, worst.code), (200, 200))
        self.assertLess(len(worst.body), len(best.body) / 2)

    @defer.inlineCallbacks
    def test_refusals(self):
        for parameters, code, why in [
                ({"contentType": "video/mpeg"}, 406, "cannot answer contentType"),
                ({"contentType": "application/dicom", "transferSyntax": "1.2.3"}, 406, "cannot send transferSyntax"),
                ({"anonymize": "yes"}, 400, "anonymize is only for contentType application/dicom"),
                ({"anonymize": "no", "contentType": "application/dicom"}, 400, "anonymize must be yes"),
                ({"frameNumber": "0"}, 400, "frameNumber must be from 1"),
                ({"frameNumber": "2"}, 422, "the object has 1 frame(s), numbered from 1: there is no frame 2"),
                ({"rows": "x"}, 400, "rows must be")]:
            answer = yield self.wado(**parameters)
            self.assertEqual(answer.code, code, (parameters, answer.text))
            self.assertIn(why, answer.text)
        for wrong in ({"seriesUID": "1.2.3"}, {"studyUID": "1.2.3"}):
            answer = yield get(self.resource, **{"requestType": "WADO", "studyUID": self.ct.StudyInstanceUID,
                                                 "seriesUID": self.ct.SeriesInstanceUID,
                                                 "objectUID": self.ct.SOPInstanceUID, **wrong})
            self.assertEqual(answer.code, 404)
        answer = yield get(self.resource, requestType="WADO", objectUID=self.ct.SOPInstanceUID)
        self.assertEqual(answer.code, 400)
        self.assertIn("studyUID must be a UID", answer.text)

    @defer.inlineCallbacks
    def test_missingFile(self):
        """The index names a file that is gone: a 404, the path only in the log."""
        path = [os.path.join(folder, name) for folder, _, names in os.walk(self.running.archive.devices[0].path)
                for name in names if name.endswith(".dcm")][0]
        os.remove(path)
        answer = yield self.wado()
        self.assertEqual(answer.code, 404)
        self.assertIn("the stored file cannot be read", answer.text)
        self.assertNotIn(path, answer.text)


class ZipTests(WebTestCase):

    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 2, "imagesPerSeries": 3}

    @defer.inlineCallbacks
    def test_studyAndSeries(self):
        image = self.corpus[0]
        for parameters, count in (({"mode": "zipstudy", "study": f"{image.patientID}:{image.studyUID}"}, 6),
                                  ({"mode": "zipseries", "series": f":{image.seriesUID}", "dum": ".zip"}, 3)):
            answer = yield get(self.resource, **parameters)
            self.assertEqual(answer.headers["content-type"], "application/zip")
            with zipfile.ZipFile(io.BytesIO(answer.body)) as zipped:
                names = zipped.namelist()
                self.assertEqual(len(names), count)
                received = {pydicom.dcmread(zipped.open(name)).SOPInstanceUID for name in names}
        self.assertEqual(received, {i.sopUID for i in self.corpus if i.seriesUID == image.seriesUID})
        missing = yield get(self.resource, mode="zipstudy", study=":1.2.3")
        self.assertEqual(missing.code, 404)

    @defer.inlineCallbacks
    def test_vanishedFile(self):
        """Stored files gone before the zip is begun: a 404 page."""
        for path in self.running.files():
            os.remove(path)
        answer = yield get(self.resource, mode="zipstudy", study=f":{self.corpus[0].studyUID}")
        self.assertEqual(answer.code, 404)
        self.assertIn("a stored file cannot be read", answer.text)


class DamagedRequestTests(WebTestCase):
    """Seeded random damage to the query strings of valid requests: every
    answer is a page or a 4xx, never a 500 (an internal error)."""

    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 2}
    COUNT = 400

    @defer.inlineCallbacks
    def test_damagedQueries(self):
        image = self.corpus[0]
        valid = [
            "mode=querypatients&patientidmatch=PAT&patientnamematch=Test",
            "mode=querystudies&studydatematch=20240101-20241231",
            f"mode=queryseries&query=DICOMStudies.PatientID+%3D+%27{image.patientID}%27+and+"
            f"DICOMSeries.StudyInstanceUID+%3D+%27{image.studyUID}%27",
            f"mode=queryallimages&query=DICOMSeries.SeriesInstanceUID+like+%27{image.seriesUID[:10]}%25%27&max=5",
            f"mode=slice&slice={image.patientID}:{image.sopUID}&size=32&graphic=gif&lw=100/200/0",
            f"mode=sliceviewer&slice=:{image.sopUID}&lw=1/2/0",
            f"mode=dicom&slice=:{image.sopUID}&compress=j2&dsize=16",
            f"mode=zipseries&series={image.patientID}:{image.seriesUID}",
            f"mode=serversideviewer&series={image.patientID}:{image.seriesUID}&n=2&lw=40/400/0",
            f"mode=seriesfinder&study=:{image.studyUID}",
            f"requestType=WADO&studyUID={image.studyUID}&seriesUID={image.seriesUID}&objectUID={image.sopUID}"
            "&contentType=image/png&rows=16&windowCenter=40&windowWidth=400&frameNumber=1",
            f"requestType=WADO&studyUID={image.studyUID}&seriesUID={image.seriesUID}&objectUID={image.sopUID}"
            "&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2.4.70",
            "mode=editrecord&query=AccessionN+%3D+%27A1%27",
        ]
        rng = random.Random(20261203)
        codes = collections.Counter()
        for n in range(self.COUNT):
            query = mutated(rng, valid[n % len(valid)].encode())
            answer = yield getQuery(self.resource, query)
            self.assertLess(answer.code, 500, (query, answer.body[:500]))
            codes[answer.code] += 1
        self.assertGreater(codes[200], self.COUNT // 10)
        self.assertGreater(codes[400] + codes[404], self.COUNT // 10)


class FramingTests(DicomWebTestCase):
    """Which answers of the site pages of other sites may frame (clickjacking)."""

    ini = {"WebReadOnly": "0"}
    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 1}
    framedHere = ("SAMEORIGIN", "frame-ancestors 'self'")

    @defer.inlineCallbacks
    def framing(self, address):
        """``(X-Frame-Options, Content-Security-Policy)`` of the site's answer to ``address``."""
        answer = yield self.fetch(self.root + address)
        return answer.header("x-frame-options"), answer.header("content-security-policy")

    @defer.inlineCallbacks
    def test_pagesFramedByThisServerAlone(self):
        """A page with a button that deletes or moves a study, any other
        page, an error page: only pages of this server may frame them."""
        image = self.corpus[0]
        for query in (f"mode=studydeleter&study={image.patientID}:{image.studyUID}",
                      f"mode=studymover&study={image.patientID}:{image.studyUID}", "mode=top", "mode=nosuchpage"):
            framing = yield self.framing(f"/cgi-bin/dgate?{query}")
            self.assertEqual(framing, self.framedHere, query)
        framing = yield self.framing("/nothing/here")
        self.assertEqual(framing, self.framedHere)

    @defer.inlineCallbacks
    def test_misdirectedPageFramedHereAlone(self):
        """The 421 for a host name this server does not answer for is an
        answer for a page like any other."""
        answer = yield self.fetch(self.root + "/cgi-bin/dgate?mode=studydeleter", headers=[("host", "evil.example")])
        self.assertEqual((answer.code, answer.header("x-frame-options"), answer.header("content-security-policy")),
                         (421, *self.framedHere))

    @defer.inlineCallbacks
    def test_dicomWebAndWadoFramedAnywhere(self):
        """Viewers may embed DICOMweb and WADO answers (no buttons in them)."""
        image = self.corpus[0]
        wado = f"requestType=WADO&studyUID={image.studyUID}&seriesUID={image.seriesUID}&objectUID={image.sopUID}"
        for address in ("/dicom-web/studies", f"/wado?{wado}", f"/cgi-bin/dgate?{wado}"):
            framing = yield self.framing(address)
            self.assertEqual(framing, (None, None), address)

    @defer.inlineCallbacks
    def test_scriptedPageSetsItsOwn(self):
        """A scripted page a RIS portal of another site frames names it in
        a Content-Security-Policy header line of its own."""
        ini = self.running.archive.configuration.ini
        ini.set("header", "Content-type: text/html\\Content-Security-Policy: frame-ancestors 'self' https://ris.example",
                section="forris")
        ini.set("line0", "<p>for the RIS</p>", section="forris")
        framing = yield self.framing("/cgi-bin/dgate?mode=forris")
        self.assertEqual(framing, ("SAMEORIGIN", "frame-ancestors 'self' https://ris.example"))
