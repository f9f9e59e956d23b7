"""The ``dgate`` command line offline: parsing, help, -i; with no server to answer."""

import io
import os
import socket
import sqlite3
import subprocess
import sys
from unittest import mock

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1
from twisted.trial import unittest

from pacscore.codecs import nki
from pacscore.control.cli import USAGE, main, parseArguments
from pacscore.control.registry import CommandRegistry
from pacscore.storage.regen import Regenerator
from pacscore.testing.corpus import makeDataset
from pacscore.workfolderlock import WorkFolderLock
from tests.interop.server import BIN, PacsServer, freePort


class CliTests(unittest.TestCase):

    def dgate(self, *argv):
        lines = []
        code = main(list(argv), out=lines.append, err=lines.append)
        return code, "\n".join(lines)

    def test_help(self):
        code, output = self.dgate("-?")
        self.assertEqual(code, 0)
        self.assertTrue(output.startswith(USAGE))
        for option in ("-w", "-i", "-r", "-v", "-p", "-q", "--command"):
            self.assertIn(option, output)

    def test_helpListsEveryInstalledCommand(self):
        code, output = self.dgate("-?")
        for usage in CommandRegistry().usage():
            self.assertIn(f"    {usage}\n", output + "\n")
        self.assertIn("--display_status:", output)
        self.assertIn("--quit:", output)

    def test_unknownOption(self):
        code, output = self.dgate("-x")
        self.assertEqual(code, 2)
        self.assertIn("unknown option -x", output)

    def test_conquestStyleOptions(self):
        options = parseArguments(["-p5679", "-q", "pacs.example", "-w/srv/pacs", "--display_status:"])
        self.assertEqual((options["port"], options["host"], options["workdir"], options["commands"]),
                         (5679, "pacs.example", "/srv/pacs", ["--display_status:"]))

    def test_archivalShorthands(self):
        self.assertEqual(parseArguments(["-avMAG0", "-av", "-atMAG1", "-amMAG0,MAG1", "-aeMAG3,MAG0"])["commands"],
                         ["--verifymirrordisk:MAG0", "--verifymirrordisk:", "--testimages:MAG1",
                          "--movedatatodevice:MAG1,MAG0", "--renamedevice:MAG3,MAG0"])

    def test_fileAndDatabaseShorthands(self):
        self.assertEqual(parseArguments(["-arMAG1", "-frMAG0,PAT1", "-fe/d/a.dcm", "-fd/d/a.dcm", "-fz/d/a.dcm",
                                         "-zPAT1", "-fa/in/b.dcm,NEW", "-fcNEW,/d/a.dcm", "-fkCOPY,/d/a.dcm",
                                         "-ff500", "-fu", "-gTHERE,20240102", "-fpPAT1", "-ft1.2.3", "-fs1.2.3.4",
                                         "-fi1.2.3.4.5"])["commands"],
                         ["--regendev:MAG1", "--regendir:MAG0,PAT1", "--regenfile:/d/a.dcm",
                          "--deleteimagefromdb:/d/a.dcm", "--deleteimagefile:/d/a.dcm", "--deletepatient:PAT1",
                          "--addimagefile:/in/b.dcm,NEW", "--modifypatid:NEW,/d/a.dcm", "--copypatid:COPY,/d/a.dcm",
                          "--makespace:500", "--genuid:", "--grabimagesfromserver:THERE,20240102",
                          "--deletepatientfromdb:PAT1", "--deletestudyfromdb:1.2.3", "--deleteseriesfromdb:1.2.3.4",
                          "--deletesopfromdb:,,,1.2.3.4.5"])

    def test_badPort(self):
        code, output = self.dgate("-pabc", "--display_status:")
        self.assertEqual(code, 2)
        self.assertIn("-p needs a port number", output)

    def test_portIsANumberFrom1To65535(self):
        for port in ("\u00b2", "\u0661", "0", "70000", "9" * 30):
            code, output = self.dgate(f"-p{port}", "--display_status:")
            self.assertEqual(code, 2)
            self.assertIn(f"-p needs a port number from 1 to 65535, not {port!r}", output)

    def runDgate(self, *argv):
        """``(exit status, stderr)`` of the dgate script."""
        result = subprocess.run([os.path.join(BIN, "dgate"), *argv], capture_output=True, text=True, timeout=60)
        return result.returncode, result.stderr.strip()

    def test_badHost(self):
        server = PacsServer(self.mktemp())
        for host, label in (("::::", "[::::]"), ("[::1", "[[::1]"), ("a..b", "a..b"), ("h" * 300, "h" * 300)):
            code, error = self.runDgate(f"-w{server.workdir}", "-q", host, "--display_status:")
            self.assertEqual(code, 1)
            self.assertTrue(error.startswith(f"dgate: bad address {label}:{server.controlPort}: invalid hostname"),
                            error)

    def test_badControlEndpoint(self):
        server = PacsServer(self.mktemp(), ini={"ControlEndpoint": "tcp:abc"})
        code, error = self.runDgate(f"-w{server.workdir}", "--display_status:")
        self.assertEqual(code, 1)
        self.assertEqual(error, "dgate: bad address (ControlEndpoint = tcp:abc): port 'abc' is not a number "
                                "from 1 to 65535")

    def test_noServer(self):
        server = PacsServer(self.mktemp())
        result = subprocess.run([os.path.join(BIN, "dgate"), f"-w{server.workdir}", "--display_status:"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip(), f"dgate: no pacs server at 127.0.0.1:{server.controlPort}")
        port = freePort()
        result = subprocess.run([os.path.join(BIN, "dgate"), f"-w{server.workdir}", f"-p{port}", "--quit:"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.stderr.strip(), f"dgate: no pacs server at 127.0.0.1:{port}")

    def test_commandsStartWithoutTheServersModules(self):
        """Sending a command loads neither pydicom, SQLAlchemy nor pacs's
        index, storage and command modules (0.6 s of each call's start,
        when a script runs dgate --addimagefile: once per file)."""
        server = PacsServer(self.mktemp())
        sent = ("import sys\n"
                "from pacscore.control.cli import main\n"
                "try:\n"
                f"    main(['-w{server.workdir}', '-p{freePort()}', '--display_status:'])\n"
                "except SystemExit:\n"
                "    pass\n"
                "heavy = ('pydicom', 'sqlalchemy', 'pacscore.db', 'pacscore.storage', 'pacscore.codecs', "
                "'pacscore.config.loader', 'pacscore.control.offline', 'plugins.')\n"
                "print(sorted(name for name in sys.modules if name.startswith(heavy)))\n")
        result = subprocess.run([sys.executable, "-c", sent], capture_output=True, text=True, timeout=60)
        self.assertIn("dgate: no pacs server at", result.stderr)
        self.assertEqual(result.stdout.strip(), "[]")

    def test_dicomPortRefused(self):
        """Conquest's scripts send commands to its DICOM port (dgate
        -p5678): -p giving dicom.ini's TCPPort is refused at once, saying
        where pacs takes commands, and sends nothing to the DICOM port."""
        server = PacsServer(self.mktemp())
        code, output = self.dgate(f"-w{server.workdir}", f"-p{server.port}", "--display_status:")
        self.assertEqual(code, 1)
        self.assertEqual(output, f"dgate: -p{server.port} is the DICOM port (TCPPort in the working folder's "
                                 "dicom.ini): pacs takes commands on its control endpoint (ControlEndpoint = "
                                 f"tcp:{server.controlPort}:interface=127.0.0.1 in the working folder's dicom.ini: "
                                 f"dgate -p{server.controlPort}), not, as Conquest, on its DICOM port")

    def test_controlPortOff(self):
        server = PacsServer(self.mktemp(), ini={"ControlEndpoint": "off"})
        code, output = self.dgate(f"-w{server.workdir}", "--display_status:")
        self.assertEqual(code, 1)
        self.assertIn("the control port is off", output)

    def test_initializeCreatesTables(self):
        server = PacsServer(self.mktemp())
        code, output = self.dgate(f"-w{server.workdir}", "-i")
        self.assertEqual(code, 0, output)
        with sqlite3.connect(server.database) as connection:
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        self.assertLessEqual({"DICOMPatients", "DICOMStudies", "DICOMSeries", "DICOMImages", "DICOMWorkList"},
                             tables)

    def test_offlineListings(self):
        """-d, -m, -k and -f? read the working folder's configuration or a file, no server."""
        server = PacsServer(self.mktemp())
        server.addNode("LISTED", 4242, host="listed.example")
        code, output = self.dgate(f"-w{server.workdir}", "-d", "-m", "-k")
        self.assertEqual(code, 0, output)
        self.assertIn(f"MAG0       {server.workdir}/data", output)
        self.assertIn("LISTED            listed.example                 4242       un", output)
        self.assertIn("DICOMWorkList:\n    0x0008 0x0050 AccessionNumber 16 SQL_C_CHAR DT_STR OBR.3", output)
        path = os.path.abspath(self.mktemp())
        dataset = makeDataset("P", "N^M", "1.2.3", "1.2.3.4", "1.2.3.4.5", 1, 1, rows=2, columns=2)
        dataset.save_as(path, enforce_file_format=True)
        self.assertEqual(self.dgate(f"-f?{path}"), (0, "1.2.3.4.5"))
        code, output = self.dgate(f"-f?{path}.missing")
        self.assertEqual(code, 1)
        self.assertIn(f"-f? failed: {path}.missing", output)
        code, output = self.dgate("-f?")
        self.assertEqual(code, 2)
        self.assertIn("-f? needs a file", output)

    def test_listingOnALatin1Terminal(self):
        """What standard output's encoding cannot write (a Japanese folder
        name on a Latin-1 terminal) is shown escaped, the listing whole."""
        server = PacsServer(self.mktemp(), ini={"MAGDevices": "2", "MAGDevice1": "/srv/\u5c71\u7530"})
        stdout = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
        with mock.patch("sys.stdout", stdout):
            self.assertEqual(main([f"-w{server.workdir}", "-d"]), 0)
        stdout.flush()
        self.assertIn(b"\nMAG1       /srv/\\u5c71\\u7530\n", stdout.buffer.getvalue())

    def test_offlineListingToAReaderThatGoesAway(self):
        """``dgate -k | head -1`` prints the first line and exits 0, quietly."""
        server = PacsServer(self.mktemp())
        self.assertEqual(server.dgateIntoHead("-k"), ("DICOMPatients:\n", "", 0))
        self.assertEqual(server.dgateWithoutReader("-k"), ("", 0))

    def test_recompressFilesInPlace(self):
        """-jc1 (JPEG lossless), -j*jk (JPEG 2000 lossless), -jd (back to
        uncompressed), -nc4 (NKI), -nd (back): the pixels stay the same."""
        path = os.path.abspath(self.mktemp())
        dataset = makeDataset("P", "N^M", "1.2.3", "1.2.3.4", "1.2.3.4.5", 1, 1)
        dataset.save_as(path, enforce_file_format=True)
        pixels = dataset.pixel_array.tolist()
        for option, syntax in (("-jc1", JPEGLosslessSV1), ("-j*jk", JPEG2000Lossless), ("-jd", ExplicitVRLittleEndian)):
            code, output = self.dgate(f"{option}{path}")
            self.assertEqual(code, 0, output)
            converted = pydicom.dcmread(path)
            self.assertEqual((converted.file_meta.TransferSyntaxUID, converted.SOPInstanceUID), (syntax, "1.2.3.4.5"))
            self.assertEqual(converted.pixel_array.tolist(), pixels)
        self.assertEqual(self.dgate(f"-jd{path}"), (0, f"{path}: left as it is ({ExplicitVRLittleEndian})"))
        self.assertEqual(self.dgate(f"-nc4{path}"), (0, f"{path}: n4 applied ({ExplicitVRLittleEndian})"))
        compressed = pydicom.dcmread(path)
        self.assertNotIn("PixelData", compressed)
        self.assertEqual(nki.decompress(compressed[0x7FDF0010].value), dataset.PixelData)
        self.assertEqual(self.dgate(f"-nc2{path}"), (0, f"{path}: left as it is ({ExplicitVRLittleEndian})"))
        self.assertEqual(self.dgate(f"-nd{path}"), (0, f"{path}: uj applied ({ExplicitVRLittleEndian})"))
        self.assertEqual(pydicom.dcmread(path).pixel_array.tolist(), pixels)
        self.assertEqual(self.dgate("-jc1")[0], 2)
        self.assertEqual(self.dgate("-nc")[0], 2)

    def test_recompressionWithAnUnknownCodeRefused(self):
        """-j*qq said 'left as it is' (exit 0), as for a file already in
        the code's syntax: a typo could not be told apart; the file stays."""
        path = os.path.abspath(self.mktemp())
        makeDataset("P", "N^M", "1.2.3", "1.2.3.4", "1.2.3.4.5", 1, 1).save_as(path, enforce_file_format=True)
        with open(path, "rb") as f:
            before = f.read()
        for option in ("-j*qq", "-j-zz", "-ncq"):
            code, output = self.dgate(f"{option}{path}")
            self.assertEqual(code, 1, output)
            self.assertIn("is not a compression code (one of ", output)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_missingWorkdir(self):
        missing = os.path.abspath(self.mktemp())
        for action in ("-i", "-r", "--display_status:"):
            code, output = self.dgate(f"-w{missing}", action)
            self.assertEqual(code, 2)
            self.assertIn(f"-w {missing}: no such folder", output)
        self.assertFalse(os.path.exists(missing), "no archive was made there")

    def test_badConfiguration(self):
        server = PacsServer(self.mktemp())
        with open(os.path.join(server.workdir, "dgatesop.lst"), "a") as f:
            f.write("Broken\n")
        code, output = self.dgate("-w", server.workdir, "-i")
        self.assertEqual(code, 1)
        self.assertIn("dgatesop.lst:", output)

    def test_regenerateRefusedWithoutAnIndex(self):
        """An empty SQLServer selects the NULL driver, which keeps no index."""
        server = PacsServer(self.mktemp())
        server.setIni(SQLServer="")
        code, output = self.dgate(f"-w{server.workdir}", "-r")
        self.assertEqual(code, 1)
        self.assertIn("dgate: -r: SQLServer is empty, which selects the NULL driver", output)

    def test_regenerateStopsWhenADeviceFolderIsMissing(self):
        """An unmounted MAG1: -r fails naming it and leaves the index as it
        was, rather than dropping MAG1's objects from it."""
        server = PacsServer(self.mktemp(), ini={"MAGDevices": "2", "MAGDevice1": "./data2/"})
        os.makedirs(server.dataDir)
        mag1 = os.path.join(server.workdir, "data2")
        os.makedirs(os.path.join(mag1, "PAT1"))
        makeDataset("PAT1", "Doe^John", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1, rows=4, columns=4).save_as(
            os.path.join(mag1, "PAT1", "1.dcm"), enforce_file_format=True)
        self.assertEqual(self.dgate(f"-w{server.workdir}", "-r")[0], 0)
        os.rename(mag1, mag1 + ".unmounted")
        code, output = self.dgate(f"-w{server.workdir}", "-r")
        self.assertEqual(code, 1)
        self.assertIn(f"dgate: -r: MAG1: no folder {mag1}", output)
        self.assertNotIn("Initialising", output)
        with sqlite3.connect(server.database) as connection:
            self.assertEqual(connection.execute("SELECT DeviceName, ObjectFile FROM DICOMImages").fetchall(),
                             [("MAG1", "PAT1/1.dcm")])

    def test_regenerateCutShortIsMarkedUntilDone(self):
        """-r killed halfway leaves MAG0 marked in PacsRegen (the server's
        next start runs it again); a complete -r removes the mark."""
        server = PacsServer(self.mktemp())
        os.makedirs(os.path.join(server.dataDir, "PAT1"))
        makeDataset("PAT1", "Doe^John", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1, rows=4, columns=4).save_as(
            os.path.join(server.dataDir, "PAT1", "1.dcm"), enforce_file_format=True)

        def killed(regenerator, devices):
            raise KeyboardInterrupt()
        with mock.patch.object(Regenerator, "regenerate", killed):
            self.assertRaises(KeyboardInterrupt, self.dgate, f"-w{server.workdir}", "-r")
        for marks, images in (([("MAG0",)], 0), ([], 1)):
            with sqlite3.connect(server.database) as connection:
                self.assertEqual(connection.execute("SELECT DeviceName FROM PacsRegen").fetchall(), marks)
                self.assertEqual(connection.execute("SELECT count(*) FROM DICOMImages").fetchone()[0], images)
            self.assertEqual(self.dgate(f"-w{server.workdir}", "-r")[0], 0)

    def test_tableRebuildsRefusedWhileTheServerRuns(self):
        """-r and -i drop and recreate the index tables: with the working
        folder's server running (its control port answering) they would do
        so under it (deadlocks, empty C-FIND answers), so they are refused,
        naming the command that asks the server itself, and the index is
        left as it was."""
        server = PacsServer(self.mktemp())
        os.makedirs(os.path.join(server.dataDir, "PAT1"))
        makeDataset("PAT1", "Doe^John", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1, rows=4, columns=4).save_as(
            os.path.join(server.dataDir, "PAT1", "1.dcm"), enforce_file_format=True)
        self.assertEqual(self.dgate(f"-w{server.workdir}", "-r")[0], 0)
        listening = socket.create_server(("127.0.0.1", server.controlPort))
        self.addCleanup(listening.close)
        for option, command in (("-r", "--regen:"), ("-i", "--initializetables:")):
            code, output = self.dgate(f"-w{server.workdir}", option)
            self.assertEqual(code, 1)
            self.assertEqual(output, f"dgate: {option}: the server of this working folder is running (its control "
                                     f"port 127.0.0.1:{server.controlPort} answers); {option} would drop and "
                                     f"recreate the index tables under it: stop it first, or have it do so: "
                                     f"dgate {command}")
            with sqlite3.connect(server.database) as connection:
                self.assertEqual(connection.execute("SELECT count(*) FROM DICOMImages").fetchone()[0], 1)
        listening.close()
        self.assertEqual(self.dgate(f"-w{server.workdir}", "-r")[0], 0)

    def test_tableRebuildsWithAControlPortOnAnyFreePort(self):
        """A ControlEndpoint on port 0 (the server takes any free port, so no
        client can ask it) has -r and -i rely on the working folder's lock
        instead, said in one line: they run without a server, and are
        refused, not a traceback, while one holds the lock."""
        server = PacsServer(self.mktemp(), ini={"ControlEndpoint": "tcp:0:interface=127.0.0.1"})
        os.makedirs(os.path.join(server.dataDir, "PAT1"))
        makeDataset("PAT1", "Doe^John", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1, rows=4, columns=4).save_as(
            os.path.join(server.dataDir, "PAT1", "1.dcm"), enforce_file_format=True)
        unprobed = ("-r: ControlEndpoint gives no address to ask whether the server runs (port '0' is not a "
                    "number from 1 to 65535); the working folder's lock tells instead")
        code, output = self.dgate(f"-w{server.workdir}", "-r")
        self.assertEqual(code, 0, output)
        self.assertEqual(output.splitlines()[0], unprobed)
        with sqlite3.connect(server.database) as connection:
            self.assertEqual(connection.execute("SELECT count(*) FROM DICOMImages").fetchone()[0], 1)
        lock = WorkFolderLock(server.workdir)
        lock.acquire()
        self.addCleanup(lock.release)
        code, output = self.dgate(f"-w{server.workdir}", "-r")
        self.assertEqual(code, 1)
        self.assertEqual(output.splitlines(), [unprobed, f"dgate: -r: the working folder {server.workdir} is in use by "
                                                         f"pacs pid {os.getpid()} (which holds pacs.lock there): "
                                                         f"stop it first"])

    def test_regenerateReportsFileNamesThatAreNotUTF8(self):
        """A damaged file whose name is not UTF-8 is reported, its bytes
        escaped, even to a strict UTF-8 standard output, and -r goes on."""
        server = PacsServer(self.mktemp())
        folder = os.path.join(server.dataDir, "PAT1")
        os.makedirs(folder)
        dataset = makeDataset("PAT1", "Doe^John", "1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1, rows=4, columns=4)
        dataset.save_as(os.path.join(folder, "1.dcm"), enforce_file_format=True)
        with open(os.path.join(folder, "1.dcm"), "rb") as f:
            content = f.read()
        with open(os.path.join(os.fsencode(folder), b"cut\xff.dcm"), "wb") as f:
            f.write(content[:-10])
        result = subprocess.run([os.path.join(BIN, "dgate"), f"-w{server.workdir}", "-r"], capture_output=True,
                                text=True, timeout=60, env=dict(os.environ, PYTHONIOENCODING="utf-8"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"[Regen] {folder}/cut\\udcff.dcm -FAILED", result.stdout)
        self.assertIn("1 files indexed, 1 failed", result.stdout)

    def test_indexThatCannotBeOpened(self):
        server = PacsServer(self.mktemp())
        server.setIni(SQLServer=os.path.join(server.workdir, "dicom.ini", "conquest.db3"))
        os.makedirs(server.dataDir)  # MAG0, which -r checks first
        for option in ("-i", "-r"):
            code, output = self.dgate(f"-w{server.workdir}", option)
            self.assertEqual(code, 1)
            self.assertIn(f"dgate: {option} failed: ", output)
