"""The Modality Worklist C-FIND SCP driven by our client over
twisted.test.iosim, on the shipped dicom.sql's worklist table in SQLite."""

import warnings

from pydicom.dataset import Dataset
from twisted.internet import defer, task
from twisted.logger import Logger, formatEvent
from twisted.trial import unittest

from pacscore.config.dicomsql import Column
from pacscore.db.worklistquery import WorklistQuery
from pacscore.dicom import commands
from pacscore.dicom.datasets import decodeDataset
from pacscore.dicom.find import BATCH
from pacscore.dicom.negotiation import AcceptorPolicy
from pacscore.dicom.protocol import DicomServerFactory
from pacscore.dicom.worklist import MODALITY_WORKLIST_FIND, WorklistFindService, sequenceMembers
from tests.pacscore.db.test_worklistquery import (
    ACCESSION, MODALITY, START_DATE, STUDY_UID, worklistDatabase, worklistRows)
from tests.pacscore.dicom.requests import EXPLICIT, IMPLICIT
from tests.pacscore.dicom.test_client import ClientTests

SPS = 0x00400100
BIRTH_DATE = 0x00100030


class SynchronousIndex:
    """``Index.runQuery`` (and ``queryForPeer``) run at once on a connection
    of ``engine``."""

    def __init__(self, engine):
        self.engine = engine

    def runQuery(self, fn, *args, **kw):
        with self.engine.connect() as connection:
            return defer.maybeDeferred(fn, connection, *args, **kw)

    queryForPeer = runQuery


def identifier(characterSet=None, step=None, **keys):
    """A worklist identifier: ``keys`` by keyword at the top level and, when
    ``step`` (a dict) is given, a Scheduled Procedure Step Sequence item."""
    ds = Dataset()
    if characterSet:
        ds.SpecificCharacterSet = characterSet
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    if step is not None:
        item = Dataset()
        for keyword, value in step.items():
            setattr(item, keyword, value)
        ds.ScheduledProcedureStepSequence = [item]
    return ds


class WorklistServiceTests(unittest.TestCase):

    connect = ClientTests.connect
    settle = ClientTests.settle

    def setUp(self):
        self.clock = task.Clock()
        self.events = []
        self.counters = {}
        self.server = self.serve()

    def serve(self, rows=None, markers=True, **options):
        """A server on the shipped dicom.sql's worklist (without its
        DT_STARTSEQUENCE/DT_ENDSEQUENCE lines unless ``markers``)."""
        engine, layout, table = worklistDatabase(self, rows)
        columns = [c for c in layout.worklist if markers or not c.isSequenceMarker]
        self.service = WorklistFindService(SynchronousIndex(engine), WorklistQuery(table, columns),
                                           columns, clock=self.clock, counters=self.counters, **options)
        self.service.log = Logger(observer=self.events.append)
        policy = AcceptorPolicy(aeTitles=["PACS"], abstractSyntaxes={MODALITY_WORKLIST_FIND: False},
                                transferSyntaxes={IMPLICIT, EXPLICIT})
        return DicomServerFactory(policy, {commands.C_FIND_RQ: self.service}, {}, self.clock)

    def find(self, request, syntax=IMPLICIT):
        """``(status, matches)`` of one C-FIND, the matches decoded and as bytes."""
        association = self.connect([(MODALITY_WORKLIST_FIND, [syntax])])
        matches = []
        status = self.settle(association.find(
            MODALITY_WORKLIST_FIND, request, lambda data, syntax: matches.append((decodeDataset(data, syntax),
                                                                                  data))))
        return status, [match for match, _ in matches], [data for _, data in matches]

    def logged(self):
        return [formatEvent(event) for event in self.events]

    def test_answersMimicTheRequest(self):
        """Exactly the requested keys, nested as requested: the SPS item's
        keys in its one item, a top-level Modality from the same column;
        keys without column or value empty, unknown sequences without items;
        a Query/Retrieve Level is ignored and not returned."""
        request = identifier(
            QueryRetrieveLevel="WORKLIST", PatientName="", PatientID="P1", AccessionNumber="",
            OtherPatientIDs="", Modality="", ReferencedStudySequence=[],
            step={"Modality": "MR", "ScheduledStationAETitle": "", "ScheduledProcedureStepStartDate": "",
                  "ScheduledPerformingPhysicianName": "", "ScheduledProtocolCodeSequence": []})
        status, [match], _ = self.find(request)
        self.assertEqual(status, 0)
        self.assertEqual(set(match.dir()), {
            "SpecificCharacterSet", "PatientName", "PatientID", "AccessionNumber", "OtherPatientIDs",
            "Modality", "ReferencedStudySequence", "ScheduledProcedureStepSequence"})
        self.assertEqual((match.PatientName, match.PatientID, match.AccessionNumber, match.Modality),
                         ("DOE^JOHN", "P1", "ACC2", "MR"))
        self.assertEqual(match.OtherPatientIDs, "")
        self.assertEqual(len(match.ReferencedStudySequence), 0)
        [item] = match.ScheduledProcedureStepSequence
        self.assertEqual(set(item.dir()), {
            "Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
            "ScheduledPerformingPhysicianName", "ScheduledProtocolCodeSequence"})
        self.assertEqual((item.Modality, item.ScheduledStationAETitle, item.ScheduledProcedureStepStartDate),
                         ("MR", "MR1", "20240102"))
        self.assertEqual(item.ScheduledPerformingPhysicianName, "")
        self.assertEqual(len(item.ScheduledProtocolCodeSequence), 0)

    def test_itemKeysMatch(self):
        """Keys inside the SPS item select, in start date/time order."""
        request = identifier(AccessionNumber="", step={"ScheduledStationAETitle": "CT*",
                                                       "ScheduledProcedureStepStartDate": "20240101-"})
        status, matches, _ = self.find(request, EXPLICIT)
        self.assertEqual(status, 0)
        self.assertEqual([m.AccessionNumber for m in matches], ["ACC1", "ACC3"])
        self.assertEqual([m.ScheduledProcedureStepSequence[0].ScheduledStationAETitle for m in matches],
                         ["CT1", "CT1"])

    def test_sequencesWithoutMarkers(self):
        """A dicom.sql without the (descriptive) sequence markers: the SPS
        item's keys still match, and come back in the item as requested."""
        self.server = self.serve(markers=False)
        request = identifier(AccessionNumber="", step={"Modality": "CT", "ScheduledStationAETitle": "CT1",
                                                       "ScheduledProcedureStepStartDate": "20240103",
                                                       "ScheduledProcedureStepID": ""})
        status, [match], _ = self.find(request)
        self.assertEqual(status, 0)
        self.assertEqual(match.AccessionNumber, "ACC3")
        [item] = match.ScheduledProcedureStepSequence
        self.assertEqual((item.Modality, item.ScheduledStationAETitle, item.ScheduledProcedureStepStartDate,
                          item.ScheduledProcedureStepID), ("CT", "CT1", "20240103", "SPS-ACC3"))
        self.assertEqual(len(item), 4)
        status, [match], _ = self.find(identifier(AccessionNumber="ACC3", ScheduledProcedureStepSequence=[]))
        self.assertEqual(len(match.ScheduledProcedureStepSequence), 0)  # nothing says what its item holds

    def test_keysNotMatchedAnswerFF01(self):
        """Keys with values but no column (in any item) are named in the log
        and make the matches 0xFF01."""
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator = "NO-SUCH-CODE", ""
        request = identifier(AccessionNumber="", PatientWeight="70", RequestedProcedureCodeSequence=[code],
                             step={"ScheduledProcedureStepStatus": "COMPLETED", "Modality": "CT"})
        status, matches, _ = self.find(request)
        self.assertEqual((status, len(matches)), (0, 3))
        self.assertEqual(len(matches[0].RequestedProcedureCodeSequence), 1)
        self.assertIn("Modality Worklist C-FIND: keys not matched, answered 0xFF01: (0010,1030), (0008,0100), "
                      "(0040,0020)", "\n".join(self.logged()))
        del self.events[:]
        self.find(identifier(AccessionNumber="", OtherPatientIDs="", step={"Modality": "CT"}))
        self.assertNotIn("0xFF01", "\n".join(self.logged()))

    def test_privateCreatorsAnsweredAsRequested(self):
        """A Private Creator, at the top level or in the SPS item, is no match
        key (Pending FF00, as in the Q/R C-FIND): the answer carries it with
        the request's value, in LO, so the elements of its block have their
        creator (PS3.5 7.8.1)."""
        request = identifier(AccessionNumber="ACC3", step={"Modality": ""})
        request.add_new(0x00090010, "LO", "GEMS_XX")
        request.add_new(0x00091001, "UN", b"")
        request.ScheduledProcedureStepSequence[0].add_new(0x00410010, "LO", "ACME 1.0")
        status, [match], _ = self.find(request, EXPLICIT)
        self.assertEqual(status, 0)
        self.assertEqual((match[0x00090010].VR, match[0x00090010].value), ("LO", "GEMS_XX"))
        self.assertFalse(match[0x00091001].value)
        [item] = match.ScheduledProcedureStepSequence
        self.assertEqual((item[0x00410010].VR, item[0x00410010].value, item.Modality), ("LO", "ACME 1.0", "CT"))
        self.assertNotIn("0xFF01", "\n".join(self.logged()))

    def test_aSequenceOfTwoItemsRefused(self):
        """A sequence key holds one item (PS3.4 C.2.2.2.6): an SPS of a CT
        and an MR item, or of two empty ones, is refused with A900 and a
        log line, as wlmscpfs refuses it, rather than answered for the CT
        item only."""
        for modalities in (("CT", "MR"), ("", "")):
            request = identifier(AccessionNumber="", step={"Modality": modalities[0]})
            second = Dataset()
            second.Modality = modalities[1]
            request.ScheduledProcedureStepSequence.append(second)
            self.assertEqual(self.find(request)[:2], (0xA900, []), modalities)
        self.assertIn("worklist C-FIND refused: (0040,0100) has 2 items, a sequence key holds one",
                      "\n".join(self.logged()))
        self.assertNotIn("worklistQueries", self.counters)

    def test_emptySequenceReturnsTheWholeItem(self):
        """An SPS requested without an item gets one with every dicom.sql
        column of the sequence, typed by the data dictionary."""
        status, [match], _ = self.find(identifier(AccessionNumber="ACC3", ScheduledProcedureStepSequence=[]))
        self.assertEqual(status, 0)
        [item] = match.ScheduledProcedureStepSequence
        self.assertEqual(len(item), 12)
        self.assertEqual((item.Modality, item.ScheduledStationAETitle, item.ScheduledProcedureStepStartDate,
                          item.ScheduledProcedureStepStartTime, item.ScheduledProcedureStepID,
                          item.ScheduledProcedureStepDescription),
                         ("CT", "CT1", "20240103", "090000", "SPS-ACC3", "CT exam"))
        self.assertEqual(item["ScheduledProcedureStepStartDate"].VR, "DA")
        self.assertEqual(item["ScheduledPerformingPhysicianName"].VR, "PN")

    def test_characterSetIsoIr100(self):
        """ISO_IR 100 whenever the answer's text fits Latin-1 (Conquest's
        WorkListReturnsISO_IR_100), ISO_IR 192 otherwise, also for text in
        the item; the request's Latin-1 key is decoded."""
        status, [latin], [data] = self.find(identifier("ISO_IR 100", PatientName="müller*"))
        self.assertEqual(status, 0)
        self.assertEqual((latin.SpecificCharacterSet, latin.PatientName), ("ISO_IR 100", "Müller^Hans"))
        self.assertIn("Müller^Hans".encode("latin-1"), data)
        _, [ascii], _ = self.find(identifier("ISO_IR 192", PatientName="DOE^JOHN", AccessionNumber="ACC1"))
        self.assertEqual(ascii.SpecificCharacterSet, "ISO_IR 100")
        _, [japanese], [data] = self.find(identifier("ISO_IR 192", PatientName="*太郎"))
        self.assertEqual((japanese.SpecificCharacterSet, japanese.PatientName), ("ISO_IR 192", "山田^太郎"))
        self.assertIn("山田^太郎".encode("utf-8"), data)
        _, [physician], [data] = self.find(identifier(
            AccessionNumber="ACC1", step={"ScheduledPerformingPhysicianName": ""}))
        self.assertEqual(physician.SpecificCharacterSet, "ISO_IR 192")
        self.assertEqual(physician.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName,
                         "鈴木^一郎")
        self.assertIn("鈴木^一郎".encode("utf-8"), data)

    def test_characterSetOfTheRequest(self):
        """Without WorkListReturnsISO_IR_100 the request's character set is
        kept when it can carry the answer, and an ASCII answer to a request
        without one has none (PS3.4 C.4.1.1.3.2)."""
        self.server = self.serve(returnsIsoIr100=False)
        _, [ascii], _ = self.find(identifier(PatientName="DOE^JOHN", AccessionNumber="ACC1"))
        self.assertNotIn("SpecificCharacterSet", ascii)
        _, [match], [data] = self.find(identifier("ISO_IR 192", PatientName="Müller*"))
        self.assertEqual((match.SpecificCharacterSet, match.PatientName), ("ISO_IR 192", "Müller^Hans"))
        self.assertIn("Müller^Hans".encode("utf-8"), data)
        _, [match], _ = self.find(identifier("ISO_IR 100", PatientID="P3", PatientName=""))
        self.assertEqual((match.SpecificCharacterSet, match.PatientName), ("ISO_IR 192", "山田^太郎"))

    def test_absurdKeysRefused(self):
        """More values in a key, or a longer value, than SQL should be
        given: 0xC000 and a log line before any query, no failure."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's about the length of a PN
            many = identifier(PatientID="\\".join(f"ID{i}" for i in range(1001)))
            long = identifier(step={"ScheduledStationAETitle": ""}, PatientName="*" + "a" * 50001 + "*")
            self.assertEqual([self.find(request)[:2] for request in (many, long)], [(0xC000, [])] * 2)
        self.assertEqual([(event["log_level"].name, event["error"].status) for event in self.events],
                         [("warn", 0xC000)] * 2)
        logged = "\n".join(self.logged())
        self.assertIn("worklist C-FIND refused: (0010,0020) has 1001 values, at most 500", logged)
        self.assertIn("worklist C-FIND refused: (0010,0010) has a value of 50003 characters, at most 1024", logged)
        self.assertNotIn("worklistQueries", self.counters)

    def test_malformedDatesAndTimesRefused(self):
        """A date or time key that is neither a value nor a range of them
        (``2026-12-02``, a three-part range, a time 2500): A900 and a log
        line naming the key, as wlmscpfs refuses it, not Success with
        nothing (or a range the request did not ask for) scheduled."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's, about the values
            requests = [identifier(AccessionNumber="", step={"ScheduledProcedureStepStartDate": value})
                        for value in ("20240101-20240102-20240103", "2024-01-02", "20241302")]
            requests.append(identifier(AccessionNumber="", step={"ScheduledProcedureStepStartTime": "2500"}))
            self.assertEqual([self.find(request)[:2] for request in requests], [(0xA900, [])] * 4)
        self.assertIn("worklist C-FIND refused: (0040,0002) must be a date (DA, YYYYMMDD) or a range of them, "
                      "not '2024-01-02'", "\n".join(self.logged()))
        self.assertNotIn("worklistQueries", self.counters)
        status, matches, _ = self.find(identifier(AccessionNumber="", step={
            "ScheduledProcedureStepStartDate": "-20240102", "ScheduledProcedureStepStartTime": "-"}))
        self.assertEqual((status, sorted(m.AccessionNumber for m in matches)), (0, ["ACC1", "ACC2", "ACC5"]))

    def test_emptyValueMatchingOfDatesAndTimes(self):
        """Two quotation marks in the SPS item's start date or time ask for
        Empty Value Matching (PS3.4 C.2.2.2.7), as in any other key: the
        orders without one, not an A900 for a date that is no date."""
        for step in ({"ScheduledProcedureStepStartDate": '""'}, {"ScheduledProcedureStepStartTime": '""'}):
            status, matches, _ = self.find(identifier(AccessionNumber="", step=step))
            self.assertEqual((status, [m.AccessionNumber for m in matches]), (0, ["ACC6"]))
        status, matches, _ = self.find(identifier(AccessionNumber='""', step={"ScheduledProcedureStepStartDate": ""}))
        self.assertEqual((status, matches), (0, []))

    def test_longUIDList(self):
        uids = [f"9.{i}" for i in range(1000)] + ["1.2.3.4", "1.2.3.6"]
        status, matches, _ = self.find(identifier(StudyInstanceUID=uids, AccessionNumber=""))
        self.assertEqual((status, [m.AccessionNumber for m in matches]), (0, ["ACC6", "ACC4"]))

    def test_answersInTheDictionaryVR(self):
        """Keys sent in other VRs (explicit VR) are answered in the data
        dictionary's; a private tag in the request's."""
        request = identifier(AccessionNumber="ACC4")
        for tag, vr in ((0x00100010, "DA"), (0x00100020, "US"), (BIRTH_DATE, "UI"), (0x00091010, "SH"),
                        (SPS, "LO")):
            request.add_new(tag, vr, None)
        status, [match], _ = self.find(request, EXPLICIT)
        self.assertEqual(status, 0)
        self.assertEqual([(match[tag].VR, match[tag].value) for tag in (0x00100020, BIRTH_DATE, 0x00091010)],
                         [("LO", "P3"), ("DA", ""), ("SH", "")])
        self.assertEqual((match["PatientName"].VR, match.PatientName), ("PN", "山田^太郎"))
        self.assertEqual(match[SPS].VR, "SQ")
        self.assertEqual(match.ScheduledProcedureStepSequence[0].ScheduledStationAETitle, "US1")

    def test_valuesTheirVRCannotHold(self):
        """A stored value its VR cannot encode (non-ASCII text in DA or UI)
        is answered empty; the other answers and values are intact."""
        bad = {"ACC1": {BIRTH_DATE: "19700101"}, "ACC3": {BIRTH_DATE: "１９６５１２３１", STUDY_UID: "1.2.3.３"}}
        rows = [{BIRTH_DATE: "", **row, **bad.get(row[ACCESSION], {})} for row in worklistRows()]
        self.server = self.serve(rows)
        request = identifier(AccessionNumber="", PatientName="", PatientBirthDate="", StudyInstanceUID="")
        status, matches, _ = self.find(request, EXPLICIT)
        self.assertEqual(status, 0)
        answers = {m.AccessionNumber: (m.PatientName, m.PatientBirthDate, m.StudyInstanceUID) for m in matches}
        self.assertEqual(answers["ACC1"], ("DOE^JOHN", "19700101", "1.2.3.1"))
        self.assertEqual(answers["ACC3"], ("Müller^Hans", "", ""))
        self.assertEqual(len(answers), 6)

    def test_countsAndLogs(self):
        status, matches, _ = self.find(identifier(step={"Modality": "CT"}))
        self.assertEqual((status, len(matches)), (0, 3))
        self.assertEqual(self.counters["worklistQueries"], 1)
        self.assertIn("Modality Worklist C-FIND: 3 found", "\n".join(self.logged()))

    def test_cancel(self):
        """A C-CANCEL stops the pending responses at the next one."""
        rows = [{**row, ACCESSION: f"A{n:04}", MODALITY: "CT", START_DATE: "20240101"}
                for n, row in enumerate(list(worklistRows()) * 50)]
        self.server = self.serve(rows)
        association = self.connect([(MODALITY_WORKLIST_FIND, [IMPLICIT])])
        matches = []
        d = association.find(MODALITY_WORKLIST_FIND, identifier(AccessionNumber=""),
                             lambda data, syntax: matches.append(data))
        self.pump.pump(advanceClock=False)  # the request in: the first BATCH answers go out
        association.cancelLast(MODALITY_WORKLIST_FIND)
        self.pump.pump(advanceClock=False)  # the answers in, the C-CANCEL out
        self.assertEqual(self.settle(d), 0xFE00)
        self.assertEqual(len(matches), BATCH)
        self.assertIn(f"C-FIND cancelled after {BATCH} answers of {len(rows)} found", "\n".join(self.logged()))

    def test_undecodableIdentifier(self):
        """0xC000 and a log line, also for damage inside an item."""
        damaged = (b"\x40\x00\x00\x01\x13\x00\x00\x00"  # SPS, 19 bytes
                   b"\xfe\xff\x00\xe0\x0b\x00\x00\x00"  # item, 11 bytes
                   b"\x28\x00\x10\x00\x03\x00\x00\x00\x01\x02\x03")  # Rows (US) in 3 bytes
        association = self.connect([(MODALITY_WORKLIST_FIND, [IMPLICIT])])
        status = self.settle(association.find(MODALITY_WORKLIST_FIND, damaged))
        self.assertEqual(status, 0xC000)
        self.assertIn("worklist C-FIND refused: undecodable data set", "\n".join(self.logged()))
        self.assertNotIn("worklistQueries", self.counters)

    def test_failedQuery(self):
        def fail(connection, keys):
            raise RuntimeError("database gone")
        self.service.query.find = fail
        association = self.connect([(MODALITY_WORKLIST_FIND, [IMPLICIT])])
        self.assertEqual(self.settle(association.find(MODALITY_WORKLIST_FIND, identifier(PatientID="P1"))),
                         0xC000)
        self.assertIn("Modality Worklist C-FIND failed", "\n".join(self.logged()))


class SequenceMembersTests(unittest.TestCase):

    def column(self, group, element, dicomType, name="x"):
        return Column(group, element, name, 16, "SQL_C_CHAR", dicomType)

    def test_nestedSequences(self):
        columns = [self.column(0x0010, 0x0020, "DT_STR"),
                   self.column(0x0040, 0x0100, "DT_STARTSEQUENCE"),
                   self.column(0x0008, 0x0060, "DT_STR"),
                   self.column(0x0040, 0x0008, "DT_STARTSEQUENCE"),
                   self.column(0x0008, 0x0100, "DT_STR"),
                   self.column(0x0040, 0x0008, "DT_ENDSEQUENCE"),
                   self.column(0x0040, 0x0002, "DT_DATE"),
                   self.column(0x0040, 0x0100, "DT_ENDSEQUENCE"),
                   self.column(0x0099, 0x0010, "DT_DATE")]
        self.assertEqual(sequenceMembers(columns), {
            SPS: ((0x00080060, "CS"), (0x00400008, "SQ"), (0x00400002, "DA")),
            0x00400008: ((0x00080100, "SH"),)})

    def test_unpairedMarkers(self):
        start = self.column(0x0040, 0x0100, "DT_STARTSEQUENCE")
        end = self.column(0x0040, 0x0100, "DT_ENDSEQUENCE")
        other = self.column(0x0040, 0x0008, "DT_ENDSEQUENCE")
        for columns in ([start], [end], [start, other, end]):
            self.assertRaises(ValueError, sequenceMembers, columns)
