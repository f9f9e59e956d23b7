"""The DICOM client (SCU): the requestor side of the upper layer and a
Deferred-based API on top of it.

    association = yield associate(reactor, "pacs.example", 104, "ME", "PACS",
                                  [(STUDY_ROOT_FIND, UNCOMPRESSED)])
    status = yield association.find(STUDY_ROOT_FIND, identifier, onMatch)
    yield association.release()

C-MOVE and C-GET sub-operations, forwarding and the virtual server use it.
Every wait has a bound: the connection (``connectTimeout``), the
A-ASSOCIATE-AC (``artimTimeout``), each response (``dimseTimeout``) and
silence on an idle association (``idleTimeout``).
"""

from pydicom.dataset import Dataset
from twisted.internet import defer, task
from twisted.internet.endpoints import wrapClientTLS

from pacscore.dicom import commands, pdu
from pacscore.dicom.datasets import decodePeerDataset, encodeDataset
from pacscore.dicom.negotiation import PLAIN_TITLES, accepted, refusal, requestPDU
from pacscore.dicom.protocol import (
    AWAITING_ASSOCIATE_AC, AWAITING_CLOSE, AWAITING_RELEASE_RP, ESTABLISHED, PRIORITY_MEDIUM, AssociationLost,
    DicomFactory, DicomProtocol, NoContext, NoStatus)
from pacscore.dicom.sopclasses import VERIFICATION
from pacscore.hostport import hostEndpoint, hostPort


class DicomClientProtocol(DicomProtocol):
    """One association we requested; its methods are the client API."""

    isAcceptor = False

    def connectionMade(self):
        self.state = AWAITING_ASSOCIATE_AC
        super().connectionMade()
        factory = self.factory
        self.transport.write(requestPDU(factory.callingAE, factory.calledAE, factory.contexts,
                                        factory.maxPDULength, factory.roles, factory.titleStyle))
        self._startArtim()
        self._released = None

    def connectionLost(self, reason):
        answered = self.state != AWAITING_ASSOCIATE_AC
        super().connectionLost(reason)
        if self.association is None:  # never accepted (the factory reports only the first outcome)
            self.factory.associationFailed(AssociationLost(
                f"the association with {self.factory.calledAE} ended before it was accepted" if answered else
                f"TLS with {self.factory.calledAE} failed: {self.tlsFailure}" if self.tlsFailure else
                f"{self.factory.calledAE} closed the connection during the TLS handshake" if self.handshaking else
                f"{self.factory.calledAE} closed the connection before answering the A-ASSOCIATE-RQ"))
        if self._released is not None:
            released, self._released = self._released, None
            released.callback(None)

    def _associationPDU(self, pduType, body):
        if self.state == AWAITING_ASSOCIATE_AC and pduType == pdu.A_ASSOCIATE_AC:
            factory = self.factory
            self._stopArtim()
            self.association = accepted(body, factory.callingAE, factory.calledAE, factory.contexts)
            self.state = ESTABLISHED
            self.setTimeout(factory.idleTimeout)
            factory.associationAccepted(self)
        elif self.state == AWAITING_ASSOCIATE_AC and pduType == pdu.A_ASSOCIATE_RJ:
            refused = refusal(body)
            self.log.warn("{peer}: {reason}", peer=self.peerName(), reason=refused)
            self._closeNow()
            self.factory.associationFailed(refused)
        elif pduType == pdu.A_RELEASE_RP and self.state == AWAITING_RELEASE_RP:
            self._closeNow()
        elif pduType == pdu.A_RELEASE_RQ and self.state in (ESTABLISHED, AWAITING_RELEASE_RP):
            self.transport.write(pdu.encodeSimplePDU(pdu.A_RELEASE_RP))
            self._closeNow()
        else:
            super()._associationPDU(pduType, body)

    def _artimExpired(self):
        if self.state == AWAITING_RELEASE_RP:
            self.giveUpRelease(f"no A-RELEASE-RP within {self.factory.artimTimeout} s ({self.factory.artimSetting})")
            return
        if self.state == AWAITING_ASSOCIATE_AC:
            what = ("did not complete the TLS handshake" if self.handshaking
                    else "did not answer the A-ASSOCIATE-RQ")
            self.log.warn("{peer}: {what} within {timeout} s", peer=self.peerName(), what=what,
                          timeout=self.factory.artimTimeout)
            self.factory.associationFailed(AssociationLost(
                f"{self.factory.calledAE} {what} within {self.factory.artimTimeout} s"))
        super()._artimExpired()

    # -- presentation contexts ----------------------------------------------

    def contextFor(self, abstract):
        """The first accepted context for ``abstract`` and its transfer syntax."""
        for contextId, (sopClass, syntax) in sorted(self.association.contexts.items()):
            if sopClass == abstract:
                return contextId, syntax
        raise NoContext(f"{self.association.calledAE} accepted no presentation context for {abstract}")

    # -- the DIMSE services -------------------------------------------------

    def echo(self):
        """C-ECHO; fires with the status."""
        contextId, _ = self.contextFor(VERIFICATION)
        d = self.request(contextId, {commands.COMMAND_FIELD: commands.C_ECHO_RQ,
                                     commands.AFFECTED_SOP_CLASS_UID: VERIFICATION,
                                     commands.COMMAND_DATASET_TYPE: commands.NO_DATASET})
        return d.addCallback(_status)

    def find(self, sopClassUID, identifier, onMatch=None, timeout=None):
        """C-FIND: ``identifier`` is a pydicom Dataset (or encoded bytes);
        each match goes to ``onMatch(bytes, transferSyntax)`` as it arrives;
        ``timeout``, the seconds the peer may take for each response (None:
        the association's DIMSE timeout).  Fires with the final status."""
        d = self._query(commands.C_FIND_RQ, sopClassUID, identifier,
                        onPending=None if onMatch is None else self._matchCallback(sopClassUID, onMatch),
                        timeout=timeout)
        return d.addCallback(_status)

    def findMatches(self, sopClassUID, identifier, inThread, adjust=None, most=None, timeout=None):
        """C-FIND collecting its matches: fires with ``(status, [Dataset])``,
        the matches decoded (and passed through ``adjust(dataset)``) by
        ``inThread(function, *args)`` (a thread pool's Deferred-returning
        runner) once the final response has come; fails with
        IdentifierError when one cannot be decoded.  With ``most``, the
        C-FIND is cancelled (C-CANCEL) once that many came, and any more
        the archive sends are left out; ``timeout`` as for ``find``."""
        received = []

        def collect(data, syntax):
            if most is None or len(received) < most:
                received.append((data, syntax))
                if len(received) == most:
                    self.cancelLast(sopClassUID)

        def decoded(status):
            return inThread(_decodeMatches, received, adjust).addCallback(lambda matches: (status, matches))
        return self.find(sopClassUID, identifier, collect, timeout).addCallback(decoded)

    def _matchCallback(self, sopClassUID, onMatch):
        _, syntax = self.contextFor(sopClassUID)

        def pending(command, dataset):
            if dataset is not None:
                onMatch(dataset, syntax)
        return pending

    def move(self, sopClassUID, identifier, destination, onPending=None, messageID=None):
        """C-MOVE to ``destination`` (as Message ID ``messageID``, if given);
        ``onPending(command)`` sees the progress counters.  Fires with
        ``(final command, data set bytes or None)`` (the data set lists
        failed SOP instances)."""
        return self._query(commands.C_MOVE_RQ, sopClassUID, identifier, _progress(onPending),
                           {commands.MOVE_DESTINATION: destination}, messageID)

    def get(self, sopClassUID, identifier, onPending=None):
        """C-GET; the objects arrive as C-STORE requests handled by the
        factory's C-STORE service.  Fires like ``move``."""
        return self._query(commands.C_GET_RQ, sopClassUID, identifier, _progress(onPending))

    def _query(self, field, sopClassUID, identifier, onPending, extra=None, messageID=None, timeout=None):
        try:
            contextId, syntax = self.contextFor(sopClassUID)
        except NoContext:
            return defer.fail()
        if isinstance(identifier, Dataset):
            identifier = encodeDataset(identifier, syntax)
        self.lastMessageID = self.nextMessageID() if messageID is None else messageID
        command = {commands.COMMAND_FIELD: field, commands.AFFECTED_SOP_CLASS_UID: sopClassUID,
                   commands.PRIORITY: PRIORITY_MEDIUM, commands.MESSAGE_ID: self.lastMessageID,
                   **(extra or {})}
        return self.request(contextId, command, identifier, onPending, timeout=timeout)

    def cancelLast(self, sopClassUID):
        """C-CANCEL the last C-FIND/C-MOVE/C-GET sent (``lastMessageID``)."""
        contextId, _ = self.contextFor(sopClassUID)
        self.cancel(contextId, self.lastMessageID)

    # -- ending ---------------------------------------------------------------

    def release(self):
        """A-RELEASE; fires once the association is closed."""
        if self.state != ESTABLISHED:
            return defer.succeed(None)
        self._released = defer.Deferred()
        self.state = AWAITING_RELEASE_RP
        self.setTimeout(None)
        self.transport.write(pdu.encodeSimplePDU(pdu.A_RELEASE_RQ))
        self._startArtim()
        return self._released

    def giveUpRelease(self, why):
        """The release under way given up: see ``abandon``."""
        if self.state == AWAITING_RELEASE_RP:
            self.abandon(why)

    def abandon(self, why):
        """The association given up, whatever it is waiting for (PS3.8
        AA-1): a warning saying ``why``, an A-ABORT, and the connection
        closed once that is written (cut after ``CLOSE_BOUND`` s), not
        waited for the peer to close (with ARTIMTimeOut = 0, for ever)."""
        if self.transport is None or self.state == AWAITING_CLOSE:
            return
        self.log.warn("{peer}: {why}, aborting", peer=self.peerName(), why=why)
        self.abortAssociation(closeNow=True)

    def abortAssociation(self, closeNow=False):
        """A-ABORT as service user, and wait (ARTIM) for the peer to close;
        with ``closeNow``, close once it is written instead."""
        self.abort(pdu.REASON_NOT_SPECIFIED, pdu.SOURCE_SERVICE_USER, closeNow=closeNow)


def _progress(onPending):
    """A pending-response callback that shows ``onPending`` only the command."""
    if onPending is None:
        return None
    return lambda command, dataset: onPending(command)


def _status(response):
    command, _ = response
    return command.get(commands.STATUS)


class DicomClientFactory(DicomFactory):
    """Builds the one protocol of an association we request."""

    protocol = DicomClientProtocol

    def __init__(self, callingAE, calledAE, contexts, roles, deferred, titleStyle=PLAIN_TITLES, artimSetting="ARTIM",
                 **settings):
        super().__init__(**settings)
        self.artimSetting = artimSetting  # what artimTimeout is, for the log: ARTIMTimeOut, the connect timeout
        self.callingAE = callingAE
        self.calledAE = calledAE
        self.titleStyle = titleStyle
        self.contexts = contexts
        self.roles = roles
        self.deferred = deferred

    def associationAccepted(self, protocol):
        if self.deferred is not None:
            d, self.deferred = self.deferred, None
            d.callback(protocol)

    def associationFailed(self, reason):
        if self.deferred is not None:
            d, self.deferred = self.deferred, None
            d.errback(reason)


def numberContexts(contexts):
    """``{contextId: (abstract, [syntaxes])}`` with odd ids for a list of
    ``(abstract, syntaxes)``; at most 128 contexts (PS3.8 9.3.2.2)."""
    if len(contexts) > 128:
        raise ValueError(f"{len(contexts)} presentation contexts proposed; at most 128 fit")
    return {2 * n + 1: (abstract, list(syntaxes)) for n, (abstract, syntaxes) in enumerate(contexts)}


def _decodeMatches(received, adjust):
    matches = [decodePeerDataset(data, syntax) for data, syntax in received]
    return matches if adjust is None else [adjust(match) for match in matches]


def associate(reactor, host, port, callingAE, calledAE, contexts, roles=None, services=None,
              sinks=None, connectTimeout=30, artimTimeout=30, dimseTimeout=None, idleTimeout=None,
              maxPDULength=262144, endpoint=None, titleStyle=PLAIN_TITLES, artimSetting="ARTIM"):
    """Open an association; fires with the ``DicomClientProtocol`` once it is
    accepted, or fails with ``AssociationRefused``/``AssociationLost``/a
    connection error.  Cancelling it stops the attempt.

    ``contexts`` lists ``(abstract syntax, [transfer syntaxes])``; ``roles``
    ``{sopClass: (scu, scp)}`` for role selection (C-GET asks for the SCP
    role on storage classes); ``services``/``sinks`` answer the peer's
    requests (C-STORE sub-operations of a C-GET), as for a server;
    ``titleStyle`` how the A-ASSOCIATE-RQ writes the AE titles
    (``negotiation.TitleStyle``: PadAEWithZeros, SendUpperCaseAE);
    ``artimSetting`` names what ``artimTimeout`` is in the log.
    """
    connected = []  # the protocol, once the connection is made

    def stop(deferred):
        """Cancelled: stop connecting, or A-ABORT the association being
        negotiated and close the connection (a peer that never answers the
        A-ASSOCIATE-RQ would not close it either)."""
        factory.deferred = None
        connecting.cancel()
        for protocol in connected:
            protocol.abortAssociation(closeNow=True)

    deferred = defer.Deferred(stop)
    factory = DicomClientFactory(
        callingAE, calledAE, numberContexts(contexts), roles, deferred, titleStyle, artimSetting,
        services=services or {}, sinks=sinks or {}, clock=reactor, idleTimeout=idleTimeout,
        artimTimeout=artimTimeout, dimseTimeout=dimseTimeout, maxPDULength=maxPDULength)
    if endpoint is None:
        endpoint = hostEndpoint(reactor, host, int(port), connectTimeout)
    connecting = endpoint.connect(factory)
    connecting.addCallbacks(connected.append, factory.associationFailed)
    return deferred


def nodeEndpoint(reactor, node, connectTimeout=30):
    """The client endpoint of an acrnema.map ``node``: TCP, inside TLS
    when ``[DICOMTLSNodes]`` names it (``node.tls``)."""
    endpoint = hostEndpoint(reactor, node.host, int(node.port), connectTimeout)
    return endpoint if node.tls is None else wrapClientTLS(node.tls.creatorFor(node.host), endpoint)


_CONNECT_TIMEOUT = object()  # associateNode's artimTimeout when none is given: the connect timeout


class NodeUnreachable(Exception):
    """No association with an acrnema.map node; the message names it and
    its address and says why, ``reason`` only why (a C-MOVE's
    ErrorComment: 64 characters)."""

    def __init__(self, node, reason):
        super().__init__(f"cannot associate with {node.ae} at {hostPort(node.host, node.port)}: {reason}")
        self.reason = reason


async def associateNode(reactor, node, callingAE, contexts, connectTimeout=30, dimseTimeout=300, endpointFor=None,
                        titleStyle=PLAIN_TITLES, roles=None, artimTimeout=_CONNECT_TIMEOUT,
                        artimSetting="the connect timeout"):
    """``associate`` with the AE, host and port of an acrnema.map ``node``
    (``endpointFor(host, port)``: a client endpoint instead of TCP;
    ``roles`` as for ``associate``; the A-ASSOCIATE-AC waited for
    ``artimTimeout`` seconds, named ``artimSetting``, None: no limit, by
    default the connect timeout); any failure is a ``NodeUnreachable`` naming the
    node and its address.  Cancelled, it fails with ``CancelledError``, as the
    cancel is no failure of the node."""
    endpoint = nodeEndpoint(reactor, node, connectTimeout) if endpointFor is None else endpointFor(node.host,
                                                                                                   int(node.port))
    try:
        return await associate(reactor, node.host, int(node.port), callingAE, node.ae, contexts, roles=roles,
                               connectTimeout=connectTimeout,
                               artimTimeout=connectTimeout if artimTimeout is _CONNECT_TIMEOUT else artimTimeout,
                               artimSetting=artimSetting,
                               dimseTimeout=dimseTimeout, endpoint=endpoint, titleStyle=titleStyle)
    except defer.CancelledError:
        raise
    except Exception as e:
        raise NodeUnreachable(node, str(e) or repr(e)) from e


async def answerTo(protocol, contextId, command, dataset=None, **options):
    """The final response (its command) to the request ``command`` sent on
    ``protocol`` (``request``, with ``options``), None when it carried no
    Status (``NoStatus``): either way the peer answered, taking or refusing
    the request (``taken``), and a refusal is not worth sending again.  Fails as
    ``request`` does when no answer comes (the association lost, a
    ``DIMSETimeout``): that is worth another attempt (``sendToNode``)."""
    try:
        response, _ = await protocol.request(contextId, command, dataset, **options)
    except NoStatus:
        return None
    return response


def taken(response):
    """Whether the peer took the request ``response`` (``answerTo``'s)
    answers: its Status Success or a Warning (``commands.isWarning``); a
    Failure status, or none (None), refused it."""
    if response is None:
        return False
    status = response.get(commands.STATUS)
    return status == 0x0000 or commands.isWarning(status)


async def sendToNode(reactor, node, callingAE, contexts, send, log, what, attempts, retryDelay, connectTimeout=30,
                     dimseTimeout=300, titleStyle=PLAIN_TITLES, roles=None):
    """``await send(association)`` on a new association to an acrnema.map
    ``node`` (released after), tried ``attempts`` times ``retryDelay``
    seconds apart while associating or ``send`` fails, each failure logged
    as a warning ("``what`` to AE failed (attempt 1 of 3): why"); whether
    an attempt succeeded.  Cancelled, it tries no more (``CancelledError``)."""
    for attempt in range(1, attempts + 1):
        try:
            association = await associateNode(reactor, node, callingAE, contexts, connectTimeout, dimseTimeout,
                                              titleStyle=titleStyle, roles=roles)
            try:
                await send(association)
            finally:
                await association.release()
            return True
        except defer.CancelledError:  # no failure of the node
            raise
        except Exception as e:  # NodeUnreachable, a refusal send raised, a lost association
            log.warn("{what} to {ae} failed (attempt {attempt} of {attempts}): {error}", what=what, ae=node.ae,
                     attempt=attempt, attempts=attempts, error=e)
        if attempt < attempts:
            await task.deferLater(reactor, retryDelay, lambda: None)
    return False
