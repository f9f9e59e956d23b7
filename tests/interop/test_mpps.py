"""Modality Performed Procedure Step against a running ``twistd -n pacs``,
with pynetdicom as the modality (DCMTK has no MPPS SCU): a step created IN
PROGRESS and set COMPLETED with its series, kept across a restart and
listed on the web page; the standard's refusals."""

import urllib.request

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from twisted.trial import unittest

from tests.interop.server import PacsServer

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


class MppsTests(unittest.TestCase):

    def setUp(self):
        self.server = PacsServer(self.mktemp()).start()
        self.addCleanup(self.server.stop)
        ae = AE(ae_title="CT1")
        ae.add_requested_context(MPPS)
        self.association = ae.associate("127.0.0.1", self.server.port, ae_title="PACS")
        self.assertTrue(self.association.is_established)
        self.addCleanup(self.association.release)

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

    def test_createdThenCompleted(self):
        uid = generate_uid()
        self.assertEqual(self.create(inProgress(), uid).Status, 0x0000)
        self.assertIn(f"MPPS {uid} from CT1: IN PROGRESS (CT on CT1, patient PATMPPS, accession ACC-MPPS-1)",
                      self.server.log())
        self.assertIn("<td>IN PROGRESS</td>", self.page())
        self.assertEqual(self.set(completed(), uid).Status, 0x0000)
        self.assertIn(f"MPPS {uid} from CT1: COMPLETED", self.server.log())
        again = self.set(completed(), uid)
        self.assertEqual((again.Status, again.ErrorID), (0x0110, 0xA710))
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
        self.assertIn("refused (0x0111): performed procedure step", self.server.log())
        self.assertIn("<td>IN PROGRESS</td>", self.page())
