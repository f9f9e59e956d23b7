"""Conquest's NKI private compression (n1..n4), downsizing (k1..kc) and
lossy JPEG (j3..j6) codes against real clients: a pacs storing with
IncomingCompression = n4,
its objects fetched with DCMTK getscu and moved with movescu to a DCMTK
storescp registered with "un" (they arrive decompressed), to one
registered with "n4" (a Conquest peer: they arrive NKI compressed) and to
one registered with "ka" (they arrive downsized to 64 pixels across); a
second pacs with IncomingCompression = un (Conquest's default) receiving
such an NKI object from storescu stores it decompressed, and an object
sent to it as RECEIVER~kb downsized. A pacs with LossyQuality = 50 sends
to a storescp registered "j3" a 16-bit CT in JPEG Extended (Baseline
takes 8 bits only) and an RGB image in JPEG Baseline, which DCMTK's
dcmdjpeg decodes close to the originals, and stores what storescu sends
to PACS~j4 in JPEG Extended. The script codes s0..s9 run their
CompressionConverterN line on objects moved to a node registered with
one, forwarded with ``forward compressed as s0`` or sent to PACS~s0
(``destroy`` leaving them out). The lossless codes keep the bits above
High Bit (embedded overlays): stored with j1/js they come back from
dcmdjpeg/dcmdjpls, and dcmcjpeg's true lossless object comes back with
them decompressed to getscu. pydicom's JPEG-lossy.dcm, whose scan
header libjpeg refuses, comes to getscu decompressed as dcmdjpeg
decompresses it. JPEG and JPEG-LS streams cut short, which DCMTK refuses
to decode, are stored as received by a pacs storing with ``un``, not
sent decompressed (C-GET, WADO-URI) and not uncompressed by ``dgate -jd``; whole ones that
dcmcjpeg and dcmcjpls make are stored decompressed. A large JPEG-LS object
whose Number of Frames says one frame more than it holds is stored as
received too, and not sent decompressed. Decompression bombs (a 64 x 64
object whose frame is a codestream of thousands of pixels across, a few
kB, in JPEG-LS, JPEG 2000 and baseline JPEG) are stored as received,
refused by WADO-URI, WADO-RS rendered and frames (422) and not moved to a peer
taking only uncompressed syntaxes, never decoded: the server's memory
does not grow."""

import io
import os
import struct
import tempfile

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_rescale
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from twisted.trial import unittest

from pacscore.codecs import nki
from pacscore.codecs.syntaxes import (
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000_LOSSLESS, JPEG_BASELINE, JPEG_EXTENDED,
    JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS)
from pacscore.testing.corpus import makeDataset
from tests.interop.index import column
from tests.interop.peers import StorescpServer
from tests.interop.server import PacsServer, dcmtk
from tests.interop.test_control_commands import storedFile
from tests.interop.test_forwarding import waitFor
from tests.interop.test_retrieve import STUDY_ROOT_GET, imageKeys, movescu
from tests.interop.test_web import httpGet
from tests.pacscore.codecs.test_codestreamheader import bombDataset
from tests.pacscore.codecs.test_transcode import cutShortDataset
from tests.pacscore.web.dicomweb.test_retrieve import flatRle

NKI_PIXEL_DATA = 0x7FDF0010
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
DQT = 0xFFDB


def moveInstance(test, server, peer, original):
    """``original`` moved by movescu from ``server`` to ``peer``; what it received."""
    peer.reset()
    result = movescu(server, peer.aet, "IMAGE", {"StudyInstanceUID": original.StudyInstanceUID,
                                                  "SeriesInstanceUID": original.SeriesInstanceUID,
                                                  "SOPInstanceUID": original.SOPInstanceUID})
    test.assertEqual(result.returncode, 0, result.stdout + result.stderr)
    [received] = peer.datasets()
    return received


def sendVia(test, server, code, source):
    """storescu sends ``source`` to ``server`` called as AE~code; it must succeed."""
    result = dcmtk("storescu", "-aec", f"{server.ae}~{code}", "127.0.0.1", server.port, source)
    test.assertEqual(result.returncode, 0, result.stdout + result.stderr)


def storedVia(test, server, code, source):
    """``sendVia``, then the path of the file ``server`` stored."""
    sendVia(test, server, code, source)
    return storedFile(server, pydicom.dcmread(source).SOPInstanceUID)[1]


def getImplicit(server, original, workdir):
    """getscu proposing implicit VR only asks ``server`` for ``original``:
    its result and the paths of the files it got."""
    out = tempfile.mkdtemp(dir=workdir)
    result = dcmtk("getscu", "-xi", "-aec", server.ae, "-od", out, "-k", "QueryRetrieveLevel=IMAGE",
                   "-k", f"StudyInstanceUID={original.StudyInstanceUID}",
                   "-k", f"SeriesInstanceUID={original.SeriesInstanceUID}",
                   "-k", f"SOPInstanceUID={original.SOPInstanceUID}", "127.0.0.1", server.port)
    return result, [os.path.join(out, name) for name in os.listdir(out)]


def fetchedImplicit(test, server, original, workdir):
    """``original`` as getscu proposing implicit VR only gets it from ``server``."""
    result, files = getImplicit(server, original, workdir)
    test.assertEqual(result.returncode, 0, result.stdout + result.stderr)
    [path] = files
    return pydicom.dcmread(path)


def nkiPixels(ds):
    """The decompressed NKI pixel data of ``ds`` (read raw: pydicom takes
    (7FDF,0010) for a private creator)."""
    return nki.decompress(ds.get_item(NKI_PIXEL_DATA).value)


class ServersTestCase(unittest.TestCase):
    """Processes (servers, peers) started once for the class, stopped after it."""

    processes = ()

    @classmethod
    def startDecompressing(cls, prefix):
        """``cls.server``, a pacs storing with IncomingCompression ``un``
        (Conquest's default) in a new ``cls.workdir``, started."""
        cls.workdir = tempfile.mkdtemp(prefix=prefix)
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.server.setIni(IncomingCompression="un")
        cls.startAll(cls.server)

    @classmethod
    def startAll(cls, *processes):
        cls.processes = processes
        for process in processes:
            process.start()

    @classmethod
    def tearDownClass(cls):
        for process in reversed(cls.processes):
            process.stop()


class NKITests(ServersTestCase):

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-nki-")
        cls.plainPeer = StorescpServer(os.path.join(cls.workdir, "plain"), aet="PLAINSCP")
        cls.conquestPeer = StorescpServer(os.path.join(cls.workdir, "conquest"), aet="CONQUESTSCP")
        cls.thumbnailPeer = StorescpServer(os.path.join(cls.workdir, "thumbnails"), aet="THUMBSCP")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.server.setIni(IncomingCompression="n4")
        cls.server.addNode(cls.plainPeer.aet, cls.plainPeer.port, compression="un")
        cls.server.addNode(cls.conquestPeer.aet, cls.conquestPeer.port, compression="n4")
        cls.server.addNode(cls.thumbnailPeer.aet, cls.thumbnailPeer.port, compression="ka")
        cls.receiver = PacsServer(os.path.join(cls.workdir, "receiver"), ae="RECEIVER")
        cls.receiver.setIni(IncomingCompression="un")
        cls.receiver.addNode(cls.conquestPeer.aet, cls.conquestPeer.port, compression="n4")
        cls.receiver.addNode(cls.thumbnailPeer.aet, cls.thumbnailPeer.port, compression="ka")
        cls.startAll(cls.plainPeer, cls.conquestPeer, cls.thumbnailPeer, cls.server, cls.receiver)
        cls.path = get_testdata_file("CT_small.dcm")
        cls.original = pydicom.dcmread(cls.path)
        result = cls.server.store(cls.path, extra=("-R",))
        assert result.returncode == 0, result.stderr

    def assertOriginalPixels(self, ds):
        self.assertEqual(ds.PixelData, self.original.PixelData)
        self.assertNotIn(NKI_PIXEL_DATA, ds)

    def moveTo(self, peer):
        return moveInstance(self, self.server, peer, self.original)

    def test_storedNKICompressed(self):
        _, path = storedFile(self.server, self.original.SOPInstanceUID)
        stored = pydicom.dcmread(path)
        self.assertNotIn("PixelData", stored)
        self.assertEqual(nkiPixels(stored), self.original.PixelData)
        self.assertEqual(stored.get_item(NKI_PIXEL_DATA).value[4:8], b"\x04\x00\x00\x00", "mode 4")
        self.assertEqual(stored.PatientName, self.original.PatientName)
        self.assertLess(os.path.getsize(path), os.path.getsize(self.path))

    def test_getscuReceivesPixelData(self):
        out = tempfile.mkdtemp(dir=self.workdir)
        result = dcmtk("getscu", "-S", "-aec", self.server.ae, "-od", out, "-k", "QueryRetrieveLevel=STUDY",
                       "-k", f"StudyInstanceUID={self.original.StudyInstanceUID}", "127.0.0.1", self.server.port)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [name] = os.listdir(out)
        self.assertOriginalPixels(pydicom.dcmread(os.path.join(out, name)))

    def test_movedDecompressedOrNKIByDestination(self):
        self.assertOriginalPixels(self.moveTo(self.plainPeer))
        toConquest = self.moveTo(self.conquestPeer)
        self.assertNotIn("PixelData", toConquest)
        self.assertEqual(nkiPixels(toConquest), self.original.PixelData)

    def test_nkiObjectReceivedWithUnStoredDecompressed(self):
        self.moveTo(self.conquestPeer)
        [nkiFile] = self.conquestPeer.files()
        result = self.receiver.store(nkiFile)
        self.assertEqual(result.returncode, 0, result.stderr)
        _, path = storedFile(self.receiver, self.original.SOPInstanceUID)
        self.assertOriginalPixels(pydicom.dcmread(path))

    def test_movedDownsized(self):
        """128 x 128 to a node registered "ka": 64 x 64, every other pixel, Pixel Spacing doubled."""
        small = self.moveTo(self.thumbnailPeer)
        self.assertEqual((small.Rows, small.Columns), (64, 64))
        self.assertEqual(small.pixel_array.tolist(), self.original.pixel_array[::2, ::2].tolist())
        self.assertEqual([float(v) for v in small.PixelSpacing],
                         [float(f"{float(v) * 2:g}") for v in self.original.PixelSpacing])

    def test_storedCompressedMovedDownsizedOrNKI(self):
        """An object stored JPEG compressed (RECEIVER~j2) goes to a node
        registered "ka" decompressed and downsized, and to one registered
        "n4" decompressed and NKI compressed."""
        ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))  # 128 x 128
        ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        source = os.path.join(self.workdir, "compressed-source.dcm")
        ct.save_as(source, enforce_file_format=True)
        self.assertEqual(pydicom.dcmread(storedVia(self, self.receiver, "j2", source)).file_meta.TransferSyntaxUID,
                         "1.2.840.10008.1.2.4.57")
        small = moveInstance(self, self.receiver, self.thumbnailPeer, ct)
        self.assertEqual((small.Rows, small.Columns), (64, 64))
        self.assertEqual(small.pixel_array.tolist(), ct.pixel_array[::2, ::2].tolist())
        toConquest = moveInstance(self, self.receiver, self.conquestPeer, ct)
        self.assertNotIn("PixelData", toConquest)
        self.assertEqual(nkiPixels(toConquest), ct.PixelData)

    def test_storedDownsizedByCalledAE(self):
        """RECEIVER~kb: stored 32 x 32."""
        source = get_testdata_file("MR_small.dcm")  # 64 x 64
        mr = pydicom.dcmread(source)
        stored = pydicom.dcmread(storedVia(self, self.receiver, "kb", source))
        self.assertEqual((stored.Rows, stored.Columns), (32, 32))
        self.assertEqual(stored.pixel_array.tolist(), mr.pixel_array[::2, ::2].tolist())


def firstQuantisationEntry(ds):
    """The first entry of the first DQT table of the first frame of ``ds``."""
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    pos = 2
    while True:
        marker, length = struct.unpack_from(">HH", codestream, pos)
        if marker == DQT:
            return codestream[pos + 5]
        pos += 2 + length


class LossyJPEGTests(ServersTestCase):

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-jpeg-")
        cls.viewer = StorescpServer(os.path.join(cls.workdir, "viewer"), aet="VIEWERSCP")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.server.setIni(LossyQuality="50")
        cls.server.addNode(cls.viewer.aet, cls.viewer.port, compression="j3")
        cls.startAll(cls.viewer, cls.server)
        cls.ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        cls.rgb = pydicom.dcmread(get_testdata_file("examples_rgb_color.dcm"))
        result = cls.server.store(get_testdata_file("CT_small.dcm"), get_testdata_file("examples_rgb_color.dcm"))
        assert result.returncode == 0, result.stderr

    def decompressed(self, ds):
        """``ds`` as DCMTK's dcmdjpeg decompresses it."""
        source, target = self.mktemp() + ".dcm", self.mktemp() + ".dcm"
        ds.save_as(source)
        result = dcmtk("dcmdjpeg", source, target)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return pydicom.dcmread(target)

    def test_ctMovedInJpegExtended(self):
        """16 bits allocated: JPEG Baseline cannot take it, Extended (12
        bits, shifted, the Rescale Intercept taking up the shift) does."""
        received = moveInstance(self, self.server, self.viewer, self.ct)
        self.assertEqual(received.file_meta.TransferSyntaxUID, JPEG_EXTENDED)
        self.assertEqual(received.LossyImageCompression, "01")
        self.assertEqual(received.LossyImageCompressionMethod, "ISO_10918_1")
        self.assertEqual(firstQuantisationEntry(received), 16, "LossyQuality 50: the annex K table")
        plain = self.decompressed(received)
        self.assertEqual(plain.BitsStored, 12)
        error = np.abs(apply_rescale(plain.pixel_array, plain) - apply_rescale(self.ct.pixel_array, self.ct))
        self.assertLess(error.mean(), 20)
        self.assertEqual(plain.SOPInstanceUID, self.ct.SOPInstanceUID)

    def test_rgbMovedInJpegBaseline(self):
        received = moveInstance(self, self.server, self.viewer, self.rgb)
        self.assertEqual(received.file_meta.TransferSyntaxUID, JPEG_BASELINE)
        self.assertEqual(received.PhotometricInterpretation, "YBR_FULL")
        plain = self.decompressed(received)
        self.assertEqual(plain.PhotometricInterpretation, "RGB")
        error = np.abs(plain.pixel_array.astype(float) - self.rgb.pixel_array)
        self.assertLess(error.mean(), 6)

    def test_storedInJpegLSByCalledAE(self):
        """js: JPEG-LS lossless, which DCMTK's dcmdjpls decodes to the same pixels."""
        source = get_testdata_file("MR_small.dcm")
        path = storedVia(self, self.server, "js", source)
        self.assertEqual(pydicom.dcmread(path).file_meta.TransferSyntaxUID, JPEG_LS_LOSSLESS)
        target = self.mktemp() + ".dcm"
        result = dcmtk("dcmdjpls", path, target)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(pydicom.dcmread(target).pixel_array.tolist(), pydicom.dcmread(source).pixel_array.tolist())

    def test_storedBigEndianByCalledAE(self):
        """ub: explicit VR big endian, the pixel values the same."""
        source = get_testdata_file("rtdose_1frame.dcm")  # 32-bit, implicit VR
        path = storedVia(self, self.server, "ub", source)
        stored = pydicom.dcmread(path)
        self.assertEqual(stored.file_meta.TransferSyntaxUID, EXPLICIT_VR_BIG_ENDIAN)
        self.assertEqual(stored.pixel_array.tolist(), pydicom.dcmread(source).pixel_array.tolist())

    def test_codeWithItsOwnQuality(self):
        """PACS~j390: quality 90 instead of LossyQuality (50)."""
        source = get_testdata_file("SC_rgb_small_odd.dcm")
        path = storedVia(self, self.server, "j390", source)
        stored = pydicom.dcmread(path)
        self.assertEqual(stored.file_meta.TransferSyntaxUID, JPEG_BASELINE)
        self.assertEqual(firstQuantisationEntry(stored), 3, "16 scaled for quality 90")

    def test_storedInJpegExtendedByCalledAE(self):
        source = get_testdata_file("MR_small.dcm")
        path = storedVia(self, self.server, "j4", source)
        stored = pydicom.dcmread(path)
        self.assertEqual(stored.file_meta.TransferSyntaxUID, JPEG_EXTENDED)
        self.assertEqual(stored.LossyImageCompression, "01")


class ScriptCodeTests(ServersTestCase):
    """Conquest's s0..s9: CompressionConverterN runs on objects stored,
    moved or forwarded with code sN."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-scripts-")
        cls.anonymous = StorescpServer(os.path.join(cls.workdir, "anonymous"), aet="ANONSCP")
        cls.dropped = StorescpServer(os.path.join(cls.workdir, "dropped"), aet="DROPSCP")
        cls.forwarded = StorescpServer(os.path.join(cls.workdir, "forwarded"), aet="FWDSCP")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"), ini={
            "CompressionConverter0": 'set 0010,0010 to "ANON^PATIENT"',
            "CompressionConverter1": "destroy",
            "ExportConverters": "1", "ExportModality0": "MR",
            "ExportConverter0": "forward compressed as s0 to FWDSCP"})
        cls.server.addNode(cls.anonymous.aet, cls.anonymous.port, compression="s0")
        cls.server.addNode(cls.dropped.aet, cls.dropped.port, compression="s1")
        cls.server.addNode(cls.forwarded.aet, cls.forwarded.port, compression="un")
        cls.startAll(cls.anonymous, cls.dropped, cls.forwarded, cls.server)
        cls.ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        result = cls.server.store(get_testdata_file("CT_small.dcm"))
        assert result.returncode == 0, result.stderr

    def test_movedThroughTheLine(self):
        received = moveInstance(self, self.server, self.anonymous, self.ct)
        self.assertEqual(received.PatientName, "ANON^PATIENT")
        self.assertEqual(received.PixelData, self.ct.PixelData)
        _, path = storedFile(self.server, self.ct.SOPInstanceUID)
        self.assertEqual(pydicom.dcmread(path).PatientName, self.ct.PatientName, "the stored object unchanged")

    def test_destroyLeavesItOut(self):
        result = movescu(self.server, self.dropped.aet, "IMAGE", {
            "StudyInstanceUID": self.ct.StudyInstanceUID, "SeriesInstanceUID": self.ct.SeriesInstanceUID,
            "SOPInstanceUID": self.ct.SOPInstanceUID})
        self.assertIn("Refused: OutOfResourcesSubOperations", result.stdout + result.stderr, "its one sub-operation failed")
        self.assertEqual(self.dropped.files(), [])

    def test_storedThroughTheLineByCalledAE(self):
        source = get_testdata_file("examples_rgb_color.dcm")
        path = storedVia(self, self.server, "s0", source)
        self.assertEqual(pydicom.dcmread(path).PatientName, "ANON^PATIENT")

    def test_destroyedWhenStored(self):
        source = get_testdata_file("SC_rgb_small_odd.dcm")
        sendVia(self, self.server, "s1", source)
        uid = pydicom.dcmread(source).SOPInstanceUID
        self.assertNotIn(uid, column(self.server.database, "DICOMImages", "SOPInstanceUID"))

    def test_forwardedThroughTheLine(self):
        source = get_testdata_file("MR_small.dcm")
        result = self.server.store(source)
        self.assertEqual(result.returncode, 0, result.stderr)
        waitFor(lambda: len(self.forwarded.files()) == 1, message="the forwarded MR")
        [received] = self.forwarded.datasets()
        self.assertEqual(received.PatientName, "ANON^PATIENT")
        self.assertEqual(received.SOPInstanceUID, pydicom.dcmread(source).SOPInstanceUID)


def embeddedOverlay(path):
    """A 12-bit CT in 16 bits with a pixel-embedded overlay in bit 12 (the
    retired (60xx,0100) Overlay Bits Allocated 16, (60xx,0102) Overlay Bit
    Position 12), written to ``path``; its pixel words."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    words = (np.arange(ds.Rows * ds.Columns) % 4096).astype(np.uint16).reshape(ds.Rows, ds.Columns)
    words[20:40, 10:50] |= 1 << 12
    ds.PixelData = words.tobytes()
    ds.add_new(0x60000100, "US", 16)
    ds.add_new(0x60000102, "US", 12)
    ds.save_as(path)
    return pydicom.dcmread(path)


def eightInSixteen(path):
    """CT_small with 8 bits stored in its 16 allocated, written to
    ``path``; as read back."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 7, 0
    ds.PixelData = (np.arange(ds.Rows * ds.Columns) % 256).astype("<u2").tobytes()
    ds.save_as(path)
    return pydicom.dcmread(path)


class EmbeddedOverlayTests(ServersTestCase):
    """The lossless codes keep the bits above High Bit (embedded overlays)
    both ways, as DCMTK's true lossless dcmcjpeg and dcmcjpls do."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-overlay-")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.startAll(cls.server)

    def decompressed(self, tool, path):
        target = self.mktemp() + ".dcm"
        result = dcmtk(tool, path, target)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return pydicom.dcmread(target)

    def test_storedLosslessDecodedWithTheOverlay(self):
        """PACS~j1 and PACS~js: what dcmdjpeg/dcmdjpls make of the stored
        file are the words sent."""
        for code, tool in (("j1", "dcmdjpeg"), ("js", "dcmdjpls")):
            original = embeddedOverlay(self.mktemp() + ".dcm")
            path = storedVia(self, self.server, code, original.filename)
            self.assertTrue(pydicom.dcmread(path)["PixelData"].is_undefined_length, code)
            self.assertEqual(self.decompressed(tool, path).PixelData, original.PixelData, code)

    def test_dcmtkLosslessFetchedDecompressedWithTheOverlay(self):
        """An object dcmcjpeg coded at 16 bits (true lossless), stored as received, comes
        back to getscu proposing implicit VR only with the overlay bits."""
        original = embeddedOverlay(self.mktemp() + ".dcm")
        compressed = self.mktemp() + ".dcm"
        result = dcmtk("dcmcjpeg", original.filename, compressed)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        result = self.server.store(compressed, extra=("-R", "-xs"))  # JPEG lossless SV1
        self.assertEqual(result.returncode, 0, result.stderr)
        received = fetchedImplicit(self, self.server, original, self.workdir)
        self.assertFalse(received["PixelData"].is_undefined_length)
        self.assertEqual(received.PixelData, original.PixelData)


    def test_wadoPicturesWithoutTheOverlay(self):
        """WADO pictures of the image stored with PACS~js, ~jk and ~j7
        (coded at 16 bits) are those of it stored uncompressed: the
        overlay above High Bit is not shown as pixel values."""
        pictures = {}
        for code in ("un", "j1", "js", "jk", "j7"):
            original = embeddedOverlay(self.mktemp() + ".dcm")
            sendVia(self, self.server, code, original.filename)
            for window in ("", "&windowCenter=2048&windowWidth=4096"):
                status, _, body = httpGet(
                    f"http://127.0.0.1:{self.server.webPort}/wado?requestType=WADO"
                    f"&studyUID={original.StudyInstanceUID}&seriesUID={original.SeriesInstanceUID}"
                    f"&objectUID={original.SOPInstanceUID}&contentType=image/png{window}")
                self.assertEqual(status, 200, (code, body))
                pictures[code, window] = np.asarray(Image.open(io.BytesIO(body))).tolist()
        for (code, window), picture in pictures.items():
            self.assertEqual(picture, pictures["un", window], (code, window))

    def test_eightBitsInSixteenKeepTheirWords(self):
        """8 bits stored in 16 sent to PACS~js, ~j7 and ~jk: dcmdjpls
        decodes the stored JPEG-LS files, and getscu gets the 16-bit words
        sent (an 8-bit stream gave half the Pixel Data)."""
        for code in ("js", "j7", "jk"):
            original = eightInSixteen(self.mktemp() + ".dcm")
            path = storedVia(self, self.server, code, original.filename)
            self.assertTrue(pydicom.dcmread(path)["PixelData"].is_undefined_length, code)
            if code != "jk":
                self.assertEqual(self.decompressed("dcmdjpls", path).PixelData, original.PixelData, code)
            received = fetchedImplicit(self, self.server, original, self.workdir)
            self.assertEqual((received.BitsAllocated, received.PixelData), (16, original.PixelData), code)


class MendedScansTests(ServersTestCase):
    """A 12-bit JPEG Extended object whose scan header says Se = 0 (a
    sequential stream must say 63), stored as received."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-scans-")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.startAll(cls.server)
        cls.path = get_testdata_file("JPEG-lossy.dcm")
        result = cls.server.store(cls.path, extra=("-xx",))
        assert result.returncode == 0, result.stderr

    def test_getscuReceivesItDecompressed(self):
        """getscu proposing implicit VR only gets what dcmdjpeg makes of it."""
        original = pydicom.dcmread(self.path)
        received = fetchedImplicit(self, self.server, original, self.workdir)
        self.assertFalse(received["PixelData"].is_undefined_length)
        reference = self.mktemp() + ".dcm"
        result = dcmtk("dcmdjpeg", self.path, reference)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        error = np.abs(received.pixel_array.astype(int) - pydicom.dcmread(reference).pixel_array)
        self.assertLessEqual(error.max(), 1)


def cutShort(source, path):
    """``source`` (Part-10, one encapsulated frame) with its codestream cut
    to its first third (no end of image marker) and a new SOP Instance
    UID, written at ``path``."""
    ds = cutShortDataset(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(path)
    return ds


def assertNotSentDecompressed(test, original):
    """getscu proposing Implicit VR Little Endian only gets nothing of the
    stored ``original`` (a pydicom Dataset) from ``test.server``, and the
    log says why."""
    test.assertEqual(getImplicit(test.server, original, test.workdir)[1], [])
    test.assertIn(f"C-GET: {original.SOPInstanceUID} cannot be converted to", test.server.log())


class CutStreamTests(ServersTestCase):
    """A pacs storing with IncomingCompression ``un`` (Conquest's default)."""

    @classmethod
    def setUpClass(cls):
        cls.startDecompressing("pacs-cutstreams-")

    def compressed(self, tool, option, name):
        path = os.path.abspath(self.mktemp()) + ".dcm"
        result = dcmtk(tool, *option, get_testdata_file(name), path)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return path

    def cut(self, tool, option):
        path = os.path.abspath(self.mktemp()) + ".dcm"
        return path, cutShort(self.compressed(tool, option, "CT_small.dcm"), path)

    def send(self, path, proposal):
        """storescu sends ``path`` proposing its syntax (``proposal``, its option)."""
        result = self.server.store(path, extra=(proposal,))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_storedAsReceived(self):
        """The object is stored as it came, with the stream cut short kept,
        and a warning naming it; dcmdjpeg and dcmdjpls refuse it too."""
        for tool, option, syntax, proposal in (("dcmcjpeg", ("+e1",), JPEG_LOSSLESS_SV1, "-xs"),
                                               ("dcmcjpls", (), JPEG_LS_LOSSLESS, "-xt")):
            path, original = self.cut(tool, option)
            self.assertNotEqual(dcmtk(tool.replace("dcmc", "dcmd"), path, self.mktemp()).returncode, 0)
            self.send(path, proposal)
            stored = pydicom.dcmread(storedFile(self.server, original.SOPInstanceUID)[1])
            self.assertEqual((stored.file_meta.TransferSyntaxUID, stored.PixelData), (syntax, original.PixelData))
            log = self.server.log()
            self.assertIn(f"{original.SOPInstanceUID}: compression un not applied, stored as received", log)
            self.assertIn("frame 1 of its Pixel Data is cut short (no end of image marker)", log)

    def test_notSentDecompressed(self):
        """getscu proposing implicit VR only gets nothing, and the log says
        why."""
        path, original = self.cut("dcmcjpeg", ("+e1",))
        self.send(path, "-xs")
        assertNotSentDecompressed(self, original)

    def test_wadoRefused(self):
        """WADO-URI neither shows it nor sends it decompressed: a 422."""
        path, original = self.cut("dcmcjpeg", ("+e1",))
        self.send(path, "-xs")
        query = (f"http://127.0.0.1:{self.server.webPort}/wado?requestType=WADO&studyUID={original.StudyInstanceUID}"
                 f"&seriesUID={original.SeriesInstanceUID}&objectUID={original.SOPInstanceUID}")
        for content in ("image/jpeg", "application/dicom&transferSyntax=1.2.840.10008.1.2"):
            status, _, body = httpGet(f"{query}&contentType={content}")
            self.assertEqual(status, 422, (content, body[:200]))

    def test_dgateUncompressRefused(self):
        path, original = self.cut("dcmcjpls", ())
        with open(path, "rb") as f:
            before = f.read()
        result = self.server.dgate(f"-jd{path}")
        self.assertNotEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("cut short", result.stdout + result.stderr)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_bogusFrameSizeNeverDecoded(self):
        """An RLE object whose Rows and Columns claim 65535 x 65535 pixels
        (8 GB decoded) is stored as received with a warning saying so, and
        not sent decompressed, never decoded."""
        study = "1.2.826.0.1.3680043.8.498.34"
        original = flatRle(makeDataset("BOGUS", "Bogus^Size", study, f"{study}.1", f"{study}.1.1", 1, 1,
                                       rows=16, columns=16), 1)
        original.Rows = original.Columns = 65535
        path = os.path.abspath(self.mktemp()) + ".dcm"
        original.save_as(path)
        self.send(path, "-xr")
        log = self.server.log()
        self.assertIn(f"{original.SOPInstanceUID}: compression un not applied, stored as received", log)
        self.assertIn("its frames of 65535 x 65535 pixels of 1 sample(s) are larger than", log)
        assertNotSentDecompressed(self, original)

    def test_wholeStreamsStoredDecompressed(self):
        """What dcmcjpeg (lossless, baseline, extended) and dcmcjpls make is
        stored decompressed, the lossless ones bit for bit."""
        for tool, option, name, proposal in (("dcmcjpeg", ("+e1",), "CT_small.dcm", "-xs"),
                                             ("dcmcjpls", (), "CT_small.dcm", "-xt"),
                                             ("dcmcjpeg", ("+e1",), "examples_rgb_color.dcm", "-xs"),
                                             ("dcmcjpeg", ("+eb",), "examples_rgb_color.dcm", "-xy"),
                                             ("dcmcjpeg", ("+ee",), "examples_rgb_color.dcm", "-xx")):
            path = self.compressed(tool, option, name)
            ds = pydicom.dcmread(path)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(path)
            self.send(path, proposal)
            stored = pydicom.dcmread(storedFile(self.server, ds.SOPInstanceUID)[1])
            self.assertFalse(stored["PixelData"].is_undefined_length, (tool, option, name))
            if proposal in ("-xs", "-xt"):
                reference = pydicom.dcmread(get_testdata_file(name)).pixel_array
                self.assertTrue(np.array_equal(stored.pixel_array, reference), (tool, option, name))


class DecompressionBombTests(ServersTestCase):
    """A pacs storing with IncomingCompression ``un``, with a peer taking
    only uncompressed syntaxes."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-bombs-")
        cls.peer = StorescpServer(os.path.join(cls.workdir, "plain"), aet="PLAINSCP", acceptedSyntaxes="uncompressed")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.server.setIni(IncomingCompression="un")
        cls.server.addNode(cls.peer.aet, cls.peer.port)
        cls.startAll(cls.peer, cls.server)

    def assertRefusedUndecoded(self, syntax, side, proposal):
        """The bomb of a ``side`` x ``side`` codestream in ``syntax``, sent
        by storescu proposing it, is stored as received, refused by
        WADO-URI (a picture, the object decompressed), WADO-RS rendered and
        its frame uncompressed, and not moved decompressed, each with a log line; the server's peak
        memory grows by less than 100 MB (the reviewer saw 650 MB for one
        request of a 12000 x 12000 JPEG-LS one)."""
        before = self.server.peakRSSKilobytes()
        original = bombDataset(syntax, side)
        path = os.path.abspath(self.mktemp()) + ".dcm"
        original.save_as(path, enforce_file_format=True)
        result = self.server.store(path, extra=(proposal,))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        said = f"its codestream is of {side} x {side} pixels of 1 sample(s), the object says 64 x 64 of 1"
        stored = pydicom.dcmread(storedFile(self.server, original.SOPInstanceUID)[1])
        self.assertEqual((stored.file_meta.TransferSyntaxUID, stored.PixelData), (syntax, original.PixelData))
        [arrival] = [line for line in self.server.log().splitlines()
                     if f"{original.SOPInstanceUID}: compression un not applied, stored as received" in line]
        self.assertIn(said, arrival)
        uids = (original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID)
        web = f"http://127.0.0.1:{self.server.webPort}"
        wado = f"{web}/wado?requestType=WADO&studyUID={uids[0]}&seriesUID={uids[1]}&objectUID={uids[2]}"
        instance = f"{web}/dicom-web/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}"
        native = {"Accept": 'multipart/related; type="application/octet-stream"; '
                            f"transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}"}
        for url, headers in ((f"{wado}&contentType=image/jpeg", None),
                             (f"{wado}&contentType=application/dicom&transferSyntax={EXPLICIT_VR_LITTLE_ENDIAN}", None),
                             (f"{instance}/rendered", None), (f"{instance}/frames/1", native)):
            status, _, body = httpGet(url, headers)
            self.assertEqual(status, 422, (url, body[:300]))
            self.assertIn(said, body.decode("utf-8", "replace"), url)
        self.peer.reset()
        result = movescu(self.server, self.peer.aet, "IMAGE", dict(zip(
            ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"), uids)))
        self.assertEqual(self.peer.files(), [], result.stdout + result.stderr)
        [move] = [line for line in self.server.log().splitlines()
                  if f"C-MOVE: {original.SOPInstanceUID} cannot be converted to" in line]
        self.assertIn(said, move)
        peak = self.server.peakRSSKilobytes()
        self.assertLess(peak - before, 100 << 10, f"peak RSS grew from {before} kB to {peak} kB")

    def test_jpegLS(self):
        """The reviewer's bomb: 12000 x 12000 in 1.6 kB."""
        self.assertRefusedUndecoded(JPEG_LS_LOSSLESS, 12000, "-xt")

    def test_jpeg2000(self):
        self.assertRefusedUndecoded(JPEG_2000_LOSSLESS, 8000, "-xv")

    def test_baselineJpeg(self):
        self.assertRefusedUndecoded(JPEG_BASELINE, 8000, "-xy")


class FrameCountTests(ServersTestCase):
    """A 24-frame 512x512 JPEG-LS object of 9 MB (above the 4 MB spool
    threshold and the 8 MB above which C-MOVE and C-GET convert file to
    file) whose Number of Frames says 25, which ``dcmdjpls`` refuses, sent
    to a pacs storing with ``un``: stored as received (file to file, then
    in memory, each refusing it), and not sent decompressed to getscu
    proposing implicit VR only."""

    @classmethod
    def setUpClass(cls):
        cls.startDecompressing("pacs-framecount-")
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.Rows = ds.Columns = 512
        ds.NumberOfFrames = 24
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PixelData = np.random.default_rng(1).integers(0, 4096, (24, 512, 512)).astype(np.int16).tobytes()
        native, cls.path = (os.path.join(cls.workdir, name) for name in ("native.dcm", "jls.dcm"))
        ds.save_as(native)
        dcmtk("dcmcjpls", native, cls.path, check=True)
        dcmtk("dcmodify", "-nb", "-m", "NumberOfFrames=25", cls.path, check=True)
        cls.original = pydicom.dcmread(cls.path)
        assert len(cls.original.PixelData) > 8 << 20, len(cls.original.PixelData)
        result = cls.server.store(cls.path, extra=("-xt",))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_storedAsReceived(self):
        stored = pydicom.dcmread(storedFile(self.server, self.original.SOPInstanceUID)[1])
        self.assertEqual((stored.file_meta.TransferSyntaxUID, stored.NumberOfFrames), (JPEG_LS_LOSSLESS, 25))
        self.assertTrue(stored.PixelData == self.original.PixelData, "the stream as it came")
        log = self.server.log()
        for line in ("compression un not applied file to file, trying in memory",
                     "compression un not applied, stored as received"):
            self.assertIn(f"{self.original.SOPInstanceUID}: {line}", log)
        self.assertIn("its Pixel Data holds 24 frame(s), its Number of Frames says 25", log)

    def test_notSentDecompressed(self):
        assertNotSentDecompressed(self, self.original)


class FloatPixelDataTests(ServersTestCase):
    """A Parametric Map of Float Pixel Data, which has no encapsulated form
    (PS3.5 8), to a pacs storing with IncomingCompression ``jk``: stored as
    received with the usual warning, and sent uncompressed to a retriever
    that prefers JPEG 2000, or refused in it over WADO-RS."""

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="pacs-floatpixels-")
        cls.server = PacsServer(os.path.join(cls.workdir, "pacs"))
        cls.server.setIni(IncomingCompression="jk")
        ds = makeDataset("FLOAT1", "Float^One", generate_uid(), generate_uid(), generate_uid(), 1, 1, rows=16,
                         columns=20)
        del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PARAMETRIC_MAP
        ds.BitsAllocated = 32
        ds.FloatPixelData = np.linspace(-1, 1, 320, dtype="<f4").tobytes()
        cls.original = ds
        cls.path = os.path.join(cls.workdir, "float.dcm")
        ds.save_as(cls.path, enforce_file_format=True)
        cls.startAll(cls.server)
        result = cls.server.store(cls.path, extra=("-R",))
        if result.returncode != 0:
            cls.tearDownClass()
            raise AssertionError(result.stdout + result.stderr)

    def test_storedAsReceived(self):
        stored = pydicom.dcmread(storedFile(self.server, self.original.SOPInstanceUID)[1])
        self.assertEqual(stored.file_meta.TransferSyntaxUID, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(stored.FloatPixelData, self.original.FloatPixelData)
        self.assertIn(f"{self.original.SOPInstanceUID}: compression jk not applied, stored as received",
                      self.server.log())

    def test_getPreferringJpeg2000GetsItUncompressed(self):
        """A C-GET whose retriever proposes a JPEG 2000 Lossless context
        first, then an Explicit VR Little Endian one."""
        ae = AE(ae_title="GETTER")
        ae.add_requested_context(STUDY_ROOT_GET)
        for syntax in (JPEG_2000_LOSSLESS, EXPLICIT_VR_LITTLE_ENDIAN):
            ae.add_requested_context(PARAMETRIC_MAP, [syntax])
        received = []

        def store(event):
            received.append((event.context.transfer_syntax, event.dataset))
            return 0x0000
        association = ae.associate("127.0.0.1", self.server.port, ae_title=self.server.ae,
                                   ext_neg=[build_role(PARAMETRIC_MAP, scp_role=True)],
                                   evt_handlers=[(evt.EVT_C_STORE, store)])
        keys = pydicom.Dataset()
        keys.QueryRetrieveLevel = "IMAGE"
        for keyword, value in imageKeys(self.original).items():
            setattr(keys, keyword, value)
        try:
            *_, (final, _) = association.send_c_get(keys, STUDY_ROOT_GET)
        finally:
            association.release()
        self.assertEqual(final.Status, 0x0000)
        [(syntax, ds)] = received
        self.assertEqual((syntax, ds.FloatPixelData), (EXPLICIT_VR_LITTLE_ENDIAN, self.original.FloatPixelData))

    def test_wadoRsInJpeg2000Refused(self):
        ds = self.original
        status, _, body = httpGet(
            f"http://127.0.0.1:{self.server.webPort}/dicom-web/studies/{ds.StudyInstanceUID}/series/"
            f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90'})
        self.assertEqual(status, 406, body[:300])
