"""Conquest's two log files, which dicom.ini's ``TroubleLog`` and
``UserLog`` name (defaults ``PacsTrouble.log`` and ``PacsUser.log`` in
the working folder; an empty value writes no file).

As Conquest's ``TroubleLog``, the trouble log gets every line the server
logs from level warning up (Conquest's lines marked ``***``: a rejected
association, a refused store, a failed forward ...), and as its
``UserLog`` the user log one line for each C-STORE answered Success and
each C-MOVE (and C-GET) a peer asks for: the operation and the calling AE
title, as Conquest writes them (``"C-Store","STORESCU        "``).  Each
line starts with the time as Conquest on Linux writes it
(``Mon Jan  6 12:00:00 2025``) and is appended to the file while the
server runs; a line that cannot be written (a full disk) is dropped, with
a warning (``FileObservation``).

The operations reach the user log through ``userEvents``, a publisher of
their own, so they do not fill the server log with a line per object.
"""

import time

from twisted.application import service
from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, LogPublisher, \
    Logger, formatEventAsClassicLogText, globalLogPublisher

from pacscore.errormail import eventText
from pacscore.regularfiles import openRegularFile

TROUBLE_LEVEL = LogLevel.warn

userEvents = LogPublisher()
"""Where the C-STORE, C-MOVE and C-GET services tell the user log of an
operation: events with ``operation`` (``C-STORE`` ...) and ``callingAE``."""


def openLogFile(path):
    """``path`` opened to append log lines to, as ``FileObservation``
    writes them: unbuffered, so that a line that cannot be written is
    dropped rather than kept to go out with a later one; NotARegularFile
    (an OSError) for a pipe, socket or device, whose writes could block
    the reactor's thread, which logs."""
    return openRegularFile(path, "ab", buffering=0)


class FileObservation:
    """``logFile`` (opened by ``openLogFile``) observing ``publisher``: the
    events ``predicates`` let through are written to it, each as
    ``formatEvent`` makes it, until ``end`` (which closes the file).

    A line that cannot be written (a full disk, a closed file) is dropped
    with a warning naming the file and the error, and the next one is
    tried as usual; only a failure after a line was written again warns
    again.  So the observer never raises, which would have Twisted's
    publisher log a critical event with a traceback for every event
    (mailed by ErrorMail).  The warning, if this same file observes it,
    finds it failing and is dropped as well."""

    log = Logger()

    def __init__(self, publisher, logFile, predicates=(), formatEvent=formatEventAsClassicLogText):
        self.publisher = publisher
        self.logFile = logFile
        self.formatEvent = formatEvent
        self.failing = False
        self.observer = FilteringLogObserver(self.write, predicates)
        publisher.addObserver(self.observer)

    def write(self, event):
        text = self.formatEvent(event)
        if not text:
            return
        data = text.encode("utf-8", "backslashreplace")
        try:
            while data:  # a short write (the disk filling up) then fails on the rest
                data = data[self.logFile.write(data):]
        except (OSError, ValueError) as e:
            if not self.failing:
                self.failing = True
                self.log.warn("cannot write the log file {path}: {error}; its lines are dropped until it can "
                              "be written again", path=self.logFile.name, error=e)
        else:
            self.failing = False

    def end(self):
        self.publisher.removeObserver(self.observer)
        try:
            self.logFile.close()
        except OSError as e:
            self.log.warn("cannot close the log file {path}: {error}", path=self.logFile.name, error=e)


def conquestTime(event):
    """The time of ``event`` as Conquest on Linux stamps its log lines (``ctime``)."""
    return time.ctime(event.get("log_time", time.time()))


def troubleLine(event):
    """The trouble log's line of a warning or error event."""
    return f"{conquestTime(event)} *** {eventText(event)}\n"


def userLine(event):
    """The user log's line of an operation event: Conquest's
    ``"C-Store","CALLING_AE      "`` (operation padded to 7, AE title to 16)."""
    return f'{conquestTime(event)} "{event["operation"].title():<7}","{event["callingAE"]:<16}"\n'


class LogFile(service.Service):
    """Appends the events of ``publisher`` that ``predicates`` let through
    to the file at ``path``, one line each as ``formatLine`` makes it,
    while the service runs.  ``key`` is the dicom.ini key naming the file."""

    log = Logger()

    def __init__(self, key, path, publisher, formatLine, predicates=()):
        self.key = key
        self.path = path
        self.publisher = publisher
        self.formatLine = formatLine
        self.predicates = predicates
        self.observation = None

    def startService(self):
        super().startService()
        try:
            logFile = openLogFile(self.path)  # at start-up, before the reactor serves anyone
        except OSError as e:
            self.log.error("cannot write the {key} file {path}: {error}; it is not written",
                           key=self.key, path=self.path, error=e.strerror)
            return
        self.observation = FileObservation(self.publisher, logFile, self.predicates, self.formatLine)
        self.log.info("{key}: {path}", key=self.key, path=self.path)

    def stopService(self):
        super().stopService()
        if self.observation is not None:
            self.observation.end()
            self.observation = None


def logFiles(configuration, publisher=globalLogPublisher):
    """The ``LogFile`` services of ``configuration``'s TroubleLog and
    UserLog (one for each whose value is not empty)."""
    files = []
    for key, default, source, formatLine, predicates in (
            ("TroubleLog", "PacsTrouble.log", publisher, troubleLine,
             [LogLevelFilterPredicate(defaultLogLevel=TROUBLE_LEVEL)]),
            ("UserLog", "PacsUser.log", userEvents, userLine, ())):
        value = configuration.ini.get(key)
        if value is None or value.strip():
            files.append(LogFile(key, configuration.pathSetting(key, default), source, formatLine, predicates))
    return files
