"""The Archive: everything the services of one running server share.

Built once from the configuration by ``tap.pacs.makeService``: the MAG
devices, the index and its query translator, the file namer, the object
store and reader, the I/O thread pool and the counters behind
``--display_status``.
"""

from twisted.logger import Logger

from pacscore.db.drivers import findDriver
from pacscore.db.index import Index
from pacscore.db.query import IndexQuery
from pacscore.dicom import commands
from pacscore.dicom.find import FindService
from pacscore.dicom.models import modelOf
from pacscore.dicom.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, AcceptorPolicy
from pacscore.dicom.protocol import DicomServerFactory
from pacscore.dicom.retrieve import GetService, MoveService
from pacscore.dicom.storage import StorageService
from pacscore.dicom.verification import EchoService
from pacscore.dicom.sopclasses import VERIFICATION, isStorageClass
from pacscore.storage.devices import MagDevice
from pacscore.storage.filenames import FileNamer
from pacscore.storage.reader import ObjectReader
from pacscore.storage.store import ObjectStore
from pacscore.workers import WorkerPool


class Archive:
    """See the module docstring. ``dbDescription`` and ``aeTitle`` are the
    ``--db`` and ``--ae`` overrides."""

    log = Logger()

    def __init__(self, configuration, reactor, dbDescription=None, aeTitle=None, ioThreads=4):
        self.configuration = configuration
        self.reactor = reactor
        self.aeTitle = aeTitle or configuration.aeTitle
        self.counters = {}
        self.devices = [MagDevice(name, path) for name, path in configuration.magDevices]
        self.workers = WorkerPool(reactor, ioThreads, "pacs-io")
        self.driver, self.dbDescription = findDriver(dbDescription, configuration)
        self.engine = self.driver.createEngine(self.dbDescription, configuration)
        self.index = Index(self.engine, configuration.layout, configuration.tableNames,
                           writerThreads=self.driver.writerThreads, reactor=reactor)
        self.namer = FileNamer(configuration.fileNameSyntax, configuration.maxFileNameLength)
        self.idleTimeout = configuration.tcpipTimeout
        self.artimTimeout = configuration.ini.getint("ARTIMTimeOut", 30)
        self.storageFailedStatus = configuration.storageFailedErrorCode
        self.tcpPort = configuration.tcpPort
        self.objectStore = ObjectStore(
            self.devices[0], self.namer, self.index, configuration.layout.indexedTags(),
            self.workers, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION)
        self.objectReader = ObjectReader(self.devices)
        ini = configuration.ini
        self.query = IndexQuery(
            self.index.tables, configuration.layout,
            sortOrders={level: ini.get(f"{level.capitalize()}QuerySortOrder", "")
                        for level in ("PATIENT", "STUDY", "SERIES", "IMAGE")},
            computedFields=ini.getint("EnableComputedFields", 0) == 1)

    def startup(self):
        """Synchronous preparation before the reactor serves: folders exist,
        crash leftovers are gone, the tables exist, the pools run."""
        for device in self.devices:
            device.prepare()
        self.index.createTables()
        self.workers.start()
        self.index.start()

    def shutdown(self):
        """Stop the pools after the services stopped; returns a Deferred."""
        d = self.index.stop()
        d.addCallback(lambda _: self.workers.stop())
        return d

    def acceptorPolicy(self):
        """What the DICOM service accepts, from dgatesop.lst and dicom.ini."""
        sopList = self.configuration.sopList
        served = {}
        for entry in sopList.sops():
            if entry.uid == VERIFICATION or modelOf(entry.uid) is not None:
                served[entry.uid] = False
            elif isStorageClass(entry.uid):
                served[entry.uid] = True
        return AcceptorPolicy(
            aeTitles=[self.aeTitle] + [e.aeTitle for e in sopList.localAEs()],
            abstractSyntaxes=served,
            transferSyntaxes={e.uid for e in sopList.transfers()},
            callingAETitles={e.aeTitle for e in sopList.remoteAEs()})

    def dicomFactory(self):
        """The protocol factory of the DICOM service."""
        storage = StorageService(self.objectStore, self.storageFailedStatus, self.counters)
        retrieveSettings = (self.index, self.query, self.objectReader, self.workers, self.aeTitle, self.reactor)
        services = {
            commands.C_ECHO_RQ: EchoService(),
            commands.C_STORE_RQ: storage,
            commands.C_FIND_RQ: FindService(self.index, self.query, self.aeTitle, self.reactor, self.counters),
            commands.C_MOVE_RQ: MoveService(*retrieveSettings, self.configuration.acrNemaMap, self.counters,
                                            dimseTimeout=self.idleTimeout),
            commands.C_GET_RQ: GetService(*retrieveSettings, self.counters),
        }
        return DicomServerFactory(
            self.acceptorPolicy(),
            services=services,
            sinks={commands.C_STORE_RQ: storage},
            clock=self.reactor,
            idleTimeout=self.idleTimeout,
            artimTimeout=self.artimTimeout,
            counters=self.counters)
