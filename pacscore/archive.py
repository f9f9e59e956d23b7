"""The Archive: everything the services of one running server share.

Built once from the configuration by ``tap.pacs.makeService``: the MAG
devices, the index, the file namer, the object store, the I/O thread pool
and the counters behind ``--display_status``.
"""

from twisted.logger import Logger

from pacscore.db.drivers import findDriver
from pacscore.db.index import Index
from pacscore.dicom import commands
from pacscore.dicom.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, AcceptorPolicy
from pacscore.dicom.protocol import DicomServerFactory
from pacscore.dicom.storage import StorageService
from pacscore.dicom.verification import EchoService
from pacscore.dicom.sopclasses import VERIFICATION, isStorageClass
from pacscore.storage.devices import MagDevice
from pacscore.storage.filenames import FileNamer
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
            if entry.uid == VERIFICATION:
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
        return DicomServerFactory(
            self.acceptorPolicy(),
            services={commands.C_ECHO_RQ: EchoService(), commands.C_STORE_RQ: storage},
            sinks={commands.C_STORE_RQ: storage},
            clock=self.reactor,
            idleTimeout=self.idleTimeout,
            artimTimeout=self.artimTimeout,
            counters=self.counters)
