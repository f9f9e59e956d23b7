"""Forwards to a DICOMweb server (pacscore.export.stow) and gets from one
(pacscore.export.fetch): one archive's Forwarder POSTs with STOW-RS, or
fetches with WADO-RS, over real HTTP, another archive's /dicom-web (behind
a WebUsers login); levels, compression, batches, refusals."""

import os
from dataclasses import replace

import pydicom
from pydicom.data import get_testdata_file
from twisted.internet import defer, reactor
from twisted.logger import Logger, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.config.errors import ConfigError
from pacscore.config.ini import DicomIni
from pacscore.config.loader import Configuration
from pacscore.dicom import storeddata
from pacscore.export import partsbody, stow
from pacscore.export.fetch import DicomWebFetcher
from pacscore.export.forwarder import Forwarder, ForwardError, Undelivered, Unreadable
from pacscore.export.queue import Action, Target
from pacscore.export.spool import spoolFolder, spoolObject
from pacscore.export.stow import DicomWebServer, dicomWebServers
from pacscore.storage.part10 import readFileMeta
from pacscore.testing.corpus import generateCorpus
from pacscore.web.site import webSite
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.dicom.test_ownretrieves import CONVERTERS
from tests.pacscore.export.fixtures import failingFor
from tests.pacscore.export.test_forwarder import damageBitsStored

JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"


class ServerListTests(unittest.TestCase):

    def test_urls(self):
        server = DicomWebServer.fromURL("Cloud", "https://us%40er:p%3Ass@[::1]:8443/dicom-web/")
        self.assertEqual(server.url, "https://[::1]:8443/dicom-web")
        self.assertEqual(server.authorization, "Basic dXNAZXI6cDpzcw==")  # us@er:p:ss
        self.assertEqual(DicomWebServer.fromURL("X", "http://host/wado").authorization, None)
        for bad in ("ftp://host/x", "host/dicom-web", "http:///dicom-web"):
            self.assertRaises(ValueError, DicomWebServer.fromURL, "X", bad)

    def test_section(self):
        running = RunningArchive(self)
        ini = running.configuration.ini
        ini.set("Cloud", "https://h/dicom-web", section=stow.SECTION)
        self.assertEqual(list(dicomWebServers(running.configuration)), ["CLOUD"])
        ini.set("Broken", "nothing like a URL", section=stow.SECTION)
        self.assertRaisesRegex(ConfigError, r"\[DICOMwebServers\] Broken: 'nothing like a URL' is not",
                               dicomWebServers, running.configuration)

    def test_ofEqualNamesTheFirstIsUsed(self):
        """As ``DicomIni.get`` reads them, the first of two lines with the
        same NAME (case ignored) is used, and a bad later one is named by
        its own line."""
        ini = DicomIni.fromString("[DICOMwebServers]\nORTHANC = http://127.0.0.1:27120/dicom-web\n"
                                  "orthanc = http://127.0.0.1:27121/dicom-web\n", "/c/dicom.ini")
        configuration = Configuration(ini=ini, acrNemaMap=None, sopList=None, layout=None, configDir="/c",
                                      workdir="/w", iniPath="/c/dicom.ini")
        self.assertEqual(dicomWebServers(configuration)["ORTHANC"].url, "http://127.0.0.1:27120/dicom-web")
        self.assertEqual(dicomWebServers(configuration)["ORTHANC"].url,
                         ini.get("ORTHANC", section=stow.SECTION).strip())
        with capturedLogs() as events:
            configuration.warnOfRepeatedWebServers()
        self.assertEqual([formatEvent(event) for event in events],
                         ["/c/dicom.ini:3: [DICOMwebServers] orthanc: the earlier line 2 has this name: this one is "
                          "ignored, the first is used"])
        ini = DicomIni.fromString("[DICOMwebServers]\nBAD = http://127.0.0.1/dicom-web\nbad = ftp://nope\n",
                                  "/c/dicom.ini")
        error = self.assertRaises(ConfigError, dicomWebServers, replace(configuration, ini=ini))
        self.assertEqual(str(error), "/c/dicom.ini:3: [DICOMwebServers] bad: 'ftp://nope' is not an http:// or "
                                     "https:// URL")


def datasetBytes(path):
    """The data set of a Part-10 file, as bytes."""
    with open(path, "rb") as f:
        readFileMeta(f)
        return f.read()


class StowForwardTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.source = RunningArchive(self, ae="SOURCE")
        self.corpus = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                     seriesPerStudy=2, imagesPerSeries=3)
        yield self.source.store(self.corpus)
        self.destination = RunningArchive(self, ae="CLOUD", ini={"WebUsers": "webusers"}, webUsers={"router": "s3cret"})
        listening = reactor.listenTCP(0, webSite(self.destination.archive), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.url = f"http://127.0.0.1:{listening.getHost().port}/dicom-web"

    def forwarder(self, url=None):
        archive = self.source.archive
        servers = {"CLOUD": DicomWebServer.fromURL("Cloud", url or self.url.replace("//", "//router:s3cret@"))}
        forwarder = Forwarder(reactor, archive.configuration.acrNemaMap, archive.aeTitle, archive.index,
                              archive.query, archive.objectReader, archive.workers, dicomWebServers=servers)
        self.addCleanup(lambda: defer.ensureDeferred(forwarder.closeAll()))
        return forwarder

    def action(self, level="STUDY", compression="", destination="cloud"):
        image = self.corpus[0]
        return Action(1, "forward", destination, level, Target(image.patientID, image.studyUID), compression, {}, 0)

    @defer.inlineCallbacks
    def test_studyForwarded(self):
        """Every object of the study arrives byte for byte (data set), in
        two requests when the batch is small; onSent counts them."""
        self.patch(stow, "BATCH_BYTES", 3 * os.path.getsize(self.corpus[0].path))
        counts = []
        sent = yield defer.ensureDeferred(self.forwarder().forward(self.action(), counts.append))
        self.assertEqual(sent, len(self.corpus))
        self.assertEqual(counts, [3, 6])
        self.assertEqual((yield self.destination.count("image")), len(self.corpus))
        stored = {pydicom.dcmread(path).SOPInstanceUID: pydicom.dcmread(path) for path in self.destination.files()}
        for image in self.corpus:
            original = pydicom.dcmread(image.path)
            self.assertEqual(stored[image.sopUID].PixelData, original.PixelData)
            self.assertEqual(stored[image.sopUID].PatientName, original.PatientName)

    @defer.inlineCallbacks
    def test_storedObjectsGoFromTheirFiles(self):
        """Objects sent as stored stream from their files a piece at a time
        (here every object counts as large); the files are closed after."""
        self.patch(storeddata, "STREAMED_OBJECT", 1024)
        self.patch(partsbody, "PIECE_BYTES", 1000)
        opened, openStored = [], storeddata.openStored
        self.patch(storeddata, "openStored", lambda *a: opened.append(openStored(*a)) or opened[-1])
        sent = yield defer.ensureDeferred(self.forwarder().forward(self.action()))
        self.assertEqual(sent, len(self.corpus))
        self.assertEqual(len([data for data in opened if data is not None]), len(self.corpus))
        stored = {pydicom.dcmread(path).SOPInstanceUID: path for path in self.destination.files()}
        for image in self.corpus:
            self.assertEqual(datasetBytes(stored[image.sopUID]), datasetBytes(image.path))
        folder = os.path.realpath(self.source.archive.devices[0].path)
        files = [os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]
        self.assertEqual([path for path in files if path.startswith(folder) and path.endswith(".dcm")], [])

    @defer.inlineCallbacks
    def test_compressedAs(self):
        """``forward compressed as jk``: the server gets JPEG 2000 lossless."""
        yield defer.ensureDeferred(self.forwarder().forward(self.action(compression="jk")))
        syntaxes = {pydicom.dcmread(path).file_meta.TransferSyntaxUID for path in self.destination.files()}
        self.assertEqual(syntaxes, {JPEG_2000_LOSSLESS})

    @defer.inlineCallbacks
    def test_anObjectTheEncoderCannotTakeGoesUncompressed(self):
        """``forward compressed as jk``: a 32-bit RT Dose, which JPEG 2000
        cannot take, goes as stored, implicit VR little endian (logged), as
        a C-STORE forward sends it; the others still go as JPEG 2000."""
        dose = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
        image = self.corpus[0]
        dose.PatientID, dose.StudyInstanceUID = image.patientID, image.studyUID
        path = os.path.abspath(self.mktemp())
        dose.save_as(path)
        yield self.source.store([replace(image, path=path, seriesUID=dose.SeriesInstanceUID,
                                         sopUID=dose.SOPInstanceUID)])
        sent = yield defer.ensureDeferred(self.forwarder().forward(self.action(compression="jk")))
        self.assertEqual(sent, len(self.corpus) + 1)
        syntaxes = {pydicom.dcmread(path).SOPInstanceUID: pydicom.dcmread(path).file_meta.TransferSyntaxUID
                    for path in self.destination.files()}
        self.assertEqual(syntaxes.pop(dose.SOPInstanceUID), IMPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(set(syntaxes.values()), {JPEG_2000_LOSSLESS})

    @defer.inlineCallbacks
    def test_aDamagedObjectIsLeftOutNotRetried(self):
        """A stored file damaged before its Pixel Data (the VR of Bits
        Stored overwritten: an impossible length) is left out with one log
        line, the others are stored, the forward fails with Undelivered."""
        damageBitsStored(self.source.files()[0])
        forwarder, events = self.forwarder(), []
        forwarder.log = Logger(observer=events.append)
        error = yield self.assertFailure(defer.ensureDeferred(forwarder.forward(self.action())), Undelivered)
        self.assertEqual(error.sent, len(self.corpus) - 1)
        self.assertEqual((yield self.destination.count("image")), len(self.corpus) - 1)
        [line] = [formatEvent(event) for event in events]
        self.assertRegex(line, r"^forward to cloud: [0-9.]+ left out, not retried: [0-9.]+ cannot be read: "
                               r"element \(0028,0101\)")

    @defer.inlineCallbacks
    def located(self, forwarder, action):
        """``forwarder``'s ``locate`` result of ``action``."""
        [found] = yield forwarder.locate([action])
        return found

    @defer.inlineCallbacks
    def test_anObjectDeletedAfterItWasLocatedIsSkipped(self):
        """The study located, then one of its objects deleted: it is skipped
        with a log line, the others are stored, the forward succeeds."""
        forwarder, action = self.forwarder(), self.action()
        found = yield self.located(forwarder, action)
        gone = found[0][0]
        yield self.source.archive.localActions.removeInstances([gone])
        with capturedLogs() as events:
            sent = yield defer.ensureDeferred(forwarder.forward(action, found=found))
        self.assertEqual(sent, len(self.corpus) - 1)
        self.assertEqual((yield self.destination.count("image")), len(self.corpus) - 1)
        self.assertIn(f"STOW-RS to Cloud: {gone.sopInstanceUID} was deleted since its forward was looked up: skipped",
                      [formatEvent(event) for event in events])

    @defer.inlineCallbacks
    def test_anObjectThatCannotBeReadHereFailsTheForwardAsUnreadable(self):
        """A file that cannot be read once located (a folder: EISDIR, as
        EIO would be): the others are stored, then the forward fails with
        Unreadable (retried, but the server is not held off), to retry that
        object only (``retryOnly``: the others went); of an image forward,
        the action whole."""
        forwarder, action = self.forwarder(), self.action()
        found = yield self.located(forwarder, action)
        instance = found[0][0]
        path = self.source.archive.objectReader.magPath(instance.deviceName, instance.objectFile)
        os.remove(path)
        os.mkdir(path)
        error = yield self.assertFailure(defer.ensureDeferred(forwarder.forward(action, found=found)), Unreadable)
        self.assertIn(f"{instance.sopInstanceUID} could not be read here: [Errno 21] Is a directory", str(error))
        self.assertEqual((yield self.destination.count("image")), len(self.corpus) - 1)
        self.assertEqual(error.retryOnly, (Target(instance.patientID, instance.studyInstanceUID,
                                                  instance.seriesInstanceUID, instance.sopInstanceUID),))
        image = Action(1, "forward", "cloud", "IMAGE", error.retryOnly[0], "", {}, 0)
        error = yield self.assertFailure(defer.ensureDeferred(forwarder.forward(image)), Unreadable)
        self.assertEqual(error.retryOnly, ())

    @defer.inlineCallbacks
    def test_aChangedCopyGoneBeforeItIsReadIsLeftOutNotRetried(self):
        """The spool file of an object an export line changed is gone after
        the forward located it and before it is read: it is left out
        (``ChangedCopyGone``, as a C-STORE forward leaves it out), the
        forward fails with Undelivered (given up, not an Unreadable retried
        for ever), and the stored object is not sent in its place."""
        image = self.corpus[0]
        changed = pydicom.dcmread(self.source.files()[0])
        changed.PatientID = "ANON1"
        changed.SOPInstanceUID = image.sopUID + ".99"
        path = spoolObject(changed, spoolFolder(self.source.archive.devices[0].path))
        action = Action(1, "forward", "cloud", "IMAGE", Target(image.patientID, image.studyUID, image.seriesUID,
                                                               changed.SOPInstanceUID), "", {}, 0, path)
        forwarder, events = self.forwarder(), []
        forwarder.log = Logger(observer=events.append)
        found = yield self.located(forwarder, action)
        os.remove(path)
        error = yield self.assertFailure(defer.ensureDeferred(forwarder.forward(action, found=found)), Undelivered)
        self.assertEqual(error.sent, 0)
        self.assertEqual((yield self.destination.count("image")), 0)
        self.assertEqual([formatEvent(event) for event in events],
                         [f"forward to cloud: {changed.SOPInstanceUID} left out, not retried: {path}, the object as "
                          f"the export line changed it, is gone: the stored object is not sent in its place"])

    @defer.inlineCallbacks
    def test_anObjectThatCannotBeConvertedIsLeftOutNotRetried(self):
        """An object no syntax takes (pixel data the codecs cannot decode)
        is left out with one log line, the others are stored, the forward
        fails with Undelivered (not a ForwardError the queue would retry
        for ever)."""
        bad = self.corpus[1].sopUID
        self.patch(stow, "convertToFirst", failingFor(bad))
        forwarder, events = self.forwarder(), []
        forwarder.log = Logger(observer=events.append)
        error = yield self.assertFailure(defer.ensureDeferred(forwarder.forward(self.action(compression="jk"))),
                                         Undelivered)
        self.assertEqual(error.sent, len(self.corpus) - 1)
        stored = {pydicom.dcmread(path).SOPInstanceUID for path in self.destination.files()}
        self.assertEqual(stored, {image.sopUID for image in self.corpus} - {bad})
        [line] = [formatEvent(event) for event in events]
        self.assertEqual(line, f"forward to cloud: {bad} left out, not retried: {bad} cannot be sent in jk nor a "
                               f"syntax it falls back to: cannot decode")

    @defer.inlineCallbacks
    def test_refusals(self):
        """A wrong password, a server that refuses STOW-RS and one that is
        not there: ForwardErrors saying so (the queue retries them)."""
        wrong = self.forwarder(self.url.replace("//", "//router:wrong@"))
        error = yield self.assertFailure(defer.ensureDeferred(wrong.forward(self.action())), ForwardError)
        self.assertIn("Cloud answered STOW-RS of 6 object(s) with 401 Unauthorized", str(error))
        self.destination.configuration.ini.set("DICOMwebStore", "0")
        error = yield self.assertFailure(defer.ensureDeferred(self.forwarder().forward(self.action())), ForwardError)
        self.assertIn("with 403 Forbidden", str(error))
        nobody = self.forwarder("http://127.0.0.1:1/dicom-web")
        error = yield self.assertFailure(defer.ensureDeferred(nobody.forward(self.action())), ForwardError)
        self.assertIn("STOW-RS to Cloud (http://127.0.0.1:1/dicom-web/studies) failed", str(error))
        self.assertEqual((yield self.destination.count("image")), 0)


class FetchTests(unittest.TestCase):
    """``get`` from a DICOMweb server: one archive fetches from another's
    /dicom-web (behind a WebUsers login) into its own index and disk."""

    @defer.inlineCallbacks
    def setUp(self):
        self.cloud = RunningArchive(self, ae="CLOUD", ini={"WebUsers": "webusers"}, webUsers={"router": "s3cret"})
        self.corpus = generateCorpus(os.path.abspath(self.mktemp()), patients=2, studiesPerPatient=1,
                                     seriesPerStudy=2, imagesPerSeries=2)
        yield self.cloud.store(self.corpus)
        listening = reactor.listenTCP(0, webSite(self.cloud.archive), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.url = f"http://router:s3cret@127.0.0.1:{listening.getHost().port}/dicom-web"
        self.local = RunningArchive(self, ae="LOCAL")

    def forwarder(self, url=None):
        archive = self.local.archive
        forwarder = Forwarder(reactor, archive.configuration.acrNemaMap, archive.aeTitle, archive.index,
                              archive.query, archive.objectReader, archive.workers, fetcher=DicomWebFetcher(archive),
                              dicomWebServers={"CLOUD": DicomWebServer.fromURL("Cloud", url or self.url)})
        self.addCleanup(lambda: defer.ensureDeferred(forwarder.closeAll()))
        return forwarder

    def get(self, forwarder, level, image, **more):
        target = Target(image.patientID, image.studyUID, image.seriesUID, image.sopUID)
        return defer.ensureDeferred(forwarder.get(Action(1, "get", "CLOUD", level, target, "", {}, 0), **more))

    @defer.inlineCallbacks
    def test_levels(self):
        """A series, then its study, then the other patient (QIDO-RS first):
        every object arrives as stored there, counted for dgate."""
        forwarder, first = self.forwarder(), self.corpus[0]
        counts = []
        yield self.get(forwarder, "SERIES", first, onResponse=counts.append)
        self.assertEqual((yield self.local.count("image")), 2)
        self.assertEqual((counts[-1][0x1021], counts[-1][0x1022]), (2, 0))
        yield self.get(forwarder, "STUDY", first)
        yield self.get(forwarder, "PATIENT", [i for i in self.corpus if i.patientID != first.patientID][0])
        self.assertEqual((yield self.local.count("image")), len(self.corpus))
        here = {pydicom.dcmread(path).SOPInstanceUID: path for path in self.local.files()}
        for image in self.corpus:
            self.assertEqual(pydicom.dcmread(here[image.sopUID]).PixelData, pydicom.dcmread(image.path).PixelData)

    @defer.inlineCallbacks
    def test_theExportQueuesGetSkipsTheConverters(self):
        """A get of the export queue (``preretrieve``) stores without the
        import and export converters; a user's (no ``ownRetrieves``) with."""
        for own, expected in ((True, (False, 0)), (False, (True, 2))):
            self.local = RunningArchive(self, ae="LOCAL", ini=CONVERTERS)
            forwarder = self.forwarder()
            forwarder.ownRetrieves = self.local.archive.ownRetrieves if own else None
            yield self.get(forwarder, "SERIES", self.corpus[0])
            converted = {pydicom.dcmread(path).StudyDescription == "CONVERTED" for path in self.local.files()}
            jobs = self.local.archive.exportQueue.dueJobs(1e12, 100)
            self.assertEqual((len(self.local.files()), converted, len(jobs)), (2, {expected[0]}, expected[1]))

    @defer.inlineCallbacks
    def test_refusals(self):
        """Wrong password, an unknown study, another destination, filters: ForwardErrors."""
        image = self.corpus[0]
        wrong = self.forwarder(self.url.replace("s3cret", "wrong"))
        error = yield self.assertFailure(self.get(wrong, "STUDY", image), ForwardError)
        self.assertIn("Cloud answered GET", str(error))
        self.assertIn("with 401 Unauthorized", str(error))
        forwarder = self.forwarder()
        error = yield self.assertFailure(self.get(forwarder, "STUDY", replace(image, studyUID="1.2.3.4")),
                                         ForwardError)
        self.assertIn("with 404 Not Found", str(error))
        error = yield self.assertFailure(self.get(forwarder, "STUDY", image, moveTo="ELSEWHERE"), ForwardError)
        self.assertIn("can only be fetched into LOCAL", str(error))
        action = Action(1, "get", "CLOUD", "STUDY", Target(image.patientID, image.studyUID), "", {"modality": "CT"}, 0)
        error = yield self.assertFailure(defer.ensureDeferred(forwarder.get(action)), ForwardError)
        self.assertIn("takes no filters", str(error))
        self.assertEqual((yield self.local.count("image")), 0)
