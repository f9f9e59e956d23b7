"""Tests for pacscore.web.querytext: Conquest's ``query`` texts and search
fields read as C-FIND keys, never as SQL."""

from twisted.trial import unittest

from pacscore.config.loader import loadConfiguration
from pacscore.db.query import EXACT, QueryKey
from pacscore.web.querytext import (
    ColumnNames, QueryTextError, dateMatch, parseQueryText, quoted, searchKeys)

PATIENT_ID = 0x00100020
STUDY_UID = 0x0020000D
SERIES_UID = 0x0020000E
STUDY_DATE = 0x00080020


class QueryTextTests(unittest.TestCase):

    def setUp(self):
        configuration = loadConfiguration()
        self.columns = ColumnNames(configuration.layout, configuration.tableNames)

    def parse(self, text):
        return parseQueryText(self.columns, text)

    def test_conquestLinks(self):
        """The texts of Conquest's own links, with names cut to 10 characters."""
        self.assertEqual(self.parse("patientid = 'P1'"), [QueryKey(PATIENT_ID, EXACT, "P1")])
        self.assertEqual(self.parse("DICOMStudies.patientid = 'P1' and DICOMSeries.studyinsta = '1.2.3'"),
                         [QueryKey(PATIENT_ID, EXACT, "P1"), QueryKey(STUDY_UID, EXACT, "1.2.3")])
        self.assertEqual(self.parse("DICOMStudies.patientid = 'P 1' AND DICOMSeries.seriesinst = '1.2'"),
                         [QueryKey(PATIENT_ID, EXACT, "P 1"), QueryKey(SERIES_UID, EXACT, "1.2")])
        # "=" is SQL's equality: a "*" in a Patient ID is no wildcard
        self.assertEqual(self.parse("PatientID = 'PID*'"), [QueryKey(PATIENT_ID, EXACT, "PID*")])
        self.assertEqual(self.parse(""), [])

    def test_emptyValueIsNoUniversalMatch(self):
        """``= ''`` selects the empty values, as in SQL, not every one;
        ``= '""'`` the ID of two quotation marks."""
        empty = [QueryKey(PATIENT_ID, EXACT, '""', emptyValueMatching=True)]
        self.assertEqual(self.parse("DICOMStudies.PatientID = ''"), empty)
        self.assertEqual(self.parse("PatientID like ''"), empty)
        self.assertEqual(self.parse("""PatientID = '""'"""), [QueryKey(PATIENT_ID, EXACT, '""')])

    def test_likeAndQuotes(self):
        self.assertEqual(self.parse("PatientName like '%O''Br_en%'"),
                         [QueryKey(0x00100010, "PN", "*O'Br?en*")])
        self.assertEqual(self.parse("StudyDate like '%2024%'"), [QueryKey(STUDY_DATE, "DA", "20240101-20241231")])
        self.assertEqual(self.parse("StudyDate like '2004011%'"), [QueryKey(STUDY_DATE, "DA", "20040110-20040119")])
        self.assertEqual(self.parse("StudyDate like '2%'"), [QueryKey(STUDY_DATE, "DA", "20000000-29999999")])
        self.assertEqual(self.parse(f"PatientID = {quoted(chr(39) + 'x')}"), [QueryKey(PATIENT_ID, EXACT, "'x")])

    def test_notSQL(self):
        for text in ("PatientID = 'a' or 1=1", "PatientID = 'a'; drop table DICOMPatients",
                     "PatientID = 'a' and", "PatientID = a", "1=1", "PatientID = 'unclosed",
                     "DICOMPatients.PatientID = 'a' and (PatientName = 'b')"):
            self.assertRaises(QueryTextError, self.parse, text)

    def test_unknownNames(self):
        error = self.assertRaises(QueryTextError, self.parse, "Nonsense = 'a'")
        self.assertIn("Nonsense is not a column", str(error))
        error = self.assertRaises(QueryTextError, self.parse, "DICOMOther.PatientID = 'a'")
        self.assertIn("DICOMOther is not a table", str(error))

    def test_exactNameBeforePrefix(self):
        """PatientID is the column of that name, not the first starting so."""
        self.assertEqual(self.columns.lookup(None, "patientid").tag, PATIENT_ID)
        self.assertEqual(self.columns.lookup("DICOMImages", "SOPInstanc").tag, 0x00080018)


class SearchFieldTests(unittest.TestCase):

    def test_searchKeys(self):
        self.assertEqual(searchKeys(" P1 ", "SMITH", "2024"), [
            QueryKey(PATIENT_ID, "LO", "*P1*", foldCase=True), QueryKey(0x00100010, "PN", "*SMITH*"),
            QueryKey(STUDY_DATE, "DA", "20240101-20241231")])
        self.assertEqual(searchKeys(), [])

    def test_conquestsSqlWildcardsInSearchFields(self):
        """Conquest matches like '%<field>%': its users type % and _ in the
        ID and name fields, which are wildcards here too, as * and ? are."""
        self.assertEqual(searchKeys("PAT%1_", "O_Br%n"), [
            QueryKey(PATIENT_ID, "LO", "*PAT*1?*", foldCase=True), QueryKey(0x00100010, "PN", "*O?Br*n*")])
        self.assertEqual(searchKeys("_"), [QueryKey(PATIENT_ID, "LO", "*?*", foldCase=True)])

    def test_dates(self):
        self.assertEqual(dateMatch("202403"), "20240301-20240331")
        self.assertEqual(dateMatch("20240315"), "20240315")
        self.assertEqual(dateMatch("2024.03.01-2024.03.31"), "20240301-20240331")
        self.assertEqual(dateMatch("-20240101"), "-20240101")
        for bad in ("March", "20241", "2024-13-01x", "2024-13", "1-2"):
            self.assertRaises(QueryTextError, dateMatch, bad)

    def test_rangesOfYearsAndMonths(self):
        """A yyyy or yyyymm end of a range stands for all its days: the
        last year or month is not left out."""
        self.assertEqual(dateMatch("2019-2020"), "20190101-20201231")
        self.assertEqual(dateMatch("201911-201912"), "20191101-20191231")
        self.assertEqual(dateMatch("2019-20200315"), "20190101-20200315")
        self.assertEqual(dateMatch("2019-"), "20190101-")
        self.assertEqual(dateMatch("-201912"), "-20191231")
