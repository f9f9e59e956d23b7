"""Tests for pacscore.export.actions: ``process ... by`` a Lua file; a
delete interrupted by a crash."""

import os
from types import SimpleNamespace

from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.converters.context import ConverterServices
from pacscore.converters.registry import CommandRegistry
from pacscore.export.actions import LocalActions
from pacscore.export.forwarder import ForwardError
from pacscore.export.queue import Action, Target
from pacscore.testing.corpus import generateCorpus
from plugins import pacs_control_data as data
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.export.fixtures import SyncWorkers


class ProcessByLuaTests(unittest.TestCase):
    """``process study by x.lua text`` runs the script (relative to the
    configuration folder) with command_line the text and no Data, as
    Conquest does, not a shell."""

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        configuration = SimpleNamespace(ini=DicomIni.fromString(""), configDir=self.folder, workdir=self.folder)
        self.actions = LocalActions(None, None, None, SyncWorkers(), ConverterServices(configuration=configuration,
                                                                                      commands=CommandRegistry()))

    def process(self, script, command):
        with open(os.path.join(self.folder, "study.lua"), "w") as f:
            f.write(script)
        action = Action(1, "process", "", "STUDY", Target("PAT1", "1.2.3"), "", {"by": command}, 0)
        with capturedLogs() as events:
            d = defer.ensureDeferred(self.actions.process(action))
        return d, [event["text"] for event in events if "text" in event]

    def test_runsTheScript(self):
        d, printed = self.process("print(command_line, Data.PatientID)", "study.lua E:/x::PAT1  1.2.3")
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(printed, ["E:/x::PAT1  1.2.3\tnil"])

    def test_scriptRunsOnData(self):
        """script(rule) runs the line on Data, the empty object, as Data:Script(rule)."""
        d, printed = self.process("print(script('nop'))", "study.lua")
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(printed, ["continue"])

    def test_failingScriptIsAFailure(self):
        d, _ = self.process("error('broken')", "study.lua")
        failure = self.failureResultOf(d, ForwardError)
        self.assertEqual(str(failure.value), "process script study.lua: study.lua:1: broken")


class Crashed(Exception):
    """The server killed while removing files."""


class InterruptedDeleteTests(unittest.TestCase):
    """A delete cut short (the server killed) after some of its files went:
    the next start finishes it, so no row is left without its file."""

    @defer.inlineCallbacks
    def test_finishedAtTheNextStart(self):
        """deletepatient killed half way through the files: the restart
        removes the rest, files and rows, says so, and warns of no lost
        store (some rows stayed, their files gone, called 'never
        acknowledged' crash losses)."""
        running = RunningArchive(self)
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=1,
                                seriesPerStudy=2, imagesPerSeries=3)
        yield running.store(images)
        actions = running.archive.localActions
        removeFiles = actions._removeFiles

        def killedHalfWay(instances):
            removeFiles(instances[:len(instances) // 2])
            raise Crashed()
        actions._removeFiles = killedHalfWay
        yield self.assertFailure(running.run(data.deletePatient, images[0].patientID), Crashed)
        yield running.stop()
        with capturedLogs() as events:
            again = RunningArchive(self, workdir=running.workdir)
        self.assertEqual((yield again.count("image")), 6)
        self.assertEqual((yield again.count("patient")), 1)
        self.assertEqual(len(again.files()), 6)
        lines = [formatEvent(event) for event in events]
        self.assertIn("Finished the delete(s) interrupted when the server stopped: 6 object(s) removed", lines)
        self.assertEqual([line for line in lines if "never acknowledged" in line], [])
