"""The control port protocol and its client, through StringTransport and
iosim with a task.Clock: requests, streamed answers, secrets, failures, and
several clients at once."""

import os
import sqlite3
import sys
from types import SimpleNamespace

from twisted.internet import defer, error, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial import unittest
from zope.interface import implementer

from pacscore.closing import CLOSE_BOUND
from pacscore.control.client import (ANSWER_TIMEOUT, ClientFailed, ControlClientProtocol, DicomPortAnswered, NoAnswer,
                                     Reply, controlPortHint)
from pacscore.control.configuration import PutParam
from pacscore.control.context import CommandError
from pacscore.control.deletes import DeletePatient
from pacscore.control.protocol import (KEEPALIVE_INTERVAL, MAX_OUTPUT_LINE, STALLED_READER_BOUND, BadRequest,
                                      ControlFactory, parseCommand)
from pacscore.control.registry import CommandRegistry
from pacscore.dicom import pdu
from pacscore.dicom.admission import AssociationLimits
from pacscore.interfaces import IControlCommand
from tests.pacscore.db.test_errors import sqliteError
from tests.pacscore.test_closing import BufferedTransport


@implementer(IControlCommand)
class Echo:
    name = "echo"
    usage = "--echo:text  Answer the text"

    def run(self, arguments, context):
        return f"{arguments}\nfrom {context.peer}"


@implementer(IControlCommand)
class Silent:
    name = "silent"
    usage = "--silent:  Answer nothing"

    def run(self, arguments, context):
        return None


@implementer(IControlCommand)
class Slow:
    """Reports progress and answers when the test fires ``pending``."""

    name = "slow"
    usage = "--slow:  Take long"

    def __init__(self):
        self.pending = []

    def run(self, arguments, context):
        context.progress("started\nstill going")
        d = defer.Deferred()
        self.pending.append(d)
        return d


@implementer(IControlCommand)
class Picture:
    """Answers bytes (a converted picture): line ends and answer words among them."""

    name = "picture"
    usage = "--picture:  Answer bytes"
    content = bytes(range(256)) * 3 + b"\r\nOK\r\nOUTPUT x\n"

    def run(self, arguments, context):
        return b"" if arguments == "empty" else self.content


@implementer(IControlCommand)
class Broken:
    name = "broken"
    usage = "--broken:  Fail"

    def run(self, arguments, context):
        if arguments == "refuse":
            raise CommandError("no such patient")
        if arguments == "partly":
            raise CommandError("1 of 2 failed", output="stored a.dcm\nfailed b.dcm: refused")
        if arguments.startswith("query:"):  # as a database driver does, which takes UTF-8 text only
            return arguments.encode("utf-8")
        return 1 / 0


@implementer(IControlCommand)
class Listing:
    """Reports and answers a file name that is not UTF-8, as read from a folder."""

    name = "listing"
    usage = "--listing:  Name a file"
    fileName = os.fsdecode(b"/data/bad\xff.dcm")

    def run(self, arguments, context):
        context.progress(f"{self.fileName} -FAILED")
        return f"{self.fileName}\nlast line"


class ParseTests(unittest.TestCase):

    def test_nameAndArguments(self):
        self.assertEqual(parseCommand("--Get_Param:MyACRNema,%s"), ("get_param", "MyACRNema,%s"))

    def test_noArguments(self):
        self.assertEqual(parseCommand("--display_status"), ("display_status", ""))
        self.assertEqual(parseCommand("quit:"), ("quit", ""))

    def test_argumentsKeepColons(self):
        self.assertEqual(parseCommand("--deletestudy:4711:1.2.3"), ("deletestudy", "4711:1.2.3"))

    def test_badNames(self):
        for text in ("--", "--:x", "--rm -rf:", "--a/b:"):
            self.assertRaises(BadRequest, parseCommand, text)


class RegistryTests(unittest.TestCase):

    def test_builtInCommandsAreFound(self):
        registry = CommandRegistry()
        for name in ("display_status", "quit", "forwardqueue", "retryforwards"):
            self.assertEqual(registry.lookup(name.upper()).name, name)

    def test_duplicateNames(self):
        error = self.assertRaises(ValueError, CommandRegistry, [Echo(), Echo()])
        self.assertIn("'echo'", str(error))

    def test_usageSortedByName(self):
        self.assertEqual(CommandRegistry([Slow(), Echo()]).usage(), [Echo.usage, Slow.usage])


class ServerTests(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.slow = Slow()
        self.factory = self.makeFactory()

    def makeFactory(self, **kw):
        return ControlFactory(object(), self.clock,
                              commands=CommandRegistry([Echo(), self.slow, Broken(), Silent(), Picture(), Listing()]),
                              **kw)

    preamble = ()  # the lines a client sends before its command

    def connect(self, factory=None, preamble=None, peer=IPv4Address("TCP", "10.1.2.3", 40000)):
        protocol = (factory or self.factory).buildProtocol(None)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        for line in self.preamble if preamble is None else preamble:
            protocol.dataReceived(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return protocol, transport

    def request(self, *lines, factory=None, preamble=None):
        protocol, transport = self.connect(factory, preamble)
        for line in lines:
            protocol.dataReceived(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return transport

    def answer(self, transport):
        return transport.value().decode("utf-8").split("\r\n")[:-1]

    def test_outputThenOK(self):
        transport = self.request("COMMAND --echo:hello, world")
        self.assertEqual(self.answer(transport), ["OUTPUT hello, world", "OUTPUT from 10.1.2.3:40000", "OK"])
        self.assertTrue(transport.disconnecting)

    def test_anIPv6PeerIsWrittenInBrackets(self):
        protocol, transport = self.connect(peer=IPv6Address("TCP", "::1", 40113))
        protocol.dataReceived(b"COMMAND --echo:hi\r\n")
        self.assertEqual(self.answer(transport), ["OUTPUT hi", "OUTPUT from [::1]:40113", "OK"])

    def test_noOutput(self):
        self.assertEqual(self.answer(self.request("COMMAND --silent:")), ["OK"])

    def test_bytesAsData(self):
        transport = self.request("COMMAND --picture:")
        content = Picture.content
        self.assertEqual(transport.value(), f"DATA {len(content)}\r\n".encode() + content + b"OK\r\n")
        self.assertEqual(self.request("COMMAND --picture:empty").value(), b"DATA 0\r\nOK\r\n")

    def test_bareLineFeedsAccepted(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"COMMAND --echo:x\n")
        self.assertEqual(self.answer(transport)[-1], "OK")

    def test_progressWhileRunning(self):
        transport = self.request("COMMAND --slow:")
        self.assertEqual(self.answer(transport), ["PROGRESS started", "PROGRESS still going"])
        self.assertFalse(transport.disconnecting)
        self.slow.pending[0].callback("done")
        self.assertEqual(self.answer(transport)[2:], ["OUTPUT done", "OK"])
        self.assertTrue(transport.disconnecting)

    def test_unknownCommand(self):
        with capturedLogs() as events:
            transport = self.request("COMMAND --nosuch:1")
        self.assertEqual(self.answer(transport), ["ERROR unknown command --nosuch"])
        self.assertIn("unknown command --nosuch", "\n".join(formatEvent(e) for e in events))

    def test_secretsPutAreNotLogged(self):
        """``--put_param:ControlSecret,x`` was logged with x in clear (the
        server log is read more widely than dicom.ini); a secret key's value
        is logged as ``***``, a URL's password hidden, others as sent."""

        class PutParamDone(PutParam):
            def run(self, arguments, context):
                return ""

        factory = ControlFactory(object(), self.clock, commands=CommandRegistry([PutParamDone()]))
        logged = []
        for line in ("--put_param:ControlSecret,Sup3rS3cret", "--put_param: Password ,dbpass123",
                     "--put_param:SQLServer,postgresql://pacs:dbpass123@db/pacs", "--put_param:MyACRNema,NEW"):
            with capturedLogs() as events:
                self.assertEqual(self.answer(self.request(f"COMMAND {line}", factory=factory)), ["OK"])
            logged += [formatEvent(e) for e in events]
        self.assertEqual(logged, ["control: 10.1.2.3:40000: --put_param:ControlSecret,***",
                                  "control: 10.1.2.3:40000: --put_param:Password,***",
                                  "control: 10.1.2.3:40000: --put_param:SQLServer,postgresql://pacs:***@db/pacs",
                                  "control: 10.1.2.3:40000: --put_param:MyACRNema,NEW"])

    def test_badRequest(self):
        transport = self.request("HELLO there")
        self.assertEqual(len(self.answer(transport)), 1)
        self.assertTrue(self.answer(transport)[0].startswith("ERROR bad request: expected AUTH, LINE or COMMAND"))
        self.assertTrue(transport.disconnecting)

    def test_nothingRunsAfterABadRequest(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"HELLO\r\nCOMMAND --slow:\r\n")
        self.assertEqual(len(self.answer(transport)), 1)
        self.assertEqual(self.slow.pending, [])

    def test_argumentsThatAreNotUTF8(self):
        """Their bytes reach the command as they are (a file name, as
        ``os.fsdecode`` gives it); where only text goes, the command fails
        saying so, without a traceback in the log."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"COMMAND --echo:/data/M\xfcller.dcm\r\n")
        self.assertEqual(self.answer(transport)[0], "OUTPUT /data/M\\udcfcller.dcm")
        with capturedLogs() as events:
            transport = self.request(os.fsdecode(b"COMMAND --broken:query:M\xfcller"))
        self.assertEqual(self.answer(transport),
                         ["ERROR an argument holds bytes that are not UTF-8 (\\udcfc): only a file name may"])
        self.assertEqual([e for e in events if "log_failure" in e], [])

    def test_fileNamesThatAreNotUTF8(self):
        """Every line is sent, the bytes that are not UTF-8 escaped."""
        transport = self.request("COMMAND --listing:")
        self.assertEqual(self.answer(transport), ["PROGRESS /data/bad\\udcff.dcm -FAILED",
                                                  "OUTPUT /data/bad\\udcff.dcm", "OUTPUT last line", "OK"])

    def test_nulCharacter(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"COMMAND --slow:/tmp/x\x00y\r\n")
        self.assertEqual(self.answer(transport), ["ERROR bad request: NUL character in the request"])
        self.assertEqual(self.slow.pending, [])

    def test_lineTooLong(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"COMMAND --echo:" + b"x" * protocol.MAX_LENGTH)
        self.assertEqual(self.answer(transport), [f"ERROR request line longer than {protocol.MAX_LENGTH} bytes"])
        self.assertTrue(transport.disconnecting)

    def test_linesOfARequest(self):
        """LINE lines come before COMMAND, which ends the request; all of
        them are bounded as one line is."""
        transport = self.request("LINE --echo:one", "LINE ", "COMMAND three")
        self.assertEqual(self.answer(transport), ["OUTPUT one", "OUTPUT ", "OUTPUT three",
                                                  "OUTPUT from 10.1.2.3:40000", "OK"])
        protocol, transport = self.connect()
        half = "x" * (protocol.MAX_LENGTH // 2)
        with capturedLogs():
            protocol.dataReceived(f"LINE --echo:{half}\r\nCOMMAND {half}\r\n".encode())
        self.assertEqual(self.answer(transport), [f"ERROR bad request: request longer than {protocol.MAX_LENGTH} bytes"])

    def test_manyLinesOfARequestInLinearWork(self):
        """100,000 empty LINE lines: each costs the same few steps (no
        sum over the lines so far, which held the reactor for minutes), and
        the request is closed as soon as it grows past MAX_LENGTH bytes."""
        protocol, transport = self.connect()
        count, steps = 100000, [0]

        def tracer(frame, event, arg):
            if frame.f_code.co_filename.endswith(os.path.join("control", "protocol.py")):
                steps[0] += 1
                if steps[0] > 30 * count:
                    raise AssertionError("LINE lines take work growing faster than their number")
                return tracer
            return None
        sys.settrace(tracer)
        try:
            with capturedLogs():
                protocol.dataReceived(b"LINE \r\n" * count)
        finally:
            sys.settrace(None)
        self.assertEqual(self.answer(transport), [f"ERROR bad request: request longer than {protocol.MAX_LENGTH} bytes"])
        self.assertTrue(transport.disconnecting)

    def test_requestLengthCountsBytes(self):
        """Three lines of 20,000 'é' are 120,000 bytes, not 60,000 characters."""
        protocol, transport = self.connect()
        with capturedLogs():
            protocol.dataReceived(("LINE " + "é" * 20000 + "\r\n").encode() * 2 + b"COMMAND --echo:" +
                                  "é".encode() * 20000 + b"\r\n")
        self.assertEqual(self.answer(transport), [f"ERROR bad request: request longer than {protocol.MAX_LENGTH} bytes"])

    def test_bytesAfterTheCommandAreIgnored(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"COMMAND --slow:\r\n" + b"x" * (protocol.MAX_LENGTH + 10))
        protocol.dataReceived(b"y" * (protocol.MAX_LENGTH + 10) + b"\r\nCOMMAND --echo:again\r\n")
        self.assertEqual(self.answer(transport), ["PROGRESS started", "PROGRESS still going"])
        self.assertFalse(transport.disconnecting)
        self.slow.pending[0].callback("done")
        self.assertEqual(self.answer(transport)[2:], ["OUTPUT done", "OK"])

    def test_idleTimeout(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"AUTH x\r\n")
        self.clock.advance(self.factory.idleTimeout - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(self.answer(transport), [f"ERROR no request within {self.factory.idleTimeout} s"])
        self.assertTrue(transport.disconnecting)

    def test_aCloseNeverCompletedIsCutWithinABound(self):
        """A peer that never lets the close complete (over TLS, one that
        never answers close_notify) is cut CLOSE_BOUND s after the answer,
        so it keeps no connection of ControlMaxConnections; one that closes
        leaves nothing behind."""
        protocol, transport = self.connect()
        aborted = []
        transport.abortConnection = lambda: aborted.append(True)
        protocol.dataReceived(b"COMMAND --echo:x\r\n")
        self.assertTrue(transport.disconnecting)
        self.clock.advance(CLOSE_BOUND - 0.1)
        self.assertEqual(aborted, [])
        self.clock.advance(0.1)
        self.assertEqual(aborted, [True])
        protocol, transport = self.connect()
        protocol.dataReceived(b"COMMAND --echo:x\r\n")
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def answerUnread(self):
        """The transport of a connection whose command was answered with
        100000 bytes its peer has not taken yet."""
        protocol = self.factory.buildProtocol(None)
        transport = BufferedTransport(self)
        protocol.makeConnection(transport)
        for line in self.preamble:
            protocol.dataReceived(line.encode("utf-8") + b"\r\n")
        transport._tempDataLen = 100000
        protocol.dataReceived(b"COMMAND --echo:x\r\n")
        return transport

    def test_aSlowReaderIsNotCut(self):
        """A large answer read slowly, or not at all for a while (a reader
        paused as less pauses): its peer takes none of it for many seconds
        on loopback, and is not cut (it was, CLOSE_BOUND s later, the answer
        lost); one that takes nothing for STALLED_READER_BOUND s is, with a
        log line."""
        transport = self.answerUnread()
        self.clock.pump([CLOSE_BOUND] * 5)
        transport._tempDataLen = 90000
        self.clock.pump([CLOSE_BOUND] * (STALLED_READER_BOUND // CLOSE_BOUND - 1))
        self.assertFalse(transport.aborted)
        with capturedLogs() as events:
            self.clock.pump([CLOSE_BOUND] * 2)
        self.assertTrue(transport.aborted)
        self.assertIn(f"control: 192.168.1.1:54321: connection cut: its peer took none of the 90000 bytes "
                      f"still to send in {STALLED_READER_BOUND} s", [formatEvent(event) for event in events])

    def test_aReaderTakingNothingForAMinuteIsCut(self):
        """Within a minute of taking none of its answer, a reader is cut
        and logged (ControlMaxConnections clients reading nothing held the
        port 10 minutes); one that pauses 40 s, then takes a byte, is not."""
        transport = self.answerUnread()
        self.clock.pump([CLOSE_BOUND] * 20)
        transport._tempDataLen = 99999
        self.clock.pump([CLOSE_BOUND] * 29)
        self.assertFalse(transport.aborted)
        with capturedLogs() as events:
            self.clock.pump([CLOSE_BOUND] * 2)
        self.assertTrue(transport.aborted)
        self.assertIn("control: 192.168.1.1:54321: connection cut: its peer took none of the 99999 bytes "
                      "still to send in 60 s", [formatEvent(event) for event in events])

    def test_noTimeoutWhileACommandRuns(self):
        transport = self.request("COMMAND --slow:")
        self.clock.advance(self.factory.idleTimeout * 10)
        self.assertFalse(transport.disconnecting)
        self.slow.pending[0].callback("")
        self.assertEqual(self.answer(transport)[-1], "OK")

    def test_keepAliveWhileACommandRuns(self):
        """A KEEPALIVE line every KEEPALIVE_INTERVAL seconds until the answer."""
        transport = self.request("COMMAND --slow:")
        self.clock.pump([KEEPALIVE_INTERVAL] * 3)
        self.assertEqual(self.answer(transport)[-3:], ["KEEPALIVE"] * 3)
        self.slow.pending[0].callback("done")
        self.clock.pump([KEEPALIVE_INTERVAL] * 3)
        self.assertEqual(self.answer(transport)[-3:], ["KEEPALIVE", "OUTPUT done", "OK"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_requestLinesDoNotPutOffTheIdleTimeout(self):
        """A client that sends AUTH lines (right or wrong) but no command
        is closed all the same when the idle timeout is over."""
        protocol, transport = self.connect()
        for attempt in range(self.factory.idleTimeout):
            protocol.dataReceived(f"AUTH guess{attempt}\r\n".encode())
            self.clock.advance(1)
        self.assertEqual(self.answer(transport), [f"ERROR no request within {self.factory.idleTimeout} s"])
        self.assertTrue(transport.disconnecting)

    def test_commandError(self):
        transport = self.request("COMMAND --broken:refuse")
        self.assertEqual(self.answer(transport), ["ERROR no such patient"])

    def test_commandErrorAfterOutput(self):
        """A command that did part of its work: its lines as OUTPUT, each on
        its own, then the ERROR with only its summary."""
        transport = self.request("COMMAND --broken:partly")
        self.assertEqual(self.answer(transport),
                         ["OUTPUT stored a.dcm", "OUTPUT failed b.dcm: refused", "ERROR 1 of 2 failed"])

    def test_unexpectedExceptionIsLoggedAndAnswered(self):
        transport = self.request("COMMAND --broken:")
        self.assertEqual(self.answer(transport), ["ERROR division by zero"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.answer(self.request("COMMAND --echo:still here"))[0], "OUTPUT still here")

    def test_aDeleteWhileTheDatabaseIsDownIsOneErrorLine(self):
        """--deletepatient while the index database is down (the query that
        selects its objects fails) answers ERROR with the database's
        message, logged in one error line, without a traceback."""
        down = sqliteError("unable to open database file", sqlite3.SQLITE_CANTOPEN)
        archive = SimpleNamespace(index=SimpleNamespace(runQuery=lambda *args: defer.fail(down)),
                                  query=SimpleNamespace(instances=None))
        factory = ControlFactory(archive, self.clock, commands=CommandRegistry([DeletePatient()]))
        with capturedLogs() as events:
            transport = self.request("COMMAND --deletepatient:DP3", factory=factory)
        self.assertEqual(self.answer(transport), ["ERROR the index database failed: unable to open database file"])
        failed = [event for event in events if "failed" in formatEvent(event)]
        self.assertEqual([(event["log_level"], formatEvent(event)) for event in failed],
                         [(LogLevel.error, "control: 10.1.2.3:40000: --deletepatient failed: the index database "
                                           "failed: unable to open database file")])
        self.assertNotIn("log_failure", failed[0])

    def test_clientGoneBeforeTheAnswer(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"COMMAND --slow:\r\n")
        protocol.connectionLost(None)
        written = transport.value()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.slow.pending[0].callback("late")
        self.assertEqual(transport.value(), written)

    def test_twoClientsOneSlow(self):
        slow = self.request("COMMAND --slow:")
        fast = self.request("COMMAND --echo:quick")
        self.assertEqual(self.answer(fast)[-1], "OK")
        self.assertTrue(fast.disconnecting)
        self.assertFalse(slow.disconnecting)
        self.slow.pending[0].callback("at last")
        self.assertEqual(self.answer(slow)[-2:], ["OUTPUT at last", "OK"])


class ConnectionLimitTests(unittest.TestCase):
    """ControlMaxConnections in all and ControlMaxConnectionsPerPeer from one address."""

    def test_limits(self):
        factory = ControlFactory(object(), task.Clock(), commands=CommandRegistry([Echo()]),
                                 limits=AssociationLimits(2, 0, ("ControlMaxConnections",
                                                                 "ControlMaxConnectionsPerPeer")))

        def connect():
            address = IPv4Address("TCP", "10.1.2.3", 40000)
            protocol = factory.buildProtocol(address)
            transport = StringTransport(peerAddress=address)
            protocol.makeConnection(transport)
            return protocol, transport

        with capturedLogs() as events:
            held = [connect() for _ in range(2)]
            for _ in range(2):
                _, refused = connect()
                self.assertEqual(refused.value(), b"ERROR too many connections to the control port, "
                                                  b"try again later\r\n")
                self.assertTrue(refused.disconnecting)
        self.assertEqual([formatEvent(e) for e in events if "closed at once" in formatEvent(e)], [
            "10.1.2.3: connection closed at once: 2 connections are open (ControlMaxConnections 2); "
            "more are closed unlogged until one ends"])
        held[0][0].dataReceived(b"COMMAND --echo:x\r\n")
        held[0][0].connectionLost(None)
        protocol, transport = connect()
        protocol.dataReceived(b"COMMAND --echo:y\r\n")
        self.assertEqual(transport.value().split(b"\r\n")[0], b"OUTPUT y")


class SecretTests(ServerTests):
    """The same behaviour behind a secret, and the refusals."""

    preamble = ("AUTH s3cr3t",)

    def makeFactory(self, **kw):
        return super().makeFactory(secret="s3cr3t", requireSecret=True)

    def refused(self, *lines):
        with capturedLogs() as events:
            transport = self.request(*lines, preamble=())
        return self.answer(transport), "\n".join(formatEvent(e) for e in events)

    def test_missingSecret(self):
        answer, log = self.refused("COMMAND --echo:x")
        self.assertEqual(answer, ["ERROR refused: missing secret"])
        self.assertIn("refused --echo from 10.1.2.3:40000: missing ControlSecret", log)

    def test_wrongSecret(self):
        answer, log = self.refused("AUTH s3cr3", "COMMAND --echo:x")
        self.assertEqual(answer, ["ERROR refused: wrong secret"])
        self.assertIn("refused --echo from 10.1.2.3:40000: wrong ControlSecret", log)
        self.assertNotIn("s3cr3", log)

    def test_unknownCommandsHiddenWithoutSecret(self):
        answer, _ = self.refused("COMMAND --nosuch:")
        self.assertEqual(answer, ["ERROR refused: missing secret"])

    def test_secretThatIsNotUTF8(self):
        answer, _ = self.refused(os.fsdecode(b"AUTH s3cr3\xfc"), "COMMAND --echo:x")
        self.assertEqual(answer, ["ERROR refused: wrong secret"])

    def test_linesWithoutSecretRefusedAtTheFirst(self):
        """A LINE is refused as a COMMAND is, before any line is kept."""
        answer, log = self.refused("LINE --echo:x", "LINE y", "COMMAND z")
        self.assertEqual(answer, ["ERROR refused: missing secret"])
        self.assertIn("refused a request of several lines from 10.1.2.3:40000: missing ControlSecret", log)
        answer, log = self.refused("AUTH s3cr3", "LINE --echo:x", "COMMAND z")
        self.assertEqual(answer, ["ERROR refused: wrong secret"])
        self.assertIn("wrong ControlSecret", log)

    def test_requiredSecretMustBeConfigured(self):
        self.assertRaises(ValueError, ControlFactory, object(), self.clock, requireSecret=True)



class LoopbackSecretTests(SecretTests):
    """A control port on loopback with a ControlSecret requires it all the
    same: other users of the machine reach loopback too."""

    def makeFactory(self, **kw):
        return ServerTests.makeFactory(self, secret="s3cr3t")


class ClientTests(unittest.TestCase):
    """The client protocol against the server, over iosim."""

    def setUp(self):
        self.clock = task.Clock()
        self.slow = Slow()
        self.data = []
        self.factory = ControlFactory(object(), self.clock, secret="pw", requireSecret=True,
                                      commands=CommandRegistry([Echo(), self.slow, Broken(), Picture()]))

    def send(self, request, secret="pw"):
        output, progress = [], []
        client = ControlClientProtocol(request, secret, output.append, progress.append, self.data.append,
                                       self.clock)
        server = self.factory.buildProtocol(None)
        pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client))
        return client, pump, output, progress

    def test_replyAndOutput(self):
        client, pump, output, progress = self.send("--echo:one")
        self.assertEqual(self.successResultOf(client.finished), Reply(True, ""))
        self.assertEqual(output[0], "one")

    def test_aRequestOfSeveralLines(self):
        """A --dolua: chunk of several lines reaches the command whole (its
        first line was all that ran); CRLF line ends come as LF."""
        client, pump, output, progress = self.send("--echo:x = 1\r\nprint('two', x)\n\nend")
        self.assertEqual(self.successResultOf(client.finished), Reply(True, ""))
        self.assertEqual(output, ["x = 1", "print('two', x)", "", "end", "from ?:"])

    def test_progressBeforeTheEnd(self):
        client, pump, output, progress = self.send("--slow:")
        self.assertEqual(progress, ["started", "still going"])
        self.assertNoResult(client.finished)
        self.slow.pending[0].callback("two\nlines")
        pump.flush()
        self.assertEqual(output, ["two", "lines"])
        self.assertTrue(self.successResultOf(client.finished).ok)

    def test_longCommandKeptAlive(self):
        """A command that runs long and says nothing meanwhile is waited for."""
        client, pump, output, progress = self.send("--slow:")
        for _ in range(3 * ANSWER_TIMEOUT // KEEPALIVE_INTERVAL):
            self.clock.advance(KEEPALIVE_INTERVAL)
            pump.flush()
        self.assertNoResult(client.finished)
        self.assertEqual(progress, ["started", "still going"])
        self.slow.pending[0].callback("done")
        pump.flush()
        self.assertEqual((self.successResultOf(client.finished), output), (Reply(True, ""), ["done"]))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_silentServer(self):
        """A server that accepts and then says nothing for ANSWER_TIMEOUT
        seconds (the request sent): the client gives up and closes."""
        clock = task.Clock()
        client = ControlClientProtocol("--display_status:", clock=clock)
        transport = StringTransport()
        client.makeConnection(transport)
        clock.advance(ANSWER_TIMEOUT - 1)
        client.dataReceived(b"PROGRESS going\r\n")
        clock.advance(ANSWER_TIMEOUT - 1)
        self.assertNoResult(client.finished)
        clock.advance(1)
        failure = self.failureResultOf(client.finished, NoAnswer)
        self.assertEqual(str(failure.value), f"no answer from the server for {ANSWER_TIMEOUT} s")
        self.assertTrue(transport.disconnecting)
        client.connectionLost(None)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_fileNameThatIsNotUTF8(self):
        """A file name argument as the command line gives it (surrogate
        escapes) goes as its bytes."""
        client, pump, output, progress = self.send(os.fsdecode(b"--echo:/data/M\xfcller.dcm"))
        self.assertEqual(self.successResultOf(client.finished), Reply(True, ""))
        self.assertEqual(output[0], "/data/M\\udcfcller.dcm")

    def test_requestThatCannotBeSent(self):
        """The request fails at once, rather than never being answered."""
        client = ControlClientProtocol("--echo:\ud800", clock=self.clock)
        transport = StringTransport()
        client.makeConnection(transport)
        failure = self.failureResultOf(client.finished, ClientFailed)
        self.assertTrue(str(failure.value).startswith("sending the request failed: 'utf-8' codec can't encode"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_answerThatCannotBeWrittenOut(self):
        """An output callback that fails (standard output cannot write a
        line) fails the request with that cause; the rest is ignored."""
        output = []

        def write(line):
            output.append(line)
            line.encode("ascii")
        client = ControlClientProtocol("--echo:", output=write, clock=self.clock)
        transport = StringTransport()
        client.makeConnection(transport)
        client.dataReceived("OUTPUT M\u00fcller\r\nOUTPUT more\r\nOK\r\n".encode("utf-8"))
        failure = self.failureResultOf(client.finished, ClientFailed)
        self.assertTrue(str(failure.value).startswith("writing out the answer failed: 'ascii' codec can't encode"))
        self.assertEqual(output, ["M\u00fcller"])
        self.assertTrue(transport.disconnecting)
        client.connectionLost(Failure(error.ConnectionAborted()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_errors(self):
        client, *_ = self.send("--broken:refuse")
        reply = self.successResultOf(client.finished)
        self.assertEqual(reply, Reply(False, "no such patient"))
        self.assertFalse(reply.unknownCommand)
        client, *_ = self.send("--nosuch:")
        self.assertTrue(self.successResultOf(client.finished).unknownCommand)
        client, *_ = self.send("--echo:", secret="nope")
        self.assertEqual(self.successResultOf(client.finished), Reply(False, "refused: wrong secret"))

    def test_data(self):
        client, pump, output, progress = self.send("--picture:")
        self.assertEqual(self.successResultOf(client.finished), Reply(True, ""))
        self.assertEqual(self.data, [Picture.content])
        self.assertEqual(output, [])

    def test_dataInPieces(self):
        """The bytes arrive one by one, lines before and after them too."""
        content = Picture.content
        answer = b"PROGRESS going\r\n" + f"DATA {len(content)}\r\n".encode() + content + b"OUTPUT done\r\nOK\r\n"
        output, progress, data = [], [], []
        client = ControlClientProtocol("--picture:", None, output.append, progress.append, data.append)
        client.makeConnection(StringTransport())
        for i in range(len(answer)):
            client.dataReceived(answer[i:i + 1])
        self.assertEqual((progress, data, output), (["going"], [content], ["done"]))
        self.assertTrue(self.successResultOf(client.finished).ok)

    def test_emptyData(self):
        client, *_ = self.send("--picture:empty")
        self.assertTrue(self.successResultOf(client.finished).ok)
        self.assertEqual(self.data, [b""])

    def test_dicomPortAnswers(self):
        """A DICOM port answers the request with a PDU (an A-ABORT, an
        A-ASSOCIATE-RJ): the client fails at once, saying so (dgate adds
        where pacs takes commands, ``controlPortHint``), and closes the connection."""
        for answer, name in ((pdu.encodeAbort(pdu.SOURCE_SERVICE_PROVIDER, pdu.REASON_UNRECOGNIZED_PDU),
                              "A-ABORT"), (b"\x03", "A-ASSOCIATE-RJ")):
            client = ControlClientProtocol("--display_status:")
            transport = StringTransport()
            client.makeConnection(transport)
            client.dataReceived(answer)
            failure = self.failureResultOf(client.finished, DicomPortAnswered)
            self.assertEqual(str(failure.value), f"this is a DICOM port (it answered {name})")
            self.assertTrue(transport.disconnecting)

    def test_outputLineLongerThanTheClientTakes(self):
        """An output line the client could not read (longer than
        ``MAX_OUTPUT_LINE``) fails the command with a message saying so,
        after the lines before it; a line of that length goes through."""
        client, pump, output, progress = self.send("--slow:")
        self.slow.pending[0].callback("first\n" + "x" * MAX_OUTPUT_LINE)
        pump.flush()
        self.assertEqual(self.successResultOf(client.finished), Reply(True, ""))
        self.assertEqual([len(line) for line in output], [5, MAX_OUTPUT_LINE])
        client, pump, output, progress = self.send("--slow:")
        self.slow.pending[1].callback("first\n" + "\u00e9" * (MAX_OUTPUT_LINE // 2 + 1) + "\nlast")
        pump.flush()
        self.assertEqual(self.successResultOf(client.finished),
                         Reply(False, f"an output line of {MAX_OUTPUT_LINE + 2} bytes, "
                                      f"more than the {MAX_OUTPUT_LINE} a line of dgate's can hold"))
        self.assertEqual(output, ["first"])

    def test_answerLineTooLong(self):
        """A line past the client's limit (a server that does not check it)
        fails the request saying so."""
        client = ControlClientProtocol("--echo:")
        transport = StringTransport()
        client.makeConnection(transport)
        client.dataReceived(b"OUTPUT " + b"x" * ControlClientProtocol.MAX_LENGTH + b"\r\n")
        failure = self.failureResultOf(client.finished, ClientFailed)
        self.assertEqual(str(failure.value),
                         f"the server answered a line longer than {ControlClientProtocol.MAX_LENGTH} bytes")
        self.assertTrue(transport.disconnecting)

    def test_closedWithoutAnswer(self):
        client = ControlClientProtocol("--echo:")
        client.makeConnection(StringTransport())
        client.connectionLost(Failure(error.ConnectionDone()))
        self.failureResultOf(client.finished, NoAnswer)


class ControlPortHintTests(unittest.TestCase):

    def test_namesTheConfiguredEndpoint(self):
        self.assertEqual(controlPortHint(""), "pacs takes commands on its control endpoint (ControlEndpoint in "
                                              "dicom.ini, default tcp:5679:interface=127.0.0.1: dgate -p5679), not, "
                                              "as Conquest, on its DICOM port")
        self.assertIn("(ControlEndpoint = ssl:7001:privateKey=k.pem in the working folder's dicom.ini: dgate "
                      "-p7001)", controlPortHint("ssl:7001:privateKey=k.pem"))
        self.assertIn("(ControlEndpoint = unix:/run/pacs.sock in the working folder's dicom.ini)",
                      controlPortHint("unix:/run/pacs.sock"))
