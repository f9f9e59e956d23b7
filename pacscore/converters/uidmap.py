"""Anonymized UIDs: which new UID replaced which original one.

Used by ``newuids`` and the %E / %R variables.  The same original UID
always gives the same new UID, across objects and restarts: the pairs are
kept in Conquest's ``UIDMODS`` table (MODTime, OldUID, MODType, NewUID) of
the index database, and cached in memory.  Without an engine the map lives
in memory only (tests, converters run without an index).

Synchronous and thread-safe: converter commands call it from worker threads.
"""

import threading
import time

from pydicom.uid import generate_uid
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError
from twisted.logger import Logger

from pacscore.db.schema import MYSQL_TABLE

TABLE_NAME = "UIDMODS"


def uidModsTable(metadata):
    """Conquest's UIDMODS table, unique on the original UID."""
    return Table(TABLE_NAME, metadata,
                 Column("MODTime", Integer), Column("OldUID", String(64)),
                 Column("MODType", String(32)), Column("NewUID", String(64)),
                 Index(f"ux_{TABLE_NAME}_OldUID", "OldUID", unique=True),
                 Index(f"ix_{TABLE_NAME}_NewUID", "NewUID"), **MYSQL_TABLE)


class UIDMap:
    """``newFor(old)`` and ``oldFor(new)`` over UIDMODS (or memory only).

    New UIDs are ``prefix`` followed by random digits (dicom.ini's
    UIDPrefix, given with or without its final dot), or, without a
    prefix, pydicom's ``2.25.`` UUID-derived UIDs.
    """

    log = Logger()
    maxCached = 100000

    def __init__(self, engine=None, metadata=None, prefix=None, clock=time.time):
        self.engine = engine
        self.prefix = prefix
        self.clock = clock
        self.table = uidModsTable(metadata if metadata is not None else MetaData())
        self._lock = threading.Lock()
        self._newByOld = {}
        self._oldByNew = {}
        if engine is not None:
            self.table.create(engine, checkfirst=True)

    @property
    def prefix(self):
        """The root of new UIDs with its final dot, or None (``2.25.``);
        may be changed while the server runs (``put_param:UIDPrefix``)."""
        return self._prefix

    @prefix.setter
    def prefix(self, prefix):
        self._prefix = prefix.rstrip(".") + "." if prefix else None

    def newFor(self, old, modType=""):
        """The new UID standing for ``old``, made and recorded (with
        ``modType``, e.g. the element's keyword) the first time."""
        with self._lock:
            new = self._known(old)
            if new is None:
                new = self._record(old, modType)
                self._remember(old, new)
            return new

    def lookup(self, old):
        """The UID recorded for ``old``, or None (nothing is made)."""
        with self._lock:
            return self._known(old)

    def assign(self, old, new, modType=""):
        """Record that ``new`` stands for ``old`` (a merge: several old UIDs
        become one). ValueError when ``old`` already stands for another."""
        with self._lock:
            present = self._known(old) or self._insert(old, new, modType)
            if present != new:
                raise ValueError(f"{old} was changed to {present} before (UIDMODS)")
            self._remember(old, new)

    def oldFor(self, new):
        """The original UID ``new`` replaced, or None when it replaced none."""
        with self._lock:
            return self._known(new, byNew=True)

    def _known(self, uid, byNew=False):
        """(Under the lock) the UID recorded with ``uid`` (an original one,
        or with ``byNew`` a new one), or None."""
        columns = self.table.c
        cache, column, other = ((self._oldByNew, columns.NewUID, columns.OldUID) if byNew
                                else (self._newByOld, columns.OldUID, columns.NewUID))
        paired = cache.get(uid)
        if paired is None:
            paired = self._stored(column, uid, other)
            if paired is not None:
                self._remember(*((paired, uid) if byNew else (uid, paired)))
        return paired

    def _stored(self, keyColumn, key, valueColumn):
        if self.engine is None:
            return None
        with self.engine.connect() as connection:
            return connection.execute(select(valueColumn).where(keyColumn == key).limit(1)).scalar()

    def _record(self, old, modType):
        """A fresh UID for ``old``, inserted into UIDMODS.  When another
        process recorded ``old`` meanwhile, its UID wins."""
        return self._insert(old, generate_uid(self.prefix), modType)

    def _insert(self, old, new, modType):
        """Insert the pair; the UID recorded for ``old`` (another process's
        when it recorded ``old`` meanwhile)."""
        if self.engine is None:
            return new
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(self.table).values(
                    MODTime=int(self.clock()), OldUID=old, MODType=modType[:32], NewUID=new))
        except IntegrityError:
            new = self._stored(self.table.c.OldUID, old, self.table.c.NewUID)
            if new is None:
                raise
        return new

    def _remember(self, old, new):
        if self.engine is not None and len(self._newByOld) >= self.maxCached:
            self._newByOld.clear()
            self._oldByNew.clear()
        self._newByOld[old] = new
        self._oldByNew[new] = old


memoryUIDMap = UIDMap()
"""The process-wide map for converters whose services have no ``uidMap``."""


def uidMapOf(services):
    """``services.uidMap``, or the in-memory fallback."""
    return services.uidMap if services.uidMap is not None else memoryUIDMap
