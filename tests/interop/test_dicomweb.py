"""DICOMweb of ``twistd -n pacs`` to a real client, dicomweb-client (the
library and its command line), and DCMTK on the other side: what storescu
stored is found and retrieved over QIDO-RS/WADO-RS, what STOW-RS stored
is found by findscu and fetched by getscu."""

import io
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pydicom
import requests
from PIL import Image
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array
from twisted.trial import unittest

from pacscore.web.dicomweb.search import CAPPED
from tests.interop.browser import renderedFromElsewhere
from tests.interop.server import BIN, PacsServer, dcmtk
from tests.interop.test_find import STUDY_ROOT, findscu
from tests.interop.test_storage import writeLargeCompressed, writeLargeMultiframe
from tests.interop.test_web import CT, FRAMES, RGB, startWithSamples
from tests.pacscore.web.dicomweb.client import viewedColours
from tests.pacscore.web.dicomweb.test_retrieve import writeDeflatedBomb

MR = get_testdata_file("MR_small.dcm")
J2K = get_testdata_file("JPEG2000.dcm")
EXPLICIT = "1.2.840.10008.1.2.1"


class DicomWebTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.mkdtemp(prefix="pacs-dicomweb-")
        cls.server = PacsServer(os.path.join(cls.folder, "pacs"), ae="WEBPACS", ini={"WebAllowOrigins": "*"})
        startWithSamples(cls)
        cls.url = f"http://127.0.0.1:{cls.server.webPort}/dicom-web"
        cls.client = DICOMwebClient(url=cls.url)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.folder, ignore_errors=True)

    def test_search(self):
        studies = self.client.search_for_studies()
        byPatient = {pydicom.Dataset.from_json(s).PatientID: pydicom.Dataset.from_json(s) for s in studies}
        self.assertTrue({"1CT1", "13US1", "204"} <= set(byPatient))
        ct = pydicom.dcmread(CT, stop_before_pixels=True)
        self.assertEqual(byPatient["1CT1"].StudyInstanceUID, ct.StudyInstanceUID)
        self.assertEqual(byPatient["1CT1"].ModalitiesInStudy, "CT")
        series = self.client.search_for_series(search_filters={"Modality": "CT"})
        self.assertEqual([pydicom.Dataset.from_json(s).SeriesInstanceUID for s in series], [ct.SeriesInstanceUID])
        instances = self.client.search_for_instances(study_instance_uid=ct.StudyInstanceUID)
        self.assertEqual([pydicom.Dataset.from_json(i).SOPInstanceUID for i in instances], [ct.SOPInstanceUID])
        self.assertEqual(self.client.search_for_studies(search_filters={"PatientName": "Compressed*"},
                                                        fields=["StudyDescription"])[0]["00100020"]["Value"],
                         ["1CT1"])

    def test_serverMaximum(self):
        """QIDOMaxResults = 2: dicomweb-client gets two of the three
        studies, and all of them when it pages on (get_remaining)."""
        everything = self.client.search_for_studies()
        self.assertEqual(len(everything), 3)
        self.server.setIni(QIDOMaxResults="2")
        self.addCleanup(self.server.dgate, "--read_ini:")
        self.addCleanup(self.server.setIni, QIDOMaxResults="1000")
        self.assertEqual(self.server.dgate("--read_ini:").returncode, 0)
        response = requests.get(f"{self.url}/studies", timeout=30)
        self.assertEqual(response.headers["Warning"], CAPPED)
        self.assertEqual(response.json(), everything[:2])
        self.assertEqual(self.client.search_for_studies(), everything[:2])
        self.assertEqual(self.client.search_for_studies(get_remaining=True), everything)

    def test_retrieve(self):
        for path in (CT, RGB):
            sent = pydicom.dcmread(path)
            (got,) = self.client.retrieve_series(sent.StudyInstanceUID, sent.SeriesInstanceUID)
            self.assertEqual(got.file_meta.TransferSyntaxUID, EXPLICIT)
            self.assertEqual(got.SOPInstanceUID, sent.SOPInstanceUID)
            np.testing.assert_array_equal(got.pixel_array, sent.pixel_array)

    def test_multiFrame(self):
        """The YBR_FULL_422 JPEG storescu sent: as stored, its frames as
        JPEG and native, these in the 4:2:2 layout its metadata names, so
        that a viewer converting them as it says shows pydicom's RGB (but
        where the JPEG's chroma differed between the two pixels of a pair);
        in Explicit VR Little Endian the object says RGB and holds that RGB."""
        sent = pydicom.dcmread(FRAMES)
        uids = (sent.StudyInstanceUID, sent.SeriesInstanceUID, sent.SOPInstanceUID)
        stored = self.client.retrieve_instance(*uids, media_types=(("application/dicom", "*"),))
        self.assertEqual(stored.file_meta.TransferSyntaxUID, sent.file_meta.TransferSyntaxUID)
        self.assertEqual(stored.PixelData, sent.PixelData)
        (jpeg,) = self.client.retrieve_instance_frames(*uids, frame_numbers=[29], media_types=("image/jpeg",))
        self.assertEqual(jpeg, list(generate_frames(sent.PixelData, number_of_frames=sent.NumberOfFrames))[28])
        (native,) = self.client.retrieve_instance_frames(*uids, frame_numbers=[29],
                                                        media_types=(("application/octet-stream", EXPLICIT),))
        metadata = self.client.retrieve_instance_metadata(*uids)
        self.assertEqual(metadata["00280004"]["Value"], ["YBR_FULL_422"])
        self.assertEqual(len(native), sent.Rows * sent.Columns * 2)
        shown = viewedColours(metadata, native).astype(int)
        self.assertLess(np.abs(shown - pixel_array(sent, index=28)).mean(), 0.1)
        whole = self.client.retrieve_instance(*uids, media_types=(("application/dicom", EXPLICIT),))
        self.assertEqual((whole.file_meta.TransferSyntaxUID, whole.PhotometricInterpretation), (EXPLICIT, "RGB"))
        np.testing.assert_array_equal(whole.pixel_array, sent.pixel_array)
        self.assertEqual(metadata["00280008"]["Value"], [sent.NumberOfFrames])
        self.assertIn("BulkDataURI", metadata["7FE00010"])
        rendered = self.client.retrieve_instance_frames_rendered(*uids, frame_numbers=[29], media_types=("image/png",))
        self.assertEqual(Image.open(io.BytesIO(rendered)).size, (sent.Columns, sent.Rows))

    def test_storeThenDicom(self):
        """STOW-RS of two objects, then DCMTK finds them and fetches them back."""
        sent = [pydicom.dcmread(MR), pydicom.dcmread(J2K)]
        answer = self.client.store_instances(sent)
        self.assertEqual([item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence],
                         [ds.SOPInstanceUID for ds in sent])
        for ds in sent:
            matches, result = findscu(self.server, STUDY_ROOT, "IMAGE",
                                      {"StudyInstanceUID": ds.StudyInstanceUID, "SOPInstanceUID": None})
            self.assertEqual([m.SOPInstanceUID for m in matches], [ds.SOPInstanceUID], result.stdout)
            out = tempfile.mkdtemp(dir=self.folder)
            result = dcmtk("getscu", "-S", "-aec", self.server.ae, "-od", out, "-k", "QueryRetrieveLevel=STUDY",
                           "-k", f"StudyInstanceUID={ds.StudyInstanceUID}", "127.0.0.1", self.server.port)
            (name,) = os.listdir(out)
            fetched = pydicom.dcmread(os.path.join(out, name))
            self.assertEqual(fetched.SOPInstanceUID, ds.SOPInstanceUID, result.stderr)
            np.testing.assert_array_equal(fetched.pixel_array, ds.pixel_array)  # getscu takes it uncompressed

    def test_commandLine(self):
        """dicomweb-client's own command line searches and retrieves."""
        tool = os.path.join(BIN, "dicomweb_client")
        result = subprocess.run([tool, "--url", self.url, "search", "studies", "--filter", "PatientID=204"],
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("204", result.stdout)
        ybr = pydicom.dcmread(FRAMES, stop_before_pixels=True)
        out = tempfile.mkdtemp(dir=self.folder)
        result = subprocess.run([tool, "--url", self.url, "retrieve", "instances", "--study", ybr.StudyInstanceUID,
                                 "--series", ybr.SeriesInstanceUID, "--instance", ybr.SOPInstanceUID, "full",
                                 "--save", "--output-dir", out],
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        (name,) = os.listdir(out)
        self.assertEqual(pydicom.dcmread(os.path.join(out, name)).SOPInstanceUID, ybr.SOPInstanceUID)

    def test_damagedRequests(self):
        """Garbage to /dicom-web gets 4xx answers and the server goes on."""
        for path, data in (("/studies?limit=%ff%fe", None), ("/studies/1.2..3", None), ("/studies", b"junk")):
            request = urllib.request.Request(self.url + path, data=data)
            if data:
                request.add_header("Content-Type", "multipart/related; boundary=x")
            with self.assertRaises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=30)
            self.assertEqual(caught.exception.code // 100, 4, path)
        self.assertTrue(self.client.search_for_studies())

    def test_viewerFromElsewhere(self):
        """A page served from another origin (as a viewer such as OHIF is)
        searches and fetches metadata with an Authorization header in
        headless Chromium: the preflight and the CORS headers let it."""
        ct = pydicom.dcmread(CT, stop_before_pixels=True)
        dom = viewerFromElsewhere(tempfile.mkdtemp(dir=self.folder), self.url, "Bearer none")
        self.assertIn(f'<p id="out">rows {ct.Rows}</p>', dom)
        self.assertIn('"OPTIONS /dicom-web/studies', self.server.log())


class NoOriginsTests(unittest.TestCase):

    def test_viewerFromElsewhereRefused(self):
        """Without WebAllowOrigins the browser keeps the answers from a page of another origin."""
        server = PacsServer(self.mktemp()).start()
        self.addCleanup(server.stop)
        self.assertEqual(server.store(CT).returncode, 0)
        folder = self.mktemp()
        os.makedirs(folder)
        dom = viewerFromElsewhere(folder, f"http://127.0.0.1:{server.webPort}/dicom-web", "Bearer none")
        self.assertIn('<p id="out">failed TypeError', dom)


def viewerFromElsewhere(folder, base, authorization):
    """The DOM, in headless Chromium, of a page served from ``folder`` on
    another origin that searches the DICOMweb server at ``base`` for CT's
    patient and fetches the study's metadata (both with ``authorization``):
    ``<p id="out">rows N</p>`` when it got them."""
    return renderedFromElsewhere(folder, "viewer.html", f"""<html><body><p id="out">waiting</p><script>
const base = "{base}";
const headers = {{Authorization: "{authorization}", Accept: "application/dicom+json"}};
async function run() {{
  const studies = await (await fetch(base + "/studies?PatientID=1CT1", {{headers}})).json();
  const study = studies[0]["0020000D"].Value[0];
  const metadata = await (await fetch(base + "/studies/" + study + "/metadata", {{headers}})).json();
  document.getElementById("out").textContent = "rows " + metadata[0]["00280010"].Value[0];
}}
run().catch(e => document.getElementById("out").textContent = "failed " + e);
</script></body></html>""")


class LargeObjectTests(unittest.TestCase):

    def setUp(self):
        self.server = PacsServer(self.mktemp())
        self.addCleanup(self.server.stop)
        self.server.start()

    def stowTinyParts(self, count):
        """The status, answer and time of a STOW-RS of ``count`` parts of
        one byte each (44 bytes a part), and the refusals it logged."""
        logStart = len(self.server.log())
        part = b"--XX\r\nContent-Type: application/dicom\r\n\r\nx\r\n"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.server.webPort}/dicom-web/studies", data=part * count + b"--XX--\r\n",
            method="POST", headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=XX'})
        with self.assertRaises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=120)
        lines = [line for line in self.server.log()[logStart:].splitlines() if "refused" in line]
        return raised.exception.code, raised.exception.read(), lines

    def test_manyTinyPartsWithBoundedMemory(self):
        """200,000 parts (a 9 MB body; it took a GB and 75 s) are a 413
        at once, the server's memory hardly grown."""
        before = self.server.peakRSSKilobytes()
        code, answer, lines = self.stowTinyParts(200000)
        self.assertEqual(code, 413, answer)
        self.assertIn(b"more than 10000 parts (DICOMwebMaxParts)", answer)
        self.assertLess(self.server.peakRSSKilobytes() - before, 64 << 10)

    def test_tinyPartsRefusedInFewLines(self):
        """10,000 parts that are no DICOM: a 409 whose answer lists none
        (they name no object), ten log lines and one with the count of the rest."""
        code, answer, lines = self.stowTinyParts(10000)
        self.assertEqual(code, 409, answer)
        self.assertLess(len(answer), 1000)
        self.assertEqual(len(lines), 11, lines[-3:])
        self.assertIn("9990 more parts refused", lines[-1])

    def test_300MBOverDicomWebWithBoundedMemory(self):
        """A 300 MB multi-frame object stored with STOW-RS (a chunked upload)
        and retrieved as stored with WADO-RS, zipped (``zipstudy``) and with
        WADO-URI (``application/dicom``, streamed; it was read whole): the
        server's peak memory grows by less than 64 MB, and the bytes come
        back as they went."""
        path = os.path.abspath(self.mktemp() + ".dcm")
        size = writeLargeMultiframe(path, "1.2.3.4.5.6.9")
        self.assertGreater(size, 300 * 10**6)
        url = f"http://127.0.0.1:{self.server.webPort}/dicom-web/studies"
        before = self.server.peakRSSKilobytes()

        def body():
            yield b"--big\r\nContent-Type: application/dicom\r\n\r\n"
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk
            yield b"\r\n--big--\r\n"
        request = urllib.request.Request(url, data=body(), method="POST", headers={
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=big'})
        with urllib.request.urlopen(request, timeout=600) as response:
            self.assertEqual(response.status, 200)
        request = urllib.request.Request(f"{url}/1.2.3.4.5", headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        received = 0
        with urllib.request.urlopen(request, timeout=600) as response, open(path, "rb") as original:
            original.seek(size - 4096)
            tail = original.read()
            last = b""
            while chunk := response.read(1 << 20):
                received += len(chunk)
                last = (last + chunk)[-8192:]
        self.assertIn(tail + b"\r\n--", last)
        self.assertGreater(received, size)
        zipped = self.mktemp() + ".zip"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.server.webPort}/cgi-bin/dgate?mode=zipstudy"
                                    "&study=:1.2.3.4.5", timeout=600) as response, open(zipped, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
        with zipfile.ZipFile(zipped) as archive, open(path, "rb") as original:
            [entry] = archive.infolist()
            self.assertLess(abs(entry.file_size - size), 1024)  # the stored file's meta header is pacs's
            self.assertIsNone(archive.testzip())
            with archive.open(entry) as unzipped:
                unzipped.seek(entry.file_size - 4096)
                self.assertEqual(unzipped.read(), tail)
        wado = (f"http://127.0.0.1:{self.server.webPort}/wado?requestType=WADO&studyUID=1.2.3.4.5"
                "&seriesUID=1.2.3.4.5.6&objectUID=1.2.3.4.5.6.9&contentType=application/dicom")
        with urllib.request.urlopen(wado, timeout=600) as response:
            received, last = 0, b""
            while chunk := response.read(1 << 20):
                received += len(chunk)
                last = (last + chunk)[-8192:]
        self.assertLess(abs(received - size), 1024)
        self.assertTrue(last.endswith(tail))
        peak = self.server.peakRSSKilobytes()
        self.assertLess(peak - before, 64 * 1024, f"peak RSS grew from {before} kB to {peak} kB")

    def test_metadataOfADeflateBombWithBoundedMemory(self):
        """The metadata of a 0.3 MB object stored deflated that inflates to
        256 MB (a private OB of zeros after its Pixel Data) took the
        server's memory up by 4 times that for each request (pydicom
        inflated it whole): it is answered, the peak grown by less than
        64 MB."""
        path = os.path.abspath(self.mktemp() + ".dcm")
        writeDeflatedBomb(path, 256, before=False)
        with open(path, "rb") as f:
            body = b"--bomb\r\nContent-Type: application/dicom\r\n\r\n" + f.read() + b"\r\n--bomb--\r\n"
        url = f"http://127.0.0.1:{self.server.webPort}/dicom-web/studies"
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=bomb'})
        with urllib.request.urlopen(request, timeout=120) as response:
            self.assertEqual(response.status, 200)
        before = self.server.peakRSSKilobytes()
        with urllib.request.urlopen(f"{url}/1.2/series/1.2.1/instances/1.2.1.1/metadata", timeout=120) as response:
            [found] = json.loads(response.read())
        peak = self.server.peakRSSKilobytes()
        self.assertEqual(found["00080018"]["Value"], ["1.2.1.1"])
        self.assertLess(peak - before, 64 * 1024, f"peak RSS grew from {before} kB to {peak} kB")

    def test_largeCompressedDecodedWithBoundedMemory(self):
        """A JPEG-LS object of 16 MB that decodes to 100 MB, retrieved by
        dicomweb-client in explicit VR little endian:
        converted file to file, the server's peak memory grows by less than
        64 MB, and every frame comes back."""
        path = os.path.abspath(self.mktemp() + ".dcm")
        frame = writeLargeCompressed(path, "1.2.3.4.6.1.2")
        self.assertEqual(self.server.store(path, extra=("-R", "-xt")).returncode, 0)
        before = self.server.peakRSSKilobytes()
        client = DICOMwebClient(url=f"http://127.0.0.1:{self.server.webPort}/dicom-web")
        instance = client.retrieve_instance("1.2.3.4.6", "1.2.3.4.6.1", "1.2.3.4.6.1.2",
                                            media_types=(("application/dicom", EXPLICIT),))
        peak = self.server.peakRSSKilobytes()
        self.assertLess(peak - before, 64 * 1024, f"peak RSS grew from {before} kB to {peak} kB")
        self.assertEqual((instance.file_meta.TransferSyntaxUID, int(instance.NumberOfFrames)), (EXPLICIT, 200))
        pixels = instance.pixel_array
        np.testing.assert_array_equal(pixels[0], frame)
        np.testing.assert_array_equal(pixels[-1], frame)
