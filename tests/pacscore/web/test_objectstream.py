"""Tests for pacscore.web.objectstream: a stored object sent as it is goes
whole from the file that was open when it started, even when it is stored
again (its file replaced) while it goes; its file is closed when its
chunks are, started or not."""

import os

from twisted.internet import defer

from pacscore.web.objectstream import AS_STORED, CHUNK, objectStream
from tests.pacscore.web.pages import WebTestCase

STUDY, SERIES, SOP = "1.2.826.0.1.3680043.2.1125.9.1", "1.2.826.0.1.3680043.2.1125.9.2", "1.2.826.0.1.3680043.2.1125.9.3"


class ReplacedMidStreamTests(WebTestCase):

    @defer.inlineCallbacks
    def test_aFileReplacedAfterTheFirstChunkStillGoesWhole(self):
        """A 3 MB object whose file is replaced (a re-send renames the new
        copy into place, the old one unlinked) after its first chunk went
        is sent whole, the bytes of the file as it was."""
        _, stored = yield self.storeMultiFrame((STUDY, SERIES, SOP), 3, 5)
        with open(stored, "rb") as f:
            original = f.read()
        self.assertGreater(len(original), 2 * CHUNK)
        syntax, chunks = yield defer.ensureDeferred(objectStream(self.running.archive, stored, AS_STORED, None))
        sent = [(yield defer.ensureDeferred(chunks.__anext__()))]
        replacement = stored + ".new"
        with open(replacement, "wb") as f:
            f.write(b"\0" * len(original))
        os.replace(replacement, stored)

        sent += yield defer.ensureDeferred(_rest(chunks))
        self.assertEqual(len(sent), -(-len(original) // CHUNK))
        self.assertTrue(b"".join(sent) == original, "not the object as it was when it started")


class ClosedTests(WebTestCase):

    @defer.inlineCallbacks
    def test_chunksClosedBeforeTheFirstCloseTheFile(self):
        """Chunks given up before they start (a stream refused, a HEAD)
        close the file they opened, not the garbage collector later."""
        stored, = self.running.files()
        syntax, chunks = yield defer.ensureDeferred(objectStream(self.running.archive, stored, AS_STORED, None))
        self.assertEqual(openCount(stored), 1)
        yield defer.ensureDeferred(chunks.aclose())
        self.assertEqual(openCount(stored), 0)


def openCount(path):
    """How many of this process's file descriptors are open on ``path``."""
    folder = "/proc/self/fd"
    count = 0
    for fd in os.listdir(folder):
        try:
            count += os.path.realpath(os.readlink(os.path.join(folder, fd))) == os.path.realpath(path)
        except OSError:  # the one listdir used, closed since
            pass
    return count


async def _rest(chunks):
    return [chunk async for chunk in chunks]
