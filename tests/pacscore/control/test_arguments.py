"""The control commands' argument helpers."""

from twisted.trial import unittest

from pacscore.control.arguments import fileFields, fields, number, splitFile
from pacscore.control.context import CommandError


class ArgumentTests(unittest.TestCase):

    def test_fields(self):
        self.assertEqual(fields(" 2 , %s, %s", 2), ["2", " %s, %s"])
        self.assertEqual(fields("2", 3), ["2", "", ""])

    def test_number(self):
        self.assertEqual(number(" 42 ", "index"), 42)

    def test_numberIsASCIIDigitsOnly(self):
        for text in ("\u00b2", "\u0661\u0662", "\U0001d7d9", "-1", "1.5", "", "x"):
            error = self.assertRaises(CommandError, number, text, "index")
            self.assertIn("index must be a number", str(error))

    def test_aCommaInAFileName(self):
        """Conquest's CommaInFilenameWorkAround: a comma is part of the file
        name while the text after it still names a file (.dcm, .v2, .hl7,
        .gz in any case); it ended the name at the first comma."""
        self.assertEqual(fileFields("/in/DOE,JOHN.dcm", 2), ["/in/DOE,JOHN.dcm", ""])
        self.assertEqual(fileFields("/in/DOE,JOHN.DCM,NEWID", 2), ["/in/DOE,JOHN.DCM", "NEWID"])
        self.assertEqual(fileFields("/in/a,b,c.V2, 64,x.jpg", 3), ["/in/a,b,c.V2", "64", "x.jpg"])
        self.assertEqual(fileFields("/in/x.dcm,PAT,1", 2), ["/in/x.dcm", "PAT,1"])
        self.assertEqual(fileFields("/in/x", 3), ["/in/x", "", ""])
        self.assertEqual(splitFile("/in/x"), ("/in/x", None))
        self.assertEqual(splitFile("/in/x,"), ("/in/x", ""))
