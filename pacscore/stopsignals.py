"""A stop signal (SIGTERM, SIGINT, Ctrl-Break) while the server is already
stopping (a second Ctrl-C, an impatient operator or supervisor script, a
SIGTERM after ``dgate --quit:``) is one log line, 'already stopping': the
reactor's own handler would call ``reactor.stop`` again, whose
``ReactorNotRunning`` twisted logs as a critical error, which the
TroubleLog and the error mail then carry as a failure.  SIGQUIT, whose
default action would end the server at once and dump its core, stops it
as SIGTERM does."""

import signal

from twisted.application import service
from twisted.logger import Logger

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name))


class StopSignals(service.Service):
    """Once the reactor runs, stands in front of its handlers of
    ``SIGNALS`` (those twistd installed, not a debugger's), and SIGQUIT
    (then the reactor's SIGTERM handler's): the first
    signal goes on to the reactor's handler, which stops it (and twistd
    then exits by that signal); one after it, or after a stop begun
    otherwise (``stopping`` set: the services stopping, ``dgate --quit:``'s
    ``OrderlyStop``), is logged."""

    log = Logger()

    def __init__(self, reactor):
        self.reactor = reactor
        self.handlers = {}  # signal number -> the reactor's handler
        self.stopping = False

    def startService(self):
        super().startService()
        self.reactor.callWhenRunning(self._standInFront)

    def stopService(self):
        self.stopping = True
        return super().stopService()

    def _standInFront(self):
        for number in SIGNALS:
            handler = signal.getsignal(number)
            if getattr(handler, "__self__", None) is self.reactor:
                self.handlers[number] = handler
                signal.signal(number, self._received)
        stop = self.handlers.get(getattr(signal, "SIGTERM", None))
        if stop is not None and hasattr(signal, "SIGQUIT"):
            self.handlers[signal.SIGQUIT] = lambda number, frame: stop(signal.SIGTERM, frame)
            signal.signal(signal.SIGQUIT, self._received)

    def _received(self, number, frame):
        """The signal handler (in the reactor's thread, between two of its
        steps)."""
        if self.stopping:
            self.reactor.callFromThread(self.log.info, "{signal} while stopping: already stopping",
                                        signal=signal.Signals(number).name)
        else:
            self.stopping = True
            if number == getattr(signal, "SIGQUIT", None):
                self.reactor.callFromThread(self.log.info, "{signal}: stopping as at SIGTERM",
                                            signal=signal.Signals(number).name)
            self.handlers[number](number, frame)
