"""IdentifierQuoter: operators' SQL names the index's tables and columns
in any case; the text sent to the database names them as it stores them."""

from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.dialects import postgresql, sqlite
from twisted.trial import unittest

from pacscore.db.rawsql import IdentifierQuoter


class IdentifierQuoterTests(unittest.TestCase):

    def setUp(self):
        metadata = MetaData()
        self.tables = [Table("DICOMPatients", metadata, Column("PatientID", String(64)),
                             Column("PatientName", String(64)), Column("lowercase", String(8)),
                             Column("PatientBirthDate", String(8)), Column("PatientBirthTime", String(16))),
                       Table("DICOMImages", metadata, Column("SOPInstanceUID", String(64)),
                             Column("PatientID", String(64)), Column("ImageNumber", String(12)))]
        self.quoted = IdentifierQuoter(self.tables, postgresql.dialect())

    def test_namesQuotedAsStored(self):
        self.assertEqual(self.quoted("SELECT patientid, PATIENTNAME, count(*) FROM dicompatients WHERE PatientID='1'"),
                         'SELECT "PatientID", "PatientName", count(*) FROM "DICOMPatients" WHERE "PatientID"=\'1\'')
        self.assertEqual(self.quoted("SELECT DICOMImages.SOPInstanceUID FROM DICOMImages"),
                         'SELECT "DICOMImages"."SOPInstanceUID" FROM "DICOMImages"')

    def test_lowerCaseNamesNeedNoQuotes(self):
        self.assertEqual(self.quoted("SELECT LowerCase FROM DICOMPatients"),
                         'SELECT lowercase FROM "DICOMPatients"')

    def test_literalsAndQuotedNamesKept(self):
        sql = "SELECT \"PatientName\" FROM DICOMPatients WHERE PatientName LIKE 'patientid''s %' AND x = \"patientid\""
        self.assertEqual(self.quoted(sql),
                         "SELECT \"PatientName\" FROM \"DICOMPatients\" WHERE \"PatientName\" LIKE 'patientid''s %' "
                         "AND x = \"patientid\"")

    def test_otherWordsKept(self):
        sql = "SELECT PatientIDs, max(PatientID2), 'x' || Modality FROM Other WHERE a_PatientID < 3.5e1"
        self.assertEqual(self.quoted(sql), sql)

    def test_unterminatedTextKept(self):
        self.assertEqual(self.quoted("SELECT 'PatientID"), "SELECT 'PatientID")

    def test_namesCutToTruncateFieldNames(self):
        """Conquest's column names cut to 10 characters (TruncateFieldNames)
        name the one column they are the beginning of."""
        self.assertEqual(self.quoted("SELECT SOPInstanc FROM DICOMImages WHERE imagenumbe = '1'"),
                         'SELECT "SOPInstanceUID" FROM "DICOMImages" WHERE "ImageNumber" = \'1\'')
        self.assertEqual(self.quoted.storedName("SOPINSTANC"), "SOPInstanceUID")
        self.assertEqual(self.quoted.storedName("PatientNam"), "PatientName")

    def test_namesCutOtherwiseKept(self):
        """Only names cut to exactly TruncateFieldNames characters, each the
        beginning of one column's name, are taken as short names."""
        sql = "SELECT PatientBir, SOPInstan, SOPInstanceU, PatientN FROM DICOMImages"
        self.assertEqual(self.quoted(sql), 'SELECT PatientBir, SOPInstan, SOPInstanceU, PatientN FROM "DICOMImages"')
        self.assertEqual(self.quoted.storedName("PatientBir"), "PatientBir")

    def test_otherTruncateFieldNames(self):
        quoted = IdentifierQuoter(self.tables, postgresql.dialect(), truncate=6)
        self.assertEqual(quoted("SELECT SOPIns, ImageNumbe FROM DICOMImages"),
                         'SELECT "SOPInstanceUID", ImageNumbe FROM "DICOMImages"')
        unCut = IdentifierQuoter(self.tables, postgresql.dialect(), truncate=0)
        self.assertEqual(unCut("SELECT ImageNumbe FROM DICOMImages"), 'SELECT ImageNumbe FROM "DICOMImages"')

    def test_sqlite(self):
        quoted = IdentifierQuoter(self.tables, sqlite.dialect())
        self.assertEqual(quoted("select patientid from dicompatients"), 'select "PatientID" from "DICOMPatients"')
