"""Tests for pacscore.web.metrics: the status in Prometheus' text format,
read back with prometheus_client's own parser."""

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from pacscore.control import status
from pacscore.web.metrics import exposition, metricName

STATUS = {
    "server": {"aeTitle": "PACS", "port": 5678, "startTime": "2026-12-03T10:00:00+0000", "uptime": 12.5},
    "counters": {"associationsActive": 2, "associationsTotal": 7, "imagesReceived": 40, "C-MOVEObjects": 3,
                 "hl7Errors": 1, "queryTime": 0.25, "exportJobsPending": 5, "forwardQueueByDestination": {"X": 1},
                 "lastError": "text is left out"},
    "queues": {"jobs": {"pending": 5, "failed": 1}, "actions": {"pending": 2, "failed": 0},
               "destinations": {'ODD "AE"\\': {"pending": 2, "failed": 0}}},
    "devices": [{"name": "MAG0", "path": "/data", "freeMB": 100, "totalMB": 400},
                {"name": "MIRROR0", "path": "/gone", "freeMB": None, "totalMB": None}],
}


class ExpositionTests(unittest.TestCase):

    def test_names(self):
        self.assertEqual([metricName(n) for n in ("imagesReceived", "C-MOVEObjects", "hl7Errors")],
                         ["pacs_images_received", "pacs_c_move_objects", "pacs_hl7_errors"])

    def test_parsedByPrometheus(self):
        families = {family.name: family for family in text_string_to_metric_families(exposition(STATUS))}
        samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                   for family in families.values() for sample in family.samples}
        self.assertEqual(families["pacs_associations_active"].type, "gauge")
        self.assertEqual(families["pacs_images_received"].type, "counter")
        expected = {
            ("pacs_up", (("ae", "PACS"),)): 1, ("pacs_uptime_seconds", ()): 12.5,
            ("pacs_associations_active", ()): 2, ("pacs_associations_total", ()): 7,
            ("pacs_images_received_total", ()): 40, ("pacs_c_move_objects_total", ()): 3,
            ("pacs_hl7_errors_total", ()): 1, ("pacs_query_seconds_total", ()): 0.25,
            ("pacs_export_jobs", (("state", "failed"),)): 1, ("pacs_export_jobs", (("state", "pending"),)): 5,
            ("pacs_forwards", (("destination", 'ODD "AE"\\'), ("state", "failed"))): 0,
            ("pacs_forwards", (("destination", 'ODD "AE"\\'), ("state", "pending"))): 2,
            ("pacs_device_free_bytes", (("device", "MAG0"),)): 100 << 20,
            ("pacs_device_size_bytes", (("device", "MAG0"),)): 400 << 20,
        }
        self.assertEqual(samples, expected)

    def test_everyCounterFromStartUp(self):
        """A server that has had no association yet shows every counter
        README lists at 0 (a counter first appearing at 1 loses that
        increment in Prometheus), the ones counted beside them."""
        archive = SimpleNamespace(
            aeTitle="PACS", tcpPort=5678, startTime=0, devices=[], counters={"imagesReceived": 3},
            mirrors=SimpleNamespace(devices={}, mirrored=()),
            workers=SimpleNamespace(deferToWorker=defer.maybeDeferred),
            exportQueue=SimpleNamespace(counts=lambda: {"jobs": {}, "actions": {}, "destinations": {}}))
        current = self.successResultOf(defer.ensureDeferred(status.gather(archive, Clock())))
        samples = {sample.name: sample.value for family in text_string_to_metric_families(exposition(current))
                   for sample in family.samples}
        for name in ("pacs_associations_active", "pacs_associations_total", "pacs_c_move_objects_total",
                     "pacs_move_command_objects_total", "pacs_forwards_sent_total", "pacs_hl7_errors_total",
                     "pacs_commitment_requests_total", "pacs_mpps_created_total", "pacs_query_seconds_total",
                     "pacs_store_seconds_total"):
            self.assertEqual(samples.get(name), 0, name)
        self.assertEqual(samples["pacs_images_received_total"], 3)
