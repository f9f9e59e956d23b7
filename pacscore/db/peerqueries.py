"""A query a DICOM peer waits on (``Index.queryForPeer``): failed when a
database server stops answering it, stopped once nobody waits for it.

The deadline (SQLTimeOut) starts when the query is submitted, so the wait
for a reader thread counts (the threads may all wait on a database server
that hangs), and starts again each time the query makes progress
(``checkAbandoned``, called for each row it goes through): only a query
that gets nothing from the database for that long fails, one still
waiting for a thread then never runs.  Cancelling
the Deferred (a C-CANCEL) or the deadline abandons the query: one not yet
started never runs, an SQLite statement under way is interrupted
(``Connection.interrupt``, from the reactor thread: a progress handler
would take the GIL in every reader thread thousands of times a second and
starve the reactor) and ``checkAbandoned`` ends the work between rows, so
the reader thread is free again at once.
"""

import threading

from twisted.internet import defer
from twisted.python.failure import Failure

from pacscore.db.errors import IndexTimeout

_running = threading.local()  # .query: the PeerQuery the reader thread runs


class Abandoned(Exception):
    """Nobody waits for the answer of the query any more."""


def checkAbandoned():
    """In a reader thread: the query it runs made progress; raise
    ``Abandoned`` once nobody waits for its answer (nothing outside a
    ``PeerQuery``)."""
    query = getattr(_running, "query", None)
    if query is not None:
        query.progressed = True
        if query.abandoned.is_set():
            raise Abandoned()


class PeerQuery:
    """One query: ``deferred`` fires with its answer; ``submit`` hands it
    to a reader thread.  ``timeout`` None: no deadline."""

    def __init__(self, reactor, timeout):
        self.reactor = reactor
        self.timeout = timeout
        self.abandoned = threading.Event()
        self.progressed = False
        self.deferred = defer.Deferred(self._abandon)
        self._deadline = None
        self._sqlite = None  # the sqlite3 connection while the query runs on one
        self._sqliteLock = threading.Lock()

    def submit(self, pool, withConnection, fn, args, kw):
        """``run`` in a thread of ``pool`` (a ``ThreadPool``), its deadline
        counted from now; ``deferred``."""
        if self.timeout is not None:
            self._arm()
        pool.callInThreadWithCallback(self.answered, self.run, withConnection, fn, args, kw)
        return self.deferred

    def run(self, withConnection, fn, args, kw):
        """In a reader thread: ``withConnection(fn, args, kw)``, unless abandoned."""
        if self.abandoned.is_set():
            raise Abandoned()
        _running.query = self
        try:
            return withConnection(self._interruptible, (fn, args, kw), {})
        finally:
            _running.query = None

    def _interruptible(self, connection, fn, args, kw):
        """``fn(connection, ...)``; on SQLite its statement is interrupted
        once the query is abandoned (``_stop``)."""
        if connection.dialect.name != "sqlite":
            return fn(connection, *args, **kw)
        with self._sqliteLock:
            if self.abandoned.is_set():
                raise Abandoned()
            self._sqlite = connection.connection.driver_connection
        try:
            return fn(connection, *args, **kw)
        finally:
            with self._sqliteLock:  # back to the pool: no later interrupt may reach another query
                self._sqlite = None

    def answered(self, success, result):
        """In the reader thread: ``run`` ended (``callInThreadWithCallback``)."""
        self.reactor.callFromThread(self._answer, success, result)

    def _answer(self, success, result):
        self._disarm()
        if self.deferred.called:  # abandoned: nobody waits for the result, nor for its error
            return
        if success:
            self.deferred.callback(result)
        else:
            self.deferred.errback(result)

    def _arm(self):
        self._deadline = self.reactor.callLater(self.timeout, self._timeUp)

    def _disarm(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _timeUp(self):
        if self.progressed:
            self.progressed = False
            return self._arm()
        self._deadline = None
        self._stop()
        self.deferred.errback(Failure(IndexTimeout(self.timeout)))

    def _abandon(self, deferred):
        """The Deferred's canceller: it then fails with CancelledError."""
        self._disarm()
        self._stop()

    def _stop(self):
        with self._sqliteLock:
            self.abandoned.set()
            if self._sqlite is not None:
                self._sqlite.interrupt()  # sqlite3_interrupt: safe from any thread
