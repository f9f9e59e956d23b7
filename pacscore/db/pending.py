"""Image rows committed before their files were made durable.

With ``FileSystemFlush`` the index writer commits a group's rows first and
then flushes the file systems holding their files and the database, so one
flush serves both.  A power loss during that flush may keep a row and lose
its file.  Each such row is therefore marked in this table, in the
transaction that writes it; once the group's flush has succeeded, a later
writer transaction removes its marks (in bulk, every ``dropEvery`` flushed
marks, which keeps the cost per image in the microseconds), and the index
removes the rest when it stops.  At start-up, ``recover`` checks the file
of every mark left over and removes the image rows whose file did not
survive (the sender never got Success for them), and the series, study and
patient rows left without images.  A mark also names the file its row
pointed at before (an earlier copy of the same SOP instance, stored under
another name and removed only after the new copy's Success): when the new
file is lost and that earlier, acknowledged one is still there, it is
indexed again (past earlier copies lost too, through their own marks).

Only a mark whose file an image row still names can be a lost file.  A
flushed mark stays until the next bulk drop, so a crash also leaves the
marks of copies that a later, acknowledged copy replaced and whose files
were then removed (or of images deleted or moved since): such a mark is
passed over, and so is the earlier copy it names, which may still be on
disk only because its removal had not run yet; indexing it again would
put an older copy in place of the acknowledged one.

A crash between a new copy's commit and the removal of the copy it
replaced leaves that earlier copy on disk, indexed by no row: when a
mark's own file is intact and an image row names it, the earlier copy it
names, if no image row names that file (a name used again since, the
earlier copy indexed again above), is removed, with its mirror copy.
"""

import threading

from sqlalchemy import Column, String, Table, bindparam, delete, insert, select
from twisted.logger import Logger

from pacscore.db.direct import DirectStatement
from pacscore.db.filepaths import ObjectPath
from pacscore.db.schema import MYSQL_TABLE

TABLE_NAME = "PendingFiles"  # made with the index tables: pacs made them, or took them over



class Unchecked(str):
    """Why a marked file could not be checked here (``fileError``): a read
    error that shows no loss in a crash (permissions, an I/O error, a folder
    in its place), unlike a file gone or cut short; its image row is kept."""

class PendingFiles:
    """The ``PendingFiles`` table of ``metadata``; see the module docstring."""

    log = Logger()
    dropEvery = 256

    def __init__(self, metadata):
        self.table = Table(TABLE_NAME, metadata,
                           Column("DeviceName", String(32)), Column("ObjectFile", ObjectPath(255)),
                           Column("ReplacedDevice", String(32), nullable=False, default="", server_default=""),
                           Column("ReplacedFile", ObjectPath(255), nullable=False, default="", server_default=""), **MYSQL_TABLE)
        self._insert = DirectStatement(insert(self.table))
        self._lock = threading.Lock()
        self._flushed = []  # (device, file) of marks whose group is durable

    def mark(self, connection, records, replaced):
        """In a writer transaction: mark ``records`` (``replaced``: the
        ``Replaced`` file of each, or None), and drop the marks of
        flushed groups once there are ``dropEvery`` of them.  (Should that
        transaction roll back, those marks stay until the start-up check,
        which finds their files intact.)"""
        with self._lock:
            flushed = self._flushed if len(self._flushed) >= self.dropEvery else None
            if flushed is not None:
                self._flushed = []
        if flushed is not None:
            self._delete(connection, self.table, flushed)
        self._insert.execute(connection, [{"DeviceName": record.deviceName, "ObjectFile": record.objectFile,
                                           "ReplacedDevice": earlier.deviceName if earlier else "",
                                           "ReplacedFile": earlier.objectFile if earlier else ""}
                                          for record, earlier in zip(records, replaced)])

    def flushed(self, records):
        """After the flush that made ``records`` durable (any thread)."""
        with self._lock:
            self._flushed += [(record.deviceName, record.objectFile) for record in records]

    def dropFlushed(self, connection):
        """Delete the marks of every flushed group (when the writer stopped)."""
        with self._lock:
            flushed, self._flushed = self._flushed, []
        self._delete(connection, self.table, flushed)

    def recover(self, connection, fileError, indexed, deleteImages, indexAgain, removeReplaced=None):
        """Check each marked file that an image row still names (``indexed(
        connection, files)``: the subset of ``files`` that image rows name;
        ``fileError(deviceName, objectFile)`` returns why a file is unusable,
        or None), have ``deleteImages(connection, files)`` remove the rows of
        the unusable ones and ``indexAgain(connection, files)`` index the
        earlier copies they replaced that are intact, ``removeReplaced(files)``
        remove the earlier copies intact ones replaced that no row names
        (how many were there), and remove every mark; returns the removed
        ``(device, file)``s."""
        table = self.table
        marked = set(connection.execute(select(table.c.DeviceName, table.c.ObjectFile,
                                               table.c.ReplacedDevice, table.c.ReplacedFile)))
        replacedOf = {}  # (device, file) -> the files its marks say it replaced
        for deviceName, objectFile, replacedDevice, replacedFile in marked:
            copies = replacedOf.setdefault((deviceName, objectFile), set())
            if replacedFile:
                copies.add((replacedDevice, replacedFile))
        gone = {}  # (device, file) -> why it is unusable
        unchecked = set()  # could not be read here: no crash's loss shown
        for file in sorted(replacedOf):
            error = fileError(*file)
            if isinstance(error, Unchecked):
                unchecked.add(file)
                self.log.warn("{device}:{path}, indexed last before the server stopped, could not be checked "
                              "({error}); its image row is kept: make it readable (or run dgate -r)",
                              device=file[0], path=file[1], error=error)
            elif error is not None:
                gone[file] = error
        current = indexed(connection, list(gone)) if gone else set()
        lost, earlier, passed = [], [], 0
        for (deviceName, objectFile), error in gone.items():
            if (deviceName, objectFile) not in current:
                passed += 1
                self.log.debug("{device}:{path}, marked, is gone ({error}) but no image row names it any more "
                               "(a later copy replaced it, or it was deleted or moved): nothing to do",
                               device=deviceName, path=objectFile, error=error)
                continue
            lost.append((deviceName, objectFile))
            self.log.warn("{device}:{path} was indexed but did not survive a crash ({error}); "
                          "its image row is removed (it was never acknowledged)",
                          device=deviceName, path=objectFile, error=error)
            copy = self._intactEarlierCopy(replacedOf, (deviceName, objectFile), fileError)
            if copy is not None and copy not in earlier:
                earlier.append(copy)
                self.log.warn("{device}:{path}, the copy of the same SOP instance it replaced, is indexed again",
                              device=copy[0], path=copy[1])
        if lost:
            deleteImages(connection, lost)
        if earlier:
            indexAgain(connection, earlier)
        if removeReplaced is not None:
            self._removeReplaced(connection, replacedOf, set(gone) | unchecked, indexed, removeReplaced)
        connection.execute(delete(table))
        if marked:
            self.log.info("Checked the {count} files indexed last before the server stopped: {lost} lost"
                          "{passed}", count=len(marked), lost=len(lost),
                          passed=f"; {passed} more were gone but named by no image row (replaced by later "
                                 f"copies, deleted or moved): nothing to do" if passed else "")
        return lost

    def _removeReplaced(self, connection, replacedOf, notIntact, indexed, removeReplaced):
        """Have ``removeReplaced`` remove the earlier copies that the marked
        files intact (not in ``notIntact``) and named by an image row
        replaced, but those an image row names (see ``recover``); logged
        with their count."""
        intact = [file for file, copies in replacedOf.items() if copies and file not in notIntact]
        replaced = {copy for file in (indexed(connection, intact) if intact else ()) for copy in replacedOf[file]}
        replaced -= indexed(connection, list(replaced)) if replaced else set()
        removed = removeReplaced(sorted(replaced)) if replaced else 0
        if removed:
            self.log.info("removed {count} copies replaced just before the server stopped (the new copies of "
                          "their SOP instances, indexed, are kept)", count=removed)

    @staticmethod
    def _intactEarlierCopy(replacedOf, lostFile, fileError):
        """The latest copy before ``lostFile`` that is intact, following the
        marks of copies lost too, or None."""
        seen, waiting = {lostFile}, sorted(replacedOf.get(lostFile, ()))
        while waiting:
            copy = waiting.pop(0)
            if copy in seen:
                continue
            seen.add(copy)
            if fileError(*copy) is None:
                return copy
            waiting += sorted(replacedOf.get(copy, ()))
        return None

    @staticmethod
    def _delete(connection, table, files):
        """Delete the rows of ``table`` naming one of ``files``."""
        if not files:
            return
        connection.execute(delete(table).where(table.c.DeviceName == bindparam("device"),
                                               table.c.ObjectFile == bindparam("file")),
                           [{"device": deviceName, "file": objectFile} for deviceName, objectFile in files])
