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
                             Column("PatientName", String(64)), Column("lowercase", String(8))),
                       Table("DICOMImages", metadata, Column("SOPInstanceUID", String(64)),
                             Column("PatientID", String(64)))]
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

    def test_sqlite(self):
        quoted = IdentifierQuoter(self.tables, sqlite.dialect())
        self.assertEqual(quoted("select patientid from dicompatients"), 'select "PatientID" from "DICOMPatients"')
