"""The modality worklist end to end: HL7 orders sent with ``mllp_send`` to a
running ``twistd -n pacs``, its ACKs, the drop folder, ``dgate --loadhl7``,
DCMTK ``findscu -W`` (our queries and DCMTK's example queries) and
WorkListMode 1 and 2 through ``storescu``."""

import glob
import os
import re
import socket
import sqlite3
import tempfile

import pydicom
from pydicom.uid import generate_uid
from twisted.trial import unittest

from pacscore.hl7.mllp import frame
from pacscore.testing.corpus import makeDataset
from pacscore.testing.orders import orderMessage, writeMessages
from tests.interop.server import PacsServer, dcmtk, waitFor

EXAMPLES = "/usr/share/doc/dcmtk/examples/wlistqry"
SPS = "ScheduledProcedureStepSequence"
# The attributes of etc/dicom.sql's Scheduled Procedure Step block.
SPS_ITEM = {"Modality", "RequestedContrastAgent", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
            "ScheduledProcedureStepStartTime", "ScheduledPerformingPhysicianName",
            "ScheduledProcedureStepDescription", "ScheduledProcedureStepID", "ScheduledStationName",
            "ScheduledProcedureStepLocation", "PreMedication", "CommentsOnTheScheduledProcedureStep"}

# The orders of the worklist: (accession, patient ID, name, charset, modality, start, station AE, station name)
ORDERS = [
    ("ACC1001", "PAT1", "Müller^Hans", "8859/1", "CT", "20261202093000", "AA2", "A2"),
    ("ACC1002", "PAT2", "Дмитриев^Иван", "UNICODE UTF-8", "MR", "20261202140000", "AA4", "A2"),
    ("ACC1003", "PAT3", "Smith^John", "", "CT", "20261203101500", "AA2", "A2"),
    ("ACC1004", "PAT4", "Ødegård^Åse", "8859/1", "US", "20261204123000", "AA3", "A3"),
    ("ACC1005", "PAT5", "Doe^Jane", "UNICODE UTF-8", "CT", "20261205110000", "AA2", "A2"),
]


def useStationAE(workdir):
    """Map ScheduledAE from OBR-18 in the server's dicom.sql (the default maps nothing), every
    repetition a value (DT_MSTR)."""
    path = os.path.join(workdir, "dicom.sql")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace('"ScheduledAE", 16, SQL_C_CHAR, DT_STR, "---"',
                             '"ScheduledAE", 16, SQL_C_CHAR, DT_MSTR, "OBR.18"'))


def order(number, accession, patientID, name, charset, modality, start, stationAE, stationName,
          control="NW"):
    return orderMessage(f"MSG{number}", accession, patientID, name, control=control, modality=modality,
                        start=start, stationAE=stationAE, stationName=stationName, charset=charset)


def acks(output):
    """``[(code, control id)]`` of the MSA segments mllp_send printed."""
    return re.findall(r"MSA\|(A[AER])\|([^|\r\n]*)", output)


def sendFrames(server, *messages):
    """The messages in MLLP frames over a socket, then shutdown(SHUT_WR) (as
    ``nc -N`` does); all the server answered before it closed."""
    with socket.create_connection(("127.0.0.1", server.hl7Port), timeout=30) as connection:
        connection.sendall(b"".join(frame(message) for message in messages))
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def worklistFind(server, keys=(), query=None, sequenceKeys=()):
    """findscu -W: the matches as datasets. ``keys`` and ``sequenceKeys``
    (inside the Scheduled Procedure Step Sequence) are ``-k`` arguments;
    ``query`` a query file instead."""
    with tempfile.TemporaryDirectory() as out:
        args = ["-W", "-X", "-od", out, "-aec", server.ae]
        for key in keys:
            args += ["-k", key.encode("utf-8")]
        for key in sequenceKeys:
            args += ["-k", f"{SPS}[0].{key}".encode("utf-8")]
        if query is not None:
            args.append(query)
        result = dcmtk("findscu", *args[:-1] if query else args, "127.0.0.1", server.port,
                       *([query] if query else []))
        if result.returncode != 0:
            raise AssertionError(result.stdout + result.stderr)
        return [pydicom.dcmread(os.path.join(out, name)) for name in sorted(os.listdir(out))
                if name.startswith("rsp")]


def accessions(matches):
    return sorted(str(m.AccessionNumber) for m in matches)


class WorklistTests(unittest.TestCase):
    """One server, its worklist filled over MLLP in setUpClass."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-worklist-")
        serverDir = os.path.join(cls.workdir, "pacs")
        cls.server = PacsServer(serverDir)
        useStationAE(serverDir)
        cls.server.start()
        messages = [order(n, *o) for n, o in enumerate(ORDERS, 1)]
        messages.append(order(90, "ACC1003", "PAT3", "Smith^John", "", "CT", "20261203114500", "AA2", "A2",
                              control="XO"))
        messages.append(order(91, "ACC1006", "PAT6", "Gone^Soon", "", "CT", "20261206100000", "AA2", "A2"))
        messages.append(order(92, "ACC1006", "PAT6", "Gone^Soon", "", "CT", "20261206100000", "AA2", "A2",
                              control="CA"))
        path = os.path.join(cls.workdir, "orders.hl7")
        writeMessages(path, messages)
        cls.acks = acks(cls.server.sendHL7(path))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def everything(self, *keys):
        return worklistFind(self.server, ["AccessionNumber", "PatientName", "PatientID", "StudyInstanceUID",
                                          *keys],
                            sequenceKeys=["Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
                                          "ScheduledProcedureStepStartTime", "ScheduledStationName",
                                          "ScheduledProcedureStepID"])

    # -- HL7 intake ---------------------------------------------------------

    def test_everyOrderAcknowledgedInOrder(self):
        expected = [("AA", f"MSG{n}") for n in [1, 2, 3, 4, 5, 90, 91, 92]]
        self.assertEqual(self.acks, expected)

    def test_newUpdateCancel(self):
        matches = self.everything()
        self.assertEqual(accessions(matches), ["ACC1001", "ACC1002", "ACC1003", "ACC1004", "ACC1005"])
        updated = [m for m in matches if m.AccessionNumber == "ACC1003"][0]
        self.assertEqual(updated[SPS][0].ScheduledProcedureStepStartTime, "114500")

    def test_valuesFromTheDefaultMapping(self):
        match = [m for m in self.everything("PatientBirthDate", "PatientSex", "RequestingPhysician",
                                            "RequestedProcedureDescription", "RequestedProcedureID",
                                            "RequestedProcedurePriority")
                 if m.AccessionNumber == "ACC1001"][0]
        self.assertEqual(match.PatientID, "PAT1")
        self.assertEqual(match.PatientBirthDate, "19800101")
        self.assertEqual(match.PatientSex, "M")
        self.assertEqual(str(match.RequestingPhysician), "House^Gregory")
        self.assertEqual(match.RequestedProcedureID, "CT123")
        self.assertEqual(match.RequestedProcedureDescription, "CT HEAD")
        self.assertTrue(pydicom.uid.UID(match.StudyInstanceUID).is_valid)
        prefix = self.server.dgate("--get_param:UIDPrefix").stdout.strip()  # dicom.ini's root, as genuid's UIDs
        self.assertTrue(prefix and match.StudyInstanceUID.startswith(prefix + "."), match.StudyInstanceUID)
        item = match[SPS][0]
        self.assertEqual((item.Modality, item.ScheduledProcedureStepStartDate, item.ScheduledProcedureStepStartTime,
                          item.ScheduledStationAETitle, item.ScheduledStationName),
                         ("CT", "20261202", "093000", "AA2", "A2"))

    def test_anOMIOrderAtItsTQ1StartWithItsStudyUID(self):
        """An OMI^O23 (HL7 v2.5, IHE RAD-4), its start in TQ1-7 and OBR-7
        empty, is found by a query for its day and answers the Study Instance
        UID the order filler assigned in IPC-3 (the default dicom.sql)."""
        uid = generate_uid()
        message = orderMessage("OMI1", "ACC1101", "PAT11", "Omi^Test", start="", messageType="OMI^O23^OMI_O23")
        segments = message.split(b"\r")
        segments.insert(4, b"TQ1|1||||||20261208103000")  # after the ORC
        segments.append(f"IPC|ACC1101|RP1|{uid}|SPS1|CT".encode())
        path = os.path.join(self.workdir, "omi.hl7")
        writeMessages(path, [b"\r".join(segments)])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "OMI1")])
        writeMessages(path, [orderMessage("OMI2", "ACC1101", "PAT11", "Omi^Test", control="CA")])
        self.addCleanup(self.server.sendHL7, path)
        matches = worklistFind(self.server, ["AccessionNumber", "StudyInstanceUID"],
                               sequenceKeys=["ScheduledProcedureStepStartDate=20261208",
                                             "ScheduledProcedureStepStartTime"])
        self.assertEqual([(m.AccessionNumber, m.StudyInstanceUID, m[SPS][0].ScheduledProcedureStepStartTime)
                          for m in matches], [("ACC1101", uid, "103000")])

    def test_namesInLatin1AndUTF8(self):
        names = {m.AccessionNumber: (str(m.PatientName), m.SpecificCharacterSet) for m in self.everything()}
        self.assertEqual(names["ACC1001"], ("Müller^Hans", "ISO_IR 100"))
        self.assertEqual(names["ACC1004"], ("Ødegård^Åse", "ISO_IR 100"))
        self.assertEqual(names["ACC1002"], ("Дмитриев^Иван", "ISO_IR 192"))

    def test_malformedMessagesRefusedAndServiceKeepsRunning(self):
        path = os.path.join(self.workdir, "bad.hl7")
        with open(path, "wb") as f:
            f.write(b"MSH|^~\\&|RIS|HOSPITAL|PACS|HOSPITAL|20261202||ADT^A01|BAD1|P|2.3.1\nPID|1||X\n"
                    + order(93, "ACC9999", "PATX", "Nobody^Here", "", "CT", "20261202100000", "", "",
                            control="XO").replace(b"\r", b"\n") + b"\n"
                    + b"MSH|^~\\&|RIS|HOSPITAL|PACS|HOSPITAL|20261202||ORM^O01|BAD3|P|2.3.1||||||KLINGON\n"
                    + b"MSH|^~\\&|RIS|HOSPITAL|PACS|HOSPITAL|20261202||ORM^O01|BAD4|P|2.3.1||||||KLINGON\n"
                    + "PID|1||PATX||Müller^Hans\n".encode("latin-1")
                    + order(94, *ORDERS[4]).replace(b"\r", b"\n"))
        # KLINGON, a name pacs does not know, is read where its text is ASCII
        # (BAD3, then no order in it: AE), refused where it is not (BAD4: AR)
        self.assertEqual(acks(self.server.sendHL7(path)),
                         [("AR", "BAD1"), ("AE", "MSG93"), ("AE", "BAD3"), ("AR", "BAD4"), ("AA", "MSG94")])
        self.assertEqual(accessions(worklistFind(self.server, ["AccessionNumber=ACC1005"])), ["ACC1005"])
        self.assertEqual(accessions(worklistFind(self.server, ["AccessionNumber=ACC9999"])), [])
        self.assertIn("HL7 BAD1 rejected (AR)", self.server.log())
        self.assertEqual(self.server.echo().returncode, 0)

    def test_aSenderThatHalfClosesGetsItsAck(self):
        """As ``nc -N`` does: the orders, then shutdown(SHUT_WR), then read
        (an order and its cancel, leaving the other tests' worklist as it was)."""
        new, cancel = (order(number, "ACC1095", "PAT95", "Half^Closed", "", "CT", "20261207100000", "", "",
                             control=control) for number, control in ((95, "NW"), (96, "CA")))
        answer = sendFrames(self.server, new, cancel)
        self.assertEqual(acks(answer.decode()), [("AA", "MSG95"), ("AA", "MSG96")])
        self.assertIn("NW ACC1095: inserted", self.server.log())
        self.assertIn("CA ACC1095: deleted", self.server.log())

    def test_aLineFeedInAFreeTextFieldKeepsTheFieldsAfterIt(self):
        """A bare LF in OBR-13 (a line break typed into the RIS) of an order
        whose segments end in CR cut its OBR there: the item had no Modality
        (OBR-21) and no Requesting Physician (OBR-16), and was acknowledged
        AA."""
        new, cancel = (order(number, "ACC1070", "PAT70", "Line^Feed", "", "MR", "20261207120000", "", "",
                             control=control) for number, control in ((70, "NW"), (71, "CA")))
        new = new.replace(b"||||1234^House", b"|Claustrophobic.\nPlease sedate.|||1234^House")
        self.assertEqual(acks(sendFrames(self.server, new).decode()), [("AA", "MSG70")])
        self.addCleanup(sendFrames, self.server, cancel)
        [match] = worklistFind(self.server, ["AccessionNumber=ACC1070", "RequestingPhysician"],
                               sequenceKeys=["Modality"])
        self.assertEqual((str(match.RequestingPhysician), match[SPS][0].Modality), ("House^Gregory", "MR"))

    def test_aBatchInOneFrameIsAppliedAndAnsweredByAnAcknowledgmentBatch(self):
        """An HL7 batch (FHS, BHS, two orders, BTS, FTS) in one MLLP frame was
        refused whole ('MSA|AR|MSG60|the message does not start with an MSH
        segment'), neither order in the worklist, while the drop folder applied
        the same bytes."""
        orders = [order(number, f"ACC10{number}", f"PAT{number}", "Batch^Sent", "", "CT", "20261207130000", "", "")
                  for number in (60, 61)]
        batch = (b"FHS|^~\\&|RIS|HOSPITAL|||||||F60\rBHS|^~\\&|RIS|HOSPITAL|||||||B60\r" + b"\r".join(orders)
                 + b"\rBTS|2\rFTS|1\r")
        answer = sendFrames(self.server, batch)
        self.addCleanup(sendFrames, self.server, *(order(number + 2, f"ACC10{number}", f"PAT{number}", "Batch^Sent",
                                                         "", "CT", "20261207130000", "", "", control="CA")
                                                   for number in (60, 61)))
        self.assertEqual(answer.count(b"\x0b"), 1)
        self.assertEqual(acks(answer.decode()), [("AA", "MSG60"), ("AA", "MSG61")])
        self.assertRegex(answer.decode(), r"^\x0bFHS\|[^\r]*\|F60\rBHS\|[^\r]*\|B60\r(.*\r)*BTS\|2\rFTS\|1\r\x1c\r$")
        self.assertEqual(accessions(worklistFind(self.server, ["AccessionNumber=ACC106*"])), ["ACC1060", "ACC1061"])

    def test_aChangeKeepsWhatItLeavesOutAndACancelNeedsNoOBR(self):
        """HL7's null values over mllp_send: an XO that sends only the new
        start (PID-7, PID-8, OBR-16 empty) keeps the birth date, sex and
        physician; a cancel of PID and ORC alone (the accession number in
        ORC-3) removes the order."""
        new = order(97, "ACC1097", "PAT97", "Kept^Values", "", "CT", "20261208100000", "", "")
        change = ("MSH|^~\\&|RIS|HOSPITAL|PACS|HOSPITAL|20261202080000||ORM^O01|MSG98|P|2.3.1\r"
                  "PID|1||PAT97|PAT97|Kept^Values\rORC|XO|PACC1097|ACC1097||SC\r"
                  "OBR|1|PACC1097|ACC1097|CT123^CT HEAD|||20261208113000").encode()
        cancel = ("MSH|^~\\&|RIS|HOSPITAL|PACS|HOSPITAL|20261202080000||ORM^O01|MSG99|P|2.3.1\r"
                  "PID|1||PAT97|PAT97|Kept^Values\rORC|CA|PACC1097|ACC1097||CA").encode()
        path = os.path.join(self.workdir, "change.hl7")
        writeMessages(path, [new, change])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "MSG97"), ("AA", "MSG98")])
        [match] = worklistFind(self.server, ["AccessionNumber=ACC1097", "PatientBirthDate", "PatientSex",
                                             "RequestingPhysician"], sequenceKeys=["ScheduledProcedureStepStartTime"])
        self.assertEqual((match.PatientBirthDate, match.PatientSex, str(match.RequestingPhysician),
                          match[SPS][0].ScheduledProcedureStepStartTime), ("19800101", "M", "House^Gregory", "113000"))
        writeMessages(path, [cancel])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "MSG99")])
        self.assertEqual(worklistFind(self.server, ["AccessionNumber=ACC1097"]), [])

    def test_stationsOfARepeatedOBR18(self):
        """OBR-18 ``AE_X~AE_Y`` in a DT_MSTR column: a query for either
        station finds the order, answered with both (as wlmscpfs matches a
        multi-valued Scheduled Station AE Title)."""
        path = os.path.join(self.workdir, "stations.hl7")
        writeMessages(path, [order(96, "ACC1096", "PAT96", "Two^Stations", "", "CT", "20261209100000", "AE_X~AE_Y",
                                   "")])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "MSG96")])
        self.addCleanup(lambda: (writeMessages(path, [order(95, "ACC1096", "PAT96", "Two^Stations", "", "CT", "",
                                                            "", "", control="CA")]), self.server.sendHL7(path)))
        for station in ("AE_X", "AE_Y"):
            [match] = worklistFind(self.server, ["AccessionNumber"],
                                   sequenceKeys=[f"ScheduledStationAETitle={station}"])
            self.assertEqual((match.AccessionNumber, list(match[SPS][0].ScheduledStationAETitle)),
                             ("ACC1096", ["AE_X", "AE_Y"]), station)

    def test_anAbandonedFrameDoesNotLendItsPatient(self):
        """A sender gives up on one order halfway and sends another: only
        the second is answered and entered, with its own patient."""
        first = order(80, "ACC1080", "PAT80", "First^Abandoned", "", "CT", "20261209100000", "", "")
        second = order(81, "ACC1081", "PAT81", "Second^Complete", "", "CT", "20261209110000", "", "")
        cancel = order(82, "ACC1081", "PAT81", "Second^Complete", "", "CT", "20261209110000", "", "",
                       control="CA")
        with socket.create_connection(("127.0.0.1", self.server.hl7Port), timeout=30) as connection:
            connection.sendall(b"\x0b" + first[:first.index(b"ORC")] + frame(second))
            connection.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        self.assertEqual(acks(answer.decode()), [("AA", "MSG81")])
        matches = worklistFind(self.server, ["AccessionNumber=ACC108*", "PatientID", "PatientName"])
        self.assertEqual([(m.AccessionNumber, m.PatientID, str(m.PatientName)) for m in matches],
                         [("ACC1081", "PAT81", "Second^Complete")])
        self.assertIn("MLLP start byte 0x0B inside a frame", self.server.log())
        path = os.path.join(self.workdir, "cancel81.hl7")
        writeMessages(path, [cancel])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "MSG82")])

    # -- worklist C-FIND ----------------------------------------------------

    def test_matchingOnStationModalityDateTime(self):
        find = lambda *seq: accessions(worklistFind(self.server, ["AccessionNumber"], sequenceKeys=seq))
        self.assertEqual(find("ScheduledStationAETitle=AA2"), ["ACC1001", "ACC1003", "ACC1005"])
        self.assertEqual(find("Modality=MR"), ["ACC1002"])
        self.assertEqual(find("ScheduledProcedureStepStartDate=20261202-20261203"),
                         ["ACC1001", "ACC1002", "ACC1003"])
        self.assertEqual(find("ScheduledProcedureStepStartDate=20261204-"), ["ACC1004", "ACC1005"])
        self.assertEqual(find("ScheduledProcedureStepStartTime=1100-1300"), ["ACC1003", "ACC1004", "ACC1005"])
        self.assertEqual(find("Modality=CT", "ScheduledStationAETitle=AA2", "ScheduledProcedureStepStartDate=20261203"),
                         ["ACC1003"])

    def test_matchingOnPatientAndAccession(self):
        self.assertEqual(accessions(worklistFind(self.server, ["SpecificCharacterSet=ISO_IR 192",
                                                                  "AccessionNumber", "PatientName=mü*"])), ["ACC1001"])
        self.assertEqual(accessions(worklistFind(self.server, ["AccessionNumber", "PatientID=PAT4"])), ["ACC1004"])
        self.assertEqual(accessions(worklistFind(self.server, ["AccessionNumber=ACC1005"])), ["ACC1005"])
        self.assertEqual(worklistFind(self.server, ["AccessionNumber=NOPE"]), [])

    def test_onlyRequestedKeysWithTheSequenceStructure(self):
        matches = worklistFind(self.server, ["PatientName", "AccessionNumber=ACC1001", "PatientWeight"],
                               sequenceKeys=["Modality", "ScheduledProcedureStepLocation"])
        self.assertEqual(len(matches), 1)
        match = matches[0]
        self.assertEqual(set(match.dir()), {"SpecificCharacterSet", "PatientName", "AccessionNumber",
                                            "PatientWeight", SPS})
        self.assertEqual(len(match[SPS].value), 1)
        item = match[SPS][0]
        self.assertEqual(set(item.dir()), {"Modality", "ScheduledProcedureStepLocation"})
        self.assertEqual((item.Modality, item.ScheduledProcedureStepLocation), ("CT", ""))
        self.assertIn(match.PatientWeight, (None, ""))

    def test_dcmtkExampleQueries(self):
        """Every query of DCMTK's examples finds exactly the items it
        selects, with exactly the keys it asks, nested as it asks."""
        aa2 = ["ACC1001", "ACC1003", "ACC1005"]
        everything = ["ACC1001", "ACC1002", "ACC1003", "ACC1004", "ACC1005"]
        expected = {"wlistqry2": aa2, "wlistqry4": [], "wlistqry5": ["ACC1002", "ACC1004"], "wlistqry6": aa2,
                    "wlistqry7": aa2, "wlistqry8": aa2, "wlistqry9": aa2, "wlistqry12": ["ACC1002"]}
        names = {str(m.PatientName): m.AccessionNumber for m in self.everything()}
        dumps = sorted(glob.glob(os.path.join(EXAMPLES, "wlistqry*.dump")))
        self.assertEqual(len(dumps), 13)
        for dump in dumps:
            name = os.path.basename(dump)[:-len(".dump")]
            query = os.path.join(self.workdir, name + ".dcm")
            converted = dcmtk("dump2dcm", dump, query)
            self.assertEqual(converted.returncode, 0, converted.stderr)
            requested = pydicom.dcmread(query, force=True)
            matches = worklistFind(self.server, query=query)
            for match in matches:
                self.assertEqual(set(match.dir()), {e.keyword for e in requested} | {"SpecificCharacterSet"}, name)
                if SPS in requested and requested[SPS].value:
                    self.assertEqual(len(match[SPS].value), 1, name)
                    # an empty item asks for every attribute of the item (PS3.4 C.2.2.1.3)
                    self.assertEqual(set(match[SPS][0].dir()),
                                     {e.keyword for e in requested[SPS][0]} or SPS_ITEM, name)
            found = sorted(names[str(m.PatientName)] for m in matches)
            self.assertEqual(found, expected.get(name, everything), name)

    def test_emptySequenceKeyReturnsTheWholeItem(self):
        matches = worklistFind(self.server, ["AccessionNumber=ACC1001", SPS])
        self.assertEqual(len(matches), 1)
        item = matches[0][SPS][0]
        self.assertEqual((item.Modality, item.ScheduledStationAETitle, item.ScheduledProcedureStepStartDate),
                         ("CT", "AA2", "20261202"))


class NoWorklistTableTests(unittest.TestCase):
    """A dicom.sql from before Conquest 1.4.9 has no *WorkList* table: a
    worklist query finds nothing (it failed with a traceback), an HL7
    order is refused, and start-up says why."""

    def test_queriesFindNothingAndOrdersAreRefused(self):
        server = PacsServer(tempfile.mkdtemp(prefix="pacs-noworklist-"))
        path = os.path.join(server.workdir, "dicom.sql")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text[:text.index("\n*WorkList*")])
        self.addCleanup(server.stop)
        server.start()
        self.assertEqual(worklistFind(server, ["AccessionNumber", "PatientName"]), [])
        messages = os.path.join(server.workdir, "order.hl7")
        writeMessages(messages, [order(1, *ORDERS[0])])
        self.assertEqual([code for code, _ in acks(server.sendHL7(messages))], ["AE"])
        log = server.log()
        self.assertIn("dicom.sql has no *WorkList* table (as before Conquest 1.4.9)", log)
        self.assertNotIn("Traceback", log)


class WorklistFilesTests(unittest.TestCase):
    """The drop folder, ``dgate --loadhl7`` and ``dgate --initializetables:2``."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-hl7files-")
        self.server = PacsServer(os.path.join(self.workdir, "pacs"), ini={"HL7DropFolderInterval": "1"})
        self.server.start()
        self.addCleanup(self.server.stop)
        self.drop = os.path.join(self.server.workdir, "hl7")

    def test_dropFolder(self):
        good = os.path.join(self.workdir, "good.hl7")
        writeMessages(good, [order(1, *ORDERS[0]), order(2, *ORDERS[1])])
        bad = os.path.join(self.workdir, "bad.hl7")
        writeMessages(bad, [order(3, *ORDERS[2]), b"MSH|^~\\&|RIS|H|PACS|H|2026||ADT^A08|ADT1|P|2.3.1\rPID|1"])
        os.replace(good, os.path.join(self.drop, "good.hl7"))
        os.replace(bad, os.path.join(self.drop, "bad.hl7"))
        waitFor(lambda: os.path.exists(os.path.join(self.drop, "processed", "good.hl7"))
                and os.path.exists(os.path.join(self.drop, "failed", "bad.hl7")), message="the drop folder")
        self.assertEqual(sorted(os.listdir(self.drop)), ["failed", "processed"])
        self.assertEqual(accessions(worklistFind(self.server, ["AccessionNumber"])),
                         ["ACC1001", "ACC1002", "ACC1003"])
        log = self.server.log()
        self.assertIn("good.hl7 -> ", log)
        self.assertRegex(log, r"bad\.hl7 -> .*failed.*message 2: AR")

    def test_batchFile(self):
        """An HL7 batch file (FHS, BHS, messages, BTS, FTS) is processed,
        not failed."""
        batch = os.path.join(self.workdir, "batch.hl7")
        with open(batch, "wb") as f:
            f.write(b"FHS|^~\\&|RIS|HOSPITAL\r\nBHS|^~\\&|RIS|HOSPITAL\r\n")
            f.write(b"\r\n".join(order(n, *o).replace(b"\r", b"\r\n") for n, o in enumerate(ORDERS[:2], 1)))
            f.write(b"\r\nBTS|2\r\nFTS|1\r\n")
        os.replace(batch, os.path.join(self.drop, "batch.hl7"))
        waitFor(lambda: os.path.exists(os.path.join(self.drop, "processed", "batch.hl7")), message="the drop folder")
        self.assertEqual(accessions(worklistFind(self.server, ["AccessionNumber"])), ["ACC1001", "ACC1002"])
        self.assertNotIn("AR", self.server.log().split("batch.hl7 -> ")[-1].splitlines()[0])

    def test_dgateLoadHL7AndClearWorklist(self):
        path = os.path.join(self.workdir, "orders.hl7")
        writeMessages(path, [order(n, *o) for n, o in enumerate(ORDERS, 1)])
        result = self.server.dgate(f"--loadhl7:{path}")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout.count(": AA "), len(ORDERS))
        self.assertEqual(len(worklistFind(self.server, ["AccessionNumber"])), len(ORDERS))
        result = self.server.dgate("--initializetables:2")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(worklistFind(self.server, ["AccessionNumber"]), [])
        with sqlite3.connect(self.server.database) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM DICOMWorkList").fetchone()[0], 0)
        result = self.server.dgate("--loadhl7:/nonexistent.hl7")
        self.assertNotEqual(result.returncode, 0)


class WorkListModeTests(unittest.TestCase):
    """Images filled in from the worklist (mode 1) and refused without an
    order (mode 2), in the stored file and in the index."""

    def startServer(self, mode):
        server = PacsServer(os.path.join(self.workdir, f"pacs{mode}"), ini={"WorkListMode": str(mode)})
        server.start()
        self.addCleanup(server.stop)
        path = os.path.join(self.workdir, f"order{mode}.hl7")
        writeMessages(path, [orderMessage("WL1", "ACCWL1", "WLPAT1", "Wörklist^Patient", charset="8859/1",
                                          modality="CT")])
        self.assertEqual(acks(server.sendHL7(path)), [("AA", "WL1")])
        return server

    def image(self, name, accession, patientID="MODPAT", patientName="Modality^Typed"):
        ds = makeDataset(patientID, patientName, generate_uid(), generate_uid(), generate_uid(), 1, 1)
        ds.AccessionNumber = accession
        path = os.path.join(self.workdir, name)
        ds.save_as(path, enforce_file_format=True)
        return ds, path

    def storedFiles(self, server):
        return [pydicom.dcmread(p) for p in glob.glob(os.path.join(server.dataDir, "**", "*.dcm"), recursive=True)
                + glob.glob(os.path.join(server.dataDir, "**", "*.v2"), recursive=True)]

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-wlmode-")

    def test_mode1FillsInFromTheWorklist(self):
        server = self.startServer(1)
        worklistUID = worklistFind(server, ["AccessionNumber=ACCWL1", "StudyInstanceUID"])[0].StudyInstanceUID
        _, known = self.image("known.dcm", "ACCWL1")
        unknownDataset, unknown = self.image("unknown.dcm", "ACCNONE")
        result = server.store(known, unknown)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        stored = {str(ds.AccessionNumber): ds for ds in self.storedFiles(server)}
        self.assertEqual(set(stored), {"ACCWL1", "ACCNONE"})
        amended = stored["ACCWL1"]
        self.assertEqual((str(amended.PatientName), amended.PatientID, amended.StudyInstanceUID,
                          amended.SpecificCharacterSet),
                         ("Wörklist^Patient", "WLPAT1", worklistUID, "ISO_IR 100"))
        self.assertEqual(amended.PatientBirthDate, "19800101")
        self.assertEqual(amended.pixel_array.shape, (64, 64))
        self.assertEqual(str(stored["ACCNONE"].PatientName), "Modality^Typed")
        self.assertEqual(stored["ACCNONE"].StudyInstanceUID, unknownDataset.StudyInstanceUID)
        with sqlite3.connect(server.database) as db:
            self.assertEqual(sorted(db.execute("SELECT PatientID, PatientName FROM DICOMPatients")),
                             [("MODPAT", "Modality^Typed"), ("WLPAT1", "Wörklist^Patient")])
            self.assertEqual(db.execute("SELECT ImagePat FROM DICOMImages JOIN DICOMSeries ON "
                                        "DICOMImages.SeriesInstanceUID = DICOMSeries.SeriesInstanceUID "
                                        "WHERE StudyInstanceUID = ?", (worklistUID,)).fetchall(), [("WLPAT1",)])

    def test_mode2RefusesImagesWithoutAnOrder(self):
        server = self.startServer(2)
        _, known = self.image("known.dcm", "ACCWL1")
        _, unknown = self.image("unknown.dcm", "ACCNONE")
        refused = server.store(unknown, extra=("-v",))
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("Status: 0x110", refused.stderr)  # Processing Failure, Conquest's StorageFailedErrorCode
        self.assertIn("Accession Number 'ACCNONE' is not in the worklist", server.log())
        accepted = server.store(known)
        self.assertEqual(accepted.returncode, 0, accepted.stdout + accepted.stderr)
        self.assertEqual([str(ds.AccessionNumber) for ds in self.storedFiles(server)], ["ACCWL1"])
        with sqlite3.connect(server.database) as db:
            self.assertEqual(db.execute("SELECT PatientID FROM DICOMPatients").fetchall(), [("WLPAT1",)])

    def test_restartPicksUpAChangedMapping(self):
        server = self.startServer(1)
        server.stop()
        useStationAE(server.workdir)
        server.start()
        path = os.path.join(self.workdir, "station.hl7")
        writeMessages(path, [order(1, *ORDERS[0])])
        self.assertEqual(acks(server.sendHL7(path)), [("AA", "MSG1")])
        match = worklistFind(server, ["AccessionNumber=ACC1001"], sequenceKeys=["ScheduledStationAETitle"])
        self.assertEqual(match[0][SPS][0].ScheduledStationAETitle, "AA2")
