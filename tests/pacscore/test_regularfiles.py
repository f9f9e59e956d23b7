"""Tests for pacscore.regularfiles: only a regular file is opened, and
opening a FIFO never waits for a reader."""

import os

from twisted.trial import unittest

from pacscore.regularfiles import NotARegularFile, openRegularFile


class OpenRegularFileTests(unittest.TestCase):

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.fifo = os.path.join(self.folder, "fifo")
        os.mkfifo(self.fifo)

    def test_fifoWithoutReaderRefusedAtOnce(self):
        """``open`` for writing waited for a reader (an I/O worker held for good)."""
        for mode in ("ab", "w"):
            error = self.assertRaises(NotARegularFile, openRegularFile, self.fifo, mode)
            self.assertEqual(error.filename, self.fifo)
            self.assertIn("not a regular file", error.strerror)

    def test_fifoWithReaderRefused(self):
        """A reader that never reads would block the writes, once the pipe is full."""
        reader = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        self.assertRaises(NotARegularFile, openRegularFile, self.fifo, "ab", buffering=0)
        self.assertEqual(os.read(reader, 10), b"")  # nothing written

    def test_deviceRefused(self):
        self.assertRaises(NotARegularFile, openRegularFile, os.devnull, "w")

    def test_regularFilesAsOpenOpensThem(self):
        """``w`` truncates (once the file is known to be a regular one), ``a``
        appends, both create; the file is blocking, as ``open``'s."""
        path = os.path.join(self.folder, "out.txt")
        for mode, text, expected in (("a", "one\n", "one\n"), ("a", "two\n", "one\ntwo\n"), ("w", "3\n", "3\n")):
            with openRegularFile(path, mode, encoding="utf-8") as f:
                self.assertTrue(os.get_blocking(f.fileno()))
                f.write(text)
            with open(path, encoding="utf-8") as f:
                self.assertEqual(f.read(), expected)

    def test_otherErrorsAsOpenRaisesThem(self):
        error = self.assertRaises(OSError, openRegularFile, os.path.join(self.folder, "no", "x"), "w")
        self.assertNotIsInstance(error, NotARegularFile)
        self.assertEqual(error.strerror, "No such file or directory")
