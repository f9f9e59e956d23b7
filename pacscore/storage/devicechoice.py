"""Which MAG device a new object goes to, as Conquest's ``GetDevice``: the
first of MAG0, MAG1 ... with more than ``MAGDeviceFullThreshHold`` MB free
(default 30), so that a full MAG0 spills over to MAG1 instead of refusing
objects.  When no device has that much, MAG0 (its writes may still fit, or
fail with A700).  ``MAGDeviceThreshold``'s clean-up (``space``) keeps MAG0
from filling when it is set above this threshold, as Conquest intends.

Free space is looked at again by the I/O thread about to write an object
(``check``) once a second, or sooner once a quarter of the threshold has
been written since the last look (a fast ingest would run through the
margin within the second); the reactor reads ``current`` when an object
starts to arrive (where a large one is spooled).  A write that finds a
device full all the same (ENOSPC) has it left at once (``spillFrom``), for
the next device with room, until it has the threshold and the size of that
write free (the failed file removed may leave more than the threshold: a
large object would go back to fail again).  A device that takes no file (not there, its
disk unmounted, read-only: ``checkWritable``) is left too, in one log line
until it takes files again.  With one device, or
``MAGDeviceFullThreshHold = 0``, nothing is looked at (MAG0 takes every
object).
"""

import threading
import time

from twisted.logger import Logger

from pacscore.storage.devices import checkWritable, isDiskFull
from pacscore.storage.space import MEGABYTE, freeSpace

DEFAULT_FULL_THRESHOLD = 30 * MEGABYTE


class DeviceChoice:
    """``devices``: the MAG devices in order; ``threshold``: bytes a device
    needs free to take new objects (0: MAG0 always)."""

    log = Logger()
    interval = 1.0  # seconds between looks at the free space

    def __init__(self, devices, threshold=DEFAULT_FULL_THRESHOLD, freeSpace=freeSpace, clock=time.monotonic,
                 checkDevice=checkWritable):
        self.devices = list(devices)
        self.threshold = threshold
        self.freeSpace = freeSpace
        self.clock = clock
        self.checkDevice = checkDevice
        self._unusable = set()  # the names of the devices found taking no file, logged
        self._needs = {}  # name -> bytes free a device found full by a write needs to be taken again
        self.current = self.devices[0]
        self._lookedAt = None
        self._written = 0  # bytes written since the last look
        self._looking = threading.Lock()

    @classmethod
    def fromIni(cls, devices, ini):
        return cls(devices, max(ini.getint("MAGDeviceFullThreshHold", DEFAULT_FULL_THRESHOLD // MEGABYTE), 0)
                   * MEGABYTE)

    @property
    def spills(self):
        """Whether objects go to another device than MAG0 when it has no room."""
        return self.threshold > 0 and len(self.devices) > 1

    def check(self, size=0):
        """In an I/O thread, before an object of ``size`` bytes is written:
        the device it goes to, free space looked at again when a second has
        passed or a quarter of the threshold has been written since."""
        if not self.spills:
            return self.current
        self._written += size  # a tally: one lost to a race only delays a look
        now = self.clock()
        if (self._lookedAt is not None and now - self._lookedAt < self.interval
                and self._written <= self.threshold // 4):
            return self.current
        if self._looking.acquire(blocking=False):  # one thread looks (statvfs of every device, which a
            try:                                   # hung NFS mount may hold); the others go on meanwhile
                self._lookedAt, self._written = now, 0
                self._choose()
            finally:
                self._looking.release()
        return self.current

    def spillFrom(self, device, size, error):
        """In an I/O thread, after a write of ``size`` bytes on ``device``
        failed with ``error``, the disk full (``isDiskFull``) or taking no
        file (logged): free space looked at again at once, ``device`` left
        until it has the threshold and ``size`` free, or takes files again;
        the device with room new objects go to now, or None when no other
        has room."""
        if not self.spills:
            return None
        with self._looking:
            self._lookedAt, self._written = self.clock(), 0
            if isDiskFull(error):
                self._needs[device.name] = self.threshold + size
            else:
                self._leave(device, error)
            return self._choose(full=device)

    def _choose(self, full=None):
        """Make the first device with room (but ``full``) current, MAG0 when
        none has; the one with room, or None."""
        roomy = next((device for device in self.devices
                      if device is not full and self._free(device) > self._needs.get(device.name, self.threshold)),
                     None)
        if roomy is not None:
            self._needs.pop(roomy.name, None)
        chosen = roomy or self.devices[0]
        if chosen is not self.current:
            if chosen is self.devices[0]:
                text = "{device} has room again: new objects go to {device}"
            elif self.current.name in self._unusable:  # its own line says why
                text = "new objects go to {device}"
            else:
                text = ("{previous} has {threshold} MB free or less (MAGDeviceFullThreshHold): "
                        "new objects go to {device}")
            self.log.warn(text, previous=self.current.name, device=chosen.name, threshold=self.threshold // MEGABYTE)
            self.current = chosen
        return roomy

    def _free(self, device):
        """The free bytes of ``device``; 0 when it takes no file, or its free
        space is unknown (logged when that begins)."""
        try:
            self.checkDevice(device)
            free = self.freeSpace(device.path)
        except OSError as e:
            self._leave(device, e)
            return 0
        self._unusable.discard(device.name)
        return free

    def _leave(self, device, error):
        """``device`` takes no file, for ``error``: logged when that begins."""
        if device.name not in self._unusable:
            self._unusable.add(device.name)
            self.log.warn("{device} takes no new objects: {error}", device=device.name, error=error)
