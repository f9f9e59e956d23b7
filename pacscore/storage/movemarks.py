"""The moves between MAG devices under way (``PacsMoves``), so that a crash
in the middle of one leaves no copy that nothing accounts for.

``DeviceMover`` marks each object in the index before it copies it to the
target device (and its mirror), and drops the marks once the old or the
new copies are deleted, as ``PendingFiles`` marks the files of stores.  A
mark left by a crash is checked at the next start-up (``recover``, before
the index writer starts): every copy of its object, on the device it left
or under its name (or a numbered one) on the target, that holds its SOP
instance but is not the file its image row names now nor its mirror copy
(compared as files: two devices may name one folder), or any, the object
deleted meanwhile, is deleted with its mirror copy, and logged; so a later
``dgate -r`` does not index it again (bringing back a deleted patient, or
pointing a row at the stray copy).
"""

import os

from sqlalchemy import Column, Double, String, Table, bindparam, select
from twisted.logger import Logger

from pacscore.db.filepaths import ObjectPath
from pacscore.db.schema import MYSQL_TABLE, OwnTable
from pacscore.storage.devices import identityOf, removeFile
from pacscore.storage.placing import holdsInstance, numberedNames


def buildTable(metadata):
    return Table(
        "PacsMoves", metadata,
        Column("SOPInstanceUID", String(64), nullable=False),
        Column("DeviceName", String(32), nullable=False),  # the device it leaves
        Column("ObjectFile", ObjectPath(255), nullable=False),
        Column("TargetDevice", String(32), nullable=False),
        Column("Started", Double, nullable=False),
        **MYSQL_TABLE)


class MoveMarks(OwnTable):
    """The ``PacsMoves`` table: objects being copied to another MAG device."""

    log = Logger()
    build = staticmethod(buildTable)

    def add(self, connection, objects, target):
        """In the writer: mark ``(SOPInstanceUID, DeviceName, ObjectFile)``
        ``objects`` as moving to the device ``target``."""
        if objects:
            started = self.clock()
            connection.execute(self.table.insert(), [
                {"SOPInstanceUID": uid, "DeviceName": deviceName, "ObjectFile": objectFile, "TargetDevice": target,
                 "Started": started} for uid, deviceName, objectFile in objects])

    def remove(self, connection, objects, target):
        """In the writer: drop the marks of ``objects`` moved (or not) to ``target``."""
        columns = self.table.c
        if objects:
            connection.execute(self.table.delete().where(
                columns.SOPInstanceUID == bindparam("b_uid"), columns.DeviceName == bindparam("b_from"),
                columns.ObjectFile == bindparam("b_file"), columns.TargetDevice == bindparam("b_to")),
                [{"b_uid": uid, "b_from": deviceName, "b_file": objectFile, "b_to": target}
                 for uid, deviceName, objectFile in objects])

    def recover(self, reader, absent=()):
        """At start-up (blocking): delete the copies the moves a crash cut
        short left that no image row names (``reader``: the archive's
        ``ObjectReader``, for the devices and their mirrors), and their
        marks; the marks of a device named in ``absent`` (not there before
        start-up made any folder: ``isAbsent``) or no longer configured are
        kept for the next start-up.  Returns the paths deleted."""
        columns = self.table.c
        with self.index.engine.begin() as connection:
            marks = connection.execute(select(columns.SOPInstanceUID, columns.DeviceName, columns.ObjectFile,
                                              columns.TargetDevice)).all()
            if not marks:
                return []
            present = [mark for mark in marks
                       if {mark.DeviceName, mark.TargetDevice} <= set(reader.roots) - set(absent)]
            current = self.index.indexedFiles(connection, {mark.SOPInstanceUID for mark in present})
            removed = []
            for uid, deviceName, objectFile, target in present:
                indexed = current.get(uid)
                kept = set() if indexed is None else _identities(reader, *indexed)
                for device, name in [(deviceName, objectFile)] + _numberedNames(reader, target, objectFile):
                    if indexed is None or (device, name) != tuple(indexed):
                        removed += self._removeStray(reader, uid, device, name, target, kept)
                self.remove(connection, [(uid, deviceName, objectFile)], target)
        self.log.info("{count} object(s) were moving between MAG devices when the server stopped: {removed} copies "
                      "no image row names removed{kept}", count=len(marks), removed=len(removed),
                      kept=f"; {len(marks) - len(present)} kept for the next start-up: their device is not there"
                           if len(present) < len(marks) else "")
        return removed

    def devicesNamed(self):
        """At start-up (blocking): the names of the devices the marks left
        (those ``recover`` kept) name, left or targeted."""
        columns = self.table.c
        with self.index.engine.connect() as connection:
            return {name for row in connection.execute(select(columns.DeviceName, columns.TargetDevice).distinct())
                    for name in row}

    def _removeStray(self, reader, uid, device, name, target, kept):
        """Delete the copies of ``name`` of ``device`` (its file, its
        mirror copy) that hold SOP instance ``uid`` and are none of the
        files ``kept`` (their ``identityOf``); the paths deleted."""
        try:
            paths = reader.copies(device, name)
        except OSError:  # a device no longer configured
            return []
        stray = [path for path in paths if holdsInstance(path, uid) and identityOf(path) not in kept]
        for path in stray:
            removeFile(path)
            self.log.warn("removed {path}: a copy of {uid} that a move to {target} cut short by a stop left, "
                          "which no image row names", path=path, uid=uid, target=target)
        return stray


def _identities(reader, deviceName, objectFile):
    """The ``identityOf`` of each copy there is of the file an image row
    names (on its device, on its mirror)."""
    try:
        paths = reader.copies(deviceName, objectFile)
    except OSError:  # a device no longer configured
        return set()
    return {identityOf(path) for path in paths} - {None}


def _numberedNames(reader, target, objectFile):
    """``(target, name)`` of ``objectFile`` and its numbered names on the
    device ``target`` (as ``placeFile`` gives them), up to the first that
    has no file there nor on its mirror."""
    names = []
    for name in numberedNames(objectFile):
        try:
            paths = reader.copies(target, name)
        except OSError:  # a device no longer configured
            return names
        if not any(os.path.lexists(path) for path in paths):
            return names
        names.append((target, name))
    return names
