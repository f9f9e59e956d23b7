"""Tests for pacscore.converters.servercommands: control commands run for
converters from their worker threads, limited in time and in waiters."""

import threading

from twisted.internet import defer, reactor, threads
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.control.context import CommandError
from pacscore.converters.awaitingobjects import isAwaitingObjects
from pacscore.converters.servercommands import ServerCommandError, ServerCommands


class ServerCommandsTests(unittest.TestCase):

    def commands(self, run, slots=2, ini=""):
        return ServerCommands.fromIni(DicomIni.fromString(ini), reactor, run, slots)

    @inlineCallbacks
    def test_outputAndRefusal(self):
        def run(line, sandboxed):
            if line == "nosuch:":
                return defer.fail(CommandError("unknown command --nosuch"))
            self.assertIs(threading.current_thread(), threading.main_thread())  # in the reactor
            return defer.succeed(f"ran {line}" + (" sandboxed" if sandboxed else ""))

        commands = self.commands(run)
        self.assertEqual((yield threads.deferToThread(commands.fromThread, "display_status:")),
                         "ran display_status: sandboxed")
        self.assertEqual((yield threads.deferToThread(commands.fromThread, "put_param:x,1", sandboxed=False)),
                         "ran put_param:x,1")
        error = yield self.assertFailure(threads.deferToThread(commands.fromThread, "nosuch:"), ServerCommandError)
        self.assertEqual(str(error), "nosuch:: unknown command --nosuch")

    @inlineCallbacks
    def test_timeoutFromIni(self):
        commands = self.commands(lambda line, sandboxed: defer.Deferred(), ini="LuaCommandTimeout = 1\n")
        self.assertEqual((commands.timeout, self.commands(None).timeout), (1, 60))
        error = yield self.assertFailure(threads.deferToThread(commands.fromThread, "slow:"), ServerCommandError)
        self.assertEqual(str(error), "slow:: not finished within 1 s (LuaCommandTimeout); it may still end as asked")

    @inlineCallbacks
    def test_busyWhenEverySlotWaits(self):
        """Waiters beyond the slots are refused at once, so a command that
        needs a worker finds one; a slot is free again after its wait."""
        started, pending = defer.Deferred(), defer.Deferred()

        def run(line, sandboxed):
            if line == "quick:":
                return defer.succeed("quick")
            started.callback(None)
            return pending

        commands = self.commands(run, slots=1)
        waiting = threads.deferToThread(commands.fromThread, "slow:")
        yield started  # its worker holds the slot
        error = yield self.assertFailure(threads.deferToThread(commands.fromThread, "quick:"), ServerCommandError)
        self.assertEqual(str(error), "quick:: busy, every worker that may wait for a command does")
        pending.callback("slow done")
        self.assertEqual((yield waiting), "slow done")
        self.assertEqual((yield threads.deferToThread(commands.fromThread, "quick:")), "quick")

    def test_noSlots(self):
        """An I/O pool of one thread leaves no worker to wait."""
        with self.assertRaises(ServerCommandError):
            self.commands(lambda line, sandboxed: defer.succeed(""), slots=0).fromThread("display_status:")

    @inlineCallbacks
    def test_aMoveOrCommandAwaitsObjects(self):
        """While its thread waits for a dicommove or an unsandboxed control
        command, either of which may store objects here, the thread is
        awaiting objects (a copy of what it imports is then not waited
        for); not for a dicomquery or a sandboxed command (which changes
        nothing), nor once the wait is over."""
        seen, worker = {}, []

        class Requests:
            def move(self, source, destination, identifier, patientRoot):
                seen["move"] = isAwaitingObjects(worker[0])
                return defer.succeed(None)

            def find(self, ae, level, identifier):
                seen["find"] = isAwaitingObjects(worker[0])
                return defer.succeed([])

        def run(line, sandboxed):
            seen["sandboxed command" if sandboxed else "command"] = isAwaitingObjects(worker[0])
            return defer.succeed("")

        commands = ServerCommands(reactor, run, 2, requests=Requests())

        def inWorker():
            worker.append(threading.get_ident())
            commands.move("B", "A", None)
            commands.find("B", "STUDY", None)
            commands.fromThread("movepatient:B,A,1", sandboxed=False)
            commands.fromThread("display_status:")
            return isAwaitingObjects(worker[0])

        self.assertFalse((yield threads.deferToThread(inWorker)))
        self.assertEqual(seen, {"move": True, "find": False, "command": True, "sandboxed command": False})
