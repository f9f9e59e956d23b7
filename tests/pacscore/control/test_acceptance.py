"""The dgatesop.lst control commands on a real Archive: dgatesop.lst is
rewritten at once and the DICOM service's acceptor policy follows it."""

import os
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.config.soplist import SopList
from pacscore.control.context import CommandError
from plugins import pacs_control_configuration as commands
from tests.pacscore.control.running import RunningArchive

NEW_STORAGE_CLASS = "1.2.826.0.1.3680043.9.9999.1"


class SopListCommandTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive
        self.sopList = self.archive.configuration.sopList
        self.path = os.path.join(self.running.workdir, "dgatesop.lst")

    @property
    def policy(self):
        return self.archive.dicomServerFactory.policy

    def onDisk(self):
        return SopList.fromFile(self.path)

    @defer.inlineCallbacks
    def test_getEntries(self):
        self.assertEqual((yield self.running.run(commands.getSop, "0")), "1.2.840.10008.1.1 Verification")
        first = self.sopList.transfers()[0]
        self.assertEqual((yield self.running.run(commands.getTransfer, "0,%s")), first.uid)
        count = len(self.sopList.sops())
        self.assertEqual((yield self.running.run(commands.getSop, str(count))), "")
        self.assertEqual((yield self.running.run(commands.getRemoteAE, "0")), "")
        yield self.assertFailure(self.running.run(commands.getSop, "-1"), CommandError)

    @defer.inlineCallbacks
    def test_putAndDeleteRemoteAE(self):
        self.assertEqual(self.policy.callingAETitles, set())
        self.assertEqual((yield self.running.run(commands.putRemoteAE, "0,MODALITY1,Scanner")), "")
        self.assertEqual(self.policy.callingAETitles, {"MODALITY1"})
        self.assertEqual([e.aeTitle for e in self.onDisk().remoteAEs()], ["MODALITY1"])
        self.assertEqual((yield self.running.run(commands.getRemoteAE, "0,%s=%s")), "MODALITY1=Scanner")
        yield self.running.run(commands.deleteRemoteAE, "0")
        self.assertEqual(self.policy.callingAETitles, set())
        self.assertEqual(self.onDisk().remoteAEs(), [])

    @defer.inlineCallbacks
    def test_putLocalAE(self):
        """Without LocalAE lines any called AE title is accepted (empty
        ``aeTitles``), as in Conquest; with one, MyACRNema and it are."""
        self.assertEqual(self.policy.aeTitles, [])
        yield self.running.run(commands.putLocalAE, "0,ALIAS,SecondName")
        self.assertEqual(self.policy.aeTitles, [self.archive.aeTitle, "ALIAS"])
        self.assertEqual([e.aeTitle for e in self.onDisk().localAEs()], ["ALIAS"])

    @defer.inlineCallbacks
    def test_putApplication(self):
        yield self.running.run(commands.putApplication, "0,1.2.840.10008.3.1.1.1,DICOM")
        self.assertEqual((yield self.running.run(commands.getApplication, "0")), "1.2.840.10008.3.1.1.1 DICOM")
        self.assertEqual([e.uid for e in self.onDisk().applications()], ["1.2.840.10008.3.1.1.1"])

    @defer.inlineCallbacks
    def test_putSopAppendsAndIsAccepted(self):
        before = Path(self.path).read_text()
        count = len(self.sopList.sops())
        self.assertNotIn(NEW_STORAGE_CLASS, self.policy.abstractSyntaxes)
        yield self.running.run(commands.putSop, f"{count},{NEW_STORAGE_CLASS},PrivateStorage")
        self.assertEqual(self.onDisk().sops()[-1].uid, NEW_STORAGE_CLASS)
        self.assertTrue(Path(self.path).read_text().startswith(before.rstrip("\n")))
        yield self.running.run(commands.deleteSop, str(count))
        self.assertEqual(Path(self.path).read_text(), before)

    @defer.inlineCallbacks
    def test_failedPutOrDeleteChangesNothing(self):
        """An entry holding bytes that are not UTF-8 is refused; a put or
        delete whose dgatesop.lst cannot be written leaves the list in
        memory and the associations' policy as they were."""
        count = len(self.sopList.sops())
        lines, accepted = self.sopList.toString(), set(self.policy.abstractSyntaxes)
        error = yield self.assertFailure(self.running.run(commands.putSop, f"{count},1.2.3,Priv\udcfc"),
                                         CommandError)
        self.assertIn("not UTF-8", str(error))
        self.sopList.path = self.mktemp()
        os.mkdir(self.sopList.path)
        for command, arguments in ((commands.putSop, f"{count},{NEW_STORAGE_CLASS},PrivateStorage"),
                                   (commands.deleteSop, "0")):
            yield self.assertFailure(self.running.run(command, arguments), CommandError)
            self.assertEqual(self.sopList.toString(), lines)
            self.assertEqual(set(self.policy.abstractSyntaxes), accepted)

    @defer.inlineCallbacks
    def test_putTransferReplaces(self):
        old = self.sopList.transfers()[1]
        yield self.running.run(commands.putTransfer, f"1,{old.uid},Renamed")
        self.assertEqual(self.onDisk().transfers()[1].name, "Renamed")
        self.assertIn(old.uid, self.policy.transferSyntaxes)
        yield self.running.run(commands.deleteTransfer, "1")
        self.assertNotIn(old.uid, self.policy.transferSyntaxes)

    @defer.inlineCallbacks
    def test_refusals(self):
        count = len(self.sopList.sops())
        for command, arguments in ((commands.putSop, f"{count + 1},1.2.3,Far"),
                                   (commands.putSop, "0,not-a-uid,Bad"),
                                   (commands.putSop, "0,1.2.3"),
                                   (commands.putLocalAE, "0,ALIAS,Two words"),
                                   (commands.deleteApplication, "5")):
            yield self.assertFailure(self.running.run(command, arguments), CommandError)


class DefinitionCommandTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive

    @defer.inlineCallbacks
    def test_getSqlDef(self):
        self.assertEqual((yield self.running.run(commands.getSqlDef, "patient,0")),
                         "0x0010, 0x0020            PatientID   64 SQL_C_CHAR       DT_STR")
        self.assertEqual((yield self.running.run(commands.getSqlDef, "0,0,%x/%x/%s")), "10/20/PatientID")
        worklist = self.archive.configuration.layout.worklist
        line = yield self.running.run(commands.getSqlDef, "WORKLIST,0,%s %s %s %s %s %s %s")
        self.assertEqual(line.split()[-1], worklist[0].hl7)
        pastLast = len(self.archive.configuration.layout.study)
        self.assertEqual((yield self.running.run(commands.getSqlDef, f"study,{pastLast}")), "")
        yield self.assertFailure(self.running.run(commands.getSqlDef, "nolevel,0"), CommandError)

    @defer.inlineCallbacks
    def test_getSqlDefRefusesNonASCIIDigits(self):
        for arguments in ("\u00b2,0", "\u0661,0", "image,\u00b3"):
            yield self.assertFailure(self.running.run(commands.getSqlDef, arguments), CommandError)
        yield self.assertFailure(self.running.run(commands.getDic, "\U0001d7d9"), CommandError)

    @defer.inlineCallbacks
    def test_getDic(self):
        first = yield self.running.run(commands.getDic, "0")
        self.assertEqual(first, "(0000,0000) UL CommandGroupLength")
        listing = []
        for index in range(200):
            listing.append((yield self.running.run(commands.getDic, f"{index},%04x%04x %s %s")))
        self.assertIn("00080016 UI SOPClassUID", listing)
        self.assertEqual(listing, sorted(listing))
        self.assertEqual((yield self.running.run(commands.getDic, "100000")), "")
