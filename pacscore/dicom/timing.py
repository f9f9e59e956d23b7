"""Cumulative timers for ``--display_status``: the seconds spent in queries
and stores, added to the archive's counters as each one ends."""

import time


def timed(deferred, counters, name):
    """``deferred``, adding the seconds until it fires to ``counters[name]``."""
    started = time.monotonic()

    def add(result):
        counters[name] = counters.get(name, 0) + time.monotonic() - started
        return result
    return deferred.addBoth(add)
