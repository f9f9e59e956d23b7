"""``servercommand(text)`` for converters and the web's Lua pages: a
control command (``name:arguments``, as the control port runs it) run in
the reactor while the script's worker thread waits; likewise
``dicomquery`` and ``dicommove`` (see ``dicomrequests``), ``dicomdelete``
and ``sql``.

The wait is limited (``LuaCommandTimeout`` seconds): the command is then
cancelled and the script told why.  A waiting worker's pool gets a
stand-in thread for the time of the wait (``standInWhileWaiting``), so
that a command that needs a worker of that pool (the I/O pool, where
import converters run: a dicommove storing objects here, a query reading
files) always finds one, however many converters wait.  At most ``slots``
(MAX_WAITING) calls wait at once, which bounds the threads: another is
refused at once as busy.

A command for a sandboxed script (``sandboxed``, the default) runs as
``pacscore.control.inprocess`` runs a sandboxed one: read-only commands
only, no file written, no secret shown.
"""

import functools
import threading

from pacscore.control.context import CommandError
from pacscore.control.protocol import BadRequest
from pacscore.control.queries import writeStatement
from pacscore.converters.awaitingobjects import MoveScope, awaitingObjects
from pacscore.converters.dicomrequests import DicomRequestError
from pacscore.workers import blockingCallWithin, standInWhileWaiting

DEFAULT_TIMEOUT = 60
MAX_WAITING = 32  # calls waiting at once, each with a stand-in thread in its pool
TIMEOUT_KEY = "LuaCommandTimeout"


class ServerCommandError(Exception):
    """A command or request that failed, was refused, took too long or
    found no slot."""


class ServerCommands:
    """What converters ask of the server from their worker threads, in the
    reactor, ``slots`` of them at once, each for at most ``timeout``
    seconds: ``run(line)`` (a Deferred of a control command's output
    text), the ``requests`` (a ``DicomRequests``, or None) and
    ``deleteMatching(keys)`` (``LocalActions.deleteMatching``, or None)."""

    def __init__(self, reactor, run, slots=MAX_WAITING, timeout=DEFAULT_TIMEOUT, requests=None, deleteMatching=None):
        self.reactor = reactor
        self.run = run
        self.slotCount = slots
        self.slots = threading.BoundedSemaphore(slots)
        self.timeout = timeout
        self.requests = requests
        self.deleteMatching = deleteMatching

    @classmethod
    def fromIni(cls, ini, reactor, run, slots=MAX_WAITING, requests=None, deleteMatching=None):
        """With dicom.ini's ``LuaCommandTimeout``."""
        return cls(reactor, run, slots, ini.getint(TIMEOUT_KEY, DEFAULT_TIMEOUT), requests, deleteMatching)

    def fromThread(self, line, run=None, sandboxed=True):
        """In a worker thread: the output of the command ``line`` (run by
        ``run(line, sandboxed=...)``, a Deferred of its text, if not by this
        object's: the web pages run theirs), for a sandboxed script unless
        ``sandboxed`` is False; ServerCommandError with the reason it has none."""
        return self._call(line, functools.partial(run or self.run, sandboxed=sandboxed), line)

    def find(self, ae, level, identifier):
        """In a worker thread: the matches of ``DicomRequests.find``."""
        return self._call("dicomquery", self._requests().find, ae, level, identifier)

    def move(self, source, destination, identifier, patientRoot=False):
        """In a worker thread: ``DicomRequests.move`` to its end."""
        with awaitingObjects(MoveScope(identifier)):
            return self._call("dicommove", self._requests().move, source, destination, identifier, patientRoot)

    def delete(self, keys):
        """In a worker thread: how many images ``deleteMatching(keys)`` removed."""
        if self.deleteMatching is None:
            raise ServerCommandError("dicomdelete: there is no archive to delete from here")
        return self._call("dicomdelete", self.deleteMatching, keys)

    def sql(self, index, statement):
        """In a worker thread: ``statement`` run by ``index``'s writer, as
        the control command ``deleterecord`` runs its own (see
        ``pacscore.control.queries``)."""
        return self._call("sql", writeStatement, index, index.quoteNames(statement), statement)

    def _requests(self):
        if self.requests is None:
            raise ServerCommandError("no DICOM requests can be sent from here")
        return self.requests

    def _call(self, what, f, *args):
        """``f(*args)`` in the reactor, waited for."""
        if not self.slots.acquire(blocking=False):
            raise ServerCommandError(f"{what}: busy, {self.slotCount} calls wait already, the most that may")
        try:
            with standInWhileWaiting():
                return blockingCallWithin(self.reactor, self.timeout, f, *args)
        except TimeoutError:
            raise ServerCommandError(f"{what}: not finished within {self.timeout} s ({TIMEOUT_KEY}); "
                                     f"it may still end as asked") from None
        except (CommandError, BadRequest, DicomRequestError) as e:
            raise ServerCommandError(f"{what}: {e}") from None
        finally:
            self.slots.release()
