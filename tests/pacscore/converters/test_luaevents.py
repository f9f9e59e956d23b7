"""Tests for pacscore.converters.luaevents: Conquest's [lua] startup,
nightly, background and association scripts."""

import os
import time
from types import SimpleNamespace

from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.converters.context import ConverterServices
from pacscore.converters.luaevents import LuaEvents
from tests.pacscore.converters.test_lua import luaRegistry


class InThisThread:
    """Workers that run each call at once, in the test's thread."""

    def deferToWorker(self, f, *args):
        return defer.maybeDeferred(f, *args)


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
        self.assertEqual(self.lines(events.startService), ["[lua] startup: started\tnil\tnil\t"])
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
        events = self.events("nightly = print('night', os.date('%H:%M', os.time()))\n")
        events.startService()
        [nightly] = events.services
        first = nightly.nextRun(self.clock.seconds())
        self.assertEqual(time.strftime("%H:%M", time.localtime(first)), "03:00")
        self.assertEqual(self.lines(lambda: self.clock.advance(first - 1)), [])
        self.assertEqual(len(self.lines(lambda: self.clock.advance(1))), 1)
        self.assertEqual(len(self.lines(lambda: self.clock.advance(nightly.nextRun(first) - first))), 1)
        events.stopService()

    def test_associationSeesTheAETitles(self):
        events = self.events("association = print(Association.Calling, Association.Called, CallingAE, CalledAE)\n")
        events.startService()
        self.assertEqual(self.lines(lambda: events.association("MODALITY", "PACS")),
                         ["[lua] association: MODALITY\tPACS\tMODALITY\tPACS"])
        events.stopService()

    def test_nothingSetNothingRuns(self):
        events = self.events("association = \n")
        self.assertEqual(self.lines(lambda: (events.startService(), events.association("A", "B"))), [])
        self.assertEqual(events.services, [])

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
        self.events("startup = print(1)\ncommand = print(2)\nclienterror = \nExportConverter = x = 1\n")
        self.assertEqual([formatEvent(e) for e in self.startLog],
                         ["dicom.ini:4: [lua] command, ExportConverter: these Conquest Lua event scripts are not "
                          "supported here and do not run (startup, nightly, background and association do)"])
