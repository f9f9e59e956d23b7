"""Tests for pacscore.db.worklistquery: Modality Worklist keys as SQL on the
dicom.sql *WorkList* table, built from the shipped etc/dicom.sql in an
in-memory SQLite database."""

import os
from dataclasses import replace

from sqlalchemy import MetaData, event, insert
from twisted.trial import unittest

from pacscore.config.dicomsql import DatabaseLayout
from pacscore.db.query import QueryKey
from pacscore.db.schema import buildTables
from pacscore.db.worklistquery import WorklistQuery
from tests.pacscore.db.test_schema import TABLE_NAMES
from tests.pacscore.db.test_writer import sqliteEngine

DICOM_SQL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "etc", "dicom.sql")

ACCESSION, PATIENT_ID, PATIENT_NAME, MODALITY = 0x00080050, 0x00100020, 0x00100010, 0x00080060
SCHEDULED_AE, START_DATE, START_TIME = 0x00400001, 0x00400002, 0x00400003
STEP_ID, STEP_DESCRIPTION, PERFORMING_PHYSICIAN = 0x00400009, 0x00400007, 0x00400006
STUDY_UID, OTHER_PATIENT_IDS, PROTOCOL_CODES = 0x0020000D, 0x00101000, 0x00400008

# One scheduled procedure step per row: (accession, patient ID, name, modality,
# station AE, start date, start time).
ROWS = [
    ("ACC1", "P1", "DOE^JOHN", "CT", "CT1", "20240102", "0800"),
    ("ACC2", "P1", "DOE^JOHN", "MR", "MR1", "20240102", "1330"),
    ("ACC3", "P2", "Müller^Hans", "CT", "CT1", "20240103", "090000"),
    ("ACC4", "P3", "山田^太郎", "US", "US1", "20240105", "1000"),
    ("ACC5", "P4", "doex^jane", "CT", "CT2", "20231231", "2359"),
    ("ACC6", "P5", "O'BRIEN^MARY", "MR", "MR1", "", ""),
]


def worklistRows():
    """``ROWS`` as ``{tag: value}``, with a few more worklist columns."""
    for accession, patientID, name, modality, station, date, time in ROWS:
        yield {ACCESSION: accession, PATIENT_ID: patientID, PATIENT_NAME: name, MODALITY: modality,
               SCHEDULED_AE: station, START_DATE: date, START_TIME: time, STEP_ID: f"SPS-{accession}",
               STEP_DESCRIPTION: f"{modality} exam", STUDY_UID: f"1.2.3.{accession[3:]}",
               PERFORMING_PHYSICIAN: "鈴木^一郎" if accession == "ACC1" else ""}


def worklistDatabase(testCase, rows=None):
    """``(engine, layout, worklist table)``: the shipped dicom.sql's tables in
    a new SQLite database of the SQLite driver, the worklist table holding
    ``rows`` (``{tag: value}``, default ``worklistRows()``)."""
    layout = DatabaseLayout.fromFile(DICOM_SQL)
    engine = sqliteEngine(testCase)
    metadata = MetaData()
    table = buildTables(layout, TABLE_NAMES, metadata).worklist
    metadata.create_all(engine)
    names = {c.tag: c.name for c in layout.worklist if not c.isSequenceMarker}
    with engine.begin() as connection:
        connection.execute(insert(table), [{names[tag]: value for tag, value in row.items()}
                                           for row in (worklistRows() if rows is None else rows)])
    return engine, layout, table


def K(tag, vr, value=""):
    return QueryKey(tag, vr, value)


class WorklistQueryTests(unittest.TestCase):

    def setUp(self):
        self.engine, self.layout, table = worklistDatabase(self)
        self.query = WorklistQuery(table, self.layout.worklist)

    def find(self, *keys):
        with self.engine.connect() as connection:
            return self.query.find(connection, list(keys))

    def accessions(self, *keys):
        """The accession numbers of the matches, in answer order."""
        return [row[ACCESSION] for row in self.find(*keys)]

    def assertMatches(self, keys, expected):
        """``keys`` (one QueryKey or a list) select exactly ``expected``."""
        keys = [keys] if isinstance(keys, QueryKey) else keys
        self.assertEqual(sorted(self.accessions(*keys)), sorted(expected))

    def test_universalMatchingReturnsEveryColumnByTag(self):
        """No key, or only empty ones: every row, by start date, start time
        and accession number, with every dicom.sql column (not the sequence
        marker) by its tag."""
        expected = ["ACC6", "ACC5", "ACC1", "ACC2", "ACC3", "ACC4"]
        self.assertEqual(self.accessions(), expected)
        self.assertEqual(self.accessions(K(PATIENT_NAME, "PN"), K(START_DATE, "DA"), K(MODALITY, "CS", "*")),
                         expected)
        first = self.find()[1]
        self.assertEqual(set(first), {c.tag for c in self.layout.worklist if not c.isSequenceMarker})
        self.assertNotIn(0x00400100, first)
        self.assertEqual((first[PATIENT_NAME], first[SCHEDULED_AE], first[START_TIME], first[STEP_ID],
                          first[PERFORMING_PHYSICIAN]),
                         ("doex^jane", "CT2", "2359", "SPS-ACC5", ""))

    def test_scheduledStationAETitle(self):
        self.assertMatches(K(SCHEDULED_AE, "AE", "CT1"), ["ACC1", "ACC3"])
        self.assertMatches(K(SCHEDULED_AE, "AE", "CT*"), ["ACC1", "ACC3", "ACC5"])
        self.assertMatches(K(SCHEDULED_AE, "AE", "CT1\\US1"), ["ACC1", "ACC3", "ACC4"])
        self.assertMatches(K(SCHEDULED_AE, "AE", "ct1"), [])

    def test_modality(self):
        self.assertMatches(K(MODALITY, "CS", "CT"), ["ACC1", "ACC3", "ACC5"])
        self.assertMatches(K(MODALITY, "CS", "MR"), ["ACC2", "ACC6"])
        self.assertMatches(K(MODALITY, "CS", "C?"), ["ACC1", "ACC3", "ACC5"])
        self.assertMatches(K(MODALITY, "CS", "XA"), [])

    def test_startDate(self):
        self.assertMatches(K(START_DATE, "DA", "20240102"), ["ACC1", "ACC2"])
        self.assertMatches(K(START_DATE, "DA", "20240102-20240103"), ["ACC1", "ACC2", "ACC3"])
        self.assertMatches(K(START_DATE, "DA", "2024.01.03-2024.01.05"), ["ACC3", "ACC4"])
        self.assertMatches(K(START_DATE, "DA", "20240103-"), ["ACC3", "ACC4"])
        # an open lower bound does not match the step without a date
        self.assertMatches(K(START_DATE, "DA", "-20240102"), ["ACC5", "ACC1", "ACC2"])
        self.assertMatches(K(START_DATE, "DA", "20240104"), [])

    def test_startTime(self):
        self.assertMatches(K(START_TIME, "TM", "0800-0959"), ["ACC1", "ACC3"])
        self.assertMatches(K(START_TIME, "TM", "0800-1200"), ["ACC1", "ACC3", "ACC4"])
        self.assertMatches(K(START_TIME, "TM", "-1000"), ["ACC1", "ACC3", "ACC4"])
        self.assertMatches(K(START_TIME, "TM", "13:00-"), ["ACC2", "ACC5"])
        self.assertMatches(K(START_TIME, "TM", "1330"), ["ACC2"])

    def test_startTimeSingleValueIsATimeOfDay(self):
        """HL7 times are stored as sent (``1330``); a modality asking for
        ``133000`` means the same time, and ``0900`` the stored ``090000``."""
        self.assertMatches(K(START_TIME, "TM", "133000"), ["ACC2"])
        self.assertMatches(K(START_TIME, "TM", "0900"), ["ACC3"])
        self.assertMatches(K(START_TIME, "TM", "133001"), [])

    def test_startDateAndTimeMatchSeparately(self):
        """Date and time ranges apply each on its own (no combined date-time
        matching): 20240102-20240103 with 1000- leaves out ACC3 (9:00 on
        the 3rd) although it lies between 2 January 10:00 and the 3rd."""
        self.assertMatches([K(START_DATE, "DA", "20240102-20240103"), K(START_TIME, "TM", "1000-")],
                           ["ACC2"])

    def test_patientID(self):
        self.assertMatches(K(PATIENT_ID, "LO", "P1"), ["ACC1", "ACC2"])
        self.assertMatches(K(PATIENT_ID, "LO", "P?"), [row[0] for row in ROWS])
        self.assertMatches(K(PATIENT_ID, "LO", "p1"), [])

    def test_patientNameWildcardsIgnoreCase(self):
        self.assertMatches(K(PATIENT_NAME, "PN", "doe^john"), ["ACC1", "ACC2"])
        self.assertMatches(K(PATIENT_NAME, "PN", "DOE*"), ["ACC1", "ACC2", "ACC5"])
        self.assertMatches(K(PATIENT_NAME, "PN", "DOE^*"), ["ACC1", "ACC2"])
        self.assertMatches(K(PATIENT_NAME, "PN", "?OE^JOHN"), ["ACC1", "ACC2"])
        self.assertMatches(K(PATIENT_NAME, "PN", "MÜLLER^HANS"), ["ACC3"])
        self.assertMatches(K(PATIENT_NAME, "PN", "mül*"), ["ACC3"])
        self.assertMatches(K(PATIENT_NAME, "PN", "*太郎"), ["ACC4"])
        self.assertMatches(K(PATIENT_NAME, "PN", "o'brien*"), ["ACC6"])

    def test_caseInsensitiveColumn(self):
        """A DT_ISTR column (here Scheduled Procedure Step Description)
        matches whatever the case, as in the Q/R C-FIND; the others do not."""
        self.assertMatches(K(STEP_DESCRIPTION, "LO", "ct exam"), [])
        columns = [replace(column, dicomType="DT_ISTR") if column.tag == STEP_DESCRIPTION else column
                   for column in self.layout.worklist]
        self.query = WorklistQuery(self.query.table, columns)
        self.assertMatches(K(STEP_DESCRIPTION, "LO", "ct exam"), ["ACC1", "ACC3", "ACC5"])
        self.assertMatches(K(STEP_DESCRIPTION, "LO", "M? EXAM"), ["ACC2", "ACC6"])
        self.assertMatches(K(STEP_DESCRIPTION, "LO", "us*"), ["ACC4"])
        self.assertMatches(K(MODALITY, "CS", "us"), [])

    def test_accessionNumber(self):
        self.assertMatches(K(ACCESSION, "SH", "ACC3"), ["ACC3"])
        self.assertMatches(K(ACCESSION, "SH", "ACC1\\ACC4"), ["ACC1", "ACC4"])
        self.assertMatches(K(ACCESSION, "SH", "ACC%"), [])

    def test_manyValues(self):
        """Lists longer than SQLite's expressions may be deep (1000)."""
        self.assertMatches(K(ACCESSION, "SH", "\\".join([f"X{i}" for i in range(1000)] + ["ACC3", "ACC5"])),
                           ["ACC3", "ACC5"])
        self.assertMatches(K(PATIENT_NAME, "PN", "\\".join([f"X{i}*" for i in range(1000)] + ["MÜLLER^HANS"])),
                           ["ACC3"])
        self.assertMatches(K(STUDY_UID, "UI", "\\".join([f"9.{i}" for i in range(1000)] + ["1.2.3.4"])), ["ACC4"])
        self.assertMatches(K(START_DATE, "DA", "\\".join([f"1{i:03}0101-" for i in range(1000)])),
                           [row[0] for row in ROWS if row[5]])

    def test_severalKeys(self):
        """Keys of the top level and of the SPS item, flattened, all apply."""
        self.assertMatches([K(PATIENT_ID, "LO", "P1"), K(MODALITY, "CS", "MR"),
                            K(SCHEDULED_AE, "AE", "MR1")], ["ACC2"])
        self.assertMatches([K(PATIENT_NAME, "PN", "*"), K(MODALITY, "CS", "CT"),
                            K(START_DATE, "DA", "20250101-")], [])
        self.assertMatches([K(MODALITY, "CS", "CT"), K(START_DATE, "DA", "20240101-")], ["ACC1", "ACC3"])

    def test_keysWithoutColumnOrSequencesImposeNothing(self):
        self.assertMatches([K(OTHER_PATIENT_IDS, "LO", "X"), K(PROTOCOL_CODES, "SQ"),
                            K(0x00400100, "SQ"), K(MODALITY, "CS", "US")], ["ACC4"])

    def test_privateCreatorsAreNoMatchKeys(self):
        """A Private Creator names its block of private keys rather than asks
        for a match (as in the Q/R C-FIND): not unmatched; a valued element
        of its block is."""
        keys = [K(ACCESSION, "SH", "ACC3"), K(0x00090010, "LO", "GEMS_XX"), K(0x00091001, "UN"),
                K(0x00091002, "UN", "X")]
        self.assertEqual(self.query.unmatchedKeys(keys), [0x00091002])

    def test_oneStatementWithBoundParameters(self):
        statements = []

        def listener(conn, cursor, statement, parameters, *rest):
            statements.append((statement, parameters))
        event.listen(self.engine, "before_cursor_execute", listener)
        self.addCleanup(event.remove, self.engine, "before_cursor_execute", listener)
        self.assertMatches([K(PATIENT_NAME, "PN", "x' OR '1'='1"), K(SCHEDULED_AE, "AE", "CT1")], [])
        [(statement, parameters)] = statements
        self.assertNotIn("CT1", statement)
        self.assertNotIn("OR '1'", statement)
        self.assertIn("CT1", parameters)
        self.assertIn("ORDER BY", statement)
