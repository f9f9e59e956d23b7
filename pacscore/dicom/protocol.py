"""The DICOM upper layer (PS3.8) as a Twisted protocol, acceptor side.

States follow PS3.8 table 9-10 in the subset an acceptor meets: awaiting
the A-ASSOCIATE-RQ with the ARTIM timer running (Sta2), established (Sta6),
and awaiting the transport close after a release, reject or abort (Sta13).
P-DATA PDVs are reassembled into DIMSE messages and handed to the service
registered for their command; bad input of any kind ends in an A-ABORT and
a log line, never an exception escaping ``dataReceived``.
"""

from twisted.internet import defer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from pacscore.dicom import commands, pdu
from pacscore.dicom.negotiation import AssociationRejected, negotiate
from pacscore.dicom.sinks import MemorySink

AWAITING_ASSOCIATE = "Sta2"
ESTABLISHED = "Sta6"
AWAITING_CLOSE = "Sta13"

ASSOCIATION_PDU_LIMIT = 1 << 20

STATUS_UNRECOGNIZED_OPERATION = 0x0211
STATUS_PROCESSING_FAILURE = 0x0110


class _Message:
    """A DIMSE message being reassembled on one presentation context."""

    __slots__ = ("command", "commandBytes", "sink")

    def __init__(self):
        self.commandBytes = bytearray()
        self.command = None
        self.sink = None


class DicomServerProtocol(Protocol, TimeoutMixin):
    """One association, accepted from a remote requestor."""

    log = Logger()

    def __init__(self):
        self.state = AWAITING_ASSOCIATE
        self.association = None
        self._messages = {}
        self._operations = set()
        self._releaseRequested = False
        self._artim = None

    # -- transport events --------------------------------------------------

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.peer = self.transport.getPeer()
        self._framer = pdu.PDUFramer(self._maximumLength)
        self.factory.associationOpened(self)
        self._startArtim()

    def connectionLost(self, reason):
        self._stopArtim()
        self.setTimeout(None)
        for message in self._messages.values():
            if message.sink is not None:
                message.sink.discard()
        self._messages.clear()
        self.state = AWAITING_CLOSE
        self.factory.associationClosed(self)

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
        except pdu.PDUError as e:
            self.log.warn("{peer}: malformed PDU, aborting: {error}", peer=self._peerName(), error=e)
            self.abort(e.reason)
        except Exception:
            self.log.failure("{peer}: internal error while handling a PDU, aborting", peer=self._peerName())
            self.abort(pdu.REASON_NOT_SPECIFIED)

    def timeoutConnection(self):
        self.log.warn("{peer}: no data for {timeout} s (TCPIPTimeOut), aborting",
                      peer=self._peerName(), timeout=self.timeOut)
        self.abort(pdu.REASON_NOT_SPECIFIED)

    # -- PDUs --------------------------------------------------------------

    def _maximumLength(self, pduType):
        if pduType == pdu.P_DATA_TF and self.state == ESTABLISHED:
            return self.factory.policy.maxPDULength + 6
        return ASSOCIATION_PDU_LIMIT

    def _pduReceived(self, pduType, body):
        if pduType == pdu.A_ABORT:
            self.log.info("{peer}: association aborted by peer", peer=self._peerName())
            self._closeNow()
        elif self.state == AWAITING_ASSOCIATE:
            if pduType != pdu.A_ASSOCIATE_RQ:
                raise pdu.PDUError(f"{pdu.PDU_NAMES[pduType]} before A-ASSOCIATE-RQ", pdu.REASON_UNEXPECTED_PDU)
            self._associateRequested(body)
        elif pduType == pdu.P_DATA_TF:
            self._pdataReceived(body)
        elif pduType == pdu.A_RELEASE_RQ:
            self._releaseRequested = True
            self._releaseWhenIdle()
        else:
            raise pdu.PDUError(f"unexpected {pdu.PDU_NAMES[pduType]} on an established association",
                               pdu.REASON_UNEXPECTED_PDU)

    def _pduWhileClosing(self, pduType):
        if pduType == pdu.A_ABORT:
            self._closeNow()

    def _associateRequested(self, body):
        self._stopArtim()
        factory = self.factory
        try:
            association = negotiate(body, factory.policy)
        except AssociationRejected as rejection:
            self.log.warn("{peer}: association rejected: {reason}", peer=self._peerName(), reason=rejection)
            self.transport.write(rejection.pdu)
            self._awaitClose()
            return
        self.association = association
        self.state = ESTABLISHED
        self.setTimeout(factory.idleTimeout)
        self.transport.write(association.acPDU)
        self.log.info(
            "{peer}: association {calling} -> {called} accepted, {accepted} of the proposed contexts",
            peer=self._peerName(), calling=association.callingAE, called=association.calledAE,
            accepted=len(association.contexts))

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
        if command.get(commands.COMMAND_DATASET_TYPE, commands.NO_DATASET) == commands.NO_DATASET:
            del self._messages[contextId]
            self._dispatch(contextId, command, None)
        else:
            message.sink = self.factory.datasetSink(self, contextId, command)

    # -- DIMSE -------------------------------------------------------------

    def _dispatch(self, contextId, command, dataset):
        field = command[commands.COMMAND_FIELD]
        service = self.factory.services.get(field)
        if service is None:
            self.log.warn("{peer}: {command} is not supported here",
                          peer=self._peerName(), command=commands.COMMAND_NAMES.get(field, hex(field)))
            if dataset is not None:
                dataset.discard()
            if not field & 0x8000:
                self.sendMessage(contextId, commands.response(
                    command, field | 0x8000, STATUS_UNRECOGNIZED_OPERATION))
            return
        operation = defer.maybeDeferred(service.handle, self, contextId, command, dataset)
        self._operations.add(operation)
        operation.addErrback(self._operationFailed, contextId, command)
        operation.addBoth(self._operationDone, operation)

    def _operationFailed(self, failure, contextId, command):
        self.log.failure("{peer}: {command} failed", failure,
                         peer=self._peerName(),
                         command=commands.COMMAND_NAMES.get(command[commands.COMMAND_FIELD]))
        if self.state == ESTABLISHED:
            field = command[commands.COMMAND_FIELD]
            self.sendMessage(contextId, commands.response(command, field | 0x8000, STATUS_PROCESSING_FAILURE))

    def _operationDone(self, _, operation):
        self._operations.discard(operation)
        if self._releaseRequested:
            self._releaseWhenIdle()

    def sendMessage(self, contextId, command, dataset=None):
        """Send a DIMSE message on ``contextId`` if the association is still up."""
        if self.state != ESTABLISHED or self.transport is None:
            return
        if dataset is not None:
            command = dict(command)
            command[commands.COMMAND_DATASET_TYPE] = commands.DATASET_PRESENT
        self.transport.writeSequence(pdu.fragmentMessage(
            contextId, commands.encodeCommand(command), dataset, self.association.peerMaxPDULength))

    def _releaseWhenIdle(self):
        if self._operations or self.state != ESTABLISHED:
            return
        self.log.info("{peer}: association released", peer=self._peerName())
        self.transport.write(pdu.encodeSimplePDU(pdu.A_RELEASE_RP))
        self._awaitClose()

    # -- endings -----------------------------------------------------------

    def abort(self, reason=pdu.REASON_NOT_SPECIFIED):
        """Send an A-ABORT (service-provider) and wait for the peer to close."""
        if self.transport is None or self.state == AWAITING_CLOSE:
            return
        self.transport.write(pdu.encodeAbort(pdu.SOURCE_SERVICE_PROVIDER, reason))
        self._awaitClose()

    def _awaitClose(self):
        self.state = AWAITING_CLOSE
        self.setTimeout(None)
        self._startArtim()

    def _closeNow(self):
        self.state = AWAITING_CLOSE
        self._stopArtim()
        self.setTimeout(None)
        self.transport.loseConnection()

    def _startArtim(self):
        self._stopArtim()
        self._artim = self.factory.clock.callLater(self.factory.artimTimeout, self._artimExpired)

    def _stopArtim(self):
        if self._artim is not None and self._artim.active():
            self._artim.cancel()
        self._artim = None

    def _artimExpired(self):
        self._artim = None
        if self.state == AWAITING_ASSOCIATE:
            self.log.warn("{peer}: no A-ASSOCIATE-RQ within {timeout} s (ARTIM), closing",
                          peer=self._peerName(), timeout=self.factory.artimTimeout)
        self.transport.abortConnection()

    def callLater(self, delay, f, *args, **kw):
        """TimeoutMixin's timer source: the factory's clock."""
        return self.factory.clock.callLater(delay, f, *args, **kw)

    def _peerName(self):
        peer = getattr(self, "peer", None)
        host = getattr(peer, "host", "?")
        port = getattr(peer, "port", "")
        calling = self.association.callingAE if self.association else ""
        return f"{calling}@{host}:{port}" if calling else f"{host}:{port}"


class DicomServerFactory(ServerFactory):
    """Accepts associations for one AE.

    ``services`` maps DIMSE request command fields to objects with
    ``handle(protocol, contextId, command, dataset) -> Deferred`` (they send
    their responses with ``protocol.sendMessage``); ``sinks`` maps command
    fields to ``datasetSink(protocol, contextId, command)`` providers for
    requests that carry a data set.
    """

    protocol = DicomServerProtocol
    noisy = False
    log = Logger()

    def __init__(self, policy, services, sinks, clock, idleTimeout=300, artimTimeout=30, counters=None):
        self.policy = policy
        self.services = services
        self.sinks = sinks
        self.clock = clock
        self.idleTimeout = idleTimeout
        self.artimTimeout = artimTimeout
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

    def associationClosed(self, protocol):
        self.active.discard(protocol)
