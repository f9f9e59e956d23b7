"""Rebuild the index from the files on the MAG devices (``dgate -r``).

Walks every device (skipping hidden folders such as ``.pacs-tmp``, folders
named ``PRINTER_FILES`` in any case, at any depth, as Conquest's RegenDir
does (a Conquest print server's jobs, slices without IDs: each with a
warning counting its files), the files set aside while being rewritten or
moved, and whatever is not a regular file: a FIFO would block it), reads
the index attributes of each DICOM file (Part-10, or a raw data set: a
``.v2``, or a ``.dcm`` without the Part-10 header) that reads to its end and upserts them in
batches, the files of a folder oldest first: a patient, study or series
row ends with the values of the object stored last, as it does live.
When two files hold the same SOP instance, on one device or two, the
newest one is indexed (of two in series that each hold other images,
between which the index refuses to move the image, ``Upserter``: the one
found first, the other a duplicate or failing), but for one a store left
after its index write failed (its sender told so, the file listed in its device's
``.pacs-unindexed``), which never takes the place of one not listed,
whatever their times; the other stays on disk, counted and logged as a
duplicate (a regen deletes nothing: the copy it would drop may be the one
that reads, or the one a store acknowledged last under a clock gone
wrong), but for an older copy of one a store wrote while the regen runs:
that store found no row naming it (the tables were cleared) and so left
it, and the regen removes it as the store would have.  What a store wrote
is known from the store itself, never from a file's time, which a copy
(``cp``, a restore) or a clock gone wrong sets as well.

A file whose name is longer than the index's ObjectFile column (255
characters: Conquest's FileNameSyntax 11 or a template with long values, an
earlier pacs that refused it after writing it) is moved to that name cut as
a store now names it (``fitPath``, a numbered one when that holds another
object) and indexed there, with a line saying so: no later regen fails on it.
A move cut short (kill -9 between its link and its unlink) leaves the file
under both names; the next regen finds the long one to be the same file as
one of those names, removes it, and indexes the file once.

The server's stores go on meanwhile: each batch is decided in the index
writer's transaction (``enterBatch``), in order with them, so a file that
a store replaced since the regen read it (gone, or another file now) is not
entered, and the newer of two files is found as they are then.
"""

import dataclasses
import functools
import os
import re

from sqlalchemy.exc import DataError

from pacscore.db.errors import databaseMessage
from pacscore.db.filepaths import OBJECT_FILE_LENGTH, storedPath
from pacscore.db.index import ImageRecord
from pacscore.db.records import Replaced
from pacscore.storage.attributes import DatasetError
from pacscore.storage.devices import identityOf, removeFile
from pacscore.storage.filenames import fitPath
from pacscore.storage.mirror import Mirrors
from pacscore.storage.part10 import TRANSFER_SYNTAX_UID, readFile
from pacscore.storage.placing import numberedNames, placeFile
from pacscore.storage.regularfiles import SkippedFiles, hidden, isRegularFile, openRegularFile
from pacscore.storage.store import SOP_INSTANCE_UID
from pacscore.storage.unindexed import JOURNAL, listedCopies

DATASET_EXTENSIONS = (".v2", ".dcm")  # read whatever their header: a raw data set, or a file that fails
# What fails one file's entry, not the regen: a value the index refuses (checkRecord), or that its database
# refuses as data (a value too long for its column, in an encoding it cannot hold).
REFUSED_ENTRY = (ValueError, DataError)
_SET_ASIDE = re.compile(r".*(\.pacs-tmp|\.moved-\d+)$")  # a rewrite's or a move's unfinished copy
_CONQUEST_NAME = re.compile(r".*\.(dcm|v2)$", re.IGNORECASE)  # a hidden one is Conquest's cut (MaxFileNameLength)
# Conquest's print server's folder (slices without IDs), which its RegenDir skips (stricmp); INCOMING and BIN, which
# it skips too, are indexed: a FileNameSyntax writes a patient's objects in a folder named as its Patient ID
PRINT_JOBS = "printer_files"


def _isDicomFile(path):
    """Only a regular file (or a link to one) can be: a FIFO, a socket or a
    device node is not opened.  A ``.v2`` or ``.dcm`` is one whatever it
    holds (not an object, it fails with a line naming it), another file
    only with the Part-10 header."""
    if not isRegularFile(path):
        return False
    if path.lower().endswith(DATASET_EXTENSIONS):
        return True
    with openRegularFile(path) as f:
        f.seek(128)
        return f.read(4) == b"DICM"


class MissingDeviceError(Exception):
    """A MAG device's folder is not there (an unmounted volume)."""


def fileRecord(path, tags, deviceName, objectFile, report=None, wholeDataset=True):
    """The ``ImageRecord`` of the object file at ``path`` (``objectFile`` on
    ``deviceName``) with the index's ``tags`` (``{tag: VR}``, see
    ``DatabaseLayout.indexedTags``); ``DatasetError`` or ``OSError``
    when it is not a whole object (a truncated file is none), or, not
    ``wholeDataset``, when it does not read up to the last of ``tags``
    (never into the Pixel Data).  A file whose meta names another syntax
    than its data set is in is told of to ``report`` (a line), when given."""
    syntax, meta, attrs = readFile(path, {SOP_INSTANCE_UID: None} | tags, wholeDataset=wholeDataset)
    declared = meta.get(TRANSFER_SYNTAX_UID)
    if report is not None and declared and declared != syntax:
        report(f"[Regen] {path}: its file meta says transfer syntax {declared}, but its data set is in {syntax}: "
               f"it is sent in {syntax}")
    return ImageRecord(attrs, deviceName, objectFile)


def checkDeviceFolders(devices):
    """MissingDeviceError naming the ``devices`` whose folder is missing:
    regenerating the index without them would drop their objects."""
    missing = [device for device in devices if not os.path.isdir(device.path)]
    if missing:
        raise MissingDeviceError(
            "; ".join(f"{device.name}: no folder {device.path}" for device in missing)
            + " (a volume not mounted?); the index is left as it is (regenerating without "
            + ", ".join(device.name for device in missing) + " would drop the objects stored there)")


def iterObjectFiles(device, folder=None, skip=frozenset(), leftOut=lambda path: None):
    """Yield ``(absolute, relative)`` for every DICOM file on ``device``, or
    only those under ``folder`` (an absolute path on the device), and those
    that cannot be looked at (their read fails, naming them).  Files whose
    real path is in ``skip`` (the index database's) are not opened.  The
    folders under it named ``PRINTER_FILES`` (``PRINT_JOBS``) are not
    walked, each given to ``leftOut``."""
    skip = skip if isinstance(skip, SkippedFiles) else SkippedFiles(skip)
    for folder, subfolders, files in os.walk(folder or device.path):
        subfolders[:] = sorted(d for d in subfolders if not hidden(d))
        for name in [d for d in subfolders if d.lower() == PRINT_JOBS]:
            subfolders.remove(name)
            leftOut(os.path.join(folder, name))
        for name in _oldestFirst(folder, files):
            if (hidden(name) and not _CONQUEST_NAME.match(name)) or _SET_ASIDE.match(name):
                continue  # a hidden .dcm or .v2 is an object Conquest named so; other hidden files are not
            path = os.path.join(folder, name)
            if path in skip:
                continue
            try:
                if not _isDicomFile(path):
                    continue
            except FileNotFoundError:
                continue  # gone since listed
            except OSError:
                pass
            yield path, os.path.relpath(path, device.path).replace(os.sep, "/")


def _oldestFirst(folder, names):
    """``names`` of ``folder`` by modification time, then name."""
    return sorted(names, key=lambda name: _walkKey(os.path.join(folder, name)))


def _walkKey(path):
    """Where the file at ``path`` comes among those of its folder: its modification time, then name."""
    name = os.path.basename(path)
    try:
        return os.stat(path, follow_symlinks=False).st_mtime, name
    except OSError:
        return 0, name


def fileSignature(path):
    """``identityOf`` the file at ``path`` (what tells a file from one a
    store put in its place), None when it cannot be looked at either."""
    try:
        return identityOf(path)
    except OSError:
        return None


GONE, OLDER, STALE, ENTERED = "gone", "older", "stale", "entered"  # what became of a regenerated file (enterBatch)


def enterBatch(connection, index, entries, devices, written=None, listed=frozenset()):
    """In one transaction (the index writer's, in order with the stores):
    index the regenerated ``entries``, ``(record, path, signature)``, where
    ``signature`` is the file's when it was read.  One result per entry:

    - ``(GONE, None)``: its file is gone or another one since (a store
      replaced it): the store's row stays;
    - ``(OLDER, path)``: the SOP instance's indexed file (on one of
      ``devices``, name -> ``MagDevice``) goes first (``_rank``: not in
      ``listed`` when the entry's file is, else newer): its row stays, the
      entry's file is a duplicate;
    - ``(STALE, path)``: the indexed file is one a store wrote during the
      regen, the entry's not (``written``: their ``(device name, name)``;
      None: none counts), whatever their modification times (a copy left
      by a clock that ran ahead is no newer): that store replaced it,
      which its row would have had removed; never when the indexed file
      is ``listed`` (that store was refused: its row a late commit);
    - ``(ENTERED, None or path)``: indexed, and the older file the row
      named before, if it is still there, a duplicate.

    No file is touched here: the writer may run this twice."""
    indexed = index.indexedFiles(connection, {record.attrs.get(SOP_INSTANCE_UID) for record, _, _ in entries})
    results, records = [], []
    for record, path, signature in entries:
        if fileSignature(path) != signature:
            results.append((GONE, None))
            continue
        uid = record.attrs.get(SOP_INSTANCE_UID)
        other = _file(devices, indexed.get(uid))
        if other is not None and other[1] in (None, signature):  # none, or this very file
            other = None
        stored = other is not None and written is not None and indexed[uid] in written  # by a store not refused
        here = (record.deviceName, record.objectFile)
        if stored and tuple(indexed[uid]) not in listed and here not in written and (
                here not in listed):  # whatever the files' times; a copy the index failed on stays (kept on disk)
            results.append((STALE, path))
            continue
        if other is not None and _rank(indexed[uid], other[1], listed) > _rank(here, signature, listed):
            results.append((OLDER, path))
            continue
        records.append(record)
        indexed[uid] = Replaced(record.deviceName, record.objectFile)  # the same SOP instance later in the batch
        results.append((ENTERED, other[0] if other is not None else None))
    index.upsertImages(connection, records)
    index.forgetCache()
    return results


def _rank(location, signature, listed):
    """How the file ``location`` (``(device name, name)``) of ``signature``
    ranks among the copies of its SOP instance, the first indexed: one not
    ``listed`` (a store acknowledged it) before one that is (its store was
    refused, the index having failed on it), then the newest (by
    modification time)."""
    return tuple(location) not in listed, signature[3]


def _file(devices, location):
    """``(path, signature)`` of the file ``location`` (``Replaced``, or
    None) names on one of ``devices``; None if it names none there."""
    device = devices.get(location.deviceName) if location is not None else None
    try:
        path = device.absolute(location.objectFile) if device is not None else None
    except ValueError:
        return None
    return (path, fileSignature(path)) if path is not None else None


def _earlierName(device, path, fitted):
    """The name among ``numberedNames(fitted)`` on ``device`` that is the
    file at ``path`` already (a move to it cut short after its link), or
    None; only a file of more than one name is looked for."""
    if os.stat(path).st_nlink < 2:
        return None
    for name in numberedNames(fitted):
        try:
            if os.path.samefile(path, device.absolute(name)):
                return name
        except OSError:  # no such name (or a link that leads nowhere)
            continue
    return None


def _removeEmptyFolders(folder, root):
    """Remove ``folder`` and the folders above it, up to ``root`` (a
    device's, which stays), while they are empty: those a move left."""
    folder, root = os.path.normpath(folder), os.path.normpath(root)
    while folder != root and os.path.commonpath([folder, root]) == root:
        try:
            os.rmdir(folder)
        except OSError:  # not empty (or gone)
            return
        folder = os.path.dirname(folder)


class _Listed:
    """The copies the index failed on, ``(device name, name)``: on a
    running server those its store lists when asked (``now(location)``,
    ``ObjectStore.isListed``), in each batch: a store refused during the
    regen is one, a copy whose name an acknowledged store took since the
    lists were read no longer is (the store loaded the same lists at
    start-up); for ``dgate -r``, those the lists named when read
    (``listedCopies``)."""

    def __init__(self, read, now=None):
        self.read = read
        self.now = now

    def __contains__(self, location):
        if self.now is not None:
            return self.now(tuple(location))
        return location in self.read


def writeDirectly(index):
    """``write(fn, *args)`` for an index no server is running (``dgate -r``):
    ``fn(connection, *args)`` in a transaction of its own."""
    def write(fn, *args):
        with index.engine.begin() as connection:
            return fn(connection, *args)
    return write


class Regenerator:
    """Re-enters every file of some devices into ``index``.

    ``devices``: every configured MAG device, where the indexed copy of a
    SOP instance met again may lie (compared, whichever devices are
    walked).  ``report(line)`` receives progress lines; counts end up in
    ``indexed``, ``failed``, ``duplicates`` and ``leftOut`` (the DICOM
    files of the ``PRINTER_FILES`` folders not walked, each such folder's
    line in ``warnings`` too).  ``skip``: the real paths
    of the index database's files, never opened (see ``databaseFiles``).
    ``write(fn, *args)``: ``fn(connection, *args)`` committed, by default
    directly (``writeDirectly``), in a server by its index writer.
    ``removeReplaced(Replaced)``: in a server, the store's removal of the
    file (and mirror copy) a new copy replaced (``ObjectStore``), for the
    older copies of the objects stores wrote again during the regen
    (``STALE``), whose files are in ``written`` (``(device name, name)``,
    ``ObjectStore.recordingWrites``); without ``written`` nothing is removed.
    ``mirrors``: the ``Mirrors`` of the devices, whose copies of files
    moved to a name that fits are moved with them.  ``listedNow(location)``:
    in a server, whether its store lists ``(device name, name)`` as a copy
    the index failed on at the time asked (``ObjectStore.isListed``), for
    the stores refused after the lists were read (``_Listed``).
    """

    def __init__(self, index, tags, devices, report=print, batchSize=500, progressEvery=1000, skip=frozenset(),
                 write=None, removeReplaced=None, written=None, mirrors=None, listedNow=None):
        self.index = index
        self.listedNow = listedNow
        self.mirrors = mirrors or Mirrors()
        self.removeReplaced = removeReplaced
        self.written = written
        self.write = write or writeDirectly(index)
        self.devices = {device.name: device for device in devices}
        self.skip = SkippedFiles(skip)  # never opened: the index database's files
        self.tags = tags
        self.report = report
        self.batchSize = batchSize
        self.progressEvery = progressEvery
        self.indexed = self.failed = self.duplicates = self.leftOut = 0
        self.warnings = []  # the lines of the folders left out (PRINTER_FILES), for a server's log
        self._walked = []  # the folders regenerate walked in turn, the last one being walked
        self._moved = set()  # the paths over-long names were moved to (the walk may meet them again)
        self._listed = None  # the copies the index failed on (_Listed), once the lists are read

    def regenerate(self, devices, folder=None):
        """Every file of ``devices`` (or of their ``folder``, absolute)."""
        for device in devices:
            self.report(f"Regen device {device.name}: {folder or device.path}")
            self._walked.append(folder or device.path)
            self.enter(device, iterObjectFiles(device, folder, self.skip, functools.partial(self._leaveOut, device)))
        leftOut = f", {self.leftOut} left out (PRINTER_FILES)" if self.leftOut else ""
        self.report(f"Regeneration complete: {self.indexed} files indexed, {self.failed} failed, "
                    f"{self.duplicates} duplicate SOP instances{leftOut}")
        return self

    def _leaveOut(self, device, path):
        """The folder ``path`` on ``device``, a ``PRINTER_FILES``, is not
        indexed: its DICOM files (those of the ``PRINTER_FILES`` under it
        too) are counted in ``leftOut`` and a warning naming the regendir
        that indexes them is reported and kept in ``warnings``."""
        count, folders = 0, [path]
        while folders:
            count += sum(1 for _ in iterObjectFiles(device, folders.pop(), self.skip, folders.append))
        self.leftOut += count
        relative = os.path.relpath(path, device.path).replace(os.sep, "/")
        warning = (f"[Regen] {path}: {count} DICOM file(s) not indexed: a folder named PRINTER_FILES holds a Conquest "
                   f"print server's jobs (slices without IDs), which regen skips as Conquest's does; if they are "
                   f"objects to index, run 'dgate --regendir:{device.name},{relative}'")
        self.warnings.append(warning)
        self.report(warning)

    def enter(self, device, files):
        """Index ``files``, ``(absolute, relative)`` pairs on ``device``."""
        batch = []
        for path, relative in files:
            if path in self.skip:
                self.failed += 1
                self.report(f"[Regen] {path} -FAILED: the index database, not an object")
                continue
            if path in self._moved:
                continue
            entry = self._read(device, path, relative)
            if entry is not None:
                batch.append(entry)
            if len(batch) >= self.batchSize:
                self._flush(batch)
        self._flush(batch)

    def _read(self, device, path, relative):
        """``(record, path, signature)`` of the file; None when it is no
        whole object, gone (a store replaced it since it was listed), or a
        second name of a file the walk indexes under its other name."""
        signature = fileSignature(path)
        try:
            record = fileRecord(path, self.tags, device.name, relative, self.report)
            if len(storedPath(relative)) > OBJECT_FILE_LENGTH:
                moved = self._moveToAFittingName(device, path, record)
                if moved is None:
                    return None
                record, path = moved
                signature = fileSignature(path)
            return record, path, signature
        except FileNotFoundError:
            self.report(f"[Regen] {path}: gone before it was read (replaced by a new copy)")
        except (DatasetError, OSError) as e:
            self.failed += 1
            self.report(f"[Regen] {path} -FAILED: {e}")
        return None

    def _moveToAFittingName(self, device, path, record):
        """Move the file at ``path`` (of ``record``), whose name is longer
        than the ObjectFile column, to one that fits (``fitPath``, or a
        numbered one: ``placeFile``), never over another file (a copy of
        its SOP instance there, stored since, is then a duplicate the
        newer of which is indexed), and its mirror copy to that name on the
        mirror; the record and path it has there.  The long name goes last:
        a move cut short (kill -9) left the file under both names, and the
        next regen, finding them the same file, moves the mirror copy if
        still needed and removes the long name; the file is indexed under
        the other, by the walk when it meets that name (None).  OSError
        when no name is free."""
        fitted = fitPath(record.objectFile)
        earlier = _earlierName(device, path, fitted)
        name = earlier if earlier is not None else placeFile(
            path, device, fitted, None, lambda folder: os.makedirs(folder, exist_ok=True), lambda folder: None,
            keepSource=True)
        if name is None:
            raise OSError(f"its name is longer than the index's {OBJECT_FILE_LENGTH} characters, and the "
                          f"names that fit are another object's")
        moved = device.absolute(name)
        self._moveMirrorCopy(device, record.objectFile, name)
        removeFile(path)
        _removeEmptyFolders(os.path.dirname(path), device.path)
        if earlier is not None:
            self.report(f"[Regen] {path}: a second name of {moved}, which a move to a name that fits the "
                        f"index's {OBJECT_FILE_LENGTH} characters left when cut short: removed")
            if self._place(moved) is not None:
                return None  # the walk meets it (or met it) there
        else:
            self.report(f"[Regen] {path}: its name is longer than the index's {OBJECT_FILE_LENGTH} characters: "
                        f"moved to {moved}")
        self._moved.add(moved)
        return dataclasses.replace(record, objectFile=name), moved

    def _moveMirrorCopy(self, device, old, new):
        """Give the mirror copy of ``old`` on ``device``, if there is one,
        the name ``new`` (free on the MAG device: a file of that name on
        the mirror is a leftover, or this copy under both names)."""
        source, target = (self.mirrors.path(device.name, name) for name in (old, new))
        if source is None or target is None or not os.path.lexists(source):
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(source, target)
        removeFile(source)  # still there when it was target's file already (rename then does nothing)
        _removeEmptyFolders(os.path.dirname(source), self.mirrors.devices[device.name].path)

    def _flush(self, batch):
        if not batch:
            return
        if self._listed is None:  # in the regen's thread, not when built
            self._listed = _Listed(listedCopies(self.devices.values(), self.report), self.listedNow)
        try:
            results = self.write(enterBatch, self.index, list(batch), self.devices, self.written, self._listed)
        except REFUSED_ENTRY:
            results = [self._enterOne(entry) for entry in batch]
        for (record, path, signature), (outcome, duplicate) in zip(batch, results):
            if outcome == STALE:
                self._removeStale(record, path, signature)
            else:
                self._entered(path, outcome, duplicate)
        batch.clear()

    def _removeStale(self, record, path, signature):
        """Remove the file at ``path`` (of ``record``), an older copy of an
        object stored again during the regen, unless it changed since it
        was read (``signature``)."""
        self.duplicates += 1
        if fileSignature(path) != signature:
            self.report(f"[Regen] {path}: replaced by a new copy since it was read; the new copy's row stays")
            return
        self.removeReplaced(Replaced(record.deviceName, record.objectFile))
        self.report(f"[Regen] {path}: an older copy of an object stored again since the regen began (which found "
                    f"no row naming it): removed, as the store would have")

    def _enterOne(self, entry):
        try:
            return self.write(enterBatch, self.index, [entry], self.devices, self.written, self._listed)[0]
        except REFUSED_ENTRY as e:
            self.failed += 1
            self.report(f"[Regen] {entry[1]} -FAILED: {databaseMessage(e)}")
            return None, None

    def _entered(self, path, outcome, duplicate):
        if outcome == GONE:
            self.report(f"[Regen] {path}: replaced by a new copy since it was read; the new copy's row stays")
            return
        if outcome == ENTERED and duplicate is not None:
            if self._walkedBefore(duplicate, path):
                self.indexed -= 1  # the copy it replaced, counted when entered
            elif self._place(duplicate) is not None:
                duplicate = None  # indexed before the regen, met later by the walk: a duplicate then
        if duplicate is not None:
            self.duplicates += 1
            if self._location(duplicate) in self._listed:
                other = path if outcome == ENTERED else "the indexed copy"
                self.report(f"[Regen] {duplicate}: same SOP instance as {other}, and a copy the index failed on "
                            f"(listed in {JOURNAL}: its sender was told so), not indexed (kept on disk)")
            else:
                newer = path if outcome == ENTERED else "indexed copy"
                self.report(f"[Regen] {duplicate}: same SOP instance as the newer {newer}, not indexed (kept on disk)")
        if outcome == ENTERED:
            self.indexed += 1
            if self.indexed % self.progressEvery == 0:
                self.report(f"[Regen] {self.indexed} files indexed")

    def _location(self, path):
        """``(device name, name)`` of the file at ``path`` on one of the devices; None if on none."""
        for name, device in self.devices.items():
            relative = os.path.relpath(path, device.path)
            if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
                return name, relative.replace(os.sep, "/")
        return None

    def _walkedBefore(self, other, path):
        """Whether ``regenerate`` met the file ``other`` before ``path``: the
        walk takes its folders in turn, in each a folder's files (oldest
        first: ``_walkKey``; ``other`` may be the newer, a listed copy)
        before its subfolders, these by name."""
        places = [self._place(file) for file in (other, path)]
        return None not in places and (places[0] < places[1] or places[0] == places[1]
                                       and _walkKey(other) <= _walkKey(path))

    def _place(self, path):
        """Where the walk meets the folder of ``path``: ``(which folder of
        _walked, path of subfolder names)``; None if it does not."""
        for position, root in enumerate(self._walked):
            relative = os.path.relpath(os.path.dirname(path), root)
            if relative == ".":
                return position, ()
            if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
                return position, tuple(relative.split(os.sep))
        return None
