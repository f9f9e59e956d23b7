"""The DICOM upper layer (PS3.8) as Twisted protocols: what both roles share
and the acceptor.

``DicomProtocol`` holds the established-association part of the state
machine (PS3.8 table 9-10) that requestor and acceptor share: P-DATA PDVs
are reassembled into DIMSE messages; requests go to the service registered
for their command, responses to the request they answer (matched by
Message ID, with pending responses passed on as they come; one without a
Status fails its request with ``NoStatus``, aborting), C-CANCEL-RQ
marks the operation it names as cancelled.  Bad input of any kind ends in
an A-ABORT and a log line, never an exception escaping ``dataReceived``.

``DicomServerProtocol`` adds the acceptor: awaiting the A-ASSOCIATE-RQ with
the ARTIM timer running (Sta2), the release, and telling its factory's
hooks (the ``[lua]`` association scripts) of an association accepted, of
each request (which may change or refuse it first), of a request not served
and of the end.  The requestor is ``pacscore.dicom.client.DicomClientProtocol``.
"""

from collections import deque

from twisted.internet import defer, tcp
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from pacscore.closing import closeWithin, unsent
from pacscore.debuglog import COMMANDS, memoryInUse, serverLog
from pacscore.dicom import commands, pdu
from pacscore.dicom.admission import LimitedFactory
from pacscore.dicom.negotiation import (
    PRESENTATION_LOCAL_LIMIT, REJECTED_TRANSIENT, SOURCE_PRESENTATION, AssociationRejected, negotiate)
from pacscore.dicom.routing import refuse
from pacscore.dicom.sinks import MemorySink
from pacscore.dicom.storeddata import StoredData, closeIfStored
from pacscore.hostport import hostPort
from pacscore.tls import HandshakeListener, securityOf, warnOfTLSFailure

AWAITING_ASSOCIATE = "Sta2"
AWAITING_ASSOCIATE_AC = "Sta5"
ESTABLISHED = "Sta6"
AWAITING_RELEASE_RP = "Sta7"
AWAITING_CLOSE = "Sta13"

ASSOCIATION_PDU_LIMIT = 1 << 20
STREAMED_DATASET = 1 << 20  # data sets larger than this are written as the transport drains
WRITE_BATCH = 256 << 10     # bytes of PDUs handed to the transport at a time when streaming
READ_SIZE = 1 << 16    # bytes read from the socket at a time, Twisted's
READ_LIMIT = 1 << 20   # bytes of a large PDU begun read at a time beyond it (_sizeReads)
COMMAND_LIMIT = 1 << 16  # bytes of a DIMSE command set (they are tens to hundreds)

PENDING_STATUSES = (0xFF00, 0xFF01)
MAY_BE_PENDING = frozenset({commands.C_FIND_RSP, commands.C_GET_RSP, commands.C_MOVE_RSP})
PRIORITY_MEDIUM = 0
PRIORITIES = frozenset({PRIORITY_MEDIUM, 1, 2})  # MEDIUM, HIGH, LOW (PS3.7 9.1.1.1)


class AssociationLost(Exception):
    """The association ended (abort, close or timeout) before an answer came."""


class NoContext(Exception):
    """The peer accepted no presentation context for what was asked."""


class DIMSETimeout(AssociationLost):
    """No response to a request within the DIMSE timeout; the association is aborted."""


class NoStatus(AssociationLost):
    """A response without the Status every response carries (PS3.7 9.3,
    (0000,0900) mandatory); refused, and the association is aborted."""


class _Message:
    """A DIMSE message being reassembled on one presentation context."""

    __slots__ = ("command", "commandBytes", "sink")

    def __init__(self):
        self.commandBytes = bytearray()
        self.command = None
        self.sink = None


class _Request:
    """A request we sent, waiting for its final response."""

    __slots__ = ("deferred", "onPending", "timer", "timeout", "responseField", "yieldsToRelease")

    def __init__(self, onPending, responseField, yieldsToRelease=False, timeout=None):
        self.deferred = defer.Deferred()
        self.onPending = onPending
        self.timer = None
        self.timeout = timeout  # seconds the peer may stay silent (None: no limit)
        self.responseField = responseField  # the command field its responses must have
        self.yieldsToRelease = yieldsToRelease  # a release the peer asks for fails it rather than waits


@implementer(IPushProducer)
class DicomProtocol(HandshakeListener, Protocol, TimeoutMixin):
    """One association, either role, once established.

    The factory provides ``clock``, ``idleTimeout``, ``artimTimeout``,
    ``dimseTimeout`` (each None: no limit), ``maxPDULength``, ``services`` and
    ``datasetSink(protocol, contextId, command)``.  The protocol registers
    itself as the transport's streaming producer, so long series of
    messages can wait for ``whenWritable()`` instead of filling memory.
    """

    log = Logger()
    isAcceptor = True  # names the peer by its calling AE (the requestor: by the called AE)
    _releaseRequested = False  # the peer sent an A-RELEASE-RQ (the acceptor, Sta8)
    tlsFailure = None  # what went wrong in TLS, when that ended the connection

    def __init__(self):
        self._sizedReads = False  # whether the transport's read size is ours to set (_sizeReads)
        self.state = None
        self.association = None
        self.session = {}           # kept for the association's life by the services it calls (a Lua state)
        self._messages = {}
        self._operations = {}       # Deferred of an operation we perform -> its request's Message ID
        self._cancelled = set()     # Message IDs of operations the peer cancelled
        self._cancelWaiters = {}    # Message ID -> Deferreds of whenCancelled
        self._endWaiters = []       # Deferreds of whenEnded
        self._requests = {}         # Message ID of a request we sent -> _Request
        self._nextMessageID = 0
        self._artim = None
        self._writePaused = False
        self._unsent = None         # unsent(transport) when the idle timer last started after an operation, or looked
        self._writeWaiters = []
        self._outbox = None         # messages waiting for a streamed one to be written (a deque)
        self._holds = 0             # reports owed on the association (holdOpen): it is not idle meanwhile

    # -- transport events --------------------------------------------------

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)
        self.peer = self.transport.getPeer()
        self._framer = pdu.PDUFramer(self._maximumLength)
        self._sizedReads = isinstance(self.transport, tcp.Connection)  # not TLS: it reads for itself
        self.factory.associationOpened(self)

    def connectionLost(self, reason):
        self.tlsFailure = warnOfTLSFailure(self.log, f"{self.peerName()}: ", reason, self.transport)
        self._stopArtim()
        self.setTimeout(None)
        if self.state in (ESTABLISHED, AWAITING_RELEASE_RP):
            self._logDropped(reason)
        for message in self._messages.values():
            if message.sink is not None:
                message.sink.discard()
        self._messages.clear()
        self.state = AWAITING_CLOSE
        self._failRequests(AssociationLost(f"association with {self.peerName()} ended"))
        self._resumeWriters()
        self._ended()
        self.factory.associationClosed(self)

    def _logDropped(self, reason):
        """The connection ended with the association neither released nor
        aborted (an A-P-ABORT, PS3.8 7.4): a warning naming the messages
        it cut short, a C-STORE by its SOP Instance UID."""
        cut = []
        for message in self._messages.values():
            command = message.command or {}
            field = command.get(commands.COMMAND_FIELD)
            what = commands.COMMAND_NAMES.get(field, "a command set")
            if field == commands.C_STORE_RQ:
                what += f" of {command.get(commands.AFFECTED_SOP_INSTANCE_UID, '?')}"
            cut.append(what)
        self.log.warn("{peer}: connection lost without A-RELEASE or A-ABORT: {reason}{cut}",
                      peer=self.peerName(), reason=reason.getErrorMessage().rstrip("."),
                      cut=f"; cut short and discarded: {', '.join(cut)}" if cut else "")

    def dataReceived(self, data):
        self.resetTimeout()
        try:
            for pduType, body in self._framer.feed(data):
                if self.state == AWAITING_CLOSE:
                    self._pduWhileClosing(pduType)
                    if self.transport is None:
                        return
                    continue
                self._pduReceived(pduType, body)
            if self._sizedReads:
                self._sizeReads()
        except pdu.PDUError as e:
            self.log.warn("{peer}: malformed PDU, aborting: {error}", peer=self.peerName(), error=e)
            self.abort(e.reason)
            if self._framer.desynchronised and self.transport is not None and not self.transport.disconnecting:
                # what follows cannot be framed (PS3.8 Sta13 discards it anyway): closed after
                # the A-ABORT, as DCMTK does; ARTIM still ends a peer that does not take it
                self.transport.unregisterProducer()
                self.transport.loseConnection()
        except Exception:
            self._internalError(Failure())

    def _sizeReads(self):
        """Read the rest of a large PDU begun (a 256 KB P-DATA-TF) in one
        receive where the socket has it, and the next PDU's start with it,
        rather than 64 KB (Twisted's read size) at a time: each read is a
        pass of the reactor.  Twisted also pauses a producer writing to the
        transport beyond ``bufferSize`` bytes unsent: while such a PDU is
        begun that is up to about 1 MB (what this side sends meanwhile is
        DIMSE responses, a few hundred bytes each)."""
        framer = self._framer
        length = framer.pendingLength
        missing = 0 if length is None else length - framer.pendingBytes
        self.transport.bufferSize = READ_SIZE + min(missing, READ_LIMIT)

    def _internalError(self, failure):
        self.log.failure("{peer}: internal error while handling a PDU, aborting", failure, peer=self.peerName())
        self.abort(pdu.REASON_NOT_SPECIFIED)

    def timeoutConnection(self):
        if self._operations or self._outbox is not None or self._holds:
            # serving a request (a C-MOVE sending for an hour, a slow C-FIND), or owing
            # it a report (a storage commitment checked): the requestor rightly sends
            # nothing meanwhile; the association is not idle
            self.setTimeout(self.timeOut)  # re-armed: the expired call is gone
            return
        if self._takingWhatWeSent():  # it reads a large answer slowly: not idle either
            self.setTimeout(self.timeOut)
            return
        self.log.warn("{peer}: no data for {timeout} s (TCPIPTimeOut){waiting}, aborting",
                      peer=self.peerName(), timeout=self.timeOut,
                      waiting=f", and it took none of the {self._unsent} bytes sent to it" if self._unsent else "")
        self.abort(pdu.REASON_NOT_SPECIFIED)

    def _takingWhatWeSent(self):
        """Whether the peer took some of what was sent to it since the idle
        timer started after the last operation, or since the last look:
        bytes of it are still unsent (``pacscore.closing.unsent``: in
        Twisted's write buffer and the socket's send queue, megabytes of a
        C-FIND's answer for a slow link) and fewer than then (or then was
        not looked at)."""
        before, self._unsent = self._unsent, unsent(self.transport)
        return bool(self._unsent) and (before is None or self._unsent < before)

    # -- IPushProducer: the transport tells when its write buffer is full --

    def pauseProducing(self):
        self._writePaused = True

    def resumeProducing(self):
        """The transport sent all it was given: the peer is taking what we
        write, so the DIMSE timeouts of our requests count from now (a large
        data set on a slow link is not cut short for taking long to send),
        and TCPIPTimeOut too."""
        self._writePaused = False
        self.resetTimeout()  # nor is the association idle while it does
        for messageID, pending in self._requests.items():
            self._armTimer(messageID, pending)
        self._resumeWriters()

    def stopProducing(self):
        self._resumeWriters()

    def whenWritable(self):
        """A Deferred that fires once the transport wants more data (at once
        if it does, or if the connection is gone: then check ``state``)."""
        if not self._writePaused or not self._maySend():
            return defer.succeed(None)
        d = defer.Deferred()
        self._writeWaiters.append(d)
        return d

    def _resumeWriters(self):
        waiters, self._writeWaiters = self._writeWaiters, []
        for d in waiters:
            d.callback(None)

    # -- PDUs --------------------------------------------------------------

    def _maximumLength(self, pduType):
        if pduType == pdu.P_DATA_TF and self.state in (ESTABLISHED, AWAITING_RELEASE_RP):
            return self.factory.maxPDULength + 6
        return ASSOCIATION_PDU_LIMIT

    def _pduReceived(self, pduType, body):
        if pduType == pdu.A_ABORT:
            abort = pdu.describeAbort(body)
            self.log.info("{peer}: association aborted by peer ({abort})", peer=self.peerName(), abort=abort)
            self._closeNow()  # first: who sees a request fail sees the association gone
            self._failRequests(AssociationLost(f"{self.peerName()} aborted the association ({abort})"))
        elif pduType == pdu.P_DATA_TF and self.state in (ESTABLISHED, AWAITING_RELEASE_RP):
            self._pdataReceived(body)
        else:
            self._associationPDU(pduType, body)

    def _associationPDU(self, pduType, body):
        """A PDU other than P-DATA and A-ABORT, for the role to handle."""
        raise pdu.PDUError(f"unexpected {pdu.PDU_NAMES[pduType]} in state {self.state}",
                           pdu.REASON_UNEXPECTED_PDU)

    def _pduWhileClosing(self, pduType):
        if pduType == pdu.A_ABORT:
            self._closeNow()

    def _pdataReceived(self, body):
        contexts = self.association.contexts
        for contextId, control, data in pdu.iterPDVs(body):
            if contextId not in contexts:
                raise pdu.PDUError(f"PDV on presentation context {contextId}, which was not accepted",
                                   pdu.REASON_INVALID_PARAMETER)
            message = self._messages.get(contextId)
            if message is None:
                message = self._messages[contextId] = _Message()
            if control & 1:
                if message.command is not None:
                    raise pdu.PDUError("command fragment after the command set ended")
                message.commandBytes += data
                if len(message.commandBytes) > COMMAND_LIMIT:
                    raise pdu.PDUError(f"a command set larger than {COMMAND_LIMIT} bytes")
                if control & 2:
                    self._commandComplete(contextId, message)
            else:
                if message.sink is None:
                    raise pdu.PDUError("data set fragment without a command set announcing it")
                message.sink.write(data)
                if control & 2:
                    del self._messages[contextId]
                    self._dispatch(contextId, message.command, message.sink)

    def _commandComplete(self, contextId, message):
        command = message.command = commands.decodeCommand(message.commandBytes)
        message.commandBytes = None
        if serverLog.wants(COMMANDS):
            self.log.debug("{peer}: {name} received (memory in use {memory}):\n{dump}", peer=self.peerName(),
                           name=commands.COMMAND_NAMES.get(command[commands.COMMAND_FIELD], "command"),
                           memory=memoryInUse(), dump=commands.describeCommand(command), debugLevel=COMMANDS)
        if command.get(commands.COMMAND_DATASET_TYPE, commands.NO_DATASET) == commands.NO_DATASET:
            del self._messages[contextId]
            self._dispatch(contextId, command, None)
        elif command[commands.COMMAND_FIELD] & 0x8000:
            message.sink = MemorySink()
        else:
            message.sink = self.factory.datasetSink(self, contextId, command)

    # -- DIMSE: requests the peer sends us ---------------------------------

    def _dispatch(self, contextId, command, dataset):
        field = command[commands.COMMAND_FIELD]
        if field & 0x8000:
            self._responseReceived(command, None if dataset is None else bytes(dataset.data))
            return
        if self._releaseRequested:  # PS3.8 Sta8 + Evt10 (AA-8); responses to our requests may still come
            if dataset is not None:
                dataset.discard()  # a spooled data set's file goes
            raise pdu.PDUError(f"{commands.COMMAND_NAMES.get(field, hex(field))} after the A-RELEASE-RQ",
                               pdu.REASON_UNEXPECTED_PDU)
        self._serveRequest(contextId, command, dataset)

    def _serveRequest(self, contextId, command, dataset):
        """A request of the peer, whole: to the service of its command."""
        field = command[commands.COMMAND_FIELD]
        if field == commands.C_CANCEL_RQ:
            self._cancelRequested(command)
            return
        sopClass = self.association.contexts[contextId][0]
        if sopClass in self.association.peerNotSCU:
            if dataset is not None:
                dataset.discard()
            refuse(self, contextId, command, sopClass, "the requestor gave up the SCU role for it")
            return
        service = self.factory.services.get(field)
        if service is None:
            self.log.warn("{peer}: {command} is not supported here",
                          peer=self.peerName(), command=commands.COMMAND_NAMES.get(field, hex(field)))
            if dataset is not None:
                dataset.discard()
            self.sendMessage(contextId, commands.response(command, field | 0x8000, commands.UNRECOGNIZED_OPERATION))
            self.requestFailed(command)
            return
        operation = defer.maybeDeferred(service.handle, self, contextId, command, dataset)
        self._operations[operation] = command.get(commands.MESSAGE_ID)
        operation.addErrback(self._operationFailed, contextId, command)
        operation.addBoth(self._operationDone, operation)

    def _cancelRequested(self, command):
        messageID = command.get(commands.MESSAGE_ID_RESPONDED_TO)
        if messageID in self._operations.values():
            self.log.info("{peer}: C-CANCEL of operation {id}", peer=self.peerName(), id=messageID)
            self._cancelled.add(messageID)
            for waiter in self._cancelWaiters.pop(messageID, []):
                waiter.callback(None)
        else:
            self.log.debug("{peer}: C-CANCEL of {id}, which is not running", peer=self.peerName(), id=messageID)

    def isCancelled(self, command):
        """Whether the peer sent a C-CANCEL for the operation of ``command``."""
        return command.get(commands.MESSAGE_ID) in self._cancelled

    def whenCancelled(self, command):
        """A Deferred firing when the peer cancels the operation of
        ``command`` (at once if it has); cancel it when no longer needed."""
        messageID = command.get(commands.MESSAGE_ID)
        if messageID in self._cancelled:
            return defer.succeed(None)
        waiters = self._cancelWaiters.setdefault(messageID, [])
        waiter = defer.Deferred(lambda d: waiters.remove(d) if d in waiters else None)
        waiters.append(waiter)
        return waiter

    def whenEnded(self):
        """A Deferred firing once the association is over (released,
        aborted by either side or its connection lost: no message reaches
        the peer any more), at once if it is; cancel it when no longer
        needed."""
        if self.state == AWAITING_CLOSE:
            return defer.succeed(None)
        waiter = defer.Deferred(lambda d: self._endWaiters.remove(d) if d in self._endWaiters else None)
        self._endWaiters.append(waiter)
        return waiter

    def _ended(self):
        """Now AWAITING_CLOSE: ``whenEnded``'s Deferreds fire."""
        waiters, self._endWaiters = self._endWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _operationFailed(self, failure, contextId, command):
        self.log.failure("{peer}: {command} failed", failure,
                         peer=self.peerName(),
                         command=commands.COMMAND_NAMES.get(command[commands.COMMAND_FIELD]))
        field = command[commands.COMMAND_FIELD]
        self.sendMessage(contextId, commands.response(command, field | 0x8000, commands.PROCESSING_FAILURE))
        self.requestFailed(command)

    def requestFailed(self, command):
        """A request of the peer (``command``) was not served: unknown,
        refused or failed (its answer is sent)."""

    def _operationDone(self, _, operation):
        messageID = self._operations.pop(operation, None)
        if messageID not in self._operations.values():
            self._cancelled.discard(messageID)
            self._cancelWaiters.pop(messageID, None)
        self._operationsChanged()

    def _operationsChanged(self):
        """An operation we performed, or a request we sent, has ended (or
        the messages waiting behind a streamed one are written): once the
        last has, the idle timeout counts from now."""
        if not self._operations and self._outbox is None:
            self.resetTimeout()
            self._unsent = unsent(self.transport)

    # -- DIMSE: requests we send -------------------------------------------

    def nextMessageID(self):
        self._nextMessageID = self._nextMessageID % 0xFFFF + 1
        while self._nextMessageID in self._requests:
            self._nextMessageID = self._nextMessageID % 0xFFFF + 1
        return self._nextMessageID

    def request(self, contextId, command, dataset=None, onPending=None, yieldsToRelease=False, timeout=None):
        """Send a request; a Deferred fires with ``(command, dataset bytes
        or None)`` of its final response.  Pending responses (status
        FF00/FF01) go to ``onPending(command, dataset)`` as they arrive.
        The Message ID is assigned here when ``command`` has none.  Fails
        with ``AssociationLost`` if the association ends first (``state``
        no longer ``ESTABLISHED`` by the time it fails), or with
        ``DIMSETimeout`` (and an A-ABORT) when the peer stays silent for
        ``timeout`` seconds (None: the factory's ``dimseTimeout``) once the
        request is sent (while it is being sent, the timeout counts the
        time the peer takes nothing of it).  A release the peer asks for waits
        for the response unless ``yieldsToRelease``: then the request fails
        (``AssociationLost``) and the association is released."""
        if self.state != ESTABLISHED:
            closeIfStored(dataset)
            return defer.fail(AssociationLost(f"no association with {self.peerName()}"))
        command = dict(command)
        messageID = command.setdefault(commands.MESSAGE_ID, self.nextMessageID())
        pending = self._requests[messageID] = _Request(onPending, command[commands.COMMAND_FIELD] | 0x8000,
                                                       yieldsToRelease,
                                                       self.factory.dimseTimeout if timeout is None else timeout)
        self._armTimer(messageID, pending)
        self.sendMessage(contextId, command, dataset)
        return pending.deferred

    def cancel(self, contextId, messageID):
        """Send a C-CANCEL-RQ for our request ``messageID``."""
        self.sendMessage(contextId, {commands.COMMAND_FIELD: commands.C_CANCEL_RQ,
                                     commands.MESSAGE_ID_RESPONDED_TO: messageID,
                                     commands.COMMAND_DATASET_TYPE: commands.NO_DATASET})

    def _armTimer(self, messageID, pending):
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        if pending.timeout:
            pending.timer = self.factory.clock.callLater(pending.timeout, self._dimseTimedOut, messageID)

    def _dimseTimedOut(self, messageID):
        pending = self._requests.pop(messageID, None)
        if pending is None:
            return
        self.log.warn("{peer}: no response to message {id} within {timeout} s, aborting",
                      peer=self.peerName(), id=messageID, timeout=pending.timeout)
        self.abort(pdu.REASON_NOT_SPECIFIED)  # first: who sees the timeout sees the association gone
        pending.deferred.errback(DIMSETimeout(f"{self.peerName()} did not answer within {pending.timeout} s"))

    def _responseReceived(self, command, dataset):
        messageID = command.get(commands.MESSAGE_ID_RESPONDED_TO)
        pending = self._requests.get(messageID)
        field = command[commands.COMMAND_FIELD]
        if pending is None or field != pending.responseField:
            self.log.warn("{peer}: {command} answers message {id}, {which}; ignored",
                          peer=self.peerName(), id=messageID, command=commands.COMMAND_NAMES.get(field, hex(field)),
                          which="which we did not send" if pending is None else
                          f"a {commands.COMMAND_NAMES.get(pending.responseField & 0x7FFF)}")
            return
        if command.get(commands.STATUS) in PENDING_STATUSES and field in MAY_BE_PENDING:
            self._armTimer(messageID, pending)
            if pending.onPending is not None:
                pending.onPending(command, dataset)
            return
        del self._requests[messageID]
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        if commands.STATUS not in command:  # neither success nor failure: its callers never see a status of None
            name = commands.COMMAND_NAMES.get(field, hex(field))
            self.log.warn("{peer}: {command} answers message {id} without a Status; refused, aborting",
                          peer=self.peerName(), command=name, id=messageID)
            self.abort(pdu.REASON_NOT_SPECIFIED)  # first: who sees the refusal sees the association gone
            pending.deferred.errback(NoStatus(f"{self.peerName()} answered message {messageID} with a {name} "
                                              f"without a Status"))
            return
        pending.deferred.callback((command, dataset))
        self._operationsChanged()

    def _failRequests(self, reason, onlyYielding=False):
        """Fail the requests still waiting (``onlyYielding``: those that
        yield to a release) with ``reason``."""
        failing = {messageID: pending for messageID, pending in self._requests.items()
                   if pending.yieldsToRelease or not onlyYielding}
        for messageID, pending in failing.items():
            del self._requests[messageID]
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            pending.deferred.errback(reason)

    def sendMessage(self, contextId, command, dataset=None):
        """Send a DIMSE message on ``contextId`` if the association is still up.

        ``dataset`` is bytes, or a ``StoredData`` left in its file.  A data
        set over ``STREAMED_DATASET`` bytes is not made into PDUs all at
        once: they are made (a ``StoredData`` read) and written about
        ``WRITE_BATCH`` bytes at a time, as the transport takes them (a
        large object would otherwise hold the reactor and be copied twice in
        memory).  Messages sent meanwhile wait their turn, so none is
        interleaved with another."""
        if not self._maySend():
            closeIfStored(dataset)
            return
        if dataset is not None:
            command = dict(command)
            command[commands.COMMAND_DATASET_TYPE] = commands.DATASET_PRESENT
        message = (contextId, commands.encodeCommand(command), dataset)
        small = dataset is None or (not isinstance(dataset, StoredData) and len(dataset) <= STREAMED_DATASET)
        if self._outbox is None and small:
            self.transport.writeSequence(list(pdu.fragmentMessage(*message, self._sendingLength())))
        elif self._outbox is not None:
            self._outbox.append(message)
        else:
            self._outbox = deque([message])
            defer.ensureDeferred(self._writeOutbox()).addErrback(
                lambda f: self.log.failure("{peer}: sending a message failed", f, peer=self.peerName()))

    def _sendingLength(self):
        """The length of the PDUs we send (``pdu.sendingLength``): at most a
        ``WRITE_BATCH``, so that the transport asks for more (and restarts
        the DIMSE timeouts of our requests) at least every batch."""
        return pdu.sendingLength(self.association.peerMaxPDULength, WRITE_BATCH)

    def _maySend(self):
        return self.state in (ESTABLISHED, AWAITING_RELEASE_RP) and self.transport is not None

    async def _writeOutbox(self):
        """Write the waiting messages in order; dropped (their files closed)
        once the association is gone."""
        try:
            while self._outbox:
                contextId, command, dataset = self._outbox.popleft()
                maxLength = self._sendingLength()
                if isinstance(dataset, StoredData):
                    sent = await self._writeStored(contextId, command, dataset, maxLength)
                else:
                    sent = await self._writeBatches(pdu.fragmentMessage(contextId, command, dataset, maxLength))
                if not sent:
                    return
        finally:
            for _, _, dataset in self._outbox or ():
                closeIfStored(dataset)
            self._outbox = None
            self._operationsChanged()

    async def _writeBatches(self, pdus):
        """Write ``pdus``, a batch each time the transport wants more;
        False once the association is gone."""
        batch, size = [], 0
        for piece in pdus:
            batch.append(piece)
            size += len(piece)
            if size >= WRITE_BATCH:
                if not self._maySend():
                    return False
                self.transport.writeSequence(batch)
                batch, size = [], 0
                await self.whenWritable()
        if batch:
            if not self._maySend():
                return False
            self.transport.writeSequence(batch)
        return True

    async def _writeStored(self, contextId, command, stored, maxLength):
        """A message whose data set is the ``StoredData`` ``stored``, read a
        piece at a time (then closed); a file that cannot be read midway
        aborts the association."""
        try:
            if not await self._writeBatches(pdu.fragmentMessage(contextId, command, None, maxLength)):
                return False
            step = pdu.pieceSize(maxLength, WRITE_BATCH)
            for position in range(0, len(stored), step):
                size = min(step, len(stored) - position)
                try:
                    piece = await stored.read(position, size)
                except (OSError, ValueError) as e:
                    if self._maySend():
                        self.log.error("{peer}: cannot read {path} while sending it, aborting: {error}",
                                       peer=self.peerName(), path=stored.file.name, error=e)
                        self.abort()
                    return False
                if not await self._writeBatches(pdu.fragments(
                        contextId, piece, False, maxLength, final=position + size >= len(stored))):
                    return False
                await self.whenWritable()
            return True
        finally:
            stored.close()

    def acceptedSyntaxes(self, abstract):
        """``{transferSyntax: contextId}`` accepted for ``abstract``."""
        found = {}
        for contextId, (sopClass, syntax) in sorted(self.association.contexts.items()):
            if sopClass == abstract:
                found.setdefault(syntax, contextId)
        return found

    def store(self, dataset, sopClassUID, sopInstanceUID, transferSyntax, moveOriginator=None,
              priority=PRIORITY_MEDIUM):
        """Send a C-STORE of ``dataset`` (bytes or a ``StoredData``, which is
        then the protocol's to close, in ``transferSyntax``, which must have
        been accepted for ``sopClassUID``); fires with the
        response command (see its ``commands.STATUS``).  ``moveOriginator``
        is the ``(AE title, Message ID)`` of the C-MOVE this sub-operation
        serves; ``priority`` that of the C-MOVE or C-GET it serves."""
        contextId = self.acceptedSyntaxes(sopClassUID).get(transferSyntax)
        if contextId is None:
            closeIfStored(dataset)
            return defer.fail(NoContext(f"{self.peerName()} accepted {sopClassUID} not in {transferSyntax}"))
        command = {commands.COMMAND_FIELD: commands.C_STORE_RQ,
                   commands.AFFECTED_SOP_CLASS_UID: sopClassUID,
                   commands.AFFECTED_SOP_INSTANCE_UID: sopInstanceUID,
                   commands.PRIORITY: priority}
        if moveOriginator is not None:
            command[commands.MOVE_ORIGINATOR_AE], command[commands.MOVE_ORIGINATOR_MESSAGE_ID] = moveOriginator
        return self.request(contextId, command, dataset).addCallback(lambda response: response[0])

    def holdOpen(self):
        """Count the association as busy for its idle timeout (TCPIPTimeOut)
        until the function returned is called: a report owed on it, which
        the peer waits for without sending anything.  It does not hold up
        a release the peer asks for (``busy`` leaves it out)."""
        self._holds += 1
        held = [True]

        def release():
            if held:  # once, however often called
                held.clear()
                self._holds -= 1
                if not self._holds:
                    self.resetTimeout()  # idle from now, a whole TCPIPTimeOut

        return release

    @property
    def busy(self):
        """Whether operations or requests of this association are under way
        (requests that yield to a release aside)."""
        return (bool(self._operations) or self._outbox is not None
                or any(not pending.yieldsToRelease for pending in self._requests.values()))

    # -- endings -----------------------------------------------------------

    def abort(self, reason=pdu.REASON_NOT_SPECIFIED, source=pdu.SOURCE_SERVICE_PROVIDER, closeNow=False):
        """Send an A-ABORT and wait (ARTIM) for the peer to close; with
        ``closeNow``, close once it is written instead."""
        if self.transport is None or self.state == AWAITING_CLOSE:
            return
        self.transport.write(pdu.encodeAbort(source, reason))
        if closeNow:
            self._closeNow()
        else:
            self._awaitClose()
        self._failRequests(AssociationLost(f"association with {self.peerName()} aborted"))  # the state changed first

    def _awaitClose(self):
        self.state = AWAITING_CLOSE
        self.setTimeout(None)
        self._startArtim()
        self._ended()

    def _closeNow(self):
        self.state = AWAITING_CLOSE
        self._stopArtim()
        self.setTimeout(None)
        self.transport.unregisterProducer()
        self._artim = closeWithin(self.transport, self.factory.clock)  # cancelled on connectionLost as ARTIM
        self._ended()

    def _startArtim(self):
        """The ARTIM timer (the factory's ``artimTimeout``; None: no limit)."""
        self._stopArtim()
        if self.factory.artimTimeout is not None:
            self._artim = self.factory.clock.callLater(self.factory.artimTimeout, self._artimExpired)

    def _stopArtim(self):
        if self._artim is not None and self._artim.active():
            self._artim.cancel()
        self._artim = None

    def _artimExpired(self):
        self._artim = None
        self.transport.abortConnection()

    def callLater(self, delay, f, *args, **kw):
        """TimeoutMixin's timer source: the factory's clock."""
        return self.factory.clock.callLater(delay, f, *args, **kw)

    def peerName(self):
        peer = getattr(self, "peer", None)
        host = getattr(peer, "host", "?")
        port = getattr(peer, "port", "")
        association = self.association
        remote = ""
        if association is not None:
            remote = association.callingAE if self.isAcceptor else association.calledAE
        return f"{remote}@{hostPort(host, port)}" if remote else hostPort(host, port)


class DicomServerProtocol(DicomProtocol):
    """One association, accepted from a remote requestor."""

    _commandRefused = False  # the factory's onCommand refused a request: the association was aborted

    def __init__(self):
        super().__init__()
        self._unchecked = None  # requests waiting while onCommand checks one (a deque), each with its operation

    def connectionMade(self):
        self.state = AWAITING_ASSOCIATE
        super().connectionMade()
        self._startArtim()

    def connectionLost(self, reason):
        if self.state == AWAITING_ASSOCIATE and self._framer.pendingBytes:
            self._logCutRequest(reason)
        self._dropUnchecked()
        super().connectionLost(reason)
        onEnded = self.factory.onEnded
        if onEnded is not None and self.association is not None:
            onEnded(self.association.callingAE, self.association.calledAE, session=self.session,
                    refused=self._commandRefused)

    def _logCutRequest(self, reason):
        """The connection ended in the middle of the first PDU, which should
        have been an A-ASSOCIATE-RQ (a request cut short by an MTU problem or
        a proxy, a scanner of the port): an info line naming the PDU's type
        when it is another (one without a byte, a port check, is none; one
        ARTIM closed is its warning alone)."""
        framer = self._framer
        total, pduType = framer.pendingLength, framer.pendingType
        self.log.info("{peer}: connection lost before a whole {what} arrived: {reason}; {received}{of} bytes came",
                      peer=self.peerName(), reason=reason.getErrorMessage().rstrip("."),
                      what="A-ASSOCIATE-RQ" if pduType == pdu.A_ASSOCIATE_RQ else f"first PDU (type 0x{pduType:02x})",
                      received=framer.pendingBytes, of=f" of its {total}" if total is not None else "")

    def abort(self, reason=pdu.REASON_NOT_SPECIFIED, source=pdu.SOURCE_SERVICE_PROVIDER, closeNow=False):
        """Send an A-ABORT and wait for the peer to close; a peer that sent
        no A-ASSOCIATE-RQ first (another protocol: dgate on the DICOM port,
        a probe) is not waited for, the connection is closed with it."""
        super().abort(reason, source, closeNow=closeNow or self.state == AWAITING_ASSOCIATE)
        self._dropUnchecked()

    def _associationPDU(self, pduType, body):
        if self.state == AWAITING_ASSOCIATE:
            if pduType != pdu.A_ASSOCIATE_RQ:
                raise pdu.PDUError(f"{pdu.PDU_NAMES[pduType]} before A-ASSOCIATE-RQ", pdu.REASON_UNEXPECTED_PDU)
            self._associateRequested(body)
        elif pduType == pdu.A_RELEASE_RQ and self.state == ESTABLISHED and not self._releaseRequested:
            if self._messages:  # PS3.7 9.3.1: the release comes after whole messages only
                raise pdu.PDUError(f"A-RELEASE-RQ in the middle of a message on presentation context "
                                   f"{', '.join(map(str, sorted(self._messages)))}", pdu.REASON_UNEXPECTED_PDU)
            self._releaseRequested = True
            self._releaseWhenIdle()
        else:
            super()._associationPDU(pduType, body)

    def _associateRequested(self, body):
        self._stopArtim()
        factory = self.factory
        try:
            association = negotiate(body, factory.policy)
        except AssociationRejected as rejection:
            self.log.warn("{peer}: association rejected: {reason}", peer=self.peerName(), reason=rejection)
            self.transport.write(rejection.pdu)
            self._awaitClose()
            return
        self.association = association
        for note in association.notes:
            self.log.warn("{peer}: {note}", peer=self.peerName(), note=note)
        self.state = ESTABLISHED
        self.setTimeout(factory.idleTimeout)
        self.transport.write(association.acPDU)
        security = securityOf(self.transport)
        self.log.info(
            "{peer}: association {calling} -> {called} accepted, {accepted} of the proposed contexts{over}",
            peer=self.peerName(), calling=association.callingAE, called=association.calledAE,
            accepted=len(association.contexts), over=f", over {security}" if security else "")
        if factory.onAccepted is not None:
            factory.onAccepted(association.callingAE, association.calledAE, session=self.session)

    def _serveRequest(self, contextId, command, dataset):
        """With the factory's ``onCommand``, the request is served once it
        has checked it (counted as an operation under way meanwhile)."""
        if self.factory.onCommand is None:
            super()._serveRequest(contextId, command, dataset)
            return
        operation = defer.Deferred()
        self._operations[operation] = command.get(commands.MESSAGE_ID)
        operation.addBoth(self._operationDone, operation)
        request = (operation, contextId, command, dataset)
        if self._unchecked is not None:
            self._unchecked.append(request)
        else:
            self._unchecked = deque([request])
            defer.ensureDeferred(self._checkCommands()).addErrback(self._internalError)

    async def _checkCommands(self):
        """Have onCommand check the waiting requests one at a time, in the
        order they came, each served as it leaves it: a loop, however many
        wait and however soon their checks end.  Those still waiting when
        the association ends are dropped."""
        try:
            while self._unchecked and self.state == ESTABLISHED:
                operation, contextId, command, dataset = self._unchecked.popleft()
                try:
                    checked = await self.factory.onCommand(self.association.callingAE, self.association.calledAE,
                                                           command, session=self.session)
                    self._commandChecked(checked, contextId, command, dataset)
                finally:
                    operation.callback(None)
        finally:
            self._dropUnchecked()
            self._unchecked = None

    def _dropUnchecked(self):
        """The requests waiting for onCommand go unserved (the association
        ended): their data sets are discarded (a spooled one's file goes),
        their operations end."""
        while self._unchecked:
            operation, _, _, dataset = self._unchecked.popleft()
            if dataset is not None:
                dataset.discard()
            operation.callback(None)

    def _commandChecked(self, checked, contextId, command, dataset):
        """Serve ``checked``, the request ``command`` as onCommand left it;
        None: it refused it, the association is aborted."""
        if self.state != ESTABLISHED:  # aborted or lost meanwhile: nothing more is served
            if dataset is not None:
                dataset.discard()
            return
        if checked is None:
            self.log.warn("{peer}: {command} refused by the [lua] command script, aborting", peer=self.peerName(),
                          command=commands.COMMAND_NAMES.get(command[commands.COMMAND_FIELD], "request"))
            if dataset is not None:
                dataset.discard()
            self._commandRefused = True
            self.abort(pdu.REASON_NOT_SPECIFIED, pdu.SOURCE_SERVICE_USER)
            return
        super()._serveRequest(contextId, checked, dataset)

    def requestFailed(self, command):
        onClientError = self.factory.onClientError
        if onClientError is not None:
            onClientError(self.association.callingAE, self.association.calledAE, command, session=self.session)

    def _operationsChanged(self):
        super()._operationsChanged()
        if self._releaseRequested:
            self._releaseWhenIdle()

    def _releaseWhenIdle(self):
        if self.busy or self.state != ESTABLISHED:
            return
        self.log.info("{peer}: association released", peer=self.peerName())
        self.transport.write(pdu.encodeSimplePDU(pdu.A_RELEASE_RP))
        self._awaitClose()
        self._failRequests(AssociationLost(f"{self.peerName()} released the association first"), onlyYielding=True)

    def _artimExpired(self):
        if self.state == AWAITING_ASSOCIATE:
            self.log.warn("{peer}: no {what} within {timeout} s (ARTIM), closing", peer=self.peerName(),
                          what="completed TLS handshake" if self.handshaking else "A-ASSOCIATE-RQ",
                          timeout=self.factory.artimTimeout)
            self.state = AWAITING_CLOSE  # closed here, said so: no line of a connection lost (_logCutRequest)
        super()._artimExpired()


class DicomFactory(Factory):
    """What both roles' protocols read from their factory.

    ``services`` maps DIMSE request command fields to objects with
    ``handle(protocol, contextId, command, dataset) -> Deferred`` (they send
    their responses with ``protocol.sendMessage``); ``sinks`` maps command
    fields to ``datasetSink(protocol, contextId, command)`` providers for
    requests that carry a data set (others are collected in memory).
    """

    noisy = False
    log = Logger()

    def __init__(self, services, sinks, clock, idleTimeout=300, artimTimeout=30, dimseTimeout=None,
                 maxPDULength=262144, counters=None):
        self.services = services
        self.sinks = sinks
        self.clock = clock
        self.idleTimeout = idleTimeout
        self.artimTimeout = artimTimeout
        self.dimseTimeout = dimseTimeout
        self.maxPDULength = maxPDULength
        self.counters = counters if counters is not None else {}
        self.active = set()

    def datasetSink(self, protocol, contextId, command):
        field = command[commands.COMMAND_FIELD]
        provider = self.sinks.get(field)
        if provider is None:
            return MemorySink()
        return provider.datasetSink(protocol, contextId, command)

    def associationOpened(self, protocol):
        self.active.add(protocol)
        self.counters["associationsTotal"] = self.counters.get("associationsTotal", 0) + 1
        self.counters["associationsActive"] = len(self.active)

    def associationClosed(self, protocol):
        self.active.discard(protocol)
        self.counters["associationsActive"] = len(self.active)


# A connection over the limits of associations is answered with an A-ASSOCIATE-RJ as DCMTK does (rejected
# transient, local limit exceeded, PS3.8 9.3.4: a requestor retries later, where a reset looks like a crash).
LIMIT_REJECTION = AssociationRejected(
    "over the association limits", REJECTED_TRANSIENT, SOURCE_PRESENTATION, PRESENTATION_LOCAL_LIMIT).pdu


class DicomServerFactory(LimitedFactory, DicomFactory):
    """Accepts associations for one AE, as ``policy`` says, and no more
    connections at once than ``limits`` (an AssociationLimits; None: any
    number) allow (one over them is answered ``LIMIT_REJECTION``).  Its hooks (each None or a callable) hear of an
    association's events, each given the protocol's ``session`` as well:
    ``onAccepted(callingAE, calledAE)`` of each one
    accepted; ``onCommand(callingAE, calledAE, command)`` of each request,
    served when the Deferred it gives fires with the command to serve, or
    refused (no answer, the association aborted) when it fires with None;
    ``onClientError(callingAE, calledAE, command)`` of a request answered
    as not served; ``onEnded(callingAE, calledAE, refused)`` of the end of
    one accepted, however it ended (``refused`` True when onCommand refused
    a request, which aborted it)."""

    protocol = DicomServerProtocol
    refusal = LIMIT_REJECTION

    def __init__(self, policy, services, sinks, clock, idleTimeout=300, artimTimeout=30, counters=None,
                 dimseTimeout=None, onAccepted=None, onCommand=None, onClientError=None, onEnded=None,
                 limits=None):
        super().__init__(services, sinks, clock, idleTimeout, artimTimeout, dimseTimeout,
                         policy.maxPDULength, counters)
        self.policy = policy
        self.onAccepted = onAccepted
        self.onCommand = onCommand
        self.onClientError = onClientError
        self.onEnded = onEnded
        self.limits = self.limitsOrNone(limits)

    def associationOpened(self, protocol):
        super().associationOpened(protocol)
        self.limits.opened(getattr(protocol.peer, "host", None))

    def associationClosed(self, protocol):
        super().associationClosed(protocol)
        self.limits.closed(getattr(protocol.peer, "host", None))

