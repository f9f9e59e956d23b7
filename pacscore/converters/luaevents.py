"""Conquest's ``[lua]`` section of dicom.ini: Lua code run on server events.

- ``startup``: once, when the server has started;
- ``nightly``: every night at 03:00 local time (Conquest's hour);
- ``background``: every second, the next run waiting for the last to end;
- ``association``: for each association accepted, with ``CallingAE``,
  ``CalledAE`` and ``Association.Calling`` / ``.Called`` set; it does not
  hold the association up;
- ``command``: for each DIMSE request of an association (C-ECHO, C-STORE,
  C-FIND ..., C-CANCEL too; not the responses to our own requests), before
  it is served, with ``Command`` its command set as well: what the script
  changes there (``Command.Priority = 1``) is the request served, and a
  script returning ``'reject'`` or ``'destroy'``, or calling ``reject()``
  or ``destroy()`` as Conquest's do, refuses it: it gets no answer and the
  association is aborted (Conquest closes it with a release request of its
  own), without an ``endassociation`` run, as in Conquest.  The requests of
  an association wait for the script one after the other, in the order
  they came; a failing script (logged) refuses nothing;
- ``clienterror``: for each request not served (Conquest's "Client
  Error: command failed"), with ``Command`` its command set: an unknown
  command (answered 0211), a SOP class not served on its context (0122) or
  an operation that failed (0110).  Conquest also closes the connection
  then; here the association goes on, and ends with ``endassociation``;
- ``endassociation``: when an association accepted ends: released, aborted
  by either side or its connection lost.

Each value is Lua code (Conquest's usual ``dofile('x.lua')``) run as a
``lua "..."`` converter runs it, in a worker of the I/O pool: sandboxed
unless ``LuaAllowUnsafe = 1`` (a sandboxed ``dofile`` reads the files of
``LuaFileFolder``), stopped after ``LuaMaxInstructions``, with ``Data`` an
empty object (as Conquest's dummyddo);
its ``print`` goes to the server log as ``[lua] startup: ...`` and an
error is logged.  The ``startup``, ``nightly`` and ``background`` runs each
start with fresh globals (where Conquest's share one Lua state); the
``association``, ``command``, ``clienterror`` and ``endassociation``
scripts of an association run, as in Conquest, in its Lua state, which its
import, query and retrieve converters' Lua share (``LuaRuntime.forContext``): their globals
last from its ``association`` script to its ``endassociation`` one.

Conquest's other ``[lua]`` keys (``printserver``, ``ExportConverter``,
converter names ...) do not run here: start-up warns of those that are set.
"""

from twisted.application import internet, service
from twisted.internet import defer
from twisted.logger import Logger

from pacscore.config.unsupported import warnOfKeys
from pacscore.converters.context import ConverterContext, Outcome
from pacscore.converters.lua import LuaArguments, LuaInlineCommand, LuaRuntime
from pacscore.dicom.commands import asDataset, fromDataset
from pacscore.storage.space import Nightly

SECTION = "lua"
EVENTS = ("startup", "nightly", "background", "association", "command", "clienterror", "endassociation")
REFUSALS = (Outcome.REJECT, Outcome.DESTROY)  # what a command script returns to refuse the request
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
            warnOfKeys(cls.log, configuration, others, SECTION, "these Conquest Lua event scripts are not supported "
                       f"here and do not run ({', '.join(EVENTS[:-1])} and {EVENTS[-1]} do)")
        return cls(scripts, services, registry, workers, clock)

    def startService(self):
        service.MultiService.startService(self)
        if "startup" in self.scripts:
            self.run("startup")

    def associationHooks(self):
        """The DICOM server factory's callbacks of the association events
        set (``onAccepted``, ``onCommand``, ``onClientError``, ``onEnded``):
        None for an event without a script, which then costs nothing, but
        ``onEnded``, always set, as it frees the association's Lua state."""
        hooks = {"onAccepted": ("association", self.association), "onCommand": ("command", self.command),
                 "onClientError": ("clienterror", self.clientError)}
        hooks = {name: (hook if event in self.scripts else None) for name, (event, hook) in hooks.items()}
        return {**hooks, "onEnded": self.ended}

    def association(self, callingAE, calledAE, session=None):
        """An association (whose ``session`` its scripts share) was
        accepted: its ``association`` script runs."""
        self.run("association", callingAE, calledAE, session=session)

    def command(self, callingAE, calledAE, command, session=None):
        """A request (``command``, ``{tag: value}``) came: a Deferred of the
        command set to serve, as the ``command`` script left it, or of None
        when the script refused it."""
        d = self.workers.deferToWorker(self._checkCommand, callingAE, calledAE, command, session)
        d.addErrback(self._checkFailed, command)
        return d

    def clientError(self, callingAE, calledAE, command, session=None):
        """A request (``command``) was not served: the ``clienterror`` script runs."""
        self.run("clienterror", callingAE, calledAE, command, session)

    def ended(self, callingAE, calledAE, session=None, refused=False):
        """An association ended: the ``endassociation`` script runs, if set
        and the association was not aborted as a request was ``refused``,
        then the association's Lua state (converters' and scripts', made
        by any of them, that script too) is freed."""
        ran = (self.run("endassociation", callingAE, calledAE, session=session)
               if "endassociation" in self.scripts and not refused else defer.succeed(None))
        if session is not None:
            ran.addCallback(lambda _: self.workers.deferToWorker(LuaRuntime.release, session))
            ran.addErrback(lambda failure: self.log.failure("freeing an association's Lua state failed", failure))
        return ran

    def run(self, event, callingAE="", calledAE="", command=None, session=None):
        """Deferred of the end of a run of ``event``'s script; it never fails
        (a failure is logged)."""
        d = self.workers.deferToWorker(self._execute, event, callingAE, calledAE, command, session)
        d.addErrback(lambda failure: self.log.failure("[lua] {event} failed", failure, event=event))
        return d

    def _execute(self, event, callingAE, calledAE, command, session):
        """In a worker: the script, as a ``lua "..."`` converter (which logs
        its errors), with ``Command`` the command set ``command`` unless
        None, in the association's Lua state when ``session`` is not None;
        ``(its Outcome, the context it ran in)``."""
        context = ConverterContext("import", None, callingAE, calledAE, services=self.converterServices,
                                   converterName=f"[lua] {event}",
                                   command=None if command is None else asDataset(command), session=session)
        outcome = LuaInlineCommand().run(LuaArguments(self.scripts[event], self.registry, "import"), context)
        return outcome, context

    def _checkCommand(self, callingAE, calledAE, command, session):
        """In a worker: the ``command`` script on ``command``; the command set
        it left, or None when it refused it."""
        outcome, context = self._execute("command", callingAE, calledAE, command, session)
        if outcome in REFUSALS:
            return None
        if not context.changed:
            return command
        try:
            return fromDataset(context.command)
        except ValueError as e:
            self.log.error("[lua] command: the script left {error}; the request is served as it came", error=e)
            return command

    def _checkFailed(self, failure, command):
        self.log.failure("[lua] command failed; the request is served as it came", failure)
        return command
