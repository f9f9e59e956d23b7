"""Third-party DICOM peers for the interop tests, as plain foreground
subprocesses in a temporary folder on free ports: the destinations of the
C-MOVE tests (and, for Orthanc, a query/retrieve peer in its own right).

``OrthancServer``
    Debian's Orthanc (``apt-get install orthanc``, 1.10.1 on Debian 12) run
    as ``/usr/sbin/Orthanc config.json`` with a configuration written into
    ``workdir``: no systemd, no plugins, its storage and SQLite index in
    ``workdir``. Inspected through its REST API (stdlib ``urllib`` only).

``StorescpServer``
    DCMTK's ``storescp`` in single-process mode, writing every object it
    receives into ``workdir/received`` under a unique file name.

Both take ``acceptedSyntaxes``: ``"all"`` (default: compressed objects are
kept as they arrive), ``"uncompressed"`` (storescp only: its own default,
the three uncompressed syntaxes) or ``"implicit"`` (Implicit VR Little
Endian only, so a sender must convert, or fail to negotiate).

Neither program can be told to listen on loopback only (Orthanc 1.10 and
storescp 3.6.7 have no bind-address option): both listen on every
interface, and Orthanc's ``RemoteAccessAllowed: false`` only refuses
non-local HTTP clients. The ports are picked free on 127.0.0.1.
"""

import io
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pydicom

from tests.interop.server import dcmtk, dcmtkEnvironment, dcmtkTool, freePort

ORTHANC = "/usr/sbin/Orthanc"

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"

# storescp's option that accepts Implicit VR Little Endian only
# ("+xi --implicit: accept implicit VR little endian TS only").
STORESCP_IMPLICIT_ONLY = "+xi"

# storescp's options for each acceptedSyntaxes value: "+xa" accepts all the
# transfer syntaxes DCMTK supports, no option means its default (the
# uncompressed ones, explicit VR local byte order preferred).
STORESCP_SYNTAX_OPTIONS = {
    "all": ("+xa",),
    "uncompressed": (),
    "implicit": (STORESCP_IMPLICIT_ONLY,),
}

# Orthanc's "user-friendly groups" of compressed transfer syntaxes; each is
# applied after "AcceptedTransferSyntaxes" (new in Orthanc 1.9.0).
ORTHANC_SYNTAX_GROUPS = (
    "DeflatedTransferSyntaxAccepted",
    "JpegTransferSyntaxAccepted",
    "Jpeg2000TransferSyntaxAccepted",
    "JpegLosslessTransferSyntaxAccepted",
    "JpipTransferSyntaxAccepted",
    "Mpeg2TransferSyntaxAccepted",
    "Mpeg4TransferSyntaxAccepted",
    "RleTransferSyntaxAccepted",
    "H265TransferSyntaxAccepted",
)


def _logTail(path, lines=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except FileNotFoundError:
        return ""


def _portAccepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _Peer:
    """Subprocess plumbing shared by both peers: ``self.process`` writes to
    ``self.logPath``; ``stop()`` sends SIGTERM, ``kill()`` SIGKILL."""

    name = "peer"
    process = None
    logFile = None

    def _spawn(self, command):
        self.logFile = open(self.logPath, "ab")
        self.process = subprocess.Popen(command, cwd=self.workdir, stdout=self.logFile,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=dcmtkEnvironment())

    def _waitUntil(self, ready, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self._closeLog()
                raise AssertionError(f"{self.name} exited with {code}:\n{self.log()}")
            if ready():
                return self
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"{self.name} did not start within {timeout} s:\n{self.log()}")

    def log(self, lines=40):
        """The last ``lines`` lines of the peer's output."""
        return _logTail(self.logPath, lines)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout=30):
        """SIGTERM and wait (Orthanc takes ~3.5 s to shut down)."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"{self.name} did not stop on SIGTERM:\n{self.log()}")
        self._closeLog()

    def kill(self):
        """SIGKILL: immediate, for tear-downs that do not need a clean stop."""
        if self.running:
            self.process.kill()
            self.process.wait()
        self._closeLog()

    def _closeLog(self):
        if self.logFile is not None:
            self.logFile.close()
            self.logFile = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def echo(self, calling="ECHOSCU"):
        """C-ECHO with DCMTK's echoscu; returns the CompletedProcess."""
        return dcmtk("echoscu", "-aet", calling, "-aec", self.aet, "127.0.0.1", self.port, timeout=60)

    def store(self, *paths, calling="STORESCU", extra=(), timeout=120):
        """C-STORE ``paths`` with DCMTK's storescu; returns the CompletedProcess."""
        return dcmtk("storescu", "-aet", calling, "-aec", self.aet, *extra, "127.0.0.1", self.port, *paths,
                     timeout=timeout)


class OrthancServer(_Peer):
    """Orthanc with its configuration, storage and index in ``workdir``.

    ``modalities`` maps a symbolic name to ``(host, port)`` (the AE title is
    the name) or ``(aet, host, port)``: the DICOM peers Orthanc may C-ECHO,
    C-FIND, C-MOVE and C-STORE to, and which may C-MOVE from it.
    ``acceptedSyntaxes`` is ``"all"``, ``"implicit"`` or a list of transfer
    syntax UIDs (``*`` wildcards allowed). ``config`` overrides any key of
    the generated configuration."""

    name = "Orthanc"

    def __init__(self, workdir, aet="ORTHANC", modalities=None, acceptedSyntaxes="all", config=None,
                 verbose=False):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.aet = aet
        self.port = freePort()
        self.httpPort = freePort()
        while self.httpPort == self.port:
            self.httpPort = freePort()
        self.verbose = verbose
        self.configPath = os.path.join(self.workdir, "orthanc.json")
        self.logPath = os.path.join(self.workdir, "orthanc.log")
        self.config = self.makeConfig(modalities or {}, acceptedSyntaxes)
        self.config.update(config or {})
        with open(self.configPath, "w") as f:
            json.dump(self.config, f, indent=2)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def makeConfig(self, modalities, acceptedSyntaxes):
        config = {
            "Name": f"interop-{self.aet}",
            "StorageDirectory": os.path.join(self.workdir, "storage"),
            "IndexDirectory": os.path.join(self.workdir, "index"),
            "StorageCompression": False,
            "Plugins": [],
            "LuaScripts": [],
            "HttpServerEnabled": True,
            "HttpPort": self.httpPort,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "RegisteredUsers": {},
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "HttpCompressionEnabled": False,
            "MetricsEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.port,
            "DicomCheckCalledAet": False,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "UnknownSopClassAccepted": True,
            "DicomModalities": {},
            "DicomModalitiesInDatabase": False,
            "OrthancPeers": {},
            # A later copy of an instance replaces the stored one, so
            # instanceBytes() shows what arrived last.
            "OverwriteInstances": True,
            "SyncStorageArea": False,
            "SaveJobs": False,
            "DeidentifyLogs": False,
            "StableAge": 1,
        }
        for name, address in modalities.items():
            aet, host, port = (name, *address) if len(address) == 2 else address
            config["DicomModalities"][name] = [aet, host, int(port)]
        if acceptedSyntaxes == "all":
            config["AcceptedTransferSyntaxes"] = ["1.2.840.10008.1.*"]
        elif acceptedSyntaxes == "implicit":
            config["AcceptedTransferSyntaxes"] = [IMPLICIT_VR_LITTLE_ENDIAN]
            config.update(dict.fromkeys(ORTHANC_SYNTAX_GROUPS, False))
        elif isinstance(acceptedSyntaxes, (list, tuple)):
            config["AcceptedTransferSyntaxes"] = list(acceptedSyntaxes)
        else:
            raise ValueError(f"acceptedSyntaxes: {acceptedSyntaxes!r}")
        return config

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpPort}"

    def command(self):
        return [ORTHANC, *(["--verbose"] if self.verbose else []), self.configPath]

    def start(self, timeout=30):
        if not os.path.exists(ORTHANC):
            raise FileNotFoundError(f"{ORTHANC} is not installed (apt-get install orthanc)")
        self._spawn(self.command())
        return self._waitUntil(self._answers, timeout)

    def _answers(self):
        try:
            return self.rest("/system", timeout=1)["DicomPort"] == self.port
        except (OSError, ValueError):
            return False

    # REST

    def rest(self, path, method="GET", body=None, timeout=30, raw=False):
        """Call the REST API; JSON answers are decoded unless ``raw``."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with self._opener.open(request, timeout=timeout) as response:
                content = response.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"Orthanc {method} {path}: {e.code} {e.read().decode(errors='replace')}") from e
        if raw:
            return content
        return json.loads(content) if content else None

    def instanceId(self, sopInstanceUID):
        """Orthanc's identifier of the stored instance (KeyError if absent)."""
        for match in self.rest("/tools/lookup", "POST", sopInstanceUID.encode()):
            if match["Type"] == "Instance":
                return match["ID"]
        raise KeyError(sopInstanceUID)

    def instances(self):
        """The SOP Instance UIDs stored, sorted."""
        return sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in self.rest("/instances?expand"))

    def instanceBytes(self, sopInstanceUID):
        """The stored Part-10 file."""
        return self.rest(f"/instances/{self.instanceId(sopInstanceUID)}/file", raw=True)

    def dataset(self, sopInstanceUID):
        """The stored file as a pydicom Dataset."""
        return pydicom.dcmread(io.BytesIO(self.instanceBytes(sopInstanceUID)))

    def transferSyntaxOf(self, sopInstanceUID):
        """The transfer syntax UID the instance was received (and stored) in."""
        path = f"/instances/{self.instanceId(sopInstanceUID)}/metadata/TransferSyntax"
        return self.rest(path, raw=True).decode().strip()

    def reset(self):
        """Delete every stored instance (by patient)."""
        for patient in self.rest("/patients"):
            self.rest(f"/patients/{patient}", "DELETE")


class StorescpServer(_Peer):
    """DCMTK's storescp, single process, writing what it receives into
    ``workdir/received`` (``+uf``: a unique file name per object received,
    so a second copy of an instance is a second file). It accepts unknown
    SOP classes (``-pm``). ``options`` are extra storescp flags."""

    name = "storescp"

    def __init__(self, workdir, aet="STORESCP", options=(), acceptedSyntaxes="all"):
        self.workdir = os.path.abspath(workdir)
        self.outputDir = os.path.join(self.workdir, "received")
        os.makedirs(self.outputDir, exist_ok=True)
        self.aet = aet
        self.port = freePort()
        self.logPath = os.path.join(self.workdir, "storescp.log")
        if acceptedSyntaxes not in STORESCP_SYNTAX_OPTIONS:
            raise ValueError(f"acceptedSyntaxes: {acceptedSyntaxes!r}")
        self.options = (*STORESCP_SYNTAX_OPTIONS[acceptedSyntaxes], *options)

    def command(self):
        return [dcmtkTool("storescp"), "--single-process", "-v", "-dhl", "-pm", "+uf",
                "-aet", self.aet, "-od", self.outputDir, *self.options, str(self.port)]

    def start(self, timeout=30):
        self._spawn(self.command())
        return self._waitUntil(lambda: _portAccepts(self.port), timeout)

    def files(self):
        """Paths of the files received, sorted."""
        return sorted(os.path.join(self.outputDir, name) for name in os.listdir(self.outputDir)
                      if not name.startswith("."))

    def datasets(self):
        """The received files read with pydicom."""
        return [pydicom.dcmread(path) for path in self.files()]

    def reset(self):
        """Delete every received file."""
        for path in self.files():
            os.remove(path)


class DcmqrscpServer(_Peer):
    """DCMTK's dcmqrscp: a strictly hierarchical query/retrieve archive (a
    C-FIND that skips a level's unique key is refused), storing what it
    receives in ``workdir/db``; ``hosts`` maps the AE titles it may C-MOVE
    to to their ports on 127.0.0.1."""

    name = "dcmqrscp"

    def __init__(self, workdir, aet="DCMQR", hosts=None):
        self.workdir = os.path.abspath(workdir)
        self.database = os.path.join(self.workdir, "db")
        os.makedirs(self.database, exist_ok=True)
        self.aet = aet
        self.port = freePort()
        self.hosts = dict(hosts or {})
        self.logPath = os.path.join(self.workdir, "dcmqrscp.log")
        self.configPath = os.path.join(self.workdir, "dcmqrscp.cfg")

    def writeConfig(self):
        hosts = "".join(f"{ae.lower()} = ({ae}, 127.0.0.1, {port})\n" for ae, port in self.hosts.items())
        with open(self.configPath, "w") as f:
            f.write(f"NetworkTCPPort = {self.port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\n"
                    f"HostTable BEGIN\n{hosts}HostTable END\n\nVendorTable BEGIN\nVendorTable END\n\n"
                    f"AETable BEGIN\n{self.aet} {self.database} RW (200, 1024mb) ANY\nAETable END\n")

    def start(self, timeout=30):
        self.writeConfig()
        self._spawn([dcmtkTool("dcmqrscp"), "-v", "-c", self.configPath])
        return self._waitUntil(lambda: _portAccepts(self.port), timeout)
