"""The export queue runner: a child service of the application that runs
due export converter jobs and delivers due actions.

It polls the queue (``pollInterval``, 0.5 s) and at once after ``kick()``
(called after each stored object).  Nothing here blocks the reactor or
ingest: the converter lines run in a pool of their own (``scriptThreads``),
queue bookkeeping, file reads and conversions in another, network I/O on
the reactor.

Jobs: the line's Script runs on the stored object (read with pydicom,
pixel data left out) in a ``ConverterContext`` of kind "export";
``ExportFilterN`` is checked first against the index.  ``defer`` runs the
job again after RetryDelay; otherwise the job is deleted, and the actions
its line queued (``forward``, ``get`` ...) are inserted in the same
transaction: a crash never loses them nor queues them twice.  Other
effects of a line (``copy``, ``system``, files written) happen when it
runs, so after a crash before that transaction commits they happen again:
at least once.

Actions: one lane per destination AE (local actions share the lane
``""``), each running one action at a time in order, all lanes in
parallel.  A failure is logged with the destination and reason, counted
(``forwardsFailed``), retried after RetryDelay up to MaximumExportRetries,
and holds its lane off for ``FailHoldOff`` seconds (default 60): other
destinations go on.  An action is removed once delivered; a crash between
the delivery and that removal sends it again after the restart (the
window is one database write).
"""

import copy
import os

import pydicom
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from pacscore.converters.context import ConverterContext, Outcome
from pacscore.export.actions import LocalActions
from pacscore.export.forwarder import Forwarder
from pacscore.export.queue import FAILED, ActionBuffer
from pacscore.workers import WorkerPool

LOCAL = ""


class ExportService(service.Service):
    """See the module docstring.  ``services`` is the archive's
    ``ConverterServices`` (its ``exportQueue`` the queue itself); ``rules``
    the export ``Rule``s; ``reader`` the ``ObjectReader``."""

    log = Logger()
    pollInterval = 0.5
    countsInterval = 5
    batch = 64

    def __init__(self, queue, forwarder, local, services, rules, reader, reactor, scripts, io, failHoldOff=60):
        self.queue = queue
        self.forwarder = forwarder
        self.local = local
        self.services = services
        self.rules = {rule.key: rule for rule in rules}
        self.reader = reader
        self.reactor = reactor
        self.scripts = scripts
        self.io = io
        self.failHoldOff = failHoldOff
        self.counters = services.counters
        self._runningJobs = set()
        self._busyLanes = set()
        self._heldUntil = {}
        self._polling = None
        self._again = False
        self._lastCounts = None
        self._loop = None

    @classmethod
    def fromConfiguration(cls, configuration, queue, services, rules, query, reader, reactor, scriptThreads=2,
                          ioThreads=4):
        """The service with its two pools (``pacs-export`` for the lines,
        ``pacs-forward`` for the rest), its ``Forwarder`` (ForwardAssociation*
        keys) and FailHoldOff from dicom.ini."""
        scripts = WorkerPool(reactor, scriptThreads, "pacs-export")
        io = WorkerPool(reactor, ioThreads, "pacs-forward")
        forwarder = Forwarder.fromConfiguration(configuration, reactor, services.aeTitle, queue.index, query,
                                                reader, io)
        local = LocalActions(queue.index, query, reader, io)
        return cls(queue, forwarder, local, services, rules, reader, reactor, scripts, io,
                   failHoldOff=configuration.ini.getint("FailHoldOff", 60))

    # -- service ----------------------------------------------------------

    def startService(self):
        service.Service.startService(self)
        self.scripts.start()
        self.io.start()
        self._loop = task.LoopingCall(self.kick)
        self._loop.clock = self.reactor
        self._loop.start(self.pollInterval, now=True)

    async def _stop(self):
        self._loop.stop()
        while self._polling is not None or self._busyLanes or self._runningJobs:
            await task.deferLater(self.reactor, 0.05, lambda: None)
        await self.forwarder.closeAll()
        await self.scripts.stop()
        await self.io.stop()

    def stopService(self):
        """Stops polling, waits for the jobs and actions under way (they
        finish or fail and are recorded), closes the associations."""
        service.Service.stopService(self)
        return defer.ensureDeferred(self._stop())

    # -- polling ----------------------------------------------------------

    def kick(self):
        """Look for due work now (from the reactor thread)."""
        if not self.running:
            return
        if self._polling is not None:
            self._again = True
            return
        self._polling = defer.ensureDeferred(self._poll())
        self._polling.addErrback(lambda f: self.log.failure("export queue poll failed", f))
        self._polling.addBoth(self._polled)

    def _polled(self, _):
        self._polling = None
        if self._again:
            self._again = False
            self.kick()

    async def _poll(self):
        now = self.reactor.seconds()
        free = self.scripts.size * 2 - len(self._runningJobs)
        if free > 0:
            jobs = await self.io.deferToWorker(self.queue.dueJobs, self._wallClock(), free, set(self._runningJobs))
            for job in jobs:
                self._runningJobs.add(job.id)
                self._runJob(job)
        held = {lane for lane, until in self._heldUntil.items() if until > now}
        actions = await self.io.deferToWorker(self.queue.due, self._wallClock(), self.batch,
                                              self._busyLanes | held)
        lanes = {}
        for action in actions:
            lanes.setdefault(_lane(action), []).append(action)
        for lane, queued in lanes.items():
            self._busyLanes.add(lane)
            defer.ensureDeferred(self._runLane(lane, queued)).addErrback(
                lambda f: self.log.failure("export lane failed", f))
        if self._lastCounts is None or now - self._lastCounts >= self.countsInterval:
            self._lastCounts = now
            self._publish(await self.io.deferToWorker(self.queue.counts))

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

    def _runJob(self, job):
        d = self.scripts.deferToWorker(self._job, job)
        d.addErrback(lambda f: self.log.failure("export job {id} failed", f, id=job.id))
        d.addBoth(lambda _: self._jobEnded(job))

    def _jobEnded(self, job):
        self._runningJobs.discard(job.id)
        self.kick()

    def _job(self, job):
        """In a script worker: run one job's line and record the result."""
        rule = self.rules.get(job.converter)
        if rule is None:
            self.log.warn("{converter} is no longer configured: export job of {uid} dropped",
                          converter=job.converter, uid=job.sopInstanceUID)
            return self.queue.finishJob(job.id)
        try:
            path = self.reader.path(job.deviceName, job.objectFile)
            if not self.queue.filterMatches(job.sopInstanceUID, rule.filter):
                return self.queue.finishJob(job.id)
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except FileNotFoundError:
            self.log.warn("{converter}: {path} is gone: export job of {uid} dropped",
                          converter=job.converter, path=job.objectFile, uid=job.sopInstanceUID)
            return self.queue.finishJob(job.id)
        except Exception as e:
            return self._jobFailed(job, e)
        buffer = ActionBuffer(self.queue)
        services = copy.copy(self.services)
        services.exportQueue = buffer
        context = ConverterContext("export", dataset, job.callingAE, job.calledAE, filename=os.path.abspath(path),
                                   services=services, converterName=job.converter)
        try:
            outcome = rule.script.run(context)
        except Exception as e:
            return self._jobFailed(job, e)
        if outcome is Outcome.DEFER:
            return self.queue.deferJob(job.id, self._wallClock())
        self.queue.finishJob(job.id, buffer.actions)
        if buffer.actions:
            self.reactor.callFromThread(self.kick)

    def _jobFailed(self, job, error):
        state = self.queue.failJob(job.id, error, self._wallClock())
        self.log.warn("{converter}: export of {uid} failed ({error}){final}", converter=job.converter,
                      uid=job.sopInstanceUID, error=error,
                      final="; given up (see MaximumExportRetries)" if state == FAILED else "; will retry")

    # -- actions ----------------------------------------------------------

    async def _runLane(self, lane, actions):
        try:
            for action in actions:
                if not await self._deliver(action):
                    self._heldUntil[lane] = self.reactor.seconds() + self.failHoldOff
                    break
        finally:
            self._busyLanes.discard(lane)

    async def _deliver(self, action):
        """Carry one action out and record the result; False if it failed."""
        try:
            count = await self._perform(action)
        except Exception as e:
            state = await self.io.deferToWorker(self.queue.markFailed, action.id, e, self._wallClock())
            self._count("forwardsFailed")
            self.log.warn("{action} of {entity} {uid} {direction} {destination} failed: {error}{final}",
                          action=action.action, entity=action.level.lower(), uid=action.target.uid(action.level),
                          direction="from" if action.action == "get" else "to",
                          destination=action.destination or "(local)", error=e,
                          final="; given up (see MaximumExportRetries)" if state == FAILED else
                          f"; will retry, holding {action.destination or 'local actions'} off "
                          f"for {self.failHoldOff} s")
            return False
        await self.io.deferToWorker(self.queue.markDone, action.id)
        if action.action == "forward":
            self._count("forwardsSent", count)
        else:
            self._count(f"{action.action}Actions")
        return True

    def _perform(self, action):
        if action.action == "forward":
            return self.forwarder.forward(action)
        if action.action == "get":
            return self.forwarder.get(action)
        return getattr(self.local, action.action)(action)

    def retryFailed(self, destination=None):
        """Failed actions (and jobs) of ``destination`` (None: all) back in
        the queue, held-off lanes released; a Deferred of how many."""
        if destination is None:
            self._heldUntil.clear()
        else:
            self._heldUntil.pop(destination, None)
        d = self.io.deferToWorker(self.queue.retryFailed, destination)
        d.addCallback(lambda count: (self.kick(), count)[1])
        return d


def _lane(action):
    return action.destination if action.action in ("forward", "get") else LOCAL

