"""Tests for pacscore.converters.servercommands: control commands run for
converters from their worker threads, limited in time and in waiters."""

import threading

import pydicom
from twisted.internet import defer, reactor, threads
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.control.context import CommandError
from pacscore.converters.awaitingobjects import MoveScope, awaitedMove
from pacscore.converters.servercommands import MAX_WAITING, ServerCommandError, ServerCommands
from pacscore.workers import WorkerPool


class ServerCommandsTests(unittest.TestCase):

    def commands(self, run, slots=MAX_WAITING, ini=""):
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
        """Waiters beyond the slots are refused at once; a slot is free
        again after its wait."""
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
        self.assertEqual(str(error), "quick:: busy, 1 calls wait already, the most that may")
        pending.callback("slow done")
        self.assertEqual((yield waiting), "slow done")
        self.assertEqual((yield threads.deferToThread(commands.fromThread, "quick:")), "quick")

    @inlineCallbacks
    def test_waitersOfOnePoolAllServed(self):
        """Six converters of a pool of two workers (six associations
        storing at once) wait at once for commands that each need a worker
        of that pool: every one is answered, none is refused as busy, none
        starves the pool."""
        pool = WorkerPool(reactor, 2, "commands-pool")
        pool.start()
        self.addCleanup(pool.stop, 5)
        gates = []

        def run(line, sandboxed):
            gates.append(defer.Deferred())
            gate = gates[-1]
            if len(gates) == 6:
                for each in gates:
                    each.callback(None)
            # answered only once all six wait, by a worker of the pool they wait in
            return gate.addCallback(lambda _: pool.deferToWorker(str.upper, line))

        commands = self.commands(run, ini="LuaCommandTimeout = 10\n")
        answers = yield defer.gatherResults([pool.deferToWorker(commands.fromThread, f"c{n}:") for n in range(6)])
        self.assertEqual(answers, [f"C{n}:" for n in range(6)])

    def test_noSlots(self):
        """No slots: every call is refused."""
        with self.assertRaises(ServerCommandError):
            self.commands(lambda line, sandboxed: defer.succeed(""), slots=0).fromThread("display_status:")

    @inlineCallbacks
    def test_aMoveAwaitsObjects(self):
        """While its thread waits for a dicommove, which may store objects
        here, the thread awaits what the move asks for (a copy of what it
        imports that falls within it is then not waited for); not for a
        dicomquery, nor for a control command (an unsandboxed one may store
        objects, but which is not known: a copy waits), nor once the wait is over."""
        seen, worker = {}, []

        class Requests:
            def move(self, source, destination, identifier, patientRoot):
                seen["move"] = awaitedMove(worker[0])
                return defer.succeed(None)

            def find(self, ae, level, identifier):
                seen["find"] = awaitedMove(worker[0])
                return defer.succeed([])

        def run(line, sandboxed):
            seen["sandboxed command" if sandboxed else "command"] = awaitedMove(worker[0])
            return defer.succeed("")

        commands = ServerCommands(reactor, run, 2, requests=Requests())
        study = pydicom.Dataset()
        study.QueryRetrieveLevel, study.PatientID, study.StudyInstanceUID = "STUDY", "P1", "1.2.3"

        def inWorker():
            worker.append(threading.get_ident())
            commands.move("B", "A", study)
            commands.find("B", "STUDY", None)
            commands.fromThread("movepatient:B,A,1", sandboxed=False)
            commands.fromThread("display_status:")
            return awaitedMove(worker[0])

        self.assertIsNone((yield threads.deferToThread(inWorker)))
        move = seen.pop("move")
        self.assertEqual(seen, {"find": None, "command": None, "sandboxed command": None})
        self.assertTrue(move.covers({0x00100020: "P1", 0x0020000D: "1.2.3", 0x0020000E: "9.9"}))
        self.assertFalse(move.covers({0x00100020: "P1", 0x0020000D: "1.2.4"}))
        self.assertFalse(move.covers({0x00100020: "P2", 0x0020000D: "1.2.3"}))

    def test_moveScopes(self):
        """A MoveScope takes the keys of its level and above; an empty one,
        a list of UIDs and wildcards match as a C-MOVE's would."""
        def scope(**keys):
            identifier = pydicom.Dataset()
            for keyword, value in keys.items():
                setattr(identifier, keyword, value)
            return MoveScope(identifier)
        image = {0x00100020: "P1", 0x0020000D: "1.2.3", 0x0020000E: "1.2.3.4", 0x00080018: "1.2.3.4.5"}
        self.assertTrue(scope(QueryRetrieveLevel="PATIENT", PatientID="P1", StudyInstanceUID="9").covers(image))
        self.assertFalse(scope(QueryRetrieveLevel="PATIENT", PatientID="P2").covers(image))
        self.assertTrue(scope(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.9\\1.2.3").covers(image))
        self.assertTrue(scope(QueryRetrieveLevel="STUDY", PatientID="P*", StudyInstanceUID="").covers(image))
        self.assertFalse(scope(QueryRetrieveLevel="SERIES", SeriesInstanceUID="1.2.3.9").covers(image))
        self.assertFalse(scope(QueryRetrieveLevel="IMAGE", SOPInstanceUID="1.2.3.4.6").covers(image))
