"""Tests for pacscore.converters.conditions: the if... family and between."""

import time

from pydicom import Dataset
from twisted.trial import unittest

from pacscore.converters.conditions import matches
from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.script import parseScript
from tests.pacscore.converters.lines import KEYS, context, patientDataset, registry, run


def holds(condition, kind="import", **contextArguments):
    """Whether the statement after ``condition`` runs."""
    outcome, marks, _ = run(f"{condition}; mark a", kind=kind, **contextArguments)
    assert outcome is Outcome.CONTINUE
    return marks == "a"


def clockAt(hour):
    """A wall clock at half past ``hour``."""
    return lambda: time.mktime((2024, 3, 5, hour, 30, 0, 0, 0, -1))


class ConditionTests(unittest.TestCase):

    def test_conditions(self):
        """(condition, holds); the data set has Patient ID 123, Modality RTPLAN."""
        cases = [
            ('ifnotempty "x"', True),
            ('ifnotempty ""', False),
            ('ifnotempty "%i"', True),
            ('ifnotempty "%V0010,0010"', False),
            ('ifempty "%V0010,0010"', True),
            ('ifempty " "', False),
            ('ifequal "a", "a"', True),
            ('ifequal "a","A"', False),
            ('ifequal "%i[0,1]", "12"', True),
            ('ifequal "a;b", "a;b"', True),
            ('ifnotequal "a", "A"', True),
            ('ifnotequal "%m", "RTPLAN"', False),
            ('ifmatch "%m", "rt*"', True),
            ('ifmatch "%m", "*PLAN"', True),
            ('ifmatch "%m", "*tpl*"', True),
            ('ifmatch "%m", "rtplan"', True),
            ('ifmatch "%m", "rt"', False),
            ('ifmatch "%m", "*ct*"', False),
            ('ifnotmatch "%m", "CT*"', True),
            ('ifnotmatch "%m", "RT*"', False),
            ('ifnumequal "1.0", "1"', True),
            ('ifnumequal "abc", "0"', True),
            ('ifnumequal "12abc", "12"', True),
            ('ifnumequal " 2e1", "2"', True),
            # integers, as Conquest's atoi reads them
            ('ifnumequal "1.9", "1"', True),
            ('ifnumgreater "5.5", "5"', False),
            ('ifnumless "4.5", "4"', False),
            ('ifnumnotequal "-0.5", "0"', False),
            ('ifnumnotequal "1", "2"', True),
            ('ifnumnotequal "1", "01"', False),
            ('ifnumgreater "10", "9"', True),
            ('ifnumgreater "9", "10"', False),
            ('ifnumgreater "%i", "122.5"', True),
            ('ifnumgreater "%i", "123.5"', False),
            ('ifnumless "-1", "0"', True),
            ('ifnumless "1", "1"', False),
            # C's atoi: ASCII blanks and digits only, a control character no blank (no error)
            ('ifnumequal "\x1c5", "0"', True),
            ('ifnumequal "\u0663", "0"', True),
            ('ifnumequal "\xa07", "0"', True),
            ('between "0", "24"', True),
            ('between "5", "5"', False),
        ]
        for condition, expected in cases:
            self.assertEqual(holds(condition), expected, condition)
            self.assertEqual(holds(condition, kind="export"), expected, condition)

    def test_sequences(self):
        """A sequence that is there is not empty (Conquest reads it
        "(sequence)"); a missing one is."""
        dataset = patientDataset()
        dataset.OtherPatientIDsSequence = [Dataset(), Dataset()]
        for condition, expected in [('ifnotempty "%V0010,1002"', True), ('ifempty "%V0010,1002"', False),
                                    ('ifempty "%V0008,1140"', True)]:
            lineContext = context()
            lineContext.dataset = dataset
            outcome = parseScript(f"{condition}; mark a", KEYS["import"], registry(), "import").run(lineContext)
            self.assertEqual((condition, outcome, lineContext.variables["x"] == "a"),
                             (condition, Outcome.CONTINUE, expected))

    def test_between(self):
        """(first, last, hour of the wall clock, holds)"""
        cases = [
            ("9", "17", 9, True), ("9", "17", 16, True), ("9", "17", 17, False), ("9", "17", 8, False),
            ("22", "6", 23, True), ("22", "6", 5, True), ("22", "6", 6, False), ("22", "6", 12, False),
            ("22", "6", 22, True),
        ]
        for first, last, hour, expected in cases:
            self.assertEqual(holds(f'between "{first}", "{last}"', wallClock=clockAt(hour)), expected,
                             (first, last, hour))

    def test_helpers(self):
        self.assertTrue(matches("ABC", "*"))
        self.assertTrue(matches("", "*"))
        self.assertFalse(matches("ABC", ""))

    def test_syntax(self):
        cases = [
            ('ifequal "a"', "expected 2 quoted strings, got 1"),
            ('ifnotempty "a", "b"', "expected 1 quoted string, got 2"),
            ("ifequal a, b", "expected a double-quoted string"),
            ('ifequal "a" "b"', "expected ','"),
            ('between "9", "17", "18"', "expected 2 quoted strings, got 3"),
            ("ifempty", "expected a double-quoted string"),
        ]
        for line, message in cases:
            error = self.assertRaises(ConverterSyntaxError, parseScript, line + "; nop", "ImportConverter0",
                                      registry(), "import")
            self.assertIn(message, str(error), line)
            self.assertTrue(str(error).startswith("ImportConverter0, column 1: "))
