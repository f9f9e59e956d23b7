"""The control commands that take DICOM and HL7 files in and out (manual
appendix 6, "Communication options"): ``addimagefile``, ``loadhl7``,
``dump_header``, ``forward``, ``prefetch``, and Conquest's later
``loadanddeletedir`` (``addimagefile`` of a folder deleting each file it
took in, if it is still the file read: one modified in the last
``SETTLING_NS``, or changed while it was taken in, may still be written, and
is left for a later run).

``addimagefile`` stores a file through the archive's ``ObjectStore``
(a file of HL7 messages, no DICOM object, is applied as ``loadhl7``
applies it, as Conquest's addimagefile, its drag and drop, does)
as a C-STORE is stored (WorkListMode, file naming, index; the import and
export converters only with ImportExportDragAndDrop = 1, as in Conquest);
with a new patient ID the copy gets new Study, Series and SOP Instance UIDs
too (Conquest's ModifyPATIDofDDO), made for that patient, so the original
stays as it is and a copy for another patient is another object;
``loadhl7`` applies a file of HL7 messages through the
worklist intake as the MLLP listener does, up to one the database failed
(the command fails, to be run again later); ``forward`` sends a stored file
as the export queue forwards it; ``prefetch`` reads a patient's files once
(``LocalActions.prefetch``).  Files are read and written in the I/O pool;
an unchanged object is copied from its file into the spool a chunk at a
time, never held whole in memory;
only regular files are read (a FIFO or a device would block it), and an
HL7 file of at most ``HL7_FILE_LIMIT`` bytes (pacscore.hl7.dropfolder).
"""

import dataclasses
import functools
import os
import time
from contextlib import contextmanager

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import MediaStorageDirectoryStorage
from twisted.logger import Logger

from pacscore.codecs.nki import NKIError
from pacscore.codecs.nkipixels import withPlainPixels
from pacscore.control.arguments import AsyncControlCommand, fields, fileFields
from pacscore.control.changes import ScriptRefused, newPatient
from pacscore.control.context import CommandError, NotDICOM
from pacscore.control.folderimport import CONCURRENCY, DICOMDIR_SKIPPED, LeftForLater, importFolder, isHL7File
from pacscore.control.moves import forwarderFor
from pacscore.control.output import deliver, inputPath
from pacscore.control.stored import exactValue, fileInstances, objectFile, storedFile, storedName
from pacscore.dicom.datasets import IdentifierError, decodeDataset, encodeDataset
from pacscore.dicom.textbytes import decodeValues
from pacscore.dicom.uids import isUID
from pacscore.export.forwarder import ForwardError, Undelivered
from pacscore.export.queue import Action, Target
from pacscore.hl7.dropfolder import outcomeLines, readMessages
from pacscore.hl7.intake import applyMessages
from pacscore.storage.attributes import DatasetError, readAttributes
from pacscore.storage.devices import fileIdentity, removeIfSame
from pacscore.storage.part10 import MEDIA_STORAGE_SOP_CLASS_UID, readFileMeta
from pacscore.storage.regularfiles import openRegularFile
from pacscore.storage.spool import spooledFrom
from pacscore.storage.store import SOP_CLASS_UID, SOP_INSTANCE_UID, IncomingObject, Refused, StoreError

ZIP_MAGIC = b"PK\x03\x04"
COPIED_ONCE = " (the UID map gave it the UIDs of an earlier copy of the same original, which stays)"
SETTLING_NS = 5_000_000_000  # loadanddeletedir leaves a file modified less long ago: it may still be written
CHANGED_WHILE_TAKEN = ("it changed while it was taken in (still being written?): kept for the next run, which takes "
                       "it in again (what was read of it is in already)")


def readHL7(path):
    """In the I/O pool: the raw messages of a regular HL7 file."""
    with openRegularFile(path) as f:
        return readMessages(f)


class ZipArchive(DatasetError):
    """A zip file given as a DICOM object."""


class DirectoryFile(DatasetError):
    """A DICOMDIR (Media Storage Directory Storage) given as an object,
    whatever its name (``DICOMDIR;1`` on a CD mounted with map=off)."""


class InvalidObject(DatasetError):
    """A DICOM object (a file with a meta, or a data set with a SOP Class
    UID) that cannot be stored: a bad UID, a damaged data set."""


@contextmanager
def _invalidIf(isObject):
    """The failures to read a data set inside as InvalidObject when the file
    is a DICOM object (``isObject``); else as they are (no DICOM object)."""
    try:
        yield
    except (DatasetError, IdentifierError, NKIError) as e:
        if not isObject or isinstance(e, InvalidObject):
            raise
        raise InvalidObject(str(e)) from e


def _fileMeta(f):
    """``readFileMeta`` of the open file ``f``; ZipArchive for a zip file."""
    if f.read(len(ZIP_MAGIC)) == ZIP_MAGIC:
        raise ZipArchive("a zip file")
    f.seek(0)
    return readFileMeta(f)


def _storable(meta):
    """DirectoryFile when the file meta ``meta`` is a DICOMDIR's: an index
    of a CD, never stored as an object."""
    if meta.get(MEDIA_STORAGE_SOP_CLASS_UID) == MediaStorageDirectoryStorage:
        raise DirectoryFile("a DICOMDIR")


def _readWhole(path):
    """``(transfer syntax, data set bytes, file meta, whether it has a
    meta)`` of a DICOM file (Part-10 or a bare data set)."""
    with openRegularFile(path) as f:
        syntax, meta, offset = _fileMeta(f)
        return syntax, f.read(), meta, offset > 0


def _objectStart(f, path):
    """``_fileMeta`` of the open file ``f`` (``path``), left at its data set,
    when it is a DICOM object: one with a file meta, or a bare data set with
    a SOP Class UID; NotDICOM else (any file read leniently makes elements
    of its bytes)."""
    syntax, meta, offset = _fileMeta(f)
    if offset == 0:
        try:
            sopClass = readAttributes(f, syntax, frozenset((SOP_CLASS_UID,))).get(SOP_CLASS_UID)
        except (DatasetError, IdentifierError) as e:
            raise NotDICOM(path, f"not a readable DICOM object: {e}") from e
        if not sopClass:
            raise NotDICOM(path, "not a readable DICOM object: no file meta and no SOP Class UID")
        f.seek(0)
    return syntax, meta, offset


def readFile(path):
    """In the I/O pool: ``(transfer syntax, data set bytes)`` of a DICOM
    object (Part-10 or a bare data set, ``_objectStart``)."""
    with openRegularFile(path) as f:
        syntax, _, _ = _objectStart(f, path)
        return syntax, f.read()


def _changedObject(path, change, callingAE, calledAE, compression, converters, amended):
    """In the I/O pool: ``(IncomingObject, data set bytes, changed)`` of a
    DICOM file (Part-10 or raw), ``change(dataset)`` applied when given
    (changed: it did not return False), to be stored compressed as
    ``compression`` says."""
    syntax, data, meta, part10 = _readWhole(path)
    _storable(meta)
    changed = False
    with _invalidIf(part10):
        _checkUID(syntax, "Transfer Syntax UID")
        if change is not None:
            dataset = decodeDataset(withPlainPixels(data, syntax), syntax)
            changed = change(dataset) is not False
            if changed:
                data = encodeDataset(dataset, syntax)
        return _incoming(data, syntax, callingAE, calledAE, compression, converters, amended), data, changed


def _incoming(source, syntax, *settings):
    """The IncomingObject of the data set ``source`` (bytes, or a file at
    its first byte) in ``syntax``, with ``settings`` after the syntax;
    InvalidObject when it has a SOP Class UID but a bad SOP Instance UID."""
    attrs = readAttributes(source, syntax, frozenset((SOP_CLASS_UID, SOP_INSTANCE_UID)))
    _checkUID(attrs.get(SOP_CLASS_UID), "SOP Class UID")
    with _invalidIf(True):
        _checkUID(attrs.get(SOP_INSTANCE_UID), "SOP Instance UID")
    return IncomingObject(attrs[SOP_CLASS_UID], attrs[SOP_INSTANCE_UID], syntax, *settings)


def _openObject(path, *settings):
    """In the I/O pool: ``(IncomingObject, open file, data set offset, file
    size)`` of a DICOM file read only up to its SOP Instance UID, for
    ``storeFile``; ``settings``: those of ``_incoming``."""
    f = openRegularFile(path)
    try:
        syntax, meta, offset = _fileMeta(f)
        _storable(meta)
        with _invalidIf(offset > 0):
            _checkUID(syntax, "Transfer Syntax UID")
            incoming = _incoming(f, syntax, *settings)
        return incoming, f, offset, os.fstat(f.fileno()).st_size
    except BaseException:
        f.close()
        raise


async def readObject(archive, path, change=None, callingAE="", compression="", converters=False, amended=False):
    """``_changedObject`` in the I/O pool, its failures CommandErrors; by
    default an object the command rewrote, which neither the converters
    nor WorkListMode and FixPhilips/FixKodak change again."""
    return await fromFile(archive, path, _changedObject, change, callingAE, archive.aeTitle, compression,
                          converters, amended)


async def fromFile(archive, path, work, *args):
    """``work(path, *args)`` in the I/O pool; its failures to read or
    change the DICOM file ``path`` are CommandErrors."""
    try:
        return await archive.workers.deferToWorker(work, path, *args)
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror or e}") from e
    except ZipArchive as e:
        raise NotDICOM(path, "a zip file (unzip it and import its folder)") from e
    except DirectoryFile as e:
        raise NotDICOM(path, DICOMDIR_SKIPPED) from e
    except InvalidObject as e:
        raise CommandError(f"{path} is not a valid DICOM object: {e}") from e
    except (DatasetError, IdentifierError, NKIError) as e:
        raise NotDICOM(path, f"not a readable DICOM object: {e}") from e
    except ScriptRefused as e:
        raise CommandError(f"{path}: {e}; nothing was changed") from e
    except ValueError as e:  # a new UID with a bad UIDPrefix
        raise CommandError(f"{path} could not be changed: {e}") from e


async def storeObject(archive, incoming, data, path, copy=False):
    """Store what ``readObject`` gave through the ObjectStore; the stored
    file's ``(device name, path relative to the device)``.  ``copy``: the
    object has new UIDs from the UID map, so it never moves the study or
    series of an earlier copy of the same original that has them, made for
    another patient or study (``IncomingObject.relink``: an original
    anonymized again under another Patient ID): that copy stays, and this
    one is refused."""
    if copy:
        incoming = dataclasses.replace(incoming, relink=False)
    spool = archive.objectStore.spool(incoming)
    spool.write(data)
    return await _stored(archive, incoming, spool, path, copy)


async def storeFile(archive, path, callingAE="", compression="", converters=False, amended=False):
    """Store the DICOM file ``path`` as it is, copied into the spool a chunk
    at a time (``readObject``'s settings); ``(IncomingObject, device name,
    path relative to the device)``."""
    incoming, source, start, end = await fromFile(archive, path, _openObject, callingAE, archive.aeTitle,
                                                  compression, converters, amended)
    try:
        spool = await spooledFrom(archive.objectStore, incoming, source, start, end, archive.workers.deferToWorker)
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror or e}") from e
    finally:
        await archive.workers.deferToWorker(source.close)
    return (incoming, *await _stored(archive, incoming, spool, path))


async def storeChanged(archive, path, change, copy=False, **settings):
    """Store the DICOM file ``path`` as ``change`` changes it
    (``readObject`` with ``settings``, then ``storeObject`` with ``copy``);
    ``(IncomingObject, device name, path relative to the device)``."""
    incoming, data, _ = await readObject(archive, path, change, **settings)
    return (incoming, *await storeObject(archive, incoming, data, path, copy=copy))


async def _stored(archive, incoming, spool, path, copy=False):
    """``ObjectStore.store`` of the spool; its failures CommandErrors."""
    try:
        return await archive.objectStore.store(incoming, spool)
    except (StoreError, OSError) as e:
        hint = COPIED_ONCE if copy and isinstance(e, Refused) else ""
        raise CommandError(f"{path} was not stored: {e}{hint}") from e


def _checkUID(uid, name):
    """DatasetError unless ``uid`` is a UID: digits and dots, at most 64 characters."""
    if not uid:
        raise DatasetError(f"no {name}")
    if not isUID(uid):
        raise DatasetError(f"{name} {uid!r} is not a UID (digits and dots, at most 64 characters)")


def headerLines(path):
    """In the I/O pool: the elements of the DICOM object ``path``
    (``_objectStart``) as text, pixel data left out; InvalidDicomError when
    pydicom cannot read or show them."""
    with openRegularFile(path) as f:
        _objectStart(f, path)
        f.seek(0)
        try:
            dataset = pydicom.dcmread(f, stop_before_pixels=True, force=True)
            decodeValues(dataset)  # text not valid in its character set as Latin-1, as the index reads it
            return str(dataset).splitlines()
        except Exception as e:  # damage surfaces as any exception while reading or formatting
            raise InvalidDicomError(str(e) or type(e).__name__) from e


class AddImageFile(AsyncControlCommand):
    name = "addimagefile"
    usage = "--addimagefile:file,patid  Copy file into server, optionally new patid"
    log = Logger()

    async def execute(self, arguments, context):
        text, patientID = fileFields(arguments, 2)
        archive = context.archive
        path = await objectFile(archive, text)
        store, concurrency = self.storing(archive, patientID)
        if await archive.workers.deferToWorker(os.path.isdir, path):
            answer = await importFolder(archive, path, store, concurrency, functools.partial(applyHL7File, archive))
            self.log.info("{peer}: addimagefile {summary}", peer=context.peer, summary=answer.splitlines()[-1])
            return answer
        try:
            incoming, _, relative = await store(path)
        except NotDICOM:
            if not await isHL7File(archive, path):
                raise
            lines = await applyHL7File(archive, path)  # as Conquest's addimagefile (its drag and drop) does
            self.log.info("{peer}: addimagefile {path}: {count} HL7 message(s) applied to the worklist",
                          peer=context.peer, path=path, count=len(lines))
            return "\n".join(lines)
        self.log.info("{peer}: addimagefile {path}: stored as {relative}", peer=context.peer, path=path,
                      relative=relative)
        return f"{incoming.sopInstanceUID} stored as {relative}"

    @staticmethod
    def storing(archive, patientID):
        """``(store, concurrency)``: how a file is stored, for ``patientID``
        (a copy with new UIDs) when not empty, and how many at a time."""
        converters = archive.configuration.ini.getint("ImportExportDragAndDrop", 0) == 1
        settings = dict(compression=archive.droppedFileCompression, converters=converters, amended=True)
        if patientID.strip():
            change = newPatient(archive.converterServices.uidMap, exactValue(patientID, "patient ID"))
            store = functools.partial(storeChanged, archive, change=change, copy=True, **settings)
            return store, 1  # each object held whole, decoded and encoded again
        return functools.partial(storeFile, archive, **settings), CONCURRENCY


class LoadAndDeleteDir(AddImageFile):
    """Conquest's ``loadanddeletedir:folder[,patid]``: ``addimagefile`` of a
    folder that deletes each file once it is stored (or its HL7 messages
    applied); the files skipped or failed, and those perhaps still being
    written (``takeAndDelete``), stay."""

    name = "loadanddeletedir"
    usage = "--loadanddeletedir:folder,patid  Copy the files of folder into server and delete them"

    async def execute(self, arguments, context):
        text, patientID = fileFields(arguments, 2)
        archive = context.archive
        if not text.strip():
            raise CommandError("no folder given")
        folder = inputPath(archive, text.strip())
        if not await archive.workers.deferToWorker(os.path.isdir, folder):
            raise CommandError(f"{folder} is not a folder")
        store, concurrency = self.storing(archive, patientID)

        async def takenIn(take, path):
            try:
                return await self.takeAndDelete(archive, take, path)
            except LeftForLater as e:
                self.log.warn("{peer}: loadanddeletedir: {path}: {why}", peer=context.peer, path=path, why=e.why)
                raise

        answer = await importFolder(archive, folder, functools.partial(takenIn, store), concurrency,
                                    functools.partial(takenIn, functools.partial(applyHL7File, archive)))
        self.log.info("{peer}: loadanddeletedir {summary}", peer=context.peer, summary=answer.splitlines()[-1])
        return answer

    @staticmethod
    async def takeAndDelete(archive, take, path):
        """``take(path)`` (store the file or apply its HL7 messages), then
        delete the file if it is still the one taken in (``removeIfSame``);
        LeftForLater when it was modified within ``SETTLING_NS`` (not
        taken in) or changed meanwhile (a writer still writing it, or a file
        put in its place: taken in as it was read, kept)."""
        identity = await archive.workers.deferToWorker(settledIdentity, path)
        result = await take(path)
        try:
            deleted = await archive.workers.deferToWorker(removeIfSame, path, identity)
        except OSError as e:
            raise CommandError(f"taken in, but cannot delete it: {e.strerror}") from e
        if not deleted:
            raise LeftForLater(path, CHANGED_WHILE_TAKEN)
        return result


def settledIdentity(path, now=time.time_ns):
    """In the I/O pool: the ``fileIdentity`` of the file ``path``;
    LeftForLater when it was modified less than ``SETTLING_NS`` ago, or
    at a time ahead of this clock (whether it is still written cannot be
    told), CommandError when it cannot be read."""
    try:
        identity = fileIdentity(os.stat(path))
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror or e}") from e
    age = now() - identity[3]
    if age < 0:
        raise LeftForLater(path, "modified at a time ahead of this server's clock (a share's clock?): left until "
                                 "that time is past")
    if age < SETTLING_NS:
        raise LeftForLater(path, f"modified less than {SETTLING_NS // 1_000_000_000} s ago (still being "
                                 f"written?): left for the next run")
    return identity


class LoadHL7(AsyncControlCommand):
    name = "loadhl7"
    usage = "--loadhl7:file  Load HL7 data into worklist"

    async def execute(self, arguments, context):
        return "\n".join(await applyHL7File(context.archive, inputPath(context.archive, arguments.strip())))


async def applyHL7File(archive, path):
    """Apply the messages of the HL7 file ``path`` through the worklist
    intake, up to one the database failed; the lines (``message N: AA
    ...``) of its messages, CommandError when one was not accepted (or the
    database failed, naming what to load again)."""
    try:
        messages = await archive.workers.deferToWorker(readHL7, path)
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror or e}") from e
    outcomes = await applyMessages(archive.hl7Intake, messages)
    if not outcomes:
        raise CommandError(f"no HL7 message (no MSH segment) in {path}")
    lines = outcomeLines(outcomes)
    if outcomes[-1].retry:
        raise CommandError(f"{lines[-1]}; {_notApplied(path, len(outcomes), len(messages))}")
    refused = [line for line, outcome in zip(lines, outcomes) if outcome.code != "AA"]
    if refused:
        raise CommandError(f"{len(refused)} of {len(outcomes)} message(s) not accepted: " + "; ".join(refused))
    return lines


def _notApplied(path, stop, count):
    """What to load again of the file ``path`` of ``count`` messages whose
    message ``stop`` may be applied later (the ones before it were)."""
    if stop == 1:
        return f"it and the {count - 1} message(s) after it not applied: load {path} again later"
    return (f"messages {stop} to {count} not applied, 1 to {stop - 1} applied: load again later a file of messages "
            f"{stop} to {count} only (loading {path} again applies messages 1 to {stop - 1} again)")


class DumpHeader(AsyncControlCommand):
    name = "dump_header"
    usage = "--dump_header:filein,fileout  Create header dump of file"

    async def execute(self, arguments, context):
        source, target = fields(arguments, 2)
        archive = context.archive
        path = await objectFile(archive, source)
        try:
            lines = await archive.workers.deferToWorker(headerLines, path)
        except (OSError, InvalidDicomError, DatasetError) as e:
            raise CommandError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e
        return await deliver(context, lines, target)


class Forward(AsyncControlCommand):
    name = "forward"
    usage = "--forward:file,mode,server  Send file with compr. mode to server"
    log = Logger()

    async def execute(self, arguments, context):
        text, mode, server = fields(arguments, 3)
        archive = context.archive
        server = server.strip()
        if archive.configuration.acrNemaMap.lookup(server) is None:
            raise CommandError(f"{server!r} is not in acrnema.map")
        deviceName, objectFile = storedFile(archive, text)
        instances = await archive.index.runQuery(fileInstances, archive.query, deviceName, objectFile)
        if not instances:
            raise CommandError(f"{storedName(deviceName, objectFile)} is not in the index")
        instance = instances[0]
        target = Target(instance.patientID, instance.studyInstanceUID, instance.seriesInstanceUID,
                        instance.sopInstanceUID)
        forwarder = forwarderFor(archive)
        try:
            sent = await forwarder.forward(Action(0, "forward", server, "IMAGE", target, mode.strip(), {}, 0),
                                           carryOn=True)
        except Undelivered as e:
            raise CommandError(f"{storedName(deviceName, objectFile)} not sent to {server}: {e.errors[0]}") from e
        except (ForwardError, ValueError) as e:
            raise CommandError(str(e)) from e
        finally:
            await forwarder.closeAll()
        if not sent:
            raise CommandError(f"{storedName(deviceName, objectFile)} could not be read")
        return f"{storedName(deviceName, objectFile)} sent to {server}"


class Prefetch(AsyncControlCommand):
    name = "prefetch"
    usage = "--prefetch:patientid  Prefetch all images for improved speed"

    async def execute(self, arguments, context):
        patientID = exactValue(arguments, "patient ID")
        action = Action(0, "prefetch", "", "PATIENT", Target(patientID), "", {}, 0)
        count = await context.archive.localActions.prefetch(action)
        if not count:
            raise CommandError(f"no stored object of patient {patientID!r}")
        return f"{count} object(s) of patient {patientID} read"
