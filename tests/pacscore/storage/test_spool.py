"""The spool of a received data set: fragments kept as they arrived while
small, a temporary file past the threshold."""

import io
import os

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.storage.spool import Spool, spooledFrom


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
