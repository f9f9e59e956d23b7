"""The index tests that run again on each database server's engine
(test_postgresql, test_mysql): this package's tests of the upsert rules,
pending marks, direct statements, worklist rows and the C-FIND
translation, the export queue's and the UIDMODS table's."""

from tests.pacscore.converters import test_uidmap
from tests.pacscore.db import test_direct, test_index, test_pending, test_query, test_worklistitems
from tests.pacscore.export import test_queue

SERVER_TESTS = (
    test_index.UpsertTests, test_index.StoreManyTests, test_index.InitializeTablesTests,
    test_pending.PendingFilesTests, test_direct.DirectStatementTests, test_worklistitems.WorklistItemsTests,
    test_query.TagMappingTests, test_query.ParentTableJoinTests, test_query.MatchingTests,
    test_query.PersonNameTests, test_query.CaseInsensitiveColumnTests, test_query.MultiValuedColumnTests,
    test_query.DateTimeTests, test_query.DateTimePagingTests, test_query.ComputedFieldTests, test_query.SortOrderTests,
    test_query.RequestedSortTests, test_query.InstancesTests,
    test_queue.JobTests, test_queue.FilterTests, test_queue.ActionTests, test_uidmap.UIDMapTests)


def casesOn(server):
    """``{name: test case}``: each of SERVER_TESTS with the mixin ``server``
    (which gives ``makeEngine`` and ``refuseImageNumber``) first, for the
    test module of ``server`` to put in its namespace."""
    return {case.__name__: type(case.__name__, (server, case), {"__module__": server.__module__})
            for case in SERVER_TESTS}
