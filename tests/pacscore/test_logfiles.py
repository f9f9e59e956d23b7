"""Unit tests of pacscore.logfiles: what the TroubleLog and UserLog files
get, in which form, while their service runs, and which files dicom.ini
asks for."""

import errno
import os
import time

from twisted.logger import LogLevel, LogPublisher, Logger, capturedLogs, formatEvent, globalLogPublisher
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.config.loader import Configuration
from pacscore.logfiles import FileObservation, LogFile, logFiles, troubleLine, userEvents, userLine

WHEN = time.mktime((2025, 1, 6, 9, 5, 3, 0, 0, -1))
CONQUEST_TIME = r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \d{4} "


class LogFileTests(unittest.TestCase):

    def setUp(self):
        self.publisher = LogPublisher()
        self.log = Logger(namespace="pacscore.dicom.protocol", observer=self.publisher)
        self.path = os.path.abspath(self.mktemp())

    def lines(self):
        with open(self.path, encoding="utf-8") as f:
            return f.read().splitlines()

    def test_troubleLogGetsWarningsAndErrorsWhileRunning(self):
        [trouble, _] = logFiles(self.configuration(TroubleLog=self.path), self.publisher)
        self.log.warn("before the start")
        trouble.startService()
        self.log.info("{peer}: association released", peer="STORESCU")
        self.log.warn("{peer}: association rejected", peer="STORESCU")
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("storing {uid} failed", uid="1.2.3")
        trouble.stopService()
        self.log.error("after the stop")
        lines = self.lines()
        self.assertEqual([line[25:] for line in lines],
                         ["*** STORESCU: association rejected", "*** storing 1.2.3 failed: division by zero"])
        for line in lines:
            self.assertRegex(line, CONQUEST_TIME)
        self.assertIsNone(trouble.observation)

    def test_userLogGetsOperationsOfUserEvents(self):
        [_, user] = logFiles(self.configuration(UserLog=self.path), self.publisher)
        user.startService()
        self.addCleanup(user.stopService)
        self.log.warn("not an operation")
        Logger(observer=userEvents).info("{callingAE}: C-STORE", operation="C-STORE", callingAE="STORESCU")
        self.assertEqual([line[25:] for line in self.lines()], ['"C-Store","STORESCU        "'])

    def test_lineForms(self):
        self.assertEqual(userLine({"log_time": WHEN, "operation": "C-MOVE", "callingAE": "MOVESCU"}),
                         'Mon Jan  6 09:05:03 2025 "C-Move ","MOVESCU         "\n')
        self.assertEqual(troubleLine({"log_time": WHEN, "log_format": "{n} failed", "n": 2}),
                         "Mon Jan  6 09:05:03 2025 *** 2 failed\n")

    def test_appendsToAnExistingFile(self):
        with open(self.path, "w", encoding="utf-8") as f:
            f.write("Sun Jan  5 10:00:00 2025 *** of the run before\n")
        logFile = LogFile("TroubleLog", self.path, self.publisher, troubleLine)
        logFile.startService()
        self.log.error("now")
        logFile.stopService()
        self.assertEqual([line[25:] for line in self.lines()], ["*** of the run before", "*** now"])

    def test_unwritableFileIsLoggedAndSkipped(self):
        path = os.path.join(self.mktemp(), "trouble.log")
        logFile = LogFile("TroubleLog", path, self.publisher, troubleLine)
        with capturedLogs() as events:
            logFile.startService()
        logFile.stopService()
        self.assertEqual([formatEvent(e) for e in events],
                         [f"cannot write the TroubleLog file {path}: No such file or directory; it is not written"])
        self.assertIsNone(logFile.observation)

    def test_pipeIsLoggedAndSkipped(self):
        """A TroubleLog that is a FIFO is not written (its open waited for a
        reader at start-up, its writes for the reader on the reactor's thread)."""
        path = os.path.abspath(self.mktemp())
        os.mkfifo(path)
        logFile = LogFile("TroubleLog", path, self.publisher, troubleLine)
        with capturedLogs() as events:
            logFile.startService()
        logFile.stopService()
        [message] = [formatEvent(e) for e in events]
        self.assertTrue(message.startswith(f"cannot write the TroubleLog file {path}: not a regular file"), message)
        self.assertIsNone(logFile.observation)

    def test_fullDiskWarnsOnceAndStopsQuietly(self):
        """A log file on a full disk (/dev/full, opened as a file on one
        would be: LogFile refuses a device) drops its lines with one
        warning, which it observes itself without writing it or warning
        again, and raises no error: no critical event for the error mail."""
        if not os.path.exists("/dev/full"):
            raise unittest.SkipTest("no /dev/full")
        log = Logger(namespace="pacscore.storage")
        with capturedLogs() as events:
            observation = FileObservation(globalLogPublisher, open("/dev/full", "ab", buffering=0),
                                          formatEvent=troubleLine)
            for n in range(3):
                log.warn("store {n} refused", n=n)
            observation.end()
        self.assertCountEqual([(e["log_level"], formatEvent(e)) for e in events if e["log_level"] >= LogLevel.warn],
                              [(LogLevel.warn, "store 0 refused"),
                               (LogLevel.warn, "cannot write the log file /dev/full: [Errno 28] No space left on "
                                               "device; its lines are dropped until it can be written again"),
                               (LogLevel.warn, "store 1 refused"), (LogLevel.warn, "store 2 refused")])

    def test_failingWritesWarnAgainOnlyAfterOneWorked(self):
        """Each line that cannot be written is dropped and the next tried;
        a failure warns again only once a line was written since the last
        warning; an error closing the file is a warning too."""
        logFile = FailingFile([None, OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EIO, "EIO"),
                               None, ValueError("I/O operation on closed file"), None])
        observation = FileObservation(self.publisher, logFile, formatEvent=lambda event: f"{event['n']}\n")
        with capturedLogs() as events:
            for n in range(6):
                self.publisher({"n": n})
            observation.end()
        self.assertEqual(logFile.data, b"0\n3\n5\n")
        self.assertEqual([formatEvent(e) for e in events],
                         ["cannot write the log file trouble.log: [Errno 28] No space left on device; its lines "
                          "are dropped until it can be written again",
                          "cannot write the log file trouble.log: I/O operation on closed file; its lines are "
                          "dropped until it can be written again",
                          "cannot close the log file trouble.log: [Errno 5] EIO"])

    def configuration(self, **keys):
        workdir = os.path.abspath(self.mktemp())
        text = "".join(f"{key} = {value}\n" for key, value in keys.items())
        return Configuration(DicomIni.fromString("[sscscp]\n" + text), None, None, None, workdir, workdir,
                             os.path.join(workdir, "dicom.ini"))

    def test_filesDicomIniAsksFor(self):
        configuration = self.configuration()
        self.assertEqual([(f.key, f.path) for f in logFiles(configuration)],
                         [("TroubleLog", os.path.join(configuration.workdir, "PacsTrouble.log")),
                          ("UserLog", os.path.join(configuration.workdir, "PacsUser.log"))])
        configuration = self.configuration(TroubleLog="logs/trouble.log", UserLog="")
        self.assertEqual([(f.key, f.path) for f in logFiles(configuration)],
                         [("TroubleLog", os.path.join(configuration.workdir, "logs", "trouble.log"))])


class FailingFile:
    """A log file whose writes raise the errors it is given in turn (None:
    the write works, one byte at a time, as a short write would)."""

    name = "trouble.log"

    def __init__(self, errors):
        self.errors = errors
        self.data = b""

    def write(self, data):
        error = self.errors[0]
        if error is not None:
            self.errors.pop(0)
            raise error
        self.data += data[:1]
        if len(data) == 1:
            self.errors.pop(0)
        return 1

    def close(self):
        raise OSError(errno.EIO, "EIO")
