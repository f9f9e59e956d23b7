"""Unit tests of pacscore.dicom.mppsforward: the table of MPPS messages
waiting to be forwarded, and the forwarder's order and retries on a Clock
(the sending itself is tested against a RIS in tests/interop/test_mpps.py)."""

from types import SimpleNamespace

from pydicom.dataset import Dataset
from sqlalchemy import create_engine
from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs, formatEvent
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


class AnsweringRisCase(unittest.TestCase):
    """A forwarder whose RIS is reached at once and answers each message
    as ``self.answers`` says for its command field (a Status, or an
    exception it fails with); ``requests`` the fields it got."""

    def setUp(self):
        self.clock = task.Clock()
        self.index = SynchronousIndex()
        self.queue = WaitingForwards(self.index, self.clock.seconds)
        self.queue.createTables()
        self.forwarder = MppsForwarder(self.queue, ["RIS"], SimpleNamespace(lookup=lambda ae: SimpleNamespace(ae=ae)),
                                       "PACS", self.clock, retryDelay=100)
        self.answers, self.requests = {}, []
        answers, requests = self.answers, self.requests

        class Association:
            def contextFor(self, sopClass):
                return 1, "1.2.840.10008.1.2.1"

            def request(self, contextId, command, data):
                requests.append(command[commands.COMMAND_FIELD])
                answer = answers.get(command[commands.COMMAND_FIELD], 0)
                if isinstance(answer, Exception):
                    return defer.fail(answer)
                return defer.succeed(({commands.STATUS: answer}, None))

        async def sendToNode(reactor, node, callingAE, contexts, send, log, what, *args):
            await send(Association())
            return True
        self.patch(mppsforward, "sendToNode", sendToNode)

    def forwardAll(self):
        """Send what was recorded: each message dealt with at once, nothing
        left waiting nor tried again; its log events."""
        with capturedLogs() as events:
            self.successResultOf(self.forwarder.send())
        self.assertEqual(self.successResultOf(self.index.runQuery(self.queue.waiting)), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        return events


class AnswerWithoutStatusTests(AnsweringRisCase):
    """A RIS answering a forwarded N-SET without a Status (the protocol
    refuses such a response, NoStatus, and aborts) refused it: logged
    as refused with status none, not tried again, and the next message
    goes; it was taken for an unreachable RIS, the N-SET sent again
    every RetryDelay and the next step's N-CREATE never."""

    def test_aRefusalNotARetry(self):
        self.answers[commands.N_SET_RQ] = NoStatus("N-SET-RSP answers message 2 without a Status")
        self.index.runWrite(self.forwarder.record, commands.N_SET_RQ, "1.2.3", step("COMPLETED"))
        self.index.runWrite(self.forwarder.record, commands.N_CREATE_RQ, "1.2.4", step("IN PROGRESS"))
        events = self.forwardAll()
        self.assertEqual(self.requests, [commands.N_SET_RQ, commands.N_CREATE_RQ])
        self.assertIn("MPPS 1.2.3: RIS refused the forwarded N-SET-RQ with status none", [formatEvent(e) for e in events])


class WarningAnswerTests(AnsweringRisCase):
    """A RIS answering a Warning status (0x0107 attribute list error,
    0xBxxx ...) took the message, as a modality taking a storage
    commitment report with one does (client.taken): a warning that says
    it was forwarded; it was logged as refused.  A Failure status still
    refused it."""

    def test_aWarningIsTakenAFailureRefused(self):
        self.answers.update({commands.N_CREATE_RQ: 0x0107, commands.N_SET_RQ: 0xB000})
        self.index.runWrite(self.forwarder.record, commands.N_CREATE_RQ, "1.2.3", step("IN PROGRESS"))
        self.index.runWrite(self.forwarder.record, commands.N_SET_RQ, "1.2.3", step("COMPLETED"))
        events = self.forwardAll()
        self.assertEqual([(event["log_level"], formatEvent(event)) for event in events], [
            (LogLevel.warn, "MPPS 1.2.3: N-CREATE-RQ forwarded to RIS, taken with warning status 0x0107"),
            (LogLevel.warn, "MPPS 1.2.3: N-SET-RQ forwarded to RIS, taken with warning status 0xB000")])
        self.answers[commands.N_SET_RQ] = 0x0110
        self.index.runWrite(self.forwarder.record, commands.N_SET_RQ, "1.2.3", step("DISCONTINUED"))
        self.assertEqual([formatEvent(event) for event in self.forwardAll()], [
            "MPPS 1.2.3: RIS refused the forwarded N-SET-RQ with status 0x0110"])
