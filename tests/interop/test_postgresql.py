"""``twistd -n pacs`` with its index on a real PostgreSQL server (PostGres = 1):
the tests of tests.interop.databaseservers, and a database Conquest made."""

from pydicom.uid import generate_uid
from sqlalchemy import MetaData, text
from sqlalchemy.schema import CreateTable
from twisted.trial import unittest

from pacscore.converters.uidmap import uidModsTable
from pacscore.db.schema import buildTables
from pacscore.testing.corpus import makeDataset
from plugins.pacs_postgresql import postgresqlDriver
from tests.dbservers import PostgresServer, started
from tests.interop.databaseservers import DatabaseCrash, IndexOnServer, serverIni
from tests.interop.server import PacsServer
from tests.interop.test_find import PATIENT_ROOT, findscu
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
