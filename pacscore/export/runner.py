"""The export queue runner: a child service of the application that runs
due export converter jobs and delivers due actions.

It polls the queue (``pollInterval``, 0.5 s), at once after ``kick()``,
and again whenever a lane's actions end, or a line's jobs end that a full
poll found (more may be due), so work already due does not wait for the
next tick.  While the polls fail (the index database down) the loop's
interval doubles after each failure up to ``pollBackoffCeiling`` (5 s),
and is back to ``pollInterval`` once a poll answers; the outage is logged
once when it starts and once when it ends.
While the index database refuses the queue's writes (its disk full, a
read-only standby) though it answers the polls, a job run or an action
delivered whose record or removal failed is remembered here as over, and
an action's failed attempt whose record failed as made (its lane held off
for FailHoldOff as usual): no poll hands it out again, each poll first
writes what is remembered (the failed attempts first, with the time they
were made, so RetryDelay counts from then), and starts no new work before
that write succeeds, the loop backing off as for failed polls; the
condition is logged once when it starts and once when it ends.  What is remembered is lost with a stop or a crash: those
jobs run, and those actions are sent, again at the next start.
While the index may miss stored objects (a regen pending or under way:
``IndexCompleteness``) the queue is held,
logged once when it starts and once when it ends: no poll starts work, and
the lanes under way stop before their next job or action, which stay
queued (a forward would find nothing and be removed as done).
Nothing here blocks the reactor or ingest: the converter lines run in a
pool of their own (``scriptThreads``), file reads and conversions in
another, network I/O on the reactor; the queue's writes go to the index
writer, group-committed with the stores of images (``ExportQueue``).

Jobs: one lane per export converter line, and one for the mirror copies,
as Conquest gives each export converter a queue of its own: a lane runs
the due jobs a poll found for it one after the other in a script worker,
all lanes in parallel (the script pool has a thread for each), and polls
meanwhile take the due jobs of the other lanes; so a line whose program
hangs (a copy to a dead NFS mount) holds back its own jobs only.  Each
job's line runs on the
stored object (read with pydicom, pixel data left out) in a
``ConverterContext`` of kind "export"; ``ExportFilterN`` is checked first against the index.  What a
job came to is recorded as soon as it ends, while its lane runs the next,
one write per lane at a time taking every job ended meanwhile
(``ExportQueue.recordJobs``, group-committed by the index writer):
``defer`` runs a job again after RetryDelay;
otherwise the job is deleted, and the actions its line queued
(``forward``, ``get`` ...) are inserted in the same transaction: a crash
never loses them nor queues them twice.  Other effects of a line
(``copy``, ``system``, files written) happen when it runs, so after a
crash before that transaction commits they happen again: at least once.
A stop lets each lane finish the job in hand and leaves its other jobs
pending; one still running after ``QuitGracePeriod`` (a program that
hangs) is left behind, logged and not recorded: it runs again at the next
start.
A ``MIRRORCOPY`` job copies its object to the mirror of its MAG device
instead (``pacscore.storage.mirror``), and is retried without limit.
A job whose file is gone is dropped only when its object was deleted (or
stored again, under another name): while the index still names that file
and no delete removes it (a data disk not mounted) it fails, retried.

Actions: one lane per destination AE (local actions share the lane
``LOCAL``, see ``queue.laneOf``), each running one action at a time in order, all lanes in
parallel.  A failure is logged with the destination and reason, counted
(``forwardsFailed``), retried after RetryDelay up to MaximumExportRetries,
and holds its lane off for ``FailHoldOff`` seconds (default 60): other
destinations go on.  A forward that failed as an object could not be read
here (``forwarder.Unreadable``: an I/O error, a file gone that the index
still names) is retried after RetryDelay too, but its destination is not
held off, the lane going on with its other actions, and the attempt does
not count against MaximumExportRetries (the read error may pass: a share
back online, a disk mounted); when such a forward above IMAGE level sent
its other objects, it is replaced by an IMAGE forward of each object not
read (``ExportQueue.retryOnly``), so a retry sends only those.  Such failures (of export jobs and mirror
copies too) are logged per MAG device: its first a warning, the next ones
debug lines until a forward or job that waited on it succeeds, which is
one line with how many waited.  An object deleted after its lane
located it is skipped by its forward, which goes on.  The index database
failing as a lane looks its actions up or delivers them is not the
destination's failure either: when that failure may pass
(``db.errors.isTransient``: a server down or restarting, SQLTimeOut) the
action and the rest of its lane stay queued, no attempt counted, the lane
not held off, one log line, and the polls back off as for failed polls, so
they go at most ``pollBackoffCeiling`` s after the database answers again;
one that would fail alike at once is a failed attempt, retried after
RetryDelay, the lane not held off.
An action is removed once delivered; the removal
goes to the index writer while the lane already sends the next actions
(one removal write per lane at a time, taking every action delivered
meanwhile), and the lane takes no new actions before its removals have
committed.  So after a crash an action is sent again only if it was
delivered but its row not yet removed: at most the few delivered during
the last removal write of each lane.  A stop lets each lane finish the
action under way and record it; the lane's other actions stay queued, so
after a clean stop nothing is sent again.  A forward still under way after
``QuitGracePeriod`` seconds (default 30) is interrupted before its next
object (``Forwarder.interrupt``), its association released, or at once,
its association aborted, while it waits for a C-STORE response or for
its association to be accepted: it stays
queued, no attempt counted, and goes again, whole, at the next start.
A forward that left objects out (``forwarder.Undelivered``) is given up
at once, a retry would leave them out again: it stays in the table as
failed, so a ``delete`` queued after it waits (``queue.ExportQueue.due``).
An image forward a line queued after it changed the object sends a spool
file of the changed object (``pacscore.export.spool``), deleted once the
action is removed: a given-up one keeps it, so that put back by
``--retryforwards`` it sends the changed object again.
"""

import copy
import errno
import os
import threading
from functools import partial
from operator import attrgetter

import pydicom
from sqlalchemy.exc import SQLAlchemyError
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacscore.control.shutdown import QUIT_GRACE_PERIOD, quitGracePeriod
from pacscore.converters.context import ConverterContext, Outcome
from pacscore.db.completeness import IndexCompleteness
from pacscore.db.errors import DATABASE_FAILURES, databaseMessage, isTransient
from pacscore.export.actions import LocalActions
from pacscore.export.forwarder import Forwarder, Interrupted, Undelivered, Unreadable
from pacscore.export.queue import EXPORT_RETRIES, FAILED, LOCAL, ActionBuffer, JobOutcome, laneOf, retryLimitKey
from pacscore.export.spool import discard, isSpooled, spoolFolder
from pacscore.holdoff import HoldOff
from pacscore.storage.mirror import MIRROR_COPY
from pacscore.workers import STOP_GRACE, WorkerPool

UNREADABLE_WARNED = 3600  # seconds: a MAG device still failing to be read is warned of again after this


def _discardBuffered(buffer):
    """Delete the spool files of the actions an export line put in
    ``buffer`` (an ``ActionBuffer``) that will not be queued: a deferred or
    failed line runs again later and spools its objects anew."""
    discard([action["ObjectPath"] for action in buffer.actions])


class _Batched:
    """Items written by ``write`` (a function of a list returning a
    Deferred or a coroutine), one write at a time, those added meanwhile
    together in the next write; ``written`` fires once all are written."""

    def __init__(self, write):
        self._write = write
        self._pending = []
        self.written = defer.succeed(None)

    def add(self, items):
        self._pending += items
        if self.written.called:
            self.written = defer.ensureDeferred(self._drain())

    async def _drain(self):
        while self._pending:
            batch, self._pending = self._pending, []
            await self._write(batch)


class _Finished:
    """The ``(job, outcome)``s of a job lane as its script worker ends
    them: handed to the reactor thread by one ``callFromThread`` for all
    those ending before it takes them, and recorded by ``record`` (a
    coroutine function of a list) in ``records``, a ``_Batched``."""

    def __init__(self, reactor, record):
        self._reactor = reactor
        self._lock = threading.Lock()
        self._ended = []  # by the worker, not yet taken
        self.records = _Batched(record)

    def add(self, job, outcome):
        """In the script worker."""
        with self._lock:
            self._ended.append((job, outcome))
            first = len(self._ended) == 1
        if first:
            self._reactor.callFromThread(self._take)

    def _take(self):
        with self._lock:
            ended, self._ended = self._ended, []
        self.records.add(ended)


class ExportService(service.Service):
    """See the module docstring.  ``services`` is the archive's
    ``ConverterServices`` (its ``exportQueue`` the queue itself); ``rules``
    the export ``Rule``s; ``reader`` the ``ObjectReader``."""

    log = Logger()
    pollInterval = 0.5
    pollBackoffCeiling = 5  # seconds: how late a forward can start once the database answers again
    countsInterval = 5
    batch = 64

    def __init__(self, queue, forwarder, local, services, rules, reader, reactor, scripts, io, failHoldOff=60,
                 gracePeriod=QUIT_GRACE_PERIOD, pollTimeout=None, completeness=None):
        self.queue = queue
        self.forwarder = forwarder
        self.local = local
        self.services = services
        self.useRules(rules)
        self.reader = reader
        self.reactor = reactor
        self.scripts = scripts
        self.io = io
        self.heldOff = HoldOff(reactor, failHoldOff)  # lanes held off after a failed action (FailHoldOff)
        self.gracePeriod = gracePeriod  # seconds a stop waits for the forwards under way
        self.pollTimeout = pollTimeout  # seconds a stop waits for a poll (SQLTimeOut of a database server)
        # the index's IndexCompleteness: nothing is run nor sent while it may miss objects
        self.completeness = completeness or IndexCompleteness()
        self._held = False  # the queue is held until the index is complete (logged once)
        self.counters = services.counters
        self._jobLanes = set()  # the lines (converters) whose jobs are under way
        self._jobsLeftBehind = False  # a stop went on without the jobs under way
        self._busyLanes = set()
        self._polling = None
        self._again = False
        self._pollBackoff = None  # while the polls fail: seconds the loop waits before the next
        self._nextPoll = 0
        self._pollsFailing = None  # (when, error) of the first failed poll of an outage
        self._unrecorded = {}  # job id: (job, outcome) of the jobs run whose record failed
        self._undeleted = {}  # action id: action delivered whose removal failed
        self._unmarked = {}  # action id: (action, error, when, giveUp) of a failed attempt whose record failed
        self._writesFailing = None  # (when, error) of the first failed write of those
        self._lookUpsFailing = None  # (when, error) of the first failure of a lane's look-ups (_databaseDown)
        self._unreadable = {}  # MAG device: (when, error) of its first object found unreadable, ids waiting on it
        self._lastCounts = None
        self._loop = None

    @classmethod
    def fromConfiguration(cls, configuration, queue, services, rules, query, reader, reactor, scriptThreads=2,
                          ioThreads=4, compressionScripts=None, fetcher=None, ownRetrieves=None):
        """The service with its two pools (``pacs-export`` for the lines,
        ``pacs-forward`` for the rest), its ``Forwarder`` (ForwardAssociation*
        keys; its gets register their C-MOVEs in ``ownRetrieves``), FailHoldOff
        and QuitGracePeriod from dicom.ini."""
        scripts = WorkerPool(reactor, max(scriptThreads, len(rules) + 1), "pacs-export")  # a lane each
        io = WorkerPool(reactor, ioThreads, "pacs-forward")
        forwarder = Forwarder.fromConfiguration(configuration, reactor, services.aeTitle, queue.index, query,
                                                reader, io, compressionScripts, fetcher, ownRetrieves)
        local = LocalActions(queue.index, query, reader, io, services)
        return cls(queue, forwarder, local, services, rules, reader, reactor, scripts, io,
                   failHoldOff=configuration.ini.getint("FailHoldOff", 60),
                   gracePeriod=quitGracePeriod(configuration.ini),
                   pollTimeout=queue.index.readTimeout, completeness=queue.index.completeness)

    def useRules(self, rules):
        """Run each job from now on with the ``Rule`` of its line in
        ``rules`` (a job under way keeps the one it began with)."""
        self.rules = {rule.key: rule for rule in rules}

    # -- service ----------------------------------------------------------

    def startService(self):
        service.Service.startService(self)
        self.scripts.start()
        self.io.start()
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop.start(self.pollInterval, now=True)

    async def _stop(self):
        if self._loop is not None and self._loop.running:  # else never started (start-up stopped half way)
            self._loop.stop()
        deadline = self.reactor.seconds() + self.gracePeriod
        pollDeadline = None if self.pollTimeout is None else self.reactor.seconds() + self.pollTimeout
        abandoned = False
        if self._jobLanes:
            self.log.info("stopping: waiting for the export jobs under way of {lines} (at most {grace} s, "
                          "QuitGracePeriod); their other jobs stay queued", lines=", ".join(sorted(self._jobLanes)),
                          grace=self.gracePeriod)
        while self._polling is not None or self._busyLanes or self._jobLanes:
            if self._polling is not None and pollDeadline is not None and self.reactor.seconds() >= pollDeadline:
                self.log.error("stopping: the export queue's poll got no answer from the index database within "
                               "{timeout} s (SQLTimeOut); stopping without it", timeout=self.pollTimeout)
                self._polling, abandoned = None, True  # its answer, if any, starts nothing (_poll)
            if self._busyLanes and not self.forwarder.interrupted and self.reactor.seconds() >= deadline:
                self.log.warn("stopping: the forwards still under way after {grace} s (QuitGracePeriod) stop "
                              "before their next object (at once one awaiting a C-STORE response or the answer to its "
                              "association request) and stay queued",
                              grace=self.gracePeriod)
                self.forwarder.interrupt()
            if self._jobLanes and self.reactor.seconds() >= deadline:
                self.log.warn("stopping: the export jobs of {lines} still running after {grace} s (QuitGracePeriod) "
                              "are left behind, not recorded: they run again at the next start",
                              lines=", ".join(sorted(self._jobLanes)), grace=self.gracePeriod)
                self._jobLanes.clear()
                self._jobsLeftBehind = True
            await task.deferLater(self.reactor, 0.05, lambda: None)
        await self.forwarder.closeAll()
        # a job or a poll's thread left behind: a second for the others to end, and it is named
        await self.scripts.stop(grace=1 if self._jobsLeftBehind else STOP_GRACE)
        await self.io.stop(grace=1 if abandoned else STOP_GRACE)

    def stopService(self):
        """Stops polling, waits for the job and the action each lane has
        under way (they finish or fail and are recorded, a forward stopped
        before its next object and a job left behind once the grace period
        is over; the lanes' other jobs and actions stay queued), closes the
        associations.  The index writer
        must still run until this Deferred fires (``ArchiveService``)."""
        service.Service.stopService(self)
        return defer.ensureDeferred(self._stop())

    # -- polling ----------------------------------------------------------

    def _backOff(self):
        """Doubles the interval of the loop's polls, up to
        ``pollBackoffCeiling``; the time it read."""
        now = self.reactor.seconds()
        self._pollBackoff = min(2 * (self._pollBackoff or self.pollInterval), self.pollBackoffCeiling)
        self._nextPoll = now + self._pollBackoff
        return now

    def _conditionStarted(self, attr, failure):
        """Backs the loop's polls off, and keeps in ``attr`` when the
        condition ``failure`` shows started and the first line of its
        message, unless one is kept there already: that line when it
        started now, else None."""
        now = self._backOff()
        if getattr(self, attr) is not None:
            return None
        error = failure.getErrorMessage().splitlines()[0]
        setattr(self, attr, (now, error))
        return error

    def _conditionEnded(self, attr, message):
        """Logs the end of the condition kept in ``attr`` (``message``, a
        format of ``seconds`` it lasted and its ``error``) and forgets it."""
        since, error = getattr(self, attr)
        setattr(self, attr, None)
        self.log.info(message, seconds=self.reactor.seconds() - since, error=error)

    def _pollFailed(self, failure):
        """Backs the loop's polls off.  The index database refusing (a
        database server that is down) is one log line for the whole outage;
        anything else is logged with its traceback each time."""
        if not failure.check(SQLAlchemyError):
            self._backOff()
            self.log.failure("export queue poll failed", failure)
        elif (error := self._conditionStarted("_pollsFailing", failure)) is not None:
            self.log.error("export queue poll failed, polled again at growing intervals (at most {ceiling} s) "
                           "until it answers: {error}", ceiling=self.pollBackoffCeiling, error=error)

    def _pollAnswered(self, _):
        """Ends the backoff of failed polls, and logs the outage's end
        (the backoff goes on while the queue's writes fail, or the lanes'
        look-ups, until one answers: ``_lookUpsAnswer``)."""
        if self._writesFailing is not None:
            return
        if self._pollsFailing is not None:
            self._conditionEnded("_pollsFailing", "export queue polls answer again, after failing for "
                                 "{seconds:.0f} s ({error})")
        if self._lookUpsFailing is None:  # else the lanes' next look-ups end it (_lookUpsAnswer)
            self._pollBackoff, self._nextPoll = None, 0

    def _tick(self):
        """The loop's poll, skipped while failed polls are backed off."""
        if self.reactor.seconds() >= self._nextPoll:
            self.kick()

    def kick(self):
        """Look for due work now (from the reactor thread)."""
        if not self.running:
            return
        if self._polling is not None:
            self._again = True
            return
        self._polling = defer.ensureDeferred(self._poll())
        self._polling.addCallbacks(self._pollAnswered, self._pollFailed)
        self._polling.addBoth(self._polled)

    def _polled(self, _):
        self._polling = None
        if self._again:
            self._again = False
            self.kick()

    def _writeFailed(self, failure):
        """A record or removal write failed: backs the loop's polls off, and
        logs the condition once when it starts (a write the index database
        refuses without traceback; anything else with its traceback each
        time)."""
        error = self._conditionStarted("_writesFailing", failure)
        if not failure.check(SQLAlchemyError):
            self.log.failure("an export queue write failed", failure)
        if error is not None:
            self.log.warn("the index database takes no export queue writes ({error}): the jobs run and the actions "
                          "delivered or failed meanwhile are not run nor sent again, their records are written "
                          "again at growing intervals (at most {ceiling} s), and no new export work starts until it "
                          "takes them",
                          error=error, ceiling=self.pollBackoffCeiling)

    async def _writeBack(self):
        """Writes the records and removals that failed again; whether
        nothing is left to write (and then logs the end of their failing)."""
        unmarked, self._unmarked = list(self._unmarked.values()), {}
        while unmarked and not self._unmarked:
            action, error, when, giveUp = unmarked.pop(0)
            if await self._recordFailure(action, error, when, giveUp) == FAILED and not giveUp:
                self._logFailed(action, error, giveUp, FAILED)
        self._unmarked.update((entry[0].id, entry) for entry in unmarked)  # those after one that failed
        if self._unmarked:
            return False
        unrecorded, self._unrecorded = self._unrecorded, {}
        undeleted, self._undeleted = self._undeleted, {}
        if unrecorded:
            await self._record(list(unrecorded.values()))
        if undeleted:
            await self._remove(list(undeleted.values()))
        if self._unrecorded or self._undeleted or self._unmarked:
            return False
        if self._writesFailing is not None:
            self._conditionEnded("_writesFailing", "the index database takes export queue writes again, after "
                                 "refusing them for {seconds:.0f} s ({error})")
        return True

    async def _poll(self):
        if not self._indexComplete():
            return
        if not await self._writeBack():  # no new work while they fail
            return
        now = self.reactor.seconds()
        limit = self.scripts.size * self.batch
        jobs = await self.io.deferToWorker(self.queue.dueJobs, self._wallClock(), limit, set(self._jobLanes))
        jobs = [job for job in jobs if job.id not in self._unrecorded]  # one whose record failed meanwhile
        if jobs and self.running:  # a full poll may have left due jobs: their lanes poll again as they end
            self._startLanes(jobs, attrgetter("converter"), self._jobLanes,
                             partial(self._runJobLane, again=len(jobs) == limit), "export jobs")
        held = self.heldOff.held()
        actions = await self.io.deferToWorker(self.queue.due, self._wallClock(), self.batch,
                                              self._busyLanes | held)
        if not self.running:  # stopping: the actions stay queued
            return
        over = self._undeleted.keys() | self._unmarked.keys()  # remembered as delivered or failed
        actions = [action for action in actions if action.id not in over]
        self._startLanes(actions, laneOf, self._busyLanes, self._runLane, "export lane")
        if self._lastCounts is None or now - self._lastCounts >= self.countsInterval:
            self._lastCounts = now
            self._publish(await self.io.deferToWorker(self.queue.counts))

    def _indexComplete(self):
        """Whether the index is complete (``IndexCompleteness``), the
        queue's hold logged when it starts and when it ends: while the index
        may miss objects, a forward would find nothing and be removed as
        done, an export filter match nothing and drop its job."""
        if not self.completeness.complete:
            if not self._held:
                self._held = True
                self.log.warn("export queue held until the index is rebuilt ({why}): its jobs and actions stay "
                              "queued, none is run, sent or dropped meanwhile", why=self.completeness.why())
            return False
        if self._held:
            self._held = False
            self.log.info("export queue: the index is rebuilt, the queue runs again")
        return True

    def _startLanes(self, items, keyOf, busy, run, what):
        """Group ``items`` by ``keyOf``, add the keys to ``busy`` and start
        ``run(key, items of that key)`` for each (a failure logged as
        ``what`` failed)."""
        lanes = {}
        for item in items:
            lanes.setdefault(keyOf(item), []).append(item)
        busy.update(lanes)
        for key, queued in lanes.items():
            defer.ensureDeferred(run(key, queued)).addErrback(lambda f: self.log.failure("{what} failed", f, what=what))

    def _wallClock(self):
        return self.queue.clock()

    def _publish(self, counts):
        self.counters["exportJobsPending"] = counts["jobs"].get("pending", 0)
        self.counters["exportJobsFailed"] = counts["jobs"].get(FAILED, 0)
        self.counters["forwardQueuePending"] = counts["actions"].get("pending", 0)
        self.counters["forwardQueueFailed"] = counts["actions"].get(FAILED, 0)
        self.counters["forwardQueueByDestination"] = counts["destinations"]

    def _count(self, name, amount=1):
        self.counters[name] = self.counters.get(name, 0) + amount

    # -- jobs -------------------------------------------------------------

    async def _runJobLane(self, converter, jobs, again):
        """Run ``jobs`` of the line ``converter`` (or the mirror copies) in
        order in a script worker, recorded as they end (``_Finished``).
        The lane is free once they are recorded (or left behind by a
        stop), and polls at once if ``again``."""
        finished = _Finished(self.reactor, self._record)
        try:
            await self.scripts.deferToWorker(self._jobs, jobs, finished)
            await finished.records.written
        finally:
            self._jobLanes.discard(converter)
            if again:
                self.kick()

    def _jobs(self, jobs, finished):
        """In a script worker: run the lines of ``jobs`` one after the
        other, none once the service stops, each outcome added to
        ``finished`` at once."""
        for job in jobs:
            if not self.running or not self.completeness.complete:  # the others stay queued
                break
            finished.add(job, self._job(job))

    async def _record(self, ended):
        """Record the ``(job, outcome)``s in ``ended`` in one write (a
        failed job logged); if the write fails, they are remembered as run
        (see the module docstring)."""
        if self._jobsLeftBehind:  # they run again at the next start
            return
        try:
            states = await self.queue.recordJobs([outcome for _, outcome in ended], self._wallClock())
        except Exception:
            self._unrecorded.update((job.id, (job, outcome)) for job, outcome in ended)
            self._writeFailed(Failure())
            return
        for (job, outcome), state in zip(ended, states):
            if outcome.error is not None:
                self._readFailed(
                    outcome.error, ("job", job.id), state, "{job} of {uid} failed ({error}){final}",
                    uid=job.sopInstanceUID, error=outcome.error,
                    job="mirror copy" if job.converter == MIRROR_COPY else f"{job.converter}: export",
                    final=f"; given up (see {EXPORT_RETRIES})" if state == FAILED else "; will retry")

    def _job(self, job):
        if job.converter == MIRROR_COPY:
            return self._mirrorCopy(job)
        rule = self.rules.get(job.converter)
        if rule is None:
            self.log.warn("{converter} is no longer configured: export job of {uid} dropped",
                          converter=job.converter, uid=job.sopInstanceUID)
            return JobOutcome(job.id)
        try:
            path = self.reader.path(job.deviceName, job.objectFile)
            if not self.queue.filterMatches(job.sopInstanceUID, rule.filter):
                return JobOutcome(job.id)
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except FileNotFoundError as e:
            if (kept := self._stillNamed(job, e)) is not None:
                return kept
            self.log.warn("{converter}: {path} is gone: export job of {uid} dropped",
                          converter=job.converter, path=job.objectFile, uid=job.sopInstanceUID)
            return JobOutcome(job.id)
        except OSError as e:
            return JobOutcome(job.id, error=Unreadable(str(e), [job.deviceName]))
        except Exception as e:
            return JobOutcome(job.id, error=e)
        self.reactor.callFromThread(self._readAgain, ("job", job.id))
        buffer = ActionBuffer(self.queue, spoolFolder(self.reader.roots[job.deviceName]))
        services = copy.copy(self.services)
        services.exportQueue = buffer
        context = ConverterContext("export", dataset, job.callingAE, job.calledAE, filename=os.path.abspath(path),
                                   services=services, converterName=job.converter, fetchedFrom=job.fetchedFrom)
        context.storageDevice = job.deviceName  # Lua's Data.Storage
        try:
            outcome = rule.script.run(context)
        except Exception as e:
            _discardBuffered(buffer)
            return JobOutcome(job.id, error=e)
        if outcome is Outcome.DEFER:
            _discardBuffered(buffer)
            return JobOutcome(job.id, deferred=True)
        return JobOutcome(job.id, tuple(buffer.actions))

    def _mirrorCopy(self, job):
        """Copy a stored object to its mirror device; a failure is retried
        without limit (a mirror disk that is away comes back)."""
        mirrors = self.reader.mirrors
        if job.deviceName not in mirrors.mirrored:
            self.log.warn("{device} is no longer mirrored: mirror copy of {uid} dropped",
                          device=job.deviceName, uid=job.sopInstanceUID)
            return JobOutcome(job.id)
        source = self.reader.magPath(job.deviceName, job.objectFile)
        try:
            copied = mirrors.copy(job.deviceName, job.objectFile, source)
        except OSError as e:  # its file unreadable, or its mirror not written: logged per device (_readFailed)
            where = job.deviceName if not os.access(source, os.R_OK) else mirrors.devices[job.deviceName].name
            return JobOutcome(job.id, error=Unreadable(str(e), [where]), retryForever=True)
        if copied:
            self.reactor.callFromThread(self._count, "mirrorCopies")
            self.reactor.callFromThread(self._readAgain, ("job", job.id))
        elif not os.path.exists(source):
            kept = self._stillNamed(job, FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), source),
                                    retryForever=True)
            if kept is not None:
                return kept
        return JobOutcome(job.id)

    def _stillNamed(self, job, error, **outcome):
        """In a script worker: the outcome of ``job``, whose file was found
        gone (``error``), when the index still names that file and no delete
        is removing it (``ObjectReader.current``: its data disk not mounted,
        say), or cannot be asked now: a failure, tried again after
        RetryDelay (``outcome``: more of its ``JobOutcome``).  None when its
        object was deleted, or stored again under another name (which
        queued jobs of its own), or the index keeps no rows: it is dropped."""
        if self.reader.current is None:
            return None
        try:
            now = self.reader.current(job.sopInstanceUID)
        except DATABASE_FAILURES as e:
            return JobOutcome(job.id, error=e, **outcome)
        if now is None or (now.deviceName, now.objectFile) != (job.deviceName, job.objectFile):
            return None
        return JobOutcome(job.id, error=Unreadable(str(error), [job.deviceName]), **outcome)

    # -- actions ----------------------------------------------------------

    async def _runLane(self, lane, actions):
        """Deliver ``actions`` in order.  Delivered actions are removed by
        one write at a time, while the next ones are sent: those delivered
        meanwhile go together in the next write (``_Batched``).  The lane
        is free again once every removal has committed, so no poll sees a
        delivered action."""
        removals = _Batched(self._remove)
        databaseDown = False  # the lane ended on the index database failing: the polls' back-off paces it
        try:
            try:
                found = await self._locate([action for action in actions if action.action == "forward"])
            except DATABASE_FAILURES as e:  # failing for now (isTransient): not the destination's failure
                self._databaseDown(lane, len(actions), e)
                databaseDown = True
                return
            for position, action in enumerate(actions):
                if not self.running or not self.completeness.complete:  # stopping, a regen: the rest stay queued
                    break
                try:
                    count = await self._perform(action, found.pop(action.id, None))
                except Interrupted:
                    self.log.info("{action} of {entity} {uid} to {destination} interrupted by the stop: "
                                  "it stays queued", action=action.action, entity=action.level.lower(),
                                  uid=action.target.uid(action.level), destination=action.destination)
                    break
                except Undelivered as e:  # sent again, they would be left out again
                    self._count("forwardsSent", e.sent)
                    await self._failed(action, e, giveUp=True)
                    continue
                except DATABASE_FAILURES as e:  # the index database's failure, not the destination's
                    if isTransient(e):  # down for now: this action and the rest wait for it, no attempt counted
                        self._databaseDown(lane, len(actions) - position, e)
                        databaseDown = True
                        break
                    await self._failed(action, e)  # it would fail alike at once: an attempt, its other actions go on
                    continue
                except Unreadable as e:  # read here: not the destination's failure, its other actions go on
                    await self._failed(action, e)
                    continue
                except Exception as e:
                    await self._failed(action, e)
                    self.heldOff.hold(lane)
                    break
                finally:
                    if not databaseDown:  # the database answered the action's look-ups (if any)
                        self._lookUpsAnswer()
                removals.add([action])
                self._readAgain(("action", action.id))
                if action.action == "forward":
                    self._count("forwardsSent", count)
                else:
                    self._count(f"{action.action}Actions")
        finally:
            await removals.written
            self._busyLanes.discard(lane)
            if not databaseDown:
                self.kick()

    def _databaseDown(self, lane, count, error):
        """The index database failed for now (``isTransient``) as the
        ``count`` actions left of ``lane`` were looked up or delivered: they
        stay queued, no attempt counted, the lane not held off (its
        destination is not at fault), and the loop's polls back off until a
        lane gets past its look-ups again (``_lookUpsAnswer``), so they go
        at most ``pollBackoffCeiling`` s after the database answers again.
        Logged once for the outage, without traceback."""
        if self._conditionStarted("_lookUpsFailing", Failure(error)) is not None:
            self.log.warn("the index database failed as {count} action(s) {lane} were looked up or sent ({error}): "
                          "they stay queued, no attempt counted, {holder} not held off; the export lanes try again "
                          "at growing intervals (at most {ceiling} s) until it answers",
                          count=count, lane="local" if lane is LOCAL else f"to {lane}",
                          holder="the local actions" if lane is LOCAL else lane, error=databaseMessage(error),
                          ceiling=self.pollBackoffCeiling)

    def _lookUpsAnswer(self):
        """A lane got past its look-ups: the end of their failing is logged,
        and the polls' back-off ends unless the polls or writes fail."""
        if self._lookUpsFailing is None:
            return
        self._conditionEnded("_lookUpsFailing", "the index database answers the export lanes again, after failing "
                             "for {seconds:.0f} s ({error})")
        if self._pollsFailing is None and self._writesFailing is None:
            self._pollBackoff, self._nextPoll = None, 0

    async def _remove(self, actions):
        """Remove delivered ``actions``, then their spool files; if the
        removal fails they are remembered as delivered (see the module
        docstring), their files kept."""
        try:
            await self.queue.markDone([action.id for action in actions])
        except Exception:
            self._undeleted.update((action.id, action) for action in actions)
            self._writeFailed(Failure())
            return
        await self._discardSpooled(actions)

    def _discardSpooled(self, actions):
        """Deferred of the deletion of the spool files of ``actions`` that
        are over (``pacscore.export.spool``), in an I/O worker."""
        paths = [action.objectPath for action in actions if isSpooled(action.objectPath)]
        return self.io.deferToWorker(discard, paths) if paths else defer.succeed(None)

    async def _locate(self, forwards):
        """``{action id: Forwarder.locate result}`` of a lane's forwards,
        looked up together; empty if that fails (each forward then looks
        its objects up itself, and fails alone), but for the index database
        failing for now (``isTransient``: down, restarting), raised.  A
        database error is logged in a line, anything else with its
        traceback."""
        try:
            return dict(zip((action.id for action in forwards), await self.forwarder.locate(forwards)))
        except DATABASE_FAILURES as e:
            if isTransient(e):
                raise
            self.log.warn("looking up the objects of {count} forwards failed: the index database: {error}",
                          count=len(forwards), error=databaseMessage(e))
            return {}
        except Exception:
            self.log.failure("looking up the objects of {count} forwards failed", count=len(forwards))
            return {}

    async def _failed(self, action, error, giveUp=False):
        """Record and log a failed attempt at ``action`` (given up at once
        with ``giveUp``)."""
        state = await self._recordFailure(action, error, self._wallClock(), giveUp)
        self._count("forwardsFailed")
        self._logFailed(action, error, giveUp, state)

    async def _recordFailure(self, action, error, when, giveUp):
        """Record a failed attempt at ``action`` made at ``when`` (wall
        clock); its new state, or None if the write fails: the attempt is
        then remembered (see the module docstring)."""
        counted = not isinstance(error, Unreadable)  # a read error here may pass (a disk mounted): no retry used up
        try:
            if not counted and error.retryOnly:  # its others were sent: only the objects not read are retried
                return await self.queue.retryOnly(action, error.retryOnly, error, when)
            return await self.queue.markFailed(action.id, error, when, giveUp, counted)
        except Exception:
            self._unmarked[action.id] = (action, error, when, giveUp)
            self._writeFailed(Failure())
            return None

    def _logFailed(self, action, error, giveUp, state):
        """Log a failed attempt at ``action`` that came to ``state`` (None:
        not recorded yet)."""
        local = laneOf(action) is LOCAL
        database = isinstance(error, DATABASE_FAILURES)
        notTheirs = ("an index database error" if database else "a read error here" if isinstance(error, Unreadable)
                     else None)
        self._readFailed(error, ("action", action.id), state,
                         "{action} of {entity} {uid} {direction} {destination} failed: {error}{final}",
                         action=action.action, entity=action.level.lower(), uid=action.target.uid(action.level),
                         direction="from" if action.action == "get" else "to",
                         destination="(local)" if local else action.destination,
                         error=f"the index database: {databaseMessage(error)}" if database else error,
                         final="; given up, not retried (a delete of the patient queued after it waits while it "
                               "is in the table; dgate --retryforwards puts it back)" if giveUp else
                         f"; given up (see {retryLimitKey(action.level, action.action)})" if state == FAILED else
                         f"; its other objects were sent, only the {len(error.retryOnly)} not read will be retried, "
                         f"each as an image forward ({notTheirs}, not {action.destination}'s)"
                         if isinstance(error, Unreadable) and error.retryOnly else
                         f"; will retry ({notTheirs}: the other local actions go on)" if notTheirs and local else
                         f"; will retry ({notTheirs}, not {action.destination}'s: its other actions go on)"
                         if notTheirs else
                         f"; will retry, holding {'local actions' if local else action.destination} off "
                         f"for {self.heldOff.seconds} s")

    def _readFailed(self, cause, key, state, line, /, **fields):
        """Log ``line`` (a format of ``fields``) of the failed attempt at the
        forward or job ``key`` that came to ``state``.  When an object of a
        MAG device could not be read here (``Unreadable``: a data disk not
        mounted, a folder made unreadable; for a mirror copy, its mirror
        device not written) and the attempt is to be retried,
        the device's first is a warning saying that the others are debug
        lines until a forward or job that waited on it succeeds
        (``_readAgain``; not any object of it read, as one lost file
        among readable ones would begin and end it every attempt), as a
        queue of 10,000 forwards would log 10,000 lines every RetryDelay.
        A device failing for an hour (or whose waiting forwards were
        replaced, ``retryOnly``) is warned of again, its hour begun anew."""
        devices = cause.devices if isinstance(cause, Unreadable) and state != FAILED else ()
        now = self.reactor.seconds()
        new = sorted(device for device in devices
                     if device not in self._unreadable or now - self._unreadable[device][0][0] >= UNREADABLE_WARNED)
        for device in new:
            self._unreadable.pop(device, None)
        for device in devices:
            self._unreadable.setdefault(device, ((now, str(cause)), set()))[1].add(key)
        if not devices:
            self.log.warn(line, **fields)
        elif new:
            self.log.warn(line + "; until a forward or job waiting on {devices} succeeds, its forwards, export jobs "
                          "and mirror copies failing so are debug lines (for an hour at most)",
                          devices=", ".join(new), **fields)
        else:
            self.log.debug(line, **fields)

    def _readAgain(self, key):
        """The forward or job ``key`` succeeded: the failing of the MAG
        devices it waited on (``_readFailed``) ended, which is logged with
        how many forwards and jobs waited."""
        for device, ((since, error), waited) in list(self._unreadable.items()):
            if key in waited:
                del self._unreadable[device]
                self.log.info("{device}: its objects read again, after failing for {seconds:.0f} s ({error}); "
                              "{count} forward(s) and job(s) waited on it", device=device, error=error,
                              seconds=self.reactor.seconds() - since, count=len(waited))

    def _perform(self, action, found):
        if action.action == "forward":
            return self.forwarder.forward(action, found=found)
        if action.action == "get":
            return self.forwarder.get(action)
        return getattr(self.local, action.action)(action)

    def retryFailed(self, destination=None):
        """Failed actions (and jobs) of ``destination`` (None: all) back in
        the queue, held-off lanes released; a Deferred of how many."""
        self.heldOff.release(destination)
        d = self.queue.retryFailed(destination)
        d.addCallback(lambda count: (self.kick(), count)[1])
        return d
