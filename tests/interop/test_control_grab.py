"""``dgate -g`` / ``--grabimagesfromserver`` between two running ``twistd
-n pacs``: HERE fetches from THERE what THERE holds of a date's studies
and HERE lacks - whole series and single images - and nothing twice."""

import os
import shutil
import tempfile

from twisted.trial import unittest

from pacscore.testing.corpus import generateCorpus
from tests.interop.server import PacsServer
from tests.interop.test_find import PATIENT_ROOT, findscu


class GrabImagesTests(unittest.TestCase):

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-grab-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.here = PacsServer(os.path.join(self.workdir, "here"), ae="HERE")
        self.there = PacsServer(os.path.join(self.workdir, "there"), ae="THERE")
        self.here.addNode("THERE", self.there.port)
        self.there.addNode("HERE", self.here.port)
        for server in (self.here, self.there):
            server.start()
            self.addCleanup(server.stop)
        # 2 patients x 1 study x 2 series x 3 images, all of 20240102
        self.images = generateCorpus(os.path.join(self.workdir, "corpus"), patients=2, studiesPerPatient=1,
                                     seriesPerStudy=2, imagesPerSeries=3)
        self.assertEqual(self.there.store(*(image.path for image in self.images)).returncode, 0)
        self.held = [self.images[0], self.images[1], self.images[6]]  # two of a series, one of another study
        self.assertEqual(self.here.store(*(image.path for image in self.held)).returncode, 0)

    def sopsHere(self):
        matches, _ = findscu(self.here, PATIENT_ROOT, "IMAGE", {"PatientID": None, "StudyInstanceUID": None,
                                                                 "SeriesInstanceUID": None, "SOPInstanceUID": None})
        return sorted(m.SOPInstanceUID for m in matches)

    def test_grabWhatIsMissing(self):
        result = self.here.dgate("-gTHERE,20240101-20240131")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout.strip(),
                         "9 object(s) of 20240101-20240131 on THERE missing here: 9 moved (0 failed, 0 warning(s)) "
                         "in 4 C-MOVE(s)")
        self.assertEqual(self.sopsHere(), sorted(image.sopUID for image in self.images))
        again = self.here.dgate("--grabimagesfromserver:THERE,20240102")
        self.assertEqual(again.stdout.strip(), "nothing of 20240102 on THERE is missing here")
        other = self.here.dgate("--grabimagesfromserver:THERE,20230101")
        self.assertEqual(other.stdout.strip(), "nothing of 20230101 on THERE is missing here")

    def test_refusals(self):
        self.assertIn("acrnema.map", self.here.dgate("--grabimagesfromserver:NOWHERE,20240102").stderr)
        self.assertIn("expected YYYYMMDD", self.here.dgate("--grabimagesfromserver:THERE,yesterday").stderr)
        self.assertIn("another archive", self.here.dgate("--grabimagesfromserver:HERE,20240102").stderr)
