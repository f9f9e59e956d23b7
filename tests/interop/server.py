"""Run ``twistd -n pacs`` as a subprocess in a temporary working folder on
a free loopback port, and drive it with DCMTK's tools (``TCP_NODELAY=1``)."""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pydicom

from pacscore.config.ini import MAIN_SECTION, DicomIni
from pacscore.config.loader import defaultConfigDir

BIN = os.path.dirname(sys.executable)
CONFIG_FILES = ("dicom.ini", "acrnema.map", "dgatesop.lst", "dicom.sql")


# Listening ports come from below Linux's ephemeral range (32768-60999), so
# that no outgoing connection of a test (which gets an ephemeral port) can
# hold one between choosing it and the server binding it; a port is never
# handed out twice in one test process, and each pytest-xdist worker takes
# its own share of them (every Nth), so that two workers never choose the
# same port before either server binds it (a control port 'Address already
# in use' failed a run of four workers).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
LISTEN_PORTS = range(20000 + (int(_WORKER[2:]) if _WORKER[2:].isdigit() else 0) % _WORKERS, 32768, _WORKERS)
_handedOut = set()


def freePort():
    """A loopback TCP port nothing listens on, not handed out before."""
    while True:
        if len(_handedOut) >= len(LISTEN_PORTS):
            raise RuntimeError(f"every port of {LISTEN_PORTS} was handed out")
        port = random.choice(LISTEN_PORTS)
        if port in _handedOut:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handedOut.add(port)
        return port


def dcmtkEnvironment():
    return dict(os.environ, TCP_NODELAY="1")


def dcmtkTool(tool):
    """The absolute path of DCMTK's ``tool``.

    pynetdicom installs Python tools with the same names (echoscu, storescp,
    findscu ...) into the virtualenv's bin folder, which shadows DCMTK's
    when the venv is activated: look only outside it."""
    folders = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep)
               if p and os.path.realpath(p) != os.path.realpath(BIN)]
    path = shutil.which(tool, path=os.pathsep.join(folders + ["/usr/bin"]))
    if path is None:
        raise FileNotFoundError(f"DCMTK's {tool} is not installed (apt-get install dcmtk)")
    return path


def dcmtk(tool, *args, timeout=300, check=False):
    """Run a DCMTK tool; returns the CompletedProcess (text output)."""
    result = subprocess.run([dcmtkTool(tool), *(a if isinstance(a, bytes) else str(a) for a in args)], capture_output=True, text=True,
                            env=dcmtkEnvironment(), timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{tool} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


class PacsServer:
    """A pacs server in ``workdir`` (a Conquest-style install: the config
    files and ./data live there)."""

    def __init__(self, workdir, ae="PACS", ini=None, env=None):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        for name in CONFIG_FILES:
            target = os.path.join(self.workdir, name)
            if not os.path.exists(target):
                shutil.copy(os.path.join(defaultConfigDir(), name), target)
        self.ae = ae
        self.env = env  # the server's environment (None: this process's)
        self.port = freePort()
        self.hl7Port = freePort()
        self.controlPort = freePort()
        self.webPort = freePort()
        self.process = None
        self.logPath = os.path.join(self.workdir, "pacs.log")
        self.setIni(**{"MyACRNema": ae, "TCPPort": str(self.port),
                       "HL7Endpoint": f"tcp:{self.hl7Port}:interface=127.0.0.1",
                       "ControlEndpoint": f"tcp:{self.controlPort}:interface=127.0.0.1",
                       "WebEndpoint": f"tcp:{self.webPort}:interface=127.0.0.1", **(ini or {})})

    def setIni(self, section=MAIN_SECTION, **keys):
        path = os.path.join(self.workdir, "dicom.ini")
        ini = DicomIni.fromFile(path)
        for key, value in keys.items():
            ini.set(key, value, section)
        ini.write(path)

    def addNode(self, ae, port, host="127.0.0.1", compression="un"):
        """Put ``ae`` first in acrnema.map (read at start-up), before the
        wildcard entries of the default file that would match it too."""
        path = os.path.join(self.workdir, "acrnema.map")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(f"{ae:<16} {host:<16} {port:<6} {compression}\n{text}")

    @property
    def dataDir(self):
        return os.path.join(self.workdir, "data")

    @property
    def database(self):
        return os.path.join(self.workdir, "data", "dbase", "conquest.db3")

    def command(self, *extra):
        return [os.path.join(BIN, "twistd"), "-n", "--pidfile=", f"--logfile={self.logPath}", "pacs",
                "--config", self.workdir, "--workdir", self.workdir,
                "--dicom", f"tcp:{self.port}:interface=127.0.0.1", *extra]

    def start(self, timeout=30, **popen):
        """Start it (``popen``: more arguments of ``Popen``) and wait until it serves."""
        logStart = len(self.log())
        self.process = subprocess.Popen(self.command(), cwd=self.workdir, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=self.env, **popen)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"pacs exited with {self.process.returncode}:\n"
                                     f"{self.process.stdout.read().decode()}\n{self.log()}")
            if "control port listening on" in self.log()[logStart:]:
                return self
            time.sleep(0.05)
        self.process.kill()  # not left behind serving, its test having failed
        self.process.wait()
        self.process.stdout.close()
        raise AssertionError(f"pacs did not start within {timeout} s:\n{self.log()}")

    def log(self):
        try:
            with open(self.logPath, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self, timeout=30):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("pacs did not stop on SIGTERM")
        finally:
            self.process.stdout.close()

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process.stdout.close()

    def peakRSSKilobytes(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def echo(self):
        return dcmtk("echoscu", "-aec", self.ae, "127.0.0.1", self.port)

    def store(self, *paths, calling="STORESCU", extra=(), timeout=600):
        return dcmtk("storescu", "-aec", self.ae, "-aet", calling, *extra, "127.0.0.1", self.port, *paths,
                     timeout=timeout)

    def sendHL7(self, path):
        """``mllp_send`` of a file of messages; the ACKs it printed, decoded."""
        result = subprocess.run([os.path.join(BIN, "mllp_send"), "--loose", "-f", path, "-p", str(self.hl7Port),
                                 "127.0.0.1"], capture_output=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"mllp_send failed: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode("utf-8", errors="replace")

    def dgate(self, *args, text=True):
        """dgate run in the server's folder; ``text=False``: its output as bytes."""
        return subprocess.run([os.path.join(BIN, "dgate"), f"-w{self.workdir}", *args],
                              capture_output=True, text=text, timeout=600)

    def dgateIntoHead(self, *args):
        """``dgate ... | head -1`` run by bash in the server's folder: (what
        head printed, dgate's standard error, dgate's exit status)."""
        result = subprocess.run(["bash", "-c", '"$@" | head -1; exit "${PIPESTATUS[0]}"', "bash",
                                 os.path.join(BIN, "dgate"), f"-w{self.workdir}", *args],
                                capture_output=True, text=True, timeout=600)
        return result.stdout, result.stderr, result.returncode

    def dgateWithoutReader(self, *args):
        """dgate writing to a pipe whose reader has gone before it starts:
        (its standard error, its exit status)."""
        reader, writer = os.pipe()
        os.close(reader)
        try:
            result = subprocess.run([os.path.join(BIN, "dgate"), f"-w{self.workdir}", *args], stdout=writer,
                                    stderr=subprocess.PIPE, text=True, timeout=600)
        finally:
            os.close(writer)
        return result.stderr, result.returncode


def waitFor(condition, timeout=60, message="condition"):
    """Poll ``condition()`` until it is true; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


def acknowledged(storescuOutput):
    """The SOP Instance UIDs ``storescu -v`` got a Success response for."""
    uids, sending = set(), None
    for line in storescuOutput.splitlines():
        match = re.search(r"Sending file: (\S+)", line)
        if match:
            sending = match.group(1)
        elif "Received Store Response (Success)" in line and sending:
            uids.add(pydicom.dcmread(sending, stop_before_pixels=True).SOPInstanceUID)
    return uids


def acknowledgedBy(processes):
    """What ``storescu -v`` processes got Success for (waits for them to end)."""
    return set().union(*(acknowledged(process.communicate(timeout=60)[0]) for process in processes))


def killWhenIndexed(server, indexed, count, timeout=60):
    """SIGKILL ``server`` once ``indexed()`` (its image rows) reaches ``count``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and indexed() < count:
        time.sleep(0.01)
    server.kill()
