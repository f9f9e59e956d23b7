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
"""

import itertools
import operator
import queue
import sys
import threading

from sqlalchemy.exc import DBAPIError
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

_STOP = object()


def callEach(connection, calls):
    """A batch function running plain calls ``(fn, args, kw)`` one by one."""
    return [fn(connection, *args, **kw) for fn, args, kw in calls]


class BatchRunner:
    """Runs requests in one transaction; if that fails, each request alone.

    A request is ``(fn, item)``.  Consecutive requests with the same ``fn``
    run as one call ``fn(connection, items)``, which returns one result per
    item (so a batch of images becomes one executemany).  ``onRollback()``
    runs after every rolled-back transaction, in the same thread (to drop
    caches of what the transaction wrote).  Batch functions must have no
    side effects outside the database: a request may run twice.

    Each thread keeps one connection open (checking a pooled connection out
    and back in for every batch costs more than a small batch's SQL);
    ``onConnect(connection)`` runs when it opens, ``closeConnection()``
    ends it.
    """

    log = Logger()

    def __init__(self, engine, onRollback, onConnect=None):
        self.engine = engine
        self.onRollback = onRollback
        self.onConnect = onConnect
        self._local = threading.local()

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

    def run(self, requests, reconnected=False):
        """``[(True, result) | (False, Failure)]``, one per request, in
        order; the successful ones are committed.  A connection the
        database server dropped (its idle timeout, a restart) is replaced and
        the requests run again on the new one, once.  A connection that
        cannot be opened (a database server that is down) fails them, like
        any other error: the writer thread goes on with the next batch."""
        try:
            connection = self._connection()
            with connection.begin():
                results = []
                for fn, group in itertools.groupby(requests, key=operator.itemgetter(0)):
                    results += [(True, result)
                                for result in fn(connection, [item for _, item in group])]
        except Exception as error:
            self.onRollback()
            if not reconnected and isinstance(error, DBAPIError) and error.connection_invalidated:
                self.log.info("the database server dropped the index writer's connection ({error}); "
                              "the writes go again on a new one", error=error.orig)
                self.closeConnection()
                return self.run(requests, reconnected=True)
            if len(requests) == 1:
                return [(False, Failure())]
            self.log.warn("Batch of {count} writes failed ({error}); retrying each alone",
                          count=len(requests), error=error)
            return [result for request in requests for result in self.run([request])]
        return results


class GroupCommitWriter:
    """``threads`` writer threads sharing one queue (SQLite: exactly one),
    and one flusher thread.

    ``submit`` and ``stop`` must be called from the reactor thread;
    ``enqueue`` from any thread.  ``afterCommit(requests)`` runs in the
    flusher thread with the committed ``(fn, item)`` requests of one or
    more batches; if it raises, they all fail with its error.
    """

    def __init__(self, engine, reactor, threads=1, onRollback=lambda: None,
                 maxBatch=1000, name="pacs-db-writer", onConnect=None,
                 afterCommit=lambda requests: None):
        self.reactor = reactor
        self.runner = BatchRunner(engine, onRollback, onConnect)
        self.afterCommit = afterCommit
        self.threads = threads
        self.maxBatch = maxBatch
        self.name = name
        self._queue = queue.SimpleQueue()
        self._committed = queue.SimpleQueue()  # (callbacks, requests, results) for the flusher
        self._running = 0        # writer threads alive
        self._flushing = False   # the flusher thread is alive
        self._stopping = False
        self._stopWaiters = []

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

    def submit(self, fn, item):
        """Deferred firing with ``item``'s result of ``fn(connection, items)``
        once committed (see ``BatchRunner``)."""
        d = defer.Deferred()
        self.enqueue(fn, item, lambda ok, value: d.callback(value) if ok else d.errback(value))
        return d

    def enqueue(self, fn, item, onResult):
        """Thread-safe ``submit``: ``onResult(ok, value)`` is called in the
        reactor thread once committed (``value`` a Failure when not ok)."""
        if self._stopping:
            failure = Failure(RuntimeError(f"{self.name} is stopping"))
            self.reactor.callFromThread(onResult, False, failure)
            return
        self._queue.put((onResult, fn, item))

    def stop(self):
        """Deferred firing once everything submitted before is committed and
        the threads have ended."""
        d = defer.Deferred()
        if not self._running and not self._flushing:
            d.callback(None)
            return d
        if not self._stopping:
            self._stopping = True
            for _ in range(self.threads):
                self._queue.put(_STOP)
        self._stopWaiters.append(d)
        return d

    def _work(self):
        for batch in _batches(self._queue, self.maxBatch):
            requests = [(fn, item) for _, fn, item in batch]
            self._committed.put(([onResult for onResult, _, _ in batch], requests,
                                 self.runner.run(requests)))
        self.runner.closeConnection()
        self.reactor.callFromThread(self._threadEnded)

    def _flush(self):
        for groups in _batches(self._committed, sys.maxsize):
            self._afterCommit(groups)
        self.reactor.callFromThread(self._flusherEnded)

    def _afterCommit(self, groups):
        """One ``afterCommit`` for ``groups``, then fire their results."""
        callbacks, requests, results = (list(itertools.chain.from_iterable(parts)) for parts in zip(*groups))
        committed = [request for request, (ok, _) in zip(requests, results) if ok]
        if committed:
            try:
                self.afterCommit(committed)
            except Exception:
                failure = Failure()
                results = [(False, failure) if ok else (ok, value) for ok, value in results]
        self.reactor.callFromThread(self._fire, callbacks, results)

    @staticmethod
    def _fire(callbacks, results):
        for onResult, (ok, value) in zip(callbacks, results):
            onResult(ok, value)

    def _threadEnded(self):
        self._running -= 1
        if not self._running:
            self._committed.put(_STOP)  # after every batch the writers committed

    def _flusherEnded(self):
        self._flushing = False
        waiters, self._stopWaiters = self._stopWaiters, []
        for d in waiters:
            d.callback(None)


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
