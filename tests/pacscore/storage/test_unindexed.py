"""Tests for pacscore.storage.unindexed: the lists of the copies stores left unindexed."""

import os

from twisted.trial import unittest

from pacscore.storage.devices import MagDevice
from pacscore.storage.unindexed import UnindexedCopies


class UnindexedCopiesTests(unittest.TestCase):

    def setUp(self):
        self.device = MagDevice("MAG0", self.mktemp())
        os.makedirs(self.device.path)

    def place(self, name):
        path = self.device.absolute(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()

    def test_aNameHoldingANextLineOrALineSeparatorIsReadBack(self):
        """A name keeps a NEL (U+0085: a Windows '...' in a patient name read
        as Latin-1) or a U+2028: the list's lines end in "\\n" alone, so
        such a copy is remembered after a restart."""
        copies = [("1.2.3", "ANDR\x85E_P1/1_1_1.v2"), ("1.2.4", "ANDR\u2028E_P1/1_1_2.v2")]
        for _, name in copies:
            self.place(name)
        UnindexedCopies({"MAG0": self.device}).save("MAG0", copies, 1)
        self.assertEqual(UnindexedCopies({"MAG0": self.device}).load(),
                         {uid: [("MAG0", name)] for uid, name in copies})
