"""The offline ``dgate`` command line: parsing, help, -i."""

import os
import sqlite3

from twisted.trial import unittest

from pacscore.control.cli import USAGE, main
from tests.interop.server import PacsServer


class CliTests(unittest.TestCase):

    def dgate(self, *argv):
        lines = []
        code = main(list(argv), out=lines.append)
        return code, "\n".join(lines)

    def test_help(self):
        code, output = self.dgate("-?")
        self.assertEqual(code, 0)
        self.assertEqual(output, USAGE)
        for option in ("-w", "-i", "-r", "-v", "--command"):
            self.assertIn(option, output)

    def test_unknownOption(self):
        code, output = self.dgate("-x")
        self.assertEqual(code, 2)
        self.assertIn("unknown option -x", output)

    def test_controlCommandNotAvailableYet(self):
        code, output = self.dgate("--display_status:")
        self.assertEqual(code, 2)
        self.assertIn("control port is not available", output)

    def test_initializeCreatesTables(self):
        server = PacsServer(self.mktemp())
        code, output = self.dgate(f"-w{server.workdir}", "-i")
        self.assertEqual(code, 0, output)
        with sqlite3.connect(server.database) as connection:
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        self.assertLessEqual({"DICOMPatients", "DICOMStudies", "DICOMSeries", "DICOMImages", "DICOMWorkList"},
                             tables)

    def test_badConfiguration(self):
        server = PacsServer(self.mktemp())
        with open(os.path.join(server.workdir, "dgatesop.lst"), "a") as f:
            f.write("Broken\n")
        code, output = self.dgate("-w", server.workdir, "-i")
        self.assertEqual(code, 1)
        self.assertIn("dgatesop.lst:", output)
