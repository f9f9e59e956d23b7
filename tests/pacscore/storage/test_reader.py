"""Finding stored objects without the index (pacscore.storage.reader's
``instancesAt``, for the NULL driver's forwards)."""

import io
import os

from twisted.trial import unittest

from pacscore.db.query import Instance
from pacscore.export.queue import Target
from pacscore.storage.devices import MagDevice
from pacscore.storage.part10 import readFileMeta
from pacscore.storage.reader import RELOCATIONS, IndexedPath, Missing, ObjectReader
from pacscore.testing.corpus import makeDataset
from tests.pacscore.storage.test_mirror import dicomBytes

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
TARGET = Target("P", "1", "1.1", "1.1.3")


class InstancesAtTests(unittest.TestCase):

    def setUp(self):
        self.mag0 = MagDevice("MAG0", self.mktemp())
        self.mag1 = MagDevice("MAG1", self.mktemp())
        self.reader = ObjectReader([self.mag0, self.mag1])

    def write(self, device, relative, content):
        path = device.absolute(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def test_fileOnADevice(self):
        path = self.write(self.mag1, "P/1.1_3.dcm", dicomBytes(3))
        [instance] = self.reader.instancesAt(path, TARGET)
        self.assertEqual(instance, Instance("1.1.3", CT_IMAGE_STORAGE, "MAG1", "P/1.1_3.dcm", "P", "1", "1.1"))
        [stored] = self.reader.locate([instance])
        self.assertEqual((stored.path, stored.sopClassUID), (path, CT_IMAGE_STORAGE))

    def test_goneFileIsMissingWhenLocated(self):
        path = self.mag0.absolute("P/gone.dcm")
        [instance] = self.reader.instancesAt(path, TARGET)
        self.assertEqual((instance.deviceName, instance.objectFile, instance.sopClassUID), ("MAG0", "P/gone.dcm", ""))
        [missing] = self.reader.locate([instance])
        self.assertIsInstance(missing, Missing)
        self.assertTrue(missing.gone)

    def test_sopClassFromTheFileWhenTheIndexHasNone(self):
        """A dicom.sql without the SOPClassUID column: C-MOVE, C-GET and
        forwards negotiate with the SOP class of the file, from its meta or
        (a file without meta, Conquest's .v2) its data set."""
        whole = dicomBytes(3)
        withMeta = self.write(self.mag0, "P/3.dcm", whole)
        with open(withMeta, "rb") as f:
            offset = readFileMeta(f)[2]
        self.write(self.mag0, "P/3.v2", whole[offset:])  # implicit VR little endian, no meta
        for objectFile in ("P/3.dcm", "P/3.v2"):
            [stored] = self.reader.locate([Instance("1.1.3", "", "MAG0", objectFile, "P", "1", "1.1")])
            self.assertEqual(stored.sopClassUID, CT_IMAGE_STORAGE, objectFile)

    def test_characterSetOf(self):
        """The Specific Character Set a stored file declares (a Conquest
        takeover reads text with it); None when it declares none or cannot
        be read."""
        ds = makeDataset("P", "P^P", "1", "1.1", "1.1.4", 1, 4, rows=8, columns=8)
        ds.SpecificCharacterSet = "ISO_IR 144"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        self.write(self.mag0, "P/4.dcm", buffer.getvalue())
        self.write(self.mag0, "P/3.dcm", dicomBytes(3))
        self.assertEqual([self.reader.characterSetOf(device, objectFile) for device, objectFile in
                          (("MAG0", "P/4.dcm"), ("MAG0", "P/3.dcm"), ("MAG0", "P/gone.dcm"), ("MAG9", "P/4.dcm"))],
                         ["ISO_IR 144", None, None, None])

    def test_fileOnNoDevice(self):
        outside = os.path.join(os.path.dirname(self.mag0.path.rstrip(os.sep)), "elsewhere", "x.dcm")
        self.assertEqual(self.reader.instancesAt(outside, TARGET), [])


class StoredAgainTests(unittest.TestCase):
    """An object stored again after the index named its file (a new file
    name, the old file removed after the commit) is read from the file the
    index names now; a file gone for good is still Missing."""

    def setUp(self):
        self.mag0 = MagDevice("MAG0", self.mktemp())
        self.old = Instance("1.1.3", CT_IMAGE_STORAGE, "MAG0", "P/old.dcm", "P", "1", "1.1")
        self.new = self.old._replace(objectFile="P/new.dcm")
        self.looked = []
        self.now = self.new
        self.reader = ObjectReader([self.mag0], None, self.current)
        self.write("P/new.dcm", dicomBytes(4))

    def current(self, sopInstanceUID):
        self.looked.append(sopInstanceUID)
        return self.now

    def write(self, relative, content):
        path = self.mag0.absolute(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def test_locate(self):
        [stored] = self.reader.locate([self.old])
        self.assertEqual((stored.path, stored.objectFile, self.looked),
                         (self.mag0.absolute("P/new.dcm"), "P/new.dcm", ["1.1.3"]))

    def test_readAfterLocate(self):
        """C-MOVE, C-GET and forwards read a batch after they located it."""
        os.unlink(self.write("P/old.dcm", dicomBytes(3)))  # located first, then stored again
        stored = self.reader.locate([self.new])[0]._replace(path=self.mag0.absolute("P/old.dcm"),
                                                            objectFile="P/old.dcm")
        current, data = self.reader.reading(stored, lambda held: (held, self.reader.read(held)))
        self.assertEqual(current.path, self.mag0.absolute("P/new.dcm"))
        self.assertEqual(data, dicomBytes(4)[current.datasetOffset:])

    def test_onFileOfAnIndexedPath(self):
        """The web's reads (``instancePaths``)."""
        path = IndexedPath(self.mag0.absolute("P/old.dcm"), self.old)
        read, size = self.reader.onFile(path, os.path.getsize)
        self.assertEqual((read, read.instance, size), (self.mag0.absolute("P/new.dcm"), self.new, len(dicomBytes(4))))
        self.assertRaises(FileNotFoundError, self.reader.onFile, str(path), os.path.getsize)

    def test_goneForGood(self):
        """No row, or one naming the same file: Missing at once."""
        for now in (None, self.old):
            self.now = now
            [missing] = self.reader.locate([self.old])
            self.assertEqual((type(missing), missing.gone), (Missing, True))
        self.assertEqual(len(self.looked), 2)

    def test_lookedUpAFewTimes(self):
        """A row that names another file each time, none there: given up."""
        self.current = lambda uid: self.looked.append(uid) or self.old._replace(objectFile=f"P/{len(self.looked)}.dcm")
        [missing] = ObjectReader([self.mag0], None, self.current).locate([self.old])
        self.assertEqual((type(missing), len(self.looked)), (Missing, RELOCATIONS))
