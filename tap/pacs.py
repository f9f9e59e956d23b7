"""``twistd pacs``: options and the service tree.

    twistd -n pacs [--config PATH] [--workdir DIR] [--dicom ENDPOINT] [--dicom-tls ENDPOINT]
                   [--hl7 ENDPOINT] [--web ENDPOINT] [--control ENDPOINT] [--ae TITLE] [--db SCHEME:...]

``Options`` reads the configuration and builds one ``Archive`` and the
service tree, so that any configuration error stops start-up with a message,
not a traceback.  ``makeService`` returns that tree (a ``ServiceTree``):
the TroubleLog and UserLog files (``pacscore.logfiles``) and the error
mail, which stop only after all the others have stopped, then the lock of
the working folder (``pacscore.workfolderlock``, taken while the options
are read, before anything is written), the handler of a stop signal while
stopping (``pacscore.stopsignals``), the handler of SIGHUP (``pacscore.hangup``), the DICOM
listener (and a second one, for TLS, when asked), the HL7 MLLP listener, the
web interface and the control port (strports endpoints, so ``ssl:``, ``unix:`` and pacs's own
``mtls:`` work too), the HL7 drop folder's timer and the service that runs
the archive's pools, with the export queue runner, the MAGDeviceThreshold
and nightly clean/move services and the ``[lua]`` event scripts as its
children.
"""

import functools
import importlib.metadata
import os
import pwd
import sys
from typing import NamedTuple

from twisted.application import internet, service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet import reactor as globalReactor
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.util import runAsEffectiveUser

from pacscore.archive import Archive, StartupError
from pacscore.config.errors import ConfigError
from pacscore.config.listeners import DISABLED, serverEndpoint
from pacscore.config.loader import TLS_NODES, loadConfiguration
from pacscore.control import endpoint as controlEndpoint
from pacscore.control.inprocess import commandOutput
from pacscore.control.protocol import ControlFactory
from pacscore.control.shutdown import AbortAssociations, OrderlyStop, quitGracePeriod
from pacscore.db.drivers import availableDrivers, namesNoDatabase, redacted
from pacscore.debuglog import serverLog
from pacscore.errormail import ErrorMail
from pacscore.filelimit import raiseFileLimit
from pacscore.hangup import Hangup
from pacscore.logfiles import logFiles
from pacscore.reactorclock import useMonotonicClock
from pacscore.stopsignals import StopSignals
from pacscore.tls import certificateFiles, validityWarnings
from pacscore.web import DEFAULT_WEB_ENDPOINT
from pacscore.web.site import webSite
from pacscore.workfolderlock import LockError, WorkFolderLock


DEFAULT_HL7_ENDPOINT = "tcp:2575:interface=127.0.0.1"
WEB_WITHOUT_LOGIN = ("the web interface has no login: whoever reaches it can see every stored image and, unless "
                     "WEBPush = 0, send them anywhere acrnema.map names, and unless DICOMwebStore = 0 store objects "
                     "with STOW-RS; set WebUsers (an htpasswd -B file), or bind it to 127.0.0.1 behind a proxy that "
                     "authenticates")
WEB_PASSWORDS_IN_CLEAR = ("the web interface asks for WebUsers passwords over plain HTTP, where anyone on the way can "
                          "read them: serve it on an ssl: endpoint")

log = Logger()


class CannotStart(SystemExit, Exception):
    """Start-up refused once twistd starts the services, with the message
    for the console: an Exception, so that twistd (which catches no
    other) tells the launcher of its daemon and removes the pid file,
    and a SystemExit, so that the interpreter then exits 1 with the
    message alone, not a traceback."""


class ControlSettings(NamedTuple):
    """The control port: ControlEndpoint, ControlSecret (clients must give
    it when set), whether it must be set, and QuitGracePeriod (seconds)."""

    endpoint: str
    secret: str | None
    requireSecret: bool
    gracePeriod: int


class Options(usage.Options):
    """Also builds the Archive and the service tree, so a configuration
    error of any kind stops start-up with a message instead of a traceback."""

    synopsis = "[options]"
    reactor = globalReactor
    longdesc = (
        "Run the pacs DICOM archive: a DICOM service (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, "
        "modality worklist) that files objects on the MAG devices of a Conquest-style configuration "
        "and indexes them in SQL, an HL7 MLLP listener that fills the worklist, Conquest's web pages "
        "and WADO (http://HOST:PORT/cgi-bin/dgate?mode=top), and a control port "
        "that 'dgate --command:arguments' talks to. Every "
        "ENDPOINT is a Twisted strports description, e.g. tcp:5678, tcp:11112:interface=127.0.0.1, "
        "ssl:5679:privateKey=key.pem.")

    optParameters = [
        ["config", "c", None,
         "A dicom.ini, or a folder holding dicom.ini, acrnema.map, dgatesop.lst and dicom.sql "
         "[default: the packaged etc/ defaults]."],
        ["workdir", "w", None,
         "Working folder: relative paths in the configuration (MAGDevice0 = ./data/, SQLServer) "
         "resolve against it, like 'dgate -w' [default: the current folder]."],
        ["dicom", None, None, "Endpoint of the DICOM service [default: tcp:<TCPPort of dicom.ini>]."],
        ["dicom-tls", None, None,
         "A second endpoint of the DICOM service, meant for TLS, or 'off' [default: DICOMTLSEndpoint of "
         "dicom.ini, else off], e.g. mtls:2762:privateKey=key.pem:certKey=cert.pem:caCerts=ca.pem "
         "(clients must show a certificate signed by caCerts) or ssl:2762:privateKey=key.pem:certKey=cert.pem."],
        ["hl7", None, None,
         "Endpoint of the HL7 MLLP listener, or 'off' [default: HL7Endpoint of dicom.ini, else "
         f"{DEFAULT_HL7_ENDPOINT}]."],
        ["web", None, None,
         "Endpoint of the web interface (Conquest's /cgi-bin/dgate pages and WADO), or 'off' [default: "
         f"WebEndpoint of dicom.ini, else {DEFAULT_WEB_ENDPOINT}]."],
        ["control", None, None,
         "Endpoint of the control port (dgate --command:...), or 'off' [default: ControlEndpoint of "
         f"dicom.ini, else {controlEndpoint.DEFAULT_ENDPOINT}]. Clients must give ControlSecret of "
         "dicom.ini when it is set, and it must be set when the port is bound to anything but 127.0.0.1, "
         "::1 or localhost."],
        ["ae", None, None, "AE title of this server; overrides MyACRNema."],
        ["db", None, None,
         "Index database, SCHEME:ARGS, e.g. sqlite:./data/dbase/conquest.db3; overrides the "
         "SQLServer/SQLite/Postgres/MySQL keys of dicom.ini."],
    ]

    def opt_help_db(self):
        """List the database drivers --db can name, and exit."""
        for driver in availableDrivers():
            print(f"{driver.name}: {driver.description}")
        sys.exit(0)

    def postOptions(self):
        workdir = os.path.abspath(self["workdir"] or os.getcwd())
        if not os.path.isdir(workdir):
            raise usage.UsageError(f"--workdir {workdir}: no such folder")
        self.lock = None
        try:
            self._build(workdir)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise

    def _build(self, workdir):
        """The configuration (which writes nothing), the lock of the working
        folder (before anything else: a second server must touch nothing of
        the first's), Archive and service tree."""
        user = serverUser(self.parent)  # who makes the lock file, the index and its folder
        try:
            self.configuration = loadConfiguration(self["config"], workdir)
            self.lock = WorkFolderLock.of(self.configuration)
            runAsEffectiveUser(*user, self.lock.acquire)
            self.archive = runAsEffectiveUser(*user, Archive, self.configuration, self.reactor,
                                              dbDescription=self["db"], aeTitle=self["ae"])
            self.control = self._controlSettings()
            self.services = serviceTree(self)
        except ConfigError as e:  # the operator's files, not the command line: no usage text
            raise SystemExit(f"twistd: configuration error: {e}") from None
        except (StartupError, LockError) as e:
            raise SystemExit(f"twistd: cannot start: {e}") from None
        except ValueError as e:
            raise usage.UsageError(str(e))

    def endpoint(self, option, description):
        """The server endpoint of ``description``, which ``--option`` or else
        dicom.ini or a built-in default gave; an unusable one raises
        ValueError naming the option.  Only an option's can be unusable:
        ``loadConfiguration`` refused any of dicom.ini's, naming the line
        (``pacscore.config.listeners.checkEndpoints``)."""
        try:
            return serverEndpoint(self.reactor, description)
        except ValueError as e:
            raise ValueError(f"--{option} {e}") from e

    def _controlSettings(self):
        """The ``ControlSettings`` of the control port, or None when it is off."""
        ini = self.configuration.ini
        description = self["control"]
        if description is None:
            description = ini.get("ControlEndpoint", "") or controlEndpoint.DEFAULT_ENDPOINT
        if description.strip().lower() in DISABLED:
            return None
        secret = ini.get("ControlSecret", "") or None
        problem = controlEndpoint.secretProblem(description, secret)
        if problem is not None:
            if self["control"] is not None:
                raise ValueError(f"--control {description}: {problem}")
            raise ConfigError(self.configuration.iniPath, ini.lineOf("ControlEndpoint"), problem)
        return ControlSettings(description, secret, not controlEndpoint.isLoopback(description), quitGracePeriod(ini))


class ServiceTree(service.MultiService):
    """The top of the service tree: the ``observers`` of what the server
    logs (the TroubleLog and UserLog files, the error mail), then
    ``served``, a MultiService of all the other services.  It starts them
    in that order, and stops them in reverse, each once the one after it
    has finished stopping (MultiService would stop them all at once): so
    the observers still get what the others log while they stop (the
    C-STOREs that end then, a forward or retrieve that fails), and the log files what the error mail logs of its last
    mail."""

    log = Logger()

    def __init__(self, observers):
        service.MultiService.__init__(self)
        for observer in observers:
            observer.setServiceParent(self)
        self.served = service.MultiService()
        self.served.setServiceParent(self)

    def stopService(self):
        service.Service.stopService(self)
        return defer.ensureDeferred(self._stopInTurn())

    async def _stopInTurn(self):
        for child in reversed(list(self)):
            try:
                await defer.maybeDeferred(child.stopService)
            except Exception:
                self.log.failure("stopping {service} failed", service=type(child).__name__)


class ArchiveService(service.MultiService):
    """Prepares the archive when the application starts, then starts its
    children, the export queue runner (``Archive.exportService``), the
    MAGDeviceThreshold, NightlyCleanThreshold and NightlyMoveThreshold
    services (``Archive.spaceServices``) and the ``[lua]`` event scripts
    (``Archive.luaEvents``); stops the archive's pools and index
    writer only once those children have stopped, as they record what
    they finish through the index writer."""

    log = Logger()

    def __init__(self, archive):
        service.MultiService.__init__(self)
        self.archive = archive
        archive.exportService().setServiceParent(self)
        for spaceService in archive.spaceServices():
            spaceService.setServiceParent(self)
        archive.luaEvents.setServiceParent(self)

    def startService(self):
        self.log.info("pacs {version}", version=installedVersion())
        try:
            self.archive.startup()
        except StartupError as e:
            self.log.critical("cannot start: {problem}", problem=e)
            raise CannotStart(f"twistd: cannot start: {e}") from None
        serverLog.debugLevel = self.archive.debugLevel
        self.log.info("index: {driver} {db}", driver=self.archive.driver.name, db=redacted(self.archive.dbDescription))
        if not getattr(self.archive.driver, "keepsIndex", True):
            self.log.warn("no image index is kept (NULL driver: {source}): queries and retrieves find "
                          "nothing; objects are stored and forwarded",
                          source="empty SQLServer" if namesNoDatabase(self.archive.configuration) else "--db null:")
        for device in self.archive.devices:
            self.log.info("storage: {name} = {path}", name=device.name, path=device.path)
        self.log.info("HL7 drop folder: {path} (WorkListMode {mode})",
                      path=self.archive.hl7DropFolder.path, mode=self.archive.worklistMode)
        self.archive.reactor.callWhenRunning(self.archive.resume)
        service.MultiService.startService(self)

    def stopService(self):
        d = service.MultiService.stopService(self)
        d.addCallback(lambda _: self.archive.shutdown())
        return d


class ListeningService(internet.StreamServerEndpointService):
    """A strports listener that logs the address it is bound to, and a
    ``warning`` about it when there is one."""

    log = Logger()
    warning = None
    listened = None  # called with the address once listening

    def __init__(self, label, description, endpoint, factory):
        internet.StreamServerEndpointService.__init__(self, endpoint, factory)
        self.label = label
        self.description = description
        self._raiseSynchronously = True

    def privilegedStartService(self):
        try:
            internet.StreamServerEndpointService.privilegedStartService(self)
        except CannotListenError as e:  # a port in use, or one the server may not bind
            self.log.critical("cannot listen: {label} on {description}: {error}", label=self.label,
                              description=self.description, error=e)
            raise CannotStart(f"twistd: cannot listen: {self.label} on {self.description}: {e}") from None

    def startService(self):
        internet.StreamServerEndpointService.startService(self)
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port):
        address = port.getHost()
        self.log.info("{label} listening on {description} ({address})",
                      label=self.label, description=self.description, address=address)
        if self.listened is not None:
            self.listened(address)
        if self.warning:
            self.log.warn("{label} on {description}: {warning}", label=self.label, description=self.description,
                          warning=self.warning)
        return port


def installedVersion():
    """The version of the installed pacs distribution (its metadata)."""
    try:
        return importlib.metadata.version("pacs")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "(not installed)"


def serverUser(twistdOptions):
    """``(uid, gid)`` of the user the server runs as once twistd has started
    its services: that of ``--uid``/``--gid`` when pacs starts as root
    (the gid of the uid's user when only ``--uid`` is given, as twistd
    does), else pacs's own."""
    uid, gid = os.geteuid(), os.getegid()
    if twistdOptions is None or uid != 0:
        return uid, gid
    if twistdOptions.get("uid") is not None:
        uid = twistdOptions["uid"]
        gid = pwd.getpwuid(uid).pw_gid
    if twistdOptions.get("gid") is not None:
        gid = twistdOptions["gid"]
    return uid, gid


def makeService(options):
    """The ``twistd pacs`` service tree, built by ``Options``, on a reactor
    whose timers a step of the wall clock does not move."""
    useMonotonicClock(options.archive.reactor)
    return options.services


def serviceTree(options):
    """Build the service tree of parsed ``options`` (which hold the Archive)."""
    archive = options.archive
    observers = logFiles(archive.configuration)
    errorMail = ErrorMail.fromIni(archive.configuration.ini, archive.reactor, f"pacs {archive.aeTitle}")
    if errorMail is not None:  # stops before the log files, which see what it logs of its last mail
        observers.append(errorMail)
    top = ServiceTree(observers)
    served = top.served
    options.lock.setServiceParent(served)
    signals = StopSignals(archive.reactor)
    signals.setServiceParent(served)
    Hangup(archive.reactor, functools.partial(commandOutput, archive, archive.controlCommands, "--read_ini:",
                                              peer="SIGHUP")).setServiceParent(served)
    ArchiveService(archive).setServiceParent(served)
    dicom = options["dicom"] or f"tcp:{archive.tcpPort}"
    raiseFileLimit()
    dicomFactory = archive.dicomFactory()
    _logLimits("DICOM service", dicomFactory)
    # stopped after the listeners (added after it), before the archive
    AbortAssociations(dicomFactory).setServiceParent(served)
    listeners = [ListeningService(f"DICOM service {archive.aeTitle}", dicom,
                                  options.endpoint("dicom", dicom), dicomFactory)]
    listeners[0].listened = archive.listeningOn
    for label, option, key, default, makeFactory in (
            (f"DICOM service {archive.aeTitle}", "dicom-tls", "DICOMTLSEndpoint", "off", lambda: dicomFactory),
            ("HL7 MLLP service", "hl7", "HL7Endpoint", DEFAULT_HL7_ENDPOINT, archive.hl7Factory),
            ("web interface", "web", "WebEndpoint", DEFAULT_WEB_ENDPOINT, lambda: webSite(archive))):
        description = options[option]
        if description is None:
            description = archive.configuration.ini.get(key, default)
        if description.strip().lower() not in DISABLED:
            factory = makeFactory()
            if factory is not dicomFactory:  # whose limits are logged above, once for both endpoints
                _logLimits(label, factory)
            listener = ListeningService(label, description, options.endpoint(option, description), factory)
            if option == "web" and not controlEndpoint.isLoopback(description):
                listener.warning = _webWarning(description, archive.configuration.ini.get("WebUsers", "").strip())
            listeners.append(listener)
    for listener in listeners:
        listener.setServiceParent(served)
    control = options.control
    archive.controlOption = options["control"]
    archive.endpoints = [listener.description for listener in listeners] + ([control.endpoint] if control else [])
    if control is not None:
        stopInOrder = OrderlyStop(archive.reactor, listeners, dicomFactory, control.gracePeriod, signals)
        archive.controlPort = ControlFactory(archive, archive.reactor, control.secret, control.requireSecret,
                                             stopInOrder, commands=archive.controlCommands,
                                             limits=ControlFactory.limitsFromIni(archive.configuration.ini),
                                             endpoint=control.endpoint)
        _logLimits("control port", archive.controlPort)
        ListeningService("control port", control.endpoint,
                         options.endpoint("control", control.endpoint),
                         archive.controlPort).setServiceParent(served)
    _warnOfCertificates([(listener.label, listener.description) for listener in listeners]
                        + ([("control port", control.endpoint)] if control else []),
                        archive.configuration.acrNemaMap.tlsNodes)
    dropFolder = internet.TimerService(archive.hl7DropInterval, archive.hl7DropFolder.scan)
    dropFolder.clock = archive.reactor
    dropFolder.setServiceParent(served)
    return top


def _logLimits(label, factory):
    """Log the limits of the connections to the service ``label`` (its LimitedFactory ``factory``)."""
    log.info("{label}: {limits}", label=label, limits=factory.limitsText())


def _warnOfCertificates(listeners, tlsNodes):
    """Warn of the certificates (each of a chain) of the TLS ``listeners``
    (``(label, description)``) and of the ``tlsNodes`` (``{AE:
    ClientTLS}``) that have expired, are not yet valid, or expire soon."""
    for label, description in listeners:
        kind, _, keywords = controlEndpoint.fields(description)
        if kind in ("ssl", "mtls"):
            for path in certificateFiles(keywords):
                for warning in validityWarnings(path):
                    log.warn("{label} on {description}: {warning}", label=label, description=description,
                             warning=warning)
    for ae, node in sorted(tlsNodes.items()):
        if node.certificates:
            for warning in validityWarnings(node.certificateFile, certificates=node.certificates):
                log.warn("[{section}] {ae}: {warning}", section=TLS_NODES, ae=ae, warning=warning)


def _webWarning(description, webUsers):
    """What start-up warns of a web endpoint that others can reach, or None."""
    if not webUsers:
        return WEB_WITHOUT_LOGIN
    if controlEndpoint.fields(description)[0] != "ssl":
        return WEB_PASSWORDS_IN_CLEAR
    return None
