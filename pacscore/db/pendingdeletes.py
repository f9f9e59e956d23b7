"""The objects a delete is removing (``PacsDeletes``).

A delete removes the files of its objects first, then their index rows
(``LocalActions.removeInstances``).  A server killed between the two would
leave rows whose files are gone, served to queries and failing retrieves.
So the objects are written here, all of a delete in one transaction,
before any file goes, and their entries removed in the transaction that
removes their rows (a part's; a failed delete's later parts' in that of
the part that failed); at start-up an entry left over is a delete cut short, which
the server finishes (``LocalActions.finishInterrupted``).  A store of a SOP
instance takes its entries out in the transaction of its row: the object
stored again is not the one the delete was removing.  An entry keeps the
identity of the file as the delete noted it (``lastingIdentity``: size and
modification time, which a remount or a restore keeping times leaves as
they are; "" in the entries of a release before it, or when there was no
file): a file stored anew under its name by a release that does not take
the entries out (one without this table, gone back to) is not the one
noted, and stays.
"""

from sqlalchemy import Column, String, Table, delete, insert, select

from pacscore.db.direct import DirectKeyList
from pacscore.db.filepaths import ObjectPath
from pacscore.db.query import Instance
from pacscore.db.records import SELECT_CHUNK
from pacscore.db.schema import MYSQL_TABLE
from pacscore.storage.devices import lastingIdentity

TABLE_NAME = "PacsDeletes"
COLUMNS = ("SOPInstanceUID", "SOPClassUID", "DeviceName", "ObjectFile", "PatientID", "StudyInstanceUID",
           "SeriesInstanceUID")  # in the order of Instance's fields


def _identityText(identity):
    """The ``FileIdentity`` column's text of an ``identityOf`` (None: ""):
    its ``lastingIdentity``."""
    return "" if identity is None else ":".join(map(str, lastingIdentity(identity)))


def _identityOfText(text):
    """The ``lastingIdentity`` of a ``FileIdentity`` text; None for "" (not
    known).  One written before only those were kept holds the whole
    ``identityOf`` (device, inode, size, time in nanoseconds)."""
    if not text:
        return None
    identity = tuple(int(part) for part in text.split(":"))
    return lastingIdentity(identity) if len(identity) == 4 else identity


class PendingDeletes:
    """The ``PacsDeletes`` table of ``metadata``: one row per object being
    removed, as its ``Instance``.  Every method runs in the caller's
    ``connection`` (its transaction)."""

    def __init__(self, metadata):
        self.table = Table(TABLE_NAME, metadata,
                           Column("SOPInstanceUID", String(64), index=True), Column("SOPClassUID", String(64)),
                           Column("DeviceName", String(32)), Column("ObjectFile", ObjectPath(255)),
                           Column("PatientID", String(64)), Column("StudyInstanceUID", String(64)),
                           Column("SeriesInstanceUID", String(64)),
                           Column("FileIdentity", String(100), nullable=False, default="", server_default=""),
                           **MYSQL_TABLE)
        # run by every store's transaction, where SQLAlchemy's expanding IN cost more than the rest of its SQL
        self._deleteKeys = DirectKeyList(delete(self.table), self.table.c.SOPInstanceUID, SELECT_CHUNK)

    def write(self, connection, instances, identities):
        """Note ``instances`` (``Instance``s) as being removed, with the
        ``identityOf`` their files (None: no file)."""
        connection.execute(insert(self.table), [
            {**dict(zip(COLUMNS, instance)), "FileIdentity": _identityText(identity)}
            for instance, identity in zip(instances, identities)])

    def noted(self, connection, sopInstanceUID):
        """Whether a delete under way is removing ``sopInstanceUID`` (an entry of it is there)."""
        return connection.execute(select(self.table.c.SOPInstanceUID)
                                  .where(self.table.c.SOPInstanceUID == sopInstanceUID).limit(1)).first() is not None

    def left(self, connection):
        """``{Instance: lastingIdentity of its file as noted (its size and
        modification time), or None when not known}`` of the entries there are (a delete cut short), each once
        (two deletes of one object cut short both wrote it)."""
        rows = connection.execute(select(*(self.table.c[name] for name in COLUMNS), self.table.c.FileIdentity)
                                  .distinct())
        left = {}
        for *values, identity in rows:
            instance = Instance(*values)
            if left.get(instance) is None:
                left[instance] = _identityOfText(identity)
        return left

    def clear(self, connection, sopInstanceUIDs=None):
        """Remove the entries of the SOP instances ``sopInstanceUIDs``, or every entry."""
        if sopInstanceUIDs is None:
            connection.execute(delete(self.table))
            return
        self._deleteKeys.execute(connection, sorted(set(sopInstanceUIDs)))
