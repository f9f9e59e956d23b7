"""Free space on MAG0: whole patients deleted, least recently accessed first.

``SpaceKeeper.makeSpace`` serves the control command ``makespace``.
``SpaceKeeper.checkFromThread`` is Conquest's ``MAGDeviceThreshold``
(manual, dicom.ini): the I/O thread that is about to write an object calls
it; when MAG0 has less than the threshold free (in MB), patients are
deleted, oldest ``AccessTime`` first, until 5 MB more than the threshold is
free.  That runs in the background, one clean-up at a time, so the object
being written waits for nothing (if the disk is really full it gets A700,
as without a threshold).  A threshold of 0, or ``IgnoreMAGDeviceThreshHold
= 1``, turns it off.
"""

import shutil

from sqlalchemy import select
from twisted.internet import defer
from twisted.logger import Logger

from pacscore.db.query import PATIENT_ID, QueryKey

MEGABYTE = 1 << 20
MARGIN = 5 * MEGABYTE  # Conquest: "until the free disk space is about 5 MB larger"


def freeSpace(path):
    """Free bytes on the file system of ``path`` (blocking)."""
    return shutil.disk_usage(path).free


def _patientsByAccess(connection, query):
    """In a reader thread: patient IDs, least recently accessed first."""
    patient = query.tables[0]
    return connection.execute(select(patient.key).order_by(patient.table.c.AccessTime, patient.key)).scalars().all()


class SpaceKeeper:
    """``device`` is MAG0; ``actions`` the archive's ``LocalActions``;
    ``threshold`` Conquest's MAGDeviceThreshold in bytes (0: off)."""

    log = Logger()
    freeSpace = staticmethod(freeSpace)

    def __init__(self, device, index, query, actions, workers, threshold=0):
        self.device = device
        self.index = index
        self.query = query
        self.actions = actions
        self.workers = workers
        self.threshold = threshold
        self.cleaning = None  # the Deferred of the clean-up under way, or None

    async def makeSpace(self, wanted, report=lambda line: None):
        """Delete patients until ``wanted`` bytes are free on the device,
        calling ``report`` with a line for each; fires with the free bytes
        (fewer than wanted when there was nobody left to delete)."""
        free = await self.workers.deferToWorker(self.freeSpace, self.device.path)
        for patientID in await self.index.runQuery(_patientsByAccess, self.query):
            if free >= wanted:
                break
            if not patientID or any(c in patientID for c in "*?\\"):
                continue  # would not select this patient alone
            instances = await self.index.runQuery(self.query.instances, "IMAGE",
                                                  [QueryKey(PATIENT_ID, "LO", patientID)])
            count = await self.actions.removeInstances(instances)
            report(f"deleted patient {patientID}: {count} object(s)")
            free = await self.workers.deferToWorker(self.freeSpace, self.device.path)
        return free

    def checkFromThread(self):
        """In an I/O thread, before an object is written: start a clean-up
        (in the reactor) when the device is below the threshold."""
        if self.threshold and self.freeSpace(self.device.path) < self.threshold:
            self.workers.reactor.callFromThread(self._startCleaning)

    def _startCleaning(self):
        if self.cleaning is not None:
            return
        wanted = self.threshold + MARGIN
        self.log.warn("less than {threshold} MB free on {device} (MAGDeviceThreshold): deleting the least "
                      "recently accessed patients", threshold=self.threshold // MEGABYTE, device=self.device.name)
        report = lambda line: self.log.info("MAGDeviceThreshold: {line}", line=line)
        self.cleaning = defer.ensureDeferred(self.makeSpace(wanted, report))
        self.cleaning.addCallback(self._cleaned, wanted)
        self.cleaning.addErrback(lambda failure: self.log.failure("MAGDeviceThreshold clean-up failed", failure))
        self.cleaning.addBoth(self._idle)

    def _cleaned(self, free, wanted):
        level = self.log.info if free >= wanted else self.log.warn
        level("{free} MB free on {device} after the clean-up", free=free // MEGABYTE, device=self.device.name)

    def _idle(self, _):
        self.cleaning = None
