"""``twistd -n pacs`` with its index on a real PostgreSQL server (PostGres = 1):
the tests of tests.interop.databaseservers, and a database Conquest made."""

import json
import os
import time

from pydicom.uid import generate_uid
from sqlalchemy import MetaData, text
from sqlalchemy.schema import CreateTable
from twisted.trial import unittest

from pacscore.converters.uidmap import uidModsTable
from pacscore.db.schema import buildTables
from pacscore.testing.corpus import PREFIX, makeDataset
from pacscore.testing.orders import orderMessage, writeMessages
from plugins.pacs_postgresql import postgresqlDriver
from tests.dbservers import PostgresServer, started
from tests.interop.databaseservers import DatabaseCrash, IndexOnServer, selectFrom, serverIni
from tests.interop.peers import StorescpServer
from tests.interop.server import PacsServer, waitFor
from tests.interop.test_find import PATIENT_ROOT, STUDY_ROOT, findscu
from tests.interop.test_forwarding import queued, writeImages
from tests.interop.test_web import httpGet
from tests.pacscore.db.test_query import defaultTableNames, shippedLayout


class PostgreSQLServerTests(IndexOnServer, unittest.TestCase):
    driver = postgresqlDriver
    serverClass = PostgresServer


class DatabaseCrashTests(DatabaseCrash, unittest.TestCase):
    driver = postgresqlDriver
    serverClass = PostgresServer


class ConquestDatabaseTests(unittest.TestCase):
    """A database whose tables Conquest made: its SQL quotes no names, so
    PostgreSQL keeps them in lower case (dicompatients, patientid ...)."""

    def setUp(self):
        self.database = started(PostgresServer)
        self.engine = self.database.newEngine(postgresqlDriver, self)
        metadata = MetaData()
        tables = [*buildTables(shippedLayout(), defaultTableNames(), metadata), uidModsTable(metadata)]
        with self.engine.begin() as connection:
            for table in tables:  # as Conquest's CREATE TABLE DICOMPatients (PatientID varchar(64), ...)
                connection.exec_driver_sql(str(CreateTable(table).compile(self.engine)).replace('"', ""))
            connection.exec_driver_sql("INSERT INTO DICOMPatients (PatientID, PatientName) VALUES ('OLD1', 'Conquest^Old')")
            connection.exec_driver_sql("INSERT INTO UIDMODS (MODTime, OldUID, MODType, NewUID) "
                                       "VALUES (1, '1.2.3', 'SOPInstanceUID', '9.8.7')")

    def test_tablesTakenOver(self):
        server = PacsServer(self.mktemp(), ini=serverIni(postgresqlDriver, self.database, self.engine.url.database))
        self.addCleanup(server.stop)
        server.start()
        self.assertIn("Took over table dicompatients (made by Conquest", server.log())
        path = f"{server.workdir}/new.dcm"
        makeDataset("NEW1", "Pacs^New", generate_uid(), generate_uid(), generate_uid(), 1, 1).save_as(
            path, enforce_file_format=True)
        result = server.store(path)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        matches, result = findscu(server, PATIENT_ROOT, "PATIENT", {"PatientID": None, "PatientName": None})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(sorted((m.PatientID, str(m.PatientName)) for m in matches),
                         [("NEW1", "Pacs^New"), ("OLD1", "Conquest^Old")])
        with self.engine.connect() as connection:
            names = {row[0] for row in connection.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"))}
            self.assertFalse({n for n in names if n.lower().startswith("dicom") and n == n.lower()}, names)
            self.assertEqual(connection.execute(text('SELECT "NewUID" FROM "UIDMODS"')).all(), [("9.8.7",)])
        result = server.dgate("--query:dicompatients|patientid|patientname like 'Conquest%'|%s")
        self.assertEqual(result.stdout.split(), ["OLD1"], result.stdout + result.stderr)


class DatabaseEncodingTests(unittest.TestCase):
    """pacs on a Conquest site's database in SQL_ASCII (it did not start:
    psycopg read every text as bytes) and in LATIN1 (a Greek object was
    refused with 0110 after its file was written; a C-FIND with a non-ASCII
    name failed)."""

    def serverOn(self, encoding, **ini):
        database = started(PostgresServer)
        name = database.createDatabase(self)
        database.sql(f"DROP DATABASE {name}")
        database.sql(f"CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        server = PacsServer(self.mktemp(), ini={**serverIni(postgresqlDriver, database, name), **ini})
        self.addCleanup(server.stop)
        server.start()
        for patientID, patientName in (("LATIN", "Äneas^Müller"), ("GREEK", "Γιάννης^Σ")):
            path = f"{server.workdir}/{patientID}.dcm"
            dataset = makeDataset(patientID, patientName, generate_uid(), generate_uid(), generate_uid(), 1, 1)
            dataset.SpecificCharacterSet = "ISO_IR 192"
            dataset.save_as(path, enforce_file_format=True)
            result = server.store(path)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return server

    def names(self, server, name):
        matches, result = findscu(server, PATIENT_ROOT, "PATIENT", {"SpecificCharacterSet": "ISO_IR 192",
                                                                    "PatientName": name, "PatientID": None})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return sorted((m.PatientID, str(m.PatientName)) for m in matches)

    def test_sqlAscii(self):
        server = self.serverOn("SQL_ASCII")
        self.assertEqual(self.names(server, "Äneas*"), [("LATIN", "Äneas^Müller")])
        self.assertEqual(self.names(server, "Γιάννης*"), [("GREEK", "Γιάννης^Σ")])

    def test_latin1(self):
        server = self.serverOn("LATIN1")
        self.assertIn("is in the LATIN1 encoding, which cannot hold every character", server.log())
        self.assertEqual(self.names(server, "Äneas*"), [("LATIN", "Äneas^Müller")])
        self.assertEqual(self.names(server, "Γιάννης*"), [])
        self.assertEqual(self.names(server, "*"), [("GREEK", "???????^?"), ("LATIN", "Äneas^Müller")])
        for key in ("StudyDescription", "AccessionNumber", "PatientID"):  # failed with C000 and HTTP 503
            matches, result = findscu(server, STUDY_ROOT, "STUDY", {"SpecificCharacterSet": "ISO_IR 192",
                                                                     key: "Μελέτη*", "StudyInstanceUID": None})
            self.assertEqual((key, result.returncode, matches), (key, 0, []), result.stdout + result.stderr)
            status, _, body = httpGet(f"http://127.0.0.1:{server.webPort}/dicom-web/studies?{key}=%CE%9C%CE%B5")
            self.assertEqual((key, status, json.loads(body)), (key, 200, []))

    def test_latin1NameInTheFileName(self):
        """FileNameSyntax = 0 puts the patient name in the file's path, which
        is indexed too: a Greek one was written, then refused with 0110 and
        left on disk; its file name has a _ for each character LATIN1 cannot
        hold, as its indexed name has a ?."""
        server = self.serverOn("LATIN1", FileNameSyntax="0")
        self.assertNotIn("could not be indexed", server.log())
        self.assertEqual(self.names(server, "*"), [("GREEK", "???????^?"), ("LATIN", "Äneas^Müller")])
        self.assertEqual(sorted(name for name in os.listdir(server.dataDir) if "_" in name),
                         ["_______^_GREEK", "Äneas^Mü_LATIN"])


class SwitchFromSQLiteTests(unittest.TestCase):
    """An archive switched from SQLite to PostgreSQL as README says
    (PostGres = 1 ..., dgate -r, start) with forwards queued for a
    destination that was down: they were left in the SQLite file, never
    delivered; they are carried over and delivered once it comes up."""

    def test_queuedForwardsDeliveredAfterTheSwitch(self):
        workdir = self.mktemp()
        destination = StorescpServer(os.path.join(workdir, "down"), aet="DOWNSCP")
        sender = PacsServer(os.path.join(workdir, "pacs"), ae="PACSA", ini={
            "ExportConverters": "1", "ExportModality0": "CT", "ExportConverter0": "forward to DOWNSCP",
            "RetryDelay": "1", "FailHoldOff": "1"})
        sender.addNode("DOWNSCP", destination.port)
        self.addCleanup(sender.stop)
        sender.start()
        images = writeImages(os.path.join(workdir, "in"), "CT", 2, PREFIX + "78.1")
        self.assertEqual(sender.store(*[path for path, _ in images]).returncode, 0)
        waitFor(lambda: "failed: cannot associate with DOWNSCP" in sender.log(), message="a failed attempt")
        sender.stop()
        self.assertEqual(queued(sender), 2)
        database = started(PostgresServer)
        engine = database.newEngine(postgresqlDriver, self)
        sender.setIni(**serverIni(postgresqlDriver, database, engine.url.database))
        result = sender.dgate("-r")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        sender.start()
        self.assertIn(f"Carried over from {sender.database}, the SQLite index of this working folder before the "
                      f"switch to this database, the rows no stored file holds: PacsForwards 2 ", sender.log())
        self.assertEqual(queued(sender), 0)
        self.addCleanup(destination.stop)
        destination.start()
        waitFor(lambda: len(destination.files()) >= 2, message="the images at the destination")
        waitFor(lambda: selectFrom(engine, "count(*)", "PacsForwards") == [(0,)], message="an empty queue")
        time.sleep(2)  # more polls and retry delays: nothing is sent twice
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in destination.datasets()),
                         sorted(sop for _, sop in images))


class ForwardLookUpOutageTests(unittest.TestCase):
    """PostgreSQL restarting while the export runner looks a lane's forwards
    up (the look-up waiting on a lock on DICOMImages, so that it is under way
    when the server goes)."""

    def test_aForwardLookedUpAsTheDatabaseRestartsGoesOnceItAnswers(self):
        """The forward failed with a traceback and held its healthy
        destination off for FailHoldOff (60 s): it now arrives within a few
        seconds of the database answering again."""
        database = PostgresServer().start()
        self.addCleanup(database.stop)
        database.sql("CREATE DATABASE conquest")
        workdir = self.mktemp()
        destination = StorescpServer(os.path.join(workdir, "scp"), aet="SCPFAST")
        self.addCleanup(destination.stop)
        destination.start()
        server = PacsServer(os.path.join(workdir, "pacs"), ini={
            **serverIni(postgresqlDriver, database, "conquest"), "ExportConverters": "1",
            "ExportModality0": "CT", "ExportConverter0": "forward series to SCPFAST", "ForwardCollectDelay": "2"})
        server.addNode("SCPFAST", destination.port)
        self.addCleanup(server.stop)
        server.start()
        engine = postgresqlDriver.createEngine(database.url("conquest"), None)
        self.addCleanup(engine.dispose)
        images = writeImages(os.path.join(workdir, "in"), "CT", 2, PREFIX + "79.1")
        self.assertEqual(server.store(*[path for path, _ in images]).returncode, 0)
        locker = engine.connect()
        locker.exec_driver_sql('LOCK TABLE "DICOMImages" IN ACCESS EXCLUSIVE MODE')

        def lookUpWaits():
            with engine.connect() as connection:
                return connection.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE :table"),
                    {"table": '%"DICOMImages"%'}).scalar() > 0
        waitFor(lookUpWaits, timeout=30, message="the forward's look-up waiting on the lock")
        database.crash()
        locker.invalidate()
        engine.dispose()
        database.start()
        back = time.monotonic()
        waitFor(lambda: len(destination.files()) >= 2, timeout=20, message="the series at SCPFAST")
        self.assertLess(time.monotonic() - back, 15)
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in destination.datasets()), sorted(sop for _, sop in images))
        log = server.log()
        self.assertNotIn("Traceback", log)
        self.assertIn("they stay queued, no attempt counted, SCPFAST not held off", log)


class DropFolderOutageTests(unittest.TestCase):
    """An HL7 drop folder file whose second order the database cannot store
    for a while (SQLSTATE 53100, disk full, raised by a trigger), with a
    cancel of its first order coming over MLLP meanwhile."""

    def setUp(self):
        self.database = started(PostgresServer)
        self.engine = self.database.newEngine(postgresqlDriver, self)
        self.server = PacsServer(self.mktemp(), ini={
            **serverIni(postgresqlDriver, self.database, self.engine.url.database), "HL7DropFolderInterval": "1"})
        self.addCleanup(self.server.stop)
        self.server.start()
        self.drop = os.path.join(self.server.workdir, "hl7")

    def accessions(self):
        with self.engine.connect() as connection:
            return sorted(row[0] for row in connection.execute(text('SELECT "AccessionNumber" FROM "DICOMWorkList"')))

    def test_aCancelReceivedWhileAFileWaitsStaysInEffect(self):
        with self.engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE FUNCTION full_b2() RETURNS trigger AS $$ BEGIN IF NEW.\"AccessionNumber\" = 'B2' THEN "
                "RAISE EXCEPTION 'no space left on device' USING ERRCODE = '53100'; END IF; RETURN NEW; END $$ "
                "LANGUAGE plpgsql")
            connection.exec_driver_sql('CREATE TRIGGER full_b2 BEFORE INSERT ON "DICOMWorkList" '
                                       "FOR EACH ROW EXECUTE FUNCTION full_b2()")
        path = os.path.join(self.server.workdir, ".orders.hl7")
        writeMessages(path, [orderMessage("R1", "A1", "P1", "First^A"), orderMessage("R2", "B2", "P2", "Second^B"),
                             orderMessage("R3", "C3", "P3", "Third^C")])
        os.replace(path, os.path.join(self.drop, "orders.hl7"))
        waitFor(lambda: "orders.hl7 stays for the next scan: message 2" in self.server.log(),
                message="A1 applied")
        self.assertEqual(self.accessions(), ["A1"])
        cancel = os.path.join(self.server.workdir, "cancel.hl7")
        writeMessages(cancel, [orderMessage("K1", "A1", "P1", "First^A", control="CA")])
        self.assertIn("MSA|AA|K1", self.server.sendHL7(cancel))
        time.sleep(3)
        self.assertEqual(self.accessions(), [])
        with self.engine.begin() as connection:
            connection.exec_driver_sql('DROP TRIGGER full_b2 ON "DICOMWorkList"')
        waitFor(lambda: os.path.exists(os.path.join(self.drop, "processed", "orders.hl7")), message="the rest")
        self.assertEqual(self.accessions(), ["B2", "C3"])
        log = self.server.log()
        self.assertEqual(log.count("orders.hl7 stays for the next scan"), 1, log)
        self.assertEqual(log.count("the database failed"), 1, log)
        self.assertEqual(os.listdir(os.path.join(self.drop, "failed")), [])
