"""Tests for pacscore.hl7.intake and pacscore.hl7.dropfolder: orders to
the worklist with their ACK codes, and the drop folder's file handling."""

import os
import random
import shutil
import sqlite3
import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from twisted.internet import defer
from twisted.logger import LogLevel, Logger, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.dicomsql import DatabaseLayout
from pacscore.db.index import Index
from pacscore.db.worklistitems import WorklistItems
from pacscore.hl7 import dropfolder
from pacscore.hl7.dropfolder import FAILED, PROCESSED, DropFolder
from pacscore.hl7.intake import WorklistIntake
from pacscore.hl7.mapping import WorklistMapping
from pacscore.hl7.message import parseMessage, splitMessages
from pacscore.testing.mutations import mutated
from pacscore.testing.orders import orderMessage, writeMessages
from tests.pacscore.db.test_errors import sqliteError
from tests.pacscore.db.test_schema import TABLE_NAMES, sqliteEngine
from tests.pacscore.db.test_worklistitems import runNow


class SynchronousWorkers:
    """The I/O pool's ``deferToWorker``, run at once."""

    def deferToWorker(self, f, *args):
        return defer.maybeDeferred(f, *args)


class WorkersChangingAFile(SynchronousWorkers):
    """The I/O pool, run at once, that calls ``change`` once the first
    file was read (a RIS writing a file while pacs applies it)."""

    def __init__(self, change):
        self.change = change

    def deferToWorker(self, f, *args):
        result = defer.maybeDeferred(f, *args)
        if f is dropfolder._readFile and self.change is not None:
            self.change, change = None, self.change
            change()
        return result


class IntakeTestCase(unittest.TestCase):

    def setUp(self):
        self.engine = sqliteEngine(self)
        layout = DatabaseLayout.fromFile("etc/dicom.sql")
        self.index = Index(self.engine, layout, TABLE_NAMES)
        self.index.createTables()
        mapping = WorklistMapping(layout.worklist)
        self.counters = {}
        self.intake = WorklistIntake(mapping, WorklistItems(self.index, runWrite=runNow(self.index)),
                                     application="PACSAE", counters=self.counters)

    def rows(self):
        table = self.index.tables.worklist
        with self.engine.connect() as connection:
            return {r.AccessionNumber: r for r in connection.execute(select(table))}

    def process(self, raw):
        return self.successResultOf(self.intake.process(raw))

    def failFor(self, accession):
        """Make the database fail (locked) for the orders of ``accession``;
        a function ending that."""
        apply = self.intake.items.apply

        def applyUnlessLocked(orders, forPeer):
            if orders[0].values.get("AccessionNumber") == accession:
                return defer.fail(sqliteError("database is locked", sqlite3.SQLITE_BUSY))
            return apply(orders, forPeer)

        self.intake.items.apply = applyUnlessLocked
        return lambda: setattr(self.intake.items, "apply", apply)


class WorklistIntakeTests(IntakeTestCase):

    def test_parsedInTheRunnerGiven(self):
        """Parsing and mapping go to ``inThread``; applying waits for it."""
        calls = []

        def inThread(f, *args):
            calls.append((f, args, defer.Deferred()))
            return calls[-1][2]
        self.intake.inThread = inThread
        outcome = self.intake.process(orderMessage("M1", "ACC1", "PAT1", "A^B"))
        self.assertNoResult(outcome)
        self.assertEqual(self.rows(), {})
        [(f, args, running)] = calls
        running.callback(f(*args))
        self.assertEqual(self.successResultOf(outcome).code, "AA")
        self.assertEqual(sorted(self.rows()), ["ACC1"])

    def test_accessionNumberWithSpaces(self):
        """An order sent with OBR-3 ``SPC1 `` is the order SPC1: found by a
        change or cancel sent without the space."""
        self.assertEqual(self.process(orderMessage("M1", "SPC1 ", "PAT1", "A^B")).code, "AA")
        self.assertEqual(sorted(self.rows()), ["SPC1"])
        self.assertEqual(self.process(orderMessage("M2", "SPC1", "PAT1", "C^D", control="XO")).code, "AA")
        self.assertEqual(self.rows()["SPC1"].PatientName, "C^D")
        self.assertEqual(self.process(orderMessage("M3", " SPC1", "PAT1", "C^D", control="CA")).code, "AA")
        self.assertEqual(self.rows(), {})

    def test_unknownBirthDateAccepted(self):
        """A RIS sending 00000000 for an unknown birth date gets its order
        in, the birth date left empty."""
        outcome = self.process(orderMessage("M1", "ACC1", "PAT1", "A^B", birthDate="00000000"))
        self.assertEqual(outcome.code, "AA")
        self.assertEqual(self.rows()["ACC1"].PatientBirthDate, "")

    def test_newOrderAccepted(self):
        outcome = self.process(orderMessage("M1", "ACC1", "PAT1", "Müller^Hans", charset="8859/1"))
        self.assertEqual(outcome.code, "AA")
        ack = parseMessage(outcome.ack)
        self.assertEqual(ack.segment("MSA").value(1), "AA")
        self.assertEqual(ack.segment("MSA").value(2), "M1")
        self.assertEqual(ack.segment("MSH").value(3), "PACSAE")
        self.assertEqual(ack.charset, "8859/1")
        row = self.rows()["ACC1"]
        self.assertEqual((row.PatientName, row.PatientID, row.Modality, row.StartDate, row.StartTime),
                         ("Müller^Hans", "PAT1", "CT", "20261202", "0930"))
        self.assertTrue(row.StudyInstanceUID)
        self.assertEqual(self.counters["hl7Applied"], 1)

    def test_ordersSharingAnAccessionNumberWarned(self):
        """Two ORC/OBR groups of one message under one accession number: the
        worklist keeps one item an accession number (the last order's), and
        a warning says so, naming the accession number."""
        first = orderMessage("M2", "ACC2", "PAT2", "Two^Steps", procedure=("CT1", "CT HEAD"))
        second = orderMessage("M2", "ACC2", "PAT2", "Two^Steps", procedure=("CT2", "CT NECK"))
        message = first + b"\r" + b"\r".join(second.split(b"\r")[3:])
        with capturedLogs() as events:
            outcome = self.process(message)
        self.assertEqual(outcome.code, "AA")
        self.assertEqual(self.rows()["ACC2"].ReqProcDescription, "CT NECK")
        [warning] = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertIn("2 orders share accession number ACC2", warning)
        with capturedLogs() as events:
            self.process(orderMessage("M3", "ACC3", "PAT3", "One^Step"))
        self.assertEqual([e for e in events if e["log_level"] == LogLevel.warn], [])

    def test_aMessageOfThousandsOfOrdersIsLoggedInABoundedLine(self):
        """One log line named every order of a message: 14,000 ORC/OBR pairs
        made a line of 282,975 bytes.  It names the first ten and counts the
        others by what became of them."""
        orders = [orderMessage("M1", f"ACC{n}", "PAT1", "Many^Orders", control="CA" if n == 12 else "NW")
                  for n in range(14)]
        message = orders[0] + b"\r" + b"\r".join(b"\r".join(o.split(b"\r")[3:]) for o in orders[1:])
        with capturedLogs() as events:
            outcome = self.process(message)
        self.assertEqual(outcome.code, "AA")
        self.assertEqual(len(self.rows()), 13)
        [line] = [formatEvent(e) for e in events if "HL7 ORM^O01 M1" in formatEvent(e)]
        self.assertEqual(line, "HL7 ORM^O01 M1: " + ", ".join(f"NW ACC{n}: inserted" for n in range(10))
                         + " and 4 more orders (1 absent, 3 inserted)")
        self.assertEqual(outcome.text, line.split(": ", 1)[1])

    def test_unknownCharsetWarned(self):
        """An order whose MSH-18 names no character set pacs knows is
        applied, its text read as without MSH-18, with a warning, where it
        is ASCII or UTF-8; its Latin-1 bytes (a guess) are refused (AR)."""
        message = orderMessage("M1", "ACC1", "PAT1", "Müller^Hans", charset="UNICODE UTF-8")
        with capturedLogs() as events:
            outcome = self.process(message.replace(b"|UNICODE UTF-8\r", b"|LATIN ONE\r"))
        self.assertEqual(outcome.code, "AA")
        self.assertEqual(self.rows()["ACC1"].PatientName, "Müller^Hans")
        [warning] = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(warning, "HL7 M1: character set 'LATIN ONE' (MSH-18) is not one pacs knows: its text is "
                                  "read as without MSH-18, as utf-8")
        message = orderMessage("M2", "ACC2", "PAT2", "Müller^Hans", charset="8859/1")
        outcome = self.process(message.replace(b"|8859/1\r", b"|LATIN ONE\r"))
        self.assertEqual(outcome.code, "AR")
        self.assertIn(b"unsupported character set 'LATIN ONE' in MSH-18", outcome.ack)
        self.assertNotIn("ACC2", self.rows())

    def test_windows1252DeclaredAsLatin1Warned(self):
        """An order declared 8859/1 whose text is Windows-1252 (a Windows
        RIS's usual setting) is applied with its ’, not the C1 control
        U+0092 it is in Latin-1, with a warning."""
        message = orderMessage("M1", "ACC1", "PAT1", "O'Brien^Zoë", charset="8859/1").replace(b"'", b"\x92")
        with capturedLogs() as events:
            outcome = self.process(message)
        self.assertEqual(outcome.code, "AA")
        self.assertEqual(self.rows()["ACC1"].PatientName, "O’Brien^Zoë")
        [warning] = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(warning, "HL7 M1: its text, in character set '8859/1' (MSH-18), holds bytes 0x80 to 0x9F, "
                                  "control characters in Latin-1: read as Windows-1252 ones (’ – €)")

    def test_handleGivesTheAckBytes(self):
        ack = self.successResultOf(self.intake.handle(orderMessage("M1", "ACC1", "PAT1", "A^B")))
        self.assertIn(b"MSA|AA|M1", ack)

    def test_unknownChangeIsAnApplicationError(self):
        outcome = self.process(orderMessage("M2", "ACC9", "PAT1", "A^B", control="XO"))
        self.assertEqual(outcome.code, "AE")
        ack = parseMessage(outcome.ack)
        self.assertEqual(ack.segment("MSA").value(1), "AE")
        self.assertIn("ACC9", ack.segment("MSA").value(3))
        self.assertEqual(ack.segment("ERR").value(3, 0), "204", "unknown key identifier")
        self.assertEqual(self.rows(), {})

    def test_aChangeWithoutPIDKeepsThePatient(self):
        """An XO of only ORC and OBR (PID is optional in ORM^O01) changes the
        order's columns and leaves those that come from PID as they were."""
        self.process(orderMessage("M1", "ACC1", "PAT1", "Müller^Hans"))
        change = b"\r".join(segment for segment in orderMessage("M2", "ACC1", "", "", control="XO",
                                                                 modality="MR").split(b"\r")
                             if not segment.startswith(b"PID"))
        self.assertEqual(self.process(change).code, "AA")
        row = self.rows()["ACC1"]
        self.assertEqual((row.PatientName, row.PatientID, row.Modality), ("Müller^Hans", "PAT1", "MR"))

    def test_tooLongAccessionNumberIsAnApplicationError(self):
        """Cut to its 16 characters, it could name another order."""
        self.assertEqual(self.process(orderMessage("M1", "ACC-2024-0000001A", "PAT1", "A^B")).code, "AE")
        outcome = self.process(orderMessage("M2", "ACC-2024-0000001B", "PAT2", "C^D"))
        self.assertEqual(outcome.code, "AE")
        self.assertIn("longer than the 16 characters of AccessionNumber",
                      parseMessage(outcome.ack).segment("MSA").value(3))
        self.assertEqual(self.rows(), {})
        self.assertEqual(self.process(orderMessage("M3", "ACC-2024-000001", "PAT1", "A^B")).code, "AA")

    def test_unhandledMessagesRejected(self):
        """Messages we do not take (MSH-9) get AR; orders whose content we
        cannot apply get AE, with the code of HL7 table 0357 in ERR-3."""
        for raw, why, code, error in [
                (orderMessage("M3", "ACC1", "P", "A^B", messageType="ADT^A01"), "ADT^A01", "AR", "200"),
                (orderMessage("M4", "ACC1", "P", "A^B", messageType="ORM^O02"), "O02", "AR", "201"),
                (b"this is not HL7", "", "AR", "100"),
                (orderMessage("M5", "ACC1", "P", "A^B", control="ZZ"), "ZZ", "AE", "103"),
                (b"MSH|^~\\&|RIS|H|PACS|H|2026||ORM^O01|M6|P|2.3.1\rPID|1||P", "without ORC or OBR", "AE", "100"),
                (orderMessage("M7", "", "P", "A^B"), "no accession number", "AE", "101")]:
            outcome = self.process(raw)
            self.assertEqual(outcome.code, code, raw)
            self.assertIn(why, outcome.text)
            self.assertIn(b"MSA|" + code.encode(), outcome.ack)
            self.assertEqual(parseMessage(outcome.ack).segment("ERR").value(3, 0), error, raw)
        self.assertEqual(self.rows(), {})
        self.assertEqual(self.counters["hl7Errors"], 6)

    def test_versionAndProcessingIdChecked(self):
        """HL7 v2.5 2.9.2: MSH-12 must be a version 2 (AR 203 otherwise,
        the ACK in 2.5), MSH-11 one of table 0103 (AR 202 otherwise); either
        empty is taken, as Conquest reads neither; the log line names
        MSH-10."""
        events = []
        self.intake.log = Logger(observer=events.append)
        order = orderMessage("M1", "ACC1", "P", "A^B")
        for fields in (b"|P|2.3", b"|P|2.5.1", b"|P|2.8", b"|P|", b"|P^T|2.3.1", b"|T|2.5", b"|D|2.5", b"||2.5"):
            self.assertEqual(self.process(order.replace(b"|P|2.3.1", fields)).code, "AA", fields)
        for fields, error in ((b"|P|9.9", "203"), (b"|P|3.0", "203"), (b"|P|2.x", "203"), (b"|P|2.0", "203"), (b"|P|2.10", "203"), (b"|X|2.5", "202"),
                              (b"|PROD|2.5", "202")):
            outcome = self.process(orderMessage("M2", "ACC2", "P", "A^B").replace(b"|P|2.3.1", fields))
            reply = parseMessage(outcome.ack)
            self.assertEqual((outcome.code, reply.segment("ERR").value(3, 0), reply.value("MSA", 2)),
                             ("AR", error, "M2"), fields)
            self.assertIn(reply.version, ("2.5", fields.rsplit(b"|", 1)[1].decode()), fields)
            self.assertEqual(formatEvent(events[-1])[:18], "HL7 M2 rejected (A", fields)
        self.assertEqual(parseMessage(self.process(order.replace(b"|P|2.3.1", b"|P|9.9")).ack).version, "2.5")
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.process(b"MSH|^~\\&|RIS|H|PACS|H|2026|||M17|P|2.5\rPID|1||P")
        self.assertEqual(formatEvent(events[-1]), "HL7 M17 rejected (AR): MSH-9 (message type) is missing")

    def test_trailingBlanksInMessageHeaderIgnored(self):
        """Trailing blanks are optional in MSH-9's components, MSH-11 and
        MSH-12 (v2.5 2.A, ST): ``2.3.1 ``, ``P `` and ``ORM ^O01 `` are
        taken, and the ACK repeats the version and processing ID without them."""
        order = orderMessage("M1", "ACC1", "P", "A^B")
        for fields, answered in ((b"|P|2.3.1 ", ["P", "2.3.1"]), (b"|P |2.4", ["P", "2.4"]),
                                 (b"|T  |2.5  ", ["T", "2.5"])):
            outcome = self.process(order.replace(b"|P|2.3.1", fields))
            self.assertEqual(outcome.code, "AA", (fields, outcome.text))
            self.assertEqual(parseMessage(outcome.ack).segments[0].fields[11:13], answered, fields)
        outcome = self.process(order.replace(b"|ORM^O01|", b"|ORM ^O01 |"))
        self.assertEqual(outcome.code, "AA", outcome.text)

    def test_orderControlWithTrailingBlanksOrInLowerCase(self):
        """ORC-1 is an ID: ``NW `` (padded) and ``nw`` are NW."""
        for number, control in enumerate(("NW ", "nw", "Xo  "), 1):
            outcome = self.process(orderMessage(f"M{number}", "ACC1", "P", "A^B", control=control))
            self.assertEqual(outcome.code, "AA", (control, outcome.text))
        self.assertEqual(sorted(self.rows()), ["ACC1"])

    def test_theStudyInstanceUIDTheRISSendsReplacesTheGeneratedOne(self):
        """An IPC-3 a change (XO) or a repeated new order (NW) sends was
        ignored once the item existed: the modality was given the UID pacs
        generated for the first order, not the RIS's.  It now replaces it;
        an order that sends none keeps the item's."""
        def sent(uid):
            return f"\rIPC|ACC1|RP1|{uid}^RIS|SPS1|CT".encode()
        self.assertEqual(self.process(orderMessage("M1", "ACC1", "P1", "A^B")).code, "AA")
        generated = self.rows()["ACC1"].StudyInstanceUID
        self.assertEqual(self.process(orderMessage("M2", "ACC1", "P1", "A^B", control="XO")).code, "AA")
        self.assertEqual(self.rows()["ACC1"].StudyInstanceUID, generated)
        self.assertEqual(self.process(orderMessage("M3", "ACC1", "P1", "A^B", control="XO")
                                      + sent("1.2.840.99999.1.2.3")).code, "AA")
        self.assertEqual(self.rows()["ACC1"].StudyInstanceUID, "1.2.840.99999.1.2.3")
        self.assertEqual(self.process(orderMessage("M4", "ACC1", "P1", "A^B") + sent("1.2.840.99999.1.2.4")).code,
                         "AA")
        self.assertEqual(self.rows()["ACC1"].StudyInstanceUID, "1.2.840.99999.1.2.4")
        self.assertEqual(self.process(orderMessage("M5", "ACC1", "P1", "A^B")).code, "AA")
        self.assertEqual(self.rows()["ACC1"].StudyInstanceUID, "1.2.840.99999.1.2.4")

    def test_anIPC3NullNeverLeavesAnItemWithoutAStudyInstanceUID(self):
        """An IPC-3 of HL7's null (``""``) in a change (XO) or a repeated new
        order (NW) cleared the item's Study Instance UID, and a new order
        with it made an item without one: a worklist answer then had no
        Study Instance UID, a Type 1 key.  The existing item now keeps its
        UID, and a new item gets a generated one."""
        null = b'\rIPC|ACC1|RP1|""|SPS1|CT'
        self.assertEqual(self.process(orderMessage("M1", "ACC1", "P1", "A^B")).code, "AA")
        generated = self.rows()["ACC1"].StudyInstanceUID
        self.assertTrue(generated)
        self.assertEqual(self.process(orderMessage("M2", "ACC1", "P1", "A^B", control="XO") + null).code, "AA")
        self.assertEqual(self.rows()["ACC1"].StudyInstanceUID, generated)
        self.assertEqual(self.process(orderMessage("M3", "ACC1", "P1", "A^B") + null).code, "AA")
        self.assertEqual(self.rows()["ACC1"].StudyInstanceUID, generated)
        self.assertEqual(self.process(orderMessage("M4", "ACC2", "P2", "C^D") + null.replace(b"ACC1", b"ACC2")).code,
                         "AA")
        self.assertTrue(self.rows()["ACC2"].StudyInstanceUID.startswith("1."))

    def test_statusChangedOrders(self):
        """ORC-1 SC (status changed): ORC-5 CA or DC removes the item; any
        other status is accepted, with a log line that nothing changed."""
        events = []
        self.intake.log = Logger(observer=events.append)
        self.process(orderMessage("M1", "ACC1", "P", "A^B"))
        self.process(orderMessage("M2", "ACC2", "P", "A^B"))
        cancel = orderMessage("M3", "ACC1", "P", "A^B", control="SC").replace(b"|PACC1|ACC1||SC", b"|PACC1|ACC1||CA")
        self.assertEqual(self.process(cancel).code, "AA")
        self.assertEqual(sorted(self.rows()), ["ACC2"])
        outcome = self.process(orderMessage("M4", "ACC2", "P", "A^B", control="SC "))
        self.assertEqual(outcome.code, "AA", outcome.text)
        self.assertEqual(formatEvent(events[-1]), "HL7 ORM^O01 M4: SC ACC2: unchanged (ORC-5 'SC')")
        self.assertEqual(sorted(self.rows()), ["ACC2"])

    def test_enhancedAcknowledgmentAskedIsAnsweredInOriginalMode(self):
        """Enhanced mode (MSH-15, MSH-16) is not supported: the README says
        such a message gets the original-mode AA all the same."""
        raw = orderMessage("M1", "ACC1", "P", "A^B", charset="").replace(b"|P|2.3.1", b"|P|2.5|||AL|NE")
        outcome = self.process(raw)
        self.assertEqual(parseMessage(outcome.ack).segment("MSA").fields[1:3], ["AA", "M1"])

    def test_version21OrderWithoutTriggerEventIsO01(self):
        """HL7 v2.1's MSH-9 holds only the message type: ``ORM`` is an
        ORM^O01, answered with an ACK without a trigger event either."""
        raw = orderMessage("M1", "ACC1", "P", "A^B").replace(b"|ORM^O01|", b"|ORM|").replace(b"|P|2.3.1", b"|P|2.1")
        outcome = self.process(raw)
        self.assertEqual(outcome.code, "AA", outcome.text)
        self.assertEqual(parseMessage(outcome.ack).segments[0].fields[9], "ACK")
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.assertEqual(self.process(raw.replace(b"|ORM|", b"|OMG|")).code, "AR")

    def test_aDatabaseFailureIsRejectedForTheSenderToRetry(self):
        """Not the message's fault (the database locked): AR (the sender
        sends it again later), the ACK naming only the kind of failure, the
        log the database's message on one line."""
        events = []
        self.intake.log = Logger(observer=events.append)
        self.intake.items.apply = lambda orders, forPeer: defer.fail(
            sqliteError("database is locked", sqlite3.SQLITE_BUSY))
        outcome = self.process(orderMessage("M1", "ACC1", "PAT1", "Doe^John"))
        self.assertEqual((outcome.code, outcome.retry), ("AR", True))
        msa = parseMessage(outcome.ack).segment("MSA")
        self.assertEqual(msa.value(3), "worklist update failed (OperationalError): not applied, send it again later")
        self.assertNotIn(b"Doe", outcome.ack.split(b"\rMSA")[1])
        self.assertIn("database is locked", " ".join(formatEvent(event) for event in events))
        self.assertFalse([event for event in events if "log_failure" in event])

    def test_aFailureOfTheMessagesOwnIsNotRetried(self):
        """A failure that would come back every time (a name the database's
        encoding cannot hold, a duplicate key, a bug) is AR without
        ``retry``, not "send it again later", logged with its traceback."""
        for error in (UnicodeEncodeError("latin-1", "\u674e", 0, 1, "ordinal not in range(256)"),
                      sqliteError("UNIQUE constraint failed", sqlite3.SQLITE_CONSTRAINT, IntegrityError),
                      RuntimeError("a bug")):
            self.intake.items.apply = lambda orders, forPeer: defer.fail(error)
            outcome = self.process(orderMessage("M1", "ACC1", "PAT1", "Doe^John"))
            self.assertEqual((outcome.code, outcome.retry), ("AR", False))
            self.assertEqual(parseMessage(outcome.ack).segment("MSA").value(3),
                             f"worklist update failed ({type(error).__name__}): not applied")
            self.assertEqual(len(self.flushLoggedErrors(type(error))), 1)

    def test_mutatedMessages(self):
        """Seeded random damage to orders in every character set gets an
        ACK (AA, AE or AR) that parses, never an internal error."""
        rng = random.Random(20261202)
        codes = {}
        for number in range(1500):
            charset, name = rng.choice([("", "Muller^Hans"), ("8859/1", "Müller^Hans"),
                                        ("UNICODE UTF-8", "Müller^Hans")])
            raw = orderMessage(f"M{number}", f"ACC{number % 50}", f"PAT{number % 7}", name,
                               control=rng.choice(["NW", "XO", "CA"]), charset=charset)
            outcome = self.process(mutated(rng, raw))
            codes[outcome.code] = codes.get(outcome.code, 0) + 1
            self.assertIn(b"MSA|" + outcome.code.encode(), outcome.ack)
            parseMessage(outcome.ack)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertGreater(codes.get("AR", 0), 100, codes)
        self.assertGreater(codes.get("AA", 0), 100, codes)


class BatchTests(IntakeTestCase):
    """An HL7 batch (FHS, BHS, messages, BTS, FTS) in one MLLP frame was
    refused whole ('MSA|AR|B1|the message does not start with an MSH
    segment'), its second message never answered, while the drop folder
    applied the same bytes; its messages are now applied in order and
    answered by an acknowledgment batch (HL7 v2.5 2.10.3.4)."""

    def batch(self, *messages, fileHeader=True):
        head = b"FHS|^~\\&|RIS|HOSP|||20240301||||F1\rBHS|^~\\&|RIS|HOSP|||20240301||||B\\F\\7\r"
        if not fileHeader:
            head = head.split(b"\r", 1)[1]
        return head + b"\r".join(messages) + f"\rBTS|{len(messages)}\r".encode() + (b"FTS|1\r" if fileHeader else b"")

    def answer(self, raw):
        """The segments of the acknowledgment batch ``handle`` answered, and
        the ``(MSA-1, MSA-2)`` of its ACKs."""
        answer = self.successResultOf(self.intake.handle(raw))
        segments = answer.split(b"\r")
        self.assertEqual(segments[-1], b"")
        acks = [parseMessage(message).segment("MSA") for message in splitMessages(answer)]
        return segments[:-1], [(msa.value(1), msa.value(2)) for msa in acks]

    def test_aBatchIsAppliedAndAnsweredByAnAcknowledgmentBatch(self):
        for fileHeader in (True, False):
            raw = self.batch(orderMessage("B1", "BACC1", "PAT1", "Doe^John"),
                             orderMessage("B2", "BACC2", "PAT2", "Roe^Jane"),
                             orderMessage("B3", "BACC1", "PAT1", "Doe^John", control="CA"), fileHeader=fileHeader)
            segments, acks = self.answer(raw)
            self.assertEqual(acks, [("AA", "B1"), ("AA", "B2"), ("AA", "B3")])
            self.assertEqual(sorted(self.rows()), ["BACC2"])
            headers = [segment.split(b"|") for segment in segments if segment[:3] in (b"FHS", b"BHS", b"BTS", b"FTS")]
            expected = [[b"FHS", b"F1"]] if fileHeader else []
            expected += [[b"BHS", b"B\\F\\7"], [b"BTS", b"3"]] + ([[b"FTS", b"1"]] if fileHeader else [])
            self.assertEqual([[h[0], h[-1]] for h in headers], expected)
            self.assertEqual(segments[0][:3], b"FHS" if fileHeader else b"BHS")
            bhs = next(h for h in headers if h[0] == b"BHS")
            self.assertEqual((bhs[2], bhs[4], bhs[5], len(bhs)), (b"PACSAE", b"RIS", b"HOSP", 12))
            self.assertTrue(bhs[10].isdigit())  # BHS-11, ours; BHS-12 the one answered
            self.assertEqual(segments[-1], b"FTS|1" if fileHeader else b"BTS|3")
            self.intake.handle(orderMessage("C1", "BACC2", "PAT2", "Roe^Jane", control="CA"))

    def test_eachMessageItsOwnCode(self):
        raw = self.batch(orderMessage("B1", "BACC1", "PAT1", "Doe^John", control="XO"),
                         b"MSH|^~\\&|RIS|HOSP|PACS||2024||ADT^A08|B2|P|2.5",
                         orderMessage("B3", "BACC3", "PAT3", "Poe^Jim"))
        self.assertEqual(self.answer(raw)[1], [("AE", "B1"), ("AR", "B2"), ("AA", "B3")])
        self.assertEqual(sorted(self.rows()), ["BACC3"])

    def test_afterAMessageToRetryNoneIsApplied(self):
        """The database failing on the second message: the third is not
        applied before it, both answered AR for the sender to send again."""
        events = []
        self.intake.log = Logger(observer=events.append)
        self.failFor("BACC2")
        raw = self.batch(*(orderMessage(f"B{n}", f"BACC{n}", f"PAT{n}", "Doe^John") for n in (1, 2, 3)))
        self.assertEqual(self.answer(raw)[1], [("AA", "B1"), ("AR", "B2"), ("AR", "B3")])
        self.assertEqual(sorted(self.rows()), ["BACC1"])
        logged = [formatEvent(event) for event in events]
        self.assertIn("HL7 batch B|7: message 2 may be applied later: the 1 message(s) after it are not applied "
                      "(AR), for the sender to send them again after it", logged)
        self.assertIn("HL7 batch B|7: 3 message(s) in one MLLP frame, 1 AA, 2 AR, answered by an acknowledgment "
                      "batch", logged)

    def test_theAcknowledgmentBatchIsBuiltInTheRunnerGiven(self):
        """The acknowledgment batch of an MLLP batch (the ARs of the
        messages not applied, all its ACKs joined) was built on the reactor
        thread, blocking it for a batch of thousands of messages: it is
        built in ``inThread``, as the messages are parsed, and the answer
        waits for it."""
        calls = []

        def inThread(f, *args):
            calls.append((f, args, defer.Deferred()))
            return calls[-1][2]
        self.intake.inThread = inThread
        self.failFor("BACC2")
        answering = self.intake.handle(self.batch(*(orderMessage(f"B{n}", f"BACC{n}", f"PAT{n}", "Doe^John")
                                                    for n in (1, 2, 3))))
        results = []
        while calls:
            f, args, running = calls.pop(0)
            self.assertNoResult(answering)
            results.append(f(*args))
            running.callback(results[-1])
        answer = self.successResultOf(answering)
        self.assertIs(answer, results[-1])
        acks = [parseMessage(message).segment("MSA") for message in splitMessages(answer)]
        self.assertEqual([(msa.value(1), msa.value(2)) for msa in acks], [("AA", "B1"), ("AR", "B2"), ("AR", "B3")])

    def test_anEmptyBatch(self):
        segments, acks = self.answer(b"BHS|^~\\&|RIS\rBTS|0")
        self.assertEqual((acks, [s[:3] for s in segments]), ([], [b"BHS", b"BTS"]))
        self.assertEqual(segments[-1], b"BTS|0")


    def test_segmentsBeforeTheFirstMSHAreNoMessage(self):
        """Segments before a batch's first MSH were acknowledged and counted
        as a message: 'PID|junk', then order M12 in BHS BX12 with BTS|1, got
        an ACK 'MSA|AR||the message does not start with an MSH segment' and
        BTS|2, logged as '2 message(s) in one MLLP frame', the sender having
        sent one.  They are refused with a log line, and BTS-2, the batch
        comment, says so; BTS-1 counts the messages."""
        events = []
        self.intake.log = Logger(observer=events.append)
        raw = b"BHS|^~\\&|RIS||||||||BX12\rPID|junk\rNTE|1\r" + orderMessage("M12", "BACC12", "PAT12", "Doe^John")
        segments, acks = self.answer(raw + b"\rBTS|1\r")
        self.assertEqual(acks, [("AA", "M12")])
        self.assertEqual(segments[-1], b"BTS|1|2 segment(s) before the first MSH refused: in no message")
        self.assertEqual(sorted(self.rows()), ["BACC12"])
        logged = [formatEvent(event) for event in events]
        self.assertIn("HL7 batch BX12: segments before the first MSH of a batch, in no message, refused (not "
                      "acknowledged nor counted as one: BTS-2 says so): b'PID|junk\\rNTE|1'", logged)
        self.assertIn("HL7 batch BX12: 1 message(s) in one MLLP frame, 1 AA, answered by an acknowledgment batch",
                      logged)
        self.assertEqual(self.intake.counters["hl7Errors"], 1)

    def test_segmentsBeforeTheFirstMSHAreLoggedUnderTheirOwnBatch(self):
        """A file's second batch BX13 holding 'ZZZ|x' before its first MSH
        logged it as 'HL7 batch BX12: segments before the first MSH ...',
        the first batch's control ID: each batch's are logged under its own
        BHS-11 (the file's FHS-11 for a batch with no BHS)."""
        events = []
        self.intake.log = Logger(observer=events.append)
        raw = (b"FHS|^~\\&|RIS||||||||F1\rBHS|^~\\&|RIS||||||||BX12\r"
               + orderMessage("M13", "BACC13", "PAT13", "Doe^John") + b"\rBTS|1\rBHS|^~\\&|RIS||||||||BX13\rZZZ|x\r"
               + orderMessage("M14", "BACC14", "PAT14", "Roe^Jane") + b"\rBTS|1\rFTS|2\r")
        segments, acks = self.answer(raw)
        self.assertEqual(acks, [("AA", "M13"), ("AA", "M14")])
        self.assertEqual([segment for segment in segments if segment[:3] == b"BTS"],
                         [b"BTS|1", b"BTS|1|1 segment(s) before the first MSH refused: in no message"])
        strays = [formatEvent(event) for event in events if "before the first MSH" in formatEvent(event)]
        self.assertEqual(strays, ["HL7 batch BX13: segments before the first MSH of a batch, in no message, refused "
                                  "(not acknowledged nor counted as one: BTS-2 says so): b'ZZZ|x'"])
        events.clear()
        self.answer(b"FHS|^~\\&|RIS||||||||F2\rZZZ|y\r" + orderMessage("M15", "BACC15", "PAT15", "Poe^Jim")
                    + b"\rFTS|1\r")
        self.assertIn("HL7 batch F2: segments before the first MSH of a batch, in no message, refused (not "
                      "acknowledged nor counted as one: BTS-2 says so): b'ZZZ|y'", [formatEvent(e) for e in events])


class DropFolderTests(IntakeTestCase):

    def setUp(self):
        IntakeTestCase.setUp(self)
        self.path = self.mktemp()
        self.folder = DropFolder(self.path, self.intake, SynchronousWorkers())
        self.folder.prepare()

    def drop(self, name, messages):
        writeMessages(os.path.join(self.path, name), messages)

    def scans(self, count=2):
        """Scan the folder ``count`` times (a file is taken by the second
        scan that sees it unchanged)."""
        for _ in range(count):
            self.successResultOf(self.folder.scan())

    def logged(self):
        events = []
        self.patch(DropFolder, "log", Logger(observer=events.append))
        return events

    def test_filesAppliedAndMoved(self):
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B"), orderMessage("M2", "ACC2", "P2", "C^D")])
        self.drop("b.hl7", [orderMessage("M3", "ACC3", "P3", "E^F", control="XO")])
        with open(os.path.join(self.path, "empty.hl7"), "wb") as f:
            f.write(b"nothing here\n")
        self.drop(".hidden", [orderMessage("M4", "ACC4", "P4", "G^H")])
        self.scans()
        self.assertEqual(sorted(self.rows()), ["ACC1", "ACC2"])
        self.assertEqual(os.listdir(os.path.join(self.path, PROCESSED)), ["a.hl7"])
        self.assertEqual(sorted(os.listdir(os.path.join(self.path, FAILED))), ["b.hl7", "empty.hl7"])
        self.assertEqual(sorted(os.listdir(self.path)), [".hidden", FAILED, PROCESSED])

    def test_fileStillBeingWrittenWaits(self):
        """A file is taken when two scans in a row see the same size and
        modification time."""
        path = os.path.join(self.path, "a.hl7")
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])
        self.scans(1)
        self.assertEqual(self.rows(), {})
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B"), orderMessage("M2", "ACC2", "P2", "C^D")])
        os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1))
        self.scans(1)
        self.assertEqual(self.rows(), {})
        self.scans(1)
        self.assertEqual(sorted(self.rows()), ["ACC1", "ACC2"])

    def test_futureModificationTimeDoesNotDelay(self):
        """A file whose modification time is in the future (a sender's clock
        ahead of ours) is taken like any other, not when that time comes."""
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])
        future = time.time() + 3600
        os.utime(os.path.join(self.path, "a.hl7"), (future, future))
        self.scans()
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.assertEqual(os.listdir(os.path.join(self.path, PROCESSED)), ["a.hl7"])

    def test_fileWithoutItsLastSegmentEndWaits(self):
        """A file cut inside a segment (a writer that paused) is not applied
        until its last segment ends; the whole order is then applied."""
        path = os.path.join(self.path, "a.hl7")
        whole = orderMessage("M1", "ACC1", "P1", "A^B") + b"\r"
        cut = whole.index(b"OBR|") + 8
        with open(path, "wb") as f:
            f.write(whole[:cut])
        self.scans(3)
        self.assertEqual(self.rows(), {})
        with open(path, "ab") as f:
            f.write(whole[cut:])
        self.scans()
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.assertEqual(self.rows()["ACC1"].PatientID, "P1")
        self.assertEqual(os.listdir(os.path.join(self.path, PROCESSED)), ["a.hl7"])

    def test_fileWithoutItsLastSegmentEndAppliedWhenItStaysSo(self):
        """A file whose last segment has no end is applied, with a log line,
        once UNTERMINATED_SCANS scans saw it unchanged."""
        with open(os.path.join(self.path, "a.hl7"), "wb") as f:
            f.write(orderMessage("M1", "ACC1", "P1", "A^B"))
        logged = self.logged()
        self.scans(dropfolder.UNTERMINATED_SCANS)
        self.assertEqual(self.rows(), {})
        self.scans(1)
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.assertIn(f"a.hl7 has not changed for {dropfolder.UNTERMINATED_SCANS} scans but its last segment "
                      "has no end", " ".join(formatEvent(event) for event in logged))

    def test_missingSubfolderIsMade(self):
        """A processed/ removed while the server runs is made again: the file
        moves there and is applied once."""
        os.rmdir(os.path.join(self.path, PROCESSED))
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])
        self.scans()
        self.assertEqual(os.listdir(os.path.join(self.path, PROCESSED)), ["a.hl7"])

    def folderLines(self, logged):
        """(level, text) of the ``logged`` events about the drop folder itself."""
        return [(event["log_level"], formatEvent(event)) for event in logged
                if "drop folder " + self.path in formatEvent(event)]

    def test_aFolderThatGoesAndComesBackIsLoggedOnceEach(self):
        """A drop folder that went away (a share no longer mounted) was
        taken as empty without a word: its going is now one warning, its
        return one line, and files dropped then are taken."""
        logged = self.logged()
        shutil.rmtree(self.path)
        self.scans(3)
        os.makedirs(self.path)
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])
        self.scans(3)
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.assertEqual(self.folderLines(logged),
                         [(LogLevel.warn, f"HL7 drop folder {self.path} is not there (a share not mounted?): "
                                          "files dropped there are taken once it is back"),
                          (LogLevel.info, f"HL7 drop folder {self.path} is there again")])

    def test_aFolderThatCannotBeReadIsLoggedOnceAndOnceWhenItCanAgain(self):
        """A drop folder that cannot be listed for another reason than
        being gone (a file in its place, a share back with the wrong
        permissions, a stale NFS handle) logged an error at every scan and
        nothing when it could be read again: it is now one error with the
        reason when it starts, one line when it can be read again."""
        logged = self.logged()
        shutil.rmtree(self.path)
        with open(self.path, "wb"):
            pass
        self.scans(3)
        os.remove(self.path)
        self.folder.prepare()
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])
        self.scans(3)
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.assertEqual(self.folderLines(logged),
                         [(LogLevel.error, f"HL7 drop folder {self.path} cannot be listed ([Errno 20] Not a directory: "
                                           f"'{self.path}'): files dropped there are taken once it can"),
                          (LogLevel.info, f"HL7 drop folder {self.path} can be listed again")])

    def test_fileThatCannotBeMovedIsAppliedOnce(self):
        """A file applied but not moved (processed/ cannot be made: a dangling
        link) is not applied again at each scan: its order's cancel stays in
        effect."""
        os.rmdir(os.path.join(self.path, PROCESSED))
        os.symlink(os.path.join("nowhere", PROCESSED), os.path.join(self.path, PROCESSED))
        logged = self.logged()
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])
        self.scans()
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.drop("b.hl7", [orderMessage("M2", "ACC1", "P1", "A^B", control="CA")])
        self.scans(4)
        self.assertEqual(self.rows(), {})
        self.assertEqual(sorted(os.listdir(self.path)), ["a.hl7", "b.hl7", FAILED, PROCESSED])
        moveErrors = [formatEvent(event) for event in logged if "cannot be moved" in formatEvent(event)]
        self.assertEqual(len(moveErrors), 2, moveErrors)

    def test_filesAppliedInTheOrderTheyWereWritten(self):
        """An order's cancel written after it, under a name sorting before
        its name, is applied after it: the item is gone."""
        self.drop("ORM_7f3a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])
        self.drop("ORM_2c91.hl7", [orderMessage("M2", "ACC1", "P1", "A^B", control="CA")])
        self.drop("ORM_0000.hl7", [orderMessage("M3", "ACC2", "P2", "C^D")])
        for name, seconds in (("ORM_7f3a.hl7", 100), ("ORM_2c91.hl7", 101), ("ORM_0000.hl7", 101)):
            os.utime(os.path.join(self.path, name), (seconds, seconds))
        applied = []
        self.patch(self.folder, "applyFile", lambda name, scans: applied.append(name) or [])
        self.scans()
        self.assertEqual(applied, ["ORM_7f3a.hl7", "ORM_0000.hl7", "ORM_2c91.hl7"])

    def test_newerFilesWaitForOneHeldBack(self):
        """An order whose last segment has no end, then its cancel written
        after it: the cancel waits for the order, which is applied after
        UNTERMINATED_SCANS scans, then the cancel: the item is gone.  A file
        still changing holds back newer ones too."""
        self.drop("b_order.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])
        with open(os.path.join(self.path, "b_order.hl7"), "rb+") as f:
            f.truncate(os.path.getsize(f.name) - 1)
        self.drop("a_cancel.hl7", [orderMessage("M2", "ACC1", "P1", "A^B", control="CA")])
        self.drop("c_other.hl7", [orderMessage("M3", "ACC3", "P3", "C^D")])
        for name, seconds in (("b_order.hl7", 100), ("a_cancel.hl7", 101), ("c_other.hl7", 102)):
            os.utime(os.path.join(self.path, name), (seconds, seconds))
        self.scans(dropfolder.UNTERMINATED_SCANS)
        self.assertEqual(sorted(os.listdir(self.path)), ["a_cancel.hl7", "b_order.hl7", "c_other.hl7",
                                                         FAILED, PROCESSED])
        self.scans(1)
        self.assertEqual(sorted(self.rows()), ["ACC3"])
        self.assertEqual(sorted(os.listdir(os.path.join(self.path, PROCESSED))),
                         ["a_cancel.hl7", "b_order.hl7", "c_other.hl7"])
        self.drop("d_changing.hl7", [orderMessage("M4", "ACC4", "P4", "E^F")])
        self.drop("e_after.hl7", [orderMessage("M5", "ACC5", "P5", "G^H")])
        os.utime(os.path.join(self.path, "d_changing.hl7"), (200, 200))
        os.utime(os.path.join(self.path, "e_after.hl7"), (201, 201))
        self.scans(1)
        os.utime(os.path.join(self.path, "d_changing.hl7"), (200.5, 200.5))
        self.scans(1)
        self.assertEqual(sorted(self.rows()), ["ACC3"])
        self.scans(1)
        self.assertEqual(sorted(self.rows()), ["ACC3", "ACC4", "ACC5"])

    def test_sameNameTwiceKeepsBothFiles(self):
        for number in (1, 2):
            self.drop("a.hl7", [orderMessage(f"M{number}", f"ACC{number}", "P1", "A^B")])
            self.scans()
        self.assertEqual(sorted(os.listdir(os.path.join(self.path, PROCESSED))), ["a.hl7", "a.hl7.1"])

    def test_fileOverTheLimitFailsUnread(self):
        """A file over HL7_FILE_LIMIT bytes is not read into memory: it moves
        to failed/ with a log line saying why, and applies nothing."""
        self.drop("big.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])
        self.patch(dropfolder, "HL7_FILE_LIMIT", os.path.getsize(os.path.join(self.path, "big.hl7")) - 1)
        logged = self.logged()
        self.scans()
        self.assertEqual(self.rows(), {})
        self.assertEqual(os.listdir(os.path.join(self.path, FAILED)), ["big.hl7"])
        self.assertEqual([formatEvent(event) for event in logged if "big.hl7" in formatEvent(event)],
                         [f"HL7 drop folder: big.hl7 -> {os.path.join(self.path, FAILED, 'big.hl7')}: "
                          "larger than 0 MB"])

    def test_aFileWhoseDatabaseFailedStaysForTheNextScans(self):
        """A message not applied for a reason that is not its own (the
        database failing: AR, send it again later) leaves its file where it
        is and stops the scan: that file and the newer ones (a cancel of its
        order) are applied, in order, once the database is back."""
        self.drop("a_order.hl7", [orderMessage("M1", "ACC1", "P1", "A^B"), orderMessage("M2", "ACC2", "P2", "C^D")])
        self.drop("b_cancel.hl7", [orderMessage("M3", "ACC1", "P1", "A^B", control="CA")])
        for name, seconds in (("a_order.hl7", 100), ("b_cancel.hl7", 101)):
            os.utime(os.path.join(self.path, name), (seconds, seconds))
        apply = self.intake.items.apply
        self.intake.items.apply = lambda orders, forPeer: defer.fail(
            sqliteError("database is locked", sqlite3.SQLITE_BUSY))
        logged = self.logged()
        self.scans(3)
        self.assertEqual(sorted(os.listdir(self.path)), ["a_order.hl7", "b_cancel.hl7", FAILED, PROCESSED])
        self.assertIn("HL7 drop folder: a_order.hl7 stays for the next scan: message 1: AR worklist update "
                      "failed (OperationalError): not applied, send it again later (database is locked)",
                      [formatEvent(event) for event in logged])
        self.intake.items.apply = apply
        self.scans(1)
        self.assertEqual(sorted(self.rows()), ["ACC2"])
        self.assertEqual(sorted(os.listdir(os.path.join(self.path, PROCESSED))), ["a_order.hl7", "b_cancel.hl7"])
        self.assertEqual(os.listdir(os.path.join(self.path, FAILED)), [])

    def test_aFileWhoseMessageCannotBeStoredGoesToFailed(self):
        """A message the database can never store (a name its encoding
        cannot hold) sent its file nowhere: it blocked the folder for good.
        Its file now goes to failed/ and the newer files are applied."""
        apply = self.intake.items.apply

        def applyUnlessChinese(orders, forPeer):
            if orders[0].values.get("AccessionNumber") == "ACC1":
                return defer.fail(UnicodeEncodeError("latin-1", "\u674e", 0, 1, "ordinal not in range(256)"))
            return apply(orders, forPeer)

        self.intake.items.apply = applyUnlessChinese
        self.drop("e1.hl7", [orderMessage("E1", "ACC1", "P1", "\u674e^\u56db")])
        self.drop("e3.hl7", [orderMessage("E3", "ACC3", "P3", "DOE^JOHN")])
        for name, seconds in (("e1.hl7", 100), ("e3.hl7", 101)):
            os.utime(os.path.join(self.path, name), (seconds, seconds))
        self.scans()
        self.assertEqual(len(self.flushLoggedErrors(UnicodeEncodeError)), 1)
        self.assertEqual(sorted(self.rows()), ["ACC3"])
        self.assertEqual(os.listdir(os.path.join(self.path, FAILED)), ["e1.hl7"])
        self.assertEqual(os.listdir(os.path.join(self.path, PROCESSED)), ["e3.hl7"])

    def controlIds(self, *names):
        """The MSH-10 of the messages of a file of the folder."""
        with open(os.path.join(self.path, *names), "rb") as f:
            return [parseMessage(raw).controlId for raw in dropfolder.readMessages(f)]

    def test_aRetriedFileDoesNotApplyItsAppliedMessagesAgain(self):
        """A file stopped at its second message (the database failing) was
        applied again from its first at every scan: a cancel of the first
        order received meanwhile was undone.  How far the file got is now
        kept in memory: the next scans of the unchanged file start from the
        message not applied, each order is applied once, in the order the
        files were written, and the file, refused message and all, goes to
        failed/ once its last message is applied."""
        self.drop("a.hl7", [orderMessage("M0", "ACC0", "P0", "Z^Z", control="XO"),
                            orderMessage("M1", "ACC1", "P1", "A^B"), orderMessage("M2", "ACC2", "P2", "C^D"),
                            orderMessage("M3", "ACC3", "P3", "E^F")])
        self.drop("b.hl7", [orderMessage("M4", "ACC4", "P4", "G^H")])
        for name, seconds in (("a.hl7", 100), ("b.hl7", 101)):
            os.utime(os.path.join(self.path, name), (seconds, seconds))
        recover = self.failFor("ACC2")
        logged = self.logged()
        self.scans()
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.assertEqual(self.controlIds("a.hl7"), ["M0", "M1", "M2", "M3"])
        self.assertIn("HL7 drop folder: a.hl7: message 1: AE ", formatEvent(logged[0]))
        self.assertEqual(self.process(orderMessage("M5", "ACC1", "P1", "A^B", control="CA")).code, "AA")
        self.scans(2)
        self.assertEqual(self.rows(), {})
        recover()
        self.scans(1)
        self.assertEqual(sorted(self.rows()), ["ACC2", "ACC3", "ACC4"])
        self.assertEqual(os.listdir(os.path.join(self.path, PROCESSED)), ["b.hl7"])
        self.assertEqual(self.controlIds(FAILED, "a.hl7"), ["M0", "M1", "M2", "M3"])
        self.assertIn("message 1: AE ", formatEvent(logged[-2]))
        self.assertEqual(sorted(os.listdir(self.path)), [FAILED, PROCESSED])
        self.assertEqual(self.counters["hl7Applied"], 5)

    def test_aHeldFileIsNeverWritten(self):
        """A held file was written anew without the messages applied: an
        order the RIS wrote under the same name meanwhile was overwritten
        and lost, the file's mode, owner and line ends changed, and on a
        full disk its first messages were applied again at every scan.
        The RIS's file is now left exactly as it is."""
        raw = [orderMessage("M1", "ACC1", "P1", "A^B"), orderMessage("M2", "ACC2", "P2", "C^D")]
        path = os.path.join(self.path, "a.hl7")
        with open(path, "wb") as f:
            f.write(b"".join(message.replace(b"\n", b"\r") + b"\r\n" for message in raw))
        os.chmod(path, 0o640)
        with open(path, "rb") as f:
            data = f.read()
        self.failFor("ACC2")
        self.scans(4)
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        with open(path, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o640)
        self.assertEqual(sorted(os.listdir(self.path)), ["a.hl7", FAILED, PROCESSED])
        self.assertEqual(self.counters["hl7Applied"], 1)

    def test_aFileReplacedWhileHeldIsANewFile(self):
        """A file written under the name of a held one is a file of its
        own: applied from its first message, its failure logged (it
        inherited the held state, so nothing was); and a held file whose
        failure changes logs the new one, once."""
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B"), orderMessage("M2", "ACC2", "P2", "C^D")])
        self.failFor("ACC2")
        logged = self.logged()
        self.scans(3)
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.process(orderMessage("M5", "ACC1", "P1", "A^B", control="CA"))
        path = os.path.join(self.path, "a.hl7")
        self.drop(".a.hl7", [orderMessage("M3", "ACC3", "P3", "E^F"), orderMessage("M4", "ACC2", "P2", "C^D")])
        os.replace(os.path.join(self.path, ".a.hl7"), path)
        self.scans(3)
        self.assertEqual(sorted(self.rows()), ["ACC3"])
        stays = [formatEvent(event) for event in logged if "stays" in formatEvent(event)]
        self.assertEqual(len(stays), 2, stays)
        self.intake.items.apply = lambda orders, forPeer: defer.fail(sqliteError("disk I/O error",
                                                                                 sqlite3.SQLITE_IOERR))
        self.scans(3)
        stays = [formatEvent(event) for event in logged if "stays" in formatEvent(event)]
        self.assertEqual(len(stays), 3, stays)
        self.assertIn("disk I/O error", stays[-1])

    def test_aFileAppendedToWhileAppliedIsNotMovedUnapplied(self):
        """An order a RIS appended to a file while pacs applied it went to
        processed/ with the file, never applied, logged as 'N message(s)
        applied'.  The file now stays, with a log line, and the next scans
        apply only the order appended: the others are not applied again
        (a cancel received meanwhile stays in effect)."""
        path = os.path.join(self.path, "daily.hl7")
        self.drop("daily.hl7", [orderMessage("M1", "ACC1", "P1", "A^B"), orderMessage("M2", "ACC2", "P2", "C^D")])

        def append():
            with open(path, "ab") as f:
                f.write(orderMessage("M3", "LATE", "P3", "E^F").replace(b"\r", b"\n") + b"\n")
            os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1))

        self.folder.workers = WorkersChangingAFile(append)
        logged = self.logged()
        self.scans()
        self.assertEqual(sorted(self.rows()), ["ACC1", "ACC2"])
        self.assertEqual(os.listdir(os.path.join(self.path, PROCESSED)), [])
        self.assertEqual([formatEvent(event) for event in logged],
                         ["HL7 drop folder: daily.hl7 changed while its 2 message(s) were applied: it stays for "
                          "the next scans, which apply the messages it got meanwhile (none of those 2 again "
                          "unless it was written anew)"])
        self.assertEqual(self.process(orderMessage("M4", "ACC1", "P1", "A^B", control="CA")).code, "AA")
        self.scans()
        self.assertEqual(sorted(self.rows()), ["ACC2", "LATE"])
        self.assertEqual(self.controlIds(PROCESSED, "daily.hl7"), ["M1", "M2", "M3"])
        self.assertEqual(formatEvent(logged[-1]), "HL7 drop folder: daily.hl7 -> "
                         f"{os.path.join(self.path, PROCESSED, 'daily.hl7')}: 3 message(s) applied")
        self.assertEqual(self.counters["hl7Applied"], 4)

    def test_aSegmentAppendedToTheLastMessageWhileAppliedAppliesNothingAgain(self):
        """A segment (NTE) a RIS appended to a file's last message while pacs
        applied it made the file a new one: all its messages were applied
        again, undoing a cancel received meanwhile.  The file now goes on
        after them: nothing is applied again, and the segment, not applied,
        is logged."""
        path = os.path.join(self.path, "daily.hl7")
        self.drop("daily.hl7", [orderMessage("M1", "ACC1", "P1", "A^B"), orderMessage("M2", "ACC2", "P2", "C^D")])

        def append():
            with open(path, "ab") as f:
                f.write(b"NTE|1||a note\r")
            os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1))

        self.folder.workers = WorkersChangingAFile(append)
        logged = self.logged()
        self.scans()
        self.assertEqual(self.process(orderMessage("M4", "ACC1", "P1", "A^B", control="CA")).code, "AA")
        self.scans()
        self.assertEqual(sorted(self.rows()), ["ACC2"])
        self.assertEqual(self.counters["hl7Applied"], 3)
        self.assertEqual(self.controlIds(PROCESSED, "daily.hl7"), ["M1", "M2"])
        self.assertEqual([formatEvent(event) for event in logged][1:],
                         ["HL7 drop folder: daily.hl7: message 2 got segments after it was applied: they are not "
                          "applied (the message is not applied again, which would undo what came after it); send "
                          "them in a message of their own",
                          "HL7 drop folder: daily.hl7 -> "
                          f"{os.path.join(self.path, PROCESSED, 'daily.hl7')}: 2 message(s) applied"])

    def test_aFileReplacedWhileAppliedIsAppliedAsANewFile(self):
        """A file a RIS wrote anew under the same name (another inode)
        while pacs applied the old one was moved to processed/ unread.  It
        now stays and is applied, from its first message, as a new file."""
        path = os.path.join(self.path, "a.hl7")
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])

        def replace():
            self.drop(".a.hl7", [orderMessage("M2", "ACC2", "P2", "C^D")])
            os.replace(os.path.join(self.path, ".a.hl7"), path)

        self.folder.workers = WorkersChangingAFile(replace)
        self.scans()
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.assertEqual(sorted(os.listdir(self.path)), ["a.hl7", FAILED, PROCESSED])
        self.scans()
        self.assertEqual(sorted(self.rows()), ["ACC1", "ACC2"])
        self.assertEqual(self.controlIds(PROCESSED, "a.hl7"), ["M2"])
        self.assertEqual(sorted(os.listdir(self.path)), [FAILED, PROCESSED])

    def test_aStuckFileIsLoggedAndCountedOnce(self):
        """A file held by a database failure logged its failure, its AR and
        that it stays at every scan, each time counted as a new HL7 error:
        it is now one of each until it moves, then the line of its move."""
        self.drop("a.hl7", [orderMessage("M1", "ACC1", "P1", "A^B")])
        recover = self.failFor("ACC1")
        events = []
        self.patch(WorklistIntake, "log", Logger(observer=events.append))
        logged = self.logged()
        self.scans(6)
        self.assertEqual(self.counters["hl7Errors"], 1)
        self.assertEqual([formatEvent(event) for event in events],
                         ["HL7 M1: the database failed: database is locked",
                          "HL7 M1 rejected (AR): worklist update failed (OperationalError): not applied, send it "
                          "again later"])
        self.assertEqual([formatEvent(event) for event in logged],
                         ["HL7 drop folder: a.hl7 stays for the next scan: message 1: AR worklist update failed "
                          "(OperationalError): not applied, send it again later (database is locked)"])
        recover()
        self.scans(1)
        self.assertEqual(sorted(self.rows()), ["ACC1"])
        self.assertEqual((self.counters["hl7Errors"], self.counters["hl7Applied"]), (1, 1))
        self.assertEqual(formatEvent(logged[-1]), "HL7 drop folder: a.hl7 -> "
                         f"{os.path.join(self.path, PROCESSED, 'a.hl7')}: 1 message(s) applied")
        self.drop("a.hl7", [orderMessage("M2", "ACC2", "P2", "C^D")])
        recover = self.failFor("ACC2")
        self.scans(3)
        self.assertEqual(self.counters["hl7Errors"], 2)
        self.assertEqual(len([event for event in logged if "stays" in formatEvent(event)]), 2)
