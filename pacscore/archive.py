"""The Archive: everything the services of one running server share.

Built once from the configuration by ``tap.pacs.makeService``: the MAG
devices and their mirrors, the index and its query translator, the file namer, the object
store and reader, the I/O thread pool (and the small pool of ``dgate --lua:``
chunks, apart from it, so that a stuck chunk holds up no storage) and the web's turns at making
pictures in it, the worklist and its HL7 intake, and the counters behind
``--display_status``.
"""

import functools
import os
import stat
import time

from sqlalchemy.exc import SQLAlchemyError
from twisted.internet import defer, threads
from twisted.logger import Logger

from pacscore.codecs import codecprocesses
from pacscore.codecs.syntaxes import isSupportedCode, unencodable
from pacscore.config.errors import ConfigError
from pacscore.config.unsupported import warnOfIgnoredKeys
from pacscore.control.inprocess import commandOutput
from pacscore.control.maintenance import InterruptedRegen
from pacscore.control.output import settingFiles
from pacscore.control.registry import CommandRegistry as ControlCommands
from pacscore.control.shutdown import quitGracePeriod
from pacscore.converters.compressing import CompressionScripts
from pacscore.converters.context import ConverterServices
from pacscore.converters.dicomrequests import DicomRequests
from pacscore.converters.hooks import hooksFrom
from pacscore.converters.importing import ImportConverters
from pacscore.converters.registry import CommandRegistry
from pacscore.converters.luaevents import LuaEvents
from pacscore.converters.rules import ConverterRules, loadRules
from pacscore.converters.servercommands import ServerCommands
from pacscore.converters.uidmap import UIDMap
from pacscore.db.carryover import carryOver, previousIndex
from pacscore.db.drivers import databaseFiles, findDriver, redacted
from pacscore.db.errors import databaseMessage, isDamaged, whileConnecting
from pacscore.db.index import Index
from pacscore.db.query import IndexQuery
from pacscore.db.worklistitems import WorklistItems
from pacscore.db.worklistquery import WorklistQuery
from pacscore.dicom import commands
from pacscore.dicom.commitment import MAXIMUM_AGE, STORAGE_COMMITMENT, CommitmentService, PendingCommitments
from pacscore.dicom.mpps import MPPS, MppsService, StepTable
from pacscore.dicom.mppsforward import MppsForwarder, WaitingForwards
from pacscore.dicom.find import FindService
from pacscore.dicom.models import FIND, GET, MOVE, modelOf, sopClassesFor
from pacscore.dicom.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, AcceptorPolicy, TitleStyle
from pacscore.dicom.protocol import DicomServerFactory
from pacscore.dicom.retrieve import GetService, MoveService
from pacscore.dicom.routing import SopClassRouter
from pacscore.dicom.ownretrieves import OwnRetrieves
from pacscore.dicom.storage import StorageService
from pacscore.dicom.verification import EchoService
from pacscore.dicom.virtual import VirtualServers
from pacscore.dicom.sopclasses import VERIFICATION, isStorageClass
from pacscore.dicom.worklist import MODALITY_WORKLIST_FIND, WorklistFindService
from pacscore.export.actions import LocalActions
from pacscore.export.fetch import DicomWebFetcher
from pacscore.export.queue import ExportQueue
from pacscore.export.runner import ExportService
from pacscore.hl7.dropfolder import DropFolder
from pacscore.hl7.intake import WorklistIntake
from pacscore.hl7.mapping import WorklistMapping
from pacscore.hl7.mllp import DEFAULT_BUFFERED_MB, MLLPFactory
from pacscore.keyedlocks import KeyedLocks
from pacscore.storage.devices import MagDevice, isAbsent
from pacscore.storage.devicechoice import DeviceChoice
from pacscore.storage.durability import durabilityFor
from pacscore.storage.filenames import FileNamer
from pacscore.storage.mirror import Mirrors
from pacscore.storage.objectfiles import DEFAULT_DIRECT_SIZE, FileWrites
from pacscore.storage.patientids import PatientIDFixer
from pacscore.storage.prefetcher import Prefetcher
from pacscore.storage.reader import ObjectReader, currentInstance
from pacscore.storage.regen import fileRecord, iterObjectFiles
from pacscore.storage.movemarks import MoveMarks
from pacscore.storage.relocation import DeviceMover
from pacscore.storage.space import MEGABYTE, Nightly, SpaceKeeper, ThresholdClean
from pacscore.storage.store import ObjectStore
from pacscore.storage.worklistmode import WorklistAmender
from pacscore.web.dicomweb.metadatacache import MetadataCache
from pacscore.workers import WorkerPool

DEFAULT_WEB_RENDERS = 2  # WebMaxRenders
LUA_CHUNK_THREADS = 2  # dgate --lua: chunks running at once; a further one is refused as busy
NON_STORAGE_SERVICES = (VERIFICATION, MODALITY_WORKLIST_FIND, STORAGE_COMMITMENT, MPPS)  # served but not stored


class StartupError(Exception):
    """The archive cannot start; the message says why, for the operator."""

    @classmethod
    def ofFolder(cls, error):
        """The StartupError of an ``OSError`` about a folder or file."""
        return cls(f"{error.filename}: {error.strerror}")


class Archive:
    """See the module docstring. ``dbDescription`` and ``aeTitle`` are the
    ``--db`` and ``--ae`` overrides; ``ConfigError`` or ``StartupError``
    when the configuration cannot be served."""

    log = Logger()

    def __init__(self, configuration, reactor, dbDescription=None, aeTitle=None, ioThreads=4):
        self.configuration = configuration
        self.reactor = reactor
        self.aeTitle = aeTitle or configuration.aeTitle
        self.counters = {}
        self.startTime = None  # seconds since the epoch, set by startup()
        self.startedAt = None  # the reactor's time then (its clock is not the time of day)
        self.dicomServerFactory = None  # made by dicomFactory()
        self.moves = None  # the C-MOVE service (MoveService), made by dicomFactory()
        self.devices = [MagDevice(name, path) for name, path in configuration.magDevices]
        self.mirrors = Mirrors.fromConfiguration(configuration)
        self.workers = WorkerPool(reactor, ioThreads, "pacs-io")
        self.luaChunks = WorkerPool(reactor, LUA_CHUNK_THREADS, "pacs-lua")
        # seconds a stop waits for the workers' calls under way (a script stuck in a C call
        # must not hold it); they are daemons, left behind after that
        self.quitGracePeriod = quitGracePeriod(configuration.ini)
        # WebMaxRenders pictures (the web's, and the control port's convert_to_gif/bmp/jpg)
        # are made at once (each holds a decoded frame and its float copy); the others wait
        # their turn
        self.webRenders = defer.DeferredSemaphore(
            max(configuration.ini.getint("WebMaxRenders", DEFAULT_WEB_RENDERS), 1))
        self.metadataCache = MetadataCache()  # WADO-RS metadata of files read lately
        self.driver, self.dbDescription = findDriver(dbDescription, configuration)
        self.databaseFiles = databaseFiles(self.driver, self.dbDescription, configuration)
        self.interruptedRegens = []  # names of the devices whose regeneration a stop cut short
        self.regenRerun = None  # the Deferred of their regeneration run again
        try:
            self.engine = self.driver.createEngine(self.dbDescription, configuration)
        except OSError as e:  # its folder cannot be made
            raise StartupError.ofFolder(e) from e
        self.durability, deferSync = self._durability()
        self.index = Index(self.engine, configuration.layout, configuration.tableNames,
                           writerThreads=self.driver.writerThreads, reactor=reactor,
                           durability=self.durability, onWriterConnect=deferSync,
                           allowTruncate=configuration.allowTruncate,
                           truncateFieldNames=configuration.truncateFieldNames,
                           onTablesBuilt=getattr(self.driver, "indexTablesBuilt", None),
                           timeout=configuration.sqlTimeout, fileWatch=self._fileWatch(),
                           schemaTransaction=getattr(self.driver, "schemaTransaction", None))
        self.namer = FileNamer(configuration.fileNameSyntax, configuration.maxFileNameLength)
        # TCPIPTimeOut and LossyQuality in use until a restart (put_param edits dicom.ini in memory, not these):
        # every service reads them here, those made at start and those that read them at each use alike
        self.idleTimeout = configuration.tcpipTimeout
        self.lossyQuality = configuration.lossyQuality
        self.settingFiles = settingFiles(configuration)  # the log files and WebUsers file in use until a restart
        self.artimTimeout = configuration.artimTimeout
        self.storageFailedStatus = configuration.storageFailedErrorCode
        self.incomingCompression = self._compressionCode(configuration.ini, "IncomingCompression")
        self.droppedFileCompression = self._compressionCode(configuration.ini, "DroppedFileCompression")
        archiveCompression = self._compressionCode(configuration.ini, "ArchiveCompression", "as",
                                                   "objects move to another device as they are")
        self._warnOfUnencodableCodes(configuration)
        self.tcpPort = configuration.tcpPort  # until the DICOM service listens (listeningOn)
        self.endpoints = []  # the descriptions of the listeners serving, as ``twistd pacs`` records them
        self.controlPort = None  # the ControlFactory of the control port, which ``twistd pacs`` sets
        self.controlOption = None  # ``twistd pacs --control``, which overrides ControlEndpoint (None: not given)
        self.titleStyle = TitleStyle.fromIni(configuration.ini)  # PadAEWithZeros, SendUpperCaseAE
        ini = configuration.ini
        try:
            uidMap = UIDMap(self.engine, prefix=configuration.uidPrefix)  # creates its table
        except SQLAlchemyError as e:
            raise self._indexUnusable(e) from e
        worklistColumns = configuration.layout.worklist
        try:
            # the worklist's Study Instance UIDs start with UIDPrefix, as genuid's do
            self.worklistMapping = WorklistMapping(worklistColumns, newUID=uidMap.newUID,
                                                   table=configuration.tableNames["worklist"],
                                                   allowTruncate=configuration.allowTruncate,
                                                   dialect=self.engine.dialect)
        except ValueError as e:
            raise ConfigError(configuration.layout.path, None, f"*WorkList* HL7 mapping: {e}") from e
        self.worklistItems = WorklistItems(self.index)
        self.worklistMode = ini.getint("WorkListMode", 0)
        self.debugLevel = ini.getint("DebugLevel", 0)  # of the debug log, set when the service starts
        amenders = []  # in this order: the import converters then see Conquest's fixed Patient IDs
        if self.worklistMode in (1, 2):
            amenders.append(WorklistAmender(self.worklistMode, self.worklistItems.lookup, worklistColumns))
        patientIDFixer = PatientIDFixer.fromIni(ini)
        if patientIDFixer is not None:
            amenders.append(patientIDFixer)
        self.commands = CommandRegistry()
        self.converterRules = loadRules(ini, self.commands)
        # Lua's servercommand: import converters wait in this pool (with stand-ins) for commands that may need it
        self.controlCommands = ControlCommands()  # the one registry of the control port, web pages, SIGHUP and Lua
        runCommand = functools.partial(commandOutput, self, self.controlCommands, peer="converter")
        serverCommands = ServerCommands.fromIni(ini, reactor, runCommand, requests=DicomRequests(self),
                                                deleteMatching=lambda keys: self.localActions.deleteMatching(keys))
        self.converterServices = ConverterServices(
            index=self.index, configuration=configuration, aeTitle=self.aeTitle, reactor=reactor,
            worklistLookup=self.worklistItems.lookup, counters=self.counters, uidMap=uidMap,
            serverCommands=serverCommands, commands=self.commands, databaseFiles=self.databaseFiles,
            magDevices=[(device.name, device.path) for device in self.devices],
            mirrorDevices=[(device.name, device.path) for device in self.mirrors.devices.values()])
        self.luaEvents = LuaEvents.fromConfiguration(configuration, self.converterServices, self.commands,
                                                     self.workers, reactor)
        warnOfIgnoredKeys(self.log, configuration)
        self.query = IndexQuery(
            self.index.tables, configuration.layout,
            sortOrders={level: ini.get(f"{level.capitalize()}QuerySortOrder", "")
                        for level in ("PATIENT", "STUDY", "SERIES", "IMAGE")},
            computedFields=ini.getint("EnableComputedFields", 0) == 1)
        keepsIndex = getattr(self.driver, "keepsIndex", True)
        current = functools.partial(currentInstance, self.index, self.query) if keepsIndex else None
        self.objectReader = ObjectReader(self.devices, self.mirrors, current)
        self.ownRetrieves = OwnRetrieves(self.aeTitle)  # the export queue's C-MOVEs to us under way
        self.exportRunner = None  # made by exportService()
        self.exportQueue = ExportQueue.fromConfiguration(self.index, configuration, self.converterRules.exportRules,
                                                         mirrored=self.mirrors.mirrored,
                                                         objectPaths=None if keepsIndex else self.objectReader.magPath)
        self.converterServices.exportQueue = self.exportQueue
        self.procedureSteps = StepTable(self.index, time.time)
        self.mppsForwards = WaitingForwards(self.index, time.time)
        self.mppsForwarder = MppsForwarder.fromConfiguration(self.mppsForwards, configuration, self.aeTitle, reactor)
        self.index.afterUpsert = self.exportQueue.enqueueJobs
        self.converterHooks = hooksFrom(self.converterRules.special, self.converterServices)
        self.compressionScripts = CompressionScripts(self.converterHooks)
        self.prefetcher = (Prefetcher(self.index, self.query, self.objectReader, self.workers)
                           if ini.getint("Prefetcher", 0) else None)
        self.commitments = CommitmentService(
            PendingCommitments(self.index, time.time), self.query, self.objectReader, self.workers, self.aeTitle,
            configuration.acrNemaMap, reactor, self.counters, retryDelay=ini.getint("RetryDelay", 100),
            maximumAge=ini.getint("MaximumCommitmentAge", MAXIMUM_AGE), dimseTimeout=self.idleTimeout,
            titleStyle=self.titleStyle, completeness=self.index.completeness)
        threshold = 0 if ini.getint("IgnoreMAGDeviceThreshHold", 0) else ini.getint("MAGDeviceThreshold", 0)
        self.objectChanges = KeyedLocks()  # per SOP Instance UID: the control commands' rewrites, one at a time
        self.localActions = LocalActions(self.index, self.query, self.objectReader, self.workers)
        # VirtualServerForN (C-FIND, C-MOVE/C-GET and DICOMweb), or None
        self.virtualServers = VirtualServers.fromConfiguration(configuration, self.aeTitle, reactor, self.index,
                                                               self.query, self.localActions, self.ownRetrieves)
        self.moveMarks = MoveMarks(self.index, time.time)
        self.deviceMover = DeviceMover(self.devices, self.index, self.objectReader, self.workers, self.moveMarks,
                                       compression=archiveCompression,
                                       lossyQuality=self.lossyQuality)
        choice = DeviceChoice.fromIni(self.devices, ini)
        self.spaceKeeper = SpaceKeeper(self.devices[0], self.index, self.query, self.localActions, self.workers,
                                       sortTag=configuration.lruSortTag, mover=self.deviceMover,
                                       spillover=self.devices[1:] if choice.spills else ())
        self.thresholdClean = ThresholdClean(self.spaceKeeper, max(threshold, 0) * MEGABYTE)
        self.nightlyCleanThreshold = max(ini.getint("NightlyCleanThreshold", 0), 0) * MEGABYTE
        self.nightlyMoveThreshold = max(ini.getint("NightlyMoveThreshold", 0), 0) * MEGABYTE
        self.nightlyMoveTarget = configuration.nightlyMoveTarget
        self.objectStore = ObjectStore(
            self.devices[0], self.namer, self.index, configuration.layout.indexedTags(),
            self.workers, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, amenders=amenders,
            importers=self._importConverters(self.converterRules.importRules), devices=self.devices,
            mirrors=self.mirrors,
            fileWrites=FileWrites(ini.getint("DirectWriteSize", DEFAULT_DIRECT_SIZE)),
            spaceCheck=self.thresholdClean.checkFromThread, lossyQuality=self.lossyQuality,
            compressionScripts=self.compressionScripts, choice=choice)
        self.hl7Intake = WorklistIntake(self.worklistMapping, self.worklistItems,
                                        application=self.aeTitle, counters=self.counters,
                                        inThread=self.inReactorPool)
        self.hl7DropFolder = DropFolder(configuration.pathSetting("HL7DropFolder", "./hl7/"),
                                        self.hl7Intake, self.workers)
        self.hl7DropInterval = ini.getint("HL7DropFolderInterval", 2)
        self.hl7MaxMessageSize = ini.getint("HL7MaxMessageSize", 1 << 20)
        self.worklistQuery = WorklistQuery(self.index.tables.worklist, worklistColumns)
        self.worklistReturnsIsoIr100 = ini.getint("WorkListReturnsISO_IR_100", 1) == 1

    def _importConverters(self, importRules):
        """The ``ImportConverters`` of ``importRules``, or None when there is none."""
        return ImportConverters(importRules, self.converterServices) if importRules else None

    def useConverterRules(self, rules, exports):
        """Store the objects whose storing starts from now on with the import
        lines of ``rules`` (a ``ConverterRules``), and when ``exports``, queue
        and run the export jobs with its export lines (a job under way keeps
        its line); the query/retrieve and compression lines stay those the
        archive started with.  On the reactor thread."""
        running = self.converterRules
        exportRules = rules.exportRules if exports else running.exportRules
        self.converterRules = ConverterRules(rules.importRules, exportRules, running.special)
        self.objectStore.importers = self._importConverters(rules.importRules)
        self.exportQueue.rules = list(exportRules)
        if self.exportRunner is not None:
            self.exportRunner.useRules(exportRules)
        self.log.info("converter lines changed: {importLines} import and {exportLines} export line(s) in use{kept}",
                      importLines=len(rules.importRules), exportLines=len(exportRules),
                      kept="" if exports else " (the export lines the server started with: export lines added or "
                                              "emptied take effect when it restarts)")

    def _fileWatch(self):
        """The driver's watch of the database file, if it keeps one."""
        fileWatch = getattr(self.driver, "fileWatch", None)
        return None if fileWatch is None else fileWatch(self.dbDescription, self.configuration)

    def _durability(self):
        """The durability policy, and the writer connection set-up that lets
        a local database rely on its flushes (or None)."""
        localFolder = getattr(self.driver, "localFolder", None)
        indexFolder = localFolder(self.dbDescription, self.configuration) if localFolder else None
        durability = durabilityFor(self.devices, indexFolder)
        if durability.flushesAfterCommit and indexFolder is not None:
            return durability, self.driver.deferSync
        return durability, None

    def _compressionCode(self, ini, key, default="un", instead="objects are stored as received"):
        """The Conquest compression code of ``key`` (``default``, Conquest's,
        when it is missing); a code not supported here is logged, saying
        what is done ``instead``."""
        code = ini.get(key, default).strip().lower()
        if not isSupportedCode(code):
            self.log.warn("{key} = {code}: not supported here, {instead}", key=key, code=code, instead=instead)
        return code

    def _warnOfUnencodableCodes(self, configuration):
        """One warning for each compression code dicom.ini and acrnema.map
        ask for that no encoder installed here can write (``unencodable``;
        the others, "forward compressed as" ..., are told of at first use)."""
        for key, default in (("IncomingCompression", "un"), ("DroppedFileCompression", "un"),
                             ("ArchiveCompression", "as")):
            unencodable.check(configuration.ini.get(key, default), key)
        for node in configuration.acrNemaMap.nodes:
            unencodable.check(node.compression, f"acrnema.map {node.ae}")

    def _earlierCopyRecord(self, deviceName, objectFile):
        """The index record of a file start-up recovery indexes again."""
        return fileRecord(self.objectReader.path(deviceName, objectFile), self.configuration.layout.indexedTags(),
                          deviceName, objectFile)

    def _removeReplacedCopies(self, files):
        """Remove each of ``files``, copies start-up recovery found replaced
        (named by no image row), that is on its MAG device, with its mirror
        copy; how many were (one whose device is not configured stays).
        Not while a regen is pending: the index may miss objects then."""
        removed = 0
        for deviceName, objectFile in files:
            try:
                if os.path.exists(self.objectReader.magPath(deviceName, objectFile)):
                    self.objectReader.removeCopies(deviceName, objectFile)
                    removed += 1
            except OSError as e:
                self.log.warn("{device}:{path}, a copy replaced just before the server stopped, stays: {error}",
                              device=deviceName, path=objectFile, error=e)
        return removed

    def listeningOn(self, address):
        """Note the ``address`` the DICOM service listens on: its port (``--dicom``'s, or
        TCPPort's) is the one the status and scripted pages report."""
        self.tcpPort = getattr(address, "port", self.tcpPort)

    def startup(self):
        """Synchronous preparation before the reactor serves: folders exist,
        crash leftovers are gone, the tables exist, the pools run.
        ``StartupError`` when a folder or the index database cannot be used."""
        self.startTime, self.startedAt = time.time(), self.reactor.seconds()
        missing, absent = [], []  # absent: found before any folder is made (isAbsent)
        for device in self.devices:
            try:
                isFolder = stat.S_ISDIR(os.stat(device.path).st_mode)
            except OSError:
                missing.append(device)
                absent.append(device.name)
                continue
            if not isFolder:
                raise StartupError(f"{device.name}: {device.path} is not a folder")
            if isAbsent(device):
                absent.append(device.name)
        self._prepareFolders([device for device in self.devices if device.name not in absent] +
                             [self.mirrors, self.hl7DropFolder])
        try:
            self.index.createTables(self.objectReader.characterSetOf)
            self.interruptedRegens = self.index.interruptedRegens()
            self._checkMissingDevices(missing)
            self.localActions.finishInterrupted()  # first: the rows it removes are no lost stores
            self.index.recoverPending(self.objectReader.fileError, self._earlierCopyRecord,
                                      None if self.interruptedRegens else self._removeReplacedCopies)
            self.objectStore.settleUnindexed(self.objectReader.fileError)
            self.moveMarks.createTables()
            self.moveMarks.recover(self.objectReader, absent)
            self._prepareAbsentDevices(absent, missing)
            self.exportQueue.createTables()
            self.procedureSteps.createTables()
            self.mppsForwards.createTables()
            self.commitments.pending.createTables()
            self._carryOverFromSQLite()
            self.worklistItems.check()
            emptyIndex = not self.index.hasImages()
        except SQLAlchemyError as e:
            raise self._indexUnusable(e) from e
        completeness = self.index.completeness
        completeness.mayMiss(self.interruptedRegens, "a regen of it was interrupted, run again now")
        if emptyIndex and not self.interruptedRegens and getattr(self.driver, "keepsIndex", True):
            self._warnOfUnindexedFiles()
        self.workers.start()
        self.luaChunks.start()
        self.index.start()

    def _carryOverFromSQLite(self):
        """On a database server: the queues, UID maps and worklist the
        SQLite index of this working folder kept before the switch
        (``carryOver``)."""
        if getattr(self.driver, "localFolder", None) is not None:
            return
        previous = previousIndex(self.configuration)
        if previous is None:
            return
        path, engine = previous
        tables = [self.exportQueue.jobs, self.exportQueue.forwards, self.commitments.pending.table,
                  self.procedureSteps.table, self.mppsForwards.table, *self.converterServices.uidMap.tables,
                  self.index.tables.worklist]
        try:
            carryOver(engine, self.engine, tables, path, self.log, self.index.madeBy)
        except SQLAlchemyError as e:  # a damaged old file: the new index serves without its rows
            self.log.error("The rows of {tables} in {path}, the SQLite index of this working folder before the "
                           "switch to this database, could not be carried over ({error}); they stay there",
                           tables=", ".join(table.name for table in tables), path=path, error=databaseMessage(e))
        finally:
            engine.dispose()

    @staticmethod
    def _prepareFolders(parts):
        try:
            for part in parts:
                part.prepare()
        except OSError as e:
            raise StartupError.ofFolder(e) from e

    def _checkMissingDevices(self, missing):
        """A MAG device whose folder is missing stops start-up when the index
        holds objects on it (a volume not mounted) or its regeneration was
        interrupted (they would be served as lost, and regenerated away);
        otherwise it is made (``_prepareAbsentDevices``)."""
        names = [device.name for device in missing]
        inUse = sorted(set(self.index.devicesInUse(names)) | (set(names) & set(self.interruptedRegens)))
        if inUse:
            raise StartupError(
                f"the folder of {', '.join(inUse)} is missing but the index holds objects on it (or a regen of it "
                f"was interrupted) "
                f"({', '.join(device.path for device in missing if device.name in inUse)}): mount its volume, "
                f"or, if its objects are gone for good, make the folder and run 'dgate -r'")

    def _prepareAbsentDevices(self, absent, missing):
        """After ``MoveMarks.recover``: the MAG devices named in ``absent``
        (``isAbsent``) prepared, those of ``missing`` made, but for the
        devices whose move marks are kept, held back (``MagDevice.holdBack``):
        written into, their empty folder would be taken for one in use at the
        next start-up, and the marks dropped."""
        awaited = self.moveMarks.devicesNamed()
        for device in self.devices:
            if device.name not in absent:
                continue
            if device.name in awaited:
                device.holdBack()
                self.log.warn("{device}: nothing goes to it until its folder {path} holds files again (its disk "
                              "mounted): moves to or from it cut short wait for it", device=device.name,
                              path=device.path)
                continue
            if device in missing:
                self.log.warn("{device}: its folder {path} did not exist and is made now", device=device.name,
                              path=device.path)
            self._prepareFolders([device])

    def _warnOfUnindexedFiles(self):
        """An empty index beside MAG devices holding DICOM files (but for
        those of ``PRINTER_FILES`` folders, which a regen leaves out) was
        lost or never built (a deleted or truncated database, a switch to a
        new database server, an archive moved in): say how to rebuild it, and
        what finds nothing until then.  Nothing waits for it (no mark
        would tell a later start): the work a regen holds back is that of
        a regen pending or under way (``IndexCompleteness``)."""
        for device in self.devices:
            for path, _ in iterObjectFiles(device, skip=self.databaseFiles):
                self.log.warn("the index holds no image, but {device} holds DICOM files (e.g. {path}); if the index "
                              "was lost or switched to a new database, run 'dgate --regen:' now (or 'dgate -r' with "
                              "the server stopped) to re-enter them: until then queries, retrieves, forwards and "
                              "storage commitments do not find them (a queued forward of them is dropped, a "
                              "commitment reported as not committed)", device=device.name, path=path)
                return

    def _indexUnusable(self, error):
        """The ``StartupError`` of a SQLAlchemy ``error`` from the index
        database: the remedy of a damaged SQLite file (``dgate -r``), of a
        database that does not exist on its server (create it), of a
        database server that cannot be connected to (start it), else the
        database's message alone."""
        what = f"the index database {redacted(self.dbDescription)} cannot be used: {databaseMessage(error)}"
        if isDamaged(error):
            return StartupError(f"{what}. The file is damaged: 'dgate -r' in the working folder sets it aside "
                                f"and rebuilds the index from the stored files")
        if whileConnecting(error) and getattr(self.driver, "localFolder", None) is None:
            url = self.engine.url
            missing = self.driver.missingDatabase(error, url)
            if missing is not None:
                return StartupError(f"{what}. {missing}")
            server = (url.host or "localhost") + (f":{url.port}" if url.port else "")
            return StartupError(f"{what}. pacs cannot connect to the database server at {server}: start it, "
                                f"or correct SQLHost, Username and Password in dicom.ini (or --db)")
        return StartupError(what)

    def resume(self):
        """Once the reactor runs: take up the storage commitment reports and
        MPPS forwards that were due when pacs stopped, and run again a
        regeneration it interrupted (while serving)."""
        if self.interruptedRegens:
            self.regenRerun = InterruptedRegen(self, self.reactor, self.interruptedRegens).run()
        self.commitments.resume()
        if self.mppsForwarder is not None:
            self.mppsForwarder.resume()

    def shutdown(self):
        """Stop the pools after the services stopped, then close the index
        (SQLite then checkpoints its write-ahead log into the database file
        and removes it); returns a Deferred.  The stores under way end
        first, with the index and the I/O pool still running: the copies
        they replace are removed (in the pool) once they are committed; so
        do the deletes of what the retrieves under way fetched from virtual
        servers (CacheVirtualData = 0), which their abort releases."""
        self.commitments.stop()
        if self.mppsForwarder is not None:
            self.mppsForwarder.stop()
        deadline = self.reactor.seconds() + self.quitGracePeriod  # one grace period for the stores and the pools
        d = defer.gatherResults([self._storesEnded(),
                                 self.luaChunks.stop(self.quitGracePeriod)]
                                + ([self.moves.stop()] if self.moves is not None else [])
                                + ([self.virtualServers.stop(self.quitGracePeriod)]
                                   if self.virtualServers is not None else []))
        # what else was queued runs, in what is left of it
        d.addCallback(lambda _: self.workers.stop(max(deadline - self.reactor.seconds(), 0)))
        d.addCallback(lambda _: self.inReactorPool(codecprocesses.PROCESSES.shutdown,
                                                   max(deadline - self.reactor.seconds(), 0)))
        d.addCallback(lambda _: self.index.stop())  # which commits it
        d.addCallback(lambda _: self.durability.close())
        d.addCallback(lambda _: self.inReactorPool(self.engine.dispose))
        d.addCallback(lambda _: self.log.info("index closed"))
        return d

    def _storesEnded(self):
        """``ObjectStore.storesEnded``, or QuitGracePeriod seconds (logged):
        the stop then goes on, and a copy a store still under way replaces
        may stay."""
        ended = self.objectStore.storesEnded().addTimeout(self.quitGracePeriod, self.reactor)
        return ended.addErrback(lambda failure: failure.trap(defer.TimeoutError) and self.log.warn(
            "stopping after {grace} s (QuitGracePeriod) with stores still under way: a copy one replaces may "
            "stay on disk", grace=self.quitGracePeriod))

    def exportService(self):
        """The service running the export queue (export converters, forwards)."""
        self.exportRunner = ExportService.fromConfiguration(
            self.configuration, self.exportQueue, self.converterServices, self.converterRules.exportRules, self.query,
            self.objectReader, self.reactor, compressionScripts=self.compressionScripts,
            fetcher=DicomWebFetcher(self), ownRetrieves=self.ownRetrieves)
        return self.exportRunner

    def spaceServices(self):
        """The MAGDeviceThreshold service, then the NightlyCleanThreshold and
        NightlyMoveThreshold services (those not 0)."""
        keeper, services = self.spaceKeeper, [self.thresholdClean]
        if self.nightlyCleanThreshold:
            services.append(Nightly("NightlyCleanThreshold", 1, lambda keepGoing: keeper.cleanIfBelow(
                self.nightlyCleanThreshold, "NightlyCleanThreshold", keepGoing), self.reactor))
        if self.nightlyMoveThreshold:
            services.append(Nightly("NightlyMoveThreshold", 2, lambda keepGoing: keeper.moveIfBelow(
                self.nightlyMoveThreshold, self.nightlyMoveTarget, keepGoing), self.reactor))
        return services

    def acceptorPolicy(self):
        """What the DICOM service accepts, from dgatesop.lst and dicom.ini."""
        sopList = self.configuration.sopList
        localAEs = [e.aeTitle for e in sopList.localAEs()]
        served = {}
        for entry in sopList.sops():
            if entry.uid in NON_STORAGE_SERVICES or modelOf(entry.uid) is not None:
                served[entry.uid] = False
            elif isStorageClass(entry.uid):
                served[entry.uid] = True
        return AcceptorPolicy(
            aeTitles=[self.aeTitle] + localAEs if localAEs else [],  # none: any called AE, as in Conquest
            abstractSyntaxes=served,
            transferSyntaxes={e.uid for e in sopList.transfers()},
            callingAETitles={e.aeTitle for e in sopList.remoteAEs()},
            titleStyle=self.titleStyle)

    def inReactorPool(self, function, *args):
        """Run ``function`` in the reactor's thread pool (CPU work); a Deferred."""
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    def dicomFactory(self):
        """The protocol factory of the DICOM service."""
        storage = StorageService(self.objectStore, self.storageFailedStatus, self.counters, self.incomingCompression,
                                 self.ownRetrieves)
        hooks = self.converterHooks.get
        retrieveSettings = (self.index, self.query, self.objectReader, self.workers, self.aeTitle, self.reactor)
        virtual = self.virtualServers
        retrieveHooks = {"requestHook": hooks("RetrieveConverter0"), "resultHook": hooks("RetrieveResultConverter0"),
                         "virtual": virtual, "lossyQuality": self.lossyQuality,
                         "compressionScripts": self.compressionScripts, "prefetcher": self.prefetcher}
        worklist = WorklistFindService(
            self.index, self.worklistQuery, self.configuration.layout.worklist, self.worklistReturnsIsoIr100,
            self.reactor, self.counters, requestHook=hooks("WorkListQueryConverter0"),
            resultHook=hooks("ModalityWorkListQueryResultConverter0"))
        find = FindService(self.index, self.query, self.aeTitle, self.reactor, self.counters,
                           requestHook=hooks("QueryConverter0"), resultHook=hooks("QueryResultConverter0"),
                           virtual=virtual, prefetcher=self.prefetcher)
        mpps = MppsService(self.procedureSteps, self.reactor, self.converterServices.uidMap.newUID, self.counters,
                           worklist=self.worklistItems, forwarder=self.mppsForwarder)
        self.moves = MoveService(*retrieveSettings, self.configuration.acrNemaMap, self.counters,
                                 dimseTimeout=self.idleTimeout, artimTimeout=self.artimTimeout,
                                 titleStyle=self.titleStyle, **retrieveHooks)
        services = {
            commands.C_ECHO_RQ: SopClassRouter({VERIFICATION: EchoService()}),
            commands.C_STORE_RQ: storage,
            commands.C_FIND_RQ: SopClassRouter({**dict.fromkeys(sopClassesFor(FIND), find),
                                                MODALITY_WORKLIST_FIND: worklist}),
            commands.C_MOVE_RQ: SopClassRouter(dict.fromkeys(sopClassesFor(MOVE), self.moves)),
            commands.C_GET_RQ: SopClassRouter(dict.fromkeys(sopClassesFor(GET), GetService(
                *retrieveSettings, self.counters, **retrieveHooks))),
            commands.N_ACTION_RQ: SopClassRouter({STORAGE_COMMITMENT: self.commitments}),
            commands.N_CREATE_RQ: SopClassRouter({MPPS: mpps}),
            commands.N_SET_RQ: SopClassRouter({MPPS: mpps}),
        }
        self.dicomServerFactory = DicomServerFactory(
            self.acceptorPolicy(),
            services=services,
            sinks={commands.C_STORE_RQ: storage},
            clock=self.reactor,
            idleTimeout=self.idleTimeout,
            artimTimeout=self.artimTimeout,
            dimseTimeout=self.idleTimeout,  # a C-GET's C-STOREs to the requestor
            counters=self.counters,
            **self.luaEvents.associationHooks(),
            limits=DicomServerFactory.limitsFromIni(self.configuration.ini))
        return self.dicomServerFactory

    def refreshAcceptorPolicy(self):
        """Let the associations opened from now on follow an edited dgatesop.lst."""
        if self.dicomServerFactory is not None:
            self.dicomServerFactory.policy = self.acceptorPolicy()

    def hl7Factory(self):
        """The protocol factory of the HL7 MLLP service, with the limits
        of ``HL7MaxConnections``, ``HL7MaxConnectionsPerPeer`` and ``HL7MaxBufferedMB``."""
        ini = self.configuration.ini
        return MLLPFactory(self.hl7Intake.handle, maxMessageSize=self.hl7MaxMessageSize,
                           idleTimeout=self.idleTimeout, clock=self.reactor, counters=self.counters,
                           application=self.aeTitle, limits=MLLPFactory.limitsFromIni(ini),
                           maxBuffered=ini.getint("HL7MaxBufferedMB", DEFAULT_BUFFERED_MB) << 20,
                           inThread=self.inReactorPool)
