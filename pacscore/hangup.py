"""SIGHUP, which logrotate's ``postrotate`` and ``systemctl reload`` send,
and whose default action would end the server at once: pacs reopens
twistd's ``--logfile`` (which logrotate has just renamed, creating a new
one) and re-reads dicom.ini as ``dgate --read_ini:`` does, with a log line."""

import signal

from twisted.application import service
from twisted.logger import Logger
from twisted.python.logfile import BaseLogFile


class Hangup(service.Service):
    """Once the reactor runs, handles SIGHUP: ``reread()`` returns a
    Deferred of the text of what it re-read."""

    log = Logger()

    def __init__(self, reactor, reread):
        self.reactor = reactor
        self.reread = reread

    def startService(self):
        super().startService()
        self.reactor.callWhenRunning(signal.signal, signal.SIGHUP, self._received)

    def _received(self, number, frame):
        """The signal handler (in the reactor's thread, between two of its steps)."""
        self.reactor.callFromThread(self.reload)

    def reload(self):
        """Reopen twistd's log file, then re-read dicom.ini; a Deferred."""
        logFile = twistdLogFile()
        if logFile is not None:
            logFile.reopen()
        self.log.info("SIGHUP: {logFile}re-reading dicom.ini",
                      logFile="" if logFile is None else f"{logFile.path} reopened, ")
        d = self.reread()
        d.addCallbacks(lambda text: self.log.info("SIGHUP: {result}", result=text),
                       lambda failure: self.log.error("SIGHUP: dicom.ini not re-read: {error}",
                                                      error=failure.getErrorMessage()))
        return d


def twistdLogFile():
    """The ``LogFile`` of twistd's ``--logfile``, or None (``-n`` without
    it, ``--syslog``): twistd keeps it only in the SIGUSR1 handler that
    rotates it."""
    handler = signal.getsignal(signal.SIGUSR1)
    for cell in getattr(handler, "__closure__", None) or ():
        if isinstance(cell.cell_contents, BaseLogFile):
            return cell.cell_contents
    return None
