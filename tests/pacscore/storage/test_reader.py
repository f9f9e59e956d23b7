"""Finding stored objects without the index (pacscore.storage.reader's
``instancesAt``, for the NULL driver's forwards)."""

import os

from twisted.trial import unittest

from pacscore.db.query import Instance
from pacscore.export.queue import Target
from pacscore.storage.devices import MagDevice
from pacscore.storage.reader import Missing, ObjectReader
from tests.pacscore.storage.test_mirror import dicomBytes

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
TARGET = Target("P", "1", "1.1", "1.1.3")


class InstancesAtTests(unittest.TestCase):

    def setUp(self):
        self.mag0 = MagDevice("MAG0", self.mktemp())
        self.mag1 = MagDevice("MAG1", self.mktemp())
        self.reader = ObjectReader([self.mag0, self.mag1])

    def write(self, device, relative, content):
        path = device.absolute(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def test_fileOnADevice(self):
        path = self.write(self.mag1, "P/1.1_3.dcm", dicomBytes(3))
        [instance] = self.reader.instancesAt(path, TARGET)
        self.assertEqual(instance, Instance("1.1.3", CT_IMAGE_STORAGE, "MAG1", "P/1.1_3.dcm", "P", "1", "1.1"))
        [stored] = self.reader.locate([instance])
        self.assertEqual((stored.path, stored.sopClassUID), (path, CT_IMAGE_STORAGE))

    def test_goneFileIsMissingWhenLocated(self):
        path = self.mag0.absolute("P/gone.dcm")
        [instance] = self.reader.instancesAt(path, TARGET)
        self.assertEqual((instance.deviceName, instance.objectFile, instance.sopClassUID), ("MAG0", "P/gone.dcm", ""))
        [missing] = self.reader.locate([instance])
        self.assertIsInstance(missing, Missing)
        self.assertTrue(missing.gone)

    def test_fileOnNoDevice(self):
        outside = os.path.join(os.path.dirname(self.mag0.path.rstrip(os.sep)), "elsewhere", "x.dcm")
        self.assertEqual(self.reader.instancesAt(outside, TARGET), [])
