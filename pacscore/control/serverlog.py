"""Control commands on the server log (manual appendix 6, logging options):
``log_on:file``, ``debuglog_on:file``, ``debuglevel:#``.

The server always logs where twistd sends its log.  ``log_on:file`` also
writes every event from level info up to FILE (appended; relative to the
working folder); ``debuglog_on:file`` does the same including debug
events; either replaces the file of the one before, and ``log_on:`` with
no file stops writing to it.  Logging to a UDP port, which Conquest
also offers, is not supported.

``debuglevel:#`` sets Conquest's debug level (0 ordinary debug events, 1
also DIMSE command dumps, 2 also query identifiers; see
pacscore.debuglog), which dicom.ini's ``DebugLevel`` sets at start-up.
"""

from pacscore.control.arguments import ControlCommand, number
from pacscore.control.context import CommandError
from pacscore.control.output import outputPath
from pacscore.debuglog import serverLog
from pacscore.logfiles import openLogFile


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
        path = outputPath(context, target)
        d = context.archive.workers.deferToWorker(openLogFile, path)

        def opened(logFile):
            self.serverLog.logTo(path, logFile, self.debug)
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
