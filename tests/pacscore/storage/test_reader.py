"""Finding stored objects without the index (pacscore.storage.reader's
``instancesAt``, for the NULL driver's forwards), following objects
stored again, and files cut short never read for sending."""

import functools
import io
import os
import sys

from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.db.pending import Unchecked
from pacscore.db.query import SOP_INSTANCE_UID, Instance, QueryKey
from pacscore.export.actions import LocalActions
from pacscore.export.queue import Target
from pacscore.storage.devices import MagDevice
from pacscore.storage.mirror import Mirrors
from pacscore.storage.part10 import Damaged, readFileMeta
from pacscore.storage.reader import RELOCATIONS, Deleted, IndexedPath, Missing, ObjectReader, currentInstance
from pacscore.testing.corpus import makeDataset
from tests.pacscore.export.fixtures import Archive, SyncWorkers
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
        """No row, or one naming the same file: Missing at once; ``gone``
        (deleted, to be skipped) only when there is no row: one the index
        still names may be back (its disk not mounted)."""
        for now, gone in ((None, True), (self.old, False)):
            self.now = now
            [missing] = self.reader.locate([self.old])
            self.assertEqual((type(missing), missing.gone), (Missing, gone))
        self.assertEqual(len(self.looked), 2)

    def test_goneAfterLocateIsDeletedOnlyWhenTheIndexNoLongerHoldsIt(self):
        """A file gone after it was located: ``Deleted`` when the index
        holds no row of it now (or a delete is removing it: ``current``
        None); a plain FileNotFoundError while the row still names it."""
        [stored] = self.reader.locate([self.new])
        os.remove(stored.path)
        for now, deleted in ((None, True), (self.new, False)):
            self.now = now
            with self.assertRaises(FileNotFoundError) as raised:
                self.reader.reading(stored, self.reader.read)
            self.assertEqual(isinstance(raised.exception, Deleted), deleted)

    def test_lookedUpAFewTimes(self):
        """A row that names another file each time, none there: given up."""
        self.current = lambda uid: self.looked.append(uid) or self.old._replace(objectFile=f"P/{len(self.looked)}.dcm")
        [missing] = ObjectReader([self.mag0], None, self.current).locate([self.old])
        self.assertEqual((type(missing), len(self.looked)), (Missing, RELOCATIONS))


class DamagedFileTests(unittest.TestCase):
    """A file that does not read to its end (cut short behind pacs's back)
    is never read for sending: its mirror copy is, when that one is whole
    (logged), else it is Damaged, naming the element that does not fit."""

    def setUp(self):
        self.mag0 = MagDevice("MAG0", self.mktemp())
        self.mirror = MagDevice("MIRROR0", self.mktemp())
        self.instance = Instance("1.1.3", CT_IMAGE_STORAGE, "MAG0", "P/cut.dcm", "P", "1", "1.1")
        self.whole = dicomBytes(3)
        self.path = self.write(self.mag0, self.whole[:-40])
        self.reader = ObjectReader([self.mag0], Mirrors({"MAG0": self.mirror}))

    def write(self, device, content):
        path = device.absolute(self.instance.objectFile)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def load(self, held, largest):
        return self.reader.loading(held, lambda stored, data: (stored, data), largest)

    def test_damagedWithoutACopy(self):
        """Read whole (C-GET), left in its file (a large one), located first
        (C-MOVE), for the web: Damaged each time."""
        [located] = self.reader.locate([self.instance])
        for held, largest in ((self.instance, sys.maxsize), (self.instance, 0), (located, sys.maxsize)):
            with self.assertRaises(Damaged) as raised:
                self.load(held, largest)
            self.assertIn("(7FE0,0010)", str(raised.exception))
            self.assertIn("past the end of the dataset", str(raised.exception))
        self.assertRaises(Damaged, self.reader.intact, IndexedPath(self.path, self.instance))

    def test_wholeMirrorCopyRead(self):
        copy = self.write(self.mirror, self.whole)
        [located] = self.reader.locate([self.instance])
        with capturedLogs() as events:
            for held in (self.instance, located):
                stored, data = self.load(held, sys.maxsize)
                self.assertEqual((stored.path, data), (copy, self.whole[stored.datasetOffset:]))
            read = self.reader.intact(IndexedPath(self.path, self.instance))
        self.assertEqual((read, read.instance), (copy, self.instance))
        self.assertEqual(len(events), 3)
        self.assertIn(f"{self.path} cannot be read (truncated or damaged: element (7FE0,0010)", formatEvent(events[0]))
        self.assertIn(f"its mirror copy {copy} is read instead", formatEvent(events[0]))

    def test_damagedCopyNotRead(self):
        self.write(self.mirror, self.whole[:-2])
        self.assertRaises(Damaged, self.load, self.instance, sys.maxsize)
        self.assertRaises(Damaged, self.reader.intact, IndexedPath(self.path, self.instance))

    def test_fileErrorTellsALossFromAFileNotReadHere(self):
        """The start-up check's ``fileError``: a file cut short or gone is a
        loss (a plain reason); one that cannot be read here (a folder in its
        place, as permissions or an I/O error) is ``Unchecked``, no loss
        shown; a whole one None."""
        error = self.reader.fileError("MAG0", "P/cut.dcm")
        self.assertIn("(7FE0,0010)", error)
        self.assertNotIsInstance(error, Unchecked)
        os.remove(self.path)
        error = self.reader.fileError("MAG0", "P/cut.dcm")
        self.assertIn("No such file or directory", error)
        self.assertNotIsInstance(error, Unchecked)
        os.mkdir(self.path)
        self.assertIsInstance(self.reader.fileError("MAG0", "P/cut.dcm"), Unchecked)
        os.rmdir(self.path)
        self.write(self.mag0, self.whole)
        self.assertIsNone(self.reader.fileError("MAG0", "P/cut.dcm"))

    def test_wholeFileRead(self):
        self.write(self.mag0, self.whole)
        stored, data = self.load(self.instance, sys.maxsize)
        self.assertEqual((stored.path, data), (self.path, self.whole[stored.datasetOffset:]))
        self.assertEqual(self.reader.intact(self.path), self.path)


class GoneAfterLocateTests(unittest.TestCase):
    """A file gone from its MAG device after it was located, the index
    still naming it: its mirror copy is read, as a look-up would."""

    def setUp(self):
        self.mag0 = MagDevice("MAG0", self.mktemp())
        self.mirror = MagDevice("MIRROR0", self.mktemp())
        self.instance = Instance("1.1.3", CT_IMAGE_STORAGE, "MAG0", "P/1.dcm", "P", "1", "1.1")
        self.looked = []
        self.reader = ObjectReader([self.mag0], Mirrors({"MAG0": self.mirror}),
                                   lambda uid: self.looked.append(uid) or self.instance)
        for device in (self.mag0, self.mirror):
            path = device.absolute(self.instance.objectFile)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(dicomBytes(3))

    def test_theMirrorCopyIsRead(self):
        [stored] = self.reader.locate([self.instance])
        os.remove(stored.path)
        with capturedLogs() as events:
            read, data = self.reader.reading(stored, lambda held: (held, self.reader.read(held)))
        copy = self.mirror.absolute(self.instance.objectFile)
        self.assertEqual((read.path, data, self.looked), (copy, dicomBytes(3)[read.datasetOffset:], ["1.1.3"]))
        self.assertIn(f"its mirror copy {copy} is read instead", formatEvent(events[0]))

    def test_withoutAMirrorCopyItIsNotFound(self):
        [stored] = self.reader.locate([self.instance])
        os.remove(stored.path)
        os.remove(self.mirror.absolute(self.instance.objectFile))
        with self.assertRaises(FileNotFoundError) as raised:
            self.reader.reading(stored, self.reader.read)
        self.assertNotIsInstance(raised.exception, Deleted)
        self.assertEqual(self.looked, ["1.1.3"])


class CurrentInstanceTests(unittest.TestCase):
    """``currentInstance`` reads a delete's note and the image row in two
    statements, each seeing the latest commit."""

    def test_aDeleteCommittingBetweenItsTwoReadsIsDeleted(self):
        """A delete that noted the object and removed its file commits its
        last step (rows and notes removed together) between the two reads:
        a forward reading the object then finds it ``Deleted`` (skipped),
        never a row naming a gone file (``Unreadable``, a failed attempt)."""
        archive = Archive(self)
        archive.add("PAT1", "1.2.3", "1.2.3.1", "1.2.3.1.1")
        archive.reader.current = functools.partial(currentInstance, archive.index, archive.query)
        with archive.index.engine.connect() as connection:
            [instance] = archive.query.instances(connection, "IMAGE",
                                                 [QueryKey(SOP_INSTANCE_UID, "UI", "1.2.3.1.1")])
        [stored] = archive.reader.locate([instance])
        actions = LocalActions(archive.syncIndex, archive.query, archive.reader, SyncWorkers())
        with archive.index.engine.begin() as connection:  # the delete under way: noted, its file removed
            archive.index.deletes.write(connection, [instance], [None])
        os.remove(stored.path)
        reads = []

        def thenTheDeleteCommits(read, *args, **kwargs):
            found = read(*args, **kwargs)
            reads.append(read)
            if len(reads) == 1:
                with archive.index.engine.begin() as other:  # its last step
                    actions._deleteRows(other, [instance], True)
            return found
        for owner, name in ((archive.query, "instances"), (archive.index.deletes, "noted")):
            self.patch(owner, name, functools.partial(thenTheDeleteCommits, getattr(owner, name)))
        with self.assertRaises(FileNotFoundError) as raised:
            archive.reader.reading(stored, archive.reader.read)
        self.assertIsInstance(raised.exception, Deleted)
        self.assertTrue(reads)
