"""Tests for pacscore.export.actions: ``process ... by`` a Lua file; a
delete interrupted by a crash."""

import os
import shutil
from types import SimpleNamespace

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import select
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.control.data import AddImageFile
from pacscore.converters.context import ConverterServices
from pacscore.converters.registry import CommandRegistry
from pacscore.export.actions import LocalActions
from pacscore.export.forwarder import ForwardError
from pacscore.export.queue import Action, Target
from pacscore.storage import reader
from pacscore.storage.devices import removeIfSame as realRemoveIfSame
from pacscore.storage.regen import fileRecord
from pacscore.testing.corpus import generateCorpus
from plugins import pacs_control_data as data
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.export.fixtures import SyncWorkers


class ProcessByLuaTests(unittest.TestCase):
    """``process study by x.lua text`` runs the script (relative to the
    configuration folder) with command_line the text and no Data, as
    Conquest does, not a shell."""

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        configuration = SimpleNamespace(ini=DicomIni.fromString(""), configDir=self.folder, workdir=self.folder)
        self.actions = LocalActions(None, None, None, SyncWorkers(), ConverterServices(configuration=configuration,
                                                                                      commands=CommandRegistry()))

    def process(self, script, command):
        with open(os.path.join(self.folder, "study.lua"), "w") as f:
            f.write(script)
        action = Action(1, "process", "", "STUDY", Target("PAT1", "1.2.3"), "", {"by": command}, 0)
        with capturedLogs() as events:
            d = defer.ensureDeferred(self.actions.process(action))
        return d, [event["text"] for event in events if "text" in event]

    def test_runsTheScript(self):
        d, printed = self.process("print(command_line, Data.PatientID)", "study.lua E:/x::PAT1  1.2.3")
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(printed, ["E:/x::PAT1  1.2.3\tnil"])

    def test_scriptRunsOnData(self):
        """script(rule) runs the line on Data, the empty object, as Data:Script(rule)."""
        d, printed = self.process("print(script('nop'))", "study.lua")
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(printed, ["continue"])

    def test_failingScriptIsAFailure(self):
        d, _ = self.process("error('broken')", "study.lua")
        failure = self.failureResultOf(d, ForwardError)
        self.assertEqual(str(failure.value), "process script study.lua: study.lua:1: broken")


class Crashed(Exception):
    """The server killed while removing files."""


class DeleteHelpers:
    """What the tests of deletes cut short or stored into do to a ``RunningArchive``."""

    def killedWhileRemoving(self, running, share):
        """Make the next delete of ``running`` remove the files of the first
        ``share`` of its objects, then die (``Crashed``)."""
        actions = running.archive.localActions
        removeFiles = actions._removeUnchanged

        def killed(instances, identities):
            removeFiles(instances[:int(len(instances) * share)], identities)
            raise Crashed()
        actions._removeUnchanged = killed

    def dyingAfterWrites(self, running, writes=None):
        """Make ``running``'s server die (``Crashed``) once ``writes`` more
        index writer requests have committed (None: when the function
        returned is called): those after it never run."""
        index = running.archive.index
        runWrite, left = index.runWrite, [writes]

        def runOrDie(*args, **kw):
            if left[0] == 0:
                return defer.fail(Crashed())
            if left[0] is not None:
                left[0] -= 1
            return runWrite(*args, **kw)
        index.runWrite = runOrDie
        return lambda: left.__setitem__(0, 0)

    def storedAgainBeforeTheRemoval(self, running, images, then=None):
        """Make the next delete of ``running`` store ``images`` again (each
        acknowledged) once it has noted its objects, before it removes
        their files, then go on with ``then`` (the removal if None)."""
        actions = running.archive.localActions
        workers = actions.workers

        class StoringFirst:
            @defer.inlineCallbacks
            def deferToWorker(self, f, *args):
                actions.workers = workers
                yield running.store(images)
                result = yield workers.deferToWorker(then or f, *args)
                return result
        actions.workers = StoringFirst()

    @defer.inlineCallbacks
    def restarted(self, running):
        """Stop ``running`` and start it again: the new one and the lines it
        logged at start-up, after checking none calls a store lost."""
        yield running.stop()
        with capturedLogs() as events:
            again = RunningArchive(self, workdir=running.workdir)
        lines = [formatEvent(event) for event in events]
        self.assertEqual([line for line in lines if "never acknowledged" in line], [])
        return again, lines


class InterruptedDeleteTests(DeleteHelpers, unittest.TestCase):
    """A delete cut short (the server killed) after some of its files went:
    the next start finishes it, so no row is left without its file."""

    @defer.inlineCallbacks
    def test_twoDeletesOfOnePatientCutShortAreFinishedOnce(self):
        """Two deletes of one patient, both cut short before removing a
        file, noted its objects twice: the restart removes each once and
        counts it once."""
        running = RunningArchive(self)
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=1,
                                seriesPerStudy=2, imagesPerSeries=3)
        yield running.store(images)
        for _ in range(2):
            self.killedWhileRemoving(running, 0)
            yield self.assertFailure(running.run(data.deletePatient, images[0].patientID), Crashed)
        again, lines = yield self.restarted(running)
        self.assertEqual((yield again.count("image")), 6)
        self.assertEqual(len(again.files()), 6)
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 6 object(s) removed", lines)

    @defer.inlineCallbacks
    def test_finishedAtTheNextStart(self):
        """deletepatient killed half way through the files: the restart
        removes the rest, files and rows, says so, and warns of no lost
        store (some rows stayed, their files gone, called 'never
        acknowledged' crash losses)."""
        running = RunningArchive(self)
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=1,
                                seriesPerStudy=2, imagesPerSeries=3)
        yield running.store(images)
        self.killedWhileRemoving(running, 0.5)
        yield self.assertFailure(running.run(data.deletePatient, images[0].patientID), Crashed)
        again, lines = yield self.restarted(running)
        self.assertEqual((yield again.count("image")), 6)
        self.assertEqual((yield again.count("patient")), 1)
        self.assertEqual(len(again.files()), 6)
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 6 object(s) removed", lines)

    @defer.inlineCallbacks
    def patientDeleteKilled(self, at, **corpus):
        """An archive (FileNameSyntax 8) holding one patient's ``corpus``,
        whose delete of that patient is killed removing its files (at
        ``at``, see ``killedWhileRemoving``): (running, images)."""
        running = RunningArchive(self, ini={"FileNameSyntax": "8"})
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1, **corpus)
        yield running.store(images)
        self.killedWhileRemoving(running, at)
        yield self.assertFailure(running.run(data.deletePatient, images[0].patientID), Crashed)
        return running, images

    @defer.inlineCallbacks
    def test_anObjectStoredAgainUnderItsNameIsKept(self):
        """FileNameSyntax 8 (%id\\%sopuid.dcm): an object whose file the
        delete removed, stored again (acknowledged) before the kill, keeps
        its row and file at the restart; the others go."""
        running, images = yield self.patientDeleteKilled(1, seriesPerStudy=1, imagesPerSeries=4)
        yield running.store(images[:1])
        self.assertEqual(len(running.files()), 1)
        again, lines = yield self.restarted(running)
        self.assertEqual((yield again.count("image")), 1)
        [kept] = again.files()
        self.assertEqual(os.path.basename(kept), images[0].sopUID + ".dcm")
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 3 object(s) removed", lines)

    @defer.inlineCallbacks
    def test_anObjectStoredAgainBeforeItsFileGoesIsKept(self):
        """FileNameSyntax 8: an object stored again under its name after
        the delete noted it, before its file went, keeps the new file and
        its row, counted kept; the others go."""
        running = RunningArchive(self, ini={"FileNameSyntax": "8"})
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                seriesPerStudy=1, imagesPerSeries=3)
        yield running.store(images)
        [stored] = [path for path in running.files() if path.endswith(images[0].sopUID + ".dcm")]
        old = os.stat(stored).st_ino
        self.storedAgainBeforeTheRemoval(running, images[:1])
        with capturedLogs() as events:
            yield running.run(data.deletePatient, images[0].patientID)
        self.assertEqual(running.files(), [stored])
        self.assertNotEqual(os.stat(stored).st_ino, old)
        self.assertEqual((yield running.count("image")), 1)
        self.assertIn("test: deletepatient:PAT0000: 2 object(s) removed from the server, 1 kept: stored again meanwhile",
                      [formatEvent(event) for event in events])
        self.assertEqual((yield running.archive.index.runQuery(
            lambda connection: running.archive.index.deletes.left(connection))), {})

    @defer.inlineCallbacks
    def test_anObjectStoredAgainBeforeItsFileGoesIsKeptAtTheRestart(self):
        """The same, the server killed once the files went: the restart
        keeps the new file and its row."""
        running = RunningArchive(self, ini={"FileNameSyntax": "8"})
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                seriesPerStudy=1, imagesPerSeries=3)
        yield running.store(images)
        [stored] = [path for path in running.files() if path.endswith(images[0].sopUID + ".dcm")]
        removeFiles = running.archive.localActions._removeUnchanged

        def killed(*args):
            removeFiles(*args)
            raise Crashed()
        self.storedAgainBeforeTheRemoval(running, images[:1], killed)
        yield self.assertFailure(running.run(data.deletePatient, images[0].patientID), Crashed)
        again, lines = yield self.restarted(running)
        self.assertEqual(again.files(), [stored])
        self.assertEqual((yield again.count("image")), 1)
        self.assertEqual(pydicom.dcmread(stored).SOPInstanceUID, images[0].sopUID)
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 2 object(s) removed", lines)

    @defer.inlineCallbacks
    def test_anotherObjectGivenTheFreedNameIsKept(self):
        """A FileNameSyntax without %sopuid: another SOP instance stored
        (acknowledged) under the name whose file the delete removed keeps
        its row and file at the restart, not called a lost store; the
        deleted object's row goes."""
        running = RunningArchive(self, ini={"FileNameSyntax": "%id\\%series_%imagenum.dcm"})
        folder = os.path.abspath(self.mktemp())
        images = generateCorpus(folder, patients=1, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=2)
        yield running.store(images)
        [first, second] = running.files()
        self.killedWhileRemoving(running, 1)
        yield self.assertFailure(running.run(data.deletePatient, images[0].patientID), Crashed)
        other = pydicom.dcmread(images[0].path)
        other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        other.save_as(os.path.join(folder, "other.dcm"), enforce_file_format=True)
        yield running.run(AddImageFile(), os.path.join(folder, "other.dcm"))
        self.assertEqual(running.files(), [first])
        again, lines = yield self.restarted(running)
        self.assertEqual(again.files(), [first])
        self.assertEqual(pydicom.dcmread(first).SOPInstanceUID, other.SOPInstanceUID)
        uids = yield again.archive.index.runQuery(
            lambda connection: connection.execute(select(again.archive.index.tables.image.c.SOPInstanceUID))
            .scalars().all())
        self.assertEqual(uids, [other.SOPInstanceUID])

    @defer.inlineCallbacks
    def test_anObjectStoredAgainByAReleaseWithoutTheJournalIsKept(self):
        """Gone back to a release without the delete journal after a delete
        cut short, the operator sent the objects again: that release wrote
        them under the same names (FileNameSyntax 8) and did not take the
        entries out, so the next upgrade removed them ("Finished the
        delete(s) ...: 3 object(s) removed"), acknowledged objects lost.
        A file that is not the one the delete noted stays, with its row; the
        objects whose files are the noted ones go."""
        running, images = yield self.patientDeleteKilled(0, seriesPerStudy=1, imagesPerSeries=3)
        yield running.stop()
        files = running.files()
        for path in files[:2]:  # stored anew: a new file under the same name, a later time
            data = open(path, "rb").read()
            os.unlink(path)
            with open(path, "wb") as f:
                f.write(data)
            os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
        again, lines = yield self.restarted(running)
        self.assertEqual(again.files(), files[:2])
        index = again.archive.index
        uids = yield index.runQuery(
            lambda connection: connection.execute(select(index.tables.image.c.SOPInstanceUID)).scalars().all())
        self.assertEqual(sorted(uids), sorted(os.path.basename(path)[:-4] for path in files[:2]))
        self.assertEqual((yield index.runQuery(index.deletes.left)), {})
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 1 object(s) removed", lines)
        self.assertIn("The delete(s) interrupted when the server stopped: 2 object(s) kept, their files changed "
                      f"(size or modification time) since the delete noted them (e.g. {files[0]}: stored again, or "
                      "written to): delete them again if they are to go", lines)

    @defer.inlineCallbacks
    def restoredAndRestarted(self, running):
        """Stop ``running`` (a delete of its objects cut short) and restore
        its files as ``cp -a`` or ``rsync -a`` does (new inodes, the times
        kept), then start it again: the check that it removed them all."""
        yield running.stop()
        for path in running.files():
            shutil.copy2(path, path + ".restored")
            os.replace(path + ".restored", path)
        again, lines = yield self.restarted(running)
        self.assertEqual(((yield again.count("image")), again.files()), (0, []))
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 3 object(s) removed", lines)
        self.assertEqual([line for line in lines if "kept" in line], [])

    @defer.inlineCallbacks
    def test_aDeleteIsFinishedAfterARestoreKeepingTheTimes(self):
        """The identity of a file noted by a delete cut short held its device
        and inode numbers, which a remount, a reboot or a restore (cp -a,
        rsync -a) changes: the objects were kept ("3 object(s) kept, their
        files stored anew ... by a release without the delete journal").
        Size and modification time are compared: the delete is finished."""
        running, images = yield self.patientDeleteKilled(0, seriesPerStudy=1, imagesPerSeries=3)
        yield self.restoredAndRestarted(running)

    @defer.inlineCallbacks
    def test_theWholeIdentitiesNotedBeforeAreComparedBySizeAndTime(self):
        """A journal noting each file's device, inode, size and modification
        time (as written before only size and time were kept) is finished
        after such a restore too."""
        running, images = yield self.patientDeleteKilled(0, seriesPerStudy=1, imagesPerSeries=3)
        index = running.archive.index
        table = index.deletes.table
        with running.archive.engine.begin() as connection:
            for uid, device, objectFile in connection.execute(
                    select(table.c.SOPInstanceUID, table.c.DeviceName, table.c.ObjectFile)).all():
                status = os.stat(running.archive.objectReader.magPath(device, objectFile))
                connection.execute(table.update().where(table.c.SOPInstanceUID == uid).values(
                    FileIdentity=f"{status.st_dev}:{status.st_ino}:{status.st_size}:{status.st_mtime_ns}"))
        yield self.restoredAndRestarted(running)

    @defer.inlineCallbacks
    def test_theEntriesOfAnEarlierReleaseAreFinished(self):
        """A journal an earlier release wrote (no FileIdentity column, added
        at the start): its delete is finished as before, by the names."""
        running, images = yield self.patientDeleteKilled(0, seriesPerStudy=1, imagesPerSeries=3)
        yield running.stop()
        engine = running.archive.engine
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE PacsDeletes DROP COLUMN FileIdentity")
        engine.dispose()
        again, lines = yield self.restarted(running)
        self.assertEqual(((yield again.count("image")), again.files()), (0, []))
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 3 object(s) removed", lines)

    @defer.inlineCallbacks
    def test_aFileThatCannotBeRemovedAtTheRestartKeepsTheRowsOfTheOthers(self):
        """The restart cannot remove the fourth file of six: the rows of
        the three files that went go with their entries, that object and
        the two after it keep their rows, files and entries, logged, and
        the next start finishes them."""
        running, images = yield self.patientDeleteKilled(0, seriesPerStudy=2, imagesPerSeries=3)
        tried = []

        def removeIfSame(path, identity, identify=None):
            tried.append(path)
            if len(tried) == 4:
                raise PermissionError(1, "Operation not permitted", path)
            return realRemoveIfSame(path, identity, identify)
        self.patch(reader, "removeIfSame", removeIfSame)
        again, lines = yield self.restarted(running)
        index = again.archive.index
        uids = yield index.runQuery(
            lambda connection: connection.execute(select(index.tables.image.c.SOPInstanceUID)).scalars().all())
        left = yield index.runQuery(index.deletes.left)
        self.assertEqual(sorted(os.path.basename(path)[:-4] for path in again.files()), sorted(uids))
        self.assertEqual(sorted(instance.sopInstanceUID for instance in left), sorted(uids))
        self.assertEqual(len(uids), 3)
        self.assertIn(tried[3], again.files())
        stuck = os.path.basename(tried[3])[:-4]
        self.assertEqual([line for line in lines if "cannot be finished" in line], [
            f"The delete(s) interrupted when the server stopped cannot be finished: the file of {stuck} cannot be "
            f"removed ([Errno 1] Operation not permitted: '{tried[3]}'); 3 object(s) removed, 3 left as they are "
            "for the next start"])
        self.patch(reader, "removeIfSame", realRemoveIfSame)
        last, lines = yield self.restarted(again)
        self.assertEqual((yield last.count("image")), 0)
        self.assertEqual(last.files(), [])
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 3 object(s) removed", lines)


class DeleteInPartsTests(DeleteHelpers, unittest.TestCase):
    """A large delete goes through the index writer (the stores' too) in
    parts of ``removalChunk`` objects: the C-STOREs arriving meanwhile are
    indexed between them instead of failing after SQLTimeOut, and a kill
    between two parts leaves each object's file and row both there or both
    gone, the rest finished at the next start."""

    @defer.inlineCallbacks
    def deleting(self, running, images):
        """Store ``images`` (one patient's) into ``running``, deleted in parts of 2."""
        yield running.store(images)
        running.archive.localActions.removalChunk = 2

    @defer.inlineCallbacks
    def test_aStoreDuringTheDeleteIsIndexedBeforeItEnds(self):
        """A store submitted while the writer removes the rows of the first
        part (as a C-STORE's would be) is committed before the delete ends,
        which removes its objects and none of the new patient's."""
        running = RunningArchive(self)
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=1,
                                seriesPerStudy=2, imagesPerSeries=3)
        yield self.deleting(running, images[:6])
        actions, index = running.archive.localActions, running.archive.index
        record = fileRecord(images[6].path, actions.query.columnVRs, "MAG0", "elsewhere.dcm")
        order, stored, parts = [], defer.Deferred(), []
        deleteRows = actions._deleteRows

        def storingDuringTheFirst(connection, instances, filesRemoved):
            if not parts:
                index.storeFromThread(record, lambda ok, value: stored.callback(ok))
            parts.append(len(instances))
            return deleteRows(connection, instances, filesRemoved)
        actions._deleteRows = storingDuringTheFirst
        stored.addCallback(lambda ok: order.append(("stored", ok)))
        output = yield running.run(data.deletePatient, images[0].patientID).addCallback(
            lambda output: order.append("deleted") or output)
        yield stored
        self.assertEqual(order, [("stored", True), "deleted"])
        self.assertEqual(parts, [2, 2, 2])
        self.assertEqual(output, "6 object(s) removed from the server")
        self.assertEqual((yield running.count("image")), 1)
        self.assertEqual((yield running.count("patient")), 1)
        self.assertEqual(running.files(), [])

    @defer.inlineCallbacks
    def test_killedBetweenPartsIsFinishedAtTheNextStart(self):
        """Killed once the first part is removed, before the second's files
        go: each object has its file and row or neither, and the restart
        removes the rest, noted before any file went."""
        running = RunningArchive(self, ini={"FileNameSyntax": "8"})
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                seriesPerStudy=2, imagesPerSeries=3)
        yield self.deleting(running, images)
        actions = running.archive.localActions
        removeFiles, removals = actions._removeUnchanged, []

        def killedAtTheSecond(instances, identities):
            removals.append(instances)
            if len(removals) == 2:
                raise Crashed()
            removeFiles(instances, identities)
        actions._removeUnchanged = killedAtTheSecond
        yield self.assertFailure(running.run(data.deletePatient, images[0].patientID), Crashed)
        uids = yield running.archive.index.runQuery(
            lambda connection: connection.execute(select(running.archive.index.tables.image.c.SOPInstanceUID))
            .scalars().all())
        self.assertEqual(sorted(os.path.basename(path)[:-4] for path in running.files()), sorted(uids))
        self.assertEqual(len(uids), 4)
        again, lines = yield self.restarted(running)
        self.assertEqual((yield again.count("image")), 0)
        self.assertEqual(again.files(), [])
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 4 object(s) removed", lines)

    @defer.inlineCallbacks
    def test_killedWhileNotingRemovesNothingAtTheNextStart(self):
        """Killed while noting its objects (at the third of six, parts of
        2), before any file went: the restart removes none of them, the
        delete did not start."""
        running = RunningArchive(self, ini={"FileNameSyntax": "8"})
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                seriesPerStudy=2, imagesPerSeries=3)
        yield self.deleting(running, images)
        actions = running.archive.localActions
        kill, identityAt, noted = self.dyingAfterWrites(running), actions._identityAt, []

        def killedAtTheThird(instance):
            noted.append(instance)
            if len(noted) >= 3:
                kill()
                raise Crashed()
            return identityAt(instance)
        actions._identityAt = killedAtTheThird
        yield self.assertFailure(running.run(data.deletePatient, images[0].patientID), Crashed)
        self.assertEqual(len(running.files()), 6)
        again, lines = yield self.restarted(running)
        self.assertEqual((yield again.count("image")), 6)
        self.assertEqual(len(again.files()), 6)
        self.assertEqual([line for line in lines if "interrupted" in line], [])

    @defer.inlineCallbacks
    def test_anObjectOfALaterPartStoredAgainIsKept(self):
        """An object stored again (acknowledged) after the delete noted its
        objects, while it removes an earlier part, is kept, counted kept."""
        running = RunningArchive(self, ini={"FileNameSyntax": "8"})
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                seriesPerStudy=1, imagesPerSeries=3)
        yield self.deleting(running, images)
        self.storedAgainBeforeTheRemoval(running, images[-1:])
        output = yield running.run(data.deletePatient, images[0].patientID)
        self.assertEqual(output, "2 object(s) removed from the server, 1 kept: stored again meanwhile")
        self.assertEqual([os.path.basename(path) for path in running.files()], [images[-1].sopUID + ".dcm"])
        self.assertEqual((yield running.count("image")), 1)


class FailedDeleteTests(DeleteHelpers, unittest.TestCase):
    """A delete that fails while the server runs is not carried out at a
    later start."""

    def test_aFileThatCannotBeRemovedLeavesNothingForTheNextStart(self):
        """deletepatient of 3 objects whose second file cannot be removed
        fails: the row of the file that went goes, the other two objects
        stay as they are, and stay at the next start (the admin was told the
        delete failed)."""
        return self.failingAtTheSecondFile(LocalActions.removalChunk)

    def test_inPartsTheLaterPartsAreLeftAsTheyAre(self):
        """The same, one object a part: the third, noted with the others
        before any file went, is not removed at the next start either."""
        return self.failingAtTheSecondFile(1)

    def test_killedOnceItFailedLeavesNothingForTheNextStart(self):
        """The same, the server killed once the writer committed its first
        request after the failure: the later parts are not removed at the
        next start either."""
        return self.failingAtTheSecondFile(1, killed=True)

    @defer.inlineCallbacks
    def failingAtTheSecondFile(self, removalChunk, killed=False):
        running = RunningArchive(self, ini={"FileNameSyntax": "8"})
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                seriesPerStudy=1, imagesPerSeries=3)
        yield running.store(images)
        running.archive.localActions.removalChunk = removalChunk
        stuck = images[1].sopUID + ".dcm"

        def removeIfSame(path, identity, identify=None):
            if path.endswith(stuck):
                if killed:
                    self.dyingAfterWrites(running, 1)
                raise PermissionError(1, "Operation not permitted", path)
            return realRemoveIfSame(path, identity, identify)
        self.patch(reader, "removeIfSame", removeIfSame)
        yield self.assertFailure(running.run(data.deletePatient, images[0].patientID), PermissionError, Crashed)
        self.assertEqual((yield running.count("image")), 2)
        self.assertEqual(len(running.files()), 2)
        self.patch(reader, "removeIfSame", realRemoveIfSame)
        yield running.stop()
        with capturedLogs() as events:
            again = RunningArchive(self, workdir=running.workdir)
        self.assertEqual((yield again.count("image")), 2)
        self.assertEqual(len(again.files()), 2)
        self.assertEqual([event for event in events if "interrupted" in formatEvent(event)], [])
