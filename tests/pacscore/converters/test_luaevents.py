"""Tests for pacscore.converters.luaevents: Conquest's [lua] startup,
nightly, background, association, command, clienterror and endassociation
scripts."""

import gc
import os
import time
import weakref
from types import SimpleNamespace

from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.converters.context import ConverterServices
from pacscore.converters.luaevents import LuaEvents
from pacscore.dicom import commands
from tests.pacscore.converters.test_lua import luaRegistry


class InThisThread:
    """Workers that run each call at once, in the test's thread."""

    def deferToWorker(self, f, *args):
        return defer.maybeDeferred(f, *args)


class Later:
    """Workers that run each call when ``runAll`` is called, as a worker
    thread runs it after the reactor's code that asked for it."""

    def __init__(self):
        self.calls = []

    def deferToWorker(self, f, *args):
        d = defer.Deferred()
        self.calls.append((d, f, args))
        return d

    def runAll(self):
        while self.calls:
            d, f, args = self.calls.pop(0)
            defer.maybeDeferred(f, *args).chainDeferred(d)


class LuaEventsTests(unittest.TestCase):

    def events(self, section, main=""):
        """LuaEvents of a dicom.ini with ``main`` keys and the [lua] ``section``."""
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        configuration = SimpleNamespace(ini=DicomIni.fromString(f"[sscscp]\n{main}[lua]\n{section}"),
                                        iniPath="dicom.ini", configDir=self.folder, workdir=self.folder)
        self.clock = task.Clock()
        services = ConverterServices(configuration=configuration)
        with capturedLogs() as self.startLog:
            events = LuaEvents.fromConfiguration(configuration, services, luaRegistry(), InThisThread(), self.clock)
        return events

    def lines(self, action):
        """The log lines of the [lua] scripts while ``action()`` runs."""
        with capturedLogs() as logged:
            action()
        return [formatEvent(e) for e in logged if "[lua]" in formatEvent(e)]

    def test_startupRunsOnce(self):
        events = self.events("startup = print('started', type(os.execute), type(Data), CallingAE)\n")
        self.assertEqual(self.lines(events.startService), ["[lua] startup: started\tnil\ttable\t"])
        self.assertEqual(self.lines(lambda: self.clock.advance(86400)), [])
        events.stopService()

    def test_backgroundEverySecond(self):
        events = self.events("Background = n = (n or 0) + 1; print('tick', n)\n")
        self.assertEqual(self.lines(events.startService), ["[lua] background: tick\t1"])
        self.assertEqual(self.lines(lambda: self.clock.pump([1, 1])),
                         ["[lua] background: tick\t1", "[lua] background: tick\t1"])
        events.stopService()
        self.assertEqual(self.lines(lambda: self.clock.advance(5)), [])

    def test_nightlyAtThree(self):
        events = self.events("nightly = print('night')\n")
        [nightly] = events.services
        nightly.now = lambda: time.mktime((2026, 3, 1, 2, 59, 0, 0, 0, -1)) + self.clock.seconds()
        events.startService()
        self.assertEqual(self.lines(lambda: self.clock.advance(59)), [])
        self.assertEqual(self.lines(lambda: self.clock.advance(1)), ["[lua] nightly: night"])
        self.assertEqual(self.lines(lambda: self.clock.pump([60] * 24 * 60)), ["[lua] nightly: night"])
        self.assertEqual(nightly.now() - time.mktime((2026, 3, 2, 3, 0, 0, 0, 0, -1)), 0)
        events.stopService()

    def test_associationSeesTheAETitles(self):
        events = self.events("association = print(Association.Calling, Association.Called, CallingAE, CalledAE)\n")
        events.startService()
        self.assertEqual(self.lines(lambda: events.association("MODALITY", "PACS")),
                         ["[lua] association: MODALITY\tPACS\tMODALITY\tPACS"])
        events.stopService()

    def test_nothingSetNothingRuns(self):
        events = self.events("association = \ncommand =\n")
        self.assertEqual(self.lines(events.startService), [])
        self.assertEqual(events.services, [])
        self.assertEqual(events.associationHooks(),
                         {"onAccepted": None, "onCommand": None, "onClientError": None, "onEnded": events.ended})

    def test_hooksOfTheScriptsSet(self):
        events = self.events("command = print(1)\nEndAssociation = print(2)\n")
        self.assertEqual(events.associationHooks(), {"onAccepted": None, "onCommand": events.command,
                                                     "onClientError": None, "onEnded": events.ended})

    def move(self):
        return {commands.COMMAND_FIELD: commands.C_MOVE_RQ, commands.MESSAGE_ID: 7, commands.PRIORITY: 0,
                commands.AFFECTED_SOP_CLASS_UID: "1.2.840.10008.5.1.4.1.2.2.2", commands.MOVE_DESTINATION: "VIEWER",
                commands.COMMAND_DATASET_TYPE: commands.DATASET_PRESENT}

    def check(self, events, command):
        """The command set the command script leaves of ``command`` (None: refused), and its log lines."""
        checked = []
        lines = self.lines(lambda: events.command("MODALITY", "PACS", command).addCallback(checked.append))
        return checked[0], lines

    def test_commandSeesTheRequest(self):
        events = self.events("command = print(Command.CommandField, Command.MessageID, Command.MoveDestination, "
                             "Command['0000,0002'], Association.Calling, CalledAE, type(Data), Command.CommandField == '33', "
                             "tonumber(Command.CommandField) == 0x21)\n")
        command = self.move()
        checked, lines = self.check(events, command)
        self.assertIs(checked, command)
        self.assertEqual(lines, ["[lua] command: 33\t7\tVIEWER\t1.2.840.10008.5.1.4.1.2.2.2\tMODALITY\tPACS\ttable\ttrue\ttrue"])

    def test_commandChangedByTheScript(self):
        """What the script sets is the request served, as in Conquest (one DICOMCommandObject)."""
        events = self.events("command = Command.MoveDestination = 'ARCHIVE2'; Command.Priority = 2\n")
        checked, _ = self.check(events, self.move())
        self.assertEqual(checked, {**self.move(), commands.MOVE_DESTINATION: "ARCHIVE2", commands.PRIORITY: 2,
                                   commands.COMMAND_GROUP_LENGTH: checked[commands.COMMAND_GROUP_LENGTH]})
        self.assertEqual(commands.decodeCommand(commands.encodeCommand(checked)), checked)

    def test_commandRefused(self):
        """Returning 'reject' or 'destroy', or calling reject() or destroy()
        as Conquest's scripts do, refuses the request."""
        for refusal in ("return 'reject'", "return 'destroy'", "reject()", "destroy()"):
            events = self.events(f"command = if Command.MoveDestination == 'VIEWER' then {refusal} end\n")
            self.assertIsNone(self.check(events, self.move())[0])
            command = {**self.move(), commands.MOVE_DESTINATION: "OTHER"}
            self.assertIs(self.check(events, command)[0], command)

    def test_commandFailingIsServedAsItCame(self):
        """A script that fails, or leaves no command set that can be sent,
        does not refuse the request: it is served as it came, logged."""
        command = self.move()
        events = self.events("command = error('broken')\n")
        checked, lines = self.check(events, command)
        self.assertIs(checked, command)
        self.assertEqual(lines, ["[lua] command: Lua script failed: lua:1: broken"])
        events = self.events("command = Command.CommandField = nil\n")
        checked, lines = self.check(events, command)
        self.assertIs(checked, command)
        self.assertEqual(lines, ["[lua] command: the script left no command set: command set without Command "
                                 "Field (0000,0100); the request is served as it came"])

    def test_clientErrorAndEndAssociation(self):
        events = self.events("clienterror = print('failed', Command.CommandField, Association.Calling)\n"
                             "endassociation = print('ended', Association.Calling, Association.Called, Command)\n")
        self.assertEqual(self.lines(lambda: events.clientError("SCU", "PACS", {commands.COMMAND_FIELD: 0x0110})),
                         ["[lua] clienterror: failed\t272\tSCU"])
        self.assertEqual(self.lines(lambda: events.ended("SCU", "PACS")),
                         ["[lua] endassociation: ended\tSCU\tPACS\tnil"])

    def test_anAssociationsScriptsShareItsGlobals(self):
        """As in Conquest, an association's scripts run in its Lua state: what
        its association script sets, its command, clienterror and
        endassociation scripts see; another association's do not."""
        events = self.events("association = seen = {'accepted'}; function note(x) seen[#seen + 1] = x end\n"
                             "command = note('command ' .. Command.CommandField)\n"
                             "clienterror = note('error')\n"
                             "endassociation = print(table.concat(seen or {'none'}, ', '), Command)\n")
        first, second = {}, {}
        echo = {commands.COMMAND_FIELD: 0x0030}
        self.lines(lambda: events.association("SCU", "PACS", session=first))
        self.lines(lambda: events.command("SCU", "PACS", echo, session=first))
        self.lines(lambda: events.clientError("SCU", "PACS", {commands.COMMAND_FIELD: 0x0110}, session=first))
        self.assertEqual(self.lines(lambda: events.ended("OTHER", "PACS", session=second)),
                         ["[lua] endassociation: none\tnil"])
        self.assertEqual(self.lines(lambda: events.ended("SCU", "PACS", session=first)),
                         ["[lua] endassociation: accepted, command 48, error\tnil"])

    def test_anEndedAssociationsLuaStateIsFreed(self):
        """When an association ends, after its endassociation script (or
        none), its Lua state is freed at once, with what it holds."""
        gc.disable()
        self.addCleanup(gc.enable)
        for section in ("endassociation = print(#big)\n", ""):
            events = self.events("association = big = string.rep('x', 1000000)\n" + section)
            session = {}
            self.lines(lambda: events.association("SCU", "PACS", session=session))
            state = weakref.ref(session["lua"])
            self.assertEqual(self.lines(lambda: events.ended("SCU", "PACS", session=session)),
                             ["[lua] endassociation: 1000000"] if section else [])
            self.assertEqual(session, {})
            self.assertIsNone(state())

    def test_aStateOnlyEndassociationMadeIsFreed(self):
        """An endassociation script that is the association's first Lua run
        (no association nor command script) makes its Lua state: it is
        freed after it too."""
        events = self.events("endassociation = print(Association.Calling)\n")
        events.workers = Later()
        session = {}
        self.assertEqual(self.lines(lambda: (events.ended("SCU", "PACS", session=session), events.workers.runAll())),
                         ["[lua] endassociation: SCU"])
        self.assertEqual(session, {})

    def test_aRefusedAssociationsStateIsFreedWithoutEndassociation(self):
        """An association aborted as its command script refused a request
        runs no endassociation script (as Conquest), but its Lua state is
        freed all the same."""
        events = self.events("command = return 'reject'\nendassociation = print('ended')\n")
        session = {}
        self.lines(lambda: events.command("SCU", "PACS", {commands.COMMAND_FIELD: 0x0030}, session=session))
        self.assertIn("lua", session)
        self.assertEqual(self.lines(lambda: events.ended("SCU", "PACS", session=session, refused=True)), [])
        self.assertEqual(session, {})

    def test_failuresAreLoggedAndBackgroundGoesOn(self):
        """Sandboxed and limited as converters; an error is logged, the next run comes."""
        events = self.events("background = while true do end\nstartup = os.execute('true')\n",
                             main="LuaMaxInstructions = 1000\n")
        with capturedLogs() as logged:
            events.startService()
            self.clock.advance(1)
        errors = [formatEvent(e) for e in logged if e["log_level"] == LogLevel.error]
        self.assertEqual(errors, [
            "[lua] background: Lua script failed: lua:1: script stopped after 1000 instructions (LuaMaxInstructions)",
            "[lua] startup: Lua script failed: lua:1: attempt to call a nil value (field 'execute')",
            "[lua] background: Lua script failed: lua:1: script stopped after 1000 instructions (LuaMaxInstructions)"])
        events.stopService()

    def test_dofileFromLuaFileFolder(self):
        events = self.events("startup = dofile('startup.lua')\n", main="LuaFileFolder = lua\n")
        os.makedirs(os.path.join(self.folder, "lua"))
        with open(os.path.join(self.folder, "lua", "startup.lua"), "w") as f:
            f.write("print('from the file')\n")
        self.assertEqual(self.lines(events.startService), ["[lua] startup: from the file"])
        events.stopService()

    def test_otherKeysWarnedOf(self):
        self.events("startup = print(1)\ncommand = print(2)\nprintserver = print(3)\nclienterror = \n"
                    "ExportConverter = x = 1\n")
        self.assertEqual([formatEvent(e) for e in self.startLog],
                         ["dicom.ini:5: [lua] printserver, ExportConverter: these Conquest Lua event scripts are not "
                          "supported here and do not run (startup, nightly, background, association, command, "
                          "clienterror and endassociation do)"])
