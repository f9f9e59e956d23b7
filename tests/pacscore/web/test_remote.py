"""Tests for pacscore.web.remote: the finder pages asking another real
archive over DICOM (and this one), and the push pages sending studies and
series both ways."""

import os
import re

import pydicom
from pydicom.data import get_testdata_file
from twisted.internet import defer
from twisted.trial import unittest

from pacscore.control.data import AddImageFile
from pacscore.testing.corpus import CorpusImage, generateCorpus, makeDataset
from pydicom.uid import generate_uid
from tests.pacscore.web.pages import dgate, get, post
from tests.pacscore.control.running import RunningArchive


class RemoteTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.here = RunningArchive(self, ae="HERE", listen=True)
        self.there = RunningArchive(self, ae="THERE", listen=True)
        self.here.know(self.there)
        self.there.know(self.here)
        self.corpus = generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=1,
                                     seriesPerStudy=2, imagesPerSeries=2, namePrefix="Far")
        yield self.there.store(self.corpus)
        self.resource = dgate(self.here)

    @defer.inlineCallbacks
    def test_findersDownToImages(self):
        patients = yield get(self.resource, mode="patientfinder", dest="THERE", query="far")
        self.assertIn("<caption>2 patients on THERE</caption>", patients.text)
        studies = yield get(self.resource, patients.links()[0])
        self.assertIn("<caption>1 studies on THERE</caption>", studies.text)
        series = yield get(self.resource, studies.links()[0])
        self.assertIn("<caption>2 series on THERE</caption>", series.text)
        images = yield get(self.resource, series.links()[0])
        self.assertIn("<caption>2 images on THERE</caption>", images.text)
        self.assertNotIn("sliceviewer", images.text)  # not stored here
        nobody = yield get(self.resource, mode="patientfinder", dest="THERE", query="nobody")
        self.assertIn("<caption>0 patients on THERE</caption>", nobody.text)

    @defer.inlineCallbacks
    def test_emptyPatientIDOnAnotherArchive(self):
        """The "(no ID)" link asks the other archive for the Patient ID
        ``""``, which one doing Empty Value Matching reads as the empty ID."""
        yield self.there.run(AddImageFile(), get_testdata_file("test-SR.dcm"))
        patients = yield get(self.resource, mode="patientfinder", dest="THERE", query="Test")
        [studyFinder] = [link for link in patients.links() if "mode=studyfinder" in link]
        self.assertEqual(studyFinder, "/cgi-bin/dgate?mode=studyfinder&dest=THERE&emptyid=1")
        studies = yield get(self.resource, studyFinder)
        self.assertIn("<caption>1 studies on THERE</caption>", studies.text)
        self.assertIn("Test^S R", studies.text)

    @defer.inlineCallbacks
    def test_findersCut(self):
        """The finders list the first ``max`` (MOST_ROWS by default) matches
        and say there are more: a remote C-FIND is cancelled once one more
        came, the local index is asked for no more; the page is made in the
        I/O pool."""
        workers = self.here.archive.workers
        made = []
        toWorker = workers.deferToWorker
        self.patch(workers, "deferToWorker", lambda f, *args: made.append(f.__name__) or toWorker(f, *args))
        cut = " (the first 1 shown; max=N shows more)</caption>"
        patients = yield get(self.resource, mode="patientfinder", dest="THERE", query="far", max="1")
        self.assertIn("<caption>more than 1 patients on THERE" + cut, patients.text)
        self.assertEqual(patients.text.count("mode=studyfinder"), 1)
        series = yield get(self.resource, mode="seriesfinder", dest="THERE", query="", max="3")
        self.assertIn("<caption>more than 3 series on THERE (the first 3 shown", series.text)
        self.assertEqual(series.text.count("mode=imagefinder"), 3)
        whole = yield get(self.resource, mode="seriesfinder", dest="THERE", query="", max="4")
        self.assertIn("<caption>4 series on THERE</caption>", whole.text)
        self.assertIn("_patientsPage", made)
        self.assertIn("_seriesPage", made)
        yield self.here.store(self.corpus)
        query = self.here.archive.query
        read = []
        find = query.find
        self.patch(query, "find", lambda *args, **kw: read.append(len(find(*args, **kw))) or find(*args, **kw))
        studies = yield get(self.resource, mode="studyfinder", dest="(local)", query="", max="1")
        self.assertIn("<caption>more than 1 studies on (local)" + cut, studies.text)
        self.assertEqual(read, [2])
        self.assertEqual(made[-1], "_studiesPage")

    @defer.inlineCallbacks
    def test_localFinders(self):
        yield self.here.store(self.corpus[:1])
        images = yield get(self.resource, mode="imagefinder",
                           series=f"{self.corpus[0].patientID}:{self.corpus[0].seriesUID}")
        self.assertIn("<caption>1 images on (local)</caption>", images.text)
        self.assertIn("mode=sliceviewer", images.text)
        plan = pydicom.dcmread(get_testdata_file("rtplan.dcm"))
        yield self.here.run(AddImageFile(), get_testdata_file("rtplan.dcm"))
        plans = yield get(self.resource, mode="imagefinder", series=f":{plan.SeriesInstanceUID}")
        self.assertEqual([link for link in plans.links() if "slice=" in link],
                         [f"/cgi-bin/dgate?mode=headerdump&slice=id00001%3A{plan.SOPInstanceUID}"])
        conquests = yield get(self.resource, mode="imagefinder", dest="(local)", query=f"={plan.SeriesInstanceUID}")
        self.assertEqual(conquests.text, plans.text)  # the link of Conquest's seriesfinder

    @defer.inlineCallbacks
    def test_imageFinderInNumberOrder(self):
        """The imagefinder lists a series' images in InstanceNumber order
        (by value, an image without a number last), as ``dgate
        --imagelister:`` does, whatever order they were stored in, on this
        archive and on another."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        studyUID, seriesUID = generate_uid(), generate_uid()
        numbered = []
        for n, number in enumerate((3, 10, None, 1, 2)):
            ds = makeDataset("ORD", "Order^Test", studyUID, seriesUID, generate_uid(), 1, number or 1, seed=n)
            if number is None:
                del ds.InstanceNumber
            path = os.path.join(folder, f"{n}.dcm")
            ds.save_as(path, enforce_file_format=True)
            numbered.append((number, CorpusImage(path, "ORD", studyUID, seriesUID, ds.SOPInstanceUID)))
        images = [image for _, image in numbered]
        expected = [image.sopUID for _, image in sorted(numbered, key=lambda n: (n[0] is None, n[0] or 0))]
        yield self.here.store(images)
        yield self.there.store(images)
        for dest in ("(local)", "THERE"):
            page = yield get(self.resource, mode="imagefinder", dest=dest, series=f"ORD:{seriesUID}")
            self.assertEqual(sorted(expected, key=page.text.index), expected, dest)

    @defer.inlineCallbacks
    def test_seriesFinderSearches(self):
        """Without a study, the seriesfinder finds the series whose patient ID,
        name or description holds the text, or whose date is in it, as
        ``dgate --seriesfinder:`` does (open ranges ``-yyyymmdd``, ``yyyymmdd-``
        too); each row leads to its images and push page."""
        named = yield get(self.resource, mode="seriesfinder", dest="THERE", query="patient1")
        self.assertIn("<caption>2 series on THERE</caption>", named.text)
        self.assertEqual(named.text.count("<td>PAT0001</td>"), 2)
        described = yield get(self.resource, mode="seriesfinder", dest="THERE", query="Series 2")
        self.assertIn("<caption>2 series on THERE</caption>", described.text)
        self.assertEqual({described.text.count(f"<td>PAT000{p}</td>") for p in (0, 1)}, {1})
        dated = yield get(self.resource, mode="seriesfinder", dest="THERE", query="202401")
        self.assertIn("<caption>4 series on THERE</caption>", dated.text)
        yield self.there.redate("PAT0000", "20240101")
        for openRange, count in (("-20240102", 4), ("20240101-", 4), ("-20240101", 2), ("20240102-", 2),
                                 ("-20231231", 0), ("20240103-", 0)):
            dated = yield get(self.resource, mode="seriesfinder", dest="THERE", query=openRange)
            self.assertIn(f"<caption>{count} series on THERE</caption>", dated.text)
        images = yield get(self.resource, described.links()[0])
        self.assertIn("<caption>2 images on THERE</caption>", images.text)
        studies = {image.studyUID for image in self.corpus}
        self.assertEqual(len([link for link in described.links()
                              if "mode=seriesmover" in link and link.split("studyuid=")[1] in studies]), 2)
        yield self.here.store(self.corpus[:1])
        local = yield get(self.resource, mode="seriesfinder", dest="(local)", query="series 1")
        self.assertIn("<caption>1 series on (local)</caption>", local.text)

    @defer.inlineCallbacks
    def test_patientIDsHoldingWildcards(self):
        """A Patient ID holding ``*`` or ``?`` is that patient's: its studies
        are listed (and pushed) here and on another archive, whose C-FIND
        matches it as a wildcard, not those of WILD1 or QAZ; Conquest's
        ``query==ID`` alike, and ``query==`` with no ID is the user's 400."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        images = []
        for number, patientID in enumerate(("WILD*1", "WILD1", "Q?Z", "QAZ")):
            image = CorpusImage(os.path.join(folder, f"{number}.dcm"), patientID, *(generate_uid() for _ in range(3)))
            makeDataset(patientID, f"Name^{number}", image.studyUID, image.seriesUID, image.sopUID, 1, 1).save_as(
                image.path, enforce_file_format=True)
            images.append(image)
        yield self.here.store(images)
        yield self.there.store(images)
        for dest in ("(local)", "THERE"):
            for image in images:
                for asked in ({"patientid": image.patientID}, {"query": "=" + image.patientID}):
                    page = yield get(self.resource, mode="studyfinder", dest=dest, **asked)
                    self.assertIn(f"<caption>1 studies on {dest}</caption>", page.text, (dest, asked))
                    self.assertIn(f"<td>{image.patientID}</td>", page.text, (dest, asked))
                    self.assertIn(image.studyUID, page.text, (dest, asked))
        empty = yield get(self.resource, mode="studyfinder", dest="(local)", query="=")
        self.assertEqual(empty.code, 400, empty.text)
        self.assertIn("no ID or UID given", empty.text)

    @defer.inlineCallbacks
    def test_refusals(self):
        for parameters, code, why in [
                ({"mode": "patientfinder", "dest": "NOBODY"}, 400, "is not in acrnema.map"),
                ({"mode": "seriesfinder", "dest": "THERE", "study": "P:x"}, 400, "must be a UID"),
                ({"mode": "imagefinder", "dest": "THERE", "query": "far"}, 400, "give series=patid:uid"),
                ({"mode": "movestudy", "study": f":{self.corpus[0].studyUID}", "dest": "THERE"}, 405, "(POST)")]:
            page = yield get(self.resource, **parameters)
            self.assertEqual((page.code, why in page.text), (code, True), page.text)
            self.assertEqual(page.headers.get("allow"), "POST" if code == 405 else None)

    @defer.inlineCallbacks
    def test_pushBothWays(self):
        """From THERE to HERE (a C-MOVE THERE carries out: the push page of
        THERE's study offers HERE and acrnema.map's other AE, not THERE, as
        Conquest's), then a series back from HERE to a third archive
        (C-STOREs from here: its push page offers every AE but HERE)."""
        image = self.corpus[0]
        mover = yield get(self.resource, mode="studymover", source="THERE", study=f"{image.patientID}:{image.studyUID}")
        self.assertEqual(re.findall(r'value="Send to ([^"]*)"', mover.text), ["HERE", "CONQUESTSRV1"])
        moved = yield post(self.resource, mode="movestudy", source="THERE", dest="HERE",
                           study=f"{image.patientID}:{image.studyUID}")
        self.assertIn("4 object(s) moved from THERE to HERE", moved.text)
        self.assertEqual((yield self.here.count("image")), 4)
        third = RunningArchive(self, ae="THIRD", listen=True)
        self.here.know(third)
        mover = yield get(self.resource, mode="seriesmover", series=f"{image.patientID}:{image.seriesUID}",
                          studyuid=image.studyUID)
        self.assertEqual(sorted(re.findall(r'value="Send to ([^"]*)"', mover.text)), ["CONQUESTSRV1", "THERE", "THIRD"])
        sent = yield post(self.resource, mode="moveseries", dest="THIRD",
                          series=f"{image.patientID}:{image.seriesUID}", studyuid=image.studyUID)
        self.assertIn("2 object(s) sent to THIRD", sent.text)
        self.assertEqual((yield third.count("image")), 2)

    @defer.inlineCallbacks
    def test_pushPageOfASourceTypedInAnotherCase(self):
        """The finder's push links carry the AE as it was typed, which
        acrnema.map finds in any case: the push page leaves that source
        out all the same (THERE, not asked to move the study to itself;
        HERE, this archive, not offered to itself)."""
        study = f"{self.corpus[0].patientID}:{self.corpus[0].studyUID}"
        for source, offered in (("there", ["HERE", "CONQUESTSRV1"]), ("here", ["CONQUESTSRV1", "THERE"])):
            mover = yield get(self.resource, mode="studymover", source=source, study=study)
            self.assertEqual(sorted(re.findall(r'value="Send to ([^"]*)"', mover.text)), sorted(offered))

    @defer.inlineCallbacks
    def test_thePushesOfferedForASourceTypedInAnotherCaseWork(self):
        """The moves the push page offers take the source in any case, as
        the page does: from ``there`` a C-MOVE THERE carries out, from
        ``here``, this archive, C-STOREs from here (not an unknown AE)."""
        image = self.corpus[0]
        moved = yield post(self.resource, mode="movestudy", source="there", dest="HERE",
                           study=f"{image.patientID}:{image.studyUID}")
        self.assertIn("4 object(s) moved from there to HERE", moved.text)
        mover = yield get(self.resource, mode="seriesmover", source="here",
                          series=f"{image.patientID}:{image.seriesUID}", studyuid=image.studyUID)
        self.assertIn('value="Send to THERE"', mover.text)
        sent = yield post(self.resource, mode="moveseries", source="here", dest="THERE",
                          series=f"{image.patientID}:{image.seriesUID}", studyuid=image.studyUID)
        self.assertEqual(sent.code, 200, sent.text)
        self.assertIn("2 object(s) sent to THERE", sent.text)

    @defer.inlineCallbacks
    def test_pushOff(self):
        self.here.configuration.ini.set("WEBPush", "0")
        studies = yield get(self.resource, mode="studyfinder", dest="THERE")
        self.assertNotIn("push", studies.text)
        for page in ((yield get(self.resource, mode="studymover", study=f":{self.corpus[0].studyUID}")),
                     (yield post(self.resource, mode="movestudy", study=f":{self.corpus[0].studyUID}", dest="THERE"))):
            self.assertEqual(page.code, 403)
