"""Anonymized UIDs: which new UID replaced which original one.

Used by ``newuids`` and the %E / %R variables.  The same original UID
always gives the same new UID, across objects and restarts: the pairs are
kept in Conquest's ``UIDMODS`` table (MODTime, OldUID, MODType, NewUID) of
the index database, and cached in memory.  Without an engine the map lives
in memory only (tests, converters run without an index).  Merges
(``mergestudy``, ``mergeseries``: which study or series went into which)
are kept in a table of their own, ``PacsUIDMerges``: a merge target is no
new UID (given as one, a later change of patient took the real UID of the
study merged into), and a UID made new once may still be merged.  New UIDs
made for one target (a ``stage``: the patient a copy is made for, the study
an object is attached to, as Conquest's ChangeUID takes one) are kept in
``PacsUIDStages``, keyed by the original UID and the stage: one original
copied to two patients gives two copies, each with UIDs of its own, where
the same UIDs would make the second take the place of the first.
A Lua script's ``changeuid(old, to, stage, type)`` records any text as
Conquest's ChangeUIDTo does (its anonymizer keeps reversible pseudonyms of
names and IDs so), one value may then stand for several originals, and
``oldFor`` gives the first recorded, as Conquest's ChangeUIDBack.
What replaces a UID element (``uidFor``: ``newuids``, %E, the anonymizers)
is always a UID of its own: a recorded text, or a UID recorded first for
another original, is passed over for a UID made for this original alone,
kept in the stages table under a stage of its own (``OWN_STAGE``).

Synchronous and thread-safe: converter commands call it from worker threads.
"""

import hashlib
import threading
import time

from pydicom.uid import UID, generate_uid
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, delete, insert, inspect, select
from sqlalchemy.exc import IntegrityError
from twisted.logger import Logger

from pacscore.db.schema import MYSQL_TABLE, adoptFoldedTable, createMissingTables

TABLE_NAME = "UIDMODS"
MERGES_TABLE_NAME = "PacsUIDMerges"
STAGES_TABLE_NAME = "PacsUIDStages"
MERGE_TYPES = ("MergeStudy", "MergeSeries")
VALUE_LENGTH = 64  # characters of OldUID, Stage and NewUID
OWN_STAGE = "\x1fuid"  # before the digest of the stage of a UID made because the recorded value was none of its own


def _ownKey(text):
    """``OWN_STAGE`` followed by the digest of ``text``: a key that fits the
    columns whatever ``text``'s length and that no original or stage given
    to ``newFor`` has."""
    return OWN_STAGE + hashlib.sha1(text.encode()).hexdigest()


def _pairsTable(name, metadata, staged=False):
    keys = ("OldUID", "Stage") if staged else ("OldUID",)
    return Table(name, metadata,
                 Column("MODTime", Integer), Column("OldUID", String(VALUE_LENGTH)),
                 *([Column("Stage", String(VALUE_LENGTH))] if staged else []),
                 Column("MODType", String(32)), Column("NewUID", String(VALUE_LENGTH)),
                 Index(f"ux_{name}_{'_'.join(keys)}", *keys, unique=True),
                 Index(f"ix_{name}_NewUID", "NewUID"), **MYSQL_TABLE)


def uidModsTable(metadata):
    """Conquest's UIDMODS table, unique on the original UID."""
    return _pairsTable(TABLE_NAME, metadata)


def uidMergesTable(metadata):
    """Which study or series another was merged into (``mergestudy``,
    ``mergeseries``): kept apart from UIDMODS, whose pairs stand for new
    UIDs (a merge target is no new UID for anonymizing or a new patient,
    and a UID anonymized once may still be merged)."""
    return _pairsTable(MERGES_TABLE_NAME, metadata)


def uidStagesTable(metadata):
    """The new UIDs made for one target (``stage``), unique on the original
    UID and the stage."""
    return _pairsTable(STAGES_TABLE_NAME, metadata, staged=True)


class _Pairs:
    """Old UID -> new UID pairs of one table, cached both ways (the
    caller holds the map's lock).  An old UID is a key: the UID, or in a
    table with a ``Stage`` column ``(UID, stage)``.  Without an engine the
    pairs live in the caches only, each new UID with every old key (and
    type) recorded with it, in the order recorded; with one, the reverse
    cache holds what the table gave (``original``)."""

    maxCached = 100000

    def __init__(self, engine, table, clock):
        self.engine = engine
        self.table = table
        self.clock = clock
        self._newByOld = {}
        self._oldByNew = {}  # new UID -> [(old key, type)]; with an engine (new, stage, type) -> old UID

    def _oldKey(self, old):
        """Column name -> value of the old key ``old``."""
        return dict(zip(("OldUID", "Stage"), old)) if "Stage" in self.table.c else {"OldUID": old}

    def known(self, key):
        """The new UID recorded with the old key ``key``, or None."""
        paired = self._newByOld.get(key)
        if paired is None:
            paired = self.stored(self._oldKey(key), self.table.c.NewUID)
            if paired is not None:
                self.remember(key, paired)
        return paired

    def original(self, new, stage="", modType=""):
        """The original UID first recorded with the new UID ``new`` (for the
        target ``stage`` and with the type ``modType``, when given; a stage
        only in a table with a ``Stage`` column), or None."""
        if self.engine is None:
            return next((old[0] if isinstance(old, tuple) else old for old, recordedType in self._oldByNew.get(new, ())
                         if (not stage or old[1] == stage) and (not modType or recordedType == modType)), None)
        cacheKey = (new, stage, modType)
        old = self._oldByNew.get(cacheKey)
        if old is None:
            where = {"NewUID": new, **({"Stage": stage} if stage else {}), **({"MODType": modType} if modType else {})}
            old = self.stored(where, self.table.c.OldUID, first=True)
            if old is not None:
                self._oldByNew[cacheKey] = old
        return old

    def stored(self, where, valueColumn, first=False):
        """``valueColumn`` of a row whose columns have the values ``where``
        (``first``: of the earliest recorded)."""
        if self.engine is None:
            return None
        columns = self.table.c
        query = select(valueColumn).where(*(columns[name] == value for name, value in where.items()))
        if first:
            query = query.order_by(columns.MODTime, columns.OldUID)
        with self.engine.connect() as connection:
            return connection.execute(query.limit(1)).scalar()

    def insert(self, old, new, modType):
        """Insert the pair; the UID recorded for ``old`` (another process's
        when it recorded ``old`` meanwhile)."""
        if self.engine is None:
            self._oldByNew.setdefault(new, []).append((old, modType[:32]))
            return new
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(self.table).values(
                    MODTime=int(self.clock()), MODType=modType[:32], NewUID=new, **self._oldKey(old)))
        except IntegrityError:
            new = self.stored(self._oldKey(old), self.table.c.NewUID)
            if new is None:
                raise
        return new

    def remember(self, old, new):
        if self.engine is not None and len(self._newByOld) >= self.maxCached:
            self._newByOld.clear()
            self._oldByNew.clear()
        self._newByOld[old] = new


class UIDMap:
    """``newFor(old)`` and ``oldFor(new)`` over UIDMODS (or memory only),
    and the stages table for ``newFor(old, stage=...)``; ``merge`` and
    ``mergedInto`` over the merges table.

    New UIDs are ``prefix`` followed by random digits (dicom.ini's
    UIDPrefix, given with or without its final dot), or, without a
    prefix, pydicom's ``2.25.`` UUID-derived UIDs.
    """

    log = Logger()

    def __init__(self, engine=None, metadata=None, prefix=None, clock=time.time):
        self.engine = engine
        self.prefix = prefix
        self.clock = clock
        metadata = metadata if metadata is not None else MetaData()
        self.table = uidModsTable(metadata)
        self._lock = threading.Lock()
        self._uids = _Pairs(engine, self.table, clock)
        self._merges = _Pairs(engine, uidMergesTable(metadata), clock)
        self._stages = _Pairs(engine, uidStagesTable(metadata), clock)
        if engine is not None:
            with engine.begin() as connection:
                adoptFoldedTable(connection, self.table, self.log)
                merging = not inspect(connection).has_table(MERGES_TABLE_NAME)
                createMissingTables(connection, metadata, self.log, [self.table, self._stages.table,
                                                                     self._merges.table])
            if merging:
                self._moveMerges()

    @property
    def tables(self):
        """The UIDMODS, stages and merges tables."""
        return self.table, self._stages.table, self._merges.table

    def _moveMerges(self):
        """Merges an earlier version recorded in UIDMODS move to their own table."""
        modType = self.table.c.MODType
        with self.engine.begin() as connection:
            merges = connection.execute(select(self.table).where(modType.in_(MERGE_TYPES))).mappings().all()
            if merges:
                connection.execute(insert(self._merges.table), [dict(row) for row in merges])
                connection.execute(delete(self.table).where(modType.in_(MERGE_TYPES)))
                self.log.info("{count} merge(s) moved from {old} to {new}", count=len(merges), old=TABLE_NAME,
                              new=MERGES_TABLE_NAME)

    @property
    def prefix(self):
        """The root of new UIDs with its final dot, or None (``2.25.``);
        may be changed while the server runs (``put_param:UIDPrefix``)."""
        return self._prefix

    @prefix.setter
    def prefix(self, prefix):
        self._prefix = prefix.rstrip(".") + "." if prefix else None

    def newUID(self):
        """A new UID under the prefix (``genuid``, worklist entries); ValueError
        for a prefix pydicom cannot make UIDs with."""
        return generate_uid(self.prefix)

    def newFor(self, old, modType="", stage="", given=None):
        """The new UID standing for ``old`` (made for the target ``stage``,
        when given: another stage gets another), made (or ``given``, as
        Conquest's ChangeUIDTo: any text, a pseudonym too, which may stand
        for other originals as well) and recorded (with ``modType``, e.g.
        the element's keyword) the first time.  ValueError when ``given``
        is to be recorded but is empty or longer than the table holds, or
        for a stage beginning with ``OWN_STAGE``'s; for an ``old`` or a
        ``stage`` longer than the table holds, the same on every database."""
        if len(old) > VALUE_LENGTH or len(stage) > VALUE_LENGTH:
            raise ValueError(f"{old!r} (stage {stage!r}) cannot be recorded: at most {VALUE_LENGTH} characters"
                             " of original and of stage are kept")
        pairs, key = (self._stages, (old, stage)) if stage else (self._uids, old)
        with self._lock:
            new = pairs.known(key)
            if new is None and given is not None:
                if not 0 < len(given) <= VALUE_LENGTH:
                    raise ValueError(f"{given!r} cannot be recorded: 1 to {VALUE_LENGTH} characters are wanted")
                if stage.startswith(OWN_STAGE):
                    raise ValueError(f"the stage {stage!r} is kept for UIDs the archive makes")
            if new is None:
                new = pairs.insert(key, given or self.newUID(), modType)
                pairs.remember(key, new)
            return new

    def uidFor(self, old, modType="", stage=""):
        """The UID replacing the UID ``old`` in an element (``newFor``'s),
        unless what was recorded for ``old`` is no valid UID (a pseudonym a
        script gave with ``changeuid``) or was recorded first for another
        original: then one made for ``old`` alone (no two originals get
        one UID), kept under ``OWN_STAGE`` followed by a digest of ``stage``
        (which fits the column whatever the stage's length).  An ``old``
        longer than the OldUID column (a reference in a sequence item may
        be) is mapped too, kept under that stage as ``OWN_STAGE`` followed
        by its digest (unless an earlier version recorded it whole: that
        UID stays its); ``oldFor`` cannot give such an original back."""
        if len(old) > VALUE_LENGTH:
            earlier = self.lookup(old, stage)  # kept whole by an earlier version (SQLite holds longer text)
            if earlier is not None and UID(earlier).is_valid:
                return earlier
            return self.newFor(_ownKey(old), modType, _ownKey(stage))
        new = self.newFor(old, modType, stage)
        pairs = self._stages if stage else self._uids
        with self._lock:
            own = UID(new).is_valid and pairs.original(new, stage) == old
        return new if own else self.newFor(old, modType, _ownKey(stage))

    def lookup(self, old, stage=""):
        """The new UID recorded for ``old`` (made for ``stage``, when
        given), or None (nothing is made)."""
        pairs, key = (self._stages, (old, stage)) if stage else (self._uids, old)
        with self._lock:
            return pairs.known(key)

    def oldFor(self, new, stage="", modType=""):
        """The original UID ``new`` replaced (for the target ``stage`` and
        recorded with ``modType``, when given), or None when it replaced
        none; the first recorded of several (Conquest's ChangeUIDBack).
        With a stage, ``uidFor``'s own UIDs for that stage are found too.
        An original kept as a digest (``uidFor``'s over-long ones) gives None."""
        with self._lock:
            if stage:
                old = (self._stages.original(new, stage, modType)
                       or self._stages.original(new, _ownKey(stage), modType))
            else:
                old = self._uids.original(new, modType=modType) or self._stages.original(new, modType=modType)
        return None if old is None or old.startswith(OWN_STAGE) else old

    def merge(self, old, new, modType):
        """Record that the study or series ``old`` was merged into ``new``
        (several may go into one). ValueError when ``old`` was merged into
        another."""
        with self._lock:
            present = self._merges.known(old) or self._merges.insert(old, new, modType)
            if present != new:
                raise ValueError(f"{old} was merged into {present} before")
            self._merges.remember(old, new)

    def mergedInto(self, old):
        """The study or series ``old`` was merged into, or None."""
        with self._lock:
            return self._merges.known(old)


memoryUIDMap = UIDMap()
"""The process-wide map for converters whose services have no ``uidMap``."""


def uidMapOf(services):
    """``services.uidMap``, or the in-memory fallback."""
    return services.uidMap if services.uidMap is not None else memoryUIDMap
