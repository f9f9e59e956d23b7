"""The index on a real PostgreSQL server: the tests of tests.pacscore.db.onserver
run again on the PostgreSQL driver's engine (each test on a new database
of the test run's server, see tests.dbservers)."""

from sqlalchemy import text

from plugins.pacs_postgresql import postgresqlDriver
from tests.dbservers import postgresServer
from tests.pacscore.db import test_index
from tests.pacscore.db.onserver import casesOn
from tests.pacscore.export import test_queue


class OnPostgreSQL:
    def makeEngine(self):
        return postgresServer().newEngine(postgresqlDriver, self)

    def refuseImageNumber(self, value):
        """Make the database itself refuse images with this ImageNumber."""
        with self.engine.begin() as connection:
            connection.execute(text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.\"ImageNumber\" = '{value}' THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"))
            connection.execute(text('CREATE TRIGGER refuse BEFORE INSERT ON "DICOMImages" '
                                    "FOR EACH ROW EXECUTE FUNCTION refuse()"))


globals().update(casesOn(OnPostgreSQL))


class FilterTests(OnPostgreSQL, test_queue.FilterTests):  # replaces casesOn's

    def test_exportFilterSeesImageSeriesAndStudyColumns(self):
        """As on SQLite, but PostgreSQL compares the text columns with text
        only (Rows = '512'); the names may be written in any case."""
        self.store(test_index.makeRecord("1.2.3.1.1", ROWS="512"))
        self.assertTrue(self.queue.filterMatches("1.2.3.1.1", "rows = '512' and MODALITY = 'CT'"))
        self.assertTrue(self.queue.filterMatches("1.2.3.1.1", "StudyDate LIKE '2024%'"))
        self.assertFalse(self.queue.filterMatches("1.2.3.1.1", "Rows = '256'"))
        self.assertFalse(self.queue.filterMatches("9.9.9", "Rows = '512'"))
        self.assertFalse(self.queue.filterMatches("1.2.3.1.1", "Rows = 512"))  # text = integer: refused, no match
