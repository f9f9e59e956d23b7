"""The cache of WADO-RS metadata: kept while the file is the same one,
made again when it is replaced or changed, never kept for a file written
too lately for its times to tell a later change, bounded in bytes."""

import os

from twisted.trial import unittest

from pacscore.web.dicomweb.metadatacache import UNSETTLED_NS, MetadataCache


class MetadataCacheTests(unittest.TestCase):

    def setUp(self):
        self.folder = self.mktemp()
        os.makedirs(self.folder)
        self.now = 0
        self.cache = MetadataCache(mostBytes=10, clock=lambda: self.now)
        self.made = []

    def file(self, name, text):
        path = os.path.join(self.folder, name)
        with open(path, "wb") as f:
            f.write(text)
        self.now = os.stat(path).st_ctime_ns + UNSETTLED_NS + 1
        return path

    def make(self, path, url):
        self.made.append((path, url))
        with open(path, "rb") as f:
            return f.read() + url.encode()

    def test_keptWhileTheSameFile(self):
        path = self.file("a", b"one")
        self.assertEqual(self.cache.metadata(path, "/u", self.make), b"one/u")
        self.assertEqual(self.cache.metadata(path, "/u", self.make), b"one/u")
        self.assertEqual(self.cache.metadata(path, "/v", self.make), b"one/v")  # another address
        self.assertEqual(len(self.made), 2)

    def test_replacedOrChanged(self):
        path = self.file("a", b"one")
        self.cache.metadata(path, "/u", self.make)
        os.replace(self.file("b", b"two"), path)
        self.assertEqual(self.cache.metadata(path, "/u", self.make), b"two/u")
        with open(path, "r+b") as f:  # in place, same size
            f.write(b"six")
        self.now = os.stat(path).st_ctime_ns + UNSETTLED_NS + 1
        self.assertEqual(self.cache.metadata(path, "/u", self.make), b"six/u")
        self.assertEqual(len(self.made), 3)

    def test_removed(self):
        path = self.file("a", b"one")
        self.cache.metadata(path, "/u", self.make)
        os.unlink(path)
        self.assertRaises(FileNotFoundError, self.cache.metadata, path, "/u", self.make)

    def test_notKeptWhenJustWritten(self):
        path = self.file("a", b"one")
        self.now -= 2
        self.cache.metadata(path, "/u", self.make)
        self.cache.metadata(path, "/u", self.make)
        self.assertEqual(len(self.made), 2)

    def test_leastLatelyUsedDropped(self):
        first, second, third = (self.file(name, b"abc") for name in "abc")
        for path in (first, second, first, third):  # 5 bytes each, 10 at most: second goes
            self.cache.metadata(path, "/u", self.make)
        self.cache.metadata(first, "/u", self.make)
        self.cache.metadata(third, "/u", self.make)
        self.assertEqual(len(self.made), 3)
        self.cache.metadata(second, "/u", self.make)
        self.assertEqual(len(self.made), 4)
