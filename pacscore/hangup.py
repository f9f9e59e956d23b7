"""SIGHUP, which logrotate's ``postrotate`` and ``systemctl reload`` send
to a server without a terminal, and whose default action would end it at
once: pacs reopens twistd's ``--logfile`` (which logrotate has just
renamed, creating a new one) and re-reads dicom.ini as ``dgate
--read_ini:`` does, with a log line.  With a controlling terminal
(``make run``, ``twistd -n`` in a shell) SIGHUP is the terminal hanging
up, and stops pacs as SIGTERM does; ignored at start (``nohup``), it is
left ignored."""

import os
import signal

from twisted.application import service
from twisted.logger import Logger
from twisted.python.logfile import BaseLogFile


def controllingTerminal():
    """Whether this process has a controlling terminal (a daemonized
    twistd and a systemd service have none)."""
    try:
        os.close(os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY))
    except OSError:
        return False
    return True


class Hangup(service.Service):
    """Once the reactor runs, handles SIGHUP: ``reread()`` returns a
    Deferred of the text of what it re-read."""

    log = Logger()

    def __init__(self, reactor, reread, hasTerminal=controllingTerminal):
        self.reactor = reactor
        self.reread = reread
        self.hasTerminal = hasTerminal

    def startService(self):
        """Decide what SIGHUP does: nothing when it is ignored (``nohup``),
        stop with a controlling terminal, else reload."""
        super().startService()
        if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
            return
        handler = self._hungUp if self.hasTerminal() else self._received
        self.reactor.callWhenRunning(signal.signal, signal.SIGHUP, handler)

    def _received(self, number, frame):
        """The signal handler (in the reactor's thread, between two of its steps)."""
        self.reactor.callFromThread(self.reload)

    def _hungUp(self, number, frame):
        """The signal handler with a controlling terminal: it hung up (its
        window closed, its ssh session ended), so pacs stops as at SIGTERM
        (through its handler then, ``StopSignals``') rather than run on
        detached, holding its ports and the working folder's lock."""
        self.reactor.callFromThread(self.log.info, "SIGHUP: the terminal hung up, stopping as at SIGTERM")
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, frame)

    def reload(self):
        """Reopen twistd's log file (or keep the old one, with a warning,
        when it cannot be opened), then re-read dicom.ini; a Deferred."""
        logFile = twistdLogFile()
        reopened = ""
        if logFile is not None:
            try:
                reopen(logFile)
            except OSError as e:
                self.log.warn("SIGHUP: cannot reopen {path} ({error}): still writing to the file open before; "
                              "the log file must be writable by the user pacs runs as (--uid)",
                              path=logFile.path, error=e.strerror)
            else:
                reopened = f"{logFile.path} reopened, "
        self.log.info("SIGHUP: {reopened}re-reading dicom.ini", reopened=reopened)
        d = self.reread()
        d.addCallbacks(lambda text: self.log.info("SIGHUP: {result}", result=text),
                       lambda failure: self.log.error("SIGHUP: dicom.ini not re-read: {error}",
                                                      error=failure.getErrorMessage()))
        return d


def reopen(logFile):
    """Open ``logFile``'s path anew, then close the file it had open; an
    ``OSError`` (twistd made it as root before ``--uid`` took effect, and
    logrotate's ``create`` does too) leaves it writing to the old one.
    (``LogFile.reopen`` closes first, and then has no file at all.)"""
    old = logFile._file
    logFile._openFile()
    old.close()


def twistdLogFile():
    """The ``LogFile`` of twistd's ``--logfile``, or None (``-n`` without
    it, ``--syslog``): twistd keeps it only in the SIGUSR1 handler that
    rotates it."""
    handler = signal.getsignal(signal.SIGUSR1)
    for cell in getattr(handler, "__closure__", None) or ():
        if isinstance(cell.cell_contents, BaseLogFile):
            return cell.cell_contents
    return None
