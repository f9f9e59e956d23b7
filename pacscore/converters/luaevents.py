"""Conquest's ``[lua]`` section of dicom.ini: Lua code run on server events.

- ``startup``: once, when the server has started;
- ``nightly``: every night at 03:00 local time (Conquest's hour);
- ``background``: every second, the next run waiting for the last to end;
- ``association``: for each association accepted, with ``CallingAE``,
  ``CalledAE`` and ``Association.Calling`` / ``.Called`` set; it does not
  hold the association up.

Each value is Lua code (Conquest's usual ``dofile('x.lua')``) run as a
``lua "..."`` converter runs it, in a worker of the I/O pool: sandboxed
unless ``LuaAllowUnsafe = 1`` (a sandboxed ``dofile`` reads the files of
``LuaFileFolder``), stopped after ``LuaMaxInstructions``, with no ``Data``;
its ``print`` goes to the server log as ``[lua] startup: ...`` and an
error is logged.  Unlike Conquest, where these scripts share one Lua state,
each run starts with fresh globals.

Conquest's other ``[lua]`` keys (``command``, ``clienterror``,
``endassociation``, converter names ...) do not run here: start-up warns
of those that are set.
"""

from twisted.application import internet, service
from twisted.logger import Logger

from pacscore.converters.context import ConverterContext
from pacscore.converters.lua import LuaArguments, LuaInlineCommand
from pacscore.storage.space import Nightly

SECTION = "lua"
EVENTS = ("startup", "nightly", "background", "association")
NIGHTLY_HOUR = 3
BACKGROUND_INTERVAL = 1  # seconds


class LuaEvents(service.MultiService):
    """Runs the ``scripts`` ({event: Lua code}) with the converters'
    ``services`` and ``registry``, in ``workers``, timed by ``clock``."""

    log = Logger()

    def __init__(self, scripts, services, registry, workers, clock):
        service.MultiService.__init__(self)
        self.scripts = scripts
        self.converterServices = services
        self.registry = registry
        self.workers = workers
        if "nightly" in scripts:
            Nightly("[lua] nightly", NIGHTLY_HOUR, lambda keepGoing: self.run("nightly"),
                    clock).setServiceParent(self)
        if "background" in scripts:
            background = internet.TimerService(BACKGROUND_INTERVAL, self.run, "background")
            background.clock = clock
            background.setServiceParent(self)

    @classmethod
    def fromConfiguration(cls, configuration, services, registry, workers, clock):
        """With the events of dicom.ini's ``[lua]`` section that are set; a
        warning names the other keys set there, which do not run."""
        ini = configuration.ini
        scripts, others = {}, []
        for key, value in ini.items(SECTION):
            if not value.strip():
                continue
            if key.lower() in EVENTS:
                scripts.setdefault(key.lower(), value)
            else:
                others.append(key)
        if others:
            cls.log.warn("{path}:{line}: [lua] {keys}: these Conquest Lua event scripts are not supported here and "
                         "do not run (startup, nightly, background and association do)", path=configuration.iniPath,
                         line=ini.lineOf(others[0], SECTION), keys=", ".join(others))
        return cls(scripts, services, registry, workers, clock)

    def startService(self):
        service.MultiService.startService(self)
        if "startup" in self.scripts:
            self.run("startup")

    def association(self, callingAE, calledAE):
        """An association was accepted: its ``association`` script runs."""
        if "association" in self.scripts:
            self.run("association", callingAE, calledAE)

    def run(self, event, callingAE="", calledAE=""):
        """Deferred of the end of a run of ``event``'s script; it never fails
        (a failure is logged)."""
        d = self.workers.deferToWorker(self._execute, event, callingAE, calledAE)
        d.addErrback(lambda failure: self.log.failure("[lua] {event} failed", failure, event=event))
        return d

    def _execute(self, event, callingAE, calledAE):
        """In a worker: the script, as a ``lua "..."`` converter (which logs its errors)."""
        context = ConverterContext("import", None, callingAE, calledAE, services=self.converterServices,
                                   converterName=f"[lua] {event}")
        LuaInlineCommand().run(LuaArguments(self.scripts[event], self.registry, "import"), context)
