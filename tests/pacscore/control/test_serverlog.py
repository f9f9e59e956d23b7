"""The logging control commands (log_on, debuglog_on, debuglevel) on a
private log publisher, and get_freestore and testmode on a real Archive."""

import os
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger, LogPublisher
from twisted.trial import unittest

from pacscore import debuglog
from pacscore.control import devices, serverlog
from pacscore.control.context import CommandError
from tests.pacscore.control.running import RunningArchive


class LoggingCommandTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive
        self.publisher = LogPublisher()
        self.log = Logger(namespace="test", observer=self.publisher)
        self.serverLog = debuglog.ServerLog(self.publisher)
        self.addCleanup(self.serverLog.stop)
        self.logOn = serverlog.LogOn(self.serverLog)
        self.debugLogOn = serverlog.DebugLogOn(self.serverLog)
        self.debugLevel = serverlog.DebugLevel(self.serverLog)

    def emit(self, tag):
        self.log.info("info {tag}", tag=tag)
        self.log.debug("debug {tag}", tag=tag)
        self.log.debug("detail {tag}", tag=tag, debugLevel=3)

    @defer.inlineCallbacks
    def test_logOnWritesInfoNotDebug(self):
        self.assertEqual((yield self.running.run(self.logOn, "server.log")), "")
        path = os.path.join(self.archive.configuration.workdir, "server.log")
        self.emit("one")
        yield self.running.run(self.logOn, "")
        self.emit("two")
        text = Path(path).read_text()
        self.assertIn("info one", text)
        self.assertNotIn("debug one", text)
        self.assertNotIn("two", text)

    @defer.inlineCallbacks
    def test_debugLogAndLevels(self):
        path = os.path.join(self.archive.configuration.workdir, "logs", "debug.log")
        os.makedirs(os.path.dirname(path))
        yield self.running.run(self.debugLogOn, path)
        self.emit("one")
        yield self.running.run(self.debugLevel, "3")
        self.emit("two")
        yield self.running.run(self.debugLevel, "0")
        self.emit("three")
        self.serverLog.stop()
        text = Path(path).read_text()
        for line in ("info one", "debug one", "debug two", "detail two", "info three", "debug three"):
            self.assertIn(line, text)
        for line in ("detail one", "detail three"):
            self.assertNotIn(line, text)

    @defer.inlineCallbacks
    def test_newFileReplacesOld(self):
        workdir = self.archive.configuration.workdir
        yield self.running.run(self.logOn, "first.log")
        yield self.running.run(self.logOn, "second.log")
        self.emit("one")
        self.serverLog.stop()
        self.assertNotIn("info one", Path(os.path.join(workdir, "first.log")).read_text())
        self.assertIn("info one", Path(os.path.join(workdir, "second.log")).read_text())

    @defer.inlineCallbacks
    def test_pipeRefused(self):
        """``log_on:`` of a FIFO is refused at once, reader or not: a reader
        that stalls made the reactor's log writes block (the whole server
        hung), and with no reader the open held an I/O worker for good."""
        fifo = os.path.join(self.archive.configuration.workdir, "fifo")
        os.mkfifo(fifo)
        error = yield self.assertFailure(self.running.run(self.logOn, "fifo"), CommandError)
        self.assertIn(f"cannot write {fifo}: not a regular file (a pipe", str(error))
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        yield self.assertFailure(self.running.run(self.debugLogOn, fifo), CommandError)
        self.assertIsNone(self.serverLog.path)

    @defer.inlineCallbacks
    def test_refusals(self):
        yield self.assertFailure(self.running.run(self.logOn, "1111"), CommandError)
        yield self.assertFailure(self.running.run(self.logOn, "no/such/folder/x.log"), CommandError)
        yield self.assertFailure(self.running.run(self.debugLevel, "high"), CommandError)
        self.assertEqual(self.serverLog.debugLevel, 0)


class DeviceCommandTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)
        self.archive = self.running.archive

    @defer.inlineCallbacks
    def test_getFreestore(self):
        path = self.archive.devices[0].path
        stats = os.statvfs(path)
        expected = stats.f_bavail * stats.f_frsize // (1 << 20)
        free = int((yield self.running.run(devices.GetFreeStore(), "MAG0")))
        self.assertLess(abs(free - expected), 64)
        self.assertEqual((yield self.running.run(devices.GetFreeStore(), "mag0,%d MB")).split()[1], "MB")
        yield self.assertFailure(self.running.run(devices.GetFreeStore(), "MAG7"), CommandError)

    @defer.inlineCallbacks
    def test_testmode(self):
        attrs = {0x00100020: "PAT1", 0x00080018: "1.2.3"}
        plain = self.archive.namer.name(attrs)
        yield self.running.run(devices.SetTestMode(), ".1")
        self.assertTrue(self.archive.namer.name(attrs).endswith(".1"))
        yield self.running.run(devices.SetTestMode(), "")
        self.assertNotIn(".1", self.archive.namer.name(attrs)[len(plain) - 8:])
        yield self.assertFailure(self.running.run(devices.SetTestMode(), "../x"), CommandError)

    @defer.inlineCallbacks
    def test_testmodeTextIsShort(self):
        error = yield self.assertFailure(self.running.run(devices.SetTestMode(), "A" * 33), CommandError)
        self.assertIn("at most 32 characters", str(error))
        self.assertEqual(self.archive.namer.testMode, "")
        yield self.running.run(devices.SetTestMode(), "A" * 32)
        self.assertEqual(self.archive.namer.testMode, "A" * 32)
