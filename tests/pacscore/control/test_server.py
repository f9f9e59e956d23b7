"""display_status (text, json, file), quit, forwardqueue and retryforwards
on a real Archive."""

import json
import os
import time

from twisted.internet import defer, task
from twisted.trial import unittest

from pacscore.control.context import CommandError, ControlContext
from pacscore.control.queue import ForwardQueue, RetryForwards
from pacscore.control.server import DisplayStatus, Quit
from pacscore.control.status import STARTING_COUNTERS
from tests.pacscore.control.running import RunningArchive


class DisplayStatusTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self, ini={"MaximumExportRetries": "1"})
        self.archive = self.running.archive
        self.archive.counters.update({"associationsActive": 2, "associationsTotal": 7, "imagesReceived": 40,
                                      "C-MOVEObjects": 5, "C-GETObjects": 3, "forwardsSent": 4, "queries": 9,
                                      "queryTime": 0.25, "storeTime": 1.5, "hl7Messages": 11})
        self.archive.exportQueue.addForward("ELSEWHERE", "IMAGE", ("p", "st", "se", "sop"))

    @defer.inlineCallbacks
    def test_json(self):
        status = json.loads((yield self.running.run(DisplayStatus(), "json")))
        self.assertEqual(status["associations"], {"active": 2, "total": 7})
        self.assertEqual(status["images"], {"received": 40, "sent": 8, "forwarded": 4})
        self.assertEqual(status["time"], {"query": 0.25, "worklistQuery": 0, "store": 1.5})
        self.assertEqual(status["counters"]["hl7Messages"], 11)
        self.assertEqual(set(self.archive.counters) | set(STARTING_COUNTERS), set(status["counters"]))
        self.assertEqual(status["queues"]["destinations"]["ELSEWHERE"]["pending"], 1)
        self.assertEqual(status["server"]["aeTitle"], "PACS")
        self.assertGreaterEqual(status["server"]["uptime"], 0)
        [device] = status["devices"]
        self.assertEqual(device["name"], "MAG0")
        self.assertGreater(device["freeMB"], 0)

    @defer.inlineCallbacks
    def test_startTimeIsTheTimeOfDayUptimeOfTheReactor(self):
        """The reactor's clock is monotonic (pacscore.reactorclock), not the
        time of day: the start time is of the wall clock, the uptime of the
        reactor's."""
        self.running.context.reactor = task.Clock()
        self.running.context.reactor.advance(1012.5)
        self.archive.startTime, self.archive.startedAt = 1796595230, 1000
        status = json.loads((yield self.running.run(DisplayStatus(), "json")))
        self.assertEqual(status["server"]["startTime"],
                         time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(1796595230)))
        self.assertEqual(status["server"]["uptime"], 12.5)

    @defer.inlineCallbacks
    def test_text(self):
        text = yield self.running.run(DisplayStatus())
        self.assertIn("DICOM server 'PACS'", text)
        self.assertIn("Associations: 2 active, 7 since start", text)
        self.assertIn("Images received=40, sent=8, forwarded=4", text)
        self.assertIn("query 0.250", text)
        self.assertIn("to ELSEWHERE: 1 pending, 0 failed", text)
        self.assertRegex(text, r"Space on MAG0 \(.*\): \d+ of \d+ MByte free")
        for name, value in self.archive.counters.items():
            self.assertIn(f"  {name} = {value}", text)

    @defer.inlineCallbacks
    def test_toAFile(self):
        output = yield self.running.run(DisplayStatus(), "status.txt")
        self.assertEqual(output, "")
        with open(os.path.join(self.running.workdir, "status.txt")) as f:
            self.assertIn("Images received=40", f.read())

    def test_unwritableFile(self):
        d = self.running.run(DisplayStatus(), "/no/such/folder/status.txt")
        return self.assertFailure(d, CommandError)


class QuitTests(unittest.TestCase):

    def test_startsStoppingAndAnswers(self):
        calls = []
        context = ControlContext(None, None, quit=lambda: calls.append(1) or defer.Deferred())
        self.assertIn("stopping", Quit().run("", context))
        self.assertEqual(calls, [1])

    def test_notAvailable(self):
        self.assertRaises(CommandError, Quit().run, "", ControlContext(None, None))


class QueueCommandTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.running = RunningArchive(self, ini={"MaximumExportRetries": "1"})
        queue = self.running.archive.exportQueue
        for destination in ("DOWN", "OTHER"):
            queue.addForward(destination, "IMAGE", ("p", "st", "se", destination))
        down = [action for action in queue.due(queue.clock(), 10) if action.destination == "DOWN"][0]
        for _ in range(2):  # the first attempt and its one retry
            yield queue.markFailed(down.id, "connection refused", queue.clock())

    @defer.inlineCallbacks
    def test_forwardQueue(self):
        lines = (yield self.running.run(ForwardQueue())).splitlines()
        self.assertEqual(lines[0], "export jobs: 0 pending, 0 failed")
        self.assertIn("DOWN: 0 pending, 1 failed", lines)
        self.assertIn("OTHER: 1 pending, 0 failed", lines)
        self.assertRegex(lines[-1], r"failed: #\d+ forward IMAGE to DOWN after 2 attempts: connection refused")

    @defer.inlineCallbacks
    def test_retryForwards(self):
        self.assertEqual((yield self.running.run(RetryForwards(), "OTHER")),
                         "0 failed item(s) put back in the queue")
        self.assertEqual((yield self.running.run(RetryForwards(), "DOWN")),
                         "1 failed item(s) put back in the queue")
        self.assertIn("DOWN: 1 pending, 0 failed", (yield self.running.run(ForwardQueue())))
