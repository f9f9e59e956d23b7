"""The MAG devices whose regeneration is under way (``PacsRegen``).

``regen`` and ``dgate -r`` clear the image tables and then re-enter the
files in many transactions; ``regendev`` re-enters a device's files.  A
server or ``dgate`` that stops during it would leave an index missing
objects, with nothing to tell.  So the devices are marked here in the
transaction that starts the regeneration (the one that clears the tables),
and unmarked once its last batch is committed; at start-up a mark left over
means the regeneration was interrupted, and the server runs it again.
"""

from sqlalchemy import Column, String, Table, delete, insert, select

from pacscore.db.schema import MYSQL_TABLE

TABLE_NAME = "PacsRegen"


class RegenMarks:
    """The ``PacsRegen`` table of ``metadata``: one row per device name.
    Every method runs in the caller's ``connection`` (its transaction)."""

    def __init__(self, metadata):
        self.table = Table(TABLE_NAME, metadata, Column("DeviceName", String(32), primary_key=True), **MYSQL_TABLE)

    def names(self, connection):
        """The names of the marked devices, sorted."""
        return sorted(name for name, in connection.execute(select(self.table.c.DeviceName)))

    def mark(self, connection, deviceNames):
        """Mark ``deviceNames`` (those already marked stay as they are)."""
        new = sorted(set(deviceNames) - set(self.names(connection)))
        if new:
            connection.execute(insert(self.table), [{"DeviceName": name} for name in new])

    def unmark(self, connection, deviceNames=None):
        """Remove the marks of ``deviceNames``, or of every device."""
        statement = delete(self.table)
        if deviceNames is not None:
            statement = statement.where(self.table.c.DeviceName.in_(list(deviceNames)))
        connection.execute(statement)
