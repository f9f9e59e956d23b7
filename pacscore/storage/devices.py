"""MAG devices: the folders images are stored in (MAGDevice0 ... in dicom.ini).

Each device has a hidden ``.pacs-tmp`` folder on the same file system for
objects being received, so a finished object is renamed into place. The
mount point a device's folder lies on when it is prepared is remembered:
while that is no longer a mount point, the folder is on the disk beneath,
its own disk unmounted while pacs runs, and takes nothing
(``checkPresent``); a disk mounted there again (even with another device
number: USB, NFS, tmpfs) is taken at once. Creating a
file while other files are being fsynced waits for the file system's
journal (0.3-0.8 ms here, more than the fsync itself), so empty temporary
files are created ahead, in batches, off the path of any one object.
"""

import collections
import errno
import itertools
import os
import shutil
import stat
import threading

from pacscore.db.errors import DISK_FULL, hasCode
from pacscore.storage.placing import MAX_NAME_SUFFIX, placeFile

TEMP_FOLDER = ".pacs-tmp"
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
UNWRITABLE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
COPY_CHUNK = 1 << 20

_renaming = threading.Lock()  # copyFile: no older copy overwrites a newer one


class MagDevice:
    """One storage folder, named like Conquest's devices: ``MAG0``, ``MAG1``..."""

    reservoirSize = 64

    def __init__(self, name, path):
        self.name = name
        self.path = os.path.abspath(path)
        self.tempDir = os.path.join(self.path, TEMP_FOLDER)
        self._reservoir = collections.deque()
        self._refilling = threading.Lock()
        self._names = itertools.count()
        self.mountPoint = None  # the mount point the folder lies on once prepared, but "/"
        self.heldBack = False  # not prepared: absent at start-up, move marks waiting for it (holdBack)
        self._preparing = threading.Lock()

    def prepare(self):
        """Create the folders; remove objects left half-received by a crash
        (they were never acknowledged), fill the temporary file reservoir
        and remember the mount point the folder lies on."""
        os.makedirs(self.tempDir, exist_ok=True)
        self.mountPoint = mountPointOf(self.path)
        for name in os.listdir(self.tempDir):
            os.unlink(os.path.join(self.tempDir, name))
        self.refillTemporaryFiles()

    def holdBack(self):
        """At start-up, instead of ``prepare``, for a device absent
        (``isAbsent``) whose move marks are kept: nothing is written in its
        folder (an empty mount point), so the next start-up finds it absent
        again; ``checkPresent`` finds it not there until its folder is no
        longer empty (its disk mounted again), and prepares it then."""
        self.heldBack = True

    def prepareIfBack(self):
        """For ``checkPresent``, of a device held back: FileNotFoundError
        while its folder is empty; prepared once it is not."""
        with self._preparing:
            if not self.heldBack:
                return
            if not os.listdir(self.path):
                raise FileNotFoundError(errno.ENOENT, f"{self.name} is not there (a disk not mounted?): its folder "
                                        f"is empty, and moves cut short wait for it", self.path)
            self.prepare()
            self.heldBack = False

    def takeTemporaryFile(self):
        """The path of an empty file in ``tempDir``, for this caller alone.
        Returns ``(path, reservoirLow)``: refill when ``reservoirLow``."""
        try:
            path = self._reservoir.popleft()
        except IndexError:
            path = self._createTemporaryFile()
        return path, len(self._reservoir) < self.reservoirSize // 2

    def refillTemporaryFiles(self):
        """Create empty temporary files until the reservoir is full (blocking;
        run it in the I/O pool). Concurrent calls do the work once."""
        if not self._refilling.acquire(blocking=False):
            return
        try:
            while len(self._reservoir) < self.reservoirSize:
                self._reservoir.append(self._createTemporaryFile())
        finally:
            self._refilling.release()

    def recover(self):
        """After a temporary file was found gone (the device folder replaced,
        e.g. by an empty one) while the device is there (its caller checked,
        ``checkPresent``): its temporary folder made again and the
        reservoir, whose files went with the old folder, emptied."""
        os.makedirs(self.tempDir, exist_ok=True)
        self._reservoir.clear()

    def _createTemporaryFile(self):
        path = os.path.join(self.tempDir, f"store-{os.getpid()}-{next(self._names)}.part")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return path

    def absolute(self, relative):
        """The absolute path of a file stored as ``relative`` (``/`` separated);
        ValueError when that is not inside the device folder."""
        path = os.path.normpath(os.path.join(self.path, *relative.split("/")))
        if not path.startswith(os.path.join(self.path, "")):
            raise ValueError(f"{relative!r} is not inside {self.name} ({self.path})")
        return path

    def __repr__(self):
        return f"MagDevice({self.name!r}, {self.path!r})"


def removeFile(path):
    """Delete ``path``; a file already gone is no error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def removeIfSame(path, identity, identify=None):
    """Delete ``path`` if it is still the file of ``identity`` (``identityOf``,
    or what ``identify(path)`` gives); a file stored there since stays
    (never overwritten: put back with a link).  False when it stays."""
    aside = f"{path}.moved-{os.getpid()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True
    if (identify or identityOf)(aside) == identity:
        os.unlink(aside)
        return True
    try:
        os.link(aside, path)
    except FileExistsError:
        pass  # a newer object is there already
    os.unlink(aside)
    return False


def isDiskFull(error):
    """True when an OSError means the disk or quota is full, or the index
    database's error (SQLAlchemy's ``DBAPIError``) that its disk or file is
    (``pacscore.db.errors.DISK_FULL``)."""
    return hasCode(error, DISK_FULL) or isinstance(error, OSError) and error.errno in FULL_ERRNOS


def isUnwritable(error):
    """True when ``error`` is an OSError saying a file system is read-only,
    or a folder not writable by pacs."""
    return isinstance(error, OSError) and error.errno in UNWRITABLE_ERRNOS


def fsyncDirectory(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makeDirectories(path):
    """Like ``os.makedirs``, but fsyncs the parent of every folder it creates,
    so the new path survives a crash once the file in it is fsynced."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        fsyncDirectory(os.path.dirname(folder))


def copyFile(source, device, relative, convert=None, sopInstanceUID=None):
    """Copy the file ``source`` into ``device`` as ``relative``, durably
    (temporary file, fsync, rename, fsync of the folder; the device's
    temporary folder is made again if it went, but not the device folder:
    a disk that is not mounted is an error, not an empty folder to fill).
    Blocking.  Returns ``(fileIdentity of the file copied, name given)``,
    or None, copying nothing, when ``source`` is gone, or is replaced by
    another file while it is copied (a new object stored under its name);
    OSError when the device cannot be written.  ``convert``: a function of
    the file's bytes giving the bytes to write instead (a recompression).
    With ``sopInstanceUID`` a file of another SOP instance under that name
    is never replaced: the copy gets a numbered name (``placeFile``);
    without, the name is the mirror copy's own and is replaced."""
    target = device.absolute(relative)
    try:
        original = open(source, "rb")
    except FileNotFoundError:
        return None
    temporary = None
    try:
        with original:
            copied = fileIdentity(os.fstat(original.fileno()))
            checkPresent(device)
            if not os.path.isdir(device.tempDir):
                device.prepare()
            temporary, low = device.takeTemporaryFile()
            if low:
                device.refillTemporaryFiles()
            with open(temporary, "wb") as out:
                if convert is None:
                    shutil.copyfileobj(original, out, COPY_CHUNK)
                else:
                    out.write(convert(original.read()))
                out.flush()
                os.fsync(out.fileno())
        folder = os.path.dirname(target)
        makeDirectories(folder)
        with _renaming:
            if identityOf(source) != copied:
                return None
            if sopInstanceUID is None:
                os.replace(temporary, target)
                fsyncDirectory(folder)
                name = relative
            else:
                name = placeFile(temporary, device, relative, sopInstanceUID, makeDirectories, fsyncDirectory)
                if name is None:
                    raise FileExistsError(errno.EEXIST, f"{relative} and its {MAX_NAME_SUFFIX} numbered variants "
                                          f"hold other SOP instances", target)
            temporary = None
        return copied, name
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)


def mountPointOf(path):
    """The nearest of ``path`` (symbolic links resolved) and the folders
    above it that is a mount point; None when that is ``/``."""
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return None if path == os.path.dirname(path) else path


def checkPresent(device):
    """FileNotFoundError when the folder of ``device`` is not there, or the
    mount point it lay on when it was prepared is no longer one (its disk
    unmounted: what is written on the disk beneath would be hidden once the
    disk is mounted again), or it is held back and still empty
    (``MagDevice.holdBack``)."""
    try:
        status = os.stat(device.path)
    except (FileNotFoundError, NotADirectoryError):
        status = None
    if status is None or not stat.S_ISDIR(status.st_mode):
        raise FileNotFoundError(errno.ENOENT, f"{device.name} is not there (a disk not mounted?)", device.path)
    if device.mountPoint is not None and not os.path.ismount(device.mountPoint):
        raise FileNotFoundError(errno.ENOENT, f"{device.name} is not there (a disk not mounted?): "
                                f"{device.mountPoint} is no longer a mount point; mount its disk there again, "
                                f"or restart pacs to take the folder as it is now", device.path)
    if device.heldBack:
        device.prepareIfBack()


def isAbsent(device):
    """Before it is prepared (at start-up): whether the folder of
    ``device`` is not there (``checkPresent``), or is empty: a folder pacs
    has used holds its temporary folder, so an empty one is a mount point
    whose disk is not mounted (or a device pacs never used)."""
    try:
        checkPresent(device)
        return not os.listdir(device.path)
    except OSError:
        return True


def checkWritable(device):
    """OSError when ``device`` takes no new file: not there
    (``checkPresent``), its file system read-only (EROFS), or its folder not
    writable by pacs (EACCES)."""
    checkPresent(device)
    if os.statvfs(device.path).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, f"{device.name} is read-only", device.path)
    if not os.access(device.path, os.W_OK):
        raise PermissionError(errno.EACCES, f"{device.name} is not writable by pacs", device.path)


def fileIdentity(status):
    """What tells a file (its ``os.stat``) from its replacement: inode, size,
    modification time."""
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def identityOf(path):
    """The ``fileIdentity`` of ``path``, or None when there is no such file."""
    try:
        return fileIdentity(os.stat(path))
    except FileNotFoundError:
        return None


def lastingIdentity(identity):
    """Of a ``fileIdentity`` (None: None), what a remount, a reboot or a
    restore keeping the times (``cp -a``, ``rsync -a``, ``tar``) leaves as
    it is, for a comparison at a later start: the size and the
    modification time in whole seconds (device and inode numbers change
    with those, and some copies keep no fraction of a second); a file
    stored anew under the name is written later."""
    return None if identity is None else (identity[2], identity[3] // 1_000_000_000)


def lastingIdentityOf(path):
    """The ``lastingIdentity`` of ``path``, or None when there is no such file."""
    return lastingIdentity(identityOf(path))
