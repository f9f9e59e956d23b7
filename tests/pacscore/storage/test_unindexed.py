"""Tests for pacscore.storage.unindexed: the lists of the copies stores left unindexed."""

import os

from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.storage.devices import MagDevice
from pacscore.storage.unindexed import JOURNAL, CopiesBySOP, UnindexedCopies


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

    def test_aListNotReadAtStartUpIsSetAsideNotOverwritten(self):
        """A list that could not be read at start-up (a line not UTF-8), or
        whose device was not there then (not mounted), is not rewritten
        over by the next refusal on that device, which knows only its own
        copy: it is set aside, with a line, and read with the list at the
        next start-up, which removes it once the list is written again."""
        unreadable, absent = MagDevice("MAG0", self.device.path), MagDevice("MAG1", self.mktemp())
        devices = {"MAG0": unreadable, "MAG1": absent}
        with open(os.path.join(unreadable.path, JOURNAL), "wb") as f:
            f.write(b"1.2.3\tP/old.dcm\n\xff\n")
        self.place("P/old.dcm")
        copies = UnindexedCopies(devices)
        with capturedLogs() as events:
            self.assertEqual(copies.load(), {})
        self.assertIn("cannot be read", formatEvent(events[0]))
        os.makedirs(absent.path)  # mounted since
        with open(os.path.join(absent.path, JOURNAL), "w") as f:
            f.write("1.2.5\tQ/older.dcm\n")
        os.makedirs(absent.absolute("Q"))
        open(absent.absolute("Q/older.dcm"), "wb").close()
        self.place("P/new.dcm")
        open(absent.absolute("Q/new.dcm"), "wb").close()
        with capturedLogs() as events:
            copies.save("MAG0", [("1.2.4", "P/new.dcm")], 1)
            copies.save("MAG1", [("1.2.6", "Q/new.dcm")], 1)
        self.assertEqual([formatEvent(event) for event in events], [
            f"{device.path}/{JOURNAL} is not the list read at start-up (it could not be read, or its device was not "
            f"there then): set aside as {device.path}/{JOURNAL}.unread-1, not overwritten; the copies the index "
            f"failed on that it lists stay on disk, remembered again at the next start-up" for device in (
                unreadable, absent)])
        copies.save("MAG0", [("1.2.4", "P/new.dcm")], 2)  # what it wrote itself: no second one
        self.assertFalse(os.path.exists(os.path.join(unreadable.path, f"{JOURNAL}.unread-2")))
        with open(os.path.join(unreadable.path, f"{JOURNAL}.unread-1"), "w") as f:
            f.write("1.2.3\tP/old.dcm\n")  # mended
        restarted = UnindexedCopies(devices)
        self.assertEqual(restarted.load(), {"1.2.3": [("MAG0", "P/old.dcm")], "1.2.4": [("MAG0", "P/new.dcm")],
                                            "1.2.5": [("MAG1", "Q/older.dcm")], "1.2.6": [("MAG1", "Q/new.dcm")]})
        restarted.save("MAG0", [("1.2.3", "P/old.dcm"), ("1.2.4", "P/new.dcm")], 1)
        self.assertEqual(sorted(name for name in os.listdir(unreadable.path) if name.startswith(".")), [JOURNAL])


class CopiesBySOPTests(unittest.TestCase):

    def test_aCopyIsListedWhileASOPInstanceListsIt(self):
        """Its count follows the lists given, taken back and dropped: a copy
        two SOP instances list (a name taken again) stays listed until
        neither does."""
        copies = CopiesBySOP({"1.2.3": [("MAG0", "P/a.dcm"), ("MAG0", "P/b.dcm")]})
        copies["1.2.4"] = [("MAG0", "P/b.dcm")]
        copies["1.2.3"] = [("MAG0", "P/b.dcm")]
        self.assertFalse(copies.listed(("MAG0", "P/a.dcm")))
        self.assertTrue(copies.listed(("MAG0", "P/b.dcm")))
        del copies["1.2.3"]
        self.assertTrue(copies.listed(("MAG0", "P/b.dcm")))
        self.assertEqual(copies.pop("1.2.4"), [("MAG0", "P/b.dcm")])
        self.assertFalse(copies.listed(("MAG0", "P/b.dcm")))
        self.assertEqual(dict(copies), {})
