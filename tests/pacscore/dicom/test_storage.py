"""The C-STORE SCP end to end (a real Archive listening on loopback, our
client sending): damaged data sets get a failure status, never an internal
error, and whatever it acknowledges passes the start-up check."""

import os
import random
import warnings

import pydicom
from sqlalchemy import select
from twisted.internet import defer, reactor, threads
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from pacscore.db.errors import IndexTimeout
from pacscore.dicom import commands
from pacscore.dicom.client import associate
from pacscore.dicom.commands import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH, OUT_OF_RESOURCES
from pacscore.dicom.storage import SUCCESS
from pacscore.testing.mutations import mutated
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.storage.test_attributes import bundledFile, encode, splitFile

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


class DamagedDatasetTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_damagedDatasets(self):
        running = RunningArchive(self, listen=True)
        syntax, data, dataset = splitFile(bundledFile("CT_small.dcm"))
        client = yield associate(reactor, "127.0.0.1", running.port, "SENDER", running.ae,
                                 [(CT_STORAGE, [syntax])])
        archive = running.archive
        image = archive.index.tables.image
        rng = random.Random(20261202)
        statuses = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's, about damaged character sets
            for _ in range(300):
                damaged = mutated(rng, data, near=rng.choice([300, 1000, len(data)]))
                command = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.PRIORITY: 0,
                           commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE,
                           commands.AFFECTED_SOP_INSTANCE_UID: str(dataset.SOPInstanceUID)}
                response, _ = yield client.request(1, command, damaged)
                status = response[commands.STATUS]
                statuses[status] = statuses.get(status, 0) + 1
                if status == SUCCESS:  # each one replaces the last: check it now
                    [(deviceName, objectFile)] = yield archive.index.runQuery(
                        lambda connection: connection.execute(
                            select(image.c.DeviceName, image.c.ObjectFile)).fetchall())
                    self.assertIsNone(archive.objectReader.fileError(deviceName, objectFile))
        yield client.release()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(set(statuses), {SUCCESS, CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH}, statuses)


class CommandUIDTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_uidsThatAreNoneRefusedAssociationKept(self):
        """A C-STORE whose Affected SOP Instance UID holds a byte that is no
        ASCII, is blank, or is over 64 characters (two of them sharing their
        first 64) gets A900, its SOP Class UID such a byte 0122, each with
        one warning line and nothing written; the association goes on."""
        running = RunningArchive(self, listen=True)
        syntax, data, dataset = splitFile(bundledFile("CT_small.dcm"))
        uid = str(dataset.SOPInstanceUID)
        long = "1.2.826.0.1.3680043.8.498." + "7" * 38  # 64 characters

        def withUID(sop):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's, about UIDs that are none
                dataset.SOPInstanceUID = sop
                return encode(dataset)
        client = yield associate(reactor, "127.0.0.1", running.port, "SENDER", running.ae,
                                 [(CT_STORAGE, [syntax])])
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        statuses = []
        for sopClass, sop, sent in ((CT_STORAGE, uid.encode()[:-1] + b"\xff", data),
                                    (CT_STORAGE.encode() + b"\xe9", uid, data),
                                    (CT_STORAGE, " ", withUID(" ")),
                                    (CT_STORAGE, long + ".1", withUID(long + ".1")),
                                    (CT_STORAGE, long + ".2", withUID(long + ".2")),
                                    (CT_STORAGE, uid, data)):
            command = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.PRIORITY: 0,
                       commands.AFFECTED_SOP_CLASS_UID: sopClass, commands.AFFECTED_SOP_INSTANCE_UID: sop}
            response, _ = yield client.request(1, command, sent)
            statuses.append(response[commands.STATUS])
        yield client.release()
        self.assertEqual(statuses, [DATASET_DOES_NOT_MATCH, 0x0122] + [DATASET_DOES_NOT_MATCH] * 3 + [SUCCESS])
        self.assertFalse([e for e in events if "log_failure" in e])
        refusals = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
        self.assertEqual(len(refusals), 5, refusals)
        image = running.archive.index.tables.image
        rows = yield running.archive.index.runQuery(
            lambda connection: connection.execute(select(image.c.SOPInstanceUID)).scalars().all())
        self.assertEqual(rows, [uid])


class IndexRefusalTests(unittest.TestCase):

    @defer.inlineCallbacks
    def storeRefused(self, running):
        """Send CT_small.dcm to ``running`` (its index refuses it): the
        response, after checking the log's line and no traceback."""
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        syntax, data, dataset = splitFile(bundledFile("CT_small.dcm"))
        client = yield associate(reactor, "127.0.0.1", running.port, "SENDER", running.ae,
                                 [(CT_STORAGE, [syntax])])
        command = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.PRIORITY: 0,
                   commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE,
                   commands.AFFECTED_SOP_INSTANCE_UID: str(dataset.SOPInstanceUID)}
        response, _ = yield client.request(1, command, data)
        yield client.release()
        self.assertFalse([e for e in events if "log_failure" in e])
        self.assertTrue([e for e in events if "could not be indexed" in formatEvent(e)])
        return response

    @defer.inlineCallbacks
    def test_indexRefusingIsAFailureStatusAndOneLogLine(self):
        """The index database refusing the row (its server down, a trigger
        here) answers StorageFailedErrorCode, logged in lines, with no
        traceback."""
        running = RunningArchive(self, listen=True)
        with running.archive.index.engine.begin() as connection:
            connection.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON DICOMImages "
                                       "BEGIN SELECT RAISE(ABORT, 'the index is away'); END")
        response = yield self.storeRefused(running)
        self.assertEqual(response[commands.STATUS], 0x0110)
        self.assertIn("the index is away", response[commands.ERROR_COMMENT])

    @defer.inlineCallbacks
    def test_indexFileLostIsOneLogLine(self):
        """The SQLite file replaced while pacs runs: StorageFailedErrorCode,
        no traceback."""
        running = RunningArchive(self, listen=True)
        path = running.archive.index.fileWatch.path
        open(path + ".new", "wb").close()
        os.replace(path + ".new", path)
        response = yield self.storeRefused(running)
        self.assertEqual(response[commands.STATUS], 0x0110)

    @defer.inlineCallbacks
    def test_indexNotAnsweringIsOneLogLine(self):
        """The index database not answering within SQLTimeOut likewise."""
        running = RunningArchive(self, listen=True)
        running.archive.index.storeFromThread = lambda record, onResult: reactor.callFromThread(
            onResult, False, Failure(IndexTimeout(30)))
        response = yield self.storeRefused(running)
        self.assertEqual(response[commands.STATUS], 0x0110)

    @defer.inlineCallbacks
    def test_indexDatabaseFullIsOutOfResources(self):
        """The index database full (SQLite's file held to its size by
        max_page_count, each image row needing 100 KB more) answers A700,
        as a full disk does."""
        running = RunningArchive(self, listen=True)
        index = running.archive.index
        with index.engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE filler (b BLOB)")
            connection.exec_driver_sql("CREATE TRIGGER fill AFTER INSERT ON DICOMImages "
                                       "BEGIN INSERT INTO filler VALUES (zeroblob(100000)); END")

        def limit(connection):  # on the writer's own connection: the limit is one connection's
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
            connection.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
        yield index.runWrite(limit)
        response = yield self.storeRefused(running)
        self.assertEqual(response[commands.STATUS], OUT_OF_RESOURCES)
        self.assertEqual(response[commands.ERROR_COMMENT], "disk full: database or disk is full")


class StoresDuringRegenTests(unittest.TestCase):

    @defer.inlineCallbacks
    def sender(self, running):
        """The log events from now on, an association to ``running``, the
        C-STORE-RQ command of CT_small.dcm and its (syntax, data, dataset)."""
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        syntax, data, dataset = splitFile(bundledFile("CT_small.dcm"))
        client = yield associate(reactor, "127.0.0.1", running.port, "SENDER", running.ae, [(CT_STORAGE, [syntax])])
        command = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.PRIORITY: 0,
                   commands.AFFECTED_SOP_CLASS_UID: CT_STORAGE,
                   commands.AFFECTED_SOP_INSTANCE_UID: str(dataset.SOPInstanceUID)}
        return events, client, command, (syntax, data, dataset)

    @defer.inlineCallbacks
    def test_aStudyNotReenteredYetIsOutOfResources(self):
        """While a regen re-enters the files (its tables cleared), an object
        whose study or series has no row yet cannot be checked for a link to
        another patient (or study) whose files are not re-entered yet: it is
        refused with A700, a transient failure the sender retries, its file
        removed, in one log line; once its rows are in, stores go on."""
        running = RunningArchive(self, listen=True)
        events, client, command, (syntax, data, dataset) = yield self.sender(running)
        index = running.archive.index
        with index.rebuilding():
            response, _ = yield client.request(1, command, data)
        self.assertEqual(response[commands.STATUS], OUT_OF_RESOURCES)
        self.assertIn("the index is being rebuilt", response[commands.ERROR_COMMENT])
        self.assertEqual(running.files(), [])
        refusals = [formatEvent(e) for e in events if "refused with status 0xA700" in formatEvent(e)]
        self.assertEqual(len(refusals), 1, refusals)
        self.assertIn("stores of studies not re-entered yet are refused until it ends", refusals[0])
        response, _ = yield client.request(1, command, data)
        self.assertEqual(response[commands.STATUS], SUCCESS)
        with index.rebuilding():
            response, _ = yield client.request(1, command, data)
        self.assertEqual(response[commands.STATUS], SUCCESS)
        yield client.release()
        self.assertFalse([e for e in events if "log_failure" in e])

    @defer.inlineCallbacks
    def test_anObjectOverwritingItsFileAsTheRegenStartsIsOutOfResources(self):
        """FileNameSyntax names each SOP instance's file alone: a store
        again whose link check passed just before a regen cleared the
        tables has its file overwritten (the copy there replaced) when the
        index finds its study not re-entered yet: A700 with its one warning
        line, as when its name was free (it used to be 0x0110, with an
        error and a traceback); the new copy stays on disk, for the regen
        to index (removed, the object would be lost)."""
        running = RunningArchive(self, listen=True, ini={"FileNameSyntax": "%id\\%sopuid.dcm"})
        events, client, command, (syntax, data, dataset) = yield self.sender(running)
        response, _ = yield client.request(1, command, data)
        self.assertEqual(response[commands.STATUS], SUCCESS)
        [stored] = running.files()
        index, store = running.archive.index, running.archive.objectStore
        regen = index.rebuilding()

        def regenStarts():
            regen.__enter__()
            return index.runWrite(lambda connection: index.initializeTables(connection=connection))
        place = store._place

        def placeOnceTheRegenStarted(*args):
            threads.blockingCallFromThread(reactor, regenStarts)
            return place(*args)
        self.patch(store, "_place", placeOnceTheRegenStarted)
        dataset.SeriesDescription = "STORED AGAIN"
        try:
            response, _ = yield client.request(1, command, encode(dataset, implicit=syntax == "1.2.840.10008.1.2"))
        finally:
            regen.__exit__(None, None, None)
        self.assertEqual(response[commands.STATUS], OUT_OF_RESOURCES)
        self.assertIn("the index is being rebuilt", response[commands.ERROR_COMMENT])
        self.assertEqual(running.files(), [stored])
        self.assertEqual(pydicom.dcmread(stored).SeriesDescription, "STORED AGAIN")
        refusals = [formatEvent(e) for e in events if "refused with status 0xA700" in formatEvent(e)]
        self.assertEqual(len(refusals), 1, refusals)
        self.assertEqual([formatEvent(e) for e in events if e["log_level"] >= LogLevel.error or "log_failure" in e],
                         [])
        yield client.release()
