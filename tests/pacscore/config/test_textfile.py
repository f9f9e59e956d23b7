"""Tests for pacscore.config.textfile's writeFileAtomically: a rewritten
configuration file keeps its mode, owner and group."""

import os

from twisted.logger import capturedLogs
from twisted.trial import unittest

from pacscore.config.textfile import writeFileAtomically


def otherOwner():
    """``(uid, gid)`` the process may give a file other than its own: any
    as root, else its own uid and a group of its other than its primary one."""
    if os.geteuid() == 0:
        return 65534, 65534
    others = [gid for gid in os.getgroups() if gid != os.getegid()]
    if not others:
        raise unittest.SkipTest("the process has no group but its primary one to give a file")
    return os.geteuid(), others[0]


class WriteFileAtomicallyTests(unittest.TestCase):

    def test_keepsModeOwnerAndGroup(self):
        """dicom.ini chgrp'd to a group of operators (chmod 640) lost its
        group with every put_param, locking them out of dgate."""
        uid, gid = otherOwner()
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[sscscp]\nMyACRNema = PACS\n")
        os.chown(path, uid, gid)
        os.chmod(path, 0o640)
        with capturedLogs() as events:
            writeFileAtomically(path, "[sscscp]\nMyACRNema = OTHER\n")
        status = os.stat(path)
        self.assertEqual((status.st_uid, status.st_gid, status.st_mode & 0o7777), (uid, gid, 0o640))
        with open(path) as f:
            self.assertEqual(f.read(), "[sscscp]\nMyACRNema = OTHER\n")
        self.assertEqual(events, [])

    def test_newFileIsTheProcesss(self):
        path = os.path.abspath(self.mktemp())
        writeFileAtomically(path, "x\n")
        status = os.stat(path)
        self.assertEqual((status.st_uid, status.st_gid, status.st_mode & 0o7777),
                         (os.geteuid(), os.getegid(), 0o644))
