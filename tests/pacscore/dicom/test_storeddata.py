"""Tests for pacscore.dicom.storeddata: which stored objects stay in their
file for sending, and reading them piece by piece."""

import errno
import os
import struct
import tempfile

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.codecs.evenlengths import evenLengths
from pacscore.codecs.transcode import TranscodeError
from pacscore.dicom.storeddata import (
    STREAMED_OBJECT, StoredData, closeIfStored, evenedForPeer, openDataset, openStored)
from pacscore.storage.attributes import deflated
from pacscore.storage.reader import StoredObject

EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
HEADER = b"\x00" * 132  # stands for the preamble and file meta


def element(group, number, vr, value):
    """One Explicit VR Little Endian element with a 4-byte length."""
    return struct.pack("<HH2s2xL", group, number, vr, len(value)) + value


def shortElement(group, number, vr, value):
    """One Explicit VR Little Endian element with a 2-byte length (US, IS ...)."""
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value


def pixelAttributes(frames):
    """Samples per Pixel, Number of Frames, Rows, Columns and Bits
    Allocated of ``frames`` frames of 1024 x 1024 16-bit pixels."""
    return (shortElement(0x0028, 0x0002, b"US", struct.pack("<H", 1))
            + shortElement(0x0028, 0x0008, b"IS", f"{frames} ".encode())
            + shortElement(0x0028, 0x0010, b"US", struct.pack("<H", 1024))
            + shortElement(0x0028, 0x0011, b"US", struct.pack("<H", 1024))
            + shortElement(0x0028, 0x0100, b"US", struct.pack("<H", 16)))


# Encapsulated Pixel Data: an empty offset table and one 64 kB fragment.
ENCAPSULATED = (struct.pack("<HH2s2xL", 0x7FE0, 0x0010, b"OB", 0xFFFFFFFF) + struct.pack("<HHL", 0xFFFE, 0xE000, 0)
                + struct.pack("<HHL", 0xFFFE, 0xE000, 1 << 16) + bytes(1 << 16) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))


def immediately(f, *args):
    return defer.maybeDeferred(f, *args)


class OpenStoredTests(unittest.TestCase):

    def storedFile(self, dataset, syntax=EXPLICIT):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(HEADER + dataset)
        return StoredObject("1.2.3", "1.2.840.10008.5.1.4.1.1.2", path, syntax, len(HEADER),
                            len(HEADER) + len(dataset))

    def test_largeObjectStaysInItsFile(self):
        dataset = element(0x0008, 0x0016, b"OB", b"1.2.840.10008.5.1.4.1.1.2\0") + \
            element(0x7FE0, 0x0010, b"OW", bytes(range(256)) * (STREAMED_OBJECT // 256 + 8))
        data = openStored(self.storedFile(dataset), immediately)
        self.addCleanup(closeIfStored, data)
        self.assertIsInstance(data, StoredData)
        self.assertEqual(len(data), len(dataset))
        self.assertEqual(self.successResultOf(data.read(len(dataset) - 1000, 1000)), dataset[-1000:])
        self.assertEqual(data.readAll(), dataset)

    def test_smallObjectIsRead(self):
        self.assertIsNone(openStored(self.storedFile(element(0x7FE0, 0x0010, b"OW", bytes(1024))), immediately))

    def test_smallFileOfLargePixelsStaysInItsFile(self):
        """A small file whose compressed pixels decode to more than
        ``STREAMED_OBJECT`` (Rows x Columns x Samples x Bits Allocated / 8 x
        Number of Frames) stays in its file, so that a conversion goes file
        to file: a flat 1024 x 1024 16-bit image in RLE is 1/64 of its
        pixels, for WADO (``openDataset``) as for C-MOVE, C-GET and
        forwards (``openStored``).  With one frame fewer than that size
        needs, it is read."""
        frames = STREAMED_OBJECT // (1024 * 1024 * 2) + 1
        for count, expected in ((frames, StoredData), (frames - 1, type(None))):
            stored = self.storedFile(pixelAttributes(count) + ENCAPSULATED, RLE)
            for data in (openDataset(stored.path, stored.datasetOffset, stored.transferSyntax, immediately),
                         openStored(stored, immediately)):
                self.addCleanup(closeIfStored, data)
                self.assertIsInstance(data, expected, f"{count} frames")

    def test_decodedSizeOnlyOfCompressedPixelData(self):
        """Only compressed Pixel Data decodes to more than the file holds:
        an object whose Rows and Columns claim a gigabyte is read into
        memory when it has no Pixel Data, when its Pixel Data is native
        (copied as it is), and when it is deflated and inflates to no
        more than ``STREAMED_OBJECT``."""
        attributes = pixelAttributes(1024)
        native = attributes + element(0x7FE0, 0x0010, b"OB", bytes(1024))
        for dataset, syntax in ((attributes, RLE), (native, EXPLICIT), (deflated([attributes]), DEFLATED),
                                (deflated([native]), DEFLATED)):
            stored = self.storedFile(dataset, syntax)
            data = openDataset(stored.path, stored.datasetOffset, stored.transferSyntax, immediately)
            self.addCleanup(closeIfStored, data)
            self.assertIsNone(data, syntax)

    def test_smallDeflatedFileInflatingPastTheLimitStaysInItsFile(self):
        """A small deflated file whose data set inflates to more than
        ``STREAMED_OBJECT`` stays in its file, so that it is inflated file
        to file: in memory it was refused past 128 MB after costing as
        much."""
        dataset = deflated([pixelAttributes(1), element(0x7FE0, 0x0010, b"OW", bytes(STREAMED_OBJECT))])
        stored = self.storedFile(dataset, DEFLATED)
        self.assertLess(len(dataset), 64 << 10)
        for data in (openDataset(stored.path, stored.datasetOffset, stored.transferSyntax, immediately),
                     openStored(stored, immediately)):
            self.addCleanup(closeIfStored, data)
            self.assertIsInstance(data, StoredData)

    def test_smallObjectReadIsNotOpenedAgain(self):
        """The data set bytes of an object no larger than ``STREAMED_OBJECT``
        that were read already are checked in memory: its file is not
        opened again unless it stays there."""
        dataset = element(0x7FE0, 0x0010, b"OW", bytes(1024))
        self.assertIsNone(openStored(StoredObject("1.2.3", "1.2.840.10008.5.1.4.1.1.2", self.mktemp(), EXPLICIT,
                                                  len(HEADER), len(HEADER) + len(dataset)), immediately, dataset))

    def test_nkiPixelDataIsRead(self):
        """NKI compressed pixel data goes out decompressed, so from memory."""
        dataset = element(0x7FDF, 0x0010, b"OB", bytes(STREAMED_OBJECT + 2))
        self.assertIsNone(openStored(self.storedFile(dataset), immediately))

    def test_readsPastWhatOneReadGives(self):
        """A data set longer than one ``pread`` gives (about 2 GB on Linux)
        is read whole, in as many reads as it takes, not taken for a file
        cut short."""
        dataset = bytes(range(256)) * 40
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(HEADER + dataset)
        pread = os.pread
        self.patch(os, "pread", lambda fd, size, offset: pread(fd, min(size, 1000), offset))
        data = StoredData(open(path, "rb"), len(HEADER), len(dataset), immediately)
        self.addCleanup(data.close)
        self.assertEqual(data.readAll(), dataset)
        self.assertEqual(self.successResultOf(data.read(500, 3000)), dataset[500:3500])

    def test_fileCutShortFailsTheRead(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(HEADER + bytes(100))
        data = StoredData(open(path, "rb"), len(HEADER), 200, immediately)
        self.addCleanup(data.close)
        self.failureResultOf(data.read(0, 200), OSError)
        data.close()
        self.failureResultOf(data.read(0, 10), ValueError)
        closeIfStored(b"bytes are left alone")


class EvenedForPeerTests(unittest.TestCase):

    def test_largeOddObjectPaddedIntoATemporaryFile(self):
        """A large object of odd length that stays in its file is padded
        from it into a temporary file a piece at a time and goes from
        there, its own file left as it is (it was read whole and copied
        twice, ignoring ``STREAMED_OBJECT``)."""
        dataset = (element(0x0009, 0x1002, b"UN", b"abc")
                   + element(0x7FE0, 0x0010, b"OW", bytes(range(256)) * (STREAMED_OBJECT // 256 + 8)))
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(HEADER + dataset)
        self.patch(StoredData, "readAll", lambda *args: self.fail("read whole"))
        data = StoredData(open(path, "rb"), len(HEADER), len(dataset), immediately)
        evened, padded = evenedForPeer(data, EXPLICIT, os.path.dirname(os.path.abspath(path)))
        self.addCleanup(evened.close)
        self.assertIsInstance(evened, StoredData)
        self.assertTrue(data.file.closed)
        self.assertEqual(padded, ["(0009,1002)"])
        self.assertEqual(len(evened), len(dataset) + 1)
        self.assertEqual(evened._readAt(0, len(evened)), evenLengths(dataset, EXPLICIT)[0])
        with open(path, "rb") as f:
            self.assertEqual(f.read(), HEADER + dataset)

    def test_aFullDeviceFallsBackThenFailsThatObjectAlone(self):
        """The temporary file of the padding cannot be written beside the
        stored file (its device full): it goes to the system's temporary
        folder, once (also when the device takes no file at all); when that
        fails too, TranscodeError (that
        sub-operation alone fails, where the whole C-GET or C-MOVE failed),
        the stored file and the temporary ones closed (it was left open)."""
        dataset = element(0x0009, 0x1002, b"UN", b"abc")
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(HEADER + dataset)
        folders, full = [], []
        temporaryFile = tempfile.TemporaryFile

        class FullFile:
            closed = False

            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            def close(self):
                self.closed = True

        def opened(dir=None):
            folders.append(dir)
            if dir is not None and len(folders) > 4:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", dir)
            if dir is not None or len(folders) > 2:
                full.append(FullFile())
                return full[-1]
            return temporaryFile()
        self.patch(tempfile, "TemporaryFile", opened)
        data = StoredData(open(path, "rb"), len(HEADER), len(dataset), immediately)
        padded, _ = evenedForPeer(data, EXPLICIT, "/device")
        self.addCleanup(padded.close)
        self.assertEqual(folders, ["/device", None])
        self.assertEqual(padded._readAt(0, len(padded)), evenLengths(dataset, EXPLICIT)[0])
        data = StoredData(open(path, "rb"), len(HEADER), len(dataset), immediately)
        self.assertRaises(TranscodeError, evenedForPeer, data, EXPLICIT, "/device")
        self.assertEqual(folders, ["/device", None, "/device", None])
        self.assertTrue(data.file.closed)
        self.assertEqual([f.closed for f in full], [True] * 3)
        data = StoredData(open(path, "rb"), len(HEADER), len(dataset), immediately)
        self.assertRaises(TranscodeError, evenedForPeer, data, EXPLICIT, "/gone")
        self.assertEqual(folders[4:], ["/gone", None], "the system's temporary folder tried once")
        self.assertEqual([f.closed for f in full], [True] * 4)

    def test_anOddObjectThatCannotBePaddedIsNotSent(self):
        """An odd data set the padding cannot walk is not sent (its odd PDV
        made DCMTK abort the association, losing the objects after it in a
        C-GET): TranscodeError, so that its sub-operation alone fails; a
        ``StoredData`` closed."""
        dataset = element(0x0009, 0x1002, b"UN", b"abc")[:-1]
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(HEADER + dataset)
        data = StoredData(open(path, "rb"), len(HEADER), len(dataset), immediately)
        for odd in (data, dataset):
            self.assertRaises(TranscodeError, evenedForPeer, odd, EXPLICIT, None)
        self.assertTrue(data.file.closed)
