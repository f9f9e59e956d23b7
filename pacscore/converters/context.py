"""What a converter command sees and changes while it runs.

A ``ConverterContext`` is made per object (or per query) and per converter
line: the data set (a pydicom Dataset; for import converters its changes
are what gets stored), the calling and called AE titles, the stored file
(export converters), the general purpose variables %x %y %z, the archive's
services, and what the line decided: destroy or reject the object, defer
the export, the preferred storage device and compression.  The ``[lua]``
command and clienterror scripts also see the DIMSE command set as
``command`` (a pydicom Dataset; None elsewhere).  ``session`` is a dict
kept for the life of the association the object came on, or the query or
retrieve was asked on (its scripts' Lua state, ``LuaRuntime.forContext``),
None without one.

Commands run in a worker thread (see ``IConverterCommand.run``).
"""

import time
from enum import Enum

from twisted.internet import threads
from twisted.logger import Logger

KINDS = ("import", "export", "query", "worklistquery", "retrieve", "queryresult", "worklistresult",
         "retrieveresult", "compression")


class ConverterSyntaxError(ValueError):
    """A converter line that cannot be parsed; the message names the
    dicom.ini key and the column."""


class Outcome(Enum):
    """What a command tells the line it runs in."""

    CONTINUE = "continue"        # go on with the next statement
    STOP = "stop"                # stop this line (stop, return), logged
    SILENT_STOP = "silentstop"   # stop this line, not logged
    DESTROY = "destroy"          # import: do not store the object, answer Success (as Conquest does)
    REJECT = "reject"            # import: do not store the object, answer a failure status
    DEFER = "defer"              # export: run this line again later (retry mechanism)


class ConverterServices:
    """The parts of the archive converters use; any may be None in tests.

    ``index`` (pacscore.db.index.Index: ``engine``, ``tables``, ``layout``),
    ``configuration`` (the loaded Configuration: ini, acrNemaMap, ...),
    ``aeTitle``, ``reactor``, ``wallClock`` (seconds since the epoch: the
    time of day, which the reactor's clock is not), ``worklistLookup`` (accession -> {tag: value}
    or None), ``exportQueue`` (pacscore.export: forwards and delayed jobs),
    ``uidMap`` (anonymized UIDs for %E/%R and newuids), ``counters``,
    ``serverCommands`` (control commands for Lua's ``servercommand``: a
    ``pacscore.converters.servercommands.ServerCommands``), ``commands``
    (the ``CommandRegistry`` converter lines are read with: what Lua's
    ``script(rule)`` runs in ``process ... by x.lua``), ``databaseFiles``
    (the real paths of the index database's files, which ``rm`` leaves alone),
    ``magDevices`` and ``mirrorDevices`` (``(name, path)`` of the MAG and
    mirror devices the archive runs with: ``put_param:MAGDevice0`` edits
    the configuration's ini, but the archive keeps its devices until it
    restarts).
    """

    def __init__(self, index=None, configuration=None, aeTitle="", reactor=None, worklistLookup=None,
                 exportQueue=None, uidMap=None, counters=None, serverCommands=None, wallClock=time.time,
                 commands=None, databaseFiles=frozenset(), magDevices=(), mirrorDevices=()):
        self.index = index
        self.configuration = configuration
        self.aeTitle = aeTitle
        self.reactor = reactor
        self.wallClock = wallClock
        self.worklistLookup = worklistLookup
        self.exportQueue = exportQueue
        self.uidMap = uidMap
        self.counters = counters if counters is not None else {}
        self.serverCommands = serverCommands
        self.commands = commands
        self.databaseFiles = databaseFiles
        self.magDevices = magDevices
        self.mirrorDevices = mirrorDevices


class ConverterContext:
    """See the module docstring."""

    log = Logger()

    def __init__(self, kind, dataset, callingAE="", calledAE="", filename=None, services=None,
                 converterName="", variables=None, moveDestination=None, command=None, session=None,
                 fetchedFrom="", fetchedObject=None):
        if kind not in KINDS:
            raise ValueError(f"unknown converter kind {kind!r}")
        self.kind = kind
        self.dataset = dataset
        self.callingAE = callingAE
        self.calledAE = calledAE
        self.moveDestination = moveDestination  # where a retrieve sends (RetrieveConverter0 ...: %s), or None
        self.filename = filename            # absolute path of the stored object (export converters)
        self.command = command              # the DIMSE command set, Lua's Command ([lua] command, clienterror)
        self.session = session              # kept for the association's life (see the module docstring), or None
        self.fetchedFrom = fetchedFrom      # the archive a virtual server fetched the object from: no forward to it
        self.fetchedObject = fetchedObject  # for an object a Lua script made (x:Script): the fetched one it was made from
        self.services = services or ConverterServices()
        self.converterName = converterName  # "ImportConverter0", "ExportConverter2", "QueryConverter0" ...
        self.variables = variables if variables is not None else {"x": "", "y": "", "z": ""}
        self.changed = False                # the data set was modified (import: re-encode before storing)
        self.assigned = set()               # tags of the top-level elements the script set (dgate --anonymize keeps them)
        self.rejectReason = ""              # set with Outcome.REJECT
        self.failure = ""                   # why a Lua script failed (it gave Outcome.STOP): the modify commands fail
        self.storageDevice = None           # 'storage MAG1'; export converters: the device the object is on
        self.compression = None             # 'compression j2'
        self.testMode = ""                  # 'testmode .1'
        self.sandboxed = False              # run by a sandboxed Lua script's script(): no command reachesOutside
        self.stored = True                  # False: an object a Lua script made or read (x:Script), sent as it is
        self.pixelsRead = False             # export Data got the stored file's pixel data and what follows
        self.callReturned = False           # the last 'call' ended with a 'return' (see pacscore.converters.flow)

    @property
    def isImport(self):
        """Import converters and the query/retrieve ones, which the manual
        calls import converters too."""
        return self.kind != "export"

    def expand(self, text):
        """``text`` with its %-variables replaced (manual 7.2)."""
        from pacscore.converters.variables import expand
        return expand(text, self)

    def blockingCallFromThread(self, f, *args, **kwargs):
        """Run ``f`` in the reactor thread and wait for its result (a
        Deferred's result too); for commands that need the reactor."""
        return threads.blockingCallFromThread(self.services.reactor, f, *args, **kwargs)
