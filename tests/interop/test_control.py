"""The control port through the real ``dgate`` console script against
``twistd -n pacs``: display_status in text and JSON, an unknown command,
-p/-q, quit in the middle of an ingest (running associations finish, or
are aborted after the grace period; nothing acknowledged is lost), and the
shared secret of a control port, on loopback or bound beyond."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time

from twisted.python import usage
from twisted.trial import unittest

from pacscore.testing.corpus import generateCorpus
from tap.pacs import Options
from tests.interop.index import column
from tests.interop.server import BIN, PacsServer, acknowledged, dcmtkEnvironment, dcmtkTool
from tests.interop.test_forwarding import waitFor
from tests.interop.test_storage import storedFiles


class StatusTests(unittest.TestCase):

    def setUp(self):
        self.server = PacsServer(self.mktemp())
        self.addCleanup(self.server.stop)
        self.server.start()

    def test_displayStatusAfterAnIngest(self):
        images = generateCorpus(self.mktemp(), patients=1, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=5)
        self.server.store(*[image.path for image in images])
        result = self.server.dgate("--display_status:json")
        self.assertEqual(result.returncode, 0, result.stderr)
        status = json.loads(result.stdout)
        self.assertEqual(status["images"]["received"], 5)
        self.assertEqual(status["associations"], {"active": 0, "total": 1})
        self.assertEqual(status["counters"]["imagesReceived"], 5)
        self.assertGreater(status["time"]["store"], 0)
        self.assertEqual(status["devices"][0]["name"], "MAG0")
        self.assertEqual(status["server"]["aeTitle"], "PACS")
        text = self.server.dgate("--display_status:")
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertIn("Images received=5, sent=0, forwarded=0", text.stdout)
        self.assertIn("Associations: 0 active, 1 since start", text.stdout)

    def test_aPausedReaderGetsTheWholeAnswer(self):
        """dgate piped into a reader that stops after the first line for
        6 s (a pager, a script doing something slow with it), then reads
        a line at a time: it gets all of a long answer (it was cut 2 s
        after the server's socket stopped draining, dgate exiting 1
        with 'the server closed the connection without an answer')."""
        dgate = subprocess.Popen([os.path.join(BIN, "dgate"), f"-w{self.server.workdir}",
                                  '--dolua:for i=1,200000 do print(string.rep("x", 90) .. i) end'],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(dgate.wait, 60)
        self.addCleanup(dgate.stdout.close)
        self.assertEqual(dgate.stdout.readline(), "x" * 90 + "1\n")
        time.sleep(6)
        lines = 1
        for line in dgate.stdout:
            lines += 1
            if lines % 20000 == 0:
                time.sleep(1)
        self.assertEqual((lines, dgate.wait(60), dgate.stderr.read()), (200000, 0, ""))
        self.assertNotIn("connection cut", self.server.log())

    def test_readerThatGoesAway(self):
        """Piped into ``head -1``, dgate prints no traceback and blames no
        server: the rest of its output is dropped and it exits 0."""
        for command in ("--display_status:", "--get_ini:%s=%s"):
            first, errors, status = self.server.dgateIntoHead(command)
            self.assertEqual((first.count("\n"), errors, status), (1, "", 0), command)
            self.assertEqual(self.server.dgateWithoutReader(command), ("", 0), command)

    def test_offlineTableRebuildsRefused(self):
        """dgate -r and -i, which drop and recreate the index tables, refuse
        to do so under the running server and leave its index as it was."""
        images = generateCorpus(self.mktemp(), patients=1, studiesPerPatient=1, seriesPerStudy=1, imagesPerSeries=2)
        self.server.store(*[image.path for image in images])
        for option, command in (("-r", "--regen:"), ("-i", "--initializetables:")):
            result = self.server.dgate(option)
            self.assertEqual(result.returncode, 1)
            self.assertIn(f"dgate: {option}: the server of this working folder is running (its control port "
                          f"127.0.0.1:{self.server.controlPort} answers)", result.stderr)
            self.assertIn(f"dgate {command}", result.stderr)
            self.assertNotIn("Initialising", result.stdout)
        with sqlite3.connect(self.server.database) as connection:
            self.assertEqual(connection.execute("SELECT count(*) FROM DICOMImages").fetchone()[0], 2)

    def test_unknownCommandExits2(self):
        result = self.server.dgate("--no_such_command:1")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr.strip(), "dgate: unknown command --no_such_command")
        self.assertEqual(result.stdout, "")

    def test_portAndHostOptions(self):
        elsewhere = self.mktemp()
        os.makedirs(elsewhere)
        result = subprocess.run([os.path.join(BIN, "dgate"), f"-w{elsewhere}", f"-p{self.server.controlPort}",
                                 "-q127.0.0.1", "--display_status:json"], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout)["server"]["port"], self.server.port)

    def test_forwardQueue(self):
        result = self.server.dgate("--forwardqueue:")
        self.assertEqual((result.returncode, result.stdout), (0, "export jobs: 0 pending, 0 failed\n"))
        result = self.server.dgate("--retryforwards:")
        self.assertEqual((result.returncode, result.stdout), (0, "0 failed item(s) put back in the queue\n"))


class QuitTests(unittest.TestCase):
    """``--quit:`` while storescu sends 600 objects over one association."""

    def quitDuringIngest(self, gracePeriod):
        self.server = PacsServer(self.mktemp(), ini={"QuitGracePeriod": str(gracePeriod)})
        self.addCleanup(self.server.stop)
        self.server.start()
        self.images = generateCorpus(self.mktemp(), patients=2, studiesPerPatient=1, seriesPerStudy=3,
                                     imagesPerSeries=100)
        storescu = subprocess.Popen(
            [dcmtkTool("storescu"), "-v", "-aec", "PACS", "127.0.0.1", str(self.server.port),
             *[image.path for image in self.images]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dcmtkEnvironment())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.stored() < 30:
            time.sleep(0.01)
        result = self.server.dgate("--quit:")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("stopping", result.stdout)
        refused = subprocess.run([dcmtkTool("echoscu"), "-aec", "PACS", "127.0.0.1", str(self.server.port)],
                                 capture_output=True, env=dcmtkEnvironment(), timeout=60)
        output = storescu.communicate(timeout=120)[0]
        self.assertEqual(self.server.process.wait(60), 0)
        self.server.process.stdout.close()
        self.assertNotEqual(refused.returncode, 0, "no new association once quit is asked")
        self.assertIn("quit: no new associations; waiting up to", self.server.log())
        return storescu.returncode, acknowledged(output)

    def stored(self):
        try:
            with sqlite3.connect(self.server.database) as connection:
                return connection.execute("SELECT COUNT(*) FROM DICOMImages").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    def assertKept(self, uids):
        self.assertLessEqual(uids, set(storedFiles(self.server.dataDir)), "on disk")
        self.server.start()
        self.assertLessEqual(uids, set(column(self.server.database, "DICOMImages", "SOPInstanceUID")),
                             "and in the index after a restart")

    def test_runningAssociationFinishes(self):
        status, uids = self.quitDuringIngest(gracePeriod=60)
        self.assertEqual(status, 0)
        self.assertEqual(uids, {image.sopUID for image in self.images})
        self.assertNotIn("aborting", self.server.log())
        self.assertKept(uids)

    def test_abortedAfterTheGracePeriod(self):
        # a grace period of 0 s: the association is aborted as soon as the
        # listeners are closed, long before storescu's 600 objects are through
        status, uids = self.quitDuringIngest(gracePeriod=0)
        self.assertGreater(len(uids), 0)
        self.assertLess(len(uids), len(self.images), "the association was aborted before the end")
        self.assertIn("quit: aborting 1 association(s) still running after 0 s", self.server.log())
        self.assertKept(uids)

    def test_signalDuringTheGracePeriod(self):
        """SIGTERM while --quit: waits for a running association: one line
        that the server is already stopping; the quit goes on (the
        association aborted after the grace period) and the server exits
        0, with no critical 'Can't stop reactor' in the trouble log."""
        self.server = PacsServer(self.mktemp(), ini={"QuitGracePeriod": "2", "TroubleLog": "trouble.log"})
        self.addCleanup(self.server.stop)
        self.server.start()
        running = socket.create_connection(("127.0.0.1", self.server.port))
        self.addCleanup(running.close)
        self.assertEqual(self.server.dgate("--quit:").returncode, 0)
        waitFor(lambda: "quit: no new associations; waiting up to 2 s for 1 running" in self.server.log(),
                message="the quit")
        self.server.process.send_signal(signal.SIGTERM)
        self.assertEqual(self.server.process.wait(60), 0)
        self.server.process.stdout.close()
        log = self.server.log()
        self.assertIn("SIGTERM while stopping: already stopping", log)
        self.assertIn("quit: aborting 1 association(s) still running after 2 s", log)
        with open(os.path.join(self.server.workdir, "trouble.log")) as trouble:
            self.assertNotIn("stopping in order failed", trouble.read() + log)


class SecretTests(unittest.TestCase):
    """The control port on 127.0.0.2: not loopback for the rule (Linux
    routes all of 127.0.0.0/8 to lo), so ControlSecret is required."""

    def setUp(self):
        self.server = PacsServer(self.mktemp(), ini={"ControlSecret": "open sesame"})
        self.endpoint = f"tcp:{self.server.controlPort}:interface=127.0.0.2"
        self.server.setIni(ControlEndpoint=self.endpoint)
        self.addCleanup(self.server.stop)
        self.server.start()

    def dgateWithSecret(self, secret):
        """dgate from another working folder whose dicom.ini names the
        same control port and ``secret`` (None: no ControlSecret)."""
        ini = {"ControlEndpoint": self.endpoint}
        if secret is not None:
            ini["ControlSecret"] = secret
        return PacsServer(self.mktemp(), ini=ini).dgate("--display_status:json")

    def test_rightSecret(self):
        result = self.server.dgate("--display_status:json")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout)["server"]["aeTitle"], "PACS")

    def test_wrongSecretRefusedAndLogged(self):
        result = self.dgateWithSecret("open says me")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip(), "dgate: refused: wrong secret")
        self.assertRegex(self.server.log(),
                         r"refused --display_status from 127\.0\.0\.\d+:\d+: wrong ControlSecret")
        self.assertNotIn("open says me", self.server.log())

    def test_missingSecretRefused(self):
        result = self.dgateWithSecret(None)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip(), "dgate: refused: missing secret")
        self.assertRegex(self.server.log(), r"refused --display_status from 127\.0\.0\.\d+:\d+: missing ControlSecret")

    def test_putParamControlSecretAppliesAtOnce(self):
        """dgate changing ControlSecret gets its answer, and its next
        command, with the new secret of dicom.ini, goes in; it cannot be
        emptied on a port beyond loopback."""
        result = self.server.dgate("--put_param:ControlSecret,new secret")
        self.assertEqual((result.returncode, result.stdout.strip()), (0, ""), result.stderr)
        result = self.server.dgate("--get_param:MyACRNema")
        self.assertEqual((result.returncode, result.stdout.strip()), (0, "PACS"), result.stderr)
        self.assertEqual(self.dgateWithSecret("open sesame").stderr.strip(), "dgate: refused: wrong secret")
        result = self.server.dgate("--put_param:ControlSecret,")
        self.assertEqual(result.returncode, 1)
        self.assertIn("ControlSecret not changed: the control port is not bound to loopback", result.stderr)
        self.assertEqual(self.server.dgate("--get_param:MyACRNema").returncode, 0)


class LoopbackSecretTests(unittest.TestCase):
    """On its default loopback endpoint too, a control port with a
    ControlSecret refuses whoever does not give it: another user of the
    machine talking to it raw, or dgate from elsewhere; dgate from the
    server's folder sends it."""

    def setUp(self):
        self.server = PacsServer(self.mktemp(), ini={"ControlSecret": "open sesame"})
        self.addCleanup(self.server.stop)
        self.server.start()

    def test_rawClientWithoutAuthRefused(self):
        with socket.create_connection(("127.0.0.1", self.server.controlPort), timeout=30) as client:
            client.sendall(b"COMMAND --get_param:MyACRNema\r\n")
            answer = b"".join(iter(lambda: client.recv(4096), b""))
        self.assertEqual(answer, b"ERROR refused: missing secret\r\n")
        self.assertRegex(self.server.log(), r"refused --get_param from 127\.0\.0\.1:\d+: missing ControlSecret")

    def test_dgate(self):
        result = self.server.dgate("--get_param:MyACRNema")
        self.assertEqual((result.returncode, result.stdout.strip()), (0, "PACS"), result.stderr)
        other = PacsServer(self.mktemp(), ini={"ControlEndpoint": f"tcp:{self.server.controlPort}:interface=127.0.0.1"})
        result = other.dgate("--get_param:MyACRNema")
        self.assertEqual((result.returncode, result.stderr.strip()), (1, "dgate: refused: missing secret"))


class ConfigurationTests(unittest.TestCase):

    def test_secretRequiredBeyondLoopback(self):
        server = PacsServer(self.mktemp())
        for endpoint in ("tcp:0", "tcp:0:interface=0.0.0.0", "tcp:0:interface=127.0.0.2"):
            error = self.assertRaises((usage.UsageError, SystemExit), Options().parseOptions,
                                      ["--config", server.workdir, "--workdir", server.workdir, "--control", endpoint])
            self.assertIn("set ControlSecret", str(error))

    def test_badNumberReadAtUseStopsStartUp(self):
        """A key read only when used (by each Lua converter) is checked at
        start-up, not failed at each use."""
        server = PacsServer(self.mktemp(), ini={"LuaMaxInstructions": "abc"})
        error = self.assertRaises(SystemExit, Options().parseOptions,
                                  ["--config", server.workdir, "--workdir", server.workdir])
        self.assertRegex(str(error), r"^twistd: configuration error: .*dicom\.ini:\d+: LuaMaxInstructions must be an "
                                     r"integer, not 'abc'$")

    def test_controlPortOff(self):
        server = PacsServer(self.mktemp())
        options = Options()
        options.parseOptions(["--config", server.workdir, "--workdir", server.workdir, "--control", "off"])
        self.assertIsNone(options.control)
