"""Forwarding MPPS to other systems (dicom.ini ``ForwardMPPSTo``), as
dcm4chee forwards a modality's procedure steps to a RIS.

Every N-CREATE and N-SET this archive accepted is sent on, with the same
SOP Instance UID and attributes, to each AE title the key lists
(acrnema.map gives host and port), on a new association, tried
``ATTEMPTS`` times ``RetryDelay`` seconds apart.

A message to forward is a row of the ``PacsMPPSForwards`` table, written
by the index writer in the transaction that records the step, so before
the modality gets its Success: what was accepted is forwarded even when
pacs stops or crashes first.  The row goes once the destination took the
message (Success, or a Warning status, logged as a warning) or refused it
(a Failure status or none: ``client.taken``; logged, not retried) or when the
destination is not in acrnema.map.  The messages to one destination go one
at a time in the order they came, so an N-SET never overtakes its
N-CREATE: when a destination cannot be reached its messages wait, and are
tried again ``RetryDelay`` seconds later, with the next message for it and
when pacs starts.
"""

from sqlalchemy import Column, Double, Integer, String, Table, select
from twisted.internet import defer
from twisted.logger import Logger

from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, UNCOMPRESSED
from pacscore.db.schema import LARGE_BINARY, MYSQL_TABLE, OwnTable
from pacscore.dicom import commands
from pacscore.dicom.client import answerTo, sendToNode, taken
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.mpps import MPPS
from pacscore.dicom.negotiation import PLAIN_TITLES, TitleStyle

ATTEMPTS = 3
SUCCESS = 0x0000


def destinationsFrom(ini):
    """The AE titles of ``ForwardMPPSTo`` (comma or space separated)."""
    return [ae for ae in ini.get("ForwardMPPSTo", "").replace(",", " ").split() if ae]


def forwardCommand(field, uid):
    """The command of an N-CREATE-RQ or N-SET-RQ of step ``uid``."""
    if field == commands.N_CREATE_RQ:
        ids = {commands.AFFECTED_SOP_CLASS_UID: MPPS, commands.AFFECTED_SOP_INSTANCE_UID: uid}
    else:
        ids = {commands.REQUESTED_SOP_CLASS_UID: MPPS, commands.REQUESTED_SOP_INSTANCE_UID: uid}
    return {commands.COMMAND_FIELD: field, **ids, commands.COMMAND_DATASET_TYPE: commands.DATASET_PRESENT}


def buildTable(metadata):
    return Table(
        "PacsMPPSForwards", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("Destination", String(16), nullable=False),
        Column("SOPInstanceUID", String(64), nullable=False),
        Column("CommandField", Integer, nullable=False),
        Column("Queued", Double, nullable=False),
        Column("Dataset", LARGE_BINARY, nullable=False),  # Explicit VR Little Endian
        **MYSQL_TABLE)


class WaitingForwards(OwnTable):
    """The ``PacsMPPSForwards`` table: accepted MPPS messages not yet taken
    or refused by a destination."""

    build = staticmethod(buildTable)

    def add(self, connection, destinations, field, uid, dataset):
        """In the writer, in the transaction recording the step: queue the
        N-CREATE or N-SET (``field``) of step ``uid`` for ``destinations``."""
        data, now = encodeDataset(dataset, EXPLICIT_VR_LITTLE_ENDIAN), self.clock()
        connection.execute(self.table.insert(), [
            {"Destination": ae, "SOPInstanceUID": uid, "CommandField": field, "Queued": now, "Dataset": data}
            for ae in destinations])

    def remove(self, connection, id):
        """In the writer: forget a message that was dealt with."""
        connection.execute(self.table.delete().where(self.table.c.id == id))

    def waiting(self, connection, destination=None):
        """In a reader: the rows waiting for ``destination`` (for every
        destination when None), in the order they came."""
        table = self.table
        query = select(table).order_by(table.c.id)
        if destination is not None:
            query = query.where(table.c.Destination == destination)
        return connection.execute(query).fetchall()


class MppsForwarder:
    """Sends the accepted MPPS messages that ``queue`` (WaitingForwards)
    holds on to ``destinations`` (AE titles of ``acrNemaMap``); see the
    module docstring."""

    log = Logger()

    def __init__(self, queue, destinations, acrNemaMap, aeTitle, reactor, retryDelay=100, connectTimeout=30,
                 dimseTimeout=300, titleStyle=PLAIN_TITLES):
        self.queue = queue
        self.index = queue.index
        self.destinations = list(destinations)
        self.acrNemaMap = acrNemaMap
        self.aeTitle = aeTitle
        self.reactor = reactor
        self.retryDelay = retryDelay
        self.connectTimeout = connectTimeout
        self.dimseTimeout = dimseTimeout
        self.titleStyle = titleStyle
        self._sending = {}  # destination: Deferred of the pass over its waiting messages
        self._again = set()  # destinations with a message queued during their pass
        self._retries = {}  # destination: the delayed call of its next pass
        self._unreachable = set()  # ids of the messages whose failure was logged as an error

    @classmethod
    def fromConfiguration(cls, queue, configuration, aeTitle, reactor):
        """The forwarder of dicom.ini, or None when ``ForwardMPPSTo`` names nobody."""
        ini = configuration.ini
        destinations = destinationsFrom(ini)
        if not destinations:
            return None
        for ae in destinations:
            if configuration.acrNemaMap.lookup(ae) is None:
                cls.log.warn("ForwardMPPSTo: {ae} is not in acrnema.map: procedure steps will not reach it", ae=ae)
        return cls(queue, destinations, configuration.acrNemaMap, aeTitle, reactor,
                   retryDelay=ini.getint("RetryDelay", 100), dimseTimeout=configuration.tcpipTimeout,
                   titleStyle=TitleStyle.fromIni(ini))

    def record(self, connection, field, uid, dataset):
        """In the writer, in the step's transaction: queue an accepted
        N-CREATE or N-SET (``field``) of step ``uid`` with its attributes
        (a Dataset) for every destination; ``send()`` once it committed."""
        self.queue.add(connection, self.destinations, field, uid, dataset)

    def send(self):
        """Send what waits for every destination; fires when each was
        tried, never fails."""
        return defer.DeferredList([self._pass(ae) for ae in self.destinations])

    def resume(self):
        """At start-up: send what waited when pacs stopped; fires when it
        was tried, never fails."""
        d = self.index.runQuery(self.queue.waiting)

        def sendThem(rows):
            for ae in sorted({row.Destination for row in rows}):
                count = sum(row.Destination == ae for row in rows)
                if ae in self.destinations:
                    self.log.info("MPPS: {count} message(s) for {ae} waited when pacs stopped; sending them now",
                                  count=count, ae=ae)
                else:
                    self.log.warn("MPPS: {count} message(s) for {ae} wait in PacsMPPSForwards, but ForwardMPPSTo no "
                                  "longer names {ae}: they are not sent", count=count, ae=ae)
            return self.send()

        d.addCallback(sendThem)
        d.addErrback(lambda failure: self.log.failure("MPPS: the messages to forward could not be read", failure))
        return d

    def stop(self):
        """Cancel the retries that are due later."""
        for call in self._retries.values():
            if call.active():
                call.cancel()
        self._retries.clear()

    def _pass(self, ae):
        """Send what waits for ``ae``, unless a pass for it runs: it then
        makes another pass when done."""
        if ae in self._sending:
            self._again.add(ae)
            return self._sending[ae]
        retry = self._retries.pop(ae, None)
        if retry is not None and retry.active():
            retry.cancel()
        d = self._sending[ae] = defer.ensureDeferred(self._sendWaiting(ae))
        d.addErrback(lambda failure: self.log.failure("MPPS: forwarding to {ae} failed", failure, ae=ae))

        def done(_):
            del self._sending[ae]
            if ae in self._again:
                self._again.discard(ae)
                return self._pass(ae)
        return d.addCallback(done)

    async def _sendWaiting(self, ae):
        for row in await self.index.runQuery(self.queue.waiting, ae):
            if not await self._sendOne(ae, row):
                self._retries[ae] = self.reactor.callLater(self.retryDelay, self._pass, ae)
                return
            self._unreachable.discard(row.id)
            await self.index.runWrite(self.queue.remove, row.id)

    async def _sendOne(self, ae, row):
        """Whether the message of ``row`` was dealt with: taken, refused, or
        for an AE acrnema.map does not know."""
        uid, field = row.SOPInstanceUID, row.CommandField
        name = commands.COMMAND_NAMES[field]
        node = self.acrNemaMap.lookup(ae)
        if node is None:
            self.log.error("MPPS {uid}: {ae} is not in acrnema.map, so the {name} is not forwarded", uid=uid, ae=ae,
                           name=name)
            return True
        answers = []

        async def send(association):
            contextId, syntax = association.contextFor(MPPS)
            dataset = decodeDataset(row.Dataset, EXPLICIT_VR_LITTLE_ENDIAN)
            answers.append(await answerTo(association, contextId, forwardCommand(field, uid),
                                          encodeDataset(dataset, syntax)))
        if not await sendToNode(self.reactor, node, self.aeTitle, [(MPPS, list(UNCOMPRESSED))], send, self.log,
                                f"MPPS {uid}: {name}", ATTEMPTS, self.retryDelay, self.connectTimeout,
                                self.dimseTimeout, self.titleStyle):
            log = self.log.warn if row.id in self._unreachable else self.log.error
            self._unreachable.add(row.id)
            log("MPPS {uid}: the {name} could not be forwarded to {ae}; it waits, with what follows it, and is tried "
                "again in {delay} s", uid=uid, name=name, ae=ae, delay=self.retryDelay)
            return False
        response = answers[-1]
        status = None if response is None else response[commands.STATUS]
        if not taken(response):
            self.log.warn("MPPS {uid}: {ae} refused the forwarded {name} with status {status}", uid=uid, ae=ae,
                          name=name, status="none" if status is None else f"0x{status:04X}")
        elif status == SUCCESS:
            self.log.info("MPPS {uid}: {name} forwarded to {ae}", uid=uid, name=name, ae=ae)
        else:
            self.log.warn("MPPS {uid}: {name} forwarded to {ae}, taken with warning status {status}", uid=uid,
                          name=name, ae=ae, status=f"0x{status:04X}")
        return True
