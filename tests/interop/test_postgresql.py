"""``twistd -n pacs`` with its index on a real PostgreSQL server, chosen the
Conquest way in dicom.ini (PostGres = 1, SQLHost, SQLServer, Username,
Password): DCMTK's storescu over parallel associations, findscu, a kill in
the middle of an ingest, ``dgate -r`` rebuilding the same rows, and the
database server crashing under a running archive."""

import concurrent.futures
import os
import subprocess

from sqlalchemy import create_engine, func, select, text
from twisted.trial import unittest

from pacscore.testing.corpus import generateCorpus
from tests.interop.index import BOOKKEEPING
from tests.interop.server import PacsServer, acknowledgedBy, dcmtkTool, killWhenIndexed
from tests.interop.test_find import STUDY_ROOT, findscu
from tests.interop.test_storage import storedFiles
from tests.postgres import PostgresServer, createDatabase, postgresServer

TABLES = ("DICOMPatients", "DICOMStudies", "DICOMSeries", "DICOMImages")


class PostgreSQLServerTests(unittest.TestCase):

    def setUp(self):
        database = createDatabase(self)
        postgres = postgresServer()
        self.engine = create_engine(postgres.url(database).replace("postgresql:", "postgresql+psycopg:"))
        self.addCleanup(self.engine.dispose)
        self.server = PacsServer(self.mktemp(), ini={
            "PostGres": "1", "SQLHost": f"127.0.0.1:{postgres.port}", "SQLServer": database,
            "Username": postgres.user, "Password": "not-needed-with-trust"})
        self.addCleanup(self.server.stop)
        self.server.start()

    def snapshot(self):
        """The four image-level tables, without bookkeeping columns, sorted."""
        result = {}
        with self.engine.connect() as connection:
            for table in TABLES:
                rows = [{k: v for k, v in row._asdict().items() if k not in BOOKKEEPING}
                        for row in connection.execute(text(f'SELECT * FROM "{table}"'))]
                result[table] = sorted(rows, key=lambda r: sorted((k, str(v)) for k, v in r.items()))
        return result

    def column(self, table, name):
        with self.engine.connect() as connection:
            return sorted(r[0] for r in connection.execute(text(f'SELECT "{name}" FROM "{table}"')))

    def test_storeFindRegenerate(self):
        self.assertIn(f"index: postgresql postgresql://pacs:***@127.0.0.1:{postgresServer().port}/",
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

        # Conquest-style SQL, names in any case and unquoted, as PostgreSQL stores them
        result = self.server.dgate(f"--query:dicomimages|count(*)|imagepat = '{patient}' AND objectfile LIKE '%.dcm'|%s")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout.split(), ["16"])

        before = self.snapshot()
        self.server.stop()
        result = self.server.dgate("-r")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("Initialising the index tables in postgresql://pacs:***@", result.stdout)
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
        with self.engine.connect() as connection:
            self.assertEqual(connection.execute(select(func.count()).select_from(text('"PendingFiles"'))).scalar(), 0)


class DatabaseCrashTests(unittest.TestCase):
    """A PostgreSQL server of its own, crashed and restarted under pacs."""

    def test_storesFailWhileTheDatabaseIsDownThenSucceed(self):
        postgres = PostgresServer().start()
        self.addCleanup(postgres.stop)
        postgres.sql("CREATE DATABASE conquest")
        server = PacsServer(self.mktemp(), ini={"PostGres": "1", "SQLHost": f"127.0.0.1:{postgres.port}",
                                                "SQLServer": "conquest", "Username": postgres.user})
        self.addCleanup(server.stop)
        server.start()
        first, second, third = generateCorpus(self.mktemp(), 1, 1, 1, 3)
        self.assertEqual(server.store(first.path).returncode, 0)

        postgres.crash()
        refused = server.store(second.path, extra=("-v",))
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("Status: 0x110", refused.stderr)  # StorageFailedErrorCode: never Success unindexed
        refused = server.store(third.path, extra=("-v",), timeout=60)  # the index writer has to reconnect now
        self.assertIn("Status: 0x110", refused.stderr)

        postgres.start()
        for image in (second, third):
            result = server.store(image.path)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(postgres.sql('SELECT "SOPInstanceUID" FROM "DICOMImages" ORDER BY 1', "conquest").split(),
                         sorted(i.sopUID for i in (first, second, third)))
        server.stop()
        self.assertEqual(server.dgate("-r").returncode, 0)
        self.assertEqual(set(storedFiles(server.dataDir)), {first.sopUID, second.sopUID, third.sopUID})
