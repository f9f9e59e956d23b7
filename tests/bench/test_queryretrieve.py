"""bench/queryretrieve.py's index fill, on a small working folder: the
benchmark uses the project's offline index opening, which moved once
(2b18689) without it noticing."""

import sqlite3
from types import SimpleNamespace

from twisted.trial import unittest

from bench.queryretrieve import addSyntheticRows
from tests.interop.server import PacsServer


class AddSyntheticRowsTests(unittest.TestCase):

    def test_fillsTheIndexOfTheWorkingFolder(self):
        """The synthetic rows go into the working folder's index, as
        ``make bench`` has them before its queries."""
        server = PacsServer(self.mktemp())
        addSyntheticRows(SimpleNamespace(workdir=server.workdir), 200)
        with sqlite3.connect(server.database) as connection:
            self.assertEqual(connection.execute("SELECT count(*) FROM DICOMImages").fetchone()[0], 200)
            self.assertEqual(connection.execute("SELECT count(*) FROM DICOMPatients").fetchone()[0], 2)
