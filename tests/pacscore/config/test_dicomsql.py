"""Tests for pacscore.config.dicomsql: the dicom.sql database layout."""

from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.dicomsql import Column, DatabaseLayout
from pacscore.config.errors import ConfigError

HEADER = """\
/*
#       DICOM Database layout
#       (File DICOM.SQL)
#
#           *Patient*
# Format:
# { Group, Element, Column Name, Column Length, SQL-Type, DICOM-Type }
*/
"""

PATIENT = """
*Patient*
{
    { 0x0010, 0x0020, "PatientID", 64, SQL_C_CHAR, DT_STR },
    { 0x0010, 0x0010, "PatientName", 64, SQL_C_CHAR, DT_STR },
    { 0x0010, 0x0030, "PatientBirthDate", 8, SQL_C_DATE, DT_DATE },
    { 0x0010, 0x0040, "PatientSex", 16, SQL_C_CHAR, DT_STR }
}
"""

STUDY = """
*Study*
{
    { 0x0020, 0x000d, "StudyInstanceUID", 64, SQL_C_CHAR, DT_UI },
    { 0x0008, 0x0020, "StudyDate", 8, SQL_C_DATE, DT_DATE },
    { 0x0008, 0x0061, "StudyModality", 64, SQL_C_CHAR, DT_MSTR },
    { 0x0010, 0x0020, "PatientID", 64, SQL_C_CHAR, DT_STR }
}
"""

SERIES = """
*Series*
{
    { 0x0020, 0x000e, "SeriesInstanceUID", 64, SQL_C_CHAR, DT_UI },
    { 0x0008, 0x103e, "SeriesDescription", 64, SQL_C_CHAR, DT_STR },
    { 0x0020, 0x000d, "StudyInstanceUID", 64, SQL_C_CHAR, DT_UI }
}
"""

IMAGE = """
*Image*
{
    { 0x0008, 0x0018, "SOPInstanceUID", 64, SQL_C_CHAR, DT_UI },
    { 0x0028, 0x0010, "Rows", 5, SQL_C_CHAR, DT_UINT16 },
    { 0x0020, 0x000e, "SeriesInstanceUID", 64, SQL_C_CHAR, DT_UI }
}
"""

WORKLIST = """
*WorkList*
{
    { 0x0008, 0x0050, "AccessionNumber", 16, SQL_C_CHAR, DT_STR, "OBR.3" },
    { 0x0040, 0x0100, "-----", 0, SQL_C_CHAR, DT_STARTSEQUENCE, "---" },
    { 0x0040, 0x0002, "StartDate", 8, SQL_C_DATE, DT_DATE, "OBR.7.DATE" },
    { 0x0040, 0x0100, "-----", 0, SQL_C_CHAR, DT_ENDSEQUENCE, "---" }
}
"""

LAYOUT = HEADER + PATIENT + STUDY + SERIES + IMAGE + WORKLIST


def lineOf(text, fragment):
    return text[:text.index(fragment)].count("\n") + 1


class ReadTests(unittest.TestCase):
    """Parsing the layout."""

    def test_tables(self):
        layout = DatabaseLayout.fromString(LAYOUT, "etc/dicom.sql")
        self.assertEqual(layout.path, "etc/dicom.sql")
        self.assertEqual([c.name for c in layout.patient],
                         ["PatientID", "PatientName", "PatientBirthDate", "PatientSex"])
        self.assertEqual(layout.patient[0], Column(0x0010, 0x0020, "PatientID", 64, "SQL_C_CHAR", "DT_STR"))
        self.assertEqual(layout.study[2].dicomType, "DT_MSTR")
        self.assertEqual(layout.series[-1].name, "StudyInstanceUID")
        self.assertEqual(layout.image[1], Column(0x0028, 0x0010, "Rows", 5, "SQL_C_CHAR", "DT_UINT16"))
        self.assertEqual(layout.image[1].tag, 0x00280010)

    def test_worklistHasHL7(self):
        layout = DatabaseLayout.fromString(LAYOUT)
        self.assertEqual(layout.worklist[0].hl7, "OBR.3")
        self.assertEqual(layout.worklist[2], Column(0x0040, 0x0002, "StartDate", 8, "SQL_C_DATE",
                                                    "DT_DATE", "OBR.7.DATE"))
        self.assertTrue(layout.worklist[1].isSequenceMarker)
        self.assertEqual(layout.worklist[3].dicomType, "DT_ENDSEQUENCE")
        self.assertIsNone(layout.patient[0].hl7)

    def test_hl7FieldWithoutClosingQuoteAsConquestReadsIt(self):
        """Conquest 1.4.17's own dicom.sql.postgres ends its worklist with
        ``"OBR.27 }``: the field is the text up to the blank or '}', with a
        warning naming the line."""
        text = LAYOUT.replace('"OBR.7.DATE" },', '"OBR.7.DATE },').replace('DT_ENDSEQUENCE, "---" }',
                                                                         'DT_ENDSEQUENCE, "---}')
        with capturedLogs() as events:
            layout = DatabaseLayout.fromString(text, "etc/dicom.sql")
        self.assertEqual([c.hl7 for c in layout.worklist], ["OBR.3", "---", "OBR.7.DATE", "---"])
        self.assertEqual([formatEvent(e) for e in events],
                         [f"etc/dicom.sql:{lineOf(text, line)}: the HL7 field in entry {name!r} of *WorkList* "
                          f"{field} has no closing quote: read as {field[1:]!r}, as Conquest reads it"
                          for line, name, field in (("StartDate", "StartDate", '"OBR.7.DATE'),
                                                    ('"---}', "-----", '"---'))])

    def test_indexedTags(self):
        layout = DatabaseLayout.fromString(LAYOUT)
        self.assertIn(0x00100020, layout.indexedTags())
        self.assertNotIn(0x00080050, layout.indexedTags())

    def test_indexedTagsWithTheirColumnsVRs(self):
        """What a value of unknown VR (a private tag in implicit VR) of a
        column is read as: its DT type's VR, text LO."""
        layout = DatabaseLayout.fromString(LAYOUT)
        self.assertEqual([layout.indexedTags()[tag] for tag in (0x00100020, 0x00100030, 0x0020000D)],
                         ["LO", "DA", "UI"])

    def test_worklistIsOptional(self):
        layout = DatabaseLayout.fromString(PATIENT + STUDY + SERIES + IMAGE)
        self.assertEqual(layout.worklist, [])

    def test_lenientCommasLikeConquest(self):
        text = PATIENT.replace('DT_STR },\n    { 0x0010, 0x0010', 'DT_STR }\n    { 0x0010, 0x0010')
        text = text.replace('"PatientSex", 16, SQL_C_CHAR, DT_STR }', '"PatientSex", 16, SQL_C_CHAR, DT_STR },')
        self.assertNotEqual(text, PATIENT)
        layout = DatabaseLayout.fromString(text + STUDY + SERIES + IMAGE)
        self.assertEqual(len(layout.patient), 4)

    def test_numbersAndLayout(self):
        text = ('# hash comment\n*Patient* { {0X0010,0x002A,"PatientID",64,SQL_C_CHAR,DT_STR} }\n'
                '  # indented comment\n'
                '*Study*{{32,13,"StudyInstanceUID",64,SQL_C_CHAR,DT_UI}{16,32,"PatientID",64,SQL_C_CHAR,DT_STR}}'
                '/* c */*Series*\n'
                '{{0x0020,0x000E,"SeriesInstanceUID",64,SQL_C_CHAR,DT_UI},{32,13,"StudyInstanceUID",64,SQL_C_CHAR,DT_UI}}\n'
                '*Image*\n{{0x0008,0x0018,"SOPInstanceUID",64,SQL_C_CHAR,DT_UI}'
                '{0x0020,0x000E,"SeriesInstanceUID",64,SQL_C_CHAR,DT_UI}}')
        layout = DatabaseLayout.fromString(text)
        self.assertEqual(layout.patient[0].tag, 0x0010002A)
        self.assertEqual((layout.study[0].group, layout.study[0].element), (32, 13))
        self.assertEqual(layout.series[0].element, 0x000E)

    def test_fromFile(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(LAYOUT)
        layout = DatabaseLayout.fromFile(path)
        self.assertEqual(layout.path, path)
        self.assertEqual(len(layout.worklist), 4)

    def test_anAnsiFileIsNotSaidToBeWrittenBack(self):
        """A dicom.sql saved as "ANSI" (cp1252) is read so, with a warning
        that does not say it is written back: pacs never writes it."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(("/* Caf\xe9 */\n" + LAYOUT).encode("cp1252"))
        with capturedLogs() as events:
            layout = DatabaseLayout.fromFile(path)
        self.assertEqual(len(layout.worklist), 4)
        self.assertEqual([formatEvent(e) for e in events if "cp1252" in formatEvent(e)],
                         [f"{path}:1: not UTF-8: the file is read as Windows' cp1252 (\"ANSI\")"])


class ErrorTests(unittest.TestCase):
    """Each error is a ConfigError naming the file and the line of the problem."""

    def assertError(self, text, line, fragment):
        error = self.assertRaises(ConfigError, DatabaseLayout.fromString, text, "etc/dicom.sql")
        self.assertIn(f"etc/dicom.sql:{line}:", str(error))
        self.assertIn(fragment, str(error))

    def test_unknownTable(self):
        text = LAYOUT.replace("*Series*", "*Serie*")
        self.assertError(text, lineOf(text, "*Serie*"), "unknown table *Serie*")

    def test_badNumber(self):
        text = LAYOUT.replace("0x0061", "0x00G1")
        self.assertError(text, lineOf(text, "0x00G1"), "bad number '0x00G1'")

    def test_badLength(self):
        text = LAYOUT.replace('"Rows", 5,', '"Rows", five,')
        self.assertError(text, lineOf(text, "five"), "'five'")

    def test_missingOpeningBraceOfTable(self):
        text = LAYOUT.replace("*Image*\n{", "*Image*\n")
        self.assertError(text, lineOf(text, "{ 0x0008, 0x0018"), "closing *Image*, got '0x0008'")

    def test_missingOpeningBraceOfEntry(self):
        text = LAYOUT.replace('{ 0x0008, 0x0020, "StudyDate"', '0x0008, 0x0020, "StudyDate"')
        self.assertError(text, lineOf(text, '0x0008, 0x0020, "StudyDate"'), "expected '{' starting an entry")

    def test_missingClosingBraceOfEntry(self):
        text = LAYOUT.replace('"StudyDate", 8, SQL_C_DATE, DT_DATE },', '"StudyDate", 8, SQL_C_DATE, DT_DATE')
        self.assertError(text, lineOf(text, "StudyModality"),
                         "expected '}' closing entry 'StudyDate' of *Study*, got '{'")

    def test_missingClosingBraceOfTableAtEndOfFile(self):
        text = HEADER + PATIENT + STUDY + SERIES + IMAGE[:IMAGE.rindex("}")]
        self.assertError(text, text.count("\n"), "unexpected end of file, expected '}' closing *Image*")

    def test_missingQuote(self):
        text = LAYOUT.replace('"SeriesDescription"', '"SeriesDescription')
        self.assertError(text, lineOf(text, "SeriesDescription"), "missing closing quote")
        text = LAYOUT.replace('"-----", 0, SQL_C_CHAR, DT_STARTSEQUENCE, "---"',
                              '"-----, 0, SQL_C_CHAR, DT_STARTSEQUENCE')
        self.assertError(text, lineOf(text, "DT_STARTSEQUENCE"), "missing closing quote")

    def test_unquotedName(self):
        text = LAYOUT.replace('"SeriesDescription"', "SeriesDescription")
        self.assertError(text, lineOf(text, "SeriesDescription"), "quoted string")

    def test_requiredTableAbsent(self):
        text = HEADER + PATIENT + STUDY + IMAGE + WORKLIST
        self.assertError(text, text.count("\n"), "*Series* is missing")

    def test_requiredTableEmpty(self):
        text = PATIENT + STUDY + SERIES + "*Image*\n{\n}\n"
        self.assertError(text, text.count("\n"), "*Image* is missing or empty")

    def test_unknownTypes(self):
        text = LAYOUT.replace('"PatientBirthDate", 8, SQL_C_DATE', '"PatientBirthDate", 8, SQL_C_TIME', 1)
        self.assertError(text, lineOf(text, "SQL_C_TIME"), "unknown SQL type 'SQL_C_TIME'")
        text = LAYOUT.replace('"Rows", 5, SQL_C_CHAR, DT_UINT16', '"Rows", 5, SQL_C_CHAR, DT_INT16')
        self.assertError(text, lineOf(text, "DT_INT16"), "unknown DICOM type 'DT_INT16'")

    def test_hl7FieldOutsideWorkList(self):
        text = LAYOUT.replace('"PatientSex", 16, SQL_C_CHAR, DT_STR }',
                              '"PatientSex", 16, SQL_C_CHAR, DT_STR, "PID.8" }')
        self.assertError(text, lineOf(text, '"PID.8"'), "only allowed in *WorkList*")

    def test_tableTwice(self):
        text = LAYOUT + STUDY
        self.assertError(text, text[:text.rindex("*Study*")].count("\n") + 1, "*Study* is defined twice")

    def test_tagBeyond16Bits(self):
        text = LAYOUT.replace("0x0061", "0x10061")
        self.assertError(text, lineOf(text, "0x10061"), "does not fit in 16 bits")

    def test_unclosedComment(self):
        text = PATIENT + "/* unfinished\n" + STUDY
        self.assertError(text, lineOf(text, "/*"), "never closed")

    def test_strayCharacter(self):
        text = LAYOUT.replace('"StudyDate", 8,', '"StudyDate"; 8,')
        self.assertError(text, lineOf(text, '"StudyDate";'), "unexpected character ';'")

    def test_strayClosingBraceAsInTheManualsPdfText(self):
        # The manual's printed text has "ImageTime ... },\n}" in the middle of *Image*.
        text = LAYOUT.replace('"Rows", 5, SQL_C_CHAR, DT_UINT16 },', '"Rows", 5, SQL_C_CHAR, DT_UINT16 },\n}')
        self.assertError(text, lineOf(text, '"Rows"') + 2, "expected a table header like *Patient*, got '{'")

    def test_lastColumnNotTheLink(self):
        # Conquest's manual 7.3: the last entry of *Study*, *Series* and *Image*
        # is the link to the level above; a column added after it would be
        # taken as the link.
        added = '\n    { 0x0018, 0x0050, "SliceThickness", 16, SQL_C_CHAR, DT_STR }'
        for table, link, name in [("IMAGE", '"SeriesInstanceUID", 64, SQL_C_CHAR, DT_UI }', "SeriesInstanceUID (0020,000E)"),
                                  ("SERIES", '"StudyInstanceUID", 64, SQL_C_CHAR, DT_UI }', "StudyInstanceUID (0020,000D)"),
                                  ("STUDY", '"PatientID", 64, SQL_C_CHAR, DT_STR }', "PatientID (0010,0020)")]:
            block = globals()[table]
            text = LAYOUT.replace(block, block.replace(link, link + "," + added))
            header = "*" + table.capitalize() + "*"
            self.assertError(text, lineOf(text, "SliceThickness"),
                             f"the last column of {header} must be {name}, its link to the")
