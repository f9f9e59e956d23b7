"""Tests for pacscore.converters.preferences: storage, compression, testmode."""

from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.script import parseScript
from tests.pacscore.converters.lines import registry, run


class PreferenceTests(unittest.TestCase):

    def test_set(self):
        """(line, kind, attribute of the context, value)"""
        cases = [
            ("storage MAG1", "import", "storageDevice", "MAG1"),
            ("storage MAG%i[2,2]", "import", "storageDevice", "MAG3"),
            ("compression j2", "import", "compression", "j2"),
            ("compression JK", "import", "compression", "JK"),
            ("compression un", "import", "compression", "un"),
            ("compression n4", "import", "compression", "n4"),
            ("testmode .1", "import", "testMode", ".1"),
            ("testmode .%i", "export", "testMode", ".123"),
            ("testmode", "import", "testMode", ""),
        ]
        for line, kind, attribute, value in cases:
            outcome, marks, context = run(line + "; mark a", kind=kind)
            self.assertEqual((outcome, marks), (Outcome.CONTINUE, "a"), line)
            self.assertEqual(getattr(context, attribute), value, line)

    def test_unsupportedCompression(self):
        """An unknown code is logged and leaves the object as it came."""
        for code in ("v2", "zz"):
            with capturedLogs() as events:
                outcome, marks, context = run(f"compression {code}; mark a")
            self.assertEqual((outcome, marks, context.compression), (Outcome.CONTINUE, "a", None))
            [event] = [e for e in events if e.get("code") == code]
            self.assertEqual(event["converter"], "ImportConverter3")

    def test_syntax(self):
        for line, kind, message in [("storage", "import", "'storage' needs an argument"),
                                    ("compression", "import", "'compression' needs an argument"),
                                    ("storage MAG1", "export", "not allowed in export converters"),
                                    ("compression j2", "export", "not allowed in export converters")]:
            error = self.assertRaises(ConverterSyntaxError, parseScript, line, "X", registry(), kind)
            self.assertIn(message, str(error))
