"""Tests for Conquest's upsert rules (pacscore.db.records) and the
synchronous parts of pacscore.db.index.Index, on real SQLite files."""

import os
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import replace

from sqlalchemy import delete, event, func, inspect, select, text, update
from sqlalchemy.exc import DBAPIError
from twisted.logger import Logger
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.db.filepaths import storedPath
from pacscore.db.index import ImageRecord, InconsistentLink, Index, Replaced
from pacscore.db.query import IndexQuery, QueryKey
from pacscore.db.rawtext import FILES_TRIED
from pacscore.db import records
from pacscore.db.records import Level, Upserter, buildLevels, dictionaryVR
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout, sqliteEngine

PATIENT_ID, PATIENT_NAME, BIRTH_DATE, SEX = 0x00100020, 0x00100010, 0x00100030, 0x00100040
STUDY_UID, STUDY_DATE, STUDY_DESCRIPTION = 0x0020000D, 0x00080020, 0x00081030
STUDY_TIME = 0x00080030
SERIES_UID, MODALITY, SOP_UID, SOP_CLASS = 0x0020000E, 0x00080060, 0x00080018, 0x00080016
IMAGE_NUMBER, ROWS, IMAGE_TYPE = 0x00200013, 0x00280010, 0x00080008


def makeRecord(sop, series="1.2.3.1", study="1.2.3", patient="PAT1",
               objectFile=None, deviceName="MAG0", **extra):
    """An ImageRecord of a CT slice; ``extra`` maps tag names above to values."""
    attrs = {PATIENT_ID: patient, PATIENT_NAME: "DOE^JOHN", BIRTH_DATE: "19700101",
             SEX: "M", STUDY_UID: study, STUDY_DATE: "20240102", MODALITY: "CT",
             SERIES_UID: series, SOP_UID: sop, SOP_CLASS: "1.2.840.10008.5.1.4.1.1.2",
             IMAGE_NUMBER: sop.rsplit(".", 1)[-1], ROWS: "512",
             IMAGE_TYPE: "ORIGINAL\\PRIMARY\\AXIAL"}
    attrs.update((globals()[name], value) for name, value in extra.items())
    return ImageRecord({tag: value for tag, value in attrs.items() if value is not None},
                       deviceName, objectFile or f"{patient}/{series}_{sop}.dcm")


LATIN1_NAME = "MÜLLER^ANNA".encode("latin-1")
LATIN1_FILE = b"PAT2/M\xdcLLER_1.dcm"


def makeConquestDatabase(path, name=LATIN1_NAME, objectFile=LATIN1_FILE):
    """An SQLite file at ``path`` as Conquest 1.5 leaves it (dbsql.cpp):
    the tables of ``conquestLayout`` with their names cut to 10 characters
    and each key the primary key, a link index, and one image of patient
    PAT2 (study 1.2.3, series 1.2.3.1) whose name (by default ISO_IR 100)
    and file name (``objectFile``) are stored as they came, in Latin-1 bytes."""
    layout = conquestLayout()
    with closing(sqlite3.connect(path)) as db:
        for level, table in TABLE_NAMES.items():
            columns = [f"{column.name[:10]} varchar({column.length})"
                       for column in getattr(layout, level) if not column.isSequenceMarker]
            if level != "worklist":
                columns[0] += " PRIMARY KEY not null"
            columns += ["AccessTime int", "qTimeStamp int", "qFlags int", "qSpare varchar(64)"]
            if level == "image":
                columns += ["ObjectFile varchar(255)", "DeviceName varchar(32)"]
            db.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
        db.execute("CREATE INDEX images_lnk ON DICOMImages (SeriesInst)")
        for table, row in (("DICOMPatients", {"PatientID": b"PAT2", "PatientNam": name}),
                           ("DICOMStudies", {"StudyInsta": b"1.2.3", "PatientNam": name, "PatientID": b"PAT2"}),
                           ("DICOMSeries", {"SeriesInst": b"1.2.3.1", "SeriesPat": b"PAT2", "StudyInsta": b"1.2.3"}),
                           ("DICOMImages", {"SOPInstanc": b"1.2.3.1.1", "ImagePat": b"PAT2", "SeriesInst": b"1.2.3.1",
                                            "ObjectFile": objectFile, "DeviceName": b"MAG0"})):
            db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(['CAST(? AS TEXT)'] * len(row))})",
                       list(row.values()))
        db.commit()


class IndexTestCase(unittest.TestCase):
    """An Index on a fresh SQLite file with Conquest's default tables."""

    def makeEngine(self):
        return sqliteEngine(self)

    def setUp(self):
        self.engine = self.makeEngine()
        self.index = Index(self.engine, conquestLayout(), TABLE_NAMES)
        self.index.createTables()

    def rows(self, level, **where):
        table = getattr(self.index.tables, level)
        query = select(table).where(*(table.c[k] == v for k, v in where.items()))
        with self.engine.connect() as connection:
            return [row._asdict() for row in connection.execute(query)]

    def row(self, level, **where):
        [row] = self.rows(level, **where)
        return row

    def upsert(self, record):
        with self.engine.begin() as connection:
            return self.index.upsertImage(connection, record)

    def countStatements(self):
        """A list that collects every SQL statement the engine runs."""
        statements = []
        listener = lambda conn, cursor, statement, *rest: statements.append(statement)
        event.listen(self.engine, "before_cursor_execute", listener)
        self.addCleanup(event.remove, self.engine, "before_cursor_execute", listener)
        return statements

    def versionChecks(self):
        """The statements a transaction of stores spends before its first
        check of cached parents: SQLite's PRAGMA data_version (one), none
        on database servers."""
        return 1 if self.engine.dialect.name == "sqlite" else 0

    def countCommits(self):
        commits = []
        listener = lambda conn: commits.append(1)
        event.listen(self.engine, "commit", listener)
        self.addCleanup(event.remove, self.engine, "commit", listener)
        return commits

    def refuseImageNumber(self, value):
        """Make the database itself refuse images with this ImageNumber."""
        with self.engine.begin() as connection:
            connection.execute(text(
                "CREATE TRIGGER refuse BEFORE INSERT ON DICOMImages "
                f"WHEN NEW.ImageNumber = '{value}' BEGIN SELECT RAISE(ABORT, 'refused'); END"))


class UpsertTests(IndexTestCase):
    """Conquest's rules for one object: four rows, keyed by their UIDs."""

    def test_insertsFourRows(self):
        self.assertIsNone(self.upsert(makeRecord("1.2.3.1.1")))
        patient = self.row("patient")
        self.assertEqual((patient["PatientID"], patient["PatientName"],
                          patient["PatientBirthDate"], patient["PatientSex"]),
                         ("PAT1", "DOE^JOHN", "19700101", "M"))
        study = self.row("study")
        self.assertEqual((study["StudyInstanceUID"], study["StudyDate"], study["PatientID"],
                          study["PatientName"]), ("1.2.3", "20240102", "PAT1", "DOE^JOHN"))
        series = self.row("series")
        self.assertEqual((series["SeriesInstanceUID"], series["Modality"],
                          series["SeriesPat"], series["StudyInstanceUID"]),
                         ("1.2.3.1", "CT", "PAT1", "1.2.3"))
        image = self.row("image")
        self.assertEqual((image["SOPInstanceUID"], image["Rows"], image["ImageType"],
                          image["ImagePat"], image["SeriesInstanceUID"],
                          image["DeviceName"], image["ObjectFile"]),
                         ("1.2.3.1.1", "512", "ORIGINAL\\PRIMARY\\AXIAL", "PAT1",
                          "1.2.3.1", "MAG0", "PAT1/1.2.3.1_1.2.3.1.1.dcm"))
        self.assertGreater(image["AccessTime"], 1_600_000_000)
        self.assertEqual(image["AccessTime"], image["qTimeStamp"])
        self.assertEqual(image["SliceLocation"], "")

    def test_imagesShareParents(self):
        for number in range(3):
            self.upsert(makeRecord(f"1.2.3.1.{number}"))
        self.upsert(makeRecord("1.2.3.2.1", series="1.2.3.2"))
        self.assertEqual(len(self.rows("patient")), 1)
        self.assertEqual(len(self.rows("study")), 1)
        self.assertEqual(len(self.rows("series")), 2)
        self.assertEqual(len(self.rows("image", SeriesInstanceUID="1.2.3.1")), 3)

    def test_parentKeepsKnownValues(self):
        """An empty value never blanks out a known one; a new one replaces it."""
        self.upsert(makeRecord("1.2.3.1.1", STUDY_DESCRIPTION="HEAD"))
        self.upsert(makeRecord("1.2.3.1.2", PATIENT_NAME="", SEX=None,
                               STUDY_DESCRIPTION=None))
        self.assertEqual(self.row("patient")["PatientName"], "DOE^JOHN")
        self.assertEqual(self.row("patient")["PatientSex"], "M")
        self.assertEqual(self.row("study")["StudyDescription"], "HEAD")
        self.upsert(makeRecord("1.2.3.1.3", PATIENT_NAME="DOE^JANE", STUDY_DESCRIPTION="NECK"))
        self.assertEqual(self.row("patient")["PatientName"], "DOE^JANE")
        self.assertEqual(self.row("patient")["PatientSex"], "M")
        self.assertEqual(self.row("study")["PatientName"], "DOE^JANE")
        self.assertEqual(self.row("study")["StudyDescription"], "NECK")

    def test_refreshParentsGivesTheRowsLeftTheValuesOfTheObjectStoredLast(self):
        """After a delete, a patient, study or series row that still holds images
        takes the values of the one of them stored last (the newest
        qTimeStamp, then the greatest ObjectFile), as if it were stored
        again, its file read once for the three rows and looked for once,
        under the patient (its study's and series' too): DOE^JANE, stored last
        and deleted, is no longer the patient's name; a row whose images
        are all gone is left, and the study modalities are not its to make."""
        image = self.index.tables.image
        for sop, stamp, name in (("1.2.3.1.1", 100, "DOE^JOHN"), ("1.2.3.1.2", 200, "DOE^JIM"),
                                 ("1.2.3.1.3", 200, "DOE^JACK"), ("1.2.3.1.4", 300, "DOE^JANE")):
            self.upsert(makeRecord(sop, PATIENT_NAME=name, BIRTH_DATE="1971010" + sop[-1]))
            with self.engine.begin() as connection:
                connection.execute(update(image).where(image.c.SOPInstanceUID == sop).values(qTimeStamp=stamp))
        self.upsert(makeRecord("1.2.4.1.1", study="1.2.4", series="1.2.4.1", PATIENT_NAME="DOE^JANE"))
        with self.engine.begin() as connection:
            connection.execute(delete(image).where(image.c.SOPInstanceUID.in_(["1.2.3.1.4", "1.2.4.1.1"])))
        asked = []

        def recordOf(deviceName, objectFile):
            asked.append((deviceName, objectFile))
            return makeRecord("1.2.3.1.3", PATIENT_NAME="DOE^JACK", BIRTH_DATE="19710103", STUDY_DATE="20250101",
                              MODALITY="MR")
        statements = self.countStatements()
        with self.engine.begin() as connection:
            self.index.refreshParents(connection, [(2, "1.2.3.1"), (1, "1.2.3"), (1, "1.2.4"), (0, "PAT1")],
                                      recordOf)
        self.assertEqual(asked, [("MAG0", "PAT1/1.2.3.1_1.2.3.1.3.dcm")])
        self.assertEqual(len([statement for statement in statements if "ORDER BY" in statement]), 2)  # PAT1, 1.2.4
        self.assertEqual(self.row("series", SeriesInstanceUID="1.2.3.1")["Modality"], "MR")
        self.assertEqual(self.row("study", StudyInstanceUID="1.2.3")["StudyModality"], "CT")  # rebuildModalities
        patient, study = self.row("patient"), self.row("study", StudyInstanceUID="1.2.3")
        self.assertEqual((patient["PatientName"], patient["PatientBirthDate"]), ("DOE^JACK", "19710103"))
        self.assertEqual((study["PatientName"], study["PatientBirthDate"], study["StudyDate"]),
                         ("DOE^JACK", "19710103", "20250101"))
        self.assertEqual(self.row("study", StudyInstanceUID="1.2.4")["PatientName"], "DOE^JANE")

    def test_parentFillsEmptyValues(self):
        self.upsert(makeRecord("1.2.3.1.1", PATIENT_NAME=None, MODALITY=None))
        self.assertEqual(self.row("patient")["PatientName"], "")
        self.upsert(makeRecord("1.2.3.1.2"))
        self.assertEqual(self.row("patient")["PatientName"], "DOE^JOHN")
        self.assertEqual(self.row("series")["Modality"], "CT")

    def test_studyModalitiesLeftEmptyByAnEarlierReleaseAreFilled(self):
        """A study indexed by a release that never wrote StudyModality kept
        it empty after the upgrade: a ModalitiesInStudy query missed it,
        and an MR series stored into it made it "MR". The start fills it
        from its series, logged, once; stores merge into it as usual."""
        self.upsert(makeRecord("1.2.3.1.1"))
        self.upsert(makeRecord("1.2.4.1.1", series="1.2.4.1", study="1.2.4", MODALITY=None))
        with self.engine.begin() as connection:  # as releases before b770a08 left it
            connection.execute(self.index.tables.study.update().values(StudyModality=""))
        with capturedLogs() as events:
            self.index.createTables()
        self.assertEqual([formatEvent(event) for event in events if "StudyModality" in formatEvent(event)], [
            "Table DICOMStudies: the StudyModality of 1 study(ies) was empty beside series with a Modality (indexed "
            "by an earlier pacs release, which did not write it): made of their series' Modality (a series' last "
            "object's: a study whose series hold objects of other modalities, such as a screen capture in a CT "
            "series, gets its exact value from 'dgate -r')"])
        self.assertEqual([self.row("study", StudyInstanceUID=uid)["StudyModality"] for uid in ("1.2.3", "1.2.4")],
                         ["CT", ""])
        with capturedLogs() as events:
            self.index.createTables()
        self.assertEqual([event for event in events if "StudyModality" in formatEvent(event)], [])
        self.upsert(makeRecord("1.2.3.2.1", series="1.2.3.2", MODALITY="MR"))
        self.assertEqual(self.row("study", StudyInstanceUID="1.2.3")["StudyModality"], "MR\\CT")

    def test_studyModalities(self):
        """DICOMStudies.StudyModality is made of the objects' Modality as
        Conquest makes it: a new one in front, whole values kept once, an
        object without one changing nothing, cut to the column's length."""
        self.upsert(makeRecord("1.2.3.1.1"))
        self.assertEqual(self.row("study")["StudyModality"], "CT")
        for number, modality in enumerate(("SR", "CT", None, "RTSTRUCT", "RT", "SR"), 2):
            self.upsert(makeRecord(f"1.2.3.{number}.1", series=f"1.2.3.{number}", MODALITY=modality))
        self.assertEqual(self.row("study")["StudyModality"], "RT\\RTSTRUCT\\SR\\CT")
        with self.engine.begin() as connection:  # a long value (Conquest has no limit)
            connection.execute(self.index.tables.study.update().values(StudyModality="X" * 62))
        self.upsert(makeRecord("1.2.3.9.1", series="1.2.3.9", MODALITY="MR"))
        self.assertEqual(self.row("study")["StudyModality"], "MR\\" + "X" * 61)

    def test_studyModalitiesFollowTheSeries(self):
        """An object sent again into another series (its own left empty and
        deleted) makes the study's modalities again of those of its series,
        as ``dgate -r`` would: no modality of a series gone stays."""
        self.upsert(makeRecord("1.2.3.1.1"))
        self.upsert(makeRecord("1.2.3.2.1", series="1.2.3.2", MODALITY="MR"))
        self.upsert(makeRecord("1.2.3.3.1", series="1.2.3.3", MODALITY="SR"))
        self.assertEqual(self.row("study")["StudyModality"], "SR\\MR\\CT")
        self.upsert(makeRecord("1.2.3.2.1", series="1.2.3.1"))
        self.assertEqual(sorted(r["SeriesInstanceUID"] for r in self.rows("series")), ["1.2.3.1", "1.2.3.3"])
        self.assertEqual(sorted(self.row("study")["StudyModality"].split("\\")), ["CT", "SR"])

    def test_otherModalityIntoASeriesMerged(self):
        """An object of another Modality sent into a series (a screen
        capture into a CT series) merges its Modality into the study's, as
        Conquest does, the series' taking the new one: the study's CT
        images still have it found by ModalitiesInStudy=CT (one UPDATE of
        the study, no list made again of the series)."""
        self.upsert(makeRecord("1.2.3.1.1"))
        self.upsert(makeRecord("1.2.3.1.2"))
        statements = self.countStatements()
        self.upsert(makeRecord("1.2.3.1.3", MODALITY="OT", SOP_CLASS="1.2.840.10008.5.1.4.1.1.7"))
        self.assertEqual(self.row("study")["StudyModality"], "OT\\CT")
        self.assertEqual(self.row("series")["Modality"], "OT")
        self.assertEqual([s.split()[1].strip('"`') for s in statements if s.startswith("UPDATE")],
                         ["DICOMStudies", "DICOMSeries"])

    def test_studyModalitiesOfTwoWriters(self):
        """Two writers on one database (two nodes sharing it), each with its
        own cached study row: a modality is merged into the row as it is,
        not into the one a writer last saw, so none another writer added is
        lost; the row read again is what the writer then remembers."""
        levels = buildLevels(self.index.tables, self.index.layout)
        nodeA, nodeB = Upserter(levels), Upserter(levels)

        def write(node, sop, modality, **extra):
            with self.engine.begin() as connection:
                node.upsertImages(connection, [makeRecord(f"1.2.3.{sop}", series=f"1.2.3.{sop[0]}",
                                                          MODALITY=modality, **extra)])
        write(nodeA, "1.1", "CT")
        write(nodeB, "2.1", "MR", STUDY_DESCRIPTION="NECK")
        write(nodeA, "3.1", "PR")
        self.assertEqual(self.row("study")["StudyModality"], "PR\\MR\\CT")
        self.assertEqual(self.row("study")["StudyDescription"], "NECK")
        write(nodeB, "4.1", "US", STUDY_DESCRIPTION="NECK")
        self.assertEqual(self.row("study")["StudyModality"], "US\\PR\\MR\\CT")
        statements = self.countStatements()
        write(nodeA, "5.1", "MR", STUDY_DESCRIPTION="NECK")  # as nodeA read the row again: not written
        self.assertEqual([s.split()[1].strip('"`') for s in statements if s.startswith("UPDATE")], [])
        self.assertEqual(self.row("study")["StudyModality"], "US\\PR\\MR\\CT")

    def raceBeforeMerging(self, outside):
        """Run ``outside(connection)``, another writer, in a transaction of
        its own right before the next UPDATE of a study's modalities; a list
        that then holds that UPDATE."""
        merging = []

        def listener(connection, cursor, statement, *rest):
            if not merging and statement.startswith("UPDATE") and "StudyModality" in statement:
                merging.append(statement)
                with self.engine.begin() as other:
                    outside(other)
        event.listen(self.engine, "before_cursor_execute", listener)
        self.addCleanup(event.remove, self.engine, "before_cursor_execute", listener)
        return merging

    def test_studyModalitiesRaced(self):
        """Another writer merges a modality in, or deletes the study row,
        between a writer's SELECT of the row and its UPDATE (READ
        COMMITTED): the modality goes into the row as it is then, or into
        the row inserted again."""
        study = self.index.tables.study
        self.upsert(makeRecord("1.2.3.1.1"))
        merging = self.raceBeforeMerging(lambda connection: connection.execute(
            study.update().values(StudyModality="MR\\CT")))
        self.upsert(makeRecord("1.2.3.2.1", series="1.2.3.2", MODALITY="PR"))
        self.assertEqual(len(merging), 1)
        self.assertEqual(self.row("study")["StudyModality"], "PR\\MR\\CT")
        self.raceBeforeMerging(lambda connection: connection.execute(delete(study)))
        self.upsert(makeRecord("1.2.3.3.1", series="1.2.3.3", MODALITY="US"))
        self.assertEqual(self.row("study")["StudyModality"], "US")

    def test_sameFileAgain(self):
        """The same object stored again to the same file: nothing to delete."""
        self.upsert(makeRecord("1.2.3.1.1"))
        self.assertIsNone(self.upsert(makeRecord("1.2.3.1.1", ROWS="256")))
        self.assertEqual(self.row("image")["Rows"], "256")

    def test_imageReplaced(self):
        """The same SOPInstanceUID in a new file: every column is replaced
        and the old file is returned for deletion."""
        self.upsert(makeRecord("1.2.3.1.1", objectFile="old/a.dcm"))
        result = self.upsert(makeRecord("1.2.3.1.1", objectFile="new/a.dcm",
                                        deviceName="MAG1", IMAGE_TYPE=None))
        self.assertEqual(result, Replaced("MAG0", "old/a.dcm"))
        image = self.row("image")
        self.assertEqual((image["DeviceName"], image["ObjectFile"], image["ImageType"]),
                         ("MAG1", "new/a.dcm", ""))
        self.assertEqual(len(self.rows("image")), 1)

    def test_imageMovedLeavesNoEmptyParents(self):
        """The same SOPInstanceUID again under another series of its study
        (a corrected object): the series it left empty goes; a parent that
        still has other children stays; a corrected Patient ID (the UIDs
        kept) moves the study and its patient left empty goes."""
        self.upsert(makeRecord("1.2.3.1.1"))
        self.upsert(makeRecord("1.2.3.2.1", series="1.2.3.2"))
        self.upsert(makeRecord("1.2.3.1.1", series="1.2.3.9"))
        self.assertEqual(sorted(r["SeriesInstanceUID"] for r in self.rows("series")), ["1.2.3.2", "1.2.3.9"])
        self.assertEqual([r["StudyInstanceUID"] for r in self.rows("study")], ["1.2.3"])
        self.upsert(makeRecord("9.1.1", series="9.1", study="9"))
        self.upsert(makeRecord("9.1.1", series="9.1", study="9", patient="PAT2"))
        self.assertEqual(sorted(r["PatientID"] for r in self.rows("patient")), ["PAT1", "PAT2"])
        self.upsert(makeRecord("1.2.3.1.1", series="1.2.3.1"))  # back: the cache must not hide the deleted rows
        self.assertEqual(sorted(r["SeriesInstanceUID"] for r in self.rows("series")), ["1.2.3.1", "1.2.3.2", "9.1"])
        self.assertEqual(self.row("series", SeriesInstanceUID="1.2.3.1")["SeriesPat"], "PAT1")

    def test_studyMovedLeavesNoEmptyPatient(self):
        """Only the Patient ID corrected, the UIDs kept: the study row now
        names the new patient, and the old one, left empty, goes."""
        self.upsert(makeRecord("1.2.3.1.1", patient="WRONG"))
        self.upsert(makeRecord("1.2.3.1.1", patient="RIGHT"))
        self.assertEqual([r["PatientID"] for r in self.rows("patient")], ["RIGHT"])
        self.assertEqual(self.row("study")["PatientID"], "RIGHT")

    def test_objectOfAStudyOfAnotherPatientRefused(self):
        """An object whose study belongs to another patient (a new object of
        it, or one of its images sent again with another Patient ID) is
        refused in Conquest's words, nothing written: the study row kept
        its patient, whose row and images stay; its patient row, had it
        moved, was deleted with images still naming it."""
        self.upsert(makeRecord("1.2.3.1.1", patient="PATA"))
        self.upsert(makeRecord("1.2.3.1.2", patient="PATA"))
        for record in (makeRecord("1.2.3.1.1", patient="PATB"), makeRecord("1.2.3.1.3", patient="PATC")):
            error = self.assertRaises(InconsistentLink, self.upsert, record)
            self.assertEqual(str(error), "Refused to enter inconsistent link PatientID into DICOMStudies: "
                             f"StudyInstanceUID = '1.2.3', Old = 'PATA', Refused = '{record.attrs[PATIENT_ID]}'")
        self.assertEqual(self.row("study")["PatientID"], "PATA")
        self.assertEqual([r["PatientID"] for r in self.rows("patient")], ["PATA"])
        self.assertEqual([(r["SOPInstanceUID"], r["ImagePat"]) for r in self.rows("image")],
                         [("1.2.3.1.1", "PATA"), ("1.2.3.1.2", "PATA")])

    def test_objectOfASeriesOfAnotherStudyRefused(self):
        self.upsert(makeRecord("1.2.3.1.1"))
        self.upsert(makeRecord("1.2.3.1.2"))
        error = self.assertRaises(InconsistentLink, self.upsert, makeRecord("1.2.3.1.3", study="9"))
        self.assertEqual(str(error), "Refused to enter inconsistent link StudyInstanceUID into DICOMSeries: "
                         "SeriesInstanceUID = '1.2.3.1', Old = '1.2.3', Refused = '9'")
        self.assertEqual(self.row("series")["StudyInstanceUID"], "1.2.3")
        self.assertEqual([r["StudyInstanceUID"] for r in self.rows("study")], ["1.2.3"])

    def test_anImageOfAnotherSeriesRefused(self):
        """An object of another patient, study and series with the SOP
        Instance UID of an image of a series that has others is refused in
        Conquest's words, nothing written (it replaced that image: its
        file deleted, another patient's object in its place); its series'
        last image may move (a corrected object sent again), and an
        image of this batch keeps the series."""
        self.upsert(makeRecord("1.2.3.1.1", patient="PATA"))
        self.upsert(makeRecord("1.2.3.1.2", patient="PATA"))
        error = self.assertRaises(InconsistentLink, self.upsert,
                                  makeRecord("1.2.3.1.1", series="9.1", study="9", patient="PATB"))
        self.assertEqual(str(error), "Refused to enter inconsistent link SeriesInstanceUID into DICOMImages: "
                         "SOPInstanceUID = '1.2.3.1.1', Old = '1.2.3.1', Refused = '9.1'")
        self.assertEqual([r["PatientID"] for r in self.rows("patient")], ["PATA"])
        self.assertEqual([r["StudyInstanceUID"] for r in self.rows("study")], ["1.2.3"])
        self.assertEqual([(r["SOPInstanceUID"], r["SeriesInstanceUID"], r["ImagePat"]) for r in self.rows("image")],
                         [("1.2.3.1.1", "1.2.3.1", "PATA"), ("1.2.3.1.2", "1.2.3.1", "PATA")])
        self.assertRaises(InconsistentLink, self.index.checkLinks,  # before a store writes over its file
                          makeRecord("1.2.3.1.1", series="9.1", study="9", patient="PATB"))
        self.upsert(makeRecord("1.2.3.1.1", series="1.2.3.1", patient="PATA", ROWS="256"))  # resent: replaced
        self.assertEqual(self.row("image", SOPInstanceUID="1.2.3.1.1")["Rows"], "256")
        self.upsert(makeRecord("1.2.3.8.1", series="1.2.3.8", patient="PATA"))
        self.upsert(makeRecord("1.2.3.8.1", series="1.2.3.9", patient="PATA"))  # the series' last image: it moves
        self.assertEqual(self.row("image", SOPInstanceUID="1.2.3.8.1")["SeriesInstanceUID"], "1.2.3.9")
        self.assertEqual(sorted(r["SeriesInstanceUID"] for r in self.rows("series")), ["1.2.3.1", "1.2.3.9"])
        self.assertRaises(InconsistentLink, self.index.storeMany,
                          [makeRecord("1.2.3.9.2", series="1.2.3.9", patient="PATA"),
                           makeRecord("1.2.3.8.1", series="1.2.3.7", patient="PATA")])
        self.assertEqual(self.row("image", SOPInstanceUID="1.2.3.8.1")["SeriesInstanceUID"], "1.2.3.9")

    def test_theOnlyImageOfASeriesMovesWithinItsStudyOnly(self):
        """An object with the SOP Instance UID of an image alone in its
        series (a CR view, an SR, a PDF) is refused when it is of another
        study or patient, nothing written (it replaced that image, another
        patient's object in its place); a corrected one of the same study
        and patient moves it to another series."""
        self.upsert(makeRecord("1.2.3.1.1", patient="PATA"))
        self.upsert(makeRecord("1.2.3.2.1", series="1.2.3.2", patient="PATA"))
        for other in (makeRecord("1.2.3.1.1", series="9.1", study="9", patient="PATB"),
                      makeRecord("1.2.3.1.1", series="9.1", study="9", patient="PATA"),
                      makeRecord("1.2.3.1.1", series="1.2.3.9", patient="PATB")):
            error = self.assertRaises(InconsistentLink, self.upsert, other)
            self.assertIn("SeriesInstanceUID into DICOMImages: SOPInstanceUID = '1.2.3.1.1', Old = '1.2.3.1'",
                          str(error))
            self.assertRaises(InconsistentLink, self.index.checkLinks, other)
        self.assertEqual([(r["SOPInstanceUID"], r["SeriesInstanceUID"], r["ImagePat"]) for r in self.rows("image")],
                         [("1.2.3.1.1", "1.2.3.1", "PATA"), ("1.2.3.2.1", "1.2.3.2", "PATA")])
        self.assertEqual([r["PatientID"] for r in self.rows("patient")], ["PATA"])
        self.assertEqual(sorted(r["SeriesInstanceUID"] for r in self.rows("series")), ["1.2.3.1", "1.2.3.2"])
        self.upsert(makeRecord("1.2.3.1.1", series="1.2.3.9", patient="PATA"))  # corrected: it moves
        self.assertEqual(self.row("image", SOPInstanceUID="1.2.3.1.1")["SeriesInstanceUID"], "1.2.3.9")
        self.assertEqual(sorted(r["SeriesInstanceUID"] for r in self.rows("series")), ["1.2.3.2", "1.2.3.9"])

    def test_aRewrittenImageLeavesASeriesOfOthersWithinItsStudy(self):
        """An image a command rewrote (``rewritten``: modifyimage splitting
        a series, modifyseries giving one a new UID) moves to another
        series of its study though its series has other images; not to
        another study's."""
        self.upsert(makeRecord("1.2.3.1.1"))
        self.upsert(makeRecord("1.2.3.1.2"))
        record = makeRecord("1.2.3.1.1", series="9.1", study="9")
        record.rewritten = True
        self.assertRaises(InconsistentLink, self.upsert, record)
        record = makeRecord("1.2.3.1.1", series="1.2.3.9")
        record.rewritten = True
        self.index.checkLinks(record)
        self.upsert(record)
        self.assertEqual(sorted((r["SOPInstanceUID"], r["SeriesInstanceUID"]) for r in self.rows("image")),
                         [("1.2.3.1.1", "1.2.3.9"), ("1.2.3.1.2", "1.2.3.1")])
        self.assertEqual(sorted(r["SeriesInstanceUID"] for r in self.rows("series")), ["1.2.3.1", "1.2.3.9"])

    def test_aCopyNeverMovesItsImage(self):
        """A copy (``relink`` False) whose SOP instance is indexed under
        another series is refused even where it is that series' only
        image."""
        self.upsert(makeRecord("1.2.3.1.1"))
        record = makeRecord("1.2.3.1.1", series="1.2.3.2")
        record.relink = False
        self.assertRaises(InconsistentLink, self.upsert, record)
        self.assertEqual(self.row("image")["SeriesInstanceUID"], "1.2.3.1")

    def test_aCopyNeverMovesItsStudy(self):
        """A copy whose new UIDs are those of a copy made for another
        patient (``relink`` False) is refused even where it is the study's
        only image: the first copy stays."""
        self.upsert(makeRecord("1.2.3.1.1", patient="COPYA"))
        record = makeRecord("1.2.3.1.1", patient="COPYB")
        record.relink = False
        self.assertRaises(InconsistentLink, self.upsert, record)
        self.assertEqual(self.row("image")["ImagePat"], "COPYA")

    def test_anImageOfThisBatchKeepsItsStudy(self):
        """A study's only image sent again with another Patient ID may move
        it, but not past a new image of the study earlier in the batch."""
        self.upsert(makeRecord("1.2.3.1.1", patient="PATA"))
        self.assertRaises(InconsistentLink, self.index.storeMany,
                          [makeRecord("1.2.3.1.2", patient="PATA"), makeRecord("1.2.3.1.1", patient="PATB")])
        self.assertEqual(self.row("study")["PatientID"], "PATA")
        self.assertEqual({r["ImagePat"] for r in self.rows("image")}, {"PATA"})

    def test_patientKeptWhileImagesNameIt(self):
        """A patient no study row names (an index Conquest left
        inconsistent) is not deleted while series and images still name it."""
        self.upsert(makeRecord("1.2.3.1.1", patient="PATA"))
        self.upsert(makeRecord("9.1.1", series="9.1", study="9", patient="PATA"))
        study = self.index.tables.study
        with self.engine.begin() as connection:
            connection.execute(update(study).where(study.c.StudyInstanceUID == "9").values(PatientID="OTHER"))
        events = []
        self.patch(Upserter, "log", Logger(observer=events.append))
        self.upsert(makeRecord("1.2.3.1.1", patient="PATB"))  # the study's only image: it moves
        self.assertEqual(sorted(r["PatientID"] for r in self.rows("patient")), ["PATA", "PATB"])
        self.assertEqual([formatEvent(e) for e in events if e["log_level"].name == "warn"],
                         ["DICOMPatients row PATA kept though its last image moved elsewhere: "
                          "SeriesPat of DICOMSeries still names it"])

    def test_storedOn(self):
        self.upsert(makeRecord("1.2.3.1.2", objectFile="b.dcm"))
        self.upsert(makeRecord("1.2.3.1.1", objectFile="a.dcm"))
        self.upsert(makeRecord("1.2.3.1.3", objectFile="c.dcm", deviceName="MAG1"))
        with self.engine.connect() as connection:
            self.assertEqual([tuple(row) for row in self.index.storedOn(connection, "MAG0")],
                             [("1.2.3.1.1", "a.dcm"), ("1.2.3.1.2", "b.dcm")])

    def test_truncation(self):
        """Too long values are cut to the column length; the first of each
        column is a warning, the next ones debug lines."""
        events = []
        self.patch(Level, "log", Logger(observer=events.append))
        self.upsert(makeRecord("1.2.3.1.1", PATIENT_NAME="X" * 70, STUDY_DESCRIPTION="D" * 65))
        self.assertEqual(self.row("patient")["PatientName"], "X" * 64)
        self.assertEqual(self.row("study")["StudyDescription"], "D" * 64)
        columns = {(e["table"], e["column"]) for e in events}
        self.assertEqual(columns, {("DICOMPatients", "PatientName"),
                                   ("DICOMStudies", "PatientName"),
                                   ("DICOMStudies", "StudyDescription")})
        self.assertEqual({e["log_level"].name for e in events}, {"warn"})
        del events[:]
        self.upsert(makeRecord("1.2.3.1.2", study="1.2.4", series="1.2.4.1", STUDY_DESCRIPTION="E" * 65))
        self.assertEqual([(e["column"], e["log_level"].name) for e in events], [("StudyDescription", "debug")])

    def test_truncationLogsAPrefix(self):
        """A cut value is logged as its first 64 characters and its length:
        a 500,000-character HL7 field would otherwise be a 500 KB log line."""
        events = []
        self.patch(Level, "log", Logger(observer=events.append))
        self.upsert(makeRecord("1.2.3.1.1", STUDY_DESCRIPTION="D" * 500000))
        line = formatEvent(next(e for e in events if e["column"] == "StudyDescription"))
        self.assertIn(f"truncated to 64 characters: {'D' * 64!r}... (500000 characters) (further ones", line)
        self.assertLess(len(line), 400)

    def test_cutAtNul(self):
        """A value holding a NUL is stored up to it, as Conquest's C strings
        end there, on every database (PostgreSQL refuses text holding one):
        the first of each column a warning, the next ones debug lines."""
        events = []
        self.patch(Level, "log", Logger(observer=events.append))
        self.upsert(makeRecord("1.2.3.1.1", PATIENT_NAME="NUL\0NAME", STUDY_DESCRIPTION="NUL\0TEXT"))
        self.assertEqual(self.row("patient")["PatientName"], "NUL")
        self.assertEqual(self.row("study")["StudyDescription"], "NUL")
        self.assertEqual({(e["table"], e["column"], e["log_level"].name) for e in events},
                         {("DICOMPatients", "PatientName", "warn"), ("DICOMStudies", "PatientName", "warn"),
                          ("DICOMStudies", "StudyDescription", "warn")})
        self.assertIn("DICOMStudies.StudyDescription cut at a NUL: 'NUL\\x00TEXT'", [
            formatEvent(e).split(" (")[0] for e in events])
        del events[:]
        self.upsert(makeRecord("1.2.3.1.2", study="1.2.4", series="1.2.4.1", STUDY_DESCRIPTION="\0E"))
        self.assertEqual(self.row("study", StudyInstanceUID="1.2.4")["StudyDescription"], "")
        self.assertEqual([(e["column"], e["log_level"].name) for e in events], [("StudyDescription", "debug")])

    def test_oneWarningPerColumn(self):
        """A column's first cut is a warning, truncated or cut at a NUL; its
        next ones, of either kind, are debug lines, as the warning says."""
        events = []
        self.patch(Level, "log", Logger(observer=events.append))
        self.upsert(makeRecord("1.2.3.1.1", STUDY_DESCRIPTION="D" * 65))
        self.upsert(makeRecord("1.2.3.1.2", study="1.2.4", series="1.2.4.1", STUDY_DESCRIPTION="NUL\0TEXT"))
        self.assertEqual([e["log_level"].name for e in events if e["column"] == "StudyDescription"],
                         ["warn", "debug"])
        self.assertIn("further ones of this column are logged at debug level", formatEvent(events[0]))

    def test_keyHoldingNulRefused(self):
        """A key holding a NUL is refused: cut, it would be another row's."""
        for key, value in (("sop", "1.2.3.1.9\0.1"), ("series", "1.2.3.1\0.2"), ("patient", "PAT1\0X")):
            error = self.assertRaises(ValueError, self.upsert, makeRecord(**{"sop": "1.2.3.1.9", key: value}))
            self.assertIn("holds a NUL", str(error))
        self.assertEqual(self.rows("image"), [])

    def test_truncationLeavesNoTrailingSpace(self):
        """A value cut after a space is stored without it, as a C-FIND
        answers it and a C-FIND for it must find it (PS3.5 6.2)."""
        self.upsert(makeRecord("1.2.3.1.1", STUDY_DESCRIPTION="D" * 63 + " tail"))
        self.assertEqual(self.row("study")["StudyDescription"], "D" * 63)

    def test_paddingSpacesAreNoPartOfAValue(self):
        """Leading (and trailing) spaces of a value whose VR pads with them
        (LO, SH, CS, PN, DA ...: PS3.5 6.2), of each of its values, are
        dropped, as a C-FIND key's are (``valuesOf``): a Patient ID stored
        with one is found by the ID, and the same patient sent without it
        is the same row, on every database.  LT, ST and UT keep theirs."""
        self.upsert(makeRecord("1.2.3.1.1", patient=" LEAD", PATIENT_NAME=" DOE^JOHN",
                               STUDY_DESCRIPTION="  CT HEAD", IMAGE_TYPE=" ORIGINAL\\ PRIMARY"))
        self.upsert(makeRecord("1.2.3.1.2", patient="LEAD"))
        self.assertEqual([(row["PatientID"], row["PatientName"]) for row in self.rows("patient")],
                         [("LEAD", "DOE^JOHN")])
        study = self.row("study")
        self.assertEqual((study["PatientID"], study["StudyDescription"]), ("LEAD", "CT HEAD"))
        self.assertEqual(self.row("image", SOPInstanceUID="1.2.3.1.1")["ImageType"], "ORIGINAL\\PRIMARY")
        query = IndexQuery(self.index.tables, self.index.layout)
        with self.engine.connect() as connection:
            for key in ("LEAD", " LEAD"):
                found = query.find(connection, "PATIENT", [QueryKey(PATIENT_ID, "LO", key)])
                self.assertEqual([match[PATIENT_ID] for match in found], ["LEAD"])
        with self.engine.begin() as connection:  # a study indexed with the space, before it was dropped
            connection.execute(update(self.index.tables.study).values(PatientID=" LEAD"))
        self.index.forgetCache()
        self.upsert(makeRecord("1.2.3.1.3", patient=" LEAD"))
        self.assertEqual(self.row("study")["PatientID"], "LEAD")
        comments = 0x00204000  # ImageComments, LT
        self.assertEqual(ImageRecord({comments: "  indented"}, "MAG0", "a.dcm").attrs, {comments: "  indented"})

    def test_dictionaryVRKeepsKnownTagsOnly(self):
        """The padding rule asks the dictionary for each tag's VR, kept for
        the tags it knows only: an object's private or unknown tags (their
        padding goes too) do not grow what is kept."""
        private = 0x00091001
        record = ImageRecord({PATIENT_ID: " LEAD", private: " value "}, "MAG0", "a.dcm")
        self.assertEqual(record.attrs, {PATIENT_ID: "LEAD", private: "value"})
        self.assertEqual((dictionaryVR(PATIENT_ID), dictionaryVR(private)), ("LO", ""))
        self.assertNotIn(private, records._knownVRs)

    def test_allowTruncate(self):
        """The columns AllowTruncate names are never warned of."""
        events = []
        self.patch(Level, "log", Logger(observer=events.append))
        index = Index(self.engine, conquestLayout(), TABLE_NAMES, allowTruncate=frozenset({"studydescription"}))
        with self.engine.begin() as connection:
            index.upsertImage(connection, makeRecord("1.2.3.1.1", PATIENT_NAME="X" * 70, STUDY_DESCRIPTION="D" * 65))
        levels = {e["column"]: e["log_level"].name for e in events}
        self.assertEqual(levels, {"PatientName": "warn", "StudyDescription": "debug"})

    def test_oldStyleDate(self):
        """ACR-NEMA dates (YYYY.MM.DD) are stored as Conquest's YYYYMMDD,
        times (HH:MM:SS.frac) as HHMMSS.frac, the forms keys are matched in."""
        self.upsert(makeRecord("1.2.3.1.1", STUDY_DATE="2024.01.02", STUDY_TIME="12:30:00.5"))
        self.assertEqual((self.row("study")["StudyDate"], self.row("study")["StudyTime"]), ("20240102", "123000.5"))

    def test_emptyPatientID(self):
        """Conquest indexes objects without a PatientID under ''."""
        self.upsert(makeRecord("1.2.3.1.1", patient=""))
        self.assertEqual(self.row("patient")["PatientID"], "")

    def test_missingUIDs(self):
        for missing in ("STUDY_UID", "SERIES_UID", "SOP_UID"):
            record = makeRecord("1.2.3.1.1", **{missing: None})
            error = self.assertRaises(ValueError, self.upsert, record)
            self.assertIn("empty", str(error))
        self.assertEqual(self.rows("patient"), [])

    def test_overlongKeysRefusedNotTruncated(self):
        """A SOP Instance, Series or Study UID or Patient ID longer than its
        column is refused, whatever AllowTruncate says: cut, two SOP
        instances sharing their first 64 characters would be one, the
        second replacing the first."""
        index = Index(self.engine, conquestLayout(), TABLE_NAMES,
                      allowTruncate=frozenset({"sopinstanceuid", "studyinstanceuid", "seriesinstanceuid", "patientid"}))
        prefix = "1.2." + "7" * 60
        self.upsert(makeRecord(prefix))
        for key, value in (("sop", prefix + ".1"), ("series", prefix + ".2"), ("study", prefix + ".3"),
                           ("patient", "P" * 65)):
            record = makeRecord(**{"sop": "1.2.3.1.9", key: value})
            with self.engine.begin() as connection:
                self.assertRaises(ValueError, index.upsertImage, connection, record)
            error = self.assertRaises(ValueError, index.checkKeys, record.attrs)
            self.assertIn("longer than its 64 characters", str(error))
        self.assertEqual([row["SOPInstanceUID"] for row in self.rows("image")], [prefix])
        self.assertEqual(len(self.rows("study")), 1)

    def test_badFileLocation(self):
        self.assertRaises(ValueError, self.upsert, makeRecord("1.2.3.1.1", objectFile="x" * 256))
        self.assertRaises(ValueError, self.upsert, makeRecord("1.2.3.1.1", deviceName=""))


class StoreManyTests(IndexTestCase):
    """storeMany: regeneration's batched, synchronous path."""

    def test_batches(self):
        """One transaction per 500 records, results in order."""
        commits = self.countCommits()
        records = [makeRecord(f"1.2.3.1.{n}") for n in range(1200)]
        results = self.index.storeMany(iter(records))
        self.assertEqual(results, [None] * 1200)
        self.assertEqual(len(commits), 3)
        self.assertEqual(len(self.rows("image")), 1200)

    def test_cacheSavesParentStatements(self):
        """500 images of one new series: 3 parent SELECTs + 3 INSERTs, then
        one SELECT ... IN and one executemany INSERT for the images."""
        statements = self.countStatements()
        self.index.storeMany([makeRecord(f"1.2.3.1.{n}") for n in range(500)])
        self.assertEqual(len(statements), self.versionChecks() + 3 + 3 + 1 + 1)
        self.assertEqual(len(self.rows("image")), 500)

    def storeAroundOutsideDelete(self, *levels):
        """Store 10 images of one series, delete every row of the tables of
        ``levels`` on another connection, then store 10 more of it (two
        batches of one writer); the tables whose rows were inserted again."""
        self.patch(Index, "storeManyBatch", 10)

        def records():
            yield from (makeRecord(f"1.2.3.1.{n}") for n in range(10))
            with self.engine.begin() as outside:
                for level in levels:
                    outside.execute(delete(getattr(self.index.tables, level)))
            yield from (makeRecord(f"1.2.3.1.{n}") for n in range(10, 20))
        with capturedLogs() as events:
            self.assertEqual(self.index.storeMany(records()), [None] * 20)
        return [e["table"] for e in events if "gone from the database" in e["log_format"]]

    def test_parentsDeletedOutside(self):
        """The patient, study and series rows the writer cached are deleted
        behind its back (sqlite3, another node sharing the database, a
        backup restored): the next images insert them again, with a log
        line each, rather than leaving images that no query finds."""
        gone = self.storeAroundOutsideDelete("image", "series", "study", "patient")
        self.assertEqual(gone, ["DICOMPatients", "DICOMStudies", "DICOMSeries"])
        self.assertEqual([len(self.rows(level)) for level in ("patient", "study", "series", "image")],
                         [1, 1, 1, 10])
        self.assertEqual(self.row("series")["StudyInstanceUID"], "1.2.3")

    def test_oneParentDeletedOutside(self):
        """Each level is checked: only the series row is inserted again."""
        self.assertEqual(self.storeAroundOutsideDelete("series"), ["DICOMSeries"])
        self.assertEqual([len(self.rows(level)) for level in ("patient", "study", "series", "image")],
                         [1, 1, 1, 20])

    def test_cachedParentsCostOneSelectEach(self):
        """Images of a series already written by this writer: one SELECT
        of each parent's key per transaction, none of their values; on
        SQLite, none while no other connection has committed since the
        last check (one PRAGMA data_version tells)."""
        self.patch(Index, "storeManyBatch", 10)
        statements = self.countStatements()
        self.index.storeMany([makeRecord(f"1.2.3.1.{n}") for n in range(20)])
        checks = 1 if self.versionChecks() else 3
        self.assertEqual(len(statements), (self.versionChecks() + 3 + 3 + 1 + 1) + (checks + 1 + 1))

    def test_cachedParentsCheckedAfterOtherCommits(self):
        """A commit on another connection, whatever it changed, has the
        next transaction check the cached parents again (SQLite too)."""
        self.patch(Index, "storeManyBatch", 10)
        statements = self.countStatements()

        def records():
            yield from (makeRecord(f"1.2.3.1.{n}") for n in range(20))
            with self.engine.begin() as outside:
                outside.execute(self.index.tables.worklist.insert().values(AccessionNumber="ACC1"))
            del statements[:]
            yield from (makeRecord(f"1.2.3.1.{n}") for n in range(20, 30))
        self.index.storeMany(records())
        self.assertEqual(len(statements), self.versionChecks() + 3 + 1 + 1)

    def test_otherCachedParentsCheckedAfterOtherCommits(self):
        """Another connection deletes two patients this writer has cached:
        a store into each, in turns, inserts its rows again, not only the
        first (the commit seen by the first store's check leaves the other
        patient's cached rows unchecked, not checked)."""
        upserter = Upserter(buildLevels(self.index.tables, conquestLayout()))
        patients = [("P1", "1.2.7.1"), ("P2", "1.2.7.2")]

        def store(sop):
            for patient, study in patients:
                with connection.begin():
                    upserter.upsertImages(connection, [makeRecord(f"{study}.1.{sop}", series=f"{study}.1",
                                                                  study=study, patient=patient)])
        with self.engine.connect() as connection:
            store(1)
            with self.engine.begin() as outside:
                for level in ("image", "series", "study", "patient"):
                    outside.execute(delete(getattr(self.index.tables, level)))
            store(2)
        self.assertEqual([sorted(row[key] for row in self.rows(level)) for level, key in (
            ("patient", "PatientID"), ("study", "StudyInstanceUID"), ("series", "SeriesInstanceUID"),
            ("image", "SeriesInstanceUID"))],
            [["P1", "P2"], ["1.2.7.1", "1.2.7.2"], ["1.2.7.1.1", "1.2.7.2.1"], ["1.2.7.1.1", "1.2.7.2.1"]])

    def test_cachedParentsCheckedOnNewConnection(self):
        """The writer's connection replaced (a database server's restart;
        SQLite counts commits per connection), the cached parents are
        checked on the new one: rows deleted in between are inserted
        again."""
        upserter = Upserter(buildLevels(self.index.tables, conquestLayout()))
        with self.engine.connect() as first:
            with first.begin():
                upserter.upsertImages(first, [makeRecord("1.2.3.1.1")])
            first.invalidate()  # its DBAPI connection is closed, not pooled
        with self.engine.begin() as outside:
            for level in ("image", "series"):
                outside.execute(delete(getattr(self.index.tables, level)))
        with self.engine.connect() as second:
            with second.begin():
                upserter.upsertImages(second, [makeRecord("1.2.3.1.2")])
        self.assertEqual([len(self.rows(level)) for level in ("patient", "study", "series", "image")],
                         [1, 1, 1, 1])

    def test_newModalityOfCachedStudy(self):
        """A new modality in a study this writer has cached costs one UPDATE
        of its row, no SELECT of it."""
        statements = self.countStatements()
        self.index.storeMany([makeRecord("1.2.3.1.1"), makeRecord("1.2.3.2.1", series="1.2.3.2", MODALITY="MR"),
                              makeRecord("1.2.3.1.2")])
        self.assertEqual(len(statements), self.versionChecks() + (3 + 3) + (1 + 1) + 1 + 1 + 1)
        self.assertEqual([s.split()[1].strip('"`') for s in statements if s.startswith("UPDATE")], ["DICOMStudies"])
        self.assertEqual(self.row("study")["StudyModality"], "MR\\CT")

    def test_sopTwiceInOneBatch(self):
        results = self.index.storeMany([
            makeRecord("1.2.3.1.1", objectFile="a.dcm"),
            makeRecord("1.2.3.1.1", objectFile="b.dcm", ROWS="1"),
            makeRecord("1.2.3.1.1", objectFile="c.dcm", ROWS="2")])
        self.assertEqual(results, [None, Replaced("MAG0", "a.dcm"), Replaced("MAG0", "b.dcm")])
        image = self.row("image")
        self.assertEqual((image["ObjectFile"], image["Rows"]), ("c.dcm", "2"))

    def test_failingRecordFailsAlone(self):
        """A record the database refuses fails by itself: the rest of its
        batch is committed, parent rows included (the cache of the
        rolled-back batch is dropped), then its error is raised."""
        self.refuseImageNumber("666")
        records = [makeRecord("1.2.3.1.1"),
                   makeRecord("9.9.9.1.1", series="9.9.9.1", study="9.9.9", patient="PAT2"),
                   makeRecord("1.2.3.1.666"),
                   makeRecord("1.2.3.1.2")]
        error = self.assertRaises(DBAPIError, self.index.storeMany, records)
        self.assertIn("refused", str(error))
        self.assertEqual({r["PatientID"] for r in self.rows("patient")}, {"PAT1", "PAT2"})
        self.assertEqual(len(self.rows("series", SeriesInstanceUID="9.9.9.1")), 1)
        self.assertEqual(len(self.rows("image")), 3)

    def test_objectFileNotUTF8(self):
        """A file name of Latin-1 bytes (a surrogate escape in Python) is
        stored so that it reads back the same, where the index reads it: the
        row, the copy it replaces and the files of the device."""
        latin1 = os.fsdecode(b"PAT1/M\xfcller 100%.dcm")
        self.assertEqual(self.index.storeMany([makeRecord("1.2.3.1.1", objectFile=latin1)]), [None])
        self.assertEqual(self.row("image")["ObjectFile"], latin1)
        self.assertEqual(self.index.storeMany([makeRecord("1.2.3.1.1", objectFile="PAT1/new.dcm")]),
                         [Replaced("MAG0", latin1)])
        self.index.storeMany([makeRecord("1.2.3.1.2", objectFile=latin1)])
        with self.engine.connect() as connection:
            self.assertEqual(sorted(file for _, file in self.index.storedOn(connection, "MAG0")),
                             [latin1, "PAT1/new.dcm"])

    def test_invalidRecord(self):
        """An unusable record raises ValueError; later batches are not written."""
        self.patch(Index, "storeManyBatch", 2)
        records = [makeRecord("1.2.3.1.1"), makeRecord("1.2.3.1.2", SERIES_UID=""),
                   makeRecord("1.2.3.1.3")]
        self.assertRaises(ValueError, self.index.storeMany, records)
        self.assertEqual([r["SOPInstanceUID"] for r in self.rows("image")], ["1.2.3.1.1"])


class InitializeTablesTests(IndexTestCase):
    """dgate -i (image tables) and --initializetables:2 (worklist)."""

    def countRows(self, table):
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(table)).scalar()

    def fillWorklist(self):
        with self.engine.begin() as connection:
            connection.execute(self.index.tables.worklist.insert().values(
                AccessionNumber="ACC1", PatientID="PAT1"))

    def test_imageTables(self):
        self.index.storeMany([makeRecord("1.2.3.1.1")])
        self.fillWorklist()
        self.index.initializeTables()
        for level in ("patient", "study", "series", "image"):
            self.assertEqual(self.countRows(getattr(self.index.tables, level)), 0)
        self.assertEqual(self.countRows(self.index.tables.worklist), 1)
        self.index.storeMany([makeRecord("1.2.3.1.1")])
        self.assertEqual(len(self.rows("patient")), 1)

    def test_conquestColumnNamesCutShortAreTakenOver(self):
        """A database Conquest made (TruncateFieldNames = 10: StudyInsta,
        SOPInstanc ...) gets dicom.sql's names back at start-up, rows kept."""
        self.index.storeMany([makeRecord("1.2.3.1.1")])
        self.fillWorklist()
        cut = []
        with self.engine.begin() as connection:
            preparer = connection.dialect.identifier_preparer
            for table in self.index.tables:
                for column in table.columns:
                    if len(column.name) > 10:
                        cut.append(column.name)
                        connection.exec_driver_sql(
                            f"ALTER TABLE {preparer.format_table(table)} RENAME COLUMN "
                            f"{preparer.quote(column.name)} TO {preparer.quote(column.name[:10])}")
        self.assertIn("SOPInstanceUID", cut)
        with capturedLogs() as events:
            index = Index(self.engine, conquestLayout(), TABLE_NAMES)
            index.createTables()
        self.assertEqual(len([e for e in events if "renamed" in e]), 5)
        self.assertEqual([row["SOPInstanceUID"] for row in self.rows("image")], ["1.2.3.1.1"])
        self.assertEqual(self.countRows(index.tables.worklist), 1)
        index.storeMany([makeRecord("1.2.3.1.2")])
        self.assertEqual(len(self.rows("image")), 2)

    def test_olderLayoutGetsTheMissingColumns(self):
        """Tables of an older layout (no AccessTime, no DeviceName) or of a
        dicom.sql that gained a column since get them at start-up, logged:
        stores (and HL7 orders, for the worklist) went on failing on the
        missing columns."""
        self.index.storeMany([makeRecord("1.2.3.1.1", STUDY_DESCRIPTION="KNEE")])
        dropped = {"patient": ["AccessTime"], "study": ["StudyDescription"], "image": ["AccessTime", "DeviceName"],
                   "worklist": ["qFlags", "MedicalAlerts"]}
        with self.engine.begin() as connection:
            preparer = connection.dialect.identifier_preparer
            for level, names in dropped.items():
                for name in names:
                    connection.exec_driver_sql(f"ALTER TABLE {preparer.quote(getattr(self.index.tables, level).name)} "
                                               f"DROP COLUMN {preparer.quote(name)}")
        with capturedLogs() as events:
            index = Index(self.engine, conquestLayout(), TABLE_NAMES)
            index.createTables()
        lines = sorted(formatEvent(e) for e in events if "lacked" in formatEvent(e))
        self.assertEqual(lines, [
            "Table DICOMImages lacked the bookkeeping columns AccessTime, DeviceName (an older layout): added",
            "Table DICOMPatients lacked the bookkeeping columns AccessTime (an older layout): added",
            "Table DICOMStudies lacked dicom.sql's columns StudyDescription: added, empty in the rows already "
            "indexed until 'dgate -r' fills them from the stored files",
            "Table DICOMWorkList lacked dicom.sql's columns MedicalAlerts: added, empty in the items there are "
            "(orders give new ones values)",
            "Table DICOMWorkList lacked the bookkeeping columns qFlags (an older layout): added"])
        self.assertEqual(self.row("image", SOPInstanceUID="1.2.3.1.1")["DeviceName"], "MAG0")
        self.assertIsNone(self.row("study")["StudyDescription"])
        index.storeMany([makeRecord("1.2.3.1.2", STUDY_DESCRIPTION="KNEE")])
        self.assertEqual(len(self.rows("image", DeviceName="MAG0")), 2)
        self.assertEqual(self.row("study")["StudyDescription"], "KNEE")

    def test_columnWidthsFollowDicomSql(self):
        """A text column dicom.sql widened since the tables were made is
        widened in the database at start-up, logged (on PostgreSQL and
        MySQL, which keep widths; SQLite keeps none): a longer value was
        refused until a regen.  One made narrower is left as it is (its
        values are not cut), with a warning saying what happens."""
        self.index.storeMany([makeRecord("1.2.3.1.1")])
        layout = conquestLayout()
        layout.patient = [replace(c, length=128) if c.name == "PatientName" else c for c in layout.patient]
        layout.study = [replace(c, length=32) if c.name == "StudyDescription" else c for c in layout.study]
        with capturedLogs() as events:
            index = Index(self.engine, layout, TABLE_NAMES)
            index.createTables()
        lines = sorted(line for line in map(formatEvent, events)
                       if line.startswith("Table ") and "characters" in line)
        if self.engine.dialect.name == "sqlite":
            self.assertEqual(lines, [])
        else:
            self.assertEqual(lines, [
                "Table DICOMPatients: column PatientName widened from 64 to 128 characters, as dicom.sql declares "
                "it now",
                "Table DICOMStudies: column StudyDescription is narrower in dicom.sql (32 characters) than in the "
                "database (64): left as it is, its values kept whole; values stored from now are cut to 32 "
                "characters"])
            widths = {c["name"]: getattr(c["type"], "length", None)
                      for c in inspect(self.engine).get_columns("DICOMPatients")}
            self.assertEqual(widths["PatientName"], 128)
        name = "Abcdefghij" * 8 + "^Given"
        index.storeMany([makeRecord("1.2.3.1.2", patient="PAT2", series="1.2.4.1", study="1.2.4",
                                    PATIENT_NAME=name)])
        self.assertEqual(self.row("patient", PatientID="PAT2")["PatientName"], name)
        with capturedLogs() as events:
            Index(self.engine, layout, TABLE_NAMES).createTables()
        self.assertEqual([e for e in events if "widened" in formatEvent(e)], [])

    def test_worklist(self):
        self.index.storeMany([makeRecord("1.2.3.1.1")])
        self.fillWorklist()
        self.index.initializeTables(worklist=True)
        self.assertEqual(self.countRows(self.index.tables.worklist), 0)
        self.assertEqual(self.countRows(self.index.tables.image), 1)


    def test_regenMarks(self):
        """The devices a regeneration is about to re-enter are marked in the
        transaction that clears the tables, until it says it is complete."""
        self.index.storeMany([makeRecord("1.2.3.1.1")])
        self.index.initializeTables(regenerating=["MAG0", "MAG1"])
        self.assertEqual(self.index.interruptedRegens(), ["MAG0", "MAG1"])
        self.assertEqual(self.countRows(self.index.tables.image), 0)
        with self.engine.begin() as connection:
            self.index.regens.mark(connection, ["MAG1", "MAG2"])
            self.index.regens.unmark(connection, ["MAG0"])
        self.assertEqual(self.index.interruptedRegens(), ["MAG1", "MAG2"])
        self.index.initializeTables(worklist=True)
        self.assertEqual(self.index.interruptedRegens(), ["MAG1", "MAG2"])
        self.index.initializeTables()
        self.assertEqual(self.index.interruptedRegens(), [])


class TakeoverTests(unittest.TestCase):
    """The first start on a database Conquest made: ``schemaTransaction``
    told so, then its text that is not UTF-8 rewritten once, in one go."""

    def setUp(self):
        self.engine = sqliteEngine(self)
        makeConquestDatabase(self.engine.url.database)
        self.kept = []  # (engine, DICOMImages's columns) of each takeover
        self.index = self.takeOver()

    def takeOver(self, engine=None):
        return Index(engine or self.engine, conquestLayout(), TABLE_NAMES, schemaTransaction=self.schemaTransaction)

    @contextmanager
    def schemaTransaction(self, engine, takeover):
        with engine.begin() as connection:
            if takeover:
                self.kept.append((engine, [column["name"] for column in inspect(connection).get_columns("DICOMImages")]))
            yield connection

    def select(self, column, *where):
        with self.engine.connect() as connection:
            return connection.execute(select(column).where(*where)).scalars().all()

    def test_textRewrittenInUtf8(self):
        """Names are found by SQL in UTF-8, the file name still names the
        same file, and the patient takes new images."""
        with capturedLogs() as events:
            self.index.createTables()
        self.assertEqual([engine for engine, _ in self.kept], [self.engine])
        tables = self.index.tables
        for table in (tables.patient, tables.study):
            self.assertEqual(self.select(table.c.PatientID, table.c.PatientName == "MÜLLER^ANNA"), ["PAT2"])
        self.assertEqual(self.select(tables.image.c.ObjectFile), [os.fsdecode(LATIN1_FILE)])
        with self.engine.connect() as connection:
            self.assertEqual(connection.exec_driver_sql("SELECT ObjectFile FROM DICOMImages").scalar(),
                             storedPath(os.fsdecode(LATIN1_FILE)))
        [line] = [formatEvent(event) for event in events if "Rewrote in UTF-8" in formatEvent(event)]
        self.assertIn("Rewrote in UTF-8 3 text cells Conquest had stored in the bytes they came in (2 read as "
                      "Latin-1; file names kept as they are on disk)", line)
        self.index.storeMany([makeRecord("1.2.3.1.2", patient="PAT2", PATIENT_NAME="MÜLLER^ANNA")])
        self.assertEqual(self.select(tables.image.c.ImagePat), ["PAT2", "PAT2"])
        self.assertEqual(self.select(tables.patient.c.PatientName), ["MÜLLER^ANNA"])

    def test_textReadInTheCharacterSetOfThePatientsFiles(self):
        """A Russian site: the name Conquest kept in ISO_IR 144 bytes reads
        in the character set a file of its patient declares, one header
        read for the patient; where none can be read, or the bytes are not
        valid in the one it declares, as Latin-1, with a warning that such
        names may be wrong."""
        russian = "Люкceмбypг"
        latin1 = russian.encode("iso8859_5").decode("latin-1")
        for characterSet, expected, readIn in (("ISO_IR 144", russian, "2 read in ISO_IR 144"),
                                               (None, latin1, "2 read as Latin-1"),
                                               ("ISO_IR 192", latin1, "2 read as Latin-1")):
            engine = sqliteEngine(self)
            makeConquestDatabase(engine.url.database, russian.encode("iso8859_5"))
            asked = []

            def characterSetOf(deviceName, objectFile):
                asked.append((deviceName, objectFile))
                return characterSet

            with capturedLogs() as events:
                Index(engine, conquestLayout(), TABLE_NAMES).createTables(characterSetOf)
            with engine.connect() as connection:
                self.assertEqual(connection.exec_driver_sql("SELECT PatientName FROM DICOMPatients UNION "
                                                            "SELECT PatientName FROM DICOMStudies").scalars().all(),
                                 [expected])
            self.assertEqual(asked, [("MAG0", os.fsdecode(LATIN1_FILE))])
            [line] = [formatEvent(event) for event in events if "Rewrote in UTF-8" in formatEvent(event)]
            self.assertIn(f"Rewrote in UTF-8 3 text cells Conquest had stored in the bytes they came in ({readIn}; "
                          "file names kept as they are on disk)", line)
            self.assertEqual("until dgate -r" in line, "Latin-1" in readIn, line)

    def test_windowsSeparatorsRewritten(self):
        """Conquest on Windows names files with \\: each is rewritten with
        /, once, with a warning, the Latin-1 name still naming the same file."""
        engine = sqliteEngine(self)
        makeConquestDatabase(engine.url.database, objectFile=b"PAT2\\sub\\M\xdcLLER_1.v2")
        with capturedLogs() as events:
            index = self.takeOver(engine)
            index.createTables()
        with engine.connect() as connection:
            self.assertEqual(connection.execute(select(index.tables.image.c.ObjectFile)).scalars().all(),
                             [os.fsdecode(b"PAT2/sub/M\xdcLLER_1.v2")])
        [line] = [formatEvent(event) for event in events if "Windows" in formatEvent(event)]
        self.assertIn("DICOMImages.ObjectFile: 1 file names were written with Windows' \\", line)

    def test_windowsSeparatorsLeftByAnEarlierTakeover(self):
        """An index an earlier pacs took over from Conquest on Windows still
        names its files with \\: the next start rewrites them with /, with
        the warning; a start finding none changes nothing (review of the
        Windows path fix, item 4)."""
        engine = sqliteEngine(self)
        makeConquestDatabase(engine.url.database, objectFile=b"PAT2\\1.v2")
        self.takeOver(engine).createTables()
        with engine.begin() as connection:  # as the earlier pacs left it
            connection.exec_driver_sql("UPDATE DICOMImages SET ObjectFile = 'PAT2\\1.v2'")
        for expected in (["DICOMImages.ObjectFile: 1 file names were written with Windows' \\"], []):
            with capturedLogs() as events:
                Index(engine, conquestLayout(), TABLE_NAMES).createTables()
            lines = [formatEvent(event) for event in events if "Windows" in formatEvent(event)]
            self.assertEqual(len(lines), len(expected), lines)
            for line, start in zip(lines, expected):
                self.assertIn(start, line)
            with engine.connect() as connection:
                self.assertEqual(connection.exec_driver_sql("SELECT ObjectFile FROM DICOMImages").scalar(),
                                 "PAT2/1.v2")

    def test_windowsIndexReadInTheCharacterSetOfItsFiles(self):
        """A Russian site's index from Conquest on Windows: its files are
        looked up by their / names, so the name reads in the character set
        they declare (review of the Windows path fix, item 1)."""
        russian = "Люкceмбypг"
        engine = sqliteEngine(self)
        makeConquestDatabase(engine.url.database, russian.encode("iso8859_5"), objectFile=b"PAT2\\sub\\1.v2")
        asked = []

        def characterSetOf(deviceName, objectFile):
            asked.append(objectFile)
            return "ISO_IR 144" if objectFile == "PAT2/sub/1.v2" else None

        self.takeOver(engine).createTables(characterSetOf)
        with engine.connect() as connection:
            self.assertEqual(connection.exec_driver_sql("SELECT PatientName FROM DICOMPatients UNION "
                                                        "SELECT PatientName FROM DICOMStudies").scalars().all(),
                             [russian])
        self.assertEqual(asked, ["PAT2/sub/1.v2"])

    def test_characterSetOfAnotherFileOfThePatient(self):
        """The patient's file read first is gone (or declares no set):
        another of its files says ISO_IR 144; a patient none of whose
        files can be read has FILES_TRIED of them asked, and reads as
        Latin-1 (review of the character set fixes, item 5)."""
        russian = "Люкceмбypг"
        for unreadable, readable, expected in ((1, True, russian),
                                               (FILES_TRIED + 2, False, russian.encode("iso8859_5").decode("latin-1"))):
            engine = sqliteEngine(self)
            makeConquestDatabase(engine.url.database, russian.encode("iso8859_5"))
            with closing(sqlite3.connect(engine.url.database)) as db:  # the unreadable ones first
                db.execute("CREATE TEMP TABLE readable AS SELECT * FROM DICOMImages")
                db.execute("DELETE FROM DICOMImages")
                for number in range(unreadable):
                    db.execute("INSERT INTO DICOMImages (SOPInstanc, ImagePat, SeriesInst, ObjectFile, DeviceName) "
                               "VALUES (?, 'PAT2', '1.2.3.1', ?, 'MAG0')", (f"1.2.3.1.{number + 2}",
                                                                            f"PAT2/gone{number}.dcm"))
                if readable:
                    db.execute("INSERT INTO DICOMImages SELECT * FROM readable")
                db.commit()
            asked = []

            def characterSetOf(deviceName, objectFile):
                asked.append(objectFile)
                return None if "gone" in objectFile else "ISO_IR 144"

            Index(engine, conquestLayout(), TABLE_NAMES).createTables(characterSetOf)
            with engine.connect() as connection:
                self.assertEqual(connection.exec_driver_sql("SELECT PatientName FROM DICOMPatients").scalar(),
                                 expected)
            self.assertLessEqual(len(asked), FILES_TRIED)
            self.assertEqual(len(set(asked)), len(asked))

    def test_onlyOnce(self):
        """Once taken over, and in a database pacs made, there is nothing
        to keep or rewrite."""
        self.index.createTables()
        with capturedLogs() as events:
            self.takeOver().createTables()
        self.assertEqual([engine for engine, _ in self.kept], [self.engine])
        self.assertEqual([event for event in events if "UTF-8" in formatEvent(event)], [])
        self.kept = []
        engine = sqliteEngine(self)
        for _ in range(2):
            self.takeOver(engine).createTables()
        self.assertEqual(self.kept, [])

    def test_initializeKeepsConquestsTables(self):
        """dgate -i: the database is kept before its tables are dropped."""
        self.index.initializeTables()
        self.index.createTables()
        self.assertEqual(len(self.kept), 1)
        self.assertIn("SOPInstanc", self.kept[0][1])

    def test_noIndexBesidePrimaryKey(self):
        """Conquest's primary keys serve as the unique indexes on the keys;
        the other indexes are made."""
        self.index.createTables()
        names = {index["name"] for index in inspect(self.engine).get_indexes("DICOMImages")}
        self.assertNotIn("ux_DICOMImages_SOPInstanceUID", names)
        self.assertIn("ix_DICOMImages_ImagePat", names)
        with self.engine.begin() as connection:
            self.assertRaises(DBAPIError, connection.exec_driver_sql,
                              "INSERT INTO DICOMImages (SOPInstanceUID) VALUES ('1.2.3.1.1')")
