"""Tests for pacscore.web.forms: POSTed forms read from the body file (in
the I/O pool), over real HTTP through the site."""

import io

from pydicom.data import get_testdata_file
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.web.forms import readForm
from tests.pacscore.web.dicomweb.client import DicomWebTestCase
from tests.pacscore.web.pages import formBody

CT = get_testdata_file("CT_small.dcm")


class ReadFormTests(unittest.TestCase):

    def test_urlencoded(self):
        contentType, body = formBody({"mode": "saverecord", "PatientName": "Caf\u00e9^Olé", "empty": ""})
        fields, uploads = readForm(io.BytesIO(body), contentType)
        self.assertEqual(fields, {b"mode": [b"saverecord"], b"PatientName": ["Caf\u00e9^Olé".encode()],
                                  b"empty": [b""]})
        self.assertEqual(uploads, {})

    def test_multipart(self):
        """Fields in memory; files as views of the body, byte for byte (CR LFs and
        boundary-like bytes inside kept)."""
        content = b"\r\n--not-the-boundary\r\n\x00\xff" * 1000
        contentType, body = formBody({"mode": "addlocalfile", "filetoupload": content, "caf\u00e9": "1"})
        body = body.replace(b'filename="filetoupload.bin"', 'filename="sc\u00e4n.dcm"'.encode())
        fields, uploads = readForm(io.BytesIO(body), contentType + "; charset=utf-8")
        self.assertEqual(fields, {b"mode": [b"addlocalfile"], "caf\u00e9".encode(): [b"1"]})
        [upload] = uploads[b"filetoupload"]
        self.assertEqual((upload.filename, upload.size, upload.file.read()), ("sc\u00e4n.dcm", len(content), content))

    def test_malformed(self):
        contentType, body = formBody({"filetoupload": b"x" * 100})
        for brokenType, brokenBody, message in (
                ("multipart/form-data", body, "without a boundary"),
                (contentType, body[:-30], "has no closing boundary"),
                (contentType, b"nothing like a form", "has no boundary"),
                ("application/x-www-form-urlencoded", b"a=" + b"x" * (2 << 20), "larger than 1 MB")):
            self.assertRaisesRegex(ValueError, message, readForm, io.BytesIO(brokenBody), brokenType)


class PostedFormTests(DicomWebTestCase):
    """Forms POSTed over HTTP to a site that may change the archive."""

    ini = {"WebReadOnly": "0"}

    @defer.inlineCallbacks
    def test_uploadAndBadForms(self):
        with open(CT, "rb") as f:
            contentType, body = formBody({"filetoupload": f.read()})
        url = f"{self.root}/cgi-bin/dgate?mode=addlocalfile"
        uploaded = yield self.fetch(url, b"POST", body=body, contentType=contentType)
        self.assertEqual(uploaded.code, 200, uploaded.body)
        self.assertIn(b"stored as", uploaded.body)
        for brokenType, brokenBody in ((contentType, body[:-40]), ("multipart/form-data", body)):
            refused = yield self.fetch(url, b"POST", body=brokenBody, contentType=brokenType)
            self.assertEqual(refused.code, 400)
            self.assertIn(b"the form cannot be read", refused.body)
        contentType, body = formBody({"mode": "querypatients"})
        found = yield self.fetch(f"{self.root}/cgi-bin/dgate?mode=top", b"POST", body=body, contentType=contentType)
        self.assertIn(b"patients</caption>", found.body)  # the form's mode replaced the address's


class FormPartsCapTests(DicomWebTestCase):
    """A multipart form takes at most ``DICOMwebMaxParts`` parts, as a
    STOW-RS body does: a form of a million tiny parts is no million Uploads."""

    ini = {"WebReadOnly": "0", "DICOMwebMaxParts": "3"}

    @defer.inlineCallbacks
    def test_tooManyPartsRefusedWhole(self):
        """Four parts are a 413 with a log line, none of the files stored;
        three are taken."""
        with open(CT, "rb") as f:
            ct = f.read()
        url = f"{self.root}/cgi-bin/dgate?mode=addlocalfile"
        files = len(self.running.files())
        contentType, body = formBody({"mode": "addlocalfile", "filetoupload": [ct, b"x", b"y"]})
        with capturedLogs() as events:
            refused = yield self.fetch(url, b"POST", body=body, contentType=contentType)
        self.assertEqual(refused.code, 413, refused.body)
        self.assertIn(b"the form cannot be read: the body has more than 3 parts (DICOMwebMaxParts)", refused.body)
        self.assertEqual(len(self.running.files()), files)
        [line] = [formatEvent(event) for event in events if event.get("code") == 413]
        self.assertIn("/cgi-bin/dgate?mode=addlocalfile: 413", line)
        contentType, body = formBody({"mode": "addlocalfile", "filetoupload": [ct], "note": "three parts"})
        uploaded = yield self.fetch(url, b"POST", body=body, contentType=contentType)
        self.assertEqual(uploaded.code, 200, uploaded.body)
        self.assertIn(b"stored as", uploaded.body)
