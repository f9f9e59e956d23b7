"""Loads a whole Conquest configuration: dicom.ini and the files it names.

``loadConfiguration`` reads dicom.ini, then the acrnema.map, dicom.sql and
dgatesop.lst it refers to (keys ``ACRNemaMap``, ``kFactorFile`` and
``SOPClassList``), checks the values of dicom.ini the server reads
(``pacscore.config.settings``), and returns a ``Configuration`` with typed
accessors for the settings the rest of the server uses.
"""

import os
import re
from dataclasses import dataclass

from pydicom.uid import RE_VALID_UID_PREFIX
from twisted.logger import Logger

from pacscore.codecs.jpeglossy import DEFAULT_QUALITY
from pacscore.config.acrnema import AcrNemaMap, within
from pacscore.config.defaults import DEFAULT_TCP_PORT, INI_NAME, defaultConfigDir
from pacscore.config.dicomsql import DatabaseLayout
from pacscore.config.errors import ConfigError
from pacscore.config.ini import DicomIni
from pacscore.config.settings import checkSettings
from pacscore.config.soplist import SopList
from pacscore.db.rawsql import DEFAULT_TRUNCATE
from pacscore.dicom.commands import PROCESSING_FAILURE, STORE_FAILURES, isStoreFailure
from pacscore.db.writer import DEFAULT_TIMEOUT
from pacscore.export.forwarder import forwardAssociationLevel
from pacscore.export.stow import SECTION as WEB_SERVERS
from pacscore.storage.space import lruSortTag
from pacscore.tls import ClientTLS

TLS_NODES = "DICOMTLSNodes"

DEFAULT_MAG_DEVICE = "./data/"
WINDOWS_PATH = re.compile(r"[A-Za-z]:[\\/]")  # d:\dicomserver\data\, C:/dicomserver/
PLACEHOLDER = re.compile(r"\$\{[^}]*\}")  # ${CONQUEST}
VARIABLE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")  # $HOME, or part of a name: /data/images$archive/
MAX_UID_PREFIX = 53  # with its final dot, pydicom's limit for generated UIDs


@dataclass
class Configuration:
    """A loaded configuration.  Paths are absolute strings."""

    ini: DicomIni
    acrNemaMap: AcrNemaMap
    sopList: SopList
    layout: DatabaseLayout
    configDir: str  # the folder holding dicom.ini
    workdir: str    # what relative paths in dicom.ini (``./data/``) are relative to
    iniPath: str
    log = Logger()

    def warnOfMistypedTLSNodes(self):
        """A warning for each ``[DICOMTLSNodes]`` line whose AE acrnema.map
        has no entry for (``AcrNemaMap.tlsKeyProblem``: a typo that would
        leave its node in plain TCP), and for each line an earlier one
        covers (the same AE, or a wildcard matching every AE it does: the
        first that matches is used), naming both lines; at start-up and
        whenever dicom.ini or acrnema.map is read again or edited."""
        earlier = []
        for line, ae, _ in self.ini.numberedItems(TLS_NODES):
            key = ae.strip()
            cover = next(((first, wide) for first, wide in earlier if within(key, wide)), None)
            if cover is None:
                problem = self.acrNemaMap.tlsKeyProblem(key)
            elif cover[1].upper() == key.upper():
                problem = f"the earlier line {cover[0]} has this AE: this one is ignored, the first is used"
            else:
                problem = (f"the earlier line {cover[0]} {cover[1]} matches every AE this one does: "
                           "this one is never used")
            earlier.append((line, key))
            if problem is not None:
                self._warnOfLine(TLS_NODES, line, ae, problem)

    def warnOfRepeatedWebServers(self):
        """A warning for each ``[DICOMwebServers]`` line whose NAME (case
        ignored) an earlier line has (the first is used, as by
        ``stow.dicomWebServers`` and ``DicomIni.get``), naming both lines;
        at start-up and whenever dicom.ini is read again."""
        first = {}
        for line, name, _ in self.ini.numberedItems(WEB_SERVERS):
            earlier = first.setdefault(name.strip().upper(), line)
            if earlier != line:
                self._warnOfLine(WEB_SERVERS, line, name,
                                 f"the earlier line {earlier} has this name: this one is ignored, the first is used")

    def warnOfRepeatedKeys(self):
        """A warning for each key written again in its dicom.ini section
        (case ignored, and ``...Threshold`` being ``...ThreshHold``), naming
        both lines and the value used, the line ``DicomIni.get`` reads: the
        first, as Conquest's GetPrivateProfileString reads it, or the first
        in Conquest's spelling where both spellings are there; at start-up
        and whenever dicom.ini is read again.  ``[DICOMTLSNodes]`` and
        ``[DICOMwebServers]`` have warnings of their own."""
        for section in self.ini.sectionNames():
            if section.lower() in (TLS_NODES.lower(), WEB_SERVERS.lower()):
                continue
            for line, key, value, used, usedKey, usedValue in self.ini.repeatedKeys(section):
                where = "earlier" if used < line else "later"
                if usedKey.lower() == key.lower():
                    problem = (f"the {where} line {used} has this key ({usedKey} = {usedValue!r}), the first is "
                               "used, as Conquest reads it")
                else:
                    problem = (f"the {where} line {used} has this key as {usedKey} = {usedValue!r}, which is used, "
                               "as Conquest's code reads that spelling")
                self._warnOfLine(section, line, key, f"{key} = {value!r} is ignored: {problem}")

    def _warnOfLine(self, section, line, key, problem):
        self.log.warn("{path}:{line}: [{section}] {key}: {problem}", path=self.iniPath, line=line,
                      section=section, key=key, problem=problem)

    def resolvePath(self, value):
        """``value`` as an absolute, normalised path; relative ones are relative to workdir."""
        return os.path.normpath(os.path.join(self.workdir, value))

    def pathSetting(self, key, default=""):
        """The folder or file dicom.ini's ``key`` names (``default`` when it
        is missing or empty), resolved as ``resolvePath`` does; ConfigError
        for a path meant for another machine (``_checkPath``)."""
        value = self.ini.get(key, "").strip() or default
        _checkPath(self.ini, self.iniPath, key, value, [self.workdir])
        return self.resolvePath(value)

    @property
    def aeTitle(self):
        return self.ini.get("MyACRNema", "") or "CONQUESTSRV1"

    @property
    def uidPrefix(self):
        """dicom.ini's UIDPrefix, the root of the UIDs the server makes (None:
        pydicom's ``2.25.``); ConfigError when it can start none."""
        value = self.ini.get("UIDPrefix", "").strip()
        error = uidPrefixError(value)
        if error is not None:
            raise ConfigError(self.iniPath, self.ini.lineOf("UIDPrefix"), error)
        return value or None

    @property
    def lruSortTag(self):
        """The tag Conquest's ``LRUSort`` orders patients by (None: AccessTime alone)."""
        return self._valueOf("LRUSort", lruSortTag)

    @property
    def forwardAssociationLevel(self):
        """ForwardAssociationLevel, in upper case (IMAGE when missing)."""
        return self._valueOf("ForwardAssociationLevel", forwardAssociationLevel)

    @property
    def nightlyMoveTarget(self):
        """NightlyMoveTarget, in upper case; ConfigError when NightlyMoveThreshold
        is set and it names no MAG device but MAG0."""
        target = self.ini.get("NightlyMoveTarget", "").strip().upper()
        targets = [name for name, _ in self.magDevices[1:]]
        if self.ini.getint("NightlyMoveThreshold", 0) > 0 and target not in targets:
            line = self.ini.lineOf("NightlyMoveTarget") or self.ini.lineOf("NightlyMoveThreshold")
            raise ConfigError(self.iniPath, line,
                              f"NightlyMoveTarget = {target or '(none)'}: NightlyMoveThreshold moves patients from "
                              f"MAG0 to another MAG device ({', '.join(targets) or 'there is none'})")
        return target

    def _valueOf(self, key, read):
        """``read(value)`` of dicom.ini's ``key`` ("" when missing); ConfigError,
        naming the line, for the ValueError it raises."""
        try:
            return read(self.ini.get(key, ""))
        except ValueError as e:
            raise ConfigError(self.iniPath, self.ini.lineOf(key), str(e)) from e

    @property
    def tcpPort(self):
        return self.ini.getint("TCPPort", DEFAULT_TCP_PORT)

    @property
    def magDevices(self):
        """``[("MAG0", "/abs/path"), ...]`` from MAGDevices and MAGDeviceN.

        With MAGDevices absent, every MAGDeviceN present, in order of N;
        with neither, Conquest's ``./data/``.  Two may be one folder (one a
        link to the other's, as a move between them may leave): what
        compares their files does so by real path.
        """
        devices = self._devices("MAG")
        if devices is None:
            return [("MAG0", self.resolvePath(DEFAULT_MAG_DEVICE))]
        if not devices:
            raise ConfigError(self.iniPath, self.ini.lineOf("MAGDevices"),
                              "no MAG device to store images on (MAGDevices / MAGDevice0)")
        return devices

    @property
    def mirrorDevices(self):
        """``[("MIRROR0", "/abs/path"), ...]`` from MIRRORDevices and
        MIRRORDeviceN, read like the MAG devices (none when neither is
        set).  MIRRORn mirrors MAGn: a folder inside a MAG device (or
        holding one) cannot be a mirror."""
        mirrors = self._devices("MIRROR") or []
        for name, path in mirrors:
            for magName, magPath in self.magDevices:
                if _overlap(path, magPath):
                    raise ConfigError(self.iniPath, self.ini.lineOf(f"MIRRORDevice{name[6:]}"),
                                      f"{name} ({path}) and {magName} ({magPath}) overlap: a mirror "
                                      f"must be a folder of its own")
        return mirrors

    def _devices(self, kind):
        """``[(f"{kind}N", path), ...]`` from ``{kind}Devices`` (a count)
        and ``{kind}DeviceN``; None when neither is set."""
        count = self.ini.getint(f"{kind}Devices", None)
        if count is None:
            pattern = re.compile(rf"{kind}Device([0-9]+)", re.IGNORECASE)
            numbers = sorted({int(m.group(1)) for key, _ in self.ini.items() if (m := pattern.fullmatch(key))})
            if not numbers:
                return None
        else:
            numbers = range(count)
        devices = []
        for n in numbers:
            key = f"{kind}Device{n}"
            if not self.ini.get(key, ""):
                raise ConfigError(self.iniPath, self.ini.lineOf(key) or self.ini.lineOf(f"{kind}Devices"),
                                  f"{key} is missing or empty")
            devices.append((f"{kind}{n}", self.pathSetting(key)))
        return devices

    @property
    def fileNameSyntax(self):
        return self.ini.get("FileNameSyntax", "") or "4"

    @property
    def maxFileNameLength(self):
        return self.ini.getint("MaxFileNameLength", 255)

    @property
    def tcpipTimeout(self):
        """TCPIPTimeOut, in seconds (None: no limit, for 0 or less)."""
        return _limit(self.ini.getint("TCPIPTimeOut", 300))

    @property
    def artimTimeout(self):
        """ARTIMTimeOut, in seconds (None: no limit, for 0 or less)."""
        return _limit(self.ini.getint("ARTIMTimeOut", 30))

    @property
    def sqlTimeout(self):
        """SQLTimeOut: seconds the index database may take to answer (None: no limit, for 0 or less)."""
        return _limit(self.ini.getint("SQLTimeOut", DEFAULT_TIMEOUT))

    @property
    def storageFailedErrorCode(self):
        """StorageFailedErrorCode, the status of a C-STORE that failed;
        ConfigError when it is not a Failure status (``isStoreFailure``);
        Conquest's default is 272, Processing failure."""
        code = self.ini.getint("StorageFailedErrorCode", PROCESSING_FAILURE)
        if not isStoreFailure(code):
            raise ConfigError(self.iniPath, self.ini.lineOf("StorageFailedErrorCode"),
                              f"StorageFailedErrorCode = {code}: not a Failure status of a C-STORE "
                              f"({STORE_FAILURES})")
        return code

    @property
    def lossyQuality(self):
        """LossyQuality, the quality 1..100 of lossy JPEG compression."""
        return min(max(self.ini.getint("LossyQuality", DEFAULT_QUALITY), 1), 100)

    @property
    def allowTruncate(self):
        """AllowTruncate: the index columns (lower case) whose values may be
        cut to fit with an informational line rather than a warning."""
        return frozenset(name.strip().lower() for name in self.ini.get("AllowTruncate", "").split(",") if name.strip())

    @property
    def truncateFieldNames(self):
        """TruncateFieldNames: the length operators' SQL may cut column names
        to (``StudyInsta``); 0: names are not cut."""
        return max(self.ini.getint("TruncateFieldNames", DEFAULT_TRUNCATE), 0)

    @property
    def tableNames(self):
        """SQL table names by level; WorkListTableName is a pacs addition."""
        return {
            "patient": self.ini.get("PatientTableName", "") or "DICOMPatients",
            "study": self.ini.get("StudyTableName", "") or "DICOMStudies",
            "series": self.ini.get("SeriesTableName", "") or "DICOMSeries",
            "image": self.ini.get("ImageTableName", "") or "DICOMImages",
            "worklist": self.ini.get("WorkListTableName", "") or "DICOMWorkList",
        }


def _limit(seconds):
    """A timeout key's seconds, or None (no limit) for 0 or less."""
    return seconds if seconds > 0 else None


def uidPrefixError(value):
    """Why ``value`` (its final dot optional) cannot start generated UIDs,
    or None; empty means pydicom's own ``2.25.``."""
    prefix = value.rstrip(".")
    if value and not (len(prefix) <= MAX_UID_PREFIX and RE_VALID_UID_PREFIX.match(prefix + ".")):
        return (f"UIDPrefix {value!r} is not a UID root (digits and dots, no leading zeros, "
                f"at most {MAX_UID_PREFIX} characters)")
    return None


def _checkPath(ini, iniPath, key, value, folders):
    """ConfigError, naming the file, line and key, when ``value``, the path
    dicom.ini's ``key`` holds (when relative, in one of ``folders``), cannot
    be meant for this machine: a Windows path left in a Conquest file
    (``d:\\dicomserver\\data\\``, ``.\\data\\``: ``_windowsPathAdvice``) or a
    placeholder of Conquest's Linux templates (``${CONQUEST}/data/``), which
    its install script fills in with envsubst.  Here either would be a
    folder of that name in the working folder: pacs expands no environment
    variable, as Conquest does not."""
    advice = _windowsPathAdvice(value)
    if advice is not None:
        raise ConfigError(iniPath, ini.lineOf(key), f"{key} = {value} is a Windows path: {advice}")
    placeholder = _placeholder(value, folders)
    if placeholder is not None:
        raise ConfigError(iniPath, ini.lineOf(key),
                          f"{key} = {value} still holds the placeholder {placeholder}: replace it with the "
                          f"folder on this machine, as Conquest's install script does (envsubst); environment "
                          f"variables are not expanded")


def _windowsPathAdvice(value):
    """What to write instead of ``value`` when it is a Windows path (none on
    Windows): one with a drive letter (``d:\\dicomserver\\data\\``), a
    network share (``\\\\server\\share\\``) or any other holding a
    backslash (Conquest's ``.\\data\\``), which on this machine names no
    folder but a file or folder of that name; else None."""
    if os.name == "nt":
        return None
    if WINDOWS_PATH.match(value):
        return "give the folder or file on this machine"
    if value.startswith("\\\\"):
        return "give the folder on this machine where the share is mounted"
    if "\\" in value:
        forward = value.replace("\\", "/")
        return f"write it with forward slashes on this machine ({forward})"
    return None


def _placeholder(value, folders):
    """The first placeholder envsubst would have filled in ``value``, or
    None: any ``${NAME}``; a ``$NAME`` unless the path as written, up to
    the end of the last name holding one, exists in one of ``folders``
    (an existing ``/data/images$archive/`` is that folder's own name)."""
    braced = PLACEHOLDER.search(value)
    if braced is not None:
        return braced.group()
    variables = list(VARIABLE.finditer(value))
    if not variables:
        return None
    end = value.find(os.sep, variables[-1].end())
    written = value if end < 0 else value[:end]
    if any(os.path.exists(os.path.join(folder, written)) for folder in folders):
        return None
    return variables[0].group()


NAMED_FILES = {
    "kFactorFile": ("dicom.sql", DatabaseLayout.fromFile),
    "ACRNemaMap": ("acrnema.map", AcrNemaMap.fromFile),
    "SOPClassList": ("dgatesop.lst", SopList.fromFile),
}
"""The files dicom.ini names that the server reads at start-up: by key, the
default name and what reads the file (ConfigError for one it cannot use)."""


def readNamedFile(ini, iniPath, key, folders):
    """The file dicom.ini names under ``key`` (one of ``NAMED_FILES``), read;
    ConfigError when it is not found in ``folders`` or cannot be used."""
    default, read = NAMED_FILES[key]
    return read(_findFile(ini, iniPath, key, default, folders))


def _findFile(ini, iniPath, key, default, folders):
    """The absolute path of the file dicom.ini names under ``key``."""
    value = ini.get(key, "") or default
    _checkPath(ini, iniPath, key, value, folders)
    if os.path.isabs(value):
        candidates = [value]
    else:
        candidates = [os.path.join(folder, value) for folder in folders]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.normpath(candidate)
    raise ConfigError(iniPath, ini.lineOf(key),
                      f"{key} = {value}: no such file (looked for {', '.join(candidates)})")


def loadConfiguration(configPath=None, workdir=None):
    """Read dicom.ini (a file, or the folder holding it; None: the packaged
    defaults) and the files it names, looked up in its folder, then in
    ``workdir`` (default: the current directory).  Raises ConfigError."""
    workdir = os.path.abspath(workdir or os.getcwd())
    if configPath is None:
        iniPath = os.path.join(defaultConfigDir(), INI_NAME)
    else:
        iniPath = os.path.abspath(configPath)
        if os.path.isdir(iniPath):
            iniPath = os.path.join(iniPath, INI_NAME)
    if not os.path.isfile(iniPath):
        raise ConfigError(iniPath, None, "no such file")
    configDir = os.path.dirname(iniPath)
    ini = DicomIni.fromFile(iniPath)
    folders = [configDir, workdir]
    layout = readNamedFile(ini, iniPath, "kFactorFile", folders)
    maxFieldLength = ini.getint("MaxFieldLength", 0)
    if maxFieldLength > 0:
        layout = layout.capped(maxFieldLength)
    acrNemaMap = readNamedFile(ini, iniPath, "ACRNemaMap", folders)
    acrNemaMap.tlsNodes = tlsNodes(ini, iniPath, workdir)
    configuration = Configuration(
        ini=ini,
        acrNemaMap=acrNemaMap,
        sopList=readNamedFile(ini, iniPath, "SOPClassList", folders),
        layout=layout,
        configDir=configDir,
        workdir=workdir,
        iniPath=iniPath,
    )
    checkSettings(configuration)
    configuration.warnOfMistypedTLSNodes()
    configuration.warnOfRepeatedWebServers()
    configuration.warnOfRepeatedKeys()
    return configuration


def tlsNodes(ini, iniPath, workdir):
    """``{AE: ClientTLS}`` of the ``[DICOMTLSNodes]`` section (file names
    relative to ``workdir``; an AE may end in ``*`` as in acrnema.map; of
    lines with the same AE, case ignored, the first, as ``DicomIni.get``
    reads them); ConfigError naming the line of a bad one."""
    nodes = {}
    for line, ae, description in ini.numberedItems(TLS_NODES):
        try:
            resolved = ":".join(_resolvedFile(part, workdir) for part in description.split(":"))
            nodes.setdefault(ae.strip().upper(), ClientTLS(resolved))
        except ValueError as e:
            raise ConfigError(iniPath, line, f"[{TLS_NODES}] {ae}: {e}") from e
    return nodes


def _resolvedFile(part, workdir):
    """A ``name=value`` of a TLS description, a file's value made absolute."""
    name, equals, value = part.partition("=")
    if equals and name.strip() in ("caCerts", "privateKey", "certKey"):
        return f"{name}={os.path.join(workdir, value.strip())}"
    return part


def _overlap(first, second):
    """Whether one of two absolute folders is, or lies inside, the other
    (through links too)."""
    first, second = (os.path.join(os.path.realpath(folder), "") for folder in (first, second))
    return first.startswith(second) or second.startswith(first)
