"""The queueing converter commands (pacscore.export.commands, registered
by plugins/pacs_commands_forward.py): parsing through the real registry
and running on a context whose export queue is a real one."""

import datetime
import os
import subprocess
from types import SimpleNamespace

from pydicom.dataset import Dataset
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.acrnema import AcrNemaMap
from pacscore.converters.context import ConverterContext, ConverterServices, ConverterSyntaxError, Outcome
from pacscore.converters.registry import CommandRegistry
from pacscore.converters.script import parseScript
from pacscore.export.queue import ActionBuffer, ExportQueue, Target
from pacscore.export.spool import spoolFolder
from tests.pacscore.export.fixtures import Archive
from tests.pacscore.export.test_queue import FakeClock

TARGET = Target("PAT1", "1.2.3", "1.2.3.1", "1.2.3.1.1")


def dataset():
    ds = Dataset()
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = TARGET
    ds.Modality = "CT"
    ds.SeriesDate = "20240110"
    return ds


class CommandTests(unittest.TestCase):

    registry = CommandRegistry()

    def setUp(self):
        self.archive = Archive(self)
        self.clock = FakeClock()
        self.queue = ExportQueue(self.archive.index, collectDelay=600, clock=self.clock)
        self.queue.createTables()

    def run_(self, line, kind="export", exportQueue=None, filename=None, fetchedFrom="", acrNemaMap=None):
        script = parseScript(line, "ExportConverter0", self.registry, kind)
        configuration = None if acrNemaMap is None else SimpleNamespace(acrNemaMap=AcrNemaMap.fromString(acrNemaMap))
        context = ConverterContext(kind, dataset(), "MODALITY", "PACS", filename=filename,
                                   services=ConverterServices(exportQueue=exportQueue or self.queue,
                                                              configuration=configuration),
                                   converterName="ExportConverter0", fetchedFrom=fetchedFrom)
        return script.run(context)

    def due(self, later=0):
        return self.queue.due(self.clock.now + later, 100)

    def assertSyntaxError(self, line, message, kind="export"):
        with self.assertRaises(ConverterSyntaxError) as raised:
            parseScript(line, "ExportConverter0", self.registry, kind)
        self.assertIn(message, str(raised.exception))

    def test_forwardTo(self):
        self.assertEqual(self.run_("forward to SERVER1"), Outcome.CONTINUE)
        [action] = self.due()
        self.assertEqual((action.action, action.destination, action.level, action.target, action.compression),
                         ("forward", "SERVER1", "IMAGE", TARGET, ""))

    def test_aFetchedObjectIsNotForwardedToItsArchiveByAnyName(self):
        """An object a virtual server fetched from BACK is forwarded back
        there neither to its AE title nor to its host and port, written
        ``host:port`` or as another acrnema.map entry (each was queued: the
        object went straight back), with a line for each; a forward to
        another port of that host, or to another archive, is queued."""
        nodes = "BACK 10.0.0.5 104\nBACKUP 10.0.0.5 104 j2\nOTHERPORT 10.0.0.5 105\nTHIRD [FD00::6] 104\n"
        with capturedLogs() as events:
            self.run_("forward to back; forward to 10.0.0.5:104; forward study to BACKUP; forward to OTHERPORT; "
                      "forward to THIRD; forward to [fd00::6]:104", fetchedFrom="BACK", acrNemaMap=nodes)
        self.assertEqual([action.destination for action in self.due()], ["OTHERPORT", "THIRD", "[fd00::6]:104"])
        self.assertEqual([formatEvent(event) for event in events if "not queued" in formatEvent(event)], [
            f"ExportConverter0: {level} forward of 1.2.3.1.1 to {destination} not queued: a virtual server fetched "
            f"it from there{aka}" for level, destination, aka in (
                ("image", "back", ""), ("image", "10.0.0.5:104", " (BACK, the same host and port)"),
                ("study", "BACKUP", " (BACK, the same host and port)"))])
        self.run_("forward to [fd00::6]:104", fetchedFrom="THIRD", acrNemaMap=nodes)
        self.assertEqual([action.destination for action in self.due()], ["OTHERPORT", "THIRD", "[fd00::6]:104"])

    def test_forwardToAnIPv6AddressWithoutBracketsIsRefused(self):
        """``forward to ::1:104`` names no host and port a forward can reach
        (the port reads as a group of the address): refused as the line is
        read, not queued and retried for ever; ``[::1]:104`` is taken."""
        self.assertSyntaxError("forward to ::1:104", "'forward to': '::1:104' is no host:port: write an IPv6 "
                                                     "address in brackets, [::1]:104")
        self.assertSyntaxError("forward compressed as j2 to fd00::2:11112", "[fd00::2]:11112")
        self.run_("forward to [::1]:104")
        self.assertEqual([action.destination for action in self.due()], ["[::1]:104"])

    def test_theZoneOfAnIPv6AddressIsNoVariable(self):
        """The % of a link-local address's zone in brackets was read as a
        %-variable: ``forward to [fe80::1%br0]:104`` was queued for
        ``[fe80::1objr0]:104`` (%b, the stored file's name), ``%tun0`` got a
        tab, ``%docker0`` the date.  Such a % (after an IPv6 address, before
        a zone name and the ``]``) is kept, as Conquest, which has no IPv6,
        has no variable there; ``%%`` there still reads ``%``, and the
        variables of any other destination are expanded as before."""
        filename = os.path.join(self.mktemp(), "obj.dcm")
        for line in ("forward to [fe80::1%br0]:104", "forward to [fe80::fc:ff:fe00:1%tun0]:11112",
                     "forward to [fe80::1%%eth0]:104", "forward to [fe80::1%br-lan.5]:104", "forward to %b[0,1]%u"):
            self.run_(line, filename=filename)
        self.run_("get study from [fe80::1%docker0]:104", kind="import")
        self.assertEqual([action.destination for action in self.due(600)],
                         ["[fe80::1%br0]:104", "[fe80::fc:ff:fe00:1%tun0]:11112", "[fe80::1%eth0]:104",
                          "[fe80::1%br-lan.5]:104", "obMODALITY", "[fe80::1%docker0]:104"])

    def test_forwardCompressedAsWithVariables(self):
        self.run_('forward compressed as J2 to "%u"')
        [action] = self.due()
        self.assertEqual((action.destination, action.compression), ("MODALITY", "j2"))

    def test_forwardPatientIsCollected(self):
        self.run_("forward patient to VIEWER")
        self.clock.now += 100
        self.run_("forward patient to VIEWER")
        self.assertEqual(self.due(599), [])
        [action] = self.due(600)
        self.assertEqual((action.level, action.target.uid("PATIENT")), ("PATIENT", "PAT1"))

    def test_anAEThatExpandsToNothingQueuesNothing(self):
        """``to %V0008,0080`` of an object without Institution Name: the
        line fails for that object (logged), instead of queueing a forward
        that could never go."""
        self.assertEqual(self.run_("forward to %V0008,0080; forward to SERVER1"), Outcome.STOP)
        self.assertEqual(self.run_("get study from %V0008,0080", kind="import"), Outcome.STOP)
        self.assertEqual(self.due(600), [])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)

    def test_fullSyntax(self):
        self.run_("forward study compressed as jk modality %m seriesdesc \"Scout view\" age -10+0 "
                  "date 20240101-20241231 after 30 to SERVER3")
        self.assertEqual(self.due(29), [])
        [action] = self.due(30)
        self.assertEqual(action.level, "STUDY")
        self.assertEqual(action.compression, "jk")
        self.assertEqual(action.filters, {"modality": "CT", "seriesdesc": "Scout view", "age": "20231231-20240110",
                                          "date": "20240101-20241231"})

    def test_nowIsADateRangeAroundToday(self):
        self.run_("forward series now -7+0 to SERVER3")
        [action] = self.due(600)
        today = datetime.date.today()
        self.assertEqual(action.filters["now"], f"{(today - datetime.timedelta(days=7)):%Y%m%d}-{today:%Y%m%d}")

    def test_getDeleteProcessPrefetchPreretrieve(self):
        self.run_("get series modality MR from NKIPACS; delete image after 5; "
                  "process patient by echo %i; prefetch; preretrive PACS2", kind="import")
        actions = {(a.action, a.destination): a for a in self.due(600)}
        self.assertEqual(set(actions), {("get", "NKIPACS"), ("process", ""), ("prefetch", ""), ("get", "PACS2")},
                         "the delete waits for the gets of its patient queued before it")
        with self.archive.index.engine.begin() as connection:
            self.queue._markDone(connection, [actions["get", "NKIPACS"].id, actions["get", "PACS2"].id])
        self.assertIn("delete", [a.action for a in self.due(600)])
        self.assertEqual(actions["get", "NKIPACS"].filters, {"modality": "MR"})
        self.assertEqual(actions["process", ""].filters, {"by": "echo PAT1"})
        self.assertEqual(actions["get", "PACS2"].level, "PATIENT")
        self.assertEqual(actions["prefetch", ""].level, "PATIENT")

    def test_copyKeepsValuesInTheFolder(self):
        """``copy %f to export/%i.dcm`` with a Patient ID that climbs out
        copies into export/ all the same."""
        source = os.path.join(self.archive.folder, "object.dcm")
        os.makedirs(self.archive.folder)
        with open(source, "wb") as f:
            f.write(b"DICM")
        folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(folder, "export"))
        script = parseScript(f"copy %f to {folder}/export/%i.dcm", "ExportConverter0", self.registry, "export")
        ds = dataset()
        ds.PatientID = "../x"
        script.run(ConverterContext("export", ds, "MODALITY", "PACS", filename=source,
                                    services=ConverterServices(exportQueue=self.queue)))
        self.assertEqual(os.listdir(folder), ["export"])
        self.assertEqual(os.listdir(os.path.join(folder, "export")), ["_._x.dcm"])

    def test_processByGetsValuesAsData(self):
        """The command line ``process ... by`` queues has each value quoted
        for the shell: a Patient ID that is shell syntax is one argument."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        context = ConverterContext("export", dataset(), "MODALITY", "PACS",
                                   services=ConverterServices(exportQueue=self.queue))
        context.dataset.PatientID = "$(touch pwned);touch pwned2"
        parseScript("process patient by printf '<%%s>' %i \"%i\"", "ExportConverter0", self.registry,
                    "export").run(context)
        [action] = self.due(600)
        result = subprocess.run(action.filters["by"], shell=True, cwd=folder, capture_output=True, text=True)
        self.assertEqual(result.stdout, "<$(touch pwned);touch pwned2>" * 2)
        self.assertEqual(os.listdir(folder), [])

    def test_processByALuaFileGetsTheTextAsItIs(self):
        """``process ... by x.lua text`` hands the text to the script as
        Conquest does (its ``command_line``): no shell reads it, so its
        values are not quoted."""
        context = ConverterContext("export", dataset(), "MODALITY", "PACS",
                                   services=ConverterServices(exportQueue=self.queue))
        context.dataset.PatientID = "O'Brien 2"
        parseScript("process patient by mark.lua %i::out", "ExportConverter0", self.registry, "export").run(context)
        [action] = self.due(600)
        self.assertEqual(action.filters["by"], "mark.lua O'Brien 2::out")

    def test_inAnExportLineTheActionsWaitForTheJob(self):
        buffer = ActionBuffer(self.queue)
        self.run_("forward to A; forward series after 20 to B", exportQueue=buffer)
        self.assertEqual(self.due(600), [])
        self.assertEqual([(row["Destination"], row["NotBefore"]) for row in buffer.actions],
                         [("A", self.clock.now), ("B", self.clock.now + 20)])

    def test_aRefusedForwardOfAMadeObjectLeavesNoSpoolFile(self):
        """A forward of an object a script made (``x:Script``) that the
        queue refuses (no SOP Instance UID) leaves no spool file behind,
        which no action would ever delete."""
        folder = spoolFolder(self.mktemp())
        buffer = ActionBuffer(self.queue, folder)
        script = parseScript("forward to A", "ExportConverter0", self.registry, "export")
        made = Dataset()
        made.PatientName = "MADE"
        context = ConverterContext("export", made, "MODALITY", "PACS",
                                   services=ConverterServices(exportQueue=buffer))
        context.stored = False
        self.assertEqual(script.run(context), Outcome.STOP)
        self.assertIn("has no SOP Instance UID", str(self.flushLoggedErrors(ValueError)[0].value))
        self.assertEqual((buffer.actions, os.listdir(folder)), ([], []))

    def test_syntaxErrors(self):
        self.assertSyntaxError("forward patient", "'to ...' is missing")
        self.assertSyntaxError("forward to A B", "nothing may follow")
        self.assertSyntaxError("forward study colour red to A", "unexpected 'colour'")
        self.assertSyntaxError("forward study after soon to A", "'after' needs seconds")
        self.assertSyntaxError("forward compressed j2 to A", "expected 'compressed as XX'")
        self.assertSyntaxError("get study compressed as j2 from A", "unexpected 'compressed'")
        self.assertSyntaxError("process patient", "'by ...' is missing")
        self.assertSyntaxError("prefetch now", "takes no arguments")
        self.assertSyntaxError("forward to A", "not allowed in import converters", kind="import")
        self.assertSyntaxError("copy %f", "expected 'copy FILE to FILE'")

    def test_aCopyThatFailsIsLoggedAndTheLineGoesOn(self):
        """A copy into a missing folder is logged in one line, without a
        traceback, and the statements after it run."""
        source = os.path.join(self.archive.folder, "object.dcm")
        os.makedirs(self.archive.folder)
        with open(source, "wb") as f:
            f.write(b"DICM")
        folder = os.path.abspath(self.mktemp())
        with capturedLogs() as events:
            self.assertEqual(self.run_(f"copy %f to {folder}/missing/x.dcm; forward to SERVER1", filename=source),
                             Outcome.CONTINUE)
        self.assertEqual([formatEvent(e) for e in events],
                         [f"ExportConverter0: copy {source} to {folder}/missing/x.dcm failed: "
                          f"No such file or directory; the line goes on"])
        self.assertEqual([action.destination for action in self.due()], ["SERVER1"])

    def test_copyToAFolderAndToAFile(self):
        source = os.path.join(self.archive.folder, "object.dcm")
        os.makedirs(self.archive.folder)
        with open(source, "wb") as f:
            f.write(b"DICM")
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        self.run_(f"copy %f to {folder}; copy %f to {folder}/copy_%o.dcm", filename=source)
        self.assertEqual(sorted(os.listdir(folder)), ["copy_1.2.3.1.1.dcm", "object.dcm"])
        with open(os.path.join(folder, "object.dcm"), "rb") as f:
            self.assertEqual(f.read(), b"DICM")
