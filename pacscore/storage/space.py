"""Free space on MAG0: whole patients deleted, least recently used first.

Which patients go first is Conquest's ``LRUSort``: by default (or
``AccessTime``) the oldest ``AccessTime`` of the patient table (set when a
patient is entered: the first entered go first, as in Conquest); with
``StudyDate`` the patients whose last study is oldest; with ``PatientBir``
the oldest patients (birth date).  Ties go by AccessTime.  Free space is
counted on MAG0 or, when objects spill over to other MAG devices, as the
most one of them has (Conquest's LargestFreeMAG); by AccessTime, patients
with objects on any of those are deleted (those moved to MAG1 too, as
Conquest's PanicKillOff walks its whole patient table); by the other
sorts, and for a move, only those with objects on MAG0.  A patient with
an object stored (its image row's AccessTime, in whole seconds) after the
second the clean-up began in, or the check that started it, and not later
than the seconds it has run (on the monotonic clock) or the wall clock
allow (``CleanUpStart``: a later one was stamped before, by a clock that
ran ahead, and is old), is recently used and is not chosen, nor is the
patient of the object a MAGDeviceThreshold check was made for: so that
object, and any acknowledged while the clean-up runs, is never deleted by
it, even across a step of the wall clock, while patients stored earlier in
the same second (a fast ingest) can still make room.

``SpaceKeeper.makeSpace`` serves the control command ``makespace``.
``ThresholdClean`` (a service) is Conquest's ``MAGDeviceThreshold``
(manual, dicom.ini): the I/O thread that is about to write an object calls
its ``checkFromThread``; when the device the object goes to has less than
the threshold free (in MB), patients are deleted until 5 MB more than the
threshold is free on MAG0 or, when objects spill over to other MAG
devices, on one of them (Conquest's GetDevice and PanicKillOff; while one
has the threshold free, none starts).  That runs
in the background, one clean-up at a time (``SpaceKeeper.clean``), so the
object being written waits for nothing (if the disk is really full it gets
A700, as without a threshold).  A threshold of 0, or
``IgnoreMAGDeviceThreshHold = 1``, turns it off.  ``NightlyCleanThreshold``
(a ``Nightly`` service) does the same once a night, at 01:00;
``NightlyMoveThreshold`` moves patients to ``NightlyMoveTarget`` instead
(``moveIfBelow``), at 02:00 (or, the night that hour does not exist, after
it); a target that fills up (or cannot be written) ends that move with one
error line.  Both services are ``OneAtATime``: a stop ends
the run under way after the patient it is at, and waits for it.
"""

import shutil
import time

from sqlalchemy import func, select
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from pacscore.db.query import PATIENT_ID, exactKey
from pacscore.storage.devices import isDiskFull
from pacscore.storage.relocation import MoveStopped

MEGABYTE = 1 << 20
MARGIN = 5 * MEGABYTE  # Conquest: "until the free disk space is about 5 MB larger"
MINUTE = 60  # seconds between two checks of the hour of a Nightly task
HOUR = 3600
RETRY = MINUTE  # seconds before a MAGDeviceThreshold clean-up that ended short is run again


def freeSpace(path):
    """Free bytes on the file system of ``path`` (blocking)."""
    return shutil.disk_usage(path).free


STUDY_DATE = 0x00080020
PATIENT_BIRTH_DATE = 0x00100030
LRU_SORTS = {"": None, "accesstime": None, "studydate": STUDY_DATE, "patientbir": PATIENT_BIRTH_DATE}


def lruSortTag(value):
    """The tag Conquest's ``LRUSort`` orders patients by (None: AccessTime
    alone); ValueError for a value it does not know."""
    key = value.strip().lower()
    if key.startswith("patientbir"):  # PatientBir, PatientBirthDate
        key = "patientbir"
    if key not in LRU_SORTS:
        raise ValueError(f"LRUSort = {value.strip()}: expected StudyDate, PatientBir or AccessTime")
    return LRU_SORTS[key]


def patientsInDeletionOrder(connection, query, sortTag):
    """In a reader thread: patient IDs, the first to delete first."""
    patient, study = query.tables[0], query.tables[1]
    order = []
    statement = select(patient.key)
    if sortTag == STUDY_DATE and STUDY_DATE in study.byTag:
        lastStudy = (select(study.link.label("patient"), func.max(study.byTag[STUDY_DATE][0]).label("date"))
                     .group_by(study.link).subquery())
        statement = statement.outerjoin(lastStudy, lastStudy.c.patient == patient.key)
        order.append(func.coalesce(lastStudy.c.date, ""))
    elif sortTag is not None and sortTag in patient.byTag:
        order.append(func.coalesce(patient.byTag[sortTag][0], ""))
    statement = statement.order_by(*order, patient.table.c.AccessTime, patient.key)
    return connection.execute(statement).scalars().all()


def storedSince(connection, query, patientID, since, until):
    """In a reader thread: whether an object of the patient was stored
    after the second ``since`` and not after ``until`` (seconds since the
    epoch, whole as AccessTime is)."""
    study, series, image = query.tables[1:4]
    joined = image.table.join(series.table, image.link == series.key).join(study.table, series.link == study.key)
    accessed = image.table.c.AccessTime
    statement = (select(image.key).select_from(joined)
                 .where(study.link == patientID, accessed > since, accessed <= until).limit(1))
    return connection.execute(statement).first() is not None


class CleanUpStart:
    """When a clean-up (or the check that started it) began: ``second``,
    the second of the wall clock (whole, as AccessTime is), and the reading
    of the monotonic clock."""

    def __init__(self, wallClock, monotonic):
        self.wallClock = wallClock
        self.monotonic = monotonic
        self.second = int(wallClock())
        self._began = monotonic()

    def lastRecent(self):
        """The last AccessTime an object stored since can have: ``second``
        plus the seconds run since (on the monotonic clock, so an object
        stored before the wall clock stepped back counts), or the wall clock
        now when later (so does one stored after it stepped forward).  A
        later one was stamped by a clock that ran ahead before the start."""
        return max(self.second + int(self.monotonic() - self._began) + 1, int(self.wallClock()))


class SpaceKeeper:
    """``device`` is MAG0; ``actions`` the archive's ``LocalActions``;
    ``mover`` its ``DeviceMover``; ``sortTag`` what LRUSort orders
    patients by (``lruSortTag``); ``spillover`` the other MAG devices new
    objects go to when MAG0 has no room (``MAGDeviceFullThreshHold``)."""

    log = Logger()
    freeSpace = staticmethod(freeSpace)
    wallClock = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)

    def __init__(self, device, index, query, actions, workers, sortTag=None, mover=None, spillover=()):
        self.device = device
        self.spillover = tuple(spillover)
        self.index = index
        self.query = query
        self.actions = actions
        self.mover = mover
        self.workers = workers
        self.sortTag = sortTag
        self.cleaning = None  # the Deferred of the clean-up under way, or None

    async def makeSpace(self, wanted, report=lambda line: None, moveTo=None, keepGoing=lambda: True, since=None,
                        sparing=None, anywhere=False):
        """Delete patients with objects where free space is counted (the
        device, with ``anywhere`` it or one of ``spillover``; by StudyDate or
        PatientBir the device: ``_chosenFrom``) or, with ``moveTo``, move
        the objects of those on the device to that MAG device, until
        ``wanted`` bytes are free there (with ``anywhere`` the most one of
        them has, as Conquest's LargestFreeMAG), calling ``report`` with a
        line for each; fires with the free bytes (fewer than wanted when there was nobody
        left, or when ``keepGoing()`` turned false: it is asked before each
        patient).  Patients with an object stored since ``since`` (a
        ``CleanUpStart``, default: now), and the patient ``sparing`` (whose
        object is being written), are left alone."""
        since = self.cleanUpStart() if since is None else since
        free = await self.workers.deferToWorker(self.freeBytes, anywhere)
        if free >= wanted:
            return free
        chosenFrom = self._chosenFrom(moveTo, anywhere)
        for patientID in await self.index.runQuery(patientsInDeletionOrder, self.query, self.sortTag):
            if free >= wanted or not keepGoing():
                break
            if patientID is None or "\\" in patientID:  # would select other patients too (a list of IDs)
                self.log.warn("patient {patientID!r} cannot be selected alone: not deleted or moved",
                              patientID=patientID)
                continue
            instances = await self.index.runQuery(self.query.instances, "IMAGE", [exactKey(PATIENT_ID, patientID)])
            if not any(i.deviceName in chosenFrom for i in instances):
                continue  # freeing nothing on the devices it is chosen from
            if patientID == sparing or await self.index.runQuery(storedSince, self.query, patientID, since.second,
                                                                 since.lastRecent()):
                continue  # recently used; read after its instances, so none of them is newer
            if moveTo is None:
                removal = await self.actions.removeInstances(instances)
                report(f"deleted patient {patientID}: {removal.removed} object(s)")
            else:
                here = [(i.sopInstanceUID, i.deviceName, i.objectFile) for i in instances
                        if i.deviceName == self.device.name]
                count = await self.mover.move(here, moveTo)
                report(f"moved patient {patientID}: {count} object(s) to {moveTo}")
            free = await self.workers.deferToWorker(self.freeBytes, anywhere)
        return free

    def _chosenFrom(self, moveTo, anywhere):
        """The names of the devices a patient with objects on is chosen:
        the device to move (Conquest's nightly move) or by StudyDate or
        PatientBir (its MakeListOfOldestPatientsOnDevice of MAG0); else
        those whose free space is counted (``freeBytes``), as Conquest's
        PanicKillOff with ``LRUSort`` empty walks the whole patient table
        until LargestFreeMAG has room: the first entered go first, also when
        moved to a device objects spill over to, and a patient whose
        deletion frees nothing where it is counted is never deleted."""
        if moveTo is not None or self.sortTag is not None or not anywhere:
            return {self.device.name}
        return {device.name for device in (self.device, *self.spillover)}

    def freeBytes(self, anywhere=False, skip=None):
        """In a worker: the free bytes of the device, or with ``anywhere``
        the most that it or one of ``spillover`` has (one of these that
        cannot be looked at counts for none); ``skip``: a device whose free
        bytes the caller has just looked at, not looked at again (0 when it
        is the only one)."""
        free = 0 if self.device is skip else self.freeSpace(self.device.path)
        for device in self.spillover if anywhere else ():
            if device is skip:
                continue
            try:
                free = max(free, self.freeSpace(device.path))
            except OSError:
                pass
        return free

    def where(self, anywhere):
        """The devices ``freeBytes`` looks at, for the log."""
        return " or ".join(device.name for device in (self.device,) + (self.spillover if anywhere else ()))

    def cleanUpStart(self):
        """A ``CleanUpStart`` of now (any thread)."""
        return CleanUpStart(self.wallClock, self.monotonic)

    async def moveIfBelow(self, threshold, target, keepGoing=lambda: True):
        """Conquest's NightlyMoveThreshold: when less than ``threshold``
        bytes are free, move patients to the MAG device ``target`` until
        that much is free (or ``keepGoing()`` turns false)."""
        if await self.workers.deferToWorker(self.freeSpace, self.device.path) >= threshold:
            return
        self.log.warn("less than {threshold} MB free on {device} (NightlyMoveThreshold): moving the least "
                      "recently used patients to {target}", threshold=threshold // MEGABYTE,
                      device=self.device.name, target=target)
        moved = []

        def report(line):
            moved.append(line)
            self.log.info("NightlyMoveThreshold: {line}", line=line)
        try:
            free = await self.makeSpace(threshold, report, moveTo=target, keepGoing=keepGoing)
        except MoveStopped as stopped:
            free = await self.workers.deferToWorker(self.freeSpace, self.device.path)
            self.log.error("NightlyMoveThreshold: {target} {state} ({error}): move stopped after {patients} "
                           "patient(s) and {objects} object(s) of the next; {free} MB free on {device}", target=target,
                           state="is full" if isDiskFull(stopped.error) else "cannot be written",
                           error=stopped.error, patients=len(moved), objects=stopped.moved, free=free // MEGABYTE,
                           device=self.device.name)
        else:
            self._cleaned(free, threshold)

    async def cleanIfBelow(self, threshold, reason, keepGoing=lambda: True):
        """Start a clean-up when less than ``threshold`` bytes are free on
        the device and on each of ``spillover`` (as Conquest's
        LargestFreeMAG), and wait for it."""
        if await self.workers.deferToWorker(self.freeBytes, True) < threshold:
            await self.clean(threshold, reason, keepGoing, anywhere=True)

    def clean(self, threshold, reason, keepGoing=lambda: True, since=None, sparing=None, low=None, anywhere=False,
              quiet=False):
        """Delete patients until ``threshold`` + 5 MB are free (or
        ``keepGoing()`` turns false), logged with ``reason`` (the dicom.ini
        key), sparing ``sparing`` and those with objects stored since
        ``since``, free space counted ``anywhere`` or not (see
        ``makeSpace``); ``low``: the device found low (default: the
        device), for the log, whose warnings are info lines when ``quiet``.
        A Deferred of the free bytes after (None when it failed).  One
        clean-up at a time: while one runs, this returns a Deferred of its
        end."""
        if self.cleaning is None:
            wanted = threshold + MARGIN
            warn = self.log.info if quiet else self.log.warn
            warn("less than {threshold} MB free on {device} ({reason}): deleting the least recently used patients",
                 threshold=threshold // MEGABYTE, device=(low or self.device).name, reason=reason)
            report = lambda line: self.log.info("{reason}: {line}", reason=reason, line=line)
            self.cleaning = defer.ensureDeferred(self.makeSpace(wanted, report, keepGoing=keepGoing, since=since,
                                                                  sparing=sparing, anywhere=anywhere))
            self.cleaning.addCallback(self._cleaned, wanted, self.where(anywhere), quiet)
            self.cleaning.addErrback(lambda failure: self.log.failure("{reason} clean-up failed", failure,
                                                                      reason=reason))
            self.cleaning.addBoth(self._idle)
        done = defer.Deferred()
        self.cleaning.addBoth(lambda result: (done.callback(result), result)[1])
        return done

    def _cleaned(self, free, wanted, where=None, quiet=False):
        """Log the ``free`` bytes after a clean-up that wanted ``wanted``; ``free``."""
        level = self.log.info if quiet or free >= wanted else self.log.warn
        level("{free} MB free on {device} after the clean-up", free=free // MEGABYTE, device=where or self.device.name)
        return free

    def _idle(self, result):
        self.cleaning = None
        return result


class OneAtATime(service.Service):
    """A service that runs ``task(keepGoing)`` (a coroutine function), one
    run at a time; ``keepGoing()`` turns false when the service stops, which
    waits for the run under way: the task should then end after the patient
    it is at.  ``name`` (the dicom.ini key) is in the log lines."""

    log = Logger()
    _underWay = None  # the Deferred of the run under way, or None

    def stopService(self):
        """With a run under way, a Deferred of its end."""
        service.Service.stopService(self)
        if self._underWay is not None:
            ended = defer.Deferred()
            self._underWay.addBoth(ended.callback)
            return ended

    def _run(self):
        self._underWay = defer.ensureDeferred(self.task(lambda: self.running))
        self._underWay.addErrback(lambda failure: self.log.failure("{name} failed", failure, name=self.name))
        self._underWay.addBoth(self._ended)

    def _ended(self, _):
        self._underWay = None


class ThresholdClean(OneAtATime):
    """Conquest's MAGDeviceThreshold while the service runs: the I/O thread
    about to write an object calls ``checkFromThread``, which starts a
    clean-up of ``keeper`` (in the reactor) when the device the object goes
    to has less than ``threshold`` bytes free (0: off), as Conquest's
    GetDevice, unless another device new objects may go to has room; the
    clean-up ends once one of them has (its PanicKillOff).  One that ended short of the
    threshold (nobody left to delete, the disk filled by other files) is
    not run again for ``RETRY`` seconds, unless the free space falls
    ``MARGIN`` below what it ended with, and those of the same episode
    (until one ends with room, or a check finds room) log no warning."""

    name = "MAGDeviceThreshold"
    monotonic = staticmethod(time.monotonic)

    def __init__(self, keeper, threshold):
        self.keeper = keeper
        self.threshold = threshold
        self.checked = None  # when the check that started the clean-up was made (a CleanUpStart)
        self.writing = None  # the Patient ID of the object that check was made for
        self.low = None  # the device that check found low
        self.shortAt = None  # on the monotonic clock, when the last clean-up ended short; None: it did not
        self.shortFree = None  # the free bytes it ended with (None: it failed)

    def checkFromThread(self, patientID=None, device=None):
        """In an I/O thread, before an object of ``patientID`` is written
        on ``device`` (default: the keeper's, MAG0)."""
        if not (self.running and self.threshold):
            return
        device = device or self.keeper.device
        free = self.keeper.freeSpace(device.path)
        if free < self.threshold:
            # room on another device objects may go to will do
            free = max(free, self.keeper.freeBytes(anywhere=True, skip=device))
        low = free < self.threshold
        if low or self.shortAt is not None:
            self.keeper.workers.reactor.callFromThread(self._cleanUnlessCleaning, self.keeper.cleanUpStart(),
                                                       patientID, device if low else None, free)

    async def task(self, keepGoing):
        free = await self.keeper.clean(self.threshold, self.name, keepGoing, since=self.checked, sparing=self.writing,
                                       low=self.low, anywhere=True, quiet=self.shortAt is not None)
        short = free is None or free < self.threshold
        self.shortAt, self.shortFree = (self.monotonic(), free) if short else (None, None)

    def _cleanUnlessCleaning(self, checked, patientID, low, free):
        """In the reactor: start a clean-up for a check that found ``low``
        short of room, ``free`` bytes (None: one found room, ending the
        episode)."""
        if low is None:
            self.shortAt = None
        elif self.running and self.keeper.cleaning is None and (self.shortAt is None or self._retryDue(free)):
            self.checked, self.writing, self.low = checked, patientID, low
            self._run()

    def _retryDue(self, free):
        """Whether a clean-up may run again after one that ended short:
        ``RETRY`` seconds later, or at once when a check finds ``free``
        ``MARGIN`` below what that one ended with (objects stored since,
        whose patients, spared then or new, may go now)."""
        return (self.monotonic() - self.shortAt >= RETRY
                or self.shortFree is not None and free <= self.shortFree - MARGIN)


class Nightly(OneAtATime):
    """Runs ``task(keepGoing)`` once a night, in the hour ``hour`` local
    time (see ``OneAtATime``).  Conquest's NightlyCleanThreshold (01:00) and
    NightlyMoveThreshold (02:00).  As Conquest, it checks the hour: the
    wall clock (``now``, seconds since the epoch) is read at each minute, on
    ``clock``, and the task runs at the first check in its hour on a local
    date it has not run on.  So an hour that happens twice (the autumn clock
    change) runs it once, and a clock stepped forward past the hour runs it
    the next night, not at once.  Started within its hour, it waits for the
    next night.  The night the hour does not exist (the spring clock change
    skips it), the task runs at the first check after it: the local clock
    passed over the whole hour since the previous check, made less than an
    hour before."""

    def __init__(self, name, hour, task, clock, now=time.time):
        self.name = name
        self.hour = hour
        self.task = task
        self.clock = clock
        self.now = now
        self._call = None
        self._ranOn = None  # the local date (year, month, day) of the last run
        self._checked = None  # the wall clock at the previous check, or the start

    def startService(self):
        service.Service.startService(self)
        self._checked = self.now()
        day = time.localtime(self._checked)
        if day.tm_hour == self.hour:
            self._ranOn = day[:3]
        self._schedule()

    def stopService(self):
        """Cancels the next check; with a run under way, a Deferred of its end."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return OneAtATime.stopService(self)

    def _schedule(self):
        self._call = self.clock.callLater(MINUTE - self.now() % MINUTE, self._check)

    def _check(self):
        now = self.now()
        day = time.localtime(now)
        due = day.tm_hour == self.hour or self._skipped(now, day)
        if due and day[:3] != self._ranOn and self._underWay is None:
            self._ranOn = day[:3]
            self._run()
        self._checked = now
        if self.running:
            self._schedule()

    def _skipped(self, now, day):
        """Whether the hour did not exist (the local time ``day`` of ``now``
        is past it, the previous check's before it, less than an hour ago)."""
        before = time.localtime(self._checked)
        return (day.tm_hour > self.hour and before[:3] + (before.tm_hour,) < day[:3] + (self.hour,)
                and now - self._checked < HOUR)
