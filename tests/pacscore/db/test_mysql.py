"""The index on a real MariaDB server through the MySQL driver: the tests
of tests.pacscore.db.onserver run again on its engine (each test on a new
database of the test run's server, see tests.dbservers)."""

from sqlalchemy import select, text
from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.db.index import Index
from plugins.pacs_mysql import mysqlDriver
from tests.dbservers import mariadbServer
from tests.pacscore.db.onserver import casesOn
from tests.pacscore.db.test_index import makeRecord
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout


class OnMySQL:
    def makeEngine(self):
        return mariadbServer().newEngine(mysqlDriver, self)

    def refuseImageNumber(self, value):
        """Make the database itself refuse images with this ImageNumber."""
        with self.engine.begin() as connection:
            connection.execute(text(
                "CREATE TRIGGER refuse BEFORE INSERT ON DICOMImages FOR EACH ROW BEGIN "
                f"IF NEW.ImageNumber = '{value}' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; "
                "END IF; END"))


globals().update(casesOn(OnMySQL))


def selectAll(engine, table):
    with engine.connect() as connection:
        return [row._mapping for row in connection.execute(select(table))]


class CollationTests(unittest.TestCase):
    """Index tables found with a case-insensitive collation (a server's
    default, tables made by hand or by Conquest) are converted to compare
    exactly: abc and ABC were one patient, Müller and muller too."""

    def test_caseInsensitiveTablesConverted(self):
        engine = mariadbServer().newEngine(mysqlDriver, self)
        index = Index(engine, conquestLayout(), TABLE_NAMES)
        index.createTables()
        with engine.begin() as connection:
            for name in ("DICOMPatients", "DICOMStudies"):
                connection.execute(text(f"ALTER TABLE {name} CONVERT TO CHARACTER SET latin1 "
                                        "COLLATE latin1_swedish_ci"))
        with capturedLogs() as events:
            Index(engine, conquestLayout(), TABLE_NAMES).createTables()
        self.assertEqual(sorted(event["table"] for event in events if "collations" in event),
                         ["DICOMPatients", "DICOMStudies"])
        with engine.connect() as connection:
            collations = {row[0] for row in connection.execute(text(
                "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                "AND COLLATION_NAME IS NOT NULL"))}
        self.assertEqual(collations, {"utf8mb4_bin"})
        index.storeMany([makeRecord(f"1.2.{n}.1.1", series=f"1.2.{n}.1", study=f"1.2.{n}", patient=patient)
                         for n, patient in enumerate(["abc", "ABC", "Müller", "muller"])])
        self.assertEqual(sorted(row["PatientID"] for row in selectAll(engine, index.tables.patient)),
                         ["ABC", "Müller", "abc", "muller"])
