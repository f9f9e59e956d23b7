"""Sending one request to the control port and reading its answer.

``sendCommand(endpoint, '--display_status:json', secret)`` connects, sends
the request (see ``pacscore.control.protocol``), hands OUTPUT and PROGRESS
lines (and DATA bytes) to callbacks as they arrive and fires with a ``Reply``.
"""

from typing import NamedTuple

from twisted.internet import defer, endpoints
from twisted.protocols import basic

from pacscore.control.protocol import UNKNOWN_COMMAND


class Reply(NamedTuple):
    """The end of an answer: ``ok``, or the ERROR ``message``."""

    ok: bool
    message: str = ""

    @property
    def unknownCommand(self):
        return not self.ok and self.message.startswith(UNKNOWN_COMMAND)


class NoAnswer(Exception):
    """The server closed the connection without OK or ERROR."""


class ControlClientProtocol(basic.LineReceiver):
    """Sends ``request`` (``--name:arguments``) and reads the answer;
    ``finished`` fires with the ``Reply``."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 24

    def __init__(self, request, secret=None, output=None, progress=None, data=None):
        self.request = request
        self.secret = secret
        self.output = output or (lambda line: None)
        self.progress = progress or (lambda line: None)
        self.data = data or (lambda content: None)
        self.finished = defer.Deferred()
        self._remaining = 0  # bytes of a DATA answer still to come
        self._received = []

    def connectionMade(self):
        lines = ([f"AUTH {self.secret}"] if self.secret else []) + [f"COMMAND {self.request}"]
        self.transport.write("".join(line + "\r\n" for line in lines).encode("utf-8"))

    def lineReceived(self, line):
        kind, _, text = line.rstrip(b"\r").decode("utf-8", errors="replace").partition(" ")
        if kind == "OUTPUT":
            self.output(text)
        elif kind == "DATA" and text.isdigit():
            self._remaining = int(text)
            self._received = []
            self.setRawMode()
            if not self._remaining:
                self.rawDataReceived(b"")
        elif kind == "PROGRESS":
            self.progress(text)
        elif kind in ("OK", "ERROR") and not self.finished.called:
            self.finished.callback(Reply(kind == "OK", text))

    def rawDataReceived(self, data):
        wanted = self._remaining
        self._received.append(data[:wanted])
        self._remaining -= len(self._received[-1])
        if not self._remaining:
            self.data(b"".join(self._received))
            self._received = []
            self.setLineMode(data[wanted:])

    def lineLengthExceeded(self, line):
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.finished.called:
            self.finished.errback(NoAnswer("the server closed the connection without an answer"))


def sendCommand(endpoint, request, secret=None, output=None, progress=None, data=None):
    """A Deferred ``Reply`` to ``request`` sent to the control port at
    ``endpoint`` (an ``IStreamClientEndpoint``); ``output`` and ``progress``
    get each OUTPUT and PROGRESS line, ``data`` the bytes of a DATA answer.
    Errbacks with the connection error (e.g. ``ConnectionRefusedError``)
    or ``NoAnswer``."""
    client = ControlClientProtocol(request, secret, output, progress, data)
    return endpoints.connectProtocol(endpoint, client).addCallback(lambda _: client.finished)
