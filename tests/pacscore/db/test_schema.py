"""Tests for pacscore.db.schema: Conquest's tables from a dicom.sql layout."""

import os
import warnings

from sqlalchemy import Column as SQLColumn
from sqlalchemy import MetaData, String, Table, create_engine, insert, inspect, select
from sqlalchemy.exc import SAWarning
from twisted.logger import Logger, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.dicomsql import Column, DatabaseLayout
from pacscore.db.schema import buildTables, createMissingTables, upgradeTable

TABLE_NAMES = {"patient": "DICOMPatients", "study": "DICOMStudies",
               "series": "DICOMSeries", "image": "DICOMImages",
               "worklist": "DICOMWorkList"}


def _columns(rows):
    return [Column(*row) for row in rows]


def conquestLayout():
    """Conquest's default dicom.sql (manual 7.3) as etc/ ships it, built without the parser."""
    C, D = "SQL_C_CHAR", "SQL_C_DATE"
    return DatabaseLayout(
        patient=_columns([
            (0x0010, 0x0020, "PatientID", 64, C, "DT_STR"),
            (0x0010, 0x0010, "PatientName", 64, C, "DT_STR"),
            (0x0010, 0x0030, "PatientBirthDate", 8, D, "DT_DATE"),
            (0x0010, 0x0040, "PatientSex", 16, C, "DT_STR"),
        ]),
        study=_columns([
            (0x0020, 0x000D, "StudyInstanceUID", 64, C, "DT_UI"),
            (0x0008, 0x0020, "StudyDate", 8, D, "DT_DATE"),
            (0x0008, 0x0030, "StudyTime", 16, C, "DT_TIME"),
            (0x0020, 0x0010, "StudyID", 16, C, "DT_STR"),
            (0x0008, 0x1030, "StudyDescription", 64, C, "DT_STR"),
            (0x0008, 0x0050, "AccessionNumber", 16, C, "DT_STR"),
            (0x0008, 0x0090, "ReferPhysician", 64, C, "DT_STR"),
            (0x0010, 0x1010, "PatientsAge", 16, C, "DT_STR"),
            (0x0010, 0x1030, "PatientsWeight", 16, C, "DT_STR"),
            (0x0008, 0x0061, "StudyModality", 64, C, "DT_MSTR"),
            (0x0010, 0x0010, "PatientName", 64, C, "DT_STR"),
            (0x0010, 0x0030, "PatientBirthDate", 8, D, "DT_DATE"),
            (0x0010, 0x0040, "PatientSex", 16, C, "DT_STR"),
            (0x0010, 0x0020, "PatientID", 64, C, "DT_STR"),
        ]),
        series=_columns([
            (0x0020, 0x000E, "SeriesInstanceUID", 64, C, "DT_UI"),
            (0x0020, 0x0011, "SeriesNumber", 12, C, "DT_STR"),
            (0x0008, 0x0021, "SeriesDate", 8, D, "DT_DATE"),
            (0x0008, 0x0031, "SeriesTime", 16, C, "DT_TIME"),
            (0x0008, 0x103E, "SeriesDescription", 64, C, "DT_STR"),
            (0x0008, 0x0060, "Modality", 16, C, "DT_STR"),
            (0x0008, 0x1010, "StationName", 16, C, "DT_STR"),
            (0x0008, 0x0080, "Institution", 64, C, "DT_STR"),
            (0x0018, 0x5100, "PatientPosition", 16, C, "DT_STR"),
            (0x0018, 0x0010, "ContrastBolusAgent", 64, C, "DT_STR"),
            (0x0008, 0x0070, "Manufacturer", 64, C, "DT_STR"),
            (0x0008, 0x1090, "ModelName", 64, C, "DT_STR"),
            (0x0018, 0x0015, "BodyPartExamined", 64, C, "DT_STR"),
            (0x0018, 0x1030, "ProtocolName", 64, C, "DT_STR"),
            (0x0020, 0x0052, "FrameOfReferenceUID", 64, C, "DT_UI"),
            (0x0010, 0x0020, "SeriesPat", 64, C, "DT_STR"),
            (0x0020, 0x000D, "StudyInstanceUID", 64, C, "DT_UI"),
        ]),
        image=_columns([
            (0x0008, 0x0018, "SOPInstanceUID", 64, C, "DT_UI"),
            (0x0008, 0x0016, "SOPClassUID", 64, C, "DT_UI"),
            (0x0020, 0x0013, "ImageNumber", 12, C, "DT_STR"),
            (0x0008, 0x0023, "ImageDate", 8, D, "DT_DATE"),
            (0x0008, 0x0033, "ImageTime", 16, C, "DT_TIME"),
            (0x0018, 0x0086, "EchoNumber", 64, C, "DT_MSTR"),
            (0x0028, 0x0008, "NumberOfFrames", 12, C, "DT_STR"),
            (0x0008, 0x0022, "AcqDate", 8, D, "DT_DATE"),
            (0x0008, 0x0032, "AcqTime", 16, C, "DT_TIME"),
            (0x0018, 0x1250, "ReceivingCoil", 16, C, "DT_STR"),
            (0x0020, 0x0012, "AcqNumber", 12, C, "DT_STR"),
            (0x0020, 0x1041, "SliceLocation", 16, C, "DT_STR"),
            (0x0028, 0x0002, "SamplesPerPixel", 5, C, "DT_UINT16"),
            (0x0028, 0x0004, "PhotoMetricInterpretation", 16, C, "DT_STR"),
            (0x0028, 0x0010, "Rows", 5, C, "DT_UINT16"),
            (0x0028, 0x0011, "Columns", 5, C, "DT_UINT16"),
            (0x0028, 0x0101, "BitsStored", 5, C, "DT_UINT16"),
            (0x0008, 0x0008, "ImageType", 128, C, "DT_MSTR"),
            (0x0054, 0x0400, "ImageID", 16, C, "DT_STR"),
            (0x0010, 0x0020, "ImagePat", 64, C, "DT_STR"),
            (0x0020, 0x000E, "SeriesInstanceUID", 64, C, "DT_UI"),
        ]),
        worklist=_columns([
            (0x0008, 0x0050, "AccessionNumber", 16, C, "DT_STR", "OBR.3"),
            (0x0010, 0x0020, "PatientID", 64, C, "DT_STR", "PID.4"),
            (0x0010, 0x0010, "PatientName", 64, C, "DT_STR", "PID.5"),
            (0x0010, 0x0030, "PatientBirthDate", 8, D, "DT_DATE", "PID.7"),
            (0x0010, 0x0040, "PatientSex", 16, C, "DT_STR", "PID.8"),
            (0x0010, 0x2000, "MedicalAlerts", 64, C, "DT_STR", "---"),
            (0x0010, 0x2110, "ContrastAllergies", 64, C, "DT_STR", "---"),
            # Conquest's file has "---"; pacs takes an OMI's (IPC-3) or generates the UID a worklist item needs
            (0x0020, 0x000D, "StudyInstanceUID", 64, C, "DT_UI", "IPC.3.0|*UI"),
            (0x0032, 0x1032, "ReqPhysician", 64, C, "DT_STR", "OBR.16"),
            (0x0032, 0x1060, "ReqProcDescription", 16, C, "DT_STR", "OBR.4.1"),
            (0x0040, 0x0100, "-----", 0, C, "DT_STARTSEQUENCE", "---"),
            (0x0008, 0x0060, "Modality", 16, C, "DT_STR", "OBR.21"),
            (0x0032, 0x1070, "ReqContrastAgent", 64, C, "DT_STR", "---"),
            (0x0040, 0x0001, "ScheduledAE", 16, C, "DT_STR", "---"),
            (0x0040, 0x0002, "StartDate", 8, D, "DT_DATE", "OBR.7.DATE|TQ1.7.DATE"),
            (0x0040, 0x0003, "StartTime", 16, C, "DT_TIME", "OBR.7.TIME|TQ1.7.TIME"),
            (0x0040, 0x0006, "PerfPhysician", 64, C, "DT_STR", "---"),
            (0x0040, 0x0007, "SchedPSDescription", 64, C, "DT_STR", "---"),
            (0x0040, 0x0009, "SchedPSID", 16, C, "DT_STR", "OBR.4"),
            (0x0040, 0x0010, "SchedStationName", 16, C, "DT_STR", "OBR.24"),
            (0x0040, 0x0011, "SchedPSLocation", 16, C, "DT_STR", "---"),
            (0x0040, 0x0012, "PreMedication", 64, C, "DT_STR", "---"),
            (0x0040, 0x0400, "SchedPSComments", 64, C, "DT_STR", "---"),
            (0x0040, 0x0100, "-----", 0, C, "DT_ENDSEQUENCE", "---"),
            (0x0040, 0x1001, "ReqProcID", 16, C, "DT_STR", "OBR.4.0"),
            (0x0040, 0x1003, "ReqProcPriority", 64, C, "DT_STR", "OBR.27"),
        ]))


def sqliteEngine(testCase):
    """A plain SQLAlchemy engine on a new SQLite file in a mktemp() folder."""
    folder = testCase.mktemp()
    os.makedirs(folder)
    engine = create_engine("sqlite:///" + os.path.abspath(os.path.join(folder, "index.db3")))
    testCase.addCleanup(engine.dispose)
    return engine


BOOKKEEPING = ["AccessTime", "qTimeStamp", "qFlags", "qSpare"]


class BuildTablesTests(unittest.TestCase):
    """buildTables on Conquest's default layout, created in a real SQLite file."""

    def setUp(self):
        self.layout = conquestLayout()
        self.metadata = MetaData()
        self.tables = buildTables(self.layout, TABLE_NAMES, self.metadata)
        self.engine = sqliteEngine(self)
        self.metadata.create_all(self.engine)
        self.inspector = inspect(self.engine)

    def columnsOf(self, tableName):
        return {c["name"]: c for c in self.inspector.get_columns(tableName)}

    def indexesOf(self, tableName):
        """Column indexes (the inspector skips expression indexes, with a warning)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SAWarning)
            return {tuple(i["column_names"]): bool(i["unique"])
                    for i in self.inspector.get_indexes(tableName)}

    def test_tableNames(self):
        self.assertEqual(sorted(self.inspector.get_table_names()), sorted(TABLE_NAMES.values()))
        self.assertEqual(self.tables.image.name, "DICOMImages")

    def test_columnsInLayoutOrderThenBookkeeping(self):
        """Each table has the layout's names in order, then Conquest's
        bookkeeping columns; the image table also has the file location."""
        for level in ("patient", "study", "series"):
            names = [c.name for c in getattr(self.layout, level)]
            self.assertEqual(list(self.columnsOf(TABLE_NAMES[level])), names + BOOKKEEPING)
        names = [c.name for c in self.layout.image]
        self.assertEqual(list(self.columnsOf("DICOMImages")),
                         names + BOOKKEEPING + ["ObjectFile", "DeviceName"])

    def test_types(self):
        """Strings of the dicom.sql length; dates as 8 characters; integer
        bookkeeping."""
        columns = self.columnsOf("DICOMImages")
        self.assertEqual(columns["SOPInstanceUID"]["type"].length, 64)
        self.assertEqual(columns["ImageType"]["type"].length, 128)
        self.assertEqual(columns["ImageDate"]["type"].length, 8)
        self.assertEqual(columns["ObjectFile"]["type"].length, 255)
        self.assertEqual(columns["DeviceName"]["type"].length, 32)
        self.assertEqual(columns["qSpare"]["type"].length, 64)
        self.assertEqual(str(columns["AccessTime"]["type"]), "INTEGER")

    def test_worklistSkipsSequenceMarkers(self):
        columns = list(self.columnsOf("DICOMWorkList"))
        self.assertNotIn("-----", columns)
        self.assertEqual(columns[:2], ["AccessionNumber", "PatientID"])
        self.assertIn("SchedPSComments", columns)
        self.assertEqual(len(columns), len(self.layout.worklist) - 2 + len(BOOKKEEPING))

    def test_indexes(self):
        """Unique keys, link columns and the usual search columns."""
        self.assertEqual(self.indexesOf("DICOMPatients"),
                         {("PatientID",): True, ("PatientName",): False})
        self.assertEqual(self.indexesOf("DICOMStudies"),
                         {("StudyInstanceUID",): True, ("PatientID",): False,
                          ("PatientName",): False, ("StudyDate",): False,
                          ("AccessionNumber",): False})
        self.assertEqual(self.indexesOf("DICOMSeries"),
                         {("SeriesInstanceUID",): True, ("StudyInstanceUID",): False,
                          ("Modality",): False, ("SeriesPat",): False})
        self.assertEqual(self.indexesOf("DICOMImages"),
                         {("SOPInstanceUID",): True, ("SeriesInstanceUID",): False,
                          ("ImagePat",): False})
        self.assertEqual(self.indexesOf("DICOMWorkList"),
                         {("AccessionNumber",): False, ("PatientID",): False,
                          ("PatientName",): False, ("StartDate",): False})

    def test_keywordColumnNames(self):
        """"Rows" and "Columns" are quoted by SQLAlchemy and round-trip."""
        image = self.tables.image
        with self.engine.begin() as connection:
            connection.execute(insert(image).values(
                SOPInstanceUID="1.2.3", Rows="512", Columns="256"))
            row = connection.execute(
                select(image.c.Rows, image.c.Columns).where(image.c.Rows == "512")).one()
        self.assertEqual(tuple(row), ("512", "256"))

    def test_createIsIdempotent(self):
        """Creating again (every startup) keeps the existing rows."""
        with self.engine.begin() as connection:
            connection.execute(insert(self.tables.patient).values(PatientID="P1"))
        metadata = MetaData()
        buildTables(self.layout, TABLE_NAMES, metadata)
        metadata.create_all(self.engine)
        with self.engine.connect() as connection:
            self.assertEqual(connection.execute(
                select(self.tables.patient.c.PatientID)).scalars().all(), ["P1"])


class SchemaChangeLogTests(unittest.TestCase):
    """The changes the start makes to pacs' own tables are logged: an
    upgrade from 57a0dc3 added PendingFiles.ReplacedDevice/ReplacedFile and
    created PacsDeletes, PacsMoves ... without a line."""

    def setUp(self):
        self.engine = create_engine("sqlite://")
        self.log = Logger(namespace="test")

    def table(self, metadata, *extra):
        return Table("PendingFiles", metadata, SQLColumn("DeviceName", String(32)), *extra)

    def messages(self, change):
        with capturedLogs() as events, self.engine.begin() as connection:
            change(connection)
        return [formatEvent(event) for event in events]

    def test_aColumnAddedIsLogged(self):
        self.table(MetaData()).create(self.engine)
        newer = self.table(MetaData(), *(SQLColumn(name, String(32), nullable=False, default="", server_default="")
                                         for name in ("ReplacedDevice", "ReplacedFile")))
        self.assertEqual(self.messages(lambda connection: upgradeTable(connection, newer, self.log)), [
            "Table PendingFiles lacked ReplacedDevice, ReplacedFile (made by an earlier pacs release): added"])
        self.assertEqual(self.messages(lambda connection: upgradeTable(connection, newer, self.log)), [])

    def test_aTableCreatedIsLogged(self):
        metadata = MetaData()
        self.table(metadata)
        Table("PacsDeletes", metadata, SQLColumn("SOPInstanceUID", String(64)))
        metadata.tables["PendingFiles"].create(self.engine)
        self.assertEqual(self.messages(lambda connection: createMissingTables(connection, metadata, self.log)), [
            "Created the table(s) PacsDeletes the index database lacked (a new database, or one of an earlier "
            "release)"])
        self.assertEqual(self.messages(lambda connection: createMissingTables(connection, metadata, self.log)), [])
        self.assertTrue(inspect(self.engine).has_table("PacsDeletes"))


class ShippedLayoutTests(unittest.TestCase):
    """The helper above is the dicom.sql this project ships."""

    def test_sameAsEtcDicomSql(self):
        path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "etc", "dicom.sql")
        shipped = DatabaseLayout.fromFile(path)
        for level in TABLE_NAMES:
            self.assertEqual(getattr(shipped, level), getattr(conquestLayout(), level))


class LayoutErrorTests(unittest.TestCase):
    """Hand-edited dicom.sql files that cannot become tables."""

    def test_duplicateColumn(self):
        layout = conquestLayout()
        layout.series.insert(3, Column(0x0008, 0x0060, "modality", 16, "SQL_C_CHAR", "DT_STR"))
        error = self.assertRaises(ValueError, buildTables, layout, TABLE_NAMES, MetaData())
        self.assertIn("DICOMSeries", str(error))
        self.assertIn("Modality", str(error))

    def test_columnClashingWithBookkeeping(self):
        layout = conquestLayout()
        layout.image.insert(1, Column(0x0009, 0x0010, "ObjectFile", 64, "SQL_C_CHAR", "DT_STR"))
        error = self.assertRaises(ValueError, buildTables, layout, TABLE_NAMES, MetaData())
        self.assertIn("DICOMImages", str(error))
        self.assertIn("ObjectFile", str(error))

    def test_emptyLevel(self):
        layout = conquestLayout()
        layout.study = []
        error = self.assertRaises(ValueError, buildTables, layout, TABLE_NAMES, MetaData())
        self.assertIn("DICOMStudies", str(error))
