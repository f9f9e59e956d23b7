"""Tests for pacscore.dicom.uids."""

from twisted.trial import unittest

from pacscore.dicom.uids import isUID


class IsUIDTests(unittest.TestCase):

    def test_uids(self):
        for text in ("1.2.840.10008.1.2.1", "1", "1." + "2" * 62):
            self.assertTrue(isUID(text), text)

    def test_notUIDs(self):
        for text in ("", "1.2.a", "1.2.\u0663", "1.2 ", "1.2\x00", "1." + "2" * 63, "１.２"):
            self.assertFalse(isUID(text), text)
