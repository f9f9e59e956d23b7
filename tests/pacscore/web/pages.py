"""Requests to the web resources of a RunningArchive, answered in the test
(twisted.web's DummyRequest, taking streamed answers as a connection
does), and what they answered; ``WebTestCase``, an
archive holding a generated corpus, with its ``/cgi-bin/dgate``."""

import io
import os
import re
from html import unescape
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
from twisted.internet import defer
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from pacscore.codecs import nkipixels
from pacscore.control.data import AddImageFile
from pacscore.control.registry import CommandRegistry
from pacscore.dicom.datasets import encodeDataset
from pacscore.storage.part10 import encodeFileMeta
from pacscore.testing.corpus import generateCorpus, makeDataset
from pacscore.web.answers import queryArgs
from pacscore.web.forms import URLENCODED
from pacscore.web.scripted import ScriptedPages
from pacscore.web.site import DgateResource
from tests.pacscore.control.running import RunningArchive


class Request(DummyRequest):
    """A DummyRequest that, like a connection that keeps up, never pauses
    a push producer (DummyRequest would call resumeProducing in a loop)."""

    def registerProducer(self, producer, streaming):
        if not streaming:
            return super().registerProducer(producer, streaming)
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None
        super().unregisterProducer()


PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
       b"3 0 obj<</Type/Page/MediaBox[0 0 200 200]/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF")


def encapsulatedPDF(patientID, studyUID, seriesUID, sopUID):
    """An Encapsulated PDF object holding PDF (padded to even length)."""
    dataset = makeDataset(patientID, "Pdf^Report", studyUID, seriesUID, sopUID, 1, 1, modality="DOC")
    del dataset.PixelData
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    for name in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                 "SamplesPerPixel", "PhotometricInterpretation"):
        if name in dataset:
            delattr(dataset, name)
    dataset.EncapsulatedDocument = PDF + b"\0"
    dataset.MIMETypeOfEncapsulatedDocument = "application/pdf"
    return dataset


def nkiObject(dataset, syntax, mode, bare=False):
    """The bytes of a file holding ``dataset`` in ``syntax``, its pixels NKI
    compressed in ``mode`` (as Conquest's n1..n4): Part-10, or with
    ``bare`` the data set alone, as Conquest writes a ``.v2``."""
    data = nkipixels.compressDataset(encodeDataset(dataset, syntax), syntax, mode)
    if bare:
        return data
    return encodeFileMeta(dataset.SOPClassUID, dataset.SOPInstanceUID, syntax, "1.2.3.4", "TEST") + data


def dgate(running, wadoOnly=False):
    """The ``/cgi-bin/dgate`` resource of a RunningArchive (``/wado`` with ``wadoOnly``)."""
    return DgateResource(running.archive, ScriptedPages(running.configuration, CommandRegistry()), wadoOnly)


class WebTestCase(unittest.TestCase):
    """``running``: a RunningArchive (``ae``, ``ini``) that stored ``corpus``,
    generated in the ``corpusShape``; ``resource``: its dgate."""

    ae = "PACS"
    ini = None
    webUsers = None  # {user: password} of the WebUsers file ini names
    corpusShape = {"patients": 1, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 1}

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ae=self.ae, ini=self.ini, webUsers=self.webUsers)
        self.corpus = generateCorpus(os.path.abspath(self.mktemp()), **self.corpusShape)
        yield self.running.store(self.corpus)
        self.resource = dgate(self.running)

    @defer.inlineCallbacks
    def storeMultiFrame(self, uids, frames, seed):
        """Store (``addimagefile``) patient BIG's object of ``frames`` random
        1024x512 16-bit frames with the study, series and SOP ``uids``;
        fires with (its data set, its stored file)."""
        ds = makeDataset("BIG", "Big^Object", *uids, 1, 1, rows=1024, columns=512)
        ds.NumberOfFrames = frames
        ds.PixelData = np.random.default_rng(seed).integers(0, 4096, (frames, 1024, 512), dtype=np.uint16).tobytes()
        source = os.path.join(self.running.workdir, "big.dcm")
        ds.save_as(source, enforce_file_format=True)
        yield self.running.run(AddImageFile(), source)
        stored, = (path for path in self.running.files() if "BIG" in path)
        return ds, stored


class Answered(NamedTuple):
    code: int
    headers: dict
    body: bytes

    @property
    def text(self):
        return self.body.decode("utf-8")

    def links(self):
        """The href targets of the page, unescaped, in order."""
        return [unescape(href) for href in re.findall(r'href="([^"]*)"', self.text)]

    def images(self):
        return [unescape(src) for src in re.findall(r'src="([^"]*)"', self.text)]


@defer.inlineCallbacks
def getQuery(resource, query):
    """GET with the query string ``query`` (bytes) as it came, parsed as the site parses it (``PacsRequest``)."""
    request = Request([])
    request.method = b"GET"
    request.uri = b"/cgi-bin/dgate?" + query
    request.path = b"/cgi-bin/dgate"
    request.prepath = [b"cgi-bin", b"dgate"]
    request.args = queryArgs(request.uri)
    finished = request.notifyFinish()
    resource.render(request)
    yield finished
    return Answered(request.responseCode or 200, {}, b"".join(request.written))


def formBody(parameters):
    """``(Content-Type, body)`` of a form of ``parameters``, as a browser
    POSTs it: multipart/form-data when a value is bytes (a file) or a list
    of bytes (files of one field: ``<input multiple>``), else URL-encoded."""
    if not any(isinstance(value, (bytes, list)) for value in parameters.values()):
        return URLENCODED, urlencode(parameters).encode()
    boundary = "----formboundary7MA4YWxkTrZu0gW"
    body = b""
    for name, value in parameters.items():
        files = [(f"{name}.bin", value)] if isinstance(value, bytes) else None
        if isinstance(value, list):
            files = [(f"{name}{number}.bin", content) for number, content in enumerate(value, 1)]
        if files is not None:
            for filename, content in files:
                body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                         "Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
        else:
            body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


@defer.inlineCallbacks
def post(resource, user=None, **parameters):
    """POST ``parameters`` as a form (its body read by the resource), as
    the WebUsers ``user`` when given."""
    request = Request([])
    if user is not None:
        request.webUser = user
    request.method = b"POST"
    request.uri = request.path = b"/cgi-bin/dgate"
    contentType, body = formBody(parameters)
    request.requestHeaders.setRawHeaders(b"content-type", [contentType.encode()])
    request.content = io.BytesIO(body)
    return (yield answered(resource, request))


@defer.inlineCallbacks
def get(resource, target=None, user=None, **parameters):
    """GET ``target`` (a URL whose query is the parameters) or
    ``parameters``, as the WebUsers ``user`` when given."""
    if target is not None:
        parameters = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
    request = getRequest(parameters)
    if user is not None:
        request.webUser = user
    return (yield answered(resource, request))


def getRequest(parameters):
    """A GET Request of ``/cgi-bin/dgate`` with the ``parameters`` (a dict of text)."""
    request = Request([])
    request.method = b"GET"
    request.uri = b"/cgi-bin/dgate?" + urlencode(parameters).encode()
    request.path = b"/cgi-bin/dgate"
    request.prepath = [b"cgi-bin", b"dgate"]
    request.args = {name.encode(): [value.encode()] for name, value in parameters.items()}
    return request


@defer.inlineCallbacks
def answered(resource, request):
    """The Answered of ``resource`` to ``request``."""
    finished = request.notifyFinish()
    resource.render(request)
    yield finished
    headers = {name.decode().lower(): values[0].decode() for name, values in request.responseHeaders.getAllRawHeaders()}
    return Answered(request.responseCode or 200, headers, b"".join(request.written))
