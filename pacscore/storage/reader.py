"""Reading stored objects back for sending (C-MOVE, C-GET, forwarding).

Blocking: call these in the I/O pool.  ``locate`` reads only each file's
Part-10 header (its transfer syntax and where the data set starts), so a
retrieve can negotiate before it reads any pixel; ``read`` then returns one
object's data set bytes exactly as stored.  A file missing from its MAG
device is read from its mirror copy, when there is one (``Mirrors``),
also when it went after it was located; so
is one that does not read to its end (cut short, damaged: ``checkWhole``,
a walk of its element headers as it is read for sending, or ``intact``),
which otherwise is Damaged: never sent as it is.  A file gone since the
index named it, as the object was stored again meanwhile (a new file
name, the old file removed after the commit), is looked up again: the
file the index names now is read (``current``), for C-MOVE, C-GET,
forwards and the web alike; one whose object the index no longer holds,
or a delete under way removes, is ``Deleted``.
"""

import errno
import os
from typing import NamedTuple

from twisted.logger import Logger

from pacscore.db.pending import Unchecked
from pacscore.db.query import (PATIENT_ID, SERIES_INSTANCE_UID, SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID,
                               Instance, QueryKey)
from pacscore.storage import part10
from pacscore.storage.attributes import SPECIFIC_CHARACTER_SET, DatasetError, readAttributes
from pacscore.storage.devices import removeFile, removeIfSame
from pacscore.storage.mirror import Mirrors
from pacscore.storage.part10 import MEDIA_STORAGE_SOP_CLASS_UID, Damaged, checkWhole, readFileMeta

HEADER_READ = 4096  # bytes read at once to find a file's transfer syntax and data set: its meta and more
RELOCATIONS = 3  # how often a file found gone is looked for again under the name the index gives it now


class StoredObject(NamedTuple):
    """One object on a MAG device, ready to be read."""

    sopInstanceUID: str
    sopClassUID: str
    path: str
    transferSyntax: str
    datasetOffset: int
    size: int
    deviceName: str = ""
    objectFile: str = ""


class Missing(NamedTuple):
    """An indexed object whose file cannot be read: ``gone`` when it was
    deleted meanwhile (``locate``: its file gone and the index holding no
    row of it, or a delete under way removing it; a file no index names,
    such as a spool file, simply gone), else it may be readable later (an
    I/O error, a share offline or unmounted, permissions) or is damaged."""

    sopInstanceUID: str
    reason: str
    gone: bool = False
    deviceName: str = ""  # the MAG device that holds its file


class IndexedPath(str):
    """The path of the file of an indexed object, ``instance`` (a
    ``pacscore.db.query.Instance``): when it is gone, ``ObjectReader.onFile``
    works on the file the index names now."""

    def __new__(cls, path, instance):
        made = super().__new__(cls, path)
        made.instance = instance
        return made


class Deleted(FileNotFoundError):
    """The file of an indexed object is gone as the object was deleted
    since it was located: the index holds no row of it now, or a delete
    under way is removing it (see ``currentInstance``)."""


def currentInstance(index, query, sopInstanceUID):
    """The ``Instance`` the index holds now of ``sopInstanceUID``; None when
    it holds none, or when a delete under way is removing it (noted in
    ``PacsDeletes``: a delete removes the files before the rows).  Read
    with a connection of its own in the calling thread (the I/O pool): an
    ``ObjectReader``'s ``current``.  The note is read first, then the row,
    as two statements each see the latest commit: a delete's last step
    removes its rows and its notes together, so an object whose note is
    gone by the time it is read has no row either then, whereas a row
    read first could be one that step removes before the note is read."""
    with index.engine.connect() as connection:
        if index.deletes.noted(connection, sopInstanceUID):
            return None
        found = query.instances(connection, "IMAGE", [QueryKey(SOP_INSTANCE_UID, "UI", sopInstanceUID)])
    return found[0] if found else None


_IDENTITY = (SOP_INSTANCE_UID, SOP_CLASS_UID, PATIENT_ID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)


def _identity(path):
    """``{tag: value}`` of the identifying attributes (``_IDENTITY``) the
    Part-10 file ``path`` holds (empty values left out); empty when it
    cannot be read."""
    try:
        return {tag: value for tag, value in part10.readFileAttributes(path, _IDENTITY)[1].items() if value}
    except (OSError, DatasetError):  # gone or damaged: locate reports it Missing
        return {}


def _sopClassOf(f, syntax, meta):
    """The SOP class of the object in the file ``f``, positioned at its
    data set: its meta's Media Storage SOP Class UID, else its data set's
    (0008,0016) (a file without meta); "" when it holds neither."""
    return meta.get(MEDIA_STORAGE_SOP_CLASS_UID) or readAttributes(f, syntax, {SOP_CLASS_UID}).get(SOP_CLASS_UID, "")


def readAt(fd, offset, length):
    """``length`` bytes (fewer at the end of the file) from ``offset`` of
    the open file ``fd``, in as few reads as it takes (one ``pread`` gives
    at most about 2 GB on Linux)."""
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)


class ObjectReader:
    """Finds and reads the files of indexed objects on the MAG devices
    (and their ``mirrors``); ``current(sopInstanceUID)``, when given, is
    the Instance the index holds now (``currentInstance``)."""

    log = Logger()

    def __init__(self, devices, mirrors=None, current=None):
        self.roots = {device.name: device.path for device in devices}
        self.mirrors = mirrors if mirrors is not None else Mirrors()
        self.current = current

    def path(self, deviceName, objectFile):
        """The absolute path of a file named in the index: on its MAG
        device, or its mirror copy when only that exists."""
        path = self.magPath(deviceName, objectFile)
        if self.mirrors and not os.path.exists(path):
            copy = self.mirrors.path(deviceName, objectFile)
            if copy is not None and os.path.exists(copy):
                self.log.warn("{path} is missing: its mirror copy {copy} is read instead", path=path, copy=copy)
                return copy
        return path

    def instancesAt(self, path, target):
        """``[Instance]`` of the object in the file ``path`` on a MAG device,
        which the index does not know (the NULL driver keeps no rows, a
        changed object spooled for a forward): with the SOP instance, SOP
        class, patient, study and series UIDs the file holds (a forward's
        Affected SOP Instance UID must be its data set's), those of
        ``target`` (a ``pacscore.export.queue.Target``) where it holds
        none; empty when no MAG device holds ``path``.  A file that cannot
        be read is found too: ``locate`` then reports it ``Missing``."""
        for deviceName, root in self.roots.items():
            relative = os.path.relpath(path, root)
            if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
                break
        else:
            return []
        held = _identity(path)
        return [Instance(held.get(SOP_INSTANCE_UID) or target.sopInstanceUID, held.get(SOP_CLASS_UID, ""), deviceName,
                         relative.replace(os.sep, "/"), held.get(PATIENT_ID) or target.patientID,
                         held.get(STUDY_INSTANCE_UID) or target.studyInstanceUID,
                         held.get(SERIES_INSTANCE_UID) or target.seriesInstanceUID)]

    def instancePaths(self, connection, query, level, keys):
        """In a reader thread (``index.runQuery``): ``[(Instance, path)]`` of
        the objects ``query.instances`` finds, each file as ``path`` finds
        it (which looks at the disk when there are mirrors)."""
        return [(instance, IndexedPath(self.path(instance.deviceName, instance.objectFile), instance))
                for instance in query.instances(connection, level, keys)]

    def magPath(self, deviceName, objectFile):
        """Where a file named in the index is on its MAG device."""
        root = self.roots.get(deviceName)
        if root is None:
            raise OSError(f"no MAG device {deviceName!r}")
        return os.path.join(root, *objectFile.split("/"))

    def characterSetOf(self, deviceName, objectFile):
        """The Specific Character Set a file named in the index declares,
        its header read up to (0008,0005); None when it cannot be read."""
        try:
            return part10.readFileAttributes(self.path(deviceName, objectFile), {SPECIFIC_CHARACTER_SET})[1].get(
                SPECIFIC_CHARACTER_SET)
        except (OSError, DatasetError):
            return None

    def copies(self, deviceName, objectFile):
        """The paths of every copy a file named in the index may have: on
        its MAG device, on its mirror."""
        mirrored = self.mirrors.path(deviceName, objectFile)
        return [self.magPath(deviceName, objectFile)] + ([mirrored] if mirrored is not None else [])

    def removeCopies(self, deviceName, objectFile):
        """In the I/O pool: delete every copy (``copies``) of a file named
        in the index; one already gone is no error."""
        for path in self.copies(deviceName, objectFile):
            removeFile(path)

    def removeCopiesIfSame(self, deviceName, objectFile, identity, identify=None):
        """As ``removeCopies``, while the file on its MAG device is still the
        one of ``identity`` (``identityOf``, or ``identify``'s, as
        ``removeIfSame``); False when it was stored anew since: it and its
        mirror copy stay."""
        [path, *others] = self.copies(deviceName, objectFile)
        if not removeIfSame(path, identity, identify):
            return False
        for other in others:
            removeFile(other)
        return True

    def fileError(self, deviceName, objectFile):
        """Why the file an index row names is unusable (missing, not Part-10,
        truncated or damaged data set), or None when it reads to its end;
        ``Unchecked`` when it could not be read here (permissions, an I/O
        error, a folder in its place), which shows no loss."""
        try:
            part10.checkFile(self.path(deviceName, objectFile))
        except FileNotFoundError as e:
            return str(e)
        except OSError as e:
            return Unchecked(str(e))
        except DatasetError as e:
            return str(e) or type(e).__name__
        return None

    def locate(self, instances, follow=True):
        """``StoredObject`` or ``Missing`` for each ``pacscore.db.query.Instance``
        (a file gone is followed to its object's new one unless not
        ``follow``: see ``_whileRenamed``).  A file gone is ``gone`` only
        when its object was deleted (``Deleted``), or when no index is asked
        (not ``follow``, no ``current``): one the index still names (a data
        disk not mounted) may be back later."""
        found = []
        for instance in instances:
            try:
                found.append(self._whileRenamed(instance, self._stored, follow))
            except (OSError, DatasetError) as e:
                gone = isinstance(e, Deleted) or (isinstance(e, FileNotFoundError)
                                                  and (not follow or self.current is None))
                found.append(Missing(instance.sopInstanceUID, f"{instance.objectFile}: {e}", gone, instance.deviceName))
        return found

    def _stored(self, held):
        """The ``StoredObject`` of an Instance, its file's Part-10 header
        read; a StoredObject as it is (see ``_load``)."""
        if isinstance(held, StoredObject):
            return held
        return self._load(held)[0]

    def _load(self, held, largest=-1):
        """``(StoredObject, data set bytes)`` of an Instance or StoredObject,
        its file opened once: an Instance's Part-10 header read (with one
        read when it is plain: ``quickFileMeta``), then, when ``largest`` is
        given, its data set unless it is larger than ``largest`` bytes (None
        then), and either checked to read to its end (``checkWhole``).  A
        file that does not (cut short, damaged) is read from its mirror copy
        when that one does (logged), else Damaged.  When the index holds no
        SOP class (a dicom.sql without that column), the file's is taken
        (``_sopClassOf``): a retrieve or forward negotiates with it."""
        path = held.path if isinstance(held, StoredObject) else self.path(held.deviceName, held.objectFile)
        try:
            return self._loadFile(held, path, largest)
        except DatasetError as e:
            copy = self._mirrorCopy(held.deviceName, held.objectFile, path)
            if copy is None:
                raise
            try:
                loaded = self._loadFile(held, copy, largest)
            except (OSError, DatasetError):
                raise e from None
            self._readInstead(path, e, copy)
            return loaded

    def _loadFile(self, held, path, largest):
        """``_load`` of the file ``path``."""
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            stored = (held if isinstance(held, StoredObject) and held.path == path
                      else self._located(held, path, fd, size))
            if largest < 0:
                return stored, None
            if stored.size > largest:
                with open(fd, "rb", closefd=False) as f:
                    f.seek(stored.datasetOffset)
                    checkWhole(f, stored.transferSyntax)
                return stored, None
            data = readAt(fd, stored.datasetOffset, size - stored.datasetOffset)
            checkWhole(data, stored.transferSyntax)
            return stored, data
        finally:
            os.close(fd)

    def _mirrorCopy(self, deviceName, objectFile, path):
        """The mirror copy of the file ``path`` (``objectFile`` of
        ``deviceName``), or None when there is none."""
        copy = self.mirrors.path(deviceName, objectFile) if deviceName else None
        return None if copy == path else copy

    def _readInstead(self, path, error, copy):
        """Log that the mirror copy ``copy`` is read as ``path`` cannot be, for ``error``."""
        self.log.warn("{path} cannot be read ({error}): its mirror copy {copy} is read instead", path=path,
                      error=error, copy=copy)

    def intact(self, path):
        """In the I/O pool: ``path``, the file of a stored object (an
        ``IndexedPath``), when it reads to its end, else its mirror copy
        when that one does (logged); Damaged (or OSError) when neither."""
        instance = getattr(path, "instance", None)
        if instance is None:
            return self._whole(path, None, None)
        whole = self._whole(path, instance.deviceName, instance.objectFile)
        return path if whole == path else IndexedPath(whole, instance)

    def wholeFile(self, deviceName, objectFile):
        """In the I/O pool: the path of the file an index row names (its
        mirror copy when only that exists: ``path``) when it reads to its
        end, else of its mirror copy when that one does (logged); Damaged
        (or OSError) when neither."""
        return self._whole(self.path(deviceName, objectFile), deviceName, objectFile)

    def _whole(self, path, deviceName, objectFile):
        """``intact`` of ``path``, the file of ``objectFile`` of ``deviceName``
        (None: a file without a mirror copy)."""
        try:
            part10.checkFile(path)
            return path
        except DatasetError as e:
            copy = None if deviceName is None else self._mirrorCopy(deviceName, objectFile, path)
            if copy is None or part10.fileError(copy) is not None:
                if isinstance(e, Damaged):
                    raise
                raise Damaged(str(e)) from e
            self._readInstead(path, e, copy)
            return copy

    def _located(self, held, path, fd, size):
        """The ``StoredObject`` of the Instance ``held``, its file ``path``
        open as ``fd``."""
        quick = part10.quickFileMeta(os.pread(fd, HEADER_READ, 0)) if held.sopClassUID else None
        if quick is not None:
            syntax, offset = quick
            sopClass = held.sopClassUID
        else:
            with open(fd, "rb", closefd=False) as f:
                syntax, meta, offset = readFileMeta(f)
                sopClass = held.sopClassUID or _sopClassOf(f, syntax, meta)
        return StoredObject(held.sopInstanceUID, sopClass, path, syntax, offset, size, held.deviceName,
                            held.objectFile)

    def _whileRenamed(self, held, use, follow=True):
        """``use(held)`` (an Instance or StoredObject); when it finds the file
        gone (FileNotFoundError) and the index names another file of that
        SOP instance now (it was stored again meanwhile, under a new name),
        ``use`` of that ``Instance``, up to ``RELOCATIONS`` times; ``Deleted``
        (a FileNotFoundError) when the index holds none now (``current``);
        when it names the same file, ``use`` of that Instance once more if
        its mirror copy is there (``path`` reads it, as a look-up would:
        ``held``'s path was taken before the file went); else (at once when
        not ``follow``: a file never stored again, such as a spool file) the
        FileNotFoundError."""
        mirrorTried = False
        for attempt in range(RELOCATIONS + 1):
            try:
                return use(held)
            except FileNotFoundError as e:
                if not follow or self.current is None or attempt == RELOCATIONS:
                    raise
                now = self.current(held.sopInstanceUID)
                if now is None:
                    raise Deleted(errno.ENOENT, f"{e.strerror or e} (the object was deleted)", e.filename) from e
                if (now.deviceName, now.objectFile) == (held.deviceName, held.objectFile):
                    if mirrorTried or not self._hasMirrorCopy(now):
                        raise
                    mirrorTried, held = True, now
                    continue
                self.log.info("{uid}: {gone} is gone, the object was stored again: {now} is read",
                              uid=now.sopInstanceUID, gone=held.objectFile, now=now.objectFile)
                held = now

    def _hasMirrorCopy(self, instance):
        """Whether the file of ``instance`` has a mirror copy on disk."""
        copy = self._mirrorCopy(instance.deviceName, instance.objectFile,
                                self.magPath(instance.deviceName, instance.objectFile))
        return copy is not None and os.path.exists(copy)

    def reading(self, stored, use, follow=True):
        """In the I/O pool: ``use(stored)`` of a ``StoredObject``; when its
        file is gone and the index names another file of that SOP instance
        now, ``use`` of that file's StoredObject (which may be in another
        transfer syntax), unless not ``follow``."""
        return self._whileRenamed(stored, lambda held: use(self._stored(held)), follow)

    def loading(self, held, use, largest):
        """In the I/O pool: ``use(stored, data)``, ``stored`` the
        ``StoredObject`` of ``held`` (an Instance, located here, or a
        StoredObject) and ``data`` its data set bytes, read in the same
        opening of its file (None when it is larger than ``largest`` bytes);
        one stored again since, as for ``reading``."""
        return self._whileRenamed(held, lambda current: use(*self._load(current, largest)))

    def onFile(self, path, work, *args):
        """In the I/O pool: ``(path, work(path, *args))``; when the file is
        gone and ``path`` is an ``IndexedPath`` whose object the index names
        another file of now, ``work`` of that file, and its path."""
        if not isinstance(path, IndexedPath):
            return path, work(path, *args)

        def use(held):
            current = path if held is path.instance else IndexedPath(self.path(held.deviceName, held.objectFile), held)
            return current, work(current, *args)
        return self._whileRenamed(path.instance, use)

    def read(self, stored):
        """The data set bytes of a ``StoredObject``."""
        with open(stored.path, "rb") as f:
            f.seek(stored.datasetOffset)
            return f.read()

    def readAll(self, instances):
        """Read the file of each ``pacscore.db.query.Instance`` once (to warm
        a cache or hierarchical storage); how many could be read."""
        count = 0
        for stored in self.locate(instances):
            if not isinstance(stored, Missing):
                self.read(stored)
                count += 1
        return count
