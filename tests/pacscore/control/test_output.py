"""Tests for pacscore.control.output: commands that write a file never
write over the archive's own files."""

import os

from twisted.internet import defer
from twisted.trial import unittest

from pacscore.control.context import CommandError
from pacscore.control.queries import Query
from pacscore.control.server import DisplayStatus
from pacscore.control.serverlog import LogOn
from tests.pacscore.control.running import RunningArchive


class OwnFilesTests(unittest.TestCase):

    def setUp(self):
        self.running = RunningArchive(self)

    @defer.inlineCallbacks
    def test_ownFilesRefused(self):
        configuration = self.running.configuration
        workdir = configuration.workdir
        database = os.path.join(workdir, "data", "dbase", "conquest.db3")
        before = {path: os.path.getsize(path) for path in (configuration.iniPath, database)}
        own = [configuration.iniPath, configuration.acrNemaMap.path, configuration.sopList.path,
               configuration.layout.path, "data/dbase/conquest.db3", "data/dbase/conquest.db3-wal",
               "./data/dbase/../notes.txt", os.path.join(workdir, "data", "any.txt")]
        for command, arguments in [(DisplayStatus(), path) for path in own] + [
                (LogOn(), "dicom.ini"), (Query(), "DICOMPatients|PatientID||%s|data/dbase/conquest.db3")]:
            error = yield self.assertFailure(self.running.run(command, arguments), CommandError)
            self.assertIn("is one of the archive's own files", str(error))
        self.assertEqual({path: os.path.getsize(path) for path in before}, before)

    @defer.inlineCallbacks
    def test_otherFilesWritten(self):
        yield self.running.run(DisplayStatus(), "status.txt")
        with open(os.path.join(self.running.configuration.workdir, "status.txt")) as f:
            self.assertIn("Run time", f.read())
