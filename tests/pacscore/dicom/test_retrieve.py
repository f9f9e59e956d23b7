"""The pieces of C-MOVE/C-GET that decide: which contexts to propose, which
syntax to send an object in, which status ends the retrieve."""

import builtins
import os
import socket
import threading
from collections import Counter
from types import SimpleNamespace

from pydicom.dataset import Dataset
from sqlalchemy.exc import OperationalError
from twisted.internet import defer, reactor, task
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.codecs.syntaxes import JPEG_BASELINE, JPEG_EXTENDED
from pacscore.codecs.transcode import TranscodeError, transcode
from pacscore.dicom import commands, pdu
from pacscore.config.acrnema import AcrNemaMap, Node
from pacscore.dicom.client import NodeUnreachable, associate
from pacscore.converters.context import Outcome
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.protocol import ESTABLISHED, PRIORITY_MEDIUM, AssociationLost
from pacscore.dicom.retrieve import (
    CANCELLED, SUBOPERATIONS_FAILED, SUCCESS, UNABLE_TO_CALCULATE_MATCHES, UNABLE_TO_PERFORM_SUBOPERATIONS, GetService,
    MoveService, Progress, _ReadAhead, _ReturnPath, choices, contextsFor, convertToFirst)
from pacscore.dicom.models import STUDY_ROOT_GET, STUDY_ROOT_MOVE
from pacscore.dicom import storeddata
from pacscore.dicom.storeddata import STREAMED_OBJECT, StoredData
from pacscore.storage import reader as readerModule
from pacscore.storage.part10 import encodeFileMeta
from pacscore.dicom.virtual import Fetched, RemoteImage
from pacscore.testing.corpus import generateCorpus
from pacscore.db.query import Instance
from pacscore.storage.devices import MagDevice
from pacscore.storage.reader import Missing, ObjectReader, StoredObject
from tests.pacscore.codecs.test_transcode import split
from tests.pacscore.control.running import RunningArchive
from tests.pacscore.dicom.requests import recordDecodes
from tests.pacscore.dicom.test_client import AbortingOnce
from tests.pacscore.dicom.test_find import IndexOutage, maskedIdentifier
from tests.pacscore.dicom.test_storeddata import ENCAPSULATED, RLE, pixelAttributes
from tests.pacscore.export.fixtures import Acceptor, SyncWorkers, settle
from tests.pacscore.export.test_forwarder import TcpTransport

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
MPEG2 = "1.2.840.10008.1.2.4.100"


def stored(syntax, sopClass=CT, uid="1.2.3"):
    return StoredObject(uid, sopClass, "/nowhere", syntax, 0, 0)


@defer.inlineCallbacks
def moveStudyToItself(test, running, studyUID, **keys):
    """A C-MOVE of the study ``studyUID`` (with more ``keys``) from
    ``running`` to itself: the final response's command and data set."""
    client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae, [(STUDY_ROOT_MOVE, [IMPLICIT])])
    test.addCleanup(client.release)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = studyUID
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    answer = yield client.move(STUDY_ROOT_MOVE, identifier, running.ae)
    return answer


class IdentifierDecodeTests(unittest.TestCase):
    """A C-GET's identifier is decoded once, in a worker thread."""

    @defer.inlineCallbacks
    def test_decodedOnceOffTheReactor(self):
        running = RunningArchive(self, listen=True)
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                 [(STUDY_ROOT_GET, [IMPLICIT])])
        self.addCleanup(client.release)
        decodes = recordDecodes(self, b"9.9.424242")
        command, _ = yield client.get(STUDY_ROOT_GET, maskedIdentifier())
        self.assertEqual(command[commands.STATUS], 0)
        self.assertEqual(decodes, [False])


class ContextsTests(unittest.TestCase):

    def test_compressedSyntaxesGetContextsOfTheirOwn(self):
        located = [stored(EXPLICIT), stored(J2K_LOSSLESS), stored(IMPLICIT, MR), Missing("1.2.4", "gone")]
        self.assertEqual(contextsFor(located, "as"), [
            (CT, [EXPLICIT, IMPLICIT]), (MR, [IMPLICIT, EXPLICIT]), (CT, [J2K_LOSSLESS]), (MR, [IMPLICIT])])

    def test_theUncompressedSyntaxACodeAsksForGetsAContextOfItsOwn(self):
        """The peer picks one syntax per context (DCMTK and Orthanc: explicit
        VR little endian): ``ub``'s big endian, ``ui``'s implicit VR, a
        deflated object's syntax under ``as`` go alone first, the shared
        context after them as the fall-back."""
        self.assertEqual(contextsFor([stored(BIG_ENDIAN)], "ub"), [
            (CT, [BIG_ENDIAN, EXPLICIT, IMPLICIT]), (CT, [BIG_ENDIAN])])
        self.assertEqual(contextsFor([stored(EXPLICIT), stored(BIG_ENDIAN)], "ui"), [
            (CT, [IMPLICIT, EXPLICIT]), (CT, [IMPLICIT])])
        self.assertEqual(contextsFor([stored(DEFLATED), stored(EXPLICIT)], "as"), [
            (CT, [DEFLATED, EXPLICIT, IMPLICIT]), (CT, [DEFLATED])])

    def test_explicitVRLittleEndianGoesAloneOnlyWhenTheCodeNamesIt(self):
        """The shared context offers explicit VR little endian first: under
        ``as`` an object stored in it gets no context of its own, under
        ``ul`` it does."""
        self.assertEqual(contextsFor([stored(EXPLICIT)], "as"), [(CT, [EXPLICIT, IMPLICIT])])
        self.assertEqual(contextsFor([stored(IMPLICIT)], "ul"), [
            (CT, [EXPLICIT, IMPLICIT]), (CT, [EXPLICIT])])

    def test_uncompressedCodeProposesNoCompressedSyntax(self):
        self.assertEqual(contextsFor([stored(J2K_LOSSLESS)], "un"), [(CT, [EXPLICIT, IMPLICIT])])
        self.assertEqual(contextsFor([stored(BIG_ENDIAN)], "un"), [(CT, [BIG_ENDIAN, EXPLICIT, IMPLICIT])])

    def test_atMost128(self):
        located = [stored(EXPLICIT, f"1.2.3.{n}") for n in range(100)] + \
                  [stored(J2K_LOSSLESS, f"1.2.3.{n}") for n in range(100)]
        contexts = contextsFor(located, "as")
        self.assertEqual(len(contexts), 128)
        self.assertEqual(contexts[:100], [(f"1.2.3.{n}", [EXPLICIT, IMPLICIT]) for n in range(100)])

    def test_atMost128DropsTheOwnUncompressedContextsFirst(self):
        """Objects of 60 SOP classes stored in implicit VR and of 10 stored as
        MPEG2 (which pacs cannot decode, so it goes as it is or not at all)
        need 140 contexts: the implicit VR ones of their own go, the shared
        and MPEG2 ones stay."""
        located = [stored(IMPLICIT, f"1.2.3.{n}") for n in range(60)] + \
                  [stored(MPEG2, f"1.2.4.{n}") for n in range(10)]
        contexts = contextsFor(located, "as")
        self.assertEqual(len(contexts), 128)
        self.assertEqual(contexts[70:80], [(f"1.2.4.{n}", [MPEG2]) for n in range(10)])
        self.assertEqual(contexts[80:], [(f"1.2.3.{n}", [IMPLICIT]) for n in range(48)])


class ChoicesTests(unittest.TestCase):

    def test_asStoredWhenAccepted(self):
        self.assertEqual(choices(stored(J2K_LOSSLESS), {J2K_LOSSLESS: 3, EXPLICIT: 1}, "as")[0], J2K_LOSSLESS)

    def test_decompressedWhenOnlyUncompressedIsAccepted(self):
        self.assertEqual(choices(stored(JPEG_LOSSLESS), {IMPLICIT: 1}, "as")[0], IMPLICIT)
        self.assertEqual(choices(stored(J2K_LOSSLESS), {EXPLICIT: 1, IMPLICIT: 3}, "as")[0], EXPLICIT)

    def test_uncompressedCodeDecompressesEvenIfTheStoredSyntaxIsAccepted(self):
        self.assertEqual(choices(stored(J2K_LOSSLESS), {J2K_LOSSLESS: 3, EXPLICIT: 1}, "un")[0], EXPLICIT)

    def test_compressionCodeCompresses(self):
        self.assertEqual(choices(stored(EXPLICIT), {J2K_LOSSLESS: 3, EXPLICIT: 1}, "jk")[0], J2K_LOSSLESS)

    def test_nothingAccepted(self):
        self.assertEqual(choices(stored(EXPLICIT), {}, "as"), [])
        self.assertEqual(choices(stored(EXPLICIT), {MPEG2: 1}, "as"), [])

    def test_otherAcceptedSyntaxesConvertedTo(self):
        """A C-GET's retriever proposed JPEG Lossless alone in its
        context: objects go in it, whatever they are stored in."""
        self.assertEqual(choices(stored(EXPLICIT), {JPEG_LOSSLESS: 1}, "as"), [JPEG_LOSSLESS])
        self.assertEqual(choices(stored(J2K_LOSSLESS), {JPEG_LOSSLESS: 1}, None), [JPEG_LOSSLESS])
        self.assertEqual(choices(stored(EXPLICIT), {JPEG_LOSSLESS: 1, IMPLICIT: 3}, "as"), [IMPLICIT, JPEG_LOSSLESS])

    def test_lossyJpegBothThenUncompressed(self):
        accepted = {JPEG_BASELINE: 1, JPEG_EXTENDED: 3, EXPLICIT: 5}
        self.assertEqual(choices(stored(IMPLICIT), accepted, "j3"), [JPEG_BASELINE, JPEG_EXTENDED, EXPLICIT])
        self.assertEqual(choices(stored(IMPLICIT), accepted, "j4"), [JPEG_EXTENDED, JPEG_BASELINE, EXPLICIT])


class ConvertToFirstTests(unittest.TestCase):
    """An object goes in the first syntax it can be converted to."""

    def setUp(self):
        self.syntax, self.data, _ = split("CT_small.dcm")  # 16 bits allocated
        self.ct = stored(self.syntax)

    @defer.inlineCallbacks
    def test_nextWhenTheEncoderRefuses(self):
        syntax, data, refusals = yield defer.ensureDeferred(convertToFirst(
            self.ct, self.data, [JPEG_BASELINE, JPEG_EXTENDED, EXPLICIT], SyncWorkers(), 60))
        self.assertEqual(syntax, JPEG_EXTENDED)
        self.assertEqual(data, transcode(self.data, self.syntax, JPEG_EXTENDED, 60))
        [(refused, error)] = refusals
        self.assertEqual(refused, JPEG_BASELINE)
        self.assertIn("8-bit", str(error))

    @defer.inlineCallbacks
    def test_asStoredUnconverted(self):
        syntax, data, refusals = yield defer.ensureDeferred(convertToFirst(
            self.ct, self.data, [JPEG_BASELINE, self.syntax], SyncWorkers(), 95))
        self.assertEqual((syntax, refusals[0][0]), (self.syntax, JPEG_BASELINE))
        self.assertIs(data, self.data)

    def test_noneTakesIt(self):
        result = defer.ensureDeferred(convertToFirst(self.ct, self.data, [JPEG_BASELINE], SyncWorkers(), 95))
        self.failureResultOf(result, TranscodeError)


class Target:
    """A retrieve's destination that takes ``accepted`` syntaxes and keeps what it is sent."""

    def __init__(self, *accepted):
        self.accepted = {syntax: n for n, syntax in enumerate(accepted, 1)}
        self.sent = []

    def acceptedSyntaxes(self, sopClassUID):
        return self.accepted

    def refusal(self, sopClassUID):
        return None

    def store(self, data, sopClassUID, sopInstanceUID, syntax, originator, priority):
        self.sent.append((data, syntax))
        return defer.succeed({commands.STATUS: SUCCESS})

    def peerName(self):
        return "TARGET"


class StoredDataTests(unittest.TestCase):
    """An object left in its file goes as it is when the target takes its
    syntax, else it is read and converted; its file closed when not sent."""

    def setUp(self):
        self.syntax, self.data, _ = split("CT_small.dcm")
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(bytes(10) + self.data)
        self.ct = StoredObject("1.2.3", CT, path, self.syntax, 10, 10 + len(self.data))
        self.stored = StoredData(open(path, "rb"), 10, len(self.data), SyncWorkers().deferToWorker)
        self.addCleanup(self.stored.close)
        self.service = GetService(None, None, None, SyncWorkers(), "PACS", None)

    def send(self, target, compression="as", unsent=None):
        return self.successResultOf(defer.ensureDeferred(
            self.service._sendOne(target, self.ct, self.stored, compression, None, PRIORITY_MEDIUM,
                                  Counter() if unsent is None else unsent)))

    def test_asStored(self):
        target = Target(self.syntax)
        self.assertEqual(self.send(target), SUCCESS)
        self.assertEqual(target.sent, [(self.stored, self.syntax)])

    def test_converted(self):
        """Into a little endian syntax file to file: the target gets a
        ``StoredData`` of a temporary file holding what ``transcode`` makes."""
        target = Target(IMPLICIT)
        self.assertEqual(self.send(target), SUCCESS)
        [(sent, syntax)] = target.sent
        self.assertEqual((type(sent), syntax), (StoredData, IMPLICIT))
        self.assertEqual(sent.readAll(), transcode(self.data, self.syntax, IMPLICIT, 95))
        self.assertTrue(self.stored.file.closed)

    def test_convertedInMemory(self):
        """Into a compressed syntax (node code j1): read, then converted in memory."""
        target = Target(JPEG_LOSSLESS)
        self.assertEqual(self.send(target, "j1"), SUCCESS)
        self.assertEqual(target.sent, [(transcode(self.data, self.syntax, JPEG_LOSSLESS, 95), JPEG_LOSSLESS)])
        self.assertTrue(self.stored.file.closed)

    def test_anImageTheEncoderRefusesGoesAsStoredWithALogLine(self):
        """Node code j3 (JPEG baseline, 8 bits) for a 16-bit image: sent as
        stored, from its file as any object sent as stored (though it was
        read for the encoder), and the log says why."""
        target = Target(JPEG_BASELINE, self.syntax)
        with capturedLogs() as events:
            self.assertEqual(self.send(target, "j3"), SUCCESS)
        self.assertEqual(target.sent, [(self.stored, self.syntax)])
        self.assertFalse(self.stored.file.closed)  # closed once sent
        [line] = [formatEvent(e) for e in events]
        self.assertTrue(line.startswith(f"C-GET: 1.2.3 cannot be converted to {JPEG_BASELINE} ("), line)
        self.assertIn("8-bit", line)
        self.assertTrue(line.endswith(f"); sent as {self.syntax}"), line)

    def test_anImageTheEncoderRefusesIsConvertedFileToFile(self):
        """After the refusal, into a little endian syntax file to file, as
        without it."""
        target = Target(JPEG_BASELINE, IMPLICIT)
        self.assertEqual(self.send(target, "j3"), SUCCESS)
        [(sent, syntax)] = target.sent
        self.assertEqual((type(sent), syntax), (StoredData, IMPLICIT))
        self.assertEqual(sent.readAll(), transcode(self.data, self.syntax, IMPLICIT, 95))
        self.assertTrue(self.stored.file.closed)

    def test_notTaken(self):
        """Counted under its reason, to be logged once for all such objects."""
        unsent = Counter()
        with capturedLogs() as events:
            self.assertIsNone(self.send(Target(MPEG2), unsent=unsent))
        self.assertTrue(self.stored.file.closed)
        self.assertEqual(unsent, {f"takes {CT} in none of the syntaxes we can send it in (stored as {self.syntax})": 1})
        self.assertEqual(events, [])


class ReadAheadTests(unittest.TestCase):
    """Files read a batch ahead of need: one gone since it was located is a
    missing object (a failed sub-operation), not the end of the retrieve."""

    def test_fileGoneSinceLocatedIsMissing(self):
        syntax, data, _ = split("CT_small.dcm")
        located = []
        for uid in ("1.2.3.1", "1.2.3.2"):
            path = self.mktemp()
            with open(path, "wb") as f:
                f.write(data)
            located.append(StoredObject(uid, CT, path, syntax, 0, len(data)))
        os.unlink(located[0].path)
        reader = ObjectReader([], None)
        upcoming = _ReadAhead(reader, SyncWorkers(), located, lambda stored, data: (stored, data))
        gone, nothing = self.successResultOf(defer.ensureDeferred(upcoming.next()))
        self.assertEqual((type(gone), gone.sopInstanceUID, gone.gone, nothing), (Missing, "1.2.3.1", True, None))
        self.assertIn("No such file", gone.reason)
        self.assertEqual(self.successResultOf(defer.ensureDeferred(upcoming.next())), (located[1], data))

    def test_fileCutShortIsMissing(self):
        """A file cut short behind pacs's back is never sent as it is: a
        failed sub-operation, whose reason names the file and the element
        that does not fit; the next object is read."""
        syntax, data, _ = split("CT_small.dcm")
        located = []
        for uid, content in (("1.2.3.1", data[:-1000]), ("1.2.3.2", data)):
            path = self.mktemp()
            with open(path, "wb") as f:
                f.write(content)
            located.append(StoredObject(uid, CT, path, syntax, 0, len(content)))
        upcoming = _ReadAhead(ObjectReader([], None), SyncWorkers(), located, lambda stored, data: (stored, data))
        damaged, nothing = self.successResultOf(defer.ensureDeferred(upcoming.next()))
        self.assertEqual((type(damaged), damaged.sopInstanceUID, damaged.gone, nothing),
                         (Missing, "1.2.3.1", False, None))
        self.assertIn(f"{located[0].path}: truncated or damaged: element (7FE0,0010)", damaged.reason)
        self.assertEqual(self.successResultOf(defer.ensureDeferred(upcoming.next())), (located[1], data))

    def test_fileStoredAgainSinceLocatedIsRead(self):
        """The object was stored again meanwhile, under a new name: its new
        file is read (the one the index names now)."""
        syntax, data, _ = split("CT_small.dcm")
        folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(folder, "P"))
        with open(os.path.join(folder, "P", "new.dcm"), "wb") as f:
            f.write(data)
        reader = ObjectReader([MagDevice("MAG0", folder)], None,
                              lambda uid: Instance(uid, CT, "MAG0", "P/new.dcm", "P", "1", "1.1"))
        located = [StoredObject("1.2.3.1", CT, os.path.join(folder, "P", "old.dcm"), syntax, 0, len(data), "MAG0",
                                "P/old.dcm")]
        upcoming = _ReadAhead(reader, SyncWorkers(), located, lambda stored, data: (stored, data))
        stored, read = self.successResultOf(defer.ensureDeferred(upcoming.next()))
        self.assertEqual((stored.path, read), (os.path.join(folder, "P", "new.dcm"), data))


class OpenedFiles:
    """The files the reader opens (``os.open`` and ``open``), while it is
    patched in: ``patch(test)``."""

    def __init__(self, folder):
        self.folder = folder
        self.opened = []

    def patch(self, test):
        test.patch(readerModule, "os", self)
        test.patch(builtins, "open", self._open)

    def __getattr__(self, name):
        return getattr(os, name)

    def _seen(self, path):
        if isinstance(path, str) and path.startswith(self.folder):
            self.opened.append(path)

    def open(self, path, *args, **kwargs):
        self._seen(path)
        return os.open(path, *args, **kwargs)

    def _open(self, path, *args, **kwargs):
        self._seen(path)
        return OPEN(path, *args, **kwargs)


OPEN = builtins.open


class AsStoredReadsOnceTests(unittest.TestCase):
    """An object sent as stored is opened once to be read (and again only
    to be sent from its file), and walked once to see whether it stays
    there."""

    def test_smallFileOfLargePixelsWalkedOnce(self):
        """Sent as stored, a small file whose compressed pixels decode to
        more than ``STREAMED_OBJECT`` is found to stay in its file from the
        bytes read ahead, and opened for sending without being walked
        again."""
        walks = []
        walkDataset = storeddata.walkDataset
        self.patch(storeddata, "walkDataset", lambda *a: walks.append(a) or walkDataset(*a))
        dataset = pixelAttributes(STREAMED_OBJECT // (1024 * 1024 * 2) + 1) + ENCAPSULATED
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(dataset)
        located = [StoredObject("1.2.3.1", CT, path, RLE, 0, len(dataset))]
        upcoming = _ReadAhead(ObjectReader([], None), SyncWorkers(), located, lambda stored, data: (stored, data),
                              asStored=True)
        stored, data = self.successResultOf(defer.ensureDeferred(upcoming.next()))
        self.addCleanup(data.close)
        self.assertEqual((type(data), data.readAll(), len(walks)), (StoredData, dataset, 1))

    def test_forwardOpensASmallObjectOnce(self):
        """Forwarded as stored, a small object is read in one opening of
        its file and checked from its bytes."""
        dataset = pixelAttributes(1) + ENCAPSULATED
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "small.dcm")
        with open(path, "wb") as f:
            f.write(dataset)
        stored = StoredObject("1.2.3.1", CT, path, RLE, 0, len(dataset))
        opened = OpenedFiles(folder)
        opened.patch(self)
        self.assertEqual(storeddata.readForPeer(ObjectReader([], None), stored, "as", SyncWorkers().deferToWorker),
                         (stored, dataset))
        self.assertEqual(opened.opened, [path])


class GetReadsOnceTests(unittest.TestCase):
    """A C-GET opens each object's file once, its header and data set read
    together a batch ahead of need: its first C-STORE goes before later
    objects' files are opened (a C-MOVE reads every header first: it
    proposes contexts for their syntaxes)."""

    def stored(self, count):
        """The folder, the syntax and the ``count`` Instances of the files of
        a C-GET, and the service and requestor to make it."""
        syntax, data, _ = split("CT_small.dcm")
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        instances = []
        for n in range(count):
            uid = f"1.2.3.{n}"
            with OPEN(os.path.join(folder, f"{n}.dcm"), "wb") as f:
                f.write(encodeFileMeta(CT, uid, syntax, "1.2.3.4", "TEST") + data)
            instances.append(Instance(uid, CT, "MAG0", f"{n}.dcm", "P", "1", "1.1"))
        requestor = GetRequestor([(STUDY_ROOT_GET, IMPLICIT), (CT, syntax)], roles=[CT])
        requestor.whenCancelled = lambda command: defer.Deferred()
        return folder, instances, requestor

    def get(self, instances, reader, requestor):
        """The responses (command, identifier) to a C-GET of ``instances``."""
        index = SimpleNamespace(queryForPeer=lambda fn, *args: defer.succeed(instances))
        service = GetService(index, SimpleNamespace(instances=None), reader, SyncWorkers(), "PACS", task.Clock())
        responses = []
        requestor.sendMessage = lambda contextId, command, dataset=None: responses.append((command, dataset))
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = "1"
        self.successResultOf(service.handle(requestor, 1, {commands.MESSAGE_ID: 1},
                                            SimpleNamespace(data=encodeDataset(identifier, IMPLICIT))))
        return responses

    def test_eachFileOpenedOnceABatchAhead(self):
        count = 2 * _ReadAhead.batchCount + 8
        folder, instances, requestor = self.stored(count)
        opened = OpenedFiles(folder)
        firstStore = []

        def store(*args):
            firstStore[:] = firstStore or [len(set(opened.opened))]
            return GetRequestor.store(requestor, *args)
        requestor.store = store
        opened.patch(self)
        responses = self.get(instances, ObjectReader([MagDevice("MAG0", folder)]), requestor)
        final, _ = responses[-1]
        self.assertEqual((final[commands.STATUS], final[commands.COMPLETED_SUBOPERATIONS]), (SUCCESS, count))
        self.assertEqual(Counter(Counter(opened.opened).values()), {1: count})
        self.assertEqual(firstStore, [2 * _ReadAhead.batchCount])  # the batch sent, the next one read ahead

    def test_indexFailingWhileAMissingFileIsLookedUp(self):
        """The index failing while the file of a missing object is looked up
        in it (stored again?) fails that object only: the rest of its batch
        is sent, and the C-GET ends B000 with its counters and failed list."""
        folder, instances, requestor = self.stored(4)
        os.unlink(os.path.join(folder, "1.dcm"))

        def current(uid):
            raise OperationalError("SELECT", {}, Exception("no such table: DICOMImages"))
        with capturedLogs() as events:
            responses = self.get(instances, ObjectReader([MagDevice("MAG0", folder)], None, current), requestor)
        final, identifier = responses[-1]
        self.assertEqual([final.get(tag) for tag in (commands.STATUS, commands.COMPLETED_SUBOPERATIONS,
                                                 commands.FAILED_SUBOPERATIONS)], [SUBOPERATIONS_FAILED, 3, 1])
        self.assertEqual(decodeDataset(identifier, IMPLICIT).FailedSOPInstanceUIDList, "1.2.3.1")
        self.assertEqual(requestor.stored, ["1.2.3.0", "1.2.3.2", "1.2.3.3"])
        lines = [formatEvent(event) for event in events]
        self.assertIn("C-GET: 1.2.3.1 cannot be read: 1.dcm: the index database: no such table: DICOMImages", lines)


class StoredAgainTests(unittest.TestCase):
    """An object stored again (the same SOP instance: a new file name, the
    old file removed after the commit) between a C-MOVE's index lookup and
    the reading of its file is sent from its new file: no sub-operation
    fails."""

    @defer.inlineCallbacks
    def test_moveSendsTheNewFile(self):
        running = RunningArchive(self, listen=True)
        running.know(running)  # the C-MOVE destination: itself
        [image] = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                 seriesPerStudy=1, imagesPerSeries=1)
        yield running.store([image])
        [first] = running.files()
        index = running.archive.index
        queryForPeer = index.queryForPeer

        async def storedAgainAfter(fn, *args):
            found = await queryForPeer(fn, *args)
            await running.store([image])
            return found
        index.queryForPeer = lambda fn, *args: defer.ensureDeferred(storedAgainAfter(fn, *args))
        command, _ = yield moveStudyToItself(self, running, image.studyUID)
        self.assertNotIn(first, running.files())  # the file the lookup found is gone
        self.assertEqual([command[tag] for tag in (commands.STATUS, commands.COMPLETED_SUBOPERATIONS,
                                                   commands.FAILED_SUBOPERATIONS)], [SUCCESS, 1, 0])


class ClosingTarget(Target):
    """A destination that answers ``closeAfter`` C-STOREs, then drops the
    association (between objects, as one that times out or restarts)."""

    def __init__(self, closeAfter, *accepted):
        super().__init__(*accepted)
        self.closeAfter = closeAfter
        self.state = ESTABLISHED

    def store(self, data, sopClassUID, sopInstanceUID, syntax, originator, priority):
        if self.state != ESTABLISHED:
            return defer.fail(AssociationLost("no association with TARGET"))
        self.sent.append(sopInstanceUID)
        if len(self.sent) == self.closeAfter:
            self.state = "closed"
        return defer.succeed({commands.STATUS: SUCCESS})

    def abandon(self, why):
        self.state = "closed"

    async def release(self):
        pass


class Requestor:
    """The association a C-MOVE came on."""

    state = ESTABLISHED
    association = SimpleNamespace(callingAE="MOVER", calledAE="PACS", compression=None)
    session = None  # DicomServerProtocol's, for its Lua state

    def isCancelled(self, command):
        return False

    def whenCancelled(self, command):
        return defer.Deferred()  # it is not

    def whenEnded(self):
        return defer.Deferred()  # it stays


class GetRequestor(Requestor):
    """The association a C-GET came on: ``contexts`` accepted, the SCP role
    taken for the classes of ``roles``."""

    def __init__(self, contexts, roles):
        self.association = SimpleNamespace(callingAE="GETTER", calledAE="PACS", compression=None,
                                           contexts=dict(enumerate(contexts, 1)), rolesAsSCU=set(roles))
        self.stored = []
        self.priorities = []

    def acceptedSyntaxes(self, abstract):
        return {syntax: n for n, (sopClass, syntax) in self.association.contexts.items() if sopClass == abstract}

    def store(self, data, sopClassUID, sopInstanceUID, syntax, originator, priority):
        self.stored.append(sopInstanceUID)
        self.priorities.append(priority)
        return defer.succeed({commands.STATUS: SUCCESS})

    def peerName(self):
        return "GETTER@127.0.0.1"


class Destination(GetRequestor):
    """A C-MOVE destination's association: ``contexts`` accepted."""

    def __init__(self, contexts):
        super().__init__(contexts, roles=())

    def peerName(self):
        return "DEST@127.0.0.1"


def storedObjects(test, sopClass, count):
    """``count`` StoredObjects of ``sopClass`` (CT_small.dcm's data set, each in a file of its own)."""
    syntax, data, _ = split("CT_small.dcm")
    located = []
    for n in range(count):
        path = test.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        located.append(StoredObject(f"1.2.3.{n}", sopClass, path, syntax, 0, len(data)))
    return located


class ReturnPathTests(unittest.TestCase):
    """A C-GET's sub-operations go back only for the storage classes the
    requestor took the SCP role for (PS3.4 C.4.3.1); one not sent for want
    of the role, or of a context, is logged with that reason once per class
    and retrieve, not once per object as a syntax mismatch; so is a class a
    C-MOVE destination accepted no context for."""

    def get(self, requestor, located):
        service = GetService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", task.Clock())
        progress = Progress(len(located))
        with capturedLogs() as events:
            cancelled = self.successResultOf(defer.ensureDeferred(service._send(
                requestor, {}, [_ReturnPath(requestor)], None, located, progress, lambda *args, **kwargs: None)))
        self.assertFalse(cancelled)
        return progress, [formatEvent(e) for e in events]

    def test_withoutTheSCPRole(self):
        requestor = GetRequestor([(CT, EXPLICIT)], roles=())
        progress, lines = self.get(requestor, storedObjects(self, CT, 3))
        self.assertEqual((progress.completed, progress.failed, requestor.stored), (0, 3, []))
        self.assertEqual(lines, [f"C-GET: GETTER@127.0.0.1 did not take the SCP role for {CT} (an SCP/SCU Role "
                                 f"Selection item, PS3.7 D.3.3.4): 3 objects of it not sent"])

    def test_classNotProposed(self):
        requestor = GetRequestor([(MR, EXPLICIT)], roles=[MR])
        progress, lines = self.get(requestor, storedObjects(self, CT, 2) + storedObjects(self, MR, 1))
        self.assertEqual((progress.completed, progress.failed, len(requestor.stored)), (1, 2, 1))
        self.assertEqual(lines, [f"C-GET: GETTER@127.0.0.1 has no presentation context for {CT} (not proposed, "
                                 f"or not accepted): 2 objects of it not sent"])

    def test_moveDestinationWithoutTheClass(self):
        """A destination that takes CT only (it answered MR's context with
        abstract syntax not supported): it does not take MR, which no
        syntax would change."""
        service = MoveService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", task.Clock(), None)
        destination = Destination([(CT, EXPLICIT)])
        located = storedObjects(self, MR, 3) + storedObjects(self, CT, 1)
        progress = Progress(len(located))
        with capturedLogs() as events:
            self.successResultOf(defer.ensureDeferred(service._send(
                Requestor(), {commands.MOVE_DESTINATION: "DEST"}, [destination], "as", located, progress,
                lambda *args, **kwargs: None)))
        self.assertEqual((progress.completed, progress.failed, len(destination.stored)), (1, 3, 1))
        self.assertEqual([formatEvent(e) for e in events],
                         [f"C-MOVE: DEST@127.0.0.1 does not take SOP class {MR} (it accepted no presentation "
                          f"context for it): 3 objects of it not sent"])

    def test_roleButNoSyntaxFits(self):
        requestor = GetRequestor([(CT, MPEG2)], roles=[CT])
        progress, lines = self.get(requestor, storedObjects(self, CT, 2))
        self.assertEqual((progress.completed, progress.failed), (0, 2))
        self.assertEqual(lines, [f"C-GET: GETTER@127.0.0.1 takes {CT} in none of the syntaxes we can send it in "
                                 f"(stored as {EXPLICIT}): 2 objects of it not sent"])


class PriorityTests(unittest.TestCase):
    """The C-STORE sub-operations of a C-GET or C-MOVE carry the request's
    Priority (PS3.4 C.4.2.1.2, C.4.3.1.2); one that is none of LOW, MEDIUM
    and HIGH is sent as MEDIUM."""

    def send(self, service, command, target):
        located = storedObjects(self, CT, 2)
        self.successResultOf(defer.ensureDeferred(service._send(
            target if isinstance(service, GetService) else Requestor(), command,
            [_ReturnPath(target) if isinstance(service, GetService) else target], "as", located,
            Progress(len(located)), lambda *args, **kwargs: None)))
        return target.priorities

    def test_get(self):
        service = GetService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", task.Clock())
        for priority in (0, 1, 2):
            requestor = GetRequestor([(CT, EXPLICIT)], roles=[CT])
            self.assertEqual(self.send(service, {commands.PRIORITY: priority}, requestor), [priority] * 2)

    def test_move(self):
        service = MoveService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", task.Clock(), None)
        for priority, sent in ((2, 2), (1, 1), (7, PRIORITY_MEDIUM)):
            command = {commands.MOVE_DESTINATION: "DEST", commands.PRIORITY: priority}
            self.assertEqual(self.send(service, command, Destination([(CT, EXPLICIT)])), [sent] * 2)


class ReassociationTests(unittest.TestCase):
    """A C-MOVE destination that drops the association gets the objects
    left on a new one, the next of them included."""

    def test_droppedBetweenObjects(self):
        syntax, data, _ = split("CT_small.dcm")
        located = []
        for n in range(5):
            path = self.mktemp()
            with open(path, "wb") as f:
                f.write(data)
            located.append(StoredObject(f"1.2.3.{n}", CT, path, syntax, 0, len(data)))
        service = MoveService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", task.Clock(), None)
        first, second = ClosingTarget(2, syntax), ClosingTarget(10, syntax)

        async def reopen(protocol, command, left):
            self.assertEqual([stored.sopInstanceUID for stored in left], ["1.2.3.2", "1.2.3.3", "1.2.3.4"])
            return second, "as"
        service._open = reopen
        progress = Progress(len(located))
        targets = [first]
        cancelled = self.successResultOf(defer.ensureDeferred(service._send(
            Requestor(), {commands.MOVE_DESTINATION: "DEST"}, targets, "as", located, progress,
            lambda *args, **kwargs: None)))
        self.assertFalse(cancelled)
        self.assertEqual((first.sent, second.sent), (["1.2.3.0", "1.2.3.1"], ["1.2.3.2", "1.2.3.3", "1.2.3.4"]))
        self.assertEqual((progress.completed, progress.failed, targets), (5, 0, [first, second]))


class UnreachableDestinationTests(unittest.TestCase):
    """A C-MOVE destination that cannot be reached is named with its
    address, as a forward's is: the warning tells where the connection was
    tried, the ErrorComment why it failed."""

    def test_theFailureNamesTheDestinationAndItsAddress(self):
        with socket.socket() as closed:  # a port nothing listens on: the connection is refused
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        service = MoveService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", reactor,
                              AcrNemaMap.fromString(f"SCP4 127.0.0.1 {port}\n"), connectTimeout=5)
        opening = defer.ensureDeferred(service._open(Requestor(), {commands.MOVE_DESTINATION: "SCP4"},
                                                     storedObjects(self, CT, 1)))

        def refused(error):
            self.assertTrue(str(error).startswith(f"cannot associate with SCP4 at 127.0.0.1:{port}: "
                                                  "Connection was refused"), str(error))
        return self.assertFailure(opening, NodeUnreachable).addCallback(refused)

    @defer.inlineCallbacks
    def test_theErrorCommentSaysWhy(self):
        """The C-MOVE's ErrorComment (64 characters) says why the
        destination could not be reached, the destination and its address
        being in the log line only (they pushed the reason out: 'cannot
        associate with REFUSING at [::1]:21711: Connection was')."""
        with socket.socket(socket.AF_INET6) as closed:  # a port nothing listens on: the connection is refused
            closed.bind(("::1", 0))
            port = closed.getsockname()[1]
        running = RunningArchive(self, listen=True)
        running.configuration.acrNemaMap.put(0, Node("REFUSING", "::1", str(port), "un"))
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=1)
        yield running.store(images)
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae, [(STUDY_ROOT_MOVE, [IMPLICIT])])
        self.addCleanup(client.release)
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = images[0].studyUID
        with capturedLogs() as events:
            moved, _ = yield client.move(STUDY_ROOT_MOVE, identifier, "REFUSING")
        self.assertEqual((moved[commands.STATUS], moved[commands.ERROR_COMMENT]),
                         (UNABLE_TO_PERFORM_SUBOPERATIONS, "Connection was refused by other side: 111: Connection "
                                                           "refused."))
        self.assertIn(f"C-MOVE: cannot reach the destination: cannot associate with REFUSING at [::1]:{port}: "
                      "Connection was refused", "\n".join(formatEvent(e) for e in events))

    def opening(self, artimTimeout):
        """``_open`` to a destination that accepts the connection but never
        answers the A-ASSOCIATE-RQ, an hour after, with ``artimTimeout``."""
        clock = MemoryReactorClock()
        service = MoveService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", clock,
                              AcrNemaMap.fromString("SILENT 127.0.0.1 21719\n"), connectTimeout=30,
                              artimTimeout=artimTimeout)
        opening = defer.ensureDeferred(service._open(Requestor(), {commands.MOVE_DESTINATION: "SILENT"},
                                                     storedObjects(self, CT, 1)))
        clock.advance(0)
        clock.tcpClients[0][2].buildProtocol(None).makeConnection(TcpTransport())
        clock.advance(3600)
        return opening

    def test_noARTIMTimeOutWaitsForTheAnswerWithoutLimit(self):
        """``ARTIMTimeOut = 0`` (None) is no limit for the destination's
        A-ASSOCIATE-AC either (it was cut at the connect timeout: 'SILENT
        did not answer the A-ASSOCIATE-RQ within 30 s')."""
        self.assertNoResult(self.opening(None))

    def test_theARTIMTimeOutLimitsTheAnswer(self):
        self.failureResultOf(self.opening(45), NodeUnreachable)


class PeerAbortTests(unittest.TestCase):
    """A peer's A-ABORT while it has an object (our associations over
    iosim) fails that object only: a C-MOVE sends the next one on a new
    association to the destination, a C-GET (the requestor gone) sends
    no more, nor counts the next one failed."""

    def setUp(self):
        self.clock = task.Clock()
        self.store = AbortingOnce()
        self.acceptor = Acceptor(self.clock, services={commands.C_STORE_RQ: self.store})
        self.located = storedObjects(self, CT, 4)

    def associate(self, located, **keys):
        return defer.ensureDeferred(associate(self.clock, "127.0.0.1", 104, "PACS", "DEST",
                                              contextsFor(located, "as"), endpoint=self.acceptor, **keys))

    def send(self, service, requestor, target, command):
        progress = Progress(len(self.located))
        with capturedLogs() as events:
            cancelled = settle(self, defer.ensureDeferred(service._send(
                requestor, command, [target], "as", self.located, progress, lambda *args, **kwargs: None)),
                self.acceptor, self.clock)
        self.assertFalse(cancelled)
        return progress, [formatEvent(e) for e in events if e["log_level"].name == "warn"]

    def test_moveGoesOnWithTheNextObjectOnANewAssociation(self):
        service = MoveService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", self.clock, None)

        async def reopen(protocol, command, left):
            return await self.associate(left), "as"
        service._open = reopen
        first = settle(self, self.associate(self.located), self.acceptor, self.clock)
        progress, warnings = self.send(service, Requestor(), first, {commands.MOVE_DESTINATION: "DEST"})
        self.assertEqual((progress.completed, progress.failed, self.store.received, self.acceptor.associations),
                         (3, 1, ["1.2.3.1", "1.2.3.2", "1.2.3.3"], 2))
        self.assertEqual(len(warnings), 1)
        self.assertIn("C-MOVE: C-STORE of 1.2.3.0 to DEST@", warnings[0])

    def test_getSendsNoMoreOnceTheRequestorAborts(self):
        service = GetService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", self.clock)
        settle(self, self.associate(self.located, services={commands.C_STORE_RQ: self.store},
                                    roles={CT: (False, True)}), self.acceptor, self.clock)
        requestor = self.acceptor.pumps[0].server  # our acceptor, sending the C-GET's objects back
        self.assertIn(CT, requestor.association.rolesAsSCU)
        progress, warnings = self.send(service, requestor, _ReturnPath(requestor), {})
        self.assertEqual((progress.completed, progress.failed, progress.remaining, self.store.received),
                         (0, 1, 3, []))
        self.assertEqual(len(warnings), 1)
        self.assertIn("C-GET: C-STORE of 1.2.3.0 to ", warnings[0])


class HeldWorkers(SyncWorkers):
    """Workers whose calls after the first are done at once, their results
    held (``held``) until ``release``: a read that takes a while."""

    def __init__(self):
        self.calls = 0
        self.held = []

    def deferToWorker(self, f, *args, **kwargs):
        self.calls += 1
        done = super().deferToWorker(f, *args, **kwargs)
        if self.calls == 1:
            return done
        held = defer.Deferred()
        self.held.append((done, held))
        return held

    def release(self):
        for done, held in self.held:
            done.chainDeferred(held)
        self.held = []


class NeverAnswering:
    """A C-STORE service that takes each object and never answers (a
    destination hung in its storage)."""

    def __init__(self):
        self.received = []

    def handle(self, protocol, contextId, command, dataset):
        self.received.append(command[commands.AFFECTED_SOP_INSTANCE_UID])
        return defer.Deferred()


class RequestorGoneTests(unittest.TestCase):
    """With ``ARTIMTimeOut = 0`` and ``TCPIPTimeOut = 0`` (no limit), a
    C-MOVE whose requestor's association ended (its connection lost, or
    aborted) went on waiting on a silent destination, for a C-CANCEL that
    could no longer come: its association with the destination stayed
    open.  It is now aborted and closed once the requestor is gone, with a
    log line.  The requestor is our acceptor's end of an association (over
    iosim)."""

    MOVE = {commands.MOVE_DESTINATION: "SILENT", commands.MESSAGE_ID: 7}

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.store = NeverAnswering()
        self.mover = self.silentService()
        self.acceptor = Acceptor(self.clock, sopClasses=(CT, STUDY_ROOT_MOVE),
                                 services={commands.C_STORE_RQ: self.store, commands.C_MOVE_RQ: self.mover})
        self.located = storedObjects(self, CT, 3)
        self.requestorEnd = self.associate()
        self.requestor = self.acceptor.pumps[0].server

    def associate(self):
        contexts = contextsFor(self.located, "as") + [(STUDY_ROOT_MOVE, [IMPLICIT])]
        return settle(self, defer.ensureDeferred(associate(self.clock, "127.0.0.1", 104, "MOVER", "DEST", contexts,
                                                           endpoint=self.acceptor)),
                      self.acceptor, self.clock)

    def silentService(self):
        return MoveService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", self.clock,
                           AcrNemaMap.fromString("SILENT 127.0.0.1 21719\n"), artimTimeout=None)

    def moveReachingAgain(self):
        """The requestor's C-MOVE of the three objects to SILENT, which
        dropped the association after the first and is being reached
        again (its transport returned), that one never answering."""
        index = SimpleNamespace(queryForPeer=lambda fn, *args: defer.succeed(self.located))
        self.mover.index, self.mover.query = index, SimpleNamespace(instances=None)
        self.mover._locate = defer.succeed
        first = ClosingTarget(1, self.located[0].transferSyntax)
        opens = [first]

        async def open(protocol, command, located):
            if opens:
                return opens.pop(), "as"
            return await MoveService._open(self.mover, protocol, command, located)
        self.mover._open = open
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = "1.2.3"
        moving = self.requestorEnd.move(STUDY_ROOT_MOVE, identifier, "SILENT")
        self.acceptor.flush()
        self.assertEqual(first.sent, ["1.2.3.0"])
        return moving, self.reachSilently(moving)

    def reachSilently(self, waiting):
        """The silent destination's transport, once ``waiting`` (a
        Deferred) is seen to wait for its A-ASSOCIATE-AC."""
        self.clock.advance(0)
        silent = TcpTransport()
        self.clock.tcpClients[0][2].buildProtocol(None).makeConnection(silent)
        self.clock.advance(250)  # past ARTIMTimeOut's default, within the requestor's idle timeout
        self.assertNoResult(waiting)
        return silent

    def assertClosedWithAnAbort(self, transport):
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value()[-10:-9], bytes([pdu.A_ABORT]))

    def test_theDestinationBeingReachedIsLeft(self):
        """A destination that accepted the connection but never answers
        the A-ASSOCIATE-RQ: the requestor's connection lost, the attempt is
        aborted and its connection closed."""
        opening = defer.ensureDeferred(self.silentService()._openUnlessCancelled(self.requestor, self.MOVE,
                                                                                 self.located))
        silent = self.reachSilently(opening)
        self.requestorEnd.transport.abortConnection()
        self.acceptor.flush()
        self.assertEqual(self.successResultOf(opening), (None, None))
        self.assertClosedWithAnAbort(silent)

    def test_theDestinationBeingReachedAgainIsLeft(self):
        """The same while the destination, which dropped the association
        after the first object, is reached again for the others: they are
        not sent, not failed, with the 'abandoned' line (they were counted
        failed, with 'C-MOVE: the association with SILENT@127.0.0.1:21719
        was lost: the 2 objects left are not sent')."""
        moving, silent = self.moveReachingAgain()
        moving.addErrback(lambda failure: failure.trap(AssociationLost))
        with capturedLogs() as events:
            self.requestorEnd.abortAssociation()
            self.acceptor.flush()
        self.assertClosedWithAnAbort(silent)
        lines = [formatEvent(e) for e in events]
        self.assertIn(f"{self.requestor.peerName()}: C-MOVE abandoned while the destination was being reached "
                      f"again: the association ended, 2 objects not sent", lines)
        self.assertIn(f"{self.requestor.peerName()}: C-MOVE: 3 sub-operations: 1 completed, 0 failed, 0 with a "
                      f"warning, 2 not sent", lines)
        self.assertEqual([line for line in lines if "was lost" in line], [])

    def test_endedWhileTheNextObjectIsReadIsNoLostDestination(self):
        """The requestor's association ending while the next object is
        read (between C-STOREs): the destination's association is
        abandoned (aborted) and the objects left are not sent, not
        failed (they were, the destination taken for lost: 'the
        association with DEST was lost: the 2 objects left are not sent')."""
        self.patch(_ReadAhead, "batchCount", 1)
        reading = HeldWorkers()
        service = MoveService(None, None, ObjectReader([], None), reading, "PACS", self.clock, None)
        destination = ClosingTarget(3, self.located[0].transferSyntax)
        progress = Progress(len(self.located))
        with capturedLogs() as events:
            sending = defer.ensureDeferred(service._send(self.requestor, self.MOVE, [destination], "as", self.located,
                                                         progress, lambda *args, **kwargs: None))
            self.assertEqual((destination.sent, len(reading.held)), (["1.2.3.0"], 1))
            self.requestorEnd.abortAssociation()
            self.acceptor.flush()
            reading.release()
            self.assertFalse(self.successResultOf(sending))
        self.assertEqual((progress.completed, progress.failed, progress.remaining, destination.sent,
                          destination.state), (1, 0, 2, ["1.2.3.0"], "closed"))
        self.assertEqual([formatEvent(e) for e in events if "was lost" in formatEvent(e)], [])

    def test_aCancelWhileTheDestinationIsReachedAgainIsACancel(self):
        """A C-CANCEL while the destination is reached again stops that
        (the attempt aborted and closed) and is answered Cancel with the
        objects left remaining, as README says (it was B000, or A702 when
        no object had gone, the objects left counted failed though never
        attempted: 'the association with SILENT@127.0.0.1:21719 was lost:
        the 2 objects left are not sent')."""
        moving, silent = self.moveReachingAgain()
        self.requestorEnd.cancelLast(STUDY_ROOT_MOVE)
        self.acceptor.flush()
        self.assertClosedWithAnAbort(silent)
        final, failedList = self.successResultOf(moving)
        self.assertEqual([final.get(tag) for tag in (commands.STATUS, commands.REMAINING_SUBOPERATIONS,
                                                 commands.COMPLETED_SUBOPERATIONS, commands.FAILED_SUBOPERATIONS)],
                         [CANCELLED, 2, 1, 0])
        self.assertIsNone(failedList)

    def test_theCStoreUnderWayIsNotWaitedFor(self):
        """A destination that never answers a C-STORE: the requestor's
        A-ABORT aborts the association with it and closes its connection;
        the object counts as failed, the others as not sent."""
        service = MoveService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", self.clock, None)
        destination = self.associate()
        progress = Progress(len(self.located))
        with capturedLogs() as events:
            sending = defer.ensureDeferred(service._send(self.requestor, self.MOVE, [destination], "as", self.located,
                                                         progress, lambda *args, **kwargs: None))
            for _ in range(5):
                self.acceptor.flush()
                self.clock.advance(50)
            self.assertNoResult(sending)
            self.assertEqual(self.store.received, ["1.2.3.0"])
            self.requestorEnd.abortAssociation()
            self.acceptor.flush()
            self.assertFalse(self.successResultOf(sending))
        self.assertTrue(destination.transport.disconnecting)
        self.assertEqual(self.acceptor.openAssociations(), [])
        self.assertEqual((progress.completed, progress.failed, progress.remaining, self.store.received),
                         (0, 1, 2, ["1.2.3.0"]))
        self.assertIn(f"{destination.peerName()}: C-MOVE abandoned: its requestor {self.requestor.peerName()} is "
                      f"gone, aborting", [formatEvent(e) for e in events])


class RenamingHook:
    """A RetrieveResultConverter0 that gives each object a new SOP Instance UID."""

    def applyToObject(self, data, syntax, callingAE, calledAE, destination, session=None):
        dataset = decodeDataset(data, syntax)
        dataset.SOPInstanceUID = "9." + dataset.SOPInstanceUID
        return Outcome.CONTINUE, encodeDataset(dataset, syntax)


class RefusingTarget(Target):
    """A destination that refuses every C-STORE with A900, as storescp does
    one whose command names another instance than its data set."""

    state = ESTABLISHED

    def store(self, data, sopClassUID, sopInstanceUID, syntax, originator, priority):
        self.sent.append((sopInstanceUID, decodeDataset(data, syntax).SOPInstanceUID))
        return defer.succeed({commands.STATUS: 0xA900})


class ConvertedIdentityTests(unittest.TestCase):
    """An object a converter line gave a new SOP Instance UID goes under
    it, in the C-STORE command as in its data set; a failed one is named
    in the Failed SOP Instance UID List by the stored UID asked for."""

    def test_newUIDInTheCommandStoredOneInTheFailedList(self):
        syntax, data, _ = split("CT_small.dcm")
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        stored = StoredObject(decodeDataset(data, syntax).SOPInstanceUID, CT, path, syntax, 0, len(data))
        service = MoveService(None, None, ObjectReader([], None), SyncWorkers(), "PACS", task.Clock(), None,
                              resultHook=RenamingHook())
        target = RefusingTarget(syntax)
        progress = Progress(1)
        self.successResultOf(defer.ensureDeferred(service._send(
            Requestor(), {commands.MOVE_DESTINATION: "DEST"}, [target], "as", [stored], progress,
            lambda *args, **kwargs: None)))
        self.assertEqual(target.sent, [("9." + stored.sopInstanceUID,) * 2])
        self.assertEqual(progress.failedUIDs, [stored.sopInstanceUID])


class ProgressTests(unittest.TestCase):

    def test_counters(self):
        progress = Progress(4)
        for uid, status in (("a", SUCCESS), ("b", 0xB007), ("c", 0xA700), ("d", None)):
            progress.done(uid, status)
        self.assertEqual(progress.counters(final=True), {
            commands.COMPLETED_SUBOPERATIONS: 1, commands.FAILED_SUBOPERATIONS: 2,
            commands.WARNING_SUBOPERATIONS: 1})
        self.assertEqual(progress.failedUIDs, ["c", "d"])
        self.assertEqual(progress.finalStatus(), SUBOPERATIONS_FAILED)

    def test_everyWarningStatusIsAWarning(self):
        """PS3.7 annex C: 0x0001, 0x0107 and 0x0116 are warnings as 0xBxxx
        are: the object was stored, so it is not in the failed list."""
        progress = Progress(4)
        for uid, status in (("a", 0x0001), ("b", 0x0107), ("c", 0x0116), ("d", 0xB000)):
            progress.done(uid, status)
        self.assertEqual((progress.warning, progress.failed, progress.failedUIDs), (4, 0, []))
        self.assertEqual(progress.finalStatus(), SUBOPERATIONS_FAILED)

    def test_pendingCountsRemaining(self):
        progress = Progress(3)
        progress.done("a", SUCCESS)
        self.assertEqual(progress.counters()[commands.REMAINING_SUBOPERATIONS], 2)

    def test_countsOver65535AreSentAs65535(self):
        """Each count is a US: a retrieve of 70000 objects must still
        encode its pending responses."""
        progress = Progress(70000)
        progress.done("a", SUCCESS)
        counters = progress.counters()
        self.assertEqual(counters[commands.REMAINING_SUBOPERATIONS], 0xFFFF)
        self.assertEqual(counters[commands.COMPLETED_SUBOPERATIONS], 1)
        commands.encodeCommand(commands.response({commands.MESSAGE_ID: 1}, commands.C_MOVE_RSP, 0xFF00, counters))

    def test_finalStatuses(self):
        progress = Progress(2)
        progress.done("a", SUCCESS)
        progress.done("b", SUCCESS)
        self.assertEqual(progress.finalStatus(), SUCCESS)
        progress = Progress(2)
        progress.done("a", 0xA700)
        progress.done("b", None)
        self.assertEqual(progress.finalStatus(), UNABLE_TO_PERFORM_SUBOPERATIONS)

    def test_lostObjectsAreFailedBeforeAnyIsSent(self):
        progress = Progress(1, ["x", "y"])
        self.assertEqual((progress.remaining, progress.failed, progress.failedUIDs), (1, 2, ["x", "y"]))
        progress.done("a", SUCCESS)
        self.assertEqual(progress.finalStatus(), SUBOPERATIONS_FAILED)


class VirtualLossTests(unittest.TestCase):
    """Objects a virtual server listed but could not bring here (its
    C-MOVE failed partway) are failed sub-operations of the C-MOVE: it ends
    B000, not Success, and names them in the Failed SOP Instance UID List."""

    @defer.inlineCallbacks
    def archiveWithOneImage(self):
        """A running archive with a virtual server, its own C-MOVE
        destination, holding one image: ``(running, image)``."""
        running = RunningArchive(self, listen=True, ini={"VirtualServerFor0": "BACK"})
        running.know(running)  # the C-MOVE destination: itself
        [image] = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                 seriesPerStudy=1, imagesPerSeries=1)
        yield running.store([image])
        return running, image

    @defer.inlineCallbacks
    def test_moveEndsWithFailuresForTheLostObjects(self):
        running, image = yield self.archiveWithOneImage()

        async def fetch(sopClass, identifier, mask=None, callingAE=None, onPending=None):
            return Fetched([], ["1.2.3.9"])
        running.archive.virtualServers.fetch = fetch
        command, failed = yield moveStudyToItself(self, running, image.studyUID)
        self.assertEqual([command[tag] for tag in (commands.STATUS, commands.COMPLETED_SUBOPERATIONS,
                                                   commands.FAILED_SUBOPERATIONS)], [SUBOPERATIONS_FAILED, 1, 1])
        self.assertEqual(decodeDataset(failed, IMPLICIT).FailedSOPInstanceUIDList, "1.2.3.9")

    @defer.inlineCallbacks
    def test_anObjectStoredAfterTheFetchLookedIsSentNotFailed(self):
        """An object the fetch found missing (its C-STORE still being
        stored when it looked) that the retrieve's own query finds is sent,
        not also counted failed: one sub-operation, Success."""
        running, image = yield self.archiveWithOneImage()

        async def fetch(sopClass, identifier, mask=None, callingAE=None, onPending=None):
            return Fetched([], [image.sopUID])
        running.archive.virtualServers.fetch = fetch
        command, failed = yield moveStudyToItself(self, running, image.studyUID)
        self.assertEqual([command[tag] for tag in (commands.STATUS, commands.COMPLETED_SUBOPERATIONS,
                                                   commands.FAILED_SUBOPERATIONS)], [SUCCESS, 1, 0])
        self.assertIsNone(failed)


class VirtualFetchTests(unittest.TestCase):
    """While the virtual servers fetch a C-MOVE's objects its requestor
    hears of it in pending responses, and a C-CANCEL stops the fetch (which
    C-CANCELs the archive's C-MOVE) and is answered Cancel at once."""

    @defer.inlineCallbacks
    def test_pendingWhileFetchingAndCancelStopsIt(self):
        running = RunningArchive(self, listen=True, ini={"VirtualServerFor0": "BACK"})
        running.know(running)  # the C-MOVE destination: itself
        stopped = []

        async def fetch(sopClass, identifier, mask=None, callingAE=None, onPending=None):
            await task.deferLater(reactor, 0.2, lambda: None)
            onPending(40)
            try:
                await defer.Deferred()  # an archive bringing 40 objects slowly
            except defer.CancelledError:
                stopped.append(True)
                raise
        running.archive.virtualServers.fetch = fetch
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                 [(STUDY_ROOT_MOVE, [IMPLICIT])])
        self.addCleanup(client.release)
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = "1.2.3"
        pending = []

        def onPending(command):
            pending.append(command[commands.REMAINING_SUBOPERATIONS])
            client.cancelLast(STUDY_ROOT_MOVE)
        command, _ = yield client.move(STUDY_ROOT_MOVE, identifier, running.ae, onPending)
        self.assertEqual((pending, command[commands.STATUS], stopped), ([40], CANCELLED, [True]))


class NonUniqueKeysTests(unittest.TestCase):
    """A C-MOVE's identifier selects by its unique keys (PS3.4 C.4.2.2.1):
    other keys along with them (a Patient's Name not as stored, a Study
    Date) narrow nothing, with a log line naming them."""

    @defer.inlineCallbacks
    def test_otherKeysAreIgnored(self):
        running = RunningArchive(self, listen=True)
        running.know(running)  # the C-MOVE destination: itself
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                seriesPerStudy=1, imagesPerSeries=2)
        yield running.store(images)
        with capturedLogs() as events:
            command, _ = yield moveStudyToItself(self, running, images[0].studyUID, PatientName="Nobody^Else",
                                                 StudyDate="20991231", SeriesInstanceUID="")
        self.assertEqual([command[tag] for tag in (commands.STATUS, commands.COMPLETED_SUBOPERATIONS)],
                         [SUCCESS, 2])
        self.assertIn("C-MOVE selects by its unique keys only, ignoring StudyDate, PatientName",
                      [formatEvent(event).split(": ", 1)[-1] for event in events])


class PagingElementsTests(unittest.TestCase):
    """Conquest's C-FIND paging elements (9999,0C00-0C02) in a C-MOVE's or
    C-GET's identifier (a client reusing its C-FIND's) are ignored, as before
    pacs read them for C-FIND: never a page, never a refusal."""

    @staticmethod
    def paged(identifier, limit):
        identifier.add_new(0x99990C00, "LO", "Modality")  # no STUDY column: refused by a C-FIND
        identifier.add_new(0x99990C01, "LO", limit)
        return identifier

    @defer.inlineCallbacks
    def test_move(self):
        running = RunningArchive(self, listen=True)
        running.know(running)  # the C-MOVE destination: itself
        images = generateCorpus(os.path.abspath(self.mktemp()), patients=1, studiesPerPatient=1,
                                seriesPerStudy=1, imagesPerSeries=2)
        yield running.store(images)
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae, [(STUDY_ROOT_MOVE, [IMPLICIT])])
        self.addCleanup(client.release)
        for limit in ("three", "1"):
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "STUDY"
            identifier.StudyInstanceUID = images[0].studyUID
            command, _ = yield client.move(STUDY_ROOT_MOVE, self.paged(identifier, limit), running.ae)
            self.assertEqual([command[tag] for tag in (commands.STATUS, commands.COMPLETED_SUBOPERATIONS)],
                             [SUCCESS, 2], limit)

    @defer.inlineCallbacks
    def test_get(self):
        running = RunningArchive(self, listen=True)
        client = yield associate(reactor, "127.0.0.1", running.port, "SCU", running.ae,
                                 [(STUDY_ROOT_GET, [IMPLICIT])])
        self.addCleanup(client.release)
        command, _ = yield client.get(STUDY_ROOT_GET, self.paged(maskedIdentifier(), "three"))
        self.assertEqual(command[commands.STATUS], SUCCESS)


class IndexOutageTests(unittest.TestCase):
    """An index database that cannot be searched: C-MOVE and C-GET answer
    A701 (out of resources: unable to calculate the number of matches,
    PS3.4 C.4.2.1.5), each with one log line and no traceback."""

    @defer.inlineCallbacks
    def moveAndGet(self, hung=False):
        """The Error Comment of the C-MOVE, once both are checked."""
        outage = yield IndexOutage.start(self, hung)
        moved, _ = yield outage.client.move(STUDY_ROOT_MOVE, outage.identifier(), outage.running.ae)
        got, _ = yield outage.client.get(STUDY_ROOT_GET, outage.identifier())
        self.assertEqual([moved[commands.STATUS], got[commands.STATUS]], [UNABLE_TO_CALCULATE_MATCHES] * 2)
        lines, tracebacks = outage.logged()
        self.assertEqual([line.split(": ")[1:3] for line in lines],
                         [["C-MOVE failed", "the index database"], ["C-GET failed", "the index database"]])
        self.assertEqual(tracebacks, [])
        return moved[commands.ERROR_COMMENT]

    @defer.inlineCallbacks
    def test_moveAndGet(self):
        self.assertIn("index database: no such table", (yield self.moveAndGet()))

    @defer.inlineCallbacks
    def test_hungDatabase(self):
        """A database that does not answer within SQLTimeOut likewise."""
        self.assertIn("the index database did not answer within 0.2 s", (yield self.moveAndGet(hung=True)))

    @defer.inlineCallbacks
    def test_hungDatabaseWhileAVirtualServerFetches(self):
        """Through a virtual server, the database not answering while the
        retrieve looks up which of the objects the archive lists are here:
        A701 once SQLTimeOut passed, with one log line, as without one
        (not the requestor waiting for as long as the database hangs)."""
        running = RunningArchive(self, listen=True, ini={"VirtualServerFor0": "BACK"})
        running.know(running)  # the C-MOVE destination: itself
        servers = running.archive.virtualServers

        async def remoteImages(protocol, findClass, level, keys):
            return [RemoteImage("P1", "1.2.3", "1.2.3.1", "1.2.3.1.1")]

        async def associate(server, contexts):
            return SimpleNamespace(release=lambda: defer.succeed(None))
        servers._remoteImages, servers._associate = remoteImages, associate
        answer = threading.Event()
        self.addCleanup(answer.set)
        index = running.archive.index
        index.readTimeout = 0.2
        index._withConnection = lambda fn, args, kw: answer.wait(10)
        started = reactor.seconds()
        with capturedLogs() as events:
            command, _ = yield moveStudyToItself(self, running, "1.2.3")
        self.assertLess(reactor.seconds() - started, 5)  # the database answers after 10 s
        self.assertEqual(command[commands.STATUS], UNABLE_TO_CALCULATE_MATCHES)
        self.assertIn("the index database did not answer within 0.2 s", command[commands.ERROR_COMMENT])
        self.assertEqual([formatEvent(e).split(": ")[1:3] for e in events if e["log_level"].name == "error"],
                         [["C-MOVE failed", "the index database"]])
        self.assertEqual([e for e in events if "log_failure" in e], [])
