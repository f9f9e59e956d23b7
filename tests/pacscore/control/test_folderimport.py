"""The walk of a folder that ``dgate --addimagefile:`` imports."""

import os
from pathlib import Path

from twisted.trial import unittest

from pacscore.control.context import CommandError
from pacscore.control.folderimport import OWN_FILE, OWN_FOLDER, folderFiles


class FolderFilesTests(unittest.TestCase):

    def setUp(self):
        self.top = Path(self.mktemp()).absolute()
        (self.top / "A").mkdir(parents=True)
        (self.top / "A" / "IM1").write_bytes(b"1")
        self.elsewhere = Path(self.mktemp()).absolute()
        self.elsewhere.mkdir()
        (self.elsewhere / "IM2").write_bytes(b"2")

    def test_linkedFoldersFollowedOnce(self):
        """A link to a folder (a CD copy's) is walked as the folder; a folder
        reached twice (a loop, two links to one folder) is walked once."""
        (self.top / "B").symlink_to(self.elsewhere)
        (self.top / "C").symlink_to(self.elsewhere)
        (self.elsewhere / "loop").symlink_to(self.top)
        files, unreadable, _ = folderFiles(str(self.top))
        self.assertEqual(files, [(str(self.top / "A" / "IM1"), True), (str(self.top / "B" / "IM2"), True)])
        self.assertEqual(unreadable, [])

    def test_unreadableFoldersReported(self):
        """A folder that cannot be listed is named, with why."""
        scandir = os.scandir
        refused = str(self.top / "A")

        def refusing(path):
            if os.fspath(path) == refused:
                raise PermissionError(13, "Permission denied", path)
            return scandir(path)
        self.patch(os, "scandir", refusing)
        files, unreadable, _ = folderFiles(str(self.top))
        self.assertEqual(files, [])
        self.assertEqual(unreadable, [(refused, "Permission denied")])

    def test_hiddenFoldersSkipped(self):
        """Hidden folders (a device's .pacs-tmp, with the empty files it
        makes ahead for incoming objects) are not walked, as regen does."""
        (self.top / ".pacs-tmp").mkdir()
        (self.top / ".pacs-tmp" / "store-1-1.part").write_bytes(b"")
        (self.top / "A" / ".hidden").mkdir()
        (self.top / "A" / ".hidden" / "IM3").write_bytes(b"3")
        files, unreadable, _ = folderFiles(str(self.top))
        self.assertEqual(files, [(str(self.top / "A" / "IM1"), True)])

    def test_ownFoldersSkippedOrRefused(self):
        """A folder of ``own`` (a MAG device) under the one walked is
        skipped and named; walking one of them, or a folder in one, is refused."""
        own = {os.path.realpath(self.top / "A")}
        (self.top / "B").mkdir()
        (self.top / "B" / "IM2").write_bytes(b"2")
        (self.top / "C").symlink_to(self.top / "A")
        files, unreadable, owned = folderFiles(str(self.top), own=own)
        self.assertEqual(files, [(str(self.top / "B" / "IM2"), True)])
        self.assertEqual(owned, [(str(self.top / "A"), OWN_FOLDER), (str(self.top / "C"), OWN_FOLDER)])
        for folder in (self.top / "A", self.top / "C", self.top / "A" / "."):
            error = self.assertRaises(CommandError, folderFiles, str(folder), own=own)
            self.assertIn("is the archive's own folder", str(error))

    def test_linksToOwnFilesSkipped(self):
        """A link to a file in one of ``own`` (an archived object) is
        skipped and named, as a link to the folder is."""
        own = {os.path.realpath(self.top / "A")}
        (self.elsewhere / "linked").symlink_to(self.top / "A" / "IM1")
        files, unreadable, owned = folderFiles(str(self.elsewhere), own=own)
        self.assertEqual(files, [(str(self.elsewhere / "IM2"), True)])
        self.assertEqual(owned, [(str(self.elsewhere / "linked"), OWN_FILE)])
