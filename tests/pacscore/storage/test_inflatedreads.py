"""Tests for pacscore.storage.inflatedreads: a deflated data set read as a
file inflates only as far as it is read, within its limit."""

import io
import zlib

from twisted.trial import unittest

from pacscore.storage.attributes import DatasetError
from pacscore.storage.inflatedreads import InflatedReads


def deflatedReads(data, limit=1 << 30):
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return InflatedReads(io.BytesIO(deflater.compress(data) + deflater.flush()).read, limit)


class InflatedReadsTests(unittest.TestCase):

    def test_readsSeeksAndStepsBack(self):
        data = bytes(range(256)) * 4096
        reads = deflatedReads(data)
        self.assertEqual((reads.read(4), reads.tell()), (data[:4], 4))
        reads.seek(500000)
        self.assertEqual(reads.read(8), data[500000:500008])
        reads.seek(-12, 1)
        self.assertEqual(reads.read(12), data[499996:500008])
        self.assertEqual(reads.read(), data[500008:])
        self.assertEqual(reads.read(8), b"")

    def test_goingFarBackIsADatasetError(self):
        """What lies more than 64 kB behind the position is dropped as the
        reads go on."""
        reads = deflatedReads(bytes(1 << 20))
        reads.read(1 << 19)
        reads.read(16)
        with self.assertRaisesRegex(DatasetError, "^cannot go back to offset 0 in a deflated data set"):
            reads.seek(0)

    def test_readingPastTheLimitIsRefusedBeforeInflating(self):
        """A 1 GB value declared at the start is refused before any of it
        is inflated: the reads' window holds nothing."""
        reads = deflatedReads(bytes(1 << 22), limit=1 << 21)
        reads.read(16)
        with self.assertRaisesRegex(DatasetError, "^the deflated data set is read past 2 MB"):
            reads.read(1 << 30)
        self.assertLess(len(reads._kept), 1 << 20)
