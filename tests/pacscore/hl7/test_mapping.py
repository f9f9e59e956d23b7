"""Tests for pacscore.hl7.mapping: HL7 orders -> worklist rows by dicom.sql."""

import itertools
import re

from pydicom.uid import UID
from twisted.logger import Logger, formatEvent
from twisted.trial import unittest

from pacscore.config.dicomsql import Column, DatabaseLayout
from pacscore.hl7.mapping import OrderItem, WorklistMapping, personName
from pacscore.hl7.message import parseMessage
from pacscore.hl7.timestamps import localDateAndTime
from tests.pacscore.hl7.samples import PID, PV1, encoded, msh, obr, orc, orm, segment
from tests.timezones import inZone

REQ_PROC_ID = (0x0040, 0x1001)           # SH
PATIENT_NAME = (0x0010, 0x0010)          # PN
REQ_PHYSICIAN = (0x0032, 0x1032)         # PN
BIRTH_DATE = (0x0010, 0x0030)            # DA
PATIENT_SEX = (0x0010, 0x0040)           # CS
STUDY_UID = (0x0020, 0x000D)             # UI
PROC_COMMENTS = (0x0040, 0x1400)         # LT


def column(name, hl7, tag=REQ_PROC_ID, length=64, dicomType="DT_STR"):
    return Column(tag[0], tag[1], name, length, "SQL_C_DATE" if dicomType == "DT_DATE" else "SQL_C_CHAR",
                  dicomType, hl7)


def message(*segments, charset="8859/1"):
    return parseMessage(encoded("\r".join((msh(charset=charset),) + segments), charset))


def mapOne(col, *segments):
    """The value of ``col`` for the first item of a message made of
    ``segments`` (and an ORC when they hold no order)."""
    if not any(s.startswith(("ORC", "OBR")) for s in segments):
        segments += (orc(),)
    items = WorklistMapping([col]).items(message(*segments))
    return items[0].values[col.name]


def _studyUIDAndDescribed():
    """The values an order maps to by a Study Instance UID from IPC-3's
    first component, else a new one (1.2.3.1, 1.2.3.2 ...), and a
    description from OBR-4's first component, else the patient's name,
    given IPC-3 and OBR-4."""
    numbers = itertools.count(1)
    mapping = WorklistMapping([column("StudyInstanceUID", "IPC.3.0|*UI", tag=STUDY_UID, dicomType="DT_UI"),
                               column("Described", "OBR.4.0|PID.5")], newUID=lambda: f"1.2.3.{next(numbers)}")

    def mapped(ipc3, obr4):
        ipc = segment("IPC", {1: "ACC100", 2: "RP1", 3: ipc3, 4: "SPS1", 5: "CT"})
        return mapping.items(message(PID, orc(), obr(service=obr4), ipc))[0].values
    return mapped


class SourceTests(unittest.TestCase):

    def test_everySourceForm(self):
        ms = message(PID, PV1, orc(), obr(), segment("ZDS", {1: "1.2.276.0.7230010^RIS^Application^DICOM"}))
        cases = [
            ("PID.4", "P-0815"),
            ("PID.3", "4711^^^KLINIKUM^MR"),
            ("PID.3.0", "4711"),
            ("PID.3.3", "KLINIKUM"),
            ("PID.3.4", "MR"),
            ("PID.3.9", ""),
            ("PID.40", ""),
            ("PV1.3", "RAD^CT1^^KLINIKUM"),
            ("OBR.3", "ACC100"),
            ("OBR.4", "CT123^CT HEAD"),
            ("OBR.4.0", "CT123"),
            ("OBR.4.1", "CT HEAD"),
            ("OBR.7.DATE", "20261201"),
            ("OBR.7.TIME", "1030"),
            ("OBR.7", "202612011030"),
            ("ORC.1", "NW"),
            ("ORC.3", "FL100"),
            ("ZDS.1.0", "1.2.276.0.7230010"),
            ("NTE.3", ""),
            ("NTE.3.DATE", ""),
            (" obr.4.1 ", "CT HEAD"),
        ]
        for source, expected in cases:
            mapping = WorklistMapping([column("Value", source)])
            # the message has no NTE, and no PID-40: a change leaves those columns as they are
            absent = frozenset({"Value"}) if source.startswith("NTE") or source == "PID.40" else frozenset()
            self.assertEqual(mapping.items(ms), [OrderItem("NW", {"Value": expected}, absent)], source)

    def test_noSource(self):
        columns = [column("Dashes", "---"), column("Missing", None), column("Empty", ""),
                   column("-----", "---", tag=(0x0040, 0x0100), length=0, dicomType="DT_STARTSEQUENCE"),
                   column("-----", "---", tag=(0x0040, 0x0100), length=0, dicomType="DT_ENDSEQUENCE"),
                   column("Kept", "OBR.3")]
        mapping = WorklistMapping(columns)
        self.assertEqual(mapping.items(message(orc(), obr())), [OrderItem("NW", {"Kept": "ACC100"})])
        self.assertEqual(mapping.generatedColumns, frozenset())
        self.assertIsNone(mapping.accessionColumn)

    def test_malformedSources(self):
        for text in ["PID", "PID.", "PID.0", "PID.5.X", "PID.5.1.2", "*XX", "P.5", "PIDX.5", "PID.-1",
                     "OBR.7.DATES", "OBR 7", "5.PID", "---x"]:
            error = self.assertRaises(ValueError, WorklistMapping,
                                      [column("Good", "PID.5"), column("Broken", text)])
            self.assertIn("'Broken'", str(error), text)
            self.assertIn(repr(text), str(error), text)

    def test_alternatives(self):
        """Sources joined by | give the value of the first one the message
        sends: an ORM's OBR-7 or, when OBR-7 is empty, an OMI's TQ1-7 (a
        moment converted as OBR-7 is), the RIS's Study Instance UID in IPC-3
        or a new one."""
        numbers = itertools.count(1)
        columns = [column("StartDate", "OBR.7.DATE|TQ1.7.DATE", dicomType="DT_DATE"),
                   column("StartTime", "OBR.7.TIME | TQ1.7.TIME", dicomType="DT_TIME"),
                   column("StudyInstanceUID", "IPC.3|*UI", tag=STUDY_UID, dicomType="DT_UI"),
                   column("Station", "OBR.24|PV1.3.1")]
        mapping = WorklistMapping(columns, newUID=lambda: f"1.2.3.{next(numbers)}")
        self.assertEqual(mapping.generatedColumns, frozenset({"StudyInstanceUID"}))
        omi = message(PID, orc(), segment("TQ1", {1: "1", 7: "20261201080000+0000"}), obr(when="", station=""),
                      segment("IPC", {1: "ACC100", 2: "RP1", 3: "1.2.840.99.1", 4: "SPS1", 5: "CT"}))
        orm = message(PID, PV1, orc(), segment("TQ1", {1: "1", 7: "20261205120000"}), obr(when="202612011030"))
        inZone(self, "Europe/Berlin")
        self.assertEqual([item.values for item in mapping.items(omi)], [
            {"StartDate": "20261201", "StartTime": "090000", "StudyInstanceUID": "1.2.840.99.1", "Station": ""}])
        self.assertEqual([item.values for item in mapping.items(orm)], [
            {"StartDate": "20261201", "StartTime": "1030", "StudyInstanceUID": "1.2.3.1", "Station": "CTSTATION1"}])
        self.assertEqual(mapping.items(message(orc("XO"), obr(when="", station="")))[0].absent,
                         frozenset({"StartDate", "StartTime", "Station"}))

    def test_alternativeByItsComponent(self):
        """A source naming a component is sent when that component is, not
        when another of its field is: IPC-3 of ``^RIS`` (no identifier)
        gives a new Study Instance UID, not an empty one, and OBR-4 of
        ``^CT Head`` the patient's name; ``""`` there is sent (it clears;
        but a column generated last, never cleared, generates instead), and
        so is a field without the component when no other source is."""
        mapped = _studyUIDAndDescribed()
        self.assertEqual(mapped("^RIS", "^CT Head"), {"StudyInstanceUID": "1.2.3.1", "Described": "Müller^Hans^^^Dr"})
        self.assertEqual(mapped("1.2.840.99.2^RIS^1.2.3^ISO", "CT1^CT Head"),
                         {"StudyInstanceUID": "1.2.840.99.2", "Described": "CT1"})
        self.assertEqual(mapped('""^RIS', '""'), {"StudyInstanceUID": "1.2.3.2", "Described": ""})
        self.assertEqual(mapped("&1.2.840.99.3^RIS", "&sub^CT Head")["StudyInstanceUID"], "1.2.3.3",
                         "a component's first subcomponent")
        alone = WorklistMapping([column("Described", "OBR.4.0|PID.40")]).items(message(PID, orc(), obr(service="^CT")))
        self.assertEqual((alone[0].values, alone[0].absent), ({"Described": ""}, frozenset()))

    def test_generatedOnlyWhenNoValueIsSent(self):
        """An item says which of its values were generated (a change keeps
        the item's): the Study Instance UID of ``IPC.3.0|*UI`` when IPC-3
        sends none, never one the RIS sends."""
        mapping = WorklistMapping([column("StudyInstanceUID", "IPC.3.0|*UI", tag=STUDY_UID, dicomType="DT_UI"),
                                   column("Described", "OBR.4.0")], newUID=lambda: "1.2.3.1")

        def generated(*segments):
            return mapping.items(message(PID, orc("XO"), obr(), *segments))[0].generated
        ipc = {1: "ACC100", 2: "RP1", 4: "SPS1", 5: "CT"}
        self.assertEqual(generated(), frozenset({"StudyInstanceUID"}))
        self.assertEqual(generated(segment("IPC", {**ipc, 3: "^RIS"})), frozenset({"StudyInstanceUID"}))
        self.assertEqual(generated(segment("IPC", {**ipc, 3: "1.2.840.99999.1.2.3^RIS"})), frozenset())

    def test_alternativeByTheComponentOfTheRepetitionsRead(self):
        """A single-valued column reads a field's first repetition only, so
        a component a later one holds does not make its source sent:
        IPC-3 of ``^RIS~1.2.840.99.7^RIS`` gives a new Study Instance UID
        and OBR-4 of ``^CT Head~CT2^x`` the patient's name, not empty
        values; a multi-valued column reads every repetition, so one that
        holds the component is enough."""
        mapped = _studyUIDAndDescribed()
        self.assertEqual(mapped("^RIS~1.2.840.99.7^RIS", "^CT Head~CT2^x"),
                         {"StudyInstanceUID": "1.2.3.1", "Described": "Müller^Hans^^^Dr"})
        self.assertEqual(mapped("~1.2.840.99.7", "~CT2"), {"StudyInstanceUID": "1.2.3.2", "Described": "Müller^Hans^^^Dr"})
        self.assertEqual(mapped("1.2.840.99.8^RIS~^RIS", "CT1^CT Head~^x"),
                         {"StudyInstanceUID": "1.2.840.99.8", "Described": "CT1"})
        multi = WorklistMapping([column("Codes", "OBR.4.0|PID.5", dicomType="DT_MSTR")])
        self.assertEqual(multi.items(message(PID, orc(), obr(service="^CT Head~CT2^x")))[0].values, {"Codes": "CT2"})

    def test_malformedAlternatives(self):
        for text in ["OBR.7|", "|OBR.7", "OBR.7|---", "OBR.7||TQ1.7", "*UI|IPC.3", "OBR.7|PID"]:
            error = self.assertRaises(ValueError, WorklistMapping, [column("Broken", text)])
            self.assertIn(repr(text), str(error), text)

    def test_generated(self):
        numbers = itertools.count(1)
        columns = [column("AccessionNumber", "*AN", tag=(0x0008, 0x0050), length=16),
                   column("StudyInstanceUID", "*UI", tag=(0x0020, 0x000D), dicomType="DT_UI"),
                   column("PatientID", "PID.4")]
        mapping = WorklistMapping(columns, newAccessionNumber=lambda: f"AN{next(numbers)}",
                                  newUID=lambda: f"1.2.3.{next(numbers)}")
        self.assertEqual(mapping.generatedColumns, frozenset({"AccessionNumber", "StudyInstanceUID"}))
        self.assertEqual(mapping.accessionColumn, "AccessionNumber")
        items = mapping.items(message(PID, orc(), obr("X1"), obr("X2", setId="2")))
        self.assertEqual([item.values for item in items], [
            {"AccessionNumber": "AN1", "StudyInstanceUID": "1.2.3.2", "PatientID": "P-0815"},
            {"AccessionNumber": "AN3", "StudyInstanceUID": "1.2.3.4", "PatientID": "P-0815"},
        ])

    def test_defaultGenerators(self):
        columns = [column("AccessionNumber", "*AN", tag=(0x0008, 0x0050), length=16),
                   column("StudyInstanceUID", "*UI", tag=(0x0020, 0x000D), dicomType="DT_UI")]
        mapping = WorklistMapping(columns)
        items = mapping.items(message(orc(), *[obr(setId=str(i)) for i in range(1, 51)]))
        accessions = [item.values["AccessionNumber"] for item in items]
        uids = [item.values["StudyInstanceUID"] for item in items]
        self.assertEqual(len(set(accessions)), 50)
        self.assertTrue(all(re.fullmatch(r"\d{16}", a) for a in accessions), accessions)
        self.assertEqual(len(set(uids)), 50)
        self.assertTrue(all(UID(u).is_valid and len(u) <= 64 for u in uids), uids)


class ConversionTests(unittest.TestCase):

    def assertLeftEmpty(self, columns, timestamp):
        """OBR-7 ``timestamp`` gives the columns D and T no value, with one warning naming it."""
        logged = []
        self.patch(WorklistMapping, "log", Logger(observer=logged.append))
        [item] = WorklistMapping(columns).items(message(orc(), obr(when=timestamp)))
        self.assertEqual((item.values["D"], item.values["T"]), ("", ""), timestamp)
        warnings = [formatEvent(event) for event in logged if event["log_level"].name == "warn"]
        self.assertEqual(warnings, [f"HL7 MSG00001: D, T left empty: OBR.7 {timestamp!r} is no valid date or time"])

    def mappedStart(self, start, columns=None):
        """The values of ``columns`` (by default D and T, a DT_DATE and a
        DT_TIME column of ORC.7.3, the start of ORC-7's quantity/timing) for
        an order whose ORC-7 and OBR-7 start at ``start``, and the warnings
        logged."""
        columns = columns or [column("D", "ORC.7.3", dicomType="DT_DATE"),
                              column("T", "ORC.7.3", dicomType="DT_TIME")]
        logged = []
        self.patch(WorklistMapping, "log", Logger(observer=logged.append))
        tq = segment("ORC", {1: "NW", 2: "PL9", 3: "ACCIHE", 5: "SC", 7: f"1^once^^{start}^^R"})
        [item] = WorklistMapping(columns).items(message(tq, obr(when=start)))
        return ([item.values[c.name] for c in columns],
                [formatEvent(event) for event in logged if event["log_level"].name == "warn"])

    def test_repetitionsOfAMultiValuedColumn(self):
        """A DT_MSTR column (a Scheduled Station AE Title of OBR-18
        ``AE_X~AE_Y``) holds every repetition, joined by ``\\`` as DICOM's
        values are (empty ones left out, a backslash sent in one made
        ``/``); any other column the first repetition only."""
        stations = segment("OBR", {1: "1", 3: "ACC100", 18: "AE_X~~AE_Y ~A\\E\\Z"})
        multi = column("ScheduledAE", "OBR.18", tag=(0x0040, 0x0001), dicomType="DT_MSTR")
        self.assertEqual(mapOne(multi, stations), "AE_X\\AE_Y\\A/Z")
        self.assertEqual(mapOne(column("ScheduledAE", "OBR.18", tag=(0x0040, 0x0001)), stations), "AE_X")
        names = column("Physicians", "OBR.16", tag=REQ_PHYSICIAN, dicomType="DT_MSTR")
        self.assertEqual(mapOne(names, segment("OBR", {1: "1", 3: "A", 16: "1^Welby^Marcus~2^House^Gregory"})),
                         "Welby^Marcus\\House^Gregory")

    def test_repetitionsThatDoNotFitAreDropped(self):
        """A DT_MSTR column too short for every repetition keeps those that
        fit whole, never part of one (``CT_SCANNER_01\\MR`` would be a
        station of its own), and logs the ones dropped; a first one that
        does not fit alone is cut as any value is."""
        events = []
        self.patch(WorklistMapping, "log", Logger(observer=events.append))
        stations = column("ScheduledAE", "OBR.18", tag=(0x0040, 0x0001), length=16, dicomType="DT_MSTR")
        sent = segment("OBR", {1: "1", 3: "ACC100", 18: "CT_SCANNER_01~MR_SCANNER_02~US1"})
        self.assertEqual(mapOne(stations, sent), "CT_SCANNER_01")
        [dropped] = [e for e in events if e["log_level"].name == "warn"]
        self.assertIn("DICOMWorkList.ScheduledAE holds 16 characters: the values 'MR_SCANNER_02', 'US1' "
                      "of OBR.18 dropped, 'CT_SCANNER_01' kept", formatEvent(dropped))
        wide = column("ScheduledAE", "OBR.18", tag=(0x0040, 0x0001), length=30, dicomType="DT_MSTR")
        self.assertEqual(mapOne(wide, sent), "CT_SCANNER_01\\MR_SCANNER_02")
        narrow = column("ScheduledAE", "OBR.18", tag=(0x0040, 0x0001), length=8, dicomType="DT_MSTR")
        self.assertEqual(mapOne(narrow, sent), "CT_SCANN")

    def test_dateAndTimeParts(self):
        """A timestamp's date and time as precise as sent, a fraction cut to
        6 digits, one with an offset from UTC in the server's local time (UTC here)."""
        inZone(self, "UTC")
        cases = [
            ("202612011030", "20261201", "1030"),
            ("20261201103045", "20261201", "103045"),
            ("20261201103045.1234+0100", "20261201", "093045.1234"),
            ("20261201103045.12345678", "20261201", "103045.123456"),
            ("20261201213045-0500", "20261202", "023045"),
            ("2026120110", "20261201", "10"),
            ("20261201+0100", "20261201", ""),
            ("20261201", "20261201", ""),
            ("202612", None, None),
            ("", "", ""),
            ("2026-12-01T10:30", None, None),
        ]
        moment = [column("D", "OBR.7.DATE"), column("T", "OBR.7.TIME")]
        for timestamp, date, time in cases:
            self.assertEqual(localDateAndTime(timestamp), None if date is None else (date, time), timestamp)
            [item] = WorklistMapping(moment).items(message(orc(), obr(when=timestamp)))
            self.assertEqual((item.values["D"], item.values["T"]), (date or "", time or ""), timestamp)

    def test_offsetConvertedToLocalTime(self):
        """A timestamp with an offset from UTC is stored in the server's
        local time (DICOM's DA and TM without an offset are local), its
        date too: 01:00 UTC on 1 March is 21:30 on 29 February in St
        John's (-0330); an hour's precision gets the minutes it then has."""
        inZone(self, "America/St_Johns")
        for timestamp, local in (("20240301010000+0000", ("20240229", "213000")),
                                 ("2024030110+0100", ("20240301", "0530")),
                                 ("20240301153000.25-0500", ("20240301", "170000.25")),
                                 ("20240301235960+0000", ("20240301", "202960")),
                                 ("20240301+0100", ("20240301", "")),
                                 ("20240301103000", ("20240301", "103000"))):
            self.assertEqual(localDateAndTime(timestamp), local, timestamp)
        columns = [column("D", "OBR.7.DATE", dicomType="DT_DATE"), column("T", "OBR.7.TIME", dicomType="DT_TIME")]
        [item] = WorklistMapping(columns).items(message(orc(), obr(when="20240301010000+0000")))
        self.assertEqual((item.values["D"], item.values["T"]), ("20240229", "213000"))

    def test_onlyAMomentIsConverted(self):
        """Only a field that gives both a date (SEQ.N.DATE) and a time
        (SEQ.N.TIME), a moment such as OBR-7's, is converted to the
        server's local time; a date alone keeps the calendar date as
        written: PID-7's birth at 23:30 in New York is still on 1 January
        in Amsterdam, whether the column takes PID.7 or PID.7.DATE."""
        inZone(self, "Europe/Amsterdam")
        birth = segment("PID", {1: "1", 3: "PB34", 5: "Pat^Birth34", 7: "19800101233000-0500", 8: "M"})
        columns = [column("Birth", "PID.7", tag=BIRTH_DATE, dicomType="DT_DATE"),
                   column("BirthDay", "PID.7.DATE", tag=BIRTH_DATE, dicomType="DT_DATE"),
                   column("D", "OBR.7.DATE", dicomType="DT_DATE"), column("T", "OBR.7.TIME", dicomType="DT_TIME")]
        [item] = WorklistMapping(columns).items(message(birth, orc(), obr(when="19800101233000-0500")))
        self.assertEqual([item.values[name] for name in ("Birth", "BirthDay", "D", "T")],
                         ["19800101", "19800101", "19800102", "053000"])

    def test_aTimeColumnFedByAComponentOrAFieldGetsTheTime(self):
        """A DT_TIME column whose source is a component (ORC.7.3, the start
        of IHE RAD-4's v2.3 quantity/timing) or a whole field stored the
        whole timestamp, an invalid TM ('20240305083000') that time-range
        queries missed.  It now gets the time part, as its DT_DATE column
        gets the date part, converted from UTC with it (a moment); a
        timestamp that is none leaves both empty, with the log line; an HL7
        TM is taken as sent."""
        inZone(self, "Europe/Berlin")
        self.assertEqual(self.mappedStart("20240305083000"), (["20240305", "083000"], []))
        self.assertEqual(self.mappedStart("20240305233000+0000"), (["20240306", "003000"], []))
        self.assertEqual(self.mappedStart("junk"), (["", ""], ["HL7 MSG00001: D, T left empty: ORC.7 'junk' is no "
                                                               "valid date or time"]))
        self.assertEqual(self.mappedStart("202403050830", [column("T", "OBR.7", dicomType="DT_TIME")]), (["0830"], []))
        self.assertEqual(self.mappedStart("0830", [column("T", "OBR.7", dicomType="DT_TIME")]), (["0830"], []))

    def test_aTimestampWithoutADayLeavesTheTimeOfAMomentEmpty(self):
        """A timestamp of reduced precision (``202403``, ``2024``) in a
        component feeding both a DT_DATE and a DT_TIME column (a moment) was
        stored as a time of day (20:24:03), being a valid TM too, while the
        date was left empty.  As through ``.DATE`` and ``.TIME``, both are
        now left empty with one line; a TM alone in a DT_TIME column is
        still taken as sent."""
        for start in ("202403", "2024"):
            self.assertEqual(self.mappedStart(start), (["", ""], [f"HL7 MSG00001: D, T left empty: ORC.7 '{start}' "
                                                                  "has no day (an HL7 date of reduced precision, "
                                                                  "which a DICOM date cannot hold)"]))
        self.assertEqual(self.mappedStart("202403", [column("T", "ORC.7.3", dicomType="DT_TIME")]), (["202403"], []))

    def test_timestampsAtTheCalendarsEdge(self):
        """A moment the offset conversion would take beyond the calendar
        (9999-12-31 23:00 -0500 is in the year 10000) is no valid one: its
        date and time are left empty, with one warning, the order kept."""
        inZone(self, "Europe/Amsterdam")
        columns = [column("D", "OBR.7.DATE", dicomType="DT_DATE"), column("T", "OBR.7.TIME", dicomType="DT_TIME")]
        for timestamp in ("99991231230000-0500", "00010101000000+0100"):
            self.assertIsNone(localDateAndTime(timestamp), timestamp)
            self.assertLeftEmpty(columns, timestamp)

    def test_aConvertedYearBeforeOneThousandHasFourDigits(self):
        """A moment of the year 500 converted to local time gives an eight-digit
        date (strftime's %Y gave 5000101, no valid DA)."""
        inZone(self, "Europe/Amsterdam")
        date, _ = localDateAndTime("05000101120000-0500")
        self.assertEqual(date, "05000101")

    def test_malformedTimestampsLeftEmpty(self):
        """A timestamp that is no whole HL7 timestamp of a real date and
        time gives neither a date nor a time (not a time without its date,
        nor the digits before a letter), with one log line naming it."""
        columns = [column("D", "OBR.7.DATE", dicomType="DT_DATE"), column("T", "OBR.7.TIME", dicomType="DT_TIME")]
        for timestamp in ("20240301T1030", "20240301 1030", "2024030110300", "20230229100000", "20240301250000",
                          "202403011030.5"):
            self.assertLeftEmpty(columns, timestamp)

    def test_invalidDatesAndTimesLeftEmpty(self):
        """A date or time that is no real one is left empty (with a log
        line), not stored as an invalid DA or TM."""
        cases = [
            ("00000000", "", ""),
            ("202613451099", "", ""),
            ("20260230", "", ""),
            ("202612011099", "", ""),
            ("2026120124", "", ""),
            ("20261201236000", "", ""),
            ("20261201235960.5", "20261201", "235960.5"),
            ("20240229000000", "20240229", "000000"),
        ]
        for timestamp, date, time in cases:
            self.assertEqual(mapOne(column("D", "OBR.7.DATE"), obr(when=timestamp)), date, timestamp)
            self.assertEqual(mapOne(column("T", "OBR.7.TIME"), obr(when=timestamp)), time, timestamp)
        birthDate = column("PatientBirthDate", "PID.7", tag=BIRTH_DATE, length=8, dicomType="DT_DATE")
        logged = []
        self.patch(WorklistMapping, "log", Logger(observer=logged.append))
        self.assertEqual(mapOne(birthDate, segment("PID", {7: "00000000"})), "")
        self.assertIn("HL7 MSG00001: PatientBirthDate left empty: PID.7 '00000000' is no valid date or time",
                      [formatEvent(event) for event in logged])

    def test_reducedPrecisionDatesLeftEmptySayingSo(self):
        """A valid HL7 date of only a year, or a year and month (a birth
        date whose day is unknown), is left empty, as a DICOM date cannot
        hold it, and the log line says that rather than calling it invalid;
        a month that is none is still no valid date."""
        birthDate = column("PatientBirthDate", "PID.7", tag=BIRTH_DATE, length=8, dicomType="DT_DATE")
        logged = []
        self.patch(WorklistMapping, "log", Logger(observer=logged.append))
        for sent in ("198001", "1980", "198012+0100", "198013"):
            self.assertEqual(mapOne(birthDate, segment("PID", {7: sent})), "", sent)
        self.assertEqual([formatEvent(event) for event in logged if "left empty" in formatEvent(event)], [
            f"HL7 MSG00001: PatientBirthDate left empty: PID.7 {sent!r} has no day (an HL7 date of reduced precision, "
            "which a DICOM date cannot hold)" for sent in ("198001", "1980", "198012+0100")] + [
            "HL7 MSG00001: PatientBirthDate left empty: PID.7 '198013' is no valid date or time"])

    def test_dateOfTheFirstComponent(self):
        """A TS with a degree of precision (v2.3 TS ``value^precision``) still gives its date."""
        self.assertEqual(mapOne(column("D", "OBR.7.DATE"), obr(when="202612011030^M")), "20261201")
        self.assertEqual(mapOne(column("T", "OBR.7.TIME"), obr(when="202612011030^M")), "1030")

    def test_dateColumnKeepsTheDate(self):
        col = column("PatientBirthDate", "PID.7", tag=BIRTH_DATE, length=8, dicomType="DT_DATE")
        self.assertEqual(mapOne(col, PID), "19800101")
        self.assertEqual(mapOne(col, segment("PID", {7: "1980"})), "")
        self.assertEqual(mapOne(column("PatientBirthDate", "PID.7.0", tag=BIRTH_DATE, dicomType="DT_DATE"),
                                PID), "19800101")
        self.assertEqual(mapOne(column("Text", "PID.7"), PID), "198001011230")

    def test_personNames(self):
        cases = [
            ("Müller^Hans^^^Dr", "Müller^Hans^^Dr"),
            ("Smith^John^Q^Jr^Mr^PhD", "Smith^John^Q^Mr^Jr"),
            ("van&der Berg^Jan", "van^Jan"),
            ("Doe", "Doe"),
            ("Doe^^^^", "Doe"),
            ("Doe^John~Alias^Bob", "Doe^John"),
            ("^^^^Dr", "^^^Dr"),
            ("", ""),
            ('""', ""),
        ]
        name = column("PatientName", "PID.5", tag=PATIENT_NAME)
        for xpn, pn in cases:
            self.assertEqual(mapOne(name, segment("PID", {5: xpn})), pn, xpn)

    def test_personNameHelper(self):
        self.assertEqual(personName(["Doe", "John", "M", "III", "Sir", "MD"]), "Doe^John^M^Sir^III")
        self.assertEqual(personName([]), "")

    def test_personNameFromXCN(self):
        """An XCN (OBR-16, PV1-8, ...) carries an ID number before the name."""
        physician = column("ReqPhysician", "OBR.16", tag=REQ_PHYSICIAN)
        self.assertEqual(mapOne(physician, orc(), obr()), "Welby^Marcus^^Dr")
        self.assertEqual(mapOne(column("ReqPhysician", "PV1.8", tag=REQ_PHYSICIAN), PV1), "Haus^Gregory^^Dr")
        self.assertEqual(mapOne(column("Text", "OBR.16"), orc(), obr()), "1234^Welby^Marcus^^^Dr")

    def test_personNameComponentIsNotConverted(self):
        self.assertEqual(mapOne(column("PatientName", "PID.5.1", tag=PATIENT_NAME), PID), "Hans")

    def test_truncationLogged(self):
        """A value cut to a narrowed column is logged as the index logs its
        cuts: a warning naming the column, its length and the value, then
        debug lines; never a warning for the columns AllowTruncate names."""
        events = []
        self.patch(WorklistMapping, "log", Logger(observer=events.append))
        name = column("PatientName", "PID.5", tag=PATIENT_NAME, length=6)
        for allowTruncate, first in ((frozenset(), "warn"), (frozenset({"patientname"}), "debug")):
            mapping = WorklistMapping([name], allowTruncate=allowTruncate)
            del events[:]
            for _ in range(2):
                [item] = mapping.items(message(PID, orc(), obr()))
                self.assertEqual(item.values["PatientName"], "Müller")
            cuts = [e for e in events if "truncated" in e["log_format"]]
            self.assertEqual([e["log_level"].name for e in cuts], [first, "debug"])
        self.assertEqual(formatEvent(cuts[0]).split(" (")[0],
                         "DICOMWorkList.PatientName truncated to 6 characters: 'Müller^Hans^^Dr'")

    def test_truncation(self):
        long = "CT123^" + "A" * 40
        self.assertEqual(mapOne(column("Desc", "OBR.4.1", length=16), obr(service=long)), "A" * 16)
        self.assertEqual(mapOne(column("Desc", "OBR.4", length=0), obr(service=long)), long)
        self.assertEqual(mapOne(column("Time", "OBR.7.TIME", length=4), obr(when="20261201103045.12")),
                         "1030")
        self.assertEqual(mapOne(column("Date", "OBR.7.DATE", length=6), obr()), "202612")
        # A space the cut leaves at the end is dropped: a C-FIND for the value as answered finds it.
        self.assertEqual(mapOne(column("SchedPSID", "OBR.4", length=16), obr(service="ABCDEFG^ABCDEFG procedure")),
                         "ABCDEFG^ABCDEFG")

    def test_personNameTruncation(self):
        name = column("PatientName", "PID.5", tag=PATIENT_NAME, length=0)
        self.assertEqual(mapOne(name, segment("PID", {5: "F" * 70 + "^Given"})), "F" * 64)
        self.assertEqual(mapOne(name, segment("PID", {5: "Family^" + "G" * 70})), ("Family^" + "G" * 70)[:64])
        short = column("PatientName", "PID.5", tag=PATIENT_NAME, length=10)
        self.assertEqual(mapOne(short, segment("PID", {5: "Abcdefgh^Ijkl"})), "Abcdefgh^I")
        self.assertEqual(mapOne(short, segment("PID", {5: "Abcdefghi^Jk"})), "Abcdefghi")

    def test_personNameCutLogged(self):
        """A name cut to the 64 characters of a PN group is logged as a cut
        to the column is, whatever the column's length."""
        events = []
        self.patch(WorklistMapping, "log", Logger(observer=events.append))
        for length, sent, stored in ((64, "SHORTISH^" + "Z" * 100, ("SHORTISH^" + "Z" * 100)[:64]),
                                     (0, "F" * 70 + "^Given", "F" * 64),
                                     (200, "Family^" + "G" * 70, ("Family^" + "G" * 70)[:64])):
            del events[:]
            name = column("PatientName", "PID.5", tag=PATIENT_NAME, length=length)
            [item] = WorklistMapping([name]).items(message(segment("PID", {5: sent}), orc(), obr()))
            self.assertEqual(item.values["PatientName"], stored)
            [cut] = [e for e in events if "truncated" in e["log_format"]]
            self.assertEqual(formatEvent(cut).split(" (")[0],
                             f"DICOMWorkList.PatientName truncated to 64 characters: {sent[:64]!r}...")
        del events[:]
        self.assertEqual(mapOne(column("PatientName", "PID.5", tag=PATIENT_NAME), PID), "Müller^Hans^^Dr")
        self.assertEqual([e for e in events if "truncated" in e["log_format"]], [])

    def test_escapes(self):
        service = "CT1^Head \\T\\ neck \\X41\\"
        self.assertEqual(mapOne(column("Desc", "OBR.4.1"), obr(service=service)), "Head & neck A")
        self.assertEqual(mapOne(column("Desc", "OBR.4"), obr(service="CT\\F\\1^Head")), "CT|1^Head")
        self.assertEqual(mapOne(column("PatientName", "PID.5", tag=PATIENT_NAME),
                                segment("PID", {5: "Ruiz^Se\\XE1\\n"})), "Ruiz^Seán")

    def test_escapedDelimitersInPersonNames(self):
        """An escaped ^ (or a =) in a name's component is no PN delimiter: a space."""
        name = column("PatientName", "PID.5", tag=PATIENT_NAME)
        self.assertEqual(mapOne(name, segment("PID", {5: "Smith\\S\\Jones^Ann\\T\\Bea"})), "Smith Jones^Ann&Bea")
        self.assertEqual(mapOne(name, segment("PID", {5: "A=B^C"})), "A B^C")
        family = column("PatientName", "PID.5.0", tag=PATIENT_NAME)
        self.assertEqual(mapOne(family, segment("PID", {5: "Smith\\S\\Jones^Ann"})), "Smith Jones")
        self.assertEqual(mapOne(column("Text", "PID.5.0"), segment("PID", {5: "Smith\\S\\Jones^Ann"})),
                         "Smith^Jones")

    def test_backslashAndControlCharactersOnlyInText(self):
        """A backslash (DICOM's value delimiter) becomes / and an escaped line
        break or other control character a space, except in LT, ST and UT."""
        service = "CT1^CT\\E\\MR\\.br\\axial\\X0D\\\\X0A\\left\\X09\\right"
        self.assertEqual(mapOne(column("Desc", "OBR.4.1"), obr(service=service)), "CT/MR axial left right")
        self.assertEqual(mapOne(column("PatientName", "PID.5", tag=PATIENT_NAME),
                                segment("PID", {5: "Smith\\E\\Jones^Ann\\.br\\Marie"})), "Smith/Jones^Ann Marie")
        comments = column("Comments", "OBR.4.1", tag=PROC_COMMENTS, length=0)
        self.assertEqual(mapOne(comments, obr(service=service)), "CT\\MR\r\naxial\r\nleft\tright")

    def test_skippedLinesAreOneSpaceOutsideText(self):
        """``\\.sp 9\\`` (end the line, skip nine) gave nine spaces in a column
        that is not LT, ST or UT: OBR-4 ``CT1^CT HEAD\\.sp 9\\WITH CONTRAST``
        was stored in a 16-character ReqProcDescription as ``CT HEAD``, its
        rest pushed out.  A run of line breaks is one space there, as README
        says; LT, ST and UT keep them all."""
        service = "CT1^CT HEAD\\.sp 9\\WITH CONTRAST"
        self.assertEqual(mapOne(column("Desc", "OBR.4.1", length=16), obr(service=service)), "CT HEAD WITH CON")
        self.assertEqual(mapOne(column("Desc", "OBR.4.1"), obr(service="CT1^A\\.br\\\\.sp 2\\B\\.ce\\C")), "A B C")
        comments = column("Comments", "OBR.4.1", tag=PROC_COMMENTS, length=0)
        self.assertEqual(mapOne(comments, obr(service=service)), "CT HEAD" + "\r\n" * 9 + "WITH CONTRAST")

    def test_c1ControlCharactersToo(self):
        """The C1 control characters (U+0080 to U+009F: UTF-8 text made of
        Latin-1 read Windows-1252, a \\X81\\) were kept in names and
        descriptions: they are control characters, a space as the others."""
        name = column("PatientName", "PID.5", tag=PATIENT_NAME)
        [item] = WorklistMapping([name, column("Desc", "OBR.4.1")]).items(message(
            segment("PID", {5: "O\u0092Brien^Zo\u0085e"}), orc(), obr(service="CT1^Knie\u0096links"),
            charset="UNICODE UTF-8"))
        self.assertEqual(item.values, {"PatientName": "O Brien^Zo e", "Desc": "Knie links"})
        self.assertEqual(mapOne(column("Desc", "OBR.4.1"), obr(service="CT1^Knie\\X81\\links")), "Knie links")

    def test_leadingAndTrailingSpacesDropped(self):
        """Leading and trailing spaces are no part of a value (PS3.5 6.2):
        gone outside LT, ST and UT, which keep their leading ones."""
        self.assertEqual(mapOne(column("AccessionNumber", "OBR.3", tag=(0x0008, 0x0050), length=16),
                                obr(accession=" SPC1 ")), "SPC1")
        self.assertEqual(mapOne(column("PatientName", "PID.5", tag=PATIENT_NAME),
                                segment("PID", {5: " Doe^John  "})), "Doe^John")
        self.assertEqual(mapOne(column("Desc", "OBR.4.1"), obr(service="CT1^ CT HEAD\\.br\\")), "CT HEAD")
        comments = column("Comments", "OBR.4.1", tag=PROC_COMMENTS, length=0)
        self.assertEqual(mapOne(comments, obr(service="CT1^  indented  ")), "  indented")

    def test_patientSex(self):
        """HL7 table 0001 to DICOM's M, F, O: A (ambiguous) and N (not
        applicable) are O, U (unknown) and anything else empty."""
        sex = column("PatientSex", "PID.8", tag=PATIENT_SEX, length=16)
        cases = [("M", "M"), ("F", "F"), ("O", "O"), ("A", "O"), ("N", "O"), ("U", ""), ("X", ""),
                 ("f", "F"), ("F^Female^HL70001", "F"), ('""', "")]
        for hl7, dicom in cases:
            self.assertEqual(mapOne(sex, segment("PID", {8: hl7})), dicom, hl7)
        self.assertEqual(mapOne(column("Text", "PID.8"), segment("PID", {8: "U"})), "U")

    def test_wholeFieldDropsSubcomponentsRepetitionsAndTrailingSeparators(self):
        col = column("Text", "PID.3")
        self.assertEqual(mapOne(col, segment("PID", {3: "1&A^^^H&1.2&ISO^MR^^~2^^^X"})), "1^^^H^MR")


class ItemTests(unittest.TestCase):

    def setUp(self):
        self.mapping = WorklistMapping([column("AccessionNumber", "OBR.3", tag=(0x0008, 0x0050), length=16),
                                        column("PatientID", "PID.4"),
                                        column("Placer", "ORC.2")])

    def items(self, *segments):
        return [(item.control, *(item.values[name] for name in ("AccessionNumber", "PatientID", "Placer")))
                for item in self.mapping.items(message(PID, PV1, *segments))]

    def test_oneOrderSeveralProcedures(self):
        self.assertEqual(self.items(orc(), obr("A1"), obr("A2", setId="2")),
                         [("NW", "A1", "P-0815", "PL100"), ("NW", "A2", "P-0815", "PL100")])

    def test_eachOrcAppliesToTheObrsAfterIt(self):
        self.assertEqual(self.items(orc("NW", "P1"), obr("A1"), orc("XO", "P2"), obr("A2"), obr("A3")),
                         [("NW", "A1", "P-0815", "P1"), ("XO", "A2", "P-0815", "P2"),
                          ("XO", "A3", "P-0815", "P2")])

    def test_cancelWithoutObr(self):
        """The filler order number (the accession number, OBR-3) is ORC-3 as well."""
        self.assertEqual(self.items(orc("CA", "P1", "ACC7")), [("CA", "ACC7", "P-0815", "P1")])
        self.assertEqual(self.items(orc("CA", "P1", "")), [("CA", "", "P-0815", "P1")])

    def test_orcWithoutObrAmongOthers(self):
        self.assertEqual(self.items(orc("CA", "P1", "F1"), orc("NW", "P2"), obr("A2"), orc("DC", "P3", "F3")),
                         [("CA", "F1", "P-0815", "P1"), ("NW", "A2", "P-0815", "P2"),
                          ("DC", "F3", "P-0815", "P3")])

    def test_obrWithoutOrc(self):
        """The placer order number (ORC-2) is OBR-2 as well."""
        self.assertEqual(self.items(obr("A1"), obr("A2")),
                         [("NW", "A1", "P-0815", "PL100"), ("NW", "A2", "P-0815", "PL100")])

    def test_emptyFieldsChangeNothingAndNullClears(self):
        """HL7's null values: an XO that leaves OBR-21 empty keeps the
        modality; ``""`` in OBR-24 clears the station."""
        mapping = WorklistMapping([column("Modality", "OBR.21"), column("Station", "OBR.24"),
                                   column("Start", "OBR.7.DATE")])
        change = segment("OBR", {1: "1", 3: "ACC100", 7: "20261202", 24: '""'})
        [item] = mapping.items(message(PID, orc("XO"), change))
        self.assertEqual(item, OrderItem("XO", {"Modality": "", "Station": "", "Start": "20261202"},
                                         frozenset({"Modality"})))

    def test_emptyOrderControlMeansNew(self):
        self.assertEqual(self.items(orc(""), obr("A1")), [("NW", "A1", "P-0815", "PL100")])

    def test_noOrder(self):
        self.assertEqual(self.mapping.items(message(PID, PV1)), [])

    def test_eachOrderGroupHasItsOwnSegments(self):
        """ORM^O01 with two ORC/OBR/ZDS groups (IHE RAD-4): each item its own
        ZDS; a group without one sends none, whatever the others hold."""
        mapping = WorklistMapping([column("Accession", "OBR.3"), column("Study", "ZDS.1.0", tag=STUDY_UID)])
        items = mapping.items(message(PID, orc("NW", "P1"), obr("A1"), segment("ZDS", {1: "1.2.1^RIS"}),
                                      orc("NW", "P2"), obr("A2"), segment("ZDS", {1: "1.2.2^RIS"}),
                                      orc("NW", "P3"), obr("A3")))
        self.assertEqual(items, [OrderItem("NW", {"Accession": "A1", "Study": "1.2.1"}),
                                 OrderItem("NW", {"Accession": "A2", "Study": "1.2.2"}),
                                 OrderItem("NW", {"Accession": "A3", "Study": ""}, frozenset({"Study"}))])

    def test_segmentsBetweenOrcAndObrBelongToTheOrder(self):
        """OMI^O23: ORC, TQ1, OBR, IPC per order; the TQ1 after an ORC
        serves every OBR of that ORC, each with the IPC after it."""
        mapping = WorklistMapping([column("Accession", "OBR.3"), column("Study", "IPC.3", tag=STUDY_UID),
                                   column("Modality", "IPC.5"), column("Date", "TQ1.7.DATE"),
                                   column("Time", "TQ1.7.TIME")])

        def ipc(n, modality):
            return segment("IPC", {1: f"A{n}", 2: f"RP{n}", 3: f"1.2.{n}", 4: f"S{n}", 5: modality})

        def tq1(when):
            return segment("TQ1", {1: "1", 7: when})

        items = mapping.items(message(PID, PV1, orc("NW", "P1"), tq1("20261206110000"), obr("A1"), ipc(1, "CT"),
                                      orc("NW", "P2"), tq1("20261207143000"), obr("A2"), ipc(2, "MR"),
                                      obr("A3"), ipc(3, "US")))
        self.assertEqual([tuple(item.values.values()) for item in items],
                         [("A1", "1.2.1", "CT", "20261206", "110000"),
                          ("A2", "1.2.2", "MR", "20261207", "143000"),
                          ("A3", "1.2.3", "US", "20261207", "143000")])

    def test_otherSegmentsAreTheirFirstOccurrence(self):
        mapping = WorklistMapping([column("Location", "PV1.3.1")])
        second = segment("PV1", {3: "X^OTHER"})
        items = mapping.items(message(PID, PV1, second, orc(), obr()))
        self.assertEqual(items, [OrderItem("NW", {"Location": "CT1"})])


GENERATED = {"*AN": "1234567890123456", "*UI": "1.2.826.0.1.3680043.8.498.1"}


class DefaultLayoutTests(unittest.TestCase):
    """The WorkList table of the packaged etc/dicom.sql maps a typical ORM^O01
    (columns it generates get the values of the generators given here)."""

    mapped = {
        "AccessionNumber": "ACC100",
        "PatientID": "P-0815",
        "PatientName": "Müller^Hans^^Dr",
        "PatientBirthDate": "19800101",
        "PatientSex": "M",
        "ReqPhysician": "Welby^Marcus^^Dr",
        "ReqProcDescription": "CT HEAD",
        "Modality": "CT",
        "StartDate": "20261201",
        "StartTime": "1030",
        "SchedPSID": "CT123^CT HEAD",
        "SchedStationName": "CTSTATION1",
        "ReqProcID": "CT123",
        "ReqProcPriority": "1^once^^20261201103000^^R",
    }

    def setUp(self):
        worklist = DatabaseLayout.fromFile("etc/dicom.sql").worklist
        self.mapping = WorklistMapping(worklist, newAccessionNumber=lambda: GENERATED["*AN"],
                                       newUID=lambda: GENERATED["*UI"])
        self.generated = {c.name: GENERATED[c.hl7.split("|")[-1]] for c in worklist
                          if c.hl7.split("|")[-1] in GENERATED}
        self.expected = {**self.mapped, **self.generated}

    def test_layout(self):
        self.assertEqual(self.mapping.accessionColumn, "AccessionNumber")
        self.assertEqual(self.mapping.generatedColumns, frozenset(self.generated))

    def test_latin1(self):
        self.assertEqual(self.mapping.items(parseMessage(encoded(orm("8859/1"), "8859/1"))),
                         [OrderItem("NW", self.expected, generated=frozenset(self.generated))])

    def test_aLineFeedInAFreeTextFieldLosesNoColumn(self):
        """A bare LF in OBR-13 of a message whose segments end in CR left the
        Requesting Physician (OBR-16) and the Modality (OBR-21) empty."""
        text = orm("8859/1").replace("||||1234^Welby", "|Claustrophobic.\nPlease sedate.|||1234^Welby")
        self.assertIn("\n", text)
        self.assertEqual(self.mapping.items(parseMessage(encoded(text, "8859/1"))),
                         [OrderItem("NW", self.expected, generated=frozenset(self.generated))])

    def test_utf8(self):
        self.assertEqual(self.mapping.items(parseMessage(encoded(orm("UNICODE UTF-8"), "UNICODE UTF-8"))),
                         [OrderItem("NW", self.expected, generated=frozenset(self.generated))])

    def test_omi(self):
        """An OMI^O23 (HL7 v2.5, IHE RAD-4) gives its start in TQ1-7, OBR-7
        empty, and the Study Instance UID the order filler assigned in IPC-3:
        the item is scheduled then and keeps that UID."""
        for ipc3 in ("1.2.840.99.7.1", "1.2.840.99.7.1^RIS^1.2.3^ISO"):  # an EI with its namespace, as v2.5 allows
            segments = [PID, PV1, orc(), segment("TQ1", {1: "1", 7: "202612071030"}), obr(when=""),
                        segment("IPC", {1: "ACC100", 2: "RP1", 3: ipc3, 4: "SPS1", 5: "CT"})]
            text = "\r".join([msh(messageType="OMI^O23^OMI_O23")] + segments) + "\r"
            self.assertEqual(self.mapping.items(parseMessage(encoded(text, "8859/1"))), [OrderItem("NW", {
                **self.expected, "StartDate": "20261207", "StartTime": "1030", "StudyInstanceUID": "1.2.840.99.7.1"})],
                ipc3)

    def test_columnLengths(self):
        order = obr(service="CT123^CT HEAD WITH CONTRAST", station="CT-STATION-NORTH-2")
        text = orm(segments=[PID, PV1, orc(), order])
        values = self.mapping.items(parseMessage(encoded(text, "8859/1")))[0].values
        self.assertEqual(values["ReqProcDescription"], "CT HEAD WITH CON")
        self.assertEqual(values["SchedPSID"], "CT123^CT HEAD WI")
        self.assertEqual(values["SchedStationName"], "CT-STATION-NORTH")

    def test_cancel(self):
        text = orm(segments=[PID, orc("CA")])
        items = self.mapping.items(parseMessage(encoded(text, "8859/1")))
        self.assertEqual([item.control for item in items], ["CA"])
        self.assertEqual(items[0].values["PatientID"], "P-0815")
        self.assertEqual(items[0].values["ReqProcID"], "")
