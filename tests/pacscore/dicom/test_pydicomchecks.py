"""Tests for pacscore.dicom.pydicomchecks."""

from pydicom import config
from pydicom.valuerep import validate_value
from twisted.trial import unittest

from pacscore.dicom.pydicomchecks import invalidTexts

TEXTS = ["", "ct", "CT", "CT_1 X", "A" * 16, "A" * 17, "1-3", " 7 ", "+12", "1e3", " 1.5 ", ".5", "1.", "1,5",
         "-77.2040634155", "1" * 17, "20040119", "20041301", "1997.04.24", "20040119-", "-20040119",
         "072730", "240000", "120000.123456 ", "14:04:38", "1200-1300", "2004011907", "2004011907+0100",
         "1.2.840.10008.1.2", "1.02", "01.2", "1..2", "1.2.", "1.2\n", "9" * 65, "012Y", "12 years",
         "Müller^Hans", "A^B=C^D=E^F", "x" * 65, "x" * 70 + "^y", "a\\b", "\x01", "http://x.org/a b",
         "https://x.org/a"]


class InvalidTextsTests(unittest.TestCase):

    def test_thoseOfPydicomsValidators(self):
        """invalidTexts checks each VR's length and pattern itself (at a
        fraction of validate_value's cost) and remembers short texts: it
        finds invalid exactly the texts pydicom's validators refuse, the
        first time and when asked again."""
        for vr in ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR",
                   "UT"):
            for text in TEXTS:
                try:
                    validate_value(vr, text, config.RAISE)
                    expected = []
                except ValueError:
                    expected = [f"(0010,0020) {text!r} is not a valid {vr} value"] if len(text) <= 64 else 1
                for _ in range(2):
                    found = invalidTexts(0x00100020, vr, [text])
                    self.assertEqual(found if expected != 1 else len(found), expected, (vr, text))
