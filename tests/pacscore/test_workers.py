"""Tests for pacscore.workers: the worker pool and its stop, and blockingCallWithin."""

import contextlib
import re
import threading
import time

from twisted.internet import defer, reactor, threads
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore import workers
from pacscore.workers import SLOW_CALL, WorkerPool, blockingCallWithin, standInIfSlow, standInWhileWaiting


class _ClockReactor(Clock):
    """A Clock with the real reactor's callFromThread."""

    def callFromThread(self, f, *args, **kwargs):
        reactor.callFromThread(f, *args, **kwargs)


def poolThreads(name):
    """The threads of the pool called ``name``, stand-ins too."""
    return [t for t in threading.enumerate() if t.name.startswith(name + "-") and not t.name.endswith("-join")]


class StopTests(unittest.TestCase):

    @inlineCallbacks
    def test_stopWaitsForCallsUnderWay(self):
        pool = WorkerPool(reactor, 2, "test-pool")
        pool.start()
        results = yield pool.deferToWorker(lambda: [time.sleep(0.05), "done"][1])
        self.assertEqual(results, "done")
        yield pool.stop()
        # the workers, not the thread that joined them (it may still be ending)
        self.assertEqual([t for t in threading.enumerate() if re.fullmatch(r"test-pool-\d+", t.name)], [])

    def test_stuckCallDoesNotHoldTheStop(self):
        """A call that never returns (a run-away Lua pattern match) is left
        behind after the grace period, with a warning naming its thread."""
        clock = _ClockReactor()
        pool = WorkerPool(clock, 1, "stuck-pool")
        pool.start()
        started, release = threading.Event(), threading.Event()
        self.addCleanup(release.set)
        pool.callInThread(lambda: started.set() or release.wait())
        started.wait(10)
        with capturedLogs() as events:
            stopped = pool.stop(grace=30)
            clock.advance(29)
            self.assertNoResult(stopped)
            clock.advance(1)
        self.successResultOf(stopped)
        [message] = [e["log_format"].format(**e) for e in events]
        self.assertEqual(message, "stuck-pool: stopping after 30 s without stuck-pool-0, still busy")

    def test_noWarningWhenNothingRuns(self):
        """With no grace at all, a stop of an idle pool warns of nothing:
        its threads are ending, not busy."""
        clock = _ClockReactor()
        pool = WorkerPool(clock, 2, "idle-pool")
        pool.start()
        with capturedLogs() as events:
            stopped = pool.stop(grace=0)
            clock.advance(0)
        self.successResultOf(stopped)
        self.assertEqual([e["log_format"] for e in events], [])

    def test_pending(self):
        """``pending`` counts the deferToWorker calls not answered yet."""
        clock = _ClockReactor()
        pool = WorkerPool(clock, 1, "counting-pool")
        pool.start()
        self.addCleanup(lambda: pool.stop(0) and None)
        release = threading.Event()
        self.addCleanup(release.set)
        calls = [pool.deferToWorker(release.wait), pool.deferToWorker(lambda: 1)]
        self.assertEqual(pool.pending, 2)
        release.set()
        return defer.gatherResults(calls).addCallback(lambda _: self.assertEqual(pool.pending, 0))


    def test_idle(self):
        """``idle``: no call queued or under way (the store writes an object
        as it arrives only then)."""
        clock = _ClockReactor()
        pool = WorkerPool(clock, 1, "idle-hint-pool")
        pool.start()
        self.addCleanup(lambda: pool.stop(0) and None)
        self.assertTrue(pool.idle)
        started, release = threading.Event(), threading.Event()
        self.addCleanup(release.set)
        pool.callInThread(lambda: started.set() or release.wait())
        started.wait(10)
        self.assertFalse(pool.idle, "a call under way")
        pool.callInThread(lambda: None)
        self.assertFalse(pool.idle, "a call queued")
        release.set()
        for _ in range(200):
            if pool.idle:
                break
            time.sleep(0.01)
        self.assertTrue(pool.idle)


class StandInTests(unittest.TestCase):
    """standInWhileWaiting: a worker waiting for work of its own pool."""

    @inlineCallbacks
    def test_everyWaitingWorkerIsStoodInFor(self):
        """The two workers of a pool each wait for a call of that pool (as a
        Lua converter's dicommove waits for the objects it stores here):
        stand-ins run those calls, and end once the waits are over."""
        pool = WorkerPool(reactor, 2, "waiting-pool")
        pool.start()
        self.addCleanup(pool.stop, 5)
        both = threading.Barrier(2, timeout=5)  # both workers wait at once

        def waiter(number):
            both.wait()
            with standInWhileWaiting():
                return blockingCallWithin(reactor, 5, pool.deferToWorker, lambda: number * 10)

        self.assertEqual((yield defer.gatherResults([pool.deferToWorker(waiter, n) for n in (1, 2)])), [10, 20])
        for _ in range(100):
            if len(poolThreads("waiting-pool")) == 2:
                break
            yield threads.deferToThread(time.sleep, 0.05)
        self.assertEqual(len(poolThreads("waiting-pool")), 2)

    def test_outsideAPool(self):
        """In a thread of no pool it changes nothing."""
        with standInWhileWaiting():
            self.assertEqual(poolThreads("waiting-pool"), [])


class SlowCallTests(unittest.TestCase):
    """standInIfSlow: a call that lasts gets a stand-in, so that the pool's
    other calls are not held up behind it."""

    def slowPool(self, size, name):
        """A started pool of ``size`` on a Clock, with ``run(release)``
        making a call that lasts until the Event ``release`` is set."""
        clock = _ClockReactor()
        pool = WorkerPool(clock, size, name)
        pool.start()
        self.addCleanup(pool.stop, 5)
        return clock, pool

    def slowCall(self, pool, release):
        def lasting():
            with standInIfSlow():
                release.wait(10)
        return pool.deferToWorker(lasting)

    @inlineCallbacks
    def turn(self):
        """Let the real reactor run what the workers handed it."""
        yield threads.deferToThread(time.sleep, 0.1)

    @inlineCallbacks
    def test_slowCallIsStoodInFor(self):
        """The only worker runs a slow call: after SLOW_CALL seconds another
        thread runs the calls queued behind it, and ends after it."""
        clock, pool = self.slowPool(1, "slow-pool")
        release = threading.Event()
        self.addCleanup(release.set)
        slow = self.slowCall(pool, release)
        quick = pool.deferToWorker(lambda: "quick")
        yield self.turn()
        self.assertNoResult(quick)
        clock.advance(SLOW_CALL)
        self.assertEqual((yield quick), "quick")
        self.assertEqual(len(poolThreads("slow-pool")), 2)
        release.set()
        yield slow
        for _ in range(100):
            if len(poolThreads("slow-pool")) == 1:
                break
            yield self.turn()
        self.assertEqual(len(poolThreads("slow-pool")), 1)
        clock.advance(SLOW_CALL)
        self.assertEqual(clock.getDelayedCalls(), [], "no watch once no slow call runs")

    @inlineCallbacks
    def test_quickCallGetsNoStandIn(self):
        clock, pool = self.slowPool(1, "quick-pool")
        release = threading.Event()
        release.set()
        yield self.slowCall(pool, release)
        yield self.turn()
        clock.advance(SLOW_CALL)
        self.assertEqual(len(poolThreads("quick-pool")), 1)

    @inlineCallbacks
    def test_standInsAreCapped(self):
        """At most SLOW_STAND_INS stand-ins run at once."""
        self.patch(workers, "SLOW_STAND_INS", 1)
        clock, pool = self.slowPool(2, "capped-pool")
        release = threading.Event()
        self.addCleanup(release.set)
        slow = [self.slowCall(pool, release) for _ in range(3)]
        yield self.turn()
        clock.advance(SLOW_CALL)
        yield self.turn()
        clock.advance(SLOW_CALL)
        yield self.turn()
        self.assertEqual(len(poolThreads("capped-pool")), 3)
        release.set()
        yield defer.gatherResults(slow)

    @inlineCallbacks
    def test_standInsStayCappedWithABacklog(self):
        """With more slow calls queued than the pool's threads and
        SLOW_STAND_INS, a slow call that ends lets its thread go on to the
        next one, but the pool does not start another stand-in for it: it
        never runs more than its size and SLOW_STAND_INS threads."""
        size, cap = 2, workers.SLOW_STAND_INS
        clock, pool = self.slowPool(size, "backlog-pool")
        releases = [threading.Event() for _ in range(size + cap + 20)]
        self.addCleanup(lambda: [release.set() for release in releases])
        started, startedLock = [], threading.Lock()

        def lasting(release):
            with startedLock:
                started.append(release)
            with standInIfSlow():
                release.wait(10)

        slow = [pool.deferToWorker(lasting, release) for release in releases]
        for _ in range(cap):  # each stand-in's first call gets one in turn
            yield self.turn()
            clock.advance(SLOW_CALL)
            if len(started) == size + cap:
                break
        yield self.turn()
        self.assertEqual(len(poolThreads("backlog-pool")), size + cap)
        for ended in range(10):
            started[ended].set()
            for _ in range(100):
                if len(started) > size + cap + ended:
                    break
                yield self.turn()
            clock.advance(SLOW_CALL)
            yield self.turn()
            self.assertEqual(len(poolThreads("backlog-pool")), size + cap)
        for release in releases:
            release.set()
        yield defer.gatherResults(slow)

    def test_outsideAPool(self):
        with standInIfSlow():
            self.assertEqual(poolThreads("slow-pool"), [])


class _RecordingClock(Clock):
    """A Clock keeping what workers hand the reactor, for the test to run."""

    def __init__(self):
        super().__init__()
        self.handed = []

    def callFromThread(self, f, *args, **kwargs):
        self.handed.append((f, args, kwargs))


class _LockThen:
    """A lock that runs ``then`` once, just after its first release: another
    thread's turn between two statements of the one holding it."""

    def __init__(self, then):
        self._lock = threading.Lock()
        self._then = then

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        self._lock.__exit__(*exc)
        then, self._then = self._then, None
        if then is not None:
            then()


class SlowWatchTests(unittest.TestCase):
    """The reactor's watch of the standInIfSlow calls: one loop at most,
    and none once the pool stops."""

    def watches(self, clock, pool):
        """How many watch loops run or are scheduled."""
        handed = [f for f, _, _ in clock.handed if f == pool._watchSlowCalls]
        scheduled = [call for call in clock.getDelayedCalls() if call.func == pool._watchSlowCalls]
        return len(handed) + len(scheduled)

    def test_aCallStartingAsTheWatchEndsMakesOneLoop(self):
        """A slow call that starts just as the watch finds none left (after
        it let go of the lock, before it decides whether to run again) and
        hands the reactor a new watch leaves one loop, not two."""
        clock = _RecordingClock()
        pool = WorkerPool(clock, 1, "watch-pool")
        calls = contextlib.ExitStack()
        self.addCleanup(calls.close)
        with pool._standInIfSlow():
            pass
        clock.handed.clear()  # that watch runs now, finding no slow call
        pool._slowLock = _LockThen(lambda: calls.enter_context(pool._standInIfSlow()))
        pool._watchSlowCalls()
        self.assertEqual(self.watches(clock, pool), 1)

    def test_noStandInOnceStopped(self):
        """The watch a slow call handed the reactor, run after the pool's
        stop, starts no stand-in and no further watch."""
        clock = _RecordingClock()
        pool = WorkerPool(clock, 0, "stopped-pool")
        with pool._standInIfSlow():
            clock.advance(SLOW_CALL)
            pool.stop()
            pool._watchSlowCalls()
        self.assertEqual(poolThreads("stopped-pool"), [])
        self.assertEqual([call for call in clock.getDelayedCalls() if call.func == pool._watchSlowCalls], [])


class BlockingCallWithinTests(unittest.TestCase):
    """blockingCallWithin: a worker thread's call into the reactor, limited in time."""

    @inlineCallbacks
    def test_resultAndFailure(self):
        result = yield threads.deferToThread(blockingCallWithin, reactor, 5, lambda x: defer.succeed(x * 2), 21)
        self.assertEqual(result, 42)
        failing = threads.deferToThread(blockingCallWithin, reactor, 5, lambda: defer.fail(KeyError("k")))
        yield self.assertFailure(failing, KeyError)

    @inlineCallbacks
    def test_timeoutCancelsTheCall(self):
        cancelled = []
        waiting = threads.deferToThread(blockingCallWithin, reactor, 0.1,
                                        lambda: defer.Deferred(lambda d: cancelled.append(True)))
        error = yield self.assertFailure(waiting, TimeoutError)
        self.assertEqual(str(error), "no answer within 0.1 s")
        self.assertEqual(cancelled, [True])

    @inlineCallbacks
    def test_timeoutIsTheReasonWhateverTheCancelledCallGives(self):
        """A call whose cancellation fails it otherwise (a C-FIND's own
        error, with no text) still ends in TimeoutError."""
        def cancelled(d):
            d.errback(ValueError(""))

        waiting = threads.deferToThread(blockingCallWithin, reactor, 0.1, lambda: defer.Deferred(cancelled))
        error = yield self.assertFailure(waiting, TimeoutError)
        self.assertEqual(str(error), "no answer within 0.1 s")

    def test_reactorThatRunsNoMore(self):
        """The wait ends also when the reactor never runs the call."""
        class Stopped:
            def callFromThread(self, f, *args, **kwargs):
                pass

        started = time.monotonic()
        with self.assertRaises(TimeoutError) as raised:
            blockingCallWithin(Stopped(), 0.1, lambda: None)
        self.assertEqual(str(raised.exception), "no answer from the reactor within 0.1 s")
        self.assertLess(time.monotonic() - started, 5)
