"""Tests for pacscore.web.downloads.ZipStream: a zip made a piece at a
time from the files, readable as any zip, in pieces of bounded size."""

import io
import os
import time
import zipfile

from twisted.trial import unittest

from pacscore.storage.reader import ObjectReader
from pacscore.web.downloads import ZipStream

MB = 1 << 20


class ZipStreamTests(unittest.TestCase):

    def setUp(self):
        self.folder = self.mktemp()
        os.makedirs(self.folder)
        self.contents = {"large.dcm": os.urandom(5 * MB + 123), "empty.dcm": b"",
                         **{f"small{n}.dcm": bytes([n]) * (8192 + n) for n in range(40)}}
        self.paths = []
        for name, data in self.contents.items():
            path = os.path.join(self.folder, name)
            with open(path, "wb") as f:
                f.write(data)
            os.utime(path, (0, 1700000000))
            self.paths.append(path)

    def test_pieces(self):
        """Every piece is about the size asked for (never the whole zip),
        and together they are the zip of the files, dates kept."""
        stream = ZipStream(self.paths, [f"study/{name}" for name in self.contents], ObjectReader([]))
        pieces = list(iter(lambda: stream.read(MB), b""))
        self.assertGreater(len(pieces), 5)
        self.assertLess(max(map(len, pieces)), MB + 64 * 1024)
        with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as zipped:
            self.assertIsNone(zipped.testzip())
            self.assertEqual({info.filename: zipped.read(info) for info in zipped.infolist()},
                             {f"study/{name}": data for name, data in self.contents.items()})
            self.assertEqual({info.date_time for info in zipped.infolist()},
                             {time.localtime(1700000000)[:6]})
            self.assertEqual({info.compress_type for info in zipped.infolist()}, {zipfile.ZIP_DEFLATED})

    def test_filesThatCompressWell(self):
        """Files of zeros, which the compressor takes in for long before it
        gives anything: no piece is empty before the end, and the pieces
        are the whole zip (an empty one was taken for the end, and the
        zip came out cut short)."""
        paths = []
        for number in range(2):
            path = os.path.join(self.folder, f"zeros{number}.dcm")
            with open(path, "wb") as f:
                f.write(bytes(20 * MB))
            paths.append(path)
        stream = ZipStream(paths, ["a.dcm", "b.dcm"], ObjectReader([]))
        pieces = list(iter(lambda: stream.read(MB), b""))
        self.assertEqual(stream.read(MB), b"")
        with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as zipped:
            self.assertIsNone(zipped.testzip())
            self.assertEqual([len(zipped.read(name)) for name in ("a.dcm", "b.dcm")], [20 * MB, 20 * MB])

    def test_vanishedFile(self):
        """A file gone when the zip reaches it: OSError naming it, after
        the pieces of the files before; close() lets go of the open file."""
        os.remove(self.paths[-1])
        stream = ZipStream(self.paths, list(self.contents), ObjectReader([]))
        given = 0
        with self.assertRaises(FileNotFoundError) as raised:
            while True:
                given += len(stream.read(MB))
        self.assertEqual(raised.exception.filename, self.paths[-1])
        self.assertGreater(given, 4 * MB)
        stream.close()
