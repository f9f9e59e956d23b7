"""Unit tests of pacscore.storage.prefetcher: which patient a query is
about, batches read in the I/O pool, replaced by another patient's
prefetch, stopped between batches."""

from types import SimpleNamespace

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.db.query import PATIENT_ID, QueryKey
from pacscore.storage.prefetcher import BATCH, Prefetcher, queriedPatient


class HeldWorkers:
    """An I/O pool whose calls wait until ``release`` runs them."""

    def __init__(self):
        self.held = []

    def deferToWorker(self, f, *args):
        d = defer.Deferred()
        self.held.append((f, args, d))
        return d

    def release(self):
        f, args, d = self.held.pop(0)
        d.callback(f(*args))


class QueriedPatientTests(unittest.TestCase):

    def test_thePatientKeyOrTheMatches(self):
        key = lambda value: QueryKey(PATIENT_ID, "LO", value)  # noqa: E731
        self.assertEqual(queriedPatient([key("PAT1")], []), "PAT1")
        for wildcard in ("PAT*", "P?T1", "PAT1\\PAT2", ""):
            self.assertIsNone(queriedPatient([key(wildcard)], [{PATIENT_ID: "A"}, {PATIENT_ID: "B"}]), wildcard)
        self.assertEqual(queriedPatient([key("*")], [{PATIENT_ID: "A"}, {PATIENT_ID: "A"}]), "A")
        self.assertIsNone(queriedPatient([], []))
        self.assertIsNone(queriedPatient([], [{PATIENT_ID: ""}]))


class PrefetcherTests(unittest.TestCase):

    def setUp(self):
        self.read = []
        self.instances = {"PAT1": [f"1.{n}" for n in range(BATCH * 2 + 1)], "PAT2": ["2.1"]}
        index = SimpleNamespace(runQuery=lambda f, level, keys: defer.succeed(f(None, level, keys)))
        query = SimpleNamespace(instances=lambda connection, level, keys: self.instances[keys[0].value])
        reader = SimpleNamespace(readAll=lambda batch: self.read.extend(batch) or len(batch))
        self.workers = HeldWorkers()
        self.prefetcher = Prefetcher(index, query, reader, self.workers)

    def test_readInBatches(self):
        d = self.prefetcher.start("PAT1")
        for _ in range(3):
            self.workers.release()
        self.assertEqual(self.successResultOf(d), BATCH * 2 + 1)
        self.assertEqual(self.read, self.instances["PAT1"])
        self.assertIsNone(self.prefetcher.running)

    def test_stoppedBetweenBatches(self):
        d = self.prefetcher.start("PAT1")
        self.workers.release()
        self.prefetcher.stop("a C-MOVE of 5 objects")
        self.workers.release()  # the batch under way ends; no other starts
        self.assertEqual(self.successResultOf(d), BATCH * 2)
        self.assertEqual(self.workers.held, [])

    def test_anotherPatientReplacesIt(self):
        first = self.prefetcher.start("PAT1")
        self.assertEqual(self.successResultOf(self.prefetcher.start("PAT1")), 0)  # under way already
        second = self.prefetcher.start("PAT2")
        self.workers.release()
        self.workers.release()
        self.assertEqual(self.successResultOf(first), BATCH)
        self.assertEqual(self.successResultOf(second), 1)
        self.assertEqual(self.workers.held, [])
