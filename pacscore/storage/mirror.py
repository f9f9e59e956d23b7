"""Mirror devices (``MIRRORDevices``, ``MIRRORDevice0`` ... in dicom.ini):
MIRRORn holds a second copy of every object stored on MAGn, for safety
(manual: "Each MAG device optionally has a mirror device where a duplicate
of the image is stored").

Copies are made after the object is acknowledged, as Conquest does, but
not from a queue in memory: the export queue gets a ``MIRRORCOPY`` job per
object in the object's own index transaction, so neither a crash nor a
mirror disk that fails loses a copy; a failed copy is tried again every
RetryDelay seconds, without limit (Conquest's CopyFailures file).  A copy
is written like a stored object: temporary file, fsync, rename, fsync of
its folder.  The objects of a MAG device can be verified against its
mirror (``dgate --verifymirrordisk:MAGn``); reads fall back on the mirror
copy of a file missing from its MAG device (``ObjectReader``); deleting an
object deletes both copies.  A mirror folder that is not there (a disk not
mounted) fails the copies, which are retried; it is never made anew.
"""

import os

from twisted.logger import Logger

from pacscore.storage.devices import COPY_CHUNK, MagDevice, copyFile, removeFile
from pacscore.storage.part10 import fileError

MIRROR_COPY = "MIRRORCOPY"  # the export queue's name for the job of a copy

MISSING = "missing"
DIFFERENT = "different"


class Mirrors:
    """The mirror devices, by the name of the MAG device each mirrors."""

    log = Logger()

    def __init__(self, mirrors=None):
        self.devices = dict(mirrors or {})

    @classmethod
    def fromConfiguration(cls, configuration):
        """MIRRORn of ``configuration.mirrorDevices`` for MAGn; a mirror
        without its MAG device is logged and left out."""
        magNames = {name for name, _ in configuration.magDevices}
        mirrors = {}
        for name, path in configuration.mirrorDevices:
            magName = "MAG" + name[len("MIRROR"):]
            if magName in magNames:
                mirrors[magName] = MagDevice(name, path)
            else:
                cls.log.warn("{name} ({path}) is not used: there is no {mag}", name=name, path=path, mag=magName)
        return cls(mirrors)

    def __bool__(self):
        return bool(self.devices)

    @property
    def mirrored(self):
        """The names of the MAG devices that have a mirror."""
        return frozenset(self.devices)

    def prepare(self):
        """Create the mirror folders (OSError when one cannot be made)."""
        for magName, mirror in sorted(self.devices.items()):
            mirror.prepare()
            self.log.info("{mag} is mirrored on {name} ({path})", mag=magName, name=mirror.name, path=mirror.path)

    def path(self, deviceName, objectFile):
        """Where the mirror copy of ``objectFile`` of MAG device
        ``deviceName`` is (or would be); None without a mirror."""
        mirror = self.devices.get(deviceName)
        if mirror is None:
            return None
        try:
            return mirror.absolute(objectFile)
        except ValueError:
            return None

    def copy(self, deviceName, objectFile, source):
        """Copy the file ``source`` (``objectFile`` of ``deviceName``) to
        its mirror, durably (``copyFile``); returns whether the copy was put
        in place.  OSError when the mirror cannot be written."""
        return copyFile(source, self.devices[deviceName], objectFile) is not None

    def remove(self, deviceName, objectFile):
        """Delete the mirror copy of ``objectFile``, if there is one."""
        path = self.path(deviceName, objectFile)
        if path is not None:
            removeFile(path)

    def verify(self, deviceName, objects, magPath, queued=frozenset(), report=print, progressEvery=1000):
        """Compare the ``(SOPInstanceUID, ObjectFile)`` ``objects`` of MAG
        device ``deviceName`` (``magPath(deviceName, objectFile)`` gives
        their paths) with their mirror copies, but those whose copy is
        ``queued``; blocking.  Each problem and every ``progressEvery``
        files is reported; returns a ``Verification``."""
        verification = Verification(deviceName, self.devices[deviceName].name)
        for count, (uid, objectFile) in enumerate(objects, 1):
            if objectFile in queued:
                verification.queued += 1
            else:
                path = magPath(deviceName, objectFile)
                try:
                    problem = self.compare(deviceName, objectFile, path)
                except OSError as e:
                    verification.unreadable += 1
                    report(f"{deviceName}:{objectFile}: cannot be read ({e.strerror or e})")
                else:
                    damage = fileError(path) if problem == DIFFERENT else None
                    if problem is None:
                        verification.identical += 1
                    elif damage is not None:  # the mirror copy may be the good one: not overwritten
                        verification.unreadable += 1
                        report(f"{deviceName}:{objectFile}: mirror copy different, and the file on "
                               f"{deviceName} is damaged ({damage}); its mirror copy is kept")
                    else:
                        verification.damaged.append((uid, deviceName, objectFile))
                        report(f"{deviceName}:{objectFile}: mirror copy {problem}")
            if count % progressEvery == 0:
                report(f"{count} of {len(objects)} files of {deviceName} verified")
        return verification

    def compare(self, deviceName, objectFile, source):
        """None when the mirror copy has the bytes of ``source``, else
        ``MISSING`` or ``DIFFERENT``; OSError when ``source`` cannot be read."""
        path = self.path(deviceName, objectFile)
        try:
            copy = open(path, "rb") if path is not None else None
        except FileNotFoundError:
            copy = None
        if copy is None:
            return MISSING
        with copy, open(source, "rb") as original:
            if os.fstat(copy.fileno()).st_size != os.fstat(original.fileno()).st_size:
                return DIFFERENT
            while True:
                chunk = original.read(COPY_CHUNK)
                if chunk != copy.read(COPY_CHUNK):
                    return DIFFERENT
                if not chunk:
                    return None


class Verification:
    """What ``Mirrors.verify`` found: files whose copy is identical, still
    ``queued``, missing or different (``damaged``: their SOPInstanceUID,
    DeviceName, ObjectFile), and files ``unreadable`` (or damaged) on the
    MAG device."""

    def __init__(self, deviceName, mirrorName):
        self.deviceName = deviceName
        self.mirrorName = mirrorName
        self.identical = 0
        self.queued = 0
        self.unreadable = 0
        self.damaged = []

    @property
    def problems(self):
        return len(self.damaged) + self.unreadable

    def summary(self):
        return (f"{self.deviceName} against {self.mirrorName}: {self.identical} identical, "
                f"{len(self.damaged)} missing or different (queued for copying), "
                f"{self.unreadable} unreadable on {self.deviceName}, {self.queued} not copied yet")
