"""Tests for pacscore.control.inprocess: control commands run in-process,
and what a sandboxed Lua script's ``servercommand`` may run."""

from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.control.context import CommandError
from pacscore.control.inprocess import commandOutput
from pacscore.control.registry import CommandRegistry
from tests.pacscore.control.running import RunningArchive

READ_ONLY = {
    "changeuidback", "checksum", "display_status", "forwardqueue", "genuid", "get_amap", "get_amaps",
    "get_application", "get_dic", "get_freestore", "get_ini", "get_ini_num", "get_ini_param", "get_localae",
    "get_param", "get_remoteae", "get_sop", "get_sqldef", "get_transfer", "imagefilelister", "imagefinder",
    "imagelister", "patientfinder", "query", "query2", "seriesfinder", "serieslister", "studyfinder"}


class SandboxedCommandTests(unittest.TestCase):
    """``sandboxed``: only read-only commands, no file written, no secret shown."""

    def setUp(self):
        self.running = RunningArchive(self, ini={
            "ControlSecret": "s3cret", "Password": "dbpass", "LuaAllowUnsafe": "0",
            "SQLHost": "postgresql://pacs:urlpass@db.example/pacs"})
        self.archive = self.running.archive
        self.commands = CommandRegistry()

    def output(self, line, sandboxed=True):
        return commandOutput(self.archive, self.commands, line, peer="converter", sandboxed=sandboxed)

    def test_readOnlyCommands(self):
        """The built-in commands that declare themselves read-only."""
        self.assertEqual({name for name, command in self.commands.commands.items() if command.readOnly},
                         READ_ONLY)

    @defer.inlineCallbacks
    def test_sandboxCannotBeSwitchedOff(self):
        before = Path(self.archive.configuration.iniPath).read_text()
        for line in ("put_param:LuaAllowUnsafe,1", "delete_param:LuaAllowUnsafe", "read_ini:",
                     "changeuid:1.2.3", "quit:", "deletepatient:PAT0000"):
            error = yield self.assertFailure(self.output(line), CommandError)
            name = line.partition(":")[0]
            self.assertEqual(str(error), f"--{name} failed: sandboxed Lua scripts run only commands that "
                                         "change nothing (LuaAllowUnsafe = 1 allows every one)")
        self.assertEqual(self.archive.configuration.ini.get("LuaAllowUnsafe"), "0")
        self.assertEqual(Path(self.archive.configuration.iniPath).read_text(), before)

    @defer.inlineCallbacks
    def test_readOnlyCommandsRun(self):
        self.assertEqual((yield self.output("get_param:MyACRNema")), "PACS")
        self.assertIn("DICOM server 'PACS'", (yield self.output("display_status:")))
        self.assertEqual((yield self.output("checksum:abc")), (yield self.output("checksum:abc", False)))

    @defer.inlineCallbacks
    def test_noSecrets(self):
        for key in ("ControlSecret", "Password", "controlsecret"):
            error = yield self.assertFailure(self.output(f"get_param:{key}"), CommandError)
            self.assertEqual(str(error), f"--get_param failed: {key} is a secret: sandboxed Lua scripts "
                                         "cannot read it")
        self.assertEqual((yield self.output("get_param:SQLHost")), "postgresql://pacs:***@db.example/pacs")
        listing = yield self.output("get_ini:")
        self.assertNotIn("s3cret", listing)
        self.assertNotIn("dbpass", listing)
        self.assertNotIn("urlpass", listing)
        self.assertIn("MyACRNema = PACS", listing)
        entries = yield defer.gatherResults([self.output(f"get_ini_num:{n}")
                                             for n in range(len(self.archive.configuration.ini.items()))])
        self.assertFalse([entry for entry in entries if "s3cret" in entry or "dbpass" in entry])
        self.assertEqual((yield self.output("get_param:ControlSecret", sandboxed=False)), "s3cret")
        self.assertIn("dbpass", (yield self.output("get_ini:", sandboxed=False)))

    @defer.inlineCallbacks
    def test_noFileWritten(self):
        target = Path(self.running.workdir, "status.txt")
        for line in ("display_status:status.txt", "query:DICOMPatients|PatientID|||status.txt"):
            error = yield self.assertFailure(self.output(line), CommandError)
            self.assertIn("status.txt: sandboxed Lua scripts cannot have a command write a file "
                          "(LuaAllowUnsafe = 1 allows it)", str(error))
        self.assertFalse(target.exists())
        yield self.output("display_status:status.txt", sandboxed=False)
        self.assertTrue(target.exists())
