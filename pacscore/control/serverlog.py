"""Control commands on the server log (manual appendix 6, logging options):
``log_on:file``, ``debuglog_on:file``, ``debuglevel:#``.

The server always logs where twistd sends its log.  ``log_on:file`` also
writes every event from level info up to FILE (appended; relative to the
working folder); ``debuglog_on:file`` does the same including debug
events; either replaces the file of the one before, and ``log_on:`` with
no file stops writing to it.  Logging to a UDP port, which Conquest
also offers, is not supported.

``debuglevel:#`` selects how much of the debug events the debug log gets:
0 none, 1 (the default) every ordinary debug event, which is all pacs
emits today; an event may ask for a higher level with a ``debugLevel``
key and is then written only from that level up.  It does not change what
twistd's own log shows.  The level is kept in ``ServerLog.debugLevel``.
"""

from twisted.logger import (FilteringLogObserver, LogLevel, Logger, PredicateResult, globalLogPublisher,
                            textFileLogObserver)

from pacscore.control.arguments import ControlCommand, number
from pacscore.control.context import CommandError
from pacscore.control.output import outputPath


class ServerLog:
    """The extra log file of a ``publisher`` (the process-wide one by
    default: logging is per process) and the debug level."""

    log = Logger()

    def __init__(self, publisher=globalLogPublisher):
        self.publisher = publisher
        self.debugLevel = 1
        self.path = None
        self.debug = False
        self._observer = None
        self._file = None

    def logTo(self, path, textFile, debug):
        """Write the log (with debug events when ``debug``) to ``textFile``,
        opened on ``path``, instead of the extra file before."""
        self.stop()
        self.path, self.debug, self._file = path, debug, textFile
        self._observer = FilteringLogObserver(textFileLogObserver(textFile), [self._wanted])
        self.publisher.addObserver(self._observer)
        self.log.info("logging {kind}to {path}", kind="with debug events " if debug else "", path=path)

    def stop(self):
        """Stop writing to the extra file, if any."""
        if self._observer is not None:
            self.publisher.removeObserver(self._observer)
            self._file.close()
            self._observer = self._file = self.path = None

    def _wanted(self, event):
        level = event.get("log_level", LogLevel.info)
        if level != LogLevel.debug:
            return PredicateResult.yes
        wanted = self.debug and event.get("debugLevel", 1) <= self.debugLevel
        return PredicateResult.yes if wanted else PredicateResult.no


serverLog = ServerLog()
"""The server's: the commands made in plugins/pacs_control_logging.py use it."""


class LogOn(ControlCommand):
    name = "log_on"
    usage = "--log_on:file  Start normal logging (log_on: stops it)"
    debug = False

    def __init__(self, serverLog=serverLog):
        super().__init__()
        self.serverLog = serverLog

    def run(self, arguments, context):
        target = arguments.strip()
        if not target:
            self.serverLog.stop()
            return ""
        if target.isdigit():
            raise CommandError(f"{self.name}: logging to a UDP port is not supported, give a file")
        path = outputPath(context.archive, target)
        d = context.archive.workers.deferToWorker(open, path, "a", encoding="utf-8")

        def opened(textFile):
            self.serverLog.logTo(path, textFile, self.debug)
            return ""

        def failed(failure):
            failure.trap(OSError)
            raise CommandError(f"cannot write {path}: {failure.value.strerror}")

        return d.addCallbacks(opened, failed)


class DebugLogOn(LogOn):
    name = "debuglog_on"
    usage = "--debuglog_on:file  Start debug logging"
    debug = True


class DebugLevel(ControlCommand):
    name = "debuglevel"
    usage = "--debuglevel:#  Set debug logging level"

    def __init__(self, serverLog=serverLog):
        super().__init__()
        self.serverLog = serverLog

    def run(self, arguments, context):
        self.serverLog.debugLevel = number(arguments, "debug level")
        return ""
