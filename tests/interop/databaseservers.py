"""Interop tests of ``twistd -n pacs`` with its index on a real database
server (test_postgresql, test_mysql), chosen the Conquest way in dicom.ini
(PostGres = 1 or MySQL = 1, SQLHost, SQLServer, Username, Password):
DCMTK's storescu over parallel associations, findscu, Conquest-style SQL,
a kill in the middle of an ingest, ``dgate -r`` rebuilding the same rows,
and the database server crashing under a running archive.

The mixins here need, from the test case, ``driver`` (the driver plugin)
and ``serverClass`` (a tests.dbservers class); they are no test cases
themselves, so that only the test modules' classes are collected.
"""

import concurrent.futures
import os
import subprocess
import time
import urllib.parse
import urllib.request

import pydicom
from dicomweb_client.api import DICOMwebClient
from sqlalchemy import text

from pacscore.testing.corpus import generateCorpus
from tests.interop.index import BOOKKEEPING
from tests.interop.server import PacsServer, acknowledgedBy, dcmtkTool, killWhenIndexed
from tests.interop.test_find import STUDY_ROOT, findscu
from tests.interop.test_storage import checkTextCutAtNul, storedFiles
from tests.dbservers import started

TABLES = ("DICOMPatients", "DICOMStudies", "DICOMSeries", "DICOMImages")


def serverIni(driver, database, name):
    """The dicom.ini keys that put the index in ``database``'s database ``name``."""
    return {driver.flag: "1", "SQLHost": f"127.0.0.1:{database.port}", "SQLServer": name,
            "Username": database.user, "Password": database.password or "not-needed-with-trust"}


def quoted(engine, name):
    """A table or column name as ``engine``'s SQL writes it."""
    return engine.dialect.identifier_preparer.quote(name)


def selectFrom(engine, columns, table):
    """The rows of ``SELECT columns FROM table``."""
    with engine.connect() as connection:
        return connection.execute(text(f"SELECT {columns} FROM {quoted(engine, table)}")).all()


def web(server, query, form=None):
    """The text of a web page of ``server`` (a POST of ``form`` when given)."""
    data = None if form is None else urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.webPort}/cgi-bin/dgate?{query}", data, timeout=60) as r:
        return r.read().decode()


LUA_PAGE = "print('<p>' .. #dbquery('DICOMPatients', 'PatientID', \"PatientID like 'PAT%'\") .. ' patients</p>')\n"


class IndexOnServer:
    """pacs on the test run's database server of ``serverClass``."""

    def setUp(self):
        self.database = started(self.serverClass)
        self.engine = self.database.newEngine(self.driver, self)
        self.server = PacsServer(self.mktemp(), ini={**serverIni(self.driver, self.database, self.engine.url.database),
                                                     "WebReadOnly": "0"})
        with open(os.path.join(self.server.workdir, "page.lua"), "w") as f:
            f.write(LUA_PAGE)
        with open(os.path.join(self.server.workdir, "dicom.ini"), "a") as f:
            f.write("\n[lua]\nsource = page.lua\n")
        self.addCleanup(self.server.stop)
        self.server.start()

    def snapshot(self):
        """The four image-level tables, without bookkeeping columns, sorted."""
        result = {}
        for table in TABLES:
            rows = [{k: v for k, v in row._asdict().items() if k not in BOOKKEEPING}
                    for row in selectFrom(self.engine, "*", table)]
            result[table] = sorted(rows, key=lambda r: sorted((k, str(v)) for k, v in r.items()))
        return result

    def column(self, table, name):
        return sorted(r[0] for r in selectFrom(self.engine, quoted(self.engine, name), table))

    def test_textCutAtNul(self):
        checkTextCutAtNul(self, self.server)

    def test_storeFindRegenerate(self):
        scheme = self.driver.name
        self.assertIn(f"index: {scheme} {scheme}://pacs:***@127.0.0.1:{self.database.port}/",
                      self.server.log())
        images = generateCorpus(self.mktemp(), patients=3, studiesPerPatient=2, seriesPerStudy=2, imagesPerSeries=4)
        chunks = [[i.path for i in images[n::3]] for n in range(3)]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            for result in pool.map(lambda paths: self.server.store(*paths), chunks):
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(self.column("DICOMPatients", "PatientID"), sorted({i.patientID for i in images}))
        self.assertEqual(self.column("DICOMStudies", "StudyInstanceUID"), sorted({i.studyUID for i in images}))
        self.assertEqual(self.column("DICOMSeries", "SeriesInstanceUID"), sorted({i.seriesUID for i in images}))
        self.assertEqual(self.column("DICOMImages", "SOPInstanceUID"), sorted(i.sopUID for i in images))

        patient = images[0].patientID
        matches, result = findscu(self.server, STUDY_ROOT, "STUDY",
                                  {"PatientID": patient, "StudyInstanceUID": None, "NumberOfStudyRelatedInstances": None})
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(sorted(m.StudyInstanceUID for m in matches),
                         sorted({i.studyUID for i in images if i.patientID == patient}))
        self.assertEqual({int(m.NumberOfStudyRelatedInstances) for m in matches}, {8})

        # Conquest-style SQL, names in any case and unquoted, whatever case the database keeps
        result = self.server.dgate(f"--query:dicomimages|count(*)|imagepat = '{patient}' AND objectfile LIKE '%.dcm'|%s")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout.split(), ["16"])

        before = self.snapshot()
        self.server.stop()
        result = self.server.dgate("-r")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn(f"Initialising the index tables in {scheme}://pacs:***@", result.stdout)
        self.assertIn(f"{len(images)} files indexed", result.stdout)
        self.assertEqual(self.snapshot(), before)

    def test_killDuringIngestLosesNothingAcknowledged(self):
        images = generateCorpus(self.mktemp(), patients=3, studiesPerPatient=1, seriesPerStudy=2, imagesPerSeries=60)
        chunks = [[i.path for i in images[n::3]] for n in range(3)]
        processes = [subprocess.Popen(
            [dcmtkTool("storescu"), "-v", "-aec", "PACS", "127.0.0.1", str(self.server.port), *paths],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, TCP_NODELAY="1"))
            for paths in chunks]
        killWhenIndexed(self.server, lambda: len(self.column("DICOMImages", "SOPInstanceUID")), len(images) // 4)
        acknowledged = acknowledgedBy(processes)
        self.assertGreater(len(acknowledged), 0)
        self.assertLess(len(acknowledged), len(images), "the kill came before the end of the ingest")
        self.assertLessEqual(acknowledged, set(self.column("DICOMImages", "SOPInstanceUID")))
        self.assertLessEqual(acknowledged, set(storedFiles(self.server.dataDir)))
        result = self.server.dgate("-r")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(set(self.column("DICOMImages", "SOPInstanceUID")), set(storedFiles(self.server.dataDir)))
        self.server.start()
        self.assertEqual(selectFrom(self.engine, "count(*)", "PendingFiles"), [(0,)])

    def test_webPages(self):
        """The web pages' index reads and worklist writes, and a Lua page's
        SQL, on this database server."""
        images = generateCorpus(self.mktemp(), patients=2, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=2)
        self.assertEqual(self.server.store(*(i.path for i in images)).returncode, 0)
        patient = images[0].patientID
        page = web(self.server, "mode=querystudies&patientnamematch=patient1&query=" + urllib.parse.quote(
            f"DICOMStudies.patientid like '{patient[:-1]}%' and DICOMSeries.studyinsta = '{images[2].studyUID}'"))
        self.assertIn("<caption>1 studies where", page)
        self.assertIn(images[2].patientID, page)
        saved = web(self.server, "mode=saverecord", {"AccessionNumber": "DB1", "PatientName": "Db^Item",
                                                      "StartDate": "20261203"})
        self.assertIn("worklist item DB1 inserted", saved)
        self.assertEqual(self.column("DICOMWorkList", "AccessionNumber"), ["DB1"])
        self.assertIn("<p>2 patients</p>", web(self.server, "mode=lua"))

    def test_dicomWeb(self):
        """QIDO-RS with wildcards and computed attributes, STOW-RS and
        WADO-RS through dicomweb-client on this database server."""
        images = generateCorpus(self.mktemp(), patients=2, studiesPerPatient=1, seriesPerStudy=2, imagesPerSeries=1)
        client = DICOMwebClient(url=f"http://127.0.0.1:{self.server.webPort}/dicom-web")
        answer = client.store_instances([pydicom.dcmread(i.path) for i in images])
        self.assertEqual(len(answer.ReferencedSOPSequence), 4)
        (study,) = client.search_for_studies(search_filters={"PatientName": "*patient1"})
        self.assertEqual(study["00100020"]["Value"], [images[2].patientID])
        self.assertEqual(study["00080061"]["Value"], ["CT"])  # ModalitiesInStudy: string_agg / group_concat
        self.assertEqual(study["00201208"]["Value"], [2])
        (series,) = client.search_for_series(images[2].studyUID,
                                             search_filters={"SeriesInstanceUID": images[3].seriesUID})
        self.assertEqual(series["0020000E"]["Value"], [images[3].seriesUID])
        (got,) = client.retrieve_series(images[3].studyUID, images[3].seriesUID)
        self.assertEqual(got.PixelData, pydicom.dcmread(images[3].path).PixelData)


class DatabaseCrash:
    """A database server of its own, crashed and restarted under pacs."""

    def startBoth(self, images):
        """``(database server, pacs, images)``: both started, the first of
        ``images`` new images stored."""
        database = self.serverClass().start()
        self.addCleanup(database.stop)
        database.sql("CREATE DATABASE conquest")
        server = PacsServer(self.mktemp(), ini=serverIni(self.driver, database, "conquest"))
        self.addCleanup(server.stop)
        server.start()
        corpus = generateCorpus(self.mktemp(), 1, 1, 1, images)
        self.assertEqual(server.store(corpus[0].path).returncode, 0)
        return database, server, corpus

    def test_aDroppedConnectionIsReplaced(self):
        """The database server ends pacs's sessions (MariaDB's wait_timeout
        after a quiet night, an administrator): the next store is indexed
        and acknowledged (it was refused with 0x0110)."""
        database, server, (first, second) = self.startBoth(2)
        database.dropConnections("conquest")
        result = server.store(second.path)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("the database server dropped the index writer's connection", server.log())
        server.stop()
        engine = self.driver.createEngine(database.url("conquest"), None)
        self.addCleanup(engine.dispose)
        self.assertEqual(sorted(uid for uid, in selectFrom(engine, quoted(engine, "SOPInstanceUID"), "DICOMImages")),
                         sorted(i.sopUID for i in (first, second)))

    def test_storesFailWhileTheDatabaseIsDownThenSucceed(self):
        database, server, (first, second, third) = self.startBoth(3)

        database.crash()
        refused = server.store(second.path, extra=("-v",))
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("Status: 0x110", refused.stderr)  # StorageFailedErrorCode: never Success unindexed
        refused = server.store(third.path, extra=("-v",), timeout=60)  # the index writer has to reconnect now
        self.assertIn("Status: 0x110", refused.stderr)

        database.start()
        self.assertIn("cannot connect to the index database", server.log())
        for image in (second, third):  # stored again as a sender would, once the 5 s after a failed connect are over
            deadline = time.monotonic() + 15
            while (result := server.store(image.path)).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.5)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        engine = self.driver.createEngine(database.url("conquest"), None)
        self.addCleanup(engine.dispose)
        self.assertEqual(sorted(uid for uid, in selectFrom(engine, quoted(engine, "SOPInstanceUID"), "DICOMImages")),
                         sorted(i.sopUID for i in (first, second, third)))
        server.stop()
        self.assertEqual(server.dgate("-r").returncode, 0)
        self.assertEqual(set(storedFiles(server.dataDir)), {first.sopUID, second.sopUID, third.sopUID})
