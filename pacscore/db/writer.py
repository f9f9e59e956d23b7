"""Group commit: dedicated writer threads, many writes per transaction.

A writer thread blocks for the first queued request, then takes whatever
else is already queued (up to ``maxBatch``) into the same transaction and
commits once.  It hands the committed batch to the flusher thread and goes
on with the next.  The flusher calls ``afterCommit`` (the flush that makes
commits durable, when the connection does not) once for every batch
committed since its last call, and only then are the requests' Deferreds
fired in the reactor thread.  Idle, a single request is committed and
flushed at once; under load the batches grow by themselves, one flush
serves hundreds of objects, and it overlaps the next commit.

With a ``timeout`` (dicom.ini's ``SQLTimeOut``), a ``timed`` request (a
C-STORE's, which a peer waits on) not answered within it (a database
server that hangs or cannot be reached: its thread waits on it) fails with
``IndexTimeout``, logged; what its thread does later is not answered
again.  Other requests (maintenance, deletes) may run as long as they
need: those that hold the writer long would starve the timed ones queued
behind them, so deletes come in parts (``LocalActions.removeInstances``);
a timed request failed while still queued behind such a request is
logged as that (the long request may itself wait on the database: both
are named), not as the database not answering.  ``stop`` waits as
long at most.
"""

import collections
import itertools
import operator
import queue
import sys
import threading
import time

from sqlalchemy.exc import DBAPIError
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from pacscore.db.errors import IndexStopped, IndexTimeout
from pacscore.db.peerqueries import Abandoned

_STOP = object()
DEFAULT_TIMEOUT = 30  # seconds, SQLTimeOut's default


class _Request:
    """A queued write: ``fn(connection, [item, ...])``, whose outcome goes to
    ``onResult(ok, value)`` once, in the reactor thread, unless it was
    failed at ``deadline`` (reactor seconds) already."""

    __slots__ = ("onResult", "fn", "item", "deadline", "answered", "taken")

    def __init__(self, onResult, fn, item, deadline):
        self.onResult = onResult
        self.fn = fn
        self.item = item
        self.deadline = deadline
        self.answered = False
        self.taken = False  # by a writer thread, into a batch

    def answer(self, ok, value):
        if not self.answered:
            self.answered = True
            self.onResult(ok, value)


def callEach(connection, calls):
    """A batch function running plain calls ``(fn, args, kw)`` one by one;
    a call that raises ``Abandoned`` is named by its place among them
    (the error's ``call``), for ``BatchRunner`` to drop it alone."""
    results = []
    for fn, args, kw in calls:
        try:
            results.append(fn(connection, *args, **kw))
        except Abandoned as error:
            error.call = len(results)
            raise
    return results


class BatchRunner:
    """Runs requests in one transaction; if that fails, each request alone
    (unless the database cannot be reached).

    A request is ``(fn, item)``.  Consecutive requests with the same ``fn``
    run as one call ``fn(connection, items)``, which returns one result per
    item (so a batch of images becomes one executemany).  ``onRollback()``
    runs after every rolled-back transaction, in the same thread (to drop
    caches of what the transaction wrote).  Batch functions must have no
    side effects outside the database: a request may run more than once, at
    most 2 + log2 of its batch's size times (12 in a batch of 1000): in the
    batch, once more on a new connection, then in each half holding it
    (``run``).  A request that raises ``Abandoned`` (its requester was
    answered already that it failed: an HL7 order past SQLTimeOut) is
    rolled back and dropped, the rest of its batch run again without it.

    Each thread keeps one connection open (checking a pooled connection out
    and back in for every batch costs more than a small batch's SQL);
    ``onConnect(connection)`` runs when it opens, ``closeConnection()``
    ends it.
    """

    log = Logger()
    holdOff = 5  # seconds after a failed connect during which requests fail at once
    maxLostAlone = 3  # writes losing their connection alone, none committing between, before the rest fail at once

    def __init__(self, engine, onRollback, onConnect=None):
        self.engine = engine
        self.onRollback = onRollback
        self.onConnect = onConnect
        self._local = threading.local()
        self._unreachable = None     # the Failure of the last failed connect,
        self._unreachableUntil = 0   # and the time.monotonic() until which it holds

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self._local.connection = self.engine.connect()
            if self.onConnect is not None:
                self.onConnect(connection)
        return connection

    def closeConnection(self):
        """Close this thread's connection, if any."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def run(self, requests):
        """``[(True, result) | (False, Failure)]``, one per request, in
        order; the successful ones are committed.  A connection the
        database server dropped (its idle timeout, a restart) is replaced and
        the requests run again on the new one, once.  When the connection
        cannot be opened they all fail at once (not one by one, each waiting
        on the server again), and for ``holdOff`` seconds after a failed
        connect every request fails at once with its error, logged once: the
        writer thread goes on with the next batch.  A connection lost again
        (MySQL drops it on a statement larger than its max_allowed_packet)
        has the batch run in halves, each on a new connection, a half lost
        in halves again, so that a write that fits commits with its half;
        after ``maxLostAlone`` writes lost their connection alone with no
        part of the batch committed in between, the rest of the batch fails
        at once (a server that drops every connection is not waited on for
        each write; oversized writes spread through a batch fail alone).  Any other error has each request run
        alone, so that only those the database refuses fail."""
        return self._run(requests, False, _Losses())

    def _run(self, requests, reconnected, losses):
        """``run`` on a connection lost once already when ``reconnected``;
        ``losses``: those of ``run``'s batch."""
        if len(losses.alone) >= self.maxLostAlone:
            return [(False, losses.alone[-1])] * len(requests)
        if time.monotonic() < self._unreachableUntil:
            return [(False, self._unreachable)] * len(requests)
        try:
            connection = self._connection()
        except Exception as error:
            self._unreachable, self._unreachableUntil = Failure(), time.monotonic() + self.holdOff
            self.log.error("cannot connect to the index database ({error}): {count} writes failed, "
                           "and those of the next {holdOff} s fail at once", error=error, count=len(requests),
                           holdOff=self.holdOff)
            return [(False, self._unreachable)] * len(requests)
        results, items = [], []
        try:
            with connection.begin():
                for fn, group in itertools.groupby(requests, key=operator.itemgetter(0)):
                    items = [item for _, item in group]
                    results += [(True, result) for result in fn(connection, items)]
        except Exception as error:
            self.onRollback()
            if isinstance(error, Abandoned) and (len(items) == 1 or hasattr(error, "call")):
                return self._drop(requests, len(results) + getattr(error, "call", 0), Failure(), reconnected, losses)
            lost = isinstance(error, DBAPIError) and error.connection_invalidated
            if lost and not reconnected:
                self.log.info("the database server dropped the index writer's connection ({error}); "
                              "the writes go again on a new one", error=error.orig)
                self.closeConnection()
                return self._run(requests, True, losses)
            if len(requests) == 1:
                failure = Failure()
                if lost:
                    losses.alone.append(failure)
                    if len(losses.alone) == self.maxLostAlone:
                        self.log.error("the database server dropped the index writer's connection on {count} "
                                       "writes alone ({error}): the other writes of their batch fail at once",
                                       count=self.maxLostAlone, error=error.orig)
                return [(False, failure)]
            if not lost:
                self.log.warn("Batch of {count} writes failed ({error}); retrying each alone",
                              count=len(requests), error=error)
                return [result for request in requests for result in self._run([request], reconnected, losses)]
            if not losses.halved:
                losses.halved = True
                self.log.warn("the database server dropped the index writer's connection again ({error}), on "
                              "one of a batch of {count} writes (a statement larger than MySQL's "
                              "max_allowed_packet?); retrying it in halves", count=len(requests), error=error.orig)
            half = (len(requests) + 1) // 2
            return [result for part in (requests[:half], requests[half:]) for result in self._run(part, True, losses)]
        losses.alone.clear()  # a part committed: the server does not drop every connection
        return results

    def _drop(self, requests, position, failure, reconnected, losses):
        """The results of ``requests`` once the one at ``position``, which
        raised ``Abandoned`` (``failure``), is dropped: it fails, the others
        run again without it (``_run``), in one transaction; logged."""
        others = requests[:position] + requests[position + 1:]
        self.log.info("a write was abandoned ({error}): rolled back, not applied{others}",
                      error=failure.value,
                      others=f"; the other {len(others)} writes of its batch go again without it" if others else "")
        results = self._run(others, reconnected, losses) if others else []
        return results[:position] + [(False, failure)] + results[position:]


class _Losses:
    """The connections lost by the writes of one ``BatchRunner.run``."""

    def __init__(self):
        self.alone = []      # the Failures of the writes that lost one alone since a part committed
        self.halved = False  # the batch is being run in halves (warned once)


class GroupCommitWriter:
    """``threads`` writer threads sharing one queue (SQLite: exactly one),
    and one flusher thread.

    ``submit`` and ``stop`` must be called from the reactor thread;
    ``enqueue`` from any thread.  ``afterCommit(requests)`` runs in the
    flusher thread with the committed ``(fn, item)`` requests of one or
    more batches; if it raises, they all fail with its error.  A ``timed``
    request not answered within ``timeout`` seconds (None: no limit) fails
    with ``IndexTimeout``; the others may take as long as they need.
    """

    log = Logger()

    def __init__(self, engine, reactor, threads=1, onRollback=lambda: None,
                 maxBatch=1000, name="pacs-db-writer", onConnect=None,
                 afterCommit=lambda requests: None, timeout=None):
        self.reactor = reactor
        self.runner = BatchRunner(engine, onRollback, onConnect)
        self.afterCommit = afterCommit
        self.threads = threads
        self.maxBatch = maxBatch
        self.name = name
        self.timeout = timeout
        self._queue = queue.SimpleQueue()
        self._committed = queue.SimpleQueue()  # (requests, results) for the flusher
        self._waiting = collections.deque()  # requests with a deadline, in order of it
        self._untimed = set()  # the others not answered yet: failed only when stop gives up
        self._busyUntimed = set()  # the writer threads running a batch with one of them
        self._watchdog = task.LoopingCall(self._expire)
        self._watchdog.clock = reactor
        self._running = 0        # writer threads alive
        self._flushing = False   # the flusher thread is alive
        self._stopping = False
        self._stopWaiters = []
        self._giveUp = None      # the DelayedCall of stop's time limit

    def start(self):
        """Start the threads (no-op while they run)."""
        if self._running or self._flushing:
            return
        self._stopping = False
        self._flushing = True
        threading.Thread(target=self._flush, name=f"{self.name}-flush", daemon=True).start()
        for number in range(self.threads):
            self._running += 1
            threading.Thread(target=self._work, name=f"{self.name}-{number}",
                             daemon=True).start()
        if self.timeout is not None:
            self._watchdog.start(min(1.0, self.timeout / 4), now=False)

    def submit(self, fn, item, timed=False):
        """Deferred firing with ``item``'s result of ``fn(connection, items)``
        once committed (see ``BatchRunner``)."""
        d = defer.Deferred()
        self.enqueue(fn, item, lambda ok, value: d.callback(value) if ok else d.errback(value), timed)
        return d

    def enqueue(self, fn, item, onResult, timed=False):
        """Thread-safe ``submit``: ``onResult(ok, value)`` is called in the
        reactor thread once committed (``value`` a Failure when not ok)."""
        if self._stopping:
            failure = Failure(IndexStopped(f"{self.name} is stopping"))
            self.reactor.callFromThread(onResult, False, failure)
            return
        deadline = self.reactor.seconds() + self.timeout if timed and self.timeout is not None else None
        request = _Request(onResult, fn, item, deadline)
        if deadline is not None:
            self._waiting.append(request)
        else:
            self._untimed.add(request)
        self._queue.put(request)

    def stop(self):
        """Deferred firing once everything submitted before is committed and
        the threads have ended (True), or, with a ``timeout``, once that has
        passed without (False: the database does not answer; what is still
        waiting fails)."""
        d = defer.Deferred()
        if not self._running and not self._flushing:
            d.callback(True)
            return d
        if not self._stopping:
            self._stopping = True
            for _ in range(self.threads):
                self._queue.put(_STOP)
        if self.timeout is not None and self._giveUp is None:
            self._giveUp = self.reactor.callLater(self.timeout, self._stopWithout)
        self._stopWaiters.append(d)
        return d

    def _expire(self, now=None):
        """Fail the requests whose deadline has passed (all with ``now=inf``)."""
        now = self.reactor.seconds() if now is None else now
        expired = []
        while self._waiting and (self._waiting[0].answered or self._waiting[0].deadline <= now):
            request = self._waiting.popleft()
            if not request.answered:
                expired.append(request)
        queued = [request for request in expired if not request.taken] if self._busyUntimed else []
        unanswered = [request for request in expired if request.taken or not self._busyUntimed]
        if queued:
            self.log.error("{count} writes failed: the index writer did not get to them within {timeout} s "
                           "(SQLTimeOut), busy with a longer write of this server (a delete, maintenance) or waiting on the "
                           "database",
                           timeout=self.timeout, count=len(queued))
        if unanswered:
            self.log.error("the index database did not answer within {timeout} s (SQLTimeOut): "
                           "{count} writes failed", timeout=self.timeout, count=len(unanswered))
        for requests, error in ((queued, IndexTimeout(self.timeout, queued=True)),
                                (unanswered, IndexTimeout(self.timeout))):
            failure = Failure(error)
            for request in requests:
                request.answer(False, failure)

    def _stopWithout(self):
        self.log.error("the index writer did not finish within {timeout} s (SQLTimeOut): the database does "
                       "not answer; stopping without it", timeout=self.timeout)
        self._expire(float("inf"))
        failure = Failure(IndexTimeout(self.timeout))
        for request in self._untimed:
            request.answer(False, failure)
        self._untimed.clear()
        self._stopped(False)

    def _work(self):
        thread = threading.get_ident()
        for batch in _batches(self._queue, self.maxBatch):
            for request in batch:
                request.taken = True
            if any(request.deadline is None for request in batch):
                self._busyUntimed.add(thread)
            self._committed.put((batch, self.runner.run([(r.fn, r.item) for r in batch])))
            self._busyUntimed.discard(thread)
        self.runner.closeConnection()
        self.reactor.callFromThread(self._threadEnded)

    def _flush(self):
        for groups in _batches(self._committed, sys.maxsize):
            self._afterCommit(groups)
        self.reactor.callFromThread(self._stopped, True)

    def _afterCommit(self, groups):
        """One ``afterCommit`` for ``groups``, then fire their results."""
        batch, results = (list(itertools.chain.from_iterable(parts)) for parts in zip(*groups))
        committed = [(r.fn, r.item) for r, (ok, _) in zip(batch, results) if ok]
        if committed:
            try:
                self.afterCommit(committed)
            except Exception:
                failure = Failure()
                results = [(False, failure) if ok else (ok, value) for ok, value in results]
        self.reactor.callFromThread(self._fire, batch, results)

    def _fire(self, batch, results):
        for request, (ok, value) in zip(batch, results):
            self._untimed.discard(request)
            request.answer(ok, value)

    def _threadEnded(self):
        self._running -= 1
        if not self._running:
            self._committed.put(_STOP)  # after every batch the writers committed

    def _stopped(self, finished):
        """The flusher ended (``finished``), or ``stop`` gave up waiting."""
        if finished:
            self._flushing = False
        if not self._stopWaiters:
            return  # stop gave up before
        if self._watchdog.running:
            self._watchdog.stop()
        if self._giveUp is not None and self._giveUp.active():
            self._giveUp.cancel()
        self._giveUp = None
        waiters, self._stopWaiters = self._stopWaiters, []
        for d in waiters:
            d.callback(finished)


def _batches(waiting, limit):
    """Yield lists of what the queue ``waiting`` holds: each blocks for one
    item and takes whatever else is there, up to ``limit`` items; the
    first ``_STOP`` ends them."""
    while True:
        items = [waiting.get()]
        while items[-1] is not _STOP and len(items) < limit:
            try:
                items.append(waiting.get_nowait())
            except queue.Empty:
                break
        stop = items[-1] is _STOP
        if stop:
            items.pop()
        if items:
            yield items
        if stop:
            return
