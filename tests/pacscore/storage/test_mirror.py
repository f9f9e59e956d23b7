"""Mirror devices (pacscore.storage.mirror) and the reads that fall back on
them (pacscore.storage.reader): copies, replaced sources, verification."""

import io
import os
import shutil

from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.storage.devices import MagDevice
from pacscore.storage.mirror import DIFFERENT, MISSING, Mirrors
from pacscore.storage.reader import ObjectReader
from pacscore.testing.corpus import makeDataset


def dicomBytes(n):
    """A small Part-10 file."""
    buffer = io.BytesIO()
    makeDataset("P", "P^P", "1", "1.1", f"1.1.{n}", 1, n, rows=8, columns=8).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class MirrorTests(unittest.TestCase):

    def setUp(self):
        self.mag = MagDevice("MAG0", self.mktemp())
        self.mirror = MagDevice("MIRROR0", self.mktemp())
        self.mag.prepare()
        self.mirrors = Mirrors({"MAG0": self.mirror})
        self.mirrors.prepare()
        self.reader = ObjectReader([self.mag], self.mirrors)

    def store(self, relative, content):
        path = self.mag.absolute(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def mirrored(self, relative):
        with open(self.mirror.absolute(relative), "rb") as f:
            return f.read()

    def test_copyMakesFoldersAndLeavesNoTemporaryFile(self):
        source = self.store("PAT1/1.2/3.dcm", b"object" * 100000)
        self.assertTrue(self.mirrors.copy("MAG0", "PAT1/1.2/3.dcm", source))
        self.assertEqual(self.mirrored("PAT1/1.2/3.dcm"), b"object" * 100000)
        self.assertTrue(all(name.startswith("store-") for name in os.listdir(self.mirror.tempDir)))
        self.assertEqual(sorted(os.listdir(self.mirror.path)), [".pacs-tmp", "PAT1"])

    def test_copyOverwritesAnOlderCopy(self):
        source = self.store("PAT1/1.dcm", b"old")
        self.mirrors.copy("MAG0", "PAT1/1.dcm", source)
        self.store("PAT1/1.dcm", b"new")
        self.mirrors.copy("MAG0", "PAT1/1.dcm", source)
        self.assertEqual(self.mirrored("PAT1/1.dcm"), b"new")

    def test_aSourceReplacedDuringTheCopyIsNotPutInPlace(self):
        """The copy of a replaced object never overwrites the copy of its replacement."""
        source = self.store("PAT1/1.dcm", b"old")
        copyfileobj = shutil.copyfileobj

        def replaceWhileCopying(original, out, length):
            copyfileobj(original, out, length)
            replacement = source + ".new"
            with open(replacement, "wb") as f:
                f.write(b"new")
            os.replace(replacement, source)

        self.patch(shutil, "copyfileobj", replaceWhileCopying)
        self.assertFalse(self.mirrors.copy("MAG0", "PAT1/1.dcm", source))
        self.assertFalse(os.path.exists(self.mirror.absolute("PAT1/1.dcm")))
        self.assertTrue(all(name.startswith("store-") for name in os.listdir(self.mirror.tempDir)))

    def test_aMissingSourceIsNotCopied(self):
        self.assertFalse(self.mirrors.copy("MAG0", "PAT1/none.dcm", self.mag.absolute("PAT1/none.dcm")))
        self.assertFalse(os.path.exists(self.mirror.absolute("PAT1")))

    def test_anUnusableMirrorFolderRaises(self):
        """A mirror disk that cannot be written is an error (retried), not a deleted object."""
        source = self.store("PAT1/1.dcm", b"x")
        shutil.rmtree(self.mirror.path)
        with open(self.mirror.path, "w"):
            pass
        self.assertRaises(OSError, self.mirrors.copy, "MAG0", "PAT1/1.dcm", source)

    def test_aMirrorDiskThatIsAwayIsAnErrorUntilItIsBack(self):
        """Not mounted: its folder is not made anew on the disk beneath (the
        copies would vanish under the mount); back without the temporary folder: it is made."""
        source = self.store("PAT1/1.dcm", b"x")
        shutil.rmtree(self.mirror.path)
        self.assertRaises(FileNotFoundError, self.mirrors.copy, "MAG0", "PAT1/1.dcm", source)
        self.assertFalse(os.path.exists(self.mirror.path))
        os.makedirs(self.mirror.path)
        self.assertTrue(self.mirrors.copy("MAG0", "PAT1/1.dcm", source))
        self.assertEqual(self.mirrored("PAT1/1.dcm"), b"x")

    def test_aMirrorDiskUnmountedWhileRunningIsAnError(self):
        """Unmounted (``umount -l``) while pacs runs: the folder beneath the
        mount point, on another file system, takes no copy, even with a
        temporary folder of its own."""
        source = self.store("PAT1/1.dcm", b"x")
        self.mirror.mountPoint = os.path.dirname(self.mirror.path)  # its disk's, unmounted
        self.assertRaises(FileNotFoundError, self.mirrors.copy, "MAG0", "PAT1/1.dcm", source)
        self.assertFalse(os.path.exists(self.mirror.absolute("PAT1")))

    def test_remove(self):
        source = self.store("PAT1/1.dcm", b"x")
        self.mirrors.copy("MAG0", "PAT1/1.dcm", source)
        self.mirrors.remove("MAG0", "PAT1/1.dcm")
        self.mirrors.remove("MAG0", "PAT1/1.dcm")
        self.mirrors.remove("MAG1", "PAT1/1.dcm")
        self.assertFalse(os.path.exists(self.mirror.absolute("PAT1/1.dcm")))

    def test_compare(self):
        source = self.store("PAT1/1.dcm", b"x" * 3000000)
        self.assertEqual(self.mirrors.compare("MAG0", "PAT1/1.dcm", source), MISSING)
        self.mirrors.copy("MAG0", "PAT1/1.dcm", source)
        self.assertIsNone(self.mirrors.compare("MAG0", "PAT1/1.dcm", source))
        with open(self.mirror.absolute("PAT1/1.dcm"), "r+b") as f:
            f.seek(2500000)
            f.write(b"y")
        self.assertEqual(self.mirrors.compare("MAG0", "PAT1/1.dcm", source), DIFFERENT)
        with open(self.mirror.absolute("PAT1/1.dcm"), "ab") as f:
            f.write(b"y")
        self.assertEqual(self.mirrors.compare("MAG0", "PAT1/1.dcm", source), DIFFERENT)

    def test_verify(self):
        for n in range(6):
            self.mirrors.copy("MAG0", f"P/{n}.dcm", self.store(f"P/{n}.dcm", dicomBytes(n)))
        os.unlink(self.mirror.absolute("P/1.dcm"))
        with open(self.mirror.absolute("P/2.dcm"), "wb") as f:
            f.write(b"?")
        os.unlink(self.mag.absolute("P/3.dcm"))
        os.unlink(self.mirror.absolute("P/4.dcm"))
        with open(self.mag.absolute("P/5.dcm"), "r+b") as f:  # damaged on MAG0: its mirror copy is the good one
            f.truncate(os.path.getsize(self.mag.absolute("P/5.dcm")) - 10)
        lines = []
        objects = [(f"1.{n}", f"P/{n}.dcm") for n in range(6)]
        verification = self.mirrors.verify("MAG0", objects, self.reader.magPath, queued={"P/4.dcm"},
                                           report=lines.append, progressEvery=2)
        self.assertEqual((verification.identical, verification.queued, verification.unreadable),
                         (1, 1, 2))
        self.assertEqual(verification.damaged, [("1.1", "MAG0", "P/1.dcm"), ("1.2", "MAG0", "P/2.dcm")])
        self.assertEqual(verification.problems, 4)
        self.assertIn("MAG0:P/1.dcm: mirror copy missing", lines)
        self.assertIn("MAG0:P/2.dcm: mirror copy different", lines)
        self.assertIn("MAG0:P/3.dcm: cannot be read (No such file or directory)", lines)
        self.assertTrue(any(line.startswith("MAG0:P/5.dcm: mirror copy different, and the file on MAG0 is damaged")
                            and line.endswith("its mirror copy is kept") for line in lines), lines)
        self.assertIn("4 of 6 files of MAG0 verified", lines)
        self.assertEqual(verification.summary(),
                         "MAG0 against MIRROR0: 1 identical, 2 missing or different (queued for copying), "
                         "2 unreadable on MAG0, 1 not copied yet")

    def test_readerFallsBackOnTheMirrorCopy(self):
        source = self.store("PAT1/1.dcm", b"x")
        self.mirrors.copy("MAG0", "PAT1/1.dcm", source)
        self.assertEqual(self.reader.path("MAG0", "PAT1/1.dcm"), source)
        os.unlink(source)
        self.assertEqual(self.reader.path("MAG0", "PAT1/1.dcm"), self.mirror.absolute("PAT1/1.dcm"))
        self.assertEqual(self.reader.magPath("MAG0", "PAT1/1.dcm"), source)
        self.assertEqual(self.reader.path("MAG0", "PAT1/2.dcm"), self.mag.absolute("PAT1/2.dcm"))
        self.assertEqual(self.reader.copies("MAG0", "PAT1/1.dcm"), [source, self.mirror.absolute("PAT1/1.dcm")])

    def test_readerWithoutMirrors(self):
        reader = ObjectReader([self.mag])
        self.assertEqual(reader.copies("MAG0", "PAT1/1.dcm"), [self.mag.absolute("PAT1/1.dcm")])
        self.assertFalse(reader.mirrors)

    def test_fromConfiguration(self):
        class Configuration:
            magDevices = [("MAG0", "/a"), ("MAG1", "/b")]
            mirrorDevices = [("MIRROR1", "/m1"), ("MIRROR2", "/m2")]

        with capturedLogs() as events:
            mirrors = Mirrors.fromConfiguration(Configuration())
        self.assertEqual([formatEvent(e) for e in events], ["MIRROR2 (/m2) is not used: there is no MAG2"])
        self.assertEqual(mirrors.mirrored, {"MAG1"})
        self.assertEqual(mirrors.path("MAG1", "P/1.dcm"), "/m1/P/1.dcm")
        self.assertIsNone(mirrors.path("MAG0", "P/1.dcm"))
        self.assertIsNone(mirrors.path("MAG1", "../1.dcm"))
