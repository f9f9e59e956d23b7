"""Tests for pacscore.db.query: C-FIND identifiers as SQL on the index.

Every test runs on a fresh SQLite file holding the small archive below,
indexed with the shipped etc/dicom.sql.
"""

import os
from dataclasses import replace

from sqlalchemy import event, text, update
from twisted.logger import Logger
from twisted.trial import unittest

from pacscore.config.dicomsql import Column, DatabaseLayout
from pacscore.config.ini import DicomIni
from pacscore.config.loader import Configuration
from pacscore.db.index import ImageRecord, Index
from pacscore.db import query as querymodule
from pacscore.db.query import LEVELS, IndexQuery, Instance, QueryKey
from pacscore.db.rawtext import RAW_LEFT
from pacscore.dicom.paging import MOST
from tests.pacscore.db.test_writer import sqliteEngine
from tests.timezones import inZone

DICOM_SQL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "etc", "dicom.sql")

PATIENT_ID, PATIENT_NAME, BIRTH_DATE, SEX = 0x00100020, 0x00100010, 0x00100030, 0x00100040
STUDY_UID, STUDY_DATE, STUDY_TIME = 0x0020000D, 0x00080020, 0x00080030
ACCESSION, STUDY_DESCRIPTION = 0x00080050, 0x00081030
MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY = 0x00080061, 0x00080062
SERIES_UID, SERIES_NUMBER, MODALITY = 0x0020000E, 0x00200011, 0x00080060
SOP_UID, SOP_CLASS, IMAGE_NUMBER, IMAGE_TIME = 0x00080018, 0x00080016, 0x00200013, 0x00080033
IMAGE_TYPE, ECHO_NUMBERS, ACQ_DATE_TIME = 0x00080008, 0x00180086, 0x0008002A
PATIENT_STUDIES, PATIENT_SERIES, PATIENT_INSTANCES = 0x00201200, 0x00201202, 0x00201204
STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES = 0x00201206, 0x00201208, 0x00201209
SEQUENCE = 0x00081110  # ReferencedStudySequence

CT, MR, US = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.6.1"
SC = "1.2.840.10008.5.1.4.1.1.7"

PATIENTS = {
    "PAT1": {PATIENT_NAME: "DOE^JOHN", BIRTH_DATE: "19700101", SEX: "M"},
    "PAT2": {PATIENT_NAME: "Müller^Jürgen", BIRTH_DATE: "19651231", SEX: "M"},
    "PAT3": {PATIENT_NAME: "山田^太郎", BIRTH_DATE: "", SEX: "F"},
    "PAT_4": {PATIENT_NAME: "O'BRIEN^MÄRY", BIRTH_DATE: "19800229", SEX: "F"},
    "PATX4": {PATIENT_NAME: "DOEX^JANE", BIRTH_DATE: "19900101", SEX: "F"},
}
STUDIES = {  # uid: (patient, attributes)
    "1.1": ("PAT1", {STUDY_DATE: "20240102", STUDY_TIME: "101500", ACCESSION: "ACC1",
                     STUDY_DESCRIPTION: "CT HEAD"}),
    "1.2": ("PAT1", {STUDY_DATE: "20230615", STUDY_TIME: "2359", ACCESSION: "ACC2",
                     STUDY_DESCRIPTION: "MR KNEE"}),
    "2.1": ("PAT2", {STUDY_DATE: "20240301", STUDY_TIME: "130059.5", ACCESSION: "A_1",
                     STUDY_DESCRIPTION: "100% _done_"}),
    "3.1": ("PAT3", {STUDY_DATE: "", STUDY_TIME: "", ACCESSION: "A%1",
                     STUDY_DESCRIPTION: "x' OR '1'='1"}),
    "4.1": ("PAT_4", {STUDY_DATE: "20240102", STUDY_TIME: "080000", ACCESSION: "AX1",
                      STUDY_DESCRIPTION: "1000 XdoneX"}),
    "5.1": ("PATX4", {STUDY_DATE: "19991231", STUDY_TIME: "1300", ACCESSION: "ACC5",
                      STUDY_DESCRIPTION: "DX CHEST"}),
}
SERIES = {  # uid: (study, attributes)
    "1.1.1": ("1.1", {MODALITY: "CT", SERIES_NUMBER: "1"}),
    "1.1.2": ("1.1", {MODALITY: "MR", SERIES_NUMBER: "2"}),
    "1.2.1": ("1.2", {MODALITY: "MR", SERIES_NUMBER: "1"}),
    "2.1.1": ("2.1", {MODALITY: "US", SERIES_NUMBER: "1"}),
    "2.1.2": ("2.1", {MODALITY: "PT", SERIES_NUMBER: "2"}),
    "3.1.1": ("3.1", {MODALITY: "", SERIES_NUMBER: "1"}),
    "4.1.1": ("4.1", {MODALITY: "CTX", SERIES_NUMBER: "1"}),
    "5.1.1": ("5.1", {MODALITY: "DX", SERIES_NUMBER: "1"}),
}
IMAGES = {  # uid: (series, attributes)
    "1.1.1.1": ("1.1.1", {IMAGE_NUMBER: "10", SOP_CLASS: CT,
                          IMAGE_TYPE: "ORIGINAL\\PRIMARY\\AXIAL"}),
    "1.1.1.2": ("1.1.1", {IMAGE_NUMBER: "2", SOP_CLASS: CT,
                          IMAGE_TYPE: "ORIGINAL\\PRIMARY\\AXIAL"}),
    "1.1.1.3": ("1.1.1", {IMAGE_NUMBER: "1", SOP_CLASS: CT,
                          IMAGE_TYPE: "DERIVED\\PRIMARYX\\AXIAL"}),
    "1.1.2.1": ("1.1.2", {IMAGE_NUMBER: "1", SOP_CLASS: MR, IMAGE_TYPE: "ORIGINAL\\PRIMARY",
                          ECHO_NUMBERS: "1\\2"}),
    "1.1.2.2": ("1.1.2", {IMAGE_NUMBER: "2", SOP_CLASS: SC, IMAGE_TYPE: "ORIGINAL\\PRIMARY",
                          ECHO_NUMBERS: "12"}),
    "1.2.1.1": ("1.2.1", {IMAGE_NUMBER: "1", SOP_CLASS: MR, IMAGE_TYPE: "PRIMARY",
                          ECHO_NUMBERS: "2"}),
    "2.1.1.1": ("2.1.1", {IMAGE_NUMBER: "", SOP_CLASS: US, IMAGE_TYPE: ""}),
    "2.1.2.1": ("2.1.2", {IMAGE_NUMBER: "1", SOP_CLASS: CT}),
    "3.1.1.1": ("3.1.1", {IMAGE_NUMBER: "1", SOP_CLASS: SC}),
    "4.1.1.1": ("4.1.1", {IMAGE_NUMBER: "1", SOP_CLASS: CT}),
    "5.1.1.1": ("5.1.1", {IMAGE_NUMBER: "1", SOP_CLASS: CT}),
}


def archiveRecords():
    """One ImageRecord per entry of IMAGES, with its parents' attributes."""
    for sop, (series, imageAttrs) in IMAGES.items():
        study, seriesAttrs = SERIES[series]
        patient, studyAttrs = STUDIES[study]
        attrs = {PATIENT_ID: patient, **PATIENTS[patient], STUDY_UID: study, **studyAttrs,
                 SERIES_UID: series, **seriesAttrs, SOP_UID: sop, **imageAttrs}
        yield ImageRecord(attrs, "MAG0", f"{patient}/{sop}.dcm")


def shippedLayout():
    return DatabaseLayout.fromFile(DICOM_SQL)


def defaultTableNames():
    """The table names of a dicom.ini without any *TableName entry."""
    ini = DicomIni.fromString("")
    return Configuration(ini, None, None, None, ".", ".", "dicom.ini").tableNames


def K(tag, vr, value="", **flags):
    return QueryKey(tag, vr, value, **flags)


class ArchiveTestCase(unittest.TestCase):
    """An Index holding the archive above, and an IndexQuery on it."""

    def makeEngine(self):
        return sqliteEngine(self)

    def makeLayout(self):
        return shippedLayout()

    def records(self):
        return archiveRecords()

    def setUp(self):
        self.engine = self.makeEngine()
        self.index = Index(self.engine, self.makeLayout(), defaultTableNames())
        self.index.metadata.drop_all(self.engine)
        self.index.createTables()
        self.index.storeMany(self.records())
        self.query = IndexQuery(self.index.tables, self.index.layout)

    def find(self, level, *keys, query=None, **options):
        with self.engine.connect() as connection:
            return (query or self.query).find(connection, level, list(keys), **options)

    def keysOf(self, level, *keys, query=None):
        """The level's unique keys of the matches, in result order."""
        tag = (PATIENT_ID, STUDY_UID, SERIES_UID, SOP_UID)[LEVELS.index(level.upper())]
        return [result[tag] for result in self.find(level, *keys, query=query)]

    def assertMatches(self, level, keys, expected, query=None):
        """``keys`` (one QueryKey or a list) select exactly ``expected``."""
        keys = [keys] if isinstance(keys, QueryKey) else keys
        self.assertEqual(sorted(self.keysOf(level, *keys, query=query)), sorted(expected))

    def instances(self, level, *keys, query=None):
        with self.engine.connect() as connection:
            return (query or self.query).instances(connection, level, list(keys))

    def statements(self):
        """A list collecting every SQL statement run from now on, names
        quoted the standard way (MySQL quotes them `so`)."""
        statements = []

        def listener(conn, cursor, statement, *rest):
            statements.append(statement.replace("`", '"'))
        event.listen(self.engine, "before_cursor_execute", listener)
        self.addCleanup(event.remove, self.engine, "before_cursor_execute", listener)
        return statements


class TagMappingTests(ArchiveTestCase):
    """Keys map to columns by tag, the level's table first, then up the links."""

    def test_patientIDAtEveryLevel(self):
        """PatientID is DICOMPatients.PatientID, DICOMStudies.PatientID,
        DICOMSeries.SeriesPat, DICOMImages.ImagePat: no join needed."""
        expected = {"PATIENT": ["PAT1"], "STUDY": ["1.1", "1.2"],
                    "SERIES": ["1.1.1", "1.1.2", "1.2.1"],
                    "IMAGE": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.1", "1.1.2.2", "1.2.1.1"]}
        columns = {"PATIENT": '"DICOMPatients"."PatientID" =',
                   "STUDY": '"DICOMStudies"."PatientID" =',
                   "SERIES": '"DICOMSeries"."SeriesPat" =', "IMAGE": '"DICOMImages"."ImagePat" ='}
        for level in LEVELS:
            statements = self.statements()
            results = self.find(level, K(PATIENT_ID, "LO", "PAT1"))
            self.assertEqual(sorted(r[(PATIENT_ID, STUDY_UID, SERIES_UID, SOP_UID)[
                LEVELS.index(level)]] for r in results), expected[level])
            self.assertEqual({r[PATIENT_ID] for r in results}, {"PAT1"})
            self.assertIn(columns[level], statements[-1])
            self.assertNotIn("JOIN", statements[-1])

    def test_lowerLevelKeys(self):
        """A C-FIND ignores keys of the levels below; with ``below`` (QIDO-RS)
        they select the entities holding a match, answered without a value."""
        def keys(level, key, below):
            with self.engine.connect() as connection:
                found = self.query.find(connection, level, [key], below=below)
            tag = (STUDY_UID, SERIES_UID)[LEVELS.index(level) - 1]
            self.assertFalse(below and found and key.tag in found[0])
            return sorted(result[tag] for result in found)
        everyStudy = keys("STUDY", K(STUDY_UID, "UI"), False)
        self.assertEqual(keys("STUDY", K(MODALITY, "CS", "MR"), False), everyStudy)
        self.assertEqual(keys("STUDY", K(MODALITY, "CS", "MR"), True), ["1.1", "1.2"])
        self.assertEqual(keys("STUDY", K(SOP_UID, "UI", "1.1.2.1"), True), ["1.1"])
        self.assertEqual(keys("SERIES", K(SOP_UID, "UI", "1.1.2.1"), True), ["1.1.2"])
        self.assertEqual(keys("STUDY", K(SERIES_UID, "UI", "9.9"), True), [])

    def test_lowerLevelKeysTogether(self):
        """With ``below`` (QIDO-RS) the keys of the levels below must all
        match one series (and one of its images)."""
        keys = self.belowFinder()
        ct, mr = K(MODALITY, "CS", "CT"), K(MODALITY, "CS", "MR")
        self.assertEqual(keys("STUDY", ct, K(SERIES_UID, "UI", "1.1.2")), [])
        self.assertEqual(keys("STUDY", mr, K(SERIES_UID, "UI", "1.1.2")), ["1.1"])
        self.assertEqual(keys("STUDY", ct, K(SOP_UID, "UI", "1.1.2.1")), [])
        self.assertEqual(keys("STUDY", mr, K(SOP_UID, "UI", "1.1.2.1")), ["1.1"])
        self.assertEqual(keys("STUDY", K(SERIES_UID, "UI", "1.1.1"), K(SOP_UID, "UI", "1.1.2.1")), [])
        self.assertEqual(keys("STUDY", ct, K(ECHO_NUMBERS, "IS", "12")), [])
        self.assertEqual(keys("STUDY", mr, K(ECHO_NUMBERS, "IS", "12")), ["1.1"])

    def test_lowerLevelMultiValuedKeys(self):
        """With ``below`` (QIDO-RS) a key on a multi-valued column of a level
        below (ImageType, EchoNumbers) matches any of its values, as at its
        own level."""
        keys = self.belowFinder()
        self.assertEqual(keys("STUDY", K(IMAGE_TYPE, "CS", "ORIGINAL")), ["1.1"])
        self.assertEqual(keys("SERIES", K(IMAGE_TYPE, "CS", "ORIGINAL")), ["1.1.1", "1.1.2"])
        self.assertEqual(keys("SERIES", K(IMAGE_TYPE, "CS", "DERIVED")), ["1.1.1"])
        self.assertEqual(keys("STUDY", K(MODALITY, "CS", "MR"), K(IMAGE_TYPE, "CS", "PRIMARY")),
                         ["1.1", "1.2"])
        self.assertEqual(keys("STUDY", K(ECHO_NUMBERS, "IS", "2")), ["1.1", "1.2"])
        self.assertEqual(keys("SERIES", K(ECHO_NUMBERS, "IS", "1")), ["1.1.2"])

    def belowFinder(self):
        """``keys(level, *keys)``: the sorted UIDs QIDO-RS's find answers."""
        def keys(level, *keys):
            with self.engine.connect() as connection:
                found = self.query.find(connection, level, keys, below=True)
            tag = (STUDY_UID, SERIES_UID)[LEVELS.index(level) - 1]
            return sorted(result[tag] for result in found)
        return keys

    def test_upperLevelKeysAtImageLevel(self):
        """Study and patient keys at IMAGE level join series and studies;
        PatientName comes from the denormalized DICOMStudies column."""
        statements = self.statements()
        results = self.find("IMAGE", K(STUDY_DATE, "DA", "20240102"), K(PATIENT_NAME, "PN", "DOE*"),
                            K(MODALITY, "CS", "MR"), K(STUDY_UID, "UI"), K(SOP_CLASS, "UI"))
        self.assertEqual(results, [
            {STUDY_DATE: "20240102", PATIENT_NAME: "DOE^JOHN", MODALITY: "MR",
             STUDY_UID: "1.1", SOP_CLASS: MR, SOP_UID: "1.1.2.1"},
            {STUDY_DATE: "20240102", PATIENT_NAME: "DOE^JOHN", MODALITY: "MR",
             STUDY_UID: "1.1", SOP_CLASS: SC, SOP_UID: "1.1.2.2"}])
        [statement] = statements
        self.assertIn('JOIN "DICOMSeries"', statement)
        self.assertIn('JOIN "DICOMStudies"', statement)
        self.assertNotIn("DICOMPatients", statement)

    def test_noJoinForOwnColumns(self):
        statements = self.statements()
        self.assertMatches("IMAGE", [K(SERIES_UID, "UI", "1.1.2"), K(PATIENT_ID, "LO"),
                                     K(SOP_CLASS, "UI", MR)], ["1.1.2.1"])
        self.assertNotIn("JOIN", statements[-1])

    def test_upperKeyValuesReturnedWithUniversalMatching(self):
        """Universal keys of upper levels are returned from a LEFT join."""
        results = self.find("SERIES", K(SERIES_UID, "UI", "1.2.1"), K(STUDY_DESCRIPTION, "LO"),
                            K(PATIENT_NAME, "PN", "*"), K(STUDY_UID, "UI"))
        self.assertEqual(results, [{SERIES_UID: "1.2.1", STUDY_DESCRIPTION: "MR KNEE",
                                    PATIENT_NAME: "DOE^JOHN", STUDY_UID: "1.2"}])

    def test_levelKeyAlwaysReturned(self):
        self.assertEqual(self.find("SERIES", K(MODALITY, "CS", "US")),
                         [{MODALITY: "US", SERIES_UID: "2.1.1"}])
        self.assertEqual(self.find("PATIENT", K(PATIENT_NAME, "PN", "山田*")),
                         [{PATIENT_NAME: "山田^太郎", PATIENT_ID: "PAT3"}])

    def test_lowerLevelAndUnknownTagsIgnored(self):
        """Keys of a lower level or without a column neither match nor come back."""
        results = self.find("STUDY", K(PATIENT_ID, "LO", "PAT1"), K(MODALITY, "CS", "XX"),
                            K(SOP_UID, "UI", "9.9"), K(0x00091010, "LO", "nothing"))
        self.assertEqual(results, [{PATIENT_ID: "PAT1", STUDY_UID: "1.1"},
                                   {PATIENT_ID: "PAT1", STUDY_UID: "1.2"}])

    def test_sequenceIgnored(self):
        results = self.find("STUDY", K(STUDY_UID, "UI", "2.1"), K(SEQUENCE, "SQ", "x"))
        self.assertEqual(results, [{STUDY_UID: "2.1"}])

    def test_unmatchedKeys(self):
        """The keys with values that find leaves unmatched (a C-FIND answers 0xFF01):
        lower levels, no column, counts, sequences whose items hold values;
        not a Private Creator, which is echoed, not matched."""
        keys = [K(PATIENT_ID, "LO", "PAT1"), K(STUDY_UID, "UI", ""), K(MODALITY, "CS", "XX"),
                K(0x00091010, "LO", "nothing"), K(0x00091011, "LO", "*"), K(0x00201208, "IS", "3"),
                K(SEQUENCE, "SQ", ""), QueryKey(0x00081032, "SQ", "", itemValues=True),
                K(0x00090010, "LO", "GEMS_IDEN_01"), K(0x001100FF, "LO", "CREATOR")]
        with self.engine.connect() as connection:
            self.assertEqual(self.query.unmatchedKeys(connection, "STUDY", keys),
                             [MODALITY, 0x00091010, 0x00201208, 0x00081032])
            self.assertEqual(self.query.unmatchedKeys(connection, "SERIES", keys[:3]), [])

    def test_oneEntityPerMatch(self):
        """A study with 2 series and 5 images is one result at STUDY level."""
        self.assertEqual(self.keysOf("STUDY"), ["1.1", "1.2", "2.1", "3.1", "4.1", "5.1"])
        self.assertEqual(len(self.keysOf("IMAGE")), len(IMAGES))

    def test_nullIsEmpty(self):
        with self.engine.begin() as connection:
            studies = self.index.tables.study
            connection.execute(update(studies).where(studies.c.StudyInstanceUID == "1.2")
                               .values(StudyDescription=None))
        self.assertEqual(self.find("STUDY", K(STUDY_UID, "UI", "1.2"), K(STUDY_DESCRIPTION, "LO")),
                         [{STUDY_UID: "1.2", STUDY_DESCRIPTION: ""}])

    def test_orphansKeptByUniversalKeys(self):
        """Upper tables only returning values are LEFT joined: a series
        whose study row is missing is still found (with empty values),
        unless a key of the study table has to match."""
        with self.engine.begin() as connection:
            studies = self.index.tables.study
            connection.execute(studies.delete().where(studies.c.StudyInstanceUID == "1.2"))
        self.assertEqual(self.find("SERIES", K(SERIES_UID, "UI", "1.2.1"), K(STUDY_DATE, "DA")),
                         [{SERIES_UID: "1.2.1", STUDY_DATE: ""}])
        self.assertMatches("SERIES", [K(SERIES_UID, "UI", "1.2.1"), K(STUDY_DATE, "DA", "2*")], [])

    def test_levelNames(self):
        self.assertEqual(self.keysOf("series", K(MODALITY, "CS", "US")), ["2.1.1"])
        with self.engine.connect() as connection:
            self.assertRaises(ValueError, self.query.find, connection, "FRAME", [])
            self.assertRaises(ValueError, self.query.instances, connection, None, [])


class ParentTableJoinTests(ArchiveTestCase):
    """A layout without the denormalized patient columns (PatientName and
    PatientSex in DICOMStudies, SeriesPat, ImagePat): patient keys at lower
    levels join up the links, counts too."""

    def makeLayout(self):
        layout = shippedLayout()
        drop = ("PatientSex", "PatientName", "SeriesPat", "ImagePat")
        return replace(layout, **{level: [c for c in getattr(layout, level) if c.name not in drop]
                                  for level in ("study", "series", "image")})

    def test_joinsUpToPatients(self):
        statements = self.statements()
        results = self.find("IMAGE", K(SEX, "CS", "F"), K(PATIENT_NAME, "PN"),
                            K(SERIES_UID, "UI"))
        self.assertEqual(sorted((r[SOP_UID], r[PATIENT_NAME], r[SEX], r[SERIES_UID])
                                for r in results),
                         [("3.1.1.1", "山田^太郎", "F", "3.1.1"),
                          ("4.1.1.1", "O'BRIEN^MÄRY", "F", "4.1.1"),
                          ("5.1.1.1", "DOEX^JANE", "F", "5.1.1")])
        self.assertIn('JOIN "DICOMPatients"', statements[-1])

    def test_patientIDFromStudies(self):
        statements = self.statements()
        self.assertMatches("IMAGE", K(PATIENT_ID, "LO", "PAT2"), ["2.1.1.1", "2.1.2.1"])
        self.assertIn('"DICOMStudies"."PatientID" =', statements[-1])

    def test_patientCountsThroughLinks(self):
        results = self.find("SERIES", K(PATIENT_ID, "LO", "PAT1"), K(PATIENT_STUDIES, "IS"),
                            K(PATIENT_SERIES, "IS"), K(PATIENT_INSTANCES, "IS"),
                            K(PATIENT_NAME, "PN"))
        self.assertEqual([(r[SERIES_UID], r[PATIENT_STUDIES], r[PATIENT_SERIES],
                           r[PATIENT_INSTANCES], r[PATIENT_NAME]) for r in results],
                         [("1.1.1", "2", "3", "6", "DOE^JOHN"),
                          ("1.1.2", "2", "3", "6", "DOE^JOHN"),
                          ("1.2.1", "2", "3", "6", "DOE^JOHN")])
        [result] = self.find("IMAGE", K(SOP_UID, "UI", "2.1.1.1"), K(PATIENT_INSTANCES, "IS"),
                             K(PATIENT_ID, "LO"))
        self.assertEqual(result, {SOP_UID: "2.1.1.1", PATIENT_INSTANCES: "2", PATIENT_ID: "PAT2"})


class MatchingTests(ArchiveTestCase):
    """PS3.4 C.2.2.2 matching, value type by value type."""

    def test_universal(self):
        for value in ("", "*", "**", " * "):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), list(PATIENTS))
            self.assertMatches("STUDY", K(STUDY_DATE, "DA", value), list(STUDIES))
            self.assertMatches("STUDY", K(STUDY_UID, "UI", value), list(STUDIES))

    def test_emptyValueMatching(self):
        """Two quotation marks in a key asking for Empty Value Matching (a
        C-FIND's) match the empty values only (PS3.4 C.2.2.2.7), not every
        one as an empty key does; in any other key (a retrieve's, a
        delete's) they are the value, matched as it is."""
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", '""', emptyValueMatching=True), ["3.1"])
        self.assertMatches("SERIES", K(MODALITY, "CS", '""', emptyValueMatching=True), ["3.1.1"])
        self.assertMatches("PATIENT", K(BIRTH_DATE, "DA", ' "" ', emptyValueMatching=True), ["PAT3"])
        self.assertMatches("PATIENT", K(PATIENT_ID, "UI", '""', emptyValueMatching=True), [])
        self.assertMatches("SERIES", K(MODALITY, "CS", '""'), [])
        self.assertMatches("PATIENT", K(PATIENT_ID, "LO", '""'), [])

    def test_uidSingleAndList(self):
        self.assertMatches("STUDY", K(STUDY_UID, "UI", "1.2"), ["1.2"])
        self.assertMatches("STUDY", K(STUDY_UID, "UI", "1.2\\2.1\\9.9"), ["1.2", "2.1"])
        self.assertMatches("IMAGE", K(SOP_UID, "UI", "1.1.1.1\\1.1.2.2"), ["1.1.1.1", "1.1.2.2"])
        self.assertMatches("STUDY", K(STUDY_UID, "UI", "1.*"), [])
        self.assertMatches("STUDY", K(STUDY_UID, "UI", "1.?"), [])
        self.assertMatches("STUDY", K(STUDY_UID, "UI", "1.1 "), ["1.1"])

    def test_uidListAtUpperLevel(self):
        self.assertMatches("SERIES", K(STUDY_UID, "UI", "1.1\\2.1"),
                           ["1.1.1", "1.1.2", "2.1.1", "2.1.2"])

    def test_dateSingleValue(self):
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "20240102"), ["1.1", "4.1"])
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "2024.01.02"), ["1.1", "4.1"])
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "20240103"), [])

    def test_dateRanges(self):
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "20230101-20240102"), ["1.1", "1.2", "4.1"])
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "2023.01.01-2024.01.01"), ["1.2"])
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "20240102-"), ["1.1", "2.1", "4.1"])
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "-20231231"), ["1.2", "5.1"])
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "20240201-20240101"), [])

    def test_emptyDatesNeverMatchRanges(self):
        """Study 3.1 has no StudyDate: universal matching finds it, no range does."""
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "-29991231"),
                           ["1.1", "1.2", "2.1", "4.1", "5.1"])
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "00000101-"),
                           ["1.1", "1.2", "2.1", "4.1", "5.1"])
        self.assertMatches("PATIENT", K(BIRTH_DATE, "DA", "-20000101"),
                           ["PAT1", "PAT2", "PAT_4", "PATX4"])

    def test_dateList(self):
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "20230615\\20240301"), ["1.2", "2.1"])
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "-19991231\\20240301-"), ["2.1", "5.1"])

    def test_dateAtLowerLevels(self):
        self.assertMatches("SERIES", K(STUDY_DATE, "DA", "-20231231"), ["1.2.1", "5.1.1"])
        self.assertMatches("IMAGE", [K(STUDY_DATE, "DA", "20240102"), K(SERIES_UID, "UI", "4.1.1")],
                           ["4.1.1.1"])

    def test_timeSingleValue(self):
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "101500"), ["1.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "10:15:00"), ["1.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "1015"), ["1.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "101501"), [])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "130059"), [])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "130059.50"), ["2.1"])

    def test_midnightNeverMatchesAnEmptyTime(self):
        """An empty stored time is no time, not 00:00 (PS3.4 C.2.2.2.1)."""
        for midnight in ("000000", "0000", "00", "000000-000000"):
            self.assertEqual(self.keysOf("STUDY", K(STUDY_TIME, "TM", midnight)), [], midnight)

    def test_timeSingleValueShortForm(self):
        """A stored 1300 (13:00, a valid short TM) is the same time as 130000."""
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "130000"), ["5.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "13:00:00.000"), ["5.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "13"), ["5.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "235900\\080000"), ["1.2", "4.1"])

    def test_timeRanges(self):
        """The upper bound compares the stored value's prefix: 1300 holds 13:00:59.5."""
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "1000-1300"), ["1.1", "2.1", "5.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "10:00-13:00"), ["1.1", "2.1", "5.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "-1259"), ["1.1", "4.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "-12"), ["1.1", "4.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "-13"), ["1.1", "2.1", "4.1", "5.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "1300-"), ["1.2", "2.1", "5.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "130059.6-"), ["1.2"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "130059.4-130059.5"), ["2.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "-1300\\2300-"),
                           ["1.1", "1.2", "2.1", "4.1", "5.1"])

    def test_lowerBoundWithZeroFraction(self):
        """101500.000- includes 10:15:00 itself (PS3.4 C.2.2.2.5), stored as 101500."""
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "101500.000-"), ["1.1", "1.2", "2.1", "5.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "130059.500-"), ["1.2", "2.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "130000.0-130000"), ["5.1"])

    def test_shortFormTimesInRanges(self):
        """A stored 1300 (13:00, a valid short TM) is 130000 for a lower bound."""
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "130000-"), ["1.2", "2.1", "5.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "130000-130100"), ["2.1", "5.1"])
        self.assertMatches("STUDY", K(STUDY_TIME, "TM", "130001-"), ["1.2", "2.1"])

    def test_exactText(self):
        self.assertMatches("STUDY", K(ACCESSION, "SH", "ACC1"), ["1.1"])
        self.assertMatches("STUDY", K(ACCESSION, "SH", "acc1"), [])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "CT HEAD"), ["1.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "CT"), [])
        self.assertMatches("SERIES", K(MODALITY, "CS", "CT"), ["1.1.1"])

    def test_keyCutAtNul(self):
        """A key holding a NUL is cut there, as the stored values are, on
        every database (PostgreSQL refuses text holding one)."""
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "CT HEAD\0X"), ["1.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "CT\0HEAD"), [])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "*HEA\0D"), [])
        self.assertMatches("STUDY", K(STUDY_UID, "UI", "1.1\0.9"), ["1.1"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "DOE^JOHN\0X"), ["PAT1"])

    def test_wildcards(self):
        self.assertMatches("STUDY", K(ACCESSION, "SH", "ACC*"), ["1.1", "1.2", "5.1"])
        self.assertMatches("STUDY", K(ACCESSION, "SH", "A??"), ["2.1", "3.1", "4.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "*HEAD"), ["1.1"])
        self.assertMatches("SERIES", K(MODALITY, "CS", "CT*"), ["1.1.1", "4.1.1"])
        self.assertMatches("PATIENT", K(PATIENT_ID, "LO", "PAT?4"), ["PAT_4", "PATX4"])

    def test_literalPercentAndUnderscore(self):
        """% and _ are ordinary characters in DICOM values."""
        self.assertMatches("PATIENT", K(PATIENT_ID, "LO", "PAT_4"), ["PAT_4"])
        self.assertMatches("PATIENT", K(PATIENT_ID, "LO", "PAT_*"), ["PAT_4"])
        self.assertMatches("STUDY", K(ACCESSION, "SH", "A_1"), ["2.1"])
        self.assertMatches("STUDY", K(ACCESSION, "SH", "A%1"), ["3.1"])
        self.assertMatches("STUDY", K(ACCESSION, "SH", "A%*"), ["3.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "100%*"), ["2.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "*_done_"), ["2.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "100?*"), ["2.1", "4.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "*?done?"), ["2.1", "4.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "100%"), [])

    def test_injectionAttempts(self):
        """Quotes, SQL and LIKE metacharacters are only data."""
        for value in ("x' OR '1'='1", "' OR ''='", "%", "_", "%%", "\" OR 1=1 --",
                      "'; DROP TABLE DICOMPatients; --"):
            for vr in ("PN", "LO", "UI", "DA", "TM", "CS"):
                self.assertMatches("PATIENT", K(PATIENT_NAME, vr, value), [])
                self.assertMatches("STUDY", K(ACCESSION, vr, value), [])
            self.assertMatches("IMAGE", K(IMAGE_TYPE, "CS", value), [])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "x' OR '1'='1"), ["3.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "*' OR '1'='1"), ["3.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "*' OR '*"), ["3.1"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "O'BRIEN*"), ["PAT_4"])
        self.assertEqual(len(self.keysOf("PATIENT")), len(PATIENTS))

    def test_multipleValues(self):
        self.assertMatches("SERIES", K(MODALITY, "CS", "CT\\US"), ["1.1.1", "2.1.1"])
        self.assertMatches("SERIES", K(MODALITY, "CS", "US\\C*"), ["1.1.1", "2.1.1", "4.1.1"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "DOE^JOHN\\山田*"), ["PAT1", "PAT3"])

    def test_manyValues(self):
        """Lists longer than SQLite's expressions may be deep (1000): the
        values without wildcards in one IN, the others ORed as a balanced
        tree (a PN value with a non-ASCII capital twice, a DT_MSTR value
        four times)."""
        statements = self.statements()
        ids = [f"ID{i}" for i in range(1000)]
        self.assertMatches("PATIENT", K(PATIENT_ID, "LO", "\\".join(ids + ["PAT2"])), ["PAT2"])
        self.assertIn('"DICOMPatients"."PatientID" IN (', statements[-1])
        uids = [f"9.{i}" for i in range(998)]
        self.assertMatches("STUDY", K(STUDY_UID, "UI", "\\".join(uids + ["1.2", "2.1"])), ["1.2", "2.1"])
        names = [f"MÄ{i}*" for i in range(1000)]
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "\\".join(names + ["O'BRIEN^MÄ*", "DOE^JOHN"])),
                           ["PAT1", "PAT_4"])
        types = [f"T{i}*" for i in range(1000)]
        self.assertMatches("IMAGE", K(IMAGE_TYPE, "CS", "\\".join(types + ["DERIVED"])), ["1.1.1.3"])
        dates = [f"1{i:03}0101-1{i:03}0102" for i in range(1000)]
        self.assertMatches("STUDY", K(STUDY_DATE, "DA", "\\".join(dates + ["20240301", "1999*"])), ["2.1", "5.1"])

    def test_severalKeysAllMatch(self):
        self.assertMatches("STUDY", [K(PATIENT_ID, "LO", "PAT1"), K(STUDY_DATE, "DA", "2024-")],
                           ["1.1"])
        self.assertMatches("SERIES", [K(STUDY_UID, "UI", "1.1"), K(MODALITY, "CS", "CT")],
                           ["1.1.1"])


class PersonNameTests(ArchiveTestCase):
    """PN matching is case-insensitive, Unicode values included."""

    def test_caseInsensitive(self):
        for value in ("DOE^JOHN", "doe^john", "Doe^John", "DOE^*", "doe^j*", "d?e^j*", "*^JOHN"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT1"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "DO*"), ["PAT1", "PATX4"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "DOE"), [])

    def test_latin1Name(self):
        """Müller^Jürgen, as decoded from an ISO_IR 100 request."""
        for value in ("Mü*", "MÜ*", "Müller^Jürgen", "müller^jürgen", "MÜLLER^JÜRGEN",
                      "M?ller*", "*^Jürgen", "*^JÜRGEN", "mü*", "Müller*"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT2"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "Mu*"), [])

    def test_upperCaseNonAsciiLetters(self):
        """O'BRIEN^MÄRY: found in its own case and by its ASCII letters in
        any case (SQLite's lower() folds ASCII letters only)."""
        for value in ("O'BRIEN^MÄRY", "o'brien^mÄry", "*MÄRY", "*mÄry", "O'B*^MÄ*", "o'brien^märy", "*märy",
                      "o'b*^mä*"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT_4"])

    def test_mixedCaseNonAsciiLetters(self):
        """Ødegård^Åse and Дмитриев^Иван in any case (SQLite: its driver's Unicode case fold)."""
        self.index.storeMany([ImageRecord({PATIENT_ID: "PAT6", PATIENT_NAME: "Ødegård^Åse", STUDY_UID: "6.1",
                                           SERIES_UID: "6.1.1", SOP_UID: "6.1.1.1"}, "MAG0", "PAT6/6.1.1.1.dcm"),
                              ImageRecord({PATIENT_ID: "PAT7", PATIENT_NAME: "Дмитриев^Иван", STUDY_UID: "7.1",
                                           SERIES_UID: "7.1.1", SOP_UID: "7.1.1.1"}, "MAG0", "PAT7/7.1.1.1.dcm")])
        for value in ("Ødegård^Åse", "ødegård^åse", "ØDEGÅRD^ÅSE", "ødegård*", "ØDEGÅRD*", "*^åse", "?degård*"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT6"])
        for value in ("ДМИТРИЕВ^ИВАН", "дмитриев^иван", "дмитриев*", "Дмитриев*"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT7"])
        self.assertMatches("STUDY", K(PATIENT_NAME, "PN", "ødegård^åse\\doe^john"), ["1.1", "1.2", "6.1"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "odegard*"), [])

    def test_lettersWhoseLowerCaseDiffersBetweenPythonAndTheServer(self):
        """A name matches itself and its own case forms on every database:
        Python lower-cases İ to i plus a combining dot, MariaDB to i, so a
        value lowered in Python never met a column lowered by the server;
        İ's lower case is i on every database (SQLite's lower() leaves it,
        so an ASCII key's prefix ranges and match have it too)."""
        self.index.storeMany([ImageRecord({PATIENT_ID: "PAT8", PATIENT_NAME: "İLHAN^AYŞE", STUDY_UID: "8.1",
                                           SERIES_UID: "8.1.1", SOP_UID: "8.1.1.1"}, "MAG0", "PAT8/8.1.1.1.dcm"),
                              ImageRecord({PATIENT_ID: "PAT9", PATIENT_NAME: "ȾOMAS^Ƞ", STUDY_UID: "9.1",
                                           SERIES_UID: "9.1.1", SOP_UID: "9.1.1.1"}, "MAG0", "PAT9/9.1.1.1.dcm")])
        for value in ("İLHAN^AYŞE", "İlhan*", "İLHAN^AYŞE\\nobody", "*^ayşe", "ilhan^ayşe", "Ilhan^Ayşe", "ilhan*",
                      "ILHAN*", "*lhan^AY*", "ilha?^*", "?lhan*"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT8"])
        self.assertMatches("STUDY", K(PATIENT_NAME, "PN", "ilhan*\\doe^john"), ["1.1", "1.2", "8.1"])
        for value in ("ȾOMAS^Ƞ", "Ⱦomas*"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT9"])

    def test_questionMarkCoversLettersWhoseCaseFoldIsLonger(self):
        """A ``?`` covers ß and İ in a key outside ASCII, on every database:
        SQLite's fold, Python's full case fold before, made ß "ss" (two
        characters) and İ "i" with a combining dot."""
        self.index.storeMany([ImageRecord({PATIENT_ID: "PAT10", PATIENT_NAME: "Straße^Jürgen", STUDY_UID: "10.1",
                                           SERIES_UID: "10.1.1", SOP_UID: "10.1.1.1"}, "MAG0", "PAT10/10.1.1.1.dcm"),
                              ImageRecord({PATIENT_ID: "PAT8", PATIENT_NAME: "İLHAN^AYŞE", STUDY_UID: "8.1",
                                           SERIES_UID: "8.1.1", SOP_UID: "8.1.1.1"}, "MAG0", "PAT8/8.1.1.1.dcm")])
        for value in ("Stra?e^Jürgen", "STRA?E^JÜRGEN", "stra?e^j*", "Straße^Jürgen", "STRAßE^JÜRGEN", "*ß*^jür*"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT10"])
        for value in ("?LHAN^AYŞE", "?lhan^ayşe", "?LHAN*", "*^AY?E"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT8"])

    def test_trailingEmptyComponentsAndGroupsLeftOut(self):
        """PS3.5 6.2 lets a name leave out its trailing empty components and
        groups: a key with them finds a name stored without (DOE^JOHN), a
        key without finds a name stored with them, in each group, exact or
        wildcard, ASCII or not."""
        self.index.storeMany([ImageRecord({PATIENT_ID: "PAT11", PATIENT_NAME: "Retr^One^^^", STUDY_UID: "11.1",
                                           SERIES_UID: "11.1.1", SOP_UID: "11.1.1.1"}, "MAG0", "PAT11/11.1.1.1.dcm"),
                              ImageRecord({PATIENT_ID: "PAT12", PATIENT_NAME: "Yamada^Taro^^=山田^太郎^^=^^",
                                           STUDY_UID: "12.1", SERIES_UID: "12.1.1", SOP_UID: "12.1.1.1"},
                                          "MAG0", "PAT12/12.1.1.1.dcm")])
        for value in ("DOE^JOHN^^^", "doe^john^", "DOE^JOHN^^^=", "DOE^JOHN==", "DOE^J*^^", "D?E^JOHN^^^^"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT1"])
        for value in ("Retr^One", "RETR^ONE^", "Retr^One^^^^=", "retr^on?", "Retr^O*^^", "Retr^One\\nobody"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT11"])
        for value in ("Yamada^Taro=山田^太郎", "YAMADA^TARO^^^=山田^太郎^=", "yamada^taro=*", "Yamada^Taro=山田^太郎^^="):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT12"])
        for value in ("Retr^One^X", "Yamada^Taro", "Yamada^Taro=山田"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), [])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "^^^\\="), list(PATIENTS) + ["PAT11", "PAT12"])

    def test_greekFinalSigma(self):
        """ΓΙΆΝΝΗΣ* finds Γιάννης^Παπάς on every database: a case fold makes
        Σ, σ and the final ς one letter, where the servers' lower() keeps ς."""
        self.index.storeMany([ImageRecord({PATIENT_ID: "PAT13", PATIENT_NAME: "Γιάννης^Παπάς", STUDY_UID: "13.1",
                                           SERIES_UID: "13.1.1", SOP_UID: "13.1.1.1"}, "MAG0", "PAT13/13.1.1.1.dcm")])
        for value in ("ΓΙΆΝΝΗΣ*", "ΓΙΆΝΝΗΣ^ΠΑΠΆΣ", "γιάννησ^παπάσ", "Γιάννης^Παπάς", "*^ΠΑΠΆΣ", "ΓΙΆΝΝΗ?^*"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT13"])

    def test_cjkName(self):
        """山田^太郎, as decoded from an ISO_IR 192 (UTF-8) request."""
        for value in ("山田^太郎", "山田*", "*太郎", "山?^太郎"):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", value), ["PAT3"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "山*^次郎"), [])

    def test_atStudyLevel(self):
        self.assertMatches("STUDY", K(PATIENT_NAME, "PN", "doe^*"), ["1.1", "1.2"])
        self.assertMatches("IMAGE", K(PATIENT_NAME, "PN", "müller*"), ["2.1.1.1", "2.1.2.1"])

    def test_otherTextIsCaseSensitive(self):
        """Wildcards too (SQLite's LIKE ignores the case of ASCII letters unless told)."""
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "mr knee"), [])
        self.assertMatches("SERIES", K(MODALITY, "CS", "ct"), [])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "mr*"), [])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "MR*"), ["1.2"])
        self.assertMatches("SERIES", K(MODALITY, "CS", "c?"), [])
        self.assertMatches("STUDY", K(MODALITIES_IN_STUDY, "CS", "mr"), [])

    def test_foldCase(self):
        """What the search boxes (finders, web search fields) ask for."""
        self.assertMatches("STUDY", QueryKey(STUDY_DESCRIPTION, "LO", "*knee*", foldCase=True), ["1.2"])
        self.assertMatches("STUDY", QueryKey(STUDY_DESCRIPTION, "LO", "mr KNEE", foldCase=True), ["1.2"])


class CutValueTests(ArchiveTestCase):
    """A value longer than its column (dicom.sql's PatientName is 64
    characters; a PN may have 64 per group) is indexed cut: a key without
    wildcards matches it as cut the same way, and the answer is the cut
    value, as Conquest's."""

    LONG = ("Kobayashi-Takahashi^Hanako Michiko Yoshi=小林高橋^花子美智子良="
            "こばやしたかはし^はなこみちこよし")

    def setUp(self):
        super().setUp()
        self.index.storeMany([ImageRecord({PATIENT_ID: "LONG", PATIENT_NAME: self.LONG, STUDY_DESCRIPTION: "x" * 70,
                                           STUDY_UID: "9.1", SERIES_UID: "9.1.1", SOP_UID: "9.1.1.1"},
                                          "MAG0", "LONG/9.1.1.1.dcm")])

    def test_anExactKeyLongerThanItsColumn(self):
        for level, expected in (("PATIENT", ["LONG"]), ("STUDY", ["9.1"]), ("IMAGE", ["9.1.1.1"])):
            self.assertMatches(level, K(PATIENT_NAME, "PN", self.LONG), expected)
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", self.LONG.upper() + "\\Doe^John"), ["LONG", "PAT1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "x" * 70), ["9.1"])
        [found] = self.find("PATIENT", K(PATIENT_NAME, "PN", self.LONG))
        self.assertEqual(found[PATIENT_NAME], self.LONG[:64])

    def test_anotherLongNameWithTheSameStart(self):
        """What the cut leaves out is not matched: a key that differs only
        there matches too (the index cannot tell), one that differs before
        does not."""
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", self.LONG[:64] + "X"), ["LONG"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "X" + self.LONG[1:]), [])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", self.LONG[:60]), [])


    def test_aLongNameInAnotherSpelling(self):
        """A name stored with empty components (cut in that spelling) is
        found by the key that leaves them out, in any case, and not by a
        key that differs in what the cut kept (review of the character set
        fixes, item 1)."""
        spelled = "A" * 30 + "^^^^=" + "B" * 40
        self.index.storeMany([ImageRecord({PATIENT_ID: "CARETS", PATIENT_NAME: spelled, STUDY_UID: "9.2",
                                           SERIES_UID: "9.2.1", SOP_UID: "9.2.1.1"}, "MAG0", "CARETS/9.2.1.1.dcm")])
        for key in ("A" * 30 + "=" + "B" * 40, "a" * 30 + "^=" + "b" * 40, spelled):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", key), ["CARETS"])
            self.assertMatches("STUDY", K(PATIENT_NAME, "PN", key), ["9.2"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "A" * 30 + "=" + "C" * 40), [])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "A" * 29 + "=" + "B" * 40), [])

    def test_aWildcardAfterAStartLongerThanTheColumn(self):
        """A viewer's full name followed by ``*`` finds the cut value, as
        the name alone does (review of the character set fixes, item 2)."""
        self.index.storeMany([ImageRecord({PATIENT_ID: "CCC", PATIENT_NAME: "C" * 70, STUDY_UID: "9.3",
                                           SERIES_UID: "9.3.1", SOP_UID: "9.3.1.1"}, "MAG0", "CCC/9.3.1.1.dcm")])
        for key in ("C" * 70 + "*", "c" * 66 + "?" * 4, "C" * 64 + "*", "C" * 70):
            self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", key), ["CCC"])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "C" * 63 + "D" + "C" * 6 + "*"), [])
        for key in ("x" * 70 + "*", "x" * 64 + "?", "x" * 66 + "*yz"):
            self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", key), ["9.1"])
        self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", "x" * 63 + "y*"), [])

    def test_ordinaryNamesAskNoLength(self):
        """A key no cut name can match keeps the statement it had."""
        statements = self.statements()
        self.find("PATIENT", K(PATIENT_NAME, "PN", "Doe^John*"))
        self.find("PATIENT", K(PATIENT_NAME, "PN", "Doe^John"))
        self.assertNotIn("length(", " ".join(statements).lower())


class LeftInLatin1Tests(ArchiveTestCase):
    """SQLite only: a name Conquest stored in Latin-1 that the takeover left
    so (``pacscore.db.rawtext``)."""

    def test_nonAsciiNameSearch(self):
        """A non-ASCII name search (SQLite: its driver's Unicode case fold)
        over a name Conquest stored in Latin-1 and pacs left so (a key
        clash at the takeover) does not fail: the name matches as it reads."""
        with self.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE DICOMPatients SET PatientName = CAST(? AS TEXT) WHERE PatientID = "
                                       "'PAT_4'", ("MÜLLER^ANNA".encode("latin-1"),))
            connection.exec_driver_sql(f"PRAGMA user_version = {RAW_LEFT}")
        self.engine.dispose()  # connections set up for the database as it is now
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "ødegård*"), [])
        self.assertMatches("PATIENT", K(PATIENT_NAME, "PN", "müller^anna"), ["PAT_4"])


class MultiValuedColumnTests(ArchiveTestCase):
    """DT_MSTR columns hold several values joined by a backslash."""

    def test_anyPart(self):
        for value, expected in (
                ("ORIGINAL", ["1.1.1.1", "1.1.1.2", "1.1.2.1", "1.1.2.2"]),
                ("PRIMARY", ["1.1.1.1", "1.1.1.2", "1.1.2.1", "1.1.2.2", "1.2.1.1"]),
                ("AXIAL", ["1.1.1.1", "1.1.1.2", "1.1.1.3"]),
                ("PRIMARYX", ["1.1.1.3"]),
                ("PRIM", []),
                ("RIMARY", []),
                ("ORIGINAL\\PRIMARY\\AXIAL", ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.1",
                                              "1.1.2.2", "1.2.1.1"])):
            self.assertMatches("IMAGE", K(IMAGE_TYPE, "CS", value), expected)

    def test_wildcardParts(self):
        self.assertMatches("IMAGE", K(IMAGE_TYPE, "CS", "PRIM*"),
                           ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.1", "1.1.2.2", "1.2.1.1"])
        self.assertMatches("IMAGE", K(IMAGE_TYPE, "CS", "DER?VED"), ["1.1.1.3"])

    def test_numbers(self):
        self.assertMatches("IMAGE", K(ECHO_NUMBERS, "IS", "2"), ["1.1.2.1", "1.2.1.1"])
        self.assertMatches("IMAGE", K(ECHO_NUMBERS, "IS", "1"), ["1.1.2.1"])
        self.assertMatches("IMAGE", K(ECHO_NUMBERS, "IS", "12"), ["1.1.2.2"])

    def test_studyModalityColumn(self):
        """Without computed fields, ModalitiesInStudy is DICOMStudies.StudyModality,
        which the writer makes of the Modality of the objects (the newest first)."""
        query = IndexQuery(self.index.tables, self.index.layout, computedFields=False)
        self.assertMatches("STUDY", K(MODALITIES_IN_STUDY, "CS", "MR"), ["1.1", "1.2"], query=query)
        self.assertMatches("STUDY", K(MODALITIES_IN_STUDY, "CS", "CT"), ["1.1"], query=query)
        self.assertMatches("STUDY", K(MODALITIES_IN_STUDY, "CS", "CT\\US"), ["1.1", "2.1"],
                           query=query)
        self.assertMatches("STUDY", K(MODALITIES_IN_STUDY, "CS", "CT*"), ["1.1", "4.1"],
                           query=query)
        self.assertEqual(self.find("STUDY", K(STUDY_UID, "UI", "1.1"), K(MODALITIES_IN_STUDY, "CS"),
                                   query=query),
                         [{STUDY_UID: "1.1", MODALITIES_IN_STUDY: "MR\\CT"}])


class CaseInsensitiveColumnTests(ArchiveTestCase):
    """dicom.sql DT_ISTR columns (Conquest's "case insensitive query
    string", here StudyDescription and AccessionNumber) match whatever the
    case, wildcards or not, as Conquest's UPPER(column) = / LIKE 'KEY'."""

    def makeLayout(self):
        layout = shippedLayout()
        folded = [replace(column, dicomType="DT_ISTR") if column.tag in (STUDY_DESCRIPTION, ACCESSION) else column
                  for column in layout.study]
        return replace(layout, study=folded)

    def test_anyCase(self):
        for value, expected in (("mr knee", ["1.2"]), ("Mr Knee", ["1.2"]), ("MR KNEE", ["1.2"]),
                                ("mr*", ["1.2"]), ("*Knee", ["1.2"]), ("*c?est", ["5.1"]),
                                ("ct head\\DX chest", ["1.1", "5.1"]), ("*xdonex", ["4.1"]),
                                ("100% _DONE_", ["2.1"]), ("100% _DONE", []), ("mr", [])):
            self.assertMatches("STUDY", K(STUDY_DESCRIPTION, "LO", value), expected)
        self.assertMatches("STUDY", K(ACCESSION, "SH", "acc?"), ["1.1", "1.2", "5.1"])

    def test_atEveryLevelAndBelow(self):
        """The column of an upper table (joined), and of a lower level (QIDO-RS's EXISTS)."""
        self.assertMatches("IMAGE", K(STUDY_DESCRIPTION, "LO", "mr knee"), ["1.2.1.1"])
        self.assertMatches("SERIES", [K(STUDY_UID, "UI", "1.1"), K(ACCESSION, "SH", "acc1")], ["1.1.1", "1.1.2"])
        with self.engine.connect() as connection:
            found = self.query.find(connection, "PATIENT", [K(STUDY_DESCRIPTION, "LO", "ct HEAD")], below=True)
        self.assertEqual([match[PATIENT_ID] for match in found], ["PAT1"])

    def test_answeredAsStored(self):
        self.assertEqual(self.find("STUDY", K(STUDY_UID, "UI"), K(STUDY_DESCRIPTION, "LO", "mr knee")),
                         [{STUDY_UID: "1.2", STUDY_DESCRIPTION: "MR KNEE"}])

    def test_otherColumnsStayCaseSensitive(self):
        self.assertMatches("SERIES", K(MODALITY, "CS", "ct"), [])
        self.assertMatches("STUDY", K(PATIENT_ID, "LO", "pat1"), [])

    def test_lowerIndexOfAnIndexedColumn(self):
        """AccessionNumber has an index, so it gets one on lower(AccessionNumber)
        too, which an exact key looks up; StudyDescription has none."""
        names = {index.name for index in self.index.tables.study.indexes}
        self.assertIn("ix_DICOMStudies_AccessionNumber_lower", names)
        self.assertNotIn("ix_DICOMStudies_StudyDescription_lower", names)
        if self.engine.dialect.name != "sqlite":
            return
        executed = []

        def listener(conn, cursor, statement, parameters, *rest):
            executed.append((statement, parameters))
        event.listen(self.engine, "before_cursor_execute", listener)
        self.addCleanup(event.remove, self.engine, "before_cursor_execute", listener)
        for value, expected in (("Acc2", ["1.2"]), ("acc*", ["1.1", "1.2", "5.1"])):
            self.assertMatches("STUDY", K(ACCESSION, "SH", value), expected)
            with self.engine.connect() as connection:
                plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + executed[-1][0], executed[-1][1]))
            self.assertIn("ix_DICOMStudies_AccessionNumber_lower", plan, value)


class DateTimeTests(ArchiveTestCase):
    """DT matching, on a layout with AcquisitionDateTime in DICOMImages."""

    def makeLayout(self):
        layout = shippedLayout()
        column = Column(0x0008, 0x002A, "AcqDateTime", 26, "SQL_C_CHAR", "DT_STR")
        return replace(layout, image=layout.image[:-1] + [column, layout.image[-1]])

    def records(self):
        times = {"1.1.1.1": "20240102101500", "1.1.1.2": "20240102101500.250000",
                 "1.1.1.3": "20240102235959", "1.1.2.1": "20240103",
                 "1.1.2.2": "20240102101500+0100", "1.2.1.1": "20240102001500-0500"}
        for record in archiveRecords():
            sop = record.attrs[SOP_UID]
            if sop in times:
                record.attrs[ACQ_DATE_TIME] = times[sop]
            yield record

    def assertDateTimeMatches(self, value, expected, **options):
        """The images of three series that the AcquisitionDateTime ``value`` matches."""
        keys = [K(SERIES_UID, "UI", "1.1.1\\1.1.2\\1.2.1"), K(ACQ_DATE_TIME, "DT", value)]
        self.assertEqual(sorted(result[SOP_UID] for result in self.find("IMAGE", *keys, **options)), expected, value)

    def test_dateTime(self):
        """Single values and ranges, in the server's local time (UTC here)
        where neither side has an offset from UTC."""
        inZone(self, "UTC")
        match = self.assertDateTimeMatches
        match("20240102101500", ["1.1.1.1"])
        match("20240102101500.250000", ["1.1.1.2"])
        match("20240102-20240102", ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.2", "1.2.1.1"])
        match("-2024010210", ["1.1.1.1", "1.1.1.2", "1.1.2.2", "1.2.1.1"])
        match("20240102101500.1-", ["1.1.1.2", "1.1.1.3", "1.1.2.1"])
        match("20240102120000-", ["1.1.1.3", "1.1.2.1"])
        match("20240103000000-", ["1.1.2.1"])  # a stored date-only 20240103 is midnight
        match("2024*", ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.1", "1.1.2.2", "1.2.1.1"])
        match("202401021015*", ["1.1.1.1", "1.1.1.2", "1.1.2.2"])
        match("-", ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.1", "1.1.2.2", "1.2.1.1"])
        match("2024-01-02", [])

    def test_offsetsFromUTC(self):
        """PS3.4 C.2.2.2.5.3: an offset from UTC, in the key or the stored
        value, counts (a value without one is the server's local time); a
        negative one is no range separator: ``20240102001500-0500`` is one
        time, 05:15 UTC, not a range up to the year 0500."""
        inZone(self, "UTC")
        match = self.assertDateTimeMatches
        match("20240102001500-0500", ["1.2.1.1"])
        match("20240102051500+0000", ["1.2.1.1"])
        match("20240102051500", ["1.2.1.1"])
        match("20240102101500+0100", ["1.1.2.2"])
        match("20240102101500+0100-", ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.1", "1.1.2.2"])
        match("-20240102101500+0100", ["1.1.2.2", "1.2.1.1"])
        match("20240102001500-0500-20240102091500+0000", ["1.1.2.2", "1.2.1.1"])
        match("20240102091501+0000-", ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.1"])
        inZone(self, "America/St_Johns")  # -0330: the stored 10:15 is 13:45 UTC
        match("20240102134500+0000", ["1.1.1.1"])
        match("20240102101500", ["1.1.1.1"])
        match("20240102014500", ["1.2.1.1"])
        match("-20240102134459+0000", ["1.1.2.2", "1.2.1.1"])

    def test_limitAndOffsetAfterMatching(self):
        """A search's limit and offset count the rows matched in UTC."""
        inZone(self, "UTC")
        self.assertDateTimeMatches("20240102-20240102", ["1.1.1.2", "1.1.1.3"], limit=2, offset=1)
        self.assertDateTimeMatches("20240102101500+0100-", ["1.1.2.1", "1.1.2.2"], limit=5, offset=3)

    def test_storedValuesThatAreNoDateTime(self):
        """Stored values that are no DT (a modality's 7-digit fraction, a
        ``Z``, a short offset, a space, no such day) are compared as text,
        as before DT matching in UTC: a range of days still finds them."""
        inZone(self, "UTC")
        stored = {"1.1.1.1": "20240102101500.1234567", "1.1.1.2": "20240102101500Z",
                  "1.1.1.3": "20240102 101500", "1.1.2.1": "20240230101500", "1.1.2.2": "20240102101500+01"}
        with self.engine.begin() as connection:
            images = self.index.tables.image
            for sop, value in stored.items():
                connection.execute(update(images).where(images.c.SOPInstanceUID == sop).values(AcqDateTime=value))
        match = self.assertDateTimeMatches
        match("20240102-20240102", ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.2", "1.2.1.1"])
        match("20240102-", ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.1", "1.1.2.2", "1.2.1.1"])
        match("-20240103", ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.2", "1.2.1.1"])
        match("202401021015-", ["1.1.1.1", "1.1.1.2", "1.1.2.1", "1.1.2.2"])  # a space is before the digits
        match("-20240101", [])


class DateTimePagingTests(ArchiveTestCase):
    """A page of a DT search reads the rows up to its last, not every
    candidate: 3,000 images of 2024-01-02, every other one at +0100."""

    makeLayout = DateTimeTests.makeLayout

    def records(self):
        yield from archiveRecords()
        for n in range(3000):
            attrs = {PATIENT_ID: "PAT9", STUDY_UID: "9.1", SERIES_UID: "9.1.1", SOP_UID: f"9.1.1.{n:04}",
                     ACQ_DATE_TIME: f"20240102{n // 150:02}{n % 60:02}00" + ("+0100" if n % 2 else "")}
            yield ImageRecord(attrs, "MAG0", f"PAT9/{n}.dcm")

    def rowsRead(self):
        """A list growing by one for every row ``find`` reads."""
        rows = []
        self.patch(querymodule, "checkAbandoned", lambda: rows.append(None))
        return rows

    def test_aPageReadsUpToItsLastRow(self):
        inZone(self, "UTC")
        keys = [K(SERIES_UID, "UI", "9.1.1"), K(ACQ_DATE_TIME, "DT", "20240102-20240102")]
        everything = [result[SOP_UID] for result in self.find("IMAGE", *keys)]
        self.assertEqual(len(everything), 3000 - 75)  # 00:xx+0100 is the day before in UTC
        rows = self.rowsRead()
        page = [result[SOP_UID] for result in self.find("IMAGE", *keys, limit=10, offset=100)]
        self.assertEqual(page, everything[100:110])
        self.assertLess(len(rows), 200)
        pages = []
        for offset in range(0, 3000, 500):
            pages += [result[SOP_UID] for result in self.find("IMAGE", *keys, limit=500, offset=offset)]
        self.assertEqual(pages, everything)


class ComputedFieldTests(ArchiveTestCase):
    """Number of related ..., ModalitiesInStudy and SOPClassesInStudy."""

    def test_patientCounts(self):
        keys = [K(PATIENT_STUDIES, "IS"), K(PATIENT_SERIES, "IS"), K(PATIENT_INSTANCES, "IS")]
        results = {r[PATIENT_ID]: (r[PATIENT_STUDIES], r[PATIENT_SERIES], r[PATIENT_INSTANCES])
                   for r in self.find("PATIENT", *keys)}
        self.assertEqual(results, {"PAT1": ("2", "3", "6"), "PAT2": ("1", "2", "2"),
                                   "PAT3": ("1", "1", "1"), "PAT_4": ("1", "1", "1"),
                                   "PATX4": ("1", "1", "1")})
        for level, key in (("STUDY", "1.2"), ("SERIES", "1.2.1"), ("IMAGE", "1.2.1.1")):
            tag = (PATIENT_ID, STUDY_UID, SERIES_UID, SOP_UID)[LEVELS.index(level)]
            [result] = self.find(level, K(tag, "UI", key), *keys)
            self.assertEqual((result[PATIENT_STUDIES], result[PATIENT_SERIES],
                              result[PATIENT_INSTANCES]), ("2", "3", "6"))

    def test_studyAndSeriesCounts(self):
        results = self.find("STUDY", K(PATIENT_ID, "LO", "PAT1"), K(STUDY_SERIES, "IS"),
                            K(STUDY_INSTANCES, "IS"), K(SERIES_INSTANCES, "IS"))
        self.assertEqual(results, [
            {PATIENT_ID: "PAT1", STUDY_SERIES: "2", STUDY_INSTANCES: "5", STUDY_UID: "1.1"},
            {PATIENT_ID: "PAT1", STUDY_SERIES: "1", STUDY_INSTANCES: "1", STUDY_UID: "1.2"}])
        results = self.find("SERIES", K(STUDY_UID, "UI", "1.1"), K(SERIES_INSTANCES, "IS"),
                            K(STUDY_INSTANCES, "IS"))
        self.assertEqual(results, [
            {STUDY_UID: "1.1", SERIES_INSTANCES: "3", STUDY_INSTANCES: "5", SERIES_UID: "1.1.1"},
            {STUDY_UID: "1.1", SERIES_INSTANCES: "2", STUDY_INSTANCES: "5", SERIES_UID: "1.1.2"}])
        [result] = self.find("IMAGE", K(SOP_UID, "UI", "1.1.2.2"), K(SERIES_INSTANCES, "IS"),
                             K(STUDY_SERIES, "IS"))
        self.assertEqual((result[SERIES_INSTANCES], result[STUDY_SERIES]), ("2", "2"))

    def test_countsOfLowerLevelsOnly(self):
        """A study count at PATIENT level has nothing to count around."""
        self.assertEqual(self.find("PATIENT", K(PATIENT_ID, "LO", "PAT2"), K(STUDY_SERIES, "IS"),
                                   K(SERIES_INSTANCES, "IS")),
                         [{PATIENT_ID: "PAT2"}])

    def test_modalitiesAndSopClassesInStudy(self):
        results = {r[STUDY_UID]: (r[MODALITIES_IN_STUDY], r[SOP_CLASSES_IN_STUDY])
                   for r in self.find("STUDY", K(MODALITIES_IN_STUDY, "CS"),
                                      K(SOP_CLASSES_IN_STUDY, "UI"))}
        self.assertEqual(results, {
            "1.1": ("CT\\MR", "\\".join(sorted([CT, MR, SC]))), "1.2": ("MR", MR),
            "2.1": ("PT\\US", f"{CT}\\{US}"), "3.1": ("", SC), "4.1": ("CTX", CT),
            "5.1": ("DX", CT)})

    def test_modalitiesInStudyMatching(self):
        """A study matches when one of its series has a requested modality;
        the whole list still comes back."""
        self.assertMatches("STUDY", K(MODALITIES_IN_STUDY, "CS", "MR"), ["1.1", "1.2"])
        self.assertMatches("STUDY", K(MODALITIES_IN_STUDY, "CS", "CT\\US"), ["1.1", "2.1"])
        self.assertMatches("STUDY", K(MODALITIES_IN_STUDY, "CS", "C*"), ["1.1", "4.1"])
        self.assertMatches("STUDY", K(MODALITIES_IN_STUDY, "CS", "XA"), [])
        self.assertMatches("STUDY", K(MODALITIES_IN_STUDY, "CS", "OT"), [])
        self.assertEqual(self.find("STUDY", K(MODALITIES_IN_STUDY, "CS", "MR"),
                                   K(STUDY_DATE, "DA", "2024-")),
                         [{MODALITIES_IN_STUDY: "CT\\MR", STUDY_DATE: "20240102",
                           STUDY_UID: "1.1"}])

    def test_listsOfTheStudyBelowIt(self):
        """At SERIES and IMAGE level ModalitiesInStudy and SOPClassesInStudy
        are those of the entity's study: answered and matched as there, never
        left unmatched (0xFF01)."""
        lists = (K(MODALITIES_IN_STUDY, "CS"), K(SOP_CLASSES_IN_STUDY, "UI"))
        for level, key in (("SERIES", K(SERIES_UID, "UI", "1.1.2")), ("IMAGE", K(SOP_UID, "UI", "1.1.2.2"))):
            [result] = self.find(level, key, *lists)
            self.assertEqual((level, result[MODALITIES_IN_STUDY], result[SOP_CLASSES_IN_STUDY]),
                             (level, "CT\\MR", "\\".join(sorted([CT, MR, SC]))))
        self.assertMatches("SERIES", K(SOP_CLASSES_IN_STUDY, "UI", SC), ["1.1.1", "1.1.2", "3.1.1"])
        self.assertMatches("SERIES", K(SOP_CLASSES_IN_STUDY, "UI", "9.9.9.9"), [])
        self.assertMatches("IMAGE", K(SOP_CLASSES_IN_STUDY, "UI", US), ["2.1.1.1", "2.1.2.1"])
        self.assertMatches("IMAGE", K(MODALITIES_IN_STUDY, "CS", "PT"), ["2.1.1.1", "2.1.2.1"])
        with self.engine.connect() as connection:
            for level in ("SERIES", "IMAGE"):
                self.assertEqual(self.query.unmatchedKeys(connection, level, [K(SOP_CLASSES_IN_STUDY, "UI", SC)]), [])

    def test_computedAt(self):
        """The computed keys each level answers: counts around an entity at
        or above it, the study's lists at STUDY level and below."""
        self.assertEqual(self.query.computedAt("PATIENT"), {PATIENT_STUDIES, PATIENT_SERIES, PATIENT_INSTANCES})
        self.assertEqual(self.query.computedAt("STUDY"), {PATIENT_STUDIES, PATIENT_SERIES, PATIENT_INSTANCES,
                                                          STUDY_SERIES, STUDY_INSTANCES, MODALITIES_IN_STUDY,
                                                          SOP_CLASSES_IN_STUDY})
        self.assertIn(SERIES_INSTANCES, self.query.computedAt("IMAGE"))
        self.assertEqual(self.query.matchedComputedAt("SERIES"), {MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY})
        off = IndexQuery(self.index.tables, self.index.layout, computedFields=False)
        self.assertEqual(off.computedAt("IMAGE"), set())

    def test_sopClassesInStudyMatching(self):
        self.assertMatches("STUDY", K(SOP_CLASSES_IN_STUDY, "UI", SC), ["1.1", "3.1"])
        self.assertMatches("STUDY", K(SOP_CLASSES_IN_STUDY, "UI", f"{US}\\{MR}"),
                           ["1.1", "1.2", "2.1"])
        self.assertMatches("STUDY", K(SOP_CLASSES_IN_STUDY, "UI", CT),
                           ["1.1", "2.1", "4.1", "5.1"])

    def test_computedOncePerEntity(self):
        """Each computed key is one statement after that of the answers,
        however many answers there are, with no subquery run per answer (an
        image-level query of a 10,000-image study with SOPClassesInStudy
        took 51 s instead of 2)."""
        computed = [K(tag, "IS") for tag in (PATIENT_STUDIES, PATIENT_SERIES, PATIENT_INSTANCES, STUDY_SERIES,
                                              STUDY_INSTANCES, SERIES_INSTANCES)]
        computed += [K(MODALITIES_IN_STUDY, "CS"), K(SOP_CLASSES_IN_STUDY, "UI")]
        [image] = [record for record in archiveRecords() if record.attrs[SOP_UID] == "1.1.1.1"]
        self.index.storeMany([ImageRecord({**image.attrs, SOP_UID: f"1.1.1.9{n}"}, "MAG0", f"PAT1/9{n}.dcm")
                              for n in range(20)])
        for level, key in (("IMAGE", K(STUDY_UID, "UI", "1.1")), ("IMAGE", K(SOP_UID, "UI", "1.1.1.1")),
                           ("STUDY", K(PATIENT_ID, "LO", "PAT1"))):
            executed = []

            def listener(conn, cursor, statement, parameters, *rest, executed=executed):
                executed.append((statement, parameters))
            event.listen(self.engine, "before_cursor_execute", listener)
            results = self.find(level, key, *computed, K(PATIENT_NAME, "PN"))
            event.remove(self.engine, "before_cursor_execute", listener)
            answered = len(computed) if level == "IMAGE" else len(computed) - 1
            self.assertEqual((level, len(executed)), (level, 1 + answered))
            if self.engine.dialect.name != "sqlite":
                continue
            with self.engine.connect() as connection:
                for statement, parameters in executed:
                    plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
                    self.assertNotIn("CORRELATED", " ".join(str(row) for row in plan))
        self.assertEqual(len(results), 2)
        [first] = self.find("IMAGE", K(SOP_UID, "UI", "1.1.1.90"), *computed)
        self.assertEqual([first[key.tag] for key in computed],
                         ["2", "3", "26", "2", "25", "23", "CT\\MR", "\\".join(sorted([CT, MR, SC]))])

    def test_computedFieldsOff(self):
        query = IndexQuery(self.index.tables, self.index.layout, computedFields=False)
        results = self.find("STUDY", K(STUDY_UID, "UI", "1.1"), K(STUDY_INSTANCES, "IS"),
                            K(PATIENT_STUDIES, "IS"), K(SOP_CLASSES_IN_STUDY, "UI"),
                            K(MODALITIES_IN_STUDY, "CS"), query=query)
        self.assertEqual(results, [{STUDY_UID: "1.1", MODALITIES_IN_STUDY: "MR\\CT"}])

    def test_countsWithoutComputedFields(self):
        """``counts``: the counts are computed all the same (QIDO-RS must
        answer them), the lists left to the columns."""
        query = IndexQuery(self.index.tables, self.index.layout, computedFields=False)
        results = self.find("STUDY", K(STUDY_UID, "UI", "1.1"), K(STUDY_INSTANCES, "IS"), K(SOP_CLASSES_IN_STUDY, "UI"),
                            K(MODALITIES_IN_STUDY, "CS"), query=query, counts=True)
        self.assertEqual(results, [{STUDY_UID: "1.1", STUDY_INSTANCES: "5", MODALITIES_IN_STUDY: "MR\\CT"}])
        self.assertEqual(query.computedAt("SERIES", counts=True),
                         {PATIENT_STUDIES, PATIENT_SERIES, PATIENT_INSTANCES, STUDY_SERIES, STUDY_INSTANCES,
                          SERIES_INSTANCES})
        self.assertEqual(query.matchedComputedAt("SERIES"), set())

    def test_notRequestedNotComputed(self):
        statements = self.statements()
        self.find("PATIENT", K(PATIENT_ID, "LO", "PAT1"))
        self.assertNotIn("count", statements[-1].lower())


class SortOrderTests(ArchiveTestCase):
    """Conquest's *QuerySortOrder settings."""

    def setUp(self):
        super().setUp()
        self.events = []
        self.patch(IndexQuery, "log", Logger(observer=self.events.append))

    def ordered(self, level, sortOrder, *keys):
        query = IndexQuery(self.index.tables, self.index.layout, {level: sortOrder})
        return self.keysOf(level, *keys, query=query)

    def test_defaultIsKeyOrder(self):
        self.assertEqual(self.keysOf("STUDY"), sorted(STUDIES))
        self.assertEqual(self.keysOf("IMAGE", K(SERIES_UID, "UI", "1.1.1")),
                         ["1.1.1.1", "1.1.1.2", "1.1.1.3"])

    def test_pagesOfTheOrder(self):
        """``limit`` and ``offset`` take a page of the sort order, the
        database skipping the rows before it (QIDO-RS's paging)."""
        query = IndexQuery(self.index.tables, self.index.layout, {"STUDY": "DICOMStudies.StudyDate desc"})
        everything = self.ordered("STUDY", "DICOMStudies.StudyDate desc")
        statements = []

        def record(connection, cursor, statement, *rest):
            statements.append(statement)
        event.listen(self.engine, "before_cursor_execute", record)
        self.addCleanup(event.remove, self.engine, "before_cursor_execute", record)
        with self.engine.connect() as connection:
            page = query.find(connection, "STUDY", [K(STUDY_UID, "UI", "")], 2, 3)
        self.assertEqual([match[STUDY_UID] for match in page], everything[3:5])
        self.assertRegex(statements[-1].upper(), r"OFFSET|LIMIT \S+, ")  # MySQL: LIMIT offset, count

    def test_patientColumn(self):
        self.assertEqual(self.ordered("PATIENT", "DICOMPatients.PatientBirthDate"),
                         ["PAT3", "PAT2", "PAT1", "PAT_4", "PATX4"])
        self.assertEqual(self.events, [])

    def test_caseInsensitiveTruncatedAndDescending(self):
        self.assertEqual(self.ordered("STUDY", "dicomstudies.studyd desc, DICOMStudies.STUDYTIME"),
                         ["2.1", "4.1", "1.1", "1.2", "5.1", "3.1"])
        self.assertEqual(self.ordered("STUDY", "DICOMSTUDIES.STUDYTI"),
                         ["3.1", "4.1", "1.1", "5.1", "2.1", "1.2"])
        self.assertEqual(self.events, [])

    def test_tableNotInQuery(self):
        """Conquest's example StudyQuerySortOrder names a series column:
        that part is ignored with one warning."""
        result = self.ordered("STUDY", "dicomstudies.studydate, dicomseries.seriesnumb")
        self.assertEqual(result, ["3.1", "5.1", "1.2", "1.1", "4.1", "2.1"])
        self.assertEqual(len(self.events), 1)
        self.assertEqual(self.events[0]["log_level"].name, "warn")
        self.assertEqual(self.events[0]["name"], "dicomseries.seriesnumb")

    def test_unknownNames(self):
        result = self.ordered("SERIES", "DICOMSeries.Nonsense, NoSuchTable.Modality, , x y z")
        self.assertEqual(result, sorted(SERIES))
        self.assertEqual([e["name"] for e in self.events],
                         ["DICOMSeries.Nonsense", "NoSuchTable.Modality", "x y z"])

    def test_upperTableJoined(self):
        """An IMAGE sort order may use the series and study tables."""
        result = self.ordered("IMAGE", "DICOMStudies.StudyDate DESC, DICOMSeries.SeriesNumber,"
                                      " DICOMImages.ImageNumber", K(PATIENT_ID, "LO", "PAT1"))
        self.assertEqual(result, ["1.1.1.3", "1.1.1.1", "1.1.1.2", "1.1.2.1", "1.1.2.2",
                                  "1.2.1.1"])

    def test_levelsAreSeparate(self):
        query = IndexQuery(self.index.tables, self.index.layout,
                           {"PATIENT": "DICOMPatients.PatientBirthDate", "study": "StudyDate"})
        self.assertEqual(self.keysOf("PATIENT", query=query),
                         ["PAT3", "PAT2", "PAT1", "PAT_4", "PATX4"])
        self.assertEqual(self.keysOf("STUDY", query=query),
                         ["3.1", "5.1", "1.2", "1.1", "4.1", "2.1"])
        self.assertEqual(self.keysOf("SERIES", query=query), sorted(SERIES))


class RequestedSortTests(ArchiveTestCase):
    """Conquest's (9999,0C00) sort column of a C-FIND (IndexQuery.requestedSort),
    with the limit (9999,0C01) and offset (9999,0C02) that find takes."""

    def sorted(self, level, text, *keys, **options):
        sortBy = self.query.requestedSort(level, text)
        with self.engine.connect() as connection:
            found = self.query.find(connection, level, list(keys), sortBy=sortBy.order, **options)
        tag = (PATIENT_ID, STUDY_UID, SERIES_UID, SOP_UID)[LEVELS.index(level)]
        return [match[tag] for match in found]

    def test_aColumnOfTheLevel(self):
        byDate = ["3.1", "5.1", "1.2", "1.1", "4.1", "2.1"]  # the empty date first, equal dates by key
        self.assertEqual(self.sorted("STUDY", "StudyDate"), byDate)
        self.assertEqual(self.sorted("STUDY", "studydate asc"), byDate)
        self.assertEqual(self.sorted("STUDY", "StudyDate DESC"), ["2.1", "1.1", "4.1", "1.2", "5.1", "3.1"])
        self.assertEqual(self.sorted("STUDY", "DICOMStudies.StudyTi"), ["3.1", "4.1", "1.1", "5.1", "2.1", "1.2"])

    def test_aPageOfTheOrder(self):
        self.assertEqual(self.sorted("STUDY", "StudyDate", limit=3), ["3.1", "5.1", "1.2"])
        self.assertEqual(self.sorted("STUDY", "StudyDate", limit=3, offset=2), ["1.2", "1.1", "4.1"])
        self.assertEqual(self.sorted("STUDY", "StudyDate", K(STUDY_DATE, "DA", "2024*"), offset=1), ["4.1", "2.1"])

    def test_theMostCounts(self):
        """paging.MOST, which a C-FIND's larger counts become, as limit and
        offset: every answer, and none after skipping that many."""
        self.assertEqual(self.sorted("STUDY", "StudyDate", limit=MOST), ["3.1", "5.1", "1.2", "1.1", "4.1", "2.1"])
        self.assertEqual(self.sorted("STUDY", "StudyDate", limit=MOST, offset=MOST), [])

    def test_aColumnOfALevelAbove(self):
        """Conquest's own sample sorts studies by a study column; a patient's
        sorts them by the patient (their birth dates here)."""
        self.assertEqual(self.sorted("STUDY", "DICOMPatients.PatientBirthDate DESC"),
                         ["5.1", "4.1", "1.1", "1.2", "2.1", "3.1"])
        self.assertEqual(self.sorted("SERIES", "StudyDate", K(SERIES_UID, "UI", "1.1.1\\1.2.1\\5.1.1")),
                         ["5.1.1", "1.2.1", "1.1.1"])

    def test_numbersByTheirValue(self):
        """IS columns (ImageNumber, SeriesNumber) sort 1, 2, 10, not 1, 10, 2,
        as Conquest sorts its Number columns; other text as text."""
        images = K(SERIES_UID, "UI", "1.1.1")
        self.assertEqual(self.sorted("IMAGE", "ImageNumber", images), ["1.1.1.3", "1.1.1.2", "1.1.1.1"])
        self.assertEqual(self.sorted("IMAGE", "ImageNumber desc", images), ["1.1.1.1", "1.1.1.2", "1.1.1.3"])
        self.assertEqual(self.query.requestedSort("IMAGE", "ImageNumber").tag, IMAGE_NUMBER)
        self.assertTrue(self.query.requestedSort("SERIES", "SeriesNumber").numeric)
        self.assertFalse(self.query.requestedSort("SERIES", "Modality").numeric)

    def test_emptyAndOtherTextAmongNumbers(self):
        """One order on every database, SQLite's (and paging.pageOf's,
        PageOfTests.test_emptyAndOtherTextAmongNumbers): by the number a value
        starts with, 0 for none (empty, text), then by the text; 1e999 (out of
        the range of PostgreSQL's DOUBLE PRECISION, which failed the query) is
        the largest.  SQLite put '' first as 0 and PostgreSQL last as NULL.
        A NULL (9.9's ImageNumber, as a database Conquest filled may hold;
        pacs stores '') is '' as well, where PostgreSQL put it after the text
        and SQLite and MySQL first; in a text column too (ImageTime, NULL
        but for 9.1's and 9.2's '')."""
        patient, studyAttrs = STUDIES["1.1"]
        numbers = {"9.1": "3", "9.2": "", "9.3": "-1", "9.4": "x", "9.5": "1e999", "9.6": "12abc", "9.7": " 2",
                   "9.9": None}
        self.index.storeMany([ImageRecord({PATIENT_ID: patient, **PATIENTS[patient], STUDY_UID: "1.1", **studyAttrs,
                                           SERIES_UID: "1.1.9", MODALITY: "OT", SERIES_NUMBER: "9",
                                           SOP_UID: sop, SOP_CLASS: SC, IMAGE_NUMBER: number or "",
                                           IMAGE_TIME: {"9.1": "120000"}.get(sop, "")},
                                          "MAG0", f"{patient}/{sop}.dcm") for sop, number in numbers.items()])
        with self.engine.begin() as connection:
            images = self.index.tables.image
            connection.execute(update(images).where(images.c.SOPInstanceUID == "9.9").values(ImageNumber=None))
            connection.execute(update(images).where(images.c.SOPInstanceUID.not_in(["9.1", "9.2"]))
                               .values(ImageTime=None))
        images = K(SERIES_UID, "UI", "1.1.9")
        ascending = ["9.3", "9.2", "9.9", "9.4", "9.7", "9.1", "9.6", "9.5"]  # '' and NULL equal: by key
        self.assertEqual(self.sorted("IMAGE", "ImageNumber", images), ascending)
        self.assertEqual(self.sorted("IMAGE", "ImageNumber DESC", images),
                         ["9.5", "9.6", "9.1", "9.7", "9.4", "9.2", "9.9", "9.3"])
        self.assertEqual(self.sorted("IMAGE", "ImageNumber", images, limit=3, offset=1), ascending[1:4])
        self.assertEqual(self.sorted("IMAGE", "ImageTime", images),
                         ["9.2", "9.3", "9.4", "9.5", "9.6", "9.7", "9.9", "9.1"])
        self.assertEqual(self.sorted("IMAGE", "ImageTime DESC", images, limit=2), ["9.1", "9.2"])

    def test_unusableColumns(self):
        for level, asked, reason in (("STUDY", "Modality", "no such column"),
                                    ("STUDY", "DICOMSeries.Modality", "the table is not part of this query level"),
                                    ("STUDY", "Nonsense", "no such column"),
                                    ("STUDY", "StudyDate; DROP TABLE DICOMStudies", "expected Table.Column"),
                                    ("IMAGE", "DeviceName", "not a dicom.sql column")):
            with self.assertRaises(ValueError, msg=asked) as raised:
                self.query.requestedSort(level, asked)
            self.assertIn(reason, str(raised.exception))


class InstancesTests(ArchiveTestCase):
    """instances(): what a C-MOVE/C-GET sends."""

    def sops(self, level, *keys):
        return [i.sopInstanceUID for i in self.instances(level, *keys)]

    def test_patient(self):
        self.assertEqual(self.sops("PATIENT", K(PATIENT_ID, "LO", "PAT1")),
                         ["1.1.1.3", "1.1.1.2", "1.1.1.1", "1.1.2.1", "1.1.2.2", "1.2.1.1"])

    def test_fields(self):
        [instance] = self.instances("IMAGE", K(SOP_UID, "UI", "1.1.2.2"))
        self.assertEqual(instance, Instance("1.1.2.2", SC, "MAG0", "PAT1/1.1.2.2.dcm",
                                            "PAT1", "1.1", "1.1.2"))

    def test_studyList(self):
        self.assertEqual(self.sops("STUDY", K(STUDY_UID, "UI", "2.1\\1.1")),
                         ["1.1.1.3", "1.1.1.2", "1.1.1.1", "1.1.2.1", "1.1.2.2", "2.1.1.1",
                          "2.1.2.1"])

    def test_series(self):
        self.assertEqual(self.sops("SERIES", K(SERIES_UID, "UI", "1.1.1")),
                         ["1.1.1.3", "1.1.1.2", "1.1.1.1"])
        self.assertEqual(self.sops("SERIES", K(STUDY_UID, "UI", "1.1"), K(MODALITY, "CS", "MR")),
                         ["1.1.2.1", "1.1.2.2"])

    def test_images(self):
        self.assertEqual(self.sops("IMAGE", K(SOP_UID, "UI", "5.1.1.1\\1.1.1.1")),
                         ["1.1.1.1", "5.1.1.1"])

    def test_matchingLikeFind(self):
        self.assertEqual(self.sops("STUDY", K(PATIENT_NAME, "PN", "o'brien*")), ["4.1.1.1"])
        self.assertEqual(self.sops("STUDY", K(STUDY_DATE, "DA", "-20231231")),
                         ["1.2.1.1", "5.1.1.1"])
        self.assertEqual(self.sops("STUDY", K(MODALITIES_IN_STUDY, "CS", "US")),
                         ["2.1.1.1", "2.1.2.1"])
        self.assertEqual(self.sops("PATIENT", K(PATIENT_NAME, "PN", "DOE*")),
                         ["1.1.1.3", "1.1.1.2", "1.1.1.1", "1.1.2.1", "1.1.2.2", "1.2.1.1",
                          "5.1.1.1"])
        self.assertEqual(self.sops("PATIENT", K(PATIENT_ID, "LO", "x' OR '1'='1")), [])

    def test_lowerLevelKeysIgnored(self):
        """Like find: an image key does not narrow a STUDY level retrieve."""
        self.assertEqual(self.sops("STUDY", K(STUDY_UID, "UI", "1.2"), K(SOP_UID, "UI", "9")),
                         ["1.2.1.1"])

    def test_byUID(self):
        """``instancesByUID``: each UID matched literally, a value that is
        none (a wildcard, a list, empty) matching nothing rather than the
        whole index, and any number of them (a statement per 500)."""
        uids = ["*", "1.1.1.1\\1.1.1.2", "", "1.1.2.2", "5.1.1.1", "1.1.2.2"] + [f"9.{n}" for n in range(600)]
        statements = self.statements()
        with self.engine.connect() as connection:
            found = self.query.instancesByUID(connection, uids)
        self.assertEqual(sorted(instance.sopInstanceUID for instance in found), ["1.1.2.2", "5.1.1.1"])
        self.assertEqual(len(statements), 2)
        with self.engine.connect() as connection:
            self.assertEqual(self.query.instancesByUID(connection, ["*", "1.1.*"]), [])

    def test_oneStatement(self):
        statements = self.statements()
        self.instances("PATIENT", K(PATIENT_ID, "LO", "PAT1\\PAT2"))
        self.assertEqual(len(statements), 1)
        self.assertIn("JOIN", statements[0])


class QueryPlanTests(ArchiveTestCase):
    """SQLite uses indexes for the benchmark queries (EXPLAIN QUERY PLAN)."""

    def plan(self, level, *keys, instances=False):
        statements = []

        def listener(conn, cursor, statement, parameters, *rest):
            statements.append((statement, parameters))
        event.listen(self.engine, "before_cursor_execute", listener)
        try:
            (self.instances if instances else self.find)(level, *keys)
        finally:
            event.remove(self.engine, "before_cursor_execute", listener)
        with self.engine.connect() as connection:  # the answers', then one per computed key
            return [row[-1] for statement, parameters in statements for row in connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters)]

    def assertSearches(self, plan, *indexes):
        for index in indexes:
            self.assertTrue(any(f"INDEX {index} " in line for line in plan), (index, plan))
        self.assertFalse([line for line in plan if line.startswith("SCAN")], plan)

    def test_indexes(self):
        """PatientID columns of every table are indexed, PatientName also
        as lower(PatientName)."""
        with self.engine.connect() as connection:
            indexes = dict(connection.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index'")).all())
        self.assertEqual(indexes["ix_DICOMSeries_SeriesPat"],
                         'CREATE INDEX "ix_DICOMSeries_SeriesPat" ON "DICOMSeries" ("SeriesPat")')
        self.assertEqual(indexes["ix_DICOMImages_ImagePat"],
                         'CREATE INDEX "ix_DICOMImages_ImagePat" ON "DICOMImages" ("ImagePat")')
        for table in ("DICOMPatients", "DICOMStudies", "DICOMWorkList"):
            self.assertEqual(indexes[f"ix_{table}_PatientName_lower"],
                             f'CREATE INDEX "ix_{table}_PatientName_lower" ON "{table}" '
                             '(lower("PatientName"))')

    def test_patientByID(self):
        plan = self.plan("PATIENT", K(PATIENT_ID, "LO", "PAT1"), K(PATIENT_NAME, "PN"),
                         K(PATIENT_STUDIES, "IS"), K(PATIENT_SERIES, "IS"),
                         K(PATIENT_INSTANCES, "IS"))
        self.assertSearches(plan, "ux_DICOMPatients_PatientID", "ix_DICOMStudies_PatientID",
                            "ix_DICOMSeries_SeriesPat", "ix_DICOMImages_ImagePat")

    def test_patientByNameWildcard(self):
        plan = self.plan("PATIENT", K(PATIENT_ID, "LO"), K(PATIENT_NAME, "PN", "DOE*"),
                         K(PATIENT_STUDIES, "IS"))
        self.assertSearches(plan, "ix_DICOMPatients_PatientName_lower",
                            "ix_DICOMStudies_PatientID")
        plan = self.plan("STUDY", K(PATIENT_NAME, "PN", "doe^j*"))
        self.assertSearches(plan, "ix_DICOMStudies_PatientName_lower")
        plan = self.plan("PATIENT", K(PATIENT_NAME, "PN", "Doe^John"))
        self.assertSearches(plan, "ix_DICOMPatients_PatientName_lower")

    def test_longNamesKeepTheIndex(self):
        """A name key that fills the column (a name cut to it may match)
        and a multi-valued key with such a value search the name index, on
        the shortest cut prefix (review of the cut name fix, item 2)."""
        for level, table in (("PATIENT", "DICOMPatients"), ("STUDY", "DICOMStudies")):
            for key in ("A" * 60, "A" * 66, "A" * 64 + "*", "Doe^John\\" + "B" * 55):
                plan = self.plan(level, K(PATIENT_NAME, "PN", key))
                self.assertSearches(plan, f"ix_{table}_PatientName_lower")

    def test_studiesByDateRange(self):
        plan = self.plan("STUDY", K(STUDY_DATE, "DA", "20240101-20240131"), K(STUDY_UID, "UI"),
                         K(PATIENT_NAME, "PN"), K(MODALITIES_IN_STUDY, "CS"),
                         K(STUDY_INSTANCES, "IS"))
        self.assertSearches(plan, "ix_DICOMStudies_StudyDate",
                            "ix_DICOMSeries_StudyInstanceUID", "ix_DICOMImages_SeriesInstanceUID")
        plan = self.plan("STUDY", K(STUDY_DATE, "DA", "-20240131"))
        self.assertSearches(plan, "ix_DICOMStudies_StudyDate")

    def test_studiesByDateAndModality(self):
        """The EXISTS on ModalitiesInStudy looks series up by study, not by
        the (unselective) Modality index."""
        plan = self.plan("STUDY", K(STUDY_DATE, "DA", "20240101-20240131"),
                         K(MODALITIES_IN_STUDY, "CS", "MR"))
        self.assertSearches(plan, "ix_DICOMStudies_StudyDate", "ix_DICOMSeries_StudyInstanceUID")
        self.assertFalse([line for line in plan if "Modality" in line], plan)

    def test_imagesOfSeries(self):
        plan = self.plan("IMAGE", K(SERIES_UID, "UI", "1.1.1"), K(STUDY_UID, "UI", "1.1"),
                         K(SOP_UID, "UI"), K(SOP_CLASS, "UI"), K(IMAGE_NUMBER, "IS"))
        self.assertSearches(plan, "ix_DICOMImages_SeriesInstanceUID")

    def test_uidBeatsModality(self):
        plan = self.plan("SERIES", K(STUDY_UID, "UI", "1.1"), K(MODALITY, "CS", "CT"))
        self.assertSearches(plan, "ix_DICOMSeries_StudyInstanceUID")
        plan = self.plan("SERIES", K(PATIENT_ID, "LO", "PAT1"), K(MODALITY, "CS", "CT"))
        self.assertSearches(plan, "ix_DICOMSeries_SeriesPat")

    def test_instances(self):
        self.assertSearches(self.plan("PATIENT", K(PATIENT_ID, "LO", "PAT1"), instances=True),
                            "ux_DICOMPatients_PatientID", "ix_DICOMStudies_PatientID",
                            "ix_DICOMSeries_StudyInstanceUID", "ix_DICOMImages_SeriesInstanceUID")
        self.assertSearches(self.plan("SERIES", K(SERIES_UID, "UI", "1.1.1"), instances=True),
                            "ix_DICOMImages_SeriesInstanceUID")


class CaseInsensitiveColumnPlanTests(ArchiveTestCase):
    """SQLite searches the lower(AccessionNumber) index of a DT_ISTR
    AccessionNumber for an exact key and for one with a literal start
    (which scanned the table: lower(column) LIKE is no range SQLite looks
    up), as for PatientName; one that starts with a wildcard scans."""

    makeLayout = CaseInsensitiveColumnTests.makeLayout
    plan, assertSearches = QueryPlanTests.plan, QueryPlanTests.assertSearches

    def test_lowerIndex(self):
        for value, expected in (("Acc2", ["1.2"]), ("acc*", ["1.1", "1.2", "5.1"]), ("A_?", ["2.1"]),
                                ("ax1\\a%*", ["3.1", "4.1"]), ("Kiss*", [])):
            key = K(ACCESSION, "SH", value)
            self.assertMatches("STUDY", key, expected)
            self.assertSearches(self.plan("STUDY", key), "ix_DICOMStudies_AccessionNumber_lower")
        self.assertTrue([line for line in self.plan("STUDY", K(ACCESSION, "SH", "*c1")) if line.startswith("SCAN")])

    def test_manyValuesAreNoRangeEach(self):
        """A key of many exact values (a list of accession numbers) is the
        IN the lower(AccessionNumber) index looks up, with no range per
        value too (1000 values went from 0.24 s to 7.1 s on SQLite, with 10
        bound parameters a value instead of 2), and a key of many wildcard
        values gets no ranges either; a few wildcard values still do."""
        exact = "\\".join(["Acc2", "ACC1"] + [f"X{number:05}" for number in range(200)])
        wildcards = "\\".join(["acc*"] + [f"X{number:05}*" for number in range(50)])
        for value, expected, most in ((exact, ["1.1", "1.2"], 210), (wildcards, ["1.1", "1.2", "5.1"], 110),
                                      ("Acc2\\ax1\\a%*\\KISS*", ["1.2", "3.1", "4.1"], 30)):
            key = K(ACCESSION, "SH", value)
            self.assertMatches("STUDY", key, expected)
            parameters = self.parameters("STUDY", key)
            self.assertLessEqual(len(parameters), most)
        for value in (exact, "Acc2\\ax1\\a%*", "Acc2\\KISS*"):
            self.assertSearches(self.plan("STUDY", K(ACCESSION, "SH", value)), "ix_DICOMStudies_AccessionNumber_lower")

    def parameters(self, level, key):
        """The bound parameters of the statement of a find of ``key``."""
        statements = []

        def listener(conn, cursor, statement, parameters, *rest):
            statements.append(parameters)
        event.listen(self.engine, "before_cursor_execute", listener)
        try:
            self.find(level, key)
        finally:
            event.remove(self.engine, "before_cursor_execute", listener)
        return max(statements, key=len)
