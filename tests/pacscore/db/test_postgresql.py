"""The index on a real PostgreSQL server: the tests of tests.pacscore.db.onserver
run again on the PostgreSQL driver's engine (each test on a new database
of the test run's server, see tests.dbservers)."""

import os
import time

from sqlalchemy import event, func, select, text
from twisted.internet import defer, reactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.dicomsql import DatabaseLayout
from pacscore.db.filepaths import storedPath
from pacscore.db.index import Index
from pacscore.db.query import IndexQuery, matchCondition
from pacscore.db.worklistitems import WorklistItems
from pacscore.db.worklistquery import WorklistQuery
from pacscore.hl7.intake import WorklistIntake
from pacscore.hl7.mapping import WorklistMapping
from pacscore.storage.devices import MagDevice
from pacscore.hl7.message import parseMessage
from pacscore.testing.orders import orderMessage
from pacscore.db.writer import IndexTimeout
from pacscore.storage.durability import FileSystemFlush
from plugins.pacs_postgresql import postgresqlDriver
from tests.dbservers import postgresServer
from tests.pacscore.db import test_index, test_query, test_worklistitems
from tests.pacscore.db.onserver import casesOn
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout
from tests.pacscore.export import test_queue
from tests.pacscore.storage import test_regen
from tests.plugins.test_sqlite_driver import FakeConfiguration


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


class Plans(OnPostgreSQL):
    """EXPLAIN, sequential scans off so that the few rows here do not make
    a scan the cheaper plan."""

    def plan(self, statement, parameters):
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SET enable_seqscan = off")
            return "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters))

    def foundWithPlan(self, level, key):
        """The unique keys ``key`` finds at ``level``, and the plan of its statement."""
        statements = []

        def listener(conn, cursor, statement, parameters, *rest):
            statements.append((statement, parameters))
        event.listen(self.engine, "before_cursor_execute", listener)
        try:
            found = self.keysOf(level, key)
        finally:
            event.remove(self.engine, "before_cursor_execute", listener)
        [(statement, parameters)] = statements
        return found, self.plan(statement, parameters)


class PersonNamePlanTests(Plans, test_query.ArchiveTestCase):
    """PostgreSQL searches the lower(PatientName) indexes for a PN key,
    non-ASCII ones too."""

    def patientPlan(self, value):
        return self.foundWithPlan("PATIENT", test_query.K(test_query.PATIENT_NAME, "PN", value))

    def test_nonAsciiNames(self):
        for value in ("Müller^Jürgen", "MÜLLER*", "müller^j*", "DOE^JOHN", "doe^j*"):
            found, plan = self.patientPlan(value)
            self.assertEqual(found, ["PAT2"] if "ü" in value.lower() else ["PAT1"], value)
            self.assertIn("ix_DICOMPatients_PatientName_lower", plan, value)
            self.assertNotIn("Seq Scan", plan, value)

    def test_worklistNames(self):
        table = self.index.tables.worklist
        statement = select(table).where(matchCondition(table.c.PatientName, test_query.K(
            test_query.PATIENT_NAME, "PN", "Müller^J*")))
        compiled = statement.compile(self.engine)
        plan = self.plan(str(compiled), compiled.params)
        self.assertIn("ix_DICOMWorkList_PatientName_lower", plan)
        self.assertNotIn("Seq Scan", plan)


class CaseInsensitiveColumnPlanTests(Plans, test_query.ArchiveTestCase):
    """PostgreSQL searches the lower(AccessionNumber) index of a DT_ISTR
    AccessionNumber, for an exact key and a wildcard one."""

    makeLayout = test_query.CaseInsensitiveColumnTests.makeLayout

    def test_lowerIndex(self):
        for value, expected in (("Acc2", ["1.2"]), ("acc*", ["1.1", "1.2", "5.1"])):
            found, plan = self.foundWithPlan("STUDY", test_query.K(test_query.ACCESSION, "SH", value))
            self.assertEqual(found, expected, value)
            self.assertIn("ix_DICOMStudies_AccessionNumber_lower", plan, value)
            self.assertNotIn("Seq Scan", plan, value)


class ByteOrderTests(Plans, test_query.ArchiveTestCase):
    """On a database made with an en_US.UTF-8 collation (Debian's
    pg_createcluster and most initdb runs take the system's), sorted C-FIND
    answers came in that collation's order (aaa, AAA, BS1, case1, CASE1),
    not in the code point order of SQLite and MariaDB's utf8mb4_bin (AAA,
    BS1, CASE1, aaa, case1): a paging client got other pages from the same
    data (review of the database backends, item 3).  The usual queries
    still search their indexes."""

    def makeEngine(self):
        server = postgresServer()
        name = server.createDatabase(self)
        server.sql(f"DROP DATABASE {name}")
        server.sql(f"CREATE DATABASE {name} LC_COLLATE 'en_US.utf8' LC_CTYPE 'en_US.utf8' TEMPLATE template0")
        engine = postgresqlDriver.createEngine(server.url(name), None)
        self.addCleanup(engine.dispose)
        return engine

    def setUp(self):
        super().setUp()
        self.index.storeMany([test_index.makeRecord(f"{study}.1.1", series=f"{study}.1", study=study,
                                                    patient=patient)
                              for patient, study in (("aaa", "9.1"), ("BBB", "9.2"), ("AAA", "9.3"))])

    def studiesOf(self, query, sortBy=None):
        """The Patient IDs and Study Instance UIDs of the studies 9.x, in answer order."""
        with self.engine.connect() as connection:
            found = query.find(connection, "STUDY", [test_query.K(test_query.STUDY_UID, "UI", "9.1\\9.2\\9.3"),
                                                     test_query.K(test_query.PATIENT_ID, "LO")], sortBy=sortBy)
        return [(match[test_query.PATIENT_ID], match[test_query.STUDY_UID]) for match in found]

    def test_sortedByCodePoint(self):
        byPatient = [("AAA", "9.3"), ("BBB", "9.2"), ("aaa", "9.1")]
        self.assertEqual(self.studiesOf(self.query, self.query.requestedSort("STUDY", "PatientID").order), byPatient)
        self.assertEqual(self.studiesOf(self.query, self.query.requestedSort("STUDY", "PatientID DESC").order),
                         byPatient[::-1])
        configured = IndexQuery(self.index.tables, self.index.layout, sortOrders={"STUDY": "PatientID"})
        self.assertEqual(self.studiesOf(configured), byPatient)

    def test_keysByCodePoint(self):
        """The answers end sorted by the level's key: 1.2.10 before 1.21
        ('.' before '1'; en_US, which skips punctuation, put 121 first)."""
        self.index.storeMany([test_index.makeRecord(f"{study}.1.1", series=f"{study}.1", study=study)
                              for study in ("1.21", "1.2.10")])
        found = self.keysOf("STUDY", test_query.K(test_query.STUDY_UID, "UI", "1.21\\1.2.10"))
        self.assertEqual(found, ["1.2.10", "1.21"])

    def test_indexesStillSearched(self):
        K = test_query.K
        for level, key, index in (
                ("PATIENT", K(test_query.PATIENT_ID, "LO", "PAT1"), "ux_DICOMPatients_PatientID"),
                ("STUDY", K(test_query.PATIENT_ID, "LO", "PAT1"), "ix_DICOMStudies_PatientID"),
                ("STUDY", K(test_query.STUDY_DATE, "DA", "20240101-20240131"), "ix_DICOMStudies_StudyDate"),
                ("STUDY", K(test_query.STUDY_UID, "UI", "1.1"), "ux_DICOMStudies_StudyInstanceUID"),
                ("SERIES", K(test_query.STUDY_UID, "UI", "1.1"), "ix_DICOMSeries_StudyInstanceUID"),
                ("IMAGE", K(test_query.SERIES_UID, "UI", "1.1.1"), "ix_DICOMImages_SeriesInstanceUID"),
                ("PATIENT", K(test_query.PATIENT_NAME, "PN", "DOE^JOHN"), "ix_DICOMPatients_PatientName_lower")):
            found, plan = self.foundWithPlan(level, key)
            self.assertTrue(found, (level, key))
            self.assertIn(index, plan, (level, key))
            self.assertNotIn("Seq Scan", plan, (level, key))
            self.assertIn('COLLATE "C"', plan, (level, key))

    def test_worklistByCodePoint(self):
        worklist = WorklistQuery(self.index.tables.worklist, self.index.layout.worklist)
        columns = {tag: worklist.byTag[tag][0].name for tag in (0x00400002, 0x00400003, 0x00080050)}
        with self.engine.begin() as connection:
            connection.execute(self.index.tables.worklist.insert(), [
                {columns[0x00400002]: "20261202", columns[0x00400003]: "0930", columns[0x00080050]: accession}
                for accession in ("aaa", "BBB", "AAA")])
        with self.engine.connect() as connection:
            found = worklist.find(connection, [test_query.K(0x00080050, "SH")])
        self.assertEqual([match[0x00080050] for match in found], ["AAA", "BBB", "aaa"])

    def test_startUpWarns(self):
        with capturedLogs() as events:
            engine = self.makeEngine()
            engine.connect().close()
        self.assertIn(f"The index database {engine.url.database} sorts text in the en_US.utf8 collation: sorted "
                      "C-FIND, QIDO-RS and web answers are put in code point order",
                      "\n".join(formatEvent(event) for event in events))


class UnreadableCollationTests(unittest.TestCase):
    """A cluster that revokes SELECT on pg_database from PUBLIC (a
    multi-tenant hardening): pacs no longer started ('cannot start: the
    index database ... cannot be used: permission denied for table
    pg_database ... cannot connect to the database server'), where it ran
    before the collation was looked at; it starts, sorting with COLLATE
    "C" (code point order whatever the collation), and says why."""

    def test_startsSortingByCodePoint(self):
        server = postgresServer()
        role = f"pacs_tenant_{id(self)}"
        server.sql(f"CREATE ROLE {role} LOGIN")
        self.addCleanup(server.sql, f"DROP ROLE {role}")
        name = server.createDatabase(self)
        server.sql(f"ALTER DATABASE {name} OWNER TO {role}")
        server.sql("REVOKE SELECT ON pg_catalog.pg_database FROM PUBLIC", database=name)
        engine = postgresqlDriver.createEngine(f"postgresql://{role}@127.0.0.1:{server.port}/{name}", None)
        self.addCleanup(engine.dispose)
        with capturedLogs() as events:
            index = Index(engine, test_query.shippedLayout(), test_query.defaultTableNames())
            index.createTables()
        self.assertIn(f"The collation of the index database {name} cannot be read (permission denied for table "
                      "pg_database): sorted C-FIND, QIDO-RS and web answers are put in code point order with "
                      'COLLATE "C"', "\n".join(formatEvent(event) for event in events))
        index.storeMany([test_index.makeRecord(f"{study}.1.1", series=f"{study}.1", study=study, patient=patient)
                         for patient, study in (("aaa", "9.1"), ("BBB", "9.2"), ("AAA", "9.3"))])
        statements = []
        event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        query = IndexQuery(index.tables, index.layout)
        with engine.connect() as connection:
            found = query.find(connection, "STUDY", [test_query.K(test_query.PATIENT_ID, "LO")],
                               sortBy=query.requestedSort("STUDY", "PatientID").order)
        self.assertEqual([match[test_query.PATIENT_ID] for match in found], ["AAA", "BBB", "aaa"])
        self.assertIn('COLLATE "C"', statements[-1])


class RegenerationTests(unittest.TestCase):
    """dgate -r on PostgreSQL, whose ObjectFile column counts the characters
    it holds: a path not UTF-8 takes more there (pacscore.db.filepaths)."""

    def setUp(self):
        self.index = Index(postgresServer().newEngine(postgresqlDriver, self), conquestLayout(), TABLE_NAMES)
        self.index.createTables()
        self.devices = [MagDevice("MAG0", os.path.abspath(self.mktemp()))]
        self.lines = []

    write, regenerator, regenerate, location, column = (
        test_regen.RegenerationTests.write, test_regen.RegenerationTests.regenerator,
        test_regen.RegenerationTests.regenerate, test_regen.RegenerationTests.location,
        test_regen.RegenerationTests.column)

    def test_aLatin1NameTooLongAsStoredIsMoved(self):
        """An old Conquest's Latin-1 name of 250 characters, stored as 257
        (U+FFFF, %E9 ...): the database refused it ('value too long for
        type character varying(255)'), which ended the whole regen and
        left the index empty; it is moved to a name that fits as stored."""
        self.write(self.devices[0], "PAT1/other.dcm", 1000, sop="1.2.3.1.2")
        path = self.write(self.devices[0], "PAT1/1.dcm", 2000)
        latin1 = os.path.join(os.fsencode(self.devices[0].path), b"M\xfcller", b"x" * 237 + b"\xe9\xe9.dcm")
        os.makedirs(os.path.dirname(latin1))
        os.rename(path, latin1)
        self.assertEqual(len(os.path.relpath(latin1, os.fsencode(self.devices[0].path))), 250)
        regenerator = self.regenerate()
        self.assertEqual((regenerator.indexed, regenerator.failed), (2, 0), self.lines)
        [moved] = [objectFile for _, objectFile in self.location() if objectFile != "PAT1/other.dcm"]
        self.assertLessEqual(len(storedPath(moved)), 255)
        self.assertTrue(os.path.exists(os.path.join(self.devices[0].path, moved)))
        self.assertFalse(os.path.exists(latin1))

    def test_aFileTheDatabaseRefusesFailsAlone(self):
        """A value the database refuses as data (here a column narrowed by
        hand) ended the whole regen ('dgate: the index database failed');
        that file fails, the others are indexed."""
        with self.index.engine.begin() as connection:
            connection.exec_driver_sql('ALTER TABLE "DICOMImages" ALTER COLUMN "ObjectFile" TYPE varchar(20)')
        self.write(self.devices[0], "PAT1/1.dcm", 1000)
        self.write(self.devices[0], "PAT1/a-longer-name.dcm", 2000, sop="1.2.3.1.2")
        regenerator = self.regenerate()
        self.assertEqual((regenerator.indexed, regenerator.failed), (1, 1), self.lines)
        self.assertEqual(self.location(), [("MAG0", "PAT1/1.dcm")])
        self.assertTrue([line for line in self.lines if line.endswith(
            "a-longer-name.dcm -FAILED: value too long for type character varying(20)")], self.lines)


class CodePointDatabaseTests(Plans, test_query.ArchiveTestCase):
    """On a database whose collation sorts by code point (the test server's
    C.UTF-8), the ORDER BY is the column as it is: a page of the studies
    of the whole table is read from the index of their key, in its order,
    not sorted (as COLLATE "C" would have them)."""

    def test_aPageOfAWholeTableReadInIndexOrder(self):
        for level, key, index in (("STUDY", test_query.STUDY_UID, "ux_DICOMStudies_StudyInstanceUID"),
                                  ("PATIENT", test_query.PATIENT_ID, "ux_DICOMPatients_PatientID")):
            found, plan = self.foundWithPlan(level, test_query.K(key, "UI" if level == "STUDY" else "LO"))
            self.assertEqual(found, sorted(found))
            self.assertIn(index, plan)
            self.assertNotIn("Sort", plan)
            self.assertNotIn("COLLATE", plan)
        with self.engine.connect() as connection:
            self.assertEqual(connection.exec_driver_sql(
                "SELECT datcollate FROM pg_database WHERE datname = current_database()").scalar(), "C.UTF-8")


ACCESSION_NUMBER = 0x00080050


class DatabaseEncodingTests(unittest.TestCase):
    """A Conquest site's database in SQL_ASCII or LATIN1 (Conquest sends
    Latin-1 bytes, which a UTF8 one refuses): on SQL_ASCII psycopg read
    every text as bytes, and pacs did not even start; on LATIN1 a Greek
    name failed the store after the file was written, and any non-ASCII
    name key failed the C-FIND (the ς and σ of the case fold were sent).
    Now pacs talks UTF-8 to both: SQL_ASCII holds everything; LATIN1 what
    it can, the rest indexed as ``?``, with a warning at the start."""

    def index(self, encoding):
        """An Index on a new database in ``encoding``, its tables made."""
        server = postgresServer()
        name = server.createDatabase(self)
        server.sql(f"DROP DATABASE {name}")
        server.sql(f"CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        engine = postgresqlDriver.createEngine(server.url(name), None)
        self.addCleanup(engine.dispose)
        index = Index(engine, test_query.shippedLayout(), test_query.defaultTableNames())
        index.createTables()
        return index

    def namesFound(self, index, value):
        query = IndexQuery(index.tables, index.layout)
        with index.engine.connect() as connection:
            return sorted(result[test_query.PATIENT_NAME] for result in query.find(
                connection, "PATIENT", [test_query.K(test_query.PATIENT_NAME, "PN", value)]))

    def storeNames(self, index, *names):
        index.storeMany([test_index.makeRecord(f"1.2.3.1.{n}", series=f"1.2.3.{n}", study=f"1.2.{n}",
                                               patient=f"PAT{n}", PATIENT_NAME=name)
                         for n, name in enumerate(names, 1)])

    def test_sqlAsciiHoldsEveryName(self):
        index = self.index("SQL_ASCII")
        self.storeNames(index, "Müller^Jürgen", "ΓΙΆΝΝΗΣ^Σ", "𠮷田^太郎")
        self.assertEqual(self.namesFound(index, "müller*"), ["Müller^Jürgen"])
        self.assertEqual(self.namesFound(index, "ΓΙΆΝΝΗΣ*"), ["ΓΙΆΝΝΗΣ^Σ"])  # lower() of the C locale: ASCII
        self.assertEqual(self.namesFound(index, "𠮷田*"), ["𠮷田^太郎"])

    def test_sqlAsciiReadsConquestsLatin1Bytes(self):
        """A SQL_ASCII database holding what Conquest wrote (UTF8ToDB = 0):
        the Latin-1 bytes of an ISO_IR 100 name.  pacs, reading in UTF-8,
        failed every query whose rows held one ('invalid byte sequence for
        encoding "UTF8": 0xfc'), a C-FIND of all studies too, and every new
        object of that patient.  They are read as Latin-1, with a warning at
        the start."""
        with capturedLogs() as events:
            index = self.index("SQL_ASCII")
            self.storeNames(index, "Müller^Raw", "DOE^JOHN")
        with index.engine.begin() as connection:
            for table in ("DICOMPatients", "DICOMStudies"):
                connection.exec_driver_sql(f'UPDATE "{table}" SET "PatientName" = E\'M\\xfcller^Raw\' '
                                           "WHERE \"PatientID\" = 'PAT1'")
        query = IndexQuery(index.tables, index.layout)
        with index.engine.connect() as connection:
            self.assertEqual(connection.exec_driver_sql('SELECT "PatientName"::bytea FROM "DICOMPatients" '
                                                        "WHERE \"PatientID\" = 'PAT1'").scalar(), b"M\xfcller^Raw")
            studies = query.find(connection, "STUDY", [test_query.K(test_query.PATIENT_NAME, "PN", "")])
        self.assertEqual(sorted(study[test_query.PATIENT_NAME] for study in studies), ["DOE^JOHN", "Müller^Raw"])
        self.assertEqual(self.namesFound(index, "M*"), ["Müller^Raw"])
        index.storeMany([test_index.makeRecord("1.2.3.1.9", series="1.2.3.1", study="1.2.1", patient="PAT1",
                                               PATIENT_NAME="Müller^Raw")])
        with index.engine.connect() as connection:
            self.assertEqual(len(query.find(connection, "IMAGE", [test_query.K(test_index.PATIENT_ID, "LO", "PAT1")])),
                             2)
        logged = "\n".join(formatEvent(event) for event in events)
        self.assertIn(f"The index database {index.engine.url.database} is in the SQL_ASCII encoding", logged)

    def test_sqlAsciiColumnsHoldBytes(self):
        """A SQL_ASCII database's VARCHAR(n) holds n bytes, pacs cut values
        to n characters: a StudyDescription of 40 Cyrillic letters (80 bytes
        in UTF-8, 'value too long for type character varying(64)') and an
        AccessionNumber of 16 Ä failed the store, an order whose
        ReqProcDescription was cut to 16 Cyrillic characters was answered
        AR.  They are cut to the column's bytes, at a character's boundary."""
        index = self.index("SQL_ASCII")
        record = test_index.makeRecord("1.2.3.1.1", STUDY_DESCRIPTION="Компьютерная томография органов грудной")
        record.attrs[ACCESSION_NUMBER] = "Ä" * 16
        index.storeMany([record])
        query = IndexQuery(index.tables, index.layout)
        with index.engine.connect() as connection:
            studies = query.find(connection, "STUDY", [test_query.K(test_index.STUDY_DESCRIPTION, "LO", "Комп*"),
                                                       test_query.K(ACCESSION_NUMBER, "SH", "ÄÄ*")])
        self.assertEqual([(study[test_index.STUDY_DESCRIPTION], study[ACCESSION_NUMBER]) for study in studies],
                         [("Компьютерная томография органов г", "Ä" * 8)])  # 63 and 16 bytes
        layout = test_query.shippedLayout()
        mapping = WorklistMapping(layout.worklist, dialect=index.engine.dialect)
        intake = WorklistIntake(mapping, WorklistItems(index, runWrite=test_worklistitems.runNow(index)))
        outcome = self.successResultOf(intake.process(orderMessage(
            "M1", "ACC1", "PAT1", "Doe^John", procedure=("КТ1", "КТ грудной клетки"))))
        self.assertEqual((outcome.code, outcome.text), ("AA", "NW ACC1: inserted"))
        with index.engine.connect() as connection:
            self.assertEqual(connection.execute(select(index.tables.worklist.c.ReqProcDescription)).scalar(),
                             "КТ грудн")

    def test_sqlAsciiQuestionMarkMatchesOneCharacter(self):
        """On SQL_ASCII LIKE's _ matches one byte, so a ? of a key matched
        one byte: M?ller* found no Müller, smile?^face no Smile😀^Face, K?pf
        no study described Köpf.  A ? matches one character there, of
        UTF-8 or a byte of Latin-1 Conquest wrote."""
        index = self.index("SQL_ASCII")
        self.storeNames(index, "Müller^Hans", "Mueller^Hans", "Moller^Hans", "Smile😀^Face", "Müller^Raw")
        index.storeMany([test_index.makeRecord("1.2.3.9.1", series="1.2.3.9", study="1.2.9", patient="PAT9",
                                               STUDY_DESCRIPTION="Köpf")])
        with index.engine.begin() as connection:
            connection.exec_driver_sql('UPDATE "DICOMPatients" SET "PatientName" = E\'M\\xfcller^Raw\' '
                                       "WHERE \"PatientID\" = 'PAT5'")
        self.assertEqual(self.namesFound(index, "M?ller*"), ["Moller^Hans", "Müller^Hans", "Müller^Raw"])
        self.assertEqual(self.namesFound(index, "m??ller^hans"), ["Mueller^Hans"])
        self.assertEqual(self.namesFound(index, "smile?^face"), ["Smile😀^Face"])
        self.assertEqual(self.namesFound(index, "smile??^face"), [])
        query = IndexQuery(index.tables, index.layout)
        with index.engine.connect() as connection:
            found = {value: [study[test_index.STUDY_DESCRIPTION] for study in query.find(
                connection, "STUDY", [test_query.K(test_index.STUDY_DESCRIPTION, "LO", value)])]
                for value in ("K?pf", "K??pf", "K?p.", "?.?*")}
        self.assertEqual(found, {"K?pf": ["Köpf"], "K??pf": [], "K?p.": [], "?.?*": []})

    def test_latin1HoldsWhatItCan(self):
        with capturedLogs() as events:
            index = self.index("LATIN1")
            self.storeNames(index, "Müller^Jürgen", "Γιάννης^Σ")
        logged = "\n".join(formatEvent(event) for event in events)
        self.assertIn(f"The index database {index.engine.url.database} is in the LATIN1 encoding", logged)
        self.assertIn("DICOMPatients.PatientName has characters the database's iso8859-1 cannot hold, indexed as ?",
                      logged)
        self.assertEqual(self.namesFound(index, "Müller*"), ["Müller^Jürgen"])
        self.assertEqual(self.namesFound(index, "Müller^Jürgen"), ["Müller^Jürgen"])
        self.assertEqual(self.namesFound(index, "Γιάννης*"), [])
        self.assertEqual(self.namesFound(index, "*"), ["???????^?", "Müller^Jürgen"])
        with self.assertRaisesRegex(ValueError, "DICOMPatients.PatientID 'Γ1' holds characters the database's "
                                                "iso8859-1 cannot hold"):
            index.checkKeys(test_index.makeRecord("1.2.3.1.9", patient="Γ1").attrs)

    def test_encodingPythonHasNoCodecFor(self):
        """A database in EUC_TW, whose encoding psycopg cannot map to a
        Python codec: pacs did not start ('cannot connect to the database
        server'); it holds ASCII only, with a warning."""
        with capturedLogs() as events:
            index = self.index("EUC_TW")
            self.storeNames(index, "Müller^Jürgen", "DOE^JOHN")
        logged = "\n".join(formatEvent(event) for event in events)
        self.assertIn(f"The index database {index.engine.url.database} is in the EUC_TW encoding, which "
                      "Python has no codec for: it is taken to hold ASCII only", logged)
        self.assertEqual(self.namesFound(index, "*"), ["DOE^JOHN", "M?ller^J?rgen"])
        self.assertEqual(self.namesFound(index, "Müller*"), [])

    def test_latin1KeysItCannotHoldMatchNothing(self):
        """Any key, not only a PN one, that holds a character LATIN1 cannot
        hold (an accession number, a description, a Patient ID, a list
        value, a date) failed the whole C-FIND, worklist and QIDO search;
        it matches nothing."""
        index = self.index("LATIN1")
        index.storeMany([test_index.makeRecord("1.2.3.1.1", STUDY_DESCRIPTION="Müller")])
        query = IndexQuery(index.tables, index.layout)
        keys = [test_query.K(test_index.STUDY_DESCRIPTION, "LO", value)
                for value in ("Μελέτη", "Μελέτη*", "Müller\\Μελέτη")]
        keys += [test_query.K(test_index.PATIENT_ID, "LO", "Γ9"), test_query.K(0x00080050, "SH", "ΑΒ1"),
                 test_query.K(test_index.STUDY_DESCRIPTION, "LO", "μελέτη", foldCase=True),
                 test_query.K(test_index.STUDY_DATE, "DA", "Δ-")]
        with index.engine.connect() as connection:
            found = {key.value: len(query.find(connection, "STUDY", [key])) for key in keys}
            worklist = WorklistQuery(index.tables.worklist, index.layout.worklist)
            wanted = {key.value: len(worklist.find(connection, [key])) for key in keys[3:5]}
        self.assertEqual(found, {"Μελέτη": 0, "Μελέτη*": 0, "Müller\\Μελέτη": 1, "Γ9": 0, "ΑΒ1": 0,
                                 "μελέτη": 0, "Δ-": 0})
        self.assertEqual(wanted, {"Γ9": 0, "ΑΒ1": 0})


class HungServerTests(unittest.TestCase):
    """A PostgreSQL server that hangs (all its processes stopped; a network
    partition leaves pacs as alone) held every C-STORE and C-FIND without an
    answer for the whole outage: now they fail within SQLTimeOut, and once
    the server is back the next store succeeds."""

    @defer.inlineCallbacks
    def test_storeFailsWithinTheTimeout(self):
        server = postgresServer()
        engine = server.newEngine(postgresqlDriver, self, FakeConfiguration(".", SQLTimeOut="2"))
        with engine.connect() as connection:  # long statements are not cut short: a hung server is noticed in pacs
            self.assertEqual(connection.execute(text("SHOW statement_timeout")).scalar(), "0")
        index = Index(engine, conquestLayout(), TABLE_NAMES, reactor=reactor, timeout=2)
        index.createTables()
        index.start()
        self.addCleanup(index.stop)
        yield index.store(test_index.makeRecord("1.2.3.1.1"))
        resume = server.pause(self)
        started = time.monotonic()
        yield self.assertFailure(index.store(test_index.makeRecord("1.2.3.1.2")), IndexTimeout)
        self.assertLess(time.monotonic() - started, 4)
        started = time.monotonic()
        yield self.assertFailure(index.queryForPeer(lambda connection: connection.execute(text("SELECT 1")).scalar()),
                                 IndexTimeout)  # a C-FIND's
        self.assertLess(time.monotonic() - started, 4)
        resume()
        yield index.store(test_index.makeRecord("1.2.3.1.3"))

    @defer.inlineCallbacks
    def test_stopWithinTheTimeout(self):
        """A stop waited for the whole outage (dropping the marks of flushed
        writes and joining a reader thread left waiting on the server, in
        the reactor's threads, which the exit joins): now it ends within
        SQLTimeOut, logged, the marks left for the next start."""
        server = postgresServer()
        engine = server.newEngine(postgresqlDriver, self, FakeConfiguration(".", SQLTimeOut="2"))
        index = Index(engine, conquestLayout(), TABLE_NAMES, reactor=reactor, timeout=2,
                      durability=FileSystemFlush([], lambda fd: 0))
        index.createTables()
        index.start()
        server.pause(self)
        query = index.queryForPeer(lambda connection: connection.execute(text("SELECT 1")).scalar())
        yield self.assertFailure(query, IndexTimeout)  # its reader thread still waits on the server
        started = time.monotonic()
        with capturedLogs() as events:
            yield index.stop()
        self.assertLess(time.monotonic() - started, 3)
        self.assertIn("the index database failed while stopping (the index database did not answer within 2 s "
                      "(SQLTimeOut)): stopping without it", [formatEvent(event) for event in events][-1])

    @defer.inlineCallbacks
    def test_hl7OrderRejectedWithinTheTimeout(self):
        """An MLLP order's ACK waited for the whole outage (then AA, or none
        within the sender's wait, and the order applied: a RIS that sent it
        again got it applied twice): now AR within SQLTimeOut, and the order
        is not written once the server is back."""
        server = postgresServer()
        engine = server.newEngine(postgresqlDriver, self, FakeConfiguration(".", SQLTimeOut="2"))
        layout = DatabaseLayout.fromFile("etc/dicom.sql")
        index = Index(engine, layout, TABLE_NAMES, reactor=reactor, timeout=2)
        index.createTables()
        index.start()
        self.addCleanup(index.stop)
        mapping = WorklistMapping(layout.worklist)
        intake = WorklistIntake(mapping, WorklistItems(index))
        yield index.store(test_index.makeRecord("1.2.3.1.1"))  # the writer's connection is open
        resume = server.pause(self)
        started = time.monotonic()
        ack = parseMessage((yield intake.handle(orderMessage("M1", "ACC1", "PAT1", "Doe^John"))))
        self.assertLess(time.monotonic() - started, 4)
        self.assertEqual((ack.value("MSA", 1), ack.value("MSA", 3)), (
            "AR", "database not available (the index database did not answer within 2 s (SQLTimeOut)): not "
                  "applied, send it again later"))
        resume()
        yield index.store(test_index.makeRecord("1.2.3.1.2"))  # after the order's transaction, in the writer
        with engine.connect() as connection:
            self.assertEqual(connection.execute(select(func.count()).select_from(index.tables.worklist)).scalar(), 0)
