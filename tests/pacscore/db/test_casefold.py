"""The length-keeping case fold of C-FIND's matching outside ASCII."""

from twisted.trial import unittest

from pacscore.db.casefold import INTO_ASCII, caseFolded


class CaseFoldedTests(unittest.TestCase):

    def test_oneCharacterForEach(self):
        """ß, whose full case fold is two characters, stays as it is; ẞ
        becomes ß, İ i, the first character of their lower case (İ's is i
        and a combining dot), as the lower() of PostgreSQL and MariaDB;
        the others fold as Python folds."""
        self.assertEqual(caseFolded("Straße^JÜRGEN"), "straße^jürgen")
        self.assertEqual(caseFolded("STRAẞE"), "straße")
        self.assertEqual(caseFolded("İLHAN^AYŞE"), "ilhan^ayşe")
        self.assertEqual(caseFolded("ØDEGÅRD^ΟΔΥΣΣΕΑΣ"), "ødegård^οδυσσεασ")
        self.assertEqual(caseFolded(""), "")

    def test_intoAscii(self):
        """INTO_ASCII: each character outside ASCII that folds into an ASCII letter, and that letter."""
        self.assertEqual(INTO_ASCII, {chr(code): caseFolded(chr(code)) for code in range(0x80, 0x110000)
                                      if caseFolded(chr(code)).isascii()})
