"""Moving stored objects from one MAG device to another: Conquest's
``--movedatatodevice:to,from`` (``dgate -amFROM,TO``) and
``NightlyMoveThreshold`` / ``NightlyMoveTarget`` (at 02:00, when MAG0 has
less than the threshold free, the least recently used patients move to
the target device until it has the threshold free).

Each object is copied to the same relative name on the target, durably
(``copyFile``); then its image row is pointed at the target in the index
writer, in order with stores; then the old file (and its mirror copy, a
mirror of the target is not made: manual) is deleted.  A crash between two
steps leaves a copy too many, never an object without a file.  An object
stored anew while it moves keeps its new file: the row no longer names the
old one, so the copy on the target is deleted instead.
"""

import os

from sqlalchemy import and_, bindparam
from twisted.logger import Logger

from pacscore.storage.devices import copyFile


class DeviceMover:
    """``devices``: the MAG devices; ``reader`` the archive's
    ``ObjectReader`` (for the copies an object has)."""

    log = Logger()

    def __init__(self, devices, index, reader, workers):
        self.devices = {device.name: device for device in devices}
        self.index = index
        self.reader = reader
        self.workers = workers
        image = index.tables.image
        self._repoint = (image.update()
                         .where(and_(index.imageKey == bindparam("b_uid"), image.c.DeviceName == bindparam("b_from"),
                                     image.c.ObjectFile == bindparam("b_file")))
                         .values(DeviceName=bindparam("b_to")))

    async def move(self, objects, target):
        """Move ``(SOPInstanceUID, DeviceName, ObjectFile)`` ``objects`` to
        the MAG device named ``target``; fires with how many moved."""
        device = self.devices[target]
        objects = [o for o in objects if o[1] != target]
        copied = await self.workers.deferToWorker(self._copy, objects, device)
        moved = await self.index.runWrite(self._repointRows, copied, target)
        stale = [o for o in copied if o not in moved]
        await self.workers.deferToWorker(self._remove, moved, stale, device)
        return len(moved)

    def _copy(self, objects, device):
        """In a worker: copy each object to ``device``; those copied."""
        copied = []
        for uid, deviceName, objectFile in objects:
            if copyFile(self.reader.magPath(deviceName, objectFile), device, objectFile):
                copied.append((uid, deviceName, objectFile))
            else:
                self.log.info("{device}:{path} is gone or was replaced: not moved", device=deviceName,
                              path=objectFile)
        return copied

    def _repointRows(self, connection, objects, target):
        """In the index writer: the objects whose row now names ``target``."""
        moved = [o for o in objects
                 if connection.execute(self._repoint, {"b_uid": o[0], "b_from": o[1], "b_file": o[2],
                                                       "b_to": target}).rowcount]
        self.index.forgetCache()
        return moved

    def _remove(self, moved, stale, device):
        """In a worker: the old files of ``moved`` objects (and their mirror
        copies), and the new copies of ``stale`` ones."""
        paths = [path for _, deviceName, objectFile in moved for path in self.reader.copies(deviceName, objectFile)]
        paths += [device.absolute(objectFile) for _, _, objectFile in stale]
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
