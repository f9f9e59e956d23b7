"""A tmpfs mounted for one test: a disk of a known, small size that no other
test writes on, for tests of free space and of full or unmounted disks."""

import os
import subprocess

from twisted.trial import unittest


def mountTmpfs(case, folder, size):
    """Mount a tmpfs of ``size`` (``mount -o size=``, e.g. ``"12m"``) on
    ``folder`` until ``case`` ends; skip ``case`` where mounting is not
    allowed (it needs root)."""
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
                                           capture_output=True).returncode:
        raise unittest.SkipTest("mounting a tmpfs needs root")
    case.addCleanup(subprocess.run, ["umount", "-l", folder], capture_output=True)
