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
starve the pool of the threads their wait needs.
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
_current = threading.local()  # .pool: the WorkerPool of a worker thread
STOP_GRACE = 60  # seconds a stop waits for calls under way
_NO_REACTOR_GRACE = 1  # seconds past a blockingCallWithin's limit before giving up on a reactor that runs no more


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

    def _work(self):
        _current.pool = self
        thread = threading.current_thread()
        name = thread.name
        while (call := self._queue.get()) is not _STOP:
            if call is _RETIRE:
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
