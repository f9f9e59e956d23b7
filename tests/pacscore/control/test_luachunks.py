"""dgate --lua:, --dolua: and --luastart:, a Lua chunk run in the server."""

import threading

from twisted.internet import defer, reactor, task
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.control import output
from pacscore.control.context import CommandError
from plugins import pacs_control_server as commands
from tests.pacscore.control.running import RunningArchive


class LuaChunkTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self, ae="LUAPACS")

    @defer.inlineCallbacks
    def test_printOutputComesBack(self):
        for command in (commands.lua, commands.dolua):
            output = yield self.running.run(command, "print(Global.MyACRNema); print('a', 1 + 1)")
            self.assertEqual(output, "LUAPACS\na\t2")
        output = yield self.running.run(commands.lua, "print(servercommand('get_param:MyACRNema'))")
        self.assertEqual(output, "LUAPACS")
        self.assertEqual((yield self.running.run(commands.lua, "local x = 1")), "")
        output = yield self.running.run(commands.dolua, "Data.PatientID = 'P1'; print(type(Data), Data.PatientID)")
        self.assertEqual(output, "table\tP1")

    @defer.inlineCallbacks
    def test_bytesThatAreNoUTF8Print(self):
        """print(string.char(255)) (which failed, 'utf-8' codec can't decode
        byte 0xff, with a critical traceback in the server log): such a
        byte prints as Latin-1."""
        for command in (commands.lua, commands.dolua):
            self.assertEqual((yield self.running.run(command, "print(string.char(255), 'é')")), "\u00ff\té")

    @defer.inlineCallbacks
    def test_failuresAndRefusals(self):
        error = yield self.assertFailure(self.running.run(commands.lua, "print('before'); error('boom')"),
                                         CommandError)
        self.assertIn("boom", str(error))
        self.assertEqual(error.output, "before")
        error = yield self.assertFailure(self.running.run(commands.lua, "print("), CommandError)
        self.assertIn("Lua", str(error))
        error = yield self.assertFailure(self.running.run(commands.dolua, " "), CommandError)
        self.assertEqual(str(error), "no Lua code given")
        error = yield self.assertFailure(self.running.run(commands.lua, "os.execute('true')"), CommandError)
        self.assertIn("execute", str(error))

    @defer.inlineCallbacks
    def test_chunksRunBesideABusyIOPool(self):
        """A chunk runs in a pool of its own: one stuck in a C call (a
        backtracking string.find) holds up neither storage nor the control
        commands that need the I/O pool, nor does a busy I/O pool hold up a chunk."""
        release = threading.Event()
        workers = self.running.archive.workers
        busy = [workers.deferToWorker(release.wait) for _ in range(workers.size)]
        try:
            output = yield self.running.run(commands.lua, "print(1 + 1)").addTimeout(10, reactor)
        finally:
            release.set()
            yield defer.gatherResults(busy)
        self.assertEqual(output, "2")

    @defer.inlineCallbacks
    def test_refusedWhenEveryThreadIsBusy(self):
        """With every pacs-lua thread running a chunk (stuck ones: a C call
        never returns), a further chunk is refused at once, not queued."""
        release = threading.Event()
        chunks = self.running.archive.luaChunks
        busy = [chunks.deferToWorker(release.wait) for _ in range(chunks.size)]
        try:
            error = yield self.assertFailure(self.running.run(commands.lua, "print(1)"), CommandError)
        finally:
            release.set()
            yield defer.gatherResults(busy)
        self.assertEqual(str(error), f"busy: {chunks.size} Lua chunks running, try again later")
        self.assertEqual((yield self.running.run(commands.lua, "print(1)")), "1")

    @defer.inlineCallbacks
    def test_printedOutputIsCapped(self):
        """What a chunk prints is at most MAX_ANSWER bytes: past them the
        chunk fails, saying so, with what it printed before."""
        self.patch(output, "MAX_ANSWER", 10)
        self.assertEqual((yield self.running.run(commands.lua, "print('1234'); print('1234')")), "1234\n1234")
        error = yield self.assertFailure(
            self.running.run(commands.lua, "print('1234'); print('1234'); print('x'); print('never')"), CommandError)
        self.assertIn("prints more than 10 bytes", str(error))
        self.assertEqual(error.output, "1234\n1234")
        error = yield self.assertFailure(self.running.run(commands.lua, "pcall(print, ('x'):rep(11))"), CommandError)
        self.assertIn("prints more than 10 bytes", str(error))

    @defer.inlineCallbacks
    def test_printedOutputIsCappedInBytes(self):
        """MAX_ANSWER counts the UTF-8 bytes that go to the client, not
        characters: 'é' is two."""
        self.patch(output, "MAX_ANSWER", 10)
        self.assertEqual((yield self.running.run(commands.lua, "print('éééé'); print('x')")), "éééé\nx")
        error = yield self.assertFailure(self.running.run(commands.lua, "print('éééé'); print('é')"), CommandError)
        self.assertIn("prints more than 10 bytes", str(error))
        self.assertEqual(error.output, "éééé")

    @defer.inlineCallbacks
    def test_luastartAnswersAtOnceAndLogsTheOutcome(self):
        """Conquest's luastart (it was 'unknown command'): the chunk is
        started and the command answers before it ends; what it printed,
        or its failure, is logged."""
        with capturedLogs() as events:
            started = self.running.run(commands.luastart, "print('done')")
            self.assertEqual(self.successResultOf(started), "Lua chunk started")
            self.assertEqual([e for e in events if "luastart" in formatEvent(e)], [])
            failed = self.running.run(commands.luastart, "print('before'); error('boom')")
            self.assertEqual(self.successResultOf(failed), "Lua chunk started")
            for _ in range(100):
                lines = [(e["log_level"], formatEvent(e)) for e in events if "luastart" in formatEvent(e)]
                if len(lines) == 2:
                    break
                yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertIn((LogLevel.info, "test: luastart: the Lua chunk ended, printing: done"), lines)
        [(level, line)] = [(level, line) for level, line in lines if "boom" in line]
        self.assertEqual(level, LogLevel.warn)
        self.assertIn("(it printed: before)", line)
        error = yield self.assertFailure(self.running.run(commands.luastart, " "), CommandError)
        self.assertEqual(str(error), "no Lua code given")
