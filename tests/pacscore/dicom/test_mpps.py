"""Unit tests of pacscore.dicom.mpps: the data sets of N-CREATE and N-SET."""

from types import SimpleNamespace

from pydicom.dataset import Dataset
from twisted.internet import defer, reactor
from twisted.trial import unittest

from pacscore.dicom.datasets import encodeDataset
from pacscore.dicom.mpps import MppsService
from tests.pacscore.dicom.requests import IMPLICIT, recordDecodes

MPPS = "1.2.840.10008.3.1.2.3.3"


class DecodeTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_decodedOffTheReactor(self):
        """An N-CREATE's or N-SET's data set (a big one decodes for seconds) is decoded in a worker."""
        decodes = recordDecodes(self, b"9.9.424242")
        step = Dataset()
        step.PatientID = "9.9.424242"
        protocol = SimpleNamespace(association=SimpleNamespace(contexts={1: (MPPS, IMPLICIT)}))
        service = MppsService(None, reactor)
        decoded = yield defer.ensureDeferred(service._decode(protocol, 1,
                                                             SimpleNamespace(data=encodeDataset(step, IMPLICIT))))
        self.assertEqual((decoded.PatientID, decodes), ("9.9.424242", [False]))
