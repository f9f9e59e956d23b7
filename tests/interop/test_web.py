"""The web interface of ``twistd -n pacs`` in a real browser (headless
Chromium) and to a WADO client: images stored with storescu are found by
following the pages' links, shown by the browser, and fetched by WADO."""

import concurrent.futures
import io
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from html import unescape

import pydicom
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from pydicom.data import get_testdata_file
from twisted.trial import unittest

from pacscore.dicom import commands
from pacscore.dicom.datasets import encodeDataset
from pacscore.storage.attributes import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN as DEFLATED
from tests.interop.browser import renderedDOM, renderedFromElsewhere
from tests.interop.server import BIN, PacsServer
from tests.interop.test_find import sendOneMessage
from tests.interop.test_storage import writeLargeMultiframe
from tests.interop.test_worklist import worklistFind
from tests.pacscore.web.test_scripted import SAMPLE_CQ

CT = get_testdata_file("CT_small.dcm")
RGB = get_testdata_file("examples_rgb_color.dcm")
FRAMES = get_testdata_file("examples_ybr_color.dcm")
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT = "1.2.840.10008.1.2.1"


# runs a command; its exit status, and on standard error the peak memory (kB) it needed
PEAK_OF_CHILD = ("import resource, subprocess, sys\n"
                 "status = subprocess.call(sys.argv[1:])\n"
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
                 "sys.exit(status)\n")


def links(dom):
    return [unescape(href) for href in re.findall(r'href="([^"]*)"', dom)]


def startWithSamples(testClass):
    """Start ``testClass.server`` and store CT, RGB and the multi-frame YBR
    JPEG (as it is, ``-xy``) in it; the class torn down if that fails."""
    testClass.server.start()
    try:
        for files, extra in (((CT, RGB), ()), ((FRAMES,), ("-xy",))):
            result = testClass.server.store(*files, extra=extra)
            assert result.returncode == 0, result.stderr
    except BaseException:
        testClass.tearDownClass()
        raise


def httpGet(url, headers=None):
    """``(status, headers, body)`` of a plain HTTP GET of ``url`` with ``headers``."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class WebInterfaceTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.mkdtemp(prefix="pacs-web-")
        cls.server = PacsServer(os.path.join(cls.folder, "pacs"), ae="WEBPACS", ini={"WebAllowOrigins": "*"})
        with open(os.path.join(cls.server.workdir, "sample.cq"), "w") as f:
            f.write(SAMPLE_CQ)
        with open(os.path.join(cls.server.workdir, "list.lua"), "w") as f:
            f.write("HTML('Content-type: text/html\\n')\n"
                    "for _, row in ipairs(dbquery('DICOMPatients', 'PatientID')) do HTML('<p>%s</p>', row[1]) end\n")
        with open(os.path.join(cls.server.workdir, "dicom.ini"), "a") as f:
            f.write("\n[sample]\nsource = sample.cq\nvariable = sample 1\n\n[list]\nsource = list.lua\n"
                    "\n[unquoted]\nline0 = <html><head><title>untouched</title></head><body>\n"
                    "line1 = <a id=l href=dgate?mode=queryseries&patientidmatch=%patid%>series</a>\n"
                    "line2 = <img id=i alt=%patid%></body></html>\n")
        startWithSamples(cls)
        cls.base = f"http://127.0.0.1:{cls.server.webPort}"

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.folder, ignore_errors=True)

    def fetch(self, path):
        return httpGet(self.base + path)

    def test_metrics(self):
        """/metrics, read by prometheus_client's parser: what storescu sent is counted."""
        status, headers, body = self.fetch("/metrics")
        self.assertEqual((status, headers["Content-Type"]), (200, "text/plain; version=0.0.4; charset=utf-8"))
        samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                   for family in text_string_to_metric_families(body.decode()) for sample in family.samples}
        self.assertEqual(samples[("pacs_up", (("ae", "WEBPACS"),))], 1)
        self.assertGreaterEqual(samples[("pacs_images_received_total", ())], 3)
        self.assertGreaterEqual(samples[("pacs_associations_total", ())], 2)
        self.assertGreater(samples[("pacs_device_free_bytes", (("device", "MAG0"),))], 0)
        self.assertGreater(samples[("pacs_store_seconds_total", ())], 0)

    def test_listening(self):
        self.assertIn(f"web interface listening on tcp:{self.server.webPort}:interface=127.0.0.1", self.server.log())
        self.assertNotIn("has no login", self.server.log())

    def test_topPage(self):
        dom = renderedDOM(self.base + "/")
        self.assertIn("DICOM server 'WEBPACS'", dom)
        self.assertIn("Images received=3", dom)
        self.assertEqual(len(re.findall(r"<form ", dom)), 5)  # local patients, studies, series, worklist; find on a server
        self.assertIn("<option>(local)</option><option>CONQUESTSRV1</option>", dom)

    def test_browseToEachImage(self):
        """From the patient list down to each stored image, shown by Chromium
        at its size (the viewer page writes what the browser decoded)."""
        expected = {"1CT1": "128 x 128 pixels", "13US1": "320 x 240 pixels", "204": "320 x 240 pixels"}
        patients = renderedDOM(self.base + "/cgi-bin/dgate?mode=querypatients")
        self.assertIn("3 patients", patients)
        shown = {}
        for patientLink in links(patients)[:3]:
            studies = renderedDOM(self.base + patientLink)
            series = renderedDOM(self.base + links(studies)[0])
            images = renderedDOM(self.base + links(series)[0])
            viewer = renderedDOM(self.base + links(images)[0])
            patientID = re.search(r"slice ([^:<]+):", viewer).group(1)
            shown[patientID] = re.search(r'<p id="shape">([^<]*)</p>', viewer).group(1)
        self.assertEqual(shown, expected)

    def test_frameAndWindow(self):
        ybr = pydicom.dcmread(FRAMES, stop_before_pixels=True)
        viewer = renderedDOM(self.base + f"/cgi-bin/dgate?mode=sliceviewer&slice={ybr.PatientID}:"
                                         f"{ybr.SOPInstanceUID}&lw=0/0/29&size=160&graphic=gif")
        self.assertIn('<p id="shape">160 x 120 pixels</p>', viewer)
        beyond = renderedDOM(self.base + f"/cgi-bin/dgate?mode=sliceviewer&slice=:{ybr.SOPInstanceUID}&lw=0/0/30")
        self.assertIn('<p id="shape">the image cannot be shown</p>', beyond)

    def test_sizeInPercentOfTheWindow(self):
        """``size=N%``: Chromium shows the slice N% of its window high, as
        Conquest's pages do (the viewer page, with a script measuring it,
        loaded from another origin)."""
        ct = pydicom.dcmread(CT, stop_before_pixels=True)
        for percent in (50, 200):
            status, _, page = self.fetch(f"/cgi-bin/dgate?mode=sliceviewer&slice={ct.PatientID}:{ct.SOPInstanceUID}"
                                         f"&size={percent}%25")
            self.assertEqual(status, 200)
            measured = page.decode().replace(
                "</body>", '<script>window.addEventListener("load", () => document.body.insertAdjacentHTML('
                '"beforeend", `<p id="measured">${document.getElementById("slice").height} ${window.innerHeight}</p>`'
                '));</script></body>').replace("<head>", f'<head><base href="{self.base}/cgi-bin/dgate">')
            dom = renderedFromElsewhere(self.folder, f"size{percent}.html", measured)
            shown, window = map(int, re.search(r'<p id="measured">(\d+) (\d+)</p>', dom).groups())
            self.assertLessEqual(abs(shown - window * percent / 100), 1, (percent, shown, window))

    def test_scriptedSample(self):
        dom = renderedDOM(self.base + "/cgi-bin/dgate?mode=sample")
        self.assertIn("Conquest DICOM server - sample 1", dom)
        self.assertIn("Images received=3", dom)
        self.assertIn("<br>1CT1", dom)

    def test_requestValuesAddNoAttributesToUnquotedOnes(self):
        """A value put into the unquoted attributes of a scripted page (as
        Conquest's pages write them) stays the attribute's value: the
        handler it brings never runs, the link keeps the whole value."""
        hostile = "x src=none onerror=document.title=document.domain"
        dom = renderedDOM(f"{self.base}/cgi-bin/dgate?mode=unquoted&" + urllib.parse.urlencode({"patid": hostile}))
        self.assertIn("<title>untouched</title>", dom)
        self.assertIn(f'<img id="i" alt="{hostile}">', dom)
        link = re.search(r'<a id="l" href="([^"]*)">', dom)
        self.assertEqual(urllib.parse.parse_qs(urllib.parse.urlsplit(unescape(link.group(1))).query)["patientidmatch"],
                         [hostile])

    def test_luaPage(self):
        dom = renderedDOM(self.base + "/cgi-bin/dgate?mode=list")
        self.assertEqual(sorted(re.findall(r"<p>([^<]*)</p>", dom)), ["13US1", "1CT1", "204"])

    def test_framedByItsOwnPagesAlone(self):
        """A page of another site framing a page of pacs (to have its user
        click "Delete study" unawares: clickjacking) gets it not shown; the
        pages of pacs may frame each other (a scripted viewer's frames)."""
        self.server.setIni(section="framed", line0='<p>framed</p><iframe src="about:blank"></iframe>')
        framer = ('<html><head><title>waiting</title></head><body><iframe src="{}/cgi-bin/dgate?mode=framed" '
                  'onload="document.title = `subframes ${{this.contentWindow.length}}`"></iframe></body></html>')
        self.server.setIni(section="framer", line0=framer.format(""))
        self.assertEqual(self.server.dgate("--read_ini:").returncode, 0)
        self.assertIn("<title>subframes 1</title>", renderedDOM(f"{self.base}/cgi-bin/dgate?mode=framer"))
        dom = renderedFromElsewhere(self.folder, "framer.html", framer.format(self.base))
        self.assertIn("<title>subframes 0</title>", dom)

    def test_wado(self):
        ct = pydicom.dcmread(CT)
        query = (f"/wado?requestType=WADO&studyUID={ct.StudyInstanceUID}&seriesUID={ct.SeriesInstanceUID}"
                 f"&objectUID={ct.SOPInstanceUID}")
        status, headers, body = self.fetch(query)
        self.assertEqual((status, headers["Content-Type"]), (200, "image/jpeg"))
        self.assertEqual(Image.open(io.BytesIO(body)).size, (128, 128))
        status, headers, body = self.fetch(query.replace("/wado?", "/cgi-bin/dgate.exe?")
                                           + "&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2.4.70")
        received = pydicom.dcmread(io.BytesIO(body))
        self.assertEqual(received.file_meta.TransferSyntaxUID, "1.2.840.10008.1.2.4.70")
        self.assertEqual(received.pixel_array.tolist(), ct.pixel_array.tolist())
        status, _, _ = self.fetch(query.replace(ct.SOPInstanceUID, "1.2.3.4"))
        self.assertEqual(status, 404)
        status, headers, body = self.fetch(query + "&contentType=application/dicom&anonymize=yes")
        anonymized = pydicom.dcmread(io.BytesIO(body))
        self.assertEqual((status, anonymized.PatientIdentityRemoved), (200, "YES"))
        for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            self.assertNotEqual(anonymized[keyword].value, ct[keyword].value, keyword)
        self.assertEqual(anonymized.InstitutionName, "ANONYMIZED")  # X/Z/D: a dummy
        self.assertEqual(anonymized.pixel_array.tolist(), ct.pixel_array.tolist())
        original = self.server.dgate(f"--changeuidback:{anonymized.StudyInstanceUID}").stdout
        self.assertEqual(original.strip(), ct.StudyInstanceUID)

    def test_zipStudy(self):
        ybr = pydicom.dcmread(FRAMES, stop_before_pixels=True)
        status, headers, body = self.fetch(f"/cgi-bin/dgate?mode=zipstudy&study=:{ybr.StudyInstanceUID}&dum=.zip")
        self.assertEqual((status, headers["Content-Type"]), (200, "application/zip"))
        with zipfile.ZipFile(io.BytesIO(body)) as zipped:
            [name] = zipped.namelist()
            received = pydicom.dcmread(zipped.open(name))
        self.assertEqual(received.SOPInstanceUID, ybr.SOPInstanceUID)
        self.assertEqual(received.PixelData, pydicom.dcmread(FRAMES).PixelData)

    def test_imageListsOfASeries(self):
        """Conquest's ImageJ viewer pages load a series' images from
        mode=imagelisturls ('there is no page 'imagelisturls'', 404): one
        URL a line, each fetching its image's DICOM file; imagelisthttp
        lists the files under WebMAG0Address (by default http://<host>/mag0)."""
        ct = pydicom.dcmread(CT, stop_before_pixels=True)
        series = urllib.parse.quote(f"{ct.PatientID}:{ct.SeriesInstanceUID}")
        status, headers, body = self.fetch(f"/cgi-bin/dgate?mode=imagelisturls&series={series}")
        self.assertEqual((status, headers["Content-Type"]), (200, "text/plain; charset=utf-8"))
        [url] = body.decode().splitlines()
        self.assertTrue(url.endswith("&dsize=0&compress=un&dum=.dcm"), url)
        status, headers, dicom = self.fetch(url)
        self.assertEqual((status, headers["Content-Type"]), (200, "application/dicom"))
        self.assertEqual(pydicom.dcmread(io.BytesIO(dicom)).SOPInstanceUID, ct.SOPInstanceUID)
        status, _, body = self.fetch(f"/cgi-bin/dgate?mode=imagelisthttp&series={series}")
        [fileURL] = body.decode().splitlines()
        self.assertTrue(fileURL.startswith("http://127.0.0.1/mag0/"), fileURL)
        stored = os.path.join(self.server.dataDir, *fileURL.removeprefix("http://127.0.0.1/mag0/").split("/"))
        self.assertEqual(pydicom.dcmread(stored, stop_before_pixels=True).SOPInstanceUID, ct.SOPInstanceUID)

    def test_badRequestsKeepItServing(self):
        status, _, body = self.fetch("/cgi-bin/dgate?mode=querypatients&query=1%3D1")
        self.assertEqual(status, 400)
        with socket.create_connection(("127.0.0.1", self.server.webPort), timeout=10) as s:
            s.sendall(b"NONSENSE\r\n\r\n")
            self.assertIn(b"400", s.recv(1024))
        status, _, body = self.fetch("/cgi-bin/dgate?mode=querypatients")
        self.assertEqual(status, 200)
        self.assertIn("web: 127.0.0.1 /cgi-bin/dgate?mode=querypatients&query=1%3D1: 400", self.server.log())

    def test_otherMethodsRefused(self):
        """PUT, DELETE, PATCH, TRACE (and OPTIONS but on /dicom-web and /wado): a 405
        naming what is answered, and a log line; DICOMweb's and WADO's with their CORS header."""
        for path in ("/cgi-bin/dgate?mode=top", "/wado", "/metrics", "/dicom-web/studies"):
            for method in ("PUT", "DELETE", "PATCH", "TRACE", "OPTIONS"):
                if method == "OPTIONS" and path.startswith(("/dicom-web", "/wado")):
                    continue
                request = urllib.request.Request(self.base + path, data=b"x", method=method)
                with self.assertRaises(urllib.error.HTTPError) as caught:
                    urllib.request.urlopen(request, timeout=60)
                self.assertEqual((path, method, caught.exception.code), (path, method, 405))
                self.assertIn("GET, HEAD", caught.exception.headers["Allow"])
                cors = caught.exception.headers["Access-Control-Allow-Origin"]
                self.assertEqual(cors, "*" if path.startswith(("/dicom-web", "/wado")) else None, path)
        self.assertIn("web: 127.0.0.1 /metrics: 405 DELETE is not answered here: GET, HEAD, POST is", self.server.log())


class LargeIndexTests(unittest.TestCase):
    """A "Find on a server" or list page of an index of 300,000 patients
    (rows put straight into it, as fast) reads and shows the first 1000:
    a small page, and DICOM answered meanwhile as ever."""

    PATIENTS = 300000

    def setUp(self):
        folder = tempfile.mkdtemp(prefix="pacs-web-")
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        self.server = PacsServer(os.path.join(folder, "pacs"), ae="BIGPACS")
        self.server.start()
        self.addCleanup(self.server.stop)
        subprocess.run(["sqlite3", self.server.database,
                        f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{self.PATIENTS}) "
                        "INSERT INTO DICOMPatients (PatientID, PatientName, PatientBirthDate, PatientSex) "
                        "SELECT 'FAKE'||x, 'Fake^Patient'||x, '19700101', 'M' FROM c;"], check=True)

    def test_findersCut(self):
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pages = pool.submit(lambda: [httpGet(f"http://127.0.0.1:{self.server.webPort}/cgi-bin/dgate?mode={mode}")
                                         for mode in ("patientfinder&dest=(local)&query=", "querypatients",
                                                      "patientfinder&dest=(local)&query=fake")])
            echoes = []
            while not echoes or not pages.done():
                started = time.monotonic()
                self.assertEqual(self.server.echo().returncode, 0)
                echoes.append(time.monotonic() - started)
            for status, _, body in pages.result():
                self.assertEqual(status, 200)
                self.assertIn(b"more than 1000 patients", body)
                self.assertIn(b"(the first 1000 shown; max=N shows more)</caption>", body)
                self.assertLess(len(body), 300000)
        self.assertLess(max(echoes), 2)  # as the page was made; the whole list took 4 s and more


class WebEndpointTests(unittest.TestCase):

    def test_off(self):
        server = PacsServer(self.mktemp(), ini={"WebEndpoint": "off"}).start()
        self.addCleanup(server.stop)
        self.assertNotIn("web interface listening", server.log())
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex(("127.0.0.1", server.webPort)), 0)

    def test_openToTheNetworkWarns(self):
        server = PacsServer(self.mktemp())
        server.setIni(WebEndpoint=f"tcp:{server.webPort}")
        server.start()
        self.addCleanup(server.stop)
        self.assertIn(f"web interface on tcp:{server.webPort}: the web interface has no login", server.log())
        with urllib.request.urlopen(f"http://127.0.0.1:{server.webPort}/cgi-bin/dgate?mode=top", timeout=30) as r:
            self.assertEqual(r.status, 200)


class WebEditTests(unittest.TestCase):
    """WebReadOnly = 0: a browser's multipart upload and a delete, over HTTP."""

    def setUp(self):
        self.server = PacsServer(self.mktemp(), ini={"WebReadOnly": "0"}).start()
        self.addCleanup(self.server.stop)
        self.base = f"http://127.0.0.1:{self.server.webPort}/cgi-bin/dgate"

    def post(self, query, body, contentType, **headers):
        request = urllib.request.Request(f"{self.base}?{query}", data=body, method="POST",
                                         headers={"Content-Type": contentType, **headers})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def test_uploadThenDelete(self):
        with open(CT, "rb") as f:
            content = f.read()
        boundary = "pacsboundary1234"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"filetoupload\"; filename=\"ct.dcm\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
        status, page = self.post("mode=addlocalfile", body, f"multipart/form-data; boundary={boundary}")
        self.assertEqual(status, 200, page)
        ct = pydicom.dcmread(CT, stop_before_pixels=True)
        self.assertIn(f"{ct.SOPInstanceUID} stored as", page)
        self.assertEqual(self.server.dgate("--imagelister:(local)||" + ct.SeriesInstanceUID).stdout.count("MAG0:"), 1)
        status, page = self.post("mode=deletestudy", f"study=:{ct.StudyInstanceUID}".encode(),
                                 "application/x-www-form-urlencoded")
        self.assertEqual(status, 200, page)
        self.assertIn("1 object(s) removed from the server", page)
        self.assertEqual(self.server.dgate("--imagelister:(local)||" + ct.SeriesInstanceUID).stdout.count("MAG0:"), 0)

    def test_reboundPageRefused(self):
        """Without WebUsers, a page of evil.example, its name pointed at
        this server (DNS rebinding), asks as same-origin: a 421 and a log
        line, and the study stays."""
        self.assertEqual(self.server.store(CT).returncode, 0)
        ct = pydicom.dcmread(CT, stop_before_pixels=True)
        rebound = f"evil.example:{self.server.webPort}"
        browser = {"Host": rebound, "Origin": f"http://{rebound}", "Sec-Fetch-Site": "same-origin"}
        status, page = self.post("mode=deletestudy", f"study=:{ct.StudyInstanceUID}".encode(),
                                 "application/x-www-form-urlencoded", **browser)
        self.assertEqual(status, 421, page)
        self.assertEqual(httpGet(f"http://127.0.0.1:{self.server.webPort}/dicom-web/studies", browser)[0], 421)
        self.assertEqual(self.server.dgate("--imagelister:(local)||" + ct.SeriesInstanceUID).stdout.count("MAG0:"), 1)
        self.assertIn(f"/cgi-bin/dgate?mode=deletestudy: 421 this server does not answer for the host name "
                      f"'{rebound}'", self.server.log())

    def test_formsOfOtherSitesRefused(self):
        """Chromium posting the delete form of a page of another origin (a
        CSRF attack) gets a 403 and the study stays; the same form on a
        page of this server (a scripted page) deletes it."""
        self.assertEqual(self.server.store(CT).returncode, 0)
        ct = pydicom.dcmread(CT, stop_before_pixels=True)
        form = ('<html><body><form id="f" method="post" action="{}?mode=deletestudy">'
                f'<input type="hidden" name="study" value=":{ct.StudyInstanceUID}"></form>'
                "<script>document.getElementById('f').submit()</script></body></html>")
        folder = tempfile.mkdtemp(dir=self.server.workdir)
        dom = renderedFromElsewhere(folder, "attack.html", form.format(self.base))
        self.assertIn("a page of another site may not change the archive (Sec-Fetch-Site: ", dom)
        self.assertIn("403 a page of another site may not change the archive", self.server.log())
        listed = "--imagelister:(local)||" + ct.SeriesInstanceUID
        self.assertEqual(self.server.dgate(listed).stdout.count("MAG0:"), 1)
        self.server.setIni(section="ownpage", line0=form.format("/cgi-bin/dgate"))
        self.assertEqual(self.server.dgate("--read_ini:").returncode, 0)
        dom = renderedDOM(f"{self.base}?mode=ownpage")
        self.assertIn("1 object(s) removed from the server", dom)
        self.assertEqual(self.server.dgate(listed).stdout.count("MAG0:"), 0)

    def test_worklistItemForModalities(self):
        """An item added on the web page is what a modality's worklist query finds."""
        form = urllib.parse.urlencode({"original accession": "", "AccessionNumber": "WEB1", "PatientID": "WP1",
                                       "PatientName": "Web^Order", "Modality": "MR", "StartDate": "20261203",
                                       "StartTime": "1015", "ScheduledAE": "MR1"}).encode()
        status, page = self.post("mode=saverecord", form, "application/x-www-form-urlencoded")
        self.assertEqual(status, 200, page)
        [match] = worklistFind(self.server, keys=["AccessionNumber", "PatientName"],
                               sequenceKeys=["Modality=MR", "ScheduledStationAETitle"])
        self.assertEqual((match.AccessionNumber, str(match.PatientName)), ("WEB1", "Web^Order"))
        self.assertEqual(match.ScheduledProcedureStepSequence[0].ScheduledStationAETitle, "MR1")


class CGIScriptTests(unittest.TestCase):
    """dgate run by a web server as a CGI script (Conquest's set-up): it asks
    the running server's web interface and answers as a CGI script does."""

    def setUp(self):
        self.server = PacsServer(self.mktemp(), ini={"WebReadOnly": "0", "WebHostNames": "pacs.example"}).start()
        self.addCleanup(self.server.stop)

    def cgi(self, query, method="GET", body=b"", contentType="", **browser):
        environment = dict(os.environ, GATEWAY_INTERFACE="CGI/1.1", QUERY_STRING=query, REQUEST_METHOD=method,
                           CONTENT_LENGTH=browser.pop("CONTENT_LENGTH", str(len(body))), CONTENT_TYPE=contentType,
                           **browser)
        result = subprocess.run([os.path.join(BIN, "dgate")], input=body, capture_output=True,
                                cwd=self.server.workdir, env=environment, timeout=120)
        head, _, content = result.stdout.partition(b"\r\n\r\n")
        return result.returncode, head.decode("latin-1").split("\r\n"), content

    def test_pages(self):
        self.assertEqual(self.server.store(CT).returncode, 0)
        status, head, content = self.cgi("mode=querypatients")
        framedHere = ["X-Frame-Options: SAMEORIGIN", "Content-Security-Policy: frame-ancestors 'self'"]
        self.assertEqual((status, head), (0, [*framedHere, "Content-Type: text/html; charset=utf-8",
                                              "Cache-Control: no-cache"]))
        self.assertIn(b"<caption>1 patients</caption>", content)
        ct = pydicom.dcmread(CT, stop_before_pixels=True)
        status, head, content = self.cgi(f"mode=slice&slice=:{ct.SOPInstanceUID}&graphic=gif")
        self.assertEqual(head, [*framedHere, "Content-Type: image/gif"])
        self.assertEqual(Image.open(io.BytesIO(content)).size, (128, 128))
        status, head, _ = self.cgi("mode=nothing")
        self.assertEqual(head[0], "Status: 404 Not Found")

    def test_linksNameTheScriptAsTheBrowserReachesIt(self):
        """Behind Apache at /cgi-bin/conquest/dgate.exe (SCRIPT_NAME), or
        where dicom.ini's WebScriptAddress says, every link and form of
        the pages goes there, not to pacs's own /cgi-bin/dgate."""
        self.assertEqual(self.server.store(CT).returncode, 0)
        _, _, content = self.cgi("mode=querypatients", SCRIPT_NAME="/cgi-bin/conquest/dgate.exe")
        page = content.decode()
        self.assertIn('href="/cgi-bin/conquest/dgate.exe?mode=querystudies', page)
        self.assertNotIn("/cgi-bin/dgate", page)
        self.server.setIni(WebScriptAddress="http://webhost/scripts/dgate.exe")
        _, _, content = self.cgi("mode=studydeleter&study=:1.2.3", SCRIPT_NAME="/cgi-bin/conquest/dgate.exe")
        self.assertIn('action="http://webhost/scripts/dgate.exe?mode=deletestudy"', content.decode())
        self.assertNotIn("/cgi-bin/", content.decode())

    def test_sharingHeadersPassed(self):
        """The CORS headers of a WADO answer (Vary and Access-Control-Expose-Headers
        beside the allowed origin) reach the browser through the gateway."""
        ct = pydicom.dcmread(CT, stop_before_pixels=True)
        server = PacsServer(self.mktemp(), ini={"WebAllowOrigins": "http://viewer.example"}).start()
        self.addCleanup(server.stop)
        self.assertEqual(server.store(CT).returncode, 0)
        self.server = server
        _, head, _ = self.cgi(f"requestType=WADO&studyUID={ct.StudyInstanceUID}&seriesUID={ct.SeriesInstanceUID}"
                              f"&objectUID={ct.SOPInstanceUID}", HTTP_ORIGIN="http://viewer.example")
        for line in ("Access-Control-Allow-Origin: http://viewer.example", "Vary: Origin",
                     "Access-Control-Expose-Headers: Warning"):
            self.assertIn(line, head)

    def test_post(self):
        status, head, content = self.cgi("mode=saverecord", "POST", b"AccessionNumber=CGI1&PatientName=Cgi%5EPost",
                                         "application/x-www-form-urlencoded")
        self.assertEqual(status, 0)
        self.assertIn(b"worklist item CGI1 inserted", content)

    def test_postBodyEndingEarly(self):
        """A POST body that ends before CONTENT_LENGTH (an upload the browser
        broke off) is a 400 at once, with why on standard error, and the
        server is left with no request waiting for the rest."""
        started = time.monotonic()
        status, head, content = self.cgi("mode=saverecord", "POST", b"AccessionNumber=CGI3",
                                         "application/x-www-form-urlencoded", CONTENT_LENGTH="100")
        self.assertLess(time.monotonic() - started, 30)
        self.assertEqual((status, head[0]), (1, "Status: 400 Bad Request"))
        self.assertIn(b"ended after 20 of its 100 bytes", content)
        self.assertEqual(worklistFind(self.server, keys=["AccessionNumber"]), [])

    def test_postOfAnotherSite(self):
        """The browser's Origin, Host and Sec-Fetch-Site go through the
        gateway: a form of another site's page is refused, one of the
        server's own pages (behind Apache at another host name) accepted."""
        form = b"AccessionNumber=CGI2&PatientName=Cgi%5EPost"
        urlencoded = "application/x-www-form-urlencoded"
        for browser in ({"HTTP_SEC_FETCH_SITE": "cross-site"},
                        {"HTTP_ORIGIN": "http://evil.example", "HTTP_HOST": "pacs.example"}):
            status, head, content = self.cgi("mode=saverecord", "POST", form, urlencoded, **browser)
            self.assertEqual((status, head[0]), (0, "Status: 403 Forbidden"), browser)
            self.assertIn(b"may not change the archive", content)
        self.assertEqual(worklistFind(self.server, keys=["AccessionNumber"]), [])
        status, head, content = self.cgi("mode=saverecord", "POST", form, urlencoded,
                                         HTTP_ORIGIN="https://pacs.example", HTTP_HOST="pacs.example")
        self.assertIn(b"worklist item CGI2 inserted", content)

    def test_hostNameNotListed(self):
        """Apache answering for a host name WebHostNames does not list (a
        rebound page's): its request is refused."""
        status, head, content = self.cgi("mode=querypatients", HTTP_HOST="evil.example")
        self.assertEqual((status, head[0]), (0, "Status: 421 Misdirected Request"))

    def peakKilobytes(self, query, method="GET", posted=None):
        """dgate's exit status, peak memory (kB) and output size, as a CGI
        script asked ``query`` (``posted``: the path of a POST body), its
        output read as a web server reads it.  dgate is started by a small
        process that says its peak: a child of this one would count this
        one's peak as its own."""
        length = os.path.getsize(posted) if posted else 0
        environment = dict(os.environ, GATEWAY_INTERFACE="CGI/1.1", QUERY_STRING=query, REQUEST_METHOD=method,
                           CONTENT_LENGTH=str(length), CONTENT_TYPE="application/octet-stream")
        with open(posted or os.devnull, "rb") as body, tempfile.TemporaryFile() as peak:
            process = subprocess.Popen([sys.executable, "-c", PEAK_OF_CHILD, os.path.join(BIN, "dgate")], stdin=body,
                                       stdout=subprocess.PIPE, stderr=peak, cwd=self.server.workdir, env=environment)
            size = 0
            while chunk := process.stdout.read(1 << 16):
                size += len(chunk)
            process.stdout.close()
            status = process.wait(120)
            peak.seek(0)
            return status, int(peak.read().split()[-1]), size

    def test_largeAnswersStreamed(self):
        """A zip or DICOM file of 50 MB, or an upload of one, goes through
        the gateway a chunk at a time: dgate needs no more memory than for
        the top page (it held them whole, twice, and sent nothing until it
        had all)."""
        path = os.path.join(self.server.workdir, "large.dcm")
        size = writeLargeMultiframe(path, "1.2.3.4.5.6.11", frames=100)
        self.assertEqual(self.server.store(path).returncode, 0)
        large = pydicom.dcmread(path, stop_before_pixels=True)
        _, small, _ = self.peakKilobytes("mode=top")
        for query in (f"mode=zipstudy&study=:{large.StudyInstanceUID}",
                      f"mode=dicom&slice={large.PatientID}:{large.SOPInstanceUID}"):
            status, peak, sent = self.peakKilobytes(query)
            self.assertEqual(status, 0)
            self.assertGreater(sent, size * 0.9, query)
            self.assertLess(peak - small, 20 << 10, query)
        status, peak, _ = self.peakKilobytes("mode=top", "POST", path)
        self.assertEqual(status, 0)
        self.assertLess(peak - small, 20 << 10, "POST")

    def test_uploadTooLarge(self):
        """An upload over WebMaxUploadMB, larger than the sockets hold: the
        413 the server answers before it reads the body is relayed, though
        the gateway could not send the whole body (it answered 502)."""
        self.server.stop()
        self.server.setIni(WebMaxUploadMB="1")
        self.server.start()
        status, head, content = self.cgi("mode=addlocalfile", "POST", b"z" * (20 << 20),
                                         "multipart/form-data; boundary=zzz")
        self.assertEqual((status, head[0][:12]), (0, "Status: 413 "), content[:200])
        self.assertIn(b"is larger than the 1048576 this request may send", content)

    def test_noServer(self):
        self.server.stop()
        status, head, content = self.cgi("mode=top")
        self.assertEqual((status, head[0]), (1, "Status: 502 Bad Gateway"))
        self.assertIn(b"no pacs web interface at 127.0.0.1:", content)


class WebConnectionLimitTests(unittest.TestCase):
    """A slowloris client (a header line every few seconds on many
    connections) gets WebMaxConnectionsPerPeer of them and a 503 for more
    (the head deadline is tested with a Clock in tests/pacscore/web/test_channel.py);
    DICOM, and the web once one ended, are served all the while."""

    def test_slowloris(self):
        server = PacsServer(self.mktemp(), ini={"WebMaxConnectionsPerPeer": "4"}).start()
        self.addCleanup(server.stop)
        slow = []
        for _ in range(6):
            s = socket.create_connection(("127.0.0.1", server.webPort), timeout=10)
            self.addCleanup(s.close)
            s.sendall(b"GET /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(s)
        answers = [s.recv(200) for s in slow[4:]]
        self.assertEqual([answer.split(b"\r\n")[0] for answer in answers], [b"HTTP/1.1 503 Service Unavailable"] * 2)
        self.assertEqual(server.echo().returncode, 0)
        self.assertIn("127.0.0.1: connection closed at once: it has 4 connections open (WebMaxConnectionsPerPeer 4)",
                      server.log())
        slow[0].close()
        time.sleep(0.5)
        status, _, _ = httpGet(f"http://127.0.0.1:{server.webPort}/dicom-web/studies")
        self.assertEqual(status, 200)


class DeflatedObjectTests(unittest.TestCase):
    """Secondary Captures stored in Deflated Explicit VR Little Endian that
    inflate to far more than they take, asked for by WADO in explicit VR
    little endian: the server's memory does not grow by what they inflate
    to.  A small one (1 MB of zeros in a private OB, 1 GB inflated, no
    Pixel Data although its Rows and Columns claim 1 GB of them) is
    converted in memory, so refused (422) once 128 MB are inflated, never
    inflated to disk; a large
    one (9 MB stored, 512 MB of pixels) is inflated into a temporary file
    and sent from there, but refused (422) when the elements around its
    Pixel Data are more than 128 MB."""

    def setUp(self):
        self.server = PacsServer(self.mktemp())
        self.server.start()
        self.addCleanup(self.server.stop)

    def store(self, header, size, start=b"", pixels=None):
        """Store a deflated object with an element of ``header`` (bytes
        without the length) and ``size`` bytes, ``start`` then zeros, and
        the Pixel Data ``pixels`` if given; the WADO-URI address of the object."""
        uids = [pydicom.uid.generate_uid() for _ in range(3)]
        ds = pydicom.Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SECONDARY_CAPTURE, uids[0], "OT"
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "BOMB", uids[1], uids[2]
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = size >> 15, 1 << 15, 8, 1
        if pixels is not None:
            ds.PixelData = pixels
        group, element = struct.unpack_from("<HH", header)
        head, tail = pydicom.Dataset(), pydicom.Dataset()  # the elements before and after it
        for item in ds:
            (head if item.tag < (group << 16 | element) else tail).add(item)
        deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        parts = [deflater.compress(encodeDataset(head, EXPLICIT) + header + size.to_bytes(4, "little") + start)]
        zeros = bytes(16 << 20)
        left = size - len(start)
        while left:
            parts.append(deflater.compress(zeros[:left]))
            left -= min(left, len(zeros))
        parts += [deflater.compress(encodeDataset(tail, EXPLICIT)), deflater.flush()]
        dataset = b"".join(parts)
        dataset += b"\x00" * (len(dataset) % 2)
        store = {commands.COMMAND_FIELD: commands.C_STORE_RQ, commands.MESSAGE_ID: 1, commands.PRIORITY: 0,
                 commands.AFFECTED_SOP_CLASS_UID: SECONDARY_CAPTURE, commands.AFFECTED_SOP_INSTANCE_UID: uids[0]}
        response = sendOneMessage(self.server, SECONDARY_CAPTURE, DEFLATED, store, dataset, timeout=60)
        self.assertEqual(response[commands.STATUS], 0, response)
        return (f"http://127.0.0.1:{self.server.webPort}/wado?requestType=WADO&studyUID={uids[1]}"
                f"&seriesUID={uids[2]}&objectUID={uids[0]}&contentType=application/dicom"
                f"&transferSyntax={EXPLICIT}")

    def test_smallOneRefusedWithinTheLimit(self):
        url = self.store(b"\x09\x00\x01\x10OB\x00\x00", 1 << 30)
        before = self.server.peakRSSKilobytes()
        status, _, body = httpGet(url)
        self.assertEqual(status, 422, body)
        self.assertIn(b"the deflated data set has more than 128 MB of elements around its Pixel Data", body)
        self.assertLess(self.server.peakRSSKilobytes() - before, 300 << 10)

    def test_largeOneConvertedFileToFile(self):
        url = self.store(b"\xe0\x7f\x10\x00OB\x00\x00", 1 << 29, os.urandom(9 << 20))
        before = self.server.peakRSSKilobytes()
        received = 0
        with urllib.request.urlopen(url, timeout=120) as response:
            self.assertEqual(response.status, 200)
            while chunk := response.read(1 << 20):
                received += len(chunk)
        self.assertGreater(received, 1 << 29)
        self.assertLess(self.server.peakRSSKilobytes() - before, 300 << 10)

    def test_largeOneWithHugeElementsRefused(self):
        url = self.store(b"\x09\x00\x01\x10OB\x00\x00", 1 << 28, os.urandom(9 << 20), bytes(4))
        before = self.server.peakRSSKilobytes()
        with self.assertRaises(urllib.error.HTTPError) as raised:
            with urllib.request.urlopen(url, timeout=120) as response:
                while response.read(1 << 20):  # 256 MB before the fix
                    pass
        self.assertEqual(raised.exception.code, 422)
        self.assertIn(b"more than 128 MB of elements around its Pixel Data", raised.exception.read())
        self.assertLess(self.server.peakRSSKilobytes() - before, 300 << 10)
