"""The durable export queue: two tables of the index database.

``PacsExportJobs`` holds one row per stored object and export converter
line still to run (``ExportConverterN`` whose Modality/StationName/CalledAE/
CallingAE filters match); the rows are inserted in the object's own index
transaction (``enqueueJobs``), so an acknowledged object always has its
export jobs, even across a crash.  An object stored on a mirrored MAG
device gets a ``MIRRORCOPY`` job as well (``pacscore.storage.mirror``).

``PacsForwards`` holds the delayed actions those lines (and import
converters) ask for: ``forward`` to a destination AE, ``get`` (a C-MOVE
from a remote AE to us), ``delete``, ``process`` and ``prefetch``, each of
one image or of a whole series, study or patient.  Actions above IMAGE
level are collected: while one is pending and not yet tried (a forward:
not yet due, so also one waiting for its retry; a get or prefetch: any,
under way or waiting for its retry), the same action for
another object of the same series/study/patient only pushes its not-before
time back (``ForwardCollectDelay``, default 600 s, or ``after NN``), so a
study of 500 images gives one forward.

Retries (manual appendix 3): a failed action or job is tried again
``RetryDelay`` seconds later (default 100) until it has been retried
``MaximumExportRetries`` times (as the manual says: "give up after this
number of retries", so N retries are N + 1 attempts; 0, as when it is
not given, retries forever, as in Conquest, so Conquest's
``RetryForwardFailed = 1`` asks for nothing more); then it stays in the
table in state ``failed`` (visible in ``counts``, logged) until
``retryFailed`` puts it back.  Collected actions (patient, study,
series) and ``get``/``prefetch`` use ``MaximumDelayedFetchForwardRetries``
when it is set.  A deferred job (``defer``) is not a failure: it is tried
again after RetryDelay without counting an attempt.

Writes go through the index writer (``Index.runWrite``): ``recordJobs``,
``markDone``, ``markFailed`` and ``retryFailed`` return Deferreds (call
them from the reactor thread) and are group-committed with each other and
with the stores of images, one fsync per group, with no second connection
contending for the database's write lock.  ``enqueueJobs`` runs in the
caller's transaction (the image's), with the actions its import converter
lines queued (``ImageRecord.actions``, kept meanwhile in an
``ActionBuffer``).  ``addForward`` is synchronous and runs its own short
transaction: it is for the lines of other converters (worker threads) and
tools.  The reads (``dueJobs``, ``filterMatches``, ``due``,
``counts``, ``failedActions``) are synchronous, on their own connections:
call them from worker threads.  One pacs process runs the queue; a row
being worked on is tracked in that process's memory, not in the table.
"""

import json
import threading
import time
from typing import NamedTuple

from sqlalchemy import (
    Column, Double, Index, Integer, MetaData, String, Table, Text, and_, exists, func, or_, select, text, true)
from twisted.logger import Logger

from pacscore.db.filepaths import ObjectPath
from pacscore.db.schema import MYSQL_TABLE, createMissingTables, upgradeTable
from pacscore.export.spool import isSpooled, spoolObject
from pacscore.storage.mirror import MIRROR_COPY

PENDING = "pending"
FAILED = "failed"

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
LEVEL_NAMES = {"PATIENT": "Patient ID", "STUDY": "Study Instance UID", "SERIES": "Series Instance UID",
               "IMAGE": "SOP Instance UID"}
ACTIONS = ("forward", "get", "delete", "process", "prefetch")
REMOTE_ACTIONS = ("forward", "get")  # those with a destination AE; the others are local
EXPORT_RETRIES = "MaximumExportRetries"
DELAYED_RETRIES = "MaximumDelayedFetchForwardRetries"
FETCHES = ("get", "prefetch")  # actions that bring objects in (or read them): collected even when retried
LOCAL = None  # the lane of the local actions (see ``laneOf``)

MODALITY = 0x00080060
STATION_NAME = 0x00081010
SOP_INSTANCE_UID = 0x00080018

DEFAULT_RETRY_DELAY = 100
DEFAULT_MAXIMUM_RETRIES = None  # forever: Conquest's MaximumExportRetries default, 0
DEFAULT_COLLECT_DELAY = 600


class Target(NamedTuple):
    """The object an action was asked for, and so its series, study and patient."""

    patientID: str = ""
    studyInstanceUID: str = ""
    seriesInstanceUID: str = ""
    sopInstanceUID: str = ""

    def uid(self, level):
        """The identifier of the entity at ``level`` (PATIENT ... IMAGE)."""
        return self[LEVELS.index(level)]


class ExportJob(NamedTuple):
    """A ``PacsExportJobs`` row."""

    id: int
    converter: str
    sopInstanceUID: str
    deviceName: str
    objectFile: str
    callingAE: str
    calledAE: str
    attempts: int
    fetchedFrom: str = ""  # the archive a virtual server fetched the object from (ImageRecord.fetchedFrom)


class Action(NamedTuple):
    """A ``PacsForwards`` row: what to do, where, with what."""

    id: int
    action: str
    destination: str
    level: str
    target: Target
    compression: str
    filters: dict
    attempts: int
    objectPath: str = ""  # the file of an image-level action, recorded where the index keeps no rows


class JobOutcome(NamedTuple):
    """What running export job ``jobId`` came to (``recordJobs``): by
    default done, with the ``actions`` its line queued
    (``ActionBuffer.actions``); ``deferred`` to run it again after
    RetryDelay; or a failed attempt with its ``error``, retried up to
    MaximumExportRetries times unless ``retryForever``."""

    jobId: int
    actions: tuple = ()
    deferred: bool = False
    error: object = None
    retryForever: bool = False  # a failure never uses up the retries (mirror copies)


class ActionBuffer:
    """Stands in for the queue while an export job's line runs: the actions
    it adds are kept here and written with the job's deletion, in one
    transaction (``ExportQueue.recordJobs``).  ``spoolFolder``: where
    ``spool`` writes the objects the line changed (``pacscore.export.spool``)."""

    def __init__(self, queue, spoolFolder=None):
        self.queue = queue
        self.clock = queue.clock
        self.spoolFolder = spoolFolder
        self.actions = []

    def spool(self, dataset):
        """The path of a spool file holding ``dataset``, for an image forward to send."""
        if self.spoolFolder is None:
            raise ValueError("this forward sends a copy of the object as a line or script changed or made it, "
                             "which only export converters keep (no spool folder here)")
        return spoolObject(dataset, self.spoolFolder)

    def addForward(self, destination, level, target, compression="", notBefore=None, action="forward",
                   filters=None, objectPath=""):
        self.actions.append(self.queue.actionRow(destination, level, target, compression, notBefore, action,
                                                 filters, objectPath))


def buildTables(metadata):
    """``(jobs, forwards)`` tables in ``metadata``."""
    jobs = Table(
        "PacsExportJobs", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("Converter", String(32), nullable=False),
        Column("SOPInstanceUID", String(64), nullable=False),
        Column("DeviceName", String(32), nullable=False),
        Column("ObjectFile", ObjectPath(255), nullable=False),
        Column("CallingAE", String(16), nullable=False, default=""),
        Column("CalledAE", String(16), nullable=False, default=""),
        Column("Modality", String(16), nullable=False, default=""),
        Column("StationName", String(16), nullable=False, default=""),
        Column("Created", Double, nullable=False),
        Column("NextAttempt", Double, nullable=False),
        Column("Attempts", Integer, nullable=False, default=0),
        Column("State", String(8), nullable=False, default=PENDING),
        Column("LastError", String(255), nullable=False, default=""),
        Column("FetchedFrom", String(16), nullable=False, default=""),
        Index("ix_PacsExportJobs_due", "State", "NextAttempt"), **MYSQL_TABLE)
    forwards = Table(
        "PacsForwards", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("Action", String(8), nullable=False),
        Column("Destination", String(255), nullable=False, default=""),
        Column("Level", String(8), nullable=False),
        Column("PatientID", String(64), nullable=False, default=""),
        Column("StudyInstanceUID", String(64), nullable=False, default=""),
        Column("SeriesInstanceUID", String(64), nullable=False, default=""),
        Column("SOPInstanceUID", String(64), nullable=False, default=""),
        Column("CollectUID", String(64), nullable=False, default=""),
        Column("Compression", String(8), nullable=False, default=""),
        Column("Filters", Text, nullable=False, default="{}"),
        Column("NotBefore", Double, nullable=False),
        Column("NextAttempt", Double, nullable=False),
        Column("Attempts", Integer, nullable=False, default=0),
        Column("State", String(8), nullable=False, default=PENDING),
        Column("LastError", String(255), nullable=False, default=""),
        Column("Created", Double, nullable=False),
        Column("ObjectPath", ObjectPath(1024), nullable=False, default=""),
        Index("ix_PacsForwards_due", "State", "NextAttempt"),
        Index("ix_PacsForwards_collect", "CollectUID", "Action", "Destination"), **MYSQL_TABLE)
    return jobs, forwards


def retryLimit(ini, key, default):
    """A retry limit from dicom.ini: absent -> ``default``; 0 -> None (forever)."""
    value = ini.getint(key, None)
    if value is None:
        return default
    return value if value > 0 else None


class ExportQueue:
    """See the module docstring.  ``rules`` are the export ``Rule``s of
    ``pacscore.converters.rules`` (``key``, ``filter``, ``matches``);
    ``maximumRetries`` (retries after the first attempt) None means forever (``delayedRetries``
    defaults to it); ``mirrored``: the names of the
    MAG devices whose objects get a ``MIRRORCOPY`` job; ``clock`` gives
    seconds."""

    log = Logger()

    def __init__(self, index, rules=(), retryDelay=DEFAULT_RETRY_DELAY,
                 maximumRetries=DEFAULT_MAXIMUM_RETRIES, delayedRetries=None,
                 collectDelay=DEFAULT_COLLECT_DELAY, mirrored=frozenset(), clock=time.time, objectPaths=None):
        self.index = index
        # Where the index keeps no rows (NULL driver): (DeviceName, ObjectFile) -> the
        # absolute path an IMAGE action records (see addForward); else None.
        self.objectPaths = objectPaths
        self.engine = index.engine
        self.rules = list(rules)
        self.mirrored = frozenset(mirrored)
        self.retryDelay = retryDelay
        self.maximumRetries = maximumRetries
        self.delayedRetries = maximumRetries if delayedRetries is None else delayedRetries
        self.collectDelay = collectDelay
        self.clock = clock
        self.metadata = MetaData()
        self.jobs, self.forwards = buildTables(self.metadata)
        self._lock = threading.Lock()  # addForward's collecting reads, then writes

    @classmethod
    def fromConfiguration(cls, index, configuration, rules=(), mirrored=frozenset(), clock=time.time,
                          objectPaths=None):
        """With RetryDelay, MaximumExportRetries,
        MaximumDelayedFetchForwardRetries and ForwardCollectDelay of
        dicom.ini."""
        ini = configuration.ini
        maximum = retryLimit(ini, EXPORT_RETRIES, DEFAULT_MAXIMUM_RETRIES)
        delayed = retryLimit(ini, DELAYED_RETRIES, maximum)
        return cls(index, rules, retryDelay=ini.getint("RetryDelay", DEFAULT_RETRY_DELAY),
                   maximumRetries=maximum, delayedRetries=delayed,
                   collectDelay=ini.getint("ForwardCollectDelay", DEFAULT_COLLECT_DELAY), mirrored=mirrored,
                   clock=clock, objectPaths=objectPaths)

    def createTables(self):
        """Create the two tables and their indexes if missing; bring
        existing ones up to date (``upgradeTable``)."""
        with self.engine.begin() as connection:
            createMissingTables(connection, self.metadata, self.log)
            for table in (self.jobs, self.forwards):
                upgradeTable(connection, table, self.log)

    # -- export converter jobs --------------------------------------------

    def enqueueJobs(self, connection, records):
        """Insert, in the caller's transaction, one job per record and
        matching export converter line, and one mirror copy job per record
        of a mirrored device; returns how many.  The actions the import
        converter lines queued for a record (``ImageRecord.actions``) are
        written too, so that none is seen before its object is stored, nor
        at all when it is not."""
        now, rules = self.clock(), self.rules  # the lines in use (Archive.useConverterRules may replace them)
        rows = []
        for record in records:
            for action in record.actions:
                if self.objectPaths is not None and action["Level"] == "IMAGE":
                    action = {**action, "ObjectPath": self.objectPaths(record.deviceName, record.objectFile)}
                self._addAction(connection, action)
            modality = record.attrs.get(MODALITY, "")
            station = record.attrs.get(STATION_NAME, "")
            callingAE, calledAE = record.callingAE, record.calledAE
            converters = [rule.key for rule in rules
                          if record.converters and rule.matches(modality, station, calledAE, callingAE)]
            if record.deviceName in self.mirrored:
                converters.append(MIRROR_COPY)
            rows += [_jobRow(converter, record.attrs.get(SOP_INSTANCE_UID, ""), record.deviceName,
                             record.objectFile, now, callingAE, calledAE, modality, station, record.fetchedFrom)
                     for converter in converters]
        if rows:
            connection.execute(self.jobs.insert(), rows)
        return len(rows)

    def queueMirrorCopies(self, objects):
        """Queue a mirror copy of each ``(SOPInstanceUID, DeviceName,
        ObjectFile)`` (``dgate --verifymirrordisk``); a Deferred."""
        return self.index.runWrite(self._queueMirrorCopies, list(objects))

    def _queueMirrorCopies(self, connection, objects):
        now = self.clock()
        if objects:
            connection.execute(self.jobs.insert(), [_jobRow(MIRROR_COPY, *names, now) for names in objects])

    def queuedMirrorCopies(self, deviceName):
        """The ObjectFiles of ``deviceName`` whose mirror copy is still
        queued (pending or failed)."""
        jobs = self.jobs
        with self.engine.connect() as connection:
            return set(connection.execute(select(jobs.c.ObjectFile).where(
                jobs.c.Converter == MIRROR_COPY, jobs.c.DeviceName == deviceName)).scalars())

    def dueJobs(self, now, limit, skip=()):
        """Pending jobs whose time has come, oldest first, but none of the
        converters (lines) in ``skip``."""
        jobs = self.jobs
        query = (select(jobs.c.id, jobs.c.Converter, jobs.c.SOPInstanceUID, jobs.c.DeviceName,
                        jobs.c.ObjectFile, jobs.c.CallingAE, jobs.c.CalledAE, jobs.c.Attempts, jobs.c.FetchedFrom)
                 .where(jobs.c.State == PENDING, jobs.c.NextAttempt <= now)
                 .order_by(jobs.c.NextAttempt, jobs.c.id).limit(limit))
        if skip:
            query = query.where(jobs.c.Converter.not_in(list(skip)))
        with self.engine.connect() as connection:
            return [ExportJob(*row) for row in connection.execute(query)]

    def filterMatches(self, sopInstanceUID, sqlFilter):
        """Whether the object passes an ``ExportFilterN`` SQL condition on
        the DICOMImages row joined with its series and study rows (column
        names of dicom.sql; ambiguous ones such as StudyInstanceUID cannot
        be used, as the manual says).  A condition the database refuses is
        logged and does not match."""
        if not sqlFilter or not sqlFilter.strip():
            return True
        tables, layout = self.index.tables, self.index.layout
        image, series, study = tables.image, tables.series, tables.study
        imageKey, imageLink = _keyAndLink(image, layout.image)
        seriesKey, seriesLink = _keyAndLink(series, layout.series)
        studyKey, _ = _keyAndLink(study, layout.study)
        quoted = self.index.quoteNames
        statement = text(quoted(
            f"SELECT 1 FROM {image.name} JOIN {series.name} ON {image.name}.{imageLink.name} = "
            f"{series.name}.{seriesKey.name} JOIN {study.name} ON {series.name}.{seriesLink.name} = "
            f"{study.name}.{studyKey.name} WHERE {image.name}.{imageKey.name}") + f" = :uid AND ({quoted(sqlFilter)})")
        try:
            with self.engine.connect() as connection:
                return connection.execute(statement, {"uid": sopInstanceUID}).first() is not None
        except Exception as e:
            self.log.warn("export filter {filter!r} cannot be evaluated ({error}): taken as no match",
                          filter=sqlFilter, error=e)
            return False

    def recordJobs(self, outcomes, now):
        """Record ``JobOutcome``s in one transaction of the index writer:
        a done job is deleted and the actions its line queued inserted, a
        deferred one is due again RetryDelay after ``now`` (no attempt
        counted), a failed one is retried like a failed forward.  A
        Deferred of the jobs' new states (None for a deleted one)."""
        return self.index.runWrite(self._recordJobs, outcomes, now)

    def _recordJobs(self, connection, outcomes, now):
        return [self._recordJob(connection, outcome, now) for outcome in outcomes]

    def _recordJob(self, connection, outcome, now):
        if outcome.error is not None:
            return self._fail(connection, self.jobs, outcome.jobId, outcome.error, now,
                              None if outcome.retryForever else self.maximumRetries)
        if outcome.deferred:
            connection.execute(self.jobs.update().where(self.jobs.c.id == outcome.jobId)
                               .values(NextAttempt=now + self.retryDelay))
            return PENDING
        # Not under _lock: addForward holds it while it waits for the
        # database, which waits for this transaction (a deadlock until the
        # busy timeout).  At worst an action is collected twice.
        for row in outcome.actions:
            self._addAction(connection, row)
        connection.execute(self.jobs.delete().where(self.jobs.c.id == outcome.jobId))
        return None

    # -- delayed actions --------------------------------------------------

    def actionRow(self, destination, level, target, compression="", notBefore=None, action="forward",
                  filters=None, objectPath=""):
        """The ``PacsForwards`` row ``addForward`` writes (see there)."""
        level = level.upper()
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}")
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        target = Target(*target)
        if not target.uid(level).strip():
            raise ValueError(f"the object has no {LEVEL_NAMES[level]}: a {level.lower()} {action} "
                             f"would select every object")
        now = self.clock()
        if notBefore is None:
            notBefore = now if level == "IMAGE" else now + self.collectDelay
        return _fitted(self.forwards, {
            "Action": action, "Destination": destination, "Level": level,
            "PatientID": target.patientID, "StudyInstanceUID": target.studyInstanceUID,
            "SeriesInstanceUID": target.seriesInstanceUID, "SOPInstanceUID": target.sopInstanceUID,
            "CollectUID": target.uid(level), "Compression": (compression or "").lower(),
            "Filters": json.dumps(filters or {}, sort_keys=True), "NotBefore": notBefore,
            "NextAttempt": notBefore, "Attempts": 0, "State": PENDING, "LastError": "", "Created": now,
            "ObjectPath": objectPath if level == "IMAGE" and (self.objectPaths is not None or isSpooled(objectPath))
            else ""})

    def addForward(self, destination, level, target, compression="", notBefore=None, action="forward",
                   filters=None, objectPath=""):
        """Queue ``action`` of the ``level`` entity (PATIENT ... IMAGE) of
        ``target`` (a ``Target`` or 4-tuple). ``destination``: the AE to
        forward to or get from (``""`` for local actions); ``filters``:
        ``{name: value}`` narrowing which objects (see
        ``pacscore.export.selection``); ``notBefore`` (seconds): default
        now for IMAGE, now + ForwardCollectDelay above.  Collected with a
        pending identical action of the same entity (see ``_addAction``).
        ``objectPath``: the file of the object an export converter runs
        on, kept with an IMAGE action when there are ``objectPaths`` (the
        index keeps no rows to find it by), or a spool file to send instead
        of the stored object (``pacscore.export.spool``)."""
        row = self.actionRow(destination, level, target, compression, notBefore, action, filters, objectPath)
        with self._lock, self.engine.begin() as connection:
            self._addAction(connection, row)

    def _addAction(self, connection, row):
        """Insert ``row``, or collect it into the same pending action, whose
        times then become the later of the two.  A forward is collected
        into one not yet due, tried or not (one waiting for its retry
        sends the later objects with the earlier ones, once), never into
        one already due: that may be under way, its objects looked up
        before this one's, and deleted once done.  A ``get`` or
        ``prefetch`` is collected into any pending one, under way or
        waiting for its retry: a get under way brings in objects whose
        import lines may ask for the same get again, which must not start
        it over and over (``preretrieve`` no longer does, see
        ``pacscore.dicom.ownretrieves``, but a get a user or several triggers
        asked for does).  Other actions are collected into one not yet
        tried, due or not."""
        forwards = self.forwards
        if row["Action"] == "forward":
            waiting = forwards.c.NextAttempt > row["Created"]
        elif row["Action"] in FETCHES:
            waiting = true()
        else:
            waiting = forwards.c.Attempts == 0
        same = and_(forwards.c.CollectUID == row["CollectUID"], forwards.c.Action == row["Action"],
                    forwards.c.Destination == row["Destination"], forwards.c.Level == row["Level"],
                    forwards.c.Compression == row["Compression"], forwards.c.Filters == row["Filters"],
                    forwards.c.ObjectPath == row["ObjectPath"], forwards.c.State == PENDING, waiting)
        existing = connection.execute(select(forwards.c.id, forwards.c.NotBefore, forwards.c.NextAttempt)
                                      .where(same).limit(1)).first()
        if existing is None:
            connection.execute(forwards.insert(), row)
        elif row["NotBefore"] > existing.NotBefore:
            connection.execute(forwards.update().where(forwards.c.id == existing.id).values(
                NotBefore=row["NotBefore"], NextAttempt=max(row["NotBefore"], existing.NextAttempt)))

    def due(self, now, limit, skip=()):
        """Pending actions whose time has come, in the order they were
        queued (not of their times: the script workers stamp the actions
        of one batch of jobs as each runs, so those times interleave, and
        a study would leave in scrambled blocks, each on an association of
        its own), but none of a lane in ``skip`` (busy or held off; see ``laneOf``).  A ``delete``
        waits while a forward or get queued before it for the same patient
        is still in the table (pending, under way or failed): actions run
        in parallel lanes, and "forward study to X; delete study" must not
        delete what has not reached X."""
        f = self.forwards
        earlier = f.alias("earlier")
        unsent = (select(earlier.c.id)
                  .where(earlier.c.id < f.c.id, earlier.c.Action.in_(REMOTE_ACTIONS),
                         earlier.c.PatientID == f.c.PatientID))
        query = (select(f).where(f.c.State == PENDING, f.c.NextAttempt <= now,
                                 or_(f.c.Action != "delete", ~exists(unsent)))
                 .order_by(f.c.id).limit(limit))
        remote = f.c.Action.in_(REMOTE_ACTIONS)
        destinations = [lane for lane in skip if lane is not LOCAL]
        if destinations:
            query = query.where(or_(~remote, f.c.Destination.not_in(destinations)))
        if LOCAL in skip:
            query = query.where(remote)
        with self.engine.connect() as connection:
            return [_action(row) for row in connection.execute(query)]

    def markDone(self, actionIds):
        """The actions succeeded: their rows go (a Deferred, see the module
        docstring)."""
        return self.index.runWrite(self._markDone, actionIds)

    def _markDone(self, connection, actionIds):
        connection.execute(self.forwards.delete().where(self.forwards.c.id.in_(actionIds)))

    def markFailed(self, actionId, error, now, giveUp=False, counted=True):
        """Count a failed attempt: tried again RetryDelay seconds after
        ``now``, or state ``failed`` once the retries are used up (at once
        with ``giveUp``: a retry would change nothing); not ``counted`` (a
        read error here, not the destination's), it is only tried again
        RetryDelay seconds after ``now``, its retries left as they were.
        A Deferred of the new state."""
        return self.index.runWrite(self._markFailed, actionId, error, now, giveUp, counted)

    def _markFailed(self, connection, actionId, error, now, giveUp, counted):
        if giveUp:
            return self._fail(connection, self.forwards, actionId, error, now, 0)
        if not counted:
            return self._fail(connection, self.forwards, actionId, error, now, None, counted=False)
        row = connection.execute(select(self.forwards.c.Level, self.forwards.c.Action)
                                 .where(self.forwards.c.id == actionId)).first()
        delayed = row is not None and retryLimitKey(row.Level, row.Action) == DELAYED_RETRIES
        limit = self.delayedRetries if delayed else self.maximumRetries
        return self._fail(connection, self.forwards, actionId, error, now, limit)

    def _fail(self, connection, table, rowId, error, now, limit, counted=True):
        attempts = connection.execute(select(table.c.Attempts).where(table.c.id == rowId)).scalar()
        if attempts is None:
            return None
        attempts += counted
        state = FAILED if limit is not None and attempts > limit else PENDING
        connection.execute(table.update().where(table.c.id == rowId).values(
            Attempts=attempts, State=state, NextAttempt=now + self.retryDelay, LastError=str(error)[:255]))
        return state

    def retryOnly(self, action, targets, error, now):
        """In one transaction, replace the forward ``action`` (above IMAGE
        level, its other objects sent) by an IMAGE forward of each of
        ``targets`` (the objects it could not read, ``Target``s) to the same
        destination with the same compression and filters, due RetryDelay
        seconds after ``now``, ``error`` as their last error and the
        action's attempts (this one is not counted).  The deletes of the
        patient queued after the action are queued again after those, so
        they still wait for them (``due``): "forward study to X; delete
        study" never deletes what has not reached X.  A Deferred of the new
        state (None when the action is no longer queued: nothing queued)."""
        return self.index.runWrite(self._retryOnly, action, targets, error, now)

    def _retryOnly(self, connection, action, targets, error, now):
        forwards = self.forwards
        if not connection.execute(forwards.delete().where(forwards.c.id == action.id)).rowcount:
            return None
        later = and_(forwards.c.id > action.id, forwards.c.Action == "delete",
                     forwards.c.PatientID == action.target.patientID)
        deletes = [dict(row._mapping) for row in connection.execute(select(forwards).where(later)
                                                                    .order_by(forwards.c.id))]
        connection.execute(forwards.delete().where(later))
        for target in targets:  # not under _lock, as _recordJob
            row = self.actionRow(action.destination, "IMAGE", target, action.compression, now + self.retryDelay,
                                 action.action, action.filters)
            row.update(Attempts=action.attempts, LastError=str(error)[:255])
            self._addAction(connection, row)
        for row in deletes:
            del row["id"]
            connection.execute(forwards.insert(), row)
        return PENDING

    def retryFailed(self, destination=None):
        """Put failed actions (of ``destination`` only, if given; with
        None the failed export jobs too) back in the queue, due now and
        with their attempts reset.  A Deferred of how many."""
        return self.index.runWrite(self._retryFailed, destination)

    def _retryFailed(self, connection, destination):
        values = {"State": PENDING, "Attempts": 0, "NextAttempt": self.clock()}
        condition = self.forwards.c.State == FAILED
        if destination is not None:
            condition = and_(condition, self.forwards.c.Destination == destination)
        count = connection.execute(self.forwards.update().where(condition).values(values)).rowcount
        if destination is None:
            count += connection.execute(self.jobs.update().where(self.jobs.c.State == FAILED)
                                        .values(values)).rowcount
        return count

    def counts(self):
        """Queue depths: ``{"jobs": {state: n}, "actions": {state: n},
        "destinations": {destination: {state: n}}}``."""
        f, j = self.forwards, self.jobs
        result = {"jobs": {PENDING: 0, FAILED: 0}, "actions": {PENDING: 0, FAILED: 0}, "destinations": {}}
        with self.engine.connect() as connection:
            for state, count in connection.execute(select(j.c.State, func.count()).group_by(j.c.State)):
                result["jobs"][state] = count
            for destination, state, count in connection.execute(
                    select(f.c.Destination, f.c.State, func.count()).group_by(f.c.Destination, f.c.State)):
                result["actions"][state] = result["actions"].get(state, 0) + count
                result["destinations"].setdefault(destination, {PENDING: 0, FAILED: 0})[state] = count
        return result

    def failedActions(self, destination=None):
        """``(Action, last error)`` of every failed action (of
        ``destination`` only, if given), for status pages and logs."""
        f = self.forwards
        condition = f.c.State == FAILED
        if destination is not None:
            condition = and_(condition, f.c.Destination == destination)
        with self.engine.connect() as connection:
            return [(_action(row), row.LastError)
                    for row in connection.execute(select(f).where(condition).order_by(f.c.id))]


def retryLimitKey(level, action):
    """The dicom.ini key whose number of retries an action (its ``level``
    and ``action``) gets: the collected ones (patient, study, series) and
    the fetches use ``MaximumDelayedFetchForwardRetries``."""
    return DELAYED_RETRIES if level != "IMAGE" or action in FETCHES else EXPORT_RETRIES


def laneOf(action):
    """The lane an ``Action`` goes in (one action at a time each): its
    destination for a forward or get, whatever that is, else ``LOCAL``."""
    return action.destination if action.action in REMOTE_ACTIONS else LOCAL


def _jobRow(converter, sopInstanceUID, deviceName, objectFile, now, callingAE="", calledAE="", modality="",
            station="", fetchedFrom=""):
    """A new ``PacsExportJobs`` row."""
    return {"Converter": converter, "SOPInstanceUID": sopInstanceUID, "DeviceName": deviceName,
            "ObjectFile": objectFile, "CallingAE": callingAE[:16], "CalledAE": calledAE[:16],
            "Modality": modality[:16], "StationName": station[:16], "Created": now, "NextAttempt": now,
            "Attempts": 0, "State": PENDING, "LastError": "", "FetchedFrom": fetchedFrom[:16]}


def _fitted(table, row):
    """``row`` with its texts cut to their columns' lengths, as the index
    cuts them (a 70-character Patient ID): MySQL's strict mode refuses the
    row otherwise, and with it the store that queued it."""
    return {name: value[:table.c[name].type.length]
            if isinstance(value, str) and getattr(table.c[name].type, "length", None) else value
            for name, value in row.items()}


def _action(row):
    return Action(row.id, row.Action, row.Destination, row.Level,
                  Target(row.PatientID, row.StudyInstanceUID, row.SeriesInstanceUID, row.SOPInstanceUID),
                  row.Compression, json.loads(row.Filters), row.Attempts, row.ObjectPath)


def _keyAndLink(table, columns):
    """The key (first) and link (last) columns of an index table."""
    names = [c.name for c in columns if not c.isSequenceMarker]
    return table.c[names[0]], table.c[names[-1]]
