"""C-MOVE and C-GET SCP (PS3.4 C.4.2, C.4.3): retrieves as C-STORE
sub-operations.

Both find the images the identifier selects and send them one at a time
- read from disk a batch ahead of need (a few MB), so memory stays
bounded whatever the size of the retrieve: a C-GET reads each file's
Part-10 header and data set in one opening, a C-MOVE has read every
header first (below) and opens each file again for its data set; an
object over ``STREAMED_OBJECT`` (or whose pixels decode to more) that
goes as stored is not read but sent from its file, opened again for
that (and read whole when it holds NKI pixel data, which goes
decompressed).  A C-MOVE sends them on a new
association, opened by our client to the destination AE that acrnema.map
names, for which it first reads every header (it proposes contexts for
their syntaxes); a C-GET sends them back on the requestor's own association (for the storage
classes it took the SCP role for).  Each object goes in the stored transfer syntax when the peer takes
it, else converted (``pacscore.codecs``) to the best one it accepted;
pending responses (up to ten a second) report Remaining/Completed/Failed/
Warning, the final one lists the failed SOP instances (and, while virtual
servers bring objects here, the objects being fetched as Remaining).  A
C-CANCEL stops the transfer before the next object, or while the
destination is being reached or the virtual servers fetch.  The
requestor's association ending (lost or aborted) abandons a C-MOVE at
once: the association with its destination, being opened or waiting
for a C-STORE response, is aborted and closed (no C-CANCEL can come to
end a wait that ``ARTIMTimeOut`` or ``TCPIPTimeOut`` 0 leaves without
limit).  A file
gone since the query counts as a failed sub-operation, as does an object
a virtual server listed but could not bring here; a C-MOVE whose
destination drops the association opens another (``MAX_REOPENS``).  An
index database that cannot be searched (down, locked, damaged) answers
A701, out of resources, with one log line.
"""

import os
import sys
from collections import Counter

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from twisted.internet import defer
from twisted.logger import Logger

from pacscore.codecs.compression import forPeer
from pacscore.codecs.evenlengths import isOdd
from pacscore.codecs.filetranscode import NotStreamed, streams
from pacscore.codecs.jpeglossy import DEFAULT_QUALITY
from pacscore.codecs.nkipixels import withPlainPixels
from pacscore.codecs.syntaxes import (
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, NATIVE, NATIVE_CODES, UNCOMPRESSED, UNCOMPRESSED_CODE,
    canDecode, canEncode, codeOf, proposals, qualityOf)
from pacscore.codecs.transcode import TranscodeError, transcode
from pacscore.dicom import commands
from pacscore.dicom.client import NodeUnreachable, associateNode
from pacscore.dicom.negotiation import PLAIN_TITLES
from pacscore.converters.hooks import LEFT_OUT
from pacscore.db.errors import DATABASE_FAILURES, databaseMessage
from pacscore.db.query import hasValuesToMatch
from pacscore.dicom.datasets import IdentifierError, encodeDataset
from pacscore.dicom.find import DESTROYED, cancelledWith, convertIdentifier, readIdentifier
from pacscore.dicom.identifiers import BadIdentifier, logMalformed, patientAsStudy, retrieveKeys, tagName
from pacscore.dicom.models import modelOf
from pacscore.dicom.protocol import AWAITING_CLOSE, ESTABLISHED, PRIORITIES, PRIORITY_MEDIUM
from pacscore.dicom.storeddata import (
    STREAMED_OBJECT, StoredData, closeIfStored, evenedForPeer, goesAsStored, openStored, renamed)
from pacscore.logfiles import userEvents
from pacscore.storage.attributes import DatasetError
from pacscore.storage.reader import Missing, StoredObject

SUCCESS = 0x0000
CANCELLED = 0xFE00
PENDING = 0xFF00
SUBOPERATIONS_FAILED = 0xB000
UNABLE_TO_CALCULATE_MATCHES = 0xA701
UNABLE_TO_PERFORM_SUBOPERATIONS = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
FAILED_SOP_INSTANCE_UID_LIST = 0x00080058
MAX_SHORT_VALUE = 0xFFFE  # the longest value with a 16-bit length (explicit VR), even

MAX_CONTEXTS = 128
MAX_REOPENS = 3  # associations a C-MOVE opens again after losing one

log = Logger()

# Seconds between pending responses: the counters stay current for a
# progress display without doubling the messages of a retrieve.
PENDING_INTERVAL = 0.1


class Refused(Exception):
    """The retrieve cannot start; answered with ``status``."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


class Progress:
    """The sub-operation counters of one retrieve."""

    def __init__(self, total, lost=()):
        """``total`` objects to send; ``lost``: the SOP Instance UIDs of
        objects failed before (listed by a virtual server, not fetched)."""
        self.remaining = total
        self.completed = 0
        self.failed = len(lost)
        self.warning = 0
        self.failedUIDs = list(lost)

    def done(self, sopInstanceUID, status):
        self.remaining -= 1
        if status == SUCCESS:
            self.completed += 1
        elif status is not None and commands.isWarning(status):
            self.warning += 1
        else:
            self.failed += 1
            self.failedUIDs.append(sopInstanceUID)

    def counters(self, final=False):
        """The response's counts: each US, so a retrieve of more than 65535
        objects reports 65535 until its count falls below (as other SCPs do)."""
        counters = {commands.COMPLETED_SUBOPERATIONS: self.completed,
                    commands.FAILED_SUBOPERATIONS: self.failed,
                    commands.WARNING_SUBOPERATIONS: self.warning}
        if not final or self.remaining:
            counters[commands.REMAINING_SUBOPERATIONS] = self.remaining
        return {tag: min(count, 0xFFFF) for tag, count in counters.items()}

    def finalStatus(self):
        if not self.failed and not self.warning:
            return SUCCESS
        if self.failed and not self.completed and not self.warning:
            return UNABLE_TO_PERFORM_SUBOPERATIONS
        return SUBOPERATIONS_FAILED


def choices(stored, accepted, compression):
    """The transfer syntaxes to send ``stored`` in, best first, given
    ``accepted`` (``{syntax: contextId}`` for its SOP class; None: any, as
    STOW-RS takes) that it can be converted to: those of ``proposals`` the
    peer took, then the others it took (a C-GET's retriever that proposed
    JPEG Lossless alone in its context gets JPEG Lossless; one that also
    proposed an uncompressed syntax got that, ``negotiation._chosen``)."""
    source = stored.transferSyntax
    wanted = proposals(source, compression)
    if accepted is not None:
        wanted = [syntax for syntax in wanted if syntax in accepted] + [
            syntax for syntax in accepted if syntax not in wanted]
    return [syntax for syntax in wanted if
            syntax == source or canDecode(source) and (syntax in UNCOMPRESSED or canEncode(syntax))]


async def convertToFirst(stored, data, syntaxes, workers, quality):
    """``(syntax, data, refusals)``: ``_convertedToFirst``, its odd values
    padded when its length is odd (``evenedForPeer``, logged; a
    TranscodeError when they cannot be, so that it alone is not sent)."""
    syntax, data, refusals = await _convertedToFirst(stored, data, syntaxes, workers, quality)
    if isOdd(len(data)):
        data, padded = await workers.deferToWorker(evenedForPeer, data, syntax, os.path.dirname(stored.path))
        if padded:
            log.info("{uid}: values of odd length padded to an even length to send it (PS3.5 7.1.1): {padded}",
                     uid=stored.sopInstanceUID, padded=", ".join(padded))
    return syntax, data, refusals


async def _convertedToFirst(stored, data, syntaxes, workers, quality):
    """``(syntax, data, refusals)``: ``data`` of ``stored`` (bytes or a
    ``StoredData``) converted (in
    ``workers``, lossy JPEG at ``quality``) to the first of ``syntaxes`` it
    can go in (an image a lossy JPEG encoder cannot take goes in the next
    one), and ``(syntax, error)`` for those before that it could not; the
    last TranscodeError when it goes in none.  A ``StoredData`` goes as
    it is in its own syntax (also after a refusal), converted file to file
    into one where ``filetranscode`` can, else it is read to be converted;
    its file is closed once it is converted or goes in none."""
    refusals, whole = [], None if isinstance(data, StoredData) else data  # whole: the data set as bytes
    for syntax in syntaxes:
        if syntax == stored.transferSyntax:
            return syntax, data, refusals
        try:
            converted = None
            if isinstance(data, StoredData) and streams(stored.transferSyntax, syntax):
                try:
                    converted = await workers.deferToWorker(data.transcoded, stored.transferSyntax, syntax,
                                                            os.path.dirname(stored.path))
                except NotStreamed:
                    pass
            if converted is None:
                if whole is None:
                    whole = await workers.deferToWorker(data.readAll)
                converted = await workers.deferToWorker(transcode, whole, stored.transferSyntax, syntax, quality)
        except TranscodeError as e:
            refusals.append((syntax, e))
        except BaseException:
            closeIfStored(data)
            raise
        else:
            closeIfStored(data)
            return syntax, converted, refusals
    closeIfStored(data)
    raise refusals[-1][1]


def contextsFor(located, compression):
    """Presentation contexts to propose for sending ``located`` objects.

    Per SOP class: one context with the uncompressed syntaxes in our order
    (the fall-back), then a context of its own for each compressed syntax
    worth proposing and for the uncompressed syntax an object is to go in
    first when the shared context may not get it (``ui``'s implicit VR,
    ``ul``'s explicit and ``ub``'s big endian, the deflated, big-endian or
    implicit VR syntax it is stored in under ``as``; none under ``un``,
    any uncompressed syntax): the peer picks one syntax per context by its
    own preference, so a syntax offered with others is lost.  At most 128:
    when some must be dropped, the own uncompressed contexts (which have
    the shared one to fall back on) are dropped first, then the compressed
    ones."""
    code = codeOf(compression)
    shared, compressed, uncompressed = {}, {}, {}
    for stored in located:
        if isinstance(stored, Missing):
            continue
        for n, syntax in enumerate(proposals(stored.transferSyntax, compression)):
            if syntax not in NATIVE:
                compressed.setdefault((stored.sopClassUID, syntax), None)
                continue
            shared.setdefault(stored.sopClassUID, {}).setdefault(syntax, None)
            if n == 0 and _alone(syntax, code):
                uncompressed.setdefault((stored.sopClassUID, syntax), None)
    contexts = [(sopClass, list(syntaxes)) for sopClass, syntaxes in shared.items()]
    contexts += [(sopClass, [syntax]) for sopClass, syntax in compressed]
    contexts += [(sopClass, [syntax]) for sopClass, syntax in uncompressed]
    return contexts[:MAX_CONTEXTS]


def _alone(syntax, code):
    """Whether the uncompressed ``syntax`` an object is to go in first under
    the compression ``code`` needs a context of its own: a code naming it
    does, and so does any but explicit VR little endian (which the shared
    context offers first) unless the code is ``un``."""
    if code in NATIVE_CODES:
        return True
    return code != UNCOMPRESSED_CODE and syntax != EXPLICIT_VR_LITTLE_ENDIAN


class RetrieveService:
    """What C-MOVE and C-GET share; subclasses say where objects go."""

    log = Logger()
    userLog = Logger(observer=userEvents)
    responseField = None
    operation = None

    def __init__(self, index, query, reader, workers, aeTitle, reactor, counters=None, requestHook=None,
                 resultHook=None, virtual=None, lossyQuality=DEFAULT_QUALITY, compressionScripts=None,
                 prefetcher=None):
        self.index = index
        self.query = query
        self.reader = reader
        self.workers = workers
        self.aeTitle = aeTitle
        self.reactor = reactor
        self.counters = counters if counters is not None else {}
        self.requestHook = requestHook  # RetrieveConverter0 (pacscore.converters.hooks.DatasetHook)
        self.resultHook = resultHook    # RetrieveResultConverter0
        self.virtual = virtual          # pacscore.dicom.virtual.VirtualServers, or None
        self.lossyQuality = lossyQuality  # LossyQuality, for the lossy JPEG codes
        self.compressionScripts = compressionScripts  # the s0..s9 codes' lines (converters.compressing), or None
        self.prefetcher = prefetcher  # pacscore.storage.prefetcher.Prefetcher (Prefetcher = 1), or None

    def handle(self, protocol, contextId, command, dataset):
        return defer.ensureDeferred(self._retrieve(protocol, contextId, command, dataset))

    async def _retrieve(self, protocol, contextId, command, dataset):
        self.userLog.info("{callingAE}: {operation}", operation=self.operation,
                          callingAE=protocol.association.callingAE)
        if self.virtual is None:
            await self._serve(protocol, contextId, command, dataset, [])
        else:
            await self.virtual.retrieving(self._serveReleasing(protocol, contextId, command, dataset))

    async def _serveReleasing(self, protocol, contextId, command, dataset):
        """``_serve``, then release what the virtual servers moved here for it."""
        fetched = []
        try:
            await self._serve(protocol, contextId, command, dataset, fetched)
        finally:
            if fetched:
                await self.virtual.release(fetched)

    async def _serve(self, protocol, contextId, command, dataset, fetched):
        sopClass, syntax = protocol.association.contexts[contextId]
        peer = protocol.peerName()

        def respond(status, progress=None, identifier=None, comment=None, final=True):
            extra = progress.counters(final) if progress is not None else {}
            if comment:
                extra[commands.ERROR_COMMENT] = comment[:64]
            protocol.sendMessage(contextId, commands.response(command, self.responseField, status, extra),
                                 identifier)

        try:
            data = await convertIdentifier(self.requestHook, self.reactor, protocol, dataset, syntax,
                                           self._destination(protocol, command))
            if data is DESTROYED:
                self.log.info("{peer}: {operation} answered with nothing: destroyed by {key}", peer=peer,
                              operation=self.operation, key=self.requestHook.script.key)
                return respond(SUCCESS, Progress(0))
            levels = modelOf(sopClass).levels
            taken = levels if "PATIENT" in levels else ("PATIENT",) + levels  # Study Root: see patientAsStudy
            identifier, request, mask, malformed = await self.workers.deferToWorker(
                readIdentifier, data, syntax, taken, matching=False, named=True)
            if request.level not in levels:
                request, ignored = patientAsStudy(identifier, request)
                self.log.info("{peer}: {operation} at PATIENT level in Study Root taken as a STUDY retrieve by "
                              "Patient ID{ignoring}", peer=peer, operation=self.operation,
                              ignoring=f", ignoring {', '.join(ignored)} as Patient Root does" if ignored else "")
            selecting = self._selectingKeys(peer, request, levels)
            self._check(protocol, command)
            logMalformed(malformed, peer)  # the request is accepted
            lost = []
            if self.virtual is not None:
                fetch = await self._fetch(protocol, command, sopClass, identifier, mask, respond)
                if fetch is None:
                    return
                fetched += fetch.held
                lost = fetch.lost
            instances = await self.index.queryForPeer(self.query.instances, request.level, selecting)
            if lost:  # those stored after the fetch looked are sent, not failed
                found = {instance.sopInstanceUID for instance in instances}
                lost = [uid for uid in lost if uid not in found]
            located = await self._locate(instances)
        except (BadIdentifier, Refused) as e:
            detail = getattr(e, "detail", "")
            self.log.warn("{peer}: {operation} refused: {error}{detail}", peer=peer, operation=self.operation, error=e,
                          detail=f" ({detail})" if detail else "")
            return respond(e.status, comment=str(e))
        except DATABASE_FAILURES as e:  # out of resources (PS3.4 C.4.2.1.5)
            self.log.error("{peer}: {operation} failed: the index database: {error}", peer=peer,
                           operation=self.operation, error=databaseMessage(e))
            return respond(UNABLE_TO_CALCULATE_MATCHES, comment=f"index database: {databaseMessage(e)}")
        if self.prefetcher is not None and len(located) >= 2:
            self.prefetcher.stop(f"a {self.operation} of {len(located)} objects")
        progress = Progress(len(located), lost)
        self.log.info("{peer}: {operation} at {qrLevel} level: {count} objects{target}",
                      peer=peer, operation=self.operation, qrLevel=request.level, count=len(located),
                      target=self._describe(command))
        try:
            target, compression = await self._openUnlessCancelled(protocol, command, located)
        except Exception as e:
            self.log.warn("{peer}: {operation}: cannot reach the destination: {error}",
                          peer=peer, operation=self.operation, error=e)
            for stored in located:
                progress.done(stored.sopInstanceUID, None)
            return respond(UNABLE_TO_PERFORM_SUBOPERATIONS, progress, self._failedList(progress, syntax),
                           comment=e.reason if isinstance(e, NodeUnreachable) else str(e))
        if target is None and protocol.state == AWAITING_CLOSE:
            return self._abandoned(protocol, progress)
        if target is None:
            self.log.info("{peer}: {operation} cancelled while the destination was being reached, "
                          "{remaining} objects left", peer=peer, operation=self.operation, remaining=progress.remaining)
            return respond(CANCELLED, progress)
        targets = [target]  # another is opened when one is lost
        try:
            cancelled = await self._send(protocol, command, targets, compression, located, progress, respond)
        finally:
            await self._close(protocol, targets[-1])
        self.counters[f"{self.operation}Objects"] = (self.counters.get(f"{self.operation}Objects", 0)
                                                      + progress.completed + progress.warning)
        if cancelled:
            self.log.info("{peer}: {operation} cancelled with {remaining} objects left",
                          peer=peer, operation=self.operation, remaining=progress.remaining)
            return respond(CANCELLED, progress, self._failedList(progress, syntax))
        if progress.failed or progress.remaining:
            self.log.warn("{peer}: {operation}: {count} sub-operations: {completed} completed, {failed} failed, "
                          "{warning} with a warning, {remaining} not sent", peer=peer, operation=self.operation,
                          count=len(located) + len(lost), completed=progress.completed, failed=progress.failed,
                          warning=progress.warning, remaining=progress.remaining)
        respond(progress.finalStatus(), progress, self._failedList(progress, syntax))

    async def _fetch(self, protocol, command, sopClass, identifier, mask, respond):
        """The virtual servers' ``Fetched`` for the retrieve, with pending
        responses (the objects being fetched as Remaining) while their
        objects arrive; None when the requestor cancelled first (answered
        Cancel: the fetch is cancelled) or the association ended."""
        lastPending = self.reactor.seconds()

        def fetching(count):
            nonlocal lastPending
            if self.reactor.seconds() - lastPending >= PENDING_INTERVAL and not protocol.isCancelled(command):
                lastPending = self.reactor.seconds()
                respond(PENDING, Progress(count), final=False)
        fetch = defer.ensureDeferred(self.virtual.fetch(sopClass, identifier, mask, protocol.association.callingAE,
                                                        fetching))
        try:
            return await cancelledWith(protocol, command, fetch)
        except defer.CancelledError:
            if not protocol.isCancelled(command):
                self.log.info("{peer}: {operation} stopped: the association ended", peer=protocol.peerName(),
                              operation=self.operation)
                return None
            self.log.info("{peer}: {operation} cancelled while the virtual servers fetched its objects",
                          peer=protocol.peerName(), operation=self.operation)
            respond(CANCELLED, Progress(0))
            return None

    def _selectingKeys(self, peer, request, levels):
        """The keys of ``request`` (in a model of ``levels``) that select
        what it retrieves (``retrieveKeys``), with a log line naming the
        others it holds values of.  Raises BadIdentifier."""
        selecting, ignored = retrieveKeys(request, levels)
        ignored = [keyword_for_tag(key.tag) or tagName(key.tag) for key in ignored if hasValuesToMatch(key)]
        if ignored:
            self.log.info("{peer}: {operation} selects by its unique keys only, ignoring {ignored}",
                          peer=peer, operation=self.operation, ignored=", ".join(ignored))
        return selecting

    async def _openUnlessCancelled(self, protocol, command, located):
        """``_open``'s ``(target, compression)``, or ``(None, None)`` when the
        requestor cancels first or its association ends: the opening is
        then cancelled (stopped, the connection closed)."""
        try:
            return await cancelledWith(protocol, command, defer.ensureDeferred(self._open(protocol, command, located)))
        except defer.CancelledError:
            if protocol.isCancelled(command) or protocol.state == AWAITING_CLOSE:
                return None, None
            raise

    def _abandoned(self, protocol, progress, again=""):
        """The log line of a retrieve whose requestor's association ended
        while the destination was being reached (``again``: after it was
        lost), its objects left not sent (no answer can go)."""
        self.log.warn("{peer}: {operation} abandoned while the destination was being reached{again}: the "
                      "association ended, {remaining} objects not sent", peer=protocol.peerName(),
                      operation=self.operation, again=again, remaining=progress.remaining)

    def _failedList(self, progress, syntax):
        """The final response's identifier: the Failed SOP Instance UID List.
        In an explicit VR syntax a UI value holds at most 64 KB (PS3.5
        7.1.2): a longer list is cut there, with a log line."""
        if not progress.failedUIDs:
            return None
        uids = progress.failedUIDs
        if syntax != IMPLICIT_VR_LITTLE_ENDIAN:
            kept, size = 0, -1
            for uid in uids:
                size += len(uid) + 1
                if size > MAX_SHORT_VALUE:
                    break
                kept += 1
            if kept < len(uids):
                self.log.warn("{operation}: the Failed SOP Instance UID List names {kept} of the {count} failed "
                              "objects: more do not fit in a UI value (64 KB)", operation=self.operation,
                              kept=kept, count=len(uids))
                uids = uids[:kept]
        identifier = Dataset()
        identifier.FailedSOPInstanceUIDList = uids
        return encodeDataset(identifier, syntax)

    async def _send(self, protocol, command, targets, compression, located, progress, respond):
        """Send every object to the last of ``targets`` (another is opened
        and added when that association is lost); True if cancelled.
        Objects the target takes in no syntax are logged once per reason
        (a SOP class, or a SOP class and stored syntax) with their count."""
        asStored = self.resultHook is None and goesAsStored(self.compressionScripts, compression)
        upcoming = _ReadAhead(self.reader, self.workers, located,
                              self._converter(protocol, compression, self._destination(protocol, command)), asStored)
        lastPending = self.reactor.seconds()
        unsent = Counter()  # reason -> objects not sent for it
        priority = command.get(commands.PRIORITY)  # the sub-operations' too (PS3.4 C.4.2.1.2, C.4.3.1.2)
        priority = priority if priority in PRIORITIES else PRIORITY_MEDIUM
        ended = protocol.whenEnded()  # the requestor gone: the C-STORE under way is not waited for
        ended.addCallbacks(lambda _: self._abandon(protocol, targets[-1]),
                           lambda failure: failure.trap(defer.CancelledError))
        try:
            for position, stored in enumerate(located):
                stored, data = await upcoming.next()
                if protocol.isCancelled(command) or protocol.state != ESTABLISHED:  # also while it was read
                    closeIfStored(data)
                    return protocol.isCancelled(command)
                if data is None and not isinstance(stored, Missing):
                    self.log.info("{operation}: {uid} left out by RetrieveResultConverter0 or the "
                                  "CompressionConverter of code {code}", operation=self.operation,
                                  uid=stored.sopInstanceUID, code=compression)
                    status = None
                else:
                    if not isinstance(stored, Missing) and targets[-1].state != ESTABLISHED:
                        left = located[position:]
                        target = await self._reopen(protocol, command, left, len(targets))
                        if target is None:
                            closeIfStored(data)
                            if protocol.state != ESTABLISHED:  # the reopening was stopped: left remaining
                                self._abandoned(protocol, progress, " again")
                                return False
                            if protocol.isCancelled(command):
                                return True
                            self.log.warn("{operation}: the association with {peer} was lost: the {count} objects "
                                          "left are not sent", operation=self.operation,
                                          peer=targets[-1].peerName(), count=len(left))
                            for rest in left:
                                progress.done(rest.sopInstanceUID, None)
                            return False
                        targets.append(target)
                    status = await self._sendOne(targets[-1], stored, data, compression,
                                                 self._originator(protocol, command), priority, unsent)
                progress.done(located[position].sopInstanceUID, status)  # the UID asked for
                if progress.remaining and self.reactor.seconds() - lastPending >= PENDING_INTERVAL:
                    lastPending = self.reactor.seconds()
                    respond(PENDING, progress, final=False)
            return False
        finally:
            ended.cancel()
            upcoming.close()
            for reason, count in unsent.items():
                self.log.warn("{operation}: {peer} {reason}: {count} objects of it not sent",
                              operation=self.operation, peer=targets[-1].peerName(), reason=reason, count=count)

    def _converter(self, protocol, compression, destination):
        """``convert(stored, data) -> (stored, data)`` for each object read
        (in the I/O pool; data None when left out): RetrieveResultConverter0,
        the CompressionConverterN line of an sN code, then NKI pixel data
        decompressed or compressed, or the image downsized, for the
        destination (``forPeer``; ``stored`` then has the syntax it gave)."""
        association = protocol.association
        scripts = self.compressionScripts

        def convert(stored, data):
            read = data
            try:
                if self.resultHook is not None:
                    data = withPlainPixels(data, stored.transferSyntax)
                    outcome, data = self.resultHook.applyToObject(data, stored.transferSyntax, association.callingAE,
                                                                  association.calledAE, destination, protocol.session)
                    if outcome in LEFT_OUT:
                        return stored, None
                if scripts is not None:
                    try:
                        kept, data = scripts.apply(data, stored.transferSyntax, compression,
                                                   association.callingAE, association.calledAE)
                    except IdentifierError as e:  # never sent without the line it should go through
                        self.log.warn("{operation}: {uid} left out: the line of compression {code} cannot "
                                      "read it: {error}", operation=self.operation, uid=stored.sopInstanceUID,
                                      code=compression, error=e)
                        return stored, None
                    if not kept:
                        return stored, None
                stored = renamed(stored, read, data)
                data, syntax = forPeer(data, stored.transferSyntax, compression)
                return stored._replace(transferSyntax=syntax), data
            except TranscodeError as e:
                self.log.warn("{operation}: {uid} is sent as stored: {error}", operation=self.operation,
                              uid=stored.sopInstanceUID, error=e)
                return stored, data
        return convert

    async def _sendOne(self, target, stored, data, compression, originator, priority, unsent):
        """One C-STORE sub-operation; its status (None: not even sent).  One
        the target takes in no syntax is counted in ``unsent`` (a
        ``Counter``) under the reason, to be logged once."""
        if isinstance(stored, Missing):
            self.log.warn("{operation}: {uid} cannot be read: {reason}",
                          operation=self.operation, uid=stored.sopInstanceUID, reason=stored.reason)
            return None
        syntaxes = choices(stored, target.acceptedSyntaxes(stored.sopClassUID), compression)
        if not syntaxes:
            closeIfStored(data)
            unsent[self._refusal(target, stored)] += 1
            return None
        try:
            syntax, data, refusals = await convertToFirst(stored, data, syntaxes, self.workers,
                                                          qualityOf(compression, self.lossyQuality))
        except TranscodeError as e:
            self.log.warn("{operation}: {uid} cannot be converted to {syntax}: {error}",
                          operation=self.operation, uid=stored.sopInstanceUID, syntax=syntaxes[-1], error=e)
            return None
        for refused, error in refusals:
            self.log.info("{operation}: {uid} cannot be converted to {refused} ({error}); sent as {syntax}",
                          operation=self.operation, uid=stored.sopInstanceUID, refused=refused, error=error,
                          syntax=syntax)
        try:
            response = await target.store(data, stored.sopClassUID, stored.sopInstanceUID, syntax, originator,
                                          priority)
        except Exception as e:
            self.log.warn("{operation}: C-STORE of {uid} to {peer} failed: {error}",
                          operation=self.operation, uid=stored.sopInstanceUID, peer=target.peerName(), error=e)
            return None
        status = response.get(commands.STATUS)
        if status != SUCCESS:
            self.log.warn("{operation}: {peer} answered C-STORE of {uid} with status {status}",
                          operation=self.operation, peer=target.peerName(), uid=stored.sopInstanceUID,
                          status=f"0x{status:04X}")
        return status

    # -- what C-MOVE and C-GET do differently ---------------------------------

    def _check(self, protocol, command):
        """Raise ``Refused`` if the request cannot be served at all."""

    def _describe(self, command):
        return ""

    def _refusal(self, target, stored):
        """Why ``target`` takes ``stored`` in no syntax we can send it in:
        it accepted no context for its class (proposed with the uncompressed
        syntaxes, which any SCP of the class takes), or none in a syntax of ours."""
        if not target.acceptedSyntaxes(stored.sopClassUID):
            return f"does not take SOP class {stored.sopClassUID} (it accepted no presentation context for it)"
        return (f"takes {stored.sopClassUID} in none of the syntaxes we can send it in "
                f"(stored as {stored.transferSyntax})")

    def _locate(self, instances):
        """The objects to send, from the ``pacscore.db.query.Instance`` rows
        the index found: as they are, each located as it is read
        (``_ReadAhead``)."""
        return defer.succeed(instances)

    def _destination(self, protocol, command):
        """Where the objects go, ``%s`` of the converter lines: the requestor (C-GET)."""
        return protocol.association.callingAE

    async def _open(self, protocol, command, located):
        """``(target, compression)``: where the C-STOREs go."""
        raise NotImplementedError

    async def _close(self, protocol, target):
        """Done with ``target``."""

    def _abandon(self, protocol, target):
        """The association of the requestor (``protocol``) ended while
        ``target`` was sent to: stop waiting for it (a C-GET's target is
        that association, whose requests failed with it)."""

    async def _reopen(self, protocol, command, left, opened):
        """A new target for the objects ``left`` after the association with
        the last of ``opened`` targets was lost, or None (also when the
        requestor cancels or its association ends meanwhile)."""
        return None

    def _originator(self, protocol, command):
        """The Move Originator (AE title, Message ID) of the sub-operations."""
        return None


class _ReadAhead:
    """The data sets of ``located`` (each a ``StoredObject``, an Instance
    to locate, or ``Missing``) in order, read in the I/O pool a batch
    (``batchBytes`` or ``batchCount`` objects) ahead of need."""

    batchBytes = 4 << 20
    batchCount = 32

    def __init__(self, reader, workers, located, convert, asStored=False):
        self.reader = reader
        self.workers = workers
        self.located = located
        self.convert = convert  # convert(stored, data) -> (stored, data or None), in the I/O pool
        self.asStored = asStored  # whether convert changes nothing but NKI pixel data
        self.position = 0
        self.ready = []
        self.reading = self._readBatch()

    def _readBatch(self):
        if self.position >= len(self.located):
            return None
        return self.workers.deferToWorker(self._readAll, self.position)

    def _readAll(self, start):
        """The objects from ``start`` on, up to ``batchCount`` of them, and
        no more once ``batchBytes`` are read."""
        batch, size = [], 0
        for held in self.located[start:start + self.batchCount]:
            if size >= self.batchBytes:
                break
            stored, data = (held, None) if isinstance(held, Missing) else self._read(held)
            batch.append((stored, data))
            size += 0 if isinstance(stored, Missing) else stored.size
        return batch

    def _read(self, held):
        """``(stored, data set)`` of ``held``: a large one sent as stored
        stays in its file (a ``StoredData``), others are read and converted
        (``stored`` then with the syntax they are in).  A file gone or
        damaged since it was found is ``(Missing, None)``; one stored
        again meanwhile is read from its new file (``ObjectReader.loading``),
        and is Missing too when the index fails while it is looked up."""
        where = held.path if isinstance(held, StoredObject) else held.objectFile
        try:
            return self.reader.loading(held, self._readFile, STREAMED_OBJECT if self.asStored else sys.maxsize)
        except (OSError, DatasetError) as e:
            return Missing(held.sopInstanceUID, f"{where}: {e}", isinstance(e, FileNotFoundError)), None
        except DATABASE_FAILURES as e:
            return Missing(held.sopInstanceUID, f"{where}: the index database: {databaseMessage(e)}"), None

    def _readFile(self, stored, data):
        """``data``: the data set bytes, or None when it is larger than
        ``STREAMED_OBJECT``; sent as stored, one whose pixels decode to
        more stays in its file too (``openStored`` checks the bytes)."""
        if data is None or self.asStored:
            opened = openStored(stored, self.workers.deferToWorker, data)
            if opened is not None:
                return stored, opened
        return self.convert(stored, self.reader.read(stored) if data is None else data)

    def close(self):
        """Close the files of objects read ahead and not sent."""
        for _, data in self.ready:
            closeIfStored(data)
        self.ready = []
        if self.reading is not None:
            self.reading.addCallback(lambda batch: [closeIfStored(data) for _, data in batch])

    async def next(self):
        """The next ``(stored, data set)`` (data None for a missing object
        or one left out)."""
        if not self.ready:
            self.ready = await self.reading
            self.position += len(self.ready)
            self.reading = self._readBatch()
        return self.ready.pop(0)


class MoveService(RetrieveService):
    """C-MOVE: to the destination AE, looked up in acrnema.map."""

    responseField = commands.C_MOVE_RSP
    operation = "C-MOVE"

    def __init__(self, index, query, reader, workers, aeTitle, reactor, acrNemaMap, counters=None,
                 dimseTimeout=300, connectTimeout=30, artimTimeout=30, titleStyle=PLAIN_TITLES, **hooks):
        super().__init__(index, query, reader, workers, aeTitle, reactor, counters, **hooks)
        self.acrNemaMap = acrNemaMap
        self.titleStyle = titleStyle  # how we write AE titles to the destination
        self.dimseTimeout = dimseTimeout
        self.connectTimeout = connectTimeout
        self.artimTimeout = artimTimeout  # ARTIMTimeOut: the A-ASSOCIATE-AC and A-RELEASE-RP waited for
        self._releasing = {}  # destination protocol -> Deferred firing once its background release ends

    def _check(self, protocol, command):
        destination = command.get(commands.MOVE_DESTINATION, "")
        if self.acrNemaMap.lookup(destination) is None:
            raise Refused(f"move destination {destination!r} is not in acrnema.map", MOVE_DESTINATION_UNKNOWN)

    def _describe(self, command):
        return f" to {command.get(commands.MOVE_DESTINATION, '')}"

    def _locate(self, instances):
        """Every object located (a ``StoredObject``, or ``Missing``) before
        the destination is reached: it is offered contexts for their SOP
        classes and syntaxes (``contextsFor``)."""
        return self.workers.deferToWorker(self.reader.locate, instances)

    def _destination(self, protocol, command):
        return command.get(commands.MOVE_DESTINATION, "").strip()

    async def _open(self, protocol, command, located):
        node = self.acrNemaMap.lookup(command.get(commands.MOVE_DESTINATION, ""))
        compression = protocol.association.compression or node.compression
        contexts = contextsFor(located, compression)
        if not contexts:
            return _Nowhere(node.ae), compression
        target = await associateNode(self.reactor, node, self.aeTitle, contexts, connectTimeout=self.connectTimeout,
                                     dimseTimeout=self.dimseTimeout, titleStyle=self.titleStyle,
                                     artimTimeout=self.artimTimeout, artimSetting="ARTIMTimeOut")
        return target, compression

    async def _close(self, protocol, target):
        """The destination released in the background: every sub-operation
        is done, so the final response does not wait for its A-RELEASE-RP
        (given up after ``artimTimeout``, the client's ARTIM, or by ``stop``)."""
        released = self._releasing[target] = defer.ensureDeferred(target.release())

        def forget(_):
            del self._releasing[target]
        released.addBoth(forget)

    def _abandon(self, protocol, target):
        """The destination's association aborted and closed, with a log line."""
        target.abandon(f"{self.operation} abandoned: its requestor {protocol.peerName()} is gone")

    def stop(self):
        """pacs stopping: the releases still going on in the background are
        given up, each with an A-ABORT and a log line, their connections
        closed once that is written (cut after ``CLOSE_BOUND`` s); fires
        once they are closed."""
        ending = list(self._releasing.values())
        for target in list(self._releasing):
            target.giveUpRelease("pacs stopping before the A-RELEASE-RP came")
        return defer.gatherResults(ending)

    async def _reopen(self, protocol, command, left, opened):
        """Another association with the destination (a damaged object, a
        restart or a timeout there must not fail the rest of the retrieve),
        at most ``MAX_REOPENS`` times a retrieve."""
        if opened > MAX_REOPENS or protocol.state != ESTABLISHED or protocol.isCancelled(command):
            return None
        destination = self._destination(protocol, command)
        self.log.info("{operation}: the association with {destination} was lost; opening another for the "
                      "{count} objects left", operation=self.operation, destination=destination, count=len(left))
        try:
            target, _ = await self._openUnlessCancelled(protocol, command, left)
        except Exception as e:
            self.log.warn("{operation}: cannot reach {destination} again: {error}", operation=self.operation,
                          destination=destination, error=e)
            return None
        return target

    def _originator(self, protocol, command):
        return protocol.association.callingAE, command.get(commands.MESSAGE_ID, 0)


class GetService(RetrieveService):
    """C-GET: back to the requestor, on its own association."""

    responseField = commands.C_GET_RSP
    operation = "C-GET"

    async def _open(self, protocol, command, located):
        return _ReturnPath(protocol), protocol.association.compression

    def _refusal(self, target, stored):
        return target.refusal(stored.sopClassUID) or super()._refusal(target, stored)


class _ReturnPath:
    """The requestor's association as the target of C-GET sub-operations:
    only the storage classes it took the SCP role for."""

    def __init__(self, protocol):
        self.protocol = protocol

    def acceptedSyntaxes(self, sopClassUID):
        if sopClassUID not in self.protocol.association.rolesAsSCU:
            return {}
        return self.protocol.acceptedSyntaxes(sopClassUID)

    def refusal(self, sopClassUID):
        """Why no object of ``sopClassUID`` goes back in any syntax, or None:
        the requestor must take the SCP role for its class (PS3.4 C.4.3.1)."""
        association = self.protocol.association
        if sopClassUID in association.rolesAsSCU:
            return None
        if any(sopClass == sopClassUID for sopClass, _ in association.contexts.values()):
            return (f"did not take the SCP role for {sopClassUID} (an SCP/SCU Role Selection item, "
                    f"PS3.7 D.3.3.4)")
        return f"has no presentation context for {sopClassUID} (not proposed, or not accepted)"

    @property
    def state(self):
        return self.protocol.state

    def store(self, *args):
        return self.protocol.store(*args)

    def peerName(self):
        return self.protocol.peerName()


class _Nowhere:
    """The target of a retrieve whose objects all are missing."""

    state = ESTABLISHED  # never lost: nothing is sent to it

    def __init__(self, ae):
        self.ae = ae

    def acceptedSyntaxes(self, sopClassUID):
        return {}

    def peerName(self):
        return self.ae

    def abandon(self, why):
        """Nothing to abort."""

    async def release(self):
        return None
