"""STOW-RS over HTTP: objects stored as C-STOREs are (on disk and in the
index before the answer), the answer's references and failures, and the
requests refused whole."""

import io
import os
from xml.etree import ElementTree

import pydicom
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent

from pacscore.storage.part10 import MEDIA_STORAGE_SOP_CLASS_UID, encodeFileMeta, readFileMeta
from pacscore.testing.corpus import generateCorpus
from pacscore.web.objects import storedPath
from tests.pacscore.web.dicomweb.client import STOW_TYPE, DicomWebTestCase, stowBody


NATIVE_DICOM = "http://dicom.nema.org/PS3.19/models/NativeDICOM"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def sequence(answer, tag):
    return answer.get(tag, {}).get("Value", [])


class StoreTests(DicomWebTestCase):

    ini = {"WebAllowOrigins": "*"}  # every answer, an error too, readable by pages of every origin

    def newImages(self, **shape):
        return generateCorpus(os.path.abspath(self.mktemp()), **{"patients": 1, "studiesPerPatient": 1,
                                                                 "seriesPerStudy": 1, "imagesPerSeries": 2, **shape})

    @defer.inlineCallbacks
    def stored(self, sop):
        path = yield storedPath(self.archive, sop)
        return pydicom.dcmread(path)

    @defer.inlineCallbacks
    def test_store(self):
        images = self.newImages()
        found = yield self.fetch("/studies", method=b"POST", body=stowBody(*(read(i.path) for i in images)),
                                 contentType=STOW_TYPE)
        self.assertEqual(found.code, 200)
        answer = found.json()
        self.assertEqual(sequence(answer, "00081190"), [f"{self.base}/studies/{images[0].studyUID}"])
        references = sequence(answer, "00081199")
        self.assertEqual([r["00081155"]["Value"][0] for r in references], [i.sopUID for i in images])
        self.assertNotIn("00081198", answer)
        for image, reference in zip(images, references):
            self.assertEqual((yield self.stored(image.sopUID)), pydicom.dcmread(image.path))
            fetched = yield self.fetch(reference["00081190"]["Value"][0])
            self.assertEqual(len(fetched.parts()), 1)
        studies = (yield self.fetch("/studies")).json()
        self.assertEqual(len(studies), 3)

    @defer.inlineCallbacks
    def test_someRefused(self):
        images = self.newImages()
        other = self.newImages()[0]
        body = stowBody(read(images[0].path), read(other.path), b"not DICOM at all" * 20, read(images[1].path),
                        kinds=["application/dicom", "application/dicom", "application/dicom", "text/plain"])
        found = yield self.fetch(f"/studies/{images[0].studyUID}", method=b"POST", body=body, contentType=STOW_TYPE)
        self.assertEqual(found.code, 202)
        answer = found.json()
        self.assertEqual([r["00081155"]["Value"][0] for r in sequence(answer, "00081199")], [images[0].sopUID])
        reasons = [(f.get("00081155", {}).get("Value", [""])[0], f["00081197"]["Value"][0])
                   for f in sequence(answer, "00081198")]
        self.assertEqual(reasons, [(other.sopUID, 0xA900)])  # the parts that name no object are not listed
        found = (yield self.fetch(f"/studies?StudyInstanceUID={other.studyUID}")).json()
        self.assertEqual(found, [])

    def changed(self, image, **meta):
        """The Part-10 bytes of ``image`` with the file meta (and SOP class) ``meta``, without its pixels."""
        dataset = pydicom.dcmread(image.path)
        del dataset.PixelData
        for name, value in meta.items():
            setattr(dataset.file_meta, name, value)
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
        written = io.BytesIO()
        dataset.save_as(written, enforce_file_format=True)
        return written.getvalue()

    @defer.inlineCallbacks
    def test_refusedAsCStoresAre(self):
        """A SOP class or transfer syntax dgatesop.lst does not list, which an
        association would refuse, is refused as not supported."""
        images = self.newImages(imagesPerSeries=3)
        unknownClass = self.changed(images[0], MediaStorageSOPClassUID="1.2.3.4.5.6.7.8.9")
        unknownSyntax = self.changed(images[1], TransferSyntaxUID="1.2.840.10008.1.2.4.92")
        found = yield self.fetch("/studies", method=b"POST", body=stowBody(unknownClass), contentType=STOW_TYPE)
        self.assertEqual(found.code, 409)
        found = yield self.fetch("/studies", method=b"POST", contentType=STOW_TYPE,
                                 body=stowBody(unknownClass, unknownSyntax, read(images[2].path)))
        self.assertEqual(found.code, 202)
        answer = found.json()
        reasons = [(f["00081155"]["Value"][0], f["00081197"]["Value"][0]) for f in sequence(answer, "00081198")]
        self.assertEqual(reasons, [(images[0].sopUID, 0x0122), (images[1].sopUID, 0xC122)])
        self.assertEqual([r["00081155"]["Value"][0] for r in sequence(answer, "00081199")], [images[2].sopUID])
        found = (yield self.fetch(f"/instances?StudyInstanceUID={images[0].studyUID}")).json()
        self.assertEqual([i["00080018"]["Value"] for i in found], [[images[2].sopUID]])

    @defer.inlineCallbacks
    def test_noneStored(self):
        images = self.newImages()
        damaged = read(images[0].path)[:-1000]
        found = yield self.fetch("/studies", method=b"POST", body=stowBody(damaged), contentType=STOW_TYPE)
        self.assertEqual(found.code, 409)
        (failure,) = sequence(found.json(), "00081198")
        self.assertEqual(failure["00081155"]["Value"], [images[0].sopUID])
        self.assertEqual(failure["00081197"]["Value"], [0xC000])

    @defer.inlineCallbacks
    def test_aDataSetCutShortEarlyIsNamedByItsFileMeta(self):
        """Cut 40 bytes into its data set, before its study and series: the
        file meta still says which object failed."""
        image = self.newImages()[0]
        with open(image.path, "rb") as f:
            _, meta, offset = readFileMeta(f)
        found = yield self.fetch("/studies", method=b"POST", body=stowBody(read(image.path)[:offset + 40]),
                                 contentType=STOW_TYPE)
        self.assertEqual(found.code, 409)
        (failure,) = sequence(found.json(), "00081198")
        self.assertEqual((failure["00081150"]["Value"], failure["00081155"]["Value"], failure["00081197"]["Value"]),
                         ([meta[MEDIA_STORAGE_SOP_CLASS_UID]], [image.sopUID], [0xC000]))

    @defer.inlineCallbacks
    def test_fileMetaUIDThatIsNoUID(self):
        """A part whose data set (and file meta) gives a SOP Instance UID
        with a byte that is no ASCII (the Part-10 header it is stored under
        could not be written) fails alone, A900, the others stored."""
        images = self.newImages()
        uid = images[0].sopUID.encode()
        damaged = read(images[0].path).replace(uid, uid[:-1] + b"\xe9")  # the file meta's and the data set's
        found = yield self.fetch("/studies", method=b"POST", body=stowBody(damaged, read(images[1].path)),
                                 contentType=STOW_TYPE)
        self.assertEqual(found.code, 202)
        answer = found.json()
        self.assertEqual([r["00081155"]["Value"][0] for r in sequence(answer, "00081199")], [images[1].sopUID])
        [failure] = sequence(answer, "00081198")
        self.assertEqual(failure["00081197"]["Value"], [0xA900])
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_staleFileMeta(self):
        """A part whose file meta names another SOP class and instance than
        its data set (not updated after an edit: pydicom's rtdose.dcm) is
        stored by its data set's, as storescu sends it and Orthanc stores
        it, under a file meta naming them, with a log line."""
        image = self.newImages()[0]
        dataset = pydicom.dcmread(image.path)
        with open(image.path, "rb") as f:
            syntax, _, offset = readFileMeta(f)
        stale = encodeFileMeta("1.2.3.5", "1.2.3.4", syntax, "1.2.3", "X") + read(image.path)[offset:]
        with capturedLogs() as events:
            found = yield self.fetch("/studies", method=b"POST", body=stowBody(stale), contentType=STOW_TYPE)
        self.assertEqual(found.code, 200)
        [reference] = sequence(found.json(), "00081199")
        self.assertEqual((reference["00081150"]["Value"], reference["00081155"]["Value"]),
                         ([dataset.SOPClassUID], [image.sopUID]))
        stored = yield self.stored(image.sopUID)
        self.assertEqual((stored.file_meta.MediaStorageSOPClassUID, stored.file_meta.MediaStorageSOPInstanceUID),
                         (dataset.SOPClassUID, image.sopUID))
        self.assertIn("STOW-RS: a part whose file meta names SOP Class 1.2.3.5 and Instance 1.2.3.4 is taken as SOP "
                      f"Class {dataset.SOPClassUID} and Instance {image.sopUID}, its data set's (the meta's where it "
                      "has none)", [formatEvent(e) for e in events])

    @defer.inlineCallbacks
    def test_staleFileMetaOfAPartRefused(self):
        """A part whose data set has no SOP Instance UID, its file meta
        naming another class: refused, its log lines say what identity it
        was taken for, and none that it was stored (one said "stored by its
        data set's" before it was refused)."""
        image = self.newImages()[0]
        dataset = pydicom.dcmread(image.path)
        del dataset.SOPInstanceUID
        out = io.BytesIO()
        dataset.save_as(out, enforce_file_format=False)
        syntax = dataset.file_meta.TransferSyntaxUID
        stale = encodeFileMeta("1.2.3.5", image.sopUID, syntax, "1.2.3", "X") + out.getvalue()[readFileMeta(
            io.BytesIO(out.getvalue()))[2]:]
        with capturedLogs() as events:
            found = yield self.fetch("/studies", method=b"POST", body=stowBody(stale), contentType=STOW_TYPE)
        self.assertEqual(found.code, 409)
        logged = [formatEvent(e) for e in events]
        self.assertIn("STOW-RS: a part whose file meta names SOP Class 1.2.3.5 and Instance "
                      f"{image.sopUID} is taken as SOP Class {dataset.SOPClassUID} and Instance {image.sopUID}, its "
                      "data set's (the meta's where it has none)", logged)
        self.assertEqual([line for line in logged if "stored" in line], [])

    @defer.inlineCallbacks
    def test_withoutPreamble(self):
        """A Part-10 stream without the preamble and DICM (pydicom's dcmwrite
        of a data set in memory, as dicomweb-client sends it) is stored as a
        Part-10 file with them; a bare data set is refused, named by its UIDs."""
        image = self.newImages()[0]
        dataset = pydicom.dcmread(image.path)
        dataset.preamble = None
        bare = io.BytesIO()
        dataset.save_as(bare, enforce_file_format=False)
        self.assertEqual(bare.getvalue()[:2], b"\x02\x00")  # group 0002 first: no preamble
        found = yield self.fetch("/studies", method=b"POST", body=stowBody(bare.getvalue()), contentType=STOW_TYPE)
        self.assertEqual(found.code, 200)
        path = yield storedPath(self.archive, image.sopUID)
        self.assertEqual(read(path)[128:132], b"DICM")
        self.assertEqual(pydicom.dcmread(path), dataset)
        del dataset.file_meta
        withoutMeta = io.BytesIO()
        dataset.save_as(withoutMeta, implicit_vr=True, enforce_file_format=False)
        found = yield self.fetch("/studies", method=b"POST", body=stowBody(withoutMeta.getvalue()),
                                 contentType=STOW_TYPE)
        self.assertEqual(found.code, 409)
        (failure,) = sequence(found.json(), "00081198")
        self.assertEqual((failure["00081150"]["Value"], failure["00081155"]["Value"], failure["00081197"]["Value"]),
                         ([dataset.SOPClassUID], [image.sopUID], [0xC000]))

    @defer.inlineCallbacks
    def test_refusedRequests(self):
        body = stowBody(read(self.corpus[0].path))
        for contentType, code in (("application/dicom", 415), ('multipart/related; type="application/dicom+json"; '
                                                                "boundary=stow-boundary", 415),
                                  ('multipart/related; type="application/dicom"', 400),
                                  ('multipart/related; type="application/dicom"; boundary=other', 400)):
            found = yield self.fetch("/studies", method=b"POST", body=body, contentType=contentType)
            self.assertEqual((contentType, found.code), (contentType, code))

    @defer.inlineCallbacks
    def test_answerAsAccepted(self):
        """The answer is DICOM JSON, JSON when preferred, DICOM XML (PS3.19
        A.1) when preferred (also as multipart/related, as Orthanc answers);
        DICOM JSON when the Accept header takes none of them: the objects
        are stored all the same."""
        images = self.newImages(imagesPerSeries=1, studiesPerPatient=7)
        for image, (accept, kind) in zip(images, (
                ("application/json", "application/json"),
                ("application/dicom+xml", "application/dicom+xml"),
                ('multipart/related; type="application/dicom+xml"', "application/dicom+xml"),
                ("application/dicom+xml;q=0.9, */*;q=0.1", "application/dicom+xml"),
                ("application/dicom+json;q=0, */*", "application/json"),
                ("image/png", "application/dicom+json"),
                ("application/dicom+json;q=0, application/json;q=0", "application/dicom+json"))):
            found = yield self.fetch("/studies", method=b"POST", body=stowBody(read(image.path)),
                                     contentType=STOW_TYPE, accept=accept)
            self.assertEqual((accept, found.code, found.header("content-type")), (accept, 200, kind))
            self.assertEqual(len((yield self.fetch(f"/studies?StudyInstanceUID={image.studyUID}")).json()), 1)
            if kind != "application/dicom+xml":
                self.assertEqual(sequence(found.json(), "00081190"), [f"{self.base}/studies/{image.studyUID}"])
                continue
            root = ElementTree.fromstring(found.body)
            self.assertEqual(root.tag, f"{{{NATIVE_DICOM}}}NativeDicomModel")
            url, references = root
            self.assertEqual((url.get("tag"), url.get("vr"), url.get("keyword")), ("00081190", "UR", "RetrieveURL"))
            self.assertEqual([(v.get("number"), v.text) for v in url], [("1", f"{self.base}/studies/{image.studyUID}")])
            self.assertEqual(references.get("keyword"), "ReferencedSOPSequence")
            [item] = references
            self.assertEqual((item.tag, item.get("number")), (f"{{{NATIVE_DICOM}}}Item", "1"))
            values = {a.get("keyword"): a.find(f"{{{NATIVE_DICOM}}}Value").text for a in item}
            self.assertEqual(values["ReferencedSOPInstanceUID"], image.sopUID)
            self.assertEqual(values["RetrieveURL"], f"{self.base}/studies/{image.studyUID}/series/"
                                                    f"{image.seriesUID}/instances/{image.sopUID}")

    @defer.inlineCallbacks
    def test_notForAPageOfAnotherSiteWithoutLogins(self):
        """A page elsewhere cannot make an intranet browser store objects
        (CSRF); pages of this server and non-browsers can."""
        image = self.newImages()[0]
        for headers, code in (([("sec-fetch-site", "cross-site")], 403),
                              ([("origin", "http://elsewhere.example")], 403),
                              ([("sec-fetch-site", "same-origin")], 200), ([], 200)):
            found = yield self.fetch("/studies", method=b"POST", body=stowBody(read(image.path)),
                                     contentType=STOW_TYPE, headers=headers)
            self.assertEqual((headers, found.code), (headers, code))
            self.assertEqual(found.header("access-control-allow-origin"), "*")


class StoreOffTests(DicomWebTestCase):
    ini = {"DICOMwebStore": "0"}

    @defer.inlineCallbacks
    def test_off(self):
        found = yield self.fetch("/studies", method=b"POST", body=stowBody(read(self.corpus[0].path)),
                                 contentType=STOW_TYPE)
        self.assertEqual(found.code, 403)
