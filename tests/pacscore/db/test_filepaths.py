"""ObjectFile's stored form: a UTF-8 path as it is, any other escaped so
that it reads back the same."""

import os

from twisted.trial import unittest

from pacscore.db.filepaths import pathOf, storedPath


class StoredPathTests(unittest.TestCase):

    def test_utf8PathsAsTheyAre(self):
        for path in ("PAT1/1.2.3_1.dcm", "Müller/100%.dcm", "a\\b", None):
            self.assertEqual(storedPath(path), path)
            self.assertEqual(pathOf(path), path)

    def test_otherPathsEscapedAndReadBack(self):
        for raw in (b"M\xfcller/100%.dcm", b"\xc3\xe9\x80A/\xff\xfe", b"\xef\xbf\xbfodd%25"):
            path = os.fsdecode(raw)
            stored = storedPath(path)
            stored.encode("utf-8")  # what every driver stores
            self.assertEqual(os.fsencode(pathOf(stored)), raw)
        self.assertEqual(storedPath(os.fsdecode(b"M\xfcller/100%.dcm")), "\uffffM%FCller/100%25.dcm")
