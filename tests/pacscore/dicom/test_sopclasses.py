"""Tests for pacscore.dicom.sopclasses."""

from twisted.trial import unittest

from pacscore.dicom.sopclasses import isStorageClass

CURRENT = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.88.33")
# Retired storage classes the shipped dgatesop.lst enables: US, NM, US
# multi-frame, Standalone Overlay, Curve, Modality LUT, VOI LUT, XA Bi-Plane,
# VL Image and Multi-frame Trial, Standalone PET Curve, Stored Print,
# Hardcopy Grayscale and Colour.
RETIRED = ("1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.5", "1.2.840.10008.5.1.4.1.1.3",
           "1.2.840.10008.5.1.4.1.1.8", "1.2.840.10008.5.1.4.1.1.9", "1.2.840.10008.5.1.4.1.1.10",
           "1.2.840.10008.5.1.4.1.1.11", "1.2.840.10008.5.1.4.1.1.12.3", "1.2.840.10008.5.1.4.1.1.77.1",
           "1.2.840.10008.5.1.4.1.1.77.2", "1.2.840.10008.5.1.4.1.1.129", "1.2.840.10008.5.1.1.27",
           "1.2.840.10008.5.1.1.29", "1.2.840.10008.5.1.1.30")
PRIVATE = ("1.2.840.113619.4.26", "1.2.46.670589.5.0.1", "1.2.840.10008.5.1.4.1.1.12")
# Verification, Study Root FIND and GET, worklist, Storage Commitment Push
# and (retired) Pull, MPPS, Detached Patient Management, a Print Management
# Meta SOP class, Basic Film Session, and a transfer syntax.
NOT_STORAGE = ("1.2.840.10008.1.1", "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.3",
               "1.2.840.10008.5.1.4.31", "1.2.840.10008.1.20.1", "1.2.840.10008.1.20.2", "1.2.840.10008.3.1.2.3.3",
               "1.2.840.10008.3.1.2.1.1", "1.2.840.10008.5.1.1.9", "1.2.840.10008.5.1.1.1", "1.2.840.10008.1.2")


class IsStorageClassTests(unittest.TestCase):

    def test_currentStorageClasses(self):
        for uid in CURRENT:
            self.assertTrue(isStorageClass(uid), uid)

    def test_retiredStorageClasses(self):
        for uid in RETIRED:
            self.assertTrue(isStorageClass(uid), uid)

    def test_classesNobodyKnowsAreStorage(self):
        for uid in PRIVATE:
            self.assertTrue(isStorageClass(uid), uid)

    def test_otherServices(self):
        for uid in NOT_STORAGE:
            self.assertFalse(isStorageClass(uid), uid)
