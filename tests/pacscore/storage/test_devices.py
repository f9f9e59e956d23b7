"""MAG devices: where a stored file's relative name points."""

import os

from twisted.trial import unittest

from pacscore.storage.devices import MagDevice


class AbsoluteTests(unittest.TestCase):

    def setUp(self):
        self.device = MagDevice("MAG0", "/srv/pacs/data")

    def test_insideTheDevice(self):
        self.assertEqual(self.device.absolute("PAT1/1.2.3.dcm"), os.path.join(self.device.path, "PAT1", "1.2.3.dcm"))
        self.assertEqual(self.device.absolute("PAT1/../PAT2/x.dcm"), os.path.join(self.device.path, "PAT2", "x.dcm"))

    def test_refusesWhatLeavesTheDevice(self):
        for relative in ("../x.dcm", "PAT1/../../x.dcm", "../data2/x.dcm", "..", "", "."):
            error = self.assertRaises(ValueError, self.device.absolute, relative)
            self.assertIn("MAG0", str(error))
