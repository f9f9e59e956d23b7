"""Tests for pacscore.web.worklist: listing the worklist, and with
WebReadOnly = 0 adding, changing and deleting items as HL7 orders would."""

import re

from sqlalchemy import select
from twisted.internet import defer
from twisted.trial import unittest

from pacscore.dicom.uids import isUID
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.web.pages import dgate, get, post

ITEM = {"original accession": "", "AccessionNumber": "ACC1", "PatientID": "WL1", "PatientName": "Web^Item",
        "Modality": "CT", "StartDate": "20261203", "StartTime": "0930", "ScheduledAE": "CT1"}
PREFIX = "1.2.826.0.1.3680043.9.7433"


class WorklistPageTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self, ini={"WebReadOnly": "0", "UIDPrefix": PREFIX})
        self.resource = dgate(self.running)

    def items(self):
        table = self.running.archive.index.tables.worklist
        return self.running.archive.index.runQuery(
            lambda connection: [dict(row._mapping) for row in connection.execute(select(table)).all()])

    @defer.inlineCallbacks
    def test_addChangeDelete(self):
        added = yield post(self.resource, mode="saverecord", **ITEM)
        self.assertIn("worklist item ACC1 inserted", added.text)
        [item] = yield self.items()
        self.assertEqual((item["PatientName"], item["StartDate"]), ("Web^Item", "20261203"))
        self.assertTrue(isUID(item["StudyInstanceUID"]))  # *UI in dicom.sql: generated
        self.assertTrue(item["StudyInstanceUID"].startswith(PREFIX + "."), item["StudyInstanceUID"])  # UIDPrefix
        listed = yield get(self.resource, mode="queryworklist")
        self.assertIn("<caption>1 worklist entries</caption>", listed.text)
        form = yield get(self.resource, listed.links()[0])
        self.assertIn('value="Web^Item"', form.text)
        conquest = yield get(self.resource, mode="editrecord", db="DICOMWorkList", query="AccessionN = 'ACC1'")
        self.assertEqual(conquest.text, form.text)
        changed = yield post(self.resource, mode="saverecord", **dict(
            ITEM, **{"original accession": "ACC1", "PatientName": "Web^Changed", "StudyInstanceUID": ""}))
        self.assertIn("worklist item ACC1 updated", changed.text)
        [after] = yield self.items()
        self.assertEqual((after["PatientName"], after["StudyInstanceUID"]), ("Web^Changed", item["StudyInstanceUID"]))
        renumbered = yield post(self.resource, mode="saverecord", **dict(
            ITEM, **{"original accession": "ACC1", "AccessionNumber": "ACC2"}))
        self.assertIn("worklist item ACC2 inserted", renumbered.text)
        self.assertEqual([i["AccessionNumber"] for i in (yield self.items())], ["ACC2"])
        deleted = yield post(self.resource, mode="deleterecord", accession="ACC2")
        self.assertIn("worklist item ACC2 deleted", deleted.text)
        self.assertEqual((yield self.items()), [])

    @defer.inlineCallbacks
    def test_itemStoredWithSpacesAroundItsAccessionNumber(self):
        """An item an older version stored as 'ACC1 ' is ACC1 after a
        restart's trim: it opens from its edit link, is saved (not refused
        as deleted meanwhile) and deleted as ACC1."""
        yield post(self.resource, mode="saverecord", **ITEM)
        table = self.running.archive.index.tables.worklist
        yield self.running.archive.index.runWrite(
            lambda connection: connection.execute(table.update().values(AccessionNumber="ACC1 ")))
        self.running.archive.worklistItems.check()
        listed = yield get(self.resource, mode="queryworklist")
        form = yield get(self.resource, listed.links()[0])
        self.assertIn('value="Web^Item"', form.text)
        changed = yield post(self.resource, mode="saverecord", **dict(
            ITEM, **{"original accession": "ACC1", "PatientName": "Web^Changed"}))
        self.assertIn("worklist item ACC1 updated", changed.text)
        self.assertEqual([(i["AccessionNumber"], i["PatientName"]) for i in (yield self.items())],
                         [("ACC1", "Web^Changed")])
        deleted = yield post(self.resource, mode="deleterecord", accession="ACC1")
        self.assertIn("worklist item ACC1 deleted", deleted.text)
        self.assertEqual((yield self.items()), [])

    @defer.inlineCallbacks
    def test_renumberedItemKeepsItsGeneratedValues(self):
        yield post(self.resource, mode="saverecord", **dict(ITEM, StudyInstanceUID=""))
        [item] = yield self.items()
        renumbered = yield post(self.resource, mode="saverecord", **dict(
            ITEM, **{"original accession": "ACC1", "AccessionNumber": "ACC2", "StudyInstanceUID": ""}))
        self.assertIn("worklist item ACC2 inserted", renumbered.text)
        [after] = yield self.items()
        self.assertEqual((after["AccessionNumber"], after["StudyInstanceUID"]), ("ACC2", item["StudyInstanceUID"]))

    @defer.inlineCallbacks
    def test_anEditedGeneratedValueIsStored(self):
        """A Study Instance UID typed on the edit page was dropped while the
        page said 'worklist item ACC1 updated': it is now stored."""
        yield post(self.resource, mode="saverecord", **dict(ITEM, StudyInstanceUID=""))
        changed = yield post(self.resource, mode="saverecord", **dict(
            ITEM, **{"original accession": "ACC1", "StudyInstanceUID": "1.2.840.99999.7.7.7"}))
        self.assertIn("worklist item ACC1 updated", changed.text)
        [after] = yield self.items()
        self.assertEqual(after["StudyInstanceUID"], "1.2.840.99999.7.7.7")

    @defer.inlineCallbacks
    def test_listSelectedAndCut(self):
        """As Conquest's worklist page, the list takes the top page's search
        fields and a ``query`` text, lists by start date and time, and says
        when ``max`` cut it."""
        for accession, patientID, name, date in (("A3", "X3", "Third^Plain", "20261209"),
                                                 ("A1", "X1", "First^Plain", "20261207"),
                                                 ("A2", "X2", "Second^Other", "20261208")):
            yield post(self.resource, mode="saverecord", **dict(
                ITEM, AccessionNumber=accession, PatientID=patientID, PatientName=name, StartDate=date))
        for asked, accessions in (({}, ["A1", "A2", "A3"]),
                                  ({"patientidmatch": "x1"}, ["A1"]),
                                  ({"patientnamematch": "plain"}, ["A1", "A3"]),
                                  ({"startdatematch": "20261208-"}, ["A2", "A3"]),
                                  ({"query": "PatientID = 'X2'"}, ["A2"]),
                                  ({"query": "DICOMWorkList.StartDate like '2026120%'", "patientnamematch": "third"},
                                   ["A3"])):
            page = yield get(self.resource, mode="queryworklist", **asked)
            self.assertIn(f"<caption>{len(accessions)} worklist entries</caption>", page.text, asked)
            self.assertEqual(re.findall(r"<td>(A\d)</td>", page.text), accessions, asked)
        cut = yield get(self.resource, mode="queryworklist", max="2")
        self.assertIn("<caption>more than 2 worklist entries (the first 2 shown; max=N shows more)</caption>",
                      cut.text)
        self.assertEqual(re.findall(r"<td>(A\d)</td>", cut.text), ["A1", "A2"])
        for asked in ({"query": "Nonsense = 'x'"}, {"startdatematch": "2026*"}):
            refused = yield get(self.resource, mode="queryworklist", **asked)
            self.assertEqual(refused.code, 400, asked)

    @defer.inlineCallbacks
    def test_refusals(self):
        for parameters, code, why in [
                (dict(ITEM, StartDate="3 Dec"), 400, "StartDate is a date: YYYYMMDD"),
                (dict(ITEM, PatientID="x" * 65), 400, "PatientID holds at most 64 characters"),
                (dict(ITEM, **{"original accession": "NOPE"}), 409, "no worklist item with accession number NOPE")]:
            answer = yield post(self.resource, mode="saverecord", **parameters)
            self.assertEqual(answer.code, code, answer.text)
            self.assertIn(why, answer.text)
        self.assertEqual((yield get(self.resource, mode="saverecord", **ITEM)).code, 405)
        self.assertEqual((yield get(self.resource, mode="editrecord", accession="NONE")).code, 404)
        self.assertEqual((yield get(self.resource, mode="editrecord", query="1=1")).code, 400)
        self.assertEqual((yield self.items()), [])

    @defer.inlineCallbacks
    def test_invalidValuesRefused(self):
        """Values that are no valid DICOM are refused, the column named: an
        impossible date or time, a sex other than M, F or O, a backslash
        (the value delimiter) or a control character in a name or ID."""
        for column, value, why in [
                ("PatientBirthDate", "20261399", "PatientBirthDate is a date: YYYYMMDD, a real one"),
                ("StartDate", "20261306", "StartDate is a date"),
                ("StartDate", "20250229", "StartDate is a date"),
                ("StartTime", "25:99:xx", "StartTime is a time"),
                ("StartTime", "2400", "StartTime is a time"),
                ("StartTime", "096", "StartTime is a time"),
                ("StartTime", "093061", "StartTime is a time"),
                ("PatientSex", "Q", "PatientSex is M, F, O or empty"),
                ("PatientName", "Back\\Slash", "PatientName may not hold &#x27;\\\\&#x27;"),
                ("PatientID", "WLBAD\\X", "PatientID may not hold"),
                ("SchedPSDescription", "two\tparts", "SchedPSDescription may not hold &#x27;\\t&#x27;"),
                ("PatientName", "O\x92Brien", "PatientName may not hold &#x27;\\x92&#x27;")]:
            answer = yield post(self.resource, mode="saverecord", **dict(ITEM, **{column: value}))
            self.assertEqual(answer.code, 400, (column, value, answer.text))
            self.assertIn(why, answer.text)
        self.assertEqual((yield self.items()), [])
        valid = {"PatientBirthDate": "20240229", "PatientSex": "O", "StartTime": "235960.123456"}
        added = yield post(self.resource, mode="saverecord", **dict(ITEM, **valid))
        self.assertIn("worklist item ACC1 inserted", added.text)
        [item] = yield self.items()
        self.assertEqual({name: item[name] for name in valid}, valid)

    @defer.inlineCallbacks
    def test_anItemAnEarlierVersionStoredWithAC1CharacterIsSaved(self):
        """An item an earlier version stored with a C1 control character
        (cp1252 text read as Latin-1: 'D\x92Angelo^Jo') could no longer be
        saved: changing only its Modality answered 400 'PatientName may not
        hold '\x92'', a field the user did not touch.  A value left as the
        item holds it is now saved as it is; one typed is checked."""
        yield post(self.resource, mode="saverecord", **ITEM)
        table = self.running.archive.index.tables.worklist
        yield self.running.archive.index.runWrite(
            lambda connection: connection.execute(table.update().values(PatientName="D\x92Angelo^Jo")))
        form = yield get(self.resource, mode="editrecord", accession="ACC1")
        self.assertIn('value="D\x92Angelo^Jo"', form.text)
        edited = dict(ITEM, **{"original accession": "ACC1", "PatientName": "D\x92Angelo^Jo"})
        changed = yield post(self.resource, mode="saverecord", **dict(edited, Modality="MR"))
        self.assertIn("worklist item ACC1 updated", changed.text)
        [item] = yield self.items()
        self.assertEqual((item["Modality"], item["PatientName"]), ("MR", "D\x92Angelo^Jo"))
        typed = yield post(self.resource, mode="saverecord", **dict(edited, PatientName="D\x92Angelo^Joe"))
        self.assertEqual(typed.code, 400, typed.text)
        self.assertIn("PatientName may not hold &#x27;\\x92&#x27;", typed.text)

    @defer.inlineCallbacks
    def test_anotherItemIsNeverOverwritten(self):
        """A new item, or one renumbered, with the accession number of an
        existing item: 409, both items as they were."""
        yield post(self.resource, mode="saverecord", **ITEM)
        yield post(self.resource, mode="saverecord", **dict(ITEM, AccessionNumber="ACC2", PatientName="Second^Item"))
        before = yield self.items()
        for original in ("", "ACC1"):
            answer = yield post(self.resource, mode="saverecord", **dict(
                ITEM, **{"original accession": original, "AccessionNumber": "ACC2", "PatientName": "Third^Item"}))
            self.assertEqual(answer.code, 409, answer.text)
            self.assertIn("a worklist item with accession number ACC2 exists already", answer.text)
        self.assertEqual((yield self.items()), before)

    @defer.inlineCallbacks
    def test_readOnly(self):
        yield post(self.resource, mode="saverecord", **ITEM)
        self.running.configuration.ini.set("WebReadOnly", "1")
        listed = yield get(self.resource, mode="queryworklist")
        self.assertIn("<caption>1 worklist entries</caption>", listed.text)
        self.assertNotIn("editrecord", listed.text)
        for answer in ((yield get(self.resource, mode="addrecord")), (yield post(self.resource, mode="saverecord", **ITEM)),
                       (yield post(self.resource, mode="deleterecord", accession="ACC1"))):
            self.assertEqual(answer.code, 403)
        self.assertEqual([i["AccessionNumber"] for i in (yield self.items())], ["ACC1"])
