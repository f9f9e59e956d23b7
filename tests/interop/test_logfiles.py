"""Conquest's TroubleLog and UserLog files against a running ``twistd -n
pacs``: DCMTK's storescu, echoscu (to a called AE title the server does
not have) and movescu (to a destination acrnema.map does not list) leave
their lines in the two files, in Conquest's form."""

import os
import signal
import socket
import subprocess

from pydicom import dcmread
from pydicom.data import get_testdata_file
from twisted.trial import unittest

from pacscore.testing.corpus import generateCorpus
from tests.interop.index import column
from tests.interop.server import PacsServer, acknowledgedBy, dcmtk, dcmtkTool
from tests.interop.test_forwarding import waitFor
from tests.interop.test_retrieve import movescu

CT = get_testdata_file("CT_small.dcm")
CONQUEST_TIME = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d \d{4}"


def lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


class LogFilesTests(unittest.TestCase):

    def test_troubleAndUserLines(self):
        server = PacsServer(self.mktemp(), ini={"TroubleLog": "trouble.log"})
        with open(os.path.join(server.workdir, "dgatesop.lst"), "a") as f:
            f.write("Alias    ALIAS    LocalAE\n")  # called AE titles then checked: NOTPACS is rejected
        server.start()
        self.addCleanup(server.stop)
        trouble, user = os.path.join(server.workdir, "trouble.log"), os.path.join(server.workdir, "PacsUser.log")
        self.assertIn(f"TroubleLog: {trouble}", server.log())
        self.assertIn(f"UserLog: {user}", server.log())

        server.store(CT)
        self.assertNotEqual(dcmtk("echoscu", "-aec", "NOTPACS", "127.0.0.1", server.port).returncode, 0)
        movescu(server, "NOWHERE", "STUDY", {"StudyInstanceUID": dcmread(CT).StudyInstanceUID})
        waitFor(lambda: len(lines(user)) == 2 and "C-MOVE refused" in "".join(lines(trouble)),
                message="the log lines")

        self.assertRegex(lines(user)[0], f'^{CONQUEST_TIME} "C-Store","STORESCU        "$')
        self.assertRegex(lines(user)[1], f'^{CONQUEST_TIME} "C-Move ","MOVESCU         "$')
        self.assertRegex("\n".join(lines(trouble)),
                         f"(?m)^{CONQUEST_TIME} \\*\\*\\* .*: association rejected: called AE title 'NOTPACS' is "
                         f"not ours.*\n{CONQUEST_TIME} \\*\\*\\* .*: C-MOVE refused: move destination 'NOWHERE' is "
                         "not in acrnema.map")
        self.assertNotIn("PacsTrouble.log", os.listdir(server.workdir))
        self.assertNotIn("C-STORE", server.log(), "no line per object in the server log")

    def test_aStopUnderLoadKeepsTheUserLogWhole(self):
        """SIGTERM while storescu sends: the user log has a line for every
        object stored, those whose store ended during the stop too (the
        association aborted, their answers unsent), so for every C-STORE
        answered Success."""
        server = PacsServer(self.mktemp())
        server.start()
        self.addCleanup(server.stop)
        user = os.path.join(server.workdir, "PacsUser.log")
        images = generateCorpus(self.mktemp(), patients=1, studiesPerPatient=1, seriesPerStudy=1,
                                imagesPerSeries=300)
        storescu = subprocess.Popen(
            [dcmtkTool("storescu"), "-v", "-aec", "PACS", "127.0.0.1", str(server.port), *(i.path for i in images)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, TCP_NODELAY="1"))
        waitFor(lambda: os.path.exists(user) and len(lines(user)) >= 10, message="the first stores")
        server.stop()
        acknowledged = acknowledgedBy([storescu])
        self.assertIn("stopping: aborting 1 running association(s)", server.log())
        stored = set(column(server.database, "DICOMImages", "SOPInstanceUID"))
        self.assertLess(len(stored), len(images), "the stop came before the end of the stores")
        self.assertLessEqual(acknowledged, stored)
        self.assertEqual(len(lines(user)), len(stored))

    def test_aSecondSignalWhileStopping(self):
        """SIGTERM again (an impatient operator, a supervisor script) while
        the stop waits for the last error mail (a mail server that never
        answers): one line that the server is already stopping, not a
        critical 'Can't stop reactor' in the trouble log."""
        mailServer = socket.socket()
        mailServer.bind(("127.0.0.1", 0))
        mailServer.listen()
        self.addCleanup(mailServer.close)
        server = PacsServer(self.mktemp(), ini={
            "TroubleLog": "trouble.log", "MailHost": "127.0.0.1", "MailPort": str(mailServer.getsockname()[1]),
            "MailRcptName1": "ops@test", "MailWaitTime": "8", "ImportConverters": "1",
            "ImportConverter0": "lua \"error('boom')\""})
        server.start()
        self.addCleanup(server.stop)
        server.store(CT)
        trouble = os.path.join(server.workdir, "trouble.log")
        waitFor(lambda: "Lua script failed" in "".join(lines(trouble)), message="the error")
        server.process.send_signal(signal.SIGTERM)
        waitFor(lambda: "Received SIGTERM" in server.log(), message="the stop")
        server.process.send_signal(signal.SIGTERM)
        waitFor(lambda: "already stopping" in server.log(), timeout=5, message="the second signal's line")
        server.stop()
        self.assertNotIn("Can't stop reactor", "".join(lines(trouble)) + server.log())
