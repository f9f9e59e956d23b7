"""C-FIND SCP on the query/retrieve models (PS3.4 C.4.1).

The query and the encoding of every match run in a reader thread of the
index, so a slow query holds neither the reactor nor other associations.
Matches then go out one pending response at a time, as fast as the
transport takes them; a C-CANCEL stops them at the next one.
"""

from twisted.internet import defer, task
from twisted.logger import Logger

from pacscore.dicom import commands
from pacscore.dicom.identifiers import UNABLE_TO_PROCESS, BadIdentifier, MatchEncoder, readRequest
from pacscore.dicom.models import modelOf

SUCCESS = 0x0000
CANCELLED = 0xFE00
PENDING = 0xFF00

# Matches sent before giving the reactor a turn (to read a C-CANCEL, say).
BATCH = 64


class FindService:
    """Answers C-FIND on every query/retrieve model from the index."""

    log = Logger()

    def __init__(self, index, query, retrieveAE, clock, counters=None):
        self.index = index
        self.query = query
        self.retrieveAE = retrieveAE
        self.clock = clock
        self.counters = counters if counters is not None else {}

    def handle(self, protocol, contextId, command, dataset):
        return defer.ensureDeferred(self._find(protocol, contextId, command, dataset))

    async def _find(self, protocol, contextId, command, dataset):
        sopClass, syntax = protocol.association.contexts[contextId]
        data = None if dataset is None else bytes(dataset.data)

        def respond(status, identifier=None, comment=None):
            extra = {commands.ERROR_COMMENT: comment[:64]} if comment else None
            protocol.sendMessage(contextId, commands.response(command, commands.C_FIND_RSP, status, extra),
                                 identifier)

        try:
            request = readRequest(data, syntax, modelOf(sopClass).levels)
        except BadIdentifier as e:
            self.log.warn("{peer}: C-FIND refused: {error}", peer=protocol.peerName(), error=e)
            return respond(e.status, comment=str(e))
        self.counters["queries"] = self.counters.get("queries", 0) + 1
        encoder = MatchEncoder(request, self.retrieveAE, syntax)
        try:
            matches = await self.index.runQuery(self._matches, request, encoder)
        except Exception as e:
            self.log.failure("{peer}: C-FIND at {qrLevel} level failed", peer=protocol.peerName(),
                             qrLevel=request.level)
            return respond(UNABLE_TO_PROCESS, comment=f"query failed: {e}")
        self.log.info("{peer}: C-FIND {model} at {qrLevel} level: {count} matches",
                      peer=protocol.peerName(), model=modelOf(sopClass).name, qrLevel=request.level,
                      count=len(matches))
        for number, match in enumerate(matches, 1):
            if protocol.isCancelled(command):
                self.log.info("{peer}: C-FIND cancelled after {sent} of {count} matches",
                              peer=protocol.peerName(), sent=number - 1, count=len(matches))
                return respond(CANCELLED)
            respond(PENDING, match)
            await protocol.whenWritable()
            if number % BATCH == 0:
                await task.deferLater(self.clock, 0, lambda: None)
        if protocol.isCancelled(command):
            return respond(CANCELLED)
        respond(SUCCESS)

    def _matches(self, connection, request, encoder):
        """In a reader thread: the encoded matches."""
        rows = self.query.find(connection, request.level, request.keys)
        return [encoder.encode(row) for row in rows]
