"""Tests for pacscore.dicom.datetimes: real dates and times, and C-FIND
range matches of them."""

from twisted.trial import unittest

from pacscore.dicom.datetimes import isDateTime, isMatchValue, isRangeMatch, rangeEnds


class DateTimeTests(unittest.TestCase):

    def test_dateTimes(self):
        for value in ("2024", "202402", "20240229", "2024022923", "202402292359", "20240229235960",
                      "20240229235959.123456", "20240229235959+0100", "2024-1200", "2024+1400"):
            self.assertTrue(isDateTime(value), value)
        for value in ("", "24", "202413", "20230229", "2024022924", "202402292360", "20240229235961",
                      "20240229235959.1234567", "20240229235959+2500", "2024-1300", "2024+1460", "2024 ",
                      "20240229T000000", "2024-", "0000"):
            self.assertFalse(isDateTime(value), value)

    def test_rangeMatches(self):
        for value, vr in (("20240102", "DA"), ("20240102-", "DA"), ("-20240102", "DA"), ("20240101-20240102", "DA"),
                          ("10", "TM"), ("1015-", "TM"), ("-101500.5", "TM"), ("2024-0500", "DT"),
                          ("2024-0500-", "DT"), ("2024-2025-0500", "DT"), ("-2025", "DT")):
            self.assertTrue(isRangeMatch(value, vr), (value, vr))
        for value, vr in (("-", "DA"), ("2024", "DA"), ("20240102T000000-", "DA"), ("20240102--", "DA"),
                          ("20240101-20240102-20240103", "DA"), ("25", "TM"), ("10:15", "TM"), ("*", "DT"),
                          ("2024--2025", "DT")):
            self.assertFalse(isRangeMatch(value, vr), (value, vr))

    def test_rangeEnds(self):
        """A DT's ``-`` that is its offset's separates nothing: one DT is one
        value, a range is split where a DT (or nothing) is on either side."""
        for value, ends in (("20240102001500-0500", None), ("2024-0500", None),
                            ("20240102001500-0500-", ("20240102001500-0500", "")),
                            ("-20240102001500-0500", ("", "20240102001500-0500")),
                            ("20240102-0500-20240103+0100", ("20240102-0500", "20240103+0100")),
                            ("20240101-20240102", ("20240101", "20240102")), ("2024--2025", None)):
            self.assertEqual(rangeEnds(value, "DT"), ends, value)
        self.assertEqual(rangeEnds("1000-1100", "TM"), ("1000", "1100"))

    def test_matchValues(self):
        """What C-FIND matches by: ACR-NEMA dates and times with colons,
        ranges of them, wildcards in one value; not text, a year as a DA, a
        DT as a DA's range end."""
        for value, vr in (("2024.01.02", "DA"), ("2024.01.01-2024.01.31", "DA"), ("10:15", "TM"),
                          ("10:15:00-11:00", "TM"), ("*", "DA"), ("2024*", "DA"), ("10?5*", "TM"),
                          ("2024*", "DT"), ("20240102", "DA"), ("2024-0500-", "DT")):
            self.assertTrue(isMatchValue(value, vr), (value, vr))
        for value, vr in (("abc", "DA"), ("abc*", "DA"), ("2024", "DA"), ("20240102T000000-", "DA"), ("10:61", "TM"),
                          ("2024*-", "DA"), ("-", "TM")):
            self.assertFalse(isMatchValue(value, vr), (value, vr))
