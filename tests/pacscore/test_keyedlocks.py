"""KeyedLocks: one run at a time per key, the lock dropped when idle."""

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.keyedlocks import KeyedLocks


class KeyedLocksTests(unittest.TestCase):

    def test_oneAtATimePerKey(self):
        """A run of a key waits for the one before; another key does not."""
        locks, first, other = KeyedLocks(), defer.Deferred(), defer.Deferred()
        ran = []
        locks.run("a", lambda: first)
        locks.run("a", ran.append, "a2")
        locks.run("b", lambda: other)
        locks.run("b2", ran.append, "b2")
        self.assertEqual(ran, ["b2"])
        first.callback(None)
        self.assertEqual(ran, ["b2", "a2"])

    def test_droppedWhenIdle(self):
        """Once no run holds or waits for a key, its lock is gone, also
        after a failure, which the run's Deferred gives."""
        locks, held = KeyedLocks(), defer.Deferred()
        locks.run("a", lambda: held)
        waiting = locks.run("a", lambda: 1 / 0)
        self.assertEqual(len(locks), 1)
        held.callback(None)
        self.failureResultOf(waiting, ZeroDivisionError)
        self.assertEqual(len(locks), 0)

    def test_coroutine(self):
        """A coroutine function's result."""
        async def f(value):
            return value
        self.assertEqual(self.successResultOf(KeyedLocks().run("a", f, 3)), 3)
