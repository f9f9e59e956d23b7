"""``twistd pacs``: its options, its help, start-up errors."""

import email
import fcntl
import importlib.metadata
import io
import os
import pwd
import random
import signal
import socket
import subprocess
import sys
import termios
import time
from email import policy

from pydicom.data import get_testdata_file
from sqlalchemy import select
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import LogLevel, Logger, capturedLogs, formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.python.util import runAsEffectiveUser
from twisted.trial import unittest

from pacscore.config.ini import DicomIni
from pacscore.config.loader import Configuration, loadConfiguration
from pacscore.errormail import ErrorMail
from pacscore.logfiles import logFiles, userEvents
from pacscore.storage.space import MEGABYTE, Nightly, ThresholdClean
from pacscore.testing.certificates import Authority
from pacscore.testing.mutations import mutated
from pacscore.workfolderlock import LockError, WorkFolderLock
from tap.pacs import ArchiveService, ListeningService, Options, ServiceTree
from tests.interop.server import BIN, CONFIG_FILES, PacsServer, freePort, waitFor
from tests.pacscore.control.running import RunningArchive

OPTIONS = ("--config", "--workdir", "--dicom", "--dicom-tls", "--hl7", "--web", "--control", "--ae", "--db",
           "--help-db")

REFUSED = (usage.UsageError, SystemExit)  # how starting is refused


class OptionsTests(unittest.TestCase):

    def test_helpDocumentsEveryOption(self):
        text = str(Options())
        for option in OPTIONS:
            self.assertIn(option, text)

    def test_helpDb(self):
        """--help-db lists each driver --db can name with its description,
        as IDatabaseDriver.description promises, and exits."""
        output = io.StringIO()
        self.patch(sys, "stdout", output)
        error = self.assertRaises(SystemExit, Options().parseOptions, ["--help-db"])
        self.assertEqual(error.code, 0)
        lines = output.getvalue().splitlines()
        self.assertIn("sqlite: SQLite file (embedded default): sqlite:PATH or sqlite:////abs/path", lines)
        self.assertLessEqual({"mysql", "null", "postgresql", "sqlite"}, {line.partition(":")[0] for line in lines})

    def test_defaultsToPackagedConfiguration(self):
        workdir = self.mktemp()
        os.makedirs(workdir)
        options = Options()
        options.parseOptions(["--workdir", workdir])
        self.assertEqual(options.configuration.aeTitle, "CONQUESTSRV1")
        self.assertEqual(options.configuration.tcpPort, 5678)

    def test_missingWorkdir(self):
        error = self.assertRaises(usage.UsageError, Options().parseOptions, ["--workdir", "/no/such/folder"])
        self.assertIn("/no/such/folder", str(error))

    def started(self, server):
        """The Options of ``server``'s configuration parsed, and the lines
        it logged (formatted)."""
        options = Options()
        with capturedLogs() as events:
            options.parseOptions(["--config", server.workdir, "--workdir", server.workdir])
        self.addCleanup(options.archive.engine.dispose)
        return options, [formatEvent(e) for e in events]

    def test_strayLineInDicomIniIgnored(self):
        """A stray word in dicom.ini: start-up goes on, with a warning
        naming the file and line, as Conquest ignores it."""
        server = PacsServer(self.mktemp())
        path = os.path.join(server.workdir, "dicom.ini")
        with open(path, "a") as f:
            f.write("\nstray\n")
        with open(path) as f:
            line = f.read().splitlines().index("stray") + 1
        options, lines = self.started(server)
        self.assertEqual(options.configuration.tcpPort, server.port)
        self.assertIn(f"{path}:{line}: 'stray' is no 'Key = value', [section] or comment: ignored, as Conquest "
                      "ignores it", lines)

    def test_luaSectionWarnedOf(self):
        """Conquest's [lua] keys other than its event scripts (startup,
        nightly, background, association, command, clienterror and
        endassociation) do not run: one warning names the keys set (not the
        empty ones)."""
        server = PacsServer(self.mktemp())
        for key, value in (("startup", "print('up')"), ("association", "dofile('lua/assoc.lua')"),
                           ("nightly", ""), ("ExportConverter", "x = 1")):
            server.setIni("lua", **{key: value})
        options, lines = self.started(server)
        path = os.path.join(server.workdir, "dicom.ini")
        line = options.configuration.ini.lineOf("ExportConverter", "lua")
        self.assertEqual([line for line in lines if "[lua]" in line],
                         [f"{path}:{line}: [lua] ExportConverter: these Conquest Lua event scripts are not supported "
                          "here and do not run (startup, nightly, background, association, command, clienterror "
                          "and endassociation do)"])
        self.assertEqual(sorted(options.archive.luaEvents.scripts), ["association", "startup"])

    def test_ignoredKeysWarnedOf(self):
        """Conquest's keys pacs does not act on (DecompressNon16BitsJpeg,
        FileCompressMode, DemoCopy ...) get one warning naming those set to
        another value than Conquest's default (not QueueSize = 128 as in
        etc/dicom.ini, not an empty UseBuiltInJPEG), in file order."""
        server = PacsServer(self.mktemp())
        server.setIni(DecompressNon16BitsJpeg="0", FileCompressMode="4", QueueSize="128", UseBuiltInJPEG="",
                      DemoCopy="/tmp/copies", IgnoreOutOfMemoryErrors="1")
        options, lines = self.started(server)
        path = os.path.join(server.workdir, "dicom.ini")
        ini = options.configuration.ini
        keys = sorted(["DecompressNon16BitsJpeg", "FileCompressMode", "DemoCopy", "IgnoreOutOfMemoryErrors"],
                      key=ini.lineOf)
        self.assertEqual([line for line in lines if "no effect" in line],
                         [f"{path}:{ini.lineOf(keys[0])}: {', '.join(keys)}: these Conquest keys have no effect "
                          "here (README: Conquest features not supported)"])

    def test_unrunConvertersWarnedOf(self):
        """Conquest's converters pacs does not run (RejectedImageConverter0,
        MoveDeviceConverter0, ArchiveConverter0, MergeSeriesConverter0 ...)
        get one warning naming those set (not an empty one), in file order."""
        server = PacsServer(self.mktemp())
        server.setIni(RejectedImageConverter0="save to rejected_%o.dcm", MoveDeviceConverter0="nop x",
                      ArchiveConverter0="nop y", MergeSeriesConverter0="nop z", MergeStudiesConverter0="",
                      VirtualServerQueryConverter="nop q")
        options, lines = self.started(server)
        path = os.path.join(server.workdir, "dicom.ini")
        ini = options.configuration.ini
        keys = sorted(["RejectedImageConverter0", "MoveDeviceConverter0", "ArchiveConverter0",
                       "MergeSeriesConverter0", "VirtualServerQueryConverter"], key=ini.lineOf)
        self.assertEqual([line for line in lines if "do not run" in line],
                         [f"{path}:{ini.lineOf(keys[0])}: {', '.join(keys)}: these Conquest converters do not run "
                          "here (README: Conquest features not supported)"])

    def test_syntaxErrorNamesFileAndLine(self):
        server = PacsServer(self.mktemp())
        path = os.path.join(server.workdir, "dicom.sql")
        with open(path, "a") as f:
            f.write("\n*Bogus*\n{\n}\n")
        error = self.assertRaises(SystemExit, Options().parseOptions, ["--config", server.workdir])
        self.assertIn("twistd: configuration error: ", str(error))
        self.assertIn("dicom.sql:", str(error))


class TwistdTests(unittest.TestCase):

    def twistd(self, *args, cwd=None):
        return subprocess.run([os.path.join(BIN, "twistd"), *args], capture_output=True, text=True,
                              timeout=60, cwd=cwd)

    def test_twistdListsPacs(self):
        result = self.twistd("--help")
        self.assertIn("pacs", result.stdout)

    def test_pacsHelp(self):
        result = self.twistd("pacs", "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in OPTIONS:
            self.assertIn(option, result.stdout)

    def test_brokenConfigurationStopsStartupWithoutTraceback(self):
        server = PacsServer(self.mktemp())
        path = os.path.join(server.workdir, "acrnema.map")
        with open(path, "a") as f:
            f.write("ONLYONEFIELD\n")
        lines = sum(1 for _ in open(path))
        result = self.twistd("-n", "--pidfile=", "pacs", "--config", server.workdir, "--workdir", server.workdir,
                             cwd=server.workdir)
        self.assertNotEqual(result.returncode, 0)
        output = result.stdout + result.stderr
        self.assertIn(f"twistd: configuration error: {path}:{lines}: ", output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("--workdir", output, "the message alone, not after the options' help")

    def test_unusableMagDeviceStopsStartupWithoutTraceback(self):
        server = PacsServer(self.mktemp())
        blocker = os.path.join(server.workdir, "not-a-folder")
        open(blocker, "w").close()
        server.setIni(MAGDevice0=os.path.join(blocker, "data") + "/")
        result = self.twistd("-n", "--pidfile=", "pacs", "--config", server.workdir, "--workdir", server.workdir,
                             "--dicom", f"tcp:{server.port}:interface=127.0.0.1", cwd=server.workdir)
        self.assertEqual(result.returncode, 1)
        output = result.stdout + result.stderr
        self.assertIn(f"twistd: cannot start: {blocker}/data: Not a directory", output)
        self.assertNotIn("Traceback", output)

    def pidFileGoes(self, pidFile):
        """The refused daemon's pid file is gone: the launcher returns once
        the daemon reports, and the daemon removes it as it exits, a moment
        later."""
        waitFor(lambda: not os.path.exists(pidFile), timeout=30, message="the refused daemon's pid file to go")

    def test_aDaemonThatCannotStartTellsItsLauncher(self):
        """Daemonized (no -n), a start refused once the services start (the
        folder of MAG0 missing while the index holds objects on it) ends
        the launching twistd with status 1 and the reason, and leaves no
        pid file."""
        server = PacsServer(self.mktemp())
        disk = os.path.join(server.workdir, "mnt", "disk1")
        server.setIni(MAGDevice0=disk + "/")
        server.start()
        self.assertEqual(server.store(get_testdata_file("CT_small.dcm")).returncode, 0)
        server.stop()
        os.rename(disk, disk + ".away")
        pidFile = os.path.join(server.workdir, "twistd.pid")
        result = self.twistd(f"--pidfile={pidFile}", f"--logfile={server.logPath}", "pacs", "--config",
                             server.workdir, "--workdir", server.workdir, "--dicom",
                             f"tcp:{server.port}:interface=127.0.0.1", cwd=server.workdir)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("An error has occurred", result.stderr)
        self.assertIn("cannot start: the folder of MAG0 is missing", result.stderr)
        self.pidFileGoes(pidFile)
        self.assertIn("cannot start: the folder of MAG0 is missing but the index holds objects on it", server.log())

    def test_theFilesAreMadeByTheUserOfUid(self):
        """With --uid/--gid (as root: nobody; else the user running the
        tests), the server starts in a fresh working folder of that user,
        and the lock file, the index, its folder and the MAG device's are
        that user's."""
        server = PacsServer(self.mktemp())
        user = pwd.getpwnam("nobody") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
        os.chmod(os.path.dirname(server.workdir), 0o755)  # trial's mktemp makes it 0700
        os.chown(server.workdir, user.pw_uid, user.pw_gid)
        command = server.command()
        command[1:1] = [f"--uid={user.pw_uid}", f"--gid={user.pw_gid}"]
        process = subprocess.Popen(command, cwd=server.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        server.process = process
        self.addCleanup(server.stop)
        waitFor(lambda: "control port listening on" in server.log() or process.poll() is not None, timeout=60)
        self.assertIsNone(process.poll(), server.log())
        for path in ("pacs.lock", "data", "data/.pacs-tmp", "data/dbase", "data/dbase/conquest.db3"):
            status = os.stat(os.path.join(server.workdir, path))
            self.assertEqual((status.st_uid, status.st_gid), (user.pw_uid, user.pw_gid), path)

    def test_sighupReopensTheLogAndRereadsDicomIniAndSigquitStops(self):
        """SIGHUP (logrotate's postrotate after it renamed the log file)
        reopens twistd's log file and re-reads dicom.ini, and the server
        goes on; SIGQUIT then stops it cleanly, as SIGTERM does.  (In a
        session of its own, it has no terminal, as a daemon.)"""
        server = PacsServer(self.mktemp()).start(start_new_session=True)
        self.addCleanup(server.stop)
        os.rename(server.logPath, server.logPath + ".1")
        server.setIni(WebReadOnly="0")
        server.process.send_signal(signal.SIGHUP)
        waitFor(lambda: "parameter(s) changed" in server.log(), timeout=30)
        self.assertIn(f"SIGHUP: {server.logPath} reopened, re-reading dicom.ini", server.log())
        self.assertIn(f"SIGHUP: 1 parameter(s) changed in {server.workdir}/dicom.ini", server.log())
        self.assertEqual(server.echo().returncode, 0)
        server.process.send_signal(signal.SIGQUIT)
        self.assertEqual(server.process.wait(30), -signal.SIGTERM)
        self.assertIn("SIGQUIT: stopping as at SIGTERM", server.log())
        self.assertIn("Server Shut Down.", server.log())

    def test_aHungUpTerminalStopsTheServer(self):
        """twistd -n in a terminal (make run) whose window is closed: the
        kernel's SIGHUP stops it as SIGTERM does, rather than leave it
        running detached with its ports and lock."""
        primary, secondary = os.openpty()
        self.addCleanup(os.close, secondary)
        server = PacsServer(self.mktemp()).start(
            start_new_session=True, stdin=secondary,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # its controlling terminal
        self.addCleanup(server.stop)
        os.close(primary)  # the terminal hangs up
        self.assertEqual(server.process.wait(30), -signal.SIGTERM)
        self.assertIn("SIGHUP: the terminal hung up, stopping as at SIGTERM", server.log())
        self.assertIn("Server Shut Down.", server.log())

    def test_theVersionIsLogged(self):
        server = PacsServer(self.mktemp()).start()
        self.addCleanup(server.stop)
        self.assertIn(f"[tap.pacs.ArchiveService#info] pacs {importlib.metadata.version('pacs')}\n", server.log())

    def test_aSecondServerInTheWorkingFolderIsRefused(self):
        """A second pacs on the working folder of a running one is refused
        in one line naming the folder and the running pid, and touches
        nothing of the first's (its temporary files stay)."""
        server = PacsServer(self.mktemp()).start()
        self.addCleanup(server.stop)
        temporary = set(os.listdir(os.path.join(server.dataDir, ".pacs-tmp")))
        result = self.twistd("-n", "--pidfile=", "pacs", "--config", server.workdir, "--workdir", server.workdir,
                             "--dicom", f"tcp:{freePort()}:interface=127.0.0.1", "--hl7", "off", "--web", "off",
                             "--control", "off", cwd=server.workdir)
        self.assertEqual(result.returncode, 1)
        output = result.stdout + result.stderr
        self.assertIn(f"twistd: cannot start: the working folder {server.workdir} is in use by pacs pid "
                      f"{server.process.pid} (which holds pacs.lock there): stop it first", output)
        self.assertNotIn("Traceback", output)
        self.assertLessEqual(temporary, set(os.listdir(os.path.join(server.dataDir, ".pacs-tmp"))))
        self.assertEqual(server.echo().returncode, 0)

    def test_dgateRegenRespectsTheLock(self):
        """dgate -r refuses while the working folder is locked, even when no
        control port answers (a server whose port is off or not yet up)."""
        server = PacsServer(self.mktemp(), ini={"ControlEndpoint": "off"})
        lock = WorkFolderLock(server.workdir)
        lock.acquire()
        self.addCleanup(lock.release)
        result = server.dgate("-r")
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"dgate: -r: the working folder {server.workdir} is in use by pacs pid {os.getpid()}",
                      result.stderr)
        self.assertFalse(os.path.exists(server.database))

    def test_aWorkingFolderTheServerMayNotWriteHasTheLockInMag0(self):
        """A working folder the server may not write (--uid nobody in a
        folder of root's; a read-only one; its data, index and logs
        elsewhere): it starts with pacs.lock in the folder of MAG0, where
        dgate -i/-r's lock, as the same user, finds it held (in this
        process: nobody may not run the venv's dgate)."""
        if os.getuid() != 0:
            raise unittest.SkipTest("as root, to serve a folder of root's as nobody")
        nobody = pwd.getpwnam("nobody")
        server = PacsServer(self.mktemp(), ini={"ControlEndpoint": "off"})
        os.chmod(os.path.dirname(server.workdir), 0o755)  # trial's mktemp makes it 0700
        writable = server.workdir + "-rw"
        os.makedirs(os.path.join(writable, "data"))
        for folder in (writable, os.path.join(writable, "data")):
            os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        server.setIni(MAGDevice0=f"{writable}/data/", SQLServer=f"{writable}/data/dbase/conquest.db3",
                      HL7DropFolder=f"{writable}/hl7/", TroubleLog=f"{writable}/PacsTrouble.log",
                      UserLog=f"{writable}/PacsUser.log")
        command = server.command()
        command[1:1] = [f"--uid={nobody.pw_uid}", f"--gid={nobody.pw_gid}"]
        process = server.process = subprocess.Popen(command, cwd=server.workdir, stdout=subprocess.PIPE,
                                                    stderr=subprocess.STDOUT)
        self.addCleanup(server.stop)
        waitFor(lambda: f"DICOM service {server.ae} listening on" in server.log() or process.poll() is not None,
                timeout=60)
        self.assertIsNone(process.poll(), server.log())
        self.assertFalse(os.path.exists(os.path.join(server.workdir, "pacs.lock")))
        with open(os.path.join(writable, "data", "pacs.lock")) as f:
            self.assertEqual(f.read(), f"{process.pid}\n")
        dgateLock = WorkFolderLock.of(loadConfiguration(server.workdir, server.workdir))
        error = self.assertRaises(LockError, runAsEffectiveUser, nobody.pw_uid, nobody.pw_gid, dgateLock.acquire)
        self.assertEqual(str(error), f"the working folder {server.workdir} is in use by pacs pid {process.pid} "
                                     f"(which holds {writable}/data/pacs.lock): stop it first")
        self.assertEqual(server.echo().returncode, 0)

    def test_portInUseStopsStartup(self):
        server = PacsServer(self.mktemp())
        with socket.socket() as s:
            s.bind(("127.0.0.1", server.port))
            s.listen()
            result = self.twistd("-n", "--pidfile=", "pacs", "--config", server.workdir, "--workdir",
                                 server.workdir, "--dicom", f"tcp:{server.port}:interface=127.0.0.1",
                                 cwd=server.workdir)
        self.assertNotEqual(result.returncode, 0)
        output = result.stdout + result.stderr
        self.assertIn(f"twistd: cannot listen: DICOM service PACS on tcp:{server.port}:interface=127.0.0.1: ", output)
        self.assertIn("Address already in use", output)
        self.assertNotIn("Traceback", output)

    def test_aDaemonWhosePortIsInUseTellsItsLauncher(self):
        """Daemonized (no -n), a port in use ends the launching twistd with
        status 1 and the reason, and leaves no pid file."""
        server = PacsServer(self.mktemp())
        pidFile = os.path.join(server.workdir, "twistd.pid")
        with socket.socket() as s:
            s.bind(("127.0.0.1", server.port))
            s.listen()
            result = self.twistd(f"--pidfile={pidFile}", f"--logfile={server.logPath}", "pacs", "--config",
                                 server.workdir, "--workdir", server.workdir, "--dicom",
                                 f"tcp:{server.port}:interface=127.0.0.1", cwd=server.workdir)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("cannot listen", result.stderr)
        self.pidFileGoes(pidFile)

    def test_portOutOfRangeStopsStartupWithoutTraceback(self):
        server = PacsServer(self.mktemp())
        server.setIni(HL7Endpoint="tcp:99999:interface=127.0.0.1")
        result = self.twistd("-n", "--pidfile=", "pacs", "--config", server.workdir, "--workdir", server.workdir,
                             "--dicom", f"tcp:{server.port}:interface=127.0.0.1", cwd=server.workdir)
        self.assertEqual(result.returncode, 1)
        output = result.stdout + result.stderr
        self.assertIn("twistd: configuration error: ", output)
        self.assertIn("HL7Endpoint: 'tcp:99999:interface=127.0.0.1' is not a usable endpoint (port 99999 is not "
                      "from 0 to 65535)", output)
        self.assertNotIn("Traceback", output)


class RegularInstallTests(unittest.TestCase):
    """``pip install .`` (not editable): the dropin and the packaged
    configuration come along in the wheel."""

    def test_wheelInstall(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        target = os.path.abspath(self.mktemp())
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--target", target, root], check=True, capture_output=True, timeout=300)
        for dropin in ("pacs_plugin.py", "pacs_endpoints.py"):
            self.assertTrue(os.path.exists(os.path.join(target, "twisted", "plugins", dropin)))
        self.assertFalse(os.path.exists(os.path.join(target, "twisted", "plugins", "__init__.py")))
        code = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', %r)];"
                "from twisted.scripts.twistd import run; sys.argv = ['twistd'] + sys.argv[1:]; run()" % root)
        environment = dict(os.environ, PYTHONPATH=target)
        listing = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True,
                                 env=environment, cwd=target, timeout=60)
        self.assertIn("pacs", listing.stdout)
        helpText = subprocess.run([sys.executable, "-c", code, "pacs", "--help"], capture_output=True,
                                  text=True, env=environment, cwd=target, timeout=60)
        self.assertIn("--config", helpText.stdout, helpText.stderr)
        check = subprocess.run(
            [sys.executable, "-c", "import sys; sys.path[:] = [p for p in sys.path if p not in ('', %r)];"
             "import pacscore; from pacscore.config.loader import loadConfiguration;"
             "print(pacscore.__file__); print(loadConfiguration().aeTitle)" % root],
            capture_output=True, text=True, env=environment, cwd=target, timeout=60)
        self.assertIn(target, check.stdout, check.stderr)
        self.assertIn("CONQUESTSRV1", check.stdout, check.stderr)


class ConfigurationValueTests(unittest.TestCase):
    """Bad values are found before any service starts."""

    def optionsFor(self, **ini):
        server = PacsServer(self.mktemp())
        server.setIni(**ini)
        return server, ["--config", server.workdir, "--workdir", server.workdir]

    def refusal(self, extra=(), **ini):
        """The message of refusing to start with the dicom.ini keys ``ini``
        and the ``extra`` command-line arguments: a UsageError for the
        options, a SystemExit (no usage text) for the files."""
        server, args = self.optionsFor(**ini)
        return str(self.assertRaises(REFUSED, Options().parseOptions, args + list(extra)))

    def test_badPort(self):
        error = self.refusal(TCPPort="five")
        self.assertIn("dicom.ini:", error)
        self.assertIn("TCPPort", error)

    def test_unknownDatabaseScheme(self):
        self.assertIn("sqlite", self.refusal(["--db", "oracle:x"]))

    def test_noMagDevice(self):
        self.assertIn("no MAG device", self.refusal(MAGDevices="0"))

    def test_badEndpointInDicomIni(self):
        error = self.refusal(HL7Endpoint="tcp:2575:interfaJe=127.0.0.1")
        self.assertIn("dicom.ini:", error)
        self.assertIn("HL7Endpoint: 'tcp:2575:interfaJe=127.0.0.1' is not a usable endpoint", error)

    def test_badEndpointOption(self):
        self.assertIn("--dicom 'tcp:x:y:z' is not a usable endpoint", self.refusal(["--dicom", "tcp:x:y:z"]))
        self.assertIn("--hl7 'tcp:70000' is not a usable endpoint (port 70000 is not from 0 to 65535)",
                      self.refusal(["--hl7", "tcp:70000"]))

    def test_portOutOfRange(self):
        for key, value in (("TCPPort", "70000"), ("TCPPort", "-5"), ("WebEndpoint", "tcp:99999"),
                           ("DICOMTLSEndpoint", "tcp:port=65536")):
            error = self.refusal(**{key: value})
            self.assertIn("dicom.ini:", error)
            self.assertIn(f"{key}: ", error)
            self.assertIn("is not from 0 to 65535", error)

    def test_badForwardAssociationLevel(self):
        """Named with its line, without the options' help."""
        server, args = self.optionsFor(ForwardAssociationLevel="FOO")
        error = str(self.assertRaises(SystemExit, Options().parseOptions, args))
        self.assertIn("twistd: configuration error: ", error)
        self.assertIn("dicom.ini:", error)
        self.assertIn("ForwardAssociationLevel must be one of GLOBAL, SOPCLASS, PATIENT, STUDY, SERIES, IMAGE, "
                      "not 'FOO'", error)

    def test_indexFolderCannotBeMade(self):
        blocker = os.path.abspath(self.mktemp())
        open(blocker, "w").close()
        self.assertIn(f"cannot start: {blocker}/dbase: Not a directory",
                      self.refusal(SQLServer=os.path.join(blocker, "dbase", "conquest.db3")))

    def test_windowsPath(self):
        error = self.refusal(MAGDevice0="d:\\program files (x86)\\dicomserver\\data\\")
        self.assertIn("twistd: configuration error: ", error)
        self.assertIn("dicom.ini:", error)
        self.assertIn("MAGDevice0 = d:\\program files (x86)\\dicomserver\\data\\ is a Windows path", error)

    def test_unknownMailService(self):
        error = self.refusal(MailHost="mail", MailRcptName1="a@x", MailPort="nosuchservice")
        self.assertIn("dicom.ini:", error)
        self.assertIn("MailPort = nosuchservice: no TCP service of that name", error)

    def test_badLRUSort(self):
        error = self.refusal(LRUSort="PatientName")
        self.assertIn("dicom.ini:", error)
        self.assertIn("LRUSort = PatientName: expected StudyDate, PatientBir or AccessTime", error)

    def test_mirrorInsideAMagDevice(self):
        error = self.refusal(MIRRORDevice0="./data/mirror/")
        self.assertIn("dicom.ini:", error)
        self.assertIn("MIRROR0", error)
        self.assertIn("overlap", error)

    def test_nightlyCleanIsAServiceWhenSet(self):
        for value, expected in (("0", []), ("300", ["NightlyCleanThreshold"])):
            server, args = self.optionsFor(NightlyCleanThreshold=value)
            options = Options()
            options.parseOptions(args)
            self.addCleanup(options.archive.engine.dispose)
            [archiveService] = [child for child in options.services.served if isinstance(child, ArchiveService)]
            self.assertEqual([child.name for child in archiveService if isinstance(child, Nightly)], expected)

    @defer.inlineCallbacks
    def test_theStatusPortIsTheOneListenedOn(self):
        """``--dicom`` overrides TCPPort: the archive's port (what status
        reports) becomes the one the DICOM service bound."""
        server, args = self.optionsFor(TCPPort="5678")
        options = Options()
        options.parseOptions(args + ["--dicom", "tcp:0:interface=127.0.0.1"])
        self.addCleanup(options.archive.engine.dispose)
        [dicom] = [child for child in options.services.served
                   if isinstance(child, ListeningService) and child.description.startswith("tcp:0")]
        dicom.startService()
        port = yield dicom._waitingForPort
        bound = port.getHost().port
        yield port.stopListening()
        self.assertNotEqual(bound, 5678)
        self.assertEqual(options.archive.tcpPort, bound)

    def test_theEndpointsServingAreRecorded(self):
        """The descriptions of the listeners, options or dicom.ini's, are
        the archive's ``endpoints`` (commands refuse to write their key files)."""
        server, args = self.optionsFor(HL7Endpoint="tcp:0:interface=127.0.0.2")
        options = Options()
        options.parseOptions(args + ["--dicom", "tcp:0:interface=127.0.0.1", "--web", "off",
                                     "--control", "tcp:0:interface=localhost"])
        self.addCleanup(options.archive.engine.dispose)
        self.assertEqual(options.archive.endpoints, ["tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.2",
                                                     "tcp:0:interface=localhost"])

    def test_unprotectedControlPortNamesWhereItCameFrom(self):
        """A control port open to others without ControlSecret is refused
        naming the ``--control`` option when it gave it, else dicom.ini's line."""
        error = self.refusal(["--control", "tcp:47781"])
        self.assertIn("--control tcp:47781: the control port tcp:47781 is not bound to", error)
        self.assertNotIn("dicom.ini:", error)
        error = self.refusal(ControlEndpoint="tcp:47781")
        self.assertIn("dicom.ini:", error)
        self.assertIn("the control port tcp:47781 is not bound to", error)

    def startUpLog(self, args):
        """What the start-up with ``args`` logs, as text."""
        options = Options()
        with capturedLogs() as events:
            options.parseOptions(args)
        options.lock.release()  # of the working folder, which the next start-up of the test takes
        self.addCleanup(options.archive.engine.dispose)
        return "\n".join(formatEvent(event) for event in events)

    def test_connectionLimitsLogged(self):
        """Start-up logs the connection limits of the HL7 listener (and the
        memory of its unfinished messages), the control port and the web
        interface, as it logs the DICOM service's; none of a service that is off."""
        server, args = self.optionsFor(HL7MaxConnections="50", HL7MaxConnectionsPerPeer="5", HL7MaxBufferedMB="16",
                                       ControlMaxConnections="20", WebMaxConnections="100",
                                       WebMaxConnectionsPerPeer="8")
        endpoints = ["--dicom", "tcp:0:interface=127.0.0.1", "--hl7", "tcp:0:interface=127.0.0.1",
                     "--web", "tcp:0:interface=127.0.0.1", "--control", "tcp:0:interface=127.0.0.1"]
        log = self.startUpLog(args + endpoints)
        self.assertIn("HL7 MLLP service: at most 50 connections at once, 5 from one address; unfinished messages "
                      "of at most 16 MB in all", log)
        self.assertIn("control port: at most 20 connections at once, any number from one address", log)
        self.assertIn("web interface: at most 100 connections at once, 8 from one address", log)
        self.assertEqual(log.count("DICOM service: at most "), 1)
        log = self.startUpLog(args + endpoints[:2] + ["--hl7", "off", "--web", "off", "--control", "off"])
        self.assertIn("DICOM service: at most ", log)
        self.assertNotIn("HL7 MLLP service: at most", log)
        self.assertNotIn("web interface: at most", log)
        self.assertNotIn("control port: at most", log)

    def test_certificatesOutOfDateWarnedOf(self):
        """Start-up warns of a TLS endpoint's or a [DICOMTLSNodes] line's
        certificate that has expired, naming the file and the subject."""
        authority = Authority(os.path.abspath(self.mktemp()), "hospital")
        archive, node = authority.issue("archive", server=True, expired=True), authority.issue("pacs", expired=True)
        valid = authority.issue("valid", server=True)
        server, args = self.optionsFor(DICOMTLSEndpoint=f"mtls:0:interface=127.0.0.1:privateKey={archive.key}:"
                                                        f"certKey={archive.certificate}:caCerts={authority.certificate}")
        server.addNode("SECURESCP", 104)
        server.setIni(section="DICOMTLSNodes", SECURESCP=f"caCerts={authority.certificate}:privateKey={node.key}:"
                                                         f"certKey={node.certificate}")
        log = self.startUpLog(args + ["--web", f"ssl:0:interface=127.0.0.1:privateKey={valid.key}:"
                                               f"certKey={valid.certificate}"])
        self.assertIn(f" on mtls:0:interface=127.0.0.1:privateKey={archive.key}:", log)
        self.assertIn(f"caCerts={authority.certificate}: certificate {archive.certificate} (/CN=archive) expired on ",
                      log)
        self.assertIn(f"[DICOMTLSNodes] SECURESCP: certificate {node.certificate} (/CN=pacs) expired on ", log)
        self.assertNotIn(valid.certificate, log)

    def test_chainCertificatesOutOfDateWarnedOf(self):
        """Start-up warns of an expired issuing authority in a certKey
        full-chain file or an extraCertChain (sent with a valid leaf,
        which peers then refuse), naming the file and which certificate of it."""
        folder = os.path.abspath(self.mktemp())
        root = Authority(folder, "root")
        issuing = Authority(folder, "issuing", issuer=root, expired=True)
        archive, node = issuing.issue("archive", server=True), issuing.issue("pacs")
        server, args = self.optionsFor(HL7Endpoint=f"ssl:0:interface=127.0.0.1:privateKey={archive.key}:"
                                                   f"certKey={archive.certificate}:extraCertChain={issuing.certificate}")
        server.addNode("SECURESCP", 104)
        server.setIni(section="DICOMTLSNodes", SECURESCP=f"caCerts={root.certificate}:privateKey={node.key}:"
                                                         f"certKey={issuing.chain(node)}")
        log = self.startUpLog(args + ["--web", "off"])
        self.assertIn(f"extraCertChain={issuing.certificate}: certificate {issuing.certificate} (/CN=issuing) "
                      "expired on ", log)
        self.assertIn(f"[DICOMTLSNodes] SECURESCP: certificate 2 of 2 in {issuing.chain(node)} (/CN=issuing) "
                      "expired on ", log)
        self.assertNotIn("(/CN=archive)", log)
        self.assertNotIn("(/CN=pacs)", log)

    @defer.inlineCallbacks
    def test_nullDriverWarningNamesWhatSelectedIt(self):
        """The start-up warning of no index names ``--db null:`` or the empty SQLServer."""
        for extra, ini, source in ((["--db", "null:"], {}, "--db null:"), ([], {"SQLServer": ""}, "empty SQLServer")):
            server, args = self.optionsFor(**ini)
            options = Options()
            options.parseOptions(args + extra)
            self.addCleanup(options.archive.engine.dispose)
            [archiveService] = [child for child in options.services.served if isinstance(child, ArchiveService)]
            with capturedLogs() as events:
                archiveService.startService()
            yield archiveService.stopService()
            self.assertIn(f"no image index is kept (NULL driver: {source})",
                          "\n".join(formatEvent(event) for event in events))

    def test_badTLSEndpoint(self):
        self.assertIn("--dicom-tls 'mtls:2762:privateKey=/no/key.pem:caCerts=/no/ca.pem' is not a usable endpoint "
                      "(privateKey=/no/key.pem: No such file or directory)",
                      self.refusal(["--dicom-tls", "mtls:2762:privateKey=/no/key.pem:caCerts=/no/ca.pem"]))
        error = self.refusal(DICOMTLSEndpoint="mtls:2762:privateKey=/no/key.pem")
        self.assertIn("dicom.ini:", error)
        self.assertIn("DICOMTLSEndpoint: 'mtls:2762:privateKey=/no/key.pem' is not a usable endpoint "
                      "(mtls: needs privateKey=FILE and caCerts=FILE", error)

    def test_damagedConfigurationFiles(self):
        """Seeded random damage to any of the four files either still
        starts or stops with a message (UsageError, SystemExit), never another exception."""
        rng = random.Random(20261202)
        server, args = self.optionsFor()
        originals = {}
        for name in CONFIG_FILES:
            with open(os.path.join(server.workdir, name), "rb") as f:
                originals[name] = f.read()
        refused = 0
        for _ in range(60):
            damaged = rng.choice(sorted(originals))
            data = bytearray(originals[damaged])
            position = rng.randrange(len(data))
            data[position:position + 40] = mutated(rng, bytes(data[position:position + 40]))
            for name, original in originals.items():
                with open(os.path.join(server.workdir, name), "wb") as f:
                    f.write(bytes(data) if name == damaged else original)
            try:
                Options().parseOptions(args)
            except REFUSED:
                refused += 1
        self.assertGreater(refused, 10)


class SlowStop(service.Service):
    """A service whose stop ends when ``stopped`` fires."""

    def __init__(self):
        self.stopped = defer.Deferred()

    def stopService(self):
        service.Service.stopService(self)
        return self.stopped


class ShutdownRecorder:
    """An ``Archive`` whose export service is a ``SlowStop``, and which
    notes when it shuts down."""

    def __init__(self):
        self.export = SlowStop()
        self.shutDown = False
        self.luaEvents = service.MultiService()  # no [lua] scripts

    def exportService(self):
        return self.export

    def spaceServices(self):
        return []

    def shutdown(self):
        self.shutDown = True
        return defer.succeed(None)


class ArchiveServiceTests(unittest.TestCase):

    def test_theIndexWriterStopsAfterTheExportService(self):
        """The export service records the actions it finishes through the
        index writer: the archive shuts down only once it has stopped."""
        archive = ShutdownRecorder()
        archiveService = ArchiveService(archive)
        stopped = archiveService.stopService()
        self.assertFalse(archive.shutDown)
        archive.export.stopped.callback(None)
        self.assertTrue(archive.shutDown)
        self.successResultOf(stopped)

    @defer.inlineCallbacks
    def stopDuringAClean(self, ini, start):
        """Stop the ArchiveService of an archive with ``ini`` while the
        clean-up that ``start(archiveService)`` starts deletes its first
        patient; check that it finished that patient (files and rows), then
        the clean-up ended and the archive shut down, with no failed write
        logged."""
        running = RunningArchive(self, ini=ini)
        yield running.storeAgedPatients(os.path.abspath(self.mktemp()))
        archive = running.archive
        archive.spaceKeeper.freeSpace = lambda path: (12 - len(running.files())) * MEGABYTE  # 0 MB free
        archiveService = ArchiveService(archive)
        stopping, stops, remove = defer.Deferred(), [], archive.localActions.removeInstances

        def stopWhileRemoving(instances):
            stops.append(archiveService.stopService())
            stopping.callback(None)
            return remove(instances)
        archive.localActions.removeInstances = stopWhileRemoving
        with capturedLogs() as events:
            yield start(archiveService)
            yield stopping
            yield stops[0]
        self.assertIsNone(archive.spaceKeeper.cleaning)  # the stop waited for it
        self.assertEqual(len(stops), 1)
        self.assertEqual(len(running.files()), 8)  # PAT0002 gone, then it stopped
        with archive.engine.connect() as connection:  # the index is stopped: read the database itself
            patients = connection.execute(select(archive.index.tables.patient.c.PatientID)).scalars().all()
        self.assertEqual(sorted(patients), ["PAT0000", "PAT0001"])
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.error], [])

    def test_aStopDuringANightlyCleanWaitsForThePatientUnderWay(self):
        """NightlyCleanThreshold deletes patients through the index writer."""
        def start(archiveService):
            [nightly] = [child for child in archiveService if isinstance(child, Nightly)]
            nightly.clock = task.Clock()
            nightly.now = lambda: time.mktime((2026, 3, 1, 0, 59, 0, 0, 0, -1)) + nightly.clock.seconds()
            nightly.startService()
            nightly.clock.advance(60)
        return self.stopDuringAClean({"NightlyCleanThreshold": "1"}, start)

    def test_aStopDuringAThresholdCleanWaitsForThePatientUnderWay(self):
        """So does the MAGDeviceThreshold clean-up an object being written
        starts."""
        def start(archiveService):
            [cleaner] = [child for child in archiveService if isinstance(child, ThresholdClean)]
            cleaner.startService()
            return archiveService.archive.workers.deferToWorker(cleaner.checkFromThread)
        return self.stopDuringAClean({"MAGDeviceThreshold": "1"}, start)


class ThreadedClock(task.Clock):
    """A Clock whose callFromThread runs the call at its next turn, as the
    reactor runs the calls of other threads."""

    def callFromThread(self, f, *args, **kwargs):
        self.callLater(0, f, *args, **kwargs)


class LoggingStop(service.Service):
    """A service whose stop takes 10 s of ``clock`` and then logs, to
    ``publisher``, a C-STORE answered, a warning and an error."""

    def __init__(self, clock, publisher):
        self.clock = clock
        self.log = Logger(namespace="pacscore.dicom.protocol", observer=publisher)

    def stopService(self):
        service.Service.stopService(self)
        return task.deferLater(self.clock, 10, self.logWhileStopping)

    def logWhileStopping(self):
        Logger(observer=userEvents).info("{callingAE}: C-STORE", operation="C-STORE", callingAE="STORESCU")
        self.log.warn("stopping: the forwards still under way after 10 s")
        self.log.error("C-MOVE: C-STORE to SLOWPEER failed")


class ServiceTreeTests(unittest.TestCase):
    """The log files and the error mail stop only after the other services
    have stopped, getting what they log while they stop."""

    def setUp(self):
        self.clock = ThreadedClock()
        self.publisher = globalLogPublisher  # the error mail logs a mail that failed there
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        ini = DicomIni.fromString("[sscscp]\nTroubleLog = trouble.log\nUserLog = user.log\n")
        self.logFiles = logFiles(Configuration(ini, None, None, None, self.workdir, self.workdir,
                                               os.path.join(self.workdir, "dicom.ini")), self.publisher)
        self.sent = []

    def lines(self, name):
        with open(os.path.join(self.workdir, name), encoding="utf-8") as f:
            return [line[25:] for line in f.read().splitlines()]

    def stopped(self, observers):
        """Start and stop a ServiceTree of ``observers`` whose one other
        service is a ``LoggingStop``; check the stop waited for it."""
        tree = ServiceTree(observers)
        LoggingStop(self.clock, self.publisher).setServiceParent(tree.served)
        tree.startService()
        stopping = tree.stopService()
        self.clock.advance(9)
        self.assertNoResult(stopping)
        self.clock.advance(1)
        self.successResultOf(stopping)
        self.assertFalse([child for child in tree if child.running])

    def test_theLogFilesGetWhatTheOthersLogWhileTheyStop(self):
        self.stopped(self.logFiles)
        self.assertEqual(self.lines("user.log"), ['"C-Store","STORESCU        "'])
        self.assertEqual(self.lines("trouble.log"), ["*** stopping: the forwards still under way after 10 s",
                                                     "*** C-MOVE: C-STORE to SLOWPEER failed"])

    def send(self, host, sender, recipients, message, senderDomainName, port):
        self.sent.append(email.message_from_bytes(message, policy=policy.default).get_content())
        return defer.fail(OSError("connection refused"))

    def test_errorsLoggedWhileTheOthersStopAreMailed(self):
        """Even those still on their way from the thread that logged them;
        the log files get the warning of a last mail that failed."""
        errorMail = ErrorMail(self.clock, "smtp.example", ["ops@example"], publisher=self.publisher, send=self.send)
        self.stopped(self.logFiles + [errorMail])
        [message] = self.sent
        self.assertIn("[pacscore.dicom.protocol] C-MOVE: C-STORE to SLOWPEER failed", message)
        self.assertEqual(self.lines("trouble.log")[2:],
                         ["*** error messages could not be mailed through smtp.example:25: connection refused"])

    def test_aStopThatFailsIsLoggedAndTheOthersStillStop(self):
        class Broken(service.Service):
            def stopService(self):
                service.Service.stopService(self)
                raise OSError("stuck")
        tree = ServiceTree(self.logFiles)
        Broken().setServiceParent(tree)
        tree.startService()
        self.successResultOf(tree.stopService())
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.lines("trouble.log"), ["*** stopping Broken failed: stuck"])
        self.assertFalse([child for child in tree if child.running])
