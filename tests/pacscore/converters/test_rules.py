"""Tests for pacscore.converters.rules: the converter lines of dicom.ini."""

from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.config.errors import ConfigError
from pacscore.config.ini import DicomIni
from pacscore.converters.context import Outcome
from pacscore.converters.rules import SPECIAL_KEYS, Rule, filterMatches, loadRules
from pacscore.converters.script import parseScript
from tests.pacscore.converters.lines import context, registry

PATH = "/srv/pacs/dicom.ini"


def load(text):
    return loadRules(DicomIni.fromString(text, path=PATH), registry())


def ignored(events):
    return sorted(f"{e['prefix']}Converter{e['number']}" for e in events if "prefix" in e)


class LoadTests(unittest.TestCase):

    def test_importWithoutCount(self):
        """Without ImportConverters every ImportConverterN present counts."""
        rules = load("[sscscp]\nImportConverter0 = mark a\nimportconverter2 = destroy\n"
                     "ImportConverter3 =\nImportModality2 = CT\nImportCallingAE2 = MOD*\n"
                     "ImportStationName2 = ST1\nImportCalledAE2 = ARCHIVE\n")
        self.assertEqual([(r.key, r.number, r.script.text) for r in rules.importRules],
                         [("ImportConverter0", 0, "mark a"), ("ImportConverter2", 2, "destroy")])
        first, second = rules.importRules
        self.assertEqual((first.modality, first.stationName, first.calledAE, first.callingAE, first.filter),
                         ("*", "*", "*", "*", ""))
        self.assertEqual((second.modality, second.stationName, second.calledAE, second.callingAE),
                         ("CT", "ST1", "ARCHIVE", "MOD*"))
        self.assertEqual(second.script.run(context()), Outcome.DESTROY)
        self.assertEqual((rules.exportRules, rules.special), ([], {}))

    def test_importCount(self):
        with capturedLogs() as events:
            rules = load("ImportConverters = 2\nImportConverter0 = mark a\nImportConverter1 = mark b\n"
                         "ImportConverter2 = mark c\n")
        self.assertEqual([r.key for r in rules.importRules], ["ImportConverter0", "ImportConverter1"])
        self.assertEqual(ignored(events), ["ImportConverter2"])

    def test_exportCount(self):
        """ExportConverters sets how many lines are used; absent, none."""
        text = ("ExportConverter0 = forward\nExportConverter1 = defer\nExportConverter2 = mark c\n"
                "ExportModality1 = MR\nExportFilter1 = Rows = 512 and Cols = 512\n")
        with capturedLogs() as events:
            rules = load("ExportConverters = 2\n" + text.replace("forward", "mark a"))
        self.assertEqual([(r.key, r.number) for r in rules.exportRules],
                         [("ExportConverter0", 0), ("ExportConverter1", 1)])
        self.assertEqual((rules.exportRules[1].modality, rules.exportRules[1].filter),
                         ("MR", "Rows = 512 and Cols = 512"))
        self.assertEqual(rules.exportRules[1].script.run(context("export")), Outcome.DEFER)
        self.assertEqual(ignored(events), ["ExportConverter2"])
        with capturedLogs() as events:
            self.assertEqual(load(text.replace("forward", "mark a")).exportRules, [])
        self.assertEqual(ignored(events), ["ExportConverter0", "ExportConverter1", "ExportConverter2"])

    def test_special(self):
        text = "".join(f"{key} = mark {n}\n" for n, key in enumerate(SPECIAL_KEYS))
        special = load(text + "QueryConverter1 = mark q\n").special
        self.assertEqual({key: script.text for key, script in special.items()},
                         {key: f"mark {n}" for n, key in enumerate(SPECIAL_KEYS)})
        self.assertEqual({script.kind for script in special.values()}, {"import"})
        self.assertEqual(load("QueryConverter0 =\n").special, {})

    def test_syntaxErrors(self):
        """(dicom.ini, line, part of the message)"""
        cases = [
            ("# comment\nImportConverter0 = mark a\nImportConverter1 = mark b; bogus\n", 3,
             "ImportConverter1, column 9: unknown command 'bogus'"),
            ("ExportConverters = 1\nExportConverter0 = destroy\n", 2,
             "ExportConverter0, column 1: 'destroy' is not allowed in export converters"),
            ("\n\nRetrieveConverter0 = defer\n", 3,
             "RetrieveConverter0, column 1: 'defer' is not allowed in import converters"),
            ("ImportConverter0 = {mark a\n", 1, "ImportConverter0, column 1: '{' has no matching '}'"),
            ("ImportConverters = two\n", 1, "ImportConverters must be an integer"),
        ]
        for text, line, message in cases:
            error = self.assertRaises(ConfigError, load, text)
            self.assertEqual((error.path, error.line), (PATH, line), text)
            self.assertIn(message, error.message)
            self.assertTrue(str(error).startswith(f"{PATH}:{line}: "))


class MatchTests(unittest.TestCase):

    def test_filterMatches(self):
        """(filter, value, matches): case-insensitive, ``*`` the only wildcard."""
        cases = [
            ("*", "", True),
            ("*", None, True),
            ("CT", "CT", True),
            ("CT", "ct", True),
            ("ct", "CT", True),
            ("CT", "MR", False),
            ("", "", True),
            ("", None, True),
            ("", "CT", False),
            ("RT*", "RTPLAN", True),
            ("RT*", "CT", False),
            ("*PLAN", "RTPLAN", True),
            ("server*", "SERVER1", True),
            ("SERVER1", "server1 ", True),
            ("RT[1]", "RT[1]", True),
            ("RT[1]", "RT1", False),
            ("CT?", "CT1", False),
            ("C.*", "CT", False),
        ]
        for pattern, value, expected in cases:
            self.assertEqual(filterMatches(pattern, value), expected, (pattern, value))

    def test_ruleMatches(self):
        script = parseScript("mark a", "ImportConverter0", registry(), "import")
        rule = Rule("ImportConverter0", 0, script, modality="CT", stationName="", calledAE="ARCH*",
                    callingAE="*")
        self.assertTrue(rule.matches("CT", "", "archive", "ANY"))
        self.assertTrue(rule.matches("ct", "", "ARCHIVE", "ANY"))
        self.assertFalse(rule.matches("CT", "ST1", "ARCHIVE", "ANY"))
        self.assertFalse(rule.matches("CT", "", "OTHER", "ANY"))
        self.assertTrue(Rule("ImportConverter1", 1, script).matches("MR", "X", "Y", "Z"))
