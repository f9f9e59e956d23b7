"""Rebuild the index from the files on the MAG devices (``dgate -r``).

Walks every device (skipping hidden folders such as ``.pacs-tmp``, the
files set aside while being rewritten or moved, and whatever is not a
regular file: a FIFO would block it), reads the index attributes
of each DICOM file (Part-10, or a raw ``.v2`` data set) that reads to its
end and upserts them in batches, the files of a folder oldest first: a
patient, study or series row ends with the values of the object stored
last, as it does live.  When two files hold the same SOP instance, on one
device or two, the newest one wins.
"""

import os
import re

from pacscore.db.index import ImageRecord
from pacscore.storage.attributes import DatasetError
from pacscore.storage.part10 import readFileAttributes
from pacscore.storage.regularfiles import isRegularFile, openRegularFile
from pacscore.storage.store import SOP_INSTANCE_UID

RAW_EXTENSIONS = (".v2",)
_SET_ASIDE = re.compile(r".*(\.pacs-tmp|\.moved-\d+)$")  # a rewrite's or a move's unfinished copy


def _isDicomFile(path):
    """Only a regular file (or a link to one) can be: a FIFO, a socket or a
    device node is not opened."""
    if not isRegularFile(path):
        return False
    if path.lower().endswith(RAW_EXTENSIONS):
        return True
    with openRegularFile(path) as f:
        f.seek(128)
        return f.read(4) == b"DICM"


class MissingDeviceError(Exception):
    """A MAG device's folder is not there (an unmounted volume)."""


def fileRecord(path, tags, deviceName, objectFile):
    """The ``ImageRecord`` of the object file at ``path`` (``objectFile`` on
    ``deviceName``) with the index's ``tags`` (``{tag: VR}``, see
    ``DatabaseLayout.indexedTags``); ``DatasetError`` or ``OSError``
    when it is not a whole object (a truncated file is none)."""
    _, attrs = readFileAttributes(path, {SOP_INSTANCE_UID: None} | tags, wholeDataset=True)
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


class SkippedFiles:
    """Real paths never to open (the index database's files); ``path in``
    it costs a real path only for a file named like one of them or a
    symbolic link (a hard link under another name is not recognised)."""

    def __init__(self, paths=()):
        self.paths = frozenset(paths)
        self.names = {os.path.basename(path) for path in self.paths}

    def __contains__(self, path):
        return (bool(self.paths) and (os.path.basename(path) in self.names or os.path.islink(path))
                and os.path.realpath(path) in self.paths)


def iterObjectFiles(device, folder=None, skip=frozenset()):
    """Yield ``(absolute, relative)`` for every DICOM file on ``device``, or
    only those under ``folder`` (an absolute path on the device).  Files
    whose real path is in ``skip`` (the index database's) are not opened."""
    skip = skip if isinstance(skip, SkippedFiles) else SkippedFiles(skip)
    for folder, subfolders, files in os.walk(folder or device.path):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in _oldestFirst(folder, files):
            if name.startswith(".") or _SET_ASIDE.match(name):
                continue
            path = os.path.join(folder, name)
            if path in skip:
                continue
            try:
                if not _isDicomFile(path):
                    continue
            except OSError:
                continue
            yield path, os.path.relpath(path, device.path).replace(os.sep, "/")


def _oldestFirst(folder, names):
    """``names`` of ``folder`` by modification time, then name."""
    def key(name):
        try:
            return os.stat(os.path.join(folder, name), follow_symlinks=False).st_mtime, name
        except OSError:
            return 0, name
    return sorted(names, key=key)


class Regenerator:
    """Re-enters every file of some devices into ``index``.

    ``devices``: every configured MAG device, where the indexed copy of a
    SOP instance met again may lie (compared, whichever devices are
    walked).  ``report(line)`` receives progress lines; counts end up in
    ``indexed``, ``failed`` and ``duplicates``.  ``skip``: the real paths
    of the index database's files, never opened (see ``databaseFiles``).
    """

    def __init__(self, index, tags, devices, report=print, batchSize=500, progressEvery=1000, skip=frozenset()):
        self.index = index
        self.devices = {device.name: device for device in devices}
        self.skip = SkippedFiles(skip)  # never opened: the index database's files
        self.tags = tags
        self.report = report
        self.batchSize = batchSize
        self.progressEvery = progressEvery
        self.indexed = self.failed = self.duplicates = 0

    def regenerate(self, devices, folder=None):
        """Every file of ``devices`` (or of their ``folder``, absolute)."""
        for device in devices:
            self.report(f"Regen device {device.name}: {folder or device.path}")
            self.enter(device, iterObjectFiles(device, folder, self.skip))
        self.report(f"Regeneration complete: {self.indexed} files indexed, {self.failed} failed, "
                    f"{self.duplicates} duplicate SOP instances")
        return self

    def enter(self, device, files):
        """Index ``files``, ``(absolute, relative)`` pairs on ``device``."""
        batch = []
        for path, relative in files:
            if path in self.skip:
                self.failed += 1
                self.report(f"[Regen] {path} -FAILED: the index database, not an object")
                continue
            record = self._record(device, path, relative)
            if record is not None:
                batch.append((record, path))
            if len(batch) >= self.batchSize:
                self._flush(batch)
        self._flush(batch)

    def _record(self, device, path, relative):
        try:
            return fileRecord(path, self.tags, device.name, relative)
        except (DatasetError, OSError) as e:
            self.failed += 1
            self.report(f"[Regen] {path} -FAILED: {e}")
            return None

    def _flush(self, batch):
        if not batch:
            return
        records = [record for record, _ in batch]
        try:
            results = self.index.storeMany(records)
        except ValueError:
            results = [self._storeOne(record, path) for record, path in batch]
        for (_, path), replaced in zip(batch, results):
            if replaced is False:
                continue
            self.indexed += 1
            if replaced is not None:
                self._keepNewest(path, replaced)
            if self.indexed % self.progressEvery == 0:
                self.report(f"[Regen] {self.indexed} files indexed")
        batch.clear()

    def _storeOne(self, record, path):
        try:
            return self.index.storeMany([record])[0]
        except ValueError as e:
            self.failed += 1
            self.report(f"[Regen] {path} -FAILED: {e}")
            return False

    def _keepNewest(self, path, replaced):
        """Two files hold one SOP instance: index the newer one."""
        self.duplicates += 1
        olderDevice = self.devices.get(replaced.deviceName)
        older = os.path.join(olderDevice.path, *replaced.objectFile.split("/")) if olderDevice else None
        record = (self._record(olderDevice, older, replaced.objectFile)
                  if older and os.path.exists(older) and os.path.getmtime(older) > os.path.getmtime(path) else None)
        if record is not None:
            self.index.storeMany([record])
            self.report(f"[Regen] {path}: same SOP instance as the newer {older}; keeping the newer")
        else:
            self.report(f"[Regen] {path}: same SOP instance as {replaced.objectFile}; keeping the newer")
