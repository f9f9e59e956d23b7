"""The checks start-up makes of dicom.ini's values, in one place, so that
``put_param``, ``delete_param`` and ``read_ini`` on a running server refuse what the next
start would refuse: every key the server reads as a number (those read at
each use too, such as ``LuaMaxInstructions`` and ``ImportExportDragAndDrop``,
which would otherwise fail each use) and the least value some of them
take (``MINIMUMS``), UIDPrefix, the MAG and mirror
devices, LRUSort, NightlyMoveTarget, ForwardAssociationLevel, StorageFailedErrorCode, the
endpoints to listen on (``pacscore.config.listeners``: parsed, their port
in range), the WebUsers file, WebAllowOrigins and the files named by
kFactorFile, ACRNemaMap and SOPClassList (found and read).
``loadConfiguration`` makes them at start-up.
"""

from pacscore.config.errors import ConfigError
from pacscore.config.listeners import DISABLED, checkEndpoints
from pacscore.web.logins import passwordFile
from pacscore.web.sharing import AllowedOrigins

INTEGER_KEYS = (
    "ARTIMTimeOut", "CacheVirtualData", "ControlMaxConnections", "ControlMaxConnectionsPerPeer", "DICOMwebMaxParts",
    "DICOMwebStore",
    "DebugLevel", "DirectWriteSize", "EnableComputedFields",
    "ExportConverters", "FailHoldOff", "FixKodak", "FixPhilips", "ForwardAssociationCloseDelay",
    "ForwardAssociationRefreshDelay", "ForwardAssociationRelease", "ForwardCollectDelay", "HL7DropFolderInterval",
    "HL7MaxBufferedMB", "HL7MaxConnections", "HL7MaxConnectionsPerPeer",
    "HL7MaxMessageSize", "IgnoreMAGDeviceThreshHold", "ImportConverters", "ImportExportDragAndDrop",
    "LossyQuality", "LuaAllowUnsafe", "LuaCommandTimeout", "LuaMaxInstructions", "MAGDeviceFullThreshHold",
    "MAGDeviceThreshold",
    "MailCollectTime", "MailWaitTime", "MaxAssociations", "MaxAssociationsPerPeer", "MaxFieldLength",
    "MaxFileNameLength", "MaximumCommitmentAge", "MaximumDelayedFetchForwardRetries", "MaximumExportRetries", "MySQL",
    "NightlyCleanThreshold", "NightlyMoveThreshold", "PadAEWithZeros", "PostGres", "Prefetcher", "QIDOMaxResults",
    "QuitGracePeriod", "RetryDelay", "SendUpperCaseAE", "SQLite", "SQLTimeOut", "StorageFailedErrorCode",
    "TCPIPTimeOut", "TCPPort",
    "TruncateFieldNames", "VirtualServerTimeout", "WEBPush", "WebMaxConnections", "WebMaxConnectionsPerPeer",
    "WebMaxRenders",
    "WebMaxUploadMB", "WebReadOnly", "WorkListMode", "WorkListReturnsISO_IR_100",
)
"""The main section's keys the server reads with ``DicomIni.getint``."""

MINIMUMS = {
    "HL7DropFolderInterval": 1,  # 0 would scan without a pause, taking files as they are written
    "LuaCommandTimeout": 1,  # less would fail each command a script asks for, though it runs
    "VirtualServerTimeout": 1,  # 0 would give a virtual server no time to answer
}
"""The least value of some of ``INTEGER_KEYS``."""


def checkSettings(configuration):
    """ConfigError, naming the file, line and key, for the first value of
    ``configuration``'s dicom.ini that the server cannot use.  What it
    builds to check a value is thrown away: the server builds its own."""
    ini = configuration.ini
    for key in INTEGER_KEYS:
        value = ini.getint(key, None)
        if value is not None and value < MINIMUMS.get(key, value):
            raise ConfigError(ini.path, ini.lineOf(key), f"{key} must be at least {MINIMUMS[key]}, not {value}")
    for setting in ("uidPrefix", "magDevices", "mirrorDevices", "lruSortTag", "nightlyMoveTarget",
                    "forwardAssociationLevel", "storageFailedErrorCode"):  # each raises ConfigError for a bad value
        getattr(configuration, setting)
    checkEndpoints(configuration)
    from pacscore.config.loader import NAMED_FILES, readNamedFile  # the loader uses this module
    for key in NAMED_FILES:
        readNamedFile(ini, configuration.iniPath, key, [configuration.configDir, configuration.workdir])
    # the WebUsers file unless WebEndpoint turns the web pages off (a standby's copy of dicom.ini may name a
    # file it lacks): off, none or empty; an absent WebEndpoint is the default endpoint, which is on
    web = configuration.ini.get("WebEndpoint")
    if web is None or web.strip().lower() not in DISABLED:
        passwordFile(configuration)
    AllowedOrigins.fromIni(configuration)
