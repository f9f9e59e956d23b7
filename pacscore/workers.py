"""A small pool of worker threads for blocking disk work.

Twisted's ThreadPool passes each call through a coordinator thread; at
thousands of objects a second that extra hop costs more than the work.
Here workers take calls straight from one queue and report back with
``reactor.callFromThread``.
"""

import queue
import threading

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

_STOP = object()
STOP_GRACE = 60  # seconds a stop waits for calls under way


class WorkerPool:
    """``size`` threads named ``name-N``; ``start()`` before use, ``stop()``
    (a Deferred) after the last call."""

    log = Logger()

    def __init__(self, reactor, size, name):
        self.reactor = reactor
        self.size = size
        self.name = name
        self._queue = queue.SimpleQueue()
        self._threads = []

    def start(self):
        for number in range(self.size):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, grace=STOP_GRACE):
        """Deferred firing once every queued call has run and the threads
        ended, or after ``grace`` seconds with a warning: a call that never
        returns (a run-away script inside a C function, a hung file system)
        must not keep the server from stopping; the threads are daemons."""
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        d = defer.Deferred()

        def ended():
            if not d.called:
                timer.cancel()
                d.callback(None)

        def overdue():
            busy = [thread.name for thread in threads if thread.is_alive()]
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
        self._queue.put((f, args, kwargs, d))
        return d

    def _work(self):
        while (call := self._queue.get()) is not _STOP:
            f, args, kwargs, d = call
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
