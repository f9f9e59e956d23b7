"""Storage Commitment Push Model against a running ``twistd -n pacs``, with
pynetdicom as the modality (DCMTK has no storage commitment SCU): objects
stored with DCMTK's storescu are committed, unknown ones and a wrong SOP
class are not; the report comes on the requesting association while it is
open, else on a new association to the modality's own listener (SCP role,
acrnema.map), again while the modality is away, and after pacs starts
again, but not once the modality refused it; a malformed request is
refused."""

import os
import sqlite3
import threading
import time

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from twisted.trial import unittest

from tests.interop.index import rows
from tests.interop.server import PacsServer, freePort
from tests.interop.test_forwarding import waitFor
from tests.pacscore.dicom.requests import commitmentRequest

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
CT = get_testdata_file("CT_small.dcm")
MR = get_testdata_file("MR_small.dcm")
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


class Reports:
    """The N-EVENT-REPORTs a pynetdicom handler received, answered
    ``status``."""

    def __init__(self, status=0x0000):
        self.status = status
        self.received = []
        self.arrived = threading.Event()

    def handle(self, event):
        self.received.append((event.event_type_id if hasattr(event, "event_type_id") else
                              event.request.EventTypeID, event.event_information, event.assoc.is_requestor))
        self.arrived.set()
        return self.status, None

    def wait(self, timeout=30):
        if not self.arrived.wait(timeout):
            raise AssertionError("no N-EVENT-REPORT arrived")
        return self.received[-1]


class StorageCommitmentTests(unittest.TestCase):

    def setUp(self):
        self.server = PacsServer(self.mktemp())
        self.listenPort = freePort()
        self.server.addNode("MODALITY", self.listenPort)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.assertEqual(self.server.store(CT).returncode, 0)
        self.ct = pydicom.dcmread(CT, stop_before_pixels=True)
        self.modality = AE(ae_title="MODALITY")
        self.modality.add_requested_context(STORAGE_COMMITMENT)

    def listen(self, status=0x0000):
        """Start MODALITY's own listener (SCP role), answering ``status``;
        the Reports it gets."""
        reports = Reports(status)
        listener = AE(ae_title="MODALITY")
        listener.add_supported_context(STORAGE_COMMITMENT, scu_role=False, scp_role=True)
        server = listener.start_server(("127.0.0.1", self.listenPort), block=False,
                                       evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handle)])
        self.addCleanup(server.shutdown)
        return reports

    def send(self, request, handlers=(), release=True):
        """N-ACTION ``request`` from MODALITY; the N-ACTION-RSP status."""
        association = self.modality.associate("127.0.0.1", self.server.port, ae_title="PACS",
                                              evt_handlers=list(handlers))
        self.assertTrue(association.is_established)
        status, _ = association.send_n_action(request, 1, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE)
        if release:
            association.release()
        return association, status

    def releaseAfterReport(self, association):
        """Release MODALITY's association once pacs logged its report taken:
        a release begun while pynetdicom's own thread still finishes its
        N-EVENT-REPORT-RSP can spin for ever (its reactor left paused), so
        the test hung; a release that still does not end fails it."""
        waitFor(lambda: "reported to MODALITY on its association" in self.server.log(), message="the log line")
        releasing = threading.Thread(target=association.release, daemon=True)
        releasing.start()
        releasing.join(30)
        self.assertFalse(releasing.is_alive(), "pynetdicom's A-RELEASE did not end within 30 s")

    def test_reportOnTheSameAssociation(self):
        """Stored CT committed; an unknown UID (0x0112) and CT's UID under
        the MR class (0x0119) not: event type 2 on the open association."""
        reports = Reports()
        unknown = generate_uid()
        request = commitmentRequest([(self.ct.SOPClassUID, self.ct.SOPInstanceUID), (self.ct.SOPClassUID, unknown),
                                     (MR_STORAGE, self.ct.SOPInstanceUID)])
        association, status = self.send(request, [(evt.EVT_N_EVENT_REPORT, reports.handle)], release=False)
        self.assertEqual(status.Status, 0x0000)
        eventType, report, onRequestor = reports.wait()
        self.assertEqual((eventType, onRequestor), (2, True))
        self.assertEqual(report.TransactionUID, request.TransactionUID)
        self.assertEqual([item.ReferencedSOPInstanceUID for item in report.ReferencedSOPSequence],
                         [self.ct.SOPInstanceUID])
        self.assertEqual(report.RetrieveAETitle, "PACS")
        self.assertEqual({(item.ReferencedSOPInstanceUID, item.ReferencedSOPClassUID, item.FailureReason)
                          for item in report.FailedSOPSequence},
                         {(unknown, self.ct.SOPClassUID, 0x0112), (self.ct.SOPInstanceUID, MR_STORAGE, 0x0119)})
        self.releaseAfterReport(association)

    def test_damagedFilesNotCommitted(self):
        """The stored CT file cut to half its size, the MR one overwritten
        with zeros, without a mirror: neither is committed (0x0110, a log
        line each), as neither could be retrieved."""
        self.assertEqual(self.server.store(MR).returncode, 0)
        mr = pydicom.dcmread(MR, stop_before_pixels=True)
        files = {row["SOPInstanceUID"]: os.path.join(self.server.dataDir, row["ObjectFile"])
                 for row in rows(self.server.database, "DICOMImages")}
        size = os.path.getsize(files[self.ct.SOPInstanceUID])
        with open(files[self.ct.SOPInstanceUID], "r+b") as f:
            f.truncate(size // 2)
        size = os.path.getsize(files[mr.SOPInstanceUID])
        with open(files[mr.SOPInstanceUID], "r+b") as f:
            f.write(bytes(size))
        reports = Reports()
        request = commitmentRequest([(self.ct.SOPClassUID, self.ct.SOPInstanceUID),
                                     (mr.SOPClassUID, mr.SOPInstanceUID)])
        association, status = self.send(request, [(evt.EVT_N_EVENT_REPORT, reports.handle)], release=False)
        self.assertEqual(status.Status, 0x0000)
        eventType, report, _ = reports.wait()
        self.releaseAfterReport(association)
        self.assertEqual(eventType, 2)
        self.assertNotIn("ReferencedSOPSequence", report)
        self.assertEqual({(item.ReferencedSOPInstanceUID, item.FailureReason) for item in report.FailedSOPSequence},
                         {(self.ct.SOPInstanceUID, 0x0110), (mr.SOPInstanceUID, 0x0110)})
        log = self.server.log()
        self.assertIn(f"{self.ct.SOPInstanceUID} not committed, its file cannot be read: ", log)
        self.assertIn(f"{mr.SOPInstanceUID} not committed, its file cannot be read: ", log)
        self.assertIn("0 committed, 2 not", log)

    def test_reportOnANewAssociation(self):
        """The modality releases at once and listens with the SCP role: the
        report (event type 1, all committed) comes on a new association."""
        reports = self.listen()
        request = commitmentRequest([(self.ct.SOPClassUID, self.ct.SOPInstanceUID)])
        _, status = self.send(request)
        self.assertEqual(status.Status, 0x0000)
        eventType, report, onRequestor = reports.wait()
        self.assertEqual((eventType, onRequestor), (1, False))
        self.assertEqual(report.TransactionUID, request.TransactionUID)
        self.assertNotIn("FailedSOPSequence", report)
        waitFor(lambda: "reported to MODALITY on a new association" in self.server.log(), message="the log line")

    def test_reportAfterACrash(self):
        """The modality is not listening when the report is due and pacs is
        killed: the request was recorded before its Success, so pacs checks
        and reports it when it starts again, then forgets it."""
        request = commitmentRequest([(self.ct.SOPClassUID, self.ct.SOPInstanceUID)])
        _, status = self.send(request)
        self.assertEqual(status.Status, 0x0000)
        waitFor(lambda: "report to MODALITY failed (attempt 1 of 3)" in self.server.log(), message="a failed attempt")
        self.server.kill()
        reports = self.listen()
        self.server.start()
        eventType, report, onRequestor = reports.wait()
        self.assertEqual((eventType, onRequestor), (1, False))
        self.assertEqual(report.TransactionUID, request.TransactionUID)
        self.assertEqual([item.ReferencedSOPInstanceUID for item in report.ReferencedSOPSequence],
                         [self.ct.SOPInstanceUID])
        self.assertIn(f"storage commitment {request.TransactionUID} from MODALITY: recorded but not reported",
                      self.server.log())

        def recorded():
            with sqlite3.connect(self.server.database) as connection:
                return connection.execute("SELECT TransactionUID FROM PacsCommitments").fetchall()
        waitFor(lambda: recorded() == [], message="the request forgotten")

    def test_reportWhenTheModalityIsBack(self):
        """RetryDelay = 1: the modality listens only after every attempt
        failed; the report comes without a restart of pacs."""
        self.server.stop()
        self.server.setIni(RetryDelay="1")
        self.server.start()
        request = commitmentRequest([(self.ct.SOPClassUID, self.ct.SOPInstanceUID)])
        _, status = self.send(request)
        self.assertEqual(status.Status, 0x0000)
        waitFor(lambda: "could not be reported to MODALITY; tried again every 1 s" in self.server.log(),
                message="every attempt failed")
        reports = self.listen()
        eventType, report, onRequestor = reports.wait()
        self.assertEqual((eventType, onRequestor, report.TransactionUID), (1, False, request.TransactionUID))

    def test_aRefusedReportIsNotSentAgain(self):
        """RetryDelay = 1, the modality answers the report on a new
        association 0x0112 (it no longer knows the transaction): one
        report, one warning line, the request forgotten; it got it again
        every second."""
        self.server.stop()
        self.server.setIni(RetryDelay="1")
        self.server.start()
        reports = self.listen(0x0112)
        request = commitmentRequest([(self.ct.SOPClassUID, self.ct.SOPInstanceUID)])
        _, status = self.send(request)
        self.assertEqual(status.Status, 0x0000)
        reports.wait()
        refused = (f"storage commitment {request.TransactionUID}: MODALITY refused the report (N-EVENT-REPORT "
                   f"answered with status 0x0112); not sent again")
        waitFor(lambda: refused in self.server.log(), timeout=10, message="the refusal logged")
        time.sleep(2.5)  # two RetryDelays
        self.assertEqual(len(reports.received), 1)
        self.assertEqual(self.server.log().count("refused the report"), 1)
        self.assertEqual(rows(self.server.database, "PacsCommitments"), [])

    def test_malformedRequests(self):
        """No Transaction UID, or an empty reference list: 0x0115 and a log line."""
        for request in (commitmentRequest([(self.ct.SOPClassUID, self.ct.SOPInstanceUID)]), commitmentRequest([])):
            if request.ReferencedSOPSequence:
                del request.TransactionUID
            _, status = self.send(request)
            self.assertEqual(status.Status, 0x0115)
        self.assertIn("storage commitment refused: no Transaction UID", self.server.log())
        self.assertIn("storage commitment refused: no Referenced SOP Sequence", self.server.log())
        self.assertEqual(self.server.echo().returncode, 0)  # still serving

    def test_valuesThatAreNoUIDs(self):
        """A Transaction UID of two values or 100 characters, a reference
        whose instance UID is a wildcard or two UIDs: 0x0115 and one log
        line each, no index lookup (a wildcard would match every object),
        nothing recorded."""
        ct = (self.ct.SOPClassUID, self.ct.SOPInstanceUID)
        for transaction, reference, named in (
                ("1.2.3\\4.5.6", ct, "Transaction UID (0008,1195) '1.2.3\\\\4.5.6' is not a UID"),
                ("1" * 100, ct, "Transaction UID (0008,1195) '" + "1" * 80 + "' is not a UID"),
                (None, (self.ct.SOPClassUID, "*"), "Referenced SOP Instance UID (0008,1155) '*' is not a UID"),
                (None, (self.ct.SOPClassUID, self.ct.SOPInstanceUID + "\\1.2.3"),
                 "Referenced SOP Instance UID (0008,1155)")):
            before = len(self.server.log())
            _, status = self.send(commitmentRequest([ct, reference], transaction))
            self.assertEqual(status.Status, 0x0115)
            log = self.server.log()[before:]
            self.assertIn(f"storage commitment refused: {named}", log)
            self.assertEqual(log.count("storage commitment"), 1, log)
        self.assertNotIn("committed", self.server.log())
        self.assertNotIn("Invalid value for VR UI", self.server.log())  # pydicom's warning: the refusal tells
        self.assertEqual(rows(self.server.database, "PacsCommitments"), [])
