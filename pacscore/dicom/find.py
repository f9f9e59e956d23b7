"""C-FIND SCP on the query/retrieve models (PS3.4 C.4.1).

The query runs in a reader thread of the index, so a slow one holds
neither the reactor nor other associations; its rows are then encoded
``ENCODED`` at a time in the reactor's thread pool, each batch going out
while the next one is encoded, so the first answer does not wait for the
last.  Matches go out one pending response at a time, as fast as the
transport takes them; a C-CANCEL stops them at the next one, or stops the
query itself while it runs, as does the end of the association.  That
response loop, ``answerFind``, also serves the Modality Worklist
(pacscore.dicom.worklist).
"""

from twisted.internet import defer, task, threads
from twisted.logger import Logger

from pacscore.converters.context import Outcome
from pacscore.db.errors import DATABASE_FAILURES, databaseMessage
from pacscore.debuglog import IDENTIFIERS, serverLog
from pacscore.converters.hooks import LEFT_OUT
from pacscore.dicom import commands
from pacscore.dicom.datasets import IdentifierError, decodePeerDataset
from pacscore.dicom.identifiers import (
    IDENTIFIER_DOES_NOT_MATCH, UNABLE_TO_PROCESS, BadIdentifier, MatchEncoder, decodeIdentifier, logMalformed,
    malformedValues, readRequest, tagName)
from pacscore.dicom.models import modelOf
from pacscore.dicom.paging import SORT, pageOf, takePage, withSortKey
from pacscore.dicom.protocol import AWAITING_CLOSE
from pacscore.dicom.timing import timed
from pacscore.dicom.virtual import takeServerMask
from pacscore.storage.prefetcher import queriedPatient

SUCCESS = 0x0000
CANCELLED = 0xFE00
PENDING = 0xFF00
PENDING_UNMATCHED_KEYS = 0xFF01  # "one or more Optional Keys were not supported" (PS3.4 C.4.1.1.4)

# Matches sent before giving the reactor a turn (to read a C-CANCEL, say).
BATCH = 16
# Rows encoded at a time in a worker thread, while the matches before them go out.
ENCODED = 100
log = Logger()


def sendResponse(protocol, contextId, command, status, identifier=None, comment=None):
    """One C-FIND-RSP to ``command``: ``identifier`` the encoded match of a
    pending one, ``comment`` an Error Comment (cut to 64 characters)."""
    extra = {commands.ERROR_COMMENT: comment[:64]} if comment else None
    protocol.sendMessage(contextId, commands.response(command, commands.C_FIND_RSP, status, extra), identifier)


async def answerFind(protocol, contextId, command, query, clock, log, description, unmatched=()):
    """Answer a C-FIND with the matches ``query`` (a Deferred) fires with:
    a list of encoded ones, or ``StreamedMatches``.

    A failed query is answered 0xC000 (the index database's error, or its
    not answering in time, with one log line, anything else with its
    traceback); otherwise each match goes out as a pending response once
    the transport takes more, the reactor getting a turn every ``BATCH``
    matches, then Success, or Cancel as soon as a C-CANCEL came (one
    during the query cancels ``query``).
    ``description`` names the query in the log lines; ``unmatched`` holds
    (once ``query`` has fired) the tags of keys with values the query could
    not match, which makes the pending responses 0xFF01.
    """
    try:
        matches = await cancelledWith(protocol, command, query)
    except Exception as e:
        if protocol.isCancelled(command) and protocol.state != AWAITING_CLOSE:
            log.info("{peer}: {query} cancelled before its matches", peer=protocol.peerName(), query=description)
            return sendResponse(protocol, contextId, command, CANCELLED)
        return _failed(protocol, contextId, command, log, description, e)
    log.info("{peer}: {query}: {count} found", peer=protocol.peerName(), query=description,
             count=len(matches))
    pending = PENDING
    if unmatched:
        pending = PENDING_UNMATCHED_KEYS
        log.info("{peer}: {query}: keys not matched, answered 0xFF01: {keys}", peer=protocol.peerName(),
                 query=description, keys=", ".join(map(tagName, unmatched)))
    batches = matches.batches() if isinstance(matches, StreamedMatches) else iter([defer.succeed(matches)])
    upcoming = next(batches, None)
    sent = 0
    while upcoming is not None:
        try:
            batch = await upcoming
        except Exception as e:
            return _failed(protocol, contextId, command, log, description, e)
        if protocol.state == AWAITING_CLOSE:
            return _ended(log, protocol, description)
        upcoming = next(batches, None)  # encoded while this batch goes out
        for match in batch:
            if protocol.isCancelled(command):
                log.info("{peer}: C-FIND cancelled after {sent} answers of {count} found",
                         peer=protocol.peerName(), sent=sent, count=len(matches))
                return sendResponse(protocol, contextId, command, CANCELLED)
            sendResponse(protocol, contextId, command, pending, match)
            sent += 1
            await protocol.whenWritable()
            if sent % BATCH == 0:
                await task.deferLater(clock, 0, lambda: None)
    sendResponse(protocol, contextId, command, CANCELLED if protocol.isCancelled(command) else SUCCESS)


def _failed(protocol, contextId, command, log, description, error):
    """Answer 0xC000 for a query that failed with ``error``, with one error
    line for a failure of the index database, its traceback for any other;
    only an info line, and no answer, once the association has ended."""
    if protocol.state == AWAITING_CLOSE:
        return _ended(log, protocol, description)
    if isinstance(error, DATABASE_FAILURES):
        log.error("{peer}: {query} failed: the index database: {error}", peer=protocol.peerName(),
                  query=description, error=databaseMessage(error))
    else:
        log.failure("{peer}: {query} failed", peer=protocol.peerName(), query=description)
    return sendResponse(protocol, contextId, command, UNABLE_TO_PROCESS, comment=f"query failed: {databaseMessage(error)}")


def _ended(log, protocol, description):
    log.info("{peer}: {query} stopped: the association ended", peer=protocol.peerName(), query=description)


async def cancelledWith(protocol, command, query):
    """What ``query`` (a Deferred) fires with; a C-CANCEL of ``command``
    or the end of the association (``whenEnded``) meanwhile cancels it at
    once."""
    stops = [protocol.whenCancelled(command), protocol.whenEnded()]
    for stop in stops:
        stop.addCallbacks(lambda _: query.cancel(), lambda failure: failure.trap(defer.CancelledError))
    try:
        return await query
    finally:
        for stop in stops:
            stop.cancel()


class FindService:
    """Answers C-FIND on every query/retrieve model from the index."""

    log = Logger()

    def __init__(self, index, query, retrieveAE, clock, counters=None, requestHook=None, resultHook=None,
                 virtual=None, prefetcher=None):
        self.index = index
        self.query = query
        self.retrieveAE = retrieveAE
        self.clock = clock
        self.counters = counters if counters is not None else {}
        self.requestHook = requestHook  # QueryConverter0 (pacscore.converters.hooks.DatasetHook)
        self.resultHook = resultHook    # QueryResultConverter0
        self.virtual = virtual          # pacscore.dicom.virtual.VirtualServers, or None
        self.prefetcher = prefetcher    # pacscore.storage.prefetcher.Prefetcher (Prefetcher = 1), or None

    def handle(self, protocol, contextId, command, dataset):
        return defer.ensureDeferred(self._find(protocol, contextId, command, dataset))

    async def _find(self, protocol, contextId, command, dataset):
        sopClass, syntax = protocol.association.contexts[contextId]
        try:
            data = await convertIdentifier(self.requestHook, self.clock, protocol, dataset, syntax)
            if data is DESTROYED:
                return sendResponse(protocol, contextId, command, SUCCESS)
            identifier, request, mask, malformed = await threads.deferToThreadPool(
                self.clock, self.clock.getThreadPool(), readIdentifier, data, syntax, modelOf(sopClass).levels,
                self.query.columnVRs, paging=True, named=True)
            sortBy = self._requestedSort(request)
        except BadIdentifier as e:
            self.log.warn("{peer}: C-FIND refused: {error}", peer=protocol.peerName(), error=e)
            return sendResponse(protocol, contextId, command, e.status, comment=str(e))
        logMalformed(malformed, protocol.peerName())  # the request is accepted
        self.counters["queries"] = self.counters.get("queries", 0) + 1
        keep = resultFilter(self.resultHook, protocol)
        if sortBy is not None:
            request = withSortKey(identifier, request, sortBy.tag, self.query.columnVRs[sortBy.tag])
        encoder = MatchEncoder(request, self.retrieveAE, syntax, keep)
        unmatched = []
        # with virtual servers, the page is cut of the answers merged with theirs (_merged)
        page = request.page if self.virtual is None else None
        matches = timed(self.index.queryForPeer(self._matches, request, unmatched, sortBy, page), self.counters,
                        "queryTime").addCallback(self._prefetching, encoder)
        if self.virtual is not None:
            matches = defer.ensureDeferred(self._withVirtualServers(matches, sopClass, identifier, syntax, request,
                                                                    keep, mask, protocol.association.callingAE,
                                                                    sortBy))
        await answerFind(protocol, contextId, command, matches,
                         self.clock, self.log, f"C-FIND {modelOf(sopClass).name} at {request.level} level",
                         unmatched)

    def _requestedSort(self, request):
        """The ``SortBy`` of the sort column of ``request``'s page (Conquest's
        (9999,0C00)), None without one.  Raises ``BadIdentifier`` (A900)
        for a column the level's tables lack."""
        if request.page is None or not request.page.sort:
            return None
        try:
            return self.query.requestedSort(request.level, request.page.sort)
        except ValueError as e:
            raise BadIdentifier(f"{tagName(SORT)} {request.page.sort[:64]!r}: {e} at {request.level} level",
                                IDENTIFIER_DOES_NOT_MATCH) from e

    async def _withVirtualServers(self, matches, sopClass, identifier, syntax, request, keep, mask, callingAE,
                                  sortBy):
        """Our matches, then the new ones of the virtual servers (of
        ``mask``, but not the requestor ``callingAE``): of the request's
        page, those sorted by ``sortBy`` (``paging.pageOf``)."""
        local = await matches
        remote = await self.virtual.find(sopClass, identifier, mask, callingAE)
        return await threads.deferToThreadPool(self.clock, self.clock.getThreadPool(), self._merged,
                                               local, remote, request, syntax, keep, sortBy)

    def _merged(self, local, remote, request, syntax, keep, sortBy):
        """In a worker: every one of our matches (``local``, StreamedMatches)
        encoded, then merged with those of the virtual servers; of a
        request with a page, that page of them."""
        merged = self.virtual.merge(local.encoded(local.rows), remote, request.level, syntax, keep)
        return merged if request.page is None else pageOf(merged, request.page, sortBy, syntax)

    def _matches(self, connection, request, unmatched, sortBy=None, page=None):
        """In a reader thread: the matching rows (in the order of
        ``sortBy``, those of ``page``, pacscore.dicom.paging), and the one
        patient they are about when there is a prefetcher; the tags of the
        keys it could not match go into ``unmatched``."""
        unmatched.extend(self.query.unmatchedKeys(connection, request.level, request.keys))
        limit, offset = (None, 0) if page is None else (page.limit, page.offset)
        rows = self.query.find(connection, request.level, request.keys, limit, offset,
                               sortBy=None if sortBy is None else sortBy.order)
        patient = None if self.prefetcher is None else queriedPatient(request.keys, rows)
        return rows, patient

    def _prefetching(self, found, encoder):
        rows, patient = found
        if patient is not None:
            self.prefetcher.start(patient)
        return StreamedMatches(self.clock, rows, encoder.encode)


class StreamedMatches:
    """The matching rows of a C-FIND, encoded into response identifiers
    ``ENCODED`` rows at a time in the reactor's thread pool."""

    def __init__(self, reactor, rows, encode):
        self.reactor = reactor
        self.rows = rows
        self.encode = encode  # encode(row) -> bytes, or None to leave the row out (MatchEncoder.encode)

    def __len__(self):
        return len(self.rows)

    def batches(self):
        """An iterator of Deferreds, each firing with the encoded matches of
        the next ``ENCODED`` rows; each batch starts being encoded only when
        it is asked for."""
        for start in range(0, len(self.rows), ENCODED):
            yield threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.encoded,
                                            self.rows[start:start + ENCODED])

    def encoded(self, rows):
        """In a worker: the encoded matches of ``rows``."""
        return [match for match in map(self.encode, rows) if match is not None]


DESTROYED = object()


class RequestRejected(BadIdentifier):
    """A request converter line said ``reject``."""


async def convertIdentifier(hook, reactor, protocol, dataset, transferSyntax, moveDestination=None):
    """The identifier bytes of a request after its converter line (``hook``,
    e.g. QueryConverter0; ``moveDestination`` where a retrieve sends); see
    ``convertRequest``."""
    association = protocol.association
    data = None if dataset is None else bytes(dataset.data)
    if data is not None:
        await dumpDatasets(reactor, protocol.peerName(), "query identifier", [data], transferSyntax, IDENTIFIERS)
    return await convertRequest(hook, reactor, data, transferSyntax, association.callingAE, association.calledAE,
                                moveDestination, protocol.session)


def dumpDatasets(reactor, peer, what, encoded, transferSyntax, level):
    """Write the data sets ``encoded`` (bytes each) to the debug log as
    text when the debug level (pacscore.debuglog) asks for ``level``;
    they are decoded in the reactor's thread pool.  A Deferred."""
    if not serverLog.wants(level):
        return defer.succeed(None)

    def logEach(texts):
        for text in texts:
            log.debug("{peer}: {what}:\n{dump}", peer=peer, what=what, dump=text, debugLevel=level)
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), _describe, encoded,
                                     transferSyntax).addCallback(logEach)


def _describe(encoded, transferSyntax):
    texts = []
    for data in encoded:
        try:
            texts.append(str(decodePeerDataset(data, transferSyntax)))
        except IdentifierError as e:
            texts.append(f"(cannot be decoded: {e})")
    return texts


def readIdentifier(data, transferSyntax, levels, columnVRs=None, matching=True, paging=False, named=False):
    """In a worker (a big identifier decodes for seconds): ``(identifier,
    request, mask, malformed)`` of an identifier's bytes, decoded once: the Dataset
    without its virtual server mask and Conquest's paging elements, its
    ``Request`` (``readRequest``, of keys ``matching`` or not, its ``page``
    that of those elements when ``paging``, a C-FIND's, ``takePage``; the
    others ignore them), the mask (``takeServerMask``) and, when
    ``named`` (a peer's request), the texts naming its values taken as they
    are (``malformedValues``), for ``logMalformed`` once the request is
    accepted (else ``[]``).  Raises ``BadIdentifier``."""
    identifier = decodeIdentifier(data, transferSyntax)
    mask = takeServerMask(identifier)
    page = takePage(identifier, read=paging)
    request = readRequest(identifier, transferSyntax, levels, columnVRs, matching)._replace(page=page)
    return identifier, request, mask, malformedValues(identifier) if named else []


async def convertRequest(hook, reactor, data, transferSyntax, callingAE, calledAE, moveDestination=None,
                         session=None):
    """Identifier bytes after a request converter line (``hook``; run in
    the reactor's thread pool, with the ``session`` of the association
    asking, if any), or DESTROYED when the line said
    ``destroy``. Raises RequestRejected for ``reject`` and BadIdentifier
    for data the line cannot decode."""
    if hook is None or data is None:
        return data
    try:
        outcome, data = await threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), hook.applyToBytes, data, transferSyntax, callingAE, calledAE,
            moveDestination, session)
    except IdentifierError as e:
        raise BadIdentifier(str(e), UNABLE_TO_PROCESS) from e
    if outcome is Outcome.REJECT:
        raise RequestRejected(f"rejected by {hook.script.key}", UNABLE_TO_PROCESS)
    return DESTROYED if outcome is Outcome.DESTROY else data


def resultFilter(hook, protocol):
    """For the encoders: ``keep(dataset)`` running a result converter line
    (``hook``, e.g. QueryResultConverter0) on each answer to the
    association of ``protocol`` (in its Lua state); see ``resultFilterFor``."""
    if hook is None:
        return None
    return resultFilterFor(hook, protocol.association.callingAE, protocol.association.calledAE, protocol.session)


def resultFilterFor(hook, callingAE, calledAE, session=None):
    """``keep(dataset)`` running a result converter line (``hook``) on each
    answer (with the ``session`` of the association asking, if any), False
    when the line said ``destroy`` or ``reject``; None without a hook."""
    if hook is None:
        return None
    return lambda dataset: hook.run(dataset, callingAE, calledAE, session=session)[0] not in LEFT_OUT
