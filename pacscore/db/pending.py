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
patient rows left without images.
"""

import threading

from sqlalchemy import Column, String, Table, bindparam, delete, insert, select
from twisted.logger import Logger

from pacscore.db.direct import DirectStatement
from pacscore.db.schema import MYSQL_TABLE


class PendingFiles:
    """The ``PendingFiles`` table of ``metadata``; see the module docstring."""

    log = Logger()
    dropEvery = 256

    def __init__(self, metadata):
        self.table = Table("PendingFiles", metadata,
                           Column("DeviceName", String(32)), Column("ObjectFile", String(255)), **MYSQL_TABLE)
        self._insert = DirectStatement(insert(self.table))
        self._lock = threading.Lock()
        self._flushed = []  # (device, file) of marks whose group is durable

    def mark(self, connection, records):
        """In a writer transaction: mark ``records``, and drop the marks of
        flushed groups once there are ``dropEvery`` of them.  (Should that
        transaction roll back, those marks stay until the start-up check,
        which finds their files intact.)"""
        with self._lock:
            flushed = self._flushed if len(self._flushed) >= self.dropEvery else None
            if flushed is not None:
                self._flushed = []
        if flushed is not None:
            self._delete(connection, self.table, flushed)
        self._insert.execute(connection, [{"DeviceName": record.deviceName, "ObjectFile": record.objectFile}
                                          for record in records])

    def flushed(self, records):
        """After the flush that made ``records`` durable (any thread)."""
        with self._lock:
            self._flushed += [(record.deviceName, record.objectFile) for record in records]

    def dropFlushed(self, connection):
        """Delete the marks of every flushed group (when the writer stopped)."""
        with self._lock:
            flushed, self._flushed = self._flushed, []
        self._delete(connection, self.table, flushed)

    def recover(self, connection, fileError, deleteImages):
        """Check each marked file (``fileError(deviceName, objectFile)``
        returns why it is unusable, or None), have ``deleteImages(connection,
        files)`` remove the rows of the unusable ones, and remove every mark;
        returns the removed ``(device, file)``s."""
        marked = set(connection.execute(select(self.table.c.DeviceName, self.table.c.ObjectFile)))
        lost = []
        for deviceName, objectFile in sorted(marked):
            error = fileError(deviceName, objectFile)
            if error is None:
                continue
            lost.append((deviceName, objectFile))
            self.log.warn("{device}:{path} was indexed but did not survive a crash ({error}); "
                          "its image row is removed (it was never acknowledged)",
                          device=deviceName, path=objectFile, error=error)
        if lost:
            deleteImages(connection, lost)
        connection.execute(delete(self.table))
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
