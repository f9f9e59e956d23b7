"""Tests for pacscore.hangup: SIGHUP reopens twistd's log file and
re-reads dicom.ini, but stops a server in a terminal."""

import builtins
import os
import signal

from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from twisted.python.logfile import LogFile
from twisted.trial import unittest

from pacscore import hangup
from pacscore.hangup import Hangup
from tests.pacscore.test_stopsignals import SignalledReactor


class StartTests(unittest.TestCase):
    """What SIGHUP does is decided when the services start."""

    def setUp(self):
        self.reactor = SignalledReactor()
        self.addCleanup(signal.signal, signal.SIGTERM, signal.signal(signal.SIGTERM, self.reactor.sigTerm))
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        self.patch(hangup, "twistdLogFile", lambda: None)
        self.rereads = []

    def started(self, hasTerminal):
        Hangup(self.reactor, lambda: self.rereads.append(1) or defer.succeed("0 parameter(s) changed"),
               hasTerminal=hasTerminal).startService()

    def hangUp(self):
        """Deliver SIGHUP to its handler now; the log lines meanwhile."""
        with capturedLogs() as events:
            signal.getsignal(signal.SIGHUP)(signal.SIGHUP, None)
        return [formatEvent(event) for event in events]

    def test_withATerminalSighupStopsAsSigterm(self):
        """make run, twistd -n in a shell: the terminal hung up, and pacs
        stops through the SIGTERM handler rather than run on detached."""
        self.started(lambda: True)
        self.assertEqual(self.hangUp(), ["SIGHUP: the terminal hung up, stopping as at SIGTERM"])
        self.assertEqual(self.reactor.received, [signal.SIGTERM])
        self.assertEqual(self.rereads, [])

    def test_withoutATerminalSighupReloads(self):
        """Daemonized, under systemd: logrotate's postrotate, systemctl reload."""
        self.started(lambda: False)
        self.assertEqual(self.hangUp(), ["SIGHUP: re-reading dicom.ini", "SIGHUP: 0 parameter(s) changed"])
        self.assertEqual(self.reactor.received, [])
        self.assertEqual(self.rereads, [1])

    def test_anIgnoredSighupIsLeftIgnored(self):
        """Started under nohup: it asked for SIGHUP to do nothing."""
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.started(lambda: self.fail("no terminal to look for"))
        self.assertEqual(signal.getsignal(signal.SIGHUP), signal.SIG_IGN)


class ReloadTests(unittest.TestCase):

    def setUp(self):
        folder = self.mktemp()
        os.makedirs(folder)
        self.path = os.path.abspath(os.path.join(folder, "pacs.log"))
        self.logFile = LogFile.fromFullPath(self.path)
        self.addCleanup(lambda: self.logFile.closed or self.logFile.close())
        self.patch(hangup, "twistdLogFile", lambda: self.logFile)
        self.rereads = []
        self.hangup = Hangup(None, lambda: self.rereads.append(1) or defer.succeed("0 parameter(s) changed"))

    def reload(self):
        with capturedLogs() as events:
            self.hangup.reload()
        return [formatEvent(event) for event in events]

    def test_aRenamedLogIsReopened(self):
        os.rename(self.path, self.path + ".1")
        self.assertEqual(self.reload()[0], f"SIGHUP: {self.path} reopened, re-reading dicom.ini")
        self.logFile.write("after\n")
        with open(self.path) as f:
            self.assertEqual(f.read(), "after\n")
        self.assertEqual(self.rereads, [1])

    def test_aLogThatCannotBeOpenedKeepsTheOldOneAndStillRereads(self):
        """twistd made pacs.log as root before --uid took effect: the old
        file goes on getting the log, a warning says why, and dicom.ini is
        re-read all the same."""
        self.logFile.write("before\n")
        openFile = builtins.open

        def refused(path, *args, **kwargs):
            if path == self.path:
                raise PermissionError(13, "Permission denied", path)
            return openFile(path, *args, **kwargs)

        self.patch(builtins, "open", refused)
        lines = self.reload()
        self.assertEqual(lines, [f"SIGHUP: cannot reopen {self.path} (Permission denied): still writing to the file "
                                 "open before; the log file must be writable by the user pacs runs as (--uid)",
                                 "SIGHUP: re-reading dicom.ini", "SIGHUP: 0 parameter(s) changed"])
        self.logFile.write("after\n")
        with openFile(self.path) as f:
            self.assertEqual(f.read(), "before\nafter\n")
        self.assertEqual(self.rereads, [1])
