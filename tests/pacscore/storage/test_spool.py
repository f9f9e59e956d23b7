"""The spool of a received data set: fragments kept as they arrived while
small, a temporary file past the threshold."""

import errno
import functools
import io
import os

from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.storage.objectfiles import FileWrites
from pacscore.storage.spool import EARLY_WRITE, EarlyWrite, Spool, spooledFrom


def inline(f, *args):
    """Run an I/O-thread call at once (the spool only needs its order)."""
    return defer.maybeDeferred(f, *args)


class SpoolTests(unittest.TestCase):

    def setUp(self):
        self.directory = self.mktemp()
        os.makedirs(self.directory)

    def test_fragmentsInMemory(self):
        """The fragments come back as one bytes; those that may still change
        (a bytearray, a view of one) were copied as they were written."""
        spool = Spool(self.directory, b"HEADER", 1000, inline)
        received = b"0123456789"
        mutable = bytearray(b"abcd")
        spool.write(memoryview(received)[2:6])
        spool.write(mutable)
        spool.write(memoryview(mutable)[:2])
        spool.write(b"")
        mutable[:] = b"ZZZZ"
        spool.close()
        self.assertEqual(spool.inMemory, b"2345abcdab")
        self.assertIsInstance(spool.inMemory, bytes)
        self.assertEqual(spool.size, 10)
        self.assertIsNone(spool.path)

    def test_empty(self):
        spool = Spool(self.directory, b"HEADER", 1000, inline)
        spool.close()
        self.assertEqual(spool.inMemory, b"")

    def test_oneFragment(self):
        """A single fragment that is a view comes back as bytes too."""
        spool = Spool(self.directory, b"HEADER", 1000, inline)
        spool.write(memoryview(b"xxabc")[2:])
        spool.close()
        self.assertEqual(spool.inMemory, b"abc")
        self.assertIsInstance(spool.inMemory, bytes)

    @defer.inlineCallbacks
    def test_pastTheThresholdAFile(self):
        """Past the threshold the header and every fragment so far, then the
        rest, go to a temporary file in the spool's folder."""
        spool = Spool(self.directory, b"HEADER", 10, inline, chunkSize=7)
        fragments = [b"abcdef", memoryview(b"..ghijkl")[2:], bytearray(b"mnop"), b"q" * 20]
        for fragment in fragments:
            spool.write(fragment)
        yield spool.close()
        self.assertIsNone(spool.inMemory)
        self.assertEqual(os.path.dirname(spool.path), self.directory)
        with open(spool.path, "rb") as f:
            self.assertEqual(f.read(), b"HEADERabcdefghijklmnop" + b"q" * 20)
        spool.discard()
        yield spool.close()
        self.assertEqual(os.listdir(self.directory), [])


class EarlyWriteTests(unittest.TestCase):
    """An in-memory data set with an ``earlyWrite`` is written into a
    temporary file while it arrives, by calls of an I/O worker (here run
    when the test says)."""

    def setUp(self):
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "store-1.part")
        self.calls = []
        self.refusal = None  # an OSError opening the temporary file raises

    def openTemporary(self):
        if self.refusal is not None:
            raise self.refusal
        return self.path, FileWrites().open(self.path, create=True)

    def spool(self):
        return Spool(self.directory, b"HEADER", 4 << 20, inline, earlyWrite=functools.partial(
            EarlyWrite, openTemporary=self.openTemporary, callInThread=lambda f, *args: self.calls.append((f, args))))

    def runCalls(self):
        while self.calls:
            f, args = self.calls.pop(0)
            f(*args)

    def written(self):
        with open(self.path, "rb") as f:
            return f.read()

    def receive(self, spool, data, end, fragment=16384):
        for offset in range(spool.size, end, fragment):
            spool.write(memoryview(data)[offset:min(offset + fragment, end)])

    def test_writtenWhileItArrives(self):
        """Past EARLY_WRITE bytes the header and the fragments so far are
        written, then each EARLY_WRITE more; once the data set is whole the
        store finishes the file (the rest, then its durability's call on
        its descriptor) and takes it; the data set stays in memory."""
        spool = self.spool()
        data = os.urandom(2 * EARLY_WRITE + 1000)
        self.receive(spool, data, EARLY_WRITE - 1)
        self.runCalls()
        self.assertFalse(os.path.exists(self.path), "nothing written below EARLY_WRITE bytes")
        self.receive(spool, data, EARLY_WRITE + 16384)
        self.runCalls()
        self.assertEqual(self.written(), b"HEADER" + data[:EARLY_WRITE + 16384])
        self.receive(spool, data, len(data))
        spool.close()
        early = spool.takeEarlyWrite()
        self.assertIsNone(spool.takeEarlyWrite())
        synced = []
        self.assertEqual(early.finish(synced.append), self.path)
        self.runCalls()
        self.assertEqual(self.written(), b"HEADER" + data)
        self.assertEqual(len(synced), 1)
        self.assertEqual(spool.inMemory, data)

    def test_removedWhenTheSpoolIsDiscarded(self):
        spool = self.spool()
        self.receive(spool, bytes(EARLY_WRITE + 1000), EARLY_WRITE + 1000)
        self.runCalls()
        self.assertTrue(os.path.exists(self.path))
        spool.discard()
        self.runCalls()
        self.assertEqual(os.listdir(self.directory), [])

    def test_removedWhenTheDataSetGoesToASpoolFile(self):
        """Past the spool's threshold the data set goes to its own file:
        the early one is removed."""
        spool = Spool(self.directory, b"HEADER", EARLY_WRITE + 20000, inline, earlyWrite=functools.partial(
            EarlyWrite, openTemporary=self.openTemporary, callInThread=lambda f, *args: self.calls.append((f, args))))
        self.receive(spool, bytes(EARLY_WRITE + 40000), EARLY_WRITE + 40000)
        self.runCalls()
        self.assertIsNone(spool.takeEarlyWrite())
        self.assertFalse(os.path.exists(self.path))
        self.assertIsNotNone(spool.path)

    def test_aFailedWriteLeavesTheObjectToTheStore(self):
        """A temporary file that cannot be written (a full disk) makes
        ``finish`` answer None: the store writes the object itself, as it
        did before, and reports what fails then."""
        self.refusal = OSError(errno.ENOSPC, "No space left on device")
        spool = self.spool()
        self.receive(spool, bytes(EARLY_WRITE + 1000), EARLY_WRITE + 1000)
        self.runCalls()
        spool.close()
        self.assertIsNone(spool.takeEarlyWrite().finish(lambda fd: None))
        self.assertEqual(os.listdir(self.directory), [])

    def test_aFailedFlushIsLogged(self):
        """A file whose flush fails (an I/O error of the device) is removed
        and left to the store, as a full disk's is, in a warning naming the
        file and the error: the error is not lost if the store's own write
        then succeeds."""
        spool = self.spool()
        self.receive(spool, bytes(EARLY_WRITE + 1000), EARLY_WRITE + 1000)
        self.runCalls()
        spool.close()

        def complete(out):
            raise OSError(errno.EIO, "Input/output error")

        with capturedLogs() as events:
            self.assertIsNone(spool.takeEarlyWrite().finish(complete))
        self.assertEqual(os.listdir(self.directory), [])
        self.assertEqual([(e["log_level"], formatEvent(e)) for e in events], [
            (LogLevel.warn, f"could not write {self.path} as its data set arrived ([Errno 5] Input/output error);"
                            " it is written again once whole")])


class SpooledFromTests(unittest.TestCase):
    """``spooledFrom``: a spool of the object store filled from a file."""

    def setUp(self):
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.spools = []

    def spool(self, incoming, transport):
        spool = Spool(self.directory, b"HEADER", 10, inline, transport)
        self.spools.append(spool)
        return spool

    @defer.inlineCallbacks
    def test_filled(self):
        """Bytes ``start`` to ``end`` of the file are in the spool."""
        spool = yield defer.ensureDeferred(spooledFrom(self, "incoming", io.BytesIO(b"..abcdef.."), 2, 8, inline))
        yield spool.close()
        self.assertEqual(spool.inMemory, b"abcdef")

    @defer.inlineCallbacks
    def test_discardedWhenReadingFails(self):
        """A file that ends early: OSError, and the spool (already a
        temporary file past the threshold) is discarded."""
        source = io.BytesIO(b"x" * 30)
        with self.assertRaises(OSError):
            yield defer.ensureDeferred(spooledFrom(self, "incoming", source, 0, 40, inline))
        yield self.spools[0].close()
        self.assertEqual(os.listdir(self.directory), [])
