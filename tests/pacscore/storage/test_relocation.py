"""Moving objects between MAG devices (pacscore.storage.relocation) on a
real archive with MAG0 and MAG1: the mover, NightlyMoveThreshold's
moves and the control commands movedatatodevice and renamedevice."""

import errno
import os
import shutil

import pydicom
from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.errors import ConfigError
from pacscore.control.context import CommandError
from pacscore.control.devices import MoveDataToDevice, RenameDevice, ImageReadTest
from pacscore.storage import relocation
from pacscore.storage.devices import checkPresent, identityOf, removeIfSame
from pacscore.storage.space import MEGABYTE
from tests.pacscore.control.running import RunningArchive

TWO_DEVICES = {"MAGDevices": "2", "MAGDevice1": "./data1/"}


class DeviceMoveTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ini=TWO_DEVICES)
        self.archive = self.running.archive
        yield self.running.storeAgedPatients(os.path.abspath(self.mktemp()))
        self.mag0, self.mag1 = self.archive.devices

    def rows(self):
        index = self.archive.index
        image = index.tables.image
        return self.archive.index.runQuery(lambda connection: {
            row[0]: (row[1], row[2]) for row in connection.execute(
                image.select().with_only_columns(index.imageKey, image.c.DeviceName, image.c.ObjectFile))})

    def contents(self, device, relative):
        with open(device.absolute(relative), "rb") as f:
            return f.read()

    @defer.inlineCallbacks
    def test_moveCopiesRepointsAndDeletes(self):
        before = yield self.rows()
        uid, (_, objectFile) = sorted(before.items())[0]
        content = self.contents(self.mag0, objectFile)
        moved = yield self.archive.deviceMover.move([(uid, "MAG0", objectFile)], "MAG1")
        self.assertEqual(moved, 1)
        self.assertEqual((yield self.rows())[uid], ("MAG1", objectFile))
        self.assertEqual(self.contents(self.mag1, objectFile), content)
        self.assertFalse(os.path.exists(self.mag0.absolute(objectFile)))
        self.assertEqual(self.archive.objectReader.path("MAG1", objectFile), self.mag1.absolute(objectFile))

    @defer.inlineCallbacks
    def test_anotherInstancesFileOfTheSameNameOnTheTargetStays(self):
        """A FileNameSyntax that names A and B alike (B was stored after A
        moved to MAG1): B moves to a numbered name, A keeps its file."""
        before = yield self.rows()
        (a, (_, name)), (b, (_, other)) = sorted(before.items())[:2]
        contentA, contentB = self.contents(self.mag0, name), self.contents(self.mag0, other)
        yield self.archive.deviceMover.move([(a, "MAG0", name)], "MAG1")
        os.rename(self.mag0.absolute(other), self.mag0.absolute(name))
        image = self.archive.index.tables.image
        yield self.archive.index.runWrite(lambda connection: connection.execute(
            image.update().where(self.archive.index.imageKey == b).values(ObjectFile=name)))
        moved = yield self.archive.deviceMover.move([(b, "MAG0", name)], "MAG1")
        self.assertEqual(moved, 1)
        base, extension = os.path.splitext(name)
        rows = yield self.rows()
        self.assertEqual((rows[a], rows[b]), (("MAG1", name), ("MAG1", f"{base}_1{extension}")))
        self.assertEqual(self.contents(self.mag1, name), contentA)
        self.assertEqual(self.contents(self.mag1, f"{base}_1{extension}"), contentB)
        self.assertFalse(os.path.exists(self.mag0.absolute(name)))

    @defer.inlineCallbacks
    def test_anObjectWhoseRowChangedKeepsItsFile(self):
        """The row names another file now (stored anew): the copy goes, the file stays."""
        before = yield self.rows()
        uid, (_, objectFile) = sorted(before.items())[0]
        other = next(name for _, name in sorted(before.values()) if name != objectFile)
        moved = yield self.archive.deviceMover.move([(uid, "MAG0", other)], "MAG1")
        self.assertEqual(moved, 0)
        self.assertEqual((yield self.rows()), before)
        self.assertTrue(os.path.exists(self.mag0.absolute(other)))
        self.assertFalse(os.path.exists(self.mag1.absolute(other)))

    @defer.inlineCallbacks
    def test_anObjectStoredAnewUnderItsNameWhileItMovesKeepsItsNewFile(self):
        before = yield self.rows()
        uid, (_, objectFile) = sorted(before.items())[0]
        path = self.mag0.absolute(objectFile)
        copyFile = relocation.copyFile

        def storedAnewAfterTheCopy(source, device, relative, convert=None, sopInstanceUID=None):
            copy = copyFile(source, device, relative, convert, sopInstanceUID)
            with open(path + ".new", "wb") as f:
                f.write(b"the new object")
            os.replace(path + ".new", path)
            return copy

        self.patch(relocation, "copyFile", storedAnewAfterTheCopy)
        moved = yield self.archive.deviceMover.move([(uid, "MAG0", objectFile)], "MAG1")
        self.assertEqual(moved, 0)
        self.assertEqual((yield self.rows())[uid], ("MAG0", objectFile))
        self.assertEqual(self.contents(self.mag0, objectFile), b"the new object")
        self.assertFalse(os.path.exists(self.mag1.absolute(objectFile)))

    @defer.inlineCallbacks
    def test_aTargetThatFillsUpEndsTheMoveAfterTheObjectsCopied(self):
        before = yield self.rows()
        objects = [(uid, "MAG0", objectFile) for uid, (_, objectFile) in sorted(before.items())[:4]]
        copyFile, calls = relocation.copyFile, []

        def fullAfterTwo(source, device, relative, convert=None, sopInstanceUID=None):
            calls.append(relative)
            if len(calls) > 2:
                raise OSError(errno.ENOSPC, "No space left on device", device.absolute(relative))
            return copyFile(source, device, relative, convert, sopInstanceUID)

        self.patch(relocation, "copyFile", fullAfterTwo)
        stopped = yield self.assertFailure(defer.ensureDeferred(self.archive.deviceMover.move(objects, "MAG1")),
                                           relocation.MoveStopped)
        self.assertEqual((stopped.moved, stopped.error.errno), (2, errno.ENOSPC))
        self.assertEqual(len(calls), 3)
        rows = yield self.rows()
        for n, (uid, _, objectFile) in enumerate(objects):
            where = "MAG1" if n < 2 else "MAG0"
            self.assertEqual(rows[uid], (where, objectFile))
            self.assertEqual([os.path.exists(d.absolute(objectFile)) for d in (self.mag0, self.mag1)],
                             [where == "MAG0", where == "MAG1"])

        calls.clear()  # movedatatodevice says how far it got
        error = yield self.assertFailure(self.running.run(MoveDataToDevice(), "MAG1,MAG0"), CommandError)
        self.assertEqual(str(error), "2 object(s) moved from MAG0 to MAG1, then stopped: "
                                     f"[Errno {errno.ENOSPC}] No space left on device: '{self.mag1.absolute(calls[-1])}'")

    def test_removeIfSameKeepsAFileStoredSince(self):
        path = os.path.join(self.mag0.path, "x.dcm")
        with open(path, "wb") as f:
            f.write(b"old")
        old = identityOf(path)
        removeIfSame(path, old)
        self.assertFalse(os.path.exists(path))
        with open(path, "wb") as f:
            f.write(b"new")
        removeIfSame(path, old)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"new")
        self.assertEqual([name for name in os.listdir(self.mag0.path) if "moved" in name], [])

    @defer.inlineCallbacks
    def test_moveIfBelowMovesTheLeastRecentlyUsedPatients(self):
        keeper = self.archive.spaceKeeper
        keeper.freeSpace = lambda path: (12 - len(self.running.files())) * MEGABYTE
        yield defer.ensureDeferred(keeper.moveIfBelow(0, "MAG1"))
        self.assertEqual(len(self.running.files()), 12)
        yield defer.ensureDeferred(keeper.moveIfBelow(6 * MEGABYTE, "MAG1"))  # 0 free: two patients go
        rows = yield self.rows()
        self.assertEqual(sorted(device for device, _ in rows.values()), ["MAG0"] * 4 + ["MAG1"] * 8)
        self.assertEqual(len(self.running.files()), 4)
        self.assertEqual((yield self.running.count("patient")), 3)

    @defer.inlineCallbacks
    def moveIfBelowFailingAfterFive(self, error):
        """The error lines of a NightlyMoveThreshold onto MAG1 whose sixth
        copy fails with ``error``."""
        keeper = self.archive.spaceKeeper
        keeper.freeSpace = lambda path: (12 - len(self.running.files())) * MEGABYTE
        copyFile, calls = relocation.copyFile, []

        def failingAfterFive(source, device, relative, convert=None, sopInstanceUID=None):
            calls.append(relative)
            if len(calls) > 5:
                raise error
            return copyFile(source, device, relative, convert, sopInstanceUID)
        self.patch(relocation, "copyFile", failingAfterFive)
        with capturedLogs() as events:
            yield defer.ensureDeferred(keeper.moveIfBelow(12 * MEGABYTE, "MAG1"))
        self.assertEqual(len(self.running.files()), 7)
        return [(e["log_level"], formatEvent(e)) for e in events if e["log_level"] >= LogLevel.error]

    @defer.inlineCallbacks
    def test_moveIfBelowOntoATargetThatFillsUp(self):
        """One error line names the full target, what was moved and the
        space free after; no traceback."""
        self.assertEqual((yield self.moveIfBelowFailingAfterFive(OSError(errno.ENOSPC, "No space left on device"))),
                         [(LogLevel.error, f"NightlyMoveThreshold: MAG1 is full ([Errno {errno.ENOSPC}] No space left "
                                           "on device): move stopped after 1 patient(s) and 1 object(s) of the "
                                           "next; 5 MB free on MAG0")])

    @defer.inlineCallbacks
    def test_moveIfBelowOntoATargetThatCannotBeWritten(self):
        """A target gone (a disk not mounted) is not said to be full."""
        self.assertEqual((yield self.moveIfBelowFailingAfterFive(OSError(errno.ENOENT, "MAG1 is not there"))),
                         [(LogLevel.error, f"NightlyMoveThreshold: MAG1 cannot be written ([Errno {errno.ENOENT}] "
                                           "MAG1 is not there): move stopped after 1 patient(s) and 1 object(s) of "
                                           "the next; 5 MB free on MAG0")])

    @defer.inlineCallbacks
    def test_moveDataToDeviceThenRenameDeviceThenTestImages(self):
        output = yield self.running.run(MoveDataToDevice(), "MAG1,MAG0")
        self.assertEqual(output, "12 object(s) moved from MAG0 to MAG1")
        self.assertEqual(self.running.progress, ["12 of 12 objects moved to MAG1"])
        self.assertEqual(self.running.files(), [])
        self.assertEqual((yield self.running.run(ImageReadTest(), "MAG1")),
                         "MAG1: 12 of 12 files read to their end, 0 unusable")
        # the disk of MAG1 is now configured as MAG0: point the rows back without moving a file
        for name in os.listdir(self.mag1.path):
            if not name.startswith("."):
                os.rename(os.path.join(self.mag1.path, name), os.path.join(self.mag0.path, name))
        self.assertEqual((yield self.running.run(RenameDevice(), "MAG1,MAG0")), "12 image(s) renamed from MAG1 to MAG0")
        self.assertEqual((yield self.running.run(ImageReadTest(), "MAG0")),
                         "MAG0: 12 of 12 files read to their end, 0 unusable")

    @defer.inlineCallbacks
    def test_moveDataFromADeviceNotThereFails(self):
        yield self.running.run(MoveDataToDevice(), "MAG1,MAG0")
        os.rename(self.mag1.path, self.mag1.path + ".old")
        error = yield self.assertFailure(self.running.run(MoveDataToDevice(), "MAG0,MAG1"), CommandError)
        self.assertEqual(str(error), "MAG1 is not there (a disk not mounted?)")
        self.assertEqual(sorted(device for device, _ in (yield self.rows()).values()), ["MAG1"] * 12)

    @defer.inlineCallbacks
    def test_moveDataThatLeavesObjectsFails(self):
        os.unlink(self.running.files()[0])
        error = yield self.assertFailure(self.running.run(MoveDataToDevice(), "MAG1,MAG0"), CommandError)
        self.assertEqual(str(error), "11 of 12 object(s) moved from MAG0 to MAG1, 1 not (gone, replaced or "
                                     "unreadable: see the warnings)")

    @defer.inlineCallbacks
    def test_badArguments(self):
        for command, arguments, message in ((MoveDataToDevice(), "MAG0,MAG0", "MAG0 is both the source and the target"),
                                            (MoveDataToDevice(), "MAG2,MAG0", "no device 'MAG2'"),
                                            (RenameDevice(), "MAG0,MAG7", "no device 'MAG7'"),
                                            (RenameDevice(), ",MAG0", "renamedevice needs the device name")):
            error = yield self.assertFailure(self.running.run(command, arguments), CommandError)
            self.assertIn(message, str(error))


class NightlyMoveConfigurationTests(unittest.TestCase):

    def test_nightlyServices(self):
        running = RunningArchive(self, ini={**TWO_DEVICES, "NightlyMoveThreshold": "100", "NightlyMoveTarget": "mag1",
                                            "NightlyCleanThreshold": "50"})
        services = running.archive.spaceServices()[1:]
        self.assertEqual([(service.name, service.hour) for service in services],
                         [("NightlyCleanThreshold", 1), ("NightlyMoveThreshold", 2)])
        self.assertEqual(running.archive.nightlyMoveTarget, "MAG1")

    def test_targetMustBeAnotherMagDevice(self):
        for ini in ({"NightlyMoveThreshold": "100", "NightlyMoveTarget": "MAG1"},
                    {**TWO_DEVICES, "NightlyMoveThreshold": "100", "NightlyMoveTarget": "MAG0"}):
            error = self.assertRaises(ConfigError, RunningArchive, self, ini=ini)
            self.assertIn("NightlyMoveThreshold moves patients from MAG0 to another MAG device", str(error))


class ArchiveCompressionTests(unittest.TestCase):
    """ArchiveCompression converts the objects that move to another device."""

    @defer.inlineCallbacks
    def setUpArchive(self, compression):
        self.running = RunningArchive(self, ini=dict(TWO_DEVICES, ArchiveCompression=compression))
        self.archive = self.running.archive
        yield self.running.storeAgedPatients(os.path.abspath(self.mktemp()))
        self.originals = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, self.running.files())}

    def moved(self):
        """The data sets on MAG1, by SOP Instance UID."""
        mag1 = self.archive.devices[1].path
        paths = [os.path.join(folder, name) for folder, _, names in os.walk(mag1) if "/." not in folder
                 for name in names]
        return {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, paths)}

    @defer.inlineCallbacks
    def test_losslessCompressionOnTheWay(self):
        yield self.setUpArchive("j2")
        self.assertEqual((yield self.running.run(MoveDataToDevice(), "MAG1,MAG0")), "12 object(s) moved from MAG0 to MAG1")
        moved = self.moved()
        self.assertEqual(set(moved), set(self.originals))
        for uid, ds in moved.items():
            original = self.originals[uid]
            self.assertEqual(ds.file_meta.TransferSyntaxUID, "1.2.840.10008.1.2.4.57")
            self.assertEqual(ds.file_meta.MediaStorageSOPInstanceUID, uid)
            self.assertEqual((ds.PatientID, ds.SOPClassUID), (original.PatientID, original.SOPClassUID))
            self.assertTrue((ds.pixel_array == original.pixel_array).all())
        self.assertEqual((yield self.running.run(ImageReadTest(), "MAG1")),
                         "MAG1: 12 of 12 files read to their end, 0 unusable")

    @defer.inlineCallbacks
    def test_asStoredByDefaultAndForCodesNotWritableHere(self):
        for compression in ("as", "s1"):
            yield self.setUpArchive(compression)
            contents = {}
            for path in self.running.files():
                with open(path, "rb") as f:
                    contents[pydicom.dcmread(path).SOPInstanceUID] = f.read()
            yield self.running.run(MoveDataToDevice(), "MAG1,MAG0")
            mag1 = self.archive.devices[1]
            rows = yield self.archive.index.runQuery(lambda connection: connection.execute(
                self.archive.index.tables.image.select()).mappings().all())
            for row in rows:
                with open(mag1.absolute(row["ObjectFile"]), "rb") as f:
                    self.assertEqual(f.read(), contents[row["SOPInstanceUID"]])


class MirroredMoveTests(unittest.TestCase):
    """Moves between mirrored MAG devices: MAG0 mirrored on MIRROR0, MAG1
    on MIRROR1."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ini={**TWO_DEVICES, "MIRRORDevices": "2", "MIRRORDevice0": "./mirror0/",
                                                 "MIRRORDevice1": "./mirror1/"})
        self.archive = self.running.archive
        yield self.running.storeAgedPatients(os.path.abspath(self.mktemp()))
        self.mag0, self.mag1 = self.archive.devices
        self.mirrors = self.archive.mirrors
        rows = yield DeviceMoveTests.rows(self)
        self.uid, (_, self.objectFile) = sorted(rows.items())[0]
        self.content = DeviceMoveTests.contents(self, self.mag0, self.objectFile)
        for device, name in rows.values():  # as the export queue's MIRRORCOPY jobs copy them
            self.mirrors.copy(device, name, self.mag0.absolute(name))

    def mirrored(self, deviceName):
        with open(self.mirrors.path(deviceName, self.objectFile), "rb") as f:
            return f.read()

    @defer.inlineCallbacks
    def move(self):
        moved = yield self.archive.deviceMover.move([(self.uid, "MAG0", self.objectFile)], "MAG1")
        rows = yield DeviceMoveTests.rows(self)
        return moved, rows[self.uid]

    @defer.inlineCallbacks
    def test_theTargetsMirrorGetsItsCopyBeforeTheOldOneGoes(self):
        self.assertEqual((yield self.move()), (1, ("MAG1", self.objectFile)))
        self.assertEqual(DeviceMoveTests.contents(self, self.mag1, self.objectFile), self.content)
        self.assertEqual(self.mirrored("MAG1"), self.content)
        self.assertFalse(os.path.exists(self.mirrors.path("MAG0", self.objectFile)))

    @defer.inlineCallbacks
    def test_aDamagedFileMovesFromItsWholeMirrorCopy(self):
        with open(self.mag0.absolute(self.objectFile), "wb") as f:
            f.write(self.content[:len(self.content) // 2])
        with capturedLogs() as events:
            self.assertEqual((yield self.move()), (1, ("MAG1", self.objectFile)))
        self.assertEqual(DeviceMoveTests.contents(self, self.mag1, self.objectFile), self.content)
        self.assertEqual(self.mirrored("MAG1"), self.content)
        self.assertFalse(os.path.exists(self.mag0.absolute(self.objectFile)))
        self.assertIn("its mirror copy", " ".join(formatEvent(e) for e in events))

    @defer.inlineCallbacks
    def test_aMissingFileMovesFromItsMirrorCopy(self):
        os.unlink(self.mag0.absolute(self.objectFile))
        self.assertEqual((yield self.move()), (1, ("MAG1", self.objectFile)))
        self.assertEqual(DeviceMoveTests.contents(self, self.mag1, self.objectFile), self.content)
        self.assertEqual(self.mirrored("MAG1"), self.content)
        self.assertFalse(os.path.exists(self.mirrors.path("MAG0", self.objectFile)))

    @defer.inlineCallbacks
    def test_aDamagedFileWithoutAWholeCopyStays(self):
        for path in (self.mag0.absolute(self.objectFile), self.mirrors.path("MAG0", self.objectFile)):
            with open(path, "wb") as f:
                f.write(self.content[:len(self.content) // 2])
        with capturedLogs() as events:
            self.assertEqual((yield self.move()), (0, ("MAG0", self.objectFile)))
        self.assertTrue(os.path.exists(self.mirrors.path("MAG0", self.objectFile)))
        self.assertFalse(os.path.exists(self.mag1.absolute(self.objectFile)))
        self.assertIn("not moved", " ".join(formatEvent(e) for e in events))

    @defer.inlineCallbacks
    def test_aTargetMirrorThatCannotBeWrittenStopsTheMoveKeepingTheOldCopies(self):
        os.rename(self.mirrors.devices["MAG1"].path, self.mirrors.devices["MAG1"].path + ".away")
        stopped = yield self.assertFailure(defer.ensureDeferred(
            self.archive.deviceMover.move([(self.uid, "MAG0", self.objectFile)], "MAG1")), relocation.MoveStopped)
        self.assertEqual(stopped.moved, 0)
        self.assertEqual((yield DeviceMoveTests.rows(self))[self.uid], ("MAG0", self.objectFile))
        self.assertEqual(self.mirrored("MAG0"), self.content)
        self.assertFalse(os.path.exists(self.mag1.absolute(self.objectFile)))

    @defer.inlineCallbacks
    def restartAfterACrash(self, step):
        """Have the move of the first object stop at ``step`` of the mover
        (a crash there), then start the archive again: its log lines."""
        def crash(*args):
            raise RuntimeError("the server was killed")
        self.patch(self.archive.deviceMover, step, crash)
        yield self.assertFailure(defer.ensureDeferred(
            self.archive.deviceMover.move([(self.uid, "MAG0", self.objectFile)], "MAG1")), RuntimeError)
        yield self.running.stop()
        with capturedLogs() as events:
            self.running = RunningArchive(self, workdir=self.running.workdir)
        self.archive = self.running.archive
        return [formatEvent(e) for e in events if "move" in formatEvent(e)]

    def copiesLeft(self):
        return [os.path.exists(path) for path in (self.mag0.absolute(self.objectFile),
                                                  self.mirrors.path("MAG0", self.objectFile),
                                                  self.mag1.absolute(self.objectFile),
                                                  self.mirrors.path("MAG1", self.objectFile))]

    @defer.inlineCallbacks
    def test_theCopiesOfAMoveCutShortBeforeTheRepointGoAtStartUp(self):
        lines = yield self.restartAfterACrash("_repointRows")
        self.assertEqual((yield DeviceMoveTests.rows(self))[self.uid], ("MAG0", self.objectFile))
        self.assertEqual(self.copiesLeft(), [True, True, False, False])
        self.assertEqual(len(lines), 3)
        self.assertIn(f"removed {self.mag1.absolute(self.objectFile)}: a copy of {self.uid} that a move to MAG1 cut "
                      "short by a stop left, which no image row names", lines)
        self.assertEqual(lines[-1], "1 object(s) were moving between MAG devices when the server stopped: 2 copies "
                                    "no image row names removed")

    @defer.inlineCallbacks
    def test_theOldCopiesOfAMoveCutShortAfterTheRepointGoAtStartUp(self):
        yield self.restartAfterACrash("_remove")
        self.assertEqual((yield DeviceMoveTests.rows(self))[self.uid], ("MAG1", self.objectFile))
        self.assertEqual(self.copiesLeft(), [False, False, True, True])
        self.assertEqual(DeviceMoveTests.contents(self, self.mag1, self.objectFile), self.content)

    @defer.inlineCallbacks
    def test_aMoveThatEndsLeavesNoMark(self):
        yield self.move()
        marks = self.archive.moveMarks.table
        self.assertEqual((yield self.archive.index.runQuery(
            lambda connection: connection.execute(marks.select()).all())), [])

    @defer.inlineCallbacks
    def restartWithoutMAG1(self, unmounted):
        """A move to MAG1 cut short before the repoint; the next start-ups
        find MAG1's folder gone or, with ``unmounted``, empty (a mount
        point whose disk is not mounted): its marks are kept, nothing is
        written there (no object goes to it), and its copies go at the
        start-up after MAG1 is there again."""
        def crash(*args):
            raise RuntimeError("the server was killed")
        self.patch(self.archive.deviceMover, "_repointRows", crash)
        yield self.assertFailure(defer.ensureDeferred(
            self.archive.deviceMover.move([(self.uid, "MAG0", self.objectFile)], "MAG1")), RuntimeError)
        yield self.running.stop()
        os.rename(self.mag1.path, self.mag1.path + ".away")
        if unmounted:
            os.mkdir(self.mag1.path)
        for _ in range(2):
            with capturedLogs() as events:
                running = RunningArchive(self, workdir=self.running.workdir)
            self.assertIn("1 object(s) were moving between MAG devices when the server stopped: 0 copies no image "
                          "row names removed; 1 kept for the next start-up: their device is not there",
                          [formatEvent(e) for e in events])
            self.assertEqual(os.listdir(self.mag1.path) if unmounted else os.path.exists(self.mag1.path),
                             [] if unmounted else False)
            self.assertRaises(FileNotFoundError, checkPresent, running.archive.devices[1])
            yield running.stop()
        if unmounted:
            os.rmdir(self.mag1.path)
        os.rename(self.mag1.path + ".away", self.mag1.path)
        with capturedLogs() as events:
            self.running = RunningArchive(self, workdir=self.running.workdir)
        self.assertIn("1 object(s) were moving between MAG devices when the server stopped: 2 copies no image row "
                      "names removed", [formatEvent(e) for e in events])
        self.assertEqual(self.copiesLeft(), [True, True, False, False])

    def test_goneFolderKeepsItsMarksAtStartUp(self):
        return self.restartWithoutMAG1(unmounted=False)

    def test_emptyFolderKeepsItsMarksAtStartUp(self):
        return self.restartWithoutMAG1(unmounted=True)


class OneFolderTwoDevicesTests(unittest.TestCase):
    """MAG0 and MAG1 are one folder (MAG1 a symbolic link to MAG0's)."""

    @defer.inlineCallbacks
    def test_theStartUpCleanUpKeepsTheIndexedFileUnderTheOtherName(self):
        """A move from MAG0 to MAG1 cut short: each object's copy "on MAG1"
        is the file its row names on MAG0, and stays at start-up."""
        running = RunningArchive(self, ini=TWO_DEVICES)
        archive = running.archive
        yield running.storeAgedPatients(os.path.abspath(self.mktemp()))
        mag0, mag1 = archive.devices
        rows = yield DeviceMoveTests.rows(self=running)
        yield archive.index.runWrite(archive.moveMarks.add, [(uid, device, name) for uid, (device, name)
                                                             in rows.items()], "MAG1")
        yield running.stop()
        shutil.rmtree(mag1.path)
        os.symlink(mag0.path, mag1.path)
        with capturedLogs() as events:
            RunningArchive(self, workdir=running.workdir)
        self.assertIn(f"{len(rows)} object(s) were moving between MAG devices when the server stopped: 0 copies no "
                      "image row names removed", [formatEvent(e) for e in events])
        self.assertTrue(all(os.path.exists(mag0.absolute(name)) for _, name in rows.values()))
