"""Unit tests of pacscore.dicom.mppsforward: the table of MPPS messages
waiting to be forwarded, and the forwarder's order and retries on a Clock
(the sending itself is tested against a RIS in tests/interop/test_mpps.py)."""

from types import SimpleNamespace

from pydicom.dataset import Dataset
from sqlalchemy import create_engine
from twisted.internet import defer, task
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.dicom import commands, mppsforward
from pacscore.dicom.mppsforward import MppsForwarder, WaitingForwards
from pacscore.dicom.protocol import NoStatus


class SynchronousIndex:
    """An index whose queries and writes run at once on an in-memory SQLite."""

    def __init__(self):
        self.engine = create_engine("sqlite://")

    def _run(self, fn, *args):
        with self.engine.begin() as connection:
            return defer.succeed(fn(connection, *args))

    runQuery = runWrite = _run


def step(status):
    dataset = Dataset()
    dataset.PerformedProcedureStepStatus = status
    return dataset


class WaitingForwardsTests(unittest.TestCase):

    def setUp(self):
        self.index = SynchronousIndex()
        self.queue = WaitingForwards(self.index, lambda: 1000.0)
        self.queue.createTables()

    def test_orderPerDestination(self):
        """Messages come back in the order they were added, with their
        data set, for one destination or all; removal is by id."""
        self.index.runWrite(self.queue.add, ["RIS", "HIS"], commands.N_CREATE_RQ, "1.2.3", step("IN PROGRESS"))
        self.index.runWrite(self.queue.add, ["RIS"], commands.N_SET_RQ, "1.2.3", step("COMPLETED"))
        rows = self.successResultOf(self.index.runQuery(self.queue.waiting, "RIS"))
        self.assertEqual([(row.SOPInstanceUID, row.CommandField) for row in rows],
                         [("1.2.3", commands.N_CREATE_RQ), ("1.2.3", commands.N_SET_RQ)])
        self.assertEqual(len(self.successResultOf(self.index.runQuery(self.queue.waiting))), 3)
        self.index.runWrite(self.queue.remove, rows[0].id)
        rows = self.successResultOf(self.index.runQuery(self.queue.waiting, "RIS"))
        self.assertEqual([row.CommandField for row in rows], [commands.N_SET_RQ])
        self.assertIn(b"COMPLETED", rows[0].Dataset)


class ForwarderTests(unittest.TestCase):
    """The forwarder with its sending replaced by a list of outcomes."""

    def setUp(self):
        self.clock = task.Clock()
        self.index = SynchronousIndex()
        self.queue = WaitingForwards(self.index, self.clock.seconds)
        self.queue.createTables()
        self.forwarder = MppsForwarder(self.queue, ["RIS"], SimpleNamespace(lookup=lambda ae: None), "PACS",
                                       self.clock, retryDelay=100)
        self.reachable = True
        self.sent = []
        self.forwarder._sendOne = self.sendOne

    def sendOne(self, ae, row):
        if not self.reachable:
            return defer.succeed(False)
        self.sent.append((ae, row.CommandField))
        return defer.succeed(True)

    def accept(self, field, status):
        self.index.runWrite(self.forwarder.record, field, "1.2.3", step(status))
        return self.forwarder.send()

    def waiting(self):
        return [row.CommandField for row in self.successResultOf(self.index.runQuery(self.queue.waiting))]

    def test_sentInOrderAndForgotten(self):
        self.successResultOf(self.accept(commands.N_CREATE_RQ, "IN PROGRESS"))
        self.successResultOf(self.accept(commands.N_SET_RQ, "COMPLETED"))
        self.assertEqual(self.sent, [("RIS", commands.N_CREATE_RQ), ("RIS", commands.N_SET_RQ)])
        self.assertEqual(self.waiting(), [])

    def test_unreachableWaitsThenRetries(self):
        """While the RIS cannot be reached, the N-CREATE and the N-SET after
        it wait; they go, in order, RetryDelay later."""
        self.reachable = False
        self.successResultOf(self.accept(commands.N_CREATE_RQ, "IN PROGRESS"))
        self.clock.advance(50)
        self.successResultOf(self.accept(commands.N_SET_RQ, "COMPLETED"))
        self.assertEqual(self.waiting(), [commands.N_CREATE_RQ, commands.N_SET_RQ])
        self.reachable = True
        self.clock.advance(100)
        self.assertEqual(self.sent, [("RIS", commands.N_CREATE_RQ), ("RIS", commands.N_SET_RQ)])
        self.assertEqual(self.waiting(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_resumeAndStop(self):
        """resume() sends what a previous run left; stop() cancels a retry."""
        self.index.runWrite(self.queue.add, ["RIS"], commands.N_CREATE_RQ, "1.2.3", step("IN PROGRESS"))
        self.reachable = False
        self.successResultOf(self.forwarder.resume())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.forwarder.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.reachable = True
        self.successResultOf(self.forwarder.resume())
        self.assertEqual(self.sent, [("RIS", commands.N_CREATE_RQ)])
        self.assertEqual(self.waiting(), [])


class AnswerWithoutStatusTests(unittest.TestCase):
    """A RIS answering a forwarded N-SET without a Status (the protocol
    refuses such a response, NoStatus, and aborts) refused it: logged
    as refused with status none, not tried again, and the next message
    goes; it was taken for an unreachable RIS, the N-SET sent again
    every RetryDelay and the next step's N-CREATE never."""

    def test_aRefusalNotARetry(self):
        clock = task.Clock()
        index = SynchronousIndex()
        queue = WaitingForwards(index, clock.seconds)
        queue.createTables()
        forwarder = MppsForwarder(queue, ["RIS"], SimpleNamespace(lookup=lambda ae: SimpleNamespace(ae=ae)), "PACS",
                                  clock, retryDelay=100)
        requests = []

        class Association:
            def contextFor(self, sopClass):
                return 1, "1.2.840.10008.1.2.1"

            def request(self, contextId, command, data):
                requests.append(command[commands.COMMAND_FIELD])
                if command[commands.COMMAND_FIELD] == commands.N_SET_RQ:
                    return defer.fail(NoStatus("N-SET-RSP answers message 2 without a Status"))
                return defer.succeed(({commands.STATUS: 0}, None))

        async def sendToNode(reactor, node, callingAE, contexts, send, log, what, *args):
            await send(Association())
            return True
        self.patch(mppsforward, "sendToNode", sendToNode)
        index.runWrite(forwarder.record, commands.N_SET_RQ, "1.2.3", step("COMPLETED"))
        index.runWrite(forwarder.record, commands.N_CREATE_RQ, "1.2.4", step("IN PROGRESS"))
        with capturedLogs() as events:
            self.successResultOf(forwarder.send())
        self.assertEqual(requests, [commands.N_SET_RQ, commands.N_CREATE_RQ])
        self.assertEqual(self.successResultOf(index.runQuery(queue.waiting)), [])
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertIn("MPPS 1.2.3: RIS refused the forwarded N-SET-RQ with status none", [formatEvent(e) for e in events])
