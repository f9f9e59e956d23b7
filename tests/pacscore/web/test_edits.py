"""Tests for pacscore.web.edits: deleting studies and series and uploading
files through the web pages, only with WebReadOnly = 0 and only by POST."""

import os
import tempfile

from pydicom.data import get_testdata_file
from twisted.internet import defer

from pacscore.control.data import AddImageFile
from pacscore.testing.corpus import makeDataset
from pacscore.testing.orders import orderMessage
from tests.pacscore.web.pages import WebTestCase, get, post


class EditTests(WebTestCase):

    ini = {"WebReadOnly": "0"}
    corpusShape = {"patients": 1, "studiesPerPatient": 2, "seriesPerStudy": 2, "imagesPerSeries": 2}

    @defer.inlineCallbacks
    def test_aPatientIDWithAWildcardCharacter(self):
        """"A&B*3" is a Patient ID (LO allows * and ?): its study zips and
        deletes by the pages' own links, and only it."""
        ds = makeDataset("A&B*3", "Star^Patient", "1.2.826.0.1.3680043.8.498.9", "1.2.826.0.1.3680043.8.498.9.1",
                         "1.2.826.0.1.3680043.8.498.9.1.1", 1, 1)
        path = os.path.join(self.running.workdir, "star.dcm")
        ds.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        studies = yield get(self.resource, mode="querystudies")
        [zipLink] = [target for target in studies.links() if "mode=zipstudy&study=A%26B%2A3%3A" in target]
        zipped = yield get(self.resource, zipLink)
        self.assertEqual((zipped.code, zipped.headers["content-type"]), (200, "application/zip"))
        [deleter] = [target for target in studies.links() if "mode=studydeleter&study=A%26B%2A3%3A" in target]
        confirm = yield get(self.resource, deleter)
        self.assertIn('method="post"', confirm.text)
        deleted = yield post(self.resource, mode="deletestudy", study=f"A&B*3:{ds.StudyInstanceUID}")
        self.assertIn("1 object(s) removed from the server", deleted.text)
        self.assertEqual((yield self.running.count("image")), 8)

    @defer.inlineCallbacks
    def test_deleteStudyThenSeries(self):
        studies = yield get(self.resource, mode="querystudies")
        deleters = [target for target in studies.links() if "mode=studydeleter" in target]
        self.assertEqual(len(deleters), 2)
        confirm = yield get(self.resource, deleters[0])
        self.assertIn('method="post"', confirm.text)
        study = [image for image in self.corpus if image.studyUID in confirm.text][0]
        refused = yield get(self.resource, mode="deletestudy", study=f"{study.patientID}:{study.studyUID}")
        self.assertEqual((refused.code, refused.headers.get("allow")), (405, "POST"))
        self.assertEqual((yield self.running.count("image")), 8)
        deleted = yield post(self.resource, mode="deletestudy", study=f"{study.patientID}:{study.studyUID}")
        self.assertIn("4 object(s) removed from the server", deleted.text)
        self.assertEqual(((yield self.running.count("study")), (yield self.running.count("image"))), (1, 4))
        self.assertEqual(len(self.running.files()), 4)
        left = [image for image in self.corpus if image.studyUID != study.studyUID][0]
        deleted = yield post(self.resource, mode="deleteseries", series=f":{left.seriesUID}")
        self.assertIn("2 object(s) removed from the server", deleted.text)
        again = yield post(self.resource, mode="deleteseries", series=f":{left.seriesUID}")
        self.assertEqual(again.code, 422)
        self.assertIn("no stored object matches", again.text)

    @defer.inlineCallbacks
    def test_upload(self):
        top = yield get(self.resource)
        self.assertIn('enctype="multipart/form-data"', top.text)
        with open(get_testdata_file("CT_small.dcm"), "rb") as f:
            uploaded = yield post(self.resource, mode="addlocalfile", filetoupload=f.read())
        # one file answered as the other edits are, as before several could be uploaded
        self.assertIn('<p id="result">\n1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322 stored as', uploaded.text)
        self.assertNotIn("<li>", uploaded.text)
        self.assertEqual((yield self.running.count("image")), 9)
        order = orderMessage("MSG1", "ACC1", "WL1", "Upload^Test")
        uploaded = yield post(self.resource, mode="addlocalfile", filetoupload=order)
        self.assertEqual(uploaded.code, 200, uploaded.text)
        self.assertIn('<p id="result">\nmessage 1: ', uploaded.text)
        self.assertEqual((yield self.running.count("worklist")), 1)
        for content, code in ((b"", 400), (b"not DICOM at all", 422)):
            refused = yield post(self.resource, mode="addlocalfile", filetoupload=content)
            self.assertEqual(refused.code, code, refused.text)
        self.assertIn("filetoupload.bin is not a readable DICOM object", refused.text)  # not the temporary copy
        self.assertNotIn("pacs-upload-", refused.text)
        self.assertEqual([name for name in os.listdir(tempfile.gettempdir())
                          if name.startswith("pacs-upload-")], [])

    @defer.inlineCallbacks
    def test_uploadOfSeveralFiles(self):
        """Several filetoupload parts (``<input multiple>``): each is stored
        and named on the page; one that is not stored makes the answer a
        422 that names it and why, and the others are stored all the same."""
        files = []
        for number in (1, 2):
            ds = makeDataset("MULTI", "Multi^Upload", f"1.2.826.0.1.3680043.8.498.7{number}",
                             f"1.2.826.0.1.3680043.8.498.7{number}.1", f"1.2.826.0.1.3680043.8.498.7{number}.1.1", 1, 1)
            path = os.path.join(self.running.workdir, f"multi{number}.dcm")
            ds.save_as(path, enforce_file_format=True)
            with open(path, "rb") as f:
                files.append(f.read())
        uploaded = yield post(self.resource, mode="addlocalfile", filetoupload=files)
        self.assertEqual(uploaded.code, 200, uploaded.text)
        for number in (1, 2):
            self.assertIn(f"filetoupload{number}.bin: 1.2.826.0.1.3680043.8.498.7{number}.1.1 stored as", uploaded.text)
        self.assertEqual((yield self.running.count("image")), 10)
        refused = yield post(self.resource, mode="addlocalfile", filetoupload=[b"not DICOM at all", files[0], b""])
        self.assertEqual(refused.code, 422, refused.text)
        self.assertIn("2 of 3 uploaded files not stored", refused.text)
        self.assertIn("filetoupload1.bin is not a readable DICOM object", refused.text)
        self.assertIn("filetoupload2.bin: 1.2.826.0.1.3680043.8.498.71.1.1 stored as", refused.text)
        self.assertIn("filetoupload3.bin: an empty file", refused.text)
        self.assertNotIn("pacs-upload-", refused.text)
        self.assertEqual((yield self.running.count("image")), 10)
        emptyFirst = yield post(self.resource, mode="addlocalfile", filetoupload=[b"", files[0]])
        self.assertEqual(emptyFirst.code, 422, emptyFirst.text)
        self.assertIn("filetoupload1.bin: an empty file, not stored", emptyFirst.text)

    @defer.inlineCallbacks
    def test_uploadHL7AsLoadHL7TakesIt(self):
        """HL7 files that ``--loadhl7:`` applies are applied when uploaded,
        not read as DICOM: after a UTF-8 byte order mark, in MLLP framing,
        as a batch file (FHS, BHS ... BTS, FTS)."""
        orders = [orderMessage(f"MSG{n}", f"ACC{n}", "WL1", "Upload^Test") for n in range(1, 4)]
        files = [b"\xef\xbb\xbf" + orders[0],
                 b"\x0b" + orders[1] + b"\x1c\r",
                 b"FHS|^~\\&|RIS\rBHS|^~\\&|RIS\r" + orders[2] + b"\rBTS|1\rFTS|1\r"]
        for count, content in enumerate(files, 1):
            uploaded = yield post(self.resource, mode="addlocalfile", filetoupload=content)
            self.assertEqual(uploaded.code, 200, uploaded.text)
            self.assertIn("message 1: AA", uploaded.text)
            self.assertEqual((yield self.running.count("worklist")), count)


class ReadOnlyTests(WebTestCase):

    @defer.inlineCallbacks
    def test_nothingChanges(self):
        """Conquest's default WebReadOnly = 1: no links, no forms, 403s."""
        image = self.corpus[0]
        for page in ((yield get(self.resource)), (yield get(self.resource, mode="querystudies")),
                     (yield get(self.resource, mode="queryseries"))):
            self.assertNotIn("deleter", page.text)
            self.assertNotIn("multipart", page.text)
        for answer in ((yield get(self.resource, mode="studydeleter", study=f":{image.studyUID}")),
                       (yield post(self.resource, mode="deletestudy", study=f":{image.studyUID}")),
                       (yield post(self.resource, mode="deleteseries", series=f":{image.seriesUID}")),
                       (yield post(self.resource, mode="addlocalfile", filetoupload=b"x"))):
            self.assertEqual(answer.code, 403)
            self.assertIn("read-only (WebReadOnly = 1)", answer.text)
        self.assertEqual((yield self.running.count("image")), 1)


class WebWritersTests(WebTestCase):
    """WebWriters: only the users it lists may change the archive."""

    ini = {"WebReadOnly": "0", "WebWriters": "alice, carol"}
    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 2}

    @defer.inlineCallbacks
    def test_onlyWritersChange(self):
        study = self.corpus[0]
        reference = f"{study.patientID}:{study.studyUID}"
        for user, who in (("bob", "user bob"), (None, "a request without a login")):
            studies = yield get(self.resource, mode="querystudies", user=user)
            self.assertFalse([target for target in studies.links() if "mode=studydeleter" in target])
            self.assertNotIn("addlocalfile", (yield get(self.resource, user=user)).text)
            refused = yield post(self.resource, mode="deletestudy", study=reference, user=user)
            self.assertEqual(refused.code, 403)
            self.assertIn(f"{who} may not change the archive (WebWriters)", refused.text)
        self.assertEqual((yield self.running.count("image")), 2)
        studies = yield get(self.resource, mode="querystudies", user="carol")
        self.assertEqual(len([target for target in studies.links() if "mode=studydeleter" in target]), 1)
        self.assertIn("addlocalfile", (yield get(self.resource, user="carol")).text)
        deleted = yield post(self.resource, mode="deletestudy", study=reference, user="alice")
        self.assertIn("2 object(s) removed from the server", deleted.text)
