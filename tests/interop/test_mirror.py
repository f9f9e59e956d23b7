"""MIRRORDevices against a running ``twistd -n pacs``: every object DCMTK's
storescu stores on MAG0 gets a byte-identical copy on MIRROR0; getscu, a
zip download and WADO-RS still retrieve objects whose MAG0 files were lost
or cut short (read from the mirror);
``dgate -av`` verifies and queues damaged copies again; a delete removes
both copies; copies that could not be made before a SIGKILL are made after
the restart."""

import io
import os
import shutil
import tempfile
import time
import urllib.request
import zipfile

from twisted.trial import unittest

from pacscore.testing.corpus import generateCorpus
from tests.interop.server import PacsServer
from tests.interop.test_retrieve import getSeries
from tests.interop.test_storage import storedFiles


class MirrorTests(unittest.TestCase):

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-mirror-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.server = PacsServer(os.path.join(self.workdir, "pacs"))
        self.mirror = os.path.join(self.workdir, "mirror")
        self.server.setIni(MIRRORDevices="1", MIRRORDevice0=self.mirror + "/", RetryDelay="1")
        self.server.start()
        self.addCleanup(self.server.stop)
        self.images = generateCorpus(os.path.join(self.workdir, "corpus"), patients=2, studiesPerPatient=1,
                                     seriesPerStudy=2, imagesPerSeries=4)

    def storeAll(self):
        result = self.server.store(*(image.path for image in self.images))
        self.assertEqual(result.returncode, 0, result.stderr)

    def copies(self, timeout=30):
        """``{uid: (MAG0 path, MIRROR0 path)}`` once the mirror holds a copy
        of every stored object."""
        deadline = time.monotonic() + timeout
        while True:
            stored, mirrored = storedFiles(self.server.dataDir), storedFiles(self.mirror)
            if len(mirrored) == len(self.images) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(set(mirrored), {image.sopUID for image in self.images}, self.server.log())
        return {uid: (stored[uid], mirrored[uid]) for uid in stored}

    def assertSameBytes(self, first, second):
        with open(first, "rb") as f, open(second, "rb") as g:
            self.assertEqual(f.read(), g.read())

    def waitUntilSame(self, first, second, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.assertSameBytes(first, second)
                return
            except (OSError, AssertionError):
                time.sleep(0.1)
        self.assertSameBytes(first, second)

    def test_everyObjectIsCopiedAndVerified(self):
        self.storeAll()
        for uid, (stored, mirrored) in self.copies().items():
            self.assertEqual(os.path.relpath(stored, self.server.dataDir), os.path.relpath(mirrored, self.mirror))
            self.assertSameBytes(stored, mirrored)
        self.assertIn("MAG0 is mirrored on MIRROR0", self.server.log())
        result = self.server.dgate("-avMAG0")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout.strip(), "MAG0 against MIRROR0: 16 identical, 0 missing or different "
                                                "(queued for copying), 0 unreadable on MAG0, 0 not copied yet")
        status = self.server.dgate("--display_status:").stdout
        self.assertIn(f"Space on MIRROR0 ({self.mirror})", status)
        self.assertIn("mirrorCopies = 16", status)

    def test_lostFilesAreRetrievedFromTheMirror(self):
        self.storeAll()
        copies = self.copies()
        series = self.images[0]
        lost = [image for image in self.images if image.seriesUID == series.seriesUID][:2]
        for image in lost:
            os.unlink(copies[image.sopUID][0])
        self.assertEqual(getSeries(self.server, self.workdir, series.studyUID, series.seriesUID),
                         {image.sopUID for image in self.images if image.seriesUID == series.seriesUID})
        self.assertIn("is missing: its mirror copy", self.server.log())
        web = f"http://127.0.0.1:{self.server.webPort}"
        wanted = {image.sopUID for image in self.images if image.seriesUID == series.seriesUID}
        with urllib.request.urlopen(f"{web}/cgi-bin/dgate?mode=zipseries&series=:{series.seriesUID}", timeout=60) as r:
            with zipfile.ZipFile(io.BytesIO(r.read())) as zipped:
                self.assertEqual(len(zipped.namelist()), len(wanted))
        request = urllib.request.Request(f"{web}/dicom-web/studies/{series.studyUID}/series/{series.seriesUID}",
                                         headers={"Accept": 'multipart/related; type="application/dicom"; '
                                                            'transfer-syntax=*'})
        with urllib.request.urlopen(request, timeout=60) as r:
            body = r.read()
        self.assertEqual({uid for uid in wanted if uid.encode() in body}, wanted)
        result = self.server.dgate("-av")
        self.assertEqual(result.returncode, 1)
        self.assertIn("2 unreadable on MAG0", result.stdout + result.stderr)
        self.assertIn(f"MAG0:{os.path.relpath(copies[lost[0].sopUID][0], self.server.dataDir)}: cannot be read",
                      result.stderr)

    def test_filesCutShortAreNeverSent(self):
        """A MAG0 file cut short behind pacs's back is never sent as it is:
        its whole mirror copy is (getscu, WADO-RS); one whose copy is cut
        short too is a failed sub-operation, logged, and the others are
        sent (the whole C-GET stopped at it)."""
        self.storeAll()
        copies = self.copies()
        series = self.images[0]
        wanted = [image.sopUID for image in self.images if image.seriesUID == series.seriesUID]
        cut, lost = wanted[:2]
        for path in copies[cut][:1] + copies[lost]:
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
        self.assertEqual(getSeries(self.server, self.workdir, series.studyUID, series.seriesUID),
                         set(wanted) - {lost})
        log = self.server.log()
        self.assertIn(f"{copies[cut][0]} cannot be read (truncated or damaged: element (7FE0,0010)", log)
        self.assertIn(f"C-GET: {lost} cannot be read: ", log)
        self.assertIn("1 failed, 0 with a warning, 0 not sent", log)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.server.webPort}/dicom-web/studies/{series.studyUID}/series/{series.seriesUID}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        with urllib.request.urlopen(request, timeout=60) as r:
            body = r.read()
        self.assertEqual({uid for uid in wanted if uid.encode() in body}, set(wanted) - {lost})
        self.assertIn(f"WADO-RS: {lost} left out: the stored file cannot be read: truncated or damaged", self.server.log())

    def test_verifyCopiesDamagedCopiesAgain(self):
        self.storeAll()
        copies = list(self.copies().values())
        (changed, changedCopy), (removed, removedCopy) = copies[:2]
        with open(changedCopy, "r+b") as f:
            f.seek(-1, os.SEEK_END)
            f.write(b"\xff")
        os.unlink(removedCopy)
        result = self.server.dgate("--verifymirrordisk:MAG0")
        self.assertEqual(result.returncode, 1)
        self.assertIn(": mirror copy different", result.stderr)
        self.assertIn(": mirror copy missing", result.stderr)
        self.assertIn("14 identical, 2 missing or different (queued for copying)", result.stdout + result.stderr)
        self.waitUntilSame(changed, changedCopy)
        self.waitUntilSame(removed, removedCopy)
        self.assertEqual(self.server.dgate("-av").returncode, 0)

    def test_deleteRemovesBothCopies(self):
        self.storeAll()
        copies = self.copies()
        patient = self.images[0].patientID
        result = self.server.dgate(f"--deletepatient:{patient}")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for image in self.images:
            exists = [os.path.exists(path) for path in copies[image.sopUID]]
            self.assertEqual(exists, [image.patientID != patient] * 2)

    def test_copiesNotMadeBeforeACrashAreMadeAfterTheRestart(self):
        shutil.rmtree(self.mirror)
        with open(self.mirror, "w"):  # the mirror disk cannot be written
            pass
        self.storeAll()
        deadline = time.monotonic() + 30
        while self.server.log().count("will retry") < 2 * len(self.images) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIn("mirror copy of", self.server.log())
        self.server.kill()
        os.unlink(self.mirror)
        self.server.start()
        for stored, mirrored in self.copies().values():
            self.assertSameBytes(stored, mirrored)
