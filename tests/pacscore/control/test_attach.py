"""Tests for pacscore.control.attach: the sample an object is attached to,
read from its file."""

from twisted.trial import unittest

from pacscore.control.attach import _sample
from pacscore.converters.saving import writePart10
from pacscore.dicom.sinks import MEMORY_LIMIT
from pacscore.storage.attributes import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN as DEFLATED
from pacscore.testing.corpus import makeDataset


def largeDeflated(path):
    """A deflated Part-10 file at ``path`` whose data set inflates past
    ``MEMORY_LIMIT`` (an identifier's bound)."""
    dataset = makeDataset("PAT1", "Test^One", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1)
    dataset.add_new(0x00091001, "OB", bytes(MEMORY_LIMIT + 2))
    writePart10(dataset, path, DEFLATED)
    return path


class SampleTests(unittest.TestCase):

    def test_largeDeflatedSample(self):
        """A stored object deflated is inflated whole, however large: the
        bound of a peer's identifier is not a stored object's."""
        sample = _sample(largeDeflated(self.mktemp()))
        self.assertEqual((sample.PatientID, len(sample[0x00091001].value)), ("PAT1", MEMORY_LIMIT + 2))
