"""Delivering queued actions to other AEs: ``forward`` (C-STOREs of our
objects) and ``get`` (a C-MOVE from a remote AE to us).  A destination
named in dicom.ini's ``[DICOMwebServers]`` gets forwards with STOW-RS
instead (``pacscore.export.stow``), and gets are WADO-RS fetches from it
(``pacscore.export.fetch``, when the Forwarder has a ``fetcher``).

The destination's host, port and compression come from acrnema.map.
Objects go through the same choice of transfer syntax and conversion as
C-MOVE sub-operations (``pacscore.dicom.retrieve.contextsFor``/``choices``,
``pacscore.codecs``): the ``compressed as XX`` code of the action, else
the destination's compression column; a peer that refuses the compressed
syntax gets the object in a simpler one, uncompressed at last (manual:
"images will automatically be sent with simpler compression or
uncompressed"), and an image the encoder cannot take goes uncompressed.

Associations (manual appendix 3): ``ForwardAssociationLevel`` GLOBAL,
SOPCLASS, PATIENT, STUDY, SERIES or IMAGE (default, a new association per
image).  An association stays open while the UID at that level does not
change and the object's kind (SOP class, stored syntax) was proposed on it;
a new kind closes it and the next one proposes every kind sent before.
It is closed after ``ForwardAssociationCloseDelay`` idle seconds (default
5); the kinds sent are forgotten after ``ForwardAssociationRefreshDelay``
idle seconds (default 3600).  A patient, study or series action is sent
on one association whatever the level (the more general of the two
counts).  ``ForwardAssociationRelease = 0`` aborts instead of releasing.
The destination's address is looked up for each object: when ``put_amap``
or ``read_amap`` moved it, the association kept open is closed after the
C-STORE under way and the next object, of that action too, goes on one to
the new address (in the compression its action started with).

The export queue's Forwarder registers the C-MOVEs of its gets in
``ownRetrieves`` (``pacscore.dicom.ownretrieves``), so what they bring in
is stored without the import and export converters (a WADO-RS fetch: the
same, told to the fetcher); the control commands' moves are the user's.

One action per destination at a time (the runner sees to that); every
failure raises ``ForwardError`` with the reason, but for an object that
cannot be sent whatever is tried (``LeftOut``: the destination takes its
SOP class in no syntax it can go in, it cannot be converted to one, its
stored file is damaged before its Pixel Data, the spool file of the object as an export line changed it is gone) a
retry would change nothing: it is left out, logged, the rest goes, and the
forward then raises ``Undelivered`` saying what was sent and what not; so
is one whose C-STORE is answered with a status the destination will answer
every time (``RefusedForGood``: A9xx, Cxxx).  A C-STORE answered with
another failure status (``Refused``: A7xx, out of resources), or with
none (``protocol.NoStatus``, its association aborted), fails the forward
(to be retried), its association released; with ``carryOn`` (a user's command)
it is counted in ``Undelivered`` as a failed object and the rest goes.  One
answered with a Warning status (``commands.isWarning``: Bxxx ...) was stored
and counts as sent, with a warning line naming the status.  An object
deleted after the forward located it (``reader.Deleted``: the index no
longer holds it, or a delete under way removes it) is skipped, logged, as
one deleted before; one that is indexed but cannot be read here (an I/O
error, its file gone while the index names it) fails the forward with
``Unreadable`` once the others went, to be retried: not the destination's
failure; above IMAGE level, the retry covers only the objects not read
(``Unreadable.retryOnly``, see ``ExportQueue.retryOnly``).
"""

from typing import NamedTuple

from pydicom.dataset import Dataset
from twisted.internet import defer
from twisted.logger import Logger

from pacscore.config.acrnema import Node
from pacscore.codecs.jpeglossy import DEFAULT_QUALITY
from pacscore.codecs.syntaxes import UNCOMPRESSED, qualityOf
from pacscore.codecs.transcode import TranscodeError
from pacscore.dicom import commands
from pacscore.dicom.client import NodeUnreachable, associateNode
from pacscore.dicom.negotiation import PLAIN_TITLES, TitleStyle
from pacscore.dicom.datasets import IdentifierError
from pacscore.dicom.models import PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE
from pacscore.dicom.protocol import ESTABLISHED, NoStatus
from pacscore.dicom.retrieve import choices, contextsFor, convertToFirst
from pacscore.dicom.storeddata import closeIfStored, readForPeer
from pacscore.export.queue import LEVELS, Target
from pacscore.export.selection import LEVEL_KEYS, indexKeys, remoteRequest
from pacscore.export.spool import isSpooled
from pacscore.export.stow import StowError, StowSender, dicomWebServers
from pacscore.hostport import bareIPv6Problem, hostPort, splitHostPort
from pacscore.storage.attributes import DatasetError
from pacscore.storage.reader import Deleted, Missing

ASSOCIATION_LEVELS = ("GLOBAL", "SOPCLASS") + LEVELS


def forwardAssociationLevel(value):
    """``value``, a ForwardAssociationLevel, in upper case (empty: IMAGE);
    ValueError for one that is not of ``ASSOCIATION_LEVELS``."""
    level = value.strip().upper() or "IMAGE"
    if level not in ASSOCIATION_LEVELS:
        raise ValueError(f"ForwardAssociationLevel must be one of {', '.join(ASSOCIATION_LEVELS)}, not {level!r}")
    return level
SUCCESS = 0x0000


class ForwardError(Exception):
    """An action could not be delivered; the message says why."""


class LeftOut(ForwardError):
    """One object of an action cannot be sent and trying again changes
    nothing (Conquest 1.4.11: "unaccepted images were retried forever"):
    it is left out, logged, and the rest of the action goes."""


class NotAccepted(LeftOut):
    """The destination takes an object's SOP class in no syntax it can be
    sent in."""


class NotConvertible(LeftOut):
    """An object cannot be converted to any syntax the destination took for
    it (pixel data the codecs here cannot decode, a data set damaged before
    them, a compression line that cannot read it): a property of the
    object, not of the destination."""


class ChangedCopyGone(LeftOut):
    """The spool file of an object as an export line changed it
    (``pacscore.export.spool``) is gone: the stored object, which may be
    identifiable where the line anonymised it, is never sent in its place."""

    def __init__(self, path):
        super().__init__(f"{path}, the object as the export line changed it, is gone: the stored object is not "
                         f"sent in its place")


class Refused(ForwardError):
    """The destination answered the C-STORE of an object with a failure
    status a retry may change (A7xx, Refused: Out of Resources; any but
    ``RefusedForGood``'s)."""


class RefusedForGood(LeftOut):
    """The destination answered the C-STORE of an object with a status it
    will answer every time (PS3.4 B.2.3: A9xx, Error: Data Set does not
    match SOP Class; Cxxx, Error: Cannot understand), unlike A7xx, Refused:
    Out of Resources: a retry would change nothing."""


class Unreadable(ForwardError):
    """An object of an action is stored here but could not be read (an
    I/O error, permissions, its file gone while the index still names it
    and no delete is removing it): the action is tried again later, but
    the destination is not at fault (the runner does not hold it off).
    ``devices``: the MAG devices of the objects that could not be read;
    ``uids``: their SOP Instance UIDs; ``retryOnly``: when an action above
    IMAGE level sent its other objects, the ``Target`` of each object not
    read, the only ones to retry (the runner queues an IMAGE forward of
    each instead of retrying the action whole)."""

    def __init__(self, message, devices=(), uids=(), retryOnly=()):
        super().__init__(message)
        self.devices = frozenset(device for device in devices if device)
        self.uids = tuple(uids)
        self.retryOnly = tuple(retryOnly)


class Undelivered(ForwardError):
    """A forward sent ``sent`` objects, but left out (``LeftOut``) or had
    refused (``Refused``, with ``carryOn``) the ones of ``errors``."""

    def __init__(self, destination, sent, leftOut, refused):
        self.sent = sent
        self.errors = refused + leftOut
        counts = [f"{len(errors)} {what}, e.g. {errors[0]}"
                  for errors, what in ((refused, "failed"), (leftOut, "left out")) if errors]
        super().__init__(", ".join([f"{sent} object(s) sent to {destination}"] + counts))


class Interrupted(ForwardError):
    """A forward stopped because the service stops (``Forwarder.interrupt``):
    not a failure, the action stays queued."""


class _Kind(NamedTuple):
    """What a presentation context is proposed for."""

    sopClassUID: str
    transferSyntax: str


class _Link:
    """The association kept open to one destination, and what it knows."""

    def __init__(self):
        self.protocol = None
        self.key = None
        self.known = {}            # _Kind -> None: every kind sent (ordered)
        self.proposed = frozenset()
        self.compression = None    # the compression code the contexts were proposed for
        self.address = None        # the node's (AE, host, port, TLS) it was opened to (_address)
        self.closeTimer = None
        self.lastUsed = None


class Forwarder:
    """See the module docstring.  ``query`` is the archive's
    ``IndexQuery``, ``reader`` its ``ObjectReader``, ``workers`` a
    ``WorkerPool`` for file reads and conversions."""

    log = Logger()

    def __init__(self, reactor, acrNemaMap, aeTitle, index, query, reader, workers, associationLevel="IMAGE", closeDelay=5, refreshDelay=3600, release=True,
                 connectTimeout=30, dimseTimeout=300, endpointFor=None, lossyQuality=DEFAULT_QUALITY,
                 compressionScripts=None, titleStyle=PLAIN_TITLES, dicomWebServers=None, stow=None, fetcher=None,
                 ownRetrieves=None):
        associationLevel = forwardAssociationLevel(associationLevel)
        self.reactor = reactor
        self.acrNemaMap = acrNemaMap
        self.aeTitle = aeTitle
        self.index = index
        self.query = query
        self.reader = reader
        self.workers = workers
        self.associationLevel = associationLevel
        self.closeDelay = closeDelay
        self.refreshDelay = refreshDelay
        self.release = release
        self.connectTimeout = connectTimeout
        self.dimseTimeout = dimseTimeout
        self.endpointFor = endpointFor  # (host, port) -> client endpoint; None: TCP
        self.lossyQuality = lossyQuality  # LossyQuality, for the lossy JPEG codes
        self.compressionScripts = compressionScripts  # the s0..s9 codes' lines (converters.compressing), or None
        self.titleStyle = titleStyle  # PadAEWithZeros, SendUpperCaseAE (negotiation.TitleStyle)
        self.dicomWebServers = dicomWebServers or {}  # NAME -> stow.DicomWebServer
        self.stow = stow or StowSender(reactor, reader, workers, dimseTimeout, lossyQuality)
        self.fetcher = fetcher  # fetch.DicomWebFetcher, or None: no gets from DICOMweb servers
        # The export queue's: its gets (preretrieve ...) register their C-MOVEs there, and what they
        # bring in skips the import and export converters (ownretrieves.OwnRetrieves); None (the
        # control commands' moves, a user's): processed as any object.
        self.ownRetrieves = ownRetrieves
        self.interrupted = False  # the service stops: forwards end before their next object
        self._links = {}
        self._storing = set()  # the associations a C-STORE response is awaited on
        self._opening = set()  # the Deferreds of the associations being opened

    @classmethod
    def fromConfiguration(cls, configuration, reactor, aeTitle, index, query, reader, workers,
                          compressionScripts=None, fetcher=None, ownRetrieves=None):
        """With the ForwardAssociation* keys, TCPIPTimeOut, LossyQuality,
        PadAEWithZeros, SendUpperCaseAE and [DICOMwebServers] of dicom.ini."""
        ini = configuration.ini
        return cls(reactor, configuration.acrNemaMap, aeTitle, index, query, reader, workers,
                   compressionScripts=compressionScripts,
                   associationLevel=configuration.forwardAssociationLevel,
                   closeDelay=ini.getint("ForwardAssociationCloseDelay", 5),
                   refreshDelay=ini.getint("ForwardAssociationRefreshDelay", 3600),
                   release=ini.getint("ForwardAssociationRelease", 1) != 0,
                   dimseTimeout=configuration.tcpipTimeout, lossyQuality=configuration.lossyQuality,
                   titleStyle=TitleStyle.fromIni(ini), dicomWebServers=dicomWebServers(configuration),
                   fetcher=fetcher, ownRetrieves=ownRetrieves)

    def _node(self, destination):
        """The acrnema.map entry of ``destination``; one written as
        ``host:port`` (manual: "AE must be known to this server or may be
        written as ip:port") is reached there, uncompressed, called by that
        text (its first 16 characters), an IPv6 address in brackets
        (``[::1]:104``).  Only converters' forwards take this form: a C-MOVE
        destination must be in acrnema.map."""
        node = self.acrNemaMap.lookup(destination)
        if node is None:
            address = splitHostPort(destination)
            if address is None:
                raise ForwardError(bareIPv6Problem(destination) or f"{destination!r} is not in acrnema.map")
            node = Node(destination.strip()[:16], *address)
        return node

    # -- forward ----------------------------------------------------------

    def interrupt(self):
        """Make the forwards under way, and any later one, stop with
        ``Interrupted`` (the service stops and its grace period is over):
        before their next object, their associations released; one waiting
        for a C-STORE response or opening its association (a destination
        that hangs) at once, its association aborted."""
        self.interrupted = True
        for protocol in list(self._storing):
            protocol.abortAssociation()
        for opening in list(self._opening):
            opening.cancel()

    def _checkInterrupted(self):
        if self.interrupted:
            raise Interrupted("interrupted by the stop of the server")

    def locate(self, actions):
        """Deferred of ``(instances, located)`` for each forward action:
        the objects it selects in the index and where they are stored, all
        in one call of a reader thread (a lane's batch of actions)."""
        return self.index.runQuery(self._locate, actions)

    def _locate(self, connection, actions):
        found = []
        for action in actions:
            if isSpooled(action.objectPath):  # the object as the export line changed it
                instances = self.reader.instancesAt(action.objectPath, action.target)
            else:
                instances = self.query.instances(connection, "IMAGE",
                                                 indexKeys(action.level, action.target, action.filters))
                if not instances and action.objectPath:  # the index keeps no rows (NULL driver)
                    instances = self.reader.instancesAt(action.objectPath, action.target)
            found.append((instances, self.reader.locate(instances, follow=not isSpooled(action.objectPath))))
        return found

    async def forward(self, action, onSent=None, found=None, carryOn=False):
        """C-STORE the objects of ``action`` (a ``queue.Action``) to its
        destination; fires with how many were sent, or fails with
        ``Undelivered`` when some were left out (or, with ``carryOn``,
        refused). ``onSent(count)`` is told after each object; ``found``:
        its ``locate`` result, if already known."""
        server = self.dicomWebServers.get(action.destination.strip().upper())
        node = self._node(action.destination) if server is None else None
        if found is None:
            [found] = await self.locate([action])
        instances, located = found
        if isSpooled(action.objectPath) and any(isinstance(stored, Missing) and stored.gone for stored in located):
            raise Undelivered(action.destination, 0, [ChangedCopyGone(action.objectPath)], [])
        if not instances:
            self.log.warn("forward to {destination}: no stored object of {entity} {uid} matches",
                          destination=action.destination, entity=action.level.lower(),
                          uid=action.target.uid(action.level))
            return 0
        if server is not None:
            return await self._stow(server, action, instances, located, onSent)
        compression = action.compression or node.compression
        level = min(self.associationLevel, action.level, key=ASSOCIATION_LEVELS.index)
        if level == "SOPCLASS" and action.level != "IMAGE":
            level = action.level  # a collected action goes on one association, whatever its SOP classes
        link = self._links.setdefault(action.destination, _Link())
        self._cancelClose(link)
        now = self.reactor.seconds()
        if link.lastUsed is not None and now - link.lastUsed > self.refreshDelay:
            link.known.clear()
        for stored in located:
            if not isinstance(stored, Missing):
                link.known[_Kind(stored.sopClassUID, stored.transferSyntax)] = None
        sent, leftOut, refused, unread = 0, [], [], []
        try:
            for instance, stored in zip(instances, located):
                if isinstance(stored, Missing):
                    self._skipDeleted(action.destination, stored)
                    continue
                self._checkInterrupted()
                try:
                    if await self._sendOne(link, action.destination, _associationKey(level, instance), stored,
                                           compression):
                        sent += 1
                except Deleted:
                    self.log.warn("forward to {destination}: {uid} was deleted since its forward was looked up: "
                                  "skipped", destination=action.destination, uid=stored.sopInstanceUID)
                except Unreadable as e:  # the others go first (_failUnreadable)
                    unread.append(e)
                except LeftOut as e:
                    self._leaveOut(action.destination, stored, e, leftOut)
                except Refused as e:
                    if not carryOn:
                        raise
                    self.log.warn("forward to {destination}: {error}", destination=action.destination, error=e)
                    refused.append(e)
                if onSent is not None:
                    onSent(sent)
        except Exception as e:
            await self._close(link, abort=not isinstance(e, (Interrupted, Refused)))
            raise
        finally:
            link.lastUsed = self.reactor.seconds()
        if level == "IMAGE":
            await self._close(link)
        else:
            link.closeTimer = self.reactor.callLater(self.closeDelay, self._idle, link)
        _failUnreadable(located, unread, _narrowable(action, instances, sent, leftOut + refused))
        if leftOut or refused:
            raise Undelivered(action.destination, sent, leftOut, refused)
        return sent

    async def _stow(self, server, action, instances, located, onSent):
        """Forward to a DICOMweb server: STOW-RS of the readable objects."""
        readable = []
        for stored in located:
            if isinstance(stored, Missing):
                self._skipDeleted(action.destination, stored)
            else:
                readable.append(stored)
        leftOut, unread = [], []

        def onUnreadable(stored, error):
            failure = _readError(stored, error)
            if isinstance(failure, LeftOut):
                self._leaveOut(action.destination, stored, failure, leftOut)
            else:
                unread.append(failure)
        try:
            sent = await self.stow.send(
                server, readable,
                lambda stored, reason: self._leaveOut(action.destination, stored, NotConvertible(reason), leftOut),
                onUnreadable, action.compression, onSent, self._checkInterrupted)
        except StowError as e:
            raise ForwardError(str(e)) from e
        _failUnreadable(located, unread, _narrowable(action, instances, sent, leftOut))
        if leftOut:
            raise Undelivered(action.destination, sent, leftOut, [])
        return sent

    def _skipDeleted(self, destination, stored):
        """Log that the ``Missing`` ``stored``, found deleted as it was
        located (``gone``), is skipped; one that may be read later is not
        logged here: the action fails with it (``_failUnreadable``), in the
        one line of its failed attempt."""
        if stored.gone:
            self.log.warn("forward to {destination}: {uid} cannot be read: {reason}",
                          destination=destination, uid=stored.sopInstanceUID, reason=stored.reason)

    def _leaveOut(self, destination, stored, error, leftOut):
        """Log that ``stored`` is left out for the ``LeftOut`` ``error``, added to ``leftOut``."""
        self.log.warn("forward to {destination}: {uid} left out, not retried: {error}",
                      destination=destination, uid=stored.sopInstanceUID, error=error)
        leftOut.append(error)

    async def _open(self, link, node, key, kind, compression):
        """The association to send ``kind`` on, opened if need be: another
        one too when ``node``'s address is no longer the one it was opened to."""
        protocol = link.protocol
        address = _address(node)
        if protocol is not None and protocol.state == ESTABLISHED:
            if link.address != address:
                self.log.info("forward to {destination}: acrnema.map moved it from {old} to {new}: the association "
                              "kept open is closed, another opened", destination=node.ae, old=_where(link.address),
                              new=_where(address))
            elif link.key == key and kind in link.proposed and link.compression == compression:
                return protocol
        await self._close(link)
        contexts = contextsFor(list(link.known), compression)
        link.protocol = await self._associate(node, contexts)
        link.key = key
        link.proposed = frozenset(link.known)
        link.compression = compression
        link.address = address
        return link.protocol

    async def _sendOne(self, link, destination, key, stored, compression):
        """C-STORE ``stored`` on ``link``'s association for ``key``: True
        when sent, False when the line of its compression code (s0..s9) left
        it out.  It is read first, so no association is opened for an
        object that will not go (deleted, unreadable, left out)."""
        kind = _Kind(stored.sopClassUID, stored.transferSyntax)
        stored, data = await self.workers.deferToWorker(self._read, stored, compression, destination)
        if data is None:
            self.log.info("forward to {destination}: {uid} left out by the CompressionConverter of code {code}",
                          destination=destination, uid=stored.sopInstanceUID, code=compression)
            return False
        try:
            protocol = await self._open(link, self._node(destination), key, kind, compression)
            self._checkInterrupted()
        except BaseException:
            closeIfStored(data)
            raise
        accepted = protocol.acceptedSyntaxes(stored.sopClassUID)
        syntax, data = await self._encode(stored, data, accepted, compression, destination)
        self._storing.add(protocol)
        try:
            response = await protocol.store(data, stored.sopClassUID, stored.sopInstanceUID, syntax)
        except NoStatus as e:  # the object may well be stored: as a failure status, retried
            raise Refused(f"{destination} answered the C-STORE of {stored.sopInstanceUID} without a Status") from e
        except Exception as e:
            self._checkInterrupted()  # its association aborted by interrupt()
            raise ForwardError(f"C-STORE of {stored.sopInstanceUID} failed: {e}") from e
        finally:
            self._storing.discard(protocol)
        status = response.get(commands.STATUS)
        if status == SUCCESS:
            return True
        answer = f"{destination} answered the C-STORE of {stored.sopInstanceUID} with status 0x{status:04X}"
        comment = response.get(commands.ERROR_COMMENT)
        comment = f": {comment}" if comment else ""
        if commands.isWarning(status):  # the object was stored
            self.log.warn("forward to {destination}: {answer} ({meaning}{comment}), a warning: stored, counted as sent",
                          destination=destination, answer=answer, meaning=commands.storeWarning(status),
                          comment=comment)
            return True
        meaning = commands.storeRefusedForGood(status)
        if meaning is None:
            raise Refused(answer)
        raise RefusedForGood(f"{answer} ({meaning}{comment})")

    async def _encode(self, stored, data, accepted, compression, destination):
        """``(syntax, data)`` to send ``stored`` in: the best one the peer
        took that it can be converted to, uncompressed at last, as stored
        when the peer took that too; ``NotConvertible`` when none."""
        syntaxes = choices(stored, accepted, compression)
        if not syntaxes:
            closeIfStored(data)
            raise NotAccepted(f"{destination} takes {stored.sopClassUID} in none of the syntaxes "
                               f"{stored.sopInstanceUID} can be sent in (stored as {stored.transferSyntax})")
        try:
            syntax, data, refusals = await convertToFirst(stored, data, syntaxes, self.workers,
                                                          qualityOf(compression, self.lossyQuality))
        except TranscodeError as e:
            raise NotConvertible(f"{stored.sopInstanceUID} cannot be converted to {' nor '.join(syntaxes)} "
                                 f"(what {destination} takes it in): {e}") from e
        for refused, error in refusals:
            self.log.info("forward to {destination}: {uid} cannot be converted to {refused} ({error}); "
                          "sent as {syntax}", destination=destination, uid=stored.sopInstanceUID,
                          refused=refused, error=error, syntax=syntax)
        return syntax, data

    def _read(self, stored, compression, destination):
        """In the I/O pool: ``readForPeer`` of ``stored`` (its s0..s9 line
        run from us to ``destination``); ``NotConvertible`` when it cannot be
        or its data set cannot be walked (``DatasetError``), ``ChangedCopyGone`` when it is a spool file gone (never followed to
        the stored object), ``Deleted`` when the object was deleted since it
        was located, ``Unreadable`` when its file cannot be read otherwise."""
        spooled = isSpooled(stored.path)
        try:
            return readForPeer(self.reader, stored, compression, self.workers.deferToWorker,
                               self.compressionScripts, self.aeTitle, destination, follow=not spooled)
        except (TranscodeError, IdentifierError) as e:
            raise NotConvertible(f"{stored.sopInstanceUID}: {e}") from e
        except DatasetError as e:
            raise NotConvertible(f"{stored.sopInstanceUID} cannot be read: {e}") from e
        except Deleted:
            raise
        except OSError as e:
            raise _readError(stored, e) from e

    # -- get --------------------------------------------------------------

    async def get(self, action, moveTo=None, onResponse=None):
        """C-MOVE the entity of ``action`` from its destination (the source
        AE) to us (or to the AE ``moveTo``); with filters a C-FIND there
        first picks what to move. ``onResponse(command)`` sees every C-MOVE
        response (pending and final: the sub-operation counters).
        Fires with the number of C-MOVEs done."""
        server = self.dicomWebServers.get(action.destination.strip().upper())
        if server is not None:
            return await self._fetch(server, action, moveTo, onResponse)
        node = self._node(action.destination)
        queryLevel, identifier = remoteRequest(action.level, action.target, action.filters)
        protocol = await self._associate(node, [(PATIENT_ROOT_FIND, list(UNCOMPRESSED)),
                                                (PATIENT_ROOT_MOVE, list(UNCOMPRESSED))])
        try:
            if action.filters:
                requests = await self._find(protocol, queryLevel, identifier)
            else:
                requests = [identifier]
            for request in requests:
                await self._move(protocol, node.ae, request, moveTo or self.aeTitle, onResponse)
        except ForwardError:
            protocol.abortAssociation()
            raise
        except Exception as e:
            protocol.abortAssociation()
            raise ForwardError(f"retrieve from {node.ae} failed: {e}") from e
        await protocol.release()
        return len(requests)

    async def _fetch(self, server, action, moveTo, onResponse):
        """A get from a DICOMweb server: WADO-RS into this archive; the
        outcome shown to ``onResponse`` as a final C-MOVE response's counters."""
        if self.fetcher is None or (moveTo or self.aeTitle) != self.aeTitle:
            raise ForwardError(f"objects of the DICOMweb server {server.name} can only be fetched into "
                               f"{self.aeTitle}")
        if action.filters:
            raise ForwardError(f"a fetch from the DICOMweb server {server.name} takes no filters")
        try:
            stored, failed = await self.fetcher.fetch(server, action.level, action.target,
                                                      converters=self.ownRetrieves is None)
        except StowError as e:
            raise ForwardError(str(e)) from e
        if onResponse is not None:
            onResponse({commands.STATUS: SUCCESS if not failed else 0xB000, commands.COMPLETED_SUBOPERATIONS: stored,
                        commands.FAILED_SUBOPERATIONS: failed, commands.WARNING_SUBOPERATIONS: 0})
        if failed:
            raise ForwardError(f"{failed} object(s) fetched from {server.name} could not be stored")
        return 1

    async def _find(self, protocol, queryLevel, identifier):
        """The C-MOVE identifiers of the entities a C-FIND matches."""
        keywords = [LEVEL_KEYS[level][2] for level in LEVELS[:LEVELS.index(queryLevel) + 1]]
        status, matches = await protocol.findMatches(PATIENT_ROOT_FIND, identifier, self.workers.deferToWorker)
        if status != SUCCESS:
            raise ForwardError(f"C-FIND on {protocol.association.calledAE} ended with status 0x{status:04X}")
        found = dict.fromkeys(tuple(str(match.get(keyword, "") or "") for keyword in keywords) for match in matches)
        requests = []
        for values in found:
            request = Dataset()
            request.QueryRetrieveLevel = queryLevel
            for keyword, value in zip(keywords, values):
                setattr(request, keyword, value)
            requests.append(request)
        return requests

    async def _move(self, protocol, source, identifier, destination, onResponse=None):
        own = self.ownRetrieves if destination == self.aeTitle else None
        messageID = None if own is None else own.begin()
        try:
            command, _ = await protocol.move(PATIENT_ROOT_MOVE, identifier, destination, onResponse, messageID)
        finally:
            if own is not None:
                own.end(messageID)
        if onResponse is not None:
            onResponse(command)
        status = command.get(commands.STATUS)
        failed = command.get(commands.FAILED_SUBOPERATIONS, "?")
        # B000 is "one or more failures or warnings" (PS3.4 C.4.2.1.4.1): with warnings only, all arrived.
        if status != SUCCESS and not (commands.isWarning(status) and failed == 0):
            raise ForwardError(f"C-MOVE from {source} to {destination} ended with status 0x{status:04X} "
                               f"({failed} sub-operations failed)")

    # -- associations -----------------------------------------------------

    async def _associate(self, node, contexts):
        opening = defer.ensureDeferred(associateNode(self.reactor, node, self.aeTitle, contexts, self.connectTimeout,
                                                     self.dimseTimeout, self.endpointFor, self.titleStyle))
        self._opening.add(opening)
        try:
            return await opening
        except (NodeUnreachable, defer.CancelledError) as e:
            self._checkInterrupted()  # (the CancelledError: an opening cancelled by interrupt())
            raise ForwardError(str(e) or repr(e)) from e
        finally:
            self._opening.discard(opening)

    def _cancelClose(self, link):
        if link.closeTimer is not None and link.closeTimer.active():
            link.closeTimer.cancel()
        link.closeTimer = None

    def _idle(self, link):
        link.closeTimer = None
        defer.ensureDeferred(self._close(link)).addErrback(
            lambda f: self.log.failure("closing an idle forward association failed", f))

    async def _close(self, link, abort=False):
        self._cancelClose(link)
        protocol, link.protocol = link.protocol, None
        if protocol is None or protocol.state != ESTABLISHED:
            return
        if abort or not self.release:
            protocol.abortAssociation()
        else:
            await protocol.release()

    async def closeAll(self):
        """Close every open association and idle HTTP connection (the service stops)."""
        for link in list(self._links.values()):
            await self._close(link)
        await self.stow.close()
        if self.fetcher is not None:
            await self.fetcher.close()


def _readError(stored, error):
    """What the ``OSError`` ``error`` reading ``stored`` fails its forward
    with: ``ChangedCopyGone`` when it is a spool file gone (left out, never
    followed to the stored object), else ``Unreadable`` (retried)."""
    if isSpooled(stored.path) and isinstance(error, FileNotFoundError):
        return ChangedCopyGone(stored.path)
    return Unreadable(f"{stored.sopInstanceUID} could not be read here: {error}", [stored.deviceName],
                      [stored.sopInstanceUID])


def _failUnreadable(located, unread=(), sentAlongside=()):
    """``Unreadable`` when an object of the action is stored but could not
    be read, its file gone too while the index names it, as it was located
    or as it was read (``unread``: the Unreadable it raised, the others sent
    meanwhile): the action is then tried again; objects deleted meanwhile
    (``Missing.gone``) are skipped.  ``sentAlongside``: the action's
    ``Instance``s when it is above IMAGE level and others were sent; the
    retry then covers only the objects not read (``Unreadable.retryOnly``)."""
    missing = [stored for stored in located if isinstance(stored, Missing) and not stored.gone]
    reasons = [f"{stored.sopInstanceUID}: {stored.reason}" for stored in missing] + [str(error) for error in unread]
    if not reasons:
        return
    uids = {stored.sopInstanceUID for stored in missing} | {uid for error in unread for uid in error.uids}
    retryOnly = [Target(instance.patientID, instance.studyInstanceUID, instance.seriesInstanceUID,
                        instance.sopInstanceUID) for instance in sentAlongside if instance.sopInstanceUID in uids]
    single = len(reasons) == 1 and unread
    raise Unreadable(str(unread[0]) if single else f"{len(reasons)} of its objects could not be read, e.g. {reasons[0]}",
                     [stored.deviceName for stored in missing] + [d for error in unread for d in error.devices],
                     uids, retryOnly) from (unread[0] if single else None)


def _narrowable(action, instances, sent, undelivered):
    """``instances`` when a retry of ``action`` after an ``Unreadable`` is to
    cover only the objects not read (``_failUnreadable``): above IMAGE
    level, others sent, none left out nor refused (removed, the action
    would no longer hold a delete queued after it, see
    ``ExportQueue.due``, which must wait for those too)."""
    return instances if sent and action.level != "IMAGE" and not undelivered else ()


def _address(node):
    """Where an acrnema.map ``node`` is reached: an association opened to
    another address is not reused (``put_amap`` or ``read_amap`` moved it)."""
    return node.ae, node.host, node.port, node.tls


def _where(address):
    """An ``_address`` as text: ``AE at host:port`` (``with TLS``)."""
    ae, host, port, tls = address
    return f"{ae} at {hostPort(host, port)}{' with TLS' if tls is not None else ''}"


def _associationKey(level, instance):
    """The UID at ``level`` of an ``IndexQuery`` ``Instance``."""
    return {"GLOBAL": "", "SOPCLASS": instance.sopClassUID, "PATIENT": instance.patientID,
            "STUDY": instance.studyInstanceUID, "SERIES": instance.seriesInstanceUID,
            "IMAGE": instance.sopInstanceUID}[level]
