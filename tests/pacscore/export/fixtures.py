"""Shared pieces of the export tests: an index with stored files on a MAG
folder, synchronous stand-ins for the thread pools, and a DICOM acceptor
reached over twisted.test.iosim, a conversion that fails for one object."""

import os
from types import SimpleNamespace

from twisted.internet import defer
from twisted.test import iosim

from pacscore.codecs.transcode import TranscodeError
from pacscore.db.index import ImageRecord, Index
from pacscore.db.query import IndexQuery
from pacscore.dicom import commands, retrieve
from pacscore.dicom.negotiation import AcceptorPolicy
from pacscore.dicom.protocol import DicomServerFactory
from pacscore.storage.devices import MagDevice
from pacscore.storage.reader import ObjectReader
from pacscore.testing.corpus import makeDataset
from plugins.pacs_mysql import mysqlDriver
from tests.dbservers import mariadbServer
from tests.pacscore.db.test_schema import TABLE_NAMES, conquestLayout, sqliteEngine
from tests.pacscore.dicom.test_client import Recorder

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"

TAGS = {"PatientID": 0x00100020, "StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E,
        "SOPInstanceUID": 0x00080018, "SOPClassUID": 0x00080016, "Modality": 0x00080060,
        "InstanceNumber": 0x00200013, "StudyDate": 0x00080020, "SeriesDescription": 0x0008103E}


class SyncWorkers:
    """A WorkerPool that runs each call at once, in the caller's thread."""

    size = 2

    def deferToWorker(self, f, *args, **kwargs):
        return defer.maybeDeferred(f, *args, **kwargs)

    def start(self):
        pass

    def stop(self, grace=None):
        return defer.succeed(None)


class SyncIndex:
    """An Index whose queries and writes run synchronously."""

    def __init__(self, index):
        self.index = index
        self.engine = index.engine
        self.tables = index.tables
        self.layout = index.layout
        self.quoteNames = index.quoteNames
        self.deletes = index.deletes

    def runQuery(self, fn, *args, **kw):
        with self.engine.connect() as connection:
            return defer.maybeDeferred(fn, connection, *args, **kw)

    def runWrite(self, fn, *args, **kw):
        with self.engine.begin() as connection:
            return defer.maybeDeferred(fn, connection, *args, **kw)

    def rebuildModalities(self, connection, studyKeys):
        self.index.rebuildModalities(connection, studyKeys)

    def refreshParents(self, connection, keys, recordOf):
        self.index.refreshParents(connection, keys, recordOf)

    def forgetCache(self):
        self.index.forgetCache()


def smallPacketIndex(testCase, packet=1048576):
    """A SyncIndex on the private MariaDB server whose max_allowed_packet
    is ``packet`` bytes while ``testCase`` runs (set back after it)."""
    server = mariadbServer()
    limit = server.sql("SELECT @@GLOBAL.max_allowed_packet").strip()
    server.sql(f"SET GLOBAL max_allowed_packet = {packet}")
    testCase.addCleanup(server.sql, f"SET GLOBAL max_allowed_packet = {limit}")
    return SyncIndex(SimpleNamespace(engine=server.newEngine(mysqlDriver, testCase), tables=None, layout=None,
                                     deletes=None, quoteNames=None))


class Archive:
    """A SQLite index and a MAG folder holding real Part-10 files."""

    def __init__(self, testCase):
        self.index = Index(sqliteEngine(testCase), conquestLayout(), TABLE_NAMES)
        self.index.createTables()
        self.syncIndex = SyncIndex(self.index)
        self.query = IndexQuery(self.index.tables, self.index.layout)
        self.folder = os.path.abspath(testCase.mktemp())
        self.reader = ObjectReader([MagDevice("MAG0", self.folder)])

    def add(self, patient, study, series, sop, number=1, sopClass=CT_STORAGE, modality="CT", studyDate="20240102",
            description="Series 1", size=64):
        """Write one image (``size`` pixels square) and index it; its dataset."""
        ds = makeDataset(patient, "Test^Patient", study, series, sop, 1, number, rows=size, columns=size,
                         modality=modality, studyDate=studyDate, seed=number)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sopClass
        ds.SeriesDescription = description
        relative = f"{patient}/{sop}.dcm"
        os.makedirs(os.path.join(self.folder, patient), exist_ok=True)
        ds.save_as(os.path.join(self.folder, relative), enforce_file_format=True)
        attrs = {tag: str(ds.get(keyword, "")) for keyword, tag in TAGS.items()}
        with self.index.engine.begin() as connection:
            self.index.upsertImage(connection, ImageRecord(attrs, "MAG0", relative))
        return ds


class Acceptor:
    """A storage SCP ``DEST`` (and ``DESTJK``) reached through ``endpointFor`` (iosim):
    counts associations; ``down`` refuses connections."""

    def __init__(self, clock, syntaxes=(EXPLICIT, IMPLICIT), sopClasses=(CT_STORAGE, MR_STORAGE), services=None):
        self.clock = clock
        self.recorder = Recorder()
        policy = AcceptorPolicy(aeTitles=["DEST", "DESTJK"], abstractSyntaxes=dict.fromkeys(sopClasses, True),
                                transferSyntaxes=set(syntaxes))
        self.factory = DicomServerFactory(policy, services or {commands.C_STORE_RQ: self.recorder}, {}, clock)
        self.pumps = []
        self.clients = []
        self.down = False

    def endpointFor(self, host, port):
        return self

    def connect(self, factory):
        if self.down:
            return defer.fail(ConnectionRefusedError("connection refused"))
        server = self.factory.buildProtocol(None)
        client = factory.buildProtocol(None)
        self.clients.append(client)
        self.pumps.append(iosim.connect(server, iosim.FakeTransport(server, True), client,
                                        iosim.FakeTransport(client, False), clock=self.clock))
        return defer.succeed(client)

    @property
    def associations(self):
        return len(self.clients)

    def openAssociations(self):
        return [c for c in self.clients if c.state == "Sta6"]

    def flush(self):
        for pump in self.pumps:
            pump.flush()


def settle(testCase, d, acceptor, clock=None):
    """Pump until ``d`` fires; its result (a Failure too)."""
    result = []
    d.addBoth(result.append)
    for _ in range(200):
        if result:
            break
        acceptor.flush()
        if clock is not None:
            clock.advance(0)
    testCase.assertTrue(result, "the Deferred never fired")
    return result[0]


def failingFor(uid):
    """A ``convertToFirst`` whose conversion of ``uid`` fails, as of pixel
    data no codec here decodes."""
    async def convertToFirst(stored, data, syntaxes, workers, quality):
        if stored.sopInstanceUID == uid:
            raise TranscodeError("cannot decode")
        return await retrieve.convertToFirst(stored, data, syntaxes, workers, quality)
    return convertToFirst
