"""``DicomWebTestCase``: a RunningArchive holding a generated corpus, its
web site listening on a free loopback port, and ``fetch`` through
twisted.web's Agent, so that answers cross real HTTP (chunked streams,
backpressure, cut connections); ``parts`` splits a multipart answer,
``xmlObjects`` reads its DICOM XML parts back as DICOM JSON;
``viewedColours`` shows a native colour frame as its metadata says."""

import io
import json
import warnings
from typing import NamedTuple
from xml.etree import ElementTree

import numpy as np
from pydicom.pixels import convert_color_space
from pydicom.pixels.utils import expand_ybr422
from twisted.internet import defer, reactor
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from pacscore.web.dicomweb import multipart
from pacscore.web.dicomweb.dicomxml import DICOM_XML, NAMESPACE, PERSON_NAME_COMPONENTS
from pacscore.web.site import webSite
from tests.pacscore.web.pages import WebTestCase


class Fetched(NamedTuple):
    code: int
    headers: Headers
    body: bytes

    def header(self, name):
        values = self.headers.getRawHeaders(name, [])
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)

    def parts(self):
        """``[(Content-Type, content)]`` of a multipart answer."""
        boundary = multipart.mediaType(self.header("content-type")).get("boundary")
        f = io.BytesIO(self.body)
        return [(part.headers.get("content-type"), self.body[part.start:part.end])
                for part in multipart.splitParts(f, boundary)]

    def xmlObjects(self):
        """The DICOM JSON objects (values as text: ``asText``) of the
        PS3.19 Native DICOM Model parts of a multipart DICOM XML answer."""
        assert self.header("content-type").startswith(f'multipart/related; type="{DICOM_XML}"; boundary=')
        parts = self.parts()
        assert all(kind == DICOM_XML for kind, _ in parts), parts
        return [_xmlObject(ElementTree.fromstring(content)) for _, content in parts]


def _native(element):
    """The name of an element of the Native DICOM Model."""
    return element.tag.removeprefix(f"{{{NAMESPACE}}}")


def _xmlObject(parent):
    """The DICOM JSON object of the DicomAttributes of ``parent``, values as text."""
    found = {}
    for attribute in parent:
        entry, values = {"vr": attribute.get("vr")}, {}
        for child in attribute:
            name, number = _native(child), int(child.get("number", 0))
            if name == "Item":
                values[number] = _xmlObject(child)
            elif name == "PersonName":
                values[number] = {_native(group): "^".join(
                    next((c.text for c in group if _native(c) == component), "")
                    for component in PERSON_NAME_COMPONENTS).rstrip("^") for group in child}
            elif name == "Value":
                values[number] = child.text
            elif name == "InlineBinary":
                entry["InlineBinary"] = child.text
            elif name == "BulkData":
                entry["BulkDataURI"] = child.get("uri")
        if values:
            entry["Value"] = [values.get(number) for number in range(1, max(values) + 1)]
        found[attribute.get("tag")] = entry
    return found


def asText(value):
    """A DICOM JSON value with its numbers as text, as DICOM XML holds them."""
    if isinstance(value, dict):
        return {name: asText(inner) for name, inner in value.items()}
    if isinstance(value, list):
        return [asText(inner) for inner in value]
    return value if value is None or isinstance(value, str) else str(value)


class DicomWebTestCase(WebTestCase):

    corpusShape = {"patients": 2, "studiesPerPatient": 1, "seriesPerStudy": 2, "imagesPerSeries": 2}

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        listening = reactor.listenTCP(0, self.site(), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.root = f"http://127.0.0.1:{listening.getHost().port}"
        self.base = f"{self.root}/dicom-web"
        self.archive = self.running.archive

    def site(self):
        """The site under test: the archive's web site."""
        return webSite(self.running.archive)

    @defer.inlineCallbacks
    def fetch(self, path, method=b"GET", accept=None, body=None, contentType=None, headers=()):
        """Fetched of ``path`` (a URL, or one under /dicom-web); ``headers``: more (name, value) to send."""
        headers = Headers({name: [value] for name, value in headers})
        if accept:
            headers.addRawHeader("accept", accept)
        if contentType:
            headers.addRawHeader("content-type", contentType)
        producer = None if body is None else FileBodyProducer(io.BytesIO(body))
        url = path if path.startswith("http") else self.base + path
        response = yield Agent(reactor).request(method, url.encode(), headers, producer)
        with warnings.catch_warnings():  # Twisted's, about its own client transport
            warnings.filterwarnings("ignore", "Using readBody with a transport", DeprecationWarning)
            data = yield readBody(response)
        return Fetched(response.code, response.headers, data)


def viewedColours(metadata, frame):
    """The RGB pixels (rows, columns, 3) a viewer shows of the native 8-bit
    colour ``frame`` as the DICOM JSON ``metadata`` of its object describes
    it, as cornerstone's WADO-RS loader converts them: by Photometric
    Interpretation (4:2:2 expanded, YCbCr made RGB; JPEG 2000's YBR_ICT
    and YBR_RCT taken as RGB) and Planar Configuration."""
    def value(tag):
        return metadata.get(tag, {}).get("Value", [None])[0]
    rows, columns, photometric = value("00280010"), value("00280011"), value("00280004")
    if photometric.endswith("_422"):
        frame = expand_ybr422(frame, 8)
    pixels = np.frombuffer(frame, np.uint8)
    if value("00280006") == 1:
        pixels = pixels.reshape(3, rows, columns).transpose(1, 2, 0)
    pixels = pixels.reshape(rows, columns, 3)
    return convert_color_space(pixels, "YBR_FULL", "RGB") if photometric.startswith("YBR_FULL") else pixels


def stowBody(*files, boundary="stow-boundary", kinds=None):
    """A STOW-RS body of the Part-10 files ``files`` (bytes)."""
    data = b""
    for number, content in enumerate(files):
        kind = kinds[number] if kinds else "application/dicom"
        data += multipart.partHeader(boundary, kind) + content + multipart.CRLF
    return data + multipart.closing(boundary)


STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=stow-boundary'
