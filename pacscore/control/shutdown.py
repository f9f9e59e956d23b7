"""Stopping the server in order, for ``dgate --quit`` and at a stop signal.

``dgate --quit``: no new associations (the DICOM and HL7 listeners stop),
the running ones finish or, after the grace period (``QuitGracePeriod``),
are aborted; then the reactor stops and twistd stops the service tree in
reverse order: the listeners, the DICOM associations still running
(``AbortAssociations``: none then), the export queue, then the archive
(the stores under way end, pending index writes committed, pools ended).
A stop signal (SIGTERM, SIGINT) stops the reactor at once: the same
stop, whose associations are aborted as soon as the listeners stopped,
so no store begins once the archive waits for those under way. Success
is answered only after a commit, so nothing acknowledged is lost; an
object not acknowledged is sent again by its sender. A stop signal
meanwhile is one while stopping (``StopSignals``); when the reactor stops
otherwise meanwhile, the stop is its.
"""

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from pacscore.dicom.protocol import AWAITING_CLOSE

QUIT_GRACE_PERIOD = 30  # QuitGracePeriod's default: seconds a stop waits for running work


def stillRunning(associations):
    """The associations of the DICOM factory ``associations`` (its
    ``active`` set of protocols) not already ending: those aborted or
    released stay in it until their connection is closed."""
    return [association for association in associations.active
            if association.state != AWAITING_CLOSE and not association.transport.disconnecting]


def abortAll(associations):
    """A-ABORT every association of the DICOM factory ``associations``
    still running (``stillRunning``), and close its connection once that is
    written: nothing more of it is served."""
    for association in stillRunning(associations):
        association.abort()
        association.transport.loseConnection()


class AbortAssociations(service.Service):
    """Stopped after the listeners and before the archive: aborts the DICOM
    associations still running (logged), so that no store begins while
    the archive's stop waits for the stores under way (a store begun then
    would leave the copy it replaces on disk).  A store whose data set was
    wholly received still ends and is indexed; its answer is not sent."""

    log = Logger()

    def __init__(self, associations):
        self.associations = associations

    def stopService(self):
        super().stopService()
        running = len(stillRunning(self.associations))
        if running:
            self.log.info("stopping: aborting {count} running association(s); their senders send again "
                          "what was not acknowledged", count=running)
            abortAll(self.associations)


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
        running = len(stillRunning(self.associations))
        if running:
            self.log.warn("quit: aborting {count} association(s) still running after {grace} s",
                          count=running, grace=self.gracePeriod)
            abortAll(self.associations)
        self.log.info("quit: stopping the export queue and the archive")
        self.reactor.stop()
