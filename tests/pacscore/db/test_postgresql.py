"""The index on a real PostgreSQL server: this package's tests of the
upsert rules, pending marks, direct statements, worklist rows and the
C-FIND translation, and the export queue's, run again on the PostgreSQL
driver's engine (each test on a new database of the test run's server, see
tests.postgres)."""

from sqlalchemy import text

from plugins.pacs_postgresql import postgresqlDriver
from tests.pacscore.db import test_direct, test_index, test_pending, test_query, test_worklistitems
from tests.pacscore.export import test_queue
from tests.postgres import createDatabase, postgresServer


def postgresEngine(testCase):
    """The driver's engine on a new database, disposed of after the test
    (before the database is dropped)."""
    engine = postgresqlDriver.createEngine(postgresServer().url(createDatabase(testCase)), None)
    testCase.addCleanup(engine.dispose)
    return engine


class OnPostgreSQL:
    def makeEngine(self):
        return postgresEngine(self)

    def refuseImageNumber(self, value):
        """Make the database itself refuse images with this ImageNumber."""
        with self.engine.begin() as connection:
            connection.execute(text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.\"ImageNumber\" = '{value}' THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"))
            connection.execute(text('CREATE TRIGGER refuse BEFORE INSERT ON "DICOMImages" '
                                    "FOR EACH ROW EXECUTE FUNCTION refuse()"))


class UpsertTests(OnPostgreSQL, test_index.UpsertTests):
    pass


class StoreManyTests(OnPostgreSQL, test_index.StoreManyTests):
    pass


class InitializeTablesTests(OnPostgreSQL, test_index.InitializeTablesTests):
    pass


class PendingFilesTests(OnPostgreSQL, test_pending.PendingFilesTests):
    pass


class DirectStatementTests(OnPostgreSQL, test_direct.DirectStatementTests):
    pass


class WorklistItemsTests(OnPostgreSQL, test_worklistitems.WorklistItemsTests):
    pass


class TagMappingTests(OnPostgreSQL, test_query.TagMappingTests):
    pass


class ParentTableJoinTests(OnPostgreSQL, test_query.ParentTableJoinTests):
    pass


class MatchingTests(OnPostgreSQL, test_query.MatchingTests):
    pass


class PersonNameTests(OnPostgreSQL, test_query.PersonNameTests):
    pass


class MultiValuedColumnTests(OnPostgreSQL, test_query.MultiValuedColumnTests):
    pass


class DateTimeTests(OnPostgreSQL, test_query.DateTimeTests):
    pass


class ComputedFieldTests(OnPostgreSQL, test_query.ComputedFieldTests):
    pass


class SortOrderTests(OnPostgreSQL, test_query.SortOrderTests):
    pass


class InstancesTests(OnPostgreSQL, test_query.InstancesTests):
    pass


class JobTests(OnPostgreSQL, test_queue.JobTests):
    pass


class FilterTests(OnPostgreSQL, test_queue.FilterTests):

    def test_exportFilterSeesImageSeriesAndStudyColumns(self):
        """As on SQLite, but PostgreSQL compares the text columns with text
        only (Rows = '512'); the names may be written in any case."""
        self.store(test_index.makeRecord("1.2.3.1.1", ROWS="512"))
        self.assertTrue(self.queue.filterMatches("1.2.3.1.1", "rows = '512' and MODALITY = 'CT'"))
        self.assertTrue(self.queue.filterMatches("1.2.3.1.1", "StudyDate LIKE '2024%'"))
        self.assertFalse(self.queue.filterMatches("1.2.3.1.1", "Rows = '256'"))
        self.assertFalse(self.queue.filterMatches("9.9.9", "Rows = '512'"))
        self.assertFalse(self.queue.filterMatches("1.2.3.1.1", "Rows = 512"))  # text = integer: refused, no match


class ActionTests(OnPostgreSQL, test_queue.ActionTests):
    pass
