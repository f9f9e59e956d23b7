"""Tests for pacscore.archive: what start-up tells of the configuration, and what a stop finishes."""

import os
import shutil
import sqlite3
from contextlib import closing

from pydicom.uid import CTImageStorage
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import connectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore import archive as archiveModule
from pacscore.archive import Archive, StartupError
from pacscore.config.loader import loadConfiguration
from pacscore.hl7.message import parseMessage
from pacscore.storage.part10 import readFileMeta
from pacscore.storage.store import IncomingObject
from pacscore.testing.corpus import generateCorpus
from plugins.pacs_mysql import mysqlDriver
from plugins.pacs_postgresql import postgresqlDriver
from tests.dbservers import mariadbServer, postgresServer
from tests.interop.databaseservers import serverIni
from tests.interop.server import PacsServer, freePort
from tests.pacscore.codecs.test_syntaxes import withoutJpegLS
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.db.test_index import makeConquestDatabase
from tests.pacscore.web.test_channel import until


class UnencodableCodeTests(unittest.TestCase):

    def warnings(self, ini, nodes=()):
        """The lines an archive with the dicom.ini keys ``ini`` and the
        acrnema.map ``nodes`` (AE, compression) logs of codes it cannot
        encode, on an installation without a JPEG-LS encoder."""
        withoutJpegLS(self)
        server = PacsServer(self.mktemp(), ini=ini)
        for port, (ae, compression) in enumerate(nodes, start=5678):
            server.addNode(ae, port, compression=compression)
        with capturedLogs() as events:
            archive = Archive(loadConfiguration(server.workdir, server.workdir), reactor)
        self.addCleanup(archive.engine.dispose)
        return [formatEvent(e) for e in events if "cannot be encoded" in formatEvent(e)]

    def test_configuredCodesWithoutAnEncoderWarnedOf(self):
        """Start-up names each code configured that asks for JPEG-LS only,
        once, with the first setting it is in."""
        warnings = self.warnings({"IncomingCompression": "js", "DroppedFileCompression": "jk"},
                                 [("VIEWER", "j7"), ("ARCHIVE", "js"), ("OTHER", "j1")])
        self.assertEqual([line.split(":")[0] for line in warnings], ["IncomingCompression = js",
                                                                    "acrnema.map VIEWER = j7"])
        self.assertIn("objects are stored and sent in the transfer syntax they have instead", warnings[0])
        warnings = self.warnings({"DroppedFileCompression": "js", "ArchiveCompression": "j7"})
        self.assertEqual([line.split(":")[0] for line in warnings], ["DroppedFileCompression = js",
                                                                    "ArchiveCompression = j7"])
        self.assertEqual(self.warnings({"IncomingCompression": "j2"}, [("VIEWER", "jl")]), [])

    def test_codesThatMeanNothingWarnedOf(self):
        """A code that means nothing (zz) gets one warning at start-up, for
        ArchiveCompression as for the two other keys."""
        server = PacsServer(self.mktemp(), ini={"IncomingCompression": "zz", "DroppedFileCompression": "j9",
                                                "ArchiveCompression": "Zz"})
        with capturedLogs() as events:
            archive = Archive(loadConfiguration(server.workdir, server.workdir), reactor)
        self.addCleanup(archive.engine.dispose)
        self.assertEqual([formatEvent(e) for e in events if "not supported here" in formatEvent(e)],
                         ["IncomingCompression = zz: not supported here, objects are stored as received",
                          "DroppedFileCompression = j9: not supported here, objects are stored as received",
                          "ArchiveCompression = zz: not supported here, objects move to another device as they are"])


class MagDeviceFolderTests(unittest.TestCase):

    def test_aFileIsNoFolderToMake(self):
        """A MAG device that names a file is refused in one line, without
        first saying its folder is made."""
        server = PacsServer(self.mktemp())
        path = os.path.join(server.workdir, "passwd")
        open(path, "w").close()
        server.setIni(MAGDevice0=path)
        archive = Archive(loadConfiguration(server.workdir, server.workdir), reactor)
        self.addCleanup(archive.engine.dispose)
        with capturedLogs() as events:
            error = self.assertRaises(StartupError, archive.startup)
        self.assertEqual(str(error), f"MAG0: {path} is not a folder")
        self.assertEqual([formatEvent(e) for e in events if "made now" in formatEvent(e)], [])


class HL7ListenerTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_listenerAcksNameTheAETitle(self):
        """The AR the MLLP listener makes itself (a message over
        HL7MaxMessageSize; in the reactor's thread pool) names the AE title
        as sending application."""
        server = PacsServer(self.mktemp(), ae="RADPACS", ini={"HL7MaxMessageSize": "200"})
        archive = Archive(loadConfiguration(server.workdir, server.workdir), reactor)
        self.addCleanup(archive.engine.dispose)
        protocol = archive.hl7Factory().buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, connectionDone)
        protocol.dataReceived(b"\x0bMSH|^~\\&|RIS|H|PACS|R|20261201||ORM^O01|BIG|P|2.3\rNTE|1||" + b"x" * 300)
        yield until(lambda: transport.disconnecting)
        self.assertTrue(transport.disconnecting)
        reject = parseMessage(transport.value().strip(b"\x0b\x1c\r"))
        self.assertEqual((reject.value("MSA", 1), reject.value("MSA", 2), reject.value("MSH", 3)),
                         ("AR", "BIG", "RADPACS"))


class UnusableIndexTests(unittest.TestCase):
    """Start-up refused for the index database: the remedy that fits."""

    def refusal(self, dbDescription=None, damage=None):
        """The message of the StartupError of an archive on ``dbDescription``
        (None: the SQLite file of the working folder, its start overwritten
        with ``damage`` first)."""
        server = PacsServer(self.mktemp())
        if damage is not None:
            os.makedirs(os.path.dirname(server.database), exist_ok=True)
            with open(server.database, "wb") as f:
                f.write(damage)
        configuration = loadConfiguration(server.workdir, server.workdir)
        return str(self.assertRaises(StartupError, Archive, configuration, reactor, dbDescription=dbDescription))

    def test_databaseServerDown(self):
        """A PostgreSQL or MySQL server that is not running: start it (no
        'dgate -r', which would drop the tables), named without the password."""
        for scheme in ("postgresql", "mysql"):
            port = freePort()
            message = self.refusal(f"{scheme}://pacs:secret@127.0.0.1:{port}/conquest")
            self.assertIn(f"the index database {scheme}://pacs:***@127.0.0.1:{port}/conquest cannot be used: ",
                          message)
            self.assertIn(f"pacs cannot connect to the database server at 127.0.0.1:{port}: start it, or correct "
                          "SQLHost, Username and Password in dicom.ini (or --db)", message)
            self.assertNotIn("dgate", message)
            self.assertNotIn("secret", message)
            self.assertNotIn("\n", message)

    def test_databaseMissing(self):
        """A database that does not exist on a running server: create it
        (not: start the server)."""
        for server, label, command in ((postgresServer(), "PostgreSQL", "createdb nosuchdb"),
                                       (mariadbServer(), "MySQL", "mysqladmin create nosuchdb")):
            message = self.refusal(server.url("nosuchdb"))
            self.assertIn(f"the database nosuchdb does not exist on the {label} server: create it ({command}), "
                          f"or correct SQLServer in dicom.ini (or --db)", message)
            self.assertNotIn("cannot connect", message)
            self.assertNotIn("\n", message)

    def test_damagedSQLiteFile(self):
        message = self.refusal(damage=b"not SQLite at all" * 100)
        self.assertIn("cannot be used: file is not a database. The file is damaged: 'dgate -r' in the working "
                      "folder sets it aside and rebuilds the index from the stored files", message)


class CarryOverTests(unittest.TestCase):
    """An archive moved from its SQLite index to PostgreSQL or MySQL
    (dicom.ini's PostGres = 1 ..., as README says) takes up what the SQLite
    file kept beside the image tables: queued forwards, commitment reports
    to send, the UID map of changeuid/newuids, the worklist.  They stayed
    behind: forwards never sent, anonymized UIDs made anew."""

    def archive(self, server):
        archive = Archive(loadConfiguration(server.workdir, server.workdir), reactor)
        self.addCleanup(archive.engine.dispose)
        return archive

    def test_queuesCarriedOverToPostgreSQL(self):
        self.carriedOver(postgresqlDriver, postgresServer())

    def test_queuesCarriedOverToMySQL(self):
        self.carriedOver(mysqlDriver, mariadbServer())

    def switched(self, driver, database, rows):
        """A working folder whose SQLite index pacs made (``rows(archive)``
        queued in it), switched to a new database of ``database``: its
        ``PacsServer`` and the engine of that database."""
        server = PacsServer(self.mktemp())
        old = self.archive(server)
        old.exportQueue.createTables()
        old.commitments.pending.createTables()
        old.index.createTables()
        rows(old)
        old.engine.dispose()
        engine = database.newEngine(driver, self)
        server.setIni(**serverIni(driver, database, engine.url.database))
        return server, engine

    def started(self, server):
        """A new archive of ``server`` started: it and the lines it logged."""
        new = self.archive(server)
        with capturedLogs() as events:
            new.startup()
        self.addCleanup(new.shutdown)  # a Deferred trial waits for
        return new, [formatEvent(event) for event in events]

    @staticmethod
    def queueForwardsAndWorklist(archive):
        for sop in ("1.2.3.1.1", "1.2.3.1.2"):
            archive.exportQueue.addForward("DOWNAE", "IMAGE", ("PAT1", "1.2.3", "1.2.3.1", sop))
        with archive.engine.begin() as connection:
            connection.execute(archive.index.tables.worklist.insert().values(AccessionNumber="ACC1", PatientID="PAT1"))

    def carriedOver(self, driver, database):
        uids = []

        def rows(old):
            self.queueForwardsAndWorklist(old)
            with old.engine.begin() as connection:
                old.commitments.pending.add(connection, "1.2.9", "MODALITY",
                                            [["1.2.840.10008.5.1.4.1.1.2", "1.2.3.1.1"]], 1000.0)
            uids.append(old.converterServices.uidMap.newFor("1.2.3"))
        server, engine = self.switched(driver, database, rows)
        new, lines = self.started(server)
        self.assertIn(f"Carried over from {server.database}, the SQLite index of this working folder before the "
                      f"switch to this database, the rows no stored file holds: PacsForwards 2, PacsCommitments 1, "
                      f"UIDMODS 1, DICOMWorkList 1 (queued forwards, commitment reports, MPPS, UID maps and worklist "
                      f"items are taken up here); removed from that file, whose image tables are left as they were",
                      lines)
        forwards = new.exportQueue.forwards
        with engine.connect() as connection:
            self.assertEqual(connection.execute(select(forwards.c.Destination, forwards.c.SOPInstanceUID)
                                                .order_by(forwards.c.id)).all(),
                             [("DOWNAE", "1.2.3.1.1"), ("DOWNAE", "1.2.3.1.2")])
            self.assertEqual([row[:2] for row in new.commitments.pending.requests(connection)],
                             [("1.2.9", "MODALITY")])
            worklist = new.index.tables.worklist
            self.assertEqual(connection.execute(select(worklist.c.AccessionNumber)).scalars().all(), ["ACC1"])
        self.assertEqual(new.converterServices.uidMap.newFor("1.2.3"), uids[0])
        with closing(sqlite3.connect(server.database)) as db:
            self.assertEqual([db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                              for table in ("PacsForwards", "PacsCommitments", "UIDMODS", "DICOMWorkList")],
                             [0, 0, 0, 0])

    def test_conquestsOwnFileLeftAsItIs(self):
        """Conquest's own conquest.db3 in the working folder (its worklist
        and UID map) is not taken: going back to Conquest, as README
        allows, lost them, and a stale one put old worklist items back."""
        server = PacsServer(self.mktemp())
        os.makedirs(os.path.dirname(server.database))
        makeConquestDatabase(server.database)
        with closing(sqlite3.connect(server.database)) as db:
            db.execute("CREATE TABLE UIDMODS (MODTime int, OldUID varchar(64), MODType varchar(32), "
                       "NewUID varchar(64))")
            db.execute("INSERT INTO UIDMODS VALUES (1, '1.2.3', 'SOPInstanceUID', '9.8.7')")
            db.execute("INSERT INTO DICOMWorkList (AccessionN, PatientID) VALUES ('ACC1', 'PAT1')")
            db.commit()
        with open(server.database, "rb") as f:
            conquests = f.read()
        database = postgresServer()
        engine = database.newEngine(postgresqlDriver, self)
        server.setIni(**serverIni(postgresqlDriver, database, engine.url.database))
        new, lines = self.started(server)
        self.assertIn(f"Nothing is carried over from {server.database}: pacs did not make that SQLite file "
                      f"(Conquest's own index, or another program's), which is left as it is (going back to Conquest, "
                      f"its worklist and UIDMODS are there)", lines)
        self.assertFalse([line for line in lines if "Carried over" in line])
        with open(server.database, "rb") as f:
            self.assertEqual(f.read(), conquests)
        worklist = new.index.tables.worklist
        with engine.connect() as connection:
            self.assertEqual(connection.execute(select(worklist.c.AccessionNumber)).all(), [])
        self.assertNotEqual(new.converterServices.uidMap.newFor("1.2.3"), "9.8.7")

    def test_carryOverTheFileDidNotCommitIsFinishedOnce(self):
        """The SQLite file failing to commit the removal (disk full, a
        crash) once the new database committed the rows: they were in both,
        the next start carried the unkeyed ones again (each forward sent
        twice, worklist items doubled), and the log said they stayed in the
        file only.  The next start now only removes them from the file, and
        carries over what was queued in it since."""
        server, engine = self.switched(postgresqlDriver, postgresServer(), self.queueForwardsAndWorklist)
        previousIndex = archiveModule.previousIndex

        def failing(configuration):
            path, sqlite = previousIndex(configuration)

            def crash(connection):
                raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
            event.listen(sqlite, "commit", crash)
            return path, sqlite
        self.patch(archiveModule, "previousIndex", failing)
        new, lines = self.started(server)
        self.assertIn(f"The rows PacsForwards 2, DICOMWorkList 1 carried over from {server.database}, the SQLite "
                      f"index of this working folder before the switch to this database, could not be removed from "
                      f"that file (disk I/O error): the next start removes them there, without carrying "
                      f"them over again", lines)
        self.assertFalse([line for line in lines if "they stay there" in line or "Carried over" in line])
        with closing(sqlite3.connect(server.database)) as db:  # queued in the file since (switched back)
            columns = ", ".join(row[1] for row in db.execute("PRAGMA table_info(PacsForwards)")
                                if row[1] not in ("id", "SOPInstanceUID"))
            db.execute(f"INSERT INTO PacsForwards ({columns}, SOPInstanceUID) SELECT {columns}, '1.2.3.1.3' "
                       f"FROM PacsForwards WHERE SOPInstanceUID = '1.2.3.1.2'")
            db.commit()
        self.patch(archiveModule, "previousIndex", previousIndex)
        _, lines = self.started(server)
        self.assertIn(f"Removed from {server.database} the rows carried over from it at an earlier start: "
                      f"PacsForwards 2, DICOMWorkList 1 (not carried over again)", lines)
        self.assertEqual([line.split(":")[1] for line in lines if line.startswith("Carried over")],
                         [" PacsForwards 1 (queued forwards, commitment reports, MPPS, UID maps and worklist items "
                          "are taken up here); removed from that file, whose image tables are left as they were"])
        forwards, worklist = new.exportQueue.forwards, new.index.tables.worklist
        with engine.connect() as connection:
            self.assertEqual(connection.execute(select(forwards.c.SOPInstanceUID).order_by(forwards.c.id))
                             .scalars().all(), ["1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3"])
            self.assertEqual(connection.execute(select(worklist.c.AccessionNumber)).scalars().all(), ["ACC1"])
            self.assertEqual(connection.exec_driver_sql('SELECT count(*) FROM "PacsCarriedOver"').scalar(), 0)
        with closing(sqlite3.connect(server.database)) as db:
            self.assertEqual([db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                              for table in ("PacsForwards", "DICOMWorkList")], [0, 0])


class ShutdownTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_aCopyReplacedByAStoreUnderWayAtTheStopIsRemoved(self):
        """An object stored again, its store still under way when the stop
        begins (its index row committed by the stop), replaces the earlier
        copy: that file goes before the I/O pool stops, not left on disk
        with no row naming it."""
        running = RunningArchive(self)
        image, = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=1)
        yield running.store([image])
        earlier, = running.files()
        with open(image.path, "rb") as f:
            syntax, _, offset = readFileMeta(f)
            f.seek(offset)
            data = f.read()
        store = running.archive.objectStore
        incoming = IncomingObject(CTImageStorage, image.sopUID, syntax, "MODALITY", running.ae)
        spool = store.spool(incoming)
        spool.write(data)
        stored = store.store(incoming, spool)
        yield running.stop()
        device, relative = yield stored
        self.assertNotIn(earlier, running.files())
        self.assertEqual(running.files(), [running.archive.devices[0].absolute(relative)])


class ReplacedCopyRecoveryTests(unittest.TestCase):
    """Start-up removes the copy a re-sent object replaced just before the
    server stopped (``PendingFiles`` marks its new copy, intact and indexed),
    with its mirror copy, through ``Archive._removeReplacedCopies``."""

    @defer.inlineCallbacks
    def killedAfterAReplacement(self, replaced="replaced.dcm", device="MAG0", regen=False):
        """The working folder (``PacsServer``) of an archive with a mirror
        that stored one object and stopped as if killed right after that
        object's new copy was committed: its mark names ``replaced`` of
        ``device`` as the copy it replaced, written on MAG0 and its mirror
        (if ``device`` is MAG0); ``regen``: a regen of MAG0 interrupted too.
        Returns the server and the paths of the new and the replaced copy."""
        server = PacsServer(self.mktemp(), ini={"MIRRORDevice0": "./mirror0/"})
        running = RunningArchive(self, workdir=server.workdir)
        image, = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=1)
        yield running.store([image])
        yield running.stop()
        with closing(sqlite3.connect(server.database)) as db, db:
            (acknowledged,), = db.execute("SELECT ObjectFile FROM DICOMImages")
            replacedFile = f"{os.path.dirname(acknowledged)}/{replaced}"
            db.execute("INSERT INTO PendingFiles (DeviceName, ObjectFile, ReplacedDevice, ReplacedFile) "
                       "VALUES ('MAG0', ?, ?, ?)", (acknowledged, device, replacedFile))
            if regen:
                db.execute("INSERT INTO PacsRegen (DeviceName) VALUES ('MAG0')")
        copies = [os.path.join(root, *replacedFile.split("/")) for root in (server.dataDir,
                                                                            os.path.join(server.workdir, "mirror0"))]
        for copy in copies:
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            with open(copy, "wb") as f:
                f.write(b"the copy the re-sent object replaced")
        return server, os.path.join(server.dataDir, *acknowledged.split("/")), copies

    def startedAgain(self, server):
        """The log lines of an archive started again in ``server``'s folder."""
        with capturedLogs() as events:
            RunningArchive(self, workdir=server.workdir)
        return [formatEvent(event) for event in events]

    @defer.inlineCallbacks
    def test_theReplacedCopyAndItsMirrorCopyAreRemoved(self):
        server, acknowledged, copies = yield self.killedAfterAReplacement()
        lines = self.startedAgain(server)
        self.assertEqual([os.path.exists(copy) for copy in copies], [False, False])
        self.assertTrue(os.path.exists(acknowledged))
        self.assertIn("removed 1 copies replaced just before the server stopped (the new copies of their SOP "
                      "instances, indexed, are kept)", lines)

    @defer.inlineCallbacks
    def test_nothingRemovedWhileARegenIsPending(self):
        """With a regen of MAG0 interrupted, the index may miss objects: a
        copy no image row names may be one of them, and stays."""
        server, acknowledged, copies = yield self.killedAfterAReplacement(regen=True)
        lines = self.startedAgain(server)
        self.assertEqual([os.path.exists(copy) for copy in copies], [True, True])
        self.assertEqual([line for line in lines if "replaced" in line], [])

    @defer.inlineCallbacks
    def test_aCopyThatCannotBeRemovedOrIsOnNoDeviceStaysWithALine(self):
        """A replaced copy on a MAG device not configured (any more), or
        whose removal fails, stays, each named in a warning; start-up goes on."""
        server, acknowledged, copies = yield self.killedAfterAReplacement(device="MAG7")
        lines = self.startedAgain(server)
        self.assertEqual([os.path.exists(copy) for copy in copies], [True, True])
        self.assertIn(f"MAG7:{os.path.relpath(copies[0], server.dataDir)}, a copy replaced just before the server "
                      "stopped, stays: no MAG device 'MAG7'", lines)
        server, acknowledged, copies = yield self.killedAfterAReplacement()
        os.remove(copies[0])
        os.mkdir(copies[0])  # a folder in its place: unlink fails
        lines = self.startedAgain(server)
        self.assertTrue(os.path.isdir(copies[0]))
        self.assertEqual([line for line in lines if "stays:" in line],
                         [f"MAG0:{os.path.relpath(copies[0], server.dataDir)}, a copy replaced just before the "
                          f"server stopped, stays: [Errno 21] Is a directory: '{copies[0]}'"])


class UnindexedCopyTests(unittest.TestCase):
    """Start-up removes a copy a store left unindexed before the restart
    (its index write failed, the sender told 0x0110: listed in the device's
    ``.pacs-unindexed``) when the index names another, intact file of its
    SOP instance: a later dgate -r indexed it, newer, in place of that one."""

    @defer.inlineCallbacks
    def test_aRefusedCopyOfAnIndexedObjectIsRemovedAtStartUp(self):
        server = PacsServer(self.mktemp())
        running = RunningArchive(self, workdir=server.workdir)
        image, = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=1)
        yield running.store([image])
        yield running.stop()
        with closing(sqlite3.connect(server.database)) as db:
            (acknowledged,), = db.execute("SELECT ObjectFile FROM DICOMImages")
        refused = f"{os.path.dirname(acknowledged)}/refused.dcm"
        acknowledgedPath, refusedPath = (os.path.join(server.dataDir, *name.split("/")) for name in (acknowledged,
                                                                                                      refused))
        shutil.copyfile(acknowledgedPath, refusedPath)
        journal = os.path.join(server.dataDir, ".pacs-unindexed")
        with open(journal, "w", encoding="utf-8") as f:
            f.write(f"{image.sopUID}\t{refused}\n")
        with capturedLogs() as events:
            RunningArchive(self, workdir=server.workdir)
        self.assertEqual([os.path.exists(path) for path in (acknowledgedPath, refusedPath, journal)],
                         [True, False, False])
        self.assertIn(f"removed {refusedPath}: a copy of {image.sopUID} the index failed on before the restart (its "
                      f"sender was told so); MAG0:{acknowledged} is the one indexed",
                      [formatEvent(event) for event in events])
