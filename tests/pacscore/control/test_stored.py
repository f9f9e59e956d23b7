"""Stored files and UIDs as the control commands take them."""

from types import SimpleNamespace

from twisted.trial import unittest

from pacscore.config.acrnema import AcrNemaMap
from pacscore.control.context import CommandError
from pacscore.control.stored import isLocal, storedFile, uidValue
from pacscore.storage.devices import MagDevice


class StoredFileTests(unittest.TestCase):

    def setUp(self):
        self.archive = SimpleNamespace(devices=[MagDevice("MAG0", "/srv/pacs/data")])

    def test_deviceNames(self):
        self.assertEqual(storedFile(self.archive, "MAG0:PAT1/x.dcm"), ("MAG0", "PAT1/x.dcm"))
        self.assertEqual(storedFile(self.archive, "mag0\\PAT1\\x.dcm"), ("MAG0", "PAT1/x.dcm"))
        self.assertEqual(storedFile(self.archive, "MAG0:PAT1/./old/../x.dcm"), ("MAG0", "PAT1/x.dcm"))

    def test_refusesWhatLeavesTheDevice(self):
        for text in ("MAG0:../../sandbox/victim.dcm", "MAG0\\..\\..\\x.dcm", "MAG0:PAT1/../../x.dcm",
                     "MAG0:/etc/passwd", "MAG0:..", "MAG0:."):
            error = self.assertRaises(CommandError, storedFile, self.archive, text)
            self.assertIn("is not a file inside MAG0", str(error))


class UidValueTests(unittest.TestCase):

    def test_uids(self):
        self.assertEqual(uidValue(" 1.2.840.10008.1.1 ", "study UID"), "1.2.840.10008.1.1")
        self.assertEqual(uidValue("1" * 64, "study UID"), "1" * 64)

    def test_refusesWhatIsNoUID(self):
        for text in ("\U0001f600", "\u60a3\u8005", "1.2.\u0663", "1.2a", "1.2 3", "1" * 65):
            error = self.assertRaises(CommandError, uidValue, text, "series UID")
            self.assertIn("is not a UID", str(error))
        self.assertRaises(CommandError, uidValue, "1.2.*", "series UID")
        self.assertRaises(CommandError, uidValue, " ", "series UID")


class IsLocalTests(unittest.TestCase):

    def test_conquestNamesOfThisArchive(self):
        acrNemaMap = AcrNemaMap.fromString("V* 127.0.0.1 104 un\n")
        archive = SimpleNamespace(aeTitle="CONQUESTSRV1", configuration=SimpleNamespace(acrNemaMap=acrNemaMap))
        for server in ("", " ", "(local)", "local", "LOCAL", " Local ", "CONQUESTSRV1", "conquestSrv1"):
            self.assertTrue(isLocal(archive, server), server)
        for server in ("OTHER", "localhost", "(LOCAL)x"):
            self.assertFalse(isLocal(archive, server), server)

    def test_anAcrNemaMapNodeCalledLocalIsThatNode(self):
        acrNemaMap = AcrNemaMap.fromString("LOCAL 127.0.0.1 28111 un\nV* 127.0.0.1 104 un\n")
        archive = SimpleNamespace(aeTitle="CONQUESTSRV1", configuration=SimpleNamespace(acrNemaMap=acrNemaMap))
        for server in ("local", "LOCAL", " Local "):
            self.assertFalse(isLocal(archive, server), server)
        for server in ("", "(local)", "CONQUESTSRV1"):
            self.assertTrue(isLocal(archive, server), server)
