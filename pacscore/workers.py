"""A small pool of worker threads for blocking disk work, and
``blockingCallWithin``: a worker's call into the reactor with a time limit.

Twisted's ThreadPool passes each call through a coordinator thread; at
thousands of objects a second that extra hop costs more than the work.
Here workers take calls straight from one queue and report back with
``reactor.callFromThread``.

A worker about to wait for work that may need its own pool (a Lua
converter's ``servercommand``, whose command may store objects or read
files in that pool, or its association's Lua state, which such a
converter holds meanwhile) waits in ``standInWhileWaiting()``: its pool gets
another thread for the time of the wait, so that waiting workers never
starve the pool of the threads their wait needs.  A worker about to run
work that may last (an import converter line: a program, a sleep, a DICOM
round trip) runs it in ``standInIfSlow()``: should it last longer than
``SLOW_CALL`` seconds, the pool gets another thread until it ends (at most
``SLOW_STAND_INS`` at once), so that one sender's slow converters do not
hold the threads other senders' stores and the control port need.
"""

import contextlib
import itertools
import queue
import threading

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

_STOP = object()
_RETIRE = object()  # a stand-in's wait is over: one thread of the pool ends
_RETIRE_SLOW = object()  # a slow call's stand-in is no longer needed: one thread ends and leaves its place
_current = threading.local()  # .pool: the WorkerPool of a worker thread
STOP_GRACE = 60  # seconds a stop waits for calls under way
_NO_REACTOR_GRACE = 1  # seconds past a blockingCallWithin's limit before giving up on a reactor that runs no more
SLOW_CALL = 1  # seconds a call in standInIfSlow() runs before its pool gets a stand-in for it
SLOW_STAND_INS = 32  # at most this many such stand-ins in a pool at once


class WorkerPool:
    """``size`` threads named ``name-N``; ``start()`` before use, ``stop()``
    (a Deferred) after the last call; ``pending`` counts the
    ``deferToWorker`` calls queued or under way."""

    log = Logger()

    def __init__(self, reactor, size, name):
        self.reactor = reactor
        self.size = size
        self.name = name
        self._queue = queue.SimpleQueue()
        self._threads = []
        self._threadsLock = threading.Lock()  # stand-ins come and go in workers while stop() takes the list
        self._standIns = itertools.count()
        self._busy = set()  # the names of the threads in a call
        self._busyLock = threading.Lock()  # workers change _busy while the reactor reads it
        self._slowCalls = set()  # the standInIfSlow calls under way, _SlowCalls
        self._slowLock = threading.Lock()  # guards _slowCalls, _slowStandIns, _watching and _stopped
        self._slowStandIns = 0  # threads started for them and not ended yet
        self._watching = False  # _watchSlowCalls runs or is scheduled
        self._stopped = False  # stop() was called: no more stand-ins for slow calls
        self._slowWatch = None  # its next run, a DelayedCall of the reactor thread
        self.pending = 0

    def start(self):
        for number in range(self.size):
            self._startThread(f"{self.name}-{number}")

    def _startThread(self, name):
        thread = threading.Thread(target=self._work, name=name, daemon=True)
        with self._threadsLock:
            self._threads.append(thread)
        thread.start()

    def stop(self, grace=STOP_GRACE):
        """Deferred firing once every queued call has run and the threads
        ended, or after ``grace`` seconds with a warning: a call that never
        returns (a run-away script inside a C function, a hung file system)
        must not keep the server from stopping; the threads are daemons."""
        with self._slowLock:
            self._stopped = True
        if self._slowWatch is not None and self._slowWatch.active():
            self._slowWatch.cancel()
        with self._threadsLock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        d = defer.Deferred()

        def ended():
            if not d.called:
                timer.cancel()
                d.callback(None)

        def overdue():
            with self._busyLock:
                busy = sorted(self._busy)
            if busy:
                self.log.warn("{name}: stopping after {grace} s without {busy}, still busy", name=self.name,
                              grace=grace, busy=", ".join(busy))
            d.callback(None)

        def join():
            for thread in threads:
                thread.join()
            self.reactor.callFromThread(ended)

        timer = self.reactor.callLater(grace, overdue)
        threading.Thread(target=join, name=f"{self.name}-join", daemon=True).start()
        return d

    def callInThread(self, f, *args, **kwargs):
        """Run ``f`` in a worker; thread-safe; an exception is logged."""
        self._queue.put((f, args, kwargs, None))

    def deferToWorker(self, f, *args, **kwargs):
        """Run ``f`` in a worker; a Deferred (call from the reactor thread)."""
        d = defer.Deferred()
        self.pending += 1
        self._queue.put((f, args, kwargs, d))
        return d.addBoth(self._answered)

    @property
    def idle(self):
        """Whether no call is queued or under way (as of now: a hint)."""
        with self._busyLock:
            return not self._busy and self._queue.empty()

    def _answered(self, result):
        self.pending -= 1
        return result

    @contextlib.contextmanager
    def _standIn(self):
        self._startThread(f"{self.name}-standin-{next(self._standIns)}")
        try:
            yield
        finally:
            self._queue.put(_RETIRE)

    @contextlib.contextmanager
    def _standInIfSlow(self):
        call = _SlowCall(self.reactor.seconds() + SLOW_CALL)
        with self._slowLock:
            self._slowCalls.add(call)
            watch = not (self._watching or self._stopped)
            self._watching = self._watching or watch
        if watch:
            self.reactor.callFromThread(self._watchSlowCalls)
        try:
            yield
        finally:
            with self._slowLock:
                self._slowCalls.discard(call)
            if call.stoodInFor:
                self._queue.put(_RETIRE_SLOW)

    def _watchSlowCalls(self):
        """In the reactor thread, while standInIfSlow calls run: a stand-in
        for each that has run SLOW_CALL seconds, up to SLOW_STAND_INS."""
        now = self.reactor.seconds()
        with self._slowLock:
            if self._stopped:
                due, watching = [], False
            else:
                due = [call for call in self._slowCalls if not call.stoodInFor and call.deadline <= now]
                due = due[:max(SLOW_STAND_INS - self._slowStandIns, 0)]
                for call in due:
                    call.stoodInFor = True
                self._slowStandIns += len(due)
                watching = bool(self._slowCalls)
            self._watching = watching  # decided here: a call starting after the lock hands the reactor its own watch
        for _ in due:
            self._startThread(f"{self.name}-standin-{next(self._standIns)}")
        self._slowWatch = self.reactor.callLater(SLOW_CALL / 2, self._watchSlowCalls) if watching else None

    def _work(self):
        _current.pool = self
        thread = threading.current_thread()
        name = thread.name
        while (call := self._queue.get()) is not _STOP:
            if call is _RETIRE or call is _RETIRE_SLOW:
                if call is _RETIRE_SLOW:  # only now: the place is free once the thread ends, not behind a backlog
                    with self._slowLock:
                        self._slowStandIns -= 1
                with self._threadsLock:
                    if thread in self._threads:
                        self._threads.remove(thread)
                return
            f, args, kwargs, d = call
            with self._busyLock:
                self._busy.add(name)
            try:
                result = f(*args, **kwargs)
            except BaseException:
                failure = Failure()
                if d is None:
                    self.log.failure("{name}: background call failed", failure, name=self.name)
                else:
                    self.reactor.callFromThread(d.errback, failure)
            else:
                if d is not None:
                    self.reactor.callFromThread(d.callback, result)
            finally:
                with self._busyLock:
                    self._busy.discard(name)


def standInWhileWaiting():
    """A context manager for a worker thread about to wait for work that may
    need its pool: the pool runs one more thread until the wait ends (then
    one of its threads ends, after the calls queued before).  In a thread
    of no ``WorkerPool`` it does nothing."""
    pool = getattr(_current, "pool", None)
    return contextlib.nullcontext() if pool is None else pool._standIn()


class _SlowCall:
    """A standInIfSlow call: when it runs SLOW_CALL seconds (``deadline``,
    the reactor's time) and whether its pool got a stand-in for it."""

    def __init__(self, deadline):
        self.deadline = deadline
        self.stoodInFor = False


def standInIfSlow():
    """A context manager for a worker thread about to run work that may
    last: should it run longer than ``SLOW_CALL`` seconds, its pool runs
    one more thread until it ends (at most ``SLOW_STAND_INS`` such threads
    at once).  In a thread of no ``WorkerPool`` it does nothing."""
    pool = getattr(_current, "pool", None)
    return contextlib.nullcontext() if pool is None else pool._standInIfSlow()


def _timedOut(result, seconds):
    """The result of a call ``addTimeout`` cancelled: a timeout, whatever
    the call's cancellation made of it (a request's own failure)."""
    return Failure(defer.TimeoutError(f"no answer within {seconds} s"))


def blockingCallWithin(reactor, seconds, f, *args, **kwargs):
    """From a thread other than the reactor's: run ``f`` in the reactor and
    wait for its result (a Deferred's too) for at most ``seconds``; then its
    Deferred is cancelled and TimeoutError raised, as it is when the reactor
    no longer runs.  ``twisted.internet.threads.blockingCallFromThread``
    would wait for ever."""
    answers = queue.SimpleQueue()

    def call():
        d = defer.maybeDeferred(f, *args, **kwargs)
        d.addTimeout(seconds, reactor, onTimeoutCancel=_timedOut)
        d.addBoth(answers.put)

    reactor.callFromThread(call)
    try:
        result = answers.get(timeout=seconds + _NO_REACTOR_GRACE)
    except queue.Empty:
        raise TimeoutError(f"no answer from the reactor within {seconds} s") from None
    if isinstance(result, Failure):
        if result.check(defer.TimeoutError):
            raise TimeoutError(f"no answer within {seconds} s")
        result.raiseException()
    return result
