"""regen, regendev, regendir, regenfile, initializetables and makespace on
a real Archive: the index rebuilt from the files, tables cleared through
the index writer, the least recently accessed patients deleted first."""

import functools
import os
import shutil
import time

import pydicom
from pydicom.uid import generate_uid

from sqlalchemy import select
from twisted.internet import defer, reactor, task, threads
from twisted.logger import LogLevel, capturedLogs, formatEvent, globalLogPublisher
from twisted.trial import unittest

from pacscore.archive import StartupError
from pacscore.control import maintenance
from pacscore.control.context import CommandError
from pacscore.export.queue import Target
from pacscore.storage import regen
from pacscore.storage.regen import Regenerator
from pacscore.storage.space import MEGABYTE
from pacscore.testing.corpus import PREFIX, CorpusImage, generateCorpus, makeDataset
from pacscore.testing.orders import orderMessage, writeMessages
from plugins import pacs_control_data as data
from plugins import pacs_control_maintenance as commands
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.db.test_worklistitems import uncommentStepStatus

LEVELS = ("patient", "study", "series", "image")


@defer.inlineCallbacks
def storedArchive(testCase):
    """An archive holding three patients of two series of two images."""
    running = RunningArchive(testCase)
    images = generateCorpus(os.path.abspath(testCase.mktemp()), patients=3, studiesPerPatient=1,
                            seriesPerStudy=2, imagesPerSeries=2)
    yield running.store(images)
    return running, images


class MaintenanceTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.running, self.images = yield storedArchive(self)

    @defer.inlineCallbacks
    def counts(self):
        counts = []
        for level in LEVELS:
            counts.append((yield self.running.count(level)))
        return counts

    @defer.inlineCallbacks
    def test_initializetablesClearsTheImageTables(self):
        self.assertEqual((yield self.counts()), [3, 3, 6, 12])
        output = yield self.running.run(commands.initializeTables, "")
        self.assertEqual(output, "Initialized DICOMPatients, DICOMStudies, DICOMSeries, DICOMImages")
        self.assertEqual((yield self.counts()), [0, 0, 0, 0])
        yield self.running.store(self.images[:1])  # stores go on, with the writer's cache forgotten
        self.assertEqual((yield self.counts()), [1, 1, 1, 1])
        yield self.running.run(commands.initializeTables, "1")
        self.assertEqual((yield self.counts()), [0, 0, 0, 0])
        yield self.assertFailure(self.running.run(commands.initializeTables, "3"), CommandError)

    @defer.inlineCallbacks
    def test_initializetables2ClearsOnlyTheWorklist(self):
        path = os.path.abspath(self.mktemp())
        writeMessages(path, [orderMessage("MSG1", "ACC1", "P1", "Doe^John")])
        yield self.running.run(data.loadHL7, path)
        self.assertEqual((yield self.running.count("worklist")), 1)
        self.assertEqual((yield self.running.run(commands.initializeTables, "2")), "Initialized DICOMWorkList")
        self.assertEqual((yield self.running.count("worklist")), 0)
        self.assertEqual((yield self.counts()), [3, 3, 6, 12])

    @defer.inlineCallbacks
    def test_statusColumnAddedAtRestart(self):
        """dicom.sql gains the Scheduled Procedure Step Status column; the
        restart adds it to the worklist table, and new items are SCHEDULED
        and MPPS marks them (it took an initializetables:2)."""
        yield self.running.stop()
        sql = os.path.join(self.running.workdir, "dicom.sql")
        with open(sql) as f:
            text = uncommentStepStatus(f.read())
        with open(sql, "w") as f:
            f.write(text)
        again = RunningArchive(self, workdir=self.running.workdir)
        items = again.archive.worklistItems
        path = os.path.abspath(self.mktemp())
        writeMessages(path, [orderMessage("MSG1", "ACC1", "P1", "Doe^John")])
        yield again.run(data.loadHL7, path)
        self.assertEqual(items.lookup("ACC1")[0x00400020], "SCHEDULED")
        self.assertEqual((yield again.archive.index.runWrite(items.markPerformed, ["ACC1"], "STARTED")).changed, ["ACC1"])

    @defer.inlineCallbacks
    def test_regenRebuildsTheSameIndex(self):
        before = yield self.running.run(data.deleteSopFromDB, f",,,{self.images[0].sopUID}")
        self.assertIn("1 object", before)
        output = yield self.running.run(commands.regen)
        self.assertEqual(output, "12 file(s) indexed, 0 failed, 0 duplicate SOP instance(s)")
        self.assertEqual((yield self.counts()), [3, 3, 6, 12])
        self.assertEqual(self.running.progress[0], f"Regen device MAG0: {self.running.archive.devices[0].path}")
        self.assertTrue(self.running.progress[-1].startswith("Regeneration complete: 12 files indexed"))

    @defer.inlineCallbacks
    def test_patientsInFoldersNamedBinAndIncomingAreFoundAfterARegen(self):
        """Patient IDs 'bin' and 'Incoming' are stored in folders so named
        (FileNameSyntax 4), which the regen skipped as Conquest's does:
        the two patients were gone after it, with a line on the dgate
        output alone saying these held print jobs.  They are indexed; only
        a PRINTER_FILES folder is left out, with a warning in the server
        log and the output counting its files, and in the closing line."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        stored = []
        for n, patientID in enumerate(("bin", "Incoming")):
            image = CorpusImage(os.path.join(folder, f"{patientID}.dcm"), patientID, generate_uid(PREFIX),
                                generate_uid(PREFIX), generate_uid(PREFIX))
            makeDataset(image.patientID, "Folder^Named", image.studyUID, image.seriesUID, image.sopUID, 1, 1,
                        seed=n).save_as(image.path, enforce_file_format=True)
            stored.append(image)
        yield self.running.store(stored)
        mag0 = self.running.archive.devices[0].path
        self.assertEqual(sorted(os.path.relpath(path, mag0).split(os.sep)[0] for path in self.running.files()
                                if "PAT" not in path), ["Incoming", "bin"])
        printJobs = os.path.join(mag0, "PRINTER_FILES")
        os.makedirs(printJobs)
        shutil.copy(self.images[0].path, os.path.join(printJobs, "slice.dcm"))
        with capturedLogs() as events:
            output = yield self.running.run(commands.regen)
        self.assertEqual(output, "14 file(s) indexed, 0 failed, 0 duplicate SOP instance(s), 1 left out "
                                 "(PRINTER_FILES)")
        patients = yield self.running.archive.index.runQuery(lambda connection: connection.execute(
            select(self.running.archive.index.tables.patient.c.PatientID)).scalars().all())
        self.assertEqual(sorted(patients), ["Incoming", "PAT0000", "PAT0001", "PAT0002", "bin"])
        warning = (f"[Regen] {printJobs}: 1 DICOM file(s) not indexed: a folder named PRINTER_FILES holds a "
                   f"Conquest print server's jobs (slices without IDs), which regen skips as Conquest's does; if "
                   f"they are objects to index, run 'dgate --regendir:MAG0,PRINTER_FILES'")
        self.assertIn(warning, self.running.progress)
        self.assertIn((LogLevel.warn, f"test: regen:: {warning}"),
                      [(event["log_level"], formatEvent(event)) for event in events])

    @defer.inlineCallbacks
    def test_anEmptyIndexBesideStoredFilesIsOnlyWarnedOf(self):
        """An index lost (or switched to a new database) holds no image
        while MAG0 holds the files: the start held the export queue and
        the commitment checks until a regen, with nothing to tell a later
        start, so the objects stored after it waited for a regen (and those
        before it were dropped after a restart anyway).  The start warns,
        naming the regen, and the queue runs as before: a new object is
        forwarded, a forward of an object not re-entered finds nothing."""
        yield self.running.stop()
        for path in self.running.archive.databaseFiles:
            if os.path.exists(path):
                os.unlink(path)
        destination = RunningArchive(self, ae="DEST", listen=True)
        with capturedLogs() as events:
            again = RunningArchive(self, workdir=self.running.workdir)
        again.know(destination)
        self.assertEqual((yield again.count("image")), 0)
        self.assertTrue(again.archive.index.completeness.complete)
        self.assertTrue(any(event["log_level"] == LogLevel.warn and formatEvent(event).startswith(
            "the index holds no image, but MAG0 holds DICOM files (e.g. ") and "run 'dgate --regen:' now" in
            formatEvent(event) for event in events), [formatEvent(event) for event in events])
        new = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1, seriesPerStudy=1,
                             imagesPerSeries=1)[0]
        yield again.store([new])
        archive = again.archive
        for image in (self.images[0], new):
            archive.exportQueue.addForward(destination.ae, "IMAGE",
                                           Target(image.patientID, image.studyUID, image.seriesUID, image.sopUID))
        export = archive.exportService()
        with capturedLogs() as events:
            export.startService()
            self.addCleanup(export.stopService)  # before the archive's shutdown
            for _ in range(100):
                if not archive.exportQueue.counts()["actions"]["pending"]:
                    break
                yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual((yield destination.count("image")), 1)
        lines = " ".join(formatEvent(event) for event in events)
        self.assertIn(f"no stored object of image {self.images[0].sopUID}", lines)
        self.assertNotIn("export queue held", lines)

    @defer.inlineCallbacks
    def test_regendevAndRegendir(self):
        yield self.running.run(commands.initializeTables)
        self.assertIn("4 file(s) indexed", (yield self.running.run(commands.regenDir, "MAG0,PAT0001")))
        self.assertEqual((yield self.counts()), [1, 1, 2, 4])
        self.assertIn("12 file(s) indexed", (yield self.running.run(commands.regenDev, "mag0")))
        self.assertEqual((yield self.counts()), [3, 3, 6, 12])
        for command, arguments in ((commands.regenDev, "MAG9"), (commands.regenDir, "MAG0,../.."),
                                   (commands.regenDir, "MAG0,NOSUCHFOLDER")):
            yield self.assertFailure(self.running.run(command, arguments), CommandError)

    @defer.inlineCallbacks
    def test_regendeviceIsRegendev(self):
        """``regendevice`` is the spelling Conquest's control dispatcher
        matches (the manual prints ``regendev``): dgate said 'unknown
        command --regendevice'."""
        yield self.running.run(commands.initializeTables)
        self.assertIn("12 file(s) indexed", (yield self.running.run(commands.regenDevice, "MAG0")))
        self.assertEqual((yield self.counts()), [3, 3, 6, 12])

    @defer.inlineCallbacks
    def test_regenfileReentersOneFile(self):
        path = self.running.files()[0]
        yield self.running.run(data.deleteImageFromDB, path)
        self.assertEqual((yield self.running.count("image")), 11)
        self.assertIn("1 file(s) indexed", (yield self.running.run(commands.regenFile, path)))
        self.assertEqual((yield self.running.count("image")), 12)
        yield self.assertFailure(self.running.run(commands.regenFile, path + ".missing"), CommandError)

    @defer.inlineCallbacks
    def test_regenfileAndDeleteimagefileStayInsideTheDevice(self):
        victim = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=1, namePrefix="Outside")[0].path
        relative = os.path.relpath(victim, self.running.archive.devices[0].path)
        for name in (f"MAG0:{relative}", "MAG0\\" + relative.replace("/", "\\")):
            for command in (commands.regenFile, data.deleteImageFile):
                error = yield self.assertFailure(self.running.run(command, name), CommandError)
                self.assertIn("is not a file inside MAG0", str(error))
        self.assertTrue(os.path.exists(victim))
        self.assertEqual((yield self.counts()), [3, 3, 6, 12])


class TwoDeviceRegenTests(unittest.TestCase):
    """An old copy of a stored object left on MAG1 (a move cut short)."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ini={"MAGDevices": "2", "MAGDevice1": "./data2/"})
        self.image = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                    seriesPerStudy=1, imagesPerSeries=1)[0]
        yield self.running.store([self.image])
        self.stored = self.running.files()[0]
        mag1 = self.running.archive.devices[1].path
        self.old = os.path.join(mag1, os.path.relpath(self.stored, self.running.archive.devices[0].path))
        os.makedirs(os.path.dirname(self.old))
        shutil.copy(self.image.path, self.old)
        os.utime(self.old, (os.path.getmtime(self.stored) - 86400,) * 2)

    @defer.inlineCallbacks
    def location(self):
        image = self.running.archive.index.tables.image
        rows = yield self.running.archive.index.runQuery(
            lambda connection: connection.execute(select(image.c.DeviceName, image.c.ObjectFile)).all())
        return [tuple(row) for row in rows]

    @defer.inlineCallbacks
    def test_theNewerCopyOnADeviceNotRegeneratedStays(self):
        """... and the old copy stays on disk (a regen deletes nothing)."""
        indexed = yield self.location()
        self.assertEqual([device for device, _ in indexed], ["MAG0"])
        folder = os.path.relpath(os.path.dirname(self.old), self.running.archive.devices[1].path)
        for command, arguments in ((commands.regenDev, "MAG1"), (commands.regenDir, f"MAG1,{folder}"),
                                   (commands.regenFile, self.old)):
            self.assertIn("1 duplicate SOP instance(s)", (yield self.running.run(command, arguments)))
            self.assertEqual((yield self.location()), indexed, command.name)
            self.assertTrue(os.path.exists(self.old), command.name)
            self.assertTrue(os.path.exists(self.stored), command.name)


    @defer.inlineCallbacks
    def test_regenStopsWhenADeviceFolderIsMissing(self):
        """MAG1 unmounted: regen (and regendev of it) fails naming it, and
        leaves the index as it was rather than losing MAG1's objects."""
        yield self.running.run(commands.moveDataToDevice, "MAG1,MAG0")
        indexed = yield self.location()
        self.assertEqual([device for device, _ in indexed], ["MAG1"])
        mag1 = self.running.archive.devices[1].path
        os.rename(mag1, mag1 + ".unmounted")
        for command, arguments in ((commands.regen, ""), (commands.regenDev, "MAG1")):
            error = yield self.assertFailure(self.running.run(command, arguments), CommandError)
            self.assertIn(f"MAG1: no folder {mag1}", str(error))
            self.assertEqual((yield self.location()), indexed)


    @defer.inlineCallbacks
    def test_anInterruptedRegenOfAMissingFolderStopsTheStart(self):
        """MAG1's regen was interrupted and MAG1 is not mounted at the next
        start: pacs does not start rather than regenerate it empty."""
        index = self.running.archive.index
        yield index.runWrite(lambda connection: index.regens.mark(connection, ["MAG1"]))
        yield self.running.stop()
        mag1 = self.running.archive.devices[1].path
        shutil.rmtree(mag1)
        error = self.assertRaises(StartupError, RunningArchive, self, workdir=self.running.workdir)
        self.assertIn("the folder of MAG1 is missing but the index holds objects on it (or a regen of it was "
                      "interrupted)", str(error))
        self.assertFalse(os.path.exists(mag1))


@defer.inlineCallbacks
def waitForForward(testCase, running, image, destination, completeIndex):
    """Queue a forward of ``image`` to ``destination`` in ``running``,
    whose index does not hold it yet, with its export queue running: the
    forward stays queued and nothing is sent until ``completeIndex()``
    (Deferred) has rebuilt the index, then ``destination`` receives it."""
    archive = running.archive
    archive.exportQueue.addForward(destination.ae, "IMAGE",
                                   Target(image.patientID, image.studyUID, image.seriesUID, image.sopUID))
    export = archive.exportService()
    with capturedLogs() as events:
        export.startService()
        testCase.addCleanup(export.stopService)  # before the archive's shutdown
        yield task.deferLater(reactor, 1.5, lambda: None)  # three polls
        testCase.assertEqual(archive.exportQueue.counts()["actions"]["pending"], 1)
        testCase.assertEqual((yield destination.count("image")), 0)
        testCase.assertNotIn("no stored object", " ".join(formatEvent(event) for event in events))
        testCase.assertEqual(sum("export queue held until the index is rebuilt" in formatEvent(event)
                                 for event in events), 1)
        yield completeIndex()
        for _ in range(100):
            if (yield destination.count("image")):
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
    testCase.assertEqual((yield destination.count("image")), 1)
    testCase.assertIn("export queue: the index is rebuilt, the queue runs again",
                      [formatEvent(event) for event in events])


class InterruptedRegenTests(unittest.TestCase):
    """A regen cut short (the server killed between two batches) leaves
    its devices marked; the next start runs it again, while serving."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running, self.images = yield storedArchive(self)
        self.patch(maintenance, "Regenerator", functools.partial(Regenerator, batchSize=5))
        writerWrites = maintenance.writerWrites

        def crashAfterOneBatch(index, reactor):
            write = writerWrites(index, reactor)

            def crashing(fn, *args):
                if self.crashing and self.batches == 1:
                    raise RuntimeError("killed")
                self.batches += 1
                return write(fn, *args)
            return crashing
        self.crashing, self.batches = True, 0
        self.patch(maintenance, "writerWrites", crashAfterOneBatch)

    def marks(self, index):
        return index.runQuery(index.regens.names)

    @defer.inlineCallbacks
    def test_theNextStartCompletesTheIndex(self):
        for command, arguments in ((commands.regen, ""), (commands.regenDev, "MAG0")):
            self.batches = 0
            yield self.assertFailure(self.running.run(command, arguments), RuntimeError)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual((yield self.running.count("image")), 5)
        yield self.running.stop()
        self.crashing = False
        warnings = []
        observer = lambda event: warnings.append(formatEvent(event)) if event["log_level"] == LogLevel.warn else None
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        again = RunningArchive(self, workdir=self.running.workdir)
        again.archive.resume()
        yield again.archive.regenRerun
        self.assertEqual((yield again.count("image")), 12)
        self.assertIn("a regen of MAG0 was interrupted (the server stopped during it): running it again; until it "
                      "ends, queries and retrieves may miss objects stored there, and the export queue and storage "
                      "commitment checks wait", warnings)
        self.assertEqual((yield self.marks(again.archive.index)), [])
        self.assertNotIn("the index holds no image", " ".join(warnings))

    @defer.inlineCallbacks
    def test_aForwardQueuedWaitsForTheRerun(self):
        """A forward queued when the regen was cut short (an upgrade's dgate
        -r killed), of an object the rerun has not re-entered yet, was
        deleted from the queue ("forward to DEST: no stored object of image
        ... matches"): the export queue is held until the rerun ends, then
        sends it."""
        yield self.assertFailure(self.running.run(commands.regen, ""), RuntimeError)
        self.flushLoggedErrors(RuntimeError)
        image = yield self.notIndexed(self.running)
        yield self.running.stop()
        self.crashing = False
        destination = RunningArchive(self, ae="DEST", listen=True)
        again = RunningArchive(self, workdir=self.running.workdir)
        again.know(destination)
        yield waitForForward(self, again, image, destination,
                             lambda: (again.archive.resume(), again.archive.regenRerun)[1])
        self.assertEqual((yield again.count("image")), 12)

    @defer.inlineCallbacks
    def notIndexed(self, running):
        """A corpus image the index of ``running`` does not hold."""
        image = running.archive.index.tables.image
        indexed = yield running.archive.index.runQuery(
            lambda connection: set(connection.execute(select(image.c.SOPInstanceUID)).scalars()))
        return next(corpusImage for corpusImage in self.images if corpusImage.sopUID not in indexed)

    @defer.inlineCallbacks
    def test_initializetablesEndsTheHoldOfAFailedRegen(self):
        """initializetables clears the marks of a regen that failed (an
        empty index asked for: nothing runs it again), but the export queue
        and the storage commitment checks went on waiting for that regen
        until a stop; they go on now."""
        yield self.assertFailure(self.running.run(commands.regenDev, "MAG0"), RuntimeError)
        self.flushLoggedErrors(RuntimeError)
        completeness = self.running.archive.index.completeness
        waiting = completeness.whenComplete()
        self.assertFalse(completeness.complete)
        yield self.running.run(commands.initializeTables, "2")  # the worklist only: the marks stay
        self.assertFalse(completeness.complete)
        yield self.running.run(commands.initializeTables, "")
        self.assertEqual((yield self.marks(self.running.archive.index)), [])
        self.assertTrue(completeness.complete)
        self.assertTrue(waiting.called)

    @defer.inlineCallbacks
    def test_aCompleteRegenLeavesNoMark(self):
        self.crashing = False
        for command, arguments in ((commands.regen, ""), (commands.regenDev, "MAG0")):
            yield self.running.run(command, arguments)
            self.assertEqual((yield self.marks(self.running.archive.index)), [])
        self.crashing, self.batches = True, 0
        errors = []
        observer = lambda event: errors.append(formatEvent(event)) if event["log_level"] >= LogLevel.error else None
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        yield self.assertFailure(self.running.run(commands.regen), RuntimeError)
        self.assertEqual((yield self.marks(self.running.archive.index)), ["MAG0"])
        self.assertTrue(any("regen: failed: the index may miss objects of MAG0, which stay marked (PacsRegen): the "
                            "regen runs again at the next start, or run it again now" in line for line in errors),
                        errors)
        self.flushLoggedErrors(RuntimeError)
        yield self.running.run(commands.initializeTables, "")  # an empty index, as asked: nothing to run again
        self.assertEqual((yield self.marks(self.running.archive.index)), [])


class MakeSpaceTests(unittest.TestCase):
    """Free space is counted as one MB per deleted file."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self)
        yield self.running.storeAgedPatients(os.path.abspath(self.mktemp()))
        self.command = maintenance.MakeSpace()
        self.running.archive.spaceKeeper.freeSpace = lambda path: (12 - len(self.running.files())) * MEGABYTE

    @defer.inlineCallbacks
    def test_deletesTheLeastRecentlyAccessedPatientsFirst(self):
        output = yield self.running.run(self.command, "5")
        self.assertEqual(output.split("\n"), ["deleted patient PAT0002: 4 object(s)",
                                              "deleted patient PAT0001: 4 object(s)", "8 MB free on MAG0"])
        self.assertEqual(self.running.progress, output.split("\n")[:2])
        self.assertEqual((yield self.running.count("patient")), 1)

    @defer.inlineCallbacks
    def test_enoughSpaceDeletesNothing(self):
        self.assertEqual((yield self.running.run(self.command, "0")), "0 MB free on MAG0")
        self.assertEqual((yield self.running.count("image")), 12)

    @defer.inlineCallbacks
    def test_notEnoughSpaceEvenWithEverythingDeleted(self):
        error = yield self.assertFailure(self.running.run(self.command, "100"), CommandError)
        self.assertIn("only 12 MB free on MAG0 after deleting 3 patient(s)", str(error))
        yield self.assertFailure(self.running.run(self.command, "lots"), CommandError)


class StoresDuringRegenTests(unittest.TestCase):
    """Stores while a regen re-enters the files, its tables cleared."""

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ini={"MIRRORDevices": "1", "MIRRORDevice0": "./mirror/"})
        self.images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=1, imagesPerSeries=2)
        yield self.running.store(self.images)
        self.mirror = os.path.join(self.running.workdir, "mirror")
        mag0 = self.running.archive.devices[0].path
        for path in self.running.files():  # as the export queue's MIRRORCOPY jobs copy them
            copy = os.path.join(self.mirror, os.path.relpath(path, mag0))
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            shutil.copy(path, copy)

    def mirrored(self):
        return sorted(os.path.relpath(os.path.join(folder, name), self.mirror)
                      for folder, _, names in os.walk(self.mirror) for name in names if "/." not in folder)

    def storeOnRead(self, count, store):
        """Have the regen wait for ``store(path)`` (a Deferred, in the
        reactor) before it reads its ``count``-th file, at ``path``."""
        read = regen.fileRecord
        reads = []

        def storeThenRead(path, *args, **kw):
            reads.append(path)
            if len(reads) == count:
                threads.blockingCallFromThread(reactor, store, path)
            return read(path, *args, **kw)
        self.patch(regen, "fileRecord", storeThenRead)

    @defer.inlineCallbacks
    def test_anObjectStoredAgainLeavesNoOldCopy(self):
        """Its store found no row naming the old file (the tables were
        cleared), so left it: the regen removes it, and its mirror copy, as
        the store would have; a later dgate -r cannot bring it back.  The
        study is entered with the first file (a batch of one), so the store
        of the second object again is not refused."""
        before = self.running.files()
        mirrored = self.mirrored()
        self.patch(maintenance, "Regenerator", functools.partial(Regenerator, batchSize=1))
        self.storeOnRead(2, lambda path: self.running.store(
            [image for image in self.images if image.sopUID == pydicom.dcmread(path).SOPInstanceUID]))
        output = yield self.running.run(commands.regen)
        self.assertEqual(output, "1 file(s) indexed, 0 failed, 1 duplicate SOP instance(s)")
        after = self.running.files()
        self.assertEqual(len(after), 2, after)
        self.assertEqual(len(set(after) - set(before)), 1)
        self.assertEqual((yield self.running.count("image")), 2)
        self.assertTrue(any("an older copy of an object stored again since the regen began" in line
                            for line in self.running.progress), self.running.progress)
        mag0 = self.running.archive.devices[0].path
        self.assertEqual(self.mirrored(), [name for name in mirrored if os.path.join(mag0, name) in after])

    def copyOf(self, image, relative, mtime, description):
        """Another copy of the stored ``image``, at ``relative`` on MAG0
        and on the mirror, modified at ``mtime``; its path."""
        ds = pydicom.dcmread(image.path)
        ds.SeriesDescription = description
        path = os.path.join(self.running.archive.devices[0].path, relative)
        for copy in (path, os.path.join(self.mirror, relative)):
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            ds.save_as(copy, enforce_file_format=True)
            os.utime(copy, (mtime, mtime))
        return path

    @defer.inlineCallbacks
    def test_copiesThatPredateTheRegenStayWhateverTheirTimes(self):
        """The copy the walk meets first modified a month ahead (a clock
        that was ahead), the other an hour ago: no store wrote either
        during the regen, so both stay, on MAG0 and the mirror (the second
        used to be removed, taken for one a store had replaced)."""
        now = time.time()
        stored = self.running.files()[0]
        os.utime(stored, (now + 30 * 86400, now + 30 * 86400))
        other = self.copyOf(self.images[0], "ZZZ/x.dcm", now - 3600, "THE OTHER COPY")
        before, mirrored = self.running.files(), self.mirrored()
        output = yield self.running.run(commands.regen)
        self.assertEqual(output, "2 file(s) indexed, 0 failed, 1 duplicate SOP instance(s)")
        self.assertEqual(self.running.files(), before)
        self.assertEqual(self.mirrored(), mirrored)
        self.assertIn(f"[Regen] {other}: same SOP instance as the newer indexed copy, not indexed (kept on disk)",
                      self.running.progress)

    @defer.inlineCallbacks
    def test_aCopyRestoredDuringTheRegenRemovesNothing(self):
        """The current copy of an object, written two hours ago, and an old
        backup copy of it restored (cp: modified now) during the regen into
        a folder walked first: both stay, on MAG0 and the mirror (the
        current one used to be removed, with its mirror copy)."""
        mag0 = self.running.archive.devices[0].path
        [stored] = [path for path in self.running.files() if pydicom.dcmread(path).SOPInstanceUID == self.images[1].sopUID]
        for path in (stored, os.path.join(self.mirror, os.path.relpath(stored, mag0))):
            os.unlink(path)
        current = self.copyOf(self.images[1], "ZZZ/050.dcm", time.time() - 7200, "CURRENT VERSION")
        restored = os.path.join(mag0, "QQQ", "restored-050.dcm")
        os.makedirs(os.path.dirname(restored))
        backup = os.path.join(os.path.abspath(self.mktemp()), "050.dcm")
        os.makedirs(os.path.dirname(backup))
        ds = pydicom.dcmread(current)
        ds.SeriesDescription = "OLD BACKUP"
        ds.save_as(backup, enforce_file_format=True)
        self.storeOnRead(1, lambda path: threads.deferToThread(shutil.copyfile, backup, restored))
        before, mirrored = self.running.files(), self.mirrored()
        output = yield self.running.run(commands.regen)
        self.assertEqual(output, "2 file(s) indexed, 0 failed, 1 duplicate SOP instance(s)")
        self.assertEqual(self.running.files(), sorted(before + [restored]))
        self.assertEqual(self.mirrored(), mirrored)
        self.assertEqual(pydicom.dcmread(current).SeriesDescription, "CURRENT VERSION")
        self.assertIn(f"[Regen] {current}: same SOP instance as the newer indexed copy, not indexed (kept on disk)",
                      self.running.progress)

    @defer.inlineCallbacks
    def test_aCopyRefusedDuringTheRegenIsNotIndexed(self):
        """A store refused during the regen (its copy, newer, listed by the
        store only once the regen has read the lists): the regen asks the
        store, and indexes the acknowledged copy, not the refused one."""
        store = self.running.archive.objectStore
        refused = self.copyOf(self.images[0], "ZZZ/x.dcm", time.time(), "REFUSED")

        def refuse(path):
            store._unindexed[self.images[0].sopUID] = [("MAG0", "ZZZ/x.dcm")]  # as _replaceUnindexed does
            return defer.succeed(None)
        self.patch(maintenance, "Regenerator", functools.partial(Regenerator, batchSize=1))
        self.storeOnRead(2, refuse)
        output = yield self.running.run(commands.regen)
        self.assertEqual(output, "2 file(s) indexed, 0 failed, 1 duplicate SOP instance(s)")
        self.assertIn(f"[Regen] {refused}: same SOP instance as the indexed copy, and a copy the index failed on "
                      f"(listed in .pacs-unindexed: its sender was told so), not indexed (kept on disk)",
                      self.running.progress)
        self.assertTrue(os.path.exists(refused))

    @defer.inlineCallbacks
    def test_regendirAndRegenfileRemoveNothing(self):
        """They clear no table, so a store during them finds the rows:
        an older copy they are asked to enter stays, on MAG0 and the mirror,
        whether the indexed copy is newer by its time (written under a
        clock ahead: the file used to be removed) or stored during them."""
        now = time.time()
        [stored] = [path for path in self.running.files() if pydicom.dcmread(path).SOPInstanceUID == self.images[0].sopUID]
        os.utime(stored, (now + 600, now + 600))
        copies = [self.copyOf(self.images[0], f"{folder}/x.dcm", now - 600, "AN OLDER COPY")
                  for folder in ("manual", "manual2")]
        copies.append(self.copyOf(self.images[1], "manual3/x.dcm", now - 600, "AN OLDER COPY"))
        self.storeOnRead(1, lambda path: self.running.store(self.images[1:]))
        for command, arguments in ((commands.regenDir, "MAG0,manual3"), (commands.regenFile, "MAG0\\manual\\x.dcm"),
                                   (commands.regenDir, "MAG0,manual2")):
            output = yield self.running.run(command, arguments)
            self.assertEqual(output, "0 file(s) indexed, 0 failed, 1 duplicate SOP instance(s)")
        mag0 = self.running.archive.devices[0].path
        for path in copies:
            self.assertTrue(os.path.exists(path), path)
            self.assertIn(os.path.relpath(path, mag0), self.mirrored())

    @defer.inlineCallbacks
    def test_aStoreOfAStudyNotReenteredIsRefused(self):
        """An object of the study under another Patient ID, stored before
        the regen re-entered the study: refused (it used to be accepted,
        and the study's own objects then refused by the regen, and by every
        later dgate -r, as inconsistent); the study's objects all indexed."""
        stored = self.images[0].path
        intruder = os.path.join(os.path.abspath(self.mktemp()), "intruder.dcm")
        os.makedirs(os.path.dirname(intruder))
        ds = pydicom.dcmread(stored)
        ds.PatientID, ds.SOPInstanceUID = "AAINTRUDER", "1.2.3.999"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(intruder, enforce_file_format=True)
        outcomes = []
        self.storeOnRead(1, lambda path: self.running.run(data.addImageFile, intruder).addBoth(outcomes.append))
        output = yield self.running.run(commands.regen)
        self.assertEqual(output, "2 file(s) indexed, 0 failed, 0 duplicate SOP instance(s)")
        [error] = outcomes
        self.assertIsInstance(error.value, CommandError)
        self.assertIn("the index is being rebuilt (regen): stores of studies not re-entered yet are refused until "
                      "it ends", str(error.value))
        image = self.running.archive.index.tables.image
        patients = yield self.running.archive.index.runQuery(
            lambda connection: connection.execute(select(image.c.ImagePat)).scalars().all())
        self.assertEqual(patients, ["PAT0000", "PAT0000"])
        self.assertEqual(len(self.running.files()), 2)
        output = yield self.running.run(commands.regen)
        self.assertEqual(output, "2 file(s) indexed, 0 failed, 0 duplicate SOP instance(s)")
