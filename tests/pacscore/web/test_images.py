"""Tests for pacscore.web.images: the pictures of every page (slices,
WADO-URI, WADO-RS rendered and thumbnails) are made ``WebMaxRenders`` at
a time, the others waiting their turn."""

import threading

from twisted.internet import defer, reactor, task

from pacscore.web import images
from tests.pacscore.web.dicomweb.client import DicomWebTestCase

RENDERS = 3  # fewer than the archive's four I/O threads


class RenderTurnTests(DicomWebTestCase):

    ini = {"WebMaxRenders": str(RENDERS)}

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.lock = threading.Lock()
        self.inside = self.most = 0
        self.release = threading.Event()
        self.addCleanup(self.release.set)  # before the archive stops: a failed test leaves no I/O thread waiting
        self.patch(images, "renderPicture", self.heldRender)

    def heldRender(self, path, write, *args):
        """A render that stays until ``release`` is set, counting those inside at once."""
        with self.lock:
            self.inside += 1
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
