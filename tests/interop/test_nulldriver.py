"""A running ``twistd -n pacs`` with an empty ``SQLServer`` (Conquest's NULL
driver) as a router: storescu's images are stored and forwarded to DCMTK's
storescp by an export and an import converter line, across a restart of
the router while the destinations are down,
findscu finds nothing, and ``dgate -r`` under the SQLite driver later
indexes every stored file."""

import os
import shutil
import sqlite3
import tempfile

from twisted.trial import unittest

from pacscore.testing.corpus import PREFIX
from tests.interop.index import column
from tests.interop.peers import StorescpServer
from tests.interop.server import PacsServer
from tests.interop.test_find import STUDY_ROOT, findscu
from tests.interop.test_forwarding import waitFor, writeImages


class NullDriverTests(unittest.TestCase):

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-null-")
        self.addCleanup(shutil.rmtree, self.workdir, ignore_errors=True)

    def start(self, peer):
        self.addCleanup(peer.stop)
        return peer.start()

    def test_routerKeepsNoIndexAndLosesNoForward(self):
        destination = StorescpServer(os.path.join(self.workdir, "storescp"), aet="NEXTHOP")
        other = StorescpServer(os.path.join(self.workdir, "other"), aet="OTHERHOP")
        router = PacsServer(os.path.join(self.workdir, "router"), ae="ROUTER", ini={
            "SQLServer": "", "ExportConverters": "1", "ExportConverter0": "forward to NEXTHOP",
            "ImportConverters": "1", "ImportConverter0": "forward image to OTHERHOP",
            "RetryDelay": "1", "FailHoldOff": "1", "MaximumExportRetries": "0"})
        router.addNode("NEXTHOP", destination.port)
        router.addNode("OTHERHOP", other.port)
        self.start(router)
        self.assertIn("index: null ", router.log())
        self.assertIn("no image index is kept", router.log())
        images = writeImages(os.path.join(self.workdir, "in"), "CT", 4, PREFIX + "78.1")
        result = router.store(*[path for path, _ in images])
        self.assertEqual(result.returncode, 0, result.stderr)

        matches, result = findscu(router, STUDY_ROOT, "STUDY", {"StudyInstanceUID": None})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(matches, [])
        queue = os.path.join(router.dataDir, "dbase", "null.db3")
        self.assertFalse(os.path.exists(router.database), "no conquest.db3 beside the NULL driver's file")
        waitFor(lambda: "cannot associate with NEXTHOP" in router.log() and "cannot associate with OTHERHOP" in
                router.log(), message="failed forwards")
        router.stop()
        with sqlite3.connect(queue) as connection:
            self.assertEqual(connection.execute("SELECT count(*) FROM PacsForwards").fetchone()[0], 8)
            self.assertEqual(connection.execute("SELECT count(*) FROM DICOMImages").fetchone()[0], 0)
            self.assertEqual(connection.execute("SELECT count(*) FROM DICOMPatients").fetchone()[0], 0)

        router.start()
        self.start(destination)
        self.start(other)
        waitFor(lambda: len(destination.files()) >= 4 and len(other.files()) >= 4, message="the forwarded images")
        for peer in (destination, other):
            self.assertEqual(sorted(ds.SOPInstanceUID for ds in peer.datasets()), sorted(sop for _, sop in images))
        router.stop()

        router.setIni(SQLServer="./data/dbase/conquest.db3")
        result = router.dgate("-r")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(column(router.database, "DICOMImages", "SOPInstanceUID"), sorted(sop for _, sop in images))
