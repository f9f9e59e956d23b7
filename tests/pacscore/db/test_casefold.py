"""The length-keeping case fold of C-FIND's matching outside ASCII."""

from twisted.trial import unittest

from pacscore.db.casefold import caseFolded


class CaseFoldedTests(unittest.TestCase):

    def test_oneCharacterForEach(self):
        """ß and İ, whose full case folds are two characters, stay as they
        are; ẞ becomes ß, its lower case; the others fold as Python folds."""
        self.assertEqual(caseFolded("Straße^JÜRGEN"), "straße^jürgen")
        self.assertEqual(caseFolded("STRAẞE"), "straße")
        self.assertEqual(caseFolded("İLHAN^AYŞE"), "İlhan^ayşe")
        self.assertEqual(caseFolded("ØDEGÅRD^ΟΔΥΣΣΕΑΣ"), "ødegård^οδυσσεασ")
        self.assertEqual(caseFolded(""), "")
