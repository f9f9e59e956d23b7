"""``servercommand(text)`` for converters: a control command
(``name:arguments``, as the control port and the web's Lua pages run it)
run in the reactor while the converter's worker thread waits.

The wait is limited (``LuaCommandTimeout`` seconds): the command is then
cancelled and the script told why.  At most ``slots`` workers wait at
once (one fewer than the I/O pool has threads), so that a command that
needs a worker of that pool, the one import converters run in, always
finds one: another call is refused at once as busy, never left to
deadlock.
"""

import threading

from pacscore.control.context import CommandError
from pacscore.control.protocol import BadRequest
from pacscore.workers import blockingCallWithin

DEFAULT_TIMEOUT = 60
TIMEOUT_KEY = "LuaCommandTimeout"


class ServerCommandError(Exception):
    """A command that failed, was refused, took too long or found no slot."""


class ServerCommands:
    """``run(line)`` (in the reactor: a Deferred of the output text) made
    callable from worker threads, ``slots`` of them at once, each for at
    most ``timeout`` seconds."""

    def __init__(self, reactor, run, slots, timeout=DEFAULT_TIMEOUT):
        self.reactor = reactor
        self.run = run
        self.slots = threading.BoundedSemaphore(slots) if slots > 0 else None
        self.timeout = timeout

    @classmethod
    def fromIni(cls, ini, reactor, run, slots):
        """With dicom.ini's ``LuaCommandTimeout``."""
        return cls(reactor, run, slots, ini.getint(TIMEOUT_KEY, DEFAULT_TIMEOUT))

    def fromThread(self, line):
        """In a worker thread: the output of the command ``line``;
        ServerCommandError with the reason it has none."""
        if self.slots is None or not self.slots.acquire(blocking=False):
            raise ServerCommandError(f"{line}: busy, every worker that may wait for a command does")
        try:
            return blockingCallWithin(self.reactor, self.timeout, self.run, line)
        except (CommandError, BadRequest, TimeoutError) as e:
            raise ServerCommandError(f"{line}: {e}") from None
        finally:
            self.slots.release()
