"""The UID control commands on a real Archive: UIDs with dicom.ini's
UIDPrefix, the UIDMODS pairs of the index, Conquest's checksum."""

from sqlalchemy import select
from twisted.internet import defer
from twisted.trial import unittest

from pacscore.control.context import CommandError
from plugins import pacs_control_uids as commands
from tests.pacscore.control.running import RunningArchive

PREFIX = "1.2.826.0.1.3680043.9.7433"


class UidCommandTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self, ini=dict(UIDPrefix=PREFIX))
        self.archive = self.running.archive

    @defer.inlineCallbacks
    def test_genuid(self):
        first = yield self.running.run(commands.genUid, "")
        second = yield self.running.run(commands.genUid, "")
        self.assertTrue(first.startswith(PREFIX + "."))
        self.assertLessEqual(len(first), 64)
        self.assertNotEqual(first, second)

    @defer.inlineCallbacks
    def test_changeuidRoundTrip(self):
        original = "1.2.3.4.5.6"
        new = yield self.running.run(commands.changeUid, original)
        self.assertTrue(new.startswith(PREFIX + "."))
        self.assertEqual((yield self.running.run(commands.changeUid, f" {original} ")), new)
        self.assertEqual((yield self.running.run(commands.changeUidBack, new)), original)
        table = self.archive.converterServices.uidMap.table
        with self.archive.engine.connect() as connection:
            rows = connection.execute(select(table.c.OldUID, table.c.NewUID)).all()
        self.assertIn((original, new), [tuple(row) for row in rows])

    @defer.inlineCallbacks
    def test_changeuidAnswersTheUIDNewuidsWrites(self):
        """After a Lua script recorded a text for an original (changeuid(uid,
        'PATSTUDY')), --changeuid answers the valid UID newuids writes in its
        place, and --changeuidback of it the original."""
        uidMap = self.archive.converterServices.uidMap
        uidMap.newFor("1.2.3.77", given="PATSTUDY")
        new = yield self.running.run(commands.changeUid, "1.2.3.77")
        self.assertEqual(new, uidMap.uidFor("1.2.3.77", "StudyInstanceUID"))
        self.assertTrue(new.startswith(PREFIX + "."))
        self.assertEqual((yield self.running.run(commands.changeUidBack, new)), "1.2.3.77")

    @defer.inlineCallbacks
    def test_changeuidbackOfUnknownUID(self):
        error = yield self.assertFailure(self.running.run(commands.changeUidBack, "9.9.9"), CommandError)
        self.assertIn("9.9.9", str(error))
        yield self.assertFailure(self.running.run(commands.changeUid, ""), CommandError)
        yield self.assertFailure(self.running.run(commands.changeUidBack, " "), CommandError)

    @defer.inlineCallbacks
    def test_uidPrefixThatMakesNoUIDs(self):
        self.archive.converterServices.uidMap.prefix = "not-a-uid-root"  # as read_ini may apply it
        for command, arguments in ((commands.genUid, ""), (commands.changeUid, "1.2.3.4")):
            error = yield self.assertFailure(self.running.run(command, arguments), CommandError)
            self.assertIn("cannot make a UID with UIDPrefix 'not-a-uid-root.'", str(error))

    @defer.inlineCallbacks
    def test_checksum(self):
        self.assertEqual((yield self.running.run(commands.checksum, "hello")), "907060870")
        self.assertEqual((yield self.running.run(commands.checksum, "a,b")), "752423903")
