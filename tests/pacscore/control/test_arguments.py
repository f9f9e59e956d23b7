"""The control commands' argument helpers."""

from twisted.trial import unittest

from pacscore.control.arguments import fields, number
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
