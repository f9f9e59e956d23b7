"""Export converters forwarding from a running ``twistd -n pacs``: CT to a
second pacs, MR "compressed as jk" (JPEG 2000 lossless) to DCMTK's
storescp, and a destination that is down while the sender restarts: every
image arrives exactly once when it comes up; STOW-RS to Orthanc's DICOMweb
plugin (a ``[DICOMwebServers]`` destination), refused until its password
is right, and a study fetched from it with WADO-RS."""

import os
import shutil
import signal
import sqlite3
import tempfile
import time
import urllib.request

import numpy
import pydicom
from twisted.trial import unittest

from pacscore.testing.corpus import PREFIX, makeDataset
from tests.interop.index import column
from tests.interop.peers import OrthancServer, StorescpServer
from tests.interop.server import PacsServer, waitFor

JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


def writeImages(folder, modality, count, study, patient="PATFWD"):
    """``count`` 64x64 images of one series of ``patient``; their paths and SOP UIDs."""
    os.makedirs(folder, exist_ok=True)
    series = f"{study}.{ord(modality[0])}"
    images = []
    for n in range(count):
        sop = f"{series}.{n + 1}"
        ds = makeDataset(patient, "Forward^Test", study, series, sop, 1, n + 1, modality=modality, seed=n)
        path = os.path.join(folder, f"{patient}{modality}{n}.dcm")
        ds.save_as(path, enforce_file_format=True)
        images.append((path, sop))
    return images


def queued(server):
    """The actions still in a pacs's export queue."""
    with sqlite3.connect(server.database) as connection:
        return connection.execute("SELECT count(*) FROM PacsForwards").fetchone()[0]


class HungPrograms:
    """Stops the programs whose process IDs they wrote to the file ``pids``."""

    def __init__(self, pids):
        self.pids = pids

    def stop(self):
        if os.path.exists(self.pids):
            with open(self.pids) as f:
                for pid in f.read().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass


class ForwardingTests(unittest.TestCase):

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-forwarding-")
        self.running = []

    def tearDown(self):
        for peer in reversed(self.running):
            peer.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self, peer):
        self.running.append(peer)
        return peer.start()

    def test_ctToPacsAndMrCompressedToStorescp(self):
        receiver = PacsServer(os.path.join(self.workdir, "b"), ae="PACSB")
        storescp = StorescpServer(os.path.join(self.workdir, "storescp"), aet="STORESCP")
        sender = PacsServer(os.path.join(self.workdir, "a"), ae="PACSA", ini={
            "ExportConverters": "2",
            "ExportModality0": "CT", "ExportConverter0": "forward to PACSB",
            "ExportModality1": "MR", "ExportConverter1": "forward compressed as jk to STORESCP"})
        sender.addNode("PACSB", receiver.port)
        sender.addNode("STORESCP", storescp.port)
        for peer in (receiver, storescp, sender):
            self.start(peer)
        study = PREFIX + "77.1"
        ct = writeImages(os.path.join(self.workdir, "in"), "CT", 3, study)
        mr = writeImages(os.path.join(self.workdir, "in"), "MR", 2, study)
        result = sender.store(*[path for path, _ in ct + mr])
        self.assertEqual(result.returncode, 0, result.stderr)
        waitFor(lambda: len(column(receiver.database, "DICOMImages", "SOPInstanceUID")) == 3 and
                len(storescp.files()) == 2, message="the forwarded images")
        self.assertEqual(column(receiver.database, "DICOMImages", "SOPInstanceUID"), sorted(sop for _, sop in ct))
        received = {ds.SOPInstanceUID: ds for ds in storescp.datasets()}
        self.assertEqual(sorted(received), sorted(sop for _, sop in mr))
        for path, sop in mr:
            self.assertEqual(received[sop].file_meta.TransferSyntaxUID, JPEG_2000_LOSSLESS)
            self.assertTrue(numpy.array_equal(received[sop].pixel_array, pydicom.dcmread(path).pixel_array))
        waitFor(lambda: queued(sender) == 0, message="an empty queue")

    def test_forwardToHostAndPort(self):
        """Manual: "AE must be known to this server or may be written as
        ip:port": storescp, in no acrnema.map, gets the image."""
        storescp = StorescpServer(os.path.join(self.workdir, "storescp"), aet="STORESCP")
        sender = PacsServer(os.path.join(self.workdir, "a"), ae="PACSA", ini={
            "ExportConverters": "1", "ExportConverter0": f"forward to 127.0.0.1:{storescp.port}"})
        for peer in (storescp, sender):
            self.start(peer)
        [(path, sop)] = writeImages(os.path.join(self.workdir, "in"), "CT", 1, PREFIX + "77.5")
        self.assertEqual(sender.store(path).returncode, 0)
        waitFor(lambda: len(storescp.files()) == 1, message="the forwarded image")
        self.assertEqual([ds.SOPInstanceUID for ds in storescp.datasets()], [sop])
        waitFor(lambda: queued(sender) == 0, message="an empty queue")

    def test_programsAsExportConverters(self):
        """Conquest's export converter options 1 and 3: a program given the
        stored file's name (``convert.sh``), and a command line with
        %-variables (``cp %f copies/%o.dcm``)."""
        sender = PacsServer(os.path.join(self.workdir, "a"), ae="PACSA", ini={
            "ExportConverters": "2", "ExportConverter0": "sh convert.sh",
            "ExportModality1": "CT", "ExportConverter1": "mkdir -p copies && cp %f copies/%o.dcm"})
        with open(os.path.join(sender.workdir, "convert.sh"), "w") as f:
            f.write('echo "$1" >> converted.txt\n')
        self.start(sender)
        ct = writeImages(os.path.join(self.workdir, "in"), "CT", 2, PREFIX + "77.3")
        result = sender.store(*[path for path, _ in ct])
        self.assertEqual(result.returncode, 0, result.stderr)
        copies = os.path.join(sender.workdir, "copies")
        waitFor(lambda: os.path.isdir(copies) and len(os.listdir(copies)) == 2, message="the copies")
        waitFor(lambda: queued(sender) == 0, message="an empty queue")
        with open(os.path.join(sender.workdir, "converted.txt")) as f:
            converted = sorted(f.read().split())
        self.assertEqual([pydicom.dcmread(path).SOPInstanceUID for path in converted], sorted(sop for _, sop in ct))
        for path, sop in ct:
            self.assertEqual(pydicom.dcmread(os.path.join(copies, f"{sop}.dcm")).PixelData,
                             pydicom.dcmread(path).PixelData)

    def test_downDestinationSenderRestartsEveryImageArrivesOnce(self):
        destination = StorescpServer(os.path.join(self.workdir, "b"), aet="DOWNSCP")
        sender = PacsServer(os.path.join(self.workdir, "a"), ae="PACSA", ini={
            "ExportConverters": "1", "ExportConverter0": "forward to DOWNSCP",
            "RetryDelay": "1", "FailHoldOff": "1", "MaximumExportRetries": "0"})
        sender.addNode("DOWNSCP", destination.port)
        self.start(sender)
        images = writeImages(os.path.join(self.workdir, "in"), "CT", 4, PREFIX + "77.2")
        result = sender.store(*[path for path, _ in images])
        self.assertEqual(result.returncode, 0, result.stderr)
        waitFor(lambda: sender.log().count("failed: cannot associate with DOWNSCP") >= 2,
                message="failed attempts in the log")
        waitFor(lambda: queued(sender) == 4, message="four queued forwards")
        sender.stop()
        self.assertEqual(queued(sender), 4)
        sender.start()
        self.start(destination)
        waitFor(lambda: len(destination.files()) >= 4, message="the images at the destination")
        waitFor(lambda: queued(sender) == 0, message="an empty queue")
        time.sleep(2)  # several more polls and retry delays: nothing is sent twice
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in destination.datasets()),
                         sorted(sop for _, sop in images))

    def test_stopWhileForwardingToASlowDestinationSendsNothingTwice(self):
        """SIGTERM while a slow destination (a second per image) takes a
        batch of forwards: pacs stops after the image in flight, and after
        the restart the rest go, each image arriving once."""
        destination = StorescpServer(os.path.join(self.workdir, "b"), aet="SLOWSCP", options=("--sleep-after", "1"))
        sender = PacsServer(os.path.join(self.workdir, "a"), ae="PACSA", ini={
            "ExportConverters": "1", "ExportConverter0": "forward to SLOWSCP"})
        sender.addNode("SLOWSCP", destination.port)
        self.start(destination)
        self.start(sender)
        images = writeImages(os.path.join(self.workdir, "in"), "CT", 12, PREFIX + "77.5")
        result = sender.store(*[path for path, _ in images])
        self.assertEqual(result.returncode, 0, result.stderr)
        waitFor(lambda: len(destination.files()) >= 2, message="the first images at the destination")
        started = time.monotonic()
        sender.stop()
        self.assertLess(time.monotonic() - started, 5)
        self.assertGreater(queued(sender), 0)
        sender.start()
        waitFor(lambda: queued(sender) == 0, message="an empty queue")
        time.sleep(2)
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in destination.datasets()),
                         sorted(sop for _, sop in images))

    def test_aPatientDeletedWhileItIsForwardedDoesNotHoldItsDestinationOff(self):
        """``dgate --deletepatient:`` while that patient's forward is being
        sent to a slow destination (a second per image), its objects
        located: the deleted objects are skipped, and the other patient's
        forward goes at once, not FailHoldOff (60 s) later."""
        destination = StorescpServer(os.path.join(self.workdir, "b"), aet="SLOWSCP", options=("--sleep-after", "1"))
        sender = PacsServer(os.path.join(self.workdir, "a"), ae="PACSA", ini={
            "ExportConverters": "1", "ExportConverter0": "forward patient to SLOWSCP", "ForwardCollectDelay": "1"})
        sender.addNode("SLOWSCP", destination.port)
        self.start(destination)
        self.start(sender)
        deleted = writeImages(os.path.join(self.workdir, "in"), "CT", 6, PREFIX + "77.6", patient="PATDEL")
        kept = writeImages(os.path.join(self.workdir, "in"), "CT", 3, PREFIX + "77.7", patient="PATKEEP")
        result = sender.store(*[path for path, _ in deleted + kept])
        self.assertEqual(result.returncode, 0, result.stderr)
        waitFor(lambda: len(destination.files()) >= 1, timeout=10, message="the first image of PATDEL")
        self.assertEqual(sender.dgate("--deletepatient:PATDEL").stdout.strip(), "6 object(s) removed from the server")
        waitFor(lambda: {sop for _, sop in kept} <= {ds.SOPInstanceUID for ds in destination.datasets()}, timeout=8,
                message="the images of PATKEEP")
        waitFor(lambda: queued(sender) == 0, timeout=5, message="an empty queue")
        self.assertIn("was deleted since its forward was looked up: skipped", sender.log())
        self.assertNotIn("holding SLOWSCP off", sender.log())

    def test_givenUpForwardsAreVisibleAndRetriedByHand(self):
        destination = StorescpServer(os.path.join(self.workdir, "b"), aet="LATESCP")
        sender = PacsServer(os.path.join(self.workdir, "a"), ae="PACSA", ini={
            "ExportConverters": "1", "ExportConverter0": "forward to LATESCP",
            "RetryDelay": "1", "FailHoldOff": "1", "MaximumExportRetries": "2"})
        sender.addNode("LATESCP", destination.port)
        self.start(sender)
        images = writeImages(os.path.join(self.workdir, "in"), "CT", 2, PREFIX + "77.3")
        self.assertEqual(sender.store(*[path for path, _ in images]).returncode, 0)
        waitFor(lambda: "LATESCP: 0 pending, 2 failed" in sender.dgate("--forwardqueue").stdout,
                message="two given-up forwards")
        listing = sender.dgate("--forwardqueue").stdout
        self.assertEqual(listing.count("failed: #"), 2, listing)
        self.assertIn("after 3 attempts", listing)
        self.start(destination)
        retried = sender.dgate("--retryforwards:LATESCP")
        self.assertEqual(retried.returncode, 0, retried.stderr)
        self.assertIn("2 failed item(s) put back in the queue", retried.stdout)
        waitFor(lambda: len(destination.files()) == 2, message="the retried images")
        waitFor(lambda: queued(sender) == 0, message="an empty queue")


    def startHungProgramSender(self):
        """A storescp and a pacs whose first export line runs a program that
        hangs the first time (killed at the end of the test, before pacs
        stops), the second forwarding to the storescp; both started."""
        storescp = StorescpServer(os.path.join(self.workdir, "storescp"), aet="STORESCP")
        sender = PacsServer(os.path.join(self.workdir, "a"), ae="PACSA", ini={
            "ExportConverters": "2", "ExportConverter0": "sh hang.sh %f",
            "ExportConverter1": "forward to STORESCP", "QuitGracePeriod": "2"})
        sender.addNode("STORESCP", storescp.port)
        with open(os.path.join(sender.workdir, "hang.sh"), "w") as f:
            f.write("test -e hung.pid && exit 0\necho $$ > hung.pid\nexec sleep 60\n")
        self.start(storescp)
        self.start(sender)
        self.running.append(HungPrograms(os.path.join(sender.workdir, "hung.pid")))
        return storescp, sender

    def test_aHungExportProgramHoldsOnlyItsOwnLine(self):
        """A program of one export line that hangs (a copy to a dead NFS
        mount) holds back that line only: the forwards of the other line
        go at once."""
        storescp, sender = self.startHungProgramSender()
        images = writeImages(os.path.join(self.workdir, "in"), "CT", 3, PREFIX + "77.6")
        self.assertEqual(sender.store(*[path for path, _ in images]).returncode, 0)
        waitFor(lambda: len(storescp.files()) == 3, timeout=10, message="the forwards of the other line")
        self.assertEqual(sorted(ds.SOPInstanceUID for ds in storescp.datasets()), sorted(sop for _, sop in images))

    def test_aStopWaitsForTheExportJobsInHandOnlyQuitGracePeriod(self):
        """SIGTERM while an export program hangs: the stop waits
        QuitGracePeriod for it, saying so, and the jobs not run (that one
        too) stay queued for the next start."""
        storescp, sender = self.startHungProgramSender()
        images = writeImages(os.path.join(self.workdir, "in"), "CT", 3, PREFIX + "77.7")
        self.assertEqual(sender.store(*[path for path, _ in images]).returncode, 0)
        waitFor(lambda: os.path.exists(os.path.join(sender.workdir, "hung.pid")), message="the program running")
        started = time.monotonic()
        sender.stop(timeout=20)
        self.assertLess(time.monotonic() - started, 8)
        self.assertIn("stopping: waiting for the export jobs under way of ExportConverter0", sender.log())
        with sqlite3.connect(sender.database) as connection:
            self.assertEqual(connection.execute("SELECT Converter, State, Attempts FROM PacsExportJobs").fetchall(),
                             [("ExportConverter0", "pending", 0)] * 3)

ORTHANC_DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


class DicomWebForwardingTests(unittest.TestCase):

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-stow-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.orthanc = OrthancServer(os.path.join(self.workdir, "orthanc"), config={
            "Plugins": [ORTHANC_DICOMWEB], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "AuthenticationEnabled": True, "RegisteredUsers": {"router": "s3cret"}})
        passwords = urllib.request.HTTPPasswordMgrWithPriorAuth()
        passwords.add_password(None, self.orthanc.url, "router", "s3cret", is_authenticated=True)
        self.orthanc._opener = urllib.request.build_opener(  # its REST API with the login too
            urllib.request.ProxyHandler({}), urllib.request.HTTPBasicAuthHandler(passwords))
        self.addCleanup(self.orthanc.stop)
        self.orthanc.start()

    def sender(self, password):
        sender = PacsServer(os.path.join(self.workdir, "pacs"), ae="PACSA", ini={
            "ExportConverters": "1", "ExportModality0": "CT", "ExportConverter0": "forward to OrthancWeb",
            "RetryDelay": "1", "FailHoldOff": "1"})
        sender.setIni(section="DICOMwebServers",
                      OrthancWeb=f"http://router:{password}@127.0.0.1:{self.orthanc.httpPort}/dicom-web")
        return sender

    def test_ctForwardedWithStowRs(self):
        """CT images stored in pacs reach Orthanc with STOW-RS; a wrong
        password is retried (logged) until the right one is configured."""
        sender = self.sender("wrong")
        sender.start()
        self.addCleanup(sender.stop)
        images = writeImages(os.path.join(self.workdir, "in"), "CT", 3, PREFIX + "77.4")
        self.assertEqual(sender.store(*[path for path, _ in images]).returncode, 0)
        waitFor(lambda: "OrthancWeb answered STOW-RS of 1 object(s) with 401 Unauthorized" in sender.log(),
                message="a refused STOW-RS in the log")
        sender.stop()
        sender = self.sender("s3cret")
        sender.start()
        self.addCleanup(sender.stop)
        waitFor(lambda: len(self.orthanc.instances()) == 3, message="the images in Orthanc")
        waitFor(lambda: queued(sender) == 0, message="an empty queue")
        self.assertEqual(self.orthanc.instances(), sorted(sop for _, sop in images))
        for path, sop in images:
            self.assertTrue(numpy.array_equal(self.orthanc.dataset(sop).pixel_array, pydicom.dcmread(path).pixel_array))
        self.assertIn("STOW-RS to OrthancWeb: 1 object(s) stored", sender.log())

    def test_studyFetchedWithWadoRs(self):
        """dgate --movestudy from the DICOMweb server into pacs: Orthanc's
        objects (stored there by storescu) arrive by WADO-RS, indexed."""
        images = writeImages(os.path.join(self.workdir, "in"), "MR", 3, PREFIX + "77.5")
        self.assertEqual(self.orthanc.store(*[path for path, _ in images]).returncode, 0)
        receiver = self.sender("s3cret")
        receiver.start()
        self.addCleanup(receiver.stop)
        moved = receiver.dgate(f"--movestudy:OrthancWeb,PACSA,:{PREFIX}77.5")
        self.assertEqual(moved.returncode, 0, moved.stdout + moved.stderr)
        self.assertIn("3 object(s) moved from OrthancWeb to PACSA (0 failed", moved.stdout)
        self.assertEqual(column(receiver.database, "DICOMImages", "SOPInstanceUID"), sorted(sop for _, sop in images))
        self.assertIn("fetched from OrthancWeb", receiver.log())
