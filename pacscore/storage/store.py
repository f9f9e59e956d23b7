"""Storing one received object: the path from data set bytes to an
acknowledged, indexed Part-10 file.

    read index attributes -> check them against the command -> amend the
    data set (WorkListMode, import converters) -> name the file
    (FileNameSyntax) -> write temp file, rename -> index upsert (group
    commit) -> file and row made durable (see pacscore.storage.durability)
    -> Success

An object whose command (or file meta) gives a SOP Class, SOP Instance or
Transfer Syntax UID that is no UID (1 to 64 digits and dots: they go into
its file meta), or whose data set has a key longer than its index column
(``Index.checkKeys``: cut, it would be another object's, patient's, study's
or series'), is refused before anything is written; its data set is dropped
as it arrives.  One the index refuses (``InconsistentLink``: its study is
another patient's, its series another study's, its SOP instance indexed
in another series; ``NotReentered``: a regen
re-enters the files and its study or series has no row yet) is not left on
disk, but for one refused ``NotReentered`` that overwrote a copy of its SOP
instance under the same name: that copy is gone, it stays for the regen.

Disk work runs in a worker of the I/O pool, which hands the record straight
to the index writer thread; the reactor hears back once, after the commit.
An object kept in memory that is stored as received (no amender, import
converter or compression may change it) and that began to arrive while no
other store was under way and the I/O pool was idle was written into a temporary file of its device
as it arrived (``pacscore.storage.spool.EarlyWrite``): only its tail is left
to write once it is whole. A
replaced object (same SOP Instance UID) has its old file removed only after
the new one is committed.  A spooled (large) object whose compression code
asks only for explicit or implicit VR little endian is converted from its
spool file into the device's temporary file a frame at a time
(``pacscore.codecs.filetranscode``), never whole in memory; one larger
than ``LARGEST_CONVERTED_ON_ARRIVAL`` that a code would compress (in
memory) is stored as received.  One of odd length is padded
(``pacscore.codecs.evenlengths``) from its spool file into the device's
temporary file, a piece at a time, when nothing else reads it whole.
"""

import dataclasses
import functools
import os
import threading
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from io import BytesIO

from pydicom import dcmread
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacscore.codecs.compression import mayChange, recode, recodedSyntaxes
from pacscore.codecs.evenlengths import evenFile, evenLengths, isOdd
from pacscore.codecs.filetranscode import NotStreamed, streams, transcodeFile
from pacscore.codecs.jpeglossy import DEFAULT_QUALITY
from pacscore.codecs.nki import NKIError
from pacscore.codecs.nkipixels import NKI_PIXEL_DATA, withPlainPixels
from pacscore.codecs.syntaxes import isCompressed
from pacscore.codecs.transcode import TranscodeError
from pacscore.converters.awaitingobjects import awaitedMove
from pacscore.db.errors import DATABASE_FAILURES, databaseMessage
from pacscore.db.index import ImageRecord, InconsistentLink, NotReentered
from pacscore.dicom.datasets import IdentifierError
from pacscore.dicom.sinks import DiscardingSink
from pacscore.dicom.storeddata import decodedExtent
from pacscore.dicom.uids import isUID
from pacscore.firstwarned import FirstWarned
from pacscore.storage.attributes import (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, DatasetError, TextNotes, readAttributes,
                                         walkDataset)
from pacscore.storage.devicechoice import DeviceChoice
from pacscore.storage.devices import checkPresent, isDiskFull, isUnwritable, removeFile
from pacscore.storage.durability import FlushError
from pacscore.storage.objectfiles import FileWrites
from pacscore.storage.part10 import SOP_CLASS_UID, SOP_INSTANCE_UID, encodeFileMeta
from pacscore.storage.placing import MAX_NAME_SUFFIX, placeFile
from pacscore.storage.spool import EARLY_WRITE, EarlyWrite, Spool
from pacscore.storage.unindexed import JOURNAL, CopiesBySOP, UnindexedCopies
from pacscore.storage.worklistmode import ACCESSION_NUMBER, WorklistRefusal
from pacscore.workers import standInIfSlow

# An object whose data set or pixels (decoded) are larger is stored as received, not compressed in memory on
# arrival, which holds it two to three times over and takes minutes, past the sender's timeout.
LARGEST_CONVERTED_ON_ARRIVAL = 256 << 20
PATIENT_ID = 0x00100020
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
MODALITY = 0x00080060
STATION_NAME = 0x00081010
TEXT_WARNING_PERIOD = 3600  # seconds: how often a peer's objects with text read as Latin-1 are warned of, per kind
_FURTHER_FROM_PEER = "further ones from {peer} are logged at debug level for an hour"
INVALID_NAMED = 10  # values not valid in their VR a stored object's line names (of more: the first)
LAST_NOT_DATASET_TAG = 0x0002FFFF  # groups 0000 (command) and 0002 (file meta) are no data set elements


class StoreError(Exception):
    """Storing failed; subclasses say why, so the caller can pick a status."""


class Refused(StoreError):
    """The object is refused by the archive's rules (WorkListMode = 2, an
    import converter's ``reject``)."""


class DeviceMissing(Refused):
    """The folder of the MAG device the object was to go to is not there
    (a disk not mounted?)."""


class DeviceUnwritable(Refused):
    """The MAG device the object was to go to cannot be written: its file
    system is read-only, or pacs may not write there (``isUnwritable``)."""

    def __init__(self, device, error):
        super().__init__(f"{device.name} cannot be written ({error.strerror}): {device.path}")


class Rebuilding(StoreError):
    """The index is being rebuilt (a regen) and cannot check the object's
    links yet (``NotReentered``): a transient failure, retried later."""


class Destroyed(StoreError):
    """An import converter's ``destroy``: the object is not stored, and the
    sender is told Success, as Conquest does."""


class InvalidDataset(StoreError):
    """The data set cannot be parsed."""


class DatasetMismatch(StoreError):
    """The data set contradicts its command or lacks what every object needs."""


def uidProblem(incoming):
    """Why the UIDs ``incoming`` names cannot head its file meta, or None."""
    for uid, name in ((incoming.sopClassUID, "SOP Class UID"), (incoming.sopInstanceUID, "SOP Instance UID"),
                      (incoming.transferSyntax, "Transfer Syntax UID")):
        if not isUID(uid):
            return f"{name} {uid!r} is not a UID (1 to 64 digits and dots)"
    return None


@dataclass(frozen=True)
class IncomingObject:
    """What the C-STORE command and association say about an object, and
    the Conquest compression code to store it in (manual 7.7: the ``~xx``
    of the called AE title, else IncomingCompression; DroppedFileCompression
    for added files); "" or "as": as received.  ``converters``: whether
    the import converters and the export converter lines see it (not for
    objects the control commands rewrite, nor for added files unless
    ImportExportDragAndDrop = 1, nor for those a get of the export queue
    brings in, ``pacscore.dicom.ownretrieves``); ``amended``: whether WorkListMode and
    FixPhilips/FixKodak change it (not for rewritten objects); ``relink``:
    whether it may move the study or series that holds only its own SOP
    instance to another patient or study (``ImageRecord.relink``: not for
    copies given new UIDs); ``rewritten``: a stored object a control
    command's script changed, keeping its SOP Instance UID: its image row
    may leave a series that has other images for another of its study
    (``ImageRecord.rewritten``); ``session``: that of the association it came on
    (``pacscore.converters.context``), or None; ``fetchedFrom``: the AE
    title of the archive a virtual server fetched it from (a ``forward``
    to it is not queued, ``pacscore.dicom.ownretrieves``), else ""."""

    sopClassUID: str
    sopInstanceUID: str
    transferSyntax: str
    callingAE: str
    calledAE: str
    compression: str = ""
    converters: bool = True
    amended: bool = True
    relink: bool = True
    rewritten: bool = False
    session: dict | None = field(default=None, compare=False, repr=False)
    fetchedFrom: str = ""


class ObjectStore:
    """Writes objects to a MAG device and indexes them."""

    log = Logger()

    def __init__(self, device, namer, index, indexedTags, workers,
                 implementationClassUID, implementationVersion, spoolThreshold=4 << 20, amenders=(),
                 importers=None, devices=(), fileWrites=None, spaceCheck=None, mirrors=None,
                 lossyQuality=DEFAULT_QUALITY, compressionScripts=None, choice=None):
        self.device = device  # MAG0
        self.choice = choice or DeviceChoice([device], 0)  # which device new objects go to
        self.lossyQuality = lossyQuality  # LossyQuality, for the lossy JPEG codes
        # pacscore.converters.compressing.CompressionScripts (the s0..s9 codes), or None
        self.compressionScripts = compressionScripts
        self.namer = namer
        self.index = index
        # {tag: the VR of a value of unknown VR} (dicom.sql's, or None)
        self.tags = dict.fromkeys(namer.requiredTags | {
            SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID,
            ACCESSION_NUMBER, MODALITY, STATION_NAME}) | indexedTags  # WorkListMode's key, the filters' values
        self.workers = workers
        self.implementationClassUID = implementationClassUID
        self.implementationVersion = implementationVersion
        self.spoolThreshold = spoolThreshold
        # WorkListMode's WorklistAmender, then FixPhilips/FixKodak's PatientIDFixer (when on):
        # each has amend(attrs, data, transferSyntax) -> new data set bytes or None
        self.amenders = amenders
        self.importers = importers  # pacscore.converters.importing.ImportConverters, or None
        self.devicesByName = {d.name: d for d in devices or [device]}
        self.fileWrites = fileWrites or FileWrites()  # which files bypass the page cache
        self.spaceCheck = spaceCheck  # called before each write (MAGDeviceThreshold), or None
        self.mirrors = mirrors  # pacscore.storage.mirror.Mirrors, or None
        self._storing = {}  # SOP Instance UID: Deferred fired when the last store of it begun has ended
        self._converting = {}  # SOP Instance UID: the ident of the worker thread running its import converters
        # SOP Instance UID: [(device name, name)] of its files left unindexed, for regen; listed on their devices
        self.unindexedCopies = UnindexedCopies(self.devicesByName)
        self._unindexed = CopiesBySOP(self.unindexedCopies.load())
        self._unindexedVersion = 0  # of the lists saved (UnindexedCopies.save)
        self._recordings = ()  # the sets recordingWrites gives out, each growing with the files stores write
        self._textWarnings = FirstWarned(TEXT_WARNING_PERIOD)  # of text read as Latin-1, by peer (_warnOfText)

    @property
    def durability(self):
        """How files are made durable: the index's policy, which flushes them."""
        return self.index.durability

    def _header(self, incoming, transferSyntax):
        return encodeFileMeta(incoming.sopClassUID, incoming.sopInstanceUID, transferSyntax,
                              self.implementationClassUID, self.implementationVersion,
                              incoming.callingAE or None)

    def spool(self, incoming, transport=None):
        """A sink for the data set of ``incoming`` as its fragments arrive;
        its ``device`` is the one a large data set is spooled on (none
        for an object ``store`` refuses for its UIDs: its data set is dropped)."""
        if uidProblem(incoming) is not None:
            return DiscardingSink()
        device = self.choice.current
        spool = Spool(device.tempDir, self._header(incoming, incoming.transferSyntax),
                      self.spoolThreshold, self.workers.deferToWorker, transport, openFile=self.fileWrites.open,
                      earlyWrite=None if self._busy() or self._mayChange(incoming) or self._directLater()
                      else functools.partial(
                          EarlyWrite, openTemporary=functools.partial(self._openTemporary, device, None),
                          callInThread=self.workers.callInThread))
        spool.device = device
        return spool

    def _busy(self):
        """Whether another store is under way or the I/O pool has work: then
        a data set is written once whole.  An object that begins to arrive
        while none is (one association sending, each object once the last
        is answered) is written as it arrives (``EarlyWrite``): its write
        has the pool to itself and overlaps its receipt.  With several
        under way, their writes overlap each other's receipts already and
        the extra hand-offs would only cost."""
        return bool(self._storing) or not self.workers.idle

    def _directLater(self):
        """Whether ``DirectWriteSize`` is above ``EARLY_WRITE``: then whether
        an object is written with O_DIRECT is known only once it is whole,
        and it is written then (an early file, opened before its size is
        known, would be written directly whatever its size)."""
        return self.fileWrites.directSize > EARLY_WRITE

    def _mayChange(self, incoming):
        """Whether ``incoming`` may be stored other than as received (by
        WorkListMode, FixPhilips/FixKodak, the import converters or its
        compression code), which ``_amend`` tells once it is whole: then
        its data set is not written as it arrives (``EarlyWrite``)."""
        scripts = self.compressionScripts
        return bool((self.amenders if incoming.amended else ()) or (incoming.converters and self.importers is not None)
                    or scripts and scripts.runs(incoming.compression)
                    or mayChange(None, incoming.transferSyntax, incoming.compression))

    def store(self, incoming, spool):
        """Store a received object. Fires with ``(device name, path relative
        to the device)`` once it is on disk and committed to the index;
        fails with a StoreError subclass or an OSError.  Stores of one SOP
        instance run one after another, each once the last has ended with
        the removal of the copy it replaced: with names that come back
        (``%callingae``), a removal queued by one would otherwise take the
        file the next had just written there.  Only a copy that arrives
        while the import converter of another waits for a ``dicommove``
        (``awaitingObjects``) whose identifier it falls within (its data set
        read in the I/O pool) is not waited for, which would deadlock: it is
        most likely the move's own copy, and is not stored (Destroyed:
        answered Success; the earlier copy is stored unless its converter
        drops it)."""
        problem = uidProblem(incoming)
        if problem is not None:
            spool.discard()
            return defer.fail(DatasetMismatch(problem))
        uid = incoming.sopInstanceUID
        earlier = self._storing.get(uid)
        move = awaitedMove(self._converting.get(uid)) if earlier is not None else None
        ended = self._storing[uid] = defer.Deferred()
        stored = defer.Deferred()

        def write(_):
            defer.maybeDeferred(spool.close).addCallbacks(
                lambda _: self.workers.callInThread(self._writeAndIndex, incoming, spool, stored),
                lambda failure: self._spoolFailed(failure, spool).addErrback(stored.errback))
        if earlier is None:
            write(None)
        elif move is None:
            earlier.addCallback(write)
        else:
            def brought(within):
                if not within:
                    earlier.addCallback(write)
                    return stored.addBoth(self._stored, uid, ended)
                spool.discard()
                earlier.addCallback(self._storeEnded, uid, ended)  # a later copy still waits for the earlier one
                raise Destroyed("a copy of it that arrived earlier is being imported, and its import converter "
                                "waits for a dicommove of what holds this one, most likely this copy's source; "
                                "not waited for (a deadlock), the earlier copy is stored unless its converter "
                                "drops it")
            return self._withinMove(incoming, spool, move).addCallback(brought)
        return stored.addBoth(self._stored, uid, ended)

    def _withinMove(self, incoming, spool, move):
        """Deferred: whether the data set of ``incoming`` (its keys read in
        the I/O pool) falls within the ``MoveScope`` ``move``; False when it
        cannot be read (its store then fails as it would)."""
        read = defer.maybeDeferred(spool.close).addCallback(
            lambda _: self.workers.deferToWorker(self._readSpool, spool, incoming.transferSyntax, set(move.keys)))
        return read.addCallbacks(move.covers, lambda _: False)

    def _spoolFailed(self, failure, spool):
        """A spool whose file could not be written: discarded (its partial
        file would keep a full disk full), and the failure given back as
        DeviceMissing when its device is not there; a full one is left for
        the next device with room (``DeviceChoice.spillFrom``)."""
        spool.discard()
        checked = self.workers.deferToWorker(self._spoolDeviceFailed, spool.device, spool.size, failure.value)
        return checked.addCallback(lambda _: failure)

    def _spoolDeviceFailed(self, device, size, error):
        """In the I/O pool, after the spool on ``device`` failed with
        ``error`` after ``size`` bytes: DeviceMissing or DeviceUnwritable
        raised when the device is the cause, the device choice leaving it
        when it takes no file, or is full."""
        self._checkPresent(device)
        if isDiskFull(error) or isUnwritable(error):
            self.choice.spillFrom(device, size, error)
        if isUnwritable(error):
            raise DeviceUnwritable(device, error) from error

    def storesEnded(self):
        """A Deferred firing once every store begun so far has ended: its
        file written, indexed or refused, and the copy it replaced removed
        (a later store of a SOP instance ends after the earlier ones).
        Cancelling it (a time limit) leaves the stores alone."""
        ended = defer.Deferred()
        defer.DeferredList(list(self._storing.values())).addCallback(
            lambda _: None if ended.called else ended.callback(None))
        return ended

    def _stored(self, result, uid, ended):
        """The outcome of a store of ``uid``: ``ended`` fires once the copy
        it replaced (if any) is removed."""
        removed = defer.succeed(None)
        if not isinstance(result, Failure):
            relative, deviceName, replaced = result
            if replaced is not None and (replaced.deviceName, replaced.objectFile) != (deviceName, relative):
                removed = self.workers.deferToWorker(self.removeReplaced, replaced).addErrback(
                    lambda f: self.log.failure("could not remove replaced file {path}", f,
                                               path=replaced.objectFile))
            removed.addCallback(lambda _: self._replaceUnindexed(uid, (deviceName, relative), False))
            result = deviceName, relative
        removed.addCallback(self._storeEnded, uid, ended)
        return result

    def _storeEnded(self, _, uid, ended):
        if self._storing.get(uid) is ended:
            del self._storing[uid]
        ended.callback(None)

    def _writeAndIndex(self, incoming, spool, stored):
        """In the I/O pool: write the file, then queue its index row.
        ``stored`` fires (in the reactor) with ``(relative, device name, replaced)``."""
        try:
            record, device, overwrote, notes = self._writeFile(incoming, spool)
        except BaseException:
            self.workers.reactor.callFromThread(stored.errback, Failure())
            return
        relative = record.objectFile

        def indexed(ok, value):
            if ok:
                self._warnOfText(incoming, notes)  # of an object stored and indexed only
                stored.callback((relative, device.name, value))
                return
            for written in self._recordings:  # only a copy acknowledged makes the others older (regen's STALE)
                written.discard((device.name, relative))
            if value.check(NotReentered) and overwrote:  # the copy it overwrote is gone: it stays, for the regen
                stored.errback(Rebuilding(value.getErrorMessage()))
                return
            if value.check(InconsistentLink, NotReentered) and not overwrote:
                refused = (Rebuilding if value.check(NotReentered) else Refused)(value.getErrorMessage())
                self.workers.deferToWorker(os.unlink, device.absolute(relative)).addErrback(
                    lambda f: self.log.failure("could not remove refused file {path}", f, path=relative)
                ).addCallback(lambda _: stored.errback(refused))
                return
            if value.check(FlushError):
                self.log.error("{path} was written and indexed but not made durable ({error}); "
                               "not acknowledged", path=relative, error=value.getErrorMessage())
                stored.errback(value)
                return
            self.log.error("{path} is on disk but could not be indexed ({error}); regen will pick it up",
                           path=relative, error=value.getErrorMessage())
            if overwrote:  # its name is that of an indexed copy
                stored.errback(value)
            else:
                self._replaceUnindexed(incoming.sopInstanceUID, (device.name, relative), True).addCallback(
                    lambda _: stored.errback(value))

        self.index.storeFromThread(record, indexed)

    def _replaceUnindexed(self, uid, current, unindexed):
        """Remove the files earlier stores of ``uid`` left unindexed (their
        index failed, the files kept for regen) but ``current``, ``(device
        name, name)`` of the file just stored, which takes their place when
        ``unindexed`` too: a sender resending an object the index failed on
        leaves one copy of it, not one per attempt.  When ``unindexed``, a
        file stays if an image row names it (indexed since: regen,
        --addimagefile, or a commit reported failed that went through); when
        the index cannot say (the database down), they all stay, still
        known, for a later store of ``uid`` to remove.  What is known is
        saved on the devices (``_saveUnindexed``) before the Deferred fires."""
        known = self._unindexed.get(uid, [])
        earlier = [copy for copy in known if copy != current]
        if unindexed:
            self._unindexed[uid] = [current]  # whole (CopiesBySOP): a regen asks isListed from its thread
        else:
            self._unindexed.pop(uid, None)
        changed = {deviceName for deviceName, _ in known + ([current] if unindexed else [])}
        if not earlier:
            return self._saveUnindexed(changed)

        def remove(indexed):
            return defer.gatherResults([self._removeUnindexed(uid, copy, indexed, current) for copy in earlier])

        def keep(failure):
            self._unindexed[uid] = self._unindexed.get(uid, []) + earlier
            if not failure.check(*DATABASE_FAILURES):
                self.log.failure("kept {count} earlier file(s) of {uid}: the index could not be asked about them",
                                 failure, count=len(earlier), uid=uid)
                return
            self.log.warn("kept {count} earlier file(s) of {uid} the index failed on: the index database cannot say "
                          "whether they are indexed since ({error}); a later store of it removes them",
                          count=len(earlier), uid=uid, error=databaseMessage(failure.value))
        indexed = self.index.runQuery(self.index.indexedFiles, [uid]) if unindexed else defer.succeed({})
        return indexed.addCallbacks(remove, keep).addCallback(lambda _: self._saveUnindexed(changed))

    def _saveUnindexed(self, deviceNames):
        """Have the ``.pacs-unindexed`` file of each of ``deviceNames`` list
        the files of it ``_unindexed`` holds (``UnindexedCopies.save``, in the
        I/O pool), so that a restart does not forget them; a file that
        cannot be written is logged.  A Deferred."""
        if not deviceNames:
            return defer.succeed(None)
        self._unindexedVersion += 1
        return defer.gatherResults([
            self.workers.deferToWorker(self._saveList, deviceName, self._unindexedOn(deviceName),
                                       self._unindexedVersion) for deviceName in sorted(deviceNames)])

    def _saveList(self, deviceName, copies, version):
        """``UnindexedCopies.save`` (blocking), a file that cannot be written logged."""
        try:
            self.unindexedCopies.save(deviceName, copies, version)
        except Exception as e:  # OSError, or a name the file cannot hold: never the store's failure
            self.log.error("could not list the files the index failed on in {device}'s {journal} ({error}): a "
                           "restart forgets them, they stay until a regen", device=deviceName, journal=JOURNAL,
                           error=e)

    def isListed(self, location):
        """Whether ``location``, ``(device name, name)``, is a file a store
        left after the index failed on it (``_unindexed``), now; from any
        thread (a regen's batch, in the index writer's): one look-up
        (``CopiesBySOP.listed``)."""
        return self._unindexed.listed(location)

    def _unindexedOn(self, deviceName):
        """``[(SOP Instance UID, name)]`` of the files of ``deviceName`` in ``_unindexed``, sorted."""
        return sorted((uid, name) for uid, files in self._unindexed.items()
                      for device, name in files if device == deviceName)

    def settleUnindexed(self, fileError):
        """At start-up, before serving (the index tables there): check the
        files the index failed on before the restart (``.pacs-unindexed``)
        against the index.  Of a SOP instance whose image row names an
        intact file (``fileError`` None), the one listed that the row names
        (under another device's name too: ``_isFile``) is indexed since (no
        longer listed), the others are removed: their
        senders were told they failed, and a regen would index the newest
        in place of the indexed copy.  Those of a SOP instance no row names,
        or whose indexed file is not intact, stay, for a later store of it
        or a regen.  A list a stop left half written is settled first
        (``UnindexedCopies.settleParts``)."""
        changed = set(self.unindexedCopies.settleParts())
        indexed = {}
        if self._unindexed:
            with self.index.engine.connect() as connection:
                indexed = self.index.indexedFiles(connection, sorted(self._unindexed))
        for uid, files in sorted(self._unindexed.items()):
            current = tuple(indexed[uid]) if uid in indexed else None
            if current is None or fileError(*current) is not None:
                continue
            changed.update(deviceName for deviceName, _ in files)
            kept = [copy for copy in files
                    if not self._isFile(copy, current) and not self._removeSettled(uid, copy, current)]
            if kept:
                self._unindexed[uid] = kept
            else:
                del self._unindexed[uid]
        self._unindexedVersion += 1
        for deviceName in sorted(changed):
            self._saveList(deviceName, self._unindexedOn(deviceName), self._unindexedVersion)

    def _removeSettled(self, uid, copy, current):
        """``settleUnindexed``: remove ``copy``, a file of ``uid`` the index
        failed on, ``current`` the indexed one; whether it is gone."""
        path = self.devicesByName[copy[0]].absolute(copy[1])
        try:
            removeFile(path)
        except OSError as e:
            self.log.warn("{path}, a copy of {uid} the index failed on before the restart, stays: {error}",
                          path=path, uid=uid, error=e)
            return False
        self.log.info("removed {path}: a copy of {uid} the index failed on before the restart (its sender was "
                      "told so); {device}:{name} is the one indexed", path=path, uid=uid, device=current[0],
                      name=current[1])
        return True

    def _removeUnindexed(self, uid, copy, indexed, current):
        """Remove ``copy``, ``(device name, name)`` of a file a store of
        ``uid`` left unindexed, unless ``indexed`` (``Index.indexedFiles``)
        names it or it is ``current``, the file just stored and indexed
        (under another device's name).  A Deferred."""
        path = self.devicesByName[copy[0]].absolute(copy[1])

        def remove():
            if self._isFile(copy, current) or self._isFile(copy, indexed.get(uid)):
                return False
            removeFile(path)
            return True

        def removed(gone):
            if gone:
                self.log.info("removed {path}: a copy of {uid} the index failed on, stored again since", path=path,
                              uid=uid)
            else:
                self.log.info("kept {path}: a copy of {uid} the index failed on, indexed since", path=path, uid=uid)
        return self.workers.deferToWorker(remove).addCallbacks(
            removed, lambda f: self.log.failure("could not remove {path}", f, path=path))

    def _isFile(self, copy, location):
        """Whether ``copy``, ``(device name, name)``, is the file
        ``location`` (the same, ``Replaced``, or None) names: the same name,
        or one of two devices whose folders meet (a link) naming one file
        (blocking: in the I/O pool, or at start-up)."""
        if location is None:
            return False
        location = tuple(location)
        device = self.devicesByName.get(location[0])
        return copy == location or device is not None and os.path.realpath(
            self.devicesByName[copy[0]].absolute(copy[1])) == os.path.realpath(device.absolute(location[1]))

    def _writeFile(self, incoming, spool):
        """In the I/O pool: check, amend, name and write one object; its
        ``ImageRecord`` (with the actions its import converter lines
        queued), its device, whether its name was taken (by a copy of
        the same SOP instance it replaced, or it got a numbered one), and
        the ``TextNotes`` of the values it is indexed with, to be logged
        once it is indexed (``_warnOfText``).  An
        object whose name is taken is refused before it is placed if the
        index would refuse it (``Index.checkLinks``: the copy it would
        replace stays); one that took a free name has its file removed when
        the index refuses it.  On any failure the temporary file (spool or
        reservoir file) is removed."""
        data = spool.inMemory
        header = spool.header
        temporary = spool.path
        early = spool.takeEarlyWrite()  # its file holds the data set as received, written as it arrived
        chosen = self.choice.check(spool.size)  # looked at for spooled objects too: they may be all that arrives
        device = spool.device if temporary is not None else chosen
        try:
            notes = TextNotes()
            attrs = self._readAttributes(incoming, spool, notes)
            if self.spaceCheck is not None:
                self.spaceCheck(attrs.get(PATIENT_ID), device)
            self._check(incoming, attrs)
            actions = []
            changed = self._amend(incoming, attrs, spool, actions, device, notes)
            transferSyntax = incoming.transferSyntax
            if changed is not None:
                data, attrs, header, device, converted, transferSyntax = changed
                if temporary is not None:
                    os.unlink(temporary)
                temporary = converted
            if early is not None and (changed is not None or device is not spool.device):
                early.abandon()  # removed before another copy takes room on the device
                early = None
            self._checkKeys(attrs)
            dataset = self._parsed(header, data, temporary) if self.namer.needsDataset else None
            relative = self.index.heldFileName(
                self.namer.name(attrs, incoming.callingAE, incoming.calledAE, transferSyntax, dataset))
            written = None
            if early is not None:
                early, written = None, early.finish(self._complete)  # None: a write failed
            if written is not None:
                temporary = written
            elif data is not None:
                try:
                    temporary = self._writeTemporary(device, header, data)
                except (OSError, DeviceUnwritable) as e:
                    spilled = None
                    if device is chosen and (isDiskFull(e) or isinstance(e, DeviceUnwritable)):
                        spilled = self.choice.spillFrom(device, len(header) + len(data), e)
                    if spilled is None:
                        raise
                    self.log.warn("{device}: {error}: {uid} is written to {other}", device=device.name, error=e,
                                  uid=incoming.sopInstanceUID, other=spilled.name)
                    device = spilled
                    temporary = self._writeTemporary(device, header, data)
            else:
                fd = os.open(temporary, os.O_RDONLY)
                try:
                    self.durability.fileWritten(fd)
                finally:
                    os.close(fd)
            self._checkPresent(device)
            overwrote = os.path.lexists(device.absolute(relative))
            if overwrote:
                self._checkLinks(ImageRecord(attrs, device.name, relative, relink=incoming.relink,
                                              rewritten=incoming.rewritten))
            relative = self._place(temporary, device, relative, attrs[SOP_INSTANCE_UID])
            for written in self._recordings:
                written.add((device.name, relative))
        except BaseException:
            if temporary is not None and os.path.exists(temporary):
                os.unlink(temporary)
            raise
        finally:
            if early is not None:  # not used: the object was refused
                early.drop()
        record = ImageRecord(attrs, device.name, relative, incoming.callingAE, incoming.calledAE, incoming.converters,
                             tuple(actions), incoming.relink, incoming.fetchedFrom, incoming.rewritten)
        return record, device, overwrote, notes

    @staticmethod
    def _refill(device):
        """In the I/O pool: ``MagDevice.refillTemporaryFiles``; a device that
        takes no file (full, read-only) is reported by the object that next
        takes one, not in a traceback of its own."""
        try:
            device.refillTemporaryFiles()
        except OSError:
            pass

    def _writeTemporary(self, device, header, data):
        """In the I/O pool: ``header`` and ``data`` written in a temporary
        file of ``device`` (``_openTemporary``), its path; the file is
        removed when writing it fails, DeviceUnwritable raised when that is
        because the device cannot be written."""
        temporary = None
        try:
            temporary, out = self._openTemporary(device, len(header) + len(data))
            with closing(out):
                out.write([header, data])
                self._complete(out)
        except OSError as e:
            if temporary is not None:
                removeFile(temporary)
            if isUnwritable(e):
                raise DeviceUnwritable(device, e) from e
            raise
        return temporary

    def _complete(self, out):
        """In the I/O pool: the ``ObjectFile`` ``out``, all written, finished
        and made durable (the durability's ``fileWritten``)."""
        out.finish()
        self.durability.fileWritten(out.fd)

    def _takeTemporary(self, device):
        """In the I/O pool: the path of a temporary file of ``device``
        (``MagDevice.takeTemporaryFile``), its stock refilled in another
        thread when it runs low."""
        temporary, low = device.takeTemporaryFile()
        if low:
            self.workers.callInThread(self._refill, device)
        return temporary

    def _openTemporary(self, device, size):
        """In the I/O pool: a temporary file of ``device`` and an
        ``ObjectFile`` writing it.  One found gone (the device folder was
        replaced by an empty one) is tried again once, after
        ``MagDevice.recover``; a device whose folder is not there is
        refused (DeviceMissing)."""
        for attempt in (0, 1):
            temporary = self._takeTemporary(device)
            try:
                return temporary, self.fileWrites.open(temporary, size)
            except FileNotFoundError:
                if attempt:
                    raise
            self._checkPresent(device)
            device.recover()

    @staticmethod
    def _checkPresent(device):
        """DeviceMissing when ``device`` is not there, or its disk is
        unmounted (``checkPresent``: a file written on the disk beneath
        would be hidden once the disk is mounted again)."""
        try:
            checkPresent(device)
        except FileNotFoundError as e:
            raise DeviceMissing(f"{e.strerror}: {e.filename}") from e

    def _place(self, temporary, device, relative, sopInstanceUID):
        """Give the written file ``temporary`` its name on ``device``
        (``placeFile``: ``relative``, or a numbered one when that holds
        another SOP instance).  The name given."""
        name = placeFile(temporary, device, relative, sopInstanceUID, self.durability.makeFolders,
                         self.durability.folderChanged)
        if name is None:
            raise StoreError(f"{relative} and its {MAX_NAME_SUFFIX} numbered variants hold other SOP instances")
        if name != relative:
            self.log.warn("{path} holds another SOP instance: {uid} stored as {name}",
                          path=relative, uid=sopInstanceUID, name=name)
        return name

    @staticmethod
    def _parsed(header, data, temporary):
        """The object without its pixel data as a pydicom Dataset, for a
        FileNameSyntax whose %V reads into sequences: ``header + data`` in
        memory, else the Part-10 file ``temporary``."""
        try:
            return dcmread(BytesIO(header + data) if data is not None else temporary,
                           stop_before_pixels=True, force=True)
        except Exception as e:  # pydicom raises what its parsers meet
            raise InvalidDataset(f"cannot be parsed for FileNameSyntax: {e}") from e

    def _readAttributes(self, incoming, spool, notes):
        """The index attributes of a received data set, which must read to its
        end (the start-up check, ``ObjectReader.fileError``, would take a
        truncated file for one a crash damaged) and be encoded in the
        transfer syntax of its presentation context (its file is labelled
        with that syntax).  Text not valid in its character set is indexed
        as read in Latin-1, with a log line; so is the text of a Specific
        Character Set pydicom does not know, and text beyond ASCII in an
        object without one.  Values indexed that are not valid in their VR
        (IS '1-3', TM '240000') are indexed as they are.  What is read so is
        noted in ``notes``, logged once the object is indexed."""
        try:
            attrs = self._readSpool(spool, incoming.transferSyntax, self.tags, wholeDataset=True, strict=True,
                                    notes=notes)
        except DatasetError as e:
            raise InvalidDataset(str(e)) from e
        return attrs

    def _warnOfText(self, incoming, notes):
        """Log what the ``TextNotes`` of ``incoming`` say was read as
        Latin-1 or is not valid in its VR: each kind a warning once an hour
        per peer, else a debug line (``FirstWarned``)."""
        where = dict(uid=incoming.sopInstanceUID, peer=incoming.callingAE)
        if notes.unknownTerms:
            self._textWarnings.report(self.log, (incoming.callingAE, "unknown"), "{uid} from {peer}: Specific "
                                      "Character Set {terms} unknown, its text indexed as read in Latin-1",
                                      _FURTHER_FROM_PEER, terms=", ".join(notes.unknownTerms), **where)
        if notes.invalid:
            more = len(notes.invalid) - INVALID_NAMED
            self._textWarnings.report(self.log, (incoming.callingAE, "invalid"), "{uid} from {peer}: values not "
                                      "valid in their VR, indexed as they are: {values}{more}", _FURTHER_FROM_PEER,
                                      values="; ".join(notes.invalid[:INVALID_NAMED]),
                                      more=f" and {more} more" if more > 0 else "", **where)
        for tags, what in ((notes.unfit, "text not valid in its Specific Character Set"),
                           (notes.undeclared, "text beyond ASCII without a Specific Character Set")):
            if tags:
                self._textWarnings.report(self.log, (incoming.callingAE, what), "{uid} from {peer}: {what}, indexed "
                                          "as read in Latin-1: {elements}", _FURTHER_FROM_PEER, what=what,
                                          elements=", ".join(f"({tag >> 16:04x},{tag & 0xFFFF:04x})" for tag in tags),
                                          **where)

    @staticmethod
    def _readSpool(spool, transferSyntax, tags, **options):
        """In the I/O pool: ``readAttributes`` of the data set ``spool``
        holds, in memory or in its file past the header."""
        return _fromSpool(spool, readAttributes, transferSyntax, tags, **options)

    def _notDatasetElements(self, incoming, spool):
        """In the I/O pool: how many bytes of group 0000 and 0002 elements
        the received data set (walked in order already) begins with, logged
        when there are some: they are left out of the stored file, as
        Orthanc leaves them out (DCMTK's "Invalid Element (0002,0010) found
        in data set"; readers would take a (0002,0010) there for the file's
        transfer syntax).  InvalidDataset in a deflated data set."""
        size = _fromSpool(spool, walkDataset, incoming.transferSyntax, (), 0, LAST_NOT_DATASET_TAG)[1]
        if size:
            if incoming.transferSyntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                raise InvalidDataset("the deflated data set begins with group 0000 or 0002 elements, "
                                     "which belong to the command and the file meta (PS3.5 7.1)")
            self.log.warn("{uid} from {peer}: the group 0000 and 0002 elements its data set begins with "
                          "({size} bytes) are left out of the stored file: they belong to the command and the "
                          "file meta (PS3.5 7.1)", uid=incoming.sopInstanceUID, peer=incoming.callingAE, size=size)
        return size

    def _amend(self, incoming, attrs, spool, actions, device, notes):
        """WorkListMode, FixPhilips/FixKodak, the import converters, then the compression asked
        for (a converter's ``compression`` command, else the incoming
        object's; s0..s9 run their CompressionConverterN line): None when
        the object is stored as received, else
        ``(data, attrs, header, device, None, transfer syntax)``, or
        ``(None, attrs, header, device, path, transfer syntax)`` for one
        converted file to file into the temporary file ``path``; ``device``
        the one it goes to unless an import converter names another; the
        actions the import
        converters queued are added to ``actions``; group 0000 and 0002
        elements the data set begins with are left out
        (``_notDatasetElements``); one of odd length has its odd values
        padded (``_evened``); ``notes`` (``_readAttributes``) become those of
        an amended data set, whose values are the ones indexed.  Raises
        Refused or Destroyed when a rule says so."""
        importers = self.importers if incoming.converters else None
        amenders = self.amenders if incoming.amended else ()
        scripts = self.compressionScripts
        notDataset = self._notDatasetElements(incoming, spool)
        sizeChecked = False  # _tooLargeToConvert asked already of the data set as received
        if not (notDataset or amenders or importers is not None or scripts and scripts.runs(incoming.compression)):
            changes = mayChange(spool.inMemory, incoming.transferSyntax, incoming.compression)
            if spool.inMemory is None:
                if changes:
                    converted = self._convertSpooled(incoming, spool, device)
                    if converted is not None:
                        return converted
                    with open(spool.path, "rb") as f:
                        f.seek(len(spool.header))
                        changes = not self._tooLargeToConvert(incoming, f, spool.size, incoming.transferSyntax,
                                                              incoming.compression)
                    sizeChecked = True
                if not changes:
                    return self._evenedFile(incoming, (None, attrs, spool.header, device, spool.path,
                                                       incoming.transferSyntax), spool.size, False)
            elif not changes:
                return self._evenedInMemory(incoming, attrs, spool, device)
        data = spool.inMemory
        if data is None:
            with open(spool.path, "rb") as f:
                f.seek(len(spool.header))
                data = f.read()
        data, original = bytes(data[notDataset:]), data
        transferSyntax, chosen, compression = incoming.transferSyntax, device, incoming.compression
        try:
            if amenders or importers is not None:
                data = withPlainPixels(data, transferSyntax)
            for amender in amenders:
                data = amender.amend(attrs, data, transferSyntax) or data
            if importers is not None:
                self._converting[incoming.sopInstanceUID] = threading.get_ident()  # one store of a UID at a time
                try:
                    with standInIfSlow():  # a slow line must not hold the threads other stores need
                        decision = importers.apply(incoming, attrs, data, transferSyntax)
                finally:
                    del self._converting[incoming.sopInstanceUID]
                if decision is not None:
                    actions.extend(decision.actions)
                    if decision.data is not None:  # in the syntax a 'process with' program left it in
                        data, transferSyntax = decision.data, decision.transferSyntax
                    compression = decision.compression or compression
                    if decision.device is not None and decision.device not in self.devicesByName:
                        self.log.warn("{uid}: the import converters' 'storage {device}' names no MAG device of "
                                      "this archive: stored on {default}", uid=incoming.sopInstanceUID,
                                      device=decision.device, default=device.name)
                    device = self.devicesByName.get(decision.device, device)
            if scripts is not None:
                data = scripts.applyToIncoming(incoming, data, transferSyntax, compression)
        except WorklistRefusal as e:
            raise Refused(str(e)) from e
        except (IdentifierError, NKIError) as e:
            raise InvalidDataset(str(e)) from e
        data, transferSyntax = self._compress(incoming, data, transferSyntax, compression, sizeChecked)
        if isOdd(len(data)):
            data = self._evened(incoming, data, transferSyntax)
        if data == original and transferSyntax == incoming.transferSyntax and device is chosen:
            return None
        notes.clear()
        try:
            attrs = readAttributes(data, transferSyntax, self.tags, wholeDataset=True, notes=notes)
        except DatasetError as e:
            raise InvalidDataset(f"the amended data set: {e}") from e
        if not attrs.get(SOP_INSTANCE_UID) or not attrs.get(SOP_CLASS_UID):
            raise DatasetMismatch("the amended data set has no SOP Class or Instance UID")
        amended = dataclasses.replace(incoming, sopClassUID=attrs[SOP_CLASS_UID],
                                      sopInstanceUID=attrs[SOP_INSTANCE_UID], transferSyntax=transferSyntax)
        return data, attrs, self._header(amended, transferSyntax), device, None, transferSyntax

    def _convertSpooled(self, incoming, spool, device):
        """The spooled object in the one little endian syntax its
        compression code asks for, converted file to file into a temporary
        file of the device (then its odd values padded, ``_evenedFile``):
        ``(None, attrs, header, device, path, transfer syntax)``; None
        when that cannot be done so (then it is converted in memory)."""
        syntax = incoming.transferSyntax
        targets = recodedSyntaxes(syntax, incoming.compression)
        if len(targets) != 1 or not streams(syntax, targets[0]):
            return None
        target = targets[0]
        header = self._header(dataclasses.replace(incoming, transferSyntax=target), target)
        temporary = self._takeTemporary(device)
        try:
            with open(spool.path, "rb") as source, open(temporary, "wb") as out:
                start = len(spool.header)
                source.seek(start)
                if NKI_PIXEL_DATA in readAttributes(source, syntax, {NKI_PIXEL_DATA}):
                    raise NotStreamed("NKI pixel data")
                out.write(header)
                length = transcodeFile(source, start, os.fstat(source.fileno()).st_size - start, syntax, target, out)
            with open(temporary, "rb") as written:
                written.seek(len(header))
                attrs = readAttributes(written, target, self.tags, wholeDataset=True)
        except (NotStreamed, TranscodeError, DatasetError) as e:
            os.unlink(temporary)
            if not isinstance(e, NotStreamed):
                self.log.warn("{uid}: compression {code} not applied file to file, trying in memory: {error}",
                              uid=incoming.sopInstanceUID, code=incoming.compression, error=e)
            return None
        except BaseException:
            os.unlink(temporary)
            raise
        converted = None, attrs, header, device, temporary, target
        return self._evenedFile(incoming, converted, length, True) or converted

    def _compress(self, incoming, data, transferSyntax, compression, sizeChecked=False):
        """``(data, transferSyntax)`` as the Conquest code ``compression``
        asks for (``pacscore.codecs.compression``); unchanged when it asks
        for nothing the codecs here can do, when they fail on this
        object, or when it is too large to (``_tooLargeToConvert``, unless
        ``sizeChecked`` says it was asked of this data set already; logged)."""
        if not sizeChecked and mayChange(data, transferSyntax, compression) and self._tooLargeToConvert(
                incoming, data, len(data), transferSyntax, compression):
            return data, transferSyntax
        try:
            return recode(data, transferSyntax, compression, self.lossyQuality)
        except TranscodeError as e:
            self.log.warn("{uid}: compression {code} not applied, stored as received: {error}",
                          uid=incoming.sopInstanceUID, code=compression, error=e)
            return data, transferSyntax

    def _evened(self, incoming, data, transferSyntax):
        """``data`` (of odd length) with its odd values padded to an even
        length (``evenLengths``), with a log line: sent as it is, DCMTK
        would refuse its last PDV."""
        try:
            data, padded = evenLengths(data, transferSyntax)
        except DatasetError as e:
            self._keptOdd(incoming, e)
            return data
        self._logPadded(incoming, padded)
        return data

    def _evenedInMemory(self, incoming, attrs, spool, device):
        """``(data, attrs, header, device, None, transfer syntax)`` of the
        in-memory object of ``spool`` with its odd values padded
        (``_evened``); None when nothing was.  ``attrs`` read from the spool
        stay those of the padded one: ``readAttributes`` strips the padding."""
        data = spool.inMemory
        if not isOdd(spool.size):
            return None
        evened = self._evened(incoming, data, incoming.transferSyntax)
        if evened is data:
            return None
        return evened, attrs, spool.header, device, None, incoming.transferSyntax

    def _evenedFile(self, incoming, written, length, replaced):
        """In the I/O pool: ``written``, ``(None, attrs, header, device,
        path, transfer syntax)`` of an object file ``path`` (``header``,
        then its data set of ``length`` bytes), with a new temporary file of ``device`` in
        place of ``path`` when its data set is of odd length: its odd
        values padded file to file, a piece at a time (``evenFile``,
        logged); None when nothing was padded.  ``replaced``: ``path`` is
        a temporary file of its own, removed once it is replaced or this
        fails."""
        _, attrs, header, device, path, transferSyntax = written
        if not isOdd(length):
            return None
        temporary = self._takeTemporary(device)
        try:
            with open(path, "rb") as source, open(temporary, "wb") as out:
                out.write(header)
                padded = evenFile(source, len(header), length, transferSyntax, out)
        except DatasetError as e:
            os.unlink(temporary)
            self._keptOdd(incoming, e)
            return None
        except BaseException:
            for gone in (temporary, path) if replaced else (temporary,):
                os.unlink(gone)
            raise
        if not padded:
            os.unlink(temporary)
            return None
        self._logPadded(incoming, padded)
        if replaced:
            os.unlink(path)
        return None, attrs, header, device, temporary, transferSyntax

    def _keptOdd(self, incoming, error):
        """Log that the odd values of ``incoming`` cannot be padded (its data
        set cannot be walked: ``error``): it is stored as received, as it
        was before pacs padded them."""
        self.log.warn("{uid} from {peer}: its values of odd length cannot be padded, stored as received (a DCMTK "
                      "peer may refuse it): {error}", uid=incoming.sopInstanceUID, peer=incoming.callingAE, error=error)

    def _logPadded(self, incoming, padded):
        if padded:
            self.log.warn("{uid} from {peer}: values of odd length padded to an even length (PS3.5 7.1.1): "
                          "{padded}", uid=incoming.sopInstanceUID, peer=incoming.callingAE,
                          padded=", ".join(padded))

    def _tooLargeToConvert(self, incoming, source, length, transferSyntax, compression):
        """Whether the data set of ``incoming`` (``source``: its bytes, or a
        file at its start; ``length`` bytes in ``transferSyntax``) is too
        large to compress in memory as ``compression`` asks (into JPEG,
        JPEG-LS, JPEG 2000 or RLE): it, or the pixels it decodes to, larger
        than LARGEST_CONVERTED_ON_ARRIVAL (then it is stored as received,
        with a line saying so); not when it cannot be walked (its
        conversion says what is wrong)."""
        if not any(isCompressed(target) for target in recodedSyntaxes(transferSyntax, compression)):
            return False
        try:
            size = decodedExtent(source, length, transferSyntax)[0]
        except DatasetError:
            return False
        if size <= LARGEST_CONVERTED_ON_ARRIVAL:
            return False
        self.log.info("{uid}: compression {code} not applied, stored as received: its data set or pixels take "
                      "{size} bytes, more than the {largest} converted in memory on arrival",
                      uid=incoming.sopInstanceUID, code=compression, size=size, largest=LARGEST_CONVERTED_ON_ARRIVAL)
        return True

    def _check(self, incoming, attrs):
        sopClass = attrs.get(SOP_CLASS_UID)
        sopInstance = attrs.get(SOP_INSTANCE_UID)
        if sopClass != incoming.sopClassUID:
            raise DatasetMismatch(f"SOP Class UID {sopClass!r} in the data set, "
                                  f"{incoming.sopClassUID!r} in the command")
        if sopInstance != incoming.sopInstanceUID:
            raise DatasetMismatch(f"SOP Instance UID {sopInstance!r} in the data set, "
                                  f"{incoming.sopInstanceUID!r} in the command")
        for tag, name in ((STUDY_INSTANCE_UID, "Study Instance UID"),
                          (SERIES_INSTANCE_UID, "Series Instance UID")):
            if not attrs.get(tag):
                raise DatasetMismatch(f"no {name} in the data set")

    def _checkKeys(self, attrs):
        """DatasetMismatch unless the (amended) object can key its index rows."""
        try:
            self.index.checkKeys(attrs)
        except ValueError as e:
            raise DatasetMismatch(f"not indexable: {e}") from e

    def _checkLinks(self, record):
        """Refused if the index would refuse ``record`` (``InconsistentLink``),
        Rebuilding if a regen has not entered its rows yet."""
        try:
            self.index.checkLinks(record)
        except InconsistentLink as e:
            raise Refused(str(e)) from e
        except NotReentered as e:
            raise Rebuilding(str(e)) from e

    @contextmanager
    def recordingWrites(self):
        """While in it (a regen runs): a set of the ``(device name, name)``
        of every file a store has written since it was entered, which grows
        as stores go on (from the workers' threads) and is dropped after;
        the file of a store refused (its index write failed) leaves it."""
        written = set()
        self._recordings += (written,)
        try:
            yield written
        finally:
            self._recordings = tuple(recording for recording in self._recordings if recording is not written)

    def removeReplaced(self, replaced):
        """In the I/O pool: remove the file ``replaced`` (``Replaced``) names,
        a copy a new one of its SOP instance replaced, and its mirror copy
        (also for a regen: the older copy a store made no row replace)."""
        device = self.devicesByName.get(replaced.deviceName)  # a copy moved to MAG1 goes too
        path = device.absolute(replaced.objectFile) if device is not None else None
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # gone already: a delete of the earlier copy ran meanwhile
            else:
                self.log.info("removed {path}: replaced by a new copy of the same SOP instance", path=path)
        if self.mirrors is not None:
            self.mirrors.remove(replaced.deviceName, replaced.objectFile)


def _fromSpool(spool, read, *args, **options):
    """In the I/O pool: ``read(data set, *args, **options)`` of the data set
    ``spool`` holds, in memory or in its file past the header."""
    if spool.inMemory is not None:
        return read(spool.inMemory, *args, **options)
    with open(spool.path, "rb") as f:
        f.seek(len(spool.header))
        return read(f, *args, **options)
