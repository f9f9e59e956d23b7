"""Sending one request to the control port and reading its answer.

``sendCommand(endpoint, '--display_status:json', secret)`` connects, sends
the request (see ``pacscore.control.protocol``), hands OUTPUT and PROGRESS
lines (and DATA bytes) to callbacks as they arrive and fires with a ``Reply``.
The server sends a KEEPALIVE line every ``KEEPALIVE_INTERVAL`` seconds while
a command runs: a server that sends nothing for ``ANSWER_TIMEOUT`` seconds
(a wedged one, or another service that accepts and never answers) fails the
request with ``NoAnswer``.
A TLS handshake that fails (the server's certificate not trusted, or not
issued for the address) fails with ``TLSFailed``, saying why.
A DICOM port (Conquest's dgate takes commands there, so its scripts run
``dgate -p5678``) answers with a PDU: that fails at once
(``DicomPortAnswered``; ``controlPortHint`` says where pacs takes commands).
"""

from typing import NamedTuple

from twisted.internet import defer, endpoints
from twisted.protocols import basic, policies

from pacscore.control.endpoint import DEFAULT_ENDPOINT, DEFAULT_PORT, NETWORK_KINDS, fields, hostAndPort
from pacscore.control.protocol import KEEPALIVE_INTERVAL, MAX_OUTPUT_LINE, UNKNOWN_COMMAND
from pacscore.dicom.pdu import PDU_NAMES
from pacscore.tls import tlsFailure

ANSWER_TIMEOUT = 6 * KEEPALIVE_INTERVAL


def controlPortHint(description):
    """Where pacs takes commands, for dgate pointed at a DICOM port: the
    working folder's ControlEndpoint ``description`` (empty: the default)
    and the ``-p`` that reaches it."""
    if not description.strip():
        where = f"ControlEndpoint in dicom.ini, default {DEFAULT_ENDPOINT}: dgate -p{DEFAULT_PORT}"
    else:
        where = f"ControlEndpoint = {description} in the working folder's dicom.ini"
        try:
            if fields(description)[0] in NETWORK_KINDS:
                where += f": dgate -p{hostAndPort(description, DEFAULT_PORT)[2]}"
        except ValueError:  # a bad port: dgate says so when it connects
            pass
    return f"pacs takes commands on its control endpoint ({where}), not, as Conquest, on its DICOM port"


class Reply(NamedTuple):
    """The end of an answer: ``ok``, or the ERROR ``message``."""

    ok: bool
    message: str = ""

    @property
    def unknownCommand(self):
        return not self.ok and self.message.startswith(UNKNOWN_COMMAND)


class NoAnswer(Exception):
    """The server closed the connection, or sent nothing for ``ANSWER_TIMEOUT``
    seconds, without OK or ERROR."""


class TLSFailed(Exception):
    """The TLS handshake with the control port failed."""


class ClientFailed(Exception):
    """The request could not be sent, or the answer not written out (a
    callback failed)."""


class DicomPortAnswered(Exception):
    """The server answered with a DICOM PDU: the port is a DICOM port."""


class ControlClientProtocol(basic.LineReceiver, policies.TimeoutMixin):
    """Sends ``request`` (``--name:arguments``) and reads the answer;
    ``finished`` fires with the ``Reply``. ``clock`` (default: the
    reactor) times the answer."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_OUTPUT_LINE + len(b"OUTPUT \r")

    def __init__(self, request, secret=None, output=None, progress=None, data=None, clock=None):
        if clock is not None:
            self.callLater = clock.callLater
        self.request = request
        self.secret = secret
        self.output = output or (lambda line: None)
        self.progress = progress or (lambda line: None)
        self.data = data or (lambda content: None)
        self.finished = defer.Deferred().addBoth(self._answered)
        self._remaining = 0  # bytes of a DATA answer still to come
        self._received = []
        self._answering = False  # the first bytes of the answer came

    def connectionMade(self):
        """Send the request; the bytes of an argument that are not UTF-8 (a
        file name, as the command line gives it: surrogate escapes) go as
        they are; a request of several lines (a ``--dolua:`` chunk) as its
        lines, all but the last in ``LINE`` lines. Should that fail,
        ``finished`` fails and the connection is dropped, rather than the
        request never sent and never answered."""
        self.setTimeout(ANSWER_TIMEOUT)
        *lines, last = [line.rstrip("\r") for line in self.request.split("\n")]
        lines = ([f"AUTH {self.secret}"] if self.secret else []) + [f"LINE {line}" for line in lines] + [
            f"COMMAND {last}"]
        request = "".join(line + "\r\n" for line in lines)
        self._guarded(lambda: self.transport.write(request.encode("utf-8", "surrogateescape")),
                      "sending the request failed")

    def _guarded(self, call, what):
        """Call ``call``; an exception it raises fails ``finished`` with
        ``ClientFailed`` saying ``what`` and why, and aborts the connection."""
        try:
            call()
        except Exception as e:
            if not self.finished.called:
                self.finished.errback(ClientFailed(f"{what}: {e}"))
            self.transport.abortConnection()

    def _answered(self, result):
        self.setTimeout(None)
        return result

    def timeoutConnection(self):
        if not self.finished.called:
            self.finished.errback(NoAnswer(f"no answer from the server for {ANSWER_TIMEOUT} s"))
        self.transport.abortConnection()

    def dataReceived(self, data):
        self.resetTimeout()
        if not self._answering and data:
            self._answering = True
            if data[0] in PDU_NAMES:  # the answer's lines begin with a word
                self.finished.errback(DicomPortAnswered(f"this is a DICOM port (it answered {PDU_NAMES[data[0]]})"))
                self.transport.loseConnection()
                return
        super().dataReceived(data)

    def lineReceived(self, line):
        if not self.finished.called:  # what comes after the end (or a failure here) is ignored
            self._guarded(lambda: self._answerLine(line), "writing out the answer failed")

    def _answerLine(self, line):
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
        elif kind in ("OK", "ERROR"):
            self.finished.callback(Reply(kind == "OK", text))

    def rawDataReceived(self, data):
        wanted = self._remaining
        self._received.append(data[:wanted])
        self._remaining -= len(self._received[-1])
        if not self._remaining:
            content, self._received = b"".join(self._received), []
            self._guarded(lambda: self.data(content), "writing out the answer failed")
            self.setLineMode(data[wanted:])

    def lineLengthExceeded(self, line):
        if not self.finished.called:
            self.finished.errback(ClientFailed(f"the server answered a line longer than {self.MAX_LENGTH} bytes"))
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.finished.called:
            return
        failure = tlsFailure(reason, self.transport)
        if failure is not None:
            self.finished.errback(TLSFailed(f"TLS with the control port failed: {failure}"))
        else:
            self.finished.errback(NoAnswer("the server closed the connection without an answer"))


def sendCommand(endpoint, request, secret=None, output=None, progress=None, data=None):
    """A Deferred ``Reply`` to ``request`` sent to the control port at
    ``endpoint`` (an ``IStreamClientEndpoint``); ``output`` and ``progress``
    get each OUTPUT and PROGRESS line, ``data`` the bytes of a DATA answer.
    Errbacks with the connection error (e.g. ``ConnectionRefusedError``),
    ``NoAnswer``, ``TLSFailed``, ``DicomPortAnswered`` or ``ClientFailed``."""
    client = ControlClientProtocol(request, secret, output, progress, data)
    return endpoints.connectProtocol(endpoint, client).addCallback(lambda _: client.finished)
