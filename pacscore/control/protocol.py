"""The control port: ``dgate --command:args`` requests to the running server.

One request per connection. The client sends lines (CRLF or LF; UTF-8, but
the bytes of a file name that are not UTF-8 are taken as they are), optionally
``AUTH <secret>``, then ``COMMAND --name:arguments``; a request of several
lines (a ``--dolua:`` chunk) comes as a ``LINE <text>`` line for each line
but its last, which ``COMMAND`` brings, the lines joined with LF (at most
``MAX_LENGTH`` bytes in all, counted as they come: a request growing past it
is closed at once; behind a ControlSecret a ``LINE`` needs the ``AUTH`` line
before it, as ``COMMAND`` does, and is refused alike); the server answers
``PROGRESS <text>`` lines while the command works (and a ``KEEPALIVE``
line every ``KEEPALIVE_INTERVAL`` seconds, so that a client can tell a
long command from a server that went silent), one ``OUTPUT <line>``
per line of its output (at most ``MAX_OUTPUT_LINE`` bytes: a longer line ends the answer with an ERROR) (or, for a command whose output is a file's bytes,
such as ``convert_to_jpg`` without an output file, one ``DATA <length>``
line followed by that many bytes), and finally ``OK`` or ``ERROR
<message>``, then closes. Commands run as Deferreds, so a long one never holds up other
clients or the DICOM service.  At most ``ControlMaxConnections`` connections are held
at once (no more than a sixteenth of the open-file limit) and
``ControlMaxConnectionsPerPeer`` from one address: one more is answered ``ERROR`` and
closed at once, with a log line, as the DICOM service's ``MaxAssociations`` are
(``pacscore.dicom.admission``).
"""

import hmac
import re

from twisted.internet import defer, protocol, task
from twisted.logger import Logger
from twisted.protocols import basic, policies

from pacscore.closing import closeWithin
from pacscore.control.context import CommandError, ControlContext, notUTF8
from pacscore.control.output import Lines
from pacscore.control.registry import CommandRegistry
from pacscore.dicom.admission import LimitedFactory
from pacscore.hostport import hostPort

UNKNOWN_COMMAND = "unknown command "   # an ERROR message starting so: dgate exits 2
KEEPALIVE_INTERVAL = 10  # seconds between the KEEPALIVE lines of a running command
MAX_OUTPUT_LINE = 1 << 24  # bytes of an OUTPUT line's text, the most dgate reads: a longer one fails the command
STALLED_READER_BOUND = 60  # seconds an answer's reader may take none of it (the idle timeout if longer) before a cut


class BadRequest(Exception):
    """A request line that is not ``AUTH ...``, ``LINE ...`` or ``COMMAND --name[:args]``."""


def parseCommand(text):
    """``(name, arguments)`` of ``--name:arguments`` (the ``--`` optional)."""
    text = text.strip()
    if text.startswith("--"):
        text = text[2:]
    name, _, arguments = text.partition(":")
    name = name.strip().lower()
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise BadRequest(f"expected --command:arguments, got {text!r}")
    return name, arguments


def _oneLine(text):
    return " ".join(str(text).split())


def _encoded(text):
    return text.encode("utf-8", "backslashreplace")


def _outputLines(output):
    """The OUTPUT lines of a command's text ``output``: of a listing's
    ``Lines``, the lines of its text as a file of it holds them, empty
    ones too, the last among them (which ``splitlines`` drops: Conquest's
    imagelister prints an empty line per image for ``#``; a ``%s\n``
    format an empty line after each row)."""
    if isinstance(output, Lines):
        return re.split(r"\r?\n", output) if output.lines else []
    return ("" if output is None else str(output)).splitlines()


class ControlProtocol(basic.LineReceiver, policies.TimeoutMixin):
    """One control connection; the factory runs its request. Lines end with
    CRLF; a bare LF is accepted too."""

    delimiter = b"\n"
    MAX_LENGTH = 65536
    log = Logger()

    def __init__(self):
        self.secret = None
        self.lines = []  # the LINE lines of a request of several lines
        self.length = 0  # their bytes, each with its LF
        self.finished = False
        self.started = False
        self.keepingAlive = None
        self._closing = None  # the cut of the connection once answered (closeWithin)

    def connectionMade(self):
        self.peer = self.transport.getPeer()
        self.factory.opened(self.transport)
        self.setTimeout(self.factory.idleTimeout)

    def connectionLost(self, reason):
        self.factory.closed(self.transport)
        self.setTimeout(None)
        self._stopKeepingAlive()
        self.finished = True
        if self._closing is not None and self._closing.active():
            self._closing.cancel()

    def callLater(self, delay, f, *args, **kw):
        """The TimeoutMixin timer, on the factory's clock."""
        return self.factory.reactor.callLater(delay, f, *args, **kw)

    def timeoutConnection(self):
        self.log.info("control: {peer}: no request within {timeout} s, closing",
                      peer=self.peerName(), timeout=self.timeOut)
        self.finish(f"no request within {self.timeOut} s")

    def peerName(self):
        peer = getattr(self, "peer", None)
        return hostPort(getattr(peer, 'host', '?'), getattr(peer, 'port', ''))

    # -- the request -------------------------------------------------------

    def lineReceived(self, line):
        if self.started or self.finished:
            return
        try:  # the whole request must come within the idle timeout: AUTH lines do not put it off
            text = line.rstrip(b"\r").decode("utf-8", "surrogateescape")  # a file name's bytes as they are
            if "\x00" in text:  # no argument (a path, a value) may hold one
                raise BadRequest("NUL character in the request")
            verb, _, rest = text.partition(" ")
            if verb == "AUTH":
                self.secret = rest
            elif verb in ("LINE", "COMMAND"):
                if verb == "LINE" and not self.factory.authorized(self.secret):
                    return self.factory.refuse(self, "a request of several lines")
                self.length += len(rest.encode("utf-8", "surrogateescape")) + 1
                if self.length > self.MAX_LENGTH:
                    raise BadRequest(f"request longer than {self.MAX_LENGTH} bytes")
                self.lines.append(rest)
                if verb == "COMMAND":
                    self.started = True
                    self.setTimeout(None)
                    self._keepAlive()
                    self.factory.execute(self, *parseCommand("\n".join(self.lines)))
            else:
                raise BadRequest(f"expected AUTH, LINE or COMMAND, got {verb[:32]!r}")
        except BadRequest as e:
            self.log.warn("control: {peer}: bad request: {error}", peer=self.peerName(), error=e)
            self.finish(f"bad request: {e}")

    def lineLengthExceeded(self, line):
        if self.started or self.finished:  # what follows the request is ignored, as in lineReceived
            return
        self.log.warn("control: {peer}: request line longer than {limit} bytes",
                      peer=self.peerName(), limit=self.MAX_LENGTH)
        self.finish(f"request line longer than {self.MAX_LENGTH} bytes")

    # -- the answer --------------------------------------------------------

    def _send(self, kind, text=None):
        """One line, ``text`` bytes or text; the bytes of a file name that are not UTF-8 (read from
        a folder as surrogate escapes) go as ``\\udcff``, so no line is lost."""
        if isinstance(text, str):
            text = _encoded(text)
        if not self.finished:
            self.transport.write((kind if text is None else kind + b" " + text) + b"\r\n")

    def _keepAlive(self):
        self.keepingAlive = task.LoopingCall(self._send, b"KEEPALIVE")
        self.keepingAlive.clock = self.factory.reactor
        self.keepingAlive.start(KEEPALIVE_INTERVAL, now=False)

    def _stopKeepingAlive(self):
        if self.keepingAlive is not None and self.keepingAlive.running:
            self.keepingAlive.stop()

    def progress(self, text):
        """A PROGRESS line per line of ``text``."""
        for line in str(text).splitlines():
            self._send(b"PROGRESS", line)

    def finish(self, error=None, output=None):
        """The OUTPUT lines of ``output`` (text; bytes go as DATA), then
        OK (or ``ERROR error``), and close (cut ``CLOSE_BOUND`` s after the
        peer took it all if over TLS it never answers close_notify, or
        once it has taken none of it for ``STALLED_READER_BOUND`` s: a
        script reading a long listing a line at a time, or a pager, takes
        none of it for many seconds)."""
        self.setTimeout(None)
        self._stopKeepingAlive()
        if isinstance(output, bytes):
            self._send(b"DATA", str(len(output)))
            if not self.finished:
                self.transport.write(output)
            output = None
        for line in _outputLines(output):
            line = _encoded(line)
            if len(line) > MAX_OUTPUT_LINE:
                error = (f"an output line of {len(line)} bytes, more than the {MAX_OUTPUT_LINE} "
                         "a line of dgate's can hold")
                break
            self._send(b"OUTPUT", line)
        self._send(b"OK" if error is None else b"ERROR", None if error is None else _oneLine(error))
        self.finished = True
        self._closing = closeWithin(self.transport, self.factory.reactor,
                                    max(STALLED_READER_BOUND, self.factory.idleTimeout), self._cut)

    def _cut(self, left, seconds):
        self.log.info("control: {peer}: connection cut: its peer took none of the {left} bytes still to send "
                      "in {seconds} s", peer=self.peerName(), left=left, seconds=seconds)


class ControlFactory(LimitedFactory, protocol.Factory):
    """Serves the control port of ``archive``.

    ``secret`` is ControlSecret: when it is set, a request without the right
    ``AUTH`` line is refused and logged, whichever client sends it (on
    loopback too: other users of the machine reach it there); with
    ``requireSecret`` (the endpoint is not loopback) it must be set.  A
    ControlSecret changed by a command (``put_param``, ``delete_param``,
    ``read_ini``) is
    asked of the next request (``secret`` is set anew). ``quit`` (a callable returning a Deferred) stops the server in
    order; ``commands`` is a ``CommandRegistry`` (default: every installed
    command plugin); ``limits`` (an AssociationLimits; None: any number)
    caps the connections held at once; ``endpoint`` is the description the
    port listens on (None: not known).
    """

    protocol = ControlProtocol
    refusal = b"ERROR too many connections to the control port, try again later\r\n"
    limitKeys = ("ControlMaxConnections", "ControlMaxConnectionsPerPeer")
    fileShare = 16  # ControlMaxConnections is at most the open-file limit / fileShare
    defaultTotal = 100  # ControlMaxConnections
    perPeer = 0  # ControlMaxConnectionsPerPeer: none (dgate on the server's machine comes from one address)
    noisy = False
    idleTimeout = 30
    log = Logger()

    def __init__(self, archive, reactor, secret=None, requireSecret=False, quit=None, commands=None, limits=None,
                 endpoint=None):
        if requireSecret and not secret:
            raise ValueError("the control port is not bound to loopback: a ControlSecret is required")
        self.archive = archive
        self.reactor = reactor
        self.secret = secret
        self.requireSecret = requireSecret
        self.quit = quit
        self.commands = commands if commands is not None else CommandRegistry()
        self.limits = self.limitsOrNone(limits)
        self.endpoint = endpoint

    def authorized(self, given):
        """Whether ``given`` (the AUTH line's secret, or None) lets a request in."""
        if not self.secret:
            return True
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                     self.secret.encode("utf-8", "surrogateescape"))

    def refuse(self, connection, what):
        """Answer ``connection``, whose secret is missing or wrong, that
        ``what`` (its command, or its first LINE) is refused, and log it."""
        why = "missing" if connection.secret is None else "wrong"
        self.log.warn("control: refused {what} from {peer}: {why} ControlSecret",
                      what=what, peer=connection.peerName(), why=why)
        connection.finish(f"refused: {why} secret")

    def execute(self, connection, name, arguments):
        """Run ``--name:arguments`` for ``connection`` and answer it."""
        peer = connection.peerName()
        if not self.authorized(connection.secret):
            return self.refuse(connection, f"--{name}")
        command = self.commands.lookup(name)
        if command is None:
            self.log.info("control: {peer}: unknown command --{command}", peer=peer, command=name)
            return connection.finish(f"{UNKNOWN_COMMAND}--{name}")
        logged = getattr(command, "loggedArguments", None)  # a secret put_param sets is not logged
        self.log.info("control: {peer}: --{command}:{arguments}", peer=peer, command=name,
                      arguments=arguments if logged is None else logged(arguments))
        context = ControlContext(self.archive, self.reactor, progress=connection.progress, peer=peer,
                                 quit=self.quit)
        d = defer.maybeDeferred(command.run, arguments, context)
        d.addCallbacks(lambda output: connection.finish(output=output),
                       self._failed, errbackArgs=(connection, name))
        d.addErrback(self._notAnswered, connection, name)

    def _failed(self, failure, connection, name):
        """Answer the ERROR of a command that failed: a CommandError logged
        in one line, a failure of the index database (down, locked) in one
        error line, with its message only, anything else with its traceback."""
        # not at the top: dgate's client takes this module's constants, and starts without SQLAlchemy
        from pacscore.db.errors import DATABASE_FAILURES, databaseMessage
        error = notUTF8(failure.value) or failure.value
        if isinstance(error, CommandError):
            self.log.info("control: {peer}: --{command} failed: {error}", peer=connection.peerName(),
                          command=name, error=error)
        elif isinstance(error, DATABASE_FAILURES):
            error = CommandError(f"the index database failed: {databaseMessage(error)}")
            self.log.error("control: {peer}: --{command} failed: {error}", peer=connection.peerName(),
                           command=name, error=error)
        else:
            self.log.failure("control: {peer}: --{command} raised an unexpected error", failure,
                             peer=connection.peerName(), command=name)
        connection.finish(str(error) or failure.type.__name__, getattr(error, "output", None))

    def _notAnswered(self, failure, connection, name):
        self.log.failure("control: {peer}: answering --{command} failed", failure, peer=connection.peerName(),
                         command=name)
        connection.transport.abortConnection()
