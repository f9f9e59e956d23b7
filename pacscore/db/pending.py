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
indexed again.
"""

import threading

from sqlalchemy import Column, String, Table, bindparam, delete, insert, select
from twisted.logger import Logger

from pacscore.db.direct import DirectStatement
from pacscore.db.filepaths import ObjectPath
from pacscore.db.schema import MYSQL_TABLE

TABLE_NAME = "PendingFiles"  # made with the index tables: pacs made them, or took them over


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

    def recover(self, connection, fileError, deleteImages, indexAgain):
        """Check each marked file (``fileError(deviceName, objectFile)``
        returns why it is unusable, or None), have ``deleteImages(connection,
        files)`` remove the rows of the unusable ones and ``indexAgain(
        connection, files)`` index the earlier copies they replaced that are
        intact, and remove every mark; returns the removed ``(device, file)``s."""
        table = self.table
        marked = set(connection.execute(select(table.c.DeviceName, table.c.ObjectFile,
                                               table.c.ReplacedDevice, table.c.ReplacedFile)))
        lost, earlier = [], []
        for deviceName, objectFile, replacedDevice, replacedFile in sorted(marked):
            error = fileError(deviceName, objectFile)
            if error is None:
                continue
            lost.append((deviceName, objectFile))
            self.log.warn("{device}:{path} was indexed but did not survive a crash ({error}); "
                          "its image row is removed (it was never acknowledged)",
                          device=deviceName, path=objectFile, error=error)
            if replacedFile and fileError(replacedDevice, replacedFile) is None:
                earlier.append((replacedDevice, replacedFile))
                self.log.warn("{device}:{path}, the copy of the same SOP instance it replaced, is indexed again",
                              device=replacedDevice, path=replacedFile)
        if lost:
            deleteImages(connection, lost)
        if earlier:
            indexAgain(connection, earlier)
        connection.execute(delete(table))
        if marked:
            self.log.info("Checked the {count} files indexed last before the server stopped: {lost} lost",
                          count=len(marked), lost=len(lost))
        return lost

    @staticmethod
    def _delete(connection, table, files):
        """Delete the rows of ``table`` naming one of ``files``."""
        if not files:
            return
        connection.execute(delete(table).where(table.c.DeviceName == bindparam("device"),
                                               table.c.ObjectFile == bindparam("file")),
                           [{"device": deviceName, "file": objectFile} for deviceName, objectFile in files])
