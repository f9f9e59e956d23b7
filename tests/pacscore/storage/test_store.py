"""The object store end to end below the network: spool, file, index.

Uses a real SQLite index, real files in a temporary MAG device and the real
reactor (the worker threads report back through it)."""

import ctypes
import dataclasses
import errno
import os
import sqlite3
import threading
import time
import warnings
from io import BytesIO

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate, generate_frames
from pydicom.tag import BaseTag
from sqlalchemy.exc import OperationalError
from twisted.internet import defer, reactor
from twisted.logger import Logger, LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest

from pacscore.codecs.compression import recode
from pacscore.codecs.evenlengths import evenLengths
from pacscore.codecs.transcode import transcode
from pacscore.config.loader import loadConfiguration
from pacscore.converters.awaitingobjects import MoveScope, awaitingObjects
from pacscore.converters.importing import ImportDecision
from pacscore.db.index import Index
from pacscore.storage.devicechoice import DeviceChoice
from pacscore.storage.devices import TEMP_FOLDER, MagDevice
from pacscore.storage.durability import FileSystemFlush, FlushError, libcSyncfs
from pacscore.storage.filenames import FileNamer
from pacscore.storage.mirror import Mirrors
from pacscore.storage.objectfiles import FileWrites
from pacscore.storage.part10 import readFileMeta
from pacscore.storage import store as storeModule
from pacscore.storage import unindexed as unindexedModule
from pacscore.storage.reader import ObjectReader
from pacscore.storage.spool import EARLY_WRITE, Spool
from pacscore.storage.store import (DatasetMismatch, Destroyed, DeviceMissing, DeviceUnwritable, IncomingObject,
                                    InvalidDataset, ObjectStore, Refused)
from pacscore.workers import WorkerPool
from plugins.pacs_sqlite import sqliteDriver

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


CT_SMALL_UID = pydicom.dcmread(get_testdata_file("CT_small.dcm")).SOPInstanceUID


def datasetBytes(name):
    """The data set of a pydicom test file as it would arrive on the wire."""
    with open(get_testdata_file(name), "rb") as f:
        _, _, offset = readFileMeta(f)
        f.seek(offset)
        return f.read()


def largeDataset(pixelBytes, oddValue=None):
    """``(SOP Instance UID, data set bytes)`` of CT_small with ``pixelBytes``
    of random pixel data (and a private UN value ``oddValue``, written as it
    is, as pydicom writes it)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PixelData = os.urandom(pixelBytes)
    if oddValue is not None:
        ds.add_new(0x00090010, "LO", "ACME")
        ds.add_new(0x00091002, "UN", oddValue)
    ds[0x7FE00010].VR = "OB"
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return ds.SOPInstanceUID, buffer.getvalue()[readFileMeta(buffer)[2]:]


def ctWith(raw=(), **values):
    """The data set of CT_small.dcm with ``values`` (keywords) set, and the
    elements ``raw`` (``(tag, VR, value bytes)``, which pydicom need not
    read), explicit VR little endian as it would arrive."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    buffer = BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's, about UIDs that are none
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        for tag, vr, value in raw:
            ds[tag] = RawDataElement(BaseTag(tag), vr, len(value), value, 0, False, True)
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()[readFileMeta(BytesIO(buffer.getvalue()))[2]:]


class FakeTransport:
    connected = True

    def __init__(self):
        self.paused = 0
        self.resumed = 0

    def pauseProducing(self):
        self.paused += 1

    def resumeProducing(self):
        self.resumed += 1


class ObjectStoreTests(unittest.TestCase):

    def setUp(self):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        configuration = loadConfiguration(None, workdir)
        self.device = MagDevice("MAG0", os.path.join(workdir, "data"))
        self.device.prepare()
        engine = sqliteDriver.createEngine(sqliteDriver.urlFromConfiguration(configuration), configuration)
        self.index = Index(engine, configuration.layout, configuration.tableNames, reactor=reactor)
        self.index.createTables()
        self.index.start()
        self.workers = WorkerPool(reactor, 2, "test-io")
        self.workers.start()
        self.addCleanup(lambda: self.index.stop().addCallback(lambda _: self.workers.stop()))
        self.indexedTags = configuration.layout.indexedTags()
        self.store = self.storeOn(self.device)

    def storeOn(self, device):
        return ObjectStore(device, FileNamer("4"), self.index, self.indexedTags,
                           self.workers, "1.2.3.4", "TEST", spoolThreshold=64 << 10)

    def addDevice(self, name):
        """A second MAG device the store may write to."""
        device = MagDevice(name, os.path.abspath(self.mktemp()))
        device.prepare()
        self.store.devicesByName[name] = device
        return device

    def drainWorkers(self):
        """Fires once every call queued in the I/O pool so far has run: each
        worker must finish what it took before it reaches the barrier."""
        barrier = threading.Barrier(self.workers.size)
        return defer.gatherResults([self.workers.deferToWorker(barrier.wait)
                                    for _ in range(self.workers.size)])

    def receive(self, data, sopInstance, fragment=16384, sopClass=CT, transport=None, compression="",
                syntax=EXPLICIT):
        incoming = IncomingObject(sopClass, sopInstance, syntax, "MODALITY", "PACS", compression)
        spool = self.store.spool(incoming, transport)
        for offset in range(0, len(data), fragment):
            spool.write(memoryview(data)[offset:offset + fragment])
        return incoming, spool

    def storedFile(self, relative):
        """``(transfer syntax, file meta, data set bytes)`` of a stored file."""
        with open(self.device.absolute(relative), "rb") as f:
            transferSyntax, meta, offset = readFileMeta(f)
            f.seek(offset)
            return transferSyntax, meta, f.read()

    @defer.inlineCallbacks
    def test_storedBytesAreTheReceivedBytes(self):
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        incoming, spool = self.receive(data, uid)
        self.assertIsNotNone(spool.inMemory)
        _, relative = yield self.store.store(incoming, spool)
        self.assertEqual(self.storedFile(relative)[::2], (EXPLICIT, data))
        self.assertEqual(self.storedFile(relative)[1][0x00020016], "MODALITY")
        rows = yield self.index.runQuery(
            lambda c: c.exec_driver_sql("SELECT ObjectFile, DeviceName FROM DICOMImages").fetchall())
        self.assertEqual([tuple(r) for r in rows], [(relative, "MAG0")])

    def temporaryBytes(self):
        """The sizes of the temporary files of the device holding bytes."""
        sizes = (os.path.getsize(os.path.join(self.device.tempDir, name)) for name in os.listdir(self.device.tempDir))
        return [size for size in sizes if size]

    def earlyFile(self):
        """``os.stat`` of the one temporary file of the device holding bytes."""
        [early] = [os.stat(os.path.join(self.device.tempDir, name)) for name in os.listdir(self.device.tempDir)
                   if os.path.getsize(os.path.join(self.device.tempDir, name))]
        return early

    @defer.inlineCallbacks
    def test_aLargeObjectIsWrittenWhileItArrives(self):
        """An object kept in memory that is stored as received is written
        into a temporary file of its device while it arrives (EarlyWrite):
        before the store is asked, that file holds all but its last
        EARLY_WRITE bytes; it is the file stored, none is left."""
        self.store.spoolThreshold = 4 << 20
        uid, data = largeDataset(600 << 10)
        incoming, spool = self.receive(data, uid)
        self.assertIsNotNone(spool.inMemory)
        yield self.drainWorkers()
        [size] = self.temporaryBytes()
        self.assertGreaterEqual(size, 2 * EARLY_WRITE)
        early = self.earlyFile()
        _, relative = yield self.store.store(incoming, spool)
        self.assertEqual(self.storedFile(relative)[::2], (EXPLICIT, data))
        self.assertEqual(os.stat(self.device.absolute(relative)).st_ino, early.st_ino)
        yield self.drainWorkers()
        self.assertEqual(self.temporaryBytes(), [])

    @defer.inlineCallbacks
    def test_anEarlyFileIsNotStoredOnAnotherDevice(self):
        """An object that goes to another MAG device (its device filled
        after it began to arrive) is written there; the file written on
        the first while it arrived is removed (it cannot be renamed
        across devices)."""
        self.store.spoolThreshold = 4 << 20
        other = self.addDevice("MAG1")
        uid, data = largeDataset(600 << 10)
        incoming, spool = self.receive(data, uid)
        yield self.drainWorkers()
        early = self.earlyFile()
        self.store.choice.check = lambda size=0: other
        device, relative = yield self.store.store(incoming, spool)
        self.assertEqual(device, "MAG1")
        self.assertNotEqual(os.stat(other.absolute(relative)).st_ino, early.st_ino)
        with open(other.absolute(relative), "rb") as f:
            self.assertEqual(f.read()[-len(data):], data)
        yield self.drainWorkers()
        self.assertEqual(self.temporaryBytes(), [])
        self.assertEqual([name for name in os.listdir(other.tempDir)
                          if os.path.getsize(os.path.join(other.tempDir, name))], [])

    @defer.inlineCallbacks
    def test_notWrittenWhileItArrivesWhenDirectWriteSizeIsLarger(self):
        """With DirectWriteSize above EARLY_WRITE, an object is written once
        whole, so that one smaller than DirectWriteSize goes through the
        page cache (an early file would be opened with O_DIRECT)."""
        self.store.spoolThreshold = 4 << 20
        self.store.fileWrites = FileWrites(directSize=2 << 20)
        uid, data = largeDataset(600 << 10)
        incoming, spool = self.receive(data, uid)
        yield self.drainWorkers()
        self.assertEqual(self.temporaryBytes(), [])
        _, relative = yield self.store.store(incoming, spool)
        self.assertEqual(self.storedFile(relative)[::2], (EXPLICIT, data))

    @defer.inlineCallbacks
    def test_notWrittenWhileItArrivesWhenAnotherStoreIsUnderWay(self):
        """While another store is under way (several associations sending)
        an object is written once whole, as before: the writes of the
        others overlap its receipt already."""
        self.store.spoolThreshold = 4 << 20
        first = self.store.store(*self.receive(datasetBytes("CT_small.dcm"), CT_SMALL_UID))
        uid, data = largeDataset(600 << 10)
        incoming, spool = self.receive(data, uid)
        self.assertIsNone(spool.takeEarlyWrite())
        yield first
        _, relative = yield self.store.store(incoming, spool)
        self.assertEqual(self.storedFile(relative)[::2], (EXPLICIT, data))

    @defer.inlineCallbacks
    def test_anEarlyFileIsNotStoredForAnObjectChangedOnArrival(self):
        """An object whose odd values are padded when it is whole is
        written again as padded; the file written while it arrived goes."""
        self.store.spoolThreshold = 4 << 20
        uid, data = largeDataset(600 << 10, oddValue=b"odd")
        incoming, spool = self.receive(data, uid)
        yield self.drainWorkers()
        self.assertTrue(self.temporaryBytes())
        _, relative = yield self.store.store(incoming, spool)
        self.assertEqual(self.storedFile(relative)[::2], (EXPLICIT, evenLengths(data, EXPLICIT)[0]))
        yield self.drainWorkers()
        self.assertEqual(self.temporaryBytes(), [])

    @defer.inlineCallbacks
    def test_anEarlyFileIsRemovedBeforeTheChangedCopyIsWritten(self):
        """The file written while an object changed on arrival arrived is
        removed before the changed copy is written: a nearly full device
        never has to hold both."""
        self.store.spoolThreshold = 4 << 20
        uid, data = largeDataset(600 << 10, oddValue=b"odd")
        incoming, spool = self.receive(data, uid)
        yield self.drainWorkers()
        self.assertTrue(self.temporaryBytes())
        seen = []
        writeTemporary = self.store._writeTemporary

        def spy(*args):
            seen.append(self.temporaryBytes())
            return writeTemporary(*args)

        self.store._writeTemporary = spy
        yield self.store.store(incoming, spool)
        self.assertEqual(seen, [[]])

    @defer.inlineCallbacks
    def test_anEarlyFileIsRemovedWithARefusedObject(self):
        """An object refused once whole (its data set names another SOP
        instance) leaves no file behind."""
        self.store.spoolThreshold = 4 << 20
        _, data = largeDataset(600 << 10)
        incoming, spool = self.receive(data, "1.2.3.999")
        yield self.assertFailure(self.store.store(incoming, spool), DatasetMismatch)
        yield self.drainWorkers()
        self.assertEqual(self.temporaryBytes(), [])

    @defer.inlineCallbacks
    def test_storedInTheCompressionAskedFor(self):
        data = datasetBytes("CT_small.dcm")
        original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        incoming, spool = self.receive(data, original.SOPInstanceUID, compression="j2")
        _, relative = yield self.store.store(incoming, spool)
        stored = pydicom.dcmread(self.device.absolute(relative))
        self.assertEqual(stored.file_meta.TransferSyntaxUID, "1.2.840.10008.1.2.4.57")
        self.assertTrue((stored.pixel_array == original.pixel_array).all())

    @defer.inlineCallbacks
    def test_compressedObjectNamedDcm(self):
        """FileNameSyntax 3 names .v2 files; one stored compressed is named
        .dcm, as Conquest names it (also when compressed file to file)."""
        self.store.namer = FileNamer("3")
        original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        incoming, spool = self.receive(datasetBytes("CT_small.dcm"), original.SOPInstanceUID, compression="j2")
        self.assertTrue((yield self.store.store(incoming, spool))[1].endswith(".dcm"))
        uid, data = largeDataset(2 << 20)
        incoming, spool = self.receive(data, uid, compression="ui")
        self.assertTrue((yield self.store.store(incoming, spool))[1].endswith(".v2"), "uncompressed: .v2")

    @defer.inlineCallbacks
    def test_compressionThatFailsStoresAsReceived(self):
        """openjpeg refuses images under 32 pixels across: the object is
        stored as it came, with a warning."""
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.Rows = ds.Columns = 16
        ds.PixelData = bytes(16 * 16 * 2)
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()[readFileMeta(BytesIO(buffer.getvalue()))[2]:]
        events = []
        self.store.log = Logger(observer=events.append)
        incoming, spool = self.receive(data, ds.SOPInstanceUID, compression="jk")
        _, relative = yield self.store.store(incoming, spool)
        self.assertEqual(self.storedFile(relative)[::2], (EXPLICIT, data))
        self.assertIn("compression jk not applied, stored as received", formatEvent(events[0]))

    @defer.inlineCallbacks
    def test_largeObjectStoredAsReceivedUncompressed(self):
        """An object whose data set or pixels are larger than
        LARGEST_CONVERTED_ON_ARRIVAL is not compressed on arrival, which
        would hold it several times over in memory and take minutes, past
        the sender's timeout (a 786 MB XA with IncomingCompression j1: no
        C-STORE response for 60 s): it is stored as received, with a line
        saying so; spooled (64 frames, 2 MB, the limit patched to 1 MB: its
        spool file never read whole) as in memory (CT_small, the limit
        patched to 16 kB). A smaller one is still compressed."""
        self.patch(storeModule, "recode", lambda *args: self.fail("converted in memory"))
        frames = ctWith(NumberOfFrames=64, PixelData=bytes(128 * 128 * 2 * 64))
        for data, largest, inMemory in ((frames, 1 << 20, False), (datasetBytes("CT_small.dcm"), 16 << 10, True)):
            self.patch(storeModule, "LARGEST_CONVERTED_ON_ARRIVAL", largest)
            events = []
            self.store.log = Logger(observer=events.append)
            incoming, spool = self.receive(data, CT_SMALL_UID, compression="j1")
            self.assertEqual(spool.inMemory is not None, inMemory)
            _, relative = yield self.store.store(incoming, spool)
            self.assertEqual(self.storedFile(relative)[::2], (EXPLICIT, data))
            [line] = [event for event in events if "not applied" in event["log_format"]]
            self.assertEqual(line["log_level"].name, "info")
            self.assertIn("compression j1 not applied, stored as received", formatEvent(line))
            self.assertIn(f"more than the {largest} converted", formatEvent(line))
        self.patch(storeModule, "LARGEST_CONVERTED_ON_ARRIVAL", 4 << 20)
        self.patch(storeModule, "recode", recode)
        incoming, spool = self.receive(frames, CT_SMALL_UID, compression="j1")
        _, relative = yield self.store.store(incoming, spool)
        self.assertEqual(self.storedFile(relative)[0], "1.2.840.10008.1.2.4.70")

    @defer.inlineCallbacks
    def test_largeDatasetSpooledToDisk(self):
        uid, data = largeDataset(2 << 20)
        transport = FakeTransport()
        incoming, spool = self.receive(data, uid, transport=transport)
        self.assertIsNone(spool.inMemory, "past the threshold the spool is a file")
        self.assertTrue(spool.path.startswith(self.device.tempDir))
        _, relative = yield self.store.store(incoming, spool)
        with open(self.device.absolute(relative), "rb") as f:
            f.seek(readFileMeta(f)[2])
            self.assertEqual(f.read(), data)
        self.assertFalse(os.path.exists(spool.path), "the spool file was renamed into place")

    @defer.inlineCallbacks
    def test_spooledObjectConvertedFileToFile(self):
        """A spooled object that ``ui`` or ``un`` turns into little endian is
        converted from its spool file (never read whole): the same bytes
        as the conversion in memory, indexed with its attributes."""
        uid, data = largeDataset(2 << 20)
        rle = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
        rle.PixelData = encapsulate(list(generate_frames(rle.PixelData, number_of_frames=2)) * 100)
        rle.NumberOfFrames = 200
        buffer = BytesIO()
        rle.save_as(buffer, enforce_file_format=True)
        compressed = buffer.getvalue()[readFileMeta(BytesIO(buffer.getvalue()))[2]:]
        self.patch(ObjectStore, "_compress", lambda *args: self.fail("converted in memory"))
        for sop, syntax, payload, code, target in ((uid, EXPLICIT, data, "ui", IMPLICIT),
                                                   (rle.SOPInstanceUID, RLE, compressed, "un", EXPLICIT)):
            incoming, spool = self.receive(payload, sop, sopClass=rle.SOPClassUID if syntax == RLE else CT,
                                           compression=code, syntax=syntax)
            self.assertIsNone(spool.inMemory)
            _, relative = yield self.store.store(incoming, spool)
            self.assertEqual(self.storedFile(relative)[::2], (target, transcode(payload, syntax, target)))
        rows = yield self.index.runQuery(
            lambda c: c.exec_driver_sql("SELECT NumberOfFrames FROM DICOMImages ORDER BY NumberOfFrames").fetchall())
        self.assertEqual([r[0] for r in rows], ["", "200"])

    @defer.inlineCallbacks
    def test_spooledOddObjectPaddedFileToFile(self):
        """A spooled object of odd length (an odd private value, as pydicom
        writes it) is padded from its spool file into the device's
        temporary file a piece at a time (``evenFile``), never read whole
        (it was read and copied four times over, with no size limit),
        also after a conversion file to file; logged as in memory."""
        uid, odd = largeDataset(2 << 20, b"abc")
        self.assertEqual(len(odd) % 2, 1)
        self.patch(ObjectStore, "_evened", lambda *args: self.fail("read whole to be padded"))
        for code, syntax in (("", EXPLICIT), ("ui", IMPLICIT)):
            events = []
            self.store.log = Logger(observer=events.append)
            incoming, spool = self.receive(odd, uid, compression=code)
            self.assertIsNone(spool.inMemory)
            _, relative = yield self.store.store(incoming, spool)
            stored, _, written = self.storedFile(relative)
            self.assertEqual(stored, syntax)
            expected = odd if syntax == EXPLICIT else transcode(odd, EXPLICIT, IMPLICIT)
            self.assertEqual(written, evenLengths(expected, syntax)[0])
            self.assertNotEqual(written, expected)
            self.assertIn(b"abc\x00", written)
            self.assertIn("values of odd length padded to an even length (PS3.5 7.1.1): (0009,1002)",
                          " ".join(formatEvent(event) for event in events))

    @defer.inlineCallbacks
    def test_oddDataSetsStoredBeforeAreNotRefused(self):
        """Odd data sets stored before values were padded are never
        refused for it (they were, with C000 or STOW-RS 409): a private OB
        of undefined length holding fragments has its odd fragment padded;
        one the padding cannot walk is stored as received, with a
        warning."""
        ct = datasetBytes("CT_small.dcm")
        at = ct.index(b"\x10\x00\x10\x00PN")
        data = (ct[:at] + b"\x0b\x00\x10\x00LO\x04\x00ACME\x0b\x00\x10\x10OB\x00\x00\xff\xff\xff\xff"
                b"\xfe\xff\x00\xe0\x03\x00\x00\x00abc\xfe\xff\xdd\xe0\x00\x00\x00\x00" + ct[at:])
        for padded in (True, False):
            if not padded:
                self.patch(storeModule, "evenLengths", lambda *args: evenLengths(b"\x00", EXPLICIT))
            events = []
            self.store.log = Logger(observer=events.append)
            incoming, spool = self.receive(data, CT_SMALL_UID)
            _, relative = yield self.store.store(incoming, spool)
            written = self.storedFile(relative)[2]
            logged = " ".join(formatEvent(event) for event in events)
            if padded:
                self.assertEqual(len(written), len(data) + 1)
                self.assertIn(b"\x04\x00\x00\x00abc\x00\xfe\xff\xdd\xe0", written)
                self.assertIn("padded to an even length (PS3.5 7.1.1): (000b,1010)", logged)
            else:
                self.assertEqual(written, data)
                self.assertIn(f"{CT_SMALL_UID} from MODALITY: its values of odd length cannot be padded, stored "
                              "as received", logged)

    def test_backpressure(self):
        transport = FakeTransport()
        written = []
        release = defer.Deferred()

        def runInThread(f, *args):
            written.append(args)
            return release

        spool = Spool(self.device.tempDir, b"H", 10, runInThread, transport, chunkSize=100, maxBacklog=300)
        for _ in range(10):
            spool.write(b"x" * 100)
        self.assertEqual(transport.paused, 1, "the peer is paused while writes lag behind")
        spool.discard()

    @defer.inlineCallbacks
    def test_sameInstanceReplacesFileAndRow(self):
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        _, first = yield self.store.store(*self.receive(data, uid))
        _, second = yield self.store.store(*self.receive(data, uid))
        self.assertNotEqual(first, second)
        yield self.drainWorkers()  # the replaced file is removed in a worker
        self.assertFalse(os.path.exists(self.device.absolute(first)))
        self.assertTrue(os.path.exists(self.device.absolute(second)))
        count = yield self.index.runQuery(
            lambda c: c.exec_driver_sql("SELECT COUNT(*) FROM DICOMImages").scalar())
        self.assertEqual(count, 1)

    @defer.inlineCallbacks
    def test_anotherInstanceNamedTheSameGetsANumberedName(self):
        """A FileNameSyntax that names two instances alike (no %sopuid) never
        writes one over the other: acknowledged objects were lost so."""
        self.store.namer = FileNamer("%id\\%series_%imagenum.dcm")
        template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        names, contents = [], {}
        for number, spooled in enumerate((False, False, True)):
            template.SOPInstanceUID = f"1.2.826.0.1.3680043.2.1143.{number}"
            template.PixelData = os.urandom(len(template.PixelData) if not spooled else 80 << 10)
            buffer = BytesIO()
            template.save_as(buffer, enforce_file_format=True)
            data = buffer.getvalue()[readFileMeta(BytesIO(buffer.getvalue()))[2]:]
            _, relative = yield self.store.store(*self.receive(data, template.SOPInstanceUID))
            names.append(relative)
            contents[relative] = data
        self.assertEqual([os.path.basename(name) for name in names],
                         ["0001_1.dcm", "0001_1_1.dcm", "0001_1_2.dcm"])
        for relative, data in contents.items():
            self.assertEqual(self.storedFile(relative)[2], data)
        rows = yield self.index.runQuery(lambda c: c.exec_driver_sql(
            "SELECT SOPInstanceUID, ObjectFile FROM DICOMImages ORDER BY SOPInstanceUID").fetchall())
        self.assertEqual([row[1] for row in rows], names)

    @defer.inlineCallbacks
    def test_sameInstanceNamedTheSameReplacesTheFile(self):
        self.store.namer = FileNamer("%id\\%series_%imagenum.dcm")
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        _, first = yield self.store.store(*self.receive(data, uid))
        _, second = yield self.store.store(*self.receive(data, uid))
        self.assertEqual(first, second)
        self.assertEqual(os.listdir(os.path.dirname(self.device.absolute(first))), [os.path.basename(first)])

    @defer.inlineCallbacks
    def test_storesOfOneInstanceAtOnceKeepTheLastCopy(self):
        """With names that come back (%callingae), AE2's copy replaces AE1's
        while AE1 sends it again: AE2's removal of AE1's file, queued at its
        commit, ran after AE1's new copy was written there and took the
        acknowledged file.  Stores of one instance now wait for the last to
        end, so the index names a file on disk."""
        self.store.namer = FileNamer("%callingae\\%sopuid.dcm")
        removeReplaced = self.store.removeReplaced

        def slowRemoval(replaced):
            time.sleep(0.2)
            removeReplaced(replaced)
        self.store.removeReplaced = slowRemoval
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID

        def receive(callingAE):
            incoming, spool = self.receive(data, uid)
            return dataclasses.replace(incoming, callingAE=callingAE), spool
        yield self.store.store(*receive("AE1"))
        yield defer.gatherResults([self.store.store(*receive("AE2")), self.store.store(*receive("AE1"))])
        yield self.drainWorkers()
        yield self.drainWorkers()
        files = yield self.index.runQuery(lambda c: c.exec_driver_sql("SELECT ObjectFile FROM DICOMImages").fetchall())
        self.assertEqual([os.path.exists(self.device.absolute(f)) for (f,) in files], [True])
        self.assertEqual(self.store._storing, {})

    @defer.inlineCallbacks
    def test_aCopyArrivingWhileAnotherIsConvertedIsNotWaitedFor(self):
        """An import converter that fetches the study being imported
        (dicommove: awaitingObjects with its MoveScope) waits for the moved copy of the very
        object it converts: that copy is answered at once, not stored
        (Destroyed: Success), and the converted one is stored when the
        converter ends."""
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        moved = threading.Event()
        store = self.store

        class Importers:
            def apply(self, incoming, attrs, data, transferSyntax):
                if incoming.callingAE == "MODALITY":  # the move's copy comes from another AE
                    study = pydicom.Dataset()
                    study.QueryRetrieveLevel, study.StudyInstanceUID = "STUDY", attrs[0x0020000D]
                    with awaitingObjects(MoveScope(study)):
                        reactor.callFromThread(lambda: store.store(*copy()).addErrback(
                            lambda failure: failure.trap(Destroyed)).addCallback(lambda _: moved.set()))
                        self.moved = moved.wait(5)

        def copy():
            incoming, spool = self.receive(data, uid)
            return dataclasses.replace(incoming, callingAE="OTHERPACS"), spool
        store.importers = importers = Importers()
        _, relative = yield store.store(*self.receive(data, uid))
        self.assertTrue(importers.moved)
        self.assertEqual(self.storedFile(relative)[2], data)
        self.assertEqual(store._storing, {})

    @defer.inlineCallbacks
    def test_aCopyArrivingWhileAnotherIsConvertedWaitsAndIsStored(self):
        """A copy (a resend after a timeout) arriving while the import
        converter of an earlier one runs, not in a request, waits for it:
        when the converter refuses the earlier copy, the later is stored
        (never answered Success and lost)."""
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        store = self.store
        later = []

        class Importers:
            def apply(self, incoming, attrs, data, transferSyntax):
                if not later:
                    arrived = threading.Event()

                    def resend():
                        later.append(store.store(*self.receive()))
                        arrived.set()
                    reactor.callFromThread(resend)
                    arrived.wait(5)
                    raise Refused("rejected by ImportConverter0")

        Importers.receive = lambda _: self.receive(data, uid)
        store.importers = Importers()
        yield self.assertFailure(store.store(*self.receive(data, uid)), Refused)
        _, relative = yield later[0]
        self.assertEqual(self.storedFile(relative)[2], data)
        self.assertEqual(store._storing, {})

    @defer.inlineCallbacks
    def test_aCopyOutsideTheAwaitedMoveWaitsAndIsStored(self):
        """A second sender's copy arriving while the import converter of the
        first waits for a dicommove of another patient's study (a prior),
        which cannot bring it, waits as any copy does: when the converter
        then refuses the first copy, the second is stored (never answered
        Success and lost)."""
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        store = self.store
        later = []

        class Importers:
            def apply(self, incoming, attrs, data, transferSyntax):
                if incoming.callingAE == "MOD1":
                    prior = pydicom.Dataset()
                    prior.QueryRetrieveLevel, prior.PatientID, prior.StudyInstanceUID = "STUDY", "PRIOR", "1.2.3.4"
                    with awaitingObjects(MoveScope(prior)):
                        reactor.callFromThread(lambda: later.append(store.store(*copy("MOD2"))))
                        time.sleep(1)  # the move's own time: the second copy is read meanwhile
                    raise Refused("rejected by ImportConverter0")

        def copy(ae):
            incoming, spool = self.receive(data, uid)
            return dataclasses.replace(incoming, callingAE=ae), spool
        store.importers = Importers()
        yield self.assertFailure(store.store(*copy("MOD1")), Refused)
        _, relative = yield later[0]
        self.assertEqual(self.storedFile(relative)[2], data)
        self.assertEqual(store._storing, {})

    @defer.inlineCallbacks
    def test_aStorageDeviceThatIsNoneOfTheArchivesIsLogged(self):
        """'storage MAG9' of an import converter, with no MAG9: the object
        is stored on the device it would have gone to, with a warning
        naming the device asked for; 'storage MAG1' stores it there."""
        mag1 = self.addDevice("MAG1")
        asked = []

        class Importers:
            def apply(self, incoming, attrs, data, transferSyntax):
                return ImportDecision(None, transferSyntax, None, asked[-1])

        self.store.importers = Importers()
        for device, expected in (("MAG9", self.device), ("MAG1", mag1)):
            asked.append(device)
            with capturedLogs() as events:
                stored, relative = yield self.store.store(*self.receive(datasetBytes("CT_small.dcm"), CT_SMALL_UID))
            self.assertEqual(stored, expected.name)
            self.assertTrue(os.path.exists(expected.absolute(relative)))
            warnings = [formatEvent(e) for e in events if "names no MAG device" in e.get("log_format", "")]
            self.assertEqual(warnings, [f"{CT_SMALL_UID}: the import converters' 'storage MAG9' names no MAG device "
                                        f"of this archive: stored on {self.device.name}"] if device == "MAG9" else [])

    def objectFiles(self):
        """The object files on the device, relative to it."""
        return sorted(os.path.relpath(os.path.join(folder, name), self.device.path)
                      for folder, _, names in os.walk(self.device.path) for name in names if name.endswith(".dcm"))

    def storeAsPatient(self, sopInstanceUID, patientID):
        """Store CT_small as ``sopInstanceUID`` of patient ``patientID``."""
        return self.store.store(*self.receive(ctWith(SOPInstanceUID=sopInstanceUID, PatientID=patientID),
                                              sopInstanceUID))

    @defer.inlineCallbacks
    def test_objectOfAStudyOfAnotherPatientRefusedAndRemoved(self):
        """A new object of a study that belongs to another patient: the
        index refuses it (Conquest's "Refused to enter inconsistent link"),
        its file is removed, the study keeps its patient and images."""
        for number in (1, 2):
            yield self.storeAsPatient(f"1.2.3.4.{number}", "PATA")
        before = self.objectFiles()
        error = yield self.assertFailure(self.storeAsPatient("1.2.3.4.3", "PATC"), Refused)
        self.assertIn("Refused to enter inconsistent link PatientID into DICOMStudies: StudyInstanceUID = ", str(error))
        self.assertIn("Old = 'PATA', Refused = 'PATC'", str(error))
        self.assertEqual(self.objectFiles(), before)
        rows = yield self.index.runQuery(lambda c: c.exec_driver_sql(
            "SELECT PatientID FROM DICOMStudies UNION ALL SELECT PatientID FROM DICOMPatients").fetchall())
        self.assertEqual(rows, [("PATA",), ("PATA",)])

    @defer.inlineCallbacks
    def test_longPathStoredUnderANameThatFits(self):
        """FileNameSyntax 11 with a 60-character name and 64-character UIDs
        named a 263-character path, which the 255-character ObjectFile
        column refused after the file was written: 0x0110 with a critical
        traceback, the file left for a regen that failed on it too.  It is
        stored and indexed under a name cut to 255 (review of the database
        backends, item 1)."""
        self.store.namer = FileNamer("11")
        uids = {keyword: f"1.2.826.0.1.3680043.9.7784.{n}." + "7" * 34 + "1"
                for n, keyword in enumerate(("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"), 1)}
        data = ctWith(PatientName="Garcia-Hernandez de la Fuente^Maria de los Angeles Guadalupe", **uids)
        _, relative = yield self.store.store(*self.receive(data, uids["SOPInstanceUID"]))
        self.assertEqual(len(relative), 255)
        self.assertTrue(relative.endswith(uids["SOPInstanceUID"] + ".dcm"), relative)
        self.assertEqual(self.objectFiles(), [relative])
        rows = yield self.index.runQuery(lambda c: c.exec_driver_sql(
            "SELECT SOPInstanceUID, ObjectFile FROM DICOMImages").fetchall())
        self.assertEqual([tuple(row) for row in rows], [(uids["SOPInstanceUID"], relative)])

    @defer.inlineCallbacks
    def test_numberedNameFits(self):
        """A numbered name (a FileNameSyntax that names two instances alike)
        of a 255-character one is cut to 255 as well: 257 characters, the
        index refused it and the file was kept "for the regen", which
        failed on it too."""
        self.store.namer = FileNamer("%id\\" + "x" * 245 + "%imagenum.dcm")
        _, first = yield self.storeAsPatient("1.2.3.4.1", "1CT1")
        _, second = yield self.storeAsPatient("1.2.3.4.2", "1CT1")
        self.assertEqual(len(first), 255)
        self.assertEqual(second, "1CT1/" + "x" * 243 + "1_1.dcm")
        self.assertEqual(self.objectFiles(), sorted([first, second]))
        rows = yield self.index.runQuery(lambda c: c.exec_driver_sql(
            "SELECT ObjectFile FROM DICOMImages ORDER BY SOPInstanceUID").fetchall())
        self.assertEqual([row[0] for row in rows], [first, second])

    @defer.inlineCallbacks
    def test_objectRefusedBeforeItReplacesTheFileOfItsName(self):
        """One of a study's images sent again with another Patient ID, under
        a FileNameSyntax that names it as before: refused before its file
        took the place of the acknowledged copy."""
        self.store.namer = FileNamer("%studyuid\\%sopuid.dcm")
        for number in (1, 2):
            yield self.storeAsPatient(f"1.2.3.4.{number}", "PATA")
        name = self.objectFiles()[0]
        with open(self.device.absolute(name), "rb") as f:
            stored = f.read()
        yield self.assertFailure(self.storeAsPatient("1.2.3.4.1", "PATB"), Refused)
        with open(self.device.absolute(name), "rb") as f:
            self.assertEqual(f.read(), stored)
        self.assertEqual(len(self.objectFiles()), 2)

    @defer.inlineCallbacks
    def test_aReplacedFileOnAnotherDeviceIsRemoved(self):
        """The first copy was moved to MAG1 (movedatatodevice): a new copy
        on MAG0 replaces it, and the file on MAG1 goes."""
        mag1 = MagDevice("MAG1", os.path.abspath(self.mktemp()))
        self.store.devicesByName["MAG1"] = mag1
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        _, first = yield self.store.store(*self.receive(data, uid))
        os.makedirs(os.path.dirname(mag1.absolute(first)))
        os.replace(self.device.absolute(first), mag1.absolute(first))
        yield self.index.runWrite(lambda c: c.exec_driver_sql("UPDATE DICOMImages SET DeviceName = 'MAG1'"))
        _, second = yield self.store.store(*self.receive(data, uid))
        yield self.drainWorkers()
        self.assertFalse(os.path.exists(mag1.absolute(first)))
        self.assertTrue(os.path.exists(self.device.absolute(second)))

    @defer.inlineCallbacks
    def test_aFullMAG0SpillsOverToMAG1(self):
        """MAGDeviceFullThreshHold: with MAG0 below it, objects held in memory
        and objects spooled to disk as they arrive are both stored on MAG1."""
        mag1 = self.addDevice("MAG1")
        self.store.choice = DeviceChoice([self.device, mag1], 30 << 20,
                                         lambda path: 0 if path == self.device.path else 100 << 20)
        small = datasetBytes("MR_small.dcm")
        stored = yield self.store.store(*self.receive(small, pydicom.dcmread(get_testdata_file("MR_small.dcm"))
                                                      .SOPInstanceUID, sopClass="1.2.840.10008.5.1.4.1.1.4"))
        incoming, spool = self.receive(*reversed(largeDataset(2 << 20)))
        self.assertIsNotNone(spool.path, "spooled to disk")
        self.assertTrue(spool.path.startswith(mag1.tempDir))
        spooled = yield self.store.store(incoming, spool)
        for device, relative in (stored, spooled):
            self.assertEqual(device, "MAG1")
            self.assertTrue(os.path.exists(mag1.absolute(relative)))
        rows = yield self.index.runQuery(
            lambda c: c.exec_driver_sql("SELECT DISTINCT DeviceName FROM DICOMImages").scalars().all())
        self.assertEqual(rows, ["MAG1"])

    @defer.inlineCallbacks
    def test_onlyLargeObjectsStillSpillOver(self):
        """When only spooled objects arrive, each write looks at the free
        space too: the first (spooled on MAG0 before anything was looked
        at) stays there, the next is spooled on MAG1."""
        mag1 = self.addDevice("MAG1")
        self.store.choice = DeviceChoice([self.device, mag1], 30 << 20,
                                         lambda path: 0 if path == self.device.path else 100 << 20)
        stored = []
        for _ in range(2):  # the same object twice: the second replaces the first
            incoming, spool = self.receive(*reversed(largeDataset(2 << 20)))
            stored.append((yield self.store.store(incoming, spool))[0])
        self.assertEqual(stored, ["MAG0", "MAG1"])

    @defer.inlineCallbacks
    def test_aDeviceFoundFullIsLeftForTheNextWithRoom(self):
        """MAGDeviceFullThreshHold: a write to MAG0 failing for a full disk
        (ENOSPC before its free space, looked at a moment ago, fell below
        the threshold) has the free space looked at again at once, and the
        object written once more on MAG1; no temporary file is left."""
        mag1 = self.addDevice("MAG1")
        self.store.choice = DeviceChoice([self.device, mag1], 30 << 20, lambda path: 100 << 20)
        realOpen = self.store.fileWrites.open

        def fullOnMAG0(path, *args, **kwargs):
            out = realOpen(path, *args, **kwargs)
            if path.startswith(self.device.tempDir):
                def full(fragments):
                    raise OSError(errno.ENOSPC, "No space left on device")
                out.write = full
            return out

        self.patch(self.store.fileWrites, "open", fullOnMAG0)
        uid = CT_SMALL_UID
        device, relative = yield self.store.store(*self.receive(datasetBytes("CT_small.dcm"), uid))
        self.assertEqual(device, "MAG1")
        self.assertTrue(os.path.exists(mag1.absolute(relative)))
        self.assertIs(self.store.choice.current, mag1)
        yield self.drainWorkers()
        self.assertEqual(sorted(os.listdir(self.device.tempDir)),
                         sorted(os.path.basename(path) for path in self.device._reservoir))

    def readOnly(self, device):
        """``device``'s file system read-only: no file of it can be opened for writing."""
        realOpen = self.store.fileWrites.open

        def open(path, *args, **kwargs):
            if path.startswith(device.path):
                raise OSError(errno.EROFS, "Read-only file system", path)
            return realOpen(path, *args, **kwargs)

        self.patch(self.store.fileWrites, "open", open)

    @defer.inlineCallbacks
    def test_aReadOnlyDeviceRefusesTheObject(self):
        """Refused (StorageFailedErrorCode), saying so, not a failure whose
        traceback the storage service logs."""
        self.readOnly(self.device)
        uid = CT_SMALL_UID
        error = yield self.assertFailure(self.store.store(*self.receive(datasetBytes("CT_small.dcm"), uid)),
                                         DeviceUnwritable)
        self.assertEqual(str(error), f"MAG0 cannot be written (Read-only file system): {self.device.path}")

    @defer.inlineCallbacks
    def test_aReadOnlyDeviceIsLeftForTheNextWithRoom(self):
        mag1 = self.addDevice("MAG1")
        self.store.choice = DeviceChoice([self.device, mag1], 30 << 20, lambda path: 100 << 20,
                                         checkDevice=lambda device: None)
        self.readOnly(self.device)
        uid = CT_SMALL_UID
        device, relative = yield self.store.store(*self.receive(datasetBytes("CT_small.dcm"), uid))
        self.assertEqual(device, "MAG1")
        self.assertIs(self.store.choice.current, mag1)

    @defer.inlineCallbacks
    def test_aReplacedFileLosesItsMirrorCopy(self):
        mirror = MagDevice("MIRROR0", self.mktemp())
        self.store.mirrors = Mirrors({"MAG0": mirror})
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        _, first = yield self.store.store(*self.receive(data, uid))
        os.makedirs(os.path.dirname(mirror.absolute(first)))
        with open(mirror.absolute(first), "wb") as f:
            f.write(b"the mirror copy")
        _, second = yield self.store.store(*self.receive(data, uid))
        yield self.drainWorkers()
        self.assertFalse(os.path.exists(mirror.absolute(first)))
        self.assertTrue(os.path.exists(self.device.absolute(second)))

    @defer.inlineCallbacks
    def storeName(self, uid, name, charset, peer="MODALITY"):
        """Store CT_small with the Patient Name bytes ``name`` in ``charset``
        (None: none) from ``peer``; ``(the names indexed, the lines logged,
        each "level: text")``."""
        data = ctWith(SpecificCharacterSet=charset, PatientName=name, SOPInstanceUID=uid)
        events = []
        self.store.log = Logger(observer=events.append)
        incoming, spool = self.receive(data, uid)
        incoming = dataclasses.replace(incoming, callingAE=peer)
        _, relative = yield self.store.store(incoming, spool)
        self.assertIn(name, self.storedFile(relative)[2])
        rows = yield self.index.runQuery(lambda c: c.exec_driver_sql("SELECT PatientName FROM DICOMPatients").all())
        return [name for name, in rows], [f"{e['log_level'].name}: {formatEvent(e)}" for e in events]

    @defer.inlineCallbacks
    def test_textNotValidInItsCharacterSetIsIndexedAsLatin1AndLogged(self):
        """A Latin-1 name in an object that says ISO_IR 192: stored as it
        came, indexed as Latin-1 (found by that name), one line naming the
        peer, the object and the element."""
        uid = "1.2.3.4.5.6"
        names, [line] = yield self.storeName(uid, b"Ung\xfcltig^Namen", "ISO_IR 192")
        self.assertEqual(names, ["Ungültig^Namen"])
        for part in (uid, "MODALITY", "(0010,0010)", "Latin-1"):
            self.assertIn(part, line)

    @defer.inlineCallbacks
    def test_latin9IsRead(self):
        """ISO_IR 203 (ISO 8859-15), a Defined Term pydicom's tables lack,
        was read as Latin-1 without a word: ``¦koda^½`` was indexed."""
        names, lines = yield self.storeName("1.2.3.4.5.7", b"\xa6koda^\xbd", "ISO_IR 203")
        self.assertEqual((names, lines), (["Škoda^œ"], []))

    @defer.inlineCallbacks
    def test_anUnknownCharacterSetIsLogged(self):
        """Its text is indexed as read in Latin-1, as pydicom reads it; its
        only trace was pydicom's Python warning, printed once a process.
        A warning for a peer's first, debug lines for its next ones."""
        lines = []
        for uid in ("1.2.3.4.5.8", "1.2.3.4.5.9"):
            names, logged = yield self.storeName(uid, b"M\xfcller^Unk", "ISO_IR 999")
            self.assertEqual(names, ["Müller^Unk"])
            lines += logged
        self.assertEqual(lines, [
            "warn: 1.2.3.4.5.8 from MODALITY: Specific Character Set ISO_IR 999 unknown, its text indexed as read in "
            "Latin-1 (further ones from MODALITY are logged at debug level for an hour)",
            "debug: 1.2.3.4.5.9 from MODALITY: Specific Character Set ISO_IR 999 unknown, its text indexed as read "
            "in Latin-1"])

    @defer.inlineCallbacks
    def test_valuesNotValidInTheirVRAreLogged(self):
        """Values indexed that are no value of their VR (CS 'ct', TM
        '240000', IS '1-3') are indexed as they are, named in one line with
        the object and the peer: pydicom, which reads without validating
        (pydicomchecks), no longer wrote its anonymous warning for them;
        CT_small's own values (storeName's other tests) get no line."""
        uid = "1.2.3.4.5.11"
        data = ctWith([(0x00200013, "IS", b"1-3 ")], Modality="ct", StudyTime="240000", SOPInstanceUID=uid)
        events = []
        self.store.log = Logger(observer=events.append)
        yield self.store.store(*self.receive(data, uid))
        lines = [formatEvent(e) for e in events]
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], rf"^{uid} from \S+: values not valid in their VR, indexed as they are: ")
        for named in ("(0008,0060) 'ct' is not a valid CS value", "(0008,0030) '240000' is not a valid TM value",
                      "(0020,0013) '1-3' is not a valid IS value"):
            self.assertIn(named, lines[0])

    @defer.inlineCallbacks
    def test_valuesNotValidLoggedForTheObjectStoredAsIndexed(self):
        """The line names the values indexed: an object then refused (here
        its 71-character Patient ID) gets none, nor uses up its sender's
        warning for the hour; one whose import converter corrects its values
        gets none, one whose converter makes a value invalid gets it."""
        uid = "1.2.3.4.5.12"
        events = []
        self.store.log = Logger(observer=events.append)
        refused = ctWith(Modality="ct", PatientID="P" * 71, SOPInstanceUID=uid)
        yield self.assertFailure(self.store.store(*self.receive(refused, uid)), DatasetMismatch)
        self.assertEqual([formatEvent(e) for e in events if "not valid in their VR" in e["log_format"]], [])
        converted = []

        class Importers:
            def apply(self, incoming, attrs, data, transferSyntax):
                return ImportDecision(converted[-1], transferSyntax, None, None)

        self.store.importers = Importers()
        for received, amended, expected in [
                (ctWith([(0x00200013, "IS", b"1-3 ")], Modality="ct", SOPInstanceUID=uid),
                 ctWith([(0x00200013, "IS", b"12")], Modality="CT", SOPInstanceUID=uid), []),
                (ctWith(Modality="CT", SOPInstanceUID=uid), ctWith(Modality="ct", SOPInstanceUID=uid),
                 [f"{uid} from MODALITY: values not valid in their VR, indexed as they are: (0008,0060) 'ct' is not a "
                  "valid CS value (further ones from MODALITY are logged at debug level for an hour)"])]:
            converted.append(amended)
            del events[:]
            yield self.store.store(*self.receive(received, uid))
            self.assertEqual([formatEvent(e) for e in events if "not valid in their VR" in e["log_format"]], expected)
            self.assertTrue(all(e["log_level"] == LogLevel.warn for e in events
                                if "not valid in their VR" in e["log_format"]))

    @defer.inlineCallbacks
    def test_textBeyondAsciiWithoutACharacterSetIsLogged(self):
        """Only ASCII may be used without a Specific Character Set; 8-bit
        text is indexed as read in Latin-1, as before, now with a line."""
        uid = "1.2.3.4.5.10"
        names, [line] = yield self.storeName(uid, b"M\xfcller^Hans", None)
        self.assertEqual(names, ["Müller^Hans"])
        self.assertEqual(line, f"warn: {uid} from MODALITY: text beyond ASCII without a Specific Character Set, "
                               "indexed as read in Latin-1: (0010,0010) (further ones from MODALITY are logged at "
                               "debug level for an hour)")

    @defer.inlineCallbacks
    def test_textBeyondAsciiInISO_IR6IsLogged(self):
        """ISO_IR 6 is ASCII, the repertoire of no Specific Character Set:
        its 8-bit text (and that outside any escape sequence under
        ``\\ISO 2022 IR 87``) is indexed as read in Latin-1, as before, with
        the line an object without one gets (none was written)."""
        for uid, peer, charset, name, indexed in [
                ("1.2.3.4.5.30", "IR6", "ISO_IR 6", b"M\xfcller^Bernd", "M\u00fcller^Bernd"),
                ("1.2.3.4.5.31", "IR87", ["", "ISO 2022 IR 87"], b"M\xfcller^Bernd=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B",
                 "M\u00fcller^Bernd=\u5c71\u7530^\u592a\u90ce")]:
            names, [line] = yield self.storeName(uid, name, charset, peer)
            self.assertEqual(names, [indexed])
            self.assertEqual(line, f"warn: {uid} from {peer}: text not valid in its Specific Character Set, indexed "
                                   f"as read in Latin-1: (0010,0010) (further ones from {peer} are logged at debug "
                                   "level for an hour)")

    @defer.inlineCallbacks
    def test_validISO2022TextIsNotLogged(self):
        """Valid ISO 2022 text (PS3.5 H, I.1 and I.2: Japanese with escape
        sequences in each component, half-width katakana in G1, Korean
        designated to G1 by ``ESC $ ) C``) is indexed with its letters and
        logs no line, though ASCII is its default repertoire."""
        for uid, peer, charset, name, indexed in [
                ("1.2.3.4.5.40", "JAPANESE", ["", "ISO 2022 IR 87"],
                 b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
                 "Yamada^Tarou=\u5c71\u7530^\u592a\u90ce=\u3084\u307e\u3060^\u305f\u308d\u3046"),
                ("1.2.3.4.5.41", "KATAKANA", ["ISO 2022 IR 13", "ISO 2022 IR 87"],
                 b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J",
                 "\uff94\uff8f\uff80\uff9e^\uff80\uff9b\uff73=\u5c71\u7530^\u592a\u90ce"),
                ("1.2.3.4.5.42", "KOREAN", ["", "ISO 2022 IR 149"],
                 b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf",
                 "Hong^Gildong=\u6d2a^\u5409\u6d1e=\ud64d^\uae38\ub3d9")]:
            names, lines = yield self.storeName(uid, name, charset, peer)
            self.assertEqual((names, lines), ([indexed], []), peer)

    @defer.inlineCallbacks
    def test_textReadAsLatin1WarnedOfOncePerPeerAnHour(self):
        """A modality that sends every object with 8-bit text and no
        Specific Character Set had a warning for each (1000 lines for a
        study of 1000): one per peer an hour, then with the count of the
        debug lines since."""
        now = [1000.0]
        self.store._textWarnings.clock = lambda: now[0]
        logged = []
        for n, peer in enumerate(["MOD1", "MOD1", "MOD2", "MOD1"]):
            _, lines = yield self.storeName(f"1.2.3.4.5.2{n}", b"M\xfcller^Hans", None, peer)
            logged += [line.split(": ")[0] + " " + line.split(" from ")[1].split(":")[0] for line in lines]
        now[0] += 3600
        _, lines = yield self.storeName("1.2.3.4.5.29", b"M\xfcller^Hans", None, "MOD1")
        self.assertEqual(logged, ["warn MOD1", "debug MOD1", "warn MOD2", "debug MOD1"])
        [line] = lines
        self.assertTrue(line.startswith("warn: 1.2.3.4.5.29 from MOD1"), line)
        self.assertTrue(line.endswith("(further ones from MOD1 are logged at debug level for an hour; 2 since the "
                                      "last warning)"), line)

    @defer.inlineCallbacks
    def test_mismatchedInstance(self):
        incoming, spool = self.receive(datasetBytes("CT_small.dcm"), "1.2.3.999")
        yield self.assertFailure(self.store.store(incoming, spool), DatasetMismatch)
        self.assertEqual(sorted(os.listdir(self.device.path)), [".pacs-tmp", "dbase"], "no file was stored")

    @defer.inlineCallbacks
    def test_mismatchedClass(self):
        uid = CT_SMALL_UID
        incoming, spool = self.receive(datasetBytes("CT_small.dcm"), uid, sopClass="1.2.840.10008.5.1.4.1.1.4")
        error = yield self.assertFailure(self.store.store(incoming, spool), DatasetMismatch)
        self.assertIn("SOP Class UID", str(error))

    def assertNothingStored(self):
        self.assertEqual(sorted(os.listdir(self.device.path)), [".pacs-tmp", "dbase"], "no file was stored")
        temporary = os.path.join(self.device.path, TEMP_FOLDER)
        self.assertEqual([n for n in os.listdir(temporary) if os.path.getsize(os.path.join(temporary, n))], [],
                         "no spool file either (the reservoir's files are empty)")
        rows = self.index.runQuery(lambda c: c.exec_driver_sql("SELECT SOPInstanceUID FROM DICOMImages").fetchall())
        return rows.addCallback(self.assertEqual, [])

    @defer.inlineCallbacks
    def test_overlongUIDsRefusedBeforeWriting(self):
        """Objects whose SOP Instance, Study or Series UID is over 64
        characters (the index's key columns) are refused before anything is
        written: cut to fit, two such SOP instances sharing their first 64
        characters would be one, the second removing the first's file."""
        prefix = "1.2.826.0.1.3680043.8.498." + "7" * 38
        for sop, keys in ((prefix + ".1", {}), (prefix + ".2", {}),
                          ("1.2.3.4.5", {"StudyInstanceUID": prefix + ".3"}),
                          ("1.2.3.4.6", {"SeriesInstanceUID": prefix + ".4"}),
                          ("1.2.3.4.7", {"PatientID": "P" * 65})):
            incoming, spool = self.receive(ctWith(SOPInstanceUID=sop, **keys), sop)
            error = yield self.assertFailure(self.store.store(incoming, spool), DatasetMismatch)
            self.assertIn("64 ", str(error))
        yield self.assertNothingStored()

    @defer.inlineCallbacks
    def test_commandUIDsThatAreNoUIDsRefusedBeforeWriting(self):
        """A SOP Class or Instance UID that cannot head a file meta (a byte
        that is no ASCII, decoded as U+FFFD; blank) is refused before
        anything is written, the data set dropped as it arrives, in memory
        or large enough to be spooled."""
        uid = CT_SMALL_UID
        _, large = largeDataset(256 << 10)
        for data, sop, sopClass in ((datasetBytes("CT_small.dcm"), uid[:-1] + "\ufffd", CT),
                                    (large, uid, CT + "\ufffd"), (ctWith(SOPInstanceUID=" "), "", CT)):
            incoming, spool = self.receive(data, sop, sopClass=sopClass)
            error = yield self.assertFailure(self.store.store(incoming, spool), DatasetMismatch)
            self.assertIn("is not a UID", str(error))
        yield self.assertNothingStored()

    @defer.inlineCallbacks
    def test_garbage(self):
        incoming, spool = self.receive(b"\x08\x00\x05\x00CS\xff\xffgarbage", "1.2.3")
        yield self.assertFailure(self.store.store(incoming, spool), InvalidDataset)

    @defer.inlineCallbacks
    def test_dataSetNotInItsTransferSyntaxRefused(self):
        """Explicit VR data on an implicit VR context and the other way round,
        in memory and spooled: refused, never stored under the wrong label."""
        uid = CT_SMALL_UID
        largeUID, large = largeDataset(256 << 10)
        implicit = datasetBytes("MR_small_implicit.dcm")
        implicitUID = pydicom.dcmread(get_testdata_file("MR_small_implicit.dcm")).SOPInstanceUID
        for data, sop, syntax in ((datasetBytes("CT_small.dcm"), uid, IMPLICIT), (large, largeUID, IMPLICIT),
                                  (implicit, implicitUID, EXPLICIT)):
            incoming, spool = self.receive(data, sop, syntax=syntax, sopClass=CT if sop != implicitUID else MR)
            error = yield self.assertFailure(self.store.store(incoming, spool), InvalidDataset)
            self.assertIn("not in its transfer syntax", str(error))
        self.assertEqual(sorted(os.listdir(self.device.path)), [".pacs-tmp", "dbase"], "no file was stored")

    @defer.inlineCallbacks
    def test_nativePixelDataOnAnEncapsulatedContextRefused(self):
        """A native data set (Pixel Data of defined length) sent on a JPEG
        or RLE context, in memory and spooled, is refused: labelled with
        that syntax, no DICOM toolkit could read it back."""
        largeUID, large = largeDataset(256 << 10)
        for data, sop, syntax in ((datasetBytes("CT_small.dcm"), CT_SMALL_UID, JPEG_BASELINE),
                                  (large, largeUID, RLE)):
            incoming, spool = self.receive(data, sop, syntax=syntax)
            error = yield self.assertFailure(self.store.store(incoming, spool), InvalidDataset)
            self.assertIn(f"has a defined length, which the encapsulated transfer syntax {syntax} does not allow",
                          str(error))
        yield self.assertNothingStored()

    @defer.inlineCallbacks
    def test_commandAndFileMetaElementsInTheDataSetAreNotStored(self):
        """Group 0000 and 0002 elements a data set begins with (a (0002,0010)
        saying RLE, a (0000,0100)), in memory and spooled, are left out of
        the stored file with a log line, as Orthanc leaves them out: they
        are no data set elements (PS3.5 7.1), and readers took the later
        (0002,0010) for the file's transfer syntax."""
        events = []
        self.patch(ObjectStore, "log", Logger(observer=events.append))
        meta = b"\x00\x00\x00\x01UL\x04\x00\x01\x00\x00\x00" + b"\x02\x00\x10\x00UI\x14\x00" + RLE.encode() + b"\x00"
        largeUID, large = largeDataset(256 << 10)
        for data, sop in ((datasetBytes("CT_small.dcm"), CT_SMALL_UID), (large, largeUID)):
            del events[:]
            incoming, spool = self.receive(meta + data, sop)
            _, relative = yield self.store.store(incoming, spool)
            self.assertEqual(self.storedFile(relative)[::2], (EXPLICIT, data))
            self.assertEqual(pydicom.dcmread(self.device.absolute(relative)).file_meta.TransferSyntaxUID, EXPLICIT)
            [line] = [formatEvent(e) for e in events if "0002" in formatEvent(e)]
            self.assertIn(f"{sop} from MODALITY: the group 0000 and 0002 elements its data set begins with "
                          f"({len(meta)} bytes) are left out", line)

    @defer.inlineCallbacks
    def test_truncatedPixelDataRefused(self):
        """The index attributes all come before the pixel data, but an object
        cut short there is refused too: what is acknowledged reads to its end."""
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        cut = data.index(b"\xe0\x7f\x10\x00") + 200
        error = yield self.assertFailure(self.store.store(*self.receive(data[:cut], uid)), InvalidDataset)
        self.assertIn("(7FE0,0010)", str(error))
        self.assertEqual(sorted(os.listdir(self.device.path)), [".pacs-tmp", "dbase"], "no file was stored")

    @defer.inlineCallbacks
    def test_truncatedSpooledObjectRefused(self):
        uid, data = largeDataset(256 << 10)
        incoming, spool = self.receive(data[:-1000], uid)
        self.assertIsNone(spool.inMemory)
        yield self.assertFailure(self.store.store(incoming, spool), InvalidDataset)

    def moveToItsOwnDevice(self):
        """Store on a MAG0 of its own (not the index database's folder)."""
        self.device = MagDevice("MAG0", os.path.abspath(self.mktemp()))
        self.device.prepare()
        fileWrites = self.store.fileWrites
        self.store = self.storeOn(self.device)
        self.store.fileWrites = fileWrites

    @defer.inlineCallbacks
    def test_aDeviceFolderThatComesBackEmptyTakesObjectsAgain(self):
        """mv data data.old; mkdir data: the temporary folder is made again."""
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        self.moveToItsOwnDevice()
        os.rename(self.device.path, self.device.path + ".old")
        os.mkdir(self.device.path)
        _, relative = yield self.store.store(*self.receive(data, uid))
        self.assertEqual(self.storedFile(relative)[::2], (EXPLICIT, data))

    @defer.inlineCallbacks
    def test_aDeviceFolderNotThereRefusesTheObject(self):
        uid = CT_SMALL_UID
        self.moveToItsOwnDevice()
        os.rename(self.device.path, self.device.path + ".old")
        error = yield self.assertFailure(self.store.store(*self.receive(datasetBytes("CT_small.dcm"), uid)),
                                         DeviceMissing)
        self.assertEqual(str(error), f"MAG0 is not there (a disk not mounted?): {self.device.path}")

    @defer.inlineCallbacks
    def test_aDeviceUnmountedWhileRunningRefusesTheObject(self):
        """Its disk unmounted (``umount -l``): the folder beneath the mount
        point is on another file system, and takes nothing, be it empty or
        with a temporary folder of its own; the objects are refused."""
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        self.moveToItsOwnDevice()
        self.device.mountPoint = os.path.dirname(self.device.path)  # its disk's, unmounted
        for large in (False, True):
            if large:
                uid, data = largeDataset(256 << 10)
            error = yield self.assertFailure(self.store.store(*self.receive(data, uid)), DeviceMissing)
            self.assertIn("MAG0 is not there (a disk not mounted?)", str(error))
            self.assertEqual(os.listdir(self.device.path), [TEMP_FOLDER])
            self.assertTrue(all(name.startswith("store-") for name in os.listdir(self.device.tempDir)))
        os.rename(self.device.path, self.device.path + ".old")
        os.mkdir(self.device.path)
        yield self.assertFailure(self.store.store(*self.receive(data, uid)), DeviceMissing)
        self.assertEqual(os.listdir(self.device.path), [], "no temporary folder made on the disk beneath")

    @defer.inlineCallbacks
    def test_aSpoolThatFillsTheDiskLeavesNoFile(self):
        """A large object refused because its spool file could not be
        written (the disk full) leaves no partial file to keep it full."""
        uid, data = largeDataset(256 << 10)
        realOpen = self.store.fileWrites.open

        def fillingOpen(*args, **kwargs):
            out = realOpen(*args, **kwargs)
            write, writes = out.write, []

            def writeUntilFull(fragments):
                if writes:
                    raise OSError(errno.ENOSPC, "No space left on device")
                writes.append(write(fragments))
            out.write = writeUntilFull
            return out

        self.patch(self.store.fileWrites, "open", fillingOpen)
        incoming, spool = self.receive(data, uid)
        error = yield self.assertFailure(self.store.store(incoming, spool), OSError)
        self.assertEqual(error.errno, errno.ENOSPC)
        yield self.drainWorkers()
        self.assertEqual([name for name in os.listdir(self.device.tempDir) if not name.startswith("store-")], [])

    @defer.inlineCallbacks
    def test_anObjectTheIndexFailedLeavesNoDuplicate(self):
        """The index failing (its disk full) leaves the refused object's file
        for regen; the sender's resends do not add a copy each: the file of
        an earlier attempt goes, and the last one once a resend is stored."""
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        self.moveToItsOwnDevice()
        storeFromThread = self.index.storeFromThread
        self.index.storeFromThread = lambda record, onResult: reactor.callFromThread(
            onResult, False, Failure(OSError(errno.ENOSPC, "database or disk is full")))
        for attempt in range(2):
            yield self.assertFailure(self.store.store(*self.receive(data, uid)), OSError)
            yield self.drainWorkers()
            self.assertEqual(len(self.storedFiles()), 1)
        self.index.storeFromThread = storeFromThread
        _, relative = yield self.store.store(*self.receive(data, uid))
        yield self.drainWorkers()
        self.assertEqual(self.storedFiles(), [relative])

    @defer.inlineCallbacks
    def test_aRefusedStoreLeavesTheRecordOfWrites(self):
        """During a regen the files stores write are recorded, for it to
        remove the older copies they make no row replace: the file of a
        store refused (its index write failed, 0x0110) is not, so that it
        never has the copy acknowledged before removed; one stored is."""
        data = datasetBytes("CT_small.dcm")
        self.moveToItsOwnDevice()
        storeFromThread = self.index.storeFromThread
        self.index.storeFromThread = lambda record, onResult: reactor.callFromThread(
            onResult, False, Failure(OSError(errno.ENOSPC, "database or disk is full")))
        with self.store.recordingWrites() as written:
            yield self.assertFailure(self.store.store(*self.receive(data, CT_SMALL_UID)), OSError)
            yield self.drainWorkers()
            self.assertEqual(len(self.storedFiles()), 1)
            self.assertEqual(written, set())
            self.index.storeFromThread = storeFromThread
            deviceName, relative = yield self.store.store(*self.receive(data, CT_SMALL_UID))
            self.assertEqual(written, {(deviceName, relative)})

    @defer.inlineCallbacks
    def test_aRegenAsksWhichCopiesAreListedNow(self):
        """``isListed``, which a regen on the running server asks at each
        batch: the copy of a store refused (its index write failed) is
        listed until a store of its SOP instance is acknowledged."""
        data = datasetBytes("CT_small.dcm")
        self.moveToItsOwnDevice()
        storeFromThread = self.index.storeFromThread
        self.index.storeFromThread = lambda record, onResult: reactor.callFromThread(
            onResult, False, Failure(OSError(errno.ENOSPC, "database or disk is full")))
        yield self.assertFailure(self.store.store(*self.receive(data, CT_SMALL_UID)), OSError)
        yield self.drainWorkers()
        [refused] = [location for files in self.store._unindexed.values() for location in files]
        self.assertTrue(self.store.isListed(refused))
        self.index.storeFromThread = storeFromThread
        stored = yield self.store.store(*self.receive(data, CT_SMALL_UID))
        yield self.drainWorkers()
        self.assertFalse(self.store.isListed(refused))
        self.assertFalse(self.store.isListed(tuple(stored)))

    def test_isListedLooksIntoNoSOPInstancesList(self):
        """``isListed`` is asked for each file of a regen's batches: with
        20,000 copies listed it is one look-up, not a look into every SOP
        instance's list (about 1.3 ms a file, each batch of 500 files
        holding up the index writer for most of a second)."""
        looked = []

        class Watched(list):
            def __contains__(self, location):
                looked.append(location)
                return super().__contains__(location)

            def __iter__(self):
                looked.append(None)
                return super().__iter__()
        for number in range(20000):
            self.store._unindexed[f"1.2.{number}"] = Watched([("MAG0", f"P/{number}.dcm")])
        del looked[:]
        self.assertTrue(self.store.isListed(("MAG0", "P/19999.dcm")))
        self.assertFalse(self.store.isListed(("MAG0", "P/20000.dcm")))
        self.assertEqual(looked, [])

    @defer.inlineCallbacks
    def test_resendsWhileTheIndexDatabaseIsDownLeaveOneCopy(self):
        """Resends while the index database is down (the store and the
        question whether an earlier copy is indexed since both fail) keep
        their copies known, logged in one line each: the store once it is
        back leaves one file, not one per attempt."""
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        self.moveToItsOwnDevice()
        storeFromThread, runQuery = self.index.storeFromThread, self.index.runQuery
        down = OperationalError("SELECT", {}, Exception("connection failed: Connection refused"))
        self.index.storeFromThread = lambda record, onResult: reactor.callFromThread(onResult, False, Failure(down))
        self.index.runQuery = lambda *args: defer.fail(down)
        logged = []
        self.store.log = Logger(observer=logged.append)
        for attempt in range(3):
            yield self.assertFailure(self.store.store(*self.receive(data, uid)), OperationalError)
            yield self.drainWorkers()
        self.assertEqual(len(self.storedFiles()), 3)
        self.index.storeFromThread, self.index.runQuery = storeFromThread, runQuery
        _, relative = yield self.store.store(*self.receive(data, uid))
        yield self.drainWorkers()
        self.assertEqual(self.storedFiles(), [relative])
        self.assertEqual([event["log_level"] for event in logged if "kept" in event["log_format"]],
                         [LogLevel.warn, LogLevel.warn])

    @defer.inlineCallbacks
    def test_aRestartRemembersTheFilesTheIndexFailedOn(self):
        """The soak: A stored (Success), B of the same SOP instance refused
        0x0110 while the database was down (its file kept), pacs restarted,
        A stored again: B stayed on disk for good, and a regen indexed it
        (newer) in place of A.  The store after the restart removes it."""
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        self.moveToItsOwnDevice()
        yield self.store.store(*self.receive(data, uid))
        storeFromThread, runQuery = self.index.storeFromThread, self.index.runQuery
        down = OperationalError("SELECT", {}, Exception("connection failed: Connection refused"))
        self.index.storeFromThread = lambda record, onResult: reactor.callFromThread(onResult, False, Failure(down))
        self.index.runQuery = lambda *args: defer.fail(down)
        yield self.assertFailure(self.store.store(*self.receive(data, uid)), OperationalError)
        yield self.drainWorkers()
        self.assertEqual(len(self.storedFiles()), 2)
        self.index.storeFromThread, self.index.runQuery = storeFromThread, runQuery
        self.store = self.storeOn(self.device)  # restarted
        _, relative = yield self.store.store(*self.receive(data, uid))
        yield self.store.storesEnded()
        self.assertEqual(self.storedFiles(), [relative])
        self.assertEqual(sorted(os.listdir(self.device.path)), [TEMP_FOLDER, relative.split("/")[0]],
                         "the list of files the index failed on is removed once empty")

    @defer.inlineCallbacks
    def test_theStartUpRemovesTheFilesTheIndexFailedOnOfAnIndexedObject(self):
        """Without a later store: at start-up a copy the index failed on
        before the restart is removed when the index names another, intact
        file of its SOP instance (a regen would have indexed it, newer, in
        place of that acknowledged one); one of an instance no row names,
        or whose indexed file is damaged, stays, and stays listed."""
        uid, other, damaged = CT_SMALL_UID, "1.2.826.0.1.3680043.2.1143.99.1", "1.2.826.0.1.3680043.2.1143.99.2"
        datasets = {uid: datasetBytes("CT_small.dcm"), other: ctWith(SOPInstanceUID=other),
                    damaged: ctWith(SOPInstanceUID=damaged)}
        self.moveToItsOwnDevice()
        _, acknowledged = yield self.store.store(*self.receive(datasets[uid], uid))
        _, lost = yield self.store.store(*self.receive(datasets[damaged], damaged))
        storeFromThread, runQuery = self.index.storeFromThread, self.index.runQuery
        down = OperationalError("SELECT", {}, Exception("connection failed: Connection refused"))
        self.index.storeFromThread = lambda record, onResult: reactor.callFromThread(onResult, False, Failure(down))
        self.index.runQuery = lambda *args: defer.fail(down)
        refused = {}
        for sopInstance in (uid, other, damaged):
            before = set(self.storedFiles())
            yield self.assertFailure(self.store.store(*self.receive(datasets[sopInstance], sopInstance)),
                                     OperationalError)
            yield self.drainWorkers()
            [refused[sopInstance]] = set(self.storedFiles()) - before
        self.index.storeFromThread, self.index.runQuery = storeFromThread, runQuery
        with open(self.device.absolute(lost), "r+b") as f:
            f.truncate(200)
        self.store = self.storeOn(self.device)  # restarted
        with capturedLogs() as events:
            self.store.settleUnindexed(ObjectReader([self.device]).fileError)
        self.assertEqual(self.storedFiles(), sorted([acknowledged, lost, refused[other], refused[damaged]]))
        self.assertEqual([formatEvent(e) for e in events if "removed" in formatEvent(e)],
                         [f"removed {self.device.absolute(refused[uid])}: a copy of {uid} the index failed on "
                          f"before the restart (its sender was told so); MAG0:{acknowledged} is the one indexed"])
        self.assertEqual(self.store.unindexedCopies.load(),
                         {other: [("MAG0", refused[other])], damaged: [("MAG0", refused[damaged])]})

    @defer.inlineCallbacks
    def refusedAndKilled(self):
        """A store refused (its index write failed: listed in
        ``.pacs-unindexed``), then the server killed while writing the
        list again: the list, and a ``.part`` naming one more copy.  The
        paths of the list and of the ``.part``, and the copy refused."""
        self.moveToItsOwnDevice()
        self.index.storeFromThread = lambda record, onResult: reactor.callFromThread(
            onResult, False, Failure(OSError(errno.ENOSPC, "database or disk is full")))
        yield self.assertFailure(self.store.store(*self.receive(datasetBytes("CT_small.dcm"), CT_SMALL_UID)),
                                 OSError)
        yield self.store.storesEnded()
        [refused] = self.storedFiles()
        listed = os.path.join(self.device.path, ".pacs-unindexed")
        with open(listed) as f:
            lines = f.read()
        self.place("P/killed.dcm")
        with open(listed + ".part", "w") as f:
            f.write(lines + "1.2.3\tP/killed.dcm\n")
        return listed, listed + ".part", refused

    def place(self, name):
        os.makedirs(os.path.dirname(self.device.absolute(name)), exist_ok=True)
        open(self.device.absolute(name), "wb").close()

    def restartSettled(self):
        """The store restarted and its start-up's ``settleUnindexed`` run; the lines logged."""
        self.store = self.storeOn(self.device)
        with capturedLogs() as events:
            self.store.settleUnindexed(ObjectReader([self.device]).fileError)
        return [formatEvent(e) for e in events]

    def hiddenFiles(self):
        return sorted(name for name in os.listdir(self.device.path) if name.startswith(".pacs-unindexed"))

    def assertPartWrittenAsTheList(self, lines, listed, part, refused):
        """The start-up said it set ``part`` aside and wrote ``listed`` again
        with its copies (``refused``, and the one ``refusedAndKilled`` adds)."""
        self.assertIn(f"{part} was left by a stop while it was being written: set aside as {listed}.unread-1; the "
                      f"copies the index failed on that it names and that are there are remembered, and {listed} is "
                      f"written again with them", lines)
        self.assertEqual(self.hiddenFiles(), [".pacs-unindexed"])
        self.assertTrue(self.store.isListed(("MAG0", "P/killed.dcm")))
        self.assertEqual(self.store.unindexedCopies.load(), {CT_SMALL_UID: [("MAG0", refused)],
                                                             "1.2.3": [("MAG0", "P/killed.dcm")]})

    @defer.inlineCallbacks
    def test_theStartUpMergesAListHalfWrittenBesideTheListIntoIt(self):
        """A ``.part`` a kill -9 left beside the list (between writing it and
        renaming it over the list) is the newer list, naming the copy of the
        refusal it was written for: at start-up its copies still there are
        remembered with the list's, written into the list, with a line, and
        then it is gone (set aside until the list is written)."""
        listed, part, refused = yield self.refusedAndKilled()
        lines = self.restartSettled()
        self.assertPartWrittenAsTheList(lines, listed, part, refused)

    @defer.inlineCallbacks
    def test_theStartUpWritesAListHalfWrittenWithNoListBesideItAsTheList(self):
        """A ``.part`` with no list beside it (the device's first list, or
        its list set aside, killed before the rename): the copies it names
        that are there are remembered, and it is written as the list, with
        a line; the ``.part`` is gone."""
        listed, part, refused = yield self.refusedAndKilled()
        os.unlink(listed)
        with open(part, "a") as f:
            f.write("1.2.4\tP/gone.dcm\n1.2.5\tP/cut")  # a copy not there, a line cut short
        lines = self.restartSettled()
        self.assertPartWrittenAsTheList(lines, listed, part, refused)

    @defer.inlineCallbacks
    def test_aListHalfWrittenCutInACharacterIsReadUpToItsLastWholeLine(self):
        """A ``.part`` a power cut left cut in the middle of a character (a
        name's "ü") is read up to its last whole line: the copies it names
        there are remembered and written into the list, not forgotten with
        the ``.part``."""
        listed, part, refused = yield self.refusedAndKilled()
        os.unlink(listed)
        self.place("P/M\u00fcller.dcm")
        with open(part, "ab") as f:
            f.write("1.2.4\tP/M\u00fcller.dcm\n".encode()[:-10])
        lines = self.restartSettled()
        self.assertFalse([line for line in lines if "cannot be read" in line], lines)
        self.assertEqual(self.hiddenFiles(), [".pacs-unindexed"])
        self.assertEqual(self.store.unindexedCopies.load(), {CT_SMALL_UID: [("MAG0", refused)],
                                                             "1.2.3": [("MAG0", "P/killed.dcm")]})

    @defer.inlineCallbacks
    def test_aListHalfWrittenThatCannotBeReadStaysSetAside(self):
        """A ``.part`` that cannot be read (a line not UTF-8) is set aside
        at start-up as a list not read, with a line, never removed: read
        again at the next start-up (and by a regen) once mended."""
        listed, part, refused = yield self.refusedAndKilled()
        os.unlink(listed)
        with open(part, "ab") as f:
            f.write(b"1.2.4\tP/\xff.dcm\n")
        lines = self.restartSettled()
        self.assertIn(f"{part} was left by a stop while it was being written: set aside as {listed}.unread-1, not "
                      f"read; the copies the index failed on that it names stay on disk, read again at the next "
                      f"start-up and by a regen", lines)
        self.assertEqual(self.hiddenFiles(), [".pacs-unindexed.unread-1"])
        with open(f"{listed}.unread-1", "r+b") as f:
            f.truncate(os.path.getsize(f"{listed}.unread-1") - len(b"1.2.4\tP/\xff.dcm\n"))  # mended
        self.restartSettled()
        self.assertTrue(self.store.isListed(("MAG0", refused)))
        self.assertTrue(self.store.isListed(("MAG0", "P/killed.dcm")))

    @defer.inlineCallbacks
    def test_aListHalfWrittenIsNotItsOwnRewritesTemporaryFile(self):
        """The list written again at start-up from a ``.part`` with no list
        beside it goes through a ``.part`` of its own: the one a stop left
        is set aside first, so a failure (or a second stop) before the
        rename leaves it whole, read at the next start-up."""
        listed, part, refused = yield self.refusedAndKilled()
        os.unlink(listed)

        def openFailingToWrite(path, mode="r", *args, **kwargs):
            f = open(path, mode, *args, **kwargs)
            if "w" in mode:
                f.close()
                raise OSError(errno.EIO, "Input/output error")
            return f
        unindexedModule.open = openFailingToWrite
        try:
            lines = self.restartSettled()
        finally:
            del unindexedModule.open
        self.assertIn("could not list the files the index failed on in MAG0's .pacs-unindexed ([Errno 5] "
                      "Input/output error): a restart forgets them, they stay until a regen", lines)
        self.restartSettled()
        self.assertTrue(self.store.isListed(("MAG0", refused)))
        self.assertTrue(self.store.isListed(("MAG0", "P/killed.dcm")))

    @defer.inlineCallbacks
    def test_theIndexedFileListedUnderTwoDevicesOfOneFolderIsNeverRemoved(self):
        """Copies the index failed on that are indexed since (their commits
        went through), on a device whose folder another device's leads to
        (a link: the list read under both names), are the files the index
        names under either name: a resend stored in place of one keeps it
        ('kept ...: indexed since'), the start-up takes the other off the
        list at the next start-up; neither is removed as another copy."""
        resent, settled = CT_SMALL_UID, "1.2.826.0.1.3680043.2.1143.99.1"
        datasets = {resent: datasetBytes("CT_small.dcm"), settled: ctWith(SOPInstanceUID=settled)}
        self.moveToItsOwnDevice()
        namer = self.store.namer = FileNamer("%studyuid\\%sopuid.dcm")  # a resend takes the same name in any second
        storeFromThread = self.index.storeFromThread
        self.index.storeFromThread = lambda record, onResult: storeFromThread(
            record, lambda ok, value: onResult(False, Failure(OSError(errno.ENOSPC, "database or disk is full"))))
        for uid, data in datasets.items():  # committed, reported failed
            yield self.assertFailure(self.store.store(*self.receive(data, uid)), OSError)
            yield self.store.storesEnded()
        self.index.storeFromThread = storeFromThread
        files = self.storedFiles()
        link = os.path.abspath(self.mktemp())
        os.symlink(self.device.path, link)
        self.store = ObjectStore(self.device, namer, self.index, self.indexedTags, self.workers, "1.2.3.4",
                                 "TEST", devices=[self.device, MagDevice("MAG1", link)])  # restarted
        self.assertEqual(sorted(self.store._unindexed[resent] + self.store._unindexed[settled]),
                         sorted((device, name) for name in files for device in ("MAG0", "MAG1")))
        with capturedLogs() as events:
            _, relative = yield self.store.store(*self.receive(datasets[resent], resent))
            yield self.store.storesEnded()
        self.assertIn(relative, files)
        self.assertEqual([formatEvent(e) for e in events if "the index failed on" in formatEvent(e)],
                         [f"kept {link}/{relative}: a copy of {resent} the index failed on, indexed since"])
        self.store = ObjectStore(self.device, namer, self.index, self.indexedTags, self.workers, "1.2.3.4",
                                 "TEST", devices=[self.device, MagDevice("MAG1", link)])  # restarted
        with capturedLogs() as events:
            self.store.settleUnindexed(ObjectReader([self.device]).fileError)
        self.assertEqual(self.storedFiles(), files)
        self.assertEqual([formatEvent(e) for e in events if "removed" in formatEvent(e)], [])
        self.assertEqual(self.store.unindexedCopies.load(), {})

    @defer.inlineCallbacks
    def test_aFileIndexedSinceIsNotRemovedByAResend(self):
        """The file of an attempt the index reported failed, but that a row
        names (its commit went through, or regen or --addimagefile indexed
        it since), stays when a resend fails in the index too."""
        data = datasetBytes("CT_small.dcm")
        uid = CT_SMALL_UID
        self.moveToItsOwnDevice()
        storeFromThread = self.index.storeFromThread
        self.addCleanup(setattr, self.index, "storeFromThread", storeFromThread)
        failure = Failure(OSError(errno.ENOSPC, "database or disk is full"))
        self.index.storeFromThread = lambda record, onResult: storeFromThread(
            record, lambda ok, value: onResult(False, failure))
        yield self.assertFailure(self.store.store(*self.receive(data, uid)), OSError)
        yield self.drainWorkers()
        self.index.storeFromThread = lambda record, onResult: reactor.callFromThread(onResult, False, failure)
        yield self.assertFailure(self.store.store(*self.receive(data, uid)), OSError)
        yield self.drainWorkers()
        indexed = yield self.index.runQuery(self.index.indexedFiles, [uid])
        self.assertIn(indexed[uid].objectFile, self.storedFiles())

    def storedFiles(self):
        """The files on the device but its temporary and hidden ones
        (``.pacs-unindexed``), relative to it."""
        return sorted(os.path.relpath(os.path.join(folder, name), self.device.path).replace(os.sep, "/")
                      for folder, folders, names in os.walk(self.device.path)
                      if not folder.startswith(self.device.tempDir) for name in names if not name.startswith("."))

    @defer.inlineCallbacks
    def test_diskFullIsAnOSError(self):
        uid = CT_SMALL_UID
        incoming, spool = self.receive(datasetBytes("CT_small.dcm"), uid)

        def full(*args):
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(self.store, "_writeFile", full)
        error = yield self.assertFailure(self.store.store(incoming, spool), OSError)
        self.assertEqual(error.errno, errno.ENOSPC)


class FileSystemFlushStoreTests(ObjectStoreTests):
    """The same store with one syncfs per commit group (as ``twistd pacs``
    runs on Linux): rows are committed and marked pending before the flush
    that makes them and their files durable; a failed flush acknowledges
    nothing."""

    def setUp(self):
        super().setUp()
        self.flushes = []
        self.flushFails = False
        self.index.durability = FileSystemFlush([self.device], self.syncfs)
        self.addCleanup(self.index.durability.close)
        self.index.pending.dropEvery = 1

    def addDevice(self, name):
        device = super().addDevice(name)
        self.index.durability.close()
        self.index.durability = FileSystemFlush(self.store.devicesByName.values(), self.syncfs)
        self.addCleanup(self.index.durability.close)
        return device

    def syncfs(self, fd):
        """Record what the index and the folder hold at the moment of the flush."""
        with sqlite3.connect(self.index.engine.url.database) as connection:
            rows = connection.execute("SELECT ObjectFile FROM DICOMImages").fetchall()
            pending = connection.execute("SELECT ObjectFile FROM PendingFiles").fetchall()
        stored = [os.path.relpath(os.path.join(folder, name), self.device.path)
                  for folder, _, names in os.walk(self.device.path) if TEMP_FOLDER not in folder
                  for name in names]
        self.flushes.append((os.fstat(fd).st_ino, stored, rows, pending))
        if self.flushFails:
            ctypes.set_errno(errno.EIO)
            return -1
        return libcSyncfs()(fd)

    def pendingFiles(self):
        return self.index.runQuery(lambda c: [row.ObjectFile for row in c.exec_driver_sql(
            "SELECT ObjectFile FROM PendingFiles")])

    @defer.inlineCallbacks
    def test_rowsAndFilesFlushedTogether(self):
        uid = CT_SMALL_UID
        _, relative = yield self.store.store(*self.receive(datasetBytes("CT_small.dcm"), uid))
        [(inode, stored, rows, pending)] = self.flushes
        self.assertEqual(inode, os.stat(self.device.path).st_ino, "the device's file system is flushed")
        self.assertIn(relative, stored, "the file is in place when the flush runs")
        self.assertEqual(rows, [(relative,)], "its row is committed before the flush")
        self.assertEqual(pending, [(relative,)], "and marked pending in the same transaction")
        other = pydicom.dcmread(get_testdata_file("MR_small.dcm")).SOPInstanceUID
        _, second = yield self.store.store(*self.receive(datasetBytes("MR_small.dcm"), other,
                                                      sopClass="1.2.840.10008.5.1.4.1.1.4"))
        self.assertEqual(self.flushes[-1][3], [(second,)], "the next transaction drops the flushed mark")

    @defer.inlineCallbacks
    def test_failedFlushAcknowledgesNothing(self):
        self.flushFails = True
        uid = CT_SMALL_UID
        error = yield self.assertFailure(self.store.store(*self.receive(datasetBytes("CT_small.dcm"), uid)),
                                         FlushError)
        self.assertEqual(error.errno, errno.EIO)
        self.flushFails = False
        self.assertEqual(len(self.flushes), 1)
        [(relative,)] = self.flushes[0][2]
        pending = yield self.pendingFiles()
        self.assertEqual(pending, [relative], "the unflushed row stays marked for the start-up check")


class DirectWriteStoreTests(ObjectStoreTests):
    """The same store writing every file with O_DIRECT (``DirectWriteSize = 1``):
    in-memory and spooled data sets alike."""

    def setUp(self):
        super().setUp()
        self.store.fileWrites = FileWrites(directSize=1)
        self.opened = []
        realOpen = self.store.fileWrites.open

        def recordingOpen(*args, **kwargs):
            out = realOpen(*args, **kwargs)
            self.opened.append(out.direct)
            return out

        self.patch(self.store.fileWrites, "open", recordingOpen)

    def tearDown(self):
        self.assertNotIn(False, self.opened, "every file written with O_DIRECT")
