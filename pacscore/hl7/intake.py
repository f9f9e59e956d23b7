"""HL7 orders into the worklist: one raw message in, one ACK out.

Shared by the MLLP listener, the drop folder and ``dgate --loadhl7``
(``applyMessages`` applies several in order); an MLLP frame holding an HL7
batch gets an acknowledgment batch, one ACK per message.
Messages are parsed and mapped, and acknowledgment batches built, in the
reactor's thread pool.
Every message gets an original-mode acknowledgement, also one whose MSH-15
or MSH-16 asks for enhanced mode (not supported):

- AA: the orders are in the worklist (committed);
- AE: understood but not applied, for what the message holds (an XO for
  an unknown accession number, an order without an accession number, an
  order control or structure we do not handle), with the reason in MSA-3
  and ERR (its code of HL7 table 0357);
- AR: not parsed, or not a message we handle (only order messages ORM^O01
  (or ORM alone, as HL7 v2.1 has it), OMG^O19 and OMI^O23 fill the worklist, of an HL7 v2 version in MSH-12
  and a processing ID of HL7 table 0103 in MSH-11, as v2.5 section 2.9.2
  has the receiver check MSH-9, MSH-12 and MSH-11; either left empty is
  taken, as Conquest reads neither), or not applied: for a reason that
  is not the message's and may pass (``pacscore.db.errors.isTransient``:
  the database down, locked or full, or not answering an MLLP sender
  within SQLTimeOut) the sender may send it again later
  (``Outcome.retry``), logged in one line; for any other (a value the
  database cannot hold, a bug) it would fail the same way again, logged
  with its traceback.  The ACK names only the kind of failure (no SQL, no
  patient data).
"""

from collections import Counter
from typing import NamedTuple

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.db.errors import IndexTimeout, databaseMessage, isTransient
from pacscore.db.worklistitems import ORDER_CONTROLS, OrderRefused
from pacscore.hl7.message import (
    HL7Error, Message, ack, batchAck, isBatch, isVersion2, parseMessage, readBatch, salvage)
from pacscore.logvalues import named, shown

ORDER_MESSAGES = {"ORM": "O01", "OMG": "O19", "OMI": "O23"}
WITHOUT_TRIGGER_EVENT = "ORM"  # HL7 v2.1's MSH-9 holds only the message type: ORM is ORM^O01

UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION_ID = 203
PROCESSING_IDS = ("P", "T", "D", "")  # MSH-11: HL7 table 0103 (production, training, debugging), or none
SEGMENT_SEQUENCE_ERROR = 100
TABLE_VALUE_NOT_FOUND = 103
APPLICATION_ERROR = 207


def _actionsText(applied):
    """What became of the orders ``applied`` (``NW ACC1: inserted, ...``),
    the first ones named, the others counted by action (``named``): one
    message may hold thousands."""
    return named((f"{a.control} {a.accessionNumber}: {a.action}" for a in applied), "orders",
                 kinds=[a.action for a in applied])


class Outcome(NamedTuple):
    """What became of one message: its ACK code and text, and the ACK."""

    code: str     # AA, AE or AR
    text: str
    ack: bytes
    retry: bool = False  # an AR for a reason not the message's that may pass (the database): it may be applied later
    cause: str = ""  # of a retry: the database's message, when it has one


class WorklistIntake:
    """Applies HL7 order messages to the worklist (``WorklistItems``)
    through the mapping of dicom.sql (``WorklistMapping``)."""

    log = Logger()

    def __init__(self, mapping, items, application="PACS", counters=None, inThread=None):
        self.mapping = mapping
        self.items = items
        self.application = application
        self.counters = counters if counters is not None else {}
        # inThread(f, *args) -> Deferred: where messages are parsed (the reactor's pool; None: at once)
        self.inThread = inThread or defer.maybeDeferred

    def handle(self, raw):
        """The MLLP handler: Deferred firing with the ACK bytes, within
        SQLTimeOut of the database's (an AR when it does not answer); a
        frame holding an HL7 batch (``isBatch``) gets an acknowledgment
        batch (``handleBatch``)."""
        if isBatch(raw):
            return self.inThread(readBatch, raw).addCallback(self.handleBatch)
        return self.process(raw, forPeer=True).addCallback(lambda outcome: outcome.ack)

    @defer.inlineCallbacks
    def handleBatch(self, batch):
        """The acknowledgment batch (``batchAck``) of ``batch``, a
        ``Batch`` an MLLP sender waits on: its messages applied in order, as
        the drop folder applies a file's, up to the first one that may be
        applied later (``Outcome.retry``); those after it are not applied
        (AR), for the sender to send them again after it.  Segments before
        a batch's first MSH are in no message: refused with a log line, not
        applied nor acknowledged as a message (``batchAck``)."""
        messages = batch.messages()
        controlId = batch.controlId(batch.batches[0][0])
        for header, stray in batch.strays():
            self._count("hl7Errors")
            self.log.warn("HL7 batch {controlId}: segments before the first MSH of a batch, in no message, refused "
                          "(not acknowledged nor counted as one: BTS-2 says so): {segments}",
                          controlId=batch.controlId(header), segments=shown(stray))
        outcomes = yield applyMessages(self, messages, forPeer=True)
        left = len(messages) - len(outcomes)
        if left:
            self._count("hl7Errors")
            self.log.warn("HL7 batch {controlId}: message {number} may be applied later: the {left} message(s) "
                          "after it are not applied (AR), for the sender to send them again after it",
                          controlId=controlId, number=len(outcomes), left=left)
        codes = Counter(outcome.code for outcome in outcomes) + Counter({"AR": left})
        self.log.info("HL7 batch {controlId}: {count} message(s) in one MLLP frame, {codes}, answered by an "
                      "acknowledgment batch", controlId=controlId, count=len(messages),
                      codes=", ".join(f"{count} {code}" for code, count in sorted(codes.items())) or "none")
        return (yield self.inThread(self._batchAck, batch, [outcome.ack for outcome in outcomes]))

    def _batchAck(self, batch, acks):
        """In ``inThread``: the acknowledgment batch (``batchAck``) of
        ``batch``, its first messages answered ``acks``, those after them
        not applied (one before them may be applied later) AR."""
        why = (f"not applied: message {len(acks)} of the batch, before it, may be applied later; "
               f"send this one again after it")
        unapplied = [ack(salvage(raw), "AR", why, APPLICATION_ERROR, application=self.application)
                     for raw in batch.messages()[len(acks):]]
        return batchAck(batch, acks + unapplied, application=self.application)

    def process(self, raw, forPeer=False, again=False):
        """Deferred firing with the ``Outcome`` of one raw message;
        ``forPeer``: a sender waits on it (``WorklistItems.apply``);
        ``again``: it failed before for a reason that may pass (a drop
        folder file held back), so failing so again it is neither logged
        nor counted."""
        return self.inThread(self._read, raw).addCallback(self._apply, forPeer, again)

    def _read(self, raw):
        """In ``inThread``: ``(message, orders or None, HL7Error,
        OrderRefused or None)``, the message ``Salvaged`` when it did not
        parse."""
        try:
            message = parseMessage(raw)
        except HL7Error as e:
            return salvage(raw), None, e
        try:
            return message, self._orders(message), None
        except (HL7Error, OrderRefused) as e:
            return message, None, e

    def _apply(self, read, forPeer, again):
        message, orders, error = read
        if isinstance(message, Message) and not message.charsetKnown and not again:
            self.log.warn("HL7 {controlId}: character set {charset!r} (MSH-18) is not one pacs knows: its text is "
                          "read as without MSH-18, as {codec}", controlId=message.controlId, charset=message.charset,
                          codec=message.encoding)
        if isinstance(message, Message) and message.windows1252 and not again:
            self.log.warn("HL7 {controlId}: its text, in character set {charset!r} (MSH-18), holds bytes 0x80 to "
                          "0x9F, control characters in Latin-1: read as Windows-1252 ones (’ – €)",
                          controlId=message.controlId, charset=message.charset)
        if isinstance(error, OrderRefused):
            return self._error(message, error)
        if error is not None:
            return self._reject(message, str(error), error.code)
        try:
            applying = self.items.apply(orders, forPeer)
        except OrderRefused as e:
            return self._error(message, e)
        return applying.addCallbacks(self._accepted, self._failed, (message,), None, (message, again))

    def _orders(self, message):
        kind = f"{message.messageType}^{message.triggerEvent}"
        if message.messageType not in ORDER_MESSAGES:
            raise HL7Error(f"message type {kind} is not handled (only orders fill the worklist: "
                           f"{', '.join(f'{t}^{e}' for t, e in ORDER_MESSAGES.items())})",
                           UNSUPPORTED_MESSAGE_TYPE)
        if message.triggerEvent != ORDER_MESSAGES[message.messageType] and not (
                message.messageType == WITHOUT_TRIGGER_EVENT and not message.triggerEvent):
            raise HL7Error(f"trigger event {kind} is not handled", UNSUPPORTED_EVENT_CODE)
        if message.version and not isVersion2(message.version):
            raise HL7Error(f"version {message.version!r} (MSH-12) is not handled (only HL7 v2: 2.1 to 2.9)",
                           UNSUPPORTED_VERSION_ID)
        if message.processingId not in PROCESSING_IDS:
            raise HL7Error(f"processing ID {message.processingId!r} (MSH-11) is not one of HL7 table 0103 "
                           f"(P, T, D)", UNSUPPORTED_PROCESSING_ID)
        orders = self.mapping.items(message)
        if not orders:
            raise OrderRefused(f"{kind} without ORC or OBR segment", SEGMENT_SEQUENCE_ERROR)
        for order in orders:
            if order.control not in ORDER_CONTROLS:
                raise OrderRefused(f"order control {order.control!r} (ORC-1) is not handled "
                                   f"(expected one of {', '.join(sorted(ORDER_CONTROLS))})", TABLE_VALUE_NOT_FOUND)
        return orders

    def _count(self, name):
        self.counters[name] = self.counters.get(name, 0) + 1

    def _accepted(self, applied, message):
        self._count("hl7Applied")
        text = _actionsText(applied)
        self.log.info("HL7 {kind} {controlId}: {text}", kind=f"{message.messageType}^{message.triggerEvent}",
                      controlId=message.controlId, text=text)
        shared = Counter(a.accessionNumber for a in applied if a.action not in ("deleted", "absent"))
        for accessionNumber, orders in shared.items():
            if orders > 1:
                self.log.warn("HL7 {controlId}: {orders} orders share accession number {accessionNumber}: the "
                              "worklist holds one item an accession number, the last order's",
                              controlId=message.controlId, orders=orders, accessionNumber=accessionNumber)
        return Outcome("AA", text, ack(message, "AA", application=self.application))

    def _failed(self, failure, message, again):
        if failure.check(OrderRefused):
            return self._error(message, failure.value)
        if failure.check(IndexTimeout):  # logged by the writer
            return self._reject(message, f"database not available ({failure.value}): not applied, "
                                         f"send it again later", APPLICATION_ERROR, retry=True, again=again)
        if isTransient(failure.value):
            cause = databaseMessage(failure.value)
            if not again:
                self.log.warn("HL7 {controlId}: the database failed: {error}", controlId=message.controlId,
                              error=cause)
            return self._reject(message, f"worklist update failed ({failure.type.__name__}): "
                                         f"not applied, send it again later", APPLICATION_ERROR, retry=True,
                                again=again, cause=cause)
        self.log.failure("HL7 {controlId}: applying the orders failed", failure, controlId=message.controlId)
        return self._reject(message, f"worklist update failed ({failure.type.__name__}): not applied",
                            APPLICATION_ERROR)

    def _error(self, message, refusal):
        self._count("hl7Errors")
        text = str(refusal)
        self.log.warn("HL7 {controlId} not applied (AE): {text}", controlId=message.controlId, text=text)
        return Outcome("AE", text, ack(message, "AE", text, refusal.code, application=self.application))

    def _reject(self, message, text, code, retry=False, again=False, cause=""):
        """The AR of ``message``, a ``Message`` or the ``Salvaged`` of one
        (``retry``: for a reason that is not the message's, the database's
        ``cause``; ``again`` too before: not logged nor counted)."""
        outcome = Outcome("AR", text, ack(message, "AR", text, code, application=self.application), retry, cause)
        if not (again and retry):
            self._count("hl7Errors")
            self.log.warn("HL7 {controlId} rejected (AR): {text}", controlId=message.controlId or "?", text=text)
        return outcome


@defer.inlineCallbacks
def applyMessages(intake, messages, again=False, forPeer=False):
    """Apply raw messages in order through ``intake`` (a WorklistIntake);
    fires with their Outcomes, up to the first one that may be applied later
    (``Outcome.retry``): the messages after it are not applied before it
    (``forPeer``, ``again``: see ``WorklistIntake.process``)."""
    outcomes = []
    for raw in messages:
        outcome = yield intake.process(raw, forPeer=forPeer, again=again)
        outcomes.append(outcome)
        if outcome.retry:
            break
    return outcomes
