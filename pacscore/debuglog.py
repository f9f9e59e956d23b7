"""The server's extra log file and Conquest's debug level (dicom.ini
``DebugLevel``, control command ``debuglevel:#``), process-wide.

The server always logs where twistd sends its log; the ``log_on`` and
``debuglog_on`` commands (pacscore.control.serverlog) also write it to a
file, the second with debug events.  The debug level says how much
debugging those get, as Conquest's manual has it:

- 0 (the default): the ordinary debug events;
- 1: also every incoming DIMSE command set, with the process's memory in
  use, and the answers to worklist queries (``COMMANDS``);
- 2: also every incoming query identifier of C-FIND, C-MOVE and C-GET
  (``IDENTIFIERS``).

A dump is only made while debug logging is on and the level asks for it
(``wants``), so it costs nothing otherwise.
"""

import os

from twisted.logger import LogLevel, Logger, PredicateResult, globalLogPublisher

from pacscore.logfiles import FileObservation

COMMANDS, IDENTIFIERS = 1, 2
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def memoryInUse():
    """The resident memory of this process, e.g. "123.4 MB" ("?" where
    /proc does not tell)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return "?"
    return f"{pages * _PAGE_SIZE / 1e6:.1f} MB"


class ServerLog:
    """The extra log file of a ``publisher`` (the process-wide one by
    default: logging is per process) and the debug level."""

    log = Logger()

    def __init__(self, publisher=globalLogPublisher):
        self.publisher = publisher
        self.debugLevel = 0
        self.path = None
        self.debug = False
        self._observation = None

    def wants(self, level):
        """Whether debug events of ``level`` are written: make the dump."""
        return self.debug and level <= self.debugLevel

    def logTo(self, path, logFile, debug):
        """Write the log (with debug events when ``debug``) to ``logFile``,
        opened on ``path`` by ``openLogFile``, instead of the extra file before."""
        self.stop()
        self.path, self.debug = path, debug
        self._observation = FileObservation(self.publisher, logFile, [self._wanted])
        self.log.info("logging {kind}to {path}", kind="with debug events " if debug else "", path=path)

    def stop(self):
        """Stop writing to the extra file, if any."""
        if self._observation is not None:
            self._observation.end()
            self._observation = self.path = None
        self.debug = False

    def _wanted(self, event):
        level = event.get("log_level", LogLevel.info)
        if level != LogLevel.debug:
            return PredicateResult.yes
        return PredicateResult.yes if self.wants(event.get("debugLevel", 0)) else PredicateResult.no


serverLog = ServerLog()
"""The server's: the logging control commands and the dumps use it."""
