"""The index on a real MariaDB server through the MySQL driver: the tests
of tests.pacscore.db.onserver run again on its engine (each test on a new
database of the test run's server, see tests.dbservers)."""

from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.db.errors import ValueTooLarge
from pacscore.db.index import Index
from pacscore.db.schema import checkFits
from pacscore.db.writer import BatchRunner, callEach
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


class MaxAllowedPacketTests(unittest.TestCase):
    """A statement larger than the server's max_allowed_packet (4 MB on
    MySQL 5.7, here 1 MB) has the server drop the connection, the new one
    too: the writes group-committed with it (other associations' C-STOREs)
    were refused with it, 0x0110."""

    def setUp(self):
        server = mariadbServer()
        limit = server.sql("SELECT @@GLOBAL.max_allowed_packet").strip()
        server.sql("SET GLOBAL max_allowed_packet = 1048576")
        self.addCleanup(server.sql, f"SET GLOBAL max_allowed_packet = {limit}")
        self.engine = mariadbServer().newEngine(mysqlDriver, self)  # its connections take the 1 MB
        with self.engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x LONGBLOB)"))
        self.runner = BatchRunner(self.engine, lambda: None)
        self.addCleanup(self.runner.closeConnection)

    @staticmethod
    def insert(connection, value):
        connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})
        return value

    def test_aWriteTooLargeFailsAlone(self):
        with capturedLogs() as events:
            results = self.runner.run([(callEach, (self.insert, (value,), {}))
                                       for value in (b"a", b"b" * 2_000_000, b"c")])
        self.assertEqual([ok for ok, _ in results], [True, False, True])
        results[1][1].trap(OperationalError)
        with self.engine.connect() as connection:
            self.assertEqual(sorted(connection.execute(text("SELECT x FROM t")).scalars()), [b"a", b"c"])
        self.assertTrue(any("max_allowed_packet" in formatEvent(event) for event in events))

    def test_checkFits(self):
        """checkFits refuses such a value before it is sent: the
        connection stays."""
        with self.engine.connect() as connection:
            checkFits(connection, b"x" * 1_000_000)
            checkFits(connection, b"'" * 500_000 + b"x" * 10_000)  # escaped: 1,010,000 bytes
            with self.assertRaises(ValueTooLarge) as raised:
                checkFits(connection, b"'" * 600_000)
            self.assertIn("max_allowed_packet of 1048576 bytes", str(raised.exception))
            self.assertEqual(connection.execute(text("SELECT 1")).scalar(), 1)
