"""The reactor's clock made monotonic.

Twisted's reactor measures time with ``time.time`` (Twisted issue #2424),
so a step of the wall clock (NTP, a VM resumed, a clock set by hand) fires
its timers early (SQLTimeOut, TCPIPTimeOut, ARTIM: stores refused) or, after
a step back, holds them all for the length of the step (forwards, retries,
``background``).  ``twistd pacs`` runs its reactor on ``time.monotonic``,
Twisted's documented workaround; what follows the time of day (nightly
tasks, ``between``, NextAttempt, AccessTime, log and HTTP dates, the start
time of the status) reads ``time.time``, never the reactor.
"""

import time

from twisted.logger import Logger

log = Logger()


def useMonotonicClock(reactor):
    """Make ``reactor`` measure time with ``time.monotonic``, unless it
    already has a timed call (due on the clock it has: it keeps that one)."""
    if reactor.getDelayedCalls():
        log.warn("the reactor has timed calls already: it keeps the wall clock, and a clock step moves its timers")
        return
    reactor.seconds = time.monotonic
