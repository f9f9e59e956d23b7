"""The C-FIND SCP when the index database fails, or when an identifier
nests sequences too deep: a failure status and one log line, no
traceback; a C-CANCEL during the query."""

import threading
import time

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from twisted.internet import defer, reactor, task
from twisted.logger import Logger, capturedLogs, formatEvent, globalLogPublisher
from twisted.trial import unittest

from pacscore.dicom.client import associate
from pacscore.dicom.commands import MESSAGE_ID, STATUS
from pacscore.dicom.find import CANCELLED, ENCODED, answerFind
from pacscore.dicom.identifiers import UNABLE_TO_PROCESS, MatchEncoder
from pacscore.dicom.models import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.dicom.requests import IMPLICIT, recordDecodes
from tests.pacscore.dicom.test_datasets import nestedSequences
from tests.pacscore.export.fixtures import CT_STORAGE, Acceptor, settle


class IndexOutage:
    """A listening archive whose index tables are gone (dropped: any query
    raises SQLAlchemy's OperationalError), or with ``hung`` whose index
    database does not answer reads (SQLTimeOut 0.2 s), a client associated
    with it for Study Root C-FIND/C-MOVE/C-GET, and the events logged."""

    @classmethod
    @defer.inlineCallbacks
    def start(cls, testCase, hung=False):
        self = cls()
        self.running = RunningArchive(testCase, listen=True)
        self.running.know(self.running)  # a known C-MOVE destination: itself
        index = self.running.archive.index
        if hung:
            answer = threading.Event()
            testCase.addCleanup(answer.set)
            index.readTimeout = 0.2  # as on a database server (SQLite waits for no deadline)
            index._withConnection = lambda fn, args, kw: answer.wait(10)
        else:
            with index.engine.begin() as connection:
                for table in ("DICOMImages", "DICOMSeries", "DICOMStudies", "DICOMPatients"):
                    connection.exec_driver_sql(f"DROP TABLE {table}")
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testCase.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.client = yield associate(reactor, "127.0.0.1", self.running.port, "SCU", self.running.ae,
                                      [(uid, [IMPLICIT]) for uid in (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET)])
        testCase.addCleanup(self.client.release)
        return self

    def identifier(self):
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = "1.2.3"
        return identifier

    def logged(self):
        """The lines logged at error level or above, and the tracebacks."""
        return ([formatEvent(e) for e in self.events if e["log_level"].name in ("error", "critical")],
                [e for e in self.events if "log_failure" in e])


def maskedIdentifier():
    """A Study Root identifier holding a virtual server mask (9999,0802),
    its Study Instance UID ``9.9.424242``."""
    identifier = IndexOutage().identifier()
    identifier.StudyInstanceUID = "9.9.424242"
    identifier.add_new(0x99990802, "IS", "0")
    return identifier


class IdentifierDecodeTests(unittest.TestCase):
    """A peer's identifier is decoded once, in a worker thread: a big one
    decodes for seconds, which would hold every association."""

    @defer.inlineCallbacks
    def test_decodedOnceOffTheReactor(self):
        running = RunningArchive(self, listen=True)
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                 [(STUDY_ROOT_FIND, [IMPLICIT])])
        self.addCleanup(client.release)
        decodes = recordDecodes(self, b"9.9.424242")
        status = yield client.find(STUDY_ROOT_FIND, maskedIdentifier())
        self.assertEqual(status, 0)
        self.assertEqual(decodes, [False])


class MalformedValueTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_namedWithThePeerNotByPydicom(self):
        """C-FIND key values not valid in their VR (IS '1-3', CS 'ct'),
        which are matched as they are, are named in one line with the peer,
        where pydicom wrote an anonymous warning for each distinct value (a
        ``twisted.logger._global`` line naming a file of its own); a C-MOVE
        UID key with a wildcard, which pacs refuses saying so, gets no
        warning of pydicom's either, nor a line of its own."""
        running = RunningArchive(self, listen=True)
        running.know(running)
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                 [(uid, [IMPLICIT]) for uid in (STUDY_ROOT_FIND, STUDY_ROOT_MOVE)])
        self.addCleanup(client.release)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        identifier = Dataset()
        for tag, vr, value in ((0x00080052, "CS", "IMAGE"), (0x00080060, "CS", "ct"), (0x00080018, "UI", ""),
                               (0x0020000D, "UI", "1.2.3"), (0x00200013, "LO", "1-3")):  # IS, in implicit VR
            identifier.add(DataElement(tag, vr, value, validation_mode=config.IGNORE))
        self.assertEqual((yield client.find(STUDY_ROOT_FIND, identifier)), 0)
        move = Dataset()
        for tag, vr, value in ((0x00080052, "CS", "STUDY"), (0x0020000D, "UI", "1.2.*")):
            move.add(DataElement(tag, vr, value, validation_mode=config.IGNORE))
        self.assertEqual((yield client.move(STUDY_ROOT_MOVE, move, running.ae))[0][STATUS] & 0xF000, 0xA000)
        lines = [formatEvent(e) for e in events]
        self.assertEqual([line for e, line in zip(events, lines) if e.get("log_namespace") == "twisted.logger._global"
                          or "pydicom" in line], [])
        self.assertEqual([w["message"] for w in self.flushWarnings() if "pydicom" in w["filename"]], [])
        [named] = [line for line in lines if "identifier values" in line]
        self.assertRegex(named, r"^SCU@127\.0\.0\.1:\d+: identifier values taken as they are: \(0008,0060\) 'ct' is "
                                r"not a valid CS value; \(0020,0013\) '1-3' is not a valid IS value$")
        self.assertEqual(len([line for line in lines if "refused" in line and "1.2.*" in line]), 1, lines)


    @defer.inlineCallbacks
    def test_notNamedForARefusedRequest(self):
        """A request refused gets its refusal's line alone, whether its key
        check refuses it (Patient's Birth Date '1970', no date) or a check
        after its identifier is read (a C-FIND's unknown paging sort
        column, a C-MOVE to a destination not in acrnema.map): its values
        that would be taken as they are (Modality 'ct') are not named, which
        said the request was answered; the same request accepted names them
        once."""
        running = RunningArchive(self, listen=True)
        running.know(running)
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                 [(uid, [IMPLICIT]) for uid in (STUDY_ROOT_FIND, STUDY_ROOT_MOVE)])
        self.addCleanup(client.release)

        def identifier(*extra):
            identifier = Dataset()
            for tag, vr, value in ((0x00080052, "CS", "STUDY"), (0x0020000D, "UI", "1.2.3"),
                                   (0x00080061, "CS", "ct"), *extra):
                identifier.add(DataElement(tag, vr, value, validation_mode=config.IGNORE))
            return identifier

        def named(events):
            return [line for line in map(formatEvent, events) if "identifier values taken as they are" in line]

        for request in (lambda: client.find(STUDY_ROOT_FIND, identifier((0x00100030, "DA", "1970"))),
                        lambda: client.find(STUDY_ROOT_FIND, identifier((0x99990C00, "LO", "NoSuchColumn"),
                                                                        (0x99990C01, "LO", "10"))),
                        lambda: client.move(STUDY_ROOT_MOVE, identifier(), "NOSUCHAE")):
            with capturedLogs() as events:
                answer = yield request()
            status = answer if isinstance(answer, int) else answer[0][STATUS]
            self.assertNotEqual(status, 0)
            self.assertEqual(named(events), [])
        for request in (lambda: client.find(STUDY_ROOT_FIND, identifier((0x00100030, "DA", "19700101"))),
                        lambda: client.move(STUDY_ROOT_MOVE, identifier(), running.ae)):
            with capturedLogs() as events:
                yield request()
            self.assertEqual(len(named(events)), 1, named(events))
            self.assertRegex(named(events)[0], r"^SCU@127\.0\.0\.1:\d+: identifier values taken as they are: "
                                               r"\(0008,0061\) 'ct' is not a valid CS value$")


class IndexOutageTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_failedQueryIsOneLogLine(self):
        """0xC000 with the database's message, logged in one error line."""
        outage = yield IndexOutage.start(self)
        status = yield outage.client.find(STUDY_ROOT_FIND, outage.identifier())
        self.assertEqual(status, UNABLE_TO_PROCESS)
        [line], tracebacks = outage.logged()
        self.assertIn("the index database: no such table", line)
        self.assertNotIn("\n", line)
        self.assertEqual(tracebacks, [])

    @defer.inlineCallbacks
    def test_hungDatabaseIsOneLogLine(self):
        outage = yield IndexOutage.start(self, hung=True)
        status = yield outage.client.find(STUDY_ROOT_FIND, outage.identifier())
        self.assertEqual(status, UNABLE_TO_PROCESS)
        [line], tracebacks = outage.logged()
        self.assertIn("the index database: the index database did not answer within 0.2 s (SQLTimeOut)", line)
        self.assertEqual(tracebacks, [])


class NestedIdentifierTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_tooDeepIsRefusedInOneLine(self):
        """Sequences nested 1000 deep in a C-FIND, C-MOVE or C-GET identifier:
        a failure status and one short warning line each, as a stored object
        nested so is refused, not a RecursionError's traceback nor a line of
        1000 element paths."""
        running = RunningArchive(self, listen=True)
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                 [(uid, [IMPLICIT]) for uid in (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET)])
        self.addCleanup(client.release)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        identifier = nestedSequences(1000, implicit=True)
        statuses = [(yield client.find(STUDY_ROOT_FIND, identifier)),
                    (yield client.move(STUDY_ROOT_MOVE, identifier, running.ae))[0][STATUS],
                    (yield client.get(STUDY_ROOT_GET, identifier))[0][STATUS]]
        self.assertEqual([status & 0xF000 in (0xA000, 0xC000) for status in statuses], [True] * 3, statuses)
        refusals = [formatEvent(e) for e in events if "sequences nested more than 64 deep" in formatEvent(e)]
        self.assertEqual(len(refusals), 3, [formatEvent(e)[:300] for e in events])
        self.assertEqual([len(refusal) < 200 for refusal in refusals], [True] * 3, refusals)
        self.assertEqual([e for e in events if e["log_level"].name in ("error", "critical") or "log_failure" in e],
                         [])


class CancelDuringQueryTests(unittest.TestCase):
    """A C-CANCEL, or the end of the association, while the index query
    runs (here 6 s of SQLite) stops the query."""

    @defer.inlineCallbacks
    def setUp(self):
        running = RunningArchive(self, listen=True)
        running.archive.query.find = lambda connection, *args, **kw: connection.exec_driver_sql(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) "
            "SELECT count(*) FROM c").all() and []
        self.client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                      [(STUDY_ROOT_FIND, [IMPLICIT])])
        self.addCleanup(self.client.release)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def logged(self):
        return "\n".join(formatEvent(e) for e in self.events)

    @defer.inlineCallbacks
    def test_cancelStopsTheQuery(self):
        """Cancel at once."""
        found = self.client.find(STUDY_ROOT_FIND, IndexOutage().identifier())
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.client.cancelLast(STUDY_ROOT_FIND)
        started = time.monotonic()
        self.assertEqual((yield found), CANCELLED)
        self.assertLess(time.monotonic() - started, 1)
        self.assertIn("C-FIND Study Root at STUDY level cancelled before its matches", self.logged())

    @defer.inlineCallbacks
    def test_abortStopsTheQuery(self):
        """Stopped when the A-ABORT arrives (the association's end,
        ``whenEnded``); the bound is generous for loaded machines, the
        clock-driven test below shows it is at once."""
        found = self.client.find(STUDY_ROOT_FIND, IndexOutage().identifier())
        found.addErrback(lambda failure: None)
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.client.abort()
        started = time.monotonic()
        while "stopped: the association ended" not in self.logged() and time.monotonic() - started < 4:
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.assertLess(time.monotonic() - started, 2)
        self.assertIn("C-FIND Study Root at STUDY level stopped: the association ended", self.logged())

    def test_theEndOfTheAssociationCancelsTheQueryAtOnce(self):
        """Without the clock moving: the association's end is an event, not
        looked for once a second (the query was cancelled only then)."""
        clock = task.Clock()
        acceptor = Acceptor(clock)
        client = settle(self, defer.ensureDeferred(associate(clock, "127.0.0.1", 104, "SCU", "DEST",
                                                             [(CT_STORAGE, [IMPLICIT])], endpoint=acceptor)),
                        acceptor, clock)
        server = acceptor.pumps[0].server
        cancelled = []
        query = defer.Deferred(cancelled.append)
        with capturedLogs() as events:
            answering = defer.ensureDeferred(answerFind(server, 1, {MESSAGE_ID: 1}, query, clock, Logger(),
                                                        "C-FIND of the test"))
            client.abortAssociation()
            acceptor.flush()
            self.assertEqual(cancelled, [query])
            self.successResultOf(answering)
        self.assertIn(f"{server.peerName()}: C-FIND of the test stopped: the association ended",
                      [formatEvent(e) for e in events])


class StreamingTests(unittest.TestCase):
    """The matches go out while the later ones are still being encoded."""

    @defer.inlineCallbacks
    def test_firstAnswerBeforeTheLastIsEncoded(self):
        rows = [{0x0020000D: f"1.2.3.{n}"} for n in range(1000)]
        running = RunningArchive(self, listen=True)
        running.archive.query.find = lambda connection, *args, **kw: rows
        encoded = []
        encode = MatchEncoder.encode
        self.patch(MatchEncoder, "encode", lambda encoder, row: encoded.append(row) or encode(encoder, row))
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                 [(STUDY_ROOT_FIND, [IMPLICIT])])
        self.addCleanup(client.release)
        answers = []
        status = yield client.find(STUDY_ROOT_FIND, IndexOutage().identifier(),
                                   lambda data, syntax: answers.append(len(encoded)))
        self.assertEqual((status, len(answers)), (0, len(rows)))
        self.assertLessEqual(answers[0], 2 * ENCODED)

    @defer.inlineCallbacks
    def test_cancelWhileStreaming(self):
        """A C-CANCEL after the first answer: Cancel, nothing after it, the
        rest of the rows never encoded."""
        rows = [{0x0020000D: f"1.2.3.{n}"} for n in range(3000)]
        running = RunningArchive(self, listen=True)
        running.archive.query.find = lambda connection, *args, **kw: rows
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                 [(STUDY_ROOT_FIND, [IMPLICIT])])
        self.addCleanup(client.release)
        answers = []

        def answered(data, syntax):
            if not answers:
                client.cancelLast(STUDY_ROOT_FIND)
            answers.append(data)
        status = yield client.find(STUDY_ROOT_FIND, IndexOutage().identifier(), answered)
        self.assertEqual(status, CANCELLED)
        self.assertLess(len(answers), len(rows) - 2 * ENCODED)

    @defer.inlineCallbacks
    def test_batchFailingAfterAbort(self):
        """A batch that fails once the association has ended is no failure:
        one info line, no error, no traceback."""
        rows = [{0x0020000D: f"1.2.3.{n}"} for n in range(3 * ENCODED)]
        running = RunningArchive(self, listen=True)
        running.archive.query.find = lambda connection, *args, **kw: rows
        aborted = threading.Event()
        self.addCleanup(aborted.set)
        encode = MatchEncoder.encode

        def failingLater(encoder, row):
            if row is rows[ENCODED]:
                aborted.wait(5)
                raise RuntimeError("encoding failed")
            return encode(encoder, row)
        self.patch(MatchEncoder, "encode", failingLater)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                 [(STUDY_ROOT_FIND, [IMPLICIT])])
        found = client.find(STUDY_ROOT_FIND, IndexOutage().identifier(),
                            lambda data, syntax: client.abort())
        found.addErrback(lambda failure: None)
        yield found
        yield task.deferLater(reactor, 0.3, aborted.set)
        started = time.monotonic()
        logged = lambda: "\n".join(formatEvent(e) for e in events)
        while "stopped: the association ended" not in logged() and time.monotonic() - started < 4:
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertIn("C-FIND Study Root at STUDY level stopped: the association ended", logged())
        self.assertEqual([e for e in events if "log_failure" in e or e["log_level"].name == "error"], [])
