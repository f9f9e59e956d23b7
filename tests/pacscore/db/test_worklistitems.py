"""Tests for pacscore.db.worklistitems: orders applied to the worklist
table (insert, replace, update, cancel), generated values kept, all of a
message or nothing, and the look-up WorkListMode uses."""

from sqlalchemy import event, select
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.dicomsql import DatabaseLayout
from pacscore.db.index import Index
from pacscore.db.worklistitems import OrderRefused, WorklistItems
from pacscore.hl7.mapping import OrderItem
from tests.pacscore.db.test_schema import TABLE_NAMES, sqliteEngine

ACCESSION, PATIENT_NAME, STUDY_UID, START_DATE = 0x00080050, 0x00100010, 0x0020000D, 0x00400002


def runNow(index):
    """A ``runWrite`` for ``index`` that runs in the calling thread, in a
    transaction of its own, and returns an already fired Deferred."""
    def run(fn, *args):
        def inTransaction():
            with index.engine.begin() as connection:
                return fn(connection, *args)
        return defer.maybeDeferred(inTransaction)
    return run


def uncommentStepStatus(text):
    """etc/dicom.sql's text with its Scheduled Procedure Step Status line in use."""
    commented = '#   { 0x0040, 0x0020, "SchedPSStatus"'
    assert commented in text
    return text.replace(commented, '    { 0x0040, 0x0020, "SchedPSStatus"')


def order(control, accession, **values):
    return OrderItem(control, dict({"AccessionNumber": accession}, **values))


def statusChange(accession, orderStatus):
    """An SC (status changed) order whose ORC-5 is ``orderStatus``."""
    return OrderItem("SC", {"AccessionNumber": accession, "PatientName": "Changed^Not"}, orderStatus=orderStatus)


class WorklistItemsTests(unittest.TestCase):

    def makeEngine(self):
        return sqliteEngine(self)

    def setUp(self):
        self.engine = self.makeEngine()
        self.index = Index(self.engine, DatabaseLayout.fromFile("etc/dicom.sql"), TABLE_NAMES)
        self.index.createTables()
        self.items = WorklistItems(self.index, {"StudyInstanceUID"}, runWrite=runNow(self.index))

    def apply(self, *orders):
        results = []
        self.items.apply(list(orders)).addCallback(results.extend)
        return results

    def refusal(self, *orders):
        return self.failureResultOf(self.items.apply(list(orders)), OrderRefused).getErrorMessage()

    def rows(self):
        table = self.index.tables.worklist
        with self.engine.connect() as connection:
            return sorted((r.AccessionNumber, r.PatientName, r.StudyInstanceUID, r.StartDate)
                          for r in connection.execute(select(table)))

    def test_newOrdersInserted(self):
        applied = self.apply(order("NW", "A1", PatientName="DOE^JOHN", StudyInstanceUID="1.2.1"),
                             order("NW", "A2", PatientName="ROE^JANE", StudyInstanceUID="1.2.2"))
        self.assertEqual([a.action for a in applied], ["inserted", "inserted"])
        self.assertEqual(self.rows(), [("A1", "DOE^JOHN", "1.2.1", None), ("A2", "ROE^JANE", "1.2.2", None)])

    def test_repeatedNewOrderReplacesKeepingGeneratedValues(self):
        self.apply(order("NW", "A1", PatientName="DOE^JOHN", StudyInstanceUID="1.2.1"))
        applied = self.apply(order("NW", "A1", PatientName="DOE^JOHNNY", StudyInstanceUID="1.2.9"))
        self.assertEqual(applied[0].action, "replaced")
        self.assertEqual(self.rows(), [("A1", "DOE^JOHNNY", "1.2.1", None)])

    def test_changeOrderUpdates(self):
        self.apply(order("NW", "A1", PatientName="DOE^JOHN", StartDate="20261201", StudyInstanceUID="1.2.1"))
        applied = self.apply(order("XO", "A1", PatientName="DOE^JOHN", StartDate="20261205",
                                   StudyInstanceUID="1.2.7"))
        self.assertEqual(applied[0].action, "updated")
        self.assertEqual(self.rows(), [("A1", "DOE^JOHN", "1.2.1", "20261205")])

    def test_changeOfAnUnknownOrderIsRefused(self):
        self.assertIn("no worklist item with accession number A9", self.refusal(order("XO", "A9")))
        self.assertEqual(self.rows(), [])

    def test_cancelDeletesAndCancelOfNothingIsFine(self):
        self.apply(order("NW", "A1"), order("NW", "A2"))
        applied = self.apply(order("CA", "A1"), order("DC", "A2"), order("CA", "A3"))
        self.assertEqual([a.action for a in applied], ["deleted", "deleted", "absent"])
        self.assertEqual(self.rows(), [])

    def test_statusChangeWithoutStatusColumn(self):
        """An SC whose ORC-5 is CA or DC removes the item as a cancel does;
        any other status changes nothing without a status column."""
        self.apply(order("NW", "A1"), order("NW", "A2"), order("NW", "A3"))
        applied = self.apply(statusChange("A1", "CA"), statusChange("A2", "DC"), statusChange("A3", "IP"),
                             statusChange("A9", "CA"))
        self.assertEqual([a.action for a in applied], ["deleted", "deleted", "unchanged (ORC-5 'IP')", "absent"])
        self.assertEqual([row[:2] for row in self.rows()], [("A3", None)])

    def test_aMessageIsAppliedWholeOrNotAtAll(self):
        self.refusal(order("NW", "A1"), order("XO", "A9"))
        self.assertEqual(self.rows(), [])

    def test_orderWithoutAccessionNumberIsRefused(self):
        self.assertIn("has no accession number", self.refusal(order("NW", "")))

    def test_valuesOfUnknownColumnsAreIgnored(self):
        self.apply(order("NW", "A1", NoSuchColumn="x", PatientName="DOE^JOHN"))
        self.assertEqual(self.rows(), [("A1", "DOE^JOHN", None, None)])

    def test_lookupByAccessionNumber(self):
        self.apply(order("NW", "A1", PatientName="DOE^JOHN", StudyInstanceUID="1.2.1", StartDate=""))
        self.assertEqual(self.items.lookup("A1"), {ACCESSION: "A1", PATIENT_NAME: "DOE^JOHN", STUDY_UID: "1.2.1"})
        self.assertIsNone(self.items.lookup("A2"))
        self.assertIsNone(self.items.lookup(""))

    def test_itemsStoredWithSpacesAroundTheAccessionNumber(self):
        """Items an older version stored with OBR-3's spaces ('A1 ') get
        their accession number trimmed at start-up (logged), so the orders
        for A1 find them: changed, replaced by a repeated NW rather than
        twinned, cancelled, looked up."""
        table = self.index.tables.worklist
        with self.engine.begin() as connection:
            for accession in ("A1 ", " A2", "A3 ", "A4"):
                connection.execute(table.insert().values(AccessionNumber=accession, PatientName="OLD^ONE"))
        with capturedLogs() as events:
            self.items.check()
        self.assertIn("3 worklist items had spaces around their accession number", 
                      "\n".join(formatEvent(e) for e in events))
        self.assertEqual(self.items.lookup("A1"), {ACCESSION: "A1", PATIENT_NAME: "OLD^ONE"})
        applied = self.apply(order("XO", "A1", PatientName="NEW^ONE"), order("NW", "A2", PatientName="NEW^TWO"),
                             order("CA", "A3"))
        self.assertEqual([a.action for a in applied], ["updated", "replaced", "deleted"])
        self.assertEqual(self.rows(), [("A1", "NEW^ONE", None, None), ("A2", "NEW^TWO", None, None),
                                       ("A4", "OLD^ONE", None, None)])
        with capturedLogs() as events:
            self.items.check()
        self.assertNotIn("trimmed", "\n".join(formatEvent(e) for e in events))

    def test_throughTheIndexWriter(self):
        items = WorklistItems(self.index)
        self.index.start()
        self.addCleanup(self.index.stop)
        return items.apply([order("NW", "A5", PatientName="X^Y")]).addCallback(
            lambda applied: self.assertEqual(self.rows(), [("A5", "X^Y", None, None)]))

    def test_noStatusColumnNothingMarked(self):
        self.apply(order("NW", "A1", PatientName="DOE^JOHN"))
        with self.engine.begin() as connection:
            self.assertEqual(self.items.markPerformed(connection, ["A1"], "STARTED"), ([], {}))


class AccessionIndexTests(unittest.TestCase):
    """SQLite searches the worklist's AccessionNumber index (EXPLAIN QUERY PLAN)."""

    makeEngine = WorklistItemsTests.makeEngine
    setUp = WorklistItemsTests.setUp
    apply = WorklistItemsTests.apply

    def test_accessionNumberIndexUsed(self):
        """The look-ups of an accession number (orders, MPPS, WorkListMode's
        on every stored object) search the column's index, not the table
        (EXPLAIN QUERY PLAN on SQLite)."""
        statements = []

        def listener(conn, cursor, statement, parameters, *rest):
            statements.append((statement, parameters))
        event.listen(self.engine, "before_cursor_execute", listener)
        try:
            self.items.lookup("A1")
            self.apply(order("NW", "A1"), order("XO", "A1"), order("NW", "A1"), order("CA", "A1"))
        finally:
            event.remove(self.engine, "before_cursor_execute", listener)
        searches = [(s, p) for s, p in statements if s.lstrip().startswith(("SELECT", "UPDATE", "DELETE"))]
        self.assertGreaterEqual(len(searches), 4)
        with self.engine.connect() as connection:
            for statement, parameters in searches:
                plan = [row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                                      parameters)]
                self.assertTrue(any("INDEX ix_DICOMWorkList_AccessionNumber" in line for line in plan),
                                (statement, plan))
                self.assertFalse([line for line in plan if line.startswith("SCAN")], (statement, plan))


class ScheduledStepStatusTests(unittest.TestCase):
    """A dicom.sql whose worklist has a Scheduled Procedure Step Status
    column: new items are SCHEDULED, MPPS marks them."""

    def setUp(self):
        self.engine = sqliteEngine(self)
        with open("etc/dicom.sql") as f:
            text = uncommentStepStatus(f.read())
        self.index = Index(self.engine, DatabaseLayout.fromString(text), TABLE_NAMES)
        self.index.createTables()
        self.items = WorklistItems(self.index, runWrite=runNow(self.index))

    def statuses(self):
        table = self.index.tables.worklist
        with self.engine.connect() as connection:
            return dict(connection.execute(select(table.c.AccessionNumber, table.c.SchedPSStatus)).all())

    def test_newItemsAreScheduledAndMarked(self):
        self.successResultOf(self.items.apply([order("NW", "A1"), order("NW", "A2", SchedPSStatus="ARRIVED"),
                                               order("NW", "A3")]))
        self.assertEqual(self.statuses(), {"A1": "SCHEDULED", "A2": "ARRIVED", "A3": "SCHEDULED"})
        with self.engine.begin() as connection:
            self.assertEqual(self.items.markPerformed(connection, ["A3", "A1", "A9"], "STARTED"), (["A1", "A3"], {}))
            self.assertEqual(self.items.markPerformed(connection, [], "STARTED"), ([], {}))
        self.assertEqual(self.statuses(), {"A1": "STARTED", "A2": "ARRIVED", "A3": "STARTED"})
        self.assertEqual(self.items.lookup("A1")[0x00400020], "STARTED")

    def test_onlyChangeableItemsMarked(self):
        """Given ``changeable``, the items in a status it is false of keep
        it, and are named with it."""
        self.successResultOf(self.items.apply([order("NW", acc) for acc in ("A1", "A2", "A3")]))
        with self.engine.begin() as connection:
            self.items.markPerformed(connection, ["A1", "A2"], "STARTED")
            self.items.markPerformed(connection, ["A2"], "COMPLETED")
            self.assertEqual(self.items.markPerformed(connection, ["A1", "A2", "A3", "A9"], "SCHEDULED",
                                                          changeable="STARTED".__eq__),
                             (["A1"], {"A2": "COMPLETED", "A3": "SCHEDULED"}))
        self.assertEqual(self.statuses(), {"A1": "SCHEDULED", "A2": "COMPLETED", "A3": "SCHEDULED"})

    def test_aNewOrderForADiscontinuedItemSchedulesItAgain(self):
        """A NW re-sent for an item whose step was DISCONTINUED (the RIS
        orders it again) makes it SCHEDULED; one for an item STARTED or
        COMPLETED (a repeated message) and an XO keep its status."""
        self.successResultOf(self.items.apply([order("NW", acc) for acc in ("A1", "A2", "A3", "A4")]))
        with self.engine.begin() as connection:
            for accession, status in (("A1", "DISCONTINUED"), ("A2", "STARTED"), ("A3", "COMPLETED"),
                                      ("A4", "DISCONTINUED")):
                self.items.markPerformed(connection, [accession], status)
        applied = self.successResultOf(self.items.apply([order("NW", "A1"), order("NW", "A2"), order("NW", "A3"),
                                                         order("XO", "A4")]))
        self.assertEqual([a.action for a in applied], ["replaced", "replaced", "replaced", "updated"])
        self.assertEqual(self.statuses(), {"A1": "SCHEDULED", "A2": "STARTED", "A3": "COMPLETED",
                                           "A4": "DISCONTINUED"})

    def test_statusChangesSetTheStepStatus(self):
        """An SC (status changed) order: ORC-5 IP makes the item STARTED, CM
        COMPLETED, CA and DC remove it; another status changes nothing; no
        other value of the item changes."""
        self.successResultOf(self.items.apply([order("NW", acc) for acc in ("A1", "A2", "A3", "A4", "A5")]))
        applied = self.successResultOf(self.items.apply([
            statusChange("A1", "IP"), statusChange("A2", "CM"), statusChange("A3", "CA"), statusChange("A4", "DC"),
            statusChange("A5", "HD"), statusChange("A9", "IP")]))
        self.assertEqual([a.action for a in applied], ["marked STARTED", "marked COMPLETED", "deleted", "deleted",
                                                       "unchanged (ORC-5 'HD')", "absent"])
        self.assertEqual(self.statuses(), {"A1": "STARTED", "A2": "COMPLETED", "A5": "SCHEDULED"})
        self.assertIsNone(self.items.lookup("A1").get(0x00100010))

    def test_statusChangeNeverMovesAFinishedItemBack(self):
        """An SC with ORC-5 IP or CM (a RIS relaying a step's start late)
        leaves a COMPLETED or DISCONTINUED item so, as MPPS does, and says
        so; CM still follows IP."""
        self.successResultOf(self.items.apply([order("NW", acc) for acc in ("A1", "A2", "A3")]))
        with self.engine.begin() as connection:
            self.items.markPerformed(connection, ["A1"], "COMPLETED")
            self.items.markPerformed(connection, ["A2"], "DISCONTINUED")
        applied = self.successResultOf(self.items.apply([
            statusChange("A1", "IP"), statusChange("A2", "IP"), statusChange("A2", "CM"), statusChange("A3", "IP"),
            statusChange("A3", "CM"), statusChange("A3", "IP")]))
        self.assertEqual([a.action for a in applied], [
            "kept COMPLETED (ORC-5 'IP')", "kept DISCONTINUED (ORC-5 'IP')", "kept DISCONTINUED (ORC-5 'CM')",
            "marked STARTED", "marked COMPLETED", "kept COMPLETED (ORC-5 'IP')"])
        self.assertEqual(self.statuses(), {"A1": "COMPLETED", "A2": "DISCONTINUED", "A3": "COMPLETED"})

    def test_aTableThatPredatesTheColumnIsLeftAlone(self):
        """dicom.sql gained the column, the database table did not: warned
        at start-up, and orders and MPPS go on without it."""
        engine = sqliteEngine(self)
        Index(engine, DatabaseLayout.fromFile("etc/dicom.sql"), TABLE_NAMES).createTables()
        index = Index(engine, self.index.layout, TABLE_NAMES)
        items = WorklistItems(index, runWrite=runNow(index))
        with capturedLogs() as events:
            items.check()
        self.assertIsNone(items.statusColumn)
        self.assertIn("no SchedPSStatus column yet", formatEvent(events[0]))
        self.successResultOf(items.apply([order("NW", "A1")]))
        with engine.begin() as connection:
            self.assertEqual(items.markPerformed(connection, ["A1"], "STARTED"), ([], {}))
        self.items.check()
        self.assertEqual(self.items.statusColumn, "SchedPSStatus")
        index.initializeTables(worklist=True)  # dgate --initializetables:2
        with engine.begin() as connection:
            items.checkStatusColumn(connection)
        self.assertEqual(items.statusColumn, "SchedPSStatus")
