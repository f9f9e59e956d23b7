"""The C-MOVE destination harnesses of ``tests.interop.peers`` work:
Orthanc and DCMTK's storescp receive what DCMTK's storescu sends them, and
their Implicit-VR-Little-Endian-only variants make a sender convert, or
refuse the association when it cannot."""

import os
import socket

import pydicom
from pydicom.data import get_testdata_file
from twisted.trial import unittest

from tests.interop.peers import OrthancServer, StorescpServer
from tests.interop.server import dcmtk

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"

CT = get_testdata_file("CT_small.dcm")  # CT Image Storage, Explicit VR Little Endian
JPEG = get_testdata_file("SC_rgb_jpeg_gdcm.dcm")  # Secondary Capture, JPEG Lossless SV1

# A storescu association profile (``-xf FILE PROFILE``) proposing exactly one
# transfer syntax for CT and Secondary Capture: storescu's -x options always
# add the uncompressed syntaxes, Implicit VR Little Endian among them.
STORESCU_PROFILES = r"""
[[TransferSyntaxes]]
[ExplicitLE]
TransferSyntax1 = LittleEndianExplicit
[JPEGLossless]
TransferSyntax1 = JPEGLossless:Non-hierarchical-1stOrderPrediction

[[PresentationContexts]]
[ExplicitLE]
PresentationContext1 = CTImageStorage\ExplicitLE
PresentationContext2 = SecondaryCaptureImageStorage\ExplicitLE
[JPEGLossless]
PresentationContext1 = CTImageStorage\JPEGLossless
PresentationContext2 = SecondaryCaptureImageStorage\JPEGLossless

[[Profiles]]
[ExplicitLE]
PresentationContexts = ExplicitLE
[JPEGLossless]
PresentationContexts = JPEGLossless
"""


def uid(path):
    return pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


class PeerTestCase(unittest.TestCase):

    def profile(self, name):
        """storescu options proposing only the profile ``name``."""
        path = self.mktemp() + ".cfg"
        with open(path, "w") as f:
            f.write(STORESCU_PROFILES)
        return ("-xf", path, name)

    def decompressed(self, path):
        """``path`` decompressed by DCMTK's dcmdjpeg (Explicit VR LE)."""
        target = self.mktemp() + ".dcm"
        dcmtk("dcmdjpeg", path, target, check=True)
        return target

    def assertStored(self, result):
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def assertRefused(self, result):
        self.assertNotEqual(result.returncode, 0, result.stdout + result.stderr)


class OrthancTests(PeerTestCase):

    def startOrthanc(self, **kwargs):
        orthanc = OrthancServer(self.mktemp(), **kwargs)
        self.addCleanup(orthanc.kill)
        return orthanc.start()

    def test_echoStoreReadReset(self):
        orthanc = self.startOrthanc()
        self.assertStored(orthanc.echo())
        self.assertStored(orthanc.store(CT))
        self.assertStored(orthanc.store(JPEG, extra=("-xs",)))
        self.assertEqual(orthanc.instances(), sorted([uid(CT), uid(JPEG)]))
        self.assertEqual(orthanc.transferSyntaxOf(uid(CT)), EXPLICIT)
        self.assertEqual(orthanc.transferSyntaxOf(uid(JPEG)), JPEG_LOSSLESS_SV1)
        stored = orthanc.dataset(uid(CT))
        self.assertEqual(stored.file_meta.TransferSyntaxUID, EXPLICIT)
        self.assertEqual(stored.PixelData, pydicom.dcmread(CT).PixelData)
        self.assertEqual(orthanc.instanceBytes(uid(JPEG))[128:132], b"DICM")
        orthanc.reset()
        self.assertEqual(orthanc.instances(), [])
        with self.assertRaises(KeyError):
            orthanc.transferSyntaxOf(uid(CT))

    def test_implicitOnly(self):
        orthanc = self.startOrthanc(acceptedSyntaxes="implicit")
        self.assertEqual(orthanc.rest("/tools/accepted-transfer-syntaxes"), [IMPLICIT])
        result = orthanc.store(CT, extra=self.profile("ExplicitLE"))
        self.assertRefused(result)
        self.assertIn("No Acceptable Presentation Contexts", result.stderr)
        self.assertRefused(orthanc.store(JPEG, extra=("-xs",)))  # storescu cannot decompress
        self.assertEqual(orthanc.instances(), [])
        self.assertStored(orthanc.store(CT))
        self.assertStored(orthanc.store(self.decompressed(JPEG)))
        self.assertEqual(orthanc.instances(), sorted([uid(CT), uid(JPEG)]))
        self.assertEqual(orthanc.transferSyntaxOf(uid(CT)), IMPLICIT)
        self.assertEqual(orthanc.transferSyntaxOf(uid(JPEG)), IMPLICIT)

    def test_restartKeepsInstances(self):
        workdir = self.mktemp()
        with OrthancServer(workdir) as orthanc:
            self.assertStored(orthanc.store(CT))
        self.assertFalse(orthanc.running)
        again = OrthancServer(workdir)
        self.addCleanup(again.kill)
        again.start()
        self.assertEqual(again.instances(), [uid(CT)])

    def test_modalities(self):
        """Orthanc C-ECHOes and C-STOREs to a modality given to __init__."""
        storescp = StorescpServer(self.mktemp(), aet="DEST")
        self.addCleanup(storescp.kill)
        storescp.start()
        orthanc = self.startOrthanc(modalities={"DEST": ("127.0.0.1", storescp.port)})
        self.assertStored(orthanc.store(CT))
        orthanc.rest("/modalities/DEST/echo", "POST", {})
        orthanc.rest("/modalities/DEST/store", "POST", {"Resources": [orthanc.instanceId(uid(CT))],
                                                         "Synchronous": True})
        self.assertEqual([ds.SOPInstanceUID for ds in storescp.datasets()], [uid(CT)])

    def test_startFailureShowsLog(self):
        orthanc = OrthancServer(self.mktemp())
        self.addCleanup(orthanc.kill)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", orthanc.port))
            taken.listen()
            error = self.assertRaises(AssertionError, orthanc.start)
        self.assertIn("Orthanc exited", str(error))
        self.assertIn(str(orthanc.port), str(error))


class StorescpTests(PeerTestCase):

    def startStorescp(self, **kwargs):
        storescp = StorescpServer(self.mktemp(), **kwargs)
        self.addCleanup(storescp.stop)
        return storescp.start()

    def test_receivesEverySyntaxUnchanged(self):
        storescp = self.startStorescp()
        self.assertStored(storescp.echo())
        self.assertStored(storescp.store(CT))
        self.assertStored(storescp.store(JPEG, extra=("-xs",)))
        self.assertStored(storescp.store(CT))
        self.assertEqual(len(storescp.files()), 3, "+uf: each copy received is a file of its own")
        received = {(ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID) for ds in storescp.datasets()}
        self.assertEqual(received, {(uid(CT), EXPLICIT), (uid(JPEG), JPEG_LOSSLESS_SV1)})
        storescp.reset()
        self.assertEqual(storescp.files(), [])

    def test_implicitOnly(self):
        storescp = self.startStorescp(acceptedSyntaxes="implicit")
        self.assertIn("+xi", storescp.command())
        result = storescp.store(CT, extra=self.profile("ExplicitLE"))
        self.assertRefused(result)
        self.assertIn("No Acceptable Presentation Contexts", result.stderr)
        self.assertRefused(storescp.store(JPEG, extra=self.profile("JPEGLossless")))
        self.assertRefused(storescp.store(JPEG, extra=("-xs",)))  # storescu cannot decompress
        self.assertEqual(storescp.files(), [])
        self.assertStored(storescp.store(CT))
        [ds] = storescp.datasets()
        self.assertEqual(ds.SOPInstanceUID, uid(CT))
        self.assertEqual(ds.file_meta.TransferSyntaxUID, IMPLICIT)
        self.assertEqual(ds.PixelData, pydicom.dcmread(CT).PixelData)

    def test_uncompressedOnly(self):
        storescp = self.startStorescp(acceptedSyntaxes="uncompressed")
        self.assertRefused(storescp.store(JPEG, extra=("-xs",)))
        self.assertStored(storescp.store(CT))
        self.assertEqual([ds.file_meta.TransferSyntaxUID for ds in storescp.datasets()], [EXPLICIT])

    def test_contextManagerStops(self):
        with StorescpServer(self.mktemp()) as storescp:
            self.assertStored(storescp.echo())
        self.assertFalse(storescp.running)
        self.assertTrue(os.path.exists(storescp.logPath))
