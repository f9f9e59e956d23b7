"""Moving stored objects from one MAG device to another: Conquest's
``--movedatatodevice:to,from`` (``dgate -amFROM,TO``) and
``NightlyMoveThreshold`` / ``NightlyMoveTarget`` (at 02:00, when MAG0 has
less than the threshold free, the least recently used patients move to
the target device until it has the threshold free).

``ArchiveCompression`` (a Conquest compression code, default ``as``: as
stored) converts each object on its way to the target device; an object
the codecs here cannot convert moves as it is, with a log line, as does a
Conquest ".v2" file (no file meta to record another transfer syntax in).

Each object is read as a retrieve reads it (``ObjectReader.wholeFile``):
its file, or its mirror copy when that file is missing, cut short or
damaged and the copy is whole; an object with no whole file is not moved
(logged).  It is copied to the same relative name on the target, durably
(``copyFile``), or, when a file of another SOP instance has that name
there (a FileNameSyntax that does not name every instance apart), to a
numbered one (``_1``, ``_2`` ... as a store gives), and from there to the
target's mirror, when it has one (a mirror that cannot be written stops
the move as the target would); then its image row is
pointed at the target and that name in the index writer, in order with stores; then the old file and its
mirror copy are deleted.  The objects are marked in the index before
they are copied (``MoveMarks``), so a crash between two steps leaves a
copy too many, never an object without a file, and the next start-up
deletes that copy; a target
that fills up (or a write that fails) in the middle of a batch ends the
move after the objects copied so far.  An object stored anew while it
moves (under the same name or another) keeps its new file: each step
checks that the file is still the one copied, and the copy
on the target is deleted instead.
"""

from sqlalchemy import and_, bindparam
from twisted.logger import Logger

from pacscore.codecs.transcode import TranscodeError
from pacscore.storage.devices import copyFile, identityOf, removeFile, removeIfSame
from pacscore.storage.attributes import DatasetError
from pacscore.codecs.jpeglossy import DEFAULT_QUALITY
from pacscore.storage.recompression import recompressedFile


_GONE = "gone"  # the identity of a file that is not there


class MoveStopped(Exception):
    """A move ended early: ``moved`` objects moved, then ``error`` (an
    OSError writing the target) stopped it."""

    def __init__(self, moved, error):
        super().__init__(f"{moved} object(s) moved, then: {error}")
        self.moved = moved
        self.error = error


class DeviceMover:
    """``devices``: the MAG devices; ``reader`` the archive's
    ``ObjectReader`` (for the copies an object has); ``marks`` its
    ``MoveMarks``; ``compression``: ArchiveCompression."""

    log = Logger()

    def __init__(self, devices, index, reader, workers, marks, compression="as", lossyQuality=DEFAULT_QUALITY):
        self.compression = compression.strip().lower() or "as"
        self.lossyQuality = lossyQuality
        self.devices = {device.name: device for device in devices}
        self.index = index
        self.reader = reader
        self.workers = workers
        self.marks = marks
        image = index.tables.image
        self._repoint = (image.update()
                         .where(and_(index.imageKey == bindparam("b_uid"), image.c.DeviceName == bindparam("b_from"),
                                     image.c.ObjectFile == bindparam("b_file")))
                         .values(DeviceName=bindparam("b_to"), ObjectFile=bindparam("b_name")))

    async def move(self, objects, target):
        """Move ``(SOPInstanceUID, DeviceName, ObjectFile)`` ``objects`` to
        the MAG device named ``target``; fires with how many moved.  When a
        copy fails (OSError: the target is full or gone), the objects
        copied before it are moved, then MoveStopped is raised."""
        device = self.devices[target]
        objects = [o for o in objects if o[1] != target]
        await self.index.runWrite(self.marks.add, objects, target)
        copied, copyError = await self.workers.deferToWorker(self._copy, objects, device)
        moved = await self.index.runWrite(self._repointRows, copied, target)
        stale = [o for o in copied if o not in moved]
        await self.workers.deferToWorker(self._remove, moved, stale, device)
        await self.index.runWrite(self.marks.remove, objects, target)
        if copyError is not None:
            raise MoveStopped(len(moved), copyError)
        return len(moved)

    def _copy(self, objects, device):
        """In a worker: copy each object to ``device``, and to its mirror
        when it has one; ``(copied, error)``: ``(object, (identity of its
        file on its device, name on device))`` of those copied, and the
        OSError that stopped the copying (the target or its mirror cannot
        be written), or None."""
        copied = []
        for uid, deviceName, objectFile in objects:
            source = self._source(deviceName, objectFile)
            if source is None:
                continue
            path, identity = source
            copy = None
            try:
                copy = copyFile(path, device, objectFile,
                                convert=None if self.compression == "as" else self._recompressed, sopInstanceUID=uid)
                if copy is not None:
                    self._mirror(device, copy[1])
            except OSError as e:
                if copy is not None:
                    self.reader.removeCopies(device.name, copy[1])
                return copied, e
            if copy is None:
                self._notMoved(deviceName, objectFile)
            else:
                copied.append(((uid, deviceName, objectFile), (identity or copy[0], copy[1])))
        return copied, None

    def _source(self, deviceName, objectFile):
        """In a worker: ``(path, identity)``, the file of an object to copy,
        as a retrieve reads it: its file on its MAG device when that reads
        to its end, else its whole mirror copy (logged); ``identity`` that of
        the file on its device (None when gone) when the mirror copy is
        read, else None: the one copied.  None, logged, when neither can be
        read."""
        magPath = self.reader.magPath(deviceName, objectFile)
        identity = identityOf(magPath)
        try:
            path = self.reader.wholeFile(deviceName, objectFile)
        except FileNotFoundError:
            self._notMoved(deviceName, objectFile)
            return None
        except (OSError, DatasetError) as e:
            self.log.warn("{device}:{path} cannot be read ({error}), nor a whole mirror copy: not moved",
                          device=deviceName, path=objectFile, error=e)
            return None
        return path, None if path == magPath else (identity or _GONE)

    def _notMoved(self, deviceName, objectFile):
        """Log that the file of an object to move went before it was copied."""
        self.log.warn("{device}:{path} is gone or was replaced: not moved", device=deviceName, path=objectFile)

    def _mirror(self, device, name):
        """Copy the file ``name`` just copied to ``device`` to the mirror
        of ``device``, if it has one, durably; OSError when it cannot be
        written."""
        if device.name in self.reader.mirrors.mirrored:
            self.reader.mirrors.copy(device.name, name, device.absolute(name))

    def _recompressed(self, content):
        """A Part-10 file's bytes in the transfer syntax ArchiveCompression
        asks for (``content`` itself when that is its own, or when it
        cannot be converted: logged)."""
        try:
            return recompressedFile(content, self.compression, self.lossyQuality)[0]
        except (TranscodeError, DatasetError) as e:
            self.log.warn("ArchiveCompression {code} not applied: {error}", code=self.compression, error=e)
            return content

    def _repointRows(self, connection, copied, target):
        """In the index writer (so no store of the same objects runs
        meanwhile): point at ``target`` the rows of the objects whose file
        is still the one copied; those moved."""
        moved = []
        for (uid, deviceName, objectFile), (identity, name) in copied:
            if (identityOf(self.reader.magPath(deviceName, objectFile)) or _GONE) != identity:
                continue  # stored anew under the same name since it was copied
            if connection.execute(self._repoint, {"b_uid": uid, "b_from": deviceName, "b_file": objectFile,
                                                  "b_to": target, "b_name": name}).rowcount:
                moved.append(((uid, deviceName, objectFile), (identity, name)))
        self.index.forgetCache()
        return moved

    def _remove(self, moved, stale, device):
        """In a worker: the old files of ``moved`` objects (unless stored
        anew since: set aside, checked, then deleted or put back) and their
        mirror copies, and the new copies of ``stale`` ones."""
        for (_, deviceName, objectFile), (identity, _) in moved:
            removeIfSame(self.reader.magPath(deviceName, objectFile), identity)
            for path in self.reader.copies(deviceName, objectFile)[1:]:
                removeFile(path)
        for _, (_, name) in stale:
            self.reader.removeCopies(device.name, name)
