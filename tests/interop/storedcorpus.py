"""A running ``twistd -n pacs`` holding a generated corpus stored with
DCMTK's storescu, for the tests of the control commands that work on
stored objects."""

import os
import shutil
import tempfile

from twisted.trial import unittest

from pacscore.testing.corpus import generateCorpus
from tests.interop.server import PacsServer


class StoredCorpusTestCase(unittest.TestCase):
    """``self.server`` holds ``self.images`` (``corpus`` says how many);
    ``prepare()`` runs before the server starts."""

    corpus = {"patients": 2, "studiesPerPatient": 2, "seriesPerStudy": 1, "imagesPerSeries": 2}

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-corpus-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.server = PacsServer(os.path.join(self.workdir, "pacs"))
        self.prepare()
        self.server.start()
        self.addCleanup(self.server.stop)
        self.images = generateCorpus(os.path.join(self.workdir, "corpus"), **self.corpus)
        result = self.server.store(*(image.path for image in self.images))
        self.assertEqual(result.returncode, 0, result.stderr)

    def prepare(self):
        """Set the server up before it starts (nothing by default)."""

    def dgate(self, *args):
        """stdout lines of a dgate command that must succeed."""
        result = self.server.dgate(*args)
        self.assertEqual(result.returncode, 0, f"dgate {args}: {result.stdout}{result.stderr}")
        return result.stdout.splitlines()
