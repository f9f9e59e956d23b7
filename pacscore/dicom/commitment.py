"""Storage Commitment Push Model SCP (PS3.4 annex J), what modalities ask
before they delete the images they sent.

An N-ACTION-RQ (action type 1, on the well-known instance
1.2.840.10008.1.20.1.1) lists objects by SOP class and instance and
carries a Transaction UID.  It is answered at once (Success when it is
well formed), then each object is looked up in the index and its file on
its MAG device (or mirror) read to its end in the I/O pool: committed
when both are there, whole, and the SOP class agrees.  The outcome goes
back in an N-EVENT-REPORT-RQ, event type 1 when every object was
committed, 2 when some were not (Failed SOP Sequence: Failure Reason
0x0112 no such object instance, 0x0119 class / instance conflict, 0x0110
processing failure for a file that cannot be read, cut short or
damaged).  The report goes on the requesting association while it is
open and takes it, else on a new association to the requestor's AE
(acrnema.map), proposing the SOP class with the SCP role (the objects
checked once it is open), tried ``ATTEMPTS`` times ``RetryDelay`` seconds
apart, and while it cannot be delivered once more every ``RetryDelay``
seconds (a modality switched off for the night gets it when it is back),
a log line each time, until the request is ``MaximumCommitmentAge``
seconds old: then it is given up with an error line.  A report the
requestor refuses there (a Failure status, or none: ``client.taken``)
is not sent again, with a warning: a modality that still wants it can ask
again (one answering a Warning status took it).  A new request with the
Transaction UID of one from the same requestor still unreported replaces
it (PS3.4 J.3.3: a Transaction UID names one transaction, reported once):
the older one is no longer checked nor reported, only the newer one is.

Answering Success promises the report, so a request is written to the
``PacsCommitments`` table of the index database before that answer (a
failure to write it is answered 0x0110) and removed when its report was
taken (that row only: a newer request that replaced it came at another
``Received``).  Those left when pacs stopped or crashed are looked up and
reported again, on a new association, when it starts, but for one whose
requestor asked again while they were read: only that newer request is
reported.  While the index
may miss stored objects (a regen pending or under way:
``IndexCompleteness``) the objects are checked, and
reported, once it is complete: not found meanwhile, they would be reported
as not committed.
"""

import json

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from sqlalchemy import Column, Double, String, Table, select
from twisted.internet import defer, threads
from twisted.logger import Logger

from pacscore.codecs.syntaxes import UNCOMPRESSED
from pacscore.db.completeness import IndexCompleteness
from pacscore.db.errors import DATABASE_FAILURES, databaseMessage
from pacscore.db.schema import LARGE_BINARY, MYSQL_TABLE, OwnTable, checkFits
from pacscore.dicom import commands
from pacscore.dicom.commands import (
    CLASS_INSTANCE_CONFLICT, INVALID_ARGUMENT_VALUE, INVALID_OBJECT_INSTANCE, NO_SUCH_ACTION, NO_SUCH_OBJECT_INSTANCE,
    NO_SUCH_SOP_CLASS, PROCESSING_FAILURE)
from pacscore.dicom.client import answerTo, sendToNode, taken
from pacscore.dicom.datasets import IdentifierError, decodePeerDataset, encodeDataset
from pacscore.dicom.negotiation import PLAIN_TITLES
from pacscore.dicom.storeddata import STREAMED_OBJECT
from pacscore.dicom.uids import isUID
from pacscore.storage.attributes import DatasetError

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_COMMITMENT = 1  # the Action Type ID of a commitment request
ALL_COMMITTED, SOME_FAILED = 1, 2  # Event Type IDs

SUCCESS = 0x0000

ATTEMPTS = 3  # a report's first attempts on new associations, RetryDelay apart; later ones one at a time
MAXIMUM_AGE = 7 * 24 * 3600  # seconds an unreported request is tried again (MaximumCommitmentAge)


class BadCommitmentRequest(Exception):
    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def readCommitmentRequest(command, data, syntax):
    """In a worker: ``(transaction UID, [(SOP class, SOP instance)])`` of an
    N-ACTION-RQ; BadCommitmentRequest with the status to answer otherwise."""
    if command.get(commands.REQUESTED_SOP_CLASS_UID) != STORAGE_COMMITMENT:
        raise BadCommitmentRequest("not a Storage Commitment Push Model request", NO_SUCH_SOP_CLASS)
    if command.get(commands.REQUESTED_SOP_INSTANCE_UID) != STORAGE_COMMITMENT_INSTANCE:
        raise BadCommitmentRequest(f"the requested SOP instance must be {STORAGE_COMMITMENT_INSTANCE}",
                                   INVALID_OBJECT_INSTANCE)
    if command.get(commands.ACTION_TYPE_ID) != REQUEST_COMMITMENT:
        raise BadCommitmentRequest(f"action type {command.get(commands.ACTION_TYPE_ID)} is not 1 (request "
                                   "storage commitment)", NO_SUCH_ACTION)
    if data is None:
        raise BadCommitmentRequest("no data set", INVALID_ARGUMENT_VALUE)
    try:
        dataset = decodePeerDataset(data, syntax)  # a value that is no UID: _uidOf tells (pydicomchecks)
        transaction = _uidOf(dataset, "TransactionUID")
        references = [(_uidOf(item, "ReferencedSOPClassUID"), _uidOf(item, "ReferencedSOPInstanceUID"))
                      for item in dataset.get("ReferencedSOPSequence", None) or []]
    except (IdentifierError, AttributeError, TypeError, ValueError) as e:
        raise BadCommitmentRequest(f"unreadable data set: {e}", INVALID_ARGUMENT_VALUE) from e
    if not transaction:
        raise BadCommitmentRequest("no Transaction UID (0008,1195)", INVALID_ARGUMENT_VALUE)
    if not references or not all(sopClass and sop for sopClass, sop in references):
        raise BadCommitmentRequest("no Referenced SOP Sequence (0008,1199) of classes and instances",
                                   INVALID_ARGUMENT_VALUE)
    return transaction, references


_UID_NAMES = {"TransactionUID": "Transaction UID (0008,1195)",
              "ReferencedSOPClassUID": "Referenced SOP Class UID (0008,1150)",
              "ReferencedSOPInstanceUID": "Referenced SOP Instance UID (0008,1155)"}
SHOWN = 80  # characters of a bad value an error shows


def _uidOf(dataset, keyword):
    """The UID the attribute ``keyword`` of ``dataset`` holds ("" when it
    holds none); BadCommitmentRequest (0x0115) unless that is one UID:
    several values, a wildcard or other characters than digits and dots,
    over 64 of them."""
    value = dataset.get(keyword)
    if not value:
        return ""
    if isinstance(value, str):
        text = value.strip("\0 ")
        if not text or isUID(text):
            return str(text)
    else:
        text = "\\".join(map(str, value))
    raise BadCommitmentRequest(f"{_UID_NAMES[keyword]} {text[:SHOWN]!r} is not a UID", INVALID_ARGUMENT_VALUE)


def storedInstances(connection, query, references):
    """In a reader thread: ``{SOP instance UID: Instance}`` of the referenced
    objects the index holds (``IndexQuery.instancesByUID``: a request
    recorded before its values were checked may hold others than UIDs)."""
    return {instance.sopInstanceUID: instance
            for instance in query.instancesByUID(connection, [sop for _, sop in references])}


def commitmentOutcome(reader, stored, references):
    """In the I/O pool: ``(committed, failed, unreadable)``, the references
    whose objects are in ``stored`` (``storedInstances``) under their class
    with a file, or else a mirror copy, that reads to its end, ``(class, instance, reason)`` of the others
    and ``{instance: why}`` of those failed for their file."""
    committed, failed, unreadable = [], [], {}
    for sopClass, sop in references:
        instance = stored.get(sop)
        if instance is None:
            failed.append((sopClass, sop, NO_SUCH_OBJECT_INSTANCE))
        elif instance.sopClassUID != sopClass:
            failed.append((sopClass, sop, CLASS_INSTANCE_CONFLICT))
        elif (why := _unreadable(reader, instance)) is not None:
            failed.append((sopClass, sop, PROCESSING_FAILURE))
            unreadable[sop] = why
        else:
            committed.append((sopClass, sop))
    return committed, failed, unreadable


def _checkedReport(reader, stored, references, transaction, retrieveAE):
    """In the I/O pool: ``commitmentOutcome`` and the ``eventReport`` of
    it (a report of thousands of items builds for a good part of a
    second)."""
    committed, failed, unreadable = commitmentOutcome(reader, stored, references)
    return committed, failed, unreadable, eventReport(transaction, committed, failed, retrieveAE)


def _unreadable(reader, instance):
    """Why neither the file of ``instance`` nor its mirror copy reads to
    its end, checked as a retrieve reads it (``ObjectReader.loading``);
    None when one does."""
    try:
        reader.loading(instance, lambda stored, data: None, STREAMED_OBJECT)
    except (OSError, DatasetError) as e:
        return str(e) or type(e).__name__
    return None


def eventReport(transaction, committed, failed, retrieveAE):
    """``(event type, Dataset)`` of the N-EVENT-REPORT of a commitment."""
    dataset = Dataset()
    dataset.TransactionUID = transaction
    if committed:
        dataset.RetrieveAETitle = retrieveAE
        dataset.ReferencedSOPSequence = Sequence([_item(sopClass, sop) for sopClass, sop in committed])
    if failed:
        items = []
        for sopClass, sop, reason in failed:
            item = _item(sopClass, sop)
            item.FailureReason = reason
            items.append(item)
        dataset.FailedSOPSequence = Sequence(items)
    return (SOME_FAILED if failed else ALL_COMMITTED), dataset


def _item(sopClass, sop):
    item = Dataset()
    item.ReferencedSOPClassUID = sopClass
    item.ReferencedSOPInstanceUID = sop
    return item


def reportCommand(eventType):
    return {commands.COMMAND_FIELD: commands.N_EVENT_REPORT_RQ, commands.AFFECTED_SOP_CLASS_UID: STORAGE_COMMITMENT,
            commands.AFFECTED_SOP_INSTANCE_UID: STORAGE_COMMITMENT_INSTANCE, commands.EVENT_TYPE_ID: eventType,
            commands.COMMAND_DATASET_TYPE: commands.DATASET_PRESENT}


def buildTable(metadata):
    return Table(
        "PacsCommitments", metadata,
        Column("TransactionUID", String(64), primary_key=True),
        Column("CallingAE", String(16), primary_key=True),
        Column("Received", Double, nullable=False),
        Column("Refs", LARGE_BINARY, nullable=False),  # JSON [[class, instance], ...]
        **MYSQL_TABLE)


class PendingCommitments(OwnTable):
    """The ``PacsCommitments`` table: requests answered Success whose report
    was not taken yet."""

    build = staticmethod(buildTable)

    def _row(self, transaction, requestor):
        table = self.table
        return (table.c.TransactionUID == transaction) & (table.c.CallingAE == requestor)

    def add(self, connection, transaction, requestor, references, received):
        """In the writer (which may run it twice): record a request that
        came at ``received`` (replacing one with its Transaction UID from
        that requestor); ValueTooLarge when its references do not fit in a
        statement."""
        refs = json.dumps(references).encode()
        checkFits(connection, refs)
        connection.execute(self.table.delete().where(self._row(transaction, requestor)))
        connection.execute(self.table.insert().values(
            TransactionUID=transaction, CallingAE=requestor, Received=received, Refs=refs))

    def remove(self, connection, transaction, requestor, received):
        """In the writer: forget the request that came at ``received``,
        whose report was taken (not a newer one that replaced it)."""
        connection.execute(self.table.delete().where(self._row(transaction, requestor) &
                                                     (self.table.c.Received == received)))

    def requests(self, connection):
        """In a reader: ``[(transaction, requestor, references, received)]``,
        oldest first."""
        table = self.table
        rows = connection.execute(select(table.c.TransactionUID, table.c.CallingAE, table.c.Refs, table.c.Received)
                                  .order_by(table.c.Received))
        return [(row.TransactionUID, row.CallingAE, [tuple(reference) for reference in json.loads(row.Refs)],
                 row.Received) for row in rows]


class CommitmentService:
    """Answers N-ACTION on the Storage Commitment Push Model SOP class and
    reports again what ``pending`` (PendingCommitments) holds at start-up;
    see the module docstring."""

    log = Logger()

    def __init__(self, pending, query, reader, workers, aeTitle, acrNemaMap, reactor, counters=None, retryDelay=100,
                 maximumAge=MAXIMUM_AGE, connectTimeout=30, dimseTimeout=300, titleStyle=PLAIN_TITLES,
                 completeness=None):
        self.pending = pending
        self.index = pending.index
        self.query = query
        self.reader = reader
        self.workers = workers  # the I/O pool, where files are checked
        self.aeTitle = aeTitle
        self.acrNemaMap = acrNemaMap
        self.reactor = reactor
        self.counters = counters if counters is not None else {}
        self.retryDelay = retryDelay
        self.maximumAge = maximumAge
        self.connectTimeout = connectTimeout
        self.dimseTimeout = dimseTimeout
        self.titleStyle = titleStyle
        self.completeness = completeness or IndexCompleteness()  # the index's: checks wait while it may miss objects
        self._retries = {}  # (transaction, requestor) -> the call reporting it again
        self._reporting = {}  # (transaction, requestor) -> the Deferred of its check and report under way
        self._acceptedWhileResuming = None  # while resume() reads: (transaction, requestor) -> its first Received

    def handle(self, protocol, contextId, command, dataset):
        return defer.ensureDeferred(self._handle(protocol, contextId, command, dataset))

    async def _handle(self, protocol, contextId, command, dataset):
        _, syntax = protocol.association.contexts[contextId]
        data = None if dataset is None else bytes(dataset.data)
        try:  # in a worker: a big data set decodes for seconds
            transaction, references = await threads.deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(), readCommitmentRequest, command, data, syntax)
        except BadCommitmentRequest as e:
            self.log.warn("{peer}: storage commitment refused: {error}", peer=protocol.peerName(), error=e)
            protocol.sendMessage(contextId, self._response(command, e.status, {commands.ERROR_COMMENT: str(e)[:64]}))
            return
        await self._accept(protocol, contextId, command, syntax, transaction, references)

    async def _accept(self, protocol, contextId, command, syntax, transaction, references):
        requestor = protocol.association.callingAE
        received = self.pending.clock()
        try:
            await self.index.runWrite(self.pending.add, transaction, requestor, references, received)
        except Exception as e:
            if isinstance(e, DATABASE_FAILURES):  # the database's failure, not a bug of ours: one line
                self.log.error("storage commitment {transaction} from {ae}: the request ({count} references) could "
                               "not be recorded: {error}", transaction=transaction, ae=requestor,
                               count=len(references), error=databaseMessage(e))
            else:
                self.log.failure("storage commitment {transaction} from {ae}: the request could not be recorded",
                                 transaction=transaction, ae=requestor)
            protocol.sendMessage(contextId, self._response(command, PROCESSING_FAILURE, {
                commands.ERROR_COMMENT: "the request could not be recorded"}))
            return
        if self._acceptedWhileResuming is not None:
            self._acceptedWhileResuming.setdefault((transaction, requestor), received)
        if self._dropUnreported((transaction, requestor)):
            self.log.info("storage commitment {transaction} from {ae}: a new request replaces the one still "
                          "unreported", transaction=transaction, ae=requestor)
        self.counters["commitmentRequests"] = self.counters.get("commitmentRequests", 0) + 1
        protocol.sendMessage(contextId, self._response(command, SUCCESS))
        # the N-ACTION is done: the report may outlive the association (and must not hold its release)
        self._spawn(transaction, requestor, references, received, (protocol, contextId, syntax))

    def _dropUnreported(self, key):
        """Stop checking and reporting the request of ``key`` (transaction,
        requestor) recorded before; whether one was still unreported."""
        retry, reporting = self._retries.pop(key, None), self._reporting.pop(key, None)
        if retry is not None:
            retry.cancel()
        if reporting is not None:
            reporting.cancel()
        return retry is not None or reporting is not None

    def resume(self):
        """Report again every recorded request (at start-up), but those of
        a requestor and Transaction UID accepted while they were read:
        that request, or a newer one replacing it, is reported already;
        fires when their reports were tried, never fails."""
        accepted = self._acceptedWhileResuming = {}
        d = self.index.runQuery(self.pending.requests)

        def read(result):
            self._acceptedWhileResuming = None
            return result

        def spawnEach(requests):
            resumed = []
            for request in requests:
                transaction, requestor, _, received = request
                since = accepted.get((transaction, requestor))
                if since is None:
                    self.log.info("storage commitment {transaction} from {ae}: recorded but not reported before pacs "
                                  "stopped; reporting it now", transaction=transaction, ae=requestor)
                    resumed.append(self._spawn(*request))
                elif received < since:  # the row read is the one that request replaced
                    self.log.info("storage commitment {transaction} from {ae}: recorded but not reported before pacs "
                                  "stopped; a new request replaces it", transaction=transaction, ae=requestor)
            return defer.DeferredList(resumed)

        d.addBoth(read)
        d.addCallback(spawnEach)
        d.addErrback(lambda failure: self.log.failure("storage commitment: the recorded requests could not be read",
                                                      failure))
        return d

    def stop(self):
        """Cancel the reports due again later (they are in the table)."""
        for call in self._retries.values():
            if call.active():
                call.cancel()
        self._retries.clear()

    def _spawn(self, transaction, requestor, references, received, requesting=None, attempts=ATTEMPTS):
        key = (transaction, requestor)
        committing = self._reporting[key] = defer.ensureDeferred(
            self._commit(transaction, requestor, references, received, requesting, attempts))

        def done(result):
            if self._reporting.get(key) is committing:
                del self._reporting[key]
            return result
        committing.addBoth(done)
        committing.addErrback(lambda failure: failure.trap(defer.CancelledError))  # replaced by a newer request
        committing.addErrback(lambda failure: self.log.failure("storage commitment {transaction} failed", failure,
                                                               transaction=transaction))
        return committing

    def _response(self, command, status, extra=None):
        return commands.response(command, commands.N_ACTION_RSP, status, {
            commands.AFFECTED_SOP_INSTANCE_UID: STORAGE_COMMITMENT_INSTANCE,
            commands.ACTION_TYPE_ID: command.get(commands.ACTION_TYPE_ID, REQUEST_COMMITMENT), **(extra or {})})

    async def _commit(self, transaction, requestor, references, received, requesting, attempts):
        """Check the objects and report, on ``requesting`` ``(protocol,
        context ID, syntax)`` while it is open, else on a new association
        (tried ``attempts`` times, the objects checked once it is open);
        forget the request once reported (or refused on a new association),
        or once it is ``maximumAge`` seconds old, else try once more
        ``retryDelay`` seconds later.  First, the index complete
        (``IndexCompleteness``)."""
        # the requestor may wait on its association for the report: not idle meanwhile (TCPIPTimeOut)
        release = requesting[0].holdOpen() if requesting is not None else None
        try:
            completeness = self.completeness
            if not completeness.complete:
                self.log.warn("storage commitment {transaction} from {ae}: checked and reported once the index is "
                              "rebuilt ({why})", transaction=transaction, ae=requestor, why=completeness.why())
                await completeness.whenComplete()
            outcome = None
            if requesting is not None:
                outcome = await self._outcome(transaction, requestor, references)
            onItsAssociation = await self._reportOnItsAssociation(requesting, transaction, requestor, outcome)
        finally:
            if release is not None:
                release()
        if onItsAssociation or \
                await self._reportOnNewAssociation(requestor, transaction, references, outcome, attempts):
            await self.index.runWrite(self.pending.remove, transaction, requestor, received)
        elif self.pending.clock() - received >= self.maximumAge:
            self.log.error("storage commitment {transaction}: its result could not be reported to {ae} within "
                           "{age} s (MaximumCommitmentAge); given up", transaction=transaction, ae=requestor,
                           age=self.maximumAge)
            await self.index.runWrite(self.pending.remove, transaction, requestor, received)
        else:
            if attempts > 1:  # the first round: later ones log their single attempt only
                self.log.error("storage commitment {transaction}: its result could not be reported to {ae}; tried "
                               "again every {delay} s", transaction=transaction, ae=requestor, delay=self.retryDelay)
            key = (transaction, requestor)
            self._retries[key] = self.reactor.callLater(self.retryDelay, self._retry, key, references, received)

    def _retry(self, key, references, received):
        self._retries.pop(key, None)
        self._spawn(*key, references, received, attempts=1)

    async def _outcome(self, transaction, requestor, references):
        """``(event type, report)`` of the objects ``references`` name, as
        they are now (logged)."""
        stored = await self.index.runQuery(storedInstances, self.query, references)
        committed, failed, unreadable, report = await self.workers.deferToWorker(
            _checkedReport, self.reader, stored, references, transaction, self.aeTitle)
        for sop, why in unreadable.items():
            self.log.warn("storage commitment {transaction}: {sop} not committed, its file cannot be read: {why}",
                          transaction=transaction, sop=sop, why=why)
        self.log.info("storage commitment {transaction} from {ae}: {committed} committed, {failed} not",
                      transaction=transaction, ae=requestor, committed=len(committed), failed=len(failed))
        return report

    async def _reportOnItsAssociation(self, requesting, transaction, requestor, outcome):
        if requesting is None:
            return False
        protocol, contextId, syntax = requesting
        eventType, report = outcome
        try:
            await self._report(protocol, contextId, eventType,
                               await self.workers.deferToWorker(encodeDataset, report, syntax), yieldsToRelease=True)
        except defer.CancelledError:  # replaced by a newer request
            raise
        except Exception as e:
            self.log.info("storage commitment {transaction}: not reported on the association ({error}); "
                          "opening one to {ae}", transaction=transaction, error=e, ae=requestor)
            return False
        self.log.info("storage commitment {transaction}: reported to {ae} on its association",
                      transaction=transaction, ae=requestor)
        return True

    async def _report(self, protocol, contextId, eventType, data, yieldsToRelease=False):
        """Send the N-EVENT-REPORT on ``protocol``: CommitmentReportRefused
        unless the requestor took it (Success, or a Warning status)."""
        response = await answerTo(protocol, contextId, reportCommand(eventType), data,
                                  yieldsToRelease=yieldsToRelease)
        if response is None:
            raise CommitmentReportRefused("N-EVENT-REPORT answered without a Status")
        if not taken(response):
            comment = response.get(commands.ERROR_COMMENT)
            raise CommitmentReportRefused(f"N-EVENT-REPORT answered with status 0x{response[commands.STATUS]:04X}" +
                                          (f": {comment}" if comment else ""))

    async def _reportOnNewAssociation(self, requestor, transaction, references, outcome, attempts):
        """Whether the report (``outcome``, else made once an association
        is open) was answered on a new association to ``requestor``, tried
        ``attempts`` times: taken, or refused (logged, not sent again: the
        modality can ask again)."""
        node = self.acrNemaMap.lookup(requestor)
        if node is None:
            self.log.warn("storage commitment {transaction}: {ae} is not in acrnema.map, so its result cannot be "
                          "reported", transaction=transaction, ae=requestor)
            return False

        refusal = None

        async def send(association):
            nonlocal outcome, refusal
            if outcome is None:
                outcome = await self._outcome(transaction, requestor, references)
            eventType, report = outcome
            contextId, syntax = association.contextFor(STORAGE_COMMITMENT)
            try:
                await self._report(association, contextId, eventType,
                                   await self.workers.deferToWorker(encodeDataset, report, syntax))
            except CommitmentReportRefused as e:  # answered: final, as for MPPS forwarding (no unreachable node)
                refusal = e
        if not await sendToNode(self.reactor, node, self.aeTitle, [(STORAGE_COMMITMENT, list(UNCOMPRESSED))], send,
                                self.log, f"storage commitment {transaction}: report", attempts, self.retryDelay,
                                self.connectTimeout, self.dimseTimeout, self.titleStyle,
                                roles={STORAGE_COMMITMENT: (False, True)}):
            return False
        if refusal is not None:
            self.log.warn("storage commitment {transaction}: {ae} refused the report ({refusal}); not sent again",
                          transaction=transaction, ae=requestor, refusal=refusal)
        else:
            self.log.info("storage commitment {transaction}: reported to {ae} on a new association",
                          transaction=transaction, ae=requestor)
        return True


class CommitmentReportRefused(Exception):
    """The requestor answered the N-EVENT-REPORT with a Failure status (or
    none): it did not take it."""
