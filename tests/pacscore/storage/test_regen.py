"""iterObjectFiles never opens the files it is told to skip (the index
database's: closing any descriptor of a file drops the process's POSIX
locks on it, SQLite's included)."""

import builtins
import os
import shutil

from pydicom.data import get_testdata_file
from twisted.trial import unittest

from pacscore.storage.devices import MagDevice
from pacscore.storage.regen import SkippedFiles, iterObjectFiles


class SkipTests(unittest.TestCase):

    def test_skippedFilesNeverOpened(self):
        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "dbase"))
        os.makedirs(os.path.join(root, "PAT"))
        database = os.path.join(root, "dbase", "conquest.db3")
        image = os.path.join(root, "PAT", "1.dcm")
        for path in (database, image):
            shutil.copy(get_testdata_file("CT_small.dcm"), path)
        opened = []
        realOpen = builtins.open
        self.patch(builtins, "open", lambda path, *a, **kw: opened.append(path) or realOpen(path, *a, **kw))
        found = list(iterObjectFiles(MagDevice("MAG0", root), skip=frozenset({os.path.realpath(database)})))
        self.assertEqual(found, [(image, "PAT/1.dcm")])
        self.assertEqual(opened, [image])

    def test_linkToASkippedFileNeverOpened(self):
        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "dbase"))
        database = os.path.join(root, "dbase", "conquest.db3")
        shutil.copy(get_testdata_file("CT_small.dcm"), database)
        os.symlink(database, os.path.join(root, "other-name.dcm"))
        skip = frozenset({os.path.realpath(database)})
        self.assertEqual(list(iterObjectFiles(MagDevice("MAG0", root), skip=skip)), [])
        self.assertIn(os.path.join(root, "other-name.dcm"), SkippedFiles(skip))
        self.assertNotIn(os.path.join(root, "dbase", "x.dcm"), SkippedFiles(skip))
