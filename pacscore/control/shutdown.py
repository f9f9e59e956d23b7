"""Stopping the server in order, for ``dgate --quit``.

No new associations (the DICOM and HL7 listeners stop), the running ones
finish or, after the grace period (``QuitGracePeriod``), are aborted; then
the reactor stops and twistd stops the service tree in reverse order: the
export queue, then the archive (pending index writes committed, pools
ended). Success is answered only after a commit, so nothing acknowledged
is lost. A stop signal meanwhile is one while stopping (``StopSignals``);
when the reactor stops otherwise meanwhile, the stop is its.
"""

from twisted.internet import defer, task
from twisted.logger import Logger

QUIT_GRACE_PERIOD = 30  # QuitGracePeriod's default: seconds a stop waits for running work


def quitGracePeriod(ini):
    """dicom.ini's ``QuitGracePeriod`` (seconds)."""
    return ini.getint("QuitGracePeriod", QUIT_GRACE_PERIOD)


class OrderlyStop:
    """Callable once (later calls get the same Deferred): ``listeners`` are
    the services to stop first, ``associations`` the DICOM factory (its
    ``active`` set of protocols), ``gracePeriod`` seconds, ``signals`` the
    ``StopSignals`` service (or None), told that a stop is under way."""

    log = Logger()
    pollInterval = 0.1

    def __init__(self, reactor, listeners, associations, gracePeriod=30, signals=None):
        self.reactor = reactor
        self.listeners = listeners
        self.associations = associations
        self.gracePeriod = gracePeriod
        self.signals = signals
        self._stopping = None
        self._reactorStopping = False

    def __call__(self):
        """A Deferred firing once the reactor is told to stop."""
        if self._stopping is None:
            self._stopping = defer.ensureDeferred(self._stop())
            self._stopping.addErrback(lambda f: self.log.failure("quit: stopping in order failed", f))
        return self._stopping

    @property
    def running(self):
        """How many associations are still open."""
        return len(self.associations.active)

    def _stoppingReactor(self):
        self._reactorStopping = True

    async def _stop(self):
        if self.signals is not None:
            self.signals.stopping = True
        self.reactor.addSystemEventTrigger("before", "shutdown", self._stoppingReactor)
        self.log.info("quit: no new associations; waiting up to {grace} s for {count} running",
                      grace=self.gracePeriod, count=self.running)
        await defer.gatherResults([defer.maybeDeferred(listener.stopService) for listener in self.listeners])
        deadline = self.reactor.seconds() + self.gracePeriod
        while self.running and not self._reactorStopping and self.reactor.seconds() < deadline:
            await task.deferLater(self.reactor, self.pollInterval, lambda: None)
        if self._reactorStopping:
            self.log.info("quit: the server is stopping already")
            return
        if self.running:
            self.log.warn("quit: aborting {count} association(s) still running after {grace} s",
                          count=self.running, grace=self.gracePeriod)
            for association in list(self.associations.active):
                association.abort()
                association.transport.loseConnection()
        self.log.info("quit: stopping the export queue and the archive")
        self.reactor.stop()
