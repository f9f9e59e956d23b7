"""Modality Performed Procedure Step against a running ``twistd -n pacs``,
with pynetdicom as the modality (DCMTK has no MPPS SCU): a step created IN
PROGRESS and set COMPLETED with its series, kept across a restart and
listed on the web page; the standard's refusals; the worklist item's
Scheduled Procedure Step Status following the step."""

import os
import sqlite3
import urllib.request

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from twisted.trial import unittest

from pacscore.testing.orders import orderMessage, writeMessages
from tests.interop.server import PacsServer, freePort
from tests.interop.test_forwarding import waitFor
from tests.interop.test_worklist import acks, worklistFind
from tests.pacscore.db.test_worklistitems import uncommentStepStatus

MPPS = "1.2.840.10008.3.1.2.3.3"


def inProgress(accession="ACC-MPPS-1", status="IN PROGRESS"):
    step = Dataset()
    step.PatientName = "Mpps^Test"
    step.PatientID = "PATMPPS"
    scheduled = Dataset()
    scheduled.AccessionNumber = accession
    scheduled.StudyInstanceUID = generate_uid()
    scheduled.ScheduledProcedureStepID = "SPS1"
    step.ScheduledStepAttributesSequence = [scheduled]
    step.PerformedProcedureStepID = "PPS1"
    step.PerformedStationAETitle = "CT1"
    step.PerformedProcedureStepStartDate = "20261203"
    step.PerformedProcedureStepStartTime = "101500"
    step.PerformedProcedureStepStatus = status
    step.PerformedProcedureStepDescription = "CT head"
    step.Modality = "CT"
    step.PerformedSeriesSequence = []
    return step


def completed():
    changes = Dataset()
    changes.PerformedProcedureStepStatus = "COMPLETED"
    changes.PerformedProcedureStepEndDate = "20261203"
    changes.PerformedProcedureStepEndTime = "103000"
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    series.SeriesDescription = "Head 5mm"
    series.ReferencedImageSequence = []
    changes.PerformedSeriesSequence = [series]
    return changes


def discontinued(reason):
    """The N-SET discontinuing a step for ``reason``, ``(code, meaning)`` in DCM."""
    changes = completed()
    changes.PerformedProcedureStepStatus = "DISCONTINUED"
    code = Dataset()
    code.CodeValue, code.CodeMeaning = reason
    code.CodingSchemeDesignator = "DCM"
    changes.PerformedProcedureStepDiscontinuationReasonCodeSequence = [code]
    return changes


def wrongEntry():
    return discontinued(("110514", "Incorrect worklist entry selected"))


class ModalityTestCase(unittest.TestCase):
    """A pacs and an association from the modality CT1 proposing MPPS."""

    def setUp(self):
        self.server = PacsServer(self.mktemp())
        self.configure(self.server)
        self.server.start()
        self.addCleanup(self.server.stop)
        ae = AE(ae_title="CT1")
        ae.add_requested_context(MPPS)
        self.association = ae.associate("127.0.0.1", self.server.port, ae_title="PACS")
        self.assertTrue(self.association.is_established)
        self.addCleanup(self.association.release)

    def configure(self, server):
        """Change the configuration of ``server`` before it starts."""

    def create(self, step, uid=None):
        status, _ = self.association.send_n_create(step, MPPS, uid or generate_uid())
        return status

    def set(self, changes, uid):
        status, _ = self.association.send_n_set(changes, MPPS, uid)
        return status

    def page(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.webPort}/cgi-bin/dgate?mode=querympps",
                                    timeout=30) as response:
            return response.read().decode()


class MppsTests(ModalityTestCase):

    def test_createdThenCompleted(self):
        uid = generate_uid()
        self.assertEqual(self.create(inProgress(), uid).Status, 0x0000)
        self.assertIn(f"MPPS {uid} from CT1: IN PROGRESS (CT on CT1, patient PATMPPS, accession ACC-MPPS-1)",
                      self.server.log())
        self.assertIn("<td>IN PROGRESS</td>", self.page())
        self.assertEqual(self.set(completed(), uid).Status, 0x0000)
        self.assertIn(f"MPPS {uid} from CT1: COMPLETED", self.server.log())
        again = self.set(completed(), uid)
        self.assertEqual((again.Status, again.ErrorID, again.ErrorComment),
                         (0x0110, 0xA710, "Performed Procedure Step Object may no longer be updated"))
        self.association.release()
        self.server.stop()
        self.server.start()
        page = self.page()
        self.assertIn("<td>COMPLETED</td>", page)
        for value in ("PATMPPS", "ACC-MPPS-1", "CT head", "103000", "CT1"):
            self.assertIn(f"<td>{value}</td>", page)

    def test_refusals(self):
        uid = generate_uid()
        self.assertEqual(self.create(inProgress(status="COMPLETED")).Status, 0x0106)
        self.assertEqual(self.create(inProgress(), uid).Status, 0x0000)
        self.assertEqual(self.create(inProgress(), uid).Status, 0x0111)
        self.assertEqual(self.set(completed(), generate_uid()).Status, 0x0112)
        wrong = Dataset()
        wrong.PerformedProcedureStepStatus = "FINISHED"
        self.assertEqual(self.set(wrong, uid).Status, 0x0106)
        missing = inProgress()
        del missing.PerformedProcedureStepStatus
        self.assertEqual(self.create(missing).Status, 0x0120)
        for keyword, name in (("PerformedProcedureStepID", "Performed Procedure Step ID"), ("Modality", "Modality"),
                              ("PerformedProcedureStepStartTime", "Performed Procedure Step Start Time")):
            missing = inProgress()
            delattr(missing, keyword)
            refused = self.association.send_n_create(missing, MPPS, generate_uid())[0]
            self.assertEqual((refused.Status, refused.ErrorComment), (0x0120, f"N-CREATE without {name}"), keyword)
        empty = inProgress()
        empty.PerformedStationAETitle = ""
        del empty.ScheduledStepAttributesSequence[0].StudyInstanceUID
        refused = self.association.send_n_create(empty, MPPS, generate_uid())[0]
        self.assertEqual((refused.Status, refused.ErrorComment), (0x0120, "N-CREATE without Study Instance UID"))
        del empty.ScheduledStepAttributesSequence
        refused = self.association.send_n_create(empty, MPPS, generate_uid())[0]
        self.assertEqual((refused.Status, refused.ErrorComment),
                         (0x0120, "N-CREATE without Scheduled Step Attributes Sequence"))
        empty.ScheduledStepAttributesSequence = inProgress().ScheduledStepAttributesSequence
        refused = self.association.send_n_create(empty, MPPS, generate_uid())[0]
        self.assertEqual((refused.Status, refused.ErrorComment), (0x0121, "N-CREATE with no Performed Station AE Title"))
        self.assertEqual(self.create(inProgress(status="in progress")).Status, 0x0106, "a CS: upper case")
        self.assertEqual(self.create(inProgress(), "1.2.3.abc").Status, 0x0117)
        other = Dataset()
        other.PatientID = "SOMEONE_ELSE"
        other.ScheduledStepAttributesSequence = inProgress("OTHER_ACC").ScheduledStepAttributesSequence
        refused = self.association.send_n_set(other, MPPS, uid)[0]
        self.assertEqual(refused.Status, 0x0106)
        self.assertEqual(refused.ErrorComment, "N-SET may not change Patient ID, Scheduled Step Attributes Seque")
        self.assertIn("refused (0x0111): performed procedure step", self.server.log())
        page = self.page()
        self.assertIn("<td>IN PROGRESS</td>", page)
        self.assertIn("<td>PATMPPS</td>", page)
        self.assertNotIn("SOMEONE_ELSE", page)

    def test_theFinalStateNeedsItsAttributes(self):
        """Table F.7.2-1's Final State: a set to COMPLETED or DISCONTINUED
        without the end date and time or a performed series is refused
        (0121, naming them) and not applied: the step stays IN PROGRESS."""
        uid = generate_uid()
        self.assertEqual(self.create(inProgress(), uid).Status, 0x0000)
        bare = Dataset()
        bare.PerformedProcedureStepStatus = "COMPLETED"
        refused = self.set(bare, uid)
        self.assertEqual((refused.Status, refused.ErrorComment),
                         (0x0121, "COMPLETED with no Performed Procedure Step End Date, Performed P"))
        self.assertIn("Performed Procedure Step End Time, Performed Series Sequence", self.server.log())
        noSeries = completed()
        noSeries.PerformedProcedureStepStatus = "DISCONTINUED"
        noSeries.PerformedSeriesSequence = []
        refused = self.set(noSeries, uid)
        self.assertEqual((refused.Status, refused.ErrorComment),
                         (0x0121, "DISCONTINUED with no Performed Series Sequence"))
        self.assertIn("<td>IN PROGRESS</td>", self.page())
        self.assertEqual(self.set(completed(), uid).Status, 0x0000)
        self.assertIn("<td>COMPLETED</td>", self.page())

    def test_aSetKeepsTheStepsCharacterSet(self):
        """F.7.2.2.3: an N-SET in ISO_IR 100 after an N-CREATE in UTF-8
        keeps the name the create gave."""
        uid = generate_uid()
        step = inProgress()
        step.SpecificCharacterSet = "ISO_IR 192"
        step.PatientName = "\u0141ukasz^\u017b\u00f3\u0142\u0107"
        self.assertEqual(self.create(step, uid).Status, 0x0000)
        changes = Dataset()
        changes.SpecificCharacterSet = "ISO_IR 100"
        changes.PerformedProcedureStepDescription = "Sch\u00e4del"
        self.assertEqual(self.set(changes, uid).Status, 0x0000)
        self.assertEqual(self.set(completed(), uid).Status, 0x0000)
        page = self.page()
        self.assertIn("<td>\u0141ukasz^\u017b\u00f3\u0142\u0107</td>", page)
        self.assertIn("<td>Sch\u00e4del</td>", page)


class WorklistStatusTests(ModalityTestCase):
    """With a Scheduled Procedure Step Status column in dicom.sql's
    worklist, an HL7 order is SCHEDULED and the modality's MPPS marks it
    STARTED then COMPLETED, as findscu -W sees it."""

    def configure(self, server):
        path = os.path.join(server.workdir, "dicom.sql")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(uncommentStepStatus(text))

    def statuses(self, *status):
        """``{accession: status}`` of the worklist items findscu -W finds
        (with the status key ``status``, when given)."""
        matches = worklistFind(self.server, ["AccessionNumber"],
                               sequenceKeys=[f"ScheduledProcedureStepStatus={value}" for value in status] or
                               ["ScheduledProcedureStepStatus"])
        return {str(m.AccessionNumber): m.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus
                for m in matches}

    def scheduled(self, accession):
        """``inProgress(accession)`` naming the worklist item as a modality
        does, with what findscu -W gives of it: its Patient ID, Study
        Instance UID and Scheduled Procedure Step ID."""
        [item] = worklistFind(self.server, [f"AccessionNumber={accession}", "PatientID", "StudyInstanceUID"],
                              sequenceKeys=["ScheduledProcedureStepID"])
        step = inProgress(accession)
        step.PatientID = item.PatientID
        scheduled = step.ScheduledStepAttributesSequence[0]
        scheduled.StudyInstanceUID = item.StudyInstanceUID
        scheduled.ScheduledProcedureStepID = item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID
        return step

    def test_mppsMarksTheWorklistItem(self):
        path = os.path.join(self.server.workdir, "orders.hl7")
        writeMessages(path, [orderMessage("MSG1", "ACC-MPPS-1", "PATMPPS", "Mpps^Test", modality="CT"),
                             orderMessage("MSG2", "ACC-MPPS-2", "PATMPPS2", "Other^Test", modality="CT")])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "MSG1"), ("AA", "MSG2")])
        self.assertEqual(self.statuses(), {"ACC-MPPS-1": "SCHEDULED", "ACC-MPPS-2": "SCHEDULED"})
        uid = generate_uid()
        self.assertEqual(self.create(self.scheduled("ACC-MPPS-1"), uid).Status, 0x0000)
        mistyped = generate_uid()  # PATMPPS's step naming the accession of PATMPPS2's item: not marked
        self.assertEqual(self.create(inProgress("ACC-MPPS-2"), mistyped).Status, 0x0000)
        self.assertEqual(self.statuses(), {"ACC-MPPS-1": "STARTED", "ACC-MPPS-2": "SCHEDULED"})
        [line] = [line for line in self.server.log().splitlines() if f"MPPS {mistyped}: worklist item" in line]
        self.assertIn("worklist item ACC-MPPS-2 is not the one its scheduled step names (", line)
        self.assertTrue(line.endswith("Patient ID PATMPPS2, not PATMPPS): left as it is"), line)
        self.assertEqual(self.statuses("SCHEDULED"), {"ACC-MPPS-2": "SCHEDULED"})
        self.assertEqual(self.set(completed(), uid).Status, 0x0000)
        self.assertEqual(self.statuses(), {"ACC-MPPS-1": "COMPLETED", "ACC-MPPS-2": "SCHEDULED"})
        log = self.server.log()
        self.assertIn(f"MPPS {uid}: worklist item(s) ACC-MPPS-1 now STARTED", log)
        self.assertIn(f"MPPS {uid}: worklist item(s) ACC-MPPS-1 now COMPLETED", log)


    def test_wrongEntryLeavesAnItemAnotherStepPerforms(self):
        """A step that picked an item by mistake, discontinued with DCM
        110514, leaves it STARTED while another step IN PROGRESS performs
        it; it goes back to SCHEDULED once no step in progress does."""
        path = os.path.join(self.server.workdir, "orders.hl7")
        writeMessages(path, [orderMessage("MSG1", "ACC-MPPS-1", "PATMPPS", "Mpps^Test", modality="CT")])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "MSG1")])
        first, wrong = generate_uid(), generate_uid()
        for uid in (first, wrong):
            self.assertEqual(self.create(self.scheduled("ACC-MPPS-1"), uid).Status, 0x0000)
        self.assertEqual(self.set(wrongEntry(), wrong).Status, 0x0000)
        self.assertEqual(self.statuses(), {"ACC-MPPS-1": "STARTED"})
        self.assertIn(f"MPPS {wrong}: worklist item(s) ACC-MPPS-1 (STARTED) keep their status", self.server.log())
        self.assertEqual(self.set(wrongEntry(), first).Status, 0x0000)
        self.assertEqual(self.statuses(), {"ACC-MPPS-1": "SCHEDULED"})

    def test_aDiscontinuedStepLeavesAnItemAnotherStepPerforms(self):
        """A step discontinued for an ordinary reason (DCM 110513) leaves its
        item STARTED while another step IN PROGRESS performs it (it is not
        put back on the worklist by a NW sent again, as a DISCONTINUED one
        is); that step's end then gives the item its status."""
        path = os.path.join(self.server.workdir, "orders.hl7")
        writeMessages(path, [orderMessage("MSG1", "ACC-MPPS-1", "PATMPPS", "Mpps^Test", modality="CT")])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "MSG1")])
        stopped, going = generate_uid(), generate_uid()
        for uid in (stopped, going):
            self.assertEqual(self.create(self.scheduled("ACC-MPPS-1"), uid).Status, 0x0000)
        self.assertEqual(self.set(discontinued(("110513", "Discontinued for unspecified reason")), stopped).Status, 0x0000)
        self.assertEqual(self.statuses(), {"ACC-MPPS-1": "STARTED"})
        self.assertIn(f"MPPS {stopped}: worklist item(s) ACC-MPPS-1 (STARTED) keep their status, not made "
                      "DISCONTINUED", self.server.log())
        self.assertEqual(self.set(completed(), going).Status, 0x0000)
        self.assertEqual(self.statuses(), {"ACC-MPPS-1": "COMPLETED"})

    def test_wrongWorklistEntryIsScheduledAgain(self):
        """A step DISCONTINUED because the wrong worklist entry was selected
        (DCM 110514) leaves its item SCHEDULED: that procedure was not
        performed; one discontinued for another reason is DISCONTINUED
        until the RIS orders it again (a NW)."""
        path = os.path.join(self.server.workdir, "orders.hl7")
        writeMessages(path, [orderMessage("MSG1", "ACC-MPPS-1", "PATMPPS", "Mpps^Test", modality="CT"),
                             orderMessage("MSG2", "ACC-MPPS-2", "PATMPPS2", "Other^Test", modality="CT")])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "MSG1"), ("AA", "MSG2")])
        for accession, reason in (("ACC-MPPS-1", ("110514", "Incorrect worklist entry selected")),
                                  ("ACC-MPPS-2", ("110502", "Patient refused to continue procedure"))):
            uid = generate_uid()
            self.assertEqual(self.create(self.scheduled(accession), uid).Status, 0x0000)
            self.assertEqual(self.set(discontinued(reason), uid).Status, 0x0000)
        self.assertEqual(self.statuses(), {"ACC-MPPS-1": "SCHEDULED", "ACC-MPPS-2": "DISCONTINUED"})
        self.assertIn("worklist item(s) ACC-MPPS-1 now SCHEDULED", self.server.log())
        writeMessages(path, [orderMessage("MSG3", "ACC-MPPS-2", "PATMPPS2", "Other^Test", modality="CT")])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "MSG3")])
        self.assertEqual(self.statuses("SCHEDULED"), {"ACC-MPPS-1": "SCHEDULED", "ACC-MPPS-2": "SCHEDULED"})


    def test_wrongWorklistEntryKeepsWhatAnotherStepCompleted(self):
        """A step that picked two items, one of which another step then
        COMPLETED, discontinued because the wrong entry was selected: only
        the item still STARTED is SCHEDULED again; the completed one stays
        COMPLETED (it must not reappear on the modalities' worklists), logged,
        as it does when a later step picks it by mistake and is discontinued."""
        path = os.path.join(self.server.workdir, "orders.hl7")
        writeMessages(path, [orderMessage("MSG1", "ACC-DONE", "PATMPPS", "Mpps^Test", modality="CT"),
                             orderMessage("MSG2", "ACC-WRONG", "PATMPPS", "Mpps^Test", modality="CT")])
        self.assertEqual(acks(self.server.sendHL7(path)), [("AA", "MSG1"), ("AA", "MSG2")])
        both, right = generate_uid(), generate_uid()
        step = self.scheduled("ACC-DONE")
        step.ScheduledStepAttributesSequence += self.scheduled("ACC-WRONG").ScheduledStepAttributesSequence
        self.assertEqual(self.create(step, both).Status, 0x0000)
        self.assertEqual(self.create(self.scheduled("ACC-DONE"), right).Status, 0x0000)
        self.assertEqual(self.set(completed(), right).Status, 0x0000)
        changes = wrongEntry()
        self.assertEqual(self.set(changes, both).Status, 0x0000)
        self.assertEqual(self.statuses(), {"ACC-DONE": "COMPLETED", "ACC-WRONG": "SCHEDULED"})
        log = self.server.log()
        self.assertIn(f"MPPS {both}: worklist item(s) ACC-WRONG now SCHEDULED", log)
        self.assertIn(f"MPPS {both}: worklist item(s) ACC-DONE (COMPLETED) keep their status, not made SCHEDULED", log)
        again = generate_uid()  # a third step picks the completed item by mistake: it stays COMPLETED
        self.assertEqual(self.create(self.scheduled("ACC-DONE"), again).Status, 0x0000)
        self.assertEqual(self.statuses()["ACC-DONE"], "COMPLETED")
        self.assertEqual(self.set(changes, again).Status, 0x0000)
        self.assertEqual(self.statuses()["ACC-DONE"], "COMPLETED")
        self.assertIn(f"MPPS {again}: worklist item(s) ACC-DONE (COMPLETED) keep their status, not made STARTED",
                      self.server.log())


class ForwardTests(ModalityTestCase):
    """``ForwardMPPSTo = RIS``: a RIS (pynetdicom) gets the N-CREATE and the
    N-SET in order, with the step's UID; an unknown step's N-SET pacs
    refused is not forwarded; the RIS's refusal is logged, not retried;
    what the RIS did not get before pacs was killed goes when it starts."""

    def configure(self, server):
        self.received = []
        self.setStatus = 0x0000
        self.ris = AE(ae_title="RIS")
        self.ris.add_supported_context(MPPS)
        self.risPort = freePort()
        self.startRis()
        self.addCleanup(self.ris.shutdown)
        server.addNode("RIS", self.risPort)
        server.setIni(ForwardMPPSTo="RIS")

    def startRis(self):
        self.ris.start_server(("127.0.0.1", self.risPort), block=False, evt_handlers=[
            (evt.EVT_N_CREATE, self.onCreate), (evt.EVT_N_SET, self.onSet)])

    def onCreate(self, event):
        self.received.append(("N-CREATE", event.request.AffectedSOPInstanceUID, event.attribute_list))
        return 0x0000, event.attribute_list

    def onSet(self, event):
        self.received.append(("N-SET", event.request.RequestedSOPInstanceUID, event.attribute_list))
        return self.setStatus, event.attribute_list

    def test_stepsGoOnToTheRis(self):
        uid = generate_uid()
        self.assertEqual(self.create(inProgress(), uid).Status, 0x0000)
        self.assertEqual(self.set(completed(), generate_uid()).Status, 0x0112)
        self.assertEqual(self.set(completed(), uid).Status, 0x0000)
        waitFor(lambda: len(self.received) == 2, message="the forwarded N-CREATE and N-SET")
        (create, createdUID, created), (set_, setUID, changes) = self.received
        self.assertEqual((create, createdUID, set_, setUID), ("N-CREATE", uid, "N-SET", uid))
        self.assertEqual((created.PatientID, created.PerformedProcedureStepStatus,
                          created.ScheduledStepAttributesSequence[0].AccessionNumber),
                         ("PATMPPS", "IN PROGRESS", "ACC-MPPS-1"))
        self.assertEqual((changes.PerformedProcedureStepStatus, changes.PerformedProcedureStepEndTime),
                         ("COMPLETED", "103000"))
        waitFor(lambda: f"MPPS {uid}: N-SET-RQ forwarded to RIS" in self.server.log(), message="the log line")
        self.assertIn(f"MPPS {uid}: N-CREATE-RQ forwarded to RIS", self.server.log())

    def test_aRefusalIsLoggedNotRetried(self):
        self.setStatus = 0x0110
        uid = generate_uid()
        self.assertEqual(self.create(inProgress(), uid).Status, 0x0000)
        self.assertEqual(self.set(completed(), uid).Status, 0x0000)
        waitFor(lambda: f"MPPS {uid}: RIS refused the forwarded N-SET-RQ with status 0x0110" in self.server.log(),
                message="the refusal logged")
        self.assertEqual([kind for kind, _, _ in self.received], ["N-CREATE", "N-SET"])
        self.assertNotIn("failed (attempt", self.server.log())

    def test_forwardedAfterARestart(self):
        """The RIS is down: the N-CREATE and the N-SET after it wait (in
        PacsMPPSForwards); pacs is killed; when it starts again they reach
        the RIS in order, and the table is empty."""
        self.ris.shutdown()
        uid = generate_uid()
        self.assertEqual(self.create(inProgress(), uid).Status, 0x0000)
        waitFor(lambda: f"MPPS {uid}: N-CREATE-RQ to RIS failed (attempt 1 of 3)" in self.server.log(),
                message="a failed attempt")
        self.assertEqual(self.set(completed(), uid).Status, 0x0000)
        self.server.kill()
        self.startRis()
        self.server.start()
        waitFor(lambda: len(self.received) == 2, message="the N-CREATE and N-SET sent after the restart")
        self.assertEqual([(kind, sent) for kind, sent, _ in self.received], [("N-CREATE", uid), ("N-SET", uid)])
        self.assertEqual(self.received[1][2].PerformedProcedureStepStatus, "COMPLETED")
        self.assertIn("MPPS: 2 message(s) for RIS waited when pacs stopped; sending them now", self.server.log())

        def waiting():
            with sqlite3.connect(self.server.database) as connection:
                return connection.execute("SELECT id FROM PacsMPPSForwards").fetchall()
        waitFor(lambda: waiting() == [], message="the forwarded messages forgotten")
