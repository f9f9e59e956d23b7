"""Tests for pacscore.web.images: the pictures of every page (slices,
WADO-URI, WADO-RS rendered and thumbnails) are made ``WebMaxRenders`` at
a time, the others waiting their turn; the ``dicom`` page streams a file
it sends as it is stored."""

import io
import threading
from urllib.parse import urlsplit

import pydicom
from pydicom.data import get_testdata_file
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import globalLogPublisher

from pacscore.codecs.syntaxes import UNCOMPRESSED
from pacscore.control.data import AddImageFile
from pacscore.web import images
from pacscore.web.objectstream import CHUNK
from tests.pacscore.web.dicomweb.client import DicomWebTestCase
from tests.pacscore.web.pages import WebTestCase, answered, get, getRequest

RENDERS = 3  # fewer than the archive's four I/O threads


class HeldRenders(DicomWebTestCase):
    """Renders held until ``release`` is set, ``RENDERS`` at a time."""

    ini = {"WebMaxRenders": str(RENDERS)}

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.lock = threading.Lock()
        self.inside = self.most = self.rendered = 0
        self.release = threading.Event()
        self.addCleanup(self.release.set)  # before the archive stops: a failed test leaves no I/O thread waiting
        self.patch(images, "renderPicture", self.heldRender)

    def heldRender(self, path, write, *args):
        """A render that stays until ``release`` is set, counting those inside at once."""
        with self.lock:
            self.inside += 1
            self.rendered += 1
            self.most = max(self.most, self.inside)
        self.release.wait(30)
        with self.lock:
            self.inside -= 1
        return b"picture"

    @defer.inlineCallbacks
    def waitFor(self, condition, seconds=10):
        for _ in range(int(seconds / 0.01)):
            if condition():
                return
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.fail("the renders never started")


class RenderTurnTests(HeldRenders):

    @defer.inlineCallbacks
    def test_rendersTakeTurns(self):
        image = self.corpus[0]
        instance = f"/studies/{image.studyUID}/series/{image.seriesUID}/instances/{image.sopUID}"
        wado = (f"{self.root}/wado?requestType=WADO&studyUID={image.studyUID}&seriesUID={image.seriesUID}"
                f"&objectUID={image.sopUID}")
        paths = [f"{self.root}/cgi-bin/dgate?mode=slice&slice={image.patientID}:{image.sopUID}",
                 wado, wado + "&contentType=image/png", instance + "/rendered", instance + "/frames/1/rendered",
                 f"/studies/{image.studyUID}/thumbnail"]
        fetched = [self.fetch(path) for path in paths]
        yield self.waitFor(lambda: self.inside >= RENDERS)
        yield task.deferLater(reactor, 0.3, lambda: None)  # time for one more to come in, were it let
        self.assertEqual(self.inside, RENDERS)
        self.release.set()
        answers = yield defer.gatherResults(fetched)
        self.assertEqual([(found.code, found.body) for found in answers], [(200, b"picture")] * len(paths))
        self.assertEqual(self.most, RENDERS)


class _Leaving(protocol.Protocol):
    """A client that sends ``request`` and leaves when told (``leave``)."""

    def __init__(self, request):
        self.request = request

    def connectionMade(self):
        self.transport.write(self.request)

    def leave(self):
        self.transport.loseConnection()


class LeftClientTests(HeldRenders):

    ini = {"WebMaxRenders": "2"}

    @defer.inlineCallbacks
    def test_leftWhileWaiting(self):
        """With both turns taken, a picture whose client leaves while it waits is never rendered."""
        image = self.corpus[0]
        path = f"/cgi-bin/dgate?mode=slice&slice={image.patientID}:{image.sopUID}"
        turns = self.archive.webRenders.limit
        fetched = [self.fetch(self.root + path) for _ in range(turns)]
        yield self.waitFor(lambda: self.inside == turns)
        client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", urlsplit(self.root).port),
                                       _Leaving(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()))
        yield self.waitFor(lambda: self.archive.webRenders.waiting)
        client.leave()
        yield task.deferLater(reactor, 0.3, lambda: None)  # the server sees it gone
        self.release.set()
        answers = yield defer.gatherResults(fetched)
        self.assertEqual([found.code for found in answers], [200] * turns)
        yield self.waitFor(lambda: self.archive.webRenders.tokens == turns)  # the third had its turn
        self.assertEqual(self.rendered, turns)


class DicomDownloadTests(WebTestCase):

    @defer.inlineCallbacks
    def test_streamedAsStored(self):
        """A 50 MB multi-frame object goes out 1 MB at a time, the bytes of its file."""
        ds, stored = yield self.storeMultiFrame(("1.2.826.0.1.3680043.2.1125.7.1", "1.2.826.0.1.3680043.2.1125.7.2",
                                                  "1.2.826.0.1.3680043.2.1125.7.3"), 50, 3)
        request = getRequest({"mode": "dicom", "slice": "BIG:" + ds.SOPInstanceUID})
        found = yield answered(self.resource, request)
        with open(stored, "rb") as f:
            self.assertEqual((found.code, found.headers["content-type"], found.body), (200, "application/dicom", f.read()))
        self.assertGreater(len(request.written), len(ds.PixelData) // CHUNK)
        self.assertLessEqual(max(map(len, request.written)), CHUNK)

    @defer.inlineCallbacks
    def test_aCompressionTheImageCannotTakeIsLeftOut(self):
        """compress= a code the image cannot take (lossless JPEG or JPEG 2000
        of a 32-bit RT Dose, lossy JPEG of palette indices, JPEG of a 1-bit
        image) sends the object in its own syntax, with a log line, as a
        forward does: not a 422."""
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for name, code in (("rtdose.dcm", "j2"), ("rtdose.dcm", "jk"), ("examples_palette.dcm", "j3"),
                           ("liver_1frame.dcm", "j1")):
            source = get_testdata_file(name)
            yield self.running.run(AddImageFile(), source)
            ds = pydicom.dcmread(source)
            found = yield get(self.resource, mode="dicom", slice=f"{ds.PatientID}:{ds.SOPInstanceUID}", compress=code)
            self.assertEqual(found.code, 200, (name, code, found.body[:300]))
            sent = pydicom.dcmread(io.BytesIO(found.body))
            self.assertIn(sent.file_meta.TransferSyntaxUID, UNCOMPRESSED, (name, code))
            self.assertEqual((sent.SOPInstanceUID, sent.PixelData), (ds.SOPInstanceUID, ds.PixelData), (name, code))
            self.assertTrue([event for event in events if event.get("code") == code and
                             event.get("slice", "").endswith(ds.SOPInstanceUID)], (name, code))
